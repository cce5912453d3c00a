//! An in-memory [`Device`] that injects faults: torn writes at a crash, short writes, flipped
//! bits, short reads, ENOSPC, EIO on write or fsync. Tests and the simulator use it; it keeps
//! both what reads see and what would survive a crash (the synced bytes), so a crash can be
//! simulated at any point with a seeded choice of which unsynced sectors reach the platter.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

use super::device::{Device, DeviceBuf, SegmentFile};

/// The unit a torn write keeps or loses (a disk sector).
pub const SECTOR_BYTES: usize = 512;

/// Faults to inject; counters count down as they fire.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Total bytes of files allowed; `create_zeroed` beyond it fails with ENOSPC.
    pub capacity_bytes: Option<u64>,
    /// The next N `sync_data` calls fail with EIO.
    pub sync_eio: u32,
    /// The next N writes fail with ENOSPC and write nothing.
    pub write_enospc: u32,
    /// The next N writes fail with EIO after writing nothing.
    pub write_eio: u32,
    /// The next write stores only this many bytes and reports it (a short write).
    pub short_write_bytes: Option<usize>,
    /// Every read returns at most this many bytes (short reads).
    pub read_bytes_max: Option<usize>,
    /// `sync_data` never returns (to crash while a batch is written but not synced).
    pub sync_stall: bool,
    /// With `sync_stall`, this many more `sync_data` calls complete before one stalls.
    pub syncs_before_stall: u32,
    /// Every `sync_data` yields to the executor's other tasks once before it completes, as a
    /// real disk's takes time: records appended meanwhile arrive during the commit.
    pub sync_yield: bool,
}

/// What a simulated crash does with writes that were not yet synced.
#[derive(Debug, Clone, Copy)]
pub enum Tear {
    /// All unsynced writes are lost.
    LoseUnsynced,
    /// All unsynced writes happen to have reached the disk.
    KeepUnsynced,
    /// Each unsynced sector independently survives or not, chosen by a PRNG with this seed.
    Sectors { seed: u64 },
}

#[derive(Debug, Default)]
struct MemFile {
    data: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<(usize, Vec<u8>)>,
}

/// Files live in `files` by id and are named through `names`, so a handle survives a rename
/// and a removed file stays usable through open handles, as on Linux.
#[derive(Debug, Default)]
struct MemDisk {
    names: BTreeMap<String, usize>,
    files: Vec<MemFile>,
    faults: Faults,
}

impl MemDisk {
    fn named(&mut self, name: &str) -> Option<&mut MemFile> {
        let id = *self.names.get(name)?;
        self.files.get_mut(id)
    }
}

/// The in-memory disk; clones share it, so a test keeps one to inject faults and inspect.
#[derive(Debug, Clone, Default)]
pub struct MemDevice {
    disk: Rc<RefCell<MemDisk>>,
}

impl MemDevice {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes the faults to inject.
    pub fn set_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.disk.borrow_mut().faults);
    }

    /// Simulates power loss: every file keeps its synced bytes plus what `tear` lets through.
    pub fn crash(&self, tear: Tear) {
        let mut rng = match tear {
            Tear::Sectors { seed } => seed | 1,
            _ => 1,
        };
        let mut disk = self.disk.borrow_mut();
        let MemDisk { names, files, .. } = &mut *disk;
        let named: Vec<usize> = names.values().copied().collect();
        for file in files
            .iter_mut()
            .enumerate()
            .filter(|(id, _)| named.contains(id))
        {
            let file = file.1;
            for (offset, bytes) in std::mem::take(&mut file.unsynced) {
                for (i, sector) in bytes.chunks(SECTOR_BYTES).enumerate() {
                    let keep = match tear {
                        Tear::LoseUnsynced => false,
                        Tear::KeepUnsynced => true,
                        Tear::Sectors { .. } => xorshift(&mut rng) & 1 == 1,
                    };
                    if keep {
                        let at = offset + i * SECTOR_BYTES;
                        file.durable[at..at + sector.len()].copy_from_slice(sector);
                    }
                }
            }
            file.data = file.durable.clone();
        }
    }

    /// Flips one bit of a file, durably (media corruption).
    pub fn flip_bit(&self, name: &str, offset_bytes: usize, bit: u8) {
        let mut disk = self.disk.borrow_mut();
        let file = disk.named(name).expect("flip_bit on a missing file");
        file.data[offset_bytes] ^= 1 << bit;
        file.durable[offset_bytes] ^= 1 << bit;
    }

    /// Overwrites bytes of a file, durably.
    pub fn write_durable(&self, name: &str, offset_bytes: usize, bytes: &[u8]) {
        let mut disk = self.disk.borrow_mut();
        let file = disk.named(name).expect("write_durable on a missing file");
        let range = offset_bytes..offset_bytes + bytes.len();
        file.data[range.clone()].copy_from_slice(bytes);
        file.durable[range].copy_from_slice(bytes);
    }

    /// What reads of `name` currently see.
    pub fn file_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.disk.borrow_mut().named(name).map(|f| f.data.clone())
    }

    /// Names of the files on the disk, sorted.
    pub fn file_names(&self) -> Vec<String> {
        self.disk.borrow().names.keys().cloned().collect()
    }

    fn with_file<T>(
        &self,
        id: usize,
        f: impl FnOnce(&mut MemFile, &mut Faults) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut disk = self.disk.borrow_mut();
        let MemDisk { files, faults, .. } = &mut *disk;
        f(&mut files[id], faults)
    }

    fn handle(&self, name: &str) -> io::Result<MemFileHandle> {
        let id = self.disk.borrow().names.get(name).copied();
        let id = id.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(MemFileHandle {
            device: self.clone(),
            id,
        })
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn countdown(counter: &mut u32) -> bool {
    let fire = *counter > 0;
    *counter = counter.saturating_sub(1);
    fire
}

/// A file of a [`MemDevice`].
#[derive(Debug)]
pub struct MemFileHandle {
    device: MemDevice,
    id: usize,
}

impl DeviceBuf for Vec<u8> {
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        self
    }
}

/// Linux's ENOSPC.
const ENOSPC: i32 = 28;

impl Device for MemDevice {
    type File = MemFileHandle;

    async fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.file_names())
    }

    async fn create_zeroed(&self, name: &str, len_bytes: u64) -> io::Result<MemFileHandle> {
        let mut disk = self.disk.borrow_mut();
        let MemDisk {
            names,
            files,
            faults,
        } = &mut *disk;
        let used: u64 = names.values().map(|&id| files[id].data.len() as u64).sum();
        if faults
            .capacity_bytes
            .is_some_and(|cap| used + len_bytes > cap)
        {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        let zeros = vec![0; len_bytes as usize];
        files.push(MemFile {
            data: zeros.clone(),
            durable: zeros,
            unsynced: Vec::new(),
        });
        names.insert(name.to_string(), files.len() - 1);
        Ok(MemFileHandle {
            device: self.clone(),
            id: files.len() - 1,
        })
    }

    async fn open(&self, name: &str) -> io::Result<MemFileHandle> {
        self.handle(name)
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        let id = disk.names.remove(from);
        let id = id.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        disk.names.insert(to.to_string(), id);
        Ok(())
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        let removed = self.disk.borrow_mut().names.remove(name);
        removed
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn describe(&self, name: &str) -> String {
        format!("mem:{name}")
    }
}

impl SegmentFile for MemFileHandle {
    type Buf = Vec<u8>;
    type Read = Vec<u8>;

    fn alloc_buf(&self, len_bytes: usize) -> Vec<u8> {
        vec![0; len_bytes]
    }

    async fn write_at(&self, buf: Vec<u8>, offset_bytes: u64) -> io::Result<usize> {
        self.device.with_file(self.id, |file, faults| {
            if countdown(&mut faults.write_enospc) {
                return Err(io::Error::from_raw_os_error(ENOSPC));
            }
            if countdown(&mut faults.write_eio) {
                return Err(io::Error::other("injected EIO on write"));
            }
            let offset = offset_bytes as usize;
            let len = faults
                .short_write_bytes
                .take()
                .unwrap_or(buf.len())
                .min(buf.len());
            if offset + len > file.data.len() {
                return Err(io::Error::other(
                    "write past the end of a pre-allocated file",
                ));
            }
            file.data[offset..offset + len].copy_from_slice(&buf[..len]);
            file.unsynced.push((offset, buf[..len].to_vec()));
            Ok(len)
        })
    }

    async fn read_at(&self, offset_bytes: u64, len_bytes: usize) -> io::Result<Vec<u8>> {
        self.device.with_file(self.id, |file, faults| {
            let start = (offset_bytes as usize).min(file.data.len());
            let len = len_bytes.min(faults.read_bytes_max.unwrap_or(usize::MAX));
            let end = (start + len).min(file.data.len());
            Ok(file.data[start..end].to_vec())
        })
    }

    async fn sync_data(&self) -> io::Result<()> {
        let stall = {
            let faults = &mut self.device.disk.borrow_mut().faults;
            faults.sync_stall && !countdown(&mut faults.syncs_before_stall)
        };
        if stall {
            std::future::pending::<()>().await;
        }
        if self.device.disk.borrow().faults.sync_yield {
            let mut yielded = false;
            std::future::poll_fn(|cx| {
                if yielded {
                    return std::task::Poll::Ready(());
                }
                yielded = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            })
            .await;
        }
        self.device.with_file(self.id, |file, faults| {
            if countdown(&mut faults.sync_eio) {
                // Like Linux after a failed fsync: the dirty pages may be dropped silently.
                file.unsynced.clear();
                return Err(io::Error::other("injected EIO on fsync"));
            }
            for (offset, bytes) in std::mem::take(&mut file.unsynced) {
                file.durable[offset..offset + bytes.len()].copy_from_slice(&bytes);
            }
            Ok(())
        })
    }

    async fn len_bytes(&self) -> io::Result<u64> {
        self.device
            .with_file(self.id, |file, _| Ok(file.data.len() as u64))
    }
}

//! [`Wal`]: the async driver that moves batches from the pure [`Batcher`] to a [`Device`],
//! recovers the log on open, and truncates or purges segments.
//!
//! It lives on one executor (the Zab core's) and is shared there by `Rc`: the Zab shell calls
//! [`Wal::append`] for each txn and awaits [`Wal::wait_durable`] (or reads
//! [`Wal::durable_zxid`]) before acknowledging; one task runs [`Wal::run`], which flushes a
//! batch whenever records are pending, so the next batch forms while the previous one syncs.
//! No `RefCell` borrow is held across an await.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use zinc_protocol::types::Zxid;

use super::batcher::{Batch, Batcher, Position};
use super::device::{Device, DeviceBuf, SegmentFile};
use super::record::HEADER_BYTES;
use super::scan::{
    free_name, parse_free_name, parse_segment_name, scan_segment, segment_name, Scanner,
    SegmentScan, Stop,
};
use super::{WalConfig, WalError};

/// The pre-zeroed file that becomes the next segment (not a segment name, so never listed).
const SPARE_NAME: &str = "next.spare";

/// A spare being zero-filled; renamed to [`SPARE_NAME`] once complete, so a spare found by
/// [`Wal::open`] is whole and kept, and one found under this name is removed.
const SPARE_TEMP_NAME: &str = "next.spare.tmp";

/// Most purged segment files kept for reuse as spares (`<first zxid>.free`); more are removed.
const FREE_SEGMENTS_MAX: usize = 4;

/// Bytes read per call when loading a segment.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// Reads in flight at once while recovery loads a segment (a virtual disk answers one 1 MiB
/// read in milliseconds; one at a time, reading two 64 MiB segments took most of a second).
const READ_AHEAD_CHUNKS: usize = 8;

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    pub zxid: Zxid,
    pub payload: Bytes,
}

/// What [`Wal::open`] found.
#[derive(Debug)]
pub struct Recovered {
    /// Records with zxids above the `replay_after` given to open, in order.
    pub records: Vec<WalRecord>,
    /// The last record in the log.
    pub last_zxid: Option<Zxid>,
    /// Where a torn last write was cut off (file, byte offset), if there was one. In a reused
    /// segment file the first open after a stop also reports the older records that follow
    /// the last write (they are zeroed as a torn write's bytes would be).
    pub torn_tail: Option<(String, u64)>,
}

/// A segment read and scanned during recovery.
struct Loaded {
    first: Zxid,
    bytes: Bytes,
    scan: SegmentScan,
}

/// Counters since open, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Group commits written and synced.
    pub batches: u64,
    /// Records made durable.
    pub records: u64,
    /// Bytes written by group commits (aligned, partial blocks rewritten included).
    pub written_bytes: u64,
    /// Segment files created.
    pub segments_created: u64,
    /// Spares made by reusing a purged segment file instead of zero-filling a new one.
    pub segments_reused: u64,
}

struct State<F> {
    batcher: Batcher,
    stats: WalStats,
    segments: Vec<Zxid>,
    current: Option<(Zxid, Rc<F>)>,
    failed: Option<String>,
    /// A pre-zeroed file ready to become the next segment (made off the write path).
    spare: Option<Rc<F>>,
    /// Making a spare failed for lack of space: wait for the next roll before trying again.
    spare_blocked: bool,
    /// Purged segment files kept for reuse as spares, by name.
    free: Vec<String>,
}

#[derive(Default)]
struct Wakers {
    durable: Vec<Waker>,
    flusher: Option<Waker>,
    spare: Option<Waker>,
}

/// The write-ahead log over a device. See the module doc.
pub struct Wal<D: Device> {
    device: D,
    config: WalConfig,
    state: RefCell<State<D::File>>,
    wakers: RefCell<Wakers>,
}

impl<D: Device> Wal<D> {
    /// Recovers the log on `device` and returns it with the records after `replay_after`.
    ///
    /// Segments whose records are all at or below `replay_after` are neither read nor verified.
    pub async fn open(
        device: D,
        config: WalConfig,
        replay_after: Zxid,
    ) -> Result<(Self, Recovered), WalError> {
        config.validate()?;
        let names = device.list().await.map_err(|source| WalError::Io {
            op: "list",
            file: device.describe(""),
            source,
        })?;
        let spare = open_spare(&device, &config, &names).await?;
        let mut segments: Vec<Zxid> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
        segments.sort();
        let free: Vec<String> = names
            .into_iter()
            .filter(|n| parse_free_name(n).is_some())
            .collect();
        // Read from the first segment that holds a record after `replay_after` (the next one
        // starts past it), or the last one.
        let mut start = (0..segments.len())
            .find(|i| {
                segments
                    .get(i + 1)
                    .is_none_or(|next| next.0 > replay_after.0 + 1)
            })
            .unwrap_or(0);
        let mut loaded: Vec<Loaded> = Vec::new();
        for (i, &first) in segments.iter().enumerate().skip(start) {
            let prev = loaded.last().and_then(|l| l.scan.last_zxid());
            let last = i + 1 == segments.len();
            loaded.push(load_segment(&device, &config, first, prev, last).await?);
        }
        // Trailing segments may turn out empty (a new segment whose first write was lost):
        // the one before them holds the log's end, so it is read too.
        while start > 0 && loaded.iter().all(|l| l.scan.records.is_empty()) {
            start -= 1;
            let segment = load_segment(&device, &config, segments[start], None, true).await?;
            loaded.insert(0, segment);
        }
        let torn = check_segments(&device, &config, &loaded)?;
        // Trailing segments without a valid record hold nothing durable: remove them.
        while loaded.last().is_some_and(|l| l.scan.records.is_empty()) {
            let first = loaded.pop().map(|l| l.first).expect("checked non-empty");
            segments.retain(|s| *s != first);
            remove_segment(&device, first).await?;
        }
        let mut torn_tail = None;
        if let Some((first, offset)) = torn {
            if let Some(last) = loaded.last().filter(|l| l.first == first) {
                // What one torn batch can have left past the end; beyond it lie only zeros or
                // a reused file's older records, which recovery never reads as the log's.
                let end_block = last.scan.end_bytes / config.block_bytes * config.block_bytes;
                let window_end = end_block + config.torn_window_bytes();
                let zero_end = last.scan.garbage_end_bytes.min(window_end);
                let end = last.scan.end_bytes;
                if last.bytes[end..zero_end.max(end)].iter().any(|b| *b != 0) {
                    zero_after_end(&device, &config, last, zero_end).await?;
                    torn_tail = Some((device.describe(&segment_name(first)), offset));
                }
            }
        }
        let position = loaded.last().map(|l| position_of(&config, l));
        let records = loaded
            .iter()
            .flat_map(|l| records_of(l, replay_after))
            .collect();
        let last_zxid = position.as_ref().map(|p| p.last_zxid);
        let wal = Self {
            device,
            config,
            state: RefCell::new(State {
                batcher: Batcher::new(config, position),
                stats: WalStats::default(),
                segments,
                current: None,
                failed: None,
                spare,
                spare_blocked: false,
                free,
            }),
            wakers: RefCell::default(),
        };
        Ok((
            wal,
            Recovered {
                records,
                last_zxid,
                torn_tail,
            },
        ))
    }

    /// Queues a record; it is durable once [`Wal::durable_zxid`] reaches `zxid`.
    pub fn append(&self, zxid: Zxid, payload: &[u8]) -> Result<(), WalError> {
        let mut state = self.state.borrow_mut();
        if let Some(why) = &state.failed {
            return Err(WalError::Failed(why.clone()));
        }
        state.batcher.append(zxid, payload)?;
        drop(state);
        if let Some(waker) = self.wakers.borrow_mut().flusher.take() {
            waker.wake();
        }
        Ok(())
    }

    /// The last durable zxid (`None` while the log is empty).
    pub fn durable_zxid(&self) -> Option<Zxid> {
        self.state.borrow().batcher.durable_zxid()
    }

    /// The last appended zxid, durable or not.
    pub fn last_appended(&self) -> Option<Zxid> {
        self.state.borrow().batcher.last_appended()
    }

    /// Encoded bytes appended and not yet durable.
    pub fn pending_bytes(&self) -> usize {
        self.state.borrow().batcher.pending_bytes()
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        self.state.borrow().stats
    }

    /// The configuration the log runs with.
    pub fn config(&self) -> &WalConfig {
        &self.config
    }

    /// Resolves once `zxid` is durable, or with the fatal error that stopped the WAL.
    pub async fn wait_durable(&self, zxid: Zxid) -> Result<(), WalError> {
        poll_fn(|cx| {
            let state = self.state.borrow();
            if let Some(why) = &state.failed {
                return Poll::Ready(Err(WalError::Failed(why.clone())));
            }
            if state.batcher.durable_zxid().is_some_and(|d| d >= zxid) {
                return Poll::Ready(Ok(()));
            }
            self.wakers.borrow_mut().durable.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Flushes batches for as long as records arrive; returns the first error. A fatal error
    /// means exit; after [`WalError::NoSpace`] the caller may wait and call `run` again.
    ///
    /// Meanwhile it keeps a pre-zeroed spare file ready, so a segment roll is a rename rather
    /// than zero-filling `segment_bytes` in the write path.
    pub async fn run(&self) -> WalError {
        let mut flushing = pin!(self.flush_loop());
        let mut sparing = pin!(self.spare_loop());
        poll_fn(|cx| match flushing.as_mut().poll(cx) {
            Poll::Ready(e) => Poll::Ready(e),
            Poll::Pending => sparing.as_mut().poll(cx),
        })
        .await
    }

    async fn flush_loop(&self) -> WalError {
        // When the last commit started, if records arrived while it was being written.
        let mut busy_since: Option<Instant> = None;
        loop {
            poll_fn(|cx| {
                if self.state.borrow().batcher.has_pending() {
                    return Poll::Ready(());
                }
                self.wakers.borrow_mut().flusher = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            if let Some(previous) = busy_since {
                self.pace(previous).await;
            }
            let started = Instant::now();
            if let Err(e) = self.flush().await {
                return e;
            }
            busy_since = self.state.borrow().batcher.has_pending().then_some(started);
        }
    }

    /// Waits until `commit_interval` has passed since the commit that started at `previous`,
    /// or until `commit_records` records are waiting, whichever comes first. Only called when
    /// records arrived while that commit was written: requests that come one at a time (a
    /// client that waits for each reply before sending the next) never wait here.
    async fn pace(&self, previous: Instant) {
        let Some(due) = previous.checked_add(self.config.commit_interval) else {
            return;
        };
        let now = Instant::now();
        if due <= now {
            return;
        }
        let mut timer = pin!(glommio::timer::Timer::new(due - now));
        poll_fn(|cx| {
            if self.state.borrow().batcher.pending_count() >= self.config.commit_records
                || timer.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(());
            }
            self.wakers.borrow_mut().flusher = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    async fn spare_loop(&self) -> WalError {
        loop {
            poll_fn(|cx| {
                let state = self.state.borrow();
                if state.spare.is_none() && !state.spare_blocked && state.failed.is_none() {
                    return Poll::Ready(());
                }
                self.wakers.borrow_mut().spare = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            match self.prepare_spare().await {
                Ok(()) => {}
                Err(e) if e.is_fatal() => return e,
                Err(_) => self.state.borrow_mut().spare_blocked = true,
            }
        }
    }

    /// Creates the pre-zeroed spare file if there is none. [`Wal::run`] calls it; a caller
    /// that drives [`Wal::flush`] itself may too.
    pub async fn prepare_spare(&self) -> Result<(), WalError> {
        if self.state.borrow().spare.is_some() {
            return Ok(());
        }
        let spare = match self.reuse_free().await? {
            Some(file) => file,
            None => {
                let file = self.create_file(SPARE_TEMP_NAME).await?;
                let renamed = self.device.rename(SPARE_TEMP_NAME, SPARE_NAME).await;
                renamed.map_err(|source| WalError::Io {
                    op: "rename",
                    file: self.device.describe(SPARE_NAME),
                    source,
                })?;
                file
            }
        };
        self.state.borrow_mut().spare = Some(Rc::new(spare));
        Ok(())
    }

    /// Makes a purged segment file the spare: renamed and opened, its old records left in
    /// place (the segment is sealed when the log leaves it, and recovery tells them from the
    /// log's own by their zxids). `None` if no file of the right size is kept.
    async fn reuse_free(&self) -> Result<Option<D::File>, WalError> {
        loop {
            let name = self.state.borrow_mut().free.pop();
            let Some(name) = name else {
                return Ok(None);
            };
            let io_error = |op, source| WalError::Io {
                op,
                file: self.device.describe(&name),
                source,
            };
            let renamed = self.device.rename(&name, SPARE_NAME).await;
            renamed.map_err(|e| io_error("rename", e))?;
            let file = self.device.open(SPARE_NAME).await;
            let file = file.map_err(|e| io_error("open", e))?;
            let len_bytes = file.len_bytes().await.map_err(|e| io_error("stat", e))?;
            if len_bytes == self.config.segment_bytes {
                self.state.borrow_mut().stats.segments_reused += 1;
                return Ok(Some(file));
            }
            drop(file);
            let removed = self.device.remove(SPARE_NAME).await;
            removed.map_err(|e| io_error("remove", e))?;
        }
    }

    async fn create_file(&self, name: &str) -> Result<D::File, WalError> {
        let created = self
            .device
            .create_zeroed(name, self.config.segment_bytes)
            .await;
        created.map_err(|source| {
            let file = self.device.describe(name);
            match source.kind() {
                std::io::ErrorKind::StorageFull => WalError::NoSpace { file, source },
                _ => WalError::Io {
                    op: "create",
                    file,
                    source,
                },
            }
        })
    }

    /// Writes and syncs the next batch; returns its last zxid, or `None` if there was nothing
    /// to write (or a batch is already in flight).
    pub async fn flush(&self) -> Result<Option<Zxid>, WalError> {
        let batch = {
            let mut state = self.state.borrow_mut();
            if let Some(why) = &state.failed {
                return Err(WalError::Failed(why.clone()));
            }
            match state.batcher.take_batch() {
                Some(batch) => batch,
                None => return Ok(None),
            }
        };
        let result = self.write_batch(&batch).await;
        let mut state = self.state.borrow_mut();
        let outcome = match result {
            Ok(()) => {
                let last = batch.last_zxid;
                state.stats.batches += 1;
                state.stats.records += batch.records as u64;
                state.stats.written_bytes += batch.len_bytes as u64;
                state.stats.segments_created += u64::from(batch.create_segment);
                state.batcher.complete(batch);
                Ok(Some(last))
            }
            Err(e) => {
                state.batcher.abort(batch);
                if e.is_fatal() {
                    state.failed = Some(e.to_string());
                }
                Err(e)
            }
        };
        drop(state);
        for waker in std::mem::take(&mut self.wakers.borrow_mut().durable) {
            waker.wake();
        }
        outcome
    }

    async fn write_batch(&self, batch: &Batch) -> Result<(), WalError> {
        if batch.seal_previous {
            self.seal_current().await?;
        }
        let name = segment_name(batch.segment);
        let file = if batch.create_segment {
            self.create_segment(batch.segment).await?
        } else {
            self.current_file(batch.segment).await?
        };
        let mut buf = file.alloc_buf(batch.len_bytes);
        self.state.borrow().batcher.fill(batch, buf.as_mut_bytes());
        write_and_sync(&self.device, &file, &name, buf, batch.offset_bytes).await
    }

    /// Writes the seal after the current segment's last record and syncs it, before the log
    /// moves to a new segment: what follows the seal (zeros, or an older segment's records in
    /// a reused file) is then never read as part of the log.
    async fn seal_current(&self) -> Result<(), WalError> {
        let seal = self.state.borrow().batcher.seal();
        let Some((segment, offset_bytes, bytes)) = seal.filter(|(_, _, b)| !b.is_empty()) else {
            return Ok(());
        };
        let file = self.current_file(segment).await?;
        let name = segment_name(segment);
        let mut buf = file.alloc_buf(bytes.len());
        buf.as_mut_bytes().copy_from_slice(&bytes);
        write_and_sync(&self.device, &file, &name, buf, offset_bytes).await
    }

    async fn create_segment(&self, first: Zxid) -> Result<Rc<D::File>, WalError> {
        let name = segment_name(first);
        let spare = self.state.borrow_mut().spare.take();
        let file = match spare {
            Some(file) => {
                let renamed = self.device.rename(SPARE_NAME, &name).await;
                renamed.map_err(|source| WalError::Io {
                    op: "rename",
                    file: self.device.describe(&name),
                    source,
                })?;
                file
            }
            None => Rc::new(self.create_file(&name).await?),
        };
        self.state.borrow_mut().spare_blocked = false;
        if let Some(waker) = self.wakers.borrow_mut().spare.take() {
            waker.wake();
        }
        let mut state = self.state.borrow_mut();
        if state.segments.last() != Some(&first) {
            state.segments.push(first);
        }
        state.current = Some((first, file.clone()));
        Ok(file)
    }

    async fn current_file(&self, first: Zxid) -> Result<Rc<D::File>, WalError> {
        if let Some((z, file)) = &self.state.borrow().current {
            if *z == first {
                return Ok(file.clone());
            }
        }
        let file = Rc::new(open_segment(&self.device, first).await?);
        self.state.borrow_mut().current = Some((first, file.clone()));
        Ok(file)
    }

    /// Durable records with zxids above `after`, in order (for replay or a follower's DIFF).
    pub async fn read_after(&self, after: Zxid) -> Result<Vec<WalRecord>, WalError> {
        let (segments, position) = {
            let state = self.state.borrow();
            (state.segments.clone(), state.batcher.position().cloned())
        };
        let Some(position) = position else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (i, &first) in segments.iter().enumerate() {
            if segments
                .get(i + 1)
                .is_some_and(|next| next.0 <= after.0 + 1)
            {
                continue;
            }
            let mut bytes = read_segment(&self.device, first).await?;
            if first == position.segment {
                // The in-flight batch may be writing past the durable end: ignore it.
                bytes.truncate(position.end_bytes as usize);
            }
            let scan = scan_segment(&bytes, self.config.record_bytes_max, None);
            if !scan.is_clean() {
                return Err(corrupt(&self.device, first, &scan));
            }
            let loaded = Loaded {
                first,
                bytes: Bytes::from(bytes),
                scan,
            };
            out.extend(records_of(&loaded, after));
            if first == position.segment {
                break;
            }
        }
        Ok(out)
    }

    /// Removes every record above `zxid` (Zab TRUNC). The log must be idle.
    pub async fn truncate_after(&self, zxid: Zxid) -> Result<(), WalError> {
        let segments = {
            let state = self.state.borrow();
            if let Some(why) = &state.failed {
                return Err(WalError::Failed(why.clone()));
            }
            if state.batcher.has_pending() || state.batcher.in_flight() {
                return Err(WalError::Busy("truncate with records pending"));
            }
            state.segments.clone()
        };
        let mut kept = segments;
        let mut position = None;
        while let Some(&last) = kept.last() {
            if last.0 <= zxid.0 {
                position = self.truncate_segment(last, zxid).await?;
                if position.is_some() {
                    break;
                }
            }
            remove_segment(&self.device, last).await?;
            kept.pop();
        }
        let mut state = self.state.borrow_mut();
        state.segments = kept;
        state.current = None;
        state.batcher = Batcher::new(self.config, position);
        Ok(())
    }

    /// Cuts segment `first` after the last record at or below `zxid` and zeroes the rest;
    /// `None` if no record is left in it.
    async fn truncate_segment(
        &self,
        first: Zxid,
        zxid: Zxid,
    ) -> Result<Option<Position>, WalError> {
        let bytes = read_segment(&self.device, first).await?;
        let mut scan = scan_segment(&bytes, self.config.record_bytes_max, None);
        // Open repaired any torn tail; what may follow the records now is zeros, a seal, or
        // an older segment's records in a reused file. A later record of this log is damage.
        let max = self.config.record_bytes_max;
        if scan
            .later_record(&bytes, first, scan.end_bytes + 1, max)
            .is_some()
        {
            return Err(corrupt(&self.device, first, &scan));
        }
        let sealed = if scan.is_sealed() { HEADER_BYTES } else { 0 };
        let old_end = scan.end_bytes + sealed;
        scan.records.retain(|(z, _)| *z <= zxid);
        scan.end_bytes = scan.records.last().map_or(0, |(_, r)| r.end);
        let loaded = Loaded {
            first,
            bytes: Bytes::from(bytes),
            scan,
        };
        if loaded.scan.records.is_empty() {
            return Ok(None);
        }
        zero_after_end(&self.device, &self.config, &loaded, old_end).await?;
        Ok(Some(position_of(&self.config, &loaded)))
    }

    /// Removes segments whose records are all at or below `zxid` (retention after a
    /// snapshot at `zxid`); the newest segment is always kept. Returns how many were removed.
    pub async fn purge_through(&self, zxid: Zxid) -> Result<usize, WalError> {
        let segments = self.state.borrow().segments.clone();
        let mut removed = 0;
        for pair in segments.windows(2) {
            if pair[1].0 > zxid.0 + 1 {
                break;
            }
            self.retire_segment(pair[0]).await?;
            self.state.borrow_mut().segments.retain(|s| *s != pair[0]);
            removed += 1;
        }
        Ok(removed)
    }

    /// Keeps a purged segment's file for reuse as a spare (renamed `<first>.free`) while
    /// fewer than [`FREE_SEGMENTS_MAX`] are kept; removes it otherwise. Reusing a file saves
    /// zero-filling a new one, which writes the segment's size to the disk a second time.
    async fn retire_segment(&self, first: Zxid) -> Result<(), WalError> {
        if self.state.borrow().free.len() >= FREE_SEGMENTS_MAX {
            return remove_segment(&self.device, first).await;
        }
        let name = free_name(first);
        let renamed = self.device.rename(&segment_name(first), &name).await;
        renamed.map_err(|source| WalError::Io {
            op: "rename",
            file: self.device.describe(&segment_name(first)),
            source,
        })?;
        let mut state = self.state.borrow_mut();
        state.free.push(name);
        state.spare_blocked = false;
        drop(state);
        if let Some(waker) = self.wakers.borrow_mut().spare.take() {
            waker.wake();
        }
        Ok(())
    }

    /// The first zxids of the segments on disk, oldest first.
    pub fn segments(&self) -> Vec<Zxid> {
        self.state.borrow().segments.clone()
    }
}

/// The spare a previous run left, kept if it has the segment size: a spare is zero-filled
/// under [`SPARE_TEMP_NAME`] and only then renamed, so one found whole needs no second
/// zero-fill (which would write the segment's size again, just as the first writes after a
/// start want the disk). A half-made one (the temp name, or a wrong size) is removed.
async fn open_spare<D: Device>(
    device: &D,
    config: &WalConfig,
    names: &[String],
) -> Result<Option<Rc<D::File>>, WalError> {
    let io_error = |op, name, source| WalError::Io {
        op,
        file: device.describe(name),
        source,
    };
    if names.iter().any(|n| n == SPARE_TEMP_NAME) {
        let removed = device.remove(SPARE_TEMP_NAME).await;
        removed.map_err(|e| io_error("remove", SPARE_TEMP_NAME, e))?;
    }
    if !names.iter().any(|n| n == SPARE_NAME) {
        return Ok(None);
    }
    let file = device.open(SPARE_NAME).await;
    let file = file.map_err(|e| io_error("open", SPARE_NAME, e))?;
    let len_bytes = file.len_bytes().await;
    if len_bytes.map_err(|e| io_error("stat", SPARE_NAME, e))? == config.segment_bytes {
        return Ok(Some(Rc::new(file)));
    }
    drop(file);
    let removed = device.remove(SPARE_NAME).await;
    removed.map_err(|e| io_error("remove", SPARE_NAME, e))?;
    Ok(None)
}

async fn open_segment<D: Device>(device: &D, first: Zxid) -> Result<D::File, WalError> {
    let name = segment_name(first);
    device.open(&name).await.map_err(|source| WalError::Io {
        op: "open",
        file: device.describe(&name),
        source,
    })
}

async fn remove_segment<D: Device>(device: &D, first: Zxid) -> Result<(), WalError> {
    let name = segment_name(first);
    device.remove(&name).await.map_err(|source| WalError::Io {
        op: "remove",
        file: device.describe(&name),
        source,
    })
}

/// Reads a whole segment.
async fn read_segment<D: Device>(device: &D, first: Zxid) -> Result<Vec<u8>, WalError> {
    read_segment_until(device, first, READ_CHUNK_BYTES, |_, _| usize::MAX).await
}

/// Reads segment `first` from its start, `READ_AHEAD_CHUNKS` chunks of `chunk_bytes` at a
/// time, until it has the first `until(bytes so far, whether that is the whole file)` bytes
/// (or the whole file); tolerates short reads.
async fn read_segment_until<D: Device>(
    device: &D,
    first: Zxid,
    chunk_bytes: usize,
    mut until: impl FnMut(&[u8], bool) -> usize,
) -> Result<Vec<u8>, WalError> {
    let file = open_segment(device, first).await?;
    let io_error = |op, source| WalError::Io {
        op,
        file: device.describe(&segment_name(first)),
        source,
    };
    let len = file.len_bytes().await.map_err(|e| io_error("stat", e))? as usize;
    let mut bytes = Vec::with_capacity(len);
    let mut wanted = len;
    while bytes.len() < wanted {
        let start = bytes.len();
        let reads = (0..READ_AHEAD_CHUNKS)
            .map(|k| start + k * chunk_bytes)
            .take_while(|offset| *offset < wanted)
            .map(|offset| {
                let want = chunk_bytes.min(wanted - offset);
                let file = &file;
                async move { (want, file.read_at(offset as u64, want).await) }
            });
        for (want, read) in futures_util::future::join_all(reads).await {
            let chunk = read.map_err(|e| io_error("read", e))?;
            let chunk: &[u8] = &chunk;
            let got = chunk.len().min(want);
            bytes.extend_from_slice(&chunk[..got]);
            if got < want {
                // A short read: the chunks after it start at the wrong offset.
                break;
            }
        }
        if bytes.len() == start {
            let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
            return Err(io_error("read", eof));
        }
        wanted = len.min(until(&bytes, bytes.len() >= len));
    }
    Ok(bytes)
}

/// Reads and scans segment `first` for recovery, only as far as recovery looks: up to where
/// its records stop and [`recovery_tail_bytes`] past that, except that a segment before the
/// last (`last` false) whose records stop without a seal is read whole (all of it must be zeros
/// after them).
async fn load_segment<D: Device>(
    device: &D,
    config: &WalConfig,
    first: Zxid,
    prev: Option<Zxid>,
    last: bool,
) -> Result<Loaded, WalError> {
    let mut scanner = Scanner::new(config.record_bytes_max, prev);
    // Small segments (tests) are read in smaller chunks, so they too are read in parts.
    let chunk_bytes = READ_CHUNK_BYTES
        .min(config.segment_bytes as usize / 16)
        .max(config.block_bytes);
    let read = read_segment_until(device, first, chunk_bytes, |bytes, complete| match scanner
        .advance(bytes, complete)
    {
        None => usize::MAX,
        Some((_, stop)) if !last && stop != Stop::Sealed => usize::MAX,
        Some((end, _)) => end + recovery_tail_bytes(config),
    })
    .await;
    // The bytes run past the stop the scanner has found, or they are the whole file.
    let bytes = read?;
    let scan = scanner.finish(&bytes);
    Ok(Loaded {
        first,
        bytes: Bytes::from(bytes),
        scan,
    })
}

/// How far past the end of a segment's records recovery looks: the span a torn last batch can
/// cover, then the search for a record of the log one largest record past it (a candidate's
/// record, and the header after it).
fn recovery_tail_bytes(config: &WalConfig) -> usize {
    config.torn_window_bytes() + 3 * (HEADER_BYTES + config.record_bytes_max) + config.block_bytes
}

/// Decides whether the loaded segments are consistent; returns the torn tail to repair.
fn check_segments<D: Device>(
    device: &D,
    config: &WalConfig,
    loaded: &[Loaded],
) -> Result<Option<(Zxid, u64)>, WalError> {
    let block = config.block_bytes;
    let max = config.record_bytes_max;
    // Whether each segment holds any of the log: records, or a record of it past damage.
    let has_data: Vec<bool> = loaded
        .iter()
        .map(|l| {
            let from = l.scan.end_bytes + 1;
            !l.scan.records.is_empty()
                || l.scan.later_record(&l.bytes, l.first, from, max).is_some()
        })
        .collect();
    for (i, l) in loaded.iter().enumerate() {
        let name_error = |offset_bytes, reason: &str| WalError::Corrupt {
            file: device.describe(&segment_name(l.first)),
            offset_bytes,
            reason: reason.to_string(),
        };
        if l.scan.records.first().is_some_and(|(z, _)| *z != l.first) {
            return Err(name_error(
                0,
                "first record's zxid differs from the file name",
            ));
        }
        let later_has_data = has_data[i + 1..].iter().any(|data| *data);
        if l.scan.records.is_empty() && later_has_data {
            return Err(name_error(
                0,
                "segment without records before later segments",
            ));
        }
        if l.scan.is_clean() {
            continue;
        }
        // The records stop before the segment's end without a seal: a torn last write, or a
        // reused file's older records, if nothing of the log follows; damage if something
        // does, beyond what one torn batch can leave behind.
        let end_block = l.scan.end_bytes / block * block;
        let beyond_torn = (end_block + config.torn_window_bytes()).max(l.scan.end_bytes + 1);
        let resumes_far = l
            .scan
            .later_record(&l.bytes, l.first, beyond_torn, max)
            .is_some();
        if later_has_data || resumes_far {
            return Err(corrupt(device, l.first, &l.scan));
        }
        return Ok(Some((l.first, l.scan.end_bytes as u64)));
    }
    Ok(None)
}

fn corrupt<D: Device>(device: &D, first: Zxid, scan: &SegmentScan) -> WalError {
    WalError::Corrupt {
        file: device.describe(&segment_name(first)),
        offset_bytes: scan.end_bytes as u64,
        reason: scan.reason().to_string(),
    }
}

/// Zeroes `[end_bytes, zero_end_bytes)` of a loaded segment durably, rewriting the partial
/// block before it with its valid prefix.
async fn zero_after_end<D: Device>(
    device: &D,
    config: &WalConfig,
    loaded: &Loaded,
    zero_end_bytes: usize,
) -> Result<(), WalError> {
    let block = config.block_bytes;
    let end = loaded.scan.end_bytes;
    let start = end / block * block;
    let stop = zero_end_bytes.next_multiple_of(block);
    if zero_end_bytes <= end {
        return Ok(());
    }
    let name = segment_name(loaded.first);
    let file = open_segment(device, loaded.first).await?;
    let mut buf = file.alloc_buf(stop - start);
    let bytes = buf.as_mut_bytes();
    bytes.fill(0);
    bytes[..end - start].copy_from_slice(&loaded.bytes[start..end]);
    write_and_sync(device, &file, &name, buf, start as u64).await
}

/// Writes `buf` at `offset_bytes` of the segment file `name` and syncs it. Lack of space is
/// [`WalError::NoSpace`] (nothing was written); any other failure is fatal.
async fn write_and_sync<D: Device>(
    device: &D,
    file: &D::File,
    name: &str,
    mut buf: <D::File as SegmentFile>::Buf,
    offset_bytes: u64,
) -> Result<(), WalError> {
    let len_bytes = buf.as_mut_bytes().len();
    let write_failed = |reason: String| WalError::WriteFailed {
        file: device.describe(name),
        offset_bytes,
        len_bytes,
        reason,
    };
    match file.write_at(buf, offset_bytes).await {
        Ok(n) if n == len_bytes => {}
        Ok(n) => return Err(write_failed(format!("short write of {n} bytes"))),
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            return Err(WalError::NoSpace {
                file: device.describe(name),
                source: e,
            })
        }
        Err(e) => return Err(write_failed(e.to_string())),
    }
    file.sync_data()
        .await
        .map_err(|source| WalError::SyncFailed {
            file: device.describe(name),
            source,
        })
}

fn position_of(config: &WalConfig, loaded: &Loaded) -> Position {
    let end = loaded.scan.end_bytes;
    let start = end / config.block_bytes * config.block_bytes;
    Position::at_end(
        loaded.first,
        end as u64,
        loaded.bytes[start..end].to_vec(),
        loaded.scan.last_zxid().expect("a kept segment has records"),
    )
}

fn records_of(loaded: &Loaded, after: Zxid) -> impl Iterator<Item = WalRecord> + '_ {
    loaded
        .scan
        .records
        .iter()
        .filter(move |(z, _)| *z > after)
        .map(|(zxid, range)| WalRecord {
            zxid: *zxid,
            payload: loaded.bytes.slice(range.clone()),
        })
}

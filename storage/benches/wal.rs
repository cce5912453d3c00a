//! WAL group-commit throughput on the real disk, next to the raw write+fdatasync loop done with
//! glommio's DmaFile and with the io-uring crate directly (linked write + fdatasync).
//!
//! `cargo bench -p zinc-storage --bench wal -- [--dir DIR] [--seconds S] [--mode MODE]`
//!    `[--trials N] [--batch-kib 4,16,...] [--payloads 100,1024]`
//! MODE: `wal` (saturating: every batch is batch_bytes_max), `clients` (closed loop: N tasks
//! append one record and wait for it), `dma-raw`, `uring-raw`, `fio` (runs fio if installed),
//! `all` (default), or several joined by commas. Trials interleave all configurations; the
//! table gives medians.
//! DIR must be on the disk under test (default `target/wal-bench`). Output: a markdown table.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::DmaFile;
use io_uring::{opcode, squeue, types, IoUring};
use zinc_protocol::types::Zxid;
use zinc_storage::wal::record::HEADER_BYTES;
use zinc_storage::wal::{free_name, prime_dma, DmaDevice, Wal, WalConfig, WalStats};

const KIB: usize = 1024;
const BATCH_SIZES_BYTES: [usize; 5] = [4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, 1024 * KIB];
const PAYLOAD_SIZES_BYTES: [usize; 2] = [100, 1024];
const CLIENT_COUNTS: [usize; 4] = [1, 16, 64, 256];
/// Size of the file the raw loops write over and over (like fio's --size).
const RAW_FILE_BYTES: u64 = 64 << 20;

struct Args {
    dir: PathBuf,
    seconds: f64,
    trials: usize,
    mode: String,
    batches_bytes: Vec<usize>,
    payloads_bytes: Vec<usize>,
}

fn parse_list(flag: &str, value: &str, unit: usize) -> Vec<usize> {
    value
        .split(',')
        .map(|v| {
            v.parse::<usize>()
                .unwrap_or_else(|_| panic!("{flag} takes numbers"))
                * unit
        })
        .collect()
}

fn parse_args() -> Args {
    let mut args = Args {
        dir: PathBuf::from("target/wal-bench"),
        seconds: 1.0,
        trials: 5,
        mode: "all".to_string(),
        batches_bytes: BATCH_SIZES_BYTES.to_vec(),
        payloads_bytes: PAYLOAD_SIZES_BYTES.to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = PathBuf::from(value()),
            "--seconds" => args.seconds = value().parse().expect("--seconds takes a number"),
            "--trials" => args.trials = value().parse().expect("--trials takes a number"),
            "--mode" => args.mode = value(),
            "--batch-kib" => args.batches_bytes = parse_list(&flag, &value(), KIB),
            "--payloads" => args.payloads_bytes = parse_list(&flag, &value(), 1),
            "--bench" => {} // cargo bench passes it
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// One timed run: `records` log records (0 for raw loops) in `log_bytes`, `syncs` fdatasyncs,
/// `written_bytes` actually written.
#[derive(Clone, Copy)]
struct Sample {
    records: u64,
    log_bytes: u64,
    syncs: u64,
    written_bytes: u64,
    secs: f64,
}

impl Sample {
    fn raw(syncs: u64, batch: usize, secs: f64) -> Self {
        let bytes = syncs * batch as u64;
        Self {
            records: 0,
            log_bytes: bytes,
            syncs,
            written_bytes: bytes,
            secs,
        }
    }

    fn mb_per_s(&self) -> f64 {
        self.log_bytes as f64 / self.secs / 1e6
    }
}

/// Rows in first-seen order; each collects one sample per trial.
#[derive(Default)]
struct Table {
    rows: Vec<((String, String), Vec<Sample>)>,
}

impl Table {
    fn add(&mut self, label: &str, column: String, sample: Sample) {
        let key = (label.to_string(), column);
        match self.rows.iter_mut().find(|(k, _)| *k == key) {
            Some((_, samples)) => samples.push(sample),
            None => self.rows.push((key, vec![sample])),
        }
    }

    fn median_mb(&self, label: &str, column: &str) -> Option<f64> {
        let (_, samples) = self
            .rows
            .iter()
            .find(|((l, c), _)| l == label && c == column)?;
        Some(median(samples.iter().map(Sample::mb_per_s)))
    }

    fn print(&self) {
        println!("| what | batch KiB / clients | MB/s median | MB/s best | syncs/s median | records/s median | avg write KiB | vs best fio |");
        println!("|---|---|---|---|---|---|---|---|");
        for ((label, column), samples) in &self.rows {
            let best = samples.iter().map(Sample::mb_per_s).fold(0.0, f64::max);
            let per_s =
                |f: fn(&Sample) -> u64| median(samples.iter().map(|s| f(s) as f64 / s.secs));
            let written: u64 = samples.iter().map(|s| s.written_bytes).sum();
            let syncs: u64 = samples.iter().map(|s| s.syncs).sum();
            let fio = ["fio psync", "fio io_uring"]
                .iter()
                .filter_map(|f| self.median_mb(f, column))
                .fold(0.0, f64::max);
            let versus = if label.starts_with("WAL") && fio > 0.0 {
                format!(
                    "{:.0}%",
                    100.0 * median(samples.iter().map(Sample::mb_per_s)) / fio
                )
            } else {
                "-".to_string()
            };
            println!(
                "| {label} | {column} | {:.1} | {best:.1} | {:.0} | {:.0} | {:.1} | {versus} |",
                median(samples.iter().map(Sample::mb_per_s)),
                per_s(|s| s.syncs),
                per_s(|s| s.records),
                written as f64 / syncs.max(1) as f64 / KIB as f64,
            );
        }
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.dir).expect("create bench dir");
    let run = |mode: &str| args.mode == "all" || args.mode.split(',').any(|m| m == mode);
    let secs = args.seconds;
    let mut table = Table::default();
    // Trials interleave every configuration so that noise from other disk users hits all alike.
    for _ in 0..args.trials {
        for &batch in &args.batches_bytes {
            let col = format!("{}", batch / KIB);
            if run("fio") {
                for engine in ["psync", "io_uring"] {
                    if let Some(s) = fio(&args.dir, engine, batch, secs) {
                        table.add(&format!("fio {engine}"), col.clone(), s);
                    }
                }
            }
            if run("uring-raw") {
                let s = uring_raw(&args.dir, batch, secs, true);
                table.add("io-uring linked write+fdatasync", col.clone(), s);
                let s = uring_raw(&args.dir, batch, secs, false);
                table.add("io-uring write, then fdatasync", col.clone(), s);
            }
            if run("dma-raw") {
                let s = on_executor(dma_raw(args.dir.clone(), batch, secs, false));
                table.add("glommio DmaFile write, then fdatasync", col.clone(), s);
                let s = on_executor(dma_raw(args.dir.clone(), batch, secs, true));
                table.add("glommio DmaFile O_DSYNC write", col.clone(), s);
                let s = on_executor(blocking_uring_raw(args.dir.clone(), batch, secs));
                table.add("glommio spawn_blocking: io-uring linked", col.clone(), s);
            }
            if run("wal") {
                for &payload in &args.payloads_bytes {
                    let s = on_executor(wal_saturating(args.dir.clone(), payload, batch, secs));
                    table.add(&format!("WAL {payload} B records"), col.clone(), s);
                }
            }
        }
        if run("clients") {
            for &payload in &args.payloads_bytes {
                for &clients in &CLIENT_COUNTS {
                    let s = on_executor(wal_clients(args.dir.clone(), payload, clients, secs));
                    let label = format!("WAL clients, {payload} B records");
                    table.add(&label, format!("{clients} clients"), s);
                }
            }
        }
    }
    table.print();
}

fn on_executor<T: Send + 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::default()
        .io_memory(2 << 20)
        .make()
        .expect("glommio executor")
        .run(f)
}

/// fio's sequential O_DIRECT write with an fdatasync after each block, over the same
/// pre-zeroed file the raw loops use; `None` if fio is not installed.
fn fio(dir: &Path, engine: &str, batch: usize, seconds: f64) -> Option<Sample> {
    let path = prezeroed_file(dir);
    let out = std::process::Command::new("fio")
        .args([
            "--name=w",
            "--rw=write",
            "--direct=1",
            "--fdatasync=1",
            "--size=64m",
        ])
        .arg(format!("--ioengine={engine}"))
        .arg(format!("--bs={batch}"))
        .arg(format!("--runtime={}ms", (seconds * 1000.0) as u64))
        .args(["--time_based", "--output-format=terse", "--terse-version=3"])
        .arg(format!("--filename={}", path.display()))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Terse v3: field 49 is write IOPS, field 50 the write runtime in ms.
    let fields: Vec<&str> = text.lines().last()?.split(';').collect();
    let iops: f64 = fields.get(48)?.parse().ok()?;
    Some(Sample::raw((iops * seconds) as u64, batch, seconds))
}

fn wal_config(batch: usize) -> WalConfig {
    WalConfig {
        batch_bytes_max: batch,
        record_bytes_max: 2048,
        pending_bytes_max: (4 * batch).max(64 * KIB),
        ..WalConfig::default()
    }
}

fn wal_sample(stats: &WalStats, payload: usize, secs: f64) -> Sample {
    Sample {
        records: stats.records,
        log_bytes: stats.records * (payload + HEADER_BYTES) as u64,
        syncs: stats.batches,
        written_bytes: stats.written_bytes,
        secs,
    }
}

/// A fresh log for one run, its spare segment ready and [`Wal::run`] flushing. The previous
/// run's segment files are left as purged ones (`.free`, up to four), which the log reuses as
/// spares: the steady state of a server whose snapshots let it purge its log. Only the first
/// run on a new directory zero-fills its spares.
async fn fresh_wal(dir: &Path, name: &str, batch: usize) -> Rc<Wal<DmaDevice>> {
    let wal_dir = dir.join(name);
    keep_segments_as_free(&wal_dir);
    let device = DmaDevice::open(&wal_dir).await.expect("wal dir");
    let (wal, _) = Wal::open(device, wal_config(batch), Zxid::ZERO)
        .await
        .expect("open wal");
    wal.prepare_spare().await.expect("spare segment");
    let wal = Rc::new(wal);
    glommio::spawn_local({
        let wal = wal.clone();
        async move { panic!("WAL stopped: {}", wal.run().await) }
    })
    .detach();
    wal
}

/// Keeps the segment-sized files of an earlier run (segments, purged ones, the spare) as purged
/// files for reuse, at most four, and removes every other file of `wal_dir`.
fn keep_segments_as_free(wal_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(wal_dir) else {
        return;
    };
    let mut kept = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let full = entry
            .metadata()
            .is_ok_and(|m| m.len() == WalConfig::default().segment_bytes);
        if full && kept.len() < 4 {
            let temporary = wal_dir.join(format!("keep-{}", kept.len()));
            std::fs::rename(&path, &temporary).expect("rename");
            kept.push(temporary);
        } else {
            std::fs::remove_file(&path).expect("remove");
        }
    }
    // Names no segment of a run takes (its zxids start at 1).
    for (i, path) in kept.iter().enumerate() {
        let name = free_name(Zxid(0x7000_0000_0000_0000 + i as i64));
        std::fs::rename(path, wal_dir.join(name)).expect("rename");
    }
}

/// Purges every segment but the newest, as a server does once a snapshot covers them.
async fn purge_old_segments(wal: &Wal<DmaDevice>) {
    let segments = wal.segments();
    if let [.., newest] = segments[..] {
        if segments.len() > 1 {
            wal.purge_through(Zxid(newest.0 - 1)).await.expect("purge");
        }
    }
}

/// Keeps two full batches queued behind the one in flight, so every batch is
/// `batch_bytes_max`.
async fn wal_saturating(dir: PathBuf, payload: usize, batch: usize, seconds: f64) -> Sample {
    let wal = fresh_wal(&dir, "saturating", batch).await;
    let data = vec![0x5a; payload];
    let mut zxid = 0i64;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    while Instant::now() < deadline {
        while wal.pending_bytes() < 3 * batch {
            zxid += 1;
            wal.append(Zxid(zxid), &data).expect("append");
        }
        let next = wal.durable_zxid().map_or(1, |d| d.0 + 1);
        wal.wait_durable(Zxid(next)).await.expect("durable");
        purge_old_segments(&wal).await;
    }
    let secs = start.elapsed().as_secs_f64();
    wal_sample(&wal.stats(), payload, secs)
}

/// `clients` tasks each append one record, wait until it is durable, and repeat.
async fn wal_clients(dir: PathBuf, payload: usize, clients: usize, seconds: f64) -> Sample {
    let wal = fresh_wal(&dir, "clients", 1024 * KIB).await;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let wal = wal.clone();
        tasks.push(glommio::spawn_local(async move {
            let data = vec![0x5a; payload];
            while Instant::now() < deadline {
                let z = Zxid(wal.last_appended().map_or(1, |l| l.0 + 1));
                wal.append(z, &data).expect("append");
                wal.wait_durable(z).await.expect("durable");
                if client == 0 {
                    purge_old_segments(&wal).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    wal_sample(&wal.stats(), payload, secs)
}

/// A pre-zeroed file for the raw loops (written once, so every later write is an overwrite).
fn prezeroed_file(dir: &Path) -> PathBuf {
    let path = dir.join("raw.dat");
    let fresh = std::fs::metadata(&path).map_or(true, |m| m.len() != RAW_FILE_BYTES);
    if fresh {
        std::fs::write(&path, vec![0u8; RAW_FILE_BYTES as usize]).expect("write raw file");
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .expect("sync raw file");
    }
    path
}

/// Writes `batch` bytes per round through a glommio DmaFile: a write, then an fdatasync; or,
/// with `dsync`, one write on a file opened with O_DSYNC (durable when it completes, one trip
/// through the executor's ring instead of two).
async fn dma_raw(dir: PathBuf, batch: usize, seconds: f64, dsync: bool) -> Sample {
    prime_dma(&dir).await.expect("prime dma");
    let path = prezeroed_file(&dir);
    let file = glommio::io::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(if dsync { libc::O_DSYNC } else { 0 })
        .dma_open(&path)
        .await
        .expect("open raw file");
    let mut offset = 0u64;
    let mut syncs = 0;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    while Instant::now() < deadline {
        let mut buf = DmaFile::alloc_dma_buffer(&file, batch);
        buf.as_bytes_mut().fill(0x5a);
        file.write_at(buf, offset).await.expect("write");
        if !dsync {
            file.fdatasync().await.expect("fdatasync");
        }
        offset = (offset + batch as u64) % RAW_FILE_BYTES;
        syncs += 1;
    }
    Sample::raw(syncs, batch, start.elapsed().as_secs_f64())
}

thread_local! {
    static RING: std::cell::RefCell<Option<IoUring>> = const { std::cell::RefCell::new(None) };
}

/// One linked write+fdatasync on the calling thread's ring; blocks until both complete.
fn linked_write_sync(fd: i32, ptr: usize, len: usize, offset: u64) -> i32 {
    RING.with(|ring| {
        let mut ring = ring.borrow_mut();
        let ring = ring.get_or_insert_with(|| IoUring::new(8).expect("io_uring"));
        let fd = types::Fd(fd);
        let write = opcode::Write::new(fd, ptr as *const u8, len as u32)
            .offset(offset)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(1);
        let sync = opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(2);
        // SAFETY: the caller keeps the buffer and the fd alive until this returns.
        unsafe {
            ring.submission()
                .push_multiple(&[write, sync])
                .expect("sq full")
        };
        ring.submit_and_wait(2).expect("submit");
        ring.completion().map(|c| c.result()).min().unwrap_or(-1)
    })
}

/// The glommio executor hands each linked write+fdatasync to its blocking thread pool, so the
/// executor thread never blocks: what a WAL on io-uring inside the Zab core would cost.
async fn blocking_uring_raw(dir: PathBuf, batch: usize, seconds: f64) -> Sample {
    let path = prezeroed_file(&dir);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .expect("open O_DIRECT");
    let fd = file.as_raw_fd();
    let buf = AlignedBuf::new(batch);
    let ptr = buf.ptr as usize;
    let mut offset = 0u64;
    let mut syncs = 0;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    while Instant::now() < deadline {
        let at = offset;
        let result = glommio::executor()
            .spawn_blocking(move || linked_write_sync(fd, ptr, batch, at))
            .await;
        assert!(result >= 0, "linked write+fdatasync failed: {result}");
        offset = (offset + batch as u64) % RAW_FILE_BYTES;
        syncs += 1;
    }
    Sample::raw(syncs, batch, start.elapsed().as_secs_f64())
}

/// Aligned heap memory for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    layout: Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len, 4096).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "allocation failed");
        Self { ptr, layout }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// Writes `batch` bytes and fdatasyncs, in one linked submission or in two round trips.
fn uring_raw(dir: &Path, batch: usize, seconds: f64, linked: bool) -> Sample {
    let path = prezeroed_file(dir);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .expect("open O_DIRECT");
    let fd = types::Fd(file.as_raw_fd());
    let buf = AlignedBuf::new(batch);
    let mut ring = IoUring::new(8).expect("io_uring");
    let mut offset = 0u64;
    let mut syncs = 0;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    while Instant::now() < deadline {
        let write = opcode::Write::new(fd, buf.ptr, batch as u32)
            .offset(offset)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(1);
        let sync = opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(2);
        let rounds: &[&[squeue::Entry]] = if linked {
            &[&[write, sync]]
        } else {
            &[&[write], &[sync]]
        };
        for entries in rounds {
            // SAFETY: the buffer and the fd outlive the operations: we wait for them below.
            unsafe { ring.submission().push_multiple(entries).expect("sq full") };
            ring.submit_and_wait(entries.len()).expect("submit");
            for cqe in ring.completion() {
                assert!(
                    cqe.result() >= 0,
                    "op {} failed: {}",
                    cqe.user_data(),
                    cqe.result()
                );
            }
        }
        offset = (offset + batch as u64) % RAW_FILE_BYTES;
        syncs += 1;
    }
    Sample::raw(syncs, batch, start.elapsed().as_secs_f64())
}

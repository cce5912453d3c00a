//! Benchmark of `storage::tree` (a plain binary, not a timed test):
//!
//!   cargo bench -p zinc-storage --bench tree -- [znodes] [data_bytes] [phase...]
//!
//! Phases (all when none is named; the load's creates always run): `set`, `publish`, `clone`,
//! `reads`, `delete`. Naming some is for profiling one of them.
//!
//! On one thread: apply throughput for create, setData and delete (txns built before the
//! clock starts, in chunks, so their memory does not count); the same setData load while a
//! root is published (cloned, the previous one dropped) every batch, to show what
//! copy-on-write costs per batch; read throughput; and resident memory per znode for the
//! loaded tree. Znodes are laid out as scripts/bench/zk_tree_memory.py loads them into Apache
//! ZooKeeper: /bench/dNNNN/nNNNNNN, 1000 per directory.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use zinc_protocol::txn::{CreateTxn, DeleteTxn, SetDataTxn, Txn, TxnHeader};
use zinc_protocol::Acl;
use zinc_storage::tree::Tree;

/// Counts the bytes this thread holds from the allocator, so the benchmark can tell the tree's
/// live memory from what the allocator keeps around it. The allocator is mimalloc, the one the
/// `zinc` server runs with. The count is per thread and not atomic (the benchmark runs on one
/// thread), so counting adds almost nothing to the timed sections: the server's allocator
/// counts nothing.
struct Counting;

thread_local! {
    static LIVE_BYTES: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: during thread teardown the slot may be gone; those bytes are not the tree's.
    let _ = LIVE_BYTES.try_with(|live| live.set(live.get() + delta));
}

// SAFETY: forwards every call to mimalloc unchanged; only counts sizes.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        count(-(layout.size() as isize));
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on as is (mimalloc resizes in
        // place when the block allows, as the server's allocator does).
        let moved = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, size) };
        if !moved.is_null() {
            count(size as isize - layout.size() as isize);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> i64 {
    LIVE_BYTES.with(|live| live.get()) as i64
}

const PER_DIRECTORY: usize = 1000;
const CHUNK: usize = 50_000;
const READS: usize = 2_000_000;
const BATCHES_PUBLISHED: [usize; 3] = [100, 1000, 10_000];

fn node_path(i: usize) -> String {
    format!("/bench/d{:04}/n{i:06}", i / PER_DIRECTORY)
}

/// Returns the free memory the allocator holds to the system (the txns built for the load
/// are freed by then and are not part of the tree).
fn trim_allocator() {
    // SAFETY: mi_collect only returns free memory of the allocator this binary uses.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Resident set size of this process, from /proc/self/statm.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// CPU time this thread has run, from /proc/thread-self/schedstat (nanoseconds), so results
/// do not depend on how busy the other cores' tenants keep this machine.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// Wall and CPU time of a measured section.
#[derive(Clone, Copy, Default)]
struct Took {
    wall: Duration,
    cpu: Duration,
}

impl Took {
    fn start() -> (Instant, Duration) {
        (Instant::now(), thread_cpu())
    }

    fn since((wall, cpu): (Instant, Duration)) -> Took {
        Took {
            wall: wall.elapsed(),
            cpu: thread_cpu().saturating_sub(cpu),
        }
    }

    fn add(self, other: Took) -> Took {
        Took {
            wall: self.wall + other.wall,
            cpu: self.cpu + other.cpu,
        }
    }
}

/// A simple seeded PRNG for the read mix (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound as u64) as usize
    }
}

struct Load {
    tree: Tree,
    zxid: i64,
}

impl Load {
    fn header(&mut self, txn: &Txn) -> TxnHeader {
        self.zxid += 1;
        TxnHeader {
            client_id: 1,
            cxid: 0,
            zxid: self.zxid,
            time: 1_764_547_200_000 + (self.zxid & 0xffff_ffff),
            op_type: txn.op().as_i32(),
        }
    }

    /// Applies `count` txns made by `make`, timing only `apply`; publishes a root (clones the
    /// tree and drops the previous clone) every `publish_every` txns when given.
    fn run(
        &mut self,
        count: usize,
        publish_every: Option<usize>,
        make: impl Fn(usize) -> Txn,
    ) -> Took {
        let mut elapsed = Took::default();
        // Without publishing, no clone is held: every node and branch stays unshared.
        let mut published = publish_every.map(|_| self.tree.clone());
        for start in (0..count).step_by(CHUNK) {
            let chunk: Vec<(TxnHeader, Txn)> = (start..count.min(start + CHUNK))
                .map(|i| {
                    let txn = make(i);
                    (self.header(&txn), txn)
                })
                .collect();
            let began = Took::start();
            for (at, (header, txn)) in chunk.iter().enumerate() {
                let outcome = self.tree.apply(header, txn);
                debug_assert_eq!(outcome.err, zinc_protocol::ErrorCode::Ok);
                black_box(outcome);
                if publish_every.is_some_and(|every| (start + at + 1) % every == 0) {
                    published = Some(self.tree.clone());
                }
            }
            elapsed = elapsed.add(Took::since(began));
        }
        drop(published);
        elapsed
    }
}

fn create(path: String, data: &Bytes) -> Txn {
    Txn::Create(CreateTxn {
        path,
        data: Some(data.clone()),
        acl: Acl::open_unsafe(),
        ephemeral: false,
        parent_cversion: -1,
    })
}

/// One result line: throughput and time per op by CPU time (the figure to quote), then wall.
fn report(what: &str, count: usize, took: Took) {
    let cpu_ns = took.cpu.as_nanos() as f64 / count as f64;
    let wall_ns = took.wall.as_nanos() as f64 / count as f64;
    println!(
        "{what:<42} {count:>8} ops {:>11.0} ops/s(cpu) {cpu_ns:>8.0} ns/op(cpu) {wall_ns:>8.0} ns/op(wall)",
        count as f64 / took.cpu.as_secs_f64().max(1e-9),
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    // `cargo bench` adds `--bench`: flags are not phases.
    let phases: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| arg.parse::<usize>().is_err() && !arg.starts_with("--"))
        .collect();
    let runs = |phase: &str| phases.is_empty() || phases.iter().any(|named| named == phase);
    let znodes = args.first().copied().unwrap_or(1_000_000);
    let data_bytes = args.get(1).copied().unwrap_or(100);
    let data = Bytes::from(vec![b'x'; data_bytes]);
    let directories = znodes.div_ceil(PER_DIRECTORY);
    println!("zinc tree benchmark: {znodes} znodes, {data_bytes}-byte data, one thread");

    trim_allocator();
    let rss_empty = rss_bytes();
    let live_empty = live_bytes();
    let mut load = Load {
        tree: Tree::new(),
        // Epoch 1, as a server's zxids are after its first election (zxids are stored as
        // variable-length integers, so small ones would flatter the memory figure).
        zxid: 1 << 32,
    };
    load.run(1, None, |_| create("/bench".into(), &Bytes::new()));
    load.run(directories, None, |d| {
        create(format!("/bench/d{d:04}"), &Bytes::new())
    });
    let took = load.run(znodes, None, |i| create(node_path(i), &data));
    report("create", znodes, took);
    let rss_untrimmed = rss_bytes();
    trim_allocator();
    let rss_loaded = rss_bytes();
    let per_znode = (rss_loaded - rss_empty) as f64 / znodes as f64;
    let untrimmed_per_znode = (rss_untrimmed - rss_empty) as f64 / znodes as f64;
    let live_per_znode = (live_bytes() - live_empty) as f64 / znodes as f64;
    println!("live heap: {live_per_znode:.0} bytes/znode (allocations requested)");
    println!(
        "resident memory: {:.1} MiB for {znodes} znodes = {per_znode:.0} bytes/znode (RSS delta \
         after mi_collect; {untrimmed_per_znode:.0} before it, with the allocator's free memory)",
        (rss_loaded - rss_empty) as f64 / (1 << 20) as f64
    );

    let set = |i: usize| {
        Txn::SetData(SetDataTxn {
            path: node_path(i),
            data: Some(data.clone()),
            version: 1,
        })
    };
    // `set` named n times runs n times (to profile setData apart from the load).
    let set_runs = phases.iter().filter(|named| *named == "set").count();
    for _ in 0..set_runs.max(usize::from(phases.is_empty())) {
        let took = load.run(znodes, None, set);
        report("setData", znodes, took);
    }
    for every in BATCHES_PUBLISHED.into_iter().filter(|_| runs("publish")) {
        let took = load.run(znodes, Some(every), set);
        report(
            &format!("setData, root published every {every} txns"),
            znodes,
            took,
        );
    }
    if runs("clone") {
        let began = Took::start();
        let clones = 1_000_000;
        for _ in 0..clones {
            black_box(load.tree.clone());
        }
        report("publish: Tree::clone", clones, Took::since(began));
    }
    if runs("reads") {
        reads(&load.tree, znodes, directories);
    }
    if runs("delete") {
        let took = load.run(znodes, None, |i| {
            Txn::Delete(DeleteTxn { path: node_path(i) })
        });
        report("delete", znodes, took);
    }
    println!("nodes left: {}", load.tree.node_count());
}

fn reads(tree: &Tree, znodes: usize, directories: usize) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let paths: Vec<String> = (0..READS).map(|_| node_path(rng.below(znodes))).collect();
    let began = Took::start();
    for path in &paths {
        black_box(tree.get_data(path));
    }
    report("getData (random node)", READS, Took::since(began));
    let began = Took::start();
    for path in &paths {
        black_box(tree.stat(path));
    }
    report("exists (random node)", READS, Took::since(began));
    let dirs: Vec<String> = (0..READS / 100)
        .map(|_| format!("/bench/d{:04}", rng.below(directories)))
        .collect();
    let began = Took::start();
    for dir in &dirs {
        black_box(tree.children(dir));
    }
    report(
        "getChildren (1000 children)",
        dirs.len(),
        Took::since(began),
    );
    let began = Took::start();
    for dir in dirs.iter().take(1000) {
        black_box(tree.all_children_number(dir));
    }
    report(
        "getAllChildrenNumber (1000 below)",
        1000,
        Took::since(began),
    );
}

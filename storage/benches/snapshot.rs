//! Snapshot write and load time for a large tree.
//!
//! `cargo bench -p zinc-storage --bench snapshot -- [--nodes N] [--data-bytes B] [--dir DIR]`
//! Builds a tree of N znodes (1000 per parent) with B bytes of data each, then times encode,
//! the durable write (temp file, fsync, rename; with the calling thread's CPU time for both),
//! and load (mmap, checksum, rkyv validation, tree rebuild, digest check). Prints a markdown
//! table.

use std::path::PathBuf;
use std::time::Instant;

use zinc_protocol::{Acl, StatPersisted};
use zinc_storage::snapshot;
use zinc_storage::tree::Tree;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut nodes = 1_000_000usize;
    let mut data_bytes = 64usize;
    let mut dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("snapshot-bench");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--nodes" => nodes = value().parse().expect("--nodes takes a number"),
            "--data-bytes" => data_bytes = value().parse().expect("--data-bytes takes a number"),
            "--dir" => dir = PathBuf::from(value()),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let start = Instant::now();
    let tree = build(nodes, data_bytes);
    let build_s = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let cpu = thread_cpu_s();
    let bytes = snapshot::encode(&tree).expect("encode");
    let encode_s = start.elapsed().as_secs_f64();
    let encode_cpu_s = thread_cpu_s() - cpu;
    drop(bytes);

    let start = Instant::now();
    let cpu = thread_cpu_s();
    let path = snapshot::write(&dir, &tree).expect("write");
    let write_s = start.elapsed().as_secs_f64();
    let write_cpu_s = thread_cpu_s() - cpu;
    let size_mb = std::fs::metadata(&path).expect("stat").len() as f64 / 1e6;

    let file_bytes = std::fs::read(&path).expect("read");
    let start = Instant::now();
    snapshot::verify(&file_bytes).expect("verify");
    let verify_s = start.elapsed().as_secs_f64();
    drop(file_bytes);

    let start = Instant::now();
    let loaded = snapshot::load_newest(&dir).expect("load");
    let load_s = start.elapsed().as_secs_f64();
    let (restored, _, _) = loaded.newest.expect("a snapshot");
    assert_eq!(restored.digest(), tree.digest());

    println!("| znodes | data B | file MB | build tree s | encode s (CPU) | write (encode+fsync+rename) s (CPU) | verify (CRC + rkyv check) s | load s |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {data_bytes} | {size_mb:.1} | {build_s:.2} | {encode_s:.2} ({encode_cpu_s:.2}) | {write_s:.2} ({write_cpu_s:.2}) | {verify_s:.2} | {load_s:.2} |",
        tree.node_count()
    );
}

/// CPU time of the calling thread (user and system), in seconds: the write is paced, so its
/// wall time is mostly sleeping.
fn thread_cpu_s() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
}

/// `nodes` znodes under /bench/pNNNN, 1000 per parent.
fn build(nodes: usize, data_bytes: usize) -> Tree {
    let mut tree = Tree::new();
    let acl = Acl::open_unsafe();
    let data = vec![0x61u8; data_bytes];
    let mut zxid = 1i64;
    let stat = |zxid: i64| StatPersisted {
        czxid: zxid,
        mzxid: zxid,
        ctime: 1_700_000_000_000 + zxid,
        mtime: 1_700_000_000_000 + zxid,
        pzxid: zxid,
        ..StatPersisted::default()
    };
    tree.restore_node("/bench", &stat(zxid), None, &acl)
        .expect("restore");
    for i in 0..nodes.div_ceil(1000) {
        zxid += 1;
        let parent = format!("/bench/p{i:04}");
        tree.restore_node(&parent, &stat(zxid), None, &acl)
            .expect("restore");
        for j in 0..1000.min(nodes - i * 1000) {
            zxid += 1;
            let path = format!("{parent}/n{j:04}");
            tree.restore_node(&path, &stat(zxid), Some(&data), &acl)
                .expect("restore");
        }
    }
    tree
}

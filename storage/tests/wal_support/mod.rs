//! Helpers shared by the WAL integration tests: a small config, deterministic payloads, and
//! open/append/flush shorthands over the in-memory device.
#![allow(dead_code)] // each test file uses a different subset

use std::rc::Rc;

use futures_lite::future::block_on;
use zinc_protocol::types::Zxid;
use zinc_storage::wal::{Device, MemDevice, Recovered, Wal, WalConfig, WalError};

/// Small segments and batches so that tests roll segments and split batches quickly.
pub fn small_config() -> WalConfig {
    WalConfig {
        segment_bytes: 64 * 1024,
        block_bytes: 4096,
        batch_bytes_max: 8192,
        batch_records_max: 64,
        record_bytes_max: 2048,
        pending_bytes_max: 1 << 20,
        ..WalConfig::default()
    }
}

/// A payload derived from the zxid, `len` bytes long, so any mix-up shows.
pub fn payload(zxid: i64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (zxid as usize * 31 + i * 7) as u8)
        .collect()
}

pub fn open(dev: &MemDevice) -> Result<(Wal<MemDevice>, Recovered), WalError> {
    block_on(open_async(dev))
}

pub async fn open_async(dev: &MemDevice) -> Result<(Wal<MemDevice>, Recovered), WalError> {
    Wal::open(dev.clone(), small_config(), Zxid::ZERO).await
}

/// Runs `f` on a glommio executor small enough to start under the default memlock limit.
pub fn on_glommio<T: Send + 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .make()
        .expect("glommio executor")
        .run(f)
}

/// Appends `zxids` with payloads of `len` bytes and flushes until all are durable.
pub fn append_durable(wal: &Wal<MemDevice>, zxids: impl IntoIterator<Item = i64>, len: usize) {
    for z in zxids {
        wal.append(Zxid(z), &payload(z, len)).expect("append");
    }
    flush_all(wal).expect("flush");
}

pub fn flush_all(wal: &Wal<MemDevice>) -> Result<(), WalError> {
    while block_on(wal.flush())?.is_some() {}
    Ok(())
}

/// Zxids of the recovered records, checking each payload against [`payload`].
pub fn check_records(recovered: &Recovered, len: usize) -> Vec<i64> {
    recovered
        .records
        .iter()
        .map(|r| {
            assert!(
                r.payload == payload(r.zxid.0, len),
                "wrong payload for zxid {}",
                r.zxid
            );
            r.zxid.0
        })
        .collect()
}

/// On a glommio executor: `writers` tasks each append `per_writer` records of `len` bytes (the
/// next zxid each time) and wait for each to be durable, while a task runs the flusher.
pub async fn concurrent_appends<D: Device + 'static>(
    wal: &Rc<Wal<D>>,
    writers: usize,
    per_writer: usize,
    len: usize,
) {
    let flusher = glommio::spawn_local({
        let wal = wal.clone();
        async move { wal.run().await }
    })
    .detach();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let wal = wal.clone();
        tasks.push(glommio::spawn_local(async move {
            for _ in 0..per_writer {
                let z = wal.last_appended().map_or(1, |l| l.0 + 1);
                wal.append(Zxid(z), &payload(z, len)).expect("append");
                wal.wait_durable(Zxid(z)).await.expect("durable");
                assert!(wal.durable_zxid() >= Some(Zxid(z)));
            }
        }));
    }
    for task in tasks {
        task.await;
    }
    flusher.cancel();
}

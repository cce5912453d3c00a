//! The WAL on a real directory through glommio DMA files: group commit, segment rolls,
//! reopen, truncation and purge, with the files checked on disk.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod wal_support;

use std::rc::Rc;

use wal_support::{concurrent_appends, on_glommio, payload};
use zinc_protocol::types::Zxid;
use zinc_storage::wal::{segment_name, DmaDevice, Wal, WalConfig};

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: 256 * 1024,
        block_bytes: 4096,
        batch_bytes_max: 64 * 1024,
        batch_records_max: 256,
        record_bytes_max: 8192,
        pending_bytes_max: 1 << 20,
        ..WalConfig::default()
    }
}

#[test]
fn dma_wal_survives_reopen_rolls_truncates_and_purges() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let dir2 = dir.clone();
    let segments = on_glommio(async move {
        let dev = DmaDevice::open(&dir2).await.unwrap();
        let (wal, rec) = Wal::open(dev, config(), Zxid::ZERO).await.unwrap();
        assert!(rec.records.is_empty());
        let wal = Rc::new(wal);
        concurrent_appends(&wal, 4, 250, 500).await;
        assert_eq!(wal.durable_zxid(), Some(Zxid(1000)));
        assert!(wal.stats().batches < 1000, "no grouping: {:?}", wal.stats());
        wal.segments()
    });
    // 1000 records of 516 bytes need two 256 KiB segments, each pre-allocated in full.
    assert_eq!(segments.len(), 2, "{segments:?}");
    for s in &segments {
        let meta = std::fs::metadata(dir.join(segment_name(*s))).unwrap();
        assert_eq!(meta.len(), 256 * 1024);
    }
    let dir2 = dir.clone();
    let second = segments[1];
    on_glommio(async move {
        let dev = DmaDevice::open(&dir2).await.unwrap();
        let (wal, rec) = Wal::open(dev, config(), Zxid(10)).await.unwrap();
        let zxids: Vec<i64> = rec.records.iter().map(|r| r.zxid.0).collect();
        assert_eq!(zxids, (11..=1000).collect::<Vec<_>>());
        assert!(rec
            .records
            .iter()
            .all(|r| r.payload == payload(r.zxid.0, 500)));
        wal.truncate_after(Zxid(second.0 + 5)).await.unwrap();
        wal.append(Zxid(second.0 + 6), b"after truncation").unwrap();
        wal.flush().await.unwrap();
        assert_eq!(wal.purge_through(Zxid(second.0 - 1)).await.unwrap(), 1);
    });
    on_glommio(async move {
        let dev = DmaDevice::open(&dir).await.unwrap();
        let (_, rec) = Wal::open(dev, config(), Zxid::ZERO).await.unwrap();
        let zxids: Vec<i64> = rec.records.iter().map(|r| r.zxid.0).collect();
        assert_eq!(zxids, (second.0..=second.0 + 6).collect::<Vec<_>>());
        assert_eq!(&rec.records[6].payload[..], b"after truncation");
    });
}

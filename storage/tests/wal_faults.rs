//! WAL behaviour under injected device faults: EIO on fsync or write (fatal), ENOSPC (batch
//! fails, log intact, writes resume), short writes, backpressure; and group commit under
//! concurrent appenders on a glommio executor.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod wal_support;

use std::rc::Rc;

use futures_lite::future::block_on;
use wal_support::*;
use zinc_protocol::types::Zxid;
use zinc_storage::wal::{Device, MemDevice, Tear, Wal, WalConfig, WalError};

#[test]
fn fsync_error_is_fatal_and_nothing_unsynced_is_reported_durable() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_durable(&wal, 1..=10, 100);
    wal.append(Zxid(11), &payload(11, 100)).unwrap();
    dev.set_faults(|f| f.sync_eio = 1);
    let err = block_on(wal.flush()).unwrap_err();
    assert!(
        matches!(err, WalError::SyncFailed { .. }) && err.is_fatal(),
        "{err}"
    );
    assert_eq!(wal.durable_zxid(), Some(Zxid(10)));
    // Everything afterwards refuses, including waiters: the server must exit.
    assert!(matches!(
        block_on(wal.wait_durable(Zxid(11))),
        Err(WalError::Failed(_))
    ));
    assert!(matches!(
        wal.append(Zxid(12), b"x"),
        Err(WalError::Failed(_))
    ));
    assert!(matches!(block_on(wal.flush()), Err(WalError::Failed(_))));
    assert!(block_on(wal.wait_durable(Zxid(10))).is_err());
    drop(wal);
    dev.crash(Tear::LoseUnsynced);
    let (_, rec) = open(&dev).unwrap();
    assert_eq!(check_records(&rec, 100), (1..=10).collect::<Vec<_>>());
}

#[test]
fn write_error_is_fatal() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    wal.append(Zxid(1), b"a").unwrap();
    dev.set_faults(|f| f.write_eio = 1);
    let err = block_on(wal.flush()).unwrap_err();
    assert!(
        matches!(err, WalError::WriteFailed { .. }) && err.is_fatal(),
        "{err}"
    );
    assert!(matches!(
        wal.append(Zxid(2), b"b"),
        Err(WalError::Failed(_))
    ));
}

#[test]
fn short_write_is_fatal_and_recovery_cuts_the_partial_block() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_durable(&wal, 1..=20, 300);
    for z in 21..=40 {
        wal.append(Zxid(z), &payload(z, 300)).unwrap();
    }
    // The batch rewrites the partial block and goes on: keep only its first 1000 bytes.
    dev.set_faults(|f| f.short_write_bytes = Some(1000));
    let err = block_on(wal.flush()).unwrap_err();
    assert!(
        err.to_string().contains("short write of 1000 bytes"),
        "{err}"
    );
    assert!(err.is_fatal());
    drop(wal);
    dev.crash(Tear::KeepUnsynced);
    let (_, rec) = open(&dev).unwrap();
    let got = check_records(&rec, 300);
    assert!(got.len() >= 20 && got.len() < 40, "{} records", got.len());
    assert_eq!(got, (1..=got.len() as i64).collect::<Vec<_>>());
}

#[test]
fn disk_full_at_segment_creation_fails_the_batch_and_resumes_after_space_frees() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    // Room for exactly one 64 KiB segment.
    dev.set_faults(|f| f.capacity_bytes = Some(64 * 1024));
    append_durable(&wal, 1..=60, 984);
    for z in 61..=80 {
        wal.append(Zxid(z), &payload(z, 984)).unwrap();
    }
    let mut no_space = 0;
    let err = loop {
        match block_on(wal.flush()) {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the log cannot have fit"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, WalError::NoSpace { .. }) && !err.is_fatal(),
        "{err}"
    );
    assert!(err.to_string().contains("device full"), "{err}");
    let durable = wal.durable_zxid();
    assert_eq!(
        durable,
        Some(Zxid(65)),
        "the first segment holds 65 records"
    );
    // Retrying while still full fails the same way and changes nothing.
    for _ in 0..3 {
        assert!(matches!(
            block_on(wal.flush()),
            Err(WalError::NoSpace { .. })
        ));
        no_space += 1;
    }
    assert_eq!((wal.durable_zxid(), no_space), (durable, 3));
    // Appends still queue while full.
    wal.append(Zxid(81), &payload(81, 984)).unwrap();
    dev.set_faults(|f| f.capacity_bytes = None);
    flush_all(&wal).unwrap();
    assert_eq!(wal.durable_zxid(), Some(Zxid(81)));
    drop(wal);
    dev.crash(Tear::LoseUnsynced);
    let (_, rec) = open(&dev).unwrap();
    assert_eq!(check_records(&rec, 984), (1..=81).collect::<Vec<_>>());
}

#[test]
fn disk_full_on_write_leaves_the_log_undamaged() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_durable(&wal, 1..=10, 100);
    wal.append(Zxid(11), &payload(11, 100)).unwrap();
    dev.set_faults(|f| f.write_enospc = 2);
    for _ in 0..2 {
        assert!(matches!(
            block_on(wal.flush()),
            Err(WalError::NoSpace { .. })
        ));
    }
    assert_eq!(wal.durable_zxid(), Some(Zxid(10)));
    flush_all(&wal).unwrap();
    assert_eq!(wal.durable_zxid(), Some(Zxid(11)));
    drop(wal);
    let (_, rec) = open(&dev).unwrap();
    assert_eq!(check_records(&rec, 100), (1..=11).collect::<Vec<_>>());
}

#[test]
fn append_applies_backpressure_at_the_pending_limit() {
    let dev = MemDevice::new();
    let config = WalConfig {
        pending_bytes_max: 16 * 1024,
        ..small_config()
    };
    let (wal, _) = block_on(Wal::open(dev.clone(), config, Zxid::ZERO)).unwrap();
    let mut accepted = 0;
    let err = loop {
        match wal.append(Zxid(accepted + 1), &[7; 1000]) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, WalError::Backpressure { .. }), "{err}");
    assert_eq!(accepted, 16); // 16 records of 1016 bytes fit in 16 KiB
    flush_all(&wal).unwrap();
    wal.append(Zxid(accepted + 1), &[7; 1000]).unwrap();
}

#[test]
fn invalid_config_is_rejected() {
    let bad = WalConfig {
        batch_bytes_max: 1000,
        ..small_config()
    };
    let err = block_on(Wal::open(MemDevice::new(), bad, Zxid::ZERO)).err();
    assert!(matches!(err, Some(WalError::Config(_))));
}

#[test]
fn concurrent_appenders_share_group_commits() {
    on_glommio(async {
        let dev = MemDevice::new();
        let wal = Rc::new(open_async(&dev).await.unwrap().0);
        concurrent_appends(&wal, 8, 50, 200).await;
        assert_eq!(wal.durable_zxid(), Some(Zxid(400)));
        let stats = wal.stats();
        assert_eq!(stats.records, 400);
        assert!(
            stats.batches <= 100,
            "{} batches: appends were not grouped",
            stats.batches
        );
        drop(wal);
        let (_, rec) = Wal::open(dev, small_config(), Zxid::ZERO).await.unwrap();
        assert_eq!(check_records(&rec, 200), (1..=400).collect::<Vec<_>>());
    });
}

#[test]
fn rolls_use_the_spare_segment_and_a_crash_keeps_a_whole_spare() {
    on_glommio(async {
        let dev = MemDevice::new();
        let wal = Rc::new(open_async(&dev).await.unwrap().0);
        // 300 records of 1000 bytes fill four 64 KiB segments and start a fifth.
        concurrent_appends(&wal, 3, 100, 984).await;
        assert_eq!(wal.segments().len(), 5);
        assert_eq!(wal.stats().segments_created, 5);
        let names = dev.file_names();
        assert!(names.contains(&"next.spare".to_string()), "{names:?}");
        drop(wal);
        dev.crash(Tear::Sectors { seed: 7 });
        let (wal, rec) = open_async(&dev).await.unwrap();
        let wal = Rc::new(wal);
        assert_eq!(check_records(&rec, 984), (1..=300).collect::<Vec<_>>());
        // The spare was complete before it got its name: kept, not zero-filled again.
        let names = dev.file_names();
        assert!(names.contains(&"next.spare".to_string()), "{names:?}");
        assert_eq!(names.len(), wal.segments().len() + 1, "{names:?}");
        // The next roll takes that file (marked past anything the log writes there), not a
        // new zero-filled one.
        let marker = [0x5a; 8];
        dev.write_durable("next.spare", 64 * 1024 - marker.len(), &marker);
        let segments = wal.segments().len();
        while wal.segments().len() == segments {
            concurrent_appends(&wal, 1, 1, 984).await;
        }
        let newest = wal.segments().last().copied().unwrap();
        let bytes = dev.file_bytes(&format!("{:016x}.log", newest.0)).unwrap();
        assert_eq!(bytes[bytes.len() - marker.len()..], marker);
    });
}

#[test]
fn a_half_made_spare_is_removed_at_open() {
    on_glommio(async {
        let dev = MemDevice::new();
        let (wal, _) = open_async(&dev).await.unwrap();
        drop(wal);
        // A crash while a spare was zero-filled leaves it under its temporary name; a file of
        // the wrong size under the spare's name is not a spare either.
        dev.create_zeroed("next.spare.tmp", 4096).await.unwrap();
        dev.create_zeroed("next.spare", 4096).await.unwrap();
        let (wal, _) = open_async(&dev).await.unwrap();
        let names = dev.file_names();
        assert!(!names.contains(&"next.spare.tmp".to_string()), "{names:?}");
        assert!(!names.contains(&"next.spare".to_string()), "{names:?}");
        assert_eq!(names.len(), wal.segments().len(), "{names:?}");
    });
}

#[test]
fn no_room_for_a_spare_does_not_stop_writes() {
    on_glommio(async {
        let dev = MemDevice::new();
        // Room for two segments: the first, then either a spare or the second segment.
        dev.set_faults(|f| f.capacity_bytes = Some(128 * 1024));
        let wal = Rc::new(open_async(&dev).await.unwrap().0);
        concurrent_appends(&wal, 2, 50, 984).await;
        assert_eq!(wal.durable_zxid(), Some(Zxid(100)));
        assert_eq!(wal.segments().len(), 2);
    });
}

/// A WAL on an in-memory device whose syncs let other tasks run, with a task running its
/// flusher (stopped when the returned task is dropped).
async fn slow_syncing_wal(config: WalConfig) -> (Rc<Wal<MemDevice>>, glommio::Task<WalError>) {
    let dev = MemDevice::new();
    dev.set_faults(|f| f.sync_yield = true);
    let (wal, _) = Wal::open(dev, config, Zxid::ZERO).await.unwrap();
    let wal = Rc::new(wal);
    let flusher = glommio::spawn_local({
        let wal = wal.clone();
        async move { wal.run().await }
    });
    (wal, flusher)
}

/// Commit pacing (`commit_interval`, `commit_records`): records that arrive while a commit is
/// written make the next commit wait out the interval (here an hour) or for `commit_records`
/// records; a record that arrives alone, after the commit before it ended, is written at once.
#[test]
fn commits_wait_for_company_only_when_records_arrive_during_one() {
    on_glommio(async {
        let config = WalConfig {
            commit_interval: std::time::Duration::from_secs(3600),
            commit_records: 8,
            ..small_config()
        };
        let (wal, flusher) = slow_syncing_wal(config).await;
        // One at a time, each after the previous one is durable: no waiting.
        for z in 1..=5 {
            wal.append(Zxid(z), &payload(z, 100)).unwrap();
            for _ in 0..100 {
                futures_lite::future::yield_now().await;
            }
            assert_eq!(wal.durable_zxid(), Some(Zxid(z)), "a lone record waited");
        }
        assert_eq!(wal.stats().batches, 5);
        // A stream: each record lets the flusher run before the next is appended, so records
        // arrive while commits are written. After the first, every commit waits for 8.
        for z in 6..=40 {
            wal.append(Zxid(z), &payload(z, 100)).unwrap();
            futures_lite::future::yield_now().await;
        }
        for _ in 0..100 {
            futures_lite::future::yield_now().await;
        }
        let stats = wal.stats();
        let durable = wal.durable_zxid().unwrap().0;
        assert!(
            (30..40).contains(&durable),
            "the stream's last records should still wait: durable {durable}, {stats:?}"
        );
        let stream_batches = stats.batches - 5;
        let stream_records = (durable - 5) as u64;
        assert!(
            stream_batches <= 1 + (stream_records - 1).div_ceil(8),
            "commits of the stream not paced: {stream_records} records in {stream_batches}"
        );
        drop(flusher);
        // The same stream without pacing commits as soon as records wait.
        let (wal, _flusher) = slow_syncing_wal(small_config()).await;
        for z in 1..=40 {
            wal.append(Zxid(z), &payload(z, 100)).unwrap();
            futures_lite::future::yield_now().await;
        }
        wal.wait_durable(Zxid(40)).await.unwrap();
        assert!(
            wal.stats().batches > 10,
            "unpaced stream: {:?}",
            wal.stats()
        );
    });
}

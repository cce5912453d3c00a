//! WAL recovery on the in-memory device: replay, segment rolls, crashes with torn writes,
//! mid-log corruption, short reads, truncation and purge.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod wal_support;

use futures_lite::future::{block_on, poll_once};
use wal_support::*;
use zinc_protocol::types::Zxid;
use zinc_storage::wal::{segment_name, Device, MemDevice, Tear, Wal, WalError};

/// Payload bytes that make a 1000-byte record (16-byte header), for easy offsets.
const PAYLOAD: usize = 984;

#[test]
fn reopen_replays_every_durable_record_in_order() {
    let dev = MemDevice::new();
    let (wal, rec) = open(&dev).unwrap();
    assert_eq!((rec.records.len(), rec.last_zxid), (0, None));
    append_durable(&wal, 1..=50, 100);
    assert_eq!(wal.durable_zxid(), Some(Zxid(50)));
    drop(wal);
    let (wal, rec) = open(&dev).unwrap();
    assert_eq!(check_records(&rec, 100), (1..=50).collect::<Vec<_>>());
    assert_eq!((rec.last_zxid, rec.torn_tail), (Some(Zxid(50)), None));
    // Appending continues the same segment after the partial block.
    append_durable(&wal, 51..=60, 100);
    drop(wal);
    let (_, rec) = open(&dev).unwrap();
    assert_eq!(check_records(&rec, 100), (1..=60).collect::<Vec<_>>());
    assert_eq!(dev.file_names(), vec![segment_name(Zxid(1))]);
}

#[test]
fn replay_after_skips_old_records_and_segments() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_durable(&wal, 1..=300, PAYLOAD);
    let segments = wal.segments();
    assert!(segments.len() >= 4, "{segments:?}");
    drop(wal);
    let (wal, rec) = block_on(Wal::open(dev.clone(), small_config(), Zxid(250))).unwrap();
    assert_eq!(
        check_records(&rec, PAYLOAD),
        (251..=300).collect::<Vec<_>>()
    );
    let again = block_on(wal.read_after(Zxid(100))).unwrap();
    let zxids: Vec<i64> = again.iter().map(|r| r.zxid.0).collect();
    assert_eq!(zxids, (101..=300).collect::<Vec<_>>());
}

#[test]
fn segments_the_snapshot_covers_are_not_read_unless_the_last_is_empty() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_durable(&wal, 1..=200, PAYLOAD);
    let segments = wal.segments();
    drop(wal);
    let last = *segments.last().unwrap();
    let before_last = segments[segments.len() - 2];
    // Damage in the segment before the last: a replay from before it finds it, a replay
    // that starts in the last segment does not read it.
    dev.flip_bit(&segment_name(before_last), 3 * 1000 + 500, 2);
    assert!(open(&dev).is_err());
    let replay_after = Zxid(last.0 + 1);
    let (_, rec) = block_on(Wal::open(dev.clone(), small_config(), replay_after)).unwrap();
    assert_eq!(
        check_records(&rec, PAYLOAD),
        (last.0 + 2..=200).collect::<Vec<_>>()
    );
    assert_eq!(rec.last_zxid, Some(Zxid(200)));
    // An empty segment after the last one (its first write lost): the one before it holds the
    // log's end, so it is read, and appending goes on there.
    block_on(dev.create_zeroed(&segment_name(Zxid(201)), 64 * 1024)).unwrap();
    let (wal, rec) = block_on(Wal::open(dev.clone(), small_config(), Zxid(201))).unwrap();
    assert_eq!((rec.records.len(), rec.last_zxid), (0, Some(Zxid(200))));
    assert_eq!(wal.segments().last(), Some(&last));
    append_durable(&wal, 201..=210, PAYLOAD);
    drop(wal);
    let (_, rec) = block_on(Wal::open(dev.clone(), small_config(), replay_after)).unwrap();
    assert_eq!(
        check_records(&rec, PAYLOAD),
        (last.0 + 2..=210).collect::<Vec<_>>()
    );
}

#[test]
fn purge_removes_only_segments_wholly_at_or_below_the_zxid() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_durable(&wal, 1..=300, PAYLOAD);
    let segments = wal.segments();
    // Segment k holds [segments[k], segments[k+1] - 1].
    let through = segments[2].0 - 1;
    assert_eq!(block_on(wal.purge_through(Zxid(through))).unwrap(), 2);
    assert_eq!(wal.segments(), segments[2..].to_vec());
    assert_eq!(block_on(wal.purge_through(Zxid(through))).unwrap(), 0);
    assert_eq!(
        block_on(wal.purge_through(Zxid(i64::MAX - 1))).unwrap(),
        segments.len() - 3
    );
    assert_eq!(wal.segments(), vec![*segments.last().unwrap()]);
    drop(wal);
    let (_, rec) = open(&dev).unwrap();
    assert_eq!(
        rec.records.first().map(|r| r.zxid),
        Some(*segments.last().unwrap())
    );
    assert_eq!(rec.last_zxid, Some(Zxid(300)));
}

#[test]
fn a_record_split_across_batches_is_durable_only_once_complete() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    for z in 1..=30 {
        wal.append(Zxid(z), &payload(z, PAYLOAD)).unwrap();
    }
    // One 8 KiB batch: eight whole 1000-byte records and the first 192 bytes of the ninth.
    assert_eq!(block_on(wal.flush()).unwrap(), Some(Zxid(8)));
    assert_eq!(wal.durable_zxid(), Some(Zxid(8)));
    assert_eq!(wal.stats().written_bytes, 8192);
    let read: Vec<i64> = block_on(wal.read_after(Zxid::ZERO))
        .unwrap()
        .iter()
        .map(|r| r.zxid.0)
        .collect();
    assert_eq!(read, (1..=8).collect::<Vec<_>>());
    // The log stops before the batch that finishes the ninth: its prefix is a torn tail.
    drop(wal);
    let (wal, rec) = open(&dev).unwrap();
    assert_eq!(check_records(&rec, PAYLOAD), (1..=8).collect::<Vec<_>>());
    assert_eq!(
        rec.torn_tail,
        Some((dev.describe(&segment_name(Zxid(1))), 8000))
    );
    append_durable(&wal, 9..=30, PAYLOAD);
    drop(wal);
    let (_, rec) = open(&dev).unwrap();
    assert_eq!(check_records(&rec, PAYLOAD), (1..=30).collect::<Vec<_>>());
    assert_eq!(rec.torn_tail, None);
}

/// Appends `zxids`, lets the batch reach the device unsynced, then crashes with `tear`.
fn crash_mid_batch(
    dev: &MemDevice,
    wal: Wal<MemDevice>,
    zxids: std::ops::RangeInclusive<i64>,
    len: usize,
    tear: Tear,
) {
    for z in zxids {
        wal.append(Zxid(z), &payload(z, len)).unwrap();
    }
    dev.set_faults(|f| f.sync_stall = true);
    assert!(
        block_on(poll_once(wal.flush())).is_none(),
        "sync must stall"
    );
    drop(wal);
    dev.set_faults(|f| f.sync_stall = false);
    dev.crash(tear);
}

#[test]
fn torn_last_write_is_cut_and_the_log_goes_on() {
    for seed in 0..300u64 {
        let dev = MemDevice::new();
        let (wal, _) = open(&dev).unwrap();
        let durable = 1 + (seed as i64 * 7) % 90;
        append_durable(&wal, 1..=durable, 300);
        let tear = match seed % 3 {
            0 => Tear::Sectors { seed },
            1 => Tear::KeepUnsynced,
            _ => Tear::LoseUnsynced,
        };
        crash_mid_batch(&dev, wal, durable + 1..=durable + 20, 300, tear);
        let (wal, rec) = open(&dev).unwrap_or_else(|e| panic!("seed={seed}: {e}"));
        let got = check_records(&rec, 300);
        // Every durable record, then possibly a prefix of the torn batch, nothing else.
        assert!(
            got.len() >= durable as usize,
            "seed={seed}: lost durable records"
        );
        assert_eq!(
            got,
            (1..=got.len() as i64).collect::<Vec<_>>(),
            "seed={seed}"
        );
        if matches!(tear, Tear::LoseUnsynced) {
            assert_eq!(got.len(), durable as usize, "seed={seed}");
        }
        // New records after the cut must not be mixed with leftovers of the torn batch.
        let next = got.len() as i64 + 1;
        append_durable(&wal, next..=next + 4, 50);
        drop(wal);
        let (_, rec) = open(&dev).unwrap_or_else(|e| panic!("seed={seed}: {e}"));
        let zxids: Vec<i64> = rec.records.iter().map(|r| r.zxid.0).collect();
        assert_eq!(zxids, (1..=next + 4).collect::<Vec<_>>(), "seed={seed}");
        assert_eq!(
            rec.torn_tail, None,
            "seed={seed}: the repair must be durable"
        );
    }
}

#[test]
fn crash_right_after_a_segment_roll_removes_the_empty_segment() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    // 65 records of 1000 bytes fill a 64 KiB segment.
    append_durable(&wal, 1..=65, PAYLOAD);
    let before = wal.segments();
    assert_eq!(before, vec![Zxid(1)]);
    // The next records do not fit in the current segment: the batch seals it (one sync) and
    // creates a new one, and the crash comes before the new one's first write is synced.
    dev.set_faults(|f| f.syncs_before_stall = 1);
    crash_mid_batch(&dev, wal, 66..=70, PAYLOAD, Tear::LoseUnsynced);
    assert_eq!(dev.file_names().len(), before.len() + 1);
    let (wal, rec) = open(&dev).unwrap();
    assert_eq!(wal.segments(), before);
    assert_eq!(dev.file_names().len(), before.len());
    assert_eq!(rec.last_zxid, Some(Zxid(65)));
    append_durable(&wal, 66..=70, PAYLOAD);
    drop(wal);
    let (_, rec) = open(&dev).unwrap();
    assert_eq!(check_records(&rec, PAYLOAD), (1..=70).collect::<Vec<_>>());
}

#[test]
fn corruption_in_an_older_segment_names_file_and_offset() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_durable(&wal, 1..=200, PAYLOAD);
    drop(wal);
    let name = segment_name(Zxid(1));
    // Record k (0-based) of the first segment starts at k * 1000 (16-byte header + 984).
    dev.flip_bit(&name, 3 * 1000 + 500, 2);
    let err = open(&dev).err().expect("open must fail");
    match &err {
        WalError::Corrupt {
            file, offset_bytes, ..
        } => {
            assert_eq!(
                (file.as_str(), *offset_bytes),
                (format!("mem:{name}").as_str(), 3000)
            );
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    assert!(err.is_fatal());
    assert!(
        err.to_string().contains(&name) && err.to_string().contains("3000"),
        "{err}"
    );
}

#[test]
fn corruption_far_before_the_end_of_the_last_segment_is_an_error() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_durable(&wal, 1..=40, PAYLOAD);
    drop(wal);
    // 40 KB of records; a flip at 5 KB leaves more than one batch of valid data after it.
    dev.flip_bit(&segment_name(Zxid(1)), 5 * 1000 + 20, 0);
    match open(&dev) {
        Err(WalError::Corrupt { offset_bytes, .. }) => assert_eq!(offset_bytes, 5000),
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_bad_length_field_is_caught_too() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_durable(&wal, 1..=40, PAYLOAD);
    drop(wal);
    dev.write_durable(&segment_name(Zxid(1)), 2000 + 4, &u32::MAX.to_le_bytes());
    assert!(matches!(
        open(&dev),
        Err(WalError::Corrupt {
            offset_bytes: 2000,
            ..
        })
    ));
}

#[test]
fn damage_within_the_last_batch_is_treated_as_a_torn_write() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_durable(&wal, 1..=40, PAYLOAD);
    drop(wal);
    // Indistinguishable from a torn last write (documented): cut at the damaged record.
    dev.flip_bit(&segment_name(Zxid(1)), 38 * 1000 + 40, 1);
    let (_, rec) = open(&dev).unwrap();
    assert_eq!(check_records(&rec, PAYLOAD), (1..=38).collect::<Vec<_>>());
    assert_eq!(rec.torn_tail.map(|t| t.1), Some(38_000));
}

#[test]
fn short_reads_are_tolerated() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_durable(&wal, 1..=150, 700);
    drop(wal);
    dev.set_faults(|f| f.read_bytes_max = Some(777));
    let (wal, rec) = open(&dev).unwrap();
    assert_eq!(check_records(&rec, 700), (1..=150).collect::<Vec<_>>());
    assert_eq!(block_on(wal.read_after(Zxid(140))).unwrap().len(), 10);
}

#[test]
fn truncate_after_drops_later_records_and_segments() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_durable(&wal, 1..=200, PAYLOAD);
    let segments = wal.segments();
    let cut = segments[1].0 + 3;
    block_on(wal.truncate_after(Zxid(cut))).unwrap();
    assert_eq!(wal.segments(), segments[..2].to_vec());
    assert_eq!(wal.durable_zxid(), Some(Zxid(cut)));
    // A new leader's history replaces what was cut: different payload sizes, same zxids.
    append_durable(&wal, cut + 1..=cut + 100, 500);
    drop(wal);
    let (wal, rec) = open(&dev).unwrap();
    let zxids: Vec<i64> = rec.records.iter().map(|r| r.zxid.0).collect();
    assert_eq!(zxids, (1..=cut + 100).collect::<Vec<_>>());
    assert!(rec
        .records
        .iter()
        .all(|r| r.payload.len() == if r.zxid.0 <= cut { PAYLOAD } else { 500 }));
    // Truncating before everything empties the log.
    block_on(wal.truncate_after(Zxid::ZERO)).unwrap();
    assert_eq!((wal.segments(), wal.durable_zxid()), (vec![], None));
    drop(wal);
    let (_, rec) = open(&dev).unwrap();
    assert_eq!(rec.last_zxid, None);
}

#[test]
fn truncate_needs_an_idle_log() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_durable(&wal, 1..=5, 10);
    wal.append(Zxid(6), b"x").unwrap();
    assert!(matches!(
        block_on(wal.truncate_after(Zxid(3))),
        Err(WalError::Busy(_))
    ));
}

#[test]
fn a_segment_named_for_another_zxid_is_corruption() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_durable(&wal, 5..=9, 10);
    drop(wal);
    let bytes = dev.file_bytes(&segment_name(Zxid(5))).unwrap();
    let other = segment_name(Zxid(3));
    block_on(zinc_storage::wal::Device::create_zeroed(
        &dev,
        &other,
        bytes.len() as u64,
    ))
    .unwrap();
    dev.write_durable(&other, 0, &bytes);
    dev.write_durable(&segment_name(Zxid(5)), 0, &vec![0; bytes.len()]);
    assert!(matches!(
        open(&dev),
        Err(WalError::Corrupt {
            offset_bytes: 0,
            ..
        })
    ));
}

/// Appends `zxids` in chunks, letting the log make a spare between chunks as its run loop
/// would (from a purged file when one is kept).
fn append_with_spares(wal: &Wal<MemDevice>, zxids: std::ops::RangeInclusive<i64>) {
    let all: Vec<i64> = zxids.collect();
    for chunk in all.chunks(20) {
        append_durable(wal, chunk.iter().copied(), PAYLOAD);
        block_on(wal.prepare_spare()).unwrap();
    }
}

#[test]
fn purged_segments_are_reused_and_their_old_records_never_replayed() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    // Segments of 65 records: 1, 66, 131, 196, 261 and 326.
    append_with_spares(&wal, 1..=390);
    let segments = wal.segments();
    assert_eq!(segments.len(), 6);
    let purged = block_on(wal.purge_through(Zxid(segments[5].0 - 1))).unwrap();
    assert_eq!(purged, 5);
    let free = dev.file_names();
    let free: Vec<&String> = free.iter().filter(|n| n.ends_with(".free")).collect();
    assert_eq!(free.len(), 4, "at most four are kept: {free:?}");
    // Rolls at 391 (the spare made before the purge), then 456, 521 and 586 (reused files).
    append_with_spares(&wal, 391..=600);
    assert_eq!(wal.stats().segments_reused, 4, "{:?}", wal.stats());
    // The last segment's file still holds an older segment's records past its 15 records.
    let last = *wal.segments().last().unwrap();
    assert_eq!(last, Zxid(586));
    let bytes = dev.file_bytes(&segment_name(last)).unwrap();
    assert!(bytes[16 * 1024..60 * 1024].iter().any(|b| *b != 0));
    drop(wal);
    let (wal, rec) = open(&dev).unwrap();
    let first = segments[5].0;
    assert_eq!(
        check_records(&rec, PAYLOAD),
        (first..=600).collect::<Vec<_>>()
    );
    drop(wal);
    // A torn write at the end of a reused segment is cut like any other.
    for seed in 0..20u64 {
        let (wal, rec) = open(&dev).unwrap();
        let durable = rec.last_zxid.unwrap().0;
        let start = durable + 1;
        crash_mid_batch(
            &dev,
            wal,
            start..=start + 12,
            PAYLOAD,
            Tear::Sectors { seed },
        );
        let (_, rec) = open(&dev).unwrap_or_else(|e| panic!("seed={seed}: {e}"));
        let got = check_records(&rec, PAYLOAD);
        let expected: Vec<i64> = (first..first + got.len() as i64).collect();
        assert_eq!(got, expected, "seed={seed}");
        assert!(
            *got.last().unwrap() >= durable,
            "seed={seed}: lost durable records"
        );
    }
}

#[test]
fn damage_in_a_reused_segment_is_still_found() {
    let dev = MemDevice::new();
    let (wal, _) = open(&dev).unwrap();
    append_with_spares(&wal, 1..=300);
    let segments = wal.segments();
    block_on(wal.purge_through(Zxid(segments[3].0 - 1))).unwrap();
    append_with_spares(&wal, 301..=430);
    assert!(wal.stats().segments_reused >= 1);
    let last = *wal.segments().last().unwrap();
    let records_in_last = 430 - last.0 + 1;
    assert!(records_in_last > 30, "{records_in_last}");
    drop(wal);
    // A flipped bit in the last segment's second record, with the rest of the log after it.
    dev.flip_bit(&segment_name(last), 1000 + 500, 3);
    match open(&dev) {
        Err(WalError::Corrupt { offset_bytes, .. }) => assert_eq!(offset_bytes, 1000),
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
}

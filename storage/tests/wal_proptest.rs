//! Property tests: recovery and snapshot loading never panic on damaged bytes, and recovery
//! never returns anything but a prefix of what was written.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod wal_support;

use proptest::prelude::*;
use wal_support::*;
use zinc_protocol::types::Zxid;
use zinc_storage::wal::{segment_name, MemDevice, WalError};

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn damaged_logs_open_to_a_prefix_or_a_corruption_error(
        records in 1usize..150,
        len in 0usize..1500,
        damage in prop::collection::vec((any::<u32>(), any::<u8>()), 1..6),
    ) {
        let dev = MemDevice::new();
        let (wal, _) = open(&dev).unwrap();
        append_durable(&wal, 1..=records as i64, len);
        let segments = wal.segments();
        drop(wal);
        for (at, byte) in damage {
            let seg = segments[at as usize % segments.len()];
            let name = segment_name(seg);
            let size = dev.file_bytes(&name).unwrap().len();
            // Aim at the written part most of the time.
            let offset = (at as usize / 7) % (size / 4).max(1).min(records * (len + 16) + 64);
            dev.write_durable(&name, offset.min(size - 1), &[byte]);
        }
        match open(&dev) {
            Ok((_, rec)) => {
                let got = check_records(&rec, len);
                prop_assert_eq!(got, (1..=rec.records.len() as i64).collect::<Vec<_>>());
            }
            Err(WalError::Corrupt { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }

    #[test]
    fn recovery_of_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..20_000)) {
        let dev = MemDevice::new();
        let name = segment_name(Zxid(1));
        futures_lite::future::block_on(zinc_storage::wal::Device::create_zeroed(&dev, &name, 64 * 1024)).unwrap();
        dev.write_durable(&name, 0, &bytes);
        let _ = open(&dev);
    }

    #[test]
    fn snapshot_decode_of_damaged_bytes_never_panics(
        damage in prop::collection::vec((any::<u32>(), any::<u8>()), 1..8),
        fix_checksum in any::<bool>(),
    ) {
        let mut tree = zinc_storage::tree::Tree::new();
        tree.restore_session(7, 4000);
        let stat = zinc_protocol::StatPersisted { czxid: 2, mzxid: 3, ephemeral_owner: 7, ..Default::default() };
        let acl = zinc_protocol::Acl::open_unsafe();
        tree.restore_node("/a", &zinc_protocol::StatPersisted::default(), Some(b"data"), &acl).unwrap();
        tree.restore_node("/a/b", &stat, None, &acl).unwrap();
        let mut bytes = zinc_storage::snapshot::encode(&tree).unwrap();
        let archive_len = bytes.len() - zinc_storage::snapshot::TRAILER_BYTES;
        for (at, byte) in damage {
            let i = at as usize % archive_len;
            bytes[i] = byte;
        }
        if fix_checksum {
            let crc = crc32c::crc32c(&bytes[..archive_len]);
            bytes[archive_len + 16..archive_len + 20].copy_from_slice(&crc.to_le_bytes());
        }
        let _ = zinc_storage::snapshot::decode(&bytes);
    }
}

//! A simulated log device: one log file of CRC-checked records, a snapshot and the epoch file.
//!
//! Appends land in the file at once but are durable only up to `synced_bytes`; a sync makes
//! the bytes written before it started durable. A crash keeps the durable bytes plus a random
//! part of the rest, possibly cut inside a record or with a flipped bit (a torn write), and
//! recovery keeps the records up to the first one that fails its checksum or runs past the end.
//! Epochs, truncations and snapshots are written synchronously (the core's contract).

use bytes::{BufMut, Bytes, BytesMut};
use zinc_protocol::{Epoch, Zxid};
use zinc_storage::tree::Tree;

use crate::zab::rng::Rng;
use crate::zab::{LogEntry, Persisted};

const RECORD_HEADER_BYTES: usize = 4 + 4 + 8;

/// Where each record of the file ends, and its zxid.
#[derive(Debug, Clone, Copy)]
struct RecordEnd {
    end: usize,
    zxid: Zxid,
}

#[derive(Clone)]
pub struct Disk {
    file: Vec<u8>,
    records: Vec<RecordEnd>,
    synced_bytes: usize,
    /// File length when the sync in flight started.
    sync_target_bytes: Option<usize>,
    pub accepted_epoch: Epoch,
    pub current_epoch: Epoch,
    pub snapshot_zxid: Zxid,
    pub snapshot: Tree,
}

/// What a crash did to the unsynced tail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashDamage {
    pub bytes_lost: usize,
    /// The kept tail ended inside a record or carried a flipped bit.
    pub torn: bool,
}

impl Default for Disk {
    fn default() -> Self {
        Disk::new()
    }
}

impl Disk {
    pub fn new() -> Disk {
        Disk {
            file: Vec::new(),
            records: Vec::new(),
            synced_bytes: 0,
            sync_target_bytes: None,
            accepted_epoch: Epoch(0),
            current_epoch: Epoch(0),
            snapshot_zxid: Zxid::ZERO,
            snapshot: Tree::new(),
        }
    }

    pub fn last_zxid(&self) -> Zxid {
        self.records.last().map_or(self.snapshot_zxid, |r| r.zxid)
    }

    pub fn append(&mut self, entry: &LogEntry) {
        assert!(
            entry.zxid > self.last_zxid(),
            "log append {} after {}",
            entry.zxid,
            self.last_zxid()
        );
        let mut body = BytesMut::with_capacity(8 + entry.txn.len());
        body.put_i64(entry.zxid.0);
        body.put_slice(&entry.txn);
        self.file.put_u32(body.len() as u32);
        self.file.put_u32(crc32c::crc32c(&body));
        self.file.extend_from_slice(&body);
        self.records.push(RecordEnd {
            end: self.file.len(),
            zxid: entry.zxid,
        });
    }

    /// Starts a sync if none is running and something is unsynced; true when one started.
    pub fn start_sync(&mut self) -> bool {
        if self.sync_target_bytes.is_some() || self.synced_bytes == self.file.len() {
            return false;
        }
        self.sync_target_bytes = Some(self.file.len());
        true
    }

    /// The sync in flight finished: returns the highest zxid now durable.
    pub fn finish_sync(&mut self) -> Zxid {
        if let Some(target) = self.sync_target_bytes.take() {
            self.synced_bytes = self.synced_bytes.max(target.min(self.file.len()));
        }
        self.durable_zxid()
    }

    fn durable_zxid(&self) -> Zxid {
        self.records
            .iter()
            .rev()
            .find(|record| record.end <= self.synced_bytes)
            .map_or(self.snapshot_zxid, |record| record.zxid)
    }

    fn cut(&mut self, keep_records: usize) {
        let end = keep_records
            .checked_sub(1)
            .map_or(0, |index| self.records[index].end);
        self.records.truncate(keep_records);
        self.file.truncate(end);
        self.synced_bytes = self.synced_bytes.min(end);
        if let Some(target) = &mut self.sync_target_bytes {
            *target = (*target).min(end);
        }
    }

    pub fn truncate_after(&mut self, zxid: Zxid) {
        let keep = self.records.partition_point(|record| record.zxid <= zxid);
        self.cut(keep);
    }

    pub fn install_snapshot(&mut self, zxid: Zxid, tree: Tree) {
        self.snapshot_zxid = zxid;
        self.snapshot = tree;
        self.cut(0);
    }

    /// Snapshots `tree` (at `zxid`) and drops the durable records it covers.
    pub fn compact(&mut self, zxid: Zxid, tree: &Tree) {
        self.snapshot_zxid = zxid;
        self.snapshot = tree.clone();
        let drop = self
            .records
            .iter()
            .take_while(|record| record.zxid <= zxid && record.end <= self.synced_bytes)
            .count();
        let Some(cut) = drop.checked_sub(1).map(|index| self.records[index].end) else {
            return;
        };
        self.file.drain(..cut);
        self.records.drain(..drop);
        for record in &mut self.records {
            record.end -= cut;
        }
        self.synced_bytes -= cut;
        self.sync_target_bytes = self.sync_target_bytes.map(|target| target - cut);
    }

    /// Power loss: unsynced bytes survive only in part, maybe torn.
    pub fn crash(&mut self, rng: &mut Rng) -> CrashDamage {
        self.sync_target_bytes = None;
        let unsynced = self.file.len() - self.synced_bytes;
        let kept = rng.below(unsynced as u64 + 1) as usize;
        let mut torn = false;
        self.file.truncate(self.synced_bytes + kept);
        if kept > 0 && rng.chance(200_000) {
            let at = self.synced_bytes + rng.below(kept as u64) as usize;
            self.file[at] ^= 1 << rng.below(8);
            torn = true;
        }
        let end = self.recover();
        torn |= end < self.file.len();
        self.file.truncate(end);
        self.synced_bytes = end;
        CrashDamage {
            bytes_lost: unsynced - kept,
            torn,
        }
    }

    /// Rescans the file; returns where the valid records end.
    fn recover(&mut self) -> usize {
        self.records.clear();
        let mut offset = 0;
        while offset + RECORD_HEADER_BYTES <= self.file.len() {
            let header = &self.file[offset..offset + 8];
            let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            let end = offset + 8 + length;
            if length < 8 || end > self.file.len() {
                break;
            }
            let body = &self.file[offset + 8..end];
            if crc32c::crc32c(body) != crc {
                break;
            }
            let zxid = Zxid(i64::from_be_bytes(body[..8].try_into().unwrap_or([0; 8])));
            if self.records.last().is_some_and(|last| last.zxid >= zxid) {
                break;
            }
            self.records.push(RecordEnd { end, zxid });
            offset = end;
        }
        offset
    }

    /// What a restarting server reads back.
    pub fn load(&self) -> Persisted {
        let mut entries = Vec::new();
        let mut start = 0;
        for record in &self.records {
            if record.zxid > self.snapshot_zxid {
                let txn =
                    Bytes::copy_from_slice(&self.file[start + RECORD_HEADER_BYTES..record.end]);
                entries.push(LogEntry {
                    zxid: record.zxid,
                    txn,
                });
            }
            start = record.end;
        }
        Persisted {
            accepted_epoch: self.accepted_epoch,
            current_epoch: self.current_epoch,
            snapshot_zxid: self.snapshot_zxid,
            entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(counter: u32) -> LogEntry {
        LogEntry {
            zxid: Zxid::new(Epoch(1), counter),
            txn: Bytes::from(vec![counter as u8; 20]),
        }
    }

    #[test]
    fn crash_keeps_synced_records_and_recovers_a_valid_prefix() {
        for seed in 0..50 {
            let mut disk = Disk::new();
            disk.append(&entry(1));
            disk.append(&entry(2));
            assert!(disk.start_sync());
            assert_eq!(disk.finish_sync(), Zxid::new(Epoch(1), 2));
            disk.append(&entry(3));
            disk.append(&entry(4));
            disk.crash(&mut Rng::new(seed));
            let loaded = disk.load();
            assert!(loaded.entries.len() >= 2 && loaded.entries.len() <= 4);
            for (index, logged) in loaded.entries.iter().enumerate() {
                assert_eq!(*logged, entry(index as u32 + 1));
            }
        }
    }

    #[test]
    fn truncate_and_compact_keep_the_index_straight() {
        let mut disk = Disk::new();
        for counter in 1..=5 {
            disk.append(&entry(counter));
        }
        assert!(disk.start_sync());
        disk.finish_sync();
        disk.truncate_after(Zxid::new(Epoch(1), 4));
        disk.compact(Zxid::new(Epoch(1), 2), &Tree::new());
        let loaded = disk.load();
        assert_eq!(loaded.snapshot_zxid, Zxid::new(Epoch(1), 2));
        assert_eq!(loaded.entries, vec![entry(3), entry(4)]);
    }
}

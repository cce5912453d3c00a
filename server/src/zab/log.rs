//! The core's view of its log: the zxid the shell's snapshot is at (`base`), the entries after
//! it that the core still keeps for DIFF, and how far the log is durable. The shell holds the
//! real log; this mirror changes only through the same commands the core emits.

use std::collections::VecDeque;

use bytes::Bytes;
use zinc_protocol::Zxid;

/// One log entry: its zxid and the encoded `TxnEntry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub zxid: Zxid,
    pub txn: Bytes,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Log {
    /// Everything up to `base` is in the shell's snapshot, not in `entries`.
    pub base: Zxid,
    pub entries: VecDeque<LogEntry>,
    /// Highest zxid known durable.
    pub persisted: Zxid,
}

impl Log {
    pub fn new(base: Zxid, entries: Vec<LogEntry>) -> Log {
        let persisted = entries.last().map_or(base, |entry| entry.zxid);
        Log {
            base,
            entries: entries.into(),
            persisted,
        }
    }

    pub fn last_zxid(&self) -> Zxid {
        self.entries.back().map_or(self.base, |entry| entry.zxid)
    }

    fn position(&self, zxid: Zxid) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&zxid, |entry| entry.zxid)
    }

    /// Whether this log's history passes through `zxid` (as an entry or as the snapshot point).
    pub fn contains(&self, zxid: Zxid) -> bool {
        zxid == self.base || self.position(zxid).is_ok()
    }

    pub fn get(&self, zxid: Zxid) -> Option<&LogEntry> {
        self.position(zxid).ok().map(|index| &self.entries[index])
    }

    /// The largest zxid held that is below `zxid` (the base when no entry is).
    pub fn last_before(&self, zxid: Zxid) -> Zxid {
        match self.position(zxid) {
            Ok(0) | Err(0) => self.base,
            Ok(index) | Err(index) => self.entries[index - 1].zxid,
        }
    }

    /// Entries after `zxid`, which must be held.
    pub fn entries_after(&self, zxid: Zxid) -> impl Iterator<Item = &LogEntry> {
        let start = match self.position(zxid) {
            Ok(index) => index + 1,
            Err(index) => index,
        };
        self.entries.range(start..)
    }

    pub fn append(&mut self, entry: LogEntry) {
        assert!(entry.zxid > self.last_zxid(), "log zxids must increase");
        self.entries.push_back(entry);
    }

    pub fn truncate_after(&mut self, zxid: Zxid) {
        assert!(zxid >= self.base, "truncation below the snapshot");
        while self.entries.back().is_some_and(|entry| entry.zxid > zxid) {
            self.entries.pop_back();
        }
        self.persisted = self.persisted.min(zxid);
    }

    pub fn reset(&mut self, base: Zxid) {
        self.base = base;
        self.entries.clear();
        self.persisted = base;
    }

    /// Drops the oldest entries up to `committed` beyond `retained_max`; returns the new base
    /// when it moved.
    pub fn compact(&mut self, committed: Zxid, retained_max: usize) -> Option<Zxid> {
        let mut moved = None;
        while self.entries.len() > retained_max
            && self
                .entries
                .front()
                .is_some_and(|entry| entry.zxid <= committed)
        {
            if let Some(entry) = self.entries.pop_front() {
                self.base = entry.zxid;
                moved = Some(entry.zxid);
            }
        }
        moved
    }
}

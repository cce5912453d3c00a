//! The write-ahead log: every txn is durable here before it is acknowledged.
//!
//! Layout: segment files `<first zxid as 16 hex digits>.log` in one directory, each
//! pre-allocated to `segment_bytes` (a pre-written file syncs about twice as fast as a growing
//! one; [`Wal::run`] keeps one spare, `next.spare`, ready in the background so a roll is a
//! rename; it is zero-filled as `next.spare.tmp` and renamed when whole, so a start keeps the
//! spare it finds instead of zero-filling another), records packed back to back ([`record`]), written with O_DIRECT in block-aligned
//! writes. One write plus one fdatasync per group commit ([`batcher`], pure); the batch closes
//! when the previous sync returns or at `batch_bytes_max`/`batch_records_max`. [`Wal`] is the
//! async driver over a [`Device`]: [`DmaDevice`] (glommio DMA files) in production,
//! [`MemDevice`] (fault injection) in tests.
//!
//! Spares: a purged segment's file is kept (at most four, `<first zxid>.free`) and becomes the
//! next spare as it is, its older records in place; only without one is a new file zero-filled,
//! which writes the segment's size to the disk a second time. When the log moves on to a new
//! segment it first seals the current one (a seal record after its last record, synced), so
//! what follows a seal is never read as the log's.
//!
//! Recovery ([`Wal::open`]) scans the segments in order and stops at the first record that fails
//! its checksum, at a seal, or at an all-zero header. Before the last segment, only a seal or
//! zeros may follow the records. In the last segment, what follows them is a torn last write
//! (normal after a crash) or a reused file's older records (lower zxids) unless a record of the
//! log itself (a higher zxid) starts more than one batch's span past the end: that, or garbage
//! in an earlier segment, is corruption and fails the open with the file and byte offset. The
//! torn write's span is zeroed, so its leftovers never rejoin the log.
//!
//! Errors: an fsync or write error is fatal (the log state is unknown, so the WAL refuses all
//! further work and the server must exit); ENOSPC fails the batch, keeps its records queued and
//! leaves the log as it was, so a later flush succeeds once space is freed.

mod batcher;
mod device;
mod dma_device;
mod log;
mod mem_device;
pub mod record;
mod scan;

pub use batcher::{Batch, Batcher, Position};
pub use device::{Device, DeviceBuf, SegmentFile};
pub use dma_device::{prime_dma, DmaDevice, DmaSegment};
pub use log::{Recovered, Wal, WalRecord, WalStats};
pub use mem_device::{Faults, MemDevice, Tear, SECTOR_BYTES};
pub use scan::{free_name, parse_free_name, parse_segment_name, segment_name};

use std::time::Duration;

use zinc_protocol::types::Zxid;

/// Sizes and bounds of the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalConfig {
    /// Size each segment file is pre-allocated to; a segment rolls when the next record would
    /// not fit.
    pub segment_bytes: u64,
    /// The O_DIRECT alignment: offsets and lengths of every write are multiples of it.
    pub block_bytes: usize,
    /// Most record bytes (headers included) in one group commit. Recovery treats garbage that
    /// lies within this distance of the log's end as a torn last write, so do not lower it
    /// between a crash and the restart that recovers from it.
    pub batch_bytes_max: usize,
    /// Most records in one group commit.
    pub batch_records_max: usize,
    /// Largest payload of one record.
    pub record_bytes_max: usize,
    /// Most encoded bytes waiting to be written; `append` fails beyond it (backpressure).
    pub pending_bytes_max: usize,
    /// Least time from the start of one group commit to the start of the next while commits
    /// stay small: records that would start a commit sooner wait out the rest of it, unless
    /// `commit_records` of them are waiting. A commit is a write and a cache flush, whose cost
    /// to the device (and to a virtual disk's host) barely depends on their size; at moderate
    /// load, with one or two records each, they would come as fast as the disk answers. Zero
    /// starts a commit as soon as a record waits.
    pub commit_interval: Duration,
    /// Records waiting that start a commit without waiting out `commit_interval`.
    pub commit_records: usize,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            block_bytes: 4096,
            batch_bytes_max: 2 << 20,
            batch_records_max: 16_384,
            // jute.maxbuffer's default is 1 MiB; a txn adds its header to the client's data.
            record_bytes_max: (1 << 20) + (16 << 10),
            pending_bytes_max: 64 << 20,
            commit_interval: Duration::ZERO,
            commit_records: 4,
        }
    }
}

impl WalConfig {
    /// Checks the relations between the sizes.
    pub fn validate(&self) -> Result<(), WalError> {
        let block = self.block_bytes;
        let checks = [
            (
                block.is_power_of_two() && block >= 512,
                "block_bytes must be a power of two >= 512",
            ),
            (
                self.segment_bytes & (block as u64).wrapping_sub(1) == 0,
                "segment_bytes must be a multiple of block_bytes",
            ),
            (
                record::encoded_len_bytes(self.record_bytes_max) <= self.batch_bytes_max,
                "a record of record_bytes_max must fit in batch_bytes_max",
            ),
            (
                (self.batch_bytes_max + 2 * block) as u64 <= self.segment_bytes,
                "a batch must fit in a segment",
            ),
            (
                self.batch_records_max > 0,
                "batch_records_max must be positive",
            ),
            (
                self.pending_bytes_max >= self.batch_bytes_max,
                "pending_bytes_max must hold at least one batch",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(WalError::Config(why)),
            None => Ok(()),
        }
    }

    /// How far past the end of the valid records a torn last write can leave garbage.
    pub fn torn_window_bytes(&self) -> usize {
        self.batch_bytes_max + 2 * self.block_bytes
    }
}

/// What can go wrong in the WAL.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// fsync failed: what was written may or may not be on disk. Fatal.
    #[error("WAL fsync failed on {file}: {source}; the log can no longer be trusted")]
    SyncFailed {
        file: String,
        source: std::io::Error,
    },
    /// A write failed or was short (not for lack of space). Fatal.
    #[error("WAL write of {len_bytes} bytes at byte {offset_bytes} of {file} failed: {reason}")]
    WriteFailed {
        file: String,
        offset_bytes: u64,
        len_bytes: usize,
        reason: String,
    },
    /// The device is full: the batch was not written, the log is unchanged, its records stay
    /// queued and the next flush retries them.
    #[error("WAL device full while writing {file}: {source}; free space to resume writes")]
    NoSpace {
        file: String,
        source: std::io::Error,
    },
    /// A valid record follows an invalid one: damage in the middle of the log. Fatal.
    #[error("WAL corrupt: {file} at byte {offset_bytes}: {reason}")]
    Corrupt {
        file: String,
        offset_bytes: u64,
        reason: String,
    },
    /// Any other I/O error (opening, reading, removing files).
    #[error("WAL I/O error during {op} on {file}: {source}")]
    Io {
        op: &'static str,
        file: String,
        source: std::io::Error,
    },
    /// An earlier fatal error stopped the WAL.
    #[error("WAL stopped after an earlier fatal error: {0}")]
    Failed(String),
    /// Zxids are never negative (a negative one would read back as a seal).
    #[error("zxid {0} is negative")]
    NegativeZxid(Zxid),
    /// Zxids must increase.
    #[error("zxid {zxid} appended after {last}")]
    OutOfOrder { zxid: Zxid, last: Zxid },
    /// The payload is larger than `record_bytes_max`.
    #[error("WAL record of {len_bytes} bytes exceeds the limit of {limit_bytes}")]
    RecordTooLarge {
        len_bytes: usize,
        limit_bytes: usize,
    },
    /// Too many bytes are waiting to be written.
    #[error("WAL append queue full ({pending_bytes} bytes pending)")]
    Backpressure { pending_bytes: usize },
    /// Truncation needs an idle log (nothing pending or in flight).
    #[error("WAL busy: {0}")]
    Busy(&'static str),
    /// The configuration is inconsistent.
    #[error("invalid WAL config: {0}")]
    Config(&'static str),
}

impl WalError {
    /// True if the server must stop: the on-disk state is unknown or damaged.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            WalError::SyncFailed { .. }
                | WalError::WriteFailed { .. }
                | WalError::Corrupt { .. }
                | WalError::Failed(_)
        )
    }
}

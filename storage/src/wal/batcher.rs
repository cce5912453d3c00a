//! The group-commit batcher: pure state, no I/O.
//!
//! Appended records wait in `pending`. [`Batcher::take_batch`] closes a batch from the front of
//! `pending` (bounded by `batch_bytes_max`, `batch_records_max` and the room left in the
//! segment) and hands back the block-aligned extent to write; the driver has
//! [`Batcher::fill`] put its bytes into the device's buffer, writes it and syncs, then calls [`Batcher::complete`] (or [`Batcher::abort`] if the write failed).
//! Only one batch is in flight at a time, and records appended meanwhile form the next batch:
//! that is the whole group-commit policy, "the batch closes when the previous sync returns".
//!
//! A batch that ends mid-block leaves that partial block in `tail`; the next batch starts by
//! rewriting it, so no padding is ever persisted between records and the log stays densely
//! packed. The rewritten prefix is byte-identical to what is on disk, so a torn rewrite cannot
//! damage records that were already durable.
//!
//! Under load the rewrite is avoided: when more records wait than the batch takes, the batch
//! also carries the first bytes of the next record up to the block boundary, so it ends on a
//! block and the next batch starts on a fresh one with the rest of that record. A batch of
//! `batch_bytes_max` then writes exactly that many bytes, as a raw write loop of that size
//! would. The partly written record is not durable until the batch that finishes it is; if the
//! log stops in between, recovery finds its prefix as a torn tail and cuts it off.

use std::collections::VecDeque;

use zinc_protocol::types::Zxid;

use super::record;
use super::{WalConfig, WalError};

/// Where the log ends: the segment being written and how many of its bytes hold records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The first zxid of the current segment (its file name).
    pub segment: Zxid,
    /// Bytes of complete records in the segment.
    pub end_bytes: u64,
    /// Where the next write continues: `end_bytes`, or the block boundary after it when the
    /// last batch also wrote the first bytes of the record that follows.
    pub written_bytes: u64,
    /// The segment's bytes from the last block boundary up to `written_bytes`.
    pub tail: Vec<u8>,
    /// The zxid of the last durable record.
    pub last_zxid: Zxid,
}

impl Position {
    /// The position after the last complete record, nothing written past it.
    pub fn at_end(segment: Zxid, end_bytes: u64, tail: Vec<u8>, last_zxid: Zxid) -> Self {
        Self {
            segment,
            end_bytes,
            written_bytes: end_bytes,
            tail,
            last_zxid,
        }
    }
}

/// One group commit: write `len_bytes` at `offset_bytes` of `segment` (the bytes come from
/// [`Batcher::fill`]), then fdatasync.
#[derive(Debug)]
pub struct Batch {
    /// The segment to write (its first zxid).
    pub segment: Zxid,
    /// The segment file does not exist yet: create it (pre-zeroed) before writing.
    pub create_segment: bool,
    /// The batch moves the log to a new segment: seal the previous one first
    /// ([`Batcher::seal`]).
    pub seal_previous: bool,
    /// Block-aligned file offset of the write.
    pub offset_bytes: u64,
    /// Block-aligned length of the write: the previous partial block, the records, zero padding.
    pub len_bytes: usize,
    /// The last complete record's zxid: durable once this batch is.
    pub last_zxid: Zxid,
    /// How many records the batch completes.
    pub records: usize,
    /// Bytes of the previous partial block rewritten at the start.
    tail_bytes: usize,
    end_bytes: u64,
    written_bytes: u64,
    /// Bytes taken from the queue: the complete records and the next record's first bytes.
    pending_bytes: usize,
    /// How many of the next record's bytes the batch writes.
    split_bytes: usize,
}

/// The group-commit state. See the module doc.
#[derive(Debug)]
pub struct Batcher {
    config: WalConfig,
    position: Option<Position>,
    /// Encoded records; those before `pending_start` are written and wait to be compacted.
    pending: Vec<u8>,
    pending_start: usize,
    pending_records: VecDeque<(Zxid, usize)>,
    /// Bytes of the front pending record already written (by a batch that ended on a block).
    front_written: usize,
    in_flight: bool,
    last_appended: Option<Zxid>,
}

impl Batcher {
    /// A batcher for an empty log (`None`) or one that continues at `position`.
    pub fn new(config: WalConfig, position: Option<Position>) -> Self {
        if let Some(p) = &position {
            let block = config.block_bytes as u64;
            assert_eq!(
                p.tail.len() as u64,
                p.written_bytes % block,
                "tail must be the partial block"
            );
            assert!(p.end_bytes <= p.written_bytes && p.written_bytes <= config.segment_bytes);
        }
        let last_appended = position.as_ref().map(|p| p.last_zxid);
        Self {
            config,
            position,
            pending: Vec::new(),
            pending_start: 0,
            pending_records: VecDeque::new(),
            front_written: 0,
            in_flight: false,
            last_appended,
        }
    }

    /// Queues a record. Zxids must increase; the payload and the queue are bounded.
    pub fn append(&mut self, zxid: Zxid, payload: &[u8]) -> Result<(), WalError> {
        if zxid < Zxid::ZERO {
            return Err(WalError::NegativeZxid(zxid));
        }
        if let Some(last) = self.last_appended {
            if zxid <= last {
                return Err(WalError::OutOfOrder { zxid, last });
            }
        }
        if payload.len() > self.config.record_bytes_max {
            return Err(WalError::RecordTooLarge {
                len_bytes: payload.len(),
                limit_bytes: self.config.record_bytes_max,
            });
        }
        if self.pending_bytes() + record::encoded_len_bytes(payload.len())
            > self.config.pending_bytes_max
        {
            return Err(WalError::Backpressure {
                pending_bytes: self.pending_bytes(),
            });
        }
        let start = self.pending.len();
        record::encode(zxid, payload, &mut self.pending);
        self.pending_records
            .push_back((zxid, self.pending.len() - start));
        self.last_appended = Some(zxid);
        Ok(())
    }

    /// Closes the next batch, or `None` if one is in flight or nothing is pending. Its bytes
    /// are written into the device's buffer by [`Batcher::fill`].
    pub fn take_batch(&mut self) -> Option<Batch> {
        if self.in_flight {
            return None;
        }
        let &(first_zxid, first_len) = self.pending_records.front()?;
        let segment_bytes = self.config.segment_bytes;
        let (segment, start_bytes, tail_bytes, create_segment) = match &self.position {
            // A record partly written continues where it started.
            Some(p)
                if self.front_written > 0
                    || p.written_bytes + first_len as u64 <= segment_bytes =>
            {
                (p.segment, p.written_bytes, p.tail.len(), false)
            }
            _ => (first_zxid, 0, 0, true),
        };
        let (records, record_bytes) = self.count_batch(segment_bytes - start_bytes);
        let block = self.config.block_bytes as u64;
        let end_bytes = start_bytes + record_bytes as u64;
        // More records wait: end the write on a block with the next record's first bytes, so
        // the next batch does not rewrite this block. Only a strict prefix of a record that
        // belongs in this segment, so the bounds on the batch hold.
        let gap = (end_bytes.next_multiple_of(block) - end_bytes) as usize;
        let split_bytes = match self.pending_records.get(records) {
            Some(&(_, next_len))
                if gap > 0 && next_len > gap && end_bytes + next_len as u64 <= segment_bytes =>
            {
                gap
            }
            _ => 0,
        };
        let data_bytes = tail_bytes + record_bytes + split_bytes;
        self.in_flight = true;
        Some(Batch {
            segment,
            create_segment,
            seal_previous: create_segment && self.position.is_some(),
            offset_bytes: start_bytes - tail_bytes as u64,
            len_bytes: data_bytes.next_multiple_of(self.config.block_bytes),
            last_zxid: self.pending_records[records - 1].0,
            records,
            tail_bytes,
            end_bytes,
            written_bytes: end_bytes + split_bytes as u64,
            pending_bytes: record_bytes + split_bytes,
            split_bytes,
        })
    }

    /// Writes the batch's bytes into `out` (`batch.len_bytes` long): the previous partial
    /// block, the records, zeros to the block's end. Call it while the batch is in flight.
    pub fn fill(&self, batch: &Batch, out: &mut [u8]) {
        assert_eq!(out.len(), batch.len_bytes, "buffer must fit the batch");
        let tail = self.position.as_ref().map_or(&[][..], |p| &p.tail[..]);
        let (head, rest) = out.split_at_mut(batch.tail_bytes);
        head.copy_from_slice(&tail[..batch.tail_bytes]);
        let (records, padding) = rest.split_at_mut(batch.pending_bytes);
        let start = self.pending_start;
        records.copy_from_slice(&self.pending[start..start + batch.pending_bytes]);
        padding.fill(0);
    }

    /// The write that seals the current segment: its partial block followed by a seal record,
    /// zero-padded to the block (segment, offset, bytes). Where fewer than a header's bytes are
    /// left in the segment, the padding alone ends it (recovery reads zeros there as its end).
    /// `None` for an empty log.
    pub fn seal(&self) -> Option<(Zxid, u64, Vec<u8>)> {
        let p = self.position.as_ref()?;
        debug_assert_eq!(p.end_bytes, p.written_bytes, "no record spans two segments");
        let mut bytes = p.tail.clone();
        if p.written_bytes + record::HEADER_BYTES as u64 <= self.config.segment_bytes {
            record::encode_seal(&mut bytes);
        }
        bytes.resize(bytes.len().next_multiple_of(self.config.block_bytes), 0);
        Some((p.segment, p.written_bytes - p.tail.len() as u64, bytes))
    }

    /// How many front records form the batch, and their unwritten bytes; always at least one.
    fn count_batch(&self, room_bytes: u64) -> (usize, usize) {
        let mut records = 0;
        let mut bytes = 0;
        for &(_, len) in &self.pending_records {
            let len = if records == 0 {
                len - self.front_written
            } else {
                len
            };
            let full = records == self.config.batch_records_max
                || bytes + len > self.config.batch_bytes_max
                || (bytes + len) as u64 > room_bytes;
            if records > 0 && full {
                break;
            }
            records += 1;
            bytes += len;
        }
        (records, bytes)
    }

    /// The batch is written and synced: its records are durable.
    pub fn complete(&mut self, batch: Batch) {
        assert!(self.in_flight, "complete without a batch in flight");
        let block = self.config.block_bytes as u64;
        // The new partial block: from the last boundary before the written end, taken from the
        // old tail (if the batch stayed in its block) and from the queue.
        let tail_start = (batch.written_bytes / block * block - batch.offset_bytes) as usize;
        let data_bytes = batch.tail_bytes + batch.pending_bytes;
        let mut tail = Vec::with_capacity(data_bytes - tail_start);
        if tail_start < batch.tail_bytes {
            let old = self.position.as_ref().map_or(&[][..], |p| &p.tail[..]);
            tail.extend_from_slice(&old[tail_start..batch.tail_bytes]);
        }
        let from = self.pending_start + tail_start.saturating_sub(batch.tail_bytes);
        tail.extend_from_slice(&self.pending[from..self.pending_start + batch.pending_bytes]);
        self.position = Some(Position {
            segment: batch.segment,
            end_bytes: batch.end_bytes,
            written_bytes: batch.written_bytes,
            tail,
            last_zxid: batch.last_zxid,
        });
        self.pending_start += batch.pending_bytes;
        // Compact only once the written prefix is at least half the buffer, so each byte is
        // moved at most once on average however long the queue is.
        if self.pending_start == self.pending.len() {
            self.pending.clear();
            self.pending_start = 0;
        } else if self.pending_start >= self.pending.len() / 2 {
            self.pending.drain(..self.pending_start);
            self.pending_start = 0;
        }
        self.pending_records.drain(..batch.records);
        self.front_written = batch.split_bytes;
        self.in_flight = false;
    }

    /// The batch failed without damaging the log: its records stay queued for the next try.
    pub fn abort(&mut self, _batch: Batch) {
        assert!(self.in_flight, "abort without a batch in flight");
        self.in_flight = false;
    }

    /// Where durable records end (`None` for an empty log).
    pub fn position(&self) -> Option<&Position> {
        self.position.as_ref()
    }

    /// The last durable zxid, if any record is durable.
    pub fn durable_zxid(&self) -> Option<Zxid> {
        self.position.as_ref().map(|p| p.last_zxid)
    }

    /// The last appended zxid (durable or not).
    pub fn last_appended(&self) -> Option<Zxid> {
        self.last_appended
    }

    /// Encoded bytes queued and not yet durable.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len() - self.pending_start
    }

    /// True if records wait to be written (whether or not a batch is in flight).
    pub fn has_pending(&self) -> bool {
        !self.pending_records.is_empty()
    }

    /// Records queued and not yet durable (those of a batch in flight included).
    pub fn pending_count(&self) -> usize {
        self.pending_records.len()
    }

    /// True while a batch is being written.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::wal::record::{decode_at, Decoded, HEADER_BYTES};

    fn config() -> WalConfig {
        WalConfig {
            segment_bytes: 64 * 1024,
            block_bytes: 4096,
            batch_bytes_max: 8192,
            batch_records_max: 100,
            record_bytes_max: 4096,
            pending_bytes_max: 1 << 20,
            ..WalConfig::default()
        }
    }

    /// Plays batches onto an in-memory image of each segment, like a device would.
    fn run_all(b: &mut Batcher, disk: &mut std::collections::BTreeMap<Zxid, Vec<u8>>) -> usize {
        let mut batches = 0;
        while let Some(batch) = b.take_batch() {
            let bytes = bytes_of(b, &batch);
            assert_eq!(batch.offset_bytes % 4096, 0);
            assert_eq!(bytes.len() % 4096, 0);
            assert_eq!(batch.create_segment, !disk.contains_key(&batch.segment));
            let seg = disk
                .entry(batch.segment)
                .or_insert_with(|| vec![0; 64 * 1024]);
            let at = batch.offset_bytes as usize;
            seg[at..at + bytes.len()].copy_from_slice(&bytes);
            b.complete(batch);
            batches += 1;
        }
        batches
    }

    fn bytes_of(b: &Batcher, batch: &Batch) -> Vec<u8> {
        let mut bytes = vec![0xee; batch.len_bytes];
        b.fill(batch, &mut bytes);
        bytes
    }

    fn zxids_in(seg: &[u8]) -> Vec<i64> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Decoded::Record { zxid, next, .. } = decode_at(seg, at, 4096) {
            out.push(zxid.0);
            at = next;
        }
        assert_eq!(decode_at(seg, at, 4096), Decoded::End);
        out
    }

    #[test]
    fn partial_block_is_rewritten_not_padded() {
        let mut b = Batcher::new(config(), None);
        let mut disk = Default::default();
        b.append(Zxid(1), &[1; 100]).unwrap();
        assert_eq!(run_all(&mut b, &mut disk), 1);
        let p = b.position().unwrap().clone();
        assert_eq!(p.end_bytes as usize, HEADER_BYTES + 100);
        assert_eq!(p.tail.len(), HEADER_BYTES + 100);
        b.append(Zxid(2), &[2; 100]).unwrap();
        let batch = b.take_batch().unwrap();
        assert_eq!((batch.offset_bytes, batch.create_segment), (0, false));
        assert_eq!(&bytes_of(&b, &batch)[..p.tail.len()], &p.tail[..]);
        b.complete(batch);
        assert_eq!(b.durable_zxid(), Some(Zxid(2)));
    }

    #[test]
    fn under_load_batches_end_on_a_block_with_the_next_record_split() {
        let config = WalConfig {
            batch_bytes_max: 4096,
            ..config()
        };
        let mut b = Batcher::new(config, None);
        for z in 1..=200 {
            b.append(Zxid(z), &[z as u8; 100]).unwrap(); // 116 bytes encoded
        }
        let first = b.take_batch().unwrap();
        // 35 whole records (4060 bytes) and 36 bytes of the 36th: one block, nothing rewritten.
        assert_eq!((first.len_bytes, first.records), (4096, 35));
        assert_eq!(first.last_zxid, Zxid(35));
        let first_bytes = bytes_of(&b, &first);
        b.complete(first);
        assert_eq!(
            b.durable_zxid(),
            Some(Zxid(35)),
            "the split record is not durable"
        );
        let p = b.position().unwrap().clone();
        assert_eq!(
            (p.end_bytes, p.written_bytes, p.tail.len()),
            (4060, 4096, 0)
        );
        let second = b.take_batch().unwrap();
        assert_eq!((second.offset_bytes, second.len_bytes), (4096, 4096));
        assert_eq!(second.last_zxid, Zxid(35 + 35));
        let mut seg = first_bytes;
        seg.extend_from_slice(&bytes_of(&b, &second));
        b.complete(second);
        let mut disk = std::collections::BTreeMap::from([(Zxid(1), seg)]);
        disk.get_mut(&Zxid(1)).unwrap().resize(64 * 1024, 0);
        run_all(&mut b, &mut disk);
        assert_eq!(zxids_in(&disk[&Zxid(1)]), (1..=200).collect::<Vec<_>>());
    }

    #[test]
    fn a_record_is_never_split_across_segments() {
        // 1000-byte records, 8 KiB batches: every batch splits a record until the segment's
        // last record, which must not be split into a segment it does not fit in.
        let mut b = Batcher::new(config(), None);
        let mut disk = Default::default();
        for z in 1..=130 {
            b.append(Zxid(z), &[z as u8; 984]).unwrap();
        }
        run_all(&mut b, &mut disk);
        let names: Vec<i64> = disk.keys().map(|z| z.0).collect();
        assert_eq!(names, vec![1, 66]);
        let all: Vec<i64> = disk.values().flat_map(|s| zxids_in(s)).collect();
        assert_eq!(all, (1..=130).collect::<Vec<_>>());
    }

    #[test]
    fn one_batch_in_flight_and_next_forms_meanwhile() {
        let mut b = Batcher::new(config(), None);
        b.append(Zxid(1), b"a").unwrap();
        let first = b.take_batch().unwrap();
        b.append(Zxid(2), b"b").unwrap();
        b.append(Zxid(3), b"c").unwrap();
        assert!(
            b.take_batch().is_none(),
            "second batch while first in flight"
        );
        b.complete(first);
        let second = b.take_batch().unwrap();
        assert_eq!((second.records, second.last_zxid), (2, Zxid(3)));
    }

    #[test]
    fn bounds_split_batches_and_segments_roll() {
        let mut b = Batcher::new(config(), None);
        let mut disk = Default::default();
        for z in 1..=200 {
            b.append(Zxid(z), &[z as u8; 984]).unwrap(); // 1000 bytes encoded
        }
        let batches = run_all(&mut b, &mut disk);
        // 8 records per 8 KiB batch; 65 records per 64 KiB segment.
        assert!(batches >= 25, "{batches} batches");
        let names: Vec<i64> = disk.keys().map(|z| z.0).collect();
        assert_eq!(names, vec![1, 66, 131, 196]);
        let all: Vec<i64> = disk.values().flat_map(|s| zxids_in(s)).collect();
        assert_eq!(all, (1..=200).collect::<Vec<_>>());
    }

    #[test]
    fn record_count_bound_is_respected() {
        let mut b = Batcher::new(
            WalConfig {
                batch_records_max: 3,
                ..config()
            },
            None,
        );
        for z in 1..=7 {
            b.append(Zxid(z), b"x").unwrap();
        }
        let batch = b.take_batch().unwrap();
        assert_eq!(batch.records, 3);
    }

    #[test]
    fn abort_keeps_records_for_the_retry() {
        let mut b = Batcher::new(config(), None);
        b.append(Zxid(1), b"a").unwrap();
        let batch = b.take_batch().unwrap();
        b.abort(batch);
        assert_eq!(b.durable_zxid(), None);
        let retry = b.take_batch().unwrap();
        assert!(retry.create_segment);
        assert_eq!(retry.last_zxid, Zxid(1));
    }

    #[test]
    fn limits_and_order_are_enforced() {
        let mut b = Batcher::new(
            WalConfig {
                pending_bytes_max: 100,
                ..config()
            },
            None,
        );
        b.append(Zxid(5), b"a").unwrap();
        assert!(matches!(
            b.append(Zxid(5), b"a"),
            Err(WalError::OutOfOrder { .. })
        ));
        assert!(matches!(
            b.append(Zxid(6), &[0; 4097]),
            Err(WalError::RecordTooLarge { .. })
        ));
        assert!(matches!(
            b.append(Zxid(6), &[0; 90]),
            Err(WalError::Backpressure { .. })
        ));
    }
}

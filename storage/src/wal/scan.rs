//! Segment names and the pure scan of one segment's bytes, used by recovery and reads.

use std::ops::Range;

use zinc_protocol::types::Zxid;

use super::record::{decode_at, Decoded, HEADER_BYTES, SEAL_ZXID};

/// `<first zxid as 16 lowercase hex digits>.log`.
pub fn segment_name(first: Zxid) -> String {
    format!("{:016x}.log", first.0 as u64)
}

/// The first zxid of a segment file name, or `None` if the name is not a segment's.
pub fn parse_segment_name(name: &str) -> Option<Zxid> {
    parse_hex_name(name.strip_suffix(".log")?)
}

/// `<first zxid as 16 hex digits>.free`: a purged segment's file kept for reuse as a spare.
pub fn free_name(first: Zxid) -> String {
    format!("{:016x}.free", first.0 as u64)
}

/// The zxid in a purged segment file's name, or `None` if the name is not one.
pub fn parse_free_name(name: &str) -> Option<Zxid> {
    parse_hex_name(name.strip_suffix(".free")?)
}

fn parse_hex_name(hex: &str) -> Option<Zxid> {
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(|v| Zxid(v as i64))
}

/// Where the scan of a segment stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// At an all-zero header (or the end of the bytes): nothing was written there.
    End,
    /// At a seal: the segment was closed there, and what follows is not part of the log.
    Sealed,
    /// At something that is not a valid record (torn, flipped, stale or truncated); why.
    Bad(&'static str),
}

/// What one segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    /// Valid records in order: zxid and the payload's byte range.
    pub records: Vec<(Zxid, Range<usize>)>,
    /// Where the valid records end.
    pub end_bytes: usize,
    /// Why the scan stopped there.
    pub stop: Stop,
    /// One past the last non-zero byte at or after `end_bytes` (`end_bytes` if there is none,
    /// or if the segment is sealed).
    pub garbage_end_bytes: usize,
}

impl SegmentScan {
    /// True if the segment ends cleanly: sealed, or only zeros after the valid records.
    pub fn is_clean(&self) -> bool {
        self.stop == Stop::Sealed || self.garbage_end_bytes == self.end_bytes
    }

    /// True if the segment was sealed after its records.
    pub fn is_sealed(&self) -> bool {
        self.stop == Stop::Sealed
    }

    /// Why the scan stopped, for an error message.
    pub fn reason(&self) -> &'static str {
        match self.stop {
            Stop::Bad(why) => why,
            Stop::End if self.garbage_end_bytes > self.end_bytes => {
                "non-zero bytes after the end marker"
            }
            Stop::End | Stop::Sealed => "invalid record",
        }
    }

    /// The last valid record's zxid.
    pub fn last_zxid(&self) -> Option<Zxid> {
        self.records.last().map(|(z, _)| *z)
    }

    /// Where, at or after `from`, a valid record of this log starts past the stop (a zxid
    /// above the last one, and at least the segment's first): a sign that the stop is damage
    /// in the middle of the log rather than its end. `buf` is the scanned segment, named for
    /// `first`. An older segment's records (in a reused file) have lower zxids and do not count.
    ///
    /// Only starts within one largest record of `from` are tried: the log's records after
    /// damage are contiguous, so if any of them starts at or after `from`, one starts there.
    pub fn later_record(
        &self,
        buf: &[u8],
        first: Zxid,
        from: usize,
        payload_bytes_max: usize,
    ) -> Option<usize> {
        if self.is_sealed() {
            return None;
        }
        let above = self
            .last_zxid()
            .map_or(first.0 - 1, |l| l.0.max(first.0 - 1));
        let end = self.garbage_end_bytes.min(buf.len());
        let last_start = from + HEADER_BYTES + payload_bytes_max;
        find_record_above(&buf[..end], from, last_start, above, payload_bytes_max)
    }
}

/// How far above the last zxid a record found past damage may be and still count as the log's
/// own (a segment spans far fewer than 2^16 epochs); the bound keeps the search cheap.
const RESUME_ZXID_SPAN: u64 = 1 << 48;

/// Scans `buf` (a whole segment) from the start; records must have zxids above `prev` and
/// increasing.
pub fn scan_segment(buf: &[u8], payload_bytes_max: usize, prev: Option<Zxid>) -> SegmentScan {
    Scanner::new(payload_bytes_max, prev).finish(buf)
}

/// A segment's scan fed its bytes as they arrive: [`Scanner::advance`] tells where the records
/// stop as soon as the bytes so far show it, so recovery reads a segment only as far as it
/// looks past that point. Over the same bytes it gives the same [`SegmentScan`] as
/// [`scan_segment`], scanning each record once.
pub struct Scanner {
    records: Vec<(Zxid, Range<usize>)>,
    at: usize,
    last: Option<Zxid>,
    stop: Option<Stop>,
    payload_bytes_max: usize,
}

impl Scanner {
    /// Records must have zxids above `prev` and increasing.
    pub fn new(payload_bytes_max: usize, prev: Option<Zxid>) -> Scanner {
        Scanner {
            records: Vec::new(),
            at: 0,
            last: prev,
            stop: None,
            payload_bytes_max,
        }
    }

    /// Scans what `buf` (the segment's first bytes, all of it when `complete`) adds to what
    /// was scanned before; returns where the records stop and why, once that is known. A
    /// record is only decoded once all of it is in `buf`.
    pub fn advance(&mut self, buf: &[u8], complete: bool) -> Option<(usize, Stop)> {
        while self.stop.is_none() {
            if !complete && !self.next_is_whole(buf) {
                return None;
            }
            let stop = match decode_at(buf, self.at, self.payload_bytes_max) {
                Decoded::End => Stop::End,
                Decoded::Bad(why) => Stop::Bad(why),
                Decoded::Record {
                    zxid,
                    payload_start,
                    next,
                } if zxid == SEAL_ZXID && next == payload_start => Stop::Sealed,
                Decoded::Record { zxid, .. } if self.last.is_some_and(|l| zxid <= l) => {
                    Stop::Bad("zxid does not increase")
                }
                Decoded::Record {
                    zxid,
                    payload_start,
                    next,
                } => {
                    self.records.push((zxid, payload_start..next));
                    self.last = Some(zxid);
                    self.at = next;
                    continue;
                }
            };
            self.stop = Some(stop);
        }
        self.stop.map(|stop| (self.at, stop))
    }

    /// Whether `buf` holds the next record's header and, if its length is within the limit,
    /// all of the record: only then does decoding it say the same as over the whole segment.
    fn next_is_whole(&self, buf: &[u8]) -> bool {
        let Some(header) = buf.get(self.at..self.at + HEADER_BYTES) else {
            return false;
        };
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        len > self.payload_bytes_max || self.at + HEADER_BYTES + len <= buf.len()
    }

    /// The scan of `buf`: the bytes `advance` was last given, which either showed the stop or
    /// are the whole segment (then its end is where the records stop, if they run up to it).
    pub fn finish(mut self, buf: &[u8]) -> SegmentScan {
        // With `complete`, decoding always stops (at the end of `buf` at the latest).
        let (at, stop) = self.advance(buf, true).unwrap_or((self.at, Stop::End));
        let garbage_end_bytes = match stop {
            Stop::Sealed => at,
            _ => at + last_nonzero_end(&buf[at..]),
        };
        SegmentScan {
            records: self.records,
            end_bytes: at,
            stop,
            garbage_end_bytes,
        }
    }
}

/// The first offset in `from..=last_start` where a valid record with a zxid above `above` (by
/// less than [`RESUME_ZXID_SPAN`]) starts. Every offset is tried (records are not aligned), so the
/// checksum, the costly part, is only computed where the header and the one after it are
/// plausible: a reused file's older records are a dense field of near-misses.
fn find_record_above(
    buf: &[u8],
    from: usize,
    last_start: usize,
    above: i64,
    payload_bytes_max: usize,
) -> Option<usize> {
    let stop = buf.len().checked_sub(HEADER_BYTES)?.min(last_start);
    let mut at = from;
    while at <= stop {
        if let Some((zxid, next)) = plausible_header(buf, at, above, payload_bytes_max) {
            let followed = match buf.get(next..next + HEADER_BYTES) {
                None => true,
                Some(header) if header.iter().all(|b| *b == 0) => true,
                Some(_) => plausible_header(buf, next, zxid, payload_bytes_max).is_some(),
            };
            if followed
                && matches!(
                    decode_at(buf, at, payload_bytes_max),
                    Decoded::Record { .. }
                )
            {
                return Some(at);
            }
        }
        at += 1;
    }
    None
}

/// The zxid and the end of the record whose header is at `at`, if its zxid is above `above`
/// (by less than [`RESUME_ZXID_SPAN`]) and its length fits the limit and `buf`.
fn plausible_header(
    buf: &[u8],
    at: usize,
    above: i64,
    payload_bytes_max: usize,
) -> Option<(i64, usize)> {
    let header: &[u8; HEADER_BYTES] = buf.get(at..at + HEADER_BYTES)?.try_into().ok()?;
    let zxid = i64::from_le_bytes([
        header[8], header[9], header[10], header[11], header[12], header[13], header[14],
        header[15],
    ]);
    if (zxid.wrapping_sub(above) as u64).wrapping_sub(1) >= RESUME_ZXID_SPAN {
        return None;
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let next = at + HEADER_BYTES + len;
    (len <= payload_bytes_max && next <= buf.len()).then_some((zxid, next))
}

/// One past the last non-zero byte of `bytes`, 0 if all are zero. The rest of a segment after
/// its records is tens of MB of zeros; this checks it 64 bytes at a time from the end.
fn last_nonzero_end(bytes: &[u8]) -> usize {
    const STEP: usize = 64;
    let whole = bytes.len() / STEP * STEP;
    if let Some(i) = bytes[whole..].iter().rposition(|b| *b != 0) {
        return whole + i + 1;
    }
    let mut end = whole;
    while end > 0 {
        let block = &bytes[end - STEP..end];
        if block.iter().fold(0u8, |any, b| any | b) != 0 {
            let i = block.iter().rposition(|b| *b != 0).unwrap_or(0);
            return end - STEP + i + 1;
        }
        end -= STEP;
    }
    0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::wal::record::encode;

    #[test]
    fn names_round_trip_and_sort_by_zxid() {
        let z = Zxid(0x0000_0003_0000_0001);
        assert_eq!(segment_name(z), "0000000300000001.log");
        assert_eq!(parse_segment_name(&segment_name(z)), Some(z));
        assert_eq!(parse_free_name(&free_name(z)), Some(z));
        assert_eq!(parse_free_name(&segment_name(z)), None);
        for bad in [
            "x.log",
            "0000000300000001.tmp",
            "000000030000000G.log",
            "00000003000000A1.log",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn scan_finds_records_end_and_garbage() {
        let mut buf = Vec::new();
        encode(Zxid(1), b"one", &mut buf);
        encode(Zxid(2), b"two", &mut buf);
        let end = buf.len();
        buf.resize(8192, 0);
        let clean = scan_segment(&buf, 100, None);
        assert_eq!(
            (clean.records.len(), clean.end_bytes, clean.stop),
            (2, end, Stop::End)
        );
        assert!(clean.is_clean());
        buf[5000] = 1;
        let dirty = scan_segment(&buf, 100, None);
        assert_eq!((dirty.end_bytes, dirty.garbage_end_bytes), (end, 5001));
        assert_eq!(dirty.reason(), "non-zero bytes after the end marker");
        assert_eq!(dirty.later_record(&buf, Zxid(1), end + 1, 100), None);
        let stale = scan_segment(&buf, 100, Some(Zxid(1)));
        assert_eq!(
            (stale.records.len(), stale.stop),
            (0, Stop::Bad("zxid does not increase"))
        );
    }

    #[test]
    fn a_seal_ends_the_segment_and_hides_what_follows() {
        let mut buf = Vec::new();
        encode(Zxid(7), b"seven", &mut buf);
        let end = buf.len();
        crate::wal::record::encode_seal(&mut buf);
        // An older segment's records after the seal, as in a recycled file.
        encode(Zxid(3), b"stale", &mut buf);
        buf.resize(4096, 0x55);
        let scan = scan_segment(&buf, 100, None);
        assert_eq!((scan.records.len(), scan.end_bytes), (1, end));
        assert!(scan.is_sealed() && scan.is_clean());
    }

    #[test]
    fn damage_is_told_from_stale_bytes_by_a_later_record_of_the_log() {
        let mut log = Vec::new();
        for z in 10..20 {
            encode(Zxid(z), &[z as u8; 37], &mut log);
        }
        // Records of an older segment (lower zxids) after the end: stale, not damage.
        let mut stale = log[..53 * 3].to_vec();
        let mut older = Vec::new();
        for z in 1..9 {
            encode(Zxid(z), &[z as u8; 37], &mut older);
        }
        stale.extend_from_slice(&older[20..]);
        let later = |buf: &[u8], scan: &SegmentScan| {
            scan.later_record(buf, Zxid(10), scan.end_bytes + 1, 100)
        };
        let scan = scan_segment(&stale, 100, None);
        assert_eq!((scan.records.len(), later(&stale, &scan)), (3, None));
        assert!(!scan.is_clean());
        // A flipped byte in the fourth record: the fifth is found after it.
        let mut flipped = log.clone();
        flipped[53 * 3 + 20] ^= 1;
        let scan = scan_segment(&flipped, 100, None);
        assert_eq!(scan.records.len(), 3);
        assert_eq!(later(&flipped, &scan), Some(53 * 4));
        // A damaged header (length) too.
        let mut header = log.clone();
        header[53 * 5 + 5] = 0x7f;
        let scan = scan_segment(&header, 100, None);
        assert_eq!(
            (scan.records.len(), later(&header, &scan)),
            (5, Some(53 * 6))
        );
    }

    #[test]
    fn last_nonzero_byte_is_found_at_any_place() {
        for len in [0usize, 1, 63, 64, 65, 200, 4096] {
            assert_eq!(last_nonzero_end(&vec![0; len]), 0, "zeros of {len}");
            for at in (0..len).step_by(7).chain(len.checked_sub(1)) {
                let mut bytes = vec![0u8; len];
                bytes[at] = 0x80;
                if at > 3 {
                    bytes[at - 3] = 1;
                }
                assert_eq!(last_nonzero_end(&bytes), at + 1, "len {len}, byte {at}");
            }
        }
    }

    #[test]
    fn a_scan_fed_in_pieces_stops_where_the_whole_scan_does() {
        let mut log = Vec::new();
        for z in 10..30 {
            encode(Zxid(z), &vec![z as u8; 13 + 7 * z as usize], &mut log);
        }
        let seventh = {
            let mut first_six = Vec::new();
            for z in 10..16 {
                encode(Zxid(z), &vec![z as u8; 13 + 7 * z as usize], &mut first_six);
            }
            first_six.len()
        };
        let mut older = Vec::new();
        for z in 1..9 {
            encode(Zxid(z), &[z as u8; 90], &mut older);
        }
        let mut zeros = log.clone();
        zeros.resize(log.len() + 3000, 0);
        let mut sealed = log.clone();
        crate::wal::record::encode_seal(&mut sealed);
        sealed.extend_from_slice(&older);
        let mut reused = log.clone();
        reused.extend_from_slice(&older[40..]);
        let mut flipped = zeros.clone();
        flipped[seventh + 20] ^= 4;
        let mut long_length = zeros.clone();
        long_length[seventh + 5] = 0x7f;
        let mut stale_zxid = log[..seventh].to_vec();
        stale_zxid.extend_from_slice(&older);
        let mut torn = zeros.clone();
        torn.truncate(seventh + 9);
        for (name, segment) in [
            ("zeros", &zeros),
            ("sealed", &sealed),
            ("reused", &reused),
            ("flipped", &flipped),
            ("long length", &long_length),
            ("stale zxid", &stale_zxid),
            ("torn", &torn),
        ] {
            let whole = scan_segment(segment, 300, Some(Zxid(9)));
            for piece in [1, 7, 16, 100, 511, 4096] {
                let mut scanner = Scanner::new(300, Some(Zxid(9)));
                let mut found = None;
                for end in (piece..segment.len()).step_by(piece) {
                    if let Some(stop) = scanner.advance(&segment[..end], false) {
                        found = Some((end, stop));
                        break;
                    }
                }
                let stop = match found {
                    Some((end, stop)) => {
                        // Known as soon as the stop's bytes were there, and never before the
                        // stop itself was read.
                        assert!(end >= stop.0 && end < stop.0 + HEADER_BYTES + 300 + piece);
                        stop
                    }
                    None => scanner.advance(segment, true).unwrap(),
                };
                assert_eq!(
                    stop,
                    (whole.end_bytes, whole.stop),
                    "{name}, pieces of {piece}"
                );
                assert_eq!(scanner.finish(segment), whole, "{name}, pieces of {piece}");
            }
        }
    }
}

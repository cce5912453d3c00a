//! Segment names and the pure scan of one segment's bytes, used by recovery and reads.

use std::ops::Range;

use zinc_protocol::types::Zxid;

use super::record::{decode_at, Decoded};

/// `<first zxid as 16 lowercase hex digits>.log`.
pub fn segment_name(first: Zxid) -> String {
    format!("{:016x}.log", first.0 as u64)
}

/// The first zxid of a segment file name, or `None` if the name is not a segment's.
pub fn parse_segment_name(name: &str) -> Option<Zxid> {
    let hex = name.strip_suffix(".log")?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(|v| Zxid(v as i64))
}

/// What one segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    /// Valid records in order: zxid and the payload's byte range.
    pub records: Vec<(Zxid, Range<usize>)>,
    /// Where the valid records end.
    pub end_bytes: usize,
    /// Why the scan stopped, if not at an all-zero header.
    pub bad: Option<&'static str>,
    /// One past the last non-zero byte at or after `end_bytes` (`end_bytes` if there is none).
    pub garbage_end_bytes: usize,
}

impl SegmentScan {
    /// True if nothing but zeros follows the valid records.
    pub fn is_clean(&self) -> bool {
        self.garbage_end_bytes == self.end_bytes
    }

    /// The last valid record's zxid.
    pub fn last_zxid(&self) -> Option<Zxid> {
        self.records.last().map(|(z, _)| *z)
    }
}

/// Scans `buf` (a whole segment) from the start; records must have zxids above `prev` and
/// increasing.
pub fn scan_segment(buf: &[u8], payload_bytes_max: usize, prev: Option<Zxid>) -> SegmentScan {
    let mut records = Vec::new();
    let mut at = 0;
    let mut last = prev;
    let bad = loop {
        match decode_at(buf, at, payload_bytes_max) {
            Decoded::End => break None,
            Decoded::Bad(why) => break Some(why),
            Decoded::Record { zxid, .. } if last.is_some_and(|l| zxid <= l) => {
                break Some("zxid does not increase")
            }
            Decoded::Record {
                zxid,
                payload_start,
                next,
            } => {
                records.push((zxid, payload_start..next));
                last = Some(zxid);
                at = next;
            }
        }
    };
    let garbage_end_bytes = at + last_nonzero_end(&buf[at..]);
    SegmentScan {
        records,
        end_bytes: at,
        bad: bad.or((garbage_end_bytes > at).then_some("non-zero bytes after the end marker")),
        garbage_end_bytes,
    }
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
            (clean.records.len(), clean.end_bytes, clean.bad),
            (2, end, None)
        );
        assert!(clean.is_clean());
        buf[5000] = 1;
        let dirty = scan_segment(&buf, 100, None);
        assert_eq!((dirty.end_bytes, dirty.garbage_end_bytes), (end, 5001));
        assert_eq!(dirty.bad, Some("non-zero bytes after the end marker"));
        let stale = scan_segment(&buf, 100, Some(Zxid(1)));
        assert_eq!(
            (stale.records.len(), stale.bad),
            (0, Some("zxid does not increase"))
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
}

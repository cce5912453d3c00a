//! The on-disk record: a 16-byte header (CRC32C, payload length, zxid) followed by the payload.
//!
//! Layout, little-endian: `crc32c: u32 | len: u32 | zxid: i64 | payload[len]`. The CRC covers
//! `len`, `zxid` and the payload, so a torn or bit-flipped record fails it. Records are packed
//! back to back in a segment; an all-zero header marks the written end in a zero-filled
//! segment (no real record has an all-zero header because the CRC of the twelve bytes
//! `len | zxid` plus payload is never zero for a zero length and zxid: see the unit test).
//! Encoding here is checked again by decoding on recovery: the pair that keeps the format honest.
//!
//! A seal is a record with zxid -1 and no payload, written after a segment's last record when
//! the log moves on to the next segment: whatever follows a seal is not part of the log (a
//! reused segment file still holds an older segment's records there).

use zinc_protocol::types::Zxid;

/// Bytes in a record header.
pub const HEADER_BYTES: usize = 16;

/// Appends the encoded record (header + payload) to `out`.
pub fn encode(zxid: Zxid, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("record payload length checked by the caller");
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&zxid.0.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The zxid of a seal (real zxids are never negative).
pub const SEAL_ZXID: Zxid = Zxid(-1);

/// Appends a seal (see the module doc) to `out`.
pub fn encode_seal(out: &mut Vec<u8>) {
    encode(SEAL_ZXID, &[], out);
}

/// Bytes the encoded record takes.
pub fn encoded_len_bytes(payload_len_bytes: usize) -> usize {
    HEADER_BYTES + payload_len_bytes
}

/// What is found at an offset of a segment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A record whose CRC checks; the payload is `buf[payload_start..next]`.
    Record {
        zxid: Zxid,
        payload_start: usize,
        next: usize,
    },
    /// An all-zero header: nothing was written here.
    End,
    /// Something that is not a valid record (torn, flipped or truncated); why, for the message.
    Bad(&'static str),
}

/// Decodes the record at `offset` of `buf`; `payload_bytes_max` bounds the length field so a
/// corrupt length never makes the reader allocate or scan far.
pub fn decode_at(buf: &[u8], offset: usize, payload_bytes_max: usize) -> Decoded {
    let Some(header) = buf.get(offset..offset + HEADER_BYTES) else {
        // Fewer than a header's bytes left: a clean end only if they are all zero.
        return if buf[offset.min(buf.len())..].iter().all(|b| *b == 0) {
            Decoded::End
        } else {
            Decoded::Bad("header runs past the end of the segment")
        };
    };
    if header.iter().all(|b| *b == 0) {
        return Decoded::End;
    }
    let crc = u32::from_le_bytes(le4(&header[0..4]));
    let len = u32::from_le_bytes(le4(&header[4..8])) as usize;
    let zxid = Zxid(i64::from_le_bytes(le8(&header[8..16])));
    if len > payload_bytes_max {
        return Decoded::Bad("length field exceeds the record size limit");
    }
    let payload_start = offset + HEADER_BYTES;
    let next = payload_start + len;
    let Some(covered) = buf.get(offset + 4..next) else {
        return Decoded::Bad("record runs past the end of the segment");
    };
    if crc32c::crc32c(covered) != crc {
        return Decoded::Bad("checksum mismatch");
    }
    Decoded::Record {
        zxid,
        payload_start,
        next,
    }
}

fn le4(bytes: &[u8]) -> [u8; 4] {
    let mut out = [0; 4];
    out.copy_from_slice(bytes);
    out
}

fn le8(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0; 8];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_end_marker() {
        let mut buf = Vec::new();
        encode(Zxid(7), b"hello", &mut buf);
        encode(Zxid(8), b"", &mut buf);
        buf.extend_from_slice(&[0; 64]);
        let Decoded::Record {
            zxid,
            payload_start,
            next,
        } = decode_at(&buf, 0, 1024)
        else {
            panic!("first record must decode");
        };
        assert_eq!((zxid, &buf[payload_start..next]), (Zxid(7), &b"hello"[..]));
        let Decoded::Record {
            zxid, next: end, ..
        } = decode_at(&buf, next, 1024)
        else {
            panic!("empty record must decode");
        };
        assert_eq!(zxid, Zxid(8));
        assert_eq!(decode_at(&buf, end, 1024), Decoded::End);
    }

    #[test]
    fn zero_zxid_empty_record_is_not_an_end_marker() {
        let mut buf = Vec::new();
        encode(Zxid(0), b"", &mut buf);
        assert!(matches!(decode_at(&buf, 0, 0), Decoded::Record { .. }));
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let mut clean = Vec::new();
        encode(Zxid(0x1_0000_0005), b"payload bytes", &mut clean);
        for bit in 0..clean.len() * 8 {
            let mut buf = clean.clone();
            buf[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(decode_at(&buf, 0, 1 << 20), Decoded::Bad(_)),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn oversized_length_is_bad_without_reading() {
        let mut buf = Vec::new();
        encode(Zxid(1), &[5; 100], &mut buf);
        assert_eq!(
            decode_at(&buf, 0, 99),
            Decoded::Bad("length field exceeds the record size limit")
        );
        assert_eq!(
            decode_at(&buf[..50], 0, 1000),
            Decoded::Bad("record runs past the end of the segment")
        );
    }
}

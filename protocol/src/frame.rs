//! Length-prefixed framing: every message on a client connection is a 4-byte big-endian length
//! followed by that many bytes. `FrameDecoder` cuts frames out of a receive buffer as bytes
//! arrive, refusing lengths that are negative or above its limit before buffering them, so a
//! peer cannot make the server hold more than one limit's worth of bytes per connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// ZooKeeper's default `jute.maxbuffer`: the largest frame body accepted (0xfffff bytes).
pub const FRAME_BYTES_MAX_DEFAULT: usize = 0xfffff;

/// Size of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Why the bytes on a connection cannot be framed; the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("negative frame length {length}")]
    NegativeLength { length: i32 },
    #[error("frame length {length_bytes} exceeds the limit of {limit_bytes} bytes")]
    TooLarge {
        length_bytes: usize,
        limit_bytes: usize,
    },
}

/// Splits a byte stream into frame bodies. Stateless between frames: the length prefix stays
/// in the buffer until the whole body has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoder {
    limit_bytes: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(FRAME_BYTES_MAX_DEFAULT)
    }
}

impl FrameDecoder {
    /// A decoder that accepts bodies of at most `limit_bytes`.
    pub fn new(limit_bytes: usize) -> Self {
        FrameDecoder { limit_bytes }
    }

    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// The body length announced at the start of `buf`, checked against the limit; `None`
    /// until the 4 prefix bytes have arrived.
    pub fn peek_length(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX_BYTES>() else {
            return Ok(None);
        };
        let length = i32::from_be_bytes(*prefix);
        let length_bytes =
            usize::try_from(length).map_err(|_| FrameError::NegativeLength { length })?;
        if length_bytes > self.limit_bytes {
            return Err(FrameError::TooLarge {
                length_bytes,
                limit_bytes: self.limit_bytes,
            });
        }
        Ok(Some(length_bytes))
    }

    /// Takes the next whole frame body out of `buf`, or returns `None` (consuming nothing)
    /// if it has not fully arrived. On error nothing is consumed either.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(length_bytes) = self.peek_length(buf)? else {
            return Ok(None);
        };
        if buf.len() - LENGTH_PREFIX_BYTES < length_bytes {
            // Reserve the rest now so the socket reads fill one allocation.
            buf.reserve(LENGTH_PREFIX_BYTES + length_bytes - buf.len());
            return Ok(None);
        }
        buf.advance(LENGTH_PREFIX_BYTES);
        Ok(Some(buf.split_to(length_bytes).freeze()))
    }
}

/// Appends a frame: a length prefix, then whatever `body` writes, with the prefix patched to
/// the body's length once it is known.
pub fn encode_frame(out: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_i32(0);
    body(out);
    let length_bytes = out.len() - start - LENGTH_PREFIX_BYTES;
    let length = i32::try_from(length_bytes).expect("frame body exceeds i32::MAX bytes");
    out[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&length.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        encode_frame(&mut out, |b| b.put_slice(body));
        out
    }

    #[test]
    fn frames_arrive_byte_by_byte() {
        let mut wire = framed(b"hello");
        wire.extend_from_slice(&framed(b"")[..]);
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in wire.iter() {
            buf.put_u8(*byte);
            while let Some(frame) = decoder.decode(&mut buf).expect("valid") {
                frames.push(frame);
            }
        }
        assert_eq!(frames, vec![Bytes::from_static(b"hello"), Bytes::new()]);
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_frame_consumes_nothing() {
        let wire = framed(b"abc");
        let mut buf = BytesMut::from(&wire[..6]);
        assert_eq!(FrameDecoder::default().decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 6);
    }

    #[test]
    fn limits_are_typed_errors() {
        let decoder = FrameDecoder::new(4);
        let mut buf = framed(b"12345");
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::TooLarge {
                length_bytes: 5,
                limit_bytes: 4
            })
        );
        let mut exact = framed(b"1234");
        assert_eq!(
            decoder.decode(&mut exact),
            Ok(Some(Bytes::from_static(b"1234")))
        );
        let mut negative = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert_eq!(
            decoder.decode(&mut negative),
            Err(FrameError::NegativeLength { length: -2 })
        );
    }

    #[test]
    fn prefix_holds_the_body_length() {
        let out = framed(&[9; 300]);
        assert_eq!(&out[..4], &[0, 0, 1, 44]);
        assert_eq!(out.len(), 304);
    }
}

//! The jute codec: ZooKeeper's big-endian record serialization.
//!
//! `Reader` walks one frame's bytes and never reads past them; every length it is given is
//! checked against the bytes that remain before anything is allocated, so a hostile length field
//! costs an error, not memory. `Record` is implemented by every wire type; `jute_record!` derives
//! it for plain structs whose fields are encoded in declaration order, as `zookeeper.jute` does.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why a frame's bytes do not decode to the record that was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record truncated at byte {offset}: needed {needed} more bytes")]
    Truncated { offset: usize, needed: usize },
    #[error("negative length {length} at byte {offset}")]
    NegativeLength { offset: usize, length: i32 },
    #[error("null value at byte {offset} where one is required")]
    UnexpectedNull { offset: usize },
    #[error("string at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    #[error("unknown {what} value {value}")]
    UnknownValue { what: &'static str, value: i64 },
    #[error("{remaining} trailing bytes after the record")]
    TrailingBytes { remaining: usize },
    #[error("invalid record: {0}")]
    Invalid(&'static str),
}

pub type DecodeResult<T> = Result<T, DecodeError>;

/// A cursor over one frame. Decoding never looks beyond the bytes given here.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    consumed: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Reader { buf, consumed: 0 }
    }

    pub fn from_slice(buf: &[u8]) -> Self {
        Reader::new(Bytes::copy_from_slice(buf))
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Offset of the next byte within the original buffer (for error messages).
    pub fn offset(&self) -> usize {
        self.consumed
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self) -> DecodeResult<()> {
        match self.buf.len() {
            0 => Ok(()),
            remaining => Err(DecodeError::TrailingBytes { remaining }),
        }
    }

    fn need(&self, count: usize) -> DecodeResult<()> {
        if self.buf.len() < count {
            return Err(DecodeError::Truncated {
                offset: self.consumed,
                needed: count - self.buf.len(),
            });
        }
        Ok(())
    }

    pub fn read_u8(&mut self) -> DecodeResult<u8> {
        self.need(1)?;
        self.consumed += 1;
        Ok(self.buf.get_u8())
    }

    pub fn read_bool(&mut self) -> DecodeResult<bool> {
        // Java's DataInput.readBoolean: any non-zero byte is true.
        Ok(self.read_u8()? != 0)
    }

    pub fn read_i32(&mut self) -> DecodeResult<i32> {
        self.need(4)?;
        self.consumed += 4;
        Ok(self.buf.get_i32())
    }

    pub fn read_i64(&mut self) -> DecodeResult<i64> {
        self.need(8)?;
        self.consumed += 8;
        Ok(self.buf.get_i64())
    }

    /// Reads `count` raw bytes without copying.
    pub fn read_raw(&mut self, count: usize) -> DecodeResult<Bytes> {
        self.need(count)?;
        self.consumed += count;
        Ok(self.buf.split_to(count))
    }

    /// A length prefix: `None` for -1 (null), an error for other negatives or for a length
    /// larger than the bytes that remain times `min_item_bytes`.
    fn read_length(&mut self, min_item_bytes: usize) -> DecodeResult<Option<usize>> {
        let offset = self.consumed;
        let length = self.read_i32()?;
        if length == -1 {
            return Ok(None);
        }
        if length < 0 {
            return Err(DecodeError::NegativeLength { offset, length });
        }
        let length = length as usize;
        let bytes_min = length.saturating_mul(min_item_bytes);
        if bytes_min > self.buf.len() {
            return Err(DecodeError::Truncated {
                offset: self.consumed,
                needed: bytes_min - self.buf.len(),
            });
        }
        Ok(Some(length))
    }

    /// A jute `buffer`: `None` when the length is -1.
    pub fn read_buffer(&mut self) -> DecodeResult<Option<Bytes>> {
        match self.read_length(1)? {
            None => Ok(None),
            Some(length) => self.read_raw(length).map(Some),
        }
    }

    /// A jute `ustring`: `None` when the length is -1.
    pub fn read_opt_string(&mut self) -> DecodeResult<Option<String>> {
        let offset = self.consumed;
        match self.read_buffer()? {
            None => Ok(None),
            Some(raw) => String::from_utf8(raw.to_vec())
                .map(Some)
                .map_err(|_| DecodeError::InvalidUtf8 { offset }),
        }
    }

    pub fn read_string(&mut self) -> DecodeResult<String> {
        let offset = self.consumed;
        self.read_opt_string()?
            .ok_or(DecodeError::UnexpectedNull { offset })
    }

    /// A jute `vector`: `None` when the count is -1. Each element is at least one byte... or four,
    /// for the element types jute has; `T::MIN_ENCODED_BYTES` bounds the allocation.
    pub fn read_opt_vec<T: Record>(&mut self) -> DecodeResult<Option<Vec<T>>> {
        let Some(count) = self.read_length(T::MIN_ENCODED_BYTES.max(1))? else {
            return Ok(None);
        };
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(T::decode(self)?);
        }
        Ok(Some(items))
    }
}

/// The writing half: appends big-endian jute values to a `BytesMut`.
pub trait JuteWrite {
    fn put_bool(&mut self, value: bool);
    fn put_buffer(&mut self, value: Option<&[u8]>);
    fn put_string(&mut self, value: &str);
    fn put_null(&mut self);
}

impl JuteWrite for BytesMut {
    fn put_bool(&mut self, value: bool) {
        self.put_u8(value as u8);
    }

    fn put_buffer(&mut self, value: Option<&[u8]>) {
        match value {
            None => self.put_null(),
            Some(bytes) => {
                self.put_i32(len_i32(bytes.len()));
                self.put_slice(bytes);
            }
        }
    }

    fn put_string(&mut self, value: &str) {
        self.put_buffer(Some(value.as_bytes()));
    }

    fn put_null(&mut self) {
        self.put_i32(-1);
    }
}

fn len_i32(length: usize) -> i32 {
    // Frames are bounded by jute.maxbuffer long before this; a larger value is a programmer error.
    i32::try_from(length).expect("jute length exceeds i32::MAX")
}

/// A value with a jute encoding.
pub trait Record: Sized {
    /// The fewest bytes any value of this type encodes to (bounds vector preallocation).
    const MIN_ENCODED_BYTES: usize;
    fn encode(&self, out: &mut BytesMut);
    fn decode(reader: &mut Reader) -> DecodeResult<Self>;

    /// Bytes `encode` writes, to size buffers: exact for primitives, strings, buffers,
    /// vectors and `jute_record!` structs; types that do not say give their minimum.
    fn encoded_len_hint(&self) -> usize {
        Self::MIN_ENCODED_BYTES
    }

    /// Encodes into a fresh buffer.
    fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len_hint());
        self.encode(&mut out);
        out.freeze()
    }

    /// Decodes a whole buffer, rejecting trailing bytes.
    fn from_bytes(bytes: &[u8]) -> DecodeResult<Self> {
        let mut reader = Reader::from_slice(bytes);
        let value = Self::decode(&mut reader)?;
        reader.finish()?;
        Ok(value)
    }
}

impl Record for i32 {
    const MIN_ENCODED_BYTES: usize = 4;
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(*self);
    }
    fn decode(reader: &mut Reader) -> DecodeResult<Self> {
        reader.read_i32()
    }
}

impl Record for i64 {
    const MIN_ENCODED_BYTES: usize = 8;
    fn encode(&self, out: &mut BytesMut) {
        out.put_i64(*self);
    }
    fn decode(reader: &mut Reader) -> DecodeResult<Self> {
        reader.read_i64()
    }
}

impl Record for bool {
    const MIN_ENCODED_BYTES: usize = 1;
    fn encode(&self, out: &mut BytesMut) {
        out.put_bool(*self);
    }
    fn decode(reader: &mut Reader) -> DecodeResult<Self> {
        reader.read_bool()
    }
}

/// A `ustring` that must not be null.
impl Record for String {
    const MIN_ENCODED_BYTES: usize = 4;
    fn encoded_len_hint(&self) -> usize {
        4 + self.len()
    }
    fn encode(&self, out: &mut BytesMut) {
        out.put_string(self);
    }
    fn decode(reader: &mut Reader) -> DecodeResult<Self> {
        reader.read_string()
    }
}

/// A `ustring` that may be null.
impl Record for Option<String> {
    const MIN_ENCODED_BYTES: usize = 4;
    fn encoded_len_hint(&self) -> usize {
        4 + self.as_ref().map_or(0, String::len)
    }
    fn encode(&self, out: &mut BytesMut) {
        match self {
            None => out.put_null(),
            Some(value) => out.put_string(value),
        }
    }
    fn decode(reader: &mut Reader) -> DecodeResult<Self> {
        reader.read_opt_string()
    }
}

/// A `buffer`; null (-1) and empty (0) are distinct on the wire and both are kept.
impl Record for Option<Bytes> {
    const MIN_ENCODED_BYTES: usize = 4;
    fn encoded_len_hint(&self) -> usize {
        4 + self.as_ref().map_or(0, Bytes::len)
    }
    fn encode(&self, out: &mut BytesMut) {
        out.put_buffer(self.as_deref());
    }
    fn decode(reader: &mut Reader) -> DecodeResult<Self> {
        reader.read_buffer()
    }
}

/// A `buffer` where null and empty mean the same thing; null decodes as empty.
impl Record for Bytes {
    const MIN_ENCODED_BYTES: usize = 4;
    fn encoded_len_hint(&self) -> usize {
        4 + self.len()
    }
    fn encode(&self, out: &mut BytesMut) {
        out.put_buffer(Some(self));
    }
    fn decode(reader: &mut Reader) -> DecodeResult<Self> {
        Ok(reader.read_buffer()?.unwrap_or_default())
    }
}

/// A `vector` where null and empty mean the same thing; null decodes as empty.
impl<T: Record> Record for Vec<T> {
    const MIN_ENCODED_BYTES: usize = 4;
    fn encoded_len_hint(&self) -> usize {
        4 + self.iter().map(Record::encoded_len_hint).sum::<usize>()
    }
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(len_i32(self.len()));
        for item in self {
            item.encode(out);
        }
    }
    fn decode(reader: &mut Reader) -> DecodeResult<Self> {
        Ok(reader.read_opt_vec()?.unwrap_or_default())
    }
}

/// A `vector` that may be null.
impl<T: Record> Record for Option<Vec<T>> {
    const MIN_ENCODED_BYTES: usize = 4;
    fn encoded_len_hint(&self) -> usize {
        self.as_ref().map_or(4, Record::encoded_len_hint)
    }
    fn encode(&self, out: &mut BytesMut) {
        match self {
            None => out.put_null(),
            Some(items) => items.encode(out),
        }
    }
    fn decode(reader: &mut Reader) -> DecodeResult<Self> {
        reader.read_opt_vec()
    }
}

/// Defines a struct and its `Record` impl: fields are encoded in declaration order.
///
/// ```
/// zinc_protocol::jute_record! {
///     /// A path and a flag.
///     #[derive(Debug, Clone, PartialEq, Eq)]
///     pub struct Example { pub path: String, pub watch: bool }
/// }
/// ```
#[macro_export]
macro_rules! jute_record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)? }
    ) => {
        $(#[$meta])*
        pub struct $name { $( $(#[$fmeta])* pub $field: $ty, )* }

        impl $crate::jute::Record for $name {
            const MIN_ENCODED_BYTES: usize =
                0 $( + <$ty as $crate::jute::Record>::MIN_ENCODED_BYTES )*;
            fn encoded_len_hint(&self) -> usize {
                0 $( + $crate::jute::Record::encoded_len_hint(&self.$field) )*
            }
            fn encode(&self, out: &mut ::bytes::BytesMut) {
                $( $crate::jute::Record::encode(&self.$field, out); )*
            }
            fn decode(reader: &mut $crate::jute::Reader) -> $crate::jute::DecodeResult<Self> {
                Ok($name { $( $field: <$ty as $crate::jute::Record>::decode(reader)?, )* })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_are_big_endian() {
        let mut out = BytesMut::new();
        0x0102_0304i32.encode(&mut out);
        (-2i64).encode(&mut out);
        true.encode(&mut out);
        assert_eq!(
            &out[..],
            &[1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 1]
        );
    }

    #[test]
    fn null_and_empty_buffers_differ() {
        assert_eq!(&None::<Bytes>.to_bytes()[..], &[0xff; 4]);
        assert_eq!(&Some(Bytes::new()).to_bytes()[..], &[0; 4]);
        assert_eq!(Option::<Bytes>::from_bytes(&[0xff; 4]), Ok(None));
    }

    #[test]
    fn hostile_lengths_are_errors_not_allocations() {
        // A vector claiming 2^31-1 elements in an 8-byte frame.
        let frame = [0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(matches!(
            Vec::<i64>::from_bytes(&frame),
            Err(DecodeError::Truncated { .. })
        ));
        let frame = [0xff, 0xff, 0xff, 0xfe];
        assert_eq!(
            Option::<Bytes>::from_bytes(&frame),
            Err(DecodeError::NegativeLength {
                offset: 0,
                length: -2
            })
        );
        assert_eq!(
            String::from_bytes(&[0xff; 4]),
            Err(DecodeError::UnexpectedNull { offset: 0 })
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        assert_eq!(
            i32::from_bytes(&[0, 0, 0, 1, 9]),
            Err(DecodeError::TrailingBytes { remaining: 1 })
        );
    }
}

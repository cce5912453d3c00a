//! The session handshake: the first frame a client sends and the first the server answers.
//!
//! Both records end with an optional `readOnly` byte that jute does not declare: clients since
//! 3.4 append it to the request, and the server appends it to the response only when the client
//! sent it (an old client would otherwise see a trailing byte it cannot parse). `read_only` is
//! `None` when the byte is absent, so decoding then re-encoding gives back the same bytes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::jute::{DecodeResult, JuteWrite, Reader, Record};

/// The handshake's protocol version; every released client and server sends 0.
pub const PROTOCOL_VERSION: i32 = 0;

/// Length of the session password a server issues.
pub const SESSION_PASSWORD_BYTES: usize = 16;

/// A client's first frame: a new session (`session_id` 0) or a reconnect to an existing one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    /// The last zxid this client has seen; a server that is behind it must refuse the client.
    pub last_zxid_seen: i64,
    /// The session timeout the client asks for; the server clamps it to its bounds.
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Bytes,
    /// Whether the client accepts a read-only server; `None` for clients that omit the byte.
    pub read_only: Option<bool>,
}

/// The server's answer to `ConnectRequest`. A rejected or expired session is answered with
/// `timeout_ms` 0 and `session_id` 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    /// The negotiated session timeout.
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Bytes,
    /// Whether this server is read-only; sent only to clients that sent their own flag.
    pub read_only: Option<bool>,
}

/// Reads the trailing flag if any byte remains; bytes after it are ignored, as ZooKeeper does.
fn read_trailing_flag(reader: &mut Reader) -> DecodeResult<Option<bool>> {
    match reader.remaining() {
        0 => Ok(None),
        _ => reader.read_bool().map(Some),
    }
}

fn put_trailing_flag(out: &mut BytesMut, flag: Option<bool>) {
    if let Some(flag) = flag {
        out.put_bool(flag);
    }
}

impl Record for ConnectRequest {
    const MIN_ENCODED_BYTES: usize = 4 + 8 + 4 + 8 + 4;

    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.protocol_version);
        out.put_i64(self.last_zxid_seen);
        out.put_i32(self.timeout_ms);
        out.put_i64(self.session_id);
        self.passwd.encode(out);
        put_trailing_flag(out, self.read_only);
    }

    /// Reads a whole handshake frame: the flag is taken from whatever follows the password.
    fn decode(reader: &mut Reader) -> DecodeResult<Self> {
        Ok(ConnectRequest {
            protocol_version: reader.read_i32()?,
            last_zxid_seen: reader.read_i64()?,
            timeout_ms: reader.read_i32()?,
            session_id: reader.read_i64()?,
            passwd: Bytes::decode(reader)?,
            read_only: read_trailing_flag(reader)?,
        })
    }
}

impl Record for ConnectResponse {
    const MIN_ENCODED_BYTES: usize = 4 + 4 + 8 + 4;

    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.protocol_version);
        out.put_i32(self.timeout_ms);
        out.put_i64(self.session_id);
        self.passwd.encode(out);
        put_trailing_flag(out, self.read_only);
    }

    /// Reads a whole handshake frame: the flag is taken from whatever follows the password.
    fn decode(reader: &mut Reader) -> DecodeResult<Self> {
        Ok(ConnectResponse {
            protocol_version: reader.read_i32()?,
            timeout_ms: reader.read_i32()?,
            session_id: reader.read_i64()?,
            passwd: Bytes::decode(reader)?,
            read_only: read_trailing_flag(reader)?,
        })
    }
}

impl ConnectRequest {
    /// Decodes a handshake frame, ignoring bytes after the read-only flag.
    pub fn decode_frame(frame: Bytes) -> DecodeResult<Self> {
        Self::decode(&mut Reader::new(frame))
    }
}

impl ConnectResponse {
    /// Decodes a handshake frame, ignoring bytes after the read-only flag.
    pub fn decode_frame(frame: Bytes) -> DecodeResult<Self> {
        Self::decode(&mut Reader::new(frame))
    }

    /// The answer to a client whose session cannot be (re)established: it then reports the
    /// session expired. The flag is echoed only if the client sent one.
    pub fn session_expired(request: &ConnectRequest) -> Self {
        ConnectResponse {
            protocol_version: PROTOCOL_VERSION,
            timeout_ms: 0,
            session_id: 0,
            passwd: Bytes::from_static(&[0; SESSION_PASSWORD_BYTES]),
            read_only: request.read_only.map(|_| false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(read_only: Option<bool>) -> ConnectRequest {
        ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0x1_0000_0002,
            timeout_ms: 30_000,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            read_only,
        }
    }

    #[test]
    fn old_clients_omit_the_flag_and_stay_byte_exact() {
        let old = request(None).to_bytes();
        assert_eq!(old.len(), 4 + 8 + 4 + 8 + 4 + 16);
        assert_eq!(ConnectRequest::from_bytes(&old), Ok(request(None)));
        let new = request(Some(false)).to_bytes();
        assert_eq!(new.len(), old.len() + 1);
        assert_eq!(ConnectRequest::from_bytes(&new), Ok(request(Some(false))));
    }

    #[test]
    fn response_flag_follows_the_request() {
        let expired = ConnectResponse::session_expired(&request(Some(true)));
        assert_eq!(expired.read_only, Some(false));
        let bytes = expired.to_bytes();
        assert_eq!(bytes.len(), 4 + 4 + 8 + 4 + 16 + 1);
        assert_eq!(ConnectResponse::from_bytes(&bytes), Ok(expired));
        assert_eq!(
            ConnectResponse::session_expired(&request(None)).read_only,
            None
        );
    }

    #[test]
    fn bytes_after_the_flag_are_ignored_by_decode_frame() {
        let mut bytes = BytesMut::from(&request(Some(true)).to_bytes()[..]);
        bytes.put_u8(7);
        assert_eq!(
            ConnectRequest::decode_frame(bytes.freeze()),
            Ok(request(Some(true)))
        );
    }
}

//! A minimal hand-encoded ZooKeeper client over a blocking socket, for tests that need bytes the
//! real clients never send (abuse) or answers they hide (session resumption).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest a test waits for one answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

pub const OP_EXISTS: i32 = 3;
pub const OP_GET_DATA: i32 = 4;
pub const OP_CLOSE_SESSION: i32 = -11;
pub const XID_NOTIFICATION: i32 = -1;

/// A jute frame: 4-byte big-endian length, then the body.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A jute string or buffer: length, then the bytes.
pub fn buffer(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A create body (create, create2, createContainer) with one ACL: world:anyone, all perms.
pub fn create_body(path: &str, data: &[u8], flags: i32) -> Vec<u8> {
    let mut body = buffer(path.as_bytes());
    body.extend_from_slice(&buffer(data));
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&31i32.to_be_bytes());
    body.extend_from_slice(&buffer(b"world"));
    body.extend_from_slice(&buffer(b"anyone"));
    body.extend_from_slice(&flags.to_be_bytes());
    body
}

/// A path followed by a boolean (exists, getData, getChildren with their watch flag).
pub fn path_and_flag(path: &str, flag: bool) -> Vec<u8> {
    let mut body = buffer(path.as_bytes());
    body.push(u8::from(flag));
    body
}

/// The body of a ConnectRequest (with the readOnly byte, as 3.4+ clients send it).
pub fn connect_body(session_id: i64, password: &[u8], timeout_ms: i32, last_zxid: i64) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&last_zxid.to_be_bytes());
    body.extend_from_slice(&timeout_ms.to_be_bytes());
    body.extend_from_slice(&session_id.to_be_bytes());
    body.extend_from_slice(&buffer(password));
    body.push(0);
    body
}

/// What a server answers a connect request with.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectReply {
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub password: Vec<u8>,
    /// The body's length (ZooKeeper's expired-session answer has the same layout).
    pub body_bytes: usize,
}

fn be_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn be_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl ConnectReply {
    pub fn parse(body: &[u8]) -> ConnectReply {
        let password_bytes = be_i32(body, 16).max(0) as usize;
        ConnectReply {
            protocol_version: be_i32(body, 0),
            timeout_ms: be_i32(body, 4),
            session_id: be_i64(body, 8),
            password: body[20..20 + password_bytes].to_vec(),
            body_bytes: body.len(),
        }
    }
}

/// Reads one frame (body only).
pub fn read_frame(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let length = i32::from_be_bytes(length);
    if !(0..=(16 << 20)).contains(&length) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad frame length",
        ));
    }
    let mut body = vec![0u8; length as usize];
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// True when the server closes the connection (EOF or reset) within `ANSWER_TIMEOUT`; data it
/// sends first is skipped.
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return true,
        }
    }
    false
}

/// A reply to a request: header fields and the body after the header.
#[derive(Debug)]
pub struct Reply {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
    pub body: Vec<u8>,
}

pub struct RawClient {
    pub stream: TcpStream,
    pub session: ConnectReply,
    next_xid: i32,
    /// Notifications received while waiting for replies (their bodies).
    pub events: Vec<Vec<u8>>,
}

impl RawClient {
    /// Opens a new session.
    pub fn connect(address: SocketAddr) -> io::Result<RawClient> {
        RawClient::resume(address, 0, &[0u8; 16], 0)
    }

    /// Connects with the given session id and password (0 and zeros for a new session).
    pub fn resume(
        address: SocketAddr,
        session_id: i64,
        password: &[u8],
        last_zxid: i64,
    ) -> io::Result<RawClient> {
        RawClient::open(address, session_id, password, last_zxid, 10_000)
    }

    /// Connects asking for `timeout_ms` as the session timeout.
    pub fn open(
        address: SocketAddr,
        session_id: i64,
        password: &[u8],
        last_zxid: i64,
        timeout_ms: i32,
    ) -> io::Result<RawClient> {
        let mut stream = TcpStream::connect_timeout(&address, ANSWER_TIMEOUT)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        stream.write_all(&frame(&connect_body(
            session_id, password, timeout_ms, last_zxid,
        )))?;
        let session = ConnectReply::parse(&read_frame(&mut stream)?);
        Ok(RawClient {
            stream,
            session,
            next_xid: 1,
            events: Vec::new(),
        })
    }

    /// Sends one request and waits for its reply, keeping notifications that come first.
    pub fn request(&mut self, op: i32, body: &[u8]) -> io::Result<Reply> {
        let xid = self.next_xid;
        self.next_xid += 1;
        let mut request = xid.to_be_bytes().to_vec();
        request.extend_from_slice(&op.to_be_bytes());
        request.extend_from_slice(body);
        self.stream.write_all(&frame(&request))?;
        loop {
            let reply = read_frame(&mut self.stream)?;
            if reply.len() < 16 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "short reply"));
            }
            let header_xid = be_i32(&reply, 0);
            if header_xid == XID_NOTIFICATION {
                self.events.push(reply[16..].to_vec());
                continue;
            }
            return Ok(Reply {
                xid: header_xid,
                zxid: be_i64(&reply, 4),
                err: be_i32(&reply, 12),
                body: reply[16..].to_vec(),
            });
        }
    }

    /// `exists(path, watch)`; returns the error code (0 or -101).
    pub fn exists(&mut self, path: &str, watch: bool) -> io::Result<i32> {
        Ok(self.request(OP_EXISTS, &path_and_flag(path, watch))?.err)
    }

    /// Ends the session politely.
    pub fn close(mut self) -> io::Result<()> {
        self.request(OP_CLOSE_SESSION, &[])?;
        Ok(())
    }
}

/// Whether a plain client can open a session, ask something and close, on `address`.
pub fn healthy(address: SocketAddr) -> Result<(), String> {
    let mut client = RawClient::connect(address).map_err(|e| format!("connect: {e}"))?;
    if client.session.timeout_ms <= 0 {
        return Err(format!("session refused: {:?}", client.session));
    }
    let err = client
        .exists("/zookeeper", false)
        .map_err(|e| format!("exists: {e}"))?;
    if err != 0 {
        return Err(format!("exists /zookeeper answered {err}"));
    }
    client.close().map_err(|e| format!("close: {e}"))
}

//! The client side of one ZooKeeper session, sans-IO: encodes the handshake and requests into
//! an output buffer, keeps the table of outstanding requests, and turns received bytes into
//! events. Replies arrive in request order (ZooKeeper answers a session's requests in FIFO
//! order), so the table is a queue; a reply that does not match its head is a protocol error.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use zinc_protocol::records::xid;
use zinc_protocol::{
    encode_frame, ClientFrame, ConnectRequest, ConnectResponse, FrameDecoder, OpCode, Record,
    Request, Response, ServerFrame, WatcherEvent,
};

/// Why a session's byte stream cannot go on; the connection is closed and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("framing: {0}")]
    Frame(#[from] zinc_protocol::FrameError),
    #[error("undecodable reply: {0}")]
    Decode(#[from] zinc_protocol::DecodeError),
    #[error("reply xid {got} while {expected:?} was outstanding")]
    XidMismatch { got: i32, expected: Option<i32> },
    #[error("session refused or expired by the server")]
    SessionRefused,
}

/// What an outstanding request is for, so the worker knows what to record when it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A workload op: its latency and error code are recorded.
    Measured,
    /// Arms a watch (watch workload); not an op of its own.
    WatchArm,
    /// Part of a multi-request cycle (sessions workload): errors count, latency does not.
    Step,
}

/// One outstanding request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub xid: i32,
    pub op: OpCode,
    pub purpose: Purpose,
    /// When the request was due, in nanoseconds since the run started.
    pub start_ns: u64,
}

/// What arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected {
        session_id: i64,
        timeout_ms: i32,
    },
    Reply {
        pending: Pending,
        err: i32,
        response: Response,
    },
    Notification {
        event: WatcherEvent,
        zxid: i64,
    },
    Pong,
}

/// The protocol state of one session.
#[derive(Debug)]
pub struct Codec {
    decoder: FrameDecoder,
    pending: VecDeque<Pending>,
    next_xid: i32,
    connected: bool,
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new()
    }
}

impl Codec {
    pub fn new() -> Codec {
        Codec {
            decoder: FrameDecoder::default(),
            pending: VecDeque::new(),
            next_xid: 1,
            connected: false,
        }
    }

    /// Appends the handshake of a new session asking for `timeout_ms`.
    pub fn connect(&mut self, timeout_ms: i32, out: &mut BytesMut) {
        let request = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
        };
        encode_frame(out, |body| request.encode(body));
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn inflight(&self) -> usize {
        self.pending.len()
    }

    /// Appends `request` and remembers it; returns its xid.
    pub fn send(
        &mut self,
        request: Request,
        purpose: Purpose,
        start_ns: u64,
        out: &mut BytesMut,
    ) -> i32 {
        let xid = self.next_xid;
        // Wrap before the special (negative) xids.
        self.next_xid = if xid == i32::MAX { 1 } else { xid + 1 };
        let op = request.op();
        ClientFrame { xid, request }.encode_framed(out);
        self.pending.push_back(Pending {
            xid,
            op,
            purpose,
            start_ns,
        });
        xid
    }

    /// Appends a ping; its reply is `Event::Pong` and is not in the table.
    pub fn ping(&mut self, out: &mut BytesMut) {
        ClientFrame {
            xid: xid::PING,
            request: Request::Ping,
        }
        .encode_framed(out);
    }

    /// Takes every outstanding request out of the table (the connection is gone).
    pub fn abandon(&mut self) -> Vec<Pending> {
        self.connected = false;
        self.pending.drain(..).collect()
    }

    /// Decodes the next whole frame of `buf`, if one has arrived.
    pub fn receive(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, CodecError> {
        let Some(frame) = self.decoder.decode(buf)? else {
            return Ok(None);
        };
        if !self.connected {
            let response = ConnectResponse::from_bytes(&frame)?;
            if response.session_id == 0 || response.timeout_ms <= 0 {
                return Err(CodecError::SessionRefused);
            }
            self.connected = true;
            return Ok(Some(Event::Connected {
                session_id: response.session_id,
                timeout_ms: response.timeout_ms,
            }));
        }
        let head = self.pending.front().copied();
        let mut unknown_xid = 0;
        let decoded = ServerFrame::decode(frame, |got| {
            unknown_xid = got;
            head.filter(|pending| pending.xid == got)
                .map(|pending| pending.op)
        });
        let frame = match decoded {
            Ok(frame) => frame,
            Err(zinc_protocol::DecodeError::Invalid("reply to an unknown xid")) => {
                return Err(CodecError::XidMismatch {
                    got: unknown_xid,
                    expected: head.map(|p| p.xid),
                })
            }
            Err(error) => return Err(error.into()),
        };
        Ok(Some(match frame.header.xid {
            xid::NOTIFICATION => match frame.response {
                Response::Notification(event) => Event::Notification {
                    event,
                    zxid: frame.header.zxid,
                },
                _ => Event::Pong,
            },
            xid::PING => Event::Pong,
            _ => {
                let pending = self.pending.pop_front().ok_or(CodecError::XidMismatch {
                    got: frame.header.xid,
                    expected: None,
                })?;
                Event::Reply {
                    pending,
                    err: frame.header.err,
                    response: frame.response,
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zinc_protocol::records::{GetDataRequest, GetDataResponse, ReplyHeader};
    use zinc_protocol::{EventType, KeeperState, Stat};

    fn connected() -> Codec {
        let mut codec = Codec::new();
        let mut wire = BytesMut::new();
        let response = ConnectResponse {
            protocol_version: 0,
            timeout_ms: 30_000,
            session_id: 42,
            passwd: Bytes::from_static(&[1; 16]),
            read_only: Some(false),
        };
        encode_frame(&mut wire, |body| response.encode(body));
        let event = codec.receive(&mut wire).expect("handshake").expect("event");
        assert_eq!(
            event,
            Event::Connected {
                session_id: 42,
                timeout_ms: 30_000
            }
        );
        codec
    }

    fn get(path: &str) -> Request {
        Request::GetData(GetDataRequest {
            path: path.into(),
            watch: false,
        })
    }

    fn reply(xid: i32, err: i32, response: Response) -> BytesMut {
        let mut wire = BytesMut::new();
        ServerFrame {
            header: ReplyHeader { xid, zxid: 9, err },
            response,
        }
        .encode_framed(&mut wire);
        wire
    }

    #[test]
    fn handshake_is_a_connect_request() {
        let mut out = BytesMut::new();
        Codec::new().connect(10_000, &mut out);
        let request = ConnectRequest::from_bytes(&out[4..]).expect("decodes");
        assert_eq!(request.timeout_ms, 10_000);
        assert_eq!(request.session_id, 0);
    }

    #[test]
    fn refused_session_is_an_error() {
        let mut wire = BytesMut::new();
        encode_frame(&mut wire, |body| ConnectResponse::default().encode(body));
        assert_eq!(
            Codec::new().receive(&mut wire),
            Err(CodecError::SessionRefused)
        );
    }

    #[test]
    fn pipelined_replies_match_in_order() {
        let mut codec = connected();
        let mut out = BytesMut::new();
        let first = codec.send(get("/a"), Purpose::Measured, 5, &mut out);
        let second = codec.send(get("/b"), Purpose::WatchArm, 6, &mut out);
        assert_eq!((first, second, codec.inflight()), (1, 2, 2));
        let data = Response::GetData(GetDataResponse {
            data: Some(Bytes::from_static(b"v")),
            stat: Stat::default(),
        });
        let mut wire = reply(first, 0, data.clone());
        wire.extend_from_slice(&reply(second, -101, Response::Empty));
        let Some(Event::Reply {
            pending,
            err,
            response,
        }) = codec.receive(&mut wire).expect("ok")
        else {
            panic!("first reply");
        };
        assert_eq!((pending.start_ns, err, response), (5, 0, data));
        let Some(Event::Reply { pending, err, .. }) = codec.receive(&mut wire).expect("ok") else {
            panic!("second reply");
        };
        assert_eq!((pending.purpose, err), (Purpose::WatchArm, -101));
        assert_eq!(codec.receive(&mut wire), Ok(None));
        assert_eq!(codec.inflight(), 0);
    }

    #[test]
    fn notifications_and_pings_leave_the_table_alone() {
        let mut codec = connected();
        let mut out = BytesMut::new();
        codec.send(get("/a"), Purpose::Measured, 0, &mut out);
        let event = WatcherEvent {
            event_type: EventType::NodeDataChanged,
            state: KeeperState::SyncConnected,
            path: "/w".into(),
        };
        let mut wire = BytesMut::new();
        ServerFrame::notification(event.clone(), -1).encode_framed(&mut wire);
        wire.extend_from_slice(&reply(xid::PING, 0, Response::Empty));
        assert_eq!(
            codec.receive(&mut wire),
            Ok(Some(Event::Notification { event, zxid: -1 }))
        );
        assert_eq!(codec.receive(&mut wire), Ok(Some(Event::Pong)));
        assert_eq!(codec.inflight(), 1);
    }

    #[test]
    fn unexpected_xid_is_an_error_and_abandon_empties() {
        let mut codec = connected();
        let mut out = BytesMut::new();
        codec.send(get("/a"), Purpose::Measured, 0, &mut out);
        let mut wire = reply(77, 0, Response::Empty);
        assert!(matches!(
            codec.receive(&mut wire),
            Err(CodecError::XidMismatch {
                expected: Some(1),
                ..
            })
        ));
        assert_eq!(codec.abandon().len(), 1);
        assert!(!codec.is_connected());
    }
}

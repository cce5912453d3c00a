//! Server-to-client frames after the handshake: a `ReplyHeader` and a body whose shape depends
//! on the op code of the request being answered, which the client knows from the xid.
//!
//! Error replies (`err` != 0) have no body. Several op codes share a body shape, so `Response`
//! has one variant per shape, named after the op it is best known for:
//!
//! | variant | op codes |
//! |---|---|
//! | `Empty` | ping, delete, setWatches, setWatches2, checkWatches, removeWatches, auth, closeSession, every error reply |
//! | `Create` | create |
//! | `Create2` | create2, createContainer, createTTL |
//! | `GetData` | getData, reconfig |
//! | `SetData` | setData, check |
//! | `Multi` | multi, multiRead |
//! | `AddWatch` | addWatch (an `ErrorResponse` with err 0) |
//! | `Notification` | watch events (xid -1) |
//! | others | the op of the same name |

use bytes::{Bytes, BytesMut};

use crate::codes::OpCode;
use crate::frame::encode_frame;
use crate::jute::{DecodeError, DecodeResult, Reader, Record};
use crate::records::bodies::{
    Create2Response, CreateResponse, ErrorResponse, ExistsResponse, GetAclResponse,
    GetAllChildrenNumberResponse, GetChildren2Response, GetChildrenResponse, GetDataResponse,
    GetEphemeralsResponse, ReplyHeader, SetAclResponse, SetDataResponse, SetSaslResponse,
    SyncResponse, WatcherEvent, WhoAmIResponse,
};
use crate::records::multi::MultiResponse;
use crate::records::xid;

/// A decoded reply body (see the module table for which op codes give which variant).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Response {
    Empty,
    Notification(WatcherEvent),
    Create(CreateResponse),
    Create2(Create2Response),
    Exists(ExistsResponse),
    GetData(GetDataResponse),
    SetData(SetDataResponse),
    GetAcl(GetAclResponse),
    SetAcl(SetAclResponse),
    GetChildren(GetChildrenResponse),
    GetChildren2(GetChildren2Response),
    Sync(SyncResponse),
    Multi(MultiResponse),
    Sasl(SetSaslResponse),
    GetEphemerals(GetEphemeralsResponse),
    GetAllChildrenNumber(GetAllChildrenNumberResponse),
    AddWatch(ErrorResponse),
    WhoAmI(WhoAmIResponse),
}

/// Generates `encode` and `decode` from one table of (variant, body type, op codes).
macro_rules! response_table {
    ( $( $variant:ident ( $body:ty ) <= $( $op:ident )|+ ),* $(,)? ) => {
        impl Response {
            /// Appends the body (without header) to `out`; `Empty` appends nothing.
            pub fn encode(&self, out: &mut BytesMut) {
                match self {
                    Response::Empty => {}
                    $( Response::$variant(body) => body.encode(out), )*
                }
            }

            /// Reads the body of a successful reply to a request with op code `op`. Bytes after
            /// the body are left in `reader`.
            pub fn decode(op: OpCode, reader: &mut Reader) -> DecodeResult<Response> {
                Ok(match op {
                    $( $( OpCode::$op )|+ => Response::$variant(<$body>::decode(reader)?), )*
                    OpCode::Ping
                    | OpCode::Delete
                    | OpCode::DeleteContainer
                    | OpCode::SetWatches
                    | OpCode::SetWatches2
                    | OpCode::CheckWatches
                    | OpCode::RemoveWatches
                    | OpCode::Auth
                    | OpCode::CloseSession => Response::Empty,
                    OpCode::CreateSession | OpCode::Error => {
                        return Err(DecodeError::UnknownValue {
                            what: "reply op code",
                            value: op.as_i32().into(),
                        })
                    }
                })
            }
        }
    };
}

response_table! {
    Notification(WatcherEvent) <= Notification,
    Create(CreateResponse) <= Create,
    Create2(Create2Response) <= Create2 | CreateContainer | CreateTtl,
    Exists(ExistsResponse) <= Exists,
    GetData(GetDataResponse) <= GetData | Reconfig,
    SetData(SetDataResponse) <= SetData | Check,
    GetAcl(GetAclResponse) <= GetAcl,
    SetAcl(SetAclResponse) <= SetAcl,
    GetChildren(GetChildrenResponse) <= GetChildren,
    GetChildren2(GetChildren2Response) <= GetChildren2,
    Sync(SyncResponse) <= Sync,
    Multi(MultiResponse) <= Multi | MultiRead,
    Sasl(SetSaslResponse) <= Sasl,
    GetEphemerals(GetEphemeralsResponse) <= GetEphemerals,
    GetAllChildrenNumber(GetAllChildrenNumberResponse) <= GetAllChildrenNumber,
    AddWatch(ErrorResponse) <= AddWatch,
    WhoAmI(WhoAmIResponse) <= WhoAmI,
}

/// One whole server frame after the handshake (length prefix excluded).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerFrame {
    pub header: ReplyHeader,
    /// `Empty` whenever `header.err` is not 0.
    pub response: Response,
}

impl ServerFrame {
    /// A watch notification; `zxid` is the zxid that triggered it (-1 when there is none).
    pub fn notification(event: WatcherEvent, zxid: i64) -> ServerFrame {
        ServerFrame {
            header: ReplyHeader {
                xid: xid::NOTIFICATION,
                zxid,
                err: 0,
            },
            response: Response::Notification(event),
        }
    }

    /// Decodes header and body. The op a reply answers comes from its special xid, or else
    /// from `op_for_xid` (the client's table of outstanding requests). Bytes after the body
    /// are ignored, as ZooKeeper clients ignore them.
    pub fn decode(
        frame: Bytes,
        op_for_xid: impl FnOnce(i32) -> Option<OpCode>,
    ) -> DecodeResult<ServerFrame> {
        let mut reader = Reader::new(frame);
        let header = ReplyHeader::decode(&mut reader)?;
        let op = match header.xid {
            xid::NOTIFICATION => OpCode::Notification,
            xid::PING => OpCode::Ping,
            xid::AUTH => OpCode::Auth,
            xid::SET_WATCHES => OpCode::SetWatches,
            other => op_for_xid(other).ok_or(DecodeError::Invalid("reply to an unknown xid"))?,
        };
        let response = match header.err {
            0 => Response::decode(op, &mut reader)?,
            _ => Response::Empty,
        };
        Ok(ServerFrame { header, response })
    }

    /// Appends header and body, without the length prefix.
    pub fn encode(&self, out: &mut BytesMut) {
        debug_assert!(
            self.header.err == 0 || self.response == Response::Empty,
            "error replies have no body"
        );
        self.header.encode(out);
        self.response.encode(out);
    }

    /// Appends the whole frame: length prefix, header and body.
    pub fn encode_framed(&self, out: &mut BytesMut) {
        encode_frame(out, |body| self.encode(body));
    }
}

//! Client-to-server frames after the handshake: a `RequestHeader` and a body whose shape the
//! header's op code decides. `Request` has one variant per op code a client may send.

use bytes::{Bytes, BytesMut};

use crate::codes::OpCode;
use crate::frame::encode_frame;
use crate::jute::{DecodeError, DecodeResult, Reader, Record};
use crate::records::bodies::{
    AddWatchRequest, AuthPacket, CheckVersionRequest, CheckWatchesRequest, CreateRequest,
    CreateTtlRequest, DeleteRequest, ExistsRequest, GetAclRequest, GetAllChildrenNumberRequest,
    GetChildren2Request, GetChildrenRequest, GetDataRequest, GetEphemeralsRequest, GetSaslRequest,
    ReconfigRequest, RemoveWatchesRequest, RequestHeader, SetAclRequest, SetDataRequest,
    SetWatches, SetWatches2, SyncRequest,
};
use crate::records::multi::MultiRequest;

/// A decoded request body. Each variant has exactly one op code (`Request::op`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    Create(CreateRequest),
    /// Like `Create`, but the reply carries the new node's Stat.
    Create2(CreateRequest),
    CreateContainer(CreateRequest),
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    Exists(ExistsRequest),
    GetData(GetDataRequest),
    SetData(SetDataRequest),
    GetAcl(GetAclRequest),
    SetAcl(SetAclRequest),
    GetChildren(GetChildrenRequest),
    GetChildren2(GetChildren2Request),
    Sync(SyncRequest),
    /// No body; sent with xid `xid::PING`.
    Ping,
    Check(CheckVersionRequest),
    Multi(MultiRequest),
    MultiRead(MultiRequest),
    Reconfig(ReconfigRequest),
    CheckWatches(CheckWatchesRequest),
    RemoveWatches(RemoveWatchesRequest),
    /// Sent with xid `xid::AUTH`.
    Auth(AuthPacket),
    /// Sent with xid `xid::SET_WATCHES`.
    SetWatches(SetWatches),
    /// Sent with xid `xid::SET_WATCHES`.
    SetWatches2(SetWatches2),
    Sasl(GetSaslRequest),
    GetEphemerals(GetEphemeralsRequest),
    GetAllChildrenNumber(GetAllChildrenNumberRequest),
    AddWatch(AddWatchRequest),
    /// No body.
    WhoAmI,
    /// No body.
    CloseSession,
}

/// Generates `op`, `encode` and `decode` from one table of (variant, op code, body type).
macro_rules! request_table {
    (
        bodies { $( $variant:ident => $op:ident ( $body:ty ) ),* $(,)? }
        empty { $( $evariant:ident => $eop:ident ),* $(,)? }
    ) => {
        impl Request {
            /// The op code this request is sent with.
            pub fn op(&self) -> OpCode {
                match self {
                    $( Request::$variant(_) => OpCode::$op, )*
                    $( Request::$evariant => OpCode::$eop, )*
                }
            }

            /// Appends the body (without header) to `out`.
            pub fn encode(&self, out: &mut BytesMut) {
                match self {
                    $( Request::$variant(body) => body.encode(out), )*
                    $( Request::$evariant => {} )*
                }
            }

            /// Reads the body of a request with op code `op`. Bytes after the body are left in
            /// `reader`; `OpCode`s no client sends (notification, createSession, error,
            /// deleteContainer) are `UnknownValue` errors.
            pub fn decode(op: OpCode, reader: &mut Reader) -> DecodeResult<Request> {
                Ok(match op {
                    $( OpCode::$op => Request::$variant(<$body>::decode(reader)?), )*
                    $( OpCode::$eop => Request::$evariant, )*
                    _ => {
                        return Err(DecodeError::UnknownValue {
                            what: "request op code",
                            value: op.as_i32().into(),
                        })
                    }
                })
            }
        }
    };
}

request_table! {
    bodies {
        Create => Create(CreateRequest),
        Create2 => Create2(CreateRequest),
        CreateContainer => CreateContainer(CreateRequest),
        CreateTtl => CreateTtl(CreateTtlRequest),
        Delete => Delete(DeleteRequest),
        Exists => Exists(ExistsRequest),
        GetData => GetData(GetDataRequest),
        SetData => SetData(SetDataRequest),
        GetAcl => GetAcl(GetAclRequest),
        SetAcl => SetAcl(SetAclRequest),
        GetChildren => GetChildren(GetChildrenRequest),
        GetChildren2 => GetChildren2(GetChildren2Request),
        Sync => Sync(SyncRequest),
        Check => Check(CheckVersionRequest),
        Multi => Multi(MultiRequest),
        MultiRead => MultiRead(MultiRequest),
        Reconfig => Reconfig(ReconfigRequest),
        CheckWatches => CheckWatches(CheckWatchesRequest),
        RemoveWatches => RemoveWatches(RemoveWatchesRequest),
        Auth => Auth(AuthPacket),
        SetWatches => SetWatches(SetWatches),
        SetWatches2 => SetWatches2(SetWatches2),
        Sasl => Sasl(GetSaslRequest),
        GetEphemerals => GetEphemerals(GetEphemeralsRequest),
        GetAllChildrenNumber => GetAllChildrenNumber(GetAllChildrenNumberRequest),
        AddWatch => AddWatch(AddWatchRequest),
    }
    empty {
        Ping => Ping,
        WhoAmI => WhoAmI,
        CloseSession => CloseSession,
    }
}

impl Request {
    /// The op codes `Request::decode` accepts.
    pub const OPS: &'static [OpCode] = &[
        OpCode::Create,
        OpCode::Create2,
        OpCode::CreateContainer,
        OpCode::CreateTtl,
        OpCode::Delete,
        OpCode::Exists,
        OpCode::GetData,
        OpCode::SetData,
        OpCode::GetAcl,
        OpCode::SetAcl,
        OpCode::GetChildren,
        OpCode::GetChildren2,
        OpCode::Sync,
        OpCode::Ping,
        OpCode::Check,
        OpCode::Multi,
        OpCode::MultiRead,
        OpCode::Reconfig,
        OpCode::CheckWatches,
        OpCode::RemoveWatches,
        OpCode::Auth,
        OpCode::SetWatches,
        OpCode::SetWatches2,
        OpCode::Sasl,
        OpCode::GetEphemerals,
        OpCode::GetAllChildrenNumber,
        OpCode::AddWatch,
        OpCode::WhoAmI,
        OpCode::CloseSession,
    ];

    /// The znode path the request names, if it names one.
    pub fn path(&self) -> Option<&str> {
        Some(match self {
            Request::Create(body) | Request::Create2(body) | Request::CreateContainer(body) => {
                &body.path
            }
            Request::CreateTtl(body) => &body.path,
            Request::Delete(body) => &body.path,
            Request::Exists(body) => &body.path,
            Request::GetData(body) => &body.path,
            Request::SetData(body) => &body.path,
            Request::GetAcl(body) => &body.path,
            Request::SetAcl(body) => &body.path,
            Request::GetChildren(body) => &body.path,
            Request::GetChildren2(body) => &body.path,
            Request::Sync(body) => &body.path,
            Request::Check(body) => &body.path,
            Request::CheckWatches(body) => &body.path,
            Request::RemoveWatches(body) => &body.path,
            Request::GetEphemerals(body) => &body.prefix_path,
            Request::GetAllChildrenNumber(body) => &body.path,
            Request::AddWatch(body) => &body.path,
            _ => return None,
        })
    }
}

/// One whole client frame after the handshake (length prefix excluded).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientFrame {
    pub xid: i32,
    pub request: Request,
}

impl ClientFrame {
    pub fn header(&self) -> RequestHeader {
        RequestHeader {
            xid: self.xid,
            op_type: self.request.op().as_i32(),
        }
    }

    /// Decodes header and body. Bytes after the body are ignored, as ZooKeeper ignores them.
    pub fn decode(frame: Bytes) -> DecodeResult<ClientFrame> {
        let mut reader = Reader::new(frame);
        let header = RequestHeader::decode(&mut reader)?;
        let op = OpCode::try_from(header.op_type)?;
        let request = Request::decode(op, &mut reader)?;
        Ok(ClientFrame {
            xid: header.xid,
            request,
        })
    }

    /// Appends header and body, without the length prefix.
    pub fn encode(&self, out: &mut BytesMut) {
        self.header().encode(out);
        self.request.encode(out);
    }

    /// Appends the whole frame: length prefix, header and body.
    pub fn encode_framed(&self, out: &mut BytesMut) {
        encode_frame(out, |body| self.encode(body));
    }
}

//! What crosses between shard cores and the Zab core. Every channel carrying these is bounded.

use std::sync::Arc;

use zinc_protocol::records::Request;
use zinc_protocol::{ErrorCode, Id, SessionId};
use zinc_storage::tree::Tree;

use crate::exec::Trigger;
use crate::session::PASSWORD_BYTES;

/// A shard's index.
pub type ShardId = u16;

/// A connection's key within its shard.
pub type ConnToken = u64;

/// A request that goes through the Zab core: writes, `sync`, closeSession.
#[derive(Debug)]
pub struct WriteRequest {
    pub shard: ShardId,
    pub session: SessionId,
    pub xid: i32,
    pub request: Request,
    /// The session's identities when the request was read (for ACL checks in prep).
    pub auth: Arc<[Id]>,
}

#[derive(Debug)]
pub enum ToCore {
    Write(WriteRequest),
    /// A new session for a connection that is waiting for its ConnectResponse.
    CreateSession {
        shard: ShardId,
        token: ConnToken,
        timeout_ms_requested: i32,
    },
    /// A session resumed on `shard` (it may have moved from another shard).
    Reattach {
        shard: ShardId,
        session: SessionId,
    },
    /// Sessions that showed life since the last report.
    Touch(Vec<SessionId>),
}

/// A committed state the shards switch to, shared by all shards.
pub struct Published {
    pub root: Tree,
    /// Watch events caused by the batch, in zxid order.
    pub triggers: Vec<Trigger>,
    pub last_zxid: i64,
    /// Sessions that ended in this batch (closed or expired): shards drop their connections.
    pub ended_sessions: Vec<SessionId>,
}

/// A reply for one of a shard's connections.
#[derive(Debug)]
pub enum CoreReply {
    Reply {
        session: SessionId,
        xid: i32,
        zxid: i64,
        err: ErrorCode,
        response: Option<zinc_protocol::records::Response>,
    },
    SessionCreated {
        token: ConnToken,
        session: SessionId,
        timeout_ms: u32,
        password: [u8; PASSWORD_BYTES],
    },
    /// The session lives on another shard now: drop this shard's connection for it.
    SessionMoved { session: SessionId },
    /// The server cannot serve this connection (it is not serving): close it.
    Refused { token: ConnToken },
    /// The server stopped serving (its ensemble lost the leader): close every connection, as
    /// ZooKeeper does; clients reconnect to a server that serves.
    CloseAll,
}

pub struct ToShard {
    pub published: Option<Arc<Published>>,
    pub replies: Vec<CoreReply>,
}

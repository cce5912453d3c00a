//! The request and response bodies of `zookeeper.jute`'s `org.apache.zookeeper.proto` module,
//! one struct per jute class, fields in wire order.
//!
//! Fields a client may send as null keep that distinction (`Option`): node data (`create` and
//! `setData` with a null array, `getData` of such a node answers length -1) and the strings of a
//! reconfig. Client-chosen integers that the server must validate (create flags, watch modes,
//! watcher types) stay raw `i32`, so that an invalid value becomes ZooKeeper's error reply rather
//! than a decode failure; the typed enums in `records` convert them.

use bytes::Bytes;

use crate::data::{Acl, Stat};
use crate::jute_record;
use crate::records::{EventType, KeeperState};

jute_record! {
    /// Precedes every request body: the client's request id and the op code.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct RequestHeader {
        pub xid: i32,
        pub op_type: i32,
    }
}

jute_record! {
    /// Precedes every reply body: the request id echoed (or a special xid), the server's last
    /// zxid, and the error code (0 for success; an error reply has no body).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ReplyHeader {
        pub xid: i32,
        pub zxid: i64,
        pub err: i32,
    }
}

jute_record! {
    /// Precedes each op of a multi request and each result of a multi response; the list ends
    /// with a header whose `done` is true.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct MultiHeader {
        pub op_type: i32,
        pub done: bool,
        pub err: i32,
    }
}

jute_record! {
    /// `addAuthInfo`: sent with xid `AUTH_XID`. `auth_type` is always 0 in practice.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct AuthPacket {
        pub auth_type: i32,
        pub scheme: String,
        pub auth: Bytes,
    }
}

jute_record! {
    /// Re-registers a reconnecting client's watches (sent with xid `SET_WATCHES_XID`).
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct SetWatches {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
    }
}

jute_record! {
    /// `SetWatches` plus persistent and persistent-recursive watches.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct SetWatches2 {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
        pub persistent_watches: Vec<String>,
        pub persistent_recursive_watches: Vec<String>,
    }
}

jute_record! {
    /// `create`, `create2` and `createContainer`; `flags` is a `CreateMode` flag value.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct CreateRequest {
        pub path: String,
        pub data: Option<Bytes>,
        pub acl: Vec<Acl>,
        pub flags: i32,
    }
}

jute_record! {
    /// `createTTL`: a create with a time-to-live in milliseconds.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct CreateTtlRequest {
        pub path: String,
        pub data: Option<Bytes>,
        pub acl: Vec<Acl>,
        pub flags: i32,
        pub ttl: i64,
    }
}

jute_record! {
    /// `delete`; `version` -1 matches any version.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct DeleteRequest {
        pub path: String,
        pub version: i32,
    }
}

jute_record! {
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct ExistsRequest {
        pub path: String,
        pub watch: bool,
    }
}

jute_record! {
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct GetDataRequest {
        pub path: String,
        pub watch: bool,
    }
}

jute_record! {
    /// `setData`; `version` -1 matches any version.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct SetDataRequest {
        pub path: String,
        pub data: Option<Bytes>,
        pub version: i32,
    }
}

jute_record! {
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct GetAclRequest {
        pub path: String,
    }
}

jute_record! {
    /// `setACL`; `version` is the expected aversion (-1 for any).
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct SetAclRequest {
        pub path: String,
        pub acl: Vec<Acl>,
        pub version: i32,
    }
}

jute_record! {
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct GetChildrenRequest {
        pub path: String,
        pub watch: bool,
    }
}

jute_record! {
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct GetChildren2Request {
        pub path: String,
        pub watch: bool,
    }
}

jute_record! {
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct SyncRequest {
        pub path: String,
    }
}

jute_record! {
    /// `check`, alone or inside a multi; `version` -1 matches any version.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct CheckVersionRequest {
        pub path: String,
        pub version: i32,
    }
}

jute_record! {
    /// `reconfig`: incremental (joining/leaving) or bulk (new members); -1 config id for any.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct ReconfigRequest {
        pub joining_servers: Option<String>,
        pub leaving_servers: Option<String>,
        pub new_members: Option<String>,
        pub cur_config_id: i64,
    }
}

jute_record! {
    /// `checkWatches`; `watcher_type` is a `WatcherType` value.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct CheckWatchesRequest {
        pub path: String,
        pub watcher_type: i32,
    }
}

jute_record! {
    /// `removeWatches`; `watcher_type` is a `WatcherType` value.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct RemoveWatchesRequest {
        pub path: String,
        pub watcher_type: i32,
    }
}

jute_record! {
    /// `getEphemerals`: the caller's ephemeral nodes under a prefix ("/" for all).
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct GetEphemeralsRequest {
        pub prefix_path: String,
    }
}

jute_record! {
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct GetAllChildrenNumberRequest {
        pub path: String,
    }
}

jute_record! {
    /// `addWatch`; `mode` is an `AddWatchMode` value.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct AddWatchRequest {
        pub path: String,
        pub mode: i32,
    }
}

jute_record! {
    /// The SASL token a client sends (op `sasl`).
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct GetSaslRequest {
        pub token: Bytes,
    }
}

jute_record! {
    /// Same layout as `GetSaslRequest`; part of the schema, not sent by current clients.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct SetSaslRequest {
        pub token: Bytes,
    }
}

jute_record! {
    /// The SASL token the server answers with. Null is distinct from empty on the wire: a
    /// server without SASL configured answers a null token (length -1).
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct SetSaslResponse {
        pub token: Option<Bytes>,
    }
}

jute_record! {
    /// A watch notification, sent with xid `NOTIFICATION_XID`.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct WatcherEvent {
        pub event_type: EventType,
        pub state: KeeperState,
        pub path: String,
    }
}

jute_record! {
    /// The body of an `addWatch` reply (always err 0); also a multi result's error body.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ErrorResponse {
        pub err: i32,
    }
}

jute_record! {
    /// Reply to `create`: the created path (with the sequence suffix, if any).
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct CreateResponse {
        pub path: String,
    }
}

jute_record! {
    /// Reply to `create2`, `createContainer` and `createTTL`.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct Create2Response {
        pub path: String,
        pub stat: Stat,
    }
}

jute_record! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ExistsResponse {
        pub stat: Stat,
    }
}

jute_record! {
    /// Reply to `getData` (and to `reconfig`, carrying the new configuration).
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct GetDataResponse {
        pub data: Option<Bytes>,
        pub stat: Stat,
    }
}

jute_record! {
    /// Reply to `setData` (and to a standalone `check`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct SetDataResponse {
        pub stat: Stat,
    }
}

jute_record! {
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct GetAclResponse {
        pub acl: Vec<Acl>,
        pub stat: Stat,
    }
}

jute_record! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct SetAclResponse {
        pub stat: Stat,
    }
}

jute_record! {
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct GetChildrenResponse {
        pub children: Vec<String>,
    }
}

jute_record! {
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct GetChildren2Response {
        pub children: Vec<String>,
        pub stat: Stat,
    }
}

jute_record! {
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct SyncResponse {
        pub path: String,
    }
}

jute_record! {
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct GetEphemeralsResponse {
        pub ephemerals: Vec<String>,
    }
}

jute_record! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct GetAllChildrenNumberResponse {
        pub total_number: i32,
    }
}

jute_record! {
    /// One identity a session is authenticated as (`org.apache.zookeeper.data.ClientInfo`).
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct ClientInfo {
        pub auth_scheme: String,
        pub user: String,
    }
}

jute_record! {
    /// Reply to `whoAmI`: every identity of the session.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct WhoAmIResponse {
        pub client_info: Vec<ClientInfo>,
    }
}

jute_record! {
    /// Legacy (never served): part of the schema only.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct GetMaxChildrenRequest {
        pub path: String,
    }
}

jute_record! {
    /// Legacy (never served): part of the schema only.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct GetMaxChildrenResponse {
        pub max: i32,
    }
}

jute_record! {
    /// Legacy (never served): part of the schema only.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub struct SetMaxChildrenRequest {
        pub path: String,
        pub max: i32,
    }
}

//! Zinc's wire formats: everything a ZooKeeper client, a Zinc server and the Zinc log exchange,
//! encoded exactly as Apache ZooKeeper does. Pure: no I/O, no clock, no randomness.

pub mod codes;
pub mod data;
pub mod fourlw;
pub mod frame;
pub mod jute;
pub mod path;
pub mod peer;
pub mod records;
pub mod txn;
pub mod types;

pub use codes::{ErrorCode, OpCode};
pub use data::{perms, Acl, Id, Stat, StatPersisted};
pub use fourlw::FourLetterWord;
pub use frame::{encode_frame, FrameDecoder, FrameError};
pub use jute::{DecodeError, DecodeResult, JuteWrite, Reader, Record};
pub use path::{validate_path, PathError};
pub use records::{
    AddWatchMode, ClientFrame, ConnectRequest, ConnectResponse, CreateMode, EventType, KeeperState,
    MultiOp, MultiRequest, MultiResponse, OpResult, ReplyHeader, Request, RequestHeader, Response,
    ServerFrame, WatcherEvent, WatcherType,
};
pub use types::{Epoch, ServerId, SessionId, Xid, Zxid};

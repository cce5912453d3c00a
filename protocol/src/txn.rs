//! Txn records: what the leader's prep stage produces, Zab proposals carry, the WAL stores and
//! the tree applies. The layout is `zookeeper.jute`'s `org.apache.zookeeper.txn` module, so an
//! Apache ZooKeeper log entry decodes here unchanged.
//!
//! Every field is absolute (the new version, the parent's new cversion, the paths an ended
//! session owned), so applying a txn a second time leaves the tree as it was: the property that
//! fuzzy snapshots plus log replay rely on.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codes::OpCode;
use crate::data::Acl;
use crate::jute::{DecodeError, DecodeResult, Reader, Record};
use crate::jute_record;

jute_record! {
    /// Who asked, which request, when, and at which zxid; `op_type` says how to read the body.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct TxnHeader {
        pub client_id: i64,
        pub cxid: i32,
        pub zxid: i64,
        pub time: i64,
        pub op_type: i32,
    }
}

jute_record! {
    /// A digest of the whole tree after this txn (so servers can compare state).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct TxnDigest {
        pub version: i32,
        pub tree_digest: i64,
    }
}

jute_record! {
    /// Creates a persistent or ephemeral node (owner: the header's `client_id`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CreateTxn {
        pub path: String,
        pub data: Option<Bytes>,
        pub acl: Vec<Acl>,
        pub ephemeral: bool,
        pub parent_cversion: i32,
    }
}

jute_record! {
    /// Creates a TTL node.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CreateTtlTxn {
        pub path: String,
        pub data: Option<Bytes>,
        pub acl: Vec<Acl>,
        pub parent_cversion: i32,
        pub ttl: i64,
    }
}

jute_record! {
    /// Creates a container node.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CreateContainerTxn {
        pub path: String,
        pub data: Option<Bytes>,
        pub acl: Vec<Acl>,
        pub parent_cversion: i32,
    }
}

jute_record! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DeleteTxn {
        pub path: String,
    }
}

jute_record! {
    /// Sets data; `version` is the node's new version (absolute).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SetDataTxn {
        pub path: String,
        pub data: Option<Bytes>,
        pub version: i32,
    }
}

jute_record! {
    /// Sets the ACL; `version` is the node's new aversion (absolute).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SetAclTxn {
        pub path: String,
        pub acl: Vec<Acl>,
        pub version: i32,
    }
}

jute_record! {
    /// A version check inside a multi; changes nothing.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CheckVersionTxn {
        pub path: String,
        pub version: i32,
    }
}

jute_record! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CreateSessionTxn {
        pub time_out: i32,
    }
}

jute_record! {
    /// Ends a session and deletes the ephemeral nodes it owned (listed, so replay is exact).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CloseSessionTxn {
        pub paths_to_delete: Vec<String>,
    }
}

jute_record! {
    /// A request that failed in prep; inside a multi, the op that failed and those rolled back.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ErrorTxn {
        pub err: i32,
    }
}

jute_record! {
    /// One op of a multi: its type and its encoded body.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SubTxn {
        pub op_type: i32,
        pub data: Bytes,
    }
}

/// A decoded txn body. Each variant has exactly one op code (`Txn::op`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Txn {
    Create(CreateTxn),
    /// Same body as `Create`; the reply carries the new node's Stat.
    Create2(CreateTxn),
    CreateContainer(CreateContainerTxn),
    CreateTtl(CreateTtlTxn),
    Delete(DeleteTxn),
    /// A container or expired TTL node removed by the server itself.
    DeleteContainer(DeleteTxn),
    SetData(SetDataTxn),
    SetAcl(SetAclTxn),
    Check(CheckVersionTxn),
    Multi(Vec<Txn>),
    CreateSession(CreateSessionTxn),
    CloseSession(CloseSessionTxn),
    Error(ErrorTxn),
}

impl Txn {
    pub fn op(&self) -> OpCode {
        match self {
            Txn::Create(_) => OpCode::Create,
            Txn::Create2(_) => OpCode::Create2,
            Txn::CreateContainer(_) => OpCode::CreateContainer,
            Txn::CreateTtl(_) => OpCode::CreateTtl,
            Txn::Delete(_) => OpCode::Delete,
            Txn::DeleteContainer(_) => OpCode::DeleteContainer,
            Txn::SetData(_) => OpCode::SetData,
            Txn::SetAcl(_) => OpCode::SetAcl,
            Txn::Check(_) => OpCode::Check,
            Txn::Multi(_) => OpCode::Multi,
            Txn::CreateSession(_) => OpCode::CreateSession,
            Txn::CloseSession(_) => OpCode::CloseSession,
            Txn::Error(_) => OpCode::Error,
        }
    }

    /// Bytes `encode_body` writes.
    pub fn encoded_body_len(&self) -> usize {
        match self {
            Txn::Create(body) | Txn::Create2(body) => body.encoded_len_hint(),
            Txn::CreateContainer(body) => body.encoded_len_hint(),
            Txn::CreateTtl(body) => body.encoded_len_hint(),
            Txn::Delete(body) | Txn::DeleteContainer(body) => body.encoded_len_hint(),
            Txn::SetData(body) => body.encoded_len_hint(),
            Txn::SetAcl(body) => body.encoded_len_hint(),
            Txn::Check(body) => body.encoded_len_hint(),
            Txn::CreateSession(body) => body.encoded_len_hint(),
            Txn::CloseSession(body) => body.encoded_len_hint(),
            Txn::Error(body) => body.encoded_len_hint(),
            // The count, then each op's type and its body as a buffer.
            Txn::Multi(ops) => {
                4 + ops
                    .iter()
                    .map(|op| 8 + op.encoded_body_len())
                    .sum::<usize>()
            }
        }
    }

    /// Appends the body (without header) to `out`.
    pub fn encode_body(&self, out: &mut BytesMut) {
        match self {
            Txn::Create(body) | Txn::Create2(body) => body.encode(out),
            Txn::CreateContainer(body) => body.encode(out),
            Txn::CreateTtl(body) => body.encode(out),
            Txn::Delete(body) | Txn::DeleteContainer(body) => body.encode(out),
            Txn::SetData(body) => body.encode(out),
            Txn::SetAcl(body) => body.encode(out),
            Txn::Check(body) => body.encode(out),
            Txn::CreateSession(body) => body.encode(out),
            Txn::CloseSession(body) => body.encode(out),
            Txn::Error(body) => body.encode(out),
            Txn::Multi(ops) => {
                let count = i32::try_from(ops.len()).expect("multi op count exceeds i32");
                out.put_i32(count);
                for op in ops {
                    let mut data = BytesMut::new();
                    op.encode_body(&mut data);
                    SubTxn {
                        op_type: op.op().as_i32(),
                        data: data.freeze(),
                    }
                    .encode(out);
                }
            }
        }
    }

    /// Reads a body of type `op_type`. Multis may not nest.
    pub fn decode_body(op_type: i32, reader: &mut Reader) -> DecodeResult<Txn> {
        Self::decode_body_at_depth(op_type, reader, 0)
    }

    fn decode_body_at_depth(op_type: i32, reader: &mut Reader, depth: u32) -> DecodeResult<Txn> {
        let op = OpCode::try_from(op_type)?;
        Ok(match op {
            OpCode::Create => Txn::Create(CreateTxn::decode(reader)?),
            OpCode::Create2 => Txn::Create2(CreateTxn::decode(reader)?),
            OpCode::CreateContainer => Txn::CreateContainer(CreateContainerTxn::decode(reader)?),
            OpCode::CreateTtl => Txn::CreateTtl(CreateTtlTxn::decode(reader)?),
            OpCode::Delete => Txn::Delete(DeleteTxn::decode(reader)?),
            OpCode::DeleteContainer => Txn::DeleteContainer(DeleteTxn::decode(reader)?),
            OpCode::SetData => Txn::SetData(SetDataTxn::decode(reader)?),
            OpCode::SetAcl => Txn::SetAcl(SetAclTxn::decode(reader)?),
            OpCode::Check => Txn::Check(CheckVersionTxn::decode(reader)?),
            OpCode::CreateSession => Txn::CreateSession(CreateSessionTxn::decode(reader)?),
            OpCode::CloseSession => Txn::CloseSession(CloseSessionTxn::decode(reader)?),
            OpCode::Error => Txn::Error(ErrorTxn::decode(reader)?),
            OpCode::Multi if depth == 0 => {
                let subs = Vec::<SubTxn>::decode(reader)?;
                let mut ops = Vec::with_capacity(subs.len());
                for sub in subs {
                    let mut sub_reader = Reader::new(sub.data);
                    ops.push(Self::decode_body_at_depth(
                        sub.op_type,
                        &mut sub_reader,
                        depth + 1,
                    )?);
                    sub_reader.finish()?;
                }
                Txn::Multi(ops)
            }
            _ => {
                return Err(DecodeError::UnknownValue {
                    what: "txn type",
                    value: op_type as i64,
                })
            }
        })
    }
}

/// One log entry: header, body and (optionally) the tree digest after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnEntry {
    pub header: TxnHeader,
    pub txn: Txn,
    pub digest: Option<TxnDigest>,
}

impl TxnEntry {
    pub fn encode(&self, out: &mut BytesMut) {
        debug_assert_eq!(self.header.op_type, self.txn.op().as_i32());
        self.header.encode(out);
        self.txn.encode_body(out);
        if let Some(digest) = &self.digest {
            digest.encode(out);
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.freeze()
    }

    /// Bytes `encode` writes.
    pub fn encoded_len(&self) -> usize {
        self.header.encoded_len_hint()
            + self.txn.encoded_body_len()
            + self.digest.as_ref().map_or(0, Record::encoded_len_hint)
    }

    /// Decodes one whole entry; the digest is present when bytes remain after the body.
    pub fn from_bytes(bytes: &[u8]) -> DecodeResult<Self> {
        TxnEntry::decode_shared(Bytes::copy_from_slice(bytes))
    }

    /// As [`TxnEntry::from_bytes`], without copying: the entry's data fields share `bytes`.
    pub fn decode_shared(bytes: Bytes) -> DecodeResult<Self> {
        let mut reader = Reader::new(bytes);
        let header = TxnHeader::decode(&mut reader)?;
        let txn = Txn::decode_body(header.op_type, &mut reader)?;
        if txn.op().as_i32() != header.op_type {
            return Err(DecodeError::Invalid("txn header type disagrees with body"));
        }
        let digest = match reader.remaining() {
            0 => None,
            _ => Some(TxnDigest::decode(&mut reader)?),
        };
        reader.finish()?;
        Ok(TxnEntry {
            header,
            txn,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_entry_round_trips() {
        let txn = Txn::Multi(vec![
            Txn::Create(CreateTxn {
                path: "/a".into(),
                data: Some(Bytes::from_static(b"x")),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: 1,
            }),
            Txn::Error(ErrorTxn { err: -101 }),
        ]);
        let entry = TxnEntry {
            header: TxnHeader {
                client_id: 5,
                cxid: 1,
                zxid: 0x1_0000_0001,
                time: 1000,
                op_type: OpCode::Multi.as_i32(),
            },
            txn,
            digest: Some(TxnDigest {
                version: 2,
                tree_digest: 42,
            }),
        };
        let bytes = entry.to_bytes();
        assert_eq!(bytes.len(), entry.encoded_len());
        assert_eq!(TxnEntry::from_bytes(&bytes), Ok(entry));
    }

    #[test]
    fn encoded_len_is_what_encode_writes() {
        let acl = Acl::open_unsafe();
        let txns = [
            Txn::SetData(SetDataTxn {
                path: "/a/b".into(),
                data: None,
                version: 3,
            }),
            Txn::SetData(SetDataTxn {
                path: "/a".into(),
                data: Some(Bytes::from_static(b"value")),
                version: 3,
            }),
            Txn::CreateTtl(CreateTtlTxn {
                path: "/t".into(),
                data: Some(Bytes::new()),
                acl: acl.clone(),
                parent_cversion: 2,
                ttl: 100,
            }),
            Txn::SetAcl(SetAclTxn {
                path: "/s".into(),
                acl,
                version: 1,
            }),
            Txn::CloseSession(CloseSessionTxn {
                paths_to_delete: vec!["/e1".into(), "/e/2".into()],
            }),
            Txn::Delete(DeleteTxn { path: "/d".into() }),
            Txn::CreateSession(CreateSessionTxn { time_out: 5 }),
        ];
        for txn in txns {
            let mut body = BytesMut::new();
            txn.encode_body(&mut body);
            assert_eq!(body.len(), txn.encoded_body_len(), "{txn:?}");
        }
    }

    #[test]
    fn nested_multi_is_rejected() {
        let inner = Txn::Multi(vec![]);
        let mut body = BytesMut::new();
        Txn::Multi(vec![inner]).encode_body(&mut body);
        let mut reader = Reader::new(body.freeze());
        assert!(Txn::decode_body(OpCode::Multi.as_i32(), &mut reader).is_err());
    }
}

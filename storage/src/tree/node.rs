//! One znode as stored: a single allocation holding the persisted stat, the ACL reference, the
//! children trie, the node's own name and its data. The full path is not stored; it is known
//! from the walk that reached the node.

use bytes::Bytes;
use triomphe::ThinArc;
use zinc_protocol::{Stat, StatPersisted};

use super::acl::AclRef;
use super::thin;
use super::trie::{Leaf, Trie};

/// `name_len` bit that says the data is null (absent), as opposed to empty.
const DATA_NULL_BIT: u32 = 1 << 31;
/// Longest child name the layout can hold.
pub(crate) const NAME_BYTES_MAX: usize = (DATA_NULL_BIT - 1) as usize;

/// The fixed part of a znode.
#[derive(Clone)]
pub(crate) struct Meta {
    pub(crate) czxid: i64,
    pub(crate) mzxid: i64,
    pub(crate) pzxid: i64,
    pub(crate) ctime: i64,
    pub(crate) mtime: i64,
    pub(crate) ephemeral_owner: i64,
    pub(crate) version: i32,
    /// Children ever created (what txns and sequential names use); clients see
    /// `2 * cversion - numChildren`, i.e. creates plus deletes.
    pub(crate) cversion: i32,
    pub(crate) aversion: i32,
    /// This node's contribution to the tree digest (see `node_digest`).
    pub(crate) digest: u32,
    /// Length of the name prefix of the byte slice, plus `DATA_NULL_BIT`.
    name_len: u32,
    pub(crate) acl: AclRef,
    pub(crate) children: Trie<Node>,
}

/// A znode: cheap to clone (one reference count), copied only when written while shared.
#[derive(Clone)]
pub(crate) struct Node(ThinArc<Meta, u8>);

impl Leaf for Node {
    type Key = [u8];
    fn key(&self) -> &[u8] {
        self.name()
    }
}

/// The stat fields a new node starts with.
pub(crate) struct NewNode<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) data: Option<&'a [u8]>,
    pub(crate) acl: AclRef,
    pub(crate) ephemeral_owner: i64,
    pub(crate) zxid: i64,
    pub(crate) time: i64,
}

impl Node {
    pub(crate) fn new(fields: NewNode<'_>) -> Node {
        assert!(fields.name.len() <= NAME_BYTES_MAX, "znode name too long");
        let meta = Meta {
            czxid: fields.zxid,
            mzxid: fields.zxid,
            pzxid: fields.zxid,
            ctime: fields.time,
            mtime: fields.time,
            ephemeral_owner: fields.ephemeral_owner,
            version: 0,
            cversion: 0,
            aversion: 0,
            digest: 0,
            name_len: 0,
            acl: fields.acl,
            children: Trie::default(),
        };
        Node::assemble(meta, fields.name, fields.data)
    }

    /// Builds a node from its parts (the digest field is left for the caller to set).
    /// A node as a snapshot recorded it, with its children already built and its digest
    /// computed for `path`.
    pub(crate) fn restored(
        path: &str,
        stat: &StatPersisted,
        data: Option<&[u8]>,
        acl: AclRef,
        children: Trie<Node>,
    ) -> Node {
        let name = match path.rfind('/') {
            Some(slash) => &path[slash + 1..],
            None => "",
        };
        let mut meta = Meta {
            czxid: stat.czxid,
            mzxid: stat.mzxid,
            pzxid: stat.pzxid,
            ctime: stat.ctime,
            mtime: stat.mtime,
            ephemeral_owner: stat.ephemeral_owner,
            version: stat.version,
            cversion: stat.cversion,
            aversion: stat.aversion,
            digest: 0,
            name_len: 0,
            acl,
            children,
        };
        meta.digest = node_digest(path, data, &meta);
        Node::assemble(meta, name.as_bytes(), data)
    }

    pub(crate) fn assemble(mut meta: Meta, name: &[u8], data: Option<&[u8]>) -> Node {
        meta.name_len = name.len() as u32 | if data.is_none() { DATA_NULL_BIT } else { 0 };
        let data = data.unwrap_or_default();
        let name_len = name.len();
        let zeros = std::iter::repeat_n(0u8, name_len + data.len());
        let mut arc = ThinArc::from_header_and_iter(meta, zeros);
        match thin::get_mut(&mut arc) {
            Some(inner) => {
                let slice = inner.slice_mut();
                slice[..name_len].copy_from_slice(name);
                slice[name_len..].copy_from_slice(data);
            }
            None => unreachable!("a new allocation is unique"),
        }
        Node(arc)
    }

    pub(crate) fn meta(&self) -> &Meta {
        &self.0.header.header
    }

    pub(crate) fn name(&self) -> &[u8] {
        let len = (self.meta().name_len & !DATA_NULL_BIT) as usize;
        &self.0.slice[..len]
    }

    /// The data, `None` when the node holds null data.
    pub(crate) fn data(&self) -> Option<&[u8]> {
        let name_len = self.meta().name_len;
        if name_len & DATA_NULL_BIT != 0 {
            return None;
        }
        let len = name_len as usize;
        Some(&self.0.slice[len..])
    }

    pub(crate) fn data_bytes(&self) -> Option<Bytes> {
        self.data().map(Bytes::copy_from_slice)
    }

    pub(crate) fn data_len(&self) -> usize {
        self.data().map_or(0, <[u8]>::len)
    }

    /// The fixed part, for writing; copies the node first if a clone still shares it.
    pub(crate) fn meta_mut(&mut self) -> &mut Meta {
        if !thin::is_unique(&self.0) {
            let copy = Node::assemble(self.meta().clone(), self.name(), self.data());
            *self = copy;
        }
        match thin::get_mut(&mut self.0) {
            Some(inner) => inner.header_mut(),
            None => unreachable!("a node is unique right after it is copied"),
        }
    }

    /// The node with new data (a new allocation: the data is part of it).
    pub(crate) fn with_data(&self, data: Option<&[u8]>) -> Node {
        Node::assemble(self.meta().clone(), self.name(), data)
    }

    pub(crate) fn stat(&self) -> Stat {
        let meta = self.meta();
        let num_children = meta.children.len() as i32;
        Stat {
            czxid: meta.czxid,
            mzxid: meta.mzxid,
            ctime: meta.ctime,
            mtime: meta.mtime,
            version: meta.version,
            cversion: meta.cversion.wrapping_mul(2).wrapping_sub(num_children),
            aversion: meta.aversion,
            ephemeral_owner: meta.ephemeral_owner,
            data_length: self.data_len() as i32,
            num_children,
            pzxid: meta.pzxid,
        }
    }

    pub(crate) fn persisted_stat(&self) -> StatPersisted {
        let meta = self.meta();
        StatPersisted {
            czxid: meta.czxid,
            mzxid: meta.mzxid,
            ctime: meta.ctime,
            mtime: meta.mtime,
            version: meta.version,
            cversion: meta.cversion,
            aversion: meta.aversion,
            ephemeral_owner: meta.ephemeral_owner,
            pzxid: meta.pzxid,
        }
    }

    /// Recomputes this node's digest for `path`, returning (old, new).
    pub(crate) fn refresh_digest(&mut self, path: &str) -> (u32, u32) {
        let new = node_digest(path, self.data(), self.meta());
        let meta = self.meta_mut();
        let old = meta.digest;
        meta.digest = new;
        (old, new)
    }
}

impl Drop for Node {
    /// Releases a subtree with an explicit stack: dropping a very deep path of nodes
    /// recursively could overflow the thread's stack.
    fn drop(&mut self) {
        if self.meta().children.is_empty() {
            return;
        }
        let mut pending = Vec::new();
        if let Some(inner) = thin::get_mut(&mut self.0) {
            inner.header_mut().children.drain_into(&mut pending);
        }
        while let Some(mut node) = pending.pop() {
            if let Some(inner) = thin::get_mut(&mut node.0) {
                inner.header_mut().children.drain_into(&mut pending);
            }
            // `node` drops here with no children left below it.
        }
    }
}

/// The per-node digest: CRC-32 of path, data and the persisted stat, the same function Apache
/// ZooKeeper uses (digest version 2), so equal trees have equal digests on either server. Nodes
/// under `/zookeeper/` count as zero, and the root is hashed under the empty path.
pub(crate) fn node_digest(path: &str, data: Option<&[u8]>, meta: &Meta) -> u32 {
    if path.starts_with("/zookeeper/") {
        return 0;
    }
    let path = if path == "/" { "" } else { path };
    let mut crc = crc32fast::Hasher::new();
    crc.update(path.as_bytes());
    if let Some(data) = data {
        crc.update(data);
    }
    let mut stat = [0u8; 60];
    let longs = [meta.czxid, meta.mzxid, meta.pzxid, meta.ctime, meta.mtime];
    for (at, value) in longs.iter().enumerate() {
        stat[at * 8..at * 8 + 8].copy_from_slice(&value.to_be_bytes());
    }
    let ints = [meta.version, meta.cversion, meta.aversion];
    for (at, value) in ints.iter().enumerate() {
        stat[40 + at * 4..44 + at * 4].copy_from_slice(&value.to_be_bytes());
    }
    stat[52..60].copy_from_slice(&meta.ephemeral_owner.to_be_bytes());
    crc.update(&stat);
    crc.finalize()
}

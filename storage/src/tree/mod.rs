//! The copy-on-write znode tree: Zinc's replicated state machine.
//!
//! A `Tree` is a value. `clone()` is O(1) and the clone never changes, so a shard core or the
//! snapshot writer can hold one while the Zab core applies further txns to its own copy with
//! `apply`. The two share every node that has not been written since the clone; a write copies
//! only the nodes and trie branches on the path from the root to what it changes.
//!
//! The tree is pure: txns carry their zxid and time in the header, and checks that need the
//! wall clock (TTL expiry) take `now_ms` as an argument.
//!
//! Layout: each znode is one allocation (stat, ACL pointer, children trie, name, data); its
//! children live in a persistent hash trie keyed by name; ACL lists are interned and shared.
//! Sessions, the ephemeral nodes of each session, and the container and TTL nodes are kept in
//! tries of their own, so they are part of every clone (a snapshot includes them).
//!
//! Children come back in trie order: unspecified but the same on every server for the same set
//! of names (ZooKeeper itself returns hash-set order). Callers that need sorted names sort.

mod acl;
mod apply;
mod kinds;
mod node;
mod restore;
mod trie;

use std::sync::Arc;

use bytes::Bytes;
use zinc_protocol::{Acl, ErrorCode, Stat, StatPersisted, Zxid};

use acl::{AclRef, SharedInterner};
use node::{NewNode, Node};
use trie::{Leaf, Trie};

pub use apply::{ApplyOutcome, OpResult, Triggers, WatchEvent, WatchTrigger};
pub use kinds::{
    sequential_path, ttl_ephemeral_owner, NodeKind, CONTAINER_EPHEMERAL_OWNER, TTL_MS_MAX,
};
pub use restore::RestoredNode;

/// Version of the digest function (`TxnDigest::version`), the same as Apache ZooKeeper's.
pub const DIGEST_VERSION: i32 = 2;

/// The znode tree plus the session table, at some zxid.
#[derive(Clone)]
pub struct Tree {
    root: Node,
    sessions: Trie<SessionEntry>,
    /// Ephemeral node paths by owner session.
    ephemerals: Trie<OwnerEntry>,
    containers: Trie<PathEntry>,
    ttls: Trie<PathEntry>,
    /// Znodes including the root.
    node_count: u64,
    /// Wrapping sum of every node's digest.
    digest: u64,
    last_zxid: i64,
    acls: Arc<SharedInterner>,
    /// The list interned last: most creates repeat it, and this skips the interner's lock.
    last_acl: Option<AclRef>,
}

#[derive(Clone)]
struct SessionEntry {
    id: i64,
    timeout_ms: i32,
}

impl Leaf for SessionEntry {
    type Key = i64;
    fn key(&self) -> &i64 {
        &self.id
    }
}

#[derive(Clone)]
struct OwnerEntry {
    owner: i64,
    paths: Trie<PathEntry>,
}

impl Leaf for OwnerEntry {
    type Key = i64;
    fn key(&self) -> &i64 {
        &self.owner
    }
}

#[derive(Clone)]
struct PathEntry(Arc<str>);

impl Leaf for PathEntry {
    type Key = str;
    fn key(&self) -> &str {
        &self.0
    }
}

/// The results of scoped threads in the order of `handles`; a thread's panic is passed on.
fn joined<'scope, T>(
    handles: impl IntoIterator<Item = std::thread::ScopedJoinHandle<'scope, T>>,
) -> Vec<T> {
    handles
        .into_iter()
        .map(|handle| {
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
        .collect()
}

/// Splits `path` into parent path and child name; `None` for `/` and malformed paths (not
/// absolute, an empty name anywhere, a trailing slash).
fn split_parent(path: &str) -> Option<(&str, &str)> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || bytes.len() < 2 {
        return None;
    }
    // One pass: the last slash, and no two slashes in a row.
    let mut slash = 0;
    for (at, pair) in bytes.windows(2).enumerate() {
        if pair[1] == b'/' {
            if pair[0] == b'/' {
                return None;
            }
            slash = at + 1;
        }
    }
    let parent = if slash == 0 { "/" } else { &path[..slash] };
    let name = &path[slash + 1..];
    (!name.is_empty()).then_some((parent, name))
}

/// The names along `path` below the root (not for `/` itself); `None` if malformed.
fn components(path: &str) -> Option<impl Iterator<Item = &[u8]>> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || bytes.last() == Some(&b'/') {
        return None;
    }
    Some(bytes[1..].split(|byte| *byte == b'/'))
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl Tree {
    /// A fresh tree as a new ZooKeeper server has it: `/`, `/zookeeper`, `/zookeeper/quota` and
    /// `/zookeeper/config` (read-only to the world, aversion -1), all with zero stats.
    pub fn new() -> Tree {
        let acls = Arc::new(SharedInterner::default());
        let open = acls.intern(&Acl::open_unsafe());
        let empty = |path: &'static str, acl| {
            Node::new(NewNode {
                path,
                data: Some(&[]),
                acl,
                ephemeral_owner: 0,
                zxid: 0,
                time: 0,
            })
        };
        let mut config = empty("/zookeeper/config", acls.intern(&Acl::read_unsafe()));
        config.update_stat("/zookeeper/config", |stat| stat.aversion = -1);
        let mut zookeeper = empty("/zookeeper", open.clone());
        let quota = empty("/zookeeper/quota", open.clone());
        zookeeper.children_mut().insert(quota);
        zookeeper.children_mut().insert(config);
        let mut root = empty("/", open);
        let digest = [&root, &zookeeper]
            .iter()
            .map(|node| u64::from(node.digest()))
            .sum();
        root.children_mut().insert(zookeeper);
        Tree {
            root,
            sessions: Trie::default(),
            ephemerals: Trie::default(),
            containers: Trie::default(),
            ttls: Trie::default(),
            node_count: 4,
            // The two nodes under /zookeeper count as zero.
            digest,
            last_zxid: 0,
            acls,
            last_acl: None,
        }
    }

    fn intern_acl(&mut self, acl: &[Acl]) -> AclRef {
        if let Some(last) = &self.last_acl {
            if last.as_slice() == acl {
                return last.clone();
            }
        }
        let interned = self.acls.intern(acl);
        self.last_acl = Some(interned.clone());
        interned
    }

    fn find(&self, path: &str) -> Option<&Node> {
        let mut node = &self.root;
        if path == "/" {
            return Some(node);
        }
        for name in components(path)? {
            node = node.children().get(name)?;
        }
        Some(node)
    }

    /// The node at `path`, unsharing it and its ancestors (check existence with `find` first).
    fn find_mut(&mut self, path: &str) -> Option<&mut Node> {
        let mut node = &mut self.root;
        if path == "/" {
            return Some(node);
        }
        for name in components(path)? {
            node = node.children_mut().get_mut(name)?;
        }
        Some(node)
    }

    // ----- reads -----

    /// The node at `path`, to read several of its parts with one lookup.
    pub fn node(&self, path: &str) -> Option<NodeRef<'_>> {
        self.find(path).map(NodeRef)
    }

    /// `getData`: the data (`None` for null data) and the Stat.
    pub fn get_data(&self, path: &str) -> Option<(Option<Bytes>, Stat)> {
        self.find(path).map(|node| (node.data_bytes(), node.stat()))
    }

    /// `exists`.
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.find(path).map(Node::stat)
    }

    /// The stat as stored, with `cversion` counting child creates only: what prep needs to
    /// fill `parent_cversion` (stored + 1) and to name sequential nodes (stored).
    pub fn persisted_stat(&self, path: &str) -> Option<StatPersisted> {
        self.find(path).map(Node::persisted_stat)
    }

    /// `getChildren`: child names in trie order.
    pub fn children(&self, path: &str) -> Option<Vec<String>> {
        self.find(path).map(child_names)
    }

    /// `getChildren2`: child names in trie order, and the Stat.
    pub fn children_with_stat(&self, path: &str) -> Option<(Vec<String>, Stat)> {
        self.find(path).map(|node| (child_names(node), node.stat()))
    }

    /// `getACL`: the ACL list and the Stat.
    pub fn acl(&self, path: &str) -> Option<(Vec<Acl>, Stat)> {
        self.find(path)
            .map(|node| (node.acl().as_ref().clone(), node.stat()))
    }

    /// `getAllChildrenNumber`: how many nodes lie below `path` (all depths).
    pub fn all_children_number(&self, path: &str) -> Option<u64> {
        if path == "/" {
            return Some(self.node_count - 1);
        }
        let node = self.find(path)?;
        let mut count = 0u64;
        let mut stack = vec![node.clone()];
        while let Some(node) = stack.pop() {
            node.children().for_each(|child| {
                count += 1;
                if !child.children().is_empty() {
                    stack.push(child.clone());
                }
            });
        }
        Some(count)
    }

    /// `getEphemerals`: paths of the ephemeral nodes `session` owns that start with `prefix`
    /// (all of them for `/` or an empty prefix), in no particular order.
    pub fn ephemerals(&self, session: i64, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(entry) = self.ephemerals.get(&session) {
            let all = prefix.is_empty() || prefix == "/";
            entry.paths.for_each(|path| {
                if all || path.0.starts_with(prefix) {
                    out.push(path.0.to_string());
                }
            });
        }
        out
    }

    /// The session's timeout, if the session is open.
    pub fn session_timeout_ms(&self, session: i64) -> Option<i32> {
        self.sessions.get(&session).map(|entry| entry.timeout_ms)
    }

    /// Every open session with its timeout in milliseconds, in no particular order.
    pub fn sessions(&self) -> Vec<(i64, i32)> {
        let mut out = Vec::with_capacity(self.sessions.len());
        self.sessions
            .for_each(|entry| out.push((entry.id, entry.timeout_ms)));
        out
    }

    /// Container and TTL nodes the leader should delete now (with `DeleteContainer` txns):
    /// containers that had a child once (cversion > 0) and have none now, and TTL nodes
    /// without children whose last change is more than their TTL before `now_ms`.
    pub fn deletion_candidates(&self, now_ms: i64) -> Vec<String> {
        let mut out = Vec::new();
        self.containers.for_each(|entry| {
            if let Some(node) = self.find(&entry.0) {
                if node.persisted_stat().cversion > 0 && node.children().is_empty() {
                    out.push(entry.0.to_string());
                }
            }
        });
        self.ttls.for_each(|entry| {
            if let Some(node) = self.find(&entry.0) {
                let stat = node.persisted_stat();
                let NodeKind::Ttl { ttl_ms } = NodeKind::from_ephemeral_owner(stat.ephemeral_owner)
                else {
                    return;
                };
                if node.children().is_empty() && now_ms.saturating_sub(stat.mtime) > ttl_ms {
                    out.push(entry.0.to_string());
                }
            }
        });
        out
    }

    /// The zxid of the newest txn applied.
    pub fn last_zxid(&self) -> Zxid {
        Zxid(self.last_zxid)
    }

    /// The tree digest (as in `TxnDigest::tree_digest`, version `DIGEST_VERSION`).
    pub fn digest(&self) -> i64 {
        self.digest as i64
    }

    /// Number of znodes, the root and `/zookeeper` ones included.
    pub fn node_count(&self) -> u64 {
        self.node_count
    }

    /// Drops this copy of the tree `step` nodes or trie branches at a time, calling `between`
    /// after each step. A copy kept for a while (a snapshot's root) can be the last holder of
    /// hundreds of thousands of nodes the live tree has replaced since; dropped at once, they
    /// keep a CPU busy for tens of milliseconds, and a kernel worker that wakes on that CPU
    /// (the one completing the log's writes) may wait a whole scheduler tick to run. Called
    /// with `std::thread::yield_now`, no such wait outlasts one step.
    pub fn release_in_steps(self, step: usize, mut between: impl FnMut()) {
        let Tree { root, .. } = self;
        let mut freeing = node::Freeing::new(root);
        while freeing.step(step.max(1)) {
            between();
        }
    }

    /// Number of distinct ACL lists the writer has interned (shared by all nodes using them).
    pub fn acl_list_count(&self) -> usize {
        self.acls.len()
    }

    /// The interned ACL lists, with the id [`NodeRef::acl_id`] gives the nodes that use each:
    /// every list a node of this tree uses is among them (and perhaps lists only other trees
    /// of its lineage use, or none any more).
    pub fn acl_lists(&self) -> Vec<(usize, Vec<Acl>)> {
        let lists = self.acls.lists();
        lists
            .iter()
            .map(|list| (list.heap_ptr() as usize, list.as_slice().to_vec()))
            .collect()
    }
}

/// One node as a reader sees it (see `Tree::node` and `Tree::for_each_node`).
pub struct NodeRef<'a>(&'a Node);

impl<'a> NodeRef<'a> {
    pub fn persisted_stat(&self) -> StatPersisted {
        self.0.persisted_stat()
    }

    /// The Stat as clients see it.
    pub fn stat(&self) -> Stat {
        self.0.stat()
    }

    /// The data, `None` for null data; borrowed from the tree, not from this handle.
    pub fn data(&self) -> Option<&'a [u8]> {
        self.0.data()
    }

    pub fn acl(&self) -> &'a [Acl] {
        self.0.acl().as_slice()
    }

    /// An id equal for nodes that share one interned ACL list (to store each list once).
    pub fn acl_id(&self) -> usize {
        self.0.acl().heap_ptr() as usize
    }
}

impl Tree {
    /// Visits every node, parents before children (the root first), with its full path.
    pub fn for_each_node<'t>(&'t self, mut visit: impl FnMut(&str, NodeRef<'t>)) {
        self.for_each_node_with_parent(|path, _, node| visit(path, node));
    }

    /// As `for_each_node`, also giving each node's parent's position in the visiting order
    /// (the root comes first, at 0, and is given as its own parent). The nodes are borrowed
    /// from the tree, so a visitor may keep their data for as long as it borrows the tree.
    pub fn for_each_node_with_parent<'t>(&'t self, mut visit: impl FnMut(&str, u32, NodeRef<'t>)) {
        visit("/", 0, NodeRef(&self.root));
        let mut visited = 1u32;
        let mut stack: Vec<(String, u32, &'t Node)> = vec![(String::new(), 0u32, &self.root)];
        // One buffer for every child's path; only a node with children keeps a copy of it.
        let mut child_path = String::new();
        while let Some((path, index, node)) = stack.pop() {
            node.children().for_each(|child| {
                child_path.clear();
                child_path.push_str(&path);
                child_path.push('/');
                // Names come from validated paths; a lossy copy only if one were not UTF-8.
                match std::str::from_utf8(child.name()) {
                    Ok(name) => child_path.push_str(name),
                    Err(_) => child_path.push_str(&String::from_utf8_lossy(child.name())),
                }
                let child_index = visited;
                visited += 1;
                visit(&child_path, index, NodeRef(child));
                if !child.children().is_empty() {
                    stack.push((child_path.clone(), child_index, child));
                }
            });
        }
    }

    /// Puts a node back as a snapshot recorded it: parents first (as `for_each_node` visits
    /// them). An existing node (the initial ones) is overwritten in place.
    pub fn restore_node(
        &mut self,
        path: &str,
        stat: &StatPersisted,
        data: Option<&[u8]>,
        acl: &[Acl],
    ) -> Result<(), ErrorCode> {
        let acl = self.intern_acl(acl);
        let existed = self.find(path).is_some();
        if path != "/" {
            let (parent_path, _) = split_parent(path).ok_or(ErrorCode::BadArguments)?;
            self.find(parent_path).ok_or(ErrorCode::NoNode)?;
        }
        if existed {
            let old = self
                .find(path)
                .map(|node| node.persisted_stat().ephemeral_owner);
            self.unindex_kind(path, old.unwrap_or(0));
        }
        let (old, new) = self.put_restored(path, stat, data, acl)?;
        self.replace_digest(old, new);
        if !existed {
            self.node_count += 1;
        }
        self.index_kind(path, stat.ephemeral_owner);
        self.last_zxid = self.last_zxid.max(stat.mzxid).max(stat.czxid);
        Ok(())
    }

    /// Puts a session back as a snapshot recorded it.
    pub fn restore_session(&mut self, session: i64, timeout_ms: i32) {
        self.sessions.insert(SessionEntry {
            id: session,
            timeout_ms,
        });
    }

    /// Sets the zxid the restored state corresponds to (the snapshot's zxid).
    pub fn restore_last_zxid(&mut self, zxid: Zxid) {
        self.last_zxid = zxid.0;
    }
}

fn child_names(node: &Node) -> Vec<String> {
    let mut names = Vec::with_capacity(node.children().len());
    node.children()
        .for_each(|child| names.push(String::from_utf8_lossy(child.name()).into_owned()));
    names
}

#[cfg(test)]
mod tests;

//! Applying committed txns: the Stat bookkeeping of every op, the per-op results the server
//! replies with, and the watch triggers it fires.
//!
//! Every txn field is absolute (new version, parent cversion, paths of an ended session), so
//! applying a txn again leaves the tree as it was: a create of an existing node fails with
//! NodeExists and changes nothing, a parent's cversion and pzxid only move forward.
//!
//! A multi is all or nothing by construction: prep checks every op against the state the multi
//! follows and, if one fails, logs the multi with `Error` ops, which changes nothing here.
//! A multi without `Error` ops applies op by op, as ZooKeeper's DataTree does.

use std::borrow::Cow;
use std::sync::Arc;

use smallvec::SmallVec;

use zinc_protocol::txn::{CloseSessionTxn, Txn, TxnHeader};
use zinc_protocol::{Acl, ErrorCode, Stat, StatPersisted, Zxid};

use super::acl::AclRef;
use super::kinds::{ttl_ephemeral_owner, NodeKind, CONTAINER_EPHEMERAL_OWNER};
use super::node::{NewNode, Node, NAME_BYTES_MAX};
use super::trie::Trie;
use super::{split_parent, OwnerEntry, PathEntry, SessionEntry, Tree};

/// A watch event type, with the numbers of `Watcher.Event.EventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum WatchEvent {
    NodeCreated = 1,
    NodeDeleted = 2,
    NodeDataChanged = 3,
    NodeChildrenChanged = 4,
}

/// An event the server must deliver to the watches on `path` (for `NodeChildrenChanged`, the
/// parent whose children changed). The path borrows the applied txn's own path (or its parent
/// part) where it can, so applying a txn copies no path; only the nodes a closeSession finds
/// in the ephemeral index beyond the txn's list are owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchTrigger<'t> {
    pub path: Cow<'t, str>,
    pub event: WatchEvent,
}

/// The triggers of one txn: a single op fires two at most, held without an allocation.
pub type Triggers<'t> = SmallVec<[WatchTrigger<'t>; 2]>;

/// The result of one op, for the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult<'t> {
    /// A create of any kind (the path is the txn's); the Stat is sent for create2, container
    /// and TTL creates.
    Created {
        path: Cow<'t, str>,
        stat: Stat,
    },
    Deleted,
    DataSet {
        stat: Stat,
    },
    AclSet {
        stat: Stat,
    },
    Checked,
    SessionCreated,
    SessionClosed,
    Multi(Vec<OpResult<'t>>),
    /// A failed op. Inside a failed multi the ops before the failing one report `Ok` and the
    /// ops after it `RuntimeInconsistency`, as ZooKeeper's `ErrorResult`s do.
    Error(ErrorCode),
}

/// What applying one txn did; it borrows paths from the txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome<'t> {
    pub zxid: Zxid,
    /// `Ok`, or the error of the op (the first failing op of a multi).
    pub err: ErrorCode,
    pub result: OpResult<'t>,
    /// In the order the changes happened.
    pub triggers: Triggers<'t>,
}

impl ApplyOutcome<'_> {
    /// The same outcome owning its paths, to keep past the txn's life.
    pub fn into_owned(self) -> ApplyOutcome<'static> {
        ApplyOutcome {
            zxid: self.zxid,
            err: self.err,
            result: self.result.into_owned(),
            triggers: self
                .triggers
                .into_iter()
                .map(WatchTrigger::into_owned)
                .collect(),
        }
    }
}

impl WatchTrigger<'_> {
    /// The same trigger owning its path.
    pub fn into_owned(self) -> WatchTrigger<'static> {
        WatchTrigger {
            path: Cow::Owned(self.path.into_owned()),
            event: self.event,
        }
    }
}

impl OpResult<'_> {
    /// The same result owning its path.
    pub fn into_owned(self) -> OpResult<'static> {
        match self {
            OpResult::Created { path, stat } => OpResult::Created {
                path: Cow::Owned(path.into_owned()),
                stat,
            },
            OpResult::Deleted => OpResult::Deleted,
            OpResult::DataSet { stat } => OpResult::DataSet { stat },
            OpResult::AclSet { stat } => OpResult::AclSet { stat },
            OpResult::Checked => OpResult::Checked,
            OpResult::SessionCreated => OpResult::SessionCreated,
            OpResult::SessionClosed => OpResult::SessionClosed,
            OpResult::Multi(results) => {
                OpResult::Multi(results.into_iter().map(OpResult::into_owned).collect())
            }
            OpResult::Error(code) => OpResult::Error(code),
        }
    }
}

/// A create of any kind, reduced to what the tree needs.
struct CreateSpec<'a> {
    path: &'a str,
    data: Option<&'a [u8]>,
    acl: &'a [Acl],
    ephemeral_owner: i64,
    parent_cversion: i32,
}

/// The header fields every op of a txn uses.
#[derive(Clone, Copy)]
struct Context {
    client_id: i64,
    zxid: i64,
    time: i64,
}

type OpOutcome<'t> = Result<OpResult<'t>, ErrorCode>;

impl Tree {
    /// Applies one committed txn. Never panics on bad input: a txn that cannot apply (a
    /// missing parent, a malformed path) yields an error result and leaves the tree unchanged
    /// (apart from what ZooKeeper also changes, see `delete`).
    pub fn apply<'t>(&mut self, header: &TxnHeader, txn: &'t Txn) -> ApplyOutcome<'t> {
        let context = Context {
            client_id: header.client_id,
            zxid: header.zxid,
            time: header.time,
        };
        let mut triggers = Triggers::new();
        let result = match txn {
            Txn::Multi(ops) => self.apply_multi(context, ops, &mut triggers),
            Txn::CreateSession(body) => {
                self.sessions.insert(SessionEntry {
                    id: context.client_id,
                    timeout_ms: body.time_out,
                });
                OpResult::SessionCreated
            }
            Txn::CloseSession(body) => self.close_session(context, body, &mut triggers),
            single => self
                .apply_op(context, single, &mut triggers)
                .unwrap_or_else(OpResult::Error),
        };
        self.last_zxid = self.last_zxid.max(header.zxid);
        let err = first_error(&result);
        ApplyOutcome {
            zxid: Zxid(header.zxid),
            err,
            result,
            triggers,
        }
    }

    /// One op that may appear in a multi.
    fn apply_op<'t>(
        &mut self,
        context: Context,
        txn: &'t Txn,
        out: &mut Triggers<'t>,
    ) -> OpOutcome<'t> {
        let created = |path: &'t str, stat| OpResult::Created {
            path: Cow::Borrowed(path),
            stat,
        };
        match txn {
            Txn::Create(body) | Txn::Create2(body) => {
                let spec = CreateSpec {
                    path: &body.path,
                    data: body.data.as_deref(),
                    acl: &body.acl,
                    ephemeral_owner: if body.ephemeral { context.client_id } else { 0 },
                    parent_cversion: body.parent_cversion,
                };
                let outcome = self.create(context, &spec, out);
                if matches!(txn, Txn::Create(_)) && outcome == Err(ErrorCode::NodeExists) {
                    self.advance_parent_cversion(context, &spec);
                }
                outcome.map(|stat| created(&body.path, stat))
            }
            Txn::CreateContainer(body) => {
                let spec = CreateSpec {
                    path: &body.path,
                    data: body.data.as_deref(),
                    acl: &body.acl,
                    ephemeral_owner: CONTAINER_EPHEMERAL_OWNER,
                    parent_cversion: body.parent_cversion,
                };
                let stat = self.create(context, &spec, out)?;
                Ok(created(&body.path, stat))
            }
            Txn::CreateTtl(body) => {
                let owner = ttl_ephemeral_owner(body.ttl).ok_or(ErrorCode::BadArguments)?;
                let spec = CreateSpec {
                    path: &body.path,
                    data: body.data.as_deref(),
                    acl: &body.acl,
                    ephemeral_owner: owner,
                    parent_cversion: body.parent_cversion,
                };
                let stat = self.create(context, &spec, out)?;
                Ok(created(&body.path, stat))
            }
            Txn::Delete(body) | Txn::DeleteContainer(body) => {
                self.delete(context, &body.path, out)?;
                Ok(OpResult::Deleted)
            }
            Txn::SetData(body) => {
                let data = body.data.as_deref();
                let stat = self.set_data(context, &body.path, data, body.version, out)?;
                Ok(OpResult::DataSet { stat })
            }
            Txn::SetAcl(body) => {
                let stat = self.set_acl(&body.path, &body.acl, body.version)?;
                Ok(OpResult::AclSet { stat })
            }
            Txn::Check(_) => Ok(OpResult::Checked),
            Txn::Error(body) => Err(error_code(body.err)),
            Txn::Multi(_) | Txn::CreateSession(_) | Txn::CloseSession(_) => {
                Err(ErrorCode::BadArguments)
            }
        }
    }

    /// A multi that prep failed carries `Error` ops and changes nothing; otherwise every op
    /// applies in order.
    fn apply_multi<'t>(
        &mut self,
        context: Context,
        ops: &'t [Txn],
        out: &mut Triggers<'t>,
    ) -> OpResult<'t> {
        if ops.iter().any(|op| matches!(op, Txn::Error(_))) {
            let mut failed = false;
            let results = ops
                .iter()
                .map(|op| match op {
                    Txn::Error(body) => {
                        failed = true;
                        OpResult::Error(error_code(body.err))
                    }
                    _ if failed => OpResult::Error(ErrorCode::RuntimeInconsistency),
                    _ => OpResult::Error(ErrorCode::Ok),
                })
                .collect();
            return OpResult::Multi(results);
        }
        // Prep validated every op against the state this txn follows, so each one applies.
        // One can fail only while replaying txns already in the tree; then that op alone is
        // skipped (rolling the others back would undo creates that later txns rely on).
        let results = ops
            .iter()
            .map(|op| {
                self.apply_op(context, op, out)
                    .unwrap_or_else(OpResult::Error)
            })
            .collect();
        OpResult::Multi(results)
    }

    /// Ends a session: drops it from the session table, deletes the listed nodes, then any
    /// other ephemeral node it still owns (missing nodes are skipped).
    fn close_session<'t>(
        &mut self,
        context: Context,
        body: &'t CloseSessionTxn,
        out: &mut Triggers<'t>,
    ) -> OpResult<'t> {
        self.sessions.remove(&context.client_id);
        for path in &body.paths_to_delete {
            // NoNode here means the node is already gone (a replay): nothing to do.
            let _ = self.delete(context, path, out);
        }
        if let Some(entry) = self.ephemerals.get(&context.client_id) {
            let mut left: Vec<Arc<str>> = entry.paths.to_vec().into_iter().map(|p| p.0).collect();
            left.sort();
            for path in left {
                let mut triggers = Triggers::new();
                let _ = self.delete(context, &path, &mut triggers);
                out.extend(triggers.into_iter().map(|trigger| trigger.into_owned()));
            }
        }
        OpResult::SessionClosed
    }

    fn create<'t>(
        &mut self,
        context: Context,
        spec: &CreateSpec<'t>,
        out: &mut Triggers<'t>,
    ) -> Result<Stat, ErrorCode> {
        if spec.path == "/" {
            return Err(ErrorCode::NodeExists);
        }
        let (parent_path, name) = split_parent(spec.path).ok_or(ErrorCode::BadArguments)?;
        if name.len() > NAME_BYTES_MAX {
            return Err(ErrorCode::BadArguments);
        }
        let (child, stat) = Node::created(NewNode {
            path: spec.path,
            data: spec.data,
            acl: self.intern_acl(spec.acl),
            ephemeral_owner: spec.ephemeral_owner,
            zxid: context.zxid,
            time: context.time,
        });
        let child_digest = child.digest();
        // One walk: a failure leaves the contents as they were (at most a copy was unshared).
        let parent = self.find_mut(parent_path).ok_or(ErrorCode::NoNode)?;
        if parent.children_mut().insert_new(child).is_err() {
            return Err(ErrorCode::NodeExists);
        }
        let (old, new) = parent.update_stat(parent_path, |stat| {
            let cversion = match spec.parent_cversion {
                -1 => stat.cversion.wrapping_add(1),
                given => given,
            };
            if cversion > stat.cversion {
                stat.cversion = cversion;
                stat.pzxid = context.zxid;
            }
        });
        self.replace_digest(old, new);
        self.digest = self.digest.wrapping_add(u64::from(child_digest));
        self.node_count += 1;
        self.index_kind(spec.path, spec.ephemeral_owner);
        out.push(trigger(spec.path, WatchEvent::NodeCreated));
        out.push(trigger(parent_path, WatchEvent::NodeChildrenChanged));
        Ok(stat)
    }

    /// A create of a node that exists still moves the parent's cversion (and pzxid) forward
    /// to the txn's value, as ZooKeeper does for plain creates during replay.
    fn advance_parent_cversion(&mut self, context: Context, spec: &CreateSpec<'_>) {
        let Some((parent_path, _)) = split_parent(spec.path) else {
            return;
        };
        let Some(parent) = self.find(parent_path) else {
            return;
        };
        let current = parent.persisted_stat().cversion;
        let cversion = match spec.parent_cversion {
            -1 => current.wrapping_add(1),
            given => given,
        };
        if cversion <= current {
            return;
        }
        if let Some(parent) = self.find_mut(parent_path) {
            let (old, new) = parent.update_stat(parent_path, |stat| {
                stat.cversion = cversion;
                stat.pzxid = context.zxid;
            });
            self.replace_digest(old, new);
        }
    }

    /// Deletes `path` and anything below it (a txn only deletes leaves; a subtree can be
    /// found only when replaying, where the later txns recreate what belongs there). The
    /// parent's pzxid moves forward even when the child is already gone, as in ZooKeeper.
    fn delete<'t>(
        &mut self,
        context: Context,
        path: &'t str,
        out: &mut Triggers<'t>,
    ) -> Result<(), ErrorCode> {
        let (parent_path, name) = split_parent(path).ok_or(ErrorCode::BadArguments)?;
        let (removed, old, new) = {
            let parent = self.find_mut(parent_path).ok_or(ErrorCode::NoNode)?;
            let (old, new) = parent.update_stat(parent_path, |stat| {
                stat.pzxid = stat.pzxid.max(context.zxid)
            });
            let removed = parent.children_mut().remove(name.as_bytes());
            (removed, old, new)
        };
        self.replace_digest(old, new);
        let removed = removed.ok_or(ErrorCode::NoNode)?;
        self.forget_subtree(path, &removed);
        out.push(trigger(path, WatchEvent::NodeDeleted));
        out.push(trigger(parent_path, WatchEvent::NodeChildrenChanged));
        Ok(())
    }

    /// Takes a removed node and its descendants out of the digest, the count and the indexes
    /// (a leaf, the usual case, without allocating).
    fn forget_subtree(&mut self, path: &str, removed: &Node) {
        self.forget_node(path, removed);
        let mut stack = Vec::new();
        push_children(&mut stack, path, removed);
        while let Some((path, node)) = stack.pop() {
            self.forget_node(&path, &node);
            push_children(&mut stack, &path, &node);
        }
    }

    fn forget_node(&mut self, path: &str, node: &Node) {
        self.digest = self.digest.wrapping_sub(u64::from(node.digest()));
        self.node_count -= 1;
        self.unindex_kind(path, node.ephemeral_owner());
    }

    fn set_data<'t>(
        &mut self,
        context: Context,
        path: &'t str,
        data: Option<&[u8]>,
        version: i32,
        out: &mut Triggers<'t>,
    ) -> Result<Stat, ErrorCode> {
        let node = self.find_mut(path).ok_or(ErrorCode::NoNode)?;
        let (old, new, stat) = node.set_data(path, data, |stat| {
            stat.mtime = context.time;
            stat.mzxid = context.zxid;
            stat.version = version;
        });
        self.replace_digest(old, new);
        out.push(trigger(path, WatchEvent::NodeDataChanged));
        Ok(stat)
    }

    fn set_acl(&mut self, path: &str, acl: &[Acl], version: i32) -> Result<Stat, ErrorCode> {
        let acl = self.intern_acl(acl);
        let (stat, old, new) = {
            let node = self.find_mut(path).ok_or(ErrorCode::NoNode)?;
            node.set_acl(acl);
            let (old, new) = node.update_stat(path, |stat| stat.aversion = version);
            (node.stat(), old, new)
        };
        self.replace_digest(old, new);
        Ok(stat)
    }

    /// Writes a restored node at `path` (parent known to exist), keeping the children of a
    /// node that is already there. Returns the (old, new) digest of that node.
    pub(super) fn put_restored(
        &mut self,
        path: &str,
        stat: &StatPersisted,
        data: Option<&[u8]>,
        acl: AclRef,
    ) -> Result<(u32, u32), ErrorCode> {
        if path != "/" && split_parent(path).is_none() {
            return Err(ErrorCode::BadArguments);
        }
        let existing = self.find(path);
        let old_digest = existing.map_or(0, Node::digest);
        let children = existing
            .map(|node| node.children().clone())
            .unwrap_or_default();
        let node = Node::restored(path, stat, data, acl, children);
        let new_digest = node.digest();
        match split_parent(path) {
            None => self.root = node,
            Some((parent_path, _)) => {
                let parent = self.find_mut(parent_path).ok_or(ErrorCode::NoNode)?;
                parent.children_mut().insert(node);
            }
        }
        Ok((old_digest, new_digest))
    }

    pub(super) fn replace_digest(&mut self, old: u32, new: u32) {
        self.digest = self
            .digest
            .wrapping_sub(u64::from(old))
            .wrapping_add(u64::from(new));
    }

    pub(super) fn index_kind(&mut self, path: &str, ephemeral_owner: i64) {
        if ephemeral_owner == 0 {
            return;
        }
        let entry = PathEntry(Arc::from(path));
        match NodeKind::from_ephemeral_owner(ephemeral_owner) {
            NodeKind::Persistent => {}
            NodeKind::Container => {
                self.containers.insert(entry);
            }
            NodeKind::Ttl { .. } => {
                self.ttls.insert(entry);
            }
            NodeKind::Ephemeral { owner } => {
                if let Some(owned) = self.ephemerals.get_mut(&owner) {
                    owned.paths.insert(entry);
                } else {
                    let mut paths = Trie::default();
                    paths.insert(entry);
                    self.ephemerals.insert(OwnerEntry { owner, paths });
                }
            }
        }
    }

    pub(super) fn unindex_kind(&mut self, path: &str, ephemeral_owner: i64) {
        match NodeKind::from_ephemeral_owner(ephemeral_owner) {
            NodeKind::Persistent => {}
            NodeKind::Container => {
                self.containers.remove(path);
            }
            NodeKind::Ttl { .. } => {
                self.ttls.remove(path);
            }
            NodeKind::Ephemeral { owner } => {
                let now_empty = match self.ephemerals.get_mut(&owner) {
                    Some(owned) => {
                        owned.paths.remove(path);
                        owned.paths.is_empty()
                    }
                    None => false,
                };
                if now_empty {
                    self.ephemerals.remove(&owner);
                }
            }
        }
    }
}

/// Adds the children of `node` (at `path`) to `stack` with their paths.
fn push_children(stack: &mut Vec<(String, Node)>, path: &str, node: &Node) {
    node.children().for_each(|child| {
        let name = String::from_utf8_lossy(child.name());
        stack.push((format!("{path}/{name}"), child.clone()));
    });
}

fn trigger(path: &str, event: WatchEvent) -> WatchTrigger<'_> {
    WatchTrigger {
        path: Cow::Borrowed(path),
        event,
    }
}

fn error_code(err: i32) -> ErrorCode {
    ErrorCode::from_i32(err).unwrap_or(ErrorCode::SystemError)
}

fn first_error(result: &OpResult) -> ErrorCode {
    match result {
        OpResult::Error(code) => *code,
        OpResult::Multi(results) => results
            .iter()
            .map(first_error)
            .find(|code| *code != ErrorCode::Ok)
            .unwrap_or(ErrorCode::Ok),
        _ => ErrorCode::Ok,
    }
}

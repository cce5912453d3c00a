//! A reference model of the znode tree (a sorted map from full path to node, written for
//! clarity, not speed) and a prep-like txn generator, shared by the tree's property tests.

#![allow(dead_code)]

use std::collections::BTreeMap;

use bytes::Bytes;
use zinc_protocol::txn::{
    CheckVersionTxn, CloseSessionTxn, CreateContainerTxn, CreateSessionTxn, CreateTtlTxn,
    CreateTxn, DeleteTxn, ErrorTxn, SetAclTxn, SetDataTxn, Txn, TxnHeader,
};
use zinc_protocol::{perms, Acl, ErrorCode, Id, Stat, StatPersisted, Zxid};
use zinc_storage::tree::{
    sequential_path, ApplyOutcome, NodeKind, OpResult, Tree, WatchEvent, WatchTrigger,
    CONTAINER_EPHEMERAL_OWNER,
};

pub const SESSIONS: [i64; 3] = [
    0x0100_0000_0000_0001,
    0x0100_0000_0000_0002,
    0x0200_0000_0000_0003,
];
const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug, PartialEq)]
pub struct ModelNode {
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub stat: StatPersisted,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub nodes: BTreeMap<String, ModelNode>,
    pub sessions: BTreeMap<i64, i32>,
    pub last_zxid: i64,
}

fn zero_node(acl: Vec<Acl>) -> ModelNode {
    ModelNode {
        data: Some(Vec::new()),
        acl,
        stat: StatPersisted::default(),
    }
}

/// (parent, name) of a well-formed non-root path.
pub fn parent_of(path: &str) -> Option<(String, String)> {
    if !path.starts_with('/') || path.len() < 2 || path.ends_with('/') || path.contains("//") {
        return None;
    }
    let slash = path.rfind('/')?;
    let parent = if slash == 0 {
        "/".to_owned()
    } else {
        path[..slash].to_owned()
    };
    Some((parent, path[slash + 1..].to_owned()))
}

fn is_below(path: &str, ancestor: &str) -> bool {
    if ancestor == "/" {
        return path != "/";
    }
    path.len() > ancestor.len() + 1
        && path.starts_with(ancestor)
        && path.as_bytes()[ancestor.len()] == b'/'
}

fn trigger(path: &str, event: WatchEvent) -> WatchTrigger<'static> {
    WatchTrigger {
        path: path.to_owned().into(),
        event,
    }
}

fn code(err: i32) -> ErrorCode {
    ErrorCode::from_i32(err).unwrap_or(ErrorCode::SystemError)
}

fn first_error(result: &OpResult) -> ErrorCode {
    match result {
        OpResult::Error(code) => *code,
        OpResult::Multi(all) => all
            .iter()
            .map(first_error)
            .find(|code| *code != ErrorCode::Ok)
            .unwrap_or(ErrorCode::Ok),
        _ => ErrorCode::Ok,
    }
}

impl Model {
    pub fn new() -> Model {
        let mut nodes = BTreeMap::new();
        for path in ["/", "/zookeeper", "/zookeeper/quota"] {
            nodes.insert(path.to_owned(), zero_node(Acl::open_unsafe()));
        }
        let mut config = zero_node(Acl::read_unsafe());
        config.stat.aversion = -1;
        nodes.insert("/zookeeper/config".to_owned(), config);
        Model {
            nodes,
            sessions: BTreeMap::new(),
            last_zxid: 0,
        }
    }

    pub fn children(&self, path: &str) -> Vec<String> {
        self.nodes
            .keys()
            .filter_map(|key| parent_of(key).filter(|(parent, _)| parent == path))
            .map(|(_, name)| name)
            .collect()
    }

    pub fn stat(&self, path: &str) -> Option<Stat> {
        let node = self.nodes.get(path)?;
        let children = self.children(path).len() as i32;
        let s = node.stat;
        Some(Stat {
            czxid: s.czxid,
            mzxid: s.mzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            cversion: s.cversion.wrapping_mul(2).wrapping_sub(children),
            aversion: s.aversion,
            ephemeral_owner: s.ephemeral_owner,
            data_length: node.data.as_ref().map_or(0, Vec::len) as i32,
            num_children: children,
            pzxid: s.pzxid,
        })
    }

    pub fn all_children_number(&self, path: &str) -> Option<u64> {
        self.nodes.get(path)?;
        Some(self.nodes.keys().filter(|key| is_below(key, path)).count() as u64)
    }

    pub fn ephemerals(&self, session: i64, prefix: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, node)| {
                NodeKind::from_ephemeral_owner(node.stat.ephemeral_owner)
                    == NodeKind::Ephemeral { owner: session }
            })
            .map(|(path, _)| path.clone())
            .filter(|path| prefix.is_empty() || prefix == "/" || path.starts_with(prefix))
            .collect()
    }

    pub fn deletion_candidates(&self, now_ms: i64) -> Vec<String> {
        let mut out = Vec::new();
        for (path, node) in &self.nodes {
            let childless = self.children(path).is_empty();
            match NodeKind::from_ephemeral_owner(node.stat.ephemeral_owner) {
                NodeKind::Container if node.stat.cversion > 0 && childless => {
                    out.push(path.clone())
                }
                NodeKind::Ttl { ttl_ms } if childless && now_ms - node.stat.mtime > ttl_ms => {
                    out.push(path.clone())
                }
                _ => {}
            }
        }
        out
    }

    /// The tree digest computed from scratch (ZooKeeper's per-node CRC-32, summed).
    pub fn digest(&self) -> i64 {
        let mut sum = 0u64;
        for (path, node) in &self.nodes {
            if path.starts_with("/zookeeper/") {
                continue;
            }
            let hashed = if path == "/" { "" } else { path.as_str() };
            let mut crc = crc32fast::Hasher::new();
            crc.update(hashed.as_bytes());
            if let Some(data) = &node.data {
                crc.update(data);
            }
            let s = node.stat;
            let mut bytes = Vec::with_capacity(60);
            for long in [s.czxid, s.mzxid, s.pzxid, s.ctime, s.mtime] {
                bytes.extend_from_slice(&long.to_be_bytes());
            }
            for int in [s.version, s.cversion, s.aversion] {
                bytes.extend_from_slice(&int.to_be_bytes());
            }
            bytes.extend_from_slice(&s.ephemeral_owner.to_be_bytes());
            crc.update(&bytes);
            sum = sum.wrapping_add(u64::from(crc.finalize()));
        }
        sum as i64
    }

    pub fn apply(&mut self, header: &TxnHeader, txn: &Txn) -> ApplyOutcome<'static> {
        let mut triggers = Vec::new();
        let result = match txn {
            Txn::Multi(ops) => self.multi(header, ops, &mut triggers),
            Txn::CreateSession(body) => {
                self.sessions.insert(header.client_id, body.time_out);
                OpResult::SessionCreated
            }
            Txn::CloseSession(body) => {
                self.sessions.remove(&header.client_id);
                for path in &body.paths_to_delete {
                    let _ = self.delete(header, path, &mut triggers);
                }
                for path in self.ephemerals(header.client_id, "/") {
                    let _ = self.delete(header, &path, &mut triggers);
                }
                OpResult::SessionClosed
            }
            op => self
                .op(header, op, &mut triggers)
                .unwrap_or_else(OpResult::Error),
        };
        self.last_zxid = self.last_zxid.max(header.zxid);
        ApplyOutcome {
            zxid: Zxid(header.zxid),
            err: first_error(&result),
            result,
            triggers: triggers.into(),
        }
    }

    fn multi(
        &mut self,
        header: &TxnHeader,
        ops: &[Txn],
        out: &mut Vec<WatchTrigger<'static>>,
    ) -> OpResult<'static> {
        if ops.iter().any(|op| matches!(op, Txn::Error(_))) {
            let mut failed = false;
            return OpResult::Multi(
                ops.iter()
                    .map(|op| match op {
                        Txn::Error(body) => {
                            failed = true;
                            OpResult::Error(code(body.err))
                        }
                        _ if failed => OpResult::Error(ErrorCode::RuntimeInconsistency),
                        _ => OpResult::Error(ErrorCode::Ok),
                    })
                    .collect(),
            );
        }
        let results = ops
            .iter()
            .map(|op| self.op(header, op, out).unwrap_or_else(OpResult::Error))
            .collect();
        OpResult::Multi(results)
    }

    fn op(
        &mut self,
        header: &TxnHeader,
        txn: &Txn,
        out: &mut Vec<WatchTrigger<'static>>,
    ) -> Result<OpResult<'static>, ErrorCode> {
        match txn {
            Txn::Create(body) | Txn::Create2(body) => {
                let owner = if body.ephemeral { header.client_id } else { 0 };
                let spec = (
                    &body.path,
                    &body.data,
                    &body.acl,
                    owner,
                    body.parent_cversion,
                );
                let result = self.create(header, spec, out);
                if matches!(txn, Txn::Create(_)) && result == Err(ErrorCode::NodeExists) {
                    self.bump_parent(header, &body.path, body.parent_cversion);
                }
                result
            }
            Txn::CreateContainer(body) => {
                let owner = CONTAINER_EPHEMERAL_OWNER;
                let spec = (
                    &body.path,
                    &body.data,
                    &body.acl,
                    owner,
                    body.parent_cversion,
                );
                self.create(header, spec, out)
            }
            Txn::CreateTtl(body) => {
                if body.ttl <= 0 || body.ttl > 0xff_ffff_ffff {
                    return Err(ErrorCode::BadArguments);
                }
                let owner = (0xff00_0000_0000_0000_u64 as i64) | body.ttl;
                let spec = (
                    &body.path,
                    &body.data,
                    &body.acl,
                    owner,
                    body.parent_cversion,
                );
                self.create(header, spec, out)
            }
            Txn::Delete(body) | Txn::DeleteContainer(body) => {
                self.delete(header, &body.path, out)?;
                Ok(OpResult::Deleted)
            }
            Txn::SetData(body) => {
                let node = self.nodes.get_mut(&body.path).ok_or(ErrorCode::NoNode)?;
                node.data = body.data.as_ref().map(|d| d.to_vec());
                node.stat.mtime = header.time;
                node.stat.mzxid = header.zxid;
                node.stat.version = body.version;
                out.push(trigger(&body.path, WatchEvent::NodeDataChanged));
                Ok(OpResult::DataSet {
                    stat: self.stat(&body.path).ok_or(ErrorCode::NoNode)?,
                })
            }
            Txn::SetAcl(body) => {
                let node = self.nodes.get_mut(&body.path).ok_or(ErrorCode::NoNode)?;
                node.acl = body.acl.clone();
                node.stat.aversion = body.version;
                Ok(OpResult::AclSet {
                    stat: self.stat(&body.path).ok_or(ErrorCode::NoNode)?,
                })
            }
            Txn::Check(_) => Ok(OpResult::Checked),
            Txn::Error(body) => Err(code(body.err)),
            _ => Err(ErrorCode::BadArguments),
        }
    }

    fn new_parent_cversion(&self, parent: &str, given: i32) -> i32 {
        match given {
            -1 => self.nodes[parent].stat.cversion.wrapping_add(1),
            other => other,
        }
    }

    fn bump_parent(&mut self, header: &TxnHeader, path: &str, given: i32) {
        let Some((parent, _)) = parent_of(path) else {
            return;
        };
        if !self.nodes.contains_key(&parent) {
            return;
        }
        let cversion = self.new_parent_cversion(&parent, given);
        let node = self.nodes.get_mut(&parent).expect("checked above");
        if cversion > node.stat.cversion {
            node.stat.cversion = cversion;
            node.stat.pzxid = header.zxid;
        }
    }

    #[allow(clippy::type_complexity)]
    fn create(
        &mut self,
        header: &TxnHeader,
        (path, data, acl, owner, given): (&String, &Option<Bytes>, &Vec<Acl>, i64, i32),
        out: &mut Vec<WatchTrigger<'static>>,
    ) -> Result<OpResult<'static>, ErrorCode> {
        if path == "/" {
            return Err(ErrorCode::NodeExists);
        }
        let (parent, _) = parent_of(path).ok_or(ErrorCode::BadArguments)?;
        if !self.nodes.contains_key(&parent) {
            return Err(ErrorCode::NoNode);
        }
        if self.nodes.contains_key(path) {
            return Err(ErrorCode::NodeExists);
        }
        self.bump_parent(header, path, given);
        let stat = StatPersisted {
            czxid: header.zxid,
            mzxid: header.zxid,
            pzxid: header.zxid,
            ctime: header.time,
            mtime: header.time,
            ephemeral_owner: owner,
            ..StatPersisted::default()
        };
        let node = ModelNode {
            data: data.as_ref().map(|d| d.to_vec()),
            acl: acl.clone(),
            stat,
        };
        self.nodes.insert(path.clone(), node);
        out.push(trigger(path, WatchEvent::NodeCreated));
        out.push(trigger(&parent, WatchEvent::NodeChildrenChanged));
        Ok(OpResult::Created {
            path: path.clone().into(),
            stat: self.stat(path).ok_or(ErrorCode::NoNode)?,
        })
    }

    fn delete(
        &mut self,
        header: &TxnHeader,
        path: &str,
        out: &mut Vec<WatchTrigger<'static>>,
    ) -> Result<(), ErrorCode> {
        let (parent, _) = parent_of(path).ok_or(ErrorCode::BadArguments)?;
        let parent_node = self.nodes.get_mut(&parent).ok_or(ErrorCode::NoNode)?;
        parent_node.stat.pzxid = parent_node.stat.pzxid.max(header.zxid);
        self.nodes.remove(path).ok_or(ErrorCode::NoNode)?;
        self.nodes.retain(|key, _| !is_below(key, path));
        out.push(trigger(path, WatchEvent::NodeDeleted));
        out.push(trigger(&parent, WatchEvent::NodeChildrenChanged));
        Ok(())
    }
}

/// Asserts that every read of `tree` agrees with `model`.
pub fn assert_same_reads(tree: &Tree, model: &Model, extra_paths: &[String]) {
    let mut paths: Vec<String> = model.nodes.keys().cloned().collect();
    paths.extend(extra_paths.iter().cloned());
    for path in &paths {
        let node = model.nodes.get(path);
        assert_eq!(tree.stat(path), model.stat(path), "stat {path}");
        let expected_data = node.map(|n| (n.data.clone().map(Bytes::from), model.stat(path)));
        let got_data = tree.get_data(path).map(|(data, stat)| (data, Some(stat)));
        assert_eq!(got_data, expected_data, "data {path}");
        assert_eq!(
            tree.persisted_stat(path),
            node.map(|n| n.stat),
            "persisted stat {path}"
        );
        let children = tree.children(path).map(|mut names| {
            names.sort();
            names
        });
        assert_eq!(
            children,
            node.map(|_| model.children(path)),
            "children {path}"
        );
        assert_eq!(
            tree.acl(path).map(|(acl, _)| acl),
            node.map(|n| n.acl.clone()),
            "acl {path}"
        );
        assert_eq!(
            tree.all_children_number(path),
            model.all_children_number(path),
            "all children {path}"
        );
    }
    for session in SESSIONS {
        for prefix in ["/", "/a", "/b/"] {
            let mut got = tree.ephemerals(session, prefix);
            got.sort();
            assert_eq!(
                got,
                model.ephemerals(session, prefix),
                "ephemerals {session}"
            );
        }
        assert_eq!(
            tree.session_timeout_ms(session),
            model.sessions.get(&session).copied()
        );
    }
    for now_ms in [0, 1_000, 5_000, 1_000_000] {
        let mut got = tree.deletion_candidates(now_ms);
        got.sort();
        assert_eq!(
            got,
            model.deletion_candidates(now_ms),
            "candidates at {now_ms}"
        );
    }
    assert_eq!(tree.node_count(), model.nodes.len() as u64, "node count");
    assert_eq!(tree.digest(), model.digest(), "digest");
    assert_eq!(tree.last_zxid(), Zxid(model.last_zxid), "last zxid");
}

/// Everything observable about a tree, for comparing two trees.
pub type NodeDump = (String, StatPersisted, Option<Vec<u8>>, Vec<Acl>);

pub fn dump(tree: &Tree) -> (Vec<NodeDump>, Vec<(i64, i32)>) {
    let mut nodes = Vec::new();
    tree.for_each_node(|path, node| {
        let data = node.data().map(<[u8]>::to_vec);
        nodes.push((
            path.to_owned(),
            node.persisted_stat(),
            data,
            node.acl().to_vec(),
        ));
    });
    nodes.sort_by(|a, b| a.0.cmp(&b.0));
    let mut sessions = tree.sessions();
    sessions.sort();
    (nodes, sessions)
}

/// One generated step: an op kind and selectors the generator turns into a txn.
#[derive(Debug, Clone)]
pub struct Step {
    pub kind: u8,
    pub target: u32,
    pub value: u32,
    pub session: u8,
    pub subs: Vec<(u8, u32, u32)>,
}

pub const STEP_KINDS: u8 = 12;
pub const SUB_KINDS: u8 = 8;

fn acl_choice(value: u32) -> Vec<Acl> {
    match value % 3 {
        0 => Acl::open_unsafe(),
        1 => Acl::read_unsafe(),
        _ => vec![Acl {
            perms: perms::READ | perms::WRITE,
            id: Id::new("digest", "user:hash"),
        }],
    }
}

fn data_choice(value: u32) -> Option<Bytes> {
    match value % 5 {
        0 => None,
        1 => Some(Bytes::new()),
        n => Some(Bytes::from(vec![b'a' + n as u8; (value % 13) as usize])),
    }
}

/// A path: an existing node (even `target`) or one from a small fixed universe of paths.
pub fn pick_path(model: &Model, target: u32) -> String {
    if target.is_multiple_of(2) && !model.nodes.is_empty() {
        let at = (target / 2) as usize % model.nodes.len();
        return model.nodes.keys().nth(at).cloned().unwrap_or_default();
    }
    let mut rest = target / 2;
    let depth = 1 + rest % 3;
    rest /= 3;
    let mut path = String::new();
    for _ in 0..depth {
        path.push('/');
        path.push_str(NAMES[(rest % 3) as usize]);
        rest /= 3;
    }
    path
}

/// Every path of the fixed universe (for reads of nodes that may not exist).
pub fn universe() -> Vec<String> {
    (0..3u32.pow(4) * 2)
        .filter(|t| t % 2 == 1)
        .map(|t| pick_path(&Model::new(), t))
        .collect()
}

/// The txn a leader's prep stage would produce for the request the step describes against
/// `model`: a valid txn, or an `Error` txn when the request must fail. With `raw`, the txn is
/// built without any checks (arbitrary versions, missing parents, non-empty deletes).
pub fn prep(model: &Model, step: &Step, raw: bool) -> (i64, Txn) {
    let session = SESSIONS[step.session as usize % SESSIONS.len()];
    let txn = match step.kind {
        10 => Txn::CreateSession(CreateSessionTxn {
            time_out: 1000 * (1 + (step.value % 30) as i32),
        }),
        11 => {
            // Prep lists every ephemeral node of the session (replay relies on the full list).
            let mut paths = model.ephemerals(session, "/");
            if raw && step.value.is_multiple_of(3) {
                paths.truncate(paths.len() / 2);
            }
            Txn::CloseSession(CloseSessionTxn {
                paths_to_delete: paths,
            })
        }
        9 => {
            let mut scratch = model.clone();
            let mut ops = Vec::new();
            let mut failed = false;
            for &(kind, target, value) in &step.subs {
                if failed {
                    ops.push(Txn::Error(ErrorTxn { err: -2 }));
                    continue;
                }
                let sub = Step {
                    kind,
                    target,
                    value,
                    session: step.session,
                    subs: Vec::new(),
                };
                let op = single(&scratch, &sub, session, raw);
                let header = header_for(session, scratch.last_zxid + 1);
                if let Txn::Error(_) = op {
                    failed = true;
                } else if !raw && scratch.apply(&header, &op).err != ErrorCode::Ok {
                    failed = true;
                }
                ops.push(op);
            }
            Txn::Multi(ops)
        }
        _ => single(model, step, session, raw),
    };
    (session, txn)
}

pub fn header_for(session: i64, zxid: i64) -> TxnHeader {
    TxnHeader {
        client_id: session,
        cxid: 1,
        zxid,
        time: 1000 + 10 * zxid,
        op_type: 0,
    }
}

fn error(code: ErrorCode) -> Txn {
    Txn::Error(ErrorTxn { err: code.as_i32() })
}

/// One non-multi op (kinds 0..=8).
fn single(model: &Model, step: &Step, session: i64, raw: bool) -> Txn {
    let path = pick_path(model, step.target);
    let node = model.nodes.get(&path);
    match step.kind % 9 {
        kind @ 0..=3 => create(model, step, session, raw, &path, kind),
        4 if raw || (node.is_some() && model.children(&path).is_empty() && path != "/") => {
            Txn::Delete(DeleteTxn { path })
        }
        4 => error(if node.is_none() {
            ErrorCode::NoNode
        } else {
            ErrorCode::NotEmpty
        }),
        5 => match node {
            Some(node) if !raw => Txn::SetData(SetDataTxn {
                version: node.stat.version + 1,
                path,
                data: data_choice(step.value),
            }),
            None if !raw => error(ErrorCode::NoNode),
            _ => Txn::SetData(SetDataTxn {
                path,
                data: data_choice(step.value),
                version: (step.value % 4) as i32,
            }),
        },
        6 => match node {
            Some(node) if !raw => Txn::SetAcl(SetAclTxn {
                version: node.stat.aversion + 1,
                path,
                acl: acl_choice(step.value),
            }),
            None if !raw => error(ErrorCode::NoNode),
            _ => Txn::SetAcl(SetAclTxn {
                path,
                acl: acl_choice(step.value),
                version: (step.value % 4) as i32,
            }),
        },
        7 => match node {
            Some(node) if raw || !step.value.is_multiple_of(4) => Txn::Check(CheckVersionTxn {
                path,
                version: node.stat.version,
            }),
            Some(_) => error(ErrorCode::BadVersion),
            None => error(ErrorCode::NoNode),
        },
        _ => {
            let container = model
                .deletion_candidates(model.last_zxid * 10 + 1000)
                .into_iter()
                .nth(step.value as usize % 4);
            match container {
                Some(path) => Txn::DeleteContainer(DeleteTxn { path }),
                None if raw => Txn::DeleteContainer(DeleteTxn { path }),
                None => error(ErrorCode::NoNode),
            }
        }
    }
}

/// Create kinds: 0 persistent (or sequential), 1 ephemeral, 2 container, 3 TTL.
fn create(model: &Model, step: &Step, session: i64, raw: bool, path: &str, kind: u8) -> Txn {
    let data = data_choice(step.value);
    let acl = acl_choice(step.value / 7);
    // Mostly under an existing node, so that creates succeed and trees grow deep.
    let under_existing;
    let path = if step.target % 4 < 3 {
        let parent = pick_path(model, step.target & !1);
        let name = NAMES[(step.value / 3 % 3) as usize];
        under_existing = if parent == "/" {
            format!("/{name}")
        } else {
            format!("{parent}/{name}")
        };
        under_existing.as_str()
    } else {
        path
    };
    let sequential = step.value % 4 == 1;
    let (parent, path) = if sequential {
        let stored = model.nodes.get(path).map_or(0, |n| n.stat.cversion);
        let prefix = if path == "/" {
            "/s-".to_owned()
        } else {
            format!("{path}/s-")
        };
        (path.to_owned(), sequential_path(&prefix, stored))
    } else {
        match parent_of(path) {
            Some((parent, _)) => (parent, path.to_owned()),
            None => return error(ErrorCode::BadArguments),
        }
    };
    let parent_cversion = if raw {
        [-1, 0, 1, 5][(step.value % 4) as usize]
    } else {
        let Some(parent_node) = model.nodes.get(&parent) else {
            return error(ErrorCode::NoNode);
        };
        let owner = NodeKind::from_ephemeral_owner(parent_node.stat.ephemeral_owner);
        if matches!(owner, NodeKind::Ephemeral { .. }) {
            return error(ErrorCode::NoChildrenForEphemerals);
        }
        if model.nodes.contains_key(&path) {
            return error(ErrorCode::NodeExists);
        }
        if kind == 1 && !model.sessions.contains_key(&session) {
            return error(ErrorCode::SessionExpired);
        }
        parent_node.stat.cversion + 1
    };
    match kind {
        0 | 1 => {
            let body = CreateTxn {
                path,
                data,
                acl,
                ephemeral: kind == 1,
                parent_cversion,
            };
            if step.value.is_multiple_of(2) {
                Txn::Create(body)
            } else {
                Txn::Create2(body)
            }
        }
        2 => Txn::CreateContainer(CreateContainerTxn {
            path,
            data,
            acl,
            parent_cversion,
        }),
        _ => Txn::CreateTtl(CreateTtlTxn {
            path,
            data,
            acl,
            parent_cversion,
            ttl: [1, 100, 2000, 0][(step.value % if raw { 4 } else { 3 }) as usize],
        }),
    }
}

//! Prep on the Zab core: a write request becomes a txn, checked against the newest state (paths,
//! versions, ACLs, sequential names), is given the next zxid, and is applied to the core's tree
//! at once so the next request sees it. The applied tree is published to the shards only after
//! the batch is durable. Failed requests become error txns, as in ZooKeeper, so every reply
//! carries the zxid of its place in the order.

use zinc_protocol::path::validate_path;
use zinc_protocol::records::{
    CheckVersionRequest, Create2Response, CreateMode, CreateRequest, CreateResponse,
    CreateTtlRequest, DeleteRequest, EventType, MultiOp, MultiResponse, OpResult, Request,
    Response, SetAclRequest, SetAclResponse, SetDataRequest, SetDataResponse, SyncResponse,
};
use zinc_protocol::txn::{
    CheckVersionTxn, CloseSessionTxn, CreateContainerTxn, CreateSessionTxn, CreateTtlTxn,
    CreateTxn, DeleteTxn, ErrorTxn, SetAclTxn, SetDataTxn, Txn, TxnEntry, TxnHeader,
};
use zinc_protocol::{perms, ErrorCode, Id, SessionId, Stat};
use zinc_storage::tree::{ApplyOutcome, OpResult as TreeResult, Tree};

use crate::acl;
use crate::exec::Trigger;
use crate::shell::messages::{CoreReply, WriteRequest};

/// Largest TTL ZooKeeper accepts (40 bits of milliseconds).
pub const TTL_MS_MAX: i64 = (1 << 40) - 1;

/// Paths that exist from the start and cannot be deleted.
const SPECIAL_PATHS: &[&str] = &["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"];

/// A prepared and applied request: its reply and its effects.
#[derive(Debug)]
pub struct Prepared {
    pub reply: CoreReply,
    pub triggers: Vec<Trigger>,
    /// Whether the tree changed (a root must be published).
    pub changed: bool,
    /// A session this request ended (closeSession).
    pub ended_session: Option<SessionId>,
    /// The log entry to make durable before the reply is released.
    pub entry: Option<TxnEntry>,
}

/// The core's state for prep: the newest tree and the zxid counter.
pub struct Preparer {
    tree: Tree,
    last_zxid: i64,
    /// The zxid the next txn gets when it is not `last_zxid + 1` (an ensemble leader's first
    /// txn of a new epoch).
    next_zxid: Option<i64>,
    extended_types: bool,
}

impl Preparer {
    pub fn new(tree: Tree, extended_types: bool) -> Self {
        let last_zxid = tree.last_zxid().0;
        Preparer {
            tree,
            last_zxid,
            next_zxid: None,
            extended_types,
        }
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// The zxid the next txn gets (an ensemble's leader preps each request with the zxid its
    /// Zab core will assign). `last_zxid` stays that of the last txn made, so replies that make
    /// no txn (sync, errors before prep) never carry a zxid that does not exist.
    pub fn set_next_zxid(&mut self, zxid: i64) {
        self.next_zxid = Some(zxid);
    }

    fn header(&mut self, session: SessionId, xid: i32, now_ms: i64, txn: &Txn) -> TxnHeader {
        self.last_zxid = self.next_zxid.take().unwrap_or(self.last_zxid + 1);
        TxnHeader {
            client_id: session.0,
            cxid: xid,
            zxid: self.last_zxid,
            time: now_ms,
            op_type: txn.op().as_i32(),
        }
    }

    /// Assigns a zxid, applies, and returns the entry with what `answer` makes of the tree's
    /// outcome (which borrows the txn's paths).
    fn commit<R>(
        &mut self,
        session: SessionId,
        xid: i32,
        now_ms: i64,
        txn: Txn,
        answer: impl FnOnce(&ApplyOutcome<'_>) -> R,
    ) -> (TxnEntry, R) {
        let header = self.header(session, xid, now_ms, &txn);
        let answered = answer(&self.tree.apply(&header, &txn));
        let entry = TxnEntry {
            header,
            txn,
            digest: None,
        };
        (entry, answered)
    }

    pub fn create_session(&mut self, session: SessionId, timeout_ms: u32, now_ms: i64) -> Prepared {
        let txn = Txn::CreateSession(CreateSessionTxn {
            time_out: timeout_ms as i32,
        });
        let (entry, triggers) = self.commit(session, 0, now_ms, txn, triggers);
        Prepared {
            reply: CoreReply::Reply {
                session,
                xid: 0,
                zxid: entry.header.zxid,
                err: ErrorCode::Ok,
                response: None,
            },
            triggers,
            changed: true,
            ended_session: None,
            entry: Some(entry),
        }
    }

    /// Ends a session (expired or closed): its ephemeral nodes are listed in the txn.
    pub fn close_session(&mut self, session: SessionId, now_ms: i64) -> Prepared {
        self.close_session_for(session, 0, now_ms)
    }

    fn close_session_for(&mut self, session: SessionId, xid: i32, now_ms: i64) -> Prepared {
        let mut paths_to_delete = self.tree.ephemerals(session.0, "/");
        paths_to_delete.sort();
        let txn = Txn::CloseSession(CloseSessionTxn { paths_to_delete });
        let (entry, triggers) = self.commit(session, xid, now_ms, txn, triggers);
        Prepared {
            reply: CoreReply::Reply {
                session,
                xid,
                zxid: entry.header.zxid,
                err: ErrorCode::Ok,
                response: None,
            },
            triggers,
            changed: true,
            ended_session: Some(session),
            entry: Some(entry),
        }
    }

    /// Removes a container or expired TTL node found by the reaper, if it still qualifies.
    pub fn reap(&mut self, path: &str, now_ms: i64) -> Option<Prepared> {
        let stat = self.tree.stat(path)?;
        if stat.num_children != 0 {
            return None;
        }
        let txn = Txn::DeleteContainer(DeleteTxn {
            path: path.to_owned(),
        });
        let (entry, triggers) = self.commit(SessionId(0), 0, now_ms, txn, triggers);
        Some(Prepared {
            reply: CoreReply::Reply {
                session: SessionId(0),
                xid: 0,
                zxid: entry.header.zxid,
                err: ErrorCode::Ok,
                response: None,
            },
            triggers,
            changed: true,
            ended_session: None,
            entry: Some(entry),
        })
    }

    /// Preps, applies and answers one write request.
    pub fn prepare_and_apply(&mut self, write: &WriteRequest, now_ms: i64) -> Prepared {
        let session = write.session;
        let reply = |zxid: i64, err: ErrorCode, response: Option<Response>| CoreReply::Reply {
            session,
            xid: write.xid,
            zxid,
            err,
            response,
        };
        match &write.request {
            Request::Sync(sync) => {
                let response = Response::Sync(SyncResponse {
                    path: sync.path.clone(),
                });
                return Prepared {
                    reply: reply(self.last_zxid, ErrorCode::Ok, Some(response)),
                    triggers: Vec::new(),
                    changed: false,
                    ended_session: None,
                    entry: None,
                };
            }
            Request::CloseSession => return self.close_session_for(session, write.xid, now_ms),
            _ => {}
        }
        let txn = match self.prep(&write.request, session, &write.auth) {
            Ok(txn) => txn,
            Err(err) => Txn::Error(ErrorTxn { err: err.as_i32() }),
        };
        let (entry, ((err, response), triggers)) =
            self.commit(session, write.xid, now_ms, txn, |outcome| {
                (response_for(&write.request, outcome), triggers(outcome))
            });
        Prepared {
            reply: reply(entry.header.zxid, err, response),
            triggers,
            changed: true,
            ended_session: None,
            entry: Some(entry),
        }
    }

    /// Checks a write against the newest state and builds its txn.
    fn prep(&self, request: &Request, session: SessionId, auth: &[Id]) -> Result<Txn, ErrorCode> {
        match request {
            Request::Create(r) => self.prep_create(r, None, session, auth, false),
            Request::Create2(r) => self.prep_create(r, None, session, auth, true),
            Request::CreateContainer(r) => self.prep_create(r, None, session, auth, true),
            Request::CreateTtl(r) => self.prep_create_ttl(r, session, auth),
            Request::Delete(r) => self.prep_delete(r, auth),
            Request::SetData(r) => self.prep_set_data(r, auth),
            Request::SetAcl(r) => self.prep_set_acl(r, auth),
            Request::Check(r) => self.prep_check(r, auth),
            Request::Multi(multi) => Ok(self.prep_multi(&multi.ops, session, auth)),
            _ => Err(ErrorCode::Unimplemented),
        }
    }

    /// One op of a multi; read ops are not allowed in a write multi.
    fn prep_op(&self, op: &MultiOp, session: SessionId, auth: &[Id]) -> Result<Txn, ErrorCode> {
        match op {
            MultiOp::Create(r) => self.prep_create(r, None, session, auth, false),
            MultiOp::Create2(r) => self.prep_create(r, None, session, auth, true),
            MultiOp::CreateContainer(r) => self.prep_create(r, None, session, auth, true),
            MultiOp::CreateTtl(r) => self.prep_create_ttl(r, session, auth),
            MultiOp::Delete(r) => self.prep_delete(r, auth),
            MultiOp::SetData(r) => self.prep_set_data(r, auth),
            MultiOp::Check(r) => self.prep_check(r, auth),
            MultiOp::GetChildren(_) | MultiOp::GetData(_) => Err(ErrorCode::BadArguments),
        }
    }

    fn prep_create_ttl(
        &self,
        r: &CreateTtlRequest,
        session: SessionId,
        auth: &[Id],
    ) -> Result<Txn, ErrorCode> {
        let create = CreateRequest {
            path: r.path.clone(),
            data: r.data.clone(),
            acl: r.acl.clone(),
            flags: r.flags,
        };
        self.prep_create(&create, Some(r.ttl), session, auth, true)
    }

    fn require(&self, path: &str, perm: i32, auth: &[Id]) -> Result<Stat, ErrorCode> {
        let node = self.tree.node(path).ok_or(ErrorCode::NoNode)?;
        if !acl::allows(node.acl(), perm, auth) {
            return Err(ErrorCode::NoAuth);
        }
        Ok(node.stat())
    }

    fn prep_create(
        &self,
        request: &CreateRequest,
        ttl: Option<i64>,
        session: SessionId,
        auth: &[Id],
        with_stat: bool,
    ) -> Result<Txn, ErrorCode> {
        let mode = CreateMode::from_flags(request.flags).ok_or(ErrorCode::BadArguments)?;
        if (mode.is_ttl() || mode.is_container()) && !self.extended_types {
            return Err(ErrorCode::Unimplemented);
        }
        match (mode.is_ttl(), ttl) {
            (true, Some(ttl)) if ttl <= 0 || ttl > TTL_MS_MAX => {
                return Err(ErrorCode::BadArguments)
            }
            (true, None) => return Err(ErrorCode::BadArguments),
            (false, Some(ttl)) if ttl >= 0 => return Err(ErrorCode::BadArguments),
            _ => {}
        }
        validate_path(&request.path, mode.is_sequential()).map_err(|_| ErrorCode::BadArguments)?;
        let parent = parent_of(&request.path).ok_or(ErrorCode::BadArguments)?;
        let acl = acl::fixup(&request.acl, auth)?;
        let parent_stat = self.require(parent, perms::CREATE, auth)?;
        let mut path = request.path.clone();
        if mode.is_sequential() {
            path.push_str(&format!("{:010}", parent_stat.cversion));
        }
        validate_path(&path, false).map_err(|_| ErrorCode::BadArguments)?;
        if self.tree.stat(&path).is_some() {
            return Err(ErrorCode::NodeExists);
        }
        if is_normal_ephemeral(parent_stat.ephemeral_owner) {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let parent_cversion = parent_stat.cversion + 1;
        let data = request.data.clone();
        Ok(if mode.is_container() {
            Txn::CreateContainer(CreateContainerTxn {
                path,
                data,
                acl,
                parent_cversion,
            })
        } else if mode.is_ttl() {
            Txn::CreateTtl(CreateTtlTxn {
                path,
                data,
                acl,
                parent_cversion,
                ttl: ttl.unwrap_or_default(),
            })
        } else {
            let body = CreateTxn {
                path,
                data,
                acl,
                ephemeral: mode.is_ephemeral(),
                parent_cversion,
            };
            let _ = session;
            if with_stat {
                Txn::Create2(body)
            } else {
                Txn::Create(body)
            }
        })
    }

    fn prep_delete(&self, request: &DeleteRequest, auth: &[Id]) -> Result<Txn, ErrorCode> {
        let path = &request.path;
        validate_path(path, false).map_err(|_| ErrorCode::BadArguments)?;
        if SPECIAL_PATHS.contains(&path.as_str()) {
            return Err(ErrorCode::BadArguments);
        }
        let parent = parent_of(path).ok_or(ErrorCode::BadArguments)?;
        self.require(parent, perms::DELETE, auth)?;
        let stat = self.tree.stat(path).ok_or(ErrorCode::NoNode)?;
        check_version(stat.version, request.version)?;
        if stat.num_children > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        Ok(Txn::Delete(DeleteTxn { path: path.clone() }))
    }

    fn prep_set_data(&self, request: &SetDataRequest, auth: &[Id]) -> Result<Txn, ErrorCode> {
        validate_path(&request.path, false).map_err(|_| ErrorCode::BadArguments)?;
        let stat = self.require(&request.path, perms::WRITE, auth)?;
        let version = check_version(stat.version, request.version)?;
        Ok(Txn::SetData(SetDataTxn {
            path: request.path.clone(),
            data: request.data.clone(),
            version,
        }))
    }

    fn prep_set_acl(&self, request: &SetAclRequest, auth: &[Id]) -> Result<Txn, ErrorCode> {
        validate_path(&request.path, false).map_err(|_| ErrorCode::BadArguments)?;
        let acl = acl::fixup(&request.acl, auth)?;
        let stat = self.require(&request.path, perms::ADMIN, auth)?;
        let version = check_version(stat.aversion, request.version)?;
        Ok(Txn::SetAcl(SetAclTxn {
            path: request.path.clone(),
            acl,
            version,
        }))
    }

    fn prep_check(&self, request: &CheckVersionRequest, auth: &[Id]) -> Result<Txn, ErrorCode> {
        validate_path(&request.path, false).map_err(|_| ErrorCode::BadArguments)?;
        let stat = self.require(&request.path, perms::READ, auth)?;
        let version = check_version(stat.version, request.version)?;
        Ok(Txn::Check(CheckVersionTxn {
            path: request.path.clone(),
            version,
        }))
    }

    /// Preps each op against the state the earlier ops of the same multi leave. On the first
    /// failure every op becomes an error txn: earlier ones Ok, the failing one its code, later
    /// ones RuntimeInconsistency; the tree applies none of them.
    fn prep_multi(&self, ops: &[MultiOp], session: SessionId, auth: &[Id]) -> Txn {
        let mut scratch = self.tree.clone();
        let mut txns = Vec::with_capacity(ops.len());
        let mut failure: Option<(usize, ErrorCode)> = None;
        for (index, op) in ops.iter().enumerate() {
            let prepared = Preparer {
                tree: scratch.clone(),
                last_zxid: self.last_zxid,
                next_zxid: None,
                extended_types: self.extended_types,
            }
            .prep_op(op, session, auth);
            match prepared {
                Ok(txn) => {
                    let header = TxnHeader {
                        client_id: session.0,
                        zxid: self.last_zxid + 1,
                        op_type: txn.op().as_i32(),
                        ..TxnHeader::default()
                    };
                    let _ = scratch.apply(&header, &txn);
                    txns.push(txn);
                }
                Err(err) => {
                    failure = Some((index, err));
                    break;
                }
            }
        }
        let Some((failed_index, err)) = failure else {
            return Txn::Multi(txns);
        };
        let errors = (0..ops.len())
            .map(|index| {
                let code = match index.cmp(&failed_index) {
                    std::cmp::Ordering::Less => ErrorCode::Ok,
                    std::cmp::Ordering::Equal => err,
                    std::cmp::Ordering::Greater => ErrorCode::RuntimeInconsistency,
                };
                Txn::Error(ErrorTxn { err: code.as_i32() })
            })
            .collect();
        Txn::Multi(errors)
    }
}

/// ZooKeeper's version check: -1 matches anything; the result is the next version.
fn check_version(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    Ok(current.wrapping_add(1))
}

/// A real ephemeral owner (not 0, not a container or TTL marker).
fn is_normal_ephemeral(owner: i64) -> bool {
    owner != 0 && (owner as u64) >> 56 != 0xff && owner != i64::MIN
}

fn parent_of(path: &str) -> Option<&str> {
    match path.rfind('/')? {
        0 if path.len() > 1 => Some("/"),
        0 => None,
        index => Some(&path[..index]),
    }
}

pub(crate) fn triggers(outcome: &ApplyOutcome) -> Vec<Trigger> {
    outcome
        .triggers
        .iter()
        .filter_map(|trigger| {
            Some(Trigger {
                event_type: EventType::from_i32(trigger.event as i32)?,
                path: trigger.path.to_string(),
            })
        })
        .collect()
}

/// The reply for a write from the tree's outcome.
pub(crate) fn response_for(
    request: &Request,
    outcome: &ApplyOutcome,
) -> (ErrorCode, Option<Response>) {
    match (&outcome.result, request) {
        (TreeResult::Multi(results), Request::Multi(multi)) => {
            let results = results
                .iter()
                .zip(&multi.ops)
                .map(|(result, op)| op_result(result, op))
                .collect();
            (
                ErrorCode::Ok,
                Some(Response::Multi(MultiResponse { results })),
            )
        }
        (TreeResult::Error(err), _) => (*err, None),
        (TreeResult::Created { path, .. }, Request::Create(_)) => (
            ErrorCode::Ok,
            Some(Response::Create(CreateResponse {
                path: path.to_string(),
            })),
        ),
        (TreeResult::Created { path, stat }, _) => (
            ErrorCode::Ok,
            Some(Response::Create2(Create2Response {
                path: path.to_string(),
                stat: *stat,
            })),
        ),
        (TreeResult::DataSet { stat }, _) => (
            ErrorCode::Ok,
            Some(Response::SetData(SetDataResponse { stat: *stat })),
        ),
        (TreeResult::AclSet { stat }, _) => (
            ErrorCode::Ok,
            Some(Response::SetAcl(SetAclResponse { stat: *stat })),
        ),
        _ => (outcome.err, None),
    }
}

/// One op's result inside a multi reply; the request op decides create versus create2.
fn op_result(result: &TreeResult, op: &MultiOp) -> OpResult {
    match result {
        TreeResult::Created { path, .. } if matches!(op, MultiOp::Create(_)) => OpResult::Create {
            path: path.to_string(),
        },
        TreeResult::Created { path, stat } => OpResult::Create2 {
            path: path.to_string(),
            stat: *stat,
        },
        TreeResult::DataSet { stat } => OpResult::SetData { stat: *stat },
        TreeResult::Deleted => OpResult::Delete,
        TreeResult::Checked => OpResult::Check,
        TreeResult::Error(err) => OpResult::Error { err: err.as_i32() },
        _ => OpResult::Error {
            err: ErrorCode::RuntimeInconsistency.as_i32(),
        },
    }
}

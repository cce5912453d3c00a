//! Request execution, pure: which requests go through the Zab core, how a shard answers the
//! others from its tree root (reads, watches, whoAmI, ...), and authentication. The core's half,
//! turning writes into txns, is `prep`.

pub mod prep;

use zinc_protocol::path::validate_path;
use zinc_protocol::records::{
    AddWatchMode, AuthPacket, ClientInfo, ErrorResponse, EventType, ExistsRequest, GetAclResponse,
    GetAllChildrenNumberResponse, GetChildren2Response, GetChildrenResponse, GetDataResponse,
    GetEphemeralsResponse, KeeperState, MultiOp, MultiResponse, OpResult, Request, Response,
    SetSaslResponse, SetWatches2, WatcherEvent, WatcherType, WhoAmIResponse,
};
use zinc_protocol::{perms, Acl, ErrorCode, Id, SessionId};
use zinc_storage::tree::Tree;

use crate::acl;
use crate::watch::{WatchManager, WatchMode, WatchTableKind};

pub use prep::{Prepared, Preparer};

/// A watch event a committed txn caused: the kind and the path it fires on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub event_type: EventType,
    pub path: String,
}

impl Trigger {
    pub fn event(&self) -> WatcherEvent {
        WatcherEvent {
            event_type: self.event_type,
            state: KeeperState::SyncConnected,
            path: self.path.clone(),
        }
    }
}

/// What a shard knows about the session a request came from.
#[derive(Debug)]
pub struct SessionContext<'a> {
    pub session: SessionId,
    pub auth: &'a [Id],
    pub extended_types: bool,
}

/// How a shard answers a request it executes itself.
#[derive(Debug)]
pub enum LocalOutcome {
    Reply {
        err: ErrorCode,
        response: Option<Response>,
    },
    /// setWatches: events for what changed since the client's zxid, then an empty reply.
    SetWatches { events: Vec<WatcherEvent> },
}

impl LocalOutcome {
    fn ok(response: Response) -> Self {
        LocalOutcome::Reply {
            err: ErrorCode::Ok,
            response: Some(response),
        }
    }

    fn err(err: ErrorCode) -> Self {
        LocalOutcome::Reply {
            err,
            response: None,
        }
    }
}

/// Whether a request changes state or must be ordered by the Zab core.
pub fn goes_through_core(request: &Request) -> bool {
    matches!(
        request,
        Request::Create(_)
            | Request::Create2(_)
            | Request::CreateContainer(_)
            | Request::CreateTtl(_)
            | Request::Delete(_)
            | Request::SetData(_)
            | Request::SetAcl(_)
            | Request::Check(_)
            | Request::Multi(_)
            | Request::Sync(_)
            | Request::CloseSession
    )
}

/// Answers a request that does not go through the core, from `root`.
pub fn execute_local(
    root: &Tree,
    context: &SessionContext,
    request: &Request,
    watches: &mut WatchManager,
    last_zxid: i64,
) -> LocalOutcome {
    let result = match request {
        Request::Exists(r) => exists(root, context, r, watches),
        Request::GetData(r) => get_data(root, context, &r.path, r.watch, watches),
        Request::GetChildren(r) => children(root, context, &r.path, r.watch, watches)
            .map(|(children, _)| Response::GetChildren(GetChildrenResponse { children })),
        Request::GetChildren2(r) => {
            children(root, context, &r.path, r.watch, watches).map(|(children, stat)| {
                Response::GetChildren2(GetChildren2Response { children, stat })
            })
        }
        Request::GetAcl(r) => get_acl(root, context, &r.path),
        Request::GetAllChildrenNumber(r) => all_children_number(root, context, &r.path),
        Request::GetEphemerals(r) => Ok(ephemerals(root, context, &r.prefix_path)),
        Request::CheckWatches(r) => check_watches(context, &r.path, r.watcher_type, watches, false),
        Request::RemoveWatches(r) => check_watches(context, &r.path, r.watcher_type, watches, true),
        Request::AddWatch(r) => add_watch(context, &r.path, r.mode, watches),
        Request::WhoAmI => Ok(who_am_i(context)),
        Request::MultiRead(multi) => Ok(multi_read(root, context, &multi.ops, watches)),
        Request::Reconfig(_) => Err(ErrorCode::ReconfigDisabled),
        Request::SetWatches(r) => {
            let all = SetWatches2 {
                relative_zxid: r.relative_zxid,
                data_watches: r.data_watches.clone(),
                exist_watches: r.exist_watches.clone(),
                child_watches: r.child_watches.clone(),
                persistent_watches: Vec::new(),
                persistent_recursive_watches: Vec::new(),
            };
            return set_watches(root, context, &all, watches, last_zxid);
        }
        Request::SetWatches2(r) => return set_watches(root, context, r, watches, last_zxid),
        // Without SASL configured, ZooKeeper answers with an empty token and adds no identity.
        Request::Sasl(_) => Ok(Response::Sasl(SetSaslResponse::default())),
        _ => Err(ErrorCode::Unimplemented),
    };
    match result {
        Ok(response) => LocalOutcome::ok(response),
        Err(err) => LocalOutcome::err(err),
    }
}

fn checked_path(path: &str) -> Result<(), ErrorCode> {
    validate_path(path, false).map_err(|_| ErrorCode::BadArguments)
}

fn exists(
    root: &Tree,
    context: &SessionContext,
    request: &ExistsRequest,
    watches: &mut WatchManager,
) -> Result<Response, ErrorCode> {
    checked_path(&request.path)?;
    if request.watch {
        watches.add(WatchTableKind::Data, &request.path, context.session);
    }
    let stat = root.stat(&request.path).ok_or(ErrorCode::NoNode)?;
    Ok(Response::Exists(zinc_protocol::records::ExistsResponse {
        stat,
    }))
}

fn readable(root: &Tree, context: &SessionContext, path: &str) -> Result<(), ErrorCode> {
    let node = root.node(path).ok_or(ErrorCode::NoNode)?;
    if !acl::allows(node.acl(), perms::READ, context.auth) {
        return Err(ErrorCode::NoAuth);
    }
    Ok(())
}

fn get_data(
    root: &Tree,
    context: &SessionContext,
    path: &str,
    watch: bool,
    watches: &mut WatchManager,
) -> Result<Response, ErrorCode> {
    checked_path(path)?;
    readable(root, context, path)?;
    let (data, stat) = root.get_data(path).ok_or(ErrorCode::NoNode)?;
    if watch {
        watches.add(WatchTableKind::Data, path, context.session);
    }
    Ok(Response::GetData(GetDataResponse { data, stat }))
}

fn children(
    root: &Tree,
    context: &SessionContext,
    path: &str,
    watch: bool,
    watches: &mut WatchManager,
) -> Result<(Vec<String>, zinc_protocol::Stat), ErrorCode> {
    checked_path(path)?;
    readable(root, context, path)?;
    let (children, stat) = root.children_with_stat(path).ok_or(ErrorCode::NoNode)?;
    if watch {
        watches.add(WatchTableKind::Child, path, context.session);
    }
    Ok((children, stat))
}

fn get_acl(root: &Tree, context: &SessionContext, path: &str) -> Result<Response, ErrorCode> {
    checked_path(path)?;
    let (node_acl, stat) = root.acl(path).ok_or(ErrorCode::NoNode)?;
    if !acl::allows(&node_acl, perms::READ | perms::ADMIN, context.auth) {
        return Err(ErrorCode::NoAuth);
    }
    let acl = if acl::allows(&node_acl, perms::ADMIN, context.auth) {
        node_acl
    } else {
        // Without ADMIN, digest ids are shown without their password hash.
        node_acl.iter().map(mask_digest).collect()
    };
    Ok(Response::GetAcl(GetAclResponse { acl, stat }))
}

fn mask_digest(entry: &Acl) -> Acl {
    if entry.id.scheme != "digest" {
        return entry.clone();
    }
    let user = entry.id.id.split(':').next().unwrap_or_default();
    Acl {
        perms: entry.perms,
        id: Id::new("digest", &format!("{user}:x")),
    }
}

fn all_children_number(
    root: &Tree,
    context: &SessionContext,
    path: &str,
) -> Result<Response, ErrorCode> {
    checked_path(path)?;
    readable(root, context, path)?;
    let total = root.all_children_number(path).ok_or(ErrorCode::NoNode)?;
    let total_number = i32::try_from(total).unwrap_or(i32::MAX);
    Ok(Response::GetAllChildrenNumber(
        GetAllChildrenNumberResponse { total_number },
    ))
}

fn ephemerals(root: &Tree, context: &SessionContext, prefix: &str) -> Response {
    let mut ephemerals = root.ephemerals(context.session.0, prefix);
    ephemerals.sort();
    Response::GetEphemerals(GetEphemeralsResponse { ephemerals })
}

fn check_watches(
    context: &SessionContext,
    path: &str,
    watcher_type: i32,
    watches: &mut WatchManager,
    remove: bool,
) -> Result<Response, ErrorCode> {
    // As ZooKeeper: an unknown type is a request it could not unmarshal; a malformed path
    // holds no watch, so it is answered NoWatcher below.
    let watcher_type = WatcherType::from_i32(watcher_type).ok_or(ErrorCode::MarshallingError)?;
    let found = if remove {
        watches.remove(path, context.session, watcher_type)
    } else {
        watches.contains(path, context.session, watcher_type)
    };
    if !found {
        return Err(ErrorCode::NoWatcher);
    }
    Ok(Response::Empty)
}

fn add_watch(
    context: &SessionContext,
    path: &str,
    mode: i32,
    watches: &mut WatchManager,
) -> Result<Response, ErrorCode> {
    checked_path(path)?;
    let mode = match AddWatchMode::from_i32(mode) {
        Some(AddWatchMode::Persistent) => WatchMode::Persistent,
        Some(AddWatchMode::PersistentRecursive) => WatchMode::PersistentRecursive,
        None => return Err(ErrorCode::BadArguments),
    };
    watches.add_persistent(path, context.session, mode);
    Ok(Response::AddWatch(ErrorResponse { err: 0 }))
}

fn who_am_i(context: &SessionContext) -> Response {
    // As ZooKeeper lists them: authenticated identities first, the connection's address last.
    let (ip, authenticated): (Vec<&Id>, Vec<&Id>) =
        context.auth.iter().partition(|id| id.scheme == "ip");
    let client_info = authenticated
        .into_iter()
        .chain(ip)
        .map(|id| ClientInfo {
            auth_scheme: id.scheme.clone(),
            user: match id.scheme.as_str() {
                "digest" => id.id.split(':').next().unwrap_or_default().to_owned(),
                _ => id.id.clone(),
            },
        })
        .collect();
    Response::WhoAmI(WhoAmIResponse { client_info })
}

fn multi_read(
    root: &Tree,
    context: &SessionContext,
    ops: &[MultiOp],
    watches: &mut WatchManager,
) -> Response {
    let results = ops
        .iter()
        .map(|op| {
            let outcome = match op {
                MultiOp::GetData(r) => get_data(root, context, &r.path, false, watches),
                MultiOp::GetChildren(r) => children(root, context, &r.path, false, watches)
                    .map(|(children, _)| Response::GetChildren(GetChildrenResponse { children })),
                _ => Err(ErrorCode::BadArguments),
            };
            match outcome {
                Ok(Response::GetData(r)) => OpResult::GetData {
                    data: r.data,
                    stat: r.stat,
                },
                Ok(Response::GetChildren(r)) => OpResult::GetChildren {
                    children: r.children,
                },
                Ok(_) => OpResult::Error {
                    err: ErrorCode::BadArguments.as_i32(),
                },
                Err(err) => OpResult::Error { err: err.as_i32() },
            }
        })
        .collect();
    Response::Multi(MultiResponse { results })
}

/// Re-registers a reconnecting client's watches; fires those whose condition already changed
/// after `relative_zxid`, as ZooKeeper does.
fn set_watches(
    root: &Tree,
    context: &SessionContext,
    request: &SetWatches2,
    watches: &mut WatchManager,
    last_zxid: i64,
) -> LocalOutcome {
    let relative = request.relative_zxid;
    let mut events = Vec::new();
    let mut fire = |event_type: EventType, path: &str| {
        events.push(
            Trigger {
                event_type,
                path: path.to_owned(),
            }
            .event(),
        );
    };
    let session = context.session;
    for path in &request.data_watches {
        match root.stat(path) {
            None => fire(EventType::NodeDeleted, path),
            Some(stat) if stat.mzxid > relative => fire(EventType::NodeDataChanged, path),
            Some(_) => watches.add(WatchTableKind::Data, path, session),
        }
    }
    for path in &request.exist_watches {
        match root.stat(path) {
            Some(_) => fire(EventType::NodeCreated, path),
            None => watches.add(WatchTableKind::Data, path, session),
        }
    }
    for path in &request.child_watches {
        match root.stat(path) {
            None => fire(EventType::NodeDeleted, path),
            Some(stat) if stat.pzxid > relative => fire(EventType::NodeChildrenChanged, path),
            Some(_) => watches.add(WatchTableKind::Child, path, session),
        }
    }
    for path in &request.persistent_watches {
        watches.add_persistent(path, session, WatchMode::Persistent);
    }
    for path in &request.persistent_recursive_watches {
        watches.add_persistent(path, session, WatchMode::PersistentRecursive);
    }
    let _ = last_zxid;
    LocalOutcome::SetWatches { events }
}

/// The identities an auth packet adds, or `None` when authentication fails.
pub fn authenticate(packet: &AuthPacket, super_digest: Option<&str>) -> Option<Vec<Id>> {
    if packet.scheme != "digest" {
        return None;
    }
    let credentials = std::str::from_utf8(&packet.auth).ok()?;
    let digest = acl::digest_id(credentials)?;
    let mut ids = vec![Id::new("digest", &digest)];
    if super_digest == Some(digest.as_str()) {
        ids.push(acl::super_id());
    }
    Some(ids)
}

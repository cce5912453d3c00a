//! The Zab core executor in an ensemble: drives the sans-IO [`Zab`] core with peer links, the
//! log and a tick, and around it runs the role this server has.
//!
//! - Leader: the standalone [`Core`] preps requests (its shards' and those followers forward)
//!   against the newest state, each txn gets the zxid the Zab core will assign and is proposed;
//!   a batch's root, replies and watch triggers go to the shards once the Zab core commits the
//!   batch's last zxid (a quorum holds it durably).
//! - Follower or observer: writes, new sessions and session liveness are forwarded to the leader
//!   over the peer link; committed txns are applied to this server's tree, which is published
//!   to the shards with the replies to its own clients' requests. `sync` goes through the Zab
//!   core.
//! - Otherwise (electing, synchronizing) the server does not serve: client connections are
//!   closed, as ZooKeeper does, and clients move to a server that serves.
//!
//! The tree published to the shards only ever holds committed txns. The leader's prep tree runs
//! ahead of it; when leadership ends, the committed tree is rebuilt from the last published
//! root and the committed part of the pending batches, and the prep tree is dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write as _;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::future::poll_once;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use zinc_protocol::jute::{Reader, Record};
use zinc_protocol::peer::{PeerMessage, PeerPacket};
use zinc_protocol::records::{ClientFrame, Request, Response, SyncResponse};
use zinc_protocol::txn::{Txn, TxnEntry};
use zinc_protocol::{Epoch, ErrorCode, Id, ServerId, SessionId, Zxid};
use zinc_storage::tree::Tree;
use zinc_storage::wal::{DmaDevice, Wal};

use crate::config::{Config, PeerSpec};
use crate::exec::prep::{response_for, triggers};
use crate::exec::{Preparer, Trigger};
use crate::session::{session_password, SessionIdAllocator};
use crate::shell::core::{fatal, now_ms, shard_messages, Batch, Core, PendingPublish, Sink};
use crate::shell::messages::{
    ConnToken, CoreReply, Published, ShardId, ToCore, ToShard, WriteRequest,
};
use crate::shell::peers::{Delivery, PeerEvent, Peers};
use crate::shell::shard::CrossShard;
use crate::shell::snapshots::Snapshots;
use crate::shell::stats::{Mode, ServerStats};
use crate::zab::{self, Command, LogEntry, Persisted, Role, Zab};

/// Zab ticks per `tickTime`: elections and failure detection work in tenths of a tick, and
/// `initLimit`/`syncLimit` are scaled to match.
const ZAB_TICKS_PER_TICK: u64 = 10;

/// Events handled before the commands they caused are carried out.
const EVENTS_PER_TURN_MAX: usize = 4096;

/// Zxids an epoch must have left for the leader to expire sessions and reap nodes in a turn.
const EPOCH_ROOM_FOR_EXPIRY: u32 = 1 << 20;

/// The shard index given to requests a follower forwarded: their replies go out there.
const REMOTE_SHARD: ShardId = ShardId::MAX;

/// Files in the data directory holding the Zab epochs, as ZooKeeper names them.
const ACCEPTED_EPOCH_FILE: &str = "acceptedEpoch";
const CURRENT_EPOCH_FILE: &str = "currentEpoch";

/// Everything the loop reacts to.
pub(crate) enum Event {
    Shard(ToCore),
    Peer(PeerEvent),
    Tick,
    /// The log is durable through this zxid.
    Persisted(Zxid),
}

/// What a follower sends its leader besides Zab's own packets (in a REQUEST packet), and the
/// leader's answer for a request it could not take.
enum Forwarded {
    Write {
        session: SessionId,
        auth: Vec<Id>,
        frame: ClientFrame,
    },
    CreateSession {
        session: SessionId,
        timeout_ms: u32,
    },
    Touch(Vec<SessionId>),
    /// Leader -> follower: the request failed before it was ordered (the session is gone).
    Failed {
        session: SessionId,
        xid: i32,
        err: ErrorCode,
    },
}

const FORWARD_WRITE: u8 = 1;
const FORWARD_CREATE_SESSION: u8 = 2;
const FORWARD_TOUCH: u8 = 3;
const FORWARD_FAILED: u8 = 4;

impl Forwarded {
    fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Forwarded::Write {
                session,
                auth,
                frame,
            } => {
                out.put_u8(FORWARD_WRITE);
                out.put_i64(session.0);
                out.put_i32(auth.len() as i32);
                for id in auth {
                    id.encode(&mut out);
                }
                frame.encode(&mut out);
            }
            Forwarded::CreateSession {
                session,
                timeout_ms,
            } => {
                out.put_u8(FORWARD_CREATE_SESSION);
                out.put_i64(session.0);
                out.put_u32(*timeout_ms);
            }
            Forwarded::Touch(sessions) => {
                out.put_u8(FORWARD_TOUCH);
                out.put_i32(sessions.len() as i32);
                for session in sessions {
                    out.put_i64(session.0);
                }
            }
            Forwarded::Failed { session, xid, err } => {
                out.put_u8(FORWARD_FAILED);
                out.put_i64(session.0);
                out.put_i32(*xid);
                out.put_i32(err.as_i32());
            }
        }
        out.freeze()
    }

    fn decode(data: Bytes) -> Result<Forwarded, String> {
        let mut reader = Reader::new(data);
        let error = |e: zinc_protocol::jute::DecodeError| e.to_string();
        let kind = reader.read_u8().map_err(error)?;
        Ok(match kind {
            FORWARD_WRITE => {
                let session = SessionId(reader.read_i64().map_err(error)?);
                let count = reader.read_i32().map_err(error)?;
                if count < 0 || count as usize > reader.remaining() {
                    return Err(format!("forwarded write with {count} identities"));
                }
                let mut auth = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    auth.push(Id::decode(&mut reader).map_err(error)?);
                }
                let rest = reader.read_raw(reader.remaining()).map_err(error)?;
                let frame = ClientFrame::decode(rest).map_err(error)?;
                Forwarded::Write {
                    session,
                    auth,
                    frame,
                }
            }
            FORWARD_CREATE_SESSION => Forwarded::CreateSession {
                session: SessionId(reader.read_i64().map_err(error)?),
                timeout_ms: reader.read_i32().map_err(error)? as u32,
            },
            FORWARD_TOUCH => {
                let count = reader.read_i32().map_err(error)?;
                if count < 0 || count as usize > reader.remaining() / 8 {
                    return Err(format!("forwarded touch of {count} sessions"));
                }
                let mut sessions = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    sessions.push(SessionId(reader.read_i64().map_err(error)?));
                }
                Forwarded::Touch(sessions)
            }
            FORWARD_FAILED => Forwarded::Failed {
                session: SessionId(reader.read_i64().map_err(error)?),
                xid: reader.read_i32().map_err(error)?,
                err: {
                    let code = reader.read_i32().map_err(error)?;
                    ErrorCode::from_i32(code).ok_or_else(|| format!("unknown error code {code}"))?
                },
            },
            other => return Err(format!("unknown forwarded request kind {other}")),
        })
    }

    fn packet(&self) -> PeerMessage {
        PeerMessage::Packet(PeerPacket::Request {
            data: self.encode(),
        })
    }
}

/// A leader's batch waiting for its commit.
struct PendingBatch {
    /// The newest zxid the batch depends on: its last txn, or the last one proposed before it.
    last_zxid: Zxid,
    /// Its txns, to rebuild the committed tree when only part of the batch is committed.
    entries: Vec<LogEntry>,
    /// The prep tree after the batch.
    root: Tree,
    messages: Vec<(usize, ToShard)>,
}

/// The leader's state, built once its epoch is established and its tree holds every committed
/// txn of earlier epochs.
struct Leading {
    core: Core,
    batch: Batch,
    batch_entries: Vec<LogEntry>,
    pending: VecDeque<PendingBatch>,
}

/// A follower's (or observer's) requests waiting for their txns to commit.
#[derive(Default)]
struct Learning {
    leader: Option<ServerId>,
    /// Forwarded writes by (session, xid): the shard and the request (for its reply's shape).
    forwarded: HashMap<(SessionId, i32), (ShardId, Request)>,
    /// New sessions waiting for their createSession txn.
    creating: HashMap<SessionId, (ShardId, ConnToken, u32)>,
    /// `sync` requests in the Zab core, by request number.
    syncs: HashMap<i64, (ShardId, SessionId, i32, String)>,
    next_sync: i64,
    touched: HashSet<SessionId>,
}

/// Replies, triggers and ended sessions gathered while applying commits, published together.
#[derive(Default)]
struct Outgoing {
    replies: Vec<(ShardId, CoreReply)>,
    triggers: Vec<Trigger>,
    ended_sessions: Vec<SessionId>,
    changed: bool,
}

pub(crate) struct Ensemble {
    config: Arc<Config>,
    stats: Arc<ServerStats>,
    shared: Arc<CrossShard>,
    zab: Zab,
    peers: Peers,
    wal: Rc<Wal<DmaDevice>>,
    /// Wakes the durability watcher after an append.
    appended: LocalSender<()>,
    snapshots: Snapshots,
    publish: LocalSender<PendingPublish>,
    /// The committed tree, as last published to the shards.
    applied: Tree,
    serving: bool,
    leader: Option<Leading>,
    learner: Learning,
    ids: SessionIdAllocator,
    /// The shard each of this server's sessions is attached to (followers; the leader's core
    /// keeps its own).
    owners: HashMap<SessionId, ShardId>,
    out: Outgoing,
    deliveries: Vec<Delivery>,
    /// Commands the Zab core produced while this turn's events were handled, carried out in
    /// order by `drive` (except disconnections: see `take_commands`).
    pending: Vec<Command>,
}

/// The Zab core's configuration from the server's.
pub(crate) fn zab_config(config: &Config, peers: &[PeerSpec]) -> zab::Config {
    let voters = peers
        .iter()
        .filter(|peer| !peer.observer)
        .map(|peer| ServerId(peer.id))
        .collect();
    let observers = peers
        .iter()
        .filter(|peer| peer.observer)
        .map(|peer| ServerId(peer.id))
        .collect();
    let mut zab = zab::Config::new(ServerId(config.server_id), voters, observers);
    zab.init_limit_ticks = config.init_limit_ticks as u64 * ZAB_TICKS_PER_TICK;
    zab.sync_limit_ticks = config.sync_limit_ticks as u64 * ZAB_TICKS_PER_TICK;
    zab.election_backoff_ticks_min = 1;
    zab.election_backoff_ticks_max = 2 * ZAB_TICKS_PER_TICK;
    // Clients bound what is in flight (per-session limits), as in ZooKeeper: a refused
    // proposal after prep would leave the prep tree ahead of the log.
    zab.proposals_in_flight_max = usize::MAX;
    zab.seed = config.server_id ^ now_ms();
    zab
}

/// Reads the persisted epochs (0 when the files do not exist yet).
pub(crate) fn read_epochs(dir: &Path) -> Result<(Epoch, Epoch), String> {
    let read = |name: &str| -> Result<Epoch, String> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u32>()
                .map(Epoch)
                .map_err(|_| format!("{}: not an epoch number: {:?}", path.display(), text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Epoch(0)),
            Err(error) => Err(format!("{}: {error}", path.display())),
        }
    };
    Ok((read(ACCEPTED_EPOCH_FILE)?, read(CURRENT_EPOCH_FILE)?))
}

/// Writes one epoch file durably: temporary file, fsync, rename, directory fsync.
fn write_epoch(dir: &Path, name: &str, epoch: Epoch) -> std::io::Result<()> {
    let temporary = dir.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    writeln!(file, "{}", epoch.0)?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// What the loop starts from.
pub(crate) struct EnsembleStart {
    pub(crate) config: Arc<Config>,
    pub(crate) stats: Arc<ServerStats>,
    pub(crate) shared: Arc<CrossShard>,
    pub(crate) zab: Zab,
    pub(crate) peers: Peers,
    pub(crate) peer_events: LocalReceiver<PeerEvent>,
    pub(crate) wal: Rc<Wal<DmaDevice>>,
    pub(crate) snapshots: Snapshots,
    pub(crate) publish: LocalSender<PendingPublish>,
    pub(crate) root: Tree,
    pub(crate) from_shards: LocalReceiver<ToCore>,
}

/// Runs the ensemble member's core until the process ends.
pub(crate) async fn run(start: EnsembleStart) {
    let (events, inbox) = local_channel::new_unbounded::<Event>();
    let events = Rc::new(events);
    forward(start.from_shards, events.clone(), Event::Shard);
    forward(start.peer_events, events.clone(), Event::Peer);
    let tick =
        Duration::from_millis((start.config.tick_time_ms as u64 / ZAB_TICKS_PER_TICK).max(1));
    {
        let events = events.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(tick).await;
                if events.try_send(Event::Tick).is_err() {
                    return;
                }
            }
        })
        .detach();
    }
    let (appended, appended_receiver) = local_channel::new_bounded(1);
    glommio::spawn_local(watch_durability(
        start.wal.clone(),
        appended_receiver,
        events.clone(),
    ))
    .detach();
    start.stats.set_mode(Mode::NotServing);
    let mut ensemble = Ensemble {
        ids: SessionIdAllocator::new(start.config.server_id as u8, now_ms()),
        config: start.config,
        stats: start.stats,
        shared: start.shared,
        zab: start.zab,
        peers: start.peers,
        wal: start.wal,
        appended,
        snapshots: start.snapshots,
        publish: start.publish,
        applied: start.root,
        serving: false,
        leader: None,
        learner: Learning::default(),
        owners: HashMap::new(),
        out: Outgoing::default(),
        deliveries: Vec::new(),
        pending: Vec::new(),
    };
    ensemble.drive().await;
    while let Some(first) = inbox.recv().await {
        ensemble.handle(first);
        for _ in 1..EVENTS_PER_TURN_MAX {
            match poll_once(inbox.recv()).await {
                Some(Some(event)) => ensemble.handle(event),
                _ => break,
            }
        }
        ensemble.end_batch();
        ensemble.drive().await;
    }
}

fn forward<T: 'static>(from: LocalReceiver<T>, to: Rc<LocalSender<Event>>, wrap: fn(T) -> Event) {
    glommio::spawn_local(async move {
        while let Some(item) = from.recv().await {
            if to.try_send(wrap(item)).is_err() {
                return;
            }
        }
    })
    .detach();
}

/// Reports the log's durable zxid to the loop whenever it advances.
async fn watch_durability(
    wal: Rc<Wal<DmaDevice>>,
    appended: LocalReceiver<()>,
    events: Rc<LocalSender<Event>>,
) {
    let mut reported: Option<Zxid> = None;
    loop {
        let durable = wal.durable_zxid();
        if durable.is_some() && durable != reported {
            reported = durable;
            if let Some(zxid) = durable {
                if events.try_send(Event::Persisted(zxid)).is_err() {
                    return;
                }
            }
            continue;
        }
        match wal.last_appended() {
            Some(last) if durable.is_none_or(|d| d < last) => {
                let next = Zxid(durable.map_or(0, |d| d.0) + 1);
                if let Err(error) = wal.wait_durable(next).await {
                    fatal(error);
                }
            }
            _ => {
                if appended.recv().await.is_none() {
                    return;
                }
            }
        }
    }
}

impl Ensemble {
    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick => self.tick(),
            Event::Persisted(zxid) => self.zab.on_persisted(zxid),
            Event::Peer(event) => {
                let mut deliveries = std::mem::take(&mut self.deliveries);
                self.peers.on_event(event, &mut deliveries);
                for delivery in deliveries.drain(..) {
                    match delivery {
                        Delivery::Disconnected(peer) => self.zab.disconnected(peer),
                        Delivery::Message(
                            peer,
                            PeerMessage::Packet(PeerPacket::Request { data }),
                        ) => self.on_forwarded(peer, data),
                        Delivery::Message(peer, message) => self.zab.step(peer, message),
                    }
                    self.take_commands();
                }
                self.deliveries = deliveries;
            }
            Event::Shard(message) => {
                if self.leader.is_some() {
                    self.leader_take(message);
                } else if self.serving {
                    self.learner_take(message);
                } else {
                    self.refuse(message);
                }
            }
        }
        self.take_commands();
    }

    /// Moves the Zab core's new commands to `pending`, carrying out disconnections at once:
    /// nothing more from a link the core closed may reach it (later events of this turn would
    /// otherwise still deliver what that link had brought), and what was to be sent on that
    /// link is dropped with it, as the core's contract says.
    fn take_commands(&mut self) {
        for command in self.zab.ready().commands {
            match command {
                Command::Disconnect { peer } => {
                    self.pending.retain(
                        |queued| !matches!(queued, Command::Send { to, .. } if *to == peer),
                    );
                    self.peers.disconnect(peer);
                }
                command => self.pending.push(command),
            }
        }
    }

    fn tick(&mut self) {
        self.zab.tick();
        if let Some(counts) = self.zab.learners() {
            self.stats.set_learners([
                counts.learners as u64,
                counts.synced_followers as u64,
                counts.synced_observers as u64,
            ]);
        }
        if self.serving && self.leader.is_none() && !self.learner.touched.is_empty() {
            let touched: Vec<SessionId> = self.learner.touched.drain().collect();
            self.send_to_leader(&Forwarded::Touch(touched));
        }
    }

    fn send_to_leader(&mut self, forwarded: &Forwarded) {
        if let Some(leader) = self.learner.leader {
            self.peers.send(leader, &forwarded.packet());
        }
    }

    /// A request that cannot be served here now: its connection is closed.
    fn refuse(&mut self, message: ToCore) {
        match message {
            ToCore::Write(write) => self.out.replies.push((
                write.shard,
                CoreReply::SessionMoved {
                    session: write.session,
                },
            )),
            ToCore::CreateSession { shard, token, .. } => {
                self.out.replies.push((shard, CoreReply::Refused { token }))
            }
            ToCore::Reattach { shard, session } => self
                .out
                .replies
                .push((shard, CoreReply::SessionMoved { session })),
            ToCore::Touch(_) => {}
        }
    }

    // ----- leader -----

    /// Lines the prep tree's zxid up with the Zab core's next proposal; false if the core
    /// takes no proposal now.
    fn line_up_zxid(&mut self) -> bool {
        let Some(leader) = &mut self.leader else {
            return false;
        };
        match self.zab.next_zxid() {
            Ok(next) => {
                leader.core.preparer_mut().set_next_zxid(next.0);
                true
            }
            Err(_) => false,
        }
    }

    fn leader_take(&mut self, message: ToCore) {
        let needs_zxid = matches!(message, ToCore::Write(_) | ToCore::CreateSession { .. });
        if needs_zxid && !self.line_up_zxid() {
            self.refuse(message);
            return;
        }
        if let Some(leader) = &mut self.leader {
            leader.core.take(message, &mut leader.batch);
        }
        self.propose_prepared();
    }

    /// Hands the txns the core prepared to the Zab core, which must give each the zxid it was
    /// prepared with.
    fn propose_prepared(&mut self) {
        let Some(leader) = &mut self.leader else {
            return;
        };
        let Sink::Proposals(entries) = &mut leader.core.sink else {
            return;
        };
        for entry in std::mem::take(entries) {
            let zxid = entry.header.zxid;
            match self.zab.propose(entry) {
                Ok(assigned) if assigned.0 == zxid => {}
                Ok(assigned) => fatal(format!(
                    "the leader prepared zxid {:#x} but its Zab core assigned {assigned}",
                    zxid
                )),
                Err(error) => fatal(format!("proposing zxid {zxid:#x}: {error}")),
            }
            if let Some(txn) = self.zab.log_entry(Zxid(zxid)) {
                leader.batch_entries.push(LogEntry {
                    zxid: Zxid(zxid),
                    txn: txn.clone(),
                });
            }
        }
    }

    fn on_forwarded(&mut self, from: ServerId, data: Bytes) {
        let forwarded = match Forwarded::decode(data) {
            Ok(forwarded) => forwarded,
            Err(error) => {
                crate::log_line!("zinc: bad request forwarded by server {}: {error}", from.0);
                self.peers.disconnect(from);
                self.zab.disconnected(from);
                return;
            }
        };
        if let Forwarded::Failed { session, xid, err } = forwarded {
            self.on_failed(session, xid, err);
            return;
        }
        if let (Forwarded::Touch(sessions), Some(leader)) = (&forwarded, &mut self.leader) {
            let now = now_ms();
            let tracker = leader.core.tracker_mut();
            for session in sessions {
                tracker.touch(*session, now);
            }
            return;
        }
        if self.leader.is_none() || !self.line_up_zxid() {
            // Not leading (any more), or at the end of an epoch: the follower finds out from
            // its Zab core and closes its clients' connections.
            return;
        }
        let Some(leader) = &mut self.leader else {
            return;
        };
        match forwarded {
            Forwarded::Write {
                session,
                auth,
                frame,
            } => {
                if !leader.core.tracker_mut().is_open(session) {
                    let failed = Forwarded::Failed {
                        session,
                        xid: frame.xid,
                        err: ErrorCode::SessionExpired,
                    };
                    self.peers.send(from, &failed.packet());
                    return;
                }
                let write = WriteRequest {
                    shard: REMOTE_SHARD,
                    session,
                    xid: frame.xid,
                    request: frame.request,
                    auth: auth.into(),
                };
                leader.core.take(ToCore::Write(write), &mut leader.batch);
            }
            Forwarded::CreateSession {
                session,
                timeout_ms,
            } => leader
                .core
                .create_remote_session(session, timeout_ms, &mut leader.batch),
            Forwarded::Touch(_) | Forwarded::Failed { .. } => {}
        }
        self.propose_prepared();
    }

    /// Closes the leader's batch: expired sessions and reaped nodes join it, and it waits for
    /// its commit.
    fn end_batch(&mut self) {
        if self.leader.is_none() {
            return;
        }
        // Expiring sessions and reaping nodes make several txns in one go: only with room for
        // them in the epoch (near its end they wait for the next epoch's leader), so that no
        // proposal after the first is refused.
        let room = self
            .zab
            .next_zxid()
            .map_or(0, |next| u32::MAX - next.counter());
        if room > EPOCH_ROOM_FOR_EXPIRY && self.line_up_zxid() {
            if let Some(leader) = &mut self.leader {
                leader.core.expire_sessions(&mut leader.batch);
                leader.core.reap(&mut leader.batch);
            }
            self.propose_prepared();
        }
        let Some(leader) = &mut self.leader else {
            return;
        };
        let batch = std::mem::take(&mut leader.batch);
        let logged = leader.core.take_batch_last_zxid().is_some();
        let messages = leader.core.finish(batch);
        if messages.is_empty() && !logged {
            return;
        }
        let pending = PendingBatch {
            last_zxid: Zxid(leader.core.preparer().last_zxid()),
            entries: std::mem::take(&mut leader.batch_entries),
            root: leader.core.preparer().tree().clone(),
            messages,
        };
        leader.pending.push_back(pending);
        self.publish_committed();
    }

    /// Sends the shards every pending batch the Zab core has committed.
    fn publish_committed(&mut self) {
        let committed = self.zab.committed_zxid();
        let Some(leader) = &mut self.leader else {
            return;
        };
        while leader
            .pending
            .front()
            .is_some_and(|batch| batch.last_zxid <= committed)
        {
            let Some(batch) = leader.pending.pop_front() else {
                break;
            };
            self.applied = batch.root;
            let _ = self.publish.try_send(PendingPublish {
                durable_zxid: None,
                messages: batch.messages,
            });
            self.snapshots.offer(&self.applied);
        }
    }

    /// The committed tree at `zxid`: on the leader, the last published root plus the
    /// committed part of the pending batches.
    fn committed_tree_at(&self, zxid: Zxid) -> Tree {
        let mut tree = self.applied.clone();
        let Some(leader) = &self.leader else {
            return tree;
        };
        for batch in &leader.pending {
            if batch.last_zxid <= zxid {
                tree = batch.root.clone();
                continue;
            }
            for entry in batch.entries.iter().filter(|entry| entry.zxid <= zxid) {
                if entry.zxid <= tree.last_zxid() {
                    continue;
                }
                match TxnEntry::decode_shared(entry.txn.clone()) {
                    Ok(decoded) => {
                        let _ = tree.apply(&decoded.header, &decoded.txn);
                    }
                    Err(error) => fatal(format!("own txn {} does not decode: {error}", entry.zxid)),
                }
            }
            break;
        }
        tree
    }

    // ----- follower, observer -----

    fn learner_take(&mut self, message: ToCore) {
        match message {
            ToCore::Write(write) => {
                if let Request::Sync(sync) = &write.request {
                    let request = self.learner.next_sync;
                    self.learner.next_sync += 1;
                    match self.zab.sync(request) {
                        Ok(()) => {
                            let entry = (write.shard, write.session, write.xid, sync.path.clone());
                            self.learner.syncs.insert(request, entry);
                        }
                        Err(_) => self.refuse(ToCore::Write(write)),
                    }
                    return;
                }
                let forwarded = Forwarded::Write {
                    session: write.session,
                    auth: write.auth.to_vec(),
                    frame: ClientFrame {
                        xid: write.xid,
                        request: write.request,
                    },
                };
                self.send_to_leader(&forwarded);
                if let Forwarded::Write { session, frame, .. } = forwarded {
                    self.learner
                        .forwarded
                        .insert((session, frame.xid), (write.shard, frame.request));
                }
            }
            ToCore::CreateSession {
                shard,
                token,
                timeout_ms_requested,
            } => {
                let timeout_ms = self.config.session_timeout_ms(timeout_ms_requested);
                let session = self.ids.allocate();
                self.learner
                    .creating
                    .insert(session, (shard, token, timeout_ms));
                self.send_to_leader(&Forwarded::CreateSession {
                    session,
                    timeout_ms,
                });
            }
            ToCore::Reattach { shard, session } => {
                self.learner.touched.insert(session);
                if let Some(previous) = self.owners.insert(session, shard) {
                    if previous != shard {
                        self.out
                            .replies
                            .push((previous, CoreReply::SessionMoved { session }));
                    }
                }
            }
            ToCore::Touch(sessions) => self.learner.touched.extend(sessions),
        }
    }

    /// The leader could not take a forwarded request.
    fn on_failed(&mut self, session: SessionId, xid: i32, err: ErrorCode) {
        if let Some((shard, _)) = self.learner.forwarded.remove(&(session, xid)) {
            let reply = CoreReply::Reply {
                session,
                xid,
                zxid: self.applied.last_zxid().0,
                err,
                response: None,
            };
            self.out.replies.push((shard, reply));
        }
    }

    /// Applies committed entries to the tree, answering this server's requests among them.
    fn apply_committed(&mut self, entries: &[LogEntry]) {
        for entry in entries {
            if entry.zxid <= self.applied.last_zxid() {
                continue;
            }
            let decoded = match TxnEntry::decode_shared(entry.txn.clone()) {
                Ok(decoded) => decoded,
                Err(error) => fatal(format!(
                    "committed txn {} does not decode: {error}",
                    entry.zxid
                )),
            };
            let outcome = self.applied.apply(&decoded.header, &decoded.txn);
            self.out.triggers.extend(triggers(&outcome));
            self.out.changed = true;
            let session = SessionId(decoded.header.client_id);
            match &decoded.txn {
                Txn::CreateSession(created) => {
                    if let Some((shard, token, _)) = self.learner.creating.remove(&session) {
                        self.owners.insert(session, shard);
                        let reply = CoreReply::SessionCreated {
                            token,
                            session,
                            timeout_ms: created.time_out.max(0) as u32,
                            password: session_password(session),
                        };
                        self.out.replies.push((shard, reply));
                    }
                }
                Txn::CloseSession(_) => {
                    self.owners.remove(&session);
                    self.out.ended_sessions.push(session);
                }
                _ => {}
            }
            let key = (session, decoded.header.cxid);
            if let Some((shard, request)) = self.learner.forwarded.remove(&key) {
                let (err, response) = response_for(&request, &outcome);
                let reply = CoreReply::Reply {
                    session,
                    xid: decoded.header.cxid,
                    zxid: decoded.header.zxid,
                    err,
                    response,
                };
                self.out.replies.push((shard, reply));
            }
        }
    }

    /// Publishes the applied tree with what was gathered since the last time.
    fn flush_out(&mut self) {
        let out = std::mem::take(&mut self.out);
        let published = (out.changed || !out.ended_sessions.is_empty()).then(|| {
            Arc::new(Published {
                root: self.applied.clone(),
                triggers: out.triggers,
                last_zxid: self.applied.last_zxid().0,
                ended_sessions: out.ended_sessions,
            })
        });
        if published.is_some() {
            self.stats.set_last_zxid(self.applied.last_zxid().0);
            self.snapshots.offer(&self.applied);
        }
        let messages = shard_messages(self.config.shard_count, published, out.replies);
        if !messages.is_empty() {
            let _ = self.publish.try_send(PendingPublish {
                durable_zxid: None,
                messages,
            });
        }
    }

    // ----- the Zab core's commands -----

    /// Carries out what the Zab core asked for, in order, then publishes.
    async fn drive(&mut self) {
        self.take_commands();
        loop {
            let commands = std::mem::take(&mut self.pending);
            if commands.is_empty() {
                break;
            }
            for command in commands {
                self.execute(command).await;
            }
            self.take_commands();
        }
        self.maybe_start_leading();
        self.flush_out();
    }

    async fn execute(&mut self, command: Command) {
        match command {
            Command::Send { to, message } => self.peers.send(to, &message),
            Command::Disconnect { peer } => self.peers.disconnect(peer),
            Command::PersistEpochs { accepted, current } => {
                let dir = &self.config.data_dir;
                let written = write_epoch(dir, ACCEPTED_EPOCH_FILE, accepted)
                    .and_then(|()| write_epoch(dir, CURRENT_EPOCH_FILE, current));
                if let Err(error) = written {
                    fatal(format!("writing the epochs in {}: {error}", dir.display()));
                }
            }
            Command::Append { entry } => {
                // Flow control: the log's queue is bounded, and nothing slows the leader or a
                // follower's peer link down but this loop. Past half the queue it waits for
                // the disk (a member whose disk stalls long enough falls out of the quorum).
                if self.wal.pending_bytes() > self.wal.config().pending_bytes_max / 2 {
                    self.wal_idle().await;
                }
                if let Err(error) = self.wal.append(entry.zxid, &entry.txn) {
                    fatal(error);
                }
                self.snapshots.on_txn(entry.txn.len() as u64);
                let _ = self.appended.try_send(());
            }
            Command::Truncate { after } => {
                self.wal_idle().await;
                if let Err(error) = self.wal.truncate_after(after).await {
                    fatal(error);
                }
            }
            Command::SendSnapshot { to, zxid } => {
                let tree = self.committed_tree_at(zxid);
                match zinc_storage::snapshot::encode(&tree) {
                    Ok(archive) => {
                        let snapshot = Bytes::copy_from_slice(&archive);
                        let packet = PeerPacket::Snap { zxid, snapshot };
                        self.peers.send(to, &PeerMessage::Packet(packet));
                    }
                    Err(error) => {
                        fatal(format!("encoding a snapshot for server {}: {error}", to.0))
                    }
                }
            }
            Command::InstallSnapshot { zxid, snapshot } => {
                self.install_snapshot(zxid, &snapshot).await
            }
            Command::Commit { entries } => {
                if self.leader.is_some() {
                    self.publish_committed();
                } else {
                    self.apply_committed(&entries);
                }
            }
            Command::Compact { .. } => {}
            Command::SyncDone { request } => {
                if let Some((shard, session, xid, path)) = self.learner.syncs.remove(&request) {
                    let reply = CoreReply::Reply {
                        session,
                        xid,
                        zxid: self.applied.last_zxid().0,
                        err: ErrorCode::Ok,
                        response: Some(Response::Sync(SyncResponse { path })),
                    };
                    self.out.replies.push((shard, reply));
                }
            }
            Command::RoleChanged { role } => self.on_role(role),
        }
    }

    /// Waits until everything appended is durable (the log must be idle to be cut).
    async fn wal_idle(&self) {
        if let Some(last) = self.wal.last_appended() {
            if let Err(error) = self.wal.wait_durable(last).await {
                fatal(error);
            }
        }
    }

    /// Replaces the state with the leader's snapshot: the log is emptied first, then the
    /// snapshot is written, so a crash in between leaves an older state, never a mix.
    async fn install_snapshot(&mut self, zxid: Zxid, snapshot: &[u8]) {
        let tree = match zinc_storage::snapshot::decode(snapshot) {
            Ok(tree) => tree,
            Err(error) => fatal(format!(
                "the leader's snapshot at {zxid} is invalid: {error}"
            )),
        };
        if tree.last_zxid() != zxid {
            fatal(format!(
                "the leader's snapshot says {zxid} but holds {}",
                tree.last_zxid()
            ));
        }
        self.wal_idle().await;
        if let Err(error) = self.wal.truncate_after(Zxid(0)).await {
            fatal(error);
        }
        let dir = self.config.snapshot_dir();
        if let Err(error) = zinc_storage::snapshot::write(&dir, &tree) {
            fatal(format!(
                "writing the leader's snapshot to {}: {error}",
                dir.display()
            ));
        }
        crate::log_line!("zinc: installed the leader's snapshot at {zxid}");
        self.applied = tree;
        self.out.changed = true;
    }

    fn on_role(&mut self, role: Role) {
        crate::log_line!("zinc: server {} is now {role:?}", self.config.server_id);
        match role {
            // The leader starts taking requests at the end of the turn: maybe_start_leading.
            Role::Leading { .. } => {}
            Role::Following { leader, .. } | Role::Observing { leader, .. } => {
                self.learner.leader = Some(leader);
                let mode = match role {
                    Role::Observing { .. } => Mode::Observer,
                    _ => Mode::Follower,
                };
                self.set_serving(Some(mode));
            }
            Role::Looking | Role::Syncing { .. } | Role::LeaderElect => self.step_down(),
        }
    }

    /// Once leading, and the tree holds every committed txn of earlier epochs, the leader
    /// starts taking requests.
    fn maybe_start_leading(&mut self) {
        let Role::Leading { epoch } = self.zab.role() else {
            return;
        };
        if self.leader.is_some() || self.zab.committed_zxid() < self.zab.last_zxid() {
            return;
        }
        if self.applied.last_zxid() != self.zab.committed_zxid() {
            fatal(format!(
                "leading epoch {epoch:?} with a tree at {} and the log committed to {}",
                self.applied.last_zxid(),
                self.zab.committed_zxid()
            ));
        }
        let preparer = Preparer::new(self.applied.clone(), self.config.extended_types_enabled);
        let core = Core::new(
            self.config.clone(),
            self.stats.clone(),
            preparer,
            Sink::Proposals(Vec::new()),
            None,
            None,
        );
        self.leader = Some(Leading {
            core,
            batch: Batch::default(),
            batch_entries: Vec::new(),
            pending: VecDeque::new(),
        });
        self.set_serving(Some(Mode::Leader));
    }

    /// Leaves the serving role: the committed tree is what the shards keep, and every client
    /// connection is closed.
    fn step_down(&mut self) {
        if self.leader.is_some() {
            let committed = self.committed_tree_at(self.zab.committed_zxid());
            self.leader = None;
            self.applied = committed;
            self.out.changed = true;
        }
        self.learner = Learning {
            next_sync: self.learner.next_sync,
            ..Learning::default()
        };
        self.owners.clear();
        self.set_serving(None);
    }

    fn set_serving(&mut self, mode: Option<Mode>) {
        let serving = mode.is_some();
        self.stats.set_mode(mode.unwrap_or(Mode::NotServing));
        self.shared.serving.store(serving, Ordering::Release);
        if self.serving && !serving {
            for shard in 0..self.config.shard_count {
                self.out
                    .replies
                    .push((shard as ShardId, CoreReply::CloseAll));
            }
        }
        self.serving = serving;
    }
}

/// The Zab core's persisted state at start: the epochs and the log after the snapshot.
pub(crate) fn persisted(
    config: &Config,
    snapshot_zxid: Zxid,
    records: Vec<zinc_storage::wal::WalRecord>,
) -> Result<Persisted, String> {
    let (accepted_epoch, current_epoch) = read_epochs(&config.data_dir)?;
    let entries = records
        .into_iter()
        .filter(|record| record.zxid > snapshot_zxid)
        .map(|record| LogEntry {
            zxid: record.zxid,
            txn: record.payload,
        })
        .collect();
    Ok(Persisted {
        accepted_epoch,
        current_epoch: current_epoch.min(accepted_epoch),
        snapshot_zxid,
        entries,
    })
}

/// Where the peers listen, by id.
pub(crate) fn peer_addresses(peers: &[PeerSpec]) -> HashMap<ServerId, std::net::SocketAddr> {
    peers
        .iter()
        .map(|peer| (ServerId(peer.id), peer.quorum_address))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_requests_round_trip() {
        let frame = ClientFrame {
            xid: 7,
            request: Request::Sync(zinc_protocol::records::SyncRequest { path: "/a".into() }),
        };
        let cases = vec![
            Forwarded::Write {
                session: SessionId(0x0100_0000_0000_0001),
                auth: vec![Id::new("digest", "u:p")],
                frame,
            },
            Forwarded::CreateSession {
                session: SessionId(5),
                timeout_ms: 4000,
            },
            Forwarded::Touch(vec![SessionId(1), SessionId(-2)]),
            Forwarded::Failed {
                session: SessionId(3),
                xid: 9,
                err: ErrorCode::SessionExpired,
            },
        ];
        for case in cases {
            let bytes = case.encode();
            let back = Forwarded::decode(bytes.clone()).expect("decodes");
            assert_eq!(back.encode(), bytes);
        }
    }

    #[test]
    fn bad_forwarded_requests_are_errors() {
        for bytes in [
            &[][..],
            &[9][..],
            &[FORWARD_TOUCH, 0x7f, 0, 0, 0][..],
            &[FORWARD_WRITE, 1],
        ] {
            assert!(Forwarded::decode(Bytes::copy_from_slice(bytes)).is_err());
        }
    }

    #[test]
    fn epochs_persist_and_bad_files_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(read_epochs(dir.path()), Ok((Epoch(0), Epoch(0))));
        write_epoch(dir.path(), ACCEPTED_EPOCH_FILE, Epoch(3)).expect("write");
        write_epoch(dir.path(), CURRENT_EPOCH_FILE, Epoch(2)).expect("write");
        assert_eq!(read_epochs(dir.path()), Ok((Epoch(3), Epoch(2))));
        std::fs::write(dir.path().join(CURRENT_EPOCH_FILE), "x").expect("write");
        let error = read_epochs(dir.path()).expect_err("bad file");
        assert!(error.contains(CURRENT_EPOCH_FILE), "{error}");
    }
}

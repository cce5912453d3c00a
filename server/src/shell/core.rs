//! The Zab core executor in standalone mode: takes write requests from every shard in arrival
//! order, preps each into a txn against the newest state, assigns zxids, makes the batch durable,
//! and publishes the new root with the replies and watch triggers to every shard.
//!
//! A batch is whatever arrived while the previous batch was being made durable, up to a bound.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_lite::future::poll_once;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::ConnectedReceiver;
use zinc_protocol::txn::TxnEntry;
use zinc_protocol::{SessionId, Zxid};
use zinc_storage::wal::{DmaDevice, Wal};

use crate::config::Config;
use crate::exec::{Prepared, Preparer};
use crate::session::{session_password, SessionIdAllocator, SessionTracker};
use crate::shell::link;
use crate::shell::messages::{CoreReply, Published, ShardId, ToCore, ToShard};
use crate::shell::shard::CrossShard;
use crate::shell::snapshots::Snapshots;
use crate::shell::stats::ServerStats;

/// Requests taken into one batch at most.
const BATCH_REQUESTS_MAX: usize = 4096;

/// Capacity of the queue merging the shards' channels on the core.
const INBOX_CAPACITY: usize = 8192;

/// Batches formed while earlier ones are still being made durable.
const PUBLISH_QUEUE_BATCHES: usize = 64;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// What the core keeps between batches.
pub(crate) struct Core {
    config: Arc<Config>,
    stats: Arc<ServerStats>,
    preparer: Preparer,
    tracker: SessionTracker,
    ids: SessionIdAllocator,
    /// The shard each live session is attached to.
    owners: HashMap<SessionId, ShardId>,
    /// When the next look for empty containers and expired TTL nodes is due.
    next_reap_ms: u64,
    pub(crate) sink: Sink,
    /// Batches waiting for durability, in zxid order, to the publisher task (standalone).
    publish: Option<LocalSender<PendingPublish>>,
    /// The last zxid appended to the log in the batch being formed.
    batch_last_zxid: Option<i64>,
    /// Standalone: snapshots of the tree as batches become durable. In an ensemble the loop
    /// around the core snapshots committed trees instead.
    snapshots: Option<Snapshots>,
}

/// Where the core's txns go.
pub(crate) enum Sink {
    /// Standalone: straight into the log; the batch is published once durable.
    Wal(Rc<Wal<DmaDevice>>),
    /// An ensemble's leader: gathered for its Zab core to log and propose, in order.
    Proposals(Vec<TxnEntry>),
}

/// A batch whose replies and root may go out once the log holds `durable_zxid`.
pub(crate) struct PendingPublish {
    pub(crate) durable_zxid: Option<i64>,
    pub(crate) messages: Vec<(usize, ToShard)>,
}

/// Ends the process on an error that makes the log untrustworthy: nothing not durable may be
/// acknowledged, so the server stops rather than carry on.
pub(crate) fn fatal(error: impl std::fmt::Display) -> ! {
    crate::log_line!("zinc: fatal: {error}");
    std::process::exit(1);
}

impl Core {
    pub(crate) fn new(
        config: Arc<Config>,
        stats: Arc<ServerStats>,
        preparer: Preparer,
        sink: Sink,
        publish: Option<LocalSender<PendingPublish>>,
        snapshots: Option<Snapshots>,
    ) -> Core {
        let now = now_ms();
        let mut tracker = SessionTracker::new(config.tick_time_ms);
        // Sessions recovered with the tree get a full timeout from now, as after a restart.
        for (session, timeout_ms) in preparer.tree().sessions() {
            tracker.add(SessionId(session), timeout_ms.max(0) as u32, now);
        }
        let next_reap_ms = now + config.reap_interval_ms as u64;
        Core {
            ids: SessionIdAllocator::new(config.server_id as u8, now),
            config,
            stats,
            preparer,
            tracker,
            owners: HashMap::new(),
            next_reap_ms,
            sink,
            publish,
            batch_last_zxid: None,
            snapshots,
        }
    }
}

/// Merges every shard's channel into one local inbox, preserving each shard's order. The
/// returned sender is the inbox's own, for a shard on the core's executor to send to directly.
pub(crate) fn merge_inbox(
    receivers: Vec<ConnectedReceiver<ToCore>>,
) -> (Rc<LocalSender<ToCore>>, LocalReceiver<ToCore>) {
    let (sender, receiver) = local_channel::new_bounded(INBOX_CAPACITY);
    let sender = Rc::new(sender);
    let inbox = sender.clone();
    for from_shard in receivers {
        let sender: Rc<LocalSender<ToCore>> = sender.clone();
        glommio::spawn_local(async move {
            while let Some(message) = from_shard.recv().await {
                if sender.send(message).await.is_err() {
                    return;
                }
            }
        })
        .detach();
    }
    (inbox, receiver)
}

/// The core's loop: one batch per turn; the expiry timer runs beside it.
/// Sends each batch once its log records are durable, strictly in order.
pub(crate) async fn publish_loop(
    wal: Rc<Wal<DmaDevice>>,
    to_shards: Vec<link::Sender<ToShard>>,
    pending: LocalReceiver<PendingPublish>,
) {
    while let Some(batch) = pending.recv().await {
        if let Some(zxid) = batch.durable_zxid {
            if let Err(error) = wal.wait_durable(Zxid(zxid)).await {
                fatal(error);
            }
        }
        for (shard, message) in batch.messages {
            to_shards[shard].send(message).await;
        }
    }
}

/// Drives the log's group commits. When the log cannot write for lack of space (or another
/// error that leaves it intact), `log_blocked` is raised so that the shards refuse new writes
/// (ThrottledOp) instead of queueing them; the stuck batch is retried every second and writes
/// resume once it is on disk.
pub(crate) async fn wal_loop(wal: Rc<Wal<DmaDevice>>, shared: Arc<CrossShard>) {
    let log_blocked = &shared.log_blocked;
    loop {
        let error = wal.run().await;
        if error.is_fatal() {
            fatal(error);
        }
        crate::log_line!("zinc: {error}; refusing writes, retrying every second");
        log_blocked.store(true, Ordering::Release);
        loop {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            match wal.flush().await {
                Ok(_) => break,
                Err(error) if error.is_fatal() => fatal(error),
                Err(_) => continue,
            }
        }
        log_blocked.store(false, Ordering::Release);
        crate::log_line!("zinc: the log is writing again; writes resume");
    }
}

/// An unbounded publish queue, for a loop that must not wait on the shards (an ensemble's,
/// which also carries the Zab core's traffic).
pub(crate) fn publish_queue_unbounded(
) -> (LocalSender<PendingPublish>, LocalReceiver<PendingPublish>) {
    local_channel::new_unbounded()
}

/// Creates the publish queue between the core loop and `publish_loop`.
pub(crate) fn publish_queue() -> (LocalSender<PendingPublish>, LocalReceiver<PendingPublish>) {
    local_channel::new_bounded(PUBLISH_QUEUE_BATCHES)
}

pub(crate) async fn run(mut core: Core, inbox: LocalReceiver<ToCore>) {
    let tick = Duration::from_millis(core.config.tick_time_ms as u64);
    let (expiry_sender, expiry_receiver) = local_channel::new_bounded::<()>(1);
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(tick).await;
            if expiry_sender.send(()).await.is_err() {
                return;
            }
        }
    })
    .detach();
    loop {
        let first = futures_lite::future::or(async { inbox.recv().await.map(Some) }, async {
            expiry_receiver.recv().await.map(|()| None)
        })
        .await;
        let Some(first) = first else {
            return;
        };
        let mut batch = Batch::default();
        if let Some(message) = first {
            core.take(message, &mut batch);
        }
        while batch.requests < BATCH_REQUESTS_MAX {
            match poll_once(inbox.recv()).await {
                Some(Some(message)) => core.take(message, &mut batch),
                _ => break,
            }
        }
        core.expire_sessions(&mut batch);
        core.reap(&mut batch);
        let durable_zxid = core.batch_last_zxid.take();
        let messages = core.finish(batch);
        if let Some(snapshots) = &mut core.snapshots {
            snapshots.offer(core.preparer.tree());
        }
        if messages.is_empty() && durable_zxid.is_none() {
            continue;
        }
        let pending = PendingPublish {
            durable_zxid,
            messages,
        };
        let Some(publish) = &core.publish else {
            return;
        };
        if publish.send(pending).await.is_err() {
            return;
        }
        core.throttle_on_log().await;
    }
}

/// Replies and ended sessions gathered for one batch.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) requests: usize,
    pub(crate) replies: Vec<(ShardId, CoreReply)>,
    ended_sessions: Vec<SessionId>,
    triggers: Vec<crate::exec::Trigger>,
    changed: bool,
}

impl Core {
    pub(crate) fn preparer(&self) -> &Preparer {
        &self.preparer
    }

    pub(crate) fn preparer_mut(&mut self) -> &mut Preparer {
        &mut self.preparer
    }

    pub(crate) fn tracker_mut(&mut self) -> &mut SessionTracker {
        &mut self.tracker
    }

    /// Takes the zxid of the batch's last txn, if it logged any.
    pub(crate) fn take_batch_last_zxid(&mut self) -> Option<i64> {
        self.batch_last_zxid.take()
    }

    /// A session a follower created: tracked here, its reply goes out on the follower.
    pub(crate) fn create_remote_session(
        &mut self,
        session: SessionId,
        timeout_ms: u32,
        batch: &mut Batch,
    ) {
        let now = now_ms();
        let prepared = self
            .preparer
            .create_session(session, timeout_ms, now as i64);
        self.log(prepared.entry);
        self.tracker.add(session, timeout_ms, now);
        batch.changed = true;
        batch.triggers.extend(prepared.triggers);
    }

    pub(crate) fn take(&mut self, message: ToCore, batch: &mut Batch) {
        batch.requests += 1;
        let now = now_ms();
        match message {
            ToCore::Write(write) => {
                self.tracker.touch(write.session, now);
                if !self.tracker.is_open(write.session) {
                    batch.replies.push((
                        write.shard,
                        CoreReply::Reply {
                            session: write.session,
                            xid: write.xid,
                            zxid: self.preparer.last_zxid(),
                            err: zinc_protocol::ErrorCode::SessionExpired,
                            response: None,
                        },
                    ));
                    return;
                }
                let prepared = self.preparer.prepare_and_apply(&write, now as i64);
                self.absorb(write.shard, prepared, batch);
            }
            ToCore::CreateSession {
                shard,
                token,
                timeout_ms_requested,
            } => {
                let timeout_ms = self.config.session_timeout_ms(timeout_ms_requested);
                let session = self.ids.allocate();
                let prepared = self
                    .preparer
                    .create_session(session, timeout_ms, now as i64);
                self.log(prepared.entry);
                self.tracker.add(session, timeout_ms, now);
                self.owners.insert(session, shard);
                batch.changed = true;
                batch.triggers.extend(prepared.triggers);
                batch.replies.push((
                    shard,
                    CoreReply::SessionCreated {
                        token,
                        session,
                        timeout_ms,
                        password: session_password(session),
                    },
                ));
            }
            ToCore::Reattach { shard, session } => {
                self.tracker.touch(session, now);
                if let Some(previous) = self.owners.insert(session, shard) {
                    if previous != shard {
                        batch
                            .replies
                            .push((previous, CoreReply::SessionMoved { session }));
                    }
                }
            }
            ToCore::Touch(sessions) => {
                for session in sessions {
                    self.tracker.touch(session, now);
                }
            }
        }
    }

    /// Appends a txn to the log; its batch is published once it is durable.
    fn log(&mut self, entry: Option<TxnEntry>) {
        let Some(entry) = entry else {
            return;
        };
        let zxid = entry.header.zxid;
        match &mut self.sink {
            Sink::Wal(wal) => {
                let bytes = entry.to_bytes();
                if let Err(error) = wal.append(Zxid(zxid), &bytes) {
                    fatal(error);
                }
                if let Some(snapshots) = &mut self.snapshots {
                    snapshots.on_txn(bytes.len() as u64);
                }
            }
            Sink::Proposals(entries) => entries.push(entry),
        }
        self.batch_last_zxid = Some(zxid);
    }

    /// Waits while the log has more than half its queue unwritten, so appends never overflow.
    async fn throttle_on_log(&self) {
        let Sink::Wal(wal) = &self.sink else {
            return;
        };
        if wal.pending_bytes() <= wal.config().pending_bytes_max / 2 {
            return;
        }
        if let Some(last) = wal.last_appended() {
            if let Err(error) = wal.wait_durable(last).await {
                fatal(error);
            }
        }
    }

    /// Records a prepared request's reply and effects in the batch.
    fn absorb(&mut self, shard: ShardId, prepared: Prepared, batch: &mut Batch) {
        self.log(prepared.entry);
        batch.changed |= prepared.changed;
        batch.triggers.extend(prepared.triggers);
        if let Some(session) = prepared.ended_session {
            self.tracker.remove(session);
            self.owners.remove(&session);
            batch.ended_sessions.push(session);
        }
        batch.replies.push((shard, prepared.reply));
    }

    pub(crate) fn expire_sessions(&mut self, batch: &mut Batch) {
        let now = now_ms();
        for session in self.tracker.expire(now) {
            let prepared = self.preparer.close_session(session, now as i64);
            self.log(prepared.entry);
            self.tracker.remove(session);
            self.owners.remove(&session);
            batch.changed = true;
            batch.triggers.extend(prepared.triggers);
            batch.ended_sessions.push(session);
            self.stats.session_expired();
        }
    }

    /// Removes empty containers and expired TTL nodes, as the leader's reaper does.
    pub(crate) fn reap(&mut self, batch: &mut Batch) {
        let now = now_ms();
        if now < self.next_reap_ms {
            return;
        }
        self.next_reap_ms = now + self.config.reap_interval_ms as u64;
        for path in self.preparer.tree().deletion_candidates(now as i64) {
            if let Some(prepared) = self.preparer.reap(&path, now as i64) {
                self.log(prepared.entry);
                batch.changed = true;
                batch.triggers.extend(prepared.triggers);
            }
        }
    }

    /// Publishes the batch: one message per shard with the shared root and its replies.
    pub(crate) fn finish(&mut self, batch: Batch) -> Vec<(usize, ToShard)> {
        let published = (batch.changed || !batch.ended_sessions.is_empty()).then(|| {
            Arc::new(Published {
                root: self.preparer.tree().clone(),
                triggers: batch.triggers,
                last_zxid: self.preparer.last_zxid(),
                ended_sessions: batch.ended_sessions,
            })
        });
        self.stats.set_last_zxid(self.preparer.last_zxid());
        shard_messages(self.config.shard_count, published, batch.replies)
    }
}

/// One message per shard that has replies, or to every shard when there is a new root.
/// Replies for shards that do not exist (a follower's requests, prepped on the leader) are
/// dropped.
pub(crate) fn shard_messages(
    shard_count: usize,
    published: Option<Arc<Published>>,
    replies: Vec<(ShardId, CoreReply)>,
) -> Vec<(usize, ToShard)> {
    let mut per_shard: Vec<Vec<CoreReply>> = (0..shard_count).map(|_| Vec::new()).collect();
    for (shard, reply) in replies {
        if let Some(replies) = per_shard.get_mut(shard as usize) {
            replies.push(reply);
        }
    }
    per_shard
        .into_iter()
        .enumerate()
        .filter(|(_, replies)| published.is_some() || !replies.is_empty())
        .map(|(shard, replies)| {
            let message = ToShard {
                published: published.clone(),
                replies,
            };
            (shard, message)
        })
        .collect()
}

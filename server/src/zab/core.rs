//! The `Zab` struct: the inputs the shell calls, the state shared by every role, and the
//! helpers every phase uses (emitting commands, committing, leaving a role). The phases live in
//! `election`, `leader` and `learner`.

use bytes::Bytes;
use zinc_protocol::peer::{Notification, PeerMessage, PeerPacket, PeerState};
use zinc_protocol::txn::TxnEntry;
use zinc_protocol::{Epoch, ServerId, Zxid};

use super::election::Election;
use super::leader::Leader;
use super::learner::Learner;
use super::log::{Log, LogEntry};
use super::rng::Rng;
use super::{Command, Config, LearnerCounts, Persisted, Ready, Role, ZabError};

pub(super) enum Phase {
    Looking,
    Learning(Box<Learner>),
    Leading(Box<Leader>),
}

/// One server's Zab state machine. See the module docs for the input/output contract.
pub struct Zab {
    pub(super) config: Config,
    pub(super) rng: Rng,
    pub(super) accepted_epoch: Epoch,
    pub(super) current_epoch: Epoch,
    pub(super) log: Log,
    /// Highest zxid committed here (and handed to the shell in a `Commit`).
    pub(super) committed: Zxid,
    pub(super) now_ticks: u64,
    pub(super) phase: Phase,
    pub(super) election: Election,
    pub(super) role: Role,
    pub(super) commands: Vec<Command>,
}

impl Zab {
    /// A core restarted from what the server had durably stored; it starts by looking for a
    /// leader (the first `ready()` holds its election notifications).
    pub fn new(config: Config, persisted: Persisted) -> Zab {
        assert!(
            config.is_voter(config.id) || config.observers.contains(&config.id),
            "server {:?} is neither a voter nor an observer",
            config.id
        );
        assert!(config.quorum_size() > 0 && config.sync_limit_ticks > 0);
        let log = Log::new(persisted.snapshot_zxid, persisted.entries);
        let mut zab = Zab {
            rng: Rng::new(config.seed),
            accepted_epoch: persisted.accepted_epoch,
            current_epoch: persisted.current_epoch,
            committed: persisted.snapshot_zxid,
            now_ticks: 0,
            phase: Phase::Looking,
            election: Election::new(&config),
            role: Role::Looking,
            commands: Vec::new(),
            log,
            config,
        };
        zab.start_election();
        zab
    }

    /// Drains the commands produced so far; execute them in order (see [`Command`]).
    pub fn ready(&mut self) -> Ready {
        Ready {
            commands: std::mem::take(&mut self.commands),
        }
    }

    /// One unit of time (`tickTime`) has passed.
    pub fn tick(&mut self) {
        self.now_ticks += 1;
        match &self.phase {
            Phase::Looking => self.tick_looking(),
            Phase::Learning(_) => self.tick_learner(),
            Phase::Leading(_) => self.tick_leader(),
        }
    }

    /// A message arrived from `from`.
    pub fn step(&mut self, from: ServerId, message: PeerMessage) {
        if from == self.config.id {
            return;
        }
        match message {
            PeerMessage::Notification(notification) => self.on_notification(from, notification),
            PeerMessage::Packet(packet) => match &self.phase {
                Phase::Leading(_) => self.on_leader_packet(from, packet),
                // A learner connecting to a server that does not lead (yet): refuse, so it
                // retries instead of waiting out initLimit.
                _ if matches!(
                    packet,
                    PeerPacket::FollowerInfo { .. } | PeerPacket::ObserverInfo { .. }
                ) =>
                {
                    self.emit(Command::Disconnect { peer: from })
                }
                Phase::Looking => {}
                Phase::Learning(_) => self.on_learner_packet(from, packet),
            },
        }
    }

    /// The link to `peer` broke (or was closed by the other side).
    pub fn disconnected(&mut self, peer: ServerId) {
        match &mut self.phase {
            Phase::Looking => {}
            Phase::Learning(learner) => {
                if learner.leader == peer {
                    self.learner_disconnected();
                }
            }
            Phase::Leading(leader) => {
                leader.links.remove(&peer);
            }
        }
    }

    /// The shell's log is durable up to `zxid` (it covers every append up to that zxid).
    pub fn on_persisted(&mut self, zxid: Zxid) {
        let zxid = zxid.min(self.log.last_zxid());
        if zxid <= self.log.persisted {
            return;
        }
        self.log.persisted = zxid;
        match &self.phase {
            Phase::Looking => {}
            Phase::Learning(_) => self.learner_persisted(),
            Phase::Leading(_) => self.leader_persisted(),
        }
    }

    /// Leader only: assigns the next zxid to `entry` (overwriting `header.zxid`), logs it and
    /// proposes it to the followers.
    pub fn propose(&mut self, mut entry: TxnEntry) -> Result<Zxid, ZabError> {
        let zxid = self.next_proposal_zxid()?;
        entry.header.zxid = zxid.0;
        self.leader_propose(LogEntry {
            zxid,
            txn: entry.to_bytes(),
        });
        Ok(zxid)
    }

    /// Leader only: the zxid the next `propose` will assign, or why it would refuse. The shell
    /// preps a request against its tree with this zxid before proposing it.
    pub fn next_zxid(&self) -> Result<Zxid, ZabError> {
        self.next_proposal_zxid()
    }

    /// Starts a `sync`: a `SyncDone { request }` follows once this server has applied
    /// everything the leader had proposed when the sync reached it.
    pub fn sync(&mut self, request: i64) -> Result<(), ZabError> {
        match &self.phase {
            Phase::Leading(_) => self.leader_sync(request),
            Phase::Learning(_) => self.learner_sync(request),
            Phase::Looking => Err(ZabError::NotServing),
        }
    }

    pub fn id(&self) -> ServerId {
        self.config.id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn committed_zxid(&self) -> Zxid {
        self.committed
    }

    pub fn last_zxid(&self) -> Zxid {
        self.log.last_zxid()
    }

    pub fn persisted_zxid(&self) -> Zxid {
        self.log.persisted
    }

    /// Leader only: its learners, for monitoring.
    pub fn learners(&self) -> Option<LearnerCounts> {
        match &self.phase {
            Phase::Leading(leader) => Some(leader.learner_counts()),
            _ => None,
        }
    }

    pub fn epochs(&self) -> (Epoch, Epoch) {
        (self.accepted_epoch, self.current_epoch)
    }

    /// The zxid the shell's snapshot is at; log entries up to it are no longer held.
    pub fn log_base(&self) -> Zxid {
        self.log.base
    }

    /// A log entry still held in memory.
    pub fn log_entry(&self, zxid: Zxid) -> Option<&Bytes> {
        self.log.get(zxid).map(|entry| &entry.txn)
    }

    // ----- helpers shared by the phases -----

    pub(super) fn emit(&mut self, command: Command) {
        self.commands.push(command);
    }

    pub(super) fn send(&mut self, to: ServerId, packet: PeerPacket) {
        self.emit(Command::Send {
            to,
            message: PeerMessage::Packet(packet),
        });
    }

    pub(super) fn notify(&mut self, to: ServerId, notification: Notification) {
        self.emit(Command::Send {
            to,
            message: PeerMessage::Notification(notification),
        });
    }

    pub(super) fn set_role(&mut self, role: Role) {
        if self.role != role {
            self.role = role;
            self.emit(Command::RoleChanged { role });
        }
    }

    pub(super) fn persist_epochs(&mut self, accepted: Epoch, current: Epoch) {
        assert!(accepted >= self.accepted_epoch && current >= self.current_epoch);
        assert!(current <= accepted, "current epoch beyond the accepted one");
        self.accepted_epoch = accepted;
        self.current_epoch = current;
        self.emit(Command::PersistEpochs { accepted, current });
    }

    pub(super) fn append(&mut self, entry: LogEntry) {
        self.log.append(entry.clone());
        self.emit(Command::Append { entry });
    }

    /// Commits every held entry up to `target`; returns what was newly committed.
    pub(super) fn commit_to(&mut self, target: Zxid) -> Vec<LogEntry> {
        if target <= self.committed {
            return Vec::new();
        }
        let entries: Vec<LogEntry> = self
            .log
            .entries_after(self.committed)
            .take_while(|entry| entry.zxid <= target)
            .cloned()
            .collect();
        let Some(last) = entries.last() else {
            return entries;
        };
        self.committed = last.zxid;
        self.emit(Command::Commit {
            entries: entries.clone(),
        });
        let retained_max = self.config.log_entries_retained_max;
        if let Some(through) = self.log.compact(self.committed, retained_max) {
            self.emit(Command::Compact { through });
        }
        entries
    }

    /// The state this server announces in notifications.
    pub(super) fn peer_state(&self) -> PeerState {
        match &self.phase {
            Phase::Looking => PeerState::Looking,
            Phase::Leading(_) => PeerState::Leading,
            Phase::Learning(learner) if learner.observer => PeerState::Observing,
            Phase::Learning(_) => PeerState::Following,
        }
    }

    /// Leaves the current role (closing its links) and starts a new election round.
    pub(super) fn go_looking(&mut self) {
        match std::mem::replace(&mut self.phase, Phase::Looking) {
            Phase::Looking => {}
            Phase::Learning(learner) => self.emit(Command::Disconnect {
                peer: learner.leader,
            }),
            Phase::Leading(leader) => {
                for peer in leader.links.keys() {
                    self.emit(Command::Disconnect { peer: *peer });
                }
            }
        }
        self.start_election();
    }

    pub(super) fn check_invariants(&self) {
        assert!(self.committed <= self.log.last_zxid().max(self.log.base));
        assert!(self.log.base <= self.committed);
        assert!(self.current_epoch <= self.accepted_epoch);
    }
}

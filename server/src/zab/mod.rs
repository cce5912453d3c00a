//! The Zab core, sans-IO: fast leader election, discovery, synchronization and broadcast as one
//! deterministic state machine.
//!
//! The shell (or the simulator) feeds it inputs — `step(from, message)`, `tick()`,
//! `propose(entry)`, `on_persisted(zxid)`, `disconnected(peer)`, `sync(request)` — and drains
//! the resulting [`Command`]s with [`Zab::ready`]. The core never touches a socket, a file or a
//! clock; its only randomness is a PRNG seeded from [`Config::seed`]. The boundary: the core
//! decides *what* to send, log, truncate, commit; the shell decides *how* (sockets, WAL device,
//! tree), and reports durability back with `on_persisted`.

mod core;
mod election;
mod leader;
mod learner;
mod log;
pub mod rng;
#[cfg(test)]
mod tests;

pub use self::core::Zab;
pub use self::log::LogEntry;

use bytes::Bytes;
use zinc_protocol::peer::PeerMessage;
use zinc_protocol::{Epoch, ServerId, Zxid};

/// Static configuration of one server's Zab core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub id: ServerId,
    /// Participants: they vote and their ACKs count. Includes `id` unless it is an observer.
    pub voters: Vec<ServerId>,
    /// Observers: they learn committed txns (INFORM) and never vote.
    pub observers: Vec<ServerId>,
    /// Ticks a learner has to connect and synchronize with its leader (`initLimit`).
    pub init_limit_ticks: u64,
    /// Ticks without hearing from the other side before a link is considered dead (`syncLimit`).
    pub sync_limit_ticks: u64,
    /// First election notification resend interval; doubles up to the maximum.
    pub election_backoff_ticks_min: u64,
    pub election_backoff_ticks_max: u64,
    /// Proposals the leader keeps in flight (proposed, not committed) before `propose` says Busy.
    pub proposals_in_flight_max: usize,
    /// Committed entries kept in memory for DIFF; a learner further behind gets a SNAP.
    pub log_entries_retained_max: usize,
    /// Highest zxid counter the leader assigns before it steps down to start a new epoch
    /// (`u32::MAX` in production; the simulator lowers it to exercise rollover).
    pub zxid_counter_max: u32,
    /// Seeds election jitter.
    pub seed: u64,
}

impl Config {
    /// Defaults for an ensemble; `id` must be in `voters` or `observers`.
    pub fn new(id: ServerId, voters: Vec<ServerId>, observers: Vec<ServerId>) -> Config {
        Config {
            id,
            voters,
            observers,
            init_limit_ticks: 10,
            sync_limit_ticks: 5,
            election_backoff_ticks_min: 1,
            election_backoff_ticks_max: 8,
            proposals_in_flight_max: 1000,
            log_entries_retained_max: 100_000,
            zxid_counter_max: u32::MAX,
            seed: id.0,
        }
    }

    pub fn is_voter(&self, id: ServerId) -> bool {
        self.voters.contains(&id)
    }

    /// Smallest number of voters that forms a majority.
    pub fn quorum_size(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

/// What the server durably holds when the core starts: its epochs and the log after its
/// snapshot. The tree the shell loaded is at `snapshot_zxid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Persisted {
    pub accepted_epoch: Epoch,
    pub current_epoch: Epoch,
    pub snapshot_zxid: Zxid,
    /// Log entries after `snapshot_zxid`, in zxid order, all durable.
    pub entries: Vec<LogEntry>,
}

/// A server's part in the ensemble, as reported by [`Command::RoleChanged`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Looking,
    /// Connected to `leader` and synchronizing (not serving yet).
    Syncing {
        leader: ServerId,
    },
    /// Serving: the follower or observer has seen UPTODATE from `leader` in `epoch`.
    Following {
        leader: ServerId,
        epoch: Epoch,
    },
    Observing {
        leader: ServerId,
        epoch: Epoch,
    },
    /// Elected; discovery and synchronization under way, not accepting proposals yet.
    LeaderElect,
    /// A quorum acknowledged NEWLEADER: this server leads `epoch` and accepts proposals.
    Leading {
        epoch: Epoch,
    },
}

/// One thing the shell must do. Commands are executed in list order, with these durability
/// rules:
///
/// - `PersistEpochs`, `Truncate` and `InstallSnapshot` are synchronous: they are durable before
///   the shell executes the next command.
/// - `Append` is asynchronous: the shell starts the write and later reports
///   [`Zab::on_persisted`] with the highest zxid durable so far (appends become durable in
///   order). A `Send` after an `Append` may leave before that append is durable: only the
///   leader does this (its PROPOSALs go out in parallel with its own sync). Every message that
///   claims durability (a follower's ACK, a learner's NEWLEADER ACK) is emitted only after the
///   `on_persisted` that covers it.
/// - `Commit` entries are applied to the tree in order; `SendSnapshot` reads the tree as it is
///   after the commands before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Send {
        to: ServerId,
        message: PeerMessage,
    },
    /// Close the link to `peer`; messages still queued on it are dropped.
    Disconnect {
        peer: ServerId,
    },
    PersistEpochs {
        accepted: Epoch,
        current: Epoch,
    },
    Append {
        entry: LogEntry,
    },
    /// Drop every log entry after `after`.
    Truncate {
        after: Zxid,
    },
    /// Send `to` a SNAP packet holding the tree as it is now (it is at `zxid`).
    SendSnapshot {
        to: ServerId,
        zxid: Zxid,
    },
    /// Replace the tree with this snapshot (taken at `zxid`) and empty the log.
    InstallSnapshot {
        zxid: Zxid,
        snapshot: Bytes,
    },
    /// These entries are committed: apply them to the tree, in order.
    Commit {
        entries: Vec<LogEntry>,
    },
    /// The core no longer needs log entries up to `through` (they are committed and applied);
    /// the shell may snapshot its tree and drop them.
    Compact {
        through: Zxid,
    },
    /// A `sync` finished: this server has applied everything the leader had proposed when the
    /// sync reached it.
    SyncDone {
        request: i64,
    },
    RoleChanged {
        role: Role,
    },
}

/// The commands produced since the last call to [`Zab::ready`], to be executed in order.
#[must_use = "a Ready holds messages, writes and commits that must be carried out"]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    pub commands: Vec<Command>,
}

/// A leader's learners by kind, as `mntr` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LearnerCounts {
    /// Every learner connected, synchronized or not.
    pub learners: usize,
    pub synced_followers: usize,
    pub synced_observers: usize,
}

/// Why `propose` or `sync` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ZabError {
    #[error("not the established leader")]
    NotLeader,
    #[error("not serving: no established leader yet")]
    NotServing,
    #[error("{0} proposals in flight, the limit")]
    Busy(usize),
    #[error("zxid counter exhausted in this epoch; a new epoch is being established")]
    EpochExhausted,
}

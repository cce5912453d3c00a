//! The learner side (followers and observers): discovery (FOLLOWERINFO -> LEADERINFO ->
//! ACKEPOCH), synchronization (DIFF / TRUNC / SNAP, proposals, NEWLEADER -> ACK -> UPTODATE)
//! and broadcast (log PROPOSALs, ACK them once durable, apply COMMITs; observers apply INFORMs).
//!
//! Packets must arrive in the order the leader sent them (one FIFO link): anything out of
//! sequence — a gap in proposal zxids, a sync packet in the wrong stage — makes the learner
//! drop the link and look for a leader again, never guess.

use std::collections::VecDeque;

use zinc_protocol::peer::PeerPacket;
use zinc_protocol::{Epoch, ServerId, Zxid};

use super::core::{Phase, Zab};
use super::log::LogEntry;
use super::{Command, Role, ZabError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LearnerStage {
    AwaitLeaderInfo,
    AwaitSyncMode,
    ReceivingDiff,
    AwaitUpToDate,
    Serving,
}

pub(super) struct Learner {
    pub leader: ServerId,
    pub observer: bool,
    pub stage: LearnerStage,
    pub started_tick: u64,
    pub last_heard_tick: u64,
    pub new_epoch: Epoch,
    /// NEWLEADER was received: ACK it once the log is durable up to here.
    pub newleader_ack_after: Option<Zxid>,
    pub newleader_acked: bool,
    /// Highest zxid the leader said is committed (applied once serving).
    pub commit_pending: Zxid,
    /// Highest zxid ACKed to the leader.
    pub acked: Zxid,
    /// `sync` requests waiting for the commit point to reach a zxid.
    pub syncs: VecDeque<(i64, Zxid)>,
    /// The leader refused or dropped the connection before LEADERINFO: say hello again at the
    /// next tick (until initLimit runs out).
    pub reconnect: bool,
}

enum Next {
    Stay,
    Abandon,
}

impl Zab {
    fn learner(&mut self) -> &mut Learner {
        match &mut self.phase {
            Phase::Learning(learner) => learner,
            _ => unreachable!("learner handler outside the learning phase"),
        }
    }

    pub(super) fn become_learner(&mut self, leader: ServerId, observer: bool) {
        self.phase = Phase::Learning(Box::new(Learner {
            leader,
            observer,
            stage: LearnerStage::AwaitLeaderInfo,
            started_tick: self.now_ticks,
            last_heard_tick: self.now_ticks,
            new_epoch: Epoch(0),
            newleader_ack_after: None,
            newleader_acked: false,
            commit_pending: Zxid::ZERO,
            acked: Zxid::ZERO,
            syncs: VecDeque::new(),
            reconnect: false,
        }));
        self.set_role(Role::Syncing { leader });
        self.send_learner_info();
    }

    fn send_learner_info(&mut self) {
        let learner = self.learner();
        let (leader, observer) = (learner.leader, learner.observer);
        let (accepted_epoch, server_id) = (self.accepted_epoch, self.config.id);
        let info = match observer {
            true => PeerPacket::ObserverInfo {
                accepted_epoch,
                server_id,
            },
            false => PeerPacket::FollowerInfo {
                accepted_epoch,
                server_id,
            },
        };
        self.send(leader, info);
    }

    pub(super) fn on_learner_packet(&mut self, from: ServerId, packet: PeerPacket) {
        let now = self.now_ticks;
        let learner = self.learner();
        if from != learner.leader {
            return;
        }
        learner.last_heard_tick = now;
        let next = match learner.stage {
            LearnerStage::AwaitLeaderInfo => self.on_leader_info(packet),
            LearnerStage::AwaitSyncMode => self.on_sync_mode(packet),
            _ => self.on_stream_packet(packet),
        };
        if let Next::Abandon = next {
            self.go_looking();
        }
        self.check_invariants();
    }

    fn on_leader_info(&mut self, packet: PeerPacket) -> Next {
        let PeerPacket::LeaderInfo { epoch } = packet else {
            return Next::Abandon;
        };
        if epoch < self.accepted_epoch {
            return Next::Abandon;
        }
        if epoch > self.accepted_epoch {
            self.persist_epochs(epoch, self.current_epoch);
        }
        let learner = self.learner();
        learner.new_epoch = epoch;
        learner.stage = LearnerStage::AwaitSyncMode;
        let leader = learner.leader;
        let ack = PeerPacket::AckEpoch {
            current_epoch: self.current_epoch,
            last_zxid: self.log.last_zxid(),
        };
        self.send(leader, ack);
        Next::Stay
    }

    fn on_sync_mode(&mut self, packet: PeerPacket) -> Next {
        match packet {
            PeerPacket::Diff { .. } => {}
            PeerPacket::Trunc { zxid } => {
                assert!(
                    zxid >= self.committed,
                    "TRUNC to {zxid} below the commit point {}",
                    self.committed
                );
                self.log.truncate_after(zxid);
                self.emit(Command::Truncate { after: zxid });
            }
            PeerPacket::Snap { zxid, snapshot } => {
                self.log.reset(zxid);
                self.committed = zxid;
                self.emit(Command::InstallSnapshot { zxid, snapshot });
            }
            _ => return Next::Abandon,
        }
        self.learner().stage = LearnerStage::ReceivingDiff;
        Next::Stay
    }

    /// The zxid a proposal must carry to extend the log without a gap, in the new epoch.
    fn next_in_epoch(&self, epoch: Epoch) -> Zxid {
        let last = self.log.last_zxid();
        match last.epoch() == epoch {
            true => Zxid(last.0 + 1),
            false => Zxid::new(epoch, 1),
        }
    }

    fn on_stream_packet(&mut self, packet: PeerPacket) -> Next {
        let learner = self.learner();
        let (stage, observer, new_epoch, leader) = (
            learner.stage,
            learner.observer,
            learner.new_epoch,
            learner.leader,
        );
        match packet {
            PeerPacket::Proposal { zxid, txn } if !observer => {
                let in_diff = stage == LearnerStage::ReceivingDiff;
                if (in_diff && zxid <= self.log.last_zxid())
                    || (!in_diff && zxid != self.next_in_epoch(new_epoch))
                {
                    return Next::Abandon;
                }
                self.append(LogEntry { zxid, txn });
            }
            PeerPacket::Inform { zxid, txn } if observer => {
                if zxid > self.log.last_zxid() {
                    if zxid != self.next_in_epoch(new_epoch) {
                        return Next::Abandon;
                    }
                    self.append(LogEntry { zxid, txn });
                }
                self.learner_commit(zxid);
            }
            PeerPacket::Commit { zxid } if !observer => self.learner_commit(zxid),
            PeerPacket::NewLeader { zxid } if stage == LearnerStage::ReceivingDiff => {
                if zxid != Zxid::new(new_epoch, 0) {
                    return Next::Abandon;
                }
                // The current epoch is persisted with the NEWLEADER ACK, once the history it
                // vouches for is durable: a crash in between must not leave a server with the
                // new epoch (a winning vote) and a log missing part of the leader's history.
                let last = self.log.last_zxid();
                let learner = self.learner();
                learner.stage = LearnerStage::AwaitUpToDate;
                learner.newleader_ack_after = Some(last);
                self.learner_persisted();
            }
            PeerPacket::UpToDate { zxid } if stage == LearnerStage::AwaitUpToDate => {
                if !self.learner().newleader_acked {
                    return Next::Abandon;
                }
                self.learner().stage = LearnerStage::Serving;
                let role = match observer {
                    true => Role::Observing {
                        leader,
                        epoch: new_epoch,
                    },
                    false => Role::Following {
                        leader,
                        epoch: new_epoch,
                    },
                };
                self.set_role(role);
                self.learner_commit(zxid);
            }
            PeerPacket::Ping { .. } => {
                let zxid = self.log.last_zxid();
                self.send(leader, PeerPacket::Ping { zxid });
            }
            PeerPacket::Sync { zxid, request } if stage != LearnerStage::ReceivingDiff => {
                self.learner().syncs.push_back((request, zxid));
                self.complete_learner_syncs();
            }
            _ => return Next::Abandon,
        }
        Next::Stay
    }

    /// The leader says `zxid` is committed; apply it once serving.
    fn learner_commit(&mut self, zxid: Zxid) {
        let learner = self.learner();
        learner.commit_pending = learner.commit_pending.max(zxid);
        if learner.stage != LearnerStage::Serving {
            return;
        }
        let target = learner.commit_pending.min(self.log.last_zxid());
        self.commit_to(target);
        self.complete_learner_syncs();
    }

    fn complete_learner_syncs(&mut self) {
        let committed = self.committed;
        let learner = self.learner();
        if learner.stage != LearnerStage::Serving {
            return;
        }
        let mut done = Vec::new();
        while learner
            .syncs
            .front()
            .is_some_and(|(_, at)| *at <= committed)
        {
            if let Some((request, _)) = learner.syncs.pop_front() {
                done.push(request);
            }
        }
        for request in done {
            self.emit(Command::SyncDone { request });
        }
    }

    /// Durability moved: send whatever ACKs it now allows (and only those).
    pub(super) fn learner_persisted(&mut self) {
        let persisted = self.log.persisted;
        let learner = self.learner();
        let leader = learner.leader;
        let new_epoch = learner.new_epoch;
        let mut acks = Vec::new();
        if learner
            .newleader_ack_after
            .is_some_and(|after| persisted >= after)
        {
            learner.newleader_ack_after = None;
            learner.newleader_acked = true;
            acks.push(Zxid::new(new_epoch, 0));
            self.persist_epochs(self.accepted_epoch, new_epoch);
        }
        let learner = self.learner();
        if learner.newleader_acked
            && !learner.observer
            && persisted > learner.acked
            && persisted.epoch() == new_epoch
        {
            learner.acked = persisted;
            acks.push(persisted);
        }
        for zxid in acks {
            self.send(leader, PeerPacket::Ack { zxid });
        }
    }

    /// The link to the leader broke: before discovery started, retry; after, look again.
    pub(super) fn learner_disconnected(&mut self) {
        let learner = self.learner();
        match learner.stage {
            LearnerStage::AwaitLeaderInfo => learner.reconnect = true,
            _ => self.go_looking(),
        }
    }

    pub(super) fn tick_learner(&mut self) {
        if std::mem::take(&mut self.learner().reconnect) {
            self.send_learner_info();
        }
        self.tick_learner_deadline();
    }

    fn tick_learner_deadline(&mut self) {
        let now = self.now_ticks;
        let learner = self.learner();
        let expired = match learner.stage {
            LearnerStage::Serving => now - learner.last_heard_tick >= self.config.sync_limit_ticks,
            _ => now - learner.started_tick >= self.config.init_limit_ticks,
        };
        if expired {
            self.go_looking();
        }
    }

    pub(super) fn learner_sync(&mut self, request: i64) -> Result<(), ZabError> {
        let learner = self.learner();
        if learner.stage != LearnerStage::Serving {
            return Err(ZabError::NotServing);
        }
        let leader = learner.leader;
        self.send(
            leader,
            PeerPacket::Sync {
                zxid: Zxid::ZERO,
                request,
            },
        );
        Ok(())
    }
}

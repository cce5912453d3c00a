//! The leader side: discovery (a quorum of FOLLOWERINFO picks the new epoch, a quorum of
//! ACKEPOCH confirms it), synchronization of each learner (DIFF, TRUNC or SNAP by its last
//! zxid, then the missing proposals and NEWLEADER), establishment (a quorum, the leader's own
//! durable log included, ACKed NEWLEADER), and broadcast (pipelined proposals, commit at the
//! quorum's durable point, INFORM to observers, pings, and stepping down without a quorum).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use zinc_protocol::peer::PeerPacket;
use zinc_protocol::{Epoch, ServerId, Zxid};

use super::core::{Phase, Zab};
use super::log::LogEntry;
use super::{Command, LearnerCounts, Role, ZabError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum LeaderStage {
    /// Collecting FOLLOWERINFO (accepted epochs) from a quorum.
    Discovery,
    /// LEADERINFO sent; collecting ACKEPOCH from a quorum.
    AwaitEpochAcks,
    /// Synchronizing learners; waiting for a quorum of NEWLEADER ACKs.
    Syncing,
    Established,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkStage {
    /// FOLLOWERINFO received; LEADERINFO not sent yet (the epoch is not chosen).
    AwaitEpoch,
    AwaitAckEpoch,
    /// ACKEPOCH received with the learner's last zxid; waiting to be synchronized.
    AckedEpoch {
        last_zxid: Zxid,
    },
    /// Sync packets and NEWLEADER sent; proposals and commits are forwarded.
    Syncing,
    /// NEWLEADER ACKed: its ACKs count.
    Synced,
}

pub(super) struct Link {
    pub observer: bool,
    pub stage: LinkStage,
    /// The leader's last zxid when this learner's NEWLEADER was sent.
    pub sync_point: Zxid,
    /// Highest zxid this follower has durably logged, as far as the leader knows.
    pub acked: Zxid,
    pub opened_tick: u64,
    pub last_heard_tick: u64,
}

impl Leader {
    pub(super) fn learner_counts(&self) -> LearnerCounts {
        let synced = |observer: bool| {
            self.links
                .values()
                .filter(|link| link.stage == LinkStage::Synced && link.observer == observer)
                .count()
        };
        LearnerCounts {
            learners: self.links.len(),
            synced_followers: synced(false),
            synced_observers: synced(true),
        }
    }
}

impl Link {
    fn forwarded(&self) -> bool {
        matches!(self.stage, LinkStage::Syncing | LinkStage::Synced)
    }
}

pub(super) struct Leader {
    pub stage: LeaderStage,
    pub new_epoch: Epoch,
    pub started_tick: u64,
    pub links: BTreeMap<ServerId, Link>,
    /// Accepted epochs reported by voters (this server's included).
    pub epoch_infos: BTreeMap<ServerId, Epoch>,
    pub epoch_acks: BTreeSet<ServerId>,
    /// (current epoch, last zxid) when elected: a follower ahead of this means a bad election.
    pub summary: (Epoch, Zxid),
    pub last_proposed: Zxid,
    /// This server's own `sync` requests waiting for the commit point.
    pub syncs: VecDeque<(i64, Zxid)>,
    /// The zxid counter is used up: accept no more proposals, step down once all commit.
    pub exhausted: bool,
}

/// How a learner is brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SyncMode {
    /// Send the entries after `from`.
    Diff { from: Zxid },
    /// Truncate the learner after `to`, then send the entries after it.
    Trunc { to: Zxid },
    /// Send the tree at the commit point, then the entries after it.
    Snap,
}

impl Zab {
    fn leader(&mut self) -> &mut Leader {
        match &mut self.phase {
            Phase::Leading(leader) => leader,
            _ => unreachable!("leader handler outside the leading phase"),
        }
    }

    fn leader_ref(&self) -> Option<&Leader> {
        match &self.phase {
            Phase::Leading(leader) => Some(leader),
            _ => None,
        }
    }

    pub(super) fn become_leader(&mut self) {
        let last_zxid = self.log.last_zxid();
        self.phase = Phase::Leading(Box::new(Leader {
            stage: LeaderStage::Discovery,
            new_epoch: Epoch(0),
            started_tick: self.now_ticks,
            links: BTreeMap::new(),
            epoch_infos: BTreeMap::from([(self.config.id, self.accepted_epoch)]),
            epoch_acks: BTreeSet::new(),
            summary: (self.current_epoch, last_zxid),
            last_proposed: last_zxid,
            syncs: VecDeque::new(),
            exhausted: false,
        }));
        self.set_role(Role::LeaderElect);
        self.maybe_choose_epoch();
    }

    fn quorum_of<'a>(&self, ids: impl Iterator<Item = &'a ServerId>) -> bool {
        let voters = ids.filter(|id| self.config.is_voter(**id)).count();
        voters >= self.config.quorum_size()
    }

    fn maybe_choose_epoch(&mut self) {
        let leader = self.leader();
        if leader.stage != LeaderStage::Discovery {
            return;
        }
        let infos: Vec<ServerId> = leader.epoch_infos.keys().copied().collect();
        if !self.quorum_of(infos.iter()) {
            return;
        }
        let own = self.config.id;
        let leader = self.leader();
        let highest = leader
            .epoch_infos
            .values()
            .max()
            .copied()
            .unwrap_or_default();
        let new_epoch = Epoch(highest.0 + 1);
        leader.new_epoch = new_epoch;
        leader.stage = LeaderStage::AwaitEpochAcks;
        leader.epoch_acks.insert(own);
        self.persist_epochs(new_epoch, self.current_epoch);
        let waiting: Vec<ServerId> = self.leader().links.keys().copied().collect();
        for id in waiting {
            self.send_leader_info(id);
        }
        self.maybe_start_sync();
    }

    fn send_leader_info(&mut self, id: ServerId) {
        let leader = self.leader();
        let epoch = leader.new_epoch;
        if let Some(link) = leader.links.get_mut(&id) {
            link.stage = LinkStage::AwaitAckEpoch;
            self.send(id, PeerPacket::LeaderInfo { epoch });
        }
    }

    pub(super) fn on_leader_packet(&mut self, from: ServerId, packet: PeerPacket) {
        let now = self.now_ticks;
        match packet {
            PeerPacket::FollowerInfo {
                accepted_epoch,
                server_id,
            } if server_id == from && self.config.is_voter(from) => {
                self.on_learner_info(from, accepted_epoch, false)
            }
            PeerPacket::ObserverInfo {
                accepted_epoch,
                server_id,
            } if server_id == from && self.config.observers.contains(&from) => {
                self.on_learner_info(from, accepted_epoch, true)
            }
            packet => {
                let Some(link) = self.leader().links.get_mut(&from) else {
                    return;
                };
                link.last_heard_tick = now;
                self.on_link_packet(from, packet);
            }
        }
        self.check_invariants();
    }

    fn on_learner_info(&mut self, from: ServerId, accepted_epoch: Epoch, observer: bool) {
        let now = self.now_ticks;
        let leader = self.leader();
        leader.links.insert(
            from,
            Link {
                observer,
                stage: LinkStage::AwaitEpoch,
                sync_point: Zxid::ZERO,
                acked: Zxid::ZERO,
                opened_tick: now,
                last_heard_tick: now,
            },
        );
        if leader.stage == LeaderStage::Discovery {
            if !observer {
                leader.epoch_infos.insert(from, accepted_epoch);
            }
            self.maybe_choose_epoch();
        } else {
            self.send_leader_info(from);
        }
    }

    fn on_link_packet(&mut self, from: ServerId, packet: PeerPacket) {
        let new_epoch = self.leader().new_epoch;
        match packet {
            PeerPacket::AckEpoch {
                current_epoch,
                last_zxid,
            } => self.on_ack_epoch(from, current_epoch, last_zxid),
            PeerPacket::Ack { zxid } if zxid == Zxid::new(new_epoch, 0) => {
                self.on_newleader_ack(from)
            }
            PeerPacket::Ack { zxid } => self.on_proposal_ack(from, zxid),
            PeerPacket::Sync { request, .. } => {
                let zxid = self.leader().last_proposed;
                self.send(from, PeerPacket::Sync { zxid, request });
            }
            _ => {}
        }
    }

    fn on_ack_epoch(&mut self, from: ServerId, current_epoch: Epoch, last_zxid: Zxid) {
        let voter = self.config.is_voter(from);
        let leader = self.leader();
        let Some(link) = leader.links.get_mut(&from) else {
            return;
        };
        if link.stage != LinkStage::AwaitAckEpoch {
            return;
        }
        if voter && (current_epoch, last_zxid) > leader.summary {
            // The election picked a leader behind one of its followers: start over.
            self.go_looking();
            return;
        }
        link.stage = LinkStage::AckedEpoch { last_zxid };
        if voter {
            leader.epoch_acks.insert(from);
        }
        match leader.stage {
            LeaderStage::AwaitEpochAcks => self.maybe_start_sync(),
            LeaderStage::Syncing | LeaderStage::Established => self.sync_learner(from),
            LeaderStage::Discovery => {}
        }
    }

    fn maybe_start_sync(&mut self) {
        let leader = self.leader();
        if leader.stage != LeaderStage::AwaitEpochAcks {
            return;
        }
        let acks: Vec<ServerId> = leader.epoch_acks.iter().copied().collect();
        if !self.quorum_of(acks.iter()) {
            return;
        }
        let leader = self.leader();
        leader.stage = LeaderStage::Syncing;
        let ready: Vec<ServerId> = leader
            .links
            .iter()
            .filter(|(_, link)| matches!(link.stage, LinkStage::AckedEpoch { .. }))
            .map(|(id, _)| *id)
            .collect();
        self.maybe_persist_current_epoch();
        for id in ready {
            self.sync_learner(id);
        }
        self.maybe_establish();
    }

    /// DIFF when the learner's last zxid is in this log; TRUNC when it diverged inside an epoch
    /// this log also passes through (so everything before the divergence is shared); SNAP
    /// otherwise (too far behind, or a history this log cannot vouch for).
    pub(super) fn choose_sync_mode(&self, peer_last: Zxid) -> SyncMode {
        if self.log.contains(peer_last) {
            return SyncMode::Diff { from: peer_last };
        }
        let passes_through = self.log.last_zxid().epoch() >= peer_last.epoch();
        if peer_last > self.log.base && passes_through {
            return SyncMode::Trunc {
                to: self.log.last_before(peer_last),
            };
        }
        SyncMode::Snap
    }

    fn sync_learner(&mut self, id: ServerId) {
        let Some(link) = self.leader().links.get(&id) else {
            return;
        };
        let LinkStage::AckedEpoch { last_zxid } = link.stage else {
            return;
        };
        let last = self.log.last_zxid();
        let from = match self.choose_sync_mode(last_zxid) {
            SyncMode::Diff { from } => {
                self.send(id, PeerPacket::Diff { zxid: last });
                from
            }
            SyncMode::Trunc { to } => {
                self.send(id, PeerPacket::Trunc { zxid: to });
                to
            }
            SyncMode::Snap => {
                let zxid = self.committed;
                self.emit(Command::SendSnapshot { to: id, zxid });
                zxid
            }
        };
        let proposals: Vec<PeerPacket> = self
            .log
            .entries_after(from)
            .map(|entry| PeerPacket::Proposal {
                zxid: entry.zxid,
                txn: entry.txn.clone(),
            })
            .collect();
        for packet in proposals {
            self.send(id, packet);
        }
        let leader = self.leader();
        let zxid = Zxid::new(leader.new_epoch, 0);
        if let Some(link) = leader.links.get_mut(&id) {
            link.stage = LinkStage::Syncing;
            link.sync_point = last;
        }
        self.send(id, PeerPacket::NewLeader { zxid });
    }

    fn on_newleader_ack(&mut self, from: ServerId) {
        let leader = self.leader();
        let Some(link) = leader.links.get_mut(&from) else {
            return;
        };
        if link.stage != LinkStage::Syncing {
            return;
        }
        link.stage = LinkStage::Synced;
        link.acked = link.sync_point;
        if leader.stage == LeaderStage::Established {
            let zxid = self.committed;
            self.send(from, PeerPacket::UpToDate { zxid });
            self.advance_commit();
        } else {
            self.maybe_establish();
        }
    }

    fn on_proposal_ack(&mut self, from: ServerId, zxid: Zxid) {
        let leader = self.leader();
        let (new_epoch, last_proposed) = (leader.new_epoch, leader.last_proposed);
        let Some(link) = leader.links.get_mut(&from) else {
            return;
        };
        if link.stage != LinkStage::Synced || link.observer {
            return;
        }
        if zxid.epoch() != new_epoch || zxid > last_proposed {
            return;
        }
        link.acked = link.acked.max(zxid);
        if leader.stage == LeaderStage::Established {
            self.advance_commit();
        }
    }

    /// This server's durable point as a vote in the quorum.
    fn own_ack(&self) -> Zxid {
        self.log.persisted
    }

    /// The leader takes the new epoch as current only once its own history is durable, for the
    /// same reason a learner waits (see `learner_persisted`).
    fn maybe_persist_current_epoch(&mut self) {
        let durable = self.own_ack() >= self.leader().summary.1;
        let leader = self.leader();
        let new_epoch = leader.new_epoch;
        if leader.stage >= LeaderStage::Syncing && durable && self.current_epoch < new_epoch {
            self.persist_epochs(new_epoch, new_epoch);
        }
    }

    fn maybe_establish(&mut self) {
        self.maybe_persist_current_epoch();
        let own_durable = self.own_ack() >= self.leader().summary.1;
        let leader = self.leader();
        if leader.stage != LeaderStage::Syncing {
            return;
        }
        let mut synced: Vec<ServerId> = leader
            .links
            .iter()
            .filter(|(_, link)| link.stage == LinkStage::Synced)
            .map(|(id, _)| *id)
            .collect();
        if own_durable {
            synced.push(self.config.id);
        }
        if !self.quorum_of(synced.iter()) {
            return;
        }
        let leader = self.leader();
        leader.stage = LeaderStage::Established;
        let epoch = leader.new_epoch;
        self.set_role(Role::Leading { epoch });
        self.advance_commit();
        let zxid = self.committed;
        let own = self.config.id;
        for id in synced.into_iter().filter(|id| *id != own) {
            self.send(id, PeerPacket::UpToDate { zxid });
        }
    }

    /// Commits up to the highest zxid a quorum of voters holds durably.
    fn advance_commit(&mut self) {
        let own = self.own_ack();
        let quorum = self.config.quorum_size();
        let Some(leader) = self.leader_ref() else {
            return;
        };
        let mut acks: Vec<Zxid> = leader
            .links
            .iter()
            .filter(|(id, link)| self.config.is_voter(**id) && link.stage == LinkStage::Synced)
            .map(|(_, link)| link.acked)
            .collect();
        if self.config.is_voter(self.config.id) {
            acks.push(own);
        }
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let Some(target) = acks.get(quorum - 1).copied() else {
            return;
        };
        let entries = self.commit_to(target);
        if !entries.is_empty() {
            self.announce_commit(&entries);
        }
        self.complete_leader_syncs();
        let committed = self.committed;
        let leader = self.leader();
        if leader.exhausted && committed == leader.last_proposed {
            // Every zxid of this epoch is used and committed: a new election starts a new epoch.
            self.go_looking();
        }
    }

    fn announce_commit(&mut self, entries: &[LogEntry]) {
        let Some(last) = entries.last().map(|entry| entry.zxid) else {
            return;
        };
        let targets: Vec<(ServerId, bool)> = self
            .leader()
            .links
            .iter()
            .filter(|(_, link)| link.forwarded())
            .map(|(id, link)| (*id, link.observer))
            .collect();
        for (id, observer) in targets {
            if !observer {
                self.send(id, PeerPacket::Commit { zxid: last });
                continue;
            }
            for entry in entries {
                let (zxid, txn) = (entry.zxid, entry.txn.clone());
                self.send(id, PeerPacket::Inform { zxid, txn });
            }
        }
    }

    pub(super) fn next_proposal_zxid(&self) -> Result<Zxid, ZabError> {
        let in_flight_max = self.config.proposals_in_flight_max;
        let committed = self.committed;
        let Phase::Leading(leader) = &self.phase else {
            return Err(ZabError::NotLeader);
        };
        if leader.stage != LeaderStage::Established {
            return Err(ZabError::NotLeader);
        }
        if leader.exhausted {
            return Err(ZabError::EpochExhausted);
        }
        let last = leader.last_proposed;
        let in_flight = match committed.epoch() == last.epoch() {
            true => (last.counter() - committed.counter()) as usize,
            false => last.counter() as usize,
        };
        if in_flight >= in_flight_max {
            return Err(ZabError::Busy(in_flight));
        }
        Ok(match last.epoch() == leader.new_epoch {
            true => Zxid(last.0 + 1),
            false => Zxid::new(leader.new_epoch, 1),
        })
    }

    /// Logs and proposes one entry; PROPOSALs leave before this server's own append is durable.
    pub(super) fn leader_propose(&mut self, entry: LogEntry) {
        let counter_max = self.config.zxid_counter_max;
        let leader = self.leader();
        leader.last_proposed = entry.zxid;
        leader.exhausted = entry.zxid.counter() >= counter_max;
        let followers: Vec<ServerId> = leader
            .links
            .iter()
            .filter(|(_, link)| link.forwarded() && !link.observer)
            .map(|(id, _)| *id)
            .collect();
        self.append(entry.clone());
        for id in followers {
            let (zxid, txn) = (entry.zxid, entry.txn.clone());
            self.send(id, PeerPacket::Proposal { zxid, txn });
        }
    }

    pub(super) fn leader_persisted(&mut self) {
        match self.leader().stage {
            LeaderStage::Syncing => self.maybe_establish(),
            LeaderStage::Established => self.advance_commit(),
            _ => {}
        }
    }

    pub(super) fn leader_sync(&mut self, request: i64) -> Result<(), ZabError> {
        let leader = self.leader();
        if leader.stage != LeaderStage::Established {
            return Err(ZabError::NotServing);
        }
        let zxid = leader.last_proposed;
        leader.syncs.push_back((request, zxid));
        self.complete_leader_syncs();
        Ok(())
    }

    fn complete_leader_syncs(&mut self) {
        let committed = self.committed;
        let leader = self.leader();
        let mut done = Vec::new();
        while leader.syncs.front().is_some_and(|(_, at)| *at <= committed) {
            if let Some((request, _)) = leader.syncs.pop_front() {
                done.push(request);
            }
        }
        for request in done {
            self.emit(Command::SyncDone { request });
        }
    }

    pub(super) fn tick_leader(&mut self) {
        let now = self.now_ticks;
        let own = self.config.id;
        let (init_limit, sync_limit) = (self.config.init_limit_ticks, self.config.sync_limit_ticks);
        let leader = self.leader();
        if leader.stage != LeaderStage::Established {
            if now - leader.started_tick >= init_limit {
                self.go_looking();
            }
            return;
        }
        let dead: Vec<ServerId> = leader
            .links
            .iter()
            .filter(|(_, link)| match link.stage {
                LinkStage::Synced => now - link.last_heard_tick >= sync_limit,
                _ => now - link.opened_tick >= init_limit,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &dead {
            leader.links.remove(id);
        }
        let zxid = leader.last_proposed;
        let alive: Vec<ServerId> = leader
            .links
            .iter()
            .filter(|(_, link)| link.stage == LinkStage::Synced)
            .map(|(id, _)| *id)
            .chain(std::iter::once(own))
            .collect();
        let peers: Vec<ServerId> = leader.links.keys().copied().collect();
        for id in dead {
            self.emit(Command::Disconnect { peer: id });
        }
        if !self.quorum_of(alive.iter()) {
            self.go_looking();
            return;
        }
        for id in peers {
            self.send(id, PeerPacket::Ping { zxid });
        }
    }
}

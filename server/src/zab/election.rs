//! Fast leader election. Votes order by (peer epoch, last zxid, server id); each round has a
//! logical clock (the election epoch). A voter adopts any better vote it hears in its round and
//! re-announces it; when a quorum of voters holds its vote it waits one tick for a better one
//! and then decides. A server that finds the ensemble already settled (notifications in state
//! FOLLOWING/LEADING from a quorum, the leader among them saying LEADING) joins that leader.
//! Unanswered rounds re-announce with doubling, jittered back-off.

use std::collections::BTreeMap;

use zinc_protocol::peer::{Notification, PeerState, Vote};
use zinc_protocol::ServerId;

use super::core::{Phase, Zab};
use super::{Config, Role};

pub(super) struct Election {
    /// The round (election epoch); when not looking, the round that decided `vote`.
    pub logical_clock: u64,
    /// The current proposal; when not looking, the decided vote.
    pub vote: Vote,
    /// Votes heard in this round, by sender (including this server's own).
    pub received: BTreeMap<ServerId, Notification>,
    /// FOLLOWING/LEADING notifications from any round, by sender.
    pub settled: BTreeMap<ServerId, Notification>,
    pub resend_at_tick: u64,
    pub backoff_ticks: u64,
    /// A quorum holds our vote: decide at this tick unless a better vote arrives first.
    pub decide_at_tick: Option<u64>,
}

impl Election {
    pub fn new(config: &Config) -> Election {
        Election {
            logical_clock: 0,
            vote: Vote {
                peer_epoch: Default::default(),
                zxid: Default::default(),
                leader: config.id,
            },
            received: BTreeMap::new(),
            settled: BTreeMap::new(),
            resend_at_tick: 0,
            backoff_ticks: config.election_backoff_ticks_min,
            decide_at_tick: None,
        }
    }
}

impl Zab {
    fn own_vote(&self) -> Vote {
        Vote {
            peer_epoch: self.current_epoch,
            zxid: self.log.last_zxid(),
            leader: self.config.id,
        }
    }

    fn current_notification(&self) -> Notification {
        Notification {
            state: self.peer_state(),
            vote: self.election.vote,
            election_epoch: self.election.logical_clock,
        }
    }

    fn is_observer(&self) -> bool {
        !self.config.is_voter(self.config.id)
    }

    /// Starts a new round with this server's own vote.
    pub(super) fn start_election(&mut self) {
        self.phase = Phase::Looking;
        self.set_role(Role::Looking);
        let election = &mut self.election;
        election.logical_clock += 1;
        election.received.clear();
        election.settled.clear();
        election.decide_at_tick = None;
        election.backoff_ticks = self.config.election_backoff_ticks_min;
        self.election.resend_at_tick = self.now_ticks + self.election.backoff_ticks;
        self.adopt_vote(self.own_vote());
        self.broadcast_notification();
        self.check_vote_quorum();
    }

    fn adopt_vote(&mut self, vote: Vote) {
        self.election.vote = vote;
        self.election.decide_at_tick = None;
        if !self.is_observer() {
            let own = self.current_notification();
            self.election.received.insert(self.config.id, own);
        }
    }

    fn broadcast_notification(&mut self) {
        let notification = self.current_notification();
        let peers: Vec<ServerId> = self.config.voters.clone();
        let own = self.config.id;
        for peer in peers.into_iter().filter(|peer| *peer != own) {
            self.notify(peer, notification);
        }
    }

    pub(super) fn tick_looking(&mut self) {
        if let Some(at) = self.election.decide_at_tick {
            if self.now_ticks >= at {
                self.decide(self.election.vote);
                return;
            }
        }
        if self.now_ticks >= self.election.resend_at_tick {
            let doubled = self.election.backoff_ticks.saturating_mul(2);
            let backoff = doubled.min(self.config.election_backoff_ticks_max);
            self.election.backoff_ticks = backoff;
            let jitter = self.rng.below(backoff / 2 + 1);
            self.election.resend_at_tick = self.now_ticks + backoff + jitter;
            self.broadcast_notification();
        }
    }

    pub(super) fn on_notification(&mut self, from: ServerId, notification: Notification) {
        let sender_votes = self.config.is_voter(from);
        let looking = matches!(self.phase, Phase::Looking);
        if !looking || !sender_votes {
            // Tell a looking server (or an observer, whatever its state) where we stand.
            if notification.state == PeerState::Looking {
                let reply = self.current_notification();
                self.notify(from, reply);
            }
            return;
        }
        if !self.config.is_voter(notification.vote.leader) {
            return;
        }
        match notification.state {
            PeerState::Looking if !self.is_observer() => self.on_looking_vote(from, notification),
            PeerState::Following | PeerState::Leading => self.on_settled_vote(from, notification),
            _ => {}
        }
    }

    fn on_looking_vote(&mut self, from: ServerId, notification: Notification) {
        let round = notification.election_epoch;
        if round > self.election.logical_clock {
            self.election.logical_clock = round;
            self.election.received.clear();
            let best = notification.vote.max(self.own_vote());
            self.adopt_vote(best);
            self.broadcast_notification();
        } else if round < self.election.logical_clock {
            let reply = self.current_notification();
            self.notify(from, reply);
            return;
        } else if notification.vote > self.election.vote {
            self.adopt_vote(notification.vote);
            self.broadcast_notification();
        }
        self.election.received.insert(from, notification);
        self.check_vote_quorum();
    }

    fn voters_holding(&self, votes: &BTreeMap<ServerId, Notification>, vote: Vote) -> usize {
        votes
            .iter()
            .filter(|(id, heard)| self.config.is_voter(**id) && heard.vote == vote)
            .count()
    }

    fn check_vote_quorum(&mut self) {
        if self.is_observer() || !matches!(self.phase, Phase::Looking) {
            return;
        }
        let holding = self.voters_holding(&self.election.received, self.election.vote);
        if holding < self.config.quorum_size() {
            return;
        }
        if holding == self.config.voters.len() {
            self.decide(self.election.vote);
        } else if self.election.decide_at_tick.is_none() {
            self.election.decide_at_tick = Some(self.now_ticks + 1);
        }
    }

    fn on_settled_vote(&mut self, from: ServerId, notification: Notification) {
        let vote = notification.vote;
        let round = notification.election_epoch;
        if round == self.election.logical_clock && !self.is_observer() {
            self.election.received.insert(from, notification);
            let holding = self.voters_holding(&self.election.received, vote);
            if holding >= self.config.quorum_size() && self.leader_confirmed(vote, round) {
                self.decide(vote);
                return;
            }
        }
        self.election.settled.insert(from, notification);
        let agreeing = self
            .election
            .settled
            .values()
            .filter(|heard| heard.vote.leader == vote.leader && heard.election_epoch == round)
            .count();
        if agreeing >= self.config.quorum_size() && self.leader_confirmed(vote, round) {
            self.election.logical_clock = round;
            self.decide(vote);
        }
    }

    /// The leader named by a settled quorum must itself say it leads that round.
    fn leader_confirmed(&self, vote: Vote, round: u64) -> bool {
        if vote.leader == self.config.id {
            return self.election.logical_clock == round;
        }
        [&self.election.settled, &self.election.received]
            .iter()
            .any(|votes| {
                votes.get(&vote.leader).is_some_and(|heard| {
                    heard.state == PeerState::Leading && heard.election_epoch == round
                })
            })
    }

    fn decide(&mut self, vote: Vote) {
        self.election.vote = vote;
        self.election.decide_at_tick = None;
        if vote.leader == self.config.id {
            self.become_leader();
        } else {
            let observer = self.is_observer();
            self.become_learner(vote.leader, observer);
        }
    }
}

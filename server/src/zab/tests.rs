//! Exact-output tests of the Zab core: scripted inputs, and the exact list of commands each
//! one must produce.

use bytes::Bytes;
use zinc_protocol::peer::{Notification, PeerMessage, PeerPacket, PeerState, Vote};
use zinc_protocol::txn::{CreateTxn, Txn, TxnEntry, TxnHeader};
use zinc_protocol::{Epoch, OpCode, ServerId, Zxid};

use super::leader::SyncMode;
use super::{Command, Config, LogEntry, Persisted, Role, Zab, ZabError};

const S1: ServerId = ServerId(1);
const S2: ServerId = ServerId(2);
const S3: ServerId = ServerId(3);
const OBSERVER: ServerId = ServerId(9);

fn config(id: ServerId) -> Config {
    Config::new(id, vec![S1, S2, S3], vec![OBSERVER])
}

fn zxid(epoch: u32, counter: u32) -> Zxid {
    Zxid::new(Epoch(epoch), counter)
}

fn entry(epoch: u32, counter: u32) -> LogEntry {
    LogEntry {
        zxid: zxid(epoch, counter),
        txn: Bytes::from(format!("txn {epoch}:{counter}")),
    }
}

/// Durable state: epochs `epoch` and the log `counters` of that epoch.
fn persisted(epoch: u32, counters: &[u32]) -> Persisted {
    Persisted {
        accepted_epoch: Epoch(epoch),
        current_epoch: Epoch(epoch),
        snapshot_zxid: Zxid::ZERO,
        entries: counters.iter().map(|c| entry(epoch, *c)).collect(),
    }
}

fn commands(zab: &mut Zab) -> Vec<Command> {
    zab.ready().commands
}

fn packet(to: ServerId, packet: PeerPacket) -> Command {
    Command::Send {
        to,
        message: PeerMessage::Packet(packet),
    }
}

fn proposal_to(to: ServerId, epoch: u32, counter: u32) -> Command {
    let LogEntry { zxid, txn } = entry(epoch, counter);
    packet(to, PeerPacket::Proposal { zxid, txn })
}

fn vote(epoch: u32, last: Zxid, leader: ServerId) -> Vote {
    Vote {
        peer_epoch: Epoch(epoch),
        zxid: last,
        leader,
    }
}

fn notification(state: PeerState, vote: Vote, round: u64) -> PeerMessage {
    PeerMessage::Notification(Notification {
        state,
        vote,
        election_epoch: round,
    })
}

fn notify(to: ServerId, state: PeerState, vote: Vote, round: u64) -> Command {
    Command::Send {
        to,
        message: notification(state, vote, round),
    }
}

fn txn_entry(path: &str) -> TxnEntry {
    TxnEntry {
        header: TxnHeader {
            client_id: 1,
            cxid: 1,
            zxid: 0,
            time: 0,
            op_type: OpCode::Create.as_i32(),
        },
        txn: Txn::Create(CreateTxn {
            path: path.into(),
            data: None,
            acl: Vec::new(),
            ephemeral: false,
            parent_cversion: 0,
        }),
        digest: None,
    }
}

#[test]
fn election_starts_by_announcing_its_own_vote() {
    let mut zab = Zab::new(config(S1), persisted(1, &[1, 2]));
    let own = vote(1, zxid(1, 2), S1);
    assert_eq!(
        commands(&mut zab),
        vec![
            notify(S2, PeerState::Looking, own, 1),
            notify(S3, PeerState::Looking, own, 1),
        ]
    );
}

#[test]
fn election_adopts_a_better_vote_and_decides_a_tick_after_a_quorum() {
    let mut zab = Zab::new(config(S1), persisted(1, &[1]));
    let _ = commands(&mut zab);
    let better = vote(1, zxid(1, 5), S2);
    zab.step(S2, notification(PeerState::Looking, better, 1));
    assert_eq!(
        commands(&mut zab),
        vec![
            notify(S2, PeerState::Looking, better, 1),
            notify(S3, PeerState::Looking, better, 1),
        ]
    );
    // A worse vote changes nothing; the quorum {1, 2} waits one tick for better news.
    zab.step(
        S3,
        notification(PeerState::Looking, vote(0, Zxid::ZERO, S3), 1),
    );
    assert_eq!(commands(&mut zab), vec![]);
    zab.tick();
    assert_eq!(
        commands(&mut zab),
        vec![
            Command::RoleChanged {
                role: Role::Syncing { leader: S2 }
            },
            packet(
                S2,
                PeerPacket::FollowerInfo {
                    accepted_epoch: Epoch(1),
                    server_id: S1
                }
            ),
        ]
    );
}

#[test]
fn election_answers_an_older_round_and_jumps_to_a_newer_one() {
    let mut zab = Zab::new(config(S1), persisted(1, &[1]));
    let _ = commands(&mut zab);
    let own = vote(1, zxid(1, 1), S1);
    zab.step(
        S3,
        notification(PeerState::Looking, vote(0, Zxid::ZERO, S3), 0),
    );
    assert_eq!(
        commands(&mut zab),
        vec![notify(S3, PeerState::Looking, own, 1)]
    );
    zab.step(
        S2,
        notification(PeerState::Looking, vote(0, Zxid::ZERO, S2), 7),
    );
    assert_eq!(
        commands(&mut zab),
        vec![
            notify(S2, PeerState::Looking, own, 7),
            notify(S3, PeerState::Looking, own, 7),
        ]
    );
}

#[test]
fn election_joins_a_settled_ensemble() {
    let mut zab = Zab::new(config(S3), persisted(1, &[]));
    let _ = commands(&mut zab);
    let settled = vote(2, zxid(2, 4), S2);
    zab.step(S1, notification(PeerState::Following, settled, 5));
    assert_eq!(commands(&mut zab), vec![]);
    zab.step(S2, notification(PeerState::Leading, settled, 5));
    assert_eq!(
        commands(&mut zab),
        vec![
            Command::RoleChanged {
                role: Role::Syncing { leader: S2 }
            },
            packet(
                S2,
                PeerPacket::FollowerInfo {
                    accepted_epoch: Epoch(1),
                    server_id: S3
                }
            ),
        ]
    );
    // Once following, a looking server is told where this one stands.
    zab.step(
        S1,
        notification(PeerState::Looking, vote(0, Zxid::ZERO, S1), 6),
    );
    assert_eq!(
        commands(&mut zab),
        vec![notify(S1, PeerState::Following, settled, 5)]
    );
}

#[test]
fn election_resends_with_back_off() {
    let mut zab = Zab::new(config(S1), persisted(1, &[]));
    let _ = commands(&mut zab);
    let mut resend_ticks = Vec::new();
    for tick in 1..=40u64 {
        zab.tick();
        if !commands(&mut zab).is_empty() {
            resend_ticks.push(tick);
        }
    }
    assert_eq!(resend_ticks[0], 1);
    let gaps: Vec<u64> = resend_ticks.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|w| w[1] >= w[0] || w[1] >= 8),
        "{gaps:?}"
    );
    assert!(gaps.iter().all(|gap| *gap <= 12), "{gaps:?}");
}

/// S1 elected by S2 (S1's log is ahead); returns S1 as leader-elect, S2's ready drained.
fn elected_leader(leader_log: &[u32]) -> Zab {
    elected_leader_from(persisted(1, leader_log))
}

fn elected_leader_from(state: Persisted) -> Zab {
    let epoch = state.current_epoch.0;
    let mut zab = Zab::new(config(S1), state);
    let own = vote(epoch, zab.last_zxid(), S1);
    zab.step(S2, notification(PeerState::Looking, own, 1));
    zab.tick();
    let out = commands(&mut zab);
    assert_eq!(
        out.last(),
        Some(&Command::RoleChanged {
            role: Role::LeaderElect
        })
    );
    zab
}

#[test]
fn discovery_picks_a_new_epoch_from_a_quorum_of_followerinfo() {
    let mut zab = elected_leader(&[1, 2]);
    zab.step(
        S2,
        PeerMessage::Packet(PeerPacket::FollowerInfo {
            accepted_epoch: Epoch(3),
            server_id: S2,
        }),
    );
    assert_eq!(
        commands(&mut zab),
        vec![
            Command::PersistEpochs {
                accepted: Epoch(4),
                current: Epoch(1)
            },
            packet(S2, PeerPacket::LeaderInfo { epoch: Epoch(4) }),
        ]
    );
}

/// S1 leading epoch 2 over S2 (whose log ends at `follower_last`); drained up to NEWLEADER.
fn syncing_leader(leader_log: &[u32], follower_last: Zxid) -> (Zab, Vec<Command>) {
    syncing_leader_from(persisted(1, leader_log), Epoch(1), follower_last)
}

fn syncing_leader_from(
    state: Persisted,
    follower_epoch: Epoch,
    follower_last: Zxid,
) -> (Zab, Vec<Command>) {
    let mut zab = elected_leader_from(state);
    zab.step(
        S2,
        PeerMessage::Packet(PeerPacket::FollowerInfo {
            accepted_epoch: Epoch(1),
            server_id: S2,
        }),
    );
    let _ = commands(&mut zab);
    zab.step(
        S2,
        PeerMessage::Packet(PeerPacket::AckEpoch {
            current_epoch: follower_epoch,
            last_zxid: follower_last,
        }),
    );
    let out = commands(&mut zab);
    (zab, out)
}

#[test]
fn sync_sends_a_diff_then_newleader() {
    let (_, out) = syncing_leader(&[1, 2, 3], zxid(1, 1));
    assert_eq!(
        out,
        vec![
            Command::PersistEpochs {
                accepted: Epoch(2),
                current: Epoch(2)
            },
            packet(S2, PeerPacket::Diff { zxid: zxid(1, 3) }),
            proposal_to(S2, 1, 2),
            proposal_to(S2, 1, 3),
            packet(S2, PeerPacket::NewLeader { zxid: zxid(2, 0) }),
        ]
    );
}

#[test]
fn sync_truncates_a_follower_that_diverged() {
    // The follower logged 2:1..2:4 from a leader of epoch 2 that this leader never synced to.
    let mut state = persisted(3, &[]);
    state.entries = vec![entry(1, 1), entry(1, 2), entry(3, 1)];
    let (_, out) = syncing_leader_from(state, Epoch(2), zxid(2, 4));
    assert_eq!(
        out[1..],
        [
            packet(S2, PeerPacket::Trunc { zxid: zxid(1, 2) }),
            proposal_to(S2, 3, 1),
            packet(S2, PeerPacket::NewLeader { zxid: zxid(4, 0) }),
        ]
    );
}

#[test]
fn sync_mode_follows_the_learners_last_zxid() {
    let mut persisted = persisted(3, &[]);
    persisted.snapshot_zxid = zxid(1, 5);
    persisted.entries = vec![entry(1, 6), entry(1, 7), entry(3, 1), entry(3, 2)];
    let zab = Zab::new(config(S1), persisted);
    assert_eq!(
        zab.choose_sync_mode(zxid(1, 7)),
        SyncMode::Diff { from: zxid(1, 7) }
    );
    assert_eq!(
        zab.choose_sync_mode(zxid(1, 5)),
        SyncMode::Diff { from: zxid(1, 5) }
    );
    // Diverged inside epoch 1 after 1:7, and an epoch-2 history this log never took.
    assert_eq!(
        zab.choose_sync_mode(zxid(1, 9)),
        SyncMode::Trunc { to: zxid(1, 7) }
    );
    assert_eq!(
        zab.choose_sync_mode(zxid(2, 4)),
        SyncMode::Trunc { to: zxid(1, 7) }
    );
    assert_eq!(
        zab.choose_sync_mode(zxid(3, 9)),
        SyncMode::Trunc { to: zxid(3, 2) }
    );
    // Behind the snapshot, or ahead in an epoch this log has not reached.
    assert_eq!(zab.choose_sync_mode(zxid(1, 2)), SyncMode::Snap);
    assert_eq!(zab.choose_sync_mode(zxid(4, 1)), SyncMode::Snap);
}

/// S1 established as leader of epoch 2 with S2 synced.
fn established_leader() -> Zab {
    let (mut zab, _) = syncing_leader(&[1], zxid(1, 1));
    zab.step(
        S2,
        PeerMessage::Packet(PeerPacket::Ack { zxid: zxid(2, 0) }),
    );
    assert_eq!(
        commands(&mut zab),
        vec![
            Command::RoleChanged {
                role: Role::Leading { epoch: Epoch(2) }
            },
            // The initial history commits with the quorum's NEWLEADER ACKs.
            Command::Commit {
                entries: vec![entry(1, 1)]
            },
            packet(S2, PeerPacket::Commit { zxid: zxid(1, 1) }),
            packet(S2, PeerPacket::UpToDate { zxid: zxid(1, 1) }),
        ]
    );
    zab
}

#[test]
fn broadcast_proposes_before_its_own_sync_and_commits_on_a_quorum() {
    let mut zab = established_leader();
    let zxid21 = zab.propose(txn_entry("/a")).expect("leader accepts");
    assert_eq!(zxid21, zxid(2, 1));
    let mut txn = txn_entry("/a");
    txn.header.zxid = zxid21.0;
    let logged = LogEntry {
        zxid: zxid21,
        txn: txn.to_bytes(),
    };
    assert_eq!(
        commands(&mut zab),
        vec![
            Command::Append {
                entry: logged.clone()
            },
            packet(
                S2,
                PeerPacket::Proposal {
                    zxid: zxid21,
                    txn: logged.txn.clone()
                }
            ),
        ]
    );
    // The leader's own durability alone is not a quorum of 3.
    zab.on_persisted(zxid21);
    assert_eq!(commands(&mut zab), vec![]);
    zab.step(S2, PeerMessage::Packet(PeerPacket::Ack { zxid: zxid21 }));
    assert_eq!(
        commands(&mut zab),
        vec![
            Command::Commit {
                entries: vec![logged]
            },
            packet(S2, PeerPacket::Commit { zxid: zxid21 }),
        ]
    );
    assert_eq!(zab.committed_zxid(), zxid21);
}

#[test]
fn next_zxid_is_what_propose_assigns_and_learners_are_counted() {
    let mut zab = established_leader();
    let next = zab.next_zxid().expect("leading");
    assert_eq!(zab.propose(txn_entry("/a")), Ok(next));
    assert_eq!(zab.next_zxid(), Ok(Zxid(next.0 + 1)));
    let counts = zab.learners().expect("leading");
    assert_eq!(
        (
            counts.learners,
            counts.synced_followers,
            counts.synced_observers
        ),
        (1, 1, 0)
    );
    assert_eq!(serving_follower().learners(), None);
    assert_eq!(serving_follower().next_zxid(), Err(ZabError::NotLeader));
}

#[test]
fn broadcast_bounds_proposals_in_flight() {
    let mut zab = established_leader();
    zab.config.proposals_in_flight_max = 2;
    assert!(zab.propose(txn_entry("/a")).is_ok());
    assert!(zab.propose(txn_entry("/b")).is_ok());
    assert_eq!(zab.propose(txn_entry("/c")), Err(ZabError::Busy(2)));
}

#[test]
fn counter_rollover_steps_down_once_the_epoch_commits() {
    let mut zab = established_leader();
    zab.config.zxid_counter_max = 1;
    let last = zab.propose(txn_entry("/a")).expect("accepted");
    assert_eq!(zab.propose(txn_entry("/b")), Err(ZabError::EpochExhausted));
    let _ = commands(&mut zab);
    zab.on_persisted(last);
    zab.step(S2, PeerMessage::Packet(PeerPacket::Ack { zxid: last }));
    let out = commands(&mut zab);
    assert!(out.contains(&Command::Disconnect { peer: S2 }), "{out:?}");
    assert!(out.contains(&Command::RoleChanged {
        role: Role::Looking
    }));
    assert_eq!(zab.role(), Role::Looking);
}

/// S2 following S1 in epoch 2, synchronized by a DIFF and serving.
fn serving_follower() -> Zab {
    let mut zab = Zab::new(config(S2), persisted(1, &[1]));
    let settled = vote(1, zxid(1, 1), S1);
    zab.step(S3, notification(PeerState::Following, settled, 1));
    zab.step(S1, notification(PeerState::Leading, settled, 1));
    let _ = commands(&mut zab);
    let from_leader = |zab: &mut Zab, packet: PeerPacket| zab.step(S1, PeerMessage::Packet(packet));
    from_leader(&mut zab, PeerPacket::LeaderInfo { epoch: Epoch(2) });
    assert_eq!(
        commands(&mut zab),
        vec![
            Command::PersistEpochs {
                accepted: Epoch(2),
                current: Epoch(1)
            },
            packet(
                S1,
                PeerPacket::AckEpoch {
                    current_epoch: Epoch(1),
                    last_zxid: zxid(1, 1)
                }
            ),
        ]
    );
    from_leader(&mut zab, PeerPacket::Diff { zxid: zxid(1, 2) });
    let proposal = PeerPacket::Proposal {
        zxid: zxid(1, 2),
        txn: entry(1, 2).txn,
    };
    from_leader(&mut zab, proposal);
    from_leader(&mut zab, PeerPacket::NewLeader { zxid: zxid(2, 0) });
    // NEWLEADER is ACKed only once the diff is durable.
    assert_eq!(
        commands(&mut zab),
        vec![Command::Append { entry: entry(1, 2) },]
    );
    // The new epoch becomes current only with the durable diff, right before the ACK.
    zab.on_persisted(zxid(1, 2));
    assert_eq!(
        commands(&mut zab),
        vec![
            Command::PersistEpochs {
                accepted: Epoch(2),
                current: Epoch(2)
            },
            packet(S1, PeerPacket::Ack { zxid: zxid(2, 0) }),
        ]
    );
    from_leader(&mut zab, PeerPacket::UpToDate { zxid: zxid(1, 2) });
    assert_eq!(
        commands(&mut zab),
        vec![
            Command::RoleChanged {
                role: Role::Following {
                    leader: S1,
                    epoch: Epoch(2)
                }
            },
            Command::Commit {
                entries: vec![entry(1, 1), entry(1, 2)]
            },
        ]
    );
    zab
}

#[test]
fn follower_acks_a_proposal_only_after_it_is_persisted() {
    let mut zab = serving_follower();
    let proposal = PeerPacket::Proposal {
        zxid: zxid(2, 1),
        txn: entry(2, 1).txn,
    };
    zab.step(S1, PeerMessage::Packet(proposal));
    assert_eq!(
        commands(&mut zab),
        vec![Command::Append { entry: entry(2, 1) }]
    );
    zab.on_persisted(zxid(2, 1));
    assert_eq!(
        commands(&mut zab),
        vec![packet(S1, PeerPacket::Ack { zxid: zxid(2, 1) })]
    );
    zab.step(
        S1,
        PeerMessage::Packet(PeerPacket::Commit { zxid: zxid(2, 1) }),
    );
    assert_eq!(
        commands(&mut zab),
        vec![Command::Commit {
            entries: vec![entry(2, 1)]
        }]
    );
}

#[test]
fn follower_drops_the_leader_on_a_proposal_gap() {
    let mut zab = serving_follower();
    let proposal = PeerPacket::Proposal {
        zxid: zxid(2, 2),
        txn: entry(2, 2).txn,
    };
    zab.step(S1, PeerMessage::Packet(proposal));
    let out = commands(&mut zab);
    assert_eq!(out[0], Command::Disconnect { peer: S1 });
    assert_eq!(
        out[1],
        Command::RoleChanged {
            role: Role::Looking
        }
    );
}

#[test]
fn follower_gives_up_on_a_silent_leader_after_sync_limit() {
    let mut zab = serving_follower();
    for _ in 0..4 {
        zab.tick();
    }
    assert_eq!(zab.role().clone(), zab.role());
    assert!(matches!(zab.role(), Role::Following { .. }));
    zab.tick();
    assert_eq!(zab.role(), Role::Looking);
}

#[test]
fn follower_sync_completes_once_the_leaders_zxid_is_committed() {
    let mut zab = serving_follower();
    zab.sync(44).expect("serving");
    assert_eq!(
        commands(&mut zab),
        vec![packet(
            S1,
            PeerPacket::Sync {
                zxid: Zxid::ZERO,
                request: 44
            }
        )]
    );
    let proposal = PeerPacket::Proposal {
        zxid: zxid(2, 1),
        txn: entry(2, 1).txn,
    };
    zab.step(S1, PeerMessage::Packet(proposal));
    zab.step(
        S1,
        PeerMessage::Packet(PeerPacket::Sync {
            zxid: zxid(2, 1),
            request: 44,
        }),
    );
    let _ = commands(&mut zab);
    zab.step(
        S1,
        PeerMessage::Packet(PeerPacket::Commit { zxid: zxid(2, 1) }),
    );
    assert_eq!(
        commands(&mut zab),
        vec![
            Command::Commit {
                entries: vec![entry(2, 1)]
            },
            Command::SyncDone { request: 44 },
        ]
    );
}

#[test]
fn observer_gets_informs_and_never_acks() {
    let mut zab = established_leader();
    zab.step(
        OBSERVER,
        PeerMessage::Packet(PeerPacket::ObserverInfo {
            accepted_epoch: Epoch(1),
            server_id: OBSERVER,
        }),
    );
    zab.step(
        OBSERVER,
        PeerMessage::Packet(PeerPacket::AckEpoch {
            current_epoch: Epoch(1),
            last_zxid: zxid(1, 1),
        }),
    );
    zab.step(
        OBSERVER,
        PeerMessage::Packet(PeerPacket::Ack { zxid: zxid(2, 0) }),
    );
    let _ = commands(&mut zab);
    let zxid21 = zab.propose(txn_entry("/o")).expect("leader");
    let out = commands(&mut zab);
    assert!(out.iter().all(|command| !matches!(
        command,
        Command::Send { to, .. } if *to == OBSERVER
    )));
    zab.on_persisted(zxid21);
    // An observer's ACK does not count toward the quorum.
    zab.step(
        OBSERVER,
        PeerMessage::Packet(PeerPacket::Ack { zxid: zxid21 }),
    );
    assert_eq!(commands(&mut zab), vec![]);
    zab.step(S2, PeerMessage::Packet(PeerPacket::Ack { zxid: zxid21 }));
    let out = commands(&mut zab);
    let txn = zab.log_entry(zxid21).expect("held").clone();
    assert_eq!(
        out[1..],
        [
            packet(S2, PeerPacket::Commit { zxid: zxid21 }),
            packet(OBSERVER, PeerPacket::Inform { zxid: zxid21, txn }),
        ]
    );
}

#[test]
fn leader_steps_down_when_a_follower_has_a_newer_history() {
    let (zab, _) = {
        let mut zab = elected_leader(&[1]);
        zab.step(
            S2,
            PeerMessage::Packet(PeerPacket::FollowerInfo {
                accepted_epoch: Epoch(1),
                server_id: S2,
            }),
        );
        let _ = commands(&mut zab);
        zab.step(
            S2,
            PeerMessage::Packet(PeerPacket::AckEpoch {
                current_epoch: Epoch(1),
                last_zxid: zxid(1, 9),
            }),
        );
        let out = commands(&mut zab);
        (zab, out)
    };
    assert_eq!(zab.role(), Role::Looking);
}

#[test]
fn standalone_server_leads_alone() {
    let mut zab = Zab::new(Config::new(S1, vec![S1], vec![]), persisted(0, &[]));
    assert_eq!(
        commands(&mut zab),
        vec![
            Command::RoleChanged {
                role: Role::LeaderElect
            },
            Command::PersistEpochs {
                accepted: Epoch(1),
                current: Epoch(0)
            },
            Command::PersistEpochs {
                accepted: Epoch(1),
                current: Epoch(1)
            },
            Command::RoleChanged {
                role: Role::Leading { epoch: Epoch(1) }
            },
        ]
    );
    let zxid11 = zab.propose(txn_entry("/s")).expect("leader");
    let _ = commands(&mut zab);
    zab.on_persisted(zxid11);
    let out = commands(&mut zab);
    assert!(matches!(&out[..], [Command::Commit { entries }] if entries.len() == 1));
}

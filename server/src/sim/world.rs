//! The simulated world: the event queue on simulated time, the servers, the network, the fault
//! schedule and the client workload, all driven by one seeded PRNG. `run` plays one seed.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Bytes, BytesMut};
use zinc_protocol::peer::{PeerMessage, PeerPacket};
use zinc_protocol::{ServerId, Zxid};
use zinc_storage::tree::Tree;

use super::check::{fingerprint, Check, Checker};
use super::net::Net;
use super::server::Server;
use super::workload::Workload;
use crate::zab::rng::Rng;
use crate::zab::{Command, Config, Role};

const TICK_MS: u64 = 100;
/// After the faults stop, a leader must be established and a new write committed within this.
pub const LIVENESS_TICKS_MAX: u64 = 60;
const FRAME_BYTES_MAX: usize = 64 << 20;
/// A run that keeps going this far past its step budget without settling is a failure.
const STEPS_GRACE_MAX: u64 = 200_000;

/// Fault probabilities, per million.
const QUORUM_LOSS_PPM: u64 = 1_000;
const FRAME_CORRUPTION_PPM: u64 = 300;
const NOTIFICATION_LOSS_PPM: u64 = 50_000;
const NOTIFICATION_DUPLICATE_PPM: u64 = 50_000;
const DELAY_SPIKE_PPM: u64 = 20_000;
/// Per fault roll (every tick).
const CRASH_PPM: u64 = 25_000;
const PARTITION_PPM: u64 = 20_000;
/// Of the crash rolls, the share that takes down several servers at once.
const CORRELATED_CRASH_PPM: u64 = 300_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimOptions {
    pub seed: u64,
    /// Events to process (at least); faults stop after two thirds of them.
    pub steps: u64,
    /// Print every event.
    pub trace: bool,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub seed: u64,
    pub steps: u64,
    pub time_ms: u64,
    pub voters: usize,
    pub observers: usize,
    /// Fingerprint of every event in order: equal for replays of the same seed.
    pub trace_hash: u64,
    pub stats: Stats,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub messages: u64,
    pub crashes: u64,
    pub torn_writes: u64,
    pub unsynced_bytes_lost: u64,
    pub partitions: u64,
    pub links_broken: u64,
    pub frames_corrupted: u64,
    pub notifications_lost: u64,
    pub notifications_duplicated: u64,
    pub elections: u64,
    pub leaders_established: u64,
    pub snapshots_sent: u64,
    pub truncations: u64,
    pub committed_txns: u64,
    pub acked_writes: u64,
    pub syncs_completed: u64,
    pub liveness_ms: u64,
}

impl Stats {
    /// Sums another run's counts into these (the liveness time keeps the worst).
    pub fn add(&mut self, other: &Stats) {
        self.messages += other.messages;
        self.crashes += other.crashes;
        self.torn_writes += other.torn_writes;
        self.unsynced_bytes_lost += other.unsynced_bytes_lost;
        self.partitions += other.partitions;
        self.links_broken += other.links_broken;
        self.frames_corrupted += other.frames_corrupted;
        self.notifications_lost += other.notifications_lost;
        self.notifications_duplicated += other.notifications_duplicated;
        self.elections += other.elections;
        self.leaders_established += other.leaders_established;
        self.snapshots_sent += other.snapshots_sent;
        self.truncations += other.truncations;
        self.committed_txns += other.committed_txns;
        self.acked_writes += other.acked_writes;
        self.syncs_completed += other.syncs_completed;
        self.liveness_ms = self.liveness_ms.max(other.liveness_ms);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub seed: u64,
    pub step: u64,
    pub time_ms: u64,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "violation: seed={} step={} t={}ms: {} (replay: zinc-sim --seed {})",
            self.seed, self.step, self.time_ms, self.message, self.seed
        )
    }
}

#[derive(Debug)]
enum Event {
    Tick(usize),
    Deliver {
        from: usize,
        to: usize,
        /// The connection's generation; `None` for election datagrams.
        generation: Option<u64>,
        frame: Bytes,
    },
    Disconnected {
        server: usize,
        peer: usize,
        /// The connection generation whose end this reports.
        generation: u64,
    },
    SyncDone {
        server: usize,
        incarnation: u64,
    },
    ClientWrite,
    ClientSync,
    FaultRoll,
    Restart(usize),
    Heal(u64),
}

struct Liveness {
    started_ms: u64,
    deadline_ms: u64,
    acked_before: usize,
    met: bool,
}

struct World {
    options: SimOptions,
    rng: Rng,
    now_ms: u64,
    step: u64,
    queue: BTreeMap<(u64, u64), Event>,
    sequence: u64,
    servers: Vec<Server>,
    net: Net,
    checker: Checker,
    workload: Workload,
    /// Snapshots in transit travel by reference: SNAP carries an index here.
    snapshots: Vec<Tree>,
    faults: bool,
    sync_requests: i64,
    liveness: Option<Liveness>,
    stats: Stats,
    trace_hash: u64,
}

/// Plays one seed. A panic inside the core (a failed assertion) is a violation too.
pub fn run(options: &SimOptions) -> Result<Outcome, Box<Violation>> {
    let mut world = World::new(*options);
    let result = catch_unwind(AssertUnwindSafe(|| world.run_loop()));
    let message = match result {
        Ok(Ok(())) => return Ok(world.outcome()),
        Ok(Err(message)) => message,
        Err(panic) => match panic.downcast_ref::<String>() {
            Some(text) => format!("panic: {text}"),
            None => format!(
                "panic: {}",
                panic
                    .downcast_ref::<&str>()
                    .copied()
                    .unwrap_or("(no message)")
            ),
        },
    };
    Err(Box::new(Violation {
        seed: options.seed,
        step: world.step,
        time_ms: world.now_ms,
        message,
    }))
}

fn ensemble(rng: &mut Rng) -> (Vec<ServerId>, Vec<ServerId>) {
    let size = if rng.chance(500_000) { 3 } else { 5 };
    let ids: Vec<ServerId> = (1..=size).map(ServerId).collect();
    let observers = usize::from(size == 5 && rng.chance(500_000));
    let (voters, observers) = ids.split_at(size as usize - observers);
    (voters.to_vec(), observers.to_vec())
}

impl World {
    fn new(options: SimOptions) -> World {
        let mut rng = Rng::new(options.seed);
        let (voters, observers) = ensemble(&mut rng);
        let counter_max = match rng.chance(250_000) {
            true => rng.range(8, 40) as u32,
            false => u32::MAX,
        };
        let retained_max = rng.range(4, 64) as usize;
        let servers = voters
            .iter()
            .chain(observers.iter())
            .map(|id| {
                let mut config = Config::new(*id, voters.clone(), observers.clone());
                config.proposals_in_flight_max = 8;
                config.log_entries_retained_max = retained_max;
                config.zxid_counter_max = counter_max;
                config.seed = rng.next_u64();
                Server::new(config)
            })
            .collect();
        World {
            options,
            rng,
            now_ms: 0,
            step: 0,
            queue: BTreeMap::new(),
            sequence: 0,
            servers,
            net: Net::default(),
            checker: Checker::default(),
            workload: Workload::default(),
            snapshots: Vec::new(),
            faults: true,
            sync_requests: 0,
            liveness: None,
            stats: Stats::default(),
            trace_hash: options.seed,
        }
    }

    fn start(&mut self) -> Check {
        for index in 0..self.servers.len() {
            let offset = 1 + self.rng.below(TICK_MS);
            self.schedule(offset, Event::Tick(index));
            self.drain(index)?;
        }
        self.schedule(TICK_MS, Event::ClientWrite);
        self.schedule(TICK_MS, Event::ClientSync);
        self.schedule(TICK_MS, Event::FaultRoll);
        Ok(())
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            seed: self.options.seed,
            steps: self.step,
            time_ms: self.now_ms,
            voters: self.servers[0].config.voters.len(),
            observers: self.servers[0].config.observers.len(),
            trace_hash: self.trace_hash,
            stats: self.stats.clone(),
        }
    }

    fn schedule(&mut self, after_ms: u64, event: Event) {
        self.sequence += 1;
        self.queue
            .insert((self.now_ms + after_ms, self.sequence), event);
    }

    fn id(&self, index: usize) -> ServerId {
        self.servers[index].id
    }

    fn run_loop(&mut self) -> Check {
        let fault_end_step = self.options.steps * 2 / 3;
        self.start()?;
        loop {
            if self.step == fault_end_step && self.faults {
                self.end_faults()?;
            }
            let settled = self.liveness.as_ref().is_some_and(|l| l.met);
            if self.step >= self.options.steps && settled {
                return Ok(());
            }
            if let Some(liveness) = &self.liveness {
                if !liveness.met && self.now_ms > liveness.deadline_ms {
                    return Err(format!(
                        "no leader committed a new write within {LIVENESS_TICKS_MAX} ticks after faults stopped"
                    ));
                }
            }
            if self.step > self.options.steps + STEPS_GRACE_MAX {
                return Err("run did not settle".into());
            }
            let Some(((time_ms, _), event)) = self.queue.pop_first() else {
                return Err("event queue ran dry".into());
            };
            self.now_ms = time_ms;
            self.step += 1;
            self.trace(&event);
            self.handle(event)?;
            self.check_liveness();
        }
    }

    fn trace(&mut self, event: &Event) {
        let (kind, a, b) = match event {
            Event::Tick(server) => (1, *server, 0),
            Event::Deliver {
                from, to, frame, ..
            } => (2, *from, *to * 1_000_003 + frame.len()),
            Event::Disconnected { server, peer, .. } => (3, *server, *peer),
            Event::SyncDone { server, .. } => (4, *server, 0),
            Event::ClientWrite => (5, 0, 0),
            Event::FaultRoll => (6, 0, 0),
            Event::ClientSync => (9, 0, 0),
            Event::Restart(server) => (7, *server, 0),
            Event::Heal(id) => (8, *id as usize, 0),
        };
        for value in [self.now_ms, kind, a as u64, b as u64] {
            self.trace_hash = (self.trace_hash ^ value).wrapping_mul(0x0100_0000_01b3);
        }
        if self.options.trace {
            println!("{:>7} t={:>7}ms {:?}", self.step, self.now_ms, event);
        }
    }

    fn handle(&mut self, event: Event) -> Check {
        match event {
            Event::Tick(index) => {
                self.schedule(TICK_MS, Event::Tick(index));
                if let Some(zab) = &mut self.servers[index].zab {
                    zab.tick();
                    self.drain(index)?;
                }
            }
            Event::Deliver {
                from,
                to,
                generation,
                frame,
            } => self.deliver(from, to, generation, frame)?,
            Event::Disconnected {
                server,
                peer,
                generation,
            } => {
                let (id, peer_id) = (self.id(server), self.id(peer));
                if !self.net.noticed(id, peer_id, generation) {
                    return Ok(());
                }
                if let Some(zab) = &mut self.servers[server].zab {
                    zab.disconnected(peer_id);
                    self.drain(server)?;
                }
            }
            Event::SyncDone {
                server,
                incarnation,
            } => self.sync_done(server, incarnation)?,
            Event::ClientWrite => {
                let after = self.rng.range(5, 40);
                self.schedule(after, Event::ClientWrite);
                self.client_write()?;
            }
            Event::ClientSync => {
                let after = self.rng.range(20, 200);
                self.schedule(after, Event::ClientSync);
                self.client_sync()?;
            }
            Event::FaultRoll => {
                self.schedule(TICK_MS, Event::FaultRoll);
                if self.faults {
                    self.roll_faults();
                }
            }
            Event::Restart(index) => self.restart(index)?,
            Event::Heal(id) => self.net.heal(id),
        }
        Ok(())
    }

    fn deliver(&mut self, from: usize, to: usize, generation: Option<u64>, frame: Bytes) -> Check {
        let (from_id, to_id) = (self.id(from), self.id(to));
        if let Some(generation) = generation {
            if generation != self.net.generation(from_id, to_id) || !self.net.usable(from_id, to_id)
            {
                return Ok(());
            }
        }
        if !self.servers[to].up() {
            return Ok(());
        }
        let mut buf = BytesMut::from(&frame[..]);
        match PeerMessage::decode_frame(&mut buf, FRAME_BYTES_MAX) {
            Ok(Some(message)) => {
                if let Some(zab) = &mut self.servers[to].zab {
                    zab.step(from_id, message);
                }
                self.drain(to)
            }
            // A corrupted length field leaves the frame looking incomplete: on a real stream
            // the bytes that follow would be misread, so this too resets the connection.
            Ok(None) | Err(_) => {
                if generation.is_some() {
                    self.break_connection(from, to);
                }
                Ok(())
            }
        }
    }

    fn sync_done(&mut self, index: usize, incarnation: u64) -> Check {
        let server = &mut self.servers[index];
        if server.incarnation != incarnation || !server.up() {
            return Ok(());
        }
        let durable = server.disk.finish_sync();
        if let Some(zab) = &mut server.zab {
            zab.on_persisted(durable);
        }
        self.start_sync(index);
        self.drain(index)
    }

    fn start_sync(&mut self, index: usize) {
        if self.servers[index].disk.start_sync() {
            let incarnation = self.servers[index].incarnation;
            let after = self.rng.range(1, 15);
            self.schedule(
                after,
                Event::SyncDone {
                    server: index,
                    incarnation,
                },
            );
        }
    }

    fn delay_ms(&mut self) -> u64 {
        match self.faults && self.rng.chance(DELAY_SPIKE_PPM) {
            true => self.rng.range(20, 400),
            false => self.rng.range(1, 5),
        }
    }

    fn chance(&mut self, per_million: u64) -> bool {
        self.faults && self.rng.chance(per_million)
    }

    /// Breaks the connection between two servers and tells both ends, a little later.
    fn break_connection(&mut self, a: usize, b: usize) {
        let (a_id, b_id) = (self.id(a), self.id(b));
        if !self.net.break_link(a_id, b_id, &[a_id, b_id]) {
            return;
        }
        self.stats.links_broken += 1;
        let generation = self.net.generation(a_id, b_id);
        for (server, peer) in [(a, b), (b, a)] {
            let after = self.rng.range(1, 2 * TICK_MS);
            self.schedule(
                after,
                Event::Disconnected {
                    server,
                    peer,
                    generation,
                },
            );
        }
    }

    fn send(&mut self, from: usize, to: usize, message: PeerMessage) {
        self.stats.messages += 1;
        let (from_id, to_id) = (self.id(from), self.id(to));
        let blocked = self.net.blocked(from_id, to_id) || !self.servers[to].up();
        let frame = message.to_frame();
        if let PeerMessage::Notification(_) = message {
            if blocked || self.chance(NOTIFICATION_LOSS_PPM) {
                self.stats.notifications_lost += 1;
                return;
            }
            let copies = 1 + u64::from(self.chance(NOTIFICATION_DUPLICATE_PPM));
            self.stats.notifications_duplicated += copies - 1;
            for _ in 0..copies {
                let after = self.delay_ms();
                let frame = frame.clone();
                self.schedule(
                    after,
                    Event::Deliver {
                        from,
                        to,
                        generation: None,
                        frame,
                    },
                );
            }
            return;
        }
        if self.net.untold(from_id, to_id) {
            // The sender still writes into the broken connection.
            return;
        }
        if blocked || self.chance(QUORUM_LOSS_PPM) {
            self.break_connection(from, to);
            return;
        }
        let generation = self.net.generation(from_id, to_id);
        if self.net.untold(to_id, from_id) {
            // The sender opens a new connection: its peer sees the old one end first.
            self.schedule(
                0,
                Event::Disconnected {
                    server: to,
                    peer: from,
                    generation,
                },
            );
        }
        let frame = match self.chance(FRAME_CORRUPTION_PPM) {
            true => self.corrupt(frame),
            false => frame,
        };
        let at_ms = self.now_ms + self.delay_ms();
        let at_ms = self.net.fifo_delivery(from_id, to_id, at_ms);
        let generation = Some(generation);
        let after = at_ms - self.now_ms;
        self.schedule(
            after,
            Event::Deliver {
                from,
                to,
                generation,
                frame,
            },
        );
    }

    fn corrupt(&mut self, frame: Bytes) -> Bytes {
        self.stats.frames_corrupted += 1;
        let mut bytes = frame.to_vec();
        let at = self.rng.below(bytes.len() as u64) as usize;
        bytes[at] ^= 1 << self.rng.below(8);
        Bytes::from(bytes)
    }

    /// Executes everything the server's core has asked for, in order.
    fn drain(&mut self, index: usize) -> Check {
        loop {
            let Some(zab) = &mut self.servers[index].zab else {
                return Ok(());
            };
            let ready = zab.ready();
            if ready.commands.is_empty() {
                return Ok(());
            }
            for command in ready.commands {
                self.execute(index, command)?;
            }
        }
    }

    fn trace_command(&self, index: usize, command: &Command) {
        let text = match command {
            Command::Send { to, message } => format!("send to {}: {message:?}", to.0),
            Command::Commit { entries } => format!(
                "commit {} .. {} ({} entries)",
                entries.first().map_or(Zxid::ZERO, |entry| entry.zxid),
                entries.last().map_or(Zxid::ZERO, |entry| entry.zxid),
                entries.len()
            ),
            Command::Append { entry } => format!("append {}", entry.zxid),
            other => format!("{other:?}"),
        };
        println!(
            "        server {}: {}",
            index + 1,
            text.chars().take(160).collect::<String>()
        );
    }

    fn execute(&mut self, index: usize, command: Command) -> Check {
        let id = self.id(index);
        if self.options.trace {
            self.trace_command(index, &command);
        }
        match command {
            Command::Send { to, message } => {
                let to = self.index_of(to)?;
                self.send(index, to, message);
            }
            Command::Disconnect { peer } => {
                let peer_index = self.index_of(peer)?;
                if self.net.break_link(id, peer, &[peer]) {
                    let after = self.rng.range(1, TICK_MS);
                    let generation = self.net.generation(id, peer);
                    self.schedule(
                        after,
                        Event::Disconnected {
                            server: peer_index,
                            peer: index,
                            generation,
                        },
                    );
                }
            }
            Command::PersistEpochs { accepted, current } => {
                let disk = &mut self.servers[index].disk;
                disk.accepted_epoch = accepted;
                disk.current_epoch = current;
            }
            Command::Append { entry } => {
                self.checker.on_txn(id, &entry)?;
                self.servers[index].disk.append(&entry);
                self.start_sync(index);
            }
            Command::Truncate { after } => {
                self.stats.truncations += 1;
                self.servers[index].disk.truncate_after(after);
            }
            Command::SendSnapshot { to, zxid } => self.send_snapshot(index, to, zxid)?,
            Command::InstallSnapshot { zxid, snapshot } => {
                self.install_snapshot(index, zxid, &snapshot)?
            }
            Command::Commit { entries } => self.commit(index, &entries)?,
            Command::Compact { .. } => {
                let server = &mut self.servers[index];
                server.disk.compact(server.tree.last_zxid(), &server.tree);
            }
            Command::SyncDone { request } => self.sync_completed(index, request)?,
            Command::RoleChanged { role } => self.role_changed(index, role)?,
        }
        Ok(())
    }

    fn index_of(&self, id: ServerId) -> Result<usize, String> {
        self.servers
            .iter()
            .position(|server| server.id == id)
            .ok_or_else(|| format!("message to unknown server {}", id.0))
    }

    fn send_snapshot(&mut self, index: usize, to: ServerId, zxid: Zxid) -> Check {
        let tree = &self.servers[index].tree;
        if tree.last_zxid() != zxid {
            return Err(format!(
                "server {} asked to send a snapshot at {zxid} but its tree is at {}",
                index + 1,
                tree.last_zxid()
            ));
        }
        self.stats.snapshots_sent += 1;
        self.snapshots.push(tree.clone());
        let reference = (self.snapshots.len() as u64 - 1).to_be_bytes();
        let snapshot = Bytes::copy_from_slice(&reference);
        let to = self.index_of(to)?;
        self.send(
            index,
            to,
            PeerMessage::Packet(PeerPacket::Snap { zxid, snapshot }),
        );
        Ok(())
    }

    fn install_snapshot(&mut self, index: usize, zxid: Zxid, snapshot: &[u8]) -> Check {
        let reference = u64::from_be_bytes(
            snapshot
                .try_into()
                .map_err(|_| "SNAP payload is not a snapshot reference".to_string())?,
        );
        let tree = self
            .snapshots
            .get(reference as usize)
            .cloned()
            .ok_or("SNAP names an unknown snapshot")?;
        let server = &mut self.servers[index];
        server.disk.install_snapshot(zxid, tree.clone());
        let digest = tree.digest();
        server.tree = tree;
        self.checker.on_tree_reset(server.id, zxid)?;
        self.checker.on_digest(server.id, zxid, digest)
    }

    fn commit(&mut self, index: usize, entries: &[crate::zab::LogEntry]) -> Check {
        let server = &mut self.servers[index];
        for entry in entries {
            self.checker.on_commit(server.id, entry)?;
            server.apply(entry)?;
            if let Some(print) = server.client_writes.remove(&entry.zxid) {
                self.checker.acked.push((entry.zxid, print));
                self.stats.acked_writes += 1;
            }
        }
        self.stats.committed_txns += entries.len() as u64;
        let (zxid, digest) = (server.tree.last_zxid(), server.tree.digest());
        self.checker.on_digest(server.id, zxid, digest)
    }

    fn role_changed(&mut self, index: usize, role: Role) -> Check {
        if self.options.trace {
            println!("        server {} -> {role:?}", index + 1);
        }
        match role {
            Role::LeaderElect => self.stats.elections += 1,
            Role::Leading { epoch } => {
                self.stats.leaders_established += 1;
                let server = &self.servers[index];
                if let Some(zab) = &server.zab {
                    self.checker.on_established(server.id, epoch, zab)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn client_write(&mut self) -> Check {
        let count = self.servers.len();
        let start = self.rng.below(count as u64) as usize;
        let leader = (0..count)
            .map(|offset| (start + offset) % count)
            .find(|index| {
                self.servers[*index]
                    .zab
                    .as_ref()
                    .is_some_and(|zab| matches!(zab.role(), Role::Leading { .. }))
            });
        let Some(index) = leader else {
            return Ok(());
        };
        let entry = self
            .workload
            .next(&mut self.rng, &self.servers[index].tree, self.now_ms);
        let server = &mut self.servers[index];
        let Some(zab) = &mut server.zab else {
            return Ok(());
        };
        if let Ok(zxid) = zab.propose(entry) {
            let print = zab.log_entry(zxid).map(|txn| fingerprint(txn));
            server.client_writes.insert(zxid, print.unwrap_or_default());
        }
        self.drain(index)
    }

    fn client_sync(&mut self) -> Check {
        let index = self.rng.below(self.servers.len() as u64) as usize;
        let required = self.checker.last_committed();
        self.sync_requests += 1;
        let request = self.sync_requests;
        let server = &mut self.servers[index];
        let Some(zab) = &mut server.zab else {
            return Ok(());
        };
        if zab.sync(request).is_ok() {
            server.syncs.insert(request, required);
        }
        self.drain(index)
    }

    fn sync_completed(&mut self, index: usize, request: i64) -> Check {
        let server = &mut self.servers[index];
        let Some(required) = server.syncs.remove(&request) else {
            return Err(format!(
                "server {} finished sync {request}, never started",
                index + 1
            ));
        };
        let applied = server.tree.last_zxid();
        if applied < required {
            return Err(format!(
                "server {} finished sync {request} at {applied}, before {required} committed earlier",
                index + 1
            ));
        }
        self.stats.syncs_completed += 1;
        Ok(())
    }

    fn roll_faults(&mut self) {
        let count = self.servers.len();
        if self.rng.chance(CRASH_PPM) {
            // Mostly one server; sometimes a power loss takes several (or all) at once.
            let victims = match self.rng.chance(CORRELATED_CRASH_PPM) {
                true => self.rng.range(2, count as u64),
                false => 1,
            };
            for _ in 0..victims {
                let index = self.rng.below(count as u64) as usize;
                if self.servers[index].up() {
                    self.crash(index);
                }
            }
        }
        if self.rng.chance(PARTITION_PPM) {
            let ids: Vec<ServerId> = self.servers.iter().map(|server| server.id).collect();
            let split = 1 + self.rng.below(count as u64 - 1) as usize;
            let mut shuffled = ids.clone();
            for i in (1..shuffled.len()).rev() {
                let j = self.rng.below(i as u64 + 1) as usize;
                shuffled.swap(i, j);
            }
            let (side, rest) = shuffled.split_at(split);
            let one_way = self.rng.chance(300_000);
            let id = self.net.partition(side, rest, one_way);
            self.stats.partitions += 1;
            let lasts = self.rng.range(200, 4_000);
            self.schedule(lasts, Event::Heal(id));
        }
    }

    fn crash(&mut self, index: usize) {
        self.stats.crashes += 1;
        let damage = self.servers[index].crash(&mut self.rng);
        self.stats.torn_writes += u64::from(damage.torn);
        self.stats.unsynced_bytes_lost += damage.bytes_lost as u64;
        for peer in 0..self.servers.len() {
            if peer != index {
                self.break_connection(index, peer);
            }
        }
        let after = self.rng.range(300, 3_000);
        self.schedule(after, Event::Restart(index));
    }

    fn restart(&mut self, index: usize) -> Check {
        let server = &mut self.servers[index];
        if server.up() {
            return Ok(());
        }
        server.restart();
        let (id, zxid, digest) = (server.id, server.disk.snapshot_zxid, server.tree.digest());
        self.checker.on_tree_reset(id, zxid)?;
        self.checker.on_digest(id, zxid, digest)?;
        self.drain(index)
    }

    fn end_faults(&mut self) -> Check {
        self.faults = false;
        self.net.heal_all();
        for index in 0..self.servers.len() {
            self.restart(index)?;
        }
        self.liveness = Some(Liveness {
            started_ms: self.now_ms,
            deadline_ms: self.now_ms + LIVENESS_TICKS_MAX * TICK_MS,
            acked_before: self.checker.acked.len(),
            met: false,
        });
        Ok(())
    }

    fn check_liveness(&mut self) {
        let Some(liveness) = &mut self.liveness else {
            return;
        };
        if liveness.met || self.checker.acked.len() <= liveness.acked_before {
            return;
        }
        liveness.met = true;
        self.stats.liveness_ms = self.now_ms - liveness.started_ms;
    }
}

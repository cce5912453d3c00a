//! One load-generating thread: a mio event loop over its share of the sessions. Each session is
//! a non-blocking connection driven by a `Codec`; closed loop keeps `inflight` requests
//! outstanding per session, open loop sends on a fixed schedule and measures from the intended
//! send time. Connection failures are counted and retried, never fatal.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use zinc_protocol::{EventType, MultiResponse, OpCode, OpResult, Response};

use crate::codec::{Codec, Event, Pending, Purpose};
use crate::stats::{error_name, Collector, Recorder};
use crate::workload::{Generator, Mix, Tree, Workload};

/// Wait before reconnecting a session whose connection failed.
const RECONNECT_DELAY_NS: u64 = 1_000_000_000;
/// How long outstanding requests may take to come back once the run has ended.
const DRAIN_NS: u64 = 5_000_000_000;
/// A watch round whose watchers do not all re-arm in this time is abandoned.
const WATCH_ROUND_NS: u64 = 5_000_000_000;
/// Bytes read from a socket at once.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Unsent bytes a session may queue before it stops taking requests.
const OUT_BYTES_MAX: usize = 4 * 1024 * 1024;
const LOST: &str = "ConnectionLoss(-4)";

/// What every worker of a run shares.
#[derive(Debug)]
pub struct Plan {
    pub servers: Vec<SocketAddr>,
    pub mix: Mix,
    pub tree: Tree,
    pub inflight: usize,
    pub session_timeout_ms: i32,
    pub sessions_total: usize,
    /// Warm-up plus measured time.
    pub run_ns: u64,
    pub seed: u64,
    /// Unique per run, so that creates never collide with an earlier run's nodes.
    pub run_tag: String,
    pub start: Instant,
    pub collector: Arc<Mutex<Collector>>,
    pub watch: WatchRound,
}

/// The watch workload's shared state: when the current write was sent, and how many watchers
/// have re-armed since.
#[derive(Debug, Default)]
pub struct WatchRound {
    pub sent_ns: AtomicU64,
    pub armed: AtomicUsize,
}

/// A worker's own share.
#[derive(Debug, Clone)]
pub struct Share {
    /// Global session indices.
    pub sessions: Vec<usize>,
    /// Requests to send at most (`--ops`), `None` for no limit.
    pub ops_max: Option<u64>,
    /// Requests per second (open loop), `None` for closed loop.
    pub rate: Option<f64>,
    /// The delete pool slice of each session, by position in `sessions`.
    pub delete_ranges: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Load,
    Watcher,
    Writer,
    Churn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle {
        retry_ns: u64,
    },
    Connecting,
    Ready,
    /// Nothing left to send (delete pool used up).
    Exhausted,
}

struct Slot {
    server: SocketAddr,
    role: Role,
    state: State,
    stream: Option<TcpStream>,
    codec: Codec,
    out: BytesMut,
    input: BytesMut,
    generator: Generator,
    last_send_ns: u64,
    cycle_start_ns: u64,
}

struct Worker<'a> {
    plan: &'a Plan,
    share: Share,
    poll: Poll,
    slots: Vec<Slot>,
    recorder: Recorder,
    sent: u64,
    stopping: bool,
    next_due_ns: u64,
    next_slot: usize,
    chunk: Vec<u8>,
}

/// Runs one worker to the end of the run.
pub fn run(plan: &Plan, share: Share) -> io::Result<()> {
    let mut worker = Worker::new(plan, share)?;
    worker.event_loop()?;
    worker.recorder.flush();
    Ok(())
}

impl<'a> Worker<'a> {
    fn new(plan: &'a Plan, share: Share) -> io::Result<Self> {
        let slots = share
            .sessions
            .iter()
            .enumerate()
            .map(|(position, &global)| {
                let role = match plan.mix.workload {
                    Workload::Watch if global == 0 => Role::Writer,
                    Workload::Watch => Role::Watcher,
                    Workload::Sessions => Role::Churn,
                    _ => Role::Load,
                };
                let delete_range = share.delete_ranges.get(position).copied();
                Slot {
                    server: plan.servers[global % plan.servers.len()],
                    role,
                    state: State::Idle { retry_ns: 0 },
                    stream: None,
                    codec: Codec::new(),
                    out: BytesMut::with_capacity(64 * 1024),
                    input: BytesMut::with_capacity(READ_CHUNK_BYTES),
                    generator: Generator::new(
                        plan.mix.clone(),
                        plan.tree.clone(),
                        plan.seed ^ (global as u64).wrapping_mul(0x9e37_79b9),
                        format!("{}s{global}", plan.run_tag),
                        delete_range.unwrap_or((0, 0)),
                    ),
                    last_send_ns: 0,
                    cycle_start_ns: 0,
                }
            })
            .collect();
        Ok(Worker {
            plan,
            share,
            poll: Poll::new()?,
            slots,
            recorder: Recorder::new(plan.collector.clone()),
            sent: 0,
            stopping: false,
            next_due_ns: 0,
            next_slot: 0,
            chunk: vec![0; READ_CHUNK_BYTES],
        })
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.plan.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn event_loop(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut last_flush_ns = 0;
        loop {
            let now_ns = self.now_ns();
            if now_ns >= self.plan.run_ns || self.budget_spent() {
                self.stopping = true;
            }
            let inflight: usize = self.slots.iter().map(|s| s.codec.inflight()).sum();
            let exhausted = self.slots.iter().all(|s| s.state == State::Exhausted);
            if (self.stopping || exhausted) && inflight == 0
                || now_ns >= self.plan.run_ns + DRAIN_NS
            {
                return Ok(());
            }
            self.maintain(now_ns);
            let timeout = self.poll_timeout(now_ns);
            self.poll.poll(&mut events, Some(timeout))?;
            for event in events.iter() {
                self.on_socket(event.token().0);
            }
            if self.share.rate.is_some() {
                self.dispatch_open_loop();
            }
            let now_ns = self.now_ns();
            if now_ns - last_flush_ns > 200_000_000 {
                self.recorder.flush();
                last_flush_ns = now_ns;
            }
        }
    }

    fn budget_spent(&self) -> bool {
        self.share.ops_max.is_some_and(|max| self.sent >= max)
    }

    fn poll_timeout(&self, now_ns: u64) -> Duration {
        let busy_wait = self.plan.mix.workload == Workload::Watch || self.share.rate.is_some();
        let ns = if busy_wait {
            self.next_due_ns
                .saturating_sub(now_ns)
                .clamp(50_000, 1_000_000)
        } else {
            50_000_000
        };
        Duration::from_nanos(ns)
    }

    /// Timers: reconnects, pings on idle sessions, the watch writer.
    fn maintain(&mut self, now_ns: u64) {
        let ping_after_ns =
            u64::try_from(self.plan.session_timeout_ms).unwrap_or(30_000) * 1_000_000 / 3;
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            match slot.state {
                State::Idle { retry_ns } if retry_ns <= now_ns && !self.stopping => {
                    self.open(index, now_ns)
                }
                State::Ready if now_ns - slot.last_send_ns > ping_after_ns => {
                    slot.codec.ping(&mut slot.out);
                    slot.last_send_ns = now_ns;
                    self.write(index);
                }
                State::Ready if slot.role == Role::Writer => self.write_round(index, now_ns),
                _ => {}
            }
        }
    }

    fn open(&mut self, index: usize, now_ns: u64) {
        let slot = &mut self.slots[index];
        slot.cycle_start_ns = now_ns;
        slot.codec = Codec::new();
        slot.input.clear();
        slot.out.clear();
        let registered = TcpStream::connect(slot.server).and_then(|mut stream| {
            stream.set_nodelay(true)?;
            self.poll.registry().register(
                &mut stream,
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match registered {
            Ok(stream) => {
                slot.stream = Some(stream);
                slot.state = State::Connecting;
            }
            Err(error) => self.connect_failed(index, &error),
        }
    }

    fn connect_failed(&mut self, index: usize, error: &io::Error) {
        let now_ns = self.now_ns();
        let server = self.slots[index].server;
        self.recorder
            .error(now_ns, &format!("connect: {}", error.kind()));
        self.recorder
            .note(format!("cannot connect to {server}: {error}"));
        self.close(index, now_ns + RECONNECT_DELAY_NS);
    }

    /// Drops the connection, counting what was outstanding as lost.
    fn close(&mut self, index: usize, retry_ns: u64) {
        let now_ns = self.now_ns();
        let slot = &mut self.slots[index];
        if let Some(mut stream) = slot.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        let lost = slot
            .codec
            .abandon()
            .into_iter()
            .filter(|p| p.purpose != Purpose::WatchArm)
            .count();
        slot.state = State::Idle { retry_ns };
        for _ in 0..lost {
            self.recorder.error(now_ns, LOST);
        }
    }

    fn on_socket(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let Some(stream) = slot.stream.as_mut() else {
            return;
        };
        if slot.state == State::Connecting {
            match (stream.take_error(), stream.peer_addr()) {
                (Ok(Some(error)) | Err(error), _) => return self.connect_failed(index, &error),
                (Ok(None), Err(error)) if error.kind() == io::ErrorKind::NotConnected => return,
                (Ok(None), Err(error)) => return self.connect_failed(index, &error),
                (Ok(None), Ok(_)) => {
                    slot.codec
                        .connect(self.plan.session_timeout_ms, &mut slot.out);
                    slot.state = State::Ready;
                }
            }
        }
        if self.read(index).is_err() {
            let now_ns = self.now_ns();
            return self.close(index, now_ns + RECONNECT_DELAY_NS);
        }
        self.write(index);
    }

    /// Reads what has arrived and handles every whole frame.
    fn read(&mut self, index: usize) -> Result<(), ()> {
        loop {
            let slot = &mut self.slots[index];
            let Some(stream) = slot.stream.as_mut() else {
                return Ok(());
            };
            match stream.read(&mut self.chunk) {
                Ok(0) => {
                    // The server closed: expected after closeSession, a loss otherwise.
                    return if slot.codec.inflight() == 0 && slot.role == Role::Churn {
                        self.close(index, 0);
                        Ok(())
                    } else {
                        Err(())
                    };
                }
                Ok(count) => slot.input.extend_from_slice(&self.chunk[..count]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(()),
            }
            self.decode(index)?;
        }
        self.decode(index)
    }

    fn decode(&mut self, index: usize) -> Result<(), ()> {
        loop {
            let slot = &mut self.slots[index];
            let event = match slot.codec.receive(&mut slot.input) {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(()),
                Err(error) => {
                    let server = slot.server;
                    let now_ns = self.now_ns();
                    self.recorder.error(now_ns, "protocol error");
                    self.recorder.note(format!("{server}: {error}"));
                    return Err(());
                }
            };
            self.on_event(index, event);
            if self.slots[index].stream.is_none() {
                return Ok(());
            }
        }
    }

    fn on_event(&mut self, index: usize, event: Event) {
        let now_ns = self.now_ns();
        match event {
            Event::Connected { .. } => self.on_connected(index, now_ns),
            Event::Reply {
                pending,
                err,
                response,
            } => self.on_reply(index, now_ns, pending, err, &response),
            Event::Notification { event, .. } => {
                let slot = &mut self.slots[index];
                if slot.role == Role::Watcher && event.event_type == EventType::NodeDataChanged {
                    let sent_ns = self.plan.watch.sent_ns.load(Ordering::Acquire);
                    self.recorder.op(now_ns, now_ns.saturating_sub(sent_ns));
                    let arm = slot.generator.watch_arm();
                    slot.codec
                        .send(arm, Purpose::WatchArm, now_ns, &mut slot.out);
                    slot.last_send_ns = now_ns;
                }
            }
            Event::Pong => {}
        }
    }

    fn on_connected(&mut self, index: usize, now_ns: u64) {
        let slot = &mut self.slots[index];
        match slot.role {
            Role::Load if self.share.rate.is_none() => self.fill(index, now_ns),
            Role::Load => {}
            Role::Watcher => {
                let arm = slot.generator.watch_arm();
                slot.codec
                    .send(arm, Purpose::WatchArm, now_ns, &mut slot.out);
                slot.last_send_ns = now_ns;
            }
            Role::Writer => {}
            Role::Churn => {
                if self.stopping {
                    return;
                }
                self.sent += 1;
                let start_ns = slot.cycle_start_ns;
                if let Some(create) = slot.generator.next_request() {
                    slot.codec
                        .send(create, Purpose::Step, start_ns, &mut slot.out);
                }
                let close = zinc_protocol::Request::CloseSession;
                slot.codec
                    .send(close, Purpose::Measured, start_ns, &mut slot.out);
                slot.last_send_ns = now_ns;
            }
        }
    }

    fn on_reply(
        &mut self,
        index: usize,
        now_ns: u64,
        pending: Pending,
        err: i32,
        response: &Response,
    ) {
        let failure = match (err, response) {
            (0, Response::Multi(multi)) => first_error(multi),
            (0, _) => None,
            (err, _) => Some(err),
        };
        if let Some(err) = failure {
            self.recorder.error(now_ns, &error_name(err));
        }
        match pending.purpose {
            Purpose::Measured if failure.is_none() => self
                .recorder
                .op(now_ns, now_ns.saturating_sub(pending.start_ns)),
            Purpose::WatchArm if failure.is_none() => {
                self.plan.watch.armed.fetch_add(1, Ordering::AcqRel);
            }
            _ => {}
        }
        let slot = &self.slots[index];
        if slot.role == Role::Churn && pending.op == OpCode::CloseSession {
            // The next cycle starts at once; the server closes this connection.
            self.close(index, now_ns);
        } else if slot.role == Role::Load && self.share.rate.is_none() {
            self.fill(index, now_ns);
        }
    }

    /// Closed loop: tops the session up to `inflight` outstanding requests.
    fn fill(&mut self, index: usize, now_ns: u64) {
        let inflight = self.plan.inflight;
        while !self.stopping && !self.budget_spent() {
            let slot = &mut self.slots[index];
            if slot.codec.inflight() >= inflight || slot.out.len() > OUT_BYTES_MAX {
                return;
            }
            let Some(request) = slot.generator.next_request() else {
                slot.state = State::Exhausted;
                return;
            };
            slot.codec
                .send(request, Purpose::Measured, now_ns, &mut slot.out);
            slot.last_send_ns = now_ns;
            self.sent += 1;
        }
    }

    /// Open loop: sends every request that is due, stamped with the time it was due. When no
    /// session has room the request waits, and its wait counts in its latency.
    fn dispatch_open_loop(&mut self) {
        let Some(rate) = self.share.rate else {
            return;
        };
        let interval_ns = (1e9 / rate.max(1e-3)) as u64;
        let now_ns = self.now_ns();
        if self.next_due_ns == 0 {
            self.next_due_ns = now_ns;
        }
        let count = self.slots.len();
        while self.next_due_ns <= now_ns && !self.stopping && !self.budget_spent() {
            let Some(index) = (0..count)
                .map(|offset| (self.next_slot + offset) % count)
                .find(|&i| self.has_room(i))
            else {
                return;
            };
            self.next_slot = (index + 1) % count;
            let slot = &mut self.slots[index];
            let Some(request) = slot.generator.next_request() else {
                slot.state = State::Exhausted;
                continue;
            };
            slot.codec
                .send(request, Purpose::Measured, self.next_due_ns, &mut slot.out);
            slot.last_send_ns = now_ns;
            self.sent += 1;
            self.next_due_ns += interval_ns;
            self.write(index);
        }
    }

    fn has_room(&self, index: usize) -> bool {
        let slot = &self.slots[index];
        slot.state == State::Ready
            && slot.codec.is_connected()
            && slot.codec.inflight() < self.plan.inflight
            && slot.out.len() <= OUT_BYTES_MAX
    }

    /// The watch writer: one setData once every watcher has re-armed since the last one.
    fn write_round(&mut self, index: usize, now_ns: u64) {
        let watchers = self.plan.sessions_total.saturating_sub(1);
        let round = &self.plan.watch;
        let slot = &mut self.slots[index];
        let sent_ns = round.sent_ns.load(Ordering::Acquire);
        let all_armed = round.armed.load(Ordering::Acquire) >= watchers;
        if self.stopping || !slot.codec.is_connected() || slot.codec.inflight() > 0 {
            return;
        }
        if !all_armed && now_ns - sent_ns < WATCH_ROUND_NS {
            return;
        }
        if !all_armed {
            self.recorder.error(now_ns, "watch round timed out");
        }
        round.armed.store(0, Ordering::Release);
        round.sent_ns.store(now_ns, Ordering::Release);
        let Some(set) = slot.generator.next_request() else {
            return;
        };
        slot.codec.send(set, Purpose::Step, now_ns, &mut slot.out);
        slot.last_send_ns = now_ns;
        self.sent += 1;
        self.write(index);
    }

    /// Sends what is queued; the rest goes when the socket is writable again.
    fn write(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let Some(stream) = slot.stream.as_mut() else {
            return;
        };
        while !slot.out.is_empty() {
            match stream.write(&slot.out) {
                Ok(0) => break,
                Ok(count) => slot.out.advance(count),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if slot.state == State::Connecting => {
                    return self.connect_failed(index, &error)
                }
                Err(_) => {
                    let now_ns = self.now_ns();
                    return self.close(index, now_ns + RECONNECT_DELAY_NS);
                }
            }
        }
    }
}

/// The first failing op of a multi (a failed multi reports every op as failed or rolled back).
fn first_error(multi: &MultiResponse) -> Option<i32> {
    multi.results.iter().find_map(|result| match result {
        OpResult::Error { err } if *err != 0 && *err != -2 => Some(*err),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_multi_reports_its_cause() {
        let multi = MultiResponse {
            results: vec![
                OpResult::Error { err: 0 },
                OpResult::Error { err: -101 },
                OpResult::Error { err: -2 },
            ],
        };
        assert_eq!(first_error(&multi), Some(-101));
        let ok = MultiResponse {
            results: vec![OpResult::Delete],
        };
        assert_eq!(first_error(&ok), None);
    }
}

//! Server-wide counters shared by every core, and per-connection counters kept by the shard
//! that owns the connection; both are read by the four-letter words.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Receive times kept per connection for latency; beyond this the oldest are not measured
/// (the in-flight limit keeps real clients far below it).
const PENDING_REQUESTS_TIMED_MAX: usize = 4096;

/// Counters updated with relaxed atomics; exactness across cores is not needed for monitoring.
#[derive(Debug)]
pub struct ServerStats {
    started: Instant,
    packets_received: AtomicU64,
    packets_sent: AtomicU64,
    connections: AtomicU64,
    latency_min_ms: AtomicU64,
    latency_max_ms: AtomicU64,
    latency_total_ms: AtomicU64,
    latency_count: AtomicU64,
    last_zxid: AtomicI64,
    node_count: AtomicU64,
    ephemeral_count: AtomicU64,
    session_count: AtomicU64,
    data_bytes: AtomicU64,
    sessions_expired: AtomicU64,
    mode: std::sync::atomic::AtomicU8,
    /// A leader's learners: connected, synchronized followers, synchronized observers.
    learners: [AtomicU64; 3],
}

/// The server's part, as `srvr` and `mntr` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Standalone = 0,
    Leader = 1,
    Follower = 2,
    Observer = 3,
    /// In an ensemble without an established leader: clients are not served.
    NotServing = 4,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Leader => "leader",
            Mode::Follower => "follower",
            Mode::Observer => "observer",
            Mode::NotServing => "not serving",
        }
    }
}

impl Default for ServerStats {
    fn default() -> Self {
        ServerStats {
            started: Instant::now(),
            packets_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            latency_min_ms: AtomicU64::new(u64::MAX),
            latency_max_ms: AtomicU64::new(0),
            latency_total_ms: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
            last_zxid: AtomicI64::new(0),
            node_count: AtomicU64::new(0),
            ephemeral_count: AtomicU64::new(0),
            session_count: AtomicU64::new(0),
            data_bytes: AtomicU64::new(0),
            sessions_expired: AtomicU64::new(0),
            mode: std::sync::atomic::AtomicU8::new(Mode::Standalone as u8),
            learners: Default::default(),
        }
    }
}

/// A consistent-enough copy for printing.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatsView {
    pub uptime_ms: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub connections: u64,
    pub latency_min_ms: u64,
    pub latency_avg_ms: f64,
    pub latency_max_ms: u64,
    pub last_zxid: i64,
    pub node_count: u64,
    pub ephemeral_count: u64,
    pub session_count: u64,
    pub data_bytes: u64,
}

impl ServerStats {
    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Release);
    }

    /// A leader's learners: (connected, synchronized followers, synchronized observers).
    pub fn set_learners(&self, counts: [u64; 3]) {
        for (slot, count) in self.learners.iter().zip(counts) {
            slot.store(count, Relaxed);
        }
    }

    pub fn learners(&self) -> [u64; 3] {
        [0, 1, 2].map(|i| self.learners[i].load(Relaxed))
    }

    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Acquire) {
            1 => Mode::Leader,
            2 => Mode::Follower,
            3 => Mode::Observer,
            4 => Mode::NotServing,
            _ => Mode::Standalone,
        }
    }

    /// Milliseconds since the server started (the clock `cons` prints `lresp` in).
    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn packet_received(&self) {
        self.packets_received.fetch_add(1, Relaxed);
    }

    pub fn packets_sent(&self, count: u64) {
        self.packets_sent.fetch_add(count, Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Relaxed);
    }

    pub fn session_expired(&self) {
        self.sessions_expired.fetch_add(1, Relaxed);
    }

    pub fn latency(&self, latency_ms: u64) {
        self.latency_min_ms.fetch_min(latency_ms, Relaxed);
        self.latency_max_ms.fetch_max(latency_ms, Relaxed);
        self.latency_total_ms.fetch_add(latency_ms, Relaxed);
        self.latency_count.fetch_add(1, Relaxed);
    }

    pub fn set_last_zxid(&self, zxid: i64) {
        self.last_zxid.store(zxid, Relaxed);
    }

    pub fn set_tree_counts(&self, nodes: u64, ephemerals: u64, sessions: u64, data_bytes: u64) {
        self.node_count.store(nodes, Relaxed);
        self.ephemeral_count.store(ephemerals, Relaxed);
        self.session_count.store(sessions, Relaxed);
        self.data_bytes.store(data_bytes, Relaxed);
    }

    /// `crst`/`srst`: zero the request counters and latencies.
    pub fn reset(&self) {
        self.packets_received.store(0, Relaxed);
        self.packets_sent.store(0, Relaxed);
        self.latency_min_ms.store(u64::MAX, Relaxed);
        self.latency_max_ms.store(0, Relaxed);
        self.latency_total_ms.store(0, Relaxed);
        self.latency_count.store(0, Relaxed);
    }

    pub fn view(&self) -> StatsView {
        let count = self.latency_count.load(Relaxed);
        let min = self.latency_min_ms.load(Relaxed);
        StatsView {
            uptime_ms: self.started.elapsed().as_millis() as u64,
            packets_received: self.packets_received.load(Relaxed),
            packets_sent: self.packets_sent.load(Relaxed),
            connections: self.connections.load(Relaxed),
            latency_min_ms: if min == u64::MAX { 0 } else { min },
            latency_avg_ms: if count == 0 {
                0.0
            } else {
                self.latency_total_ms.load(Relaxed) as f64 / count as f64
            },
            latency_max_ms: self.latency_max_ms.load(Relaxed),
            last_zxid: self.last_zxid.load(Relaxed),
            node_count: self.node_count.load(Relaxed),
            ephemeral_count: self.ephemeral_count.load(Relaxed),
            session_count: self.session_count.load(Relaxed),
            data_bytes: self.data_bytes.load(Relaxed),
        }
    }
}

/// One connection's counters for `cons` (`crst` resets them). Replies go out in request order,
/// so each reply is timed against the oldest request not yet answered.
#[derive(Debug)]
pub struct ConnStats {
    server: Arc<ServerStats>,
    /// Wall-clock milliseconds when the connection was accepted (`est`).
    pub established_ms: u64,
    pending: RefCell<VecDeque<Instant>>,
    /// Last request xid answered; -1 before any (`lcxid`).
    pub last_cxid: Cell<i64>,
    /// When the last reply left, on the server's `elapsed_ms` clock (`lresp`).
    pub last_response_ms: Cell<u64>,
    pub last_latency_ms: Cell<u64>,
    latency_min_ms: Cell<u64>,
    pub latency_max_ms: Cell<u64>,
    latency_total_ms: Cell<u64>,
    latency_count: Cell<u64>,
}

impl ConnStats {
    pub fn new(server: Arc<ServerStats>) -> ConnStats {
        let established_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        ConnStats {
            server,
            established_ms,
            pending: RefCell::new(VecDeque::new()),
            last_cxid: Cell::new(-1),
            last_response_ms: Cell::new(0),
            last_latency_ms: Cell::new(0),
            latency_min_ms: Cell::new(u64::MAX),
            latency_max_ms: Cell::new(0),
            latency_total_ms: Cell::new(0),
            latency_count: Cell::new(0),
        }
    }

    /// A request frame (not the handshake) arrived; its reply will be timed against now.
    pub fn request_received(&self) {
        let mut pending = self.pending.borrow_mut();
        if pending.len() < PENDING_REQUESTS_TIMED_MAX {
            pending.push_back(Instant::now());
        }
    }

    /// A frame left for the client: a notification (xid -1) only counts as sent; a reply also
    /// ends the oldest pending request.
    pub fn frame_sent(&self, xid: i32) {
        self.server.packets_sent(1);
        if xid == -1 {
            return;
        }
        let Some(received) = self.pending.borrow_mut().pop_front() else {
            return;
        };
        let latency_ms = received.elapsed().as_millis() as u64;
        self.server.latency(latency_ms);
        if xid >= 0 {
            self.last_cxid.set(i64::from(xid));
        }
        self.last_response_ms.set(self.server.elapsed_ms());
        self.last_latency_ms.set(latency_ms);
        self.latency_min_ms
            .set(self.latency_min_ms.get().min(latency_ms));
        self.latency_max_ms
            .set(self.latency_max_ms.get().max(latency_ms));
        self.latency_total_ms
            .set(self.latency_total_ms.get() + latency_ms);
        self.latency_count.set(self.latency_count.get() + 1);
    }

    pub fn latency_min_ms(&self) -> u64 {
        match self.latency_min_ms.get() {
            u64::MAX => 0,
            min => min,
        }
    }

    /// Whole milliseconds, as `cons` prints `avglat`.
    pub fn latency_avg_ms(&self) -> u64 {
        self.latency_total_ms
            .get()
            .checked_div(self.latency_count.get())
            .unwrap_or(0)
    }

    /// `crst`: forget the counters (pending requests are still timed).
    pub fn reset(&self) {
        self.last_cxid.set(-1);
        self.last_response_ms.set(0);
        self.last_latency_ms.set(0);
        self.latency_min_ms.set(u64::MAX);
        self.latency_max_ms.set(0);
        self.latency_total_ms.set(0);
        self.latency_count.set(0);
    }
}

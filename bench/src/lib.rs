//! zinc-bench: a load generator for ZooKeeper-compatible servers, built on `zinc-protocol` only.
//!
//! `run` prepares the tree, starts one worker thread per core, each driving its share of the
//! sessions with pipelined requests, prints a line a second, and returns a `Report`.
//! `compare` runs the same workloads against Apache ZooKeeper and Zinc side by side.

pub mod chart;
pub mod codec;
pub mod compare;
pub mod proc_stats;
pub mod setup;
pub mod stats;
pub mod worker;
pub mod workload;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::stats::{Collector, Percentiles, Point, Report};
use crate::worker::{Plan, Share, WatchRound};
use crate::workload::{split_range, Mix, Tree, Workload};

/// Limits on the command line, so that a typo cannot exhaust the machine.
pub const SESSIONS_MAX: usize = 10_000;
pub const INFLIGHT_MAX: usize = 100_000;
pub const VALUE_BYTES_MAX: usize = 1_000_000;
pub const KEYS_MAX: u64 = 50_000_000;
pub const THREADS_MAX: usize = 256;

/// Why a run could not happen at all (errors during a run are counted, not returned).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot resolve server {server:?}: {reason}")]
    Resolve { server: String, reason: String },
    #[error("cannot connect to {server}: {source} (is the server running?)")]
    Connect {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error("{server} closed the connection during setup")]
    Closed { server: SocketAddr },
    #[error("{server}: protocol error: {error}")]
    Protocol { server: SocketAddr, error: String },
    #[error("{server}: {what}: {count} requests failed, first with {error}")]
    Setup {
        server: SocketAddr,
        what: String,
        error: String,
        count: usize,
    },
    #[error("invalid option: {0}")]
    Invalid(String),
    #[error("cannot write the latency log {path}: {source}")]
    LatencyLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What to run: the command line of `zinc-bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunOptions {
    /// Servers to spread sessions over, HOST:PORT comma separated.
    #[arg(long, default_value = "127.0.0.1:2181")]
    pub servers: String,
    #[arg(long, value_enum, default_value_t = Workload::Mixed)]
    pub workload: Workload,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Stop after sending this many requests in all (the run may end before the duration).
    #[arg(long)]
    pub ops: Option<u64>,
    /// Requests outstanding per session.
    #[arg(long, default_value_t = 16)]
    pub inflight: usize,
    /// Sessions, spread round-robin over the servers and the threads.
    #[arg(long, default_value_t = 4)]
    pub sessions: usize,
    /// Bytes of data per create/setData.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// Open loop: requests per second in all; latency counts from the intended send time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Key space (and delete pool) size.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Keys per directory (children workload lists one directory).
    #[arg(long, default_value_t = 100)]
    pub fanout: u64,
    /// Percentage of reads in the mixed workload.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub read_percent: u64,
    /// setData ops per multi.
    #[arg(long, default_value_t = 4)]
    pub multi_ops: usize,
    /// create workload: sequential znodes under one parent.
    #[arg(long)]
    pub sequential: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The znode the run works under.
    #[arg(long, default_value = "/zinc-bench")]
    pub root: String,
    #[arg(long, default_value_t = 30_000)]
    pub session_timeout_ms: i32,
    /// Seed of the request stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the report as JSON (the live lines go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Write an SVG chart of throughput, latency over time and the latency distribution.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// No live lines.
    #[arg(long)]
    pub quiet: bool,
    /// Write every op to this file: when it was due (open loop) or sent, on the CLOCK_MONOTONIC
    /// clock in ns, and its latency in us, a line each (to split a run by what happened on the
    /// machine meanwhile, such as a snapshot being written).
    #[arg(long)]
    pub latency_log: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            options: RunOptions,
        }
        Wrapper::parse_from(["zinc-bench"]).options
    }
}

impl RunOptions {
    fn validate(&self) -> Result<(), BenchError> {
        let checks = [
            (
                self.sessions == 0 || self.sessions > SESSIONS_MAX,
                "--sessions must be 1..=10000",
            ),
            (
                self.inflight == 0 || self.inflight > INFLIGHT_MAX,
                "--inflight must be 1..=100000",
            ),
            (
                self.value_bytes > VALUE_BYTES_MAX,
                "--value-bytes must be at most 1000000",
            ),
            (
                self.keys == 0 || self.keys > KEYS_MAX,
                "--keys must be 1..=50000000",
            ),
            (self.fanout == 0, "--fanout must be positive"),
            (
                self.duration == 0 && self.ops.is_none(),
                "--duration must be positive",
            ),
            (
                self.multi_ops == 0 || self.multi_ops > 1000,
                "--multi-ops must be 1..=1000",
            ),
            (
                self.threads.is_some_and(|t| t == 0 || t > THREADS_MAX),
                "--threads must be 1..=256",
            ),
            (
                self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())),
                "--rate must be positive",
            ),
            (
                !self.root.starts_with('/') || self.root.len() < 2,
                "--root must be an absolute path below /",
            ),
            (
                self.workload == Workload::Watch && self.sessions < 2,
                "the watch workload needs --sessions of at least 2",
            ),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, message)) => Err(BenchError::Invalid((*message).to_owned())),
            None => Ok(()),
        }
    }

    fn threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        self.threads.unwrap_or(cores).min(self.sessions).max(1)
    }
}

/// Sees a run as it goes: each second as it ends, and the measured window's edges (where a
/// comparison samples the servers' CPU time).
pub trait Observer {
    fn second(&mut self, _point: &Point) {}
    fn measure_start(&mut self) {}
    fn measure_end(&mut self) {}
}

/// Prints each second on stderr.
pub struct LiveLines;

impl Observer for LiveLines {
    fn second(&mut self, point: &Point) {
        eprintln!("{}", point.live_line());
    }
}

/// Sees nothing.
pub struct Silent;

impl Observer for Silent {}

/// Runs one workload.
pub fn run(options: &RunOptions, observer: &mut dyn Observer) -> Result<Report, BenchError> {
    options.validate()?;
    let servers = setup::parse_servers(&options.servers)?;
    let tree = Tree::new(&options.root, options.keys, options.fanout);
    let value = Bytes::from(vec![b'x'; options.value_bytes]);
    setup::prepare(&servers, &tree, options.workload, &value)?;
    let threads = options.threads();
    let run_tag = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64 & 0xffff_ffff_ffff)
    );
    let plan = Plan {
        servers: servers.clone(),
        mix: Mix {
            workload: options.workload,
            value,
            read_percent: options.read_percent,
            multi_ops: options.multi_ops,
            sequential: options.sequential,
        },
        tree,
        inflight: options.inflight,
        session_timeout_ms: options.session_timeout_ms,
        sessions_total: options.sessions,
        run_ns: (options.warmup + options.duration) * 1_000_000_000,
        seed: options.seed,
        run_tag,
        start: Instant::now(),
        collector: if options.latency_log.is_some() {
            Collector::shared_with_samples()
        } else {
            Collector::shared()
        },
        watch: WatchRound::default(),
    };
    let shares = shares(options, threads);
    let finished = AtomicUsize::new(0);
    let elapsed = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                let (plan, finished) = (&plan, &finished);
                scope.spawn(move || {
                    let outcome = worker::run(plan, share);
                    finished.fetch_add(1, Ordering::AcqRel);
                    outcome
                })
            })
            .collect();
        follow(&plan, options, threads, &finished, observer);
        let elapsed = plan.start.elapsed();
        for handle in handles {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => push_note(&plan.collector, format!("worker failed: {error}")),
                Err(_) => push_note(&plan.collector, "worker panicked".to_owned()),
            }
        }
        elapsed
    });
    if let Some(path) = &options.latency_log {
        write_samples(path, &plan, options)?;
    }
    Ok(report(options, &servers, threads, &plan.collector, elapsed))
}

/// The CLOCK_MONOTONIC clock in nanoseconds (the clock of `--latency-log`).
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64
}

/// `--latency-log`: every op of the run, on the CLOCK_MONOTONIC clock.
fn write_samples(path: &Path, plan: &Plan, options: &RunOptions) -> Result<(), BenchError> {
    // `Instant` counts on CLOCK_MONOTONIC; the run's start on that clock is now less the time
    // since the start.
    let now_ns = monotonic_ns();
    let since_start = u64::try_from(plan.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let origin_ns = now_ns.saturating_sub(since_start);
    let window_ns = (
        options.warmup * 1_000_000_000,
        (options.warmup + options.duration) * 1_000_000_000,
    );
    let mut samples = plan
        .collector
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .samples
        .take()
        .unwrap_or_default();
    stats::write_latency_log(path, origin_ns, window_ns, &mut samples).map_err(|source| {
        BenchError::LatencyLog {
            path: path.to_owned(),
            source,
        }
    })
}

fn push_note(collector: &Arc<Mutex<Collector>>, note: String) {
    if let Ok(mut collector) = collector.lock() {
        collector.notes.push(note);
    }
}

/// Each thread's sessions, op budget, rate and delete slices.
fn shares(options: &RunOptions, threads: usize) -> Vec<Share> {
    (0..threads)
        .map(|thread| {
            let sessions: Vec<usize> = (thread..options.sessions).step_by(threads).collect();
            let weight = sessions.len() as f64 / options.sessions as f64;
            let delete_ranges = sessions
                .iter()
                .map(|&s| split_range(options.keys, options.sessions as u64, s as u64))
                .collect();
            Share {
                ops_max: options
                    .ops
                    .map(|ops| split_range(ops, threads as u64, thread as u64))
                    .map(|(start, end)| end - start),
                rate: options.rate.map(|rate| rate * weight),
                sessions,
                delete_ranges,
            }
        })
        .collect()
}

/// Shows each second shortly after it ends and marks the measured window, until every worker
/// has finished.
fn follow(
    plan: &Plan,
    options: &RunOptions,
    threads: usize,
    finished: &AtomicUsize,
    observer: &mut dyn Observer,
) {
    let measure_start = plan.start + Duration::from_secs(options.warmup);
    let measure_end = measure_start + Duration::from_secs(options.duration);
    let (mut started, mut ended) = (false, false);
    let mut mark = |observer: &mut dyn Observer| {
        let now = Instant::now();
        if !started && now >= measure_start {
            started = true;
            observer.measure_start();
        }
        if !ended && now >= measure_end {
            ended = true;
            observer.measure_end();
        }
    };
    let mut second = 0;
    loop {
        let due = plan.start + Duration::from_millis(1_000 * (second as u64 + 1) + 250);
        while Instant::now() < due {
            if finished.load(Ordering::Acquire) == threads {
                if !started {
                    observer.measure_start();
                }
                if !ended {
                    observer.measure_end();
                }
                return show_rest(plan, options, second, observer);
            }
            mark(observer);
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Ok(collector) = plan.collector.lock() {
            if let Some(interval) = collector.intervals.get(second) {
                observer.second(&Point::of(
                    second,
                    (second as u64) < options.warmup,
                    interval,
                ));
            }
        }
        second += 1;
    }
}

/// The seconds not yet shown when the workers finished, up to the end of the run.
fn show_rest(plan: &Plan, options: &RunOptions, from: usize, observer: &mut dyn Observer) {
    let end = (options.warmup + options.duration) as usize;
    if let Ok(collector) = plan.collector.lock() {
        for (second, interval) in collector.intervals.iter().enumerate().take(end).skip(from) {
            observer.second(&Point::of(
                second,
                (second as u64) < options.warmup,
                interval,
            ));
        }
    }
}

fn report(
    options: &RunOptions,
    servers: &[SocketAddr],
    threads: usize,
    collector: &Arc<Mutex<Collector>>,
    elapsed: Duration,
) -> Report {
    let collector = collector
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let elapsed_s = elapsed.as_secs_f64();
    // A run that ended early (op limit, delete pool used up) measures what it had.
    let (from, measured_s) = if elapsed_s > options.warmup as f64 {
        let measured = (elapsed_s - options.warmup as f64).min(options.duration as f64);
        (options.warmup as usize, measured)
    } else {
        (0, elapsed_s)
    };
    let to = (options.warmup + options.duration) as usize;
    let total = collector.total(from, to);
    let timeline = collector
        .intervals
        .iter()
        .enumerate()
        .take(to)
        .map(|(second, interval)| Point::of(second, second < from, interval))
        .collect();
    Report {
        workload: options.workload.name().to_owned(),
        servers: servers.iter().map(ToString::to_string).collect(),
        threads,
        sessions: options.sessions,
        inflight: options.inflight,
        value_bytes: options.value_bytes,
        rate: options.rate,
        warmup_s: from as f64,
        duration_s: measured_s,
        ops: total.ops,
        ops_per_s: total.ops as f64 / measured_s.max(1e-9),
        latency_us: Percentiles::of(&total.latency_us),
        errors: total.errors.clone(),
        notes: collector.notes.clone(),
        timeline,
        histogram: Some(total.latency_us),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_target_the_local_server() {
        let options = RunOptions::default();
        assert_eq!(options.servers, "127.0.0.1:2181");
        assert_eq!(options.value_bytes, 100);
        options.validate().expect("defaults are valid");
    }

    #[test]
    fn bad_options_are_refused() {
        let mut options = RunOptions {
            sessions: 0,
            ..RunOptions::default()
        };
        assert!(matches!(options.validate(), Err(BenchError::Invalid(_))));
        options.sessions = 1;
        options.workload = Workload::Watch;
        assert!(options.validate().is_err());
        options.workload = Workload::Get;
        options.rate = Some(-5.0);
        assert!(options.validate().is_err());
    }

    #[test]
    fn shares_cover_every_session_once() {
        let options = RunOptions {
            sessions: 5,
            ops: Some(101),
            rate: Some(1000.0),
            keys: 10,
            ..RunOptions::default()
        };
        let shares = shares(&options, 2);
        assert_eq!(shares[0].sessions, vec![0, 2, 4]);
        assert_eq!(shares[1].sessions, vec![1, 3]);
        assert_eq!(shares.iter().filter_map(|s| s.ops_max).sum::<u64>(), 101);
        let rate: f64 = shares.iter().filter_map(|s| s.rate).sum();
        assert!((rate - 1000.0).abs() < 1e-6);
        assert_eq!(shares[0].delete_ranges, vec![(0, 2), (4, 6), (8, 10)]);
    }
}

//! Measurements: per-worker recorders fill one-second intervals (an HDR histogram of latencies
//! in microseconds, an op count, errors by name) and merge them into a shared collector, from
//! which the live line, the final report and the chart are made. When asked, they also keep
//! every op as a `Sample` (for `--latency-log`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use serde::Serialize;
use zinc_protocol::ErrorCode;

/// Largest latency recorded exactly; longer ones are clamped to it (and still counted).
pub const LATENCY_US_MAX: u64 = 120_000_000;
const NANOS_PER_SECOND: u64 = 1_000_000_000;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("static histogram bounds are valid")
}

/// The name an error is counted under: ZooKeeper's code name and number for server replies,
/// or a client-side description (connection refused, connection lost, ...).
pub fn error_name(err: i32) -> String {
    match ErrorCode::from_i32(err) {
        Some(code) => format!("{code:?}({err})"),
        None => format!("error({err})"),
    }
}

/// One second of one run, or the sum of several workers' seconds.
#[derive(Debug, Clone)]
pub struct Interval {
    pub ops: u64,
    pub latency_us: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
}

impl Default for Interval {
    fn default() -> Self {
        Interval {
            ops: 0,
            latency_us: new_histogram(),
            errors: BTreeMap::new(),
        }
    }
}

impl Interval {
    pub fn add(&mut self, other: &Interval) {
        self.ops += other.ops;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (name, count) in &other.errors {
            *self.errors.entry(name.clone()).or_default() += count;
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn clear(&mut self) {
        self.ops = 0;
        self.latency_us.reset();
        self.errors.clear();
    }
}

/// One op: when it was due to be sent (open loop) or was sent, in nanoseconds since the start
/// of the run, and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sample {
    pub start_ns: u64,
    pub latency_ns: u64,
}

/// Every worker's intervals, indexed by second since the start of the run.
#[derive(Debug, Default)]
pub struct Collector {
    pub intervals: Vec<Interval>,
    /// Errors that belong to no second (setup, connection failures reported once).
    pub notes: Vec<String>,
    /// Every op, in no particular order, if the collector was made to keep them.
    pub samples: Option<Vec<Sample>>,
}

impl Collector {
    pub fn shared() -> Arc<Mutex<Collector>> {
        Arc::new(Mutex::new(Collector::default()))
    }

    /// A collector that also keeps every op as a `Sample`.
    pub fn shared_with_samples() -> Arc<Mutex<Collector>> {
        Arc::new(Mutex::new(Collector {
            samples: Some(Vec::new()),
            ..Collector::default()
        }))
    }

    fn merge(&mut self, second: usize, interval: &Interval) {
        if self.intervals.len() <= second {
            self.intervals.resize_with(second + 1, Interval::default);
        }
        self.intervals[second].add(interval);
    }

    /// The sum of seconds `from..to`.
    pub fn total(&self, from: usize, to: usize) -> Interval {
        let mut total = Interval::default();
        for interval in self.intervals.iter().take(to).skip(from) {
            total.add(interval);
        }
        total
    }
}

/// A worker's side: fills the current second and hands it over when the second changes.
#[derive(Debug)]
pub struct Recorder {
    second: usize,
    current: Interval,
    /// This worker's ops since the last flush, if the collector keeps samples.
    samples: Option<Vec<Sample>>,
    shared: Arc<Mutex<Collector>>,
}

impl Recorder {
    pub fn new(shared: Arc<Mutex<Collector>>) -> Recorder {
        let keeps_samples = shared.lock().is_ok_and(|c| c.samples.is_some());
        Recorder {
            second: 0,
            current: Interval::default(),
            samples: keeps_samples.then(Vec::new),
            shared,
        }
    }

    fn at(&mut self, now_ns: u64) -> &mut Interval {
        let second = usize::try_from(now_ns / NANOS_PER_SECOND).unwrap_or(usize::MAX);
        if second != self.second {
            self.flush();
            self.second = second;
        }
        &mut self.current
    }

    /// An op that completed at `now_ns` after `latency_ns`.
    pub fn op(&mut self, now_ns: u64, latency_ns: u64) {
        let latency_us = (latency_ns / 1_000).clamp(1, LATENCY_US_MAX);
        if let Some(samples) = &mut self.samples {
            samples.push(Sample {
                start_ns: now_ns.saturating_sub(latency_ns),
                latency_ns,
            });
        }
        let interval = self.at(now_ns);
        interval.ops += 1;
        interval.latency_us.saturating_record(latency_us);
    }

    pub fn error(&mut self, now_ns: u64, name: &str) {
        let interval = self.at(now_ns);
        match interval.errors.get_mut(name) {
            Some(count) => *count += 1,
            None => {
                interval.errors.insert(name.to_owned(), 1);
            }
        }
    }

    /// Hands the current second to the collector (also when the second has not ended, so that
    /// the live line sees it; calling again later adds only what came since).
    pub fn flush(&mut self) {
        if self.current.ops == 0 && self.current.errors.is_empty() {
            return;
        }
        if let Ok(mut shared) = self.shared.lock() {
            shared.merge(self.second, &self.current);
            if let (Some(mine), Some(all)) = (&mut self.samples, &mut shared.samples) {
                all.append(mine);
            }
        }
        self.current.clear();
    }

    pub fn note(&self, message: String) {
        if let Ok(mut shared) = self.shared.lock() {
            if shared.notes.len() < 100 && !shared.notes.contains(&message) {
                shared.notes.push(message);
            }
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        Percentiles {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

/// One second of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub second: usize,
    pub warmup: bool,
    pub ops: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
}

impl Point {
    pub fn of(second: usize, warmup: bool, interval: &Interval) -> Point {
        Point {
            second,
            warmup,
            ops: interval.ops,
            p50_us: interval.latency_us.value_at_quantile(0.5),
            p99_us: interval.latency_us.value_at_quantile(0.99),
            errors: interval.error_count(),
        }
    }

    /// The line printed every second while a run goes on.
    pub fn live_line(&self) -> String {
        format!(
            "[{:>4}s]{} {:>10} ops/s  p50 {:>9}  p99 {:>9}  errors {}",
            self.second + 1,
            if self.warmup { " warm-up" } else { "        " },
            group_digits(self.ops),
            format_us(self.p50_us),
            format_us(self.p99_us),
            self.errors
        )
    }
}

/// The result of a run, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: String,
    pub servers: Vec<String>,
    pub threads: usize,
    pub sessions: usize,
    pub inflight: usize,
    pub value_bytes: usize,
    /// Requests per second of an open-loop run; `None` for closed loop.
    pub rate: Option<f64>,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub ops: u64,
    pub ops_per_s: f64,
    pub latency_us: Percentiles,
    pub errors: BTreeMap<String, u64>,
    pub notes: Vec<String>,
    pub timeline: Vec<Point>,
    /// The measured histogram, for the chart's distribution plot (not serialized).
    #[serde(skip)]
    pub histogram: Option<Histogram<u64>>,
}

impl Report {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The human-readable summary printed at the end.
    pub fn text(&self) -> String {
        let l = &self.latency_us;
        let mut out = format!(
            "workload {} against {} ({} sessions x {} in flight, {} threads, {}-byte values{})\n\
             measured {:.1} s after {:.1} s warm-up\n\
             ops        {}\n\
             ops/s      {}\n\
             latency    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}\n\
             errors     {}\n",
            self.workload,
            self.servers.join(","),
            self.sessions,
            self.inflight,
            self.threads,
            self.value_bytes,
            match self.rate {
                Some(rate) => format!(", open loop at {rate} ops/s"),
                None => ", closed loop".to_owned(),
            },
            self.duration_s,
            self.warmup_s,
            group_digits(self.ops),
            group_digits(self.ops_per_s.round() as u64),
            format_us(l.p50),
            format_us(l.p90),
            format_us(l.p99),
            format_us(l.p999),
            format_us(l.max),
            format_us(l.mean.round() as u64),
            self.error_count(),
        );
        for (name, count) in &self.errors {
            out.push_str(&format!("  {name:<28} {count}\n"));
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out
    }
}

/// Writes `samples` to `path` as text, sorted by start: a comment line naming the columns and
/// the measured window, then one line per op, `START_NS LATENCY_US`, where START_NS is on the
/// CLOCK_MONOTONIC clock (`origin_ns` is that clock at the run's start), so that the ops can be
/// lined up with what other programs on the machine saw (Python's `time.monotonic_ns()`).
pub fn write_latency_log(
    path: &std::path::Path,
    origin_ns: u64,
    window_ns: (u64, u64),
    samples: &mut [Sample],
) -> std::io::Result<()> {
    use std::io::Write;
    samples.sort_unstable();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "# start_ns latency_us (start: CLOCK_MONOTONIC when the op was due, or sent in closed \
         loop); measured window {} {}",
        origin_ns + window_ns.0,
        origin_ns + window_ns.1
    )?;
    for sample in samples.iter() {
        writeln!(
            out,
            "{} {}",
            origin_ns + sample.start_ns,
            sample.latency_ns / 1_000
        )?;
    }
    out.flush()
}

/// `12345678` as `12,345,678`.
pub fn group_digits(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A latency in the unit that suits it: `850 us`, `1.24 ms`, `2.50 s`.
pub fn format_us(value_us: u64) -> String {
    match value_us {
        0..=999 => format!("{value_us} us"),
        1_000..=999_999 => format!("{:.2} ms", value_us as f64 / 1e3),
        _ => format!("{:.2} s", value_us as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorders_merge_by_second() {
        let shared = Collector::shared();
        let mut a = Recorder::new(shared.clone());
        let mut b = Recorder::new(shared.clone());
        a.op(100, 2_000_000);
        a.op(1_500_000_000, 3_000_000);
        b.op(1_600_000_000, 1_000);
        b.error(1_700_000_000, &error_name(-101));
        b.error(2_100_000_000, "connection lost");
        a.flush();
        b.flush();
        let collector = shared.lock().expect("lock");
        assert_eq!(collector.intervals.len(), 3);
        assert_eq!(collector.intervals[0].ops, 1);
        assert_eq!(collector.intervals[1].ops, 2);
        assert_eq!(collector.intervals[1].errors["NoNode(-101)"], 1);
        let total = collector.total(1, 3);
        assert_eq!(total.ops, 2);
        assert_eq!(total.error_count(), 2);
        assert_eq!(
            total.latency_us.max(),
            total.latency_us.highest_equivalent(3_000)
        );
        assert_eq!(total.latency_us.min(), 1);
    }

    #[test]
    fn samples_are_kept_only_when_asked_and_logged_in_start_order() {
        let plain = Collector::shared();
        let mut recorder = Recorder::new(plain.clone());
        recorder.op(5_000_000, 1_000_000);
        recorder.flush();
        assert!(plain.lock().expect("lock").samples.is_none());

        let keeping = Collector::shared_with_samples();
        let mut a = Recorder::new(keeping.clone());
        let mut b = Recorder::new(keeping.clone());
        a.op(900_000_000, 2_000_000);
        // The second changes here: the first sample goes with the flush it causes.
        a.op(1_300_000_000, 500_000_000);
        b.op(1_000_000_000, 1_000);
        a.flush();
        b.flush();
        let mut samples = keeping.lock().expect("lock").samples.take().expect("kept");
        assert_eq!(samples.len(), 3);

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("latency.log");
        write_latency_log(&path, 10_000, (0, 2_000_000_000), &mut samples).expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("# start_ns latency_us"));
        assert!(lines[0].ends_with("measured window 10000 2000010000"));
        assert_eq!(
            &lines[1..],
            ["800010000 500000", "898010000 2000", "1000009000 1"]
        );
        let unwritable = dir.path().join("missing").join("latency.log");
        assert!(write_latency_log(&unwritable, 0, (0, 1), &mut samples).is_err());
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut histogram = new_histogram();
        for value in 1..=1000 {
            histogram.record(value).expect("in bounds");
        }
        let p = Percentiles::of(&histogram);
        assert_eq!(
            (p.p50, p.p90, p.p99, p.p999, p.max),
            (500, 900, 990, 999, 1000)
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(1234567), "1,234,567");
        assert_eq!(group_digits(123456), "123,456");
        assert_eq!(format_us(850), "850 us");
        assert_eq!(format_us(1_240), "1.24 ms");
        assert_eq!(format_us(2_500_000), "2.50 s");
        assert_eq!(error_name(-110), "NodeExists(-110)");
        assert_eq!(error_name(-9999), "error(-9999)");
    }

    #[test]
    fn live_line_shows_rate_and_tail() {
        let mut interval = Interval {
            ops: 31_000,
            ..Interval::default()
        };
        interval.latency_us.record(5_900).expect("in bounds");
        let line = Point::of(2, false, &interval).live_line();
        assert!(line.contains("31,000 ops/s"), "{line}");
        assert!(line.contains("p99   5.90 ms"), "{line}");
    }
}

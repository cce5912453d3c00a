//! `zinc-bench compare`: on this machine and in one run, starts Apache ZooKeeper (the Debian
//! package) and Zinc standalone with equivalent settings, runs the same workloads against each
//! in alternating order, samples each server's CPU time (user + system from /proc) around the
//! measured window and its peak memory (VmHWM), and prints a Markdown report with medians,
//! Zinc/ZooKeeper ratios and CPU microseconds per operation.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::proc_stats::{self, Usage};
use crate::stats::{format_us, group_digits, Point};
use crate::workload::Workload;
use crate::{run, BenchError, Observer, RunOptions};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The command line of `zinc-bench compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareOptions {
    /// The Zinc server binary (a release build).
    #[arg(long, default_value = "target/release/zinc")]
    pub zinc: PathBuf,
    /// Extra arguments for Zinc, space separated.
    #[arg(long, default_value = "")]
    pub zinc_args: String,
    /// Workloads to run, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "set,get,create,mixed")]
    pub workloads: Vec<Workload>,
    /// Rounds; each round runs every workload on both servers, and the report shows medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    #[arg(long, default_value_t = 4)]
    pub sessions: usize,
    /// Requests in flight per session (in all: sessions x inflight).
    #[arg(long, default_value_t = 16)]
    pub inflight: usize,
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Load generator threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(
        long,
        default_value = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"
    )]
    pub zookeeper_classpath: String,
    /// ZooKeeper's Java heap limit (-Xmx).
    #[arg(long, default_value = "1g")]
    pub zookeeper_heap: String,
    /// ZooKeeper's forceSync: "yes" (its default: fsync the log before acknowledging) or "no".
    #[arg(long, default_value = "yes")]
    pub zookeeper_force_sync: String,
    /// Where the servers' data directories go (default: a fresh directory under the system
    /// temporary directory, removed afterwards).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// A server this comparison started; killed when dropped.
struct ServerProcess {
    name: &'static str,
    child: Child,
    address: SocketAddr,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> Result<u16, BenchError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Sends a four-letter word and returns the whole answer ("" when the server is not up).
pub fn four_letter_word(address: SocketAddr, word: &str) -> String {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(word.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

/// Waits until the server serves sessions: ZooKeeper answers `ruok` before that (connections
/// are then closed, "ZooKeeperServer not running"); `srvr` shows a mode only once it serves.
fn wait_ready(mut server: ServerProcess) -> Result<ServerProcess, BenchError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !four_letter_word(server.address, "srvr").contains("Mode: ") {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(BenchError::Invalid(format!(
                "{} exited before it was ready: {status}",
                server.name
            )));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Invalid(format!(
                "{} did not serve on {} within {READY_TIMEOUT:?}",
                server.name, server.address
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

/// The zoo.cfg both servers' settings follow: one tick of 2 s, no connection limit, every
/// four-letter word, no admin server.
fn zoo_cfg(data_dir: &Path, port: u16, force_sync: &str) -> String {
    format!(
        "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\n\
         clientPortAddress=127.0.0.1\nmaxClientCnxns=0\n4lw.commands.whitelist=*\n\
         admin.enableServer=false\nforceSync={force_sync}\n",
        data_dir.display()
    )
}

fn start_zookeeper(options: &CompareOptions, dir: &Path) -> Result<ServerProcess, BenchError> {
    let port = free_port()?;
    let data = dir.join("zookeeper-data");
    std::fs::create_dir_all(&data)?;
    let config = dir.join("zoo.cfg");
    std::fs::write(&config, zoo_cfg(&data, port, &options.zookeeper_force_sync))?;
    let child = Command::new("java")
        .arg(format!("-Xmx{}", options.zookeeper_heap))
        .args(["-cp", &options.zookeeper_classpath])
        .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
        .arg(&config)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| BenchError::Invalid(format!("cannot start java: {error}")))?;
    wait_ready(ServerProcess {
        name: "ZooKeeper",
        child,
        address: SocketAddr::from(([127, 0, 0, 1], port)),
    })
}

fn start_zinc(options: &CompareOptions, dir: &Path) -> Result<ServerProcess, BenchError> {
    let port = free_port()?;
    let data = dir.join("zinc-data");
    std::fs::create_dir_all(&data)?;
    let child = Command::new(&options.zinc)
        .args(["--port", &port.to_string()])
        .arg("--data-dir")
        .arg(&data)
        .args(["--four-letter-words", "*", "--tick-time", "2000"])
        .args(["--max-client-cnxns", "0"])
        .args(options.zinc_args.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| {
            BenchError::Invalid(format!("cannot start {}: {error}", options.zinc.display()))
        })?;
    wait_ready(ServerProcess {
        name: "Zinc",
        child,
        address: SocketAddr::from(([127, 0, 0, 1], port)),
    })
}

/// One workload run against one server.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub server: &'static str,
    pub workload: Workload,
    pub round: usize,
    pub ops: u64,
    pub ops_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
    /// Server CPU time (user + system) over the measured window.
    pub cpu_us: u64,
}

impl Sample {
    pub fn cpu_us_per_op(&self) -> f64 {
        self.cpu_us as f64 / self.ops.max(1) as f64
    }
}

/// Samples a server's CPU time at the measured window's edges and prints live lines.
struct CpuWindow<'a> {
    pid: u32,
    label: &'a str,
    start: Option<Usage>,
    end: Option<Usage>,
}

impl Observer for CpuWindow<'_> {
    fn second(&mut self, point: &Point) {
        eprintln!("{} {}", self.label, point.live_line());
    }
    fn measure_start(&mut self) {
        self.start = proc_stats::usage(self.pid).ok();
    }
    fn measure_end(&mut self) {
        self.end = proc_stats::usage(self.pid).ok();
    }
}

fn measure(
    options: &CompareOptions,
    server: &ServerProcess,
    workload: Workload,
    round: usize,
) -> Result<Sample, BenchError> {
    let run_options = RunOptions {
        servers: server.address.to_string(),
        workload,
        duration: options.duration,
        warmup: options.warmup,
        sessions: options.sessions,
        inflight: options.inflight,
        value_bytes: options.value_bytes,
        keys: options.keys,
        threads: options.threads,
        quiet: true,
        ..RunOptions::default()
    };
    let label = format!("[{} {} round {}]", server.name, workload.name(), round + 1);
    let mut window = CpuWindow {
        pid: server.child.id(),
        label: &label,
        start: None,
        end: None,
    };
    let report = run(&run_options, &mut window)?;
    let cpu_us = match (window.start, window.end) {
        (Some(start), Some(end)) => end.cpu_us.saturating_sub(start.cpu_us),
        _ => 0,
    };
    eprintln!(
        "{label} {} ops/s, p99 {}, {} errors, server CPU {:.1} us/op",
        group_digits(report.ops_per_s.round() as u64),
        format_us(report.latency_us.p99),
        report.error_count(),
        cpu_us as f64 / report.ops.max(1) as f64
    );
    Ok(Sample {
        server: server.name,
        workload,
        round,
        ops: report.ops,
        ops_per_s: report.ops_per_s,
        p50_us: report.latency_us.p50,
        p99_us: report.latency_us.p99,
        errors: report.error_count(),
        cpu_us,
    })
}

/// Runs the whole comparison and returns the Markdown report.
pub fn compare(options: &CompareOptions) -> Result<String, BenchError> {
    let dir = match &options.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("zinc-bench-compare-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let outcome = compare_in(options, &dir);
    if options.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome
}

fn compare_in(options: &CompareOptions, dir: &Path) -> Result<String, BenchError> {
    let zookeeper = start_zookeeper(options, &dir.join("zookeeper"))?;
    let zinc = start_zinc(options, &dir.join("zinc"))?;
    let mut samples = Vec::new();
    for round in 0..options.runs {
        for &workload in &options.workloads {
            // Alternate which server goes first, so that neither always runs on a warmer machine.
            let order = if round.is_multiple_of(2) {
                [&zookeeper, &zinc]
            } else {
                [&zinc, &zookeeper]
            };
            for server in order {
                samples.push(measure(options, server, workload, round)?);
            }
        }
    }
    let memory = [
        (
            "ZooKeeper",
            proc_stats::usage(zookeeper.child.id())?.peak_rss_kib,
        ),
        ("Zinc", proc_stats::usage(zinc.child.id())?.peak_rss_kib),
    ];
    Ok(format!(
        "{}\n{}",
        context(),
        markdown(options, &samples, &memory)
    ))
}

/// Where and what was measured: machine, commit, command line.
fn context() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let commit = Command::new("git")
        .args(["log", "-1", "--format=%h %s"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let command: Vec<String> = std::env::args().collect();
    format!(
        "Machine: {cpu}, {cores} cores, {:.0} GiB RAM, Linux {}.\nCommit: {commit}.\nCommand: `{}`\n",
        memory_kib as f64 / 1024.0 / 1024.0,
        read("/proc/sys/kernel/osrelease").trim(),
        command.join(" ")
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if !values.len().is_multiple_of(2) {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// Medians of one server's samples for one workload: (ops/s, p99 us, CPU us/op, errors).
fn medians(samples: &[Sample], server: &str, workload: Workload) -> (f64, f64, f64, u64) {
    let mine: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.server == server && s.workload == workload)
        .collect();
    (
        median(mine.iter().map(|s| s.ops_per_s).collect()),
        median(mine.iter().map(|s| s.p99_us as f64).collect()),
        median(mine.iter().map(|s| s.cpu_us_per_op()).collect()),
        mine.iter().map(|s| s.errors).sum(),
    )
}

fn ratio(zinc: f64, zookeeper: f64) -> String {
    if zookeeper > 0.0 {
        format!("{:.2}x", zinc / zookeeper)
    } else {
        "n/a".to_owned()
    }
}

/// The Markdown report: medians and ratios, then every sample, then peak memory.
pub fn markdown(options: &CompareOptions, samples: &[Sample], memory: &[(&str, u64)]) -> String {
    let mut out = format!(
        "Settings: {} sessions x {} in flight ({} requests outstanding), {}-byte values, \
         {} keys, {} s measured after {} s warm-up, {} rounds (medians shown), servers run in \
         alternating order. ZooKeeper: -Xmx{}, forceSync={}.\n\n",
        options.sessions,
        options.inflight,
        options.sessions * options.inflight,
        options.value_bytes,
        options.keys,
        options.duration,
        options.warmup,
        options.runs,
        options.zookeeper_heap,
        options.zookeeper_force_sync,
    );
    out.push_str(
        "| workload | ZooKeeper ops/s | Zinc ops/s | Zinc/ZK | ZooKeeper p99 | Zinc p99 | Zinc/ZK | \
         ZooKeeper CPU us/op | Zinc CPU us/op | Zinc/ZK | errors ZK/Zinc |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for &workload in &options.workloads {
        let zk = medians(samples, "ZooKeeper", workload);
        let zinc = medians(samples, "Zinc", workload);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {}/{} |",
            workload.name(),
            group_digits(zk.0.round() as u64),
            group_digits(zinc.0.round() as u64),
            ratio(zinc.0, zk.0),
            format_us(zk.1 as u64),
            format_us(zinc.1 as u64),
            ratio(zinc.1, zk.1),
            zk.2,
            zinc.2,
            ratio(zinc.2, zk.2),
            zk.3,
            zinc.3,
        );
    }
    out.push_str("\nPeak resident memory (VmHWM) after all rounds: ");
    let memory: Vec<String> = memory
        .iter()
        .map(|(name, kib)| format!("{name} {:.0} MiB", *kib as f64 / 1024.0))
        .collect();
    out.push_str(&memory.join(", "));
    out.push_str(".\n\nEvery run:\n\n| round | workload | server | ops/s | p50 | p99 | CPU us/op | errors |\n|---:|---|---|---:|---:|---:|---:|---:|\n");
    for sample in samples {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {} |",
            sample.round + 1,
            sample.workload.name(),
            sample.server,
            group_digits(sample.ops_per_s.round() as u64),
            format_us(sample.p50_us),
            format_us(sample.p99_us),
            sample.cpu_us_per_op(),
            sample.errors
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(server: &'static str, round: usize, ops_per_s: f64, cpu_us: u64) -> Sample {
        Sample {
            server,
            workload: Workload::Set,
            round,
            ops: (ops_per_s * 10.0) as u64,
            ops_per_s,
            p50_us: 500,
            p99_us: 2_000,
            errors: 0,
            cpu_us,
        }
    }

    fn options() -> CompareOptions {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            options: CompareOptions,
        }
        Wrapper::parse_from(["compare", "--workloads", "set"]).options
    }

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
        assert_eq!(ratio(4.0, 1.0), "4.00x");
        assert_eq!(ratio(4.0, 0.0), "n/a");
    }

    #[test]
    fn table_shows_medians_ratios_and_cpu_per_op() {
        let samples = vec![
            sample("ZooKeeper", 0, 30_000.0, 3_000_000),
            sample("ZooKeeper", 1, 10_000.0, 1_000_000),
            sample("ZooKeeper", 2, 20_000.0, 2_000_000),
            sample("Zinc", 0, 80_000.0, 800_000),
            sample("Zinc", 1, 90_000.0, 900_000),
            sample("Zinc", 2, 100_000.0, 1_000_000),
        ];
        let table = markdown(
            &options(),
            &samples,
            &[("ZooKeeper", 204_800), ("Zinc", 10_240)],
        );
        // ZooKeeper: median 20,000 ops/s and 10 us/op; Zinc: 90,000 ops/s and 1 us/op.
        assert!(
            table.contains("| set | 20,000 | 90,000 | 4.50x | 2.00 ms | 2.00 ms | 1.00x | 10.0 | 1.0 | 0.10x | 0/0 |"),
            "{table}"
        );
        assert!(table.contains("ZooKeeper 200 MiB, Zinc 10 MiB"), "{table}");
        assert!(table.contains("4 sessions x 16 in flight (64 requests outstanding)"));
        assert_eq!(table.matches("| set | Zinc |").count(), 3);
    }

    #[test]
    fn zoo_cfg_is_equivalent_to_zincs_flags() {
        let cfg = zoo_cfg(Path::new("/d"), 2999, "yes");
        assert!(cfg.contains("clientPort=2999\n"));
        assert!(cfg.contains("tickTime=2000\n"));
        assert!(cfg.contains("maxClientCnxns=0\n"));
        assert!(cfg.contains("forceSync=yes\n"));
    }
}

//! `zinc-bench compare`: on this machine and in one run, starts Apache ZooKeeper (the Debian
//! package) and Zinc with equivalent settings, standalone or as `--ensemble N`-server ensembles
//! on loopback (`deploy`), runs the same workloads against each in alternating order (sessions
//! spread over an ensemble's members), samples the servers' CPU time (user + system from /proc,
//! summed over an ensemble's processes) around the measured window and their peak memory
//! (VmHWM), and prints a Markdown report with medians, Zinc/ZooKeeper ratios and CPU
//! microseconds per operation.

mod deploy;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use self::deploy::{Deployment, Product, ENSEMBLE_SIZE_MAX};
use crate::stats::{format_us, group_digits, Point};
use crate::workload::Workload;
use crate::{run, BenchError, Observer, RunOptions};

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
    /// Servers per product: 1 runs each standalone; 3 runs two 3-server ensembles on loopback
    /// (ZooKeeper's and Zinc's, each member with its own dataDir, myid and ports), with the
    /// sessions spread over the members and the CPU time of all members counted.
    #[arg(long, default_value_t = 1)]
    pub ensemble: usize,
}

/// A port nothing listens on right now.
pub fn free_port() -> Result<u16, BenchError> {
    Ok(deploy::free_ports(1)?[0])
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

/// Samples the servers' CPU time (summed over a deployment's processes) at the measured
/// window's edges and prints live lines.
struct CpuWindow<'a> {
    pids: Vec<u32>,
    label: &'a str,
    start_cpu_us: Option<u64>,
    end_cpu_us: Option<u64>,
}

impl Observer for CpuWindow<'_> {
    fn second(&mut self, point: &Point) {
        eprintln!("{} {}", self.label, point.live_line());
    }
    fn measure_start(&mut self) {
        self.start_cpu_us = deploy::cpu_us_sum(&self.pids);
    }
    fn measure_end(&mut self) {
        self.end_cpu_us = deploy::cpu_us_sum(&self.pids);
    }
}

fn measure(
    options: &CompareOptions,
    deployment: &Deployment,
    workload: Workload,
    round: usize,
) -> Result<Sample, BenchError> {
    let run_options = RunOptions {
        servers: deployment.servers(),
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
    let label = format!(
        "[{} {} round {}]",
        deployment.label(),
        workload.name(),
        round + 1
    );
    let mut window = CpuWindow {
        pids: deployment.pids(),
        label: &label,
        start_cpu_us: None,
        end_cpu_us: None,
    };
    let report = run(&run_options, &mut window)?;
    let cpu_us = match (window.start_cpu_us, window.end_cpu_us) {
        (Some(start), Some(end)) => end.saturating_sub(start),
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
        server: deployment.product.name(),
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

/// What the report tells of one product's servers besides the samples.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSummary {
    pub server: &'static str,
    /// Each process's peak resident memory (VmHWM), in member order.
    pub peak_rss_kib: Vec<u64>,
    /// Each member's `srvr` mode when the rounds started and after they ended.
    pub roles_at_start: String,
    pub roles_at_end: String,
}

/// Runs the whole comparison and returns the Markdown report.
pub fn compare(options: &CompareOptions) -> Result<String, BenchError> {
    if options.ensemble == 0 || options.ensemble > ENSEMBLE_SIZE_MAX {
        return Err(BenchError::Invalid(format!(
            "--ensemble must be 1..={ENSEMBLE_SIZE_MAX}"
        )));
    }
    if !options.sessions.is_multiple_of(options.ensemble) {
        eprintln!(
            "zinc-bench compare: {} sessions do not spread evenly over {} servers",
            options.sessions, options.ensemble
        );
    }
    let dir = match &options.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("zinc-bench-compare-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    // Servers run in their own directories: every path they get must be absolute.
    let absolute = CompareOptions {
        zinc: std::path::absolute(&options.zinc)?,
        ..options.clone()
    };
    let outcome = compare_in(&absolute, &std::path::absolute(&dir)?);
    if options.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome
}

fn compare_in(options: &CompareOptions, dir: &Path) -> Result<String, BenchError> {
    // Both deployments are killed when they drop: at the end, or on the first error.
    let zookeeper = Deployment::start(Product::ZooKeeper, options, &dir.join("zookeeper"))?;
    let zinc = Deployment::start(Product::Zinc, options, &dir.join("zinc"))?;
    let roles_at_start = [zookeeper.roles(), zinc.roles()];
    let mut samples = Vec::new();
    for round in 0..options.runs {
        for &workload in &options.workloads {
            // Alternate which server goes first, so that neither always runs on a warmer machine.
            let order = if round.is_multiple_of(2) {
                [&zookeeper, &zinc]
            } else {
                [&zinc, &zookeeper]
            };
            for deployment in order {
                samples.push(measure(options, deployment, workload, round)?);
            }
        }
    }
    let mut servers = Vec::new();
    for (deployment, roles_at_start) in [&zookeeper, &zinc].into_iter().zip(roles_at_start) {
        servers.push(ServerSummary {
            server: deployment.product.name(),
            peak_rss_kib: deployment.peak_rss_kib()?,
            roles_at_start,
            roles_at_end: deployment.roles(),
        });
    }
    Ok(format!(
        "{}\n{}",
        context(),
        markdown(options, &samples, &servers)
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

/// The Markdown report: settings, medians and ratios, peak memory, then every sample.
pub fn markdown(options: &CompareOptions, samples: &[Sample], servers: &[ServerSummary]) -> String {
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
    if options.ensemble > 1 {
        out.push_str(&ensemble_paragraph(options.ensemble, servers));
    }
    out.push_str(&medians_table(options, samples));
    out.push_str(&memory_line(options.ensemble, servers));
    out.push_str(
        "\n\nEvery run:\n\n| round | workload | server | ops/s | p50 | p99 | CPU us/op | errors |\n\
         |---:|---|---|---:|---:|---:|---:|---:|\n",
    );
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

/// What an ensemble run measured: which servers, where the load went, who led.
fn ensemble_paragraph(size: usize, servers: &[ServerSummary]) -> String {
    let mut out = format!(
        "Servers: two {size}-server ensembles on loopback, ZooKeeper's and Zinc's (tickTime {}, \
         initLimit {}, syncLimit {}; each member its own process, dataDir, myid and ports). \
         Sessions are spread round-robin over the {size} members; the tree is created through \
         member 1. CPU us/op is the CPU time of all {size} members together per operation. \
         Roles (srvr) before the first round and after the last:",
        deploy::TICK_TIME_MS,
        deploy::INIT_LIMIT_TICKS,
        deploy::SYNC_LIMIT_TICKS,
    );
    for server in servers {
        let _ = write!(
            out,
            " {} {} / {};",
            server.server, server.roles_at_start, server.roles_at_end
        );
    }
    out.pop();
    out.push_str(".\n\n");
    out
}

/// Medians per workload and product, with Zinc/ZooKeeper ratios.
fn medians_table(options: &CompareOptions, samples: &[Sample]) -> String {
    let mut out = String::new();
    let cpu_scope = if options.ensemble > 1 {
        let _ = writeln!(
            out,
            "**{}-server ensembles** (CPU: all {} servers of each ensemble together):\n",
            options.ensemble, options.ensemble
        );
        format!(" (all {} servers)", options.ensemble)
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "| workload | ZooKeeper ops/s | Zinc ops/s | Zinc/ZK | ZooKeeper p99 | Zinc p99 | Zinc/ZK | \
         ZooKeeper CPU us/op{cpu_scope} | Zinc CPU us/op{cpu_scope} | Zinc/ZK | errors ZK/Zinc |\n\
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
    out
}

/// Peak memory per product: of its one process, or summed over its ensemble's members (each
/// member's in parentheses).
fn memory_line(size: usize, servers: &[ServerSummary]) -> String {
    let mib = |kib: u64| format!("{:.0}", kib as f64 / 1024.0);
    let parts: Vec<String> = servers
        .iter()
        .map(|server| {
            let total = mib(server.peak_rss_kib.iter().sum());
            if server.peak_rss_kib.len() > 1 {
                let each: Vec<String> = server.peak_rss_kib.iter().map(|&k| mib(k)).collect();
                format!("{} {total} MiB ({})", server.server, each.join(" + "))
            } else {
                format!("{} {total} MiB", server.server)
            }
        })
        .collect();
    let scope = if size > 1 {
        format!(", summed over each ensemble's {size} servers")
    } else {
        String::new()
    };
    format!(
        "\nPeak resident memory (VmHWM) after all rounds{scope}: {}.",
        parts.join(", ")
    )
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

    fn options(extra: &[&str]) -> CompareOptions {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            options: CompareOptions,
        }
        let arguments = ["compare", "--workloads", "set"].iter().chain(extra);
        Wrapper::parse_from(arguments).options
    }

    fn summary(server: &'static str, peak_rss_kib: &[u64], roles: &str) -> ServerSummary {
        ServerSummary {
            server,
            peak_rss_kib: peak_rss_kib.to_vec(),
            roles_at_start: roles.to_owned(),
            roles_at_end: roles.to_owned(),
        }
    }

    fn samples() -> Vec<Sample> {
        vec![
            sample("ZooKeeper", 0, 30_000.0, 3_000_000),
            sample("ZooKeeper", 1, 10_000.0, 1_000_000),
            sample("ZooKeeper", 2, 20_000.0, 2_000_000),
            sample("Zinc", 0, 80_000.0, 800_000),
            sample("Zinc", 1, 90_000.0, 900_000),
            sample("Zinc", 2, 100_000.0, 1_000_000),
        ]
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
        let options = options(&[]);
        assert_eq!(options.ensemble, 1, "standalone by default");
        let table = markdown(
            &options,
            &samples(),
            &[
                summary("ZooKeeper", &[204_800], "standalone"),
                summary("Zinc", &[10_240], "standalone"),
            ],
        );
        // ZooKeeper: median 20,000 ops/s and 10 us/op; Zinc: 90,000 ops/s and 1 us/op.
        assert!(
            table.contains("| set | 20,000 | 90,000 | 4.50x | 2.00 ms | 2.00 ms | 1.00x | 10.0 | 1.0 | 0.10x | 0/0 |"),
            "{table}"
        );
        assert!(
            table.contains("| ZooKeeper CPU us/op | Zinc CPU us/op | Zinc/ZK |"),
            "{table}"
        );
        assert!(
            table.contains("after all rounds: ZooKeeper 200 MiB, Zinc 10 MiB.\n"),
            "{table}"
        );
        assert!(table.contains("4 sessions x 16 in flight (64 requests outstanding)"));
        assert_eq!(table.matches("| set | Zinc |").count(), 3);
        assert!(!table.contains("ensemble"), "{table}");
    }

    #[test]
    fn ensemble_table_says_so_and_sums_memory() {
        let options = options(&["--ensemble", "3", "--sessions", "6"]);
        let roles = "1 follower, 2 follower, 3 leader";
        let table = markdown(
            &options,
            &samples(),
            &[
                summary("ZooKeeper", &[102_400, 102_400, 204_800], roles),
                summary("Zinc", &[10_240, 10_240, 20_480], roles),
            ],
        );
        assert!(
            table.contains("two 3-server ensembles on loopback"),
            "{table}"
        );
        assert!(table.contains("**3-server ensembles**"), "{table}");
        assert!(
            table.contains(
                "| ZooKeeper CPU us/op (all 3 servers) | Zinc CPU us/op (all 3 servers) |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| set | 20,000 | 90,000 | 4.50x | 2.00 ms | 2.00 ms | 1.00x | 10.0 | 1.0 | 0.10x | 0/0 |"),
            "{table}"
        );
        assert!(
            table.contains(
                "summed over each ensemble's 3 servers: ZooKeeper 400 MiB (100 + 100 + 200), \
                 Zinc 40 MiB (10 + 10 + 20)."
            ),
            "{table}"
        );
        assert!(
            table.contains(&format!(
                "ZooKeeper {roles} / {roles}; Zinc {roles} / {roles}."
            )),
            "{table}"
        );
    }

    #[test]
    fn ensemble_size_is_limited() {
        for size in ["0", "8"] {
            let error = compare(&options(&["--ensemble", size])).expect_err("refused");
            assert!(error.to_string().contains("--ensemble"), "{error}");
        }
    }
}

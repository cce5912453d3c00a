//! zinc-bench against a real `zinc` on a free port: a short run of several workloads must report
//! operations and no errors, and a target that refuses connections must be reported clearly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zinc_bench::workload::Workload;
use zinc_bench::{compare, monotonic_ns, run, RunOptions, Silent};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    compare::free_port().expect("a free port")
}

/// The `zinc` binary of this workspace's build (`cargo test --workspace` builds it); built here
/// if this crate's tests run alone.
fn zinc_binary() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_zinc-bench"));
    let zinc = bench.with_file_name("zinc");
    if !zinc.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "zinc-server", "--bin", "zinc"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p zinc-server failed");
    }
    zinc
}

struct Zinc {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Zinc {
    fn start() -> Zinc {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut child = Command::new(zinc_binary())
            .args(["--port", &port.to_string()])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--four-letter-words", "*"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start zinc");
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + READY_TIMEOUT;
        while compare::four_letter_word(address, "ruok") != "imok" {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("zinc exited before it was ready: {status}");
            }
            assert!(Instant::now() < deadline, "zinc not ready on {address}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Zinc {
            child,
            address,
            _dir: dir,
        }
    }
}

impl Drop for Zinc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn options(zinc: &Zinc, workload: Workload) -> RunOptions {
    RunOptions {
        servers: zinc.address.to_string(),
        workload,
        duration: 1,
        warmup: 0,
        keys: 200,
        quiet: true,
        ..RunOptions::default()
    }
}

#[test]
fn the_binary_reports_ops_and_no_errors_as_json() {
    let zinc = Zinc::start();
    let output = Command::new(env!("CARGO_BIN_EXE_zinc-bench"))
        .args(["--servers", &zinc.address.to_string()])
        .args(["--workload", "mixed", "--duration", "1", "--warmup", "0"])
        .args([
            "--keys",
            "200",
            "--sessions",
            "4",
            "--inflight",
            "8",
            "--json",
        ])
        .output()
        .expect("run zinc-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "zinc-bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert!(report["ops"].as_u64().expect("ops") > 0, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert!(report["latency_us"]["p99"].as_u64().expect("p99") > 0);
    // The live lines went to stderr, one per second.
    assert!(String::from_utf8_lossy(&output.stderr).contains("ops/s"));
}

#[test]
fn writes_watches_and_session_churn_succeed() {
    let zinc = Zinc::start();
    for workload in [Workload::Multi, Workload::Watch, Workload::Sessions] {
        let report = run(&options(&zinc, workload), &mut Silent).expect("run");
        assert!(report.ops > 0, "{workload:?}: {}", report.text());
        assert_eq!(report.error_count(), 0, "{workload:?}: {}", report.text());
    }
}

#[test]
fn every_listed_server_syncs_before_the_reads() {
    let zinc = Zinc::start();
    // The same server twice: the second entry gets the sync that an ensemble's followers get.
    let options = RunOptions {
        servers: format!("{0},{0}", zinc.address),
        ..options(&zinc, Workload::Get)
    };
    let report = run(&options, &mut Silent).expect("run");
    assert!(report.ops > 0, "{}", report.text());
    assert_eq!(report.error_count(), 0, "{}", report.text());
}

#[test]
fn a_refusing_target_is_reported_clearly() {
    let port = free_port();
    let output = Command::new(env!("CARGO_BIN_EXE_zinc-bench"))
        .args(["--servers", &format!("127.0.0.1:{port}"), "--duration", "1"])
        .output()
        .expect("run zinc-bench");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn an_open_loop_run_logs_every_op_on_the_monotonic_clock() {
    let zinc = Zinc::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("latency.log");
    let options = RunOptions {
        rate: Some(500.0),
        latency_log: Some(path.clone()),
        ..options(&zinc, Workload::Set)
    };
    let before = monotonic_ns();
    let report = run(&options, &mut Silent).expect("run");
    let after = monotonic_ns();
    assert_eq!(report.error_count(), 0, "{}", report.text());
    let text = std::fs::read_to_string(&path).expect("the log");
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    let window: Vec<u64> = header
        .rsplit("measured window ")
        .next()
        .expect("the window")
        .split(' ')
        .map(|n| n.parse().expect("a number"))
        .collect();
    assert!(
        before <= window[0] && window[0] + 1_000_000_000 == window[1],
        "{header}"
    );
    let samples: Vec<(u64, u64)> = lines
        .map(|line| {
            let (start, latency) = line.split_once(' ').expect("two columns");
            (
                start.parse().expect("start"),
                latency.parse().expect("latency"),
            )
        })
        .collect();
    // Every op the report counts is in the log, due at 500/s from the start.
    assert!(
        samples.len() as u64 >= report.ops && report.ops > 0,
        "{}",
        samples.len()
    );
    assert!(samples.len() <= 510, "{}", samples.len());
    assert!(samples.windows(2).all(|pair| pair[0].0 <= pair[1].0));
    for &(start, latency_us) in &samples {
        assert!(before <= start && start + latency_us * 1_000 <= after);
    }
}

//! Debian's C client shell `cli_mt`, driven line by line over stdin, against Zinc and Apache
//! ZooKeeper in the same run: the normalized transcripts of two clients (one watching, one
//! changing what the first watches) must match.
//!
//! `cli_mt` runs its commands asynchronously and prints completions from another thread, so each
//! step is followed by `sync /zookeeper` and the driver waits for that sync's completion: the
//! C client delivers completions and watch events in the order the server sent them, so
//! everything a step caused is printed before the barrier.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{Server, Zinc, ZooKeeper};

const CLI_MT: &str = "/usr/lib/zookeeper/bin/cli_mt";

/// How long one step may take before the test fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The completion line of the barrier `sync /zookeeper`.
const BARRIER_DONE: &str = "[/zookeeper]: rc = 0";

struct Cli {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    transcript: Vec<String>,
}

impl Cli {
    fn start(server: &dyn Server) -> Cli {
        let mut child = Command::new(CLI_MT)
            .args(["-h", &server.hosts()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cli_mt");
        let stdin = child.stdin.take().expect("stdin");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut cli = Cli {
            child,
            stdin,
            lines,
            transcript: Vec::new(),
        };
        cli.wait_for(|line| line.starts_with("Got a new session id"));
        cli
    }

    /// Collects output until a line satisfies `done` (that line included).
    fn wait_for(&mut self, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let finished = done(&line);
                    self.transcript.push(line);
                    if finished {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "cli_mt step timed out; output so far:\n{}",
                    self.transcript.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "cli_mt exited; output so far:\n{}",
                    self.transcript.join("\n")
                ),
            }
        }
    }

    /// Runs one command and waits until everything it caused has been printed.
    fn run(&mut self, command: &str) {
        writeln!(self.stdin, "{command}\nsync /zookeeper").expect("write to cli_mt");
        self.wait_for(|line| line == BARRIER_DONE);
    }

    /// Waits until every event already sent to this client has been printed.
    fn barrier(&mut self) {
        self.run("");
    }

    /// `quit` closes the session; returns the whole normalized transcript.
    fn quit(mut self) -> Vec<String> {
        writeln!(self.stdin, "quit").expect("write to cli_mt");
        self.wait_for(|line| line == "Quitting...");
        let deadline = Instant::now() + STEP_TIMEOUT;
        while self.child.try_wait().expect("wait cli_mt").is_none() {
            assert!(Instant::now() < deadline, "cli_mt did not exit after quit");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Anything printed between the barrier and the exit.
        self.transcript.extend(self.lines.try_iter());
        normalize(&self.transcript)
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Masks what differs between runs (times, zxids, session ids, log lines), drops the barrier's
/// own output, and sorts child listings (their order is unspecified).
fn normalize(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut children: Vec<String> = Vec::new();
    for line in lines {
        if line.contains("ZOO_")
            || line.starts_with("time = ")
            || line.starts_with("\tctime = ")
            || line.starts_with("\tmtime=")
            || line == BARRIER_DONE
            || line == "\tname = /zookeeper"
        {
            continue;
        }
        // A child listing is a run of tab-indented names.
        if line.starts_with('\t') && !line.contains('=') {
            children.push(line.clone());
            continue;
        }
        children.sort();
        out.append(&mut children);
        out.push(mask(line));
    }
    children.sort();
    out.append(&mut children);
    out
}

fn mask(line: &str) -> String {
    for prefix in ["\tczxid=", "\tmzxid=", "Got a new session id: "] {
        if line.starts_with(prefix) {
            return format!("{prefix}?");
        }
    }
    match line.strip_prefix("\tephemeralOwner = ") {
        Some(owner) if owner != "0" => "\tephemeralOwner = <session>".to_owned(),
        _ => line.to_owned(),
    }
}

/// Two clients: `a` creates every node kind, sets data, child and exist watches, and sees the
/// events its own and `b`'s changes cause; `b` checks that `a`'s ephemerals go when `a` quits.
fn transcript(server: &dyn Server) -> (Vec<String>, Vec<String>) {
    let mut a = Cli::start(server);
    let mut b = Cli::start(server);
    for command in [
        "create /w",
        "create /c",
        "create +e /c/eph",
        "create +s /c/seq-",
        "create +es /c/eseq-",
        "create +c /cont",
        "create2 /c2",
        "get /c",
        "ls /c",
        "ls2 /c",
        "set /c hello",
        "get /c",
        "exists /c/eph",
        "wexists /later",
        "get /w",
        "ls /w",
    ] {
        a.run(command);
    }
    for command in ["set /w from-b", "create /later", "create /w/kid"] {
        b.run(command);
        a.barrier();
    }
    for command in [
        "delete /c",
        "delete /c/eph",
        "get /missing",
        "set /missing x",
        "create /c",
        "create /c/eseq-0000000002/x",
        "delete /cont",
        "ls /c",
        "create +e /c/eph2",
        "get /c/eph2",
    ] {
        a.run(command);
    }
    let a_lines = a.quit();
    for command in ["ls /c", "get /w", "sync /c"] {
        b.run(command);
    }
    (a_lines, b.quit())
}

#[test]
fn cli_mt_transcript_matches_zookeeper() {
    let zinc = Zinc::start();
    let zookeeper = ZooKeeper::start();
    let (zinc_lines, zookeeper_lines) = std::thread::scope(|scope| {
        let a = scope.spawn(|| transcript(&zinc));
        let b = scope.spawn(|| transcript(&zookeeper));
        (a.join().expect("zinc"), b.join().expect("zookeeper"))
    });
    assert_eq!(
        zinc_lines, zookeeper_lines,
        "cli_mt transcripts differ\nzinc:\n{:#?}\nzookeeper:\n{:#?}",
        zinc_lines, zookeeper_lines
    );
    let (a, b) = &zinc_lines;
    for expected in [
        "\tname = /c/seq-0000000001",
        "\tname = /c/eseq-0000000002",
        "Watcher CHANGED_EVENT state = CONNECTED_STATE for path /c",
        "Watcher CHANGED_EVENT state = CONNECTED_STATE for path /w",
        "Watcher CREATED_EVENT state = CONNECTED_STATE for path /later",
        "Watcher CHILD_EVENT state = CONNECTED_STATE for path /w",
        "Watcher CHILD_EVENT state = CONNECTED_STATE for path /c",
        "Error -101 for /later",
        "/c: rc = -111",
        "/missing: rc = -101",
        "[/c]: rc = -110",
        "[/c/eseq-0000000002/x]: rc = -108",
        "\tephemeralOwner = <session>",
    ] {
        assert!(
            a.iter().any(|line| line == expected),
            "client a's transcript lacks {expected:?}:\n{}",
            a.join("\n")
        );
    }
    // After `a` quit, only the persistent sequential child is left under /c.
    let listing = b
        .iter()
        .rposition(|line| line == "/c: rc = 0")
        .expect("b listed /c");
    assert_eq!(b[listing + 1], "\tseq-0000000001", "{}", b.join("\n"));
    assert!(!b[listing + 2].starts_with('\t'), "{}", b.join("\n"));
}

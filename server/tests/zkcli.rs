//! Debian's Java zkCli, scripted over stdin, against Zinc and Apache ZooKeeper in the same run:
//! the normalized transcripts must match. Covers every node kind, persistent recursive watches,
//! whoami, digest auth and ACLs, getEphemerals and getAllChildrenNumber.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, Zinc, ZooKeeper};

const ZKCLI: &str = "/usr/share/zookeeper/bin/zkCli.sh";

const SCRIPT: &str = "\
create /z hello
create -e /z/e
create -s /z/s
create -e -s /z/es
create -c /cont
create /cont/child
create -t 5000 /ttl x
create /z/e/child
get -s /z
ls -s /z
set /z v2
set -v 7 /z v3
stat /z
addWatch -m PERSISTENT_RECURSIVE /z
create /z/deep
whoami
addauth digest bob:pw
whoami
getAcl /z
setAcl /z auth:bob:pw:cdrwa
getAcl /z
getEphemerals
getAllChildrenNumber /z
delete /z
delete /z/deep
delete /z/s0000000001
delete /z/es0000000002
delete /z/e
delete /z
ls /
get /nothing
quit
";

/// Masks what differs between runs: times, zxids, session ids. zkCli prints watch events from
/// its event thread, so where they land among the command output varies from run to run: they
/// are compared apart, sorted, after the command output.
fn normalize(output: &str) -> Vec<String> {
    let (mut events, mut lines): (Vec<String>, Vec<String>) = masked_lines(output)
        .into_iter()
        .partition(|line| line.starts_with("WatchedEvent "));
    events.sort();
    lines.append(&mut events);
    lines
}

fn masked_lines(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .filter(|line| !line.contains(" INFO ") && !line.contains(" WARN "))
        .filter(|line| !line.starts_with("ctime") && !line.starts_with("mtime"))
        .filter(|line| !line.starts_with("Connecting to") && !line.contains("SLF4J"))
        // zkCli prints the connection event from another thread, racing the banner.
        .filter(|line| !matches!(*line, "WATCHER::" | "Welcome to ZooKeeper!"))
        .filter(|line| *line != "WatchedEvent state:SyncConnected type:None path:null")
        // `quit` closes the session and exits the JVM while the event thread may still be
        // printing the client's own Closed event: it shows in some runs against either server.
        .filter(|line| *line != "WatchedEvent state:Closed type:None path:null")
        .map(sort_list)
        .map(|line| {
            let mut masked = String::with_capacity(line.len());
            let mut rest = line.as_str();
            while let Some(index) = rest.find("0x") {
                masked.push_str(&rest[..index]);
                masked.push_str("0x?");
                rest = rest[index + 2..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
            }
            masked.push_str(rest);
            masked
        })
        .collect()
}

/// Sorts the items of a printed list (`[b, a]`): ZooKeeper leaves child and ephemeral order
/// unspecified, so the two servers need not agree on it.
fn sort_list(line: &str) -> String {
    match line
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        Some(items) => {
            let mut items: Vec<&str> = items.split(", ").collect();
            items.sort();
            format!("[{}]", items.join(", "))
        }
        None => line.to_owned(),
    }
}

fn transcript(server: &dyn Server) -> Vec<String> {
    let mut child = Command::new(ZKCLI)
        .args([
            "-waitforconnection",
            "-timeout",
            "30000",
            "-server",
            &server.hosts(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start zkCli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(SCRIPT.as_bytes())
        .expect("write script");
    let output = common::run_checked_child(child, Duration::from_secs(120));
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    normalize(&text)
}

#[test]
fn zkcli_transcript_matches_zookeeper() {
    let zinc = Zinc::start();
    let zookeeper = ZooKeeper::start();
    let (zinc_lines, zookeeper_lines) = std::thread::scope(|scope| {
        let a = scope.spawn(|| transcript(&zinc));
        let b = scope.spawn(|| transcript(&zookeeper));
        (a.join().expect("zinc"), b.join().expect("zookeeper"))
    });
    assert_eq!(
        zinc_lines,
        zookeeper_lines,
        "zkCli transcripts differ\nzinc:\n{}\nzookeeper:\n{}",
        zinc_lines.join("\n"),
        zookeeper_lines.join("\n")
    );
    for expected in [
        "Created /z/s0000000001",
        "Created /cont",
        "Created /ttl",
        "Ephemerals cannot have children: /z/e/child",
        "version No is not valid : /z",
        "digest: bob",
        "Node not empty: /z",
        "WatchedEvent state:SyncConnected type:NodeCreated path:/z/deep",
    ] {
        assert!(
            zinc_lines.iter().any(|line| line.contains(expected)),
            "zinc transcript lacks {expected:?}:\n{}",
            zinc_lines.join("\n")
        );
    }
}

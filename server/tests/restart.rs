//! Snapshots in the running server, and restarts from them: with a small `snapCount` and
//! `preAllocSize`, snapshots are taken while clients write, only the newest three are kept, and
//! the log segments that only older snapshots needed are removed. After SIGKILL the server
//! comes back from the newest snapshot plus the log with every node and session; with the
//! newest snapshot damaged it falls back to an older one; with every snapshot damaged it
//! refuses to start and names the snapshot directory. A server killed while clients were
//! connected restarts on the same port at once (its old connections in TIME_WAIT).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::raw::{buffer, create_body, path_and_flag, RawClient};
use common::{Server, Zinc};

const OP_CREATE: i32 = 1;
const OP_GET_DATA: i32 = 4;
const OP_GET_ALL_CHILDREN_NUMBER: i32 = 104;
const EPHEMERAL: i32 = 1;
/// 2,000 nodes of 4,000 bytes: about 8 MB of log, two 4 MiB segments and more.
const NODES: usize = 2_000;
const VALUE_BYTES: usize = 4_000;
const RETAINED: usize = 3;
const CONFIG: &str = "snapCount=100\npreAllocSize=4096\nautopurge.snapRetainCount=1\n";

fn value(index: usize) -> Vec<u8> {
    let mut bytes = format!("node-{index}-").into_bytes();
    bytes.resize(VALUE_BYTES, b'.');
    bytes
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn start(dir: tempfile::TempDir) -> Zinc {
    let config = dir.path().join("zoo.cfg");
    std::fs::write(&config, CONFIG).expect("write zoo.cfg");
    let config = config.to_str().expect("utf-8 path").to_owned();
    Zinc::start_in(dir, &["--config", &config])
}

fn count_nodes(client: &mut RawClient) -> i32 {
    let reply = client
        .request(OP_GET_ALL_CHILDREN_NUMBER, &buffer(b"/"))
        .expect("getAllChildrenNumber");
    assert_eq!(reply.err, 0);
    i32::from_be_bytes(reply.body[..4].try_into().expect("count"))
}

/// Every node is there with its value (every 97th read back in full).
fn assert_all_present(address: std::net::SocketAddr, expected_nodes: i32, after: &str) {
    let mut client = RawClient::connect(address).expect("connect");
    assert_eq!(count_nodes(&mut client), expected_nodes, "{after}");
    for index in (0..NODES).step_by(97).chain([NODES - 1]) {
        let reply = client
            .request(OP_GET_DATA, &path_and_flag(&format!("/n{index}"), false))
            .expect("getData");
        assert_eq!(reply.err, 0, "{after}: /n{index}");
        assert_eq!(
            &reply.body[4..4 + VALUE_BYTES],
            &value(index)[..],
            "{after}"
        );
    }
}

/// Waits until the snapshots are down to the retained count and the first log segment (the
/// one holding zxid 1) is gone. Meanwhile `writer` keeps rewriting `/n0` with its value: the
/// segment goes once the oldest snapshot kept is past it, and snapshots only follow txns (one
/// that falls due while the previous one is written is skipped, so how many the load itself
/// left depends on timing).
fn wait_for_retention(data: &Path, writer: &mut RawClient) {
    const OP_SET_DATA: i32 = 5;
    let rewrite = [
        buffer(b"/n0"),
        buffer(&value(0)),
        (-1i32).to_be_bytes().to_vec(),
    ]
    .concat();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let snapshots = files(&data.join("snap"), ".rkyv");
        let segments = files(&data.join("wal"), ".log");
        let first_gone = segments
            .first()
            .is_some_and(|first| !first.ends_with("0000000000000001.log"));
        if snapshots.len() == RETAINED && first_gone {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "retention not reached: snapshots {snapshots:?}, segments {segments:?}"
        );
        for _ in 0..20 {
            let reply = writer.request(OP_SET_DATA, &rewrite).expect("setData");
            assert_eq!(reply.err, 0, "setData /n0");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn damage(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read snapshot");
    // Idempotent, so damaging a file twice leaves it damaged.
    let middle = bytes.len() / 2;
    bytes[middle..middle + 8].copy_from_slice(b"DAMAGED!");
    std::fs::write(path, bytes).expect("write snapshot");
}

#[test]
fn snapshots_bound_the_log_and_restarts_come_back_from_them() {
    let zinc = start(tempfile::tempdir().expect("temp dir"));
    let address = zinc.address();
    let mut owner = RawClient::connect(address).expect("owner");
    let reply = owner
        .request(OP_CREATE, &create_body("/eph", b"mine", EPHEMERAL))
        .expect("create /eph");
    assert_eq!(reply.err, 0);
    let mut writer = RawClient::connect(address).expect("writer");
    for index in 0..NODES {
        let reply = writer
            .request(
                OP_CREATE,
                &create_body(&format!("/n{index}"), &value(index), 0),
            )
            .expect("create");
        assert_eq!(reply.err, 0, "create /n{index}");
        if index % 100 == 0 {
            // The owner's session must outlive a slow (loaded, debug-built) load phase.
            assert_eq!(owner.exists("/eph", false).expect("ping"), 0);
        }
    }
    let nodes = count_nodes(&mut writer);
    let data = zinc.dir.path().to_path_buf();
    // autopurge.snapRetainCount=1 is raised to 3, as ZooKeeper raises it.
    wait_for_retention(&data, &mut writer);
    assert_eq!(owner.exists("/eph", false).expect("ping"), 0);

    let dir = zinc.kill();
    let zinc = start(dir);
    assert_all_present(zinc.address(), nodes, "restart");
    let session = &owner.session;
    let mut resumed = RawClient::resume(zinc.address(), session.session_id, &session.password, 0)
        .expect("resume");
    assert!(
        resumed.session.timeout_ms > 0,
        "session lost: {:?}",
        resumed.session
    );
    assert_eq!(
        resumed.exists("/eph", false).expect("exists"),
        0,
        "ephemeral lost"
    );
    drop(resumed);

    let dir = zinc.kill();
    let snapshots = files(&dir.path().join("snap"), ".rkyv");
    damage(snapshots.last().expect("a snapshot"));
    let zinc = start(dir);
    assert_all_present(
        zinc.address(),
        nodes,
        "restart with the newest snapshot damaged",
    );

    let dir = zinc.kill();
    for snapshot in files(&dir.path().join("snap"), ".rkyv") {
        damage(&snapshot);
    }
    let child = common::spawn_zinc_piped(dir.path(), common::free_port());
    let output = common::run_checked_child(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started without a valid snapshot");
    assert!(
        stderr.contains("snapshots in")
            && stderr.contains(&format!("{}", dir.path().join("snap").display())),
        "{stderr}"
    );
}

#[test]
fn a_killed_server_restarts_on_the_same_port_at_once() {
    let zinc = Zinc::start();
    let address = zinc.address();
    let mut clients: Vec<RawClient> = (0..5)
        .map(|_| RawClient::connect(address).expect("client"))
        .collect();
    for client in &mut clients {
        assert_eq!(client.exists("/zookeeper", false).expect("exists"), 0);
    }
    let dir = zinc.kill();
    // The clients close after the server died: its side of each connection is in TIME_WAIT.
    drop(clients);
    let zinc = Zinc::start_at(dir, address.port(), &[]);
    let mut client = RawClient::connect(zinc.address()).expect("after restart");
    assert_eq!(client.exists("/zookeeper", false).expect("exists"), 0);
}

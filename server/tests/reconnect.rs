//! Session resumption against Zinc and Apache ZooKeeper in the same run, with a hand-encoded
//! client so every byte is visible: a client with watches loses its connection while another
//! changes the watched nodes; it resumes its session and re-sends its watches (setWatches, then
//! setWatches2 with a persistent-recursive watch) and must get the events for what changed.
//! Resuming with a wrong password, and resuming an expired session, must get ZooKeeper's answer.

mod common;

use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::raw::{buffer, create_body, path_and_flag, ConnectReply, RawClient, ANSWER_TIMEOUT};
use common::{Server, Zinc, ZooKeeper};

const OP_CREATE: i32 = 1;
const OP_DELETE: i32 = 2;
const OP_GET_DATA: i32 = 4;
const OP_SET_DATA: i32 = 5;
const OP_GET_CHILDREN: i32 = 8;
const OP_SET_WATCHES: i32 = 101;
const OP_SET_WATCHES2: i32 = 105;

fn path_and_version(path: &str, data: Option<&[u8]>) -> Vec<u8> {
    let mut body = buffer(path.as_bytes());
    if let Some(data) = data {
        body.extend_from_slice(&buffer(data));
    }
    body.extend_from_slice(&(-1i32).to_be_bytes());
    body
}

fn strings(paths: &[&str]) -> Vec<u8> {
    let mut out = (paths.len() as i32).to_be_bytes().to_vec();
    for path in paths {
        out.extend_from_slice(&buffer(path.as_bytes()));
    }
    out
}

/// A setWatches body; `persistent` adds setWatches2's two lists.
fn set_watches_body(
    relative_zxid: i64,
    lists: [&[&str]; 3],
    persistent: Option<[&[&str]; 2]>,
) -> Vec<u8> {
    let mut body = relative_zxid.to_be_bytes().to_vec();
    for list in lists {
        body.extend_from_slice(&strings(list));
    }
    for list in persistent.into_iter().flatten() {
        body.extend_from_slice(&strings(list));
    }
    body
}

/// `type state path` of a notification body.
fn describe_event(body: &[u8]) -> String {
    let kind = i32::from_be_bytes(body[0..4].try_into().expect("type"));
    let state = i32::from_be_bytes(body[4..8].try_into().expect("state"));
    let length = i32::from_be_bytes(body[8..12].try_into().expect("length")) as usize;
    let path = String::from_utf8_lossy(&body[12..12 + length]);
    let kind = match kind {
        1 => "NodeCreated",
        2 => "NodeDeleted",
        3 => "NodeDataChanged",
        4 => "NodeChildrenChanged",
        other => return format!("event type {other} state {state} {path}"),
    };
    format!("event {kind} state={state} {path}")
}

/// Records a request's outcome and the events that came before its reply.
struct Transcript {
    lines: Vec<String>,
}

impl Transcript {
    fn request(&mut self, client: &mut RawClient, what: &str, op: i32, body: &[u8]) -> i64 {
        let reply = client.request(op, body).expect(what);
        for event in client.events.drain(..) {
            self.lines.push(describe_event(&event));
        }
        self.lines.push(format!("{what} -> {}", reply.err));
        reply.zxid
    }
}

fn watches_scenario(server: &dyn Server) -> Vec<String> {
    let address = server.address();
    let mut other =
        RawClient::connect(address).unwrap_or_else(|e| panic!("{}: connect: {e}", server.name()));
    let mut log = Transcript { lines: Vec::new() };
    for path in ["/w", "/w/data", "/w/gone", "/w/same", "/p"] {
        log.request(
            &mut other,
            &format!("create {path}"),
            OP_CREATE,
            &create_body(path, b"v1", 0),
        );
    }

    let mut watcher = RawClient::connect(address).expect("watcher");
    let session = watcher.session.clone();
    log.request(
        &mut watcher,
        "exists /w/data",
        3,
        &path_and_flag("/w/data", true),
    );
    log.request(
        &mut watcher,
        "getData /w/gone",
        OP_GET_DATA,
        &path_and_flag("/w/gone", true),
    );
    log.request(
        &mut watcher,
        "getData /w/same",
        OP_GET_DATA,
        &path_and_flag("/w/same", true),
    );
    log.request(
        &mut watcher,
        "exists /w/new",
        3,
        &path_and_flag("/w/new", true),
    );
    let seen_zxid = log.request(
        &mut watcher,
        "getChildren /w",
        OP_GET_CHILDREN,
        &path_and_flag("/w", true),
    );
    // The connection drops; the session lives on.
    let _ = watcher.stream.shutdown(Shutdown::Both);
    drop(watcher);

    log.request(
        &mut other,
        "setData /w/data",
        OP_SET_DATA,
        &path_and_version("/w/data", Some(b"v2")),
    );
    log.request(
        &mut other,
        "delete /w/gone",
        OP_DELETE,
        &path_and_version("/w/gone", None),
    );
    log.request(
        &mut other,
        "create /w/new",
        OP_CREATE,
        &create_body("/w/new", b"", 0),
    );

    let mut resumed = RawClient::resume(address, session.session_id, &session.password, seen_zxid)
        .expect("resume");
    assert_eq!(
        resumed.session.session_id,
        session.session_id,
        "{}",
        server.name()
    );
    assert!(
        resumed.session.timeout_ms > 0,
        "{}: resume refused",
        server.name()
    );
    let lists: [&[&str]; 3] = [
        &["/w/data", "/w/gone", "/w/same"],
        &["/w/new", "/w/never"],
        &["/w"],
    ];
    log.request(
        &mut resumed,
        "setWatches",
        OP_SET_WATCHES,
        &set_watches_body(seen_zxid, lists, None),
    );
    // Re-set watches that did not fire stay set.
    log.request(
        &mut other,
        "setData /w/same",
        OP_SET_DATA,
        &path_and_version("/w/same", Some(b"v2")),
    );
    log.request(&mut resumed, "barrier", 3, &path_and_flag("/", false));

    // setWatches2 re-adds a persistent-recursive watch: it fires for later changes below it.
    let none: &[&str] = &[];
    let body = set_watches_body(seen_zxid, [none, none, none], Some([none, &["/p"]]));
    log.request(&mut resumed, "setWatches2", OP_SET_WATCHES2, &body);
    log.request(
        &mut other,
        "create /p/x",
        OP_CREATE,
        &create_body("/p/x", b"", 0),
    );
    log.request(
        &mut other,
        "create /p/x/y",
        OP_CREATE,
        &create_body("/p/x/y", b"", 0),
    );
    log.request(
        &mut other,
        "setData /p",
        OP_SET_DATA,
        &path_and_version("/p", Some(b"v2")),
    );
    log.request(&mut resumed, "barrier", 3, &path_and_flag("/", false));
    log.lines
}

#[test]
fn resumed_sessions_get_the_events_they_missed() {
    let zinc = Zinc::start();
    let zookeeper = ZooKeeper::start();
    let zinc_lines = watches_scenario(&zinc);
    let zookeeper_lines = watches_scenario(&zookeeper);
    let expected = [
        "event NodeDataChanged state=3 /w/data",
        "event NodeDeleted state=3 /w/gone",
        "event NodeCreated state=3 /w/new",
        "event NodeChildrenChanged state=3 /w",
        "event NodeDataChanged state=3 /w/same",
        "event NodeCreated state=3 /p/x/y",
        "event NodeDataChanged state=3 /p",
    ];
    common::assert_same_transcripts(&zinc_lines, &zookeeper_lines, &expected);
}

/// The answer to resuming `session` with `password`, as (timeout, session id, password, body
/// length), after checking the server then closes the connection.
fn resume_answer(server: &dyn Server, session_id: i64, password: &[u8]) -> ConnectReply {
    let mut client = RawClient::resume(server.address(), session_id, password, 0).expect("resume");
    assert!(
        common::raw::closed_by_server(&mut client.stream),
        "{}: connection left open after a refused resume",
        server.name()
    );
    client.session
}

/// Waits until `path` (an ephemeral of the session being expired) is gone.
fn wait_until_gone(client: &mut RawClient, path: &str) {
    let deadline = Instant::now() + ANSWER_TIMEOUT * 3;
    while client.exists(path, false).expect("exists") == 0 {
        assert!(Instant::now() < deadline, "{path} never went away");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn refused_resumes(server: &dyn Server) -> (ConnectReply, ConnectReply) {
    let address = server.address();
    let live = RawClient::connect(address).expect("live");
    let mut wrong = live.session.password.clone();
    wrong[0] ^= 0xff;
    let wrong_password = resume_answer(server, live.session.session_id, &wrong);

    // A session with the shortest timeout, left to expire after its connection drops.
    let mut doomed = RawClient::open(address, 0, &[0; 16], 0, 1000).expect("doomed");
    let flags_ephemeral = 1;
    let reply = doomed
        .request(OP_CREATE, &create_body("/doomed", b"", flags_ephemeral))
        .expect("create");
    assert_eq!(reply.err, 0);
    let session = doomed.session.clone();
    let _ = doomed.stream.shutdown(Shutdown::Both);
    drop(doomed);
    let mut observer = RawClient::connect(address).expect("observer");
    wait_until_gone(&mut observer, "/doomed");
    let expired = resume_answer(server, session.session_id, &session.password);
    (wrong_password, expired)
}

#[test]
fn wrong_passwords_and_expired_sessions_get_zookeepers_answer() {
    let zinc = Zinc::start();
    let zookeeper = ZooKeeper::start();
    let (zinc_wrong, zinc_expired) = refused_resumes(&zinc);
    let (zookeeper_wrong, zookeeper_expired) = refused_resumes(&zookeeper);
    assert_eq!(zinc_wrong, zookeeper_wrong, "wrong password");
    assert_eq!(zinc_expired, zookeeper_expired, "expired session");
    assert_eq!(zinc_wrong.timeout_ms, 0);
    assert_eq!(zinc_expired.timeout_ms, 0);
}

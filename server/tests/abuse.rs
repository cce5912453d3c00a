//! Hostile and broken clients against Zinc: each misbehaving connection is closed or throttled
//! on its own, and a plain client still gets served afterwards (or meanwhile).
//!
//! Apache ZooKeeper, for reference (checked by hand against the Debian package): garbage whose
//! first four bytes read as a length above `jute.maxbuffer`, a 2 MB frame and a negative length
//! all make it close that connection (it logs "Len error"); a connect request it cannot decode
//! closes the connection too. Zinc does the same; only Zinc is tested here, since ZooKeeper's
//! limits and logging differ in detail.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::raw::{self, buffer, closed_by_server, frame, healthy, RawClient};
use common::{Server, Zinc};

fn open(address: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&address, raw::ANSWER_TIMEOUT).expect("connect")
}

fn assert_healthy(zinc: &Zinc, after: &str) {
    if let Err(error) = healthy(zinc.address()) {
        panic!("after {after}, a plain client fails: {error}");
    }
}

/// Resident memory of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .expect("VmRSS")
}

#[test]
fn broken_frames_close_only_their_connection() {
    let zinc = Zinc::start();
    let address = zinc.address();
    // A bystander session that must survive everything below.
    let mut bystander = RawClient::connect(address).expect("bystander");

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "garbage bytes",
            b"GET / HTTP/1.1\r\nHost: zinc\r\n\r\n\x00\xff\x13\x37".to_vec(),
        ),
        ("a negative length", (-2i32).to_be_bytes().to_vec()),
        ("a frame of 2 MB", {
            let mut bytes = (2i32 << 20).to_be_bytes().to_vec();
            bytes.extend(std::iter::repeat_n(0x5a, 64 << 10));
            bytes
        }),
        ("an undecodable connect request", frame(&[0xee; 7])),
    ];
    for (what, bytes) in cases {
        let mut stream = open(address);
        // The server may close before everything is written; that is fine.
        let _ = stream.write_all(&bytes);
        assert!(
            closed_by_server(&mut stream),
            "{what}: connection left open"
        );
        assert_healthy(&zinc, what);
    }

    // A session whose request body does not decode: getData claiming a 100-byte path.
    let mut broken = RawClient::connect(address).expect("connect");
    let mut request = 7i32.to_be_bytes().to_vec();
    request.extend_from_slice(&raw::OP_GET_DATA.to_be_bytes());
    request.extend_from_slice(&100i32.to_be_bytes());
    request.extend_from_slice(b"/zo");
    broken.stream.write_all(&frame(&request)).expect("send");
    assert!(
        closed_by_server(&mut broken.stream),
        "malformed getData: connection left open"
    );
    assert_healthy(&zinc, "a malformed getData body");

    // An unknown opcode is answered with an error, and the session goes on.
    let reply = bystander.request(999, &[]).expect("unknown opcode");
    assert_eq!(reply.err, -6, "unknown opcode: UNIMPLEMENTED expected");
    assert_eq!(bystander.exists("/zookeeper", false).expect("exists"), 0);
    bystander.close().expect("close");
}

#[test]
fn a_thousand_idle_connections_cost_little_and_do_not_block_others() {
    let zinc = Zinc::start_with(&["--max-client-cnxns", "0"]);
    let address = zinc.address();
    let before_kib = rss_kib(zinc.pid());
    // Half hold sessions, half never say anything.
    let mut sessions = Vec::new();
    let mut silent = Vec::new();
    for index in 0..1000 {
        if index % 2 == 0 {
            sessions.push(RawClient::connect(address).expect("session"));
        } else {
            silent.push(open(address));
        }
    }
    let srvr = common::four_letter_word(address, "srvr");
    let connections: u64 = srvr
        .lines()
        .find_map(|line| line.strip_prefix("Connections: "))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("srvr without a connection count:\n{srvr}"));
    assert!(connections >= 1000, "srvr counts {connections} connections");
    assert_healthy(&zinc, "1,000 idle connections");
    let grown_kib = rss_kib(zinc.pid()).saturating_sub(before_kib);
    // Generous: 64 KiB per idle connection at most.
    assert!(
        grown_kib < 64 * 1000,
        "1,000 idle connections grew the server by {grown_kib} KiB"
    );
    for client in sessions.iter_mut().take(10) {
        assert_eq!(client.exists("/zookeeper", false).expect("exists"), 0);
    }
}

#[test]
fn too_many_connections_from_one_address_are_refused() {
    let zinc = Zinc::start_with(&["--max-client-cnxns", "5"]);
    let address = zinc.address();
    let mut allowed: Vec<RawClient> = (0..5)
        .map(|_| RawClient::connect(address).expect("within the limit"))
        .collect();
    let mut refused = open(address);
    let _ = refused.write_all(&frame(&raw::connect_body(0, &[0; 16], 10_000, 0)));
    assert!(
        closed_by_server(&mut refused),
        "the sixth connection was accepted"
    );
    for client in &mut allowed {
        assert_eq!(client.exists("/zookeeper", false).expect("exists"), 0);
    }
    // Room frees up when one leaves.
    allowed.pop().expect("one").close().expect("close");
    let deadline = Instant::now() + raw::ANSWER_TIMEOUT;
    while let Err(error) = healthy(address) {
        assert!(
            Instant::now() < deadline,
            "no room after a client left: {error}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bytes the flooding client tries to push without reading a single reply.
const FLOOD_BYTES: usize = 50 << 20;
/// Data of the node the flood reads: every 25-byte request asks for 64 KiB.
const BIG_NODE_BYTES: usize = 64 << 10;
/// Growth allowed while flooded: the 4 MiB outbound limit, read buffers, one reply in the
/// making, allocator slack (mimalloc keeps freed 64 KiB blocks for reuse: about 30 MiB here,
/// the same for a 50 MiB and a 400 MiB flood). (Checking room only between socket reads
/// instead of per request let one 64 KiB read queue about 160 MiB of replies; this bound
/// catches that.)
const FLOOD_GROWTH_KIB_MAX: u64 = 48 << 10;

#[test]
fn a_client_that_never_reads_is_throttled_with_bounded_memory() {
    let zinc = Zinc::start();
    let address = zinc.address();
    let mut setup = RawClient::connect(address).expect("setup");
    let mut create = buffer(b"/big");
    create.extend_from_slice(&buffer(&vec![7u8; BIG_NODE_BYTES]));
    // ACL: world:anyone, all permissions.
    create.extend_from_slice(&1i32.to_be_bytes());
    create.extend_from_slice(&31i32.to_be_bytes());
    create.extend_from_slice(&buffer(b"world"));
    create.extend_from_slice(&buffer(b"anyone"));
    create.extend_from_slice(&0i32.to_be_bytes());
    assert_eq!(setup.request(1, &create).expect("create").err, 0);
    let before_kib = rss_kib(zinc.pid());

    let mut bystander = RawClient::connect(address).expect("bystander");
    let mut flooder = RawClient::connect(address).expect("flooder");
    let mut get = 0i32.to_be_bytes().to_vec();
    get.extend_from_slice(&raw::OP_GET_DATA.to_be_bytes());
    get.extend_from_slice(&buffer(b"/big"));
    get.push(0);
    let request = frame(&get);
    let batch: Vec<u8> = request.repeat((1 << 20) / request.len());
    flooder
        .stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let blocked = AtomicBool::new(false);
    let pushed_bytes = std::thread::scope(|scope| {
        let pushing = scope.spawn(|| {
            let mut pushed = 0usize;
            while pushed < FLOOD_BYTES {
                if flooder.stream.write_all(&batch).is_err() {
                    blocked.store(true, Ordering::SeqCst);
                    break;
                }
                pushed += batch.len();
            }
            pushed
        });
        // Meanwhile the server keeps serving others, and its memory stays bounded.
        let mut peak_kib = 0;
        while !pushing.is_finished() {
            let answer = bystander.exists("/big", false);
            assert_eq!(answer.expect("bystander served during the flood"), 0);
            peak_kib = peak_kib.max(rss_kib(zinc.pid()));
        }
        let grown_kib = peak_kib.saturating_sub(before_kib);
        assert!(
            grown_kib < FLOOD_GROWTH_KIB_MAX,
            "the unread flood grew the server by {grown_kib} KiB"
        );
        pushing.join().expect("pusher")
    });
    assert!(
        blocked.load(Ordering::SeqCst),
        "the server read all {pushed_bytes} bytes without throttling (replies would be {} MiB)",
        (pushed_bytes / request.len() * BIG_NODE_BYTES) >> 20
    );
    let grown_kib = rss_kib(zinc.pid()).saturating_sub(before_kib);
    assert!(grown_kib < FLOOD_GROWTH_KIB_MAX, "grown by {grown_kib} KiB");
    drop(flooder);
    assert_healthy(&zinc, "the flooding client left");
    bystander.close().expect("close");
    setup.close().expect("close");
}

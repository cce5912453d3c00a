//! One server, several shard cores: clients on different shards see one server. A read sees
//! every write that any client was answered for before the read was sent, and a client that saw
//! a zxid through one shard may connect through any other.
//!
//! Connections are spread over the shards by the kernel (each shard listens on the port); with
//! nine readers on three shards, some are on other shards than the writer's in every run.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use common::raw::{self, buffer, create_body, RawClient};
use common::{Server, Zinc};

const OP_CREATE: i32 = 1;
const OP_GET_DATA: i32 = 4;
const OP_SET_DATA: i32 = 5;
const SHARDS: &str = "3";
const READERS: usize = 9;
const ROUNDS: u64 = 300;

fn set_data(client: &mut RawClient, path: &str, value: u64) -> i64 {
    let mut body = buffer(path.as_bytes());
    body.extend_from_slice(&buffer(value.to_string().as_bytes()));
    body.extend_from_slice(&(-1i32).to_be_bytes());
    let reply = client.request(OP_SET_DATA, &body).expect("setData");
    assert_eq!(reply.err, 0, "setData {path}");
    reply.zxid
}

fn get_data(client: &mut RawClient, path: &str) -> u64 {
    let reply = client
        .request(OP_GET_DATA, &raw::path_and_flag(path, false))
        .expect("getData");
    assert_eq!(reply.err, 0, "getData {path}");
    let length = i32::from_be_bytes(reply.body[..4].try_into().expect("length")) as usize;
    std::str::from_utf8(&reply.body[4..4 + length])
        .expect("utf-8 value")
        .parse()
        .expect("a number")
}

fn create(client: &mut RawClient, path: &str, value: &[u8]) {
    let reply = client
        .request(OP_CREATE, &create_body(path, value, 0))
        .expect("create");
    assert_eq!(reply.err, 0, "create {path}");
}

fn start() -> (Zinc, SocketAddr) {
    let zinc = Zinc::start_with(&["--shards", SHARDS]);
    let address = zinc.address();
    (zinc, address)
}

#[test]
fn reads_on_every_shard_see_acknowledged_writes() {
    let (_zinc, address) = start();
    let mut writer = RawClient::connect(address).expect("writer");
    create(&mut writer, "/counter", b"0");
    let mut readers: Vec<RawClient> = (0..READERS)
        .map(|_| RawClient::connect(address).expect("reader"))
        .collect();
    let mut stale = Vec::new();
    for value in 1..=ROUNDS {
        set_data(&mut writer, "/counter", value);
        for (index, reader) in readers.iter_mut().enumerate() {
            let seen = get_data(reader, "/counter");
            if seen < value {
                stale.push(format!("round {value}: reader {index} saw {seen}"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{} stale reads of {}: {:?}",
        stale.len(),
        ROUNDS * READERS as u64,
        &stale[..stale.len().min(10)]
    );
}

#[test]
fn a_client_that_saw_a_zxid_connects_through_any_shard() {
    let (_zinc, address) = start();
    let mut writer = RawClient::connect(address).expect("writer");
    create(&mut writer, "/seen", b"0");
    for value in 1..=ROUNDS {
        // The connection is open (and taken by some shard) before the write, so its connect
        // request arrives as soon as the writer has its answer.
        let mut stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(raw::ANSWER_TIMEOUT))
            .expect("timeout");
        let zxid = set_data(&mut writer, "/seen", value);
        // A new session from a client that has seen `zxid` (as after a server switch).
        let request = raw::connect_body(0, &[0u8; 16], 10_000, zxid);
        stream
            .write_all(&raw::frame(&request))
            .expect("send connect");
        let reply = raw::read_frame(&mut stream)
            .unwrap_or_else(|e| panic!("round {value}: connect having seen 0x{zxid:x}: {e}"));
        let session = raw::ConnectReply::parse(&reply);
        assert!(
            session.timeout_ms > 0,
            "round {value}: refused: {session:?}"
        );
    }
}

#[test]
fn four_letter_words_list_every_shard() {
    let (_zinc, address) = start();
    let mut clients: Vec<RawClient> = (0..READERS)
        .map(|_| RawClient::connect(address).expect("client"))
        .collect();
    for (index, client) in clients.iter_mut().enumerate() {
        // A data watch on a missing node: one registration per session, on its own shard.
        assert_eq!(
            client.exists(&format!("/w{index}"), true).expect("exists"),
            -101
        );
    }
    let sessions: Vec<String> = clients
        .iter()
        .map(|client| format!("0x{:x}", client.session.session_id))
        .collect();
    let cons = common::four_letter_word(address, "cons");
    let wchc = common::four_letter_word(address, "wchc");
    let wchp = common::four_letter_word(address, "wchp");
    for session in &sessions {
        assert!(
            cons.contains(&format!("sid={session},")),
            "{session}:\n{cons}"
        );
        assert!(wchc.contains(&format!("{session}\n")), "{session}:\n{wchc}");
        assert!(
            wchp.contains(&format!("\t{session}\n")),
            "{session}:\n{wchp}"
        );
    }
    let wchs = common::four_letter_word(address, "wchs");
    let expected =
        format!("{READERS} connections watching {READERS} paths\nTotal watches:{READERS}");
    assert!(wchs.starts_with(&expected), "{wchs}");
    let mntr = common::four_letter_word(address, "mntr");
    assert!(
        mntr.contains(&format!("zk_watch_count\t{READERS}\n")),
        "{mntr}"
    );
    let stat = common::four_letter_word(address, "stat");
    let listed = stat
        .lines()
        .filter(|line| line.starts_with(" /127.0.0.1"))
        .count();
    // Every session plus the asking connection itself.
    assert_eq!(listed, READERS + 1, "{stat}");
    assert_eq!(
        common::four_letter_word(address, "crst"),
        "Connection stats reset.\n"
    );
    let cons = common::four_letter_word(address, "cons");
    let reset = cons
        .lines()
        .filter(|line| line.contains("sid=") && line.contains("recved=0,"))
        .count();
    assert_eq!(reset, READERS, "every session's counters reset:\n{cons}");
}

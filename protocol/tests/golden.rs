//! Golden vectors: frames captured between real ZooKeeper clients (kazoo, zkCli, the Java
//! client, the C client) and Apache ZooKeeper 3.8 by `scripts/golden/capture.py`, stored in
//! `tests/golden/*.txt`. Every frame must decode to a record with no byte left over and encode
//! back to the identical bytes; each scenario's test then checks what the frames say (ops,
//! paths, error codes, events), so a decoder that misreads a field fails here.
//!
//! Captures differ run to run (session ids, times, nonces), so assertions name only what the
//! scenario itself fixes: paths, data, flags, error codes, event types.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use zinc_protocol::records::{
    ClientFrame, ConnectRequest, ConnectResponse, EventType, KeeperState, MultiOp, OpResult,
    ReplyHeader, Request, RequestHeader, Response, ServerFrame, WatcherEvent,
};
use zinc_protocol::{DecodeResult, ErrorCode, OpCode, Reader, Record};

/// The xid of a watch notification: the only server frame that answers no request.
const XID_NOTIFICATION: i32 = -1;

// ---------------------------------------------------------------------------------------------
// Fixture files

/// One captured frame, without its length prefix.
struct RawFrame {
    line: usize,
    conn: u32,
    from_client: bool,
    bytes: Bytes,
}

struct Fixture {
    name: String,
    client: String,
    frames: Vec<RawFrame>,
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn parse_hex(text: &str) -> Result<Bytes, String> {
    if !text.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect::<Result<Vec<u8>, String>>()
        .map(Bytes::from)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_fixture(name: &str, text: &str) -> Fixture {
    let mut fixture = Fixture {
        name: name.to_string(),
        client: String::new(),
        frames: Vec::new(),
    };
    let mut conn = 1;
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let where_ = format!("{name}.txt:{line_number}");
        if let Some(client) = line.strip_prefix("# client: ") {
            fixture.client = client.to_string();
        } else if line.starts_with('#') || line.trim().is_empty() {
            continue;
        } else if let Some(number) = line.strip_prefix("@ ") {
            conn = number
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{where_}: {e}"));
        } else if let Some((direction, payload)) = line.split_once(' ') {
            let from_client = match direction {
                ">" => true,
                "<" => false,
                other => panic!("{where_}: unknown direction {other:?}"),
            };
            let bytes = parse_hex(payload.trim()).unwrap_or_else(|e| panic!("{where_}: {e}"));
            fixture.frames.push(RawFrame {
                line: line_number,
                conn,
                from_client,
                bytes,
            });
        } else {
            panic!("{where_}: unparsable line {line:?}");
        }
    }
    assert!(
        !fixture.client.is_empty(),
        "{name}.txt has no '# client:' line"
    );
    fixture
}

fn load(name: &str) -> Fixture {
    let path = golden_dir().join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_fixture(name, &text)
}

fn all_fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .map(|path| {
            let stem = path.file_stem().expect("file name");
            stem.to_string_lossy().into_owned()
        })
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// Decoding and re-encoding

/// One decoded frame of a transcript.
#[derive(Debug)]
enum Exchange {
    Connect(ConnectRequest),
    Connected(ConnectResponse),
    Request(ClientFrame),
    /// A reply, with the op of the request it answers (`Notification` for a watch event).
    Reply(OpCode, ServerFrame),
}

struct Transcript {
    name: String,
    client: String,
    /// (connection, exchange) in capture order.
    exchanges: Vec<(u32, Exchange)>,
}

/// Per-connection decoding state: the connect handshake, then xid -> op of each request.
#[derive(Default)]
struct Connection {
    connect_sent: bool,
    connect_answered: bool,
    ops: HashMap<i32, OpCode>,
}

/// Decodes `bytes` with `decode`, requires every byte consumed, re-encodes with `encode` and
/// requires the identical bytes.
fn round_trip<T>(
    bytes: &Bytes,
    decode: impl FnOnce(&mut Reader) -> DecodeResult<T>,
    encode: impl FnOnce(&T, &mut BytesMut),
) -> Result<T, String> {
    let mut reader = Reader::new(bytes.clone());
    let value = decode(&mut reader).map_err(|e| format!("decode failed: {e}"))?;
    reader
        .finish()
        .map_err(|e| format!("not all bytes consumed: {e}"))?;
    let mut out = BytesMut::new();
    encode(&value, &mut out);
    if out[..] != bytes[..] {
        return Err(format!(
            "re-encoded bytes differ\n  captured: {}\n  encoded:  {}",
            hex(bytes),
            hex(&out)
        ));
    }
    Ok(value)
}

fn decode_request(bytes: &Bytes) -> Result<ClientFrame, String> {
    let frame = round_trip(
        bytes,
        |reader| {
            let header = RequestHeader::decode(reader)?;
            let op = OpCode::try_from(header.op_type)?;
            let request = Request::decode(op, reader)?;
            Ok(ClientFrame {
                xid: header.xid,
                request,
            })
        },
        |frame, out| frame.encode(out),
    )?;
    let whole = ClientFrame::decode(bytes.clone()).map_err(|e| format!("ClientFrame: {e}"))?;
    if whole != frame {
        return Err(format!("ClientFrame::decode disagrees: {whole:?}"));
    }
    Ok(frame)
}

fn decode_reply(
    bytes: &Bytes,
    ops: &HashMap<i32, OpCode>,
) -> Result<(OpCode, ServerFrame), String> {
    let mut op_found = None;
    let frame = round_trip(
        bytes,
        |reader| {
            let header = ReplyHeader::decode(reader)?;
            let op = match header.xid {
                XID_NOTIFICATION => OpCode::Notification,
                xid => *ops.get(&xid).ok_or(zinc_protocol::DecodeError::Invalid(
                    "reply to an xid no request used",
                ))?,
            };
            op_found = Some(op);
            // ZooKeeper sends a bare header with every error reply; a body after one is a
            // capture this test does not understand.
            let response = if header.err != 0 && reader.remaining() == 0 {
                Response::Empty
            } else {
                Response::decode(op, reader)?
            };
            Ok(ServerFrame { header, response })
        },
        |frame, out| frame.encode(out),
    )?;
    let whole = ServerFrame::decode(bytes.clone(), |xid| ops.get(&xid).copied())
        .map_err(|e| format!("ServerFrame: {e}"))?;
    if whole != frame {
        return Err(format!("ServerFrame::decode disagrees: {whole:?}"));
    }
    Ok((op_found.expect("set by decode"), frame))
}

fn decode_frame(state: &mut Connection, frame: &RawFrame) -> Result<Exchange, String> {
    let bytes = &frame.bytes;
    if frame.from_client && !state.connect_sent {
        state.connect_sent = true;
        return round_trip(bytes, ConnectRequest::decode, |r, out| r.encode(out))
            .map(Exchange::Connect);
    }
    if !frame.from_client && !state.connect_answered {
        state.connect_answered = true;
        return round_trip(bytes, ConnectResponse::decode, |r, out| r.encode(out))
            .map(Exchange::Connected);
    }
    if frame.from_client {
        let request = decode_request(bytes)?;
        state.ops.insert(request.xid, request.request.op());
        return Ok(Exchange::Request(request));
    }
    let (op, reply) = decode_reply(bytes, &state.ops)?;
    Ok(Exchange::Reply(op, reply))
}

/// Decodes every frame of a fixture; the error names the file, line and bytes.
fn decode_fixture(fixture: &Fixture) -> Result<Transcript, String> {
    let mut connections: HashMap<u32, Connection> = HashMap::new();
    let mut exchanges = Vec::new();
    for frame in &fixture.frames {
        let state = connections.entry(frame.conn).or_default();
        let exchange = decode_frame(state, frame).map_err(|e| {
            let direction = if frame.from_client { ">" } else { "<" };
            format!(
                "{}.txt:{} ({direction} on connection {}): {e}\n  frame: {}",
                fixture.name,
                frame.line,
                frame.conn,
                hex(&frame.bytes)
            )
        })?;
        exchanges.push((frame.conn, exchange));
    }
    Ok(Transcript {
        name: fixture.name.clone(),
        client: fixture.client.clone(),
        exchanges,
    })
}

fn transcript(name: &str) -> Transcript {
    decode_fixture(&load(name)).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------------
// Questions about a transcript

impl Transcript {
    fn requests(&self) -> impl Iterator<Item = &ClientFrame> {
        self.exchanges.iter().filter_map(|(_, e)| match e {
            Exchange::Request(frame) => Some(frame),
            _ => None,
        })
    }

    fn replies(&self) -> impl Iterator<Item = (OpCode, &ServerFrame)> {
        self.exchanges.iter().filter_map(|(_, e)| match e {
            Exchange::Reply(op, frame) => Some((*op, frame)),
            _ => None,
        })
    }

    fn connects(&self) -> Vec<&ConnectRequest> {
        let iter = self.exchanges.iter();
        iter.filter_map(|(_, e)| match e {
            Exchange::Connect(request) => Some(request),
            _ => None,
        })
        .collect()
    }

    fn connect_responses(&self) -> Vec<&ConnectResponse> {
        let iter = self.exchanges.iter();
        iter.filter_map(|(_, e)| match e {
            Exchange::Connected(response) => Some(response),
            _ => None,
        })
        .collect()
    }

    fn ops(&self) -> BTreeSet<OpCode> {
        self.requests().map(|frame| frame.request.op()).collect()
    }

    /// (op, error) of every reply with a non-zero error code.
    fn errors(&self) -> BTreeSet<(OpCode, ErrorCode)> {
        let failed = self.replies().filter(|(_, frame)| frame.header.err != 0);
        failed
            .map(|(op, frame)| {
                let code = ErrorCode::from_i32(frame.header.err)
                    .unwrap_or_else(|| panic!("{}: unknown error {}", self.name, frame.header.err));
                (op, code)
            })
            .collect()
    }

    fn events(&self) -> Vec<&WatcherEvent> {
        let replies = self.replies();
        replies
            .filter_map(|(_, frame)| match &frame.response {
                Response::Notification(event) => Some(event),
                _ => None,
            })
            .collect()
    }

    /// The successful responses to requests of `op`, in order.
    fn responses(&self, op: OpCode) -> Vec<&Response> {
        let replies = self.replies();
        replies
            .filter(|(reply_op, frame)| *reply_op == op && frame.header.err == 0)
            .map(|(_, frame)| &frame.response)
            .collect()
    }

    fn assert_ops(&self, expected: &[OpCode]) {
        let ops = self.ops();
        for op in expected {
            assert!(
                ops.contains(op),
                "{}: no {op:?} request in {ops:?}",
                self.name
            );
        }
    }

    fn assert_errors(&self, expected: &[(OpCode, ErrorCode)]) {
        let errors = self.errors();
        for pair in expected {
            assert!(
                errors.contains(pair),
                "{}: no {pair:?} in {errors:?}",
                self.name
            );
        }
    }

    /// Some successful `op` reply names a sequential node: `prefix` and a counter.
    fn assert_sequential_created(&self, op: OpCode, prefix: &str) {
        let responses = self.responses(op).into_iter();
        let created: Vec<&str> = responses.filter_map(created_path).collect();
        let found = created.iter().any(|path| is_sequential(path, prefix));
        assert!(found, "{}: no {prefix}N in {created:?}", self.name);
    }

    fn assert_events(&self, expected: &[(EventType, &str)]) {
        let events = self.events();
        for &(event_type, path) in expected {
            let found = events
                .iter()
                .any(|e| e.event_type == event_type && e.path == path);
            assert!(
                found,
                "{}: no {event_type:?} {path} in {events:?}",
                self.name
            );
        }
    }
}

fn created_path(response: &Response) -> Option<&str> {
    match response {
        Response::Create(body) => Some(&body.path),
        Response::Create2(body) => Some(&body.path),
        _ => None,
    }
}

/// A sequential node's name: the requested prefix and a 10-digit counter.
fn is_sequential(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|suffix| suffix.len() == 10 && suffix.bytes().all(|b| b.is_ascii_digit()))
}

fn multi_results(response: &Response) -> &[OpResult] {
    match response {
        Response::Multi(body) => &body.results,
        other => panic!("not a multi response: {other:?}"),
    }
}

fn multi_ops(frame: &ClientFrame) -> Option<&[MultiOp]> {
    match &frame.request {
        Request::Multi(body) | Request::MultiRead(body) => Some(&body.ops),
        _ => None,
    }
}

/// The `user` of each whoAmI reply's client infos for `scheme`, in reply order.
fn whoami_users(t: &Transcript, scheme: &str) -> Vec<Vec<String>> {
    let responses = t.responses(OpCode::WhoAmI);
    responses
        .into_iter()
        .map(|response| match response {
            Response::WhoAmI(body) => body
                .client_info
                .iter()
                .filter(|info| info.auth_scheme == scheme)
                .map(|info| info.user.clone())
                .collect(),
            other => panic!("{}: whoAmI answered with {other:?}", t.name),
        })
        .collect()
}

/// A session resumed after a dropped connection: same id and password, a non-zero last zxid.
fn assert_session_resumed(t: &Transcript) {
    let (connects, responses) = (t.connects(), t.connect_responses());
    assert_eq!(connects.len(), 2, "{}: expected two connections", t.name);
    assert_eq!(responses.len(), 2, "{}: expected two handshakes", t.name);
    assert_eq!(
        connects[0].session_id, 0,
        "{}: first connect is new",
        t.name
    );
    assert_ne!(responses[0].session_id, 0);
    assert_eq!(connects[1].session_id, responses[0].session_id);
    assert_eq!(connects[1].passwd, responses[0].passwd);
    assert!(connects[1].last_zxid_seen > 0, "{}", t.name);
    assert_eq!(responses[1].session_id, responses[0].session_id);
}

// ---------------------------------------------------------------------------------------------
// Every fixture, every op

#[test]
fn every_fixture_round_trips() {
    let names = all_fixture_names();
    assert!(names.len() >= 16, "fixtures missing: {names:?}");
    let failures: Vec<String> = names
        .iter()
        .filter_map(|name| decode_fixture(&load(name)).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn real_clients_cover_every_request_op() {
    let mut ops = BTreeSet::new();
    for name in all_fixture_names() {
        let t = transcript(&name);
        if t.client == "raw" {
            continue;
        }
        for frame in t.requests() {
            ops.insert(frame.request.op());
            ops.extend(multi_ops(frame).unwrap_or_default().iter().map(MultiOp::op));
        }
    }
    // `check` reaches the server only inside a multi; ZooKeeper 3.8 closes a connection that
    // sends it alone, so no fixture has a standalone one.
    let missing: Vec<&OpCode> = Request::OPS.iter().filter(|op| !ops.contains(op)).collect();
    assert!(missing.is_empty(), "no real client sent {missing:?}");
}

#[test]
fn notifications_and_pings_have_fixed_headers() {
    for name in all_fixture_names() {
        let t = transcript(&name);
        for (op, frame) in t.replies() {
            let header = frame.header;
            match op {
                OpCode::Notification => {
                    assert_eq!((header.zxid, header.err), (-1, 0), "{name}: {header:?}");
                    let Response::Notification(event) = &frame.response else {
                        panic!("{name}: notification body {:?}", frame.response);
                    };
                    assert_eq!(event.state, KeeperState::SyncConnected, "{name}");
                }
                OpCode::Ping => assert_eq!((header.xid, header.err), (-2, 0), "{name}"),
                OpCode::Auth => assert_eq!(header.xid, -4, "{name}"),
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kazoo

#[test]
fn kazoo_crud() {
    use ErrorCode::*;
    use OpCode::*;
    let t = transcript("kazoo_crud");
    t.assert_ops(&[
        Create,
        Create2,
        Exists,
        GetData,
        SetData,
        GetChildren,
        GetChildren2,
        Sync,
        Delete,
        CloseSession,
    ]);
    t.assert_errors(&[
        (Create, NodeExists),
        (Create, NoNode),
        (Exists, NoNode),
        (GetData, NoNode),
        (SetData, BadVersion),
        (Delete, NotEmpty),
        (Delete, BadVersion),
        (Delete, NoNode),
    ]);
    let flags: BTreeSet<i32> = t
        .requests()
        .filter_map(|frame| match &frame.request {
            Request::Create(body) | Request::Create2(body) => Some(body.flags),
            _ => None,
        })
        .collect();
    assert_eq!(
        flags,
        BTreeSet::from([0, 1, 2, 3]),
        "persistent, ephemeral, both sequential"
    );
    t.assert_sequential_created(Create, "/kc/seq-");
    t.assert_sequential_created(Create, "/kc/eseq-");
    match t.responses(Create2)[..] {
        [Response::Create2(body)] => {
            assert_eq!(body.path, "/kc/c2");
            assert_eq!((body.stat.data_length, body.stat.version), (3, 0));
        }
        ref other => panic!("create2 replies: {other:?}"),
    }
    let data = t.responses(GetData);
    assert!(
        matches!(data[..], [Response::GetData(ref body)] if body.data.as_deref() == Some(&b"root"[..])),
        "{data:?}"
    );
    let set = t.responses(SetData);
    assert!(
        matches!(set[..], [Response::SetData(body)] if body.stat.version == 1),
        "{set:?}"
    );
    let children = t.responses(GetChildren2);
    let Some(Response::GetChildren2(body)) = children.first() else {
        panic!("getChildren2 replies: {children:?}");
    };
    assert!(body.children.iter().any(|c| c == "eph"), "{body:?}");
    assert_eq!(body.stat.num_children as usize, body.children.len());
}

#[test]
fn kazoo_acl_auth() {
    use ErrorCode::*;
    use OpCode::*;
    let t = transcript("kazoo_acl_auth");
    t.assert_ops(&[Auth, GetAcl, SetAcl]);
    t.assert_errors(&[
        (GetData, NoAuth),
        (Create, InvalidAcl),
        (SetAcl, BadVersion),
        (SetAcl, NoAuth),
    ]);
    let auth: Vec<_> = t
        .requests()
        .filter_map(|frame| match &frame.request {
            Request::Auth(packet) => Some((frame.xid, packet)),
            _ => None,
        })
        .collect();
    assert!(
        matches!(auth[..], [(-4, packet)] if packet.scheme == "digest" && packet.auth[..] == b"bob:pw"[..]),
        "{auth:?}"
    );
    let acls = t.responses(GetAcl);
    let Some(Response::GetAcl(locked)) = acls.first() else {
        panic!("getACL replies: {acls:?}");
    };
    assert_eq!(locked.acl.len(), 1);
    assert_eq!(locked.acl[0].perms, zinc_protocol::perms::ALL);
    assert_eq!(locked.acl[0].id.scheme, "digest");
    assert!(locked.acl[0].id.id.starts_with("bob:"), "{locked:?}");
}

#[test]
fn kazoo_multi() {
    let t = transcript("kazoo_multi");
    let requests: Vec<Vec<OpCode>> = t
        .requests()
        .filter_map(multi_ops)
        .map(|ops| ops.iter().map(MultiOp::op).collect())
        .collect();
    use OpCode::*;
    assert_eq!(
        requests,
        [
            vec![Create, Create, SetData, Check, Delete],
            vec![Create, Check, Delete]
        ]
    );
    let replies = t.responses(Multi);
    assert_eq!(replies.len(), 2, "{replies:?}");
    match multi_results(replies[0]) {
        [OpResult::Create { path: a }, OpResult::Create { path: seq }, OpResult::SetData { stat }, OpResult::Check, OpResult::Delete] =>
        {
            assert_eq!(a, "/kt/a");
            assert!(is_sequential(seq, "/kt/s-"), "{seq}");
            assert_eq!(stat.version, 1);
        }
        other => panic!("successful multi: {other:?}"),
    }
    // A failed multi: ops before the failing one report Ok, the failing one its error, the
    // rest RuntimeInconsistency.
    let failed = [
        0,
        ErrorCode::BadVersion.as_i32(),
        ErrorCode::RuntimeInconsistency.as_i32(),
    ];
    let expected: Vec<OpResult> = failed.iter().map(|&err| OpResult::Error { err }).collect();
    assert_eq!(multi_results(replies[1]), &expected[..]);
}

#[test]
fn kazoo_watches() {
    let t = transcript("kazoo_watches");
    t.assert_ops(&[OpCode::Ping]);
    t.assert_events(&[
        (EventType::NodeCreated, "/kw/new"),
        (EventType::NodeDataChanged, "/kw"),
        (EventType::NodeChildrenChanged, "/kw"),
        (EventType::NodeDeleted, "/kw/gone"),
    ]);
    let watched: BTreeSet<(OpCode, &str)> = t
        .requests()
        .filter_map(|frame| match &frame.request {
            Request::Exists(body) if body.watch => Some((OpCode::Exists, body.path.as_str())),
            Request::GetData(body) if body.watch => Some((OpCode::GetData, body.path.as_str())),
            Request::GetChildren(body) if body.watch => {
                Some((OpCode::GetChildren, body.path.as_str()))
            }
            _ => None,
        })
        .collect();
    let expected = [
        (OpCode::Exists, "/kw/new"),
        (OpCode::GetData, "/kw"),
        (OpCode::GetChildren, "/kw"),
        (OpCode::Exists, "/kw/gone"),
    ];
    assert_eq!(watched, BTreeSet::from(expected));
}

#[test]
fn kazoo_reconnect() {
    let t = transcript("kazoo_reconnect");
    assert_session_resumed(&t);
    let data = t.responses(OpCode::GetData);
    assert!(
        matches!(data[..], [Response::GetData(ref body)] if body.data.as_deref() == Some(&b"r"[..])
            && body.stat.ephemeral_owner == t.connect_responses()[0].session_id),
        "the ephemeral node survives the reconnect: {data:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The C client

#[test]
fn cli_mt() {
    use ErrorCode::*;
    use OpCode::*;
    let t = transcript("cli_mt");
    t.assert_ops(&[
        Create,
        Create2,
        CreateContainer,
        CreateTtl,
        GetData,
        SetData,
        GetChildren,
        GetChildren2,
        Exists,
        Sync,
        Delete,
        Auth,
        Reconfig,
        CloseSession,
    ]);
    t.assert_errors(&[
        (Exists, NoNode),
        (Delete, NotEmpty),
        (Reconfig, ReconfigDisabled),
    ]);
    assert_eq!(t.connects()[0].read_only, Some(false));
    assert_eq!(t.connect_responses()[0].read_only, Some(false));
    let ttl: Vec<_> = t
        .requests()
        .filter_map(|frame| match &frame.request {
            Request::CreateTtl(body) => Some((body.path.as_str(), body.flags, body.ttl)),
            _ => None,
        })
        .collect();
    assert_eq!(ttl, [("/mttl", 5, 60_000)]);
    let container = t.requests().find_map(|frame| match &frame.request {
        Request::CreateContainer(body) => Some((body.path.as_str(), body.flags)),
        _ => None,
    });
    assert_eq!(container, Some(("/mcont", 4)));
    t.assert_sequential_created(Create2, "/mc/seq");
    t.assert_events(&[
        (EventType::NodeCreated, "/mc/w"),
        (EventType::NodeChildrenChanged, "/mc"),
    ]);
}

#[test]
fn cli_mt_reconnect() {
    let t = transcript("cli_mt_reconnect");
    assert_session_resumed(&t);
    let set_watches: Vec<_> = t
        .exchanges
        .iter()
        .filter_map(|(conn, exchange)| match exchange {
            Exchange::Request(ClientFrame {
                xid,
                request: Request::SetWatches(body),
            }) => Some((*conn, *xid, body)),
            _ => None,
        })
        .collect();
    let [(2, -8, body)] = set_watches[..] else {
        panic!("one setWatches (xid -8) on the second connection: {set_watches:?}");
    };
    let mut exist_watches = body.exist_watches.clone();
    exist_watches.sort();
    assert_eq!(exist_watches, ["/mr/absent", "/mr/sentinel"]);
    assert_eq!(body.data_watches, ["/mr"]);
    assert_eq!(body.child_watches, ["/mr"]);
    assert!(body.relative_zxid > 0);
    assert_eq!(t.responses(OpCode::SetWatches), [&Response::Empty]);
    t.assert_events(&[
        (EventType::NodeCreated, "/mr/absent"),
        (EventType::NodeChildrenChanged, "/mr"),
        (EventType::NodeDataChanged, "/mr"),
    ]);
}

// ---------------------------------------------------------------------------------------------
// The Java client

#[test]
fn java_multi() {
    use OpCode::*;
    let t = transcript("java_multi");
    let multis: Vec<(OpCode, &[MultiOp])> = t
        .requests()
        .filter_map(|frame| Some((frame.request.op(), multi_ops(frame)?)))
        .collect();
    let kinds: Vec<(OpCode, Vec<OpCode>)> = multis
        .iter()
        .map(|(op, ops)| (*op, ops.iter().map(MultiOp::op).collect()))
        .collect();
    let expected = [
        (
            Multi,
            vec![
                Create,
                Create,
                CreateTtl,
                CreateContainer,
                Check,
                SetData,
                Delete,
            ],
        ),
        (MultiRead, vec![GetData, GetChildren, GetData]),
        (Multi, vec![Create, Check, Delete]),
    ];
    assert_eq!(kinds, expected);
    match multis[0].1 {
        [_, MultiOp::Create(seq), MultiOp::CreateTtl(ttl), MultiOp::CreateContainer(container), ..] =>
        {
            assert_eq!(
                (seq.flags, ttl.flags, ttl.ttl, container.flags),
                (2, 5, 60_000, 4)
            );
            assert_eq!(
                (ttl.path.as_str(), container.data.as_ref()),
                ("/jm/ttl", None)
            );
        }
        ref other => panic!("multi ops: {other:?}"),
    }
    let replies = t.responses(Multi);
    match multi_results(replies[0]) {
        [OpResult::Create { path: plain }, OpResult::Create { path: seq }, OpResult::Create2 { path: ttl, .. }, OpResult::Create2 {
            path: container, ..
        }, OpResult::Check, OpResult::SetData { stat }, OpResult::Delete] => {
            assert_eq!(
                (plain.as_str(), ttl.as_str(), container.as_str()),
                ("/jm/plain", "/jm/ttl", "/jm/container")
            );
            assert!(is_sequential(seq, "/jm/seq-"), "{seq}");
            assert_eq!(stat.version, 1);
        }
        other => panic!("multi results: {other:?}"),
    }
    let failed = [
        0,
        ErrorCode::BadVersion.as_i32(),
        ErrorCode::RuntimeInconsistency.as_i32(),
    ];
    let expected: Vec<OpResult> = failed.iter().map(|&err| OpResult::Error { err }).collect();
    assert_eq!(multi_results(replies[1]), &expected[..]);
    // multiRead: each read stands alone; the missing node fails only its own op.
    let reads = t.responses(MultiRead);
    match multi_results(reads[0]) {
        [OpResult::GetData { data, .. }, OpResult::GetChildren { children }, OpResult::Error { err }] =>
        {
            assert_eq!(data.as_deref(), Some(&b"root2"[..]));
            let children: BTreeSet<&str> = children.iter().map(String::as_str).collect();
            assert!(
                children.contains("ttl") && children.contains("container"),
                "{children:?}"
            );
            assert_eq!(*err, ErrorCode::NoNode.as_i32());
        }
        other => panic!("multiRead results: {other:?}"),
    }
}

#[test]
fn java_setwatches2() {
    let t = transcript("java_setwatches2");
    assert_session_resumed(&t);
    let modes: BTreeSet<(&str, i32)> = t
        .requests()
        .filter_map(|frame| match &frame.request {
            Request::AddWatch(body) => Some((body.path.as_str(), body.mode)),
            _ => None,
        })
        .collect();
    assert_eq!(
        modes,
        BTreeSet::from([("/jp", 0), ("/jp/d", 1)]),
        "persistent, recursive"
    );
    let set_watches: Vec<_> = t
        .requests()
        .filter_map(|frame| match &frame.request {
            Request::SetWatches2(body) => Some(body),
            _ => None,
        })
        .collect();
    let [body] = set_watches[..] else {
        panic!("one setWatches2: {set_watches:?}");
    };
    assert_eq!(body.persistent_watches, ["/jp"]);
    assert_eq!(body.persistent_recursive_watches, ["/jp/d"]);
    assert_eq!(body.exist_watches, ["/jp/absent"]);
    assert_eq!(body.data_watches, ["/jp/d"]);
    assert_eq!(body.child_watches, ["/jp/d"]);
    assert_eq!(t.responses(OpCode::SetWatches2), [&Response::Empty]);
    t.assert_events(&[
        (EventType::NodeCreated, "/jp/absent"),
        (EventType::NodeChildrenChanged, "/jp"),
        (EventType::NodeDataChanged, "/jp/d"),
        (EventType::NodeCreated, "/jp/d/c"),
        (EventType::NodeDeleted, "/jp/d/c"),
    ]);
}

#[test]
fn java_admin() {
    use ErrorCode::*;
    use OpCode::*;
    let t = transcript("java_admin");
    t.assert_ops(&[
        GetEphemerals,
        GetAllChildrenNumber,
        CheckWatches,
        RemoveWatches,
        AddWatch,
        WhoAmI,
        Auth,
        Reconfig,
    ]);
    t.assert_errors(&[
        (Create, NoChildrenForEphemerals),
        (Create, InvalidAcl),
        (SetAcl, BadVersion),
        (Reconfig, ReconfigDisabled),
    ]);
    let ephemerals: Vec<&[String]> = t
        .responses(GetEphemerals)
        .into_iter()
        .map(|response| match response {
            Response::GetEphemerals(body) => &body.ephemerals[..],
            other => panic!("getEphemerals: {other:?}"),
        })
        .collect();
    assert!(
        ephemerals
            .iter()
            .all(|list| list.contains(&"/ja/e".to_string())),
        "{ephemerals:?}"
    );
    assert_eq!(ephemerals.len(), 2);
    let counts = t.responses(GetAllChildrenNumber);
    assert!(
        matches!(counts[..], [Response::GetAllChildrenNumber(body)] if body.total_number == 1),
        "{counts:?}"
    );
}

#[test]
fn java_admin_watch_removal_whoami_reconfig() {
    use OpCode::*;
    let t = transcript("java_admin");
    let watch_removals: Vec<(OpCode, &str, i32)> = t
        .requests()
        .filter_map(|frame| match &frame.request {
            Request::CheckWatches(body) => {
                Some((CheckWatches, body.path.as_str(), body.watcher_type))
            }
            Request::RemoveWatches(body) => {
                Some((RemoveWatches, body.path.as_str(), body.watcher_type))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        watch_removals[0],
        (CheckWatches, "/ja", 2),
        "data watches: {watch_removals:?}"
    );
    assert!(
        watch_removals[1..]
            .iter()
            .all(|r| *r == (RemoveWatches, "/ja", 3)),
        "{watch_removals:?}"
    );
    assert_eq!(
        whoami_users(&t, "digest"),
        [vec![], vec!["carol".to_string()]]
    );
    assert_eq!(
        whoami_users(&t, "ip"),
        [vec!["127.0.0.1".to_string()], vec!["127.0.0.1".to_string()]]
    );
    let reconfig = t.requests().find_map(|frame| match &frame.request {
        Request::Reconfig(body) => Some(body),
        _ => None,
    });
    let reconfig = reconfig.expect("a reconfig request");
    assert_eq!(
        reconfig.new_members.as_deref(),
        Some("server.1=127.0.0.1:2888:3888;2181")
    );
    assert_eq!(
        (reconfig.joining_servers.as_deref(), reconfig.cur_config_id),
        (None, -1)
    );
}

#[test]
fn java_sasl() {
    let t = transcript("java_sasl");
    t.assert_ops(&[OpCode::Sasl, OpCode::WhoAmI]);
    let tokens: Vec<&[u8]> = t
        .requests()
        .filter_map(|frame| match &frame.request {
            Request::Sasl(body) => Some(&body.token[..]),
            _ => None,
        })
        .collect();
    let user = b"username=\"golden\"";
    let names_user = |token: &&[u8]| token.windows(user.len()).any(|w| w == user);
    assert!(
        tokens.iter().any(names_user),
        "a DIGEST-MD5 response naming the user"
    );
    let challenges = t.responses(OpCode::Sasl);
    assert!(!challenges.is_empty());
    for challenge in challenges {
        assert!(
            matches!(challenge, Response::Sasl(body) if body.token.as_ref().is_some_and(|token| !token.is_empty())),
            "{challenge:?}"
        );
    }
    assert_eq!(whoami_users(&t, "sasl"), [vec!["golden".to_string()]]);
    let acls = t.responses(OpCode::GetAcl);
    let Some(Response::GetAcl(body)) = acls.first() else {
        panic!("getACL: {acls:?}");
    };
    assert_eq!(
        (body.acl[0].id.scheme.as_str(), body.acl[0].id.id.as_str()),
        ("sasl", "golden")
    );
}

// ---------------------------------------------------------------------------------------------
// zkCli

#[test]
fn zkcli() {
    use ErrorCode::*;
    use OpCode::*;
    let t = transcript("zkcli");
    t.assert_ops(&[
        CreateTtl,
        CreateContainer,
        AddWatch,
        WhoAmI,
        GetEphemerals,
        GetAllChildrenNumber,
        Auth,
        GetAcl,
        SetAcl,
        RemoveWatches,
        Reconfig,
        Sync,
        GetChildren2,
        Exists,
        SetData,
        Delete,
        CloseSession,
    ]);
    t.assert_errors(&[(Exists, NoNode), (Reconfig, ReconfigDisabled)]);
    let first_create = t.requests().find_map(|frame| match &frame.request {
        Request::Create(body) => Some(body),
        _ => None,
    });
    let first_create = first_create.expect("a create");
    assert_eq!(
        (first_create.path.as_str(), first_create.data.as_ref()),
        ("/zc", None),
        "null data"
    );
    let data = t.responses(GetData);
    assert!(
        matches!(data[..], [Response::GetData(ref body)] if body.data.is_none()),
        "{data:?}"
    );
    let ttl: BTreeSet<(i32, i64)> = t
        .requests()
        .filter_map(|frame| match &frame.request {
            Request::CreateTtl(body) => Some((body.flags, body.ttl)),
            _ => None,
        })
        .collect();
    assert_eq!(
        ttl,
        BTreeSet::from([(5, 60_000), (6, 60_000)]),
        "TTL, sequential TTL"
    );
    t.assert_sequential_created(CreateTtl, "/zc/ttlseq-");
    let modes: BTreeSet<(&str, i32)> = t
        .requests()
        .filter_map(|frame| match &frame.request {
            Request::AddWatch(body) => Some((body.path.as_str(), body.mode)),
            _ => None,
        })
        .collect();
    assert_eq!(modes, BTreeSet::from([("/zc", 1), ("/zc/pw", 0)]));
    t.assert_events(&[
        (EventType::NodeDataChanged, "/zc"),
        (EventType::NodeCreated, "/zc/pw/kid"),
        (EventType::NodeChildrenChanged, "/zc/pw"),
        (EventType::NodeDeleted, "/zc/pw/kid"),
    ]);
    assert_eq!(
        whoami_users(&t, "digest"),
        [vec![], vec!["dave".to_string()]]
    );
}

// ---------------------------------------------------------------------------------------------
// Raw requests (the server's replies are real)

#[test]
fn raw_legacy_connect() {
    let t = transcript("raw_legacy_connect");
    assert_eq!(t.connects()[0].read_only, None, "a pre-3.4 connect request");
    assert_eq!(
        t.connect_responses()[0].read_only,
        None,
        "is answered without the flag"
    );
    t.assert_ops(&[OpCode::Ping, OpCode::Exists, OpCode::CloseSession]);
}

#[test]
fn raw_server_errors() {
    use ErrorCode::*;
    use OpCode::*;
    let t = transcript("raw_server_errors");
    t.assert_errors(&[
        (CheckWatches, NoWatcher),
        (RemoveWatches, NoWatcher),
        (CreateTtl, BadArguments),
    ]);
}

#[test]
fn kazoo_read_only() {
    let t = transcript("kazoo_read_only");
    assert_eq!(
        t.connects()[0].read_only,
        Some(true),
        "the client accepts a read-only server"
    );
    assert_eq!(
        t.connect_responses()[0].read_only,
        Some(false),
        "this server is not one"
    );
    let children = t.responses(OpCode::GetChildren);
    let Some(Response::GetChildren(body)) = children.first() else {
        panic!("getChildren: {children:?}");
    };
    let mut names = body.children.clone();
    names.sort();
    assert_eq!(names, ["config", "quota"], "children of /zookeeper");
}

#[test]
fn raw_expired_session() {
    let t = transcript("raw_expired_session");
    let (request, response) = (t.connects()[0], t.connect_responses()[0]);
    assert_eq!(request.session_id, 0x7EAD_BEEF_0000_0001);
    assert_eq!(
        response,
        &ConnectResponse::session_expired(request),
        "timeout 0, session 0, zero password"
    );
    assert_eq!(
        t.exchanges.len(),
        2,
        "the server closes the connection at once"
    );
}

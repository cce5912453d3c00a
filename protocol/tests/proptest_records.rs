//! Property tests of the wire codecs: every record, every request and response op, the
//! handshake and the txn log entry decode back to the value that was encoded, and decoders fed
//! arbitrary or corrupted bytes return errors instead of panicking.

use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::strategy::Union;
use zinc_protocol::records::*;
use zinc_protocol::txn::*;
use zinc_protocol::*;

/// Builds a struct strategy from one strategy per field.
macro_rules! record {
    ($name:ident { $( $field:ident : $strategy:expr ),* $(,)? }) => {
        ( $( $strategy, )* ).prop_map(|( $( $field, )* )| $name { $( $field, )* })
    };
}

fn text() -> impl Strategy<Value = String> + Clone {
    prop_oneof![".{0,12}", "(/[a-z0-9]{1,4}){1,3}"]
}

fn opt_text() -> impl Strategy<Value = Option<String>> + Clone {
    proptest::option::of(text())
}

fn texts() -> impl Strategy<Value = Vec<String>> + Clone {
    prop::collection::vec(text(), 0..4)
}

fn bytes() -> impl Strategy<Value = Bytes> + Clone {
    prop::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn opt_bytes() -> impl Strategy<Value = Option<Bytes>> + Clone {
    proptest::option::of(bytes())
}

fn stat() -> impl Strategy<Value = Stat> + Clone {
    let times = (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>());
    let versions = (any::<i32>(), any::<i32>(), any::<i32>());
    let rest = (any::<i64>(), any::<i32>(), any::<i32>(), any::<i64>());
    (times, versions, rest).prop_map(
        |(
            (czxid, mzxid, ctime, mtime),
            (version, cversion, aversion),
            (ephemeral_owner, data_length, num_children, pzxid),
        )| Stat {
            czxid,
            mzxid,
            ctime,
            mtime,
            version,
            cversion,
            aversion,
            ephemeral_owner,
            data_length,
            num_children,
            pzxid,
        },
    )
}

fn acls() -> impl Strategy<Value = Vec<Acl>> + Clone {
    let id = record!(Id {
        scheme: text(),
        id: text()
    });
    prop::collection::vec(
        record!(Acl {
            perms: any::<i32>(),
            id: id
        }),
        0..3,
    )
}

fn create() -> impl Strategy<Value = CreateRequest> + Clone {
    record!(CreateRequest {
        path: text(),
        data: opt_bytes(),
        acl: acls(),
        flags: any::<i32>()
    })
}

fn create_ttl() -> impl Strategy<Value = CreateTtlRequest> + Clone {
    record!(CreateTtlRequest {
        path: text(),
        data: opt_bytes(),
        acl: acls(),
        flags: any::<i32>(),
        ttl: any::<i64>()
    })
}

fn delete() -> impl Strategy<Value = DeleteRequest> + Clone {
    record!(DeleteRequest {
        path: text(),
        version: any::<i32>()
    })
}

fn set_data() -> impl Strategy<Value = SetDataRequest> + Clone {
    record!(SetDataRequest {
        path: text(),
        data: opt_bytes(),
        version: any::<i32>()
    })
}

fn check() -> impl Strategy<Value = CheckVersionRequest> + Clone {
    record!(CheckVersionRequest {
        path: text(),
        version: any::<i32>()
    })
}

fn get_data() -> impl Strategy<Value = GetDataRequest> + Clone {
    record!(GetDataRequest {
        path: text(),
        watch: any::<bool>()
    })
}

fn get_children() -> impl Strategy<Value = GetChildrenRequest> + Clone {
    record!(GetChildrenRequest {
        path: text(),
        watch: any::<bool>()
    })
}

/// A multi of write ops only, or of read ops only (mixing is a decode error).
fn multi_request() -> impl Strategy<Value = MultiRequest> {
    let write = prop_oneof![
        create().prop_map(MultiOp::Create),
        create().prop_map(MultiOp::Create2),
        create().prop_map(MultiOp::CreateContainer),
        create_ttl().prop_map(MultiOp::CreateTtl),
        delete().prop_map(MultiOp::Delete),
        set_data().prop_map(MultiOp::SetData),
        check().prop_map(MultiOp::Check),
    ];
    let read = prop_oneof![
        get_data().prop_map(MultiOp::GetData),
        get_children().prop_map(MultiOp::GetChildren),
    ];
    prop_oneof![
        prop::collection::vec(write, 0..4),
        prop::collection::vec(read, 0..4),
    ]
    .prop_map(|ops| MultiRequest { ops })
}

fn multi_response() -> impl Strategy<Value = MultiResponse> {
    let result = prop_oneof![
        text().prop_map(|path| OpResult::Create { path }),
        (text(), stat()).prop_map(|(path, stat)| OpResult::Create2 { path, stat }),
        stat().prop_map(|stat| OpResult::SetData { stat }),
        Just(OpResult::Delete),
        Just(OpResult::Check),
        (opt_bytes(), stat()).prop_map(|(data, stat)| OpResult::GetData { data, stat }),
        texts().prop_map(|children| OpResult::GetChildren { children }),
        any::<i32>().prop_map(|err| OpResult::Error { err }),
    ];
    prop::collection::vec(result, 0..4).prop_map(|results| MultiResponse { results })
}

fn path_and_watch<T: Debug + 'static>(
    build: fn(String, bool) -> T,
) -> impl Strategy<Value = T> + Clone {
    (text(), any::<bool>()).prop_map(move |(path, watch)| build(path, watch))
}

fn path_only<T: Debug + 'static>(build: fn(String) -> T) -> impl Strategy<Value = T> + Clone {
    text().prop_map(build)
}

fn set_watches2() -> impl Strategy<Value = SetWatches2> {
    record!(SetWatches2 {
        relative_zxid: any::<i64>(),
        data_watches: texts(),
        exist_watches: texts(),
        child_watches: texts(),
        persistent_watches: texts(),
        persistent_recursive_watches: texts()
    })
}

/// A request of exactly op code `op` (one of `Request::OPS`).
fn request_for(op: OpCode) -> BoxedStrategy<Request> {
    match op {
        OpCode::Create => create().prop_map(Request::Create).boxed(),
        OpCode::Create2 => create().prop_map(Request::Create2).boxed(),
        OpCode::CreateContainer => create().prop_map(Request::CreateContainer).boxed(),
        OpCode::CreateTtl => create_ttl().prop_map(Request::CreateTtl).boxed(),
        OpCode::Delete => delete().prop_map(Request::Delete).boxed(),
        OpCode::Exists => {
            path_and_watch(|path, watch| Request::Exists(ExistsRequest { path, watch })).boxed()
        }
        OpCode::GetData => get_data().prop_map(Request::GetData).boxed(),
        OpCode::SetData => set_data().prop_map(Request::SetData).boxed(),
        OpCode::GetAcl => path_only(|path| Request::GetAcl(GetAclRequest { path })).boxed(),
        OpCode::SetAcl => record!(SetAclRequest {
            path: text(),
            acl: acls(),
            version: any::<i32>()
        })
        .prop_map(Request::SetAcl)
        .boxed(),
        OpCode::GetChildren => get_children().prop_map(Request::GetChildren).boxed(),
        OpCode::GetChildren2 => {
            path_and_watch(|path, watch| Request::GetChildren2(GetChildren2Request { path, watch }))
                .boxed()
        }
        OpCode::Sync => path_only(|path| Request::Sync(SyncRequest { path })).boxed(),
        OpCode::Ping => Just(Request::Ping).boxed(),
        OpCode::Check => check().prop_map(Request::Check).boxed(),
        OpCode::Multi => multi_request().prop_map(Request::Multi).boxed(),
        OpCode::MultiRead => multi_request().prop_map(Request::MultiRead).boxed(),
        OpCode::Reconfig => record!(ReconfigRequest {
            joining_servers: opt_text(),
            leaving_servers: opt_text(),
            new_members: opt_text(),
            cur_config_id: any::<i64>()
        })
        .prop_map(Request::Reconfig)
        .boxed(),
        OpCode::CheckWatches => record!(CheckWatchesRequest {
            path: text(),
            watcher_type: any::<i32>()
        })
        .prop_map(Request::CheckWatches)
        .boxed(),
        OpCode::RemoveWatches => record!(RemoveWatchesRequest {
            path: text(),
            watcher_type: any::<i32>()
        })
        .prop_map(Request::RemoveWatches)
        .boxed(),
        OpCode::Auth => record!(AuthPacket {
            auth_type: any::<i32>(),
            scheme: text(),
            auth: bytes()
        })
        .prop_map(Request::Auth)
        .boxed(),
        OpCode::SetWatches => record!(SetWatches {
            relative_zxid: any::<i64>(),
            data_watches: texts(),
            exist_watches: texts(),
            child_watches: texts()
        })
        .prop_map(Request::SetWatches)
        .boxed(),
        OpCode::SetWatches2 => set_watches2().prop_map(Request::SetWatches2).boxed(),
        OpCode::Sasl => bytes()
            .prop_map(|token| Request::Sasl(GetSaslRequest { token }))
            .boxed(),
        OpCode::GetEphemerals => {
            path_only(|prefix_path| Request::GetEphemerals(GetEphemeralsRequest { prefix_path }))
                .boxed()
        }
        OpCode::GetAllChildrenNumber => {
            path_only(|path| Request::GetAllChildrenNumber(GetAllChildrenNumberRequest { path }))
                .boxed()
        }
        OpCode::AddWatch => record!(AddWatchRequest {
            path: text(),
            mode: any::<i32>()
        })
        .prop_map(Request::AddWatch)
        .boxed(),
        OpCode::WhoAmI => Just(Request::WhoAmI).boxed(),
        OpCode::CloseSession => Just(Request::CloseSession).boxed(),
        other => panic!("no request strategy for {other:?}"),
    }
}

fn any_request() -> impl Strategy<Value = Request> {
    prop::sample::select(Request::OPS).prop_flat_map(request_for)
}

/// Op codes a reply can answer (everything but createSession and error).
fn reply_ops() -> Vec<OpCode> {
    OpCode::ALL
        .iter()
        .copied()
        .filter(|op| !matches!(op, OpCode::CreateSession | OpCode::Error))
        .collect()
}

fn watcher_event() -> impl Strategy<Value = WatcherEvent> {
    (
        prop::sample::select(EventType::ALL),
        prop::sample::select(KeeperState::ALL),
        text(),
    )
        .prop_map(|(event_type, state, path)| WatcherEvent {
            event_type,
            state,
            path,
        })
}

/// A successful reply body for a request of op code `op`.
fn response_for(op: OpCode) -> BoxedStrategy<Response> {
    use OpCode as O;
    match op {
        O::Notification => watcher_event().prop_map(Response::Notification).boxed(),
        O::Create => path_only(|path| Response::Create(CreateResponse { path })).boxed(),
        O::Create2 | O::CreateContainer | O::CreateTtl => (text(), stat())
            .prop_map(|(path, stat)| Response::Create2(Create2Response { path, stat }))
            .boxed(),
        O::Exists => stat()
            .prop_map(|stat| Response::Exists(ExistsResponse { stat }))
            .boxed(),
        O::GetData | O::Reconfig => (opt_bytes(), stat())
            .prop_map(|(data, stat)| Response::GetData(GetDataResponse { data, stat }))
            .boxed(),
        O::SetData | O::Check => stat()
            .prop_map(|stat| Response::SetData(SetDataResponse { stat }))
            .boxed(),
        O::GetAcl => (acls(), stat())
            .prop_map(|(acl, stat)| Response::GetAcl(GetAclResponse { acl, stat }))
            .boxed(),
        O::SetAcl => stat()
            .prop_map(|stat| Response::SetAcl(SetAclResponse { stat }))
            .boxed(),
        O::GetChildren => texts()
            .prop_map(|children| Response::GetChildren(GetChildrenResponse { children }))
            .boxed(),
        O::GetChildren2 => (texts(), stat())
            .prop_map(|(children, stat)| {
                Response::GetChildren2(GetChildren2Response { children, stat })
            })
            .boxed(),
        O::Sync => path_only(|path| Response::Sync(SyncResponse { path })).boxed(),
        O::Multi | O::MultiRead => multi_response().prop_map(Response::Multi).boxed(),
        O::Sasl => opt_bytes()
            .prop_map(|token| Response::Sasl(SetSaslResponse { token }))
            .boxed(),
        O::GetEphemerals => texts()
            .prop_map(|ephemerals| Response::GetEphemerals(GetEphemeralsResponse { ephemerals }))
            .boxed(),
        O::GetAllChildrenNumber => any::<i32>()
            .prop_map(|total_number| {
                Response::GetAllChildrenNumber(GetAllChildrenNumberResponse { total_number })
            })
            .boxed(),
        O::AddWatch => any::<i32>()
            .prop_map(|err| Response::AddWatch(ErrorResponse { err }))
            .boxed(),
        O::WhoAmI => {
            let info = record!(ClientInfo {
                auth_scheme: text(),
                user: text()
            });
            prop::collection::vec(info, 0..3)
                .prop_map(|client_info| Response::WhoAmI(WhoAmIResponse { client_info }))
                .boxed()
        }
        _ => Just(Response::Empty).boxed(),
    }
}

fn any_response() -> impl Strategy<Value = (OpCode, Response)> {
    prop::sample::select(reply_ops()).prop_flat_map(|op| (Just(op), response_for(op)))
}

fn txn_leaf() -> impl Strategy<Value = Txn> {
    let create_txn = record!(CreateTxn {
        path: text(),
        data: opt_bytes(),
        acl: acls(),
        ephemeral: any::<bool>(),
        parent_cversion: any::<i32>()
    });
    Union::new(vec![
        create_txn.clone().prop_map(Txn::Create).boxed(),
        create_txn.prop_map(Txn::Create2).boxed(),
        record!(CreateContainerTxn {
            path: text(),
            data: opt_bytes(),
            acl: acls(),
            parent_cversion: any::<i32>()
        })
        .prop_map(Txn::CreateContainer)
        .boxed(),
        record!(CreateTtlTxn {
            path: text(),
            data: opt_bytes(),
            acl: acls(),
            parent_cversion: any::<i32>(),
            ttl: any::<i64>()
        })
        .prop_map(Txn::CreateTtl)
        .boxed(),
        path_only(|path| Txn::Delete(DeleteTxn { path })).boxed(),
        path_only(|path| Txn::DeleteContainer(DeleteTxn { path })).boxed(),
        record!(SetDataTxn {
            path: text(),
            data: opt_bytes(),
            version: any::<i32>()
        })
        .prop_map(Txn::SetData)
        .boxed(),
        record!(SetAclTxn {
            path: text(),
            acl: acls(),
            version: any::<i32>()
        })
        .prop_map(Txn::SetAcl)
        .boxed(),
        record!(CheckVersionTxn {
            path: text(),
            version: any::<i32>()
        })
        .prop_map(Txn::Check)
        .boxed(),
        any::<i32>()
            .prop_map(|time_out| Txn::CreateSession(CreateSessionTxn { time_out }))
            .boxed(),
        texts()
            .prop_map(|paths_to_delete| Txn::CloseSession(CloseSessionTxn { paths_to_delete }))
            .boxed(),
        any::<i32>()
            .prop_map(|err| Txn::Error(ErrorTxn { err }))
            .boxed(),
    ])
}

fn txn_entry() -> impl Strategy<Value = TxnEntry> {
    let txn = prop_oneof![
        3 => txn_leaf(),
        1 => prop::collection::vec(txn_leaf(), 0..4).prop_map(Txn::Multi),
    ];
    let digest = proptest::option::of(record!(TxnDigest {
        version: any::<i32>(),
        tree_digest: any::<i64>()
    }));
    let ids = (any::<i64>(), any::<i32>(), any::<i64>(), any::<i64>());
    (ids, txn, digest).prop_map(|((client_id, cxid, zxid, time), txn, digest)| TxnEntry {
        header: TxnHeader {
            client_id,
            cxid,
            zxid,
            time,
            op_type: txn.op().as_i32(),
        },
        txn,
        digest,
    })
}

fn connect_request() -> impl Strategy<Value = ConnectRequest> {
    record!(ConnectRequest {
        protocol_version: any::<i32>(),
        last_zxid_seen: any::<i64>(),
        timeout_ms: any::<i32>(),
        session_id: any::<i64>(),
        passwd: bytes(),
        read_only: any::<Option<bool>>()
    })
}

fn connect_response() -> impl Strategy<Value = ConnectResponse> {
    record!(ConnectResponse {
        protocol_version: any::<i32>(),
        timeout_ms: any::<i32>(),
        session_id: any::<i64>(),
        passwd: bytes(),
        read_only: any::<Option<bool>>()
    })
}

/// Encodes, checks the size bound, decodes the whole buffer and compares.
fn assert_round_trip<T: Record + PartialEq + Debug>(value: &T) -> Result<(), TestCaseError> {
    let bytes = value.to_bytes();
    prop_assert!(bytes.len() >= T::MIN_ENCODED_BYTES);
    prop_assert_eq!(&T::from_bytes(&bytes)?, value);
    Ok(())
}

/// Flips one byte and truncates: the decoder must return, whatever it returns.
fn corrupt(bytes: &[u8], flip_at: usize, flip: u8, keep: usize) -> Bytes {
    let mut corrupted = bytes.to_vec();
    if !corrupted.is_empty() {
        let at = flip_at % corrupted.len();
        corrupted[at] ^= flip;
    }
    corrupted.truncate(keep.min(corrupted.len()));
    Bytes::from(corrupted)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_round_trip(request in any_request(), xid in any::<i32>()) {
        let mut body = BytesMut::new();
        request.encode(&mut body);
        let mut reader = Reader::new(body.freeze());
        prop_assert_eq!(&Request::decode(request.op(), &mut reader)?, &request);
        prop_assert_eq!(reader.remaining(), 0);

        let frame = ClientFrame { xid, request };
        let mut wire = BytesMut::new();
        frame.encode_framed(&mut wire);
        let body = FrameDecoder::default().decode(&mut wire).expect("within limit");
        prop_assert_eq!(ClientFrame::decode(body.expect("whole frame"))?, frame);
    }

    #[test]
    fn responses_round_trip(
        (op, response) in any_response(),
        xid in 0..i32::MAX,
        zxid in any::<i64>(),
    ) {
        let mut body = BytesMut::new();
        response.encode(&mut body);
        let mut reader = Reader::new(body.freeze());
        prop_assert_eq!(&Response::decode(op, &mut reader)?, &response);
        prop_assert_eq!(reader.remaining(), 0);

        let frame = ServerFrame { header: ReplyHeader { xid, zxid, err: 0 }, response };
        let mut wire = BytesMut::new();
        frame.encode(&mut wire);
        prop_assert_eq!(ServerFrame::decode(wire.freeze(), |_| Some(op))?, frame);
    }

    #[test]
    fn multi_and_handshake_records_round_trip(
        multi in multi_request(),
        results in multi_response(),
        connect in connect_request(),
        accepted in connect_response(),
        event in watcher_event(),
    ) {
        assert_round_trip(&multi)?;
        assert_round_trip(&results)?;
        assert_round_trip(&connect)?;
        assert_round_trip(&accepted)?;
        assert_round_trip(&event)?;
    }

    #[test]
    fn header_records_round_trip(
        xid in any::<i32>(),
        op_type in any::<i32>(),
        zxid in any::<i64>(),
        done in any::<bool>(),
        watches in set_watches2(),
        stat in stat(),
    ) {
        assert_round_trip(&RequestHeader { xid, op_type })?;
        assert_round_trip(&ReplyHeader { xid, zxid, err: op_type })?;
        assert_round_trip(&MultiHeader { op_type, done, err: xid })?;
        assert_round_trip(&watches)?;
        assert_round_trip(&stat)?;
    }

    #[test]
    fn txn_entries_round_trip(entry in txn_entry()) {
        let bytes = entry.to_bytes();
        prop_assert_eq!(TxnEntry::from_bytes(&bytes)?, entry);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..96),
        op in prop::sample::select(OpCode::ALL),
    ) {
        let frame = Bytes::from(bytes);
        let _ = ClientFrame::decode(frame.clone());
        let _ = ServerFrame::decode(frame.clone(), |_| Some(op));
        let _ = Request::decode(op, &mut Reader::new(frame.clone()));
        let _ = Response::decode(op, &mut Reader::new(frame.clone()));
        let _ = ConnectRequest::decode_frame(frame.clone());
        let _ = ConnectResponse::decode_frame(frame.clone());
        let _ = MultiRequest::from_bytes(&frame);
        let _ = MultiResponse::from_bytes(&frame);
        let _ = TxnEntry::from_bytes(&frame);
        let _ = FrameDecoder::new(64).decode(&mut BytesMut::from(&frame[..]));
        let _ = FourLetterWord::from_bytes(&frame);
    }

    #[test]
    fn corrupted_encodings_never_panic(
        request in any_request(),
        (op, response) in any_response(),
        entry in txn_entry(),
        flip_at in any::<usize>(),
        flip in 1..=u8::MAX,
        keep in 0..usize::MAX,
    ) {
        let frame = ClientFrame { xid: 1, request };
        let mut wire = BytesMut::new();
        frame.encode(&mut wire);
        let _ = ClientFrame::decode(corrupt(&wire, flip_at, flip, keep));

        let reply = ServerFrame { header: ReplyHeader { xid: 1, zxid: 2, err: 0 }, response };
        let mut wire = BytesMut::new();
        reply.encode(&mut wire);
        let _ = ServerFrame::decode(corrupt(&wire, flip_at, flip, keep), |_| Some(op));

        let _ = TxnEntry::from_bytes(&corrupt(&entry.to_bytes(), flip_at, flip, keep));
    }

    #[test]
    fn paths_from_plain_components_are_valid(
        components in prop::collection::vec("[a-zA-Z0-9_\\-.]{1,8}", 1..5),
    ) {
        let path = format!("/{}", components.join("/"));
        let has_relative = components.iter().any(|c| c == "." || c == "..");
        prop_assert_eq!(validate_path(&path, false).is_ok(), !has_relative);
        let last = components.last().expect("non-empty");
        prop_assert_eq!(zinc_protocol::path::basename(&path), last.as_str());
        let parent = zinc_protocol::path::parent_of(&path).expect("not the root");
        let rejoined = match parent {
            "/" => format!("/{last}"),
            parent => format!("{parent}/{last}"),
        };
        prop_assert_eq!(rejoined, path);
    }

    #[test]
    fn path_validation_never_panics(path in ".{0,16}", sequential in any::<bool>()) {
        let _ = validate_path(&path, sequential);
    }
}

#[test]
fn every_request_op_has_a_strategy() {
    // `request_for` panics on an op it does not cover; build each once.
    for &op in Request::OPS {
        let _ = request_for(op);
    }
    for op in reply_ops() {
        let _ = response_for(op);
    }
}

//! Everything a server can send after the handshake, decoded as a reply to any op code (the
//! first byte chooses it) and as a handshake response. Decoding must never panic, and whatever
//! decodes must encode to bytes that decode to the same value.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use zinc_protocol::codes::OpCode;
use zinc_protocol::jute::Record;
use zinc_protocol::records::{ConnectResponse, ServerFrame};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let op = OpCode::ALL[usize::from(control) % OpCode::ALL.len()];
    let frame = Bytes::copy_from_slice(rest);

    if let Ok(connect) = ConnectResponse::decode_frame(frame.clone()) {
        let again = ConnectResponse::decode_frame(connect.to_bytes());
        assert_eq!(again.as_ref(), Ok(&connect));
    }

    if let Ok(reply) = ServerFrame::decode(frame, |_| Some(op)) {
        let mut out = BytesMut::new();
        reply.encode(&mut out);
        let again = ServerFrame::decode(out.freeze(), |_| Some(op));
        assert_eq!(again.as_ref(), Ok(&reply));
    }
});

//! Everything a client can send: a handshake, a four-letter word, or a request frame. Decoding
//! must never panic, and whatever decodes must encode to bytes that decode to the same value.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use zinc_protocol::fourlw::FourLetterWord;
use zinc_protocol::jute::Record;
use zinc_protocol::records::{ClientFrame, ConnectRequest};

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    let _ = FourLetterWord::from_bytes(data);

    if let Ok(connect) = ConnectRequest::decode_frame(frame.clone()) {
        let again = ConnectRequest::decode_frame(connect.to_bytes());
        assert_eq!(again.as_ref(), Ok(&connect));
    }

    if let Ok(request) = ClientFrame::decode(frame) {
        let mut out = BytesMut::new();
        request.encode(&mut out);
        let again = ClientFrame::decode(out.freeze());
        assert_eq!(again.as_ref(), Ok(&request));
    }
});

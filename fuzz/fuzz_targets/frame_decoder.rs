//! The frame decoder fed the same stream whole and in arbitrary chunks: it must never panic,
//! never return a frame above its limit, and cut the same frames either way.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use zinc_protocol::frame::{FrameDecoder, LENGTH_PREFIX_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    // Small limits so that the limit paths are reached, and the default one.
    let limit_bytes = match control & 0x7 {
        0 => zinc_protocol::frame::FRAME_BYTES_MAX_DEFAULT,
        small => usize::from(small) * 16,
    };
    let decoder = FrameDecoder::new(limit_bytes);

    let mut whole = BytesMut::from(stream);
    let mut frames_whole = Vec::new();
    let error_whole = loop {
        match decoder.decode(&mut whole) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= limit_bytes);
                frames_whole.push(frame);
            }
            Ok(None) => break None,
            Err(error) => break Some(error),
        }
    };

    // Chunk sizes come from the stream itself (1..=16 bytes).
    let chunk_bytes = usize::from(control >> 4) + 1;
    let mut buf = BytesMut::new();
    let mut frames_chunked = Vec::new();
    let mut error_chunked = None;
    'feed: for chunk in stream.chunks(chunk_bytes) {
        buf.put_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames_chunked.push(frame),
                Ok(None) => break,
                Err(error) => {
                    error_chunked = Some(error);
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(frames_whole, frames_chunked);
    assert_eq!(error_whole, error_chunked);
    if error_whole.is_none() {
        let consumed: usize = frames_whole
            .iter()
            .map(|f| f.len() + LENGTH_PREFIX_BYTES)
            .sum();
        assert_eq!(consumed + whole.len(), stream.len());
    }
});

//! Property tests: arbitrary frames survive encode -> decode, and a stream
//! of frames decodes the same however it is split into pieces.

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use felix_wire::{EncodeError, Frame, FrameDecoder};
use proptest::prelude::*;

/// An arbitrary frame that has a wire form (binary acked batches cannot
/// carry ack mode `none`; that is an encode error, tested below).
fn frame_from(raw: &[u8]) -> Option<Frame> {
    let mut u = Unstructured::new(raw);
    let frame = Frame::arbitrary(&mut u).ok()?;
    frame.check().is_ok().then_some(frame)
}

fn frames_from(raw: &[u8]) -> Vec<Frame> {
    let mut u = Unstructured::new(raw);
    let mut out = Vec::new();
    while let Ok(f) = Frame::arbitrary(&mut u) {
        if f.check().is_ok() {
            out.push(f);
        }
        if u.is_empty() || out.len() >= 16 {
            break;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_gives_the_frame_back(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Some(frame) = frame_from(&raw) {
            let bytes = frame.to_bytes().expect("checked frame encodes");
            prop_assert_eq!(bytes.len(), 12 + frame.payload_len());
            let (decoded, rest) = Frame::decode(bytes.clone()).expect("own encoding decodes");
            prop_assert!(rest.is_empty());
            prop_assert_eq!(&decoded, &frame);
            // And once more: decode -> encode is stable.
            prop_assert_eq!(decoded.to_bytes().expect("re-encode"), bytes);
        }
    }

    #[test]
    fn any_split_of_a_stream_decodes_like_the_whole(
        raw in proptest::collection::vec(any::<u8>(), 0..8192),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..32),
    ) {
        let frames = frames_from(&raw);
        let mut stream = BytesMut::new();
        for f in &frames {
            f.encode(&mut stream).expect("checked frame encodes");
        }
        let stream = stream.freeze();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();
        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut at = 0;
        for p in points {
            buf.extend_from_slice(&stream[at..p]);
            at = p;
            while let Some(f) = decoder.decode(&mut buf).expect("valid stream") {
                got.push(f);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoder.stream_offset(), stream.len() as u64);
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_stay_typed(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        // Whatever the bytes, decoding returns a value or a typed error.
        let _ = Frame::decode(Bytes::from(raw.clone()));
        let mut framed = BytesMut::from(&b"FLX1\x00\x01\x00\x00"[..]);
        framed.extend_from_slice(&(raw.len() as u32).to_be_bytes());
        framed.extend_from_slice(&raw);
        if let Err(e) = Frame::decode(framed.freeze()) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn ack_mode_none_cannot_be_sent_as_a_binary_acked_batch() {
    let frame = Frame::from(felix_wire::BinaryAckedPublishBatch {
        request_id: 1,
        ack_mode: felix_wire::AckMode::None,
        tenant_id: "t".into(),
        namespace: "n".into(),
        stream: "s".into(),
        payloads: vec![],
    });
    let mut out = BytesMut::new();
    let err = frame.encode(&mut out).expect_err("none has no byte");
    assert_eq!(
        err,
        EncodeError::NotRepresentable {
            field: "binary_acked_publish_batch.ack_mode",
            value: "none"
        }
    );
    assert!(out.is_empty(), "nothing written on error");
}

#[test]
fn oversized_str16_is_an_encode_error_not_a_truncation() {
    let frame = Frame::from(felix_wire::BinaryPublishBatch {
        tenant_id: "x".repeat(70_000),
        namespace: "n".into(),
        stream: "s".into(),
        payloads: vec![],
    });
    let err = frame.to_bytes().expect_err("too long");
    assert_eq!(
        err,
        EncodeError::StringTooLong {
            field: "binary_publish_batch.tenant_id",
            len: 70_000
        }
    );
}

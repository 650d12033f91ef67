//! Fuzz harnesses for felix-wire, as plain library functions: the
//! cargo-fuzz targets in `fuzz_targets/` call them, and `cargo test`
//! replays every committed corpus file and crash reproducer through them on
//! stable Rust (see `tests` below and README.md).
//!
//! Each harness checks properties, not just "no panic":
//! - [`frame_stream`]: bytes split into arbitrary pieces decode exactly as
//!   the whole buffer does, and every decoded frame re-encodes stably;
//! - [`binary_payload`]: an accepted binary payload re-encodes to the very
//!   same bytes (binary encodings are canonical);
//! - [`json_message`]: an accepted JSON message re-encodes, and decoding
//!   that gives the same message;
//! - [`roundtrip`]: an arbitrary frame survives encode -> decode;
//! - [`differential`]: the generated codec and the run-time spec
//!   interpreter agree on accept/reject and on the decoded value;
//! - [`broker_session`]: the sans-IO broker core under any frame sequence
//!   answers every acked publish exactly once, never writes on a
//!   publish-only stream, only writes valid frames, and keeps queues bounded.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use felix_broker::core::auth::Authenticator;
use felix_broker::core::pubsub::Subscription;
use felix_broker::core::session::{Now, Output, Role, Session};
use felix_broker::core::{Core, CoreSettings, QueuePolicy};
use felix_wire::{AckMode, DecodeError, ErrorClass, Frame, FrameDecoder, Message};

#[cfg(test)]
mod dictionaries;

/// Payload cap used by the harnesses: large enough for any fuzz input,
/// small enough that a forged length is rejected as too large.
pub const MAX_FRAME_BYTES: u32 = 1 << 20;

/// Decodes every frame of a whole buffer; the error that ended it, if any.
fn decode_all(data: &[u8]) -> (Vec<Frame>, Option<DecodeError>) {
    let mut rest = Bytes::copy_from_slice(data);
    let mut frames = Vec::new();
    while !rest.is_empty() {
        match Frame::decode_with_max(rest.clone(), MAX_FRAME_BYTES) {
            Ok((f, tail)) => {
                frames.push(f);
                rest = tail;
            }
            Err(e) => return (frames, Some(e)),
        }
    }
    (frames, None)
}

/// `frame` as an encoder writes it: decoders accept binary ack text of any
/// length, but every encoder cuts it to `ERROR_TEXT_MAX_BYTES` (the one
/// writer's rule that makes a decoded frame re-encode differently).
fn as_written(frame: &Frame) -> Frame {
    match frame {
        Frame::BinaryPublishAck(ack) => Frame::BinaryPublishAck(felix_wire::BinaryPublishAck {
            message: felix_wire::truncate_utf8(
                &ack.message,
                felix_wire::ERROR_TEXT_MAX_BYTES as usize,
            )
            .to_owned(),
            ..ack.clone()
        }),
        other => other.clone(),
    }
}

fn assert_reencodes(frame: &Frame) {
    let bytes = frame
        .to_bytes()
        .expect("a decoded frame always has a wire form");
    let (again, rest) = Frame::decode(bytes.clone()).expect("our own encoding decodes");
    assert!(rest.is_empty());
    assert_eq!(
        again,
        as_written(frame),
        "decode -> encode -> decode changed the frame"
    );
    assert_eq!(
        again.to_bytes().expect("encode"),
        bytes,
        "encoding is not stable"
    );
}

/// Streaming decoder vs whole-buffer decoder. The first byte seeds the
/// piece sizes.
pub fn frame_stream(data: &[u8]) {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let (whole, whole_err) = decode_all(input);
    let mut decoder = FrameDecoder::with_max_frame_bytes(MAX_FRAME_BYTES);
    let mut buf = BytesMut::new();
    let mut streamed = Vec::new();
    let mut stream_err = None;
    let mut state = u32::from(seed) | 1;
    let mut at = 0;
    'feed: while at < input.len() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let piece = 1 + (state >> 16) as usize % 17;
        let end = (at + piece).min(input.len());
        buf.extend_from_slice(&input[at..end]);
        at = end;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => streamed.push(f),
                Ok(None) => break,
                Err(e) => {
                    stream_err = Some(e);
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(
        streamed, whole,
        "streamed frames differ from whole-buffer frames"
    );
    match (&whole_err, &stream_err) {
        (Some(w), None) => assert!(
            w.is_incomplete(),
            "whole buffer failed with {w} but the stream did not"
        ),
        (Some(w), Some(s)) => assert_eq!(w.class(), s.class(), "whole: {w}; streamed: {s}"),
        (None, Some(s)) => panic!("only the stream failed: {s}"),
        (None, None) => {}
    }
    whole.iter().for_each(assert_reencodes);
}

/// The binary layouts, for [`binary_payload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `0x0001`.
    PublishBatch,
    /// `0x0009`.
    AckedPublishBatch,
    /// `0x0010`.
    PublishAck,
    /// `0x0002` / `0x0022`.
    EventBatch,
    /// `0x0004` / `0x0024`.
    SharedEventBatch,
}

/// One binary payload decoder. For event batches the first byte's low bit
/// selects the offsets variant.
pub fn binary_payload(layout: Layout, data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let offsets = if selector & 1 == 1 {
        felix_wire::EVENT_BATCH_OFFSETS
    } else {
        0
    };
    let flags = match layout {
        Layout::PublishBatch => felix_wire::BINARY_PUBLISH_BATCH,
        Layout::AckedPublishBatch => {
            felix_wire::BINARY_PUBLISH_BATCH | felix_wire::BINARY_PUBLISH_ACKED
        }
        Layout::PublishAck => felix_wire::BINARY_PUBLISH_ACK,
        Layout::EventBatch => felix_wire::BINARY_EVENT_BATCH | offsets,
        Layout::SharedEventBatch => felix_wire::BINARY_EVENT_BATCH_SHARED | offsets,
    };
    if let Ok(frame) = Frame::decode_payload(flags, Bytes::copy_from_slice(payload)) {
        let bytes = frame.to_bytes().expect("a decoded payload has a wire form");
        let written = as_written(&frame);
        if written == frame {
            assert_eq!(
                &bytes[12..],
                payload,
                "binary payloads must re-encode to the same bytes"
            );
        } else {
            // Ack text over the limit: the encoder cuts it, nothing else.
            let (again, _) = Frame::decode(bytes).expect("our own encoding decodes");
            assert_eq!(again, written, "the encoder must cut ack text to 512 bytes");
        }
        assert_eq!(frame.flags(), flags);
    }
}

/// The JSON message decoder.
pub fn json_message(data: &[u8]) {
    if let Ok(message) = Message::decode(data, 12) {
        let mut text = Vec::new();
        message.encode(&mut text);
        assert_eq!(
            text.len(),
            message.encoded_len(),
            "encoded_len disagrees with encode"
        );
        let again = Message::decode(&text, 12).expect("our own JSON decodes");
        assert_eq!(again, message, "JSON round trip changed the message");
    }
}

/// An arbitrary frame survives encode -> decode; the same bytes as a raw
/// frame decode stably.
pub fn roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    if let Ok(frame) = Frame::arbitrary(&mut u) {
        if frame.check().is_ok() {
            let bytes = frame.to_bytes().expect("checked frames encode");
            let (decoded, rest) = Frame::decode(bytes).expect("our own encoding decodes");
            assert!(rest.is_empty());
            assert_eq!(decoded, frame);
        }
    }
    if let Ok((frame, _)) = Frame::decode_with_max(Bytes::copy_from_slice(data), MAX_FRAME_BYTES) {
        assert_reencodes(&frame);
    }
}

fn spec() -> &'static felix_codegen::spec::Spec {
    static SPEC: OnceLock<felix_codegen::spec::Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let text = include_str!("../../spec/felix-wire.yaml");
        felix_codegen::parse_spec("spec/felix-wire.yaml", text)
            .unwrap_or_else(|e| panic!("the spec is invalid: {e}"))
    })
}

const HEADER_CLASSES: &[ErrorClass] = &[
    ErrorClass::Incomplete,
    ErrorClass::BadMagic,
    ErrorClass::BadVersion,
    ErrorClass::UnknownFlags,
    ErrorClass::InvalidFlagCombination,
    ErrorClass::FrameTooLarge,
];

/// The generated codec against the run-time interpreter of the spec.
pub fn differential(data: &[u8]) {
    let codec = Frame::decode_with_max(Bytes::copy_from_slice(data), MAX_FRAME_BYTES)
        .map(|(f, _)| f.to_neutral());
    let interp = felix_codegen::interp_decode::decode(spec(), data, MAX_FRAME_BYTES);
    match (&codec, &interp) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "codec and interpreter decode different values"),
        (Err(e), Err((class, why))) => {
            // Header checks have a fixed order: their classes must agree.
            if HEADER_CLASSES.contains(&e.class())
                || HEADER_CLASSES.iter().any(|c| c.as_str() == *class)
            {
                assert_eq!(e.class().as_str(), *class, "codec: {e}; interpreter: {why}");
            }
        }
        (Ok(v), Err((class, why))) => {
            panic!("the codec accepts {v} but the interpreter rejects it: {class} {why}")
        }
        (Err(e), Ok(v)) => panic!("the interpreter accepts {v} but the codec rejects it: {e}"),
    }
}

/// One step of a broker session scenario.
#[derive(Debug, Arbitrary)]
enum Step {
    /// A well-formed frame on stream `0..4` (0, 1: control; 2, 3: publish-only).
    Frame(u8, Frame),
    /// Arbitrary bytes on a stream (may split frames anywhere).
    Raw(u8, Vec<u8>),
    /// A valid dev auth on a stream.
    Auth(u8, bool),
    /// Time passes (TTLs, lingering batches).
    Wait(u16),
}

/// The request id of an acked publish that must be answered, if `frame` is one.
fn acked_request(frame: &Frame) -> Option<u64> {
    match frame {
        Frame::BinaryAckedPublishBatch(b) => Some(b.request_id),
        Frame::Json(Message::Publish(p)) if p.ack != Some(AckMode::None) => p.request_id,
        Frame::Json(Message::PublishBatch(p)) if p.ack != Some(AckMode::None) => p.request_id,
        _ => None,
    }
}

fn answers(reply: &Frame, request_id: u64) -> bool {
    match reply {
        Frame::BinaryPublishAck(a) => a.request_id == request_id,
        Frame::Json(Message::PublishOk(o)) => o.request_id == request_id,
        Frame::Json(Message::PublishError(e)) => e.request_id == request_id,
        _ => false,
    }
}

/// Arbitrary frames on arbitrary streams into the sans-IO broker core.
pub fn broker_session(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(steps) = u
        .arbitrary_iter::<Step>()
        .map(|it| it.take(64).filter_map(Result::ok).collect::<Vec<_>>())
    else {
        return;
    };
    // Small budgets, so that any input can reach every limit.
    let settings = CoreSettings {
        max_frame_bytes: SESSION_FRAME_CAP,
        replay_capacity: 16,
        replay_capacity_bytes: 2048,
        replay_budget_bytes: 4096,
        queue_budget_bytes: 4096,
        queue_capacity: 4,
        queue_policy: QueuePolicy::DropOld,
        batch_linger: Duration::from_micros(250),
        max_inflight_publish_bytes: 1 << 20,
        cache_capacity_bytes: 1 << 14,
        cache_tenant_capacity_bytes: 1 << 13,
        max_auto_streams_per_tenant: 3,
        max_auto_streams: 4,
        max_name_bytes: 64,
        ..CoreSettings::default()
    };
    let core = Arc::new(Core::new(settings, Authenticator::Dev));
    let roles = [
        Role::Control,
        Role::Control,
        Role::PublishOnly,
        Role::PublishOnly,
    ];
    let mut sessions: Vec<Session> = roles.iter().map(|r| Session::new(*r)).collect();
    let mut decoders: Vec<(FrameDecoder, BytesMut)> = (0..4)
        .map(|_| {
            (
                FrameDecoder::with_max_frame_bytes(SESSION_FRAME_CAP),
                BytesMut::new(),
            )
        })
        .collect();
    let mut subscriptions: Vec<Subscription> = Vec::new();
    let start = Instant::now();
    let mut clock = Duration::ZERO;
    for step in steps {
        let (stream, bytes) = match step {
            Step::Frame(s, f) => match f.to_bytes() {
                Ok(b) => (s, b),
                Err(_) => continue,
            },
            Step::Raw(s, b) => (s, Bytes::from(b)),
            Step::Auth(s, flags) => {
                let auth = felix_wire::Auth {
                    tenant_id: "t1".into(),
                    token: "t".into(),
                    client_flags: flags.then_some(felix_wire::KNOWN_FLAGS),
                };
                (
                    s,
                    Frame::from(Message::from(auth)).to_bytes().expect("encode"),
                )
            }
            Step::Wait(ms) => {
                clock += Duration::from_micros(u64::from(ms) * 10);
                continue;
            }
        };
        let i = usize::from(stream % 4);
        let (decoder, buf) = &mut decoders[i];
        buf.extend_from_slice(&bytes);
        loop {
            let now = Now {
                instant: start + clock,
                unix: 1_700_000_000,
            };
            let (outputs, expected) = match decoder.decode_envelope(buf) {
                Ok(Some(raw)) => {
                    let must_answer = roles[i] == Role::Control
                        && sessions[i].negotiated_flags().is_some()
                        && !sessions[i].is_closed();
                    let expected = Frame::decode_payload(raw.header.flags, raw.payload.clone())
                        .ok()
                        .and_then(|f| acked_request(&f))
                        .filter(|_| must_answer);
                    (
                        sessions[i].on_frame(&core, raw.header.flags, raw.payload, now),
                        expected,
                    )
                }
                Ok(None) => break,
                Err(e) => {
                    buf.clear();
                    (sessions[i].on_framing_error(&core, &e), None)
                }
            };
            let mut sent = Vec::new();
            for o in outputs {
                match o {
                    Output::Send(b) => sent.push(
                        Frame::decode_with_max(b, SESSION_FRAME_CAP)
                            .expect("the broker only writes valid frames within the cap")
                            .0,
                    ),
                    Output::Subscribe(s) => subscriptions.push(s),
                    Output::Timeout(_) => {
                        if let Some(at) = core.pubsub.poll_timeout() {
                            core.pubsub.handle_timeout(at);
                        }
                    }
                    Output::Close | Output::Wait(_) => {}
                    Output::Forward(f) => panic!("an unclustered core forwarded {f:?}"),
                }
            }
            if roles[i] == Role::PublishOnly {
                assert!(
                    sent.is_empty(),
                    "the broker wrote on a publish-only stream: {sent:?}"
                );
            }
            if let Some(request_id) = expected {
                let acks = sent.iter().filter(|f| answers(f, request_id)).count();
                let errors = sent
                    .iter()
                    .filter(|f| matches!(f, Frame::Json(Message::Error(_))))
                    .count();
                assert!(
                    acks == 1 || (acks == 0 && errors == 1),
                    "acked publish {request_id} answered by {sent:?}"
                );
            }
            if sessions[i].is_closed() {
                break;
            }
        }
        for s in &mut subscriptions {
            assert!(
                s.queue.len() <= 4,
                "a subscriber queue grew past its capacity"
            );
            // Replay batches are built lazily: each must fit the cap too.
            if let Some(batch) = s.replay.next_batch() {
                if batch.events > 0 {
                    Frame::decode_with_max(batch.frame, SESSION_FRAME_CAP)
                        .expect("replay batches fit the cap");
                }
            }
        }
        check_budgets(&core, subscriptions.len());
    }
    // Once every subscriber is gone, nothing stays charged.
    drop(subscriptions);
    core.pubsub.unsubscribe_all_for_test();
    core.pubsub.flush_all();
    core.pubsub.unsubscribe_all_for_test();
    assert_eq!(
        core.metrics.queued_bytes.load(Ordering::Relaxed),
        0,
        "queue budget leaked"
    );
}

/// The frame cap of the `broker_session` target's core and decoders.
const SESSION_FRAME_CAP: u32 = 4096;

/// No budget has gone negative (a wrapped gauge) or past its cap.
fn check_budgets(core: &Core, subscriptions: usize) {
    core.pubsub.check_invariants();
    core.cache.check_invariants();
    let settings = &core.settings;
    let queued = core.metrics.queued_bytes.load(Ordering::Relaxed);
    // Past the budget only queues that are keeping up take a batch: at
    // most KEEPING_UP_BATCHES batches (both encodings) per subscriber.
    let batch =
        2 * (SESSION_FRAME_CAP as u64 + 12) * felix_broker::core::pubsub::KEEPING_UP_BATCHES as u64;
    assert!(
        queued <= settings.queue_budget_bytes as u64 + batch * (subscriptions as u64 + 1),
        "queued bytes {queued} past the budget"
    );
    let replay = core.metrics.replay_bytes.load(Ordering::Relaxed);
    assert!(
        replay <= settings.replay_budget_bytes as u64,
        "replay bytes {replay}"
    );
    let cache = core.metrics.cache_bytes.load(Ordering::Relaxed);
    assert!(
        cache <= settings.cache_capacity_bytes as u64,
        "cache bytes {cache}"
    );
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    type Harness = fn(&[u8]);

    const TARGETS: &[(&str, Harness)] = &[
        ("frame_stream", frame_stream),
        ("json_message", json_message),
        ("publish_batch", |d| binary_payload(Layout::PublishBatch, d)),
        ("acked_publish_batch", |d| {
            binary_payload(Layout::AckedPublishBatch, d)
        }),
        ("publish_ack", |d| binary_payload(Layout::PublishAck, d)),
        ("event_batch", |d| binary_payload(Layout::EventBatch, d)),
        ("shared_event_batch", |d| {
            binary_payload(Layout::SharedEventBatch, d)
        }),
        ("roundtrip", roundtrip),
        ("differential", differential),
        ("broker_session", broker_session),
    ];

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Every committed corpus file and crash reproducer through its
    /// harness; an empty corpus directory fails.
    #[test]
    fn corpora_and_regressions_replay() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut total = 0;
        for (name, harness) in TARGETS {
            let corpus = files(&root.join("corpus").join(name));
            assert!(
                !corpus.is_empty(),
                "fuzz/corpus/{name} is empty: seed it (see fuzz/README.md)"
            );
            for path in corpus
                .iter()
                .chain(files(&root.join("regressions").join(name)).iter())
            {
                let data = std::fs::read(path).expect("read corpus file");
                let result = std::panic::catch_unwind(|| harness(&data));
                assert!(result.is_ok(), "{name}: {} fails", path.display());
                total += 1;
            }
        }
        println!("replayed {total} corpus and regression files");
    }
}

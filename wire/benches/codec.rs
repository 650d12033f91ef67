//! Codec benchmarks: decode and encode of every frame kind, and the JSON
//! codec against `serde_json` on the same structs.
//!
//! Run: `cargo bench -p felix-wire` (figures in docs/benchmarks.md).
//! Each benchmark reports time per frame and bytes per second of frame.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use felix_wire::{
    AckMode, AckStatus, BinaryAckedPublishBatch, BinaryEventBatch, BinaryPublishAck,
    BinaryPublishBatch, BinarySharedEventBatch, CacheGet, CachePut, CursorErrorReason, Frame,
    Message, Publish, StartPosition, Subscribe, SubscribeCursorError,
};
use serde::{Deserialize, Serialize};

fn payloads(count: usize, size: usize) -> Vec<Bytes> {
    (0..count)
        .map(|i| Bytes::from(vec![i as u8; size]))
        .collect()
}

/// Every frame kind, with a name for the report.
fn frames() -> Vec<(&'static str, Frame)> {
    vec![
        (
            "json_publish_64B",
            Frame::from(Message::from(Publish {
                tenant_id: "t1".into(),
                namespace: "default".into(),
                stream: "orders".into(),
                payload: Bytes::from(vec![7u8; 64]),
                request_id: Some(42),
                ack: Some(AckMode::PerMessage),
            })),
        ),
        (
            "json_subscribe",
            Frame::from(Message::from(Subscribe {
                tenant_id: "t1".into(),
                namespace: "default".into(),
                stream: "orders".into(),
                subscription_id: Some(7),
                start: Some(StartPosition::Offset(1024)),
            })),
        ),
        (
            "json_cache_put_256B",
            Frame::from(Message::from(CachePut {
                tenant_id: "t1".into(),
                namespace: "default".into(),
                cache: "sessions".into(),
                key: "user:1234".into(),
                value: Bytes::from(vec![1u8; 256]),
                request_id: Some(9),
                ttl_ms: Some(60_000),
            })),
        ),
        (
            "binary_publish_batch_64x0B",
            Frame::from(BinaryPublishBatch {
                tenant_id: "t1".into(),
                namespace: "default".into(),
                stream: "orders".into(),
                payloads: payloads(64, 0),
            }),
        ),
        (
            "binary_acked_publish_batch_64x1024B",
            Frame::from(BinaryAckedPublishBatch {
                request_id: 1,
                ack_mode: AckMode::PerBatch,
                tenant_id: "t1".into(),
                namespace: "default".into(),
                stream: "orders".into(),
                payloads: payloads(64, 1024),
            }),
        ),
        (
            "binary_publish_ack",
            Frame::from(BinaryPublishAck {
                status: AckStatus::Ok,
                request_id: 1,
                message: String::new(),
            }),
        ),
        (
            "binary_event_batch_64x64B",
            Frame::from(BinaryEventBatch {
                subscription_id: 3,
                base_offset: Some(100),
                payloads: payloads(64, 64),
            }),
        ),
        (
            "binary_shared_event_batch_64x64B",
            Frame::from(BinarySharedEventBatch {
                base_offset: Some(100),
                payloads: payloads(64, 64),
            }),
        ),
        (
            "binary_shared_event_batch_64x4096B",
            Frame::from(BinarySharedEventBatch {
                base_offset: Some(100),
                payloads: payloads(64, 4096),
            }),
        ),
    ]
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, frame) in frames() {
        let bytes = frame.to_bytes().expect("encode");
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
            b.iter(|| Frame::decode(black_box(bytes.clone())).expect("decode"))
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for (name, frame) in frames() {
        let len = frame.to_bytes().expect("encode").len();
        g.throughput(Throughput::Bytes(len as u64));
        let mut buf = BytesMut::with_capacity(len);
        g.bench_with_input(BenchmarkId::from_parameter(name), &frame, |b, frame| {
            b.iter(|| {
                buf.clear();
                black_box(frame).encode(&mut buf).expect("encode");
            })
        });
    }
    g.finish();
}

/// The same control messages as plain serde structs: what a codec built on
/// `#[derive(Serialize, Deserialize)]` + serde_json would do.
#[derive(Serialize, Deserialize)]
struct SerdeCacheGet {
    #[serde(rename = "type")]
    ty: String,
    tenant_id: String,
    namespace: String,
    cache: String,
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct SerdeCursorError {
    #[serde(rename = "type")]
    ty: String,
    reason: String,
    requested: u64,
    available: u64,
}

fn versus_serde_json(c: &mut Criterion) {
    let get = Message::from(CacheGet {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        cache: "sessions".into(),
        key: "user:1234".into(),
        request_id: Some(11),
    });
    let cursor = Message::from(SubscribeCursorError {
        reason: CursorErrorReason::TooOld,
        requested: 3,
        available: 1024,
    });
    let mut g = c.benchmark_group("json_vs_serde_json");
    for (name, msg) in [("cache_get", get), ("subscribe_cursor_error", cursor)] {
        let mut text = Vec::new();
        msg.encode(&mut text);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("felix_wire_decode", name),
            &text,
            |b, t| b.iter(|| Message::decode(black_box(t), 12).expect("decode")),
        );
        let mut out = Vec::with_capacity(256);
        g.bench_with_input(BenchmarkId::new("felix_wire_encode", name), &msg, |b, m| {
            b.iter(|| {
                out.clear();
                black_box(m).encode(&mut out);
            })
        });
        match name {
            "cache_get" => {
                g.bench_with_input(
                    BenchmarkId::new("serde_json_decode", name),
                    &text,
                    |b, t| {
                        b.iter(|| {
                            serde_json::from_slice::<SerdeCacheGet>(black_box(t)).expect("serde")
                        })
                    },
                );
                let s: SerdeCacheGet = serde_json::from_slice(&text).expect("serde");
                g.bench_with_input(BenchmarkId::new("serde_json_encode", name), &s, |b, s| {
                    b.iter(|| {
                        out.clear();
                        serde_json::to_writer(&mut out, black_box(s)).expect("serde")
                    })
                });
            }
            _ => {
                g.bench_with_input(
                    BenchmarkId::new("serde_json_decode", name),
                    &text,
                    |b, t| {
                        b.iter(|| {
                            serde_json::from_slice::<SerdeCursorError>(black_box(t)).expect("serde")
                        })
                    },
                );
                let s: SerdeCursorError = serde_json::from_slice(&text).expect("serde");
                g.bench_with_input(BenchmarkId::new("serde_json_encode", name), &s, |b, s| {
                    b.iter(|| {
                        out.clear();
                        serde_json::to_writer(&mut out, black_box(s)).expect("serde")
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, decode, encode, versus_serde_json);
criterion_main!(benches);

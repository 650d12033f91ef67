//! The broker over real QUIC on loopback, driven by a scripted raw peer:
//! the session model, fanout, start positions, cache, bad input, ALPN,
//! slow consumers and graceful shutdown.

mod support;

use std::time::Duration;

use bytes::Bytes;
use felix_broker::core::auth::{Authenticator, TokenEntry, TokensFile};
use felix_broker::core::QueuePolicy;
use felix_wire::{
    AckMode, AckStatus, Auth, BinaryAckedPublishBatch, BinaryPublishAck, BinaryPublishBatch,
    CacheGet, CachePut, CursorErrorReason, Frame, Message, OkMessage, Publish, PublishOk,
    StartPosition, Subscribe,
};
use support::*;

fn publish(stream: &str, payload: &str, request_id: Option<u64>, ack: Option<AckMode>) -> Message {
    Message::from(Publish {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: stream.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        request_id,
        ack,
    })
}

fn subscribe(stream: &str, id: u64, start: StartPosition) -> Message {
    Message::from(Subscribe {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: stream.into(),
        subscription_id: Some(id),
        start: Some(start),
    })
}

/// Subscribes on a fresh control stream and returns the event reader once
/// `subscribed` has arrived.
async fn subscribed(peer: &Peer, stream: &str, id: u64, start: StartPosition) -> Reader {
    let mut c = peer.control("t1").await;
    c.send(subscribe(stream, id, start)).await;
    c.finish();
    let (hello_id, events) = peer.accept_events().await;
    assert_eq!(hello_id, id);
    assert_eq!(
        c.recv().await,
        Frame::Json(Message::Subscribed(felix_wire::Subscribed {
            subscription_id: id
        }))
    );
    c.reader.expect_end().await;
    events
}

/// Reads batches until `n` events arrived; returns (offset, payload) pairs.
async fn read_events(r: &mut Reader, n: usize) -> Vec<(Option<u64>, Bytes)> {
    let mut out = Vec::new();
    while out.len() < n {
        let (base, payloads) = events(&r.recv().await);
        for (i, p) in payloads.into_iter().enumerate() {
            out.push((base.map(|b| b + i as u64), p));
        }
    }
    out
}

#[tokio::test]
async fn auth_reply_follows_client_flags_per_stream() {
    let b = start(settings(), Authenticator::Dev).await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    peer.control("t1").await; // auth_ok checked inside
    let mut c = peer.open().await;
    c.send(Message::from(Auth {
        tenant_id: "t1".into(),
        token: "x".into(),
        client_flags: None,
    }))
    .await;
    assert_eq!(c.recv().await, Frame::Json(Message::Ok(OkMessage {})));
    let mut unauth = peer.open().await;
    unauth.send(publish("orders", "x", Some(1), None)).await;
    assert_eq!(error_text(&unauth.recv().await), "auth required");
    unauth.reader.expect_end().await;
}

#[tokio::test]
async fn pubsub_fanout_to_ten_subscribers_in_order_acked_and_unacked() {
    let b = start(settings(), Authenticator::Dev).await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let mut readers = Vec::new();
    for id in 1..=10 {
        readers.push(subscribed(&peer, "orders", id, StartPosition::Latest).await);
    }
    let mut c = peer.control("t1").await;
    // Acked JSON (ack absent means acked), then acked binary, then unacked binary.
    for i in 0..5 {
        c.send(publish("orders", &format!("json-{i}"), Some(i), None))
            .await;
        assert_eq!(
            c.recv().await,
            Frame::Json(Message::PublishOk(PublishOk { request_id: i }))
        );
    }
    c.send(BinaryAckedPublishBatch {
        request_id: 100,
        ack_mode: AckMode::PerBatch,
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: "orders".into(),
        payloads: (5..10).map(|i| Bytes::from(format!("bin-{i}"))).collect(),
    })
    .await;
    assert_eq!(
        c.recv().await,
        Frame::BinaryPublishAck(BinaryPublishAck {
            status: AckStatus::Ok,
            request_id: 100,
            message: String::new()
        })
    );
    let (uni_send, _) = (peer.conn.open_uni().await.expect("uni"), ());
    let mut uni = uni_send;
    let auth = Frame::from(Message::from(Auth {
        tenant_id: "t1".into(),
        token: "x".into(),
        client_flags: None,
    }))
    .to_bytes()
    .expect("encode");
    uni.write_all(&auth).await.expect("write");
    let batch = Frame::from(BinaryPublishBatch {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: "orders".into(),
        payloads: (10..20).map(|i| Bytes::from(format!("uni-{i}"))).collect(),
    });
    uni.write_all(&batch.to_bytes().expect("encode"))
        .await
        .expect("write");
    uni.finish().expect("finish");
    for r in &mut readers {
        let got = read_events(r, 20).await;
        let offsets: Vec<u64> = got
            .iter()
            .map(|(o, _)| o.expect("offsets negotiated"))
            .collect();
        assert_eq!(offsets, (0..20).collect::<Vec<u64>>());
        assert_eq!(got[0].1, Bytes::from("json-0"));
        assert_eq!(got[19].1, Bytes::from("uni-19"));
    }
}

#[tokio::test]
async fn start_positions_replay_history_then_live_and_cursor_errors() {
    let mut s = settings();
    s.replay_capacity = 8;
    let b = start(s, Authenticator::Dev).await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let mut c = peer.control("t1").await;
    for i in 0..10 {
        c.send(publish(
            "hist",
            &i.to_string(),
            Some(i),
            Some(AckMode::PerMessage),
        ))
        .await;
        c.recv().await;
    }
    // Ring keeps offsets 2..10.
    let mut early = subscribed(&peer, "hist", 1, StartPosition::Earliest).await;
    let first = early.recv().await;
    assert!(
        matches!(first, Frame::BinaryEventBatch(ref e) if e.subscription_id == 1),
        "history uses 0x0002: {first:?}"
    );
    let (base, payloads) = events(&first);
    assert_eq!((base, payloads.len()), (Some(2), 8));
    let mut from5 = subscribed(&peer, "hist", 2, StartPosition::Offset(5)).await;
    assert_eq!(events(&from5.recv().await).0, Some(5));
    c.send(publish("hist", "live", Some(99), None)).await;
    c.recv().await;
    let live = early.recv().await;
    assert!(
        matches!(live, Frame::BinarySharedEventBatch(_)),
        "live uses 0x0004/0x0024"
    );
    assert_eq!(events(&live), (Some(10), vec![Bytes::from("live")]));
    assert_eq!(events(&from5.recv().await).0, Some(10));
    for (start, reason, available) in [
        (StartPosition::Offset(1), CursorErrorReason::TooOld, 3),
        (StartPosition::Offset(12), CursorErrorReason::InFuture, 11),
    ] {
        let mut c2 = peer.control("t1").await;
        c2.send(subscribe("hist", 9, start)).await;
        c2.finish();
        match c2.recv().await {
            Frame::Json(Message::SubscribeCursorError(e)) => {
                assert_eq!((e.reason, e.available), (reason, available))
            }
            other => panic!("{other:?}"),
        }
        c2.reader.expect_end().await;
    }
}

#[tokio::test]
async fn cache_hit_miss_ttl_mux_and_one_shot_forms() {
    let b = start(settings(), Authenticator::Dev).await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let mut c = peer.control("t1").await;
    let put = |key: &str, request_id: Option<u64>, ttl_ms: Option<u64>| {
        Message::from(CachePut {
            tenant_id: "t1".into(),
            namespace: "default".into(),
            cache: "sessions".into(),
            key: key.into(),
            value: Bytes::from(format!("v-{key}")),
            request_id,
            ttl_ms,
        })
    };
    let get = |key: &str, request_id: Option<u64>| {
        Message::from(CacheGet {
            tenant_id: "t1".into(),
            namespace: "default".into(),
            cache: "sessions".into(),
            key: key.into(),
            request_id,
        })
    };
    // Several requests in flight on one stream; replies in order, ids echoed.
    c.send(put("a", Some(1), None)).await;
    c.send(put("b", Some(2), Some(100))).await;
    c.send(get("a", Some(3))).await;
    c.send(get("nope", Some(4))).await;
    let replies: Vec<Frame> = vec![
        c.recv().await,
        c.recv().await,
        c.recv().await,
        c.recv().await,
    ];
    assert!(matches!(&replies[0], Frame::Json(Message::CacheOk(o)) if o.request_id == 1));
    assert!(matches!(&replies[1], Frame::Json(Message::CacheOk(o)) if o.request_id == 2));
    assert!(
        matches!(&replies[2], Frame::Json(Message::CacheValue(v)) if v.request_id == Some(3) && v.value.as_deref() == Some(&b"v-a"[..]))
    );
    assert!(
        matches!(&replies[3], Frame::Json(Message::CacheValue(v)) if v.request_id == Some(4) && v.value.is_none())
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.send(get("b", Some(5))).await;
    assert!(
        matches!(c.recv().await, Frame::Json(Message::CacheValue(v)) if v.value.is_none()),
        "ttl expired"
    );
    // One-shot put: `ok`, then the stream ends.
    let mut one = peer.control("t1").await;
    one.send(put("c", None, Some(0))).await;
    assert_eq!(one.recv().await, Frame::Json(Message::Ok(OkMessage {})));
    one.reader.expect_end().await;
    let mut one = peer.control("t1").await;
    one.send(get("c", None)).await;
    assert!(
        matches!(one.recv().await, Frame::Json(Message::CacheValue(v)) if v.value.is_none() && v.request_id.is_none()),
        "ttl 0 expires at once"
    );
    one.reader.expect_end().await;
}

#[tokio::test]
async fn malformed_frames_are_answered_and_the_connection_keeps_serving() {
    let b = start(settings(), Authenticator::Dev).await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bad magic",
            b"FLX2\x00\x01\x00\x00\x00\x00\x00\x00".to_vec(),
            "header.magic",
        ),
        (
            "bad version",
            b"FLX1\x00\x02\x00\x00\x00\x00\x00\x00".to_vec(),
            "header.version",
        ),
        (
            "oversize",
            b"FLX1\x00\x01\x00\x00\x01\x00\x00\x01".to_vec(),
            "header.length",
        ),
        (
            "bad json",
            b"FLX1\x00\x01\x00\x00\x00\x00\x00\x01{".to_vec(),
            "invalid frame",
        ),
        (
            "forged count",
            [
                &b"FLX1\x00\x01\x00\x04\x00\x00\x00\x04"[..],
                b"\xff\xff\xff\xff",
            ]
            .concat(),
            "count",
        ),
    ];
    for (name, bytes, needle) in cases {
        let mut c = peer.control("t1").await;
        c.send_raw(&bytes).await;
        let text = error_text(&c.recv().await);
        assert!(text.contains(needle), "{name}: {text}");
        c.reader.expect_end().await;
    }
    // Unknown flags: answered, and the stream goes on.
    let mut c = peer.control("t1").await;
    c.send_raw(b"FLX1\x00\x01\x00\x40\x00\x00\x00\x00").await;
    assert_eq!(error_text(&c.recv().await), "unsupported frame flags");
    c.send(publish("orders", "still here", Some(7), None)).await;
    assert_eq!(
        c.recv().await,
        Frame::Json(Message::PublishOk(PublishOk { request_id: 7 }))
    );
    // A broker-only message.
    c.send(Message::from(PublishOk { request_id: 1 })).await;
    assert_eq!(error_text(&c.recv().await), "unexpected message type");
    // The connection is fine.
    assert_eq!(
        b.broker
            .core()
            .metrics
            .frames_malformed
            .load(std::sync::atomic::Ordering::Relaxed),
        7
    );
    let mut again = peer.control("t1").await;
    again.send(publish("orders", "ok", Some(8), None)).await;
    assert_eq!(
        again.recv().await,
        Frame::Json(Message::PublishOk(PublishOk { request_id: 8 }))
    );
}

#[tokio::test]
async fn alpn_offering_client_fails_cleanly_and_the_next_client_connects() {
    let b = start(settings(), Authenticator::Dev).await;
    let bad = Peer::connect_with(
        b.broker.local_addr(),
        client_config(&b.certs, Some(b"felix")),
    )
    .await;
    assert!(bad.is_err(), "a handshake offering ALPN must fail");
    let good = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("next client connects");
    good.control("t1").await;
    assert!(
        b.broker
            .core()
            .metrics
            .handshakes_failed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn auth_failure_tenant_isolation_and_permission_denial() {
    let tokens = Authenticator::tokens(&TokensFile {
        tokens: vec![TokenEntry {
            token: "pub-only".into(),
            tenant: "t1".into(),
            permissions: vec!["stream.publish:stream:t1/default/*".into()],
        }],
    })
    .expect("tokens");
    let mut s = settings();
    s.auto_create = false;
    let b = start(s, tokens).await;
    b.broker
        .core()
        .pubsub
        .declare(felix_broker::core::pubsub::StreamKey {
            tenant: "t1".into(),
            namespace: "default".into(),
            stream: "orders".into(),
        });
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let mut wrong = peer.open().await;
    wrong
        .send(Message::from(Auth {
            tenant_id: "t1".into(),
            token: "nope".into(),
            client_flags: None,
        }))
        .await;
    assert_eq!(error_text(&wrong.recv().await), "auth failed");
    wrong.reader.expect_end().await;
    let mut other = peer.open().await;
    other
        .send(Message::from(Auth {
            tenant_id: "t2".into(),
            token: "pub-only".into(),
            client_flags: None,
        }))
        .await;
    assert_eq!(error_text(&other.recv().await), "tenant mismatch");
    let mut c = peer.open().await;
    c.send(Message::from(Auth {
        tenant_id: "t1".into(),
        token: "pub-only".into(),
        client_flags: None,
    }))
    .await;
    assert_eq!(c.recv().await, Frame::Json(Message::Ok(OkMessage {})));
    c.send(publish("orders", "x", Some(1), None)).await;
    assert!(matches!(c.recv().await, Frame::Json(Message::PublishOk(_))));
    c.send(publish("undeclared", "x", Some(2), None)).await;
    assert!(
        matches!(c.recv().await, Frame::Json(Message::PublishError(e)) if e.message.contains("stream not found"))
    );
    c.send(Message::from(CacheGet {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        cache: "c".into(),
        key: "k".into(),
        request_id: Some(3),
    }))
    .await;
    assert!(error_text(&c.recv().await).starts_with("permission denied: cache.read"));
}

#[tokio::test]
async fn a_stalled_subscriber_does_not_slow_another_and_drops_are_counted() {
    stalled_and_live_subscribers(false).await;
}

/// One event writer serves all subscriptions of a connection: a stream
/// blocked by flow control must not hold back its neighbours.
#[tokio::test]
async fn a_stalled_subscriber_does_not_slow_another_on_the_same_connection() {
    stalled_and_live_subscribers(true).await;
}

async fn stalled_and_live_subscribers(same_connection: bool) {
    let mut s = settings();
    s.queue_capacity = 4;
    s.queue_policy = QueuePolicy::DropNew;
    let b = start(s, Authenticator::Dev).await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let other_peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let stalled_peer = if same_connection { &peer } else { &other_peer };
    let _stalled = subscribed(stalled_peer, "fast", 1, StartPosition::Latest).await; // never read
    let mut live = subscribed(&peer, "fast", 2, StartPosition::Latest).await;
    let mut c = peer.control("t1").await;
    let total = 2000u64;
    let reader = tokio::spawn(async move { read_events(&mut live, total as usize).await.len() });
    for chunk in 0..(total / 100) {
        c.send(BinaryAckedPublishBatch {
            request_id: chunk,
            ack_mode: AckMode::PerBatch,
            tenant_id: "t1".into(),
            namespace: "default".into(),
            stream: "fast".into(),
            payloads: (0..100).map(|_| Bytes::from(vec![0u8; 1024])).collect(),
        })
        .await;
        assert!(matches!(c.recv().await, Frame::BinaryPublishAck(a) if a.status == AckStatus::Ok));
    }
    let got = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("live subscriber keeps up")
        .expect("join");
    assert_eq!(got as u64, total);
    let m = &b.broker.core().metrics;
    let dropped = m.dropped_events.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        dropped > 0,
        "the stalled subscriber's queue overflowed and drops were counted"
    );
}

#[tokio::test]
async fn graceful_shutdown_delivers_acked_work_then_closes() {
    let mut s = settings();
    s.batch_linger = Duration::from_millis(200); // acked events still pending at shutdown
    let b = start(s, Authenticator::Dev).await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let mut events_reader = subscribed(&peer, "drain", 1, StartPosition::Latest).await;
    let mut c = peer.control("t1").await;
    for i in 0..50 {
        c.send(publish("drain", &i.to_string(), Some(i), None))
            .await;
        c.recv().await;
    }
    let reader = tokio::spawn(async move {
        let got = read_events(&mut events_reader, 50).await;
        events_reader.expect_end().await;
        got.len()
    });
    b.broker.shutdown().await;
    assert_eq!(
        reader.await.expect("join"),
        50,
        "every acked publish reached the subscriber before the stream ended"
    );
}

#[tokio::test]
async fn limits_are_answered_with_clear_errors_and_the_broker_keeps_serving() {
    let mut s = settings();
    s.max_subscriptions_per_connection = 1;
    let b = start_with(s, Authenticator::Dev, |l| {
        l.max_connections = 1;
        l.max_frame_bytes = 200;
    })
    .await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("first connection");
    // Connection limit: the second connection is closed with a reason.
    let second = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("handshake completes");
    let reason = tokio::time::timeout(TIMEOUT, second.conn.closed())
        .await
        .expect("closed in time");
    assert!(
        reason.to_string().contains("connection limit reached"),
        "{reason}"
    );
    // Frame size limit.
    let mut c = peer.control("t1").await;
    c.send(publish("orders", &"x".repeat(300), Some(1), None))
        .await;
    let text = error_text(&c.recv().await);
    assert!(text.contains("exceeds the frame cap of 200"), "{text}");
    // Subscription limit per connection.
    let _first = subscribed(&peer, "orders", 1, StartPosition::Latest).await;
    let mut c = peer.control("t1").await;
    c.send(subscribe("orders", 2, StartPosition::Latest)).await;
    c.finish();
    // The event stream may open before the limit check refuses it; only the reply matters.
    assert!(error_text(&c.recv().await).contains("subscription limit reached"));
    // Still serving.
    let mut c = peer.control("t1").await;
    c.send(publish("orders", "ok", Some(2), None)).await;
    assert_eq!(
        c.recv().await,
        Frame::Json(Message::PublishOk(PublishOk { request_id: 2 }))
    );
}

#[tokio::test]
async fn metrics_and_health_endpoints_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = start(settings(), Authenticator::Dev).await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let mut c = peer.control("t1").await;
    c.send(publish("m", "x", Some(1), None)).await;
    c.recv().await;
    let (addr, _task) = felix_broker::http::serve(
        "127.0.0.1:0".parse().expect("addr"),
        b.broker.core().clone(),
    )
    .await
    .expect("bind");
    let get = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut body = String::new();
        s.read_to_string(&mut body).await.expect("read");
        body
    };
    let metrics = get("/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    assert!(
        metrics.contains("felix_published_events_total 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("felix_connections_open 1\n"), "{metrics}");
    assert!(get("/healthz").await.ends_with("\r\n\r\nok\n"));
    assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn a_client_leaving_never_ends_another_clients_subscription_with_the_same_id() {
    let b = start(settings(), Authenticator::Dev).await;
    let staying = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let leaving = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    // Both clients number their subscriptions from 1.
    let mut stays = subscribed(&staying, "shared", 1, StartPosition::Latest).await;
    let _leaves = subscribed(&leaving, "shared", 1, StartPosition::Latest).await;
    leaving.conn.close(0u32.into(), b"bye");
    assert_eq!(b.wait_for_subscribers("shared", 1).await, 1);
    let mut c = staying.control("t1").await;
    c.send(publish("shared", "after", Some(1), None)).await;
    assert_eq!(
        c.recv().await,
        Frame::Json(Message::PublishOk(PublishOk { request_id: 1 }))
    );
    let events = tokio::time::timeout(Duration::from_secs(5), read_events(&mut stays, 1))
        .await
        .expect("the staying client's subscription still delivers");
    assert_eq!(events[0].1, Bytes::from_static(b"after"));
}

/// Shards: two threads with their own endpoint on one port. Connections
/// land on either; a publish on one fans out to subscribers on both, in
/// order, and the drain ends every subscriber's stream cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_broker_fans_out_across_shards_and_drains() {
    let mut config = felix_broker::embedded::EmbeddedConfig {
        core: settings(),
        shards: felix_broker::quic::Shards {
            count: 2,
            busy_poll: false,
        },
        ..Default::default()
    };
    config.limits.max_connections_per_source = 100;
    let broker = config.start().expect("start");
    let certs = broker.certificates().to_vec();
    let addr = broker.local_addr();
    // 16 connections from 16 ports: both shards get some (all on one
    // would have a chance of 2^-15).
    let mut peers = Vec::new();
    let mut readers = Vec::new();
    for id in 1..=16 {
        let peer = Peer::connect(addr, &certs).await.expect("connect");
        readers.push(subscribed(&peer, "orders", id, StartPosition::Latest).await);
        peers.push(peer);
    }
    let mut c = peers[0].control("t1").await;
    for i in 0..20 {
        c.send(publish("orders", &format!("e{i}"), Some(i), None))
            .await;
        assert_eq!(
            c.recv().await,
            Frame::Json(Message::PublishOk(PublishOk { request_id: i }))
        );
    }
    let want: Vec<Bytes> = (0..20).map(|i| Bytes::from(format!("e{i}"))).collect();
    for r in &mut readers {
        let got: Vec<Bytes> = read_events(r, 20)
            .await
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(got, want);
    }
    tokio::time::timeout(Duration::from_secs(10), broker.shutdown())
        .await
        .expect("the drain finishes");
    for r in &mut readers {
        r.expect_end().await;
    }
}

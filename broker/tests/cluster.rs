//! Cluster mode against real `nats-server` processes on loopback.
//!
//! Each test starts its own server(s) in a temp directory on free ports.
//! Without `nats-server` on the PATH the tests say so and pass
//! (`scripts/test` installs it, so CI always runs them).

mod support;

use std::time::Duration;

use support::nats::NatsServer;

macro_rules! need_nats {
    () => {
        if !NatsServer::available() {
            eprintln!("skipped: nats-server is not installed (scripts/test installs it)");
            return;
        }
    };
}

#[tokio::test]
async fn the_test_helper_starts_jetstream_alone_and_as_a_cluster() {
    need_nats!();
    let single = NatsServer::single();
    single.wait_ready().await;
    let cluster = NatsServer::cluster3();
    cluster.wait_ready().await;
    let client = async_nats::connect(cluster.nodes[0].url())
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client);
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "helper".into(),
            subjects: vec!["helper.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("an R3 stream");
    let ack = js
        .publish("helper.x", "hi".into())
        .await
        .expect("sent")
        .await
        .expect("stored");
    assert_eq!(ack.sequence, 1);
    drop(stream);
    tokio::time::sleep(Duration::from_millis(1)).await;
}

use bytes::Bytes;
use felix_broker::cluster::ClusterSettings;
use felix_broker::core::CoreSettings;
use felix_broker::embedded::{EmbeddedBroker, EmbeddedConfig};
use felix_wire::{CacheGet, CachePut, Frame, Message, Publish, StartPosition, Subscribe};
use support::{events, Peer, Reader};

fn cluster_settings(nats: &NatsServer, replicas: usize) -> ClusterSettings {
    ClusterSettings {
        urls: nats.nodes.iter().map(|n| n.url()).collect(),
        replicas,
        timeout: Duration::from_secs(1),
        ..ClusterSettings::default()
    }
}

async fn node(settings: ClusterSettings) -> (EmbeddedBroker, Peer) {
    let broker = EmbeddedConfig {
        core: CoreSettings {
            batch_linger: Duration::ZERO,
            ..CoreSettings::default()
        },
        ..EmbeddedConfig::default()
    }
    .start_clustered(settings)
    .await
    .expect("a cluster node starts");
    let certs = broker.certificates().to_vec();
    let peer = Peer::connect(broker.local_addr(), &certs)
        .await
        .expect("connect");
    (broker, peer)
}

fn publish(stream: &str, payload: String, request_id: u64) -> Message {
    Message::from(Publish {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: stream.into(),
        payload: Bytes::from(payload),
        request_id: Some(request_id),
        ack: None,
    })
}

/// Publishes `n` acked events `{tag}{i}`; panics on any refusal.
async fn publish_n(peer: &Peer, stream: &str, tag: &str, range: std::ops::Range<u64>) {
    let mut c = peer.control("t1").await;
    for i in range {
        c.send(publish(stream, format!("{tag}{i}"), i)).await;
        match c.recv().await {
            Frame::Json(Message::PublishOk(ok)) => assert_eq!(ok.request_id, i),
            other => panic!("publish {i}: {other:?}"),
        }
    }
}

async fn subscribed(peer: &Peer, stream: &str, id: u64, start: StartPosition) -> Reader {
    let mut c = peer.control("t1").await;
    c.send(Message::from(Subscribe {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: stream.into(),
        subscription_id: Some(id),
        start: Some(start),
    }))
    .await;
    c.finish();
    let (hello, events) = peer.accept_events().await;
    assert_eq!(hello, id);
    match c.recv().await {
        Frame::Json(Message::Subscribed(_)) => events,
        other => panic!("subscribe: {other:?}"),
    }
}

async fn read_events(r: &mut Reader, n: usize) -> Vec<(u64, Bytes)> {
    let mut out = Vec::new();
    while out.len() < n {
        let (base, payloads) = events(&r.recv().await);
        let base = base.expect("offsets negotiated");
        for (i, p) in payloads.into_iter().enumerate() {
            out.push((base + i as u64, p));
        }
    }
    out
}

fn expected(tag: &str, range: std::ops::Range<u64>) -> Vec<(u64, Bytes)> {
    range
        .map(|i| (i, Bytes::from(format!("{tag}{i}"))))
        .collect()
}

#[tokio::test]
async fn published_on_a_reaches_b_and_c_in_order_with_the_same_offsets() {
    need_nats!();
    let nats = NatsServer::single();
    nats.wait_ready().await;
    let (_a, pa) = node(cluster_settings(&nats, 1)).await;
    let (_b, pb) = node(cluster_settings(&nats, 1)).await;
    let (_c, pc) = node(cluster_settings(&nats, 1)).await;
    let mut on_b = subscribed(&pb, "orders", 1, StartPosition::Latest).await;
    let mut on_c = subscribed(&pc, "orders", 2, StartPosition::Latest).await;
    publish_n(&pa, "orders", "e", 0..50).await;
    assert_eq!(read_events(&mut on_b, 50).await, expected("e", 0..50));
    assert_eq!(read_events(&mut on_c, 50).await, expected("e", 0..50));
    // A publisher on B interleaves with A in one order, seen by both.
    publish_n(&pb, "orders", "b", 50..60).await;
    assert_eq!(read_events(&mut on_c, 10).await, expected("b", 50..60));
    assert_eq!(read_events(&mut on_b, 10).await, expected("b", 50..60));
}

#[tokio::test]
async fn a_subscriber_resumes_on_b_from_an_offset_read_on_a() {
    need_nats!();
    let nats = NatsServer::single();
    nats.wait_ready().await;
    let (_a, pa) = node(cluster_settings(&nats, 1)).await;
    let (_b, pb) = node(cluster_settings(&nats, 1)).await;
    publish_n(&pa, "hist", "h", 0..10).await;
    let mut on_a = subscribed(&pa, "hist", 1, StartPosition::Earliest).await;
    let seen = read_events(&mut on_a, 10).await;
    assert_eq!(seen, expected("h", 0..10));
    // "Failing over" after offset 3: resume on B at 4, history then live.
    let mut on_b = subscribed(&pb, "hist", 2, StartPosition::Offset(4)).await;
    assert_eq!(read_events(&mut on_b, 6).await, expected("h", 4..10));
    publish_n(&pa, "hist", "h", 10..15).await;
    assert_eq!(read_events(&mut on_b, 5).await, expected("h", 10..15));
    // A second subscriber on B, now that B's feed runs: history from
    // JetStream below B's ring, then the ring, then live.
    let mut again = subscribed(&pb, "hist", 3, StartPosition::Offset(1)).await;
    publish_n(&pb, "hist", "h", 15..16).await;
    assert_eq!(read_events(&mut again, 15).await, expected("h", 1..16));
    // Starts outside the stream are cursor errors from JetStream's bounds.
    let mut c = pb.control("t1").await;
    c.send(Message::from(Subscribe {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: "hist".into(),
        subscription_id: Some(4),
        start: Some(StartPosition::Offset(99)),
    }))
    .await;
    match c.recv().await {
        Frame::Json(Message::SubscribeCursorError(e)) => {
            assert_eq!((e.requested, e.available), (99, 16));
        }
        other => panic!("expected in_future: {other:?}"),
    }
}

fn cache_put(key: &str, value: &str, ttl_ms: Option<u64>, request_id: u64) -> Message {
    Message::from(CachePut {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        cache: "sessions".into(),
        key: key.into(),
        value: Bytes::from(value.to_string()),
        request_id: Some(request_id),
        ttl_ms,
    })
}

async fn cache_get(peer: &Peer, key: &str) -> Option<Bytes> {
    let mut c = peer.control("t1").await;
    c.send(Message::from(CacheGet {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        cache: "sessions".into(),
        key: key.into(),
        request_id: Some(1),
    }))
    .await;
    match c.recv().await {
        Frame::Json(Message::CacheValue(v)) => v.value,
        other => panic!("cache get: {other:?}"),
    }
}

#[tokio::test]
async fn a_cache_put_on_a_is_read_on_b_and_expires_everywhere() {
    need_nats!();
    let nats = NatsServer::single();
    nats.wait_ready().await;
    let (_a, pa) = node(cluster_settings(&nats, 1)).await;
    let (_b, pb) = node(cluster_settings(&nats, 1)).await;
    let mut c = pa.control("t1").await;
    c.send(cache_put("k", "forever", None, 1)).await;
    assert!(matches!(c.recv().await, Frame::Json(Message::CacheOk(_))));
    c.send(cache_put("short", "brief", Some(300), 2)).await;
    assert!(matches!(c.recv().await, Frame::Json(Message::CacheOk(_))));
    // A hostile key is just a key.
    c.send(cache_put("a.*.>", "odd", None, 3)).await;
    assert!(matches!(c.recv().await, Frame::Json(Message::CacheOk(_))));
    assert_eq!(cache_get(&pb, "k").await.as_deref(), Some(&b"forever"[..]));
    assert_eq!(
        cache_get(&pb, "short").await.as_deref(),
        Some(&b"brief"[..])
    );
    assert_eq!(cache_get(&pb, "a.*.>").await.as_deref(), Some(&b"odd"[..]));
    assert_eq!(cache_get(&pb, "a").await, None);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(cache_get(&pa, "short").await, None);
    assert_eq!(cache_get(&pb, "short").await, None);
    assert_eq!(cache_get(&pa, "k").await.as_deref(), Some(&b"forever"[..]));
}

#[tokio::test]
async fn nats_down_means_clear_errors_then_the_node_recovers_by_itself() {
    need_nats!();
    let mut nats = NatsServer::single();
    nats.wait_ready().await;
    let (a, pa) = node(cluster_settings(&nats, 1)).await;
    publish_n(&pa, "up", "u", 0..3).await;
    nats.nodes[0].kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = pa.control("t1").await;
    c.send(publish("up", "lost?".into(), 7)).await;
    match c.recv().await {
        Frame::Json(Message::PublishError(e)) => {
            assert_eq!(e.request_id, 7);
            assert!(
                e.message.starts_with("cluster unavailable"),
                "{}",
                e.message
            );
        }
        other => panic!("expected a publish error: {other:?}"),
    }
    c.send(cache_put("k", "v", None, 8)).await;
    let text = support::error_text(&c.recv().await);
    assert!(text.starts_with("cluster unavailable"), "{text}");
    let failures = a
        .core()
        .metrics
        .cluster_failures
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(failures >= 2, "{failures}");
    nats.nodes[0].restart();
    nats.wait_ready().await;
    // The client reconnects with backoff: give it a few seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut c = pa.control("t1").await;
    let mut request_id = 100;
    loop {
        c.send(publish("up", "back".into(), request_id)).await;
        match c.recv().await {
            Frame::Json(Message::PublishOk(_)) => break,
            Frame::Json(Message::PublishError(e)) => {
                assert!(std::time::Instant::now() < deadline, "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        request_id += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut r = subscribed(&pa, "up", 1, StartPosition::Earliest).await;
    let seen = read_events(&mut r, 4).await;
    assert_eq!(&seen[..3], &expected("u", 0..3)[..]);
    assert_eq!(seen[3], (3, Bytes::from("back")));
}

/// Names of the consumers NATS holds on the JetStream stream behind felix
/// stream `t1/default/{stream}` (the raw `$JS.API.CONSUMER.NAMES` reply).
async fn consumers_on(nats: &NatsServer, stream: &str) -> Vec<String> {
    let key = felix_broker::core::pubsub::StreamKey {
        tenant: "t1".into(),
        namespace: "default".into(),
        stream: stream.into(),
    };
    let name = felix_broker::cluster::names::jetstream_stream_name("felix", &key);
    let nc = async_nats::connect(nats.nodes[0].url())
        .await
        .expect("connect to NATS");
    let reply = nc
        .request(format!("$JS.API.CONSUMER.NAMES.{name}"), "".into())
        .await
        .expect("consumer names");
    let v: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
    assert!(v.get("error").is_none(), "{v}");
    v["consumers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (up to 10 s) for `n` consumers on `stream`; returns the last list.
async fn wait_for_consumers(nats: &NatsServer, stream: &str, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let names = consumers_on(nats, stream).await;
        if names.len() == n || std::time::Instant::now() >= deadline {
            return names;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn feeds_of(broker: &EmbeddedBroker) -> u64 {
    broker
        .core()
        .metrics
        .cluster_feeds
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn a_feed_stops_when_its_last_local_subscriber_leaves_and_restarts_on_the_next() {
    need_nats!();
    let nats = NatsServer::single();
    nats.wait_ready().await;
    let (_a, pa) = node(cluster_settings(&nats, 1)).await;
    let (b, pb) = node(cluster_settings(&nats, 1)).await;

    // Two subscribers on B share B's one feed: one consumer on NATS.
    let mut first = subscribed(&pb, "lively", 1, StartPosition::Latest).await;
    let mut second = subscribed(&pb, "lively", 2, StartPosition::Latest).await;
    assert_eq!(consumers_on(&nats, "lively").await.len(), 1);
    assert_eq!(feeds_of(&b), 1);
    publish_n(&pa, "lively", "l", 0..3).await;
    assert_eq!(read_events(&mut first, 3).await, expected("l", 0..3));
    assert_eq!(read_events(&mut second, 3).await, expected("l", 0..3));

    // Both leave (their connection closes): the feed stops and its
    // consumer is deleted on NATS.
    pb.conn.close(0u32.into(), b"bye");
    drop((first, second));
    let left = wait_for_consumers(&nats, "lively", 0).await;
    assert!(left.is_empty(), "consumers left on NATS: {left:?}");
    assert_eq!(feeds_of(&b), 0);
    let subscribers = b
        .core()
        .metrics
        .subscribers
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(subscribers, 0, "the subscribers gauge is back to 0");

    // Published while nobody on B listens: stored in JetStream only.
    publish_n(&pa, "lively", "l", 3..6).await;

    // The next subscriber on B restarts the feed: history from JetStream
    // (the events B's old feed read and those it never saw), then live.
    let pb2 = Peer::connect(b.local_addr(), b.certificates())
        .await
        .expect("connect again");
    let mut again = subscribed(&pb2, "lively", 3, StartPosition::Offset(1)).await;
    assert_eq!(feeds_of(&b), 1);
    publish_n(&pa, "lively", "l", 6..8).await;
    assert_eq!(read_events(&mut again, 7).await, expected("l", 1..8));
    // Only the feed's consumer stays: the history reader's is deleted once
    // the history is sent.
    let names = wait_for_consumers(&nats, "lively", 1).await;
    assert_eq!(names.len(), 1, "{names:?}");
}

#[tokio::test]
async fn pipelined_publishes_are_acked_in_order_and_stored_in_order() {
    need_nats!();
    let nats = NatsServer::single();
    nats.wait_ready().await;
    let (_a, pa) = node(cluster_settings(&nats, 1)).await;
    let (_b, pb) = node(cluster_settings(&nats, 1)).await;
    let mut on_b = subscribed(&pb, "piped", 1, StartPosition::Latest).await;
    // Everything written before any reply is read: the node sends these
    // publishes to JetStream before it awaits their acks, and a cache put
    // in the middle is answered in its place.
    let mut c = pa.control("t1").await;
    let mut frames = Vec::new();
    for i in 0..20u64 {
        frames.extend(
            Frame::Json(publish("piped", format!("p{i}"), i))
                .to_bytes()
                .expect("encode"),
        );
        if i == 9 {
            frames.extend(
                Frame::Json(cache_put("mid", "v", None, 1000))
                    .to_bytes()
                    .expect("encode"),
            );
        }
    }
    c.send_raw(&frames).await;
    for i in 0..20u64 {
        match c.recv().await {
            Frame::Json(Message::PublishOk(ok)) => assert_eq!(ok.request_id, i),
            other => panic!("reply {i}: {other:?}"),
        }
        if i == 9 {
            match c.recv().await {
                Frame::Json(Message::CacheOk(ok)) => assert_eq!(ok.request_id, 1000),
                other => panic!("the cache put's reply, after publish 9's: {other:?}"),
            }
        }
    }
    assert_eq!(read_events(&mut on_b, 20).await, expected("p", 0..20));
}

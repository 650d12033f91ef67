//! Reliability under abuse, in the short forms CI runs: failed handshakes of
//! every kind while a legitimate client works, hostile frames and abandoned
//! streams with memory measured, and slow, stalled and vanished consumers
//! with every event accounted for.

mod support;

use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use felix_broker::core::auth::Authenticator;
use felix_broker::core::{CoreSettings, QueuePolicy};
use felix_wire::vectors::{self, Expect};
use felix_wire::{
    AckMode, AckStatus, BinaryAckedPublishBatch, BinaryPublishBatch, Frame, Message, PublishOk,
    StartPosition, Subscribe,
};
use support::*;

/// The tests here measure process RSS and throughput: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `FELIX_LONG=1` runs the long forms (1,000 failed handshakes, 10,000
/// abandoned streams, 40,000 events past slow consumers) used for the
/// figures in the closing notes.
fn scale(short: u32, long: u32) -> u32 {
    if std::env::var_os("FELIX_LONG").is_some() {
        long
    } else {
        short
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn batch(stream: &str, request_id: u64, n: usize, size: usize) -> BinaryAckedPublishBatch {
    BinaryAckedPublishBatch {
        request_id,
        ack_mode: AckMode::PerBatch,
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: stream.into(),
        payloads: (0..n)
            .map(|i| Bytes::from(format!("{request_id}-{i}-{}", "x".repeat(size))))
            .collect(),
    }
}

async fn subscribe(peer: &Peer, stream: &str, id: u64) -> Reader {
    let mut c = peer.control("t1").await;
    c.send(Message::from(Subscribe {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: stream.into(),
        subscription_id: Some(id),
        start: Some(StartPosition::Latest),
    }))
    .await;
    c.finish();
    let (_, r) = peer.accept_events().await;
    c.recv().await;
    r
}

async fn count_events(r: &mut Reader, n: u64) -> u64 {
    let mut got = 0;
    while got < n {
        got += events(&r.recv().await).1.len() as u64;
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshakes_of_every_kind_never_disturb_service() {
    let _serial = SERIAL.lock().await;
    let b = start(settings(), Authenticator::Dev).await;
    let addr = b.broker.local_addr();
    let legit = Peer::connect(addr, &b.certs).await.expect("connect");
    let mut events = subscribe(&legit, "steady", 1).await;
    let mut c = legit.control("t1").await;
    let total_batches = 40u64;
    let publisher = tokio::spawn(async move {
        for i in 0..total_batches {
            c.send(batch("steady", i, 10, 16)).await;
            assert!(
                matches!(c.recv().await, Frame::BinaryPublishAck(a) if a.status == AckStatus::Ok)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let certs = b.certs.clone();
    let abuse = tokio::spawn(async move {
        let garbage = UdpSocket::bind("127.0.0.1:0").expect("udp");
        for i in 0..scale(200, 1000) {
            match i % 4 {
                // A client offering ALPN: the broker refuses the handshake.
                0 => assert!(Peer::connect_with(addr, client_config(&certs, Some(b"h3")))
                    .await
                    .is_err()),
                // Garbage datagrams of every size.
                1 => {
                    let junk: Vec<u8> = (0..(i as usize * 7) % 1300 + 1)
                        .map(|j| (j as u32 * 31 + i) as u8)
                        .collect();
                    garbage.send_to(&junk, addr).expect("send");
                }
                // The wrong server name: the client aborts the handshake.
                2 => {
                    let mut endpoint =
                        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr"))
                            .expect("endpoint");
                    endpoint.set_default_client_config(client_config(&certs, None));
                    let attempt = endpoint
                        .connect(addr, "not-localhost.example")
                        .expect("connect")
                        .await;
                    assert!(attempt.is_err());
                }
                // A client that vanishes mid-handshake.
                _ => {
                    let mut endpoint =
                        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr"))
                            .expect("endpoint");
                    endpoint.set_default_client_config(client_config(&certs, None));
                    let connecting = endpoint.connect(addr, "localhost").expect("connect");
                    let _ = tokio::time::timeout(Duration::from_micros(200), connecting).await;
                    drop(endpoint);
                }
            }
        }
    });
    abuse.await.expect("abuse finished");
    publisher.await.expect("publisher finished");
    assert_eq!(
        count_events(&mut events, total_batches * 10).await,
        total_batches * 10,
        "nothing published was lost"
    );
    // New clients still connect and work.
    let fresh = Peer::connect(addr, &b.certs)
        .await
        .expect("a new client connects after the abuse");
    let mut c = fresh.control("t1").await;
    c.send(Message::from(felix_wire::Publish {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: "after".into(),
        payload: Bytes::new(),
        request_id: Some(1),
        ack: None,
    }))
    .await;
    assert_eq!(
        c.recv().await,
        Frame::Json(Message::PublishOk(PublishOk { request_id: 1 }))
    );
    assert!(
        b.broker
            .core()
            .metrics
            .handshakes_failed
            .load(Ordering::Relaxed)
            >= 50,
        "failed handshakes were counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_and_abandoned_streams_stay_contained() {
    let _serial = SERIAL.lock().await;
    let b = start(settings(), Authenticator::Dev).await;
    let addr = b.broker.local_addr();
    let bystander = Peer::connect(addr, &b.certs).await.expect("connect");
    let mut watch = subscribe(&bystander, "calm", 1).await;
    let hostile = Peer::connect(addr, &b.certs).await.expect("connect");
    let rss_before = rss_kib();
    // Every invalid vector, each on its own authenticated stream.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors");
    let mut invalid = 0;
    for case in vectors::load_dir(&dir).expect("vectors") {
        if matches!(case.expect, Expect::Invalid { .. }) && !case.frame.is_empty() {
            let mut s = hostile.control("t1").await;
            s.send_raw(&case.frame).await;
            s.finish();
            // Answered with an error, or (incomplete input) just ended.
            match s.reader.next().await {
                // A bad body behind a good acked-batch prefix gets an error ack.
                Ok(Some(Frame::Json(Message::Error(_))))
                | Ok(Some(Frame::BinaryPublishAck(_)))
                | Ok(None)
                | Err(_) => {}
                Ok(Some(other)) => panic!("{}: unexpected answer {other:?}", case.id),
            }
            invalid += 1;
        }
    }
    assert!(invalid > 80);
    // A 4 GiB length field and a count of 2^32-1.
    for bytes in [
        &b"FLX1\x00\x01\x00\x00\xff\xff\xff\xff"[..],
        b"FLX1\x00\x01\x00\x04\x00\x00\x00\x04\xff\xff\xff\xff",
    ] {
        let mut s = hostile.control("t1").await;
        s.send_raw(bytes).await;
        assert!(error_text(&s.recv().await).contains("byte"));
    }
    // A valid frame written one byte at a time is still one frame.
    let mut s = hostile.control("t1").await;
    let publish = Frame::from(batch("calm", 7, 3, 4))
        .to_bytes()
        .expect("encode");
    for byte in publish.iter() {
        s.send_raw(&[*byte]).await;
    }
    assert!(
        matches!(s.recv().await, Frame::BinaryPublishAck(a) if a.request_id == 7 && a.status == AckStatus::Ok)
    );
    assert_eq!(count_events(&mut watch, 3).await, 3);
    // Random garbage on fresh streams: answered or ended, never more.
    let mut state = 0x2545_f491_u32;
    for _ in 0..50 {
        let mut s = hostile.control("t1").await;
        let junk: Vec<u8> = (0..(state % 200 + 1))
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        s.send_raw(&junk).await;
        s.finish();
        match s.reader.next().await {
            Ok(Some(Frame::Json(Message::Error(_)))) | Ok(None) | Err(_) => {}
            Ok(Some(other)) => panic!("garbage answered with {other:?}"),
        }
    }
    // Streams opened and abandoned, some mid-frame.
    for i in 0..scale(2000, 10_000) {
        let (mut send, recv) = hostile.conn.open_bi().await.expect("open");
        if i % 2 == 0 {
            let _ = send.write_all(b"FLX1\x00\x01\x00\x00\x00\x00\x10").await;
        }
        drop(send);
        drop(recv);
    }
    // The bystander saw nothing but its own traffic and still works.
    let mut c = bystander.control("t1").await;
    c.send(batch("calm", 8, 2, 4)).await;
    assert!(matches!(c.recv().await, Frame::BinaryPublishAck(a) if a.status == AckStatus::Ok));
    assert_eq!(count_events(&mut watch, 2).await, 2);
    // Every abandoned stream's task ends and frees its state.
    let metrics = &b.broker.core().metrics;
    for _ in 0..200 {
        if metrics.streams_open.load(Ordering::Relaxed) <= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open = metrics.streams_open.load(Ordering::Relaxed);
    assert!(open <= 2, "{open} client streams still held by the broker");
    // RSS covers both peers' QUIC state in this process and what the
    // allocator keeps after frees; it must stay bounded, not flat.
    let grown_mib = rss_kib().saturating_sub(rss_before) / 1024;
    println!("RSS growth over the hostile barrage: {grown_mib} MiB; streams accepted {}, still open {open}", metrics.streams_accepted.load(Ordering::Relaxed));
    assert!(
        grown_mib < u64::from(scale(64, 192)),
        "memory grew by {grown_mib} MiB"
    );
}

/// Runs one policy: a fast reader, a slow reader, a stalled one and one
/// that vanishes; returns (fast subscriber's events per second, per-
/// subscriber (delivered, dropped)).
async fn consumers(policy: QueuePolicy, with_bad_consumers: bool) -> (f64, Vec<(u64, u64)>) {
    let mut s = settings();
    s.queue_capacity = 8;
    s.queue_policy = policy;
    s.queue_block_timeout = Duration::from_millis(100);
    let b = start(s, Authenticator::Dev).await;
    let addr = b.broker.local_addr();
    let fast_peer = Peer::connect(addr, &b.certs).await.expect("connect");
    let mut fast = subscribe(&fast_peer, "load", 1).await;
    let mut extra = Vec::new();
    if with_bad_consumers {
        for id in 2..=4 {
            let p = Peer::connect(addr, &b.certs).await.expect("connect");
            let r = subscribe(&p, "load", id).await;
            extra.push((p, r));
        }
    }
    // Each bad consumer's stream absorbs up to one flow-control window
    // (~1.25 MiB) before it blocks: a one-off cost that the long form
    // (80 MB of events instead of 8) amortises, as a real run would.
    let batches = u64::from(scale(200, 2000));
    let per_batch = 20u64;
    let total = batches * per_batch;
    let fast_reader = tokio::spawn(async move {
        let t0 = std::time::Instant::now();
        let n = count_events(&mut fast, total).await;
        (n, t0.elapsed())
    });
    let mut slow_task = None;
    if with_bad_consumers {
        let (_stalled_peer, _stalled) = extra.remove(0); // never reads
        let (slow_peer, mut slow) = extra.remove(0);
        slow_task = Some(tokio::spawn(async move {
            let _keep = slow_peer;
            while let Ok(Some(_)) = slow.next().await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
        let (vanish_peer, vanish) = extra.remove(0);
        drop(vanish);
        vanish_peer.conn.close(0u32.into(), b""); // disconnects without unsubscribing
        extra.push((_stalled_peer, _stalled));
    }
    let key = felix_broker::core::pubsub::StreamKey {
        tenant: "t1".into(),
        namespace: "default".into(),
        stream: "load".into(),
    };
    let expected_subscribers = if with_bad_consumers { 3 } else { 1 };
    assert_eq!(
        b.wait_for_subscribers("load", expected_subscribers).await,
        expected_subscribers,
        "the vanished subscriber was removed, the others remain"
    );
    let publisher = Peer::connect(addr, &b.certs).await.expect("connect");
    let mut c = publisher.control("t1").await;
    for i in 0..batches {
        c.send(batch("load", i, per_batch as usize, 2048)).await;
        assert!(matches!(c.recv().await, Frame::BinaryPublishAck(a) if a.status == AckStatus::Ok));
    }
    let (n, took) = tokio::time::timeout(Duration::from_secs(30), fast_reader)
        .await
        .expect("fast reader finished")
        .expect("join");
    assert_eq!(n, total);
    if let Some(t) = slow_task {
        t.abort();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = b.broker.core().pubsub.subscriber_stats(&key);
    for (delivered, dropped, queued) in &stats {
        assert_eq!(
            delivered + dropped + queued,
            total,
            "every event delivered, dropped (counted) or still queued"
        );
    }
    (
        total as f64 / took.as_secs_f64(),
        stats.iter().map(|(d, x, _)| (*d, *x)).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_stalled_and_vanished_consumers_do_not_slow_the_others() {
    let _serial = SERIAL.lock().await;
    for policy in [
        QueuePolicy::Block,
        QueuePolicy::DropNew,
        QueuePolicy::DropOld,
    ] {
        let (alone, _) = consumers(policy, false).await;
        let (crowded, stats) = consumers(policy, true).await;
        println!("{policy:?}: fast subscriber {alone:.0} events/s alone, {crowded:.0} with a stalled, a slow and a vanished one; (delivered, dropped) per subscriber: {stats:?}");
        assert!(
            stats.iter().any(|(_, dropped)| *dropped > 0),
            "{policy:?}: the stalled subscriber's drops are counted"
        );
        // Throughput is measured, not asserted: shared CI machines are too noisy
        // for a timing assertion (docs/operations.md has the measured figures).
    }
}

/// The issue a default configuration must not have: an unacked publisher
/// flooding as fast as it can, and a subscriber that keeps up on average
/// (reads as fast as it can) losing most events to drops. Under the default
/// `block` policy it loses none; a subscriber beside it that never reads
/// holds the publisher one `queue_block_timeout`, then is shed (its drops
/// counted) and the flood goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_default_queue_settings_an_unacked_flood_loses_nothing_for_a_subscriber_that_keeps_up(
) {
    let _serial = SERIAL.lock().await;
    let b = start(CoreSettings::default(), Authenticator::Dev).await;
    let addr = b.broker.local_addr();
    let fast_peer = Peer::connect(addr, &b.certs).await.expect("connect");
    let mut fast = subscribe(&fast_peer, "flood", 1).await;
    let stalled_peer = Peer::connect(addr, &b.certs).await.expect("connect");
    let _stalled = subscribe(&stalled_peer, "flood", 2).await; // never read
    assert_eq!(b.wait_for_subscribers("flood", 2).await, 2);
    let batches = u64::from(scale(1500, 15000));
    let per_batch = 64u64;
    let total = batches * per_batch;
    let reader = tokio::spawn(async move { count_events(&mut fast, total).await });
    let publisher = Peer::connect(addr, &b.certs).await.expect("connect");
    let mut c = publisher.control("t1").await;
    for _ in 0..batches {
        c.send(BinaryPublishBatch {
            tenant_id: "t1".into(),
            namespace: "default".into(),
            stream: "flood".into(),
            payloads: vec![Bytes::from(vec![7u8; 256]); per_batch as usize],
        })
        .await;
    }
    let got = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the subscriber that keeps up got every event in time")
        .expect("join");
    assert_eq!(got, total);
    let key = felix_broker::core::pubsub::StreamKey {
        tenant: "t1".into(),
        namespace: "default".into(),
        stream: "flood".into(),
    };
    let stats = b.broker.core().pubsub.subscriber_stats(&key);
    assert_eq!(stats.len(), 2);
    let dropped: Vec<u64> = stats.iter().map(|(_, d, _)| *d).collect();
    assert!(
        dropped.contains(&0),
        "the subscriber that keeps up lost nothing: {stats:?}"
    );
    assert!(
        dropped.iter().any(|d| *d > 0),
        "the stalled one was shed and its drops counted: {stats:?}"
    );
    let metrics = &b.broker.core().metrics;
    assert_eq!(
        metrics.queue_block_timeouts.load(Ordering::Relaxed),
        1,
        "one subscriber marked lagging, once"
    );
    assert_eq!(
        metrics.dropped_events.load(Ordering::Relaxed),
        dropped.iter().sum::<u64>()
    );
}

mod jwt {
    use base64::Engine as _;
    use ed25519_dalek::{Signer, SigningKey};

    pub(crate) fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    pub(crate) fn jwks(key: &SigningKey) -> felix_broker::core::auth::Jwks {
        let x =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        serde_json::from_str(&format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}]}}"#
        ))
        .expect("jwks")
    }

    pub(crate) fn token(
        key: &SigningKey,
        aud: &str,
        exp: u64,
        tid: &str,
        perms: &[&str],
    ) -> String {
        let e = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let head = e(br#"{"alg":"EdDSA","typ":"JWT"}"#);
        let claims = serde_json::json!({"iss": "felix-auth", "aud": aud, "exp": exp, "tid": tid, "perms": perms});
        let body = e(claims.to_string().as_bytes());
        let sig = key.sign(format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", e(&sig.to_bytes()))
    }
}

#[tokio::test]
async fn jwt_tokens_expired_badly_signed_or_for_another_audience_are_refused() {
    let _serial = SERIAL.lock().await;
    let signer = jwt::key(3);
    let verifier = felix_broker::core::auth::JwtVerifier::new(&jwt::jwks(&signer)).expect("jwks");
    let b = start(settings(), Authenticator::Jwt(verifier)).await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let perms = ["stream.publish:stream:t1/default/*"];
    let cases = [
        (
            "expired",
            jwt::token(&signer, "felix-broker", now - 10, "t1", &perms),
            "auth failed",
        ),
        (
            "other audience",
            jwt::token(&signer, "someone-else", now + 600, "t1", &perms),
            "auth failed",
        ),
        (
            "badly signed",
            jwt::token(&jwt::key(4), "felix-broker", now + 600, "t1", &perms),
            "auth failed",
        ),
        (
            "other tenant",
            jwt::token(&signer, "felix-broker", now + 600, "t2", &perms),
            "tenant mismatch",
        ),
    ];
    for (name, token, want) in cases {
        let mut s = peer.open().await;
        s.send(Message::from(felix_wire::Auth {
            tenant_id: "t1".into(),
            token,
            client_flags: None,
        }))
        .await;
        assert_eq!(error_text(&s.recv().await), want, "{name}");
        s.reader.expect_end().await;
    }
    let mut s = peer.open().await;
    s.send(Message::from(felix_wire::Auth {
        tenant_id: "t1".into(),
        token: jwt::token(&signer, "felix-broker", now + 600, "t1", &perms),
        client_flags: None,
    }))
    .await;
    assert!(matches!(s.recv().await, Frame::Json(Message::Ok(_))));
    s.send(batch("allowed", 1, 1, 1)).await;
    assert!(matches!(s.recv().await, Frame::BinaryPublishAck(a) if a.status == AckStatus::Ok));
    // Subscribing needs stream.subscribe, which this token lacks.
    s.send(Message::from(Subscribe {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: "allowed".into(),
        subscription_id: None,
        start: None,
    }))
    .await;
    assert!(error_text(&s.recv().await).starts_with("permission denied: stream.subscribe"));
    assert_eq!(
        b.broker
            .core()
            .metrics
            .auth_failures
            .load(Ordering::Relaxed),
        4
    );
}

#[tokio::test]
async fn in_flight_and_cache_limits_are_answered_and_service_continues() {
    let _serial = SERIAL.lock().await;
    let mut s = settings();
    s.max_inflight_publish_bytes = 10_000;
    s.batch_linger = Duration::from_secs(60); // lingering batches stay in flight
    s.batch_max_events = 100_000;
    s.batch_max_bytes = 1 << 30;
    s.cache_capacity_bytes = 4096;
    let b = start(s, Authenticator::Dev).await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    // A subscriber that never reads: once QUIC flow control stops its
    // writer, its queue stays non-empty and new events linger in flight.
    let stalled = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let _stalled = subscribe(&stalled, "heavy", 1).await;
    let mut c = peer.control("t1").await;
    let mut rejected = None;
    for i in 0..2000u64 {
        c.send(batch("heavy", i, 8, 1000)).await;
        match c.recv().await {
            Frame::BinaryPublishAck(a) if a.status == AckStatus::Ok => {}
            Frame::BinaryPublishAck(a) => {
                rejected = Some(a.message);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let message = rejected.expect("the in-flight limit was reached");
    assert!(message.starts_with("publish rejected:"), "{message}");
    assert!(
        b.broker
            .core()
            .metrics
            .publish_rejected
            .load(Ordering::Relaxed)
            >= 1
    );
    // The cache stays within its bound by evicting the oldest entries.
    for i in 0..100u64 {
        c.send(Message::from(felix_wire::CachePut {
            tenant_id: "t1".into(),
            namespace: "default".into(),
            cache: "small".into(),
            key: format!("k{i}"),
            value: Bytes::from(vec![0u8; 200]),
            request_id: Some(i),
            ttl_ms: None,
        }))
        .await;
        assert!(matches!(c.recv().await, Frame::Json(Message::CacheOk(_))));
    }
    let (entries, bytes) = b.broker.core().cache.usage();
    assert!(
        bytes <= 4096 && entries < 100,
        "{entries} entries, {bytes} bytes"
    );
    assert!(
        b.broker
            .core()
            .metrics
            .cache_evictions
            .load(Ordering::Relaxed)
            > 0
    );
    // A value larger than the whole cache is refused, and the client is
    // told why; the stream ends as for any refused cache request.
    c.send(Message::from(felix_wire::CachePut {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        cache: "small".into(),
        key: "huge".into(),
        value: Bytes::from(vec![0u8; 5000]),
        request_id: Some(1000),
        ttl_ms: None,
    }))
    .await;
    let text = error_text(&c.recv().await);
    assert!(
        text.starts_with("cache value too large:") && text.ends_with("capacity of 4096 bytes"),
        "{text}"
    );
    assert_eq!(
        b.broker
            .core()
            .metrics
            .cache_rejected
            .load(Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn a_subscription_ends_when_its_token_expires() {
    // The control stream checks the token on every request, but it ends
    // right after `subscribed`: the event stream used to deliver for ever.
    let _serial = SERIAL.lock().await;
    let signer = jwt::key(5);
    let verifier = felix_broker::core::auth::JwtVerifier::new(&jwt::jwks(&signer)).expect("jwks");
    let b = start(settings(), Authenticator::Jwt(verifier)).await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let perms = ["stream.subscribe:stream:t1/default/*"];
    let mut s = peer.open().await;
    s.send(Message::from(felix_wire::Auth {
        tenant_id: "t1".into(),
        token: jwt::token(&signer, "felix-broker", now + 2, "t1", &perms),
        client_flags: None,
    }))
    .await;
    s.recv().await;
    s.send(Message::from(felix_wire::Subscribe {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: "orders".into(),
        subscription_id: Some(1),
        start: None,
    }))
    .await;
    let (_, mut events) = peer.accept_events().await;
    assert!(matches!(
        s.recv().await,
        felix_wire::Frame::Json(Message::Subscribed(_))
    ));
    assert_eq!(b.wait_for_subscribers("orders", 1).await, 1);
    // The token expires within 2 s (whole seconds): the event stream ends.
    events.expect_end().await;
    assert_eq!(b.wait_for_subscribers("orders", 0).await, 0);
    assert_eq!(
        b.broker
            .core()
            .metrics
            .auth_expired
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

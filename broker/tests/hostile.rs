//! What a hostile peer can make the broker hold, over real QUIC on loopback:
//! each test reproduces one attack from the security review and checks the
//! budget, deadline or limit that now bounds it (docs/operations.md,
//! "Memory budget").

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use felix_broker::core::auth::Authenticator;
use felix_wire::{Frame, Header, Message, PublishOk};
use support::*;

/// A frame header announcing `length` payload bytes of JSON.
fn header(length: u32) -> Vec<u8> {
    let mut out = Vec::new();
    Header { flags: 0, length }.write(&mut out);
    out
}

fn publish_frame(payload_len: usize, request_id: u64) -> Frame {
    Frame::Json(Message::from(felix_wire::Publish {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: "orders".into(),
        payload: bytes::Bytes::from(vec![7u8; payload_len]),
        request_id: Some(request_id),
        ack: None,
    }))
}

#[tokio::test]
async fn a_large_first_frame_is_refused_before_it_is_buffered() {
    let b = start(settings(), Authenticator::Dev).await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let mut c = peer.open().await;
    // Nearly 16 MiB announced before any auth: the broker used to buffer
    // all of it (48 such streams took it from 6 MB to 800 MB RSS).
    c.send_raw(&header(16 * 1024 * 1024 - 1)).await;
    c.send_raw(&vec![b' '; 128 * 1024]).await;
    let text = error_text(&c.recv().await);
    assert!(
        text.contains("exceeds the frame cap of 65536"),
        "the first frame is capped at 64 KiB: {text}"
    );
    let held = b
        .broker
        .core()
        .metrics
        .receive_buffered_bytes
        .load(Ordering::Relaxed);
    assert!(held <= 128 * 1024, "receive buffers hold {held} bytes");
    // After auth the full cap applies on the same connection.
    let mut c = peer.control("t1").await;
    c.send(publish_frame(1024 * 1024, 1)).await;
    assert_eq!(
        c.recv().await,
        Frame::Json(Message::PublishOk(PublishOk { request_id: 1 }))
    );
}

#[tokio::test]
async fn frames_past_the_connection_budget_are_refused_and_the_connection_goes_on() {
    let mut s = settings();
    s.max_inflight_publish_bytes = 64 * 1024 * 1024;
    let b = start_with(s, Authenticator::Dev, |l| {
        l.max_frame_bytes = 1024 * 1024;
        // Raised to one whole frame at the cap: 1 MiB + 12.
        l.receive_budget_per_connection = 1;
    })
    .await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    // ~930 KiB frames (700 KiB of payload in base64): one fits the budget.
    let frame = publish_frame(700 * 1024, 9).to_bytes().expect("encode");
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut c = peer.control("t1").await;
        // A refused stream is stopped by the broker: the write may fail.
        let _ = c.send.write_all(&frame[..frame.len() - 10]).await;
        streams.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = &b.broker.core().metrics;
    let held = metrics.receive_buffered_bytes.load(Ordering::Relaxed);
    assert!(
        held <= 2 * 1024 * 1024 + 12 + 4 * 12,
        "one connection holds {held} bytes of partial frames"
    );
    for c in &mut streams {
        let _ = c.send.write_all(&frame[frame.len() - 10..]).await;
    }
    let (mut acked, mut refused) = (0, 0);
    for c in &mut streams {
        match c.recv().await {
            Frame::Json(Message::PublishOk(PublishOk { request_id: 9 })) => acked += 1,
            other => {
                let text = error_text(&other);
                assert!(text.starts_with("receive budget exhausted"), "{text}");
                refused += 1;
            }
        }
    }
    assert_eq!((acked, refused), (1, 3), "one frame at a time fits");
    assert_eq!(metrics.receive_budget_refusals.load(Ordering::Relaxed), 3);
    // The connection goes on. Once frames are consumed, only the idle
    // read-ahead of the two open streams (4 KiB each) is held.
    let mut c = peer.control("t1").await;
    c.send(publish_frame(700 * 1024, 10)).await;
    assert_eq!(
        c.recv().await,
        Frame::Json(Message::PublishOk(PublishOk { request_id: 10 }))
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(metrics.receive_buffered_bytes.load(Ordering::Relaxed) <= 2 * 4096);
    drop((c, streams));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(metrics.receive_buffered_bytes.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_frame_waits_for_the_broker_wide_budget_then_completes() {
    let b = start_with(settings(), Authenticator::Dev, |l| {
        l.max_frame_bytes = 1024 * 1024;
        l.receive_budget = 1024 * 1024 + 12;
    })
    .await;
    let first = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let second = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let frame = publish_frame(700 * 1024, 5).to_bytes().expect("encode");
    let mut a = first.control("t1").await;
    a.send_raw(&frame[..frame.len() - 10]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = second.control("t1").await;
    c.send_raw(&frame).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = &b.broker.core().metrics;
    assert_eq!(metrics.receive_budget_waits.load(Ordering::Relaxed), 1);
    a.send_raw(&frame[frame.len() - 10..]).await;
    for s in [&mut a, &mut c] {
        assert_eq!(
            s.recv().await,
            Frame::Json(Message::PublishOk(PublishOk { request_id: 5 }))
        );
    }
}

#[tokio::test]
async fn unauthenticated_streams_cannot_hold_the_shared_receive_budget() {
    let b = start_with(settings(), Authenticator::Dev, |l| {
        l.max_frame_bytes = 1024 * 1024;
        // Less than 32 unauthenticated 64 KiB first frames.
        l.receive_budget = 1024 * 1024 + 12;
    })
    .await;
    let attacker = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    // Headers announcing 64 KiB first frames, and nothing more: each used
    // to reserve its frame from the pool every connection shares.
    let mut held = Vec::new();
    for _ in 0..32 {
        let mut c = attacker.open().await;
        let _ = c.send.write_all(&header(64 * 1024 - 1)).await;
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = &b.broker.core().metrics;
    assert!(
        metrics.receive_buffered_bytes.load(Ordering::Relaxed) <= 4 * (64 * 1024 + 12) + 32 * 4096,
        "unauthenticated streams hold their connection's small pool at most"
    );
    assert!(metrics.receive_budget_refusals.load(Ordering::Relaxed) >= 28);
    // A legitimate client still gets the whole shared budget.
    let legit = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let mut c = legit.control("t1").await;
    c.send(publish_frame(700 * 1024, 1)).await;
    assert_eq!(
        c.recv().await,
        Frame::Json(Message::PublishOk(PublishOk { request_id: 1 }))
    );
}

#[tokio::test]
async fn connections_that_never_authenticate_are_closed_and_free_their_slots() {
    let b = start_with(settings(), Authenticator::Dev, |l| {
        l.max_connections = 3;
        l.auth_timeout = Duration::from_millis(300);
    })
    .await;
    let addr = b.broker.local_addr();
    // Idle connections used to live for ever on keep-alives and lock
    // legitimate clients out of the connection limit.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(Peer::connect(addr, &b.certs).await.expect("connect"));
    }
    for p in &idle {
        let reason = tokio::time::timeout(TIMEOUT, p.conn.closed())
            .await
            .expect("closed in time");
        assert!(
            reason.to_string().contains("authentication timeout"),
            "{reason}"
        );
    }
    assert_eq!(
        b.broker
            .core()
            .metrics
            .auth_timeouts
            .load(Ordering::Relaxed),
        3
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let legit = Peer::connect(addr, &b.certs).await.expect("connect");
    let mut c = legit.control("t1").await;
    c.send(publish_frame(10, 1)).await;
    assert_eq!(
        c.recv().await,
        Frame::Json(Message::PublishOk(PublishOk { request_id: 1 }))
    );
    // An authenticated connection outlives the deadline; a stream on it
    // that never authenticates is ended.
    let mut lazy = legit.open().await;
    lazy.send_raw(&header(10)[..3]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = error_text(&lazy.recv().await);
    assert!(text.starts_with("auth timeout"), "{text}");
    let mut c = legit.control("t1").await;
    c.send(publish_frame(10, 2)).await;
    assert_eq!(
        c.recv().await,
        Frame::Json(Message::PublishOk(PublishOk { request_id: 2 }))
    );
}

#[tokio::test]
async fn a_frame_that_never_completes_is_ended_by_the_frame_timeout() {
    let b = start_with(settings(), Authenticator::Dev, |l| {
        l.frame_timeout = Duration::from_millis(300);
    })
    .await;
    let peer = Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let mut c = peer.control("t1").await;
    let frame = publish_frame(100_000, 3).to_bytes().expect("encode");
    c.send_raw(&frame[..50_000]).await;
    let text = error_text(&c.recv().await);
    assert!(text.starts_with("frame timeout"), "{text}");
    assert_eq!(
        b.broker
            .core()
            .metrics
            .frames_timed_out
            .load(Ordering::Relaxed),
        1
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        b.broker
            .core()
            .metrics
            .receive_buffered_bytes
            .load(Ordering::Relaxed),
        0,
        "the ended stream gave its budget back"
    );
}

#[tokio::test]
async fn one_source_address_cannot_take_every_connection() {
    let b = start_with(settings(), Authenticator::Dev, |l| {
        l.max_connections_per_source = 2;
    })
    .await;
    let addr = b.broker.local_addr();
    let _a = Peer::connect(addr, &b.certs).await.expect("first");
    let _b = Peer::connect(addr, &b.certs).await.expect("second");
    let third = Peer::connect(addr, &b.certs).await.expect("handshake");
    let reason = tokio::time::timeout(TIMEOUT, third.conn.closed())
        .await
        .expect("closed in time");
    assert!(
        reason.to_string().contains("per source address"),
        "{reason}"
    );
    assert_eq!(
        b.broker
            .core()
            .metrics
            .connections_refused_per_source
            .load(Ordering::Relaxed),
        1
    );
}

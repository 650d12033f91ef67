//! Replay amplification, measured as the process's resident memory: many
//! `start: earliest` subscriptions that never read used to each copy the
//! whole replay ring into new frames (one subscribe-only client took a
//! broker from 72 MB to 1 GB). The broker runs as its own process, so
//! the figure is the broker's alone.

mod support;

use std::time::Duration;

use bytes::Bytes;
use felix_wire::{BinaryPublishBatch, Message, StartPosition, Subscribe};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_that_never_read_do_not_copy_the_replay_ring() {
    let dir = temp_dir("replay-memory");
    let (mut broker, addr) = spawn_broker(&dir.0, "127.0.0.1:0", &[]);
    let peer = Peer::connect(addr, &certs(&dir.0)).await.expect("connect");
    // An 8 MiB ring: 128 events of 64 KiB.
    let mut c = peer.control("t1").await;
    for _ in 0..8 {
        c.send(BinaryPublishBatch {
            tenant_id: "t1".into(),
            namespace: "default".into(),
            stream: "orders".into(),
            payloads: (0..16).map(|_| Bytes::from(vec![3u8; 64 * 1024])).collect(),
        })
        .await;
    }
    // The ring is complete once a subscriber from the start sees all 128.
    let mut probe = peer.control("t1").await;
    probe
        .send(Message::from(felix_wire::PublishBatch {
            tenant_id: "t1".into(),
            namespace: "default".into(),
            stream: "orders".into(),
            payloads: vec![],
            request_id: Some(1),
            ack: None,
        }))
        .await;
    probe.recv().await;
    let pid = broker.id();
    let before = rss_of(pid);
    // 200 subscriptions from the start, none of whose events are read:
    // 200 copies of the ring would be 1.6 GB.
    let mut streams = Vec::new();
    for id in 0..200u64 {
        let mut s = peer.open().await;
        s.send(Message::from(felix_wire::Auth {
            tenant_id: "t1".into(),
            token: "dev".into(),
            client_flags: Some(felix_wire::KNOWN_FLAGS),
        }))
        .await;
        s.send(Message::from(Subscribe {
            tenant_id: "t1".into(),
            namespace: "default".into(),
            stream: "orders".into(),
            subscription_id: Some(id),
            start: Some(StartPosition::Earliest),
        }))
        .await;
        streams.push(s);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = rss_of(pid).saturating_sub(before);
    let _ = broker.kill();
    let _ = broker.wait();
    assert!(
        grown < 64 * 1024 * 1024,
        "200 stalled replays grew the process by {} MiB",
        grown >> 20
    );
    println!(
        "200 stalled replays of an 8 MiB ring: broker +{} MiB resident",
        grown >> 20
    );
}

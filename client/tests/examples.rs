//! The programs in `examples/`, run against embedded brokers: each
//! example's code is compiled into this test (`#[path]`) and its working
//! part called with a client of a real broker on loopback, so an example
//! that stops working fails `cargo test`, not only one that stops
//! compiling.

// Each example includes `examples/common/mod.rs` itself (cargo builds it
// alone), so here that file is a module of each of the three.
#![allow(clippy::duplicate_mod)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use felix_broker::embedded::EmbeddedBroker;
use felix_client::{Ack, Bytes, Client, ClientConfig, Trust};
use support::broker;

#[allow(dead_code)]
#[path = "../examples/pubsub.rs"]
mod pubsub;

#[allow(dead_code)]
#[path = "../examples/cache.rs"]
mod cache;

#[allow(dead_code)]
#[path = "../examples/resume.rs"]
mod resume;

/// A client of `brokers` (in order), trusting each one's certificate.
async fn client(brokers: &[&EmbeddedBroker]) -> Client {
    let mut pem = Vec::new();
    for b in brokers {
        pem.extend(std::fs::read(b.cert_path()).expect("read cert"));
    }
    let config = ClientConfig::builder(brokers[0].local_addr(), Trust::CertificatePem(pem))
        .failover_addrs(brokers[1..].iter().map(|b| b.local_addr()))
        .credentials("t1", "dev")
        .connect_timeout(Duration::from_secs(4))
        .build();
    Client::connect(config).await.expect("connect")
}

#[tokio::test]
async fn pubsub_reads_back_what_it_published_through_the_stream_interface() {
    let b = broker();
    let c = client(&[&b]).await;
    let got = tokio::time::timeout(
        Duration::from_secs(20),
        pubsub::publish_and_read_back(&c, "orders", &["one", "two", "three"]),
    )
    .await
    .expect("in time")
    .expect("the example works");
    assert_eq!(
        got,
        [
            (Some(0), Bytes::from("one")),
            (Some(1), Bytes::from("two")),
            (Some(2), Bytes::from("three")),
        ]
    );
    c.close().await;
}

#[tokio::test]
async fn cache_stores_reads_back_and_misses() {
    let b = broker();
    let c = client(&[&b]).await;
    let seen = cache::tour(&c, "sessions", b"user=ada")
        .await
        .expect("the example works");
    assert_eq!(seen.stored.as_deref(), Some(&b"user=ada"[..]));
    assert_eq!(seen.missing, None);
    c.close().await;
}

/// Two independent brokers stand in for the nodes of a cluster: B is
/// filled first so that its offsets line up with A's (a cluster shares
/// them; independent brokers do not). The consumer reads three events on
/// A, A shuts down, and it continues on B at offset 3: nothing twice,
/// nothing missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_continues_on_the_next_broker_after_the_first_goes_away() {
    let a = broker();
    let b = broker();
    let only_b = client(&[&b]).await;
    for i in 0..5 {
        only_b
            .publish(
                "default",
                "orders",
                Bytes::from(format!("b{i}")),
                Ack::PerMessage,
            )
            .await
            .expect("fill B");
    }
    only_b.close().await;

    let consumer = client(&[&a, &b]).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let follow = tokio::spawn({
        let seen = Arc::clone(&seen);
        async move {
            resume::follow(&consumer, "orders", 5, |e| {
                seen.lock()
                    .expect("lock")
                    .push((e.offset, e.payload.clone()))
            })
            .await
        }
    });
    let only_a = client(&[&a]).await;
    for i in 0..3 {
        only_a
            .publish(
                "default",
                "orders",
                Bytes::from(format!("a{i}")),
                Ack::PerMessage,
            )
            .await
            .expect("publish on A");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().expect("lock").len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer saw A's events"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    only_a.close().await;
    a.shutdown().await;

    tokio::time::timeout(Duration::from_secs(30), follow)
        .await
        .expect("the consumer finished in time")
        .expect("task")
        .expect("the example resumed");
    let got = seen.lock().expect("lock").clone();
    let want: Vec<(Option<u64>, Bytes)> = ["a0", "a1", "a2", "b3", "b4"]
        .iter()
        .zip(0u64..)
        .map(|(p, o)| (Some(o), Bytes::from(*p)))
        .collect();
    assert_eq!(got, want);
    b.shutdown().await;
}

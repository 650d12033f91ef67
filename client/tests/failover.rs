//! Failing over between broker addresses, with embedded brokers on
//! loopback: an address where nothing listens is skipped at connect, a
//! broker shut down mid-session is replaced by the other one, and a
//! subscription resumes there from the offset after its last event.
//!
//! The two brokers are independent (each has its own offsets), so the
//! resume test fills the second one's stream first to make "the offset
//! after the last event" meaningful there; on a cluster the offsets are
//! shared and nothing needs arranging.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use felix_broker::embedded::EmbeddedBroker;
use felix_client::{Ack, Client, ClientConfig, SubscriptionItem, Trust};
use felix_wire::StartPosition;
use support::broker;

/// Trust for every broker given: each embedded broker has its own
/// self-signed certificate.
fn trust(brokers: &[&EmbeddedBroker]) -> Trust {
    let mut pem = Vec::new();
    for b in brokers {
        pem.extend(std::fs::read(b.cert_path()).expect("read cert"));
    }
    Trust::CertificatePem(pem)
}

/// A loopback address where nothing listens (a port the kernel just gave
/// out and took back).
fn silent_addr() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
}

async fn next_item(sub: &mut felix_client::Subscription) -> SubscriptionItem {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("item in time")
        .expect("open")
        .expect("ok")
}

#[tokio::test]
async fn an_address_where_nothing_listens_is_skipped_for_the_next() {
    let b = broker();
    let dead = silent_addr();
    let config = ClientConfig::builder(dead, trust(&[&b]))
        .failover_addr(b.local_addr())
        .credentials("t1", "dev")
        .connect_timeout(Duration::from_secs(2))
        .build();
    assert_eq!(config.addrs(), [dead, b.local_addr()]);
    let started = Instant::now();
    let c = Client::connect(config)
        .await
        .expect("connects to the second");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the silent address had only its share of the connect timeout"
    );
    c.cache_put("default", "c", "k", Bytes::from_static(b"v"), None)
        .await
        .expect("put");
    assert_eq!(
        c.cache_get("default", "c", "k")
            .await
            .expect("get")
            .as_deref(),
        Some(&b"v"[..])
    );
    c.close().await;
}

#[tokio::test]
async fn a_broker_shut_down_mid_session_is_replaced_and_the_subscription_resumes() {
    let a = broker();
    let b = broker();
    let config = ClientConfig::builder(a.local_addr(), trust(&[&a, &b]))
        .failover_addr(b.local_addr())
        .credentials("t1", "dev")
        .connect_timeout(Duration::from_secs(4))
        .build();
    let c = Client::connect(config).await.expect("connect");

    // On A: three events, all delivered.
    let mut sub = c
        .subscribe("default", "orders", StartPosition::Earliest)
        .await
        .expect("subscribe on A");
    for i in 0..3 {
        c.publish(
            "default",
            "orders",
            Bytes::from(format!("a{i}")),
            Ack::PerMessage,
        )
        .await
        .expect("publish on A");
    }
    for i in 0..3u64 {
        match next_item(&mut sub).await {
            SubscriptionItem::Event(e) => {
                assert_eq!(
                    (e.offset, e.payload),
                    (Some(i), Bytes::from(format!("a{i}")))
                )
            }
            gap => panic!("{gap:?}"),
        }
    }
    assert_eq!(sub.last_offset(), Some(2));
    assert_eq!(sub.resume_position(), StartPosition::Offset(3));

    // A goes away: the subscription ends (gracefully or with an error).
    a.shutdown().await;
    match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
        Ok(None | Some(Err(_))) => {}
        other => panic!("the subscription should end with A: {other:?}"),
    }

    // The next operations reconnect, to B.
    for i in 0..5 {
        c.publish(
            "default",
            "orders",
            Bytes::from(format!("b{i}")),
            Ack::PerMessage,
        )
        .await
        .expect("publish fails over to B");
    }

    // Resumed on B from offset 3: no duplicate of what A delivered.
    let mut resumed = c.resume(&sub).await.expect("resume on B");
    assert_eq!(
        (resumed.namespace(), resumed.stream()),
        ("default", "orders")
    );
    for i in 3..5u64 {
        match next_item(&mut resumed).await {
            SubscriptionItem::Event(e) => {
                assert_eq!(
                    (e.offset, e.payload),
                    (Some(i), Bytes::from(format!("b{i}")))
                )
            }
            gap => panic!("{gap:?}"),
        }
    }
    assert_eq!(resumed.last_offset(), Some(4));
    c.close().await;
    b.shutdown().await;
}

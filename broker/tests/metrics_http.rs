//! The metrics endpoint as a Prometheus scraper sees it: conventional
//! names (`_total` counters, units last, `felix_build_info`), latency
//! histograms that move with real traffic over QUIC, and bounded
//! connections: idle connections cannot pile up without limit, the ones
//! over the limit are closed at once and counted, and it serves again as
//! soon as connections end (issue 13, finding 10).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use felix_broker::core::auth::Authenticator;
use felix_broker::core::{Core, CoreSettings};
use felix_broker::http::{self, MAX_METRICS_CONNECTIONS};
use felix_wire::{CacheGet, CachePut, Frame, Message, Publish};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `GET path` and reads until the server closes (or 2 s pass):
/// what came back, empty when the connection was closed unanswered.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await;
    let mut body = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut body)).await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once_and_counted() {
    let core = Arc::new(Core::new(CoreSettings::default(), Authenticator::Dev));
    let (addr, _task) = http::serve("127.0.0.1:0".parse().expect("addr"), core)
        .await
        .expect("bind");
    // Idle connections that send nothing hold a slot each (until the read
    // timeout, longer than this test).
    let mut idle = Vec::new();
    for _ in 0..MAX_METRICS_CONNECTIONS {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let started = Instant::now();
    let refused = get(addr, "/healthz").await;
    assert!(
        !refused.starts_with("HTTP/1.1 200"),
        "served over the limit"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // Once the idle clients go, their slots free up.
    drop(idle);
    // Until the server has seen them go, new connections may still be
    // refused (and counted).
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut refusals = 1;
    let metrics = loop {
        let answer = get(addr, "/metrics").await;
        if answer.starts_with("HTTP/1.1 200") {
            break answer;
        }
        refusals += 1;
        assert!(Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let counted = format!("felix_metrics_connections_refused_total {refusals}\n");
    assert!(metrics.contains(&counted), "{counted}in {metrics}");
}

/// The value of the sample `name` (a full series name, labels included).
fn sample(metrics: &str, name: &str) -> String {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        .to_string()
}

#[tokio::test]
async fn names_follow_prometheus_conventions_and_latency_histograms_move() {
    let b = support::start(support::settings(), Authenticator::Dev).await;
    let peer = support::Peer::connect(b.broker.local_addr(), &b.certs)
        .await
        .expect("connect");
    let mut c = peer.control("t1").await;
    c.send(Message::from(Publish {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: "orders".into(),
        payload: Bytes::from_static(b"x"),
        request_id: Some(1),
        ack: None,
    }))
    .await;
    assert!(matches!(c.recv().await, Frame::Json(Message::PublishOk(_))));
    c.send(Message::from(CachePut {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        cache: "sessions".into(),
        key: "k".into(),
        value: Bytes::from_static(b"v"),
        request_id: Some(2),
        ttl_ms: None,
    }))
    .await;
    assert!(matches!(c.recv().await, Frame::Json(Message::CacheOk(_))));
    c.send(Message::from(CacheGet {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        cache: "sessions".into(),
        key: "k".into(),
        request_id: Some(3),
    }))
    .await;
    assert!(matches!(
        c.recv().await,
        Frame::Json(Message::CacheValue(_))
    ));

    let (addr, _task) = http::serve(
        "127.0.0.1:0".parse().expect("addr"),
        b.broker.core().clone(),
    )
    .await
    .expect("bind");
    let metrics = get(addr, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let build = format!(
        "felix_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&metrics, &build), "1");
    assert_eq!(sample(&metrics, "felix_published_events_total"), "1");
    assert_eq!(sample(&metrics, "felix_published_bytes_total"), "1");
    // One batch fanned out; one put and one get answered.
    assert_eq!(
        sample(&metrics, "felix_publish_to_fanout_seconds_count"),
        "1"
    );
    assert_eq!(
        sample(
            &metrics,
            "felix_publish_to_fanout_seconds_bucket{le=\"+Inf\"}"
        ),
        "1"
    );
    assert_eq!(sample(&metrics, "felix_cache_request_seconds_count"), "2");
    let seconds: f64 = sample(&metrics, "felix_cache_request_seconds_sum")
        .parse()
        .expect("a number");
    assert!(seconds > 0.0 && seconds < 10.0, "{seconds}");
    for line in metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').expect("name and type");
        assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
        assert!(name.starts_with("felix_"), "{line}");
    }
}

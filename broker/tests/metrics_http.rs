//! The metrics endpoint bounds its connections: idle connections cannot
//! pile up without limit, the ones over the limit are closed at once and
//! counted, and it serves again as soon as connections end (issue 13,
//! finding 10).

use std::sync::Arc;
use std::time::{Duration, Instant};

use felix_broker::core::auth::Authenticator;
use felix_broker::core::{Core, CoreSettings};
use felix_broker::http::{self, MAX_METRICS_CONNECTIONS};
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
    let counted = format!("felix_metrics_connections_refused {refusals}\n");
    assert!(metrics.contains(&counted), "{counted}in {metrics}");
}

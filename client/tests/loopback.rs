//! The client against the reference broker on loopback: pub/sub (fanout 1
//! and 10, acked and unacked, binary and JSON), start positions and cursor
//! errors, offsets and gaps, the cache, auth, TLS and connect failures,
//! close, and the `felix` CLI.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use felix_broker::core::auth::{Authenticator, TokenEntry, TokensFile};
use felix_broker::core::{CoreSettings, QueuePolicy};
use felix_broker::embedded::{EmbeddedBroker, EmbeddedConfig};
use felix_client::{
    Ack, Client, ClientConfig, ClientError, PublishEncoding, SubscriptionItem, TlsError, Trust,
};
use felix_wire::StartPosition;

async fn broker(settings: CoreSettings, auth: Authenticator) -> EmbeddedBroker {
    EmbeddedConfig {
        auth,
        core: settings,
        ..EmbeddedConfig::default()
    }
    .start()
    .expect("start")
}

fn settings() -> CoreSettings {
    CoreSettings {
        batch_linger: Duration::ZERO,
        ..CoreSettings::default()
    }
}

fn config(b: &EmbeddedBroker, token: &str) -> ClientConfig {
    ClientConfig::builder(
        b.local_addr(),
        Trust::CertificateFile(b.cert_path().to_path_buf()),
    )
    .credentials("t1", token)
    .build()
}

async fn client(b: &EmbeddedBroker) -> Client {
    Client::connect(config(b, "dev")).await.expect("connect")
}

async fn events(sub: &mut felix_client::Subscription, n: usize) -> Vec<(Option<u64>, Bytes)> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next_event())
            .await
            .expect("event in time")
            .expect("open")
            .expect("ok");
        out.push((e.offset, e.payload));
    }
    out
}

fn payloads(prefix: &str, n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(format!("{prefix}{i}")))
        .collect()
}

#[tokio::test]
async fn pubsub_fanout_1_and_10_acked_unacked_in_order() {
    let b = broker(settings(), Authenticator::Dev).await;
    let c = client(&b).await;
    assert_eq!(c.server_flags(), felix_wire::KNOWN_FLAGS);
    let mut one = c
        .subscribe("default", "solo", StartPosition::Latest)
        .await
        .expect("subscribe");
    for p in payloads("acked-", 5) {
        c.publish("default", "solo", p, Ack::PerMessage)
            .await
            .expect("acked publish");
    }
    c.publish_batch("default", "solo", payloads("batch-", 5), Ack::PerBatch)
        .await
        .expect("batch");
    c.publish_batch("default", "solo", payloads("fire-", 5), Ack::None)
        .await
        .expect("unacked");
    let got = events(&mut one, 15).await;
    let offsets: Vec<Option<u64>> = got.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..15).map(Some).collect::<Vec<_>>());
    assert_eq!(got[14].1, Bytes::from("fire-4"));

    let mut ten = Vec::new();
    for _ in 0..10 {
        ten.push(
            c.subscribe("default", "fan", StartPosition::Latest)
                .await
                .expect("subscribe"),
        );
    }
    c.publish_batch("default", "fan", payloads("f", 20), Ack::PerMessage)
        .await
        .expect("publish");
    for s in &mut ten {
        let got: Vec<Bytes> = events(s, 20).await.into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, payloads("f", 20));
    }
    c.close().await;
}

#[tokio::test]
async fn json_is_used_when_the_broker_advertises_no_binary_layouts() {
    let b = broker(
        CoreSettings {
            server_flags: 0,
            ..settings()
        },
        Authenticator::Dev,
    )
    .await;
    let c = client(&b).await;
    assert_eq!(c.server_flags(), 0);
    assert_eq!(
        felix_client::publish_encoding(c.server_flags(), Ack::PerMessage),
        PublishEncoding::Json
    );
    let mut sub = c
        .subscribe("default", "json", StartPosition::Latest)
        .await
        .expect("subscribe");
    c.publish(
        "default",
        "json",
        Bytes::from_static(b"one"),
        Ack::PerMessage,
    )
    .await
    .expect("json publish");
    c.publish_batch("default", "json", payloads("b", 2), Ack::PerBatch)
        .await
        .expect("json batch");
    c.publish("default", "json", Bytes::from_static(b"fire"), Ack::None)
        .await
        .expect("json unacked");
    let got: Vec<Bytes> = events(&mut sub, 4)
        .await
        .into_iter()
        .map(|(o, p)| {
            assert_eq!(o, None, "offsets were not negotiated");
            p
        })
        .collect();
    assert_eq!(
        got,
        [
            Bytes::from_static(b"one"),
            Bytes::from_static(b"b0"),
            Bytes::from_static(b"b1"),
            Bytes::from_static(b"fire")
        ]
    );
}

#[tokio::test]
async fn start_positions_and_cursor_errors() {
    let b = broker(
        CoreSettings {
            replay_capacity: 4,
            ..settings()
        },
        Authenticator::Dev,
    )
    .await;
    let c = client(&b).await;
    c.publish_batch("default", "hist", payloads("h", 6), Ack::PerMessage)
        .await
        .expect("publish");
    let mut earliest = c
        .subscribe("default", "hist", StartPosition::Earliest)
        .await
        .expect("earliest");
    assert_eq!(
        events(&mut earliest, 4).await[0],
        (Some(2), Bytes::from("h2"))
    );
    let mut from4 = c
        .subscribe("default", "hist", StartPosition::Offset(4))
        .await
        .expect("offset");
    assert_eq!(
        events(&mut from4, 2).await,
        [(Some(4), Bytes::from("h4")), (Some(5), Bytes::from("h5"))]
    );
    match c
        .subscribe("default", "hist", StartPosition::Offset(1))
        .await
    {
        Err(ClientError::CursorTooOld {
            requested: 1,
            available: 2,
        }) => {}
        other => panic!("{other:?}"),
    }
    match c
        .subscribe("default", "hist", StartPosition::Offset(9))
        .await
    {
        Err(ClientError::CursorInFuture {
            requested: 9,
            available: 6,
        }) => {}
        other => panic!("{other:?}"),
    }
    c.publish(
        "default",
        "hist",
        Bytes::from_static(b"live"),
        Ack::PerMessage,
    )
    .await
    .expect("publish");
    assert_eq!(
        events(&mut earliest, 1).await,
        [(Some(6), Bytes::from("live"))]
    );
}

#[tokio::test]
async fn dropped_events_show_up_as_gaps() {
    let b = broker(
        CoreSettings {
            queue_capacity: 1,
            queue_policy: QueuePolicy::DropNew,
            batch_max_events: 1,
            ..settings()
        },
        Authenticator::Dev,
    )
    .await;
    let c = client(&b).await;
    let mut sub = c
        .subscribe("default", "gappy", StartPosition::Latest)
        .await
        .expect("subscribe");
    // Flood while the subscriber does not read: its one-batch queue drops.
    c.publish_batch("default", "gappy", payloads("g", 200), Ack::PerBatch)
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.publish(
        "default",
        "gappy",
        Bytes::from_static(b"last"),
        Ack::PerMessage,
    )
    .await
    .expect("publish");
    let mut gaps = 0u64;
    let mut seen = 0u64;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("ok")
        {
            SubscriptionItem::Gap { expected, got } => gaps += got - expected,
            SubscriptionItem::Event(e) => {
                seen += 1;
                if e.payload == Bytes::from_static(b"last") {
                    assert_eq!(e.offset, Some(200));
                    break;
                }
            }
        }
    }
    assert!(gaps > 0, "drops were reported as gaps");
    assert_eq!(
        seen + gaps,
        201,
        "every offset is either delivered or reported missing"
    );
}

#[tokio::test]
async fn cache_hit_miss_ttl_and_concurrent_requests() {
    let b = broker(settings(), Authenticator::Dev).await;
    let c = client(&b).await;
    c.cache_put("default", "s", "k", Bytes::from_static(b"v"), None)
        .await
        .expect("put");
    assert_eq!(
        c.cache_get("default", "s", "k")
            .await
            .expect("get")
            .as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        c.cache_get("default", "s", "missing").await.expect("get"),
        None
    );
    c.cache_put(
        "default",
        "s",
        "t",
        Bytes::from_static(b"x"),
        Some(Duration::from_millis(100)),
    )
    .await
    .expect("put");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        c.cache_get("default", "s", "t").await.expect("get"),
        None,
        "expired"
    );
    // Many requests in flight over the pooled streams, each answered correctly.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("k{i}");
            c.cache_put("default", "mux", &key, Bytes::from(format!("v{i}")), None)
                .await
                .expect("put");
            c.cache_get("default", "mux", &key).await.expect("get")
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.expect("join"), Some(Bytes::from(format!("v{i}"))));
    }
}

#[tokio::test]
async fn auth_failures_and_permission_denials_are_typed() {
    let tokens = Authenticator::tokens(&TokensFile {
        tokens: vec![TokenEntry {
            token: "reader".into(),
            tenant: "t1".into(),
            permissions: vec!["cache.read:cache:t1/*/*".into()],
        }],
    })
    .expect("tokens");
    let b = broker(
        CoreSettings {
            auto_create: true,
            ..settings()
        },
        tokens,
    )
    .await;
    match Client::connect(config(&b, "wrong")).await {
        Err(ClientError::AuthFailed(m)) => assert_eq!(m, "auth failed"),
        other => panic!("{other:?}"),
    }
    let c = Client::connect(config(&b, "reader"))
        .await
        .expect("connect");
    match c
        .publish("default", "s", Bytes::from_static(b"x"), Ack::PerMessage)
        .await
    {
        Err(ClientError::Broker(m)) => {
            assert!(m.starts_with("permission denied: stream.publish"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.cache_get("default", "s", "k")
            .await
            .expect("read allowed"),
        None
    );
}

#[tokio::test]
async fn reconnects_after_the_broker_restarts() {
    // The data directory keeps the certificate for the broker that follows.
    let dir = std::env::temp_dir().join(format!("felix-client-restart-{}", std::process::id()));
    let start = |addr| {
        EmbeddedConfig {
            addr,
            data_dir: Some(dir.clone()),
            core: settings(),
            ..EmbeddedConfig::default()
        }
        .start()
    };
    let b = start("127.0.0.1:0".parse().expect("addr")).expect("start");
    let addr: SocketAddr = b.local_addr();
    let c = client(&b).await;
    c.cache_put("default", "s", "k", Bytes::from_static(b"v"), None)
        .await
        .expect("put");
    b.shutdown().await;
    // A new broker on the same address and certificate. The old
    // endpoint's socket closes once its last connection is gone.
    let mut again = None;
    for _ in 0..50 {
        match start(addr) {
            Ok(b) => {
                again = Some(b);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let again = again.expect("restart on the same address");
    // In-memory state is gone, but the client reconnects transparently.
    let mut result = c.cache_get("default", "s", "k").await;
    if matches!(result, Err(ClientError::Closed)) {
        result = c.cache_get("default", "s", "k").await; // the first call may see the old connection die
    }
    assert_eq!(result.expect("reconnected"), None);
    again.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_publishes_subscribes_and_uses_the_cache() {
    let b = broker(settings(), Authenticator::Dev).await;
    let felix = env!("CARGO_BIN_EXE_felix");
    let common = [
        "--addr".to_string(),
        b.local_addr().to_string(),
        "--cert".to_string(),
        b.cert_path().display().to_string(),
    ];
    let common_run = common.clone();
    let run = move |args: Vec<&str>| {
        let mut all: Vec<String> = common_run.to_vec();
        all.extend(args.iter().map(|s| s.to_string()));
        std::process::Command::new(felix)
            .args(all)
            .output()
            .expect("run felix")
    };
    let sub = {
        let mut all: Vec<String> = common.to_vec();
        all.extend(
            [
                "--json", "sub", "cli", "--start", "earliest", "--count", "3",
            ]
            .map(String::from),
        );
        tokio::process::Command::new(felix).args(all).output()
    };
    let publish = tokio::task::spawn_blocking(move || run(vec!["pub", "cli", "a", "b", "c"]));
    let pub_out = publish.await.expect("join");
    assert!(
        pub_out.status.success(),
        "{}",
        String::from_utf8_lossy(&pub_out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&pub_out.stdout).trim(),
        "published 3 message(s) to cli"
    );
    let sub_out = tokio::time::timeout(Duration::from_secs(20), sub)
        .await
        .expect("sub exits")
        .expect("run");
    assert!(
        sub_out.status.success(),
        "{}",
        String::from_utf8_lossy(&sub_out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&sub_out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["payload_utf8"].as_str().expect("utf8"))
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(lines[2]["offset"], 2);

    let common2 = common.clone();
    let out = tokio::task::spawn_blocking(move || {
        let put = std::process::Command::new(felix)
            .args(
                common2.iter().chain(
                    ["cache", "put", "c", "k", "hello", "--ttl-ms", "60000"]
                        .map(String::from)
                        .iter(),
                ),
            )
            .output()
            .expect("put");
        let hit = std::process::Command::new(felix)
            .args(
                common2
                    .iter()
                    .chain(["cache", "get", "c", "k"].map(String::from).iter()),
            )
            .output()
            .expect("get");
        let miss = std::process::Command::new(felix)
            .args(
                common2
                    .iter()
                    .chain(["cache", "get", "c", "nope"].map(String::from).iter()),
            )
            .output()
            .expect("get");
        (put, hit, miss)
    })
    .await
    .expect("join");
    assert!(out.0.status.success());
    assert_eq!(String::from_utf8_lossy(&out.1.stdout).trim(), "hello");
    assert_eq!(out.2.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.2.stderr).contains("nope: not found"));
}

#[tokio::test]
async fn unacked_publishes_are_delivered_before_close_returns() {
    let b = broker(settings(), Authenticator::Dev).await;
    let c = client(&b).await;
    c.publish_batch("default", "fire", payloads("u", 50), Ack::None)
        .await
        .expect("unacked batch");
    for p in payloads("v", 50) {
        c.publish("default", "fire", p, Ack::None)
            .await
            .expect("unacked");
    }
    c.close().await;
    assert!(matches!(
        c.cache_get("default", "s", "k").await,
        Err(ClientError::Closed)
    ));
    let again = client(&b).await;
    let mut sub = again
        .subscribe("default", "fire", StartPosition::Earliest)
        .await
        .expect("subscribe");
    let got: Vec<Bytes> = events(&mut sub, 100)
        .await
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let mut want = payloads("u", 50);
    want.extend(payloads("v", 50));
    assert_eq!(got, want, "all delivered, in publish order");
}

#[tokio::test]
async fn an_untrusted_certificate_fails_at_once_with_a_tls_error() {
    let b = broker(settings(), Authenticator::Dev).await;
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("certificate")
        .cert
        .pem();
    let mut config = config(&b, "dev");
    config.trust = Trust::CertificatePem(other.into_bytes());
    let started = std::time::Instant::now();
    match Client::connect(config).await {
        Err(ClientError::Tls(e @ TlsError::Handshake { .. })) => {
            assert!(e.to_string().contains("certificate"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not retried until the connect timeout"
    );
}

#[tokio::test]
async fn no_broker_is_a_connect_error_within_the_connect_timeout() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = ClientConfig::builder(addr, Trust::InsecureSkipVerify)
        .credentials("t1", "dev")
        .connect_timeout(Duration::from_millis(500))
        .build();
    let started = std::time::Instant::now();
    match Client::connect(config).await {
        Err(e @ ClientError::Connect { addr: failed, .. }) => {
            assert_eq!(failed, addr);
            assert!(e.to_string().contains(&addr.to_string()), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// The broker's per-connection event writer takes subscriptions over while
/// it runs; every one of many made at once on one connection must be
/// served (a subscription lost in the hand-over would never see an event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_subscriptions_made_at_once_on_one_connection_all_receive_every_event() {
    const SUBSCRIPTIONS: usize = 400;
    let b = broker(settings(), Authenticator::Dev).await;
    let c = client(&b).await;
    let mut subscribing = tokio::task::JoinSet::new();
    for _ in 0..SUBSCRIPTIONS {
        let c = c.clone();
        subscribing.spawn(async move {
            c.subscribe("default", "burst", StartPosition::Latest)
                .await
                .expect("subscribe")
        });
    }
    let mut subs = Vec::new();
    while let Some(sub) = subscribing.join_next().await {
        subs.push(sub.expect("task"));
    }
    for i in 0..3u8 {
        c.publish("default", "burst", Bytes::from(vec![i]), Ack::PerMessage)
            .await
            .expect("publish");
    }
    let mut reading = tokio::task::JoinSet::new();
    for mut sub in subs {
        reading.spawn(async move { events(&mut sub, 3).await });
    }
    let mut served = 0;
    while let Some(got) = reading.join_next().await {
        let got: Vec<Bytes> = got.expect("task").into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, [vec![0u8], vec![1], vec![2]].map(Bytes::from));
        served += 1;
    }
    assert_eq!(served, SUBSCRIPTIONS);
    c.close().await;
}

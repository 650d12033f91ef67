//! The client's and the broker's QUIC settings together let path MTU
//! discovery grow packets past quinn's 1452-byte default on loopback, in
//! both directions, and never past [`felix_client::tls::MAX_UDP_PAYLOAD`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use felix_broker::tls::{self, TransportSettings};
use felix_client::{ClientConfig, Trust};

/// quinn's default upper bound, which a peer without our settings keeps.
const QUINN_DEFAULT: u16 = 1452;

#[tokio::test]
async fn packets_grow_past_1452_bytes_on_loopback_both_ways() {
    let dir = std::env::temp_dir().join(format!("felix-path-mtu-{}", std::process::id()));
    let material = tls::load_or_create_dev(&dir).expect("cert");
    let transport = TransportSettings {
        max_streams_per_connection: 16,
        keep_alive: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        ..TransportSettings::default()
    };
    let server = quinn::Endpoint::new(
        tls::endpoint_config(),
        Some(tls::server_config(&material, &transport).expect("server config")),
        std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"),
        Arc::new(quinn::TokioRuntime),
    )
    .expect("server endpoint");
    let config = ClientConfig::builder(
        server.local_addr().expect("addr"),
        Trust::CertificateFile(material.cert_path.clone()),
    )
    .credentials("t1", "dev")
    .build();
    let mut client = quinn::Endpoint::new(
        felix_client::tls::endpoint_config(),
        None,
        std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"),
        Arc::new(quinn::TokioRuntime),
    )
    .expect("client endpoint");
    client.set_default_client_config(felix_client::tls::quinn_config(&config).expect("config"));
    let accept = tokio::spawn(async move {
        let conn = server
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("handshake");
        (server, conn)
    });
    let to_server = client
        .connect(config.addrs()[0], "localhost")
        .expect("connect")
        .await
        .expect("handshake");
    let (_server, to_client) = accept.await.expect("accept task");
    // Discovery probes on its own after the handshake; wait for both ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mtus = || {
        (
            to_server.stats().path.current_mtu,
            to_client.stats().path.current_mtu,
        )
    };
    while Instant::now() < deadline {
        let (up, down) = mtus();
        if up > QUINN_DEFAULT && down > QUINN_DEFAULT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (up, down) = mtus();
    assert!(
        up > QUINN_DEFAULT && down > QUINN_DEFAULT,
        "client->broker MTU {up}, broker->client MTU {down}"
    );
    assert!(up <= felix_client::tls::MAX_UDP_PAYLOAD && down <= tls::MAX_UDP_PAYLOAD);
    let _ = std::fs::remove_dir_all(&dir);
}

//! `scripts/cluster-demo` as a user runs it: it starts three NATS
//! JetStream servers and three broker nodes, an event published on node 1
//! is read on node 2, a cache put on node 1 is read on node 3, and SIGTERM
//! (what Ctrl-C amounts to) stops every process and removes its data.
//!
//! Without `nats-server` on the PATH the test says so and passes
//! (`scripts/test` installs it, so CI always runs it).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use felix_client::{Ack, Client, ClientConfig, SubscriptionItem, Trust};
use felix_wire::StartPosition;

fn nats_available() -> bool {
    Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A base port whose three ports (and the ones at +100 and +200, for
/// NATS's routes and monitoring) are free now, for TCP or UDP.
fn free_base(udp: bool, seed: u16) -> u16 {
    let free = |p: u16| {
        if udp {
            UdpSocket::bind(("127.0.0.1", p)).is_ok()
        } else {
            TcpListener::bind(("127.0.0.1", p)).is_ok()
        }
    };
    (0..200)
        .map(|i| 20000 + (seed.wrapping_add(i * 397) % 30000))
        .find(|&base| {
            (0..3).all(|i| free(base + i) && free(base + 100 + i) && free(base + 200 + i))
        })
        .expect("free ports")
}

/// The demo, killed (SIGTERM, as Ctrl-C would) if the test fails early.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_demo_serves_one_cluster_and_stops_everything_on_sigterm() {
    if !nats_available() {
        eprintln!("skipped: nats-server is not installed (scripts/test installs it)");
        return;
    }
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_felix-broker"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let seed = std::process::id() as u16;
    let nats_port = free_base(false, seed);
    let broker_port = free_base(true, seed.wrapping_add(7919));
    let mut child = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/cluster-demo"
    ))
    .args(["--bin-dir", bin_dir.to_str().expect("utf8")])
    .args(["--nats-port", &nats_port.to_string()])
    .args(["--broker-port", &broker_port.to_string()])
    .env("FELIX_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .expect("run scripts/cluster-demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut demo = Demo(child);

    // Its output up to the "ready:" line, read on a thread (it never ends).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut text = String::new();
    let ready = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
                if let Some(addrs) = line.strip_prefix("ready: ") {
                    break addrs.to_string();
                }
            }
            Err(_) => panic!("the demo was not ready within 60 s:\n{text}"),
        }
    };
    let nodes: Vec<SocketAddr> = ready
        .split(',')
        .map(|a| a.parse().expect("an address"))
        .collect();
    assert_eq!(nodes.len(), 3, "{text}");
    let cert = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate:"))
        .map(|p| PathBuf::from(p.trim()))
        .unwrap_or_else(|| panic!("no certificate line:\n{text}"));
    let data_dir = cert
        .ancestors()
        .nth(3)
        .expect("the demo's data directory")
        .to_path_buf();
    assert!(text.contains("felix --addr"), "usage is printed:\n{text}");

    let client = |node: SocketAddr| {
        let config = ClientConfig::builder(node, Trust::CertificateFile(cert.clone()))
            .credentials("t1", "dev")
            .build();
        Client::connect(config)
    };
    let (one, two, three) = (
        client(nodes[0]).await.expect("node 1"),
        client(nodes[1]).await.expect("node 2"),
        client(nodes[2]).await.expect("node 3"),
    );
    one.publish("default", "orders", Bytes::from("hello"), Ack::PerMessage)
        .await
        .expect("publish on node 1");
    let mut sub = two
        .subscribe("default", "orders", StartPosition::Earliest)
        .await
        .expect("subscribe on node 2");
    match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
        Ok(Some(Ok(SubscriptionItem::Event(e)))) => {
            assert_eq!((e.offset, e.payload), (Some(0), Bytes::from("hello")))
        }
        other => panic!("node 2 did not deliver node 1's event: {other:?}"),
    }
    one.cache_put("default", "sessions", "k1", Bytes::from("v1"), None)
        .await
        .expect("cache put on node 1");
    assert_eq!(
        three
            .cache_get("default", "sessions", "k1")
            .await
            .expect("cache get on node 3")
            .as_deref(),
        Some(&b"v1"[..])
    );
    drop(sub);
    for c in [one, two, three] {
        c.close().await;
    }

    // SIGTERM: everything it started stops, and its data goes.
    let pid = demo.0.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = demo.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not stop within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "stopped by a signal: {status:?}");
    assert!(!data_dir.exists(), "{} was left behind", data_dir.display());
    for i in 0..3 {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", nats_port + i)).is_err(),
            "NATS server {i} still listens"
        );
        assert!(
            UdpSocket::bind(nodes[i as usize]).is_ok(),
            "broker {i} still holds its port"
        );
    }
}

//! The runner against cluster nodes: two reference brokers in cluster mode
//! on one real `nats-server` (JetStream). The live suite passes against
//! node B (a node other than the one that made the streams), and the
//! `cluster` mode's cross-node cases pass across A and B.
//!
//! Without `nats-server` on the PATH the test says so and passes
//! (`scripts/test` installs it, so CI always runs it).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use felix_broker::cluster::ClusterSettings;
use felix_broker::core::CoreSettings;
use felix_broker::embedded::{EmbeddedBroker, EmbeddedConfig};

/// One `nats-server -js` on a free loopback port, killed when dropped.
struct Nats {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nats {
    fn available() -> bool {
        Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts it and waits until it listens (a single server has
    /// JetStream enabled before it accepts clients).
    fn start() -> Nats {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!(
            "felix-conformance-nats-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("store dir");
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats { child, port, dir }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn node(nats: &Nats) -> EmbeddedBroker {
    EmbeddedConfig {
        core: CoreSettings {
            batch_linger: Duration::ZERO,
            ..CoreSettings::default()
        },
        ..EmbeddedConfig::default()
    }
    .start_clustered(ClusterSettings {
        urls: vec![format!("nats://127.0.0.1:{}", nats.port)],
        ..ClusterSettings::default()
    })
    .await
    .expect("a cluster node starts")
}

async fn runner(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_felix-conformance"))
            .args(&args)
            .output()
            .expect("run felix-conformance")
    })
    .await
    .expect("runner thread")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_suite_passes_on_node_b_and_the_cross_node_cases_across_a_and_b() {
    if !Nats::available() {
        eprintln!("skipped: nats-server is not installed (scripts/test installs it)");
        return;
    }
    let nats = Nats::start();
    let a = node(&nats).await;
    let b = node(&nats).await;
    let path = |n: &EmbeddedBroker| n.cert_path().display().to_string();

    let live = runner(vec![
        "broker".into(),
        "--addr".into(),
        b.local_addr().to_string(),
        "--cert".into(),
        path(&b),
        "--format".into(),
        "json".into(),
    ])
    .await;
    assert!(
        live.status.success(),
        "live suite on node B:\n{}",
        text(&live)
    );
    let report: serde_json::Value = serde_json::from_slice(&live.stdout).expect("JSON report");
    let cases = report["cases"].as_array().expect("cases");
    // Every case ran on B and passed, but too_old: it is not applicable
    // without --replay-capacity (JetStream keeps the whole history).
    assert!(
        cases
            .iter()
            .filter(|c| c["id"] != "broker/pubsub/cursor_too_old")
            .all(|c| c["verdict"] == "pass"),
        "{}",
        text(&live)
    );

    let cross = runner(vec![
        "cluster".into(),
        "--addr".into(),
        a.local_addr().to_string(),
        "--addr".into(),
        b.local_addr().to_string(),
        "--cert".into(),
        path(&a),
        "--cert".into(),
        path(&b),
    ])
    .await;
    let out = text(&cross);
    assert!(
        cross.status.success(),
        "cluster mode across A and B:\n{out}"
    );
    for id in [
        "cluster/pubsub/order_and_offsets",
        "cluster/pubsub/one_order_for_publishers_on_two_nodes",
        "cluster/pubsub/resume_on_another_node",
        "cluster/cache/put_on_one_get_on_another",
        "cluster/cache/ttl_expiry_everywhere",
    ] {
        assert!(
            out.contains(&format!("PASS  {id}")),
            "{id} did not pass:\n{out}"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cross_node_cases_fail_across_two_independent_brokers() {
    // Two single-node brokers share nothing: every cross-node case must
    // say so (no NATS needed).
    let start = || {
        EmbeddedConfig {
            core: CoreSettings {
                batch_linger: Duration::ZERO,
                ..CoreSettings::default()
            },
            ..EmbeddedConfig::default()
        }
        .start()
        .expect("start")
    };
    let (a, b) = (start(), start());
    let cross = runner(vec![
        "cluster".into(),
        "--addr".into(),
        a.local_addr().to_string(),
        "--addr".into(),
        b.local_addr().to_string(),
        "--cert".into(),
        a.cert_path().display().to_string(),
        "--cert".into(),
        b.cert_path().display().to_string(),
        "--timeout-ms".into(),
        "500".into(),
    ])
    .await;
    let out = text(&cross);
    assert_eq!(cross.status.code(), Some(1), "{out}");
    assert!(out.contains("5 failed"), "{out}");
    assert!(
        out.contains("reading A's put on node B"),
        "the failure names the node and what it missed:\n{out}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[test]
fn cluster_mode_needs_two_nodes() {
    let o = Command::new(env!("CARGO_BIN_EXE_felix-conformance"))
        .args(["cluster", "--addr", "127.0.0.1:5000", "--insecure"])
        .output()
        .expect("run felix-conformance");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("two or more --addr"),
        "{}",
        text(&o)
    );
}

//! Real `nats-server` processes on loopback for the cluster tests: one
//! JetStream server, or a 3-node JetStream cluster (R3) whose nodes can be
//! killed and restarted. Each server gets its own temp directory and
//! ports; every process is killed when its handle drops.
//!
//! `scripts/test` installs `nats-server` (Debian's 2.9.x) when missing;
//! [`NatsServer::available`] lets a test skip with a message rather than
//! fail on a machine that has none.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{temp_dir, TempDir};

/// A free loopback TCP port: bound, read and released. Another process
/// could take it before the server binds it; on a test machine the window
/// is small and a failed start says so.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One `nats-server` process (a node of a cluster, or alone).
pub(crate) struct NatsNode {
    pub(crate) name: String,
    pub(crate) port: u16,
    args: Vec<String>,
    store: PathBuf,
    child: Option<Child>,
}

impl NatsNode {
    /// `nats://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log =
            std::fs::File::create(self.store.join(format!("{}.log", self.name))).expect("log file");
        let child = Command::new("nats-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts (scripts/test installs it)");
        self.child = Some(child);
        wait_for_port(self.port);
    }

    /// Kills the process (SIGKILL: no goodbye to its peers).
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again with the same ports and store.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A JetStream server or cluster.
pub(crate) struct NatsServer {
    pub(crate) nodes: Vec<NatsNode>,
    _dir: TempDir,
}

impl NatsServer {
    /// Whether `nats-server` is on the PATH.
    pub(crate) fn available() -> bool {
        Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// One server with JetStream (`-js`).
    pub(crate) fn single() -> NatsServer {
        let dir = temp_dir("nats");
        let port = free_port();
        let store = dir.0.join("n0");
        std::fs::create_dir_all(&store).expect("store dir");
        let args = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-js".into(),
            "-sd".into(),
            store.display().to_string(),
            "-n".into(),
            "n0".into(),
        ];
        let mut node = NatsNode {
            name: "n0".into(),
            port,
            args,
            store,
            child: None,
        };
        node.spawn();
        NatsServer {
            nodes: vec![node],
            _dir: dir,
        }
    }

    /// Three JetStream servers routed into one cluster.
    pub(crate) fn cluster3() -> NatsServer {
        let dir = temp_dir("nats3");
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let name = format!("n{i}");
            let store = dir.0.join(&name);
            std::fs::create_dir_all(&store).expect("store dir");
            let args = vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                client_ports[i].to_string(),
                "-js".into(),
                "-sd".into(),
                store.display().to_string(),
                "-n".into(),
                name.clone(),
                "--cluster_name".into(),
                "felix-test".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{}", route_ports[i]),
                "--routes".into(),
                routes.clone(),
            ];
            nodes.push(NatsNode {
                name,
                port: client_ports[i],
                args,
                store,
                child: None,
            });
        }
        for n in &mut nodes {
            n.spawn();
        }
        NatsServer { nodes, _dir: dir }
    }

    /// Every node's URL, comma-separated (the `--cluster` value).
    pub(crate) fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsNode::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until JetStream answers on every node (a cluster elects its
    /// meta leader a moment after the processes listen).
    pub(crate) async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &self.nodes {
            loop {
                let result = async {
                    let client = async_nats::connect(node.url())
                        .await
                        .map_err(|e| e.to_string())?;
                    // Account info's raw reply: async-nats's typed one
                    // expects 2.10+ fields.
                    let reply = client
                        .request("$JS.API.INFO", "".into())
                        .await
                        .map_err(|e| e.to_string())?;
                    let text = String::from_utf8_lossy(&reply.payload).into_owned();
                    if text.contains("\"error\"") {
                        return Err(text);
                    }
                    Ok(())
                }
                .await;
                if result.is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "JetStream not ready on {}: {result:?}",
                    node.url()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

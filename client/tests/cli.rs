//! The `felix` binary against an embedded broker: host names in --addr,
//! binary payloads both ways, why `sub` ended (on standard error and in
//! the exit status), the hints for a missing broker and a wrong
//! certificate, and shell completions.

mod support;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use felix_broker::embedded::EmbeddedBroker;
use support::broker;
use tokio::io::{AsyncBufReadExt, BufReader};

const FELIX: &str = env!("CARGO_BIN_EXE_felix");

/// `--addr localhost:PORT --cert CERT`: the broker by host name.
fn by_name(b: &EmbeddedBroker) -> Vec<String> {
    vec![
        "--addr".into(),
        format!("localhost:{}", b.local_addr().port()),
        "--cert".into(),
        b.cert_path().display().to_string(),
    ]
}

/// Runs `felix` with `args`, `stdin` on its standard input.
async fn felix(args: Vec<String>, stdin: &[u8]) -> Output {
    let stdin = stdin.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(FELIX)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start felix");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(&stdin).expect("write stdin");
        drop(input);
        child.wait_with_output().expect("felix runs")
    })
    .await
    .expect("join")
}

fn args(common: &[String], more: &[&str]) -> Vec<String> {
    common
        .iter()
        .cloned()
        .chain(more.iter().map(|s| s.to_string()))
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("felix-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_payloads_go_through_byte_exact_by_host_name() {
    let b = broker();
    let common = by_name(&b);
    let dir = scratch("binary");
    // Every byte value, and line ends that a line reader would eat.
    let every_byte: Vec<u8> = (0..=255u8).chain(*b"\r\n\n").collect();
    let file = dir.join("every-byte.bin");
    std::fs::write(&file, &every_byte).expect("write");

    let o = felix(
        args(
            &common,
            &["pub", "bin", "--file", file.to_str().expect("utf8")],
        ),
        b"",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let dash = b"\x00first\nsecond\r\n\xff";
    let o = felix(args(&common, &["pub", "bin", "-"]), dash).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let flag = b"\n\n";
    let o = felix(args(&common, &["pub", "bin", "--stdin"]), flag).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "published 1 message(s) to bin"
    );

    // --raw: the payload's bytes and nothing else.
    let o = felix(
        args(
            &common,
            &["sub", "bin", "--start", "earliest", "--count", "1", "--raw"],
        ),
        b"",
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(o.stdout, every_byte);
    assert!(
        stderr(&o).contains("received 1 event(s) from bin (--count reached)"),
        "{}",
        stderr(&o)
    );

    // --json: each payload in base64.
    let o = felix(
        args(
            &common,
            &[
                "--json", "sub", "bin", "--start", "earliest", "--count", "3",
            ],
        ),
        b"",
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got: Vec<Vec<u8>> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            base64::engine::general_purpose::STANDARD
                .decode(v["payload_base64"].as_str().expect("base64"))
                .expect("valid base64")
        })
        .collect();
    assert_eq!(got, [every_byte, dash.to_vec(), flag.to_vec()]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `felix sub STREAM` and waits until it has subscribed; returns
/// the child and the rest of its standard error.
async fn subscribed(
    common: &[String],
    stream: &str,
) -> (
    tokio::process::Child,
    BufReader<tokio::process::ChildStderr>,
) {
    let mut child = tokio::process::Command::new(FELIX)
        .args(args(common, &["sub", stream]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start felix sub");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            line.clear();
            let n = err.read_line(&mut line).await.expect("read stderr");
            assert!(n > 0, "felix sub exited before subscribing");
            if line.contains("subscribed to") {
                return;
            }
        }
    })
    .await
    .expect("subscribed in time");
    (child, err)
}

async fn rest(mut err: BufReader<tokio::process::ChildStderr>) -> String {
    let mut s = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut err, &mut s)
        .await
        .expect("read stderr");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_says_when_the_broker_ended_the_subscription() {
    let b = broker();
    let (mut child, err) = subscribed(&by_name(&b), "drained").await;
    b.shutdown().await;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("felix sub exits")
        .expect("wait");
    let err = rest(err).await;
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(
        err.contains("the broker ended the subscription to drained after 0 event(s)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_says_it_was_interrupted() {
    let b = broker();
    let (mut child, err) = subscribed(&by_name(&b), "quiet").await;
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("felix sub exits")
        .expect("wait");
    let err = rest(err).await;
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted after 0 event(s) from quiet"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_gives_the_brokers_reason_when_it_cannot_subscribe() {
    let b = broker();
    let o = felix(args(&by_name(&b), &["sub", "empty", "--start", "100"]), b"").await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "the subscription to empty failed after 0 event(s): offset 100 is in the future"
        ),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_broker_at_the_address_gets_a_hint() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let o = felix(
        vec![
            "--addr".into(),
            addr.clone(),
            "--insecure".into(),
            "--connect-timeout-ms".into(),
            "300".into(),
            "pub".into(),
            "s".into(),
            "m".into(),
        ],
        b"",
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("cannot connect to the broker at {addr}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("felix: hint: is the broker running at {addr}?")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_certificate_gets_a_hint_naming_cert() {
    let b = broker();
    let dir = scratch("tls");
    let other = dir.join("other.pem");
    let pem = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("certificate")
        .cert
        .pem();
    std::fs::write(&other, pem).expect("write");
    let o = felix(
        vec![
            "--addr".into(),
            b.local_addr().to_string(),
            "--cert".into(),
            other.display().to_string(),
            "pub".into(),
            "s".into(),
            "m".into(),
        ],
        b"",
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "felix: hint: the broker's certificate does not match --cert {}",
            other.display()
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_file_is_reported_before_connecting() {
    // Nothing listens on port 1: had it connected first, the error would
    // be about the broker.
    let o = std::process::Command::new(FELIX)
        .args([
            "--addr",
            "127.0.0.1:1",
            "--insecure",
            "pub",
            "s",
            "--file",
            "/no/such/payload.bin",
        ])
        .output()
        .expect("run felix");
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("felix: --file /no/such/payload.bin: "),
        "{err}"
    );
    assert!(!err.contains("cannot connect"), "{err}");
}

#[test]
fn completions_for_bash_zsh_and_fish_need_no_broker() {
    for (shell, marker) in [
        ("bash", "complete -F _felix"),
        ("zsh", "#compdef felix"),
        ("fish", "complete -c felix"),
    ] {
        let o = std::process::Command::new(FELIX)
            .args(["--addr", "127.0.0.1:1", "completions", shell])
            .output()
            .expect("run felix");
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        for sub in ["pub", "sub", "cache", "completions"] {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
        assert!(
            script.contains("--raw") && script.contains("--file"),
            "{shell}"
        );
    }
}

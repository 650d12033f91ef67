//! The runner as a CI job meets it (issue 19): vectors shipped in the
//! binary, a preflight that stops at once, each case printed as it
//! finishes, `--quiet` and `--strict`, failure detail, testee hygiene, a
//! closed stdout, report metadata and the HTML report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use felix_broker::tls::{self, TransportSettings};
use felix_wire::{ErrorMessage, Frame, FrameDecoder, Message};

const BIN: &str = env!("CARGO_BIN_EXE_felix-conformance");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "felix-conformance-runner-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// Runs the binary in `dir`, which is outside the checkout.
fn runner_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run felix-conformance")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A codec testee in Python: `body` handles one parsed request `req`
/// (hello already answered) and prints the answer.
fn testee(dir: &Path, name: &str, body: &str) -> String {
    let script = dir.join(format!("{name}.py"));
    let text = format!(
        "import json, sys, os, time\nfor line in sys.stdin:\n    req = json.loads(line)\n    if req['op'] == 'hello':\n        print(json.dumps({{'id': req['id'], 'result': 'ok', 'name': '{name}', 'version': '0'}}), flush=True)\n        continue\n    if req['op'] == 'bye':\n        break\n{body}\n"
    );
    std::fs::write(&script, text).expect("write testee");
    format!("python3 {}", script.display())
}

#[test]
fn vectors_run_from_outside_the_checkout_from_the_binary() {
    // A decoy ./vectors in the working directory is not picked up: the
    // default is the set embedded at build time.
    let dir = scratch("outside");
    std::fs::create_dir_all(dir.join("vectors")).expect("dir");
    std::fs::write(dir.join("vectors/broken.json"), "{ not json").expect("decoy");
    let o = runner_in(&dir, &["vectors", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert!(report["summary"]["passed"].as_u64().expect("passed") >= 175);
    let source = report["run"]["vectors"].as_str().expect("source named");
    assert!(
        source.starts_with("embedded in felix-conformance"),
        "{source}"
    );
    // --dir overrides, and the error names the file.
    let o = runner_in(&dir, &["vectors", "--dir", "vectors"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("broken.json"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_live_run_against_nothing_listening_exits_2_within_20_s() {
    // A port nobody listens on: bind one, then let it go.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    let o = runner_in(
        &std::env::temp_dir(),
        &["broker", "--addr", &addr, "--insecure"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    let err = stderr(&o);
    assert!(err.contains("preflight: cannot reach the broker"), "{err}");
    assert!(!stdout(&o).contains("FAIL"), "no case ran: {}", stdout(&o));
}

/// A broker that answers every frame with an error frame carrying `text`.
async fn refuser(dir: &Path, text: &'static str) -> (quinn::Endpoint, PathBuf) {
    let material = tls::load_or_create_dev(dir).expect("cert");
    let server = tls::server_config(&material, &TransportSettings::default()).expect("config");
    let endpoint =
        quinn::Endpoint::server(server, "127.0.0.1:0".parse().expect("addr")).expect("bind");
    let accept = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accept.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let mut buf = BytesMut::new();
                        let mut decoder = FrameDecoder::new();
                        let reply = Frame::Json(Message::Error(ErrorMessage {
                            message: text.into(),
                        }))
                        .to_bytes()
                        .expect("encode");
                        while let Ok(Some(chunk)) = recv.read_chunk(65536, true).await {
                            buf.extend_from_slice(&chunk.bytes);
                            while let Ok(Some(_)) = decoder.decode_envelope(&mut buf) {
                                if send.write_all(&reply).await.is_err() {
                                    return;
                                }
                            }
                        }
                    });
                }
            });
        }
    });
    (endpoint, material.cert_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_auth_stops_the_run_with_the_brokers_words() {
    let dir = scratch("refused");
    let (endpoint, cert) = refuser(&dir, "invalid token for tenant t1").await;
    let addr = endpoint.local_addr().expect("addr").to_string();
    let cert = cert.to_str().expect("utf8").to_string();
    let o = tokio::task::spawn_blocking(move || {
        runner_in(
            &std::env::temp_dir(),
            &["broker", "--addr", &addr, "--cert", &cert],
        )
    })
    .await
    .expect("join");
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("refused auth") && err.contains("\"invalid token for tenant t1\""),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_case_is_printed_and_quiet_hides_passes() {
    let tmp = std::env::temp_dir();
    let o = runner_in(&tmp, &["vectors", "--filter", "vectors/json/ok/"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("PASS  vectors/json/ok/basic"), "{out}");
    assert!(out
        .lines()
        .last()
        .expect("totals")
        .ends_with(" passed, 0 failed"));
    let o = runner_in(
        &tmp,
        &["vectors", "--quiet", "--filter", "vectors/json/ok/"],
    );
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).lines().next(),
        Some(
            format!(
                "vectors: embedded in felix-conformance {}",
                env!("CARGO_PKG_VERSION")
            )
            .as_str()
        ),
        "the source, then the totals only"
    );
    assert_eq!(stdout(&o).lines().count(), 3, "{}", stdout(&o));
    // With a JSON report on stdout, the progress goes to stderr.
    let o = runner_in(
        &tmp,
        &[
            "vectors",
            "--format",
            "json",
            "--filter",
            "vectors/json/ok/",
        ],
    );
    assert!(stderr(&o).contains("PASS  vectors/json/ok/basic"));
    serde_json::from_str::<serde_json::Value>(&stdout(&o)).expect("clean JSON");
}

#[test]
fn nothing_passed_never_exits_0_and_strict_counts_unsupported() {
    let dir = scratch("strict");
    let none = testee(
        &dir,
        "nothing",
        "    print(json.dumps({'id': req['id'], 'result': 'unsupported', 'message': 'no'}), flush=True)",
    );
    let o = runner_in(
        &dir,
        &["codec", "--cmd", &none, "--filter", "vectors/json/ok/"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    // Decodes by asking felix-conformance's own decoder, but encodes nothing.
    let decode_only = testee(
        &dir,
        "decode_only",
        &format!(
            "    if req['op'] == 'decode':\n        import subprocess\n        out = subprocess.run(['{BIN}', 'decode'], input=req['frame'], capture_output=True, text=True).stdout\n        print(json.dumps({{'id': req['id'], 'result': 'ok', 'decoded': json.loads(out)}}), flush=True)\n    else:\n        print(json.dumps({{'id': req['id'], 'result': 'unsupported', 'message': 'no encoder'}}), flush=True)"
        ),
    );
    let args = [
        "codec",
        "--cmd",
        &decode_only,
        "--filter",
        "vectors/json/ok/basic",
    ];
    let o = runner_in(&dir, &args);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("UNSUP vectors/json/ok/basic/encode"));
    let o = runner_in(&dir, &[&args[..], &["--quiet"]].concat());
    assert!(!stdout(&o).contains("UNSUP"), "quiet hides unsupported");
    let o = runner_in(&dir, &[&args[..], &["--strict"]].concat());
    assert_eq!(o.status.code(), Some(1), "strict fails on unsupported");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A testee that gets one field and one byte wrong.
fn wrong_testee(dir: &Path) -> String {
    testee(
        dir,
        "wrong",
        "    if req['op'] == 'decode':\n        print(json.dumps({'id': req['id'], 'result': 'ok', 'decoded': {'flags': 0, 'kind': 'ok', 'fields': {'extra': 1}}}), flush=True)\n    else:\n        print(json.dumps({'id': req['id'], 'result': 'ok', 'frame': '464c5831000100000000000d7b2274797065223a226f6b227e'}), flush=True)",
    )
}

#[test]
fn failures_name_the_field_the_byte_and_the_input() {
    let dir = scratch("detail");
    let cmd = wrong_testee(&dir);
    let o = runner_in(
        &dir,
        &["codec", "--cmd", &cmd, "--filter", "vectors/json/ok/basic"],
    );
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("decoded differs: fields.extra: unexpected (got 1)"),
        "{out}"
    );
    assert!(
        out.contains("first differing byte at offset 24 (want 0x7d, got 0x7e)"),
        "{out}"
    );
    assert!(
        out.contains("input: 464c5831000100000000000d7b2274797065223a226f6b227d"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_crash_is_reported_with_exit_status_and_stderr_tail() {
    let dir = scratch("crash");
    let cmd = testee(
        &dir,
        "crasher",
        "    sys.stderr.write('Traceback: codec exploded on ' + req['op'] + '\\n'); sys.stderr.flush(); sys.exit(3)",
    );
    let o = runner_in(
        &dir,
        &["codec", "--cmd", &cmd, "--filter", "vectors/json/ok/basic"],
    );
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("exit status: 3"), "{out}");
    assert!(out.contains("Traceback: codec exploded on decode"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_hung_testee_is_killed_with_its_children() {
    let dir = scratch("hung");
    let pids = dir.join("pids");
    // Each instance starts a grandchild and then hangs on decode.
    let cmd = testee(
        &dir,
        "hung",
        &format!(
            "    import subprocess\n    p = subprocess.Popen(['sleep', '300'])\n    open('{}', 'a').write(str(p.pid) + '\\n')\n    time.sleep(300)",
            pids.display()
        ),
    );
    let o = runner_in(
        &dir,
        &[
            "codec",
            "--cmd",
            &cmd,
            "--timeout-ms",
            "500",
            "--filter",
            "vectors/json/ok/basic",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("no answer within 500 ms"),
        "{}",
        stdout(&o)
    );
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&pids).expect("the testee ran");
    for pid in text.lines() {
        let alive = Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(!alive, "grandchild {pid} of a killed testee lives on");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_silent_testee_is_a_named_start_up_timeout() {
    let dir = scratch("silent");
    let cmd = "sleep 30".to_string();
    let t0 = Instant::now();
    let o = runner_in(
        &dir,
        &["codec", "--cmd", &cmd, "--startup-timeout-ms", "500"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(
        stderr(&o)
            .contains("start-up timeout: the testee `sleep 30` did not answer hello within 500 ms"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_closed_stdout_is_not_a_panic() {
    let o = Command::new("bash")
        .arg("-c")
        .arg("\"$0\" vectors | head -1; exit ${PIPESTATUS[0]}")
        .arg(BIN)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("bash");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 1);
}

#[test]
fn reports_carry_the_run_and_junit_the_reason() {
    let dir = scratch("meta");
    let cmd = wrong_testee(&dir);
    let junit = dir.join("junit.xml");
    let o = runner_in(
        &dir,
        &[
            "codec",
            "--cmd",
            &cmd,
            "--filter",
            "vectors/json/ok/basic",
            "--format",
            "json",
            "--junit",
            junit.to_str().expect("utf8"),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    let run = &report["run"];
    assert_eq!(run["testee"], cmd.as_str());
    assert_eq!(run["testee_announced"], "wrong 0");
    assert_eq!(run["mode"], "codec");
    assert!(run["timestamp"].as_str().expect("timestamp").ends_with('Z'));
    assert_eq!(report["version"], env!("CARGO_PKG_VERSION"));
    // Case descriptions: the vector's comment.
    let o = runner_in(
        &dir,
        &[
            "vectors",
            "--format",
            "json",
            "--filter",
            "vectors/invalid/header/bad_magic",
        ],
    );
    let vectors: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(
        vectors["cases"][0]["description"],
        "Magic FLX2 instead of FLX1."
    );
    let xml = std::fs::read_to_string(&junit).expect("junit");
    let doc = roxmltree::Document::parse(&xml).expect("valid XML");
    let failure = doc
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .expect("a failure");
    assert!(
        failure
            .attribute("message")
            .expect("message")
            .starts_with("FAIL: decoded differs: fields.extra"),
        "{xml}"
    );
    // --list --format json gives objects.
    let o = runner_in(
        &dir,
        &[
            "--list",
            "--format",
            "json",
            "--filter",
            "vectors/json/ok/basic",
        ],
    );
    let list: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json list");
    assert_eq!(list[0]["id"], "vectors/json/ok/basic");
    assert_eq!(list[0]["level"], "required");
    let _ = std::fs::remove_dir_all(&dir);
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn the_html_report_of_a_failing_run_shows_the_detail() {
    let dir = scratch("html");
    let cmd = wrong_testee(&dir);
    let page = dir.join("report.html");
    let o = runner_in(
        &dir,
        &[
            "codec",
            "--cmd",
            &cmd,
            "--filter",
            "vectors/json/ok/",
            "--html",
            page.to_str().expect("utf8"),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let html = std::fs::read_to_string(&page).expect("html written");
    assert!(html.contains("FAILED") && html.contains("first differing byte at offset 24"));
    assert!(
        !html.contains("<script") && !html.contains("<link"),
        "self-contained"
    );
    let Some(chromium) = chromium() else {
        eprintln!("note: no chromium: the HTML report was checked without a screenshot");
        return;
    };
    let png = dir.join("report.png");
    let profile = dir.join("profile");
    let s = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium");
    assert!(s.status.success(), "{}", stderr(&s));
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    // A blank 1280x900 page compresses to a few KiB; text and colour do not.
    assert!(
        bytes.len() > 20_000,
        "a trivial screenshot: {} bytes",
        bytes.len()
    );
    // Kept for a human look: FELIX_KEEP_SCREENSHOT=path copies it there.
    if let Some(keep) = std::env::var_os("FELIX_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&png, keep);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_hung_client_driver_is_killed_with_its_children() {
    let dir = scratch("hung-client");
    let pids = dir.join("pids");
    let script = dir.join("hung_client.py");
    std::fs::write(
        &script,
        format!(
            "import json, sys, subprocess, time\nfor line in sys.stdin:\n    req = json.loads(line)\n    if req['op'] == 'hello':\n        print(json.dumps({{'id': req['id'], 'result': 'ok', 'name': 'hung', 'version': '0'}}), flush=True)\n        continue\n    if req['op'] == 'bye':\n        break\n    p = subprocess.Popen(['sleep', '300'])\n    open('{}', 'a').write(str(p.pid) + '\\n')\n    time.sleep(300)\n",
            pids.display()
        ),
    )
    .expect("write driver");
    let cmd = format!("python3 {}", script.display());
    let o = runner_in(
        &dir,
        &[
            "client",
            "--cmd",
            &cmd,
            "--timeout-ms",
            "300",
            "--filter",
            "client/auth/first_frame_on_every_stream",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&pids).expect("the driver ran");
    for pid in text.lines() {
        let alive = Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(
            !alive,
            "grandchild {pid} of a killed client driver lives on"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_silent_client_driver_is_a_named_start_up_timeout() {
    let o = runner_in(
        &std::env::temp_dir(),
        &[
            "client",
            "--cmd",
            "sleep 30",
            "--timeout-ms",
            "300",
            "--startup-timeout-ms",
            "400",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "start-up timeout: the client driver `sleep 30` did not answer hello within 400 ms"
        ),
        "{}",
        stderr(&o)
    );
}

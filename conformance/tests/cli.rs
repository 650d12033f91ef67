//! The runner as CI pipelines use it: listing, filtering, reports, exit
//! codes, expected failures, and precise failures against brokers that
//! misbehave.

use std::process::{Command, Output};

use bytes::BytesMut;
use felix_broker::core::CoreSettings;
use felix_broker::embedded::{EmbeddedBroker, EmbeddedConfig};
use felix_broker::tls::{self, TransportSettings};
use felix_wire::{Frame, FrameDecoder, Message, OkMessage};

fn runner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_felix-conformance"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run felix-conformance")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "felix-conformance-cli-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

#[test]
fn list_shows_stable_hierarchical_ids() {
    let o = runner(&["--list"]);
    assert!(o.status.success());
    let ids = stdout(&o);
    for id in [
        "vectors/json/cache_put/ttl_null",
        "vectors/binary/binary_shared_event_batch/with_offsets",
        "broker/pubsub/fanout",
        "broker/cache/request_id_mux",
    ] {
        assert!(ids.lines().any(|l| l == id), "{id} not listed");
    }
    let filtered = stdout(&runner(&["--list", "--filter", "broker/cache/"]));
    assert!(
        filtered.lines().all(|l| l.starts_with("broker/cache/")) && filtered.lines().count() >= 5
    );
}

#[test]
fn json_and_junit_reports_are_well_formed() {
    let dir = scratch("reports");
    let junit = dir.join("junit.xml");
    let o = runner(&[
        "vectors",
        "--filter",
        "vectors/json/cache",
        "--format",
        "json",
        "--junit",
        junit.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json report");
    assert_eq!(report["summary"]["failed"], 0);
    assert!(report["summary"]["passed"].as_u64().expect("count") >= 5);
    assert!(report["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .all(|c| c["id"]
            .as_str()
            .expect("id")
            .starts_with("vectors/json/cache")));
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    let doc = roxmltree::Document::parse(&xml).expect("valid XML");
    let suites: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 1);
    let cases = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    assert_eq!(
        suites[0].attribute("tests"),
        Some(cases.to_string().as_str())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn expected_failures_that_pass_fail_the_run() {
    let dir = scratch("xfail");
    let list = dir.join("expected.txt");
    std::fs::write(&list, "# stale entry\nvectors/json/ok/basic\n").expect("write");
    let o = runner(&[
        "vectors",
        "--filter",
        "vectors/json/ok/",
        "--expected-failures",
        list.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("XPASS vectors/json/ok/basic"),
        "{}",
        stdout(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(runner(&["--format", "yaml"]).status.code(), Some(2));
    assert_eq!(runner(&["broker"]).status.code(), Some(2));
    assert_eq!(
        runner(&["--filter", "nothing/matches"]).status.code(),
        Some(2)
    );
}

#[test]
fn decode_and_encode_round_trip_for_debugging() {
    let dir = scratch("inspect");
    let input = dir.join("frame.hex");
    std::fs::write(
        &input,
        "464c5831 0001 0000 0000000d 7b2274797065223a226f6b227d\n",
    )
    .expect("write");
    let o = runner(&["decode", input.to_str().expect("utf8")]);
    assert!(o.status.success());
    let neutral = stdout(&o);
    assert_eq!(neutral.trim(), r#"{"flags":0,"kind":"ok","fields":{}}"#);
    let json = dir.join("frame.json");
    std::fs::write(&json, &neutral).expect("write");
    assert_eq!(
        stdout(&runner(&["encode", json.to_str().expect("utf8")])).trim(),
        "464c5831000100000000000d7b2274797065223a226f6b227d"
    );
    std::fs::write(&input, "464c5832000100000000000d").expect("write");
    let o = runner(&["decode", input.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("[bad_magic]"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts our broker with a replay ring of 8 (the suite is told 1024).
fn small_ring_broker() -> EmbeddedBroker {
    EmbeddedConfig {
        core: CoreSettings {
            replay_capacity: 8,
            ..CoreSettings::default()
        },
        ..EmbeddedConfig::default()
    }
    .start()
    .expect("start")
}

/// A broker that answers every frame on every stream with `ok` and never
/// opens event streams: wrong in many ways.
async fn yes_man(dir: &std::path::Path) -> (quinn::Endpoint, std::path::PathBuf) {
    let material = tls::load_or_create_dev(dir).expect("cert");
    let transport = TransportSettings::default();
    let server = tls::server_config(&material, &transport).expect("config");
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
                        let ok = Frame::Json(Message::Ok(OkMessage {}))
                            .to_bytes()
                            .expect("encode");
                        while let Ok(Some(chunk)) = recv.read_chunk(65536, true).await {
                            buf.extend_from_slice(&chunk.bytes);
                            while let Ok(Some(_)) = decoder.decode_envelope(&mut buf) {
                                if send.write_all(&ok).await.is_err() {
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
async fn the_live_suite_fails_precisely_against_a_misbehaving_broker() {
    let dir = scratch("misbehaving");
    let (endpoint, cert) = yes_man(&dir).await;
    let addr = endpoint.local_addr().expect("addr").to_string();
    let cert = cert.to_str().expect("utf8").to_string();
    let out = tokio::task::spawn_blocking(move || {
        runner(&[
            "broker",
            "--addr",
            &addr,
            "--cert",
            &cert,
            "--timeout-ms",
            "500",
            "--filter",
            "broker/auth/",
            "--filter",
            "broker/publish/json_acked",
        ])
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(1));
    let report = stdout(&out);
    assert!(
        report.contains("PASS  broker/auth/ok_without_client_flags")
            || !report.contains("FAIL  broker/auth/ok_without_client_flags"),
        "{report}"
    );
    assert!(
        report.contains("FAIL  broker/auth/auth_ok_with_client_flags"),
        "{report}"
    );
    assert!(
        report.contains("expected auth_ok, got {\"flags\":0,\"kind\":\"ok\",\"fields\":{}}"),
        "{report}"
    );
    assert!(report.contains("FAIL  broker/auth/required"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misconfigured_replay_ring_is_named_in_the_failure() {
    let broker = small_ring_broker();
    let addr = broker.local_addr().to_string();
    let cert = broker.cert_path().to_str().expect("utf8").to_string();
    let out = tokio::task::spawn_blocking(move || {
        runner(&[
            "broker",
            "--addr",
            &addr,
            "--cert",
            &cert,
            "--replay-capacity",
            "1024",
            "--filter",
            "broker/pubsub/cursor_too_old",
        ])
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("for a replay ring of 1024 (--replay-capacity)"),
        "{}",
        stdout(&out)
    );
    let addr = broker.local_addr().to_string();
    let cert = broker.cert_path().to_str().expect("utf8").to_string();
    let out = tokio::task::spawn_blocking(move || {
        runner(&[
            "broker",
            "--addr",
            &addr,
            "--cert",
            &cert,
            "--replay-capacity",
            "8",
            "--filter",
            "broker/pubsub/cursor_too_old",
        ])
    })
    .await
    .expect("join");
    assert!(out.status.success(), "{}", stdout(&out));
    broker.shutdown().await;
}

#[test]
fn codec_mode_judges_a_testee_and_survives_its_crashes() {
    let dir = scratch("testee");
    // Answers hello, claims encode is unsupported, and dies on every decode.
    let script = dir.join("flaky.py");
    std::fs::write(
        &script,
        r#"import json, sys
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "decode":
        sys.exit(3)
    ans = {"id": req["id"], "result": "ok", "name": "flaky", "version": "0"}
    if req["op"] == "encode":
        ans = {"id": req["id"], "result": "unsupported", "message": "no encoder"}
    print(json.dumps(ans), flush=True)
"#,
    )
    .expect("write");
    let cmd = format!("python3 {}", script.display());
    let o = runner(&[
        "codec",
        "--cmd",
        &cmd,
        "--filter",
        "vectors/json/ok/",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    let cases = report["cases"].as_array().expect("cases");
    let decode_fail = cases
        .iter()
        .find(|c| c["id"] == "vectors/json/ok/basic")
        .expect("decode case");
    assert_eq!(decode_fail["verdict"], "fail");
    assert!(decode_fail["detail"]
        .as_str()
        .expect("detail")
        .contains("the testee exited"));
    let encode = cases
        .iter()
        .find(|c| c["id"] == "vectors/json/ok/basic/encode")
        .expect("encode case");
    assert_eq!(
        encode["verdict"], "unsupported",
        "the testee was restarted after the crash and answered"
    );
    assert_eq!(report["summary"]["unsupported"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_python_testee_passes_every_vector() {
    let o = runner(&[
        "codec",
        "--cmd",
        "python3 conformance/testees/python/felix_codec.py",
    ]);
    assert!(o.status.success(), "{}", stdout(&o));
    let last = stdout(&o).lines().last().unwrap_or_default().to_string();
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
}

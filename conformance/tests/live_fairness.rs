//! The live suite demands only what felix-wire v1 promises: run against our
//! broker configured like Felix's in-memory streams (no offsets on live
//! batches), against one with a bounded history or not, and against a
//! broker that loses its error frames.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use felix_broker::core::auth::Authenticator;
use felix_broker::core::{Core, CoreSettings};
use felix_broker::quic::{RunningBroker, ShellLimits};
use felix_broker::tls::{self, TransportSettings};
use felix_wire::{AuthOk, Frame, FrameDecoder, Message, EVENT_BATCH_OFFSETS, KNOWN_FLAGS};
use serde_json::Value;

fn runner(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_felix-conformance"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run felix-conformance")
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "felix-conformance-fair-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// Our broker, advertising every flag but `0x0020`, so that no subscriber
/// negotiates offsets and live batches carry none (as Felix's in-memory
/// streams), with a replay ring of 8.
fn felix_like_broker(dir: &std::path::Path) -> (RunningBroker, String) {
    let material = tls::load_or_create_dev(dir).expect("cert");
    let server = tls::server_config(&material, &TransportSettings::default()).expect("config");
    let settings = CoreSettings {
        server_flags: KNOWN_FLAGS & !EVENT_BATCH_OFFSETS,
        replay_capacity: 8,
        ..CoreSettings::default()
    };
    let core = Arc::new(Core::new(settings, Authenticator::Dev));
    let limits = ShellLimits {
        max_connections: 100,
        max_connections_per_source: 100,
        drain_timeout: Duration::from_secs(2),
        ..ShellLimits::default()
    };
    let broker = RunningBroker::start("127.0.0.1:0".parse().expect("addr"), server, core, limits)
        .expect("start");
    let cert = material.cert_path.to_str().expect("utf8").to_string();
    (broker, cert)
}

fn args(addr: &str, cert: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["broker", "--addr", addr, "--cert", cert, "--format", "json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

async fn run(args: Vec<String>) -> (Option<i32>, Value, String) {
    let out = tokio::task::spawn_blocking(move || runner(&args))
        .await
        .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code(), report, stdout)
}

fn case<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["cases"]
        .as_array()
        .and_then(|cases| cases.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("{id} not in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_without_live_offsets_passes_with_offset_cases_skipped() {
    let dir = scratch("no-offsets");
    let (broker, cert) = felix_like_broker(&dir);
    let addr = broker.local_addr().to_string();

    let (code, report, raw) = run(args(&addr, &cert, &["--filter", "broker/pubsub/"])).await;
    assert_eq!(code, Some(0), "{raw}");
    for id in [
        "broker/pubsub/events_in_order",
        "broker/pubsub/start_earliest",
        "broker/pubsub/start_offset",
        "broker/pubsub/cursor_in_future",
        "broker/pubsub/no_offsets_without_negotiation",
    ] {
        assert_eq!(case(&report, id)["verdict"], "pass", "{id}: {raw}");
    }
    let offsets = case(&report, "broker/pubsub/offsets");
    assert_eq!(offsets["verdict"], "skipped", "{raw}");
    assert!(
        offsets["detail"]
            .as_str()
            .expect("detail")
            .contains("sends no base_offset on live batches"),
        "{raw}"
    );
    let too_old = case(&report, "broker/pubsub/cursor_too_old");
    assert_eq!(too_old["verdict"], "skipped", "{raw}");
    assert!(
        too_old["detail"]
            .as_str()
            .expect("detail")
            .contains("pass --replay-capacity N"),
        "{raw}"
    );
    assert_eq!(report["summary"]["skipped"], 2, "{raw}");

    // Told the history is bounded, too_old runs, and passes.
    let (code, report, raw) = run(args(
        &addr,
        &cert,
        &[
            "--filter",
            "broker/pubsub/cursor_too_old",
            "--replay-capacity",
            "8",
        ],
    ))
    .await;
    assert_eq!(code, Some(0), "{raw}");
    assert_eq!(
        case(&report, "broker/pubsub/cursor_too_old")["verdict"],
        "pass"
    );

    // Told the broker sends offsets, the missing ones fail the run.
    let (code, report, raw) = run(args(
        &addr,
        &cert,
        &[
            "--filter",
            "broker/pubsub/offsets",
            "--filter",
            "broker/pubsub/start_offset",
            "--sends-offsets",
        ],
    ))
    .await;
    assert_eq!(code, Some(1), "{raw}");
    let offsets = case(&report, "broker/pubsub/offsets");
    assert_eq!(offsets["verdict"], "fail");
    assert!(
        offsets["detail"].as_str().expect("detail").starts_with(
            "expected a 0x0024 batch with base_offset (--sends-offsets), got {\"flags\":4"
        ),
        "{raw}"
    );
    let start = case(&report, "broker/pubsub/start_offset");
    assert_eq!(start["verdict"], "fail", "{raw}");
    assert!(
        start["detail"]
            .as_str()
            .expect("detail")
            .contains("expected offsets [Some("),
        "{raw}"
    );
    broker.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn destructive_cases_run_last() {
    let out = runner(&[
        "broker".into(),
        "--insecure".into(),
        "--addr".into(),
        "127.0.0.1:9".into(),
        "--list".into(),
    ]);
    assert!(out.status.success());
    let ids = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        ids.lines().last(),
        Some("broker/handshake/alpn_refused"),
        "{ids}"
    );
    assert_eq!(ids.lines().next(), Some("broker/handshake/no_alpn"));
}

/// A broker that authenticates streams, then ends any stream whose next
/// frame it should answer with an error, without sending the error: the
/// Felix bug of an error frame lost when the stream closes.
async fn error_loser(dir: &std::path::Path) -> (quinn::Endpoint, String) {
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
                        while let Ok(Some(chunk)) = recv.read_chunk(65536, true).await {
                            buf.extend_from_slice(&chunk.bytes);
                            while let Ok(Some(raw)) = decoder.decode_envelope(&mut buf) {
                                if let Ok(Frame::Json(Message::Auth(a))) = raw.parse() {
                                    if a.client_flags.is_some() {
                                        let ok = Frame::Json(Message::from(AuthOk {
                                            server_flags: KNOWN_FLAGS,
                                        }))
                                        .to_bytes()
                                        .expect("encode");
                                        let _ = send.write_all(&ok).await;
                                        continue;
                                    }
                                }
                                let _ = send.finish();
                                return;
                            }
                        }
                    });
                }
            });
        }
    });
    let cert = material.cert_path.to_str().expect("utf8").to_string();
    (endpoint, cert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_error_frame_is_named_as_such() {
    let dir = scratch("lost-error");
    let (endpoint, cert) = error_loser(&dir).await;
    let addr = endpoint.local_addr().expect("addr").to_string();
    let (code, report, raw) = run(args(
        &addr,
        &cert,
        &[
            "--timeout-ms",
            "1000",
            "--filter",
            "broker/auth/required",
            "--filter",
            "broker/errors/unknown_flags",
        ],
    ))
    .await;
    assert_eq!(code, Some(1), "{raw}");
    for (id, want) in [
        ("broker/auth/required", "\"auth required\""),
        ("broker/errors/unknown_flags", "\"unsupported frame flags\""),
    ] {
        let detail = case(&report, id)["detail"]
            .as_str()
            .expect("detail")
            .to_string();
        assert!(
            detail.starts_with(&format!(
                "the stream ended before the expected error frame {want}"
            )),
            "{id}: {detail}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

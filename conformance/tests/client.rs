//! `client` mode end to end: our driver passes every case with a JUnit
//! report, and deliberately broken clients fail with precise messages.

use std::process::{Command, Output};

use serde_json::Value;

const DRIVER: &str = env!("CARGO_BIN_EXE_felix-client-driver");

fn client_mode(cmd: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_felix-conformance"))
        .args(["client", "--cmd", cmd, "--format", "json"])
        .args(extra)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run felix-conformance")
}

fn report(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn detail(report: &Value, id: &str) -> (String, String) {
    let c = report["cases"]
        .as_array()
        .and_then(|cases| cases.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("{id} not in {report}"));
    (
        c["verdict"].as_str().unwrap_or("").to_string(),
        c["detail"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn our_client_passes_every_case_with_a_junit_report() {
    let dir = std::env::temp_dir().join(format!("felix-client-suite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let junit = dir.join("client.xml");
    let o = client_mode(DRIVER, &["--junit", junit.to_str().expect("utf8")]);
    let r = report(&o);
    assert!(o.status.success(), "{r:#}");
    let total = r["summary"]["total"].as_u64().expect("total");
    assert!(total >= 20, "{total} cases");
    assert_eq!(r["summary"]["passed"].as_u64(), Some(total), "{r:#}");
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    let doc = roxmltree::Document::parse(&xml).expect("valid XML");
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .expect("a testsuite");
    assert_eq!(suite.attribute("name"), Some("client"));
    assert_eq!(suite.attribute("tests"), Some(total.to_string().as_str()));
    assert_eq!(suite.attribute("failures"), Some("0"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_client_authenticating_as_another_tenant_is_named_on_every_stream() {
    let cmd = format!("{DRIVER} --broken-config wrong-tenant");
    let o = client_mode(
        &cmd,
        &["--filter", "client/auth/first_frame_on_every_stream"],
    );
    assert_eq!(o.status.code(), Some(1));
    let (verdict, detail) = detail(&report(&o), "client/auth/first_frame_on_every_stream");
    assert_eq!(verdict, "fail");
    assert!(
        detail.contains(
            "connection 0 stream 0 (bidirectional): auth tenant_id is \"t1-broken\", expected \"t1\" (as given in connect)"
        ),
        "{detail}"
    );
    assert!(
        detail.contains("(unidirectional): auth tenant_id is \"t1-broken\""),
        "the publish-only stream is checked too: {detail}"
    );
}

#[test]
fn a_client_with_a_tiny_frame_cap_fails_naming_the_length_field() {
    let cmd = format!("{DRIVER} --broken-config tiny-frames");
    let o = client_mode(&cmd, &["--filter", "client/publish/binary_acked"]);
    assert_eq!(o.status.code(), Some(1));
    let (verdict, detail) = detail(&report(&o), "client/publish/binary_acked_when_advertised");
    assert_eq!(verdict, "fail");
    assert_eq!(
        detail,
        "connect: expected success, the client reported decode: the broker sent an invalid frame: header.length at byte 8: 36 bytes exceeds the frame cap of 8"
    );
}

#[test]
fn a_client_that_does_not_resume_fails_the_resume_case_only() {
    let cmd = format!("{DRIVER} --broken-config no-resume");
    let o = client_mode(&cmd, &["--filter", "client/reconnect/"]);
    assert_eq!(o.status.code(), Some(1));
    let r = report(&o);
    assert_eq!(
        detail(&r, "client/reconnect/after_connection_closed").0,
        "pass"
    );
    let (verdict, detail) = detail(&r, "client/reconnect/resume_from_last_offset");
    assert_eq!(verdict, "fail");
    assert_eq!(
        detail,
        "after the broker closed the subscription's connection (offsets 0..2 delivered), next: the client reported closed: the connection to the broker was closed where the broker still waited for it to act"
    );
}

#[test]
fn unsupported_operations_and_crashes_are_told_apart_with_the_exit_status_and_stderr() {
    let dir = std::env::temp_dir().join(format!("felix-client-fake-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // Connects without doing anything, cannot cache, and dies on publish.
    let script = dir.join("fake.py");
    std::fs::write(
        &script,
        r#"import json, sys
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "publish":
        print("fake: publish is not written yet", file=sys.stderr, flush=True)
        sys.exit(3)
    ans = {"id": req["id"], "result": "ok", "name": "fake", "version": "0"}
    if req["op"].startswith("cache"):
        ans = {"id": req["id"], "result": "unsupported", "message": "no cache in this client"}
    print(json.dumps(ans), flush=True)
"#,
    )
    .expect("write");
    let cmd = format!("python3 {}", script.display());
    let o = client_mode(
        &cmd,
        &[
            "--timeout-ms",
            "1000",
            "--filter",
            "client/cache/get_hit_and_miss",
            "--filter",
            "client/publish/binary_unacked_on_uni_stream",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let r = report(&o);
    let (verdict, why) = detail(&r, "client/cache/get_hit_and_miss");
    assert_eq!(verdict, "unsupported");
    assert_eq!(
        why,
        "unsupported by this client: cache_get: no cache in this client"
    );
    let (verdict, why) = detail(&r, "client/publish/binary_unacked_on_uni_stream");
    assert_eq!(verdict, "fail");
    // The crash report, as codec mode gives it: exit status and stderr.
    assert!(
        why.contains("no answer to publish: the client driver exited (exit status: 3); the tail of its stderr:\nfake: publish is not written yet"),
        "{why}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_driver_that_cannot_start_is_a_usage_error() {
    let o = client_mode("/nonexistent/felix-driver", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("did not answer hello"));
}

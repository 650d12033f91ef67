//! `felix-bench` as the scripts run it: a benchmark against an embedded
//! broker prints its table and appends one JSON line a run.

use std::process::Command;

#[test]
fn a_latency_run_against_an_embedded_broker_writes_its_figures() {
    let results =
        std::env::temp_dir().join(format!("felix-bench-cli-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&results);
    let out = Command::new(env!("CARGO_BIN_EXE_felix-bench"))
        .args([
            "latency",
            "--embedded",
            "--fanout",
            "2",
            "--total",
            "50",
            "--warmup",
            "5",
        ])
        .arg("--results")
        .arg(&results)
        .env_remove("FELIX_ADDR")
        .output()
        .expect("run felix-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("p50 us"), "{stdout}");
    let text = std::fs::read_to_string(&results).expect("results file");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["broker"], "embedded");
    assert_eq!(lines[0]["fanout"], 2);
    assert_eq!(lines[0]["unaccounted"], 0);
    let _ = std::fs::remove_file(&results);
}

#[test]
fn a_missing_certificate_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_felix-bench"))
        .args(["soak", "--seconds", "1", "--cert", "/nonexistent/cert.pem"])
        .output()
        .expect("run felix-bench");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("felix-bench: certificate"), "{stderr}");
}

/// `--json` on every benchmark that takes it: standard output is JSON
/// lines only (no table header), one object a run, the object --results
/// appends.
#[test]
fn json_output_parses_for_every_benchmark() {
    let results =
        std::env::temp_dir().join(format!("felix-bench-json-{}.jsonl", std::process::id()));
    let runs: [(&[&str], usize, &str); 3] = [
        (
            &["latency", "--fanout", "1", "--total", "20", "--warmup", "2"],
            1,
            "p50_us",
        ),
        (
            &[
                "cache",
                "--sizes",
                "0",
                "--ops",
                "20",
                "--connections",
                "1",
                "--streams",
                "1",
                "--keys",
                "4",
            ],
            3,
            "ops_per_s",
        ),
        (
            &[
                "broadcast",
                "--subscriptions",
                "4",
                "--connections",
                "1",
                "--publishes",
                "2",
                "--warmup",
                "0",
            ],
            1,
            "subscriptions",
        ),
    ];
    for (args, lines, field) in runs {
        let _ = std::fs::remove_file(&results);
        let out = Command::new(env!("CARGO_BIN_EXE_felix-bench"))
            .args(args)
            .args(["--embedded", "--json", "--results"])
            .arg(&results)
            .env_remove("FELIX_ADDR")
            .output()
            .expect("run felix-bench");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parsed: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{args:?}: not a JSON line ({e}): {l}"))
            })
            .collect();
        assert_eq!(parsed.len(), lines, "{args:?}: {stdout}");
        assert!(
            parsed.iter().all(|v| v.get(field).is_some()),
            "{args:?}: {stdout}"
        );
        let file = std::fs::read_to_string(&results).expect("results file");
        assert_eq!(file, stdout, "{args:?}: the same lines as --results");
    }
    let _ = std::fs::remove_file(&results);
}

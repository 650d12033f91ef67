//! `scripts/fuzz-all`'s command line: asking for help prints usage and
//! starts nothing (it used to take `--help` for a target and fuzz), and a
//! missing or malformed duration is a usage error.

use std::path::Path;
use std::process::{Command, Output};

fn fuzz_all(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fuzz-all");
    Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .expect("run scripts/fuzz-all")
}

#[test]
fn help_prints_usage_and_runs_nothing() {
    for flag in ["--help", "-h"] {
        let o = fuzz_all(&[flag]);
        assert_eq!(o.status.code(), Some(0), "{flag}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.starts_with("usage: scripts/fuzz-all SECONDS"), "{out}");
        assert!(out.contains("fuzz/dicts/<target>.dict"), "{out}");
        assert!(!out.contains("building"), "{flag} must not build: {out}");
    }
}

#[test]
fn a_missing_or_malformed_duration_is_a_usage_error() {
    let none = fuzz_all(&[]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("usage: scripts/fuzz-all"));
    let bad = fuzz_all(&["ten", "frame_stream"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("SECONDS must be a whole number"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

//! The broker process's output as an operator's tools see it: the banner
//! on stdout, logs on stderr, with no terminal escape codes when stderr is
//! a file, and the version in the start-up log.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn a_redirected_log_is_plain_text_with_the_version() {
    let dir = support::temp_dir("process-logs");
    let log_path = dir.0.join("broker.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_felix-broker"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--metrics-bind",
            "off",
            "--data-dir",
        ])
        .arg(&dir.0)
        .env("FELIX_BROKER_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start felix-broker");
    let mut banner = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut banner)
        .expect("banner");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        banner.starts_with("felix-broker listening on 127.0.0.1:"),
        "{banner}"
    );
    let text = std::fs::read_to_string(&log_path).expect("log");
    assert!(text.contains("serving felix-wire v1"), "{text}");
    assert!(
        text.contains(concat!("version=", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a redirected log: {text:?}"
    );
}

#[test]
fn an_invalid_log_filter_stops_the_broker_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_felix-broker"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--metrics-bind",
            "off",
            "--log",
            "x=loud",
        ])
        .output()
        .expect("run felix-broker");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log filter \"x=loud\" is invalid"), "{err}");
}

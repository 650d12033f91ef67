//! Starting the broker process as an operator does: its own
//! `FELIX_BROKER_*` variables (the client tools' `FELIX_*` names ignored,
//! older broker names warned about), errors naming the variable or the
//! data directory at fault, JSON logs, and the example configuration file.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The broker binary with no `FELIX_*` variable inherited from the test's
/// environment.
fn broker() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_felix-broker"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FELIX_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Starts `cmd` with stderr to `log`, reads the banner's first `lines`
/// lines (3, or 4 with the metrics endpoint on), stops the broker.
fn banner_of(mut cmd: Command, log: &Path, lines: usize) -> String {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start felix-broker");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut banner = String::new();
    for _ in 0..lines {
        if out.read_line(&mut banner).expect("banner") == 0 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    banner
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_variable_that_does_not_parse_is_named_with_what_it_takes() {
    let out = broker()
        .env("FELIX_BROKER_QUEUE_POLICY", "drop-old")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_of(&out),
        "felix-broker: FELIX_BROKER_QUEUE_POLICY=drop-old: invalid value, expected one of drop_new, drop_old, block\n"
    );
    let out = broker()
        .env("FELIX_BROKER_MAX_FRAME_BYTES", "16MB")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_of(&out),
        "felix-broker: FELIX_BROKER_MAX_FRAME_BYTES=16MB: invalid value (invalid digit found in string), expected a whole number from 0 to 4294967295\n"
    );
    // A deprecated name is named as it was set.
    let out = broker()
        .env("FELIX_QUEUE_POLICY", "sometimes")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("FELIX_QUEUE_POLICY=sometimes: invalid value, expected one of drop_new, drop_old, block"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn json_logs_own_variable_names_and_the_client_tools_names_ignored() {
    let dir = support::temp_dir("process-config-json");
    let log = dir.0.join("broker.log");
    let mut cmd = broker();
    cmd.args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&dir.0)
        .env("FELIX_BROKER_LOG_FORMAT", "json")
        .env("FELIX_BROKER_QUEUE_POLICY", "drop_old")
        // The client tools' names: a broker must not take the client's
        // certificate or log filter.
        .env("FELIX_CERT", "/nonexistent/client-cert.pem")
        .env("FELIX_LOG", "trace")
        // An older broker name: still read, with a warning.
        .env("FELIX_METRICS_BIND", "127.0.0.1:0");
    let banner = banner_of(cmd, &log, 4);
    assert!(
        banner.starts_with("felix-broker listening on 127.0.0.1:"),
        "{banner}"
    );
    let dev_cert = dir.0.join("tls/cert.pem");
    assert!(
        banner.contains(&format!("trust this certificate: {}", dev_cert.display())),
        "FELIX_CERT was not ignored: {banner}"
    );
    assert!(
        banner.contains("metrics: http://127.0.0.1:"),
        "FELIX_METRICS_BIND was not read: {banner}"
    );

    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let messages: Vec<(&str, &str)> = lines
        .iter()
        .map(|v| {
            (
                v["level"].as_str().unwrap_or(""),
                v["fields"]["message"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let has = |level: &str, text: &str| {
        messages
            .iter()
            .any(|(l, m)| *l == level && m.contains(text))
    };
    assert!(has("INFO", "serving felix-wire v1"), "{text}");
    assert!(
        has("WARN", "FELIX_CERT is set but ignored: it configures the felix client tools; the broker reads FELIX_BROKER_CERT"),
        "{text}"
    );
    assert!(has("WARN", "FELIX_LOG is set but ignored"), "{text}");
    assert!(
        has(
            "WARN",
            "FELIX_METRICS_BIND is deprecated: rename it FELIX_BROKER_METRICS_BIND"
        ),
        "{text}"
    );
    assert!(
        messages
            .iter()
            .all(|(l, _)| ["INFO", "WARN", "ERROR"].contains(l)),
        "FELIX_LOG=trace reached the broker: {text}"
    );
}

#[test]
fn a_data_directory_the_broker_cannot_use_is_named_with_the_reason() {
    let dir = support::temp_dir("process-config-data-dir");
    let file = dir.0.join("not-a-dir");
    std::fs::write(&file, "x").expect("file");
    for (data_dir, why) in [
        (file.clone(), "a file is in the way".to_string()),
        (
            file.join("below"),
            format!(
                "{} is a file, so no directory can be made below it",
                file.display()
            ),
        ),
    ] {
        let out = broker()
            .args([
                "--bind",
                "127.0.0.1:0",
                "--metrics-bind",
                "off",
                "--data-dir",
            ])
            .arg(&data_dir)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1));
        let err = stderr_of(&out);
        assert!(
            err.contains(&format!(
                "felix-broker: data directory {}: {why}",
                data_dir.display()
            )),
            "{err}"
        );
    }
}

#[test]
fn the_broker_starts_from_the_example_config() {
    let dir = support::temp_dir("process-config-example");
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/felix-broker.example.yaml"
    );
    let mut cmd = broker();
    cmd.args(["--config", example])
        .args([
            "--bind",
            "127.0.0.1:0",
            "--metrics-bind",
            "off",
            "--data-dir",
        ])
        .arg(&dir.0);
    let banner = banner_of(cmd, &dir.0.join("broker.log"), 3);
    assert!(
        banner.starts_with("felix-broker listening on 127.0.0.1:"),
        "{banner}"
    );
}

/// docs/felix-broker.service names only flags and variables the broker
/// has, and gives it the state directory systemd makes for it: a renamed
/// option would otherwise break every installed unit silently.
#[test]
fn the_systemd_unit_uses_only_options_the_broker_has() {
    use clap::{CommandFactory, Parser};
    use felix_broker::config::Cli;
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/felix-broker.service"
    ))
    .expect("the unit file");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert!(args[0].ends_with("/felix-broker"), "{exec}");
    Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{exec}: {e}"));

    let known: Vec<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| Some(a.get_env()?.to_str()?.to_owned()))
        .collect();
    let set: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.trim_start_matches('#').strip_prefix("Environment="))
        .flat_map(str::split_whitespace)
        .filter_map(|kv| kv.split('=').next())
        .collect();
    assert!(set.len() >= 4, "{set:?}");
    for name in set {
        assert!(
            known.iter().any(|k| k == name),
            "{name} is not a broker variable"
        );
    }
    for directive in [
        "DynamicUser=yes",
        "StateDirectory=felix-broker",
        "Environment=FELIX_BROKER_DATA_DIR=/var/lib/felix-broker",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RestartPreventExitStatus=2",
    ] {
        assert!(unit.lines().any(|l| l == directive), "no {directive}");
    }
}

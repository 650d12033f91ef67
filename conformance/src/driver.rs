//! `codec` mode: drives an external codec (any language) over the driver
//! protocol of docs/conformance.md and judges every answer against the
//! vectors.

use std::process::Stdio;
use std::time::Duration;

use felix_wire::vectors::{Expect, VectorCase};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::case::{Level, Outcome};
use crate::vectors::case_id;

/// Driver protocol name and version sent in `hello`.
pub const PROTOCOL: &str = "felix-wire-codec-driver";
/// Driver protocol version.
pub const VERSION: u32 = 1;

struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// A running testee, restarted after it crashes or hangs.
pub struct Testee {
    cmd: String,
    process: Option<Process>,
    next_id: u64,
    timeout: Duration,
    /// Name and version the testee announced.
    pub announced: Option<String>,
}

impl Testee {
    /// Starts `cmd` (through `sh -c`) and says hello.
    pub async fn start(cmd: &str, timeout: Duration) -> Result<Testee, String> {
        let mut t = Testee {
            cmd: cmd.to_string(),
            process: None,
            next_id: 0,
            timeout,
            announced: None,
        };
        t.ensure_running().await?;
        Ok(t)
    }

    async fn ensure_running(&mut self) -> Result<(), String> {
        if self.process.is_some() {
            return Ok(());
        }
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start testee `{}`: {e}", self.cmd))?;
        let stdin = child.stdin.take().ok_or("testee has no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("testee has no stdout")?).lines();
        self.process = Some(Process {
            child,
            stdin,
            stdout,
        });
        let hello = self
            .exchange(json!({"op": "hello", "protocol": PROTOCOL, "version": VERSION}))
            .await?;
        if hello["result"] != "ok" {
            return Err(format!("testee refused hello: {hello}"));
        }
        self.announced = Some(format!(
            "{} {}",
            hello["name"].as_str().unwrap_or("(unnamed)"),
            hello["version"].as_str().unwrap_or("")
        ));
        Ok(())
    }

    /// Sends one request and reads its answer; kills the testee on a
    /// timeout, crash or protocol violation so the next case starts fresh.
    async fn exchange(&mut self, mut request: Value) -> Result<Value, String> {
        let id = self.next_id.to_string();
        self.next_id += 1;
        request["id"] = Value::from(id.clone());
        let timeout = self.timeout;
        let Some(p) = self.process.as_mut() else {
            return Err("testee not running".into());
        };
        let line = format!("{request}\n");
        let answer = tokio::time::timeout(timeout, async {
            p.stdin
                .write_all(line.as_bytes())
                .await
                .map_err(|e| format!("writing to the testee: {e}"))?;
            p.stdin
                .flush()
                .await
                .map_err(|e| format!("writing to the testee: {e}"))?;
            match p.stdout.next_line().await {
                Ok(Some(l)) => Ok(l),
                Ok(None) => Err("the testee exited".to_string()),
                Err(e) => Err(format!("reading from the testee: {e}")),
            }
        })
        .await;
        let result = match answer {
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            Ok(Err(e)) => Err(e),
            Ok(Ok(line)) => match serde_json::from_str::<Value>(&line) {
                Ok(v) if v["id"].as_str() == Some(id.as_str()) => Ok(v),
                Ok(v) => Err(format!("answer out of turn: expected id {id}, got {v}")),
                Err(e) => Err(format!("answer is not a JSON line ({e}): {line}")),
            },
        };
        if result.is_err() {
            if let Some(mut p) = self.process.take() {
                let _ = p.child.kill().await;
            }
        }
        result
    }

    async fn request(&mut self, request: Value) -> Result<Value, String> {
        self.ensure_running().await?;
        self.exchange(request).await
    }

    /// Says bye and waits for the testee to exit.
    pub async fn stop(mut self) {
        if self.process.is_some() {
            let _ = self.exchange(json!({"op": "bye"})).await;
        }
        if let Some(mut p) = self.process.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), p.child.wait()).await;
        }
    }
}

fn judge_decode(case: &VectorCase, answer: Result<Value, String>) -> Outcome {
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return Outcome::Fail(e),
    };
    match (answer["result"].as_str(), &case.expect) {
        (Some("unsupported"), _) => Outcome::Unsupported(
            answer["message"]
                .as_str()
                .unwrap_or("unsupported")
                .to_string(),
        ),
        (Some("ok"), Expect::Valid { decoded, .. }) if &answer["decoded"] == decoded => {
            Outcome::Pass
        }
        (Some("ok"), Expect::Valid { decoded, .. }) => Outcome::Fail(format!(
            "decoded differs:\n  want {decoded}\n  got  {}",
            answer["decoded"]
        )),
        (Some("error"), Expect::Valid { .. }) => Outcome::Fail(format!(
            "rejected a valid frame: {} {}",
            answer["errorClass"],
            answer["message"].as_str().unwrap_or("")
        )),
        (Some("error"), Expect::Invalid { error_class })
            if answer["errorClass"] == error_class.as_str() =>
        {
            Outcome::Pass
        }
        (Some("error"), Expect::Invalid { error_class }) => Outcome::Fail(format!(
            "wrong error class: want {error_class}, got {} ({})",
            answer["errorClass"],
            answer["message"].as_str().unwrap_or("")
        )),
        (Some("ok"), Expect::Invalid { error_class }) => Outcome::Fail(format!(
            "accepted an invalid frame (want {error_class}): {}",
            answer["decoded"]
        )),
        _ => Outcome::Fail(format!("not a driver answer: {answer}")),
    }
}

fn judge_encode(case: &VectorCase, answer: Result<Value, String>) -> Outcome {
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return Outcome::Fail(e),
    };
    let want = hex::encode(&case.frame);
    match answer["result"].as_str() {
        Some("unsupported") => Outcome::Unsupported(
            answer["message"]
                .as_str()
                .unwrap_or("unsupported")
                .to_string(),
        ),
        Some("ok") => {
            let got: String = answer["frame"]
                .as_str()
                .unwrap_or("")
                .split_whitespace()
                .collect::<String>()
                .to_ascii_lowercase();
            if got == want {
                Outcome::Pass
            } else {
                Outcome::Fail(format!("encoding differs:\n  want {want}\n  got  {got}"))
            }
        }
        _ => Outcome::Fail(format!("encode failed: {answer}")),
    }
}

/// Every case id `codec` mode would run for these vectors.
pub fn case_ids(cases: &[VectorCase]) -> Vec<String> {
    let mut ids = Vec::new();
    for c in cases {
        ids.push(case_id(c));
        if matches!(
            c.expect,
            Expect::Valid {
                canonical: true,
                ..
            }
        ) {
            ids.push(format!("{}/encode", case_id(c)));
        }
    }
    ids
}

/// Runs the selected vectors through the testee.
pub async fn run(
    testee: &mut Testee,
    cases: &[VectorCase],
    selected: impl Fn(&str) -> bool,
) -> Vec<(String, Level, Outcome, Duration)> {
    let mut out = Vec::new();
    for c in cases {
        let id = case_id(c);
        if selected(&id) {
            let t0 = std::time::Instant::now();
            let answer = testee.request(json!({"op": "decode", "frame": hex::encode(&c.frame), "maxFrameBytes": c.max_frame_bytes})).await;
            out.push((
                id.clone(),
                Level::Required,
                judge_decode(c, answer),
                t0.elapsed(),
            ));
        }
        let encode_id = format!("{id}/encode");
        if let Expect::Valid {
            decoded,
            canonical: true,
        } = &c.expect
        {
            if selected(&encode_id) {
                let t0 = std::time::Instant::now();
                let answer = testee
                    .request(json!({"op": "encode", "decoded": decoded}))
                    .await;
                out.push((
                    encode_id,
                    Level::Required,
                    judge_encode(c, answer),
                    t0.elapsed(),
                ));
            }
        }
    }
    out
}

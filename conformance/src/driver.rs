//! `codec` mode: drives an external codec (any language) over the driver
//! protocol of docs/conformance.md and judges every answer against the
//! vectors.

use std::process::Stdio;
use std::time::Duration;

use felix_wire::vectors::{self, Expect, VectorCase};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::case::{Level, Outcome};
use crate::diff;
use crate::testee::{crash_report, kill_process_group, StderrTail};
use crate::vectors::case_id;

/// Driver protocol name and version sent in `hello`.
pub const PROTOCOL: &str = "felix-wire-codec-driver";
/// Driver protocol version.
pub const VERSION: u32 = 1;

struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: StderrTail,
    /// The shell's pid, which is also its process group id; kept because
    /// `Child::id` forgets it once the shell is reaped, while the group
    /// may live on.
    pgid: Option<u32>,
}

impl Process {
    /// Kills the testee's whole process group (`sh -c` and whatever it
    /// started: a hung interpreter under the shell would otherwise live on
    /// and hold the pipes), then reaps the shell.
    async fn kill(mut self) {
        if let Some(pgid) = self.pgid {
            kill_process_group(pgid);
        }
        let _ = self.child.kill().await;
    }

    /// Why the testee is gone: its exit status and the tail of its stderr.
    async fn crash_report(&mut self) -> String {
        crash_report(&mut self.child, &self.stderr, "the testee").await
    }
}

/// A running testee, restarted after it crashes or hangs.
pub struct Testee {
    cmd: String,
    process: Option<Process>,
    next_id: u64,
    timeout: Duration,
    startup_timeout: Duration,
    /// Name and version the testee announced.
    pub announced: Option<String>,
}

impl Testee {
    /// Starts `cmd` (through `sh -c`, in its own process group) and says
    /// hello; `startup_timeout` bounds the wait for the hello answer,
    /// `timeout` every later answer.
    pub async fn start(
        cmd: &str,
        timeout: Duration,
        startup_timeout: Duration,
    ) -> Result<Testee, String> {
        let mut t = Testee {
            cmd: cmd.to_string(),
            process: None,
            next_id: 0,
            timeout,
            startup_timeout,
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
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start testee `{}`: {e}", self.cmd))?;
        let stdin = child.stdin.take().ok_or("testee has no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("testee has no stdout")?).lines();
        let stderr = StderrTail::capture(child.stderr.take().ok_or("testee has no stderr")?);
        self.process = Some(Process {
            pgid: child.id(),
            child,
            stdin,
            stdout,
            stderr,
        });
        let hello = self
            .exchange_within(
                json!({"op": "hello", "protocol": PROTOCOL, "version": VERSION}),
                self.startup_timeout,
            )
            .await
            .map_err(|e| match e.strip_prefix(NO_ANSWER) {
                Some(_) => format!(
                    "start-up timeout: the testee `{}` did not answer hello within {} ms (--startup-timeout-ms)",
                    self.cmd,
                    self.startup_timeout.as_millis()
                ),
                None => format!("starting the testee `{}`: {e}", self.cmd),
            })?;
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

    async fn exchange(&mut self, request: Value) -> Result<Value, String> {
        self.exchange_within(request, self.timeout).await
    }

    /// Sends one request and reads its answer; kills the testee on a
    /// timeout, crash or protocol violation so the next case starts fresh.
    async fn exchange_within(
        &mut self,
        mut request: Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let id = self.next_id.to_string();
        self.next_id += 1;
        request["id"] = Value::from(id.clone());
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
                Ok(None) => Err(EXITED.to_string()),
                Err(e) => Err(format!("reading from the testee: {e}")),
            }
        })
        .await;
        let mut result = match answer {
            Err(_) => Err(format!(
                "{NO_ANSWER} {} ms; the testee was killed",
                timeout.as_millis()
            )),
            Ok(Err(e)) => Err(e),
            Ok(Ok(line)) => match serde_json::from_str::<Value>(&line) {
                Ok(v) if v["id"].as_str() == Some(id.as_str()) => Ok(v),
                Ok(v) => Err(format!("answer out of turn: expected id {id}, got {v}")),
                Err(e) => Err(format!("answer is not a JSON line ({e}): {line}")),
            },
        };
        if let Err(e) = &result {
            if let Some(mut p) = self.process.take() {
                if e == EXITED || e.starts_with("writing to the testee") {
                    result = Err(p.crash_report().await);
                }
                p.kill().await;
            }
        }
        result
    }

    async fn request(&mut self, request: Value) -> Result<Value, String> {
        self.ensure_running().await?;
        self.exchange(request).await
    }

    /// Says bye and waits for the testee to exit; kills its process group
    /// if it does not.
    pub async fn stop(mut self) {
        if self.process.is_some() {
            let _ = self.exchange(json!({"op": "bye"})).await;
        }
        if let Some(mut p) = self.process.take() {
            if tokio::time::timeout(Duration::from_secs(2), p.child.wait())
                .await
                .is_err()
            {
                p.kill().await;
            }
        }
    }
}

const EXITED: &str = "the testee exited";
const NO_ANSWER: &str = "no answer within";

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
            "decoded differs: {}\n  want {decoded}\n  got  {}",
            diff::json_difference(decoded, &answer["decoded"]).unwrap_or_default(),
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
    let Some(want_bytes) = vectors::encode_expectation(case) else {
        return Outcome::Fail("the case has nothing to encode to".into());
    };
    let want = hex::encode(want_bytes);
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
                let at = match hex::decode(&got) {
                    Ok(bytes) => diff::first_difference(want_bytes, &bytes),
                    Err(e) => format!("the answer's frame is not hex: {e}"),
                };
                Outcome::Fail(format!(
                    "encoding differs: {at}\n  want {want}\n  got  {got}"
                ))
            }
        }
        _ => Outcome::Fail(format!("encode failed: {answer}")),
    }
}

/// A failure's detail ends with the vector's input bytes.
fn with_input(outcome: Outcome, case: &VectorCase) -> Outcome {
    match outcome {
        Outcome::Fail(d) => Outcome::Fail(format!("{d}\n{}", diff::input_line(&case.frame))),
        other => other,
    }
}

/// Every case id `codec` mode would run for these vectors.
pub fn case_ids(cases: &[VectorCase]) -> Vec<String> {
    let mut ids = Vec::new();
    for c in cases {
        ids.push(case_id(c));
        if vectors::encode_expectation(c).is_some() {
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
                with_input(judge_decode(c, answer), c),
                t0.elapsed(),
            ));
        }
        let encode_id = format!("{id}/encode");
        if let (Expect::Valid { decoded, .. }, Some(_)) =
            (&c.expect, vectors::encode_expectation(c))
        {
            if selected(&encode_id) {
                let t0 = std::time::Instant::now();
                let answer = testee
                    .request(json!({"op": "encode", "decoded": decoded}))
                    .await;
                out.push((
                    encode_id,
                    Level::Required,
                    with_input(judge_encode(c, answer), c),
                    t0.elapsed(),
                ));
            }
        }
    }
    out
}

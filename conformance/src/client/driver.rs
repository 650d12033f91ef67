//! The runner's end of the client driver protocol (docs/conformance.md):
//! one driver process per case, JSON lines over its standard input and
//! output, every request answered in order with exactly one line.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::live::CaseError;
use crate::testee::{crash_report, kill_process_group, StderrTail};

/// Driver protocol name sent in `hello`.
pub const PROTOCOL: &str = "felix-wire-client-driver";
/// Driver protocol version.
pub const VERSION: u32 = 1;

/// A running client driver.
pub struct ClientDriver {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// The tail of its stderr, for the report when it crashes.
    stderr: StderrTail,
    next_id: u64,
    timeout: Duration,
    /// The shell's pid and process group id (kept: `Child::id` forgets it
    /// once the shell is reaped, while the group may live on).
    pgid: Option<u32>,
    /// Name and version the driver announced.
    pub announced: String,
}

impl ClientDriver {
    /// Starts `cmd` (through `sh -c`) and says hello. `timeout` bounds each
    /// answer (an operation's own timeout, such as `next`'s, is added);
    /// `startup_timeout` bounds the hello (a driver's runtime may take a
    /// while to start on a loaded machine).
    pub async fn start(
        cmd: &str,
        timeout: Duration,
        startup_timeout: Duration,
    ) -> Result<ClientDriver, String> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the client driver `{cmd}`: {e}"))?;
        let stdin = child.stdin.take().ok_or("the driver has no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("the driver has no stdout")?).lines();
        let stderr = StderrTail::capture(child.stderr.take().ok_or("the driver has no stderr")?);
        let mut d = ClientDriver {
            pgid: child.id(),
            child,
            stdin,
            stdout,
            stderr,
            next_id: 0,
            timeout,
            announced: String::new(),
        };
        let hello = d
            .exchange(
                json!({"op": "hello", "protocol": PROTOCOL, "version": VERSION}),
                startup_timeout.saturating_sub(timeout),
            )
            .await;
        if hello.is_err() {
            // Dropping the child kills only the shell; what it started
            // would hold our pipes open.
            if let Some(pgid) = d.pgid {
                kill_process_group(pgid);
            }
        }
        let hello = hello.map_err(|e| {
            if e.starts_with("no answer to hello") {
                format!(
                    "start-up timeout: the client driver `{cmd}` did not answer hello within {} ms (--startup-timeout-ms)",
                    timeout.max(startup_timeout).as_millis()
                )
            } else {
                format!("the client driver `{cmd}` did not answer hello: {e}")
            }
        })?;
        if hello["result"] != "ok" {
            return Err(format!("the client driver refused hello: {hello}"));
        }
        d.announced = format!(
            "{} {}",
            hello["name"].as_str().unwrap_or("(unnamed)"),
            hello["version"].as_str().unwrap_or("")
        );
        Ok(d)
    }

    async fn exchange(&mut self, mut request: Value, extra: Duration) -> Result<Value, String> {
        use ExchangeError::{Failed, Gone};
        let id = self.next_id.to_string();
        self.next_id += 1;
        request["id"] = Value::from(id.clone());
        let op = request["op"].as_str().unwrap_or("?").to_string();
        let line = format!("{request}\n");
        tracing::debug!(%line, "to the driver");
        let within = self.timeout + extra;
        let answer = tokio::time::timeout(within, async {
            // A write fails when the driver is gone (a broken pipe).
            self.stdin
                .write_all(line.as_bytes())
                .await
                .map_err(|_| Gone)?;
            self.stdin.flush().await.map_err(|_| Gone)?;
            match self.stdout.next_line().await {
                Ok(Some(l)) => Ok(l),
                Ok(None) => Err(Gone),
                Err(e) => Err(Failed(format!("reading from the driver: {e}"))),
            }
        })
        .await
        .map_err(|_| format!("no answer to {op} within {} ms", within.as_millis()))?;
        let answer = match answer {
            Ok(line) => line,
            Err(Failed(e)) => return Err(e),
            // Its stdout closed or its stdin broke: it died. Say how, as
            // codec mode does: exit status and the tail of its stderr.
            Err(Gone) => {
                let why = crash_report(&mut self.child, &self.stderr, "the client driver").await;
                return Err(format!("no answer to {op}: {why}"));
            }
        };
        tracing::debug!(%answer, "from the driver");
        match serde_json::from_str::<Value>(&answer) {
            Ok(v) if v["id"].as_str() == Some(id.as_str()) => Ok(v),
            Ok(v) => Err(format!(
                "answer to {op} out of turn: expected id {id}, got {v}"
            )),
            Err(e) => Err(format!(
                "the answer to {op} is not a JSON line ({e}): {answer}"
            )),
        }
    }

    /// Sends a request; returns the answer (`ok` or `error`). An
    /// `unsupported` answer becomes [`CaseError::Unsupported`].
    pub async fn call(&mut self, request: Value) -> Result<Value, CaseError> {
        self.call_within(request, Duration::ZERO).await
    }

    /// As [`Self::call`], allowing `extra` time for the answer.
    pub async fn call_within(
        &mut self,
        request: Value,
        extra: Duration,
    ) -> Result<Value, CaseError> {
        let op = request["op"].as_str().unwrap_or("?").to_string();
        let answer = self.exchange(request, extra).await?;
        match answer["result"].as_str() {
            Some("ok") | Some("error") => Ok(answer),
            Some("unsupported") => Err(CaseError::Unsupported(format!(
                "unsupported by this client: {op}: {}",
                answer["message"].as_str().unwrap_or("(no reason given)")
            ))),
            _ => Err(CaseError::Fail(format!(
                "not a driver answer to {op}: {answer}"
            ))),
        }
    }

    /// Says bye (briefly) and makes sure the process is gone, with its
    /// whole process group when it did not leave by itself (a hung driver
    /// must not outlive its case and hold ports or pipes).
    pub async fn stop(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            self.exchange(json!({"op": "bye"}), Duration::ZERO),
        )
        .await;
        if tokio::time::timeout(Duration::from_millis(500), self.child.wait())
            .await
            .is_err()
        {
            if let Some(pgid) = self.pgid {
                kill_process_group(pgid);
            }
            let _ = self.child.kill().await;
        }
    }
}

/// Why an exchange with the driver failed before an answer line came.
enum ExchangeError {
    /// The driver is gone (stdout closed, stdin broken): a crash report
    /// says more than the I/O error.
    Gone,
    /// Reading failed otherwise; the text says how.
    Failed(String),
}

/// The `ok` answer's fields, or a failure naming the error the driver
/// reported for `what`.
pub fn ok(answer: &Value, what: &str) -> Result<Value, CaseError> {
    if answer["result"] == "ok" {
        Ok(answer.clone())
    } else {
        Err(CaseError::Fail(format!(
            "{what}: expected success, the client reported {}",
            error_of(answer)
        )))
    }
}

/// A short rendering of an error answer: `kind: message`.
pub fn error_of(answer: &Value) -> String {
    let e = &answer["error"];
    let mut s = format!(
        "{}: {}",
        e["kind"].as_str().unwrap_or("(no kind)"),
        e["message"].as_str().unwrap_or("(no message)")
    );
    for k in ["requested", "available"] {
        if !e[k].is_null() {
            s.push_str(&format!(" ({k} {})", e[k]));
        }
    }
    s
}

/// Checks an `error` answer: its kind, and that its message contains
/// `contains` (the broker's own text, which the client must surface).
pub fn expect_error(
    answer: &Value,
    what: &str,
    kind: &str,
    contains: &str,
) -> Result<(), CaseError> {
    if answer["result"] != "error" {
        return Err(CaseError::Fail(format!(
            "{what}: expected the client to report a {kind} error, it reported success: {answer}"
        )));
    }
    let e = &answer["error"];
    if e["kind"] != kind {
        return Err(CaseError::Fail(format!(
            "{what}: expected error kind {kind:?}, the client reported {}",
            error_of(answer)
        )));
    }
    let message = e["message"].as_str().unwrap_or("");
    if !message.contains(contains) {
        return Err(CaseError::Fail(format!(
            "{what}: the error message must contain {contains:?}, got {message:?}"
        )));
    }
    Ok(())
}

//! What every process under test (a codec driver, a client driver) needs
//! from the runner, in one place: its standard error shown as it comes
//! with the tail kept, a crash report (exit status and that tail) when it
//! dies, and killing its whole process group when it hangs.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr};

/// How much of a testee's stderr a crash report quotes.
pub(crate) const STDERR_TAIL: usize = 2048;

/// The last [`STDERR_TAIL`] bytes a process wrote to its stderr.
#[derive(Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<VecDeque<u8>>>);

impl StderrTail {
    /// Reads `pipe` until it closes: each piece is passed on to our own
    /// stderr (testee authors debug with it) and the tail kept for a crash
    /// report.
    pub(crate) fn capture(mut pipe: ChildStderr) -> StderrTail {
        let tail = StderrTail::default();
        let sink = tail.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                let _ = std::io::stderr().write_all(&buf[..n]);
                if let Ok(mut t) = sink.0.lock() {
                    t.extend(&buf[..n]);
                    let excess = t.len().saturating_sub(STDERR_TAIL);
                    t.drain(..excess);
                }
            }
        });
        tail
    }

    /// The tail as text (invalid UTF-8 replaced), without trailing blanks.
    pub(crate) fn text(&self) -> String {
        let tail = self
            .0
            .lock()
            .map(|t| t.iter().copied().collect::<Vec<u8>>());
        String::from_utf8_lossy(&tail.unwrap_or_default())
            .trim_end()
            .to_string()
    }
}

/// Why `who` (`the testee`, `the client driver`) is gone: its exit status
/// and the tail of its stderr.
pub(crate) async fn crash_report(child: &mut Child, stderr: &StderrTail, who: &str) -> String {
    let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(s)) => s.to_string(),
        Ok(Err(e)) => format!("unknown ({e})"),
        Err(_) => "still running (it closed its stdout)".into(),
    };
    // The reader task may still be draining the pipe.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let tail = stderr.text();
    if tail.is_empty() {
        format!("{who} exited ({status}); its stderr was empty")
    } else {
        format!("{who} exited ({status}); the tail of its stderr:\n{tail}")
    }
}

/// Kills process group `pgid` (a testee started with `process_group(0)`
/// and everything it started). Without unsafe code (the workspace forbids
/// it) there is no killpg; the shell's kill builtin takes a negative pid,
/// after `--` (dash reads `-8...` as an option otherwise).
pub(crate) fn kill_process_group(pgid: u32) {
    let _ = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("kill -s KILL -- -{pgid} 2>/dev/null"))
        .status();
}

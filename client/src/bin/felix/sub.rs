//! `felix sub`: print events until --count, the broker's end of the
//! subscription, an error or Ctrl-C, and say which on standard error and
//! in the exit status, so a script can tell "got what I asked for" from
//! "the broker went away".

use std::io::Write;
use std::process::ExitCode;

use base64::Engine as _;
use felix_client::{Client, ClientError, Event, StartPosition, Subscription, SubscriptionItem};

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// `offset<TAB>payload` (payload as UTF-8, invalid bytes replaced).
    Text,
    /// One JSON object a line, the payload in base64 and as UTF-8.
    Json,
    /// The payload bytes alone.
    Raw,
}

/// Why `sub` stopped.
#[derive(Debug)]
pub(crate) enum End {
    /// `--count` events arrived.
    CountReached(u64),
    /// The broker finished the event stream (shutdown or drain).
    EndedByBroker(u64),
    /// The subscription failed.
    Failed(u64, ClientError),
    /// Ctrl-C.
    Interrupted(u64),
    /// Standard output was closed (`felix sub s | head -1`).
    OutputClosed(u64),
}

impl End {
    /// The exit status: 0 count reached (or the reader of standard output
    /// had enough), 3 ended by the broker, 2 error, 130 interrupted
    /// (128 + SIGINT, as shells report it).
    pub(crate) fn code(&self) -> ExitCode {
        ExitCode::from(match self {
            End::CountReached(_) | End::OutputClosed(_) => 0,
            End::EndedByBroker(_) => 3,
            End::Failed(..) => 2,
            End::Interrupted(_) => 130,
        })
    }

    /// The line for standard error.
    pub(crate) fn describe(&self, stream: &str) -> String {
        match self {
            End::CountReached(n) => format!("received {n} event(s) from {stream} (--count reached)"),
            End::EndedByBroker(n) => format!(
                "the broker ended the subscription to {stream} after {n} event(s) (it shut down or is draining connections)"
            ),
            End::Failed(n, e) => {
                format!("the subscription to {stream} failed after {n} event(s): {e}")
            }
            End::Interrupted(n) => format!("interrupted after {n} event(s) from {stream}"),
            End::OutputClosed(n) => {
                format!("standard output was closed after {n} event(s) from {stream}")
            }
        }
    }
}

/// Subscribes and prints until the subscription ends. With several
/// broker addresses (`failover`), a subscription the broker ended or lost
/// resumes on the next broker instead of ending.
pub(crate) async fn run(
    client: &Client,
    namespace: &str,
    stream: &str,
    start: StartPosition,
    count: Option<u64>,
    output: Output,
    failover: bool,
) -> Result<End, ClientError> {
    let mut sub = match client.subscribe(namespace, stream, start).await {
        Ok(sub) => sub,
        // Refused (a cursor error, an `error` frame) or never confirmed:
        // said the same way as a subscription that fails later.
        Err(e) => return Ok(End::Failed(0, e)),
    };
    eprintln!("felix: subscribed to {stream}, {}", describe_start(start));
    let mut seen = 0u64;
    let mut out = std::io::stdout().lock();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        if count.is_some_and(|c| seen >= c) {
            return Ok(End::CountReached(seen));
        }
        let item = tokio::select! {
            item = sub.next() => item,
            _ = &mut interrupted => return Ok(End::Interrupted(seen)),
        };
        match item {
            Some(Ok(SubscriptionItem::Event(e))) => {
                seen += 1;
                if let Err(e) = print_event(&mut out, &e, output) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(End::OutputClosed(seen));
                    }
                    return Err(ClientError::Io(e));
                }
            }
            Some(Ok(SubscriptionItem::Gap { expected, got })) => {
                eprintln!("felix: gap: events {expected}..{got} were not delivered");
                if output == Output::Json {
                    let line = serde_json::json!({"gap": {"expected": expected, "got": got}});
                    let _ = writeln!(out, "{line}");
                }
            }
            Some(Err(e)) if failover => {
                eprintln!("felix: subscription lost ({e}); resuming on another broker");
                sub = resume(client, &sub, seen).await?;
            }
            None if failover => {
                eprintln!("felix: the broker ended the subscription; resuming on another broker");
                sub = resume(client, &sub, seen).await?;
            }
            Some(Err(e)) => return Ok(End::Failed(seen, e)),
            None => return Ok(End::EndedByBroker(seen)),
        }
    }
}

async fn resume(
    client: &Client,
    sub: &Subscription,
    seen: u64,
) -> Result<Subscription, ClientError> {
    client.resume(sub).await.inspect_err(|_| {
        eprintln!("felix: resuming failed after {seen} event(s)");
    })
}

fn describe_start(start: StartPosition) -> String {
    match start {
        StartPosition::Latest => "new events only".into(),
        StartPosition::Earliest => "from the earliest event the broker holds".into(),
        StartPosition::Offset(o) => format!("from offset {o}"),
    }
}

fn print_event(out: &mut impl Write, e: &Event, output: Output) -> std::io::Result<()> {
    match output {
        Output::Raw => out.write_all(&e.payload)?,
        Output::Json => {
            let line = serde_json::json!({
                "offset": e.offset,
                "payload_base64": base64::engine::general_purpose::STANDARD.encode(&e.payload),
                "payload_utf8": String::from_utf8_lossy(&e.payload),
            });
            writeln!(out, "{line}")?
        }
        Output::Text => {
            let offset = e.offset.map_or("-".to_string(), |o| o.to_string());
            writeln!(out, "{offset}\t{}", String::from_utf8_lossy(&e.payload))?
        }
    }
    out.flush()
}

//! `felix-client-driver`: drives this toolkit's felix-wire client library
//! (`felix-client`, public API only) over the client driver protocol of
//! docs/conformance.md, so that `felix-conformance client` can test it.
//!
//! One JSON request per line on standard input, one answer per line on
//! standard output, in order. Logs go to standard error (`FELIX_LOG`).
//!
//! `--broken-config` deliberately misconfigures the client, to show that
//! the suite catches a broken client and says precisely how it broke.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use felix_client::{Ack, Client, ClientConfig, ClientError, Subscription, SubscriptionItem, Trust};
use felix_wire::StartPosition;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Drives felix-client over the felix-wire client driver protocol (JSON
/// lines on stdin/stdout; see docs/conformance.md). Run by
/// `felix-conformance client --cmd felix-client-driver`.
#[derive(Debug, Parser)]
#[command(name = "felix-client-driver", version, about, long_about)]
struct Cli {
    /// Misconfigure the client on purpose (to test the suite itself).
    #[arg(long, value_enum)]
    broken_config: Option<Broken>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Broken {
    /// Authenticate as another tenant than the one given in connect.
    WrongTenant,
    /// Accept frames of at most 8 payload bytes from the broker.
    TinyFrames,
    /// Ignore `resume`: a lost subscription is not resumed.
    NoResume,
}

/// A subscription and how to resume it.
struct Sub {
    live: Option<Subscription>,
    /// `Some` when the runner asked for resume: where to subscribe again.
    resume: Option<Resume>,
}

struct Resume {
    namespace: String,
    stream: String,
    start: StartPosition,
    /// The offset after the last delivered event, once one had an offset.
    next_offset: Option<u64>,
}

struct Driver {
    broken: Option<Broken>,
    client: Option<Client>,
    subs: HashMap<String, Sub>,
}

/// A request the driver cannot carry out as asked.
enum Failure {
    /// The client reported an error.
    Client(ClientError),
    /// The request itself is wrong (missing field, bad base64).
    Usage(String),
    /// Something the client cannot do.
    Unsupported(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

type Answer = Result<Value, Failure>;

fn kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Connect { .. } => "connect",
        ClientError::Tls(_) => "tls",
        ClientError::AuthFailed(_) => "auth",
        ClientError::CursorTooOld { .. } => "cursor_too_old",
        ClientError::CursorInFuture { .. } => "cursor_in_future",
        ClientError::Broker(_) => "broker",
        ClientError::Decode(_) => "decode",
        ClientError::Encode(_) => "encode",
        ClientError::Protocol(_) => "protocol",
        ClientError::Timeout => "timeout",
        ClientError::Closed => "closed",
        ClientError::Io(_) => "io",
        _ => "other",
    }
}

fn error_json(e: &ClientError) -> Value {
    let mut v = json!({"kind": kind(e), "message": e.to_string()});
    if let ClientError::CursorTooOld {
        requested,
        available,
    }
    | ClientError::CursorInFuture {
        requested,
        available,
    } = e
    {
        v["requested"] = json!(requested);
        v["available"] = json!(available);
    }
    v
}

fn answer_line(id: &Value, answer: Answer) -> Value {
    let mut v = match answer {
        Ok(mut fields) => {
            fields["result"] = json!("ok");
            fields
        }
        Err(Failure::Client(e)) => json!({"result": "error", "error": error_json(&e)}),
        Err(Failure::Usage(m)) => {
            json!({"result": "error", "error": {"kind": "usage", "message": m}})
        }
        Err(Failure::Unsupported(m)) => json!({"result": "unsupported", "message": m}),
    };
    v["id"] = id.clone();
    v
}

fn field<'a>(req: &'a Value, name: &str) -> Result<&'a str, Failure> {
    req[name]
        .as_str()
        .ok_or_else(|| Failure::Usage(format!("missing string field {name:?}")))
}

fn bytes(req: &Value, name: &str) -> Result<Bytes, Failure> {
    decode_b64(field(req, name)?, name)
}

fn decode_b64(s: &str, name: &str) -> Result<Bytes, Failure> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(Bytes::from)
        .map_err(|e| Failure::Usage(format!("{name}: not base64: {e}")))
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn ack(req: &Value) -> Result<Ack, Failure> {
    match req["ack"].as_str() {
        Some("none") => Ok(Ack::None),
        Some("per_message") | None => Ok(Ack::PerMessage),
        Some("per_batch") => Ok(Ack::PerBatch),
        Some(other) => Err(Failure::Usage(format!("unknown ack mode {other:?}"))),
    }
}

fn start(v: &Value) -> Result<StartPosition, Failure> {
    match v {
        Value::Null => Ok(StartPosition::Latest),
        Value::String(s) if s == "latest" => Ok(StartPosition::Latest),
        Value::String(s) if s == "earliest" => Ok(StartPosition::Earliest),
        Value::Object(o) => o
            .get("offset")
            .and_then(Value::as_u64)
            .map(StartPosition::Offset)
            .ok_or_else(|| Failure::Usage(format!("bad start position {v}"))),
        other => Err(Failure::Usage(format!("bad start position {other}"))),
    }
}

fn item_json(item: SubscriptionItem) -> Value {
    match item {
        SubscriptionItem::Event(e) => {
            json!({"kind": "event", "offset": e.offset, "payload": b64(&e.payload)})
        }
        SubscriptionItem::Gap { expected, got } => {
            json!({"kind": "gap", "expected": expected, "got": got})
        }
    }
}

impl Driver {
    fn client(&self) -> Result<&Client, Failure> {
        self.client
            .as_ref()
            .ok_or_else(|| Failure::Usage("not connected: send connect first".into()))
    }

    async fn handle(&mut self, req: &Value) -> Answer {
        let op = req["op"].as_str().unwrap_or("");
        tracing::debug!(op, "request");
        match op {
            "hello" => {
                Ok(json!({"name": "felix-client-driver", "version": env!("CARGO_PKG_VERSION")}))
            }
            "connect" => self.connect(req).await,
            "publish" => {
                let c = self.client()?;
                c.publish(
                    field(req, "namespace")?,
                    field(req, "stream")?,
                    bytes(req, "payload")?,
                    ack(req)?,
                )
                .await?;
                Ok(json!({}))
            }
            "publish_batch" => {
                let payloads = req["payloads"]
                    .as_array()
                    .ok_or_else(|| Failure::Usage("missing array field \"payloads\"".into()))?
                    .iter()
                    .map(|p| decode_b64(p.as_str().unwrap_or(""), "payloads"))
                    .collect::<Result<Vec<_>, _>>()?;
                let c = self.client()?;
                c.publish_batch(
                    field(req, "namespace")?,
                    field(req, "stream")?,
                    payloads,
                    ack(req)?,
                )
                .await?;
                Ok(json!({}))
            }
            "publish_concurrent" => self.publish_concurrent(req).await,
            "subscribe" => self.subscribe(req).await,
            "next" => self.next(req).await,
            "cache_put" => {
                let ttl = match &req["ttlMs"] {
                    Value::Null => None,
                    v => Some(Duration::from_millis(v.as_u64().ok_or_else(|| {
                        Failure::Usage(format!("ttlMs must be a u64 or null, got {v}"))
                    })?)),
                };
                let c = self.client()?;
                c.cache_put(
                    field(req, "namespace")?,
                    field(req, "cache")?,
                    field(req, "key")?,
                    bytes(req, "value")?,
                    ttl,
                )
                .await?;
                Ok(json!({}))
            }
            "cache_get" => {
                let c = self.client()?;
                let v = c
                    .cache_get(
                        field(req, "namespace")?,
                        field(req, "cache")?,
                        field(req, "key")?,
                    )
                    .await?;
                Ok(json!({"value": v.map(|b| b64(&b))}))
            }
            "close" => {
                self.subs.clear();
                if let Some(c) = self.client.take() {
                    c.close().await;
                }
                Ok(json!({}))
            }
            "bye" => Ok(json!({})),
            other => Err(Failure::Unsupported(format!("unknown op {other:?}"))),
        }
    }

    async fn connect(&mut self, req: &Value) -> Answer {
        let addr = field(req, "addr")?
            .parse()
            .map_err(|e| Failure::Usage(format!("addr: {e}")))?;
        let trust = Trust::CertificatePem(field(req, "certPem")?.as_bytes().to_vec());
        let mut tenant = field(req, "tenant")?.to_string();
        if self.broken == Some(Broken::WrongTenant) {
            tenant.push_str("-broken");
        }
        let mut config = ClientConfig::builder(addr, trust)
            .server_name(field(req, "serverName")?)
            .credentials(tenant, field(req, "token")?);
        let o = &req["options"];
        let ms = |name: &str| o[name].as_u64().map(Duration::from_millis);
        let count = |name: &str| o[name].as_u64().and_then(|n| usize::try_from(n).ok());
        if let Some(t) = ms("requestTimeoutMs") {
            config = config.request_timeout(t);
        }
        if let Some(t) = ms("connectTimeoutMs") {
            config = config.connect_timeout(t);
        }
        if let Some(n) = count("publishStreams") {
            config = config.publish_streams(n);
        }
        if let Some(n) = count("cacheStreams") {
            config = config.cache_streams(n);
        }
        if let Some(n) = o["maxFrameBytes"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
        {
            config = config.max_frame_bytes(n);
        }
        if self.broken == Some(Broken::TinyFrames) {
            config = config.max_frame_bytes(8);
        }
        self.client = Some(Client::connect(config.build()).await?);
        Ok(json!({}))
    }

    async fn publish_concurrent(&mut self, req: &Value) -> Answer {
        let c = self.client()?.clone();
        let (namespace, stream, ack) = (
            field(req, "namespace")?.to_string(),
            field(req, "stream")?.to_string(),
            ack(req)?,
        );
        let mut tasks = Vec::new();
        for p in req["payloads"].as_array().cloned().unwrap_or_default() {
            let payload = decode_b64(p.as_str().unwrap_or(""), "payloads")?;
            let (c, namespace, stream) = (c.clone(), namespace.clone(), stream.clone());
            tasks.push(tokio::spawn(async move {
                c.publish(&namespace, &stream, payload, ack).await
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(match t.await {
                Ok(Ok(())) => json!({"result": "ok"}),
                Ok(Err(e)) => json!({"result": "error", "error": error_json(&e)}),
                Err(e) => {
                    json!({"result": "error", "error": {"kind": "other", "message": e.to_string()}})
                }
            });
        }
        Ok(json!({"results": results}))
    }

    async fn subscribe(&mut self, req: &Value) -> Answer {
        let name = field(req, "sub")?.to_string();
        let (namespace, stream) = (
            field(req, "namespace")?.to_string(),
            field(req, "stream")?.to_string(),
        );
        let from = start(&req["start"])?;
        let sub = self.client()?.subscribe(&namespace, &stream, from).await?;
        let id = sub.id();
        let resume =
            (req["resume"] == true && self.broken != Some(Broken::NoResume)).then_some(Resume {
                namespace,
                stream,
                start: from,
                next_offset: None,
            });
        self.subs.insert(
            name,
            Sub {
                live: Some(sub),
                resume,
            },
        );
        Ok(json!({"subscriptionId": id}))
    }

    /// The next item; with resume, a subscription lost with its connection
    /// is made again from the offset after the last event (the library
    /// leaves resuming to the application, as its docs say).
    async fn next(&mut self, req: &Value) -> Answer {
        let name = field(req, "sub")?;
        let wait = Duration::from_millis(req["timeoutMs"].as_u64().unwrap_or(5000));
        let deadline = tokio::time::Instant::now() + wait;
        let client = self.client()?.clone();
        let sub = self
            .subs
            .get_mut(name)
            .ok_or_else(|| Failure::Usage(format!("no subscription {name:?}")))?;
        loop {
            let Some(live) = sub.live.as_mut() else {
                return Ok(json!({"item": {"kind": "end"}}));
            };
            let failure = match tokio::time::timeout_at(deadline, live.next()).await {
                Err(_) => return Ok(json!({"item": {"kind": "none"}})),
                Ok(None) => {
                    sub.live = None;
                    return Ok(json!({"item": {"kind": "end"}}));
                }
                Ok(Some(Ok(item))) => {
                    if let (Some(r), SubscriptionItem::Event(e)) = (sub.resume.as_mut(), &item) {
                        if let Some(o) = e.offset {
                            r.next_offset = Some(o + 1);
                        }
                    }
                    return Ok(json!({"item": item_json(item)}));
                }
                Ok(Some(Err(e))) => e,
            };
            sub.live = None;
            let Some(r) = sub
                .resume
                .as_ref()
                .filter(|_| matches!(failure, ClientError::Closed))
            else {
                return Err(failure.into());
            };
            let from = r.next_offset.map_or(r.start, StartPosition::Offset);
            tracing::info!(?from, "subscription lost with its connection; resuming");
            sub.live = Some(client.subscribe(&r.namespace, &r.stream, from).await?);
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FELIX_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut driver = Driver {
        broken: cli.broken_config,
        client: None,
        subs: HashMap::new(),
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                tracing::error!(error = %e, "reading standard input");
                return std::process::ExitCode::from(1);
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let (id, answer, bye) = match serde_json::from_str::<Value>(&line) {
            Ok(req) => {
                let bye = req["op"] == "bye";
                (req["id"].clone(), driver.handle(&req).await, bye)
            }
            Err(e) => (
                Value::Null,
                Err(Failure::Usage(format!("not a JSON line: {e}"))),
                false,
            ),
        };
        let text = format!("{}\n", answer_line(&id, answer));
        if out.write_all(text.as_bytes()).await.is_err() || out.flush().await.is_err() {
            return std::process::ExitCode::from(1);
        }
        if bye {
            break;
        }
    }
    if let Some(c) = driver.client.take() {
        c.close().await;
    }
    std::process::ExitCode::SUCCESS
}

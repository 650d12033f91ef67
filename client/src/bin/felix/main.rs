//! `felix`: publish, subscribe and use the cache of a felix-wire broker
//! from the command line. (The benchmarks and the soak test are
//! `felix-bench`, in the `bench/` crate.)

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use felix_client::{Client, ClientConfig, SubscriptionItem, Trust};

mod args;

use args::{CacheOp, Cli, Command};

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn trust(cli: &Cli) -> Result<Trust, String> {
    if cli.insecure {
        eprintln!("felix: warning: --insecure accepts any certificate");
        return Ok(Trust::InsecureSkipVerify);
    }
    if !cli.cert.exists() {
        return Err(format!("certificate {} not found: start felix-broker in this directory, pass --cert, or --insecure", cli.cert.display()));
    }
    Ok(Trust::CertificateFile(cli.cert.clone()))
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let (first, others) = cli
        .addr
        .split_first()
        .ok_or("--addr: no broker address given")?;
    let config = ClientConfig::builder(*first, trust(&cli)?)
        .failover_addrs(others.iter().copied())
        .server_name(cli.server_name.clone())
        .credentials(cli.tenant.clone(), cli.token.clone())
        .build();
    let client = Client::connect(config).await.map_err(|e| e.to_string())?;
    let ns = cli.namespace.as_str();
    let mut out = std::io::stdout().lock();
    let code = match cli.command {
        Command::Pub {
            stream,
            messages,
            ack,
            batch,
        } => {
            let messages: Vec<String> = if messages.is_empty() {
                std::io::stdin()
                    .lock()
                    .lines()
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("stdin: {e}"))?
            } else {
                messages
            };
            let ack = ack.into();
            let payloads: Vec<Bytes> = messages.into_iter().map(Bytes::from).collect();
            let n = payloads.len();
            if batch {
                client
                    .publish_batch(ns, &stream, payloads, ack)
                    .await
                    .map_err(|e| e.to_string())?;
            } else {
                for p in payloads {
                    client
                        .publish(ns, &stream, p, ack)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            if cli.json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::json!({"published": n, "stream": stream})
                );
            } else {
                let _ = writeln!(out, "published {n} message(s) to {stream}");
            }
            ExitCode::SUCCESS
        }
        Command::Sub {
            stream,
            start,
            count,
        } => {
            let mut sub = client
                .subscribe(ns, &stream, start)
                .await
                .map_err(|e| e.to_string())?;
            let mut seen = 0u64;
            // With one broker, the end of the subscription ends the command
            // (as before); with several, it resumes on the next one.
            let failover = cli.addr.len() > 1;
            while count.is_none_or(|c| seen < c) {
                let item = match sub.next().await {
                    Some(Err(_)) | None if failover => {
                        eprintln!("felix: subscription lost; resuming on another broker");
                        sub = client.resume(&sub).await.map_err(|e| e.to_string())?;
                        continue;
                    }
                    item => item,
                };
                match item {
                    Some(Ok(SubscriptionItem::Event(e))) => {
                        seen += 1;
                        if cli.json {
                            let line = serde_json::json!({"offset": e.offset, "payload_base64": b64(&e.payload), "payload_utf8": String::from_utf8_lossy(&e.payload)});
                            let _ = writeln!(out, "{line}");
                        } else {
                            let offset = e.offset.map_or("-".to_string(), |o| o.to_string());
                            let _ =
                                writeln!(out, "{offset}\t{}", String::from_utf8_lossy(&e.payload));
                        }
                        let _ = out.flush();
                    }
                    Some(Ok(SubscriptionItem::Gap { expected, got })) => {
                        eprintln!("felix: gap: events {expected}..{got} were not delivered");
                        if cli.json {
                            let _ = writeln!(
                                out,
                                "{}",
                                serde_json::json!({"gap": {"expected": expected, "got": got}})
                            );
                        }
                    }
                    Some(Err(e)) => return Err(e.to_string()),
                    None => break,
                }
            }
            ExitCode::SUCCESS
        }
        Command::Cache {
            op:
                CacheOp::Put {
                    cache,
                    key,
                    value,
                    ttl_ms,
                },
        } => {
            client
                .cache_put(
                    ns,
                    &cache,
                    &key,
                    Bytes::from(value),
                    ttl_ms.map(Duration::from_millis),
                )
                .await
                .map_err(|e| e.to_string())?;
            if cli.json {
                let _ = writeln!(out, "{}", serde_json::json!({"stored": key}));
            } else {
                let _ = writeln!(out, "stored {key}");
            }
            ExitCode::SUCCESS
        }
        Command::Cache {
            op: CacheOp::Get { cache, key },
        } => match client
            .cache_get(ns, &cache, &key)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(v) => {
                if cli.json {
                    let _ = writeln!(
                        out,
                        "{}",
                        serde_json::json!({"key": key, "value_base64": b64(&v)})
                    );
                } else {
                    let _ = writeln!(out, "{}", String::from_utf8_lossy(&v));
                }
                ExitCode::SUCCESS
            }
            None => {
                if cli.json {
                    let _ = writeln!(
                        out,
                        "{}",
                        serde_json::json!({"key": key, "value_base64": null})
                    );
                }
                eprintln!("felix: {key}: not found");
                ExitCode::from(1)
            }
        },
    };
    drop(out);
    client.close().await;
    Ok(code)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FELIX_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("felix: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("felix: {e}");
            ExitCode::from(2)
        }
    }
}

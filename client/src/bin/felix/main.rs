//! `felix`: publish, subscribe and use the cache of a felix-wire broker
//! from the command line. (The benchmarks and the soak test are
//! `felix-bench`, in the `bench/` crate.)
//!
//! Exit status: 0 success; 1 `cache get` of a missing key; 2 an error
//! (usage, connection, the broker's refusal); for `sub`, 3 when the
//! broker ended the subscription and 130 when interrupted (see `sub.rs`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use clap::{CommandFactory, Parser};
use felix_client::{Bytes, Client, ClientConfig, ClientError, Trust};

mod args;
mod hints;
mod payloads;
mod resolve;
mod sub;

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

/// The hint for a client error, if one applies (hints.rs).
fn hint(e: &ClientError, cli: &Cli) -> Option<String> {
    let addr = cli.addr.join(",");
    let target = hints::Target {
        addr: &addr,
        cert: (!cli.insecure).then_some(cli.cert.as_path()),
        server_name: &cli.server_name,
    };
    hints::hint(e, &target)
}

/// A client error as the CLI prints it: the error, and its hint on the
/// next line.
fn explain(e: &ClientError, cli: &Cli) -> String {
    match hint(e, cli) {
        Some(h) => format!("{e}\nfelix: hint: {h}"),
        None => e.to_string(),
    }
}

/// `felix completions SHELL`: the script on standard output. Made in
/// memory first: clap_complete panics on a failed write, and a closed
/// pipe (`felix completions bash | head`) is not worth a panic.
fn print_completions(shell: clap_complete::Shell) {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "felix", &mut script);
    let _ = std::io::stdout().write_all(&script);
}

async fn connect(cli: &Cli) -> Result<Client, String> {
    let addrs = resolve::resolve_all(&cli.addr).await?;
    let (first, others) = addrs
        .split_first()
        .ok_or("--addr: no broker address given")?;
    let config = ClientConfig::builder(*first, trust(cli)?)
        .failover_addrs(others.iter().copied())
        .server_name(cli.server_name.clone())
        .credentials(cli.tenant.clone(), cli.token.clone())
        .connect_timeout(Duration::from_millis(cli.connect_timeout_ms))
        .build();
    Client::connect(config).await.map_err(|e| explain(&e, cli))
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    cli.check()?;
    // Needs no broker: before connecting.
    if let Command::Completions { shell } = cli.command {
        print_completions(shell);
        return Ok(ExitCode::SUCCESS);
    }
    // `pub`'s payloads before connecting: a missing --file is reported
    // without a broker, and a broker is not kept waiting on standard input.
    let mut payloads = match &cli.command {
        Command::Pub {
            messages,
            file,
            stdin,
            ..
        } => payloads::Source::from_args(messages.clone(), file.clone(), *stdin)
            .read(std::io::stdin().lock())?,
        _ => Vec::new(),
    };
    let client = connect(&cli).await?;
    let ns = cli.namespace.as_str();
    let err = |e: ClientError| explain(&e, &cli);
    let mut out = std::io::stdout().lock();
    let code = match &cli.command {
        Command::Pub {
            stream, ack, batch, ..
        } => {
            let payloads = std::mem::take(&mut payloads);
            let ack = (*ack).into();
            let n = payloads.len();
            if *batch {
                client
                    .publish_batch(ns, stream, payloads, ack)
                    .await
                    .map_err(err)?;
            } else {
                for p in payloads {
                    client.publish(ns, stream, p, ack).await.map_err(err)?;
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
            raw,
        } => {
            drop(out);
            let output = match (cli.json, raw) {
                (true, _) => sub::Output::Json,
                (false, true) => sub::Output::Raw,
                (false, false) => sub::Output::Text,
            };
            // With one broker, the end of the subscription ends the command;
            // with several, it resumes on the next one.
            let failover = cli.addr.len() > 1;
            let end = sub::run(&client, ns, stream, *start, *count, output, failover)
                .await
                .map_err(err)?;
            eprintln!("felix: {}", end.describe(stream));
            if let sub::End::Failed(_, e) = &end {
                if let Some(h) = hint(e, &cli) {
                    eprintln!("felix: hint: {h}");
                }
            }
            client.close().await;
            return Ok(end.code());
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
                    cache,
                    key,
                    Bytes::from(value.clone()),
                    ttl_ms.map(Duration::from_millis),
                )
                .await
                .map_err(err)?;
            if cli.json {
                let _ = writeln!(out, "{}", serde_json::json!({"stored": key}));
            } else {
                let _ = writeln!(out, "stored {key}");
            }
            ExitCode::SUCCESS
        }
        Command::Cache {
            op: CacheOp::Get { cache, key, raw },
        } => match client.cache_get(ns, cache, key).await.map_err(err)? {
            Some(v) => {
                let _ = if cli.json {
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({"key": key, "value_base64": b64(&v)})
                    )
                } else if *raw {
                    out.write_all(&v)
                } else {
                    writeln!(out, "{}", String::from_utf8_lossy(&v))
                };
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
        Command::Completions { shell } => {
            // Answered above, before connecting; kept for completeness.
            print_completions(*shell);
            ExitCode::SUCCESS
        }
    };
    let _ = out.flush();
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

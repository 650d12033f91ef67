//! `felix-broker`: serve felix-wire over QUIC until SIGINT or SIGTERM, then
//! drain gracefully.

use std::process::ExitCode;

use felix_broker::config::{Config, LogFormat};
use felix_broker::env::{self, ArgsError};
use felix_broker::{app, runtime};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let parsed = match env::parse(std::env::args_os()) {
        Ok(p) => p,
        Err(ArgsError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("felix-broker: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::resolve(parsed.cli) {
        Ok(c) => c,
        Err(e) => {
            // An ignored or renamed variable may be why the configuration
            // is incomplete: say so before the error.
            for warning in &parsed.warnings {
                eprintln!("felix-broker: warning: {warning}");
            }
            eprintln!("felix-broker: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime::build(config.worker_threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("felix-broker: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // With shards, the shard threads poll (they serve the connections).
    if config.busy_poll && config.shards == 0 {
        runtime::start_busy_polling(runtime.handle());
    }
    runtime.block_on(serve(config, parsed.warnings))
}

/// Logs go to stderr (stdout carries the banner scripts read): text,
/// coloured only on a terminal so a redirected log has no escape codes, or
/// one JSON object per line. The filter was checked when the
/// configuration was resolved.
fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match config.log_format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => fmt.json().with_ansi(false).init(),
    }
}

async fn serve(config: Config, warnings: Vec<String>) -> ExitCode {
    init_logging(&config);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let started = match app::start(&config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("felix-broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = started.broker.local_addr();
    tracing::info!(
        %addr,
        auth = ?config.auth,
        workers = tokio::runtime::Handle::current().metrics().num_workers(),
        shards = config.shards,
        busy_poll = config.busy_poll,
        version = %env!("CARGO_PKG_VERSION"),
        "felix-broker serving felix-wire v1 over QUIC (no ALPN)"
    );
    println!(
        "felix-broker listening on {addr} (QUIC, felix-wire v1, auth {:?})",
        config.auth
    );
    println!("  trust this certificate: {}", started.cert_path.display());
    // An unspecified bind (0.0.0.0, ::) is not an address to dial.
    let dial = if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    println!(
        "  try: felix --addr {dial} --cert {} sub orders",
        started.cert_path.display()
    );
    if let Some(m) = started.metrics_addr {
        println!("  metrics: http://{m}/metrics   health: http://{m}/healthz");
    }
    wait_for_signal().await;
    tracing::info!("draining: no new connections; flushing queued events");
    let core = started.broker.core().clone();
    started.broker.shutdown().await;
    if config.cluster.is_some() {
        // JetStream keeps the history: nothing of this node's to save.
        tracing::info!("stopped");
        return ExitCode::SUCCESS;
    }
    match felix_broker::persist::save(&core, &config.data_dir) {
        Ok(report) if report.skipped > 0 => tracing::warn!(
            streams = report.saved,
            skipped = report.skipped,
            dir = %config.data_dir.display(),
            "replay rings saved, some skipped (see above)"
        ),
        Ok(report) => {
            tracing::info!(streams = report.saved, dir = %config.data_dir.display(), "replay rings saved")
        }
        Err(e) => tracing::warn!(error = %e, "saving replay rings failed"),
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

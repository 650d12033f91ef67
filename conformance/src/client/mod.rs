//! `client` mode: client conformance. The runner listens as a scripted
//! broker (QUIC on loopback, a test certificate handed to the driver) and
//! drives the client under test through the client driver protocol
//! (docs/conformance.md), checking what the client puts on the wire and
//! how it reacts to what the broker sends.
//!
//! - [`broker`]: the scripted broker and the checks made on every frame.
//! - [`driver`]: the driver process (JSON lines).
//! - `cases`: the cases, one function each.
//!
//! Every case gets a fresh broker endpoint and a fresh driver process, so
//! nothing leaks from one case into the next.

pub mod broker;
mod cases;
pub mod driver;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::case::{CaseResult, Level, Outcome};
use crate::live::CaseError;
use crate::run::Selection;
use broker::{AuthReply, Listener, ScriptedBroker};
use driver::ClientDriver;

pub use cases::all;

/// A boxed case future.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CaseError>> + Send + 'a>>;

/// One client case.
pub struct ClientCase {
    /// Stable id.
    pub id: &'static str,
    /// Level.
    pub level: Level,
    /// What it checks, one line.
    pub about: &'static str,
    /// How the scripted broker answers `auth`.
    pub auth: fn() -> AuthReply,
    /// The script.
    pub run: for<'a> fn(&'a mut Session) -> CaseFuture<'a>,
}

/// What a case works with: the scripted broker and the driver.
pub struct Session {
    /// The scripted broker.
    pub b: ScriptedBroker,
    /// The driver.
    pub d: ClientDriver,
    /// Tenant and token the driver is told to use.
    pub tenant: String,
    /// Token.
    pub token: String,
    cert_pem: String,
    /// Per-operation timeout.
    pub timeout: Duration,
}

impl Session {
    /// The `connect` request, with driver `options`.
    pub fn connect_request(&self, options: Value) -> Result<Value, CaseError> {
        Ok(json!({
            "op": "connect",
            "addr": self.b.addr()?.to_string(),
            "serverName": "localhost",
            "certPem": self.cert_pem,
            "tenant": self.tenant,
            "token": self.token,
            "options": options,
        }))
    }

    /// Connects the client, which must succeed.
    pub async fn connect(&mut self, options: Value) -> Result<(), CaseError> {
        let request = self.connect_request(options)?;
        let answer = self.d.call(request).await?;
        driver::ok(&answer, "connect").map(drop)
    }
}

/// The run's configuration.
#[derive(Debug, Clone)]
pub struct ClientSuiteConfig {
    /// The driver command line, run with `sh -c`.
    pub cmd: String,
    /// Per-operation timeout.
    pub timeout: Duration,
    /// How long the driver may take to answer hello.
    pub startup_timeout: Duration,
    /// Where the test certificate is made.
    pub scratch: std::path::PathBuf,
}

/// The test certificate (self-signed, `localhost`) and server config.
pub fn listener(dir: &Path) -> Result<Listener, String> {
    use felix_broker::tls;
    let material = tls::load_or_create_dev(dir).map_err(|e| e.to_string())?;
    let server = tls::server_config(&material, &tls::TransportSettings::default())
        .map_err(|e| e.to_string())?;
    let cert_pem = std::fs::read_to_string(&material.cert_path)
        .map_err(|e| format!("{}: {e}", material.cert_path.display()))?;
    Ok(Listener { server, cert_pem })
}

/// Runs one case: a fresh broker and driver, the script, `close`, then the
/// wire checks of every frame the client sent.
async fn run_case(
    c: &ClientCase,
    cfg: &ClientSuiteConfig,
    listener: &Listener,
) -> Result<(Outcome, String), String> {
    let b = ScriptedBroker::start(listener, (c.auth)(), "t1", "dev", cfg.timeout)?;
    let d = ClientDriver::start(&cfg.cmd, cfg.timeout, cfg.startup_timeout).await?;
    let announced = d.announced.clone();
    let mut s = Session {
        b,
        d,
        tenant: "t1".into(),
        token: "dev".into(),
        cert_pem: listener.cert_pem.clone(),
        timeout: cfg.timeout,
    };
    let result = match tokio::time::timeout(cfg.timeout * 12, (c.run)(&mut s)).await {
        Ok(r) => r,
        Err(_) => Err(CaseError::Fail(format!(
            "the case did not finish within {} ms",
            (cfg.timeout * 12).as_millis()
        ))),
    };
    let closed = match &result {
        Ok(()) => {
            s.d.call(json!({"op": "close"}))
                .await
                .and_then(|a| driver::ok(&a, "close").map(drop))
        }
        Err(_) => Ok(()),
    };
    // Give frames written just before `close` time to be read and checked.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let violations = s.b.violations();
    s.b.stop();
    s.d.stop().await;
    let wire = if violations.is_empty() {
        String::new()
    } else {
        format!("on the wire:\n  {}", violations.join("\n  "))
    };
    let outcome = match (result.and(closed), wire.is_empty()) {
        (Err(CaseError::Unsupported(why)), _) => Outcome::Unsupported(why),
        (Err(CaseError::Skip(why)), _) => Outcome::Skipped(why),
        (Ok(()), true) => Outcome::Pass,
        (Ok(()), false) => Outcome::Fail(wire),
        (Err(CaseError::Fail(why)), true) => Outcome::Fail(why),
        (Err(CaseError::Fail(why)), false) => Outcome::Fail(format!("{why}\n{wire}")),
    };
    Ok((outcome, announced))
}

/// Runs the selected client cases; `progress` is told about each.
/// Fails (a usage error) only if the driver cannot be started at all.
pub async fn run_suite(
    cfg: &ClientSuiteConfig,
    sel: &Selection,
    mut progress: impl FnMut(&CaseResult),
) -> Result<(Vec<CaseResult>, String), String> {
    let listener = listener(&cfg.scratch)?;
    // A driver that cannot start or say hello is a usage error, not a
    // failed case.
    let probe = ClientDriver::start(&cfg.cmd, cfg.timeout, cfg.startup_timeout).await?;
    let announced = probe.announced.clone();
    probe.stop().await;
    let mut out = Vec::new();
    for c in all() {
        if !sel.selected(c.id) {
            continue;
        }
        let t0 = Instant::now();
        let outcome = match run_case(&c, cfg, &listener).await {
            Ok((o, _)) => o,
            Err(e) => Outcome::Fail(e),
        };
        tracing::debug!(id = c.id, ?outcome, "client case done");
        let r = sel.result(c.id.to_string(), c.level, outcome, t0.elapsed());
        progress(&r);
        out.push(r);
    }
    Ok((out, announced))
}

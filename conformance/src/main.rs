//! `felix-conformance`: the conformance runner's command line.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::{Parser, Subcommand, ValueEnum};
use felix_conformance::case::{CaseResult, ExpectedFailures, Level};
use felix_conformance::driver::{self, Testee};
use felix_conformance::embedded::Embedded;
use felix_conformance::inspect::{self, InputFormat};
use felix_conformance::live::{self, LiveConfig};
use felix_conformance::peer::{Target, Trust};
use felix_conformance::report::{self, RunInfo, Summary};
use felix_conformance::run::{self, Selection};
use felix_conformance::vectors;
use felix_wire::vectors::VectorCase;

/// Checks felix-wire implementations: vectors through our codec, other
/// languages' codecs over the driver protocol (docs/conformance.md), and
/// live brokers. With no subcommand: the vectors, then the live suite
/// against an embedded reference broker.
///
/// Exit codes: 0 every required case passed (and at least one passed); 1 a
/// required case failed, an expected failure passed, nothing passed, or
/// (--strict) a case was unsupported or a recommended case failed; 2 usage
/// error, or the broker under test cannot be reached (preflight).
#[derive(Debug, Parser)]
#[command(name = "felix-conformance", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Run only cases whose id starts with PREFIX (repeatable).
    #[arg(long, global = true, value_name = "PREFIX")]
    filter: Vec<String>,
    /// List the selected case ids and exit.
    #[arg(long, global = true)]
    list: bool,
    /// File of case ids (one per line, # comments) expected to fail: they do
    /// not fail the run, and fail it if they pass.
    #[arg(long, global = true, value_name = "FILE")]
    expected_failures: Option<PathBuf>,
    /// Report format on standard output (with --list: ids, or objects with
    /// id, level and description).
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also write an HTML report (one self-contained page) to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Read the vectors from DIR [default: the vectors embedded in this
    /// binary].
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Per-operation timeout in milliseconds (a testee answer, a broker frame).
    #[arg(long, global = true, default_value_t = 5000)]
    timeout_ms: u64,
    /// How long a codec testee may take to start and answer hello, in
    /// milliseconds (interpreters and JITs start slowly).
    #[arg(long, global = true, default_value_t = 10000)]
    startup_timeout_ms: u64,
    /// Print only failures, warnings and the totals (not passes,
    /// unsupported or not-applicable cases).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Also fail the run on unsupported cases and failed recommended cases.
    #[arg(long, global = true)]
    strict: bool,
    /// Accepted for compatibility: every case is printed as it finishes.
    #[arg(long, short, global = true, hide = true)]
    verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Failures with reasons, then totals.
    Human,
    /// One JSON document (see docs/conformance.md).
    Json,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Every vector through this toolkit's codec.
    Vectors,
    /// Drive an external codec over the driver protocol.
    Codec {
        /// The testee command line, run with `sh -c`.
        #[arg(long)]
        cmd: String,
    },
    /// The live suite against a running broker.
    Broker(BrokerArgs),
    /// Cross-node cases against brokers that serve as one cluster (run
    /// `broker` against each node too): publish on A and subscribe on B,
    /// resume on B from an offset read on A, cache put on A and get on B,
    /// TTL expiry seen on every node.
    Cluster(ClusterArgs),
    /// Client conformance: listen as a scripted broker and drive a client
    /// through the client driver protocol (docs/conformance.md).
    Client {
        /// The driver command line, run with `sh -c` once per case, e.g.
        /// target/debug/felix-client-driver.
        #[arg(long)]
        cmd: String,
    },
    /// Decode frames (hex or raw, from FILE or stdin) to the neutral JSON form.
    Decode {
        /// Input file; standard input when absent.
        file: Option<PathBuf>,
        /// Input format.
        #[arg(long, value_enum, default_value_t = InputFormat::Hex)]
        input: InputFormat,
        /// Payload cap to apply.
        #[arg(long, default_value_t = felix_wire::DEFAULT_MAX_FRAME_BYTES)]
        max_frame_bytes: u32,
    },
    /// Encode a frame (or an array of frames) in the neutral JSON form to hex.
    Encode {
        /// Input file; standard input when absent.
        file: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct BrokerArgs {
    /// Broker address.
    #[arg(long)]
    addr: SocketAddr,
    /// TLS server name.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// PEM certificate to trust.
    #[arg(
        long,
        value_name = "PEM",
        conflicts_with = "insecure",
        required_unless_present = "insecure"
    )]
    cert: Option<PathBuf>,
    /// Accept any certificate.
    #[arg(long)]
    insecure: bool,
    #[command(flatten)]
    scope: ScopeArgs,
    /// The broker's replay ring size, for a broker with a bounded history:
    /// `broker/pubsub/cursor_too_old` runs only when this is given (a
    /// durable stream serving all history never answers too_old).
    #[arg(long, value_name = "N")]
    replay_capacity: Option<u64>,
    /// The broker promises base_offset on live batches to subscribers that
    /// negotiated 0x0020: the offset cases then fail, instead of being
    /// skipped, when offsets are missing (Felix sends none on in-memory
    /// streams, which v1 allows).
    #[arg(long)]
    sends_offsets: bool,
}

#[derive(Debug, clap::Args)]
struct ClusterArgs {
    /// A node's address; give two or more (`--addr A --addr B`). The first
    /// publishes and writes, the others read.
    #[arg(long = "addr", value_name = "ADDR", required = true)]
    addrs: Vec<SocketAddr>,
    /// TLS server name of every node.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// PEM certificate to trust, repeatable (each node may have its own;
    /// every one given is trusted for every node).
    #[arg(
        long = "cert",
        value_name = "PEM",
        conflicts_with = "insecure",
        required_unless_present = "insecure"
    )]
    certs: Vec<PathBuf>,
    /// Accept any certificate.
    #[arg(long)]
    insecure: bool,
    #[command(flatten)]
    scope: ScopeArgs,
}

/// Who the live and cluster cases act as, and where.
#[derive(Debug, clap::Args)]
struct ScopeArgs {
    /// Tenant to authenticate as.
    #[arg(long, default_value = "t1")]
    tenant: String,
    /// Token to authenticate with.
    #[arg(long, default_value = "dev")]
    token: String,
    /// Namespace for every case.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// A stream that exists (on every node, in cluster mode), for brokers
    /// that do not create streams on first use; default: a fresh stream
    /// per case.
    #[arg(long)]
    stream: Option<String>,
    /// A cache that exists (on every node, in cluster mode).
    #[arg(long, default_value = "conformance")]
    cache: String,
}

fn cluster_items(sel: &Selection) -> Vec<(String, Level, String)> {
    live::cluster::all()
        .iter()
        .filter(|c| sel.selected(c.id))
        .map(|c| (c.id.to_string(), c.level, c.about.to_string()))
        .collect()
}

fn vectors_source(arg: Option<PathBuf>) -> vectors::Source {
    arg.map_or(vectors::Source::Embedded, vectors::Source::Dir)
}

fn read_input(file: &Option<PathBuf>) -> Result<Vec<u8>, String> {
    match file {
        Some(p) => std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| format!("stdin: {e}"))?;
            Ok(buf)
        }
    }
}

/// Standard output that tolerates a reader going away (`| head -1`): the
/// first failed write marks it closed and later output is dropped, so the
/// run still finishes and its exit code still means what it says.
struct Out {
    closed: bool,
}

impl Out {
    fn write(&mut self, text: &str) {
        if self.closed {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            self.closed = true;
        }
    }
}

/// Each case as it finishes: on stdout in the human format, on stderr
/// when stdout carries JSON; `--quiet` hides passes and unsupported.
struct Progress {
    to_stdout: bool,
    quiet: bool,
    started: Instant,
}

impl Progress {
    fn case(&mut self, out: &mut Out, r: &CaseResult) {
        if self.quiet && report::quiet_hides(r.verdict) {
            return;
        }
        let line = report::human_case(r);
        if self.to_stdout {
            out.write(&line);
        } else {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    fn phase(&mut self, name: &str) {
        let _ = writeln!(
            std::io::stderr(),
            "== {name} ({:.1}s)",
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// `--list`: ids, or with `--format json` one array of objects.
fn list(out: &mut Out, format: Format, items: Vec<(String, Level, String)>) {
    match format {
        Format::Human => {
            for (id, _, _) in items {
                out.write(&format!("{id}\n"));
            }
        }
        Format::Json => {
            let v: Vec<serde_json::Value> = items
                .into_iter()
                .map(|(id, level, description)| {
                    serde_json::json!({"id": id, "level": level, "description": description})
                })
                .collect();
            out.write(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ));
        }
    }
}

fn live_items(sel: &Selection) -> Vec<(String, Level, String)> {
    live::all()
        .iter()
        .filter(|c| sel.selected(c.id))
        .map(|c| (c.id.to_string(), c.level, c.about.to_string()))
        .collect()
}

fn vector_items(
    cases: &[VectorCase],
    sel: &Selection,
    with_encode: bool,
) -> Vec<(String, Level, String)> {
    let mut items = Vec::new();
    for c in cases {
        let ids = if with_encode {
            driver::case_ids(std::slice::from_ref(c))
        } else {
            vec![vectors::case_id(c)]
        };
        for id in ids {
            if sel.selected(&id) {
                let about = if id.ends_with("/encode") {
                    format!("encoding `decoded` gives the frame back. {}", c.comment)
                        .trim_end()
                        .to_string()
                } else {
                    c.comment.clone()
                };
                items.push((id, Level::Required, about));
            }
        }
    }
    items
}

async fn run(cli: Cli, out: &mut Out) -> Result<bool, String> {
    let expected = match &cli.expected_failures {
        Some(p) => ExpectedFailures::parse(
            &std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        ),
        None => ExpectedFailures::default(),
    };
    let sel = Selection {
        filters: cli.filter.clone(),
        expected,
    };
    let timeout = Duration::from_millis(cli.timeout_ms.max(1));
    let startup_timeout = Duration::from_millis(cli.startup_timeout_ms.max(1));
    let case_timeout = timeout * 12;
    let mut results: Vec<CaseResult> = Vec::new();
    let mut descriptions: HashMap<String, String> = HashMap::new();
    let mut info = RunInfo {
        timestamp: report::rfc3339(SystemTime::now()),
        strict: cli.strict,
        ..RunInfo::default()
    };
    let mut progress = Progress {
        to_stdout: cli.format == Format::Human,
        quiet: cli.quiet,
        started: Instant::now(),
    };
    match cli.mode {
        Some(Mode::Decode {
            file,
            input,
            max_frame_bytes,
        }) => {
            let frames = inspect::decode(&read_input(&file)?, input, max_frame_bytes)?;
            for f in frames {
                out.write(&format!("{f}\n"));
            }
            return Ok(true);
        }
        Some(Mode::Encode { file }) => {
            let text = String::from_utf8(read_input(&file)?)
                .map_err(|_| "input is not UTF-8 JSON".to_string())?;
            for hex in inspect::encode(&text)? {
                out.write(&format!("{hex}\n"));
            }
            return Ok(true);
        }
        Some(Mode::Codec { cmd }) => {
            let source = vectors_source(cli.dir.clone());
            let cases = vectors::load(&source)?;
            let items = vector_items(&cases, &sel, true);
            if cli.list {
                list(out, cli.format, items);
                return Ok(true);
            }
            descriptions.extend(items.into_iter().map(|(id, _, d)| (id, d)));
            info.mode = "codec".into();
            info.testee = Some(cmd.clone());
            info.vectors = Some(source.to_string());
            progress.phase(&format!("codec: {cmd} (vectors: {source})"));
            let mut testee = Testee::start(&cmd, timeout, startup_timeout).await?;
            let announced = testee.announced.clone().unwrap_or_default();
            let _ = writeln!(std::io::stderr(), "testee: {announced}");
            info.testee_announced = Some(announced);
            for (id, level, outcome, took) in
                driver::run(&mut testee, &cases, |id| sel.selected(id)).await
            {
                let r = sel.result(id, level, outcome, took);
                progress.case(out, &r);
                results.push(r);
            }
            testee.stop().await;
        }
        Some(Mode::Vectors) | None => {
            let source = vectors_source(cli.dir.clone());
            let cases = vectors::load(&source)?;
            let mut items = vector_items(&cases, &sel, false);
            let with_live = cli.mode.is_none();
            if with_live {
                items.extend(live_items(&sel));
            }
            if cli.list {
                list(out, cli.format, items);
                return Ok(true);
            }
            descriptions.extend(items.into_iter().map(|(id, _, d)| (id, d)));
            info.mode = if with_live { "default" } else { "vectors" }.into();
            info.vectors = Some(source.to_string());
            progress.phase(&format!(
                "vectors: {} cases through felix-wire (vectors: {source})",
                cases.len()
            ));
            for c in &cases {
                let (id, level, outcome) = vectors::run(c);
                if sel.selected(&id) {
                    let r = sel.result(id, level, outcome, Duration::ZERO);
                    progress.case(out, &r);
                    results.push(r);
                }
            }
            if with_live && live::all().iter().any(|c| sel.selected(c.id)) {
                let embedded = Embedded::start().await?;
                info.target = Some(format!(
                    "the embedded reference broker on {}",
                    embedded.target.addr
                ));
                progress.phase(&format!(
                    "broker: live suite against the embedded reference broker on {}",
                    embedded.target.addr
                ));
                live::preflight(&embedded.target, timeout).await?;
                let cfg = LiveConfig {
                    target: embedded.target.clone(),
                    namespace: "default".into(),
                    stream: None,
                    cache: "conformance".into(),
                    // Ours: a bounded ring, and offsets on every live batch.
                    replay_capacity: Some(embedded.replay_capacity),
                    sends_offsets: true,
                    timeout,
                };
                results.extend(
                    run::live_suite(cfg, case_timeout, &sel, |r| progress.case(out, r)).await,
                );
                embedded.stop().await;
            }
        }
        Some(Mode::Client { cmd }) => {
            if cli.list {
                let items = felix_conformance::client::all()
                    .iter()
                    .filter(|c| sel.selected(c.id))
                    .map(|c| (c.id.to_string(), c.level, c.about.to_string()))
                    .collect();
                list(out, cli.format, items);
                return Ok(true);
            }
            descriptions.extend(
                felix_conformance::client::all()
                    .iter()
                    .map(|c| (c.id.to_string(), c.about.to_string())),
            );
            info.mode = "client".into();
            info.testee = Some(cmd.clone());
            progress.phase(&format!("client: {cmd}"));
            let scratch = std::env::temp_dir()
                .join(format!("felix-conformance-client-{}", std::process::id()));
            let cfg = felix_conformance::client::ClientSuiteConfig {
                cmd,
                timeout,
                startup_timeout,
                scratch: scratch.clone(),
            };
            let run =
                felix_conformance::client::run_suite(&cfg, &sel, |r| progress.case(out, r)).await;
            let _ = std::fs::remove_dir_all(&scratch);
            let (r, announced) = run?;
            let _ = writeln!(std::io::stderr(), "client driver: {announced}");
            info.testee_announced = Some(announced);
            results.extend(r);
        }
        Some(Mode::Broker(b)) => {
            if cli.list {
                list(out, cli.format, live_items(&sel));
                return Ok(true);
            }
            descriptions.extend(live_items(&sel).into_iter().map(|(id, _, d)| (id, d)));
            let trust = match (&b.cert, b.insecure) {
                (Some(p), _) => felix_conformance::peer::trust_pem_file(p)?,
                (None, _) => Trust::InsecureSkipVerify,
            };
            let cfg = LiveConfig {
                target: Target {
                    addr: b.addr,
                    server_name: b.server_name,
                    trust,
                    tenant: b.scope.tenant,
                    token: b.scope.token,
                },
                namespace: b.scope.namespace,
                stream: b.scope.stream,
                cache: b.scope.cache,
                replay_capacity: b.replay_capacity,
                sends_offsets: b.sends_offsets,
                timeout,
            };
            info.mode = "broker".into();
            info.target = Some(b.addr.to_string());
            progress.phase(&format!("broker: live suite against {}", b.addr));
            live::preflight(&cfg.target, timeout).await?;
            if b.replay_capacity.is_none() {
                let _ = writeln!(std::io::stderr(), "note: broker/pubsub/cursor_too_old is skipped: no --replay-capacity (a bounded history) was given");
            }
            results
                .extend(run::live_suite(cfg, case_timeout, &sel, |r| progress.case(out, r)).await);
        }
        Some(Mode::Cluster(c)) => {
            if cli.list {
                list(out, cli.format, cluster_items(&sel));
                return Ok(true);
            }
            if c.addrs.len() < 2 {
                return Err(format!(
                    "cluster needs two or more --addr (the nodes to compare), got {}",
                    c.addrs.len()
                ));
            }
            descriptions.extend(cluster_items(&sel).into_iter().map(|(id, _, d)| (id, d)));
            let trust = if c.insecure {
                Trust::InsecureSkipVerify
            } else {
                felix_conformance::peer::trust_pem_files(&c.certs)?
            };
            let nodes: Vec<Target> = c
                .addrs
                .iter()
                .map(|addr| Target {
                    addr: *addr,
                    server_name: c.server_name.clone(),
                    trust: trust.clone(),
                    tenant: c.scope.tenant.clone(),
                    token: c.scope.token.clone(),
                })
                .collect();
            let names: Vec<String> = c.addrs.iter().map(ToString::to_string).collect();
            info.mode = "cluster".into();
            info.target = Some(names.join(", "));
            progress.phase(&format!(
                "cluster: cross-node cases across {}",
                names.join(", ")
            ));
            for node in &nodes {
                live::preflight(node, timeout).await?;
            }
            let cfg = live::cluster::ClusterConfig {
                live: LiveConfig {
                    target: nodes[0].clone(),
                    namespace: c.scope.namespace,
                    stream: c.scope.stream,
                    cache: c.scope.cache,
                    replay_capacity: None,
                    sends_offsets: false,
                    timeout,
                },
                nodes,
            };
            results.extend(
                run::cluster_suite(cfg, case_timeout, &sel, |r| progress.case(out, r)).await,
            );
        }
    }
    let ran: std::collections::BTreeSet<String> = results.iter().map(|r| r.id.clone()).collect();
    for unknown in sel.expected.unknown(&ran) {
        let _ = writeln!(
            std::io::stderr(),
            "note: expected failure {unknown:?} matched no case that ran"
        );
    }
    if results.is_empty() {
        return Err(format!("no case matches the filters {:?}", cli.filter));
    }
    for r in &mut results {
        if let Some(d) = descriptions.remove(&r.id) {
            r.description = d;
        }
    }
    match cli.format {
        Format::Human => {
            if let Some(source) = &info.vectors {
                out.write(&format!("vectors: {source}\n"));
            }
            out.write(&report::human_totals(&results))
        }
        Format::Json => out.write(&format!("{}\n", report::json(&results, &info))),
    }
    if let Some(path) = &cli.junit {
        std::fs::write(path, report::junit(&results))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &cli.html {
        std::fs::write(path, report::html(&results, &info))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(Summary::of(&results).ok(cli.strict))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FELIX_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut out = Out { closed: false };
    match run(cli, &mut out).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "felix-conformance: {e}");
            ExitCode::from(2)
        }
    }
}

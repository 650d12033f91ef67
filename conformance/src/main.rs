//! `felix-conformance`: the conformance runner's command line.

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use felix_conformance::case::{CaseResult, ExpectedFailures, Verdict};
use felix_conformance::driver::{self, Testee};
use felix_conformance::embedded::Embedded;
use felix_conformance::inspect::{self, InputFormat};
use felix_conformance::live::{self, LiveConfig};
use felix_conformance::peer::{Target, Trust};
use felix_conformance::report::{self, Summary};
use felix_conformance::run::{self, Selection};
use felix_conformance::vectors;

/// Checks felix-wire implementations: vectors through our codec, other
/// languages' codecs over the driver protocol (docs/conformance.md), and
/// live brokers. With no subcommand: the vectors, then the live suite
/// against an embedded reference broker.
///
/// Exit codes: 0 every required case passed; 1 a required case failed or an
/// expected failure passed; 2 usage error.
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
    /// Report format on standard output.
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Vectors directory [default: ./vectors, else the repository's].
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Per-operation timeout in milliseconds (a testee answer, a broker frame).
    #[arg(long, global = true, default_value_t = 5000)]
    timeout_ms: u64,
    /// Show passing cases too.
    #[arg(long, short, global = true)]
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
    /// Tenant to authenticate as.
    #[arg(long, default_value = "t1")]
    tenant: String,
    /// Token to authenticate with.
    #[arg(long, default_value = "dev")]
    token: String,
    /// Namespace for every case.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// A stream that exists (for brokers that do not create streams on
    /// first use); default: a fresh stream per case.
    #[arg(long)]
    stream: Option<String>,
    /// A cache that exists.
    #[arg(long, default_value = "conformance")]
    cache: String,
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

fn vectors_dir(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(|| {
        let local = PathBuf::from("vectors");
        if local.is_dir() {
            local
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors")
        }
    })
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

/// Progress on stderr, so stdout stays a clean report.
struct Progress {
    live: bool,
    done: usize,
    started: Instant,
}

impl Progress {
    fn new() -> Self {
        Progress {
            live: std::io::stderr().is_terminal(),
            done: 0,
            started: Instant::now(),
        }
    }

    fn case(&mut self, r: &CaseResult) {
        self.done += 1;
        if self.live {
            let mark = match r.verdict {
                Verdict::Pass => "ok",
                Verdict::Fail | Verdict::UnexpectedPass => "FAIL",
                _ => "..",
            };
            eprint!("\r\x1b[2K[{:>4}] {mark:4} {}", self.done, r.id);
            let _ = std::io::stderr().flush();
        }
    }

    fn phase(&mut self, name: &str) {
        if self.live {
            eprint!("\r\x1b[2K");
        }
        eprintln!("== {name} ({:.1}s)", self.started.elapsed().as_secs_f64());
    }

    fn end(&self) {
        if self.live {
            eprint!("\r\x1b[2K");
        }
    }
}

async fn run(cli: Cli) -> Result<bool, String> {
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
    let case_timeout = timeout * 12;
    let mut results: Vec<CaseResult> = Vec::new();
    let mut progress = Progress::new();
    match cli.mode {
        Some(Mode::Decode {
            file,
            input,
            max_frame_bytes,
        }) => {
            let frames = inspect::decode(&read_input(&file)?, input, max_frame_bytes)?;
            for f in frames {
                println!("{f}");
            }
            return Ok(true);
        }
        Some(Mode::Encode { file }) => {
            let text = String::from_utf8(read_input(&file)?)
                .map_err(|_| "input is not UTF-8 JSON".to_string())?;
            for hex in inspect::encode(&text)? {
                println!("{hex}");
            }
            return Ok(true);
        }
        Some(Mode::Codec { cmd }) => {
            let cases = vectors::load(&vectors_dir(cli.dir.clone()))?;
            if cli.list {
                driver::case_ids(&cases)
                    .iter()
                    .filter(|id| sel.selected(id))
                    .for_each(|id| println!("{id}"));
                return Ok(true);
            }
            progress.phase(&format!("codec: {cmd}"));
            let mut testee = Testee::start(&cmd, timeout).await?;
            eprintln!("testee: {}", testee.announced.clone().unwrap_or_default());
            for (id, level, outcome, took) in
                driver::run(&mut testee, &cases, |id| sel.selected(id)).await
            {
                let r = sel.result(id, level, outcome, took);
                progress.case(&r);
                results.push(r);
            }
            testee.stop().await;
        }
        Some(Mode::Vectors) | None => {
            let cases = vectors::load(&vectors_dir(cli.dir.clone()))?;
            if cli.list {
                cases
                    .iter()
                    .map(vectors::case_id)
                    .filter(|id| sel.selected(id))
                    .for_each(|id| println!("{id}"));
                if cli.mode.is_none() {
                    live::all()
                        .iter()
                        .map(|c| c.id)
                        .filter(|id| sel.selected(id))
                        .for_each(|id| println!("{id}"));
                }
                return Ok(true);
            }
            progress.phase(&format!(
                "vectors: {} cases through felix-wire",
                cases.len()
            ));
            for c in &cases {
                let (id, level, outcome) = vectors::run(c);
                if sel.selected(&id) {
                    let r = sel.result(id, level, outcome, Duration::ZERO);
                    progress.case(&r);
                    results.push(r);
                }
            }
            if cli.mode.is_none() && live::all().iter().any(|c| sel.selected(c.id)) {
                let embedded = Embedded::start().await?;
                progress.phase(&format!(
                    "broker: live suite against the embedded reference broker on {}",
                    embedded.target.addr
                ));
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
                results
                    .extend(run::live_suite(cfg, case_timeout, &sel, |r| progress.case(r)).await);
                embedded.stop().await;
            }
        }
        Some(Mode::Client { cmd }) => {
            if cli.list {
                felix_conformance::client::all()
                    .iter()
                    .map(|c| c.id)
                    .filter(|id| sel.selected(id))
                    .for_each(|id| println!("{id}"));
                return Ok(true);
            }
            progress.phase(&format!("client: {cmd}"));
            let scratch = std::env::temp_dir()
                .join(format!("felix-conformance-client-{}", std::process::id()));
            let cfg = felix_conformance::client::ClientSuiteConfig {
                cmd,
                timeout,
                scratch: scratch.clone(),
            };
            let run = felix_conformance::client::run_suite(&cfg, &sel, |r| progress.case(r)).await;
            let _ = std::fs::remove_dir_all(&scratch);
            let (r, announced) = run?;
            eprintln!("client driver: {announced}");
            results.extend(r);
        }
        Some(Mode::Broker(b)) => {
            if cli.list {
                live::all()
                    .iter()
                    .map(|c| c.id)
                    .filter(|id| sel.selected(id))
                    .for_each(|id| println!("{id}"));
                return Ok(true);
            }
            let trust = match (&b.cert, b.insecure) {
                (Some(p), _) => felix_conformance::peer::trust_pem_file(p)?,
                (None, _) => Trust::InsecureSkipVerify,
            };
            let cfg = LiveConfig {
                target: Target {
                    addr: b.addr,
                    server_name: b.server_name,
                    trust,
                    tenant: b.tenant,
                    token: b.token,
                },
                namespace: b.namespace,
                stream: b.stream,
                cache: b.cache,
                replay_capacity: b.replay_capacity,
                sends_offsets: b.sends_offsets,
                timeout,
            };
            progress.phase(&format!("broker: live suite against {}", b.addr));
            if b.replay_capacity.is_none() {
                eprintln!("note: broker/pubsub/cursor_too_old is skipped: no --replay-capacity (a bounded history) was given");
            }
            results.extend(run::live_suite(cfg, case_timeout, &sel, |r| progress.case(r)).await);
        }
    }
    progress.end();
    let ran: std::collections::BTreeSet<String> = results.iter().map(|r| r.id.clone()).collect();
    for unknown in sel.expected.unknown(&ran) {
        eprintln!("note: expected failure {unknown:?} matched no case that ran");
    }
    if results.is_empty() {
        return Err(format!("no case matches the filters {:?}", cli.filter));
    }
    match cli.format {
        Format::Human => print!("{}", report::human(&results, cli.verbose)),
        Format::Json => println!("{}", report::json(&results)),
    }
    if let Some(path) = &cli.junit {
        std::fs::write(path, report::junit(&results))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(Summary::of(&results).ok())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FELIX_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("felix-conformance: {e}");
            ExitCode::from(2)
        }
    }
}

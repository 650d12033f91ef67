//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use felix_client::Ack;
use felix_wire::StartPosition;

/// Talk to a felix-wire broker: publish, subscribe, use the cache.
///
/// The defaults reach a reference broker started with no arguments in the
/// same directory (127.0.0.1:5000, its self-signed certificate in
/// .felix/tls/cert.pem, dev auth). Connection options can also come from
/// FELIX_* environment variables. Set FELIX_LOG=debug for protocol logs.
#[derive(Debug, Parser)]
#[command(name = "felix", version, about, long_about)]
pub(crate) struct Cli {
    /// Broker address (host:port; a host name is resolved, and each of its
    /// addresses tried in turn). Repeat it, or separate addresses with
    /// commas, to name several nodes of a cluster: the client connects to
    /// the first that answers and fails over to the others (and `sub`
    /// resumes from its last offset there).
    #[arg(
        long,
        env = "FELIX_ADDR",
        default_value = "127.0.0.1:5000",
        value_delimiter = ',',
        value_parser = parse_host_port,
        global = true
    )]
    pub(crate) addr: Vec<String>,
    /// How long connecting may take, every address included, in
    /// milliseconds.
    #[arg(
        long,
        env = "FELIX_CONNECT_TIMEOUT_MS",
        default_value_t = 5000,
        global = true
    )]
    pub(crate) connect_timeout_ms: u64,
    /// TLS server name the certificate must match.
    #[arg(
        long,
        env = "FELIX_SERVER_NAME",
        default_value = "localhost",
        global = true
    )]
    pub(crate) server_name: String,
    /// PEM certificate to trust (the reference broker writes its
    /// self-signed one to .felix/tls/cert.pem).
    #[arg(
        long,
        env = "FELIX_CERT",
        default_value = ".felix/tls/cert.pem",
        global = true
    )]
    pub(crate) cert: PathBuf,
    /// Accept any certificate without verifying it (debugging only).
    #[arg(long, global = true)]
    pub(crate) insecure: bool,
    /// Tenant id.
    #[arg(long, env = "FELIX_TENANT", default_value = "t1", global = true)]
    pub(crate) tenant: String,
    /// Token (a dev-mode broker accepts any).
    #[arg(long, env = "FELIX_TOKEN", default_value = "dev", global = true)]
    pub(crate) token: String,
    /// Namespace of streams and caches.
    #[arg(
        long,
        env = "FELIX_NAMESPACE",
        default_value = "default",
        global = true
    )]
    pub(crate) namespace: String,
    /// Print JSON lines instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `--ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AckArg {
    /// Fire and forget: no reply from the broker.
    None,
    /// Wait until the broker accepted each message (or batch).
    PerMessage,
    /// Wait for one ack per batch.
    PerBatch,
}

impl From<AckArg> for Ack {
    fn from(a: AckArg) -> Ack {
        match a {
            AckArg::None => Ack::None,
            AckArg::PerMessage => Ack::PerMessage,
            AckArg::PerBatch => Ack::PerBatch,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Publish messages: the arguments, files (--file), all of standard
    /// input as one message (--stdin or `-`), or else one message per line
    /// of standard input.
    Pub {
        /// Stream name.
        stream: String,
        /// Messages (UTF-8). `-` alone: all of standard input, byte for
        /// byte, as one message (as --stdin). None (and no --file,
        /// --stdin): one message per line of standard input.
        #[arg(conflicts_with_all = ["file", "stdin"])]
        messages: Vec<String>,
        /// Publish the bytes of this file, exactly, as one message. Repeat
        /// it for several messages, in order.
        #[arg(long, value_name = "PATH")]
        file: Vec<PathBuf>,
        /// Publish all of standard input, exactly (binary is fine), as one
        /// message.
        #[arg(long, conflicts_with = "file")]
        stdin: bool,
        /// How the broker acknowledges.
        #[arg(long, value_enum, default_value_t = AckArg::PerMessage)]
        ack: AckArg,
        /// Send all messages as one batch (one frame, one ack).
        #[arg(long)]
        batch: bool,
    },
    /// Print a stream's events as they arrive (`offset<TAB>payload`, JSON
    /// lines with --json, or the payload bytes alone with --raw); gaps are
    /// reported on standard error.
    ///
    /// Why it ended goes to standard error, and the exit status says it: 0
    /// when --count events arrived, 3 when the broker ended the
    /// subscription (it shut down or drained), 2 on an error (its reason
    /// is printed), 130 when interrupted (Ctrl-C).
    Sub {
        /// Stream name.
        stream: String,
        /// Where to start: latest, earliest, or an offset.
        #[arg(long, default_value = "latest", value_parser = parse_start)]
        start: StartPosition,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Write each payload's bytes exactly as received, with nothing
        /// added (no offset, no newline): with --count 1, a binary message
        /// can be saved to a file.
        #[arg(long)]
        raw: bool,
    },
    /// Cache operations.
    Cache {
        #[command(subcommand)]
        op: CacheOp,
    },
    /// Print a shell completion script: `felix completions bash >
    /// /etc/bash_completion.d/felix`, `felix completions zsh >
    /// "${fpath[1]}/_felix"`, `felix completions fish >
    /// ~/.config/fish/completions/felix.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CacheOp {
    /// Store a value.
    Put {
        /// Cache name.
        cache: String,
        /// Key.
        key: String,
        /// Value (UTF-8).
        value: String,
        /// Time to live in milliseconds (0 expires at once); none: never expires.
        #[arg(long)]
        ttl_ms: Option<u64>,
    },
    /// Print a value (exit code 1 if the key is missing).
    Get {
        /// Cache name.
        cache: String,
        /// Key.
        key: String,
        /// Write the value's bytes exactly, with nothing added.
        #[arg(long)]
        raw: bool,
    },
}

impl Cli {
    /// What clap cannot check: a subcommand's flag against a global one.
    pub(crate) fn check(&self) -> Result<(), String> {
        let raw = match &self.command {
            Command::Sub { raw, .. } => *raw,
            Command::Cache {
                op: CacheOp::Get { raw, .. },
            } => *raw,
            _ => false,
        };
        if raw && self.json {
            return Err("--raw and --json exclude each other: pick one output".into());
        }
        Ok(())
    }
}

/// `--addr`: `host:port`, where the host is a name, an IPv4 address or a
/// bracketed IPv6 address. Resolved when connecting, not here: parsing
/// must not wait for DNS.
pub(crate) fn parse_host_port(s: &str) -> Result<String, String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| {
        format!("{s:?} is not host:port (for example 127.0.0.1:5000 or localhost:5000)")
    })?;
    port.parse::<u16>()
        .map_err(|_| format!("{s:?}: the port {port:?} is not a number from 0 to 65535"))?;
    let bare_v6 = host.contains(':') && !(host.starts_with('[') && host.ends_with(']'));
    if host.is_empty() || bare_v6 {
        return Err(format!(
            "{s:?} is not host:port (an IPv6 address goes in brackets: [::1]:5000)"
        ));
    }
    Ok(s.to_string())
}

/// `--start`: `latest`, `earliest` or an offset.
pub(crate) fn parse_start(s: &str) -> Result<StartPosition, String> {
    match s {
        "latest" => Ok(StartPosition::Latest),
        "earliest" => Ok(StartPosition::Earliest),
        n => n
            .parse()
            .map(StartPosition::Offset)
            .map_err(|_| format!("{s:?} is not latest, earliest or an offset")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("felix").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_default_to_a_local_dev_broker() {
        let cli = parse(&["cache", "get", "c", "k"]).expect("parses");
        // The environment may set these (FELIX_*): check only when it does not.
        let unset = |v: &str| std::env::var_os(v).is_none();
        if unset("FELIX_ADDR") {
            assert_eq!(cli.addr, ["127.0.0.1:5000"]);
        }
        if unset("FELIX_CERT") {
            assert_eq!(cli.cert, PathBuf::from(".felix/tls/cert.pem"));
        }
        if unset("FELIX_TENANT") {
            assert_eq!(cli.tenant, "t1");
        }
        if unset("FELIX_TOKEN") {
            assert_eq!(cli.token, "dev");
        }
        if unset("FELIX_NAMESPACE") {
            assert_eq!(cli.namespace, "default");
        }
        if unset("FELIX_SERVER_NAME") {
            assert_eq!(cli.server_name, "localhost");
        }
        assert!(!cli.insecure);
        assert!(!cli.json);
    }

    #[test]
    fn global_options_read_the_environment() {
        let cmd = Cli::command();
        let env = |id: &str| {
            cmd.get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_env())
                .and_then(|e| e.to_str())
                .map(String::from)
        };
        assert_eq!(env("addr").as_deref(), Some("FELIX_ADDR"));
        assert_eq!(env("cert").as_deref(), Some("FELIX_CERT"));
        assert_eq!(env("token").as_deref(), Some("FELIX_TOKEN"));
        assert_eq!(env("tenant").as_deref(), Some("FELIX_TENANT"));
        assert_eq!(env("namespace").as_deref(), Some("FELIX_NAMESPACE"));
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse(&[
            "pub",
            "orders",
            "--addr",
            "10.0.0.1:7000",
            "--insecure",
            "--json",
            "--tenant",
            "t9",
            "a",
        ])
        .expect("parses");
        assert_eq!(cli.addr, ["10.0.0.1:7000"]);
        assert!(cli.insecure && cli.json);
        assert_eq!(cli.tenant, "t9");
        assert!(parse(&["--addr", "not-an-address", "pub", "s"]).is_err());
    }

    #[test]
    fn addresses_are_host_names_or_ip_addresses_with_a_port() {
        for ok in [
            "localhost:5000",
            "broker.example:7000",
            "10.0.0.1:7000",
            "[::1]:5000",
        ] {
            assert_eq!(parse_host_port(ok).as_deref(), Ok(ok));
        }
        for (bad, why) in [
            ("localhost", "not host:port"),
            (":5000", "not host:port"),
            ("localhost:http", "not a number"),
            ("localhost:70000", "not a number"),
            ("::1:5000", "brackets"),
        ] {
            let e = parse_host_port(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn pub_payload_sources_exclude_each_other() {
        match parse(&["pub", "s", "--file", "a.bin", "--file", "b.bin"])
            .expect("parses")
            .command
        {
            Command::Pub {
                file,
                stdin,
                messages,
                ..
            } => {
                assert_eq!(file, [PathBuf::from("a.bin"), PathBuf::from("b.bin")]);
                assert!(!stdin && messages.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["pub", "s", "--stdin"]).expect("parses").command,
            Command::Pub { stdin: true, .. }
        ));
        assert!(parse(&["pub", "s", "m", "--file", "a.bin"]).is_err());
        assert!(parse(&["pub", "s", "m", "--stdin"]).is_err());
        assert!(parse(&["pub", "s", "--stdin", "--file", "a.bin"]).is_err());
        for both in [
            &["--json", "sub", "s", "--raw"][..],
            &["cache", "get", "c", "k", "--raw", "--json"],
        ] {
            let e = parse(both)
                .expect("parses")
                .check()
                .expect_err("--raw or --json");
            assert!(e.contains("--raw and --json"), "{e}");
        }
        assert!(parse(&["sub", "s", "--raw"])
            .expect("parses")
            .check()
            .is_ok());
    }

    #[test]
    fn completions_for_each_shell() {
        for shell in ["bash", "zsh", "fish"] {
            assert!(matches!(
                parse(&["completions", shell]).expect(shell).command,
                Command::Completions { .. }
            ));
        }
        assert!(parse(&["completions", "cmd.exe"]).is_err());
    }

    #[test]
    fn several_addresses_repeated_or_comma_separated() {
        let want = ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"];
        let repeated = parse(&[
            "--addr",
            "10.0.0.1:7000",
            "--addr",
            "10.0.0.2:7000,10.0.0.3:7000",
            "pub",
            "s",
        ])
        .expect("parses");
        assert_eq!(repeated.addr, want);
        let commas = parse(&[
            "--addr=10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000",
            "pub",
            "s",
        ])
        .expect("parses");
        assert_eq!(commas.addr, want);
    }

    #[test]
    fn pub_arguments() {
        let cli = parse(&["pub", "orders", "a", "b"]).expect("parses");
        match cli.command {
            Command::Pub {
                stream,
                messages,
                ack,
                batch,
                ..
            } => {
                assert_eq!(stream, "orders");
                assert_eq!(messages, ["a", "b"]);
                assert_eq!(ack, AckArg::PerMessage, "the default");
                assert!(!batch);
            }
            other => panic!("{other:?}"),
        }
        for (arg, want) in [
            ("none", Ack::None),
            ("per-message", Ack::PerMessage),
            ("per-batch", Ack::PerBatch),
        ] {
            match parse(&["pub", "s", "--ack", arg, "--batch"])
                .expect("parses")
                .command
            {
                Command::Pub {
                    ack,
                    batch,
                    messages,
                    ..
                } => {
                    assert_eq!(Ack::from(ack), want);
                    assert!(batch);
                    assert!(messages.is_empty(), "stdin mode");
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(parse(&["pub", "s", "--ack", "sometimes"]).is_err());
        assert!(parse(&["pub"]).is_err(), "the stream is required");
    }

    #[test]
    fn sub_arguments() {
        let start = |s: &str| match parse(&["sub", "orders", "--start", s]).map(|c| c.command) {
            Ok(Command::Sub { start, .. }) => Ok(start),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(start("latest").expect("latest"), StartPosition::Latest);
        assert_eq!(
            start("earliest").expect("earliest"),
            StartPosition::Earliest
        );
        assert_eq!(start("42").expect("offset"), StartPosition::Offset(42));
        assert!(start("middle").is_err());
        assert!(start("-1").is_err());
        match parse(&["sub", "orders", "--count", "3"])
            .expect("parses")
            .command
        {
            Command::Sub {
                stream,
                start,
                count,
                raw,
            } => {
                assert!(!raw, "the default");
                assert_eq!(stream, "orders");
                assert_eq!(start, StartPosition::Latest, "the default");
                assert_eq!(count, Some(3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cache_arguments() {
        match parse(&["--json", "cache", "put", "c", "k", "v", "--ttl-ms", "0"])
            .expect("parses")
            .command
        {
            Command::Cache {
                op:
                    CacheOp::Put {
                        cache,
                        key,
                        value,
                        ttl_ms,
                    },
            } => {
                assert_eq!(
                    (cache.as_str(), key.as_str(), value.as_str()),
                    ("c", "k", "v")
                );
                assert_eq!(ttl_ms, Some(0));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["cache", "get", "c", "k"]).expect("parses").command,
            Command::Cache {
                op: CacheOp::Get { raw: false, .. }
            }
        ));
        assert!(
            parse(&["cache", "put", "c", "k"]).is_err(),
            "value required"
        );
    }

    #[test]
    fn benchmarks_are_felix_bench_not_felix() {
        for moved in ["bench", "soak"] {
            assert!(parse(&[moved]).is_err(), "{moved}: see the bench/ crate");
        }
    }

    #[test]
    fn every_command_has_help() {
        for args in [
            &["--help"][..],
            &["pub", "--help"],
            &["sub", "--help"],
            &["cache", "--help"],
            &["cache", "put", "--help"],
            &["cache", "get", "--help"],
            &["completions", "--help"],
        ] {
            let err = parse(args).expect_err("help exits");
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
        }
    }
}

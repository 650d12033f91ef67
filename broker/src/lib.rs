//! `felix-broker`: the reference felix-wire broker.
//!
//! # Layout
//!
//! - [`core`]: the sans-IO heart: per-stream session state machines,
//!   streams with replay rings and fanout, subscriber queues, the cache,
//!   authentication. No sockets, no clock; tests drive it in memory.
//! - [`quic`]: the thin quinn/tokio shell: accept loop and limits, stream
//!   reader/writer tasks, event streams, flush timers, graceful drain.
//! - [`cluster`]: cluster mode's shell side: streams, offsets and the
//!   cache on NATS JetStream (opt-in with `--cluster`).
//! - [`config`]: flags, environment variables and the YAML file.
//! - [`env`]: the `FELIX_BROKER_*` environment variables, their deprecated
//!   `FELIX_*` names, and errors that name the variable.
//! - [`data_dir`]: the data directory, checked once at start.
//! - [`tls`]: the self-signed development certificate, kept in the data
//!   directory so clients can pin it across restarts.
//! - [`http`]: `/metrics` (Prometheus) and `/healthz`.
//! - [`persist`]: replay rings saved on drain and loaded on start.
//! - [`app`]: wiring a [`config::Config`] into a running broker.
//! - [`embedded`]: the broker inside another program (tests, benchmarks):
//!   loopback, a free port, a throwaway certificate.
//! - [`runtime`]: the tokio runtime: worker threads, optional busy polling.

pub mod app;
pub mod cluster;
pub mod config;
pub mod core;
pub mod data_dir;
pub mod embedded;
pub mod env;
pub mod http;
pub mod persist;
pub mod quic;
pub mod runtime;
pub mod tls;

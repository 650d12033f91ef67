//! `felix-conformance`: checks felix-wire implementations: this toolkit's
//! codec against the vectors, other languages' codecs over a documented
//! driver protocol, and live brokers over QUIC.
//!
//! # Layout
//!
//! - [`case`]: case ids, levels (required / recommended), outcomes,
//!   expected failures and verdicts.
//! - [`run`]: running selected cases with timeouts.
//! - [`report`]: human, JSON, JUnit and HTML reports.
//! - [`diff`]: failure detail (first differing byte or field, input hex).
//! - [`vectors`]: `vectors` mode (our codec).
//! - [`driver`]: `codec` mode: the driver protocol to an external testee.
//! - [`peer`] and [`live`]: a raw QUIC peer and the live broker suite.
//! - [`client`]: `client` mode: a scripted broker drives a client through
//!   the client driver protocol (`src/bin/felix-client-driver.rs` drives
//!   ours).
//! - [`embedded`]: the reference broker in-process, for the default run.
//! - [`inspect`]: `decode` / `encode` for debugging frames.
//! - `testee`: what the codec and client drivers share: the stderr tail,
//!   the crash report, killing a process group.

pub mod case;
pub mod client;
pub mod diff;
pub mod driver;
pub mod embedded;
pub mod inspect;
pub mod live;
pub mod peer;
pub mod report;
pub mod run;
mod testee;
pub mod vectors;

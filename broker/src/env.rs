//! The broker's environment variables and command-line parsing around them.
//!
//! Every flag has a variable named `FELIX_BROKER_<FLAG>` (`--queue-policy`
//! is `FELIX_BROKER_QUEUE_POLICY`). The client tools (`felix`,
//! `felix-bench`, `felix-conformance`) read `FELIX_*` (`FELIX_CERT`,
//! `FELIX_LOG`, ...): with names of its own, a broker started from a shell
//! set up for a client does not pick up the client's certificate or log
//! filter.
//!
//! Earlier releases read `FELIX_<FLAG>` for the broker too. Those names
//! still work, with a deprecation warning, except the ones the client
//! tools read ([`CLIENT_NAMES`]): those are ignored, with a warning that
//! says so.
//!
//! A value that does not parse names its variable:
//! `FELIX_BROKER_QUEUE_POLICY=drop-old: invalid value, expected one of
//! drop_new, drop_old, block`.

use std::any::TypeId;
use std::ffi::OsString;
use std::net::SocketAddr;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, Command, CommandFactory, FromArgMatches};

use crate::config::Cli;

/// Prefix of every broker variable.
pub const PREFIX: &str = "FELIX_BROKER_";

/// `FELIX_*` names the client tools read: never taken as old broker names.
pub const CLIENT_NAMES: &[&str] = &[
    "FELIX_ADDR",
    "FELIX_CERT",
    "FELIX_LOG",
    "FELIX_NAMESPACE",
    "FELIX_SERVER_NAME",
    "FELIX_TENANT",
    "FELIX_TOKEN",
];

/// Flags and environment, parsed.
#[derive(Debug)]
pub struct Parsed {
    /// The flags and variables, as the configuration reads them.
    pub cli: Cli,
    /// What to warn about once logging is set up (deprecated or ignored
    /// variables).
    pub warnings: Vec<String>,
}

/// Why the command line or the environment cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// A flag problem, or `--help`/`--version`: clap's own message and
    /// exit code ([`clap::Error::exit`]).
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// A variable's value does not parse.
    #[error("{var}={value}: invalid value{reason}, expected {expected}")]
    Env {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
        /// The parser's reason, as ` (...)`, or empty.
        reason: String,
        /// What the setting takes.
        expected: String,
    },
}

/// Parses `args` (the program name first) and the process environment.
pub fn parse<I, T>(args: I) -> Result<Parsed, ArgsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut cmd = Cli::command();
    let mut warnings = Vec::new();
    let names: Vec<(clap::Id, String)> = cmd
        .get_arguments()
        .filter_map(|a| Some((a.get_id().clone(), a.get_env()?.to_str()?.to_owned())))
        .collect();
    for (id, name) in names {
        let Some(old) = old_name(&name) else { continue };
        if std::env::var_os(&name).is_some() || std::env::var_os(&old).is_none() {
            continue;
        }
        if CLIENT_NAMES.contains(&old.as_str()) {
            warnings.push(format!(
                "{old} is set but ignored: it configures the felix client tools; the broker reads {name}"
            ));
        } else {
            warnings.push(format!(
                "{old} is deprecated: rename it {name} (FELIX_* without BROKER_ is for the client tools)"
            ));
            // clap keeps variable names as `&'static str`; at most one
            // short string per flag, once per process.
            let old: &'static str = Box::leak(old.into_boxed_str());
            cmd = cmd.mut_arg(id, |a| a.env(old));
        }
    }
    let matches = cmd
        .clone()
        .try_get_matches_from(&args)
        .map_err(|e| name_the_variable(&cmd, &args, e))?;
    let cli = Cli::from_arg_matches(&matches)?;
    Ok(Parsed { cli, warnings })
}

/// `FELIX_BROKER_X` -> `FELIX_X`, the name earlier releases read.
fn old_name(name: &str) -> Option<String> {
    name.strip_prefix(PREFIX)
        .map(|rest| format!("FELIX_{rest}"))
}

/// Turns clap's error about a value that came from a variable (not from
/// the command line) into one naming the variable.
fn name_the_variable(cmd: &Command, args: &[OsString], e: clap::Error) -> ArgsError {
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return e.into();
    }
    let Some(ContextValue::String(shown)) = e.get(ContextKind::InvalidArg) else {
        return e.into();
    };
    // `--queue-policy <QUEUE_POLICY>`
    let long = shown
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_start_matches("--");
    let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(long)) else {
        return e.into();
    };
    let flag = format!("--{long}");
    let on_command_line = args
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    let Some(var) = arg.get_env().and_then(|v| v.to_str()) else {
        return e.into();
    };
    let Some(value) = std::env::var_os(var).filter(|_| !on_command_line) else {
        return e.into();
    };
    let reason = std::error::Error::source(&e)
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    ArgsError::Env {
        var: var.to_owned(),
        value: value.to_string_lossy().into_owned(),
        reason,
        expected: expected(arg),
    }
}

/// What an argument takes, in words.
fn expected(arg: &Arg) -> String {
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_owned())
        .collect();
    if !values.is_empty() {
        return format!("one of {}", values.join(", "));
    }
    let t = arg.get_value_parser().type_id();
    let up_to = |max: u64| format!("a whole number from 0 to {max}");
    if t == TypeId::of::<u16>() {
        up_to(u16::MAX.into())
    } else if t == TypeId::of::<u32>() {
        up_to(u32::MAX.into())
    } else if t == TypeId::of::<u64>() || t == TypeId::of::<usize>() {
        up_to(u64::MAX)
    } else if t == TypeId::of::<i64>() {
        "a whole number".into()
    } else if t == TypeId::of::<SocketAddr>() {
        "an IP address and port, like 127.0.0.1:5000".into()
    } else {
        format!(
            "what `felix-broker --help` says of --{}",
            arg.get_long().unwrap_or("")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_has_a_broker_variable_and_none_is_a_client_name() {
        let cmd = Cli::command();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["help", "version"].contains(&long) {
                continue;
            }
            let want = format!("{PREFIX}{}", long.replace('-', "_").to_uppercase());
            let got = arg.get_env().and_then(|v| v.to_str()).unwrap_or("");
            assert_eq!(got, want, "--{long}");
            assert!(!CLIENT_NAMES.contains(&got));
        }
    }

    #[test]
    fn old_names_drop_broker_from_the_prefix() {
        assert_eq!(old_name("FELIX_BROKER_CERT").as_deref(), Some("FELIX_CERT"));
        assert_eq!(old_name("OTHER"), None);
    }

    #[test]
    fn what_each_kind_of_setting_expects_is_said_in_words() {
        let cmd = Cli::command();
        let arg = |long: &str| {
            cmd.get_arguments()
                .find(|a| a.get_long() == Some(long))
                .unwrap_or_else(|| panic!("--{long}"))
        };
        assert_eq!(
            expected(arg("queue-policy")),
            "one of drop_new, drop_old, block"
        );
        assert_eq!(expected(arg("busy-poll")), "one of true, false");
        assert_eq!(
            expected(arg("max-frame-bytes")),
            "a whole number from 0 to 4294967295"
        );
        assert_eq!(
            expected(arg("bind")),
            "an IP address and port, like 127.0.0.1:5000"
        );
    }
}

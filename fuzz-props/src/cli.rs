//! The command line and the environment: arbitrary argv and
//! `SECRET_GATE_*`, `VSECM_*` and `SPIFFE_*` values never panic, and each
//! refusal says something.
//!
//! The input is NUL-separated, as `execve` gets it: each item is an
//! argument, except items `NAME=VALUE` whose name starts with one of those
//! prefixes, which are set in the environment. Values need not be UTF-8.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;

use secret_gate::cli;
use secret_gate::config::Config;

use crate::limited;

/// The prefixes of the variables the gate reads.
pub const PREFIXES: [&str; 3] = ["SECRET_GATE_", "VSECM_", "SPIFFE_"];

/// The property. It sets and clears the process's environment: the
/// stable driver runs it on one thread.
pub fn cli(data: &[u8]) {
    limited(|| check_cli(data));
}

fn check_cli(data: &[u8]) {
    clear_env();
    let mut args: Vec<OsString> = vec!["secret-gate".into()];
    for item in data.split(|b| *b == 0) {
        let env = item
            .iter()
            .position(|b| *b == b'=')
            .map(|eq| item.split_at(eq))
            .filter(|(name, _)| {
                PREFIXES.iter().any(|p| name.starts_with(p.as_bytes()))
                    && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
            });
        match env {
            Some((name, value)) => {
                std::env::set_var(OsStr::from_bytes(name), OsStr::from_bytes(&value[1..]));
            }
            None => args.push(OsStr::from_bytes(item).to_owned()),
        }
    }
    for warning in cli::drop_vsecm_env_values_vsecm_ignores() {
        assert!(!warning.is_empty());
    }
    let _ = cli::raw_termination_log(&args);
    match cli::parse_from(&args) {
        Err(err) => {
            if !err.is_help() {
                assert!(!err.short_text().is_empty(), "a usage error with no text");
            }
        }
        Ok(parsed) => {
            let _ = parsed.logging();
            let _ = parsed.termination_log();
            if let Err(err) = Config::from_cli(&parsed, None) {
                assert!(
                    !err.to_string().is_empty(),
                    "a configuration error with no text"
                );
            }
        }
    }
    clear_env();
}

/// Removes every variable the gate reads, so each input starts clean.
fn clear_env() {
    let names: Vec<OsString> = std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| {
            PREFIXES
                .iter()
                .any(|p| name.as_bytes().starts_with(p.as_bytes()))
        })
        .collect();
    for name in names {
        std::env::remove_var(name);
    }
}

//! The program's entry: everything before the first `await` and after the
//! last. Parse the command line, start logging, validate the
//! configuration, start the runtime, [`crate::run::run`] (or keep running),
//! and exec the app if asked. `main.rs` only maps the result to the
//! process's exit status.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::exit::ExitCode;
use crate::report::{default_termination_log, write_termination_log};
use crate::signals::Signals;
use crate::{cli, exec, logging, run};

/// The whole program. A usage error (exit 2) is also written to the
/// termination log, since a bad value in a manifest is the likeliest
/// reason an init container fails.
#[must_use]
pub fn main() -> ExitCode {
    let warnings = cli::drop_vsecm_env_values_vsecm_ignores();
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(err) => {
            err.print();
            if err.is_help() {
                return ExitCode::Ready; // --help, --version
            }
            let args: Vec<OsString> = std::env::args_os().collect();
            let path = termination_log(cli::raw_termination_log(&args));
            return usage_error(path.as_deref(), &err.short_text());
        }
    };
    let termination_log = termination_log(cli.termination_log().cloned());
    if let Err(msg) = logging::init(cli.logging()) {
        // Logging is not up: say it on stderr.
        eprintln!("secret-gate: error: {msg}");
        return usage_error(termination_log.as_deref(), &msg);
    }
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    match Config::from_cli(&cli, termination_log.clone()) {
        Ok(config) => start(&config),
        Err(err) => {
            tracing::error!("{err}");
            usage_error(termination_log.as_deref(), &err.to_string())
        }
    }
}

/// Where the diagnosis of a non-zero exit goes; the one place this is
/// worked out. `given` is `--termination-log` or its variable, whether
/// clap parsed it or the command line was too broken to parse; without
/// it, `/dev/termination-log` when it is there and writable.
fn termination_log(given: Option<PathBuf>) -> Option<PathBuf> {
    given
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(default_termination_log)
}

/// Runs a validated configuration on a current-thread runtime, then execs
/// the command if one was given and the gate is ready.
fn start(config: &Config) -> ExitCode {
    crate::rlimit::raise_nofile();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::NotReady;
        }
    };
    let code = runtime.block_on(async {
        let signals = match Signals::install() {
            Ok(s) => s,
            Err(error) => {
                tracing::error!(%error, "cannot install signal handlers");
                return ExitCode::NotReady;
            }
        };
        match &config.after.keep_running {
            Some(keep) => run::keep_running::run(config, keep, signals.recv()).await,
            None => run::run(config, signals.recv()).await,
        }
    });
    // Do not wait on a blocking task (a DNS lookup, say) on the way out:
    // a signal must end the gate promptly.
    runtime.shutdown_timeout(Duration::from_millis(50));
    // Exec mode: become the command, with the runtime gone.
    match (&config.after.exec, code) {
        (Some(command), ExitCode::Ready) => {
            exec::replace_process(command, config.termination_log.as_deref())
        }
        _ => code,
    }
}

/// Writes a configuration error (already reported on stderr) to the
/// termination log.
fn usage_error(termination_log: Option<&Path>, msg: &str) -> ExitCode {
    if let Some(path) = termination_log {
        write_termination_log(path, &format!("secret-gate: configuration error: {msg}\n"));
    }
    ExitCode::Usage
}

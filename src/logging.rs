//! Logs: `tracing` to stderr, as text or JSON.
//!
//! Only secret-gate's own events follow `--log-level`; dependencies (TLS,
//! HTTP, gRPC) log warnings and errors only, so no trace level anywhere can
//! dump a request or response body.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;
use crate::config::LogConfig;

/// Installs the global subscriber. Fails on an unknown level.
pub fn init(config: &LogConfig) -> Result<(), String> {
    let level = config.level.trim().to_ascii_lowercase();
    if !matches!(
        level.as_str(),
        "error" | "warn" | "info" | "debug" | "trace" | "off"
    ) {
        return Err(format!(
            "--log-level {:?} is not a level: use error, warn, info, debug or trace",
            config.level
        ));
    }
    let filter = EnvFilter::try_new(format!("warn,secret_gate={level}"))
        .map_err(|e| format!("--log-level: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match config.format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("cannot start logging: {e}"))
}

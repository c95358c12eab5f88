//! Logs: `tracing` to stderr, as text or JSON.
//!
//! Only secret-gate's own events follow `--log-level`; dependencies (TLS,
//! HTTP, gRPC) log warnings and errors only, so no trace level anywhere can
//! dump a request or response body.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Where logs go and how verbose they are (`--log-format`, `--log-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub format: Format,
    pub level: Level,
}

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    /// One JSON object per line.
    Json,
}

/// The most verbose level of secret-gate's own events that is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
    Off,
}

/// Installs the global subscriber.
pub fn init(settings: Settings) -> Result<(), String> {
    let level = match settings.level {
        Level::Error => LevelFilter::ERROR,
        Level::Warn => LevelFilter::WARN,
        Level::Info => LevelFilter::INFO,
        Level::Debug => LevelFilter::DEBUG,
        Level::Trace => LevelFilter::TRACE,
        Level::Off => LevelFilter::OFF,
    };
    let filter = Targets::new()
        .with_default(LevelFilter::WARN.min(level))
        .with_target("secret_gate", level);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.format {
        Format::Text => registry.with(fmt).try_init(),
        Format::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
    result.map_err(|e| format!("cannot start logging: {e}"))
}

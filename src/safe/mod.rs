//! Safe mode: poll VSecM Safe over SPIFFE mTLS until this workload's
//! secret is there and passes the check, then optionally write it out.
//!
//! The first attempt is immediate; later ones follow [`backoff`]. Every
//! attempt is bounded by the attempt timeout ([`client`]). Each distinct
//! condition is logged once, when it first appears.

pub mod authorize;
pub mod backoff;
pub mod client;
pub mod output;

use std::collections::HashSet;

pub use authorize::SafeIdMatcher;

use crate::check::{self, describe_parse_error, Document, Format, Problem};
use crate::config::{Output, SafeConfig};
use crate::report::Progress;
use backoff::Backoff;
use client::{Outcome, SafeClient};

/// Returns once the Safe has handed over a secret that passes the check
/// and, when asked, it has been written out.
pub async fn wait_ready(config: &SafeConfig, progress: &Progress) {
    let mut client = SafeClient::new(config);
    let mut backoff = Backoff::new(config.poll_interval, config.max_backoff);
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        let problems = match client.attempt().await {
            Outcome::Secret(data) => match accept(config, &data) {
                Ok(()) => return,
                Err(problems) => {
                    for p in &problems {
                        if seen.insert(format!("{}:{}", p.class, p.what)) {
                            tracing::info!("{p}; will retry");
                        }
                    }
                    problems
                }
            },
            Outcome::Failed(failure) => {
                let first_time = seen.insert(failure.class().to_owned());
                if failure.is_not_yet() {
                    if first_time {
                        tracing::info!("{failure}; will retry");
                    }
                } else {
                    if first_time {
                        tracing::warn!("{failure}; will retry");
                    }
                    progress.set_last_error(failure.to_string());
                }
                vec![Problem::new("Safe", failure.class(), failure.to_string())]
            }
        };
        progress.record(problems);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Checks the secret and writes it out. `Err` lists why it is not ready.
fn accept(config: &SafeConfig, data: &str) -> Result<(), Vec<Problem>> {
    let format = resolve_format(config, data);
    let doc = check::parse(format, data.as_bytes()).map_err(|e| {
        vec![Problem::new(
            "Safe",
            "invalid",
            format!("secret is {}", describe_parse_error(&e, data.len())),
        )]
    })?;
    let missing: Vec<Problem> = check::missing_keys(&config.keys, &[&doc])
        .into_iter()
        .map(|k| {
            Problem::new(
                "Safe",
                "key-missing",
                format!("key {:?} missing", k.as_str()),
            )
        })
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    write_output(config, data, &doc)
        .map_err(|e| vec![Problem::new("output", "output", e.to_string())])
}

fn write_output(
    config: &SafeConfig,
    data: &str,
    doc: &Document,
) -> Result<(), output::OutputError> {
    match &config.output {
        None => {}
        Some(Output::File { path, mode }) => {
            output::write_atomic(path, data.as_bytes(), *mode)?;
            tracing::info!(path = %path.display(), "wrote the secret");
        }
        Some(Output::Dir { path, mode }) => {
            let names = output::write_dir(path, doc, *mode)?;
            tracing::info!(dir = %path.display(), files = %names.join(", "), "wrote one file per key");
        }
    }
    Ok(())
}

/// `--format auto` in safe mode: JSON if it looks like JSON, else YAML when
/// keys or per-key files are needed, else raw.
fn resolve_format(config: &SafeConfig, data: &str) -> Format {
    if config.format != Format::Auto {
        return config.format;
    }
    let trimmed = data.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        Format::Json
    } else if !config.keys.is_empty() || matches!(config.output, Some(Output::Dir { .. })) {
        Format::Yaml
    } else {
        Format::Raw
    }
}

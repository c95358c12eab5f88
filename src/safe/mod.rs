//! Safe mode: poll VSecM Safe over SPIFFE mTLS until this workload's
//! secret is there and passes the check, then optionally write it out.
//!
//! The first attempt is immediate; later ones follow [`backoff`]. Every
//! attempt is bounded ([`client`]). Each distinct condition is logged once,
//! when it first appears.

pub mod authorize;
pub mod backoff;
pub mod client;
pub mod output;

use std::collections::HashSet;
use std::future::Future;

pub use authorize::SafeIdMatcher;

use crate::check::{self, describe_parse_error, Document, Format, Problem};
use crate::config::{Output, SafeConfig};
use crate::report::Progress;
use backoff::Backoff;
use client::{Outcome, SafeClient};

/// Returns once the Safe has handed over a secret that passes the check
/// and, when asked, it has been written out.
pub async fn wait_ready(config: &SafeConfig, progress: &Progress) {
    let client = SafeClient::new(config);
    let backoff = Backoff::new(config.poll_interval, config.max_backoff);
    wait_ready_with(config, progress, backoff, client).await;
}

/// Something that makes one attempt to fetch the secret: the real
/// [`SafeClient`], or a scripted stand-in in tests.
pub trait Attempt {
    fn attempt(&mut self) -> impl Future<Output = Outcome>;
}

impl Attempt for SafeClient {
    fn attempt(&mut self) -> impl Future<Output = Outcome> {
        SafeClient::attempt(self)
    }
}

/// The wait loop, with the attempts and the back-off passed in so tests can
/// drive it under paused time.
pub async fn wait_ready_with(
    config: &SafeConfig,
    progress: &Progress,
    mut backoff: Backoff,
    mut client: impl Attempt,
) {
    let mut seen: HashSet<(String, &'static str, String)> = HashSet::new();
    loop {
        // `not_yet`: the normal states of a Safe or secret that is not
        // there yet, logged at info; anything else is an error someone may
        // need to fix, logged as a warning and kept as the last error.
        let (problems, not_yet) = match client.attempt().await {
            Outcome::Secret(secret) => match accept(config, secret.expose()) {
                Ok(()) => return,
                Err(NotAccepted::NotYet(problems)) => (problems, true),
                Err(NotAccepted::Output(problem)) => (vec![problem], false),
            },
            Outcome::Failed(failure) => (
                vec![Problem::new("Safe", failure.class(), failure.to_string())],
                failure.is_not_yet(),
            ),
        };
        for p in &problems {
            // Every time, so the diagnosis names the latest error.
            if !not_yet {
                progress.set_last_error(p.to_string());
            }
            if seen.insert(p.identity()) {
                if not_yet {
                    tracing::info!("{p}; will retry");
                } else {
                    tracing::warn!("{p}; will retry");
                }
            }
        }
        progress.record(problems);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Why a fetched secret did not make the gate ready.
enum NotAccepted {
    /// It does not parse or lacks keys: the secret is not complete yet.
    NotYet(Vec<Problem>),
    /// It could not be written out.
    Output(Problem),
}

/// Checks the secret and writes it out.
fn accept(config: &SafeConfig, data: &str) -> Result<(), NotAccepted> {
    let format = resolve_format(config, data);
    // VSecM's own rule, when no document is needed: any non-empty data
    // (but not a template rendered without its data).
    let doc = if format == Format::Raw
        && config.format == Format::Auto
        && !check::format::is_no_value(data.as_bytes())
    {
        Document::default()
    } else {
        check::parse(format, data.as_bytes()).map_err(|e| {
            NotAccepted::NotYet(vec![Problem::new(
                "Safe",
                "invalid",
                format!(
                    "secret is {}",
                    describe_parse_error(&e, data.len(), "secret")
                ),
            )])
        })?
    };
    let missing: Vec<Problem> = check::missing_keys(&config.keys, &[&doc])
        .into_iter()
        .map(|k| Problem::key_missing("Safe", k))
        .collect();
    if !missing.is_empty() {
        return Err(NotAccepted::NotYet(missing));
    }
    if format == Format::Pem {
        let policy = check::TlsPolicy {
            min_validity: config.min_validity,
            ..check::TlsPolicy::default()
        };
        let now = std::time::SystemTime::now();
        let report = check::tls::check(&[("Safe", data.as_bytes())], &policy, now);
        if !report.problems.is_empty() {
            return Err(NotAccepted::NotYet(report.problems));
        }
    }
    write_output(config, data, &doc)
        .map_err(|e| NotAccepted::Output(Problem::new("output", "output", e.to_string())))
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

/// `--format auto` in safe mode. Without required keys or `--output-dir`
/// no document is needed, and any non-empty secret is ready, as in VSecM.
/// Otherwise: JSON if it looks like JSON, else YAML.
fn resolve_format(config: &SafeConfig, data: &str) -> Format {
    if config.format != Format::Auto {
        return config.format;
    }
    let needs_document =
        !config.keys.is_empty() || matches!(config.output, Some(Output::Dir { .. }));
    if !needs_document {
        return Format::Raw;
    }
    let trimmed = data.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        Format::Json
    } else {
        Format::Yaml
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::client::{Failure, Outcome, Secret};
    use super::{backoff::Backoff, wait_ready_with, Attempt};
    use crate::cli::Cli;
    use crate::config::{Config, Mode, SafeConfig};
    use crate::report::Progress;
    use clap::Parser;
    use std::cell::RefCell;
    use std::time::Duration;
    use tokio::time::Instant;

    fn config(args: &[&str]) -> SafeConfig {
        let cli = Cli::try_parse_from(["secret-gate", "safe"].iter().chain(args)).unwrap();
        match Config::from_cli(&cli).unwrap().mode {
            Mode::Safe(c) => *c,
            other => panic!("{other:?}"),
        }
    }

    /// Scripted outcomes, recording when each attempt happened.
    struct Script<'a> {
        start: Instant,
        times: &'a RefCell<Vec<Duration>>,
        outcomes: std::vec::IntoIter<Outcome>,
    }

    impl Attempt for Script<'_> {
        fn attempt(&mut self) -> impl std::future::Future<Output = Outcome> {
            self.times.borrow_mut().push(self.start.elapsed());
            let next = self.outcomes.next().unwrap();
            async move { next }
        }
    }

    /// Runs the loop against scripted outcomes under paused time and
    /// returns when each attempt happened.
    async fn schedule(config: &SafeConfig, outcomes: Vec<Outcome>) -> Vec<Duration> {
        let times = RefCell::new(Vec::new());
        let script = Script {
            start: Instant::now(),
            times: &times,
            outcomes: outcomes.into_iter(),
        };
        let backoff = Backoff::with_rng(
            config.poll_interval,
            config.max_backoff,
            fastrand::Rng::with_seed(5),
        );
        wait_ready_with(config, &Progress::new(), backoff, script).await;
        times.into_inner()
    }

    #[tokio::test(start_paused = true)]
    async fn first_attempt_is_immediate_then_jittered_backoff_within_the_cap() {
        let c = config(&[]);
        let mut outcomes = vec![Outcome::Failed(Failure::NotRegistered); 12];
        outcomes.push(Outcome::Secret(Secret::new("value".into())));
        let times = schedule(&c, outcomes).await;
        assert_eq!(times.len(), 13);
        assert_eq!(
            times[0],
            Duration::ZERO,
            "VSecM waits a full interval first; we do not"
        );
        let gaps: Vec<Duration> = times
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .collect();
        for gap in &gaps {
            assert!(
                *gap >= c.poll_interval / 10 && *gap <= c.max_backoff,
                "{gaps:?}"
            );
        }
        assert!(
            gaps.iter().any(|g| *g > c.poll_interval),
            "the back-off grows: {gaps:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_keys_any_non_empty_secret_is_ready_as_in_vsecm() {
        let c = config(&[]);
        let times = schedule(&c, vec![Outcome::Secret(Secret::new("[p4ss{word".into()))]).await;
        assert_eq!(times.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn with_keys_the_secret_must_parse_and_carry_them() {
        let c = config(&["--required-keys", "password"]);
        let outcomes = vec![
            Outcome::Secret(Secret::new(r#"{"password":"#.into())),
            Outcome::Secret(Secret::new(r#"{"user":"u"}"#.into())),
            Outcome::Secret(Secret::new("password: p\n".into())),
        ];
        assert_eq!(schedule(&c, outcomes).await.len(), 3);
    }
}

//! Safe mode: poll VSecM Safe over SPIFFE mTLS until this workload's
//! secret is there and passes the check, then optionally write it out.
//!
//! The first attempt is immediate; later ones follow [`schedule`]: a
//! steady, fleet-spreading pace while the secret is not there yet, back-off
//! while something is broken. Every attempt is bounded ([`client`]). Each
//! distinct condition is logged once, when it first appears.

pub mod backoff;
pub mod client;
pub mod config;
pub mod output;
pub mod schedule;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

pub use config::{Output, SafeConfig, SecretFormat};

use crate::check::{self, describe_parse_error, Document, Format};
use crate::problem::{Identity, Kind, Problem};
use crate::report::Progress;
use client::{Failure, SafeClient, Secret};
use schedule::{Pace, Schedule};

/// Returns once the Safe has handed over a secret that passes the check
/// and, when asked, it has been written out.
pub async fn wait_ready(config: &SafeConfig, progress: &Progress) {
    let deadline = config.timeout.map(|t| tokio::time::Instant::now() + t);
    let client = SafeClient::new(config).with_deadline(deadline);
    let schedule = Schedule::new(config.poll_interval, config.max_backoff);
    wait_ready_with(config, progress, schedule, client).await;
}

/// Something that makes one attempt to fetch the secret: the real
/// [`SafeClient`], or a scripted stand-in in tests. While it waits, it
/// tells `progress` what for ([`Progress::set_in_flight`]).
pub trait Attempt {
    fn attempt(&mut self, progress: &Progress) -> impl Future<Output = Result<Secret, Failure>>;

    /// Completes when a new SVID makes a refused attempt worth repeating
    /// at once ([`SafeClient::renewed_svid`]); never, by default.
    fn renewed_svid(&mut self) -> impl Future<Output = ()> {
        std::future::pending()
    }
}

impl Attempt for SafeClient {
    fn attempt(&mut self, progress: &Progress) -> impl Future<Output = Result<Secret, Failure>> {
        SafeClient::attempt_reporting(self, progress)
    }

    fn renewed_svid(&mut self) -> impl Future<Output = ()> {
        SafeClient::renewed_svid(self)
    }
}

/// Waits `delay` before the next attempt, paced by `pace`; after a
/// refusal of our expired SVID ([`Pace::AwaitSvid`]), only until the
/// Workload API sends a new one. Shared with `safe --keep-running`.
pub(crate) async fn pause(client: &mut impl Attempt, pace: Option<Pace>, delay: Duration) {
    tracing::debug!(next_attempt_in = ?delay, ?pace, "waiting before the next attempt");
    if pace != Some(Pace::AwaitSvid) {
        return tokio::time::sleep(delay).await;
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = client.renewed_svid() => {
            tracing::info!("the Workload API sent a new SVID; asking the Safe again now");
        }
    }
}

/// The wait loop, with the attempts and the schedule passed in so tests
/// can drive it under paused time.
pub async fn wait_ready_with(
    config: &SafeConfig,
    progress: &Progress,
    mut schedule: Schedule,
    mut client: impl Attempt,
) {
    let mut seen: HashSet<Identity> = HashSet::new();
    loop {
        // `not_yet`: the normal states of a Safe or secret that is not
        // there yet, logged at info; anything else is an error someone may
        // need to fix, logged as a warning and kept as the last error.
        // `pace`: what the answer means for the next attempt.
        let (problems, not_yet, pace) = match client.attempt(progress).await {
            Ok(secret) => match accept(config, secret.expose()) {
                Ok(()) => return,
                Err(NotAccepted::NotYet(problems)) => (problems, true, Pace::NotYet),
                Err(NotAccepted::Output(problem)) => (vec![problem], false, Pace::Broken),
            },
            Err(failure) => (
                vec![Problem::new(
                    "Safe",
                    Kind::Safe(failure.kind()),
                    failure.to_string(),
                )],
                failure.is_not_yet(),
                failure.pace(),
            ),
        };
        note_problems(progress, &mut seen, problems, not_yet);
        let delay = schedule.next_delay(pace);
        pause(&mut client, Some(pace), delay).await;
    }
}

/// Records one attempt's problems for the diagnosis, logging each
/// condition once (`seen`): at info when it is a normal "not yet", else as a
/// warning that is also kept as the last error. Shared with
/// `safe --keep-running` before its first ready.
pub(crate) fn note_problems(
    progress: &Progress,
    seen: &mut HashSet<Identity>,
    problems: Vec<Problem>,
    not_yet: bool,
) {
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
    let doc = check_secret(config, config.output.as_ref(), data).map_err(NotAccepted::NotYet)?;
    write_output(config, data, &doc)
        .map_err(|e| NotAccepted::Output(Problem::new("output", Kind::Output, e.to_string())))
}

/// The check of a fetched secret, shared by the one-shot wait and
/// `--keep-running`: parse it in its format (VSecM's own rule, any
/// non-empty data, when no document is needed), find the required keys,
/// hold it to each `--schema`, and check PEM material. `output` is where it
/// will go (`--keep-running` may name it by VSecM's variable). The problems
/// say why it is not ready yet.
pub fn check_secret(
    config: &SafeConfig,
    output: Option<&Output>,
    data: &str,
) -> Result<Document, Vec<Problem>> {
    let format = resolve_format(config, output, data);
    // VSecM's own rule, when no document is needed: any non-empty data
    // (but not a template rendered without its data).
    let mut bundle = None;
    let doc = if format.is_none() && !check::format::is_no_value(data.as_bytes()) {
        Document::default()
    } else {
        let format = format.unwrap_or(Format::Raw);
        // PEM is parsed once: its bundle goes to the TLS checks.
        let parsed = if format == Format::Pem {
            check::parse_pem(data.as_bytes()).map(|b| {
                bundle = Some(b);
                Document::default()
            })
        } else {
            check::parse(format, data.as_bytes())
        };
        parsed.map_err(|e| {
            vec![Problem::new(
                "Safe",
                Kind::Invalid,
                format!("secret {}", secret_problem(&e, data.len())),
            )]
        })?
    };
    let missing: Vec<Problem> = check::missing_keys(&config.keys, &[&doc])
        .into_iter()
        .map(|k| Problem::key_missing("Safe", k.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    if let Some(tree) = doc.tree() {
        let violations: Vec<Problem> = config
            .schemas
            .iter()
            .flat_map(|schema| schema.problems("Safe", tree))
            .collect();
        if !violations.is_empty() {
            return Err(violations);
        }
    }
    if let Some(bundle) = bundle {
        let policy = check::TlsPolicy {
            min_validity: config.min_validity,
            ..check::TlsPolicy::default()
        };
        let now = std::time::SystemTime::now();
        let report = check::tls::check_bundles(&[("Safe", bundle)], &policy, now);
        if !report.problems.is_empty() {
            return Err(report.problems);
        }
    }
    Ok(doc)
}

/// The parse error as the predicate of "secret …": "is empty", "is not
/// valid JSON at …", "holds only null, …", "ends early at …".
fn secret_problem(err: &check::ParseError, size: usize) -> String {
    let text = describe_parse_error(err, size, "secret");
    match err {
        check::ParseError::Empty
        | check::ParseError::InvalidUtf8(_)
        | check::ParseError::Syntax { .. } => format!("is {text}"),
        _ => text,
    }
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
            // How many, not which: in a YAML secret a "key" may be content.
            let files = output::write_dir(path, doc, *mode)?;
            tracing::info!(dir = %path.display(), files, "wrote one file per key");
        }
    }
    Ok(())
}

/// The format to parse the secret in. Sniffed (`--format auto`): without
/// required keys, `--schema` or `--output-dir` no document is needed
/// (`None`: any non-empty secret is ready, as in VSecM); otherwise JSON if
/// it looks like JSON, else YAML.
fn resolve_format(config: &SafeConfig, output: Option<&Output>, data: &str) -> Option<Format> {
    let SecretFormat::Given(format) = config.format else {
        let needs_document = !config.keys.is_empty()
            || !config.schemas.is_empty()
            || matches!(output, Some(Output::Dir { .. }));
        if !needs_document {
            return None;
        }
        let trimmed = data.trim_start();
        return Some(if trimmed.starts_with('{') || trimmed.starts_with('[') {
            Format::Json
        } else {
            Format::Yaml
        });
    };
    Some(format)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::client::{Failure, Secret};
    use super::{schedule::Schedule, wait_ready_with, Attempt, SafeConfig};
    use crate::config::{Config, Mode};
    use crate::report::Progress;
    use std::cell::RefCell;
    use std::time::Duration;
    use tokio::time::Instant;

    fn config(args: &[&str]) -> SafeConfig {
        let cli = crate::cli::parse_from(["secret-gate", "safe"].iter().chain(args)).unwrap();
        match Config::from_cli(&cli, None).unwrap().mode {
            Mode::Safe(c) => *c,
            other => panic!("{other:?}"),
        }
    }

    /// Scripted outcomes, recording when each attempt happened.
    struct Script<'a> {
        start: Instant,
        times: &'a RefCell<Vec<Duration>>,
        outcomes: std::vec::IntoIter<Result<Secret, Failure>>,
    }

    impl Attempt for Script<'_> {
        fn attempt(
            &mut self,
            _: &Progress,
        ) -> impl std::future::Future<Output = Result<Secret, Failure>> {
            self.times.borrow_mut().push(self.start.elapsed());
            let next = self.outcomes.next().unwrap();
            async move { next }
        }
    }

    /// Runs the loop against scripted outcomes under paused time and
    /// returns when each attempt happened.
    async fn schedule(
        config: &SafeConfig,
        outcomes: Vec<Result<Secret, Failure>>,
    ) -> Vec<Duration> {
        let times = RefCell::new(Vec::new());
        let script = Script {
            start: Instant::now(),
            times: &times,
            outcomes: outcomes.into_iter(),
        };
        let schedule = Schedule::with_rng(
            config.poll_interval,
            config.max_backoff,
            fastrand::Rng::with_seed(5),
        );
        wait_ready_with(config, &Progress::new(), schedule, script).await;
        times.into_inner()
    }

    fn gaps(times: &[Duration]) -> Vec<Duration> {
        times
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .collect()
    }

    #[test]
    fn a_secret_that_fails_the_check_reads_as_a_sentence() {
        let keys = config(&["--required-keys", "password"]);
        for (data, want) in [
            ("<no value>", "Safe: secret holds only `<no value>`"),
            (
                "null",
                "Safe: secret holds only null, which carries no secret",
            ),
            ("{\"password\" 1}", "Safe: secret is not valid JSON"),
            ("[", "Safe: secret JSON ends early"),
        ] {
            let problems = super::check_secret(&keys, None, data).unwrap_err();
            let text = problems[0].to_string();
            assert!(text.starts_with(want), "{data:?}: {text}");
        }
    }

    /// A schema file in a fresh directory, and the directory (kept alive).
    fn schema_file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schema.json");
        std::fs::write(&path, text).unwrap();
        (dir, path.to_str().unwrap().to_owned())
    }

    const PORT_AND_PASSWORD: &str = r#"{"type": "object",
        "properties": {"port": {"type": "integer"}, "password": {"minLength": 16}},
        "required": ["port"]}"#;

    #[test]
    fn a_schema_holds_the_secret_and_names_the_pointer_never_the_value() {
        let (_dir, schema) = schema_file(PORT_AND_PASSWORD);
        for format in [&[][..], &["--format", "json"], &["--format", "yaml"]] {
            let mut args = vec!["--schema", schema.as_str()];
            args.extend_from_slice(format);
            let c = config(&args);
            let ok = r#"{"port": 5432, "password": "sixteen-chars-ok"}"#;
            assert!(super::check_secret(&c, None, ok).is_ok(), "{format:?}");
            let bad = r#"{"port": "CANARY-PORT", "password": "CANARY-short"}"#;
            let problems = super::check_secret(&c, None, bad).unwrap_err();
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            assert_eq!(problems.len(), 2, "{format:?}: {text:?}");
            assert!(text.iter().any(|t| t.contains("/port")), "{text:?}");
            assert!(text.iter().any(|t| t.contains("/password")), "{text:?}");
            assert!(!text.join(" ").contains("CANARY"), "{text:?}");
        }
        // Sniffed: with only a schema, the secret must still be a document.
        let c = config(&["--schema", schema.as_str()]);
        let problems = super::check_secret(&c, None, "just text").unwrap_err();
        assert!(
            problems[0].to_string().contains("(top level)"),
            "{problems:?}"
        );
    }

    #[test]
    fn an_env_secret_is_checked_as_an_object_of_strings() {
        let (_dir, schema) =
            schema_file(r#"{"required": ["DB_USER"], "additionalProperties": {"type": "string"}}"#);
        let c = config(&["--schema", schema.as_str(), "--format", "env"]);
        assert!(super::check_secret(&c, None, "DB_USER=app\n").is_ok());
        let problems = super::check_secret(&c, None, "OTHER=x\n").unwrap_err();
        assert!(problems[0].to_string().contains("DB_USER"), "{problems:?}");
    }

    #[test]
    fn a_schema_that_cannot_apply_is_a_usage_error_that_says_why() {
        let (_dir, schema) = schema_file(PORT_AND_PASSWORD);
        let usage = |args: &[&str]| {
            let cli = crate::cli::parse_from(["secret-gate", "safe"].iter().chain(args)).unwrap();
            Config::from_cli(&cli, None).unwrap_err().to_string()
        };
        let with = format!("secret.json={schema}");
        let err = usage(&["--schema", with.as_str()]);
        assert!(err.contains("drop `secret.json=`"), "{err}");
        for format in ["raw", "pem"] {
            let err = usage(&["--schema", schema.as_str(), "--format", format]);
            assert!(err.contains("no tree to check"), "{format}: {err}");
        }
        let err = usage(&["--schema", "/nonexistent/schema.json"]);
        assert!(err.contains("/nonexistent/schema.json"), "{err}");
        // A manifest's command line: the schema is a path in the pod.
        let cli = crate::cli::parse_from_ignoring_env([
            "secret-gate",
            "safe",
            "--schema",
            "/etc/secret-schema/in-the-pod.json",
        ])
        .unwrap();
        assert!(Config::from_cli(&cli, None).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn not_yet_is_polled_at_a_steady_spread_pace() {
        let c = config(&["--required-keys", "password"]);
        let i = c.poll_interval;
        let mut outcomes = vec![Err(Failure::NotRegistered); 6];
        outcomes.push(Err(Failure::Empty));
        outcomes.push(Ok(Secret::new("{\"password\":".into())));
        outcomes.push(Ok(Secret::new("{\"password\":\"p\"}".into())));
        let times = schedule(&c, outcomes).await;
        assert_eq!(times.len(), 9);
        assert_eq!(
            times[0],
            Duration::ZERO,
            "VSecM waits a full interval first; we do not"
        );
        let gaps = gaps(&times);
        assert!(
            gaps[0] >= i && gaps[0] < i * 2,
            "the first wait spreads the fleet over the interval after VSecM's first tick: {gaps:?}"
        );
        for gap in &gaps[1..] {
            assert!(*gap >= i * 9 / 10 && *gap <= i, "{gaps:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_within_the_cap_and_not_yet_resumes_the_pace() {
        let c = config(&[]);
        let i = c.poll_interval;
        let mut outcomes = vec![Err(Failure::Status(500)); 8];
        outcomes.push(Err(Failure::BadRequest));
        outcomes.extend(vec![Err(Failure::NotRegistered); 3]);
        outcomes.push(Ok(Secret::new("value".into())));
        let times = schedule(&c, outcomes).await;
        let gaps = gaps(&times);
        for gap in &gaps[..9] {
            assert!(*gap >= i / 10 && *gap <= c.max_backoff, "{gaps:?}");
        }
        assert!(gaps[..9].iter().any(|g| *g > i), "it backs off: {gaps:?}");
        for gap in &gaps[10..] {
            assert!(*gap >= i * 9 / 10 && *gap <= i, "{gaps:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_up_to_the_cap() {
        let c = config(&["--max-backoff", "20s"]);
        let after = |s| Failure::Unavailable {
            retry_after: Some(Duration::from_secs(s)),
        };
        let outcomes = vec![
            Err(after(12)),
            Err(Failure::TooManyRequests {
                retry_after: Some(Duration::from_secs(7)),
            }),
            Err(after(3600)),
            Ok(Secret::new("value".into())),
        ];
        let gaps = gaps(&schedule(&c, outcomes).await);
        let slack = c.poll_interval / 10;
        assert!(gaps[0] >= Duration::from_secs(12) && gaps[0] <= Duration::from_secs(12) + slack);
        assert!(gaps[1] >= Duration::from_secs(7) && gaps[1] <= Duration::from_secs(7) + slack);
        assert_eq!(gaps[2], Duration::from_secs(20), "bounded by --max-backoff");
    }

    /// An attempt that never ends, as against a Workload API that accepts
    /// the connection and never answers.
    struct Hang;

    impl Attempt for Hang {
        fn attempt(
            &mut self,
            progress: &Progress,
        ) -> impl std::future::Future<Output = Result<Secret, Failure>> {
            progress.set_in_flight("the Workload API at unix:///x.sock", "no SVID");
            std::future::pending()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_during_an_attempt_says_what_it_waited_for() {
        let c = config(&[]);
        let progress = Progress::new();
        let schedule = Schedule::new(c.poll_interval, c.max_backoff);
        let wait = wait_ready_with(&c, &progress, schedule, Hang);
        assert!(tokio::time::timeout(Duration::from_secs(2), wait)
            .await
            .is_err());
        assert_eq!(
            progress.diagnosis("safe: not ready after 2s (--timeout)"),
            "secret-gate: safe: not ready after 2s (--timeout)\n\
             still waiting for the Workload API at unix:///x.sock: no SVID after 2s\n"
        );
    }

    /// Refused for an expired SVID until the Workload API sends a new one
    /// `renewal` after each refusal.
    struct Expired<'a> {
        start: Instant,
        times: &'a RefCell<Vec<Duration>>,
        refusals: usize,
        renewal: Duration,
    }

    impl Attempt for Expired<'_> {
        fn attempt(
            &mut self,
            _: &Progress,
        ) -> impl std::future::Future<Output = Result<Secret, Failure>> {
            self.times.borrow_mut().push(self.start.elapsed());
            let outcome = if self.refusals == 0 {
                Ok(Secret::new("value".into()))
            } else {
                self.refusals -= 1;
                Err(Failure::SvidExpired {
                    at: "2026-01-01T00:00:00Z".into(),
                    socket: "unix:///x.sock".into(),
                })
            };
            async move { outcome }
        }

        fn renewed_svid(&mut self) -> impl std::future::Future<Output = ()> {
            tokio::time::sleep(self.renewal)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_svid_ends_the_wait_after_an_expired_one_was_refused() {
        let c = config(&[]);
        let times = RefCell::new(Vec::new());
        let attempts = Expired {
            start: Instant::now(),
            times: &times,
            refusals: 3,
            renewal: Duration::from_millis(100),
        };
        let schedule =
            Schedule::with_rng(c.poll_interval, c.max_backoff, fastrand::Rng::with_seed(7));
        wait_ready_with(&c, &Progress::new(), schedule, attempts).await;
        let renewed = gaps(&times.into_inner());
        assert_eq!(renewed, [Duration::from_millis(100); 3]);

        // Without a new SVID, the steady pace: no back-off.
        let times = RefCell::new(Vec::new());
        let attempts = Expired {
            start: Instant::now(),
            times: &times,
            refusals: 5,
            renewal: Duration::from_secs(3600),
        };
        let schedule =
            Schedule::with_rng(c.poll_interval, c.max_backoff, fastrand::Rng::with_seed(8));
        wait_ready_with(&c, &Progress::new(), schedule, attempts).await;
        let i = c.poll_interval;
        for gap in gaps(&times.into_inner()) {
            assert!(gap >= i * 9 / 10 && gap <= i, "{gap:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn without_keys_any_non_empty_secret_is_ready_as_in_vsecm() {
        let c = config(&[]);
        let times = schedule(&c, vec![Ok(Secret::new("[p4ss{word".into()))]).await;
        assert_eq!(times.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn with_keys_the_secret_must_parse_and_carry_them() {
        let c = config(&["--required-keys", "password"]);
        let outcomes = vec![
            Ok(Secret::new(r#"{"password":"#.into())),
            Ok(Secret::new(r#"{"user":"u"}"#.into())),
            Ok(Secret::new("password: p\n".into())),
        ];
        assert_eq!(schedule(&c, outcomes).await.len(), 3);
    }
}

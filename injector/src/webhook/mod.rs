//! `secret-gate-injector webhook`: the mutating admission webhook, a
//! third front end over the same injection core as `inject` and the KRM
//! function.
//!
//! - [`Args`] is the command line (clap stays here and in the CLI);
//!   [`main`] loads the certificate, binds, and serves until SIGTERM.
//! - [`review`] decodes an `AdmissionReview` and builds its response;
//!   [`Webhook::review`] decides it: the pod goes through the core
//!   ([`Mutate`]), which edits it in place, and the difference between
//!   the parts it can edit, before and after, becomes the JSON patch
//!   ([`patch`]), so the patched pod is exactly what `inject` prints for
//!   it.
//! - [`certs`] loads, checks and reloads the serving certificate;
//!   [`metrics`] is `GET /metrics`.
//! - Connections are [`secret_gate::serve`]'s: a connection cap that
//!   sheds idle ones and ones blocked on a reader that does not read,
//!   short header, body and write timeouts, a per-request body limit
//!   ([`MAX_BODY_BYTES`]) under a shared body budget ([`BODY_BUDGET_BYTES`])
//!   sized to the container's memory limit, a TLS handshake timeout and a
//!   graceful shutdown.

pub mod certs;
pub mod metrics;
pub mod patch;
pub mod pool;
pub mod review;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use secret_gate::cli::{LoggingArgs, LoggingFlags};
use secret_gate::serve::{self, Limits, Server};

use self::certs::{Files, Resolver};
use self::metrics::{Metrics, Outcome};
use self::review::Scope;

/// The API server's limit on a request body (`--max-request-bytes`,
/// 3 MiB): no object it admits is larger.
pub const API_SERVER_MAX_REQUEST_BYTES: usize = 3 << 20;

/// Room for the `AdmissionReview` wrapper around the object: `uid`,
/// `kind`, `resource`, `requestKind`, `requestResource`, `namespace`,
/// `operation`, `options` (a `CreateOptions`) and `userInfo` (user name,
/// uid, groups and extra, as the authenticator gave them). A few hundred
/// bytes usually; 64 KiB leaves room for a user with hundreds of groups.
pub const REVIEW_WRAPPER_BYTES: usize = 64 << 10;

/// One request body at most: the largest object the API server admits
/// plus the review's wrapper. Anything larger cannot be a real review
/// and is answered 413 before a byte of it is read.
pub const MAX_BODY_BYTES: usize = API_SERVER_MAX_REQUEST_BYTES + REVIEW_WRAPPER_BYTES;

/// A review whose body is larger than this (no real Pod comes near it)
/// waits for its turn: one such review is decoded and injected at a
/// time, so their working sets (the value tree and the injected copy: a
/// few times the body) never add up.
pub const LARGE_REVIEW_BYTES: usize = 256 << 10;

/// The memory limit the webhook's container runs under in
/// `manifests/injector/deployment.yaml` (`resources.limits.memory`).
pub const CONTAINER_MEMORY_LIMIT_BYTES: usize = 64 << 20;

/// Request bodies held at once, all connections together. Derived from
/// [`CONTAINER_MEMORY_LIMIT_BYTES`] (64 MiB; docs/how-it-works.md, "The
/// served ports"): less the process at rest with 256 open TLS connections
/// (budgeted at 16 MiB), less one review of the largest body being decoded
/// into its value tree (4× the body, 13 MiB; measured 15.6 MiB with the
/// body; one at a time, see [`LARGE_REVIEW_BYTES`]), less a quarter of the
/// limit for the allocator's slack (16 MiB; with the manifest's fixed
/// glibc mmap threshold, freed bodies go back to the kernel); what is
/// left, 19 MiB, rounded down to 5 bodies of [`MAX_BODY_BYTES`]. A body
/// holds its share until it is freed, also in a review that overran
/// `--review-timeout`.
pub const BODY_BUDGET_BYTES: usize = 5 * MAX_BODY_BYTES;

const _: () = assert!(
    MAX_BODY_BYTES > API_SERVER_MAX_REQUEST_BYTES
        && BODY_BUDGET_BYTES < CONTAINER_MEMORY_LIMIT_BYTES / 2,
    "the largest review fits, and the body budget stays well under the container's limit"
);

/// `--listen`: the gate's own reading of `ADDR:PORT`, so that
/// `$(POD_IP):8443` works with an IPv6 pod IP too.
fn listen_address(text: &str) -> Result<SocketAddr, String> {
    serve::parse_listen(text).ok_or_else(|| {
        "not ADDR:PORT: write e.g. 0.0.0.0:8443, [::]:8443 or $(POD_IP):8443 (an IPv6 pod IP needs no brackets)"
            .to_owned()
    })
}

/// `secret-gate-injector webhook`: serve the mutating admission webhook
/// over HTTPS. `POST /mutate` reviews Pods on CREATE; `GET /healthz` and
/// `GET /metrics` are for probes and Prometheus.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address and port to serve HTTPS on, such as 0.0.0.0:8443.
    #[arg(long, env = "SECRET_GATE_INJECTOR_LISTEN", value_name = "ADDR:PORT", value_parser = listen_address)]
    pub listen: SocketAddr,

    /// The serving certificate (PEM: the leaf first, then any
    /// intermediates), such as cert-manager's tls.crt. Reloaded when it
    /// changes.
    #[arg(long, env = "SECRET_GATE_INJECTOR_TLS_CERT", value_name = "FILE")]
    pub tls_cert: PathBuf,

    /// The serving certificate's private key (PEM), such as tls.key.
    /// Reloaded with the certificate.
    #[arg(long, env = "SECRET_GATE_INJECTOR_TLS_KEY", value_name = "FILE")]
    pub tls_key: PathBuf,

    /// The gate's image in injected pods [default: this release's].
    #[arg(long, env = "SECRET_GATE_INJECTOR_IMAGE", value_name = "IMAGE")]
    pub image: Option<String>,

    /// Longest time one review may take before it is answered 504; keep it
    /// below the webhook's timeoutSeconds.
    #[arg(
        long,
        default_value = "3s",
        value_parser = humantime::parse_duration,
        env = "SECRET_GATE_INJECTOR_REVIEW_TIMEOUT",
        value_name = "DURATION"
    )]
    pub review_timeout: Duration,

    /// Open connections at most; past it, the oldest one not being answered
    /// (idle, a request or body not yet complete, or an answer its client
    /// does not read) is closed first.
    #[arg(
        long,
        default_value_t = 256,
        env = "SECRET_GATE_INJECTOR_MAX_CONNECTIONS",
        value_name = "N"
    )]
    pub max_connections: usize,

    /// Where to write why the webhook could not start (default
    /// /dev/termination-log when it is writable).
    #[arg(
        long,
        env = "SECRET_GATE_INJECTOR_TERMINATION_LOG",
        value_name = "FILE"
    )]
    pub termination_log: Option<PathBuf>,

    #[command(flatten)]
    pub logging: LoggingArgs<WebhookLogging>,

    /// Benchmark floor only: answer every review allowed, with no patch,
    /// without injecting (TLS, HTTP and JSON only). Never for a cluster.
    #[arg(long, hide = true, env = "SECRET_GATE_INJECTOR_BENCH_FLOOR")]
    pub bench_floor: bool,

    /// Tests only: hold every review this long before answering, so that
    /// a test can have reviews in flight when it sends SIGTERM.
    #[arg(
        long,
        hide = true,
        value_parser = humantime::parse_duration,
        env = "SECRET_GATE_INJECTOR_TEST_REVIEW_DELAY"
    )]
    pub test_review_delay: Option<Duration>,

    /// Tests only: make every review itself (on a review thread, in its
    /// turn) take this much longer, so that a test can have one overrun
    /// --review-timeout while it still holds its body.
    #[arg(
        long,
        hide = true,
        value_parser = humantime::parse_duration,
        env = "SECRET_GATE_INJECTOR_TEST_REVIEW_HOLD"
    )]
    pub test_review_hold: Option<Duration>,
}

/// The webhook's logging flags: `SECRET_GATE_INJECTOR_LOG_*`, with the
/// other options.
#[derive(Debug, Clone, Copy)]
pub struct WebhookLogging;

impl LoggingFlags for WebhookLogging {
    const FORMAT_ENV: &'static str = "SECRET_GATE_INJECTOR_LOG_FORMAT";
    const LEVEL_ENV: &'static str = "SECRET_GATE_INJECTOR_LOG_LEVEL";
    const LEVEL_HELP: &'static str = "Log level of the injector's own events";
    const HEADING: Option<&'static str> = None;
    const GLOBAL: bool = false;
}

/// What the injection core made of one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Leave it as it is (not opted in, already injected), and why.
    Unchanged {
        reason: String,
        warnings: Vec<String>,
    },
    /// The JSON patch (RFC 6902) that makes the pod what `inject` prints
    /// for it, its number of operations, and the report's warnings.
    Injected {
        patch: Vec<u8>,
        operations: usize,
        warnings: Vec<String>,
    },
    /// A gate configuration the gate would refuse: the gate's message.
    Refused(String),
    /// The pod cannot be patched: why.
    Failed(String),
}

/// The injection core as the webhook calls it: one Pod in, one
/// [`Mutation`] out. Pure, and quick enough to run on a review thread
/// ([`pool`]) while the connection waits.
/// The Pod is the webhook's own copy, decoded from the review: the core
/// may edit it in place, and what it holds afterwards is unspecified.
pub trait Mutate: Send + Sync + 'static {
    fn mutate(&self, pod: &mut serde_yaml_ng::Value) -> Mutation;
}

/// The injection core: the pod is injected exactly as `inject` would
/// inject it, and a gate configuration the gate would refuse is refused
/// with the gate's own message. A pod that already carries the status
/// annotation (its template was injected by `inject` or the KRM function)
/// is left as it is, once the core has found nothing wrong with it: the
/// webhook never rewrites what a pipeline injected.
///
/// The core edits the Pod in place ([`crate::Injector::inject_pod`]):
/// only the parts it can edit ([`crate::inject::EDITED`]) are copied
/// first, and the patch compares only those, so the rest of the Pod is
/// neither copied nor walked.
impl Mutate for crate::Injector {
    fn mutate(&self, pod: &mut serde_yaml_ng::Value) -> Mutation {
        let injected_before = pod
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(crate::annotations::STATUS))
            .is_some();
        // What the patch compares; an injected Pod gets no patch.
        let before = (!injected_before).then(|| patch::Before::of(pod));
        let mut edit = match self.inject_pod(pod) {
            Err(error) => return Mutation::Refused(error.to_string()),
            Ok(edit) => edit,
        };
        let Some(before) = before else {
            return Mutation::Unchanged {
                reason: format!("already injected ({})", crate::annotations::STATUS),
                warnings: edit.warnings,
            };
        };
        match before.diff(pod) {
            Err(patch::NotJson) => Mutation::Failed(
                "the injected pod cannot be written as JSON (a key that is not a string?)"
                    .to_owned(),
            ),
            Ok((_, 0)) => Mutation::Unchanged {
                reason: edit.unchanged(),
                warnings: edit.warnings,
            },
            Ok((patch, operations)) => {
                let warnings = std::mem::take(&mut edit.warnings);
                // The patch is written: the gate's container goes back to
                // the cache for the next review (only `shown()`, which
                // reads the Pod's metadata, looks at the Pod after this).
                edit.give_back(self, pod);
                Mutation::Injected {
                    patch,
                    operations,
                    warnings,
                }
            }
        }
    }
}

/// `secret-gate-injector webhook`: [`main`] over the injection core with
/// `--image`; the process's exit code.
#[must_use]
pub fn run(args: &Args) -> u8 {
    let mut settings = crate::Settings::default();
    if let Some(image) = &args.image {
        image.clone_into(&mut settings.image);
    }
    // The API server sends Pods it has decoded into its own types: only
    // what the core adds needs the typed check.
    let injector =
        crate::Injector::new(settings).with_typed_check(crate::inject::TypedCheck::Edits);
    main(args, injector).code()
}

/// The webhook's state, shared by every connection.
pub struct Webhook<M> {
    mutate: M,
    metrics: Arc<Metrics>,
    resolver: Arc<Resolver>,
    review_timeout: Duration,
    floor: bool,
    delay: Option<Duration>,
    hold: Option<Duration>,
    /// One permit: the turn of a review over [`LARGE_REVIEW_BYTES`].
    large: Arc<tokio::sync::Semaphore>,
    /// Reviews whose answer is sent and whose log line is not yet
    /// written: the stop waits for those lines.
    notes: Arc<AtomicUsize>,
    /// The threads reviews run on.
    pool: Arc<pool::Pool>,
}

/// Reviews that run at once at most, each on its own thread: on the
/// manifest's CPU limit more would only take turns, and further reviews
/// wait in order for a free thread (under `--review-timeout`).
const REVIEW_THREADS: usize = 4;

/// How long the stop waits for the log lines of answers already sent.
const NOTES_WAIT: Duration = Duration::from_secs(1);

/// One review's answer: its outcome and the HTTP response body (or the
/// HTTP 400 message).
type Answer = (Outcome, Result<review::Response, review::Invalid>);

/// A review's log line, written once its answer is on its way: a
/// synchronous write to stderr would otherwise lie on every answer's path.
#[derive(Debug)]
#[must_use]
pub enum Note {
    /// Nothing to log.
    Quiet,
    /// `debug`: not injected, and why.
    NotInjected { pod: String, why: String },
    /// `info`: injected, with the patch's number of operations.
    Injected { pod: String, operations: usize },
    /// `info`: denied, with the core's message.
    Denied { pod: String, message: String },
    /// `warn`: the review could not be answered as asked (a request out of
    /// scope, a Pod that cannot be patched).
    Failed { pod: String, message: String },
}

impl Note {
    /// Writes the line.
    pub fn write(self) {
        match self {
            Self::Quiet => {}
            Self::NotInjected { pod, why } => tracing::debug!(pod = %pod, "not injected: {why}"),
            Self::Injected { pod, operations } => {
                tracing::info!(pod = %pod, operations, "injected");
            }
            Self::Denied { pod, message } => tracing::info!(pod = %pod, "denied: {message}"),
            Self::Failed { pod, message } => tracing::warn!(pod = %pod, "{message}"),
        }
    }
}

impl<M: Mutate> Webhook<M> {
    /// Answers one `POST /mutate` body, and says what to log once the
    /// answer is sent. Pure: no I/O.
    pub fn review(&self, body: &[u8]) -> (Answer, Note) {
        let mut request = match review::decode(body) {
            Ok(request) => request,
            Err(invalid) => return ((Outcome::Invalid, Err(invalid)), Note::Quiet),
        };
        // Its own copy: the core edits the request's Pod in place.
        let uid = request.uid.clone();
        let uid = uid.as_str();
        if self.floor {
            return (
                (Outcome::Skipped, Ok(review::Response::allow(uid))),
                Note::Quiet,
            );
        }
        // A debug line's pod name is built only if it will be written.
        let not_injected = |request: &review::AdmissionRequest, why: String| {
            if tracing::enabled!(tracing::Level::DEBUG) {
                Note::NotInjected {
                    pod: request.shown(),
                    why,
                }
            } else {
                Note::Quiet
            }
        };
        match request.scope() {
            Scope::Pass(why) => {
                return (
                    (Outcome::Skipped, Ok(review::Response::allow(uid))),
                    not_injected(&request, why),
                );
            }
            Scope::Error(message) => return refuse(uid, &request, Outcome::Error, message),
            Scope::Review => {}
        }
        let Some(pod) = request.object.as_mut() else {
            return (
                (Outcome::Error, Ok(review::Response::allow(uid))),
                Note::Quiet,
            );
        };
        match self.mutate.mutate(pod) {
            Mutation::Unchanged { reason, warnings } => (
                (
                    Outcome::Skipped,
                    Ok(review::Response::allow(uid).with_warnings(warnings)),
                ),
                not_injected(&request, reason),
            ),
            Mutation::Injected {
                patch,
                operations,
                warnings,
            } => (
                (
                    Outcome::Injected,
                    Ok(review::Response::patch(uid, &patch, warnings)),
                ),
                Note::Injected {
                    pod: request.shown(),
                    operations,
                },
            ),
            Mutation::Refused(message) => refuse(uid, &request, Outcome::Denied, message),
            Mutation::Failed(message) => refuse(uid, &request, Outcome::Error, message),
        }
    }
}

/// A review answered 400 with `message`, which its line repeats: `denied`
/// when the core refused the Pod, a warning when the review could not be
/// answered as asked.
fn refuse(
    uid: &str,
    request: &review::AdmissionRequest,
    outcome: Outcome,
    message: String,
) -> (Answer, Note) {
    let pod = request.shown();
    let note = match outcome {
        Outcome::Denied => Note::Denied {
            pod,
            message: message.clone(),
        },
        _ => Note::Failed {
            pod,
            message: message.clone(),
        },
    };
    (
        (outcome, Ok(review::Response::deny(uid, 400, message))),
        note,
    )
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn text(status: StatusCode, body: String) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Routes one request.
async fn answer<M: Mutate>(webhook: Arc<Webhook<M>>, request: Request<Bytes>) -> Response<Bytes> {
    let path = request.uri().path();
    let method = request.method().clone();
    match (path, method) {
        ("/mutate", Method::POST) => {
            let start = Instant::now();
            let body = request.into_body();
            let job = Arc::clone(&webhook);
            let large = Arc::clone(&webhook.large);
            let pool = Arc::clone(&webhook.pool);
            let delay = webhook.delay;
            let work = async move {
                if let Some(delay) = delay {
                    tracing::info!(?delay, "--test-review-delay: holding a review");
                    tokio::time::sleep(delay).await;
                }
                // The semaphore is never closed. The turn and the body go
                // into the review itself: one that overruns
                // --review-timeout runs on (a blocking task cannot be
                // stopped), and until it ends it keeps its turn, so no
                // second large review starts beside it, and its body keeps
                // its share of the body budget.
                let turn = if body.len() > LARGE_REVIEW_BYTES {
                    large.acquire_owned().await.ok()
                } else {
                    None
                };
                // The answer comes back on a channel, so that the review's
                // log line is written after it is on its way. A review
                // that panics drops the sender: answered 500.
                let (sent, answer) = tokio::sync::oneshot::channel();
                pool.run(move || {
                    if let Some(hold) = job.hold {
                        tracing::info!(?hold, "--test-review-hold: a review runs long");
                        std::thread::sleep(hold);
                    }
                    let (answer, note) = job.review(&body);
                    drop(body);
                    drop(turn);
                    job.notes.fetch_add(1, Ordering::SeqCst);
                    // The receiver is gone only if the review timed out.
                    let _ = sent.send(answer);
                    if !matches!(note, Note::Quiet) {
                        // The send woke the runtime thread, often onto this
                        // CPU: the scheduler places a wakee near its waker.
                        // Stepping aside lets it encrypt and write the
                        // answer before this thread formats and writes the
                        // line; written at once, the line still delayed
                        // the answer it follows (figure 12, paced).
                        std::thread::yield_now();
                    }
                    note.write();
                    job.notes.fetch_sub(1, Ordering::SeqCst);
                });
                answer.await
            };
            match tokio::time::timeout(webhook.review_timeout, work).await {
                Ok(Ok((outcome, answer))) => {
                    webhook.metrics.review(outcome, start.elapsed());
                    match answer {
                        Ok(response) => json(StatusCode::OK, response.to_json()),
                        Err(invalid) => text(StatusCode::BAD_REQUEST, format!("{invalid}\n")),
                    }
                }
                Ok(Err(_panicked)) => {
                    webhook.metrics.review(Outcome::Error, start.elapsed());
                    tracing::error!("a review failed unexpectedly; answered 500");
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the review failed unexpectedly; see the webhook's log\n".to_owned(),
                    )
                }
                Err(_) => {
                    webhook.metrics.review(Outcome::Timeout, start.elapsed());
                    tracing::warn!(timeout = ?webhook.review_timeout, "a review took longer than --review-timeout; answered 504");
                    text(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the review took longer than --review-timeout\n".to_owned(),
                    )
                }
            }
        }
        ("/mutate", _) => not_allowed("POST", "POST an AdmissionReview to /mutate\n"),
        ("/healthz", Method::GET | Method::HEAD) => {
            let not_after = webhook.resolver.current().not_after;
            if unix_now() > not_after {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the serving certificate has expired and no valid rotation was loaded\n"
                        .to_owned(),
                )
            } else {
                text(StatusCode::OK, "ok\n".to_owned())
            }
        }
        ("/metrics", Method::GET | Method::HEAD) => {
            let mut response = Response::new(Bytes::from(webhook.metrics.encode()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            response
        }
        ("/healthz" | "/metrics", _) => not_allowed("GET, HEAD", "use GET or HEAD\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    }
}

/// 405 with the `Allow` header RFC 9110 §15.5.6 requires.
fn not_allowed(allow: &'static str, why: &str) -> Response<Bytes> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, why.to_owned());
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The server's limits for a webhook: a body of [`MAX_BODY_BYTES`] under
/// the shared [`BODY_BUDGET_BYTES`], a 16 KiB head, and room for a review
/// to finish within `review_timeout` (plus its write), also at shutdown.
#[must_use]
pub fn limits(max_connections: usize, review_timeout: Duration) -> Limits {
    Limits {
        max_connections,
        max_body_bytes: MAX_BODY_BYTES,
        body_budget_bytes: BODY_BUDGET_BYTES,
        max_head_bytes: 16 * 1024,
        // The API server keeps connections alive between reviews.
        idle_timeout: Duration::from_secs(60),
        request_timeout: review_timeout + Duration::from_secs(1),
        shutdown_grace: review_timeout + Duration::from_secs(1),
        ..Limits::default()
    }
}

/// Why `webhook` stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or SIGINT, after in-flight reviews finished: 0.
    Stopped,
    /// It could not start (certificate, address): 1, with a diagnosis.
    Failed,
    /// The command line or logging was unusable: 2.
    Usage,
}

impl Exit {
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::Stopped => 0,
            Self::Failed => 1,
            Self::Usage => 2,
        }
    }
}

/// The whole `webhook` command. `mutate` is the injection core.
pub fn main<M: Mutate>(args: &Args, mutate: M) -> Exit {
    let termination_log = args
        .termination_log
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(secret_gate::report::default_termination_log);
    if let Err(msg) = secret_gate::logging::init(args.logging.settings()) {
        #[expect(clippy::print_stderr, reason = "logging is not up")]
        {
            eprintln!("secret-gate-injector: error: {msg}");
        }
        return Exit::Usage;
    }
    let fail = |diagnosis: String| {
        secret_gate::report::report_stop(termination_log.as_deref(), &diagnosis);
        Exit::Failed
    };
    let files = Files {
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
    };
    let pair = match certs::load(&files, SystemTime::now()) {
        Ok(pair) => pair,
        Err(error) => {
            return fail(format!(
                "the webhook cannot start: its serving certificate is not usable: {error}. cert-manager renews it; check `kubectl get certificate` in this namespace"
            ));
        }
    };
    secret_gate::rlimit::raise_nofile();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Reviews run on their own threads ([`pool`]); only a
        // certificate's reload runs on tokio's blocking pool.
        .max_blocking_threads(1)
        .build()
    {
        Ok(rt) => rt,
        Err(error) => return fail(format!("the webhook cannot start its runtime: {error}")),
    };
    let result = runtime.block_on(serve_until_stopped(args, files, pair, mutate));
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => Exit::Stopped,
        Err(diagnosis) => fail(diagnosis),
    }
}

async fn serve_until_stopped<M: Mutate>(
    args: &Args,
    files: Files,
    pair: certs::Pair,
    mutate: M,
) -> Result<(), String> {
    let signals = secret_gate::signals::Signals::install()
        .map_err(|error| format!("the webhook cannot install its signal handlers: {error}"))?;
    let listener = serve::bind(args.listen).map_err(|error| {
        format!(
            "the webhook cannot listen on {}: {error}. Pick a free port with --listen",
            args.listen
        )
    })?;
    let local = listener.local_addr().unwrap_or(args.listen);
    let metrics = Arc::new(Metrics::new());
    metrics.certificate_loaded(pair.not_after, false);
    let not_after = pair.not_after;
    let resolver = Arc::new(Resolver::new(pair));
    let acceptor = certs::acceptor(Arc::clone(&resolver))
        .map_err(|error| format!("the webhook cannot set up TLS: {error}"))?;
    certs::watch(files, Arc::clone(&resolver), Arc::clone(&metrics));
    let notes = Arc::new(AtomicUsize::new(0));
    let webhook = Arc::new(Webhook {
        mutate,
        metrics: Arc::clone(&metrics),
        resolver,
        review_timeout: args.review_timeout,
        floor: args.bench_floor,
        delay: args.test_review_delay,
        hold: args.test_review_hold,
        large: Arc::new(tokio::sync::Semaphore::new(1)),
        notes: Arc::clone(&notes),
        pool: Arc::new(pool::Pool::new(REVIEW_THREADS)),
    });
    let handler = move |request: Request<Bytes>| answer(Arc::clone(&webhook), request);
    let server = Server::new(
        listener,
        acceptor,
        handler,
        limits(args.max_connections, args.review_timeout),
    );
    metrics.serve_stats(server.stats());
    if args.bench_floor {
        tracing::warn!("--bench-floor: answering every review allowed with no patch (a benchmark baseline, never for a cluster)");
    }
    tracing::info!(address = %local, not_after, "listening on {local}: POST /mutate, GET /healthz, GET /metrics");
    server
        .run(async move {
            let stop = signals.recv().await;
            tracing::info!(
                signal = stop.name(),
                "stopping: no new connections; in-flight reviews finish"
            );
        })
        .await;
    // A review's log line follows its answer: the last answers' lines may
    // still be on their way. Wait for them (briefly: each is one write).
    let until = Instant::now() + NOTES_WAIT;
    while notes.load(Ordering::SeqCst) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{limits, listen_address, MAX_BODY_BYTES};
    use std::time::Duration;

    /// `--listen=$(POD_IP):8443` as the kubelet expands it, IPv4 or IPv6.
    #[test]
    fn listen_takes_a_pod_ip_of_either_family() {
        for (text, want) in [
            ("10.1.2.3:8443", "10.1.2.3:8443"),
            ("fd00::5:8443", "[fd00::5]:8443"),
            ("[::]:8443", "[::]:8443"),
        ] {
            assert_eq!(listen_address(text).unwrap().to_string(), want);
        }
        for bad in ["fd00::5", "web:8443", "8443"] {
            assert!(
                listen_address(bad).unwrap_err().contains("not ADDR:PORT"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_logging_flags_are_the_gates_under_the_injectors_env_vars() {
        use clap::{CommandFactory, Parser};
        let cmd = crate::cli::Cli::command();
        let webhook = cmd.find_subcommand("webhook").unwrap();
        for (flag, env) in [
            ("log_format", "SECRET_GATE_INJECTOR_LOG_FORMAT"),
            ("log_level", "SECRET_GATE_INJECTOR_LOG_LEVEL"),
        ] {
            let arg = webhook
                .get_arguments()
                .find(|a| a.get_id() == flag)
                .unwrap();
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(env));
            assert!(!arg.is_global_set(), "{flag}");
        }
        let parsed = crate::cli::Cli::try_parse_from([
            "secret-gate-injector",
            "webhook",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "--log-format",
            "json",
            "--log-level",
            "warn",
        ]);
        let Ok(crate::cli::Cli {
            command: crate::cli::Command::Webhook(args),
        }) = parsed
        else {
            panic!("{parsed:?}");
        };
        let settings = args.logging.settings();
        assert_eq!(settings.format, secret_gate::logging::Format::Json);
        assert_eq!(settings.level, secret_gate::logging::Level::Warn);
    }

    #[test]
    fn limits_keep_a_review_inside_the_api_servers_budget() {
        let l = limits(10, Duration::from_secs(3));
        assert_eq!(l.max_body_bytes, MAX_BODY_BYTES);
        // The budget holds whole bodies and stays well under the
        // container's limit.
        assert_eq!(l.body_budget_bytes % MAX_BODY_BYTES, 0);
        assert!(l.body_budget_bytes < super::CONTAINER_MEMORY_LIMIT_BYTES / 2);
        assert_eq!(l.request_timeout, Duration::from_secs(4));
        assert!(l.shutdown_grace >= Duration::from_secs(3));
    }
}

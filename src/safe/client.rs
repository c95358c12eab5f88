//! One attempt against VSecM Safe: SVID from the Workload API, mTLS with
//! the Safe authorised by SPIFFE ID, `GET /workload/v1/secrets`.

use std::os::unix::fs::FileTypeExt as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt, Limited};
use rustls::pki_types::ServerName;
use serde::Deserialize;
use spiffe::x509_source::{MetricsErrorKind, MetricsRecorder};
use spiffe::X509Source;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::problem::SafeKind;
use crate::report::Progress;
use crate::spiffe_id::SpiffeIdMatcher;

use super::schedule::Pace;
use super::SafeConfig;

/// A secret value: what an attempt got from a 200 with a non-empty `data`
/// field. Its `Debug` is redacted, so a stray `{:?}` cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value itself; never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// Why an attempt did not yield a secret: a normal "not yet" (404, empty
/// data), a booting Safe (400, 503), or an error worth retrying. Each is a
/// distinct condition ([`Failure::kind`]), logged once and named in the
/// diagnosis. Never carries a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("Workload API not reachable at {socket}: {detail}")]
    WorkloadApi { socket: String, detail: String },
    #[error("cannot connect to the Safe at {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("Safe rejected: {0}")]
    WrongSafeId(Refusal),
    #[error("cannot use this pod's SVID for TLS: {0}")]
    Tls(String),
    #[error("Safe's certificate is not signed by the trust bundle from the Workload API ({detail}); is VSECM_SAFE_ENDPOINT_URL pointing at the right server?")]
    UntrustedSafe { detail: String },
    #[error("TLS handshake with the Safe failed: {detail}")]
    Handshake { detail: String },
    /// `at`: the SVID's `notAfter`, as RFC 3339.
    #[error("the Safe refused this pod's SVID: it expired at {at} and the Workload API at {socket} has not sent a new one (is the SPIRE agent running?)")]
    SvidExpired { at: String, socket: String },
    #[error("no answer from the Safe within the attempt timeout ({0}); raise --attempt-timeout if the Safe is just slow")]
    Timeout(String),
    #[error("no secret registered for this workload yet (Safe answered 404)")]
    NotRegistered,
    #[error("Safe answered 400: its root key may not be set yet, or it found no workload name in this pod's SVID")]
    BadRequest,
    /// `retry_after`: the Safe's `Retry-After`, if it sent one.
    #[error("Safe's backing store is not ready (Safe answered 503)")]
    Unavailable { retry_after: Option<Duration> },
    #[error("Safe is refusing requests for now (Safe answered 429 Too Many Requests)")]
    TooManyRequests { retry_after: Option<Duration> },
    #[error("Safe answered HTTP {0}")]
    Status(u16),
    #[error("Safe's response is larger than --max-body-size ({0} bytes)")]
    TooLarge(u64),
    #[error("reading the Safe's response failed: {0}")]
    Read(String),
    #[error("Safe's response is not VSecM's JSON shape ({0})")]
    BadBody(String),
    #[error("Safe has an empty secret for this workload")]
    Empty,
}

/// The Safe presented a SPIFFE ID that a VSecM prefix variable does not
/// allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server presented {presented} which does not match {variable} ({rule})")]
pub struct Refusal {
    /// The SPIFFE ID the Safe presented.
    pub presented: String,
    /// The variable whose rule it failed.
    pub variable: &'static str,
    /// That rule, as text.
    pub rule: String,
}

impl Failure {
    /// The kind of condition, so each is logged once.
    #[must_use]
    pub const fn kind(&self) -> SafeKind {
        match self {
            Self::WorkloadApi { .. } => SafeKind::WorkloadApi,
            Self::Connect { .. } => SafeKind::Connect,
            Self::WrongSafeId(_) => SafeKind::WrongSafeId,
            Self::Tls(_) => SafeKind::Tls,
            Self::Read(_) => SafeKind::Read,
            Self::UntrustedSafe { .. } => SafeKind::UntrustedSafe,
            Self::Handshake { .. } => SafeKind::Handshake,
            Self::SvidExpired { .. } => SafeKind::SvidExpired,
            Self::Timeout(_) => SafeKind::Timeout,
            Self::NotRegistered => SafeKind::NotRegistered,
            Self::BadRequest => SafeKind::BadRequest,
            Self::Unavailable { .. } => SafeKind::Unavailable,
            Self::TooManyRequests { .. } => SafeKind::TooManyRequests,
            Self::Status(_) => SafeKind::Status,
            Self::TooLarge(_) => SafeKind::TooLarge,
            Self::BadBody(_) => SafeKind::BadBody,
            Self::Empty => SafeKind::Empty,
        }
    }

    /// The normal states of a Safe that has no secret for us yet, or is
    /// still booting (logged at info), as opposed to errors that someone
    /// may need to fix (logged as warnings).
    #[must_use]
    pub const fn is_not_yet(&self) -> bool {
        matches!(
            self,
            Self::NotRegistered | Self::BadRequest | Self::Unavailable { .. } | Self::Empty
        )
    }

    /// How the next attempt is paced ([`crate::safe::schedule`]). Only a
    /// Safe that answers normally with nothing for us (404, empty data) is
    /// "not yet"; a 503 without `Retry-After` (a booting Safe) keeps the
    /// same steady pace. A 400 backs off like a failure: VSecM answers it while
    /// its root key is not set (at boot, briefly) but also for an SVID it
    /// cannot map to a workload, which no retry fixes, so a fleet that gets
    /// it must not keep the steady pace forever. A refusal of our expired
    /// SVID is not the Safe's failure: it waits for a new SVID
    /// ([`Pace::AwaitSvid`]) and leaves the back-off alone.
    #[must_use]
    pub const fn pace(&self) -> Pace {
        match self {
            Self::NotRegistered | Self::Empty => Pace::NotYet,
            Self::Unavailable { retry_after: None } => Pace::Booting,
            Self::SvidExpired { .. } => Pace::AwaitSvid,
            Self::Unavailable {
                retry_after: Some(d),
            }
            | Self::TooManyRequests {
                retry_after: Some(d),
            } => Pace::RetryAfter(*d),
            _ => Pace::Broken,
        }
    }
}

/// A `Retry-After` value: seconds, or an HTTP date (a date in the past
/// means now).
#[must_use]
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// Where an attempt says what it is waiting for, so a deadline that cuts
/// it short can say so: [`Progress`] in the gate, [`Silent`] elsewhere.
pub trait Waiting {
    /// See [`Progress::set_in_flight`].
    fn set_in_flight(&self, what: String, pending: &str);
    /// See [`Progress::clear_in_flight`].
    fn clear_in_flight(&self);
}

impl Waiting for Progress {
    fn set_in_flight(&self, what: String, pending: &str) {
        Progress::set_in_flight(self, what, pending);
    }

    fn clear_in_flight(&self) {
        Progress::clear_in_flight(self);
    }
}

/// Reports nothing (and is `Sync`, so an attempt using it is `Send`).
pub struct Silent;

impl Waiting for Silent {
    fn set_in_flight(&self, _: String, _: &str) {}
    fn clear_in_flight(&self) {}
}

/// The path of a `unix:` Workload API address.
fn socket_path(socket: &str) -> Option<&str> {
    socket
        .strip_prefix("unix://")
        .or_else(|| socket.strip_prefix("unix:"))
}

/// Checks that the Workload API's socket exists and is a socket, so the
/// commonest misconfiguration (the volume not mounted) is reported at once
/// instead of after a sync timeout. `stat` runs off the runtime thread.
async fn check_socket(path: &str) -> Result<(), String> {
    let hint = "is the SPIFFE CSI driver volume mounted, and SPIFFE_ENDPOINT_SOCKET right?";
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.file_type().is_socket() => Ok(()),
        Ok(meta) => {
            let kind = if meta.is_dir() {
                "a directory"
            } else if meta.is_file() {
                "a regular file"
            } else {
                "not a unix socket"
            };
            Err(format!("{path} is not a socket (it is {kind}); {hint}"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("no socket at {path}: no such file ({hint})"))
        }
        Err(e) => Err(format!("cannot use {path}: {e}")),
    }
}

/// VSecM's 200 body. `created`/`updated` hold quoted RFC 3339 strings (a
/// VSecM quirk); they are accepted and not needed.
#[derive(Deserialize)]
struct SecretResponse {
    data: Option<String>,
}

/// How soon the X509Source tries the Workload API again after losing it:
/// 100 ms, doubling (with up to a tenth more as jitter) to at most 1 s.
/// The Workload API is a unix socket on the node, so a failed attempt
/// costs one `connect()` and a file lookup; one a second while the agent
/// is down is nothing, to the gate or the agent. The cap bounds the time
/// from the agent's return to its first stream to about 1.1 s, which
/// leaves most of the 3 s goal (figure 9's "agent restart → new version")
/// for the SVID, the handshake and the fetch on a loaded node. The
/// spiffe crate's default, 200 ms to 10 s, could leave the gate up to 11 s
/// behind an agent that is back. A whole node's pods reconnecting once a
/// second is what a SPIRE agent serves at start anyway.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
/// See [`RECONNECT_MIN`].
const RECONNECT_MAX: Duration = Duration::from_secs(1);

/// The Safe client for a whole run: one X509Source (which follows SVID
/// rotation in the background) and one TLS configuration built on it.
pub struct SafeClient {
    /// No attempt waits past this (`--timeout`).
    deadline: Option<Instant>,
    socket: String,
    url: http::Uri,
    attempt_timeout: Duration,
    max_body: u64,
    tls: Option<TlsConnector>,
    /// The Workload API connection, once synced: it holds the current SVID.
    source: Option<X509Source>,
    /// Whether the TLS material built from the source is usable, and at
    /// which source revision ([`Self::renewed_svid`]).
    tls_status: Option<spiffe_rustls::TlsStatus>,
    /// The material's revision when the last attempt started.
    material_seen: u64,
    /// The `notAfter` of the last SVID seen, Unix seconds (0: none yet).
    svid_not_after: AtomicU64,
    /// Workload API reconnects the source made, counted by [`Reconnects`].
    reconnects: Arc<Reconnects>,
    /// The server ID the authoriser last refused, and the rule it failed.
    refused: Arc<Mutex<Option<Refusal>>>,
    /// `VSECM_SPIFFEID_PREFIX_SAFE` and `VSECM_SPIFFEID_PREFIX_WORKLOAD`:
    /// the Safe's ID must pass both, as in VSecM.
    matchers: [SpiffeIdMatcher; 2],
}

impl SafeClient {
    #[must_use]
    pub fn new(config: &SafeConfig) -> Self {
        Self {
            deadline: None,
            socket: config.endpoint_socket.clone(),
            url: config.secrets_url.clone(),
            attempt_timeout: config.attempt_timeout,
            max_body: config.max_body_size,
            tls: None,
            source: None,
            tls_status: None,
            material_seen: 0,
            svid_not_after: AtomicU64::new(0),
            reconnects: Arc::new(Reconnects::default()),
            refused: Arc::new(Mutex::new(None)),
            matchers: [config.safe_id.clone(), config.workload_id.clone()],
        }
    }

    /// No attempt waits past `deadline` (the end of `--timeout`).
    #[must_use]
    pub const fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Makes one attempt; see [`Self::attempt_reporting`].
    pub async fn attempt(&mut self) -> Result<Secret, Failure> {
        self.attempt_reporting(&Silent).await
    }

    /// Makes one attempt, telling `progress` what it waits for while it
    /// waits. Getting the SVID, and then connect, handshake and response
    /// together, are each bounded by the attempt timeout and by the time
    /// left before the deadline.
    pub async fn attempt_reporting(&mut self, progress: &impl Waiting) -> Result<Secret, Failure> {
        let outcome = self.attempt_inner(progress).await;
        progress.clear_in_flight();
        outcome
    }

    async fn attempt_inner(&mut self, progress: &impl Waiting) -> Result<Secret, Failure> {
        let connector = self.connector(progress).await?;
        if let Some(status) = &self.tls_status {
            self.material_seen = status.current().applied_revision;
        }
        // Remember the current SVID's expiry while the source still has it.
        let _ = self.svid_expiry();
        let limit = self.limit();
        tokio::time::timeout(limit, self.fetch(&connector, progress))
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Timeout(
                    humantime::format_duration(limit).to_string(),
                ))
            })
    }

    /// The attempt timeout, or the time left before the deadline if less.
    fn limit(&self) -> Duration {
        let left = self.deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        self.attempt_timeout.min(left).max(Duration::from_millis(1))
    }

    /// The TLS connector, creating the X509Source on first use. A source
    /// that fails to sync is retried on the next attempt; once synced it is
    /// kept for the rest of the run.
    async fn connector(&mut self, progress: &impl Waiting) -> Result<TlsConnector, Failure> {
        if let Some(tls) = &self.tls {
            return Ok(tls.clone());
        }
        let unreachable = |detail: String| Failure::WorkloadApi {
            socket: self.socket.clone(),
            detail,
        };
        let started = Instant::now();
        let limit = self.limit();
        progress.set_in_flight(format!("the Workload API at {}", self.socket), "no SVID");
        if let Some(path) = socket_path(&self.socket) {
            match tokio::time::timeout(limit, check_socket(path)).await {
                Ok(Ok(())) => {}
                Ok(Err(detail)) => return Err(unreachable(detail)),
                Err(_) => {
                    return Err(unreachable(format!(
                        "stat({path}) did not return within {}",
                        humantime::format_duration(limit)
                    )))
                }
            }
        }
        let sync = limit
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        let source = X509Source::builder()
            .endpoint(&self.socket)
            .initial_sync_timeout(sync)
            .reconnect_backoff(RECONNECT_MIN, RECONNECT_MAX)
            .metrics(Arc::clone(&self.reconnects) as Arc<dyn MetricsRecorder>)
            .build()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if let Ok(svid) = source.svid() {
            tracing::info!(spiffe_id = %svid.spiffe_id(), "got an X.509 SVID from the Workload API");
        }
        self.source = Some(source.clone());
        let _ = self.svid_expiry();
        let matchers = self.matchers.clone();
        let refused = Arc::clone(&self.refused);
        let config = spiffe_rustls::mtls_client(source)
            .authorize(move |id: &spiffe::SpiffeId| {
                let text = id.to_string();
                let Some(failed) = matchers.iter().find(|m| !m.matches(&text)) else {
                    return true;
                };
                if let Ok(mut slot) = refused.lock() {
                    *slot = Some(Refusal {
                        presented: text,
                        variable: failed.variable,
                        rule: failed.describe(),
                    });
                }
                false
            })
            .build_with_status()
            .map_err(|e| Failure::Tls(e.to_string()))?;
        let (config, status) = config;
        self.material_seen = status.current().applied_revision;
        self.tls_status = Some(status);
        let tls = TlsConnector::from(Arc::new(config));
        self.tls = Some(tls.clone());
        Ok(tls)
    }

    async fn fetch(
        &self,
        connector: &TlsConnector,
        progress: &impl Waiting,
    ) -> Result<Secret, Failure> {
        let safe = format!("the Safe at {}", self.url);
        progress.set_in_flight(safe.clone(), "no TCP connection");
        let (host, port) = crate::http1::host_port(&self.url, 443);
        let tcp = crate::http1::connect(&host, port)
            .await
            .map_err(|e| Failure::Connect {
                url: format!("{host}:{port}"),
                detail: e.to_string(),
            })?;
        progress.set_in_flight(safe.clone(), "no TLS handshake");
        // The name only fills SNI: the Safe is authorised by SPIFFE ID.
        let name = ServerName::try_from(host.clone()).map_err(|_| Failure::Connect {
            url: host.clone(),
            detail: "host is neither a DNS name nor an IP address".into(),
        })?;
        *self.refused.lock().map_err(|_| Failure::Handshake {
            detail: "internal lock poisoned".into(),
        })? = None;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| self.handshake_failure(&e))?;

        progress.set_in_flight(safe, "no answer");
        let outcome = crate::http1::exchange(
            tls,
            http::Method::GET,
            &self.url,
            self.url.path(),
            |response| read_response(response, self.max_body, SystemTime::now()),
        )
        .await;
        match outcome {
            Ok(secret) => secret,
            Err(crate::http1::Error::Build(e)) => Err(Failure::BadBody(e.to_string())),
            Err(e) => Err(self.expired().unwrap_or_else(|| match e {
                crate::http1::Error::Handshake(e) => Failure::Handshake {
                    detail: e.to_string(),
                },
                other => Failure::Connect {
                    url: self.url.to_string(),
                    detail: other.to_string(),
                },
            })),
        }
    }

    /// When this pod's current SVID expires, once the Workload API has
    /// sent one.
    #[must_use]
    pub fn svid_expiry(&self) -> Option<SystemTime> {
        // The source stops handing out an SVID once it has expired, so the
        // last one seen is remembered (in whole seconds, as certificates
        // have them; 0: none yet).
        let current = self
            .source
            .as_ref()
            .and_then(X509Source::try_svid)
            .and_then(|svid| not_after(svid.leaf().as_ref()));
        if let Some(at) = current {
            let secs = at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.svid_not_after.store(secs, Ordering::Relaxed);
            return Some(at);
        }
        match self.svid_not_after.load(Ordering::Relaxed) {
            0 => None,
            secs => Some(std::time::UNIX_EPOCH + Duration::from_secs(secs)),
        }
    }

    /// Completes once the Workload API has delivered an SVID that TLS can
    /// use, newer than the one the last attempt started with: after a
    /// refusal of an expired SVID ([`Pace::AwaitSvid`]), the moment to ask
    /// again. It waits for the material that the TLS configuration built
    /// from the new SVID, not for the source's own notice, so the next
    /// handshake cannot race that rebuild. Never completes before the
    /// source exists.
    pub async fn renewed_svid(&mut self) {
        let seen = self.material_seen;
        let Some(status) = self.tls_status.as_mut() else {
            return std::future::pending().await;
        };
        loop {
            let now = status.current();
            if now.available && now.applied_revision > seen {
                return;
            }
            if status.changed().await.is_err() {
                // The source is gone for good: no new SVID will come.
                return std::future::pending().await;
            }
        }
    }

    /// How many times the Workload API stream was reconnected after the
    /// first sync (the spiffe crate's count).
    #[must_use]
    pub fn workload_api_reconnects(&self) -> u64 {
        self.reconnects.0.load(Ordering::Relaxed)
    }

    /// An expired SVID is the cause of any TLS failure it meets: the Safe
    /// refuses it, whatever the alert says (with TLS 1.3 the refusal may
    /// only arrive with the response).
    fn expired(&self) -> Option<Failure> {
        let at = self.svid_expiry().filter(|at| *at <= SystemTime::now())?;
        Some(Failure::SvidExpired {
            at: humantime::format_rfc3339_seconds(at).to_string(),
            socket: self.socket.clone(),
        })
    }

    fn handshake_failure(&self, err: &std::io::Error) -> Failure {
        let refused = self.refused.lock().ok().and_then(|mut s| s.take());
        if let Some(refusal) = refused {
            return Failure::WrongSafeId(refusal);
        }
        if let Some(expired) = self.expired() {
            return expired;
        }
        let detail = err.to_string();
        let rustls_err = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        match rustls_err {
            Some(e) if is_untrusted(e) => Failure::UntrustedSafe { detail },
            Some(rustls::Error::AlertReceived(alert)) => Failure::Handshake {
                detail: format!(
                    "the Safe refused this pod's client certificate (TLS alert {alert:?}); \
                     is the SVID a VSecM workload ID?"
                ),
            },
            _ => Failure::Handshake { detail },
        }
    }
}

/// What one Safe response means: the status (with `Retry-After` on a 503
/// or 429, read at `now`), then a 200's body, read up to `max_body` bytes
/// and parsed as VSecM's JSON. Errors carry positions, never the body.
/// Public so the fuzz harness (`fuzz-props/`) drives this very code.
pub async fn read_response<B>(
    response: http::Response<B>,
    max_body: u64,
    now: SystemTime,
) -> Result<Secret, Failure>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let status = response.status().as_u16();
    let retry_after = || {
        response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now))
    };
    let failure = match status {
        200 => None,
        404 => Some(Failure::NotRegistered),
        400 => Some(Failure::BadRequest),
        503 => Some(Failure::Unavailable {
            retry_after: retry_after(),
        }),
        429 => Some(Failure::TooManyRequests {
            retry_after: retry_after(),
        }),
        other => Some(Failure::Status(other)),
    };
    if let Some(f) = failure {
        return Err(f);
    }
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let body = match Limited::new(response.into_body(), limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Failure::TooLarge(max_body))
        }
        Err(e) => return Err(Failure::Read(e.to_string())),
    };
    match serde_json::from_slice::<SecretResponse>(&body) {
        Ok(SecretResponse { data: Some(data) }) if !data.is_empty() => Ok(Secret::new(data)),
        Ok(_) => Err(Failure::Empty),
        // Position only: the body holds the secret.
        Err(e) => Err(Failure::BadBody(format!(
            "not JSON with a data field, at line {} column {}",
            e.line(),
            e.column()
        ))),
    }
}

/// Counts the X509Source's reconnects to the Workload API.
#[derive(Default)]
struct Reconnects(AtomicU64);

impl MetricsRecorder for Reconnects {
    fn record_update(&self) {}

    fn record_reconnect(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn record_error(&self, _: MetricsErrorKind) {}
}

/// A certificate's `notAfter`, from its DER.
fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Whether a handshake failed because the Safe's certificate is not
/// signed by the trust bundle: rustls found no path to a root, or the
/// Workload API gave no bundle for the Safe's trust domain at all.
fn is_untrusted(err: &rustls::Error) -> bool {
    use rustls::CertificateError;
    match err {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => true,
        rustls::Error::InvalidCertificate(CertificateError::Other(other))
        | rustls::Error::Other(other) => matches!(
            other.0.downcast_ref::<spiffe_rustls::Error>(),
            Some(spiffe_rustls::Error::NoBundle(_))
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{check_socket, is_untrusted, parse_retry_after, Failure};
    use crate::safe::schedule::Pace;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn an_untrusted_safe_is_known_by_type() {
        use rustls::{CertificateError, Error, OtherError};
        let no_bundle = || {
            let domain = spiffe::TrustDomain::new("elsewhere.test").unwrap();
            OtherError(Arc::new(spiffe_rustls::Error::NoBundle(domain)))
        };
        let unrelated = || OtherError(Arc::new(spiffe_rustls::Error::SourceClosed));
        let table = [
            (
                Error::InvalidCertificate(CertificateError::UnknownIssuer),
                true,
            ),
            (
                Error::InvalidCertificate(CertificateError::Other(no_bundle())),
                true,
            ),
            (Error::Other(no_bundle()), true),
            (Error::InvalidCertificate(CertificateError::Expired), false),
            (Error::Other(unrelated()), false),
            (
                Error::AlertReceived(rustls::AlertDescription::UnknownCA),
                false,
            ),
        ];
        for (error, untrusted) in table {
            assert_eq!(is_untrusted(&error), untrusted, "{error:?}");
        }
    }

    #[test]
    fn an_svids_not_after_is_read_from_its_der() {
        let at = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let mut params = rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap();
        params.not_after = at.into();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(super::not_after(cert.der()), Some(at));
        assert_eq!(super::not_after(b"not a certificate"), None);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let table = [
            ("7", Some(7)),
            (" 120 ", Some(120)),
            ("Sun, 06 Nov 1994 08:49:47 GMT", Some(10)),
            ("Sun, 06 Nov 1994 08:49:00 GMT", Some(0)),
            ("soon", None),
            ("-1", None),
        ];
        for (value, want) in table {
            assert_eq!(
                parse_retry_after(value, now),
                want.map(Duration::from_secs),
                "{value}"
            );
        }
        assert!(parse_retry_after("1", SystemTime::now()).is_some());
    }

    #[test]
    fn only_a_normal_answer_with_nothing_for_us_is_not_yet() {
        let later = Some(Duration::from_secs(3));
        let table = [
            (Failure::NotRegistered, Pace::NotYet),
            (Failure::Empty, Pace::NotYet),
            (Failure::BadRequest, Pace::Broken),
            (Failure::Unavailable { retry_after: None }, Pace::Booting),
            (
                Failure::Unavailable { retry_after: later },
                Pace::RetryAfter(Duration::from_secs(3)),
            ),
            (
                Failure::TooManyRequests { retry_after: later },
                Pace::RetryAfter(Duration::from_secs(3)),
            ),
            (Failure::Status(500), Pace::Broken),
            (
                Failure::SvidExpired {
                    at: "2026-01-01T00:00:00Z".into(),
                    socket: "unix:///x.sock".into(),
                },
                Pace::AwaitSvid,
            ),
            (Failure::Timeout("5s".into()), Pace::Broken),
            (Failure::BadBody("x".into()), Pace::Broken),
        ];
        for (failure, pace) in table {
            assert_eq!(failure.pace(), pace, "{failure:?}");
        }
    }

    #[tokio::test]
    async fn a_missing_path_or_a_non_socket_is_known_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.sock");
        std::fs::write(&file, b"").unwrap();
        let file = file.to_str().unwrap();
        let err = check_socket(file).await.unwrap_err();
        assert!(
            err.contains("is not a socket (it is a regular file)"),
            "{err}"
        );
        let err = check_socket(dir.path().to_str().unwrap())
            .await
            .unwrap_err();
        assert!(err.contains("is not a socket (it is a directory)"), "{err}");
        let missing = dir.path().join("none.sock");
        let err = check_socket(missing.to_str().unwrap()).await.unwrap_err();
        assert!(
            err.starts_with("no socket at ") && err.contains("no such file"),
            "{err}"
        );
        let sock = dir.path().join("real.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        check_socket(sock.to_str().unwrap()).await.unwrap();
    }
}

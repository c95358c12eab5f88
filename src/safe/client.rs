//! One attempt against VSecM Safe: SVID from the Workload API, mTLS with
//! the Safe authorised by SPIFFE ID, `GET /workload/v1/secrets`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use spiffe::X509Source;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::SafeConfig;
use crate::safe::SafeIdMatcher;

/// What one attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with a non-empty `data` field.
    Secret(Secret),
    /// A normal "not yet" (404, 400, 503), or an error worth retrying. Each
    /// is a distinct condition, logged once and named in the diagnosis.
    Failed(Failure),
}

/// A secret value. Its `Debug` is redacted, so a stray `{:?}` cannot leak it.
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

/// Why an attempt did not yield a secret. Never carries a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("Workload API not reachable at {socket}: {detail}")]
    WorkloadApi { socket: String, detail: String },
    #[error("cannot connect to the Safe at {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error(
        "Safe rejected: server presented {presented} which does not match {variable} ({rule})"
    )]
    WrongSafeId {
        presented: String,
        variable: &'static str,
        rule: String,
    },
    #[error("cannot use this pod's SVID for TLS: {0}")]
    Tls(String),
    #[error("Safe's certificate is not signed by the trust bundle from the Workload API ({detail}); is VSECM_SAFE_ENDPOINT_URL pointing at the right server?")]
    UntrustedSafe { detail: String },
    #[error("TLS handshake with the Safe failed: {detail}")]
    Handshake { detail: String },
    #[error("no answer from the Safe within the attempt timeout ({0}); raise --attempt-timeout if the Safe is just slow")]
    Timeout(String),
    #[error("no secret registered for this workload yet (Safe answered 404)")]
    NotRegistered,
    #[error("Safe answered 400: its root key may not be set yet, or it found no workload name in this pod's SVID")]
    BadRequest,
    #[error("Safe's backing store is not ready (Safe answered 503)")]
    Unavailable,
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

impl Failure {
    /// A stable name for the condition, so each is logged once.
    #[must_use]
    pub fn class(&self) -> &'static str {
        match self {
            Self::WorkloadApi { .. } => "workload-api",
            Self::Connect { .. } => "connect",
            Self::WrongSafeId { .. } => "wrong-safe-id",
            Self::Tls(_) => "tls",
            Self::Read(_) => "read",
            Self::UntrustedSafe { .. } => "untrusted-safe",
            Self::Handshake { .. } => "handshake",
            Self::Timeout(_) => "timeout",
            Self::NotRegistered => "404",
            Self::BadRequest => "400",
            Self::Unavailable => "503",
            Self::Status(_) => "status",
            Self::TooLarge(_) => "too-large",
            Self::BadBody(_) => "bad-body",
            Self::Empty => "empty",
        }
    }

    /// The normal states of a Safe that has no secret for us yet, as
    /// opposed to errors that someone may need to fix.
    #[must_use]
    pub const fn is_not_yet(&self) -> bool {
        matches!(
            self,
            Self::NotRegistered | Self::BadRequest | Self::Unavailable | Self::Empty
        )
    }
}

/// Says why the Workload API could not be used, naming a missing socket.
fn explain_source_error(socket: &str, err: &spiffe::X509SourceError) -> String {
    if let Some(path) = socket
        .strip_prefix("unix://")
        .or_else(|| socket.strip_prefix("unix:"))
    {
        if !std::path::Path::new(path).exists() {
            return format!(
                "no socket at {path} (is the SPIFFE CSI driver volume mounted, and SPIFFE_ENDPOINT_SOCKET right?)"
            );
        }
    }
    err.to_string()
}

/// VSecM's 200 body. `created`/`updated` hold quoted RFC 3339 strings (a
/// VSecM quirk); they are accepted and not needed.
#[derive(Deserialize)]
struct SecretResponse {
    data: Option<String>,
}

/// A server ID the authoriser refused: (ID, variable, rule).
type Refusal = (String, &'static str, String);

/// The Safe client for a whole run: one X509Source (which follows SVID
/// rotation in the background) and one TLS configuration built on it.
pub struct SafeClient {
    socket: String,
    url: http::Uri,
    attempt_timeout: Duration,
    max_body: u64,
    tls: Option<TlsConnector>,
    /// The server ID the authoriser last refused, and the rule it failed.
    refused: Arc<Mutex<Option<Refusal>>>,
    /// `VSECM_SPIFFEID_PREFIX_SAFE` and `VSECM_SPIFFEID_PREFIX_WORKLOAD`:
    /// the Safe's ID must pass both, as in VSecM.
    matchers: [SafeIdMatcher; 2],
}

impl SafeClient {
    #[must_use]
    pub fn new(config: &SafeConfig) -> Self {
        Self {
            socket: config.endpoint_socket.clone(),
            url: config.secrets_url.clone(),
            attempt_timeout: config.attempt_timeout,
            max_body: config.max_body_size,
            tls: None,
            refused: Arc::new(Mutex::new(None)),
            matchers: [config.safe_id.clone(), config.workload_id.clone()],
        }
    }

    /// Makes one attempt. Getting the SVID is bounded by the Workload
    /// API's own sync timeout; connect, handshake and response together by
    /// the attempt timeout.
    pub async fn attempt(&mut self) -> Outcome {
        let connector = match self.connector().await {
            Ok(c) => c,
            Err(f) => return Outcome::Failed(f),
        };
        let limit = self.attempt_timeout;
        match tokio::time::timeout(limit, self.fetch(&connector)).await {
            Ok(Ok(outcome) | Err(outcome)) => outcome,
            Err(_) => Outcome::Failed(Failure::Timeout(
                humantime::format_duration(limit).to_string(),
            )),
        }
    }

    /// The TLS connector, creating the X509Source on first use. A source
    /// that fails to sync is retried on the next attempt; once synced it is
    /// kept for the rest of the run.
    async fn connector(&mut self) -> Result<TlsConnector, Failure> {
        if let Some(tls) = &self.tls {
            return Ok(tls.clone());
        }
        let unreachable = |detail: String| Failure::WorkloadApi {
            socket: self.socket.clone(),
            detail,
        };
        let source = X509Source::builder()
            .endpoint(&self.socket)
            .initial_sync_timeout(self.attempt_timeout)
            .build()
            .await
            .map_err(|e| unreachable(explain_source_error(&self.socket, &e)))?;
        if let Ok(svid) = source.svid() {
            tracing::info!(spiffe_id = %svid.spiffe_id(), "got an X.509 SVID from the Workload API");
        }
        let matchers = self.matchers.clone();
        let refused = Arc::clone(&self.refused);
        let config = spiffe_rustls::mtls_client(source)
            .authorize(move |id: &spiffe::SpiffeId| {
                let text = id.to_string();
                let Some(failed) = matchers.iter().find(|m| !m.matches(&text)) else {
                    return true;
                };
                if let Ok(mut slot) = refused.lock() {
                    *slot = Some((text, failed.variable, failed.describe()));
                }
                false
            })
            .build()
            .map_err(|e| Failure::Tls(e.to_string()))?;
        let tls = TlsConnector::from(Arc::new(config));
        self.tls = Some(tls.clone());
        Ok(tls)
    }

    async fn fetch(&self, connector: &TlsConnector) -> Result<Outcome, Outcome> {
        let fail = |f: Failure| Outcome::Failed(f);
        let host = self
            .url
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let port = self.url.port_u16().unwrap_or(443);
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| {
                fail(Failure::Connect {
                    url: format!("{host}:{port}"),
                    detail: e.to_string(),
                })
            })?;
        let _ = tcp.set_nodelay(true);
        // The name only fills SNI: the Safe is authorised by SPIFFE ID.
        let name = ServerName::try_from(host.clone()).map_err(|_| {
            fail(Failure::Connect {
                url: host.clone(),
                detail: "host is neither a DNS name nor an IP address".into(),
            })
        })?;
        *self.refused.lock().map_err(|_| {
            fail(Failure::Handshake {
                detail: "internal lock poisoned".into(),
            })
        })? = None;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| fail(self.handshake_failure(&e)))?;

        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| {
                fail(Failure::Handshake {
                    detail: e.to_string(),
                })
            })?;
        let driver = tokio::spawn(conn);
        let authority = self
            .url
            .authority()
            .map(ToString::to_string)
            .unwrap_or_default();
        let request = http::Request::get(self.url.path())
            .header(http::header::HOST, authority)
            .header(
                http::header::USER_AGENT,
                concat!("secret-gate/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(Failure::BadBody(e.to_string())))?;
        let response = sender.send_request(request).await.map_err(|e| {
            fail(Failure::Connect {
                url: self.url.to_string(),
                detail: e.to_string(),
            })
        });
        let outcome = match response {
            Ok(response) => self.read(response).await,
            Err(outcome) => outcome,
        };
        driver.abort();
        Ok(outcome)
    }

    async fn read(&self, response: http::Response<hyper::body::Incoming>) -> Outcome {
        let status = response.status().as_u16();
        let failure = match status {
            200 => None,
            404 => Some(Failure::NotRegistered),
            400 => Some(Failure::BadRequest),
            503 => Some(Failure::Unavailable),
            other => Some(Failure::Status(other)),
        };
        if let Some(f) = failure {
            return Outcome::Failed(f);
        }
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        let body = match Limited::new(response.into_body(), limit).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Outcome::Failed(Failure::TooLarge(self.max_body))
            }
            Err(e) => return Outcome::Failed(Failure::Read(e.to_string())),
        };
        match serde_json::from_slice::<SecretResponse>(&body) {
            Ok(SecretResponse { data: Some(data) }) if !data.is_empty() => {
                Outcome::Secret(Secret::new(data))
            }
            Ok(_) => Outcome::Failed(Failure::Empty),
            // Position only: the body holds the secret.
            Err(e) => Outcome::Failed(Failure::BadBody(format!(
                "not JSON with a data field, at line {} column {}",
                e.line(),
                e.column()
            ))),
        }
    }

    fn handshake_failure(&self, err: &std::io::Error) -> Failure {
        let refused = self.refused.lock().ok().and_then(|mut s| s.take());
        if let Some((presented, variable, rule)) = refused {
            return Failure::WrongSafeId {
                presented,
                variable,
                rule,
            };
        }
        let detail = err.to_string();
        let rustls_err = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        match rustls_err {
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature,
            )) => Failure::UntrustedSafe { detail },
            Some(rustls::Error::InvalidCertificate(other))
                if format!("{other:?}").contains("UnknownIssuer") =>
            {
                Failure::UntrustedSafe { detail }
            }
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

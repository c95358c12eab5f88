//! The fake VSecM Safe: HTTPS (HTTP/1.1 over rustls) on 127.0.0.1 that
//! accepts only mTLS clients holding a workload SVID from the fake's CA.
//!
//! It answers like VSecM Safe's `GET /workload/v1/secrets`:
//!
//! | situation | status | body |
//! |---|---|---|
//! | registered | 200 | `{"data":"<value>","created":"\"<RFC 3339>\"","updated":"\"<RFC 3339>\""}` |
//! | not registered | 404 | empty |
//! | any other method or path | 400 | empty |
//! | `serve --unavailable-for D`, during the first D | 503 | `NOK!` |
//! | fault status 503 | 503 | `NOK!` |
//! | any other fault status | that status | empty |
//! | fault oversize N | 200 | N bytes |
//! | unreadable state | 500 | empty |
//!
//! With `serve --retry-after V`, every 503 and 429 carries `Retry-After: V`
//! (VSecM itself sends none). No Content-Type is set, as VSecM sets none. A client whose URI SAN is
//! not a workload ID of the trust domain is refused during the handshake.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use regex::Regex;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use secret_gate::spiffe_id::workload_id_pattern;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::certs::Pki;
use super::state::{check_workload_name, StateDir, StateError};

/// The only route, as VSecM Safe serves it to workloads.
pub const SECRETS_PATH: &str = "/workload/v1/secrets";

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `VSECM_SPIFFEID_PREFIX_WORKLOAD` for `trust_domain`: which client IDs count
/// as workloads, by secret-gate's own copy of VSecM's rule.
pub(crate) fn workload_id_regex(trust_domain: &str) -> Result<Regex, regex::Error> {
    Regex::new(&workload_id_pattern(trust_domain))
}

/// `VSECM_WORKLOAD_NAME_REGEXP` for `trust_domain`: group 1 is the name.
pub(crate) fn workload_name_regex(trust_domain: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!(
        "^spiffe://{}/workload/([^/]+)/ns/[^/]+/sa/[^/]+/n/[^/]+$",
        regex::escape(trust_domain)
    ))
}

/// Checks the client chain against the CA, then refuses any client whose
/// SPIFFE ID is not a workload ID, during the handshake as VSecM does.
#[derive(Debug)]
struct WorkloadClientVerifier {
    chain: Arc<dyn ClientCertVerifier>,
    workload_id: Regex,
}

impl ClientCertVerifier for WorkloadClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)?;
        let denied = rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        );
        match spiffe::cert::spiffe_id_from_der(end_entity) {
            Ok(id) if self.workload_id.is_match(&id.to_string()) => Ok(verified),
            Ok(id) => {
                tracing::warn!(client = %id, "Safe: refused a client whose SPIFFE ID is not a workload ID");
                Err(denied)
            }
            Err(error) => {
                tracing::warn!(%error, "Safe: refused a client certificate without one SPIFFE ID");
                Err(denied)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// The server TLS setup: the Safe's certificate, and mandatory client
/// certificates that chain to the fake's CA and carry a workload ID.
pub(crate) fn tls_acceptor(pki: &Pki, trust_domain: &str) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone())?;
    let chain =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let verifier = WorkloadClientVerifier {
        chain,
        workload_id: workload_id_regex(trust_domain)?,
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![pki.safe.cert.clone()], pki.safe.rustls_key())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A Safe that is still booting: 503 until `unavailable_until`, and the
/// `Retry-After` it sends with a 503 or 429.
#[derive(Debug, Clone, Default)]
pub(crate) struct Boot {
    pub unavailable_until: Option<tokio::time::Instant>,
    pub retry_after: Option<String>,
}

/// The request handler's view: where the state is and how to name callers.
pub(crate) struct Safe {
    state: StateDir,
    workload_name: Regex,
    boot: Boot,
}

impl Safe {
    pub fn new(state: StateDir, trust_domain: &str) -> Result<Self, regex::Error> {
        Ok(Self {
            state,
            workload_name: workload_name_regex(trust_domain)?,
            boot: Boot::default(),
        })
    }

    pub fn with_boot(mut self, boot: Boot) -> Self {
        self.boot = boot;
        self
    }

    /// The workload name in a client certificate's SPIFFE ID, if any.
    fn workload_of(&self, cert: &CertificateDer<'_>) -> Option<String> {
        let id = spiffe::cert::spiffe_id_from_der(cert).ok()?.to_string();
        let name = self
            .workload_name
            .captures(&id)?
            .get(1)?
            .as_str()
            .to_owned();
        Some(name)
    }

    /// Answers one request and records it in `requests.log`.
    async fn answer(
        &self,
        req: &Request<Incoming>,
        workload: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let arrived = SystemTime::now();
        let (status, body) = self.decide(req, workload).await;
        let state = self.state.clone();
        let logged =
            tokio::task::spawn_blocking(move || state.log_request(arrived, status.as_u16())).await;
        match logged {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot record the request"),
            Err(error) => tracing::warn!(%error, "cannot record the request"),
        }
        tracing::info!(
            workload = %workload.unwrap_or("-"),
            method = %req.method(),
            path = %req.uri().path(),
            status = status.as_u16(),
            "Safe request"
        );
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        if matches!(status.as_u16(), 503 | 429) {
            if let Some(value) = self
                .boot
                .retry_after
                .as_deref()
                .and_then(|v| hyper::header::HeaderValue::from_str(v).ok())
            {
                response
                    .headers_mut()
                    .insert(hyper::header::RETRY_AFTER, value);
            }
        }
        response
    }

    async fn decide(&self, req: &Request<Incoming>, workload: Option<&str>) -> (StatusCode, Bytes) {
        let faults = match self.blocking(StateDir::read_faults).await {
            Ok(faults) => faults,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "answering 500");
                return (StatusCode::INTERNAL_SERVER_ERROR, Bytes::new());
            }
        };
        if let Some(delay) = faults.delay {
            tokio::time::sleep(delay).await;
        }
        if req.method() != Method::GET || req.uri().path() != SECRETS_PATH {
            return (StatusCode::BAD_REQUEST, Bytes::new());
        }
        if self
            .boot
            .unavailable_until
            .is_some_and(|until| tokio::time::Instant::now() < until)
        {
            return (StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(b"NOK!"));
        }
        let Some(workload) = workload else {
            // Unreachable through the handshake check; VSecM answers 400.
            return (StatusCode::BAD_REQUEST, Bytes::new());
        };
        if let Some(status) = faults.status {
            return match StatusCode::from_u16(status) {
                Ok(StatusCode::SERVICE_UNAVAILABLE) => {
                    (StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(b"NOK!"))
                }
                Ok(code) if (200..=599).contains(&status) => (code, Bytes::new()),
                _ => {
                    tracing::error!(
                        status,
                        "faults.json asks for a status outside 200..=599; answering 500"
                    );
                    (StatusCode::INTERNAL_SERVER_ERROR, Bytes::new())
                }
            };
        }
        if let Some(size) = faults.oversize {
            return (StatusCode::OK, oversize_body(size));
        }
        if check_workload_name(workload).is_err() {
            // A name that cannot be registered is never registered.
            return (StatusCode::NOT_FOUND, Bytes::new());
        }
        let name = workload.to_owned();
        match self
            .blocking(move |state| state.read_registration(&name))
            .await
        {
            Ok(Some(registration)) => {
                let stamp = format!(
                    "\"{}\"",
                    humantime::format_rfc3339_seconds(registration.registered)
                );
                let body = SecretBody {
                    data: &registration.value,
                    created: &stamp,
                    updated: &stamp,
                };
                match serde_json::to_vec(&body) {
                    Ok(json) => (StatusCode::OK, Bytes::from(json)),
                    Err(error) => {
                        tracing::error!(%error, "cannot encode the answer; answering 500");
                        (StatusCode::INTERNAL_SERVER_ERROR, Bytes::new())
                    }
                }
            }
            Ok(None) => (StatusCode::NOT_FOUND, Bytes::new()),
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "answering 500");
                (StatusCode::INTERNAL_SERVER_ERROR, Bytes::new())
            }
        }
    }

    /// Runs a state-file operation off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&StateDir) -> Result<T, StateError> + Send + 'static,
    ) -> anyhow::Result<T> {
        let state = self.state.clone();
        Ok(tokio::task::spawn_blocking(move || op(&state)).await??)
    }
}

/// VSecM's answer body; field order as VSecM writes it.
#[derive(Serialize)]
struct SecretBody<'a> {
    data: &'a str,
    created: &'a str,
    updated: &'a str,
}

/// Exactly `size` bytes: `{"data":"xxx…"}`, or plain padding when `size`
/// is below the 11 bytes of `{"data":""}`.
fn oversize_body(size: usize) -> Bytes {
    const HEAD: &[u8] = b"{\"data\":\"";
    const TAIL: &[u8] = b"\"}";
    if size < HEAD.len() + TAIL.len() {
        return Bytes::from(vec![b'x'; size]);
    }
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(HEAD);
    body.resize(size - TAIL.len(), b'x');
    body.extend_from_slice(TAIL);
    Bytes::from(body)
}

/// Accepts connections until `shutdown` turns true, then drops the open ones.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    safe: Arc<Safe>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let stop = async {
            // Hold no watch guard across an await: that would make this !Send.
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        tokio::select! {
            () = stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // As Go's net/http does: no Nagle delay on small replies.
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(connection(tcp, peer, acceptor.clone(), Arc::clone(&safe)));
                }
                Err(error) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "Safe: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn connection(tcp: TcpStream, peer: SocketAddr, acceptor: TlsAcceptor, safe: Arc<Safe>) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::info!(%peer, %error, "Safe: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "Safe: TLS handshake timed out");
            return;
        }
    };
    let workload: Option<Arc<str>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| safe.workload_of(leaf))
        .map(Arc::from);
    let service = service_fn(move |req: Request<Incoming>| {
        let safe = Arc::clone(&safe);
        let workload = workload.clone();
        async move { Ok::<_, Infallible>(safe.answer(&req, workload.as_deref()).await) }
    });
    if let Err(error) = http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%peer, %error, "Safe: connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn oversize_bodies_have_the_exact_size() {
        for size in [0, 1, 10, 11, 12, 4096] {
            let body = oversize_body(size);
            assert_eq!(body.len(), size);
            if size >= 11 {
                let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(value["data"].as_str().unwrap().len(), size - 11);
            }
        }
    }

    #[test]
    fn workload_regexes() {
        let ids = workload_id_regex("vsecm.com").unwrap();
        let names = workload_name_regex("vsecm.com").unwrap();
        let table = [
            (
                "spiffe://vsecm.com/workload/example/ns/default/sa/example/n/pod-1",
                Some("example"),
            ),
            (
                "spiffe://vsecm.com/workload/evil/ns/default/sa/evil/n/evil-0",
                Some("evil"),
            ),
            (
                "spiffe://vsecm.com/other/example/ns/default/sa/example/n/pod-1",
                None,
            ),
            (
                "spiffe://vsecmXcom/workload/example/ns/default/sa/example/n/pod-1",
                None,
            ),
            (
                "spiffe://vsecm.com/workload/example/ns/default/sa/example/n/pod-1/x",
                None,
            ),
        ];
        for (id, name) in table {
            assert_eq!(ids.is_match(id), name.is_some(), "{id}");
            assert_eq!(
                names
                    .captures(id)
                    .and_then(|c| c.get(1))
                    .map(|m| m.as_str()),
                name,
                "{id}"
            );
        }
    }

    #[test]
    fn secret_body_has_vsecm_shape() {
        let body = SecretBody {
            data: "v\"1",
            created: "\"2024-10-18T14:07:13Z\"",
            updated: "\"2024-10-18T14:07:13Z\"",
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"data":"v\"1","created":"\"2024-10-18T14:07:13Z\"","updated":"\"2024-10-18T14:07:13Z\""}"#
        );
    }
}

//! Helpers for the webhook tests (and the webhook benchmark): test
//! certificates from rcgen, a kubelet-style Secret volume, the real
//! `secret-gate-injector webhook` process, and a real HTTPS client
//! (tokio-rustls + hyper) that trusts the test CA.
//!
//! Every wait is bounded; nothing here asserts speed.
#![allow(dead_code)] // each test uses a part of these helpers
#![expect(
    clippy::expect_used,
    reason = "test fixtures: a fixture that cannot be made fails the calling test"
)]
#![allow(
    clippy::missing_panics_doc,
    reason = "shared by several test crates, not all of which use the helpers that panic"
)]

use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

pub use crate::bounded::{Gate, Running};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_secret-gate-injector");

/// Polls `condition` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Now plus `secs` (negative for the past).
fn from_now(secs: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::seconds(secs)
}

/// A test CA and the serving certificates it issues for the webhook's
/// Service names and 127.0.0.1.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// One serving certificate and key, in PEM, with the leaf's DER.
#[derive(Clone)]
pub struct Serving {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    #[must_use]
    pub fn new() -> Self {
        let mut p = CertificateParams::default();
        p.distinguished_name
            .push(DnType::CommonName, "secret-gate-injector test CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_before = from_now(-3600);
        p.not_after = from_now(10 * 365 * 86_400);
        let key = KeyPair::generate().expect("CA key");
        Self {
            ca: CertifiedIssuer::self_signed(p, key).expect("CA"),
        }
    }

    /// A serving certificate valid from `from` to `until` seconds from now.
    #[must_use]
    pub fn serving(&self, from: i64, until: i64) -> Serving {
        let mut p = CertificateParams::new(vec![
            "secret-gate-injector.secret-gate-system.svc".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("params");
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        p.distinguished_name
            .push(DnType::CommonName, "secret-gate-injector");
        p.is_ca = IsCa::ExplicitNoCa;
        p.not_before = from_now(from);
        p.not_after = from_now(until);
        let key = KeyPair::generate().expect("leaf key");
        let cert = p.signed_by(&key, &self.ca).expect("leaf");
        Serving {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A serving certificate valid for 90 days.
    #[must_use]
    pub fn valid(&self) -> Serving {
        self.serving(-60, 90 * 86_400)
    }

    /// A client configuration that trusts this CA (and offers HTTP/1.1).
    #[must_use]
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca.der().to_vec()))
            .expect("CA root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// A directory laid out as the kubelet lays out a Secret volume:
/// `..<ts>/tls.crt`, `..<ts>/tls.key`, `..data -> ..<ts>`, and
/// `tls.crt -> ..data/tls.crt`, `tls.key -> ..data/tls.key`. Each
/// [`Self::swap`] is one atomic `..data` rename, as the kubelet does on
/// a rotation.
pub struct SecretVolume {
    pub dir: PathBuf,
    generation: u32,
}

impl SecretVolume {
    #[must_use]
    pub fn new(dir: &Path, first: &Serving) -> Self {
        let mut volume = Self {
            dir: dir.to_path_buf(),
            generation: 0,
        };
        volume.swap(&first.cert_pem, &first.key_pem);
        symlink("..data/tls.crt", dir.join("tls.crt")).expect("tls.crt link");
        symlink("..data/tls.key", dir.join("tls.key")).expect("tls.key link");
        volume
    }

    #[must_use]
    pub fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    #[must_use]
    pub fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }

    /// Swaps in new content: a new timestamped directory, `..data_tmp`
    /// pointed at it, renamed over `..data`, the old directory removed.
    pub fn swap(&mut self, cert_pem: &str, key_pem: &str) {
        self.generation += 1;
        let name = format!("..2026_12_03_09_00_00.{:04}", self.generation);
        let fresh = self.dir.join(&name);
        std::fs::create_dir_all(&fresh).expect("timestamped dir");
        std::fs::write(fresh.join("tls.crt"), cert_pem).expect("tls.crt");
        std::fs::write(fresh.join("tls.key"), key_pem).expect("tls.key");
        let data = self.dir.join("..data");
        let old = std::fs::read_link(&data).ok();
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(&name, &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, &data).expect("..data swap");
        if let Some(old) = old {
            let _ = std::fs::remove_dir_all(self.dir.join(old));
        }
    }
}

/// A running webhook and where it listens.
pub struct Webhook {
    pub process: Running,
    pub addr: SocketAddr,
    pub termination_log: PathBuf,
}

/// Starts `secret-gate-injector webhook` on 127.0.0.1:0 with `extra`
/// arguments and waits (bounded) until it logs its address.
#[must_use]
pub fn start(volume: &SecretVolume, extra: &[&str]) -> Webhook {
    let termination_log = volume.dir.with_extension("termination-log");
    let mut process = Gate::program(BIN)
        .shown_as("secret-gate-injector")
        .env_remove("RUST_LOG")
        .arg("webhook")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(volume.cert())
        .arg("--tls-key")
        .arg(volume.key())
        .arg("--termination-log")
        .arg(&termination_log)
        .args(extra)
        .spawn();
    process.expect_stderr("listening on ");
    let stderr = process.stderr();
    let addr = stderr
        .split("listening on ")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect::<String>()
        })
        .and_then(|a| a.trim_end_matches(':').parse().ok())
        .unwrap_or_else(|| panic!("no address in the log\n{}", process.dump()));
    Webhook {
        process,
        addr,
        termination_log,
    }
}

/// An answer: status, body, and the leaf certificate the server showed.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    pub peer_cert: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`Value::Null` if it is not).
    #[must_use]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTPS connection, kept alive across requests.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    pub peer_cert: Vec<u8>,
    addr: SocketAddr,
}

/// How long one connection or request may take before the test fails.
pub const IO_LIMIT: Duration = Duration::from_secs(20);

impl Client {
    /// Connects and handshakes (TLS, then HTTP/1.1).
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Self> {
        let tcp = tokio::time::timeout(IO_LIMIT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        let connector = tokio_rustls::TlsConnector::from(config);
        let name = ServerName::try_from("secret-gate-injector.secret-gate-system.svc")
            .expect("server name");
        let tls = tokio::time::timeout(IO_LIMIT, connector.connect(name, tcp))
            .await
            .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
        let peer_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            peer_cert,
            addr,
        })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> std::io::Result<Answer> {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(std::io::Error::other)?;
        let work = async {
            self.sender.ready().await.map_err(std::io::Error::other)?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(std::io::Error::other)?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            Ok::<_, std::io::Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(IO_LIMIT, work)
            .await
            .map_err(|_| std::io::Error::other("request timed out"))??;
        Ok(Answer {
            status,
            body,
            peer_cert: self.peer_cert.clone(),
        })
    }

    /// `POST /mutate` with `review`.
    pub async fn review(&mut self, review: &Value) -> std::io::Result<Answer> {
        let body = serde_json::to_vec(review).map_err(std::io::Error::other)?;
        self.send("POST", "/mutate", body).await
    }
}

/// One request on a fresh connection.
pub async fn once(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> std::io::Result<Answer> {
    Client::connect(addr, config)
        .await?
        .send(method, path, body)
        .await
}

/// An `AdmissionReview` for a Pod CREATE.
#[must_use]
pub fn pod_review(uid: &str, namespace: &str, pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    })
}

/// Applies the response's base64 JSON patch (if any) to `pod`.
#[must_use]
pub fn patched(pod: &Value, answer: &Value) -> Value {
    use base64::Engine as _;
    let mut out = pod.clone();
    if let Some(patch) = answer["response"]["patch"].as_str() {
        assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("base64 patch");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON patch");
        json_patch::patch(&mut out, &patch).expect("the patch applies");
    }
    out
}

/// The value of one metric line (`name{labels} value`) in `/metrics`.
#[must_use]
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        (key == name).then(|| value.parse().ok()).flatten()
    })
}

//! The webhook's serving certificate: loaded at start, checked with the
//! gate's own PEM, validity and key-pair checks, and swapped in place
//! when the files change on disk.
//!
//! - [`load`] reads `--tls-cert` and `--tls-key` (regular files only, at
//!   most [`MAX_PEM_BYTES`] each, opened without blocking, so a FIFO
//!   cannot hang it) and accepts the pair only if
//!   [`secret_gate::check::pem::parse_bundle`] parses both and
//!   [`secret_gate::check::tls::check`] finds no problem: no expired or
//!   not-yet-valid certificate, and the key matches the first
//!   certificate. Messages name the file and what is wrong, never key
//!   material.
//! - [`Resolver`] is the rustls certificate resolver: an `Arc` behind a
//!   lock, swapped by [`Resolver::install`]. Open connections keep the
//!   certificate they were handshaken with; new ones get the new pair.
//! - [`watch`] reloads on change: a notify watch on the directories that
//!   hold the two files (a Secret volume's `..data` swap renames inside
//!   that directory; a watch on the file itself would die with the first
//!   swap), whose callback only does a `try_send`, plus a poll every
//!   [`POLL`] as a safety net. A pair that fails the checks (a torn or
//!   mismatched rotation) is logged and counted, and the old one stays.

use std::fmt;
use std::hash::{Hash as _, Hasher as _};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use secret_gate::check::pem::parse_bundle;
use secret_gate::check::tls::{check, TlsPolicy};
use tokio::sync::mpsc;

use super::metrics::Metrics;

/// The largest certificate or key file read: a chain of a few
/// certificates is a few KiB.
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// How often the files are re-read even without a notify event.
pub const POLL: Duration = Duration::from_secs(30);

/// How long to wait after an event before reading, so that the two
/// halves of a non-atomic rotation (a key, then its certificate) are
/// likely read together. A torn pair found anyway is retried at the next
/// event or poll.
pub const SETTLE: Duration = Duration::from_millis(100);

/// A checked certificate chain and key, ready to serve.
#[derive(Clone)]
pub struct Pair {
    pub key: Arc<CertifiedKey>,
    /// The leaf's `notAfter`, in seconds since the Unix epoch.
    pub not_after: i64,
    /// A hash of both files' bytes: a poll that reads the same bytes
    /// changes nothing.
    pub fingerprint: u64,
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pair")
            .field("chain_len", &self.key.cert.len())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Why a pair was not loaded: one line per problem, each naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct LoadError {
    pub problems: Vec<String>,
    /// A hash of the bytes that failed (0 when a file could not be read),
    /// so the same failure is logged once.
    pub fingerprint: u64,
}

impl LoadError {
    fn one(problem: String) -> Self {
        Self {
            problems: vec![problem],
            fingerprint: 0,
        }
    }
}

/// The two files to serve from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Reads a file of at most [`MAX_PEM_BYTES`] without ever blocking on
/// it: only a regular file (after symlinks) is read.
fn read_pem(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => format!(
                "{shown} ({flag}) does not exist: mount the webhook's certificate Secret there (cert-manager writes tls.crt and tls.key)"
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "{shown} ({flag}) cannot be read (permission denied): give the Secret volume a defaultMode the webhook's user can read"
            ),
            _ => format!("{shown} ({flag}) cannot be opened: {error}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|error| format!("{shown} ({flag}) cannot be read: {error}"))?;
    if !meta.is_file() {
        return Err(format!(
            "{shown} ({flag}) is not a regular file: point {flag} at the PEM file"
        ));
    }
    if meta.len() > MAX_PEM_BYTES {
        return Err(format!(
            "{shown} ({flag}) is {} bytes, more than the {MAX_PEM_BYTES} a PEM certificate or key can need",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("{shown} ({flag}) cannot be read: {error}"))?;
    Ok(bytes)
}

fn fingerprint(cert: &[u8], key: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    cert.hash(&mut hasher);
    key.hash(&mut hasher);
    hasher.finish()
}

/// Reads and checks the pair at `now`. See the module documentation.
pub fn load(files: &Files, now: SystemTime) -> Result<Pair, LoadError> {
    let cert_bytes = read_pem(&files.cert, "--tls-cert").map_err(LoadError::one)?;
    let key_bytes = read_pem(&files.key, "--tls-key").map_err(LoadError::one)?;
    let print = fingerprint(&cert_bytes, &key_bytes);
    let failed = |problems: Vec<String>| LoadError {
        problems,
        fingerprint: print,
    };
    let cert_name = files.cert.display().to_string();
    let key_name = files.key.display().to_string();

    let mut problems = Vec::new();
    let certs = parse_bundle(&cert_bytes);
    let keys = parse_bundle(&key_bytes);
    match &certs {
        Err(error) => problems.push(format!("{cert_name} (--tls-cert) {error}")),
        Ok(bundle) if bundle.certs.is_empty() => problems.push(format!(
            "{cert_name} (--tls-cert) holds no certificate: point --tls-cert at tls.crt"
        )),
        Ok(bundle) if bundle.certs.iter().skip(1).any(|c| !c.is_ca) || bundle.certs[0].is_ca => {
            problems.push(format!(
                "{cert_name} (--tls-cert) must start with the serving certificate, followed only by CA certificates"
            ));
        }
        Ok(_) => {}
    }
    match &keys {
        Err(error) => problems.push(format!("{key_name} (--tls-key) {error}")),
        Ok(bundle) if bundle.keys.len() != 1 => problems.push(format!(
            "{key_name} (--tls-key) holds {} private keys, not one: point --tls-key at tls.key",
            bundle.keys.len()
        )),
        Ok(bundle) if bundle.keys[0].spki.is_none() => problems.push(format!(
            "{key_name} (--tls-key) holds a key of a type the webhook cannot serve with (use ECDSA P-256/P-384, Ed25519 or RSA of 2048 bits or more)"
        )),
        Ok(_) => {}
    }
    if !problems.is_empty() {
        return Err(failed(problems));
    }
    let policy = TlsPolicy {
        min_validity: Duration::ZERO,
        pairs: vec![(cert_name.clone(), key_name.clone())],
        ca_file: None,
    };
    let report = check(
        &[
            (cert_name.as_str(), &cert_bytes),
            (key_name.as_str(), &key_bytes),
        ],
        &policy,
        now,
    );
    if !report.problems.is_empty() {
        return Err(failed(
            report.problems.iter().map(ToString::to_string).collect(),
        ));
    }
    let not_after = certs
        .ok()
        .and_then(|b| b.certs.first().map(|c| c.not_after))
        .unwrap_or(0);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<_, _>>()
        .map_err(|_| {
            failed(vec![format!(
                "{cert_name} (--tls-cert) has a certificate block rustls cannot read"
            )])
        })?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|_| {
        failed(vec![format!(
            "{key_name} (--tls-key) has a private key block rustls cannot read"
        )])
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|_| {
        failed(vec![format!(
            "{key_name} (--tls-key) holds a key rustls cannot sign with (use ECDSA P-256/P-384, Ed25519 or RSA of 2048 bits or more)"
        )])
    })?;
    let key = CertifiedKey::new(chain, signer);
    if key.keys_match().is_err() {
        return Err(failed(vec![format!(
            "the private key in {key_name} does not match the certificate in {cert_name} (a key and certificate from different rotations?)"
        )]));
    }
    Ok(Pair {
        key: Arc::new(key),
        not_after,
        fingerprint: print,
    })
}

/// The rustls resolver that serves the current pair.
#[derive(Debug)]
pub struct Resolver {
    current: RwLock<Pair>,
}

impl Resolver {
    #[must_use]
    pub fn new(pair: Pair) -> Self {
        Self {
            current: RwLock::new(pair),
        }
    }

    /// The pair served to new connections from now on.
    pub fn install(&self, pair: Pair) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = pair;
    }

    /// The pair served now.
    #[must_use]
    pub fn current(&self) -> Pair {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current().key))
    }
}

/// A TLS acceptor over `resolver`: ring, TLS 1.2 and 1.3, HTTP/1.1 only
/// in ALPN (the API server then speaks HTTP/1.1).
pub fn acceptor(resolver: Arc<Resolver>) -> Result<tokio_rustls::TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The directories to watch: each file's parent (deduplicated).
fn directories(files: &Files) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = [&files.cert, &files.key]
        .iter()
        .map(|p| match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.dedup();
    dirs
}

/// Starts a notify watch whose callback wakes `tx` (never blocking). The
/// watcher lives as long as the returned value.
fn start_watch(files: &Files, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, Watcher as _};
    let callback = move |event: notify::Result<notify::Event>| {
        let relevant = match event {
            Ok(event) => !matches!(event.kind, EventKind::Access(_)),
            Err(_) => true,
        };
        if relevant {
            // Full channel: a wake-up is pending already.
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(callback) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, poll = ?POLL, "cannot watch the certificate files (raise fs.inotify.max_user_instances?); checking them by polling only");
            return None;
        }
    };
    for dir in directories(files) {
        if let Err(error) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(%error, dir = %dir.display(), poll = ?POLL, "cannot watch a certificate directory; checking it by polling only");
        }
    }
    Some(watcher)
}

/// Reloads the pair into `resolver` whenever the files change, until the
/// runtime stops. Loads run on the blocking pool.
pub fn watch(files: Files, resolver: Arc<Resolver>, metrics: Arc<Metrics>) {
    let (tx, mut rx) = mpsc::channel(1);
    let watcher = start_watch(&files, tx);
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut last_rejected: Option<u64> = None;
        loop {
            tokio::select! {
                woke = rx.recv() => {
                    if woke.is_none() {
                        // The watcher is gone: poll only.
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(SETTLE).await;
                    // Drain a wake-up that came during the pause.
                    let _ = rx.try_recv();
                }
                () = tokio::time::sleep(POLL) => {}
            }
            let job_files = files.clone();
            let loaded =
                tokio::task::spawn_blocking(move || load(&job_files, SystemTime::now())).await;
            let Ok(loaded) = loaded else { continue };
            let current = resolver.current();
            match loaded {
                Ok(pair) if pair.fingerprint == current.fingerprint => {
                    last_rejected = None;
                }
                Ok(pair) => {
                    tracing::info!(
                        cert = %files.cert.display(),
                        not_after = pair.not_after,
                        "loaded the rotated certificate; new connections get it"
                    );
                    metrics.certificate_loaded(pair.not_after, true);
                    resolver.install(pair);
                    last_rejected = None;
                }
                Err(error) => {
                    if last_rejected != Some(error.fingerprint) {
                        metrics.reload_rejected();
                        tracing::warn!(error = %error, "the certificate files changed but the new pair is not usable; still serving the previous certificate");
                    }
                    last_rejected = Some(error.fingerprint);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{directories, Files};
    use std::path::PathBuf;

    #[test]
    fn one_watch_per_directory() {
        let files = Files {
            cert: PathBuf::from("/tls/tls.crt"),
            key: PathBuf::from("/tls/tls.key"),
        };
        assert_eq!(directories(&files), vec![PathBuf::from("/tls")]);
        let files = Files {
            cert: PathBuf::from("tls.crt"),
            key: PathBuf::from("/k/tls.key"),
        };
        assert_eq!(
            directories(&files),
            vec![PathBuf::from("."), PathBuf::from("/k")]
        );
    }
}

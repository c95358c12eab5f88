//! Helpers for tests that need the shipped fake Safe and Workload API.
//!
//! Include with `#[path = "common/fake.rs"] mod fake;` from a test crate
//! (`fake-safe/tests` and the bench include it by a relative path too).
//!
//! - [`fake_safe_bin`] is the `fake-safe` binary, built on first use by
//!   [`build_bin`]: it is another package of the workspace (`fake-safe/`),
//!   so cargo does not hand this package's tests its path.
//! - [`FakeSafe`] runs `fake-safe serve` in a temp state directory, waits
//!   (bounded) for `DIR/env`, and kills the process when dropped; like
//!   every process the tests start, through `bounded.rs`'s [`Gate`].
//! - [`x509_source`] and [`get_secrets`] are a small SPIFFE mTLS client:
//!   fetch the SVID from the fake's socket, then `GET /workload/v1/secrets`.
//!
//! Every wait is bounded by [`WAIT_LIMIT`].
#![allow(dead_code)] // each test crate uses a part of these helpers

// The one bounded-process helper, `common/bounded.rs`, which each crate
// that includes this file declares at its root.
use crate::bounded::{Finished, Gate, Running};

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The `fake-safe` binary. In the fake-safe package's own tests, cargo's
/// build of it; anywhere else (this package's tests, the bench), the one in
/// this test executable's profile directory (`<target>/<profile>/fake-safe`),
/// brought up to date by [`build_bin`] once per test process.
pub fn fake_safe_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match option_env!("CARGO_BIN_EXE_fake-safe") {
        Some(bin) => PathBuf::from(bin),
        None => build_bin("fake-safe", "fake-safe"),
    })
}

/// Runs `cargo build -p <package> --bin <bin>` for the profile this test
/// executable was built with, into the same target directory, and returns
/// the binary's path (`<target>/<profile>/<bin>`). Only the package is
/// selected, so its features are resolved as in a plain build of it, not
/// unified with this test's dev-dependencies. Panics with cargo's output
/// if the build fails.
pub fn build_bin(package: &str, bin: &str) -> PathBuf {
    try_build_bin(package, bin, None).unwrap_or_else(|e| panic!("{e}"))
}

/// [`build_bin`], for the target triple `target` when one is given (the
/// binary is then `<target>/<triple>/<profile>/<bin>`). An error carries
/// cargo's output.
pub fn try_build_bin(package: &str, bin: &str, target: Option<&str>) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().expect("the test executable's path");
    // <target>/<profile>/deps/<test executable>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in <target>/<profile>/deps", exe.display()));
    let target_dir = profile_dir
        .parent()
        .unwrap_or_else(|| panic!("{} has no target directory", profile_dir.display()));
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_else(|| panic!("{} names no profile", profile_dir.display()));
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--quiet", "-p", package, "--bin", bin]);
    match profile {
        "debug" => {}
        "release" => {
            cargo.arg("--release");
        }
        custom => {
            cargo.args(["--profile", custom]);
        }
    }
    let mut built = target_dir.to_path_buf();
    if let Some(triple) = target {
        cargo.args(["--target", triple]);
        built.push(triple);
    }
    let out = cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", env!("CARGO")))?;
    if !out.status.success() {
        return Err(format!(
            "building {bin} failed ({}): cargo build -p {package} --bin {bin} \
             ({profile}{}, CARGO_TARGET_DIR={})\n{}",
            out.status,
            target
                .map(|t| format!(", --target {t}"))
                .unwrap_or_default(),
            target_dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let path = built.join(profile).join(bin);
    if !path.is_file() {
        return Err(format!(
            "cargo built {bin}, but {} does not exist",
            path.display()
        ));
    }
    Ok(path)
}

/// Upper bound on every wait: start-up, a request, a shutdown.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// A running `fake-safe serve`, killed on drop.
pub struct FakeSafe {
    process: Option<Running>,
    /// After [`FakeSafe::terminate`]: how it ended, and what it printed.
    finished: Option<Finished>,
    dir: tempfile::TempDir,
    /// The variables from `DIR/env`.
    pub env: BTreeMap<String, String>,
}

impl FakeSafe {
    /// Starts `fake-safe serve --state-dir <temp> <extra>` and waits for
    /// `DIR/env`. Panics, showing the fake's stderr, if it does not come up
    /// within [`WAIT_LIMIT`].
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let process = Gate::program(fake_safe_bin())
            .shown_as("fake-safe")
            .arg("serve")
            .arg("--state-dir")
            .arg(dir.path())
            .args(extra)
            .env_remove("FAKE_SAFE_STATE_DIR")
            .spawn();
        let mut fake = Self {
            process: Some(process),
            finished: None,
            dir,
            env: BTreeMap::new(),
        };
        let env_path = fake.dir().join("env");
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            // Ready means both: the env file is written, and then the
            // "ready" line printed once everything listens.
            let printed = fake.stdout().contains("ready");
            if let (true, Ok(text)) = (printed, fs::read_to_string(&env_path)) {
                fake.env = parse_env(&text);
                break;
            }
            let process = fake.running();
            assert!(
                process.is_running(),
                "fake-safe exited before it was ready\n{}",
                process.dump()
            );
            assert!(
                Instant::now() < deadline,
                "fake-safe was not ready within {WAIT_LIMIT:?}\n{}",
                process.dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        fake
    }

    fn running(&mut self) -> &mut Running {
        self.process.as_mut().expect("fake-safe already stopped")
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the fake logged so far.
    pub fn stderr(&self) -> String {
        match (&self.process, &self.finished) {
            (Some(running), _) => running.stderr(),
            (None, Some(finished)) => finished.stderr.clone(),
            (None, None) => String::new(),
        }
    }

    /// What the fake printed so far.
    pub fn stdout(&self) -> String {
        match (&self.process, &self.finished) {
            (Some(running), _) => running.stdout(),
            (None, Some(finished)) => finished.stdout.clone(),
            (None, None) => String::new(),
        }
    }

    /// `SPIFFE_ENDPOINT_SOCKET`, e.g. `unix:///tmp/…/agent.sock`.
    pub fn spiffe_endpoint(&self) -> &str {
        &self.env["SPIFFE_ENDPOINT_SOCKET"]
    }

    /// `VSECM_SAFE_ENDPOINT_URL`, e.g. `https://127.0.0.1:41234/`.
    pub fn safe_url(&self) -> &str {
        &self.env["VSECM_SAFE_ENDPOINT_URL"]
    }

    /// The Safe's address, from `VSECM_SAFE_ENDPOINT_URL`.
    pub fn safe_addr(&self) -> SocketAddr {
        self.safe_url()
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .parse()
            .expect("Safe URL is https://<ip>:<port>/")
    }

    /// Runs `fake-safe <subcommand> --state-dir DIR <args>` to completion.
    pub fn cli(&self, subcommand: &str, args: &[&str]) -> Finished {
        run_bounded(
            Gate::program(fake_safe_bin())
                .arg(subcommand)
                .arg("--state-dir")
                .arg(self.dir())
                .args(args),
        )
    }

    /// `fake-safe register --workload <workload> --value <value>`; panics on failure.
    pub fn register(&self, workload: &str, value: &str) {
        let out = self.cli("register", &["--workload", workload, "--value", value]);
        assert!(out.status.success(), "register failed: {out:?}");
    }

    /// `fake-safe fault <args>`; panics on failure.
    pub fn fault(&self, args: &[&str]) {
        let out = self.cli("fault", args);
        assert!(out.status.success(), "fault failed: {out:?}");
    }

    /// `fake-safe agent --stop` or `--start`: the Workload API goes down,
    /// or comes back on a new socket inode with a new SVID. Returns when
    /// the fake has done it, with the time it did (unix µs) and, for a
    /// start, the socket's inode.
    #[allow(dead_code, reason = "not every test binary restarts the agent")]
    pub fn agent(&self, start: bool) -> (u128, Option<u64>) {
        let out = self.cli("agent", &[if start { "--start" } else { "--stop" }]);
        assert!(out.status.success(), "agent failed: {out:?}");
        let mut words = out.stdout.split_whitespace();
        let at = words.next().and_then(|w| w.parse().ok());
        let at = at.unwrap_or_else(|| panic!("'<µs> …' from agent: {out:?}"));
        let inode = (words.next() == Some("started"))
            .then(|| words.next().and_then(|w| w.parse().ok()))
            .flatten();
        (at, inode)
    }

    /// The lines of `DIR/requests.log`, as (unix µs, status).
    pub fn requests(&self) -> Vec<(u128, u16)> {
        fs::read_to_string(self.dir().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let (at, status) = line.split_once(' ').expect("'<µs> <status>'");
                (at.parse().expect("µs"), status.parse().expect("status"))
            })
            .collect()
    }

    /// Sends SIGTERM and waits (bounded) for the exit. The state directory
    /// stays until the `FakeSafe` is dropped.
    pub fn terminate(&mut self) -> ExitStatus {
        let process = self.process.take().expect("running");
        process.signal("TERM");
        let finished = process.wait(WAIT_LIMIT);
        let status = finished.status;
        self.finished = Some(finished);
        status
    }

    /// Path of a file in the state directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }
}

/// Parses `export K=V` lines.
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            // fake-safe single-quotes a value that needs it, as a shell does.
            let value = match v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                Some(quoted) => quoted.replace(r"'\''", "'"),
                None => v.to_owned(),
            };
            (k.to_owned(), value)
        })
        .collect()
}

/// Runs a command to completion; kills it and fails after [`WAIT_LIMIT`].
pub fn run_bounded(command: Gate) -> Finished {
    command.spawn().wait(WAIT_LIMIT)
}

/// An `X509Source` on the fake's socket, with a bounded first sync.
pub async fn x509_source(endpoint: &str) -> spiffe::X509Source {
    spiffe::X509Source::builder()
        .endpoint(endpoint)
        .initial_sync_timeout(WAIT_LIMIT)
        .build()
        .await
        .expect("X509Source from the fake Workload API")
}

/// An mTLS client config from the source that accepts any Safe ID in the
/// bundle; callers check the ID themselves with [`peer_spiffe_id`].
pub fn mtls_config(source: &spiffe::X509Source) -> Arc<rustls::ClientConfig> {
    let config = spiffe_rustls::mtls_client(source.clone())
        .build()
        .expect("spiffe-rustls client config");
    Arc::new(config)
}

/// A TLS client config that trusts the fake's CA (`DIR/bundle.pem`) and
/// sends no client certificate.
pub fn no_client_cert_config(source: &spiffe::X509Source) -> Arc<rustls::ClientConfig> {
    let td = spiffe::TrustDomain::new("vsecm.com").expect("td");
    let bundle = source
        .bundle_set()
        .expect("bundle set")
        .get(&td)
        .expect("bundle for vsecm.com");
    let mut roots = rustls::RootCertStore::empty();
    for ca in bundle.authorities() {
        roots
            .add(ca.as_bytes().to_vec().into())
            .expect("CA into root store");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// One answer from the Safe.
#[derive(Debug)]
pub struct Answer {
    /// The SPIFFE ID the Safe presented.
    pub safe_id: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// `GET <path>` on the Safe over TLS with `config`. Errors (handshake,
/// I/O, HTTP) come back as text with their cause chain.
pub async fn get(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: &str,
) -> Result<Answer, String> {
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let server_name = ServerName::try_from("localhost").expect("server name");
        let tls = TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let safe_id = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| peer_spiffe_id(leaf))
            .unwrap_or_default();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP handshake: {e:?}"))?;
        tokio::spawn(conn);
        let request = Request::get(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e:?}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e:?}"))?
            .to_bytes();
        Ok(Answer {
            safe_id,
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(WAIT_LIMIT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {WAIT_LIMIT:?}")))
}

/// `GET /workload/v1/secrets`.
pub async fn get_secrets(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> Result<Answer, String> {
    get(config, addr, "/workload/v1/secrets").await
}

/// The SPIFFE ID in a certificate, or a description of why there is none.
pub fn peer_spiffe_id(der: &[u8]) -> String {
    spiffe::cert::spiffe_id_from_der(der)
        .map_or_else(|e| format!("<no SPIFFE ID: {e}>"), |id| id.to_string())
}

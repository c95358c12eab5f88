//! Figure 12: the injector's admission webhook under load.
//!
//! The release `secret-gate-injector webhook` on 127.0.0.1 with an rcgen
//! certificate, and 50 keep-alive HTTPS connections from this process
//! (hyper over tokio-rustls, two client threads) sending the same
//! `AdmissionReview` of an opted-in Pod:
//!
//! - **closed loop** for the run's duration: each connection sends its
//!   next review as soon as the last is answered (throughput, and latency
//!   at saturation);
//! - **paced** at 200 reviews/s in all (4/s per connection, staggered):
//!   latency at the load the goal names.
//!
//! The floor is the same binary with `--bench-floor` (a hidden switch):
//! it decodes each review and answers `allowed: true` with no patch, so
//! TLS, HTTP and JSON cost the same and the difference is the injection
//! and the JSON patch. Floor and injector alternate, each in a fresh
//! process; peak RSS is `VmHWM` at the end of its runs. Latency is from
//! writing a request to reading its whole answer, on the client; the
//! client shares the machine's cores with the server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

use crate::process::{command, stderr_to, Running};
use crate::stats::{bytes, mark, ms, ratio};
use crate::{fake, pki, procfs, Bench};

/// Connections, as the goal names them.
pub const CONNECTIONS: usize = 50;
/// The paced load, reviews per second in all.
pub const PACED_RATE: f64 = 200.0;
/// Closed loop: the injector's p99 at most this many times the floor's.
const CLOSED_GOAL: f64 = 1.5;
/// Paced: the injector's p99 at most this many times the floor's.
const PACED_GOAL: f64 = 1.2;
/// Client threads (each a current-thread runtime).
const CLIENT_THREADS: usize = 2;

/// One load run against one server.
#[derive(Debug, Clone)]
pub struct Run {
    pub server: &'static str,
    pub load: &'static str,
    pub reviews: usize,
    pub failures: usize,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub peak_rss: Option<u64>,
    /// The server's CPU per review over the run, user and system, in µs
    /// (`/proc/PID/stat`, which keeps the time of exited threads).
    pub cpu_us: Option<(f64, f64)>,
}

impl Run {
    #[must_use]
    pub fn rate(&self) -> f64 {
        crate::stats::count(self.reviews) / self.seconds.max(f64::EPSILON)
    }
}

/// Figure 12.
#[derive(Debug, Clone, Default)]
pub struct WebhookResult {
    pub runs: Vec<Run>,
    pub duration: Duration,
    pub rounds: usize,
    pub error: Option<String>,
    /// The answer's size with and without injection, for the text.
    pub patch_bytes: usize,
}

/// An opted-in Pod as a controller creates it from a Deployment template.
fn review_body() -> Vec<u8> {
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-7d9c6b5f4-",
            "namespace": "apps",
            "labels": {
                "app.kubernetes.io/name": "web",
                "pod-template-hash": "7d9c6b5f4",
                "secret-gate.dev/inject": "true",
            },
            "annotations": {
                "secret-gate.dev/inject": "true",
                "secret-gate.dev/mount-path": "/opt/vsecm",
                "secret-gate.dev/file": "secrets.json",
                "secret-gate.dev/required-keys": "username,password",
                "secret-gate.dev/timeout": "5m",
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c6b5f4",
                "uid": "5b4e6f36-0b1e-4a53-9a59-1f7c1b0c2d3e", "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "serviceAccountName": "web",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app",
                "image": "registry.example.com/web:1.4.2",
                "ports": [{"containerPort": 8080, "name": "http"}],
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                "volumeMounts": [{"name": "secrets", "mountPath": "/opt/vsecm", "readOnly": true}],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            }],
            "volumes": [{"name": "secrets", "emptyDir": {"medium": "Memory"}}],
        },
    });
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0f5a2c3e-bench",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "apps",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "dryRun": false,
        },
    }))
    .expect("the review serialises")
}

struct Tls {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    client: Arc<rustls::ClientConfig>,
}

fn tls(dir: &Path) -> Tls {
    let key = pki::Key::new(pki::Alg::EcdsaP256);
    let ca = pki::ca("webhook bench CA", None);
    let leaf = pki::valid_leaf(&key, Some(&ca));
    std::fs::create_dir_all(dir).expect("bench tls dir");
    let cert = dir.join("tls.crt");
    let key_path = dir.join("tls.key");
    std::fs::write(&cert, leaf).expect("tls.crt");
    std::fs::write(&key_path, key.pem(pki::Encoding::Pkcs8)).expect("tls.key");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca.der().to_vec()))
        .expect("CA root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Tls {
        cert,
        key: key_path,
        client: Arc::new(client),
    }
}

/// Starts the webhook and returns it with its address.
fn start(bin: &Path, tls: &Tls, floor: bool) -> Result<(Running, SocketAddr), String> {
    start_with(bin, tls, floor, &[])
}

/// [`start`] with `env` set for the webhook.
fn start_with(
    bin: &Path,
    tls: &Tls,
    floor: bool,
    env: &[(&str, &str)],
) -> Result<(Running, SocketAddr), String> {
    let mut cmd = command(bin);
    cmd.envs(env.iter().copied());
    cmd.args(["webhook", "--listen", "127.0.0.1:0", "--log-level", "info"])
        .arg("--tls-cert")
        .arg(&tls.cert)
        .arg("--tls-key")
        .arg(&tls.key)
        .args(["--max-connections", "256"]);
    if floor {
        cmd.arg("--bench-floor");
    }
    // The log goes to a file, as a container runtime's log does. Piped,
    // the harness would read and keep every `injected` line (the floor
    // writes none) on the cores the server runs on, and charge that to
    // the injector. Not beside the certificate: the webhook watches that
    // directory, and would wake on every line.
    let dir = tls.cert.parent().unwrap_or(Path::new("."));
    let log = dir.with_extension(if floor { "floor.log" } else { "injector.log" });
    stderr_to(&mut cmd, &log);
    let mut running = Running::spawn(&mut cmd);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let until = Instant::now() + Duration::from_secs(20);
    let mut text = read();
    while !text.contains("listening on ") && Instant::now() < until && running.try_exit().is_none()
    {
        std::thread::sleep(Duration::from_millis(10));
        text = read();
    }
    if !text.contains("listening on ") {
        return Err(format!("the webhook did not start: {text}"));
    }
    let addr = text
        .split("listening on ")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect::<String>()
        })
        .and_then(|a| a.trim_end_matches(':').parse().ok())
        .ok_or_else(|| format!("no address in the webhook's log: {text}"))?;
    Ok((running, addr))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from("app.example.test").expect("name");
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn review(sender: &mut Sender, addr: SocketAddr, body: &Bytes) -> Result<Bytes, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let request = http::Request::post("/mutate")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != 200 {
        return Err(format!("status {}", response.status()));
    }
    response
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|e| e.to_string())
}

/// Latencies (ms) and failures of one load run.
fn load(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    body: &Bytes,
    duration: Duration,
    rate: Option<f64>,
) -> (Vec<f64>, usize, f64) {
    let start = Instant::now();
    let deadline = start + duration;
    let threads: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let config = Arc::clone(config);
            let body = body.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("client runtime");
                rt.block_on(async move {
                    let mut tasks = Vec::new();
                    for c in (t..CONNECTIONS).step_by(CLIENT_THREADS) {
                        let config = Arc::clone(&config);
                        let body = body.clone();
                        tasks.push(tokio::spawn(async move {
                            let mut latencies = Vec::new();
                            let mut failures = 0usize;
                            let Ok(mut sender) = connect(addr, config).await else {
                                return (latencies, 1);
                            };
                            // Paced: this connection's share of the rate,
                            // staggered across connections.
                            let interval = rate.map(|r| {
                                Duration::from_secs_f64(crate::stats::count(CONNECTIONS) / r)
                            });
                            let mut next = interval.map(|i| {
                                Instant::now()
                                    + i.mul_f64(
                                        crate::stats::count(c) / crate::stats::count(CONNECTIONS),
                                    )
                            });
                            loop {
                                if let (Some(at), Some(i)) = (next.as_mut(), interval) {
                                    tokio::time::sleep_until((*at).into()).await;
                                    *at += i;
                                }
                                if Instant::now() >= deadline {
                                    break;
                                }
                                let sent = Instant::now();
                                match tokio::time::timeout(
                                    Duration::from_secs(10),
                                    review(&mut sender, addr, &body),
                                )
                                .await
                                {
                                    Ok(Ok(answer)) if answer.starts_with(b"{\"apiVersion\"") => {
                                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                                    }
                                    _ => {
                                        failures += 1;
                                        break;
                                    }
                                }
                            }
                            (latencies, failures)
                        }));
                    }
                    let mut all = Vec::new();
                    let mut failures = 0;
                    for task in tasks {
                        if let Ok((l, f)) = task.await {
                            all.extend(l);
                            failures += f;
                        } else {
                            failures += 1;
                        }
                    }
                    (all, failures)
                })
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for thread in threads {
        let (l, f) = thread.join().expect("a client thread");
        latencies.extend(l);
        failures += f;
    }
    (latencies, failures, start.elapsed().as_secs_f64())
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rank within the series"
    )]
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Runs figure 12: `rounds` rounds of (floor, injector), each server in a
/// fresh process under the closed-loop then the paced load.
pub fn webhook(bench: &Bench, duration: Duration, rounds: usize) -> WebhookResult {
    let mut result = WebhookResult {
        duration,
        rounds,
        ..WebhookResult::default()
    };
    let bin = fake::build_bin("secret-gate-injector", "secret-gate-injector");
    let tls = tls(&bench.scratch.join("webhook-tls"));
    let body = Bytes::from(review_body());
    for _ in 0..rounds {
        for (server, floor) in [("floor (no injection)", true), ("injector", false)] {
            let (mut running, addr) = match start(&bin, &tls, floor) {
                Ok(started) => started,
                Err(error) => {
                    result.error = Some(error);
                    return result;
                }
            };
            // One review first: that the server answers as it should.
            let probe = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async {
                    let mut sender = connect(addr, Arc::clone(&tls.client)).await?;
                    review(&mut sender, addr, &body).await
                });
            match probe {
                Ok(answer) => {
                    let patched = answer.windows(8).any(|w| w == b"\"patch\":");
                    if patched == floor {
                        result.error = Some(format!(
                            "{server}: the answer {} a patch",
                            if floor { "carries" } else { "lacks" }
                        ));
                        return result;
                    }
                    if !floor {
                        result.patch_bytes = answer.len();
                    }
                }
                Err(error) => {
                    result.error = Some(format!("{server}: {error}"));
                    return result;
                }
            }
            for (load_name, rate) in [("closed loop", None), ("paced 200/s", Some(PACED_RATE))] {
                let before = procfs::sample(running.pid).stat;
                let (mut latencies, failures, seconds) =
                    load(addr, &tls.client, &body, duration, rate);
                let after = procfs::sample(running.pid).stat;
                let cpu_us = before.zip(after).and_then(|(b, a)| {
                    let per = procfs::clock_ticks();
                    let us = |ticks: u64| {
                        #[expect(clippy::cast_precision_loss, reason = "ticks far below 2^52")]
                        let us = procfs::ticks_to_ns(ticks, per) as f64 / 1e3;
                        us / crate::stats::count(latencies.len())
                    };
                    (!latencies.is_empty()).then(|| {
                        (
                            us(a.utime.saturating_sub(b.utime)),
                            us(a.stime.saturating_sub(b.stime)),
                        )
                    })
                });
                latencies.sort_by(f64::total_cmp);
                result.runs.push(Run {
                    server,
                    load: load_name,
                    reviews: latencies.len(),
                    failures,
                    seconds,
                    p50_ms: percentile(&latencies, 0.50),
                    p99_ms: percentile(&latencies, 0.99),
                    peak_rss: None,
                    cpu_us,
                });
            }
            let peak = procfs::sample(running.pid).peak_rss;
            let n = result.runs.len();
            for run in &mut result.runs[n - 2..] {
                run.peak_rss = peak;
            }
            running.signal("TERM");
            let _ = running.wait_timeout(Duration::from_secs(10));
        }
    }
    result
}

/// The median of one server's rounds (the mean of the middle two of an
/// even count); NaN for none.
fn median(values: &[f64]) -> f64 {
    crate::stats::Summary::of(values).map_or(f64::NAN, |s| s.median)
}

/// The medians over rounds of one server and load.
#[expect(
    clippy::type_complexity,
    reason = "one row's medians, read positionally"
)]
fn pick(
    result: &WebhookResult,
    server: &str,
    load: &str,
) -> Option<(f64, f64, f64, u64, usize, Option<(f64, f64)>)> {
    let runs: Vec<&Run> = result
        .runs
        .iter()
        .filter(|r| r.server.starts_with(server) && r.load == load)
        .collect();
    if runs.is_empty() {
        return None;
    }
    let p50: Vec<f64> = runs.iter().map(|r| r.p50_ms).collect();
    let p99: Vec<f64> = runs.iter().map(|r| r.p99_ms).collect();
    let rate: Vec<f64> = runs.iter().map(|r| r.rate()).collect();
    let rss = runs.iter().filter_map(|r| r.peak_rss).max().unwrap_or(0);
    let failures = runs.iter().map(|r| r.failures).sum();
    let user: Vec<f64> = runs.iter().filter_map(|r| r.cpu_us.map(|c| c.0)).collect();
    let system: Vec<f64> = runs.iter().filter_map(|r| r.cpu_us.map(|c| c.1)).collect();
    let cpu =
        (!user.is_empty() && user.len() == system.len()).then(|| (median(&user), median(&system)));
    Some((
        median(&p50),
        median(&p99),
        median(&rate),
        rss,
        failures,
        cpu,
    ))
}

/// A ratio beside its goal, with a third decimal where two would show the
/// goal itself (1.20× for 1.204, which misses a goal of 1.2×).
fn near(value: f64, goal: f64) -> String {
    if (value - goal).abs() < 0.005 {
        format!("{value:.3}×")
    } else {
        ratio(value)
    }
}

/// The figure's markdown.
pub fn render(out: &mut String, result: &WebhookResult) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "## 12. The admission webhook under load\n");
    let _ = writeln!(
        out,
        "`secret-gate-injector webhook` (release build) on 127.0.0.1 with an ECDSA P-256 certificate; {CONNECTIONS} keep-alive HTTPS connections from the harness (hyper over tokio-rustls, {CLIENT_THREADS} client threads on the same machine) send one `AdmissionReview` of an opted-in Pod (about {} bytes). Each server runs {} s closed-loop (each connection sends its next review when the last is answered), then {} s paced at {PACED_RATE} reviews/s in all. The floor is the same binary with `--bench-floor`: it decodes each review and answers `allowed: true` with no patch (TLS, HTTP and JSON only). Floor and injector alternate, {} round(s), each in a fresh process; figures are medians over rounds, latency from the request's write to the answer's last byte; peak RSS is the server's `VmHWM`. The injector's answer carries a {} byte AdmissionReview with its JSON patch.\n",
        review_body().len(),
        result.duration.as_secs(),
        result.duration.as_secs(),
        result.rounds,
        result.patch_bytes,
    );
    if let Some(error) = &result.error {
        let _ = writeln!(out, "Not measured: {error}\n");
        return;
    }
    let _ = writeln!(
        out,
        "| server | load | reviews/s | p50 | p99 | CPU per review (user + system) | peak RSS | failed |\n|---|---|---|---|---|---|---|---|"
    );
    for load in ["closed loop", "paced 200/s"] {
        for server in ["floor", "injector"] {
            if let Some((p50, p99, rate, rss, failures, cpu)) = pick(result, server, load) {
                #[expect(clippy::cast_precision_loss, reason = "RSS far below 2^52 bytes")]
                let rss = bytes(rss as f64);
                let cpu = cpu.map_or_else(
                    || "n/a".to_owned(),
                    |(user, system)| format!("{user:.0} + {system:.0} µs"),
                );
                let _ = writeln!(
                    out,
                    "| {server} | {load} | {rate:.0} | {} | {} | {cpu} | {rss} | {failures} |",
                    ms(p50),
                    ms(p99)
                );
            }
        }
    }
    let closed = (
        pick(result, "floor", "closed loop"),
        pick(result, "injector", "closed loop"),
    );
    let paced = pick(result, "injector", "paced 200/s");
    let floor_paced = pick(result, "floor", "paced 200/s");
    if let ((Some(floor), Some(inj)), Some(paced), Some(floor_paced)) = (closed, paced, floor_paced)
    {
        let closed_ratio = inj.1 / floor.1;
        let paced_ratio = paced.1 / floor_paced.1;
        #[expect(clippy::cast_precision_loss, reason = "RSS far below 2^52 bytes")]
        let rss = inj.3 as f64;
        let _ = writeln!(
            out,
            "\nGoals: p99 ≤ {CLOSED_GOAL}× the floor's in the closed loop: {} {}; ≤ {PACED_GOAL}× paced: {} {}; p99 ≤ 5 ms at 200 reviews/s: {} {}; peak RSS ≤ 20 MiB: {} {}. Throughput against the floor: {}.\n",
            near(closed_ratio, CLOSED_GOAL),
            mark(closed_ratio <= CLOSED_GOAL),
            near(paced_ratio, PACED_GOAL),
            mark(paced_ratio <= PACED_GOAL),
            ms(paced.1),
            mark(paced.1 <= 5.0),
            bytes(rss),
            mark(rss <= 20.0 * 1024.0 * 1024.0),
            ratio(inj.2 / floor.2),
        );
        let _ = writeln!(
            out,
            "Where the injector's extra time goes (counted with `valgrind --tool=callgrind`, which counts instructions, on the webhook serving one keep-alive connection: about 335k instructions per review against the floor's 187k): the injection core (the flags validated by the gate's own parser, once per distinct command line; the gate's container, built and type-checked once per distinct input, then handed out and taken back, so that a review of the same input reuses the last one's copy instead of cloning; the status fingerprint, which writes the template as JSON and hashes it), the patch, the larger answer and the `injected` log line, which the review thread writes after handing the answer back and then yielding the CPU to the runtime thread that the hand-off woke (the scheduler often wakes it on the same CPU), so that neither the line's formatting nor its write is on the answer's path. Reviews run on the webhook's own threads (at most 4), and the one that went idle last takes the next review: tokio's blocking pool, used before, woke the one idle longest, so at 200 reviews/s, after the closed loop had left 4 threads alive, each review ran on the coldest (in alternating 15 s runs, paced p99 1.29× and 1.10× the floor's with the webhook's threads, 1.38× and 1.31× with tokio's pool, and the injector's CPU per paced review 253 and 217 µs against 287 and 290). The Pod is edited in place: nothing of it is copied but the three parts injection can edit (annotations, init containers, volumes), which the patch compares before and after, and only what the core added is type-checked, since the API server has already decoded the rest. The fingerprint, the patch's values and the answer are written as JSON without serde's per-value dispatch (the bytes are serde_json's, held to them by unit tests). The CPU column is the server's user and system time over the run (`/proc/PID/stat`) over the reviews answered; the server's log goes to a file, as a container runtime's does. Tried and not kept: mimalloc as the global allocator, running small reviews on the runtime thread instead of on a review thread, and fewer review threads. None brought the closed loop near its goal, and the last two made it worse: the harness's client threads share the machine's cores with the server, so the closed loop's ratio also depends on how the kernel divides the CPU between the server's threads and the harness's.\n"
        );
    }
}

/// Figure 12 in the summary: the injector's p99 against the floor's, in
/// the closed loop and paced.
pub fn summary_rows(result: &WebhookResult) -> Vec<[String; 6]> {
    let row = |load: &str, goal: f64| {
        let floor = pick(result, "floor", load)?;
        let injector = pick(result, "injector", load)?;
        let times = injector.1 / floor.1;
        Some([
            format!("12. webhook, {load}: p99"),
            ms(injector.1),
            format!("floor (TLS, HTTP, JSON; no injection) {}", ms(floor.1)),
            ratio(floor.1 / injector.1),
            format!("≤ {goal}× the floor ({})", ms(floor.1 * goal)),
            mark(times <= goal).to_owned(),
        ])
    };
    [
        row("closed loop", CLOSED_GOAL),
        row("paced 200/s", PACED_GOAL),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Figure 10's webhook row: 256 connections (the default cap) uploading
/// 3 MiB reviews back to back while `/healthz` is probed.
#[derive(Debug, Clone, Default)]
pub struct Uploads {
    /// `/healthz` on a fresh TLS connection every 50 ms.
    pub healthz: crate::probe::Phase,
    /// Uploads answered (200 or 400), refused (503 at the body budget),
    /// and cut off (the connection closed first: shed).
    pub answered: u64,
    pub refused: u64,
    pub cut: u64,
    /// `secret_gate_injector_http_bodies_shed_total` at the end.
    pub bodies_shed: Option<u64>,
    /// `secret_gate_injector_http_requests_rejected_total` at the end: here
    /// the uploads answered 503 after waiting for the body budget, whether
    /// or not the client, still writing its body, read the answer.
    pub rejected: Option<u64>,
    /// `secret_gate_injector_http_connections_shed_total` at the end: at
    /// the cap, for the probes, and for the budget.
    pub shed: Option<u64>,
    /// Reviews answered 504 (`secret_gate_injector_reviews_total{outcome="timeout"}`).
    pub timed_out: Option<u64>,
    /// `VmRSS` every 100 ms over the run, bytes.
    pub rss: Vec<u64>,
    /// The webhook's runtime thread over the probes (its schedstat): the
    /// share of the time it ran, and the share it was runnable but
    /// waiting for a CPU.
    pub runtime_thread: Option<(f64, f64)>,
    pub error: Option<String>,
}

/// The allocator settings `manifests/injector/deployment.yaml` gives the
/// webhook (glibc's; the static musl image reads neither).
pub const MANIFEST_ENV: &[(&str, &str)] = &[
    ("MALLOC_ARENA_MAX", "1"),
    ("MALLOC_MMAP_THRESHOLD_", "131072"),
];

/// Upload connections, the webhook's default `--max-connections`.
pub const UPLOADERS: usize = 256;
/// Each upload's size.
pub const UPLOAD_BYTES: usize = 3 << 20;

/// An opted-in Pod's review padded with an annotation to exactly `size`
/// bytes: the largest review the API server sends, and one the injector
/// injects.
fn padded_review(size: usize) -> Vec<u8> {
    let with = |pad: usize| {
        let mut review: serde_json::Value =
            serde_json::from_slice(&review_body()).expect("the review is JSON");
        review["request"]["object"]["metadata"]["annotations"]["bench.example/pad"] =
            serde_json::Value::String("x".repeat(pad));
        serde_json::to_vec(&review).expect("the review serialises")
    };
    let base = with(0).len();
    with(size.saturating_sub(base))
}

/// One blocking HTTPS `GET /healthz` on a fresh connection: its latency
/// when it answered 200 within 1 s.
fn healthz(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> Option<f64> {
    use std::io::{Read as _, Write as _};
    let started = Instant::now();
    let name = rustls::pki_types::ServerName::try_from("app.example.test").ok()?;
    let conn = rustls::ClientConnection::new(Arc::clone(config), name).ok()?;
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    tcp.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: webhook\r\nUser-Agent: kube-probe/1.33\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = Vec::new();
    tls.read_to_end(&mut text).ok()?;
    let took = started.elapsed();
    (text.starts_with(b"HTTP/1.1 200 ") && took <= Duration::from_secs(1))
        .then_some(took.as_secs_f64() * 1000.0)
}

/// One upload on a fresh connection: `Some(status)` when answered, `None`
/// when the connection closed first.
async fn upload(addr: SocketAddr, config: Arc<rustls::ClientConfig>, body: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from("app.example.test").ok()?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .ok()?;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.ok()?;
    tls.write_all(body).await.ok()?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.len() < 64 * 1024 {
        match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
    }
    std::str::from_utf8(answer.get(9..12)?).ok()?.parse().ok()
}

/// Runs the uploads against a fresh injector (the manifests' arguments:
/// the default cap and limits) and probes `/healthz` `probes` times.
#[expect(
    clippy::too_many_lines,
    reason = "one load run: start, load, probe, collect"
)]
pub fn uploads(bench: &Bench, probes: usize) -> Uploads {
    let mut result = Uploads::default();
    let bin = fake::build_bin("secret-gate-injector", "secret-gate-injector");
    let tls = tls(&bench.scratch.join("uploads-tls"));
    // As manifests/injector/deployment.yaml sets it.
    let (mut running, addr) = match start_with(&bin, &tls, false, MANIFEST_ENV) {
        Ok(started) => started,
        Err(error) => {
            result.error = Some(error);
            return result;
        }
    };
    let pid = running.pid;
    let body: Arc<[u8]> = padded_review(UPLOAD_BYTES).into();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut rss = Vec::new();
            // Bounded by the stop flag, and by a sample count as a net.
            for _ in 0..36_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if let Some(kib) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|text| procfs::parse_status_kib(&text, "VmRSS"))
                {
                    rss.push(kib * 1024);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            rss
        })
    };
    let counts: Arc<[std::sync::atomic::AtomicU64; 3]> = Arc::new(Default::default());
    let threads: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let (config, body, stop, counts) = (
                Arc::clone(&tls.client),
                Arc::clone(&body),
                Arc::clone(&stop),
                Arc::clone(&counts),
            );
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("client runtime");
                rt.block_on(async move {
                    let tasks: Vec<_> = (t..UPLOADERS)
                        .step_by(CLIENT_THREADS)
                        .map(|_| {
                            let (config, body, stop, counts) = (
                                Arc::clone(&config),
                                Arc::clone(&body),
                                Arc::clone(&stop),
                                Arc::clone(&counts),
                            );
                            tokio::spawn(async move {
                                // Bounded by the stop flag, each upload by
                                // a timeout, and a round count as a net.
                                for _ in 0..100_000 {
                                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                                        break;
                                    }
                                    let sent = tokio::time::timeout(
                                        Duration::from_secs(10),
                                        upload(addr, Arc::clone(&config), &body),
                                    )
                                    .await;
                                    let slot = match sent {
                                        Ok(Some(200 | 400)) => 0,
                                        Ok(Some(503)) => 1,
                                        _ => 2,
                                    };
                                    counts[slot].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        let _ = task.await;
                    }
                });
            })
        })
        .collect();
    // Let the uploads fill the budget before the probes start.
    std::thread::sleep(Duration::from_secs(2));
    // The runtime thread is the main thread: its tid is the pid.
    let schedstat = || {
        let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/schedstat")).ok()?;
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        Some((fields.next()??, fields.next()??, Instant::now()))
    };
    let before = schedstat();
    let mut phase = crate::probe::Phase {
        probes,
        ..crate::probe::Phase::default()
    };
    for _ in 0..probes {
        let tick = Instant::now();
        match healthz(addr, &tls.client) {
            Some(ms) => phase.latencies_ms.push(ms),
            None => phase.failed += 1,
        }
        std::thread::sleep(Duration::from_millis(50).saturating_sub(tick.elapsed()));
    }
    if let (Some((ran0, waited0, at0)), Some((ran1, waited1, at1))) = (before, schedstat()) {
        let span = (at1 - at0).as_secs_f64() * 1e9;
        #[expect(clippy::cast_precision_loss, reason = "nanoseconds")]
        let share = |a: u64, b: u64| b.saturating_sub(a) as f64 / span;
        result.runtime_thread = Some((share(ran0, ran1), share(waited0, waited1)));
    }
    let metrics = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let mut sender = connect(addr, Arc::clone(&tls.client)).await.ok()?;
            sender.ready().await.ok()?;
            let request = http::Request::get("/metrics")
                .header("host", addr.to_string())
                .body(Full::new(Bytes::new()))
                .ok()?;
            let response = sender.send_request(request).await.ok()?;
            response
                .into_body()
                .collect()
                .await
                .ok()
                .map(http_body_util::Collected::to_bytes)
        });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    result.rss = sampler.join().unwrap_or_default();
    phase.peak_rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| procfs::parse_status_kib(&text, "VmHWM"))
        .map(|kib| kib * 1024);
    if running.try_exit().is_some() {
        result.error = Some("the webhook exited under the uploads".to_owned());
    }
    running.kill();
    result.healthz = phase;
    let load = |n: usize| counts[n].load(std::sync::atomic::Ordering::Relaxed);
    (result.answered, result.refused, result.cut) = (load(0), load(1), load(2));
    let text = metrics.map(|text| String::from_utf8_lossy(&text).into_owned());
    let metric = |name: &str| {
        text.as_deref()?.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "counters"
    )]
    {
        result.bodies_shed =
            metric("secret_gate_injector_http_bodies_shed_total").map(|v| v as u64);
        result.timed_out =
            metric("secret_gate_injector_reviews_total{outcome=\"timeout\"}").map(|v| v as u64);
        result.rejected =
            metric("secret_gate_injector_http_requests_rejected_total").map(|v| v as u64);
        result.shed = metric("secret_gate_injector_http_connections_shed_total").map(|v| v as u64);
    }
    result
}

//! Figure 10: the probe port under attack. `watch --keep-running
//! --listen` (the production binary, `MALLOC_ARENA_MAX=1` as the image sets
//! it, started under a 1,024 open-files soft limit) is probed with a fresh
//! connection every 50 ms, first with no load, then while 10,000 hostile
//! connections hit it from the rest of the machine: idle ones, slowloris
//! ones (a half request, one more byte every 500 ms) and a request flood
//! (complete requests back to back on kept-alive connections). Each kind
//! reconnects whatever the gate closes. Measured: probe latency (p50, p99,
//! max), failed or over-budget probes, readiness flips (from `/metrics`
//! and the log) and peak RSS (`VmHWM`), each against the same gate
//! unloaded. Two more rows: a fresh gate at the default cap against as
//! many slow readers (each pipelines `GET /metrics` a thousand times and
//! never reads), and the injector's webhook against 256 connections
//! uploading 3 MiB reviews (peak RSS against the manifest's memory limit).
//! `BENCH_ONLY=probe` runs it alone.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::process::{command, stderr_to, Running};
use crate::stats::{bytes, count, mark, ms};
use crate::Bench;

/// Goals (issue 18).
const RSS_GOAL: f64 = 16.0 * 1024.0 * 1024.0;
const P99_GOAL_MS: f64 = 100.0;
const MAX_GOAL_MS: f64 = 1000.0;

/// The hostile connections, by kind.
const IDLE: usize = 4000;
const SLOW: usize = 4000;
const FLOOD: usize = 2000;
const FLOOD_THREADS: usize = 2;

/// Slow readers: the default `--max-connections`, all of them.
const SLOW_READERS: usize = 1024;

/// What a slow reader sends at once, and never reads the answers to.
static PIPELINED: std::sync::LazyLock<Vec<u8>> =
    std::sync::LazyLock::new(|| b"GET /metrics HTTP/1.1\r\nHost: gate\r\n\r\n".repeat(1000));

/// The injector's container memory limit (manifests/injector/).
const WEBHOOK_MEMORY_LIMIT: f64 = 64.0 * 1024.0 * 1024.0;

/// The half request slowloris clients start with.
const HALF: &[u8] = b"GET /readyz HTTP/1.1\r\nHost: gate\r\nUser-Agent: slow\r\nX-A: ";

/// One phase of probing.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Latency of each probe that answered, ms.
    pub latencies_ms: Vec<f64>,
    /// Probes that failed (no answer, not 200) or took over 1 s.
    pub failed: usize,
    pub probes: usize,
    /// `VmHWM` at the end of the phase, bytes.
    pub peak_rss: Option<u64>,
}

/// What figure 10 measured.
#[derive(Debug, Clone, Default)]
pub struct ProbeResult {
    pub unloaded: Phase,
    pub attacked: Phase,
    /// Hostile connections open at once (client side), at most.
    pub hostile_open: usize,
    /// Connections the clients made over the attack, reconnections included.
    pub hostile_connects: u64,
    /// Requests the flood got answered.
    pub flood_answered: u64,
    /// From `/metrics` at the end.
    pub flips: Option<u64>,
    pub shed: Option<u64>,
    /// The gate logged "not ready any more".
    pub logged_flip: bool,
    /// The slow-reader row: probes, readiness flips (metrics and log),
    /// and connections shed.
    pub slow: Phase,
    pub slow_flips: Option<u64>,
    pub slow_logged_flip: bool,
    pub slow_shed: Option<u64>,
    pub slow_connects: u64,
    /// The webhook row.
    pub uploads: crate::webhook::Uploads,
    pub failures: Vec<String>,
}

/// One probe on a fresh connection: its latency when it answered 200
/// within 1 s.
fn probe(addr: SocketAddr) -> Option<f64> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: gate\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = Vec::new();
    s.read_to_end(&mut text).ok()?;
    let took = started.elapsed();
    (text.starts_with(b"HTTP/1.1 200 ") && took <= Duration::from_secs(1))
        .then_some(took.as_secs_f64() * 1000.0)
}

/// Probes every 50 ms, `n` times.
fn probe_phase(addr: SocketAddr, n: usize, pid: u32) -> Phase {
    let mut phase = Phase {
        probes: n,
        ..Phase::default()
    };
    for _ in 0..n {
        let tick = Instant::now();
        match probe(addr) {
            Some(ms) => phase.latencies_ms.push(ms),
            None => phase.failed += 1,
        }
        std::thread::sleep(Duration::from_millis(50).saturating_sub(tick.elapsed()));
    }
    phase.peak_rss = hwm(pid);
    phase
}

fn hwm(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    crate::procfs::parse_status_kib(&text, "VmHWM").map(|kib| kib * 1024)
}

fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

fn metric(body: &str, line_start: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse::<f64>().ok())
        .map(|v| {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a counter"
            )]
            let n = v as u64;
            n
        })
}

/// True when the gate closed the connection (a read returns 0 or fails
/// with something other than "would block").
fn closed(s: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match s.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

fn connect(addr: SocketAddr, first: &[u8]) -> Option<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    if !first.is_empty() {
        s.write_all(first).ok()?;
    }
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// Holds `n` connections open, each sending `first` (and, when `drip`,
/// one more byte every 500 ms), and reconnects whatever the gate closes.
fn hold(
    addr: SocketAddr,
    n: usize,
    first: &'static [u8],
    drip: bool,
    stop: &AtomicBool,
    connects: &AtomicU64,
    open: &AtomicU64,
) {
    let mut streams: Vec<Option<TcpStream>> = Vec::with_capacity(n);
    for _ in 0..n {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let s = connect(addr, first);
        if s.is_some() {
            connects.fetch_add(1, Ordering::Relaxed);
            open.fetch_add(1, Ordering::Relaxed);
        }
        streams.push(s);
    }
    // Bounded by the stop flag, and by a round count as a safety net.
    for _ in 0..10_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        for slot in &mut streams {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let alive = slot
                .as_mut()
                .is_some_and(|s| !closed(s) && (!drip || !matches!(s.write(b"a"), Ok(0) | Err(_))));
            if !alive {
                if slot.take().is_some() {
                    open.fetch_sub(1, Ordering::Relaxed);
                }
                *slot = connect(addr, first);
                if slot.is_some() {
                    connects.fetch_add(1, Ordering::Relaxed);
                    open.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Complete requests back to back on `n` kept-alive connections, in turn;
/// a connection the gate closed is reopened.
fn flood(
    addr: SocketAddr,
    n: usize,
    stop: &AtomicBool,
    connects: &AtomicU64,
    answered: &AtomicU64,
) {
    let request = b"GET /readyz HTTP/1.1\r\nHost: gate\r\n\r\n";
    let mut streams: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let mut buf = [0u8; 512];
    // Bounded by the stop flag, and by a round count as a safety net.
    for _ in 0..1_000_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        for slot in &mut streams {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if slot.is_none() {
                *slot = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok();
                if let Some(s) = slot {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    connects.fetch_add(1, Ordering::Relaxed);
                }
            }
            let Some(s) = slot else { continue };
            let ok = s.write_all(request).is_ok() && matches!(s.read(&mut buf), Ok(n) if n > 0);
            if ok {
                answered.fetch_add(1, Ordering::Relaxed);
            } else {
                *slot = None;
            }
        }
    }
}

/// Slow readers: `n` connections, each sending [`PIPELINED`] and never
/// reading; one the gate closed (a write fails) is reopened.
fn stall(addr: SocketAddr, n: usize, stop: &AtomicBool, connects: &AtomicU64) {
    let open = || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        s.set_nonblocking(true).ok()?;
        // What fits now; the gate reads the rest as it answers.
        let _ = s.write(&PIPELINED);
        connects.fetch_add(1, Ordering::Relaxed);
        Some(s)
    };
    let mut streams: Vec<Option<TcpStream>> = Vec::with_capacity(n);
    for _ in 0..n {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        streams.push(open());
    }
    // Bounded by the stop flag, and by a round count as a safety net.
    for _ in 0..10_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        for slot in &mut streams {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            // An empty line between requests is allowed (RFC 9112 §2.2);
            // a write that fails means the gate closed the connection.
            let alive = slot.as_mut().is_some_and(|s| match s.write(b"\r\n") {
                Ok(_) => true,
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            });
            if !alive {
                *slot = open();
            }
        }
    }
}

/// A ready `watch --keep-running --listen` gate on a fresh port, as
/// figure 10 starts it; its log goes to `scratch/NAME.log`.
fn start_gate(bench: &Bench, name: &str) -> (Running, SocketAddr, std::path::PathBuf) {
    let dir = bench.scratch.join(name);
    std::fs::create_dir_all(&dir).expect("probe dir");
    std::fs::write(dir.join("s.json"), r#"{"password":"bench"}"#).expect("write s.json");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cmd = command("prlimit");
    cmd.env("MALLOC_ARENA_MAX", "1")
        .arg("--nofile=1024:")
        .arg(&bench.gate)
        .args(["watch", "--mount-path"])
        .arg(&dir)
        .args(["--file", "s.json", "--required-keys", "password"])
        .args(["--keep-running", "--listen", &addr.to_string()]);
    let log = bench.scratch.join(format!("{name}.log"));
    stderr_to(&mut cmd, &log);
    let gate = Running::spawn(&mut cmd);
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe(addr).is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    (gate, addr, log)
}

/// The slow-reader row: a fresh gate at the default cap, filled with
/// slow readers, probed `probes` times.
fn slow_readers(bench: &Bench, probes: usize, result: &mut ProbeResult) {
    let (mut gate, addr, log) = start_gate(bench, "probe-slow");
    let stop = Arc::new(AtomicBool::new(false));
    let connects = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (stop, connects) = (stop.clone(), connects.clone());
            std::thread::spawn(move || stall(addr, SLOW_READERS / 2, &stop, &connects))
        })
        .collect();
    // Let the slow readers fill the cap before the probes start.
    let ramp = Instant::now() + Duration::from_secs(20);
    while connects.load(Ordering::Relaxed) < u64::try_from(SLOW_READERS).unwrap_or(u64::MAX)
        && Instant::now() < ramp
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    result.slow = probe_phase(addr, probes, gate.pid);
    let metrics = get(addr, "/metrics").unwrap_or_default();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    result.slow_connects = connects.load(Ordering::Relaxed);
    result.slow_flips = metric(
        &metrics,
        "secret_gate_state_changes_total{to=\"not_ready\"}",
    );
    result.slow_shed = metric(&metrics, "secret_gate_http_connections_shed_total");
    if gate.try_exit().is_some() {
        result
            .failures
            .push("the gate exited under the slow readers".to_owned());
    }
    gate.kill();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    result.slow_logged_flip = text.contains("not ready any more");
}

/// Runs figure 10.
pub fn under_attack(bench: &Bench, probes: usize) -> ProbeResult {
    let mut result = ProbeResult::default();
    secret_gate::rlimit::raise_nofile();
    let (mut gate, addr, log) = start_gate(bench, "probe");
    result.unloaded = probe_phase(addr, probes, gate.pid);

    let stop = Arc::new(AtomicBool::new(false));
    let connects = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for (n, first, drip) in [(IDLE, &b""[..], false), (SLOW, HALF, true)] {
        let (stop, connects, open) = (stop.clone(), connects.clone(), open.clone());
        threads.push(std::thread::spawn(move || {
            hold(addr, n, first, drip, &stop, &connects, &open);
        }));
    }
    for _ in 0..FLOOD_THREADS {
        let (stop, connects, answered) = (stop.clone(), connects.clone(), answered.clone());
        threads.push(std::thread::spawn(move || {
            flood(addr, FLOOD / FLOOD_THREADS, &stop, &connects, &answered);
        }));
    }
    // Let the hostile connections pile up before the probes start.
    let ramp = Instant::now() + Duration::from_secs(20);
    while open.load(Ordering::Relaxed) < u64::try_from(IDLE + SLOW).unwrap_or(u64::MAX) * 9 / 10
        && Instant::now() < ramp
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    result.attacked = probe_phase(addr, probes, gate.pid);
    result.hostile_open =
        usize::try_from(open.load(Ordering::Relaxed)).unwrap_or(usize::MAX) + FLOOD;
    let metrics = get(addr, "/metrics").unwrap_or_default();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    result.hostile_connects = connects.load(Ordering::Relaxed);
    result.flood_answered = answered.load(Ordering::Relaxed);
    result.flips = metric(
        &metrics,
        "secret_gate_state_changes_total{to=\"not_ready\"}",
    );
    result.shed = metric(&metrics, "secret_gate_http_connections_shed_total");
    if gate.try_exit().is_some() {
        result
            .failures
            .push("the gate exited under attack".to_owned());
    }
    gate.kill();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    result.logged_flip = text.contains("not ready any more");
    if metrics.is_empty() {
        result
            .failures
            .push("GET /metrics failed under attack".to_owned());
    }
    slow_readers(bench, probes, &mut result);
    result.uploads = crate::webhook::uploads(bench, probes);
    if let Some(error) = &result.uploads.error {
        result.failures.push(format!("webhook uploads: {error}"));
    }
    result
}

fn percentile(values: &[f64], q: usize) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (v.len() * q).div_ceil(100).max(1);
    v.get(rank - 1).copied()
}

fn show_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), ms)
}

fn show_bytes(v: Option<u64>) -> String {
    v.map_or_else(
        || "—".to_owned(),
        |b| bytes(count(usize::try_from(b).unwrap_or(usize::MAX))),
    )
}

/// Figure 10's webhook rows: peak RSS against the manifest's memory
/// limit, and `/healthz` under the uploads.
pub fn webhook_rows(out: &mut String, uploads: &crate::webhook::Uploads) {
    let p99 = |p: &Phase| percentile(&p.latencies_ms, 99);
    let up = &uploads.healthz;
    let up_rss_ok = up
        .peak_rss
        .is_some_and(|b| count(usize::try_from(b).unwrap_or(usize::MAX)) <= WEBHOOK_MEMORY_LIMIT);
    let _ = writeln!(
        out,
        "| webhook, {} uploads of 3 MiB: peak RSS | — | {} | ≤ {} | {} |",
        crate::webhook::UPLOADERS,
        show_bytes(up.peak_rss),
        bytes(WEBHOOK_MEMORY_LIMIT),
        mark(up_rss_ok && uploads.error.is_none())
    );
    let _ = writeln!(
        out,
        "| webhook, {} uploads of 3 MiB: `/healthz` p99, failed or over 1 s | — | {}, {} of {} | ≤ {}, 0 | {} |",
        crate::webhook::UPLOADERS,
        show_ms(p99(up)),
        up.failed,
        up.probes,
        ms(P99_GOAL_MS),
        mark(p99(up).is_some_and(|v| v <= P99_GOAL_MS) && up.failed == 0)
    );
}

/// The figure's markdown.
#[expect(clippy::too_many_lines, reason = "one table, row by row")]
pub fn figure(out: &mut String, r: &ProbeResult) {
    let _ = writeln!(out, "## 10. The probe port under attack\n");
    let _ = writeln!(
        out,
        "`watch --keep-running --listen` (with `MALLOC_ARENA_MAX=1`, as the image sets it, started by \
         `prlimit --nofile=1024:`; the default `--max-connections 1024`) on a ready JSON file. A fresh \
         kubelet-style probe (`GET /readyz`, `Connection: close`) every 50 ms, {} times with no load, then \
         {} times while {IDLE} idle, {SLOW} slowloris (a half request, one more byte every 500 ms) and \
         {FLOOD} request-flood connections (complete requests back to back on kept-alive connections, \
         {FLOOD_THREADS} threads) hit it from the bench process, each kind reconnecting whatever the gate \
         closes. A probe fails if it gets no `200` within 1 s. Peak RSS is `VmHWM` after each phase; \
         readiness flips are `secret_gate_state_changes_total{{to=\"not_ready\"}}` from `/metrics` and a \
         \"not ready any more\" line in the log.\n",
        r.unloaded.probes, r.attacked.probes
    );
    let _ = writeln!(
        out,
        "| measure | no load | under attack | goal | |\n|---|---|---|---|---|"
    );
    let (u, a) = (&r.unloaded, &r.attacked);
    let p50 = |p: &Phase| show_ms(percentile(&p.latencies_ms, 50));
    let p99 = |p: &Phase| percentile(&p.latencies_ms, 99);
    let max = |p: &Phase| percentile(&p.latencies_ms, 100);
    let _ = writeln!(out, "| probe p50 | {} | {} | — | |", p50(u), p50(a));
    let _ = writeln!(
        out,
        "| probe p99 | {} | {} | ≤ {} | {} |",
        show_ms(p99(u)),
        show_ms(p99(a)),
        ms(P99_GOAL_MS),
        mark(p99(a).is_some_and(|v| v <= P99_GOAL_MS) && a.failed == 0)
    );
    let _ = writeln!(
        out,
        "| probe max (answered) | {} | {} | ≤ {} | {} |",
        show_ms(max(u)),
        show_ms(max(a)),
        ms(MAX_GOAL_MS),
        mark(max(a).is_some_and(|v| v <= MAX_GOAL_MS))
    );
    let _ = writeln!(
        out,
        "| probes failed or over 1 s | {} of {} | {} of {} | 0 | {} |",
        u.failed,
        u.probes,
        a.failed,
        a.probes,
        mark(a.failed == 0 && u.failed == 0)
    );
    let rss_ok = a
        .peak_rss
        .is_some_and(|b| count(usize::try_from(b).unwrap_or(usize::MAX)) <= RSS_GOAL);
    let _ = writeln!(
        out,
        "| peak RSS (`VmHWM`) | {} | {} | ≤ {} | {} |",
        show_bytes(u.peak_rss),
        show_bytes(a.peak_rss),
        bytes(RSS_GOAL),
        mark(rss_ok)
    );
    let flips_ok = r.flips == Some(0) && !r.logged_flip;
    let _ = writeln!(
        out,
        "| readiness flips | — | {}{} | 0 | {} |",
        r.flips.map_or_else(|| "—".to_owned(), |f| f.to_string()),
        if r.logged_flip { " (logged)" } else { "" },
        mark(flips_ok)
    );
    let slow = &r.slow;
    let slow_ok = slow.failed == 0
        && r.slow_flips == Some(0)
        && !r.slow_logged_flip
        && max(slow).is_some_and(|v| v <= MAX_GOAL_MS);
    let _ = writeln!(
        out,
        "| slow readers: probe p99 / max, failed or over 1 s, readiness flips | — | {} / {}, {} of {}, {}{} | ≤ 1 s, 0, 0 | {} |",
        show_ms(p99(slow)),
        show_ms(max(slow)),
        slow.failed,
        slow.probes,
        r.slow_flips.map_or_else(|| "—".to_owned(), |f| f.to_string()),
        if r.slow_logged_flip { " (logged)" } else { "" },
        mark(slow_ok)
    );
    webhook_rows(out, &r.uploads);
    let _ = writeln!(
        out,
        "\nDuring the attack the clients held about {} connections, made {} connections in all \
         (reconnections included), and the flood got {} answers; the gate shed {} idle or \
         incomplete connections at its cap.\n",
        r.hostile_open,
        r.hostile_connects,
        r.flood_answered,
        r.shed.map_or_else(|| "—".to_owned(), |s| s.to_string()),
    );
    let _ = writeln!(
        out,
        "The slow-reader row is a fresh gate at the default `--max-connections 1024` with {SLOW_READERS} \
         connections that each pipeline `GET /metrics` 1,000 times and never read (an empty line every \
         200 ms tells them when the gate closed them; they reconnect): {} connections in all, {} shed. \
         The webhook row is `secret-gate-injector webhook` (the glibc release build; the shipped image is the \
         static musl one, not measured here) with the manifest's arguments (the default 256 connections) and \
         its glibc settings `MALLOC_ARENA_MAX=1` and `MALLOC_MMAP_THRESHOLD_=131072` against {} connections each \
         uploading a {}-byte review of an opted-in Pod back to back, reconnecting after each answer; \
         `/healthz` is probed over a fresh TLS connection every 50 ms. An upload that finds the body budget \
         full waits for room with its body unread, so TCP holds its client back; one still waiting after 5 s \
         is answered 503, which a client still writing its body mostly never reads. Uploads answered: {}, \
         503 read by the client: {}, closed before the client read an answer: {}. On the server: {} answered \
         503 at the body budget, {} bodies shed for it (still arriving after their 1 s grace), {} connections \
         shed in all (at the cap too, for the probes). {}\n",
        r.slow_connects,
        r.slow_shed.map_or_else(|| "—".to_owned(), |s| s.to_string()),
        crate::webhook::UPLOADERS,
        crate::webhook::UPLOAD_BYTES,
        r.uploads.answered,
        r.uploads.refused,
        r.uploads.cut,
        r.uploads.rejected.map_or_else(|| "—".to_owned(), |s| s.to_string()),
        r.uploads.bodies_shed.map_or_else(|| "—".to_owned(), |s| s.to_string()),
        r.uploads.shed.map_or_else(|| "—".to_owned(), |s| s.to_string()),
        r.uploads.runtime_thread.map_or_else(String::new, |(ran, waited)| format!(
            "Over the probes the webhook's one runtime thread (it does every TLS handshake and decrypts \
             every upload) ran {:.0}% of the time and was runnable but waiting for a CPU {:.0}%.",
            ran * 100.0,
            waited * 100.0
        )),
    );
    for f in &r.failures {
        let _ = writeln!(out, "- **10. probe port: a run failed**: {f}");
    }
    let _ = writeln!(out);
}

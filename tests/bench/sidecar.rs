//! Figure 7: `watch --keep-running`. Idle cost over a long quiet spell
//! (CPU per 10 s, resident memory at the end against after 1 s), and a
//! long run of kubelet-style rotations, each answered by exactly one POST
//! to a local webhook: the rotation-to-notification latency and the growth
//! of peak RSS across the run. Then `safe --keep-running` through SPIRE
//! agent restarts: the agent down until the gate's SVID has expired, back
//! on a new socket inode, and the time until the version registered
//! meanwhile is written.
//!
//! Both gates run with `MALLOC_ARENA_MAX=1`, as the image sets it: with
//! glibc's default per-thread arenas, the blocking-pool thread's arena
//! creeps up by a few pages per minute for the first half hour of a
//! keep-running gate (bounded, about 100 KiB), which the "no growth" row
//! would otherwise show.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::process::{command, stderr_to, Running};
use crate::procfs;
use crate::volume::ns_to_ms;
use crate::{Bench, Plan};

/// What figure 9 measured.
#[derive(Debug, Clone, Default)]
pub struct SidecarResult {
    /// How long the idle run lasted after the first sample.
    pub idle_span: Duration,
    /// CPU per 10 s between the 1 s sample and the last one.
    pub idle_cpu_per_10s_ms: Option<f64>,
    /// `RssAnon` (private resident memory) at 1 s and at the end of the idle run, bytes.
    pub rss_at_1s: Option<u64>,
    pub rss_at_end: Option<u64>,
    /// Rotations asked for, and done (each answered by one POST).
    pub rotations: usize,
    pub rotations_done: usize,
    /// Rotations whose POST count was not exactly one.
    pub miscounted: usize,
    /// From the `..data` rename to the POST arriving, ms, per rotation.
    pub latencies_ms: Vec<f64>,
    /// `VmHWM` after the warm-up rotations and at the end, bytes.
    pub peak_rss_after_warmup: Option<u64>,
    pub peak_rss_at_end: Option<u64>,
    /// Agent restarts asked for, and the time from each agent's return to
    /// the new version's POST, ms.
    pub agent_restarts: usize,
    pub agent_restart_ms: Vec<f64>,
    pub failures: Vec<String>,
}

fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    procfs::parse_status_kib(&text, field).map(|kib| kib * 1024)
}

fn write_json(dir: &Path, name: &str, n: usize) {
    std::fs::write(
        dir.join(name),
        format!(r#"{{"username":"bench","password":"rotation-{n}"}}"#),
    )
    .expect("write the payload");
}

/// One kubelet `AtomicWriter` update: a new `..<ts>` dir, `..data_tmp`
/// renamed over `..data`, the old version removed. Returns the instant of
/// the rename.
fn swap(dir: &Path, n: usize) -> Instant {
    let name = format!("..2026_01_01_00_00_00.{n:09}");
    let version = dir.join(&name);
    std::fs::create_dir(&version).expect("version dir");
    write_json(&version, "app.json", n);
    let old = std::fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    symlink(&name, &tmp).expect("..data_tmp");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    let at = Instant::now();
    if std::fs::symlink_metadata(dir.join("app.json")).is_err() {
        symlink("..data/app.json", dir.join("app.json")).expect("visible link");
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    at
}

/// A webhook that answers 200 and reports when each POST arrived.
fn webhook() -> (String, mpsc::Receiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook");
    let url = format!("http://{}/-/reload", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let at = Instant::now();
            loop {
                let mut header = String::new();
                match reader.read_line(&mut header) {
                    Ok(n) if n > 2 => {}
                    _ => break,
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if line.starts_with("POST") && tx.send(at).is_err() {
                break;
            }
        }
    });
    (url, rx)
}

/// Runs figure 9.
pub fn keep_running(bench: &Bench, plan: &Plan) -> SidecarResult {
    let (idle, rotations) = (plan.sidecar_idle, plan.rotations);
    let mut result = SidecarResult {
        rotations,
        idle_span: idle,
        agent_restarts: plan.agent_restarts,
        ..SidecarResult::default()
    };
    // Idle: ready at once, then nothing changes.
    let dir = bench.scratch.join("sidecar-idle");
    std::fs::create_dir_all(&dir).expect("idle dir");
    write_json(&dir, "app.json", 0);
    let mut cmd = command(&bench.gate);
    cmd.env("MALLOC_ARENA_MAX", "1")
        .args(["watch", "--mount-path"])
        .arg(&dir)
        .args(["--file", "app.json", "--required-keys", "password"])
        .args(["--keep-running", "--listen", "127.0.0.1:0"]);
    stderr_to(&mut cmd, &bench.scratch.join("sidecar-idle.log"));
    let mut p = Running::spawn(&mut cmd);
    std::thread::sleep(
        (p.started + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    );
    let early = procfs::sample(p.pid);
    result.rss_at_1s = status_bytes(p.pid, "RssAnon");
    let end = p.started + Duration::from_secs(1) + idle;
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let late = procfs::sample(p.pid);
    result.rss_at_end = status_bytes(p.pid, "RssAnon");
    if p.try_exit().is_some() {
        result.failures.push("idle: the gate exited".to_owned());
    }
    p.kill();
    if let Some(delta) = late.cpu_since(&early, bench.ticks) {
        let span = late.at.duration_since(early.at).as_secs_f64();
        result.idle_cpu_per_10s_ms = Some(ns_to_ms(delta.ns) * 10.0 / span);
    }

    // Rotations: one POST per passing version.
    let dir = bench.scratch.join("sidecar-rotations");
    std::fs::create_dir_all(&dir).expect("rotation dir");
    swap(&dir, 0);
    let (url, posts) = webhook();
    let mut cmd = command(&bench.gate);
    cmd.args(["watch", "--mount-path"])
        .arg(&dir)
        .args(["--file", "app.json", "--required-keys", "password"])
        .args([
            "--keep-running",
            "--settle-time",
            "10ms",
            "--on-change-url",
            &url,
        ]);
    let mut p = Running::spawn_watching_stderr(&mut cmd, &["ready; keeping running"]);
    if p.wait_marker(0, Duration::from_secs(10)).is_none() {
        result.failures.push(format!(
            "rotations: never ready: {}",
            p.stderr_text().lines().last().unwrap_or_default()
        ));
        return result;
    }
    let warmup = rotations.min(20);
    for n in 1..=rotations {
        if n == warmup + 1 {
            result.peak_rss_after_warmup = status_bytes(p.pid, "VmHWM");
        }
        let at = swap(&dir, n);
        let Ok(post) = posts.recv_timeout(Duration::from_secs(5)) else {
            let log = p.stderr_text();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            result.failures.push(format!(
                "rotation {n}: no POST within 5 s; the gate's last lines: {}",
                tail.join(" | ")
            ));
            break;
        };
        result.rotations_done += 1;
        result
            .latencies_ms
            .push(post.saturating_duration_since(at).as_secs_f64() * 1000.0);
        // Exactly one: nothing more may be pending for this rotation.
        if posts.try_recv().is_ok() {
            result.miscounted += 1;
        }
    }
    // A last look for late extra POSTs.
    std::thread::sleep(Duration::from_millis(500));
    while posts.try_recv().is_ok() {
        result.miscounted += 1;
    }
    result.peak_rss_at_end = status_bytes(p.pid, "VmHWM");
    p.kill();
    match agent_restarts(bench, plan.agent_restarts, &mut result.agent_restart_ms) {
        Ok(()) => {}
        Err(e) => result.failures.push(format!("agent restarts: {e}")),
    }
    result
}

/// How long each SVID the fake Workload API issues lives.
const SVID_TTL: &str = "3s";
/// The gate's line when the Safe refuses its expired SVID.
const EXPIRED_LINE: &str = "has not sent a new one";

/// `fake-safe <args> --state-dir DIR`; its stdout.
fn fake_cli(bench: &Bench, dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = command(&bench.fake)
        .arg(args[0])
        .arg("--state-dir")
        .arg(dir)
        .args(&args[1..])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "fake-safe {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `safe --keep-running --output-dir` with VSecM's default Safe pace (5 s)
/// and a 1 s sync interval (so that each cycle's expiry is noticed soon),
/// through `cycles` agent restarts: the agent goes down, the gate reports
/// its SVID expired (the agent was down longer than the SVID's life), a new
/// version is registered, the agent comes back on a new socket inode with a
/// new SVID; measured from the fake's "started" line in `agent.log` to the
/// gate's POST for the new version.
fn agent_restarts(bench: &Bench, cycles: usize, took: &mut Vec<f64>) -> Result<(), String> {
    let fake =
        crate::safe::FakeSafe::start_with(bench, "sidecar-agent", &["--svid-ttl", SVID_TTL])?;
    let version = |n: usize| format!(r#"{{"username":"u","password":"version-{n}"}}"#);
    fake_cli(
        bench,
        &fake.dir,
        &["register", "--workload", "example", "--value", &version(0)],
    )?;
    let (url, posts) = webhook();
    let out = bench.scratch.join("sidecar-agent-out");
    let mut cmd = command(&bench.gate);
    fake.env(&mut cmd);
    cmd.env("VSECM_SIDECAR_POLL_INTERVAL", "1000")
        .args(["safe", "--keep-running", "--output-dir"])
        .arg(&out)
        .args(["--required-keys", "password", "--on-change-url", &url]);
    let mut p = Running::spawn_watching_stderr(&mut cmd, &["ready; keeping running"]);
    let outcome = (|| {
        if p.wait_marker(0, Duration::from_secs(30)).is_none() {
            return Err(format!("never ready: {}", last_line(&p)));
        }
        // The first version's POST, if the gate sends one for it.
        let _ = posts.recv_timeout(Duration::from_millis(500));
        for n in 1..=cycles {
            let refused = p.stderr_text().matches(EXPIRED_LINE).count();
            fake_cli(bench, &fake.dir, &["agent", "--stop"])?;
            // Bounded: the SVID lives 3 s, the gate polls every second.
            let limit = Instant::now() + Duration::from_secs(30);
            while p.stderr_text().matches(EXPIRED_LINE).count() <= refused {
                if Instant::now() > limit {
                    return Err(format!(
                        "cycle {n}: the SVID never expired: {}",
                        last_line(&p)
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            fake_cli(
                bench,
                &fake.dir,
                &["register", "--workload", "example", "--value", &version(n)],
            )?;
            while posts.try_recv().is_ok() {}
            let line = fake_cli(bench, &fake.dir, &["agent", "--start"])?;
            let back_us: u64 = line
                .split_whitespace()
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("agent --start printed {line:?}"))?;
            // The fake's clock is the wall clock: place its "started" on ours.
            let now_us = u64::try_from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_micros(),
            )
            .unwrap_or(0);
            let back = Instant::now()
                .checked_sub(Duration::from_micros(now_us.saturating_sub(back_us)))
                .ok_or("the clock")?;
            let post = posts
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| format!("cycle {n}: no POST within 30 s: {}", last_line(&p)))?;
            took.push(post.saturating_duration_since(back).as_secs_f64() * 1000.0);
        }
        Ok(())
    })();
    p.kill();
    outcome
}

fn last_line(p: &Running) -> String {
    p.stderr_text()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

//! Volume mode: detection latency (figure 1), idle footprint (figure 3)
//! and the cost of `check` as the selection grows (figure 5).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::process::{command, stderr_to, Running};
use crate::procfs;
use crate::Bench;

/// The start of the gate's text-format log line when it decides it is ready.
const READY_LINE: &str = "INFO ready ";

/// The document that makes `s.json` ready.
const READY_JSON: &str = r#"{"user":"u","password":"p"}"#;

/// One detection-latency run.
#[derive(Debug, Clone)]
pub struct LatencyRun {
    /// The random wait between "waiting" and the write.
    pub phase: Duration,
    /// From just before `rename()` to the observed exit, in ms.
    pub latency_ms: f64,
    /// From just before `rename()` to the gate's `ready` log line arriving
    /// on the harness's end of the stderr pipe (the gate only), in ms.
    pub decided_ms: Option<f64>,
}

/// Figure 1 for one contender.
#[derive(Debug, Clone)]
pub struct LatencySeries {
    pub label: String,
    pub runs: Vec<LatencyRun>,
    pub failures: Vec<String>,
    /// A sentence the report prints under the table.
    pub note: Option<String>,
}

/// Which build of the gate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// The binary the release image ships: musl, static (`Containerfile`).
    Image,
    /// `cargo build --release` on this machine: glibc, dynamically linked.
    Release,
}

/// Which process waits for the file.
#[derive(Debug, Clone, Copy)]
pub enum Waiter {
    Gate(Build),
    /// `inotifywait -e moved_to D` (inotify-tools): the floor for any
    /// inotify-based waiter, since it exits on the first event.
    Inotifywait,
    /// A shell loop `until [ -f … ]; do sleep N; done`.
    Shell {
        interval_s: u64,
    },
}

impl Waiter {
    fn label(self) -> String {
        match self {
            Self::Gate(Build::Image) => {
                "secret-gate watch, the release image's binary (musl, static)".to_owned()
            }
            Self::Gate(Build::Release) => {
                "secret-gate watch, `cargo build --release` (glibc, dynamic)".to_owned()
            }
            Self::Inotifywait => "`inotifywait -e moved_to` (inotify-tools)".to_owned(),
            Self::Shell { interval_s: 5 } => {
                "shell loop, `sleep 5` (VSecM's poll interval)".to_owned()
            }
            Self::Shell { interval_s } => format!("shell loop, `sleep {interval_s}`"),
        }
    }

    fn phase_span_ms(self) -> u64 {
        match self {
            // The gate's safety-net re-check runs every 1 s (--poll-interval).
            Self::Gate(_) | Self::Inotifywait => 1000,
            Self::Shell { interval_s } => interval_s * 1000,
        }
    }
}

/// A shell loop that checks for `<dir>/s.json` every `interval_s` seconds,
/// for at most about 60 s.
fn shell_loop(dir: &Path, interval_s: u64) -> std::process::Command {
    let mut cmd = command("sh");
    cmd.arg("-c")
        .arg(r#"i=0; until [ -f "$1/s.json" ]; do i=$((i+1)); if [ "$i" -gt "$2" ]; then exit 1; fi; sleep "$3"; done"#)
        .arg("sh")
        .arg(dir)
        .arg((60 / interval_s).to_string())
        .arg(interval_s.to_string());
    cmd
}

/// `secret-gate watch` from the release build.
fn gate_watch(bench: &Bench, dir: &Path) -> std::process::Command {
    watch_with(&bench.gate, bench, dir)
}

/// `secret-gate watch` from `build`, or why that build is missing.
fn gate_build_watch(
    bench: &Bench,
    build: Build,
    dir: &Path,
) -> Result<std::process::Command, String> {
    match (build, &bench.gate_image) {
        (Build::Release, _) => Ok(gate_watch(bench, dir)),
        (Build::Image, Ok(bin)) => Ok(watch_with(bin, bench, dir)),
        (Build::Image, Err(why)) => Err(why.clone()),
    }
}

fn watch_with(bin: &Path, bench: &Bench, dir: &Path) -> std::process::Command {
    let mut cmd = command(bin);
    cmd.args(["watch", "--mount-path"])
        .arg(dir)
        .args([
            "--file",
            "s.json",
            "--required-keys",
            "user,password",
            "--timeout",
            "60s",
            "--termination-log",
        ])
        .arg(bench.scratch.join("termination-log"));
    cmd
}

/// Figure 1: `runs` runs of `waiter`, each on a fresh directory.
pub fn detection_latency(bench: &Bench, waiter: Waiter, runs: usize) -> LatencySeries {
    detection_latency_interleaved(bench, &[waiter], runs)
        .pop()
        .expect("one series per waiter")
}

/// Figure 1: `runs` rounds, each one run of every waiter in turn, so that
/// they share the machine's state (load, caches, kernel) run by run.
pub fn detection_latency_interleaved(
    bench: &Bench,
    waiters: &[Waiter],
    runs: usize,
) -> Vec<LatencySeries> {
    let mut all: Vec<LatencySeries> = waiters
        .iter()
        .map(|w| LatencySeries {
            label: w.label(),
            runs: Vec::new(),
            failures: Vec::new(),
            note: None,
        })
        .collect();
    let root = bench.scratch.join(format!("latency-{}", fastrand::u64(..)));
    for i in 0..runs {
        for (w, (waiter, series)) in waiters.iter().zip(all.iter_mut()).enumerate() {
            let dir = root.join(format!("run-{i}-{w}"));
            std::fs::create_dir_all(&dir).expect("create the mount directory");
            match latency_run(bench, *waiter, &dir) {
                Ok(run) => series.runs.push(run),
                Err(e) => series.failures.push(e),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    all
}

/// `inotifywait -e moved_to D`, which exits after the first such event.
fn inotifywait(dir: &Path) -> std::process::Command {
    let mut cmd = command("inotifywait");
    cmd.args(["-e", "moved_to", "--timeout", "60"]).arg(dir);
    cmd
}

fn latency_run(bench: &Bench, waiter: Waiter, dir: &Path) -> Result<LatencyRun, String> {
    let mut proc = match waiter {
        Waiter::Gate(build) => {
            let p = Running::spawn_watching_stderr(
                &mut gate_build_watch(bench, build, dir)?,
                &["not ready yet", READY_LINE],
            );
            if p.wait_marker(0, Duration::from_secs(10)).is_none() {
                return Err(format!(
                    "the gate never said it was waiting: {}",
                    p.stderr_text()
                ));
            }
            p
        }
        Waiter::Inotifywait => {
            let p = Running::spawn_watching_stderr(&mut inotifywait(dir), &["Watches established"]);
            if p.wait_marker(0, Duration::from_secs(10)).is_none() {
                return Err(format!(
                    "inotifywait never established its watch (is inotify-tools installed?): {}",
                    p.stderr_text()
                ));
            }
            p
        }
        Waiter::Shell { interval_s } => {
            let p = Running::spawn(&mut shell_loop(dir, interval_s));
            // The loop checks at once on start; let it get going.
            std::thread::sleep(Duration::from_millis(100));
            p
        }
    };
    let phase_ms = fastrand::u64(0..waiter.phase_span_ms());
    std::thread::sleep(Duration::from_millis(phase_ms));
    if let Some((_, status)) = proc.try_exit() {
        return Err(format!("exited before the file was written: {status}"));
    }
    let tmp = dir.join(".s.json.tmp");
    std::fs::write(&tmp, READY_JSON).map_err(|e| e.to_string())?;
    let renamed = Instant::now();
    std::fs::rename(&tmp, dir.join("s.json")).map_err(|e| e.to_string())?;
    let limit = Duration::from_secs(waiter.phase_span_ms() / 1000 + 10);
    match proc.wait_timeout(limit) {
        Some((exited, status)) if status.success() => Ok(LatencyRun {
            phase: Duration::from_millis(phase_ms),
            latency_ms: ms_between(renamed, exited),
            decided_ms: matches!(waiter, Waiter::Gate(_))
                .then(|| proc.wait_marker(1, Duration::from_secs(1)))
                .flatten()
                .map(|t| ms_between(renamed, t)),
        }),
        Some((_, status)) => Err(format!("exited {status}: {}", proc.stderr_text())),
        None => {
            proc.kill();
            Err(format!("no exit within {limit:?} of the rename"))
        }
    }
}

/// Milliseconds from `a` to `b` (0 if `b` is earlier).
pub fn ms_between(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64() * 1000.0
}

/// One idle-footprint run (figure 3).
#[derive(Debug, Clone)]
pub struct IdleRun {
    pub peak_rss: u64,
    /// CPU from start to the ~0.5 s sample, ms.
    pub startup_cpu_ms: f64,
    /// CPU from the ~0.5 s sample to the 10 s sample, ms.
    pub idle_cpu_ms: f64,
    /// CPU from start to the 10 s sample, ms.
    pub total_cpu_ms: f64,
    pub threads: usize,
    /// Notes: imprecise source, threads that exited, requests made.
    pub note: String,
}

/// Figure 3 for one contender.
#[derive(Debug, Clone)]
pub struct IdleSeries {
    pub label: String,
    pub runs: Vec<IdleRun>,
    pub failures: Vec<String>,
}

impl IdleSeries {
    /// A series not measured in this run (`BENCH_ONLY`).
    pub fn skipped() -> Self {
        Self {
            label: "not run (BENCH_ONLY)".into(),
            runs: Vec::new(),
            failures: Vec::new(),
        }
    }
}

/// Samples `proc` at `first` and `last` after its start, then kills it.
/// `with_children` adds the CPU of reaped children (for the shell loop,
/// whose `sleep` processes do part of its work).
pub fn idle_run(
    proc: &mut Running,
    first: Duration,
    last: Duration,
    with_children: bool,
    ticks: u64,
) -> Result<IdleRun, String> {
    let at = |d: Duration| proc.started + d;
    std::thread::sleep(at(first).saturating_duration_since(Instant::now()));
    let early = procfs::sample(proc.pid);
    std::thread::sleep(at(last).saturating_duration_since(Instant::now()));
    let late = procfs::sample(proc.pid);
    let exited = proc.try_exit();
    proc.kill();
    if let Some((_, status)) = exited {
        return Err(format!("exited before the last sample: {status}"));
    }
    let cpu_total = late.cpu_ns(ticks).ok_or("no CPU figures in /proc")?;
    let cpu_early = early.cpu_ns(ticks).ok_or("no CPU figures in /proc")?;
    let delta = late.cpu_since(&early, ticks).ok_or("no CPU figures")?;
    let (mut idle, mut total, mut startup) = (delta.ns, cpu_total, cpu_early);
    let mut note = String::new();
    if !delta.precise {
        note.push_str("utime+stime ticks; ");
    }
    if delta.threads_gone > 0 {
        let _ = write!(
            note,
            "{} thread(s) exited between samples; ",
            delta.threads_gone
        );
    }
    if with_children {
        let (c_early, c_late) = (
            early.children_cpu_ns(ticks).unwrap_or(0),
            late.children_cpu_ns(ticks).unwrap_or(0),
        );
        idle += c_late.saturating_sub(c_early);
        total += c_late;
        startup += c_early;
        note.push_str("includes reaped `sleep` children (10 ms ticks); ");
    }
    Ok(IdleRun {
        peak_rss: late.peak_rss.ok_or("no VmHWM in /proc")?,
        startup_cpu_ms: ns_to_ms(startup),
        idle_cpu_ms: ns_to_ms(idle),
        total_cpu_ms: ns_to_ms(total),
        threads: late
            .threads
            .as_ref()
            .map_or(0, std::collections::BTreeMap::len),
        note: note.trim_end_matches("; ").to_owned(),
    })
}

/// Nanoseconds to milliseconds.
pub fn ns_to_ms(ns: u64) -> f64 {
    Duration::from_nanos(ns).as_secs_f64() * 1000.0
}

/// Figure 3, volume mode: the gate on a directory that never becomes
/// ready, and the `sleep 1` shell loop on the same.
pub fn idle(bench: &Bench, runs: usize) -> [IdleSeries; 2] {
    let dir = bench.scratch.join("idle-volume");
    std::fs::create_dir_all(&dir).expect("create the idle mount");
    let mut gate = IdleSeries {
        label: "secret-gate watch".into(),
        runs: Vec::new(),
        failures: Vec::new(),
    };
    let mut shell = IdleSeries {
        label: "shell loop, `sleep 1` (sh + its `sleep` children)".into(),
        runs: Vec::new(),
        failures: Vec::new(),
    };
    for i in 0..runs {
        let mut cmd = gate_watch(bench, &dir);
        stderr_to(&mut cmd, &bench.scratch.join(format!("idle-watch-{i}.log")));
        let mut p = Running::spawn(&mut cmd);
        push(
            &mut gate,
            idle_run(&mut p, bench.first_sample, bench.idle, false, bench.ticks),
        );
        let mut p = Running::spawn(&mut shell_loop(&dir, 1));
        push(
            &mut shell,
            idle_run(&mut p, bench.first_sample, bench.idle, true, bench.ticks),
        );
    }
    [gate, shell]
}

fn push(series: &mut IdleSeries, run: Result<IdleRun, String>) {
    match run {
        Ok(r) => series.runs.push(r),
        Err(e) => series.failures.push(e),
    }
}

/// One row of figure 5.
#[derive(Debug, Clone)]
pub struct ScaleSeries {
    pub label: String,
    pub wall_ms: Vec<f64>,
    pub failures: Vec<String>,
}

/// A prepared `check` (or reference) command line.
struct Case {
    label: String,
    args: Vec<String>,
}

/// Figure 5: wall time of `secret-gate check` from spawn to exit.
/// Cases are interleaved run by run so drift in the machine hits all alike.
pub fn scale(bench: &Bench, runs: usize) -> Vec<ScaleSeries> {
    let root = bench.scratch.join("scale");
    let mut cases = vec![Case {
        label: "`secret-gate --version` (process start, no check)".into(),
        args: vec!["--version".into()],
    }];
    for n in [1_usize, 100, 1000] {
        let dir = root.join(format!("keys-{n}"));
        std::fs::create_dir_all(&dir).expect("create the scale directory");
        let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
        for k in &keys {
            write_old(&dir.join(k), "value");
        }
        cases.push(Case {
            label: format!(
                "`check`, {n} required file{} (one file per key)",
                if n == 1 { "" } else { "s" }
            ),
            args: check_args(&dir, None, &keys.join(","), None),
        });
    }
    let dir = root.join("json");
    std::fs::create_dir_all(&dir).expect("create the JSON directory");
    write_old(&dir.join("small.json"), &small_json());
    let big = big_json(1 << 20);
    write_old(&dir.join("big.json"), &big);
    cases.push(Case {
        label: format!(
            "`check`, small JSON ({} B), key at the end",
            small_json().len()
        ),
        args: check_args(&dir, Some("small.json"), "zz_last", None),
    });
    cases.push(Case {
        label: format!("`check`, 1 MiB JSON ({} B), key at the end", big.len()),
        args: check_args(&dir, Some("big.json"), "zz_last", Some("2MiB")),
    });

    let mut out: Vec<ScaleSeries> = cases
        .iter()
        .map(|c| ScaleSeries {
            label: c.label.clone(),
            wall_ms: Vec::new(),
            failures: Vec::new(),
        })
        .collect();
    let log = bench.scratch.join("scale.log");
    for _ in 0..runs {
        for (case, series) in cases.iter().zip(out.iter_mut()) {
            let mut cmd = command(&bench.gate);
            cmd.args(&case.args);
            stderr_to(&mut cmd, &log);
            let mut p = Running::spawn(&mut cmd);
            match p.wait_timeout(Duration::from_secs(30)) {
                Some((t, s)) if s.success() => series.wall_ms.push(ms_between(p.started, t)),
                Some((_, s)) => series.failures.push(format!(
                    "exit {s}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )),
                None => series.failures.push("no exit within 30 s".into()),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    out
}

/// Writes a file dated an hour ago, like a volume filled long before the
/// check runs, so no settle time (`--settle-time`) applies.
pub fn write_old(path: &Path, contents: &str) {
    std::fs::write(path, contents).expect("write a secret file");
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open a secret file");
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .expect("date a secret file");
}

fn check_args(dir: &Path, file: Option<&str>, keys: &str, max: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "check".to_owned(),
        "--mount-path".to_owned(),
        path_arg(dir),
        "--required-keys".to_owned(),
        keys.to_owned(),
        "--termination-log".to_owned(),
        path_arg(&dir.join("termination-log")),
        // The figure measures the scan: a file that can be cut short (the
        // raw one-per-key files here) otherwise waits the settle time once.
        "--settle-time".to_owned(),
        "0s".to_owned(),
    ];
    if let Some(f) = file {
        args.extend(["--file".to_owned(), f.to_owned()]);
    }
    if let Some(m) = max {
        args.extend(["--max-file-size".to_owned(), m.to_owned()]);
    }
    args
}

fn path_arg(p: &Path) -> String {
    p.to_str().expect("scratch paths are UTF-8").to_owned()
}

fn small_json() -> String {
    r#"{"user":"u","password":"p","host":"db.example","port":5432,"zz_last":"v"}"#.to_owned()
}

/// A JSON object of about `size` bytes whose last key is `zz_last`.
fn big_json(size: usize) -> String {
    let mut s = String::with_capacity(size + 64);
    s.push('{');
    let mut i = 0;
    while s.len() < size - 64 {
        let _ = write!(s, r#""k{i:07}":"{}","#, "x".repeat(48));
        i += 1;
    }
    s.push_str(r#""zz_last":"v"}"#);
    s
}

/// Where the scratch directories go: tmpfs when available, like an
/// `emptyDir` with `medium: Memory`.
pub fn scratch_parent() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if tempfile::tempdir_in(shm).is_ok() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn big_json_is_valid_and_ends_with_the_key() {
        use super::big_json;
        let text = big_json(1 << 16);
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["zz_last"], "v");
        assert!(text.len() <= 1 << 16 && text.len() > (1 << 16) - 128);
    }
}

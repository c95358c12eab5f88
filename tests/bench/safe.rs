//! Safe mode against the shipped fake Safe: time to ready (figure 2), idle
//! footprint (figure 3), 200 gates at once (figure 6) and 1,000 in-process
//! gates against a booting Safe (figure 6b).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use secret_gate::config::{Config, Mode};
use secret_gate::report::Progress;
use secret_gate::safe::client::SafeClient;
use secret_gate::safe::SafeConfig;

use crate::process::{command, stderr_to, Running};
use crate::procfs;
use crate::volume::{idle_run, ms_between, ns_to_ms, IdleSeries};
use crate::Bench;

/// The workload of the fake's default SVID.
const WORKLOAD: &str = "example";
/// What gets registered.
const SECRET: &str = r#"{"username":"u","password":"p"}"#;
/// VSecM's init-container poll interval.
pub const VSECM_INTERVAL: Duration = Duration::from_secs(5);

/// A running `fake-safe serve`, stopped when dropped.
pub struct FakeSafe {
    pub dir: PathBuf,
    bin: PathBuf,
    proc: Running,
    pub socket: String,
    pub url: String,
    pub trust_domain: String,
}

impl FakeSafe {
    /// Starts a fake with a fresh state directory `<scratch>/<name>` and
    /// waits (at most 30 s) until it has written `DIR/env`.
    pub fn start(bench: &Bench, name: &str) -> Result<Self, String> {
        Self::start_with(bench, name, &[])
    }

    /// [`Self::start`] with extra `fake-safe serve` arguments.
    pub fn start_with(bench: &Bench, name: &str, extra: &[&str]) -> Result<Self, String> {
        let dir = bench.scratch.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut cmd = command(&bench.fake);
        cmd.args(["serve", "--state-dir"]).arg(&dir).args(extra);
        stderr_to(&mut cmd, &dir.join("fake-safe.log"));
        let mut proc = Running::spawn(&mut cmd);
        let env_path = dir.join("env");
        let limit = Instant::now() + Duration::from_secs(30);
        while !env_path.exists() {
            if proc.try_exit().is_some() || Instant::now() > limit {
                return Err(format!(
                    "fake-safe did not start: {}",
                    std::fs::read_to_string(dir.join("fake-safe.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = std::fs::read_to_string(&env_path).map_err(|e| e.to_string())?;
        let var = |name: &str| {
            parse_env(&text, name).ok_or_else(|| format!("no {name} in {}", env_path.display()))
        };
        Ok(Self {
            socket: var("SPIFFE_ENDPOINT_SOCKET")?,
            url: var("VSECM_SAFE_ENDPOINT_URL")?,
            trust_domain: var("SPIFFE_TRUST_DOMAIN")?,
            bin: bench.fake.clone(),
            dir,
            proc,
        })
    }

    /// The fake's endpoints, as a pod would get them.
    pub fn env(&self, cmd: &mut Command) {
        cmd.env("SPIFFE_ENDPOINT_SOCKET", &self.socket)
            .env("VSECM_SAFE_ENDPOINT_URL", &self.url)
            .env("SPIFFE_TRUST_DOMAIN", &self.trust_domain);
    }

    /// Registers the workload's secret with `fake-safe register`.
    pub fn register(&self) -> Result<(), String> {
        register(&self.bin, &self.dir)
    }

    /// `<unix µs> <status>` lines of `requests.log`.
    pub fn requests(&self) -> Vec<(u64, u16)> {
        let text = std::fs::read_to_string(self.dir.join("requests.log")).unwrap_or_default();
        parse_requests(&text)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid
    }
}

fn register(bin: &Path, dir: &Path) -> Result<(), String> {
    let out = command(bin)
        .args(["register", "--state-dir"])
        .arg(dir)
        .args(["--workload", WORKLOAD, "--value", SECRET])
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "fake-safe register: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The value of `export NAME=VALUE` in the fake's env file, unquoted.
#[must_use]
pub fn parse_env(text: &str, name: &str) -> Option<String> {
    crate::fake::parse_env(text).remove(name)
}

/// Parses `requests.log`, skipping lines that are not `<µs> <status>`.
#[must_use]
pub fn parse_requests(text: &str) -> Vec<(u64, u16)> {
    text.lines()
        .filter_map(|line| {
            let (at, status) = line.split_once(' ')?;
            Some((at.parse().ok()?, status.trim().parse().ok()?))
        })
        .collect()
}

fn unix_micros(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()).unwrap_or(0)
}

fn gate_safe(bench: &Bench, fake: &FakeSafe) -> Command {
    let mut cmd = command(&bench.gate);
    cmd.args([
        "safe",
        "--required-keys",
        "username,password",
        "--timeout",
        "60s",
        "--termination-log",
    ])
    .arg(bench.scratch.join("termination-log"));
    fake.env(&mut cmd);
    cmd
}

/// Figure 2 for one contender: spawn-to-exit times in ms.
#[derive(Debug, Clone)]
pub struct ReadySeries {
    pub label: String,
    pub ms: Vec<f64>,
    pub failures: Vec<String>,
}

impl ReadySeries {
    /// A series not measured in this run (`BENCH_ONLY`).
    pub fn skipped() -> Self {
        Self {
            label: "not run (BENCH_ONLY)".into(),
            ms: Vec::new(),
            failures: Vec::new(),
        }
    }
}

/// Figure 2: the secret is registered before the gate starts.
pub fn time_to_ready(bench: &Bench, runs: usize, model_runs: usize) -> [ReadySeries; 2] {
    let mut gate = ReadySeries {
        label: "secret-gate safe".into(),
        ms: Vec::new(),
        failures: Vec::new(),
    };
    let mut model = ReadySeries {
        label: "VSecM model: 5 s ticker, then one fetch (`sleep 5; exec secret-gate safe`)".into(),
        ms: Vec::new(),
        failures: Vec::new(),
    };
    let fake = match FakeSafe::start(bench, "ready").and_then(|f| f.register().map(|()| f)) {
        Ok(f) => f,
        Err(e) => {
            gate.failures.push(e.clone());
            model.failures.push(e);
            return [gate, model];
        }
    };
    let log = fake.dir.join("gate.log");
    let one = |cmd: &mut Command, series: &mut ReadySeries| {
        stderr_to(cmd, &log);
        let mut p = Running::spawn(cmd);
        match p.wait_timeout(Duration::from_secs(30)) {
            Some((t, s)) if s.success() => series.ms.push(ms_between(p.started, t)),
            Some((_, s)) => series.failures.push(format!(
                "exit {s}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )),
            None => series.failures.push("no exit within 30 s".into()),
        }
    };
    for _ in 0..runs {
        one(&mut gate_safe(bench, &fake), &mut gate);
    }
    for _ in 0..model_runs {
        let mut cmd = gate_safe(bench, &fake);
        let gate_args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
        let mut sh = command("sh");
        sh.args(["-c", r#"sleep 5; exec "$0" "$@""#])
            .arg(&bench.gate)
            .args(gate_args);
        fake.env(&mut sh);
        cmd = sh;
        one(&mut cmd, &mut model);
    }
    [gate, model]
}

/// Figure 3, safe mode: the gate against a fake that answers 404.
pub fn idle(bench: &Bench, runs: usize) -> IdleSeries {
    let mut series = IdleSeries {
        label: "secret-gate safe (Safe answers 404)".into(),
        runs: Vec::new(),
        failures: Vec::new(),
    };
    let fake = match FakeSafe::start(bench, "idle") {
        Ok(f) => f,
        Err(e) => {
            series.failures.push(e);
            return series;
        }
    };
    for i in 0..runs {
        let before = fake.requests().len();
        let mut cmd = gate_safe(bench, &fake);
        stderr_to(&mut cmd, &fake.dir.join(format!("idle-{i}.log")));
        let mut p = Running::spawn(&mut cmd);
        match idle_run(&mut p, bench.first_sample, bench.idle, false, bench.ticks) {
            Ok(mut run) => {
                let requests = fake.requests().len() - before;
                if !run.note.is_empty() {
                    run.note.push_str("; ");
                }
                let _ = write!(run.note, "{requests} requests to the Safe");
                series.runs.push(run);
            }
            Err(e) => series.failures.push(e),
        }
    }
    series
}

/// Figure 6 for one contender.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub label: String,
    pub clients: usize,
    /// First to last process start (the ticker model reuses the gates' start offsets).
    pub start_span_ms: f64,
    /// Requests per 1 s bucket from t0.
    pub buckets: Vec<usize>,
    pub total: usize,
    pub before_registration: usize,
    /// From t0 to the request that completed the first round (one per client).
    pub first_round_ms: Option<f64>,
    /// From registration to each client's exit (gate) or success (model).
    pub latencies_ms: Vec<f64>,
    pub failures: Vec<String>,
    /// From t0 to the last exit or success.
    pub span_ms: f64,
    /// Model only: how long before the registration the clients' last
    /// shared tick was (taken at the median start offset).
    pub registered_after_tick_ms: Option<f64>,
    /// CPU seconds of the clients (gate processes, or the harness thread
    /// running the model) and of the fake Safe, over the run.
    pub clients_cpu_s: f64,
    pub fake_cpu_s: f64,
}

impl LoadResult {
    pub fn peak(&self, from: usize) -> Option<(usize, usize)> {
        self.buckets
            .iter()
            .copied()
            .enumerate()
            .skip(from)
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
            .map(|(i, n)| (n, i))
    }

    /// Requests per second over `[from, to)` seconds after t0.
    pub fn rate(&self, from: usize, to: usize) -> f64 {
        let n: usize = self.buckets.iter().skip(from).take(to - from).sum();
        crate::stats::count(n) / crate::stats::count(to - from)
    }

    /// Records each client's outcome (its latency from `event`) and the
    /// span from `t0` to the last client ready.
    fn record(&mut self, outcomes: Vec<Result<Instant, String>>, event: Instant, t0: Instant) {
        let mut last = event;
        for outcome in outcomes {
            match outcome {
                Ok(t) => {
                    self.latencies_ms.push(ms_between(event, t));
                    last = last.max(t);
                }
                Err(e) => self.failures.push(e),
            }
        }
        self.span_ms = ms_between(t0, last);
    }

    /// Records the CPU used by this process (`me`) since `before`, and by
    /// the fake Safe over its life.
    fn count_cpu(&mut self, bench: &Bench, me: u32, before: &procfs::Sample, fake: u32) {
        let after = procfs::sample(me);
        let own = |s: &procfs::Sample| {
            s.stat
                .map_or(0, |t| procfs::ticks_to_ns(t.utime + t.stime, bench.ticks))
        };
        self.clients_cpu_s = ns_to_ms(own(&after).saturating_sub(own(before))) / 1000.0;
        self.fake_cpu_s = ns_to_ms(procfs::sample(fake).cpu_ns(bench.ticks).unwrap_or(0)) / 1000.0;
    }

    fn analyse(&mut self, requests: &[(u64, u16)], t0: u64, registered: u64) {
        self.total = requests.len();
        self.before_registration = requests.iter().filter(|(at, _)| *at < registered).count();
        for &(at, _) in requests {
            let second = usize::try_from(at.saturating_sub(t0) / 1_000_000).unwrap_or(0);
            if self.buckets.len() <= second {
                self.buckets.resize(second + 1, 0);
            }
            self.buckets[second] += 1;
        }
        let mut times: Vec<u64> = requests.iter().map(|(at, _)| *at).collect();
        times.sort_unstable();
        self.first_round_ms = times
            .get(self.clients.saturating_sub(1))
            .map(|&at| Duration::from_micros(at.saturating_sub(t0)).as_secs_f64() * 1000.0);
    }
}

/// Figure 6, secret-gate: `n` gates at once, registration at `register_at`.
pub fn load_gates(bench: &Bench, n: usize, register_at: Duration) -> (LoadResult, Vec<Duration>) {
    let mut result = LoadResult {
        label: format!("{n} × `secret-gate safe` (default policy)"),
        clients: n,
        ..LoadResult::default()
    };
    let fake = match FakeSafe::start(bench, "load-gates") {
        Ok(f) => f,
        Err(e) => {
            result.failures.push(e);
            return (result, Vec::new());
        }
    };
    let me = std::process::id();
    let before = procfs::sample(me);
    let (t0, t0_wall) = (Instant::now(), SystemTime::now());
    let mut gates: Vec<Running> = (0..n)
        .map(|i| {
            let mut cmd = gate_safe(bench, &fake);
            stderr_to(&mut cmd, &fake.dir.join(format!("gate-{i}.log")));
            Running::spawn(&mut cmd)
        })
        .collect();
    let offsets: Vec<Duration> = gates.iter().map(|g| g.started - t0).collect();
    result.start_span_ms = offsets.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    std::thread::sleep((t0 + register_at).saturating_duration_since(Instant::now()));
    let (registered, registered_wall) = (Instant::now(), SystemTime::now());
    if let Err(e) = fake.register() {
        result.failures.push(e);
    }
    let deadline = registered + Duration::from_secs(45);
    let outcomes = gates
        .iter_mut()
        .enumerate()
        .map(|(i, gate)| {
            match gate.wait_timeout(deadline.saturating_duration_since(Instant::now())) {
                Some((t, s)) if s.success() => Ok(t),
                Some((_, s)) => Err(format!(
                    "gate {i} exited {s}: {}",
                    std::fs::read_to_string(fake.dir.join(format!("gate-{i}.log")))
                        .unwrap_or_default()
                )),
                None => {
                    gate.kill();
                    Err(format!("gate {i}: no exit within 45 s of registration"))
                }
            }
        })
        .collect();
    result.record(outcomes, registered, t0);
    let fake_cpu = procfs::sample(fake.pid()).cpu_ns(bench.ticks).unwrap_or(0);
    drop(gates);
    let after = procfs::sample(me);
    result.clients_cpu_s = ns_to_ms(
        after
            .children_cpu_ns(bench.ticks)
            .unwrap_or(0)
            .saturating_sub(before.children_cpu_ns(bench.ticks).unwrap_or(0)),
    ) / 1000.0;
    result.fake_cpu_s = ns_to_ms(fake_cpu) / 1000.0;
    result.analyse(
        &fake.requests(),
        unix_micros(t0_wall),
        unix_micros(registered_wall),
    );
    (result, offsets)
}

/// Figure 6, baseline: VSecM's init container modelled in the harness with
/// the crate's own client. Each client starts at the same offset as the
/// corresponding gate did, waits one 5 s interval, then on every tick
/// builds a fresh client (a new X509Source, as VSecM does per tick) and
/// makes one attempt, until the Safe returns a non-empty secret.
pub fn load_vsecm_model(bench: &Bench, offsets: &[Duration], register_at: Duration) -> LoadResult {
    let n = offsets.len();
    let mut sorted = offsets.to_vec();
    sorted.sort_unstable();
    let median_offset = sorted.get(n / 2).copied().unwrap_or_default();
    let since_tick =
        register_at.saturating_sub(median_offset).as_millis() % VSECM_INTERVAL.as_millis();
    let mut result = LoadResult {
        registered_after_tick_ms: u32::try_from(since_tick).ok().map(f64::from),
        label: format!("VSecM model: {n} × fixed 5 s ticker, first fetch after 5 s"),
        clients: n,
        start_span_ms: offsets.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        ..LoadResult::default()
    };
    let fake = match FakeSafe::start(bench, "load-model") {
        Ok(f) => f,
        Err(e) => {
            result.failures.push(e);
            return result;
        }
    };
    let config = match safe_config(&fake, &[]) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            result.failures.push(e);
            return result;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let me = std::process::id();
    let before = procfs::sample(me);
    let (t0, t0_wall) = (Instant::now(), SystemTime::now());
    let give_up = t0 + register_at + Duration::from_secs(45);
    let (bin, dir) = (bench.fake.clone(), fake.dir.clone());
    let (registered, registered_wall, outcomes) = runtime.block_on(async move {
        let mut set = tokio::task::JoinSet::new();
        for (i, offset) in offsets.iter().enumerate() {
            let config = Arc::clone(&config);
            let start = t0 + *offset;
            set.spawn(async move { (i, ticker(config, start, give_up).await) });
        }
        tokio::time::sleep_until((t0 + register_at).into()).await;
        let (registered, registered_wall) = (Instant::now(), SystemTime::now());
        let reg = tokio::task::spawn_blocking(move || register(&bin, &dir)).await;
        let mut outcomes = vec![Err("did not finish".to_owned()); offsets.len()];
        if let Ok(Err(e)) | Err(e) = reg.map_err(|e| e.to_string()) {
            outcomes.push(Err(e));
        }
        while let Some(joined) = set.join_next().await {
            if let Ok((i, outcome)) = joined {
                outcomes[i] = outcome;
            }
        }
        (registered, registered_wall, outcomes)
    });
    result.record(outcomes, registered, t0);
    result.count_cpu(bench, me, &before, fake.pid());
    result.analyse(
        &fake.requests(),
        unix_micros(t0_wall),
        unix_micros(registered_wall),
    );
    result
}

/// The `SafeConfig` a gate with default settings (plus `extra`) would run
/// with, pointed at `fake`.
fn safe_config(fake: &FakeSafe, extra: &[&str]) -> Result<SafeConfig, String> {
    let args = [
        "secret-gate",
        "safe",
        "--spiffe-endpoint-socket",
        &fake.socket,
        "--safe-endpoint-url",
        &fake.url,
        "--trust-domain",
        &fake.trust_domain,
    ];
    let cli = secret_gate::cli::parse_from(args.iter().chain(extra)).map_err(|e| e.short_text())?;
    match Config::from_cli(&cli, None)
        .map_err(|e| e.to_string())?
        .mode
    {
        Mode::Safe(config) => Ok(*config),
        other => Err(format!("expected safe mode, got {other:?}")),
    }
}

/// Figure 6b: `n` clients that all start at once against a fresh fake
/// that has the secret registered but answers 503 for its first
/// `unavailable` (a booting Safe, without `Retry-After`, as VSecM sends
/// none). `gates`: each client is the gate's own wait loop
/// (`secret_gate::safe::wait_ready`, default policy, its own client and
/// X.509 source), run in-process; otherwise VSecM's ticker as in
/// [`load_vsecm_model`]. Latencies run from the end of the 503 window.
pub fn load_booting_safe(
    bench: &Bench,
    n: usize,
    unavailable: Duration,
    gates: bool,
) -> LoadResult {
    let mut result = LoadResult {
        label: if gates {
            format!("{n} × the gate's wait loop, in-process (default policy)")
        } else {
            format!("VSecM model: {n} × fixed 5 s ticker, first fetch after 5 s")
        },
        clients: n,
        ..LoadResult::default()
    };
    let name = if gates { "boot-gates" } else { "boot-model" };
    let window = format!("{}ms", unavailable.as_millis());
    let fake = match FakeSafe::start_with(bench, name, &["--unavailable-for", &window])
        .and_then(|f| f.register().map(|()| f))
    {
        Ok(f) => f,
        Err(e) => {
            result.failures.push(e);
            return result;
        }
    };
    // The window opened when the fake bound its port, just before it wrote
    // DIR/env: taking "now" as its start makes the window look a little
    // longer than it is, never shorter.
    let (up, up_wall) = (
        Instant::now() + unavailable,
        SystemTime::now() + unavailable,
    );
    let config = match safe_config(&fake, &["--required-keys", "username,password"]) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            result.failures.push(e);
            return result;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let me = std::process::id();
    let before = procfs::sample(me);
    let (t0, t0_wall) = (Instant::now(), SystemTime::now());
    let give_up = up + Duration::from_secs(45);
    let outcomes: Vec<Result<Instant, String>> = runtime.block_on(async {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let mut set = tokio::task::JoinSet::new();
                for i in 0..n {
                    let config = Arc::clone(&config);
                    if gates {
                        set.spawn_local(async move {
                            let progress = Progress::new();
                            let wait = secret_gate::safe::wait_ready(&config, &progress);
                            let limit = give_up.saturating_duration_since(Instant::now());
                            let done = tokio::time::timeout(limit, wait).await;
                            (
                                i,
                                done.map(|()| Instant::now()).map_err(|_| {
                                    "gate: not ready within 45 s of the Safe coming up".to_owned()
                                }),
                            )
                        });
                    } else {
                        set.spawn_local(async move { (i, ticker(config, t0, give_up).await) });
                    }
                }
                let mut outcomes = vec![Err("did not finish".to_owned()); n];
                while let Some(joined) = set.join_next().await {
                    if let Ok((i, outcome)) = joined {
                        outcomes[i] = outcome;
                    }
                }
                outcomes
            })
            .await
    });
    result.record(outcomes, up, t0);
    result.count_cpu(bench, me, &before, fake.pid());
    result.analyse(&fake.requests(), unix_micros(t0_wall), unix_micros(up_wall));
    result
}

/// The poll interval and back-off cap of `secret-gate safe` with no flags, read
/// through the crate's own CLI and config (so the text cannot drift).
pub fn default_backoff() -> Option<(Duration, Duration)> {
    let cli = secret_gate::cli::parse_from(["secret-gate", "safe"]).ok()?;
    match Config::from_cli(&cli, None).ok()?.mode {
        Mode::Safe(c) => Some((c.poll_interval, c.max_backoff)),
        _ => None,
    }
}

/// One VSecM-style init container: first check one interval after
/// `start`, then on every tick (missed ticks are dropped, as Go's ticker
/// does), ready when `data` is non-empty.
async fn ticker(
    config: Arc<SafeConfig>,
    start: Instant,
    give_up: Instant,
) -> Result<Instant, String> {
    let mut tick = start + VSECM_INTERVAL;
    loop {
        if tick > give_up {
            return Err("model: no secret before giving up".to_owned());
        }
        tokio::time::sleep_until(tick.into()).await;
        if SafeClient::new(&config).attempt().await.is_ok() {
            return Ok(Instant::now());
        }
        let now = Instant::now();
        while tick <= now {
            tick += VSECM_INTERVAL;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn env_file() {
        use super::parse_env;
        let text = "export SPIFFE_ENDPOINT_SOCKET='unix:///tmp/a b/agent.sock'\nexport VSECM_SAFE_ENDPOINT_URL=https://127.0.0.1:4000/\n";
        assert_eq!(
            parse_env(text, "SPIFFE_ENDPOINT_SOCKET").as_deref(),
            Some("unix:///tmp/a b/agent.sock")
        );
        assert_eq!(
            parse_env(text, "VSECM_SAFE_ENDPOINT_URL").as_deref(),
            Some("https://127.0.0.1:4000/")
        );
        assert_eq!(parse_env(text, "SPIFFE_TRUST_DOMAIN"), None);
    }

    #[test]
    fn request_buckets_and_peaks() {
        use super::{parse_requests, LoadResult};
        let log = "1000000 404\n1200000 404\n2100000 404\nbad line\n4000000 200\n";
        let requests = parse_requests(log);
        assert_eq!(requests.len(), 4);
        let mut r = LoadResult {
            clients: 2,
            ..LoadResult::default()
        };
        r.analyse(&requests, 1_000_000, 3_000_000);
        assert_eq!(r.buckets, [2, 1, 0, 1]);
        assert_eq!((r.total, r.before_registration), (4, 3));
        assert_eq!(r.peak(0), Some((2, 0)));
        assert_eq!(r.peak(1), Some((1, 1)));
        assert!((r.first_round_ms.unwrap() - 200.0).abs() < 1e-9);
        assert!((r.rate(0, 4) - 1.0).abs() < 1e-9);
    }
}

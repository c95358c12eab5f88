//! `make bench`: runs the real release binaries as processes, next to
//! baselines measured in the same run on the same machine, and writes
//! `docs/benchmarks.md`. Every figure is a median over repeated runs.
//!
//! - [`volume`]: detection latency against shell poll loops (figure 1),
//!   idle footprint (figure 3) and `check` as the selection grows (figure 5).
//! - [`safe`]: time to ready against a model of VSecM's init container
//!   (figure 2), idle footprint (figure 3), 200 gates at once (figure 6)
//!   and 1,000 in-process gates against a booting Safe (figure 6b), all
//!   against the shipped `fake-safe`.
//! - [`certs`]: `check` on TLS material against openssl on the same files
//!   (figure 7).
//! - [`inputs`]: what hostile 1 MiB inputs cost `check` (figure 8).
//! - [`sidecar`]: `watch --keep-running` idle over a long quiet spell, and
//!   a long run of kubelet-style rotations with one POST each (figure 9).
//! - [`inject`]: `secret-gate-injector inject` on 1,000 Deployments
//!   against a plain YAML round trip (figure 11).
//! - [`procfs`] reads peak RSS and CPU time from /proc; [`process`] runs
//!   and reaps processes with bounded waits; [`stats`] and [`report`] turn
//!   runs into the markdown.
//!
//! The binary under test is the production build, `cargo build --release
//! -p secret-gate`, which the harness runs itself ([`fake::build_bin`]) into
//! `<target>/release/secret-gate`. Not `CARGO_BIN_EXE_secret-gate`: for a
//! bench, cargo builds that binary with the features of the
//! dev-dependencies unified in (tokio's `test-util`, all of regex's), so
//! it is not what ships. The fake comes from the `fake-safe` package, built
//! the same way ([`fake::fake_safe_bin`]).
//!
//! `BENCH_QUICK=1` makes a short run with fewer repetitions for working on
//! the harness; it writes `<target>/bench/benchmarks-quick.md` and leaves
//! `docs/` alone. `BENCH_ONLY=safe` runs only the safe-mode figures (2, the
//! safe half of 3, 6 and 6b) and `BENCH_ONLY=6` only figure 6 and 6b; either
//! writes `<target>/bench/benchmarks-only.md` (or the quick file) and leaves
//! `docs/` alone.
//! `BENCH_ONLY=1` runs figure 1 alone and prints it.
//! `BENCH_ONLY=tls` runs figure 7 alone and prints it.
//! `BENCH_ONLY=inputs` runs figure 8 (hostile inputs and schemas) alone and
//! prints it.
//! `BENCH_ONLY=sidecar` runs figure 9 alone and prints it.
//! `BENCH_ONLY=probe` runs figure 10 (the probe port under 10,000 hostile
//! connections, [`probe`]) alone and prints it; `BENCH_ONLY=uploads` only
//! its webhook rows (256 uploads of 3 MiB).
//! `BENCH_ONLY=repro` prints figure 4's reproducibility table alone, from
//! the result `make repro` left in target/repro/result.json.
//! `BENCH_ONLY=inject` runs figure 11 (the injector) alone and prints it.
//! `BENCH_ONLY=webhook` runs figure 12 ([`webhook`]: the injector's
//! admission webhook against its `--bench-floor`) alone and prints it;
//! `BENCH_WEBHOOK_SECONDS` shortens each of its load runs (default 30 s,
//! 5 s with `BENCH_QUICK`).
//!
//! Cargo.toml sets `autotests = false`, so this file is only the bench
//! target (`harness = false`): the helpers' `#[cfg(test)]` unit tests are
//! kept for whoever works on the harness, and run only if it is built with
//! a test harness (`rustc --test`); no `make` target does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
#![cfg_attr(test, allow(dead_code))]

#[path = "../common/bounded.rs"]
mod bounded;
mod certs;
#[path = "../common/fake.rs"]
mod fake;
mod inject;
mod inputs;
#[path = "../common/pki.rs"]
mod pki;
mod probe;
mod process;
mod procfs;
mod report;
mod repro;
mod safe;
mod sidecar;
mod stats;
mod volume;
mod webhook;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use process::{command, Running};

/// What every measurement needs.
#[derive(Clone)]
pub struct Bench {
    /// The production `secret-gate`, as `cargo build --release` makes it.
    pub gate: PathBuf,
    /// `secret-gate` as the release image ships it (figure 1), or why it
    /// could not be built.
    pub gate_image: Result<PathBuf, String>,
    /// `fake-safe`, from this bench build.
    pub fake: PathBuf,
    /// A fresh directory for the run, on tmpfs when possible.
    pub scratch: PathBuf,
    /// Clock ticks per second, for `/proc/PID/stat`.
    pub ticks: u64,
    /// When the start-up sample of figure 3 is taken.
    pub first_sample: Duration,
    /// When the last sample of figure 3 is taken, and the process killed.
    pub idle: Duration,
}

/// How many runs of each measurement.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub latency_gate: usize,
    pub latency_sleep1: usize,
    pub latency_sleep5: usize,
    pub ready_gate: usize,
    pub ready_model: usize,
    pub idle_runs: usize,
    pub scale: usize,
    pub load_clients: usize,
    pub tls: usize,
    pub register_at: Duration,
    /// Figure 6b: in-process clients, and how long the Safe answers 503.
    pub boot_clients: usize,
    pub unavailable: Duration,
    /// When the start-up sample of figure 3 is taken.
    pub first_sample: Duration,
    /// When the last sample of figure 3 is taken, and the process killed.
    pub idle: Duration,
    /// Figure 7: the quiet spell of the keep-running gate, after 1 s.
    pub sidecar_idle: Duration,
    /// Figure 7: kubelet-style rotations in a row.
    pub rotations: usize,
    /// Figure 9: SPIRE agent restarts in a row.
    pub agent_restarts: usize,
    pub quick: bool,
}

impl Plan {
    /// Figure 10: probes per phase (every 50 ms).
    const fn probe_probes(&self) -> usize {
        if self.quick {
            60
        } else {
            200
        }
    }

    fn new(quick: bool) -> Self {
        if quick {
            Self {
                latency_gate: 5,
                latency_sleep1: 3,
                latency_sleep5: 2,
                ready_gate: 5,
                ready_model: 1,
                idle_runs: 1,
                scale: 3,
                load_clients: 20,
                tls: 5,
                register_at: Duration::from_secs(8),
                boot_clients: 100,
                unavailable: Duration::from_secs(10),
                first_sample: Duration::from_millis(500),
                idle: Duration::from_secs(10),
                sidecar_idle: Duration::from_secs(10),
                rotations: 300,
                agent_restarts: 10,
                quick,
            }
        } else {
            Self {
                latency_gate: 60,
                latency_sleep1: 10,
                latency_sleep5: 6,
                ready_gate: 20,
                ready_model: 6,
                idle_runs: 3,
                scale: 15,
                load_clients: 200,
                tls: 20,
                register_at: Duration::from_secs(20),
                boot_clients: 1000,
                unavailable: Duration::from_secs(10),
                first_sample: Duration::from_millis(500),
                idle: Duration::from_secs(10),
                sidecar_idle: Duration::from_secs(60),
                rotations: 10_000,
                agent_restarts: 20,
                quick,
            }
        }
    }
}

/// The machine and build the figures come from.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub usable_cores: usize,
    pub memory: String,
    pub kernel: String,
    pub date: String,
    pub rustc: String,
    pub commit: String,
    pub scratch_fs: String,
    pub load_before: String,
    pub load_after: String,
}

/// A built binary (figure 4).
#[derive(Debug, Clone)]
pub struct Artifact {
    pub path: PathBuf,
    pub bytes: u64,
    /// Whether the ELF file asks for a dynamic loader (`PT_INTERP`).
    pub dynamic: Option<bool>,
    /// Built before the last change to the sources.
    pub stale: bool,
}

/// The container image (figure 4).
#[derive(Debug, Clone)]
pub struct Image {
    pub bytes: u64,
    pub created: String,
    pub stale: bool,
}

/// Figure 4.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub release: Artifact,
    pub static_build: Option<Artifact>,
    /// The image, or why there is none.
    pub image: Result<Image, String>,
    /// The last `make repro`, or why there is none.
    pub repro: Result<repro::Repro, String>,
}

/// Everything measured, for the report.
pub struct Results {
    pub machine: Machine,
    pub plan: Plan,
    pub gate_path: String,
    pub latency: Vec<volume::LatencySeries>,
    pub ready: [safe::ReadySeries; 2],
    pub idle_volume: [volume::IdleSeries; 2],
    pub idle_safe: volume::IdleSeries,
    pub sizes: Sizes,
    pub scale: Vec<volume::ScaleSeries>,
    /// Figure 7: hostile inputs.
    pub inputs: Vec<inputs::InputSeries>,
    pub load: [safe::LoadResult; 2],
    /// Figure 6b: in-process gates and the VSecM model against a Safe that
    /// answers 503 for its first `plan.unavailable`.
    pub boot: [safe::LoadResult; 2],
    pub tls: certs::TlsFigure,
    /// Figure 9.
    pub sidecar: sidecar::SidecarResult,
    /// Figure 10.
    pub probe: probe::ProbeResult,
    /// Figure 11: the injector on 1,000 Deployments.
    pub inject: inject::InjectFigure,
    /// Figure 11: the injector's admission webhook.
    pub webhook: webhook::WebhookResult,
    /// When the secret was registered in figure 6, after the first start.
    pub register_at: Duration,
    /// `secret-gate safe`'s default back-off base and cap.
    pub backoff: Option<(Duration, Duration)>,
    pub elapsed: Duration,
}

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const IMAGE: &str = "localhost/secret-gate:dev";

#[expect(
    clippy::too_many_lines,
    reason = "one linear list of measurement steps, easier to read in one place"
)]
fn main() {
    let started = Instant::now();
    let quick = std::env::var_os("BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
    // Which figures to run: all, the safe-mode ones, or figure 6 alone.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only == "repro" {
        return repro::only(&machine(&volume::scratch_parent()).commit);
    }
    let (run_volume, run_safe_small) = match only.as_str() {
        "" | "1" | "tls" | "inputs" | "sidecar" | "probe" | "uploads" | "inject" | "webhook" => {
            (true, true)
        }
        "safe" => (false, true),
        "6" => (false, false),
        other => panic!(
            "BENCH_ONLY={other:?}: use 1, safe, 6, tls, inputs, sidecar, probe, uploads, inject, webhook or repro"
        ),
    };
    let plan = Plan::new(quick);
    let target = target_dir();
    // cargo builds the production binary for this run, so it is current
    // even when its mtime is older than an edit that did not change it.
    let override_bin = std::env::var_os("SECRET_GATE_BENCH_BIN");
    let cargo_built = override_bin.is_none();
    let gate = override_bin.map_or_else(
        || fake::build_bin("secret-gate", "secret-gate"),
        PathBuf::from,
    );
    if !cargo_built {
        check_fresh(&gate);
    }
    let fake = fake::fake_safe_bin().to_path_buf();
    let scratch_parent = volume::scratch_parent();
    let scratch = tempfile::Builder::new()
        .prefix("secret-gate-bench-")
        .tempdir_in(&scratch_parent)
        .expect("a scratch directory");
    let gate_image = if run_volume && matches!(only.as_str(), "" | "1") {
        image_gate()
    } else {
        Err("not built for this BENCH_ONLY".to_owned())
    };
    let bench = Bench {
        gate: gate.clone(),
        gate_image,
        fake,
        scratch: scratch.path().to_path_buf(),
        ticks: procfs::clock_ticks(),
        first_sample: plan.first_sample,
        idle: plan.idle,
    };
    let mut machine = machine(&scratch_parent);
    println!(
        "bench: {} on {} ({} cores), load {}",
        gate.display(),
        machine.cpu,
        machine.cores,
        machine.load_before
    );

    let step = |name: &str| println!("bench: [{:>5.1} s] {name}", started.elapsed().as_secs_f64());
    if only == "sidecar" {
        return only_sidecar(&bench, &plan);
    }
    if only == "probe" {
        return only_probe(&bench, &plan);
    }
    if only == "uploads" {
        return only_uploads(&bench, &plan);
    }
    if only == "tls" {
        only_tls(&bench, &plan, step);
        return;
    }
    if only == "inputs" {
        step("8/9 hostile inputs (BENCH_ONLY=inputs)");
        let mut text = String::new();
        report::figure8_only(&mut text, &inputs::input_cost(&bench, plan.scale.min(5)));
        println!("{text}");
        return;
    }
    if only == "1" {
        step("1 detection latency (BENCH_ONLY=1)");
        let latency = figure1(&bench, &plan);
        let mut text = String::new();
        report::figure1(&mut text, &latency);
        println!("{text}");
        return;
    }
    if only == "inject" {
        step("11 inject (BENCH_ONLY=inject)");
        let figure = figure11(&bench, &plan);
        let mut text = String::new();
        inject::render(&mut text, &figure);
        println!("{text}");
        return;
    }
    if only == "webhook" {
        step("12 admission webhook (BENCH_ONLY=webhook)");
        let result = webhook::webhook(&bench, webhook_duration(quick), 1);
        let mut text = String::new();
        webhook::render(&mut text, &result);
        println!("{text}");
        return;
    }
    step("1/9 detection latency, volume mode");
    let latency = if run_volume {
        figure1(&bench, &plan)
    } else {
        Vec::new()
    };
    step("2/9 time to ready, safe mode");
    let ready = if run_safe_small {
        safe::time_to_ready(&bench, plan.ready_gate, plan.ready_model)
    } else {
        [safe::ReadySeries::skipped(), safe::ReadySeries::skipped()]
    };
    step("3/9 idle footprint");
    let idle_volume = if run_volume {
        volume::idle(&bench, plan.idle_runs)
    } else {
        [volume::IdleSeries::skipped(), volume::IdleSeries::skipped()]
    };
    let idle_safe = if run_safe_small {
        safe::idle(&bench, plan.idle_runs)
    } else {
        volume::IdleSeries::skipped()
    };
    step("4/9 sizes");
    let sizes = sizes(&gate, cargo_built, &target);
    step("5/9 scale of check");
    let scale = if run_volume {
        volume::scale(&bench, plan.scale)
    } else {
        Vec::new()
    };
    step("8/9 hostile inputs");
    let inputs = if run_volume {
        inputs::input_cost(&bench, plan.scale.min(5))
    } else {
        Vec::new()
    };
    // A random phase within VSecM's 5 s tick, the same for both sides: at
    // a whole multiple of 5 s the model's lockstep ticks would race the
    // registration to the millisecond.
    let register_at = plan.register_at + Duration::from_millis(fastrand::u64(0..5000));
    step("6/9 safe load: gates");
    let (gates, offsets) = safe::load_gates(&bench, plan.load_clients, register_at);
    step("6/9 safe load: VSecM model");
    let model = safe::load_vsecm_model(&bench, &offsets, register_at);
    step("6/9 booting Safe: in-process gates");
    let boot_gates = safe::load_booting_safe(&bench, plan.boot_clients, plan.unavailable, true);
    step("6/9 booting Safe: VSecM model");
    let boot_model = safe::load_booting_safe(&bench, plan.boot_clients, plan.unavailable, false);
    step("7/9 TLS material");
    let tls = if run_volume {
        certs::tls(&bench, plan.tls)
    } else {
        certs::TlsFigure {
            series: Vec::new(),
            openssl: Err("not run (BENCH_ONLY)".to_owned()),
        }
    };
    step("9/9 keep-running: idle and rotations");
    let sidecar = if run_volume {
        sidecar::keep_running(&bench, &plan)
    } else {
        sidecar::SidecarResult::default()
    };
    step("10 the probe port under attack");
    let probe = if run_volume {
        probe::under_attack(&bench, plan.probe_probes())
    } else {
        probe::ProbeResult::default()
    };
    step("11 the injector on 1,000 Deployments");
    let inject = if run_volume {
        figure11(&bench, &plan)
    } else {
        inject::InjectFigure::default()
    };
    step("12 admission webhook");
    let webhook = if run_volume {
        webhook::webhook(&bench, webhook_duration(quick), if quick { 1 } else { 3 })
    } else {
        webhook::WebhookResult::default()
    };
    machine.load_after = loadavg();

    let results = Results {
        machine,
        plan,
        gate_path: relative_to_manifest(&gate),
        latency,
        ready,
        idle_volume,
        idle_safe,
        sizes,
        scale,
        inputs,
        load: [gates, model],
        boot: [boot_gates, boot_model],
        tls,
        sidecar,
        probe,
        inject,
        webhook,
        register_at,
        backoff: safe::default_backoff(),
        elapsed: started.elapsed(),
    };
    let text = report::render(&results);
    let partial = !only.is_empty();
    let out = if quick {
        target.join("bench/benchmarks-quick.md")
    } else if partial {
        target.join("bench/benchmarks-only.md")
    } else {
        Path::new(MANIFEST_DIR).join("docs/benchmarks.md")
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    let text = report::keep_fuzz_section(&text, &std::fs::read_to_string(&out).unwrap_or_default());
    std::fs::write(&out, &text).unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
    if !quick && !partial {
        update_readme_sizes(&results.sizes);
    }
    println!("{}", report::summary(&results));
    println!(
        "bench: wrote {} in {:.0} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
}

/// Each load run of figure 11: `BENCH_WEBHOOK_SECONDS`, else 30 s (5 s
/// quick).
fn webhook_duration(quick: bool) -> Duration {
    std::env::var("BENCH_WEBHOOK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(
            Duration::from_secs(if quick { 5 } else { 30 }),
            Duration::from_secs,
        )
}

/// `BENCH_ONLY=tls`: figure 7 alone, printed, nothing written.
fn only_tls(bench: &Bench, plan: &Plan, step: impl Fn(&str)) {
    step("7/9 TLS material (BENCH_ONLY=tls)");
    let tls = certs::tls(bench, plan.tls);
    let mut text = String::new();
    report::figure7(&mut text, &tls);
    println!("{text}");
}

/// Figure 11: the release injector, built here like the gate.
fn figure11(bench: &Bench, plan: &Plan) -> inject::InjectFigure {
    let injector = fake::build_bin("secret-gate-injector", "secret-gate-injector");
    inject::figure(bench, &injector, if plan.quick { 3 } else { 15 })
}

/// The musl target the release image's `Containerfile` builds for.
const IMAGE_TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds `secret-gate` for the release image's target and profile (the
/// `Containerfile` adds only cargo auditable's crate list) into
/// `<target>/<musl>/release`. An error names cargo's last line and what is
/// needed; `make bench` installs both.
fn image_gate() -> Result<PathBuf, String> {
    fake::try_build_bin("secret-gate", "secret-gate", Some(IMAGE_TARGET)).map_err(|e| {
        let last = e.lines().rev().find(|l| !l.trim().is_empty());
        format!(
            "cargo build --target {IMAGE_TARGET} failed ({}); it needs `rustup target add \
             {IMAGE_TARGET}` and musl-gcc (Debian's musl-tools), which `make bench` installs",
            last.unwrap_or("no output")
        )
    })
}

/// Figure 1: the gate as the image ships it, `inotifywait` and the gate as
/// `cargo build --release` makes it, interleaved; then the shell loops.
/// The first series is the gate the goal is about: the image's build, or
/// the release build where that could not be built (the text says so).
fn figure1(bench: &Bench, plan: &Plan) -> Vec<volume::LatencySeries> {
    use volume::{Build, Waiter};
    let waiters: &[Waiter] = if bench.gate_image.is_ok() {
        &[
            Waiter::Gate(Build::Image),
            Waiter::Inotifywait,
            Waiter::Gate(Build::Release),
        ]
    } else {
        &[Waiter::Gate(Build::Release), Waiter::Inotifywait]
    };
    let mut latency = volume::detection_latency_interleaved(bench, waiters, plan.latency_gate);
    // The shell loops go third and fourth, as the report reads them.
    let release = (latency.len() > 2).then(|| latency.remove(2));
    if let (Err(why), Some(first)) = (&bench.gate_image, latency.first_mut()) {
        first.note = Some(format!(
            "The release image's binary could not be built, so the first row is the `cargo build \
             --release` binary: {why}."
        ));
    }
    latency.extend([
        volume::detection_latency(
            bench,
            volume::Waiter::Shell { interval_s: 1 },
            plan.latency_sleep1,
        ),
        volume::detection_latency(
            bench,
            volume::Waiter::Shell { interval_s: 5 },
            plan.latency_sleep5,
        ),
    ]);
    latency.extend(release);
    latency
}

/// `BENCH_ONLY=probe`: figure 10 alone, printed to stdout.
fn only_probe(bench: &Bench, plan: &Plan) {
    println!("bench: 10 the probe port under attack");
    let result = probe::under_attack(bench, plan.probe_probes());
    let mut out = String::new();
    probe::figure(&mut out, &result);
    println!("{out}");
}

/// `BENCH_ONLY=uploads`: figure 10's webhook rows alone, printed to stdout.
fn only_uploads(bench: &Bench, plan: &Plan) {
    println!("bench: 10 the webhook under 256 uploads of 3 MiB");
    let uploads = webhook::uploads(bench, plan.probe_probes());
    let mut out =
        "| measure | no load | under attack | goal | |\n|---|---|---|---|---|\n".to_owned();
    probe::webhook_rows(&mut out, &uploads);
    println!(
        "{out}\nanswered {}, refused 503 {}, cut {}; server: 503 {:?}, bodies shed {:?}, connections shed {:?}, reviews timed out {:?}, /healthz max {:?} ms{}",
        uploads.answered,
        uploads.refused,
        uploads.cut,
        uploads.rejected,
        uploads.bodies_shed,
        uploads.shed,
        uploads.timed_out,
        uploads.healthz.latencies_ms.iter().copied().reduce(f64::max),
        uploads.error.as_deref().map(|e| format!(", error: {e}")).unwrap_or_default()
    );
    let mib: Vec<String> = uploads.rss.iter().map(|b| (b >> 20).to_string()).collect();
    println!("VmRSS every 100 ms, MiB: {}", mib.join(" "));
    let mut sorted = uploads.healthz.latencies_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let shown: Vec<String> = sorted.iter().map(|v| format!("{v:.0}")).collect();
    println!("/healthz ms, sorted: {}", shown.join(" "));
    if let Some((ran, waited)) = uploads.runtime_thread {
        println!(
            "runtime thread over the probes: on a CPU {:.0}%, runnable but waiting for one {:.0}%",
            ran * 100.0,
            waited * 100.0
        );
    }
}

/// `BENCH_ONLY=sidecar`: figure 9 alone, printed to stdout.
fn only_sidecar(bench: &Bench, plan: &Plan) {
    println!("bench: 9/9 keep-running: idle, rotations and agent restarts");
    let result = sidecar::keep_running(bench, plan);
    let mut out = String::new();
    report::figure9(&mut out, plan, &result);
    println!("{out}");
}

/// Rewrites the README's `sizes` block from figure 4, so the sizes the
/// README quotes come from this run, like everything in docs/benchmarks.md.
fn update_readme_sizes(sizes: &Sizes) {
    let path = Path::new(MANIFEST_DIR).join("README.md");
    let Ok(readme) = std::fs::read_to_string(&path) else {
        return;
    };
    let (begin, end) = ("<!-- BEGIN sizes -->\n", "<!-- END sizes -->");
    let (Some(start), Some(stop)) = (readme.find(begin), readme.find(end)) else {
        println!("bench: README.md has no sizes block; not updated");
        return;
    };
    let size = |bytes: u64| {
        #[expect(clippy::cast_precision_loss, reason = "sizes far below 2^52 bytes")]
        stats::bytes(bytes as f64)
    };
    let static_build = sizes
        .static_build
        .as_ref()
        .filter(|a| !a.stale)
        .map_or_else(
            || "not built by this run (`make static`)".to_owned(),
            |a| size(a.bytes),
        );
    let image = match &sizes.image {
        Ok(image) if !image.stale => size(image.bytes),
        _ => "not built by this run (`make image`)".to_owned(),
    };
    let block = format!(
        "| release binary | static binary | image (`scratch` + the static binary) |\n|---|---|---|\n| {} | {static_build} | {image} |\n\nMeasured by `make bench` (see [benchmarks](docs/benchmarks.md)).\n",
        size(sizes.release.bytes)
    );
    let updated = format!(
        "{}{block}{}",
        &readme[..start + begin.len()],
        &readme[stop..]
    );
    std::fs::write(&path, updated).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// `<target>` from this executable's path: `<target>/release/deps/gate-…`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench executable's path");
    exe.ancestors()
        .nth(3)
        .map_or_else(|| Path::new(MANIFEST_DIR).join("target"), Path::to_path_buf)
}

/// Refuses a missing binary, or one older than the sources it is built from.
fn check_fresh(gate: &Path) {
    let built = std::fs::metadata(gate)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}\nSECRET_GATE_BENCH_BIN must name a built secret-gate",
                gate.display()
            )
        });
    assert!(
        built >= newest_source(),
        "{} (SECRET_GATE_BENCH_BIN) is older than the sources (src/, Cargo.toml, Cargo.lock): \
         rebuild it, or unset SECRET_GATE_BENCH_BIN to bench a fresh release build",
        gate.display()
    );
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// When the sources (`src/`, `Cargo.toml`, `Cargo.lock`, `build.rs`) last changed.
fn newest_source() -> SystemTime {
    let root = Path::new(MANIFEST_DIR);
    let mut sources = vec![root.join("Cargo.toml"), root.join("Cargo.lock")];
    collect_files(&root.join("src"), &mut sources);
    sources
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
        .unwrap_or(UNIX_EPOCH)
}

/// Whether an ELF executable has a `PT_INTERP` program header, i.e. needs
/// the dynamic loader. `None` if it is not a 64-bit little-endian ELF file.
fn elf_dynamic(path: &Path) -> Option<bool> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let phoff =
        usize::try_from(u64::from_le_bytes(bytes.get(0x20..0x28)?.try_into().ok()?)).ok()?;
    let (size, count) = (usize::from(u16_at(0x36)?), usize::from(u16_at(0x38)?));
    let mut interp = false;
    for i in 0..count {
        let at = phoff + i * size;
        interp |= u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) == 3;
    }
    Some(interp)
}

fn relative_to_manifest(path: &Path) -> String {
    path.strip_prefix(MANIFEST_DIR)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `cargo_built`: `gate` is cargo's build for this run, so never stale.
fn sizes(gate: &Path, cargo_built: bool, target: &Path) -> Sizes {
    let newest = newest_source();
    let artifact = |path: PathBuf| {
        let meta = std::fs::metadata(&path).ok()?;
        Some(Artifact {
            bytes: meta.len(),
            dynamic: elf_dynamic(&path),
            stale: meta.modified().map_or(true, |t| t < newest),
            path,
        })
    };
    Sizes {
        release: artifact(gate.to_path_buf())
            .map(|a| Artifact {
                stale: a.stale && !cargo_built,
                ..a
            })
            .expect("the binary under test exists"),
        static_build: artifact(target.join("x86_64-unknown-linux-gnu/release/secret-gate")),
        image: image(newest),
        repro: repro::read(),
    }
}

/// `podman image inspect`, bounded to 60 s.
fn image(newest: SystemTime) -> Result<Image, String> {
    let not_built = || "not built in this run (make image)".to_owned();
    let out_path = std::env::temp_dir().join(format!("bench-podman-{}", std::process::id()));
    let file = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let mut cmd = command("podman");
    cmd.args([
        "image",
        "inspect",
        IMAGE,
        "--format",
        "{{.Size}} {{.Created.Unix}}",
    ])
    .stdout(file)
    .stderr(std::process::Stdio::null());
    let Ok(mut p) = Running::try_spawn(&mut cmd) else {
        return Err(not_built());
    };
    let status = p.wait_timeout(Duration::from_secs(60));
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    match status {
        Some((_, s)) if s.success() => {
            let (size, created) = text.trim().split_once(' ').ok_or_else(not_built)?;
            let bytes = size.parse().map_err(|_| not_built())?;
            let created: u64 = created.parse().map_err(|_| not_built())?;
            let newest = newest.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            Ok(Image {
                bytes,
                created: utc(created),
                stale: created < newest,
            })
        }
        _ => Err(not_built()),
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine(scratch_parent: &Path) -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let memory = procfs::parse_status_kib(&read("/proc/meminfo"), "MemTotal").map_or_else(
        || "unknown".to_owned(),
        |kib| {
            format!(
                "{:.1} GiB",
                stats::count(usize::try_from(kib / 1024).unwrap_or(0)) / 1024.0
            )
        },
    );
    let output = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .current_dir(MANIFEST_DIR)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = output("git", &["rev-parse", "--short", "HEAD"]).map_or_else(
        || "unknown".to_owned(),
        |sha| {
            // What the bench itself writes (this report, the README's
            // sizes block) does not make the build dirty.
            let dirty = output(
                "git",
                &[
                    "status",
                    "--porcelain",
                    "--untracked-files=no",
                    "--",
                    ".",
                    ":(exclude)docs/benchmarks.md",
                    ":(exclude)README.md",
                ],
            )
            .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{sha} (with uncommitted changes)")
            } else {
                sha
            }
        },
    );
    let fs = if scratch_parent == Path::new("/dev/shm") {
        "tmpfs (/dev/shm), like an emptyDir with medium: Memory".to_owned()
    } else {
        format!("{}", scratch_parent.display())
    };
    Machine {
        cpu,
        cores,
        usable_cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        memory,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        date: utc_now(),
        rustc: output("rustc", &["--version"]).unwrap_or_else(|| "unknown".to_owned()),
        commit,
        scratch_fs: fs,
        load_before: loadavg(),
        load_after: String::new(),
    }
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    utc(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()))
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC`.
fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (y, m, d) = secret_gate::sidecar::versioned::civil_from_days(days);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn elf_linking() {
        use super::elf_dynamic;
        let exe = std::env::current_exe().unwrap();
        assert_eq!(elf_dynamic(&exe), Some(true), "test binaries link glibc");
        let not_elf = std::env::temp_dir().join(format!("not-elf-{}", std::process::id()));
        std::fs::write(&not_elf, "#!/bin/sh\n").unwrap();
        assert_eq!(elf_dynamic(&not_elf), None);
        std::fs::remove_file(&not_elf).unwrap();
    }
}

//! Figure 11: `secret-gate-injector inject` on 1,000 opted-in Deployments
//! in one multi-document file, against a plain YAML round trip of the same
//! file (split, parse and emit every document with the injector's own
//! YAML reader and writer) by the example
//! `injector/examples/yaml-roundtrip.rs`; and on ten inputs of 2.5 MiB in
//! one run, whose peak RSS shows that memory follows the largest document,
//! not the whole input. Both are release builds run as
//! processes under GNU time (`/usr/bin/time -f`), which reads the peak RSS
//! from `wait4`'s rusage of the one child; wall time is the harness's own
//! monotonic clock from spawn to reap.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{command, Running};
use crate::stats::{bytes, mark, ms, ratio, Summary};
use crate::Bench;

/// The goals, from issue 14.
pub const WALL_GOAL_MS: f64 = 1000.0;
pub const RSS_GOAL_BYTES: f64 = 32.0 * 1024.0 * 1024.0;
/// Issue 22: ten inputs of 2.5 MiB in one run stay within 64 MiB.
pub const STREAM_RSS_GOAL_BYTES: f64 = 64.0 * 1024.0 * 1024.0;
/// The ten inputs' size each.
pub const STREAM_FILE_BYTES: usize = 5 << 19;
/// How many inputs.
pub const STREAM_FILES: usize = 10;

/// How many Deployments the file holds.
pub const DEPLOYMENTS: usize = 1000;

/// One side of the figure.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub label: String,
    pub wall_ms: Vec<f64>,
    pub peak_rss: Vec<f64>,
    pub failures: Vec<String>,
}

/// Figure 11: the injector and its baseline.
#[derive(Debug, Clone, Default)]
pub struct InjectFigure {
    /// `[inject, round trip, inject of ten inputs]`; empty when not run.
    pub series: Vec<Series>,
    /// The input's size in bytes.
    pub input_bytes: usize,
}

/// One opted-in Deployment, `i` of the file: an app reading a secret
/// volume, as a platform team would write it before injection.
fn deployment(i: usize) -> String {
    format!(
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-{i}
  labels: {{app: web-{i}}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web-{i}}}
  template:
    metadata:
      labels: {{app: web-{i}}}
      annotations:
        secret-gate.dev/inject: "true"
        secret-gate.dev/mount-path: /opt/vsecm
        secret-gate.dev/file: secrets.json
        secret-gate.dev/required-keys: username,password
        secret-gate.dev/timeout: 5m
    spec:
      containers:
        - name: app
          image: registry.example/web:1.{i}
          ports: [{{containerPort: 8080}}]
          env:
            - {{name: SECRETS_FILE, value: /opt/vsecm/secrets.json}}
          volumeMounts:
            - {{name: secrets, mountPath: /opt/vsecm, readOnly: true}}
      volumes:
        - name: secrets
          secret: {{secretName: web-{i}}}
"#
    )
}

/// Builds the example that does the round trip, in release, into the
/// bench's target directory, and returns its path.
fn roundtrip_bin(injector: &Path) -> PathBuf {
    let release = injector
        .parent()
        .expect("the injector sits in <target>/release");
    let target = release.parent().expect("a target directory");
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "secret-gate-injector",
            "--example",
            "yaml-roundtrip",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
    assert!(
        out.status.success(),
        "building the yaml-roundtrip example failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    release.join("examples/yaml-roundtrip")
}

/// Runs figure 11: `runs` interleaved runs of each side.
pub fn figure(bench: &Bench, injector: &Path, runs: usize) -> InjectFigure {
    let dir = bench.scratch.join("inject");
    std::fs::create_dir_all(&dir).expect("mkdir inject");
    let input = dir.join("deployments.yaml");
    let text: String = (0..DEPLOYMENTS).map(deployment).collect();
    std::fs::write(&input, &text).expect("write deployments.yaml");
    let roundtrip = roundtrip_bin(injector);
    // Ten inputs of 2.5 MiB: a third of the Deployments opted in, the rest
    // passed through, as in a large install manifest.
    let ten = dir.join("ten");
    std::fs::create_dir_all(&ten).expect("mkdir ten");
    let mut n = 0;
    for f in 0..STREAM_FILES {
        let mut file = String::new();
        while file.len() < STREAM_FILE_BYTES {
            let doc = deployment(n);
            if n % 3 == 0 {
                file.push_str(&doc);
            } else {
                file.push_str(
                    &doc.replace("secret-gate.dev/inject: \"true\"", "example.com/x: \"no\""),
                );
            }
            n += 1;
        }
        std::fs::write(ten.join(format!("input-{f}.yaml")), file).expect("write an input");
    }

    let mut series = vec![
        Series {
            label: format!("`secret-gate-injector inject`, {DEPLOYMENTS} Deployments"),
            ..Series::default()
        },
        Series {
            label: "YAML round trip (split, parse + emit, the injector's YAML module)".to_owned(),
            ..Series::default()
        },
        Series {
            label: format!(
                "`secret-gate-injector inject -f DIR`, {STREAM_FILES} inputs of {} each",
                bytes(crate::stats::count(STREAM_FILE_BYTES))
            ),
            ..Series::default()
        },
    ];
    for _ in 0..runs {
        let sides: [(&Path, Vec<&str>, &Path); 3] = [
            (injector, vec!["inject", "-f"], &input),
            (roundtrip.as_path(), Vec::new(), &input),
            (injector, vec!["inject", "-f"], &ten),
        ];
        for (s, (bin, args, input)) in series.iter_mut().zip(sides) {
            match one(bin, &args, input, &dir) {
                Ok((wall, rss)) => {
                    s.wall_ms.push(wall);
                    s.peak_rss.push(rss);
                }
                Err(e) => s.failures.push(e),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    InjectFigure {
        series,
        input_bytes: text.len(),
    }
}

/// One run of `bin ARGS INPUT` under GNU time, stdout discarded: (wall ms,
/// peak RSS bytes), or why it failed.
fn one(bin: &Path, args: &[&str], input: &Path, dir: &Path) -> Result<(f64, f64), String> {
    let stats = dir.join("time.out");
    let mut cmd = command("/usr/bin/time");
    cmd.arg("-o")
        .arg(&stats)
        .args(["-f", "%x %M"])
        .arg(bin)
        .args(args)
        .arg(input)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut p = Running::spawn(&mut cmd);
    let Some((end, _)) = p.wait_timeout(Duration::from_secs(60)) else {
        p.kill();
        return Err("no exit within 60 s".to_owned());
    };
    let wall = end.duration_since(start).as_secs_f64() * 1000.0;
    let text = std::fs::read_to_string(&stats).map_err(|e| e.to_string())?;
    let last = text.lines().last().unwrap_or_default();
    let fields: Vec<&str> = last.split_whitespace().collect();
    let [code, kib] = fields[..] else {
        return Err(format!("unexpected GNU time output: {text}"));
    };
    if code != "0" {
        return Err(format!("exit {code}"));
    }
    let kib: f64 = kib.parse().map_err(|e| format!("{kib}: {e}"))?;
    Ok((wall, kib * 1024.0))
}

/// The figure's section of docs/benchmarks.md.
pub fn render(out: &mut String, figure: &InjectFigure) {
    let _ = writeln!(out, "## 11. Injecting 1,000 Deployments\n");
    if figure.series.is_empty() {
        let _ = writeln!(out, "Not run in this run (BENCH_ONLY).\n");
        return;
    }
    let _ = writeln!(
        out,
        "`secret-gate-injector inject -f deployments.yaml` on one multi-document file of \
         {DEPLOYMENTS} opted-in Deployments ({}), each with a Secret volume and the gate's \
         annotations, against a plain round trip of the same file by the same YAML crate \
         (`injector/examples/yaml-roundtrip.rs`: split, parse, emit; no injection). The last \
         row runs `inject -f DIR` on {STREAM_FILES} files of {} each (a third of their \
         Deployments opted in), in one run: documents are read, injected and written one at a \
         time, so its peak RSS follows the largest document, not the input. Release builds, run \
         as processes; wall time from spawn to reap, peak RSS from GNU time. {} interleaved runs \
         each; the medians are shown.\n",
        bytes(crate::stats::count(figure.input_bytes)),
        bytes(crate::stats::count(STREAM_FILE_BYTES)),
        figure
            .series
            .first()
            .map_or(0, |s| s.wall_ms.len() + s.failures.len()),
    );
    let _ = writeln!(
        out,
        "| | wall time (median) | p90 | peak RSS (median) | ÷ round trip (time) | failed runs |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let base = figure
        .series
        .get(1)
        .and_then(|s| Summary::of(&s.wall_ms))
        .map(|s| s.median);
    for (i, s) in figure.series.iter().enumerate() {
        let wall = Summary::of(&s.wall_ms);
        let rss = Summary::of(&s.peak_rss);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            s.label,
            wall.as_ref().map_or("—".to_owned(), |w| ms(w.median)),
            wall.as_ref().map_or("—".to_owned(), |w| ms(w.p90)),
            rss.as_ref().map_or("—".to_owned(), |r| bytes(r.median)),
            match (wall.as_ref(), base) {
                // The ten inputs are another input: no ratio.
                (Some(w), Some(b)) if b > 0.0 && i < 2 => ratio(w.median / b),
                _ => "—".to_owned(),
            },
            failures(&s.failures),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "| goal | measured | |\n|---|---|---|");
    for (goal, value, ok) in goals(figure) {
        let _ = writeln!(out, "| {goal} | {value} | {} |", mark(ok));
    }
    let _ = writeln!(out);
}

fn failures(list: &[String]) -> String {
    match list.first() {
        None => "0".to_owned(),
        Some(first) => format!("{} ({first})", list.len()),
    }
}

/// The goal rows: (goal, measured, met).
pub fn goals(figure: &InjectFigure) -> Vec<(String, String, bool)> {
    let Some(inject) = figure.series.first() else {
        return Vec::new();
    };
    let wall = Summary::of(&inject.wall_ms);
    let rss = Summary::of(&inject.peak_rss);
    let clean = inject.failures.is_empty();
    let stream = figure.series.get(2);
    let stream_rss = stream.and_then(|s| Summary::of(&s.peak_rss));
    let stream_clean = stream.is_some_and(|s| s.failures.is_empty());
    vec![
        (
            format!("inject {DEPLOYMENTS} Deployments in ≤ 1 s (median)"),
            wall.as_ref().map_or("—".to_owned(), |w| ms(w.median)),
            clean && wall.is_some_and(|w| w.median <= WALL_GOAL_MS),
        ),
        (
            "peak RSS ≤ 32 MiB (median)".to_owned(),
            rss.as_ref().map_or("—".to_owned(), |r| bytes(r.median)),
            clean && rss.is_some_and(|r| r.median <= RSS_GOAL_BYTES),
        ),
        (
            format!(
                "{STREAM_FILES} inputs of {} in one run: peak RSS ≤ 64 MiB (median)",
                bytes(crate::stats::count(STREAM_FILE_BYTES))
            ),
            stream_rss
                .as_ref()
                .map_or("—".to_owned(), |r| bytes(r.median)),
            stream_clean && stream_rss.is_some_and(|r| r.median <= STREAM_RSS_GOAL_BYTES),
        ),
    ]
}

/// Figure 11 in the summary table: wall time against the round trip, and
/// peak RSS.
pub fn summary_rows(figure: &InjectFigure) -> Vec<[String; 6]> {
    let median = |i: usize, f: fn(&Series) -> &Vec<f64>| {
        figure
            .series
            .get(i)
            .and_then(|s| Summary::of(f(s)))
            .map(|s| s.median)
    };
    let (Some(wall), Some(base)) = (median(0, |s| &s.wall_ms), median(1, |s| &s.wall_ms)) else {
        return Vec::new();
    };
    let rss = median(0, |s| &s.peak_rss);
    let base_rss = median(1, |s| &s.peak_rss);
    let met = goals(figure);
    let ok = |i: usize| met.get(i).is_some_and(|g| g.2);
    vec![
        [
            format!("11. `inject`, {DEPLOYMENTS} Deployments: wall time (median)"),
            ms(wall),
            format!("YAML round trip {}", ms(base)),
            ratio(base / wall),
            format!("≤ {}", ms(WALL_GOAL_MS)),
            mark(ok(0)).to_owned(),
        ],
        [
            format!("11. `inject`, {DEPLOYMENTS} Deployments: peak RSS (median)"),
            rss.map_or("—".to_owned(), bytes),
            base_rss.map_or("—".to_owned(), |b| {
                format!("YAML round trip {}", bytes(b))
            }),
            match (rss, base_rss) {
                (Some(r), Some(b)) if r > 0.0 => ratio(b / r),
                _ => "—".to_owned(),
            },
            format!("≤ {}", bytes(RSS_GOAL_BYTES)),
            mark(ok(1)).to_owned(),
        ],
    ]
}

//! Figure 8: what hostile inputs cost. Each case is one file of at most the
//! default `--max-file-size` (1 MiB), shaped to be expensive for its parser
//! or, with `--schema`, paired with a schema shaped to be expensive;
//! `secret-gate check` must accept or refuse it within the CPU and memory
//! goals. Peak RSS comes from GNU time (`/usr/bin/time -f`), which reads
//! it from `wait4`'s rusage of the one child. CPU is this process's
//! `getrusage(RUSAGE_CHILDREN)` across the run, in microseconds: GNU time
//! prints CPU in 10 ms steps, which rounds a 5 ms check down to 0 and
//! makes the schema's ratio meaningless. Its own few hundred µs are in
//! every row alike.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::process::{command, Running};
use crate::Bench;

/// The goals: CPU per `check` and peak RSS, from issue 7.
pub const CPU_GOAL_MS: f64 = 200.0;
pub const RSS_GOAL_BYTES: f64 = 32.0 * 1024.0 * 1024.0;

const MIB: usize = 1 << 20;

/// One case of figure 7.
#[derive(Debug, Clone)]
pub struct InputSeries {
    pub label: String,
    /// `ready` or `refused`, from the exit code of the last run.
    pub verdict: String,
    pub cpu_ms: Vec<f64>,
    pub peak_rss: Vec<f64>,
    pub failures: Vec<String>,
}

/// `n` lines made by `line`, joined.
fn lines(n: usize, line: impl Fn(usize) -> String) -> String {
    (0..n).map(line).collect::<Vec<_>>().concat()
}

/// The goal for `--schema`: `check` of a 1 MiB JSON against a 50-rule
/// schema costs at most this many times the same check without it.
pub const SCHEMA_RATIO_GOAL: f64 = 2.0;

/// The labels of the two rows the schema ratio compares.
pub const PLAIN_LABEL: &str = "JSON, 1 MiB object of 20,000 strings, no schema";
pub const SCHEMA_LABEL: &str = "JSON, the same object against a 50-rule schema";

/// A 1 MiB JSON object of 20,000 string members (`k0`..`k19999`).
fn secret_object() -> String {
    let members: Vec<String> = (0..20_000)
        .map(|i| format!("\"k{i}\":\"{}\"", "v".repeat(40)))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// 50 rules: 24 properties with a type and a length or pattern each, every
/// other member a string of bounded length.
fn fifty_rules() -> String {
    let props: Vec<String> = (0..24)
        .map(|i| {
            let second = if i % 2 == 0 {
                "\"minLength\": 16".to_owned()
            } else {
                "\"pattern\": \"^v+$\"".to_owned()
            };
            format!("\"k{i}\": {{\"type\": \"string\", {second}}}")
        })
        .collect();
    format!(
        "{{\"type\": \"object\", \"required\": [\"k0\"], \"properties\": {{{}}}, \
         \"additionalProperties\": {{\"type\": \"string\", \"maxLength\": 4096}}}}",
        props.join(", ")
    )
}

/// The schema cases: (file name, what it is, content, schema).
fn schema_cases() -> Vec<(&'static str, &'static str, String, String)> {
    let string_of_a = format!("{{\"k\":\"{}!\"}}", "a".repeat(MIB - 16));
    // A chain of `n` `$ref`s that every member of the object goes through.
    let ref_chain = |n: usize| {
        let chain: Vec<String> = (0..n)
            .map(|i| format!("\"d{i}\": {{\"$ref\": \"#/$defs/d{}\"}}", i + 1))
            .collect();
        format!(
            "{{\"$defs\": {{{}, \"d{n}\": {{\"type\": \"string\"}}}}, \
             \"additionalProperties\": {{\"$ref\": \"#/$defs/d0\"}}}}",
            chain.join(", ")
        )
    };
    let mut deep = "1".to_owned();
    for _ in 0..120 {
        deep = format!("{{\"a\":{deep}}}");
    }
    let deep_wide = format!(
        "[{}]",
        vec![deep.as_str(); MIB / (deep.len() + 1)].join(",")
    );
    vec![
        ("plain.json", PLAIN_LABEL, secret_object(), String::new()),
        ("ruled.json", SCHEMA_LABEL, secret_object(), fifty_rules()),
        (
            "regex.json",
            "schema `pattern: ^(a+)+$` (catastrophic when backtracking) on a 1 MiB string",
            string_of_a,
            r#"{"properties": {"k": {"pattern": "^(a+)+$"}}}"#.to_owned(),
        ),
        (
            "refchain.json",
            "schema: a chain of 63 `$ref`s (the most allowed) applied to 20,000 members",
            secret_object(),
            ref_chain(63),
        ),
        (
            "refchain1000.json",
            "schema: a chain of 1,000 `$ref`s (over the limit: refused at start)",
            secret_object(),
            ref_chain(1000),
        ),
        (
            "cyclic.json",
            "schema: `$ref` cycle a → b → a",
            secret_object(),
            r##"{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "additionalProperties": {"$ref": "#/$defs/a"}}"##
                .to_owned(),
        ),
        (
            "recursive.json",
            "schema `items`/`additionalProperties` → `#` on 1 MiB of 120-deep objects",
            deep_wide,
            r##"{"type": ["object", "array", "integer"], "items": {"$ref": "#"}, "additionalProperties": {"$ref": "#"}}"##
                .to_owned(),
        ),
    ]
}

/// The hostile files: (file name, what it is, content).
fn cases() -> Vec<(&'static str, &'static str, String)> {
    let cut = |mut s: String| {
        s.truncate(MIB);
        s
    };
    let numbers = |n: usize| format!("[{}]", vec!["1"; n].join(","));
    let laughs = (1..10).fold("a: &a [x,x,x,x,x,x,x,x,x]\n".to_owned(), |doc, i| {
        let prev = if i == 1 {
            "a".to_owned()
        } else {
            format!("n{}", i - 1)
        };
        let refs = vec![format!("*{prev}"); 9].join(",");
        doc + &format!("n{i}: &n{i} [{refs}]\n")
    });
    vec![
        (
            "flow.yaml",
            "YAML, nested flow mappings (`{b: ` × 50,000)",
            "a: ".to_owned() + &"{b: ".repeat(50_000) + &"}".repeat(50_000),
        ),
        ("brackets.yaml", "YAML, 1 MiB of `[`", "[".repeat(MIB)),
        (
            "list.yaml",
            "YAML, a list of 262,000 items",
            cut("- x\n".repeat(262_000)),
        ),
        (
            "largest.yaml",
            "YAML, 19,000 entries of 40 B (within the node limit)",
            lines(19_000, |i| format!("k{i}: {}\n", "v".repeat(40))),
        ),
        ("laughs.yaml", "YAML, aliases that expand 9^9 times", laughs),
        ("brackets.json", "JSON, 1 MiB of `[`", "[".repeat(MIB)),
        (
            "numbers.json",
            "JSON, 1 MiB array of 524,000 numbers",
            numbers(524_000),
        ),
        (
            "largest.json",
            "JSON, 99,000 numbers (within the value limit)",
            numbers(99_000),
        ),
        (
            "many.env",
            "env, 100,000 lines",
            cut(lines(100_000, |i| format!("K{i}=v\n"))),
        ),
    ]
}

/// Figure 7: `runs` runs of each case, interleaved.
pub fn input_cost(bench: &Bench, runs: usize) -> Vec<InputSeries> {
    let dir = bench.scratch.join("inputs");
    std::fs::create_dir_all(&dir).expect("create the inputs directory");
    let mut cases: Vec<(&str, &str, String, String)> = cases()
        .into_iter()
        .map(|(name, label, content)| (name, label, content, String::new()))
        .collect();
    cases.extend(schema_cases());
    let mut out: Vec<InputSeries> = cases
        .iter()
        .map(|(name, label, content, schema)| {
            std::fs::write(dir.join(name), content).expect("write a hostile input");
            if !schema.is_empty() {
                std::fs::write(dir.join(format!("{name}.schema")), schema).expect("write a schema");
            }
            InputSeries {
                label: format!("{label}, {} B", content.len()),
                verdict: String::new(),
                cpu_ms: Vec::new(),
                peak_rss: Vec::new(),
                failures: Vec::new(),
            }
        })
        .collect();
    if !Path::new("/usr/bin/time").exists() {
        for s in &mut out {
            s.failures
                .push("/usr/bin/time (GNU time) is not installed".to_owned());
        }
        return out;
    }
    for _ in 0..runs {
        for ((name, _, _, _), series) in cases.iter().zip(out.iter_mut()) {
            match one(bench, &dir, name) {
                Ok((verdict, cpu, rss)) => {
                    series.verdict = verdict;
                    series.cpu_ms.push(cpu);
                    series.peak_rss.push(rss);
                }
                Err(e) => series.failures.push(e),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// One `check` under GNU time: (verdict, CPU ms, peak RSS bytes).
fn one(bench: &Bench, dir: &Path, name: &str) -> Result<(String, f64, f64), String> {
    let stats: PathBuf = dir.join("time.out");
    let mut cmd = command("/usr/bin/time");
    cmd.arg("-o")
        .arg(&stats)
        .args(["-f", "%x %U %S %M"])
        .arg(&bench.gate)
        .args(["check", "--mount-path"])
        .arg(dir)
        .args(["--file", name, "--settle-time", "0s", "--termination-log"])
        .arg(dir.join("termination-log"))
        .stderr(Stdio::null());
    let schema = dir.join(format!("{name}.schema"));
    if schema.exists() {
        cmd.arg("--schema").arg(schema);
    }
    let before = children_cpu_ms()?;
    let mut p = Running::spawn(&mut cmd);
    if p.wait_timeout(Duration::from_secs(60)).is_none() {
        p.kill();
        return Err("no exit within 60 s".to_owned());
    }
    let cpu = children_cpu_ms()? - before;
    let text = std::fs::read_to_string(&stats).map_err(|e| e.to_string())?;
    // GNU time puts "Command exited with non-zero status N" first.
    let last = text.lines().last().unwrap_or_default();
    let fields: Vec<&str> = last.split_whitespace().collect();
    let [code, _user, _sys, kib] = fields[..] else {
        return Err(format!("unexpected GNU time output: {text}"));
    };
    let num = |s: &str| s.parse::<f64>().map_err(|e| format!("{s}: {e}"));
    let verdict = match code {
        "0" => "ready",
        "1" => "refused",
        // A schema the gate will not use (a `$ref` cycle, say) stops it at
        // start: refused too, before any input is read.
        "2" => "usage error",
        other => return Err(format!("exit {other}")),
    };
    Ok((verdict.to_owned(), cpu, num(kib)? * 1024.0))
}

/// User + system CPU of this process's reaped children so far, in ms with
/// microsecond resolution. Figure 8 runs one child at a time.
fn children_cpu_ms() -> Result<f64, String> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).map_err(|e| format!("getrusage: {e}"))?;
    let ms = |t: nix::sys::time::TimeVal| {
        #[expect(clippy::cast_precision_loss, reason = "CPU times far below 2^52 µs")]
        let us = (t.tv_sec() * 1_000_000 + t.tv_usec()) as f64;
        us / 1000.0
    };
    Ok(ms(usage.user_time()) + ms(usage.system_time()))
}

//! The golden corpus, run through every front end by one table.
//!
//! Each case is a directory under `tests/golden/`: `input.yaml` or
//! `input.json`, optional `args` (extra command-line words, one line), and
//! the expected `output` (stdout; absent when the run must write nothing),
//! `report` (stderr) and `code` (the exit code). `UPDATE_GOLDEN=1 cargo
//! test -p secret-gate-injector --test golden` rewrites the expectations
//! from the CLI; review them as a diff.
//!
//! The table: every [`FrontEnd`] turns a case into an [`Observed`] (the
//! exit code, the output documents as values, the report lines), and the
//! same comparison checks it against the golden files. The CLI is compared
//! byte for byte as well. A new front end (the admission webhook) is one
//! more `impl FrontEnd`.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a panic fails the test, with its location"
)]

use std::path::{Path, PathBuf};

use secret_gate_injector::document::{self, Format, Input};
use serde_yaml_ng::{Mapping, Value};

mod cli_support;
use cli_support::run_bin;

struct Case {
    name: String,
    dir: PathBuf,
    input: PathBuf,
    args: Vec<String>,
}

impl Case {
    fn expected(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(file)).ok()
    }

    fn input_docs(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.input).unwrap();
        let format = if self.input.extension().is_some_and(|e| e == "json") {
            Format::Json
        } else {
            Format::Yaml
        };
        let input = Input {
            name: self.name.clone(),
            text,
            format,
        };
        document::documents(&input)
            .unwrap()
            .into_iter()
            .filter_map(|d| d.value)
            .collect()
    }

    /// Cases whose input no `ResourceList` can carry (unparsable documents).
    fn cli_only(&self) -> bool {
        self.dir.join("cli-only").exists()
    }
}

fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let input = ["input.yaml", "input.json"]
                .iter()
                .map(|f| dir.join(f))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{}: no input.yaml or input.json", dir.display()));
            let args = std::fs::read_to_string(dir.join("args"))
                .map(|a| a.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default();
            Case {
                name: dir.file_name().unwrap().to_string_lossy().into_owned(),
                dir,
                input,
                args,
            }
        })
        .collect()
}

/// What a front end did with a case.
struct Observed {
    code: i32,
    /// The output documents (empty when nothing was written).
    docs: Vec<Value>,
    /// Report lines: `kind/name message` and `warning: kind/name: ...`.
    report: Vec<String>,
    /// The error text, on exit 2.
    errors: Vec<String>,
}

trait FrontEnd {
    fn name(&self) -> &'static str;
    /// `None`: the case does not apply to this front end.
    fn run(&self, case: &Case) -> Option<Observed>;
}

fn split_stderr(stderr: &str) -> (Vec<String>, Vec<String>) {
    let (errors, report): (Vec<&str>, Vec<&str>) =
        stderr.lines().partition(|l| l.starts_with("error: "));
    (
        report.into_iter().map(str::to_owned).collect(),
        errors.into_iter().map(str::to_owned).collect(),
    )
}

fn parse_output(text: &str, format: Format) -> Vec<Value> {
    let input = Input {
        name: "output".to_owned(),
        text: text.to_owned(),
        format,
    };
    document::documents(&input)
        .unwrap_or_else(|e| panic!("the output does not parse: {e}\n{text}"))
        .into_iter()
        .filter_map(|d| d.value)
        .collect()
}

fn output_format(case: &Case, text: &str) -> Format {
    if case.args.iter().any(|a| a == "json")
        || (case.input.extension().is_some_and(|e| e == "json")
            && text.trim_start().starts_with('{'))
    {
        Format::Json
    } else {
        Format::Yaml
    }
}

struct Cli;

impl FrontEnd for Cli {
    fn name(&self) -> &'static str {
        "cli"
    }

    fn run(&self, case: &Case) -> Option<Observed> {
        let mut args = vec![
            "inject".to_owned(),
            "-f".to_owned(),
            case.input.display().to_string(),
        ];
        args.extend(case.args.iter().cloned());
        let (code, stdout, stderr) = run_bin(&args, b"");
        let stderr = stderr.replace(&case.input.display().to_string(), "INPUT");
        let update = std::env::var_os("UPDATE_GOLDEN").is_some();
        if update {
            let out = case.dir.join("output");
            if stdout.is_empty() {
                let _ = std::fs::remove_file(&out);
            } else {
                std::fs::write(&out, &stdout).unwrap();
            }
            std::fs::write(case.dir.join("report"), &stderr).unwrap();
            std::fs::write(case.dir.join("code"), format!("{code}\n")).unwrap();
        }
        // Byte for byte, beyond what the shared comparison checks.
        assert_eq!(
            stdout,
            case.expected("output").unwrap_or_default(),
            "{}: cli: stdout differs from the golden output",
            case.name
        );
        assert_eq!(
            stderr,
            case.expected("report").unwrap_or_default(),
            "{}: cli: stderr differs from the golden report",
            case.name
        );
        let (report, errors) = split_stderr(&stderr);
        let docs = if stdout.is_empty() {
            Vec::new()
        } else {
            parse_output(&stdout, output_format(case, &stdout))
        };
        Some(Observed {
            code,
            docs,
            report,
            errors,
        })
    }
}

/// The KRM function: the case's documents as the items of a `ResourceList`
/// on stdin, the answer's items and results read back. On exit 2 the
/// answer must carry the items unchanged and an error result per error
/// line; its documents then count as no output, as the CLI writes none.
struct Krm;

impl FrontEnd for Krm {
    fn name(&self) -> &'static str {
        "krm"
    }

    fn run(&self, case: &Case) -> Option<Observed> {
        if case.cli_only() || case.args.iter().any(|a| a == "--check") {
            return None;
        }
        let mut list = Mapping::new();
        list.insert("apiVersion".into(), "config.kubernetes.io/v1".into());
        list.insert("kind".into(), "ResourceList".into());
        list.insert("items".into(), Value::Sequence(case.input_docs()));
        let mut args = vec!["inject".to_owned()];
        args.extend(
            case.args
                .iter()
                .filter(|a| *a != "-o" && *a != "json")
                .cloned(),
        );
        // Written and read back as kubectl would: YAML 1.1 scalars.
        let stdin = secret_gate_injector::yaml::to_string(&Value::Mapping(list));
        let (code, stdout, stderr) = run_bin(&args, stdin.as_bytes());
        let (report, errors) = split_stderr(&stderr);
        let mut docs = Vec::new();
        if code == 2 {
            // A failed function answers with its items unchanged and one
            // error result per error line on stderr.
            let answer: Value = secret_gate_injector::yaml::load(&stdout)
                .unwrap_or_else(|e| {
                    panic!("{}: krm: exit 2 without a ResourceList ({e})", case.name)
                })
                .unwrap();
            assert_eq!(
                answer["items"].as_sequence().unwrap(),
                &case.input_docs(),
                "{}: krm: a failed run changed its items",
                case.name
            );
            let from_results: Vec<String> = answer["results"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|r| {
                    assert_eq!(r["severity"].as_str(), Some("error"), "{}", case.name);
                    format!("error: ResourceList: {}", r["message"].as_str().unwrap())
                })
                .collect();
            assert_eq!(
                from_results, errors,
                "{}: krm: results and stderr differ",
                case.name
            );
        } else if !stdout.is_empty() {
            let answer: Value = secret_gate_injector::yaml::load(&stdout).unwrap().unwrap();
            docs.clone_from(answer["items"].as_sequence().unwrap());
            // The results say what the report says.
            let mut from_results = Vec::new();
            for r in answer["results"].as_sequence().unwrap() {
                let reference = &r["resourceRef"];
                let object = format!(
                    "{}/{}",
                    reference["kind"].as_str().unwrap().to_ascii_lowercase(),
                    reference["name"].as_str().unwrap()
                );
                let message = r["message"].as_str().unwrap();
                from_results.push(match r["severity"].as_str().unwrap() {
                    "info" => format!("{object} {message}"),
                    "warning" => format!("warning: {object}: {message}"),
                    other => panic!("severity {other}"),
                });
            }
            assert_eq!(
                from_results, report,
                "{}: krm: results and stderr differ",
                case.name
            );
        }
        Some(Observed {
            code,
            docs,
            report,
            errors,
        })
    }
}

fn front_ends() -> Vec<Box<dyn FrontEnd>> {
    vec![Box::new(Cli), Box::new(Krm)]
}

/// The error's own text, without the front end's framing (file and
/// document index, or `ResourceList` item).
fn core_message(line: &str) -> String {
    let after_object = line
        .split_once(": document ")
        .map(|(_, rest)| rest.split_once(": ").map_or(rest, |(_, r)| r))
        .or_else(|| {
            line.split_once(": item ")
                .map(|(_, rest)| rest.split_once(": ").map_or(rest, |(_, r)| r))
        })
        .unwrap_or(line);
    after_object.to_owned()
}

#[test]
fn every_front_end_matches_the_goldens() {
    let cases = cases();
    assert!(cases.len() >= 20, "the corpus lost cases: {}", cases.len());
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        for case in &cases {
            Cli.run(case);
        }
    }
    for case in &cases {
        let code: i32 = case
            .expected("code")
            .unwrap_or_else(|| panic!("{}: no code file (UPDATE_GOLDEN=1 writes one)", case.name))
            .trim()
            .parse()
            .unwrap();
        let expected_docs = case
            .expected("output")
            .map(|t| parse_output(&t, output_format(case, &t)))
            .unwrap_or_default();
        let (expected_report, expected_errors) =
            split_stderr(&case.expected("report").unwrap_or_default());
        assert_eq!(
            code == 2,
            !expected_errors.is_empty(),
            "{}: exit 2 iff errors",
            case.name
        );
        for fe in front_ends() {
            let Some(seen) = fe.run(case) else { continue };
            let at = format!("{}: {}", case.name, fe.name());
            assert_eq!(
                seen.code, code,
                "{at}: exit code; stderr errors {:?}",
                seen.errors
            );
            assert_eq!(seen.docs, expected_docs, "{at}: output documents");
            // The KRM function has no file, so no comments to lose.
            let report: Vec<&String> = expected_report
                .iter()
                .filter(|l| fe.name() == "cli" || !l.contains("comments not preserved"))
                .collect();
            let seen_report: Vec<&String> = seen.report.iter().collect();
            if code != 2 {
                assert_eq!(seen_report, report, "{at}: report lines");
            }
            let want: Vec<String> = expected_errors.iter().map(|l| core_message(l)).collect();
            let got: Vec<String> = seen.errors.iter().map(|l| core_message(l)).collect();
            // The KRM function reports its bad items only (the CLI every
            // bad document), each once.
            assert!(
                got.iter().all(|g| want.contains(g)) && got.len() <= want.len(),
                "{at}: errors {got:#?} are not the golden ones {want:#?}"
            );
            if code == 2 {
                assert!(!got.is_empty(), "{at}: exit 2 without a message");
            }
        }
    }
}

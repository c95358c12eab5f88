//! What the injector writes, read by the readers that matter: kubectl
//! itself (`kubectl annotate --local -o json` decodes manifests with
//! `sigs.k8s.io/yaml`, go-yaml v2's YAML 1.1, and needs no cluster) and
//! `PyYAML` (YAML 1.1 too). For every golden case the injector changed,
//! every scalar of the input must read back from the output with the same
//! type and value, and every field must still be there: the output holds
//! the input plus what the injector added.
//!
//! Both readers must be on the machine (`.ci/run` installs `PyYAML`; kubectl
//! comes with the Google Cloud CLI packages on these machines): a missing
//! one fails the test and says so.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic fails the test, with its location"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

mod kubectl_support;
use kubectl_support::read as kubectl;

const PYYAML: &str = r#"
import json, sys, yaml
def flat(docs):
    for d in docs:
        if d is None:
            continue
        if isinstance(d, dict) and d.get("kind", "").endswith("List") and isinstance(d.get("items"), list):
            yield from d["items"]
        else:
            yield d
with open(sys.argv[1], encoding="utf-8-sig") as f:
    docs = list(flat(yaml.safe_load_all(f)))
json.dump(docs, sys.stdout, default=str)
"#;

/// The objects of a manifest file as `PyYAML` reads them.
fn pyyaml(file: &Path) -> Result<Vec<Value>, String> {
    let out = Command::new("python3")
        .args(["-c", PYYAML])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("python3 is needed to run PyYAML");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'yaml'"),
        "PyYAML is needed: pip install pyyaml"
    );
    if !out.status.success() {
        return Err(stderr.into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

/// Whether `output` holds `input`: every key with a value that holds the
/// input's, every list item in order (the injector only adds items), and
/// every scalar equal with the same type.
fn holds(input: &Value, output: &Value, at: &str) -> Result<(), String> {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let w = b
                    .get(k)
                    .ok_or_else(|| format!("{at}/{k}: missing from the output"))?;
                holds(v, w, &format!("{at}/{k}"))?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            let mut rest = b.iter().enumerate();
            for (i, v) in a.iter().enumerate() {
                rest.by_ref()
                    .find(|(_, w)| holds(v, w, "").is_ok())
                    .ok_or_else(|| {
                        format!("{at}/{i}: {v} is not in the output's list, in order")
                    })?;
            }
            Ok(())
        }
        (Value::Number(a), Value::Number(b)) => {
            let same = a.is_f64() == b.is_f64() && a.as_f64() == b.as_f64();
            same.then_some(())
                .ok_or_else(|| format!("{at}: {a} became {b}"))
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{at}: {a} became {b}")),
    }
}

/// The golden cases that wrote output: (case, input, output).
fn changed_cases(reader: &str) -> Vec<(String, PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let code = std::fs::read_to_string(dir.join("code")).unwrap_or_default();
        let args = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
        if code.trim() != "0" || !dir.join("output").exists() || args.contains("json") {
            continue;
        }
        let input = ["input.yaml", "input.json"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists())
            .unwrap();
        // A re-run replaces the injector's own earlier work, which is not
        // the author's: those cases are the goldens' to judge.
        if std::fs::read_to_string(&input)
            .unwrap()
            .contains("secret-gate.dev/status")
        {
            continue;
        }
        // Give the output the input's extension, so kubectl reads it alike.
        let ext = input.extension().unwrap().to_string_lossy().into_owned();
        let tmp = std::env::temp_dir().join(format!(
            "readers-{reader}-{}-{}.{ext}",
            std::process::id(),
            dir.file_name().unwrap().to_string_lossy()
        ));
        std::fs::copy(dir.join("output"), &tmp).unwrap();
        out.push((
            dir.file_name().unwrap().to_string_lossy().into_owned(),
            input,
            tmp,
        ));
    }
    out.sort();
    out
}

fn check(reader: &str, case: &str, input: &[Value], output: &[Value]) -> Vec<String> {
    if input.len() != output.len() {
        return vec![format!(
            "{case}: {reader}: {} objects in, {} out",
            input.len(),
            output.len()
        )];
    }
    input
        .iter()
        .zip(output)
        .enumerate()
        .filter_map(|(i, (a, b))| {
            holds(a, b, "")
                .err()
                .map(|e| format!("{case}: {reader}: object {i}: {e}"))
        })
        .collect()
}

#[test]
fn kubectl_reads_every_injected_golden_as_its_author_wrote_it() {
    let mut problems = Vec::new();
    let mut read = 0;
    for (case, input, output) in changed_cases("kubectl") {
        match (kubectl(&input), kubectl(&output)) {
            (Ok(a), Ok(b)) => {
                read += 1;
                problems.extend(check("kubectl", &case, &a, &b));
            }
            // Inputs kubectl itself refuses (an object with no kind, say)
            // say nothing about the output.
            (Err(_), _) => {}
            (Ok(_), Err(e)) => problems.push(format!("{case}: kubectl refuses the output: {e}")),
        }
        let _ = std::fs::remove_file(&output);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(read >= 20, "kubectl read only {read} golden cases");
}

#[test]
fn pyyaml_reads_every_injected_golden_as_its_author_wrote_it() {
    let mut problems = Vec::new();
    let cases = changed_cases("pyyaml");
    for (case, input, output) in &cases {
        match (pyyaml(input), pyyaml(output)) {
            (Ok(a), Ok(b)) => problems.extend(check("PyYAML", case, &a, &b)),
            // PyYAML refuses some streams kubectl reads (a bare document
            // after directives and `...`); they say nothing of the output.
            (Err(_), _) => {}
            (Ok(_), Err(e)) => problems.push(format!("{case}: PyYAML refuses the output: {e}")),
        }
    }
    for (_, _, output) in &cases {
        let _ = std::fs::remove_file(output);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(cases.len() >= 20, "only {} golden cases", cases.len());
}

#[test]
fn the_relation_sees_a_retyped_scalar_and_a_dropped_field() {
    let a: Value = serde_json::json!({"args": ["--x", "no"], "n": 8, "keep": {"a": 1}});
    let ok: Value =
        serde_json::json!({"args": ["--x", "no", "y"], "n": 8, "keep": {"a": 1, "b": 2}});
    assert!(holds(&a, &ok, "").is_ok());
    let retyped: Value = serde_json::json!({"args": ["--x", false], "n": 8, "keep": {"a": 1}});
    assert!(holds(&a, &retyped, "").is_err());
    let renumbered: Value =
        serde_json::json!({"args": ["--x", "no"], "n": "010", "keep": {"a": 1}});
    assert!(holds(&a, &renumbered, "").is_err());
    let dropped: Value = serde_json::json!({"args": ["--x", "no"], "n": 8, "keep": {}});
    assert!(holds(&a, &dropped, "").is_err());
}

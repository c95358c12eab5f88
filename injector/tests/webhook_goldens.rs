//! The injector's golden corpus (`tests/golden/`, which `tests/golden.rs`
//! runs through the CLI and the KRM function) through the admission
//! webhook, over real TLS.
//!
//! The webhook sees Pods, not workloads, so each pod template in a case's
//! input (a Pod itself, or a workload's template) is sent as the Pod the
//! controller would create from it. For a case that exits 0, the JSON
//! patch applied to that Pod, put back into its workload, must give
//! exactly the golden output's document; the golden report's warnings for
//! the object must come back as admission warnings. For a case that exits
//! 2, the webhook must deny a Pod with the gate's own message, the same
//! text the CLI prints after the file, document and object.
//!
//! The Pod goes out as JSON in the document's own key order (as the API
//! server sends its own order), since the status annotation's fingerprint
//! depends on it. The answers are compared as JSON values: the webhook
//! never sees YAML comments or quoting, which the CLI goldens check byte
//! for byte. Each Pod is sent twice, and the second answer must equal the
//! first: the second review takes the gate's container the first handed
//! back to the injector's cache.
//!
//! One deliberate difference from the CLI: a Pod that already carries
//! `secret-gate.dev/status` is left as it is (the webhook's contract:
//! "already injected: allowed, no patch"), even where the CLI would
//! re-inject a re-annotated template; a status the core cannot read is
//! still refused, like the CLI does.
#![expect(clippy::expect_used, clippy::too_many_lines, reason = "tests")]

#[path = "../../tests/common/bounded.rs"]
mod bounded;
mod webhook_support;

use std::path::{Path, PathBuf};

use secret_gate_injector::document::{self, Format, Input};
use serde_json::Value;
use webhook_support::{patched, start, Client, Pki, SecretVolume};

/// The path of the pod template inside each workload kind (and API group).
fn template_path(api_version: &str, kind: &str) -> Option<&'static [&'static str]> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let known = match kind {
        "Pod" | "ReplicationController" => group.is_empty(),
        "Deployment" | "DaemonSet" | "ReplicaSet" => matches!(group, "apps" | "extensions"),
        "StatefulSet" => group == "apps",
        "Job" | "CronJob" => group == "batch",
        _ => false,
    };
    if !known {
        return None;
    }
    match kind {
        "Pod" => Some(&[]),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => Some(&["spec", "template"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// A case's documents, in their key order, with `List`s opened into
/// their items.
fn documents(path: &Path) -> Option<Vec<serde_yaml_ng::Value>> {
    let text = std::fs::read_to_string(path).ok()?;
    let format =
        if path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Yaml
        };
    let input = Input {
        name: path.display().to_string(),
        text,
        format,
    };
    let docs = document::documents(&input).ok()?;
    let mut out = Vec::new();
    for doc in docs.into_iter().filter_map(|d| d.value) {
        let is_list = doc
            .get("kind")
            .and_then(serde_yaml_ng::Value::as_str)
            .is_some_and(|k| k.ends_with("List"));
        match doc.get("items").and_then(serde_yaml_ng::Value::as_sequence) {
            Some(items) if is_list => out.extend(items.iter().cloned()),
            _ => out.push(doc),
        }
    }
    Some(out)
}

/// The Pod the controller would create from `doc`'s template, in the
/// template's key order.
fn pod_of(doc: &serde_yaml_ng::Value) -> Option<serde_yaml_ng::Value> {
    use serde_yaml_ng::{Mapping, Value as Yaml};
    let path = template_path(doc.get("apiVersion")?.as_str()?, doc.get("kind")?.as_str()?)?;
    if path.is_empty() {
        return Some(doc.clone());
    }
    let mut template = doc;
    for key in path {
        template = template.get(*key)?;
    }
    let mut pod = Mapping::new();
    pod.insert("apiVersion".into(), "v1".into());
    pod.insert("kind".into(), "Pod".into());
    pod.insert(
        "metadata".into(),
        template
            .get("metadata")
            .cloned()
            .unwrap_or_else(|| Yaml::Mapping(Mapping::new())),
    );
    pod.insert(
        "spec".into(),
        template.get("spec").cloned().unwrap_or(Yaml::Null),
    );
    Some(Yaml::Mapping(pod))
}

/// A Pod CREATE review, with the pod in its own key order.
fn review_body(uid: &str, pod: &serde_yaml_ng::Value) -> Vec<u8> {
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":{},"kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"namespace":"apps","operation":"CREATE","object":{}}}}}"#,
        serde_json::to_string(uid).expect("uid"),
        serde_json::to_string(pod).expect("the pod as JSON")
    )
    .into_bytes()
}

/// `doc` with its template replaced by `pod`'s metadata and spec.
fn with_pod(doc: &Value, pod: &Value) -> Value {
    let Some(path) = template_path(
        doc["apiVersion"].as_str().unwrap_or_default(),
        doc["kind"].as_str().unwrap_or_default(),
    ) else {
        return doc.clone();
    };
    if path.is_empty() {
        return pod.clone();
    }
    let mut out = doc.clone();
    let mut template = &mut out;
    for key in path {
        template = &mut template[*key];
    }
    template["metadata"] = pod["metadata"].clone();
    template["spec"] = pod["spec"].clone();
    out
}

/// For a workload, the status annotation's `inputs` fingerprint is of
/// what the core saw: the template in the CLI, a Pod (with `apiVersion`
/// and `kind`) in the webhook. Everything else in it must match.
fn without_fingerprint(doc: &Value) -> Value {
    let mut out = doc.clone();
    let Some(path) = template_path(
        doc["apiVersion"].as_str().unwrap_or_default(),
        doc["kind"].as_str().unwrap_or_default(),
    ) else {
        return out;
    };
    if path.is_empty() {
        return out;
    }
    let mut template = &mut out;
    for key in path {
        template = &mut template[*key];
    }
    let status = &mut template["metadata"]["annotations"]["secret-gate.dev/status"];
    if let Some(text) = status.as_str() {
        // `v1;h=<fingerprint>;...`: every field but the fingerprint must match.
        assert!(
            text.split(';').any(|f| f.starts_with("h=")),
            "a status annotation without h=: {text}"
        );
        let masked: Vec<&str> = text
            .split(';')
            .map(|f| {
                if f.starts_with("h=") {
                    "h=(fingerprint)"
                } else {
                    f
                }
            })
            .collect();
        *status = Value::from(masked.join(";"));
    }
    out
}

/// `kind/name` as the report names an object.
fn object_name(doc: &Value) -> String {
    let meta = &doc["metadata"];
    let name = meta["name"]
        .as_str()
        .or_else(|| meta["generateName"].as_str())
        .unwrap_or("(no name)");
    format!(
        "{}/{name}",
        doc["kind"]
            .as_str()
            .unwrap_or("object")
            .to_ascii_lowercase()
    )
}

struct Case {
    name: String,
    dir: PathBuf,
    input: PathBuf,
    args: Vec<String>,
}

fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/golden")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .filter_map(|dir| {
            let input = ["input.yaml", "input.json"]
                .iter()
                .map(|f| dir.join(f))
                .find(|p| p.exists())?;
            let args = std::fs::read_to_string(dir.join("args"))
                .map(|a| a.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default();
            Some(Case {
                name: dir.file_name()?.to_string_lossy().into_owned(),
                dir,
                input,
                args,
            })
        })
        .collect()
}

/// The golden error lines' own text, after `error: FILE: document N:
/// kind/name: ` (the webhook names the Pod instead of the workload).
fn core_errors(report: &str) -> Vec<String> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("error: "))
        .map(|l| {
            let after_index = l.split_once(": document ").map_or(l, |(_, rest)| {
                rest.split_once(": ").map_or(rest, |(_, r)| r)
            });
            // And the object, which the webhook names as the Pod.
            after_index
                .split_once(": ")
                .map_or(after_index, |(_, r)| r)
                .to_owned()
        })
        .collect()
}

#[test]
fn the_golden_corpus_through_the_webhook_gives_the_clis_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let volume = SecretVolume::new(&dir.path().join("tls"), &pki.valid());
    let mut plain = start(&volume, &[]);
    let mut imaged = start(&volume, &["--image", "localhost/secret-gate:dev"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cases = cases();
    assert!(cases.len() >= 20, "the corpus lost cases: {}", cases.len());
    let mut reviewed = 0;
    let mut denied_cases = 0;
    let mut injected = 0;
    let mut already = 0;
    for case in &cases {
        // `api-server-refuses`: a Pod the API server refuses before any
        // webhook sees it (the file says why); the webhook's typed check
        // covers only what the core adds.
        if case.args.iter().any(|a| a == "--check")
            || case.dir.join("cli-only").exists()
            || case.dir.join("api-server-refuses").exists()
        {
            continue;
        }
        let Some(inputs) = documents(&case.input) else {
            continue;
        };
        let code: i32 = std::fs::read_to_string(case.dir.join("code"))
            .expect("code")
            .trim()
            .parse()
            .expect("a code");
        let report = std::fs::read_to_string(case.dir.join("report")).unwrap_or_default();
        let hook = if case.args.iter().any(|a| a == "--image") {
            &mut imaged
        } else {
            &mut plain
        };
        let addr = hook.addr;
        let mut client = rt
            .block_on(Client::connect(addr, pki.client_config()))
            .expect("connect");
        let mut outputs = Vec::new();
        let mut denials = Vec::new();
        for (index, yaml) in inputs.iter().enumerate() {
            let doc: Value = serde_json::to_value(yaml).expect("JSON");
            let Some(pod_yaml) = pod_of(yaml) else {
                outputs.push(doc);
                continue;
            };
            let pod: Value = serde_json::to_value(&pod_yaml).expect("JSON");
            let uid = format!("{}-{index}", case.name);
            let answer = rt
                .block_on(client.send("POST", "/mutate", review_body(&uid, &pod_yaml)))
                .expect("review");
            reviewed += 1;
            assert_eq!(answer.status, 200, "{}: {}", case.name, answer.text());
            let review = answer.json();
            // Again: the gate's container the first review handed back to
            // the cache must give the same answer as a fresh one.
            let again = rt
                .block_on(client.send("POST", "/mutate", review_body(&uid, &pod_yaml)))
                .expect("review");
            assert_eq!(
                again.json(),
                review,
                "{}: a second review differs",
                case.name
            );
            let response = &review["response"];
            assert_eq!(response["uid"], uid.as_str());
            if response["allowed"] == false {
                assert_eq!(response["status"]["code"], 400, "{}: {review}", case.name);
                let message = response["status"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                denials.push(message);
                outputs.push(doc);
                continue;
            }
            let after = patched(&pod, &review);
            if pod["metadata"]["annotations"]
                .get("secret-gate.dev/status")
                .is_some()
            {
                assert_eq!(after, pod, "{}: an injected pod was patched", case.name);
                already += 1;
                // Compared with its input here: the CLI may re-inject it.
                outputs.push(Value::Null);
                continue;
            }
            if after != pod {
                injected += 1;
            }
            // Warnings: what the report says about this object.
            let object = object_name(&doc);
            let want: Vec<&str> = report
                .lines()
                .filter_map(|l| l.strip_prefix("warning: "))
                .filter_map(|l| l.strip_prefix(&format!("{object}: ")))
                // A file's comments are the CLI's business (as in the KRM
                // front end): the webhook never sees any.
                .filter(|w| !w.starts_with("comments not preserved"))
                .collect();
            let got: Vec<&str> = response["warnings"]
                .as_array()
                .map(|w| w.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for warning in &want {
                assert!(
                    got.contains(warning),
                    "{}: {object}: warning {warning:?} missing from {got:?}",
                    case.name
                );
            }
            outputs.push(with_pod(&doc, &after));
        }
        if !inputs.iter().any(|d| pod_of(d).is_some()) {
            // No pod template at all (a document that is not an object):
            // nothing the API server would send; the hostile-input test
            // covers such objects.
            continue;
        }
        if code == 2 {
            denied_cases += 1;
            let want = core_errors(&report);
            assert!(
                !denials.is_empty(),
                "{}: the CLI refuses it ({want:?}) but the webhook allowed every pod",
                case.name
            );
            for message in &denials {
                assert!(
                    want.iter().any(|w| message.ends_with(w.as_str())),
                    "{}: denial {message:?} is not the gate's message {want:?}",
                    case.name
                );
            }
        } else {
            assert!(denials.is_empty(), "{}: denied {denials:?}", case.name);
            let expected: Vec<Value> = documents(&case.dir.join("output"))
                .unwrap_or_default()
                .iter()
                .map(|d| serde_json::to_value(d).expect("JSON"))
                .collect();
            assert_eq!(
                outputs.len(),
                expected.len(),
                "{}: document count",
                case.name
            );
            for (index, (got, want)) in outputs.iter().zip(&expected).enumerate() {
                if got.is_null() {
                    continue;
                }
                assert_eq!(
                    without_fingerprint(got),
                    without_fingerprint(want),
                    "{}: document {index}: the patched pod differs from the CLI's output",
                    case.name
                );
            }
        }
    }
    assert!(reviewed >= 30, "only {reviewed} pods reviewed");
    assert!(already >= 3, "only {already} already-injected pods");
    assert!(injected >= 10, "only {injected} pods injected");
    assert!(denied_cases >= 10, "only {denied_cases} refused cases");
    plain.process.assert_running("after the corpus");
    imaged.process.assert_running("after the corpus");
}

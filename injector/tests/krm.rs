//! The KRM function when it fails: the binary, given a `ResourceList` it
//! cannot process, exits non-zero with the errors on stderr and still
//! answers with a `ResourceList`: the input items unchanged and one
//! `severity: error` result per problem, naming the item and what to
//! change (the KRM functions spec's way to report a failure to kpt).

#![expect(
    clippy::unwrap_used,
    reason = "test code: a panic fails the test, with its location"
)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_yaml_ng::Value;

const BIN: &str = env!("CARGO_BIN_EXE_secret-gate-injector");

fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A secret value that must never reach a message.
const SECRET: &str = "c3VwZXItc2VjcmV0LXZhbHVl";

fn list(function_config: &str, bad_mode: &str) -> String {
    format!(
        r#"apiVersion: config.kubernetes.io/v1
kind: ResourceList
{function_config}items:
  - apiVersion: v1
    kind: Secret
    metadata: {{name: db}}
    data: {{password: {SECRET}}}
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: good, namespace: prod}}
    spec:
      selector: {{matchLabels: {{app: good}}}}
      template:
        metadata:
          labels: {{app: good}}
          annotations:
            secret-gate.dev/inject: "true"
            secret-gate.dev/mount-path: /secrets
            secret-gate.dev/required-keys: password
        spec:
          containers:
            - name: app
              image: example.com/app:1
              volumeMounts: [{{name: s, mountPath: /secrets}}]
          volumes: [{{name: s, secret: {{secretName: db}}}}]
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: bad, namespace: prod}}
    spec:
      selector: {{matchLabels: {{app: bad}}}}
      template:
        metadata:
          labels: {{app: bad}}
          annotations:
            secret-gate.dev/inject: "true"
            secret-gate.dev/mount-path: /secrets
            secret-gate.dev/required-keys: password
            secret-gate.dev/mode: {bad_mode}
        spec:
          containers:
            - name: app
              image: example.com/app:1
              volumeMounts: [{{name: s, mountPath: /secrets}}]
          volumes: [{{name: s, secret: {{secretName: db}}}}]
"#
    )
}

fn items(v: &Value) -> &Vec<Value> {
    v["items"].as_sequence().unwrap()
}

#[test]
fn a_bad_item_fails_the_function_with_an_error_result_and_the_items_unchanged() {
    let input = list("", "daemon");
    let (code, stdout, stderr) = run(&["inject"], &input);
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(
        stderr.contains(
            "error: ResourceList: item 2: deployment/bad: secret-gate.dev/mode is \"daemon\""
        ),
        "{stderr}"
    );
    let answer: Value = serde_yaml_ng::from_str(&stdout).unwrap();
    let given: Value = serde_yaml_ng::from_str(&input).unwrap();
    assert_eq!(answer["kind"].as_str(), Some("ResourceList"));
    assert_eq!(
        items(&answer),
        items(&given),
        "the items are not half-injected"
    );
    let results = answer["results"].as_sequence().unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    let r = &results[0];
    assert_eq!(r["severity"].as_str(), Some("error"));
    let message = r["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("item 2: deployment/bad: secret-gate.dev/mode is \"daemon\": write init"),
        "{message}"
    );
    assert_eq!(r["resourceRef"]["kind"].as_str(), Some("Deployment"));
    assert_eq!(r["resourceRef"]["name"].as_str(), Some("bad"));
    assert_eq!(r["resourceRef"]["namespace"].as_str(), Some("prod"));
    assert_eq!(r["resourceRef"]["apiVersion"].as_str(), Some("apps/v1"));
    for text in [message, stderr.as_str()] {
        assert!(!text.contains(SECRET), "a message carries a secret: {text}");
    }

    // JSON in, JSON out, on failure too.
    let json = serde_json::to_string(&given).unwrap();
    let (code, stdout, _) = run(&["inject"], &json);
    assert_eq!(code, 2);
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["results"][0]["severity"], "error");

    // --check still writes nothing.
    let (code, stdout, stderr) = run(&["inject", "--check"], &input);
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");

    // The same list, fixed, injects.
    let (code, stdout, stderr) = run(&["inject"], &list("", "init"));
    assert_eq!(code, 0, "{stderr}");
    let answer: Value = serde_yaml_ng::from_str(&stdout).unwrap();
    let results = answer["results"].as_sequence().unwrap();
    assert!(
        results.iter().all(|r| r["severity"] != "error"),
        "{results:?}"
    );
}

#[test]
fn every_bad_item_gets_its_own_error_result() {
    let input = list("", "daemon").replace("mount-path: /secrets\n            secret-gate.dev/required-keys: password\n        spec:", "mount-path: /elsewhere\n            secret-gate.dev/required-keys: password\n        spec:");
    let (code, stdout, stderr) = run(&["inject"], &input);
    assert_eq!(code, 2, "stderr: {stderr}");
    let answer: Value = serde_yaml_ng::from_str(&stdout).unwrap();
    let results = answer["results"].as_sequence().unwrap();
    let named: Vec<&str> = results
        .iter()
        .map(|r| r["resourceRef"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(named, ["good", "bad"], "{results:?}");
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
}

#[test]
fn a_bad_function_config_is_an_error_result_without_a_resource() {
    let config = "functionConfig:\n  apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: cfg}\n  data: {mode: daemon}\n";
    let input = list(config, "init");
    let (code, stdout, stderr) = run(&["inject"], &input);
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(
        stderr.contains(
            "error: ResourceList: functionConfig mode is \"daemon\": write init or sidecar"
        ),
        "{stderr}"
    );
    let answer: Value = serde_yaml_ng::from_str(&stdout).unwrap();
    let given: Value = serde_yaml_ng::from_str(&input).unwrap();
    assert_eq!(items(&answer), items(&given));
    assert_eq!(answer["functionConfig"], given["functionConfig"]);
    let results = answer["results"].as_sequence().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["severity"].as_str(), Some("error"));
    assert!(results[0].get("resourceRef").is_none(), "{results:?}");
}

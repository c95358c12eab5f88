//! The KRM function when it fails: the binary, given a `ResourceList` it
//! cannot process, exits non-zero with the errors on stderr and still
//! answers with a `ResourceList`: the input items unchanged and one
//! `severity: error` result per problem, naming the item and what to
//! change (the KRM functions spec's way to report a failure to kpt).

#![expect(
    clippy::unwrap_used,
    reason = "test code: a panic fails the test, with its location"
)]

use serde_yaml_ng::Value;

mod cli_support;

fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    cli_support::run_bin(&args, stdin.as_bytes())
}

/// A secret value that must never reach a message.
const SECRET: &str = "c3VwZXItc2VjcmV0LXZhbHVl";

/// An opted-in Deployment in `prod` whose app mounts the secret at
/// `/secrets`, with the gate's files at `mount_path` and a `mode`.
fn deployment(name: &str, mount_path: &str, mode: &str) -> String {
    format!(
        r#"  - apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: {name}, namespace: prod}}
    spec:
      selector: {{matchLabels: {{app: {name}}}}}
      template:
        metadata:
          labels: {{app: {name}}}
          annotations:
            secret-gate.dev/inject: "true"
            secret-gate.dev/mount-path: {mount_path}
            secret-gate.dev/required-keys: password
            secret-gate.dev/mode: {mode}
        spec:
          containers:
            - name: app
              image: example.com/app:1
              volumeMounts: [{{name: s, mountPath: /secrets}}]
          volumes: [{{name: s, secret: {{secretName: db}}}}]
"#
    )
}

/// A `ResourceList`: a Secret, the Deployment `good` (`good_path` its
/// mount path) and the Deployment `bad` (`bad_mode` its mode).
fn list(function_config: &str, good_path: &str, bad_mode: &str) -> String {
    format!(
        "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\n{function_config}items:\n  \
         - apiVersion: v1\n    kind: Secret\n    metadata: {{name: db}}\n    data: {{password: {SECRET}}}\n{}{}",
        deployment("good", good_path, "init"),
        deployment("bad", "/secrets", bad_mode),
    )
}

fn items(v: &Value) -> &Vec<Value> {
    v["items"].as_sequence().unwrap()
}

#[test]
fn a_bad_item_fails_the_function_with_an_error_result_and_the_items_unchanged() {
    let input = list("", "/secrets", "daemon");
    let (code, stdout, stderr) = run(&["inject"], &input);
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(
        stderr.contains(
            "error: ResourceList: item 2: deployment/bad: secret-gate.dev/mode is \"daemon\""
        ),
        "{stderr}"
    );
    let answer: Value = secret_gate_injector::yaml::load(&stdout).unwrap().unwrap();
    let given: Value = secret_gate_injector::yaml::load(&input).unwrap().unwrap();
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
    let (code, stdout, stderr) = run(&["inject"], &list("", "/secrets", "init"));
    assert_eq!(code, 0, "{stderr}");
    let answer: Value = secret_gate_injector::yaml::load(&stdout).unwrap().unwrap();
    let results = answer["results"].as_sequence().unwrap();
    assert!(
        results.iter().all(|r| r["severity"] != "error"),
        "{results:?}"
    );
}

#[test]
fn every_bad_item_gets_its_own_error_result() {
    let input = list("", "/elsewhere", "daemon");
    let (code, stdout, stderr) = run(&["inject"], &input);
    assert_eq!(code, 2, "stderr: {stderr}");
    let answer: Value = secret_gate_injector::yaml::load(&stdout).unwrap().unwrap();
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
    let input = list(config, "/secrets", "init");
    let (code, stdout, stderr) = run(&["inject"], &input);
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(
        stderr.contains(
            "error: ResourceList: functionConfig mode is \"daemon\": write init or sidecar"
        ),
        "{stderr}"
    );
    let answer: Value = secret_gate_injector::yaml::load(&stdout).unwrap().unwrap();
    let given: Value = secret_gate_injector::yaml::load(&input).unwrap().unwrap();
    assert_eq!(items(&answer), items(&given));
    assert_eq!(answer["functionConfig"], given["functionConfig"]);
    let results = answer["results"].as_sequence().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["severity"].as_str(), Some("error"));
    assert!(results[0].get("resourceRef").is_none(), "{results:?}");
}

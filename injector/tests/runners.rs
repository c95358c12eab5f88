//! The KRM function under the real runners, as users run it:
//! - the bare binary (no arguments, a `ResourceList` on stdin), which is
//!   how kustomize's exec functions call it;
//! - `kpt fn eval DIR --exec BINARY`;
//! - `kpt fn render DIR --allow-exec` over a Kptfile pipeline whose
//!   mutator is `exec: BINARY`, twice: the second render changes nothing.
//!
//! kpt ships with the Google Cloud CLI packages on these machines; where it
//! is missing the test fails and says so. What kpt wrote is read back by
//! kubectl (go-yaml v2), so YAML 1.1 scalars are checked as the cluster
//! reads them.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic fails the test, with its location"
)]

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

mod cli_support;
mod kubectl_support;

const BIN: &str = env!("CARGO_BIN_EXE_secret-gate-injector");

/// An opted-in Deployment with strings that YAML 1.1 would retype if they
/// lost their quotes, and a `ConfigMap` that is not opted in.
const APP: &str = r#"# The app. kpt keeps this comment.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: redis
spec:
  replicas: 010
  selector:
    matchLabels: {app: redis}
  template:
    metadata:
      labels: {app: redis}
      annotations:
        secret-gate.dev/inject: "true"
        secret-gate.dev/mount-path: /secrets
        secret-gate.dev/required-keys: password
    spec:
      containers:
      - name: redis
        image: redis:7
        args: [redis-server, --appendonly, "no"]
        env: [{name: FLAG, value: "yes"}]
        volumeMounts: [{name: s, mountPath: /secrets}]
      volumes:
      - name: s
        secret: {secretName: s, defaultMode: 0400}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {appendonly: "no"}
"#;

fn kpt(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("kpt")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect(
            "kpt is needed for this test (it comes with the Google Cloud CLI packages, as \
             /usr/bin/kpt): install it",
        );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kpt {args:?} failed:\n{text}");
    text
}

/// The objects of a file, as kubectl reads them.
fn kubectl_read(file: &Path) -> Vec<Value> {
    kubectl_support::read(file)
        .unwrap_or_else(|e| panic!("kubectl cannot read {}: {e}", file.display()))
}

/// The package kpt wrote is the app with the gate, read as kubectl reads
/// it: the strings are strings, the octal numbers numbers.
fn assert_injected(file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        text.starts_with("# The app. kpt keeps this comment."),
        "{text}"
    );
    let objects = kubectl_read(file);
    assert_eq!(objects.len(), 2, "{text}");
    let (deploy, config) = (&objects[0], &objects[1]);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(deploy["spec"]["replicas"], 8, "{text}");
    assert_eq!(
        pod["containers"][0]["args"],
        serde_json::json!(["redis-server", "--appendonly", "no"])
    );
    assert_eq!(pod["containers"][0]["env"][0]["value"], "yes");
    assert_eq!(pod["volumes"][0]["secret"]["defaultMode"], 256);
    assert_eq!(pod["initContainers"][0]["name"], "secret-gate", "{text}");
    assert_eq!(config["data"]["appendonly"], "no");
}

fn package() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yaml"), APP).unwrap();
    dir
}

#[test]
fn kpt_fn_eval_runs_the_bare_binary() {
    let dir = package();
    let out = kpt(dir.path(), &["fn", "eval", ".", "--exec", BIN]);
    assert!(out.contains("injected (init, watch)"), "{out}");
    assert_injected(&dir.path().join("app.yaml"));
}

#[test]
fn kpt_fn_eval_runs_the_inject_subcommand() {
    let dir = package();
    kpt(
        dir.path(),
        &["fn", "eval", ".", "--exec", &format!("{BIN} inject")],
    );
    assert_injected(&dir.path().join("app.yaml"));
}

#[test]
fn kpt_fn_render_runs_a_pipeline_and_converges() {
    let dir = package();
    std::fs::write(
        dir.path().join("Kptfile"),
        format!(
            "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: app\npipeline:\n  \
             mutators:\n  - exec: {BIN}\n"
        ),
    )
    .unwrap();
    kpt(dir.path(), &["fn", "render", ".", "--allow-exec"]);
    let app = dir.path().join("app.yaml");
    assert_injected(&app);
    let once = std::fs::read_to_string(&app).unwrap();
    kpt(dir.path(), &["fn", "render", ".", "--allow-exec"]);
    assert_eq!(
        std::fs::read_to_string(&app).unwrap(),
        once,
        "a second render changed the package"
    );
}

#[test]
fn the_bare_binary_refuses_anything_but_a_resource_list() {
    let (code, stdout, stderr) = cli_support::run_bin(&[], APP.as_bytes());
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("stdin must be a KRM ResourceList")
            && stderr.contains("secret-gate-injector inject"),
        "{stderr}"
    );
    let (code, _, stderr) = cli_support::run_bin(&[], b"");
    assert_eq!(code, 2, "{stderr}");
}

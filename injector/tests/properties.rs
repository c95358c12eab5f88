//! Properties over generated pod templates (a small seeded generator, so a
//! failure names its seed and replays):
//! - inject(inject(x)) == inject(x), through the core and, byte for byte,
//!   through the binary;
//! - a document without the opt-in is unchanged (and passes through the
//!   binary byte for byte);
//! - `inject: "false"` on an injected document gives back the original;
//! - injecting, and removing the gate, edit only the parts of the template
//!   named in `inject::EDITED` (the admission webhook copies and compares
//!   only those), and a Pod injected in place (as the webhook does) is
//!   the Pod `inject` gives;
//! - every injected template parses strictly (the injected container has
//!   no field k8s-openapi does not know) and, when the app's containers
//!   are restricted, the whole pod meets the restricted Pod Security
//!   Standard that tests/manifests.rs applies to manifests/.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a panic fails the test, with its location"
)]

#[path = "../../tests/restricted/mod.rs"]
mod restricted;

use std::fmt::Write as _;
use std::io::Write;
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use secret_gate_injector::inject::EDITED;
use secret_gate_injector::{Injector, Settings};
use serde_yaml_ng::{Mapping, Value};

const BIN: &str = env!("CARGO_BIN_EXE_secret-gate-injector");
const CASES: u64 = 300;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn coin(&mut self) -> bool {
        self.below(2) == 0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[usize::try_from(self.below(xs.len() as u64)).unwrap()]
    }
}

fn s(x: &str) -> Value {
    Value::String(x.to_owned())
}

fn m(pairs: Vec<(&str, Value)>) -> Value {
    let mut map = Mapping::new();
    for (k, v) in pairs {
        map.insert(s(k), v);
    }
    Value::Mapping(map)
}

fn restricted_sc() -> Value {
    serde_yaml_ng::from_str(
        "{runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, allowPrivilegeEscalation: false, \
         readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}",
    )
    .unwrap()
}

fn resources() -> Value {
    serde_yaml_ng::from_str(
        "{requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 64Mi}}",
    )
    .unwrap()
}

fn app(rng: &mut Rng, name: &str, mounts: Vec<Value>) -> Value {
    let mut pairs = vec![
        ("name", s(name)),
        ("image", s("example.com/app:1")),
        ("imagePullPolicy", s("IfNotPresent")),
    ];
    if rng.coin() {
        pairs.push((
            "env",
            Value::Sequence(vec![m(vec![
                ("name", s("FLAG")),
                ("value", s(rng.pick(&["true", "5", "null", "on", "x"]))),
            ])]),
        ));
    }
    if !mounts.is_empty() {
        pairs.push(("volumeMounts", Value::Sequence(mounts)));
    }
    pairs.push(("securityContext", restricted_sc()));
    pairs.push(("resources", resources()));
    pairs.push(("terminationMessagePolicy", s("FallbackToLogsOnError")));
    if rng.coin() {
        pairs.push(("xFutureField", s("keep")));
    }
    m(pairs)
}

/// A workload (of a random kind) whose template may or may not opt in.
#[expect(clippy::too_many_lines, reason = "one generator, read top to bottom")]
fn workload(rng: &mut Rng, i: u64, opt_in: bool) -> Value {
    let kind = rng.pick(&[
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "CronJob",
    ]);
    let source = rng.pick(&["watch", "safe"]);
    let mode = rng.pick(&["init", "sidecar"]);
    let dir = rng.pick(&["/secrets", "/etc/creds", "/run/secrets/app"]);
    let deeper = rng.coin();
    let mut annotations = vec![("unrelated", s(rng.pick(&["true", "1", "x"])))];
    if opt_in {
        annotations.push(("secret-gate.dev/inject", s("true")));
        if source == "safe" || rng.coin() {
            annotations.push(("secret-gate.dev/source", s(source)));
        }
        if rng.coin() {
            annotations.push(("secret-gate.dev/mode", s(mode)));
        }
        let keys = rng.pick(&["a", "a,b", "/db/password"]);
        annotations.push(("secret-gate.dev/required-keys", s(keys)));
        if source == "watch" {
            let at = if deeper {
                format!("{dir}/sub")
            } else {
                dir.to_owned()
            };
            annotations.push(("secret-gate.dev/mount-path", Value::String(at)));
            if keys.starts_with('/') || rng.coin() {
                annotations.push(("secret-gate.dev/file", s("secret.json")));
            }
        } else if rng.coin() {
            annotations.push(("secret-gate.dev/output-dir", s(dir)));
        }
        if rng.coin() {
            annotations.push(("secret-gate.dev/timeout", s(rng.pick(&["30s", "2m", "1h"]))));
        }
    } else if rng.coin() {
        annotations.push(("secret-gate.dev/inject", s(rng.pick(&["false", "no", ""]))));
    }
    let containers: Vec<Value> = (0..=rng.below(2))
        .map(|c| {
            let mounts = if c == 0 {
                vec![m(vec![
                    ("name", s("secrets")),
                    ("mountPath", s(dir)),
                    ("readOnly", Value::Bool(true)),
                ])]
            } else {
                Vec::new()
            };
            app(rng, &format!("app{c}"), mounts)
        })
        .collect();
    let mut spec = vec![];
    if rng.coin() {
        spec.push(("automountServiceAccountToken", Value::Bool(false)));
    }
    if rng.coin() {
        let init = app(rng, "setup", Vec::new());
        spec.push(("initContainers", Value::Sequence(vec![init])));
    }
    spec.push(("containers", Value::Sequence(containers)));
    if matches!(kind, "Job" | "CronJob") {
        spec.push(("restartPolicy", s("Never")));
    }
    spec.push((
        "volumes",
        Value::Sequence(vec![m(vec![
            ("name", s("secrets")),
            ("emptyDir", m(vec![("medium", s("Memory"))])),
        ])]),
    ));
    let meta = |name: String, annotations: Vec<(&str, Value)>| {
        m(vec![
            ("name", Value::String(name)),
            ("annotations", m(annotations)),
        ])
    };
    let template = m(vec![
        ("metadata", meta(format!("t{i}"), annotations)),
        ("spec", m(spec)),
    ]);
    let name = format!("w{i}");
    match kind {
        "Pod" => {
            let Value::Mapping(mut t) = template else {
                unreachable!()
            };
            let mut obj = Mapping::new();
            obj.insert(s("apiVersion"), s("v1"));
            obj.insert(s("kind"), s("Pod"));
            let mut md = t.remove("metadata").unwrap();
            md.as_mapping_mut()
                .unwrap()
                .insert(s("name"), Value::String(name));
            obj.insert(s("metadata"), md);
            obj.insert(s("spec"), t.remove("spec").unwrap());
            Value::Mapping(obj)
        }
        "CronJob" => m(vec![
            ("apiVersion", s("batch/v1")),
            ("kind", s("CronJob")),
            ("metadata", m(vec![("name", Value::String(name))])),
            (
                "spec",
                m(vec![
                    ("schedule", s("0 * * * *")),
                    (
                        "jobTemplate",
                        m(vec![("spec", m(vec![("template", template)]))]),
                    ),
                ]),
            ),
        ]),
        _ => {
            let api = if kind == "Job" { "batch/v1" } else { "apps/v1" };
            m(vec![
                ("apiVersion", s(api)),
                ("kind", s(kind)),
                ("metadata", m(vec![("name", Value::String(name))])),
                ("spec", m(vec![("template", template)])),
            ])
        }
    }
}

fn template_of(obj: &Value) -> &Value {
    match obj["kind"].as_str().unwrap() {
        "Pod" => obj,
        "CronJob" => &obj["spec"]["jobTemplate"]["spec"]["template"],
        _ => &obj["spec"]["template"],
    }
}

/// The template without the parts injection may edit (`EDITED`).
fn without_edited(template: &Value) -> Value {
    let mut rest = template.clone();
    for at in EDITED {
        let (last, parents) = at.split_last().unwrap();
        let parent = parents.iter().try_fold(&mut rest, |v, k| v.get_mut(*k));
        if let Some(Value::Mapping(parent)) = parent {
            parent.remove(*last);
        }
    }
    rest
}

fn check_injected(seed: u64, obj: &Value) {
    let template = template_of(obj);
    let typed: PodTemplateSpec = serde_yaml_ng::from_value(template.clone())
        .unwrap_or_else(|e| panic!("seed {seed}: not a PodTemplateSpec: {e}"));
    let gate = template["spec"]["initContainers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "secret-gate")
        .unwrap_or_else(|| panic!("seed {seed}: no gate"));
    let mut unknown = Vec::new();
    let _: Container = serde_ignored::deserialize(gate.clone(), |p| unknown.push(p.to_string()))
        .unwrap_or_else(|e| panic!("seed {seed}: gate container: {e}"));
    assert!(
        unknown.is_empty(),
        "seed {seed}: the gate container has unknown fields {unknown:?}"
    );
    restricted::check_pod(&format!("seed {seed}"), typed.spec.as_ref().unwrap());
    if obj["kind"] == "Job" || obj["kind"] == "CronJob" {
        // A regular container that keeps running would hold the Job open.
        let spec = typed.spec.as_ref().unwrap();
        assert!(
            spec.containers.iter().all(|c| c.name != "secret-gate"),
            "seed {seed}"
        );
    }
}

#[test]
fn injection_is_idempotent_reversible_and_leaves_the_rest_alone() {
    let injector = Injector::new(Settings::default());
    let mut injected = 0;
    for seed in 1..=CASES {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let opt_in = rng.below(4) != 0;
        let x = workload(&mut rng, seed, opt_in);
        let once = injector.inject_value(&x).unwrap_or_else(|e| {
            panic!(
                "seed {seed}: {e}\n{}",
                serde_yaml_ng::to_string(&x).unwrap()
            )
        });
        if !opt_in {
            assert!(
                once.value.is_none(),
                "seed {seed}: a document without the opt-in changed"
            );
            continue;
        }
        let y = once
            .value
            .unwrap_or_else(|| panic!("seed {seed}: opted in but unchanged"));
        injected += 1;
        check_injected(seed, &y);
        assert_eq!(
            without_edited(template_of(&x)),
            without_edited(template_of(&y)),
            "seed {seed}: injection edited a part of the template outside EDITED"
        );
        if x["kind"] == "Pod" {
            let mut in_place = x.clone();
            injector.inject_pod(&mut in_place).unwrap();
            assert_eq!(
                in_place, y,
                "seed {seed}: the Pod injected in place differs"
            );
        }
        let twice = injector.inject_value(&y).unwrap();
        assert!(
            twice.value.is_none(),
            "seed {seed}: inject(inject(x)) != inject(x)"
        );
        // Opting out again gives back x, apart from the inject annotation.
        let mut off = y.clone();
        let flip = |v: &mut Value| {
            let t = match v["kind"].as_str().unwrap() {
                "Pod" => v,
                "CronJob" => &mut v["spec"]["jobTemplate"]["spec"]["template"],
                _ => &mut v["spec"]["template"],
            };
            t["metadata"]["annotations"]["secret-gate.dev/inject"] = s("false");
        };
        flip(&mut off);
        let removed = injector.inject_value(&off).unwrap().value.unwrap();
        assert_eq!(
            without_edited(template_of(&off)),
            without_edited(template_of(&removed)),
            "seed {seed}: removing the gate edited a part of the template outside EDITED"
        );
        let mut expected = x.clone();
        flip(&mut expected);
        assert_eq!(
            removed, expected,
            "seed {seed}: removing the gate did not restore the template"
        );
    }
    assert!(injected > CASES / 2, "too few opted-in cases: {injected}");
}

fn run_bin(stdin: &str) -> (i32, String) {
    let mut child = Command::new(BIN)
        .arg("inject")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_owned();
    let w = std::thread::spawn(move || input.write_all(data.as_bytes()));
    let out = child.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn the_binary_converges_byte_for_byte_and_passes_the_rest_through() {
    let mut rng = Rng(0x5eed);
    let mut mixed = String::new();
    let mut plain = String::from("# a stream of documents without the opt-in\n");
    for i in 0..120 {
        let opt_in = rng.below(3) != 0;
        let doc = secret_gate_injector::yaml::to_string(&workload(&mut rng, i, opt_in));
        mixed.push_str("---\n");
        mixed.push_str(&doc);
        if !opt_in {
            // Hand-written style the emitter would not produce: flow maps,
            // comments, odd quoting.
            let _ = writeln!(
                plain,
                "---   # doc {i}\n{doc}extra: {{a: \"1\", b: 'x'}}  # kept"
            );
        }
    }
    let (code, once) = run_bin(&mixed);
    assert_eq!(code, 0);
    let (code, twice) = run_bin(&once);
    assert_eq!(code, 0);
    assert_eq!(once, twice, "inject(inject(x)) != inject(x), byte for byte");
    let (code, out) = run_bin(&plain);
    assert_eq!(code, 0);
    assert_eq!(out, plain, "documents without the opt-in changed");
}

//! The example manifests under `manifests/` are part of the product: people
//! copy them. These tests read every YAML document there into the real
//! Kubernetes types (k8s-openapi) and fail on any field the types do not
//! know, so a typo or a field at the wrong level cannot hide. They then hold
//! the examples to the rules the docs promise: restricted security context,
//! resources, termination messages, a native sidecar ordered before the gate,
//! a timeout on every gate, read-only secret mounts for the app. Last, they
//! run the real binary with each gate's own arguments and environment, so a
//! manifest cannot carry a usage error (exit 2).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Container, Namespace, Pod, PodSpec, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::Deserialize;

#[path = "common/bounded.rs"]
mod bounded;
mod common;
// The restricted-PSS checks, shared with the injector's tests.
#[path = "common/pki.rs"]
mod pki;
mod restricted;

use common::Gate;

/// Images that identify the gate and the secret writers it waits for.
const GATE_IMAGE: &str = "ghcr.io/secret-gate/secret-gate:";
const WRITER_IMAGES: &[&str] = &["vsecm-ist-sidecar", "vsecm-photon-sidecar"];
/// Safe names the workload with this (`VSECM_WORKLOAD_NAME_REGEXP`'s default).
const VSECM_WORKLOAD_NAME_REGEXP: &str =
    r"^spiffe://vsecm.com/workload/([^/]+)/ns/[^/]+/sa/[^/]+/n/[^/]+$";

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// spire-controller-manager's `ClusterSPIFFEID` (spire.spiffe.io/v1alpha1):
/// only the fields the examples use, and nothing else is accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClusterSpiffeId {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: ClusterSpiffeIdSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterSpiffeIdSpec {
    #[serde(rename = "className")]
    class_name: Option<String>,
    #[serde(rename = "spiffeIDTemplate")]
    spiffe_id_template: String,
    #[serde(rename = "podSelector")]
    pod_selector: Option<LabelSelector>,
    #[serde(rename = "namespaceSelector")]
    namespace_selector: Option<LabelSelector>,
    #[serde(rename = "workloadSelectorTemplates")]
    workload_selector_templates: Option<Vec<String>>,
}

/// A kustomization, limited to the fields the examples use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Kustomization {
    api_version: String,
    kind: String,
    resources: Vec<String>,
    #[serde(default)]
    images: Vec<KustomizeImage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KustomizeImage {
    name: String,
    new_name: Option<String>,
    new_tag: Option<String>,
}

#[derive(Debug)]
enum Object {
    Deployment(Box<Deployment>),
    Pod(Box<Pod>),
    ServiceAccount(ServiceAccount),
    Namespace(Namespace),
    ClusterSpiffeId(ClusterSpiffeId),
    NetworkPolicy(Box<NetworkPolicy>),
    // The injector's webhook (manifests/injector/).
    Service(Box<k8s_openapi::api::core::v1::Service>),
    PodDisruptionBudget(Box<k8s_openapi::api::policy::v1::PodDisruptionBudget>),
    MutatingWebhookConfiguration(
        Box<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>,
    ),
    Issuer(CertManagerIssuer),
    Certificate(CertManagerCertificate),
}

/// cert-manager's `Issuer` (cert-manager.io/v1): the fields the examples
/// use, nothing else accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CertManagerIssuer {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: IssuerSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IssuerSpec {
    self_signed: Option<BTreeMap<String, String>>,
    ca: Option<IssuerCa>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IssuerCa {
    secret_name: String,
}

/// cert-manager's `Certificate` (cert-manager.io/v1).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CertManagerCertificate {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: CertificateSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CertificateSpec {
    secret_name: String,
    #[serde(rename = "isCA")]
    is_ca: Option<bool>,
    common_name: Option<String>,
    #[serde(default)]
    dns_names: Vec<String>,
    duration: Option<String>,
    renew_before: Option<String>,
    #[serde(default)]
    usages: Vec<String>,
    private_key: Option<CertificatePrivateKey>,
    issuer_ref: IssuerRef,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CertificatePrivateKey {
    algorithm: String,
    size: Option<u32>,
    rotation_policy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IssuerRef {
    name: String,
    kind: String,
    group: String,
}

#[derive(Debug)]
struct Doc {
    /// `file#index`, for messages.
    origin: String,
    /// The example directory the document belongs to.
    dir: PathBuf,
    object: Object,
}

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn is_kustomization(path: &Path) -> bool {
    path.file_stem().is_some_and(|s| s == "kustomization")
}

/// Splits a multi-document YAML file at `---` lines and drops documents that
/// hold only comments.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let last = docs.last_mut().unwrap();
            last.push_str(line);
            last.push('\n');
        }
    }
    docs.retain(|d| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// Deserializes one YAML document into `T`, failing on every field `T` does
/// not know (serde would otherwise drop it without a word).
fn strict<T: DeserializeOwned>(doc: &str, origin: &str) -> T {
    let mut unknown = Vec::new();
    let value = serde_ignored::deserialize(serde_yaml_ng::Deserializer::from_str(doc), |path| {
        unknown.push(path.to_string().replace(".?", ""));
    })
    .unwrap_or_else(|e| panic!("{origin}: does not parse: {e}"));
    assert!(
        unknown.is_empty(),
        "{origin}: unknown fields (a typo, or a field at the wrong level): {unknown:?}"
    );
    value
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn load_all() -> Vec<Doc> {
    let root = manifests_dir();
    let mut out = Vec::new();
    for file in yaml_files(&root) {
        if is_kustomization(&file) {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        let rel = file.strip_prefix(&root).unwrap().display().to_string();
        for (i, doc) in documents(&text).iter().enumerate() {
            let origin = format!("manifests/{rel}#{i}");
            let head: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(doc).unwrap_or_else(|e| panic!("{origin}: not YAML: {e}"));
            let kind = head.get("kind").and_then(|k| k.as_str()).unwrap_or("");
            let api_version = head
                .get("apiVersion")
                .and_then(|k| k.as_str())
                .unwrap_or("");
            let object = match (api_version, kind) {
                ("apps/v1", "Deployment") => Object::Deployment(Box::new(strict(doc, &origin))),
                ("v1", "Pod") => Object::Pod(Box::new(strict(doc, &origin))),
                ("v1", "ServiceAccount") => Object::ServiceAccount(strict(doc, &origin)),
                ("v1", "Namespace") => Object::Namespace(strict(doc, &origin)),
                ("networking.k8s.io/v1", "NetworkPolicy") => {
                    Object::NetworkPolicy(Box::new(strict(doc, &origin)))
                }
                ("spire.spiffe.io/v1alpha1", "ClusterSPIFFEID") => {
                    Object::ClusterSpiffeId(strict(doc, &origin))
                }
                ("v1", "Service") => Object::Service(Box::new(strict(doc, &origin))),
                ("policy/v1", "PodDisruptionBudget") => {
                    Object::PodDisruptionBudget(Box::new(strict(doc, &origin)))
                }
                ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
                    Object::MutatingWebhookConfiguration(Box::new(strict(doc, &origin)))
                }
                ("cert-manager.io/v1", "Issuer") => Object::Issuer(strict(doc, &origin)),
                ("cert-manager.io/v1", "Certificate") => {
                    Object::Certificate(strict(doc, &origin))
                }
                other => panic!(
                    "{origin}: {other:?} is not a kind these tests know; teach tests/manifests.rs to check it"
                ),
            };
            out.push(Doc {
                origin,
                dir: file.parent().unwrap().to_path_buf(),
                object,
            });
        }
    }
    assert!(
        !out.is_empty(),
        "no manifests found under {}",
        root.display()
    );
    out
}

/// A pod spec found in the manifests, with where it came from.
struct PodRef<'a> {
    origin: &'a str,
    dir: &'a Path,
    namespace: Option<&'a str>,
    labels: BTreeMap<String, String>,
    spec: &'a PodSpec,
}

#[expect(
    clippy::expect_used,
    reason = "test helper: a panic fails the calling test"
)]
fn pods(docs: &[Doc]) -> Vec<PodRef<'_>> {
    let mut out = Vec::new();
    for doc in docs {
        match &doc.object {
            Object::Deployment(d) => {
                let spec = d.spec.as_ref().expect("Deployment without spec");
                let template_meta = spec.template.metadata.clone().unwrap_or_default();
                out.push(PodRef {
                    origin: &doc.origin,
                    dir: &doc.dir,
                    namespace: d.metadata.namespace.as_deref(),
                    labels: template_meta.labels.unwrap_or_default(),
                    spec: spec.template.spec.as_ref().expect("template without spec"),
                });
            }
            Object::Pod(p) => out.push(PodRef {
                origin: &doc.origin,
                dir: &doc.dir,
                namespace: p.metadata.namespace.as_deref(),
                labels: p.metadata.labels.clone().unwrap_or_default(),
                spec: p.spec.as_ref().expect("Pod without spec"),
            }),
            _ => {}
        }
    }
    out
}

fn is_gate(c: &Container) -> bool {
    c.image
        .as_deref()
        .is_some_and(|i| i.starts_with(GATE_IMAGE))
}

fn is_writer(c: &Container) -> bool {
    c.image
        .as_deref()
        .is_some_and(|i| WRITER_IMAGES.iter().any(|w| i.contains(w)))
}

/// `manifests/injector/`: the admission webhook, not a gated app.
fn is_injector(dir: &Path) -> bool {
    dir.ends_with("injector")
}

fn is_native_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn env_map(c: &Container) -> BTreeMap<String, String> {
    c.env
        .iter()
        .flatten()
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect()
}

fn mounts(c: &Container) -> &[VolumeMount] {
    c.volume_mounts.as_deref().unwrap_or_default()
}

/// The mount of `c` that holds `path` (the deepest one).
fn mount_holding<'a>(c: &'a Container, path: &str) -> Option<&'a VolumeMount> {
    mounts(c)
        .iter()
        .filter(|m| {
            let base = m.mount_path.trim_end_matches('/');
            path == base || path.starts_with(&format!("{base}/"))
        })
        .max_by_key(|m| m.mount_path.len())
}

fn volume<'a>(spec: &'a PodSpec, name: &str) -> &'a Volume {
    spec.volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume named {name}"))
}

// ---------------------------------------------------------------------------
// What a gate's arguments say
// ---------------------------------------------------------------------------

/// A gate's command line as the container would run it: the image's
/// ENTRYPOINT is `/secret-gate` and its CMD is `safe`.
#[derive(Debug, Clone)]
struct GateArgs {
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

impl GateArgs {
    fn of(c: &Container) -> Self {
        if let Some(command) = &c.command {
            assert_eq!(
                command,
                &["/secret-gate".to_string()],
                "{}: leave `command` to the image's ENTRYPOINT",
                c.name
            );
        }
        Self {
            args: c.args.clone().unwrap_or_else(|| vec!["safe".into()]),
            env: env_map(c),
        }
    }

    #[expect(
        clippy::expect_used,
        reason = "test helper: a panic fails the calling test"
    )]
    fn subcommand(&self) -> &str {
        self.args
            .iter()
            .find(|a| !a.starts_with('-'))
            .map(String::as_str)
            .expect("gate args name no subcommand")
    }

    /// The values of `--flag` (as `--flag=v` or `--flag v`), else of `env`.
    #[expect(
        clippy::expect_used,
        reason = "test helper: a panic fails the calling test"
    )]
    fn values(&self, flag: &str, env: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut it = self.args.iter();
        while let Some(a) = it.next() {
            if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
                out.push(v.to_string());
            } else if a == flag {
                out.push(it.next().expect("flag without value").clone());
            }
        }
        if out.is_empty() {
            if let Some(v) = self.env.get(env) {
                out.push(v.clone());
            }
        }
        out
    }

    fn value(&self, flag: &str, env: &str) -> Option<String> {
        let mut v = self.values(flag, env);
        assert!(v.len() <= 1, "{flag} given more than once");
        v.pop()
    }

    /// Replaces the value of `--flag` wherever it is set (args or env); adds
    /// it as an argument if it was not set at all.
    fn with(&self, flag: &str, env: &str, value: &str) -> Self {
        let mut out = self.clone();
        let mut found = false;
        let mut args = Vec::new();
        let mut it = self.args.iter();
        while let Some(a) = it.next() {
            if a.starts_with(&format!("{flag}=")) {
                args.push(format!("{flag}={value}"));
                found = true;
            } else if a == flag {
                it.next();
                args.push(format!("{flag}={value}"));
                found = true;
            } else {
                args.push(a.clone());
            }
        }
        out.args = args;
        if out.env.contains_key(env) {
            out.env.insert(env.to_string(), value.to_string());
            found = true;
        }
        if !found {
            out.args.push(format!("{flag}={value}"));
        }
        out
    }

    fn keeps_running(&self) -> bool {
        self.args.iter().any(|a| a == "--keep-running")
            || self
                .env
                .get("SECRET_GATE_KEEP_RUNNING")
                .is_some_and(|v| v == "true")
    }

    fn timeout(&self) -> Option<String> {
        self.value("--timeout", "SECRET_GATE_TIMEOUT")
    }

    fn mount_path(&self) -> Option<String> {
        self.value("--mount-path", "SECRET_GATE_MOUNT_PATH")
    }

    fn files(&self) -> Vec<String> {
        self.values("--file", "SECRET_GATE_FILE")
            .iter()
            .flat_map(|v| v.split(','))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn required_keys(&self) -> Vec<String> {
        self.value("--required-keys", "SECRET_GATE_REQUIRED_KEYS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn format(&self) -> String {
        self.value("--format", "SECRET_GATE_FORMAT")
            .unwrap_or_else(|| "auto".into())
    }

    /// Where the gate's output goes in safe mode: --output's directory or --output-dir.
    #[expect(
        clippy::unwrap_used,
        reason = "test helper: a panic fails the calling test"
    )]
    fn output_dir(&self) -> Option<String> {
        self.value("--output-dir", "SECRET_GATE_OUTPUT_DIR")
            .or_else(|| {
                self.value("--output", "SECRET_GATE_OUTPUT").map(|f| {
                    Path::new(&f)
                        .parent()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                })
            })
    }

    /// The path whose volume carries the secret to the app.
    #[expect(
        clippy::expect_used,
        reason = "test helper: a panic fails the calling test"
    )]
    fn secret_path(&self) -> String {
        match self.subcommand() {
            "watch" | "check" => self.mount_path().expect("watch gate without --mount-path"),
            "safe" => self
                .output_dir()
                .expect("safe gate without --output or --output-dir: the app gets nothing"),
            other => panic!("unknown subcommand {other}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Static checks
// ---------------------------------------------------------------------------

#[test]
fn every_document_is_a_known_kind_with_no_unknown_fields() {
    let docs = load_all();
    let deployments = docs
        .iter()
        .filter(|d| matches!(d.object, Object::Deployment(_) | Object::Pod(_)))
        .count();
    assert!(
        deployments >= 3,
        "expected the three examples, found {deployments} pods"
    );
    for doc in &docs {
        if let Object::ClusterSpiffeId(c) = &doc.object {
            assert_eq!(c.api_version, "spire.spiffe.io/v1alpha1", "{}", doc.origin);
            assert_eq!(c.kind, "ClusterSPIFFEID", "{}", doc.origin);
        }
    }
}

/// Every gate that serves `--listen` on the pod IP has a `NetworkPolicy` in
/// its example that selects its pod and admits its probe port only from
/// named peers (docs/security.md, "The probe port").
#[test]
fn every_listening_gate_has_a_network_policy_limiting_its_port() {
    let docs = load_all();
    let policies: Vec<(&Doc, &NetworkPolicy)> = docs
        .iter()
        .filter_map(|d| match &d.object {
            Object::NetworkPolicy(p) => Some((d, p.as_ref())),
            _ => None,
        })
        .collect();
    assert!(
        !policies.is_empty(),
        "no NetworkPolicy example under manifests/"
    );
    for (doc, policy) in &policies {
        let spec = policy.spec.as_ref().expect("NetworkPolicy without spec");
        let types = spec.policy_types.clone().unwrap_or_default();
        assert!(
            types.iter().any(|t| t == "Ingress"),
            "{}: policyTypes must include Ingress",
            doc.origin
        );
        for rule in spec.ingress.iter().flatten() {
            assert!(
                rule.from.as_ref().is_some_and(|f| !f.is_empty()),
                "{}: an ingress rule without `from` admits everyone",
                doc.origin
            );
        }
        let _ = policy.metadata.namespace.as_deref().expect("namespace");
    }
    let mut listening = 0;
    for pod in pods(&docs) {
        for (_, c) in restricted::all_containers(pod.spec) {
            let env = env_map(c);
            let listens = env.contains_key("SECRET_GATE_LISTEN")
                || c.args.iter().flatten().any(|a| a.starts_with("--listen"));
            if !is_gate(c) || !listens {
                continue;
            }
            listening += 1;
            let ports: Vec<i32> = c.ports.iter().flatten().map(|p| p.container_port).collect();
            let covered = policies.iter().any(|(doc, policy)| {
                let spec = policy.spec.as_ref().expect("spec");
                let selects = spec
                    .pod_selector
                    .iter()
                    .flat_map(|s| s.match_labels.iter().flatten())
                    .all(|(k, v)| pod.labels.get(k) == Some(v));
                let same_place =
                    doc.dir == pod.dir && policy.metadata.namespace.as_deref() == pod.namespace;
                let names_port = spec.ingress.iter().flatten().any(|rule| {
                    rule.ports.iter().flatten().any(|p| match &p.port {
                        Some(IntOrString::Int(n)) => ports.contains(n),
                        Some(IntOrString::String(name)) => c
                            .ports
                            .iter()
                            .flatten()
                            .any(|cp| cp.name.as_deref() == Some(name.as_str())),
                        None => false,
                    })
                });
                selects && same_place && names_port
            });
            assert!(
                covered,
                "{}: the gate listens on {ports:?} but no NetworkPolicy in its example selects the pod and limits that port",
                pod.origin
            );
        }
    }
    assert!(listening > 0, "no example gate uses --listen");
}

/// The strict loader really rejects a misplaced field; without this the
/// test above could pass by accepting everything.
#[test]
fn the_loader_rejects_unknown_and_misplaced_fields() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - name: c\n";
    let _: Pod = strict(pod, "good pod");
    // A typo.
    let typo = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  lables: {a: b}\n";
    assert!(std::panic::catch_unwind(|| strict::<ServiceAccount>(typo, "typo")).is_err());
    // A pod-level field at the container level.
    let misplaced = format!("{pod}    serviceAccountName: x\n");
    assert!(std::panic::catch_unwind(|| strict::<Pod>(&misplaced, "misplaced")).is_err());
    // A field the CRD struct does not declare.
    let crd = "apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterSPIFFEID\nmetadata: {name: a}\n\
               spec:\n  spiffeIDTemplate: x\n  podSelecter: {}\n";
    assert!(std::panic::catch_unwind(|| strict::<ClusterSpiffeId>(crd, "crd")).is_err());
}

#[test]
fn kustomizations_list_every_file_and_nothing_else() {
    let root = manifests_dir();
    let mut dirs = BTreeSet::new();
    for file in yaml_files(&root) {
        dirs.insert(file.parent().unwrap().to_path_buf());
    }
    for dir in dirs {
        let path = dir.join("kustomization.yaml");
        assert!(
            path.is_file(),
            "{} has no kustomization.yaml",
            dir.display()
        );
        let text = fs::read_to_string(&path).unwrap();
        let k: Kustomization = strict(&text, &path.display().to_string());
        assert_eq!(k.api_version, "kustomize.config.k8s.io/v1beta1");
        assert_eq!(k.kind, "Kustomization");
        let mut listed = BTreeSet::new();
        for r in &k.resources {
            assert!(
                !r.contains(".."),
                "{}: {r} leaves the kustomization root",
                path.display()
            );
            let target = dir.join(r);
            if target.is_dir() {
                assert!(
                    target.join("kustomization.yaml").is_file(),
                    "{}: {r} is a directory without kustomization.yaml",
                    path.display()
                );
            } else {
                assert!(
                    target.is_file(),
                    "{}: lists {r}, which does not exist",
                    path.display()
                );
            }
            listed.insert(target);
        }
        // Every YAML file and example directory here is listed, so
        // `kubectl apply -k` applies all of it.
        for entry in fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            let is_yaml = p.extension().is_some_and(|e| e == "yaml" || e == "yml");
            let wanted = (is_yaml && !is_kustomization(&p))
                || (p.is_dir() && p.join("kustomization.yaml").is_file());
            if wanted {
                assert!(
                    listed.contains(&p),
                    "{} does not list {}",
                    path.display(),
                    p.display()
                );
            }
        }
        for image in &k.images {
            assert!(
                image.new_name.is_some() || image.new_tag.is_some(),
                "{}: image {} changes nothing",
                path.display(),
                image.name
            );
        }
    }
}

#[test]
fn every_container_meets_the_restricted_pod_security_standard() {
    let docs = load_all();
    for pod in pods(&docs) {
        restricted::check_pod(pod.origin, pod.spec);
    }
}

#[test]
fn native_sidecars_come_before_the_gate_and_no_writer_is_a_regular_container() {
    let docs = load_all();
    let mut sidecar_examples = 0;
    let mut keep_running_examples = 0;
    for pod in pods(&docs) {
        let spec = pod.spec;
        for c in &spec.containers {
            assert!(
                !is_writer(c),
                "{}: {} writes the secret but runs under `containers`: app containers start only \
                 after every init container has exited, so the gate would wait for it forever",
                pod.origin,
                c.name
            );
            assert!(
                !is_gate(c),
                "{}: the gate {} must be an init container",
                pod.origin,
                c.name
            );
        }
        let init = spec.init_containers.as_deref().unwrap_or_default();
        let gates: Vec<usize> = (0..init.len()).filter(|&i| is_gate(&init[i])).collect();
        // The injector's webhook is the one example that is not a gated app.
        if is_injector(pod.dir) {
            assert!(gates.is_empty(), "{}: the webhook runs no gate", pod.origin);
            continue;
        }
        assert!(!gates.is_empty(), "{}: no gate", pod.origin);
        for &g in &gates {
            let keeps_running = GateArgs::of(&init[g]).keeps_running();
            assert_eq!(
                is_native_sidecar(&init[g]),
                keeps_running,
                "{}: a gate runs as a native sidecar (restartPolicy: Always) exactly when it has \
                 --keep-running: an exiting gate would be restarted, a running one would block the pod",
                pod.origin
            );
            if keeps_running {
                check_probes(pod.origin, &init[g]);
                keep_running_examples += 1;
            }
            let secret_volume = secret_volume_of(pod.origin, &init[g]);
            for (i, c) in init.iter().enumerate() {
                let writes_it = mounts(c)
                    .iter()
                    .any(|m| m.name == secret_volume && m.read_only != Some(true));
                if i == g || !writes_it {
                    continue;
                }
                assert!(
                    is_native_sidecar(c),
                    "{}: {} writes the gate's volume but is an ordinary init container, \
                     which would have to exit before the gate starts",
                    pod.origin,
                    c.name
                );
                assert!(
                    i < g,
                    "{}: native sidecar {} is declared after the gate {}: the gate would \
                     wait for a writer that starts only after it exits",
                    pod.origin,
                    c.name,
                    init[g].name
                );
            }
        }
        for (i, c) in init.iter().enumerate() {
            if is_writer(c) {
                assert!(
                    is_native_sidecar(c),
                    "{}: {} needs restartPolicy: Always",
                    pod.origin,
                    c.name
                );
                assert!(
                    gates.iter().all(|&g| i < g),
                    "{}: {} must come before every gate",
                    pod.origin,
                    c.name
                );
                sidecar_examples += 1;
            }
        }
    }
    assert!(
        sidecar_examples >= 1,
        "the vsecm-sidecar example lost its native sidecar"
    );
    assert!(
        keep_running_examples >= 2,
        "expected a keep-running gate for the volume source and for safe mode"
    );
}

/// A keep-running gate serves /readyz on the port its probes use: a
/// startupProbe (holds later containers back until ready) and a
/// readinessProbe (takes the pod out of endpoints while broken).
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn check_probes(origin: &str, gate: &Container) {
    let args = GateArgs::of(gate);
    let listen = args
        .value("--listen", "SECRET_GATE_LISTEN")
        .unwrap_or_else(|| panic!("{origin}: a keep-running gate needs --listen for its probes"));
    let port: i32 = listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{origin}: --listen {listen} has no port"));
    let named = |name: &str| {
        gate.ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
    };
    for (what, probe, path) in [
        ("startupProbe", &gate.startup_probe, "/readyz"),
        ("readinessProbe", &gate.readiness_probe, "/readyz"),
    ] {
        let probe = probe
            .as_ref()
            .unwrap_or_else(|| panic!("{origin}: the keep-running gate has no {what}"));
        let get = probe
            .http_get
            .as_ref()
            .unwrap_or_else(|| panic!("{origin}: {what} is not an httpGet"));
        assert_eq!(get.path.as_deref(), Some(path), "{origin}: {what} path");
        let probe_port = match &get.port {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => Some(*n),
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => named(name),
        };
        assert_eq!(
            probe_port,
            Some(port),
            "{origin}: {what} port is not --listen's"
        );
    }
    let startup = gate.startup_probe.as_ref().unwrap();
    let bound = i64::from(startup.period_seconds.unwrap_or(10))
        * i64::from(startup.failure_threshold.unwrap_or(3));
    let timeout = humantime::parse_duration(&args.timeout().unwrap()).unwrap();
    assert!(
        u64::try_from(bound).unwrap() >= timeout.as_secs(),
        "{origin}: the startupProbe gives up ({bound}s) before the gate's --timeout"
    );
}

/// The name of the volume that carries the secret from the gate to the app.
fn secret_volume_of(origin: &str, gate: &Container) -> String {
    let args = GateArgs::of(gate);
    let path = args.secret_path();
    mount_holding(gate, &path)
        .unwrap_or_else(|| panic!("{origin}: the gate does not mount {path}"))
        .name
        .clone()
}

#[test]
fn every_gate_has_a_timeout_and_shares_a_volume_the_app_mounts_read_only() {
    let docs = load_all();
    for pod in pods(&docs) {
        let spec = pod.spec;
        for gate in spec.init_containers.iter().flatten().filter(|c| is_gate(c)) {
            let at = format!("{} {}", pod.origin, gate.name);
            let args = GateArgs::of(gate);
            let timeout = args
                .timeout()
                .unwrap_or_else(|| panic!("{at}: no --timeout or SECRET_GATE_TIMEOUT"));
            assert_ne!(timeout.trim(), "0", "{at}: --timeout 0 waits forever");
            assert!(
                spec.active_deadline_seconds.is_none(),
                "{at}: activeDeadlineSeconds would also kill the running app; use --timeout"
            );

            let path = args.secret_path();
            let mount = mount_holding(gate, &path)
                .unwrap_or_else(|| panic!("{at}: no volume mount holds {path}"));
            assert!(
                mount.sub_path.is_none(),
                "{at}: subPath mounts never see updates"
            );
            check_gate_mount(&at, spec, gate, &args, mount);

            let readers: Vec<&Container> = spec
                .containers
                .iter()
                .filter(|c| mounts(c).iter().any(|m| m.name == mount.name))
                .collect();
            assert!(
                !readers.is_empty(),
                "{at}: no app container mounts {}",
                mount.name
            );
            for app in readers {
                for m in mounts(app).iter().filter(|m| m.name == mount.name) {
                    assert_eq!(
                        m.read_only,
                        Some(true),
                        "{at}: app {} must mount {} read-only",
                        app.name,
                        m.name
                    );
                }
            }

            check_writers_feed_the_gate(&at, spec, &args, &mount.name);
        }
    }
}

/// The gate's own mount of the secret volume, and the volume itself.
fn check_gate_mount(
    at: &str,
    spec: &PodSpec,
    gate: &Container,
    args: &GateArgs,
    mount: &VolumeMount,
) {
    let path = args.secret_path();
    let vol = volume(spec, &mount.name);
    match args.subcommand() {
        "safe" => {
            assert_ne!(mount.read_only, Some(true), "{at}: writes to {path}");
            let socket = args
                .env
                .get("SPIFFE_ENDPOINT_SOCKET")
                .cloned()
                .unwrap_or_else(|| "unix:///spire-agent-socket/spire-agent.sock".into());
            let socket_path = socket.trim_start_matches("unix://");
            let sm = mount_holding(gate, socket_path).unwrap_or_else(|| {
                panic!("{at}: the Workload API socket {socket_path} is not mounted")
            });
            let csi = volume(spec, &sm.name)
                .csi
                .as_ref()
                .unwrap_or_else(|| panic!("{at}: socket volume is not CSI"));
            assert_eq!(csi.driver, "csi.spiffe.io", "{at}");
            assert_eq!(sm.read_only, Some(true), "{at}: socket mount");
        }
        _ => {
            assert_eq!(
                mount.read_only,
                Some(true),
                "{at}: the gate only reads {path}"
            );
        }
    }
    if let Some(ed) = &vol.empty_dir {
        assert_eq!(
            ed.medium.as_deref(),
            Some("Memory"),
            "{at}: secrets belong in memory, not on the node's disk"
        );
    }
    if let Some(secret) = &vol.secret {
        assert_eq!(
            secret.optional,
            Some(true),
            "{at}: a missing non-optional Secret blocks the pod at mount time, before the gate runs"
        );
    }
}

/// A VSecM sidecar must write where the gate looks, on the same volume.
fn check_writers_feed_the_gate(at: &str, spec: &PodSpec, args: &GateArgs, volume_name: &str) {
    let path = args.secret_path();
    for writer in spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_writer(c))
    {
        let target = env_map(writer)
            .get("VSECM_SIDECAR_SECRETS_PATH")
            .cloned()
            .unwrap_or_else(|| "/opt/vsecm/secrets.json".into());
        let files = args.files();
        let expected: Vec<String> = files
            .iter()
            .map(|f| format!("{}/{f}", path.trim_end_matches('/')))
            .collect();
        assert!(
            expected.contains(&target),
            "{at}: the sidecar writes {target}, the gate waits for {expected:?}"
        );
        let wm = mount_holding(writer, &target)
            .unwrap_or_else(|| panic!("{at}: the sidecar does not mount {target}"));
        assert_eq!(
            wm.name, volume_name,
            "{at}: sidecar and gate use different volumes"
        );
    }
}

#[test]
fn spiffe_ids_name_the_workload_and_are_scoped_to_its_namespace() {
    let docs = load_all();
    let name_re = regex::Regex::new(VSECM_WORKLOAD_NAME_REGEXP).unwrap();
    let accounts: BTreeSet<(String, String)> = docs
        .iter()
        .filter_map(|d| match &d.object {
            Object::ServiceAccount(sa) => Some((
                sa.metadata.namespace.clone().unwrap_or_default(),
                sa.metadata.name.clone().unwrap_or_default(),
            )),
            _ => None,
        })
        .collect();
    let namespaces: BTreeSet<String> = docs
        .iter()
        .filter_map(|d| match &d.object {
            Object::Namespace(ns) => ns.metadata.name.clone(),
            _ => None,
        })
        .collect();
    let all_pods = pods(&docs);
    for pod in &all_pods {
        let ns = pod
            .namespace
            .unwrap_or_else(|| panic!("{}: no namespace", pod.origin));
        assert!(
            namespaces.contains(ns),
            "{}: namespace {ns} is not in the manifests",
            pod.origin
        );
        let sa = pod
            .spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| panic!("{}: no serviceAccountName", pod.origin));
        assert!(
            accounts.contains(&(ns.to_string(), sa.clone())),
            "{}: ServiceAccount {ns}/{sa} is not in the manifests",
            pod.origin
        );
    }

    for doc in &docs {
        if let Object::ClusterSpiffeId(id) = &doc.object {
            check_cluster_spiffe_id(doc, id, &all_pods, &name_re);
        }
    }
}

/// A `ClusterSPIFFEID` selects exactly its example's pod, in its namespace,
/// and renders to an ID from which Safe reads a fixed workload name.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn check_cluster_spiffe_id(
    doc: &Doc,
    id: &ClusterSpiffeId,
    all_pods: &[PodRef<'_>],
    name_re: &regex::Regex,
) {
    let at = &doc.origin;
    assert!(
        id.metadata.namespace.is_none(),
        "{at}: ClusterSPIFFEID is cluster-scoped"
    );
    if let Some(class) = &id.spec.class_name {
        assert!(!class.is_empty(), "{at}: empty className");
    }
    for t in id.spec.workload_selector_templates.iter().flatten() {
        assert!(t.starts_with("k8s:"), "{at}: selector template {t}");
    }
    let selector = id
        .spec
        .pod_selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_else(|| panic!("{at}: no podSelector.matchLabels"));
    let ns_selector = id
        .spec
        .namespace_selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_else(|| {
            panic!("{at}: without a namespaceSelector, pods in any namespace get this identity")
        });
    let ns = ns_selector
        .get("kubernetes.io/metadata.name")
        .unwrap_or_else(|| panic!("{at}: select the namespace by kubernetes.io/metadata.name"));
    let matched: Vec<&PodRef<'_>> = all_pods
        .iter()
        .filter(|p| p.dir == doc.dir && p.namespace == Some(ns.as_str()))
        .filter(|p| selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
        .collect();
    assert_eq!(
        matched.len(),
        1,
        "{at}: selects {} pods in its example",
        matched.len()
    );
    let pod = matched[0];
    // Render the template as spire-controller-manager would.
    let rendered = id
        .spec
        .spiffe_id_template
        .replace("{{ .PodMeta.Namespace }}", ns)
        .replace(
            "{{ .PodSpec.ServiceAccountName }}",
            pod.spec.service_account_name.as_deref().unwrap(),
        )
        .replace("{{ .PodMeta.Name }}", "pod-7d9f8-abcde");
    assert!(!rendered.contains("{{"), "{at}: unrendered template");
    let caps = name_re
        .captures(&rendered)
        .unwrap_or_else(|| panic!("{at}: {rendered} does not match VSecM's workload ID shape"));
    assert!(
        !id.spec.spiffe_id_template.contains("/workload/{{"),
        "{at}: the workload name must be fixed: it is what the secret is registered under"
    );
    assert!(!caps[1].is_empty());
}

// ---------------------------------------------------------------------------
// The real binary accepts every gate's arguments
// ---------------------------------------------------------------------------

/// secret-gate with exactly `args`/`env` (nothing inherited), not started.
fn gate(args: &GateArgs) -> Gate {
    Gate::binary().env_clear().envs(&args.env).args(&args.args)
}

/// Runs secret-gate with exactly `args`/`env` and returns its exit code and
/// stderr; fails the test if it runs longer than 30 s.
fn run_gate(args: &GateArgs) -> (i32, String) {
    let done = gate(args).spawn().wait(Duration::from_secs(30));
    (done.code().unwrap_or(-1), done.stderr)
}

/// A CA, and a leaf with its key issued by it: PEM files a gate that
/// checks pairs and chains accepts.
struct Tls {
    ca: String,
    cert: String,
    key: String,
}

impl Tls {
    fn new() -> Self {
        let ca = pki::ca("manifest test CA", None);
        let key = pki::Key::new(pki::Alg::EcdsaP256);
        Self {
            cert: pki::valid_leaf(&key, Some(&ca)),
            key: key.pem(pki::Encoding::Pkcs8),
            ca: ca.pem(),
        }
    }

    /// The PEM for a key file named like a certificate, key or CA bundle;
    /// `None` for other names.
    fn for_name(&self, name: &str) -> Option<String> {
        let ext = Path::new(name).extension()?.to_str()?;
        if !["pem", "crt", "cer", "key"].contains(&ext) {
            return None;
        }
        Some(if name.contains("credential") {
            // A pod certificate's credential bundle: the key, then the chain.
            format!("{}{}", self.key, self.cert)
        } else if name.contains("key") {
            self.key.clone()
        } else if name.starts_with("ca") || name.contains("bundle") {
            self.ca.clone()
        } else {
            self.cert.clone()
        })
    }
}

/// Writes files under `dir` that satisfy the gate's selection.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn fill_ready(dir: &Path, args: &GateArgs) {
    let keys = args.required_keys();
    for k in &keys {
        assert!(
            !k.starts_with('/'),
            "JSON Pointer keys: teach fill_ready to nest"
        );
    }
    let files = args.files();
    if files.is_empty() {
        let tls = Tls::new();
        for k in &keys {
            let body = tls
                .for_name(k)
                .unwrap_or_else(|| "not-a-real-secret".into());
            fs::write(dir.join(k), body).unwrap();
        }
        return;
    }
    let tls = Tls::new();
    // Files the certificate flags name are PEM, whatever --file says.
    let pem_files = args
        .values("--ca-file", "SECRET_GATE_CA_FILE")
        .into_iter()
        .chain(
            args.values("--key-pair", "SECRET_GATE_KEY_PAIRS")
                .into_iter()
                .flat_map(|pair| {
                    pair.split(['=', ','])
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                }),
        );
    for f in pem_files {
        fs::write(dir.join(&f), tls.for_name(&f).unwrap()).unwrap();
    }
    for f in &files {
        let path = dir.join(f);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        if let Some(pem) = tls.for_name(f).filter(|_| args.format() == "auto") {
            fs::write(path, pem).unwrap();
            continue;
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let format = match args.format().as_str() {
            "auto" => match ext.as_str() {
                "json" => "json".to_string(),
                "yaml" | "yml" => "yaml".to_string(),
                "env" => "env".to_string(),
                _ => "raw".to_string(),
            },
            other => other.to_string(),
        };
        let mut body = String::new();
        match format.as_str() {
            "json" => {
                let map: BTreeMap<&str, &str> = keys
                    .iter()
                    .map(|k| (k.as_str(), "not-a-real-secret"))
                    .collect();
                body = serde_json::to_string(&map).unwrap();
            }
            "yaml" => {
                for k in &keys {
                    writeln!(body, "{k}: not-a-real-secret").unwrap();
                }
            }
            "env" => {
                for k in &keys {
                    writeln!(body, "{k}=not-a-real-secret").unwrap();
                }
            }
            _ => body.push_str("not-a-real-secret"),
        }
        fs::write(path, body).unwrap();
    }
}

#[test]
fn the_binary_accepts_every_gates_arguments() {
    let docs = load_all();
    let mut ran = 0;
    for pod in pods(&docs) {
        for gate in pod
            .spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| is_gate(c))
        {
            let at = format!("{} {}", pod.origin, gate.name);
            let tmp = tempfile::tempdir().unwrap();
            let manifest = GateArgs::of(gate);
            // Never /dev/termination-log from a test.
            assert!(manifest
                .value("--termination-log", "SECRET_GATE_TERMINATION_LOG")
                .is_none());
            // The manifests listen on the pod IP; here, a free loopback port.
            let manifest = if manifest.keeps_running() {
                manifest.with("--listen", "SECRET_GATE_LISTEN", "127.0.0.1:0")
            } else {
                manifest
            };
            match manifest.subcommand() {
                "watch" | "check" if manifest.keeps_running() => {
                    run_keep_running_gate(&at, &manifest, tmp.path());
                }
                "watch" | "check" => run_volume_gate(&at, &manifest, tmp.path()),
                "safe" => run_safe_gate(&at, &manifest, tmp.path()),
                other => panic!("{at}: unknown subcommand {other}"),
            }
            ran += 1;
        }
    }
    // One gate per example directory under manifests/, at least.
    let examples = fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().is_dir() && !is_injector(&e.path()))
        })
        .count();
    assert!(ran >= 4, "expected a gate in each example, ran {ran}");
    assert!(
        ran >= examples,
        "{examples} examples, but only {ran} gates ran"
    );
}

/// A volume gate exits 0 on a mount that holds what it asks for, and 1 (with
/// a diagnosis) on an empty one at its deadline; never 2, a usage error.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn run_volume_gate(at: &str, manifest: &GateArgs, tmp: &Path) {
    let termination_log = tmp.join("termination-log");
    let base = manifest.with(
        "--termination-log",
        "SECRET_GATE_TERMINATION_LOG",
        termination_log.to_str().unwrap(),
    );

    // Secrets present: the gate exits 0 at once, with the manifest's own
    // --timeout, so its value parses too.
    let ready = tmp.join("ready");
    fs::create_dir(&ready).unwrap();
    fill_ready(&ready, manifest);
    let args = base.with(
        "--mount-path",
        "SECRET_GATE_MOUNT_PATH",
        ready.to_str().unwrap(),
    );
    let (code, stderr) = run_gate(&args);
    assert_eq!(code, 0, "{at}: {:?} on a ready mount\n{stderr}", args.args);

    // Nothing there: it gives up at the deadline with 1 and says why.
    let empty = tmp.join("empty");
    fs::create_dir(&empty).unwrap();
    let args = base
        .with(
            "--mount-path",
            "SECRET_GATE_MOUNT_PATH",
            empty.to_str().unwrap(),
        )
        .with("--timeout", "SECRET_GATE_TIMEOUT", "1ms");
    let (code, stderr) = run_gate(&args);
    assert_eq!(code, 1, "{at}: {:?} on an empty mount\n{stderr}", args.args);
    let diagnosis = fs::read_to_string(&termination_log).unwrap_or_default();
    assert!(
        !diagnosis.trim().is_empty(),
        "{at}: no diagnosis in the termination log"
    );
}

/// A keep-running volume gate on a ready mount logs "ready" and keeps
/// running until SIGTERM (143); on an empty one it gives up at its deadline.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn run_keep_running_gate(at: &str, manifest: &GateArgs, tmp: &Path) {
    let ready = tmp.join("ready");
    fs::create_dir(&ready).unwrap();
    fill_ready(&ready, manifest);
    let args = manifest
        .with(
            "--termination-log",
            "SECRET_GATE_TERMINATION_LOG",
            tmp.join("termination-log").to_str().unwrap(),
        )
        .with(
            "--mount-path",
            "SECRET_GATE_MOUNT_PATH",
            ready.to_str().unwrap(),
        );
    let mut running = gate(&args).context(at).spawn();
    running.expect_stderr("keeping running until SIGTERM");
    running.signal("TERM");
    let done = running.wait(Duration::from_secs(10));
    assert_eq!(
        done.code(),
        Some(143),
        "{at}: SIGTERM while keeping running\n{}",
        done.dump()
    );

    // Nothing there: it gives up at the deadline with 1.
    let empty = tmp.join("empty");
    fs::create_dir(&empty).unwrap();
    let args = args
        .with(
            "--mount-path",
            "SECRET_GATE_MOUNT_PATH",
            empty.to_str().unwrap(),
        )
        .with("--timeout", "SECRET_GATE_TIMEOUT", "1ms");
    let (code, stderr) = run_gate(&args);
    assert_eq!(code, 1, "{at}: {:?} on an empty mount\n{stderr}", args.args);
}

/// A safe-mode gate with no Workload API must treat that as "not ready"
/// (exit 1), never as a usage error (exit 2).
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn run_safe_gate(at: &str, manifest: &GateArgs, tmp: &Path) {
    let termination_log = tmp.join("termination-log");
    let socket = format!("unix://{}", tmp.join("no-agent.sock").display());
    let out = tmp.join("out");
    fs::create_dir(&out).unwrap();
    let mut args = manifest
        .with(
            "--termination-log",
            "SECRET_GATE_TERMINATION_LOG",
            termination_log.to_str().unwrap(),
        )
        .with("--timeout", "SECRET_GATE_TIMEOUT", "1ms");
    args = if manifest.value("--output", "SECRET_GATE_OUTPUT").is_some() {
        args.with(
            "--output",
            "SECRET_GATE_OUTPUT",
            out.join("secret").to_str().unwrap(),
        )
    } else {
        args.with(
            "--output-dir",
            "SECRET_GATE_OUTPUT_DIR",
            out.to_str().unwrap(),
        )
    };
    args.env.insert("SPIFFE_ENDPOINT_SOCKET".into(), socket);
    let (code, stderr) = run_gate(&args);
    assert_ne!(
        code, 2,
        "{at}: the binary rejects the manifest's arguments {:?}\n{stderr}",
        args.args
    );
    // No Workload API here: the deadline passes, so 1 (never a crash).
    assert_eq!(code, 1, "{at}: {:?}\n{stderr}", args.args);

    // The manifest's --timeout was replaced above; check that its value
    // parses by giving it to `watch` on a ready mount (both subcommands take
    // the same duration syntax).
    let timeout = manifest.timeout().unwrap();
    let ready = tmp.join("ready");
    fs::create_dir(&ready).unwrap();
    fs::write(ready.join("x"), "x").unwrap();
    let probe = GateArgs {
        args: vec![
            "watch".into(),
            format!("--mount-path={}", ready.display()),
            "--file=x".into(),
            format!("--timeout={timeout}"),
        ],
        env: BTreeMap::new(),
    };
    let (code, stderr) = run_gate(&probe);
    assert_eq!(
        code, 0,
        "{at}: --timeout={timeout} does not parse\n{stderr}"
    );
}

// ---------------------------------------------------------------------------
// The injector's admission webhook (manifests/injector/)
// ---------------------------------------------------------------------------

/// The webhook's install: highly available, opt-in, failing closed only
/// for pods that asked, with a certificate cert-manager renews and the
/// webhook reloads (docs/injection.md, "The admission webhook").
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "test: one install, checked as a whole"
)]
fn the_injector_webhook_is_opt_in_highly_available_and_keeps_its_certificate() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let docs = load_all();
    let injector: Vec<&Doc> = docs
        .iter()
        .filter(|d| d.dir.ends_with("injector"))
        .collect();
    let find = |what: &str, pick: &dyn Fn(&Object) -> bool| -> &Doc {
        let found: Vec<&&Doc> = injector.iter().filter(|d| pick(&d.object)).collect();
        assert_eq!(
            found.len(),
            1,
            "manifests/injector: one {what}, found {}",
            found.len()
        );
        found[0]
    };
    let Object::Deployment(deploy) =
        &find("Deployment", &|o| matches!(o, Object::Deployment(_))).object
    else {
        unreachable!()
    };
    let Object::Service(service) = &find("Service", &|o| matches!(o, Object::Service(_))).object
    else {
        unreachable!()
    };
    let Object::PodDisruptionBudget(pdb) = &find("PodDisruptionBudget", &|o| {
        matches!(o, Object::PodDisruptionBudget(_))
    })
    .object
    else {
        unreachable!()
    };
    let Object::MutatingWebhookConfiguration(config) =
        &find("MutatingWebhookConfiguration", &|o| {
            matches!(o, Object::MutatingWebhookConfiguration(_))
        })
        .object
    else {
        unreachable!()
    };
    let namespace = deploy.metadata.namespace.clone().expect("namespace");
    let spec = deploy.spec.as_ref().expect("spec");
    let pod = spec.template.spec.as_ref().expect("pod spec");
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("labels");

    // Two replicas, spread over nodes, never both drained.
    assert_eq!(spec.replicas, Some(2), "replicas");
    let anti = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .expect("podAntiAffinity");
    let terms = anti
        .preferred_during_scheduling_ignored_during_execution
        .iter()
        .flatten()
        .map(|w| &w.pod_affinity_term)
        .chain(
            anti.required_during_scheduling_ignored_during_execution
                .iter()
                .flatten(),
        );
    assert!(
        terms
            .into_iter()
            .any(|t| t.topology_key == "kubernetes.io/hostname"
                && t.label_selector
                    .as_ref()
                    .and_then(|s| s.match_labels.as_ref())
                    .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))),
        "anti-affinity by hostname on the webhook's own labels"
    );
    let pdb_spec = pdb.spec.as_ref().expect("pdb spec");
    assert_eq!(
        pdb_spec.min_available,
        Some(IntOrString::Int(1)),
        "PDB minAvailable"
    );
    let selects = |m: &Option<BTreeMap<String, String>>| {
        m.as_ref()
            .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
    };
    assert!(
        selects(
            &pdb_spec
                .selector
                .as_ref()
                .and_then(|s| s.match_labels.clone())
        ),
        "the PDB selects the webhook's pods"
    );
    assert!(
        selects(&service.spec.as_ref().and_then(|s| s.selector.clone())),
        "the Service selects the webhook's pods"
    );

    // No API access at all: no token, and (the loader refuses any other
    // kind) no Role or ClusterRole.
    assert_eq!(
        pod.automount_service_account_token,
        Some(false),
        "automountServiceAccountToken"
    );

    // The container: the webhook command, a read-only certificate volume
    // from the Certificate's Secret, HTTPS probes on /healthz.
    let [container] = pod.containers.as_slice() else {
        panic!("one container");
    };
    let args = container.args.clone().unwrap_or_default();
    assert_eq!(
        args.first().map(String::as_str),
        Some("webhook"),
        "{args:?}"
    );
    let arg = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")))
            .unwrap_or_else(|| panic!("--{name} in {args:?}"))
            .to_owned()
    };
    let cert = arg("tls-cert");
    let key = arg("tls-key");
    let review_timeout =
        humantime::parse_duration(&arg("review-timeout")).expect("--review-timeout");
    let mount = mount_holding(container, &cert).expect("a mount holding --tls-cert");
    assert!(
        key.starts_with(&mount.mount_path),
        "tls.key in the same volume"
    );
    assert_eq!(
        mount.read_only,
        Some(true),
        "the certificate mount is read-only"
    );
    let tls_secret = volume(pod, &mount.name)
        .secret
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .expect("the certificate volume is a Secret");
    let port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("https"))
        .expect("an https port");
    assert!(
        arg("listen").ends_with(&format!(":{}", port.container_port)),
        "--listen on the https port"
    );
    for (what, probe) in [
        ("readiness", &container.readiness_probe),
        ("liveness", &container.liveness_probe),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("{what} probe"));
        assert_eq!(get.path.as_deref(), Some("/healthz"), "{what}");
        assert_eq!(get.scheme.as_deref(), Some("HTTPS"), "{what}");
    }
    let sleep = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|p| p.sleep.as_ref())
        .expect("a preStop sleep, so the endpoint is gone before SIGTERM");
    assert!(sleep.seconds >= 1);

    // The Service reaches the port.
    let service_port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
        .expect("a Service port");
    assert_eq!(
        service_port.target_port,
        Some(IntOrString::String("https".to_owned()))
    );
    let service_name = service.metadata.name.clone().expect("service name");

    // The webhook: opt-in, fail closed, no side effects, reinvoked if
    // needed, a timeout above the review timeout, v1 reviews, pods on
    // CREATE, never the system namespaces.
    let [hook] = config.webhooks.as_deref().unwrap_or_default() else {
        panic!("one webhook");
    };
    assert_eq!(hook.admission_review_versions, ["v1"]);
    assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(hook.side_effects, "None");
    assert_eq!(hook.reinvocation_policy.as_deref(), Some("IfNeeded"));
    let timeout = hook.timeout_seconds.expect("timeoutSeconds");
    assert!(
        (1..=10).contains(&timeout),
        "timeoutSeconds {timeout} is not small"
    );
    assert!(
        review_timeout < Duration::from_secs(u64::try_from(timeout).expect("positive")),
        "--review-timeout must stay below timeoutSeconds"
    );
    let opt_in = hook
        .object_selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
        .and_then(|m| m.get("secret-gate.dev/inject"));
    assert_eq!(
        opt_in.map(String::as_str),
        Some("true"),
        "objectSelector on the opt-in label"
    );
    let excluded: Vec<String> = hook
        .namespace_selector
        .as_ref()
        .and_then(|s| s.match_expressions.as_ref())
        .into_iter()
        .flatten()
        .filter(|e| e.key == "kubernetes.io/metadata.name" && e.operator == "NotIn")
        .flat_map(|e| e.values.clone().unwrap_or_default())
        .collect();
    for ns in ["kube-system", "kube-public", namespace.as_str()] {
        assert!(
            excluded.iter().any(|e| e == ns),
            "namespaceSelector excludes {ns}"
        );
    }
    let conditions = hook.match_conditions.as_deref().unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.expression.contains("secret-gate.dev/status")),
        "a matchCondition skips injected pods"
    );
    let [rule] = hook.rules.as_deref().unwrap_or_default() else {
        panic!("one rule");
    };
    assert_eq!(rule.operations.as_deref(), Some(&["CREATE".to_owned()][..]));
    assert_eq!(rule.resources.as_deref(), Some(&["pods".to_owned()][..]));
    assert_eq!(rule.api_groups.as_deref(), Some(&[String::new()][..]));
    let target = hook
        .client_config
        .service
        .as_ref()
        .expect("clientConfig.service");
    assert_eq!(target.name, service_name);
    assert_eq!(target.namespace, namespace);
    assert_eq!(target.path.as_deref(), Some("/mutate"));
    assert_eq!(Some(target.port.unwrap_or(443)), service_port.port.into());
    assert!(
        hook.client_config.ca_bundle.is_none(),
        "the caBundle comes from cert-manager"
    );

    // cert-manager: the caBundle from the serving Certificate, whose Secret
    // the pod mounts, for the Service's DNS name, issued by a CA Issuer (so
    // a renewal keeps the CA the API server trusts).
    let inject_from = config
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("cert-manager.io/inject-ca-from"))
        .expect("cert-manager.io/inject-ca-from");
    let certificates: Vec<&CertManagerCertificate> = injector
        .iter()
        .filter_map(|d| match &d.object {
            Object::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    let issuers: Vec<&CertManagerIssuer> = injector
        .iter()
        .filter_map(|d| match &d.object {
            Object::Issuer(i) => Some(i),
            _ => None,
        })
        .collect();
    let serving = certificates
        .iter()
        .find(|c| {
            format!(
                "{}/{}",
                c.metadata.namespace.as_deref().unwrap_or(""),
                c.metadata.name.as_deref().unwrap_or("")
            ) == *inject_from
        })
        .expect("inject-ca-from names a Certificate here");
    assert_eq!(serving.api_version, "cert-manager.io/v1");
    assert_eq!(serving.kind, "Certificate");
    assert_eq!(
        serving.spec.secret_name, tls_secret,
        "the pod mounts the serving Certificate's Secret"
    );
    assert!(
        serving
            .spec
            .dns_names
            .contains(&format!("{service_name}.{namespace}.svc")),
        "the certificate names the Service: {:?}",
        serving.spec.dns_names
    );
    assert_ne!(serving.spec.is_ca, Some(true));
    assert!(serving.spec.renew_before.is_some() && serving.spec.duration.is_some());
    let issuer = issuers
        .iter()
        .find(|i| i.metadata.name.as_deref() == Some(serving.spec.issuer_ref.name.as_str()))
        .expect("the serving Certificate's Issuer is here");
    assert_eq!(
        (issuer.api_version.as_str(), issuer.kind.as_str()),
        ("cert-manager.io/v1", "Issuer")
    );
    assert_eq!(serving.spec.issuer_ref.kind, "Issuer");
    assert_eq!(serving.spec.issuer_ref.group, "cert-manager.io");
    let ca_secret = issuer
        .spec
        .ca
        .as_ref()
        .map(|ca| ca.secret_name.clone())
        .expect("a CA Issuer");
    let ca = certificates
        .iter()
        .find(|c| c.spec.secret_name == ca_secret)
        .expect("the CA Issuer's Secret comes from a Certificate here");
    assert_eq!(ca.spec.is_ca, Some(true));
    assert!(ca.spec.common_name.is_some());
    assert!(issuers.iter().any(|i| i.spec.self_signed.is_some()
        && i.metadata.name.as_deref() == Some(ca.spec.issuer_ref.name.as_str())));
    for c in &certificates {
        let key = c.spec.private_key.as_ref().expect("privateKey");
        assert!(matches!(
            key.algorithm.as_str(),
            "ECDSA" | "Ed25519" | "RSA"
        ));
        assert!(key.size.is_some() || key.algorithm == "Ed25519");
        let _ = (&c.spec.usages, &key.rotation_policy);
    }
}

/// The injector's webhook port is admitted only from named peers: an
/// `ipBlock` (the API server, which no selector can name, and the
/// kubelet's probes) and, for `/metrics`, a namespace-and-pod selector.
/// No peer admits the whole cluster: no empty selector, no catch-all CIDR
/// (docs/how-it-works.md, "The served ports").
#[test]
fn the_webhook_port_is_admitted_only_from_the_api_server_and_named_peers() {
    let docs = load_all();
    let webhook = pods(&docs)
        .into_iter()
        .find(|pod| is_injector(pod.dir))
        .expect("the injector's Deployment");
    let https: Vec<i32> = webhook
        .spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.name.as_deref() == Some("https"))
        .map(|p| p.container_port)
        .collect();
    assert_eq!(
        https,
        [8443],
        "{}: the webhook's https port",
        webhook.origin
    );
    let names_https = |port: &Option<IntOrString>| match port {
        Some(IntOrString::String(name)) => name == "https",
        Some(IntOrString::Int(n)) => *n == 8443,
        None => false,
    };
    let named = |s: &Option<LabelSelector>| {
        s.as_ref()
            .is_some_and(|s| s.match_labels.as_ref().is_some_and(|m| !m.is_empty()))
    };
    let mut api_server_admitted = false;
    let mut policies = 0;
    for doc in &docs {
        let Object::NetworkPolicy(policy) = &doc.object else {
            continue;
        };
        let spec = policy.spec.as_ref().expect("spec");
        let selects = spec
            .pod_selector
            .iter()
            .flat_map(|s| s.match_labels.iter().flatten())
            .all(|(k, v)| webhook.labels.get(k) == Some(v));
        if doc.dir != webhook.dir || !selects {
            continue;
        }
        policies += 1;
        assert_eq!(policy.metadata.namespace.as_deref(), webhook.namespace);
        for rule in spec.ingress.iter().flatten() {
            let ports = rule.ports.as_deref().unwrap_or_default();
            assert!(
                !ports.is_empty() && ports.iter().all(|p| names_https(&p.port)),
                "{}: every rule names the https port only",
                doc.origin
            );
            let peers = rule.from.as_deref().unwrap_or_default();
            assert!(
                !peers.is_empty(),
                "{}: a rule without `from` admits everyone",
                doc.origin
            );
            for peer in peers {
                if let Some(block) = &peer.ip_block {
                    let prefix: u8 = block
                        .cidr
                        .split_once('/')
                        .and_then(|(_, p)| p.parse().ok())
                        .expect("a CIDR");
                    assert!(
                        prefix >= 8 && block.cidr.parse::<std::net::IpAddr>().is_err(),
                        "{}: {} is not a narrow block",
                        doc.origin,
                        block.cidr
                    );
                    assert!(
                        peer.namespace_selector.is_none() && peer.pod_selector.is_none(),
                        "{}",
                        doc.origin
                    );
                    api_server_admitted = true;
                } else {
                    assert!(
                        named(&peer.namespace_selector) && named(&peer.pod_selector),
                        "{}: a peer must name its namespace and its pods",
                        doc.origin
                    );
                }
            }
        }
    }
    assert_eq!(policies, 1, "one NetworkPolicy selects the webhook");
    assert!(api_server_admitted, "no ipBlock admits the API server");
}

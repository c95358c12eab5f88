//! The core: one document in, the edited document and a report out.
//!
//! It edits the document as a YAML value tree (key order, unknown fields
//! and string quoting survive) and uses k8s-openapi's typed structs only to
//! check the result. It never reads files, the clock or the environment,
//! so the CLI, the KRM function and the admission webhook all call it the
//! same way.

use std::fmt;

use serde_yaml_ng::{Mapping, Value};

use crate::annotations::{self, Placement, Request, PREFIX, STATUS};
use crate::gate::{self, Containers, Parts, Validator};
pub use crate::settings::{GateMode, Settings, Source, DEFAULT_IMAGE};
use crate::status::{Fingerprint, Status};
use crate::value::{get, get_mut, items, path, s, str_at};

/// Which object a report or an error is about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

impl ObjectRef {
    /// Reads `apiVersion`, `kind`, `metadata.name` and `.namespace`.
    #[must_use]
    pub fn of(obj: &Value) -> Self {
        let meta = get(obj, "metadata");
        Self {
            api_version: str_at(obj, "apiVersion").unwrap_or_default().to_owned(),
            kind: str_at(obj, "kind").unwrap_or_default().to_owned(),
            name: meta
                .and_then(|m| str_at(m, "name").or_else(|| str_at(m, "generateName")))
                .unwrap_or_default()
                .to_owned(),
            namespace: meta.and_then(|m| str_at(m, "namespace")).map(str::to_owned),
        }
    }
}

impl fmt::Display for ObjectRef {
    /// `deployment/web`, as kubectl names objects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.kind.is_empty() {
            "object".to_owned()
        } else {
            self.kind.to_ascii_lowercase()
        };
        let name = if self.name.is_empty() {
            "(no name)"
        } else {
            &self.name
        };
        write!(f, "{kind}/{name}")
    }
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectReport {
    pub object: ObjectRef,
    /// Whether the object changed.
    pub changed: bool,
    /// What happened, e.g. `injected (init, watch)` or
    /// `skipped: not opted in`.
    pub message: String,
    /// Problems worth a look that do not stop the injection.
    pub warnings: Vec<String>,
}

impl fmt::Display for ObjectReport {
    /// The report line: `deployment/web injected (init, watch)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.object, self.message)
    }
}

/// Bad input: the object and what to change. The message carries the
/// gate's own words when the gate would refuse the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {message}")]
pub struct InjectError {
    pub object: ObjectRef,
    pub message: String,
}

/// The result for one document.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The edited document, if anything changed; `None`: leave it as it was
    /// (byte for byte).
    pub value: Option<Value>,
    /// One report per object (a `List` has one per item).
    pub reports: Vec<ObjectReport>,
}

impl Outcome {
    /// Whether any object changed.
    #[must_use]
    pub const fn changed(&self) -> bool {
        self.value.is_some()
    }
}

/// The injector: settings plus a cache of the gate's verdicts, so that a
/// thousand templates with the same annotations are validated once. Share
/// one across documents (and threads: it is `Sync`).
#[derive(Debug, Default)]
pub struct Injector {
    settings: Settings,
    validator: Validator,
    containers: Containers,
    typed_check: TypedCheck,
}

/// What the typed check of an injected template covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TypedCheck {
    /// The whole template, as `inject` and the KRM function need: what
    /// they read was written by hand, and must parse as a
    /// `PodTemplateSpec` once injected.
    #[default]
    Whole,
    /// Only what the core wrote: the gate's container (checked once per
    /// distinct container, when it is built) and the volumes it added. For the admission webhook, whose Pods come from the API
    /// server, which has already decoded them into its own types; the
    /// rest of the template is as valid as the API server found it.
    Edits,
}

/// The workload kinds and their API groups.
const WORKLOADS: [(&str, &[&str], &[&str]); 8] = [
    ("Pod", &[""], &[]),
    ("ReplicationController", &[""], &["spec", "template"]),
    ("Deployment", &["apps", "extensions"], &["spec", "template"]),
    ("StatefulSet", &["apps"], &["spec", "template"]),
    ("DaemonSet", &["apps", "extensions"], &["spec", "template"]),
    ("ReplicaSet", &["apps", "extensions"], &["spec", "template"]),
    ("Job", &["batch"], &["spec", "template"]),
    (
        "CronJob",
        &["batch"],
        &["spec", "jobTemplate", "spec", "template"],
    ),
];

fn group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

impl Injector {
    #[must_use]
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            validator: Validator::default(),
            containers: Containers::default(),
            typed_check: TypedCheck::Whole,
        }
    }

    /// The same injector with the typed check narrowed (or widened) to
    /// `check`.
    #[must_use]
    pub const fn with_typed_check(mut self, check: TypedCheck) -> Self {
        self.typed_check = check;
        self
    }

    #[must_use]
    pub const fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Injects into one document: a workload, a `List` of them, or anything
    /// else (passed through, reported).
    pub fn inject_value(&self, doc: &Value) -> Result<Outcome, InjectError> {
        let object = ObjectRef::of(doc);
        if !doc.is_mapping() {
            return Err(InjectError {
                object,
                message: "the document is not a Kubernetes object (a mapping with apiVersion \
                          and kind): fix or remove it"
                    .to_owned(),
            });
        }
        if object.kind == "List" || (object.kind.ends_with("List") && get(doc, "items").is_some()) {
            return self.inject_list(doc, &object);
        }
        let (value, report) = self.inject_object(doc)?;
        Ok(Outcome {
            value,
            reports: vec![report],
        })
    }

    fn inject_list(&self, doc: &Value, object: &ObjectRef) -> Result<Outcome, InjectError> {
        let mut reports = Vec::new();
        let mut edited: Option<Vec<Value>> = None;
        let list = items(doc, "items");
        for (i, item) in list.iter().enumerate() {
            let (value, report) = self.inject_object(item).map_err(|mut e| {
                e.message = format!("(item {i} of {object}) {}", e.message);
                e
            })?;
            reports.push(report);
            if let Some(v) = value {
                edited.get_or_insert_with(|| list.to_vec())[i] = v;
            }
        }
        let value = edited.map(|new_items| {
            let mut d = doc.clone();
            if let Some(slot) = get_mut(&mut d, "items") {
                *slot = Value::Sequence(new_items);
            }
            d
        });
        Ok(Outcome { value, reports })
    }

    /// Injects into one object (not a `List`): `Some` edited object if it
    /// changed.
    pub fn inject_object(&self, obj: &Value) -> Result<(Option<Value>, ObjectReport), InjectError> {
        let object = ObjectRef::of(obj);
        let report = |changed: bool, message: String, warnings: Vec<String>| ObjectReport {
            object: object.clone(),
            changed,
            message,
            warnings,
        };
        let Some((kind, _, tpath)) = WORKLOADS.iter().find(|(k, groups, _)| {
            *k == object.kind && groups.contains(&group(&object.api_version))
        }) else {
            let why = if object.kind.is_empty() {
                "passed through: no kind"
            } else {
                "passed through: not a workload"
            };
            let warnings = opted_in_template(obj)
                .map(|at| {
                    vec![format!(
                        "{} is not a kind the injector edits, but its pod template ({at}) opts in \
                         with {}: nothing was injected; add the gate to it by hand, or let the \
                         admission webhook inject the Pods it creates",
                        object.kind,
                        annotations::INJECT
                    )]
                })
                .into_iter()
                .flatten()
                .collect();
            return Ok((None, report(false, why.to_owned(), warnings)));
        };
        let Some(template) = path(obj, tpath).filter(|t| t.is_mapping()) else {
            return Ok((
                None,
                report(false, "skipped: no pod template".to_owned(), Vec::new()),
            ));
        };
        let is_job = matches!(*kind, "Job" | "CronJob");
        let fail = |message: String| InjectError {
            object: object.clone(),
            message,
        };
        let Some(result) = self.template(template, is_job).map_err(fail)? else {
            return Ok((
                None,
                report(false, "skipped: not opted in".to_owned(), Vec::new()),
            ));
        };
        if crate::value::same(&result.template, template) {
            return Ok((
                None,
                report(false, result.done.unchanged(), result.warnings),
            ));
        }
        // A Pod is its own template: no copy of the object around it.
        let new = if tpath.is_empty() {
            result.template
        } else {
            let mut new = obj.clone();
            if let Some(slot) = crate::value::path_mut(&mut new, tpath) {
                *slot = result.template;
            }
            new
        };
        let message = match result.done {
            Done::Injected(what) => format!("injected {what}"),
            Done::Skipped(why) => format!("removed the gate: {why}"),
        };
        Ok((Some(new), report(true, message, result.warnings)))
    }

    /// The edited pod template (`metadata` and `spec`), or `None` if it
    /// carries no `secret-gate.dev/` annotation at all.
    fn template(&self, template: &Value, is_job: bool) -> Result<Option<Templated>, String> {
        let ours = ours(template)?;
        if ours.is_empty() {
            return Ok(None);
        }
        let mut work = template.clone();
        let (done, warnings) = self.edit(&mut work, &ours, is_job)?;
        Ok(Some(Templated {
            template: work,
            done,
            warnings,
        }))
    }

    /// Injects into a Pod in place, as [`Self::inject_value`] injects a
    /// Pod, without copying it: for the admission webhook, which owns the
    /// Pod it was sent and patches only what changed. Only the parts in
    /// [`EDITED`] can change; the caller copies those first if it needs
    /// the Pod as it was. On an error the Pod may be half edited.
    pub fn inject_pod(&self, pod: &mut Value) -> Result<PodEdit, InjectError> {
        let object = ObjectRef::of(pod);
        let fail = |message: String| InjectError {
            object: object.clone(),
            message,
        };
        if !pod.is_mapping() {
            return Err(fail(
                "the Pod is not a Kubernetes object (a mapping): fix or remove it".to_owned(),
            ));
        }
        let ours = ours(pod).map_err(fail)?;
        if ours.is_empty() {
            return Ok(PodEdit {
                done: Done::Skipped("not opted in".to_owned()),
                warnings: Vec::new(),
            });
        }
        let (done, warnings) = self.edit(pod, &ours, false).map_err(fail)?;
        Ok(PodEdit { done, warnings })
    }

    /// Edits `work`, a pod template with `secret-gate.dev/` annotations
    /// (`ours`): strips an earlier injection, then injects, or not.
    fn edit(
        &self,
        work: &mut Value,
        ours: &[(String, String)],
        is_job: bool,
    ) -> Result<(Done, Vec<String>), String> {
        let value_of = |name: &str| {
            ours.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if let Some(text) = value_of(STATUS) {
            Status::parse(text)?.strip(work);
        }
        match value_of(annotations::INJECT).map(str::trim) {
            Some("true") => {}
            other => {
                let why = match other {
                    None => "not opted in".to_owned(),
                    Some(v) => format!("{} is {v:?}, not \"true\"", annotations::INJECT),
                };
                return Ok((Done::Skipped(why), Vec::new()));
            }
        }
        let mut req = annotations::request(ours, &self.settings)?;
        if req.source == Source::Watch {
            pod_certificate_flags(work, &mut req);
        }
        let argv = gate::arguments(&req)?;
        let verdict = self.validator.check(&argv).map_err(|e| refusal(&e, &req))?;
        if req.mode == GateMode::Sidecar {
            probe_port_is_free(work, verdict.listen_port.unwrap_or(gate::PROBE_PORT))?;
            host_network_has_a_port(work, &req)?;
        }
        // The template as compact JSON (the bytes `serde_json::to_string`
        // gives), then hashed in one pass.
        let mut hash = Fingerprint::default();
        let mut text = Vec::with_capacity(4096);
        // A key JSON cannot write leaves the template's part empty.
        if crate::json::append(&mut text, work).is_ok() {
            std::io::Write::write_all(&mut hash, &text).unwrap_or_default();
        }
        hash.end_part();
        for part in [&self.settings.image, env!("CARGO_PKG_VERSION")] {
            std::io::Write::write_all(&mut hash, part.as_bytes()).unwrap_or_default();
            hash.end_part();
        }
        let inputs = hash.hex();
        let mut warnings = Vec::new();
        let spec = get_mut(work, "spec")
            .and_then(Value::as_mapping_mut)
            .ok_or("the pod template has no spec: add spec.containers")?;
        let mut status = Status {
            container: gate::CONTAINER.to_owned(),
            volumes: Vec::new(),
            created: Vec::new(),
            inputs,
        };
        let mounts = mounts(spec, &req, &mut status)?;
        let (container, ticket) = self.containers.get(Parts {
            image: &self.settings.image,
            mode: req.mode,
            source: req.source,
            argv,
            verdict: &verdict,
            mounts,
        })?;
        place(spec, container, &req, &mut status, &mut warnings)?;
        mesh_warnings(spec, &req, &mut warnings);
        let annotations = crate::value::path_mut(work, &["metadata", "annotations"])
            .and_then(Value::as_mapping_mut)
            .ok_or("internal error: the annotations went missing")?;
        annotations.insert(s(STATUS), s(status.to_text()));
        match self.typed_check {
            TypedCheck::Whole => check_typed(work)?,
            TypedCheck::Edits => check_edits(work, &status)?,
        }
        let what = Injected {
            mode: req.mode,
            source: req.source,
            job_sidecar: is_job && req.mode == GateMode::Sidecar,
            ticket,
        };
        Ok((Done::Injected(what), warnings))
    }
}

/// The parts of a pod template that injection edits, and the only ones:
/// the annotations (the status), the init containers (the gate) and the
/// volumes (the SPIFFE socket, the schema). Stripping an earlier
/// injection edits only these too. `tests/properties.rs` holds the core
/// to it; the admission webhook copies and compares only these.
pub const EDITED: [&[&str]; 3] = [
    &["metadata", "annotations"],
    &["spec", "initContainers"],
    &["spec", "volumes"],
];

/// The template's `secret-gate.dev/` annotations.
fn ours(template: &Value) -> Result<Vec<(String, String)>, String> {
    annotations::ours(path(template, &["metadata", "annotations"]).and_then(Value::as_mapping))
}

/// What [`Injector::inject_pod`] did.
#[derive(Debug)]
pub struct PodEdit {
    done: Done,
    /// Warnings, as `inject` reports them.
    pub warnings: Vec<String>,
}

impl PodEdit {
    /// Hands the gate's container back to the injector's cache, taking it
    /// out of `pod`, the Pod [`Injector::inject_pod`] edited: for a caller
    /// that is done with the Pod (the webhook, once its patch is written),
    /// so that the next Pod takes this copy instead of a new clone.
    pub fn give_back(self, injector: &Injector, pod: &mut Value) {
        let Done::Injected(Injected {
            ticket: Some(ticket),
            ..
        }) = self.done
        else {
            return;
        };
        let Some(list) = crate::value::path_mut(pod, &["spec", "initContainers"])
            .and_then(Value::as_sequence_mut)
        else {
            return;
        };
        if let Some(at) = list
            .iter()
            .position(|c| str_at(c, "name") == Some(gate::CONTAINER))
        {
            injector.containers.give_back(&ticket, list.remove(at));
        }
    }

    /// Why the Pod is as it was, when the edit changed nothing: the
    /// message `inject` gives an unchanged object.
    #[must_use]
    pub fn unchanged(&self) -> String {
        self.done.unchanged()
    }
}

/// The gate's refusal, naming the annotation behind the flag it names.
fn refusal(gate_message: &str, req: &Request) -> String {
    // clap's message without its usage line and tips, on one line.
    let lines: Vec<&str> = gate_message
        .lines()
        .map(str::trim)
        .filter(|l| !(l.is_empty() || l.starts_with("Usage:") || l.starts_with("tip:")))
        .collect();
    let first = lines.join(" ");
    let first = first.as_str();
    // The flag the message names first is the one it is about: "--schema
    // ...: other.json is not one of the --file names" is about --schema.
    let named = req
        .flags
        .iter()
        .map(|(f, _)| f.as_str())
        .filter_map(|f| {
            let flag = format!("--{f}");
            first
                .match_indices(&flag)
                .find(|(i, _)| {
                    !first[i + flag.len()..]
                        .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
                })
                .map(|(i, _)| (i, f))
        })
        .min_by_key(|(i, _)| *i)
        .map(|(_, f)| f);
    match named {
        Some(f) if first.starts_with("unexpected argument") => format!(
            "annotation {PREFIX}{f}: the gate's `{}` has no --{f} flag ({first}); fix the name or \
             remove the annotation ({PREFIX}NAME is the gate's --NAME)",
            req.source.subcommand()
        ),
        Some(f) => {
            format!("annotation {PREFIX}{f}: the gate would refuse it: {first}; fix the annotation")
        }
        None => format!(
            "the gate would refuse this configuration: {first}; fix the {PREFIX}… annotations \
             ({PREFIX}NAME is the gate's --NAME)"
        ),
    }
}

struct Templated {
    template: Value,
    done: Done,
    warnings: Vec<String>,
}

#[derive(Debug)]
enum Done {
    Injected(Injected),
    Skipped(String),
}

/// What was injected: `(init, watch)`, or for a Job's native sidecar
/// `(sidecar, watch; a native sidecar: it ends with the job)`. Written
/// only when a message is (the webhook's answer has none).
#[derive(Debug)]
struct Injected {
    mode: GateMode,
    source: Source,
    job_sidecar: bool,
    /// Where the gate's container came from: the webhook hands it back.
    ticket: Option<gate::Ticket>,
}

impl std::fmt::Display for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.job_sidecar {
            write!(
                f,
                "({}, {}; a native sidecar: it ends with the job)",
                self.mode, self.source
            )
        } else {
            write!(f, "({}, {})", self.mode, self.source)
        }
    }
}

impl Done {
    /// The report's message when the template came out as it went in.
    fn unchanged(&self) -> String {
        match self {
            Self::Injected(what) => format!("unchanged {what}: already injected"),
            Self::Skipped(why) => format!("skipped: {why}"),
        }
    }
}

/// `secret-gate.dev/schema-configmap`: the `ConfigMap` becomes a volume,
/// mounted read-only for the gate at the directory of the schema files
/// (`secret-gate.dev/schema`, `[FILE=]PATH` each), which must be one
/// directory outside the secret's. Returns that directory.
fn schema_mount(
    spec: &mut Mapping,
    req: &Request,
    status: &mut Status,
) -> Result<Option<String>, String> {
    let schema = flag(req, "schema");
    let Some(configmap) = &req.schema_configmap else {
        return Ok(None);
    };
    let Some(schema) = schema else {
        return Err(format!(
            "{} names the ConfigMap that holds the schema; also set {PREFIX}schema to the \
             schema's path as the gate sees it (e.g. /etc/secret-schema/app.json)",
            annotations::SCHEMA_CONFIGMAP
        ));
    };
    let mut dirs: Vec<&str> = schema
        .split(',')
        .map(|entry| entry.split_once('=').map_or(entry, |(_, path)| path).trim())
        .map(|path| path.rsplit_once('/').map_or("", |(dir, _)| dir))
        .collect();
    dirs.dedup();
    let dir = match dirs.as_slice() {
        [dir] if dir.starts_with('/') && dir.len() > 1 => (*dir).to_owned(),
        _ => {
            return Err(format!(
                "{PREFIX}schema is {schema:?}: with {}, give absolute paths in one directory \
                 (where the ConfigMap is mounted), e.g. /etc/secret-schema/app.json",
                annotations::SCHEMA_CONFIGMAP
            ))
        }
    };
    plain_path(&dir, "schema")?;
    for secret_dir in [flag(req, "mount-path"), flag(req, "output-dir")]
        .into_iter()
        .flatten()
    {
        let base = secret_dir.trim_end_matches('/');
        if dir == base
            || dir.starts_with(&format!("{base}/"))
            || base.starts_with(&format!("{dir}/"))
        {
            return Err(format!(
                "{PREFIX}schema's directory {dir:?} overlaps the secret's ({secret_dir:?}): mount \
                 the schema's ConfigMap elsewhere, e.g. /etc/secret-schema"
            ));
        }
    }
    if !spec.contains_key("volumes") {
        spec.insert(s("volumes"), Value::Sequence(Vec::new()));
        status.created.push("volumes".to_owned());
    }
    let list = spec
        .get_mut("volumes")
        .and_then(Value::as_sequence_mut)
        .ok_or("spec.volumes is not a list: fix it")?;
    if list
        .iter()
        .any(|v| str_at(v, "name") == Some(gate::SCHEMA_VOLUME))
    {
        return Err(format!(
            "the pod already has a volume named {}, not written by the injector: rename it",
            gate::SCHEMA_VOLUME
        ));
    }
    list.push(gate::schema_volume(configmap));
    status.volumes.push(gate::SCHEMA_VOLUME.to_owned());
    Ok(Some(dir))
}

/// A Kubernetes pod certificate (`projected.sources[].podCertificate`) in
/// the volume the app mounts at the gate's `mount-path`: the gate checks
/// it by itself. A credential bundle joins `--file` (its key must match its
/// leaf); a key and chain pair becomes `--key-pair=CHAIN=KEY`; a
/// `clusterTrustBundle` in the same volume is `--ca-file`. Flags the
/// annotations set are left alone.
fn pod_certificate_flags(template: &Value, req: &mut Request) {
    let Some(dir) = flag(req, "mount-path").map(str::to_owned) else {
        return;
    };
    let Some(spec_value) = get(template, "spec") else {
        return;
    };
    let Some(spec) = spec_value.as_mapping() else {
        return;
    };
    let Some((volume, at, None)) = app_mount(spec, &dir) else {
        return;
    };
    if at.trim_end_matches('/') != dir.trim_end_matches('/') {
        return;
    }
    let sources = items(spec_value, "volumes")
        .iter()
        .find(|v| str_at(v, "name") == Some(volume.as_str()))
        .and_then(|v| get(v, "projected"))
        .map_or(&[][..], |p| items(p, "sources"));
    let has = |req: &Request, name: &str| req.flags.iter().any(|(f, _)| f == name);
    for source in sources {
        if let Some(pc) = get(source, "podCertificate") {
            if let Some(bundle) = str_at(pc, "credentialBundlePath") {
                match req.flags.iter_mut().find(|(f, _)| f == "file") {
                    Some((_, files)) => {
                        if !files.split(',').any(|f| f.trim() == bundle) {
                            files.push(',');
                            files.push_str(bundle);
                        }
                    }
                    None => req.flags.push(("file".to_owned(), bundle.to_owned())),
                }
            }
            if let (Some(key), Some(chain)) =
                (str_at(pc, "keyPath"), str_at(pc, "certificateChainPath"))
            {
                if !has(req, "key-pair") {
                    req.flags
                        .push(("key-pair".to_owned(), format!("{chain}={key}")));
                }
            }
        }
        if let Some(path) = get(source, "clusterTrustBundle").and_then(|t| str_at(t, "path")) {
            if !has(req, "ca-file") {
                req.flags.push(("ca-file".to_owned(), path.to_owned()));
            }
        }
    }
}

/// A path the injector matches against the app's mounts must say what it
/// means: a `.` or `..` component would make a prefix match lie.
fn plain_path(dir: &str, flag: &str) -> Result<(), String> {
    if dir.split('/').any(|c| c == "." || c == "..") {
        return Err(format!(
            "{PREFIX}{flag} is {dir:?}: write the path without . or .. components (the injector \
             matches it against the app's volume mounts)"
        ));
    }
    Ok(())
}

/// Where an object the injector does not edit (an Argo `Rollout`, a
/// `Knative` service, any custom resource) carries a pod template that
/// opts in: `spec.template` or `spec.jobTemplate.spec.template`.
fn opted_in_template(obj: &Value) -> Option<&'static str> {
    [
        ("spec.template", &["spec", "template"][..]),
        (
            "spec.jobTemplate.spec.template",
            &["spec", "jobTemplate", "spec", "template"][..],
        ),
    ]
    .into_iter()
    .find(|(_, keys)| {
        path(obj, keys)
            .and_then(|t| path(t, &["metadata", "annotations"]))
            .and_then(|a| str_at(a, annotations::INJECT))
            .is_some_and(|v| v.trim() == "true")
    })
    .map(|(at, _)| at)
}

/// The volume a regular container mounts at or above `dir`: (volume name,
/// that container's mountPath, its subPath), the deepest such mount.
fn app_mount(spec: &Mapping, dir: &str) -> Option<(String, String, Option<String>)> {
    let dir = dir.trim_end_matches('/');
    let mut best: Option<(String, String, Option<String>)> = None;
    for c in spec
        .get("containers")
        .and_then(Value::as_sequence)
        .map_or(&[][..], Vec::as_slice)
    {
        for m in items(c, "volumeMounts") {
            let (Some(name), Some(at)) = (str_at(m, "name"), str_at(m, "mountPath")) else {
                continue;
            };
            let base = at.trim_end_matches('/');
            let covers = base.is_empty() || dir == base || dir.starts_with(&format!("{base}/"));
            if covers && best.as_ref().is_none_or(|(_, b, _)| b.len() < at.len()) {
                best = Some((
                    name.to_owned(),
                    at.to_owned(),
                    str_at(m, "subPath").map(str::to_owned),
                ));
            }
        }
    }
    best
}

fn flag<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.flags
        .iter()
        .find(|(f, _)| f == name)
        .map(|(_, v)| v.as_str())
}

/// The gate's volume mounts: the secret volume (watch, read-only), the
/// SPIFFE socket and the output volume (safe).
fn mounts(spec: &mut Mapping, req: &Request, status: &mut Status) -> Result<Vec<Value>, String> {
    let mount = |name: String, at: String, sub: Option<String>, read_only: bool| {
        let mut m = Mapping::new();
        m.insert(s("name"), s(name));
        m.insert(s("mountPath"), s(at));
        if let Some(sub) = sub {
            m.insert(s("subPath"), s(sub));
        }
        if read_only {
            m.insert(s("readOnly"), Value::Bool(true));
        }
        Value::Mapping(m)
    };
    let mut out = Vec::new();
    if let Some(at) = schema_mount(spec, req, status)? {
        out.push(mount(gate::SCHEMA_VOLUME.to_owned(), at, None, true));
    }
    match req.source {
        Source::Watch => {
            let dir = flag(req, "mount-path").unwrap_or_default();
            plain_path(dir, "mount-path")?;
            let (name, at, sub) = app_mount(spec, dir).ok_or_else(|| {
                format!(
                    "no container mounts a volume at or above {dir:?} ({PREFIX}mount-path): mount \
                     the secret volume in the app container there, or fix the path"
                )
            })?;
            out.push(mount(name, at, sub, true));
        }
        Source::Safe => {
            let has_socket = spec
                .get("volumes")
                .and_then(Value::as_sequence)
                .is_some_and(|v| {
                    v.iter()
                        .any(|v| str_at(v, "name") == Some(gate::SPIFFE_VOLUME))
                });
            if !has_socket {
                if !spec.contains_key("volumes") {
                    spec.insert(s("volumes"), Value::Sequence(Vec::new()));
                    status.created.push("volumes".to_owned());
                }
                if let Some(list) = spec.get_mut("volumes").and_then(Value::as_sequence_mut) {
                    list.push(gate::spiffe_volume());
                    status.volumes.push(gate::SPIFFE_VOLUME.to_owned());
                } else {
                    return Err("spec.volumes is not a list: fix it".to_owned());
                }
            }
            out.push(mount(
                gate::SPIFFE_VOLUME.to_owned(),
                gate::SPIFFE_MOUNT.to_owned(),
                None,
                true,
            ));
            let target = flag(req, "output-dir")
                .map(|d| (d.to_owned(), "output-dir"))
                .or_else(|| {
                    flag(req, "output").map(|f| {
                        let parent = std::path::Path::new(f)
                            .parent()
                            .map(|p| p.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        (parent, "output")
                    })
                });
            if let Some((dir, which)) = target {
                plain_path(&dir, which)?;
                let (name, at, sub) = app_mount(spec, &dir).ok_or_else(|| {
                    format!(
                        "no container mounts a volume at or above {dir:?} ({PREFIX}{which}): the \
                         gate writes the secret there for the app, so mount a volume (e.g. an \
                         emptyDir with medium: Memory) in the app container at that path"
                    )
                })?;
                out.push(mount(name, at, sub, false));
            }
        }
    }
    Ok(out)
}

const MESH_PROXIES: [&str; 2] = ["istio-proxy", "linkerd-proxy"];

fn is_native_mesh(c: &Value) -> bool {
    str_at(c, "name").is_some_and(|n| MESH_PROXIES.contains(&n))
        && str_at(c, "restartPolicy") == Some("Always")
}

/// Puts the gate among the init containers.
fn place(
    spec: &mut Mapping,
    container: Value,
    req: &Request,
    status: &mut Status,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    if !spec.contains_key("initContainers") {
        spec.insert(s("initContainers"), Value::Sequence(Vec::new()));
        status.created.push("initContainers".to_owned());
    }
    let names: Vec<String> = spec
        .get("initContainers")
        .and_then(Value::as_sequence)
        .ok_or("spec.initContainers is not a list: fix it")?
        .iter()
        .map(|c| str_at(c, "name").unwrap_or_default().to_owned())
        .collect();
    let app_named_like_gate = spec
        .get("containers")
        .and_then(Value::as_sequence)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| str_at(c, "name") == Some(gate::CONTAINER))
        });
    if app_named_like_gate {
        return Err(format!(
            "the pod already has a container named {0}: the API server refuses two containers of \
             one name, so rename that container, or remove {1}",
            gate::CONTAINER,
            annotations::INJECT
        ));
    }
    let list = spec
        .get_mut("initContainers")
        .and_then(Value::as_sequence_mut)
        .ok_or("spec.initContainers is not a list: fix it")?;
    if names.iter().any(|n| n == gate::CONTAINER) {
        return Err(format!(
            "the pod already has an init container named {}, not written by the injector (no \
             {STATUS}): remove the hand-written one and keep the annotations, or remove \
             {}",
            gate::CONTAINER,
            annotations::INJECT
        ));
    }
    let find = |name: &str| {
        names.iter().position(|n| n == name).ok_or_else(|| {
            format!(
                "{} names init container {name:?}, but the pod's init containers are [{}]: name \
                 one of them",
                annotations::PLACEMENT,
                names.join(", ")
            )
        })
    };
    let at = match &req.placement {
        None | Some(Placement::Last) => list.len(),
        Some(Placement::First) => 0,
        Some(Placement::Before(n)) => find(n)?,
        Some(Placement::After(n)) => find(n)? + 1,
    };
    if req.source == Source::Safe {
        if let Some(mesh) = list.iter().rposition(is_native_mesh) {
            if at <= mesh {
                warnings.push(format!(
                    "the gate is placed before the native sidecar {}: it cannot reach the Safe \
                     until the proxy runs; drop {} or place it after:{}",
                    names[mesh],
                    annotations::PLACEMENT,
                    names[mesh]
                ));
            }
        }
    }
    list.insert(at, container);
    Ok(())
}

/// A sidecar-mode gate listens on the pod's network, which every container
/// shares: a container that declares the same TCP port would leave one of
/// the two unable to bind it (the gate would exit 2 in a restart loop, and
/// the app would never start).
/// Sidecar mode on a `hostNetwork: true` pod listens on the node's own
/// network: the default probe port would be taken on every node the pod
/// runs on, so the port must be chosen.
fn host_network_has_a_port(template: &Value, req: &Request) -> Result<(), String> {
    let host = path(template, &["spec", "hostNetwork"]).and_then(Value::as_bool) == Some(true);
    if host && flag(req, "listen").is_none() {
        return Err(format!(
            "sidecar mode on a hostNetwork: true pod would bind the node's port {} for the \
             gate's probes: set {PREFIX}listen to a port that is free on every node (e.g. \
             \"$(POD_IP):18080\"), or use {}: init",
            gate::PROBE_PORT,
            annotations::MODE
        ));
    }
    Ok(())
}

fn probe_port_is_free(template: &Value, port: u16) -> Result<(), String> {
    let spec = get(template, "spec");
    for list in ["initContainers", "containers"] {
        for c in spec.map_or(&[][..], |spec| items(spec, list)) {
            let taken = items(c, "ports").iter().any(|p| {
                get(p, "containerPort").and_then(Value::as_u64) == Some(u64::from(port))
                    && str_at(p, "protocol").is_none_or(|proto| proto == "TCP")
            });
            if taken {
                return Err(format!(
                    "the gate's probe port {port} (sidecar mode listens on the pod IP) is already \
                     a port of container {:?}: every container shares the pod's network, so one \
                     of them could not bind it; set {PREFIX}listen to a free port, such as \
                     \"$(POD_IP):{}\"",
                    str_at(c, "name").unwrap_or_default(),
                    free_port_near(spec, port),
                ));
            }
        }
    }
    Ok(())
}

/// The first port above `port` that no container declares, to suggest.
fn free_port_near(spec: Option<&Value>, port: u16) -> u16 {
    let declared: Vec<u64> = ["initContainers", "containers"]
        .iter()
        .flat_map(|list| spec.map_or(&[][..], |spec| items(spec, list)))
        .flat_map(|c| items(c, "ports"))
        .filter_map(|p| get(p, "containerPort").and_then(Value::as_u64))
        .collect();
    (port.saturating_add(1)..u16::MAX)
        .find(|p| !declared.contains(&u64::from(*p)))
        .unwrap_or(port)
}

/// A classic (non-native) mesh proxy and a safe-mode gate: the gate runs
/// before the proxy, but the mesh's traffic redirect is already in place.
fn mesh_warnings(spec: &Mapping, req: &Request, warnings: &mut Vec<String>) {
    if req.source != Source::Safe {
        return;
    }
    let classic = spec
        .get("containers")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|c| str_at(c, "name"))
        .find(|n| MESH_PROXIES.contains(n));
    if let Some(proxy) = classic {
        warnings.push(format!(
            "{proxy} runs as a classic sidecar (a regular container): init containers run \
             before it starts, yet the mesh already redirects their traffic to it, so the gate \
             cannot reach the Safe; enable native sidecars (Istio: ENABLE_NATIVE_SIDECARS; \
             Linkerd: config.alpha.linkerd.io/proxy-enable-native-sidecar: \"true\") or exclude \
             the Safe's port from the redirect"
        ));
    }
}

/// The result must parse as a Kubernetes pod template.
fn check_typed(template: &Value) -> Result<(), String> {
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use serde::Deserialize as _;
    // From the borrowed tree: no copy of the template.
    PodTemplateSpec::deserialize(template)
        .map(drop)
        .map_err(|e| {
            format!("the pod template is not a valid Kubernetes PodTemplateSpec ({e}): fix it")
        })
}

/// What the core added must parse as Kubernetes types: the volumes the
/// status names. (The gate's container was checked when it was built:
/// [`Containers`].)
fn check_edits(template: &Value, status: &Status) -> Result<(), String> {
    use k8s_openapi::api::core::v1::Volume;
    use serde::Deserialize as _;
    let volumes = get(template, "spec").map_or(&[][..], |spec| items(spec, "volumes"));
    for name in &status.volumes {
        let volume = volumes
            .iter()
            .find(|v| str_at(v, "name") == Some(name))
            .ok_or("internal error: a volume the gate needs went missing")?;
        Volume::deserialize(volume).map_err(|e| {
            format!("internal error: the volume the injector wrote is not valid ({e})")
        })?;
    }
    Ok(())
}

/// A KRM `resourceRef` for an object.
#[must_use]
pub fn resource_ref(o: &ObjectRef) -> Value {
    let mut m = Mapping::new();
    m.insert(s("apiVersion"), s(o.api_version.clone()));
    m.insert(s("kind"), s(o.kind.clone()));
    m.insert(s("name"), s(o.name.clone()));
    if let Some(ns) = &o.namespace {
        m.insert(s("namespace"), s(ns.clone()));
    }
    Value::Mapping(m)
}

//! `admission.k8s.io/v1` `AdmissionReview`: the request the API server
//! sends and the response it expects, as hand-written serde types.
//!
//! Only the fields the webhook reads or writes are declared (kube-core's
//! types would pull kube-core and Rust 1.89 for five fields). Unknown
//! fields are ignored on input. `object` is read straight into a
//! `serde_yaml_ng::Value`, the injection core's value tree: the pod
//! reaches the core whole (unknown fields included) and in the API
//! server's key order, which the core's status fingerprint depends on.
//!
//! [`decode`] turns a request body into an [`AdmissionRequest`] or an
//! [`Invalid`] (HTTP 400 with a message that says what is wrong, never
//! quoting the body); [`Response`] builds the answer.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The review's `apiVersion`.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// The review's `kind`.
pub const KIND: &str = "AdmissionReview";

/// The envelope. `serde_json` refuses nesting deeper than 128 levels on
/// its own, so a hostile body cannot overflow the stack.
#[derive(Deserialize)]
struct Review {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<AdmissionRequest>,
}

/// `GroupVersionKind` as the review carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Gvk {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

impl Gvk {
    /// `Pod`, `apps/v1 Deployment`, `(no kind)`: for messages.
    #[must_use]
    pub fn shown(&self) -> String {
        let kind = if self.kind.is_empty() {
            "(no kind)"
        } else {
            &self.kind
        };
        match (self.group.as_str(), self.version.as_str()) {
            ("", "") => kind.to_owned(),
            ("", version) => format!("{version} {kind}"),
            (group, version) => format!("{group}/{version} {kind}"),
        }
    }

    fn is_pod(&self) -> bool {
        self.group.is_empty() && self.version == "v1" && self.kind == "Pod"
    }
}

/// The part of `request` the webhook reads.
#[derive(Debug, Clone, Deserialize)]
pub struct AdmissionRequest {
    pub uid: String,
    #[serde(default)]
    pub kind: Gvk,
    #[serde(default)]
    pub resource: Option<Gvr>,
    #[serde(rename = "subResource", default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub object: Option<serde_yaml_ng::Value>,
    #[serde(rename = "dryRun", default)]
    pub dry_run: Option<bool>,
}

/// `GroupVersionResource` as the review carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Gvr {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub resource: String,
}

/// A body that is not a review the webhook can answer: HTTP 400 with
/// this message. It names what is wrong, never the body's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Parses a request body as an `admission.k8s.io/v1` `AdmissionReview`
/// with a `request`.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest, Invalid> {
    if body.is_empty() {
        return Err(Invalid(
            "empty body: POST an admission.k8s.io/v1 AdmissionReview as JSON".to_owned(),
        ));
    }
    let review: Review = serde_json::from_slice(body).map_err(|error| {
        // serde_json's message names a line, a column and what it expected;
        // for a type error it may quote a short scalar from the body, so
        // only the category and position are shown.
        Invalid(format!(
            "the body is not a valid AdmissionReview ({} at line {} column {}): POST an admission.k8s.io/v1 AdmissionReview as JSON",
            category(&error),
            error.line(),
            error.column()
        ))
    })?;
    if review.api_version != API_VERSION || review.kind != KIND {
        return Err(Invalid(format!(
            "expected apiVersion {API_VERSION} kind {KIND}, got apiVersion {:?} kind {:?}: list only \"v1\" in the webhook's admissionReviewVersions",
            short(&review.api_version),
            short(&review.kind)
        )));
    }
    let request = review.request.ok_or_else(|| {
        Invalid("the AdmissionReview has no request: the API server always sends one".to_owned())
    })?;
    if request.uid.is_empty() {
        return Err(Invalid(
            "the AdmissionReview's request has an empty uid: the API server always sets one"
                .to_owned(),
        ));
    }
    Ok(request)
}

fn category(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "a field of the wrong type",
        serde_json::error::Category::Eof => "JSON ends early",
    }
}

/// At most 40 characters of a field the client sent, for a message.
fn short(text: &str) -> String {
    let cut: String = text.chars().take(40).collect();
    if cut.len() < text.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

/// What a request is, before any injection: a pod to review, or one to
/// let through untouched, or one to refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A Pod on CREATE, in a namespace the webhook may inject into.
    Review,
    /// Let through with no patch, for this reason (logged at debug).
    Pass(String),
    /// Not a request this webhook serves: an error response.
    Error(String),
}

/// Namespaces the webhook never injects into, whatever the labels say.
pub const PROTECTED_NAMESPACES: &[&str] = &["kube-system", "kube-public"];

impl AdmissionRequest {
    /// Decides whether this request gets a review at all.
    #[must_use]
    pub fn scope(&self) -> Scope {
        if !self.kind.is_pod() {
            return Scope::Error(format!(
                "this webhook reviews v1 Pods, not {}: limit the MutatingWebhookConfiguration's rules to pods",
                self.kind.shown()
            ));
        }
        if self.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
            return Scope::Pass("a subresource request".to_owned());
        }
        if self.operation != "CREATE" {
            return Scope::Pass(format!(
                "operation {} (only CREATE is injected)",
                short(&self.operation)
            ));
        }
        let namespace = self.namespace();
        if PROTECTED_NAMESPACES.contains(&namespace) {
            return Scope::Pass(format!("namespace {namespace} is never injected"));
        }
        match &self.object {
            Some(object) if object.is_mapping() => Scope::Review,
            _ => Scope::Error(
                "the request carries no Pod object: the API server always sends one on CREATE"
                    .to_owned(),
            ),
        }
    }

    /// The namespace: the request's, else the object's.
    #[must_use]
    pub fn namespace(&self) -> &str {
        self.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                self.object
                    .as_ref()
                    .and_then(|o| o.get("metadata"))
                    .and_then(|m| m.get("namespace"))
                    .and_then(serde_yaml_ng::Value::as_str)
            })
            .unwrap_or("default")
    }

    /// `pod/NAME` (or `pod/generateName*`) in namespace, for logs.
    #[must_use]
    pub fn shown(&self) -> String {
        let meta = self.object.as_ref().and_then(|o| o.get("metadata"));
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(serde_yaml_ng::Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .or_else(|| {
                meta.and_then(|m| m.get("generateName"))
                    .and_then(serde_yaml_ng::Value::as_str)
                    .map(|g| format!("{g}*"))
            })
            .or_else(|| self.name.clone())
            .unwrap_or_else(|| "(unnamed)".to_owned());
        format!("pod/{} in {}", short(&name), short(self.namespace()))
    }
}

/// The `response` of an `AdmissionReview`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    #[serde(rename = "patchType", skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `metav1.Status`, as much as a denial needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub code: u16,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// The answer's envelope, as serde would write it: what
/// [`Response::to_json`] is held to.
#[cfg(test)]
#[derive(Serialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: &'a Response,
}

/// The API server shows warnings one per line, and cuts longer ones.
const WARNING_LIMIT: usize = 1024;

impl Response {
    /// Allowed, no patch.
    #[must_use]
    pub fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_owned(),
            allowed: true,
            patch_type: None,
            patch: None,
            status: None,
            warnings: Vec::new(),
        }
    }

    /// Allowed with a JSON patch (its JSON text; base64 on the wire), and
    /// warnings.
    #[must_use]
    pub fn patch(uid: &str, patch: &[u8], warnings: Vec<String>) -> Self {
        Self {
            patch_type: Some("JSONPatch"),
            patch: Some(base64::engine::general_purpose::STANDARD.encode(patch)),
            ..Self::allow(uid).with_warnings(warnings)
        }
    }

    /// Not allowed, with `message` in `status.message`.
    #[must_use]
    pub fn deny(uid: &str, code: u16, message: String) -> Self {
        let reason = match code {
            400 => Some("BadRequest"),
            403 => Some("Forbidden"),
            422 => Some("Invalid"),
            _ => None,
        };
        Self {
            allowed: false,
            status: Some(Status {
                code,
                message,
                reason,
            }),
            ..Self::allow(uid)
        }
    }

    /// Adds warnings, each on one line and at most `WARNING_LIMIT` bytes.
    #[must_use]
    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings
            .into_iter()
            .map(|w| {
                let line = w.replace(['\n', '\r'], " ");
                secret_gate::report::truncate(&line, WARNING_LIMIT).to_owned()
            })
            .collect();
        self
    }

    /// The whole `AdmissionReview` as JSON: the bytes `serde_json` writes
    /// for it (the unit tests hold it to that), written by hand since the
    /// answer is on every review's path.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        use crate::json::string;
        let size = self.patch.as_ref().map_or(0, String::len)
            + self.warnings.iter().map(String::len).sum::<usize>();
        let mut out = Vec::with_capacity(256 + size);
        out.extend_from_slice(br#"{"apiVersion":"#);
        string(&mut out, API_VERSION);
        out.extend_from_slice(br#","kind":"#);
        string(&mut out, KIND);
        out.extend_from_slice(br#","response":{"uid":"#);
        string(&mut out, &self.uid);
        out.extend_from_slice(if self.allowed {
            br#","allowed":true"#
        } else {
            br#","allowed":false"#
        });
        if let Some(patch_type) = self.patch_type {
            out.extend_from_slice(br#","patchType":"#);
            string(&mut out, patch_type);
        }
        if let Some(patch) = &self.patch {
            out.extend_from_slice(br#","patch":"#);
            string(&mut out, patch);
        }
        if let Some(status) = &self.status {
            out.extend_from_slice(br#","status":{"code":"#);
            out.extend_from_slice(status.code.to_string().as_bytes());
            out.extend_from_slice(br#","message":"#);
            string(&mut out, &status.message);
            if let Some(reason) = status.reason {
                out.extend_from_slice(br#","reason":"#);
                string(&mut out, reason);
            }
            out.push(b'}');
        }
        if !self.warnings.is_empty() {
            out.extend_from_slice(br#","warnings":["#);
            for (i, warning) in self.warnings.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(&mut out, warning);
            }
            out.push(b']');
        }
        out.extend_from_slice(b"}}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, Response, ReviewOut, Scope, API_VERSION, KIND};

    #[test]
    fn the_answer_is_the_json_serde_writes() {
        let answers = [
            Response::allow("u-1"),
            Response::allow("u\"\\\n\u{1}é")
                .with_warnings(vec!["one".into(), "t\two \"q\"".into()]),
            Response::patch(
                "u-2",
                br#"[{"op":"add","path":"/a","value":"\u0001"}]"#,
                Vec::new(),
            ),
            Response::patch("u-3", b"[]", vec!["w".into()]),
            Response::deny("u-4", 400, "bad \"x\"\tthere".into()),
            Response::deny("u-5", 500, String::new()),
            Response::deny("u-6", 403, "no".into()).with_warnings(vec![String::new()]),
        ];
        for answer in answers {
            let serde = serde_json::to_vec(&ReviewOut {
                api_version: API_VERSION,
                kind: KIND,
                response: &answer,
            })
            .unwrap_or_default();
            assert_eq!(
                String::from_utf8_lossy(&answer.to_json()),
                String::from_utf8_lossy(&serde),
                "{answer:?}"
            );
        }
    }
    use serde_json::json;

    fn review(request: &serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": request,
        }))
        .unwrap_or_default()
    }

    fn pod_request(namespace: &str, operation: &str) -> serde_json::Value {
        json!({
            "uid": "u-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": operation,
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}},
        })
    }

    #[test]
    fn bodies_that_are_not_reviews_are_invalid_with_a_reason() {
        let table: &[(&[u8], &str)] = &[
            (b"", "empty body"),
            (b"{", "JSON ends early"),
            (b"not json", "invalid JSON"),
            (b"[1,2]", "wrong type"),
            (
                br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#,
                "expected apiVersion admission.k8s.io/v1",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#,
                "kind \"Pod\"",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                "has no request",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""}}"#,
                "empty uid",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":7}}"#,
                "wrong type",
            ),
        ];
        for (body, want) in table {
            let got = decode(body).map(|_| ()).map_err(|e| e.0);
            assert!(
                got.as_ref().is_err_and(|m| m.contains(want)),
                "{}: {got:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_type_error_does_not_quote_the_value() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":{"s3cr3t":1}}}"#;
        let message = decode(body).err().map(|e| e.0).unwrap_or_default();
        assert!(!message.contains("s3cr3t"), "{message}");
    }

    #[test]
    fn scope_reviews_pod_creates_outside_protected_namespaces() {
        let table = [
            (pod_request("apps", "CREATE"), "review"),
            (pod_request("apps", "UPDATE"), "pass"),
            (pod_request("kube-system", "CREATE"), "pass"),
            (pod_request("kube-public", "CREATE"), "pass"),
        ];
        for (request, want) in table {
            let parsed = decode(&review(&request)).map_err(|e| e.0);
            let got = match parsed.map(|r| r.scope()) {
                Ok(Scope::Review) => "review",
                Ok(Scope::Pass(_)) => "pass",
                Ok(Scope::Error(_)) => "error",
                Err(_) => "invalid",
            };
            assert_eq!(got, want, "{request}");
        }
        let mut deployment = pod_request("apps", "CREATE");
        deployment["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
        let scope = decode(&review(&deployment)).map(|r| r.scope());
        assert!(
            matches!(&scope, Ok(Scope::Error(m)) if m.contains("not apps/v1 Deployment")),
            "{scope:?}"
        );
        let mut no_object = pod_request("apps", "CREATE");
        no_object["object"] = serde_json::Value::Null;
        // The object keeps its key order on the way to the core.
        let ordered = decode(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":{"spec":{},"metadata":{},"kind":"Pod","apiVersion":"v1"}}}"#);
        let keys: Vec<String> = ordered
            .ok()
            .and_then(|r| r.object)
            .and_then(|o| o.as_mapping().cloned())
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(keys, ["spec", "metadata", "kind", "apiVersion"]);
        let scope = decode(&review(&no_object)).map(|r| r.scope());
        assert!(matches!(scope, Ok(Scope::Error(_))), "{scope:?}");
    }

    #[test]
    fn responses_serialise_as_the_api_server_expects() {
        let patch = br#"[{"op":"add","path":"/a","value":1}]"#;
        let out: serde_json::Value = serde_json::from_slice(
            &Response::patch("u", patch, vec!["two\nlines".to_owned()]).to_json(),
        )
        .unwrap_or_default();
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(out["response"]["uid"], "u");
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        assert_eq!(
            out["response"]["patch"],
            "W3sib3AiOiJhZGQiLCJwYXRoIjoiL2EiLCJ2YWx1ZSI6MX1d"
        );
        assert_eq!(out["response"]["warnings"], json!(["two lines"]));
        let out: serde_json::Value =
            serde_json::from_slice(&Response::deny("u", 400, "no".to_owned()).to_json())
                .unwrap_or_default();
        assert_eq!(
            out["response"],
            json!({"uid": "u", "allowed": false, "status": {"code": 400, "message": "no", "reason": "BadRequest"}})
        );
        let out: serde_json::Value =
            serde_json::from_slice(&Response::allow("u").to_json()).unwrap_or_default();
        assert_eq!(out["response"], json!({"uid": "u", "allowed": true}));
    }
}

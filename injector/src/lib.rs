//! secret-gate-injector adds the secret-gate init container (or native
//! sidecar) to workload manifests, from annotations on their pod templates.
//!
//! One pure core, thin front ends:
//! - [`inject`] is the core: [`Injector::inject_value`] takes one document
//!   (an object or a `List`) as a YAML value tree and returns the edited
//!   tree, one report per object and warnings, or an [`InjectError`] that
//!   names the object and says what to change. [`Injector::inject_pod`]
//!   injects into the admission webhook's Pod in place, editing only the
//!   parts named in [`inject::EDITED`]. Nothing in it reads files, the
//!   clock or the environment.
//! - [`annotations`] reads the opt-in (`secret-gate.dev/…`) into a request;
//!   [`gate`] turns a request into the gate's command line, validates it
//!   with the gate's own parser and `Config`, and builds the container.
//! - [`status`] is the `secret-gate.dev/status` annotation: what was
//!   injected, so a re-run replaces exactly that.
//! - [`document`] splits multi-document YAML and JSON input into documents
//!   that keep their original text, and emits the result; [`krm`] is the
//!   KRM-function front end (`ResourceList` in and out); [`cli`] is the
//!   `inject` command.
//! - [`settings`] is the vocabulary at the bottom ([`Source`],
//!   [`GateMode`], [`Settings`]); imports only point down to it.
//! - [`yaml`] reads YAML as kubectl does (YAML 1.1) and writes it so that
//!   kubectl reads it back as written.
//! - [`value`] holds small helpers over `serde_yaml_ng::Value`; [`json`]
//!   writes one as compact JSON, byte for byte as `serde_json` does.
//! - [`webhook`] is the admission-webhook front end (`webhook`): HTTPS,
//!   `AdmissionReview` in, a JSON patch from the core's answer out.

pub mod annotations;
pub mod cli;
pub mod document;
pub mod gate;
pub mod inject;
pub mod json;
pub mod krm;
pub mod settings;
pub mod status;
pub mod value;
pub mod webhook;
pub mod yaml;

pub use inject::{InjectError, Injector, ObjectRef, ObjectReport, Outcome};
pub use settings::{GateMode, Settings, Source};

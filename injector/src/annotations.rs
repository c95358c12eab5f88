//! The opt-in: `secret-gate.dev/…` annotations on a pod template.
//!
//! One rule for the gate's flags: `secret-gate.dev/NAME: VALUE` is
//! `--NAME=VALUE` (a flag without a value: `"true"` adds it, `"false"`
//! leaves it out). The injector's own annotations are the short list in
//! [`OWN`]; every other name under the prefix is a gate flag.

use serde_yaml_ng::{Mapping, Value};

use crate::settings::{GateMode, Settings, Source};

/// The annotation prefix.
pub const PREFIX: &str = "secret-gate.dev/";
/// `"true"` opts the template in.
pub const INJECT: &str = "secret-gate.dev/inject";
/// `watch` or `safe`.
pub const SOURCE: &str = "secret-gate.dev/source";
/// `init` or `sidecar`.
pub const MODE: &str = "secret-gate.dev/mode";
/// `first`, `last`, `before:NAME` or `after:NAME`.
pub const PLACEMENT: &str = "secret-gate.dev/placement";
/// Written by the injector: what it injected and a hash of its inputs.
pub const STATUS: &str = "secret-gate.dev/status";

/// The injector's own annotation names (after the prefix); any other name
/// is a gate flag.
pub const OWN: [&str; 6] = [
    "inject",
    "source",
    "mode",
    "placement",
    "status",
    "schema-configmap",
];

/// The `ConfigMap` that holds `secret-gate.dev/schema`'s file, mounted
/// read-only for the gate at the schema's directory.
pub const SCHEMA_CONFIGMAP: &str = "secret-gate.dev/schema-configmap";

/// Gate flags that the injector sets itself from `secret-gate.dev/mode`,
/// and that an annotation may therefore not set.
pub const SET_BY_MODE: [(&str, &str); 1] = [(
    "keep-running",
    "set secret-gate.dev/mode: sidecar instead, which also adds the probes",
)];

/// Where the gate goes among the init containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    First,
    Last,
    Before(String),
    After(String),
}

/// What one opted-in template asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub source: Source,
    pub mode: GateMode,
    /// `None`: the default (last, after any native mesh sidecar).
    pub placement: Option<Placement>,
    /// `secret-gate.dev/schema-configmap`.
    pub schema_configmap: Option<String>,
    /// Gate flags in annotation order: (`NAME`, `VALUE`).
    pub flags: Vec<(String, String)>,
}

/// The template's `secret-gate.dev/…` annotations, as (full name, value),
/// or an error if a value is not a string.
pub fn ours(annotations: Option<&Mapping>) -> Result<Vec<(String, String)>, String> {
    let Some(annotations) = annotations else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (k, v) in annotations {
        let Some(name) = k.as_str().filter(|k| k.starts_with(PREFIX)) else {
            continue;
        };
        match v {
            Value::String(text) => out.push((name.to_owned(), text.clone())),
            other => {
                return Err(format!(
                    "annotation {name} is {}, not a string: Kubernetes annotations are strings, \
                     so quote the value (e.g. {name}: \"{}\")",
                    kind_of(other),
                    scalar_text(other)
                ))
            }
        }
    }
    Ok(out)
}

/// A value the gate can be given as it was checked: no NUL (no runtime
/// can pass one in an argument), and nothing Kubernetes would rewrite.
/// The kubelet expands `$(VAR)` and turns `$$` into `$` in a container's
/// args, so such a value would not be what the injector validated; only
/// `$(POD_IP)`, which sidecar mode defines, is left to it.
fn value_is_runnable(name: &str, text: &str) -> Result<(), String> {
    if text.contains('\0') {
        return Err(format!(
            "annotation {name} holds a NUL character, which no container runtime can pass to \
             the gate: remove it"
        ));
    }
    // Most values hold no `$` at all: nothing to rewrite or look through.
    if !text.contains('$') {
        return Ok(());
    }
    let rest = text.replace("$(POD_IP)", "");
    if rest.contains("$(") || rest.contains("$$") {
        return Err(format!(
            "annotation {name} holds \"$(\" or \"$$\": the kubelet expands $(VAR) and $$ in a \
             container's arguments, so the gate would not run what the injector checked; write \
             the value without them (only $(POD_IP) is defined, in sidecar mode)"
        ));
    }
    Ok(())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => "...".to_owned(),
    }
}

/// Reads the request from the template's annotations (`ours`), with the
/// defaults from `settings`.
pub fn request(ours: &[(String, String)], settings: &Settings) -> Result<Request, String> {
    let mut req = Request {
        source: settings.source,
        mode: settings.mode,
        placement: None,
        schema_configmap: None,
        flags: Vec::new(),
    };
    for (full, value) in ours {
        value_is_runnable(full, value)?;
        let name = &full[PREFIX.len()..];
        match name {
            "inject" | "status" => {}
            "source" => {
                req.source = match value.trim() {
                    "watch" => Source::Watch,
                    "safe" => Source::Safe,
                    other => {
                        return Err(format!(
                            "{SOURCE} is {other:?}: write watch (files on a mounted volume) or \
                             safe (VSecM Safe over SPIFFE mTLS)"
                        ))
                    }
                };
            }
            "mode" => {
                req.mode = match value.trim() {
                    "init" => GateMode::Init,
                    "sidecar" => GateMode::Sidecar,
                    other => {
                        return Err(format!(
                            "{MODE} is {other:?}: write init (an init container that exits once \
                             ready) or sidecar (a native sidecar that keeps running)"
                        ))
                    }
                };
            }
            "placement" => req.placement = Some(placement(value)?),
            "schema-configmap" => {
                let name = value.trim();
                if name.is_empty() {
                    return Err(format!(
                        "{SCHEMA_CONFIGMAP} is empty: name the ConfigMap that holds the schema"
                    ));
                }
                req.schema_configmap = Some(name.to_owned());
            }
            flag => {
                if flag.is_empty() {
                    return Err(format!(
                        "annotation {full} names no flag: write {PREFIX}NAME for the gate's --NAME"
                    ));
                }
                if let Some((_, instead)) = SET_BY_MODE.iter().find(|(f, _)| *f == flag) {
                    return Err(format!(
                        "annotation {full}: the injector sets --{flag} itself; {instead}"
                    ));
                }
                req.flags.push((flag.to_owned(), value.clone()));
            }
        }
    }
    Ok(req)
}

fn placement(text: &str) -> Result<Placement, String> {
    let t = text.trim();
    let named = |rest: &str| {
        let name = rest.trim();
        if name.is_empty() {
            Err(format!(
                "{PLACEMENT} is {t:?}: name an init container, e.g. after:istio-proxy"
            ))
        } else {
            Ok(name.to_owned())
        }
    };
    match t {
        "first" => Ok(Placement::First),
        "last" => Ok(Placement::Last),
        _ => {
            if let Some(rest) = t.strip_prefix("before:") {
                Ok(Placement::Before(named(rest)?))
            } else if let Some(rest) = t.strip_prefix("after:") {
                Ok(Placement::After(named(rest)?))
            } else {
                Err(format!(
                    "{PLACEMENT} is {t:?}: write first, last, before:NAME or after:NAME"
                ))
            }
        }
    }
}

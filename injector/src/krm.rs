//! The KRM function front end: a `ResourceList` (`config.kubernetes.io/v1`)
//! in, the same list out with its `items` edited and a `results` entry
//! (severity, `resourceRef`) per object, so that `kustomize build
//! --enable-alpha-plugins --enable-exec` and kpt run the binary directly.
//! `functionConfig` (a `ConfigMap`'s `data`, or a `spec`) may set the
//! defaults `image`, `source` and `mode`. A list the function cannot
//! process is answered with its items unchanged and a `severity: error`
//! result per problem ([`failed`]), and a non-zero exit.

use serde_yaml_ng::{Mapping, Value};

use crate::inject::{resource_ref, Injector, ObjectRef, ObjectReport};
use crate::settings::{GateMode, Settings, Source};
use crate::value::{get, items, s, str_at};

/// Whether a document is a KRM `ResourceList`.
#[must_use]
pub fn is_resource_list(doc: &Value) -> bool {
    str_at(doc, "kind") == Some("ResourceList")
        && str_at(doc, "apiVersion").is_some_and(|v| v.starts_with("config.kubernetes.io/"))
}

/// The defaults from `functionConfig`, over `base`; `image_fixed` keeps
/// `base.image` (set by `--image`, which wins).
pub fn settings(
    function_config: Option<&Value>,
    mut base: Settings,
    image_fixed: bool,
) -> Result<Settings, String> {
    let Some(fc) = function_config.filter(|v| !v.is_null()) else {
        return Ok(base);
    };
    let Some(data) = get(fc, "data")
        .or_else(|| get(fc, "spec"))
        .and_then(Value::as_mapping)
    else {
        return Ok(base);
    };
    for (k, v) in data {
        let key = k.as_str().unwrap_or_default();
        let text = v
            .as_str()
            .ok_or_else(|| format!("functionConfig {key} is not a string: quote it"))?;
        match key {
            "image" => {
                if !image_fixed {
                    text.clone_into(&mut base.image);
                }
            }
            "source" => {
                base.source = match text {
                    "watch" => Source::Watch,
                    "safe" => Source::Safe,
                    _ => {
                        return Err(format!(
                            "functionConfig source is {text:?}: write watch or safe"
                        ))
                    }
                }
            }
            "mode" => {
                base.mode = match text {
                    "init" => GateMode::Init,
                    "sidecar" => GateMode::Sidecar,
                    _ => {
                        return Err(format!(
                            "functionConfig mode is {text:?}: write init or sidecar"
                        ))
                    }
                }
            }
            other => {
                return Err(format!(
                    "functionConfig has {other:?}: the keys are image, source and mode"
                ))
            }
        }
    }
    Ok(base)
}

/// A problem that fails the function: its text (naming the item and the
/// object, as on stderr) and the object, when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub object: Option<ObjectRef>,
}

/// The answer to a `ResourceList`: the list with edited items and results,
/// and the reports. Every item is tried: the error lists each bad item,
/// naming it and what to change.
pub fn run(injector: &Injector, list: &Value) -> Result<(Value, Vec<ObjectReport>), Vec<Problem>> {
    let mut new_items = Vec::new();
    let mut reports = Vec::new();
    let mut problems = Vec::new();
    for (i, item) in items(list, "items").iter().enumerate() {
        match injector.inject_value(item) {
            Ok(out) => {
                new_items.push(out.value.unwrap_or_else(|| item.clone()));
                reports.extend(out.reports);
            }
            Err(e) => problems.push(Problem {
                message: format!("item {i}: {e}"),
                object: Some(e.object),
            }),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut results = Vec::new();
    for r in &reports {
        results.push(result(Some(&r.object), &r.message, "info"));
        for w in &r.warnings {
            results.push(result(Some(&r.object), w, "warning"));
        }
    }
    let mut out = list.as_mapping().cloned().unwrap_or_default();
    out.insert(s("items"), Value::Sequence(new_items));
    out.insert(s("results"), Value::Sequence(results));
    Ok((Value::Mapping(out), reports))
}

/// The answer when the function fails: `list` as it came, its items
/// unchanged (nothing is half-injected), with one `severity: error` result
/// per problem, as the KRM functions spec asks of a failing function.
#[must_use]
pub fn failed(list: &Value, problems: &[Problem]) -> Value {
    let results = problems
        .iter()
        .map(|p| result(p.object.as_ref(), &p.message, "error"))
        .collect();
    let mut out = list.as_mapping().cloned().unwrap_or_default();
    out.insert(s("results"), Value::Sequence(results));
    Value::Mapping(out)
}

/// One `results` entry; the `resourceRef` only for an object with a kind
/// and a name (an item that is not an object has none).
fn result(object: Option<&ObjectRef>, message: &str, severity: &str) -> Value {
    let mut m = Mapping::new();
    m.insert(s("message"), s(message));
    m.insert(s("severity"), s(severity));
    if let Some(o) = object.filter(|o| !o.kind.is_empty() && !o.name.is_empty()) {
        m.insert(s("resourceRef"), resource_ref(o));
    }
    Value::Mapping(m)
}

//! `secret-gate.dev/status`: what the injector added to a pod template and
//! a hash of its inputs. A re-run removes exactly what it lists before it
//! injects again, so changing an annotation replaces the gate and never
//! duplicates it, and the same inputs give the same bytes.

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use crate::annotations::STATUS;
use crate::value::{get_mut, path_mut};

/// The status annotation's content (compact JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// The injected init container's name.
    pub container: String,
    /// Volumes the injector added (not ones the pod already had).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Lists the injector created (`initContainers`, `volumes`), removed
    /// again when they become empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<String>,
    /// FNV-1a 64 of the inputs: the template without the injection, the
    /// image and the injector's version.
    pub inputs: String,
}

impl Status {
    /// Reads the annotation's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| {
            format!(
                "{STATUS} is not one this injector wrote ({e}): it is written by the injector \
                 only; remove it, and remove by hand whatever it injected"
            )
        })
    }

    /// The annotation's text.
    #[must_use]
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Removes from `template` (a pod template: `metadata` and `spec`)
    /// what this status says was injected, and the status itself.
    pub fn strip(&self, template: &mut Value) {
        if let Some(spec) = get_mut(template, "spec").and_then(Value::as_mapping_mut) {
            if let Some(list) = spec
                .get_mut("initContainers")
                .and_then(Value::as_sequence_mut)
            {
                list.retain(|c| crate::value::str_at(c, "name") != Some(self.container.as_str()));
            }
            if let Some(list) = spec.get_mut("volumes").and_then(Value::as_sequence_mut) {
                list.retain(|v| {
                    !crate::value::str_at(v, "name")
                        .is_some_and(|n| self.volumes.iter().any(|x| x == n))
                });
            }
            for key in &self.created {
                let empty = spec
                    .get(key.as_str())
                    .is_some_and(|v| v.as_sequence().is_some_and(Vec::is_empty));
                if empty {
                    spec.remove(key.as_str());
                }
            }
        }
        if let Some(annotations) =
            path_mut(template, &["metadata", "annotations"]).and_then(Value::as_mapping_mut)
        {
            annotations.remove(STATUS);
        }
    }
}

/// FNV-1a 64, hex: a stable fingerprint (not a security hash).
#[must_use]
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

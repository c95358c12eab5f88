//! The JSON patch (RFC 6902) that turns the pod the API server sent into
//! the pod the injection core returned, built from the two value trees
//! directly.
//!
//! Both trees are walked once and nothing is converted: only the values
//! the patch carries (a container, a volume, an annotation) are written
//! as JSON, so the cost is one comparison of the pod, not two conversions
//! and a diff of JSON trees. Applied to `before`, the patch gives
//! exactly `after`: the webhook's goldens (`injector/tests/webhook_goldens.rs`)
//! apply it with json-patch and compare with the CLI's output.
//!
//! - Mappings: keys only in `before` are removed, keys only in `after`
//!   are added, and keys in both are compared in turn. Mappings compare
//!   by key, so a different key order alone is no change.
//! - Sequences: one inserted item (the gate among the init containers,
//!   a volume) is one `add` at its index; otherwise items are compared
//!   index by index, and the longer list's tail is added or removed.
//! - Anything else that differs is replaced.

use std::fmt::{self, Write as _};

use serde_yaml_ng::Value;

/// A key that is not a string: JSON has no way to write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotJson;

impl fmt::Display for NotJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key that is not a string")
    }
}

/// The patch from `before` to `after`, as the JSON text of its array of
/// operations, and the number of operations.
pub fn diff(before: &Value, after: &Value) -> Result<(Vec<u8>, usize), NotJson> {
    let mut patch = Patch {
        out: b"[".to_vec(),
        ops: 0,
        path: String::new(),
    };
    patch.value(before, after)?;
    patch.out.push(b']');
    Ok((patch.out, patch.ops))
}

struct Patch {
    out: Vec<u8>,
    ops: usize,
    /// The JSON pointer of the value being compared.
    path: String,
}

impl Patch {
    /// Compares one value. Mappings and sequences are walked rather than
    /// compared whole first, so each node is visited once.
    fn value(&mut self, before: &Value, after: &Value) -> Result<(), NotJson> {
        match (before, after) {
            (Value::Mapping(a), Value::Mapping(b)) => {
                for (key, old) in a {
                    let key = key.as_str().ok_or(NotJson)?;
                    let len = self.push(key);
                    match b.get(key) {
                        Some(new) => self.value(old, new)?,
                        None => self.op("remove", None)?,
                    }
                    self.path.truncate(len);
                }
                for (key, new) in b {
                    let key = key.as_str().ok_or(NotJson)?;
                    if !a.contains_key(key) {
                        let len = self.push(key);
                        self.op("add", Some(new))?;
                        self.path.truncate(len);
                    }
                }
                Ok(())
            }
            (Value::Sequence(a), Value::Sequence(b)) => self.sequence(a, b),
            _ if before == after => Ok(()),
            _ => self.op("replace", Some(after)),
        }
    }

    fn sequence(&mut self, a: &[Value], b: &[Value]) -> Result<(), NotJson> {
        if b.len() == a.len() + 1 {
            let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            if a[at..] == b[at + 1..] {
                let len = self.push_index(at);
                self.op("add", Some(&b[at]))?;
                self.path.truncate(len);
                return Ok(());
            }
        }
        for (i, (old, new)) in a.iter().zip(b).enumerate() {
            let len = self.push_index(i);
            self.value(old, new)?;
            self.path.truncate(len);
        }
        for (i, new) in b.iter().enumerate().skip(a.len()) {
            let len = self.push_index(i);
            self.op("add", Some(new))?;
            self.path.truncate(len);
        }
        // From the end, so each index is still the one it names.
        for i in (b.len()..a.len()).rev() {
            let len = self.push_index(i);
            self.op("remove", None)?;
            self.path.truncate(len);
        }
        Ok(())
    }

    /// Appends `/key` (escaped as RFC 6901 says) to the path; returns the
    /// length to truncate back to.
    fn push(&mut self, key: &str) -> usize {
        let len = self.path.len();
        self.path.push('/');
        for c in key.chars() {
            match c {
                '~' => self.path.push_str("~0"),
                '/' => self.path.push_str("~1"),
                c => self.path.push(c),
            }
        }
        len
    }

    fn push_index(&mut self, i: usize) -> usize {
        let len = self.path.len();
        // Writing to a String cannot fail.
        let _ = write!(self.path, "/{i}");
        len
    }

    fn op(&mut self, op: &str, value: Option<&Value>) -> Result<(), NotJson> {
        if self.ops > 0 {
            self.out.push(b',');
        }
        self.ops += 1;
        self.out.extend_from_slice(br#"{"op":""#);
        self.out.extend_from_slice(op.as_bytes());
        self.out.extend_from_slice(br#"","path":"#);
        // A string always serialises.
        serde_json::to_writer(&mut self.out, &self.path).map_err(|_| NotJson)?;
        if let Some(value) = value {
            self.out.extend_from_slice(br#","value":"#);
            serde_json::to_writer(&mut self.out, value).map_err(|_| NotJson)?;
        }
        self.out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{diff, NotJson};
    use serde_json::json;
    use serde_yaml_ng::Value;

    fn yaml(v: &serde_json::Value) -> Value {
        serde_yaml_ng::to_value(v).unwrap_or(Value::Null)
    }

    /// Applies the patch with json-patch (an independent implementation)
    /// and checks that it gives `after`.
    fn round_trip(before: &serde_json::Value, after: &serde_json::Value) -> serde_json::Value {
        let (text, ops) = diff(&yaml(before), &yaml(after)).unwrap_or_default();
        let patch: json_patch::Patch =
            serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert_eq!(patch.0.len(), ops);
        let mut out = before.clone();
        json_patch::patch(&mut out, &patch).unwrap_or_else(|e| panic!("{e}: {patch:?}"));
        assert_eq!(&out, after, "{patch:?}");
        serde_json::from_slice(&text).unwrap_or_default()
    }

    #[test]
    fn the_patch_applied_to_before_gives_after() {
        let pod = json!({
            "metadata": {"name": "p", "annotations": {"a/b": "1", "t~x": "2"}},
            "spec": {
                "initContainers": [{"name": "i1"}, {"name": "i2"}],
                "containers": [{"name": "app", "ports": [{"containerPort": 80}]}],
            },
        });
        let cases = [
            // Nothing changed: an empty patch.
            pod.clone(),
            // The gate in the middle of the init containers, an annotation
            // with a / in its key, a changed and a removed field.
            json!({
                "metadata": {"name": "q", "annotations": {"a/b": "1", "t~x": "2", "secret-gate.dev/status": "v1"}},
                "spec": {
                    "initContainers": [{"name": "i1"}, {"name": "gate"}, {"name": "i2"}],
                    "containers": [{"name": "app"}],
                    "volumes": [{"name": "v"}],
                },
            }),
            // Lists that shrink and grow by more than one, and a type change.
            json!({
                "metadata": [1, 2],
                "spec": {
                    "initContainers": [],
                    "containers": [{"name": "app", "ports": [{"containerPort": 80}, {"containerPort": 81}, {"containerPort": 82}]}],
                },
            }),
            json!(null),
        ];
        for after in &cases {
            round_trip(&pod, after);
            round_trip(after, &pod);
        }
        let patch = round_trip(&pod, &cases[1]);
        assert!(
            patch
                .as_array()
                .into_iter()
                .flatten()
                .any(|op| op == &json!({"op": "add", "path": "/metadata/annotations/secret-gate.dev~1status", "value": "v1"})),
            "{patch}"
        );
        assert!(
            patch
                .as_array()
                .into_iter()
                .flatten()
                .any(|op| op == &json!({"op": "add", "path": "/spec/initContainers/1", "value": {"name": "gate"}})),
            "{patch}"
        );
        assert_eq!(round_trip(&pod, &pod), json!([]));
    }

    #[test]
    fn a_key_json_cannot_write_is_refused() {
        let mut with_int_key = serde_yaml_ng::Mapping::new();
        with_int_key.insert(Value::from(1), Value::from("x"));
        let before = yaml(&json!({"a": {}}));
        let mut after = before.clone();
        if let Value::Mapping(m) = &mut after {
            m.insert(Value::from("a"), Value::Mapping(with_int_key));
        }
        assert_eq!(diff(&before, &after).map(|(_, n)| n), Err(NotJson));
    }
}

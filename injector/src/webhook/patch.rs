//! The JSON patch (RFC 6902) that turns the pod the API server sent into
//! the pod the injection core made of it, built from the value trees
//! directly.
//!
//! The core edits the Pod in place, and only the parts named in
//! [`EDITED`] (annotations, init containers, volumes). [`Before`] copies
//! those parts before the edit and compares them with the same parts
//! after: the rest of the Pod is neither copied nor walked. Nothing is
//! converted: only the values the patch carries (a container, a volume,
//! an annotation) are written as JSON. Applied to the Pod as it was, the
//! patch gives exactly the Pod as edited: the webhook's goldens
//! (`injector/tests/webhook_goldens.rs`) apply it with json-patch and
//! compare with the CLI's output, and `tests/properties.rs` holds the
//! core to [`EDITED`].
//!
//! - Mappings: keys only in `before` are removed, keys only in `after`
//!   are added, and keys in both are compared in turn. Mappings compare
//!   by key, so a different key order alone is no change. Where `after`
//!   keeps `before`'s keys in order (an edited Pod does), the two are
//!   walked entry by entry, and no key is hashed.
//! - Sequences: one inserted item (the gate among the init containers,
//!   a volume) is one `add` at its index; otherwise items are compared
//!   index by index, and the longer list's tail is added or removed.
//! - Anything else that differs is replaced.

use std::fmt::{self, Write as _};

use serde_yaml_ng::Value;

use crate::inject::EDITED;
use crate::value::{path, same};

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
#[cfg(test)]
pub fn diff(before: &Value, after: &Value) -> Result<(Vec<u8>, usize), NotJson> {
    let mut patch = Patch::new();
    patch.value(before, after)?;
    Ok(patch.finish())
}

/// The parts of a Pod that injection can edit ([`EDITED`]), copied before
/// the core edits the Pod in place: the patch compares these with the
/// same parts after, so nothing else of the Pod is copied or walked.
#[derive(Debug)]
pub struct Before([Option<Value>; EDITED.len()]);

impl Before {
    /// Copies the parts of `pod` that the core can edit.
    #[must_use]
    pub fn of(pod: &Value) -> Self {
        Self(EDITED.map(|at| path(pod, at).cloned()))
    }

    /// The patch from the Pod these parts were copied from to `after`,
    /// the same Pod once edited, and its number of operations.
    pub fn diff(&self, after: &Value) -> Result<(Vec<u8>, usize), NotJson> {
        let mut patch = Patch::new();
        for (at, before) in EDITED.iter().zip(&self.0) {
            let len = patch.path.len();
            for key in *at {
                patch.push(key);
            }
            match (before, path(after, at)) {
                (Some(old), Some(new)) => patch.value(old, new)?,
                (None, Some(new)) => patch.op("add", Some(new))?,
                (Some(_), None) => patch.op("remove", None)?,
                (None, None) => {}
            }
            patch.path.truncate(len);
        }
        Ok(patch.finish())
    }
}

struct Patch {
    out: Vec<u8>,
    ops: usize,
    /// The JSON pointer of the value being compared.
    path: String,
}

impl Patch {
    fn new() -> Self {
        Self {
            out: b"[".to_vec(),
            ops: 0,
            path: String::new(),
        }
    }

    /// The JSON text of the operations, and how many there are.
    fn finish(mut self) -> (Vec<u8>, usize) {
        self.out.push(b']');
        (self.out, self.ops)
    }

    /// Compares one value. Mappings and sequences are walked rather than
    /// compared whole first, so each node is visited once.
    fn value(&mut self, before: &Value, after: &Value) -> Result<(), NotJson> {
        match (before, after) {
            (Value::Mapping(a), Value::Mapping(b)) => {
                // The core edits a copy, so most mappings keep their keys
                // in order, some with keys added at the end: walk those
                // entry by entry, with no key looked up.
                let in_order = a.len() <= b.len() && a.keys().zip(b.keys()).all(|(x, y)| x == y);
                if in_order {
                    for ((key, old), (_, new)) in a.iter().zip(b) {
                        let len = self.push(key.as_str().ok_or(NotJson)?);
                        self.value(old, new)?;
                        self.path.truncate(len);
                    }
                    // Keys are unique, so these are not in `before`.
                    for (key, new) in b.iter().skip(a.len()) {
                        let len = self.push(key.as_str().ok_or(NotJson)?);
                        self.op("add", Some(new))?;
                        self.path.truncate(len);
                    }
                    return Ok(());
                }
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
            _ if same(before, after) => Ok(()),
            _ => self.op("replace", Some(after)),
        }
    }

    fn sequence(&mut self, a: &[Value], b: &[Value]) -> Result<(), NotJson> {
        if b.len() == a.len() + 1 {
            let at = a.iter().zip(b).take_while(|(x, y)| same(x, y)).count();
            if a[at..].iter().zip(&b[at + 1..]).all(|(x, y)| same(x, y)) {
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
        if !key.contains(['~', '/']) {
            self.path.push_str(key);
            return len;
        }
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
        crate::json::string(&mut self.out, &self.path);
        if let Some(value) = value {
            self.out.extend_from_slice(br#","value":"#);
            crate::json::append(&mut self.out, value).map_err(|_| NotJson)?;
        }
        self.out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{diff, Before, NotJson};
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

    /// The patch from [`Before`], applied with json-patch to the Pod as
    /// it was, gives the Pod as edited; with keys in another order only,
    /// it is empty.
    #[test]
    fn the_patch_of_the_edited_parts_gives_the_edited_pod() {
        let read = |text: &str| -> Value {
            serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
        };
        let pod = "{metadata: {name: p, annotations: {a: '1'}}, spec: {containers: [{name: app}], \
                   initContainers: [{name: i1}], volumes: [{name: v}]}}";
        let cases = [
            // The gate and a volume added, the status annotation set.
            "{metadata: {name: p, annotations: {a: '1', secret-gate.dev/status: v1}}, \
             spec: {containers: [{name: app}], initContainers: [{name: i1}, {name: secret-gate}], \
             volumes: [{name: v}, {name: socket}]}}",
            // Init containers and volumes removed (the gate stripped).
            "{metadata: {name: p, annotations: {a: '1'}}, spec: {containers: [{name: app}]}}",
            // The same keys in another order: no change.
            "{spec: {volumes: [{name: v}], initContainers: [{name: i1}], \
             containers: [{name: app}]}, metadata: {annotations: {a: '1'}, name: p}}",
        ];
        for (before, after) in cases
            .iter()
            .map(|c| (pod, *c))
            .chain(cases.iter().map(|c| (*c, pod)))
        {
            let (before, after) = (read(before), read(after));
            let (text, ops) = Before::of(&before).diff(&after).unwrap_or_default();
            let patch: json_patch::Patch =
                serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
            assert_eq!(patch.0.len(), ops);
            let mut out = serde_json::to_value(&before).unwrap_or_default();
            json_patch::patch(&mut out, &patch).unwrap_or_else(|e| panic!("{e}: {patch:?}"));
            assert_eq!(
                out,
                serde_json::to_value(&after).unwrap_or_default(),
                "{patch:?}"
            );
            assert_eq!(ops == 0, before == after, "{patch:?}");
        }
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

//! Small helpers over `serde_yaml_ng::Value`, whose `Mapping` keeps key
//! order, so that an edited document keeps the user's layout and every
//! field this tool does not know.

use serde_yaml_ng::{Mapping, Value};

/// A mapping from `(key, value)` pairs, in order.
#[must_use]
pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut m = Mapping::with_capacity(N);
    for (k, v) in pairs {
        m.insert(Value::String(k.to_owned()), v);
    }
    Value::Mapping(m)
}

/// A string value.
#[must_use]
pub fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

/// A sequence of values.
#[must_use]
pub fn seq(items: Vec<Value>) -> Value {
    Value::Sequence(items)
}

/// `m[key]`.
#[must_use]
pub fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping()?.get(key)
}

/// `m[key]`, mutable.
pub fn get_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    v.as_mapping_mut()?.get_mut(key)
}

/// `v[k1][k2]...`.
#[must_use]
pub fn path<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(v, |v, k| get(v, k))
}

/// `v[k1][k2]...`, mutable.
pub fn path_mut<'a>(v: &'a mut Value, keys: &[&str]) -> Option<&'a mut Value> {
    keys.iter().try_fold(v, |v, k| get_mut(v, k))
}

/// `v[key]` as a string.
#[must_use]
pub fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get(v, key)?.as_str()
}

/// The items of the sequence `v[key]` (none if absent or not a sequence).
#[must_use]
pub fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    get(v, key)
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

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

/// `a == b`, walking mappings entry by entry while both keep their keys in
/// the same order (as an edited copy does), so that no key is hashed;
/// where the orders part, the mappings compare as `==` does, by key.
#[must_use]
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Mapping(x), Value::Mapping(y)) => {
            if x.len() != y.len() {
                return false;
            }
            for ((kx, vx), (ky, vy)) in x.iter().zip(y) {
                if kx != ky {
                    return x == y;
                }
                // One key, two values: the mappings differ.
                if !same(vx, vy) {
                    return false;
                }
            }
            true
        }
        (Value::Sequence(x), Value::Sequence(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Tagged(x), Value::Tagged(y)) => x.tag == y.tag && same(&x.value, &y.value),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::same;
    use serde_yaml_ng::Value;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn same_is_equality_whatever_the_key_order() {
        let cases = [
            ("{a: 1, b: [x, {c: 2}]}", "{a: 1, b: [x, {c: 2}]}"),
            ("{a: 1, b: [x, {c: 2}]}", "{b: [x, {c: 2}], a: 1}"),
            ("{a: 1, b: [x, {c: 2}]}", "{a: 1, b: [x, {c: 3}]}"),
            ("{a: 1, b: 2}", "{a: 1, c: 2}"),
            ("{a: 1, b: 2}", "{a: 1}"),
            ("{a: {x: 1, y: 2}, b: 0}", "{a: {y: 2, x: 1}, b: 0}"),
            ("{a: {x: 1, y: 2}, b: 0}", "{a: {y: 2, x: 2}, b: 0}"),
            ("[1, 2]", "[1, 2, 3]"),
            ("!t {a: 1}", "!t {a: 1}"),
            ("!t {a: 1}", "!u {a: 1}"),
            ("1", "1.0"),
            ("'1'", "1"),
        ];
        for (a, b) in cases {
            let (a, b) = (yaml(a), yaml(b));
            assert_eq!(same(&a, &b), a == b, "{a:?} vs {b:?}");
            assert_eq!(same(&b, &a), a == b, "{b:?} vs {a:?}");
        }
    }
}

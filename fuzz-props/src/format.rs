//! The format check with required keys: JSON, YAML (`serde_yaml_ng` over
//! the unsafe `unsafe-libyaml`), env with its unquoting, and raw.

use secret_gate::check::{self, describe_parse_error, Document, Format, Key, ParseError};
use serde_json::Value;

use crate::{assert_no_canary, limited};

/// The keys every document is searched for, besides its own member names:
/// names and pointers the seeds use.
const KEYS: &str = "user,username,password,PASSWORD,DB_PASSWORD,token,api_key,\
                    /db/password,/a~1b/c~0d,/0,/users/0/name,/";

/// A JSON file.
pub fn json(data: &[u8]) {
    limited(|| check_format(Format::Json, data));
}

/// A YAML file.
pub fn yaml(data: &[u8]) {
    limited(|| check_format(Format::Yaml, data));
}

/// An env file, and the same bytes as a raw file.
pub fn env_and_raw(data: &[u8]) {
    limited(|| {
        check_format(Format::Env, data);
        let raw = check::parse(Format::Raw, data);
        let blank = data.iter().all(u8::is_ascii_whitespace);
        let no_value = check::format::is_no_value(data);
        assert_eq!(
            raw.is_ok(),
            !blank && !no_value,
            "raw is ready exactly when it is not blank and not `<no value>`"
        );
    });
}

/// Parses `data` as `format`, describes any error as each source would,
/// and looks the required keys up.
fn check_format(format: Format, data: &[u8]) {
    let doc = match check::parse(format, data) {
        Ok(doc) => doc,
        Err(err) => return check_error(&err, data.len()),
    };
    assert_no_canary("a Document's Debug", &format!("{doc:?}"));
    let mut keys = Key::parse_list(KEYS).unwrap_or_default();
    let present = present_names(&doc);
    for name in &present {
        // A name `Key::parse` reads as written: found by name.
        if let Ok(key @ Key::Name(_)) = Key::parse(name) {
            keys.push(key);
        }
        // Every member, by JSON Pointer (RFC 6901 escaping).
        let pointer = format!("/{}", name.replace('~', "~0").replace('/', "~1"));
        if let Ok(key) = Key::parse(&pointer) {
            keys.push(key);
        }
    }
    let missing = check::missing_keys(&keys, &[&doc]);
    for key in &missing {
        let text = key.as_str();
        let by_name = text == text.trim() && !text.starts_with('/');
        let pointer_name = text
            .strip_prefix('/')
            .filter(|rest| !rest.contains('/'))
            .map(|rest| rest.replace("~1", "/").replace("~0", "~"));
        let there = (by_name && present.iter().any(|n| n == text))
            || pointer_name.is_some_and(|n| present.contains(&n));
        assert!(
            !there,
            "{format} document holds a value for required key {text:?}, but the key is reported missing"
        );
    }
}

/// Each member name of each top-level object of `doc` whose value counts
/// as present: not null, not `""`, not `<no value>`.
fn present_names(doc: &Document) -> Vec<String> {
    doc.roots
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|map| map.iter())
        .filter(|(_, value)| match value {
            Value::Null => false,
            Value::String(s) => !s.is_empty() && s != check::format::NO_VALUE,
            _ => true,
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// No diagnosis of a parse error repeats the content.
fn check_error(err: &ParseError, size: usize) {
    assert_no_canary("a parse error", &err.to_string());
    for source in ["file", "whole file", "secret"] {
        let text = describe_parse_error(err, size, source);
        assert!(!text.is_empty(), "an empty diagnosis for {err:?}");
        assert_no_canary("a parse diagnosis", &text);
    }
}

//! Required keys: a top-level name or an RFC 6901 JSON Pointer, and how they
//! are looked up in a parsed document.

use std::fmt;

use serde_json::Value;

/// One entry of `--required-keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A top-level member name, such as `password`.
    Name(String),
    /// An RFC 6901 JSON Pointer, such as `/db/password`.
    Pointer(String),
}

/// Why a `--required-keys` entry was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("empty key in the list (check for a doubled or trailing comma)")]
    Empty,
    #[error("JSON Pointer {0:?} has a `~` that is not `~0` or `~1` (RFC 6901)")]
    BadEscape(String),
}

impl Key {
    /// Parses one key. A leading `/` makes it a JSON Pointer.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        if !text.starts_with('/') {
            return Ok(Self::Name(text.to_owned()));
        }
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(KeyError::BadEscape(text.to_owned()));
            }
        }
        Ok(Self::Pointer(text.to_owned()))
    }

    /// Parses a comma-separated list, as given to `--required-keys`.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, KeyError> {
        text.split(',').map(Self::parse).collect()
    }

    /// The key's text, as the user wrote it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Name(s) | Self::Pointer(s) => s,
        }
    }

    /// True if it is a plain name with no `/`, usable as a file name.
    #[must_use]
    pub fn is_plain_name(&self) -> bool {
        matches!(self, Self::Name(n) if !n.contains('/') && n != "." && n != "..")
    }

    /// Looks the key up in `root`. `None` when it is absent, `null`, `""`
    /// or `<no value>` (a template rendered without its data): such a key
    /// does not count as present.
    #[must_use]
    pub fn find<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        let found = match self {
            Self::Name(name) => root.as_object()?.get(name)?,
            Self::Pointer(pointer) => root.pointer(pointer)?,
        };
        match found {
            Value::Null => None,
            Value::String(s) if s.is_empty() || s == super::format::NO_VALUE => None,
            other => Some(other),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{Key, KeyError};
    use serde_json::json;

    #[test]
    fn parse_table() {
        let table: [(&str, Result<Key, KeyError>); 7] = [
            ("password", Ok(Key::Name("password".into()))),
            (" user ", Ok(Key::Name("user".into()))),
            ("/db/password", Ok(Key::Pointer("/db/password".into()))),
            ("/a~1b/c~0d", Ok(Key::Pointer("/a~1b/c~0d".into()))),
            ("/bad~2", Err(KeyError::BadEscape("/bad~2".into()))),
            ("/trailing~", Err(KeyError::BadEscape("/trailing~".into()))),
            ("", Err(KeyError::Empty)),
        ];
        for (text, want) in table {
            assert_eq!(Key::parse(text), want, "{text:?}");
        }
    }

    #[test]
    fn parse_list_rejects_empty_entries() {
        assert_eq!(Key::parse_list("a,,b"), Err(KeyError::Empty));
        assert_eq!(Key::parse_list("a,/b").unwrap().len(), 2);
    }

    #[test]
    fn lookup_table() {
        let doc = json!({
            "user": "admin",
            "password": "",
            "token": null,
            "port": 5432,
            "flags": [],
            "db": {"password": "x", "empty": "", "unrendered": "<no value>"},
            "tpl": "<no value>",
            "tpl2": " <no value>",
            "a/b": {"c~d": true},
        });
        let table = [
            ("user", true),
            ("password", false),
            ("token", false),
            ("port", true),
            ("flags", true),
            ("missing", false),
            ("/db/password", true),
            ("/db/empty", false),
            ("/db/unrendered", false),
            ("tpl", false),
            ("tpl2", true),
            ("/db/missing", false),
            ("/a~1b/c~0d", true),
            ("/user/x", false),
            ("db", true),
        ];
        for (key, present) in table {
            let key = Key::parse(key).unwrap();
            assert_eq!(key.find(&doc).is_some(), present, "{key}");
        }
    }

    #[test]
    fn names_do_not_reach_into_non_objects() {
        assert!(Key::parse("x").unwrap().find(&json!("x")).is_none());
        assert!(Key::parse("0").unwrap().find(&json!(["a"])).is_none());
    }

    #[test]
    fn plain_names_are_file_names() {
        assert!(Key::parse("password").unwrap().is_plain_name());
        assert!(!Key::parse("/password").unwrap().is_plain_name());
        assert!(!Key::parse("..").unwrap().is_plain_name());
        assert!(!Key::parse("a/b").unwrap().is_plain_name());
    }
}

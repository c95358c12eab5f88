//! The content check: what "ready" means, independent of where the bytes
//! came from. Volume mode and safe mode both end here.

pub mod format;
#[cfg(test)]
mod format_table;
pub mod key;
pub mod nist_p521;
pub mod pem;
pub mod schema;
pub mod tls;

pub use format::{parse, parse_pem, Document, Format, ParseError};
pub use key::Key;
pub use schema::Schema;
pub use tls::TlsPolicy;

/// Describes a parse failure of `size` bytes. `source` is `"file"` for a
/// file, which may be mid-write, `"whole file"` for a file known to have
/// been written whole (the kubelet swapped it in), or `"secret"` for a
/// fetched value.
#[must_use]
pub fn describe_parse_error(err: &ParseError, size: usize, source: &str) -> String {
    match (source, err) {
        (_, ParseError::NoValue(_)) => err.to_string(),
        ("file", ParseError::Empty) => format!("{err} (still being written?)"),
        ("file", _) if err.maybe_partial() => {
            format!("{err} (file is {size} bytes; still being written?)")
        }
        (_, ParseError::Empty) => err.to_string(),
        ("whole file", _) => format!("{err} (file is {size} bytes)"),
        _ => format!("{err} ({source} is {size} bytes)"),
    }
}

/// Returns the required keys that no document carries.
#[must_use]
pub fn missing_keys<'k>(keys: &'k [Key], docs: &[&Document]) -> Vec<&'k Key> {
    keys.iter()
        .filter(|key| {
            !docs
                .iter()
                .flat_map(|doc| doc.roots.iter())
                .any(|root| key.find(root).is_some())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{missing_keys, parse, Format, Key};

    #[test]
    fn keys_may_come_from_any_document() {
        let a = parse(Format::Json, br#"{"user":"u"}"#).unwrap();
        let b = parse(Format::Env, b"PASSWORD=p\nEMPTY=").unwrap();
        let keys = Key::parse_list("user,PASSWORD,EMPTY,/user,other").unwrap();
        let missing: Vec<String> = missing_keys(&keys, &[&a, &b])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(missing, ["EMPTY", "other"]);
    }
}

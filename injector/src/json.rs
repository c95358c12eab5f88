//! Compact JSON for the core's value tree, written straight into a byte
//! buffer: the admission webhook's hot path (the status fingerprint and
//! the patch's values).
//!
//! [`write`] gives exactly the bytes `serde_json::to_writer` gives for the
//! same `serde_yaml_ng::Value`, or [`Unsupported`] for the rare values it
//! leaves to `serde_json` (a float, a tag, a key that is not a string), so a
//! caller falls back to `serde_json` for the whole value and the bytes never
//! depend on which path wrote them. The status fingerprint hashes these
//! bytes, so they can never change; the unit tests hold them to
//! `serde_json`'s over generated trees and every character class.

use serde_yaml_ng::Value;

/// A value [`write`] leaves to `serde_json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

/// Appends `value` as compact JSON to `out`. On [`Unsupported`], `out`
/// holds a partial value: truncate it back before falling back.
pub fn write(out: &mut Vec<u8>, value: &Value) -> Result<(), Unsupported> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                integer(out, u, false);
            } else if let Some(i) = n.as_i64() {
                integer(out, i.unsigned_abs(), i < 0);
            } else {
                // A float: `serde_json`'s shortest round-trip form.
                return Err(Unsupported);
            }
        }
        Value::String(s) => string(out, s),
        Value::Sequence(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item)?;
            }
            out.push(b']');
        }
        Value::Mapping(map) => {
            out.push(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let Value::String(key) = key else {
                    return Err(Unsupported);
                };
                string(out, key);
                out.push(b':');
                write(out, item)?;
            }
            out.push(b'}');
        }
        Value::Tagged(_) => return Err(Unsupported),
    }
    Ok(())
}

fn integer(out: &mut Vec<u8>, mut magnitude: u64, negative: bool) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // `magnitude % 10` is below 10.
        digits[at] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if negative {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// What `serde_json` writes for a byte of a string: 0 for the byte itself,
/// else the letter after the backslash (`u` for `\u00XX`).
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// True if one of the 8 bytes of `word` needs an escape: below 0x20, `"`
/// or `\`. Exact: each test below finds a byte when there is one, and
/// only then.
const fn needs_escape(word: u64) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES * 0x80;
    const QUOTE: u64 = ONES * b'"' as u64;
    const BACKSLASH: u64 = ONES * b'\\' as u64;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = (word ^ QUOTE).wrapping_sub(ONES) & !(word ^ QUOTE);
    let backslash = (word ^ BACKSLASH).wrapping_sub(ONES) & !(word ^ BACKSLASH);
    (below_space | quote | backslash) & HIGH != 0
}

/// Appends `text` as a JSON string, escaped as `serde_json` escapes it.
pub fn string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Eight bytes at a time past the plain stretches (most strings have
    // no escape at all), then byte by byte.
    let mut plain = 0;
    while let Some(chunk) = bytes.get(plain..plain + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if needs_escape(u64::from_le_bytes(word)) {
            break;
        }
        plain += 8;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(plain) {
        let escape = ESCAPE[usize::from(b)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        if escape == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(escape);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `value` as compact JSON, through [`write`] or else `serde_json`: the
/// bytes `serde_json::to_writer` gives (or its error) either way.
pub fn append(out: &mut Vec<u8>, value: &Value) -> Result<(), serde_json::Error> {
    let len = out.len();
    if write(out, value).is_ok() {
        return Ok(());
    }
    out.truncate(len);
    let written = serde_json::to_writer(&mut *out, value);
    if written.is_err() {
        out.truncate(len);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::{append, write, Unsupported};
    use serde_yaml_ng::{Mapping, Value};

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn text(rng: &mut Rng) -> String {
        let pool = [
            'a', 'z', '0', ' ', '"', '\\', '/', '\u{0}', '\u{1}', '\u{8}', '\t', '\n', '\u{b}',
            '\u{c}', '\r', '\u{1f}', '\u{7f}', '\u{80}', 'é', '\u{2028}', '\u{2029}', '<', '>',
            '&', '\u{fffd}', '😀', '~', '\'',
        ];
        (0..rng.below(40))
            .map(|_| pool[usize::try_from(rng.below(pool.len() as u64)).unwrap_or(0)])
            .collect()
    }

    fn tree(rng: &mut Rng, depth: u32) -> Value {
        let pick = if depth == 0 {
            rng.below(5)
        } else {
            rng.below(7)
        };
        match pick {
            0 => Value::Null,
            1 => Value::Bool(rng.below(2) == 0),
            2 => match rng.below(4) {
                0 => Value::Number(rng.next().into()),
                1 => Value::Number(i64::MIN.into()),
                2 => Value::Number((-i64::try_from(rng.below(1 << 40)).unwrap_or(0)).into()),
                _ => Value::Number(rng.below(100).into()),
            },
            3 | 4 => Value::String(text(rng)),
            5 => Value::Sequence((0..rng.below(4)).map(|_| tree(rng, depth - 1)).collect()),
            _ => {
                let mut map = Mapping::new();
                for _ in 0..rng.below(4) {
                    map.insert(Value::String(text(rng)), tree(rng, depth - 1));
                }
                Value::Mapping(map)
            }
        }
    }

    #[test]
    fn the_bytes_are_serde_jsons_over_generated_trees() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..5000 {
            let value = tree(&mut rng, 4);
            let mut ours = Vec::new();
            assert_eq!(write(&mut ours, &value), Ok(()), "case {case}: {value:?}");
            let theirs = serde_json::to_vec(&value).unwrap_or_default();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "case {case}"
            );
        }
    }

    #[test]
    fn every_byte_value_escapes_as_serde_json_escapes_it() {
        for c in (0u32..0x800).filter_map(char::from_u32) {
            let value = Value::String(format!("a{c}b{c}"));
            let mut ours = Vec::new();
            assert_eq!(write(&mut ours, &value), Ok(()));
            assert_eq!(
                ours,
                serde_json::to_vec(&value).unwrap_or_default(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn an_escape_is_found_at_every_place_in_a_long_string() {
        for c in (0u32..0x100).filter_map(char::from_u32) {
            for at in 0..20 {
                let mut text: String = "x".repeat(19);
                text.insert(at, c);
                let value = Value::String(text);
                let mut ours = Vec::new();
                assert_eq!(write(&mut ours, &value), Ok(()));
                let theirs = serde_json::to_vec(&value).unwrap_or_default();
                assert_eq!(ours, theirs, "{c:?} at {at}");
            }
        }
    }

    #[test]
    fn what_it_leaves_to_serde_json_comes_out_as_serde_json_writes_it() {
        let cases = [
            "1.5",
            "[1, 2.0e300, .nan]",
            "{a: {1: x}}",
            "{true: x, null: y}",
            "!tag {a: 1}",
            "{a: [!t x]}",
            "{[1]: x}",
        ];
        for yaml in cases {
            let value: Value = serde_yaml_ng::from_str(yaml).unwrap_or(Value::Null);
            assert_eq!(write(&mut Vec::new(), &value), Err(Unsupported), "{yaml}");
            let mut ours = b"prefix".to_vec();
            let result = append(&mut ours, &value);
            if let Ok(theirs) = serde_json::to_vec(&value) {
                assert!(result.is_ok(), "{yaml}");
                assert_eq!(ours[6..], theirs[..], "{yaml}");
            } else {
                assert!(result.is_err(), "{yaml}");
                assert_eq!(ours, b"prefix", "{yaml}");
            }
        }
    }
}

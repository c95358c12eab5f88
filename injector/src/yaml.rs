//! YAML as Kubernetes reads it, and YAML that Kubernetes reads back as
//! written.
//!
//! kubectl, kustomize and the API server read manifests with
//! `sigs.k8s.io/yaml`, which decodes with go-yaml v2: plain (unquoted)
//! scalars resolve by YAML 1.1 rules, so `no`, `on` and `y` are booleans,
//! `0400` is the octal 256 and `1_000` is 1000. [`load`] reads a document
//! the same way (quoted scalars stay strings; mapping keys become strings
//! as `sigs.k8s.io/yaml` makes them), and [`to_string`] writes a value so
//! that every YAML 1.1 reader (go-yaml v2, `PyYAML`) and every YAML 1.2
//! reader reads back the same types and values: a string whose plain form
//! any of them would resolve to something else is quoted.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_yaml_ng::{Mapping, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

/// Most nodes that aliases may expand a document to (a "billion laughs"
/// document is refused rather than expanded).
pub const MAX_NODES: usize = 1_000_000;

/// Deepest nesting of collections accepted.
pub const MAX_DEPTH: usize = 256;

/// Reads one YAML document as `sigs.k8s.io/yaml` does. `Ok(None)` for a
/// document that is null (`~`, `null`, `--- null`, or no content), which
/// kubectl skips.
pub fn load(text: &str) -> Result<Option<Value>, String> {
    let mut loader = Loader::default();
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0;
    let mut root = None;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| e.to_string())?;
        match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => {}
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(format!(
                        "a second document starts at line {} without a `---` line of its own: \
                         put `---` on a line before it",
                        mark.line()
                    ));
                }
            }
            event => {
                if let Some(value) = loader.event(event)? {
                    root = Some(value);
                }
            }
        }
    }
    Ok(root.filter(|v| !v.is_null()))
}

/// A collection being built.
enum Open {
    Sequence(Vec<Value>, usize),
    /// The mapping, the key read and waiting for its value, the anchor,
    /// and the merges (`<<`) to apply once the mapping is complete.
    Mapping(Mapping, Option<Key>, usize, Vec<Value>),
}

/// A mapping key: a string, or the merge key `<<`.
enum Key {
    Name(String),
    Merge,
}

#[derive(Default)]
struct Loader {
    stack: Vec<Open>,
    anchors: HashMap<usize, (Value, usize)>,
    nodes: usize,
}

impl Loader {
    /// Takes one event; returns the document's root when it is complete.
    fn event(&mut self, event: Event) -> Result<Option<Value>, String> {
        let (value, anchor, size) = match event {
            Event::SequenceStart(anchor, _) => {
                self.push(Open::Sequence(Vec::new(), anchor))?;
                return Ok(None);
            }
            Event::MappingStart(anchor, _) => {
                self.push(Open::Mapping(Mapping::new(), None, anchor, Vec::new()))?;
                return Ok(None);
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Open::Sequence(items, anchor)) => {
                    let size = 1 + items.len();
                    (Value::Sequence(items), anchor, size)
                }
                _ => return Err("unbalanced sequence".to_owned()),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Open::Mapping(mut map, _, anchor, merges)) => {
                    for merge in merges {
                        merge_into(&mut map, merge)?;
                    }
                    let size = 1 + map.len();
                    (Value::Mapping(map), anchor, size)
                }
                _ => return Err("unbalanced mapping".to_owned()),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let merge = style == TScalarStyle::Plain && tag.is_none() && text == "<<";
                if merge && self.awaiting_key() {
                    self.add_key(Key::Merge);
                    return Ok(None);
                }
                (scalar(text, style, tag.as_ref()), anchor, 1)
            }
            Event::Alias(id) => {
                let size = self
                    .anchors
                    .get(&id)
                    .map(|(_, size)| *size)
                    .ok_or_else(|| "an alias names no anchor before it".to_owned())?;
                self.nodes += size;
                if self.nodes > MAX_NODES {
                    return Err(format!(
                        "its aliases expand to more than {MAX_NODES} nodes: no manifest needs \
                         that; write the values out"
                    ));
                }
                let value = self.anchors.get(&id).map(|(v, _)| v.clone());
                (value.unwrap_or_default(), 0, size)
            }
            _ => return Ok(None),
        };
        if anchor != 0 {
            let size = if size > 1 { count(&value) } else { size };
            self.anchors.insert(anchor, (value.clone(), size));
        }
        self.add(value)
    }

    fn push(&mut self, open: Open) -> Result<(), String> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(format!(
                "its collections nest more than {MAX_DEPTH} deep: no manifest needs that"
            ));
        }
        self.stack.push(open);
        Ok(())
    }

    fn awaiting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Open::Mapping(_, None, _, _)))
    }

    fn add_key(&mut self, key: Key) {
        if let Some(Open::Mapping(_, slot, _, _)) = self.stack.last_mut() {
            *slot = Some(key);
        }
    }

    /// Adds a complete value to the collection it is in; returns it when it
    /// is the root.
    fn add(&mut self, value: Value) -> Result<Option<Value>, String> {
        match self.stack.last_mut() {
            None => Ok(Some(value)),
            Some(Open::Sequence(items, _)) => {
                items.push(value);
                Ok(None)
            }
            Some(Open::Mapping(map, slot, _, merges)) => match slot.take() {
                None => {
                    *slot = Some(Key::Name(key_string(&value)?));
                    Ok(None)
                }
                Some(Key::Merge) => {
                    merges.push(value);
                    Ok(None)
                }
                Some(Key::Name(key)) => {
                    if map.contains_key(key.as_str()) {
                        return Err(format!(
                            "the key {key:?} appears twice in one mapping: keep one"
                        ));
                    }
                    map.insert(Value::String(key), value);
                    Ok(None)
                }
            },
        }
    }
}

/// The nodes in a value.
fn count(v: &Value) -> usize {
    match v {
        Value::Sequence(items) => 1 + items.iter().map(count).sum::<usize>(),
        Value::Mapping(m) => 1 + m.iter().map(|(k, v)| count(k) + count(v)).sum::<usize>(),
        Value::Tagged(t) => count(&t.value),
        _ => 1,
    }
}

/// Applies a merge (`<<: *base` or `<<: [*a, *b]`): keys the mapping does
/// not have already are added, earlier sources first.
fn merge_into(map: &mut Mapping, merge: Value) -> Result<(), String> {
    let sources = match merge {
        Value::Sequence(items) => items,
        other => vec![other],
    };
    for source in sources {
        let Value::Mapping(source) = source else {
            return Err("a merge key `<<` must name a mapping or a list of mappings".to_owned());
        };
        for (k, v) in source {
            if !map.contains_key(&k) {
                map.insert(k, v);
            }
        }
    }
    Ok(())
}

/// A mapping key as `sigs.k8s.io/yaml` turns it into a JSON object key.
fn key_string(key: &Value) -> Result<String, String> {
    Ok(match key {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Tagged(t) => return key_string(&t.value),
        Value::Sequence(_) | Value::Mapping(_) => {
            return Err("a mapping key is itself a list or a mapping: use a string".to_owned())
        }
    })
}

/// A scalar's value: quoted ones (and `!!str`) are strings, plain ones
/// resolve by go-yaml v2's rules, and other tags are dropped as go-yaml
/// drops them (their text is the string).
fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    let core = tag.and_then(|t| {
        (t.handle == "tag:yaml.org,2002:" || t.handle == "!!").then_some(t.suffix.as_str())
    });
    match (tag, core) {
        (None, _) if style == TScalarStyle::Plain => resolve(&text),
        (Some(_), Some("int" | "float" | "bool" | "null")) => resolve(&text),
        _ => Value::String(text),
    }
}

/// The value go-yaml v2 gives a plain scalar (`resolve.go`), as
/// `sigs.k8s.io/yaml` hands it on: timestamps stay strings.
#[must_use]
pub fn resolve(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return Value::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return Value::Bool(false)
        }
        ".nan" | ".NaN" | ".NAN" => return Value::Number(Number::from(f64::NAN)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Number(Number::from(f64::INFINITY))
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Number(Number::from(f64::NEG_INFINITY)),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if first == b'.' {
        if let Some(f) = go_parse_float(text) {
            return Value::Number(Number::from(f));
        }
    } else if first.is_ascii_digit() || first == b'+' || first == b'-' {
        if is_timestamp(text) {
            return Value::String(text.to_owned());
        }
        let plain = text.replace('_', "");
        if let Some(n) = go_parse_int(&plain) {
            return Value::Number(n);
        }
        if is_yaml_style_float(&plain) {
            if let Some(f) = go_parse_float(&plain) {
                return Value::Number(Number::from(f));
            }
        }
        let (negative, digits) = match plain.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, plain.as_str()),
        };
        if let Some(bits) = digits.strip_prefix("0b") {
            if let Ok(n) = i64::from_str_radix(bits, 2) {
                return Value::Number(Number::from(if negative { -n } else { n }));
            }
        }
    }
    Value::String(text.to_owned())
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint(s, 0, 64)`: a sign,
/// then `0x`, `0o`, `0b`, a leading `0` (octal) or decimal digits.
fn go_parse_int(s: &str) -> Option<Number> {
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(d) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (16, d)
    } else if let Some(d) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (8, d)
    } else if let Some(d) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (2, d)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        // i64::MIN's magnitude is one more than i64::MAX.
        if magnitude <= i64::MAX.unsigned_abs() + 1 {
            return Some(Number::from(0i64.checked_sub_unsigned(magnitude)?));
        }
        return None;
    }
    Some(match i64::try_from(magnitude) {
        Ok(i) => Number::from(i),
        Err(_) => Number::from(magnitude),
    })
}

/// go-yaml v2's `yamlStyleFloat`:
/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat(s, 64)` for the decimal forms go-yaml reaches
/// it with (Go also reads `inf`, `nan` and hex floats, which go-yaml's
/// callers only pass for `.`-led text that Rust reads the same way or not
/// at all).
fn go_parse_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    if body.starts_with("inf") || body.starts_with("nan") {
        return None;
    }
    s.parse::<f64>().ok()
}

/// go-yaml v2's `parseTimestamp`: `YYYY-M-D`, optionally followed by a
/// time; such a plain scalar is handed on as a string.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    // Date: 4 digits, '-', 1-2 digits, '-', 1-2 digits.
    let mut i = 5;
    for part in 0..2 {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if !(1..=2).contains(&(i - start)) {
            return false;
        }
        if part == 0 {
            if b.get(i) != Some(&b'-') {
                return false;
            }
            i += 1;
        }
    }
    if i == b.len() {
        return true;
    }
    // A time follows: 'T', 't' or ' ', then H:M:S with an optional
    // fraction and zone; read loosely, since such text is a string either
    // way unless it is a number, which it cannot be after a date.
    matches!(b[i], b'T' | b't' | b' ')
        && s[i + 1..]
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ':' | '.' | 'Z' | '+' | '-' | ' '))
}

/// Writes a value as a block-style YAML document, two-space indented, as
/// `serde_yaml_ng` lays it out, but with YAML 1.1-safe scalars.
#[must_use]
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Mapping(m) if !m.is_empty() => write_mapping(&mut out, m, 0),
        Value::Sequence(s) if !s.is_empty() => write_sequence(&mut out, s, 0),
        Value::Tagged(t) => return to_string(&t.value),
        other => {
            write_scalar(&mut out, other, 0);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untag(&t.value),
        other => other,
    }
}

fn write_mapping(out: &mut String, map: &Mapping, level: usize) {
    let mut first = true;
    for (k, v) in map {
        if !first {
            indent(out, level);
        }
        first = false;
        let key = match untag(k) {
            Value::String(s) => s.clone(),
            other => key_string(other).unwrap_or_default(),
        };
        if key.chars().count() > 1000 {
            // An implicit key is at most 1024 characters: say it explicitly.
            out.push_str("? ");
            write_key(out, &key);
            out.push('\n');
            indent(out, level);
            out.push(':');
        } else {
            write_key(out, &key);
            out.push(':');
        }
        write_value_after(out, v, level, true);
    }
}

fn write_sequence(out: &mut String, items: &[Value], level: usize) {
    let mut first = true;
    for v in items {
        if !first {
            indent(out, level);
        }
        first = false;
        out.push('-');
        write_value_after(out, v, level, false);
    }
}

/// Writes `v` after `key:` or `-` at `level`.
fn write_value_after(out: &mut String, v: &Value, level: usize, in_mapping: bool) {
    match untag(v) {
        Value::Mapping(m) if !m.is_empty() => {
            if in_mapping {
                out.push('\n');
                indent(out, level + 2);
            } else {
                out.push(' ');
            }
            write_mapping(out, m, level + 2);
        }
        Value::Sequence(s) if !s.is_empty() => {
            if in_mapping {
                // A sequence in a mapping stands at the key's indentation.
                out.push('\n');
                indent(out, level);
                write_sequence(out, s, level);
            } else {
                out.push(' ');
                write_sequence(out, s, level + 2);
            }
        }
        other => {
            out.push(' ');
            write_scalar(out, other, level + 2);
            out.push('\n');
        }
    }
}

fn write_scalar(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s, level),
        Value::Mapping(_) => out.push_str("{}"),
        Value::Sequence(_) => out.push_str("[]"),
        Value::Tagged(t) => write_scalar(out, &t.value, level),
    }
}

/// A number that reads back as the same type: a float always has a `.`
/// and a signed exponent, which YAML 1.1 requires.
fn write_number(out: &mut String, n: &Number) {
    if n.is_f64() {
        let f = n.as_f64().unwrap_or_default();
        if f.is_nan() {
            out.push_str(".nan");
        } else if f.is_infinite() {
            out.push_str(if f > 0.0 { ".inf" } else { "-.inf" });
        } else {
            let text = format!("{f:?}");
            let (mantissa, exponent) = match text.split_once('e') {
                Some((m, e)) => (m.to_owned(), Some(e.to_owned())),
                None => (text, None),
            };
            out.push_str(&mantissa);
            if !mantissa.contains('.') {
                out.push_str(".0");
            }
            if let Some(e) = exponent {
                out.push('e');
                if !e.starts_with('-') {
                    out.push('+');
                }
                out.push_str(&e);
            }
        }
    } else {
        let _ = write!(out, "{n}");
    }
}

/// Writes a string plain where every reader reads that plain text back as
/// this string; else as a literal block (several lines), single-quoted or
/// double-quoted.
fn write_string(out: &mut String, s: &str, level: usize) {
    if plain_is_safe(s) {
        out.push_str(s);
    } else if literal_is_safe(s) {
        write_literal(out, s, level);
    } else {
        write_quoted(out, s);
    }
}

/// A key: on one line, plain or quoted.
fn write_key(out: &mut String, s: &str) {
    if plain_is_safe(s) {
        out.push_str(s);
    } else {
        write_quoted(out, s);
    }
}

fn write_quoted(out: &mut String, s: &str) {
    if s.chars().all(|c| is_printable(c) && c != '\n') {
        out.push('\'');
        out.push_str(&s.replace('\'', "''"));
        out.push('\'');
    } else {
        write_double_quoted(out, s);
    }
}

/// Characters YAML lets stand as they are in a scalar.
fn is_printable(c: char) -> bool {
    matches!(c, ' '..='~' | '\u{85}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
        && c != '\u{FEFF}'
}

/// Whether a YAML 1.1 reader (go-yaml v2, `PyYAML`) or a YAML 1.2 one might
/// read this text, unquoted, as anything but this string. Deliberately
/// broad: quoting a string never changes it.
#[must_use]
pub fn may_resolve(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "" | "~"
            | "null"
            | "y"
            | "yes"
            | "n"
            | "no"
            | "true"
            | "false"
            | "on"
            | "off"
            | "<<"
            | "="
            | ".inf"
            | "+.inf"
            | "-.inf"
            | ".nan"
    ) {
        return true;
    }
    // Numbers (decimal, octal, hex, binary, base 60, with `_`) and
    // timestamps start with a digit, or a sign or a dot before a digit,
    // and hold nothing but these characters: `10m` and `16Mi` stay plain.
    let mut chars = s.chars();
    let numeric_start = match chars.next() {
        Some(c) if c.is_ascii_digit() => true,
        Some('+' | '-' | '.') => chars.next().is_some_and(|c| c.is_ascii_digit() || c == '.'),
        _ => false,
    };
    numeric_start
        && s.chars().all(|c| {
            c.is_ascii_hexdigit()
                || matches!(
                    c,
                    'x' | 'X'
                        | 'o'
                        | 'O'
                        | '_'
                        | '.'
                        | ':'
                        | '+'
                        | '-'
                        | 't'
                        | 'T'
                        | 'z'
                        | 'Z'
                        | ' '
                )
        })
}

/// Whether `s` can be written as a plain scalar in block context and read
/// back as itself by every reader.
#[must_use]
pub fn plain_is_safe(s: &str) -> bool {
    if may_resolve(s) || s.starts_with([' ', '\t']) || s.ends_with([' ', '\t', ':']) {
        return false;
    }
    let mut chars = s.chars();
    let first = chars.next().unwrap_or(' ');
    let second = chars.next();
    let indicator = matches!(
        first,
        '?' | ':'
            | ','
            | '['
            | ']'
            | '{'
            | '}'
            | '#'
            | '&'
            | '*'
            | '!'
            | '|'
            | '>'
            | '\''
            | '"'
            | '%'
            | '@'
            | '`'
    ) || (first == '-' && second.is_none_or(|c| c == ' ' || c == '\t'));
    !indicator
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.contains(":\t")
        && !s.contains("\t#")
        && s.chars().all(|c| is_printable(c) && c != '\t')
        && !s.starts_with("---")
        && !s.starts_with("...")
}

/// Whether a multi-line string can be written as a literal block.
fn literal_is_safe(s: &str) -> bool {
    s.contains('\n')
        && s.trim_matches('\n').chars().next().is_some()
        && s.chars()
            .all(|c| c == '\n' || (is_printable(c) && c != '\u{85}'))
        && !s.contains(" \n")
        && !s.ends_with(' ')
        && !s.starts_with('\n')
}

fn write_literal(out: &mut String, s: &str, level: usize) {
    out.push('|');
    let body = s.trim_end_matches('\n');
    if body.starts_with(' ') {
        out.push('2');
    }
    match s.len() - body.len() {
        0 => out.push('-'),
        1 => {}
        _ => out.push('+'),
    }
    for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
        out.push('\n');
        if !line.is_empty() {
            indent(out, level);
            out.push_str(line);
        }
    }
}

fn write_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if is_printable(c) => out.push(c),
            c if u32::from(c) <= 0xFF => {
                let _ = write!(out, "\\x{:02X}", u32::from(c));
            }
            c if u32::from(c) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08X}", u32::from(c));
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::{load, resolve, to_string};
    use serde_yaml_ng::Value;

    fn num(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    #[test]
    fn plain_scalars_resolve_as_go_yaml_v2_resolves_them() {
        let table: &[(&str, Value)] = &[
            ("no", Value::Bool(false)),
            ("Yes", Value::Bool(true)),
            ("ON", Value::Bool(true)),
            ("y", Value::Bool(true)),
            ("n", Value::Bool(false)),
            ("~", Value::Null),
            ("0755", num("493")),
            ("0400", num("256")),
            ("010", num("8")),
            ("0x1F", num("31")),
            ("0o17", num("15")),
            ("0b101", num("5")),
            ("-0b101", num("-5")),
            ("1_000", num("1000")),
            ("+12", num("12")),
            ("-9223372036854775808", num("-9223372036854775808")),
            ("18446744073709551615", num("18446744073709551615")),
            ("08", num("8.0")),
            ("1e3", num("1000.0")),
            ("0.5", num("0.5")),
            (".5", num("0.5")),
            ("2001-12-14", Value::String("2001-12-14".into())),
            ("12:30", Value::String("12:30".into())),
            ("yess", Value::String("yess".into())),
            ("nO", Value::String("nO".into())),
            ("--appendonly", Value::String("--appendonly".into())),
            ("1.2.3", Value::String("1.2.3".into())),
            ("0x", Value::String("0x".into())),
            ("-", Value::String("-".into())),
            (".iNf", Value::String(".iNf".into())),
        ];
        for (text, want) in table {
            assert_eq!(&resolve(text), want, "{text}");
        }
        assert!(resolve(".inf").as_f64().unwrap().is_infinite());
    }

    #[test]
    fn quoted_scalars_stay_strings_and_keys_become_strings() {
        let v = load(
            "a: \"no\"\nb: 'yes'\nc: no\nyes: 1\n1: x\n~: y\nd: !!str 010\ne: !!int \"010\"\n",
        )
        .unwrap()
        .unwrap();
        let want: Value = serde_yaml_ng::from_str(
            "a: 'no'\nb: 'yes'\nc: false\n'true': 1\n'1': x\n'null': true\nd: '010'\ne: 8\n",
        )
        .unwrap();
        assert_eq!(v, want);
    }

    #[test]
    fn null_documents_are_none() {
        for text in ["", "~\n", "--- null\n", "---\n", "# c\n", "--- ~\n...\n"] {
            assert_eq!(load(text).unwrap(), None, "{text:?}");
        }
    }

    #[test]
    fn anchors_aliases_and_merges() {
        let v = load("base: &b {x: 1, z: 2}\nother:\n  <<: *b\n  z: 3\nlist: [*b]\n")
            .unwrap()
            .unwrap();
        let want: Value = serde_yaml_ng::from_str(
            "base: {x: 1, z: 2}\nother: {z: 3, x: 1}\nlist: [{x: 1, z: 2}]\n",
        )
        .unwrap();
        assert_eq!(v, want);
    }

    #[test]
    fn a_billion_laughs_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            let refs = vec![format!("*a{prev}"); 10].join(", ");
            text += &[
                "a",
                &i.to_string(),
                ": &a",
                &i.to_string(),
                " [",
                &refs,
                "]\n",
            ]
            .concat();
        }
        let err = load(&text).unwrap_err();
        assert!(err.contains("aliases expand"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert!(load("a: 1\na: 2\n").unwrap_err().contains("twice"));
    }

    #[test]
    fn strings_that_would_resolve_are_quoted_and_everything_reads_back() {
        let strings = [
            "no",
            "yes",
            "On",
            "y",
            "N",
            "~",
            "null",
            "",
            "0755",
            "0x1F",
            "1_000",
            ".inf",
            "-.Inf",
            "1e3",
            "12:30",
            "2001-12-14",
            "<<",
            "=",
            "- a",
            "a: b",
            "a #b",
            "#c",
            "x:",
            " lead",
            "trail ",
            "tab\there",
            "line\nbreak\n",
            "two\n\n",
            "  indented\nblock",
            "'q'",
            "\"dq\"",
            "nul\0x",
            "bom\u{FEFF}",
            "--appendonly",
            "/etc/creds",
            "a,b",
            "[x]",
            "{y}",
            "@at",
            "%pct",
            "`tick",
            "!bang",
            "&amp",
            "*star",
            "|pipe",
            ">gt",
            "?q",
            "---",
            "...",
            "ünïcödé",
            "crlf\r\n",
            "-",
            "-5",
            "+1",
            ".5",
            "3.0",
            "nO",
            "true",
            "10m",
            "16Mi",
            "nan",
            "NaN",
            "inf",
            "Infinity",
            "-inf",
            "1.2.3",
            "0o17",
            "0b1",
            "1e+3",
            "1.",
            "1:2:3",
            "2001-12-14t21:59:43.10-05:00",
            "2001-12-14 21:59:43.10 -5",
            "+.5",
            "-.inf",
            "0x_1",
        ];
        let mut map = serde_yaml_ng::Mapping::new();
        for (i, s) in strings.iter().enumerate() {
            map.insert(
                Value::String((*s).to_owned()),
                Value::String((*s).to_owned()),
            );
            map.insert(
                Value::String(format!("k{i}")),
                Value::Sequence(vec![Value::String((*s).to_owned())]),
            );
        }
        let value = Value::Mapping(map);
        let text = to_string(&value);
        assert_eq!(load(&text).unwrap().unwrap(), value, "{text}");
        let again: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(again, value, "{text}");
    }

    #[test]
    fn numbers_keep_their_types() {
        let value: Value = serde_yaml_ng::from_str(
            "a: 1\nb: -2\nc: 0.5\nd: 1000.0\ne: 1.0e21\nf: .inf\ng: -.inf\nh: 18446744073709551615\n",
        )
        .unwrap();
        let text = to_string(&value);
        assert!(text.contains("d: 1000.0\n"), "{text}");
        assert!(text.contains("e: 1.0e+21\n"), "{text}");
        assert_eq!(load(&text).unwrap().unwrap(), value, "{text}");
    }

    #[test]
    fn the_layout_is_serde_yaml_ngs() {
        let text = "a:\n  b: 1\n  c:\n  - x\n  - w: 2\n    z: 3\n  - - m\nd: []\ne: {}\nf: |-\n  l1\n  l2\n";
        let value: Value = serde_yaml_ng::from_str(text).unwrap();
        assert_eq!(to_string(&value), text);
        assert_eq!(serde_yaml_ng::to_string(&value).unwrap(), text);
    }
}

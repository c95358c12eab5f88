//! Secret file formats and how each is parsed into a [`Document`].
//!
//! Parse errors never quote the input: they name a line, a column or a byte
//! offset, so a secret cannot leak through a diagnosis.

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

/// A secret's format. `--format auto` is not one: it chooses one of these
/// by a file's extension ([`Format::by_extension`]) or, in safe mode, by
/// sniffing the secret (safe mode's `SecretFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON object; also VSecM's older JSON array of strings, and any
    /// other non-empty JSON value (which has no keys).
    Json,
    /// A YAML document; keys and pointers work as for JSON.
    Yaml,
    /// `KEY=VALUE` lines; `#` comments, blank lines and `export ` are allowed.
    Env,
    /// Any bytes: ready when not empty or whitespace only. Has no keys.
    Raw,
    /// PEM blocks: every certificate parses as X.509 and is valid now, every
    /// private key parses and matches its certificate. Has no keys.
    Pem,
}

impl Format {
    /// The format `--format auto` picks for a file name: `.json`,
    /// `.yaml`/`.yml`, `.env`, `.pem`/`.crt`/`.cer`/`.key`; anything else
    /// is raw.
    #[must_use]
    pub fn by_extension(file: &Path) -> Self {
        match file.extension().and_then(|e| e.to_str()) {
            Some("json") => Self::Json,
            Some("yaml" | "yml") => Self::Yaml,
            Some("env") => Self::Env,
            Some(ext) if super::pem::EXTENSIONS.contains(&ext) => Self::Pem,
            _ => Self::Raw,
        }
    }

    /// Whether documents of this format can carry keys.
    #[must_use]
    pub const fn has_keys(self) -> bool {
        !matches!(self, Self::Raw | Self::Pem)
    }

    /// The name used in messages.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Yaml => "YAML",
            Self::Env => "env",
            Self::Raw => "raw",
            Self::Pem => "PEM",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed secret: the trees in which keys are looked up. A raw secret, or
/// a JSON/YAML scalar, has no trees and so carries no keys. Its `Debug`
/// shows how many trees, never their values.
#[derive(Clone, Default, PartialEq)]
pub struct Document {
    /// The objects that keys are searched in, in order.
    pub roots: Vec<Value>,
    /// The whole value when it is not the single root: a JSON or YAML list
    /// or scalar (see [`Document::tree`]).
    whole: Option<Value>,
}

impl Document {
    /// The whole parsed tree, for `--schema`: the object of a JSON, YAML or
    /// env file, or a JSON or YAML list or scalar. `None` for raw and PEM.
    #[must_use]
    pub fn tree(&self) -> Option<&Value> {
        self.whole.as_ref().or_else(|| self.roots.first())
    }
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Document(<{} trees>)", self.roots.len())
    }
}

/// Why content is not (yet) a valid document. Never carries the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty")]
    Empty,
    #[error("not valid UTF-8 at byte {0}")]
    InvalidUtf8(usize),
    #[error("not valid {format}{}{detail}", at(*line, *column))]
    Syntax {
        format: &'static str,
        /// 1-based; 0 when the parser gave no position.
        line: usize,
        column: usize,
        /// Extra words, already free of input text, starting with "; ".
        detail: String,
    },
    #[error("{format} ends early at line {line} column {column}")]
    Truncated {
        format: &'static str,
        line: usize,
        column: usize,
    },
    #[error("nests deeper than 128 levels")]
    TooDeep,
    #[error("holds more than {limit} {format} values, more than a secret should")]
    TooManyNodes { format: &'static str, limit: usize },
    #[error("expands YAML aliases beyond the parser's limit")]
    TooManyAliases,
    #[error("holds {0}, which carries no secret")]
    NoValue(&'static str),
    #[error("{0}")]
    Pem(super::pem::PemError),
}

/// " at line L column C", or nothing when the position is unknown.
fn at(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" at line {line} column {column}")
    }
}

impl ParseError {
    /// True when the error looks like a writer still at work, so the
    /// diagnosis can say "still being written?".
    #[must_use]
    pub const fn maybe_partial(&self) -> bool {
        match self {
            Self::Pem(err) => err.maybe_partial(),
            _ => matches!(
                self,
                Self::Empty | Self::Truncated { .. } | Self::Syntax { .. }
            ),
        }
    }
}

/// What Vault Agent and consul-template render for a missing value.
pub const NO_VALUE: &str = "<no value>";

/// True when `bytes` are only `<no value>` (and whitespace): a template
/// rendered without its data.
#[must_use]
pub fn is_no_value(bytes: &[u8]) -> bool {
    bytes.trim_ascii() == NO_VALUE.as_bytes()
}

/// Parses `bytes` in `format`.
pub fn parse(format: Format, bytes: &[u8]) -> Result<Document, ParseError> {
    not_blank(bytes)?;
    match format {
        Format::Raw => Ok(Document::default()),
        Format::Pem => super::pem::parse_bundle(bytes)
            .map(|_| Document::default())
            .map_err(ParseError::Pem),
        Format::Json => parse_json(text(bytes)?),
        Format::Yaml => parse_yaml(text(bytes)?),
        Format::Env => parse_env(text(bytes)?),
    }
}

/// Parses PEM bytes as [`parse`] does with [`Format::Pem`], and keeps the
/// parsed bundle, so the TLS checks need not parse the file again.
pub fn parse_pem(bytes: &[u8]) -> Result<super::pem::Bundle, ParseError> {
    not_blank(bytes)?;
    super::pem::parse_bundle(bytes).map_err(ParseError::Pem)
}

/// Refuses empty content and a template rendered without its data.
fn not_blank(bytes: &[u8]) -> Result<(), ParseError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    if is_no_value(bytes) {
        return Err(ParseError::NoValue(
            "only `<no value>`, a template rendered without its data",
        ));
    }
    Ok(())
}

fn text(bytes: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|e| ParseError::InvalidUtf8(e.valid_up_to()))
}

/// The most values accepted in a JSON document: far more than any secret
/// holds, and it keeps the parsed tree of any input up to `--max-file-size`
/// (1 MiB) well inside the gate's memory limit.
pub const MAX_JSON_VALUES: usize = 100_000;

/// Counts the values a JSON text would build (commas and openings outside
/// strings), refusing it before parsing when there are too many.
fn json_bounds(text: &str) -> Result<(), ParseError> {
    let (mut values, mut in_string, mut escaped) = (1usize, false, false);
    for &b in text.as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' | b'[' | b'{' => values += 1,
            _ => {}
        }
        if values > MAX_JSON_VALUES {
            return Err(ParseError::TooManyNodes {
                format: "JSON",
                limit: MAX_JSON_VALUES,
            });
        }
    }
    Ok(())
}

fn parse_json(text: &str) -> Result<Document, ParseError> {
    json_bounds(text)?;
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        // A number beyond f64's range is still valid JSON: if the text is
        // valid when numbers are only skipped, keep those numbers as text.
        Err(e) if e.to_string().starts_with("number out of range") => {
            serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| json_error(&e))?;
            serde_json::from_str(&numbers_as_strings(text)).map_err(|e| json_error(&e))?
        }
        Err(e) => return Err(json_error(&e)),
    };
    tree_document(value)
}

/// Puts every number outside strings in quotes, so a parser that cannot
/// represent it still builds the document. Only used on text already known
/// to be valid JSON.
fn numbers_as_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped, mut in_number) = (false, false, false);
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            out.push(c);
            continue;
        }
        let number_char = if in_number {
            c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')
        } else {
            c.is_ascii_digit() || c == '-'
        };
        match (in_number, number_char) {
            (false, true) => {
                out.push('"');
                in_number = true;
            }
            (true, false) => {
                out.push('"');
                in_number = false;
            }
            _ => {}
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    if in_number {
        out.push('"');
    }
    out
}

/// Maps a `serde_json` error without its message text beyond the fixed
/// description of the syntax problem (which never quotes input).
fn json_error(err: &serde_json::Error) -> ParseError {
    use serde_json::error::Category;
    let (line, column) = (err.line(), err.column());
    match err.classify() {
        Category::Eof => ParseError::Truncated {
            format: "JSON",
            line,
            column,
        },
        _ if err.to_string().starts_with("recursion limit exceeded") => ParseError::TooDeep,
        Category::Syntax => {
            let full = err.to_string();
            let reason = full
                .rsplit_once(" at line ")
                .map_or(full.as_str(), |(head, _)| head);
            // serde_json's syntax reasons are fixed phrases (its ErrorCode
            // Display), such as "expected `,` or `}`"; they never quote input.
            ParseError::Syntax {
                format: "JSON",
                line,
                column,
                detail: format!(": {reason}"),
            }
        }
        Category::Io | Category::Data => ParseError::Syntax {
            format: "JSON",
            line,
            column,
            detail: String::new(),
        },
    }
}

/// Keeps a parser's reason only if it cannot be quoting input: no quotes,
/// backticks or colons (serde's data errors prefix the path of keys, as in
/// `a.b: invalid type`), and short.
fn safe_detail(reason: &str) -> String {
    if reason.is_empty() || reason.contains(['"', '\'', '`', ':']) || reason.len() > 120 {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// The deepest nesting accepted in any format (`serde_json`'s own limit).
const MAX_DEPTH: usize = 128;

/// The most YAML nodes accepted. The YAML parser buffers every event of a
/// document before building it, and some shapes (nested flow collections)
/// take time that grows faster than the input; bounding depth and node
/// count before the parser sees the text keeps any input up to
/// `--max-file-size` cheap. Large documents parse fine as JSON.
pub const MAX_YAML_NODES: usize = 20_000;

/// Refuses YAML that would be costly to parse, by a single linear pass that
/// over-counts: flow brackets and the indicators that start a node, without
/// regard to quoting.
fn yaml_bounds(text: &str) -> Result<(), ParseError> {
    let mut depth = 0usize;
    let mut nodes = 0usize;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let next = bytes.get(i + 1).copied().unwrap_or(b' ');
        match b {
            b'[' | b'{' => {
                depth += 1;
                nodes += 1;
                if depth > MAX_DEPTH {
                    return Err(ParseError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' => nodes += 1,
            b'-' | b':' | b'?' if next.is_ascii_whitespace() => nodes += 1,
            _ => {}
        }
        if nodes > MAX_YAML_NODES {
            return Err(ParseError::TooManyNodes {
                format: "YAML",
                limit: MAX_YAML_NODES,
            });
        }
    }
    Ok(())
}

fn parse_yaml(text: &str) -> Result<Document, ParseError> {
    yaml_bounds(text)?;
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let full = e.to_string();
        let reason = full
            .split_once(" at line ")
            .map_or(full.as_str(), |(head, _)| head);
        if reason.contains("recursion limit") {
            return ParseError::TooDeep;
        }
        if reason.contains("repetition limit") {
            return ParseError::TooManyAliases;
        }
        ParseError::Syntax {
            format: "YAML",
            line,
            column,
            detail: safe_detail(reason),
        }
    })?;
    tree_document(value)
}

/// Turns a JSON or YAML value into the trees keys are looked up in.
fn tree_document(value: Value) -> Result<Document, ParseError> {
    match value {
        Value::Null => Err(ParseError::NoValue("only null")),
        Value::Object(map) if map.is_empty() => Err(ParseError::NoValue("an empty object")),
        Value::Array(items) if items.is_empty() => Err(ParseError::NoValue("an empty list")),
        Value::String(s) if s.trim().is_empty() => Err(ParseError::NoValue("an empty string")),
        object @ Value::Object(_) => Ok(Document {
            roots: vec![object],
            whole: None,
        }),
        // VSecM's older sidecar wrote a JSON array of secret strings; each
        // element that is itself a JSON object is searched for keys.
        Value::Array(items) => Ok(Document {
            roots: items
                .iter()
                .filter_map(|item| match item {
                    Value::String(s) => serde_json::from_str::<Value>(s)
                        .ok()
                        .filter(Value::is_object),
                    Value::Object(_) => Some(item.clone()),
                    _ => None,
                })
                .collect(),
            whole: Some(Value::Array(items)),
        }),
        scalar => Ok(Document {
            roots: Vec::new(),
            whole: Some(scalar),
        }),
    }
}

fn parse_env(text: &str) -> Result<Document, ParseError> {
    let mut map = Map::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let syntax = |column: usize, why: &str| ParseError::Syntax {
            format: "env",
            line: index + 1,
            column,
            detail: format!(": {why}"),
        };
        let Some((name, value)) = line.split_once('=') else {
            return Err(syntax(1, "expected KEY=VALUE"));
        };
        let name = name.trim_end();
        let valid_name = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
        if !valid_name {
            return Err(syntax(
                1,
                "variable name must be letters, digits, `_`, `.` or `-`",
            ));
        }
        let value = unquote(value.trim())
            .ok_or_else(|| syntax(name.len() + 2, "quoted value has no closing quote"))?;
        map.insert(name.to_owned(), Value::String(value));
    }
    if map.is_empty() {
        return Err(ParseError::NoValue("no variables"));
    }
    Ok(Document {
        roots: vec![Value::Object(map)],
        whole: None,
    })
}

/// Strips one level of matching single or double quotes. `None` when a
/// quote is opened and never closed.
fn unquote(value: &str) -> Option<String> {
    for quote in ['"', '\''] {
        if let Some(rest) = value.strip_prefix(quote) {
            let inner = rest.strip_suffix(quote)?;
            return Some(if quote == '"' {
                inner.replace("\\n", "\n").replace("\\\"", "\"")
            } else {
                inner.to_owned()
            });
        }
    }
    Some(value.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{parse, Format, ParseError};
    use serde_json::json;
    use std::path::Path;

    #[test]
    fn auto_resolves_by_extension() {
        let table = [
            ("secrets.json", Format::Json),
            ("a.yaml", Format::Yaml),
            ("a.yml", Format::Yaml),
            (".env", Format::Raw),
            ("app.env", Format::Env),
            ("password", Format::Raw),
            ("tls.crt", Format::Pem),
            ("svid_key.pem", Format::Pem),
            ("a.cer", Format::Pem),
            ("tls.key", Format::Pem),
        ];
        for (name, want) in table {
            assert_eq!(Format::by_extension(Path::new(name)), want, "{name}");
        }
    }

    #[test]
    fn readiness_table() {
        // (format, content, parses)
        let table: &[(Format, &str, bool)] = &[
            (Format::Json, r#"{"a":"b"}"#, true),
            (Format::Json, r#"{"a":"#, false),
            (Format::Json, "", false),
            (Format::Json, "  \n", false),
            (Format::Json, "{}", false),
            (Format::Json, "[]", false),
            (Format::Json, "null", false),
            (Format::Json, r#""""#, false),
            (Format::Json, r#""plain""#, true),
            (Format::Json, "42", true),
            (Format::Json, r#"["{\"a\":1}","x"]"#, true),
            (Format::Json, "{'a':1}", false),
            (Format::Yaml, "a: b\nc: d\n", true),
            (Format::Yaml, "a: [b\n", false),
            (Format::Yaml, "~\n", false),
            (Format::Yaml, "just text", true),
            (Format::Env, "A=1\n# c\n\nexport B='two'\n", true),
            (Format::Env, "# only a comment\n", false),
            (Format::Env, "NOEQUALS\n", false),
            (Format::Env, "A=\"open\n", false),
            (Format::Env, "1A=x\n", false),
            (Format::Raw, "x", true),
            (Format::Raw, " \n\t", false),
            (Format::Raw, "", false),
            (Format::Raw, "<no value>\n", false),
            (Format::Json, "<no value>", false),
            (Format::Yaml, " <no value>", false),
            (Format::Env, "<no value>", false),
            (Format::Raw, "<no value> x", true),
            (Format::Pem, "<no value>", false),
            (Format::Pem, "not pem", false),
        ];
        for (format, content, parses) in table {
            let got = parse(*format, content.as_bytes());
            assert_eq!(got.is_ok(), *parses, "{format} {content:?}: {got:?}");
        }
    }

    #[test]
    fn documents_expose_keys() {
        let doc = parse(Format::Json, br#"["{\"a\":1}","x",{"b":2}]"#).unwrap();
        assert_eq!(doc.roots, vec![json!({"a":1}), json!({"b":2})]);
        let doc = parse(Format::Env, b"export A = \"x y\"\nB=2").unwrap();
        assert_eq!(doc.roots, vec![json!({"A":"x y","B":"2"})]);
        let doc = parse(Format::Yaml, b"db:\n  password: p\n").unwrap();
        assert_eq!(doc.roots, vec![json!({"db":{"password":"p"}})]);
        assert!(parse(Format::Raw, b"\xff\xfe").unwrap().roots.is_empty());
    }

    #[test]
    fn errors_locate_without_quoting_input() {
        let canary = "s3cr3t-canary";
        let inputs: &[(Format, String)] = &[
            (Format::Json, format!(r#"{{"k":"{canary}""#)),
            (Format::Json, format!(r#"{{"k":{canary}}}"#)),
            (Format::Json, format!("{{\"k\":\"{canary}\u{1}\"}}")),
            (Format::Yaml, format!("k: [{canary}\n")),
            (Format::Yaml, format!("{canary}: a\n  - b: [\n")),
            (Format::Yaml, format!("? [{canary}]\n: v\n")),
            (Format::Yaml, format!("password:\n  {canary}: !tag x\n")),
            (Format::Env, format!("{canary}\n")),
            (Format::Env, format!("K=\"{canary}\n")),
        ];
        for (format, input) in inputs {
            let err = parse(*format, input.as_bytes()).unwrap_err();
            let shown = err.to_string();
            assert!(!shown.contains(canary), "{format}: {shown}");
        }
    }

    #[test]
    fn json_with_too_many_values_is_refused_before_parsing() {
        let many = format!("[{}]", vec!["1"; super::MAX_JSON_VALUES + 1].join(","));
        assert_eq!(
            parse(Format::Json, many.as_bytes()),
            Err(ParseError::TooManyNodes {
                format: "JSON",
                limit: super::MAX_JSON_VALUES
            })
        );
        // Commas inside strings are not values.
        let commas = format!(r#"{{"k":"{}"}}"#, ",".repeat(super::MAX_JSON_VALUES * 2));
        assert!(parse(Format::Json, commas.as_bytes()).is_ok());
        let escaped = r#"{"k":"a\",[","v":"x"}"#;
        assert!(parse(Format::Json, escaped.as_bytes()).is_ok());
    }

    #[test]
    fn huge_numbers_are_values_not_torn_writes() {
        let big = "9".repeat(400);
        let text = format!(r#"{{"n":{big},"e":-1.5e999,"t":true,"f":false,"z":null,"s":"1e999"}}"#);
        let doc = parse(Format::Json, text.as_bytes()).unwrap();
        let want = serde_json::json!(
            {"n": big, "e": "-1.5e999", "t": true, "f": false, "z": null, "s": "1e999"}
        );
        assert_eq!(doc.roots, [want]);
        // Still invalid JSON is still invalid.
        assert!(parse(Format::Json, format!(r#"{{"n":{big},}}"#).as_bytes()).is_err());
        assert!(parse(Format::Json, big.as_bytes()).is_ok());
    }

    #[test]
    fn costly_yaml_is_refused_before_the_parser_sees_it() {
        let deep = "a: ".to_owned() + &"{b: ".repeat(50_000) + &"}".repeat(50_000);
        assert_eq!(
            parse(Format::Yaml, deep.as_bytes()),
            Err(ParseError::TooDeep)
        );
        let nested = "[".repeat(1 << 20);
        assert_eq!(
            parse(Format::Yaml, nested.as_bytes()),
            Err(ParseError::TooDeep)
        );
        let list = "- x\n".repeat(super::MAX_YAML_NODES + 1);
        assert_eq!(
            parse(Format::Yaml, list.as_bytes()),
            Err(ParseError::TooManyNodes {
                format: "YAML",
                limit: super::MAX_YAML_NODES
            })
        );
        let laughs = (1..10).fold("a: &a [x,x,x,x,x,x,x,x,x]\n".to_owned(), |doc, i| {
            let refs = vec![
                format!(
                    "*{}",
                    if i == 1 {
                        "a".to_owned()
                    } else {
                        format!("n{}", i - 1)
                    }
                );
                9
            ];
            doc + &format!("n{i}: &n{i} [{}]\n", refs.join(","))
        });
        assert_eq!(
            parse(Format::Yaml, laughs.as_bytes()),
            Err(ParseError::TooManyAliases)
        );
        // Within the bounds, a long list is fine.
        let list = "- x\n".repeat(super::MAX_YAML_NODES / 2);
        assert!(parse(Format::Yaml, list.as_bytes()).is_ok());
    }

    #[test]
    fn truncation_and_depth_are_named() {
        let err = parse(Format::Json, br#"{"user":"admin""#).unwrap_err();
        assert!(
            matches!(err, ParseError::Truncated { line: 1, .. }),
            "{err}"
        );
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(
            parse(Format::Json, deep.as_bytes()),
            Err(ParseError::TooDeep)
        );
        assert_eq!(
            parse(Format::Json, b"{\"a\":\"\xff\"}"),
            Err(ParseError::InvalidUtf8(6))
        );
    }
}

//! `--schema`: what a valid secret looks like, as a JSON Schema.
//!
//! A schema is one file, read and compiled once at start ([`Schema::load`]).
//! It validates the parsed tree of a JSON, YAML or env file (an env file is
//! an object of strings) after the parse and the required-key check, in the
//! same scan and against the same version of the file.
//!
//! Violations are reported as `/json/pointer: <what the keyword wants>`
//! ([`Violation`]). The message is built from the instance path and the
//! keyword's kind, never from the crate's own `Display`, which quotes the
//! value: a schema violation never shows the secret.
//!
//! What a hostile schema or input can cost is bounded here:
//! - the schema file is at most [`MAX_SCHEMA_SIZE`] bytes and nests at
//!   most 128 levels (`serde_json`'s limit);
//! - `pattern` and `patternProperties` run on the linear-time `regex`
//!   engine (no backtracking, so no catastrophic regex), with a cap on the
//!   compiled size ([`REGEX_SIZE_LIMIT`]); lookaround and backreferences
//!   are refused at start;
//! - `$ref` resolves only inside the schema file: no network, no other
//!   file ([`jsonschema::ValidationOptions::offline`]); a schema holds at
//!   most [`MAX_REFS`] of them and [`MAX_SCHEMA_NODES`] nodes, since each
//!   `$ref` followed per value multiplies what a check costs;
//! - the instance is a parsed secret, already bounded by `--max-file-size`,
//!   the parsers' depth limit (128) and value counts;
//! - at most [`MAX_VIOLATIONS`] violations are reported per file.

use std::fmt;
use std::path::{Path, PathBuf};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{PatternOptions, ValidationError, Validator};
use serde_json::Value;

use crate::problem::{Kind, Problem};

/// The largest schema file read.
pub const MAX_SCHEMA_SIZE: u64 = 1 << 20;

/// The largest compiled size of one `pattern` (bytes, approximately).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The most violations reported for one file; the rest are counted.
pub const MAX_VIOLATIONS: usize = 20;

/// The most `$ref`s a schema may hold. Every value of a document can be
/// checked through a chain of them, so their number multiplies the cost
/// of a check (a chain of 1,000 over 20,000 values costs over half a
/// second of CPU); a secret's schema needs few.
pub const MAX_REFS: usize = 64;

/// The most nodes (objects, arrays and scalars) a schema may hold.
pub const MAX_SCHEMA_NODES: usize = 10_000;

/// A compiled schema and the path it was read from.
pub struct Schema {
    path: PathBuf,
    validator: Validator,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// One way a document breaks a schema: where, which keyword, and what the
/// keyword wants, in words free of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// RFC 6901 JSON Pointer into the document; empty for the whole
    /// document.
    pub pointer: String,
    /// The schema keyword that failed (`type`, `minLength`, ...).
    pub keyword: String,
    /// What the keyword wants, e.g. "must be an integer".
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "(top level): {}", self.message)
        } else {
            write!(f, "{}: {}", self.pointer, self.message)
        }
    }
}

/// The outcome of validating one document.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The first [`MAX_VIOLATIONS`] violations, in the validator's order.
    pub violations: Vec<Violation>,
    /// How many more there were.
    pub more: usize,
}

impl Schema {
    /// Reads and compiles the schema at `path` (JSON, or YAML by a `.yaml`
    /// or `.yml` extension). The error says what is wrong and what to do;
    /// the gate exits 2 with it.
    pub fn load(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let bytes = read_schema(path)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| format!("schema {shown} is not UTF-8 (at byte {})", e.valid_up_to()))?;
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        let value: Value = if yaml {
            serde_yaml_ng::from_str(text)
                .map_err(|e| format!("schema {shown} is not valid YAML: {e}"))?
        } else {
            serde_json::from_str(text)
                .map_err(|e| format!("schema {shown} is not valid JSON: {e}"))?
        };
        Self::compile(path, &value)
    }

    /// Compiles an already-parsed schema; `path` names it in messages.
    pub fn compile(path: &Path, value: &Value) -> Result<Self, String> {
        let shown = path.display();
        if !matches!(value, Value::Object(_) | Value::Bool(_)) {
            return Err(format!(
                "schema {shown} is not a JSON Schema: it must be an object (or true/false)"
            ));
        }
        let (nodes, refs) = count(value);
        if nodes > MAX_SCHEMA_NODES {
            return Err(format!(
                "schema {shown} has {nodes} nodes, more than the {MAX_SCHEMA_NODES} a secret's \
                 schema needs; split it or simplify it"
            ));
        }
        if refs > MAX_REFS {
            return Err(format!(
                "schema {shown} has {refs} $refs, more than {MAX_REFS}: each can be followed for \
                 every value of a document, so their number bounds what a check costs; inline \
                 the referenced parts or share fewer of them"
            ));
        }
        let validator = jsonschema::options()
            .offline()
            .should_validate_formats(true)
            .with_pattern_options(
                PatternOptions::regex()
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT),
            )
            .build(value)
            .map_err(|err| compile_error(path, &err))?;
        Ok(Self {
            path: path.to_path_buf(),
            validator,
        })
    }

    /// The path the schema was read from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Validates `tree` and says what is wrong as the gate reports it,
    /// about `subject` (a file name, or `Safe`): a problem per violation,
    /// named by JSON Pointer and keyword, and one that counts the rest.
    #[must_use]
    pub fn problems(&self, subject: &str, tree: &Value) -> Vec<Problem> {
        let verdict = self.validate(tree);
        let mut problems: Vec<Problem> = verdict
            .violations
            .iter()
            .map(|v| {
                Problem::new(subject, Kind::Schema, v.to_string())
                    .about(format!("{} {}", v.pointer, v.keyword))
            })
            .collect();
        if verdict.more > 0 {
            problems.push(
                Problem::new(
                    subject,
                    Kind::Schema,
                    format!(
                        "and {} more violations of the schema {}",
                        verdict.more,
                        self.path.display()
                    ),
                )
                .about("more"),
            );
        }
        problems
    }

    /// Validates `value`; an empty verdict means it passes.
    #[must_use]
    pub fn validate(&self, value: &Value) -> Verdict {
        let mut verdict = Verdict::default();
        for error in self.validator.iter_errors(value) {
            if verdict.violations.len() < MAX_VIOLATIONS {
                verdict.violations.push(violation(&error));
            } else {
                verdict.more += 1;
            }
        }
        verdict
    }
}

/// The nodes of a schema, and how many of them are `$ref` members. The
/// schema nests at most 128 levels (`serde_json`'s limit), so the
/// recursion is bounded.
fn count(value: &Value) -> (usize, usize) {
    match value {
        Value::Object(map) => map.iter().fold((1, 0), |(nodes, refs), (key, v)| {
            let (n, r) = count(v);
            (nodes + n, refs + r + usize::from(key == "$ref"))
        }),
        Value::Array(items) => items.iter().fold((1, 0), |(nodes, refs), v| {
            let (n, r) = count(v);
            (nodes + n, refs + r)
        }),
        _ => (1, 0),
    }
}

/// Reads at most [`MAX_SCHEMA_SIZE`] bytes of the schema file.
fn read_schema(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| {
        format!(
            "--schema {shown} cannot be read: {}; give the path of a JSON Schema file \
             (usually a ConfigMap mounted outside the secret volume)",
            io_reason(&e)
        )
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_SCHEMA_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("--schema {shown} cannot be read: {}", io_reason(&e)))?;
    if bytes.len() as u64 > MAX_SCHEMA_SIZE {
        return Err(format!(
            "schema {shown} is larger than {} KiB, more than a secret's schema needs",
            MAX_SCHEMA_SIZE >> 10
        ));
    }
    Ok(bytes)
}

fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_owned()
}

/// Why a schema does not compile, with the place in the schema. The
/// schema is configuration, not a secret, so the crate's words may show.
fn compile_error(path: &Path, err: &ValidationError<'_>) -> String {
    let shown = path.display();
    let at = match err.instance_path().as_str() {
        "" => String::new(),
        place => format!(" at {place}"),
    };
    let in_pattern = err.instance_path().as_str().contains("attern");
    let hint = match err.kind() {
        ValidationErrorKind::Referencing(_) => {
            "; $ref may only point inside the schema file (e.g. #/$defs/name): \
             no network and no other file"
        }
        ValidationErrorKind::Pattern { .. }
        | ValidationErrorKind::RegexEngineFailure { .. }
        | ValidationErrorKind::Format { .. }
            if in_pattern =>
        {
            "; patterns use the linear-time regex syntax: no lookaround or backreferences, \
             and a compiled size under 1 MiB"
        }
        _ => "",
    };
    let mut why = err.to_string();
    if why.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|&i| why.is_char_boundary(i))
            .unwrap_or(0);
        why.truncate(cut);
        why.push('…');
    }
    format!("schema {shown} does not compile{at}: {why}{hint}")
}

/// The violation of one error, from its instance path and kind only.
fn violation(err: &ValidationError<'_>) -> Violation {
    let kind = err.kind();
    Violation {
        pointer: err.instance_path().as_str().to_owned(),
        keyword: kind.keyword().to_owned(),
        message: message(kind),
    }
}

/// What the keyword wants, in words that never include the value. Limits
/// and names come from the schema (configuration), never from the document,
/// except object member names, which the gate names anyway.
fn message(kind: &ValidationErrorKind) -> String {
    use ValidationErrorKind as K;
    let plural = |n: u64, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    match kind {
        K::Type { kind } => match kind {
            TypeKind::Single(t) => format!("must be {}", article(t.as_str())),
            TypeKind::Multiple(set) => {
                let names: Vec<&str> = set.iter().map(jsonschema::JsonType::as_str).collect();
                format!("must be one of the types {}", names.join(", "))
            }
        },
        K::Required { property } => match property.as_str() {
            Some(name) => format!("required key {name:?} is missing"),
            None => "a required key is missing".to_owned(),
        },
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            format!(
                "has keys the schema does not allow: {}",
                names_list(unexpected)
            )
        }
        K::AdditionalItems { limit } => {
            format!(
                "must have at most {}",
                plural(*limit as u64, "item", "items")
            )
        }
        K::UnevaluatedItems { .. } => "has items the schema does not allow".to_owned(),
        K::MinLength { limit } => format!(
            "must be at least {} long",
            plural(*limit, "character", "characters")
        ),
        K::MaxLength { limit } => format!(
            "must be at most {} long",
            plural(*limit, "character", "characters")
        ),
        K::MinItems { limit } => format!("must have at least {}", plural(*limit, "item", "items")),
        K::MaxItems { limit } => format!("must have at most {}", plural(*limit, "item", "items")),
        K::MinProperties { limit } => {
            format!("must have at least {}", plural(*limit, "key", "keys"))
        }
        K::MaxProperties { limit } => {
            format!("must have at most {}", plural(*limit, "key", "keys"))
        }
        K::Minimum { limit } => format!("must be at least {limit}"),
        K::Maximum { limit } => format!("must be at most {limit}"),
        K::ExclusiveMinimum { limit } => format!("must be greater than {limit}"),
        K::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        K::MultipleOf { multiple_of } => format!("must be a multiple of {multiple_of}"),
        K::Pattern { pattern } => format!("must match the pattern {pattern}"),
        K::BacktrackLimitExceeded { .. } | K::RegexEngineFailure { .. } => {
            "could not be matched against the schema's pattern (the regex engine gave up)"
                .to_owned()
        }
        K::Format { format } => format!("must be a valid {format} (format)"),
        K::Enum { options } => match options.as_array() {
            Some(list) => format!(
                "must be one of the {} values the schema lists (enum)",
                list.len()
            ),
            None => "must be one of the values the schema lists (enum)".to_owned(),
        },
        // The expected value may itself be sensitive: never shown.
        K::Constant { .. } => "must be the value the schema fixes (const)".to_owned(),
        K::Contains => "must contain an item the schema's `contains` accepts".to_owned(),
        K::UniqueItems => "must not have duplicate items".to_owned(),
        K::AnyOf { .. } => "matches none of the `anyOf` alternatives".to_owned(),
        K::OneOfNotValid { .. } => "matches none of the `oneOf` alternatives".to_owned(),
        K::OneOfMultipleValid { .. } => {
            "matches more than one of the `oneOf` alternatives (exactly one must match)".to_owned()
        }
        K::Not { .. } => "matches the schema under `not`, which it must not".to_owned(),
        K::FalseSchema => "is not allowed here (the schema is `false`)".to_owned(),
        K::PropertyNames { .. } => {
            "has a key whose name the schema's `propertyNames` refuses".to_owned()
        }
        K::ContentEncoding { content_encoding } => {
            format!("must be valid {content_encoding} (contentEncoding)")
        }
        K::FromUtf8 { .. } => "must decode to UTF-8 text (contentEncoding)".to_owned(),
        K::ContentMediaType { content_media_type } => {
            format!("must be valid {content_media_type} (contentMediaType)")
        }
        K::Custom { keyword, .. } => format!("fails the schema's {keyword:?} keyword"),
        K::Referencing(_) => {
            "could not be checked: a $ref of the schema does not resolve".to_owned()
        }
    }
}

/// "an integer", "a string".
fn article(name: &str) -> String {
    let an = name.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {name}", if an { "an" } else { "a" })
}

/// Member names, quoted, at most five of them.
fn names_list(names: &[String]) -> String {
    let mut shown: Vec<String> = names.iter().take(5).map(|n| format!("{n:?}")).collect();
    if names.len() > 5 {
        shown.push(format!("and {} more", names.len() - 5));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Schema;
    use serde_json::json;
    use std::path::Path;

    const CANARY: &str = "CANARY7f3Q9zXk2VpL";

    fn schema(value: &serde_json::Value) -> Result<Schema, String> {
        Schema::compile(Path::new("s.json"), value)
    }

    fn shown(s: &Schema, doc: &serde_json::Value) -> Vec<String> {
        s.validate(doc)
            .violations
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn violations_name_the_pointer_and_keyword_never_the_value() {
        let s = schema(&json!({
            "type": "object",
            "required": ["password", "db"],
            "properties": {
                "db": {
                    "type": "object",
                    "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}}
                },
                "password": {"type": "string", "minLength": 32, "pattern": "^[a-z]+$"},
                "url": {"type": "string", "format": "uri"},
                "mode": {"enum": ["a", "b"]},
                "pin": {"const": "expected-secret"},
                "tags": {"type": "array", "uniqueItems": true}
            },
            "oneOf": [{"required": ["user"]}, {"required": ["token"]}],
            "additionalProperties": {"type": "string"}
        }))
        .unwrap();
        let doc = json!({
            "db": {"port": CANARY},
            "password": CANARY,
            "url": CANARY,
            "mode": CANARY,
            "pin": CANARY,
            "tags": [CANARY, CANARY],
            "extra": [CANARY],
        });
        let got = shown(&s, &doc);
        let want = [
            "(top level): matches none of the `oneOf` alternatives",
            "/db/port: must be an integer",
            "/extra: must be a string",
            "/mode: must be one of the 2 values the schema lists (enum)",
            "/password: must be at least 32 characters long",
            "/password: must match the pattern ^[a-z]+$",
            "/pin: must be the value the schema fixes (const)",
            "/tags: must not have duplicate items",
            "/url: must be a valid uri (format)",
        ];
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, want, "{got:#?}");
        for line in &got {
            assert!(!line.contains("CANARY"), "{line}");
        }
        assert!(shown(
            &s,
            &json!({"db": {}, "password": "a".repeat(32), "user": "u"})
        )
        .is_empty());
    }

    #[test]
    fn at_most_a_bounded_number_of_violations_per_file() {
        let s = schema(&json!({"additionalProperties": {"type": "integer"}})).unwrap();
        let doc: serde_json::Map<String, serde_json::Value> =
            (0..100).map(|i| (format!("k{i}"), json!("x"))).collect();
        let verdict = s.validate(&serde_json::Value::Object(doc));
        assert_eq!(verdict.violations.len(), super::MAX_VIOLATIONS);
        assert_eq!(verdict.more, 100 - super::MAX_VIOLATIONS);
    }

    #[test]
    fn schemas_that_reach_outside_or_do_not_compile_are_refused() {
        let table = [
            (
                json!({"$ref": "https://example.com/s.json"}),
                "$ref may only point inside",
            ),
            (json!({"$ref": "other.json"}), "$ref may only point inside"),
            (
                json!({"$ref": "file:///etc/passwd"}),
                "$ref may only point inside",
            ),
            (json!({"$ref": "#/$defs/missing"}), "does not compile"),
            (json!({"pattern": "(?=a)b"}), "linear-time regex"),
            (json!({"pattern": "(a)\\1"}), "linear-time regex"),
            (json!({"pattern": "(\\w{100}){1000}"}), "linear-time regex"),
            (json!({"type": "integr"}), "does not compile"),
            (json!([1]), "must be an object"),
            (
                json!({"allOf": vec![json!({"$ref": "#/$defs/a"}); 65], "$defs": {"a": true}}),
                "65 $refs, more than 64",
            ),
            (
                json!({"enum": vec![json!(1); 10_001]}),
                "more than the 10000 a secret's schema needs",
            ),
        ];
        for (value, want) in table {
            let err = schema(&value).unwrap_err();
            assert!(err.contains(want), "{value}: {err}");
        }
        assert!(schema(&json!({"$defs": {"a": {"type": "string"}}, "$ref": "#/$defs/a"})).is_ok());
    }

    #[test]
    fn cyclic_and_recursive_refs_terminate() {
        // A legitimate recursive schema: bounded by the document's depth.
        let tree = schema(&json!({
            "type": "object",
            "additionalProperties": {"$ref": "#"}
        }))
        .unwrap();
        let mut deep = json!({});
        for _ in 0..120 {
            deep = json!({ "a": deep });
        }
        assert!(tree.validate(&deep).violations.is_empty());
        // A $ref cycle that never descends into the document.
        for cyclic in [
            json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
            json!({"$ref": "#"}),
        ] {
            if let Ok(s) = schema(&cyclic) {
                let _ = s.validate(&json!({"a": 1}));
            }
        }
    }
}

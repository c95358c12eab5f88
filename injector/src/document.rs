//! Input and output documents. Multi-document YAML is split on its `---`
//! lines so that each document keeps its original text: a document the
//! core leaves alone is written back byte for byte, and only an edited one
//! is emitted from its value tree.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

/// Largest input (one file, or stdin) read, in bytes.
pub const MAX_INPUT: u64 = 64 << 20;
/// Largest single document: the API server refuses requests over 3 MiB,
/// so no real object is bigger.
pub const MAX_DOCUMENT: usize = 3 << 20;

/// How a document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

/// One input: a file, or stdin.
#[derive(Debug)]
pub struct Input {
    /// The path as given, or `stdin`.
    pub name: String,
    pub text: String,
    pub format: Format,
}

/// Bad input: where, and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: String,
    pub index: Option<usize>,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}: document {i}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// One document of an input.
#[derive(Debug, Clone)]
pub struct Document {
    /// Its index in its input, from 0.
    pub index: usize,
    /// Its original text, including its `---` line if it had one.
    pub text: String,
    /// Its value; `None` for a document with no content (only comments).
    pub value: Option<Value>,
    pub format: Format,
}

impl Document {
    /// Whether the original text carried comments (lost when the document
    /// is edited; see docs/injection.md).
    #[must_use]
    pub fn has_comments(&self) -> bool {
        self.format == Format::Yaml
            && self.text.lines().any(|l| {
                let t = l.trim_start();
                t.starts_with('#') || l.contains(" #")
            })
    }

    /// The `---` line that opened the document, if any.
    fn separator(&self) -> Option<&str> {
        let first = self.text.lines().next()?;
        is_separator(first).then_some("---\n")
    }
}

fn is_separator(line: &str) -> bool {
    let line = line.trim_end_matches('\r');
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

/// Reads `path` (`-` for stdin): a file, or every `.yaml`, `.yml` and
/// `.json` file under a directory, recursively, in name order.
pub fn read(path: &Path) -> Result<Vec<Input>, InputError> {
    if path.as_os_str() == "-" {
        let text = read_limited(std::io::stdin().lock(), "stdin")?;
        let format = if text.trim_start().starts_with(['{', '[']) {
            Format::Json
        } else {
            Format::Yaml
        };
        return Ok(vec![Input {
            name: "stdin".to_owned(),
            text,
            format,
        }]);
    }
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| InputError {
        file: name.clone(),
        index: None,
        message: format!("cannot read it ({e}): check the path"),
    })?;
    if meta.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut files, 0)?;
        files.sort();
        return files.iter().map(|f| read_file(f)).collect();
    }
    Ok(vec![read_file(path)?])
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<(), InputError> {
    let err = |e: std::io::Error| InputError {
        file: dir.display().to_string(),
        index: None,
        message: format!("cannot list the directory ({e})"),
    };
    if depth > 64 {
        return Err(InputError {
            file: dir.display().to_string(),
            index: None,
            message: "directories nest more than 64 deep (a symlink loop?): give a shallower path"
                .to_owned(),
        });
    }
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if path.is_dir() {
            walk(&path, out, depth + 1)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Input, InputError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| InputError {
        file: name.clone(),
        index: None,
        message: format!("cannot open it ({e}): check the path and its permissions"),
    })?;
    let text = read_limited(file, &name)?;
    let format = if path.extension().is_some_and(|e| e == "json") {
        Format::Json
    } else {
        Format::Yaml
    };
    Ok(Input { name, text, format })
}

fn read_limited(r: impl Read, name: &str) -> Result<String, InputError> {
    let mut bytes = Vec::new();
    r.take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| InputError {
            file: name.to_owned(),
            index: None,
            message: format!("cannot read it ({e})"),
        })?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(InputError {
            file: name.to_owned(),
            index: None,
            message: format!(
                "it is larger than {} MiB: split it into smaller files",
                MAX_INPUT >> 20
            ),
        });
    }
    String::from_utf8(bytes).map_err(|e| InputError {
        file: name.to_owned(),
        index: None,
        message: format!(
            "it is not UTF-8 text (invalid byte at offset {}): give a YAML or JSON manifest",
            e.utf8_error().valid_up_to()
        ),
    })
}

/// Splits an input into its documents, each parsed.
pub fn documents(input: &Input) -> Result<Vec<Document>, InputError> {
    match input.format {
        Format::Yaml => split_yaml(&input.text)
            .into_iter()
            .enumerate()
            .map(|(index, text)| parse_yaml(&input.name, index, text))
            .collect(),
        Format::Json => json_documents(input),
    }
}

/// The documents of a YAML stream, as text: each piece starts at a `---`
/// line (except the first) and the pieces concatenate to the input.
#[must_use]
pub fn split_yaml(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset > 0 && is_separator(line.trim_end_matches('\n')) {
            pieces.push(&text[start..offset]);
            start = offset;
        }
        offset += line.len();
    }
    if start < text.len() || pieces.is_empty() {
        pieces.push(&text[start..]);
    }
    pieces
}

fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        let marker = is_separator(l) && l.trim_start_matches('-').trim().starts_with('#');
        !(t.is_empty() || t.starts_with('#') || marker || t == "---" || t == "...")
    })
}

fn parse_yaml(file: &str, index: usize, text: &str) -> Result<Document, InputError> {
    let err = |message: String| InputError {
        file: file.to_owned(),
        index: Some(index),
        message,
    };
    if text.len() > MAX_DOCUMENT {
        return Err(err(format!(
            "it is {:.1} MiB, over the {} MiB an object can be (the API server's limit): split it",
            mib(text.len()),
            MAX_DOCUMENT >> 20
        )));
    }
    if let Some(line) = too_deep(text) {
        return Err(err(format!(
            "its [ ] and {{ }} collections nest more than {MAX_FLOW_DEPTH} deep (line {line}): no \
             manifest needs that; fix the document"
        )));
    }
    let value = if has_content(text) {
        Some(
            serde_yaml_ng::from_str::<Value>(text)
                .map_err(|e| err(format!("not valid YAML ({e}): fix the document")))?,
        )
    } else {
        None
    };
    Ok(Document {
        index,
        text: text.to_owned(),
        value,
        format: Format::Yaml,
    })
}

/// Deepest nesting of flow collections (`[`, `{`) accepted. The YAML
/// parser slows down badly on pathological nesting before its own
/// recursion limit applies, so it is refused up front.
pub const MAX_FLOW_DEPTH: usize = 128;

/// The line where flow collections nest deeper than [`MAX_FLOW_DEPTH`],
/// skipping quoted strings and comments (a plain scalar holding brackets
/// may count, which only refuses absurd input).
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (n, line) in text.lines().enumerate() {
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') if prev.is_whitespace() => break,
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Some(n + 1);
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
    }
    None
}

#[expect(clippy::cast_precision_loss, reason = "a size in a message")]
fn mib(n: usize) -> f64 {
    n as f64 / f64::from(1 << 20)
}

fn json_documents(input: &Input) -> Result<Vec<Document>, InputError> {
    let mut docs = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(&input.text).into_iter::<Value>();
    let mut start = 0;
    loop {
        let index = docs.len();
        match stream.next() {
            None => break,
            Some(Ok(value)) => {
                let end = stream.byte_offset();
                let text = &input.text[start..end];
                if text.len() > MAX_DOCUMENT {
                    return Err(InputError {
                        file: input.name.clone(),
                        index: Some(index),
                        message: format!(
                            "it is {:.1} MiB, over the {} MiB an object can be (the API server's limit): split it",
                            mib(text.len()),
                            MAX_DOCUMENT >> 20
                        ),
                    });
                }
                docs.push(Document {
                    index,
                    text: text.to_owned(),
                    value: Some(value),
                    format: Format::Json,
                });
                start = end;
            }
            Some(Err(e)) => {
                return Err(InputError {
                    file: input.name.clone(),
                    index: Some(index),
                    message: format!("not valid JSON ({e}): fix the document"),
                })
            }
        }
    }
    // Whatever follows the last value (a newline) belongs to it.
    if let Some(last) = docs.last_mut() {
        last.text.push_str(&input.text[start..]);
    }
    Ok(docs)
}

/// Emits an edited value as a document of `format`.
pub fn emit(value: &Value, format: Format) -> Result<String, String> {
    match format {
        Format::Yaml => serde_yaml_ng::to_string(value).map_err(|e| e.to_string()),
        Format::Json => serde_json::to_string_pretty(value)
            .map(|mut t| {
                t.push('\n');
                t
            })
            .map_err(|e| e.to_string()),
    }
}

/// Assembles the output stream.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
    /// `None`: each document keeps its input's format.
    format: Option<Format>,
}

impl Writer {
    #[must_use]
    pub fn new(format: Option<Format>) -> Self {
        Self {
            out: String::new(),
            format,
        }
    }

    /// Writes one document: its original text if it was not edited (and
    /// its format is the output's, or the output is YAML, of which JSON is
    /// a part), else the emitted value.
    pub fn push(&mut self, doc: &Document, edited: Option<&Value>) -> Result<(), String> {
        let format = self.format.unwrap_or(doc.format);
        let verbatim = edited.is_none() && (doc.format == format || format == Format::Yaml);
        let text: std::borrow::Cow<'_, str> = if verbatim {
            std::borrow::Cow::Borrowed(&doc.text)
        } else {
            match edited.or(doc.value.as_ref()) {
                None => return Ok(()),
                Some(v) => std::borrow::Cow::Owned(emit(v, format)?),
            }
        };
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
        if format == Format::Yaml {
            let has_sep = text.lines().next().is_some_and(is_separator);
            let wants = !self.out.is_empty() || (!verbatim && doc.separator().is_some());
            if wants && !has_sep {
                self.out.push_str("---\n");
            }
        }
        self.out.push_str(&text);
        Ok(())
    }

    #[must_use]
    pub fn finish(self) -> String {
        self.out
    }
}

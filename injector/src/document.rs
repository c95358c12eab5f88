//! Input and output documents. Multi-document YAML is split on its `---`
//! lines, after its `...` (document end) lines and before its directives
//! (`%YAML 1.2`, `%TAG`), so that each document keeps its original text: a
//! document the core leaves alone is written back byte for byte, and only
//! an edited one is emitted from its value tree.

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
    /// Why the YAML 1.1 reader refused a layout that libyaml (like kubectl's
    /// go-yaml) accepts, when the value was read by libyaml instead: a `]`
    /// at its key's column, a quoted scalar continued at its key's
    /// indentation. Such a value resolves plain scalars by YAML 1.2, so it
    /// is good for deciding that nothing changes (the text is written back
    /// byte for byte), never for writing an edit.
    pub lenient: Option<String>,
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

    /// The `---` line that opened the document (after its directives, if
    /// any), if any.
    fn separator(&self) -> Option<&str> {
        let first = self.text.lines().find(|l| !is_directive(l))?;
        is_separator(first).then_some("---\n")
    }
}

/// A line that is `marker` alone, or `marker` then a space or tab (and a
/// comment or, for `---`, content).
fn is_marker(line: &str, marker: &str) -> bool {
    line.trim_end_matches(['\r', '\n'])
        .strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// A document start, `---`.
fn is_separator(line: &str) -> bool {
    is_marker(line, "---")
}

/// A document end, `...`.
fn is_document_end(line: &str) -> bool {
    is_marker(line, "...")
}

/// A directive line (`%YAML 1.2`, `%TAG ! tag:example.com,2000:`).
fn is_directive(line: &str) -> bool {
    line.starts_with('%')
}

/// A blank or comment-only line.
fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// A UTF-8 byte-order mark, which kubectl and kustomize accept at the
/// start of a stream.
const BOM: char = '\u{FEFF}';

/// Largest total input of one run, in bytes: documents are read, injected
/// and written one at a time, so this bounds the time a run takes, not its
/// memory.
pub const MAX_TOTAL: u64 = 256 << 20;

/// Where an input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Stdin,
    File(PathBuf),
}

/// The inputs `path` names, unread: stdin for `-`, a file, or every
/// `.yaml`, `.yml` and `.json` file under a directory, recursively, in name
/// order.
pub fn origins(path: &Path) -> Result<Vec<Origin>, InputError> {
    if path.as_os_str() == "-" {
        return Ok(vec![Origin::Stdin]);
    }
    let meta = std::fs::metadata(path).map_err(|e| InputError {
        file: path.display().to_string(),
        index: None,
        message: format!("cannot read it ({e}): check the path"),
    })?;
    if meta.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut files, 0)?;
        files.sort();
        return Ok(files.into_iter().map(Origin::File).collect());
    }
    Ok(vec![Origin::File(path.to_owned())])
}

/// Reads one input, counting it against `budget` (the bytes the run may
/// still read, of [`MAX_TOTAL`]).
pub fn read_origin(origin: &Origin, budget: &mut u64) -> Result<Input, InputError> {
    let input = match origin {
        Origin::Stdin => {
            let text = read_limited(std::io::stdin().lock(), "stdin")?;
            let format = if text.trim_start().starts_with(['{', '[']) {
                Format::Json
            } else {
                Format::Yaml
            };
            Input {
                name: "stdin".to_owned(),
                text,
                format,
            }
        }
        Origin::File(path) => read_file(path)?,
    };
    let len = input.text.len() as u64;
    if len > *budget {
        return Err(InputError {
            file: input.name,
            index: None,
            message: format!(
                "the inputs of one run add up to more than {} MiB: inject them in several runs",
                MAX_TOTAL >> 20
            ),
        });
    }
    *budget -= len;
    Ok(input)
}

/// Reads `path` (`-` for stdin): a file, or every `.yaml`, `.yml` and
/// `.json` file under a directory, recursively, in name order.
pub fn read(path: &Path) -> Result<Vec<Input>, InputError> {
    let mut budget = MAX_TOTAL;
    origins(path)?
        .iter()
        .map(|o| read_origin(o, &mut budget))
        .collect()
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
    // kubectl sniffs: a `.json` file that does not start like JSON is YAML.
    let looks_json = text
        .trim_start_matches([BOM, ' ', '\t', '\r', '\n'])
        .starts_with(['{', '[']);
    let format = if path.extension().is_some_and(|e| e == "json") && looks_json {
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

/// Splits an input into its documents, each parsed. A document that is
/// null (`~`, `--- null`, only comments) has no value: kubectl skips it,
/// and it is written back as it was.
pub fn documents(input: &Input) -> Result<Vec<Document>, InputError> {
    each(input).collect()
}

/// [`documents`], one at a time: each is parsed only when it is asked for,
/// so a caller that handles one before the next holds one value tree.
#[must_use]
pub fn each(input: &Input) -> Box<dyn Iterator<Item = Result<Document, InputError>> + '_> {
    match input.format {
        Format::Yaml => {
            let (bom, text) = match input.text.strip_prefix(BOM) {
                Some(rest) => (BOM.len_utf8(), rest),
                None => (0, input.text.as_str()),
            };
            let mut pieces = split_yaml(text);
            // The mark stays with the first piece, so the text is whole.
            if bom > 0 {
                pieces[0] = &input.text[..bom + pieces[0].len()];
            }
            Box::new(
                pieces
                    .into_iter()
                    .enumerate()
                    .map(|(index, text)| parse_yaml(&input.name, index, text)),
            )
        }
        Format::Json => Box::new(JsonDocuments::new(input)),
    }
}

/// The documents of a YAML stream, as text; the pieces concatenate to the
/// input. A piece starts at a `---` line (with the directives before it,
/// if any), at a directive or a bare document after a `...` line, or at
/// the start. Comments and blank lines stay with the piece before them
/// (before the first document, they are a piece of their own when a `---`
/// or a directive follows). A `...` line ends its piece's document, so a
/// directive after it starts the next; anywhere else a `%` line is the
/// parser's to judge, as YAML 1.2 has it.
#[must_use]
pub fn split_yaml(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    // Inside a document (after its `---` or content, before a `...`).
    let mut open = false;
    // The piece holds a document (content, `---` or `...`): anything that
    // starts a new document after it ends starts a new piece.
    let mut has_doc = false;
    // The piece holds directives, whose `---` is still to come.
    let mut directives = false;
    for line in text.split_inclusive('\n') {
        let cut = if open {
            if is_separator(line) {
                true
            } else {
                open = !is_document_end(line);
                false
            }
        } else if is_separator(line) {
            let cut = !directives && offset > start;
            open = true;
            cut
        } else if is_directive(line) {
            let cut = !directives && offset > start;
            directives = true;
            cut
        } else if is_document_end(line) || is_blank_or_comment(line) {
            // A stray end, a comment: with the piece before.
            false
        } else {
            // A bare document: a new piece only after an ended one.
            open = true;
            has_doc && !directives
        };
        if cut {
            pieces.push(&text[start..offset]);
            start = offset;
            has_doc = false;
            directives = is_directive(line);
        }
        if is_separator(line) || is_document_end(line) || (open && !is_blank_or_comment(line)) {
            has_doc = true;
            directives = false;
        }
        offset += line.len();
    }
    if start < text.len() || pieces.is_empty() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Whether a piece holds anything but markers, directives before its
/// `---`, comments and blank lines.
fn has_content(text: &str) -> bool {
    let mut prefix = true;
    text.lines().any(|l| {
        if prefix && is_directive(l) {
            return false;
        }
        prefix = false;
        let marker = (is_separator(l) && l[3..].trim_start().starts_with('#'))
            || (is_document_end(l) && {
                let rest = l[3..].trim();
                rest.is_empty() || rest.starts_with('#')
            });
        let t = l.trim();
        !(is_blank_or_comment(l) || marker || t == "---" || t == "...")
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
    // A byte-order mark (only ever at the start of a stream) is kept in
    // the text and skipped by the parser, as kubectl skips it.
    let body = text.strip_prefix(BOM).unwrap_or(text);
    let mut lenient = None;
    let value = if has_content(body) {
        match crate::yaml::load(body) {
            Ok(value) => value,
            Err(strict) => match serde_yaml_ng::from_str::<Value>(body) {
                Ok(value) if !value.is_null() => {
                    lenient = Some(strict);
                    Some(value)
                }
                _ => return Err(err(format!("not valid YAML ({strict}): fix the document"))),
            },
        }
    } else {
        None
    };
    Ok(Document {
        index,
        text: text.to_owned(),
        value,
        format: Format::Yaml,
        lenient,
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

/// The values of a JSON stream, one at a time. Each document's text is its
/// value and the white space after it (the first also keeps what comes
/// before it), so the texts concatenate to the input.
struct JsonDocuments<'a> {
    input: &'a Input,
    /// The text after the byte-order mark, if any.
    text: &'a str,
    bom: usize,
    /// Where the next document's text starts, in `text`.
    start: usize,
    index: usize,
    done: bool,
}

impl<'a> JsonDocuments<'a> {
    fn new(input: &'a Input) -> Self {
        let text = input.text.strip_prefix(BOM).unwrap_or(&input.text);
        Self {
            input,
            text,
            bom: input.text.len() - text.len(),
            start: 0,
            index: 0,
            done: false,
        }
    }

    /// Ends the stream with an error about the current document.
    fn error(&mut self, message: String) -> Result<Document, InputError> {
        self.done = true;
        Err(InputError {
            file: self.input.name.clone(),
            index: Some(self.index),
            message,
        })
    }
}

impl Iterator for JsonDocuments<'_> {
    type Item = Result<Document, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.text[self.start..].trim().is_empty() {
            return None;
        }
        let rest = &self.text[self.start..];
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        let value = match stream.next()? {
            Ok(value) => value,
            Err(e) => return Some(self.error(format!("not valid JSON ({e}): fix the document"))),
        };
        let end = stream.byte_offset();
        let next = end + (rest[end..].len() - rest[end..].trim_start().len());
        let from = if self.index == 0 {
            0
        } else {
            self.bom + self.start
        };
        let text = &self.input.text[from..self.bom + self.start + next];
        if text.len() > MAX_DOCUMENT {
            let message = format!(
                "it is {:.1} MiB, over the {} MiB an object can be (the API server's limit): split it",
                mib(text.len()),
                MAX_DOCUMENT >> 20
            );
            return Some(self.error(message));
        }
        let doc = Document {
            index: self.index,
            text: text.to_owned(),
            value: Some(value),
            format: Format::Json,
            lenient: None,
        };
        self.start += next;
        self.index += 1;
        Some(Ok(doc))
    }
}

/// Emits an edited value as a document of `format`.
pub fn emit(value: &Value, format: Format) -> Result<String, String> {
    match format {
        Format::Yaml => Ok(crate::yaml::to_string(value)),
        Format::Json => serde_json::to_string_pretty(value)
            .map(|mut t| {
                t.push('\n');
                t
            })
            .map_err(|e| e.to_string()),
    }
}

/// Whether a piece's last line that is not blank or a comment is a `...`:
/// its document is ended, so a directive or a bare document may follow.
fn ends_document(text: &str) -> Option<bool> {
    text.lines()
        .rev()
        .find(|l| !is_blank_or_comment(l))
        .map(is_document_end)
}

/// Assembles the output stream, one document at a time, into `W`: a
/// `String`, or a [`Spool`] that moves to a temporary file once it grows.
#[derive(Debug, Default)]
pub struct Writer<W = String> {
    out: W,
    /// Whether anything was written, and whether it ended with a newline.
    written: bool,
    at_line_start: bool,
    /// `None`: each document keeps its input's format.
    format: Option<Format>,
    /// Where the last document written stands.
    last: Last,
}

/// The last document written: none yet, open, or ended by a `...` line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Last {
    #[default]
    None,
    Open,
    Ended,
}

impl Writer {
    #[must_use]
    pub fn new(format: Option<Format>) -> Self {
        Self::to(String::new(), format)
    }
}

impl<W: std::fmt::Write> Writer<W> {
    /// A writer into `out`.
    pub fn to(out: W, format: Option<Format>) -> Self {
        Self {
            out,
            written: false,
            at_line_start: true,
            format,
            last: Last::None,
        }
    }

    fn put(&mut self, text: &str) -> Result<(), String> {
        if text.is_empty() {
            return Ok(());
        }
        self.out
            .write_str(text)
            .map_err(|_| "cannot write the output".to_owned())?;
        self.written = true;
        self.at_line_start = text.ends_with('\n');
        Ok(())
    }

    /// Writes one document: its original text if it was not edited (and
    /// its format is the output's, or the output is YAML, of which JSON is
    /// a part), else the emitted value. In YAML, a `---` goes before a
    /// document that needs one, a `...` before directives that follow an
    /// open document (from another input), and an edited document whose
    /// text ended with `...` keeps it.
    pub fn push(&mut self, doc: &Document, edited: Option<&Value>) -> Result<(), String> {
        let format = self.format.unwrap_or(doc.format);
        let verbatim = edited.is_none() && (doc.format == format || format == Format::Yaml);
        let text: std::borrow::Cow<'_, str> = if verbatim {
            std::borrow::Cow::Borrowed(&doc.text)
        } else {
            match edited.or(doc.value.as_ref()) {
                None => return Ok(()),
                Some(v) => {
                    let mut text = emit(v, format)?;
                    if format == Format::Yaml
                        && doc.format == Format::Yaml
                        && ends_document(&doc.text) == Some(true)
                    {
                        text.push_str("...\n");
                    }
                    std::borrow::Cow::Owned(text)
                }
            }
        };
        if self.written && !self.at_line_start {
            self.put("\n")?;
        }
        if format == Format::Yaml {
            if text.lines().next().is_some_and(is_directive) {
                if self.last == Last::Open {
                    self.put("...\n")?;
                }
            } else {
                let has_sep = text.lines().next().is_some_and(is_separator);
                let wants = (self.written && self.last != Last::Ended)
                    || (!verbatim && doc.separator().is_some());
                if wants && !has_sep {
                    self.put("---\n")?;
                }
            }
            if let Some(ended) = ends_document(&text) {
                self.last = if ended { Last::Ended } else { Last::Open };
            }
        }
        self.put(&text)
    }

    /// The output.
    #[must_use]
    pub fn finish(self) -> W {
        self.out
    }
}

/// Output held until a run has succeeded (a run that fails writes nothing):
/// in memory up to [`Spool::IN_MEMORY`], then in an unnamed temporary file,
/// so that memory does not grow with the output. Where no temporary file
/// can be made (a read-only root with no `/tmp`), it stays in memory.
#[derive(Debug, Default)]
pub struct Spool {
    memory: String,
    file: Option<std::fs::File>,
    /// No temporary file could be made: stay in memory.
    no_file: bool,
    failed: bool,
}

impl Spool {
    /// Bytes held in memory before moving to a file.
    pub const IN_MEMORY: usize = 4 << 20;

    /// Copies the output to `out`.
    pub fn copy_to(mut self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        use std::io::{Seek, Write as _};
        if let Some(mut file) = self.file.take() {
            file.write_all(self.memory.as_bytes())?;
            file.flush()?;
            file.rewind()?;
            std::io::copy(&mut file, out)?;
            return Ok(());
        }
        out.write_all(self.memory.as_bytes())
    }
}

impl std::fmt::Write for Spool {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        use std::io::Write as _;
        if self.failed {
            return Err(std::fmt::Error);
        }
        self.memory.push_str(s);
        if self.memory.len() < Self::IN_MEMORY {
            return Ok(());
        }
        if self.file.is_none() && !self.no_file {
            self.file = tempfile::tempfile().ok();
            self.no_file = self.file.is_none();
        }
        if let Some(file) = &mut self.file {
            if file.write_all(self.memory.as_bytes()).is_err() {
                self.failed = true;
                return Err(std::fmt::Error);
            }
            self.memory.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{documents, split_yaml, Format, Input, Writer};

    fn input(text: &str) -> Input {
        Input {
            name: "t".to_owned(),
            text: text.to_owned(),
            format: Format::Yaml,
        }
    }

    #[test]
    fn a_json_file_that_holds_yaml_is_read_as_yaml_as_kubectl_sniffs_it() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("a.json");
        std::fs::write(&yaml, "kind: ConfigMap\n").unwrap();
        let json = dir.path().join("b.json");
        std::fs::write(&json, "\n {\"kind\": \"ConfigMap\"}\n").unwrap();
        let formats: Vec<Format> = [yaml, json]
            .iter()
            .map(|p| super::read(p).unwrap()[0].format)
            .collect();
        assert_eq!(formats, [Format::Yaml, Format::Json]);
    }

    #[test]
    fn the_stream_splits_at_starts_ends_and_directives() {
        let table: &[(&str, &[&str])] = &[
            ("a: 1\n", &["a: 1\n"]),
            ("a: 1\n---\nb: 2\n", &["a: 1\n", "---\nb: 2\n"]),
            ("# c\n---\na: 1\n", &["# c\n", "---\na: 1\n"]),
            ("# c\na: 1\n---\nb: 2", &["# c\na: 1\n", "---\nb: 2"]),
            // Directives belong to the document their `---` opens.
            ("%YAML 1.2\n---\na: 1\n", &["%YAML 1.2\n---\na: 1\n"]),
            (
                "# c\n%YAML 1.2\n# d\n%TAG !e! tag:e.com,2000:\n---\na: 1\n",
                &[
                    "# c\n",
                    "%YAML 1.2\n# d\n%TAG !e! tag:e.com,2000:\n---\na: 1\n",
                ],
            ),
            // `...` ends its piece's document: a bare document, directives
            // or a `---` after it start the next piece.
            ("a: 1\n...\nb: 2\n", &["a: 1\n...\n", "b: 2\n"]),
            (
                "a: 1\n... # end\n# c\n\nb: 2\n",
                &["a: 1\n... # end\n# c\n\n", "b: 2\n"],
            ),
            (
                "a: 1\n...\n%YAML 1.2\n---\nb: 2\n...\n",
                &["a: 1\n...\n", "%YAML 1.2\n---\nb: 2\n...\n"],
            ),
            ("a: 1\n...\n---\nb: 2\n", &["a: 1\n...\n", "---\nb: 2\n"]),
            ("---\na: 1\n...\n...\n", &["---\na: 1\n...\n...\n"]),
            // Inside a document, a `%` line is the parser's to judge.
            ("a: |\n  x\n%b\n", &["a: |\n  x\n%b\n"]),
            ("...x: 1\n", &["...x: 1\n"]),
            ("", &[""]),
        ];
        for (text, want) in table {
            let got = split_yaml(text);
            assert_eq!(&got, want, "{text:?}");
            assert_eq!(got.concat(), *text);
        }
    }

    #[test]
    fn directives_and_document_ends_parse_and_come_back_byte_for_byte() {
        let text = "# header\n%YAML 1.2\n---\na: 1\n...\n# between\n%YAML 1.2\n--- # c\nb: 2\n...\nc: 3\n---\n...\n";
        let docs = documents(&input(text)).unwrap();
        let values: Vec<_> = docs
            .iter()
            .map(|d| {
                d.value
                    .as_ref()
                    .map(|v| serde_yaml_ng::to_string(v).unwrap())
            })
            .collect();
        assert_eq!(
            values,
            [
                None,
                Some("a: 1\n".to_owned()),
                Some("b: 2\n".to_owned()),
                Some("c: 3\n".to_owned()),
                None
            ]
        );
        let mut w = Writer::new(None);
        for d in &docs {
            w.push(d, None).unwrap();
        }
        assert_eq!(w.finish(), text);
    }

    #[test]
    fn an_edited_document_keeps_its_end_and_the_next_its_directives() {
        let text = "%YAML 1.2\n---\na: 1\n...\n%YAML 1.2\n---\nb: 2\n...\nc: 3\n";
        let docs = documents(&input(text)).unwrap();
        let edited: serde_yaml_ng::Value = serde_yaml_ng::from_str("a: 9").unwrap();
        let mut w = Writer::new(None);
        w.push(&docs[0], Some(&edited)).unwrap();
        w.push(&docs[1], None).unwrap();
        w.push(&docs[2], None).unwrap();
        let out = w.finish();
        assert_eq!(out, "---\na: 9\n...\n%YAML 1.2\n---\nb: 2\n...\nc: 3\n");
        let again: Vec<_> = documents(&input(&out))
            .unwrap()
            .into_iter()
            .filter_map(|d| d.value)
            .collect();
        assert_eq!(again.len(), 3);
    }

    #[test]
    fn directives_after_an_open_document_of_another_input_get_an_end_first() {
        let first = documents(&input("a: 1\n")).unwrap();
        let second = documents(&input("%YAML 1.2\n---\nb: 2\n")).unwrap();
        let third = documents(&input("c: 3\n")).unwrap();
        let mut w = Writer::new(None);
        for d in first.iter().chain(&second).chain(&third) {
            w.push(d, None).unwrap();
        }
        let out = w.finish();
        assert_eq!(out, "a: 1\n...\n%YAML 1.2\n---\nb: 2\n---\nc: 3\n");
        assert_eq!(
            documents(&input(&out))
                .unwrap()
                .iter()
                .filter(|d| d.value.is_some())
                .count(),
            3
        );
    }
}

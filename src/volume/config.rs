//! What volume mode is asked to wait for: which files under which mount,
//! in which formats, with which keys. Built and validated by
//! [`crate::config`]; read by the scan.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::check::{Format, Key, Schema, TlsPolicy};

/// `watch`: the selection, and how to wait for it.
#[derive(Debug)]
pub struct WatchConfig {
    pub selection: Selection,
    /// `None` waits forever.
    pub timeout: Option<Duration>,
    pub poll_interval: Duration,
    pub poll_only: bool,
}

/// Which secret files to check, and what they must hold.
#[derive(Debug, Clone)]
pub struct Selection {
    pub mount: PathBuf,
    pub layout: Layout,
    pub keys: Vec<Key>,
    pub max_file_size: u64,
    /// How long a file that could be cut short and still parse must stay
    /// unchanged before it counts.
    pub settle: Duration,
    /// What PEM files must satisfy beyond parsing.
    pub tls: TlsPolicy,
    /// `--schema`: each file (of `--file`) and a schema its content must
    /// satisfy; a file may have several.
    pub schemas: Vec<SchemaRule>,
}

/// One file of the selection and a schema it must satisfy.
#[derive(Debug, Clone)]
pub struct SchemaRule {
    /// Relative to the mount, as in [`FileSpec::name`].
    pub file: PathBuf,
    pub schema: Arc<Schema>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Named files, each of which must parse; keys may be in any of them.
    Files(Vec<FileSpec>),
    /// No `--file`: each key is a file directly under the mount, its
    /// format chosen this way.
    KeyPerFile(KeyFormat),
}

/// One file to read, and its format (already chosen: by `--format`, or
/// by its extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Relative to the mount; never absolute, never with `..`.
    pub name: PathBuf,
    pub format: Format,
}

/// How the format of a key file (no `--file`) is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `--format auto`: PEM by extension, or when `--key-pair` or
    /// `--ca-file` names it; raw otherwise.
    ByExtension,
    /// `--format raw`: every key file is raw.
    Raw,
    /// `--format pem`: every key file is PEM.
    Pem,
}

impl Selection {
    /// The schemas `file` must satisfy, in the order given.
    pub fn schemas_for<'s>(&'s self, file: &'s Path) -> impl Iterator<Item = &'s Schema> + 's {
        self.schemas
            .iter()
            .filter(move |rule| rule.file == file)
            .map(|rule| rule.schema.as_ref())
    }

    /// The names of the files to read, for messages.
    #[must_use]
    pub fn file_names(&self) -> Vec<String> {
        self.files()
            .iter()
            .map(|f| f.name.display().to_string())
            .collect()
    }

    /// The format of a key file (no `--file`); see [`KeyFormat`].
    fn key_file_format(&self, how: KeyFormat, name: &str) -> Format {
        let tls_named = self.tls.ca_file.as_deref() == Some(name)
            || self.tls.pairs.iter().any(|(c, k)| c == name || k == name);
        match how {
            KeyFormat::Pem => Format::Pem,
            KeyFormat::Raw => Format::Raw,
            KeyFormat::ByExtension if tls_named => Format::Pem,
            KeyFormat::ByExtension => match Format::by_extension(Path::new(name)) {
                Format::Pem => Format::Pem,
                _ => Format::Raw,
            },
        }
    }

    /// The files to read, with their formats, in order.
    #[must_use]
    pub fn files(&self) -> Vec<FileSpec> {
        match &self.layout {
            Layout::Files(files) => files.clone(),
            Layout::KeyPerFile(how) => self
                .keys
                .iter()
                .map(|k| FileSpec {
                    name: PathBuf::from(k.as_str()),
                    format: self.key_file_format(*how, k.as_str()),
                })
                .collect(),
        }
    }
}

//! Reading a secret file without ever blocking or reading without bound.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a file could not be read. Each is a named state in the diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("missing")]
    Missing,
    #[error("is a symlink whose target is missing")]
    DanglingSymlink,
    #[error("is a symlink loop")]
    SymlinkLoop,
    #[error("is a {0}, not a regular file")]
    NotAFile(&'static str),
    #[error("permission denied (the gate runs as uid {uid}; make the file readable by it, e.g. with fsGroup or defaultMode)")]
    PermissionDenied { uid: u32 },
    #[error(
        "is {size} bytes, over the {limit}-byte limit (raise --max-file-size if this is right)"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error("cannot be read: {0}")]
    Io(String),
    /// The gate ran out of its own resources: no verdict on the file.
    #[error(
        "cannot be looked at: the gate is out of resources ({0}); this says nothing about the file"
    )]
    Resource(String),
}

/// A file's bytes, and what identified its version when they were read.
/// Its `Debug` shows the size, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Contents {
    pub bytes: Vec<u8>,
    /// The file's identity and change marks, the same before and after the
    /// read; `None` when the file changed while it was being read.
    pub stamp: Option<Stamp>,
}

impl std::fmt::Debug for Contents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contents")
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("stamp", &self.stamp)
            .finish()
    }
}

/// What tells one version of a file from the next: its inode, size and
/// change times. Compared only with itself, never with the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
}

impl Stamp {
    #[must_use]
    pub fn of(meta: &Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// Reads at most `limit` bytes of the regular file at `path`, following
/// symlinks. FIFOs, sockets and devices are refused without being opened
/// for a blocking read.
pub fn read_capped(path: &Path, limit: u64) -> Result<Contents, ReadError> {
    let _reading = Reading::start(path);
    let meta = std::fs::metadata(path).map_err(|e| classify(path, &e))?;
    check_type(&meta)?;
    if meta.len() > limit {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    // O_NONBLOCK: if the path was swapped for a FIFO since the stat above,
    // the open still returns at once. O_NOCTTY: never adopt a terminal.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| classify(path, &e))?;
    let meta = file.metadata().map_err(|e| classify(path, &e))?;
    check_type(&meta)?;
    let mut file = file;
    let bytes = read_to_limit(&mut file, limit)?;
    // Taken after the read too: a rewrite that began before or during it
    // shows as a different stamp. The change time (ctime), unlike the
    // modification time, cannot be set back by a writer or `touch -d`.
    let after = file.metadata().map_err(|e| classify(path, &e))?;
    let (before, after) = (Stamp::of(&meta), Stamp::of(&after));
    let stamp = (before == after && after.size == bytes.len() as u64).then_some(after);
    Ok(Contents { bytes, stamp })
}

/// The file being read now, if any: a deadline that cuts a stuck read
/// short (a dead network filesystem) names it ([`reading_now`]).
static READING: std::sync::Mutex<Option<std::path::PathBuf>> = std::sync::Mutex::new(None);

/// Marks `path` as being read until dropped.
pub struct Reading;

impl Reading {
    #[must_use]
    pub fn start(path: &Path) -> Self {
        if let Ok(mut slot) = READING.lock() {
            *slot = Some(path.to_path_buf());
        }
        Self
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        if let Ok(mut slot) = READING.lock() {
            *slot = None;
        }
    }
}

/// The file a look is reading at this moment (a `stat`, open or read that
/// has not returned yet).
#[must_use]
pub fn reading_now() -> Option<std::path::PathBuf> {
    READING.lock().ok().and_then(|slot| slot.clone())
}

fn read_to_limit(file: &mut File, limit: u64) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(&e))?;
    let size = bytes.len() as u64;
    if size > limit {
        return Err(ReadError::TooLarge { size, limit });
    }
    Ok(bytes)
}

fn check_type(meta: &Metadata) -> Result<(), ReadError> {
    let kind = meta.file_type();
    if kind.is_file() {
        Ok(())
    } else if kind.is_dir() {
        Err(ReadError::NotAFile("directory"))
    } else if kind.is_fifo() {
        Err(ReadError::NotAFile("FIFO"))
    } else if kind.is_socket() {
        Err(ReadError::NotAFile("socket"))
    } else if kind.is_char_device() {
        Err(ReadError::NotAFile("character device"))
    } else if kind.is_block_device() {
        Err(ReadError::NotAFile("block device"))
    } else {
        Err(ReadError::NotAFile("special file"))
    }
}

fn classify(path: &Path, err: &io::Error) -> ReadError {
    match err.kind() {
        io::ErrorKind::NotFound => {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                ReadError::DanglingSymlink
            } else {
                ReadError::Missing
            }
        }
        io::ErrorKind::PermissionDenied => ReadError::PermissionDenied { uid: current_uid() },
        _ if err.raw_os_error() == Some(libc::ELOOP) => ReadError::SymlinkLoop,
        _ if err.raw_os_error() == Some(libc::ENOTDIR) => ReadError::Missing,
        _ => io_error(err),
    }
}

/// Another I/O error: the gate's own resource exhaustion, or about the file.
fn io_error(err: &io::Error) -> ReadError {
    if crate::problem::is_resource_error(err) {
        ReadError::Resource(err.to_string())
    } else {
        ReadError::Io(err.to_string())
    }
}

/// The effective uid, read from /proc so no unsafe call is needed.
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{read_capped, ReadError};
    use std::os::unix::fs::symlink;

    #[test]
    fn states_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("ok"), b"abc").unwrap();
        std::fs::write(p("big"), vec![b'x'; 11]).unwrap();
        std::fs::create_dir(p("dir")).unwrap();
        symlink(p("nowhere"), p("dangling")).unwrap();
        symlink(p("loop1"), p("loop2")).unwrap();
        symlink(p("loop2"), p("loop1")).unwrap();
        symlink(p("ok"), p("link")).unwrap();
        let table = [
            ("ok", Ok(b"abc".to_vec())),
            ("link", Ok(b"abc".to_vec())),
            ("absent", Err(ReadError::Missing)),
            ("ok/child", Err(ReadError::Missing)),
            ("dangling", Err(ReadError::DanglingSymlink)),
            ("loop1", Err(ReadError::SymlinkLoop)),
            ("dir", Err(ReadError::NotAFile("directory"))),
            (
                "big",
                Err(ReadError::TooLarge {
                    size: 11,
                    limit: 10,
                }),
            ),
        ];
        for (name, want) in table {
            let got = read_capped(&p(name), 10).map(|c| c.bytes);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn devices_are_refused_without_reading() {
        let got = read_capped(std::path::Path::new("/dev/zero"), 10).map(|c| c.bytes);
        assert_eq!(got, Err(ReadError::NotAFile("character device")));
    }
}

//! The diagnosis vocabulary: one reason the gate is not ready, and the
//! kinds of reason. Every source reports in these terms; the report module
//! turns them into progress logs and the termination-log diagnosis.
//!
//! A leaf module: it depends on nothing else in the crate.

use std::fmt;

/// One reason the gate is not ready. It names a file or key and what is
/// wrong, and never carries a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What the problem is about: a file name, the mount, `Safe` or `output`.
    pub subject: String,
    /// What is wrong, in words a person can act on.
    pub what: String,
    /// What kind of problem it is. With `subject` and `item` it tells when
    /// the set of problems changes, without logging every byte count of a
    /// file being written ([`Self::identity`]).
    pub kind: Kind,
    /// Which key, certificate block or paired file of the subject, when
    /// there are several.
    pub item: String,
}

/// What identifies a problem across checks: the same identity in two
/// checks is the same condition, even if its words (a size, a time) moved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    subject: String,
    kind: Kind,
    item: String,
}

/// The kinds of problem, grouped by what they are about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    // The mount directory.
    /// It does not exist yet.
    MountMissing,
    /// It is a file, not a directory.
    MountNotDir,
    /// Search permission is missing on it or a parent.
    MountPermission,
    /// The path cannot name a directory (too long, a parent not a
    /// directory, a symlink loop).
    MountInvalid,
    /// Another I/O error.
    MountIo,

    // A file.
    /// It does not exist yet.
    Missing,
    /// A symlink to nothing.
    Dangling,
    /// A symlink loop.
    SymlinkLoop,
    /// A directory, FIFO, socket or device.
    NotAFile,
    /// It cannot be read.
    Permission,
    /// Larger than `--max-file-size`.
    TooLarge,
    /// Another I/O error.
    Io,

    // Content.
    /// It does not parse (or is empty, or a template without its data).
    Invalid,
    /// It parses, but may have been cut short: waiting out the settle time.
    Settling,
    /// A required key is not there (or null or empty).
    KeyMissing,
    /// The content breaks a `--schema` rule.
    Schema,

    // Certificates and keys.
    NotYetValid,
    Expired,
    /// Valid for less than `--min-validity`.
    ExpiresSoon,
    NoCertificate,
    NoKey,
    /// A private key does not match its certificate.
    KeyMismatch,
    /// A certificate does not chain to `--ca-file`.
    Chain,

    // The Safe.
    /// One attempt against the Safe failed, in this way.
    Safe(SafeKind),
    /// The Safe served the secret, then answered 404 (`--keep-running`).
    Deleted,

    // The gate's own work.
    /// The secret could not be written to `--output` or `--output-dir`.
    Output,
    /// A check could not run at all (its task panicked).
    Internal,
    /// The gate's own resources ran out while it looked (open files,
    /// memory): no verdict on the secret ([`is_resource_error`]).
    Resource,
}

/// True when an I/O error is the gate running out of its own resources
/// (`EMFILE`, `ENFILE`, `ENOMEM`, `ENOBUFS`) rather than something about
/// the file: such an error says nothing about the secret.
#[must_use]
pub fn is_resource_error(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
    )
}

/// How one attempt against the Safe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SafeKind {
    WorkloadApi,
    Connect,
    WrongSafeId,
    Tls,
    UntrustedSafe,
    Handshake,
    /// This pod's SVID expired and no new one came.
    SvidExpired,
    Timeout,
    /// 404: nothing registered for this workload yet.
    NotRegistered,
    /// 400.
    BadRequest,
    /// 503.
    Unavailable,
    /// 429.
    TooManyRequests,
    /// Any other HTTP status.
    Status,
    TooLarge,
    Read,
    BadBody,
    /// 200 with empty data.
    Empty,
}

impl SafeKind {
    /// The stable name of the outcome, as the `result` label of
    /// `secret_gate_safe_requests_total`.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::WorkloadApi => "workload-api",
            Self::Connect => "connect",
            Self::WrongSafeId => "wrong-safe-id",
            Self::Tls => "tls",
            Self::UntrustedSafe => "untrusted-safe",
            Self::Handshake => "handshake",
            Self::SvidExpired => "svid-expired",
            Self::Timeout => "timeout",
            Self::NotRegistered => "404",
            Self::BadRequest => "400",
            Self::Unavailable => "503",
            Self::TooManyRequests => "429",
            Self::Status => "status",
            Self::TooLarge => "too-large",
            Self::Read => "read",
            Self::BadBody => "bad-body",
            Self::Empty => "empty",
        }
    }
}

impl Problem {
    pub fn new(subject: impl Into<String>, kind: Kind, what: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            what: what.into(),
            kind,
            item: String::new(),
        }
    }

    /// The same problem, about one `item` of its subject.
    #[must_use]
    pub fn about(mut self, item: impl Into<String>) -> Self {
        self.item = item.into();
        self
    }

    /// `subject: key "k" missing`.
    #[must_use]
    pub fn key_missing(subject: impl Into<String>, key: &str) -> Self {
        Self::new(subject, Kind::KeyMissing, format!("key {key:?} missing")).about(key)
    }

    /// What identifies the problem across checks.
    #[must_use]
    pub fn identity(&self) -> Identity {
        Identity {
            subject: self.subject.clone(),
            kind: self.kind,
            item: self.item.clone(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::{is_resource_error, Kind, Problem};

    #[test]
    fn only_the_gates_own_shortages_are_resource_errors() {
        for (errno, own) in [
            (libc::EMFILE, true),
            (libc::ENFILE, true),
            (libc::ENOMEM, true),
            (libc::ENOBUFS, true),
            (libc::EACCES, false),
            (libc::EIO, false),
            (libc::ENOENT, false),
        ] {
            let err = std::io::Error::from_raw_os_error(errno);
            assert_eq!(is_resource_error(&err), own, "{err}");
        }
        assert!(!is_resource_error(&std::io::Error::other("x")));
    }

    #[test]
    fn identity_ignores_the_words_but_not_the_kind_or_item() {
        let writing =
            |bytes: usize| Problem::new("a.yaml", Kind::Settling, format!("{bytes} bytes so far"));
        assert_eq!(writing(10).identity(), writing(20).identity());
        let invalid = Problem::new("a.yaml", Kind::Invalid, "10 bytes so far");
        assert_ne!(writing(10).identity(), invalid.identity());
        assert_ne!(
            Problem::key_missing("a.yaml", "user").identity(),
            Problem::key_missing("a.yaml", "password").identity()
        );
        assert_eq!(
            Problem::key_missing("Safe", "user").to_string(),
            "Safe: key \"user\" missing"
        );
    }
}

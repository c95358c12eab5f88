//! What safe mode is asked to do: where the Safe and the Workload API
//! are, which IDs to trust, what the secret must hold, where it goes.
//! Built and validated by [`crate::config`].

use std::path::PathBuf;
use std::time::Duration;

use crate::check::{Format, Key, Schema};
use crate::spiffe_id::SpiffeIdMatcher;

/// Everything safe mode needs, validated.
#[derive(Debug)]
pub struct SafeConfig {
    pub keys: Vec<Key>,
    /// `--schema`: what the parsed secret must satisfy.
    pub schemas: Vec<Schema>,
    pub format: SecretFormat,
    pub output: Option<Output>,
    pub timeout: Option<Duration>,
    pub endpoint_socket: String,
    pub secrets_url: http::Uri,
    pub safe_id: SpiffeIdMatcher,
    /// With `--format pem`: time each end-entity certificate must have left.
    pub min_validity: Duration,
    /// The Safe's ID must also be a VSecM workload ID.
    pub workload_id: SpiffeIdMatcher,
    pub poll_interval: Duration,
    pub max_backoff: Duration,
    pub attempt_timeout: Duration,
    pub max_body_size: u64,
    pub wait_before_exit: Duration,
}

/// The format of the fetched secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretFormat {
    /// `--format auto`: sniffed from the secret when a document is needed
    /// (JSON if it starts with `{` or `[`, else YAML); otherwise any
    /// non-empty secret is ready, as in VSecM.
    Sniffed,
    /// `--format json|yaml|env|raw|pem`.
    Given(Format),
}

impl SecretFormat {
    /// Whether a secret in this format can carry keys (a sniffed one can).
    #[must_use]
    pub const fn has_keys(self) -> bool {
        match self {
            Self::Sniffed => true,
            Self::Given(format) => format.has_keys(),
        }
    }
}

/// Where a ready secret is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `--output`: the secret as fetched, in one file.
    File { path: PathBuf, mode: u32 },
    /// `--output-dir`: one file per top-level key.
    Dir { path: PathBuf, mode: u32 },
}

//! The vocabulary every module of the injector speaks: where the gate reads
//! the secret from ([`Source`]), how it runs ([`GateMode`]) and the
//! defaults of a run ([`Settings`]). It sits at the bottom of the crate and
//! imports nothing of it, so that imports only point down: the annotations
//! and the gate's container use these types, the core ([`crate::inject`])
//! puts them together.

use std::fmt;

/// The image when neither `--image` nor a function config names one: this
/// release's, by digest when the build knew it (`SECRET_GATE_IMAGE_DIGEST`
/// at build time, as the release workflow sets it; see `build.rs`), so
/// that what runs is exactly what was released.
pub const DEFAULT_IMAGE: &str = env!("SECRET_GATE_DEFAULT_IMAGE");

/// Where the gate reads the secret from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Files on a volume the app mounts (`watch`).
    Watch,
    /// VSecM Safe over SPIFFE mTLS (`safe`).
    Safe,
}

/// How the gate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateMode {
    /// The last init container (by default); it exits once ready.
    Init,
    /// A native sidecar (`restartPolicy: Always`) that keeps running.
    Sidecar,
}

impl Source {
    /// The gate's subcommand for this source.
    #[must_use]
    pub const fn subcommand(self) -> &'static str {
        match self {
            Self::Watch => "watch",
            Self::Safe => "safe",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.subcommand())
    }
}

impl fmt::Display for GateMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Init => "init",
            Self::Sidecar => "sidecar",
        })
    }
}

/// Defaults for every template: the image, and the source and mode used
/// when a template's annotations do not say.
#[derive(Debug, Clone)]
pub struct Settings {
    pub image: String,
    pub source: Source,
    pub mode: GateMode,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            image: DEFAULT_IMAGE.to_owned(),
            source: Source::Watch,
            mode: GateMode::Init,
        }
    }
}

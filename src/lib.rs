//! secret-gate holds a pod back until its secrets are present and valid.
//!
//! The modules follow the flow of a run:
//! - [`cli`] holds the clap types, turned once into a validated [`config`].
//! - [`run`] is the one place that decides when to stop: ready, deadline or
//!   signal, mapped to an [`exit`] code.
//! - The sources: [`volume`] watches a mounted directory (inotify, with a
//!   polling safety net); [`safe`] polls VSecM Safe over SPIFFE mTLS.
//! - [`check`] decides what "ready" means for some bytes: the format
//!   parsers and the key lookup, shared by both sources.
//! - [`report`] logs progress and writes the termination-log diagnosis;
//!   [`logging`] sets up `tracing`.
//! - [`sidecar`] keeps running after the first ready (`--keep-running`:
//!   probes, metrics, change notifications); [`exec`] runs the app in the
//!   gate's place (`-- CMD`).
//!
//! The fake Safe and Workload API (for the tests, the demo and the
//! benchmarks) are a separate package, `fake-safe/`, built on this crate.

pub mod check;
pub mod cli;
pub mod config;
pub mod exec;
pub mod exit;
pub mod logging;
pub mod report;
pub mod run;
pub mod safe;
pub mod sidecar;
pub mod volume;

pub use exit::ExitCode;

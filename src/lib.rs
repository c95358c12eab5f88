//! secret-gate holds a pod back until its secrets are present and valid.
//!
//! The modules follow the flow of a run: cli → config → the sources →
//! check. Imports point one way, with no cycle: each module imports only
//! modules after it in entry, run, config, cli, sidecar, the sources,
//! check, report and the leaves. (`config` reads `cli`'s types and
//! assembles the types each part owns; nothing after `cli` sees a
//! command-line type.)
//! - [`entry`] is the program: parse, start logging, validate, start the
//!   runtime, run, exec. `main.rs` only calls it.
//! - [`cli`] holds the clap types (the only module that uses clap), turned
//!   once into a validated [`config::Config`] by [`config`].
//! - [`run`] is the one place that decides when to stop: ready, deadline or
//!   a [`signals`] stop, mapped to an [`exit`] code; `run::keep_running`
//!   does the same for `--keep-running`.
//! - [`sidecar`] keeps running after the first ready (`--keep-running`:
//!   probes, metrics, change notifications); [`exec`] runs the app in the
//!   gate's place (`-- CMD`).
//! - The sources, each owning its configuration: [`volume`] watches a
//!   mounted directory (inotify, with a polling safety net); [`safe`] polls
//!   VSecM Safe over SPIFFE mTLS.
//! - [`check`] decides what "ready" means for some bytes: the format
//!   parsers, the key lookup and the certificate checks, shared by both
//!   sources. A new format goes here.
//! - Leaves that depend on nothing else in the crate: [`problem`] (the
//!   diagnosis vocabulary), [`spiffe_id`] (VSecM's SPIFFE-ID rule) and
//!   [`http1`] (the one HTTP/1 client exchange, for the Safe and for
//!   change notifications).
//! - [`serve`] is the bounded HTTP/1.1 server behind `--listen` (and the
//!   injector's webhook): a connection cap that sheds idle connections,
//!   short timeouts, small buffers.
//! - [`rlimit`] raises the open-files limit at start (and restores it
//!   for an exec'd command).
//! - [`report`] logs progress and writes the termination-log diagnosis;
//!   [`logging`] sets up `tracing`.
//!
//! The fake Safe and Workload API used by the tests and the demo are the
//! workspace crate `fake-safe`, not part of this one.

pub mod check;
pub mod cli;
pub mod config;
pub mod entry;
pub mod exec;
pub mod exit;
pub mod http1;
pub mod logging;
pub mod problem;
pub mod report;
pub mod rlimit;
pub mod run;
pub mod safe;
pub mod serve;
pub mod sidecar;
pub mod signals;
pub mod spiffe_id;
pub mod volume;

pub use exit::ExitCode;

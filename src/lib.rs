//! secret-gate: hold a pod back until its secrets are present and valid.
#[cfg(feature = "fake-safe")]
pub mod fake;

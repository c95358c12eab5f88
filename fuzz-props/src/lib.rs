//! The fuzz properties of secret-gate: one function per target, each
//! driving the product's own parsers and checks with arbitrary bytes.
//!
//! One harness, two drivers: libFuzzer runs each function from
//! `fuzz/fuzz_targets/<name>.rs` (nightly, `make fuzz`), and
//! `tests/props.rs` runs the same functions on stable over the committed
//! corpus, the regression inputs and a bounded number of arbitrary-driven
//! mutations (`cargo test`), so no property is ever skipped for want of
//! nightly.
//!
//! A property fails by panicking. Beyond "never panics", each checks what
//! the product promises for its input: no secret in an error (inputs may
//! carry [`CANARY`], and no message may repeat it), a required key that
//! is there is found by name and by JSON Pointer, a `Retry-After` never
//! stretches a wait past `--max-backoff`, and so on.
//!
//! Memory: every input runs under [`limited`], which lets the Rust heap
//! grow at most [`MEMORY_LIMIT`] past what it held before the input. An
//! allocation past that fails, and the process aborts ("memory allocation
//! of N bytes failed"): an out-of-memory finding under either driver.
//! All of the product's allocations go through the Rust allocator (serde,
//! unsafe-libyaml's `yaml_malloc`, x509-parser, rustls), so this counts
//! exactly what the gate would hold, without the shadow memory and
//! quarantine that `AddressSanitizer` adds to the process's RSS.
//!
//! To add a target: write `pub fn name(data: &[u8])` in a module here, add
//! it to [`TARGETS`], add `fuzz/fuzz_targets/name.rs` (three lines, as the
//! others) and its `[[bin]]` in `fuzz/Cargo.toml`, and put a few seeds in
//! `fuzz/corpus/name/`.

#![expect(
    clippy::missing_panics_doc,
    reason = "a property fails by panicking: that is how both drivers see it"
)]

use std::alloc::System;

pub mod cli;
pub mod format;
pub mod inject;
pub mod pem;
pub mod safe_response;
pub mod spiffe_id;

#[global_allocator]
static HEAP: cap::Cap<System> = cap::Cap::new(System, usize::MAX);

/// The most heap one input may add: 64 MiB.
pub const MEMORY_LIMIT: usize = 64 << 20;

/// A marker that seeds and dictionaries plant in secret values. No error,
/// diagnosis or `Debug` output may ever contain it.
pub const CANARY: &str = "zqCANARYqz";

/// A property: panics when `data` breaks it.
pub type Property = fn(&[u8]);

/// Every target: its name (the `fuzz/fuzz_targets/` file and the corpus
/// directory) and its property.
pub const TARGETS: &[(&str, Property)] = &[
    ("format_json", format::json),
    ("format_yaml", format::yaml),
    ("format_env", format::env_and_raw),
    ("pem", pem::pem),
    ("safe_response", safe_response::safe_response),
    ("spiffe_id", spiffe_id::spiffe_id),
    ("cli", cli::cli),
    ("inject", inject::inject),
];

/// Runs `f` with the heap allowed to grow by at most [`MEMORY_LIMIT`].
pub fn limited<T>(f: impl FnOnce() -> T) -> T {
    let before = HEAP.allocated();
    // Ignore a failure to set it: only a limit below the heap's size fails.
    let _ = HEAP.set_limit(before.saturating_add(MEMORY_LIMIT));
    let out = f();
    let _ = HEAP.set_limit(usize::MAX);
    out
}

/// Fails the property when `text` (an error, a diagnosis, a `Debug`)
/// repeats the canary planted in a secret.
///
/// # Panics
/// When it does: that is a secret leak.
pub fn assert_no_canary(what: &str, text: &str) {
    assert!(
        !text.contains(CANARY),
        "{what} repeats a secret value (the canary): {text:?}"
    );
}

/// Splits `data` at NUL bytes into at most `n` parts (the last keeps any
/// further NULs).
#[must_use]
pub fn split_nul(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |b| *b == 0).collect()
}

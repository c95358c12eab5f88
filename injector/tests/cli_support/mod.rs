//! Runs the real `secret-gate-injector` binary as a user would: arguments,
//! stdin in; exit code, stdout and stderr out. Shared by the golden table
//! and the KRM tests.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_secret-gate-injector");

/// The binary's exit code (-1 for a signal), stdout and stderr.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
pub fn run_bin(args: &[String], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

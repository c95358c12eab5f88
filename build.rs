//! Sets `SECRET_GATE_COMMIT` for `--version`: the git commit the binary is
//! built from, so that an image or a binary found on a node can be traced
//! back to its source.
//!
//! The value depends only on the commit, never on the time or the machine,
//! so two builds of one commit stay byte-identical (`make repro`). Where
//! there is no `.git` (a source tarball, a container build context), the
//! builder passes the commit in the `SECRET_GATE_COMMIT` environment
//! variable (the Containerfile's `REVISION` build argument does); without
//! it, `--version` says `commit unknown`.

// clippy's print_stdout lint does not apply to build scripts: cargo reads
// a build script's instructions from its stdout.

use std::path::Path;
use std::process::Command;

const VAR: &str = "SECRET_GATE_COMMIT";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={VAR}");
    let given = std::env::var(VAR).ok().filter(|v| !v.trim().is_empty());
    let commit = match given {
        Some(value) => {
            let value = value.trim().to_owned();
            assert!(
                value == "unknown" || is_commit(&value),
                "{VAR}={value:?} is not a git commit: set it to the 40-hex-digit \
                 output of `git rev-parse HEAD`, or unset it"
            );
            value
        }
        None => from_git().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env={VAR}={commit}");
}

fn is_commit(value: &str) -> bool {
    (7..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_hexdigit())
}

fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
}

/// `git rev-parse HEAD`, if this package is the top of a git work tree (a
/// tarball unpacked inside some other repository must not take that
/// repository's commit). Asks cargo to run this again when HEAD moves.
fn from_git() -> Option<String> {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(Path::new(&top), Path::new(&manifest_dir)) {
        return None;
    }
    // HEAD, the branch it points at, and packed-refs (where a branch's
    // commit may live instead). In a linked work tree these are in
    // different directories; `--git-path` knows which.
    let mut watch = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in &watch {
        if let Some(path) = git(&["rev-parse", "--git-path", name]) {
            let path = Path::new(&top).join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    git(&["rev-parse", "HEAD"]).filter(|c| is_commit(c))
}

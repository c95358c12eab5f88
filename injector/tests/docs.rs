//! docs/injection.md carries the verbatim `inject --help` and `webhook
//! --help`, and names every annotation the injector owns. `UPDATE_DOCS=1
//! cargo test -p secret-gate-injector --test docs` (or `make docs`)
//! rewrites the blocks.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic fails the test, with its location"
)]

use std::path::Path;
use std::process::Command;

fn docs_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/injection.md")
}

/// `secret-gate-injector SUB --help`, checked against (or, with
/// `UPDATE_DOCS`, written into) its block in docs/injection.md.
fn check_help_block(sub: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_secret-gate-injector"))
        .args([sub, "--help"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    let path = docs_file();
    let text = std::fs::read_to_string(&path).unwrap();
    let begin = format!("<!-- BEGIN secret-gate-injector {sub} --help -->\n");
    let end = format!("<!-- END secret-gate-injector {sub} --help -->");
    let start = text.find(&begin).expect("BEGIN marker") + begin.len();
    let stop = text[start..].find(&end).expect("END marker") + start;
    let want = format!("```text\n{help}```\n");
    if text[start..stop] == want {
        return help;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{want}{}", &text[..start], &text[stop..])).unwrap();
        return help;
    }
    panic!("docs/injection.md: the {sub} --help block is out of date; run `make docs`");
}

#[test]
fn injection_doc_shows_the_current_help() {
    check_help_block("inject");
}

#[test]
fn injection_doc_shows_the_current_webhook_help() {
    let help = check_help_block("webhook");
    assert!(
        !help.contains("bench-floor")
            && !help.contains("test-review-delay")
            && !help.contains("test-review-hold")
    );
}

#[test]
fn injection_doc_lists_every_own_annotation() {
    let text = std::fs::read_to_string(docs_file()).unwrap();
    for name in secret_gate_injector::annotations::OWN {
        let row = format!("| `secret-gate.dev/{name}` |");
        assert!(
            text.contains(&row),
            "docs/injection.md has no table row for {name}"
        );
    }
}

//! docs/injection.md carries the verbatim `inject --help`, and names every
//! annotation the injector owns. `UPDATE_DOCS=1 cargo test -p
//! secret-gate-injector --test docs` (or `make docs`) rewrites the block.

use std::path::Path;
use std::process::Command;

fn docs_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/injection.md")
}

#[test]
fn injection_doc_shows_the_current_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_secret-gate-injector"))
        .args(["inject", "--help"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    let path = docs_file();
    let text = std::fs::read_to_string(&path).unwrap();
    let begin = "<!-- BEGIN secret-gate-injector inject --help -->\n";
    let end = "<!-- END secret-gate-injector inject --help -->";
    let start = text.find(begin).expect("BEGIN marker") + begin.len();
    let stop = text[start..].find(end).expect("END marker") + start;
    let want = format!("```text\n{help}```\n");
    if text[start..stop] == want {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{want}{}", &text[..start], &text[stop..])).unwrap();
        return;
    }
    panic!("docs/injection.md: the inject --help block is out of date; run `make docs`");
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

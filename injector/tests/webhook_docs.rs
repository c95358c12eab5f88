//! docs/injection.md carries the verbatim `webhook --help`. `UPDATE_DOCS=1
//! cargo test -p secret-gate-injector --test webhook_docs` (or `make
//! docs`) rewrites the block.

use std::path::Path;
use std::process::Command;

#[test]
fn injection_doc_shows_the_current_webhook_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_secret-gate-injector"))
        .args(["webhook", "--help"])
        .env_clear()
        .output()
        .expect("run --help");
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).expect("UTF-8 help");
    assert!(!help.contains("bench-floor") && !help.contains("test-review-delay"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/injection.md");
    let text = std::fs::read_to_string(&path).expect("docs/injection.md");
    let begin = "<!-- BEGIN secret-gate-injector webhook --help -->\n";
    let end = "<!-- END secret-gate-injector webhook --help -->";
    let start = text.find(begin).expect("BEGIN marker") + begin.len();
    let stop = text[start..].find(end).expect("END marker") + start;
    let want = format!("```text\n{help}```\n");
    if text[start..stop] == want {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{want}{}", &text[..start], &text[stop..]))
            .expect("write docs/injection.md");
        return;
    }
    panic!("docs/injection.md: the webhook --help block is out of date; run `make docs`");
}

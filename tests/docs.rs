//! The docs must agree with the binary: README and docs/configuration.md
//! carry the verbatim `--help` text, and docs/secret-gate.1 is the man page
//! generated from the same clap definition. Run with `UPDATE_DOCS=1` (or
//! `make docs`) to rewrite them after changing a flag.

#[path = "common/bounded.rs"]
mod bounded;
mod common;

use std::path::Path;

use clap::{CommandFactory, Parser};
use common::Gate;

fn help(args: &[&str]) -> String {
    // A clean environment, so `[env: X=value]` shows no local values.
    let out = Gate::binary().env_clear().args(args).run();
    out.assert_code(0);
    out.stdout
}

/// Checks (or with `UPDATE_DOCS=1` rewrites) the text between
/// `<!-- BEGIN name -->` and `<!-- END name -->` in `file`.
#[expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn check_block(file: &str, name: &str, body: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let begin = format!("<!-- BEGIN {name} -->\n");
    let end = format!("<!-- END {name} -->");
    let start = text
        .find(&begin)
        .unwrap_or_else(|| panic!("{file} has no {begin:?} marker"))
        + begin.len();
    let stop = text[start..].find(&end).expect("END marker") + start;
    let want = format!("```text\n{body}```\n");
    if text[start..stop] == want {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{want}{}", &text[..start], &text[stop..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!("{file}: the {name} block is out of date; run `make docs` (UPDATE_DOCS=1 cargo test --test docs)");
}

#[test]
fn readme_shows_the_current_help() {
    check_block("README.md", "secret-gate --help", &help(&["--help"]));
}

#[test]
fn configuration_reference_shows_every_subcommand_help() {
    for sub in ["watch", "check", "safe"] {
        let name = format!("secret-gate {sub} --help");
        check_block("docs/configuration.md", &name, &help(&[sub, "--help"]));
    }
}

#[test]
fn every_env_var_is_documented() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let cmd = secret_gate::cli::Cli::command();
    let mut vars = Vec::new();
    for sub in cmd.get_subcommands() {
        for arg in sub.get_arguments().chain(cmd.get_arguments()) {
            if let Some(env) = arg.get_env() {
                vars.push(env.to_string_lossy().into_owned());
            }
        }
    }
    assert!(vars.len() > 15, "{vars:?}");
    for var in vars {
        // Outside the verbatim help blocks too: the summary table.
        let outside_help = doc.split("<!-- BEGIN").next().unwrap();
        assert!(
            outside_help.contains(&format!("`{var}`")),
            "docs/configuration.md table lacks `{var}`"
        );
    }
}

#[test]
fn man_page_is_generated_from_the_cli() {
    let mut page = Vec::new();
    // The page names the release, not the commit `--version` adds: a
    // committed page cannot carry the commit it is committed in.
    let cmd = secret_gate::cli::Cli::command().version(env!("CARGO_PKG_VERSION"));
    clap_mangen::Man::new(cmd).render(&mut page).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/secret-gate.1");
    let current = std::fs::read(&path).unwrap_or_default();
    if current == page {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, page).unwrap();
        return;
    }
    panic!("docs/secret-gate.1 is out of date; run `make docs`");
}

#[test]
fn exit_codes_doc_lists_every_code() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/exit-codes.md"))
            .unwrap();
    for code in [
        secret_gate::ExitCode::Ready,
        secret_gate::ExitCode::NotReady,
        secret_gate::ExitCode::Usage,
        secret_gate::ExitCode::CommandNotExecutable,
        secret_gate::ExitCode::CommandNotFound,
        secret_gate::ExitCode::Interrupted,
        secret_gate::ExitCode::Terminated,
    ] {
        assert!(doc.contains(&format!("| `{}` |", code.code())), "{code:?}");
    }
}

#[test]
fn readme_pod_example_parses_and_its_gate_args_are_valid() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = readme[start..].find("```").unwrap() + start;
    let pod: serde_json::Value = serde_yaml_ng::from_str(&readme[start..end]).unwrap();
    let inits = pod["spec"]["initContainers"].as_array().unwrap();
    let gate = inits
        .iter()
        .find(|c| c["name"] == "secret-gate")
        .expect("a secret-gate init container");
    let args: Vec<String> = gate["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let parsed = secret_gate::cli::Cli::try_parse_from(
        std::iter::once("secret-gate".to_owned()).chain(args.iter().cloned()),
    );
    let cli = parsed.unwrap_or_else(|e| panic!("README args {args:?}: {e}"));
    secret_gate::config::Config::from_cli(&cli, None).unwrap();
    // The native sidecar comes before the gate.
    assert_eq!(inits[0]["restartPolicy"], "Always");
}

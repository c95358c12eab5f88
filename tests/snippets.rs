//! The docs' examples, run as a user would run them.
//!
//! - Every shell snippet marked `<!-- snippet: NAME -->` (the line before
//!   its ```` ```sh ```` fence) runs as one `bash` script, not line by
//!   line: a snippet that only works typed by hand (a race with a
//!   background server) fails here. It runs in a temp directory where
//!   `target/debug/` holds the built `fake-safe` and `secret-gate`, both
//!   are on `PATH`, `cargo build` is a no-op (the binaries are built), and
//!   the environment is empty but for `PATH` and `HOME`. Paths under
//!   `/tmp/` move into the temp directory, so runs never share state.
//! - The pod specs in docs/migrating-from-vsecm-init-container.md are read
//!   as YAML, and the gate runs with their arguments and variables against
//!   the fake Safe (with the pod's addresses pointed at the fake).
//!
//! Every run is bounded ([`HANG_LIMIT`]).

#[path = "common/bounded.rs"]
mod bounded;
mod common;
#[path = "common/fake.rs"]
#[expect(
    clippy::expect_used,
    reason = "the fake Safe's helpers fail the test with expect(); they are test code"
)]
mod fake;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::{free_port, wait_until, Gate, BIN, HANG_LIMIT};
use fake::{fake_safe_bin, FakeSafe};
use serde_yaml_ng::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read_doc(doc: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(doc)).unwrap_or_else(|e| panic!("{doc}: {e}"))
}

/// The fenced blocks of `lang` in `text`, each with the `<!-- snippet:
/// NAME -->` marker on the line before it, if any.
fn blocks(text: &str, lang: &str) -> Vec<(Option<String>, String)> {
    let fence = format!("```{lang}");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i] == fence {
            let name = i
                .checked_sub(1)
                .and_then(|p| lines[p].strip_prefix("<!-- snippet: "))
                .and_then(|rest| rest.strip_suffix(" -->"))
                .map(str::to_owned);
            let end = lines[i + 1..]
                .iter()
                .position(|l| *l == "```")
                .map_or(lines.len(), |n| i + 1 + n);
            out.push((name, lines[i + 1..end].join("\n") + "\n"));
            i = end;
        }
        i += 1;
    }
    out
}

/// Runs `body` as a bash script in a fresh directory set up as the module
/// doc says; panics with its output unless it exits 0.
fn run_as_script(doc: &str, name: &str, body: &str) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let root = dir.path();
    let debug = root.join("target/debug");
    let tmp = root.join("tmp");
    for d in [&debug, &tmp] {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    }
    for (name, bin) in [
        ("fake-safe", fake_safe_bin()),
        ("secret-gate", Path::new(BIN)),
    ] {
        symlink(bin, debug.join(name)).unwrap_or_else(|e| panic!("symlink {name}: {e}"));
    }
    let cargo = debug.join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\n# The test built the binaries; any other cargo command is a mistake.\n\
         [ \"$1\" = build ] && exit 0\necho \"cargo $*: not available to doc snippets\" >&2\nexit 1\n",
    )
    .unwrap_or_else(|e| panic!("write the cargo stand-in: {e}"));
    common::chmod(&cargo, 0o755);
    let script = root.join("snippet.sh");
    let body = body.replace("/tmp/", &format!("{}/", tmp.display()));
    std::fs::write(&script, &body).unwrap_or_else(|e| panic!("write the script: {e}"));
    let run = Gate::program("bash")
        .context(format!("{doc}, snippet {name}"))
        .arg(&script)
        .current_dir(root)
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", debug.display()),
        )
        .env("HOME", root)
        .run();
    assert!(
        run.status.success(),
        "{doc}: the snippet {name:?} fails when run as a script:\n{body}\n{}",
        run.dump()
    );
}

/// The marked snippets of every doc, run as scripts; the fake-Safe and
/// migration snippets must be among them.
#[test]
fn marked_shell_snippets_run_as_scripts() {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap_or_else(|e| panic!("docs/: {e}"))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.push(Path::new(ROOT).join("README.md"));
    docs.sort();
    let mut ran = Vec::new();
    for path in docs {
        let doc = path
            .strip_prefix(ROOT)
            .unwrap_or(&path)
            .display()
            .to_string();
        for (name, body) in blocks(&read_doc(&doc), "sh") {
            if let Some(name) = name {
                run_as_script(&doc, &name, &body);
                ran.push(format!("{doc}:{name}"));
            }
        }
    }
    for want in [
        "docs/safe-mode.md:fake-safe",
        "docs/migrating-from-vsecm-init-container.md:migration",
    ] {
        assert!(
            ran.iter().any(|r| r == want),
            "{want} was not run; ran {ran:?}"
        );
    }
}

/// The YAML blocks of the migration guide, as written (a `+`/`-` diff is
/// read as the spec after the change).
fn migration_specs() -> Vec<Value> {
    blocks(
        &read_doc("docs/migrating-from-vsecm-init-container.md"),
        "yaml",
    )
    .into_iter()
    .map(|(_, body)| {
        let after: String = body
            .lines()
            .filter(|l| !l.starts_with('-'))
            .map(|l| {
                l.strip_prefix('+')
                    .map_or(l.to_owned(), |rest| format!(" {rest}"))
                    + "\n"
            })
            .collect();
        serde_yaml_ng::from_str(&after)
            .unwrap_or_else(|e| panic!("a migration YAML block does not parse: {e}\n{after}"))
    })
    .collect()
}

/// The first init container of a spec: its args and its env as pairs.
fn container(spec: &Value) -> (Vec<String>, Vec<(String, String)>) {
    let c = &spec["initContainers"][0];
    let strings = |v: &Value| v.as_str().map(str::to_owned);
    let args = c["args"]
        .as_sequence()
        .map(|s| s.iter().filter_map(strings).collect())
        .unwrap_or_default();
    let env = c["env"]
        .as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|e| Some((strings(&e["name"])?, strings(&e["value"])?)))
                .collect()
        })
        .unwrap_or_default();
    (args, env)
}

/// The one-line change: the image's default command (`safe`) with
/// VSecM's variables plus the two added ones becomes ready on a secret
/// with both keys.
#[test]
fn the_migrated_init_container_runs_with_its_variables() {
    let specs = migration_specs();
    let (args, env) = container(&specs[0]);
    assert!(
        args.is_empty(),
        "the one-line change keeps the default command: {args:?}"
    );
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "SPIFFE_ENDPOINT_SOCKET",
        "VSECM_SAFE_ENDPOINT_URL",
        "SECRET_GATE_TIMEOUT",
        "SECRET_GATE_REQUIRED_KEYS",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let fake = FakeSafe::start(&[]);
    fake.register("example", r#"{"username":"u","password":"p"}"#);
    let mut gate = Gate::new("safe").context("migration guide, the one-line change");
    for (name, value) in &env {
        gate = gate.env(name, value);
    }
    gate.env("SPIFFE_ENDPOINT_SOCKET", fake.spiffe_endpoint())
        .env("VSECM_SAFE_ENDPOINT_URL", fake.safe_url())
        .run()
        .assert_code(0);
}

/// Replacing VSecM Sidecar: the native sidecar's args and variables run
/// as written, but for the file path and the pod IP, and write the secret.
#[test]
fn the_migrated_sidecar_runs_with_its_args_and_variables() {
    let specs = migration_specs();
    let (args, env) = container(&specs[1]);
    assert_eq!(args.first().map(String::as_str), Some("safe"), "{args:?}");
    let probe_port = specs[1]["initContainers"][0]["startupProbe"]["httpGet"]["port"].as_u64();
    let fake = FakeSafe::start(&[]);
    fake.register("example", r#"{"username":"u","password":"p"}"#);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let secrets = dir.path().join("secrets.json");
    let port = free_port();
    let mut gate = Gate::binary()
        .context("migration guide, replacing VSecM Sidecar")
        .args(&args);
    for (name, value) in &env {
        let value = match name.as_str() {
            "VSECM_SIDECAR_SECRETS_PATH" => secrets.display().to_string(),
            "POD_IP" => continue,
            "SECRET_GATE_LISTEN" => {
                assert_eq!(
                    Some(value.as_str()),
                    probe_port.map(|p| format!("$(POD_IP):{p}")).as_deref(),
                    "the probes must ask the port the gate listens on"
                );
                format!("127.0.0.1:{port}")
            }
            _ => value.clone(),
        };
        gate = gate.env(name, value);
    }
    let mut running = gate
        .env("SPIFFE_ENDPOINT_SOCKET", fake.spiffe_endpoint())
        .env("VSECM_SAFE_ENDPOINT_URL", fake.safe_url())
        .spawn();
    let written = wait_until(HANG_LIMIT, || {
        !running.is_running()
            || std::fs::read_to_string(&secrets).is_ok_and(|s| s.contains("password"))
    });
    running.assert_running("keeping running as a sidecar");
    assert!(
        written,
        "the sidecar never wrote {}\n{}",
        secrets.display(),
        running.dump()
    );
}

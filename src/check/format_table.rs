//! The format tables: for each format, which contents are ready and which
//! diagnosis the others get, row by row. These rows used to run through the
//! binary in `tests/volume.rs`, which keeps a few of them end to end.
//!
//! Each row gives the file name (it starts the diagnosis line), the format,
//! the content, the required keys, and the termination-log line expected,
//! or `""` for content that is ready. The line is built from the check's
//! parts as the volume scan builds it: a parse error described for a file
//! that may be mid-write, else one line per required key no document
//! carries.

use super::{describe_parse_error, missing_keys, parse, Format, Key};
use crate::problem::Problem;

/// (file, format, content, required keys, a termination-log line or "")
type Row = (
    &'static str,
    Format,
    &'static str,
    &'static str,
    &'static str,
);

/// The termination-log lines for `file` holding `content`; empty when ready.
fn diagnose(file: &str, format: Format, content: &str, keys: &str) -> Vec<String> {
    let doc = match parse(format, content.as_bytes()) {
        Ok(doc) => doc,
        Err(err) => {
            let what = describe_parse_error(&err, content.len(), "file");
            return vec![format!("- {file}: {what}")];
        }
    };
    let keys = if keys.is_empty() {
        Vec::new()
    } else {
        Key::parse_list(keys).unwrap()
    };
    missing_keys(&keys, &[&doc])
        .into_iter()
        .map(|key| format!("- {}", Problem::key_missing(file, key.as_str())))
        .collect()
}

fn run_rows(rows: &[Row]) {
    for &(file, format, content, keys, line) in rows {
        let got = diagnose(file, format, content, keys);
        if line.is_empty() {
            assert!(got.is_empty(), "{file} {content:?} keys {keys:?}: {got:?}");
        } else {
            assert!(
                got.iter().any(|l| l == line),
                "{file} {content:?} keys {keys:?}: want {line:?}, got {got:?}"
            );
        }
    }
}

#[test]
fn yaml_table() {
    run_rows(&[
        (
            "app.yaml",
            Format::Yaml,
            "db:\n  user: u\n  password: p\n",
            "/db/user,/db/password",
            "",
        ),
        (
            "app.yml",
            Format::Yaml,
            "user: u\npassword: p\n",
            "user,password",
            "",
        ),
        (
            "config",
            Format::Yaml,
            "user: u\npassword: p\n",
            "password",
            "",
        ),
        (
            "app.yaml",
            Format::Yaml,
            "db:\n  user: u\n",
            "/db/user,/db/password",
            r#"- app.yaml: key "/db/password" missing"#,
        ),
        (
            "app.yaml",
            Format::Yaml,
            "user: u\npassword: ~\n",
            "password",
            r#"- app.yaml: key "password" missing"#,
        ),
        (
            "app.yaml",
            Format::Yaml,
            "user: [u\n",
            "user",
            "- app.yaml: not valid YAML at line 2 column 1 (file is 9 bytes; still being written?)",
        ),
    ]);
}

#[test]
fn env_table() {
    run_rows(&[
        (
            "app.env",
            Format::Env,
            "# db\nexport USER=admin\nPASSWORD='pw'\n\n",
            "USER,PASSWORD",
            "",
        ),
        ("settings", Format::Env, "PASSWORD=\"pw\"\n", "PASSWORD", ""),
        (
            "app.env",
            Format::Env,
            "USER=admin\nPASSWORD=\n",
            "USER,PASSWORD",
            r#"- app.env: key "PASSWORD" missing"#,
        ),
        (
            "app.env",
            Format::Env,
            "USER=admin\nPASSWORD\n",
            "PASSWORD",
            "- app.env: not valid env at line 2 column 1: expected KEY=VALUE (file is 20 bytes; still being written?)",
        ),
        (
            "app.env",
            Format::Env,
            "# nothing yet\n",
            "PASSWORD",
            "- app.env: holds no variables, which carries no secret",
        ),
    ]);
}

#[test]
fn raw_table() {
    run_rows(&[
        ("token", Format::Raw, "t0k3n", "", ""),
        // Raw only asks for bytes: a PEM start line is enough.
        (
            "tls.crt",
            Format::Raw,
            "-----BEGIN CERTIFICATE-----\n",
            "",
            "",
        ),
        // Raw ignores content: a file that is not JSON still counts.
        ("token.json", Format::Raw, "{not json", "", ""),
        (
            "token",
            Format::Raw,
            " \n\t",
            "",
            "- token: empty (still being written?)",
        ),
        (
            "token",
            Format::Raw,
            "",
            "",
            "- token: empty (still being written?)",
        ),
    ]);
}

#[test]
fn json_pointer_table() {
    const DOC: &str = r#"{
        "db": {"password": "x", "user": null, "host": ""},
        "token": null,
        "empty": "",
        "port": 5432,
        "a/b": {"c~d": "v"}
    }"#;
    run_rows(&[
        (
            "s.json",
            Format::Json,
            DOC,
            "/db/password,port,/a~1b/c~0d,db",
            "",
        ),
        // VSecM's older sidecar wrote a JSON array of JSON-encoded secrets.
        (
            "s.json",
            Format::Json,
            r#"["{\"user\":\"u\"}", "{\"password\":\"p\"}"]"#,
            "user,password",
            "",
        ),
        (
            "s.json",
            Format::Json,
            DOC,
            "/db/password,/db/user",
            r#"- s.json: key "/db/user" missing"#,
        ),
        (
            "s.json",
            Format::Json,
            DOC,
            "/db/host",
            r#"- s.json: key "/db/host" missing"#,
        ),
        (
            "s.json",
            Format::Json,
            DOC,
            "token",
            r#"- s.json: key "token" missing"#,
        ),
        (
            "s.json",
            Format::Json,
            DOC,
            "empty",
            r#"- s.json: key "empty" missing"#,
        ),
        (
            "s.json",
            Format::Json,
            DOC,
            "/db/password/x",
            r#"- s.json: key "/db/password/x" missing"#,
        ),
    ]);
}

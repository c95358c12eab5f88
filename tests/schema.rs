//! `--schema`, end to end: the real binary against real directories and
//! real schema files. Violations name the file, the JSON Pointer and the
//! rule, never the value (a canary planted in every violating value must
//! not reach stderr, at any log level, nor the termination log); a schema
//! that cannot be used is a usage error at start (exit 2).
//!
//! Every run is a `check` or has a `--timeout`. Nothing asserts speed.

#[path = "common/bounded.rs"]
mod bounded;
mod common;

use std::path::PathBuf;

use common::{
    assert_log_has, assert_log_lacks, assert_no_canary, AtomicWriter, Fixture, CANARY, HANG_LIMIT,
    READY_TIMEOUT,
};

/// The schema of the README's example: `port` an integer, `password` at
/// least 16 characters, `url` a URI, exactly one of `user` or `token`.
const APP_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["password"],
  "properties": {
    "db": {"type": "object", "properties": {"port": {"type": "integer"}}},
    "password": {"type": "string", "minLength": 16},
    "url": {"type": "string", "format": "uri"}
  },
  "oneOf": [{"required": ["user"]}, {"required": ["token"]}]
}"#;

/// Writes `text` as a schema file beside the mount (as a `ConfigMap`
/// mounted elsewhere would be), returning its path.
fn schema_file(fx: &Fixture, name: &str, text: &str) -> PathBuf {
    let path = fx.root.path().join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

fn good_doc() -> String {
    format!(
        r#"{{"db":{{"port":5432}},"password":"{CANARY}-long","url":"https://db.test/x","user":"app"}}"#
    )
}

/// Every violating value holds the canary.
fn bad_doc() -> String {
    format!(
        r#"{{"db":{{"port":"{CANARY}"}},"password":"{}","url":"{CANARY} x","user":"a","token":"{CANARY}"}}"#,
        &CANARY[..10]
    )
}

#[test]
fn a_document_that_breaks_the_schema_is_named_by_pointer_and_rule_never_by_value() {
    let fx = Fixture::new();
    let schema = schema_file(&fx, "app.schema.json", APP_SCHEMA);
    fx.write("secrets.json", good_doc());
    let args = |fx: &Fixture| {
        fx.check()
            .args(["--file", "secrets.json", "--settle-time", "0"])
            .arg("--schema")
            .arg(&schema)
    };
    args(&fx).run().assert_code(0);

    fx.write("secrets.json", bad_doc());
    for (format, level) in [("text", "trace"), ("json", "debug")] {
        let run = args(&fx)
            .args(["--log-format", format, "--log-level", level])
            .run();
        run.assert_code(1);
        for line in [
            "- secrets.json: /db/port: must be an integer",
            "- secrets.json: /password: must be at least 16 characters long",
            "- secrets.json: /url: must be a valid uri (format)",
            "- secrets.json: (top level): matches more than one of the `oneOf` alternatives \
             (exactly one must match)",
        ] {
            assert_log_has(&fx, line, &run);
        }
        assert_no_canary(&fx.log(), "the termination log", &run.dump());
        assert_no_canary(&run.stderr, "stderr", &run.dump());
        assert_no_canary(&run.stdout, "stdout", &run.dump());
        assert!(
            run.stderr.contains("/db/port: must be an integer"),
            "{}",
            run.dump()
        );
    }
}

/// The schema runs after the parse and the required-key check: a file
/// that does not parse or lacks a key is reported as such, not as a
/// schema violation.
#[test]
fn the_schema_runs_after_the_parse_and_the_required_keys() {
    let fx = Fixture::new();
    let schema = schema_file(&fx, "s.json", APP_SCHEMA);
    let check = |fx: &Fixture| {
        fx.check()
            .args(["--file", "secrets.json", "--required-keys", "user"])
            .args(["--settle-time", "0"])
            .arg("--schema")
            .arg(&schema)
            .run()
    };
    fx.write("secrets.json", r#"{"password": 1"#);
    let run = check(&fx);
    run.assert_code(1);
    assert_log_lacks(&fx, "must be", &run);

    fx.write("secrets.json", r#"{"password": 1}"#);
    let run = check(&fx);
    run.assert_code(1);
    assert_log_has(&fx, "- secrets.json: key \"user\" missing", &run);
    assert_log_lacks(&fx, "must be", &run);
}

/// `FILE=SCHEMA` applies to one file; `SCHEMA` to every JSON, YAML and env
/// file. An env file is an object of strings; YAML files and YAML schemas
/// work too.
#[test]
fn a_schema_applies_to_its_file_or_to_every_file_with_a_tree() {
    let fx = Fixture::new();
    let port = schema_file(
        &fx,
        "port.yaml",
        "type: object\nproperties:\n  PORT:\n    type: string\n    pattern: '^[0-9]+$'\nrequired: [PORT]\n",
    );
    let integer = schema_file(
        &fx,
        "int.json",
        r#"{"properties": {"PORT": {"type": "integer"}}}"#,
    );
    fx.write("app.env", format!("PORT={CANARY}\n"));
    fx.write("app.yaml", "PORT: 8080\n");
    fx.write("ca.pem", "not read: no --file names it\n");
    let check = |schemas: &[String]| {
        let mut gate = fx
            .check()
            .args(["--file", "app.env", "--file", "app.yaml"])
            .args(["--settle-time", "0"]);
        for s in schemas {
            gate = gate.args(["--schema", s]);
        }
        gate.run()
    };
    let (port, integer) = (port.display(), integer.display());

    // Only app.env: its PORT is a string but not digits.
    let run = check(&[format!("app.env={port}")]);
    run.assert_code(1);
    assert_log_has(
        &fx,
        "- app.env: /PORT: must match the pattern ^[0-9]+$",
        &run,
    );
    assert_log_lacks(&fx, "app.yaml", &run);
    assert_no_canary(&fx.log(), "the termination log", &run.dump());

    // Every file: app.yaml's PORT is an integer, not a string.
    let run = check(&[port.to_string()]);
    run.assert_code(1);
    assert_log_has(&fx, "- app.yaml: /PORT: must be a string", &run);

    // An env value is always a string.
    let run = check(&[format!("app.yaml={port}"), format!("app.env={integer}")]);
    run.assert_code(1);
    assert_log_has(&fx, "- app.env: /PORT: must be an integer", &run);
    assert_log_has(&fx, "- app.yaml: /PORT: must be a string", &run);

    fx.write("app.env", "PORT=8080\n");
    check(&[format!("app.env={port}"), format!("app.yaml={integer}")]).assert_code(0);
}

/// `SECRET_GATE_SCHEMA` takes a comma-separated list, like the other
/// repeatable flags' variables.
#[test]
fn schemas_from_the_environment() {
    let fx = Fixture::new();
    let strict = schema_file(&fx, "strict.json", r#"{"required": ["token"]}"#);
    let loose = schema_file(&fx, "loose.json", r#"{"type": "object"}"#);
    fx.write("a.json", r#"{"user": "u"}"#);
    let run = fx
        .check()
        .args(["--file", "a.json"])
        .env(
            "SECRET_GATE_SCHEMA",
            format!("{}, a.json={}", loose.display(), strict.display()),
        )
        .run();
    run.assert_code(1);
    assert_log_has(
        &fx,
        "- a.json: (top level): required key \"token\" is missing",
        &run,
    );
}

/// A schema that cannot be read or compiled, or that reaches outside its
/// own file, stops the gate at start with exit 2 and says what to do.
#[test]
fn unusable_schemas_are_usage_errors() {
    let fx = Fixture::new();
    fx.write("a.json", r#"{"user": "u"}"#);
    fx.write("tls.pem", "x");
    let other = schema_file(&fx, "other.json", r#"{"type": "object"}"#);
    let table: Vec<(String, &str)> = vec![
        (
            r#"{"$ref": "https://json-schema.example/s.json"}"#.into(),
            "$ref may only point inside the schema file",
        ),
        (
            format!(r#"{{"$ref": "{}"}}"#, other.display()),
            "$ref may only point inside the schema file",
        ),
        (
            r#"{"$ref": "other.json#/x"}"#.into(),
            "$ref may only point inside the schema file",
        ),
        (
            r#"{"properties": {"a": {"pattern": "(?<=x)y"}}}"#.into(),
            "no lookaround or backreferences",
        ),
        (r#"{"type": "objekt"}"#.into(), "does not compile"),
        (r#"{"type": "object""#.into(), "is not valid JSON"),
        ("[]".into(), "must be an object"),
    ];
    for (text, want) in table {
        let schema = schema_file(&fx, "bad.json", &text);
        let run = fx
            .check()
            .args(["--file", "a.json"])
            .arg("--schema")
            .arg(&schema)
            .run();
        run.assert_code(2).assert_stderr(want);
        assert!(fx.log().contains(want), "{text}: {}", run.dump());
    }
    let good = other.display().to_string();
    let missing = fx.root.path().join("nope.json").display().to_string();
    let flags: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--file".into(), "a.json".into(), "--schema".into(), missing],
            "cannot be read",
        ),
        (
            vec![
                "--required-keys".into(),
                "a".into(),
                "--schema".into(),
                good.clone(),
            ],
            "--schema needs --file",
        ),
        (
            vec![
                "--file".into(),
                "a.json".into(),
                "--schema".into(),
                format!("b.json={good}"),
            ],
            "b.json is not one of the --file names",
        ),
        (
            vec![
                "--file".into(),
                "tls.pem".into(),
                "--schema".into(),
                format!("tls.pem={good}"),
            ],
            "a schema applies to JSON, YAML and env files",
        ),
        (
            vec!["--file".into(), "tls.pem".into(), "--schema".into(), good],
            "nothing for a schema to check",
        ),
    ];
    for (args, want) in flags {
        let run = fx.check().args(&args).run();
        run.assert_code(2).assert_stderr(want);
    }
}

/// `watch` judges each version the kubelet swaps in: a version that breaks
/// the schema is not ready; the next one that passes is.
#[test]
fn watch_waits_for_a_version_that_satisfies_the_schema() {
    let fx = Fixture::new();
    let schema = schema_file(&fx, "s.json", APP_SCHEMA);
    let mut writer = AtomicWriter::new(&fx.mount);
    writer.write(&[("secrets.json", bad_doc().as_bytes())]);
    let mut gate = fx
        .watch()
        .args(["--file", "secrets.json", "--timeout", READY_TIMEOUT])
        .arg("--schema")
        .arg(&schema)
        .spawn();
    gate.expect_stderr("/db/port: must be an integer");
    gate.assert_running("while the secret breaks the schema");
    writer.write(&[("secrets.json", good_doc().as_bytes())]);
    let done = gate.wait(HANG_LIMIT);
    done.assert_code(0);
    assert_no_canary(&done.stderr, "stderr", &done.dump());
}

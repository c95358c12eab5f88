//! The injector's document handling: arbitrary text as one input (YAML,
//! or JSON when it starts like JSON), through `secret-gate-injector
//! inject` exactly as the CLI runs it, minus the file reading.
//!
//! Beyond "never panics": exit 2 writes nothing to stdout; an answer with
//! exit 0 converges (injecting it again changes nothing, byte for byte,
//! and `--check` on it exits 0); a document with no opt-in annotation
//! anywhere is left as it was. A KRM `ResourceList` is answered with a new
//! list, so there the properties hold for its items: a failure (exit 2)
//! answers with the items unchanged and one `severity: error` result per
//! error; a success converges and leaves items without an opt-in alone.

use std::sync::OnceLock;

use clap::Parser as _;
use secret_gate_injector::cli::{exit, inject_inputs, Cli, Command, InjectArgs, RunOutput};
use secret_gate_injector::document::{Format, Input};

use crate::limited;

/// The property.
pub fn inject(data: &[u8]) {
    limited(|| check(data));
}

/// The harness's two command lines (`inject` and `inject --check`), parsed
/// once per process as the CLI parses its own: parsing them three times per
/// input took about a fifth of the input's time.
fn args(check: bool) -> &'static InjectArgs {
    static ARGS: OnceLock<[InjectArgs; 2]> = OnceLock::new();
    &ARGS.get_or_init(|| [parse_args(false), parse_args(true)])[usize::from(check)]
}

fn parse_args(check: bool) -> InjectArgs {
    let mut argv = vec!["secret-gate-injector", "inject"];
    if check {
        argv.push("--check");
    }
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Inject(inject_args),
            ..
        }) => inject_args,
        other => panic!("the harness's own command line does not parse: {other:?}"),
    }
}

fn input(text: &str) -> Input {
    let format = if text.trim_start().starts_with(['{', '[']) {
        Format::Json
    } else {
        Format::Yaml
    };
    Input {
        name: "fuzz".to_owned(),
        text: text.to_owned(),
        format,
    }
}

fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let first = inject_inputs(args(false), &[input(text)]);
    if let Some(given) = resource_list(text) {
        return krm(&given, &first);
    }
    match first.code {
        exit::BAD_INPUT => assert!(
            first.stdout.is_none(),
            "exit 2 with output on stdout: {:?}",
            first.stderr
        ),
        exit::OK => {
            let out = first.stdout.unwrap_or_default();
            if !text.contains("secret-gate.dev/") {
                assert_eq!(out, text, "a stream with no secret-gate annotation changed");
            }
            let again = inject_inputs(args(false), &[input(&out)]);
            assert_eq!(
                again.code,
                exit::OK,
                "the injector refused its own output: {:?}",
                again.stderr
            );
            assert_eq!(
                again.stdout.as_deref(),
                Some(out.as_str()),
                "injecting the output again changed it"
            );
            let check = inject_inputs(args(true), &[input(&out)]);
            assert_eq!(
                check.code,
                exit::OK,
                "--check on the output: {:?}",
                check.stderr
            );
        }
        other => panic!("inject exited {other} without --check"),
    }
}

/// The input's one document, when it is a KRM `ResourceList` (what makes
/// `inject` a KRM function), as JSON (null when a key is not a string).
fn resource_list(text: &str) -> Option<serde_json::Value> {
    let docs = secret_gate_injector::document::documents(&input(text)).ok()?;
    let mut values = docs.into_iter().filter_map(|d| d.value);
    let first = values.next()?;
    (values.next().is_none() && secret_gate_injector::krm::is_resource_list(&first))
        .then(|| serde_json::to_value(&first).unwrap_or_default())
}

/// A `ResourceList`'s items; none is an empty list, as KRM reads it (the
/// answer always carries `items`, also when the input had none).
fn items(list: &serde_json::Value) -> serde_json::Value {
    list.get("items")
        .cloned()
        .unwrap_or_else(|| serde_json::Value::Array(Vec::new()))
}

/// The KRM function. Its answer is a new `ResourceList` (with `results`),
/// never the input's text, so the properties are about the items: exit 2
/// answers with the items unchanged and one error result per error line;
/// exit 0 converges (the answer's items come back unchanged from a second
/// run) and leaves items without an opt-in annotation alone.
fn krm(given: &serde_json::Value, first: &RunOutput) {
    let Some(out) = first.stdout.as_deref() else {
        panic!(
            "the KRM function exited {} with nothing on stdout: {:?}",
            first.code, first.stderr
        );
    };
    let answer = resource_list(out)
        .unwrap_or_else(|| panic!("the KRM function's answer is not a ResourceList: {out}"));
    let severities: Vec<&str> = answer
        .get("results")
        .and_then(serde_json::Value::as_array)
        .map(|r| {
            r.iter()
                .map(|e| {
                    e.get("severity")
                        .and_then(|s| s.as_str())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    match first.code {
        exit::BAD_INPUT => {
            if !given.is_null() {
                assert_eq!(
                    items(&answer),
                    items(given),
                    "a failed KRM answer changed the items"
                );
            }
            assert!(
                severities.iter().all(|s| *s == "error"),
                "a failed KRM answer with a result that is not an error: {severities:?}"
            );
            assert_eq!(
                severities.len(),
                first.stderr.len(),
                "one error result per error line: {:?}",
                first.stderr
            );
        }
        exit::OK => {
            assert!(
                !severities.contains(&"error"),
                "exit 0 with an error result"
            );
            // `given` is null when the list has a key JSON cannot write (a
            // mapping as a key, say): then its items cannot be compared.
            if !given.is_null() && !given.to_string().contains("secret-gate.dev/") {
                assert_eq!(
                    items(&answer),
                    items(given),
                    "items with no secret-gate annotation changed"
                );
            }
            let again = inject_inputs(args(false), &[input(out)]);
            assert_eq!(
                again.code,
                exit::OK,
                "the KRM function refused its own answer: {:?}",
                again.stderr
            );
            let items_again = again
                .stdout
                .as_deref()
                .and_then(resource_list)
                .and_then(|a| a.get("items").cloned());
            assert_eq!(
                items_again.as_ref(),
                answer.get("items"),
                "running the KRM function on its answer changed the items"
            );
        }
        other => panic!("the KRM function exited {other} without --check"),
    }
}

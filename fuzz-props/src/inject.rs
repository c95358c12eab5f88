//! The injector's document handling: arbitrary text as one input (YAML,
//! or JSON when it starts like JSON), through `secret-gate-injector
//! inject` exactly as the CLI runs it, minus the file reading.
//!
//! Beyond "never panics": exit 2 writes nothing to stdout; an answer with
//! exit 0 converges (injecting it again changes nothing, byte for byte,
//! and `--check` on it exits 0); a document with no opt-in annotation
//! anywhere is left as it was.

use std::sync::OnceLock;

use clap::Parser as _;
use secret_gate_injector::cli::{exit, inject_inputs, Cli, Command, InjectArgs};
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

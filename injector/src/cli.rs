//! The `inject` command: files, directories or stdin in, the edited
//! manifests on stdout, one report line per object on stderr.
//!
//! Exit codes: 0 done; 1 with `--check` when anything would change; 2 bad
//! input (nothing is written to stdout then, except by the KRM function,
//! which answers a `ResourceList` it cannot process with its items
//! unchanged and `severity: error` results).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::document::{self, Document, Format, Input, Writer};
use crate::inject::{Injector, Settings};
use crate::krm;

/// Add secret-gate to workload manifests, from annotations on their pod
/// templates.
///
/// Opt a pod template in with `secret-gate.dev/inject: "true"`; every gate
/// flag --NAME is the annotation secret-gate.dev/NAME. See
/// docs/injection.md.
#[derive(Debug, Parser)]
#[command(name = "secret-gate-injector", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[expect(
    clippy::doc_markdown,
    reason = "the doc comment is the --help text, where backticks would show"
)]
pub enum Command {
    /// Inject the gate into the workloads of manifests and print them.
    ///
    /// Reads multi-document YAML, JSON and `kind: List`; Pods, Deployments,
    /// StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs
    /// and CronJobs are edited, everything else passes through byte for
    /// byte. When stdin holds a KRM ResourceList, answers with one (a KRM
    /// function for kustomize and kpt). Exit 0 done, 1 with --check when
    /// anything would change, 2 on bad input (nothing on stdout, except a
    /// ResourceList's answer: its items unchanged, with error results).
    Inject(InjectArgs),

    /// Serve the mutating admission webhook over HTTPS: POST /mutate
    /// injects the gate into Pods at creation, GET /healthz, GET /metrics.
    ///
    /// The certificate and key are reloaded when they change on disk. Exit
    /// 0 after SIGTERM (in-flight reviews finish), 1 when it cannot start
    /// (a missing or expired certificate, say; the diagnosis goes to the
    /// termination log), 2 on a usage error.
    Webhook(crate::webhook::Args),
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// A manifest file, a directory (its .yaml, .yml and .json files,
    /// recursively, in name order) or - for stdin (repeatable).
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "PATH",
        default_value = "-"
    )]
    pub files: Vec<PathBuf>,

    /// Output format [default: each document keeps its own].
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,

    /// Write nothing; exit 1 if any object would change (a CI drift check).
    #[arg(long)]
    pub check: bool,

    /// The gate's image [default: this release's].
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
}

/// `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

/// The exit codes.
pub mod exit {
    pub const OK: u8 = 0;
    pub const WOULD_CHANGE: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
}

/// Runs the program; returns its exit code.
#[must_use]
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::OK
            };
        }
    };
    let args = match cli.command {
        Command::Inject(args) => args,
        Command::Webhook(args) => return crate::webhook::run(&args),
    };
    let out = inject(&args);
    let mut stderr = std::io::stderr().lock();
    for line in &out.stderr {
        let _ = writeln!(stderr, "{line}");
    }
    if let Some(text) = out.stdout {
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            let _ = writeln!(stderr, "error: cannot write to stdout");
            return exit::BAD_INPUT;
        }
    }
    out.code
}

/// What a run prints and returns.
#[derive(Debug, Default)]
pub struct RunOutput {
    /// `None`: nothing is written to stdout.
    pub stdout: Option<String>,
    /// Report lines, warnings and errors.
    pub stderr: Vec<String>,
    pub code: u8,
}

fn bad(stderr: Vec<String>) -> RunOutput {
    RunOutput {
        stdout: None,
        stderr,
        code: exit::BAD_INPUT,
    }
}

/// `inject`, without touching stdout or stderr.
#[must_use]
pub fn inject(args: &InjectArgs) -> RunOutput {
    let mut inputs: Vec<Input> = Vec::new();
    for path in &args.files {
        match document::read(path) {
            Ok(more) => inputs.extend(more),
            Err(e) => return bad(vec![format!("error: {e}")]),
        }
    }
    inject_inputs(args, &inputs)
}

/// `inject` on inputs already read (the files of `args` are not read):
/// what the fuzz harness drives with arbitrary text.
#[must_use]
pub fn inject_inputs(args: &InjectArgs, inputs: &[Input]) -> RunOutput {
    let mut settings = Settings::default();
    if let Some(image) = &args.image {
        image.clone_into(&mut settings.image);
    }
    let mut errors = Vec::new();
    let mut parsed: Vec<(String, Vec<Document>)> = Vec::new();
    for input in inputs {
        match document::documents(input) {
            Ok(docs) => parsed.push((input.name.clone(), docs)),
            Err(e) => errors.push(format!("error: {e}")),
        }
    }
    if !errors.is_empty() {
        return bad(errors);
    }
    // A KRM function call: stdin is one ResourceList.
    if let [(_, docs)] = parsed.as_slice() {
        let content: Vec<&Document> = docs.iter().filter(|d| d.value.is_some()).collect();
        if let [doc] = content.as_slice() {
            if let Some(list) = doc.value.as_ref().filter(|v| krm::is_resource_list(v)) {
                return krm_run(args, settings, doc, list);
            }
        }
    }
    let injector = Injector::new(settings);
    let mut writer = Writer::new(args.output.map(|o| match o {
        OutputFormat::Yaml => Format::Yaml,
        OutputFormat::Json => Format::Json,
    }));
    let mut report = Vec::new();
    let mut changed = false;
    for (file, docs) in &parsed {
        for doc in docs {
            let Some(value) = &doc.value else {
                if let Err(e) = writer.push(doc, None) {
                    errors.push(format!("error: {file}: document {}: {e}", doc.index));
                }
                continue;
            };
            match injector.inject_value(value) {
                Ok(outcome) => {
                    for r in &outcome.reports {
                        report.push(r.to_string());
                        for w in &r.warnings {
                            report.push(format!("warning: {}: {w}", r.object));
                        }
                    }
                    if outcome.changed() && doc.has_comments() {
                        let names: Vec<String> = outcome
                            .reports
                            .iter()
                            .filter(|r| r.changed)
                            .map(|r| r.object.to_string())
                            .collect();
                        report.push(format!(
                            "warning: {}: comments not preserved in {file} document {} (the \
                             document was edited; see docs/injection.md)",
                            names.join(", "),
                            doc.index
                        ));
                    }
                    changed |= outcome.changed();
                    if let Err(e) = writer.push(doc, outcome.value.as_ref()) {
                        errors.push(format!("error: {file}: document {}: {e}", doc.index));
                    }
                }
                Err(e) => errors.push(format!("error: {file}: document {}: {e}", doc.index)),
            }
        }
    }
    if !errors.is_empty() {
        return bad(errors);
    }
    if args.check {
        return RunOutput {
            stdout: None,
            stderr: report,
            code: if changed {
                exit::WOULD_CHANGE
            } else {
                exit::OK
            },
        };
    }
    RunOutput {
        stdout: Some(writer.finish()),
        stderr: report,
        code: exit::OK,
    }
}

fn krm_run(
    args: &InjectArgs,
    settings: Settings,
    doc: &Document,
    list: &serde_yaml_ng::Value,
) -> RunOutput {
    let settings = match krm::settings(
        crate::value::get(list, "functionConfig"),
        settings,
        args.image.is_some(),
    ) {
        Ok(s) => s,
        Err(message) => {
            let problem = krm::Problem {
                message,
                object: None,
            };
            return krm_failed(args, doc, list, &[problem]);
        }
    };
    let injector = Injector::new(settings);
    let (answer, reports) = match krm::run(&injector, list) {
        Ok(x) => x,
        Err(problems) => return krm_failed(args, doc, list, &problems),
    };
    let changed = reports.iter().any(|r| r.changed);
    let mut stderr = Vec::new();
    for r in &reports {
        stderr.push(r.to_string());
        for w in &r.warnings {
            stderr.push(format!("warning: {}: {w}", r.object));
        }
    }
    if args.check {
        return RunOutput {
            stdout: None,
            stderr,
            code: if changed {
                exit::WOULD_CHANGE
            } else {
                exit::OK
            },
        };
    }
    match document::emit(&answer, krm_format(args, doc)) {
        Ok(text) => RunOutput {
            stdout: Some(text),
            stderr,
            code: exit::OK,
        },
        Err(e) => bad(vec![format!(
            "error: ResourceList: cannot write the answer: {e}"
        )]),
    }
}

/// The answer's format: `-o`, else the `ResourceList`'s own.
fn krm_format(args: &InjectArgs, doc: &Document) -> Format {
    match args.output {
        Some(OutputFormat::Json) => Format::Json,
        Some(OutputFormat::Yaml) => Format::Yaml,
        None => doc.format,
    }
}

/// A `ResourceList` the function cannot process: exit 2 with the problems
/// on stderr and, on stdout, the list with its items unchanged and a
/// `severity: error` result per problem (nothing with `--check`).
fn krm_failed(
    args: &InjectArgs,
    doc: &Document,
    list: &serde_yaml_ng::Value,
    problems: &[krm::Problem],
) -> RunOutput {
    let stderr = problems
        .iter()
        .map(|p| format!("error: ResourceList: {}", p.message))
        .collect();
    let stdout = if args.check {
        None
    } else {
        document::emit(&krm::failed(list, problems), krm_format(args, doc)).ok()
    };
    RunOutput {
        stdout,
        stderr,
        code: exit::BAD_INPUT,
    }
}

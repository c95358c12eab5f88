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

use crate::document::{self, Document, Format, Input, Spool, Writer};
use crate::inject::{Injector, Settings};
use crate::krm;

/// Add secret-gate to workload manifests, from annotations on their pod
/// templates.
///
/// Opt a pod template in with `secret-gate.dev/inject: "true"`; every gate
/// flag --NAME is the annotation secret-gate.dev/NAME. See
/// docs/injection.md.
///
/// With no arguments and a KRM ResourceList on stdin, it is the KRM
/// function (how kustomize runs exec functions).
#[derive(Debug, Parser)]
#[command(name = "secret-gate-injector", version, max_term_width = 100)]
#[expect(
    clippy::doc_markdown,
    reason = "the doc comment is the --help text, where backticks would show"
)]
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
    if std::env::args_os().len() == 1 {
        return bare();
    }
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
    let (out, spool) = inject(&args);
    let code = finish(out);
    if let Some(spool) = spool {
        let mut stdout = std::io::stdout().lock();
        if spool
            .copy_to(&mut stdout)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            let _ = writeln!(std::io::stderr(), "error: cannot write to stdout");
            return exit::BAD_INPUT;
        }
    }
    code
}

/// No arguments: kustomize runs an exec KRM function this way (its exec
/// spec has a path and no arguments), with a `ResourceList` on stdin. A
/// terminal on stdin gets the usage; anything but a `ResourceList` is
/// refused, saying what to run instead.
fn bare() -> u8 {
    use clap::CommandFactory;
    use std::io::IsTerminal;
    let mut stderr = std::io::stderr().lock();
    if std::io::stdin().is_terminal() {
        let _ = write!(stderr, "{}", Cli::command().render_help());
        return exit::BAD_INPUT;
    }
    let inputs = match document::read(std::path::Path::new("-")) {
        Ok(inputs) => inputs,
        Err(e) => {
            let _ = writeln!(stderr, "error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let is_list = inputs.iter().all(|input| {
        document::documents(input).is_ok_and(|docs| {
            let values: Vec<_> = docs.iter().filter_map(|d| d.value.as_ref()).collect();
            matches!(values.as_slice(), [v] if krm::is_resource_list(v))
        })
    });
    if !is_list {
        let _ = writeln!(
            stderr,
            "error: with no subcommand, stdin must be a KRM ResourceList (kustomize runs exec \
             functions this way); to inject manifests, run `secret-gate-injector inject -f PATH`"
        );
        return exit::BAD_INPUT;
    }
    let args = InjectArgs {
        files: Vec::new(),
        output: None,
        check: false,
        image: None,
    };
    finish(inject_inputs(&args, &inputs))
}

/// Prints a run's output; returns its exit code.
fn finish(out: RunOutput) -> u8 {
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

/// `inject` over files and stdin: each input is read when its turn comes,
/// and its documents are parsed, injected and written one at a time, so
/// memory follows the largest document, not the whole input. The output is
/// spooled (see [`Spool`]) and handed back only if every document went
/// through: a run that fails writes nothing. A `ResourceList` on stdin (or
/// as the one input) is the KRM function's, answered in memory.
#[must_use]
pub fn inject(args: &InjectArgs) -> (RunOutput, Option<Spool>) {
    let mut origins = Vec::new();
    for path in &args.files {
        match document::origins(path) {
            Ok(more) => origins.extend(more),
            Err(e) => return (bad(vec![format!("error: {e}")]), None),
        }
    }
    let mut budget = document::MAX_TOTAL;
    if let [origin] = origins.as_slice() {
        let input = match document::read_origin(origin, &mut budget) {
            Ok(input) => input,
            Err(e) => return (bad(vec![format!("error: {e}")]), None),
        };
        if input.text.contains("ResourceList") {
            return (inject_inputs(args, std::slice::from_ref(&input)), None);
        }
        let mut session = Session::new(args, Spool::default());
        session.input(&input);
        return session.finish();
    }
    let mut session = Session::new(args, Spool::default());
    for origin in &origins {
        match document::read_origin(origin, &mut budget) {
            Ok(input) => session.input(&input),
            Err(e) => session.errors.push(format!("error: {e}")),
        }
    }
    session.finish()
}

/// `inject` on inputs already read (the files of `args` are not read),
/// output in memory: what the fuzz harness drives with arbitrary text.
#[must_use]
pub fn inject_inputs(args: &InjectArgs, inputs: &[Input]) -> RunOutput {
    // A KRM function call: stdin is one ResourceList.
    if let [input] = inputs {
        let mut content =
            document::each(input).filter(|d| !matches!(d, Ok(d) if d.value.is_none()));
        if let (Some(Ok(doc)), None) = (content.next(), content.next()) {
            if let Some(why) = doc.lenient.as_deref() {
                return bad(vec![format!(
                    "error: {}: the injector's YAML 1.1 reader refuses its layout ({why}), which \
                     kubectl's reader tolerates: fix the indentation there and run again",
                    input.name
                )]);
            }
            if let Some(list) = doc.value.as_ref().filter(|v| krm::is_resource_list(v)) {
                let settings = settings(args);
                return krm_run(args, settings, &doc, list);
            }
        }
    }
    let mut session = Session::new(args, String::new());
    for input in inputs {
        session.input(input);
    }
    let (mut out, text) = session.finish();
    out.stdout = text;
    out
}

fn settings(args: &InjectArgs) -> Settings {
    let mut settings = Settings::default();
    if let Some(image) = &args.image {
        image.clone_into(&mut settings.image);
    }
    settings
}

/// The objects a document's injection changed, as the report names them.
fn changed_objects(outcome: &crate::inject::Outcome) -> String {
    let names: Vec<String> = outcome
        .reports
        .iter()
        .filter(|r| r.changed)
        .map(|r| r.object.to_string())
        .collect();
    names.join(", ")
}

/// One run over any number of inputs, a document at a time.
struct Session<W> {
    injector: Injector,
    writer: Writer<W>,
    check: bool,
    report: Vec<String>,
    errors: Vec<String>,
    changed: bool,
}

impl<W: std::fmt::Write> Session<W> {
    fn new(args: &InjectArgs, out: W) -> Self {
        let format = args.output.map(|o| match o {
            OutputFormat::Yaml => Format::Yaml,
            OutputFormat::Json => Format::Json,
        });
        Self {
            injector: Injector::new(settings(args)),
            writer: Writer::to(out, format),
            check: args.check,
            report: Vec::new(),
            errors: Vec::new(),
            changed: false,
        }
    }

    /// Every document of one input; after an error the rest are still
    /// checked, so that every problem is reported.
    fn input(&mut self, input: &Input) {
        for doc in document::each(input) {
            match doc {
                Ok(doc) => self.document(&input.name, &doc),
                Err(e) => {
                    self.errors.push(format!("error: {e}"));
                    // The rest of a stream that does not split or parse
                    // cannot be trusted to be where it seems.
                    if e.index.is_none() || input.format == Format::Json {
                        break;
                    }
                }
            }
        }
    }

    fn document(&mut self, file: &str, doc: &Document) {
        let write = !self.check && self.errors.is_empty();
        let Some(value) = &doc.value else {
            if write {
                if let Err(e) = self.writer.push(doc, None) {
                    self.errors
                        .push(format!("error: {file}: document {}: {e}", doc.index));
                }
            }
            return;
        };
        match self.injector.inject_value(value) {
            Ok(outcome) if outcome.changed() && doc.lenient.is_some() => {
                let why = doc.lenient.as_deref().unwrap_or_default();
                let names = changed_objects(&outcome);
                self.errors.push(format!(
                    "error: {file}: document {}: {}: the injector must edit it, but its YAML 1.1 \
                     reader refuses its layout ({why}), which kubectl's reader tolerates: fix \
                     the indentation there (a closing ] or a quoted scalar's continuation lines \
                     indented deeper than their key) and run again",
                    doc.index, names
                ));
            }
            Ok(outcome) => {
                for r in &outcome.reports {
                    self.report.push(r.to_string());
                    for w in &r.warnings {
                        self.report.push(format!("warning: {}: {w}", r.object));
                    }
                }
                if outcome.changed() && doc.has_comments() {
                    let names = changed_objects(&outcome);
                    self.report.push(format!(
                        "warning: {}: comments not preserved in {file} document {} (the \
                         document was edited; see docs/injection.md)",
                        names, doc.index
                    ));
                }
                self.changed |= outcome.changed();
                if write {
                    if let Err(e) = self.writer.push(doc, outcome.value.as_ref()) {
                        self.errors
                            .push(format!("error: {file}: document {}: {e}", doc.index));
                    }
                }
            }
            Err(e) => self
                .errors
                .push(format!("error: {file}: document {}: {e}", doc.index)),
        }
    }

    /// The run's report and exit code, and the output if it is to be
    /// written.
    fn finish(self) -> (RunOutput, Option<W>) {
        if !self.errors.is_empty() {
            return (bad(self.errors), None);
        }
        let code = if self.check && self.changed {
            exit::WOULD_CHANGE
        } else {
            exit::OK
        };
        let out = RunOutput {
            stdout: None,
            stderr: self.report,
            code,
        };
        (out, (!self.check).then(|| self.writer.finish()))
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

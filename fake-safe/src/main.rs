//! `fake-safe`: the fake VSecM Safe and SPIFFE Workload API. Everything
//! lives in the `fake_safe` library; this parses arguments, starts logging and
//! the runtime, and maps the result to an exit code (0 ok, 1 failed,
//! 2 usage error from clap).

use std::process::ExitCode;

use clap::Parser as _;
use fake_safe::cli::{Cli, Command};
use fake_safe::FakeSafe;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("FAKE_SAFE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,fake_safe=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fake-safe: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let shutdown = fake_safe::termination_signal()?;
                let server = FakeSafe::bind(args.into_options()).await?;
                ready();
                server.run(shutdown).await
            })
        }
        Command::Wait(args) => args.run(),
        Command::Register(args) => args.run(),
        Command::Fault(args) => args.run(),
        Command::Agent(args) => args.run(),
    }
}

/// Prints the ready line. A closed stdout (nobody waiting for the line) is
/// not an error, so this writes instead of `println!`, which would panic.
fn ready() {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "fake-safe: ready").and_then(|()| out.flush());
}

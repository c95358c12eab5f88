use clap::Parser;

use secret_gate::cli::Cli;

fn main() -> std::process::ExitCode {
    // clap exits 2 on a usage error and 0 for --help/--version.
    let cli = Cli::parse();
    let code = secret_gate::run::run_cli(&cli).code();
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

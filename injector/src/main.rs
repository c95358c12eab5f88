fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(secret_gate_injector::cli::main())
}

fn main() -> std::process::ExitCode {
    let code = secret_gate::entry::main().code();
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

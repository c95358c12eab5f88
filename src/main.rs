fn main() -> std::process::ExitCode {
    let code = secret_gate::run::main_entry().code();
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

//! Exec mode: once ready, become the command given after `--` (the
//! convention of linkerd-await, dockerize and wait4x).
//!
//! The exec happens in the thin entry ([`crate::entry`]), after the
//! async runtime is shut down, so no task or thread of the gate is left
//! half-way. Every file descriptor the gate opens is close-on-exec (inotify
//! is opened with `IN_CLOEXEC`, sockets with `SOCK_CLOEXEC`, the
//! termination log with `O_CLOEXEC`), so none leaks into the command; a
//! test lists `/proc/self/fd` from the command to hold that.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;

use crate::exit::ExitCode;
use crate::report::report_stop;

/// Replaces this process with `command` (program and arguments). Returns
/// only if the exec failed: 127 when the program does not exist, 126 when
/// it exists but cannot be executed, each with a diagnosis in the
/// termination log.
#[must_use]
pub fn replace_process(command: &[OsString], termination_log: Option<&Path>) -> ExitCode {
    let Some((program, args)) = command.split_first() else {
        return ExitCode::Ready;
    };
    tracing::info!(command = %Path::new(program).display(), "ready; running the command in place of the gate");
    crate::rlimit::restore_nofile();
    let error = std::process::Command::new(program).args(args).exec();
    let (code, diagnosis) = explain(program, &error);
    report_stop(termination_log, &diagnosis);
    code
}

/// The exit code and diagnosis for a failed exec.
fn explain(program: &OsString, error: &std::io::Error) -> (ExitCode, String) {
    let shown = Path::new(program).display().to_string();
    let has_slash = program.to_string_lossy().contains('/');
    let raw = error.raw_os_error();
    if raw == Some(libc::ENOENT) {
        let why = if has_slash {
            format!("{shown} does not exist (or its interpreter named on the #! line does not)")
        } else {
            let path = std::env::var("PATH").unwrap_or_default();
            format!("{shown} was not found in PATH ({path})")
        };
        return (
            ExitCode::CommandNotFound,
            format!(
                "secret-gate: exec: the secret is ready, but the command cannot be run: {why}\n"
            ),
        );
    }
    let why = match raw {
        Some(libc::EACCES) => {
            "permission denied (is it executable, and on a filesystem not mounted noexec?)"
                .to_owned()
        }
        Some(libc::ENOEXEC) => "not a binary or script this system can run (wrong architecture, or a script without #!)".to_owned(),
        Some(libc::EISDIR) => "it is a directory".to_owned(),
        _ => error.to_string(),
    };
    (
        ExitCode::CommandNotExecutable,
        format!(
            "secret-gate: exec: the secret is ready, but the command {shown} cannot be executed: {why}\n"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::explain;
    use crate::exit::ExitCode;

    #[test]
    fn errors_map_to_the_shell_codes() {
        let not_found = std::io::Error::from_raw_os_error(libc::ENOENT);
        let (code, text) = explain(&"no-such-cmd".into(), &not_found);
        assert_eq!(code, ExitCode::CommandNotFound);
        assert!(text.contains("no-such-cmd was not found in PATH"), "{text}");
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        let (code, text) = explain(&"/tmp/x".into(), &denied);
        assert_eq!(code, ExitCode::CommandNotExecutable);
        assert!(
            text.contains("/tmp/x cannot be executed: permission denied"),
            "{text}"
        );
    }
}

//! Exec mode: once ready, become the command given after `--` (the
//! convention of linkerd-await, dockerize and wait4x).
//!
//! The exec happens in the thin entry ([`crate::entry`]), after the
//! async runtime is shut down, so no task or thread of the gate is left
//! half-way. Every file descriptor the gate opens is close-on-exec (inotify
//! is opened with `IN_CLOEXEC`, sockets with `SOCK_CLOEXEC`, the
//! termination log with `O_CLOEXEC`), so none leaks into the command; a
//! test lists `/proc/self/fd` from the command to hold that.
//!
//! The exec is `execve(2)` itself, with the PATH search done here, and no
//! `/bin/sh` fallback: glibc's `execvp` runs a file the kernel refuses
//! (`ENOEXEC`) as a shell script, musl's does not, so the same pod would
//! behave differently with each build. Here a script without `#!` and a
//! file that is not a binary for this machine both fail with 126 and a
//! diagnosis, in every build.
//!
//! The command gets what a shell's `exec` would give it: the gate's
//! environment and standard streams, no blocked signal, SIGPIPE at its
//! default (Rust ignores it in the gate), SIGTERM and SIGINT at their
//! defaults (the gate handled them), and any other signal as the gate
//! found it: a gate started under `nohup` passes SIGHUP on ignored, which
//! is what `nohup` is for.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
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
    let error = exec(program, args);
    let (code, diagnosis) = explain(program, &error);
    report_stop(termination_log, &diagnosis);
    code
}

/// The PATH searched when PATH is unset, as glibc's `execvp` does.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// `execvp(3)` without the shell fallback: execve each candidate, skipping
/// the PATH entries where it does not exist, until one runs (no return)
/// or fails for a reason another entry would not change. Returns the
/// error: `EACCES` if some candidate was not executable and none ran,
/// else `ENOENT`, as `execvp` reports.
fn exec(program: &OsStr, args: &[OsString]) -> std::io::Error {
    let words = match std::iter::once(program)
        .chain(args.iter().map(OsString::as_os_str))
        .map(c_string)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(words) => words,
        Err(error) => return error,
    };
    if program.is_empty() {
        return std::io::Error::from_raw_os_error(libc::ENOENT);
    }
    with_default_signals(|| search_and_exec(program, &words))
}

/// Tries each candidate for `program` in turn (see [`exec`]).
fn search_and_exec(program: &OsStr, words: &[CString]) -> std::io::Error {
    if program.as_bytes().contains(&b'/') {
        return execv(&words[0], words);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let mut denied = None;
    for dir in path.as_bytes().split(|&b| b == b':') {
        // An empty entry is the current directory, as in execvp.
        let dir = if dir.is_empty() { b".".as_slice() } else { dir };
        let candidate = Path::new(OsStr::from_bytes(dir)).join(program);
        let Ok(candidate) = c_string(candidate.as_os_str()) else {
            continue;
        };
        let error = execv(&candidate, words);
        match error.raw_os_error() {
            Some(libc::EACCES) => denied = Some(error),
            Some(libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT) => {}
            _ => return error,
        }
    }
    denied.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT))
}

fn execv(path: &CString, argv: &[CString]) -> std::io::Error {
    match nix::unistd::execv(path, argv) {
        Err(errno) => std::io::Error::from(errno),
        Ok(never) => match never {},
    }
}

fn c_string(arg: &OsStr) -> std::io::Result<CString> {
    CString::new(arg.as_bytes()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "an argument contains a NUL byte",
        )
    })
}

/// Runs `exec` with what std's `Command::exec` would reset: the signal
/// mask emptied, and SIGPIPE, which the Rust runtime ignores, at its
/// default. Signals the gate handled (SIGTERM, SIGINT) return to their
/// defaults by the exec itself. If `exec` returns (it failed), SIGPIPE is
/// ignored again, so writing the diagnosis to a closed pipe cannot kill
/// the gate before it exits with 126 or 127.
fn with_default_signals(exec: impl FnOnce() -> std::io::Error) -> std::io::Error {
    use nix::sys::signal::{SigHandler, SigSet, Signal};
    let _ = SigSet::empty().thread_set_mask();
    // SAFETY: SIG_DFL and SIG_IGN install no handler, so no code of ours
    // can run in signal context; the calls only change the disposition.
    #[expect(
        unsafe_code,
        reason = "nix's signal() is unsafe for handlers; SigDfl and SigIgn are not"
    )]
    let set = |handler| unsafe { nix::sys::signal::signal(Signal::SIGPIPE, handler) };
    let _ = set(SigHandler::SigDfl);
    let error = exec();
    let _ = set(SigHandler::SigIgn);
    error
}

/// The exit code and diagnosis for a failed exec.
fn explain(program: &OsStr, error: &std::io::Error) -> (ExitCode, String) {
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
        let (code, text) = explain(std::ffi::OsStr::new("no-such-cmd"), &not_found);
        assert_eq!(code, ExitCode::CommandNotFound);
        assert!(text.contains("no-such-cmd was not found in PATH"), "{text}");
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        let (code, text) = explain(std::ffi::OsStr::new("/tmp/x"), &denied);
        assert_eq!(code, ExitCode::CommandNotExecutable);
        assert!(
            text.contains("/tmp/x cannot be executed: permission denied"),
            "{text}"
        );
    }
}

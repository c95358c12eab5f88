//! The process exit codes: the one place they are defined and documented.
//!
//! These numbers are a contract with manifests, scripts and users; see
//! `docs/exit-codes.md`. Add new codes, never renumber old ones.

/// How a run of secret-gate ended, as a process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Every required secret is present and valid.
    Ready,
    /// Not ready when the deadline passed (`watch`, `safe`) or right now (`check`).
    NotReady,
    /// The command line or the environment is wrong; retrying will not help.
    Usage,
    /// Ready, but the command given after `--` could not be run: found,
    /// but not executable (the shell's 126).
    CommandNotExecutable,
    /// Ready, but the command given after `--` was not found (the shell's 127).
    CommandNotFound,
    /// Stopped by SIGINT (128 + 2).
    Interrupted,
    /// Stopped by SIGTERM (128 + 15).
    Terminated,
}

impl ExitCode {
    /// The numeric code handed to the operating system.
    #[must_use]
    pub const fn code(self) -> i32 {
        match self {
            Self::Ready => 0,
            Self::NotReady => 1,
            Self::Usage => 2,
            Self::CommandNotExecutable => 126,
            Self::CommandNotFound => 127,
            Self::Interrupted => 130,
            Self::Terminated => 143,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ExitCode;

    #[test]
    fn codes_are_the_documented_contract() {
        let table = [
            (ExitCode::Ready, 0),
            (ExitCode::NotReady, 1),
            (ExitCode::Usage, 2),
            (ExitCode::CommandNotExecutable, 126),
            (ExitCode::CommandNotFound, 127),
            (ExitCode::Interrupted, 130),
            (ExitCode::Terminated, 143),
        ];
        for (exit, code) in table {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
    }

    #[test]
    fn signal_codes_follow_the_shell_convention() {
        assert_eq!(ExitCode::Interrupted.code(), 128 + 2);
        assert_eq!(ExitCode::Terminated.code(), 128 + 15);
    }
}

//! The one bounded-process helper: every process a test starts (the
//! gate, the fake Safe, podman, a shell) goes through [`Gate`], runs as a
//! [`Running`] that captures its output and is killed when dropped, and
//! ends as a [`Finished`]. Every wait is bounded.
//!
//! Included by `common/mod.rs` and by `common/fake.rs` (which the
//! fake-safe package and the bench also include), so it uses nothing else
//! from `tests/common`.
#![allow(dead_code)] // each test crate uses a part of these helpers

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Upper bound on how long any one process may run before the test calls
/// it a hang, kills it and fails. Far above every `--timeout` the tests
/// pass.
pub const HANG_LIMIT: Duration = Duration::from_secs(60);

/// The uid and gid of `nobody`, used to run the gate unprivileged.
pub const NOBODY: u32 = 65_534;

/// True when the tests run as root (file permissions do not apply).
#[must_use]
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// A command line, not yet started: [`Gate::program`] for any program a
/// test runs (`podman`, `mkfifo`, a shell, the fake Safe), and in
/// `common/mod.rs` [`Gate::new`] for the real binary. Every test starts its
/// processes through this, so every one of them is bounded, captured and
/// killed on drop in the same way.
pub struct Gate {
    cmd: Command,
    line: Vec<String>,
}

impl Gate {
    /// Any other program, with the test's environment and the same
    /// bounded waits and output capture as the gate.
    #[must_use]
    pub fn program(program: impl AsRef<OsStr>) -> Self {
        let mut cmd = Command::new(program.as_ref());
        cmd.stdin(Stdio::null());
        // SAFETY: `default_signals` makes only async-signal-safe calls
        // (sigaction, sigprocmask), as the code between fork and exec must.
        #[expect(
            unsafe_code,
            reason = "pre_exec is unsafe; the hook below is async-signal-safe"
        )]
        unsafe {
            cmd.pre_exec(default_signals);
        }
        Self {
            cmd,
            line: vec![program.as_ref().to_string_lossy().into_owned()],
        }
    }

    /// Shows the program as `name` in failure messages.
    #[must_use]
    pub fn shown_as(mut self, name: &str) -> Self {
        name.clone_into(&mut self.line[0]);
        self
    }

    /// Does not pass the variable `name` on from the test's environment.
    #[must_use]
    pub fn env_remove(mut self, name: impl AsRef<OsStr>) -> Self {
        self.cmd.env_remove(name);
        self
    }

    #[must_use]
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.line.push(arg.as_ref().to_string_lossy().into_owned());
        self.cmd.arg(arg);
        self
    }

    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            self = self.arg(arg);
        }
        self
    }

    #[must_use]
    pub fn env(mut self, name: &str, value: impl AsRef<OsStr>) -> Self {
        self.line
            .insert(0, format!("{name}={}", value.as_ref().to_string_lossy()));
        self.cmd.env(name, value);
        self
    }

    #[must_use]
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<OsStr>,
    {
        for (name, value) in vars {
            self = self.env(name.as_ref(), value);
        }
        self
    }

    /// Starts from an empty environment: only what [`Gate::env`] adds.
    #[must_use]
    pub fn env_clear(mut self) -> Self {
        self.line.insert(0, "env -i".into());
        self.cmd.env_clear();
        self
    }

    #[must_use]
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.line
            .insert(0, format!("(in {})", dir.as_ref().display()));
        self.cmd.current_dir(dir);
        self
    }

    /// Names where the command came from (a manifest, a table row) in
    /// every failure message about it.
    #[must_use]
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.line.insert(0, format!("[{what}]"));
        self
    }

    /// Runs the gate as `nobody` when the tests run as root, so that file
    /// permissions apply to it. A no-op otherwise.
    #[must_use]
    pub fn unprivileged(mut self) -> Self {
        if is_root() {
            self.cmd.uid(NOBODY).gid(NOBODY);
            self.line.insert(0, format!("(as uid {NOBODY})"));
        }
        self
    }

    /// Starts the process; the error if it cannot be started.
    pub fn try_spawn(mut self) -> std::io::Result<Running> {
        let stdout = Capture::new()?;
        let stderr = Capture::new()?;
        self.cmd
            .stdout(stdout.for_child()?)
            .stderr(stderr.for_child()?);
        let child = self.cmd.spawn()?;
        Ok(Running {
            child,
            stdout,
            stderr,
            started: Instant::now(),
            status: None,
            line: self.line.join(" "),
        })
    }

    /// Starts the process; panics if it cannot be started.
    #[must_use]
    pub fn spawn(self) -> Running {
        let line = self.line.join(" ");
        self.try_spawn()
            .unwrap_or_else(|e| panic!("cannot start {line}: {e}"))
    }

    /// Starts the process and waits for it to exit, at most [`HANG_LIMIT`].
    #[must_use]
    pub fn run(self) -> Finished {
        self.spawn().wait(HANG_LIMIT)
    }
}

/// Gives the child every signal at its default disposition, none blocked,
/// whatever the test runner inherited: under `nohup` SIGHUP is ignored,
/// in a non-interactive shell's background job SIGINT and SIGQUIT are, and
/// a shell started with a signal ignored cannot `trap` it. (std already
/// resets SIGPIPE and the mask; this covers the rest.)
fn default_signals() -> std::io::Result<()> {
    for signal in 1..libc::SIGRTMIN() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler; sigaction is async-signal-safe.
        #[expect(unsafe_code, reason = "no safe sigaction without a new crate")]
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            // Signal numbers the kernel reserves fail with EINVAL: skip them.
            libc::sigaction(signal, &raw const action, std::ptr::null_mut());
        }
    }
    // SAFETY: an empty set, filled by sigemptyset before use.
    #[expect(unsafe_code, reason = "no safe sigprocmask without a new crate")]
    let unblocked = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const set, std::ptr::null_mut())
    };
    if unblocked == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One output stream of the child, in an anonymous temp file: a chatty
/// child never blocks on a full pipe, and a grandchild that keeps the
/// stream open never blocks the test. Read with `pread`, which leaves the
/// offset the child writes at alone.
struct Capture {
    file: File,
}

impl Capture {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            file: tempfile::tempfile()?,
        })
    }

    fn for_child(&self) -> std::io::Result<Stdio> {
        Ok(Stdio::from(self.file.try_clone()?))
    }

    /// Everything written so far.
    fn text(&self) -> String {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match self.file.read_at(&mut chunk, bytes.len() as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A running process. Dropping it kills the process.
pub struct Running {
    child: Child,
    stdout: Capture,
    stderr: Capture,
    started: Instant,
    status: Option<ExitStatus>,
    line: String,
}

impl Running {
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How long since the process was started.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// True while the process has not exited (checked with `try_wait`).
    pub fn is_running(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("try_wait: {e}"));
        }
        self.status.is_none()
    }

    /// Panics, with what the process printed, unless it is still running.
    pub fn assert_running(&mut self, when: &str) {
        let running = self.is_running();
        assert!(
            running,
            "the gate exited {when} ({:?}); it must still be waiting\n{}",
            self.status,
            self.dump()
        );
    }

    /// Stdout so far.
    #[must_use]
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Stderr so far.
    #[must_use]
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Waits until stderr contains `needle`; panics if the process exits
    /// or [`HANG_LIMIT`] passes first.
    pub fn expect_stderr(&mut self, needle: &str) {
        let start = Instant::now();
        loop {
            if self.stderr().contains(needle) {
                return;
            }
            if !self.is_running() {
                // It may have written the line just before it exited.
                if self.stderr().contains(needle) {
                    return;
                }
                panic!(
                    "the gate exited ({:?}) before logging {needle:?}\n{}",
                    self.status,
                    self.dump()
                );
            }
            assert!(
                start.elapsed() < HANG_LIMIT,
                "the gate never logged {needle:?}\n{}",
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a signal by name (`TERM`, `INT`) with kill(1): the crate
    /// denies unsafe code, so no `libc::kill`.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().to_string();
        let sent = Gate::program("kill")
            .arg(format!("-{name}"))
            .arg(&pid)
            .run();
        assert!(
            sent.status.success(),
            "kill -{name} {pid} failed\n{}",
            sent.dump()
        );
    }

    /// Waits at most `limit` from now for the process to exit; `None`,
    /// leaving it running, if it has not by then.
    pub fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while self.is_running() {
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.status
    }

    /// Kills the process (if it still runs) and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Waits at most `limit` from now for the process to exit; on a hang,
    /// kills it and panics with its output.
    #[must_use]
    pub fn wait(mut self, limit: Duration) -> Finished {
        if self.exit_within(limit).is_none() {
            self.kill();
            panic!(
                "the process did not exit within {limit:?}; killed it\n{}",
                self.dump()
            );
        }
        let elapsed = self.started.elapsed();
        let status = self.status.unwrap_or_else(|| unreachable!());
        Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
            elapsed,
            line: std::mem::take(&mut self.line),
        }
    }

    /// The command line, stdout and stderr so far, for failure messages.
    #[must_use]
    pub fn dump(&self) -> String {
        format!(
            "command: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.line,
            self.stdout(),
            self.stderr()
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A gate that has exited.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// From spawn to the exit being seen (10 ms resolution).
    pub elapsed: Duration,
    line: String,
}

impl Finished {
    /// The exit code; `None` if a signal killed the process.
    #[must_use]
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics, with what the gate printed, unless it exited with `want`.
    pub fn assert_code(&self, want: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(want),
            "wrong exit status\n{}",
            self.dump()
        );
        self
    }

    /// Panics unless stderr contains `needle`.
    pub fn assert_stderr(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.dump()
        );
        self
    }

    /// The command line, stdout and stderr, for failure messages.
    #[must_use]
    pub fn dump(&self) -> String {
        format!(
            "command: {}\nstatus: {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.line, self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

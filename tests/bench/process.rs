//! Running the real binaries as processes, with bounded waits.
//!
//! A [`Running`] process is reaped by its own thread, which timestamps the
//! exit with `Instant::now()` the moment `wait()` returns, so the harness
//! can sleep, write files or read /proc meanwhile without blurring the
//! exit time. Dropping a [`Running`] kills the process if it is still there.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A process started by the harness.
pub struct Running {
    pub pid: u32,
    /// Just before `spawn()`.
    pub started: Instant,
    exit: Receiver<(Instant, ExitStatus)>,
    done: Option<(Instant, ExitStatus)>,
    /// stderr, when it was piped: the text so far.
    stderr: Option<Arc<Mutex<String>>>,
    /// One per awaited text: fires once, at the first stderr line holding it.
    markers: Vec<Receiver<Instant>>,
}

/// A command with an empty environment but `PATH`, so no variable of the
/// caller's shell (`SECRET_GATE_*`, `VSECM_*`) changes what is measured.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    cmd
}

/// Sends stderr to `path` (for a diagnosis if the run goes wrong).
pub fn stderr_to(cmd: &mut Command, path: &Path) {
    let file = std::fs::File::create(path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    cmd.stderr(file);
}

impl Running {
    /// Spawns `cmd` and starts reaping it.
    pub fn spawn(cmd: &mut Command) -> Self {
        Self::spawn_inner(cmd, &[])
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()))
    }

    /// Spawns `cmd` with stderr piped; [`Self::wait_marker`]`(i, …)` returns
    /// when a line containing `markers[i]` appears.
    pub fn spawn_watching_stderr(cmd: &mut Command, markers: &[&'static str]) -> Self {
        cmd.stderr(Stdio::piped());
        Self::spawn_inner(cmd, markers)
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()))
    }

    /// Spawns `cmd` and starts reaping it, or says why it cannot start.
    pub fn try_spawn(cmd: &mut Command) -> std::io::Result<Self> {
        Self::spawn_inner(cmd, &[])
    }

    fn spawn_inner(cmd: &mut Command, needles: &[&'static str]) -> std::io::Result<Self> {
        let started = Instant::now();
        let mut child: Child = cmd.spawn()?;
        let pid = child.id();
        let (mut stderr, mut markers) = (None, Vec::new());
        if let Some(pipe) = child.stderr.take() {
            let text = Arc::new(Mutex::new(String::new()));
            let mut waiting = Vec::new();
            for &needle in needles {
                let (tx, rx) = mpsc::channel();
                waiting.push((needle, Some(tx)));
                markers.push(rx);
            }
            let sink = Arc::clone(&text);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let now = Instant::now();
                    for (needle, tx) in &mut waiting {
                        if line.contains(*needle) {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(now);
                            }
                        }
                    }
                    if let Ok(mut t) = sink.lock() {
                        t.push_str(&line);
                        t.push('\n');
                    }
                }
            });
            stderr = Some(text);
        }
        let (tx, exit) = mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send((Instant::now(), status));
            }
        });
        Ok(Self {
            pid,
            started,
            exit,
            done: None,
            stderr,
            markers,
        })
    }

    /// Waits up to `limit` for the stderr line holding `markers[index]`.
    pub fn wait_marker(&self, index: usize, limit: Duration) -> Option<Instant> {
        self.markers.get(index)?.recv_timeout(limit).ok()
    }

    /// The stderr text captured so far (piped runs only).
    pub fn stderr_text(&self) -> String {
        self.stderr
            .as_ref()
            .and_then(|t| t.lock().ok().map(|t| t.clone()))
            .unwrap_or_default()
    }

    /// Waits up to `limit` for the exit: its instant and status.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<(Instant, ExitStatus)> {
        if self.done.is_none() {
            match self.exit.recv_timeout(limit) {
                Ok(done) => self.done = Some(done),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
        self.done
    }

    /// The exit, if it already happened.
    pub fn try_exit(&mut self) -> Option<(Instant, ExitStatus)> {
        self.wait_timeout(Duration::ZERO)
    }

    /// Sends `signal` (e.g. `KILL`, `TERM`) with kill(1), unless it exited.
    pub fn signal(&mut self, signal: &str) {
        if self.try_exit().is_none() {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(self.pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Kills the process unless it exited, and reaps it.
    pub fn kill(&mut self) {
        self.signal("KILL");
        let _ = self.wait_timeout(Duration::from_secs(5));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

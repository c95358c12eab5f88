//! `fake-safe wait`: for a script that started `serve` in the background,
//! returns once that server is ready. Ready means what a client needs:
//! `DIR/env` is there and both endpoints it names accept a connection, so
//! an `env` left behind by a server that was killed does not count.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::state::StateDir;

/// How often the state directory is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// Waits until the `serve` on `state_dir` is ready, at most `timeout`.
/// With `pid`, fails as soon as that process is gone.
pub fn wait_ready(state_dir: &Path, pid: Option<u32>, timeout: Duration) -> anyhow::Result<()> {
    let env_path = StateDir::new(state_dir).env_path();
    let deadline = Instant::now() + timeout;
    loop {
        if std::fs::read_to_string(&env_path).is_ok_and(|env| endpoints_answer(&env)) {
            return Ok(());
        }
        if let Some(pid) = pid.filter(|&pid| !is_alive(pid)) {
            bail!(
                "fake-safe serve (PID {pid}) exited before it was ready; its stderr says why \
                 (a port in use, a state directory it cannot write)"
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "no fake-safe serve was ready on {} within {}: start `fake-safe serve --state-dir {}` \
                 first (it writes {} once it listens)",
                state_dir.display(),
                humantime::format_duration(timeout),
                state_dir.display(),
                env_path.display()
            );
        }
        std::thread::sleep(LOOK_EVERY);
    }
}

/// True when the Workload API socket and the Safe's port named in the
/// env file both accept a connection.
fn endpoints_answer(env: &str) -> bool {
    let socket = value(env, "SPIFFE_ENDPOINT_SOCKET");
    let url = value(env, "VSECM_SAFE_ENDPOINT_URL");
    let (Some(socket), Some(url)) = (socket, url) else {
        return false;
    };
    let Some(socket) = socket.strip_prefix("unix://") else {
        return false;
    };
    let addr = url
        .strip_prefix("https://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|host_port| host_port.parse::<SocketAddr>().ok());
    let Some(addr) = addr else {
        return false;
    };
    UnixStream::connect(socket).is_ok()
        && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// The value of `export NAME=VALUE` in the env file, unquoted as the
/// shell would (the file quotes with single quotes only).
fn value(env: &str, name: &str) -> Option<String> {
    let word = env.lines().find_map(|line| {
        line.strip_prefix("export ")?
            .strip_prefix(name)?
            .strip_prefix('=')
    })?;
    let unquoted = match word.strip_prefix('\'').and_then(|w| w.strip_suffix('\'')) {
        Some(inner) => inner.replace(r"'\''", "'"),
        None => word.to_owned(),
    };
    Some(unquoted)
}

/// True while `pid` runs (a zombie, exited but not yet reaped by the
/// shell, counts as gone).
fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

#[cfg(test)]
mod tests {
    use super::{is_alive, value};

    #[test]
    fn values_are_read_back_as_the_shell_would() {
        let env = "export SPIFFE_ENDPOINT_SOCKET='unix:///a b/it'\\''s.sock'\n\
                   export VSECM_SAFE_ENDPOINT_URL=https://127.0.0.1:8443/\n";
        assert_eq!(
            value(env, "SPIFFE_ENDPOINT_SOCKET").as_deref(),
            Some("unix:///a b/it's.sock")
        );
        assert_eq!(
            value(env, "VSECM_SAFE_ENDPOINT_URL").as_deref(),
            Some("https://127.0.0.1:8443/")
        );
        assert_eq!(value(env, "VSECM_SAFE"), None);
        assert_eq!(value(env, "SPIFFE_TRUST_DOMAIN"), None);
    }

    #[test]
    fn this_process_is_alive() {
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(u32::MAX));
    }
}

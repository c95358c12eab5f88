//! What happens after the first ready (`-- CMD`, `--keep-running` and its
//! flags), validated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{AfterArgs, SafeArgs};
use crate::safe::Output;
use crate::sidecar::notify::Targets;
use crate::sidecar::{After, KeepRunning, OnDelete};

use super::{bad, ConfigError};

/// Validates the after-ready flags of `watch` and `safe` (`safe` also
/// gives its own `--keep-running` flags).
pub(super) fn after(after: &AfterArgs, safe: Option<&SafeArgs>) -> Result<After, ConfigError> {
    let exec = (!after.command.is_empty()).then(|| after.command.clone());
    if after.max_connections_given && after.listen.is_none() {
        return Err(bad(
            "--max-connections needs --listen (SECRET_GATE_LISTEN): without it the gate serves no port whose connections it could cap",
        ));
    }
    if !after.keep_running {
        let stray = [
            (after.listen.is_some(), "--listen"),
            (!after.on_change_url.is_empty(), "--on-change-url"),
            (after.on_change_signal.is_some(), "--on-change-signal"),
        ];
        if let Some((_, flag)) = stray.iter().find(|(set, _)| *set) {
            return Err(bad(format!(
                "{flag} needs --keep-running (SECRET_GATE_KEEP_RUNNING=true): without it the gate exits once ready"
            )));
        }
        return Ok(After {
            keep_running: None,
            exec,
        });
    }
    if exec.is_some() {
        return Err(bad(
            "--keep-running and `-- CMD` cannot be combined: exec replaces the gate, so nothing \
             would keep running; run the gate as a native sidecar, or exec the app without --keep-running",
        ));
    }
    let keep = keep_running(after, safe).map_err(bad)?;
    Ok(After {
        keep_running: Some(keep),
        exec: None,
    })
}

fn keep_running(after: &AfterArgs, safe: Option<&SafeArgs>) -> Result<KeepRunning, String> {
    let listen = after.listen.as_deref().map(parse_listen).transpose()?;
    let mut urls = Vec::new();
    for text in after
        .on_change_url
        .iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
    {
        urls.push(parse_url(text)?);
    }
    let signal = match (&after.on_change_signal, &after.signal_process) {
        (Some(sig), Some(name)) => {
            let signal = crate::sidecar::notify::parse_signal(sig)
                .map_err(|e| format!("--on-change-signal: {e}"))?;
            if name.trim().is_empty() {
                return Err("--signal-process is empty: give the app's process name".to_owned());
            }
            Some((signal, name.trim().to_owned()))
        }
        _ => None,
    };
    if after.on_change_timeout.is_zero() {
        return Err("--on-change-timeout must be more than 0".to_owned());
    }
    let (sync_interval, on_delete, fallback_output) = match safe {
        Some(a) => {
            if a.sync_interval.is_zero() {
                return Err(
                    "VSECM_SIDECAR_POLL_INTERVAL / --sync-interval must be more than 0".to_owned(),
                );
            }
            let fallback = match (&a.output, &a.output_dir) {
                (None, None) => std::env::var_os("VSECM_SIDECAR_SECRETS_PATH")
                    .filter(|v| !v.is_empty())
                    .map(|path| Output::File {
                        path: PathBuf::from(path),
                        mode: a.file_mode,
                    }),
                _ => None,
            };
            (a.sync_interval, a.on_delete.into(), fallback)
        }
        None => (Duration::from_secs(20), OnDelete::Keep, None),
    };
    if after.max_connections == 0 {
        return Err(
            "--max-connections must be at least 1 (the kubelet's probes need a connection)"
                .to_owned(),
        );
    }
    Ok(KeepRunning {
        listen,
        max_connections: after.max_connections,
        targets: Targets {
            urls,
            signal,
            attempt_timeout: after.on_change_timeout,
            retries: after.on_change_retries,
            retry_base: Duration::from_millis(250),
        },
        sync_interval,
        on_delete,
        fallback_output,
    })
}

/// `--listen`'s address ([`crate::serve::parse_listen`]), or what to write.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    crate::serve::parse_listen(text).ok_or_else(|| {
        format!(
            "--listen {:?} is not ADDR:PORT: write e.g. 0.0.0.0:8080 (the pod IP, for kubelet probes), [::]:8080 or 127.0.0.1:8080",
            text.trim()
        )
    })
}

fn parse_url(text: &str) -> Result<http::Uri, String> {
    // Echo the URL without its query, which may carry a token.
    let shown = text.split('?').next().unwrap_or_default();
    let bad = |why: &str| {
        format!("--on-change-url {shown:?} {why}: write e.g. http://127.0.0.1:9090/-/reload")
    };
    // Credentials would reach every notification's log line: refuse them,
    // without echoing the URL (any `@`, as for VSECM_SAFE_ENDPOINT_URL, so
    // a mistyped `http:/user:pw@host` is caught too).
    if text.contains('@') {
        return Err(
            "--on-change-url must not carry credentials (user:password@host): \
                    they would be logged; put the app's reload endpoint on the pod's loopback"
                .to_owned(),
        );
    }
    let uri: http::Uri = text.parse().map_err(|_| bad("is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad(
            "must be http:// (the app in the same pod, as with configmap-reload)",
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::{parse_listen, parse_url};

    /// What `--listen=$(POD_IP):8080` becomes with an IPv4 or an IPv6 pod
    /// IP, and the other spellings.
    #[test]
    fn listen_addresses() {
        for (text, want) in [
            ("10.1.2.3:8080", "10.1.2.3:8080"),
            (":8080", "0.0.0.0:8080"),
            ("[::]:8080", "[::]:8080"),
            ("[fd00::5]:8080", "[fd00::5]:8080"),
            ("fd00::5:8080", "[fd00::5]:8080"),
            ("2001:db8::a:b:8443", "[2001:db8::a:b]:8443"),
            ("::1:8080", "[::1]:8080"),
            ("::8080", "[::]:8080"),
            (":::8080", "[::]:8080"),
            (" 127.0.0.1:1 ", "127.0.0.1:1"),
        ] {
            assert_eq!(parse_listen(text).unwrap().to_string(), want, "{text}");
        }
        for bad in [
            "",
            "8080",
            "localhost:8080",
            "10.1.2.3",
            "fd00::5",
            "::",
            ":",
            "10.1.2.3:",
            "1:8080",
            "10.1.2.3:8080:1",
            "fd00::5:70000",
            "[fd00::5]",
        ] {
            let err = parse_listen(bad).unwrap_err();
            assert!(err.contains("is not ADDR:PORT"), "{bad}: {err}");
        }
    }

    #[test]
    fn webhook_urls() {
        assert!(parse_url("http://127.0.0.1:9090/-/reload").is_ok());
        for bad in ["https://app/-/reload", "http:///x", "not a url"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        for with_credentials in [
            "http://admin:s3cr3t@app:9090/-/reload",
            "http:/admin:s3cr3t@app:9090/-/reload",
        ] {
            let err = parse_url(with_credentials).unwrap_err();
            assert!(
                err.contains("credentials") && !err.contains("s3cr3t"),
                "{err}"
            );
        }
        let err = parse_url("https://app/-/reload?token=s3cr3t").unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}

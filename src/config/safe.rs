//! `safe`: the Safe, the Workload API, the IDs to trust and the output,
//! validated.

use std::path::Path;

use crate::check::{Format, Schema};
use crate::cli::SafeArgs;
use crate::safe::{Output, SafeConfig, SecretFormat};
use crate::spiffe_id::SpiffeIdMatcher;

use super::{bad, entries, keys, nonzero, ConfigError, MAX_BACKOFF_LIMIT};

pub(super) fn safe(a: &SafeArgs) -> Result<SafeConfig, ConfigError> {
    let keys = keys(a.required_keys.as_deref())?;
    let output = match (&a.output, &a.output_dir) {
        (Some(path), None) => Some(Output::File {
            path: path.clone(),
            mode: a.file_mode,
        }),
        (None, Some(path)) => Some(Output::Dir {
            path: path.clone(),
            mode: a.file_mode,
        }),
        _ => None,
    };
    let format = match a.format.given() {
        None => SecretFormat::Sniffed,
        Some(format) => SecretFormat::Given(format),
    };
    if !keys.is_empty() && !format.has_keys() {
        return Err(bad(format!(
            "--required-keys cannot be found in a {} secret: pass --format json, yaml or env",
            a.format.name()
        )));
    }
    let schemas = schemas(a, format)?;
    if matches!(output, Some(Output::Dir { .. }))
        && matches!(
            format,
            SecretFormat::Given(Format::Raw | Format::Env | Format::Pem)
        )
    {
        return Err(bad(format!(
            "--output-dir writes one file per top-level key, which needs --format json, yaml or auto (got {})",
            a.format.name()
        )));
    }
    if a.poll_interval.is_zero() {
        return Err(bad(
            "VSECM_INIT_CONTAINER_POLL_INTERVAL / --poll-interval must be more than 0",
        ));
    }
    if a.attempt_timeout.is_zero() {
        return Err(bad("--attempt-timeout must be more than 0"));
    }
    if !a.spiffe_endpoint_socket.starts_with("unix:")
        && !a.spiffe_endpoint_socket.starts_with("tcp:")
    {
        return Err(bad(format!(
            "SPIFFE_ENDPOINT_SOCKET {:?} must be a unix:///path or tcp://ip:port address",
            a.spiffe_endpoint_socket
        )));
    }
    let secrets_url = secrets_url(&a.safe_endpoint_url)?;
    let matcher = |variable, prefix: &str| {
        SpiffeIdMatcher::new(variable, prefix, &a.trust_domain).map_err(|e| bad(e.to_string()))
    };
    let safe_id = matcher("VSECM_SPIFFEID_PREFIX_SAFE", &a.safe_spiffeid_prefix)?;
    let workload_id = matcher(
        "VSECM_SPIFFEID_PREFIX_WORKLOAD",
        &a.workload_spiffeid_prefix,
    )?;
    if a.max_backoff > MAX_BACKOFF_LIMIT {
        return Err(bad(format!(
            "--max-backoff {} is over the 30s limit: a gate that waits longer between attempts \
             notices a newly registered secret too late",
            humantime::format_duration(a.max_backoff)
        )));
    }
    Ok(SafeConfig {
        keys,
        schemas,
        format,
        output,
        timeout: nonzero(a.timeout),
        endpoint_socket: a.spiffe_endpoint_socket.clone(),
        secrets_url,
        safe_id,
        min_validity: a.min_validity,
        workload_id,
        poll_interval: a.poll_interval,
        // Never below the base: a VSecM pod spec with a long interval keeps it.
        max_backoff: a.max_backoff.max(a.poll_interval),
        attempt_timeout: a.attempt_timeout,
        max_body_size: a.max_body_size,
        wait_before_exit: a.wait_before_exit,
    })
}

/// `--schema SCHEMA`: each schema read and compiled once, here. Safe mode
/// has one secret, so there is no `FILE=` to choose, and the secret must
/// be a document (JSON, YAML, env, or sniffed by `auto`).
fn schemas(a: &SafeArgs, format: SecretFormat) -> Result<Vec<Schema>, ConfigError> {
    let mut schemas = Vec::new();
    for entry in entries(&a.schemas) {
        if !format.has_keys() {
            return Err(bad(format!(
                "--schema {entry:?}: a {} secret has no tree to check; a schema applies to a \
                 JSON, YAML or env secret: pass --format json, yaml, env or auto",
                a.format.name()
            )));
        }
        if let Some((file, _)) = entry.split_once('=') {
            return Err(bad(format!(
                "--schema {entry:?}: safe mode checks the one secret the Safe hands over, so \
                 there is no file to name: drop `{file}=` and give the schema file alone"
            )));
        }
        if a.schemas_elsewhere {
            // A command line for a manifest: the schema is a path in the
            // pod, read by the gate there.
            continue;
        }
        schemas.push(Schema::load(Path::new(entry)).map_err(bad)?);
    }
    Ok(schemas)
}

/// Joins the Safe's base URL with `workload/v1/secrets`.
///
/// A URL with a user name or password is refused without being echoed:
/// it may hold a credential, and the message goes to logs and the
/// termination log.
pub(super) fn secrets_url(base: &str) -> Result<http::Uri, ConfigError> {
    if base.contains('@') {
        return Err(bad(
            "VSECM_SAFE_ENDPOINT_URL has a user name or password in it (`user:password@host`), \
             which secret-gate never sends and does not show: remove it (the Safe knows this pod by \
             its SVID), e.g. https://vsecm-safe.vsecm-system.svc.cluster.local:8443/",
        ));
    }
    // Shown without its query or fragment, which may hold a token.
    let shown = base.split(['?', '#']).next().unwrap_or_default();
    let invalid = |why: &str| {
        bad(format!(
            "VSECM_SAFE_ENDPOINT_URL {shown:?} {why}: write e.g. https://vsecm-safe.vsecm-system.svc.cluster.local:8443/"
        ))
    };
    let uri: http::Uri = base.trim().parse().map_err(|_| invalid("is not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(invalid("must use https (the Safe accepts only mTLS)"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    if uri.query().is_some() || base.contains('?') {
        return Err(invalid(
            "must not have a query (shown here without it, as it may hold a token)",
        ));
    }
    let authority = uri.authority().map(ToString::to_string).unwrap_or_default();
    if let Some(port) = port_text(&authority) {
        if !matches!(port.parse::<u16>(), Ok(1..)) {
            return Err(invalid(&format!(
                "has port {port:?}, which is not a number from 1 to 65535"
            )));
        }
    }
    let path = uri.path().trim_end_matches('/');
    format!("https://{authority}{path}/workload/v1/secrets")
        .parse()
        .map_err(|_| invalid("cannot be joined with /workload/v1/secrets"))
}

/// The text after the host's `:`, if the authority has one (`[::1]:8443`
/// and `host:8443` give `8443`; `[::1]` and `host` give none).
fn port_text(authority: &str) -> Option<&str> {
    let after_host = match authority.strip_prefix('[') {
        Some(rest) => &rest[rest.find(']').map_or(rest.len(), |i| i + 1)..],
        None => authority.find(':').map_or("", |i| &authority[i..]),
    };
    after_host.strip_prefix(':')
}

#[cfg(test)]
mod tests {
    use super::secrets_url;

    #[test]
    fn secrets_url_joins_cleanly() {
        let table = [
            (
                "https://safe:8443/",
                "https://safe:8443/workload/v1/secrets",
            ),
            ("https://safe:8443", "https://safe:8443/workload/v1/secrets"),
            (
                "https://127.0.0.1:1/base/",
                "https://127.0.0.1:1/base/workload/v1/secrets",
            ),
        ];
        for (base, want) in table {
            assert_eq!(secrets_url(base).unwrap().to_string(), want);
        }
        for bad in [
            "http://safe/",
            "safe:8443",
            "https:///x",
            "https://safe:99999/",
            "https://safe:abc/",
            "https://safe:0/",
            "https://safe:/",
            "https://[::1]:70000/",
        ] {
            let err = secrets_url(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert_eq!(
            secrets_url("https://[::1]:8443/").unwrap().to_string(),
            "https://[::1]:8443/workload/v1/secrets"
        );
    }

    #[test]
    fn a_query_is_refused_and_not_echoed() {
        for (bad, shown) in [
            ("https://s/?a=b", "https://s/"),
            (
                "https://safe:8443/?token=TOKEN-CANARY",
                "https://safe:8443/",
            ),
            (
                "https://safe:99999/?token=TOKEN-CANARY",
                "https://safe:99999/",
            ),
            ("https://safe/x?token=TOKEN-CANARY#frag", "https://safe/x"),
            ("http://safe/?token=TOKEN-CANARY", "http://safe/"),
        ] {
            let err = secrets_url(bad).unwrap_err().to_string();
            assert!(
                !err.contains("CANARY") && !err.contains("a=b") && !err.contains("token="),
                "{bad}: {err}"
            );
            assert!(err.contains(&format!("{shown:?}")), "{bad}: {err}");
        }
        let err = secrets_url("https://safe/?k=v").unwrap_err().to_string();
        assert!(err.contains("must not have a query"), "{err}");
    }

    #[test]
    fn secrets_url_with_credentials_is_refused_and_not_echoed() {
        for bad in [
            "https://admin:PW-CANARY@safe:8443/",
            "https://admin@safe/",
            "https://admin:P/W-CANARY@safe/",
        ] {
            let err = secrets_url(bad).unwrap_err().to_string();
            assert!(!err.contains("CANARY") && !err.contains("admin"), "{err}");
            assert!(err.contains("user name or password"), "{err}");
        }
    }
}

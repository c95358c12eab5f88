//! Safe mode, end to end: the real `secret-gate safe` against the shipped
//! fake Safe and fake Workload API, over real sockets and real mTLS.
//!
//! Sections: polling and back-off; `VSecM` compatibility; identity and
//! mTLS; the Workload API; diagnosis at the deadline; output; signals;
//! configuration errors; secret values never leak.

#[path = "common/bounded.rs"]
mod bounded;
mod common;
#[path = "common/fake.rs"]
#[expect(
    clippy::expect_used,
    reason = "the fake Safe's helpers fail the test with expect(); they are test code, not the product"
)]
mod fake;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::{
    assert_log_contains, assert_log_lacks, assert_no_canary, free_port, Fixture, Gate, CANARY,
    HANG_LIMIT,
};
use fake::FakeSafe;

/// The secret registered in the fake Safe: its password is the canary.
fn secret() -> String {
    format!(r#"{{"username":"admin","password":"{CANARY}"}}"#)
}

/// `secret-gate safe` pointed at `fake` through VSecM's own variables, with
/// a fast back-off so tests do not wait on it, and a termination log.
fn gate(fake: &FakeSafe, fx: &Fixture) -> Gate {
    Gate::new("safe")
        .env("SPIFFE_ENDPOINT_SOCKET", fake.spiffe_endpoint())
        .env("VSECM_SAFE_ENDPOINT_URL", fake.safe_url())
        .env("VSECM_INIT_CONTAINER_POLL_INTERVAL", "50")
        .args(["--max-backoff", "200ms", "--termination-log"])
        .arg(&fx.log)
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A gate with no Safe behind it, for configuration errors.
fn bare_gate(fx: &Fixture) -> Gate {
    Gate::new("safe")
        .env("SPIFFE_ENDPOINT_SOCKET", "unix:///nonexistent/agent.sock")
        .args(["--timeout", "1s", "--termination-log"])
        .arg(&fx.log)
}

// ---------------------------------------------------------------------------
// Polling and back-off: not there yet, then there
// ---------------------------------------------------------------------------

#[test]
fn secret_already_registered_exits_zero() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", &secret());
    let fx = Fixture::new();
    let done = gate(&fake, &fx).args(["--timeout", "20s"]).run();
    done.assert_code(0);
    // One request was enough: the first attempt is immediate.
    assert_eq!(fake.requests().iter().filter(|(_, s)| *s == 200).count(), 1);
    assert!(fx.log().is_empty(), "no diagnosis on success: {}", fx.log());
}

#[test]
fn not_registered_then_registered_passes_404_then_200() {
    let fake = FakeSafe::start(&[]);
    let fx = Fixture::new();
    let mut running = gate(&fake, &fx).args(["--timeout", "30s"]).spawn();
    running.expect_stderr("Safe answered 404");
    running.assert_running("while nothing is registered");
    fake.register("example", &secret());
    running.wait(HANG_LIMIT).assert_code(0);
    let statuses: Vec<u16> = fake.requests().iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses.first(), Some(&404), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
}

#[test]
fn booting_safe_503_then_400_is_not_yet() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", &secret());
    fake.fault(&["--status", "503"]);
    let fx = Fixture::new();
    let mut running = gate(&fake, &fx).args(["--timeout", "30s"]).spawn();
    running.expect_stderr("backing store is not ready (Safe answered 503)");
    fake.fault(&["--status", "400"]);
    running.expect_stderr("Safe answered 400");
    running.assert_running("while the Safe boots");
    fake.fault(&["--clear"]);
    running.wait(HANG_LIMIT).assert_code(0);
}

#[test]
fn required_key_missing_then_added() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", r#"{"username":"admin"}"#);
    let fx = Fixture::new();
    let mut running = gate(&fake, &fx)
        .args(["--required-keys", "username,password", "--timeout", "30s"])
        .spawn();
    running.expect_stderr(r#"key "password" missing"#);
    running.assert_running("while a key is missing");
    fake.register("example", &secret());
    running.wait(HANG_LIMIT).assert_code(0);
}

/// A schema for [`secret`]'s shape, plus a `port` that must be an integer.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn port_schema(fx: &Fixture) -> std::path::PathBuf {
    let path = fx.root.path().join("schema.json");
    std::fs::write(
        &path,
        r#"{"type": "object", "required": ["username", "password", "port"],
            "properties": {"port": {"type": "integer", "minimum": 1}}}"#,
    )
    .unwrap();
    path
}

/// A fake Safe holding a secret that breaks [`port_schema`] (its port is
/// the canary, as text), and a gate held to that schema.
fn breaking_secret_and_schema(fx: &Fixture) -> (FakeSafe, Gate) {
    let fake = FakeSafe::start(&[]);
    fake.register(
        "example",
        &format!(r#"{{"username":"admin","password":"{CANARY}","port":"{CANARY}"}}"#),
    );
    let gate = gate(&fake, fx).arg("--schema").arg(port_schema(fx));
    (fake, gate)
}

#[test]
fn a_schema_holds_the_fetched_secret_back_until_it_conforms() {
    let fx = Fixture::new();
    let (fake, gate) = breaking_secret_and_schema(&fx);
    let mut running = gate
        .args(["--timeout", "30s", "--log-level", "debug"])
        .spawn();
    running.expect_stderr("/port: must be an integer");
    running.assert_running("while the secret breaks the schema");
    fake.register(
        "example",
        &format!(r#"{{"username":"admin","password":"{CANARY}","port":5432}}"#),
    );
    let done = running.wait(HANG_LIMIT);
    done.assert_code(0);
    assert_no_canary(&done.stderr, "stderr", &done.dump());
}

#[test]
fn a_deadline_on_a_secret_that_breaks_the_schema_names_the_rule_not_the_value() {
    let fx = Fixture::new();
    let (_fake, gate) = breaking_secret_and_schema(&fx);
    let done = gate.args(["--timeout", "1s", "--log-level", "trace"]).run();
    done.assert_code(1);
    assert_log_contains(&fx, "/port: must be an integer", &done);
    assert_no_canary(&done.stdout, "stdout", &done.dump());
    assert_no_canary(&done.stderr, "stderr", &done.dump());
    assert_no_canary(&fx.log(), "termination log", &done.dump());
}

#[test]
fn retry_after_from_a_booting_safe_is_honoured() {
    let fake = FakeSafe::start(&["--unavailable-for", "3s", "--retry-after", "2"]);
    fake.register("example", &secret());
    let fx = Fixture::new();
    Gate::new("safe")
        .env("SPIFFE_ENDPOINT_SOCKET", fake.spiffe_endpoint())
        .env("VSECM_SAFE_ENDPOINT_URL", fake.safe_url())
        .env("VSECM_INIT_CONTAINER_POLL_INTERVAL", "50")
        .args([
            "--max-backoff",
            "5s",
            "--timeout",
            "30s",
            "--termination-log",
        ])
        .arg(&fx.log)
        .run()
        .assert_code(0);
    let requests = fake.requests();
    let statuses: Vec<u16> = requests.iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    // Without Retry-After the 50 ms back-off would have made many more.
    assert!(
        statuses.iter().filter(|s| **s == 503).count() <= 2,
        "{statuses:?}"
    );
    for pair in requests.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= 2_000_000,
            "asked for 2 s, waited {gap} µs: {requests:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// VSecM compatibility: its variables, as its init container reads them
// ---------------------------------------------------------------------------

#[test]
fn vsecm_env_only_pod_spec_works_unchanged() {
    // Only the variables a vsecm-ist-init-container pod spec sets.
    let fake = FakeSafe::start(&[]);
    fake.register("example", &secret());
    let done = Gate::new("safe")
        .env("SPIFFE_ENDPOINT_SOCKET", fake.spiffe_endpoint())
        .env("SPIFFE_TRUST_DOMAIN", "vsecm.com")
        .env("VSECM_SAFE_ENDPOINT_URL", fake.safe_url())
        .env(
            "VSECM_SPIFFEID_PREFIX_SAFE",
            "^spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/[^/]+$",
        )
        .env("VSECM_INIT_CONTAINER_POLL_INTERVAL", "5000")
        .env("VSECM_INIT_CONTAINER_WAIT_BEFORE_EXIT", "100")
        .run();
    done.assert_code(0);
}

#[test]
fn empty_or_unparsable_vsecm_variables_mean_the_default_as_in_vsecm() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", &secret());
    let fx = Fixture::new();
    let done = gate(&fake, &fx)
        .env("VSECM_INIT_CONTAINER_POLL_INTERVAL", "soon")
        .env("VSECM_INIT_CONTAINER_WAIT_BEFORE_EXIT", "")
        .env("VSECM_SPIFFEID_PREFIX_SAFE", "")
        .env("SPIFFE_TRUST_DOMAIN", "")
        .args(["--timeout", "20s"])
        .run();
    done.assert_code(0);
    done.assert_stderr("VSECM_INIT_CONTAINER_POLL_INTERVAL");
    done.assert_stderr("using the default, as VSecM does");
}

// ---------------------------------------------------------------------------
// Identity and mTLS: whom the gate trusts
// ---------------------------------------------------------------------------

#[test]
fn wrong_safe_id_is_refused_and_explained() {
    let fake = FakeSafe::start(&["--wrong-safe-id"]);
    fake.register("example", &secret());
    let fx = Fixture::new();
    let done = gate(&fake, &fx).args(["--timeout", "2s"]).run();
    done.assert_code(1);
    assert_log_contains(
        &fx,
        "server presented spiffe://vsecm.com/workload/evil/ns/default/sa/evil/n/evil-0 \
         which does not match VSECM_SPIFFEID_PREFIX_SAFE",
        &done,
    );
    // The gate never sent a request to the impostor.
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

/// The SPIRE agent down longer than the SVID's life: the fake's SVID
/// expires after 2 s and no new one comes. The Safe refuses the expired
/// client certificate; the diagnosis names the expiry and the Workload
/// API, not the workload ID.
#[test]
fn an_expired_svid_is_named_as_such_not_blamed_on_the_workload_id() {
    let fake = FakeSafe::start(&["--svid-ttl", "2s"]);
    let fx = Fixture::new();
    let done = gate(&fake, &fx).args(["--timeout", "5s"]).run();
    done.assert_code(1);
    let want = format!(
        "and the Workload API at {} has not sent a new one (is the SPIRE agent running?)",
        fake.spiffe_endpoint()
    );
    assert_log_contains(
        &fx,
        "the Safe refused this pod's SVID: it expired at 20",
        &done,
    );
    assert_log_contains(&fx, &want, &done);
    let log = fx.log();
    assert!(!log.contains("is the SVID a VSecM workload ID"), "{log}");
    // It was asked before the expiry (404), then refused.
    let requests = fake.requests();
    assert!(requests.iter().any(|(_, s)| *s == 404), "{requests:?}");
}

#[test]
fn literal_prefix_rule_works_like_vsecm() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", &secret());
    let fx = Fixture::new();
    let ok = gate(&fake, &fx)
        .env(
            "VSECM_SPIFFEID_PREFIX_SAFE",
            "spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/",
        )
        .args(["--timeout", "20s"])
        .run();
    ok.assert_code(0);
    let refused = gate(&fake, &fx)
        .env(
            "VSECM_SPIFFEID_PREFIX_SAFE",
            "spiffe://vsecm.com/workload/other-safe/",
        )
        .args(["--timeout", "1s"])
        .run();
    refused.assert_code(1);
    assert_log_contains(&fx, "does not match VSECM_SPIFFEID_PREFIX_SAFE", &refused);
}

#[test]
fn the_safe_id_must_also_be_a_workload_id_as_in_vsecm() {
    // Passes the literal Safe prefix from VSecM's manifests, but has an
    // extra path segment, so it is no VSecM workload ID.
    let odd = "spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/x/extra";
    let fake = FakeSafe::start(&["--safe-id", odd]);
    fake.register("example", &secret());
    let fx = Fixture::new();
    let done = gate(&fake, &fx)
        .env(
            "VSECM_SPIFFEID_PREFIX_SAFE",
            "spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/",
        )
        .args(["--timeout", "1s"])
        .run();
    done.assert_code(1);
    assert_log_contains(
        &fx,
        &format!("server presented {odd} which does not match VSECM_SPIFFEID_PREFIX_WORKLOAD"),
        &done,
    );
}

#[test]
fn untrusted_ca_is_refused_and_explained() {
    let fake = FakeSafe::start(&["--untrusted-ca"]);
    fake.register("example", &secret());
    let fx = Fixture::new();
    let done = gate(&fake, &fx).args(["--timeout", "2s"]).run();
    done.assert_code(1);
    assert_log_contains(
        &fx,
        "not signed by the trust bundle from the Workload API",
        &done,
    );
    assert!(fake.requests().is_empty());
}

// ---------------------------------------------------------------------------
// The Workload API: missing, late, silent, not a socket
// ---------------------------------------------------------------------------

#[test]
fn workload_api_socket_missing_then_appearing() {
    let fx = Fixture::new();
    let socket = fx.root.path().join("later.sock");
    let port = free_port();
    let mut running = Gate::new("safe")
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", socket.display()),
        )
        .env(
            "VSECM_SAFE_ENDPOINT_URL",
            format!("https://127.0.0.1:{port}/"),
        )
        .env("VSECM_INIT_CONTAINER_POLL_INTERVAL", "50")
        .args([
            "--max-backoff",
            "200ms",
            "--attempt-timeout",
            "300ms",
            "--timeout",
            "30s",
        ])
        .arg("--termination-log")
        .arg(&fx.log)
        .spawn();
    running.expect_stderr("Workload API not reachable at unix://");
    running.expect_stderr("no socket at");
    running.assert_running("while the Workload API is missing");

    let socket_arg = socket.display().to_string();
    let port_arg = port.to_string();
    let fake = FakeSafe::start(&["--socket", &socket_arg, "--port", &port_arg]);
    fake.register("example", &secret());
    running.wait(HANG_LIMIT).assert_code(0);
}

#[test]
fn workload_api_never_there_is_the_diagnosis() {
    let fx = Fixture::new();
    let socket = fx.root.path().join("absent.sock");
    let done = Gate::new("safe")
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", socket.display()),
        )
        .args([
            "--attempt-timeout",
            "200ms",
            "--timeout",
            "1s",
            "--termination-log",
        ])
        .arg(&fx.log)
        .run();
    done.assert_code(1);
    assert_log_contains(&fx, "Workload API not reachable at unix://", &done);
}

#[test]
fn a_socket_path_that_is_a_regular_file_is_not_a_socket() {
    let fx = Fixture::new();
    let file = fx.root.path().join("agent.sock");
    std::fs::write(&file, b"").unwrap();
    // The attempt timeout (5 s) is longer than --timeout: the answer must
    // not need a sync timeout.
    let done = bare_gate(&fx)
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", file.display()),
        )
        .run();
    done.assert_code(1);
    assert_log_contains(&fx, "is not a socket (it is a regular file)", &done);
    assert_log_lacks(&fx, "initial synchronization", &done);
}

#[test]
fn a_missing_socket_is_reported_on_the_first_attempt_at_once() {
    let fx = Fixture::new();
    let started = std::time::Instant::now();
    let mut running = Gate::new("safe")
        .env("SPIFFE_ENDPOINT_SOCKET", "unix:///nonexistent/agent.sock")
        .args(["--timeout", "30s", "--termination-log"])
        .arg(&fx.log)
        .spawn();
    running.expect_stderr("no socket at /nonexistent/agent.sock: no such file");
    // Well before the 5 s attempt timeout.
    assert!(started.elapsed() < Duration::from_secs(4));
    running.signal("TERM");
    running.wait(HANG_LIMIT).assert_code(143);

    // The issue's own reproduction: --timeout 2s, default attempt timeout.
    let done = Gate::new("safe")
        .env("SPIFFE_ENDPOINT_SOCKET", "unix:///nonexistent/agent.sock")
        .args(["--timeout", "2s", "--termination-log"])
        .arg(&fx.log)
        .run();
    done.assert_code(1);
    assert_log_contains(
        &fx,
        "Workload API not reachable at unix:///nonexistent/agent.sock: no socket at",
        &done,
    );
}

#[test]
fn a_deadline_while_the_workload_api_is_silent_says_so() {
    let fx = Fixture::new();
    let socket = fx.root.path().join("silent.sock");
    // Accepts connections (the kernel queues them) and never answers.
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let endpoint = format!("unix://{}", socket.display());
    let done = Gate::new("safe")
        .env("SPIFFE_ENDPOINT_SOCKET", &endpoint)
        .args(["--timeout", "1s", "--termination-log"])
        .arg(&fx.log)
        .run();
    done.assert_code(1);
    assert_log_contains(
        &fx,
        &format!("still waiting for the Workload API at {endpoint}: no SVID after"),
        &done,
    );
}

// ---------------------------------------------------------------------------
// Diagnosis at the deadline: what the termination log names
// ---------------------------------------------------------------------------

#[test]
fn deadline_names_the_missing_key() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", r#"{"username":"admin"}"#);
    let fx = Fixture::new();
    let done = gate(&fake, &fx)
        .args([
            "--required-keys",
            "username,/db/password",
            "--timeout",
            "1s",
        ])
        .run();
    done.assert_code(1);
    assert_log_contains(&fx, "safe: not ready after 1s", &done);
    assert_log_contains(&fx, r#"Safe: key "/db/password" missing"#, &done);
}

#[test]
fn safe_unreachable_is_the_diagnosis() {
    let fake = FakeSafe::start(&[]);
    let fx = Fixture::new();
    let closed = free_port();
    let done = gate(&fake, &fx)
        .env(
            "VSECM_SAFE_ENDPOINT_URL",
            format!("https://127.0.0.1:{closed}/"),
        )
        .args(["--timeout", "1s"])
        .run();
    done.assert_code(1);
    assert_log_contains(
        &fx,
        &format!("cannot connect to the Safe at 127.0.0.1:{closed}"),
        &done,
    );
}

#[test]
fn slow_safe_hits_the_attempt_timeout() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", &secret());
    fake.fault(&["--delay", "5s"]);
    let fx = Fixture::new();
    let done = gate(&fake, &fx)
        .args(["--attempt-timeout", "300ms", "--timeout", "2s"])
        .run();
    done.assert_code(1);
    assert!(done.elapsed < Duration::from_secs(10), "{}", done.dump());
    assert_log_contains(
        &fx,
        "no answer from the Safe within the attempt timeout (300ms)",
        &done,
    );
}

#[test]
fn a_deadline_while_the_safe_is_slow_says_so() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", &secret());
    fake.fault(&["--delay", "10s"]);
    let fx = Fixture::new();
    let done = gate(&fake, &fx).args(["--timeout", "1s"]).run();
    done.assert_code(1);
    assert_log_contains(&fx, "still waiting for the Safe at https://", &done);
    assert_log_contains(&fx, "/workload/v1/secrets: no answer after", &done);
}

#[test]
fn oversize_body_is_refused() {
    let fake = FakeSafe::start(&[]);
    fake.fault(&["--oversize", "65536"]);
    let fx = Fixture::new();
    let done = gate(&fake, &fx)
        .args(["--max-body-size", "4KiB", "--timeout", "1s"])
        .run();
    done.assert_code(1);
    assert_log_contains(&fx, "larger than --max-body-size (4096 bytes)", &done);
}

// ---------------------------------------------------------------------------
// Output: --output and --output-dir
// ---------------------------------------------------------------------------

#[test]
fn output_file_is_written_atomically_with_its_mode() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", &secret());
    let fx = Fixture::new();
    let out = fx.mount.join("secrets.json");
    std::fs::write(&out, b"stale").unwrap();
    let old_inode = std::fs::metadata(&out).unwrap().ino();
    gate(&fake, &fx)
        .arg("--output")
        .arg(&out)
        .args([
            "--file-mode",
            "0400",
            "--required-keys",
            "password",
            "--timeout",
            "20s",
        ])
        .run()
        .assert_code(0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), secret());
    assert_eq!(mode(&out), 0o400);
    // Replaced by rename, not rewritten in place; no temp file left over.
    assert_ne!(std::fs::metadata(&out).unwrap().ino(), old_inode);
    assert_eq!(names(&fx.mount), ["secrets.json"]);
}

#[test]
fn output_file_without_keys_takes_any_non_empty_secret_as_vsecm_does() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", "p4ss{word");
    let fx = Fixture::new();
    let out = fx.mount.join("secrets.json");
    gate(&fake, &fx)
        .arg("--output")
        .arg(&out)
        .args(["--timeout", "20s"])
        .run()
        .assert_code(0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "p4ss{word");
}

#[test]
fn output_dir_writes_one_file_per_key() {
    let fake = FakeSafe::start(&[]);
    fake.register(
        "example",
        r#"{"username":"admin","password":"pw","port":5432,"tls":{"ca":"x"}}"#,
    );
    let fx = Fixture::new();
    let dir = fx.mount.join("out");
    gate(&fake, &fx)
        .arg("--output-dir")
        .arg(&dir)
        .args(["--required-keys", "username,password", "--timeout", "20s"])
        .run()
        .assert_code(0);
    assert_eq!(names(&dir), ["password", "port", "tls", "username"]);
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
    assert_eq!(read("username"), "admin");
    assert_eq!(read("password"), "pw");
    assert_eq!(read("port"), "5432");
    assert_eq!(read("tls"), r#"{"ca":"x"}"#);
    for n in names(&dir) {
        assert_eq!(mode(&dir.join(&n)), 0o440, "{n}");
    }
}

#[test]
fn output_dir_accepts_yaml_secrets() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", "username: admin\npassword: pw\n");
    let fx = Fixture::new();
    let dir = fx.mount.join("out");
    gate(&fake, &fx)
        .arg("--output-dir")
        .arg(&dir)
        .args(["--required-keys", "password", "--timeout", "20s"])
        .run()
        .assert_code(0);
    assert_eq!(names(&dir), ["password", "username"]);
}

#[test]
fn output_dir_never_writes_outside_itself() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", r#"{"../escape":"x","ok":"y"}"#);
    let fx = Fixture::new();
    let dir = fx.mount.join("out");
    let done = gate(&fake, &fx)
        .arg("--output-dir")
        .arg(&dir)
        .args(["--timeout", "1s"])
        .run();
    done.assert_code(1);
    assert_log_contains(
        &fx,
        "top-level key 1 of 2 of the secret cannot be a file name in --output-dir \
         (it contains `/` or NUL)",
        &done,
    );
    assert!(!fx.mount.join("escape").exists());
    assert!(
        !dir.join("ok").exists(),
        "nothing is written unless everything can be"
    );
}

#[test]
fn nothing_is_written_before_the_check_passes() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", r#"{"username":"admin"}"#);
    let fx = Fixture::new();
    let out = fx.mount.join("secrets.json");
    gate(&fake, &fx)
        .arg("--output")
        .arg(&out)
        .args(["--required-keys", "password", "--timeout", "1s"])
        .run()
        .assert_code(1);
    assert!(!out.exists());
}

#[test]
fn a_secret_that_cannot_fit_output_dir_is_a_warning_and_the_last_error() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", r#""just a string""#);
    let fx = Fixture::new();
    let done = gate(&fake, &fx)
        .arg("--output-dir")
        .arg(fx.mount.join("out"))
        .args(["--format", "json", "--timeout", "1s"])
        .run();
    done.assert_code(1);
    done.assert_stderr("WARN");
    assert_log_contains(&fx, "--output-dir needs a JSON or YAML object", &done);
}

#[test]
fn an_output_error_names_the_key_by_position_not_by_name() {
    let fake = FakeSafe::start(&[]);
    // A key longer than a file name may be: the write must fail, and the
    // message must not show the key (in YAML a key may be content).
    let key = format!("KEY-{CANARY}-{}", "k".repeat(300));
    fake.register("example", &format!(r#"{{"a":"1","{key}":"2","z":"3"}}"#));
    let fx = Fixture::new();
    let done = gate(&fake, &fx)
        .arg("--output-dir")
        .arg(fx.mount.join("out"))
        .args(["--timeout", "1s"])
        .run();
    done.assert_code(1);
    assert_log_contains(
        &fx,
        "cannot write the file for top-level key 1 of 3 in",
        &done,
    );
    assert_no_canary(&done.stdout, "stdout", &done.dump());
    assert_no_canary(&done.stderr, "stderr", &done.dump());
    assert_no_canary(&fx.log(), "termination log", &done.dump());
}

// ---------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------

#[test]
fn sigterm_while_waiting_exits_143() {
    let fake = FakeSafe::start(&[]);
    let fx = Fixture::new();
    let mut running = gate(&fake, &fx).spawn();
    running.expect_stderr("Safe answered 404");
    running.signal("TERM");
    let done = running.wait(HANG_LIMIT);
    done.assert_code(143);
    assert_log_contains(&fx, "safe: stopped by SIGTERM", &done);
}

#[test]
fn sigterm_during_wait_before_exit_is_explained() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", &secret());
    let fx = Fixture::new();
    let mut running = gate(&fake, &fx)
        .env("VSECM_INIT_CONTAINER_WAIT_BEFORE_EXIT", "60000")
        .spawn();
    running.expect_stderr("ready");
    running.signal("TERM");
    let done = running.wait(HANG_LIMIT);
    done.assert_code(143);
    assert_log_contains(
        &fx,
        "stopped by SIGTERM while waiting 1m before exit (--wait-before-exit)",
        &done,
    );
    assert_log_contains(&fx, "the secret was ready", &done);
}

// ---------------------------------------------------------------------------
// Configuration errors (exit 2)
// ---------------------------------------------------------------------------

#[test]
fn a_url_with_credentials_is_refused_and_never_shown() {
    let fx = Fixture::new();
    for format in ["text", "json"] {
        let done = bare_gate(&fx)
            .env(
                "VSECM_SAFE_ENDPOINT_URL",
                format!("https://admin:{CANARY}@safe.example:8443/"),
            )
            .args(["--log-level", "trace", "--log-format", format])
            .run();
        done.assert_code(2);
        done.assert_stderr("user name or password");
        for (what, text) in [
            ("stdout", &done.stdout),
            ("stderr", &done.stderr),
            ("termination log", &fx.log()),
        ] {
            assert_no_canary(text, what, &done.dump());
            assert!(!text.contains("admin"), "{what} leaks: {}", done.dump());
        }
    }
}

#[test]
fn a_url_with_a_query_is_refused_and_shown_without_it() {
    let fx = Fixture::new();
    for format in ["text", "json"] {
        let done = bare_gate(&fx)
            .env(
                "VSECM_SAFE_ENDPOINT_URL",
                format!("https://safe.example:8443/?token={CANARY}"),
            )
            .args(["--log-level", "trace", "--log-format", format])
            .run();
        done.assert_code(2);
        done.assert_stderr("must not have a query");
        assert_log_contains(&fx, "https://safe.example:8443/", &done);
        for (what, text) in [
            ("stdout", &done.stdout),
            ("stderr", &done.stderr),
            ("termination log", &fx.log()),
        ] {
            assert_no_canary(text, what, &done.dump());
            assert!(!text.contains("token="), "{what} leaks: {}", done.dump());
        }
    }
}

#[test]
fn an_invalid_port_is_a_usage_error() {
    let fx = Fixture::new();
    for url in [
        "https://safe:99999/",
        "https://safe:abc/",
        "https://safe:0/",
    ] {
        let done = bare_gate(&fx).env("VSECM_SAFE_ENDPOINT_URL", url).run();
        done.assert_code(2);
        assert!(
            done.stderr.contains("not a number from 1 to 65535")
                || done.stderr.contains("is not a URL"),
            "{url}: {}",
            done.dump()
        );
        assert_log_contains(&fx, "configuration error", &done);
    }
}

#[test]
fn file_modes_with_special_bits_are_refused() {
    let fx = Fixture::new();
    for mode in ["4755", "2750", "1640", "6440"] {
        let done = bare_gate(&fx)
            .arg("--output")
            .arg(fx.mount.join("s"))
            .args(["--file-mode", mode])
            .run();
        done.assert_code(2);
        done.assert_stderr("setuid, setgid or sticky");
    }
}

// ---------------------------------------------------------------------------
// Secret values never leave the process
// ---------------------------------------------------------------------------

#[test]
fn canary_never_appears_in_any_output() {
    let secret = secret();
    let torn_json = format!(r#"{{"password":"{CANARY}""#);
    let torn_yaml = format!("password: [{CANARY}\n");
    let fx = Fixture::new();
    let fake = FakeSafe::start(&[]);
    let cases: &[(&str, &[&str], i32)] = &[
        // ready, written out
        (
            &secret,
            &["--required-keys", "username,password", "--output-dir"],
            0,
        ),
        // a key missing
        (
            &secret,
            &["--required-keys", "nope", "--timeout", "500ms"],
            1,
        ),
        // invalid JSON that contains the canary
        (
            &torn_json,
            &["--required-keys", "password", "--timeout", "500ms"],
            1,
        ),
        // invalid YAML that contains the canary
        (
            &torn_yaml,
            &[
                "--format",
                "yaml",
                "--required-keys",
                "password",
                "--timeout",
                "500ms",
            ],
            1,
        ),
        // raw
        (CANARY, &["--timeout", "5s"], 0),
    ];
    for format in ["text", "json"] {
        for (value, args, code) in cases {
            fake.register("example", value);
            let mut g = gate(&fake, &fx)
                .args(["--log-level", "trace", "--log-format", format])
                .args(*args);
            if args.last() == Some(&"--output-dir") {
                g = g.arg(fx.mount.join("out")).args(["--timeout", "10s"]);
            }
            let done = g.run();
            done.assert_code(*code);
            assert_no_canary(&done.stdout, "stdout", &done.dump());
            assert_no_canary(&done.stderr, "stderr", &done.dump());
            assert_no_canary(&fx.log(), "termination log", &done.dump());
        }
    }
    // The fake itself logs names and sizes only.
    assert_no_canary(&fake.stderr(), "fake-safe's stderr", "");
}

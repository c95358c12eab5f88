//! Safe mode, end to end: the real `secret-gate safe` against the shipped
//! fake Safe and fake Workload API, over real sockets and real mTLS.
#![cfg(feature = "fake-safe")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/fake.rs"]
mod fake;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::{Fixture, Gate, Running, HANG_LIMIT};
use fake::FakeSafe;

const SECRET: &str = r#"{"username":"admin","password":"pw-CANARY-7f3a"}"#;

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

fn finish(running: Running) -> common::Finished {
    running.wait(HANG_LIMIT)
}

#[test]
fn secret_already_registered_exits_zero() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", SECRET);
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
    fake.register("example", SECRET);
    finish(running).assert_code(0);
    let statuses: Vec<u16> = fake.requests().iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses.first(), Some(&404), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
}

#[test]
fn booting_safe_503_then_400_is_not_yet() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", SECRET);
    fake.fault(&["--status", "503"]);
    let fx = Fixture::new();
    let mut running = gate(&fake, &fx).args(["--timeout", "30s"]).spawn();
    running.expect_stderr("backing store is not ready (Safe answered 503)");
    fake.fault(&["--status", "400"]);
    running.expect_stderr("Safe answered 400");
    running.assert_running("while the Safe boots");
    fake.fault(&["--clear"]);
    finish(running).assert_code(0);
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
    fake.register("example", SECRET);
    finish(running).assert_code(0);
}

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
    let log = fx.log();
    assert!(log.contains("safe: not ready after 1s"), "{log}");
    assert!(log.contains(r#"Safe: key "/db/password" missing"#), "{log}");
}

#[test]
fn wrong_safe_id_is_refused_and_explained() {
    let fake = FakeSafe::start(&["--wrong-safe-id"]);
    fake.register("example", SECRET);
    let fx = Fixture::new();
    let done = gate(&fake, &fx).args(["--timeout", "2s"]).run();
    done.assert_code(1);
    let log = fx.log();
    assert!(
        log.contains("server presented spiffe://vsecm.com/workload/evil/ns/default/sa/evil/n/evil-0 which does not match VSECM_SPIFFEID_PREFIX_SAFE"),
        "{log}"
    );
    // The gate never sent a request to the impostor.
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[test]
fn literal_prefix_rule_works_like_vsecm() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", SECRET);
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
    assert!(
        fx.log()
            .contains("does not match VSECM_SPIFFEID_PREFIX_SAFE"),
        "{}",
        fx.log()
    );
}

#[test]
fn untrusted_ca_is_refused_and_explained() {
    let fake = FakeSafe::start(&["--untrusted-ca"]);
    fake.register("example", SECRET);
    let fx = Fixture::new();
    gate(&fake, &fx)
        .args(["--timeout", "2s"])
        .run()
        .assert_code(1);
    let log = fx.log();
    assert!(
        log.contains("not signed by the trust bundle from the Workload API"),
        "{log}"
    );
    assert!(fake.requests().is_empty());
}

/// A free loopback port: bind to port 0, note it, release it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    fake.register("example", SECRET);
    finish(running).assert_code(0);
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
    assert!(
        fx.log().contains("Workload API not reachable at unix://"),
        "{}",
        fx.log()
    );
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
    let log = fx.log();
    assert!(
        log.contains(&format!("cannot connect to the Safe at 127.0.0.1:{closed}")),
        "{log}"
    );
}

#[test]
fn slow_safe_hits_the_attempt_timeout() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", SECRET);
    fake.fault(&["--delay", "5s"]);
    let fx = Fixture::new();
    let done = gate(&fake, &fx)
        .args(["--attempt-timeout", "300ms", "--timeout", "2s"])
        .run();
    done.assert_code(1);
    assert!(done.elapsed < Duration::from_secs(10), "{}", done.dump());
    assert!(
        fx.log()
            .contains("no answer from the Safe within the attempt timeout (300ms)"),
        "{}",
        fx.log()
    );
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
    assert!(
        fx.log()
            .contains("larger than --max-body-size (4096 bytes)"),
        "{}",
        fx.log()
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn output_file_is_written_atomically_with_its_mode() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", SECRET);
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
    assert_eq!(std::fs::read_to_string(&out).unwrap(), SECRET);
    assert_eq!(mode(&out), 0o400);
    // Replaced by rename, not rewritten in place; no temp file left over.
    assert_ne!(std::fs::metadata(&out).unwrap().ino(), old_inode);
    assert_eq!(names(&fx.mount), ["secrets.json"]);
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
    gate(&fake, &fx)
        .arg("--output-dir")
        .arg(&dir)
        .args(["--timeout", "1s"])
        .run()
        .assert_code(1);
    assert!(
        fx.log()
            .contains("top-level key number 1 of the secret cannot be a file name in --output-dir (it contains `/` or NUL)"),
        "{}",
        fx.log()
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
fn sigterm_while_waiting_exits_143() {
    let fake = FakeSafe::start(&[]);
    let fx = Fixture::new();
    let mut running = gate(&fake, &fx).spawn();
    running.expect_stderr("Safe answered 404");
    running.signal("TERM");
    let done = finish(running);
    done.assert_code(143);
    assert!(
        fx.log().contains("safe: stopped by SIGTERM"),
        "{}",
        fx.log()
    );
}

#[test]
fn vsecm_env_only_pod_spec_works_unchanged() {
    // Only the variables a vsecm-ist-init-container pod spec sets.
    let fake = FakeSafe::start(&[]);
    fake.register("example", SECRET);
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
fn canary_never_appears_in_any_output() {
    let canary = "pw-CANARY-7f3a";
    let fx = Fixture::new();
    let fake = FakeSafe::start(&[]);
    let cases: &[(&str, &[&str], i32)] = &[
        // ready, written out
        (
            SECRET,
            &["--required-keys", "username,password", "--output-dir"],
            0,
        ),
        // a key missing
        (
            SECRET,
            &["--required-keys", "nope", "--timeout", "500ms"],
            1,
        ),
        // invalid JSON that contains the canary
        (
            r#"{"password":"pw-CANARY-7f3a""#,
            &["--required-keys", "password", "--timeout", "500ms"],
            1,
        ),
        // invalid YAML that contains the canary
        (
            "password: [pw-CANARY-7f3a\n",
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
        ("pw-CANARY-7f3a", &["--timeout", "5s"], 0),
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
            assert!(
                !done.stdout.contains(canary),
                "stdout leaks: {}",
                done.dump()
            );
            assert!(
                !done.stderr.contains(canary),
                "stderr leaks: {}",
                done.dump()
            );
            assert!(
                !fx.log().contains(canary),
                "termination log leaks: {}",
                fx.log()
            );
        }
    }
    // The fake itself logs names and sizes only.
    assert!(!fake.stderr().contains(canary), "fake-safe leaks");
}

#[test]
fn empty_or_unparsable_vsecm_variables_mean_the_default_as_in_vsecm() {
    let fake = FakeSafe::start(&[]);
    fake.register("example", SECRET);
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

#[test]
fn the_safe_id_must_also_be_a_workload_id_as_in_vsecm() {
    // Passes the literal Safe prefix from VSecM's manifests, but has an
    // extra path segment, so it is no VSecM workload ID.
    let odd = "spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/x/extra";
    let fake = FakeSafe::start(&["--safe-id", odd]);
    fake.register("example", SECRET);
    let fx = Fixture::new();
    gate(&fake, &fx)
        .env(
            "VSECM_SPIFFEID_PREFIX_SAFE",
            "spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/",
        )
        .args(["--timeout", "1s"])
        .run()
        .assert_code(1);
    let log = fx.log();
    assert!(
        log.contains(&format!(
            "server presented {odd} which does not match VSECM_SPIFFEID_PREFIX_WORKLOAD"
        )),
        "{log}"
    );
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
    assert!(
        fx.log()
            .contains("--output-dir needs a JSON or YAML object"),
        "{}",
        fx.log()
    );
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

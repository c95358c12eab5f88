//! The shipped fake Safe and Workload API, driven as users drive them: the
//! real `fake-safe` binary, the spiffe crate as the Workload API client and
//! a SPIFFE mTLS client for the Safe.

// The root package's helpers, shared so both packages drive the fake the
// same way.
#[path = "../../tests/common/bounded.rs"]
mod bounded;
#[path = "../../tests/common/fake.rs"]
#[expect(
    clippy::expect_used,
    reason = "the fake Safe's helpers fail the test with expect(); they are test code"
)]
mod fake;

use fake::{get, get_secrets, mtls_config, no_client_cert_config, x509_source, FakeSafe};
use fake_safe::proto::{X509svidRequest, X509svidResponse};
use fake_safe::{DEFAULT_SAFE_ID, DEFAULT_WORKLOAD_ID};
use hyper::StatusCode;

const EVIL_ID: &str = "spiffe://vsecm.com/workload/evil/ns/default/sa/evil/n/evil-0";

#[tokio::test]
async fn the_workload_api_hands_out_the_svid_and_bundle() {
    let fake = FakeSafe::start(&[]);
    assert_eq!(fake.stdout(), "fake-safe: ready\n");
    assert_eq!(fake.env["SPIFFE_TRUST_DOMAIN"], "vsecm.com");
    let socket = fake.path("agent.sock");
    assert_eq!(
        fake.spiffe_endpoint(),
        format!("unix://{}", socket.display())
    );

    let source = x509_source(fake.spiffe_endpoint()).await;
    let svid = source.svid().unwrap();
    assert_eq!(svid.spiffe_id().to_string(), DEFAULT_WORKLOAD_ID);
    let td = spiffe::TrustDomain::new("vsecm.com").unwrap();
    let bundle = source.bundle_set().unwrap().get(&td).unwrap();
    assert_eq!(bundle.authorities().len(), 1);
    // bundle.pem holds the same CA.
    let pem = std::fs::read_to_string(fake.path("bundle.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

    // The plain client and FetchX509Bundles work too.
    let client = spiffe::WorkloadApiClient::connect_to(fake.spiffe_endpoint())
        .await
        .unwrap();
    let svid = client.fetch_x509_svid().await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), DEFAULT_WORKLOAD_ID);
    let bundles = client.fetch_x509_bundles().await.unwrap();
    assert!(bundles.get(&td).is_some());
    source.shutdown().await;
}

#[tokio::test]
async fn the_workload_api_refuses_a_call_without_the_security_header() {
    let fake = FakeSafe::start(&[]);
    let endpoint = spiffe::transport::Endpoint::parse(fake.spiffe_endpoint()).unwrap();
    let channel = spiffe::transport::connect(&endpoint).await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/SpiffeWorkloadAPI/FetchX509SVID");

    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let refused = grpc
        .server_streaming(
            tonic::Request::new(X509svidRequest {}),
            path.clone(),
            tonic_prost::ProstCodec::<X509svidRequest, X509svidResponse>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(refused.message(), "security header missing from request");

    // The same call with the header is answered.
    let mut request = tonic::Request::new(X509svidRequest {});
    request
        .metadata_mut()
        .insert("workload.spiffe.io", "true".parse().unwrap());
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(
            request,
            path,
            tonic_prost::ProstCodec::<X509svidRequest, X509svidResponse>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(fake::WAIT_LIMIT, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.svids[0].spiffe_id, DEFAULT_WORKLOAD_ID);
}

#[tokio::test]
async fn the_safe_answers_like_vsecm() {
    let fake = FakeSafe::start(&[]);
    let source = x509_source(fake.spiffe_endpoint()).await;
    let config = mtls_config(&source);
    let addr = fake.safe_addr();

    let answer = get_secrets(config.clone(), addr).await.unwrap();
    assert_eq!(answer.safe_id, DEFAULT_SAFE_ID);
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.body.is_empty());

    fake.register("example", r#"{"username":"admin","password":"s3cr3t"}"#);
    let answer = get_secrets(config.clone(), addr).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers.get("content-type").is_none(), "{answer:?}");
    let body = std::str::from_utf8(&answer.body).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let object = json.as_object().unwrap();
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        ["created", "data", "updated"],
        "{body}"
    );
    assert_eq!(json["data"], r#"{"username":"admin","password":"s3cr3t"}"#);
    let created = json["created"].as_str().unwrap();
    assert_eq!(json["updated"], created);
    // VSecM's quirk: the RFC 3339 time carries literal quotes.
    let stamp = created
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap();
    humantime::parse_rfc3339(stamp).unwrap();
    assert!(body.starts_with(r#"{"data":"#), "{body}");
    assert!(
        body.contains(&format!(r#""created":"\"{stamp}\"""#)),
        "{body}"
    );

    let out = fake.cli("register", &["--workload", "example", "--delete"]);
    assert!(out.status.success(), "{out:?}");
    let answer = get_secrets(config.clone(), addr).await.unwrap();
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    // Any other route is a 400 with an empty body.
    let answer = get(config, addr, "/workload/v1/secret").await.unwrap();
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.is_empty());

    let statuses: Vec<u16> = fake.requests().iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, [404, 200, 404, 400]);
    // Logs name the workload, never the value.
    let log = fake.stderr();
    assert!(log.contains("workload=example"), "{log}");
    assert!(!log.contains("s3cr3t"), "{log}");
    source.shutdown().await;
}

#[tokio::test]
async fn faults_change_the_running_safe() {
    let fake = FakeSafe::start(&[]);
    let source = x509_source(fake.spiffe_endpoint()).await;
    let config = mtls_config(&source);
    let addr = fake.safe_addr();
    fake.register("example", "value");

    fake.fault(&["--status", "503"]);
    let answer = get_secrets(config.clone(), addr).await.unwrap();
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(&answer.body[..], b"NOK!");

    fake.fault(&["--status", "400"]);
    let answer = get_secrets(config.clone(), addr).await.unwrap();
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.is_empty());

    fake.fault(&["--oversize", "100000", "--delay", "50ms"]);
    let started = std::time::Instant::now();
    let answer = get_secrets(config.clone(), addr).await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body.len(), 100_000);

    fake.fault(&["--clear"]);
    let answer = get_secrets(config, addr).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(json["data"], "value");

    // Fault statuses outside 200..=599 are usage errors.
    let out = fake.cli("fault", &["--status", "42"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    source.shutdown().await;
}

#[tokio::test]
async fn the_safe_refuses_a_client_without_a_certificate() {
    let fake = FakeSafe::start(&[]);
    let source = x509_source(fake.spiffe_endpoint()).await;
    let error = get_secrets(no_client_cert_config(&source), fake.safe_addr())
        .await
        .unwrap_err();
    assert!(error.to_lowercase().contains("alert"), "{error}");
    assert!(fake.requests().is_empty());
    source.shutdown().await;
}

#[tokio::test]
async fn the_safe_refuses_a_client_that_is_not_a_workload() {
    let fake = FakeSafe::start(&["--workload-id", "spiffe://vsecm.com/not-a-workload/example"]);
    let source = x509_source(fake.spiffe_endpoint()).await;
    let error = get_secrets(mtls_config(&source), fake.safe_addr())
        .await
        .unwrap_err();
    assert!(error.to_lowercase().contains("alert"), "{error}");
    assert!(fake.requests().is_empty());
    let log = fake.stderr();
    assert!(log.contains("not a workload ID"), "{log}");
    source.shutdown().await;
}

#[tokio::test]
async fn wrong_safe_id_presents_the_evil_id() {
    let fake = FakeSafe::start(&["--wrong-safe-id"]);
    let source = x509_source(fake.spiffe_endpoint()).await;
    let answer = get_secrets(mtls_config(&source), fake.safe_addr())
        .await
        .unwrap();
    assert_eq!(answer.safe_id, EVIL_ID);
    source.shutdown().await;
}

#[tokio::test]
async fn untrusted_ca_fails_server_verification() {
    let fake = FakeSafe::start(&["--untrusted-ca"]);
    let source = x509_source(fake.spiffe_endpoint()).await;
    let error = get_secrets(mtls_config(&source), fake.safe_addr())
        .await
        .unwrap_err();
    assert!(error.starts_with("TLS handshake"), "{error}");
    source.shutdown().await;
}

#[tokio::test]
async fn options_change_ids_socket_and_port() {
    let socket_dir = tempfile::tempdir().unwrap();
    let socket = socket_dir.path().join("spire-agent.sock");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let fake = FakeSafe::start(&[
        "--trust-domain",
        "example.org",
        "--workload-id",
        "spiffe://example.org/workload/billing/ns/prod/sa/billing/n/billing-7",
        "--safe-id",
        "spiffe://example.org/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/vsecm-safe-1",
        "--socket",
        socket.to_str().unwrap(),
        "--port",
        &port.to_string(),
    ]);
    assert_eq!(
        fake.spiffe_endpoint(),
        format!("unix://{}", socket.display())
    );
    assert_eq!(fake.safe_url(), format!("https://127.0.0.1:{port}/"));
    assert_eq!(fake.env["SPIFFE_TRUST_DOMAIN"], "example.org");

    let source = x509_source(fake.spiffe_endpoint()).await;
    fake.register("billing", "42");
    let answer = get_secrets(mtls_config(&source), fake.safe_addr())
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.safe_id,
        "spiffe://example.org/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/vsecm-safe-1"
    );
    source.shutdown().await;
}

#[tokio::test]
async fn sigterm_stops_it_cleanly_even_with_open_streams() {
    let mut fake = FakeSafe::start(&[]);
    let env = fake.path("env");
    let socket = fake.path("agent.sock");
    assert!(env.exists() && socket.exists());
    // A client holding the FetchX509SVID stream open, as a gate does.
    let source = x509_source(fake.spiffe_endpoint()).await;
    let (fake, status) = tokio::task::spawn_blocking(move || {
        let status = fake.terminate();
        (fake, status)
    })
    .await
    .unwrap();
    let log = fake.stderr();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(!log.contains("did not close"), "{log}");
    assert!(!env.exists(), "DIR/env outlived the server");
    assert!(!socket.exists(), "the socket outlived the server");
    source.shutdown().await;
}

#[test]
fn a_stale_socket_is_replaced_but_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let fake = FakeSafe::start(&["--socket", socket.to_str().unwrap()]);
    assert_eq!(
        fake.spiffe_endpoint(),
        format!("unix://{}", socket.display())
    );
    drop(fake);

    let not_a_socket = dir.path().join("file");
    std::fs::write(&not_a_socket, "keep me").unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = fake::run_bounded(bounded::Gate::program(fake::fake_safe_bin()).args([
        "serve",
        "--state-dir",
        state.path().to_str().unwrap(),
        "--socket",
        not_a_socket.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("is not a socket"), "{out:?}");
    assert_eq!(std::fs::read_to_string(&not_a_socket).unwrap(), "keep me");
}

#[test]
fn register_and_fault_need_no_server() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let run =
        |args: &[&str]| fake::run_bounded(bounded::Gate::program(fake::fake_safe_bin()).args(args));

    let out = run(&[
        "register",
        "--state-dir",
        state,
        "--workload",
        "example",
        "--value",
        "v1",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("secrets/example")).unwrap(),
        "v1"
    );

    let value_file = dir.path().join("value.txt");
    std::fs::write(&value_file, "from a file").unwrap();
    let out = run(&[
        "register",
        "--state-dir",
        state,
        "--workload",
        "example",
        "--value-file",
        value_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("secrets/example")).unwrap(),
        "from a file"
    );

    let out = run(&[
        "register",
        "--state-dir",
        state,
        "--workload",
        "../x",
        "--value",
        "v",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = run(&["register", "--state-dir", state, "--workload", "example"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    let out = run(&[
        "fault",
        "--state-dir",
        state,
        "--status",
        "503",
        "--delay",
        "1s",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("faults.json")).unwrap(),
        "{\"status\":503,\"delay_ms\":1000}\n"
    );
    let out = run(&["fault", "--state-dir", state, "--clear"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!dir.path().join("faults.json").exists());
}

/// `fake-safe wait` returns once a server is ready, fails at once when the
/// server it waits for exits first, and says what to do when none comes.
#[test]
fn wait_returns_when_ready_and_fails_when_the_server_does_not_come() {
    use bounded::Gate;
    let fake = FakeSafe::start(&[]);
    let wait = |dir: &std::path::Path, extra: &[&str]| {
        Gate::program(fake::fake_safe_bin())
            .shown_as("fake-safe")
            .env_remove("FAKE_SAFE_STATE_DIR")
            .arg("wait")
            .arg("--state-dir")
            .arg(dir)
            .args(extra)
            .run()
    };
    wait(fake.dir(), &[]).assert_code(0);

    // A serve that cannot start: its state directory is a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let mut serve = Gate::program(fake::fake_safe_bin())
        .arg("serve")
        .arg("--state-dir")
        .arg(&file)
        .spawn();
    let pid = serve.pid().to_string();
    let run = wait(&file, &["--pid", &pid, "--timeout", "60s"]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("exited before it was ready"),
        "{}",
        run.dump()
    );
    assert!(serve
        .exit_within(std::time::Duration::from_secs(10))
        .is_some());

    let run = wait(dir.path(), &["--timeout", "200ms"]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("no fake-safe serve was ready")
            && run.stderr.contains("fake-safe serve --state-dir"),
        "{}",
        run.dump()
    );
}

#[tokio::test]
async fn the_agent_stops_and_comes_back_on_a_new_inode_with_a_new_svid() {
    use std::os::unix::fs::MetadataExt as _;
    let fake = FakeSafe::start(&["--svid-ttl", "1h"]);
    let socket = fake.path("agent.sock");
    let first_inode = std::fs::metadata(&socket).unwrap().ino();
    let source = spiffe::X509Source::builder()
        .endpoint(fake.spiffe_endpoint())
        .initial_sync_timeout(fake::WAIT_LIMIT)
        .reconnect_backoff(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_millis(200),
        )
        .build()
        .await
        .unwrap();
    let first = source.svid().unwrap();
    let mut updates = source.updated();

    let (stopped_at, inode) = fake.agent(false);
    assert_eq!(inode, None);
    assert!(
        !socket.exists(),
        "the socket is removed while the agent is down"
    );
    let (started_at, inode) = fake.agent(true);
    assert!(started_at >= stopped_at);
    let inode = inode.unwrap();
    assert_ne!(inode, first_inode, "a new socket");
    assert_eq!(std::fs::metadata(&socket).unwrap().ino(), inode);

    // Bounded: the source retries every 200 ms at most.
    let renewed = tokio::time::timeout(fake::WAIT_LIMIT, async {
        loop {
            updates.changed().await.unwrap();
            if let Some(svid) = source.try_svid() {
                if svid.leaf() != first.leaf() {
                    return svid;
                }
            }
        }
    })
    .await
    .expect("the source got the restarted agent's SVID");
    assert_eq!(renewed.spiffe_id(), first.spiffe_id());
    let log = std::fs::read_to_string(fake.path("agent.log")).unwrap();
    let events: Vec<&str> = log
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(events, ["started", "stopped", "started"], "{log}");
    source.shutdown().await;
}

#[test]
fn agent_without_a_running_fake_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = fake::run_bounded(bounded::Gate::program(fake::fake_safe_bin()).args([
        "agent",
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--stop",
        "--wait",
        "200ms",
    ]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("is `fake-safe serve` running with this --state-dir?"),
        "{out:?}"
    );
}

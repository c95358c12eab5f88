//! The admission webhook as a process: the real `secret-gate-injector
//! webhook` binary over real TLS (rustls), with a real HTTP/1.1 client
//! (hyper), certificates from rcgen in a kubelet-style Secret volume.
//!
//! Reviews, certificate start-up failures, rotation and torn rotation,
//! SIGTERM with reviews in flight, concurrency, and hostile input. The
//! golden corpus through the webhook is `tests/webhook_goldens.rs`.
#![expect(clippy::expect_used, reason = "tests")]

#[path = "../../tests/common/bounded.rs"]
mod bounded;
mod webhook_support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use webhook_support::{
    metric, once, patched, pod_review, start, wait_until, Client, Gate, Pki, SecretVolume, BIN,
};

fn opted_in_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-",
            "labels": {"app": "web", "secret-gate.dev/inject": "true"},
            "annotations": {
                "secret-gate.dev/inject": "true",
                "secret-gate.dev/mount-path": "/opt/vsecm",
                "secret-gate.dev/file": "secrets.json",
            },
        },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "example/app:1",
                "volumeMounts": [{"name": "secrets", "mountPath": "/opt/vsecm"}],
            }],
            "volumes": [{"name": "secrets", "emptyDir": {}}],
        },
    })
}

fn plain_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain", "labels": {"app": "plain"}},
        "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime")
}

/// The metrics text, on a fresh connection.
async fn scrape(hook: &webhook_support::Webhook, pki: &Pki) -> String {
    once(
        hook.addr,
        pki.client_config(),
        "GET",
        "/metrics",
        Vec::new(),
    )
    .await
    .expect("GET /metrics")
    .text()
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
fn reviews_are_answered_by_kind_namespace_and_opt_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let volume = SecretVolume::new(&dir.path().join("tls"), &pki.valid());
    let mut hook = start(&volume, &[]);
    runtime().block_on(async {
        let mut client = Client::connect(hook.addr, pki.client_config())
            .await
            .expect("connect");

        let health = client
            .send("GET", "/healthz", Vec::new())
            .await
            .expect("healthz");
        assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));

        // Opted in: allowed, with a patch whose result the core decides
        // (the goldens check it exactly); the pod changes.
        let pod = opted_in_pod();
        let answer = client
            .review(&pod_review("uid-in", "apps", &pod))
            .await
            .expect("review");
        assert_eq!(answer.status, 200, "{}", answer.text());
        let review = answer.json();
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(review["kind"], "AdmissionReview");
        assert_eq!(review["response"]["uid"], "uid-in");
        assert_eq!(review["response"]["allowed"], true, "{review}");
        assert_ne!(patched(&pod, &review), pod, "{review}");

        // Not opted in: allowed, no patch.
        let answer = client
            .review(&pod_review("uid-plain", "apps", &plain_pod()))
            .await
            .expect("review");
        let review = answer.json();
        assert_eq!(
            review["response"],
            json!({"uid": "uid-plain", "allowed": true}),
            "{review}"
        );

        // kube-system and kube-public: never injected, whatever the pod says.
        for namespace in ["kube-system", "kube-public"] {
            let answer = client
                .review(&pod_review("uid-sys", namespace, &pod))
                .await
                .expect("review");
            assert_eq!(
                answer.json()["response"],
                json!({"uid": "uid-sys", "allowed": true}),
                "{namespace}: {}",
                answer.text()
            );
        }

        // An UPDATE: allowed, no patch.
        let mut update = pod_review("uid-up", "apps", &pod);
        update["request"]["operation"] = json!("UPDATE");
        let answer = client.review(&update).await.expect("review");
        assert_eq!(
            answer.json()["response"],
            json!({"uid": "uid-up", "allowed": true})
        );

        // Not a Pod: an AdmissionReview error response.
        let mut deployment = pod_review("uid-dep", "apps", &pod);
        deployment["request"]["kind"] =
            json!({"group": "apps", "version": "v1", "kind": "Deployment"});
        let answer = client.review(&deployment).await.expect("review");
        let review = answer.json();
        assert_eq!(answer.status, 200);
        assert_eq!(review["response"]["allowed"], false, "{review}");
        assert_eq!(review["response"]["status"]["code"], 400);
        let message = review["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(
            message.contains("not apps/v1 Deployment") && message.contains("rules"),
            "{message}"
        );

        let text = client
            .send("GET", "/metrics", Vec::new())
            .await
            .expect("metrics")
            .text();
        assert_eq!(
            metric(
                &text,
                r#"secret_gate_injector_reviews_total{outcome="injected"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            metric(
                &text,
                r#"secret_gate_injector_reviews_total{outcome="skipped"}"#
            ),
            Some(4.0),
            "{text}"
        );
        assert_eq!(
            metric(
                &text,
                r#"secret_gate_injector_reviews_total{outcome="error"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            metric(&text, "secret_gate_injector_review_duration_seconds_count"),
            Some(6.0),
            "{text}"
        );
        assert!(
            metric(&text, "secret_gate_injector_certificate_not_after_seconds")
                .is_some_and(|v| v > 1.7e9),
            "{text}"
        );
    });
    hook.process.assert_running("after the reviews");
}

#[test]
fn a_missing_or_expired_certificate_stops_the_start_with_a_diagnosis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let expired = pki.serving(-10 * 86_400, -3600);
    let volume = SecretVolume::new(&dir.path().join("tls"), &expired);
    let log = dir.path().join("termination-log");
    let run = |cert: &std::path::Path, key: &std::path::Path| {
        Gate::program(BIN)
            .arg("webhook")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .arg("--termination-log")
            .arg(&log)
            .run()
    };
    let finished = run(&volume.cert(), &volume.key());
    finished.assert_code(1);
    let diagnosis = std::fs::read_to_string(&log).expect("termination log");
    assert!(
        diagnosis.contains("expired")
            && diagnosis.contains("tls.crt")
            && diagnosis.contains("renew"),
        "{diagnosis}\n{}",
        finished.dump()
    );
    assert!(!diagnosis.contains("PRIVATE KEY"), "{diagnosis}");

    let finished = run(&dir.path().join("nope.crt"), &volume.key());
    finished.assert_code(1);
    let diagnosis = std::fs::read_to_string(&log).expect("termination log");
    assert!(
        diagnosis.contains("nope.crt") && diagnosis.contains("does not exist"),
        "{diagnosis}"
    );

    // A key from another pair.
    let other = pki.valid();
    let fresh = pki.valid();
    let mismatched = SecretVolume::new(&dir.path().join("mismatch"), &fresh);
    let key = dir.path().join("other.key");
    std::fs::write(&key, &other.key_pem).expect("other key");
    let finished = run(&mismatched.cert(), &key);
    finished.assert_code(1);
    let diagnosis = std::fs::read_to_string(&log).expect("termination log");
    assert!(diagnosis.contains("does not match"), "{diagnosis}");

    // Usage errors are exit 2.
    Gate::program(BIN)
        .args(["webhook", "--listen", "nowhere"])
        .run()
        .assert_code(2);
}

#[test]
fn a_rotated_certificate_reaches_new_connections_and_old_ones_stay_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let first = pki.valid();
    let second = pki.valid();
    let mut volume = SecretVolume::new(&dir.path().join("tls"), &first);
    let mut hook = start(&volume, &[]);
    let rt = runtime();
    let mut kept = rt.block_on(async {
        let mut kept = Client::connect(hook.addr, pki.client_config())
            .await
            .expect("connect");
        assert_eq!(kept.peer_cert, first.der);
        let answer = kept
            .review(&pod_review("before", "apps", &plain_pod()))
            .await
            .expect("review");
        assert_eq!(answer.status, 200);
        kept
    });

    volume.swap(&second.cert_pem, &second.key_pem);
    let served = wait_until(Duration::from_secs(10), || {
        rt.block_on(once(
            hook.addr,
            pki.client_config(),
            "GET",
            "/healthz",
            Vec::new(),
        ))
        .is_ok_and(|a| a.peer_cert == second.der)
    });
    assert!(
        served,
        "the rotated certificate was not served within 10 s\n{}",
        hook.process.dump()
    );
    rt.block_on(async {
        // The connection made before the swap still works.
        let answer = kept
            .review(&pod_review("after", "apps", &plain_pod()))
            .await
            .expect("the kept-alive connection survives the rotation");
        assert_eq!(answer.json()["response"]["uid"], "after");
        let text = scrape(&hook, &pki).await;
        assert_eq!(
            metric(&text, "secret_gate_injector_certificate_reloads_total"),
            Some(1.0),
            "{text}"
        );
    });
    hook.process.assert_running("after the rotation");
}

#[test]
fn a_torn_or_expired_rotation_keeps_the_old_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let first = pki.valid();
    let second = pki.valid();
    let mut volume = SecretVolume::new(&dir.path().join("tls"), &first);
    let mut hook = start(&volume, &[]);
    let rt = runtime();
    let rejections = |rt: &tokio::runtime::Runtime| {
        let text = rt.block_on(scrape(&hook, &pki));
        metric(
            &text,
            "secret_gate_injector_certificate_reload_rejections_total",
        )
        .unwrap_or(-1.0)
    };
    assert!((rejections(&rt) - 0.0).abs() < f64::EPSILON);

    // A new certificate with the old key: torn.
    volume.swap(&second.cert_pem, &first.key_pem);
    assert!(
        wait_until(Duration::from_secs(10), || rejections(&rt) >= 1.0),
        "the torn pair was not counted\n{}",
        hook.process.dump()
    );
    let answer = rt
        .block_on(once(
            hook.addr,
            pki.client_config(),
            "GET",
            "/healthz",
            Vec::new(),
        ))
        .expect("healthz");
    assert_eq!(answer.peer_cert, first.der, "the torn pair was served");
    assert_eq!(answer.status, 200);

    // A truncated certificate.
    let half = &second.cert_pem[..second.cert_pem.len() / 2];
    volume.swap(half, &second.key_pem);
    assert!(
        wait_until(Duration::from_secs(10), || rejections(&rt) >= 2.0),
        "the truncated certificate was not counted\n{}",
        hook.process.dump()
    );
    // An expired pair.
    let expired = pki.serving(-10 * 86_400, -60);
    volume.swap(&expired.cert_pem, &expired.key_pem);
    assert!(
        wait_until(Duration::from_secs(10), || rejections(&rt) >= 3.0),
        "the expired pair was not counted\n{}",
        hook.process.dump()
    );
    let answer = rt
        .block_on(once(
            hook.addr,
            pki.client_config(),
            "GET",
            "/healthz",
            Vec::new(),
        ))
        .expect("healthz");
    assert_eq!(answer.peer_cert, first.der, "a rejected pair was served");
    let stderr = hook.process.stderr();
    assert!(
        stderr.contains("still serving the previous certificate")
            && stderr.contains("does not match"),
        "{stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");

    // The good pair, at last.
    volume.swap(&second.cert_pem, &second.key_pem);
    assert!(wait_until(Duration::from_secs(10), || {
        rt.block_on(once(
            hook.addr,
            pki.client_config(),
            "GET",
            "/healthz",
            Vec::new(),
        ))
        .is_ok_and(|a| a.peer_cert == second.der)
    }));
    hook.process.assert_running("after the rotations");
}

#[test]
fn concurrent_reviews_are_each_answered_for_their_own_pod() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let volume = SecretVolume::new(&dir.path().join("tls"), &pki.valid());
    let mut hook = start(&volume, &[]);
    let rt = runtime();
    let addr = hook.addr;
    rt.block_on(async {
        let mut tasks = Vec::new();
        for connection in 0..24 {
            let config = pki.client_config();
            tasks.push(tokio::spawn(async move {
                let mut client = Client::connect(addr, config).await.expect("connect");
                for n in 0..10 {
                    let uid = format!("c{connection}-r{n}");
                    let (pod, opted) = if n % 2 == 0 {
                        (opted_in_pod(), true)
                    } else {
                        (plain_pod(), false)
                    };
                    let answer = client
                        .review(&pod_review(&uid, "apps", &pod))
                        .await
                        .expect("review");
                    let review = answer.json();
                    assert_eq!(review["response"]["uid"], uid.as_str());
                    assert_eq!(review["response"]["allowed"], true);
                    assert_eq!(review["response"]["patch"].is_string(), opted, "{review}");
                }
            }));
        }
        for task in tasks {
            task.await.expect("a client task failed");
        }
        let text = scrape(&hook, &pki).await;
        assert_eq!(
            metric(&text, "secret_gate_injector_review_duration_seconds_count"),
            Some(240.0),
            "{text}"
        );
    });
    hook.process.assert_running("after the reviews");
}

/// The `injected` line is the webhook's audit trail: one per review, each
/// naming its pod, none lost when SIGTERM comes the moment the last answer
/// is read.
#[test]
fn every_review_is_logged_also_when_sigterm_follows_at_once() {
    const CONNECTIONS: usize = 8;
    const EACH: usize = 25;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let volume = SecretVolume::new(&dir.path().join("tls"), &pki.valid());
    let mut hook = start(&volume, &[]);
    let rt = runtime();
    let addr = hook.addr;
    rt.block_on(async {
        let mut tasks = Vec::new();
        for connection in 0..CONNECTIONS {
            let config = pki.client_config();
            tasks.push(tokio::spawn(async move {
                let mut client = Client::connect(addr, config).await.expect("connect");
                for n in 0..EACH {
                    let mut pod = opted_in_pod();
                    pod["metadata"]["name"] = format!("logged-{connection}-{n}").into();
                    let answer = client
                        .review(&pod_review(&format!("l{connection}-{n}"), "apps", &pod))
                        .await
                        .expect("review");
                    assert!(answer.json()["response"]["patch"].is_string());
                }
            }));
        }
        for task in tasks {
            task.await.expect("a client task failed");
        }
    });
    hook.process.signal("TERM");
    let status = hook
        .process
        .exit_within(Duration::from_secs(10))
        .expect("the webhook did not exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", hook.process.dump());
    let stderr = hook.process.stderr();
    let injected: Vec<&str> = stderr.lines().filter(|l| l.contains(" injected")).collect();
    assert_eq!(injected.len(), CONNECTIONS * EACH, "{stderr}");
    for connection in 0..CONNECTIONS {
        for n in 0..EACH {
            let name = format!("pod/logged-{connection}-{n} in apps");
            assert!(
                injected.iter().any(|l| l.contains(&name)),
                "no line for {name}\n{stderr}"
            );
        }
    }
    assert!(
        stderr.trim_end().ends_with("stopped"),
        "the last line is not `stopped`\n{stderr}"
    );
}

#[test]
fn sigterm_lets_reviews_in_flight_finish_and_refuses_new_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let volume = SecretVolume::new(&dir.path().join("tls"), &pki.valid());
    let mut hook = start(&volume, &["--test-review-delay", "1500ms"]);
    let rt = runtime();
    let addr = hook.addr;
    let in_flight = rt.block_on(async {
        let mut tasks = Vec::new();
        for n in 0..4 {
            let config = pki.client_config();
            let mut client = Client::connect(addr, config).await.expect("connect");
            tasks.push(tokio::spawn(async move {
                client
                    .review(&pod_review(&format!("t{n}"), "apps", &plain_pod()))
                    .await
            }));
        }
        // The reviews are read and held by the delay well before it ends.
        tokio::time::sleep(Duration::from_millis(500)).await;
        tasks
    });
    hook.process.signal("TERM");
    // New connections are refused once the listener is closed.
    assert!(
        wait_until(Duration::from_secs(1), || TcpStream::connect(addr).is_err()),
        "still accepting after SIGTERM\n{}",
        hook.process.dump()
    );
    rt.block_on(async {
        for (n, task) in in_flight.into_iter().enumerate() {
            let answer = task
                .await
                .expect("task")
                .unwrap_or_else(|e| panic!("review t{n} in flight was dropped: {e}"));
            assert_eq!(answer.status, 200);
            assert_eq!(answer.json()["response"]["uid"], format!("t{n}"));
        }
    });
    let status = hook
        .process
        .exit_within(Duration::from_secs(10))
        .expect("the webhook did not exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", hook.process.dump());
}

/// Writes raw bytes over TLS and reads what comes back until the server
/// closes (bounded).
fn raw_tls(addr: std::net::SocketAddr, pki: &Pki, bytes: &[u8]) -> String {
    let config = pki.client_config();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(config, name).expect("client");
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let _ = tls.write_all(bytes);
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
fn hostile_input_is_answered_and_the_webhook_stays_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let volume = SecretVolume::new(&dir.path().join("tls"), &pki.valid());
    let mut hook = start(&volume, &["--max-connections", "32"]);
    let addr = hook.addr;
    let rt = runtime();
    let post = |body: Vec<u8>| {
        rt.block_on(once(addr, pki.client_config(), "POST", "/mutate", body))
            .expect("POST")
    };

    let table: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("empty", Vec::new(), 400, "empty body"),
        ("not JSON", b"\x00\xffgarbage".to_vec(), 400, "invalid JSON"),
        ("truncated", br#"{"apiVersion":"admission.k8s.io/v1","#.to_vec(), 400, "ends early"),
        ("deep nesting", "[".repeat(100_000).into_bytes(), 400, "not a valid AdmissionReview"),
        (
            "v1beta1",
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#.to_vec(),
            400,
            "expected apiVersion admission.k8s.io/v1",
        ),
        (
            "wrong kind",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"ConfigMap"}"#.to_vec(),
            400,
            "kind AdmissionReview",
        ),
        ("no request", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), 400, "no request"),
    ];
    for (what, body, status, needle) in table {
        let answer = post(body);
        assert_eq!(answer.status, status, "{what}: {}", answer.text());
        assert!(answer.text().contains(needle), "{what}: {}", answer.text());
        hook.process.assert_running(what);
    }

    // A Pod review whose object is not an object, and one with no object.
    for (what, object) in [
        ("string object", json!("pod")),
        ("null object", Value::Null),
    ] {
        let answer = post(serde_json::to_vec(&pod_review("odd", "apps", &object)).expect("json"));
        let review = answer.json();
        assert_eq!(answer.status, 200, "{what}");
        assert_eq!(review["response"]["allowed"], false, "{what}: {review}");
        hook.process.assert_running(what);
    }

    // Other methods and paths.
    let get = rt
        .block_on(once(
            addr,
            pki.client_config(),
            "GET",
            "/mutate",
            Vec::new(),
        ))
        .expect("GET /mutate");
    assert_eq!(get.status, 405);
    let other = rt
        .block_on(once(
            addr,
            pki.client_config(),
            "GET",
            "/../../etc/passwd",
            Vec::new(),
        ))
        .expect("GET");
    assert_eq!(other.status, 404);

    // A body over the API server's own 3 MiB limit plus the review's
    // wrapper: 413 from the head alone, before any of it is read.
    let big = raw_tls(
        addr,
        &pki,
        format!(
            "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{{",
            secret_gate_injector::webhook::MAX_BODY_BYTES + 1
        )
        .as_bytes(),
    );
    assert!(big.starts_with("HTTP/1.1 413"), "{big}");
    hook.process.assert_running("a 3 MiB body");

    // Chunked bodies are refused with 411; a lying Content-Length is cut
    // off by the body timeout, not waited on forever.
    let chunked = raw_tls(
        addr,
        &pki,
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(chunked.starts_with("HTTP/1.1 411"), "{chunked}");
    let short = raw_tls(
        addr,
        &pki,
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{}",
    );
    assert!(!short.contains("200 OK"), "{short}");

    // Plain HTTP and garbage on the TLS port: the handshake fails.
    for bytes in [
        &b"GET /healthz HTTP/1.1\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0][..],
    ] {
        let mut tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let _ = tcp.write_all(bytes);
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out);
        assert!(!String::from_utf8_lossy(&out).contains("200 OK"));
    }

    // Slowloris: more idle and half-sent connections than the cap; a real
    // review still gets through.
    let mut idle: Vec<TcpStream> = Vec::new();
    for n in 0..100 {
        let mut tcp = TcpStream::connect(addr).expect("connect");
        if n % 2 == 0 {
            // Half a TLS ClientHello.
            let _ = tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
        }
        idle.push(tcp);
    }
    let answer = rt
        .block_on(async {
            let mut client = Client::connect(addr, pki.client_config()).await?;
            client
                .review(&pod_review("through", "apps", &plain_pod()))
                .await
        })
        .expect("a review past the slowloris connections");
    assert_eq!(answer.json()["response"]["uid"], "through");
    drop(idle);

    let text = rt.block_on(scrape(&hook, &pki));
    assert!(
        metric(&text, "secret_gate_injector_http_connections_shed_total")
            .is_some_and(|v| v >= 60.0),
        "{text}"
    );
    assert!(
        metric(
            &text,
            r#"secret_gate_injector_reviews_total{outcome="invalid"}"#
        )
        .is_some_and(|v| v >= 7.0),
        "{text}"
    );
    hook.process.assert_running("after the hostile input");
    let stderr = hook.process.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The arguments in manifests/injector/deployment.yaml start the webhook
/// (with a loopback address and the test's certificate files in place of
/// the pod IP and the Secret volume).
#[test]
fn the_manifests_arguments_start_the_webhook() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/injector/deployment.yaml");
    let text = std::fs::read_to_string(&path).expect("deployment.yaml");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    let args: Vec<String> = doc["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("webhook"));
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let volume = SecretVolume::new(&dir.path().join("tls"), &pki.valid());
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            if a.starts_with("--listen=") {
                "--listen=127.0.0.1:0".to_owned()
            } else if a.starts_with("--tls-cert=") {
                format!("--tls-cert={}", volume.cert().display())
            } else if a.starts_with("--tls-key=") {
                format!("--tls-key={}", volume.key().display())
            } else {
                a
            }
        })
        .collect();
    let mut process = Gate::program(BIN)
        .args(&args)
        .arg("--termination-log")
        .arg(dir.path().join("termination-log"))
        .spawn();
    process.expect_stderr("listening on");
    let stderr = process.stderr();
    // --log-format=json: one JSON object per line.
    let line = stderr
        .lines()
        .find(|l| l.contains("listening on"))
        .expect("the listening line");
    let event: Value = serde_json::from_str(line).expect("a JSON log line");
    let addr: std::net::SocketAddr = event["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("the address field");
    let health = runtime()
        .block_on(once(
            addr,
            pki.client_config(),
            "GET",
            "/healthz",
            Vec::new(),
        ))
        .expect("healthz");
    assert_eq!(health.status, 200);
    process.assert_running("with the manifest's arguments");
}

/// A raw TLS connection (rustls, blocking), for bytes no HTTP client
/// would send. Every read is bounded by the socket's read timeout.
struct RawTls(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl RawTls {
    fn connect(addr: std::net::SocketAddr, pki: &Pki) -> Self {
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(pki.client_config(), name).expect("client");
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        tcp.set_write_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Self(rustls::StreamOwned::new(conn, tcp))
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes)?;
        self.0.flush()
    }

    /// Reads until `needle` has been seen (or the read fails or times
    /// out); returns everything read.
    fn read_until(&mut self, needle: &str) -> String {
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&out).contains(needle) {
            match self.0.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Reads to the end. rustls reports a close without `close_notify`
    /// as an error (`UnexpectedEof`), so `Ok` means a clean TLS close.
    fn finish(mut self) -> std::io::Result<String> {
        let mut out = Vec::new();
        self.0.read_to_end(&mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// The head and the body of a raw HTTP/1.1 response.
fn head_and_body(answer: &str) -> (&str, &str) {
    answer.split_once("\r\n\r\n").unwrap_or((answer, ""))
}

/// RFC 9112 framing and RFC 9110 semantics over TLS: Content-Length is
/// digits only, Host is required and single, HEAD gets no body (the
/// server's own errors included), 405 names what is allowed, 100 Continue
/// comes before the body is read, and every reply ends with a TLS
/// `close_notify` even when the client still had bytes in flight.
#[test]
fn framing_follows_rfc_9112_and_every_close_is_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let volume = SecretVolume::new(&dir.path().join("tls"), &pki.valid());
    let mut hook = start(&volume, &[]);
    let addr = hook.addr;

    let table: &[(&str, &[u8], &str)] = &[
        (
            "a signed Content-Length",
            b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n{}{}{",
            "HTTP/1.1 400 ",
        ),
        (
            "a Content-Length list",
            b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\n{}",
            "HTTP/1.1 400 ",
        ),
        ("no Host", b"GET /healthz HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "),
        (
            "two Hosts",
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "HTTP/1.1 400 ",
        ),
        (
            "GET /mutate",
            b"GET /mutate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 405 ",
        ),
        (
            "POST /healthz",
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 405 ",
        ),
    ];
    for (what, request, want) in table {
        let mut tls = RawTls::connect(addr, &pki);
        tls.send(request).expect("send");
        let answer = tls
            .finish()
            .unwrap_or_else(|e| panic!("{what}: no clean TLS close: {e}"));
        assert!(answer.starts_with(want), "{what}: {answer:?}");
    }
    let allow = |request: &[u8]| {
        let mut tls = RawTls::connect(addr, &pki);
        tls.send(request).expect("send");
        let answer = tls.finish().expect("a clean close");
        head_and_body(&answer).0.to_ascii_lowercase()
    };
    assert!(
        allow(b"GET /mutate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .contains("\r\nallow: post"),
        "405 without Allow"
    );
    assert!(
        allow(b"DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .contains("\r\nallow: get, head"),
        "405 without Allow"
    );

    // HEAD: no body, whether the handler or the server itself answers.
    for request in [
        &b"HEAD /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
        &b"HEAD /healthz HTTP/1.1\r\n\r\n"[..],
        &b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n"[..],
    ] {
        let mut tls = RawTls::connect(addr, &pki);
        tls.send(request).expect("send");
        let answer = tls.finish().expect("a clean close");
        let (head, body) = head_and_body(&answer);
        assert!(head.starts_with("HTTP/1.1 4"), "{answer:?}");
        assert!(head.contains("content-length: "), "{answer:?}");
        assert_eq!(body, "", "a HEAD answer carried a body: {answer:?}");
    }

    // A reject with the client's body still arriving: the 400 arrives
    // whole, then a clean close (close_notify, then FIN; no reset).
    let mut tls = RawTls::connect(addr, &pki);
    let mut request = b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', 256 << 10));
    let _ = tls.send(&request);
    let answer = tls.finish().expect("a clean close after a reject");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    assert!(answer.ends_with("digits only\n"), "{answer:?}");

    // Expect: 100-continue: the interim answer first, then the real one
    // once the body is sent.
    let review = serde_json::to_vec(&pod_review("continue", "apps", &plain_pod())).expect("json");
    let mut tls = RawTls::connect(addr, &pki);
    tls.send(
        format!(
            "POST /mutate HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            review.len()
        )
        .as_bytes(),
    )
    .expect("send the head");
    let interim = tls.read_until("\r\n\r\n");
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    tls.send(&review).expect("send the body");
    let answer = tls.finish().expect("a clean close");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
    assert!(answer.contains(r#""uid":"continue""#), "{answer:?}");

    // An idle connection that times out is closed cleanly too.
    hook.process.assert_running("after the framing cases");
}

/// The body budget: uploads that declare the largest body take their
/// length from the shared budget before a byte is read (`100 Continue`
/// says it was granted). When it is short, a new upload waits: the oldest
/// upload still incomplete after its grace (1 s) is shed for it. When
/// every body in it is complete and under review, the new upload waits
/// for one to be freed, and is answered 503 with Retry-After only when
/// none is within the body timeout (5 s). A review still gets through.
#[test]
fn the_body_budget_waits_then_sheds_the_oldest_stalled_upload() {
    use secret_gate_injector::webhook::{BODY_BUDGET_BYTES, MAX_BODY_BYTES};
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let volume = SecretVolume::new(&dir.path().join("tls"), &pki.valid());
    // The reviews outlast a waiting upload's 5 s: long enough that one
    // started while they run is refused, short enough that one started
    // 2 s after that refusal is let in.
    let mut hook = start(
        &volume,
        &["--test-review-delay", "10s", "--review-timeout", "12s"],
    );
    let addr = hook.addr;
    let fits = BODY_BUDGET_BYTES / MAX_BODY_BYTES;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n"
    );
    let upload = || {
        let mut tls = RawTls::connect(addr, &pki);
        tls.send(head.as_bytes()).expect("send the head");
        let interim = tls.read_until("\r\n\r\n");
        (tls, interim)
    };
    let mut uploads: Vec<RawTls> = (0..fits)
        .map(|n| {
            let (tls, interim) = upload();
            assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n", "upload {n}");
            tls
        })
        .collect();
    // One more: it waits until the oldest, which sends nothing, is past
    // its grace, and that one is shed for it; the others are not.
    let (newest, interim) = upload();
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    let oldest = uploads.remove(0);
    let closed = oldest.finish().expect("the shed upload is closed cleanly");
    assert!(!closed.contains("HTTP/1.1 200"), "{closed:?}");
    uploads.push(newest);

    // Complete every upload: the bodies are under review (held by the
    // test delay), so the budget is full of complete bodies, which are
    // never shed.
    let body = vec![b' '; MAX_BODY_BYTES];
    for tls in &mut uploads {
        tls.send(&body).expect("send a body");
    }
    let reviewing = wait_until(Duration::from_secs(15), || {
        hook.process.stderr().matches("holding a review").count() >= fits
    });
    assert!(
        reviewing,
        "the bodies never reached the handler\n{}",
        hook.process.dump()
    );
    let text = runtime().block_on(scrape(&hook, &pki));
    assert!(
        metric(&text, "secret_gate_injector_http_bodies_shed_total").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    // A new upload waits its 5 s while every review runs on: 503.
    let (refused, interim) = upload();
    assert!(interim.starts_with("HTTP/1.1 503 "), "{interim:?}");
    assert!(
        interim
            .to_ascii_lowercase()
            .contains("\r\nretry-after: 1\r\n"),
        "{interim:?}"
    );
    drop(refused);
    // One started 2 s later is still waiting when the reviews end and
    // free their bodies: it is let in.
    std::thread::sleep(Duration::from_secs(2));
    let (waited, interim) = upload();
    assert_eq!(
        interim,
        "HTTP/1.1 100 Continue\r\n\r\n",
        "{}",
        hook.process.dump()
    );
    for mut tls in uploads {
        let answer = tls.read_until("\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    }
    drop(waited);
    // The budget is given back: a review gets through.
    let answer = runtime()
        .block_on(once(
            addr,
            pki.client_config(),
            "POST",
            "/mutate",
            serde_json::to_vec(&pod_review("after", "apps", &plain_pod())).expect("json"),
        ))
        .expect("a review after the uploads");
    assert_eq!(answer.json()["response"]["uid"], "after");
    hook.process.assert_running("after the uploads");
}

/// A review that overruns `--review-timeout` is answered 504 but runs on
/// (a task on the blocking pool cannot be stopped): until it ends, its body
/// keeps its share of the body budget (the gauge on `/metrics`), and it
/// keeps its turn, so a second large review waits rather than decoding
/// beside it.
#[test]
fn a_review_past_its_timeout_keeps_its_body_budget_and_its_turn_until_it_ends() {
    use secret_gate_injector::webhook::LARGE_REVIEW_BYTES;
    const HELD: &str = "secret_gate_injector_http_body_budget_held_bytes";
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let volume = SecretVolume::new(&dir.path().join("tls"), &pki.valid());
    let mut hook = start(
        &volume,
        &["--test-review-hold", "4s", "--review-timeout", "300ms"],
    );
    let addr = hook.addr;
    let rt = runtime();
    // A large body (not JSON: the review answers 400 once it is done).
    let body = vec![b' '; 2 * LARGE_REVIEW_BYTES];
    let post = |body: &Vec<u8>| {
        rt.block_on(once(
            addr,
            pki.client_config(),
            "POST",
            "/mutate",
            body.clone(),
        ))
        .expect("an answer")
    };
    assert_eq!(post(&body).status, 504);
    let text = rt.block_on(scrape(&hook, &pki));
    #[expect(clippy::cast_precision_loss, reason = "a small size")]
    let size = body.len() as f64;
    assert_eq!(metric(&text, HELD), Some(size), "{text}");
    // The second large review waits for the turn the first still holds,
    // and times out waiting: its own body was freed with it.
    assert_eq!(post(&body).status, 504);
    assert_eq!(
        hook.process.stderr().matches("a review runs long").count(),
        1,
        "a second large review ran beside the first\n{}",
        hook.process.dump()
    );
    let text = rt.block_on(scrape(&hook, &pki));
    assert_eq!(metric(&text, HELD), Some(size), "{text}");
    // When the first review ends, its budget goes back.
    let freed = wait_until(Duration::from_secs(15), || {
        metric(&rt.block_on(scrape(&hook, &pki)), HELD) == Some(0.0)
    });
    assert!(
        freed,
        "the budget was never given back\n{}",
        hook.process.dump()
    );
    hook.process.assert_running("after the overrun reviews");
}

/// Clients that pipeline `GET /metrics` a thousand times and never read
/// fill the cap with connections blocked writing: those are shed for a
/// fresh probe, which is answered within the kubelet's 1 s.
#[test]
fn readers_that_do_not_read_are_shed_for_a_fresh_probe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let volume = SecretVolume::new(&dir.path().join("tls"), &pki.valid());
    let mut hook = start(&volume, &["--max-connections", "8"]);
    let addr = hook.addr;
    let pipelined = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1000);
    let stalled: Vec<RawTls> = (0..8)
        .map(|_| {
            let mut tls = RawTls::connect(addr, &pki);
            // The server stops reading once its writes block: the rest of
            // the requests may not fit; that is the point.
            let _ = tls
                .0
                .sock
                .set_write_timeout(Some(Duration::from_millis(500)));
            let _ = tls.send(&pipelined);
            tls
        })
        .collect();
    let rt = runtime();
    for n in 0..5 {
        let started = std::time::Instant::now();
        let answer = rt
            .block_on(once(
                addr,
                pki.client_config(),
                "GET",
                "/healthz",
                Vec::new(),
            ))
            .unwrap_or_else(|e| panic!("probe {n}: {e}"));
        let took = started.elapsed();
        assert_eq!(answer.status, 200, "probe {n}");
        assert!(took <= Duration::from_secs(1), "probe {n} took {took:?}");
    }
    drop(stalled);
    let text = rt.block_on(scrape(&hook, &pki));
    assert!(
        metric(&text, "secret_gate_injector_http_connections_shed_total").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    hook.process.assert_running("after the stalled readers");
}

//! The Safe's response: the raw bytes of an HTTP/1 answer go through
//! hyper's client (as the gate's connection reads them), then through the
//! gate's own handling of the status, `Retry-After` and the body, then the
//! check of the secret and the pace of the next attempt.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use secret_gate::check::{Format, Key};
use secret_gate::safe::client::{parse_retry_after, read_response, Failure, Secret};
use secret_gate::safe::schedule::{Pace, Schedule};
use secret_gate::safe::{check_secret, SafeConfig, SecretFormat};
use secret_gate::spiffe_id::{SpiffeIdMatcher, DEFAULT_SAFE_ID, DEFAULT_WORKLOAD_ID};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{assert_no_canary, limited};

/// `--max-body-size` for the fuzzed responses (the default is 1 MiB;
/// smaller here so the limit is reached).
const MAX_BODY: u64 = 64 << 10;

/// `--max-backoff` and the poll interval the pace is checked against.
const CAP: Duration = Duration::from_secs(30);
const INTERVAL: Duration = Duration::from_secs(5);

/// A fixed clock, for HTTP-date `Retry-After` values.
const NOW_UNIX: u64 = 1_811_808_000;

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

/// The property.
pub fn safe_response(data: &[u8]) {
    limited(|| check_response(data));
}

fn check_response(data: &[u8]) {
    let now = UNIX_EPOCH + Duration::from_secs(NOW_UNIX);
    // Every header value that could be a Retry-After, parsed directly too.
    for line in data.split(|b| *b == b'\n') {
        if let Ok(line) = std::str::from_utf8(line) {
            if let Some((_, value)) = line.split_once(':') {
                if let Some(wait) = parse_retry_after(value, now) {
                    let mut schedule = Schedule::with_rng(INTERVAL, CAP, fastrand_seed());
                    let delay = schedule.next_delay(Pace::RetryAfter(wait));
                    assert!(
                        delay <= CAP,
                        "Retry-After {wait:?} waits {delay:?}, past --max-backoff"
                    );
                }
            }
        }
    }
    let Some(Some(outcome)) = on_runtime(respond(data, now)) else {
        return;
    };
    match outcome {
        Ok(secret) => check_secret_value(&secret, data.len()),
        Err(failure) => check_failure(&failure),
    }
}

/// The schedule's random source, seeded: a finding must replay.
fn fastrand_seed() -> fastrand::Rng {
    fastrand::Rng::with_seed(7)
}

fn check_failure(failure: &Failure) {
    let text = failure.to_string();
    assert!(!text.is_empty());
    assert_no_canary("a Safe failure", &text);
    assert_no_canary("a Safe failure's Debug", &format!("{failure:?}"));
    let _ = (failure.kind(), failure.is_not_yet());
    let mut schedule = Schedule::with_rng(INTERVAL, CAP, fastrand_seed());
    for _ in 0..3 {
        let delay = schedule.next_delay(failure.pace());
        assert!(
            delay <= CAP,
            "{failure} waits {delay:?}, past --max-backoff"
        );
    }
}

/// A secret that came back: its `Debug` is redacted, and the check of it
/// (sniffed or in a given format, with required keys) names no value.
fn check_secret_value(secret: &Secret, len: usize) {
    assert!(!secret.expose().is_empty(), "an empty secret was accepted");
    assert_no_canary("a Secret's Debug", &format!("{secret:?}"));
    let configs = CONFIGS.get_or_init(|| FORMATS.iter().map(|f| config(*f)).collect());
    let Some(config) = &configs[len % FORMATS.len()] else {
        return;
    };
    if let Err(problems) = check_secret(config, None, secret.expose()) {
        assert!(
            !problems.is_empty(),
            "a refused secret with no problem named"
        );
        for problem in problems {
            assert_no_canary("a Safe secret diagnosis", &problem.to_string());
        }
    }
}

/// The formats a returned secret is checked in, picked by the input's
/// length.
const FORMATS: [SecretFormat; 6] = [
    SecretFormat::Sniffed,
    SecretFormat::Given(Format::Json),
    SecretFormat::Given(Format::Yaml),
    SecretFormat::Given(Format::Env),
    SecretFormat::Given(Format::Raw),
    SecretFormat::Given(Format::Pem),
];

/// One `SafeConfig` per format, built once per process as the gate builds
/// its own (`Config::from_cli`, at start): building one compiles the two
/// SPIFFE-ID regexes, no part of the response's handling, which took about
/// a sixth of each input's time when done per input.
static CONFIGS: OnceLock<Vec<Option<SafeConfig>>> = OnceLock::new();

fn config(format: SecretFormat) -> Option<SafeConfig> {
    let keys = if format.has_keys() {
        Key::parse_list("username,/db/password").ok()?
    } else {
        Vec::new()
    };
    Some(SafeConfig {
        keys,
        schemas: Vec::new(),
        format,
        output: None,
        timeout: None,
        endpoint_socket: "unix:///spiffe-workload-api/spire-agent.sock".into(),
        secrets_url: http::Uri::from_static("https://127.0.0.1:8443/workload/v1/secrets"),
        safe_id: SpiffeIdMatcher::new("VSECM_SPIFFEID_PREFIX_SAFE", DEFAULT_SAFE_ID, "vsecm.com")
            .ok()?,
        min_validity: Duration::from_secs(3600),
        workload_id: SpiffeIdMatcher::new(
            "VSECM_SPIFFEID_PREFIX_WORKLOAD",
            DEFAULT_WORKLOAD_ID,
            "vsecm.com",
        )
        .ok()?,
        poll_interval: INTERVAL,
        max_backoff: CAP,
        attempt_timeout: Duration::from_secs(10),
        max_body_size: MAX_BODY,
        wait_before_exit: Duration::ZERO,
    })
}

/// Runs `fut` on this thread's current-thread runtime, built once.
fn on_runtime<T>(fut: impl std::future::Future<Output = T>) -> Option<T> {
    RUNTIME.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = tokio::runtime::Builder::new_current_thread().build().ok();
        }
        slot.as_ref().map(|rt| rt.block_on(fut))
    })
}

/// Sends the gate's request over an in-memory connection whose far end
/// answers with `data` and closes; the response, if hyper parses one, goes
/// to the gate's handling. `None` when hyper refuses the response (the
/// gate maps that to a connection failure before its own handling).
async fn respond(data: &[u8], now: SystemTime) -> Option<Result<Secret, Failure>> {
    let (client, mut server) = tokio::io::duplex(16 << 10);
    let writer = async move {
        // Answer once the request is in, as a server does (hyper's client
        // refuses bytes that come before its request).
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            match server.read(&mut buf).await {
                Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let _ = server.write_all(data).await;
        let _ = server.shutdown().await;
        // Keep the far end open until the client is done: hyper sees the
        // end of the data, not a reset. Never finishes by itself.
        std::future::pending::<()>().await;
        drop(server);
    };
    let client = async move {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
            .await
            .ok()?;
        let request = http::Request::get("/workload/v1/secrets")
            .header(http::header::HOST, "127.0.0.1:8443")
            .body(Empty::<Bytes>::new())
            .ok()?;
        let exchange = async move {
            let response = sender.send_request(request).await.ok()?;
            let out = read_response(response, MAX_BODY, now).await;
            drop(sender);
            Some(out)
        };
        let (out, _) = tokio::join!(exchange, conn);
        out
    };
    tokio::select! {
        out = client => out,
        () = writer => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{on_runtime, respond, Failure, NOW_UNIX};
    use std::time::{Duration, UNIX_EPOCH};

    /// The harness reaches the gate's handling: a 200 yields the secret, a
    /// 503 its Retry-After, and bytes that are no HTTP response nothing.
    #[test]
    fn responses_reach_the_gates_handling() {
        let now = UNIX_EPOCH + Duration::from_secs(NOW_UNIX);
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{\"data\":\"s3\"}\n";
        let secret = on_runtime(respond(ok, now)).unwrap().unwrap().unwrap();
        assert_eq!(secret.expose(), "s3");
        let busy =
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            on_runtime(respond(busy, now)).unwrap().unwrap(),
            Err(Failure::Unavailable {
                retry_after: Some(Duration::from_secs(7))
            })
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"da\r\n";
        assert!(matches!(
            on_runtime(respond(chunked, now)).unwrap().unwrap(),
            Err(Failure::Read(_))
        ));
        assert_eq!(on_runtime(respond(b"SSH-2.0\r\n", now)).unwrap(), None);
    }
}

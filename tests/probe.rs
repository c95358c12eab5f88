//! The probe port under attack, with the real binary and real sockets:
//! thousands of idle, half-sent and reconnecting clients against
//! `watch --keep-running --listen`, started under a 1,024 open-files soft
//! limit. A fresh probe every 100 ms must keep getting `200` within the
//! kubelet's 1 s budget, the gate must never flip to not ready, and its
//! peak memory must stay in budget. Under a hard open-files limit the gate
//! cannot raise, the secret files must still be readable.

#[path = "common/bounded.rs"]
mod bounded;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, wait_until, Fixture, Gate, Running, BIN, READY_TIMEOUT};

/// Bound on every wait for a state the gate should reach.
const LIMIT: Duration = Duration::from_secs(15);

/// The kubelet's default probe timeout: the budget of one probe.
const PROBE_BUDGET: Duration = Duration::from_secs(1);

/// The gate's peak resident memory allowed here. The release binary's
/// goal is 16 MiB (measured in the benchmark); an unoptimised test build
/// carries more code and larger futures, so it gets some room (28 MiB
/// since the schema check's crates grew the debug binary's code: a
/// debug build peaked at 24.2 MiB here after that, 23.x before).
const RSS_BUDGET_KIB: u64 = 28 * 1024;

/// The half request the slow clients send, never finishing it.
const HALF: &[u8] = b"GET /readyz HTTP/1.1\r\nHost: gate\r\nUser-Agent: slow";

/// One probe: the status and how long it took, or why it failed.
fn probe(addr: SocketAddr, path: &str) -> Result<(u16, Duration, String), String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: gate\r\nUser-Agent: kube-probe/1.33\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| format!("read: {e} (after {:?})", started.elapsed()))?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, started.elapsed(), body))
}

/// The value of an unlabelled sample in a `/metrics` body.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `VmHWM` (peak resident memory) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmHWM:")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

/// The gate's open-files soft limit, from `/proc`.
fn soft_nofile(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    limits.lines().find_map(|l| {
        let rest = l.strip_prefix("Max open files")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `watch --keep-running --listen` on a ready `s.json`, started by
/// `prlimit --nofile=LIMITS` (`1024:` sets only the soft limit, `32:32`
/// both).
fn gate_under(fx: &Fixture, port: u16, limits: &str) -> Running {
    fx.write("s.json", r#"{"password":"p"}"#);
    Gate::program("prlimit")
        .arg(format!("--nofile={limits}"))
        .arg(BIN)
        .args(["watch", "--mount-path"])
        .arg(&fx.mount)
        .arg("--termination-log")
        .arg(&fx.log)
        .args([
            "--file",
            "s.json",
            "--required-keys",
            "password",
            "--keep-running",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            READY_TIMEOUT,
        ])
        .spawn()
}

/// Tries `count` connections, sending `first` on each at once; returns
/// those that connected (a connect can time out when the listen queue
/// overflows: that is the attack working on the kernel, not the gate).
fn open_many(addr: SocketAddr, count: usize, first: &[u8]) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            continue;
        };
        if !first.is_empty() {
            let _ = stream.write_all(first);
        }
        streams.push(stream);
    }
    streams
}

#[test]
fn thousands_of_hostile_clients_neither_starve_the_probe_nor_flip_readiness() {
    secret_gate::rlimit::raise_nofile(); // this test holds ~4,000 sockets
    let fx = Fixture::new();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut running = gate_under(&fx, port, "1024:");
    let up = wait_until(LIMIT, || {
        probe(addr, "/readyz").is_ok_and(|(status, _, _)| status == 200)
    });
    running.assert_running("before the attack");
    assert!(up, "the gate never became ready\n{}", running.stderr());
    let soft = soft_nofile(running.pid());
    assert!(
        soft.is_some_and(|s| s > 1024),
        "the gate should raise its 1,024 open-files soft limit to the hard limit; it has {soft:?}\n{}",
        running.stderr()
    );

    // The attack: reconnecting clients in the background, then 2,500 idle
    // and 1,500 half-request connections held open.
    let stop = Arc::new(AtomicBool::new(false));
    let reconnects = Arc::new(AtomicU64::new(0));
    // About 500 reconnections a second: enough to keep the cap full of
    // fresh half requests, within what an unoptimised test build accepts
    // on a loaded machine (the release gate's limits are the benchmark's).
    let churners: Vec<_> = (0..2)
        .map(|_| {
            let (stop, reconnects) = (Arc::clone(&stop), Arc::clone(&reconnects));
            std::thread::spawn(move || {
                // Bounded by the stop flag and by a count.
                for _ in 0..200_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let held = open_many(addr, 25, HALF);
                    reconnects.fetch_add(held.len() as u64, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    let idle = open_many(addr, 2500, b"");
    let half = open_many(addr, 1500, HALF);
    assert!(
        idle.len() + half.len() >= 3000,
        "only {} + {} hostile connections opened",
        idle.len(),
        half.len()
    );

    // The burst of 4,000 connects above sits in the kernel's accept queue
    // until the gate has accepted (and mostly shed) it; an unoptimised
    // build drains it slowly on a loaded machine. Wait for that, bounded,
    // then hold the gate to the probe budget while the churn goes on.
    let drained = wait_until(LIMIT, || {
        probe(addr, "/readyz").is_ok_and(|(status, took, _)| status == 200 && took <= PROBE_BUDGET)
    });
    assert!(
        drained,
        "the gate never drained the connect burst\n{}",
        running.stderr()
    );

    // A fresh probe every 100 ms for 10 s.
    let mut slow = Vec::new();
    for i in 0..100 {
        match probe(addr, "/readyz") {
            Ok((200, took, _)) if took <= PROBE_BUDGET => {}
            other => slow.push((i, other)),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for churner in churners {
        let _ = churner.join();
    }
    let metrics = probe(addr, "/metrics");
    drop((idle, half));
    running.assert_running("under attack");
    let peak = peak_rss_kib(running.pid());
    let log = running.stderr();
    assert!(
        slow.is_empty(),
        "{} of 100 probes failed or took over 1 s: {slow:?}\n{log}",
        slow.len()
    );
    let Ok((200, _, body)) = metrics else {
        panic!("GET /metrics under attack: {metrics:?}\n{log}");
    };
    assert_eq!(
        body.lines()
            .find(|l| l.starts_with("secret_gate_state_changes_total{to=\"not_ready\"}")),
        Some("secret_gate_state_changes_total{to=\"not_ready\"} 0"),
        "the gate flipped to not ready\n{body}"
    );
    assert!(
        !log.contains("not ready any more"),
        "the gate flipped to not ready:\n{log}"
    );
    assert!(
        sample(&body, "secret_gate_http_connections_shed_total").is_some_and(|n| n > 0.0),
        "4,000 connections against a 1,024 cap must shed some\n{body}"
    );
    assert!(
        sample(&body, "secret_gate_http_connections").is_some_and(|n| n <= 1024.0),
        "more connections open than the cap\n{body}"
    );
    assert!(
        peak.is_some_and(|kib| kib <= RSS_BUDGET_KIB),
        "peak RSS {peak:?} KiB over the {RSS_BUDGET_KIB} KiB budget"
    );
    assert!(
        reconnects.load(Ordering::Relaxed) > 0,
        "the reconnecting clients never connected"
    );
}

#[test]
fn a_smaller_cap_sheds_the_oldest_idle_connection_for_a_new_probe() {
    let fx = Fixture::new();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    fx.write("s.json", r#"{"password":"p"}"#);
    let mut running = fx
        .watch()
        .args([
            "--file",
            "s.json",
            "--keep-running",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--max-connections",
            "4",
            "--timeout",
            READY_TIMEOUT,
        ])
        .spawn();
    let up = wait_until(LIMIT, || {
        probe(addr, "/readyz").is_ok_and(|(status, _, _)| status == 200)
    });
    assert!(up, "the gate never became ready\n{}", running.stderr());
    // Four idle connections fill the cap; the oldest is shed for each new
    // one, so the probe (the fifth) is answered and the first is closed.
    let mut idle = open_many(addr, 4, HALF);
    assert_eq!(idle.len(), 4);
    let (status, took, _) = probe(addr, "/readyz").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200);
    assert!(took <= PROBE_BUDGET, "the probe took {took:?}");
    let first = &mut idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut byte = [0u8; 1];
    let closed = matches!(first.read(&mut byte), Ok(0) | Err(_));
    assert!(closed, "the oldest idle connection should have been shed");
    let Ok((200, _, body)) = probe(addr, "/metrics") else {
        panic!("GET /metrics");
    };
    assert!(
        sample(&body, "secret_gate_http_connections_shed_total").is_some_and(|n| n >= 1.0),
        "{body}"
    );
    running.assert_running("after shedding");
}

#[test]
fn oversized_and_malformed_requests_are_refused_and_counted() {
    let fx = Fixture::new();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    fx.write("s.json", r#"{"password":"p"}"#);
    let mut running = fx
        .watch()
        .args([
            "--file",
            "s.json",
            "--keep-running",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            READY_TIMEOUT,
        ])
        .spawn();
    let up = wait_until(LIMIT, || {
        probe(addr, "/readyz").is_ok_and(|(status, _, _)| status == 200)
    });
    assert!(up, "the gate never became ready\n{}", running.stderr());
    let send = |bytes: &[u8]| -> String {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("connect: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = stream.write_all(bytes);
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    };
    let huge = format!(
        "GET /readyz HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(8000)
    );
    let cases: [(&[u8], &str); 3] = [
        (huge.as_bytes(), "HTTP/1.1 431 "),
        (
            b"POST /readyz HTTP/1.1\r\nHost: gate\r\nContent-Length: 100\r\n\r\n",
            "HTTP/1.1 413 ",
        ),
        (b"\x01\x02 nonsense\r\n\r\n", "HTTP/1.1 400 "),
    ];
    for (request, want) in cases {
        let answer = send(request);
        assert!(answer.starts_with(want), "wanted {want:?}, got {answer:?}");
    }
    let Ok((200, _, body)) = probe(addr, "/metrics") else {
        panic!("GET /metrics");
    };
    assert!(
        sample(&body, "secret_gate_http_requests_rejected_total").is_some_and(|n| n >= 3.0),
        "{body}"
    );
    running.assert_running("after bad requests");
}

/// A hard open-files limit the gate cannot raise (32, where it uses about
/// 15 at rest), and 100 clients that connect and stay silent: the server
/// fits its cap under the limit (and says so), so the secret files can
/// still be opened. A rotation is read while the clients hold on, the
/// probe answers once they go, and a shortage that does hit a check is
/// no verdict: readiness never flips.
#[test]
fn a_low_hard_open_files_limit_leaves_room_for_the_checks() {
    let fx = Fixture::new();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut running = gate_under(&fx, port, "32:32");
    let up = wait_until(LIMIT, || {
        probe(addr, "/readyz").is_ok_and(|(status, _, _)| status == 200)
    });
    assert!(up, "the gate never became ready\n{}", running.stderr());
    assert!(
        running
            .stderr()
            .contains("--max-connections 1024 does not fit the open-files limit 32"),
        "{}",
        running.stderr()
    );
    let silent = open_many(addr, 100, b"");
    fx.replace("s.json", r#"{"password":"rotated"}"#);
    let read = wait_until(LIMIT, || {
        running
            .stderr()
            .contains("the new version passes the check")
    });
    assert!(
        read,
        "the rotation was not read while the clients held on\n{}",
        running.stderr()
    );
    drop(silent);
    let answered = wait_until(LIMIT, || {
        probe(addr, "/readyz").is_ok_and(|(status, _, _)| status == 200)
    });
    assert!(
        answered,
        "no 200 after the clients left\n{}",
        running.stderr()
    );
    let log = running.stderr();
    assert!(!log.contains("not ready"), "readiness flipped:\n{log}");
    running.assert_running("under the open-files limit");
}

/// `watch --keep-running --listen` on a ready `s.json`, with `extra`
/// arguments, once it answers `/readyz` 200.
fn ready_gate(fx: &Fixture, addr: SocketAddr, extra: &[&str]) -> Running {
    fx.write("s.json", r#"{"password":"p"}"#);
    let running = fx
        .watch()
        .args([
            "--file",
            "s.json",
            "--keep-running",
            "--listen",
            &addr.to_string(),
            "--timeout",
            READY_TIMEOUT,
        ])
        .args(extra)
        .spawn();
    let up = wait_until(LIMIT, || {
        probe(addr, "/readyz").is_ok_and(|(status, _, _)| status == 200)
    });
    assert!(up, "the gate never became ready\n{}", running.stderr());
    running
}

/// Sends `bytes` on a fresh connection and reads to the end: the answer,
/// or the read error (a reset shows here as `ConnectionReset`).
fn exchange(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// RFC 9112 framing on the probe port: Content-Length is digits only,
/// Host is required and single, HEAD gets no body (the server's own
/// errors included), 405 names the methods allowed, and a reject with
/// unread bytes behind it still arrives whole, closed by a FIN, not a
/// reset.
#[test]
fn framing_follows_rfc_9112_and_a_reject_is_not_reset() {
    let fx = Fixture::new();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut running = ready_gate(&fx, addr, &[]);
    let table: &[(&str, &[u8], &str)] = &[
        (
            "a signed Content-Length",
            b"GET /readyz HTTP/1.1\r\nHost: gate\r\nContent-Length: +0\r\n\r\n",
            "HTTP/1.1 400 ",
        ),
        ("no Host", b"GET /readyz HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "),
        (
            "two Hosts",
            b"GET /readyz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "HTTP/1.1 400 ",
        ),
        (
            "HTTP/1.0 needs no Host",
            b"GET /readyz HTTP/1.0\r\n\r\n",
            "HTTP/1.1 200 ",
        ),
        (
            "POST /readyz",
            b"POST /readyz HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 405 ",
        ),
    ];
    for (what, request, want) in table {
        let answer = exchange(addr, request).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(answer.starts_with(want), "{what}: {answer:?}");
    }
    let answer = exchange(
        addr,
        b"DELETE /metrics HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n\r\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nallow: get, head\r\n"),
        "{answer:?}"
    );
    for request in [
        &b"HEAD /nowhere HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n\r\n"[..],
        &b"HEAD /readyz HTTP/1.1\r\n\r\n"[..],
        &b"HEAD /readyz HTTP/1.1\r\nHost: gate\r\nContent-Length: 5\r\n\r\n"[..],
    ] {
        let answer = exchange(addr, request).unwrap_or_else(|e| panic!("{e}"));
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert!(head.starts_with("HTTP/1.1 4"), "{answer:?}");
        assert_eq!(body, "", "a HEAD answer carried a body: {answer:?}");
    }
    // A refused body keeps coming: the 413 arrives whole and the
    // connection ends with a FIN (read_to_end is Ok), not a reset.
    let mut request =
        b"POST /readyz HTTP/1.1\r\nHost: gate\r\nContent-Length: 65536\r\n\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', 64 << 10));
    let answer = exchange(addr, &request).unwrap_or_else(|e| panic!("reset after a reject: {e}"));
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer:?}");
    assert!(answer.ends_with("request body too large\n"), "{answer:?}");
    running.assert_running("after the framing cases");
}

/// Clients that pipeline `GET /metrics` a thousand times and never read
/// fill `--max-connections 8` with connections blocked writing: they are
/// shed for fresh probes, each answered within the kubelet's 1 s.
#[test]
fn readers_that_do_not_read_are_shed_for_a_fresh_probe() {
    let fx = Fixture::new();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut running = ready_gate(&fx, addr, &["--max-connections", "8"]);
    let pipelined = b"GET /metrics HTTP/1.1\r\nHost: gate\r\n\r\n".repeat(1000);
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("connect: {e}"));
        // The gate stops reading once its writes block; the rest may not
        // fit, which is the point.
        let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
        let _ = stream.write_all(&pipelined);
        stalled.push(stream);
    }
    for n in 0..5 {
        let (status, took, _) = probe(addr, "/readyz").unwrap_or_else(|e| panic!("probe {n}: {e}"));
        assert_eq!(status, 200, "probe {n}");
        assert!(took <= PROBE_BUDGET, "probe {n} took {took:?}");
    }
    drop(stalled);
    let Ok((200, _, body)) = probe(addr, "/metrics") else {
        panic!("GET /metrics");
    };
    assert!(
        sample(&body, "secret_gate_http_connections_shed_total").is_some_and(|n| n >= 1.0),
        "{body}"
    );
    let log = running.stderr();
    assert!(!log.contains("not ready"), "readiness flipped:\n{log}");
    running.assert_running("after the stalled readers");
}

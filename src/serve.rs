//! A small, bounded HTTP/1.1 server for the gate's own endpoints: the
//! `--listen` probe and metrics port, and the injector's admission
//! webhook. It is built to survive whoever can reach the port:
//!
//! - **A cap on open connections** ([`Limits::max_connections`]). At the
//!   cap, a new connection sheds the *oldest* connection whose handler is
//!   not running (idle, still in its setup step, with a request head or
//!   body not yet complete, or blocked writing a response the client does
//!   not read), so a fresh kubelet probe still gets through. When every
//!   open connection has a handler running, the new one is closed at once.
//! - **Short timeouts at every step**: the per-connection setup (a TLS
//!   handshake, say), the wait for a request's first byte, the rest of its
//!   head, its body, the handler, and the response write
//!   ([`Limits::write_timeout`]).
//! - **Small, bounded buffers.** The request head is parsed here (with
//!   `httparse`) from one buffer that starts at [`INITIAL_BUFFER`] bytes,
//!   grows only up to [`Limits::max_head_bytes`] (plus the body, up to
//!   [`Limits::max_body_bytes`]), and is freed while the connection is
//!   idle. Bodies need a `Content-Length` of digits only
//!   (`Transfer-Encoding` is answered 411).
//! - **A memory budget for bodies** ([`Limits::body_budget_bytes`]),
//!   shared by all connections: a body's length is reserved before it is
//!   read. When the budget is short, the request waits for it (reading
//!   nothing more, so the client is held back by TCP, at no cost here),
//!   and the oldest bodies still incomplete after [`Limits::body_grace`]
//!   are shed to make room; when no room comes within
//!   [`Limits::body_timeout`] the request is answered 503.
//!   `Expect: 100-continue` is answered once the reservation is made. A
//!   complete body carries its reservation with it and gives it back when
//!   its memory is freed, not when the handler returns: work the handler
//!   handed it to (a review that overran its timeout) keeps it counted.
//! - **RFC 9112 framing**: exactly one `Host` on HTTP/1.1, a HEAD answer
//!   never carries a body (the server's own errors included), and every
//!   close sends the TLS `close_notify` and a FIN; after a reject the
//!   connection reads and discards what the client still sends for a
//!   moment, so that the error reply is not destroyed by a reset.
//! - **Fairness**: a connection with pipelined requests waiting yields
//!   after each answer, so one busy client cannot hold the runtime.
//! - **Graceful shutdown**: stop accepting, close every connection with no
//!   request in flight, let in-flight requests finish for
//!   [`Limits::shutdown_grace`], then close the rest.
//!
//! The server is generic over the stream: [`Setup`] turns each accepted
//! TCP stream into the stream requests are read from ([`Plain`] for the
//! probe port, a [`tokio_rustls::TlsAcceptor`] for the webhook), bounded by
//! [`Limits::setup_timeout`] and counted under the cap. The handler gets an
//! `http::Request<Bytes>` (with the peer's [`PeerAddr`] as an extension)
//! and returns an `http::Response<Bytes>`.
//!
//! [`Stats`] counts what the server did; [`metrics::StatsMetrics`] exports
//! those counters to Prometheus under the names each caller chooses.

pub mod metrics;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::{timeout, timeout_at, Instant};

/// The first allocation of a connection's read buffer, in bytes: enough
/// for a kubelet probe's whole request (about 120 bytes).
pub const INITIAL_BUFFER: usize = 512;

/// The most headers a request may carry.
const MAX_HEADERS: usize = 32;

/// How long the accept loop pauses after an accept error (out of file
/// descriptors, say), so that it does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);

/// The server's limits. [`Limits::default`] suits the probe port; the
/// webhook raises [`Self::max_body_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most, counting those in their setup step.
    pub max_connections: usize,
    /// The setup step ([`Setup::setup`], a TLS handshake, say).
    pub setup_timeout: Duration,
    /// How long a connection may wait for the first byte of a request
    /// (the first, or the next on a kept-alive connection).
    pub idle_timeout: Duration,
    /// From a request's first byte to the end of its head.
    pub header_timeout: Duration,
    /// From the end of a request's head to the end of its body.
    pub body_timeout: Duration,
    /// The handler and the writing of its response.
    pub request_timeout: Duration,
    /// The writing of one response: a response the client does not read
    /// within it is dropped with its connection (and until then the
    /// connection may be shed at the cap).
    pub write_timeout: Duration,
    /// The request line and headers, in bytes (431 beyond).
    pub max_head_bytes: usize,
    /// The request body, in bytes (413 beyond; 0 refuses any body).
    pub max_body_bytes: usize,
    /// Request bodies held at once, all connections together, in bytes:
    /// a body's declared length is taken from it before the body is read
    /// and given back when the body is freed (the last clone of its
    /// `Bytes` dropped), however long the handler's work keeps it. When it
    /// is short, the request waits for room (up to `body_timeout`, then
    /// 503), and bodies still incomplete after `body_grace` are shed for
    /// it, oldest first. Never below `max_body_bytes`.
    pub body_budget_bytes: usize,
    /// How long a body may take to arrive before it can be shed for
    /// another that waits for the budget. A real review arrives within
    /// milliseconds; one still incomplete after this is slow or stalled.
    pub body_grace: Duration,
    /// How long in-flight requests may run on after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    /// The probe port's limits: no body, a 4 KiB head, and timeouts well
    /// inside the kubelet's 1 s probe budget for the steps a client
    /// controls.
    fn default() -> Self {
        Self {
            max_connections: 1024,
            setup_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(2),
            body_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(1),
            max_head_bytes: 4096,
            max_body_bytes: 0,
            body_budget_bytes: 0,
            body_grace: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// The listen backlog [`bind`] asks for (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default): room for a burst of connects
/// while the accept loop sheds, so that a probe's SYN is not dropped.
pub const BACKLOG: u32 = 4096;

/// `ADDR:PORT`, `[v6]:PORT`, `:PORT` for every IPv4 address, or `::PORT`
/// for every IPv6 address (and IPv4 too, where the node's sockets are
/// dual-stack). An IPv6 address without brackets is taken with its last
/// `:N` as the port, so that `$(POD_IP):8080` works when the kubelet's pod
/// IP is IPv6 (`fd00::5:8080` is `[fd00::5]:8080`, `::1:8080` is
/// `[::1]:8080`). `None` when it is none of these.
#[must_use]
pub fn parse_listen(text: &str) -> Option<SocketAddr> {
    let t = text.trim();
    if let Ok(addr) = t.parse() {
        return Some(addr);
    }
    let (addr, port) = t.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let ip = match addr {
        "" => std::net::Ipv4Addr::UNSPECIFIED.into(),
        // `::8080`: the `::` lost one colon to the port's.
        ":" => std::net::Ipv6Addr::UNSPECIFIED.into(),
        v6 => std::net::IpAddr::V6(v6.parse().ok()?),
    };
    Some(SocketAddr::new(ip, port))
}

/// Binds a listener with a [`BACKLOG`]-deep accept queue (and
/// `SO_REUSEADDR`, as `TcpListener::bind` sets it).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The peer's address, put in each request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The per-connection setup step: turns an accepted TCP stream into the
/// stream the requests are read from. It runs under
/// [`Limits::setup_timeout`], and the connection counts under the cap (and
/// may be shed) while it runs.
pub trait Setup: Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn setup(&self, stream: TcpStream) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// No setup: plain HTTP on the accepted stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Setup for Plain {
    type Io = TcpStream;
    async fn setup(&self, stream: TcpStream) -> io::Result<TcpStream> {
        Ok(stream)
    }
}

/// HTTPS: a TLS handshake on each accepted stream.
impl Setup for tokio_rustls::TlsAcceptor {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    fn setup(&self, stream: TcpStream) -> impl Future<Output = io::Result<Self::Io>> + Send {
        self.accept(stream)
    }
}

/// Answers one request. Any `Fn(Request<Bytes>) -> impl Future<Output =
/// Response<Bytes>>` is a handler.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request<Bytes>) -> impl Future<Output = Response<Bytes>> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Bytes>> + Send,
{
    fn handle(&self, request: Request<Bytes>) -> impl Future<Output = Response<Bytes>> + Send {
        self(request)
    }
}

/// What the server did, as counters (and the open connections now), for
/// metrics.
#[derive(Debug, Default)]
pub struct Stats {
    accepted: AtomicU64,
    open: AtomicU64,
    shed: AtomicU64,
    refused: AtomicU64,
    bodies_shed: AtomicU64,
    accept_errors: AtomicU64,
    setup_failed: AtomicU64,
    timed_out: AtomicU64,
    rejected: AtomicU64,
    served: AtomicU64,
    /// The body budget in use, in bytes; written under the registry's lock.
    body_held: Arc<AtomicU64>,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections closed at the cap to make room for a new one.
    pub shed: u64,
    /// New connections closed at once: at the cap with every connection
    /// busy.
    pub refused: u64,
    /// Connections shed (and counted in `shed` too) because the body
    /// budget was short: the oldest incomplete bodies.
    pub bodies_shed: u64,
    /// Failed `accept` calls (out of file descriptors, say).
    pub accept_errors: u64,
    /// Setup steps that failed or timed out (a TLS handshake, say).
    pub setup_failed: u64,
    /// Connections closed for a timeout while idle or reading a request,
    /// or a handler or response write that overran.
    pub timed_out: u64,
    /// Requests answered with an error status by the server itself
    /// (400, 411, 413, 431, and 503 when the body budget is short).
    pub rejected: u64,
    /// Requests the handler answered.
    pub served: u64,
    /// Bytes of the body budget held now: bodies being read, and complete
    /// bodies not yet freed.
    pub body_held: u64,
}

impl Stats {
    #[must_use]
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            accepted: get(&self.accepted),
            open: get(&self.open),
            shed: get(&self.shed),
            refused: get(&self.refused),
            bodies_shed: get(&self.bodies_shed),
            accept_errors: get(&self.accept_errors),
            setup_failed: get(&self.setup_failed),
            timed_out: get(&self.timed_out),
            rejected: get(&self.rejected),
            served: get(&self.served),
            body_held: get(&self.body_held),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

// A connection's state, for shedding: only `IN_FLIGHT` (the handler is
// running) is never shed. `WRITING` is: a response that does not drain is
// the client's doing, not the server's work.
const SETUP: u8 = 0;
const IDLE: u8 = 1;
const READING: u8 = 2;
const IN_FLIGHT: u8 = 3;
const WRITING: u8 = 4;
const CLOSING: u8 = 5;
const SHED: u8 = 6;

/// How long a closing connection may take to send its TLS `close_notify`
/// and its FIN before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(100);

/// After a reject, how long the connection reads and discards what the
/// client still sends (its body, say) once its own side is shut, so that
/// the kernel does not answer unread bytes with a reset that can destroy
/// the error reply in flight...
const LINGER: Duration = Duration::from_millis(500);

/// ...and at most this much of it.
const LINGER_BYTES: usize = 1 << 20;

/// A request waiting for the body budget looks again at least this often
/// apart, whatever [`Limits::body_grace`] is.
const MIN_BODY_WAIT_TICK: Duration = Duration::from_millis(10);

/// One open connection, as the registry sees it.
struct Entry {
    state: Arc<AtomicU8>,
    /// Wakes the connection's task to close (a shed): it then sends its
    /// `close_notify` and FIN, briefly, and ends.
    kill: Arc<Notify>,
    abort: AbortHandle,
    /// Bytes of the request body budget this connection holds for a body
    /// it is reading. A complete body takes them over ([`HeldBody`]).
    body: usize,
    /// When the reservation for `body` was made, for
    /// [`Limits::body_grace`].
    body_since: Option<Instant>,
}

/// The open connections, oldest (lowest id) first, and the body budget
/// held: by the bodies they are reading, and by the complete bodies not
/// yet freed ([`HeldBody`]).
#[derive(Default)]
struct Registry {
    next_id: u64,
    open: BTreeMap<u64, Entry>,
    body_held: usize,
    /// [`Stats`]' copy of `body_held`, for the metrics.
    held_gauge: Arc<AtomicU64>,
    /// Wakes the requests waiting for the body budget when some of it goes
    /// back.
    freed: Arc<Notify>,
}

/// What [`Registry::reserve_body`] did.
#[derive(Debug, Default)]
struct Reserve {
    /// The body's length is reserved. When false, there is no room yet:
    /// wait for some to be freed, or for a body to outlast its grace.
    granted: bool,
    /// The tasks of the connections shed to make room, to be woken once
    /// the lock is released.
    shed: Vec<Arc<Notify>>,
}

impl Registry {
    fn set_held(&mut self, held: usize) {
        if held < self.body_held {
            self.freed.notify_waiters();
        }
        self.body_held = held;
        self.held_gauge.store(held as u64, Ordering::Relaxed);
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.open.remove(&id)?;
        self.set_held(self.body_held - entry.body);
        Some(entry)
    }

    /// Marks the oldest connection with no request in flight as shed and
    /// removes it; the caller wakes its task once the lock is released.
    fn shed_oldest(&mut self) -> Option<Arc<Notify>> {
        let id = self
            .open
            .iter()
            .find(|(_, entry)| mark_shed(&entry.state))
            .map(|(id, _)| *id)?;
        self.remove(id).map(|entry| entry.kill)
    }

    /// Marks every connection with no request in flight as shed, removes
    /// them and returns their tasks to wake. At shutdown: a response being
    /// written is let finish (within its write deadline).
    fn shed_all_idle(&mut self) -> Vec<Arc<Notify>> {
        let ids: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, entry)| mark_shed_from(&entry.state, &[SETUP, IDLE, READING, CLOSING]))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.remove(id).map(|entry| entry.kill))
            .collect()
    }

    /// Reserves `bytes` of the body budget for connection `id` at `now`.
    /// When the budget is short, the connections whose bodies are still
    /// incomplete `grace` after their reservation are shed to make room,
    /// oldest first, and their tasks returned to wake. Not granted (and
    /// nothing shed) when even that would not make room: the other bodies
    /// are complete, or still within their grace.
    fn reserve_body(
        &mut self,
        id: u64,
        bytes: usize,
        budget: usize,
        now: Instant,
        grace: Duration,
    ) -> Reserve {
        let overdue = |other: u64, entry: &Entry| {
            other != id
                && entry.body > 0
                && entry
                    .body_since
                    .is_some_and(|since| now.saturating_duration_since(since) >= grace)
                && entry.state.load(Ordering::Acquire) == READING
        };
        if self.body_held + bytes > budget {
            let sheddable: usize = self
                .open
                .iter()
                .filter(|(other, entry)| overdue(**other, entry))
                .map(|(_, entry)| entry.body)
                .sum();
            if self.body_held + bytes > budget.saturating_add(sheddable) {
                return Reserve::default();
            }
        }
        let mut shed = Vec::new();
        while self.body_held + bytes > budget {
            let victim = self
                .open
                .iter()
                .find(|(other, entry)| {
                    overdue(**other, entry)
                        && entry
                            .state
                            .compare_exchange(READING, SHED, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                })
                .map(|(other, _)| *other);
            // A body that completed since the count above: wait.
            let Some(entry) = victim.and_then(|v| self.remove(v)) else {
                return Reserve {
                    granted: false,
                    shed,
                };
            };
            shed.push(entry.kill);
        }
        let granted = if let Some(entry) = self.open.get_mut(&id) {
            entry.body += bytes;
            entry.body_since = Some(now);
            true
        } else {
            false
        };
        if granted {
            self.set_held(self.body_held + bytes);
        }
        Reserve { granted, shed }
    }

    /// Takes connection `id`'s body reservation out of its entry, for the
    /// complete body to hold ([`HeldBody`]): the connection is no longer
    /// shed for the budget, and the bytes stay counted until the body is
    /// freed. 0 when the connection was shed meanwhile (its reservation
    /// went back then; its body is dropped unanswered).
    fn hand_over(&mut self, id: u64) -> usize {
        self.open.get_mut(&id).map_or(0, |entry| {
            entry.body_since = None;
            std::mem::take(&mut entry.body)
        })
    }

    /// Gives back `bytes` a freed body held.
    fn give_back(&mut self, bytes: usize) {
        self.set_held(self.body_held - bytes);
    }
}

fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    // A panic while holding the lock leaves a consistent map.
    registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A complete request body (the buffer it was read into) and its share of
/// the body budget, which goes back when the last `Bytes` of the body is
/// dropped: the budget counts the body's memory for as long as it lives,
/// also in work that outlives the request (a review on the blocking pool
/// that overran its timeout, say).
struct HeldBody {
    buf: Vec<u8>,
    bytes: usize,
    registry: Arc<Mutex<Registry>>,
}

impl AsRef<[u8]> for HeldBody {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for HeldBody {
    fn drop(&mut self) {
        // The memory first, then its budget.
        drop(std::mem::take(&mut self.buf));
        lock(&self.registry).give_back(self.bytes);
    }
}

/// Moves a connection with no request in flight to `SHED`; false when a
/// request is in flight (or it was shed already).
fn mark_shed(state: &AtomicU8) -> bool {
    mark_shed_from(state, &[SETUP, IDLE, READING, WRITING, CLOSING])
}

/// Moves a connection in one of the states `from` to `SHED`.
fn mark_shed_from(state: &AtomicU8, from: &[u8]) -> bool {
    from.iter().any(|&from| {
        state
            .compare_exchange(from, SHED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    })
}

/// Moves a connection's state from `from` to `to`; false when it was shed.
fn advance(state: &AtomicU8, from: u8, to: u8) -> bool {
    from == to
        || state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
}

struct Inner<S, H> {
    setup: S,
    handler: H,
    limits: Limits,
    stats: Arc<Stats>,
    /// Shared with the bodies handed out ([`HeldBody`]).
    registry: Arc<Mutex<Registry>>,
    /// Set at shutdown: close each connection after its current request.
    closing: AtomicBool,
}

impl<S, H> Inner<S, H> {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }
}

/// A bounded HTTP/1.1 server on one listener.
pub struct Server<S, H> {
    listener: TcpListener,
    inner: Arc<Inner<S, H>>,
}

impl<S: Setup, H: Handler> Server<S, H> {
    /// A server for `listener`; it serves once [`Self::run`] is awaited.
    /// A `max_connections` of 0 is taken as 1, and a body budget below
    /// `max_body_bytes` as `max_body_bytes`.
    pub fn new(listener: TcpListener, setup: S, handler: H, mut limits: Limits) -> Self {
        limits.max_connections = limits.max_connections.max(1);
        limits.body_budget_bytes = limits.body_budget_bytes.max(limits.max_body_bytes);
        let stats = Arc::new(Stats::default());
        let registry = Registry {
            held_gauge: Arc::clone(&stats.body_held),
            ..Registry::default()
        };
        Self {
            listener,
            inner: Arc::new(Inner {
                setup,
                handler,
                limits,
                stats,
                registry: Arc::new(Mutex::new(registry)),
                closing: AtomicBool::new(false),
            }),
        }
    }

    /// The server's counters, readable while it runs.
    #[must_use]
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.inner.stats)
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully: stops
    /// accepting, closes the connections with no request in flight, waits
    /// up to [`Limits::shutdown_grace`] for the others, and closes what is
    /// left.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self { listener, inner } = self;
        tokio::pin!(shutdown);
        let mut logged_accept_error = false;
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => admit(&inner, stream, peer),
                Err(error) => {
                    bump(&inner.stats.accept_errors);
                    if !logged_accept_error {
                        logged_accept_error = true;
                        tracing::warn!(%error, "cannot accept a connection (logged once; counted in the metrics): closing the oldest idle connection and retrying");
                    }
                    let shed = inner.registry().shed_oldest();
                    if let Some(kill) = shed {
                        bump(&inner.stats.shed);
                        kill.notify_one();
                    }
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                }
            }
        }
        drop(listener);
        inner.closing.store(true, Ordering::Release);
        let idle = inner.registry().shed_all_idle();
        for kill in idle {
            kill.notify_one();
        }
        let until = Instant::now() + inner.limits.shutdown_grace;
        // Bounded by the grace period; polled, since connections end on
        // their own.
        while Instant::now() < until && !inner.registry().open.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let rest: Vec<AbortHandle> = std::mem::take(&mut inner.registry().open)
            .into_values()
            .map(|e| e.abort)
            .collect();
        for abort in rest {
            abort.abort();
        }
    }
}

/// Registers and spawns a new connection, shedding the oldest idle or
/// incomplete one at the cap, or refusing this one when all are busy.
fn admit<S: Setup, H: Handler>(inner: &Arc<Inner<S, H>>, stream: TcpStream, peer: SocketAddr) {
    bump(&inner.stats.accepted);
    let mut registry = inner.registry();
    let mut shed = None;
    if registry.open.len() >= inner.limits.max_connections {
        shed = registry.shed_oldest();
        if shed.is_none() {
            drop(registry);
            bump(&inner.stats.refused);
            drop(stream);
            return;
        }
        bump(&inner.stats.shed);
    }
    let id = registry.next_id;
    registry.next_id += 1;
    let state = Arc::new(AtomicU8::new(SETUP));
    let kill = Arc::new(Notify::new());
    // The task removes its own entry when it ends, which waits for this
    // lock: the entry is in the map before the task can look.
    let task = tokio::spawn(connection(
        Arc::clone(inner),
        id,
        Arc::clone(&state),
        Arc::clone(&kill),
        stream,
        peer,
    ));
    registry.open.insert(
        id,
        Entry {
            state,
            kill,
            abort: task.abort_handle(),
            body: 0,
            body_since: None,
        },
    );
    inner
        .stats
        .open
        .store(registry.open.len() as u64, Ordering::Relaxed);
    drop(registry);
    if let Some(kill) = shed {
        kill.notify_one();
    }
}

/// Removes a connection's entry (and gives back its body budget) when its
/// task ends or is aborted.
struct Leave<'a, S, H> {
    inner: &'a Inner<S, H>,
    id: u64,
}

impl<S, H> Drop for Leave<'_, S, H> {
    fn drop(&mut self) {
        let mut registry = self.inner.registry();
        registry.remove(self.id);
        self.inner
            .stats
            .open
            .store(registry.open.len() as u64, Ordering::Relaxed);
    }
}

/// Why a connection stops reading requests.
enum Stop {
    /// The peer closed, or an I/O error.
    Closed,
    /// A timeout while idle or reading a request.
    TimedOut,
    /// The connection was shed.
    Shed,
    /// A malformed or oversized request: answer this status and close.
    Reject(StatusCode, &'static str),
}

/// How a connection's requests ended, for the way it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Close: `close_notify` and FIN.
    Close,
    /// A request was refused: close, then read and discard what the client
    /// still sends for a moment ([`LINGER`]).
    Rejected,
}

/// One connection: the setup step, then requests until the peer closes,
/// a limit is hit, the connection is shed, or the server shuts down; then
/// a clean close.
async fn connection<S: Setup, H: Handler>(
    inner: Arc<Inner<S, H>>,
    id: u64,
    state: Arc<AtomicU8>,
    kill: Arc<Notify>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let _leave = Leave { inner: &inner, id };
    let limits = &inner.limits;
    let _ = stream.set_nodelay(true);
    let setup = tokio::select! {
        biased;
        () = kill.notified() => return,
        setup = timeout(limits.setup_timeout, inner.setup.setup(stream)) => setup,
    };
    let Ok(Ok(mut io)) = setup else {
        bump(&inner.stats.setup_failed);
        return;
    };
    if !advance(&state, SETUP, IDLE) {
        return;
    }
    let end = tokio::select! {
        biased;
        () = kill.notified() => End::Close,
        end = requests(&inner, id, &state, &mut io, peer) => end,
    };
    // The TLS close_notify, then the FIN: a peer that does not read gets
    // neither and is dropped.
    let _ = timeout(CLOSE_TIMEOUT, io.shutdown()).await;
    if end == End::Rejected {
        tokio::select! {
            biased;
            () = kill.notified() => {}
            () = drain(&mut io, LINGER) => {}
        }
    }
}

/// Reads and discards until EOF, an error, [`LINGER_BYTES`] or `linger`.
async fn drain<Io: AsyncRead + Unpin>(io: &mut Io, linger: Duration) {
    let deadline = Instant::now() + linger;
    let mut scratch = [0u8; 4096];
    let mut left = LINGER_BYTES;
    while left > 0 {
        match timeout_at(deadline, io.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// Serves the requests of one set-up connection until it should close.
async fn requests<S: Setup, H: Handler>(
    inner: &Inner<S, H>,
    id: u64,
    state: &AtomicU8,
    io: &mut S::Io,
    peer: SocketAddr,
) -> End {
    let limits = &inner.limits;
    let counts = &inner.stats;
    let mut buf = Vec::new();
    loop {
        let request = match read_request(io, &mut buf, inner, id, state).await {
            Ok(request) => request,
            Err(Stop::Closed | Stop::Shed) => return End::Close,
            Err(Stop::TimedOut) => {
                bump(&counts.timed_out);
                return End::Close;
            }
            Err(Stop::Reject(status, why)) => {
                bump(&counts.rejected);
                if advance(state, READING, WRITING) {
                    let head_only = buf.starts_with(b"HEAD ");
                    let mut response = plain(status, why);
                    if status == StatusCode::SERVICE_UNAVAILABLE {
                        response
                            .headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    }
                    let _ = timeout(
                        limits.write_timeout,
                        write_response(io, &response, head_only, true),
                    )
                    .await;
                    advance(state, WRITING, CLOSING);
                }
                return End::Rejected;
            }
        };
        if !advance(state, READING, IN_FLIGHT) {
            return End::Close;
        }
        let mut request = request;
        request.extensions_mut().insert(PeerAddr(peer));
        let head_only = request.method() == Method::HEAD;
        let close = wants_close(&request) || inner.closing.load(Ordering::Acquire);
        let deadline = Instant::now() + limits.request_timeout;
        let response =
            if let Ok(response) = timeout_at(deadline, inner.handler.handle(request)).await {
                bump(&counts.served);
                response
            } else {
                bump(&counts.timed_out);
                plain(StatusCode::SERVICE_UNAVAILABLE, "request timed out\n")
            };
        let close = close || inner.closing.load(Ordering::Acquire);
        if !advance(state, IN_FLIGHT, WRITING) {
            return End::Close;
        }
        // A response that does not drain within the write deadline is
        // dropped; until then the connection may be shed.
        let write_deadline = deadline.min(Instant::now() + limits.write_timeout);
        match timeout_at(
            write_deadline,
            write_response(io, &response, head_only, close),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return End::Close,
            Err(_) => {
                bump(&counts.timed_out);
                return End::Close;
            }
        }
        if close || !advance(state, WRITING, IDLE) {
            return End::Close;
        }
        if buf.is_empty() {
            // An idle connection holds no buffer.
            buf = Vec::new();
        } else {
            // A pipelined request is waiting: let the other connections
            // (a fresh probe, say) have their turn first.
            tokio::task::yield_now().await;
        }
    }
}

/// Reads one request: waits up to the idle timeout for its first byte,
/// then the header timeout for the rest of its head, then the body
/// timeout for its body (which first takes its length from the body
/// budget, and answers `Expect: 100-continue`; the complete body carries
/// the reservation on). Bytes past the request stay in `buf`.
async fn read_request<Io: AsyncRead + AsyncWrite + Unpin, S, H>(
    io: &mut Io,
    buf: &mut Vec<u8>,
    inner: &Inner<S, H>,
    id: u64,
    state: &AtomicU8,
) -> Result<Request<Bytes>, Stop> {
    let limits = &inner.limits;
    let mut deadline = Instant::now() + limits.idle_timeout;
    let mut reading = false;
    let (mut request, head_len, body_len) = loop {
        if !buf.is_empty() {
            if !reading {
                reading = true;
                if !advance(state, IDLE, READING) {
                    return Err(Stop::Shed);
                }
                deadline = Instant::now() + limits.header_timeout;
            }
            if let Some(parsed) = parse_head(buf, limits)? {
                break parsed;
            }
            if buf.len() >= limits.max_head_bytes {
                return Err(Stop::Reject(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head too large\n",
                ));
            }
        }
        let room = limits.max_head_bytes.saturating_sub(buf.len()).max(1);
        fill(io, buf, room, deadline).await?;
    };
    let end = head_len + body_len;
    if body_len > 0 {
        reserve_body(inner, id, body_len).await?;
    }
    if buf.len() < end {
        deadline = Instant::now() + limits.body_timeout;
        if expects_continue(&request) {
            let sent = timeout_at(deadline, async {
                io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
                io.flush().await
            })
            .await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Stop::Closed),
                Err(_) => return Err(Stop::TimedOut),
            }
        }
        buf.reserve_exact(end - buf.len());
        while buf.len() < end {
            let room = end - buf.len();
            fill(io, buf, room, deadline).await?;
        }
    }
    if body_len > 0 {
        // The body is handed on without a copy, with its reservation;
        // what follows it (a pipelined request) stays.
        let rest = buf.split_off(end);
        let held = HeldBody {
            buf: std::mem::replace(buf, rest),
            bytes: inner.registry().hand_over(id),
            registry: Arc::clone(&inner.registry),
        };
        *request.body_mut() = Bytes::from_owner(held).slice(head_len..end);
    } else {
        buf.drain(..end);
    }
    Ok(request)
}

/// Takes `bytes` from the body budget for connection `id`, waiting up to
/// the body timeout for room: the body is not read meanwhile, so TCP holds
/// the client back. Bodies still incomplete after their grace are shed to
/// make room; 503 when none comes.
async fn reserve_body<S, H>(inner: &Inner<S, H>, id: u64, bytes: usize) -> Result<(), Stop> {
    let limits = &inner.limits;
    let freed = Arc::clone(&inner.registry().freed);
    let deadline = Instant::now() + limits.body_timeout;
    // Bounded by the deadline.
    loop {
        // Listen before looking, so that room freed in between is not
        // missed.
        let notified = freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = Instant::now();
        let reserved = inner.registry().reserve_body(
            id,
            bytes,
            limits.body_budget_bytes,
            now,
            limits.body_grace,
        );
        for kill in reserved.shed {
            bump(&inner.stats.shed);
            bump(&inner.stats.bodies_shed);
            kill.notify_one();
        }
        if reserved.granted {
            return Ok(());
        }
        if now >= deadline {
            return Err(Stop::Reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is reading as many request bodies as its memory allows: retry shortly\n",
            ));
        }
        // Look again when room is freed, or when the oldest body still
        // arriving may have outlasted its grace.
        let next = (now + (limits.body_grace / 4).max(MIN_BODY_WAIT_TICK)).min(deadline);
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep_until(next) => {}
        }
    }
}

/// True for an HTTP/1.1 request with `Expect: 100-continue`.
fn expects_continue<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_11
        && request
            .headers()
            .get_all(header::EXPECT)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Reads at most `room` more bytes into `buf` before `deadline`, growing
/// it by doubling from [`INITIAL_BUFFER`].
async fn fill<Io: AsyncRead + Unpin>(
    io: &mut Io,
    buf: &mut Vec<u8>,
    room: usize,
    deadline: Instant,
) -> Result<(), Stop> {
    if buf.capacity() == buf.len() {
        let grow = buf.capacity().max(INITIAL_BUFFER).min(room);
        buf.reserve_exact(grow);
    }
    let spare = (buf.capacity() - buf.len()).min(room);
    let mut limited = (&mut *io).take(spare as u64);
    match timeout_at(deadline, limited.read_buf(buf)).await {
        Ok(Ok(0) | Err(_)) => Err(Stop::Closed),
        Ok(Ok(_)) => Ok(()),
        Err(_) => Err(Stop::TimedOut),
    }
}

/// Parses a complete request head at the start of `buf`: the request
/// (with an empty body), the head's length and the body's length. `None`
/// when the head is not complete yet.
fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(Request<Bytes>, usize, usize)>, Stop> {
    let bad = |why| Stop::Reject(StatusCode::BAD_REQUEST, why);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Stop::Reject(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many headers\n",
            ))
        }
        Err(_) => return Err(bad("malformed request\n")),
    };
    if head_len > limits.max_head_bytes {
        return Err(Stop::Reject(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head too large\n",
        ));
    }
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes())
        .map_err(|_| bad("malformed method\n"))?;
    let uri: http::Uri = parsed
        .path
        .unwrap_or("/")
        .parse()
        .map_err(|_| bad("malformed request target\n"))?;
    let mut request = Request::new(Bytes::new());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    let mut body_len: Option<usize> = None;
    let mut hosts = 0;
    for h in parsed.headers.iter() {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("malformed header\n"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| bad("malformed header\n"))?;
        if name == header::TRANSFER_ENCODING {
            return Err(Stop::Reject(
                StatusCode::LENGTH_REQUIRED,
                "send the body with a Content-Length\n",
            ));
        }
        if name == header::CONTENT_LENGTH {
            let n = content_length(value.as_bytes())
                .ok_or_else(|| bad("malformed Content-Length: it must be digits only\n"))?;
            if body_len.is_some_and(|m| m != n) {
                return Err(bad("conflicting Content-Length headers\n"));
            }
            body_len = Some(n);
        }
        if name == header::HOST {
            hosts += 1;
        }
        request.headers_mut().append(name, value);
    }
    // RFC 9112 §3.2: exactly one Host on HTTP/1.1, at most one on 1.0.
    if hosts > 1 || (hosts == 0 && version == Version::HTTP_11) {
        return Err(bad("an HTTP/1.1 request needs exactly one Host header\n"));
    }
    let body_len = body_len.unwrap_or(0);
    if body_len > limits.max_body_bytes {
        return Err(Stop::Reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n",
        ));
    }
    Ok(Some((request, head_len, body_len)))
}

/// A `Content-Length` value: `1*DIGIT` (RFC 9112 §6.2), so no sign, no
/// spaces inside, and no list; `None` otherwise or on overflow.
fn content_length(value: &[u8]) -> Option<usize> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// True when the client asked to close after this request (or speaks
/// HTTP/1.0, which closes by default).
fn wants_close<B>(request: &Request<B>) -> bool {
    let says = |word: &str| {
        request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(word))
    };
    if request.version() == Version::HTTP_10 {
        !says("keep-alive")
    } else {
        says("close")
    }
}

/// A short plain-text response.
#[must_use]
pub fn plain(status: StatusCode, body: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(body.as_bytes()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Writes `response` as HTTP/1.1 with a `Content-Length` (and no body for
/// a HEAD request), then flushes.
async fn write_response<Io: AsyncWrite + Unpin>(
    io: &mut Io,
    response: &Response<Bytes>,
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    let status = response.status();
    let mut head = Vec::with_capacity(160);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        if name == header::CONTENT_LENGTH
            || name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !response.headers().contains_key(header::DATE) {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(format!("content-length: {}\r\n", response.body().len()).as_bytes());
    if close {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    if !head_only && response.body().len() <= 16 * 1024 {
        head.extend_from_slice(response.body());
        io.write_all(&head).await?;
    } else {
        io.write_all(&head).await?;
        if !head_only {
            io.write_all(response.body()).await?;
        }
    }
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::{mark_shed, parse_head, wants_close, Limits, Stop, IDLE, IN_FLIGHT, SHED};
    use http::{Method, StatusCode, Version};
    use std::sync::atomic::AtomicU8;

    fn status_of(head: &[u8], limits: &Limits) -> Option<StatusCode> {
        match parse_head(head, limits) {
            Err(Stop::Reject(status, _)) => Some(status),
            _ => None,
        }
    }

    #[test]
    fn heads_parse_or_are_refused_with_the_right_status() {
        let probe = Limits::default();
        let webhook = Limits {
            max_body_bytes: 3 << 20,
            ..Limits::default()
        };
        let ok = b"GET /readyz HTTP/1.1\r\nHost: x\r\nUser-Agent: kube-probe/1.33\r\n\r\n";
        let Ok(Some((req, len, body))) = parse_head(ok, &probe) else {
            panic!("a probe request parses");
        };
        assert_eq!(
            (req.method(), req.uri().path(), len, body),
            (&Method::GET, "/readyz", ok.len(), 0)
        );
        assert!(matches!(
            parse_head(b"GET /readyz HTTP/1.1\r\nHost:", &probe),
            Ok(None)
        ));
        let post = b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n";
        assert!(matches!(parse_head(post, &webhook), Ok(Some((_, _, 10)))));
        let table: &[(&[u8], &Limits, StatusCode)] = &[
            (post, &probe, StatusCode::PAYLOAD_TOO_LARGE),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                &webhook,
                StatusCode::LENGTH_REQUIRED,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                &webhook,
                StatusCode::BAD_REQUEST,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                &webhook,
                StatusCode::BAD_REQUEST,
            ),
            (
                b"GET\x01 / HTTP/1.1\r\n\r\n",
                &probe,
                StatusCode::BAD_REQUEST,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
                &webhook,
                StatusCode::BAD_REQUEST,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
                &webhook,
                StatusCode::BAD_REQUEST,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n",
                &webhook,
                StatusCode::BAD_REQUEST,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                &webhook,
                StatusCode::BAD_REQUEST,
            ),
            (b"GET / HTTP/1.1\r\n\r\n", &probe, StatusCode::BAD_REQUEST),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                &probe,
                StatusCode::BAD_REQUEST,
            ),
            (
                b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
                &probe,
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (head, limits, status) in table {
            assert_eq!(
                status_of(head, limits),
                Some(*status),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        assert!(
            matches!(parse_head(b"GET / HTTP/1.0\r\n\r\n", &probe), Ok(Some(_))),
            "HTTP/1.0 needs no Host"
        );
        let many = "X-Pad: y\r\n".repeat(40);
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            status_of(head.as_bytes(), &probe),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }

    #[test]
    fn http_10_closes_unless_kept_alive_and_11_the_reverse() {
        let req = |version, connection: Option<&str>| {
            let mut b = http::Request::builder().version(version);
            if let Some(c) = connection {
                b = b.header("connection", c);
            }
            b.body(()).unwrap()
        };
        assert!(wants_close(&req(Version::HTTP_10, None)));
        assert!(!wants_close(&req(Version::HTTP_10, Some("Keep-Alive"))));
        assert!(!wants_close(&req(Version::HTTP_11, None)));
        assert!(wants_close(&req(Version::HTTP_11, Some("foo, close"))));
    }

    #[test]
    fn a_request_in_flight_is_never_shed() {
        let busy = AtomicU8::new(IN_FLIGHT);
        assert!(!mark_shed(&busy));
        let idle = AtomicU8::new(IDLE);
        assert!(mark_shed(&idle));
        assert_eq!(idle.into_inner(), SHED);
        assert!(!mark_shed(&AtomicU8::new(SHED)));
        // A response its client does not read is not the server's work.
        assert!(mark_shed(&AtomicU8::new(super::WRITING)));
    }

    /// The body budget: granted while it lasts; then bodies still
    /// incomplete after their grace are shed, oldest first, and a request
    /// waits while the others are within their grace or complete (in a
    /// handler).
    #[tokio::test]
    async fn the_body_budget_sheds_only_bodies_past_their_grace_oldest_first() {
        use super::{Entry, Registry, READING};
        use std::sync::Arc;
        use tokio::time::{Duration, Instant};
        const GRACE: Duration = Duration::from_secs(1);
        let mut registry = Registry::default();
        for id in 0..5 {
            let task = tokio::spawn(std::future::pending::<()>());
            registry.open.insert(
                id,
                Entry {
                    state: Arc::new(AtomicU8::new(READING)),
                    kill: Arc::new(tokio::sync::Notify::new()),
                    abort: task.abort_handle(),
                    body: 0,
                    body_since: None,
                },
            );
        }
        let state = |r: &Registry, id| r.open[&id].state.load(std::sync::atomic::Ordering::Acquire);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let reserve = |r: &mut Registry, id, bytes, now| {
            let reserved = r.reserve_body(id, bytes, 100, now, GRACE);
            reserved.granted.then_some(reserved.shed.len())
        };
        assert_eq!(reserve(&mut registry, 0, 40, at(0)), Some(0));
        assert_eq!(reserve(&mut registry, 1, 40, at(500)), Some(0));
        // 0 and 1 hold 80 and are within their grace: 2 waits.
        assert_eq!(reserve(&mut registry, 2, 40, at(900)), None);
        assert_eq!(registry.body_held, 80);
        // Once 0 is past its grace, it is shed for 2; 1 is not.
        assert_eq!(reserve(&mut registry, 2, 40, at(1000)), Some(1));
        assert!(!registry.open.contains_key(&0));
        assert_eq!(state(&registry, 1), READING);
        assert_eq!(registry.body_held, 80);
        // 1's body is complete and in its handler: 3 cannot shed it, and
        // 2 is within its grace, so 3 waits, with nothing shed.
        registry.open[&1]
            .state
            .store(IN_FLIGHT, std::sync::atomic::Ordering::Release);
        assert_eq!(reserve(&mut registry, 3, 70, at(1500)), None);
        // Past 2's grace, 2 alone does not make room for 70: still nothing
        // shed.
        assert_eq!(reserve(&mut registry, 3, 70, at(2500)), None);
        assert_eq!(state(&registry, 2), READING);
        assert_eq!(registry.body_held, 80);
        // 1's body is freed: its bytes go back, and a waiter is woken.
        let held = registry.hand_over(1);
        assert_eq!((held, registry.body_held), (40, 80));
        assert_eq!(registry.remove(1).map(|e| e.body), Some(0));
        assert_eq!(
            registry.body_held, 80,
            "a handed-over body outlives its connection"
        );
        let freed = Arc::clone(&registry.freed);
        let woken = freed.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        registry.give_back(held);
        assert_eq!(registry.body_held, 40);
        assert!(
            tokio::time::timeout(Duration::ZERO, woken).await.is_ok(),
            "freeing budget wakes the requests waiting for it"
        );
        // Room now: 3 needs no shedding.
        assert_eq!(reserve(&mut registry, 3, 60, at(2600)), Some(0));
        assert_eq!(registry.remove(3).map(|e| e.body), Some(60));
        assert_eq!(registry.body_held, 40);
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections_and_lets_a_request_in_flight_finish() {
        use super::{bind, Plain, Server};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::sync::{oneshot, Notify};

        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (s, r) = (Arc::clone(&started), Arc::clone(&release));
        let handler = move |_req: http::Request<bytes::Bytes>| {
            let (s, r) = (Arc::clone(&s), Arc::clone(&r));
            async move {
                s.notify_one();
                r.notified().await;
                super::plain(StatusCode::OK, "done\n")
            }
        };
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::new(listener, Plain, handler, Limits::default());
        let stats = server.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        started.notified().await;
        stop.send(()).unwrap();
        // The idle connection is closed at once.
        let mut byte = [0u8; 1];
        assert_eq!(idle.read(&mut byte).await.unwrap(), 0);
        release.notify_one();
        let mut answer = String::new();
        busy.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\ndone\n"), "{answer}");
        serving.await.unwrap();
        assert_eq!(stats.snapshot().served, 1);
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}

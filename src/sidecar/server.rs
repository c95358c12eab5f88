//! The probe and metrics server for `--listen`: `GET /readyz`, `/livez`,
//! `/metrics`; another method on them is 405 (with `Allow`), anything
//! else is 404. Bodies are fixed words and the
//! metrics, which carry file names and counts, never a value. The
//! connection handling (the cap, shedding, timeouts) is
//! [`crate::serve`]'s.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use super::state::Shared;
use crate::serve::{self, Limits, Plain, Server};

/// The content type of the exposition `prometheus-client` writes.
const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves until the runtime stops, with at most `max_connections` open
/// connections (see [`crate::serve`] for what happens at the cap).
pub fn spawn(listener: TcpListener, shared: &Arc<Shared>, max_connections: usize) {
    let limits = Limits {
        max_connections,
        ..Limits::default()
    };
    let handler_shared = Arc::clone(shared);
    let server = Server::new(
        listener,
        Plain,
        move |req: Request<Bytes>| {
            let shared = Arc::clone(&handler_shared);
            async move { answer(&req, &shared) }
        },
        limits,
    );
    shared.metrics.serve_stats(server.stats());
    tokio::spawn(server.run(std::future::pending()));
}

fn answer(req: &Request<Bytes>, shared: &Shared) -> Response<Bytes> {
    let known = matches!(*req.method(), Method::GET | Method::HEAD);
    let (status, body) = match (known, req.uri().path()) {
        (true, "/readyz") if shared.is_ready() => (StatusCode::OK, "ready\n"),
        (true, "/readyz") => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        (true, "/livez") if shared.is_alive() => (StatusCode::OK, "alive\n"),
        (true, "/livez") => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
        (true, "/metrics") => {
            let mut response = Response::new(Bytes::from(shared.metrics.encode()));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(METRICS_TYPE),
            );
            return response;
        }
        (false, "/readyz" | "/livez" | "/metrics") => {
            let mut response = serve::plain(StatusCode::METHOD_NOT_ALLOWED, "use GET or HEAD\n");
            response.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD"),
            );
            return response;
        }
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    serve::plain(status, body)
}

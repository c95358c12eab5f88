//! The probe and metrics server for `--listen`: `GET /readyz`, `/livez`,
//! `/metrics`; anything else is 404. Bodies are fixed words and the
//! metrics, which carry file names and counts, never a value.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::state::Shared;

/// The content type of the exposition `prometheus-client` writes.
const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves until the runtime stops. Each connection is its own task, with
/// a bound on how long its request headers may take.
pub fn spawn(listener: TcpListener, shared: Arc<Shared>) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, say: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let shared = Arc::clone(&shared);
                    async move { Ok::<_, Infallible>(answer(&req, &shared)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn answer(req: &http::Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let known = matches!(*req.method(), Method::GET | Method::HEAD);
    let (status, kind, body) = match (known, req.uri().path()) {
        (true, "/readyz") if shared.is_ready() => (StatusCode::OK, "text/plain", "ready\n".into()),
        (true, "/readyz") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".into(),
        ),
        (true, "/livez") if shared.is_alive() => (StatusCode::OK, "text/plain", "alive\n".into()),
        (true, "/livez") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "stopping\n".into(),
        ),
        (true, "/metrics") => (StatusCode::OK, METRICS_TYPE, shared.metrics.encode()),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(kind) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

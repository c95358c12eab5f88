//! The one HTTP/1 client exchange used by the Safe client and by the
//! change notifications: a TCP connection to a URL's host, a request with
//! an empty body, and the response handed to the caller while the
//! connection is still driven. A leaf: it depends on nothing in the crate.

use std::future::Future;

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The `User-Agent` every request sends.
pub const USER_AGENT: &str = concat!("secret-gate/", env!("CARGO_PKG_VERSION"));

/// Why an exchange gave no response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP/1 handshake on the connection failed.
    #[error("HTTP handshake failed: {0}")]
    Handshake(hyper::Error),
    /// The request could not be built (an unusable URL).
    #[error("cannot build the request: {0}")]
    Build(http::Error),
    /// Sending the request or reading the response head failed.
    #[error("request failed: {0}")]
    Request(hyper::Error),
}

/// The URL's host without IPv6 brackets, and its port (`default_port` if
/// it names none).
#[must_use]
pub fn host_port(url: &http::Uri, default_port: u16) -> (String, u16) {
    let host = url
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    (host, url.port_u16().unwrap_or(default_port))
}

/// A TCP connection to `host:port`, with Nagle off (one small request).
pub async fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect((host, port)).await?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Sends `method path` (path and query as given) with `Host` from `url`
/// and an empty body on `io`, then hands the response to `read`. The
/// connection is driven until `read` returns, then dropped.
pub async fn exchange<IO, F, Fut, T>(
    io: IO,
    method: http::Method,
    url: &http::Uri,
    path: &str,
    read: F,
) -> Result<T, Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(http::Response<Incoming>) -> Fut,
    Fut: Future<Output = T>,
{
    let authority = url.authority().map(ToString::to_string).unwrap_or_default();
    let mut request = http::Request::builder()
        .method(method.clone())
        .uri(path)
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, USER_AGENT);
    if method == http::Method::POST {
        request = request.header(http::header::CONTENT_LENGTH, "0");
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(Error::Build)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(Error::Handshake)?;
    let driver = tokio::spawn(conn);
    let outcome = match sender.send_request(request).await {
        Ok(response) => Ok(read(response).await),
        Err(e) => Err(Error::Request(e)),
    };
    driver.abort();
    outcome
}

//! The fake SPIFFE Workload API: a real gRPC server (tonic) on a unix socket,
//! as the SPIRE agent serves it through the SPIFFE CSI driver.
//!
//! `FetchX509SVID` and `FetchX509Bundles` send one message, then keep the
//! stream open until the client goes away or the fake shuts down, as SPIRE
//! does between rotations. Both require the `workload.spiffe.io: true`
//! metadata and answer `InvalidArgument` without it, as SPIRE does. The JWT
//! RPCs answer `Unimplemented`.
//!
//! [`Agent`] is that server as a SPIRE agent's lifetime: it can stop (the
//! streams end, the socket goes) and start again on a new socket inode
//! with a newly issued SVID, as a restarted agent does.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status};

use rustls::pki_types::CertificateDer;
use tokio::task::JoinHandle;

use super::certs::Leaf;
use super::proto::spiffe_workload_api_server::{SpiffeWorkloadApi, SpiffeWorkloadApiServer};
use super::proto::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svid, X509svidRequest,
    X509svidResponse,
};

/// The metadata key every Workload API client must send.
const SECURITY_HEADER: &str = "workload.spiffe.io";

/// The service: fixed answers, built once from the PKI.
pub(crate) struct WorkloadApi {
    svid: X509svidResponse,
    bundles: X509BundlesResponse,
    shutdown: watch::Receiver<bool>,
}

impl WorkloadApi {
    /// Hands out the workload SVID `svid` and the trust domain's CA.
    /// `shutdown` turning true ends the open streams.
    pub fn new(
        svid: &Leaf,
        ca: &CertificateDer<'static>,
        trust_domain: &str,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let bundles = X509BundlesResponse {
            crl: Vec::new(),
            bundles: HashMap::from([(format!("spiffe://{trust_domain}"), ca.to_vec())]),
        };
        let svid = X509svidResponse {
            svids: vec![X509svid {
                spiffe_id: svid.spiffe_id.clone(),
                x509_svid: svid.cert.to_vec(),
                x509_svid_key: svid.key.secret_pkcs8_der().to_vec(),
                bundle: ca.to_vec(),
                hint: String::new(),
            }],
            crl: Vec::new(),
            federated_bundles: HashMap::new(),
        };
        Self {
            svid,
            bundles,
            shutdown,
        }
    }

    /// A stream that yields `first`, then stays open until the client drops
    /// it or the fake shuts down.
    fn hold_open<T: Send + 'static>(&self, first: T) -> ReceiverStream<Result<T, Status>> {
        let (tx, rx) = mpsc::channel(1);
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            tokio::select! {
                () = tx.closed() => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        });
        ReceiverStream::new(rx)
    }
}

/// Refuses a request without `workload.spiffe.io: true`, with SPIRE's words.
fn check_security_header<T>(request: &Request<T>, rpc: &str) -> Result<(), Status> {
    let ok = request
        .metadata()
        .get(SECURITY_HEADER)
        .is_some_and(|v| v.as_bytes() == b"true");
    if ok {
        Ok(())
    } else {
        tracing::warn!("Workload API: {rpc} without the {SECURITY_HEADER} metadata: refused");
        Err(Status::invalid_argument(
            "security header missing from request",
        ))
    }
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = ReceiverStream<Result<X509svidResponse, Status>>;
    type FetchX509BundlesStream = ReceiverStream<Result<X509BundlesResponse, Status>>;
    type FetchJWTBundlesStream = ReceiverStream<Result<JwtBundlesResponse, Status>>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        check_security_header(&request, "FetchX509SVID")?;
        tracing::info!(
            spiffe_id = %self.svid.svids.first().map_or("", |s| s.spiffe_id.as_str()),
            "Workload API: FetchX509SVID handed out the SVID"
        );
        Ok(Response::new(self.hold_open(self.svid.clone())))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        check_security_header(&request, "FetchX509Bundles")?;
        tracing::info!("Workload API: FetchX509Bundles handed out the bundle");
        Ok(Response::new(self.hold_open(self.bundles.clone())))
    }

    async fn fetch_jwtsvid(
        &self,
        _request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        Err(Status::unimplemented(
            "the fake Workload API serves X.509 only",
        ))
    }

    async fn fetch_jwt_bundles(
        &self,
        _request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        Err(Status::unimplemented(
            "the fake Workload API serves X.509 only",
        ))
    }

    async fn validate_jwtsvid(
        &self,
        _request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        Err(Status::unimplemented(
            "the fake Workload API serves X.509 only",
        ))
    }
}

/// Serves `api` on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: UnixListener,
    api: WorkloadApi,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(SpiffeWorkloadApiServer::new(api))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}

/// The Workload API as a running SPIRE agent: serving on its socket until
/// [`Agent::stop`].
pub(crate) struct Agent {
    socket: PathBuf,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Agent {
    /// Serves `api` on `listener`, bound at `socket`. `api` must have been
    /// built with a receiver of `stop`, so stopping ends its streams.
    pub fn start(
        socket: PathBuf,
        listener: UnixListener,
        api: WorkloadApi,
        stop: watch::Sender<bool>,
    ) -> Self {
        let mut stopped = stop.subscribe();
        let task = tokio::spawn(serve(listener, api, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
        Self { socket, stop, task }
    }

    /// Ends the open streams and the server within `grace`, then removes
    /// the socket, as a SPIRE agent that goes away does.
    pub async fn stop(mut self, grace: Duration) {
        self.stop.send_replace(true);
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            tracing::warn!("Workload API streams did not close within {grace:?}; dropping them");
            self.task.abort();
        }
        if let Err(error) = std::fs::remove_file(&self.socket) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%error, socket = %self.socket.display(), "cannot remove the socket");
            }
        }
    }

    /// Completes if the server stops on its own (an error: only
    /// [`Agent::stop`] should stop it).
    pub async fn ended(&mut self) -> anyhow::Error {
        match (&mut self.task).await {
            Ok(Ok(())) => anyhow::anyhow!("the Workload API server stopped unexpectedly"),
            Ok(Err(error)) => anyhow::Error::new(error).context("the Workload API server failed"),
            Err(error) => anyhow::Error::new(error).context("the Workload API task failed"),
        }
    }
}

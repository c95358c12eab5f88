//! The fake SPIFFE Workload API: a real gRPC server (tonic) on a unix socket,
//! as the SPIRE agent serves it through the SPIFFE CSI driver.
//!
//! `FetchX509SVID` and `FetchX509Bundles` send one message, then keep the
//! stream open until the client goes away or the fake shuts down, as SPIRE
//! does between rotations. Both require the `workload.spiffe.io: true`
//! metadata and answer `InvalidArgument` without it, as SPIRE does. The JWT
//! RPCs answer `Unimplemented`.

use std::collections::HashMap;
use std::future::Future;

use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status};

use super::certs::Pki;
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
    /// Hands out the workload SVID and the trust domain's CA. `shutdown`
    /// turning true ends the open streams.
    pub fn new(pki: &Pki, trust_domain: &str, shutdown: watch::Receiver<bool>) -> Self {
        let svid = X509svidResponse {
            svids: vec![X509svid {
                spiffe_id: pki.workload.spiffe_id.clone(),
                x509_svid: pki.workload.cert.to_vec(),
                x509_svid_key: pki.workload.key.secret_pkcs8_der().to_vec(),
                bundle: pki.ca.to_vec(),
                hint: String::new(),
            }],
            crl: Vec::new(),
            federated_bundles: HashMap::new(),
        };
        let bundles = X509BundlesResponse {
            crl: Vec::new(),
            bundles: HashMap::from([(format!("spiffe://{trust_domain}"), pki.ca.to_vec())]),
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

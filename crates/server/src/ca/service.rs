//! `istio.v1.auth.IstioCertificateService/CreateCertificate` on the secure port.
//!
//! Written against tonic's server building blocks rather than generated code (the messages
//! are hand-written in `entryway-contract`, there is no protoc): the request is decoded by
//! tonic's gRPC machinery, the caller is authenticated from the connection's
//! [`PeerInfo`](crate::secure::PeerInfo) and the `authorization` header, and the CSR is
//! signed for that caller's identity only.
//!
//! Refusals (no credential, a bad/expired/revoked token, a CSR for another identity, a TTL
//! over the maximum) answer `UNAUTHENTICATED` / `INVALID_ARGUMENT` with the reason, are
//! logged and appear in `/debug/syncz`; they never affect other callers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use entryway_contract::ca::{
    CREATE_CERTIFICATE_PATH, IstioCertificateRequest, IstioCertificateResponse, SERVICE,
};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use tracing::info;

use super::{CaError, MeshCa};
use crate::secure::{Authenticator, PeerInfo};
use crate::shared::Shared;

/// Largest CSR request accepted (a CSR is about 500 bytes).
const MAX_REQUEST_BYTES: usize = 64 << 10;

struct Inner {
    ca: Arc<MeshCa>,
    auth: Authenticator,
    shared: Arc<Shared>,
}

/// The certificate service, mountable on a tonic server (`add_service`).
#[derive(Clone)]
pub struct CaService {
    inner: Arc<Inner>,
}

impl CaService {
    /// A service signing with `ca` for callers `auth` accepts; refusals go to `shared`.
    pub fn new(ca: Arc<MeshCa>, auth: Authenticator, shared: Arc<Shared>) -> CaService {
        CaService {
            inner: Arc::new(Inner { ca, auth, shared }),
        }
    }
}

impl NamedService for CaService {
    const NAME: &'static str = SERVICE;
}

impl Inner {
    fn create(
        &self,
        req: Request<IstioCertificateRequest>,
    ) -> Result<IstioCertificateResponse, Status> {
        let peer = req.extensions().get::<PeerInfo>().cloned();
        let remote = peer.as_ref().and_then(|p| p.remote).map(|a| a.to_string());
        let headers = req.metadata().clone().into_headers();
        let caller = match self.auth.authenticate(peer.as_ref(), &headers) {
            Ok(c) => c,
            Err(reason) => {
                self.shared.refuse("ca", remote, None, None, reason.clone());
                return Err(Status::unauthenticated(reason));
            }
        };
        let body = req.into_inner();
        let refuse = |e: CaError| {
            let reason = e.to_string();
            self.shared.refuse(
                "ca",
                remote.clone(),
                None,
                Some(caller.identity.uri()),
                reason.clone(),
            );
            Status::invalid_argument(format!("CSR signing error ({reason})"))
        };
        let ttl = self.ca.ttl_for(body.validity_duration).map_err(refuse)?;
        let signed = self
            .ca
            .sign_csr(&body.csr, &caller.identity, ttl)
            .map_err(refuse)?;
        self.shared
            .metrics
            .certificates_signed
            .fetch_add(1, Ordering::Relaxed);
        info!(
            identity = %caller.identity,
            method = ?caller.method,
            peer = remote.as_deref().unwrap_or("-"),
            ttl_s = ttl.as_secs(),
            "signed a workload certificate"
        );
        Ok(IstioCertificateResponse {
            cert_chain: signed.chain,
        })
    }
}

struct Unary(Arc<Inner>);

impl tonic::server::UnaryService<IstioCertificateRequest> for Unary {
    type Response = IstioCertificateResponse;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Self::Response>, Status>> + Send>>;

    fn call(&mut self, request: Request<IstioCertificateRequest>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        // Signing is a few hundred microseconds of CPU: not worth a blocking-pool hop.
        Box::pin(async move { inner.create(request).map(Response::new) })
    }
}

impl<B> tower_service::Service<http::Request<B>> for CaService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != CREATE_CERTIFICATE_PATH {
            let path = entryway_contract::identity::bounded(req.uri().path(), 128);
            return Box::pin(async move {
                Ok(Status::unimplemented(format!("no method {path}")).into_http())
            });
        }
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<IstioCertificateResponse, IstioCertificateRequest>::default();
            let mut grpc =
                tonic::server::Grpc::new(codec).max_decoding_message_size(MAX_REQUEST_BYTES);
            Ok(grpc.unary(Unary(inner), req).await)
        })
    }
}

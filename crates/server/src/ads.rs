//! The ADS gRPC server: state-of-the-world (`StreamAggregatedResources`) and Delta
//! (`DeltaAggregatedResources`) aggregated streams.
//!
//! ```text
//! request ─► ack::classify_* ─► sotw::Sotw / delta::Delta (per type: names, nonce, version, known)
//! snapshot (watch) ─► cache::Cache::get (one generation per snapshot × proxy identity)
//!                 ─► resources::Generated (canonical bytes + content versions per resource)
//!                 ─► flush: CDS → EDS → LDS → RDS, only what changed ─► Envoy
//! ```
//!
//! - [`ack`]: ACK/NACK/stale classification (pure, table-tested).
//! - [`node`]: the proxy's identity from node metadata.
//! - [`canonical`]: deterministic encoding and versions.
//! - [`resources`]: encoded resources, views, SotW bodies, Delta diffs.
//! - [`cache`]: generation shared by identical proxies; memoised bodies and diffs.
//! - [`sotw`], [`delta`]: the protocol state machines.
//! - [`nds`]: the DNS name table (`istio.networking.nds.v1.NameTable`), SotW only, sent
//!   only to streams that ask for it (the agent's DNS proxy), after the Envoy types.
//! - [`stream`]: the per-stream task (I/O, `/debug/syncz` status, metrics).
//!
//! - [`grpc`]: the gRPC service, framing each response in its own allocation (tonic's
//!   encoder kept a buffer as large as a stream's largest response for the stream's life),
//!   materialised only when h2 asks for it and within a process-wide push budget of bytes.
//!
//! Start it with [`serve`] (or [`AdsServer::into_service`] to mount it on another tonic
//! server). Streams end when the shutdown future resolves, so a graceful shutdown does not
//! wait for proxies to disconnect.

pub mod ack;
pub mod cache;
pub use entryway_xds::canonical;
pub mod delta;
pub mod grpc;
pub mod limits;
pub mod nds;
pub mod node;
pub mod resources;
pub mod sotw;
pub mod stream;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

pub use cache::{Cache, GenerateHook, ProxyKey};
pub use resources::Kind;

use crate::shared::Shared;
use stream::{Context, Protocol};

/// Default xDS port (Istio's plaintext xDS port).
pub const DEFAULT_PORT: u16 = 15010;

/// Largest request accepted from a proxy. A Delta reconnect lists every resource it holds in
/// `initial_resource_versions`: 40,000 clusters with long names is a few MB, above tonic's
/// 4 MB default.
pub const MAX_REQUEST_BYTES: usize = 64 << 20;

/// Planned responses queued per stream before the stream task waits for the proxy to read.
/// They reference the generated resources (no copies); materialising them is bounded by the
/// push budget (see [`grpc::Budget`]).
const STREAM_QUEUE: usize = 16;

/// Errors of the ADS server.
#[derive(Debug, thiserror::Error)]
pub enum AdsError {
    /// Binding the listen address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("xDS server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Settings of the ADS server.
#[derive(Clone, Default)]
pub struct AdsOptions {
    /// See [`GenerateHook`]; `None` in production.
    pub generate_hook: Option<GenerateHook>,
    /// Who callers on the secure port are. Streams that arrive over TLS (with a
    /// [`PeerInfo`](crate::secure::PeerInfo)) are refused without one.
    pub authenticator: Option<crate::secure::Authenticator>,
    /// Connection and stream bounds (see [`limits`]).
    pub limits: limits::Limits,
}

/// How a stream's caller is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The plaintext port (loopback by default): the node's metadata is taken as it is, as
    /// Istio's 15010 does.
    Plaintext,
    /// The secure port: proven by a workload certificate or a join token; the node's
    /// metadata must agree with it.
    Authenticated {
        /// The caller.
        caller: crate::secure::Caller,
        /// Its address.
        remote: Option<SocketAddr>,
    },
}

/// The `AggregatedDiscoveryService` implementation.
#[derive(Clone)]
pub struct AdsServer {
    ctx: Arc<Context>,
    stop: watch::Receiver<bool>,
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl AdsServer {
    /// A server over `shared`; its streams end when `stop` becomes true.
    pub fn new(shared: Arc<Shared>, options: AdsOptions, stop: watch::Receiver<bool>) -> AdsServer {
        AdsServer {
            ctx: Arc::new(Context {
                shared,
                cache: Cache::new(options.generate_hook),
                auth: options.authenticator,
                budget: Arc::new(grpc::Budget::new(grpc::DEFAULT_PUSH_BUDGET)),
                next_conn: AtomicU64::new(1),
                first_request_timeout: options.limits.first_request_timeout,
            }),
            stop,
        }
    }

    /// With a push budget of `bytes` instead of [`grpc::DEFAULT_PUSH_BUDGET`] (see
    /// [`grpc::Budget`]). Call it before serving: streams already started keep the old one.
    pub fn with_push_budget(mut self, bytes: usize) -> AdsServer {
        let budget = Arc::new(grpc::Budget::new(bytes));
        match Arc::get_mut(&mut self.ctx) {
            Some(ctx) => ctx.budget = budget,
            None => tracing::warn!("the push budget cannot change once the server is shared"),
        }
        self
    }

    /// The push budget (benchmarks read its figures).
    pub fn budget(&self) -> Arc<grpc::Budget> {
        Arc::clone(&self.ctx.budget)
    }

    /// The generation cache (tests and benchmarks inspect it).
    pub fn cache(&self) -> &Cache {
        &self.ctx.cache
    }

    /// As a service for a tonic server, accepting requests up to [`MAX_REQUEST_BYTES`]; each
    /// response is framed in its own allocation (see [`grpc`]).
    pub fn into_service(self) -> grpc::AdsService {
        grpc::AdsService::new(self)
    }

    /// As tonic's generated service (tonic encodes the responses). Kept for comparison in
    /// benchmarks: it holds a buffer as large as each stream's largest response.
    pub fn into_tonic_service(self) -> AggregatedDiscoveryServiceServer<AdsServer> {
        AggregatedDiscoveryServiceServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    /// Who the caller of a stream is: plaintext when the request did not come over the
    /// secure port, else authenticated from its certificate or join token (a refusal is
    /// recorded and answered `UNAUTHENTICATED`).
    pub(crate) fn access(
        &self,
        extensions: &http::Extensions,
        headers: &http::HeaderMap,
    ) -> Result<Access, Status> {
        let Some(peer) = extensions.get::<crate::secure::PeerInfo>() else {
            return Ok(Access::Plaintext);
        };
        let remote = peer.remote;
        let result = match &self.ctx.auth {
            Some(auth) => auth.authenticate(Some(peer), headers),
            None => Err("the secure port has no authenticator configured".to_string()),
        };
        match result {
            Ok(caller) => Ok(Access::Authenticated { caller, remote }),
            Err(reason) => {
                self.ctx.shared.refuse(
                    "xds",
                    remote.map(|a| a.to_string()),
                    None,
                    None,
                    reason.clone(),
                );
                Err(Status::unauthenticated(reason))
            }
        }
    }

    /// Starts the task of one stream; its responses come out of the returned queue.
    fn spawn<P: Protocol>(
        &self,
        requests: Streaming<P::Req>,
        access: Access,
    ) -> mpsc::Receiver<stream::Outgoing<P::Pending>> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(stream::run::<P>(
            Arc::clone(&self.ctx),
            requests,
            access,
            tx,
            self.stop.clone(),
        ));
        rx
    }

    fn start<P: Protocol>(
        &self,
        request: Request<Streaming<P::Req>>,
    ) -> Result<ResponseStream<P::Resp>, Status> {
        let access = self.access(
            request.extensions(),
            &request.metadata().clone().into_headers(),
        )?;
        let shared = Arc::clone(&self.ctx.shared);
        Ok(Box::pin(tokio_stream::StreamExt::map(
            ReceiverStream::new(self.spawn::<P>(request.into_inner(), access)),
            move |out| {
                let started = out.started();
                let item = out.into_item().map(P::materialise);
                if item.is_ok() {
                    shared.metrics.push_time.observe(started.elapsed());
                }
                item
            },
        )))
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Ok(Response::new(self.start::<sotw::Sotw>(request)?))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(Response::new(self.start::<delta::Delta>(request)?))
    }
}

/// Binds `addr` (port 0 picks a free port; read it back with `local_addr()`).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AdsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AdsError::Bind { addr, source })
}

/// Serves ADS on `listener` until `shutdown` resolves; then ends every stream (proxies
/// reconnect elsewhere or later) and returns.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AdsError> {
    serve_with(listener, shared, AdsOptions::default(), shutdown).await
}

/// [`serve`] with options.
pub async fn serve_with(
    listener: TcpListener,
    shared: Arc<Shared>,
    options: AdsOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AdsError> {
    serve_ports(Some(listener), None, shared, options, shutdown).await
}

/// The secure port's parts: its listener, TLS settings and the certificate service.
pub struct SecurePort {
    /// The bound listener.
    pub listener: TcpListener,
    /// TLS (serving certificate, client certificate verification).
    pub tls: Arc<crate::secure::SecureListener>,
    /// `IstioCertificateService` (served only here, as istiod does).
    pub ca: crate::ca::service::CaService,
}

/// Serves ADS on the plaintext listener and ADS plus the certificate service on the secure
/// one, with one generation cache for both, until `shutdown` resolves. Streams on the secure
/// port are authenticated (see [`Access`]).
pub async fn serve_ports(
    plain: Option<TcpListener>,
    secure: Option<SecurePort>,
    shared: Arc<Shared>,
    options: AdsOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AdsError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Issue 11: connection and stream bounds on both ports (see `limits`).
    let conns = limits::Connections::new(options.limits, Arc::clone(&shared));
    let bounded = || {
        limits::builder(&options.limits).layer(tonic::service::InterceptorLayer::new(
            limits::interceptor(&conns),
        ))
    };
    let server = AdsServer::new(shared, options.clone(), stop_rx.clone());
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let plain = async {
        let Some(listener) = plain else {
            return Ok::<(), AdsError>(());
        };
        let incoming = limits::limit(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            Arc::clone(&conns),
            |io| io.peer_addr().ok(),
        );
        bounded()
            .add_service(server.clone().into_service())
            .serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone()))
            .await?;
        Ok(())
    };
    let secure = async {
        let Some(port) = secure else {
            return Ok::<(), AdsError>(());
        };
        let incoming = limits::limit(
            ReceiverStream::new(port.tls.incoming(port.listener)),
            Arc::clone(&conns),
            |conn| tonic::transport::server::Connected::connect_info(conn).remote,
        );
        bounded()
            .add_service(server.clone().into_service())
            .add_service(port.ca)
            .serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone()))
            .await?;
        Ok(())
    };
    let servers = async { tokio::try_join!(plain, secure).map(|_| ()) };
    tokio::pin!(servers);
    tokio::select! {
        // A server ended on its own: that is an error (the first one is returned).
        r = &mut servers => return r,
        _ = shutdown => {
            let _ = stop_tx.send(true);
        }
    }
    servers.await
}

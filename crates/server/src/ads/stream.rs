//! One ADS stream: the task that reads the proxy's requests, follows snapshots, and writes
//! responses, for either protocol.
//!
//! The protocol state machines ([`super::sotw::Sotw`], [`super::delta::Delta`]) are plain
//! data: they take requests and generated configurations and return responses and
//! [`Event`]s. This task does the I/O and turns events into `/debug/syncz` status, metrics and
//! logs.
//!
//! Memory: a push is *planned*, not materialised, here: a protocol's [`Protocol::plan`]
//! returns [`Protocol::Pending`] responses that reference the generated resources (shared by
//! every stream of the same proxy identity) instead of copying their bodies. The copy — the
//! response message and its gRPC frame — is made by the response body ([`super::grpc`]) when
//! h2 asks for the next frame, after taking that many bytes of the server's push budget
//! ([`super::grpc::Budget`]). So the queue of a stream ([`super::STREAM_QUEUE`] entries)
//! costs a few pointers per resource, and the materialised bytes of all streams together are
//! bounded by the budget (see its policy for proxies that stop reading).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use entryway_model::diag::Echo;
use entryway_model::registry::Proxy;
use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};
use tracing::{Instrument, debug, info, warn};

use super::cache::Cache;
use super::node::proxy_from_node;
use super::resources::{Generated, Kind};
use crate::shared::{ProxyStatus, Shared, TypeSync};

/// What a protocol state machine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A response was produced.
    Sent {
        /// Type.
        kind: Kind,
        /// SotW `version_info` / Delta `system_version_info`.
        version: String,
        /// Nonce.
        nonce: String,
        /// Resources in it.
        resources: usize,
        /// Removed names in it (Delta).
        removed: usize,
    },
    /// The latest response of `kind` was accepted.
    Ack {
        /// Type.
        kind: Kind,
        /// Its nonce.
        nonce: String,
    },
    /// The latest response of `kind` was rejected.
    Nack {
        /// Type.
        kind: Kind,
        /// Its nonce.
        nonce: String,
        /// Envoy's error message.
        message: String,
    },
    /// A request answering an older response (ignored).
    Stale {
        /// Type.
        kind: Kind,
        /// The old nonce.
        nonce: String,
    },
    /// A request for a type Entryway does not serve (ignored).
    UnknownType(String),
}

/// A queued response (not yet materialised), or the error that ends the stream.
pub struct Outgoing<T> {
    item: Result<T, Status>,
    /// What caused the push (a request, or a snapshot seen by this stream): the push time
    /// is measured from here to the response being handed to the transport.
    since: Instant,
}

impl<T> Outgoing<T> {
    fn new(item: Result<T, Status>) -> Outgoing<T> {
        Outgoing {
            item,
            since: Instant::now(),
        }
    }

    fn since(mut self, since: Instant) -> Outgoing<T> {
        self.since = since;
        self
    }

    /// When the push began (see the field).
    pub fn started(&self) -> Instant {
        self.since
    }

    /// The planned response or the error.
    pub fn into_item(self) -> Result<T, Status> {
        self.item
    }
}

/// A protocol state machine.
pub trait Protocol: Default + Send + 'static {
    /// Request message.
    type Req: prost::Message + Default + Send + 'static;
    /// Response message.
    type Resp: prost::Message + Send + 'static;
    /// A planned response: what goes into it, by reference to the generated resources.
    type Pending: Send + Unpin + 'static;
    /// `sotw` or `delta`.
    const NAME: &'static str;
    /// The node of a request.
    fn node(req: &Self::Req) -> Option<&Node>;
    /// Applies a request.
    fn on_request(&mut self, req: Self::Req, cache: &Cache, events: &mut Vec<Event>);
    /// The responses due now (in push order) for `generated`, planned: the state machine is
    /// updated (nonces, versions, events) as if they were sent.
    fn plan(
        &mut self,
        generated: &Generated,
        cache: &Cache,
        events: &mut Vec<Event>,
    ) -> Vec<Self::Pending>;
    /// An upper bound of the encoded size of `pending` (the budget it takes).
    fn size_hint(pending: &Self::Pending) -> usize;
    /// The response message of `pending`.
    fn materialise(pending: Self::Pending) -> Self::Resp;
    /// [`Protocol::plan`], materialised.
    fn flush(
        &mut self,
        generated: &Generated,
        cache: &Cache,
        events: &mut Vec<Event>,
    ) -> Vec<Self::Resp> {
        self.plan(generated, cache, events)
            .into_iter()
            .map(Self::materialise)
            .collect()
    }
}

/// What every stream shares.
pub struct Context {
    /// Status and metrics.
    pub shared: Arc<Shared>,
    /// Generation results.
    pub cache: Cache,
    /// Bytes of responses materialised and not yet written, across streams.
    pub budget: Arc<super::grpc::Budget>,
    /// Who callers on the secure port are.
    pub auth: Option<crate::secure::Authenticator>,
    /// Connection ids.
    pub next_conn: AtomicU64,
    /// How long a new stream may take to send its first request.
    pub first_request_timeout: std::time::Duration,
}

/// Removes the stream's status on every exit path.
struct Registration {
    shared: Arc<Shared>,
    conn: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut p) = self.shared.proxies.lock() {
            p.remove(&self.conn);
        }
        self.shared.metrics.proxies_delta(-1);
    }
}

/// Convergence bookkeeping: a push caused by a snapshot is converged when every response it
/// produced is ACKed.
#[derive(Default)]
struct Convergence {
    /// (snapshot version, when it was first seen) of the push being tracked.
    pending: Option<Instant>,
    /// Nonce still awaiting an answer, per type.
    outstanding: [Option<String>; 4],
    nacked: bool,
}

/// Runs one stream until the proxy goes away, the snapshot publisher is gone, or `stop`
/// fires.
pub async fn run<P: Protocol>(
    ctx: Arc<Context>,
    mut requests: Streaming<P::Req>,
    access: super::Access,
    tx: mpsc::Sender<Outgoing<P::Pending>>,
    mut stop: watch::Receiver<bool>,
) {
    let first = tokio::select! {
        r = tokio::time::timeout(ctx.first_request_timeout, requests.message()) => match r {
            Ok(r) => r,
            Err(_) => {
                let status = Status::deadline_exceeded(format!(
                    "no DiscoveryRequest within {} ms of opening the stream",
                    ctx.first_request_timeout.as_millis()
                ));
                refuse_stream::<P>(&ctx, &tx, status).await;
                return;
            }
        },
        _ = stop.changed() => return,
    };
    let first = match first {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(status) => {
            refuse_stream::<P>(&ctx, &tx, request_error(status)).await;
            return;
        }
    };
    if let Err(status) = check_node(P::node(&first)) {
        refuse_stream::<P>(&ctx, &tx, status).await;
        return;
    }
    let (mut proxy, warnings) = proxy_from_node(P::node(&first));
    let mut identity = None;
    if let super::Access::Authenticated { caller, remote } = &access {
        let claims = super::node::claims_namespace(P::node(&first));
        if let Err(reason) = super::node::authorize(&mut proxy, claims, &caller.identity) {
            ctx.shared.refuse(
                "xds",
                remote.map(|a| a.to_string()),
                Some(&proxy.id),
                Some(caller.identity.uri()),
                reason.clone(),
            );
            let _ = tx
                .send(Outgoing::new(Err(Status::permission_denied(reason))))
                .await;
            return;
        }
        identity = Some(caller.identity.uri());
    }
    let conn = ctx.next_conn.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("ads", conn, node = %Echo(&proxy.id), protocol = P::NAME);
    async move {
        for w in &warnings {
            // The warning quotes the proxy's value, which may be of any size.
            warn!(warning = %entryway_model::diag::bounded_middle(&w.to_string(), entryway_model::diag::MAX_MESSAGE), "ignoring a node metadata value");
        }
        let _registration = register(&ctx.shared, conn, &proxy, P::NAME, identity);
        info!(namespace = %Echo(&proxy.namespace), "proxy connected");
        let mut driver = Driver::<P> {
            ctx: Arc::clone(&ctx),
            conn,
            proxy,
            tx,
            state: P::default(),
            events: Vec::new(),
            convergence: Convergence::default(),
        };
        let connected_at = Instant::now();
        let mut snapshots = ctx.shared.snapshot.clone();
        let mut snapshot = snapshots.borrow_and_update().clone();
        let mut generated = match ctx.cache.get(&snapshot, &driver.proxy).await {
            Ok(g) => g,
            Err(e) => {
                warn!(error = %e, "cannot generate the proxy's configuration");
                let _ = driver.tx.send(Outgoing::new(Err(Status::internal(e.to_string())))).await;
                return;
            }
        };
        driver.state.on_request(first, &ctx.cache, &mut driver.events);
        if !driver.flush(&generated, None, connected_at).await {
            return;
        }
        let mut publisher_alive = true;
        // Watches the queue (a clone of the sender shares its capacity).
        let queue = driver.tx.clone();
        loop {
            tokio::select! {
                r = requests.message() => match r {
                    Ok(Some(req)) => {
                        let received = Instant::now();
                        driver.state.on_request(req, &ctx.cache, &mut driver.events);
                        if !driver.flush(&generated, None, received).await {
                            break;
                        }
                    }
                    Ok(None) => {
                        info!("proxy closed the stream");
                        break;
                    }
                    Err(status) => {
                        let status = request_error(status);
                        if status.code() == tonic::Code::Cancelled || status.code() == tonic::Code::Unknown {
                            // The proxy went away (reset, connection closed): nothing to tell it.
                            info!(status = %Echo(status.message()), "stream ended");
                        } else {
                            refuse_stream::<P>(&ctx, &driver.tx, status).await;
                        }
                        break;
                    }
                },
                // A new snapshot is planned only once the previous push has left the queue:
                // a proxy that does not read costs no planning per change, and when it
                // catches up it gets one push of the latest snapshot (both protocols send
                // the current state, not each change in between).
                changed = async {
                    let _empty = queue.reserve_many(super::STREAM_QUEUE).await;
                    snapshots.changed().await
                }, if publisher_alive => {
                    if changed.is_err() {
                        // No more snapshots: keep serving the last one.
                        publisher_alive = false;
                        continue;
                    }
                    snapshot = snapshots.borrow_and_update().clone();
                    let seen = ctx.cache.first_seen(snapshot.version);
                    let started = Instant::now();
                    match ctx.cache.get(&snapshot, &driver.proxy).await {
                        Ok(g) => generated = g,
                        Err(e) => {
                            warn!(error = %e, version = snapshot.version, "cannot generate the proxy's configuration; keeping the last one");
                            continue;
                        }
                    }
                    let track = (seen >= connected_at).then_some(seen);
                    if !driver.flush(&generated, track, started).await {
                        break;
                    }
                }
                _ = stop.changed() => {
                    let _ = driver.tx.send(Outgoing::new(Err(Status::unavailable("control plane shutting down")))).await;
                    break;
                }
            }
        }
    }
    .instrument(span)
    .await;
}

/// Longest node id accepted: Istio's are about a hundred bytes; a larger one is a broken or
/// hostile client, and would be echoed into every log line of its stream.
pub const MAX_NODE_ID: usize = 1024;

/// The first request must name its node (Istio refuses a stream without one).
fn check_node(node: Option<&Node>) -> Result<(), Status> {
    match node {
        None => Err(Status::invalid_argument(
            "the first request of a stream carries no node; Envoy's node (id, metadata) is required",
        )),
        Some(n) if n.id.trim().is_empty() => Err(Status::invalid_argument(
            "the first request of a stream has an empty node id",
        )),
        Some(n) if n.id.len() > MAX_NODE_ID => Err(Status::invalid_argument(format!(
            "node id of {} bytes is longer than {MAX_NODE_ID} ({})",
            n.id.len(),
            Echo(&n.id)
        ))),
        Some(_) => Ok(()),
    }
}

/// The status a request error ends the stream with: an over-long message is
/// RESOURCE_EXHAUSTED (gRPC's code for a message larger than the limit; tonic says
/// OUT_OF_RANGE), an undecodable one INTERNAL (as gRPC libraries answer a request that does
/// not parse); the message is bounded (it may quote input).
fn request_error(status: Status) -> Status {
    let message = entryway_model::diag::bounded(status.message(), 512).into_owned();
    match status.code() {
        tonic::Code::OutOfRange => Status::resource_exhausted(message),
        code => Status::new(code, message),
    }
}

/// Ends the stream with `status` (sent as its trailers), logged and counted.
async fn refuse_stream<P: Protocol>(
    ctx: &Context,
    tx: &mpsc::Sender<Outgoing<P::Pending>>,
    status: Status,
) {
    warn!(
        protocol = P::NAME,
        code = ?status.code(),
        reason = %Echo(status.message()),
        "ending an xDS stream for a bad request"
    );
    ctx.shared
        .metrics
        .bad_requests
        .add(&format!("{:?}", status.code()), 1);
    let _ = tx.send(Outgoing::new(Err(status))).await;
}

fn register(
    shared: &Arc<Shared>,
    conn: u64,
    proxy: &Proxy,
    protocol: &str,
    identity: Option<String>,
) -> Registration {
    shared.metrics.proxies_delta(1);
    if let Ok(mut p) = shared.proxies.lock() {
        p.insert(
            conn,
            (
                proxy.clone(),
                ProxyStatus {
                    node_id: proxy.id.clone(),
                    protocol: protocol.to_string(),
                    namespace: proxy.namespace.clone(),
                    identity,
                    snapshot_version: 0,
                    types: Default::default(),
                },
            ),
        );
    }
    Registration {
        shared: Arc::clone(shared),
        conn,
    }
}

struct Driver<P: Protocol> {
    ctx: Arc<Context>,
    conn: u64,
    proxy: Proxy,
    tx: mpsc::Sender<Outgoing<P::Pending>>,
    state: P,
    events: Vec<Event>,
    convergence: Convergence,
}

impl<P: Protocol> Driver<P> {
    /// Sends what is due and records the events; `track` starts convergence tracking of a
    /// push caused by a snapshot first seen at that instant; `since` is when what caused
    /// the push happened (for the push time). False when the proxy is gone.
    async fn flush(
        &mut self,
        generated: &Arc<Generated>,
        track: Option<Instant>,
        since: Instant,
    ) -> bool {
        let responses = self
            .state
            .plan(generated, &self.ctx.cache, &mut self.events);
        if track.is_some() && !responses.is_empty() {
            self.convergence.pending = track;
            self.convergence.nacked = false;
        }
        self.apply_events(generated.snapshot_version);
        for r in responses {
            if self
                .tx
                .send(Outgoing::new(Ok(r)).since(since))
                .await
                .is_err()
            {
                debug!("proxy went away while sending");
                return false;
            }
        }
        true
    }

    fn apply_events(&mut self, snapshot_version: u64) {
        if self.events.is_empty() {
            return;
        }
        let metrics = &self.ctx.shared.metrics;
        let mut proxies = self.ctx.shared.proxies.lock().ok();
        let mut status = proxies.as_mut().and_then(|p| p.get_mut(&self.conn));
        for e in self.events.drain(..) {
            match e {
                Event::Sent {
                    kind,
                    version,
                    nonce,
                    resources,
                    removed,
                } => {
                    metrics.pushes.add(kind.label(), 1);
                    debug!(r#type = kind.label(), %version, %nonce, resources, removed, "sent");
                    self.convergence.outstanding[kind.index()] = Some(nonce.clone());
                    if let Some((_, s)) = status.as_deref_mut() {
                        s.snapshot_version = snapshot_version;
                        let t = s.types.entry(kind.type_url().to_string()).or_default();
                        t.sent_version = version;
                        t.sent_nonce = nonce;
                        t.resources = resources;
                        t.last_nack = None;
                    }
                }
                Event::Ack { kind, nonce } => {
                    debug!(r#type = kind.label(), %nonce, "ack");
                    self.convergence.outstanding[kind.index()] = None;
                    if let Some((_, s)) = status.as_deref_mut() {
                        let t: &mut TypeSync =
                            s.types.entry(kind.type_url().to_string()).or_default();
                        t.acked_version = t.sent_version.clone();
                        t.last_nack = None;
                    }
                }
                Event::Nack {
                    kind,
                    nonce,
                    message,
                } => {
                    metrics.nacks.add(kind.label(), 1);
                    // Envoy's error detail quotes the resources; a proxy may send anything.
                    let message = entryway_model::diag::bounded_middle(
                        &message,
                        entryway_model::diag::MAX_MESSAGE,
                    )
                    .into_owned();
                    warn!(r#type = kind.label(), nonce = %Echo(&nonce), error = %message, "proxy rejected the configuration; it keeps its last accepted one");
                    self.convergence.outstanding[kind.index()] = None;
                    self.convergence.nacked = true;
                    if let Some((_, s)) = status.as_deref_mut() {
                        let t = s.types.entry(kind.type_url().to_string()).or_default();
                        t.last_nack = Some(message);
                    }
                }
                Event::Stale { kind, nonce } => {
                    debug!(r#type = kind.label(), %nonce, "ignoring a request with a stale nonce");
                }
                Event::UnknownType(url) => {
                    debug!(type_url = %url, "ignoring a request for a type Entryway does not serve");
                }
            }
        }
        drop(proxies);
        let c = &mut self.convergence;
        if let Some(seen) = c.pending
            && c.outstanding.iter().all(Option::is_none)
        {
            if !c.nacked {
                metrics.convergence_time.observe(seen.elapsed());
            }
            c.pending = None;
        }
    }
}

//! One ADS stream: the task that reads the proxy's requests, follows snapshots, and writes
//! responses, for either protocol.
//!
//! The protocol state machines ([`super::sotw::Sotw`], [`super::delta::Delta`]) are plain
//! data: they take requests and generated configurations and return responses and
//! [`Event`]s. This task does the I/O and turns events into `/debug/syncz` status, metrics and
//! logs.
//!
//! Memory: a push is materialised (every resource body copied into the response messages)
//! before it is queued for tonic to encode, so 1,000 streams pushing a full configuration at
//! once would hold 1,000 copies of it (3 MB each at 1,000 ServiceEntries, 30 MB at 10,000).
//! A process-wide [`PUSH_SLOTS`] semaphore bounds that: a stream takes a slot before
//! materialising a push and the slot travels with the push's last response, released when
//! tonic takes that response from the queue to encode it. A stream that cannot get a slot
//! within [`PUSH_SLOT_WAIT`] (other streams' proxies not reading) pushes without one, so a
//! stuck proxy delays the others by at most that.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use entryway_model::registry::Proxy;
use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::{Semaphore, SemaphorePermit, mpsc, watch};
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

/// Streams that may hold a materialised, not yet encoded push at the same time.
pub const PUSH_SLOTS: usize = 32;
/// The longest a stream waits for a push slot before pushing without one.
pub const PUSH_SLOT_WAIT: Duration = Duration::from_secs(1);
static PUSHING: Semaphore = Semaphore::const_new(PUSH_SLOTS);

/// A queued response, holding its push's slot when it is the push's last response.
pub struct Outgoing<R> {
    item: Result<R, Status>,
    _slot: Option<SemaphorePermit<'static>>,
}

impl<R> Outgoing<R> {
    fn new(item: Result<R, Status>) -> Outgoing<R> {
        Outgoing { item, _slot: None }
    }

    /// The response (releasing the slot).
    pub fn into_item(self) -> Result<R, Status> {
        self.item
    }
}

/// A protocol state machine.
pub trait Protocol: Default + Send + 'static {
    /// Request message.
    type Req: prost::Message + Default + Send + 'static;
    /// Response message.
    type Resp: prost::Message + Send + 'static;
    /// `sotw` or `delta`.
    const NAME: &'static str;
    /// The node of a request.
    fn node(req: &Self::Req) -> Option<&Node>;
    /// Applies a request.
    fn on_request(&mut self, req: Self::Req, cache: &Cache, events: &mut Vec<Event>);
    /// The responses due now (in push order) for `generated`.
    fn flush(
        &mut self,
        generated: &Generated,
        cache: &Cache,
        events: &mut Vec<Event>,
    ) -> Vec<Self::Resp>;
}

/// What every stream shares.
pub struct Context {
    /// Status and metrics.
    pub shared: Arc<Shared>,
    /// Generation results.
    pub cache: Cache,
    /// Connection ids.
    pub next_conn: AtomicU64,
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
    tx: mpsc::Sender<Outgoing<P::Resp>>,
    mut stop: watch::Receiver<bool>,
) {
    let first = tokio::select! {
        r = requests.message() => r,
        _ = stop.changed() => return,
    };
    let first = match first {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(status) => {
            debug!(protocol = P::NAME, %status, "stream failed before its first request");
            return;
        }
    };
    let (proxy, warnings) = proxy_from_node(P::node(&first));
    let conn = ctx.next_conn.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("ads", conn, node = %proxy.id, protocol = P::NAME);
    async move {
        for w in &warnings {
            warn!(warning = %w, "ignoring a node metadata value");
        }
        let _registration = register(&ctx.shared, conn, &proxy, P::NAME);
        info!(namespace = %proxy.namespace, "proxy connected");
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
        if !driver.flush(&generated, None).await {
            return;
        }
        let mut publisher_alive = true;
        loop {
            tokio::select! {
                r = requests.message() => match r {
                    Ok(Some(req)) => {
                        driver.state.on_request(req, &ctx.cache, &mut driver.events);
                        if !driver.flush(&generated, None).await {
                            break;
                        }
                    }
                    Ok(None) => {
                        info!("proxy closed the stream");
                        break;
                    }
                    Err(status) => {
                        info!(%status, "stream ended");
                        break;
                    }
                },
                changed = snapshots.changed(), if publisher_alive => {
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
                    if !driver.flush(&generated, track).await {
                        break;
                    }
                    ctx.shared.metrics.push_time.observe(started.elapsed());
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

fn register(shared: &Arc<Shared>, conn: u64, proxy: &Proxy, protocol: &str) -> Registration {
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
    tx: mpsc::Sender<Outgoing<P::Resp>>,
    state: P,
    events: Vec<Event>,
    convergence: Convergence,
}

impl<P: Protocol> Driver<P> {
    /// Sends what is due and records the events; `track` starts convergence tracking of a
    /// push caused by a snapshot first seen at that instant. False when the proxy is gone.
    async fn flush(&mut self, generated: &Arc<Generated>, track: Option<Instant>) -> bool {
        let mut slot = tokio::time::timeout(PUSH_SLOT_WAIT, PUSHING.acquire())
            .await
            .ok()
            .and_then(Result::ok);
        let responses = self
            .state
            .flush(generated, &self.ctx.cache, &mut self.events);
        if track.is_some() && !responses.is_empty() {
            self.convergence.pending = track;
            self.convergence.nacked = false;
        }
        self.apply_events(generated.snapshot_version);
        let last = responses.len().saturating_sub(1);
        for (i, r) in responses.into_iter().enumerate() {
            let out = Outgoing {
                item: Ok(r),
                _slot: if i == last { slot.take() } else { None },
            };
            if self.tx.send(out).await.is_err() {
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
                    warn!(r#type = kind.label(), %nonce, error = %message, "proxy rejected the configuration; it keeps its last accepted one");
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

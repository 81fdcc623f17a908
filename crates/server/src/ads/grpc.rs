//! The ADS gRPC service with Entryway's own response framing.
//!
//! Why not tonic's generated server: tonic 0.14 encodes every response of a stream into one
//! per-stream `BytesMut` and hands out `split_to(..).freeze()` slices of it. The slices share
//! the allocation with the buffer's unused tail, which the stream keeps while it is idle, and
//! `BytesMut::reserve` on a buffer whose front was split off grows it by doubling *including*
//! the dead front. A stream that once sent a large response (the outbound listener is 0.4 MB
//! at 1,000 ServiceEntries, 1.2 MB at 3,000; a SotW CDS response is the whole CDS) therefore
//! held an allocation of one to three times that for its whole life: measured with jemalloc's
//! heap profile, 83% of the control plane's live heap after the fan-out bench's initial sync
//! (3 MB per stream at 3,000 ServiceEntries), all under tonic's `encode_item`.
//!
//! Here every response is encoded into its own exactly sized allocation (5-byte gRPC prefix +
//! message), which h2 drops once it has written it; an idle stream holds no response bytes.
//! Requests are still decoded by tonic's [`Streaming`] (they are small), and the protocol
//! logic is unchanged ([`super::stream::run`]).
//!
//! # Push budget
//!
//! The stream task queues *planned* responses ([`Protocol::Pending`]: pointers to the
//! generated resources). A response is materialised (message, then frame) only when h2 asks
//! the body for its next frame — which hyper does only when the stream has send capacity
//! (flow-control window and room in h2's per-stream send buffer, 400 KiB by default) — and
//! only after taking its size from the process's [`Budget`] of bytes. The frame carries the
//! reservation and gives it back when h2 drops it: once its last byte is written to the
//! socket, or when the stream or connection ends (h2 discards what it had buffered). So the
//! bytes of materialised, unwritten responses across all streams stay within the budget
//! (a response larger than the whole budget takes all of it, alone).
//!
//! Policy for proxies that stop reading (slow-reader isolation): a frame that is still
//! unwritten [`SLOW_READER`] after it was materialised marks its stream as a slow reader.
//! When a response has to wait for budget, the reservations of slow readers are taken out
//! of the budget ([`Budget::evictions`]: their bytes still count in [`Budget::held`], not
//! against the others), so a push to a healthy proxy never waits behind another proxy's
//! unread frames for longer than that. A slow reader itself gets no new reservation until
//! its unwritten frames are written (or its stream ends): what it holds outside the budget
//! is bounded by the frames it took before it was found slow — for a proxy that does not
//! read at all, the one response h2 had room for. Between readers, streams wait for budget
//! in FIFO order (load: everyone is served, the budget bounds memory).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http_body::Frame;
use prost::Message;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tonic::body::Body;
use tonic::codec::{Codec, Streaming};
use tonic::server::NamedService;
use tonic::{Code, Status};

use super::stream::{Outgoing, Protocol};
use super::{AdsServer, MAX_REQUEST_BYTES};

/// gRPC service name.
pub const SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
/// Path of the SotW method.
pub const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
/// Path of the Delta method.
pub const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The ADS service, mountable on a tonic server (`add_service`).
#[derive(Clone)]
pub struct AdsService {
    server: AdsServer,
}

impl AdsService {
    pub(super) fn new(server: AdsServer) -> AdsService {
        AdsService { server }
    }
}

impl NamedService for AdsService {
    const NAME: &'static str = SERVICE;
}

impl tower_service::Service<http::Request<Body>> for AdsService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let response = match req.uri().path() {
            SOTW_PATH => respond::<super::sotw::Sotw>(&self.server, req),
            DELTA_PATH => respond::<super::delta::Delta>(&self.server, req),
            other => {
                Status::unimplemented(format!("{other}: not an ADS method")).into_http::<Body>()
            }
        };
        ready(Ok(response))
    }
}

fn respond<P: Protocol>(server: &AdsServer, req: http::Request<Body>) -> http::Response<Body> {
    let access = match server.access(req.extensions(), req.headers()) {
        Ok(a) => a,
        Err(status) => return status.into_http::<Body>(),
    };
    let decoder = tonic_prost::ProstCodec::<P::Resp, P::Req>::default().decoder();
    let requests = Streaming::new_request(decoder, req.into_body(), None, Some(MAX_REQUEST_BYTES));
    let rx = server.spawn::<P>(requests, access);
    let mut response = http::Response::new(Body::new(ResponseBody::<P> {
        rx,
        budget: server.budget(),
        hold: Arc::new(StreamHold::default()),
        shared: Arc::clone(&server.ctx.shared),
        waiting: None,
        done: false,
    }));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// Default size of the push budget.
pub const DEFAULT_PUSH_BUDGET: usize = 64 << 20;
/// A frame unwritten this long after it was materialised marks its stream as a slow reader
/// (a healthy proxy on loopback writes a response in well under a millisecond; this leaves
/// room for a busy machine).
pub const SLOW_READER: Duration = Duration::from_millis(500);
/// How often a response waiting for budget looks for slow readers to take out of it.
const EVICT_CHECK: Duration = Duration::from_millis(20);
/// Budget accounting unit (the semaphore counts KiB so that any response fits its `u32`).
const UNIT: usize = 1 << 10;

/// What one stream holds of the budget.
#[derive(Debug, Default)]
pub struct StreamHold {
    unwritten: AtomicUsize,
    slow: AtomicBool,
    written: Notify,
}

impl StreamHold {
    /// Frames of the stream materialised and not yet written.
    pub fn unwritten(&self) -> usize {
        self.unwritten.load(Ordering::Relaxed)
    }

    /// Whether the stream was found to be a slow reader and has not caught up since.
    pub fn is_slow(&self) -> bool {
        self.slow.load(Ordering::Relaxed)
    }
}

struct Holder {
    since: Instant,
    bytes: usize,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    stream: Arc<StreamHold>,
}

/// Bytes of responses materialised and not yet written, shared by all streams (see the
/// module comment for the policy).
pub struct Budget {
    permits: Arc<Semaphore>,
    units: u32,
    held: AtomicUsize,
    peak: AtomicUsize,
    evicted: AtomicUsize,
    evictions: AtomicU64,
    holders: Mutex<HashMap<u64, Arc<Holder>>>,
    next_id: AtomicU64,
}

impl Budget {
    /// A budget of `bytes` (at least 1 MiB).
    pub fn new(bytes: usize) -> Budget {
        let units = u32::try_from(bytes.max(1 << 20) / UNIT).unwrap_or(u32::MAX >> 4);
        Budget {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
            held: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            evicted: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
            holders: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// The budget's size in bytes.
    pub fn capacity(&self) -> usize {
        self.units as usize * UNIT
    }

    /// Bytes reserved now (including those of slow readers, taken out of the budget).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Bytes held by slow readers outside the budget now.
    pub fn held_by_slow_readers(&self) -> usize {
        self.evicted.load(Ordering::Relaxed)
    }

    /// The most bytes reserved at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Reservations taken out of the budget because their stream reads too slowly.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    fn holders(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Holder>>> {
        match self.holders.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Takes the reservations older than [`SLOW_READER`] out of the budget. Returns how many.
    fn evict_slow(&self) -> usize {
        let mut n = 0;
        for h in self.holders().values() {
            if h.since.elapsed() < SLOW_READER {
                continue;
            }
            let taken = match h.permit.lock() {
                Ok(mut p) => p.take(),
                Err(p) => p.into_inner().take(),
            };
            if taken.is_some() {
                n += 1;
                self.evicted.fetch_add(h.bytes, Ordering::Relaxed);
                self.evictions.fetch_add(1, Ordering::Relaxed);
                h.stream.slow.store(true, Ordering::Relaxed);
            }
        }
        if n > 0 {
            tracing::debug!(
                reservations = n,
                "slow readers taken out of the push budget"
            );
        }
        n
    }

    /// Reserves `bytes` (all of the budget if it is larger) for a frame of `stream`,
    /// waiting as the module comment says.
    pub async fn reserve(self: Arc<Self>, bytes: usize, stream: Arc<StreamHold>) -> Reservation {
        let units = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.units);
        let permit = loop {
            // A slow reader gets nothing more until what it holds is written.
            loop {
                let written = stream.written.notified();
                if !stream.is_slow() || stream.unwritten() == 0 {
                    break;
                }
                written.await;
            }
            stream.slow.store(false, Ordering::Relaxed);
            if let Ok(p) = Arc::clone(&self.permits).try_acquire_many_owned(units) {
                break Some(p);
            }
            self.evict_slow();
            let acquire = Arc::clone(&self.permits).acquire_many_owned(units);
            tokio::pin!(acquire);
            let got = loop {
                tokio::select! {
                    p = &mut acquire => break Some(p.ok()),
                    _ = tokio::time::sleep(EVICT_CHECK) => {
                        self.evict_slow();
                        // Found slow itself while waiting: back to waiting for its writes.
                        if stream.is_slow() && stream.unwritten() > 0 {
                            break None;
                        }
                    }
                }
            };
            match got {
                // Found slow by another stream while it waited: give the budget back.
                Some(_) if stream.is_slow() && stream.unwritten() > 0 => continue,
                Some(p) => break p,
                None => continue,
            }
        };
        let held = self.held.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(held, Ordering::Relaxed);
        stream.unwritten.fetch_add(1, Ordering::Relaxed);
        let holder = Arc::new(Holder {
            since: Instant::now(),
            bytes,
            permit: Mutex::new(permit),
            stream,
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.holders().insert(id, Arc::clone(&holder));
        Reservation {
            budget: self,
            id,
            holder,
        }
    }
}

/// Bytes of a [`Budget`], given back on drop.
pub struct Reservation {
    budget: Arc<Budget>,
    id: u64,
    holder: Arc<Holder>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.holders().remove(&self.id);
        let permit = match self.holder.permit.lock() {
            Ok(mut p) => p.take(),
            Err(p) => p.into_inner().take(),
        };
        if permit.is_none() {
            // Taken out of the budget earlier: it was counted as a slow reader's.
            self.budget
                .evicted
                .fetch_sub(self.holder.bytes, Ordering::Relaxed);
        }
        drop(permit);
        self.budget
            .held
            .fetch_sub(self.holder.bytes, Ordering::Relaxed);
        let stream = &self.holder.stream;
        stream.unwritten.fetch_sub(1, Ordering::Relaxed);
        stream.written.notify_waiters();
    }
}

/// A frame's bytes with the budget they hold, released when h2 drops the frame.
struct Reserved {
    bytes: Vec<u8>,
    _reservation: Reservation,
}

impl AsRef<[u8]> for Reserved {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

type Reserving = Pin<Box<dyn Future<Output = Reservation> + Send>>;

/// The response stream: one DATA frame per queued response (materialised when h2 asks for
/// it, within the budget, each in its own allocation), then the trailers (`grpc-status`)
/// when the stream task ends or reports an error.
struct ResponseBody<P: Protocol> {
    rx: mpsc::Receiver<Outgoing<P::Pending>>,
    budget: Arc<Budget>,
    /// This stream's share of the budget.
    hold: Arc<StreamHold>,
    /// Metrics (the push time is observed as each response is handed to h2).
    shared: Arc<crate::shared::Shared>,
    /// A response waiting for its reservation, and when its push began.
    waiting: Option<(P::Pending, Reserving, Instant)>,
    done: bool,
}

impl<P: Protocol> http_body::Body for ResponseBody<P> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.waiting.is_none() {
            match this.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(out)) => {
                    let started = out.started();
                    match out.into_item() {
                        Ok(pending) => {
                            let bytes = 5 + P::size_hint(&pending);
                            let reserving = Box::pin(
                                Arc::clone(&this.budget).reserve(bytes, Arc::clone(&this.hold)),
                            );
                            this.waiting = Some((pending, reserving, started));
                        }
                        Err(status) => return this.end(&status),
                    }
                }
                Poll::Ready(None) => return this.end(&Status::ok("")),
            }
        }
        let Some((_, reserving, _)) = this.waiting.as_mut() else {
            return Poll::Pending;
        };
        let reservation = match reserving.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        let Some((pending, _, started)) = this.waiting.take() else {
            return Poll::Pending;
        };
        match encode_vec(&P::materialise(pending)) {
            Ok(bytes) => {
                // Every response is one push observed: the count matches
                // `entryway_pushes_total` once the queues are empty.
                this.shared.metrics.push_time.observe(started.elapsed());
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_owner(Reserved {
                    bytes,
                    _reservation: reservation,
                })))))
            }
            Err(status) => this.end(&status),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

impl<P: Protocol> ResponseBody<P> {
    fn end(&mut self, status: &Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.done = true;
        Poll::Ready(Some(Ok(Frame::trailers(trailers(status)))))
    }
}

/// `m` as one length-prefixed gRPC message (uncompressed), in an allocation of exactly its
/// size.
pub fn encode_message<M: Message>(m: &M) -> Result<Bytes, Status> {
    encode_vec(m).map(Bytes::from)
}

fn encode_vec<M: Message>(m: &M) -> Result<Vec<u8>, Status> {
    let len = m.encoded_len();
    let prefix = u32::try_from(len).map_err(|_| {
        Status::resource_exhausted(format!(
            "a response of {len} bytes exceeds gRPC's 4 GiB message limit"
        ))
    })?;
    let mut buf = Vec::with_capacity(5 + len);
    buf.push(0);
    buf.extend_from_slice(&prefix.to_be_bytes());
    m.encode(&mut buf)
        .map_err(|e| Status::internal(format!("encoding a response: {e}")))?;
    Ok(buf)
}

fn trailers(status: &Status) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        // Unrepresentable metadata: the code alone.
        map.clear();
        map.insert("grpc-status", HeaderValue::from(status.code() as i32));
    }
    if status.code() == Code::Ok {
        map.remove("grpc-message");
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;

    #[test]
    fn a_message_is_framed_exactly() {
        let m = DeltaDiscoveryResponse {
            nonce: "n".repeat(300),
            ..Default::default()
        };
        let b = encode_message(&m).expect("encodes");
        assert_eq!(b.len(), 5 + m.encoded_len());
        assert_eq!(b[0], 0, "uncompressed");
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        assert_eq!(len, m.encoded_len());
        let back = DeltaDiscoveryResponse::decode(&b[5..]).expect("decodes");
        assert_eq!(back, m);
    }

    #[test]
    fn trailers_carry_the_status() {
        let t = trailers(&Status::ok(""));
        assert_eq!(t.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]));
        let t = trailers(&Status::unavailable("shutting down"));
        assert_eq!(t.get("grpc-status").map(|v| v.as_bytes()), Some(&b"14"[..]));
        assert!(t.get("grpc-message").is_some());
    }

    /// Polls `f` once.
    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let waker = std::task::Waker::noop();
        Pin::new(f).poll(&mut Context::from_waker(waker))
    }

    const KIB: usize = 1 << 10;

    fn hold() -> Arc<StreamHold> {
        Arc::new(StreamHold::default())
    }

    #[tokio::test]
    async fn a_reservation_waits_for_released_bytes() {
        let budget = Arc::new(Budget::new(1 << 20));
        let first = Arc::clone(&budget).reserve(700 * KIB, hold()).await;
        let mut second = Box::pin(Arc::clone(&budget).reserve(500 * KIB, hold()));
        assert!(poll_once(&mut second).is_pending(), "only 324 KiB left");
        assert_eq!(budget.held(), 700 * KIB);
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("reserved once the first was released");
        assert_eq!(budget.held(), 500 * KIB);
        assert_eq!(budget.peak(), 700 * KIB);
        assert_eq!(budget.evictions(), 0);
        drop(second);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_response_larger_than_the_budget_takes_all_of_it() {
        let budget = Arc::new(Budget::new(1 << 20));
        let big = Arc::clone(&budget).reserve(5 << 20, hold()).await;
        let mut small = Box::pin(Arc::clone(&budget).reserve(1, hold()));
        assert!(
            poll_once(&mut small).is_pending(),
            "the big one holds everything"
        );
        drop(big);
        let _small = tokio::time::timeout(Duration::from_secs(5), small)
            .await
            .expect("reserved after the big one");
    }

    #[tokio::test]
    async fn a_frame_gives_its_bytes_back_when_its_last_handle_is_dropped() {
        let budget = Arc::new(Budget::new(1 << 20));
        let reservation = Arc::clone(&budget).reserve(3 * KIB, hold()).await;
        let frame = Bytes::from_owner(Reserved {
            bytes: vec![7; 3 * KIB],
            _reservation: reservation,
        });
        let rest = frame.slice(KIB..);
        drop(frame);
        assert_eq!(budget.held(), 3 * KIB, "h2 still holds part of it");
        assert_eq!(rest.len(), 2 * KIB);
        drop(rest);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_slow_reader_is_taken_out_of_the_budget_and_gets_no_more() {
        let budget = Arc::new(Budget::new(1 << 20));
        let slow = hold();
        let stuck = Arc::clone(&budget)
            .reserve(1 << 20, Arc::clone(&slow))
            .await;
        let started = std::time::Instant::now();
        let healthy = tokio::time::timeout(
            SLOW_READER * 4,
            Arc::clone(&budget).reserve(10 * KIB, hold()),
        )
        .await
        .expect("served once the unread frame is found slow");
        let waited = started.elapsed();
        assert!(waited >= SLOW_READER, "{waited:?}");
        assert!(waited < SLOW_READER * 3, "{waited:?}");
        assert_eq!(budget.evictions(), 1);
        assert!(slow.is_slow());
        assert_eq!(budget.held(), (1 << 20) + 10 * KIB, "its bytes still count");
        assert_eq!(budget.held_by_slow_readers(), 1 << 20);

        // The slow reader waits for its own frame, not for budget.
        let mut more = Box::pin(Arc::clone(&budget).reserve(KIB, Arc::clone(&slow)));
        assert!(poll_once(&mut more).is_pending());
        drop(healthy);
        assert!(
            poll_once(&mut more).is_pending(),
            "budget is free, but it holds a frame"
        );
        drop(stuck);
        let _more = tokio::time::timeout(Duration::from_secs(5), more)
            .await
            .expect("caught up once its frame is written");
        assert!(!slow.is_slow());
        assert_eq!(budget.held_by_slow_readers(), 0);
    }

    #[tokio::test]
    async fn young_reservations_are_waited_for_not_evicted() {
        let budget = Arc::new(Budget::new(1 << 20));
        let busy = Arc::clone(&budget).reserve(1 << 20, hold()).await;
        let mut next = Box::pin(Arc::clone(&budget).reserve(KIB, hold()));
        tokio::time::sleep(SLOW_READER / 4).await;
        assert!(poll_once(&mut next).is_pending());
        drop(busy);
        let _next = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("served after the release");
        assert_eq!(budget.evictions(), 0);
    }
}

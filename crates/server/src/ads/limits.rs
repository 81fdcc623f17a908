//! Bounds on what ADS clients may hold: connections in total, streams per connection, the
//! time to start HTTP/2 and the time to send a first request; and HTTP/2 keepalive, so a
//! peer that stops reading its socket is found and dropped.
//!
//! ```text
//! accepted connections (TCP, or TLS after its handshake)
//!   ──► limit(): over max_connections → closed at once (counted, logged once a second)
//!   ──► LimitedIo: no HTTP/2 preface within handshake_timeout → closed;
//!                  no request at all within first_request_timeout → closed
//!   ──► server(): tonic with MAX_CONCURRENT_STREAMS, keepalive pings, and an interceptor
//!                 that marks the connection as having sent a request
//! ```
//!
//! The connection and its requests meet through the peer address: [`LimitedIo`] registers
//! its connection under the remote address when it is accepted, and the interceptor, which
//! sees the remote address in each request's extensions (tonic's `TcpConnectInfo`, or the
//! secure port's [`PeerInfo`](crate::secure::PeerInfo)), marks it. A remote address is
//! unique per live connection to one listener; the same address connected to both ports
//! at once would share a mark, which can only keep a connection open, never close one.
//!
//! Per stream, [`super::stream`] bounds the wait for the first `DiscoveryRequest` by the
//! same [`Limits::first_request_timeout`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;
use tracing::{debug, warn};

use crate::shared::Shared;

/// Length of the HTTP/2 client connection preface (`PRI * HTTP/2.0...`).
const PREFACE: u64 = 24;

/// The bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, over both ports; more are closed on accept.
    pub max_connections: usize,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`: streams open at once on one connection (an
    /// Envoy needs one for ADS; the agent one more for the name table).
    pub max_streams_per_connection: u32,
    /// Time from accept (after TLS, on the secure port) to the HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// Time from accept to the first request on a connection, and from a stream's start to
    /// its first message.
    pub first_request_timeout: Duration,
    /// HTTP/2 PING interval on idle connections, and how long an answer may take.
    pub keepalive: Option<(Duration, Duration)>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_streams_per_connection: 16,
            handshake_timeout: Duration::from_secs(10),
            first_request_timeout: Duration::from_secs(30),
            keepalive: Some((Duration::from_secs(30), Duration::from_secs(10))),
        }
    }
}

#[derive(Debug, Default)]
struct ConnState {
    requested: AtomicBool,
}

/// The open connections and their count.
#[derive(Debug)]
pub struct Connections {
    limits: Limits,
    permits: Arc<Semaphore>,
    by_remote: Mutex<HashMap<SocketAddr, Arc<ConnState>>>,
    open: AtomicUsize,
    last_refusal_log: Mutex<Option<Instant>>,
    shared: Arc<Shared>,
}

impl Connections {
    /// Connections bounded by `limits`, counted in `shared`'s metrics.
    pub fn new(limits: Limits, shared: Arc<Shared>) -> Arc<Connections> {
        Arc::new(Connections {
            limits,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            by_remote: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            last_refusal_log: Mutex::new(None),
            shared,
        })
    }

    /// The bounds.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Notes that the connection from `remote` sent a request.
    pub fn requested(&self, remote: SocketAddr) {
        if let Ok(m) = self.by_remote.lock()
            && let Some(c) = m.get(&remote)
        {
            c.requested.store(true, Ordering::Relaxed);
        }
    }

    fn refuse(&self, remote: Option<SocketAddr>) {
        self.shared
            .metrics
            .xds_connections_refused
            .fetch_add(1, Ordering::Relaxed);
        let mut last = match self.last_refusal_log.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            *last = Some(Instant::now());
            warn!(
                remote = ?remote,
                max = self.limits.max_connections,
                "xDS connection limit reached; closing new connections (counted in entryway_xds_connections_refused_total)"
            );
        }
    }

    fn admit<IO>(self: &Arc<Self>, io: IO, remote: Option<SocketAddr>) -> Option<LimitedIo<IO>> {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            self.refuse(remote);
            return None;
        };
        let state = Arc::new(ConnState::default());
        if let (Some(r), Ok(mut m)) = (remote, self.by_remote.lock()) {
            m.insert(r, Arc::clone(&state));
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        Some(LimitedIo {
            inner: io,
            conns: Arc::clone(self),
            remote,
            state,
            read: 0,
            handshake_by: now + self.limits.handshake_timeout,
            request_by: now + self.limits.first_request_timeout,
            timer: Box::pin(tokio::time::sleep_until(
                now + self.limits.handshake_timeout,
            )),
            _permit: permit,
        })
    }
}

/// Applies the connection bounds to a stream of accepted connections; `remote` tells each
/// connection's peer address. The returned stream ends when `incoming` does.
pub fn limit<S, IO>(
    incoming: S,
    conns: Arc<Connections>,
    remote: fn(&IO) -> Option<SocketAddr>,
) -> impl Stream<Item = io::Result<LimitedIo<IO>>>
where
    S: Stream<Item = io::Result<IO>> + Send + 'static,
    IO: Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let next = tokio::select! {
                n = incoming.next() => n,
                _ = tx.closed() => return,
            };
            match next {
                None => return,
                Some(Err(e)) => {
                    // EMFILE and friends: back off instead of spinning.
                    debug!(error = %e, "accepting an xDS connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(Ok(io)) => {
                    let peer = remote(&io);
                    if let Some(limited) = conns.admit(io, peer)
                        && tx.send(Ok(limited)).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A tonic server builder with the HTTP/2 bounds of `limits`; add
/// `.layer(tonic::service::InterceptorLayer::new(interceptor(&conns)))` so that requests
/// mark their connections.
pub fn builder(limits: &Limits) -> tonic::transport::Server {
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_streams_per_connection);
    if let Some((interval, timeout)) = limits.keepalive {
        builder = builder
            .http2_keepalive_interval(Some(interval))
            .http2_keepalive_timeout(Some(timeout));
    }
    builder
}

/// Marks each request's connection as having sent a request (see the module docs).
pub fn interceptor(
    conns: &Arc<Connections>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone + use<> {
    let conns = Arc::clone(conns);
    move |req: tonic::Request<()>| {
        let remote = req.remote_addr().or_else(|| {
            req.extensions()
                .get::<crate::secure::PeerInfo>()
                .and_then(|p| p.remote)
        });
        if let Some(r) = remote {
            conns.requested(r);
        }
        Ok(req)
    }
}

/// An accepted connection within the bounds (see the module docs). Dropping it gives its
/// place back.
pub struct LimitedIo<IO> {
    inner: IO,
    conns: Arc<Connections>,
    remote: Option<SocketAddr>,
    state: Arc<ConnState>,
    read: u64,
    handshake_by: Instant,
    request_by: Instant,
    timer: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl<IO> LimitedIo<IO> {
    /// An error when a deadline has passed (the connection is then closed).
    fn check(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let requested = self.state.requested.load(Ordering::Relaxed);
        if requested {
            return None;
        }
        let (deadline, what) = if self.read < PREFACE {
            (self.handshake_by, "the HTTP/2 preface")
        } else {
            (self.request_by, "a request")
        };
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        // Polling registers the wake-up: the connection's reader is woken at the deadline.
        if self.timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        self.conns
            .shared
            .metrics
            .xds_connections_timed_out
            .fetch_add(1, Ordering::Relaxed);
        let waited = if self.read < PREFACE {
            self.conns.limits.handshake_timeout
        } else {
            self.conns.limits.first_request_timeout
        };
        debug!(remote = ?self.remote, "closing an xDS connection that sent no {what} in {} ms", waited.as_millis());
        Some(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no {what} within {} ms", waited.as_millis()),
        ))
    }
}

impl<IO> Drop for LimitedIo<IO> {
    fn drop(&mut self) {
        self.conns.open.fetch_sub(1, Ordering::Relaxed);
        if let (Some(r), Ok(mut m)) = (self.remote, self.conns.by_remote.lock())
            && m.get(&r).is_some_and(|s| Arc::ptr_eq(s, &self.state))
        {
            m.remove(&r);
        }
    }
}

impl<IO: Connected> Connected for LimitedIo<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for LimitedIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.read += (buf.filled().len() - before) as u64;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.check(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for LimitedIo<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

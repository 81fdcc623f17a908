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

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http_body::Frame;
use prost::Message;
use tokio::sync::mpsc;
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
            SOTW_PATH => respond::<super::sotw::Sotw>(&self.server, req.into_body()),
            DELTA_PATH => respond::<super::delta::Delta>(&self.server, req.into_body()),
            other => {
                Status::unimplemented(format!("{other}: not an ADS method")).into_http::<Body>()
            }
        };
        ready(Ok(response))
    }
}

fn respond<P: Protocol>(server: &AdsServer, body: Body) -> http::Response<Body> {
    let decoder = tonic_prost::ProstCodec::<P::Resp, P::Req>::default().decoder();
    let requests = Streaming::new_request(decoder, body, None, Some(MAX_REQUEST_BYTES));
    let rx = server.spawn::<P>(requests);
    let mut response = http::Response::new(Body::new(ResponseBody { rx, done: false }));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// The response stream: one DATA frame per queued response (each its own allocation), then
/// the trailers (`grpc-status`) when the stream task ends or reports an error.
struct ResponseBody<R> {
    rx: mpsc::Receiver<Outgoing<R>>,
    done: bool,
}

impl<R: Message> http_body::Body for ResponseBody<R> {
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
        let item = match this.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(out)) => out.into_item(),
            Poll::Ready(None) => Err(Status::ok("")),
        };
        let status = match item.and_then(|m| encode_message(&m)) {
            Ok(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
            Err(status) => status,
        };
        this.done = true;
        Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// `m` as one length-prefixed gRPC message (uncompressed), in an allocation of exactly its
/// size.
pub fn encode_message<M: Message>(m: &M) -> Result<Bytes, Status> {
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
    Ok(Bytes::from(buf))
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
}

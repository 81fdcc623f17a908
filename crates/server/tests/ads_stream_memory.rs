//! An idle ADS stream must not keep its responses' bytes: tonic's generated server kept a
//! per-stream encode buffer as large as the largest response (the outbound listener, hundreds
//! of KB), i.e. about one configuration per connected proxy. The service is driven in-process
//! (requests in, response frames out, each frame dropped as soon as it is parsed) so that the
//! live heap measured by jemalloc is the server's alone.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use entryway_server::ads::grpc::{DELTA_PATH, encode_message};
use entryway_server::ads::{AdsOptions, AdsServer, Kind};
use entryway_server::store::{Store, StoreOptions};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use http_body::{Body as _, Frame};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tonic::body::Body;
use tower_service::Service;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn live_heap() -> usize {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().expect("jemalloc epoch");
    stats::allocated::read().expect("jemalloc stats")
}

const SERVICES: usize = 600;
const STREAMS: usize = 12;

fn corpus(dir: &std::path::Path) {
    let mut s = String::new();
    for i in 0..SERVICES {
        let _ = write!(
            s,
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: se-{i}, namespace: ns-{}}}\nspec:\n  hosts: [a-{i}.example.com]\n  ports:\n  - {{number: {}, name: http, protocol: HTTP}}\n  - {{number: 443, name: tls, protocol: TLS}}\n  resolution: STATIC\n  endpoints:\n  - {{address: 10.1.{}.{}}}\n",
            i % 10,
            8000 + i % 100,
            i / 256,
            i % 256
        );
    }
    std::fs::write(dir.join("se.yaml"), s).expect("write corpus");
}

/// A request body fed from a channel.
struct Requests(mpsc::UnboundedReceiver<Bytes>);

impl http_body::Body for Requests {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

fn request(kind: Kind, nonce: &str, node: bool) -> Bytes {
    encode_message(&DeltaDiscoveryRequest {
        node: node.then(|| Node {
            id: "sidecar~10.0.0.1~app.default~default.svc.cluster.local".into(),
            ..Default::default()
        }),
        type_url: kind.type_url().to_string(),
        response_nonce: nonce.to_string(),
        ..Default::default()
    })
    .expect("encode")
}

/// One stream: subscribes to CDS and LDS, ACKs every response until both were ACKed once.
/// Returns the still-open stream (request sender, response body) and the largest response.
async fn sync_stream<S>(service: &mut S) -> (mpsc::UnboundedSender<Bytes>, Body, usize)
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Error: std::fmt::Debug,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(request(Kind::Cluster, "", true)).expect("send");
    tx.send(request(Kind::Listener, "", false)).expect("send");
    let mut req = http::Request::new(Body::new(Requests(rx)));
    *req.uri_mut() = DELTA_PATH.parse().expect("uri");
    req.headers_mut()
        .insert("content-type", "application/grpc".parse().expect("header"));
    let mut body = service.call(req).await.expect("call").into_body();
    let mut buf = BytesMut::new();
    let mut pending: VecDeque<DeltaDiscoveryResponse> = VecDeque::new();
    let (mut cds, mut lds, mut largest) = (false, false, 0);
    while !(cds && lds) {
        let frame = tokio::time::timeout(
            Duration::from_secs(60),
            std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)),
        )
        .await
        .expect("a response in time")
        .expect("the stream stays open")
        .expect("a frame");
        let Ok(data) = frame.into_data() else {
            panic!("trailers before the sync");
        };
        buf.extend_from_slice(&data);
        while buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() < 5 + len {
                break;
            }
            buf.advance(5);
            largest = largest.max(len);
            pending.push_back(DeltaDiscoveryResponse::decode(buf.split_to(len)).expect("decode"));
        }
        while let Some(r) = pending.pop_front() {
            let kind = Kind::from_type_url(&r.type_url).expect("kind");
            cds |= kind == Kind::Cluster;
            lds |= kind == Kind::Listener;
            tx.send(request(kind, &r.nonce, false)).expect("ack");
        }
    }
    (tx, body, largest)
}

/// Live heap bytes per synced, idle stream, and the largest response.
async fn retained_per_stream(tonic_encoder: bool) -> (usize, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    corpus(dir.path());
    let (_store, shared) =
        Store::open(StoreOptions::new(vec![dir.path().to_path_buf()])).expect("store");
    let (_stop_tx, stop_rx) = watch::channel(false);
    let server = AdsServer::new(Arc::clone(&shared), AdsOptions::default(), stop_rx);
    let mut streams = Vec::new();
    let mut largest = 0;
    // One stream first: the shared generation cache is then warm and not counted.
    macro_rules! open {
        ($svc:expr) => {{
            let mut svc = $svc;
            let (tx, body, l) = sync_stream(&mut svc).await;
            largest = largest.max(l);
            streams.push((tx, body));
            let before = live_heap();
            for _ in 0..STREAMS {
                let (tx, body, _) = sync_stream(&mut svc).await;
                streams.push((tx, body));
            }
            // Let the stream tasks finish handling the last ACKs.
            tokio::task::yield_now().await;
            live_heap().saturating_sub(before) / STREAMS
        }};
    }
    let per_stream = if tonic_encoder {
        open!(server.into_tonic_service())
    } else {
        open!(server.into_service())
    };
    drop(streams);
    (per_stream, largest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_keeps_no_response_bytes() {
    let (ours, largest) = retained_per_stream(false).await;
    let (tonic, _) = retained_per_stream(true).await;
    eprintln!(
        "largest response {largest} B; live heap per idle stream: Entryway framing {ours} B, tonic's encoder {tonic} B"
    );
    assert!(
        largest > 100_000,
        "the corpus has a large listener: {largest} B"
    );
    // The measurement can see the retention it guards against.
    assert!(
        tonic >= largest,
        "tonic's encoder was expected to keep the largest response per stream: {tonic} B < {largest} B"
    );
    // What is left is protocol state (names, nonces, queues), well under one response.
    assert!(
        ours < largest / 2 && ours * 3 < tonic,
        "an idle stream keeps {ours} B (largest response {largest} B, tonic's encoder {tonic} B)"
    );
}

//! The push budget bounds the bytes of responses materialised and not yet written across all
//! ADS streams: a stream whose frames are not written (held here, as h2 holds the frames of
//! a proxy that does not read) stops getting new responses once it holds the budget; once
//! its frames have stayed unwritten for `SLOW_READER` it is a slow reader, taken out of the
//! budget, so another stream is served while it still gets nothing; it resumes when its
//! frames are dropped. Driven in-process (request bodies in, response frames out) so the
//! test decides when a frame is "written".

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use entryway_server::ads::grpc::{DELTA_PATH, encode_message};
use entryway_server::ads::{AdsOptions, AdsServer, Kind};
use entryway_server::store::{Store, StoreOptions};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use http_body::{Body as _, Frame};
use tokio::sync::{mpsc, watch};
use tonic::body::Body;
use tower_service::Service;

const SERVICES: usize = 1500;
const BUDGET: usize = 1 << 20;
/// Long enough to tell a stream waiting for budget from one being served, and well under
/// the budget's stall limit (2 s) after which waiting responses go out anyway.
const BLOCKED_AFTER: Duration = Duration::from_millis(300);

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

struct Requests(mpsc::UnboundedReceiver<Bytes>);

impl http_body::Body for Requests {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

fn request(kind: Kind, node: bool) -> Bytes {
    encode_message(&DeltaDiscoveryRequest {
        node: node.then(|| Node {
            id: "sidecar~10.0.0.1~app.default~default.svc.cluster.local".into(),
            ..Default::default()
        }),
        type_url: kind.type_url().to_string(),
        ..Default::default()
    })
    .expect("encode")
}

/// A Delta stream subscribed to CDS and LDS (never ACKing: the initial responses are due
/// anyway).
async fn open<S>(service: &mut S) -> (mpsc::UnboundedSender<Bytes>, Body)
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Error: std::fmt::Debug,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(request(Kind::Cluster, true)).expect("send");
    tx.send(request(Kind::Listener, false)).expect("send");
    let mut req = http::Request::new(Body::new(Requests(rx)));
    *req.uri_mut() = DELTA_PATH.parse().expect("uri");
    req.headers_mut()
        .insert("content-type", "application/grpc".parse().expect("header"));
    (tx, service.call(req).await.expect("call").into_body())
}

/// The next DATA frame, or `None` if none came within `wait`.
async fn next_data(body: &mut Body, wait: Duration) -> Option<Bytes> {
    let frame = tokio::time::timeout(
        wait,
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)),
    )
    .await
    .ok()?;
    let frame = frame.expect("the stream stays open").expect("a frame");
    Some(
        frame
            .into_data()
            .unwrap_or_else(|_| panic!("trailers mid-sync")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritten_frames_hold_the_budget_and_others_wait_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    corpus(dir.path());
    let (_store, shared) =
        Store::open(StoreOptions::new(vec![dir.path().to_path_buf()])).expect("store");
    let (_stop_tx, stop_rx) = watch::channel(false);
    let server = AdsServer::new(Arc::clone(&shared), AdsOptions::default(), stop_rx)
        .with_push_budget(BUDGET);
    let budget = server.budget();
    assert_eq!(budget.capacity(), BUDGET);
    let mut service = server.into_service();

    // Stream A: its frames are kept (not "written") until it stops getting any.
    let (_a_tx, mut a) = open(&mut service).await;
    let mut held: Vec<Bytes> = Vec::new();
    let first = next_data(&mut a, Duration::from_secs(60))
        .await
        .expect("the first response (generation included)");
    held.push(first);
    while let Some(frame) = next_data(&mut a, BLOCKED_AFTER).await {
        held.push(frame);
        assert!(
            budget.held() <= BUDGET,
            "{} B reserved, budget {BUDGET} B",
            budget.held()
        );
    }
    let held_bytes: usize = held.iter().map(Bytes::len).sum();
    assert!(
        held_bytes <= BUDGET && held_bytes > BUDGET / 2,
        "stream A holds {held_bytes} B of frames (budget {BUDGET} B)"
    );
    assert_eq!(budget.evictions(), 0, "nothing was slow yet");

    // Stream B is served although A's unwritten frames hold the budget: A is a slow reader.
    let (_b_tx, mut b) = open(&mut service).await;
    let started = std::time::Instant::now();
    let b_first = next_data(&mut b, Duration::from_secs(30)).await;
    assert!(b_first.is_some(), "B is served despite A's unread frames");
    eprintln!("B waited {:?} behind a slow reader", started.elapsed());
    assert!(budget.evictions() > 0);
    // A gets nothing more while its frames are unwritten.
    assert!(
        next_data(&mut a, BLOCKED_AFTER).await.is_none(),
        "the slow reader A got another frame"
    );

    // A's frames are "written": A resumes.
    drop(held);
    let a_next = next_data(&mut a, Duration::from_secs(30)).await;
    assert!(a_next.is_some(), "A resumes");
    drop((a_next, b_first));
    assert_eq!(budget.held_by_slow_readers(), 0);
}

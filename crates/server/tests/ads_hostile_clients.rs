//! The ADS server against clients that misbehave (issue 11), over real sockets:
//!
//! - 500 streams that never read (one connection each, a 64 KiB window they never open):
//!   a real Envoy's push latency stays within 2× of a baseline measured in the same run;
//! - a first request without a node, or with an empty node id, is refused
//!   (INVALID_ARGUMENT); an undecodable request ends with INTERNAL and an oversized one
//!   with RESOURCE_EXHAUSTED, each counted and logged;
//! - a stream that never sends a request ends with DEADLINE_EXCEEDED; a connection that
//!   never sends the HTTP/2 preface, or never a request, is closed; connections beyond the
//!   limit are closed at once; a connection carries at most MAX_CONCURRENT_STREAMS streams.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use entryway_agent::bootstrap::{
    AdsApiType, AdsOptions as BootstrapAds, BootstrapOptions, XdsAddress,
};
use entryway_server::admin;
use entryway_server::ads::limits::Limits;
use entryway_server::ads::{self, AdsOptions, Kind};
use entryway_server::shared::Shared;
use entryway_server::store::{Store, StoreOptions};
use entryway_testkit::{EnvoyHarness, EnvoyProcess};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

const BOUND: Duration = Duration::from_secs(30);
const HEALTHY: &str = "sidecar~127.0.0.1~healthy.default~default.svc.cluster.local";

struct ControlPlane {
    dir: tempfile::TempDir,
    store: Store,
    shared: Arc<Shared>,
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl ControlPlane {
    async fn start(services: usize, limits: Limits) -> ControlPlane {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = String::new();
        for i in 0..services {
            let _ = write!(
                s,
                "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: se-{i}, namespace: default}}\nspec:\n  hosts: [a-{i}.example.com]\n  ports:\n  - {{number: {}, name: http, protocol: HTTP}}\n  resolution: STATIC\n  endpoints:\n  - {{address: 10.1.{}.{}}}\n",
                8000 + i % 100,
                i / 256,
                i % 256
            );
        }
        std::fs::write(dir.path().join("se.yaml"), s).expect("write");
        let (store, shared) =
            Store::open(StoreOptions::new(vec![dir.path().to_path_buf()])).expect("store");
        let listener = ads::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let options = AdsOptions {
            limits,
            ..AdsOptions::default()
        };
        tokio::spawn(ads::serve_with(
            listener,
            Arc::clone(&shared),
            options,
            async move {
                let _ = stopped.await;
            },
        ));
        ControlPlane {
            dir,
            store,
            shared,
            addr,
            _stop: stop,
        }
    }

    /// Changes one cluster (a DestinationRule's connection limit): CDS and EDS are pushed.
    fn edit(&mut self, n: u32) {
        let dr = format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: dr, namespace: default}}\nspec:\n  host: a-0.example.com\n  trafficPolicy:\n    connectionPool:\n      tcp:\n        maxConnections: {n}\n"
        );
        std::fs::write(self.dir.path().join("dr.yaml"), dr).expect("write");
        let o = tokio::task::block_in_place(|| self.store.reload());
        assert!(o.published.is_some(), "{o:?}");
    }

    /// CDS's sent and acked versions of the proxy `node` (read from the shared status, not
    /// rendered as `/debug/syncz`: with 501 proxies that rendering would be the load).
    fn cds(&self, node: &str) -> Option<(String, String)> {
        let proxies = self.shared.proxies.lock().ok()?;
        let (_, status) = proxies.values().find(|(_, s)| s.node_id == node)?;
        let t = status.types.get(Kind::Cluster.type_url())?;
        Some((t.sent_version.clone(), t.acked_version.clone()))
    }

    fn metric(&self, line_prefix: &str) -> u64 {
        let text = admin::handle(&self.shared, "/metrics").body;
        text.lines()
            .find_map(|l| l.strip_prefix(line_prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

async fn until<T>(what: &str, envoy: Option<&EnvoyProcess>, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}\n{}",
                envoy.map(|e| e.log_tail(30)).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Edits and waits until the healthy Envoy ACKed the new CDS; returns how long that took.
async fn push(cp: &mut ControlPlane, envoy: &EnvoyProcess, n: u32) -> Duration {
    let before = cp.cds(HEALTHY).map(|(s, _)| s);
    let started = Instant::now();
    cp.edit(n);
    until("the healthy Envoy's ACK", Some(envoy), || {
        let (sent, acked) = cp.cds(HEALTHY)?;
        (Some(&sent) != before.as_ref() && sent == acked).then_some(())
    })
    .await;
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn node(id: &str) -> Node {
    Node {
        id: id.to_string(),
        cluster: "x.default".to_string(),
        ..Default::default()
    }
}

fn cds_request(node: Option<Node>) -> DiscoveryRequest {
    DiscoveryRequest {
        node,
        type_url: Kind::Cluster.type_url().to_string(),
        ..Default::default()
    }
}

/// Opens a SotW stream with `first` as its first request; returns the request sender and the
/// response stream (or the status the server refused it with).
async fn open(
    channel: Channel,
    first: DiscoveryRequest,
) -> (
    mpsc::Sender<DiscoveryRequest>,
    Result<tonic::Streaming<DiscoveryResponse>, tonic::Status>,
) {
    let (tx, rx) = mpsc::channel(4);
    tx.send(first).await.expect("queue");
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(usize::MAX);
    let r = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .map(|r| r.into_inner());
    (tx, r)
}

/// The status a stream ends with (its first response skipped).
async fn end_status(
    r: Result<tonic::Streaming<DiscoveryResponse>, tonic::Status>,
) -> tonic::Status {
    let mut s = match r {
        Err(status) => return status,
        Ok(s) => s,
    };
    loop {
        match tokio::time::timeout(BOUND, s.message()).await {
            Err(_) => panic!("the stream did not end"),
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => return tonic::Status::ok(""),
            Ok(Err(status)) => return status,
        }
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_streams_that_never_read_do_not_slow_a_healthy_proxy() {
    let mut cp = ControlPlane::start(300, Limits::default()).await;
    let harness = EnvoyHarness::require();
    let bootstrap = BootstrapOptions::new(HEALTHY, "healthy.default")
        .with_admin_port(0)
        .with_ads(BootstrapAds::new(
            AdsApiType::Grpc,
            XdsAddress::new("127.0.0.1", cp.addr.port()),
        ))
        .render();
    let envoy = tokio::task::block_in_place(|| harness.start(&bootstrap))
        .unwrap_or_else(|e| panic!("Envoy did not start: {e}"));
    until("the healthy Envoy's first ACK", Some(&envoy), || {
        let (s, a) = cp.cds(HEALTHY)?;
        (!s.is_empty() && s == a).then_some(())
    })
    .await;

    let mut n = 10;
    let mut baseline = Vec::new();
    for _ in 0..5 {
        n += 1;
        baseline.push(push(&mut cp, &envoy, n).await);
    }

    // 500 connections, one stream each, with a 64 KiB window that is never opened again:
    // each holds a CDS response it does not read (about 150 KiB each, 75 MB in all, more
    // than the 64 MiB push budget).
    let mut slow = Vec::new();
    for i in 0..500 {
        let ch = Endpoint::from_shared(format!("http://{}", cp.addr))
            .expect("endpoint")
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect()
            .await
            .expect("connect");
        let (tx, r) = open(
            ch,
            // Same identity as the healthy proxy (one generation per push for all): what is
            // measured is the unread frames, not 500 more generations.
            cds_request(Some(node(&format!(
                "sidecar~127.0.0.1~slow-{i}.default~default.svc.cluster.local"
            )))),
        )
        .await;
        slow.push((tx, r.expect("stream opened")));
    }
    until("501 proxies connected", Some(&envoy), || {
        (cp.metric("entryway_connected_proxies ") == 501).then_some(())
    })
    .await;
    // Long enough for every unread response to be materialised and found slow.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut loaded = Vec::new();
    for _ in 0..5 {
        n += 1;
        loaded.push(push(&mut cp, &envoy, n).await);
    }
    let (b, l) = (median(baseline.clone()), median(loaded.clone()));
    eprintln!(
        "healthy proxy push (edit → ACK), median of 5: baseline {:.1} ms, with 500 non-reading streams {:.1} ms ({:.2}×); all: {baseline:?} / {loaded:?}",
        b.as_secs_f64() * 1e3,
        l.as_secs_f64() * 1e3,
        l.as_secs_f64() / b.as_secs_f64()
    );
    assert!(
        l <= b * 2,
        "push latency {l:?} with 500 non-reading streams, more than 2× the baseline {b:?}"
    );
    drop(slow);
    drop(envoy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_first_requests_end_with_the_right_status() {
    let cp = ControlPlane::start(3, Limits::default()).await;
    let ch = channel(cp.addr).await;

    let (_tx, r) = open(ch.clone(), cds_request(None)).await;
    let s = end_status(r).await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("no node"), "{s:?}");

    let (_tx, r) = open(ch.clone(), cds_request(Some(node("")))).await;
    let s = end_status(r).await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("empty node id"), "{s:?}");

    let (_tx, r) = open(ch.clone(), cds_request(Some(node(&"n".repeat(4 << 20))))).await;
    let s = end_status(r).await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(
        s.message().len() < 1024,
        "the refusal echoes the 4 MiB node id"
    );

    // Oversized: a request over 64 MiB.
    let mut big = cds_request(Some(node("big~x")));
    big.resource_names = vec!["r".repeat(65 << 20)];
    let (_tx, r) = open(ch.clone(), big).await;
    let s = end_status(r).await;
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");

    // Undecodable: field 4 (node, a message) sent as a varint.
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.expect("ready");
    let bogus = tokio_stream::iter(vec![Bogus { node: 7 }]);
    let r = grpc
        .streaming(
            tonic::Request::new(bogus),
            http::uri::PathAndQuery::from_static(ads::grpc::SOTW_PATH),
            tonic_prost::ProstCodec::<Bogus, DiscoveryResponse>::default(),
        )
        .await
        .map(|r| r.into_inner());
    let s = end_status(r).await;
    assert_eq!(s.code(), Code::Internal, "{s:?}");
    assert!(s.message().contains("decode"), "{s:?}");

    let text = admin::handle(&cp.shared, "/metrics").body;
    for code in ["InvalidArgument", "ResourceExhausted", "Internal"] {
        assert!(
            text.contains(&format!(
                "entryway_xds_bad_requests_total{{code=\"{code}\"}}"
            )),
            "{code} not counted:\n{text}"
        );
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct Bogus {
    #[prost(uint64, tag = "4")]
    node: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_streams_time_out_and_connections_are_bounded() {
    let limits = Limits {
        max_connections: 3,
        max_streams_per_connection: 2,
        handshake_timeout: Duration::from_millis(300),
        first_request_timeout: Duration::from_millis(600),
        ..Limits::default()
    };
    let cp = ControlPlane::start(3, limits).await;

    // A connection that never sends the HTTP/2 preface is closed after the handshake bound.
    let started = Instant::now();
    let mut silent = std::net::TcpStream::connect(cp.addr).expect("connect");
    silent.set_read_timeout(Some(BOUND)).expect("timeout");
    let mut buf = [0u8; 1024];
    while silent.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // One that sends the preface and settings but no request is closed after the request bound.
    let started = Instant::now();
    let mut quiet = std::net::TcpStream::connect(cp.addr).expect("connect");
    quiet.set_read_timeout(Some(BOUND)).expect("timeout");
    quiet
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .expect("preface");
    while quiet.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(550) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(cp.metric("entryway_xds_connections_timed_out_total ") >= 2);

    // A stream that sends no request ends with DEADLINE_EXCEEDED.
    let ch = channel(cp.addr).await;
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(1);
    let mut client = AggregatedDiscoveryServiceClient::new(ch.clone());
    let r = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .map(|r| r.into_inner());
    let s = end_status(r).await;
    assert_eq!(s.code(), Code::DeadlineExceeded, "{s:?}");
    drop(tx);

    // Two streams per connection: a third waits until one ends.
    let (_a, ra) = open(ch.clone(), cds_request(Some(node("a~x")))).await;
    let (_b, rb) = open(ch.clone(), cds_request(Some(node("b~x")))).await;
    let mut ra = ra.expect("a");
    let _rb = rb.expect("b");
    ra.message().await.expect("a served").expect("a response");
    let third = tokio::time::timeout(
        Duration::from_millis(500),
        open(ch.clone(), cds_request(Some(node("c~x")))),
    )
    .await;
    match third {
        Err(_) => {}
        Ok((_, Ok(mut s))) => assert!(
            tokio::time::timeout(Duration::from_millis(300), s.message())
                .await
                .is_err(),
            "a third concurrent stream was served on one connection"
        ),
        Ok((_, Err(status))) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
    }

    // Connections beyond the limit (3: this channel plus two more) are closed at once.
    let _c2 = channel(cp.addr).await;
    let (_t2, r2) = open(_c2.clone(), cds_request(Some(node("d~x")))).await;
    let _r2 = r2.expect("second connection served");
    let _c3 = channel(cp.addr).await;
    let (_t3, r3) = open(_c3.clone(), cds_request(Some(node("e~x")))).await;
    let _r3 = r3.expect("third connection served");
    let started = Instant::now();
    let mut over = std::net::TcpStream::connect(cp.addr).expect("connect");
    over.set_read_timeout(Some(BOUND)).expect("timeout");
    while over.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert!(cp.metric("entryway_xds_connections_refused_total ") >= 1);
}

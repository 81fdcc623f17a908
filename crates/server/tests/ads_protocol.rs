//! The ADS server's protocol, driven by an in-process tonic client over loopback: SotW
//! (initial wildcard request, ACK, NACK, stale nonces, push order, EDS re-warming, no-op
//! reloads) and Delta (initial request, incremental changes, removals, reconnect with
//! `initial_resource_versions`, unsubscribe, ACK/NACK).
//!
//! The configuration comes from a real [`Store`] over ServiceEntry files in a temp dir;
//! every change is a file write plus `Store::reload`. Every receive is bounded by a timeout;
//! the only fixed waits are the [`QUIET`] windows asserting that nothing arrives.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use entryway_server::admin;
use entryway_server::ads::{self, Kind};
use entryway_server::shared::Shared;
use entryway_server::store::{ReloadOutcome, Store, StoreOptions};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// Bound of every wait for something that must happen.
const BOUND: Duration = Duration::from_secs(5);
/// Window in which nothing may arrive, to assert that nothing is sent.
const QUIET: Duration = Duration::from_millis(300);

const NODE_ID: &str = "sidecar~127.0.0.1~app-1.default~default.svc.cluster.local";

// ---------------------------------------------------------------------------------------
// Config files

/// A STATIC ServiceEntry in `default` with one HTTP port per entry of `ports` and one
/// endpoint per address.
fn se(name: &str, host: &str, ports: &[u16], addresses: &[&str]) -> String {
    let mut s = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  hosts: [{host}]\n  ports:\n"
    );
    for p in ports {
        s.push_str(&format!(
            "  - number: {p}\n    name: http-{p}\n    protocol: HTTP\n"
        ));
    }
    s.push_str("  resolution: STATIC\n  endpoints:\n");
    for a in addresses {
        s.push_str(&format!("  - address: {a}\n"));
    }
    s
}

/// A DestinationRule changing only the cluster of `host` (its connection limit).
fn dr(host: &str, max_connections: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: dr\n  namespace: default\nspec:\n  host: {host}\n  trafficPolicy:\n    connectionPool:\n      tcp:\n        maxConnections: {max_connections}\n"
    )
}

fn cluster_name(host: &str, port: u16) -> String {
    format!("outbound|{port}||{host}")
}

// ---------------------------------------------------------------------------------------
// Control plane

struct ControlPlane {
    dir: tempfile::TempDir,
    store: Store,
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ads::AdsError>>>,
}

impl ControlPlane {
    async fn start(files: &[(&str, String)]) -> ControlPlane {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write config");
        }
        let (store, shared) =
            Store::open(StoreOptions::new(vec![dir.path().to_path_buf()])).expect("open store");
        assert!(
            store.state().rejections().is_empty(),
            "test configs must be valid: {:?}",
            store.state().rejections()
        );
        let listener = ads::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ads::serve(listener, Arc::clone(&shared), async move {
            let _ = stopped.await;
        }));
        ControlPlane {
            dir,
            store,
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Writes (or replaces) a config file and reloads; the reload must publish.
    fn write(&mut self, name: &str, text: &str) -> u64 {
        std::fs::write(self.dir.path().join(name), text).expect("write config");
        self.publish(&format!("writing {name}"))
    }

    fn remove(&mut self, name: &str) -> u64 {
        std::fs::remove_file(self.dir.path().join(name)).expect("remove config");
        self.publish(&format!("removing {name}"))
    }

    fn publish(&mut self, what: &str) -> u64 {
        let o = self.reload();
        assert!(
            self.store.state().rejections().is_empty(),
            "test configs must be valid: {:?}",
            self.store.state().rejections()
        );
        o.published
            .unwrap_or_else(|| panic!("{what} published no snapshot: {o:?}"))
    }

    fn reload(&mut self) -> ReloadOutcome {
        tokio::task::block_in_place(|| self.store.reload())
    }

    fn syncz(&self) -> Value {
        let r = admin::handle(&self.shared, "/debug/syncz");
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).expect("syncz JSON")
    }

    /// The `/debug/syncz` entry of `kind` of the only connected proxy.
    fn type_status(&self, kind: Kind) -> Option<Value> {
        let v = self.syncz();
        let proxies = v.as_array()?;
        assert!(proxies.len() <= 1, "one proxy at most: {v:#}");
        proxies.first()?["types"].get(kind.type_url()).cloned()
    }

    /// Waits until syncz shows `kind` ACKed at `version`.
    async fn acked(&self, kind: Kind, version: &str) {
        eventually(&format!("{kind} ACK of {version} in /debug/syncz"), || {
            let t = self.type_status(kind)?;
            (t["acked_version"] == version && t["last_nack"].is_null()).then_some(())
        })
        .await;
    }

    fn nacks(&self) -> BTreeMap<String, u64> {
        self.shared.metrics.nacks.values()
    }

    fn metrics_text(&self) -> String {
        let r = admin::handle(&self.shared, "/metrics");
        assert_eq!(r.status, 200);
        r.body
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Polls `f` every 2 ms until it returns `Some`, for at most [`BOUND`].
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {BOUND:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn node() -> Node {
    Node {
        id: NODE_ID.to_string(),
        cluster: "app.default".to_string(),
        ..Default::default()
    }
}

fn rejection(message: &str) -> RpcStatus {
    RpcStatus {
        code: 13,
        message: message.to_string(),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// Decoding

fn names_of(kind: Kind, values: &[(String, Vec<u8>)]) -> BTreeSet<String> {
    values
        .iter()
        .map(|(type_url, body)| {
            assert_eq!(type_url, kind.type_url(), "resource type");
            resource_name(kind, body)
        })
        .collect()
}

fn resource_name(kind: Kind, body: &[u8]) -> String {
    match kind {
        Kind::Cluster => Cluster::decode(body).expect("Cluster").name,
        Kind::Endpoint => {
            ClusterLoadAssignment::decode(body)
                .expect("ClusterLoadAssignment")
                .cluster_name
        }
        Kind::Listener => Listener::decode(body).expect("Listener").name,
        Kind::Route => RouteConfiguration::decode(body).expect("Route").name,
    }
}

/// Names of the EDS clusters among encoded clusters.
fn eds_clusters(bodies: &[Vec<u8>]) -> BTreeSet<String> {
    bodies
        .iter()
        .map(|b| Cluster::decode(b.as_slice()).expect("Cluster"))
        .filter(|c| {
            c.cluster_discovery_type == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
        })
        .map(|c| c.name)
        .collect()
}

/// RDS route names the listeners' HTTP connection managers ask for.
fn rds_names(bodies: &[Vec<u8>]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for b in bodies {
        let l = Listener::decode(b.as_slice()).expect("Listener");
        for chain in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
            for f in &chain.filters {
                let Some(ConfigType::TypedConfig(any)) = &f.config_type else {
                    continue;
                };
                if !any.type_url.ends_with("HttpConnectionManager") {
                    continue;
                }
                let hcm = HttpConnectionManager::decode(any.value.as_slice()).expect("HCM");
                if let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier {
                    out.insert(rds.route_config_name);
                }
            }
        }
    }
    out
}

fn kind_of(type_url: &str) -> Kind {
    Kind::from_type_url(type_url).unwrap_or_else(|| panic!("unexpected type {type_url}"))
}

// ---------------------------------------------------------------------------------------
// SotW client

struct SotwClient {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

impl SotwClient {
    async fn connect(addr: SocketAddr) -> SotwClient {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let (tx, rx) = mpsc::channel(16);
        let rx = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("open SotW stream")
            .into_inner();
        SotwClient { tx, rx }
    }

    async fn send(
        &self,
        kind: Kind,
        names: &[String],
        version: &str,
        nonce: &str,
        error: Option<RpcStatus>,
    ) {
        self.tx
            .send(DiscoveryRequest {
                version_info: version.to_string(),
                node: Some(node()),
                resource_names: names.to_vec(),
                type_url: kind.type_url().to_string(),
                response_nonce: nonce.to_string(),
                error_detail: error,
                ..Default::default()
            })
            .await
            .expect("send request");
    }

    /// ACKs `r` (keeping the subscription `names`).
    async fn ack(&self, r: &DiscoveryResponse, names: &[String]) {
        self.send(kind_of(&r.type_url), names, &r.version_info, &r.nonce, None)
            .await;
    }

    async fn recv(&mut self, what: &str) -> DiscoveryResponse {
        match tokio::time::timeout(BOUND, self.rx.message()).await {
            Err(_) => panic!("no response within {BOUND:?}: {what}"),
            Ok(Err(status)) => panic!("stream failed waiting for {what}: {status}"),
            Ok(Ok(None)) => panic!("stream ended waiting for {what}"),
            Ok(Ok(Some(r))) => r,
        }
    }

    async fn recv_kind(&mut self, kind: Kind, what: &str) -> DiscoveryResponse {
        let r = self.recv(what).await;
        assert_eq!(kind_of(&r.type_url), kind, "{what}: response type");
        assert!(!r.nonce.is_empty(), "{what}: nonce");
        assert!(!r.version_info.is_empty(), "{what}: version");
        r
    }

    /// Asserts that nothing arrives within [`QUIET`].
    async fn quiet(&mut self, what: &str) {
        if let Ok(r) = tokio::time::timeout(QUIET, self.rx.message()).await {
            match r {
                Ok(Some(r)) => panic!(
                    "{what}: expected nothing, got {} version {} with {} resources",
                    kind_of(&r.type_url),
                    r.version_info,
                    r.resources.len()
                ),
                other => panic!("{what}: stream ended: {other:?}"),
            }
        }
    }

    /// Responses until the stream has been quiet for [`QUIET`].
    async fn drain(&mut self) -> Vec<DiscoveryResponse> {
        let mut out = Vec::new();
        while let Ok(r) = tokio::time::timeout(QUIET, self.rx.message()).await {
            out.push(r.expect("stream").expect("stream ended"));
        }
        out
    }
}

fn bodies(r: &DiscoveryResponse) -> Vec<Vec<u8>> {
    r.resources.iter().map(|a| a.value.clone()).collect()
}

fn sotw_names(r: &DiscoveryResponse) -> BTreeSet<String> {
    let values: Vec<(String, Vec<u8>)> = r
        .resources
        .iter()
        .map(|a| (a.type_url.clone(), a.value.clone()))
        .collect();
    names_of(kind_of(&r.type_url), &values)
}

/// What a SotW client subscribed to all four types holds.
struct SotwSync {
    eds_names: Vec<String>,
    rds_names: Vec<String>,
    last: BTreeMap<Kind, DiscoveryResponse>,
}

impl SotwSync {
    fn names(&self, kind: Kind) -> Vec<String> {
        match kind {
            Kind::Cluster | Kind::Listener => Vec::new(),
            Kind::Endpoint => self.eds_names.clone(),
            Kind::Route => self.rds_names.clone(),
        }
    }
}

/// Subscribes to CDS, EDS, LDS and RDS the way Envoy does (CDS wildcard; ACK + EDS for the
/// EDS clusters; LDS wildcard; ACK + RDS for the listeners' routes) and ACKs everything.
async fn sotw_subscribe_all(c: &mut SotwClient, cp: &ControlPlane) -> SotwSync {
    c.send(Kind::Cluster, &[], "", "", None).await;
    let cds = c.recv_kind(Kind::Cluster, "initial CDS").await;
    let eds_names: Vec<String> = eds_clusters(&bodies(&cds)).into_iter().collect();
    assert!(
        !eds_names.is_empty(),
        "STATIC ServiceEntries give EDS clusters"
    );
    c.ack(&cds, &[]).await;
    c.send(Kind::Endpoint, &eds_names, "", "", None).await;
    let eds = c.recv_kind(Kind::Endpoint, "initial EDS").await;
    assert_eq!(sotw_names(&eds), eds_names.iter().cloned().collect());
    c.ack(&eds, &eds_names).await;
    c.send(Kind::Listener, &[], "", "", None).await;
    let lds = c.recv_kind(Kind::Listener, "initial LDS").await;
    let rds_names: Vec<String> = rds_names(&bodies(&lds)).into_iter().collect();
    assert!(!rds_names.is_empty(), "HTTP ports give RDS routes");
    c.ack(&lds, &[]).await;
    c.send(Kind::Route, &rds_names, "", "", None).await;
    let rds = c.recv_kind(Kind::Route, "initial RDS").await;
    assert_eq!(sotw_names(&rds), rds_names.iter().cloned().collect());
    c.ack(&rds, &rds_names).await;
    for r in [&cds, &eds, &lds, &rds] {
        cp.acked(kind_of(&r.type_url), &r.version_info).await;
    }
    c.quiet("everything ACKed").await;
    SotwSync {
        eds_names,
        rds_names,
        last: [cds, eds, lds, rds]
            .into_iter()
            .map(|r| (kind_of(&r.type_url), r))
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------
// SotW tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_initial_wildcard_cds_then_ack_sends_nothing() {
    let cp = ControlPlane::start(&[
        ("a.yaml", se("a", "a.example.com", &[8080], &["127.0.0.1"])),
        (
            "b.yaml",
            se("b", "b.example.com", &[9090, 9091], &["127.0.0.2"]),
        ),
    ])
    .await;
    let mut c = SotwClient::connect(cp.addr).await;
    c.send(Kind::Cluster, &[], "", "", None).await;
    let cds = c.recv_kind(Kind::Cluster, "initial CDS").await;
    let names = sotw_names(&cds);
    for want in [
        cluster_name("a.example.com", 8080),
        cluster_name("b.example.com", 9090),
        cluster_name("b.example.com", 9091),
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(
        !names.contains(&cluster_name("a.example.com", 9090)),
        "a port that a ServiceEntry does not declare: {names:?}"
    );

    // syncz shows the push before the ACK, with nothing ACKed.
    let t = eventually("CDS sent in syncz", || cp.type_status(Kind::Cluster)).await;
    assert_eq!(t["sent_version"], cds.version_info.as_str());
    assert_eq!(t["sent_nonce"], cds.nonce.as_str());
    assert_eq!(t["resources"], cds.resources.len());
    assert_eq!(t["acked_version"], "");

    c.ack(&cds, &[]).await;
    cp.acked(Kind::Cluster, &cds.version_info).await;
    c.quiet("after the CDS ACK").await;
    // A repeated ACK (Envoy re-sends its last request) is no reason to push either.
    c.ack(&cds, &[]).await;
    c.quiet("after a repeated ACK").await;
    assert!(cp.nacks().is_empty(), "{:?}", cp.nacks());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_nack_is_recorded_and_the_stream_keeps_serving() {
    let mut cp =
        ControlPlane::start(&[("a.yaml", se("a", "a.example.com", &[8080], &["127.0.0.1"]))]).await;
    let mut c = SotwClient::connect(cp.addr).await;
    c.send(Kind::Cluster, &[], "", "", None).await;
    let first = c.recv_kind(Kind::Cluster, "initial CDS").await;
    c.ack(&first, &[]).await;
    cp.acked(Kind::Cluster, &first.version_info).await;

    cp.write("b.yaml", &se("b", "b.example.com", &[9090], &["127.0.0.2"]));
    let second = c.recv_kind(Kind::Cluster, "CDS after adding b").await;
    assert!(sotw_names(&second).contains(&cluster_name("b.example.com", 9090)));
    assert_ne!(second.version_info, first.version_info);
    assert_ne!(second.nonce, first.nonce);
    // Envoy's NACK carries the last accepted version and the rejected nonce.
    c.send(
        Kind::Cluster,
        &[],
        &first.version_info,
        &second.nonce,
        Some(rejection("cluster b: boom")),
    )
    .await;
    let t = eventually("NACK in syncz", || {
        let t = cp.type_status(Kind::Cluster)?;
        (!t["last_nack"].is_null()).then_some(t)
    })
    .await;
    assert_eq!(t["last_nack"], "cluster b: boom");
    assert_eq!(t["acked_version"], first.version_info.as_str());
    assert_eq!(t["sent_version"], second.version_info.as_str());
    assert_eq!(cp.nacks(), BTreeMap::from([("cds".to_string(), 1)]));
    let metrics = cp.metrics_text();
    assert!(
        metrics.contains("entryway_nacks_total{type=\"cds\"} 1\n"),
        "{metrics}"
    );
    // Not resent until the configuration changes.
    c.quiet("after a NACK").await;

    // The stream is still up: a later change is pushed and its ACK clears the NACK.
    cp.write("c.yaml", &se("c", "c.example.com", &[7070], &["127.0.0.3"]));
    let third = c.recv_kind(Kind::Cluster, "CDS after adding c").await;
    let names = sotw_names(&third);
    assert!(names.contains(&cluster_name("c.example.com", 7070)));
    assert!(names.contains(&cluster_name("b.example.com", 9090)));
    c.ack(&third, &[]).await;
    cp.acked(Kind::Cluster, &third.version_info).await;
    assert_eq!(cp.nacks(), BTreeMap::from([("cds".to_string(), 1)]));
    assert_eq!(cp.syncz().as_array().map(Vec::len), Some(1), "one stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_stale_nonce_is_ignored() {
    let mut cp =
        ControlPlane::start(&[("a.yaml", se("a", "a.example.com", &[8080], &["127.0.0.1"]))]).await;
    let mut c = SotwClient::connect(cp.addr).await;
    c.send(Kind::Cluster, &[], "", "", None).await;
    let first = c.recv_kind(Kind::Cluster, "initial CDS").await;
    // No ACK yet: a change makes the first response stale.
    cp.write("b.yaml", &se("b", "b.example.com", &[9090], &["127.0.0.2"]));
    let second = c.recv_kind(Kind::Cluster, "CDS after adding b").await;

    // A NACK and an ACK of the older response change nothing and are not answered.
    c.send(
        Kind::Cluster,
        &[],
        "",
        &first.nonce,
        Some(rejection("stale rejection")),
    )
    .await;
    c.ack(&first, &[]).await;
    c.quiet("after stale requests").await;
    let t = cp.type_status(Kind::Cluster).expect("CDS status");
    assert!(t["last_nack"].is_null(), "{t:#}");
    assert_eq!(t["acked_version"], "", "a stale ACK is not an ACK: {t:#}");
    assert!(cp.nacks().is_empty(), "{:?}", cp.nacks());

    c.ack(&second, &[]).await;
    cp.acked(Kind::Cluster, &second.version_info).await;
    c.quiet("after the ACK of the latest response").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_pushes_in_order_and_resends_eds_after_a_cluster_change() {
    let mut cp =
        ControlPlane::start(&[("a.yaml", se("a", "a.example.com", &[8080], &["127.0.0.1"]))]).await;
    let mut c = SotwClient::connect(cp.addr).await;
    let mut sync = sotw_subscribe_all(&mut c, &cp).await;

    // A change touching all four types: a new service on the existing port (CDS, RDS) and
    // on a new port (CDS, LDS); EDS is resent after CDS.
    cp.write(
        "b.yaml",
        &se("b", "b.example.com", &[8080, 9090], &["127.0.0.2"]),
    );
    let pushed = c.drain().await;
    let kinds: Vec<Kind> = pushed.iter().map(|r| kind_of(&r.type_url)).collect();
    assert_eq!(kinds, Kind::PUSH_ORDER.to_vec(), "push order");
    let names = sotw_names(&pushed[0]);
    assert!(names.contains(&cluster_name("b.example.com", 8080)));
    assert!(names.contains(&cluster_name("b.example.com", 9090)));
    // EDS was resent with the current subscription although its content did not change.
    assert_eq!(
        pushed[1].version_info,
        sync.last[&Kind::Endpoint].version_info
    );
    assert_eq!(
        sotw_names(&pushed[1]),
        sync.eds_names.iter().cloned().collect()
    );
    for r in &pushed {
        let kind = kind_of(&r.type_url);
        c.ack(r, &sync.names(kind)).await;
        cp.acked(kind, &r.version_info).await;
        sync.last.insert(kind, r.clone());
    }
    c.quiet("everything ACKed after the change").await;

    // Envoy then subscribes to the new EDS clusters: answered with all subscribed names.
    sync.eds_names = eds_clusters(&bodies(&pushed[0])).into_iter().collect();
    let eds_req = &sync.last[&Kind::Endpoint];
    c.send(
        Kind::Endpoint,
        &sync.eds_names,
        &eds_req.version_info,
        &eds_req.nonce,
        None,
    )
    .await;
    let eds = c.recv_kind(Kind::Endpoint, "EDS for new names").await;
    assert_eq!(sotw_names(&eds), sync.eds_names.iter().cloned().collect());
    c.ack(&eds, &sync.eds_names).await;
    cp.acked(Kind::Endpoint, &eds.version_info).await;
    c.quiet("EDS ACKed").await;

    // A change of a cluster only (pitfall 1): CDS, then the unchanged EDS again, nothing else.
    cp.write("dr.yaml", &dr("a.example.com", 7));
    let pushed = c.drain().await;
    let kinds: Vec<Kind> = pushed.iter().map(|r| kind_of(&r.type_url)).collect();
    assert_eq!(kinds, vec![Kind::Cluster, Kind::Endpoint]);
    assert_ne!(
        pushed[0].version_info,
        sync.last[&Kind::Cluster].version_info
    );
    assert_eq!(pushed[1].version_info, eds.version_info, "same endpoints");
    assert_eq!(
        sotw_names(&pushed[1]),
        sync.eds_names.iter().cloned().collect()
    );
    for r in &pushed {
        let kind = kind_of(&r.type_url);
        c.ack(r, &sync.names(kind)).await;
        cp.acked(kind, &r.version_info).await;
    }
    c.quiet("everything ACKed after the cluster change").await;

    // An endpoint-only change: EDS alone.
    cp.write(
        "a.yaml",
        &se("a", "a.example.com", &[8080], &["127.0.0.1", "127.0.0.9"]),
    );
    let pushed = c.drain().await;
    let kinds: Vec<Kind> = pushed.iter().map(|r| kind_of(&r.type_url)).collect();
    assert_eq!(kinds, vec![Kind::Endpoint]);

    // Every response is a push in both metrics: initial, request-driven and
    // change-driven ones alike (issue 11 item 7: 4 of 38 were timed).
    let pushes: u64 = cp.shared.metrics.pushes.values().values().sum();
    assert!(pushes >= 12, "{pushes} pushes");
    let text = cp.metrics_text();
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix("entryway_push_seconds_count "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no push_seconds count in\n{text}"));
    assert_eq!(
        count, pushes,
        "entryway_push_seconds counts every push\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_no_push_when_a_reload_changes_nothing() {
    let mut cp =
        ControlPlane::start(&[("a.yaml", se("a", "a.example.com", &[8080], &["127.0.0.1"]))]).await;
    let mut c = SotwClient::connect(cp.addr).await;
    let _sync = sotw_subscribe_all(&mut c, &cp).await;
    let before = cp.store.version();

    // A comment: nothing published.
    let text = se("a", "a.example.com", &[8080], &["127.0.0.1"]) + "# a comment\n";
    std::fs::write(cp.dir.path().join("a.yaml"), text).expect("write");
    let o = cp.reload();
    assert_eq!(o.published, None, "{o:?}");
    c.quiet("after a comment-only edit").await;

    // A new snapshot that changes nothing this proxy sees: a service exported only to
    // another namespace.
    let hidden = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: hidden\n  namespace: other\nspec:\n  hosts: [hidden.example.com]\n  exportTo: [\".\"]\n  ports:\n  - number: 6060\n    name: http\n    protocol: HTTP\n  resolution: STATIC\n  endpoints:\n  - address: 127.0.0.4\n";
    let v = cp.write("hidden.yaml", hidden);
    assert!(v > before);
    c.quiet("after a change invisible to the proxy").await;
    let p = cp.syncz();
    assert_eq!(p[0]["snapshot_version"], before, "nothing pushed: {p:#}");
}

// ---------------------------------------------------------------------------------------
// Delta client

struct DeltaClient {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

#[derive(Default)]
struct DeltaReq {
    subscribe: Vec<String>,
    unsubscribe: Vec<String>,
    initial: BTreeMap<String, String>,
    nonce: String,
    error: Option<RpcStatus>,
}

impl DeltaClient {
    async fn connect(addr: SocketAddr) -> DeltaClient {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let (tx, rx) = mpsc::channel(16);
        let rx = client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("open Delta stream")
            .into_inner();
        DeltaClient { tx, rx }
    }

    async fn send(&self, kind: Kind, r: DeltaReq) {
        self.tx
            .send(DeltaDiscoveryRequest {
                node: Some(node()),
                type_url: kind.type_url().to_string(),
                resource_names_subscribe: r.subscribe,
                resource_names_unsubscribe: r.unsubscribe,
                initial_resource_versions: r.initial.into_iter().collect(),
                response_nonce: r.nonce,
                error_detail: r.error,
                ..Default::default()
            })
            .await
            .expect("send request");
    }

    async fn ack(&self, r: &DeltaDiscoveryResponse) {
        self.send(
            kind_of(&r.type_url),
            DeltaReq {
                nonce: r.nonce.clone(),
                ..Default::default()
            },
        )
        .await;
    }

    async fn recv(&mut self, kind: Kind, what: &str) -> DeltaDiscoveryResponse {
        let r = match tokio::time::timeout(BOUND, self.rx.message()).await {
            Err(_) => panic!("no response within {BOUND:?}: {what}"),
            Ok(Err(status)) => panic!("stream failed waiting for {what}: {status}"),
            Ok(Ok(None)) => panic!("stream ended waiting for {what}"),
            Ok(Ok(Some(r))) => r,
        };
        assert_eq!(kind_of(&r.type_url), kind, "{what}: response type");
        assert!(!r.nonce.is_empty(), "{what}: nonce");
        assert!(!r.system_version_info.is_empty(), "{what}: version");
        r
    }

    async fn quiet(&mut self, what: &str) {
        if let Ok(r) = tokio::time::timeout(QUIET, self.rx.message()).await {
            match r {
                Ok(Some(r)) => panic!(
                    "{what}: expected nothing, got {} with {:?} removed {:?}",
                    kind_of(&r.type_url),
                    delta_versions(&r).keys().collect::<Vec<_>>(),
                    r.removed_resources
                ),
                other => panic!("{what}: stream ended: {other:?}"),
            }
        }
    }
}

/// Name → version of the resources in a Delta response (checking that each body is the
/// named resource).
fn delta_versions(r: &DeltaDiscoveryResponse) -> BTreeMap<String, String> {
    let kind = kind_of(&r.type_url);
    r.resources
        .iter()
        .map(|res| {
            let any = res.resource.as_ref().expect("resource body");
            assert_eq!(any.type_url, kind.type_url());
            assert_eq!(resource_name(kind, &any.value), res.name, "name vs body");
            assert!(!res.version.is_empty(), "{}: version", res.name);
            (res.name.clone(), res.version.clone())
        })
        .collect()
}

fn keys(m: &BTreeMap<String, String>) -> BTreeSet<String> {
    m.keys().cloned().collect()
}

// ---------------------------------------------------------------------------------------
// Delta tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_sends_everything_then_only_changes_and_removals() {
    let mut cp = ControlPlane::start(&[
        ("a.yaml", se("a", "a.example.com", &[8080], &["127.0.0.1"])),
        ("b.yaml", se("b", "b.example.com", &[9090], &["127.0.0.2"])),
    ])
    .await;
    let mut c = DeltaClient::connect(cp.addr).await;
    c.send(Kind::Cluster, DeltaReq::default()).await;
    let first = c.recv(Kind::Cluster, "initial CDS").await;
    let all = delta_versions(&first);
    assert!(all.contains_key(&cluster_name("a.example.com", 8080)));
    assert!(all.contains_key(&cluster_name("b.example.com", 9090)));
    assert!(first.removed_resources.is_empty());
    c.ack(&first).await;
    cp.acked(Kind::Cluster, &first.system_version_info).await;
    c.quiet("after the ACK").await;

    // A changed cluster: only it.
    cp.write("dr.yaml", &dr("a.example.com", 3));
    let changed = c.recv(Kind::Cluster, "CDS after a DestinationRule").await;
    let v = delta_versions(&changed);
    let a = cluster_name("a.example.com", 8080);
    assert_eq!(keys(&v), BTreeSet::from([a.clone()]));
    assert_ne!(v[&a], all[&a], "a new version of the changed cluster");
    assert!(changed.removed_resources.is_empty());
    c.ack(&changed).await;
    cp.acked(Kind::Cluster, &changed.system_version_info).await;

    // A new cluster: only it.
    cp.write("c.yaml", &se("c", "c.example.com", &[7070], &["127.0.0.3"]));
    let added = c.recv(Kind::Cluster, "CDS after adding c").await;
    assert_eq!(
        keys(&delta_versions(&added)),
        BTreeSet::from([cluster_name("c.example.com", 7070)])
    );
    c.ack(&added).await;

    // A removed service: its cluster in removed_resources, nothing else.
    cp.remove("b.yaml");
    let removed = c.recv(Kind::Cluster, "CDS after removing b").await;
    assert!(
        removed.resources.is_empty(),
        "{:?}",
        delta_versions(&removed)
    );
    assert_eq!(
        removed.removed_resources,
        vec![cluster_name("b.example.com", 9090)]
    );
    c.ack(&removed).await;
    cp.acked(Kind::Cluster, &removed.system_version_info).await;
    c.quiet("after the removal ACK").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_reconnect_resends_only_stale_resources() {
    let mut cp = ControlPlane::start(&[
        ("a.yaml", se("a", "a.example.com", &[8080], &["127.0.0.1"])),
        ("b.yaml", se("b", "b.example.com", &[9090], &["127.0.0.2"])),
        ("c.yaml", se("c", "c.example.com", &[7070], &["127.0.0.3"])),
    ])
    .await;
    let held = {
        let mut c = DeltaClient::connect(cp.addr).await;
        c.send(Kind::Cluster, DeltaReq::default()).await;
        let first = c.recv(Kind::Cluster, "initial CDS").await;
        c.ack(&first).await;
        cp.acked(Kind::Cluster, &first.system_version_info).await;
        delta_versions(&first)
    };
    eventually("the first stream to go away", || {
        cp.syncz()
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    })
    .await;

    // While disconnected: a changes, b goes away, d appears, c stays.
    cp.write("dr.yaml", &dr("a.example.com", 5));
    cp.remove("b.yaml");
    cp.write("d.yaml", &se("d", "d.example.com", &[6060], &["127.0.0.4"]));

    let mut c = DeltaClient::connect(cp.addr).await;
    c.send(
        Kind::Cluster,
        DeltaReq {
            initial: held.clone(),
            ..Default::default()
        },
    )
    .await;
    let r = c.recv(Kind::Cluster, "CDS after reconnecting").await;
    let sent = delta_versions(&r);
    let a = cluster_name("a.example.com", 8080);
    assert_eq!(
        keys(&sent),
        BTreeSet::from([a.clone(), cluster_name("d.example.com", 6060)]),
        "only the stale and the new cluster"
    );
    assert_ne!(sent[&a], held[&a]);
    assert_eq!(
        r.removed_resources,
        vec![cluster_name("b.example.com", 9090)]
    );
    c.ack(&r).await;
    cp.acked(Kind::Cluster, &r.system_version_info).await;
    c.quiet("after the reconnect ACK").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_unsubscribed_resources_are_no_longer_pushed() {
    let mut cp = ControlPlane::start(&[
        ("a.yaml", se("a", "a.example.com", &[8080], &["127.0.0.1"])),
        ("b.yaml", se("b", "b.example.com", &[9090], &["127.0.0.2"])),
    ])
    .await;
    let a = cluster_name("a.example.com", 8080);
    let b = cluster_name("b.example.com", 9090);
    let mut c = DeltaClient::connect(cp.addr).await;
    c.send(
        Kind::Endpoint,
        DeltaReq {
            subscribe: vec![a.clone(), b.clone()],
            ..Default::default()
        },
    )
    .await;
    let first = c.recv(Kind::Endpoint, "initial EDS").await;
    assert_eq!(
        keys(&delta_versions(&first)),
        BTreeSet::from([a.clone(), b.clone()])
    );
    c.ack(&first).await;
    cp.acked(Kind::Endpoint, &first.system_version_info).await;

    c.send(
        Kind::Endpoint,
        DeltaReq {
            unsubscribe: vec![b.clone()],
            ..Default::default()
        },
    )
    .await;
    c.quiet("an unsubscribe needs no answer").await;
    cp.write(
        "b.yaml",
        &se("b", "b.example.com", &[9090], &["127.0.0.2", "127.0.0.5"]),
    );
    c.quiet("b's endpoints changed after unsubscribing").await;

    cp.write(
        "a.yaml",
        &se("a", "a.example.com", &[8080], &["127.0.0.1", "127.0.0.6"]),
    );
    let r = c
        .recv(Kind::Endpoint, "EDS after a's endpoints changed")
        .await;
    assert_eq!(keys(&delta_versions(&r)), BTreeSet::from([a.clone()]));
    assert!(r.removed_resources.is_empty());
    c.ack(&r).await;

    // Subscribing again sends b's current endpoints.
    c.send(
        Kind::Endpoint,
        DeltaReq {
            subscribe: vec![b.clone()],
            ..Default::default()
        },
    )
    .await;
    let r = c
        .recv(Kind::Endpoint, "EDS after subscribing to b again")
        .await;
    assert_eq!(keys(&delta_versions(&r)), BTreeSet::from([b.clone()]));
    let cla = ClusterLoadAssignment::decode(
        r.resources[0]
            .resource
            .as_ref()
            .expect("body")
            .value
            .as_slice(),
    )
    .expect("CLA");
    let endpoints: usize = cla.endpoints.iter().map(|l| l.lb_endpoints.len()).sum();
    assert_eq!(endpoints, 2, "b's current endpoints: {cla:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_ack_nack_and_stale_nonces() {
    let mut cp =
        ControlPlane::start(&[("a.yaml", se("a", "a.example.com", &[8080], &["127.0.0.1"]))]).await;
    let mut c = DeltaClient::connect(cp.addr).await;
    c.send(Kind::Cluster, DeltaReq::default()).await;
    let first = c.recv(Kind::Cluster, "initial CDS").await;
    c.ack(&first).await;
    cp.acked(Kind::Cluster, &first.system_version_info).await;

    cp.write("b.yaml", &se("b", "b.example.com", &[9090], &["127.0.0.2"]));
    let second = c.recv(Kind::Cluster, "CDS after adding b").await;
    c.send(
        Kind::Cluster,
        DeltaReq {
            nonce: second.nonce.clone(),
            error: Some(rejection("delta boom")),
            ..Default::default()
        },
    )
    .await;
    let t = eventually("NACK in syncz", || {
        let t = cp.type_status(Kind::Cluster)?;
        (!t["last_nack"].is_null()).then_some(t)
    })
    .await;
    assert_eq!(t["last_nack"], "delta boom");
    assert_eq!(t["acked_version"], first.system_version_info.as_str());
    assert_eq!(cp.nacks(), BTreeMap::from([("cds".to_string(), 1)]));
    assert!(
        cp.metrics_text()
            .contains("entryway_nacks_total{type=\"cds\"} 1\n")
    );
    c.quiet("a NACKed resource is not resent").await;

    // The next change is pushed on the same stream; then an answer to the older response is
    // stale and ignored.
    cp.write("c.yaml", &se("c", "c.example.com", &[7070], &["127.0.0.3"]));
    let third = c.recv(Kind::Cluster, "CDS after adding c").await;
    assert_eq!(
        keys(&delta_versions(&third)),
        BTreeSet::from([cluster_name("c.example.com", 7070)])
    );
    c.send(
        Kind::Cluster,
        DeltaReq {
            nonce: second.nonce.clone(),
            error: Some(rejection("stale")),
            ..Default::default()
        },
    )
    .await;
    c.quiet("after a stale NACK").await;
    assert_eq!(cp.nacks(), BTreeMap::from([("cds".to_string(), 1)]));
    let t = cp.type_status(Kind::Cluster).expect("status");
    assert_eq!(t["last_nack"], Value::Null, "a new push clears the NACK");

    c.ack(&third).await;
    cp.acked(Kind::Cluster, &third.system_version_info).await;
    c.quiet("after the ACK").await;
}

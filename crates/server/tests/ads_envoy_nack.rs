//! A real Envoy rejecting a pushed configuration, over SotW and Delta ADS.
//!
//! The server's generate hook injects a cluster Envoy rejects (a STATIC cluster whose endpoint
//! address is not an IP literal: it encodes fine and only Envoy's validation refuses it).
//! Checked: the NACK shows in `/debug/syncz` (with Envoy's message) and in `/metrics` (NACKs
//! by type); the stream stays up (the same connection on both sides); the next good config is
//! ACKed and is what Envoy's `config_dump` shows.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use entryway_agent::bootstrap::{
    AdsApiType, AdsOptions as BootstrapAds, BootstrapOptions, XdsAddress,
};
use entryway_server::admin;
use entryway_server::ads::{self, AdsOptions, GenerateHook, Kind};
use entryway_server::shared::Shared;
use entryway_server::store::{Store, StoreOptions};
use entryway_testkit::{EnvoyHarness, EnvoyProcess, free_port};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use serde_json::Value;
use tokio::sync::oneshot;

const BOUND: Duration = Duration::from_secs(20);
const BAD_CLUSTER: &str = "entryway-test-bad-cluster";
const BAD_ADDRESS: &str = "not-an-ip-address";
const NODE_ID: &str = "sidecar~127.0.0.1~nack.default~default.svc.cluster.local";

fn se(name: &str, port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  hosts: [{name}.example.com]\n  ports:\n  - number: {port}\n    name: http\n    protocol: HTTP\n  resolution: STATIC\n  endpoints:\n  - address: 127.0.0.1\n"
    )
}

fn cluster_name(name: &str, port: u16) -> String {
    format!("outbound|{port}||{name}.example.com")
}

fn socket(address: &str, port: u16) -> Address {
    Address {
        address: Some(AddressKind::SocketAddress(SocketAddress {
            address: address.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

/// A cluster that encodes but that Envoy rejects: its endpoint address is not an IP.
fn bad_cluster() -> Cluster {
    Cluster {
        name: BAD_CLUSTER.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(ProtoDuration {
            seconds: 1,
            nanos: 0,
        }),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: BAD_CLUSTER.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket(BAD_ADDRESS, 80)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The hook: the capture listener on loopback at `outbound_port` (so parallel tests do not
/// share 0.0.0.0:15001), plus the bad cluster while `inject` is set.
fn hook(inject: Arc<AtomicBool>, outbound_port: u16) -> GenerateHook {
    Arc::new(move |_proxy, _snapshot, cfg| {
        for l in &mut cfg.listeners {
            let binds = l.bind_to_port.as_ref().is_none_or(|b| b.value);
            if binds {
                l.address = Some(socket("127.0.0.1", outbound_port));
            }
        }
        if inject.load(Ordering::SeqCst) {
            cfg.clusters.push(bad_cluster());
        }
    })
}

struct ControlPlane {
    dir: tempfile::TempDir,
    store: Store,
    shared: Arc<Shared>,
    addr: SocketAddr,
    inject: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
}

impl ControlPlane {
    async fn start() -> ControlPlane {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), se("a", 8080)).expect("write");
        let (store, shared) =
            Store::open(StoreOptions::new(vec![dir.path().to_path_buf()])).expect("open store");
        let listener = ads::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let inject = Arc::new(AtomicBool::new(false));
        let options = AdsOptions {
            generate_hook: Some(hook(Arc::clone(&inject), free_port().expect("port"))),
            ..Default::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
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
            inject,
            stop: Some(stop),
        }
    }

    fn write(&mut self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).expect("write config");
        let o = tokio::task::block_in_place(|| self.store.reload());
        assert!(o.published.is_some(), "writing {name} published nothing");
    }

    fn syncz(&self) -> Value {
        let r = admin::handle(&self.shared, "/debug/syncz");
        assert_eq!(r.status, 200);
        serde_json::from_str(&r.body).expect("syncz JSON")
    }

    fn metrics(&self) -> String {
        admin::handle(&self.shared, "/metrics").body
    }

    fn connections(&self) -> BTreeSet<u64> {
        self.shared
            .proxies
            .lock()
            .map(|p| p.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The syncz status of `kind` of the one connected proxy.
    fn status(&self, kind: Kind) -> Option<Value> {
        let v = self.syncz();
        let p = v.as_array()?;
        assert!(p.len() <= 1, "one proxy: {v:#}");
        p.first()?["types"].get(kind.type_url()).cloned()
    }

    /// True when every type was sent and the latest of each is ACKed.
    fn all_acked(&self) -> bool {
        Kind::PUSH_ORDER.iter().all(|k| {
            self.status(*k).is_some_and(|t| {
                t["sent_version"] != ""
                    && t["acked_version"] == t["sent_version"]
                    && t["last_nack"].is_null()
            })
        })
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn eventually<T>(what: &str, envoy: &EnvoyProcess, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if let Some(status) = envoy.try_wait() {
            panic!(
                "Envoy exited ({status}) while waiting for {what}\n{}",
                envoy.log_tail(40)
            );
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "timed out after {BOUND:?} waiting for: {what}\nEnvoy log:\n{}",
                envoy.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn active_clusters(envoy: &EnvoyProcess) -> BTreeSet<String> {
    let dump =
        tokio::task::block_in_place(|| envoy.config_dump_resource("dynamic_active_clusters"))
            .expect("config_dump");
    dump["configs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["cluster"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn envoy_stat(envoy: &EnvoyProcess, name: &str) -> u64 {
    tokio::task::block_in_place(|| envoy.stat(name))
        .expect("stats")
        .unwrap_or(0)
}

async fn nack_keeps_the_stream(api: AdsApiType) {
    let harness = EnvoyHarness::require();
    let mut cp = ControlPlane::start().await;
    let bootstrap = BootstrapOptions::new(NODE_ID, "nack.default")
        .with_admin_port(0)
        .with_ads(BootstrapAds::new(
            api,
            XdsAddress::new("127.0.0.1", cp.addr.port()),
        ))
        .render();
    let envoy = tokio::task::block_in_place(|| harness.start(&bootstrap))
        .unwrap_or_else(|e| panic!("Envoy did not start: {e}"));

    // Initial configuration: everything ACKed, a's cluster active in Envoy.
    eventually("every type ACKed", &envoy, || cp.all_acked().then_some(())).await;
    let syncz = cp.syncz();
    let protocol = match api {
        AdsApiType::Grpc => "sotw",
        AdsApiType::DeltaGrpc => "delta",
    };
    assert_eq!(syncz[0]["protocol"], protocol, "{syncz:#}");
    assert_eq!(syncz[0]["node_id"], NODE_ID);
    let a = cluster_name("a", 8080);
    eventually("a's cluster active in Envoy", &envoy, || {
        active_clusters(&envoy).contains(&a).then_some(())
    })
    .await;
    let connections = cp.connections();
    assert_eq!(connections.len(), 1);
    let acked_before = cp.status(Kind::Cluster).expect("CDS status")["acked_version"].clone();

    // A change whose generated config carries the bad cluster: Envoy NACKs CDS.
    cp.inject.store(true, Ordering::SeqCst);
    cp.write("b.yaml", &se("b", 9090));
    let nack = eventually("the CDS NACK in /debug/syncz", &envoy, || {
        cp.status(Kind::Cluster)
            .and_then(|t| t["last_nack"].as_str().map(str::to_owned))
    })
    .await;
    assert!(
        nack.contains(BAD_ADDRESS),
        "Envoy's message names the bad address: {nack}"
    );
    let t = cp.status(Kind::Cluster).expect("CDS status");
    assert_eq!(
        t["acked_version"], acked_before,
        "the NACKed version is not ACKed"
    );
    assert_eq!(
        cp.shared.metrics.nacks.values().get("cds"),
        Some(&1),
        "{:?}",
        cp.shared.metrics.nacks.values()
    );
    let metrics = cp.metrics();
    assert!(
        metrics.contains("entryway_nacks_total{type=\"cds\"} 1\n"),
        "{metrics}"
    );
    eventually("Envoy counting the rejected CDS update", &envoy, || {
        (envoy_stat(&envoy, "cluster_manager.cds.update_rejected") >= 1).then_some(())
    })
    .await;
    assert!(
        !active_clusters(&envoy).contains(BAD_CLUSTER),
        "Envoy did not take the bad cluster"
    );

    // The next good configuration is ACKed on the same stream and is what Envoy runs.
    cp.inject.store(false, Ordering::SeqCst);
    cp.write("c.yaml", &se("c", 7070));
    let c = cluster_name("c", 7070);
    eventually("every type ACKed after the good change", &envoy, || {
        cp.all_acked().then_some(())
    })
    .await;
    let active = eventually("c's cluster active in Envoy", &envoy, || {
        let active = active_clusters(&envoy);
        active.contains(&c).then_some(active)
    })
    .await;
    assert!(active.contains(&a), "{active:?}");
    assert!(active.contains(&cluster_name("b", 9090)), "{active:?}");
    assert!(!active.contains(BAD_CLUSTER), "{active:?}");
    let t = cp.status(Kind::Cluster).expect("CDS status");
    assert_ne!(t["acked_version"], acked_before);
    assert_eq!(cp.connections(), connections, "the same ADS stream");
    assert_eq!(
        envoy_stat(&envoy, "cluster.xds-grpc.upstream_cx_total"),
        1,
        "Envoy never reconnected"
    );
    assert_eq!(envoy_stat(&envoy, "control_plane.connected_state"), 1);
    assert_eq!(
        cp.shared.metrics.nacks.values().get("cds"),
        Some(&1),
        "one NACK in total"
    );
    assert!(
        envoy_stat(&envoy, "cluster_manager.cds.update_success") >= 2,
        "the initial and the last CDS update were accepted"
    );
    tokio::task::block_in_place(|| envoy.shutdown()).expect("Envoy shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_nack_from_envoy_keeps_the_stream() {
    nack_keeps_the_stream(AdsApiType::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_nack_from_envoy_keeps_the_stream() {
    nack_keeps_the_stream(AdsApiType::DeltaGrpc).await;
}

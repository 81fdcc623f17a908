//! A real Envoy taking Delta CDS pushes that the control plane splits into several responses
//! (`ads::delta::max_response_bytes`, 256 KiB): every cluster of a configuration well above
//! that size ends up active (none left warming: the EDS responses that follow the CDS chunks
//! cover every EDS cluster), every type is ACKed in `/debug/syncz`, a later change is
//! delivered, and a NACK of the first chunk of a push shows as the push's NACK even though
//! Envoy ACKs the chunks after it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
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

const BOUND: Duration = Duration::from_secs(60);
/// ServiceEntries in the corpus, two HTTP ports each.
const SERVICES: usize = 800;
/// Sorts before every generated cluster name, so it lands in the first CDS chunk.
const BAD_CLUSTER: &str = "0-entryway-test-bad-cluster";
const BAD_ADDRESS: &str = "not-an-ip-address";
const NODE_ID: &str = "sidecar~127.0.0.1~chunks.default~default.svc.cluster.local";

fn host(i: usize) -> String {
    format!("svc-{i:04}.chunked-delta.example.com")
}

fn corpus(services: std::ops::Range<usize>, first_port: u16) -> String {
    let mut s = String::new();
    for i in services {
        let port = if i == 0 { first_port } else { 8080 };
        let _ = write!(
            s,
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se-{i}\n  namespace: default\nspec:\n  hosts: [{h}]\n  ports:\n  - {{number: {port}, name: http, protocol: HTTP}}\n  - {{number: 9090, name: http-admin, protocol: HTTP}}\n  resolution: STATIC\n  endpoints:\n  - address: 127.0.0.1\n",
            h = host(i)
        );
    }
    s
}

fn cluster_name(i: usize, port: u16) -> String {
    format!("outbound|{port}||{}", host(i))
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

/// The capture listener on loopback at `outbound_port` (parallel tests must not share
/// 0.0.0.0:15001), plus the bad cluster while `inject` is set.
fn hook(inject: Arc<AtomicBool>, outbound_port: u16) -> GenerateHook {
    Arc::new(move |_proxy, _snapshot, cfg| {
        for l in &mut cfg.listeners {
            if l.bind_to_port.as_ref().is_none_or(|b| b.value) {
                l.address = Some(socket("127.0.0.1", outbound_port));
            }
        }
        if inject.load(Ordering::SeqCst) {
            cfg.clusters.insert(0, bad_cluster());
        }
    })
}

struct ControlPlane {
    dir: tempfile::TempDir,
    store: Store,
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl ControlPlane {
    async fn start(inject: Arc<AtomicBool>) -> ControlPlane {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), corpus(0..SERVICES, 8080)).expect("write");
        let (store, shared) =
            Store::open(StoreOptions::new(vec![dir.path().to_path_buf()])).expect("open store");
        assert!(
            store.state().rejections().is_empty(),
            "{:?}",
            store.state().rejections()
        );
        let listener = ads::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let options = AdsOptions {
            generate_hook: Some(hook(inject, free_port().expect("port"))),
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

    fn status(&self, kind: Kind) -> Option<Value> {
        let v = self.syncz();
        let p = v.as_array()?;
        assert!(p.len() <= 1, "one proxy: {v:#}");
        p.first()?["types"].get(kind.type_url()).cloned()
    }

    fn all_acked(&self) -> bool {
        Kind::PUSH_ORDER.iter().all(|k| {
            self.status(*k).is_some_and(|t| {
                t["sent_version"] != ""
                    && t["acked_version"] == t["sent_version"]
                    && t["last_nack"].is_null()
            })
        })
    }

    /// Responses pushed so far of `kind` (each chunk counts).
    fn pushes(&self, kind: Kind) -> u64 {
        self.shared
            .metrics
            .pushes
            .values()
            .get(kind.label())
            .copied()
            .unwrap_or(0)
    }

    fn nacks(&self, kind: Kind) -> u64 {
        self.shared
            .metrics
            .nacks
            .values()
            .get(kind.label())
            .copied()
            .unwrap_or(0)
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
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn dynamic_clusters(envoy: &EnvoyProcess, which: &str) -> BTreeSet<String> {
    let dump =
        tokio::task::block_in_place(|| envoy.config_dump_resource(which)).expect("config_dump");
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

fn start_envoy(harness: &EnvoyHarness, cp: &ControlPlane) -> EnvoyProcess {
    let bootstrap = BootstrapOptions::new(NODE_ID, "chunks.default")
        .with_admin_port(0)
        .with_ads(BootstrapAds::new(
            AdsApiType::DeltaGrpc,
            XdsAddress::new("127.0.0.1", cp.addr.port()),
        ))
        .render();
    tokio::task::block_in_place(|| harness.start(&bootstrap))
        .unwrap_or_else(|e| panic!("Envoy did not start: {e}"))
}

/// Every CDS response the control plane pushed has been processed by Envoy (accepted or
/// rejected).
fn cds_all_processed(cp: &ControlPlane, envoy: &EnvoyProcess) -> bool {
    let done = envoy_stat(envoy, "cluster_manager.cds.update_success")
        + envoy_stat(envoy, "cluster_manager.cds.update_rejected");
    done >= cp.pushes(Kind::Cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_takes_a_chunked_delta_cds_push_whole() {
    let harness = EnvoyHarness::require();
    let mut cp = ControlPlane::start(Arc::new(AtomicBool::new(false))).await;
    let envoy = start_envoy(&harness, &cp);

    eventually("every type ACKed", &envoy, || cp.all_acked().then_some(())).await;
    let cds_pushes = cp.pushes(Kind::Cluster);
    assert!(
        cds_pushes >= 3,
        "the initial CDS push went out in several responses: {cds_pushes}"
    );
    let want: BTreeSet<String> = (0..SERVICES)
        .flat_map(|i| [cluster_name(i, 8080), cluster_name(i, 9090)])
        .collect();
    let active = eventually("every cluster active in Envoy", &envoy, || {
        let active = dynamic_clusters(&envoy, "dynamic_active_clusters");
        want.is_subset(&active).then_some(active)
    })
    .await;
    let warming = dynamic_clusters(&envoy, "dynamic_warming_clusters");
    assert!(warming.is_empty(), "clusters left warming: {warming:?}");
    assert!(active.len() >= want.len(), "{}", active.len());
    eventually("Envoy processed every CDS chunk", &envoy, || {
        cds_all_processed(&cp, &envoy).then_some(())
    })
    .await;
    assert_eq!(
        envoy_stat(&envoy, "cluster_manager.cds.update_rejected"),
        0,
        "no chunk rejected"
    );
    assert_eq!(cp.nacks(Kind::Cluster), 0);

    // A change after the chunked push: one ServiceEntry moves a port.
    cp.write("a.yaml", &corpus(0..SERVICES, 8181));
    let moved = cluster_name(0, 8181);
    eventually(
        "the moved cluster active and the old one gone",
        &envoy,
        || {
            let active = dynamic_clusters(&envoy, "dynamic_active_clusters");
            (active.contains(&moved) && !active.contains(&cluster_name(0, 8080))).then_some(())
        },
    )
    .await;
    eventually("every type ACKed after the change", &envoy, || {
        cp.all_acked().then_some(())
    })
    .await;
    assert_eq!(
        envoy_stat(&envoy, "cluster.xds-grpc.upstream_cx_total"),
        1,
        "Envoy never reconnected"
    );
    tokio::task::block_in_place(|| envoy.shutdown()).expect("Envoy shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_of_the_first_chunk_is_the_push_nack() {
    let harness = EnvoyHarness::require();
    let inject = Arc::new(AtomicBool::new(true));
    let mut cp = ControlPlane::start(Arc::clone(&inject)).await;
    let envoy = start_envoy(&harness, &cp);

    let nack = eventually("the CDS NACK in /debug/syncz", &envoy, || {
        cp.status(Kind::Cluster)
            .and_then(|t| t["last_nack"].as_str().map(str::to_owned))
    })
    .await;
    assert!(nack.contains(BAD_ADDRESS), "Envoy's message: {nack}");
    // Envoy goes on to process (and ACK) the chunks after the rejected one; the push stays
    // NACKed.
    eventually("Envoy processed every CDS chunk", &envoy, || {
        cds_all_processed(&cp, &envoy).then_some(())
    })
    .await;
    let cds_pushes = cp.pushes(Kind::Cluster);
    assert!(cds_pushes >= 3, "chunked: {cds_pushes}");
    assert_eq!(
        envoy_stat(&envoy, "cluster_manager.cds.update_rejected"),
        1,
        "only the first chunk was rejected"
    );
    assert!(envoy_stat(&envoy, "cluster_manager.cds.update_success") >= cds_pushes - 1);
    // The clusters of the accepted chunks are there all the same.
    let want: BTreeSet<String> = (0..SERVICES)
        .flat_map(|i| [cluster_name(i, 8080), cluster_name(i, 9090)])
        .collect();
    eventually("the good clusters active", &envoy, || {
        want.is_subset(&dynamic_clusters(&envoy, "dynamic_active_clusters"))
            .then_some(())
    })
    .await;
    let t = cp.status(Kind::Cluster).expect("CDS status");
    assert_eq!(t["last_nack"].as_str(), Some(nack.as_str()), "{t:#}");
    assert_ne!(
        t["acked_version"], t["sent_version"],
        "the last chunk's ACK does not accept a push with a NACKed chunk: {t:#}"
    );
    assert_eq!(cp.nacks(Kind::Cluster), 1, "one NACK for the push");

    // The next good configuration is accepted.
    inject.store(false, Ordering::SeqCst);
    cp.write("a.yaml", &corpus(0..SERVICES, 8181));
    eventually("every type ACKed after the good change", &envoy, || {
        cp.all_acked().then_some(())
    })
    .await;
    let active = dynamic_clusters(&envoy, "dynamic_active_clusters");
    assert!(active.contains(&cluster_name(0, 8181)), "{active:?}");
    assert!(!active.contains(BAD_CLUSTER));
    assert_eq!(cp.nacks(Kind::Cluster), 1);
    tokio::task::block_in_place(|| envoy.shutdown()).expect("Envoy shutdown");
}

//! Real Envoy serving a generated static bootstrap inside a network namespace, with
//! Istio-style outbound capture (iptables REDIRECT to virtualOutbound, Envoy's own traffic
//! excluded by group id as Istio excludes uid 1337):
//!
//! - an HTTP ServiceEntry whose endpoint is a local server gets its requests through the
//!   generated listener, route and cluster;
//! - an unknown host goes to PassthroughCluster under ALLOW_ANY (reaching the original
//!   destination) and gets 502 under REGISTRY_ONLY.

use std::net::SocketAddr;
use std::time::Duration;

use entryway::xds::{generate, static_bootstrap, valid_configs};
use entryway_model::api::MeshConfig;
use entryway_model::api::sidecar::OutboundTrafficPolicyMode;
use entryway_model::registry::Proxy;
use entryway_testkit::netns::Netns;
use entryway_testkit::{
    EnvoyHarness, EnvoyOptions, HttpUpstream, eventually_ok, free_port, http_get,
};

const PROXY_GID: u32 = 1337;
/// The address applications call; it looks external but lives on the namespace's loopback.
const CALLED: &str = "203.0.113.10";

fn scenario(mode: OutboundTrafficPolicyMode) {
    let ns = Netns::create().expect("create network namespace");
    ns.add_loopback_address(&format!("{CALLED}/32"))
        .expect("address");
    ns.enter_current_thread().expect("enter namespace");

    let backend = HttpUpstream::start("api-backend").expect("backend");
    let original = HttpUpstream::start_at(
        "original-destination",
        format!("{CALLED}:80").parse().expect("addr"),
        200,
        "original",
    )
    .expect("server at the called address");

    let outbound_port = free_port().expect("port");
    let mut mesh = MeshConfig {
        proxy_listen_port: i32::from(outbound_port),
        ..MeshConfig::default()
    };
    mesh.outbound_traffic_policy.mode = mode;
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: api, namespace: default}}\nspec:\n  hosts: [api.example.com]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]\n",
        backend.port()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("se.yaml");
    std::fs::write(&path, yaml).expect("write");
    let (set, problems, _) =
        valid_configs(entryway::validate::check_paths(&[path], "default", &mesh));
    assert!(problems.is_empty(), "{problems:?}");
    let proxy = Proxy::in_namespace("default");
    let cfg = generate(&set, &mesh, &proxy);
    let bootstrap =
        serde_json::to_string_pretty(&static_bootstrap(&cfg, &proxy, 0).expect("bootstrap"))
            .expect("json");

    let envoy = EnvoyHarness::require()
        .with_options(EnvoyOptions {
            gid: Some(PROXY_GID),
            ..EnvoyOptions::default()
        })
        .start(&bootstrap)
        .unwrap_or_else(|e| panic!("Envoy did not start: {e}\n{bootstrap}"));
    envoy
        .wait_ready(Duration::from_secs(20))
        .expect("envoy ready");
    ns.capture_outbound(&["203.0.113.0/24"], outbound_port, PROXY_GID)
        .expect("capture");

    let called: SocketAddr = format!("{CALLED}:80").parse().expect("addr");
    // The registered host: through 0.0.0.0_80, route "80", cluster outbound|80||api.example.com.
    let resp = eventually_ok(Duration::from_secs(10), || {
        http_get(called, "api.example.com", "/hello").map_err(|e| e.to_string())
    })
    .expect("request to the registered host");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), "api-backend");
    assert_eq!(backend.paths(), vec!["/hello".to_string()]);
    let served = envoy
        .stat("cluster.outbound|80||api.example.com;.upstream_rq_200")
        .expect("stats");
    assert_eq!(served, Some(1));

    // An unknown host on the same port.
    let resp =
        http_get(called, "unknown.example.org", "/other").expect("request to an unknown host");
    match mode {
        OutboundTrafficPolicyMode::RegistryOnly => {
            assert_eq!(resp.status, 502, "REGISTRY_ONLY blocks unknown hosts");
            assert_eq!(original.request_count(), 0);
        }
        _ => {
            assert_eq!(resp.status, 200, "ALLOW_ANY passes through");
            assert_eq!(resp.text(), "original");
            assert_eq!(original.paths(), vec!["/other".to_string()]);
            let pass = envoy
                .stat("cluster.PassthroughCluster;.upstream_rq_200")
                .expect("stats");
            assert_eq!(pass, Some(1));
        }
    }
    ns.clear_capture().expect("clear capture");
    let _ = envoy.shutdown();
}

fn in_own_thread(f: fn()) {
    std::thread::spawn(f)
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

#[test]
fn allow_any_routes_registered_hosts_and_passes_unknown_ones_through() {
    in_own_thread(|| scenario(OutboundTrafficPolicyMode::AllowAny));
}

#[test]
fn registry_only_routes_registered_hosts_and_blocks_unknown_ones() {
    in_own_thread(|| scenario(OutboundTrafficPolicyMode::RegistryOnly));
}

use entryway_model::api::MeshConfig;
use entryway_model::registry::Proxy;
use serde_json::{Value, json};

use super::*;
use crate::generator::testutil::TestEnv;

const YAML: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: b, namespace: shop}
spec:
  hosts: [b.shop.mesh]
  location: MESH_INTERNAL
  ports:
  - {number: 80, name: http, protocol: HTTP, targetPort: 8080}
  - {number: 9000, name: tcp, protocol: TCP}
  - {number: 7000, name: auto}
  resolution: STATIC
  workloadSelector: {labels: {app: b}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-b, namespace: shop}
spec: {address: 10.0.0.2, labels: {app: b}, serviceAccount: b-sa}
"#;

fn env(extra: &str, capture: bool) -> TestEnv {
    let proxy = Proxy {
        namespace: "shop".into(),
        ips: vec!["10.0.0.2".parse().expect("ip")],
        service_account: Some("b-sa".into()),
        inbound_capture: capture,
        ..Proxy::default()
    };
    TestEnv::with_proxy(&format!("{YAML}{extra}"), MeshConfig::default(), proxy)
}

fn json_of<T: prost::Message + prost::Name>(m: &T) -> Value {
    crate::json::to_json_value(m).expect("json")
}

/// (destination port, transport, ALPNs, terminates TLS, first filter) of a chain.
type ChainSummary = (Option<u32>, String, Vec<String>, bool, String);

/// The summary of each chain.
fn chains(l: &Listener) -> Vec<ChainSummary> {
    l.filter_chains
        .iter()
        .map(|c| {
            let m = c.filter_chain_match.clone().unwrap_or_default();
            (
                m.destination_port.map(|p| p.value),
                m.transport_protocol,
                m.application_protocols,
                c.transport_socket.is_some(),
                c.filters
                    .first()
                    .map(|f| f.name.clone())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

const HCM: &str = "envoy.filters.network.http_connection_manager";
const TCP: &str = "envoy.filters.network.tcp_proxy";

#[test]
fn permissive_virtual_inbound_by_port_and_class() {
    let e = env("", true);
    let cfg = e.generate();
    let l = cfg
        .listeners
        .iter()
        .find(|l| l.name == "virtualInbound")
        .expect("virtualInbound");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let all = s(&ALL_ISTIO_MTLS_ALPNS);
    let got = chains(l);
    // Blackhole for 15006 first.
    assert_eq!(
        got[0],
        (Some(15006), String::new(), vec![], false, TCP.into())
    );
    // HTTP port 8080 (targetPort): mTLS with Istio ALPNs and plaintext, both HCM.
    assert!(got.contains(&(Some(8080), "tls".into(), all.clone(), true, HCM.into())));
    assert!(got.contains(&(Some(8080), "raw_buffer".into(), vec![], false, HCM.into())));
    // TCP port 9000: mTLS, plaintext and the application's own TLS.
    assert!(got.contains(&(Some(9000), "tls".into(), all.clone(), true, TCP.into())));
    assert!(got.contains(&(Some(9000), "raw_buffer".into(), vec![], false, TCP.into())));
    assert!(got.contains(&(Some(9000), "tls".into(), vec![], false, TCP.into())));
    // Sniffed port 7000: five chains.
    assert_eq!(got.iter().filter(|c| c.0 == Some(7000)).count(), 5);
    // Passthrough (no port): PERMISSIVE TCP chains to InboundPassthroughCluster.
    assert_eq!(got.iter().filter(|c| c.0.is_none()).count(), 3);
    let names: Vec<&str> = l.listener_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.tls_inspector",
            "envoy.filters.listener.http_inspector"
        ]
    );
    // Clusters per workload port: ORIGINAL_DST from 127.0.0.6.
    for port in [8080, 9000, 7000] {
        let c = cfg
            .clusters
            .iter()
            .find(|c| c.name == format!("inbound|{port}||"))
            .unwrap_or_else(|| panic!("inbound|{port}||"));
        let j = json_of(c);
        assert_eq!(j["type"], "ORIGINAL_DST", "{j}");
        assert_eq!(
            j["upstream_bind_config"]["source_address"]["address"],
            "127.0.0.6"
        );
    }
}

#[test]
fn terminated_mtls_requires_a_mesh_certificate_and_forwards_the_identity() {
    let e = env("", true);
    let cfg = e.generate();
    let l = cfg
        .listeners
        .iter()
        .find(|l| l.name == "virtualInbound")
        .expect("virtualInbound");
    let chain = l
        .filter_chains
        .iter()
        .find(|c| {
            c.transport_socket.is_some()
                && c.filter_chain_match
                    .as_ref()
                    .is_some_and(|m| m.destination_port.map(|p| p.value) == Some(8080))
        })
        .expect("mTLS chain of 8080");
    let j = json_of(chain);
    let ctx = &j["transport_socket"]["typed_config"];
    assert_eq!(ctx["require_client_certificate"], true, "{ctx}");
    assert_eq!(
        ctx["common_tls_context"]["tls_certificate_sds_secret_configs"][0]["name"],
        "default"
    );
    let cvc = &ctx["common_tls_context"]["combined_validation_context"];
    assert_eq!(
        cvc["validation_context_sds_secret_config"]["name"],
        "ROOTCA"
    );
    assert_eq!(
        cvc["default_validation_context"]["match_subject_alt_names"],
        json!([{"prefix": "spiffe://cluster.local/"}])
    );
    assert_eq!(
        ctx["common_tls_context"]["alpn_protocols"],
        json!(["h2", "http/1.1"])
    );
    let hcm = &j["filters"][0]["typed_config"];
    assert_eq!(
        hcm["forward_client_cert_details"], "APPEND_FORWARD",
        "{hcm}"
    );
    assert_eq!(
        hcm["set_current_client_cert_details"],
        json!({"subject": true, "uri": true, "dns": true})
    );
    let route = &hcm["route_config"]["virtual_hosts"][0]["routes"][0];
    assert_eq!(hcm["route_config"]["name"], "inbound|8080||");
    assert_eq!(
        hcm["route_config"]["virtual_hosts"][0]["name"],
        "inbound|http|80"
    );
    assert_eq!(route["route"]["cluster"], "inbound|8080||");
    assert_eq!(
        route["route"]["retry_policy"]["retry_on"],
        "reset-before-request"
    );
}

#[test]
fn strict_and_port_level_disable() {
    let pa = r#"
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: shop}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: b, namespace: shop}
spec:
  selector: {matchLabels: {app: b}}
  portLevelMtls:
    9000: {mode: DISABLE}
"#;
    let e = env(pa, true);
    let cfg = e.generate();
    let l = cfg
        .listeners
        .iter()
        .find(|l| l.name == "virtualInbound")
        .expect("virtualInbound");
    let got = chains(l);
    assert_eq!(
        got.iter().filter(|c| c.0 == Some(8080)).collect::<Vec<_>>(),
        vec![&(Some(8080), "tls".to_string(), vec![], true, HCM.to_string())],
        "STRICT: mTLS only"
    );
    assert_eq!(
        got.iter().filter(|c| c.0 == Some(9000)).collect::<Vec<_>>(),
        vec![&(
            Some(9000),
            "raw_buffer".to_string(),
            vec![],
            false,
            TCP.to_string()
        )],
        "port-level DISABLE: plaintext only"
    );
    let passthrough: Vec<_> = got.iter().filter(|c| c.0.is_none()).collect();
    assert_eq!(passthrough.len(), 1);
    assert!(passthrough[0].3, "STRICT passthrough terminates mTLS");
}

#[test]
fn peer_authentication_disable_clears_the_endpoints_tls_mode_for_clients() {
    // A client in another namespace calling b: auto-mTLS unless b's port says DISABLE.
    let pa = r#"
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: b, namespace: shop}
spec:
  selector: {matchLabels: {app: b}}
  portLevelMtls:
    8080: {mode: DISABLE}
"#;
    let client = |extra: &str| {
        let e = TestEnv::with_proxy(
            &format!("{YAML}{extra}"),
            MeshConfig::default(),
            Proxy::in_namespace("client"),
        );
        let cfg = e.generate();
        let tls_mode = |cluster: &str| {
            let cla = cfg
                .endpoints
                .iter()
                .find(|c| c.cluster_name == cluster)
                .unwrap_or_else(|| panic!("{cluster}"));
            json_of(cla)["endpoints"][0]["lb_endpoints"][0]["metadata"]["filter_metadata"]
                ["envoy.transport_socket_match"]["tlsMode"]
                .clone()
        };
        (
            tls_mode("outbound|80||b.shop.mesh"),
            tls_mode("outbound|9000||b.shop.mesh"),
        )
    };
    assert_eq!(client(""), (json!("istio"), json!("istio")));
    assert_eq!(client(pa), (Value::Null, json!("istio")));
}

#[test]
fn without_capture_listeners_bind_the_workload_address_and_forward_to_loopback() {
    let e = env("", false);
    let cfg = e.generate();
    let names: Vec<&str> = cfg
        .listeners
        .iter()
        .map(|l| l.name.as_str())
        .filter(|n| n.starts_with("10.0.0.2_"))
        .collect();
    assert_eq!(
        names,
        vec!["10.0.0.2_7000", "10.0.0.2_8080", "10.0.0.2_9000"]
    );
    assert!(!cfg.listeners.iter().any(|l| l.name == "virtualInbound"));
    let l = cfg
        .listeners
        .iter()
        .find(|l| l.name == "10.0.0.2_8080")
        .expect("listener");
    assert!(
        chains(l).iter().all(|c| c.0.is_none()),
        "no destination-port match on an own listener"
    );
    let c = cfg
        .clusters
        .iter()
        .find(|c| c.name == "inbound|8080||")
        .expect("cluster");
    let j = json_of(c);
    assert_eq!(j["type"], "STATIC");
    assert_eq!(
        j["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"],
        json!({"address": "127.0.0.1", "port_value": 8080})
    );
}

#[test]
fn a_proxy_of_no_service_gets_no_inbound_listener_unless_captured() {
    let proxy = Proxy::in_namespace("shop");
    let e = TestEnv::with_proxy(YAML, MeshConfig::default(), proxy);
    let cfg = e.generate();
    assert!(!cfg.listeners.iter().any(|l| l.name == "virtualInbound"));
    assert!(!cfg.clusters.iter().any(|c| c.name.starts_with("inbound|")));
}

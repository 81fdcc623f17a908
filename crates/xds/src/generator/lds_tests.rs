//! Tests of listener generation (spec §4.1, §6.4, §6.5, §7).

use entryway_model::api::MeshConfig;
use entryway_model::registry::Proxy;
use serde_json::{Value, json};

use super::super::rds::testutil::{dr, lds, listener_json, se, vs, with_scope};
use super::{listeners, route_names};

/// The typed config of the first filter of a chain.
fn filter_config(chain: &Value, i: usize) -> &Value {
    &chain["filters"][i]["typed_config"]
}

fn names(ls: &[envoy_types::pb::envoy::config::listener::v3::Listener]) -> Vec<&str> {
    ls.iter().map(|l| l.name.as_str()).collect()
}

const HTTP_SE: &str = "  hosts: [api.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS";
const TLS_SE: &str = "  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: TLS}]\n  resolution: DNS";

#[test]
fn virtual_outbound_allow_any() {
    let ls = lds("");
    let l = listener_json(&ls, "virtualOutbound");
    assert_eq!(
        l["address"],
        json!({"socket_address": {"address": "0.0.0.0", "port_value": 15001}})
    );
    assert_eq!(l["use_original_dst"], true);
    assert_eq!(l["traffic_direction"], "OUTBOUND");
    let chains = l["filter_chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 2);
    assert_eq!(chains[0]["name"], "virtualOutbound-blackhole");
    assert_eq!(chains[0]["filter_chain_match"]["destination_port"], 15001);
    assert_eq!(
        filter_config(&chains[0], 0),
        &json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "BlackHoleCluster",
            "cluster": "BlackHoleCluster"
        })
    );
    assert_eq!(chains[1]["name"], "virtualOutbound-catchall-tcp");
    assert!(chains[1].get("filter_chain_match").is_none());
    assert_eq!(
        chains[1]["filters"][0]["name"],
        "envoy.filters.network.tcp_proxy"
    );
    assert_eq!(
        filter_config(&chains[1], 0)["cluster"],
        "PassthroughCluster"
    );
    assert_eq!(
        filter_config(&chains[1], 0)["stat_prefix"],
        "PassthroughCluster"
    );
}

#[test]
fn virtual_outbound_registry_only_and_listen_port() {
    let mesh = MeshConfig::from_yaml(
        "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\nproxyListenPort: 15101",
    )
    .expect("mesh");
    let ls = with_scope("", &mesh, &Proxy::in_namespace("default"), listeners);
    let l = listener_json(&ls, "virtualOutbound");
    assert_eq!(l["address"]["socket_address"]["port_value"], 15101);
    assert_eq!(
        l["filter_chains"][0]["filter_chain_match"]["destination_port"],
        15101
    );
    assert_eq!(
        filter_config(&l["filter_chains"][1], 0)["cluster"],
        "BlackHoleCluster"
    );
}

#[test]
fn egress_proxy_replaces_passthrough_everywhere() {
    let yaml = format!(
        "{}---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: default}}\nspec:\n  outboundTrafficPolicy:\n    mode: ALLOW_ANY\n    egressProxy: {{host: egress.istio-system.svc.cluster.local, subset: proxy, port: {{number: 15443}}}}\n",
        se("api", HTTP_SE)
    );
    let ls = lds(&yaml);
    let want = "outbound|15443|proxy|egress.istio-system.svc.cluster.local";
    let vo = listener_json(&ls, "virtualOutbound");
    assert_eq!(filter_config(&vo["filter_chains"][1], 0)["cluster"], want);
    let l = listener_json(&ls, "0.0.0.0_80");
    assert_eq!(
        filter_config(&l["default_filter_chain"], 0)["cluster"],
        want
    );
}

#[test]
fn http_port_binds_wildcard_with_rds_route() {
    let ls = lds(&se("api", HTTP_SE));
    assert_eq!(names(&ls), ["0.0.0.0_80", "virtualOutbound"]);
    let l = listener_json(&ls, "0.0.0.0_80");
    assert_eq!(l["bind_to_port"], false);
    assert_eq!(l["traffic_direction"], "OUTBOUND");
    assert_eq!(l["continue_on_listener_filters_timeout"], true);
    assert_eq!(l["listener_filters_timeout"], "0s");
    let lf: Vec<&Value> = l["listener_filters"]
        .as_array()
        .expect("lf")
        .iter()
        .map(|f| &f["name"])
        .collect();
    assert_eq!(
        lf,
        [
            "envoy.filters.listener.tls_inspector",
            "envoy.filters.listener.http_inspector"
        ]
    );
    assert_eq!(
        l["listener_filters"][0]["typed_config"]["initial_read_buffer_size"],
        512
    );
    let chains = l["filter_chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 1);
    assert_eq!(
        chains[0]["filter_chain_match"],
        json!({"transport_protocol": "raw_buffer", "application_protocols": ["http/1.1", "h2c"]})
    );
    let d = &l["default_filter_chain"];
    assert_eq!(d["name"], "PassthroughFilterChain");
    assert_eq!(d["filter_chain_match"], json!({}));
    assert_eq!(filter_config(d, 0)["cluster"], "PassthroughCluster");
}

#[test]
fn http_connection_manager_settings() {
    let ls = lds(&se("api", HTTP_SE));
    let l = listener_json(&ls, "0.0.0.0_80");
    let f = &l["filter_chains"][0]["filters"][0];
    assert_eq!(f["name"], "envoy.filters.network.http_connection_manager");
    let hcm = &f["typed_config"];
    assert_eq!(
        hcm["@type"],
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    );
    assert_eq!(hcm["stat_prefix"], "outbound_0.0.0.0_80;");
    assert_eq!(
        hcm["rds"],
        json!({
            "config_source": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
            "route_config_name": "80"
        })
    );
    assert_eq!(hcm["use_remote_address"], false);
    assert_eq!(hcm["normalize_path"], true);
    assert_eq!(hcm["path_with_escaped_slashes_action"], "KEEP_UNCHANGED");
    assert_eq!(hcm["stream_idle_timeout"], "0s");
    assert_eq!(
        hcm["upgrade_configs"],
        json!([{"upgrade_type": "websocket"}])
    );
    assert_eq!(hcm["proxy_100_continue"], true);
    assert_eq!(
        hcm["request_id_extension"]["typed_config"]["@type"],
        "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig"
    );
    let filters: Vec<(&Value, &Value)> = hcm["http_filters"]
        .as_array()
        .expect("filters")
        .iter()
        .map(|f| (&f["name"], &f["typed_config"]["@type"]))
        .collect();
    assert_eq!(
        filters,
        [
            (
                &json!("envoy.filters.http.grpc_stats"),
                &json!(
                    "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig"
                )
            ),
            (
                &json!("envoy.filters.http.fault"),
                &json!("type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault")
            ),
            (
                &json!("envoy.filters.http.cors"),
                &json!("type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors")
            ),
            (
                &json!("envoy.filters.http.router"),
                &json!("type.googleapis.com/envoy.extensions.filters.http.router.v3.Router")
            ),
        ]
    );
}

#[test]
fn tls_without_vip_matches_sni_on_wildcard() {
    let ls = lds(&se("api", TLS_SE));
    let l = listener_json(&ls, "0.0.0.0_443");
    let lf: Vec<&Value> = l["listener_filters"]
        .as_array()
        .expect("lf")
        .iter()
        .map(|f| &f["name"])
        .collect();
    assert_eq!(lf, ["envoy.filters.listener.tls_inspector"]);
    assert_eq!(l["listener_filters_timeout"], "0s");
    let chains = l["filter_chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 1);
    assert_eq!(
        chains[0]["filter_chain_match"],
        json!({"server_names": ["api.example.com"]})
    );
    assert_eq!(
        filter_config(&chains[0], 0)["cluster"],
        "outbound|443||api.example.com"
    );
    assert_eq!(
        filter_config(&chains[0], 0)["stat_prefix"],
        "outbound|443||api.example.com"
    );
    assert_eq!(l["default_filter_chain"]["name"], "PassthroughFilterChain");
}

#[test]
fn tls_with_vip_has_no_sni_match() {
    let ls = lds(&se(
        "api",
        "  hosts: [api.example.com]\n  addresses: [10.0.0.1]\n  ports: [{number: 443, name: https, protocol: HTTPS}]\n  resolution: DNS",
    ));
    let l = listener_json(&ls, "10.0.0.1_443");
    assert!(l.get("listener_filters").is_none());
    let chains = l["filter_chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 1);
    assert!(chains[0].get("filter_chain_match").is_none());
    assert!(l.get("default_filter_chain").is_none());
    assert_eq!(
        filter_config(&chains[0], 0)["cluster"],
        "outbound|443||api.example.com"
    );
}

#[test]
fn tcp_with_vip_gets_its_own_listener() {
    let ls = lds(&se(
        "db",
        "  hosts: [db.example.com]\n  addresses: [10.1.2.3]\n  ports: [{number: 3306, name: mysql, protocol: TCP}]\n  resolution: STATIC\n  endpoints: [{address: 1.1.1.1}]",
    ));
    assert_eq!(names(&ls), ["10.1.2.3_3306", "virtualOutbound"]);
    let l = listener_json(&ls, "10.1.2.3_3306");
    assert_eq!(
        l["address"]["socket_address"],
        json!({"address": "10.1.2.3", "port_value": 3306})
    );
    assert_eq!(l["bind_to_port"], false);
    let chains = l["filter_chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 1);
    assert!(chains[0].get("filter_chain_match").is_none());
    assert_eq!(
        filter_config(&chains[0], 0)["cluster"],
        "outbound|3306||db.example.com"
    );
    assert!(l.get("default_filter_chain").is_none());
}

#[test]
fn vipless_tcp_first_service_wins_the_port() {
    let yaml = se(
        "a",
        "  hosts: [a.example.com]\n  ports: [{number: 9000, name: tcp, protocol: TCP}]\n  resolution: DNS",
    ) + &se(
        "b",
        "  hosts: [b.example.com]\n  ports: [{number: 9000, name: tcp, protocol: TCP}]\n  resolution: DNS",
    );
    let ls = lds(&yaml);
    let l = listener_json(&ls, "0.0.0.0_9000");
    let chains = l["filter_chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 1);
    assert_eq!(
        filter_config(&chains[0], 0)["cluster"],
        "outbound|9000||a.example.com"
    );
}

#[test]
fn auto_port_with_vip_has_tcp_and_http_chains() {
    let ls = lds(&se(
        "auto",
        "  hosts: [auto.example.com]\n  addresses: [10.0.0.2]\n  ports: [{number: 8080, name: sniffed}]\n  resolution: DNS",
    ));
    let l = listener_json(&ls, "10.0.0.2_8080");
    let lf: Vec<&Value> = l["listener_filters"]
        .as_array()
        .expect("lf")
        .iter()
        .map(|f| &f["name"])
        .collect();
    assert_eq!(
        lf,
        [
            "envoy.filters.listener.tls_inspector",
            "envoy.filters.listener.http_inspector"
        ]
    );
    let chains = l["filter_chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 1);
    assert_eq!(
        chains[0]["filter_chain_match"]["application_protocols"],
        json!(["http/1.1", "h2c"])
    );
    let hcm = filter_config(&chains[0], 0);
    assert_eq!(hcm["rds"]["route_config_name"], "auto.example.com:8080");
    assert_eq!(hcm["stat_prefix"], "outbound_10.0.0.2_8080;");
    // The TCP chain matches everything: it is the default chain.
    assert_eq!(
        filter_config(&l["default_filter_chain"], 0)["cluster"],
        "outbound|8080||auto.example.com"
    );
    assert!(l["default_filter_chain"].get("name").is_none());
    assert_eq!(route_names(&ls), ["auto.example.com:8080"]);
}

#[test]
fn auto_port_without_vip_uses_port_route() {
    let ls = lds(&se(
        "auto",
        "  hosts: [auto.example.com]\n  ports: [{number: 8080, name: sniffed}]\n  resolution: DNS",
    ));
    let l = listener_json(&ls, "0.0.0.0_8080");
    assert_eq!(
        filter_config(&l["filter_chains"][0], 0)["rds"]["route_config_name"],
        "8080"
    );
}

#[test]
fn protocol_detection_timeout_applies_with_http_inspector() {
    let mesh = MeshConfig::from_yaml("protocolDetectionTimeout: 100ms").expect("mesh");
    let ls = with_scope(
        &se("api", HTTP_SE),
        &mesh,
        &Proxy::in_namespace("default"),
        listeners,
    );
    assert_eq!(
        listener_json(&ls, "0.0.0.0_80")["listener_filters_timeout"],
        "0.100s"
    );
}

#[test]
fn cidr_addresses_share_wildcard_with_prefix_ranges() {
    let yaml = se(
        "c1",
        "  hosts: [c1.example.com]\n  addresses: [10.1.0.0/16]\n  ports: [{number: 5000, name: tcp, protocol: TCP}]\n  resolution: NONE",
    ) + &se(
        "c2",
        "  hosts: [c2.example.com]\n  addresses: [10.2.0.0/16]\n  ports: [{number: 5000, name: tcp, protocol: TCP}]\n  resolution: NONE",
    ) + &se(
        "c3",
        "  hosts: [c3.example.com]\n  addresses: [10.1.7.0/16]\n  ports: [{number: 5000, name: tcp, protocol: TCP}]\n  resolution: NONE",
    );
    let ls = lds(&yaml);
    let l = listener_json(&ls, "0.0.0.0_5000");
    let chains = l["filter_chains"].as_array().expect("chains");
    assert_eq!(
        chains.len(),
        2,
        "10.1.7.0/16 masks to 10.1.0.0/16: first wins"
    );
    assert_eq!(
        chains[0]["filter_chain_match"]["prefix_ranges"],
        json!([{"address_prefix": "10.1.0.0", "prefix_len": 16}])
    );
    assert_eq!(
        filter_config(&chains[0], 0)["cluster"],
        "outbound|5000||c1.example.com"
    );
    assert_eq!(
        filter_config(&chains[1], 0)["cluster"],
        "outbound|5000||c2.example.com"
    );
    assert_eq!(l["default_filter_chain"]["name"], "PassthroughFilterChain");
}

#[test]
fn http_over_vipless_tcp_merges_into_sniffing_listener() {
    let yaml = se(
        "t",
        "  hosts: [t.example.com]\n  ports: [{number: 80, name: tcp, protocol: TCP}]\n  resolution: DNS",
    ) + &se("api", HTTP_SE)
        + &se(
            "api2",
            "  hosts: [api2.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS",
        );
    let ls = lds(&yaml);
    let l = listener_json(&ls, "0.0.0.0_80");
    let chains = l["filter_chains"].as_array().expect("chains");
    assert_eq!(
        chains.len(),
        1,
        "one HTTP chain (the second HTTP service adds none)"
    );
    assert_eq!(
        filter_config(&chains[0], 0)["rds"]["route_config_name"],
        "80"
    );
    assert_eq!(
        filter_config(&l["default_filter_chain"], 0)["cluster"],
        "outbound|80||t.example.com"
    );
}

#[test]
fn mongo_never_shares_a_port() {
    let yaml = se(
        "m",
        "  hosts: [m.example.com]\n  ports: [{number: 27017, name: mongo, protocol: MONGO}]\n  resolution: DNS",
    ) + &se(
        "t",
        "  hosts: [t.example.com]\n  ports: [{number: 27017, name: tcp, protocol: TCP}]\n  resolution: DNS",
    );
    let ls = lds(&yaml);
    let l = listener_json(&ls, "0.0.0.0_27017");
    let chain = &l["filter_chains"][0];
    assert_eq!(l["filter_chains"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        chain["filters"][0]["name"],
        "envoy.filters.network.mongo_proxy"
    );
    assert_eq!(
        filter_config(chain, 0)["stat_prefix"],
        "outbound|27017||m.example.com"
    );
    assert_eq!(
        filter_config(chain, 1)["cluster"],
        "outbound|27017||m.example.com"
    );
}

#[test]
fn udp_ports_and_reserved_ports_are_skipped() {
    let yaml = se(
        "u",
        "  hosts: [u.example.com]\n  addresses: [10.0.0.9]\n  ports: [{number: 53, name: dns, protocol: UDP}]\n  resolution: DNS",
    ) + &se(
        "r",
        "  hosts: [r.example.com]\n  ports: [{number: 15001, name: http, protocol: HTTP}, {number: 15021, name: http2, protocol: HTTP}]\n  resolution: DNS",
    );
    assert_eq!(names(&lds(&yaml)), ["virtualOutbound"]);
}

#[test]
fn headless_none_with_workloads_gets_listener_per_endpoint() {
    let yaml = se(
        "h",
        "  hosts: [h.example.com]\n  ports: [{number: 7000, name: tcp, protocol: TCP}]\n  resolution: NONE\n  workloadSelector: {labels: {app: h}}",
    ) + "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w1, namespace: default}\nspec: {address: 10.9.0.1, labels: {app: h}}\n"
        + "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w2, namespace: default}\nspec: {address: 127.0.0.1, labels: {app: h}}\n";
    let ls = lds(&yaml);
    assert_eq!(
        names(&ls),
        ["10.9.0.1_7000", "virtualOutbound"],
        "own IP skipped"
    );
    // Without workloads or selector: the plain wildcard listener.
    let ls = lds(&se(
        "n",
        "  hosts: [n.example.com]\n  ports: [{number: 7000, name: tcp, protocol: TCP}]\n  resolution: NONE",
    ));
    assert_eq!(names(&ls), ["0.0.0.0_7000", "virtualOutbound"]);
}

#[test]
fn sidecar_egress_port_builds_every_imported_service_on_it() {
    let yaml = se("api", HTTP_SE)
        + &se(
            "db",
            "  hosts: [db.example.com]\n  addresses: [10.0.0.7]\n  ports: [{number: 5432, name: tcp, protocol: TCP}]\n  resolution: DNS",
        )
        + "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: default}\nspec:\n  egress:\n  - port: {number: 9080, protocol: HTTP, name: web}\n    hosts: [./api.example.com]\n  - port: {number: 6000, protocol: TCP, name: db}\n    captureMode: NONE\n    hosts: [./db.example.com]\n";
    let ls = lds(&yaml);
    assert_eq!(
        names(&ls),
        ["0.0.0.0_9080", "127.0.0.1_6000", "virtualOutbound"]
    );
    let web = listener_json(&ls, "0.0.0.0_9080");
    assert_eq!(
        filter_config(&web["filter_chains"][0], 0)["rds"]["route_config_name"],
        "9080"
    );
    let db = listener_json(&ls, "127.0.0.1_6000");
    assert!(
        db.get("bind_to_port").is_none(),
        "captureMode NONE binds for real"
    );
    // The service has one port: its cluster keeps the service port.
    assert_eq!(
        filter_config(&db["filter_chains"][0], 0)["cluster"],
        "outbound|5432||db.example.com"
    );
}

#[test]
fn explicit_egress_ports_lock_their_listeners() {
    let yaml = se(
        "a",
        "  hosts: [a.example.com]\n  ports: [{number: 8000, name: http, protocol: HTTP}]\n  resolution: DNS",
    ) + &se(
        "t",
        "  hosts: [t.example.com]\n  ports: [{number: 8000, name: tcp, protocol: TCP}]\n  resolution: DNS",
    ) + "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: default}\nspec:\n  egress:\n  - port: {number: 8000, protocol: HTTP, name: web}\n    hosts: [./a.example.com]\n  - hosts: [\"*/*\"]\n";
    let ls = lds(&yaml);
    let l = listener_json(&ls, "0.0.0.0_8000");
    assert_eq!(l["filter_chains"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        l["default_filter_chain"]["name"], "PassthroughFilterChain",
        "the TCP service was not merged"
    );
}

#[test]
fn virtual_service_tls_routes_replace_default_sni_chain() {
    let yaml = se(
        "w",
        "  hosts: [\"*.wikipedia.org\"]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: NONE",
    ) + &se(
        "en",
        "  hosts: [en.wikipedia.org]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: DNS",
    ) + &vs(
        "wiki",
        "  hosts: [\"*.wikipedia.org\"]\n  tls:\n  - match: [{sniHosts: [fr.wikipedia.org, de.wikipedia.org]}]\n    route: [{destination: {host: en.wikipedia.org}}]\n  - match: [{sniHosts: [fr.wikipedia.org, de.wikipedia.org]}]\n    route: [{destination: {host: other.wikipedia.org}}]",
    );
    let ls = lds(&yaml);
    let l = listener_json(&ls, "0.0.0.0_443");
    let chains = l["filter_chains"].as_array().expect("chains");
    // One chain per (SNI list, subnets); the second service's identical chain is dropped,
    // and neither service gets its default SNI chain.
    assert_eq!(chains.len(), 1, "{chains:#?}");
    assert_eq!(
        chains[0]["filter_chain_match"]["server_names"],
        json!(["de.wikipedia.org", "fr.wikipedia.org"])
    );
    assert_eq!(
        filter_config(&chains[0], 0)["cluster"],
        "outbound|443||en.wikipedia.org"
    );
    assert_eq!(
        chains[0]["metadata"]["filter_metadata"]["istio"]["config"],
        "/apis/networking.istio.io/v1/namespaces/default/virtual-service/wiki"
    );
}

#[test]
fn virtual_service_tcp_routes() {
    let yaml = se(
        "db",
        "  hosts: [db.example.com]\n  addresses: [10.0.0.5]\n  ports: [{number: 5432, name: tcp, protocol: TCP}]\n  resolution: DNS",
    ) + &se(
        "db2",
        "  hosts: [db2.example.com]\n  ports: [{number: 5432, name: tcp, protocol: TCP}]\n  resolution: DNS",
    ) + &vs(
        "split",
        "  hosts: [db.example.com]\n  tcp:\n  - match: [{destinationSubnets: [10.9.0.0/16]}]\n    route: [{destination: {host: db2.example.com}}]\n  - route:\n    - {destination: {host: db.example.com}, weight: 70}\n    - {destination: {host: db2.example.com}, weight: 30}\n    - {destination: {host: db2.example.com, port: {number: 1}}, weight: 0}",
    );
    let ls = lds(&yaml);
    let l = listener_json(&ls, "10.0.0.5_5432");
    let chains = l["filter_chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 1);
    assert_eq!(
        chains[0]["filter_chain_match"]["prefix_ranges"],
        json!([{"address_prefix": "10.9.0.0", "prefix_len": 16}])
    );
    assert_eq!(
        filter_config(&chains[0], 0)["cluster"],
        "outbound|5432||db2.example.com"
    );
    let d = filter_config(&l["default_filter_chain"], 0);
    assert_eq!(d["stat_prefix"], "split.default");
    assert_eq!(
        d["weighted_clusters"],
        json!({"clusters": [
            {"name": "outbound|5432||db.example.com", "weight": 70},
            {"name": "outbound|5432||db2.example.com", "weight": 30}
        ]})
    );
}

#[test]
fn destination_rule_tcp_settings_on_tcp_proxy() {
    let yaml = se(
        "db",
        "  hosts: [db.example.com]\n  addresses: [10.0.0.5]\n  ports: [{number: 5432, name: tcp, protocol: TCP}]\n  resolution: DNS",
    ) + &dr(
        "db",
        "  host: db.example.com\n  trafficPolicy:\n    connectionPool: {tcp: {idleTimeout: 30s, maxConnectionDuration: 1h}}\n    loadBalancer: {consistentHash: {useSourceIp: true}}\n    tunnel: {targetHost: proxy.corp, targetPort: 3128}",
    );
    let ls = lds(&yaml);
    let tp = filter_config(&listener_json(&ls, "10.0.0.5_5432")["filter_chains"][0], 0).clone();
    assert_eq!(tp["idle_timeout"], "30s");
    assert_eq!(tp["max_downstream_connection_duration"], "3600s");
    assert_eq!(tp["hash_policy"], json!([{"source_ip": {}}]));
    assert_eq!(
        tp["tunneling_config"],
        json!({"hostname": "proxy.corp:3128"})
    );
}

#[test]
fn route_names_are_sorted_and_unique() {
    let yaml = se("api", HTTP_SE)
        + &se(
            "api2",
            "  hosts: [api2.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}, {number: 8080, name: http2, protocol: HTTP}]\n  resolution: DNS",
        )
        + &se(
            "auto",
            "  hosts: [auto.example.com]\n  addresses: [10.0.0.2]\n  ports: [{number: 9090, name: sniffed}]\n  resolution: DNS",
        );
    let ls = lds(&yaml);
    assert_eq!(route_names(&ls), ["80", "8080", "auto.example.com:9090"]);
}

#[test]
fn auto_allocated_address_used_with_dns_capture() {
    let yaml = se(
        "db",
        "  hosts: [db.example.com]\n  ports: [{number: 5432, name: tcp, protocol: TCP}]\n  resolution: DNS",
    );
    let mut proxy = Proxy::in_namespace("default");
    proxy.dns_capture = true;
    let ls = with_scope(&yaml, &MeshConfig::default(), &proxy, listeners);
    let n = names(&ls);
    assert!(
        n[0].starts_with("240.240.") && n[0].ends_with("_5432"),
        "{n:?}"
    );
}

#[test]
fn two_tcp_entries_without_addresses_on_one_port_conflict_unless_dns_capture() {
    use super::listener_conflicts;
    let yaml = testdata_like_conflict();
    let conflicts = with_scope(
        &yaml,
        &MeshConfig::default(),
        &Proxy::in_namespace("default"),
        listener_conflicts,
    );
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let c = &conflicts[0];
    assert_eq!(c.listener, "0.0.0.0_9000");
    assert_eq!(c.port, 9000);
    assert_eq!(c.kept, "default/first (first.example.com)");
    assert_eq!(c.dropped, "default/second (second.example.com)");
    let text = c.to_string();
    assert!(
        text.contains("first.example.com") && text.contains("second.example.com"),
        "{text}"
    );
    // The listener the report names has one match-all chain: the first entry's.
    let ls = lds(&yaml);
    let l = listener_json(&ls, "0.0.0.0_9000");
    let chains = l["filter_chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 1, "{l}");
    assert!(
        chains[0].to_string().contains("first.example.com")
            && !chains[0].to_string().contains("second.example.com"),
        "{l}"
    );

    // With DNS capture each gets an auto-allocated address and its own listener.
    let mut proxy = Proxy::in_namespace("default");
    proxy.dns_capture = true;
    let conflicts = with_scope(&yaml, &MeshConfig::default(), &proxy, listener_conflicts);
    assert!(conflicts.is_empty(), "{conflicts:?}");
    let ls = with_scope(&yaml, &MeshConfig::default(), &proxy, listeners);
    assert_eq!(
        names(&ls).iter().filter(|n| n.ends_with("_9000")).count(),
        2,
        "{:?}",
        names(&ls)
    );

    // Entries with distinct addresses do not conflict.
    let distinct = format!(
        "{}{}",
        se(
            "a",
            "  hosts: [a.example.com]\n  addresses: [192.0.2.1]\n  ports: [{number: 9000, name: tcp, protocol: TCP}]\n  resolution: DNS"
        ),
        se(
            "b",
            "  hosts: [b.example.com]\n  addresses: [192.0.2.2]\n  ports: [{number: 9000, name: tcp, protocol: TCP}]\n  resolution: DNS"
        )
    );
    let conflicts = with_scope(
        &distinct,
        &MeshConfig::default(),
        &Proxy::in_namespace("default"),
        listener_conflicts,
    );
    assert!(conflicts.is_empty(), "{conflicts:?}");
}

fn testdata_like_conflict() -> String {
    format!(
        "{}{}",
        se(
            "first",
            "  hosts: [first.example.com]\n  ports: [{number: 9000, name: tcp, protocol: TCP}]\n  resolution: DNS"
        ),
        se(
            "second",
            "  hosts: [second.example.com]\n  ports: [{number: 9000, name: tcp, protocol: TCP}]\n  resolution: DNS"
        )
    )
}

#[test]
fn duplicate_chain_matches_of_one_service_are_dropped() {
    let yaml = se(
        "w",
        "  hosts: [\"*.wikipedia.org\"]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: NONE",
    ) + &vs(
        "wiki",
        "  hosts: [\"*.wikipedia.org\"]\n  tls:\n  - match: [{sniHosts: [de.wikipedia.org, fr.wikipedia.org]}]\n    route: [{destination: {host: de.wikipedia.org}}]\n  - match: [{sniHosts: [fr.wikipedia.org, de.wikipedia.org]}]\n    route: [{destination: {host: fr.wikipedia.org}}]",
    );
    let ls = lds(&yaml);
    let l = listener_json(&ls, "0.0.0.0_443");
    let chains = l["filter_chains"].as_array().expect("chains");
    assert_eq!(
        chains.len(),
        1,
        "Envoy rejects identical matches: {chains:#?}"
    );
    assert_eq!(
        filter_config(&chains[0], 0)["cluster"],
        "outbound|443||de.wikipedia.org"
    );
}

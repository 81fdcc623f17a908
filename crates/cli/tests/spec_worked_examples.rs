//! The spec's worked examples (section 9) and the seed's two examples, checked field by field
//! on the generated resources (the golden files record everything; this states what matters).

use std::path::Path;

use entryway::xds::{generate, valid_configs};
use entryway_model::api::MeshConfig;
use entryway_model::registry::Proxy;
use entryway_xds::generator::ProxyConfig;
use entryway_xds::json::to_json_value;
use serde_json::{Value, json};

fn config_of(yaml: &str) -> ProxyConfig {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("case.yaml");
    std::fs::write(&path, yaml).expect("write");
    config_of_file(&path)
}

fn config_of_file(path: &Path) -> ProxyConfig {
    let mesh = MeshConfig::default();
    let verdicts = entryway::validate::check_paths(&[path.to_path_buf()], "default", &mesh);
    let (set, problems, _) = valid_configs(verdicts);
    assert!(problems.is_empty(), "{problems:?}");
    generate(&set, &mesh, &Proxy::in_namespace("default"))
}

fn listener(cfg: &ProxyConfig, name: &str) -> Value {
    let l = cfg
        .listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no listener {name}: {:?}",
                cfg.listeners.iter().map(|l| &l.name).collect::<Vec<_>>()
            )
        });
    to_json_value(l).expect("json")
}

fn cluster(cfg: &ProxyConfig, name: &str) -> Value {
    let c = cfg
        .clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"));
    to_json_value(c).expect("json")
}

fn route(cfg: &ProxyConfig, name: &str) -> Value {
    let r = cfg
        .routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route {name}"));
    to_json_value(r).expect("json")
}

fn filter_names(chain: &Value) -> Vec<String> {
    chain["filters"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn listener_filter_names(l: &Value) -> Vec<String> {
    l["listener_filters"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

const SE_TLS: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: api}\nspec:\n  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: TLS}]\n  resolution: DNS\n  location: MESH_EXTERNAL\n";
const SE_HTTP: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: api}\nspec:\n  hosts: [api.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n";

#[test]
fn example_1_tls_dns_without_addresses() {
    let cfg = config_of(SE_TLS);
    let l = listener(&cfg, "0.0.0.0_443");
    assert!(
        listener_filter_names(&l).contains(&"envoy.filters.listener.tls_inspector".to_string()),
        "{l}"
    );
    let chain = &l["filter_chains"][0];
    assert_eq!(
        chain["filter_chain_match"]["server_names"],
        json!(["api.example.com"])
    );
    assert_eq!(
        chain["filters"][0]["typed_config"]["cluster"],
        "outbound|443||api.example.com"
    );
    assert_eq!(l["default_filter_chain"]["name"], "PassthroughFilterChain");
    assert_eq!(
        l["default_filter_chain"]["filters"][0]["typed_config"]["cluster"],
        "PassthroughCluster"
    );

    let c = cluster(&cfg, "outbound|443||api.example.com");
    assert_eq!(c["cluster_type"]["name"], "envoy.cluster.dns");
    assert_eq!(c["connect_timeout"], "10s");
    assert_eq!(c["lb_policy"], "LEAST_REQUEST");
    let ep = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
    assert_eq!(ep["address"], "api.example.com");
    assert_eq!(ep["port_value"], 443);
    let t = &c["circuit_breakers"]["thresholds"][0];
    for k in [
        "max_connections",
        "max_pending_requests",
        "max_requests",
        "max_retries",
    ] {
        assert_eq!(t[k], 4294967295u64, "{k}");
    }
    assert!(c.get("transport_socket").is_none());
    assert_eq!(c["metadata"]["filter_metadata"]["istio"]["external"], true);
}

#[test]
fn example_2_http_dns() {
    let cfg = config_of(SE_HTTP);
    let l = listener(&cfg, "0.0.0.0_80");
    let chain = &l["filter_chains"][0];
    assert_eq!(
        chain["filter_chain_match"]["application_protocols"],
        json!(["http/1.1", "h2c"])
    );
    assert_eq!(
        chain["filters"][0]["typed_config"]["rds"]["route_config_name"],
        "80"
    );
    assert_eq!(l["default_filter_chain"]["name"], "PassthroughFilterChain");

    let r = route(&cfg, "80");
    let vhosts = r["virtual_hosts"].as_array().expect("vhosts");
    assert_eq!(vhosts[0]["name"], "api.example.com:80");
    assert_eq!(
        vhosts[0]["domains"],
        json!(["api.example.com", "api.example.com."])
    );
    let default = &vhosts[0]["routes"][0];
    assert_eq!(default["name"], "default");
    assert_eq!(default["route"]["cluster"], "outbound|80||api.example.com");
    assert_eq!(default["route"]["timeout"], "0s");
    assert_eq!(default["route"]["retry_policy"]["num_retries"], 2);
    assert_eq!(vhosts.last().expect("catch-all")["name"], "allow_any");
    assert_eq!(
        vhosts.last().expect("catch-all")["routes"][0]["route"]["cluster"],
        "PassthroughCluster"
    );
}

#[test]
fn example_3_tcp_static_with_vip() {
    let cfg = config_of(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db}\nspec:\n  hosts: [db.example.com]\n  addresses: [10.1.2.3]\n  ports: [{number: 3306, name: mysql, protocol: TCP}]\n  resolution: STATIC\n  endpoints: [{address: 1.1.1.1}]\n",
    );
    let l = listener(&cfg, "10.1.2.3_3306");
    let chains = l["filter_chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 1);
    assert!(
        chains[0].get("filter_chain_match").is_none(),
        "match-all chain: {l}"
    );
    assert_eq!(
        chains[0]["filters"][0]["typed_config"]["cluster"],
        "outbound|3306||db.example.com"
    );
    assert_eq!(
        cluster(&cfg, "outbound|3306||db.example.com")["type"],
        "EDS"
    );
    let cla = cfg
        .endpoints
        .iter()
        .find(|e| e.cluster_name == "outbound|3306||db.example.com")
        .expect("cla");
    let cla = to_json_value(cla).expect("json");
    let lb = &cla["endpoints"][0]["lb_endpoints"][0];
    assert_eq!(
        lb["endpoint"]["address"]["socket_address"]["address"],
        "1.1.1.1"
    );
    assert_eq!(
        lb["endpoint"]["address"]["socket_address"]["port_value"],
        3306
    );
    assert_eq!(lb["load_balancing_weight"], 1);
}

#[test]
fn example_4_wildcard_none_tls() {
    let cfg = config_of(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: wiki}\nspec:\n  hosts: [\"*.wikipedia.org\"]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: NONE\n",
    );
    let l = listener(&cfg, "0.0.0.0_443");
    assert_eq!(
        l["filter_chains"][0]["filter_chain_match"]["server_names"],
        json!(["*.wikipedia.org"])
    );
    let c = cluster(&cfg, "outbound|443||*.wikipedia.org");
    assert_eq!(c["type"], "ORIGINAL_DST");
    assert_eq!(c["lb_policy"], "CLUSTER_PROVIDED");
}

#[test]
fn example_5_dr_simple_tls_origination() {
    let yaml = format!(
        "{SE_HTTP}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: tls}}\nspec:\n  host: api.example.com\n  trafficPolicy:\n    tls: {{mode: SIMPLE}}\n"
    );
    let cfg = config_of(&yaml);
    let c = cluster(&cfg, "outbound|80||api.example.com");
    let tls = &c["transport_socket"]["typed_config"];
    assert_eq!(
        tls["@type"],
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    );
    assert!(tls.get("sni").is_none(), "no sni: {tls}");
    let text = tls.to_string();
    assert!(text.contains("file-root:system"), "system CA: {tls}");
    let opts = &c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    assert_eq!(
        opts["upstream_http_protocol_options"]["auto_sni"], true,
        "{opts}"
    );
    assert_eq!(
        opts["upstream_http_protocol_options"]["auto_san_validation"],
        true
    );
}

fn examples(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

#[test]
fn seed_external_https_entries_share_443_by_sni() {
    let cfg = config_of_file(&examples("seed-external-svc-https.yaml"));
    let l = listener(&cfg, "0.0.0.0_443");
    let mut snis: Vec<String> = l["filter_chains"]
        .as_array()
        .expect("chains")
        .iter()
        .flat_map(|c| {
            c["filter_chain_match"]["server_names"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    snis.sort();
    assert_eq!(
        snis,
        vec![
            "api.dropboxapi.com",
            "api.facebook.com",
            "www.googleapis.com"
        ]
    );
    for h in [
        "api.dropboxapi.com",
        "www.googleapis.com",
        "api.facebook.com",
    ] {
        // resolution DNS: Envoy's typed DNS cluster resolving every address (STRICT_DNS).
        let c = cluster(&cfg, &format!("outbound|443||{h}"));
        assert_eq!(c["cluster_type"]["name"], "envoy.cluster.dns");
        assert!(
            c["cluster_type"]["typed_config"]
                .get("all_addresses_in_single_endpoint")
                .is_none()
        );
    }
}

#[test]
fn seed_mongo_cluster_cidr_static_and_mutual_tls() {
    let cfg = config_of_file(&examples("seed-mongocluster.yaml"));
    let l = listener(&cfg, "0.0.0.0_27018");
    let chain = &l["filter_chains"][0];
    assert_eq!(
        chain["filter_chain_match"]["prefix_ranges"][0]["prefix_len"],
        24
    );
    assert!(
        filter_names(chain).contains(&"envoy.filters.network.tcp_proxy".to_string()),
        "{chain}"
    );
    let c = cluster(&cfg, "outbound|27018||mymongodb.somedomain");
    assert_eq!(c["type"], "EDS");
    let tls = c["transport_socket"]["typed_config"].to_string();
    assert!(
        tls.contains("/etc/certs/myclientcert.pem")
            || tls.contains("file-cert:/etc/certs/myclientcert.pem"),
        "{tls}"
    );
    assert!(tls.contains("/etc/certs/rootcacerts.pem"), "{tls}");
    let cla = cfg
        .endpoints
        .iter()
        .find(|e| e.cluster_name == "outbound|27018||mymongodb.somedomain")
        .expect("cla");
    let addrs: Vec<String> = to_json_value(cla).expect("json")["endpoints"]
        .as_array()
        .expect("localities")
        .iter()
        .flat_map(|le| le["lb_endpoints"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| {
            e["endpoint"]["address"]["socket_address"]["address"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(addrs, vec!["2.2.2.2", "3.3.3.3"]);
}

//! `generate_encoded` is `generate` plus encoding: for every golden case under
//! `testdata/xds/` and `examples/`, and for a generated corpus large enough to run on several
//! threads, every encoded resource decodes to exactly the message `generate` returns, with
//! the same names in the same order, whatever the number of worker threads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use entryway_model::api::MeshConfig;
use entryway_model::check::check_text;
use entryway_model::decode::Format;
use entryway_model::registry::{ConfigSet, Proxy, ProxyScope, Registry};
use entryway_xds::generator::{
    EncodedConfig, EncodedResource, ProxyConfig, generate, generate_encoded, generate_encoded_with,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use prost::Message;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The proxy and mesh a case file's header comments describe (see the golden test).
fn case(path: &Path) -> (String, Proxy, MeshConfig) {
    let text = std::fs::read_to_string(path).expect("read case");
    let mut proxy = Proxy::in_namespace("default");
    let mut mesh = MeshConfig::default();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(rest) = line.strip_prefix("# proxy:") {
            for word in rest.split_whitespace() {
                match word.split_once('=') {
                    Some(("namespace", ns)) => {
                        let ips = proxy.ips.clone();
                        proxy = Proxy::in_namespace(ns);
                        proxy.ips = ips;
                    }
                    Some(("labels", l)) => {
                        proxy.labels = l
                            .split(',')
                            .filter_map(|kv| kv.split_once('='))
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect::<BTreeMap<_, _>>();
                    }
                    Some(("ip", ip)) => proxy.ips = vec![ip.parse().expect("ip")],
                    Some(("explicit-proxy", a)) => {
                        proxy.explicit_proxy = Some(a.parse().expect("ip:port"));
                    }
                    Some(("service-account", sa)) => proxy.service_account = Some(sa.into()),
                    None if word == "dns-capture" => proxy.dns_capture = true,
                    None if word == "inbound-capture" => proxy.inbound_capture = true,
                    _ => panic!("{}: unknown proxy setting {word:?}", path.display()),
                }
            }
        }
        if let Some(rest) = line.strip_prefix("# mesh:") {
            let mesh_path = root().join("testdata/mesh").join(rest.trim());
            let text = std::fs::read_to_string(&mesh_path).expect("mesh file");
            mesh = entryway_model::decode::mesh_from_str(&text).expect("mesh config");
        }
    }
    (text, proxy, mesh)
}

fn registry(text: &str, namespace: &str, mesh: &MeshConfig) -> Registry {
    let checked = check_text(text, Format::Yaml, namespace, mesh).expect("yaml");
    let configs: Vec<_> = checked
        .iter()
        .map(|c| {
            c.config()
                .cloned()
                .unwrap_or_else(|| panic!("invalid: {:?}", c.report))
        })
        .collect();
    Registry::build(&ConfigSet::new(configs), mesh)
}

fn same<M: Message + Default + PartialEq + std::fmt::Debug>(
    what: &str,
    enc: &[EncodedResource],
    want: &[M],
    name: impl Fn(&M) -> &str,
) {
    let got_names: Vec<&str> = enc.iter().map(|r| r.name.as_str()).collect();
    let want_names: Vec<&str> = want.iter().map(&name).collect();
    assert_eq!(got_names, want_names, "{what}: names or order differ");
    for (r, w) in enc.iter().zip(want) {
        let got = M::decode(r.bytes.as_slice())
            .unwrap_or_else(|e| panic!("{what} {}: does not decode: {e}", r.name));
        assert_eq!(&got, w, "{what} {}: content differs", r.name);
        assert_eq!(r.bytes.len(), w.encoded_len(), "{what} {}: length", r.name);
    }
}

fn check(label: &str, cfg: &ProxyConfig, enc: &EncodedConfig) {
    same(
        &format!("{label}: listener"),
        &enc.listeners,
        &cfg.listeners,
        |l: &Listener| &l.name,
    );
    same(
        &format!("{label}: route"),
        &enc.routes,
        &cfg.routes,
        |r: &RouteConfiguration| &r.name,
    );
    same(
        &format!("{label}: cluster"),
        &enc.clusters,
        &cfg.clusters,
        |c: &Cluster| &c.name,
    );
    same(
        &format!("{label}: endpoints"),
        &enc.endpoints,
        &cfg.endpoints,
        |e: &ClusterLoadAssignment| &e.cluster_name,
    );
    for (r, c) in enc.clusters.iter().zip(&cfg.clusters) {
        let eds = matches!(c.cluster_discovery_type,
            Some(ClusterDiscoveryType::Type(t)) if t == DiscoveryType::Eds as i32);
        assert_eq!(r.eds, eds, "{label}: eds flag of {}", r.name);
    }
    assert!(enc.listeners.iter().all(|r| !r.eds));
}

#[test]
fn every_golden_case_encodes_what_generate_returns() {
    let mut n = 0;
    for dir in ["testdata/xds", "examples"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .expect("case dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for path in files {
            let (text, proxy, mesh) = case(&path);
            let reg = registry(&text, &proxy.namespace, &mesh);
            let scope = ProxyScope::new(&reg, &mesh, &proxy);
            let cfg = generate(&scope);
            let label = path.display().to_string();
            check(&label, &cfg, &generate_encoded_with(&scope, 1));
            check(&label, &cfg, &generate_encoded_with(&scope, 3));
            n += 1;
        }
    }
    assert!(n >= 20, "expected at least 20 cases, found {n}");
}

/// Enough services for several worker blocks, with DestinationRules (subsets, TLS, port
/// policies), DNS, STATIC and NONE resolutions, sniffed and HTTP/2 ports.
/// Every object must be valid (checked).
fn corpus(count: usize) -> String {
    let mut s = String::new();
    for i in 0..count {
        let res = ["STATIC", "DNS", "NONE", "DNS_ROUND_ROBIN"][i % 4];
        let _ = write!(
            s,
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: se-{i}, namespace: ns-{ns}}}\nspec:\n  hosts: [a-{i}.example.com, b-{i}.example.com]\n  ports:\n  - {{number: {http}, name: http, protocol: HTTP}}\n  - {{number: 443, name: tls, protocol: TLS}}\n  - {{number: 9{p}, name: grpc, protocol: GRPC}}\n  - {{number: 7{p}, name: h2c, protocol: HTTP2}}\n  resolution: {res}\n  location: {loc}\n",
            ns = i % 7,
            http = 8000 + i % 50,
            p = 100 + i % 10,
            loc = if i % 3 == 0 {
                "MESH_INTERNAL"
            } else {
                "MESH_EXTERNAL"
            },
        );
        if res != "NONE" {
            s.push_str("  endpoints:\n");
            for e in 0..if res == "DNS_ROUND_ROBIN" { 1 } else { 3 } {
                if res == "STATIC" {
                    let _ = writeln!(
                        s,
                        "  - {{address: 10.{e}.{}.{}, locality: r1/z{e}, labels: {{v: v{e}}}, serviceAccount: sa{e}}}",
                        (i / 256) % 256,
                        i % 256
                    );
                } else if e == 0 {
                    let _ = writeln!(s, "  - {{address: e{e}-{i}.backend.example.net}}");
                } else {
                    let _ = writeln!(
                        s,
                        "  - {{address: e{e}-{i}.backend.example.net, locality: r{e}/z{e}}}"
                    );
                }
            }
        }
        if i % 10 == 0 {
            // A sniffed (protocol-less) port needs a single host.
            let _ = write!(
                s,
                "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: one-{i}, namespace: ns-{ns}}}\nspec:\n  hosts: [c-{i}.example.com]\n  ports: [{{number: 6{p}, name: any}}]\n  resolution: DNS\n",
                ns = i % 7,
                p = 100 + i % 10,
            );
        }
        if i % 5 == 0 {
            let _ = write!(
                s,
                "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: dr-{i}, namespace: ns-{ns}}}\nspec:\n  host: a-{i}.example.com\n  trafficPolicy:\n    loadBalancer: {{simple: ROUND_ROBIN}}\n    portLevelSettings:\n    - port: {{number: 443}}\n      tls: {{mode: SIMPLE, sni: x.example.com}}\n    outlierDetection: {{consecutive5xxErrors: 3}}\n  subsets:\n  - {{name: v0, labels: {{v: v0}}}}\n  - {{name: v1, labels: {{v: v1}}, trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}}}\n",
                ns = i % 7,
            );
        }
    }
    s
}

#[test]
fn large_mixed_corpus_is_the_same_on_any_number_of_threads() {
    let mesh = MeshConfig::default();
    let reg = registry(&corpus(600), "default", &mesh);
    for ns in ["ns-0", "ns-3", "other"] {
        let proxy = Proxy::in_namespace(ns);
        let scope = ProxyScope::new(&reg, &mesh, &proxy);
        let cfg = generate(&scope);
        assert!(
            cfg.clusters.len() > 2000 && !cfg.endpoints.is_empty(),
            "corpus too small: {} clusters",
            cfg.clusters.len()
        );
        let one = generate_encoded_with(&scope, 1);
        check(&format!("{ns}, 1 thread"), &cfg, &one);
        for workers in [2, 5] {
            let many = generate_encoded_with(&scope, workers);
            check(&format!("{ns}, {workers} threads"), &cfg, &many);
        }
        check(&format!("{ns}, default"), &cfg, &generate_encoded(&scope));
        assert_eq!(
            one.encoded_len(),
            entryway_xds::dump::encoded_len(&cfg),
            "total size"
        );
    }
}

/// Mesh-wide outlier detection turns on locality failover for every cluster (priorities on
/// the endpoints): the directly encoded endpoints must then follow the built ones.
#[test]
fn mesh_defaults_with_locality_failover() {
    let mesh = MeshConfig::from_yaml(
        "enableAutoMtls: true\nlocalityLbSetting:\n  failover: [{from: r1, to: r2}]\ndefaultTrafficPolicy:\n  connectionPool: {tcp: {maxConnections: 1000}}\n  outlierDetection: {consecutive5xxErrors: 10}\noutboundClusterStatName: \"%SERVICE%_%SERVICE_PORT%\"\n",
    )
    .expect("mesh");
    let reg = registry(&corpus(300), "default", &mesh);
    let proxy = Proxy::in_namespace("ns-1");
    let scope = ProxyScope::new(&reg, &mesh, &proxy);
    let cfg = generate(&scope);
    for workers in [1, 2] {
        check(
            &format!("mesh defaults, {workers} threads"),
            &cfg,
            &generate_encoded_with(&scope, workers),
        );
    }
}

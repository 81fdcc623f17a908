//! Generated Envoy configuration: golden files for every case under `testdata/xds/` and
//! `examples/`, and real Envoy accepting every generated configuration (`--mode validate` on
//! the static bootstrap), including a corpus of 1,000 mixed ServiceEntries.
//!
//! A case file may start with comment lines that describe the proxy and the mesh:
//!
//! ```text
//! # proxy: namespace=shop labels=app=web,version=v1 ip=10.0.0.9 dns-capture explicit-proxy=127.0.0.1:15080 service-account=web inbound-capture
//! # mesh: registry-only.yaml        (a file under testdata/mesh/)
//! ```
//!
//! Regenerate the golden files with `REFRESH_GOLDEN=1 cargo test -p entryway --test xds_golden`
//! and review the diff: they are the record of what Entryway sends to Envoy.

use std::path::{Path, PathBuf};

use entryway::xds::{generate, static_bootstrap, valid_configs};
use entryway_model::api::MeshConfig;
use entryway_model::registry::Proxy;
use entryway_testkit::EnvoyHarness;
use entryway_xds::generator::ProxyConfig;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Case {
    name: String,
    path: PathBuf,
    proxy: Proxy,
    mesh: MeshConfig,
}

fn parse_case(path: &Path) -> Case {
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
                        proxy.labels = entryway::xds::parse_labels(l).expect("labels");
                    }
                    Some(("ip", ip)) => proxy.ips = vec![ip.parse().expect("ip")],
                    Some(("explicit-proxy", a)) => {
                        proxy.explicit_proxy = Some(a.parse().expect("explicit-proxy ip:port"));
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
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("case")
        .to_string();
    Case {
        name,
        path: path.to_path_buf(),
        proxy,
        mesh,
    }
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for dir in ["testdata/xds", "examples"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .expect("case dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        out.extend(files.iter().map(|p| parse_case(p)));
    }
    assert!(
        out.len() >= 20,
        "expected at least 20 cases, found {}",
        out.len()
    );
    out
}

fn generate_case(case: &Case) -> ProxyConfig {
    let verdicts = entryway::validate::check_paths(
        std::slice::from_ref(&case.path),
        &case.proxy.namespace,
        &case.mesh,
    );
    let (set, problems, unreadable) = valid_configs(verdicts);
    assert!(
        problems.is_empty() && !unreadable,
        "{}: {problems:?}",
        case.name
    );
    generate(&set, &case.mesh, &case.proxy)
}

#[test]
fn golden_config_dumps() {
    let refresh = std::env::var_os("REFRESH_GOLDEN").is_some();
    let golden_dir = root().join("testdata/golden");
    std::fs::create_dir_all(&golden_dir).expect("golden dir");
    let mut failures = Vec::new();
    for case in cases() {
        let cfg = generate_case(&case);
        let dump = entryway_xds::dump::config_dump_json(&cfg, "1").expect("json");
        let json = serde_json::to_string_pretty(&dump).expect("json text") + "\n";
        let summary = entryway_xds::dump::summary(&cfg);
        for (ext, got) in [("json", &json), ("txt", &summary)] {
            let path = golden_dir.join(format!("{}.{ext}", case.name));
            if refresh {
                std::fs::write(&path, got).expect("write golden");
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(want) if &want == got => {}
                Ok(_) => failures.push(format!("{} differs from {}", case.name, path.display())),
                Err(_) => failures.push(format!(
                    "{} is missing (run with REFRESH_GOLDEN=1)",
                    path.display()
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}\nregenerate with REFRESH_GOLDEN=1 and review the diff",
        failures.join("\n")
    );
}

#[test]
fn generation_is_deterministic() {
    for case in cases() {
        let a = generate_case(&case);
        let b = generate_case(&case);
        assert_eq!(a, b, "{}", case.name);
    }
}

#[test]
fn envoy_accepts_every_case() {
    let envoy = EnvoyHarness::require();
    for case in cases() {
        let cfg = generate_case(&case);
        let bootstrap = static_bootstrap(&cfg, &case.proxy, 0).expect("bootstrap");
        let text = serde_json::to_string_pretty(&bootstrap).expect("json");
        if let Err(e) = envoy.validate(&text) {
            panic!("Envoy rejected case {}: {e}\n{text}", case.name);
        }
    }
}

/// 1,000 ServiceEntries mixing every resolution, protocol class, addresses and endpoints.
pub fn mixed_corpus(n: usize) -> String {
    use std::fmt::Write as _;
    let protocols = [
        "HTTP", "TCP", "TLS", "HTTPS", "GRPC", "HTTP2", "", "MONGO", "REDIS", "MYSQL",
    ];
    let resolutions = ["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"];
    let mut s = String::new();
    for i in 0..n {
        let res = resolutions[i % resolutions.len()];
        let proto = protocols[(i / 4) % protocols.len()];
        let port = 1000 + (i % 300) as u32;
        let proto_line = if proto.is_empty() {
            String::new()
        } else {
            format!(", protocol: {proto}")
        };
        let _ = write!(
            s,
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: se-{i}, namespace: ns-{ns}}}\nspec:\n  hosts: [svc-{i}.example.com]\n  ports:\n  - {{number: {port}, name: p-{i}{proto_line}}}\n  - {{number: {port2}, name: http-{i}, protocol: HTTP}}\n  resolution: {res}\n",
            ns = i % 7,
            port2 = 8000 + (i % 50),
        );
        if i % 3 == 0 && res != "DNS" && res != "DNS_ROUND_ROBIN" {
            let _ = writeln!(
                s,
                "  addresses: [10.{}.{}.{}]",
                (i / 65536) % 256,
                (i / 256) % 256,
                i % 256
            );
        }
        match res {
            "STATIC" => {
                let _ = writeln!(
                    s,
                    "  endpoints:\n  - {{address: 172.16.{a}.1, labels: {{v: a}}, locality: r{a}/z1}}\n  - {{address: 172.16.{a}.2, weight: 2}}",
                    a = i % 256
                );
            }
            "DNS" if i % 2 == 0 => {
                let _ = writeln!(
                    s,
                    "  endpoints:\n  - {{address: backend-{i}.example.net}}\n  - {{address: 192.0.2.{}}}",
                    i % 250 + 1
                );
            }
            "DNS_ROUND_ROBIN" if i % 2 == 0 => {
                let _ = writeln!(s, "  endpoints:\n  - {{address: rr-{i}.example.net}}");
            }
            _ => {}
        }
        if i % 10 == 0 {
            let _ = write!(
                s,
                "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: dr-{i}, namespace: ns-{ns}}}\nspec:\n  host: svc-{i}.example.com\n  trafficPolicy:\n    connectionPool: {{tcp: {{maxConnections: 10}}}}\n    outlierDetection: {{consecutive5xxErrors: 2, interval: 1s}}\n  subsets: [{{name: a, labels: {{v: a}}}}]\n",
                ns = i % 7
            );
        }
        if i % 25 == 0 {
            let _ = write!(
                s,
                "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs-{i}, namespace: ns-{ns}}}\nspec:\n  hosts: [svc-{i}.example.com]\n  http:\n  - match: [{{uri: {{prefix: /api}}}}]\n    route: [{{destination: {{host: svc-{i}.example.com, port: {{number: {port2}}}}}}}]\n    retries: {{attempts: 2, perTryTimeout: 1s}}\n    timeout: 3s\n  - route: [{{destination: {{host: svc-{i}.example.com, port: {{number: {port2}}}}}}}]\n",
                ns = i % 7,
                port2 = 8000 + (i % 50),
            );
        }
    }
    s
}

#[test]
fn envoy_accepts_a_corpus_of_1000_mixed_service_entries() {
    let envoy = EnvoyHarness::require();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("corpus.yaml");
    std::fs::write(&path, mixed_corpus(1000)).expect("write corpus");
    let mesh = MeshConfig::default();
    let verdicts = entryway::validate::check_paths(std::slice::from_ref(&path), "default", &mesh);
    let (set, problems, _) = valid_configs(verdicts);
    assert!(
        problems.is_empty(),
        "corpus should be valid: {:?}",
        &problems[..problems.len().min(5)]
    );
    assert!(set.configs.len() >= 1000);
    for ns in ["ns-0", "ns-3"] {
        let proxy = Proxy::in_namespace(ns);
        let cfg = generate(&set, &mesh, &proxy);
        assert!(
            cfg.clusters.len() > 1000,
            "clusters: {}",
            cfg.clusters.len()
        );
        let bootstrap = static_bootstrap(&cfg, &proxy, 0).expect("bootstrap");
        let text = serde_json::to_string(&bootstrap).expect("json");
        if let Err(e) = envoy.validate(&text) {
            let msg = e.to_string();
            panic!(
                "Envoy rejected the corpus for {ns}: {}",
                &msg[..msg.len().min(4000)]
            );
        }
    }
}

#![allow(missing_docs)]
use entryway_model::api::MeshConfig;
use entryway_model::check::check_text;
use entryway_model::decode::Format;
use entryway_model::registry::{ConfigSet, Proxy, ProxyScope, Registry};
use entryway_xds::generator::{ProxyConfig, cds, eds, generate, lds, rds};
use prost::Message;
use std::fmt::Write as _;
use std::time::Instant;
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
const COUNT: usize = 10_000;

fn corpus() -> String {
    let mut s = String::with_capacity(COUNT * 700);
    for i in 0..COUNT {
        let dns = i % 2 == 1;
        let _ = write!(
            s,
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: se-{i}, namespace: ns-{ns}}}\nspec:\n  hosts: [a-{i}.example.com, b-{i}.example.com]\n  ports:\n  - {{number: {http}, name: http, protocol: HTTP}}\n  - {{number: 443, name: tls, protocol: TLS}}\n  resolution: {res}\n  endpoints:\n",
            ns = i % 20,
            http = 8000 + i % 100,
            res = if dns { "DNS" } else { "STATIC" },
        );
        for e in 0..3 {
            if dns {
                let _ = writeln!(s, "  - {{address: e{e}-{i}.backend.example.net}}");
            } else {
                let _ = writeln!(
                    s,
                    "  - {{address: 10.{}.{}.{}, locality: r1/z{e}}}",
                    e,
                    (i / 256) % 256,
                    i % 256
                );
            }
        }
    }
    s
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let n: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mesh = MeshConfig::default();
    let text = corpus();
    let checked = check_text(&text, Format::Yaml, "default", &mesh).unwrap_or_default();
    let configs: Vec<_> = checked.iter().filter_map(|c| c.config().cloned()).collect();
    drop(checked);
    let set = ConfigSet::new(configs);
    let registry = Registry::build(&set, &mesh);
    let proxy = Proxy::in_namespace("ns-0");
    eprintln!("ready");
    if what == "enc_clusters" || what == "enc_eds" {
        let s = ProxyScope::new(&registry, &mesh, &proxy);
        let cfg = generate(&s);
        let mut buf = Vec::new();
        let t = Instant::now();
        for _ in 0..n {
            if what == "enc_clusters" {
                for c in &cfg.clusters {
                    buf.clear();
                    c.encode(&mut buf).unwrap_or_default();
                }
            } else {
                for c in &cfg.endpoints {
                    buf.clear();
                    c.encode(&mut buf).unwrap_or_default();
                }
            }
        }
        eprintln!("{what}: {:?} per iteration", t.elapsed() / n as u32);
        return;
    }
    let t = Instant::now();
    for _ in 0..n {
        match what.as_str() {
            "encoded" => {
                let s = ProxyScope::new(&registry, &mesh, &proxy);
                std::hint::black_box(entryway_xds::generator::generate_encoded_with(&s, 1));
            }
            "encoded_par" => {
                let mut v: Vec<_> = (0..n)
                    .map(|_| {
                        let t = Instant::now();
                        let s = ProxyScope::new(&registry, &mesh, &proxy);
                        std::hint::black_box(entryway_xds::generator::generate_encoded(&s));
                        t.elapsed()
                    })
                    .collect();
                v.sort();
                eprintln!("encoded_par median {:?} min {:?}", v[v.len() / 2], v[0]);
                return;
            }
            "registry" => {
                std::hint::black_box(Registry::build(&set, &mesh));
            }
            "scope" => {
                std::hint::black_box(ProxyScope::new(&registry, &mesh, &proxy));
            }
            "lds" => {
                let s = ProxyScope::new(&registry, &mesh, &proxy);
                std::hint::black_box(lds::listeners(&s));
            }
            "rds" => {
                let s = ProxyScope::new(&registry, &mesh, &proxy);
                let l = lds::listeners(&s);
                std::hint::black_box(rds::route_configurations(&s, &lds::route_names(&l)));
            }
            "cds" => {
                let s = ProxyScope::new(&registry, &mesh, &proxy);
                std::hint::black_box(cds::clusters(&s));
            }
            "eds" => {
                let s = ProxyScope::new(&registry, &mesh, &proxy);
                let mut c = cds::clusters(&s);
                c.sort_by(|a, b| a.name.cmp(&b.name));
                let t = Instant::now();
                std::hint::black_box(eds::load_assignments(&s, &c));
                eprintln!("eds {:?}", t.elapsed());
            }
            "encode" => {
                let s = ProxyScope::new(&registry, &mesh, &proxy);
                let cfg = generate(&s);
                let mut buf = Vec::new();
                let t = Instant::now();
                let mut b = 0;
                for c in &cfg.clusters {
                    buf.clear();
                    c.encode(&mut buf).unwrap_or_default();
                    b += buf.len();
                }
                eprintln!("clusters {:?} {b}", t.elapsed());
                let t = Instant::now();
                let mut b = 0;
                for c in &cfg.endpoints {
                    buf.clear();
                    c.encode(&mut buf).unwrap_or_default();
                    b += buf.len();
                }
                eprintln!("endpoints {:?} {b}", t.elapsed());
                let t = Instant::now();
                let mut b = 0;
                for c in &cfg.listeners {
                    buf.clear();
                    c.encode(&mut buf).unwrap_or_default();
                    b += buf.len();
                }
                eprintln!("listeners {:?} {b}", t.elapsed());
                let t = Instant::now();
                let mut b = 0;
                for c in &cfg.routes {
                    buf.clear();
                    c.encode(&mut buf).unwrap_or_default();
                    b += buf.len();
                }
                eprintln!("routes {:?} {b}", t.elapsed());
                let t = Instant::now();
                let ProxyConfig {
                    listeners,
                    routes,
                    clusters,
                    endpoints,
                } = cfg;
                drop(clusters);
                eprintln!("drop clusters {:?}", t.elapsed());
                let t = Instant::now();
                drop(endpoints);
                eprintln!("drop endpoints {:?}", t.elapsed());
                let t = Instant::now();
                drop(listeners);
                eprintln!("drop listeners {:?}", t.elapsed());
                let t = Instant::now();
                drop(routes);
                eprintln!("drop routes {:?}", t.elapsed());
            }
            _ => {
                let s = ProxyScope::new(&registry, &mesh, &proxy);
                let cfg = generate(&s);
                let mut buf = Vec::new();
                let mut bytes = 0;
                for c in &cfg.clusters {
                    buf.clear();
                    c.encode(&mut buf).unwrap_or_default();
                    bytes += buf.len();
                }
                for c in &cfg.endpoints {
                    buf.clear();
                    c.encode(&mut buf).unwrap_or_default();
                    bytes += buf.len();
                }
                for c in &cfg.listeners {
                    buf.clear();
                    c.encode(&mut buf).unwrap_or_default();
                    bytes += buf.len();
                }
                for c in &cfg.routes {
                    buf.clear();
                    c.encode(&mut buf).unwrap_or_default();
                    bytes += buf.len();
                }
                std::hint::black_box(bytes);
            }
        }
    }
    eprintln!("{what}: {:?} per iteration", t.elapsed() / n as u32);
}

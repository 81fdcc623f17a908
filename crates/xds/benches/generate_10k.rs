//! Registry build and one proxy's full generation plus protobuf encoding for 10,000
//! ServiceEntries (2 hosts, 2 ports, 3 endpoints each). Targets: registry < 100 ms,
//! generation + encoding < 100 ms.
//!
//! Generation is measured two ways: `generate_encoded` (encodes each resource as it is built,
//! on every core; what the targets are judged on) and `generate` followed by encoding and
//! dropping the prost structs (one thread). Both must produce the same number of bytes.
//!
//! Baseline, measured in the same run: deep-cloning the decoded configuration set (a pass
//! over the same data that allocates as much as copying it) — the ratios are what to compare
//! across machines. Peak memory is the process's VmHWM after each stage.
//!
//! Run: `cargo bench -p entryway-xds --bench generate_10k` (`-- --quick` for one round).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use entryway_model::api::MeshConfig;
use entryway_model::check::check_text;
use entryway_model::decode::Format;
use entryway_model::registry::{ConfigSet, Proxy, ProxyScope, Registry};
use entryway_xds::generator::{
    ProxyConfig, cds, eds, generate, generate_encoded, generate_encoded_with, lds, rds,
};
use prost::Message;

// The allocator of the `entryway` binary (crates/cli/src/main.rs), so that the figures are
// those of the shipped server. With the system allocator (before this line was added) the
// same machine measured registry 136 ms, generate_encoded 181 ms (one thread 288 ms); note
// the clone baseline also speeds up (15 -> 4 ms), so ratios across that change mislead.
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

fn vm_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn median<F: FnMut()>(rounds: usize, mut f: F) -> Duration {
    let mut v: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Encoded size of every resource (the bench's encoding loop).
fn encode_all(cfg: &ProxyConfig) -> usize {
    let mut bytes = 0;
    let mut buf = Vec::new();
    for l in &cfg.listeners {
        buf.clear();
        l.encode(&mut buf).unwrap_or_default();
        bytes += buf.len();
    }
    for r in &cfg.routes {
        buf.clear();
        r.encode(&mut buf).unwrap_or_default();
        bytes += buf.len();
    }
    for c in &cfg.clusters {
        buf.clear();
        c.encode(&mut buf).unwrap_or_default();
        bytes += buf.len();
    }
    for e in &cfg.endpoints {
        buf.clear();
        e.encode(&mut buf).unwrap_or_default();
        bytes += buf.len();
    }
    bytes
}

/// The stages of [`generate`] one by one, plus encoding and dropping the result: where the
/// generation time goes.
fn stage_timings(
    rounds: usize,
    registry: &Registry,
    mesh: &MeshConfig,
    proxy: &Proxy,
) -> Vec<(&'static str, Duration)> {
    const NAMES: [&str; 7] = [
        "scope",
        "listeners (LDS)",
        "routes (RDS)",
        "clusters (CDS)",
        "endpoints (EDS)",
        "encode",
        "drop",
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); NAMES.len()];
    for _ in 0..rounds {
        let mut lap = Instant::now();
        let mut record = |i: usize, samples: &mut Vec<Vec<Duration>>| {
            let now = Instant::now();
            samples[i].push(now - lap);
            lap = now;
        };
        let scope = ProxyScope::new(registry, mesh, proxy);
        record(0, &mut samples);
        let mut listeners = lds::listeners(&scope);
        listeners.sort_by(|a, b| a.name.cmp(&b.name));
        record(1, &mut samples);
        let mut routes = rds::route_configurations(&scope, &lds::route_names(&listeners));
        routes.sort_by(|a, b| a.name.cmp(&b.name));
        record(2, &mut samples);
        let mut clusters = cds::clusters(&scope);
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        record(3, &mut samples);
        let mut endpoints = eds::load_assignments(&scope, &clusters);
        endpoints.sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
        record(4, &mut samples);
        let cfg = ProxyConfig {
            listeners,
            routes,
            clusters,
            endpoints,
        };
        std::hint::black_box(encode_all(&cfg));
        record(5, &mut samples);
        drop(cfg);
        drop(scope);
        record(6, &mut samples);
    }
    NAMES
        .into_iter()
        .zip(samples)
        .map(|(n, mut v)| {
            v.sort();
            (n, v[v.len() / 2])
        })
        .collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 1 } else { 7 };
    let mesh = MeshConfig::default();
    let text = corpus();
    let rss_start = vm_kib("VmRSS:");
    let t = Instant::now();
    let checked = check_text(&text, Format::Yaml, "default", &mesh).unwrap_or_default();
    let decode = t.elapsed();
    let configs: Vec<_> = checked.iter().filter_map(|c| c.config().cloned()).collect();
    assert_eq!(configs.len(), COUNT, "every generated entry must be valid");
    drop(checked);
    let set = ConfigSet::new(configs);
    let hwm_decoded = vm_kib("VmHWM:");

    let baseline = median(rounds, || {
        let copy = set.configs.clone();
        std::hint::black_box(&copy);
    });
    let registry_time = median(rounds, || {
        std::hint::black_box(Registry::build(&set, &mesh));
    });
    // The same build with the drop left out of the timing (the figure above, build + drop, is
    // the one judged against the target; this shows how the two split).
    let registry_build_only = {
        let mut v: Vec<Duration> = (0..rounds)
            .map(|_| {
                let t = Instant::now();
                let r = Registry::build(&set, &mesh);
                let d = t.elapsed();
                drop(std::hint::black_box(r));
                d
            })
            .collect();
        v.sort();
        v[v.len() / 2]
    };
    let registry = Registry::build(&set, &mesh);
    let hwm_registry = vm_kib("VmHWM:");
    let proxy = Proxy::in_namespace("ns-0");
    // The streaming path first, so that its peak memory is not hidden by the other's.
    let mut encoded_fast = 0usize;
    let mut fast_best = Duration::MAX;
    let fast_time = median(rounds, || {
        let t = Instant::now();
        let scope = ProxyScope::new(&registry, &mesh, &proxy);
        let enc = generate_encoded(&scope);
        encoded_fast = enc.encoded_len();
        drop(enc);
        drop(scope);
        fast_best = fast_best.min(t.elapsed());
    });
    let hwm_fast = vm_kib("VmHWM:");
    let fast_one_thread = median(rounds, || {
        let scope = ProxyScope::new(&registry, &mesh, &proxy);
        std::hint::black_box(generate_encoded_with(&scope, 1).encoded_len());
    });
    let mut encoded = 0usize;
    let mut counts = (0, 0, 0, 0);
    let generate_time = median(rounds, || {
        let scope = ProxyScope::new(&registry, &mesh, &proxy);
        let cfg = generate(&scope);
        encoded = encode_all(&cfg);
        counts = (
            cfg.listeners.len(),
            cfg.routes.len(),
            cfg.clusters.len(),
            cfg.endpoints.len(),
        );
    });
    assert_eq!(encoded, encoded_fast, "both paths encode the same bytes");
    let hwm_generate = vm_kib("VmHWM:");
    let stages = stage_timings(rounds, &registry, &mesh, &proxy);

    let verdict = |d: Duration| {
        if d < Duration::from_millis(100) {
            "met"
        } else {
            "NOT met"
        }
    };
    println!(
        "generate_10k: {COUNT} ServiceEntries (2 hosts, 2 ports, 3 endpoints), median of {rounds}"
    );
    println!(
        "  decode + validate (once)            {:>9.1} ms",
        ms(decode)
    );
    println!(
        "  baseline: clone the config set      {:>9.1} ms",
        ms(baseline)
    );
    println!(
        "  registry build + drop               {:>9.1} ms  ({:.2}x baseline)  target < 100 ms -> {}",
        ms(registry_time),
        registry_time.as_secs_f64() / baseline.as_secs_f64(),
        verdict(registry_time)
    );
    println!(
        "    of which building (drop excluded) {:>9.1} ms",
        ms(registry_build_only)
    );
    println!(
        "  one proxy: generate_encoded         {:>9.1} ms  ({:.2}x baseline)  target < 100 ms -> {}",
        ms(fast_time),
        fast_time.as_secs_f64() / baseline.as_secs_f64(),
        verdict(fast_time)
    );
    // The best round shows the code's speed when the second core is free; on a shared VM the
    // median also carries whatever else ran. The target is judged on the median.
    println!(
        "    best of {rounds} rounds                  {:>9.1} ms",
        ms(fast_best)
    );
    println!(
        "    same, one thread                  {:>9.1} ms  ({:.2}x baseline)",
        ms(fast_one_thread),
        fast_one_thread.as_secs_f64() / baseline.as_secs_f64(),
    );
    println!(
        "  one proxy: generate + encode + drop {:>9.1} ms  ({:.2}x baseline)  (prost structs, one thread) -> {}",
        ms(generate_time),
        generate_time.as_secs_f64() / baseline.as_secs_f64(),
        verdict(generate_time)
    );
    println!("  per stage (median of {rounds}, each stage run on its own):");
    for (name, d) in &stages {
        println!("    {name:<34}{:>9.1} ms", ms(*d));
    }
    println!(
        "  resources: {} listeners, {} route configs, {} clusters, {} endpoint sets; {:.1} MiB encoded",
        counts.0,
        counts.1,
        counts.2,
        counts.3,
        encoded as f64 / (1024.0 * 1024.0)
    );
    println!(
        "  memory: RSS at start {:.0} MiB; peak after decode {:.0} MiB, after registry {:.0} MiB, after generate_encoded {:.0} MiB, after generate {:.0} MiB",
        rss_start as f64 / 1024.0,
        hwm_decoded as f64 / 1024.0,
        hwm_registry as f64 / 1024.0,
        hwm_fast as f64 / 1024.0,
        hwm_generate as f64 / 1024.0
    );
}

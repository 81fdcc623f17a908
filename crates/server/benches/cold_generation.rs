//! Cold generation of one proxy's full configuration at 10,000 ServiceEntries (2 hosts, 2
//! ports, 3 endpoints each: 40,003 clusters, 20,000 load assignments), through the function
//! the server runs for a proxy it has not served before ([`generate_for`]: the one generation
//! path, canonical encoding, ADS resources with versions, the name table). Target: < 150 ms.
//!
//! Baseline, measured in the same run: deep-cloning the decoded configuration set (a pass
//! over the same data that allocates as much as copying it); the ratio is what to compare
//! across machines. Also printed: the same generation on one thread (how much the second core
//! gives) and peak memory (VmHWM).
//!
//! Run: `cargo bench -p entryway-server --bench cold_generation` (`-- --quick`: one round).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use entryway_model::api::MeshConfig;
use entryway_model::check::check_text;
use entryway_model::decode::Format;
use entryway_model::registry::{ConfigSet, Proxy, ProxyScope, Registry};
use entryway_server::ads::cache::generate_for;
use entryway_server::snapshot::Snapshot;

// The allocator of the `entryway` binary, so that the figures are the shipped server's,
// counting what is asked of it (bytes allocated is the figure that does not depend on the
// machine).
#[global_allocator]
static GLOBAL: stats_alloc::StatsAlloc<mimalloc::MiMalloc> =
    stats_alloc::StatsAlloc::new(mimalloc::MiMalloc);

/// Bytes and allocations asked of the allocator while `f` runs (all threads).
fn allocations<T>(f: impl FnOnce() -> T) -> (T, u64, u64) {
    let region = stats_alloc::Region::new(&GLOBAL);
    let out = f();
    let c = region.change();
    let bytes = c.bytes_allocated as u64 + c.bytes_reallocated.max(0) as u64;
    (out, bytes, (c.allocations + c.reallocations) as u64)
}

const COUNT: usize = 10_000;

/// The corpus of `crates/xds/benches/generate_10k.rs`.
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

/// CPU time of the calling thread, in nanoseconds (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn median(rounds: usize, mut f: impl FnMut()) -> Duration {
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
    d.as_secs_f64() * 1000.0
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 1 } else { 7 };
    let mesh = MeshConfig::default();
    let text = corpus();
    let configs: Vec<_> = check_text(&text, Format::Yaml, "default", &mesh)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.config().cloned())
        .collect();
    assert_eq!(configs.len(), COUNT, "every generated entry must be valid");
    let set = ConfigSet::new(configs);
    let baseline = median(rounds, || {
        std::hint::black_box(set.configs.clone());
    });
    let registry = Registry::build(&set, &mesh);
    let snapshot = Snapshot {
        version: 1,
        mesh: Arc::new(mesh),
        configs: Arc::new(set),
        registry: Arc::new(registry),
        rejected: Arc::new(Vec::new()),
    };
    let proxy = Proxy::in_namespace("ns-0");
    let hwm_before = vm_kib("VmHWM:");
    let mut resources = 0;
    let mut bytes = 0;
    let cold = median(rounds, || {
        let g = generate_for(&snapshot, &proxy, None, None);
        resources = g.sets.iter().map(|s| s.entries.len()).sum::<usize>();
        bytes = g
            .sets
            .iter()
            .flat_map(|s| s.entries.values())
            .map(|r| r.body.len())
            .sum::<usize>();
    });
    let hwm_after = vm_kib("VmHWM:");
    let (_, gen_bytes, gen_count) = allocations(|| generate_for(&snapshot, &proxy, None, None));
    let (scope, scope_bytes, _) =
        allocations(|| ProxyScope::new(&snapshot.registry, &snapshot.mesh, &proxy));
    let (listeners, lds_bytes, _) = allocations(|| {
        let mut l = entryway_xds::generator::lds::listeners(&scope);
        l.sort_by(|a, b| a.name.cmp(&b.name));
        l
    });
    let names = entryway_xds::generator::lds::route_names(&listeners);
    let (_, rds_bytes, _) =
        allocations(|| entryway_xds::generator::rds::route_configurations(&scope, &names));
    // One thread: the generator's workers off (same function, ProxyScope path). Also timed
    // as the thread's CPU time, which other load on the machine disturbs far less than the
    // wall clock.
    let mut cpu: Vec<u64> = Vec::new();
    let one_thread = median(rounds.min(5), || {
        let before = thread_cpu_ns();
        let scope = ProxyScope::new(&snapshot.registry, &snapshot.mesh, &proxy);
        std::hint::black_box(entryway_xds::generator::generate_encoded_with(&scope, 1));
        cpu.push(thread_cpu_ns().saturating_sub(before));
    });
    cpu.sort_unstable();
    let one_thread_cpu_ms = cpu.first().map_or(0.0, |n| *n as f64 / 1e6);
    println!(
        "cold generation (generate_for, the server's path): {:.1} ms median of {rounds} ({resources} resources, {:.1} MiB)",
        ms(cold),
        bytes as f64 / (1 << 20) as f64
    );
    println!(
        "  generation alone on one thread: {:.1} ms ({one_thread_cpu_ms:.1} ms of CPU, least of the rounds); baseline (clone the config set): {:.1} ms; ratio {:.1}x",
        ms(one_thread),
        ms(baseline),
        cold.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "  peak RSS {:.0} MiB -> {:.0} MiB",
        hwm_before as f64 / 1024.0,
        hwm_after as f64 / 1024.0
    );
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "  allocated per generation: {:.0} MiB in {gen_count} allocations (scope {:.1} MiB, listeners {:.1} MiB, routes {:.1} MiB)",
        mib(gen_bytes),
        mib(scope_bytes),
        mib(lds_bytes),
        mib(rds_bytes)
    );
    println!(
        "cold_ms={:.1} one_thread_ms={:.1} one_thread_cpu_ms={one_thread_cpu_ms:.1} baseline_ms={:.1} resources={resources} bytes={bytes}",
        ms(cold),
        ms(one_thread),
        ms(baseline)
    );
    println!("alloc_mib={:.0} allocations={gen_count}", mib(gen_bytes));
}

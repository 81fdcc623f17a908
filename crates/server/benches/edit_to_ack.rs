//! Edit → ACK: the whole control plane in process (store + `watch::run` + ADS + admin) and K
//! real Envoys (half SotW, half Delta; each its own base id, admin port and namespace), then M
//! edits of one ServiceEntry file, alternating "add an endpoint" and "change the port". For
//! each edit: the time from the file write until the watcher published the new snapshot, and
//! until every Envoy has ACKed every type of it (observed in the shared proxy status that
//! `/debug/syncz` shows, polled every ~1 ms).
//!
//! Each Envoy has its own namespace (so its own generation) and the generate hook moves its
//! capture listener to its own loopback port, so the Envoys do not compete for 0.0.0.0:15001.
//!
//! Environment: `ENTRYWAY_EDIT_ENVOYS` (default 4), `ENTRYWAY_EDIT_EDITS` (default 20),
//! `ENTRYWAY_EDIT_SERVICES` (other ServiceEntries loaded, default 100). Needs Envoy
//! (`ENVOY_BIN`, `PATH` or the workspace `.venv`).
//!
//! Run: `cargo bench -p entryway-server --bench edit_to_ack`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use entryway_agent::bootstrap::{
    AdsApiType, AdsOptions as BootstrapAds, BootstrapOptions, XdsAddress,
};
use entryway_server::admin::AdminServer;
use entryway_server::ads::{self, AdsOptions, GenerateHook, Kind};
use entryway_server::shared::Shared;
use entryway_server::store::{Store, StoreOptions};
use entryway_server::watch::{self, WatchOptions};
use entryway_testkit::http::http_get;
use entryway_testkit::{EnvoyHarness, EnvoyProcess, free_port};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
use tokio::sync::oneshot;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Bound of every wait.
const BOUND: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(1);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn se(name: &str, host: &str, port: u32, endpoints: usize) -> String {
    let mut s = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hosts: [{host}]\n  ports:\n  - {{number: {port}, name: http, protocol: HTTP}}\n  resolution: STATIC\n  endpoints:\n"
    );
    for e in 0..endpoints {
        let _ = writeln!(s, "  - {{address: 127.0.{}.{}}}", 1 + e / 250, 1 + e % 250);
    }
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Envoy `i`'s namespace.
fn namespace(i: usize) -> String {
    format!("bench-{i}")
}

/// Moves each proxy's bound listeners to 127.0.0.1 and the port of its namespace.
fn hook(ports: BTreeMap<String, u16>) -> GenerateHook {
    Arc::new(move |proxy, _snapshot, cfg| {
        let Some(port) = ports.get(&proxy.namespace) else {
            return;
        };
        for l in &mut cfg.listeners {
            if l.bind_to_port.as_ref().is_none_or(|b| b.value) {
                l.address = Some(Address {
                    address: Some(AddressKind::SocketAddress(SocketAddress {
                        address: "127.0.0.1".to_string(),
                        port_specifier: Some(PortSpecifier::PortValue(u32::from(*port))),
                        ..Default::default()
                    })),
                });
            }
        }
    })
}

/// True when `envoys` proxies are connected, each was pushed `version` and has ACKed the
/// latest response of every type.
fn converged(shared: &Shared, envoys: usize, version: u64) -> bool {
    let Ok(proxies) = shared.proxies.lock() else {
        return false;
    };
    proxies.len() == envoys
        && proxies.values().all(|(_, s)| {
            s.snapshot_version == version
                && Kind::PUSH_ORDER.iter().all(|k| {
                    s.types.get(k.type_url()).is_some_and(|t| {
                        !t.sent_version.is_empty()
                            && t.acked_version == t.sent_version
                            && t.last_nack.is_none()
                    })
                })
        })
}

fn nacks(shared: &Shared) -> u64 {
    shared.metrics.nacks.values().values().sum()
}

async fn poll_until(
    what: &str,
    envoys: &[EnvoyProcess],
    mut f: impl FnMut() -> bool,
) -> BenchResult<()> {
    let deadline = Instant::now() + BOUND;
    while !f() {
        if Instant::now() > deadline {
            let logs: String = envoys
                .iter()
                .map(|e| e.log_tail(10))
                .collect::<Vec<_>>()
                .join("\n---\n");
            return Err(format!("timed out after {BOUND:?} waiting for {what}\n{logs}").into());
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

struct Stats {
    median: Duration,
    max: Duration,
    min: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    Stats {
        min: v.first().copied().unwrap_or_default(),
        median: v.get(v.len() / 2).copied().unwrap_or_default(),
        max: v.last().copied().unwrap_or_default(),
    }
}

async fn run() -> BenchResult<()> {
    let k = env_usize("ENTRYWAY_EDIT_ENVOYS", 4).max(1);
    let edits = env_usize("ENTRYWAY_EDIT_EDITS", 20).max(1);
    let services = env_usize("ENTRYWAY_EDIT_SERVICES", 100);
    let harness = EnvoyHarness::require();

    let dir = tempfile::tempdir()?;
    let mut others = String::new();
    for i in 0..services {
        others.push_str("---\n");
        others.push_str(&se(
            &format!("svc-{i}"),
            &format!("svc-{i}.example.com"),
            8000 + (i % 50) as u32,
            2,
        ));
    }
    std::fs::write(dir.path().join("others.yaml"), others)?;
    let edited = dir.path().join("edited.yaml");
    std::fs::write(&edited, se("edited", "edited.example.com", 9000, 1))?;

    let (store, shared) = Store::open(StoreOptions::new(vec![dir.path().to_path_buf()]))?;
    let watch_options = WatchOptions::default();
    let (watch_stop, watch_stopped) = oneshot::channel::<()>();
    let watcher = tokio::spawn(watch::run(store, watch_options, async move {
        let _ = watch_stopped.await;
    }));

    let mut ports = BTreeMap::new();
    for i in 0..k {
        ports.insert(namespace(i), free_port()?);
    }
    let listener = ads::bind("127.0.0.1:0".parse()?).await?;
    let xds = listener.local_addr()?;
    let (ads_stop, ads_stopped) = oneshot::channel::<()>();
    let ads_task = tokio::spawn(ads::serve_with(
        listener,
        Arc::clone(&shared),
        AdsOptions {
            generate_hook: Some(hook(ports)),
            ..Default::default()
        },
        async move {
            let _ = ads_stopped.await;
        },
    ));
    let admin = AdminServer::bind("127.0.0.1:0".parse()?, Arc::clone(&shared)).await?;
    let admin_addr = admin.local_addr()?;
    let (admin_stop, admin_stopped) = oneshot::channel::<()>();
    let admin_task = tokio::spawn(admin.serve(async move {
        let _ = admin_stopped.await;
    }));

    let mut envoys = Vec::new();
    for i in 0..k {
        let api = if i % 2 == 0 {
            AdsApiType::Grpc
        } else {
            AdsApiType::DeltaGrpc
        };
        let bootstrap = BootstrapOptions::new(
            format!(
                "sidecar~127.0.0.1~bench-{i}.{ns}~{ns}.svc.cluster.local",
                ns = namespace(i)
            ),
            format!("bench-{i}"),
        )
        .with_admin_port(0)
        .with_metadata("NAMESPACE", namespace(i))
        .with_ads(BootstrapAds::new(
            api,
            XdsAddress::new("127.0.0.1", xds.port()),
        ))
        .render();
        let envoy = tokio::task::block_in_place(|| harness.start(&bootstrap))?;
        envoys.push(envoy);
    }
    let t = Instant::now();
    let version = shared.snapshot.borrow().version;
    poll_until(
        "the initial configuration ACKed by every Envoy",
        &envoys,
        || converged(&shared, k, version),
    )
    .await?;
    let initial = t.elapsed();

    let mut to_publish = Vec::new();
    let mut to_ack = Vec::new();
    let mut port = 9000;
    let mut endpoints = 1;
    for n in 0..edits {
        if n % 2 == 0 {
            endpoints += 1;
        } else {
            port += 1;
        }
        let before = shared.snapshot.borrow().version;
        let t0 = Instant::now();
        std::fs::write(&edited, se("edited", "edited.example.com", port, endpoints))?;
        let mut published = None;
        poll_until(&format!("edit {n} published"), &envoys, || {
            let v = shared.snapshot.borrow().version;
            if v > before {
                published = Some(v);
            }
            published.is_some()
        })
        .await?;
        let Some(version) = published else {
            return Err("no version".into());
        };
        to_publish.push(t0.elapsed());
        poll_until(&format!("edit {n} ACKed by every Envoy"), &envoys, || {
            converged(&shared, k, version)
        })
        .await?;
        to_ack.push(t0.elapsed());
    }
    let total_nacks = nacks(&shared);

    // The admin endpoint shows the same: every Envoy, nothing rejected.
    let syncz = tokio::task::block_in_place(|| http_get(admin_addr, "localhost", "/debug/syncz"))?;
    let syncz: serde_json::Value = serde_json::from_slice(&syncz.body)?;
    let listed = syncz.as_array().map_or(0, Vec::len);

    let p = stats(to_publish);
    let a = stats(to_ack);
    println!(
        "edit_to_ack: {k} Envoys ({} SotW, {} Delta), {edits} edits (alternating +1 endpoint / port change), {} other ServiceEntries",
        k.div_ceil(2),
        k / 2,
        services
    );
    println!(
        "watch debounce: quiet {} ms, max delay {} ms; status polled every {} ms",
        watch_options.quiet.as_millis(),
        watch_options.max_delay.as_millis(),
        POLL.as_millis()
    );
    println!(
        "initial config ACKed by all Envoys {:.1} ms after they started",
        ms(initial)
    );
    println!(
        "{:<40} {:>9} {:>9} {:>9}",
        "ms after the file write", "min", "median", "max"
    );
    println!(
        "{:<40} {:>9.2} {:>9.2} {:>9.2}",
        "snapshot published (watch + reload)",
        ms(p.min),
        ms(p.median),
        ms(p.max)
    );
    println!(
        "{:<40} {:>9.2} {:>9.2} {:>9.2}",
        "every Envoy ACKed every type",
        ms(a.min),
        ms(a.median),
        ms(a.max)
    );
    println!(
        "NACKs: {total_nacks}; /debug/syncz lists {listed} proxies; Envoys still running: {}",
        envoys.iter().filter(|e| e.is_running()).count()
    );

    for e in envoys {
        let _ = tokio::task::block_in_place(|| e.shutdown());
    }
    let _ = watch_stop.send(());
    let _ = ads_stop.send(());
    let _ = admin_stop.send(());
    let _ = watcher.await;
    let _ = ads_task.await;
    let _ = admin_task.await;
    Ok(())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edit_to_ack: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("edit_to_ack: {e}");
        std::process::exit(1);
    }
}

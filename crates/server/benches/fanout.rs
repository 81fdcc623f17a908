//! Push fan-out: N simulated ADS streams (tonic clients over loopback, each on its own HTTP/2
//! connection with Envoy's large flow-control windows, half SotW and half Delta by default)
//! subscribed to CDS and LDS and ACKing everything, against a store of S ServiceEntries (generated as
//! `crates/xds/benches/generate_10k.rs` does: 2 hosts, 2 ports, 3 endpoints each, spread over
//! files of 100). Then one ServiceEntry's HTTP port is changed (file rewrite + reload) and the
//! time from the write until each stream has received the change is measured.
//!
//! Printed: the initial sync of all streams, per-stream push latency (min / median / p99 /
//! max; first response of the change and both CDS and LDS), the control plane's RSS before
//! and after connecting the streams (the clients run in a child process — this same binary
//! with `ENTRYWAY_FANOUT_CLIENT` set — so `/proc/self` is the control plane alone; they share
//! the machine's cores with it), and a baseline measured in the same run — generating and encoding one
//! proxy's configuration once — so results can be quoted as ratios.
//!
//! Reading the memory figures: the bench runs on jemalloc so it can print the live heap next
//! to RSS. Retention per stream was tonic's per-stream encode buffer, which kept an allocation
//! of one to three times the stream's largest response (the outbound listener is 0.4 MB at
//! 1,000 ServiceEntries, a SotW CDS is the whole CDS) for the life of the stream, whatever the
//! Delta chunk size or the client windows: 1,000 SEs x 1,000 Delta streams, live heap after the
//! sync 1,139 MiB with `ENTRYWAY_FANOUT_ENCODER=tonic`, 161 MiB with the server's own framing
//! (`ads::grpc`, the default). RSS then stayed at the sync's peak (VmHWM 2.7 GiB): each
//! stream materialised whole pushes into its queue. Now streams queue planned responses
//! (pointers) and materialise them within the push budget (`ads::grpc::Budget`, 64 MiB):
//! same run, VmHWM 267 MiB, RSS after the sync 184 MiB (heap live 157 MiB); 10,000 SEs x
//! 1,000 Delta streams, VmHWM 1.67 GiB (heap live after the sync 956 MiB, per-stream state).
//!
//! Environment: `ENTRYWAY_FANOUT_STREAMS` (default 1000), `ENTRYWAY_FANOUT_SERVICES`
//! (default 1000), `ENTRYWAY_FANOUT_MODE` = `mixed` (default) | `sotw` | `delta`,
//! `ENTRYWAY_FANOUT_DELTA_CHUNK` (bytes; Delta response split size, default 256 KiB),
//! `ENTRYWAY_FANOUT_ENCODER=tonic` (tonic's generated server instead of `ads::grpc`),
//! `ENTRYWAY_FANOUT_CLIENT_WINDOW` (clients' HTTP/2 windows, default 256 MiB as Envoy),
//! `ENTRYWAY_FANOUT_EXIT_AFTER_SYNC` (exit after the sync, for heap profiles),
//! `ENTRYWAY_FANOUT_BUDGET_MIB` (the server's push budget, `ads::grpc::Budget`; default 64),
//! `ENTRYWAY_FANOUT_JEMALLOC_DEFAULTS` (keep jemalloc's lazy purging; by default the bench
//! turns on its background thread with a 1 s decay so that RSS follows live memory).
//!
//! Run: `cargo bench -p entryway-server --bench fanout`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use entryway_model::registry::{Proxy, ProxyScope};
use entryway_server::ads::resources::Generated;
use entryway_server::ads::{AdsOptions, AdsServer, Kind};
use entryway_server::shared::Shared;
use entryway_server::store::{Store, StoreOptions};
use entryway_xds::generator::generate;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;

/// The allocator under test (see the module comment); its statistics tell live heap bytes
/// from memory the allocator keeps.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's (allocated, resident) bytes: live heap, and pages it holds.
fn heap() -> (u64, u64) {
    use tikv_jemalloc_ctl::{epoch, stats};
    if epoch::advance().is_err() {
        return (0, 0);
    }
    let allocated = stats::allocated::read().unwrap_or(0) as u64;
    let resident = stats::resident::read().unwrap_or(0) as u64;
    (allocated, resident)
}

/// One line of memory figures.
fn memory(label: &str) -> String {
    let (allocated, resident) = heap();
    format!(
        "{label}: RSS {:.1} MiB, heap live {:.1} MiB, allocator resident {:.1} MiB",
        mib(vm_kib("VmRSS:")),
        allocated as f64 / (1 << 20) as f64,
        resident as f64 / (1 << 20) as f64
    )
}

const FILE_CHUNK: usize = 100;
/// Bound of every wait.
const BOUND: Duration = Duration::from_secs(600);
/// Largest response a client accepts (a SotW CDS of 40,000 clusters is ~15 MB).
const MAX_RESPONSE: usize = 1 << 30;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    Sotw,
    Delta,
}

fn service_entry(s: &mut String, i: usize, http: usize) {
    let dns = i % 2 == 1;
    let _ = write!(
        s,
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: se-{i}, namespace: ns-{ns}}}\nspec:\n  hosts: [a-{i}.example.com, b-{i}.example.com]\n  ports:\n  - {{number: {http}, name: http, protocol: HTTP}}\n  - {{number: 443, name: tls, protocol: TLS}}\n  resolution: {res}\n  endpoints:\n",
        ns = i % 20,
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

/// The text of file `chunk`; `changed` gives ServiceEntry 0 another HTTP port.
fn chunk_text(chunk: usize, services: usize, changed: bool) -> String {
    let mut s = String::new();
    for i in chunk * FILE_CHUNK..((chunk + 1) * FILE_CHUNK).min(services) {
        let http = if i == 0 && changed {
            8100
        } else {
            8000 + i % 100
        };
        service_entry(&mut s, i, http);
    }
    s
}

fn write_corpus(dir: &Path, services: usize) -> BenchResult<()> {
    for chunk in 0..services.div_ceil(FILE_CHUNK) {
        std::fs::write(
            dir.join(format!("se-{chunk:04}.yaml")),
            chunk_text(chunk, services, false),
        )?;
    }
    Ok(())
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

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn node(i: usize) -> Node {
    Node {
        id: format!("sidecar~10.0.0.1~app-{i}.default~default.svc.cluster.local"),
        cluster: "app.default".to_string(),
        ..Default::default()
    }
}

/// A response a client received; `at` is wall-clock time (the clients run in another
/// process), in nanoseconds since the Unix epoch.
struct Received {
    stream: usize,
    kind: Kind,
    at: u128,
    resources: usize,
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Envoy's default HTTP/2 windows for its gRPC client (256 MiB); tonic's default 64 KiB
/// windows would make every large response wait for window updates.
const WINDOW: u32 = 256 << 20;

async fn open_channel(addr: SocketAddr) -> BenchResult<Channel> {
    let window = env_usize("ENTRYWAY_FANOUT_CLIENT_WINDOW", WINDOW as usize) as u32;
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .initial_stream_window_size(window)
        .initial_connection_window_size(window)
        .connect()
        .await?)
}

/// One SotW client: CDS and LDS wildcard, ACKs every response.
async fn sotw_client(
    id: usize,
    channel: Channel,
    events: mpsc::UnboundedSender<Received>,
) -> BenchResult<()> {
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(MAX_RESPONSE);
    let (tx, rx) = mpsc::channel(8);
    for (i, kind) in [Kind::Cluster, Kind::Listener].into_iter().enumerate() {
        tx.send(DiscoveryRequest {
            node: (i == 0).then(|| node(id)),
            type_url: kind.type_url().to_string(),
            ..Default::default()
        })
        .await?;
    }
    let mut responses = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(r) = responses.message().await? {
        let at = now_nanos();
        let kind = Kind::from_type_url(&r.type_url).ok_or("unknown type")?;
        let _ = events.send(Received {
            stream: id,
            kind,
            at,
            resources: r.resources.len(),
        });
        tx.send(DiscoveryRequest {
            version_info: r.version_info,
            type_url: r.type_url,
            response_nonce: r.nonce,
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

/// One Delta client: CDS and LDS wildcard, ACKs every response.
async fn delta_client(
    id: usize,
    channel: Channel,
    events: mpsc::UnboundedSender<Received>,
) -> BenchResult<()> {
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(MAX_RESPONSE);
    let (tx, rx) = mpsc::channel(8);
    for (i, kind) in [Kind::Cluster, Kind::Listener].into_iter().enumerate() {
        tx.send(DeltaDiscoveryRequest {
            node: (i == 0).then(|| node(id)),
            type_url: kind.type_url().to_string(),
            ..Default::default()
        })
        .await?;
    }
    let mut responses = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(r) = responses.message().await? {
        let at = now_nanos();
        let kind = Kind::from_type_url(&r.type_url).ok_or("unknown type")?;
        let _ = events.send(Received {
            stream: id,
            kind,
            at,
            resources: r.resources.len() + r.removed_resources.len(),
        });
        tx.send(DeltaDiscoveryRequest {
            type_url: r.type_url,
            response_nonce: r.nonce,
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

/// True when every connected stream has ACKed the latest CDS and LDS response.
fn all_acked(shared: &Shared, streams: usize) -> bool {
    let Ok(proxies) = shared.proxies.lock() else {
        return false;
    };
    proxies.len() == streams
        && proxies.values().all(|(_, s)| {
            [Kind::Cluster, Kind::Listener].iter().all(|k| {
                s.types.get(k.type_url()).is_some_and(|t| {
                    !t.sent_version.is_empty() && t.acked_version == t.sent_version
                })
            })
        })
}

async fn wait_acked(shared: &Shared, streams: usize) -> BenchResult<()> {
    let deadline = Instant::now() + BOUND;
    while !all_acked(shared, streams) {
        if Instant::now() > deadline {
            return Err("timed out waiting for every stream to ACK".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// The child process's reports, one line per response: `stream kind-index nanos resources`.
type Reports = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

fn parse_report(line: &str) -> Option<Received> {
    let mut it = line.split_whitespace();
    let stream = it.next()?.parse().ok()?;
    let kind = *Kind::PUSH_ORDER.get(it.next()?.parse::<usize>().ok()?)?;
    let at = it.next()?.parse().ok()?;
    let resources = it.next()?.parse().ok()?;
    Some(Received {
        stream,
        kind,
        at,
        resources,
    })
}

/// Per stream: the first time (ns since the epoch) it received each of `kinds` at or after
/// `since`; and the resources in those responses.
async fn collect(
    reports: &mut Reports,
    streams: usize,
    since: u128,
    kinds: &[Kind],
) -> BenchResult<(Vec<BTreeMap<Kind, u128>>, usize)> {
    let mut seen: Vec<BTreeMap<Kind, u128>> = vec![BTreeMap::new(); streams];
    let mut complete = 0;
    let mut resources = 0;
    let deadline = tokio::time::Instant::now() + BOUND;
    while complete < streams {
        let line = tokio::time::timeout_at(deadline, reports.next_line())
            .await
            .map_err(|_| format!("timed out: {complete} of {streams} streams complete"))??
            .ok_or("the client process ended")?;
        let e = parse_report(&line).ok_or_else(|| format!("bad report line {line:?}"))?;
        if e.at < since || !kinds.contains(&e.kind) || e.stream >= streams {
            continue;
        }
        let s = &mut seen[e.stream];
        if s.contains_key(&e.kind) {
            continue;
        }
        s.insert(e.kind, e.at);
        resources += e.resources;
        if s.len() == kinds.len() {
            complete += 1;
        }
    }
    Ok((seen, resources))
}

fn since(t: u128, t0: u128) -> Duration {
    Duration::from_nanos(u64::try_from(t.saturating_sub(t0)).unwrap_or(u64::MAX))
}

struct Stats {
    min: Duration,
    median: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Option<Stats> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some(Stats {
        min: v[0],
        median: at(0.5),
        p99: at(0.99),
        max: v[v.len() - 1],
    })
}

fn row(out: &mut String, what: &str, s: Option<Stats>, baseline: Duration) {
    match s {
        Some(s) => {
            let _ = writeln!(
                out,
                "{what:<44} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.1}x",
                ms(s.min),
                ms(s.median),
                ms(s.p99),
                ms(s.max),
                s.max.as_secs_f64() / baseline.as_secs_f64()
            );
        }
        None => {
            let _ = writeln!(out, "{what:<44} (no streams)");
        }
    }
}

fn protocol_of(mode: &str, i: usize) -> Protocol {
    match mode {
        "sotw" => Protocol::Sotw,
        "delta" => Protocol::Delta,
        _ if i.is_multiple_of(2) => Protocol::Sotw,
        _ => Protocol::Delta,
    }
}

/// The child process: `streams` clients against `addr`, reporting every response on stdout.
async fn clients(addr: SocketAddr, streams: usize, mode: String) -> BenchResult<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Received>();
    for i in 0..streams {
        let channel = open_channel(addr).await?;
        let tx = tx.clone();
        let protocol = protocol_of(&mode, i);
        tokio::spawn(async move {
            let r = match protocol {
                Protocol::Sotw => sotw_client(i, channel, tx).await,
                Protocol::Delta => delta_client(i, channel, tx).await,
            };
            if let Err(e) = r {
                eprintln!("client {i}: {e}");
            }
        });
    }
    drop(tx);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(e) = rx.recv().await {
        let mut batch = vec![e];
        while let Ok(e) = rx.try_recv() {
            batch.push(e);
        }
        for e in batch {
            writeln!(
                out,
                "{} {} {} {}",
                e.stream,
                e.kind.index(),
                e.at,
                e.resources
            )?;
        }
        out.flush()?;
    }
    Ok(())
}

async fn run() -> BenchResult<()> {
    let streams = env_usize("ENTRYWAY_FANOUT_STREAMS", 1000);
    let services = env_usize("ENTRYWAY_FANOUT_SERVICES", 1000);
    let mode = std::env::var("ENTRYWAY_FANOUT_MODE").unwrap_or_else(|_| "mixed".into());
    if let Some(bytes) = std::env::var("ENTRYWAY_FANOUT_DELTA_CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        entryway_server::ads::delta::set_max_response_bytes(bytes);
    }

    let dir = tempfile::tempdir()?;
    write_corpus(dir.path(), services)?;
    let t = Instant::now();
    let (mut store, shared) = Store::open(StoreOptions::new(vec![dir.path().to_path_buf()]))?;
    let load = t.elapsed();
    let snapshot = shared.snapshot.borrow().clone();
    if !store.state().rejections().is_empty() {
        return Err(format!("corpus rejected: {:?}", store.state().rejections()).into());
    }

    // Baseline: one proxy's configuration generated and encoded once (what the server does
    // once per snapshot for all these identical proxies).
    let proxy = Proxy::in_namespace("default");
    let mut samples = Vec::new();
    let mut counts = [0usize; 4];
    let mut sizes = [(0usize, 0usize); 4];
    for _ in 0..3 {
        let t = Instant::now();
        let scope = ProxyScope::new(&snapshot.registry, &snapshot.mesh, &proxy);
        let cfg = generate(&scope);
        let g = Generated::from_messages(snapshot.version, &cfg, None);
        samples.push(t.elapsed());
        counts = Kind::PUSH_ORDER.map(|k| g.set(k).entries.len());
        sizes = Kind::PUSH_ORDER.map(|k| {
            let set = g.set(k);
            (
                set.entries.values().map(|r| r.body.len()).sum::<usize>(),
                set.entries
                    .values()
                    .map(|r| r.body.len())
                    .max()
                    .unwrap_or(0),
            )
        });
    }
    samples.sort();
    let baseline = samples[samples.len() / 2];
    drop(snapshot);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut server = AdsServer::new(Arc::clone(&shared), AdsOptions::default(), stop_rx);
    if let Some(mib) = std::env::var("ENTRYWAY_FANOUT_BUDGET_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        server = server.with_push_budget(mib << 20);
    }
    let budget = server.budget();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let tonic_encoder = std::env::var("ENTRYWAY_FANOUT_ENCODER").is_ok_and(|v| v == "tonic");
    let serving = tokio::spawn(async move {
        let mut stop = stop_tx.subscribe();
        let stopped = async move {
            let _ = stop.changed().await;
        };
        let mut builder = tonic::transport::Server::builder();
        if tonic_encoder {
            builder
                .add_service(server.into_tonic_service())
                .serve_with_incoming_shutdown(incoming, stopped)
                .await
        } else {
            builder
                .add_service(server.into_service())
                .serve_with_incoming_shutdown(incoming, stopped)
                .await
        }
    });

    let rss_before = vm_kib("VmRSS:");
    let mem_before = memory("before streams");
    let hwm_before = vm_kib("VmHWM:");
    let t_connect = now_nanos();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .env(CLIENT_ENV, addr.to_string())
        .env("ENTRYWAY_FANOUT_STREAMS", streams.to_string())
        .env("ENTRYWAY_FANOUT_MODE", &mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut reports = BufReader::new(child.stdout.take().ok_or("no child stdout")?).lines();
    let (_, initial_resources) = collect(
        &mut reports,
        streams,
        t_connect,
        &[Kind::Cluster, Kind::Listener],
    )
    .await?;
    let initial_received = started.elapsed();
    wait_acked(&shared, streams).await?;
    let initial_acked = started.elapsed();
    let rss_after = vm_kib("VmRSS:");
    let hwm_sync = vm_kib("VmHWM:");
    let budget_sync = (budget.peak(), budget.evictions());
    let mut mem = vec![mem_before, memory("after the initial sync")];
    // Idle: what the allocator gives back on its own (jemalloc purges dirty pages by decay).
    tokio::time::sleep(Duration::from_secs(1)).await;
    mem.push(memory("after a further idle second"));
    if std::env::var_os("ENTRYWAY_FANOUT_EXIT_AFTER_SYNC").is_some() {
        eprintln!(
            "{mem:?}\nVmHWM after the sync {:.1} MiB; push budget {} MiB: peak held {:.1} MiB, {} slow-reader evictions",
            mib(hwm_sync),
            budget.capacity() >> 20,
            budget_sync.0 as f64 / (1 << 20) as f64,
            budget_sync.1
        );
        std::process::exit(0);
    }

    // The change: ServiceEntry 0 moves its HTTP port (CDS and LDS change for every proxy).
    let version_before = store.version();
    let t0 = now_nanos();
    let t0_instant = Instant::now();
    std::fs::write(
        dir.path().join("se-0000.yaml"),
        chunk_text(0, services, true),
    )?;
    let outcome = tokio::task::block_in_place(|| store.reload());
    let published = t0_instant.elapsed();
    if outcome.published.is_none() {
        return Err(format!("the change published nothing: {outcome:?}").into());
    }
    let (seen, change_resources) =
        collect(&mut reports, streams, t0, &[Kind::Cluster, Kind::Listener]).await?;
    let all_received = seen
        .iter()
        .filter_map(|s| s.values().max())
        .max()
        .map(|t| since(*t, t0))
        .unwrap_or_default();
    wait_acked(&shared, streams).await?;
    let all_acked_at = t0_instant.elapsed();
    let rss_end = vm_kib("VmRSS:");
    let hwm = vm_kib("VmHWM:");

    let mut out = String::new();
    let _ = writeln!(
        out,
        "fanout: {streams} streams ({mode}), {services} ServiceEntries; per proxy {} clusters, {} endpoints, {} listeners, {} routes; clients in a child process",
        counts[0], counts[1], counts[2], counts[3]
    );
    let _ = writeln!(
        out,
        "encoded per proxy (total / largest resource, KiB): {}",
        Kind::PUSH_ORDER
            .iter()
            .zip(sizes)
            .map(|(k, (total, max))| format!("{k} {} / {}", total >> 10, max >> 10))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "store load {:.1} ms; baseline (generate + encode one proxy) {:.2} ms",
        ms(load),
        ms(baseline)
    );
    let _ = writeln!(
        out,
        "initial sync: all {streams} streams received CDS+LDS {:.1} ms after the client process started ({:.1}x baseline), all ACKed at {:.1} ms; {} resources sent",
        ms(initial_received),
        initial_received.as_secs_f64() / baseline.as_secs_f64(),
        ms(initial_acked),
        initial_resources
    );
    let _ = writeln!(
        out,
        "change (snapshot {version_before} -> {}): write + reload {:.1} ms (reload {:.1} ms); last stream received it {:.1} ms after the write ({:.1}x baseline), all ACKed at {:.1} ms; {} resources sent",
        store.version(),
        ms(published),
        ms(outcome.elapsed),
        ms(all_received),
        all_received.as_secs_f64() / baseline.as_secs_f64(),
        ms(all_acked_at),
        change_resources
    );
    let _ = writeln!(
        out,
        "\n{:<44} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "per stream, ms after the file write", "min", "median", "p99", "max", "max/base"
    );
    for (label, filter) in [
        ("all", None),
        ("sotw", Some(Protocol::Sotw)),
        ("delta", Some(Protocol::Delta)),
    ] {
        let pick = |i: &usize| filter.is_none_or(|p| protocol_of(&mode, *i) == p);
        let first: Vec<Duration> = (0..streams)
            .filter(pick)
            .filter_map(|i| seen[i].values().min().map(|t| since(*t, t0)))
            .collect();
        let both: Vec<Duration> = (0..streams)
            .filter(pick)
            .filter_map(|i| seen[i].values().max().map(|t| since(*t, t0)))
            .collect();
        row(
            &mut out,
            &format!("{label}: first response (CDS)"),
            stats(first),
            baseline,
        );
        row(
            &mut out,
            &format!("{label}: CDS and LDS received"),
            stats(both),
            baseline,
        );
    }
    let _ = writeln!(
        out,
        "Delta responses split at {} KiB; responses encoded by {}\ncontrol-plane RSS: before streams {:.1} MiB (VmHWM {:.1} MiB, from loading the store), after connecting {:.1} MiB (+{:.1} KiB per stream), after the change {:.1} MiB; VmHWM at the end {:.1} MiB",
        entryway_server::ads::delta::max_response_bytes() >> 10,
        if tonic_encoder {
            "tonic's per-stream encoder (ENTRYWAY_FANOUT_ENCODER=tonic)"
        } else {
            "Entryway's framing (ads::grpc)"
        },
        mib(rss_before),
        mib(hwm_before),
        mib(rss_after),
        rss_after.saturating_sub(rss_before) as f64 / streams.max(1) as f64,
        mib(rss_end),
        mib(hwm)
    );
    let _ = writeln!(
        out,
        "VmHWM after the initial sync {:.1} MiB; push budget {} MiB ({}): peak held {:.1} MiB during the sync, {:.1} MiB overall, slow-reader evictions {} / {}",
        mib(hwm_sync),
        budget.capacity() >> 20,
        if tonic_encoder {
            "unused by tonic's encoder"
        } else {
            "responses materialised and not yet written"
        },
        budget_sync.0 as f64 / (1 << 20) as f64,
        budget.peak() as f64 / (1 << 20) as f64,
        budget_sync.1,
        budget.evictions()
    );
    for m in mem {
        let _ = writeln!(out, "{m}");
    }
    let _ = writeln!(out, "{}", memory("at the end"));
    let _ = writeln!(
        out,
        "jemalloc: background thread {}, {MALLOC_CONF_ENV}={}",
        tikv_jemalloc_ctl::background_thread::read().unwrap_or(false),
        std::env::var(MALLOC_CONF_ENV).unwrap_or_else(|_| "(unset: defaults)".into())
    );
    print!("{out}");

    child.start_kill()?;
    let _ = child.wait().await;
    drop(store);
    serving.abort();
    Ok(())
}

const CLIENT_ENV: &str = "ENTRYWAY_FANOUT_CLIENT";

/// jemalloc settings of the bench: a background purging thread, 1 s dirty decay, no muzzy
/// stage, so RSS follows live memory instead of the largest peak so far. Set
/// `ENTRYWAY_FANOUT_JEMALLOC_DEFAULTS` to keep jemalloc's defaults.
const MALLOC_CONF: &str = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";
/// jemalloc reads its options from this variable at start-up (tikv-jemallocator's prefix).
const MALLOC_CONF_ENV: &str = "_RJEM_MALLOC_CONF";

/// Runs this bench again with [`MALLOC_CONF`] in the environment (jemalloc reads it before
/// `main`), unless it is set already or the defaults were asked for; the exit status of that
/// run when it ran.
fn rerun_with_malloc_conf() -> Option<i32> {
    if std::env::var_os(MALLOC_CONF_ENV).is_some()
        || std::env::var_os("ENTRYWAY_FANOUT_JEMALLOC_DEFAULTS").is_some()
    {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(MALLOC_CONF_ENV, MALLOC_CONF)
        .status();
    match status {
        Ok(s) => Some(s.code().unwrap_or(1)),
        Err(e) => {
            eprintln!("fanout: cannot rerun with {MALLOC_CONF_ENV}: {e}; jemalloc defaults");
            None
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo bench -- --list` / `cargo test --benches` probing: nothing to list.
        return;
    }
    if let Some(code) = rerun_with_malloc_conf() {
        std::process::exit(code);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fanout: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = match std::env::var(CLIENT_ENV) {
        Ok(addr) => match addr.parse() {
            Ok(addr) => runtime.block_on(clients(
                addr,
                env_usize("ENTRYWAY_FANOUT_STREAMS", 1000),
                std::env::var("ENTRYWAY_FANOUT_MODE").unwrap_or_default(),
            )),
            Err(e) => Err(format!("{CLIENT_ENV}={addr}: {e}").into()),
        },
        Err(_) => runtime.block_on(run()),
    };
    if let Err(e) = result {
        eprintln!("fanout: {e}");
        std::process::exit(1);
    }
}

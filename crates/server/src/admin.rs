//! Admin HTTP: `/ready`, `/metrics`, `/debug/syncz`, `/debug/config_dump`, `/debug/registryz`, `/debug/configz`.
//!
//! A deliberately small HTTP/1.1 server on tokio: `GET`/`HEAD` only, one request per
//! connection (`Connection: close`), bounded request heads and read time. The admin port
//! is bound to loopback by default ([`DEFAULT_ADDR`], Istio's 15014); the debug endpoints
//! reveal the whole configuration, so binding it elsewhere is the operator's choice.
//!
//! Request handling ([`handle`]) is a plain function of the [`Shared`] state so that it is
//! testable without sockets; the socket tests in `tests/admin_*.rs` cover the framing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use entryway_model::config::Kind;
use entryway_model::registry::{
    EndpointAddress, ProxyScope, Registry, Resolution, Service, Visibility,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::metrics::{BUCKETS, HistogramData};
use crate::shared::{ProxyStatus, Shared};
use crate::store::{AcceptedConfig, ConfigStatus, Rejected};

/// The production admin address: loopback, Istio's control-plane monitoring port.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 15014));

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// Time a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Every endpoint with what it serves (listed at `/`).
pub const ENDPOINTS: &[(&str, &str)] = &[
    (
        "/ready",
        "200 once the first config snapshot is loaded, 503 before",
    ),
    ("/metrics", "Prometheus metrics"),
    (
        "/debug/syncz",
        "per connected proxy: versions sent and acked, last NACK (JSON)",
    ),
    (
        "/debug/config_dump?proxy=ID",
        "the Envoy config generated for a connected proxy (config_dump JSON)",
    ),
    (
        "/debug/registryz",
        "services with hosts, addresses, ports, resolution and endpoints (JSON)",
    ),
    (
        "/debug/configz",
        "accepted configs with their files, rejected configs with reasons (JSON)",
    ),
];

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: TEXT,
            body: body.into(),
        }
    }

    fn json(value: &Value) -> Response {
        match serde_json::to_string_pretty(value) {
            Ok(mut body) => {
                body.push('\n');
                Response {
                    status: 200,
                    content_type: JSON,
                    body,
                }
            }
            Err(e) => Response::text(500, format!("cannot encode JSON: {e}\n")),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// Answers `GET target` (path and query) from the shared state.
pub fn handle(shared: &Shared, target: &str) -> Response {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/" => Response::text(200, index()),
        "/ready" => ready(shared),
        "/metrics" => Response {
            status: 200,
            content_type: PROMETHEUS,
            body: render_metrics(shared),
        },
        "/debug/syncz" => Response::json(&syncz(shared)),
        "/debug/config_dump" => config_dump(shared, query_param(query, "proxy").as_deref()),
        "/debug/registryz" => {
            let snap = shared.snapshot.borrow().clone();
            Response::json(&registryz(&snap.registry, snap.version))
        }
        "/debug/configz" => Response::json(&configz(shared)),
        _ => Response::text(404, format!("no such endpoint: {path}\n\n{}", index())),
    }
}

fn index() -> String {
    let mut out = String::from("entryway control plane admin\n\n");
    for (path, what) in ENDPOINTS {
        let _ = writeln!(out, "{path:<30} {what}");
    }
    out
}

/// 200 once a configuration is served. The body also says when part of it is not what the
/// files say: resources kept at their last good version (their files are broken), a held
/// withdrawal, a reload that was abandoned, a last good configuration that cannot be saved.
fn ready(shared: &Shared) -> Response {
    let version = shared.snapshot.borrow().version;
    if version == 0 {
        return Response::text(503, "not ready: no configuration loaded yet\n");
    }
    let status = shared.config_status();
    let mut body = format!("ready: config version {version}\n");
    if status.last_good > 0 {
        let mut files: Vec<&str> = status
            .accepted
            .iter()
            .filter(|a| a.last_good)
            .map(|a| a.file.as_str())
            .collect();
        files.dedup();
        let _ = writeln!(
            body,
            "degraded: {} resource(s) served from their last good version (invalid or unreadable: {})",
            status.last_good,
            files.join(", ")
        );
    }
    if let Some(h) = &status.withdrawal_held {
        let _ = writeln!(
            body,
            "degraded: withdrawal of {} resource(s) held: {} (confirm with SIGHUP, or restore the files)",
            h.resources, h.reason
        );
    }
    if let Some(e) = &status.reload_error {
        let _ = writeln!(body, "degraded: last config reload abandoned: {e}");
    }
    if let Some(e) = &status.persist_error {
        let _ = writeln!(body, "degraded: last good configuration not saved: {e}");
    }
    if let Some(r) = &status.restored {
        let _ = writeln!(
            body,
            "started from the last good configuration on disk ({}, version {}, {} resources)",
            r.file, r.version, r.resources
        );
    }
    Response::text(200, body)
}

/// The value of `name` in a query string, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn counter(
    out: &mut String,
    name: &str,
    help: &str,
    label_name: &str,
    values: &BTreeMap<String, u64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (k, v) in values {
        let _ = writeln!(out, "{name}{{{label_name}=\"{}\"}} {v}", label(k));
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

fn histogram(out: &mut String, name: &str, help: &str, data: &HistogramData) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    if data.buckets.is_empty() {
        for le in BUCKETS {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} 0");
        }
    } else {
        for (le, n) in &data.buckets {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", data.count);
    let _ = writeln!(out, "{name}_sum {}", data.sum);
    let _ = writeln!(out, "{name}_count {}", data.count);
}

/// The metrics in Prometheus text exposition format 0.0.4.
pub fn render_metrics(shared: &Shared) -> String {
    let m = &shared.metrics;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP entryway_connected_proxies Connected ADS streams."
    );
    let _ = writeln!(out, "# TYPE entryway_connected_proxies gauge");
    let _ = writeln!(
        out,
        "entryway_connected_proxies {}",
        m.connected_proxies.load(Ordering::Relaxed)
    );
    counter(
        &mut out,
        "entryway_pushes_total",
        "xDS responses pushed, by resource type.",
        "type",
        &m.pushes.values(),
    );
    histogram(
        &mut out,
        "entryway_push_seconds",
        "Per xDS response pushed: time from its cause (a request or a new config) to its hand-over to the transport.",
        &m.push_time.data(),
    );
    histogram(
        &mut out,
        "entryway_convergence_seconds",
        "Time from a config change being read to the proxy acknowledging it.",
        &m.convergence_time.data(),
    );
    counter(
        &mut out,
        "entryway_nacks_total",
        "xDS responses rejected by proxies, by resource type.",
        "type",
        &m.nacks.values(),
    );
    let mut refusals: BTreeMap<String, u64> =
        [("ca".to_string(), 0), ("xds".to_string(), 0)].into();
    refusals.extend(m.refusals.values());
    counter(
        &mut out,
        "entryway_refusals_total",
        "Callers refused (bad or missing credentials, identity mismatch), by service.",
        "service",
        &refusals,
    );
    let _ = writeln!(
        out,
        "# HELP entryway_certificates_signed_total Workload certificates signed by the mesh CA."
    );
    let _ = writeln!(out, "# TYPE entryway_certificates_signed_total counter");
    let _ = writeln!(
        out,
        "entryway_certificates_signed_total {}",
        m.certificates_signed.load(Ordering::Relaxed)
    );
    // Every kind is listed, so a dashboard sees zeros rather than missing series.
    let mut rejected: BTreeMap<String, u64> = Kind::ALL
        .iter()
        .map(|k| (k.as_str().to_string(), 0))
        .collect();
    rejected.extend(m.rejected_configs.values());
    counter(
        &mut out,
        "entryway_rejected_configs_total",
        "Config documents rejected, by kind (\"file\" for files that do not parse).",
        "kind",
        &rejected,
    );
    let status = shared.config_status();
    gauge(
        &mut out,
        "entryway_last_good_configs",
        "Resources served from their last good version because their document or file is invalid or unreadable.",
        status.last_good as u64,
    );
    gauge(
        &mut out,
        "entryway_withheld_configs",
        "Resources kept in force although their documents are gone (a held withdrawal).",
        status
            .withdrawal_held
            .as_ref()
            .map_or(0, |h| h.resources as u64),
    );
    for (name, help, value) in [
        (
            "entryway_xds_connections_refused_total",
            "xDS connections closed on accept because the connection limit was reached.",
            &m.xds_connections_refused,
        ),
        (
            "entryway_xds_connections_timed_out_total",
            "xDS connections closed for sending no HTTP/2 preface or no request in time.",
            &m.xds_connections_timed_out,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
    }
    counter(
        &mut out,
        "entryway_xds_bad_requests_total",
        "xDS streams ended for a bad request (no node id, undecodable, oversized, no request in time), by gRPC code.",
        "code",
        &m.bad_requests.values(),
    );
    let _ = writeln!(
        out,
        "# HELP entryway_config_reload_failures_total Config reloads abandoned."
    );
    let _ = writeln!(out, "# TYPE entryway_config_reload_failures_total counter");
    let _ = writeln!(
        out,
        "entryway_config_reload_failures_total {}",
        m.reload_failures.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP entryway_config_version Version of the config snapshot in force."
    );
    let _ = writeln!(out, "# TYPE entryway_config_version gauge");
    let _ = writeln!(
        out,
        "entryway_config_version {}",
        shared.snapshot.borrow().version
    );
    out
}

fn proxies(shared: &Shared) -> Vec<(u64, entryway_model::registry::Proxy, ProxyStatus)> {
    let guard = match shared.proxies.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    guard
        .iter()
        .map(|(id, (p, s))| (*id, p.clone(), s.clone()))
        .collect()
}

/// The connected proxies, then the latest refusals (entries with a `refused` key).
fn syncz(shared: &Shared) -> Value {
    let mut entries: Vec<Value> = proxies(shared)
        .into_iter()
        .filter_map(|(_, _, s)| serde_json::to_value(s).ok())
        .collect();
    entries.extend(
        shared
            .refusals()
            .into_iter()
            .filter_map(|r| serde_json::to_value(r).ok()),
    );
    Value::Array(entries)
}

fn config_dump(shared: &Shared, proxy_id: Option<&str>) -> Response {
    let connected = proxies(shared);
    let Some(id) = proxy_id.filter(|id| !id.is_empty()) else {
        let ids: Vec<&str> = connected
            .iter()
            .map(|(_, _, s)| s.node_id.as_str())
            .collect();
        return Response::text(
            400,
            format!(
                "missing ?proxy=ID; connected proxies: {}\n",
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                }
            ),
        );
    };
    // The newest connection of that node wins (an Envoy that reconnected).
    let Some((_, proxy, _)) = connected
        .iter()
        .rev()
        .find(|(_, p, s)| s.node_id == id || p.id == id)
    else {
        return Response::text(
            404,
            format!(
                "no connected proxy with id {:?}\n",
                entryway_model::diag::Echo(id).to_string()
            ),
        );
    };
    let snap = shared.snapshot.borrow().clone();
    let scope = ProxyScope::new(&snap.registry, &snap.mesh, proxy);
    let cfg = entryway_xds::generator::generate(&scope);
    match entryway_xds::dump::config_dump_json(&cfg, &snap.version.to_string()) {
        Ok(v) => Response::json(&v),
        Err(e) => Response::text(500, format!("cannot render config dump: {e}\n")),
    }
}

fn resolution_name(r: Resolution) -> &'static str {
    match r {
        Resolution::Passthrough => "NONE",
        Resolution::ClientSideLb => "STATIC",
        Resolution::DnsLb => "DNS",
        Resolution::DnsRoundRobinLb => "DNS_ROUND_ROBIN",
        Resolution::DynamicDns => "DYNAMIC_DNS",
    }
}

fn visibility(v: &Visibility) -> Value {
    match v {
        Visibility::Public => json!("*"),
        Visibility::None => json!("~"),
        Visibility::Namespaces(ns) => json!(ns),
    }
}

fn service_json(registry: &Registry, svc: &Service) -> Value {
    let endpoints: Vec<Value> = registry
        .host_endpoints(&svc.namespace, &svc.hostname)
        .iter()
        .map(|e| {
            let address = match &e.address {
                EndpointAddress::Ip(ip) => ip.to_string(),
                EndpointAddress::Hostname(h) => h.clone(),
                EndpointAddress::Unix(p) => format!("unix://{p}"),
            };
            json!({
                "address": address,
                "port": e.port,
                "service_port": e.service_port_name,
                "labels": e.labels,
                "locality": format!("{}/{}/{}", e.locality.region, e.locality.zone, e.locality.sub_zone)
                    .trim_end_matches('/')
                    .to_string(),
                "weight": e.weight,
                "network": e.network,
                "service_account": e.service_account,
                "tls_mode": match e.tls_mode {
                    entryway_model::registry::TlsMode::Istio => "istio",
                    entryway_model::registry::TlsMode::Disabled => "disabled",
                },
                "workload": e.workload_name,
            })
        })
        .collect();
    json!({
        "hostname": svc.hostname,
        "namespace": svc.namespace,
        "service_entry": svc.se_name,
        "address": svc.address.to_istio_string(),
        "auto_addresses": svc.auto_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "ports": svc.ports.iter().map(|p| json!({
            "name": p.name,
            "number": p.number,
            "protocol": p.protocol.as_str(),
            "target_port": p.target_port,
        })).collect::<Vec<_>>(),
        "resolution": resolution_name(svc.resolution),
        "location": if svc.mesh_external { "MESH_EXTERNAL" } else { "MESH_INTERNAL" },
        "export_to": visibility(&svc.export_to),
        "endpoints": endpoints,
    })
}

/// `/debug/registryz`: every service of the registry with its endpoints.
pub fn registryz(registry: &Registry, version: u64) -> Value {
    json!({
        "version": version,
        "services": registry.services.iter().map(|s| service_json(registry, s)).collect::<Vec<_>>(),
    })
}

/// `/debug/configz`: the store's status; without a store (tests that publish snapshots
/// directly), what the snapshot itself tells.
fn configz(shared: &Shared) -> Value {
    let status = shared.config_status();
    let snap = shared.snapshot.borrow().clone();
    let status: ConfigStatus = if status.version > 0 {
        (*status).clone()
    } else {
        ConfigStatus {
            version: snap.version,
            accepted: snap
                .configs
                .configs
                .iter()
                .map(|c| {
                    Arc::new(AcceptedConfig {
                        kind: c.kind(),
                        namespace: c.meta.namespace.clone(),
                        name: c.meta.name.clone(),
                        file: String::new(),
                        line: 0,
                        last_good: false,
                        withheld: false,
                        config: c.clone(),
                    })
                })
                .collect(),
            rejected: snap
                .rejected
                .iter()
                .map(|r| Rejected {
                    error_lines: vec![r.line; r.errors.len()],
                    rejection: r.clone(),
                })
                .collect(),
            ..ConfigStatus::default()
        }
    };
    let mut value = serde_json::to_value(&status).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert(
            "listener_conflicts".to_string(),
            Value::Array(listener_conflicts(shared, &snap)),
        );
    }
    value
}

/// Per connected proxy, the service ports that lose their listener to another service
/// (e.g. two TCP ServiceEntries without addresses on one port when the proxy does not
/// capture DNS): each names the listener, the entry that keeps it and the one that loses.
fn listener_conflicts(shared: &Shared, snap: &crate::snapshot::Snapshot) -> Vec<Value> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (_, proxy, status) in proxies(shared).into_iter().rev() {
        if !seen.insert(status.node_id.clone()) {
            continue;
        }
        let scope = ProxyScope::new(&snap.registry, &snap.mesh, &proxy);
        for c in entryway_xds::generator::lds::listener_conflicts(&scope) {
            out.push(json!({
                "proxy": status.node_id,
                "listener": c.listener,
                "port": c.port,
                "kept": c.kept,
                "dropped": c.dropped,
                "message": c.to_string(),
            }));
        }
    }
    out
}

/// The admin server, bound and ready to serve.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, shared: Arc<Shared>) -> io::Result<AdminServer> {
        let listener = TcpListener::bind(addr).await?;
        Ok(AdminServer { listener, shared })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes. Requests in flight then finish on their own.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => return,
                a = self.listener.accept() => a,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let shared = Arc::clone(&self.shared);
                    tokio::spawn(async move {
                        if let Err(e) = serve_connection(stream, shared).await {
                            debug!(%peer, error = %e, "admin connection failed");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Reads the request head: everything up to the blank line.
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(buf));
        }
        if buf.len() > MAX_HEAD {
            return Ok(Some(Vec::new()));
        }
    }
}

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(r) => r?,
        Err(_) => return Ok(()),
    };
    let Some(head) = head else { return Ok(()) };
    let (method, response) = if head.is_empty() {
        (
            String::new(),
            Response::text(431, "request head too large\n"),
        )
    } else {
        let text = String::from_utf8_lossy(&head);
        let request_line = text.lines().next().unwrap_or_default();
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let version = parts.next().unwrap_or_default();
        let response = if !version.starts_with("HTTP/1.") || target.is_empty() {
            Response::text(400, "malformed request line\n")
        } else if method != "GET" && method != "HEAD" {
            Response::text(405, "only GET and HEAD are served\n")
        } else {
            // Generation for /debug/config_dump is CPU work: keep it off the I/O threads.
            let target = origin_form(&target).to_string();
            tokio::task::spawn_blocking(move || handle(&shared, &target))
                .await
                .unwrap_or_else(|e| Response::text(500, format!("handler failed: {e}\n")))
        };
        (method, response)
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    if response.status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await?;
    if method != "HEAD" {
        stream.write_all(response.body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// `/path?query` from an origin-form or absolute-form request target.
fn origin_form(target: &str) -> &str {
    match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        assert_eq!(
            query_param("a=1&proxy=sidecar%7E127.0.0.1%7Ex", "proxy").as_deref(),
            Some("sidecar~127.0.0.1~x")
        );
        assert_eq!(query_param("proxy=a~b", "proxy").as_deref(), Some("a~b"));
        assert_eq!(
            query_param("proxy=%zz%4", "proxy").as_deref(),
            Some("%zz%4")
        );
        assert_eq!(query_param("x=1", "proxy"), None);
        assert_eq!(query_param("proxy", "proxy").as_deref(), Some(""));
    }

    #[test]
    fn absolute_form_targets_are_reduced_to_the_path() {
        assert_eq!(origin_form("http://127.0.0.1:15014/ready?x"), "/ready?x");
        assert_eq!(origin_form("http://host"), "/");
        assert_eq!(origin_form("/metrics"), "/metrics");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

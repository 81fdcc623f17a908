//! Helpers shared by listener (LDS) and route (RDS) generation: durations, Istio config
//! metadata, destination cluster names, the catch-all (outbound traffic policy) cluster,
//! VirtualService host resolution and per-egress-listener VirtualService selection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use entryway_model::api::{self, Duration};
use entryway_model::registry::host;
use entryway_model::registry::scope::{DOMAIN_SUFFIX, EffectiveRule};
use entryway_model::registry::{Named, OutboundMode, ProxyScope, Service};
use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration, Struct, Value, value};

use super::super::names::{BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER, outbound_cluster};

/// Packs a message as `Any` with its `type.googleapis.com/...` type URL.
pub(crate) fn pack<T: prost::Message + prost::Name>(msg: T) -> Any {
    envoy_types::util::pack_any(msg)
}

/// An Istio API duration as a protobuf duration.
pub(crate) fn duration(d: &Duration) -> PbDuration {
    PbDuration {
        seconds: d.seconds(),
        nanos: d.subsec_nanos(),
    }
}

/// `0s` (Istio's "disabled" timeout).
pub(crate) fn zero_duration() -> PbDuration {
    PbDuration::default()
}

/// `filter_metadata.istio.config = /apis/networking.istio.io/v1/namespaces/<ns>/<kind>/<name>`
/// (Istio's `BuildConfigInfoMetadata`).
pub(crate) fn config_metadata(kind: &str, namespace: &str, name: &str) -> Metadata {
    let path = format!("/apis/networking.istio.io/v1/namespaces/{namespace}/{kind}/{name}");
    let fields = HashMap::from([(
        "config".to_string(),
        Value {
            kind: Some(value::Kind::StringValue(path)),
        },
    )]);
    Metadata {
        filter_metadata: HashMap::from([("istio".to_string(), Struct { fields })]),
        ..Default::default()
    }
}

/// Istio's `GetDestinationCluster`: `outbound|<port>|<subset>|<host>` where the port is the
/// destination's port, else the only port of the destination service (`single_port`), else
/// the listener port. `host` is the destination host with short names already resolved.
pub(crate) fn destination_cluster(
    dest: &api::Destination,
    host: &str,
    single_port: Option<u32>,
    listener_port: u32,
) -> String {
    if host.is_empty() {
        return "UnknownService".to_string();
    }
    let port = match (&dest.port, single_port) {
        (Some(p), _) => p.number,
        (None, Some(p)) => p,
        (None, None) => listener_port,
    };
    outbound_cluster(port, &dest.subset, host)
}

/// The cluster unknown destinations go to (spec §7): `PassthroughCluster`, the Sidecar's
/// `egressProxy` cluster, or `BlackHoleCluster` under REGISTRY_ONLY.
pub(crate) fn catch_all_cluster(scope: &ProxyScope<'_>) -> String {
    match scope.outbound.mode {
        OutboundMode::AllowAny => match &scope.outbound.egress_proxy {
            Some(d) => destination_cluster(d, &d.host, None, 0),
            None => PASSTHROUGH_CLUSTER.to_string(),
        },
        OutboundMode::RegistryOnly => BLACKHOLE_CLUSTER.to_string(),
    }
}

/// A host of a VirtualService with a Kubernetes short name resolved against the
/// VirtualService's namespace (Istio resolves VS hosts and destinations when indexing).
pub(crate) fn resolve_host(h: &str, namespace: &str) -> String {
    host::resolve_short_name(h, namespace, DOMAIN_SUFFIX)
}

/// True when the proxy has only IPv6 addresses.
pub(crate) fn ipv6_only(scope: &ProxyScope<'_>) -> bool {
    !scope.proxy.ips.is_empty() && scope.proxy.ips.iter().all(IpAddr::is_ipv6)
}

/// The wildcard bind address of the proxy (`0.0.0.0`, or `::` when IPv6-only).
pub(crate) fn wildcard(scope: &ProxyScope<'_>) -> &'static str {
    if ipv6_only(scope) { "::" } else { "0.0.0.0" }
}

/// The loopback bind address of the proxy (`127.0.0.1`, or `::1` when IPv6-only).
pub(crate) fn localhost(scope: &ProxyScope<'_>) -> &'static str {
    if ipv6_only(scope) { "::1" } else { "127.0.0.1" }
}

/// The proxy's DNS domain, `<namespace>.svc.cluster.local`.
pub(crate) fn dns_domain(scope: &ProxyScope<'_>) -> String {
    format!("{}.svc.{DOMAIN_SUFFIX}", scope.proxy.namespace)
}

/// One service per hostname (the scope's de-duplicated list), for destination lookups
/// (Istio's `ServiceForHostname`).
pub(crate) fn service_index<'s>(scope: &'s ProxyScope<'_>) -> HashMap<&'s str, &'s Arc<Service>> {
    let mut m = HashMap::with_capacity(scope.services.len());
    for s in &scope.services {
        m.entry(s.hostname.as_str()).or_insert(s);
    }
    m
}

/// True when destination lookups by hostname can be needed: the registry has
/// VirtualServices (route destinations) or DestinationRules.
pub(crate) fn needs_service_index(scope: &ProxyScope<'_>) -> bool {
    !scope.virtual_services.is_empty() || !scope.registry.destination_rules.is_empty()
}

/// DestinationRules by hostname, looked up once per host (nothing to look up when the
/// registry has no DestinationRule).
pub(crate) struct DrCache<'a> {
    rules: HashMap<&'a str, Option<Rc<EffectiveRule>>>,
    none: bool,
}

impl<'a> DrCache<'a> {
    /// An empty cache for `scope`.
    pub(crate) fn new(scope: &ProxyScope<'_>) -> DrCache<'a> {
        DrCache {
            rules: HashMap::new(),
            none: scope.registry.destination_rules.is_empty(),
        }
    }

    /// The DestinationRule that applies to the (scope) service `svc`.
    pub(crate) fn get(
        &mut self,
        scope: &ProxyScope<'_>,
        svc: &'a Service,
    ) -> Option<Rc<EffectiveRule>> {
        if self.none {
            return None;
        }
        if let Some(r) = self.rules.get(svc.hostname.as_str()) {
            return r.clone();
        }
        let r = scope.destination_rule(svc).map(Rc::new);
        self.rules.insert(svc.hostname.as_str(), r.clone());
        r
    }

    /// The DestinationRule for a hostname of the scope (`None` for unknown hosts).
    pub(crate) fn for_host(
        &mut self,
        scope: &ProxyScope<'_>,
        services: &HashMap<&'a str, &'a Arc<Service>>,
        hostname: &str,
    ) -> Option<Rc<EffectiveRule>> {
        if self.none {
            return None;
        }
        let svc: &'a Service = services.get(hostname)?;
        self.get(scope, svc)
    }
}

/// A VirtualService that applies to an egress listener, with its hosts resolved.
#[derive(Debug, Clone)]
pub(crate) struct VsRef<'a> {
    /// The VirtualService.
    pub vs: &'a Arc<Named<api::VirtualService>>,
    /// `spec.hosts` with short names resolved.
    pub hosts: Vec<String>,
}

impl VsRef<'_> {
    /// Resolves a destination host of this VirtualService.
    pub(crate) fn resolve(&self, h: &str) -> String {
        resolve_host(h, &self.vs.namespace)
    }

    /// Istio's `getConfigsForHost`: some host of the VirtualService matches `hostname`.
    pub(crate) fn matches_host(&self, hostname: &str) -> bool {
        self.hosts.iter().any(|h| host::matches(h, hostname))
    }
}

/// VirtualServices indexed by host, answering Istio's `getConfigsForHost` without a scan
/// of every VirtualService per service.
pub(crate) struct VsByHost<'v, 'a> {
    all: &'v [VsRef<'a>],
    exact: HashMap<&'v str, Vec<usize>>,
    wildcard: Vec<usize>,
}

impl<'v, 'a> VsByHost<'v, 'a> {
    /// Indexes `all` (in creation order).
    pub(crate) fn new(all: &'v [VsRef<'a>]) -> VsByHost<'v, 'a> {
        let mut exact: HashMap<&'v str, Vec<usize>> = HashMap::new();
        let mut wildcard = Vec::new();
        for (i, vs) in all.iter().enumerate() {
            let mut has_wildcard = false;
            for h in &vs.hosts {
                if host::is_wildcard(h) {
                    has_wildcard = true;
                } else {
                    let v = exact.entry(h.as_str()).or_default();
                    if v.last() != Some(&i) {
                        v.push(i);
                    }
                }
            }
            if has_wildcard {
                wildcard.push(i);
            }
        }
        VsByHost {
            all,
            exact,
            wildcard,
        }
    }

    /// The VirtualServices with a host matching `hostname`, in creation order.
    pub(crate) fn for_host(&self, hostname: &str) -> Vec<&'v VsRef<'a>> {
        if self.all.is_empty() {
            return Vec::new();
        }
        let mut idx: Vec<usize> = if host::is_wildcard(hostname) {
            (0..self.all.len()).collect()
        } else {
            let mut v = self.exact.get(hostname).cloned().unwrap_or_default();
            v.extend(self.wildcard.iter().copied());
            v.sort_unstable();
            v.dedup();
            v
        };
        idx.retain(|i| self.all.get(*i).is_some_and(|vs| vs.matches_host(hostname)));
        idx.iter().filter_map(|i| self.all.get(*i)).collect()
    }
}

/// The `ns/host` imports of egress listener `index` of the scope (the default scope imports
/// `*/*`).
pub(crate) fn egress_hosts(scope: &ProxyScope<'_>, index: usize) -> Vec<String> {
    scope
        .sidecar
        .as_ref()
        .filter(|s| !s.spec.egress.is_empty())
        .and_then(|s| s.spec.egress.get(index))
        .map(|l| l.hosts.clone())
        .unwrap_or_else(|| vec!["*/*".to_string()])
}

/// The Sidecar egress listener `index`, when a Sidecar with egress listeners applies.
pub(crate) fn egress_listener<'s>(
    scope: &'s ProxyScope<'_>,
    index: usize,
) -> Option<&'s api::IstioEgressListener> {
    scope
        .sidecar
        .as_ref()
        .filter(|s| !s.spec.egress.is_empty())
        .and_then(|s| s.spec.egress.get(index))
}

/// The VirtualServices (of the scope) whose hosts are imported by egress listener `index`,
/// in creation order (Istio's `SelectVirtualServices`).
pub(crate) fn egress_virtual_services<'a>(
    scope: &'a ProxyScope<'_>,
    index: usize,
) -> Vec<VsRef<'a>> {
    let imports: Vec<(String, String)> = egress_hosts(scope, index)
        .iter()
        .filter_map(|h| {
            let (ns, hp) = h.split_once('/').unwrap_or(("*", h.as_str()));
            if ns.starts_with('~') {
                return None;
            }
            let ns = if ns == "." {
                scope.proxy.namespace.clone()
            } else {
                ns.to_string()
            };
            Some((ns, hp.to_string()))
        })
        .collect();
    scope
        .virtual_services
        .iter()
        .filter_map(|vs| {
            let hosts: Vec<String> = vs
                .spec
                .hosts
                .iter()
                .map(|h| resolve_host(h, &vs.namespace))
                .collect();
            let imported = hosts.iter().any(|h| {
                imports
                    .iter()
                    .any(|(ns, hp)| (ns == "*" || *ns == vs.namespace) && host::matches(h, hp))
            });
            imported.then_some(VsRef { vs, hosts })
        })
        .collect()
}

/// True when `labels` contains every `selector` entry.
pub(crate) fn labels_match(
    selector: &std::collections::BTreeMap<String, String>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Brackets an IPv6 literal (`::1` → `[::1]`), leaving other names alone.
pub(crate) fn ipv6_compliant(h: &str) -> String {
    if h.contains(':') && !h.starts_with('[') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

/// `host:port` with IPv6 literals bracketed (Go's `net.JoinHostPort`).
pub(crate) fn domain_name(h: &str, port: u32) -> String {
    let mut s = String::with_capacity(h.len() + 8);
    if h.contains(':') {
        s.push('[');
        s.push_str(h);
        s.push(']');
    } else {
        s.push_str(h);
    }
    s.push(':');
    push_u32(&mut s, port);
    s
}

/// Appends the decimal form of `n` (without going through `fmt`).
pub(crate) fn push_u32(s: &mut String, mut n: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(b) = buf.get_mut(i) {
            // n % 10 < 10 always fits in a u8.
            *b = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    for b in buf.iter().skip(i) {
        s.push(char::from(*b));
    }
}

/// FNV-1a over the ASCII-lowercased bytes of `s` (case-insensitive domain hashing).
pub(crate) fn lowercase_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

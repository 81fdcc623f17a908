//! Endpoints (spec §4.4): a ClusterLoadAssignment for every EDS cluster, plus the
//! endpoint conversion shared with the inline load assignments of DNS clusters (§4.3).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use entryway_model::api::{ClientTlsMode, TrafficPolicy};
use entryway_model::registry::scope::EffectiveRule;
use entryway_model::registry::{Endpoint, EndpointAddress, Locality, ProxyScope, Service, TlsMode};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::google::protobuf::{Struct, UInt32Value};

use super::names;
use super::policy::{self, string_value};
use super::wire;

/// Istio's cluster ID for ServiceEntry endpoints (its default `CLUSTER_ID`).
pub const CLUSTER_ID: &str = "Kubernetes";

/// One assignment per EDS cluster among `clusters` (empty assignments included), in the
/// order of `clusters`.
pub fn load_assignments(
    scope: &ProxyScope<'_>,
    clusters: &[Cluster],
) -> Vec<ClusterLoadAssignment> {
    if !clusters.iter().any(policy::is_eds) {
        // Nothing to assign (the fixed clusters): skip indexing every service.
        return Vec::new();
    }
    let by_host: HashMap<&str, &Arc<Service>> = scope
        .services
        .iter()
        .map(|s| (s.hostname.as_str(), s))
        .collect();
    // Per host: the rule and every endpoint of the service (one registry lookup each).
    type HostInfo<'r> = (Option<EffectiveRule>, &'r [Arc<Endpoint>]);
    let mut hosts: HashMap<&str, HostInfo<'_>> = HashMap::new();
    let mut out = Vec::with_capacity(clusters.len());
    for c in clusters.iter().filter(|c| policy::is_eds(c)) {
        let name = eds_name(c);
        let found = names::parse_outbound_cluster(name).and_then(|(port, subset, host)| {
            let (host_key, svc) = by_host.get_key_value(host)?;
            let sp = svc.port(port)?;
            Some((port, subset, *host_key, *svc, sp))
        });
        let Some((port, subset, host, svc, sp)) = found else {
            out.push(ClusterLoadAssignment {
                cluster_name: name.to_string(),
                ..Default::default()
            });
            continue;
        };
        let (rule, endpoints) = hosts.entry(host).or_insert_with(|| {
            (
                scope.destination_rule(svc),
                super::cds::service_endpoints(scope, svc),
            )
        });
        out.push(assignment(
            scope,
            name,
            endpoints,
            &sp.name,
            port,
            subset,
            rule.as_ref(),
        ));
    }
    out
}

/// The EDS resource name of a cluster: `eds_cluster_config.service_name`, else its name.
fn eds_name(c: &Cluster) -> &str {
    c.eds_cluster_config
        .as_ref()
        .map(|e| e.service_name.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or(c.name.as_str())
}

/// The assignment [`load_assignments`] builds for `cluster` (an EDS cluster) when `svc` is
/// the proxy's service of that host, given the rule and endpoints the cluster was built
/// from (no lookups).
pub(crate) fn assignment_for(
    scope: &ProxyScope<'_>,
    svc: &Service,
    rule: Option<&EffectiveRule>,
    endpoints: &[Arc<Endpoint>],
    cluster: &Cluster,
) -> ClusterLoadAssignment {
    let name = eds_name(cluster);
    let found = names::parse_outbound_cluster(name)
        .filter(|(_, _, host)| *host == svc.hostname)
        .and_then(|(port, subset, _)| Some((port, subset, svc.port(port)?)));
    match found {
        Some((port, subset, sp)) => {
            assignment(scope, name, endpoints, &sp.name, port, subset, rule)
        }
        None => ClusterLoadAssignment {
            cluster_name: name.to_string(),
            ..Default::default()
        },
    }
}

fn assignment(
    scope: &ProxyScope<'_>,
    cluster_name: &str,
    endpoints: &[Arc<Endpoint>],
    port_name: &str,
    port: u32,
    subset: &str,
    rule: Option<&EffectiveRule>,
) -> ClusterLoadAssignment {
    let subset_rule = rule.and_then(|r| r.subsets.iter().find(|s| s.name == subset));
    let labels = subset_rule.map(|s| &s.labels);
    let checker = MtlsChecker::new(scope, rule, subset, port);
    let mut llb = locality_lb_endpoints(
        endpoints
            .iter()
            .map(|e| e.as_ref())
            .filter(|e| e.service_port_name == port_name)
            .filter(|e| !matches!(e.address, EndpointAddress::Hostname(_)))
            .filter(|e| labels.is_none_or(|l| subset_matches(l, e))),
        &checker,
    );
    // Locality failover (only with outlier detection) from the merged subset policy.
    let top: Option<&TrafficPolicy> = rule.and_then(|r| r.traffic_policy.as_ref());
    let merged = policy::merge_subset(
        policy::policy_for_port(top, port),
        subset_rule.and_then(|s| s.traffic_policy.as_ref()),
        port,
    )
    .unwrap_or_default();
    let setting = policy::locality_setting(scope.mesh, merged.load_balancer);
    policy::apply_locality_lb(&mut llb, setting, merged.outlier_detection.is_some());
    ClusterLoadAssignment {
        cluster_name: cluster_name.to_string(),
        endpoints: llb,
        ..Default::default()
    }
}

/// True when the endpoint's labels include every subset label.
pub fn subset_matches(subset_labels: &BTreeMap<String, String>, ep: &Endpoint) -> bool {
    subset_labels
        .iter()
        .all(|(k, v)| ep.labels.get(k) == Some(v))
}

/// Whether an endpoint gets the `tlsMode: istio` transport-socket-match metadata (Istio's
/// `mtlsChecker`): a DestinationRule TLS mode for this port/subset decides (ISTIO_MUTUAL
/// only); otherwise the endpoint's own tlsMode, unless the PeerAuthentication of the
/// endpoint's workload says DISABLE for its port (Istio's `EnableAutomTLSCheckPolicies`).
#[derive(Debug, Clone, Copy)]
pub struct MtlsChecker<'a> {
    dr_mode: Option<ClientTlsMode>,
    /// The registry and mesh config, when any PeerAuthentication exists.
    peer: Option<(
        &'a entryway_model::registry::Registry,
        &'a entryway_model::api::MeshConfig,
    )>,
}

impl<'a> MtlsChecker<'a> {
    /// The checker for cluster `(port, subset)` of a service with rule `rule`. As in Istio,
    /// a subset cluster only looks at the subset's own policy.
    pub fn new(
        scope: &ProxyScope<'a>,
        rule: Option<&EffectiveRule>,
        subset: &str,
        port: u32,
    ) -> MtlsChecker<'a> {
        let peer = (!scope.registry.peer_authentications.is_empty())
            .then_some((scope.registry, scope.mesh));
        let tp = rule.and_then(|r| {
            if subset.is_empty() {
                r.traffic_policy.as_ref()
            } else {
                r.subsets
                    .iter()
                    .find(|s| s.name == subset)
                    .and_then(|s| s.traffic_policy.as_ref())
            }
        });
        let dr_mode = tp.and_then(|tp| {
            let port_level = tp
                .port_level_settings
                .iter()
                .find(|p| p.port.as_ref().is_some_and(|s| s.number == port))
                .and_then(|p| p.tls.as_ref());
            port_level.or(tp.tls.as_ref()).map(|t| t.mode)
        });
        MtlsChecker { dr_mode, peer }
    }

    /// True when `ep` should advertise mTLS.
    pub fn enabled(&self, ep: &Endpoint) -> bool {
        match self.dr_mode {
            Some(m) => m == ClientTlsMode::IstioMutual,
            None => {
                ep.tls_mode == TlsMode::Istio
                    && self.peer.is_none_or(|(registry, mesh)| {
                        entryway_model::registry::peer_authn::workload_policy(
                            registry,
                            mesh,
                            &ep.namespace,
                            &ep.labels,
                        )
                        .mode_for_port(ep.port)
                            != entryway_model::api::MtlsMode::Disable
                    })
            }
        }
    }
}

/// `region/zone/subzone` without trailing empty parts (Istio's locality label).
/// The bytes of [`locality_label`]`(l)`, without building the string.
fn locality_label_bytes(l: &Locality) -> impl Iterator<Item = u8> + '_ {
    let zone_sep = !l.zone.is_empty() || !l.sub_zone.is_empty();
    let sub_zone_sep = !l.sub_zone.is_empty();
    l.region
        .bytes()
        .chain(zone_sep.then_some(b'/'))
        .chain(l.zone.bytes())
        .chain(sub_zone_sep.then_some(b'/'))
        .chain(l.sub_zone.bytes())
}

/// Orders localities as their labels (`region/zone/sub_zone`) order as strings.
fn cmp_locality_labels(a: &Locality, b: &Locality) -> std::cmp::Ordering {
    locality_label_bytes(a).cmp(locality_label_bytes(b))
}

#[cfg(test)]
fn locality_label(l: &Locality) -> String {
    let mut s = l.region.clone();
    if !l.zone.is_empty() || !l.sub_zone.is_empty() {
        s.push('/');
        s.push_str(&l.zone);
    }
    if !l.sub_zone.is_empty() {
        s.push('/');
        s.push_str(&l.sub_zone);
    }
    s
}

fn envoy_address(ep: &Endpoint) -> core::Address {
    let address = match &ep.address {
        EndpointAddress::Unix(path) => core::address::Address::Pipe(core::Pipe {
            path: path.clone(),
            ..Default::default()
        }),
        EndpointAddress::Ip(ip) => {
            let mut a = String::with_capacity(if ip.is_ipv4() { 15 } else { 39 });
            let _ = write!(a, "{ip}");
            socket_address(a, ep.port)
        }
        EndpointAddress::Hostname(h) => socket_address(h.clone(), ep.port),
    };
    core::Address {
        address: Some(address),
    }
}

fn socket_address(address: String, port: u32) -> core::address::Address {
    core::address::Address::SocketAddress(core::SocketAddress {
        address,
        port_specifier: Some(core::socket_address::PortSpecifier::PortValue(port)),
        ..Default::default()
    })
}

fn canonical_service(ep: &Endpoint) -> (&str, &str) {
    (
        ep.canonical_name.as_deref().unwrap_or(&ep.workload_name),
        &ep.canonical_revision,
    )
}

/// One `LbEndpoint` (Istio's `buildEnvoyLbEndpoint`): address, HEALTHY, weight, and the
/// metadata `envoy.transport_socket_match.tlsMode` (when mTLS-capable) and
/// `istio.workload = <workload>;<namespace>;<canonical name>;<canonical revision>;<cluster>`.
pub fn lb_endpoint(ep: &Endpoint, mtls: bool) -> LbEndpoint {
    let mut filter_metadata = HashMap::with_capacity(if mtls { 2 } else { 1 });
    if mtls {
        let mut fields = HashMap::with_capacity(1);
        fields.insert("tlsMode".to_string(), string_value("istio"));
        filter_metadata.insert(
            "envoy.transport_socket_match".to_string(),
            Struct { fields },
        );
    }
    let (name, rev) = canonical_service(ep);
    let mut workload = String::with_capacity(
        ep.workload_name.len() + ep.namespace.len() + name.len() + rev.len() + CLUSTER_ID.len() + 4,
    );
    for (i, part) in [
        ep.workload_name.as_str(),
        ep.namespace.as_str(),
        name,
        rev,
        CLUSTER_ID,
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            workload.push(';');
        }
        workload.push_str(part);
    }
    let mut fields = HashMap::with_capacity(1);
    fields.insert("workload".to_string(), string_value(workload));
    filter_metadata.insert("istio".to_string(), Struct { fields });
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
            address: Some(envoy_address(ep)),
            ..Default::default()
        })),
        health_status: core::HealthStatus::Healthy as i32,
        metadata: Some(core::Metadata {
            filter_metadata,
            ..Default::default()
        }),
        load_balancing_weight: Some(UInt32Value {
            value: ep.weight.max(1),
        }),
    }
}

/// Endpoints grouped by locality (sorted by locality label), each group weighted by the
/// sum of its endpoint weights.
pub fn locality_lb_endpoints<'e>(
    endpoints: impl IntoIterator<Item = &'e Endpoint>,
    checker: &MtlsChecker<'_>,
) -> Vec<LocalityLbEndpoints> {
    let mut groups: Vec<(&'e Locality, LocalityLbEndpoints)> = Vec::new();
    for ep in endpoints {
        let idx = match groups.iter().position(|(l, _)| **l == ep.locality) {
            Some(i) => i,
            None => {
                groups.push((
                    &ep.locality,
                    LocalityLbEndpoints {
                        locality: Some(core::Locality {
                            region: ep.locality.region.clone(),
                            zone: ep.locality.zone.clone(),
                            sub_zone: ep.locality.sub_zone.clone(),
                        }),
                        ..Default::default()
                    },
                ));
                groups.len() - 1
            }
        };
        if let Some((_, g)) = groups.get_mut(idx) {
            g.lb_endpoints.push(lb_endpoint(ep, checker.enabled(ep)));
        }
    }
    for (_, g) in &mut groups {
        let weight = g
            .lb_endpoints
            .iter()
            .map(|e| e.load_balancing_weight.as_ref().map_or(0, |w| w.value))
            .fold(0u32, u32::saturating_add);
        g.load_balancing_weight = Some(UInt32Value { value: weight });
    }
    if groups.len() > 1 {
        groups.sort_by(|(a, _), (b, _)| cmp_locality_labels(a, b));
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

// ---------------------------------------------------------------------------------------
// Direct encoding (generate_encoded): the bytes of the messages above, without the structs.
// ---------------------------------------------------------------------------------------

/// Writes `ip` as text (as `Display` does) into `out`, returning its length: IPv4 by hand
/// (the common case, without the formatting machinery), IPv6 through `Display`.
fn ip_text(ip: &std::net::IpAddr, out: &mut [u8; 64]) -> usize {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    if let Some(b) = out.get_mut(n) {
                        *b = b'.';
                    }
                    n += 1;
                }
                let digits: &[u8] = &[octet / 100, octet / 10 % 10, octet % 10];
                let skip = if octet >= 100 {
                    0
                } else if octet >= 10 {
                    1
                } else {
                    2
                };
                for d in digits.iter().skip(skip) {
                    if let Some(b) = out.get_mut(n) {
                        *b = b'0' + d;
                    }
                    n += 1;
                }
            }
            n
        }
        std::net::IpAddr::V6(_) => {
            let mut cur = std::io::Cursor::new(&mut out[..]);
            let _ = std::io::Write::write_fmt(&mut cur, format_args!("{ip}"));
            usize::try_from(cur.position()).unwrap_or(0)
        }
    }
}

/// The encoding of [`lb_endpoint`]`(ep, mtls)`.
fn encode_lb_endpoint(buf: &mut Vec<u8>, ep: &Endpoint, mtls: bool) {
    // host_identifier.endpoint (1): Endpoint { address (1): Address }.
    wire::message(buf, 1, |b| {
        wire::message(b, 1, |b| match &ep.address {
            EndpointAddress::Unix(path) => wire::message(b, 2, |b| wire::string(b, 1, path)),
            EndpointAddress::Ip(ip) => wire::message(b, 1, |b| {
                let mut text = [0u8; 64];
                let len = ip_text(ip, &mut text);
                let addr = std::str::from_utf8(text.get(..len).unwrap_or_default()).unwrap_or("");
                wire::string(b, 2, addr);
                wire::uint32_always(b, 3, ep.port);
            }),
            EndpointAddress::Hostname(h) => wire::message(b, 1, |b| {
                wire::string(b, 2, h);
                wire::uint32_always(b, 3, ep.port);
            }),
        });
    });
    wire::uint32(buf, 2, core::HealthStatus::Healthy as u32);
    // metadata (3): filter_metadata entries sorted by key.
    wire::message(buf, 3, |b| {
        if mtls {
            wire::message(b, 1, |b| {
                wire::string_always(b, 1, "envoy.transport_socket_match");
                wire::message(b, 2, |b| {
                    wire::message(b, 1, |b| {
                        wire::string_always(b, 1, "tlsMode");
                        wire::message(b, 2, |b| wire::string_value(b, "istio"));
                    });
                });
            });
        }
        wire::message(b, 1, |b| {
            wire::string_always(b, 1, "istio");
            wire::message(b, 2, |b| {
                wire::message(b, 1, |b| {
                    wire::string_always(b, 1, "workload");
                    wire::message(b, 2, |b| {
                        let (name, rev) = canonical_service(ep);
                        wire::joined(
                            b,
                            3,
                            &[&ep.workload_name, &ep.namespace, name, rev, CLUSTER_ID],
                            b';',
                        );
                    });
                });
            });
        });
    });
    wire::uint32_value(buf, 4, ep.weight.max(1));
}

/// The encoding of [`locality_lb_endpoints`] as repeated field `tag` of the enclosing
/// message (`ClusterLoadAssignment.endpoints`).
pub(crate) fn encode_locality_lb_endpoints<'e>(
    buf: &mut Vec<u8>,
    tag: u32,
    endpoints: impl IntoIterator<Item = &'e Endpoint>,
    checker: &MtlsChecker<'_>,
) {
    // Groups in order of first appearance: (locality, endpoints, weight).
    let mut groups: Vec<(&'e Locality, Vec<&'e Endpoint>, u32)> = Vec::new();
    for ep in endpoints {
        match groups.iter_mut().find(|(l, _, _)| **l == ep.locality) {
            Some((_, v, w)) => {
                v.push(ep);
                *w = w.saturating_add(ep.weight.max(1));
            }
            None => groups.push((&ep.locality, vec![ep], ep.weight.max(1))),
        }
    }
    if groups.len() > 1 {
        groups.sort_by(|(a, _, _), (b, _, _)| cmp_locality_labels(a, b));
    }
    for (locality, eps, weight) in groups {
        wire::message(buf, tag, |b| {
            wire::message(b, 1, |b| {
                wire::string(b, 1, &locality.region);
                wire::string(b, 2, &locality.zone);
                wire::string(b, 3, &locality.sub_zone);
            });
            for ep in eps {
                wire::message(b, 2, |b| encode_lb_endpoint(b, ep, checker.enabled(ep)));
            }
            wire::uint32_value(b, 3, weight);
        });
    }
}

/// The encoded endpoints (field 2 on) of recent load assignments, reused by the next
/// cluster whose endpoints are the very same registry endpoints (the same `Arc`s, in the
/// same order) for the same port: the hosts of one ServiceEntry share their endpoints, so
/// their assignments differ only in the cluster name. Only pointer identity is compared:
/// the registry's endpoints are immutable and outlive a generation, so equal pointers mean
/// equal bytes.
#[derive(Default)]
pub(crate) struct AssignmentCache {
    /// Addresses of the endpoints the entries below were encoded from.
    endpoints: Vec<usize>,
    /// (port number, port name, encoded `endpoints` field).
    bodies: Vec<(u32, String, Vec<u8>)>,
}

impl AssignmentCache {
    /// Forgets every entry unless `endpoints` are the ones the entries were built from.
    fn select(&mut self, endpoints: &[Arc<Endpoint>]) {
        let same = self.endpoints.len() == endpoints.len()
            && self
                .endpoints
                .iter()
                .zip(endpoints)
                .all(|(a, e)| *a == Arc::as_ptr(e) as usize);
        if !same {
            self.endpoints.clear();
            self.endpoints
                .extend(endpoints.iter().map(|e| Arc::as_ptr(e) as usize));
            self.bodies.clear();
        }
    }

    fn body(&self, port: u32, name: &str) -> Option<&[u8]> {
        self.bodies
            .iter()
            .find(|(p, n, _)| *p == port && n == name)
            .map(|(_, _, b)| b.as_slice())
    }
}

/// The encoding of [`assignment_for`], written directly, for a service without a
/// DestinationRule (no subsets, no locality failover); `None` when a rule applies or the
/// cluster is not one of `svc`'s (the caller then builds the message). `scratch` is a
/// reusable buffer; `cache` holds the encoded endpoints of recent calls.
pub(crate) fn encode_assignment_for(
    scope: &ProxyScope<'_>,
    svc: &Service,
    rule: Option<&EffectiveRule>,
    endpoints: &[Arc<Endpoint>],
    cluster: &Cluster,
    scratch: &mut Vec<u8>,
    cache: &mut AssignmentCache,
) -> Option<(String, Vec<u8>)> {
    if rule.is_some() {
        return None;
    }
    let name = eds_name(cluster);
    let (port, subset, host) = names::parse_outbound_cluster(name)?;
    if host != svc.hostname || !subset.is_empty() {
        return None;
    }
    let sp = svc.port(port)?;
    scratch.clear();
    let buf = scratch;
    wire::string(buf, 1, name);
    cache.select(endpoints);
    if let Some(body) = cache.body(port, &sp.name) {
        buf.extend_from_slice(body);
    } else {
        let start = buf.len();
        let checker = MtlsChecker::new(scope, None, subset, port);
        encode_locality_lb_endpoints(
            buf,
            2,
            endpoints
                .iter()
                .map(|e| e.as_ref())
                .filter(|e| e.service_port_name == sp.name)
                .filter(|e| !matches!(e.address, EndpointAddress::Hostname(_))),
            &checker,
        );
        let body = buf.get(start..).unwrap_or_default().to_vec();
        cache.bodies.push((port, sp.name.clone(), body));
    }
    // An exact-size copy: the scratch buffer is reused for the next one.
    Some((name.to_string(), buf.to_vec()))
}

#[cfg(test)]
mod tests {
    use crate::generator::testutil::TestEnv;
    use crate::json::to_json_value;
    use entryway_model::registry::Locality;
    use serde_json::json;

    fn cla(cfg: &crate::generator::ProxyConfig, name: &str) -> serde_json::Value {
        let c = cfg
            .endpoints
            .iter()
            .find(|c| c.cluster_name == name)
            .unwrap_or_else(|| panic!("no assignment {name}"));
        to_json_value(c).expect("json")
    }

    const STATIC: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.example.com]
  addresses: [10.1.2.3]
  ports:
  - {number: 3306, name: mysql, protocol: TCP}
  - {number: 8080, name: http, protocol: HTTP, targetPort: 9080}
  resolution: STATIC
  endpoints:
  - {address: 1.1.1.1, locality: us/b}
  - {address: 2.2.2.2, weight: 3, locality: eu/a, labels: {version: v1}, ports: {http: 7070}}
  - {address: 3.3.3.3, locality: eu/a, labels: {version: v2, app: db-app}, serviceAccount: db}
"#;

    #[test]
    fn one_assignment_per_eds_cluster_grouped_by_locality() {
        let env = TestEnv::new(STATIC);
        let cfg = env.generate();
        let names: Vec<&str> = cfg
            .endpoints
            .iter()
            .map(|c| c.cluster_name.as_str())
            .collect();
        assert_eq!(
            names,
            vec![
                "outbound|3306||db.example.com",
                "outbound|8080||db.example.com"
            ]
        );
        let j = cla(&cfg, "outbound|3306||db.example.com");
        let eps = j["endpoints"].as_array().expect("endpoints");
        assert_eq!(eps.len(), 2);
        // Sorted by locality: eu/a before us/b; weight = sum of endpoint weights.
        assert_eq!(eps[0]["locality"], json!({"region": "eu", "zone": "a"}));
        assert_eq!(eps[0]["load_balancing_weight"], 4);
        assert_eq!(eps[1]["locality"], json!({"region": "us", "zone": "b"}));
        assert_eq!(eps[1]["load_balancing_weight"], 1);
        let first = &eps[0]["lb_endpoints"][0];
        assert_eq!(
            first["endpoint"]["address"]["socket_address"],
            json!({"address": "2.2.2.2", "port_value": 3306})
        );
        assert_eq!(first["health_status"], "HEALTHY");
        assert_eq!(first["load_balancing_weight"], 3);
        assert_eq!(
            first["metadata"]["filter_metadata"]["istio"]["workload"],
            "db-1;default;db-1;v1;Kubernetes"
        );
        assert!(
            first["metadata"]["filter_metadata"]
                .get("envoy.transport_socket_match")
                .is_none()
        );
        // Endpoint with a service account: tlsMode istio, canonical name from `app`.
        let third = &eps[0]["lb_endpoints"][1];
        assert_eq!(
            third["metadata"]["filter_metadata"]["envoy.transport_socket_match"],
            json!({"tlsMode": "istio"})
        );
        assert_eq!(
            third["metadata"]["filter_metadata"]["istio"]["workload"],
            "db-2;default;db-app;v2;Kubernetes"
        );
        // Port precedence: endpoint port > targetPort > number.
        let j = cla(&cfg, "outbound|8080||db.example.com");
        let ports: Vec<u64> = j["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .flat_map(|g| g["lb_endpoints"].as_array().cloned().unwrap_or_default())
            .map(|e| {
                e["endpoint"]["address"]["socket_address"]["port_value"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .collect();
        assert_eq!(ports, vec![7070, 9080, 9080]);
    }

    #[test]
    fn subset_assignments_filter_by_labels() {
        let yaml = format!(
            "{STATIC}---\n{}",
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: default}
spec:
  host: db.example.com
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: none, labels: {version: v9}}
"#
        );
        let env = TestEnv::new(&yaml);
        let cfg = env.generate();
        let j = cla(&cfg, "outbound|3306|v1|db.example.com");
        let eps = j["endpoints"].as_array().expect("endpoints");
        assert_eq!(eps.len(), 1);
        assert_eq!(
            eps[0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["address"],
            "2.2.2.2"
        );
        // No matching endpoint: the assignment is still sent, empty.
        let j = cla(&cfg, "outbound|3306|none|db.example.com");
        assert_eq!(
            j,
            json!({"cluster_name": "outbound|3306|none|db.example.com"})
        );
    }

    #[test]
    fn hostname_endpoints_are_dropped_and_unix_kept() {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: mixed, namespace: default}
spec:
  hosts: [mixed.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: mixed}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: default}
spec:
  address: 10.0.0.9
  labels: {app: mixed}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: uds, namespace: default}
spec:
  hosts: [uds.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: "unix:///var/run/app.sock"}]
"#;
        let env = TestEnv::new(yaml);
        let cfg = env.generate();
        let j = cla(&cfg, "outbound|80||mixed.example.com");
        assert_eq!(
            j["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["address"],
            "10.0.0.9"
        );
        assert_eq!(
            j["endpoints"][0]["lb_endpoints"][0]["metadata"]["filter_metadata"]["istio"]["workload"],
            "vm;default;mixed;;Kubernetes"
        );
        let j = cla(&cfg, "outbound|80||uds.example.com");
        assert_eq!(
            j["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"],
            json!({"pipe": {"path": "/var/run/app.sock"}})
        );
    }

    #[test]
    fn dr_tls_mode_decides_endpoint_mtls_metadata() {
        let yaml = format!(
            "{STATIC}---\n{}",
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: default}
spec:
  host: db.example.com
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
    - port: {number: 8080}
      tls: {mode: DISABLE}
"#
        );
        let env = TestEnv::new(&yaml);
        let cfg = env.generate();
        let count = |name: &str| {
            cla(&cfg, name)["endpoints"]
                .as_array()
                .expect("endpoints")
                .iter()
                .flat_map(|g| g["lb_endpoints"].as_array().cloned().unwrap_or_default())
                .filter(|e| {
                    e["metadata"]["filter_metadata"]
                        .get("envoy.transport_socket_match")
                        .is_some()
                })
                .count()
        };
        assert_eq!(count("outbound|3306||db.example.com"), 3);
        assert_eq!(count("outbound|8080||db.example.com"), 0);
    }

    #[test]
    fn locality_failover_needs_outlier_detection() {
        let se = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: loc, namespace: default}
spec:
  hosts: [loc.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 1.1.1.1}
  - {address: 2.2.2.2, locality: us/b}
"#;
        let priorities = |yaml: &str| -> Vec<u64> {
            let env = TestEnv::new(yaml);
            let cfg = env.generate();
            cla(&cfg, "outbound|80||loc.example.com")["endpoints"]
                .as_array()
                .expect("endpoints")
                .iter()
                .map(|g| g["priority"].as_u64().unwrap_or(0))
                .collect()
        };
        assert_eq!(
            priorities(se),
            vec![0, 0],
            "no outlier detection: no failover"
        );
        let with_od = format!(
            "{se}---\n{}",
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: loc, namespace: default}
spec:
  host: loc.example.com
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5}
"#
        );
        // The proxy has no locality: the locality-less endpoints match it (priority 0), the
        // other region gets the next priority.
        assert_eq!(priorities(&with_od), vec![0, 1]);
        let disabled = format!(
            "{se}---\n{}",
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: loc, namespace: default}
spec:
  host: loc.example.com
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5}
    loadBalancer: {localityLbSetting: {enabled: false}}
"#
        );
        assert_eq!(priorities(&disabled), vec![0, 0]);
    }

    #[test]
    fn non_eds_clusters_get_no_assignment() {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns, namespace: default}
spec:
  hosts: [dns.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: none, namespace: default}
spec:
  hosts: ["*.none.com"]
  ports: [{number: 443, name: tls, protocol: TLS}]
"#;
        let env = TestEnv::new(yaml);
        let cfg = env.generate();
        assert!(cfg.endpoints.is_empty(), "{:?}", cfg.endpoints);
    }

    #[test]
    fn localities_order_as_their_labels() {
        let parts = ["", "a", "a-b", "a/b", "b", "ab"];
        let mut all = Vec::new();
        for r in parts {
            for z in parts {
                for sz in parts {
                    all.push(Locality {
                        region: r.to_string(),
                        zone: z.to_string(),
                        sub_zone: sz.to_string(),
                    });
                }
            }
        }
        for a in &all {
            for b in &all {
                assert_eq!(
                    super::cmp_locality_labels(a, b),
                    super::locality_label(a).cmp(&super::locality_label(b)),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn canonical_service_takes_the_first_present_key_of_each_list() {
        use entryway_model::registry::{Endpoint, EndpointAddress, TlsMode};
        let ep = |labels: &[(&str, &str)]| Endpoint {
            address: EndpointAddress::Hostname("h".to_string()),
            port: 80,
            service_port_name: "http".to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            locality: Locality::default(),
            weight: 1,
            network: String::new(),
            service_account: String::new(),
            tls_mode: TlsMode::Disabled,
            workload_name: "wl".to_string(),
            namespace: "ns".to_string(),
            canonical_name: None,
            canonical_revision: String::new(),
        };
        type Labels<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Labels<'_>, (&str, &str)); 5] = [
            (&[], ("wl", "")),
            (&[("topology.kubernetes.io/zone", "z")], ("wl", "")),
            (
                &[
                    ("app", "a"),
                    ("app.kubernetes.io/name", "k"),
                    ("version", "v1"),
                ],
                ("k", "v1"),
            ),
            (
                &[
                    ("app", "a"),
                    ("service.istio.io/canonical-name", "c"),
                    ("service.istio.io/canonical-revision", "latest"),
                    ("version", "v2"),
                ],
                ("c", ""),
            ),
            (
                &[("app.kubernetes.io/version", "k2"), ("version", "v3")],
                ("wl", "k2"),
            ),
        ];
        for (labels, want) in cases {
            let mut e = ep(labels);
            (e.canonical_name, e.canonical_revision) =
                entryway_model::registry::canonical_from_labels(&e.labels);
            assert_eq!(super::canonical_service(&e), want, "{labels:?}");
        }
    }

    #[test]
    fn ip_text_is_display() {
        let ips = [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.99.100",
            "255.255.255.255",
            "192.168.10.9",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
        ];
        for s in ips {
            let ip: std::net::IpAddr = s.parse().expect("ip");
            let mut out = [0u8; 64];
            let n = super::ip_text(&ip, &mut out);
            assert_eq!(std::str::from_utf8(&out[..n]), Ok(ip.to_string().as_str()));
        }
    }
}

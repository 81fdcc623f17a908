//! [`generate_encoded`]: the same configuration as [`generate`](super::generate), produced
//! straight as protobuf bytes per resource.
//!
//! A proxy of a large mesh has tens of thousands of clusters and load assignments. Building
//! all of them as prost structs, then encoding, then dropping them costs far more than the
//! bytes themselves: every struct is several kilobytes of mostly-empty fields and its strings
//! and maps are separate allocations, all alive at once. Here each outbound cluster (and the
//! load assignment of an EDS cluster) is encoded as soon as it is built and dropped before the
//! next one, so the working set stays in cache; services are split into blocks that worker
//! threads take in turn, and the blocks are put back in service order, so the result does not
//! depend on the number of threads or on scheduling.
//!
//! Decoding any resource gives exactly the message [`generate`](super::generate) returns for
//! it, in the same order (by name). Only the byte order of map entries (metadata `Struct`s,
//! `typed_extension_protocol_options`) may differ between runs, as with any prost encoding.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use entryway_model::registry::{ProxyScope, Service};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use prost::Message;

use super::{cds, eds, explicit, inbound, lds, rds, wire};

/// One resource, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedResource {
    /// Resource name (the cluster name for a ClusterLoadAssignment).
    pub name: String,
    /// Protobuf encoding of the resource.
    pub bytes: Vec<u8>,
    /// A cluster of type EDS (its endpoints are a separate resource).
    pub eds: bool,
}

/// Everything one proxy receives, encoded; each list sorted by name as in
/// [`ProxyConfig`](super::ProxyConfig).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedConfig {
    /// Listeners.
    pub listeners: Vec<EncodedResource>,
    /// Route configurations.
    pub routes: Vec<EncodedResource>,
    /// Clusters.
    pub clusters: Vec<EncodedResource>,
    /// Cluster load assignments.
    pub endpoints: Vec<EncodedResource>,
}

impl EncodedConfig {
    /// Total encoded bytes over every resource.
    pub fn encoded_len(&self) -> usize {
        [
            &self.listeners,
            &self.routes,
            &self.clusters,
            &self.endpoints,
        ]
        .into_iter()
        .flat_map(|v| v.iter())
        .map(|r| r.bytes.len())
        .sum()
    }
}

/// Services per block handed to a worker.
const BLOCK: usize = 128;
/// Below this many services everything runs on the calling thread.
const PARALLEL_MIN_SERVICES: usize = 2 * BLOCK;

fn is_eds(c: &Cluster) -> bool {
    matches!(
        c.cluster_discovery_type,
        Some(ClusterDiscoveryType::Type(t)) if t == DiscoveryType::Eds as i32
    )
}

fn encoded_cluster(c: &Cluster) -> EncodedResource {
    EncodedResource {
        name: c.name.clone(),
        bytes: c.encode_to_vec(),
        eds: is_eds(c),
    }
}

/// The outbound clusters and load assignments of one block of services.
#[derive(Default)]
struct BlockOut {
    clusters: Vec<EncodedResource>,
    endpoints: Vec<EncodedResource>,
}

fn build_block(
    scope: &ProxyScope<'_>,
    env: &cds::ClusterEnv,
    services: &[Arc<Service>],
) -> BlockOut {
    let ports: usize = services.iter().map(|s| s.ports.len()).sum();
    let mut out = BlockOut {
        clusters: Vec::with_capacity(ports),
        endpoints: Vec::with_capacity(ports),
    };
    // Messages are encoded into these reusable buffers, then copied out at their exact size.
    let mut scratch = Vec::with_capacity(8192);
    let mut cla_scratch = Vec::with_capacity(8192);
    let mut cla_cache = eds::AssignmentCache::default();
    for svc in services {
        cds::service_clusters(scope, env, svc, true, &mut |c, direct, inputs| {
            scratch.clear();
            c.encode_raw(&mut scratch);
            let bytes = match direct {
                Some(d) => {
                    let mut repl: [(u32, &[u8]); 3] =
                        [(cds::METADATA_FIELD, &d.metadata), (0, &[]), (0, &[])];
                    if let Some(la) = &d.load_assignment {
                        repl[1] = (cds::LOAD_ASSIGNMENT_FIELD, la);
                    }
                    if c.typed_dns_resolver_config.is_some() {
                        repl[2] = (cds::DNS_RESOLVER_FIELD, &env.dns_resolver_bytes);
                    }
                    wire::replace_fields(&scratch, &repl)
                }
                None => scratch.to_vec(),
            };
            let eds = is_eds(&c);
            if eds {
                match eds::encode_assignment_for(
                    scope,
                    svc,
                    inputs.rule,
                    inputs.endpoints,
                    &c,
                    &mut cla_scratch,
                    &mut cla_cache,
                ) {
                    Some((name, bytes)) => out.endpoints.push(EncodedResource {
                        name,
                        bytes,
                        eds: false,
                    }),
                    None => {
                        let cla =
                            eds::assignment_for(scope, svc, inputs.rule, inputs.endpoints, &c);
                        out.endpoints.push(encoded_cla(cla));
                    }
                }
            }
            out.clusters.push(EncodedResource {
                name: c.name,
                bytes,
                eds,
            });
        });
    }
    out
}

/// Blocks of services that worker threads take in turn; results kept by block index.
struct Blocks<'s, 'a> {
    scope: &'s ProxyScope<'a>,
    env: cds::ClusterEnv,
    blocks: Vec<&'s [Arc<Service>]>,
    next: AtomicUsize,
    results: Vec<Mutex<Option<BlockOut>>>,
}

impl<'s, 'a> Blocks<'s, 'a> {
    fn new(scope: &'s ProxyScope<'a>) -> Blocks<'s, 'a> {
        let blocks: Vec<&[Arc<Service>]> = scope.services.chunks(BLOCK).collect();
        Blocks {
            scope,
            env: cds::ClusterEnv::new(scope),
            results: blocks.iter().map(|_| Mutex::new(None)).collect(),
            blocks,
            next: AtomicUsize::new(0),
        }
    }

    /// Takes blocks until none is left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(b) = self.blocks.get(i) else { break };
            let built = build_block(self.scope, &self.env, b);
            if let Some(slot) = self.results.get(i)
                && let Ok(mut g) = slot.lock()
            {
                *g = Some(built);
            }
        }
    }

    /// The results in service order (a block whose worker died is built here).
    fn into_results(self) -> Vec<BlockOut> {
        let Blocks {
            scope,
            env,
            blocks,
            results,
            ..
        } = self;
        results
            .into_iter()
            .zip(blocks)
            .map(|(m, b)| {
                m.into_inner()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| build_block(scope, &env, b))
            })
            .collect()
    }
}

fn cmp_resources(a: &EncodedResource, b: &EncodedResource) -> std::cmp::Ordering {
    a.name.cmp(&b.name).then_with(|| a.bytes.cmp(&b.bytes))
}

/// Sorts by name (then bytes, so that the order never depends on the input order).
///
/// Tens of thousands of names that share a prefix (`outbound|`), each behind its own
/// pointer: comparing them directly is mostly cache misses. So the 32 bytes that follow the
/// prefix every name shares are copied into a key next to the index, and the keys are
/// sorted with the names compared only when two keys are equal; then the list is put in
/// that order.
fn sort_by_name(v: &mut [EncodedResource]) {
    if v.len() < 64 {
        v.sort_unstable_by(cmp_resources);
        return;
    }
    let Some(first) = v.first() else { return };
    let first = first.name.as_bytes();
    let shared = v.iter().fold(first.len(), |n, r| {
        let name = r.name.as_bytes();
        name.iter()
            .zip(first)
            .take(n)
            .take_while(|(a, b)| a == b)
            .count()
    });
    let key = |name: &str| {
        let mut k = [0u8; 32];
        for (d, s) in k.iter_mut().zip(name.as_bytes().iter().skip(shared)) {
            *d = *s;
        }
        k
    };
    let mut order: Vec<([u8; 32], usize)> = v
        .iter()
        .enumerate()
        .map(|(i, r)| (key(&r.name), i))
        .collect();
    order.sort_unstable_by(|(ka, a), (kb, b)| {
        ka.cmp(kb).then_with(|| match (v.get(*a), v.get(*b)) {
            (Some(x), Some(y)) => cmp_resources(x, y),
            _ => a.cmp(b),
        })
    });
    // In place, cycle by cycle: position j takes the element at from[j].
    let mut from: Vec<usize> = order.into_iter().map(|(_, i)| i).collect();
    for start in 0..from.len() {
        let mut j = start;
        while let Some(k) = from.get_mut(j).map(|f| std::mem::replace(f, j)) {
            if k == start || k == j {
                break;
            }
            v.swap(j, k);
            j = k;
        }
    }
}

fn encoded_cla(e: ClusterLoadAssignment) -> EncodedResource {
    EncodedResource {
        bytes: e.encode_to_vec(),
        name: e.cluster_name,
        eds: false,
    }
}

/// The configuration [`generate`](super::generate) returns, encoded per resource, using every
/// available core for the outbound clusters.
pub fn generate_encoded(scope: &ProxyScope<'_>) -> EncodedConfig {
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    generate_encoded_with(scope, workers)
}

/// [`generate_encoded`] with at most `workers` threads (1: the calling thread only).
pub fn generate_encoded_with(scope: &ProxyScope<'_>, workers: usize) -> EncodedConfig {
    let blocks = Blocks::new(scope);
    let parallel = workers > 1 && scope.services.len() >= PARALLEL_MIN_SERVICES;
    let (mut listeners, mut routes) = if parallel {
        std::thread::scope(|s| {
            // One worker builds listeners and routes first, then joins the others.
            let lr = s.spawn(|| {
                let lr = listeners_and_routes(scope);
                blocks.work();
                lr
            });
            for _ in 2..workers {
                s.spawn(|| blocks.work());
            }
            blocks.work();
            lr.join().unwrap_or_else(|_| listeners_and_routes(scope))
        })
    } else {
        blocks.work();
        listeners_and_routes(scope)
    };
    let blocks = blocks.into_results();
    let fixed = fixed_clusters(scope);
    let fixed_cla = eds::load_assignments(scope, &fixed);
    let total_c: usize = blocks.iter().map(|b| b.clusters.len()).sum();
    let total_e: usize = blocks.iter().map(|b| b.endpoints.len()).sum();
    let mut clusters = Vec::with_capacity(total_c + fixed.len());
    let mut endpoints = Vec::with_capacity(total_e + fixed_cla.len());
    clusters.extend(fixed.iter().map(encoded_cluster));
    endpoints.extend(fixed_cla.into_iter().map(encoded_cla));
    for b in blocks {
        clusters.extend(b.clusters);
        endpoints.extend(b.endpoints);
    }
    sort_by_name(&mut listeners);
    sort_by_name(&mut routes);
    if parallel {
        std::thread::scope(|s| {
            s.spawn(|| sort_by_name(&mut clusters));
            sort_by_name(&mut endpoints);
        });
    } else {
        sort_by_name(&mut clusters);
        sort_by_name(&mut endpoints);
    }
    EncodedConfig {
        listeners,
        routes,
        clusters,
        endpoints,
    }
}

/// The clusters that are not per service: BlackHole, Passthrough, InboundPassthrough and the
/// explicit-proxy passthrough.
fn fixed_clusters(scope: &ProxyScope<'_>) -> Vec<Cluster> {
    let mut v = vec![
        cds::blackhole_cluster(scope),
        cds::passthrough_cluster(scope),
        cds::inbound_passthrough_cluster(scope),
    ];
    v.extend(explicit::passthrough_cluster(scope));
    v.extend(inbound::clusters(scope));
    v
}

fn listeners_and_routes(scope: &ProxyScope<'_>) -> (Vec<EncodedResource>, Vec<EncodedResource>) {
    let mut listeners = lds::listeners(scope);
    listeners.extend(explicit::listener(scope));
    listeners.extend(inbound::listeners(scope));
    listeners.sort_by(|a, b| a.name.cmp(&b.name));
    let default_route = rds::DefaultRoute::new(scope);
    let route_names = lds::route_names(&listeners);
    let routes = match &default_route {
        Some(_) => rds::route_configurations_compact(scope, &route_names),
        None => rds::route_configurations(scope, &route_names),
    };
    let listeners = listeners
        .into_iter()
        .map(|l| EncodedResource {
            bytes: l.encode_to_vec(),
            name: l.name,
            eds: false,
        })
        .collect();
    let mut scratch = Vec::new();
    let routes = routes
        .into_iter()
        .map(|r| encoded_route_configuration(r, &mut scratch, default_route.as_ref()))
        .collect();
    (listeners, routes)
}

/// `RouteConfiguration.virtual_hosts`.
const VIRTUAL_HOSTS_FIELD: u32 = 2;

/// The bytes of `r.encode_to_vec()`, written with less work: prost sizes every nested
/// message once per enclosing level (the length prefix of each), so the virtual hosts, the
/// bulk of a route configuration, are encoded one by one into `scratch` (their size is then
/// known) and put between the name (field 1) and the other fields, which is where prost
/// writes them (fields in tag order). With `default_route`, `r` comes from
/// [`rds::route_configurations_compact`]: a virtual host without routes gets its default
/// route written from its name.
fn encoded_route_configuration(
    mut r: RouteConfiguration,
    scratch: &mut Vec<u8>,
    default_route: Option<&rds::DefaultRoute>,
) -> EncodedResource {
    let name = std::mem::take(&mut r.name);
    let mut vhosts = std::mem::take(&mut r.virtual_hosts);
    let mut body = Vec::new();
    let mut route = Vec::new();
    for vh in &mut vhosts {
        scratch.clear();
        encode_virtual_host(vh, scratch, &mut route, default_route);
        wire::key(&mut body, VIRTUAL_HOSTS_FIELD, wire::LEN);
        wire::varint(&mut body, scratch.len() as u64);
        body.extend_from_slice(scratch);
    }
    // The remaining fields (name and virtual hosts now empty, so not written).
    scratch.clear();
    r.encode_raw(scratch);
    let mut bytes = Vec::with_capacity(name.len() + 8 + body.len() + scratch.len());
    wire::string(&mut bytes, 1, &name);
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(scratch);
    EncodedResource {
        bytes,
        name,
        eds: false,
    }
}

/// `VirtualHost.routes`.
const ROUTES_FIELD: u32 = 3;

/// Appends the fields of `vh` as prost's `encode_raw` writes them (tag order: name, domains,
/// routes, the rest), each route encoded once into `route` so that its size is known.
fn encode_virtual_host(
    vh: &mut VirtualHost,
    buf: &mut Vec<u8>,
    route: &mut Vec<u8>,
    default_route: Option<&rds::DefaultRoute>,
) {
    wire::string(buf, 1, &vh.name);
    for d in &vh.domains {
        wire::string_always(buf, 2, d);
    }
    if vh.routes.is_empty()
        && let Some(d) = default_route
    {
        route.clear();
        if d.write(route, &vh.name) {
            wire::key(buf, ROUTES_FIELD, wire::LEN);
            wire::varint(buf, route.len() as u64);
            buf.extend_from_slice(route);
        }
    }
    for r in &vh.routes {
        route.clear();
        r.encode_raw(route);
        wire::key(buf, ROUTES_FIELD, wire::LEN);
        wire::varint(buf, route.len() as u64);
        buf.extend_from_slice(route);
    }
    // The remaining fields (the ones above now empty, so not written again); `vh` is
    // dropped with the route configuration.
    vh.name.clear();
    vh.domains.clear();
    vh.routes.clear();
    vh.encode_raw(buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::testutil::TestEnv;

    const YAML: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a, namespace: default}
spec:
  hosts: [a.example.com, b.example.com]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}, {address: 10.0.0.2, locality: r/z}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: c, namespace: default}
spec:
  hosts: [c.example.com]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: default}
spec:
  hosts: [a.example.com]
  http:
  - match: [{uri: {prefix: /x}}]
    route: [{destination: {host: c.example.com}, weight: 30}, {destination: {host: b.example.com}, weight: 70}]
    retries: {attempts: 2, perTryTimeout: 1s}
    timeout: 5s
  - route: [{destination: {host: a.example.com}}]
"#;

    #[test]
    fn route_configurations_encode_to_the_bytes_prost_writes() {
        let env = TestEnv::new(YAML);
        let cfg = env.generate();
        let port_routes = cfg
            .routes
            .iter()
            .find(|r| r.name == "8080")
            .map_or(0, |r| r.virtual_hosts.len());
        assert!(port_routes >= 3, "route 8080 has the three services");
        let mut scratch = Vec::new();
        for r in &cfg.routes {
            let enc = encoded_route_configuration(r.clone(), &mut scratch, None);
            assert_eq!(enc.name, r.name);
            assert_eq!(enc.bytes, r.encode_to_vec(), "route {}", r.name);
        }
    }

    #[test]
    fn compact_default_routes_encode_to_the_full_routes_bytes() {
        let env = TestEnv::new(YAML);
        let scope = env.scope();
        let names: Vec<String> = env
            .generate()
            .routes
            .iter()
            .map(|r| r.name.clone())
            .collect();
        let full = rds::route_configurations(&scope, &names);
        let compact = rds::route_configurations_compact(&scope, &names);
        let d = rds::DefaultRoute::new(&scope).expect("default route pieces");
        // b and c have no VirtualService: their vhosts are the compacted ones.
        let empty = |rc: &[RouteConfiguration]| {
            rc.iter()
                .flat_map(|r| &r.virtual_hosts)
                .filter(|v| v.routes.is_empty())
                .count()
        };
        assert_eq!(empty(&full), 0);
        assert!(empty(&compact) >= 2, "{compact:#?}");
        let mut scratch = Vec::new();
        for (f, c) in full.iter().zip(compact) {
            let enc = encoded_route_configuration(c, &mut scratch, Some(&d));
            assert_eq!(enc.bytes, f.encode_to_vec(), "route {}", f.name);
        }
    }

    #[test]
    fn sort_by_name_orders_as_comparing_names() {
        let mut names = Vec::new();
        for i in 0..300u32 {
            let port = [80, 443, 8000, 8080][(i % 4) as usize];
            names.push(format!(
                "outbound|{port}||h-{}.example.com",
                i * 7919 % 1000
            ));
            names.push(format!(
                "outbound|{port}|v{}|a-very-long-shared-host-name-{i}",
                i % 3
            ));
            names.push(format!("outbound|{}", i % 5));
        }
        names.push("outbound|".to_string());
        let mut v: Vec<EncodedResource> = names
            .iter()
            .enumerate()
            .map(|(i, n)| EncodedResource {
                name: n.clone(),
                bytes: vec![(i % 2) as u8],
                eds: false,
            })
            .collect();
        let mut want = v.clone();
        want.sort_unstable_by(cmp_resources);
        sort_by_name(&mut v);
        assert_eq!(v, want);
    }

    #[test]
    fn hosts_sharing_endpoints_share_encoded_assignments() {
        let env = TestEnv::new(YAML);
        let scope = env.scope();
        let enc = generate_encoded_with(&scope, 1);
        let cfg = env.generate();
        assert_eq!(enc.endpoints.len(), cfg.endpoints.len());
        for (e, p) in enc.endpoints.iter().zip(&cfg.endpoints) {
            assert_eq!(e.name, p.cluster_name);
            assert_eq!(e.bytes, p.encode_to_vec(), "{}", e.name);
        }
        assert!(
            enc.endpoints
                .iter()
                .any(|e| e.name.ends_with("|b.example.com"))
        );
    }
}

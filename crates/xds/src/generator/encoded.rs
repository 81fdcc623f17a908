//! [`generate_encoded`]: the one generation path. Every resource a proxy receives is built
//! once (as an Envoy message, by the generators of this module's siblings), encoded once,
//! canonically ([`crate::canonical`]: map entries sorted, so equal resources are equal bytes
//! across generations, restarts and replicas), and dropped. The server pushes these bytes;
//! `xds dump`, the debug endpoints, golden files and tests decode them
//! ([`super::generate`]), so there is nothing to keep in step.
//!
//! A proxy of a large mesh has tens of thousands of clusters and load assignments. Building
//! all of them as messages, then encoding, then dropping them costs far more than the bytes
//! themselves: every message is several kilobytes of mostly-empty fields and its strings and
//! maps are separate allocations, all alive at once. Here each outbound cluster (and the load
//! assignment of an EDS cluster) is encoded as soon as it is built and dropped before the next
//! one, so the working set stays in cache; services are split into blocks that worker threads
//! take in turn, and the blocks are put back in service order, so the result does not depend
//! on the number of threads or on scheduling.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use entryway_model::registry::{ProxyScope, Service};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use prost::{Message, Name};

use super::{cds, eds, explicit, inbound, lds, rds};

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

/// The canonical encoding of `m`, a message of type `M`.
fn canonical<M: Message + Name>(m: &M) -> Vec<u8> {
    thread_local! {
        // prost's encoding, before canonicalisation: one buffer per thread, reused, so only
        // the canonical bytes (exactly sized) are a new allocation.
        static RAW: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    RAW.with_borrow_mut(|raw| {
        raw.clear();
        // Encoding into a Vec only fails for lack of capacity, and a Vec grows.
        m.encode(raw).expect("a Vec grows to fit");
        // Every generated resource is a well-formed message of a type the descriptor pool
        // knows; failing to canonicalise one would break version stability, so it is a bug,
        // loudly.
        let out = crate::canonical::canonicalize_as::<M>(raw)
            .expect("generated resources are well-formed messages of known types");
        if raw.capacity() > 1 << 20 {
            // Not kept for the next resource: one large route configuration must not pin
            // megabytes per thread.
            *raw = Vec::new();
        }
        out
    })
}

fn encoded_cluster(c: &Cluster) -> EncodedResource {
    EncodedResource {
        name: c.name.clone(),
        bytes: canonical(c),
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
    for svc in services {
        cds::service_clusters(scope, env, svc, &mut |c, inputs| {
            let eds = is_eds(&c);
            if eds {
                let cla = eds::assignment_for(scope, svc, inputs.rule, inputs.endpoints, &c);
                out.endpoints.push(encoded_cla(&cla));
            }
            out.clusters.push(encoded_cluster(&c));
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

fn encoded_cla(e: &ClusterLoadAssignment) -> EncodedResource {
    EncodedResource {
        bytes: canonical(e),
        name: e.cluster_name.clone(),
        eds: false,
    }
}

/// The canonical encoding of configuration messages (for a configuration a test or tool has
/// changed after [`super::generate`]; generation itself encodes as it builds).
pub fn encode(cfg: &super::ProxyConfig) -> EncodedConfig {
    let mut out = EncodedConfig {
        listeners: cfg
            .listeners
            .iter()
            .map(|l| EncodedResource {
                bytes: canonical(l),
                name: l.name.clone(),
                eds: false,
            })
            .collect(),
        routes: cfg
            .routes
            .iter()
            .map(|r| EncodedResource {
                bytes: canonical(r),
                name: r.name.clone(),
                eds: false,
            })
            .collect(),
        clusters: cfg.clusters.iter().map(encoded_cluster).collect(),
        endpoints: cfg.endpoints.iter().map(encoded_cla).collect(),
    };
    for v in [
        &mut out.listeners,
        &mut out.routes,
        &mut out.clusters,
        &mut out.endpoints,
    ] {
        sort_by_name(v);
    }
    out
}

/// Everything one proxy receives, encoded per resource (canonical bytes), using every
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
    endpoints.extend(fixed_cla.iter().map(encoded_cla));
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

/// Listeners and route configurations, each encoded as soon as it is built (the listener of a
/// TLS port, or the route configuration of an HTTP port, of a large mesh is megabytes of
/// messages; holding all of them at once only to encode them costs more than the bytes).
fn listeners_and_routes(scope: &ProxyScope<'_>) -> (Vec<EncodedResource>, Vec<EncodedResource>) {
    let mut listeners = Vec::new();
    let mut route_names = std::collections::BTreeSet::new();
    let mut emit = |l: envoy_types::pb::envoy::config::listener::v3::Listener| {
        route_names.extend(lds::route_names(std::slice::from_ref(&l)));
        listeners.push(EncodedResource {
            bytes: canonical(&l),
            name: l.name,
            eds: false,
        });
    };
    lds::each_listener(scope, &mut emit);
    explicit::listener(scope).into_iter().for_each(&mut emit);
    inbound::listeners(scope).into_iter().for_each(&mut emit);
    let names: Vec<String> = route_names.into_iter().collect();
    let mut routes = Vec::with_capacity(names.len());
    rds::each_route_configuration(scope, &names, &mut |r| {
        routes.push(EncodedResource {
            bytes: canonical(&r),
            name: r.name,
            eds: false,
        });
    });
    (listeners, routes)
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
  endpoints: [{address: 10.0.0.1, serviceAccount: a}, {address: 10.0.0.2, locality: r/z}]
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
kind: DestinationRule
metadata: {name: c, namespace: default}
spec:
  host: c.example.com
  subsets: [{name: v1, labels: {version: v1}}]
"#;

    #[test]
    fn equal_configurations_are_equal_bytes_whatever_the_threads() {
        let env = TestEnv::new(YAML);
        let scope = env.scope();
        let one = generate_encoded_with(&scope, 1);
        // Fresh messages have fresh maps (metadata Structs), so prost's own order would differ.
        for _ in 0..5 {
            assert_eq!(generate_encoded_with(&scope, 2), one);
        }
        assert!(one.clusters.iter().any(|c| c.eds));
        assert!(!one.endpoints.is_empty());
    }
}

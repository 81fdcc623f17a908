//! Per-proxy Envoy configuration, as istiod generates it for a sidecar (spec §4–§7).
//!
//! [`generate`] is a pure function of a [`ProxyScope`]: listeners ([`lds`]), route
//! configurations ([`rds`]), clusters ([`cds`]) and endpoints ([`eds`]). Every list comes out
//! in a deterministic order (by resource name), so dumps and golden files are stable.

pub mod cds;
pub mod eds;
pub mod encoded;
pub mod explicit;
pub mod inbound;
pub mod lds;
pub mod names;
pub mod policy;
pub mod rds;
#[cfg(test)]
pub(crate) mod testutil;
mod wire;

pub use encoded::{EncodedConfig, EncodedResource, generate_encoded, generate_encoded_with};
use entryway_model::registry::ProxyScope;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;

/// Everything one proxy receives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyConfig {
    /// LDS resources, sorted by name.
    pub listeners: Vec<Listener>,
    /// RDS resources, sorted by name.
    pub routes: Vec<RouteConfiguration>,
    /// CDS resources, sorted by name.
    pub clusters: Vec<Cluster>,
    /// EDS resources (one per EDS cluster), sorted by cluster name.
    pub endpoints: Vec<ClusterLoadAssignment>,
}

/// Generates the full configuration of the proxy whose scope is given.
pub fn generate(scope: &ProxyScope<'_>) -> ProxyConfig {
    let mut listeners = lds::listeners(scope);
    listeners.extend(explicit::listener(scope));
    listeners.extend(inbound::listeners(scope));
    listeners.sort_by(|a, b| a.name.cmp(&b.name));
    let mut routes = rds::route_configurations(scope, &lds::route_names(&listeners));
    routes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut clusters = cds::clusters(scope);
    clusters.extend(explicit::passthrough_cluster(scope));
    clusters.extend(inbound::clusters(scope));
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    let mut endpoints = eds::load_assignments(scope, &clusters);
    endpoints.sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    ProxyConfig {
        listeners,
        routes,
        clusters,
        endpoints,
    }
}

//! Per-proxy Envoy configuration, as istiod generates it for a sidecar (spec §4–§7).
//!
//! One path: [`generate_encoded`] is a pure function of a [`ProxyScope`] giving every
//! resource — listeners ([`lds`], [`explicit`], [`inbound`]), route configurations ([`rds`]),
//! clusters ([`cds`]) and endpoints ([`eds`]) — built once and encoded once, canonically
//! ([`crate::canonical`]). The server sends those bytes. [`generate`] decodes them into
//! messages for `xds dump`, the debug endpoints, golden files and tests, so what they show is
//! exactly what the server sends. Every list comes out in a deterministic order (by resource
//! name).

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

pub use encoded::{
    EncodedConfig, EncodedResource, encode, generate_encoded, generate_encoded_with,
};
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

/// The full configuration of the proxy whose scope is given, as messages: the resources of
/// [`generate_encoded`], decoded.
pub fn generate(scope: &ProxyScope<'_>) -> ProxyConfig {
    decode(&generate_encoded(scope))
}

/// The messages of an encoded configuration.
pub fn decode(cfg: &EncodedConfig) -> ProxyConfig {
    use prost::Message;
    fn all<M: Message + Default>(v: &[EncodedResource]) -> Vec<M> {
        v.iter()
            .map(|r| {
                // The bytes were encoded from a message of this type a moment ago.
                M::decode(r.bytes.as_slice()).expect("generated resources decode")
            })
            .collect()
    }
    ProxyConfig {
        listeners: all(&cfg.listeners),
        routes: all(&cfg.routes),
        clusters: all(&cfg.clusters),
        endpoints: all(&cfg.endpoints),
    }
}

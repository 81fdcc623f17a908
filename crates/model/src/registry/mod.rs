//! The service registry (spec §3): ServiceEntries and WorkloadEntries become services with
//! endpoints, exactly as Istio's `serviceentry` controller builds them; VirtualServices,
//! DestinationRules and Sidecars are indexed beside them. [`scope`] then answers "what does
//! this proxy see" (spec §4.0, §5.1).
//!
//! Everything here is a pure function of a [`ConfigSet`] and the mesh config.

pub mod alloc;
pub mod build;
pub mod host;
pub mod nametable;
pub mod peer_authn;
pub mod scope;
pub mod targets;
pub mod types;

pub use build::{Named, Registry};
pub use scope::{EgressScope, OutboundMode, OutboundPolicy, Proxy, ProxyScope};
pub use types::*;

use crate::config::Config;

/// Valid configuration objects in creation order (oldest first: Istio's tie-break).
#[derive(Debug, Clone, Default)]
pub struct ConfigSet {
    /// The objects.
    pub configs: Vec<Config>,
}

impl ConfigSet {
    /// A set in the given order, stably re-sorted by `metadata.creationTimestamp` where
    /// present (objects without one keep their position after those that have one).
    pub fn new(mut configs: Vec<Config>) -> ConfigSet {
        configs.sort_by(
            |a, b| match (&a.meta.creation_timestamp, &b.meta.creation_timestamp) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            },
        );
        ConfigSet { configs }
    }
}

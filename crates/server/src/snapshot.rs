//! One consistent view of the accepted configuration, published to every ADS stream.

use std::sync::Arc;

use entryway_model::api::MeshConfig;
use entryway_model::diag::Issue;
use entryway_model::registry::{ConfigSet, Registry};
use serde::Serialize;

/// A document that was not accepted, with where and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    /// File it came from.
    pub file: String,
    /// First line of the document.
    pub line: usize,
    /// Kind (as written).
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Errors (field path and message).
    pub errors: Vec<Issue>,
    /// True when an earlier good version of the same resource stays in force.
    pub kept_last_good: bool,
}

/// The accepted configuration at one version.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Monotonic version (1, 2, ...); 0 = nothing loaded yet.
    pub version: u64,
    /// Mesh config.
    pub mesh: Arc<MeshConfig>,
    /// The accepted objects (valid documents plus last good versions of invalid ones).
    pub configs: Arc<ConfigSet>,
    /// The registry built from `configs`.
    pub registry: Arc<Registry>,
    /// Documents rejected in the current files.
    pub rejected: Arc<Vec<Rejection>>,
}

impl Snapshot {
    /// An empty snapshot (version 0) with the given mesh config.
    pub fn empty(mesh: MeshConfig) -> Snapshot {
        let configs = ConfigSet::default();
        let registry = Registry::build(&configs, &mesh);
        Snapshot {
            version: 0,
            mesh: Arc::new(mesh),
            configs: Arc::new(configs),
            registry: Arc::new(registry),
            rejected: Arc::new(Vec::new()),
        }
    }
}

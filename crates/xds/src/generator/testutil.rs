//! Test helpers: a registry, mesh config and proxy built from YAML, kept alive together so
//! that a [`ProxyScope`] can borrow them.

use entryway_model::api::MeshConfig;
use entryway_model::check::check_text;
use entryway_model::decode::Format;
use entryway_model::registry::{ConfigSet, Proxy, ProxyScope, Registry};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;

use super::ProxyConfig;

/// Owns everything a scope borrows.
pub(crate) struct TestEnv {
    pub(crate) mesh: MeshConfig,
    pub(crate) registry: Registry,
    pub(crate) proxy: Proxy,
}

/// A registry from YAML (default namespace `default`); panics on invalid objects.
pub(crate) fn registry_from_yaml(yaml: &str, mesh: &MeshConfig) -> Registry {
    let checked = check_text(yaml, Format::Yaml, "default", mesh).expect("yaml syntax");
    let configs = checked
        .iter()
        .map(|c| {
            c.config()
                .cloned()
                .unwrap_or_else(|| panic!("invalid config: {:?}", c.report))
        })
        .collect();
    Registry::build(&ConfigSet::new(configs), mesh)
}

impl TestEnv {
    /// Default mesh config, proxy in namespace `default` at 127.0.0.1.
    pub(crate) fn new(yaml: &str) -> TestEnv {
        TestEnv::with_mesh(yaml, MeshConfig::default())
    }

    /// A custom mesh config, proxy in namespace `default`.
    pub(crate) fn with_mesh(yaml: &str, mesh: MeshConfig) -> TestEnv {
        TestEnv::with_proxy(yaml, mesh, Proxy::in_namespace("default"))
    }

    /// Everything custom.
    pub(crate) fn with_proxy(yaml: &str, mesh: MeshConfig, proxy: Proxy) -> TestEnv {
        let registry = registry_from_yaml(yaml, &mesh);
        TestEnv {
            mesh,
            registry,
            proxy,
        }
    }

    /// The proxy's scope.
    pub(crate) fn scope(&self) -> ProxyScope<'_> {
        ProxyScope::new(&self.registry, &self.mesh, &self.proxy)
    }

    /// The proxy's full configuration.
    pub(crate) fn generate(&self) -> ProxyConfig {
        super::generate(&self.scope())
    }
}

/// The cluster named `name`; panics (listing the names) when absent.
pub(crate) fn find_cluster<'a>(cfg: &'a ProxyConfig, name: &str) -> &'a Cluster {
    cfg.clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| {
            let names: Vec<&str> = cfg.clusters.iter().map(|c| c.name.as_str()).collect();
            panic!("no cluster {name} in {names:?}")
        })
}

/// The cluster named `name` as canonical proto3 JSON.
pub(crate) fn cluster_json(cfg: &ProxyConfig, name: &str) -> serde_json::Value {
    crate::json::to_json_value(find_cluster(cfg, name)).expect("cluster json")
}

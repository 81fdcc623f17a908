//! Test helpers for the listener and route generator tests: a registry and proxy scope from
//! YAML, generation shortcuts and JSON lookups.

use entryway_model::api::MeshConfig;
use entryway_model::check::check_text;
use entryway_model::decode::Format;
use entryway_model::registry::{ConfigSet, Proxy, ProxyScope, Registry};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use serde_json::Value;

/// Builds a registry from YAML text (every object must be valid).
pub(crate) fn registry(yaml: &str, mesh: &MeshConfig) -> Registry {
    let checked = check_text(yaml, Format::Yaml, "default", mesh).expect("yaml");
    let configs = checked
        .iter()
        .map(|c| {
            c.config()
                .cloned()
                .unwrap_or_else(|| panic!("invalid: {:?}", c.report))
        })
        .collect();
    Registry::build(&ConfigSet::new(configs), mesh)
}

/// Runs `f` on the scope of `proxy` for the configuration `yaml`.
pub(crate) fn with_scope<R>(
    yaml: &str,
    mesh: &MeshConfig,
    proxy: &Proxy,
    f: impl FnOnce(&ProxyScope<'_>) -> R,
) -> R {
    let reg = registry(yaml, mesh);
    let scope = ProxyScope::new(&reg, mesh, proxy);
    f(&scope)
}

/// Listeners of a proxy in `default` with the default mesh config.
pub(crate) fn lds(yaml: &str) -> Vec<Listener> {
    with_scope(
        yaml,
        &MeshConfig::default(),
        &Proxy::in_namespace("default"),
        super::super::lds::listeners,
    )
}

/// Route configurations `names` of a proxy in `default` with the default mesh config.
pub(crate) fn rds(yaml: &str, names: &[&str]) -> Vec<RouteConfiguration> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    with_scope(
        yaml,
        &MeshConfig::default(),
        &Proxy::in_namespace("default"),
        |s| super::route_configurations(s, &names),
    )
}

/// The listener named `name` as JSON.
pub(crate) fn listener_json(listeners: &[Listener], name: &str) -> Value {
    let l = listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no listener {name}; have {:?}",
                listeners.iter().map(|l| &l.name).collect::<Vec<_>>()
            )
        });
    crate::json::to_json_value(l).expect("json")
}

/// A route configuration as JSON.
pub(crate) fn route_json(rc: &RouteConfiguration) -> Value {
    crate::json::to_json_value(rc).expect("json")
}

/// The virtual host named `name` of a route configuration (JSON).
pub(crate) fn vhost<'v>(rc: &'v Value, name: &str) -> &'v Value {
    rc["virtual_hosts"]
        .as_array()
        .and_then(|v| v.iter().find(|vh| vh["name"] == name))
        .unwrap_or_else(|| panic!("no vhost {name} in {rc:#}"))
}

/// Names of the virtual hosts of a route configuration (JSON).
pub(crate) fn vhost_names(rc: &Value) -> Vec<String> {
    rc["virtual_hosts"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|vh| vh["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A ServiceEntry in `default` (YAML document).
pub(crate) fn se(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}\n"
    )
}

/// A VirtualService in `default` (YAML document).
pub(crate) fn vs(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}\n"
    )
}

/// A DestinationRule in `default` (YAML document).
pub(crate) fn dr(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}\n"
    )
}

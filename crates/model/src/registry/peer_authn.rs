//! Which mutual-TLS mode a workload's inbound side accepts: PeerAuthentications composed as
//! Istio's `ComposePeerAuthentication` does (`pilot/pkg/security/authn`).
//!
//! - Mesh policy: no selector, in the root namespace (`meshConfig.rootNamespace`).
//! - Namespace policy: no selector, in the workload's namespace.
//! - Workload policy: a selector matching the workload's labels, in its namespace (a selector
//!   policy in the root namespace is ignored here, as in Istio).
//!
//! Within a scope the oldest policy wins. Starting from PERMISSIVE, mesh, namespace and
//! workload apply in turn where they set a mode other than UNSET; port-level modes exist only
//! on the workload policy, an UNSET port taking the workload-level result.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::{MeshConfig, MtlsMode, PeerAuthentication};
use crate::registry::{Named, Registry};

/// The effective policy of one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPolicy {
    /// The workload-level mode (never UNSET).
    pub mode: MtlsMode,
    /// Per workload port (never UNSET).
    pub ports: BTreeMap<u32, MtlsMode>,
}

impl PeerPolicy {
    /// The mode of `port` (its own, else the workload's).
    pub fn mode_for_port(&self, port: u32) -> MtlsMode {
        self.ports.get(&port).copied().unwrap_or(self.mode)
    }
}

fn set(mode: &mut MtlsMode, policy: Option<&Arc<Named<PeerAuthentication>>>) {
    if let Some(m) = policy.and_then(|p| p.spec.mtls.as_ref()).map(|m| m.mode)
        && m != MtlsMode::Unset
    {
        *mode = m;
    }
}

/// The policy of a workload in `namespace` with `labels`.
pub fn workload_policy(
    registry: &Registry,
    mesh: &MeshConfig,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> PeerPolicy {
    let root = mesh.root_namespace.as_str();
    // Policies are in creation order: the first match of a scope is the oldest.
    let all = &registry.peer_authentications;
    let mesh_policy = all
        .iter()
        .find(|p| p.namespace == root && !p.spec.has_selector());
    let ns_policy = all
        .iter()
        .find(|p| p.namespace == namespace && namespace != root && !p.spec.has_selector());
    let workload = all.iter().find(|p| {
        p.namespace == namespace
            && namespace != root
            && p.spec.has_selector()
            && p.spec
                .selector
                .as_ref()
                .is_some_and(|s| s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
    });
    let mut mode = MtlsMode::Permissive;
    set(&mut mode, mesh_policy);
    set(&mut mode, ns_policy);
    set(&mut mode, workload);
    let ports = workload
        .and_then(|w| w.spec.port_level_mtls.as_ref())
        .map(|ports| {
            ports
                .iter()
                .map(|(port, m)| {
                    let m = if m.mode == MtlsMode::Unset {
                        mode
                    } else {
                        m.mode
                    };
                    (*port, m)
                })
                .collect()
        })
        .unwrap_or_default();
    PeerPolicy { mode, ports }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::check::check_text;
    use crate::decode::Format;
    use crate::registry::ConfigSet;

    fn registry(yaml: &str) -> Registry {
        let configs = check_text(yaml, Format::Yaml, "default", &MeshConfig::default())
            .unwrap()
            .into_iter()
            .map(|c| {
                assert!(c.report.is_valid(), "{:?}", c.report);
                c.config().cloned().unwrap()
            })
            .collect();
        Registry::build(&ConfigSet::new(configs), &MeshConfig::default())
    }

    const PA: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n";

    #[test]
    fn composes_mesh_namespace_workload_and_ports_as_istio() {
        let labels = BTreeMap::from([("app".to_string(), "b".to_string())]);
        let mesh = MeshConfig::default();
        // Nothing: PERMISSIVE.
        let r = registry("");
        assert_eq!(
            workload_policy(&r, &mesh, "shop", &labels).mode,
            MtlsMode::Permissive
        );
        // Mesh STRICT, namespace UNSET inherits, workload DISABLE on one port.
        let r = registry(&format!(
            "{PA}metadata: {{name: m, namespace: istio-system}}\nspec: {{mtls: {{mode: STRICT}}}}\n---\n\
             {PA}metadata: {{name: n, namespace: shop}}\nspec: {{mtls: {{mode: UNSET}}}}\n---\n\
             {PA}metadata: {{name: w, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: b}}}}\n  portLevelMtls:\n    8080: {{mode: DISABLE}}\n    9090: {{mode: UNSET}}\n"
        ));
        let p = workload_policy(&r, &mesh, "shop", &labels);
        assert_eq!(p.mode, MtlsMode::Strict);
        assert_eq!(p.mode_for_port(8080), MtlsMode::Disable);
        assert_eq!(p.mode_for_port(9090), MtlsMode::Strict);
        assert_eq!(p.mode_for_port(80), MtlsMode::Strict);
        // Another workload of the namespace: the namespace/mesh result, no port levels.
        let other = BTreeMap::from([("app".to_string(), "c".to_string())]);
        assert_eq!(
            workload_policy(&r, &mesh, "shop", &other),
            PeerPolicy {
                mode: MtlsMode::Strict,
                ports: BTreeMap::new()
            }
        );
        // Namespace PERMISSIVE overrides mesh STRICT; the oldest namespace policy wins.
        let r = registry(&format!(
            "{PA}metadata: {{name: m, namespace: istio-system}}\nspec: {{mtls: {{mode: STRICT}}}}\n---\n\
             {PA}metadata: {{name: n1, namespace: shop, creationTimestamp: '2024-01-01T00:00:00Z'}}\nspec: {{mtls: {{mode: PERMISSIVE}}}}\n---\n\
             {PA}metadata: {{name: n0, namespace: shop, creationTimestamp: '2023-01-01T00:00:00Z'}}\nspec: {{mtls: {{mode: DISABLE}}}}\n"
        ));
        assert_eq!(
            workload_policy(&r, &mesh, "shop", &labels).mode,
            MtlsMode::Disable
        );
        // A selector policy in the root namespace is ignored.
        let r = registry(&format!(
            "{PA}metadata: {{name: w, namespace: istio-system}}\nspec:\n  selector: {{matchLabels: {{app: b}}}}\n  mtls: {{mode: STRICT}}\n"
        ));
        assert_eq!(
            workload_policy(&r, &mesh, "shop", &labels).mode,
            MtlsMode::Permissive
        );
    }
}

//! Which services a proxy is a workload of (Istio's `ServiceTargets` for ServiceEntry
//! workloads): the endpoints whose address is one of the proxy's IPs, in the proxy's
//! namespace. The inbound side of the proxy serves those services' ports.
//!
//! Two Entryway rules on top of Istio's address match:
//! - loopback addresses never make a proxy a target (an endpoint at 127.0.0.1 is a local
//!   upstream of the machine, not the proxy's own workload);
//! - a proxy whose service account is known (from its certificate on the secure port, or its
//!   metadata) is a target only of endpoints with no service account or the same one, so a
//!   machine cannot receive another identity's traffic by claiming its address.

use std::net::IpAddr;
use std::sync::Arc;

use crate::registry::{Endpoint, EndpointAddress, Proxy, Registry, Service, ServicePort};

/// One service port the proxy's workload serves.
#[derive(Debug, Clone)]
pub struct ServiceTarget<'a> {
    /// The service.
    pub service: &'a Arc<Service>,
    /// Its port.
    pub port: &'a ServicePort,
    /// The workload port traffic arrives at (the endpoint's port: WorkloadEntry `ports`, else
    /// `targetPort`, else the service port).
    pub target_port: u32,
    /// The matching endpoint (labels, service account).
    pub endpoint: &'a Arc<Endpoint>,
}

/// Whether an IP can identify a proxy's own workload.
fn usable(ip: &IpAddr) -> bool {
    !ip.is_loopback() && !ip.is_unspecified()
}

/// The service account part of an Istio SPIFFE identity (`.../sa/<sa>`).
fn account_of(spiffe: &str) -> Option<&str> {
    spiffe.rsplit_once("/sa/").map(|(_, sa)| sa)
}

/// The proxy's targets, one per (service, port), services in registry (creation) order.
pub fn service_targets<'a>(registry: &'a Registry, proxy: &Proxy) -> Vec<ServiceTarget<'a>> {
    let ips: Vec<IpAddr> = proxy.ips.iter().copied().filter(usable).collect();
    if ips.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for service in registry
        .services
        .iter()
        .filter(|s| s.namespace == proxy.namespace)
    {
        let endpoints = registry.host_endpoints(&service.namespace, &service.hostname);
        for port in &service.ports {
            let hit = endpoints.iter().find(|e| {
                e.service_port_name == port.name
                    && matches!(&e.address, EndpointAddress::Ip(ip) if ips.contains(ip))
                    && match (&proxy.service_account, account_of(&e.service_account)) {
                        (Some(mine), Some(theirs)) => mine == theirs,
                        _ => true,
                    }
            });
            if let Some(endpoint) = hit {
                out.push(ServiceTarget {
                    service,
                    port,
                    target_port: endpoint.port,
                    endpoint,
                });
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::MeshConfig;
    use crate::check::check_text;
    use crate::decode::Format;
    use crate::registry::ConfigSet;

    const YAML: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: b, namespace: shop}
spec:
  hosts: [b.shop.mesh]
  location: MESH_INTERNAL
  ports:
  - {number: 80, name: http, protocol: HTTP, targetPort: 8080}
  - {number: 9000, name: tcp, protocol: TCP}
  resolution: STATIC
  workloadSelector: {labels: {app: b}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-b, namespace: shop}
spec: {address: 10.0.0.2, labels: {app: b}, serviceAccount: b-sa, ports: {tcp: 9001}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: local, namespace: shop}
spec:
  hosts: [local.test]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"#;

    fn registry() -> Registry {
        let configs = check_text(YAML, Format::Yaml, "default", &MeshConfig::default())
            .unwrap()
            .into_iter()
            .filter_map(|c| c.config().cloned())
            .collect();
        Registry::build(&ConfigSet::new(configs), &MeshConfig::default())
    }

    fn proxy(ns: &str, ip: &str, sa: Option<&str>) -> Proxy {
        Proxy {
            namespace: ns.into(),
            ips: vec![ip.parse().unwrap()],
            service_account: sa.map(str::to_string),
            ..Proxy::default()
        }
    }

    fn targets(p: &Proxy) -> Vec<(String, u32, u32)> {
        let r = registry();
        service_targets(&r, p)
            .iter()
            .map(|t| (t.service.hostname.clone(), t.port.number, t.target_port))
            .collect()
    }

    #[test]
    fn targets_by_address_namespace_and_service_account() {
        let want = vec![
            ("b.shop.mesh".to_string(), 80, 8080),
            ("b.shop.mesh".to_string(), 9000, 9001),
        ];
        assert_eq!(targets(&proxy("shop", "10.0.0.2", Some("b-sa"))), want);
        assert_eq!(
            targets(&proxy("shop", "10.0.0.2", None)),
            want,
            "unknown account"
        );
        assert!(targets(&proxy("shop", "10.0.0.2", Some("other"))).is_empty());
        assert!(targets(&proxy("bank", "10.0.0.2", Some("b-sa"))).is_empty());
        assert!(targets(&proxy("shop", "10.0.0.3", Some("b-sa"))).is_empty());
        assert!(
            targets(&proxy("shop", "127.0.0.1", None)).is_empty(),
            "loopback"
        );
    }
}

//! The DNS name table of one proxy (spec §8): which host names the proxy's agent answers
//! itself, and with which addresses. Istio builds it per proxy in istiod
//! (`pkg/dns/server`) and pushes it over NDS; the agent's DNS proxy answers from it.
//!
//! Rules (Istio's):
//! - Every service the proxy's Sidecar scope imports (all egress listeners) is considered.
//! - A service address that is an IP is used; a CIDR address skips the service.
//! - Without an address, the auto-allocated addresses are used when the proxy captures DNS
//!   (filtered to the proxy's IP families, as [`ProxyScope::service_addresses`] does).
//! - Otherwise a NONE-resolution service ("headless") answers with its endpoint IPs (those of
//!   its first port); any other address-less service gets no entry, so its name is left to
//!   the upstream resolvers.
//! - The key is the host name as written, wildcards included (`*.foo.com`); ServiceEntry
//!   entries carry `registry: "External"` and no short name or namespace.
//! - The same host from several services (a multi-address entry, or several entries of the
//!   namespace the Sidecar scope picked for that host) appends the IPs in registry order.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::registry::scope::ProxyScope;
use crate::registry::types::{EndpointAddress, Resolution, Service, ServiceAddress};

/// Istio's registry name for ServiceEntry services.
pub const REGISTRY_EXTERNAL: &str = "External";
/// Istio's registry name for Kubernetes services (Entryway has none; kept for the agent's
/// lookup rules, which differ for them).
pub const REGISTRY_KUBERNETES: &str = "Kubernetes";

/// One host's entry (Istio's `NameTable.NameInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameInfo {
    /// IP literals, in order.
    pub ips: Vec<String>,
    /// `External` for ServiceEntries.
    pub registry: String,
    /// Kubernetes service name (empty for ServiceEntries).
    pub shortname: String,
    /// Kubernetes namespace (empty for ServiceEntries).
    pub namespace: String,
    /// Extra names (deprecated in Istio; always empty here).
    pub alt_hosts: Vec<String>,
}

/// Host name → entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameTable {
    /// The entries, by host name (as written in the ServiceEntry, no trailing dot).
    pub table: BTreeMap<String, NameInfo>,
}

/// The addresses `svc` is known by on this proxy, or `None` when it gets no entry.
fn addresses(scope: &ProxyScope<'_>, svc: &Service) -> Option<Vec<String>> {
    match svc.address {
        ServiceAddress::Cidr(_) => return None,
        ServiceAddress::Ip(ip) => return Some(vec![ip.to_string()]),
        ServiceAddress::Unspecified => {}
    }
    let assigned: Vec<String> = scope
        .service_addresses(svc)
        .into_iter()
        .filter(|a| a.parse::<IpAddr>().is_ok_and(|ip| !ip.is_unspecified()))
        .collect();
    if !assigned.is_empty() {
        return Some(assigned);
    }
    if svc.resolution != Resolution::Passthrough {
        return None;
    }
    let first_port = svc.ports.first()?;
    let ips: Vec<String> = scope
        .endpoints(svc, &first_port.name)
        .into_iter()
        .filter_map(|ep| match &ep.address {
            EndpointAddress::Ip(ip) => Some(ip.to_string()),
            _ => None,
        })
        .collect();
    (!ips.is_empty()).then_some(ips)
}

/// Builds the name table of the proxy whose scope is `scope`.
pub fn build(scope: &ProxyScope<'_>) -> NameTable {
    // The namespace whose services own each host name for this proxy (the Sidecar scope's
    // de-duplication: own namespace first, else the oldest).
    let owner: BTreeMap<&str, &str> = scope
        .services
        .iter()
        .map(|s| (s.hostname.as_str(), s.namespace.as_str()))
        .collect();
    let mut seen: std::collections::HashSet<*const Service> = std::collections::HashSet::new();
    let mut out = NameTable::default();
    for svc in scope.egress.iter().flat_map(|e| e.services.iter()) {
        let ptr: *const Service = std::sync::Arc::as_ptr(svc);
        if !seen.insert(ptr) {
            continue;
        }
        if owner.get(svc.hostname.as_str()) != Some(&svc.namespace.as_str()) {
            continue;
        }
        let Some(ips) = addresses(scope, svc) else {
            continue;
        };
        match out.table.get_mut(&svc.hostname) {
            Some(info) => {
                for ip in ips {
                    if !info.ips.contains(&ip) {
                        info.ips.push(ip);
                    }
                }
            }
            None => {
                out.table.insert(
                    svc.hostname.clone(),
                    NameInfo {
                        ips,
                        registry: REGISTRY_EXTERNAL.to_string(),
                        ..NameInfo::default()
                    },
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MeshConfig;
    use crate::check::check_text;
    use crate::decode::Format;
    use crate::registry::{ConfigSet, Proxy, Registry};

    fn registry(yaml: &str, mesh: &MeshConfig) -> Registry {
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

    fn table(yaml: &str, proxy: &Proxy) -> BTreeMap<String, Vec<String>> {
        let mesh = MeshConfig::default();
        let r = registry(yaml, &mesh);
        let scope = ProxyScope::new(&r, &mesh, proxy);
        let t = build(&scope);
        for info in t.table.values() {
            assert_eq!(info.registry, "External");
            assert!(info.shortname.is_empty() && info.namespace.is_empty());
        }
        t.table.into_iter().map(|(k, v)| (k, v.ips)).collect()
    }

    fn capture(ns: &str) -> Proxy {
        Proxy {
            dns_capture: true,
            ..Proxy::in_namespace(ns)
        }
    }

    const CASES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vip, namespace: default}
spec:
  hosts: [mysql.foo.bar]
  addresses: [10.0.0.5, 10.0.0.6]
  ports: [{number: 3306, name: tcp, protocol: TCP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild, namespace: default}
spec:
  hosts: ["*.wild.com"]
  addresses: [10.1.1.1]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cidr, namespace: default}
spec:
  hosts: [cidr.example.com]
  addresses: [172.217.0.0/16]
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: none-no-ep, namespace: default}
spec:
  hosts: [none.example.com]
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: headless, namespace: default}
spec:
  hosts: [foo.bar.com]
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  resolution: NONE
  workloadSelector: {labels: {wl: headless-foobar}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: pod1, namespace: default, labels: {wl: headless-foobar}}
spec: {address: 1.2.3.4}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: pod2, namespace: default, labels: {wl: headless-foobar}}
spec: {address: 9.6.7.8}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: private, namespace: other}
spec:
  hosts: [private.example.com]
  addresses: [10.9.9.9]
  exportTo: ["."]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.9.9.10}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static-vip, namespace: default}
spec:
  hosts: [static.example.com]
  addresses: ["192.168.1.1/32"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.2.2.2}]
"#;

    #[test]
    fn without_dns_capture_only_explicit_addresses_and_headless() {
        let t = table(CASES, &Proxy::in_namespace("default"));
        let expect: BTreeMap<String, Vec<String>> = [
            // Istio "service entry with multiple VIPs": both addresses, in order.
            ("mysql.foo.bar", vec!["10.0.0.5", "10.0.0.6"]),
            // Wildcard hosts keep their key.
            ("*.wild.com", vec!["10.1.1.1"]),
            // Istio "service entry with resolution = NONE": the selected workloads' IPs.
            ("foo.bar.com", vec!["1.2.3.4", "9.6.7.8"]),
            // A /32 is a plain IP.
            ("static.example.com", vec!["192.168.1.1"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        // Absent: api.example.com (DNS, no address, no capture → upstream DNS),
        // cidr.example.com (Istio "cidr service"), none.example.com (NONE, no endpoints),
        // private.example.com (exported to `other` only).
        assert_eq!(t, expect);
    }

    #[test]
    fn with_dns_capture_auto_allocated_addresses_are_used() {
        let t = table(CASES, &capture("default"));
        let api = t.get("api.example.com").expect("auto-allocated entry");
        assert_eq!(api.len(), 1, "IPv4-only proxy gets only the v4 address");
        assert!(api[0].starts_with("240.240."), "{api:?}");
        // NONE entries are not allocated: unchanged.
        assert!(!t.contains_key("none.example.com"));
        assert_eq!(t["mysql.foo.bar"], vec!["10.0.0.5", "10.0.0.6"]);

        let mut dual = capture("default");
        dual.ips.push("2001:db8::1".parse().expect("ip"));
        let t = table(CASES, &dual);
        let api = &t["api.example.com"];
        assert_eq!(api.len(), 2, "dual-stack proxy: v4 and v6: {api:?}");
        assert!(api[1].starts_with("2001:2::"), "{api:?}");
    }

    #[test]
    fn visibility_and_sidecar_scope_apply() {
        let t = table(CASES, &Proxy::in_namespace("other"));
        assert_eq!(t["private.example.com"], vec!["10.9.9.9"]);
        let scoped = format!(
            "{CASES}\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: default}}\nspec:\n  egress:\n  - hosts: [\"./mysql.foo.bar\"]\n"
        );
        let t = table(&scoped, &Proxy::in_namespace("default"));
        assert_eq!(t.keys().collect::<Vec<_>>(), vec!["mysql.foo.bar"]);
    }

    #[test]
    fn same_host_in_two_namespaces_uses_the_proxy_namespace() {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a, namespace: a}
spec:
  hosts: [shared.example.com]
  addresses: [10.0.0.1]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.1.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: b, namespace: b}
spec:
  hosts: [shared.example.com]
  addresses: [10.0.0.2]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.1.2}]
"#;
        assert_eq!(
            table(yaml, &Proxy::in_namespace("b"))["shared.example.com"],
            vec!["10.0.0.2"]
        );
        assert_eq!(
            table(yaml, &Proxy::in_namespace("a"))["shared.example.com"],
            vec!["10.0.0.1"]
        );
    }
}

//! Building the registry from a [`ConfigSet`] (spec §3.1–§3.5).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use crate::api::{self, MeshConfig};
use crate::config::Spec;
use crate::registry::ConfigSet;
use crate::registry::alloc;
use crate::registry::types::*;

/// A configuration object other than a ServiceEntry, with the metadata the scope needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Named<T> {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Position in creation order (older first).
    pub order: usize,
    /// Metadata labels.
    pub labels: BTreeMap<String, String>,
    /// The spec.
    pub spec: T,
}

/// Endpoints of a namespace's hosts.
pub type EndpointsByHost = HashMap<String, Vec<Arc<Endpoint>>, foldhash::fast::FixedState>;
/// [`EndpointsByHost`] per namespace.
pub type EndpointsByNamespace = HashMap<String, EndpointsByHost, foldhash::fast::FixedState>;

/// The registry: every service and endpoint, plus the routing objects.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Every (host, address) service, host-major per entry, entries in creation order.
    pub services: Vec<Arc<Service>>,
    /// Endpoints per namespace, then host, merged over every entry defining that host (see
    /// [`Registry::host_endpoints`]).
    pub endpoints: EndpointsByNamespace,
    /// VirtualServices in creation order.
    pub virtual_services: Vec<Arc<Named<api::VirtualService>>>,
    /// DestinationRules in creation order.
    pub destination_rules: Vec<Arc<Named<api::DestinationRule>>>,
    /// Sidecars in creation order.
    pub sidecars: Vec<Arc<Named<api::Sidecar>>>,
    /// WorkloadEntries in creation order.
    pub workload_entries: Vec<Arc<Named<api::WorkloadEntry>>>,
    /// PeerAuthentications in creation order.
    pub peer_authentications: Vec<Arc<Named<api::PeerAuthentication>>>,
}

/// Resolution of an entry in the registry's terms.
pub fn resolution_of(r: api::service_entry::Resolution) -> Resolution {
    use api::service_entry::Resolution as R;
    match r {
        R::None => Resolution::Passthrough,
        R::Static => Resolution::ClientSideLb,
        R::Dns => Resolution::DnsLb,
        R::DnsRoundRobin => Resolution::DnsRoundRobinLb,
        R::DynamicDns => Resolution::DynamicDns,
    }
}

/// The `exportTo` list as a visibility, `.` resolved to `namespace`, empty → `default`.
pub fn visibility(export_to: &[String], default: &[String], namespace: &str) -> Visibility {
    let list = if export_to.is_empty() {
        default
    } else {
        export_to
    };
    if list.iter().any(|e| e == "*") {
        return Visibility::Public;
    }
    if list.iter().any(|e| e == "~") {
        return Visibility::None;
    }
    let mut ns: Vec<String> = list
        .iter()
        .map(|e| {
            if e == "." {
                namespace.to_string()
            } else {
                e.clone()
            }
        })
        .collect();
    ns.sort();
    ns.dedup();
    Visibility::Namespaces(ns)
}

fn parse_service_address(a: &str) -> Option<ServiceAddress> {
    if a.contains('/') {
        let net: ipnet::IpNet = a.parse().ok()?;
        if net.prefix_len() == net.max_prefix_len() {
            Some(ServiceAddress::Ip(net.addr()))
        } else {
            Some(ServiceAddress::Cidr(net))
        }
    } else {
        a.parse::<IpAddr>().ok().map(ServiceAddress::Ip)
    }
}

fn qualifies_for_allocation(se: &api::ServiceEntry, labels: &BTreeMap<String, String>) -> bool {
    se.resolution != api::service_entry::Resolution::None
        && se.addresses.is_empty()
        && labels.get(alloc::OPT_OUT_LABEL).map(String::as_str) != Some("false")
}

fn allocatable_host(se: &api::ServiceEntry, host: &str) -> bool {
    !host.starts_with('*') || se.resolution == api::service_entry::Resolution::DynamicDns
}

struct EndpointSource<'a> {
    address: &'a str,
    ports: &'a BTreeMap<String, u32>,
    labels: BTreeMap<String, String>,
    locality: &'a str,
    weight: u32,
    network: &'a str,
    service_account: &'a str,
    workload_name: String,
}

fn endpoint_for(
    src: &EndpointSource<'_>,
    port: &ServicePort,
    namespace: &str,
    trust_domain: &str,
) -> Endpoint {
    let (address, port_number) = if let Some(path) = src.address.strip_prefix("unix://") {
        (EndpointAddress::Unix(path.to_string()), 0)
    } else {
        let address = match src.address.parse::<IpAddr>() {
            Ok(ip) => EndpointAddress::Ip(ip),
            Err(_) => EndpointAddress::Hostname(src.address.to_string()),
        };
        let p = src
            .ports
            .get(&port.name)
            .copied()
            .filter(|p| *p != 0)
            .unwrap_or(if port.target_port != 0 {
                port.target_port
            } else {
                port.number
            });
        (address, p)
    };
    let locality = Locality::parse(src.locality);
    let mut labels = src.labels.clone();
    if !locality.region.is_empty() {
        labels.insert(
            "topology.kubernetes.io/region".into(),
            locality.region.clone(),
        );
    }
    if !locality.zone.is_empty() {
        labels.insert("topology.kubernetes.io/zone".into(), locality.zone.clone());
    }
    if !locality.sub_zone.is_empty() {
        labels.insert(
            "topology.istio.io/subzone".into(),
            locality.sub_zone.clone(),
        );
    }
    if !src.network.is_empty() {
        labels.insert("topology.istio.io/network".into(), src.network.to_string());
    }
    let tls_mode = match src.labels.get("security.istio.io/tlsMode") {
        Some(m) if m == "istio" => TlsMode::Istio,
        Some(_) => TlsMode::Disabled,
        None if !src.service_account.is_empty() => TlsMode::Istio,
        None => TlsMode::Disabled,
    };
    let service_account = if src.service_account.is_empty() {
        String::new()
    } else {
        format!(
            "spiffe://{trust_domain}/ns/{namespace}/sa/{}",
            src.service_account
        )
    };
    let (canonical_name, canonical_revision) = canonical_from_labels(&labels);
    Endpoint {
        address,
        port: port_number,
        service_port_name: port.name.clone(),
        canonical_name,
        canonical_revision,
        labels,
        locality,
        weight: src.weight.max(1),
        network: src.network.to_string(),
        service_account,
        tls_mode,
        workload_name: src.workload_name.clone(),
        namespace: namespace.to_string(),
    }
}

fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl Registry {
    /// Builds the registry from valid configuration objects.
    pub fn build(set: &ConfigSet, mesh: &MeshConfig) -> Registry {
        let mut reg = Registry::default();
        let mut entries: Vec<(usize, &crate::config::Config, &api::ServiceEntry)> = Vec::new();
        for (order, c) in set.configs.iter().enumerate() {
            fn named<T>(c: &crate::config::Config, order: usize, spec: T) -> Named<T> {
                Named {
                    namespace: c.meta.namespace.clone(),
                    name: c.meta.name.clone(),
                    order,
                    labels: c.meta.labels.clone(),
                    spec,
                }
            }
            match &c.spec {
                Spec::ServiceEntry(se) => entries.push((order, c, se)),
                Spec::WorkloadEntry(we) => {
                    reg.workload_entries
                        .push(Arc::new(named(c, order, (**we).clone())))
                }
                Spec::VirtualService(vs) => {
                    reg.virtual_services
                        .push(Arc::new(named(c, order, (**vs).clone())))
                }
                Spec::DestinationRule(dr) => {
                    reg.destination_rules
                        .push(Arc::new(named(c, order, (**dr).clone())))
                }
                Spec::Sidecar(sc) => reg.sidecars.push(Arc::new(named(c, order, (**sc).clone()))),
                Spec::PeerAuthentication(pa) => {
                    reg.peer_authentications
                        .push(Arc::new(named(c, order, (**pa).clone())))
                }
            }
        }

        // §3.5: addresses for qualifying hosts.
        let allocated = alloc::allocate(entries.iter().flat_map(|(_, c, se)| {
            let ok = qualifies_for_allocation(se, &c.meta.labels);
            se.hosts
                .iter()
                .filter(move |h| ok && allocatable_host(se, h))
                .map(move |h| (c.meta.namespace.as_str(), h.as_str()))
        }));

        // WorkloadEntries per namespace, sorted by name (Istio sorts selected workloads).
        let mut workloads_by_ns: HashMap<&str, Vec<&Arc<Named<api::WorkloadEntry>>>> =
            HashMap::new();
        for we in &reg.workload_entries {
            workloads_by_ns
                .entry(we.namespace.as_str())
                .or_default()
                .push(we);
        }
        for v in workloads_by_ns.values_mut() {
            v.sort_by(|a, b| a.name.cmp(&b.name));
        }

        let mut endpoints = EndpointsByNamespace::default();
        let mut rr_seen: HashMap<(String, String), usize> = HashMap::new();
        for (order, c, se) in &entries {
            let ns = c.meta.namespace.as_str();
            let resolution = resolution_of(se.resolution);
            let ports: Vec<ServicePort> = se
                .ports
                .iter()
                .map(|p| ServicePort {
                    name: p.name.clone(),
                    number: p.number,
                    protocol: p.parsed_protocol(),
                    target_port: p.target_port,
                })
                .collect();
            let export_to = visibility(&se.export_to, &mesh.default_service_export_to, ns);
            let selector = se.workload_selector.as_ref().map(|s| s.labels.clone());
            let addresses: Vec<ServiceAddress> = se
                .addresses
                .iter()
                .filter_map(|a| parse_service_address(a))
                .collect();
            // The endpoints of one host of this entry (built as Istio does per host).
            let endpoints_of = |host: &String| -> Vec<Endpoint> {
                let mut eps: Vec<Endpoint> = Vec::new();
                if let Some(sel) = &selector {
                    let is_dns =
                        matches!(resolution, Resolution::DnsLb | Resolution::DnsRoundRobinLb);
                    for we in workloads_by_ns.get(ns).map(Vec::as_slice).unwrap_or(&[]) {
                        let mut labels = we.spec.labels.clone();
                        labels.extend(we.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                        if !selector_matches(sel, &labels) {
                            continue;
                        }
                        let is_ip = we.spec.address.parse::<IpAddr>().is_ok();
                        if !is_ip && !is_dns {
                            continue;
                        }
                        let src = EndpointSource {
                            address: &we.spec.address,
                            ports: &we.spec.ports,
                            labels,
                            locality: &we.spec.locality,
                            weight: we.spec.weight,
                            network: &we.spec.network,
                            service_account: &we.spec.service_account,
                            workload_name: we.name.clone(),
                        };
                        for p in &ports {
                            eps.push(endpoint_for(&src, p, ns, &mesh.trust_domain));
                        }
                    }
                } else if resolution != Resolution::Passthrough {
                    if se.endpoints().is_empty() {
                        if matches!(resolution, Resolution::DnsLb | Resolution::DnsRoundRobinLb) {
                            for p in &ports {
                                eps.push(Endpoint {
                                    address: EndpointAddress::Hostname(host.clone()),
                                    port: if p.target_port != 0 {
                                        p.target_port
                                    } else {
                                        p.number
                                    },
                                    service_port_name: p.name.clone(),
                                    labels: BTreeMap::new(),
                                    locality: Locality::default(),
                                    weight: 1,
                                    network: String::new(),
                                    service_account: String::new(),
                                    tls_mode: TlsMode::Disabled,
                                    workload_name: c.meta.name.clone(),
                                    namespace: ns.to_string(),
                                    canonical_name: None,
                                    canonical_revision: String::new(),
                                });
                            }
                        }
                    } else {
                        for (i, e) in se.endpoints().iter().enumerate() {
                            let src = EndpointSource {
                                address: &e.address,
                                ports: &e.ports,
                                labels: e.labels.clone(),
                                locality: &e.locality,
                                weight: e.weight,
                                network: &e.network,
                                service_account: &e.service_account,
                                workload_name: format!("{}-{i}", c.meta.name),
                            };
                            for p in &ports {
                                eps.push(endpoint_for(&src, p, ns, &mesh.trust_domain));
                            }
                        }
                    }
                }
                eps
            };
            let host_dependent = selector.is_none()
                && se.endpoints().is_empty()
                && matches!(resolution, Resolution::DnsLb | Resolution::DnsRoundRobinLb);
            let shared: Option<Vec<Arc<Endpoint>>> = match se.hosts.first() {
                Some(first) if !host_dependent => {
                    Some(endpoints_of(first).into_iter().map(Arc::new).collect())
                }
                _ => None,
            };
            for host in &se.hosts {
                let base = Service {
                    hostname: host.clone(),
                    namespace: ns.to_string(),
                    se_name: c.meta.name.clone(),
                    creation_order: *order,
                    address: ServiceAddress::Unspecified,
                    auto_addresses: allocated
                        .get(&(ns.to_string(), host.clone()))
                        .filter(|_| se.addresses.is_empty())
                        .cloned()
                        .unwrap_or_default(),
                    ports: ports.clone(),
                    resolution,
                    mesh_external: se.location == api::service_entry::Location::MeshExternal,
                    subject_alt_names: se.subject_alt_names.clone(),
                    export_to: export_to.clone(),
                    labels: c.meta.labels.clone(),
                    selector: selector.clone(),
                };
                if addresses.is_empty() {
                    reg.services.push(Arc::new(base));
                } else {
                    for a in &addresses {
                        let mut s = base.clone();
                        s.address = *a;
                        s.auto_addresses.clear();
                        reg.services.push(Arc::new(s));
                    }
                }

                // §3.2 endpoints for this host: shared by every host of the entry unless
                // they are derived from the host itself (DNS without endpoints).
                let eps: Vec<Arc<Endpoint>> = match &shared {
                    Some(v) => v.clone(),
                    None => endpoints_of(host).into_iter().map(Arc::new).collect(),
                };
                let by_host = match endpoints.get_mut(ns) {
                    Some(m) => m,
                    None => endpoints.entry(ns.to_string()).or_default(),
                };
                let slot = by_host.entry(host.clone()).or_default();
                if resolution == Resolution::DnsRoundRobinLb {
                    // Several entries for one host: only the first endpoint per port is kept.
                    let seen = rr_seen.entry((ns.to_string(), host.clone())).or_insert(0);
                    *seen += 1;
                    for e in eps {
                        if !slot
                            .iter()
                            .any(|x| x.service_port_name == e.service_port_name)
                        {
                            slot.push(e);
                        }
                    }
                } else if slot.is_empty() {
                    *slot = eps;
                } else {
                    slot.extend(eps);
                }
            }
        }
        reg.endpoints = endpoints;
        reg
    }

    /// Endpoints of `service` for its port named `port_name`.
    pub fn endpoints_for<'a>(
        &'a self,
        service: &Service,
        port_name: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Endpoint>> + 'a {
        self.host_endpoints(&service.namespace, &service.hostname)
            .iter()
            .filter(move |e| e.service_port_name == port_name)
    }

    /// Every endpoint of `host` as defined in `namespace` (all ports).
    pub fn host_endpoints(&self, namespace: &str, host: &str) -> &[Arc<Endpoint>] {
        self.endpoints
            .get(namespace)
            .and_then(|m| m.get(host))
            .map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check_text;
    use crate::decode::Format;

    pub(crate) fn registry(yaml: &str) -> Registry {
        let mesh = MeshConfig::default();
        let checked = check_text(yaml, Format::Yaml, "default", &mesh).expect("yaml");
        let configs = checked
            .iter()
            .map(|c| {
                c.config()
                    .cloned()
                    .unwrap_or_else(|| panic!("invalid: {:?}", c.report))
            })
            .collect();
        Registry::build(&ConfigSet::new(configs), &mesh)
    }

    #[test]
    fn hosts_times_addresses_host_major() {
        let r = registry(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se, namespace: ns}
spec:
  hosts: [a.com, b.com]
  addresses: [10.0.0.1, 10.1.0.0/16, 10.2.0.1/32]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints: [{address: 1.1.1.1}]
"#,
        );
        let got: Vec<(String, String)> = r
            .services
            .iter()
            .map(|s| (s.hostname.clone(), s.address.to_istio_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a.com".into(), "10.0.0.1".into()),
                ("a.com".into(), "10.1.0.0/16".into()),
                ("a.com".into(), "10.2.0.1".into()),
                ("b.com".into(), "10.0.0.1".into()),
                ("b.com".into(), "10.1.0.0/16".into()),
                ("b.com".into(), "10.2.0.1".into()),
            ]
        );
        assert!(!r.services[0].mesh_external);
        assert!(
            r.services[0].auto_addresses.is_empty(),
            "explicit addresses: no allocation"
        );
    }

    #[test]
    fn static_endpoint_port_precedence_and_identity() {
        let r = registry(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: shop}
spec:
  hosts: [db.internal]
  ports:
  - {number: 3306, name: mysql, protocol: TCP, targetPort: 3307}
  - {number: 9000, name: admin, protocol: HTTP}
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, ports: {mysql: 13306}, locality: r1/z1/s1, weight: 0, serviceAccount: db, network: n1}
  - {address: 10.0.0.2, labels: {security.istio.io/tlsMode: disabled}, serviceAccount: db}
"#,
        );
        let svc = &r.services[0];
        let mysql: Vec<_> = r.endpoints_for(svc, "mysql").collect();
        assert_eq!(mysql.len(), 2);
        assert_eq!(mysql[0].port, 13306, "ports[name] wins");
        assert_eq!(mysql[1].port, 3307, "then targetPort");
        let admin: Vec<_> = r.endpoints_for(svc, "admin").collect();
        assert_eq!(admin[0].port, 9000, "then number");
        assert_eq!(mysql[0].weight, 1);
        assert_eq!(mysql[0].locality, Locality::parse("r1/z1/s1"));
        assert_eq!(mysql[0].labels["topology.kubernetes.io/zone"], "z1");
        assert_eq!(mysql[0].labels["topology.istio.io/network"], "n1");
        assert_eq!(
            mysql[0].service_account,
            "spiffe://cluster.local/ns/shop/sa/db"
        );
        assert_eq!(mysql[0].tls_mode, TlsMode::Istio);
        assert_eq!(mysql[1].tls_mode, TlsMode::Disabled, "label overrides");
        assert_eq!(mysql[0].workload_name, "db-0");
        assert_eq!(mysql[1].workload_name, "db-1");
        assert!(
            svc.auto_addresses
                .first()
                .is_some_and(|a| a.to_string().starts_with("240.240."))
        );
    }

    #[test]
    fn dns_without_endpoints_uses_each_host() {
        let r = registry(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [a.com, b.com]
  ports: [{number: 443, name: https, protocol: TLS, targetPort: 8443}]
  resolution: DNS
"#,
        );
        for s in &r.services {
            let eps: Vec<_> = r.endpoints_for(s, "https").collect();
            assert_eq!(eps.len(), 1);
            assert_eq!(
                eps[0].address,
                EndpointAddress::Hostname(s.hostname.clone())
            );
            assert_eq!(eps[0].port, 8443);
            assert_eq!(eps[0].workload_name, "ext");
        }
        assert_eq!(r.services[0].export_to, Visibility::Public);
    }

    #[test]
    fn none_has_no_endpoints_and_no_allocation() {
        let r = registry(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: any}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 443, name: tls, protocol: TLS}]
"#,
        );
        assert_eq!(r.services[0].resolution, Resolution::Passthrough);
        assert_eq!(r.endpoints_for(&r.services[0], "tls").count(), 0);
        assert!(r.services[0].auto_addresses.is_empty());
    }

    #[test]
    fn selector_picks_same_namespace_workloads_sorted() {
        let r = registry(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms, namespace: a}
spec:
  hosts: [vm.svc]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]
  resolution: STATIC
  workloadSelector: {labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: z-vm, namespace: a}
spec: {address: 10.0.0.2, labels: {app: vm}, ports: {http: 9090}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: a-vm, namespace: a, labels: {app: vm}}
spec: {address: 10.0.0.1, labels: {app: other}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: elsewhere, namespace: b}
spec: {address: 10.0.0.3, labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: dns-name, namespace: a}
spec: {address: vm.example.com, labels: {app: vm}}
"#,
        );
        let eps: Vec<_> = r.endpoints_for(&r.services[0], "http").collect();
        let names: Vec<&str> = eps.iter().map(|e| e.workload_name.as_str()).collect();
        assert_eq!(
            names,
            vec!["a-vm", "z-vm"],
            "metadata labels win; other ns and hostnames excluded"
        );
        assert_eq!(eps[0].port, 8080);
        assert_eq!(eps[1].port, 9090);
    }

    #[test]
    fn round_robin_keeps_first_endpoint_per_port_across_entries() {
        let r = registry(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: one}
spec:
  hosts: [rr.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{address: first.example.net}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: two}
spec:
  hosts: [rr.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{address: second.example.net}]
"#,
        );
        let eps: Vec<_> = r.endpoints_for(&r.services[0], "http").collect();
        assert_eq!(eps.len(), 1);
        assert_eq!(
            eps[0].address,
            EndpointAddress::Hostname("first.example.net".into())
        );
    }

    #[test]
    fn visibility_rules() {
        let d = vec!["*".to_string()];
        assert_eq!(visibility(&[], &d, "ns"), Visibility::Public);
        assert_eq!(
            visibility(&[".".into()], &d, "ns"),
            Visibility::Namespaces(vec!["ns".into()])
        );
        assert_eq!(visibility(&["~".into()], &d, "ns"), Visibility::None);
        assert!(visibility(&[".".into(), "b".into()], &d, "ns").visible_to("b"));
        assert!(!visibility(&[".".into()], &d, "ns").visible_to("b"));
    }
}

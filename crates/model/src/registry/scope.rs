//! What one proxy sees (spec §4.0, §3.3, §3.4, §5.1, §6.1): its Sidecar scope, the
//! services each egress listener imports, the de-duplicated service list clusters are built
//! from, the VirtualServices that apply and the DestinationRule of each service.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use crate::api::sidecar::{OutboundTrafficPolicyMode, SidecarPort};
use crate::api::{self, MeshConfig};
use crate::registry::build::{Named, Registry, visibility};
use crate::registry::host;
use crate::registry::types::*;

/// Kubernetes DNS suffix used to resolve short names in VirtualService/DestinationRule hosts.
pub const DOMAIN_SUFFIX: &str = "cluster.local";

/// A proxy as the generator needs to know it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Proxy {
    /// Node id (`sidecar~IP~name.namespace~namespace.svc.cluster.local` in Istio).
    pub id: String,
    /// Namespace of the workload.
    pub namespace: String,
    /// Workload labels.
    pub labels: BTreeMap<String, String>,
    /// Workload IPs (the first is the primary).
    pub ips: Vec<IpAddr>,
    /// `ISTIO_META_DNS_CAPTURE`: the agent answers DNS, so auto-allocated addresses are used.
    pub dns_capture: bool,
    /// `ISTIO_META_DNS_AUTO_ALLOCATE` (kept for compatibility; Entryway always allocates).
    pub dns_auto_allocate: bool,
    /// Explicit-proxy mode: the address of the HTTP proxy listener (`EXPLICIT_PROXY`), where
    /// clients send absolute-URL requests and CONNECT tunnels; `None` = no such listener.
    pub explicit_proxy: Option<std::net::SocketAddr>,
    /// The workload's service account: from its verified certificate on the secure port,
    /// else from node metadata `SERVICE_ACCOUNT`; `None` when unknown. A WorkloadEntry with a
    /// `serviceAccount` makes the proxy its target only when they agree.
    pub service_account: Option<String>,
    /// Whether inbound traffic is captured to the inbound listener `virtualInbound` (Istio's
    /// `INTERCEPTION_MODE` `REDIRECT`); else (`NONE`, and when the proxy does not say) the
    /// inbound listeners of its service targets bind the workload's address themselves.
    pub inbound_capture: bool,
}

impl Proxy {
    /// A proxy in `namespace` at 127.0.0.1 without labels.
    pub fn in_namespace(namespace: &str) -> Proxy {
        Proxy {
            id: format!("sidecar~127.0.0.1~entryway.{namespace}~{namespace}.svc.cluster.local"),
            namespace: namespace.to_string(),
            ips: vec![IpAddr::from([127, 0, 0, 1])],
            ..Proxy::default()
        }
    }

    fn has_v4(&self) -> bool {
        self.ips.is_empty() || self.ips.iter().any(IpAddr::is_ipv4)
    }

    fn has_v6(&self) -> bool {
        self.ips.iter().any(IpAddr::is_ipv6)
    }
}

/// Outbound traffic policy mode after Sidecar/mesh resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundMode {
    /// Unknown destinations pass through.
    AllowAny,
    /// Unknown destinations are blocked.
    RegistryOnly,
}

/// The effective outbound traffic policy of a proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundPolicy {
    /// Mode.
    pub mode: OutboundMode,
    /// Sidecar `egressProxy` (ALLOW_ANY only).
    pub egress_proxy: Option<api::virtual_service::Destination>,
}

/// One egress listener of the Sidecar scope and the services it imports.
#[derive(Debug, Clone)]
pub struct EgressScope<'a> {
    /// The listener's port, when the Sidecar names one.
    pub port: Option<SidecarPort>,
    /// Bind address, empty for the default.
    pub bind: String,
    /// Every imported service object (each (host, address) pair), in registry order
    /// (borrowed from the registry: no reference counting per proxy).
    pub services: Vec<&'a Arc<Service>>,
}

/// Everything one proxy sees.
#[derive(Debug, Clone)]
pub struct ProxyScope<'a> {
    /// The proxy.
    pub proxy: &'a Proxy,
    /// Mesh config.
    pub mesh: &'a MeshConfig,
    /// The registry.
    pub registry: &'a Registry,
    /// The Sidecar that applies, if any.
    pub sidecar: Option<Arc<Named<api::Sidecar>>>,
    /// Effective outbound policy.
    pub outbound: OutboundPolicy,
    /// Egress listeners (the default scope has one, importing `*/*`).
    pub egress: Vec<EgressScope<'a>>,
    /// One service per hostname (clusters are built from these), in registry order.
    pub services: Vec<Arc<Service>>,
    /// VirtualServices that apply to this proxy, in creation order.
    pub virtual_services: Vec<Arc<Named<api::VirtualService>>>,
    /// DestinationRules visible to this proxy.
    destination_rules: Vec<Arc<Named<api::DestinationRule>>>,
}

/// A DestinationRule as it applies to one service: several rules for the same host merged.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveRule {
    /// Namespace of the (first) rule.
    pub namespace: String,
    /// Name of the (first) rule.
    pub name: String,
    /// Host of the rule as written, short names resolved.
    pub host: String,
    /// Top-level traffic policy.
    pub traffic_policy: Option<api::destination_rule::TrafficPolicy>,
    /// Subsets (duplicates by name dropped).
    pub subsets: Vec<api::destination_rule::Subset>,
}

fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Parses a Sidecar egress host `ns/host` into (namespace pattern, host pattern).
fn split_egress_host(h: &str) -> (&str, &str) {
    match h.split_once('/') {
        Some((ns, host)) => (ns, host),
        None => ("*", h),
    }
}

fn namespace_matches(pattern: &str, proxy_ns: &str, ns: &str) -> bool {
    match pattern {
        "*" => true,
        "." => ns == proxy_ns,
        p => p == ns,
    }
}

fn egress_imports(hosts: &[String], proxy_ns: &str, svc: &Service) -> bool {
    let mut imported = false;
    for h in hosts {
        let (ns, host_pat) = split_egress_host(h);
        if let Some(excluded) = ns.strip_prefix('~') {
            let _ = excluded;
            continue;
        }
        if namespace_matches(ns, proxy_ns, &svc.namespace)
            && host::subset_of(&svc.hostname, host_pat)
        {
            imported = true;
        }
    }
    imported
}

impl<'a> ProxyScope<'a> {
    /// Computes the scope of `proxy`.
    pub fn new(registry: &'a Registry, mesh: &'a MeshConfig, proxy: &'a Proxy) -> ProxyScope<'a> {
        let sidecar = select_sidecar(registry, mesh, proxy);
        let outbound = match sidecar
            .as_ref()
            .and_then(|s| s.spec.outbound_traffic_policy.as_ref())
        {
            Some(p) => OutboundPolicy {
                mode: mode_of(p.mode),
                egress_proxy: p
                    .egress_proxy
                    .clone()
                    .filter(|_| p.mode == OutboundTrafficPolicyMode::AllowAny),
            },
            None => OutboundPolicy {
                mode: mode_of(mesh.outbound_traffic_policy.mode),
                egress_proxy: None,
            },
        };

        let visible: Vec<&Arc<Service>> = registry
            .services
            .iter()
            .filter(|s| s.export_to.visible_to(&proxy.namespace))
            .collect();

        let default_egress = [api::sidecar::IstioEgressListener {
            hosts: vec!["*/*".to_string()],
            ..Default::default()
        }];
        let listeners: &[api::sidecar::IstioEgressListener] = match &sidecar {
            Some(s) if !s.spec.egress.is_empty() => &s.spec.egress,
            _ => &default_egress,
        };
        let egress: Vec<EgressScope<'a>> = listeners
            .iter()
            .map(|l| EgressScope {
                port: l.port.clone(),
                bind: l.bind.clone(),
                services: visible
                    .iter()
                    .filter(|s| egress_imports(&l.hosts, &proxy.namespace, s))
                    .copied()
                    .collect(),
            })
            .collect();

        let services = dedupe_services(
            egress.iter().flat_map(|e| e.services.iter().copied()),
            &proxy.namespace,
        );

        let gateway_applies = |vs: &api::VirtualService| {
            vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh")
        };
        let virtual_services: Vec<Arc<Named<api::VirtualService>>> = registry
            .virtual_services
            .iter()
            .filter(|vs| {
                visibility(
                    &vs.spec.export_to,
                    &mesh.default_virtual_service_export_to,
                    &vs.namespace,
                )
                .visible_to(&proxy.namespace)
                    && gateway_applies(&vs.spec)
                    && vs.spec.hosts.iter().any(|h| {
                        let h = host::resolve_short_name(h, &vs.namespace, DOMAIN_SUFFIX);
                        listeners.iter().any(|l| {
                            l.hosts.iter().any(|eh| {
                                let (ns, hp) = split_egress_host(eh);
                                !ns.starts_with('~')
                                    && namespace_matches(ns, &proxy.namespace, &vs.namespace)
                                    && host::matches(&h, hp)
                            })
                        })
                    })
            })
            .cloned()
            .collect();

        let destination_rules = registry
            .destination_rules
            .iter()
            .filter(|dr| {
                visibility(
                    &dr.spec.export_to,
                    &mesh.default_destination_rule_export_to,
                    &dr.namespace,
                )
                .visible_to(&proxy.namespace)
                    && dr.spec.workload_selector.as_ref().is_none_or(|sel| {
                        dr.namespace == proxy.namespace
                            && selector_matches(&sel.match_labels, &proxy.labels)
                    })
            })
            .cloned()
            .collect();

        ProxyScope {
            proxy,
            mesh,
            registry,
            sidecar,
            outbound,
            egress,
            services,
            virtual_services,
            destination_rules,
        }
    }

    /// The addresses a listener for `svc` binds to on this proxy: the service address, or
    /// for an address-less service the auto-allocated ones when the proxy captures DNS.
    pub fn service_addresses(&self, svc: &Service) -> Vec<String> {
        match svc.address {
            ServiceAddress::Unspecified => {
                if self.proxy.dns_capture && !svc.auto_addresses.is_empty() {
                    let v: Vec<String> = svc
                        .auto_addresses
                        .iter()
                        .filter(|a| {
                            (a.is_ipv4() && self.proxy.has_v4())
                                || (a.is_ipv6() && self.proxy.has_v6())
                        })
                        .map(ToString::to_string)
                        .collect();
                    if !v.is_empty() {
                        return v;
                    }
                }
                vec!["0.0.0.0".to_string()]
            }
            other => vec![other.to_istio_string()],
        }
    }

    /// The endpoints of `svc` for its port `port_name`.
    pub fn endpoints<'s>(&'s self, svc: &Service, port_name: &'s str) -> Vec<&'s Arc<Endpoint>> {
        self.registry.endpoints_for(svc, port_name).collect()
    }

    /// The DestinationRule that applies to `svc` (spec §5.1), several merged.
    pub fn destination_rule(&self, svc: &Service) -> Option<EffectiveRule> {
        let root = self.mesh.root_namespace.as_str();
        let pick = |ns: &str| -> Option<EffectiveRule> {
            let mut candidates: Vec<(&Arc<Named<api::DestinationRule>>, String)> = self
                .destination_rules
                .iter()
                .filter(|dr| dr.namespace == ns)
                .map(|dr| {
                    (
                        dr,
                        host::resolve_short_name(&dr.spec.host, &dr.namespace, DOMAIN_SUFFIX),
                    )
                })
                .filter(|(_, h)| host::subset_of(&svc.hostname, h))
                .collect();
            if candidates.is_empty() {
                return None;
            }
            let best = candidates.iter().map(|(_, h)| host::specificity(h)).max()?;
            candidates.retain(|(_, h)| host::specificity(h) == best);
            // Prefer rules with a selector matching this proxy, as Istio does.
            candidates.sort_by_key(|(dr, _)| (dr.spec.workload_selector.is_none(), dr.order));
            let (first, host) = candidates.first()?;
            let mut eff = EffectiveRule {
                namespace: first.namespace.clone(),
                name: first.name.clone(),
                host: host.clone(),
                traffic_policy: first.spec.traffic_policy.clone(),
                subsets: Vec::new(),
            };
            for (dr, h) in &candidates {
                if *h != eff.host {
                    continue;
                }
                if eff.traffic_policy.is_none() {
                    eff.traffic_policy = dr.spec.traffic_policy.clone();
                }
                for s in &dr.spec.subsets {
                    if !eff.subsets.iter().any(|x| x.name == s.name) {
                        eff.subsets.push(s.clone());
                    }
                }
            }
            Some(eff)
        };
        let proxy_ns = self.proxy.namespace.as_str();
        if proxy_ns != root
            && let Some(r) = pick(proxy_ns)
        {
            return Some(r);
        }
        if svc.namespace != proxy_ns
            && let Some(r) = pick(&svc.namespace)
        {
            return Some(r);
        }
        pick(root)
    }
}

fn mode_of(m: OutboundTrafficPolicyMode) -> OutboundMode {
    match m {
        OutboundTrafficPolicyMode::RegistryOnly => OutboundMode::RegistryOnly,
        _ => OutboundMode::AllowAny,
    }
}

fn select_sidecar(
    registry: &Registry,
    mesh: &MeshConfig,
    proxy: &Proxy,
) -> Option<Arc<Named<api::Sidecar>>> {
    fn in_ns<'r>(
        registry: &'r Registry,
        ns: &'r str,
    ) -> impl Iterator<Item = &'r Arc<Named<api::Sidecar>>> + 'r {
        registry.sidecars.iter().filter(move |s| s.namespace == ns)
    }
    in_ns(registry, &proxy.namespace)
        .find(|s| {
            s.spec.workload_selector.as_ref().is_some_and(|sel| {
                !sel.labels.is_empty() && selector_matches(&sel.labels, &proxy.labels)
            })
        })
        .or_else(|| {
            in_ns(registry, &proxy.namespace).find(|s| {
                s.spec
                    .workload_selector
                    .as_ref()
                    .is_none_or(|sel| sel.labels.is_empty())
            })
        })
        .or_else(|| {
            in_ns(registry, &mesh.root_namespace).find(|s| {
                s.spec
                    .workload_selector
                    .as_ref()
                    .is_none_or(|sel| sel.labels.is_empty())
            })
        })
        .cloned()
}

/// One service per hostname (spec §3.3): the proxy namespace's wins, else the oldest; later
/// services of the same namespace with compatible attributes contribute their ports.
fn dedupe_services<'s>(
    all: impl Iterator<Item = &'s Arc<Service>>,
    proxy_ns: &str,
) -> Vec<Arc<Service>> {
    let all = all.into_iter();
    let hint = all.size_hint().0;
    // Per hostname, in first-seen order: the first service and any others (a separate
    // list only when a hostname repeats, which is rare).
    type Group<'s> = (&'s Arc<Service>, Vec<&'s Arc<Service>>);
    let mut groups: Vec<Group<'s>> = Vec::with_capacity(hint);
    let mut by_host: HashMap<&'s str, usize, foldhash::fast::FixedState> =
        HashMap::with_capacity_and_hasher(hint, foldhash::fast::FixedState::default());
    for s in all {
        match by_host.entry(s.hostname.as_str()) {
            std::collections::hash_map::Entry::Occupied(e) => {
                if let Some((first, rest)) = groups.get_mut(*e.get())
                    && !Arc::ptr_eq(first, s)
                    && !rest.iter().any(|x| Arc::ptr_eq(x, s))
                {
                    rest.push(s);
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(groups.len());
                groups.push((s, Vec::new()));
            }
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (only, rest) in &groups {
        if rest.is_empty() {
            out.push(Arc::clone(only));
            continue;
        }
        let group: Vec<&Arc<Service>> =
            std::iter::once(*only).chain(rest.iter().copied()).collect();
        let Some(first) = group
            .iter()
            .filter(|s| s.namespace == proxy_ns)
            .min_by_key(|s| s.creation_order)
            .or_else(|| group.iter().min_by_key(|s| s.creation_order))
        else {
            continue;
        };
        let mut merged: Option<Service> = None;
        for other in &group {
            if Arc::ptr_eq(other, first) || other.ports == first.ports {
                continue;
            }
            let compatible = other.namespace == first.namespace
                && other.resolution == first.resolution
                && other.labels == first.labels
                && other.selector == first.selector
                && other.export_to == first.export_to;
            if compatible {
                let m = merged.get_or_insert_with(|| (***first).clone());
                for p in &other.ports {
                    if !m.ports.iter().any(|x| x.number == p.number) {
                        m.ports.push(p.clone());
                    }
                }
            }
        }
        out.push(merged.map_or_else(|| Arc::clone(first), Arc::new));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check_text;
    use crate::decode::Format;
    use crate::registry::ConfigSet;

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

    const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pub, namespace: a}
spec:
  hosts: [pub.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: priv, namespace: a}
spec:
  hosts: [priv.com]
  exportTo: ["."]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: more-ports, namespace: a}
spec:
  hosts: [pub.com]
  ports: [{number: 8080, name: http-alt, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pub-b, namespace: b}
spec:
  hosts: [pub.com]
  exportTo: ["."]
  ports: [{number: 9000, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: c}
spec:
  egress:
  - hosts: ["a/priv.com", "b/*"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr-a, namespace: a}
spec:
  host: pub.com
  subsets: [{name: v1, labels: {v: "1"}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr-wild, namespace: istio-system}
spec:
  host: "*.com"
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
"#;

    #[test]
    fn visibility_dedupe_and_port_merge() {
        let mesh = MeshConfig::default();
        let r = registry(CONFIG, &mesh);
        let pa = Proxy::in_namespace("a");
        let sa = ProxyScope::new(&r, &mesh, &pa);
        let hosts: Vec<(&str, &str, Vec<u32>)> = sa
            .services
            .iter()
            .map(|s| {
                (
                    s.hostname.as_str(),
                    s.namespace.as_str(),
                    s.ports.iter().map(|p| p.number).collect(),
                )
            })
            .collect();
        assert_eq!(
            hosts,
            vec![
                ("pub.com", "a", vec![80, 8080]),
                ("priv.com", "a", vec![80])
            ]
        );
        assert_eq!(sa.outbound.mode, OutboundMode::AllowAny);

        let pb = Proxy::in_namespace("b");
        let sb = ProxyScope::new(&r, &mesh, &pb);
        let hosts: Vec<(&str, &str)> = sb
            .services
            .iter()
            .map(|s| (s.hostname.as_str(), s.namespace.as_str()))
            .collect();
        assert_eq!(
            hosts,
            vec![("pub.com", "b")],
            "own namespace wins; priv.com invisible"
        );
    }

    #[test]
    fn sidecar_scopes_hosts_and_policy() {
        let mesh = MeshConfig::default();
        let r = registry(CONFIG, &mesh);
        let pc = Proxy::in_namespace("c");
        let sc = ProxyScope::new(&r, &mesh, &pc);
        assert_eq!(sc.outbound.mode, OutboundMode::RegistryOnly);
        // priv.com is exported only to a; pub-b only to b: nothing visible to c matches.
        assert!(sc.services.is_empty(), "{:?}", sc.services);
    }

    #[test]
    fn destination_rule_selection() {
        let mesh = MeshConfig::default();
        let r = registry(CONFIG, &mesh);
        let pa = Proxy::in_namespace("a");
        let sa = ProxyScope::new(&r, &mesh, &pa);
        let pub_svc = &sa.services[0];
        let dr = sa.destination_rule(pub_svc).expect("dr");
        assert_eq!(dr.name, "dr-a");
        assert_eq!(dr.subsets.len(), 1);
        let priv_svc = &sa.services[1];
        assert_eq!(
            sa.destination_rule(priv_svc).expect("root dr").name,
            "dr-wild"
        );
    }

    #[test]
    fn auto_addresses_only_with_dns_capture() {
        let mesh = MeshConfig::default();
        let r = registry(CONFIG, &mesh);
        let mut p = Proxy::in_namespace("a");
        let s = ProxyScope::new(&r, &mesh, &p);
        assert_eq!(
            s.service_addresses(&s.services[0]),
            vec!["0.0.0.0".to_string()]
        );
        p.dns_capture = true;
        let s = ProxyScope::new(&r, &mesh, &p);
        let addrs = s.service_addresses(&s.services[0]);
        assert_eq!(addrs.len(), 1, "IPv4-only proxy: v4 only");
        assert!(addrs[0].starts_with("240.240."));
    }
}

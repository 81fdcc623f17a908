//! Route configurations (spec §4.2, §6, §7): one per RDS name the listeners refer to.
//!
//! Route `"<P>"` holds a virtual host per service importing port P as HTTP or AUTO (a
//! `default` route) or per VirtualService matching such services (the translated `http[]`
//! rules), sorted by name, then the catch-all `allow_any` / `block_all` virtual host.
//! Route `"<host>:<P>"` (a VIP-bound sniffing listener) holds only that service's virtual
//! host, with domains `["*"]`.

#[path = "rds_common.rs"]
pub(crate) mod common;
#[path = "rds_explicit.rs"]
mod explicit;
#[path = "rds_route.rs"]
pub(crate) mod route;
#[cfg(test)]
#[path = "rds_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "rds_testutil.rs"]
pub(crate) mod testutil;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use entryway_model::api::Protocol;
use entryway_model::registry::scope::EffectiveRule;
use entryway_model::registry::{
    OutboundMode, ProxyScope, Service, ServiceAddress, ServicePort, host,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteConfiguration, RouteMatch, VirtualHost, route as route_pb,
    route_match,
};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use self::common::{
    DrCache, VsRef, catch_all_cluster, dns_domain, domain_name, egress_listener,
    egress_virtual_services, ipv6_compliant, lowercase_hash, needs_service_index, service_index,
};
use self::route::{
    RouteCtx, default_route, is_http_or_sniffed, no_timeout_action, service_hash_policy,
    virtual_service_routes,
};
use super::names::outbound_cluster;

/// Largest direct-response body Envoy may send (Istio's default, 1 MiB).
const MAX_DIRECT_RESPONSE_BODY: u32 = 1024 * 1024;

/// One route configuration per name in `names`, in the same order.
pub fn route_configurations(scope: &ProxyScope<'_>, names: &[String]) -> Vec<RouteConfiguration> {
    let mut out = Vec::with_capacity(names.len());
    each_route_configuration(scope, names, &mut |r| out.push(r));
    out
}

/// [`route_configurations`], handed to `emit` one at a time in the order of `names` (so a
/// caller may encode and drop each before the next is built).
pub fn each_route_configuration(
    scope: &ProxyScope<'_>,
    names: &[String],
    emit: &mut dyn FnMut(RouteConfiguration),
) {
    // Ports whose virtual hosts are also needed by per-service (sniffed) routes are computed
    // once and kept; the others are built straight into their route configuration.
    let shared_ports: HashSet<u32> = names
        .iter()
        .filter_map(|n| match listener_port_of(n) {
            (p, true, true) => Some(p),
            _ => None,
        })
        .collect();
    let mut b = RdsBuilder {
        scope,
        services: if needs_service_index(scope) {
            service_index(scope)
        } else {
            HashMap::new()
        },
        rules: RefCell::new(DrCache::new(scope)),
        by_port: HashMap::new(),
        dns_domain: dns_domain(scope),
        egress: (0..scope.egress.len())
            .map(|i| EgressInfo::new(scope, i))
            .collect(),
        shared_ports,
    };
    for n in names {
        emit(b.route_configuration(n));
    }
}

/// Virtual hosts computed for one listener port, with an index from domain to vhost for
/// the per-service (sniffed) route names.
struct PortVhosts {
    vhosts: Vec<VirtualHost>,
    by_domain: Option<HashMap<String, Vec<usize>>>,
}

/// Per egress listener: its VirtualServices and its services by port number.
struct EgressInfo<'a> {
    virtual_services: Vec<VsRef<'a>>,
    by_port: HashMap<u32, Vec<usize>>,
}

impl<'a> EgressInfo<'a> {
    fn new(scope: &'a ProxyScope<'_>, index: usize) -> EgressInfo<'a> {
        let mut by_port: HashMap<u32, Vec<usize>> = HashMap::new();
        if let Some(eg) = scope.egress.get(index) {
            for (i, svc) in eg.services.iter().enumerate() {
                for p in &svc.ports {
                    let v = by_port.entry(p.number).or_default();
                    if v.last() != Some(&i) {
                        v.push(i);
                    }
                }
            }
        }
        EgressInfo {
            virtual_services: egress_virtual_services(scope, index),
            by_port,
        }
    }
}

struct RdsBuilder<'a, 's> {
    scope: &'a ProxyScope<'s>,
    services: HashMap<&'a str, &'a Arc<Service>>,
    rules: RefCell<DrCache<'a>>,
    by_port: HashMap<u32, PortVhosts>,
    dns_domain: String,
    egress: Vec<EgressInfo<'a>>,
    shared_ports: HashSet<u32>,
}

/// Istio's `extractListenerPort`: the port of a route name (`"80"`, `"host:80"`), whether the
/// name is a per-service (sniffed) route, and whether the port parsed.
fn listener_port_of(name: &str) -> (u32, bool, bool) {
    if name.starts_with("unix://") {
        return (0, false, false);
    }
    let (rest, sniffing) = match name.rfind(':') {
        Some(i) => (&name[i + 1..], true),
        None => (name, false),
    };
    match rest.parse::<u32>() {
        Ok(p) => (p, sniffing, true),
        Err(_) => (0, sniffing, false),
    }
}

/// The host part of a `host:port` route name (Go's `net.SplitHostPort`).
fn host_of(name: &str) -> &str {
    let h = name.rfind(':').map_or(name, |i| &name[..i]);
    h.strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h)
}

/// A service as a route configuration sees it: restricted to the listener port (all ports
/// for port 0).
struct SvcView<'a> {
    svc: &'a Service,
    ports: &'a [ServicePort],
}

/// Istio's `VirtualHostWrapper`: routes for a port and the services / plain VS hosts sharing
/// them.
struct Wrapper {
    port: u32,
    services: Vec<usize>,
    vs_hosts: Vec<String>,
    routes: Rc<Vec<Route>>,
}

impl<'a, 's> RdsBuilder<'a, 's> {
    fn route_configuration(&mut self, name: &str) -> RouteConfiguration {
        if name == super::explicit::EXPLICIT_PROXY_ROUTE {
            return self.explicit_route_configuration(name);
        }
        let (port, sniffing, parsed) = listener_port_of(name);
        if !parsed && !name.starts_with("unix://") {
            return RouteConfiguration {
                name: name.to_string(),
                validate_clusters: Some(BoolValue { value: false }),
                ..Default::default()
            };
        }
        let mut vhosts = if port == 0 {
            self.virtual_hosts(0, name)
        } else if sniffing {
            self.sniffed_virtual_hosts(port, name)
        } else if self.shared_ports.contains(&port) {
            self.port_vhosts(port, name).vhosts.clone()
        } else {
            self.virtual_hosts(port, name)
        };
        if !vhosts.is_sorted_by(|a, b| a.name <= b.name) {
            sort_by_name(&mut vhosts);
        }
        if !sniffing {
            vhosts.push(catch_all_virtual_host(self.scope));
        }
        RouteConfiguration {
            name: name.to_string(),
            virtual_hosts: vhosts,
            validate_clusters: Some(BoolValue { value: false }),
            max_direct_response_body_size_bytes: Some(UInt32Value {
                value: MAX_DIRECT_RESPONSE_BODY,
            }),
            ignore_port_in_host_matching: true,
            ..Default::default()
        }
    }

    fn port_vhosts(&mut self, port: u32, name: &str) -> &mut PortVhosts {
        if !self.by_port.contains_key(&port) {
            let vhosts = self.virtual_hosts(port, name);
            self.by_port.insert(
                port,
                PortVhosts {
                    vhosts,
                    by_domain: None,
                },
            );
        }
        // Inserted just above when missing.
        self.by_port.entry(port).or_insert_with(|| PortVhosts {
            vhosts: Vec::new(),
            by_domain: None,
        })
    }

    /// Istio's `getVirtualHostsForSniffedServicePort`: the vhosts of the port whose domains
    /// contain the route name or its host; a single one gets domains `["*"]`.
    fn sniffed_virtual_hosts(&mut self, port: u32, name: &str) -> Vec<VirtualHost> {
        let host = host_of(name).to_string();
        let pv = self.port_vhosts(port, name);
        let index = pv.by_domain.get_or_insert_with(|| {
            let mut m: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, vh) in pv.vhosts.iter().enumerate() {
                for d in &vh.domains {
                    let v = m.entry(d.clone()).or_default();
                    if v.last() != Some(&i) {
                        v.push(i);
                    }
                }
            }
            m
        });
        let mut idx: Vec<usize> = index
            .get(name)
            .into_iter()
            .chain(index.get(host.as_str()))
            .flatten()
            .copied()
            .collect();
        idx.sort_unstable();
        idx.dedup();
        let mut out: Vec<VirtualHost> = idx
            .iter()
            .filter_map(|i| pv.vhosts.get(*i).cloned())
            .collect();
        if let [only] = out.as_mut_slice() {
            only.domains = vec!["*".to_string()];
        }
        out
    }

    /// Istio's `BuildSidecarOutboundVirtualHosts` for one listener port (`route_name` picks
    /// the egress listener of unix-socket routes).
    fn virtual_hosts(&self, listener_port: u32, route_name: &str) -> Vec<VirtualHost> {
        let scope = self.scope;
        let Some(eg_index) = egress_for_rds(scope, listener_port, route_name) else {
            return Vec::new();
        };
        let (Some(eg), Some(info)) = (scope.egress.get(eg_index), self.egress.get(eg_index)) else {
            return Vec::new();
        };
        let mut lp = listener_port;
        if egress_listener(scope, eg_index)
            .and_then(|l| l.port.as_ref())
            .is_some_and(|p| p.parsed_protocol() == Protocol::HttpProxy)
        {
            lp = 0;
        }

        // Services on the port by hostname (the last object of a hostname wins, as in
        // Istio's map), in first-seen order.
        let candidates: Vec<usize> = if lp == 0 {
            (0..eg.services.len()).collect()
        } else {
            info.by_port.get(&lp).cloned().unwrap_or_default()
        };
        let mut views: Vec<SvcView<'_>> = Vec::with_capacity(candidates.len());
        let mut by_host: HashMap<&str, usize> = HashMap::with_capacity(candidates.len());
        for i in candidates {
            let Some(svc) = eg.services.get(i) else {
                continue;
            };
            let ports: &[ServicePort] = if lp == 0 {
                &svc.ports
            } else {
                match svc.ports.iter().position(|p| p.number == lp) {
                    Some(k) => svc.ports.get(k..=k).unwrap_or_default(),
                    None => continue,
                }
            };
            let view = SvcView { svc, ports };
            match by_host.get(svc.hostname.as_str()) {
                Some(i) => {
                    if let Some(v) = views.get_mut(*i) {
                        *v = view;
                    }
                }
                None => {
                    by_host.insert(svc.hostname.as_str(), views.len());
                    views.push(view);
                }
            }
        }

        let all_vs = &info.virtual_services;
        let mut wrappers: Vec<Wrapper> = Vec::new();
        let mut covered: HashSet<usize> = HashSet::new();
        if !all_vs.is_empty() {
            let wildcard_services: Vec<usize> = views
                .iter()
                .enumerate()
                .filter(|(_, v)| host::is_wildcard(&v.svc.hostname))
                .map(|(i, _)| i)
                .collect();
            let selected: Vec<(usize, &VsRef<'_>)> = all_vs
                .iter()
                .enumerate()
                .filter(|(_, vs)| {
                    lp == 80 || selects_services(vs, &views, &by_host, &wildcard_services)
                })
                .collect();
            let vs_index = VsHostIndex::new(all_vs);
            let registry: HashMap<String, Vec<u32>> = views
                .iter()
                .map(|v| {
                    (
                        v.svc.hostname.clone(),
                        v.ports.iter().map(|p| p.number).collect(),
                    )
                })
                .collect();
            let ctx = RouteCtx {
                scope,
                registry: &registry,
                listener_port: lp,
                rules: &self.rules,
                services: &self.services,
            };
            for (me, vs) in selected {
                let routes = virtual_service_routes(&ctx, vs);
                if routes.is_empty() {
                    continue;
                }
                let routes = Rc::new(routes);
                let (plain_hosts, matching) = separate_hosts(me, vs, &views, &by_host, &vs_index);
                let mut by_port: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
                for i in &matching {
                    if let Some(v) = views.get(*i) {
                        for p in v.ports {
                            if is_http_or_sniffed(p.protocol) {
                                by_port.entry(p.number).or_default().push(*i);
                            }
                        }
                    }
                }
                if by_port.is_empty() && lp == 80 {
                    by_port.insert(80, Vec::new());
                }
                for (port, services) in by_port {
                    covered.extend(services.iter().copied());
                    wrappers.push(Wrapper {
                        port,
                        services,
                        vs_hosts: plain_hosts.clone(),
                        routes: Rc::clone(&routes),
                    });
                }
            }
        }
        self.build_vhosts(lp, &views, wrappers, &covered)
    }

    fn rule_for(&self, svc: &Service) -> Option<Rc<EffectiveRule>> {
        self.rules
            .borrow_mut()
            .for_host(self.scope, &self.services, &svc.hostname)
    }

    /// Turns the VirtualService wrappers, then the services without VirtualService, into
    /// virtual hosts: names `host:port`, duplicate names and domains dropped (first wins).
    fn build_vhosts(
        &self,
        lp: u32,
        views: &[SvcView<'_>],
        wrappers: Vec<Wrapper>,
        covered: &HashSet<usize>,
    ) -> Vec<VirtualHost> {
        let scope = self.scope;
        // Expanded (alternative) domains that are some service's real hostname are dropped;
        // only `.svc.` hosts expand to names that can collide, so the set of known names is
        // needed only when such hosts are present.
        let mut known_fqdn: HashSet<String> = HashSet::new();
        if views.iter().any(|v| v.svc.hostname.contains(".svc.")) {
            let mut add = |h: &str, port: u32| {
                known_fqdn.insert(domain_name(h, port));
                known_fqdn.insert(h.to_string());
            };
            for w in &wrappers {
                for i in &w.services {
                    if let Some(v) = views.get(*i) {
                        add(&v.svc.hostname, w.port);
                    }
                }
            }
            for (i, v) in views.iter().enumerate() {
                if !covered.contains(&i) {
                    for p in v.ports.iter().filter(|p| is_http_or_sniffed(p.protocol)) {
                        add(&v.svc.hostname, p.number);
                    }
                }
            }
        }
        let mut b = VhostSet {
            out: Vec::with_capacity(views.len() + wrappers.len()),
            names: HashSet::new(),
            check_names: !wrappers.is_empty(),
            domains: HashMap::with_capacity(views.len() * 2),
            collisions: Vec::new(),
        };

        for w in wrappers {
            if w.routes.is_empty() {
                continue;
            }
            let first = b.out.len();
            for h in &w.vs_hosts {
                let h = h.to_lowercase();
                let name = domain_name(&h, w.port);
                let mut domains = vec![ipv6_compliant(&h)];
                if lp == 0 {
                    domains.push(name.clone());
                }
                b.push(w.port, name, domains, 0..0, &known_fqdn, Vec::new());
            }
            for i in &w.services {
                let Some(v) = views.get(*i) else {
                    continue;
                };
                let name = domain_name(&v.svc.hostname, w.port);
                let (domains, alt) = self.service_domains(v.svc, lp, w.port);
                b.push(w.port, name, domains, alt, &known_fqdn, Vec::new());
            }
            // Attach the routes: cloned for all but the last vhost of the wrapper.
            let mut routes = Rc::try_unwrap(w.routes).unwrap_or_else(|rc| (*rc).clone());
            let n = b.out.len();
            for k in first..n {
                if let Some((_, vh)) = b.out.get_mut(k) {
                    vh.routes = if k + 1 == n {
                        std::mem::take(&mut routes)
                    } else {
                        routes.clone()
                    };
                }
            }
        }

        // Services without VirtualService: one `default` route each.
        let retry =
            route::convert_retry_policy(scope.mesh.default_http_retry_policy.as_ref(), false);
        for (i, v) in views.iter().enumerate() {
            if covered.contains(&i) {
                continue;
            }
            for p in v.ports {
                if !is_http_or_sniffed(p.protocol) {
                    continue;
                }
                let host = v.svc.hostname.as_str();
                let hash = self
                    .rule_for(v.svc)
                    .map(|r| service_hash_policy(&r, p.number))
                    .unwrap_or_default();
                let routes = vec![default_route(
                    outbound_cluster(p.number, "", host),
                    host,
                    p.number,
                    retry.clone(),
                    hash,
                )];
                let (domains, alt) = self.service_domains(v.svc, lp, p.number);
                b.push(
                    p.number,
                    domain_name(host, p.number),
                    domains,
                    alt,
                    &known_fqdn,
                    routes,
                );
            }
        }

        if lp != 0 {
            // In name order already (what the route configuration wants), so that the
            // large messages are made in place and not moved again by a sort.
            let mut v: Vec<PendingVhost> = b
                .out
                .into_iter()
                .filter(|(p, _)| *p == lp)
                .map(|(_, vh)| vh)
                .collect();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            return v.into_iter().map(PendingVhost::finish).collect();
        }
        // Unix-socket / HTTP_PROXY listeners: every port; off port 80 only `host:port`
        // domains are kept.
        let mut all: Vec<(u32, VirtualHost)> =
            b.out.into_iter().map(|(p, vh)| (p, vh.finish())).collect();
        all.sort_by_key(|(p, _)| *p);
        all.into_iter()
            .filter_map(|(p, mut vh)| {
                if p != 80 {
                    vh.domains.retain(|d| d.contains(':'));
                    if vh.domains.is_empty() {
                        return None;
                    }
                }
                Some(vh)
            })
            .collect()
    }

    /// Istio's `generateVirtualHostDomains`: host, alternative forms (absolute FQDN,
    /// Kubernetes short names) and the service addresses of this proxy. Ports are left out
    /// (`ignore_port_in_host_matching`) except on port-0 listeners.
    fn service_domains(&self, svc: &Service, lp: u32, port: u32) -> (Vec<String>, Range<usize>) {
        let suffix = if lp != 0 { None } else { Some(port) };
        let mut domains = Vec::with_capacity(4);
        append_domain_port(&mut domains, &svc.hostname, suffix);
        let start = domains.len();
        alt_virtual_hosts(&mut domains, &svc.hostname, suffix, &self.dns_domain);
        let alt = start..domains.len();
        if svc.address != ServiceAddress::Unspecified || !svc.auto_addresses.is_empty() {
            for a in self.scope.service_addresses(svc) {
                if !a.is_empty() && a != "0.0.0.0" {
                    append_domain_port(&mut domains, &a, suffix);
                }
            }
        }
        (domains, alt)
    }
}

/// Sorts virtual hosts by name, moving each (large) message only twice.
fn sort_by_name(vhosts: &mut Vec<VirtualHost>) {
    let mut order: Vec<usize> = (0..vhosts.len()).collect();
    order.sort_by(|a, b| match (vhosts.get(*a), vhosts.get(*b)) {
        (Some(x), Some(y)) => x.name.cmp(&y.name),
        _ => std::cmp::Ordering::Equal,
    });
    let mut slots: Vec<Option<VirtualHost>> = vhosts.drain(..).map(Some).collect();
    vhosts.extend(
        order
            .into_iter()
            .filter_map(|i| slots.get_mut(i).and_then(Option::take)),
    );
}

fn vhost(name: String, domains: Vec<String>, routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name,
        domains,
        routes,
        include_request_attempt_count: true,
        ..Default::default()
    }
}

fn append_domain_port(domains: &mut Vec<String>, d: &str, port: Option<u32>) {
    domains.push(ipv6_compliant(d));
    if let Some(p) = port {
        domains.push(domain_name(d, p));
    }
}

/// Istio's `GenerateAltVirtualHosts` for a proxy in `<ns>.svc.cluster.local`: the absolute
/// FQDN (`host.`) and, for Kubernetes-style hosts, the short forms (appended to `out`).
fn alt_virtual_hosts(out: &mut Vec<String>, hostname: &str, port: Option<u32>, proxy_domain: &str) {
    let mut absolute = String::with_capacity(hostname.len() + 1);
    absolute.push_str(hostname);
    absolute.push('.');
    if let Some(p) = port {
        if hostname.parse::<std::net::IpAddr>().is_err() {
            out.push(absolute.clone());
        }
        out.push(domain_name(&absolute, p));
    } else if hostname.parse::<std::net::IpAddr>().is_err() {
        out.push(absolute);
    }
    let Some(id) = proxy_domain.find(".svc.") else {
        return;
    };
    let svc_suffix = &proxy_domain[id..];
    if !hostname.ends_with(svc_suffix) {
        return;
    }
    let Some(ih) = hostname.find(".svc.") else {
        return;
    };
    let Some(ns) = hostname.find('.') else {
        return;
    };
    if ih == 0 || ns + 1 >= hostname.len() || ns + 1 > ih {
        return;
    }
    let name = &hostname[..ns];
    let name_ns = &hostname[..ih];
    let forms: Vec<String> = if hostname[ns + 1..ih] == proxy_domain[..id] {
        vec![
            name.to_string(),
            format!("{name_ns}.svc"),
            name_ns.to_string(),
        ]
    } else {
        vec![name_ns.to_string(), format!("{name_ns}.svc")]
    };
    for f in forms {
        if let Some(p) = port {
            let with_port = domain_name(&f, p);
            out.push(f);
            out.push(with_port);
        } else {
            out.push(f);
        }
    }
}

/// A virtual host being built: the fields [`vhost`] sets (the message, far larger, is made
/// once the order is known).
struct PendingVhost {
    name: String,
    domains: Vec<String>,
    routes: Vec<Route>,
}

impl PendingVhost {
    fn finish(self) -> VirtualHost {
        vhost(self.name, self.domains, self.routes)
    }
}

/// The virtual hosts of a route configuration being built, with the names and domains
/// already used (Istio's `vhosts` / `vhdomains` sets). Domains are indexed by a
/// case-insensitive hash pointing at where the domain is stored, so nothing is copied.
struct VhostSet {
    out: Vec<(u32, PendingVhost)>,
    names: HashSet<String>,
    /// Whether names can repeat: only VirtualService wrappers can list a host twice (or
    /// share it with another wrapper); services without VirtualService are unique.
    check_names: bool,
    domains: HashMap<u64, (usize, usize)>,
    collisions: Vec<(usize, usize)>,
}

impl VhostSet {
    fn domain_at(&self, (v, d): (usize, usize)) -> Option<&str> {
        self.out
            .get(v)
            .and_then(|(_, vh)| vh.domains.get(d))
            .map(String::as_str)
    }

    fn has_domain(&self, hash: u64, d: &str) -> bool {
        let same = |loc: &(usize, usize)| {
            self.domain_at(*loc)
                .is_some_and(|x| x.eq_ignore_ascii_case(d))
        };
        self.domains.get(&hash).is_some_and(same) || self.collisions.iter().any(same)
    }

    /// Adds a virtual host unless its name is taken; its domains are de-duplicated against
    /// the ones already used (Istio's `dedupeDomains`), and expanded forms (`expanded`:
    /// positions in `candidates`) that are another service's hostname are dropped. A vhost
    /// left without domains is not added.
    fn push(
        &mut self,
        port: u32,
        name: String,
        mut candidates: Vec<String>,
        expanded: Range<usize>,
        known_fqdn: &HashSet<String>,
        routes: Vec<Route>,
    ) {
        if self.check_names {
            if self.names.contains(&name) {
                return;
            }
            self.names.insert(name.clone());
        }
        // Decide which candidates stay: not used before (here or earlier in this vhost).
        let mut hashes: Vec<(u64, bool)> = Vec::with_capacity(candidates.len());
        for (k, d) in candidates.iter().enumerate() {
            let h = lowercase_hash(d);
            let dup_here = hashes
                .iter()
                .zip(candidates.iter())
                .any(|((hh, keep), dd)| *keep && *hh == h && dd.eq_ignore_ascii_case(d));
            let expanded_known = expanded.contains(&k) && known_fqdn.contains(d);
            let keep = !(dup_here || expanded_known || self.has_domain(h, d));
            hashes.push((h, keep));
        }
        let mut flags = hashes.iter().map(|(_, keep)| *keep);
        candidates.retain(|_| flags.next().unwrap_or(false));
        if candidates.is_empty() {
            return;
        }
        let v = self.out.len();
        for (k, (h, _)) in hashes.iter().filter(|(_, keep)| *keep).enumerate() {
            if self.domains.contains_key(h) {
                self.collisions.push((v, k));
            } else {
                self.domains.insert(*h, (v, k));
            }
        }
        self.out.push((
            port,
            PendingVhost {
                name,
                domains: candidates,
                routes,
            },
        ));
    }
}

/// The catch-all virtual host (spec §7): `allow_any` → Passthrough/egress proxy, or
/// `block_all` → 502.
fn catch_all_virtual_host(scope: &ProxyScope<'_>) -> VirtualHost {
    let prefix = || {
        Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
            ..Default::default()
        })
    };
    let (name, action) = match scope.outbound.mode {
        OutboundMode::AllowAny => (
            "allow_any",
            route_pb::Action::Route(no_timeout_action(catch_all_cluster(scope))),
        ),
        OutboundMode::RegistryOnly => (
            "block_all",
            route_pb::Action::DirectResponse(DirectResponseAction {
                status: 502,
                ..Default::default()
            }),
        ),
    };
    VirtualHost {
        name: name.to_string(),
        domains: vec!["*".to_string()],
        routes: vec![Route {
            name: name.to_string(),
            r#match: prefix(),
            action: Some(action),
            ..Default::default()
        }],
        include_request_attempt_count: true,
        ..Default::default()
    }
}

/// Istio's `GetEgressListenerForRDS`: the egress listener with this port (unix sockets:
/// with this bind), else the catch-all one.
fn egress_for_rds(scope: &ProxyScope<'_>, port: u32, bind: &str) -> Option<usize> {
    for (i, e) in scope.egress.iter().enumerate() {
        let Some(p) = &e.port else {
            return Some(i);
        };
        if p.number == port {
            if port == 0 {
                if e.bind == bind {
                    return Some(i);
                }
                continue;
            }
            return Some(i);
        }
    }
    None
}

/// Istio's `selectVirtualServices`: the VirtualService matches some service of the port.
fn selects_services(
    vs: &VsRef<'_>,
    views: &[SvcView<'_>],
    by_host: &HashMap<&str, usize>,
    wildcard_services: &[usize],
) -> bool {
    vs.hosts.iter().any(|h| {
        if by_host.contains_key(h.as_str()) {
            return true;
        }
        if host::is_wildcard(h) {
            views.iter().any(|v| host::matches(h, &v.svc.hostname))
        } else {
            wildcard_services.iter().any(|i| {
                views
                    .get(*i)
                    .is_some_and(|v| host::matches(h, &v.svc.hostname))
            })
        }
    })
}

/// Istio's `MostSpecificWildcardVirtualServiceIndex`: for a service hostname, the
/// VirtualService with the exact host, else with the longest matching wildcard host (first
/// VirtualService wins on identical hosts).
struct VsHostIndex {
    exact: HashMap<String, usize>,
    wildcard: Vec<(String, usize)>,
}

impl VsHostIndex {
    fn new(all: &[VsRef<'_>]) -> VsHostIndex {
        let mut exact = HashMap::new();
        let mut wildcard: Vec<(String, usize)> = Vec::new();
        for (i, vs) in all.iter().enumerate() {
            for h in &vs.hosts {
                if host::is_wildcard(h) {
                    if !wildcard.iter().any(|(w, _)| w == h) {
                        wildcard.push((h.clone(), i));
                    }
                } else {
                    exact.entry(h.clone()).or_insert(i);
                }
            }
        }
        VsHostIndex { exact, wildcard }
    }

    /// The owner (index in the egress listener's VirtualServices) of `svc_host`.
    fn owner(&self, svc_host: &str) -> Option<usize> {
        let needle = if host::is_wildcard(svc_host) {
            if let Some((_, i)) = self.wildcard.iter().find(|(w, _)| w == svc_host) {
                return Some(*i);
            }
            &svc_host[1..]
        } else {
            if let Some(i) = self.exact.get(svc_host) {
                return Some(*i);
            }
            svc_host
        };
        let mut best: Option<(&str, usize)> = None;
        for (w, i) in &self.wildcard {
            if needle.ends_with(&w[1..]) && best.is_none_or(|(b, _)| w.len() > b.len()) {
                best = Some((w.as_str(), *i));
            }
        }
        best.map(|(_, i)| i)
    }
}

/// Istio's `separateVSHostsAndServices`: the VirtualService hosts that are not services,
/// and the services (indices into `views`) the VirtualService is attached to.
fn separate_hosts(
    me: usize,
    vs: &VsRef<'_>,
    views: &[SvcView<'_>],
    by_host: &HashMap<&str, usize>,
    index: &VsHostIndex,
) -> (Vec<String>, Vec<usize>) {
    let mut plain = Vec::new();
    let mut matching = Vec::new();
    for h in vs.hosts.iter().filter(|h| !host::is_wildcard(h)) {
        match by_host.get(h.as_str()) {
            Some(i) => matching.push(*i),
            None => plain.push(h.clone()),
        }
    }
    for h in vs.hosts.iter().filter(|h| host::is_wildcard(h)) {
        let mut found = false;
        for (i, v) in views.iter().enumerate() {
            if !host::matches(&v.svc.hostname, h) {
                continue;
            }
            found = true;
            if index.owner(&v.svc.hostname) == Some(me) {
                matching.push(i);
            }
        }
        if !found {
            plain.push(h.clone());
        }
    }
    (plain, matching)
}

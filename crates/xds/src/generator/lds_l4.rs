//! Filter chains of TCP-class and sniffed ports (spec §4.1.3, §6.4, §6.5): VirtualService
//! `tls` routes (SNI chains) on TLS/HTTPS ports, `tcp` routes (match-all or destination
//! subnet chains) on other ports, and the service's default `tcp_proxy` chain otherwise.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use entryway_model::api;
use entryway_model::registry::{ProxyScope, Service};
use envoy_types::pb::envoy::config::listener::v3::Filter;

use super::super::names::outbound_cluster;
use super::super::rds::common::{
    DrCache, VsByHost, VsRef, config_metadata, destination_cluster, ipv6_only, labels_match,
    wildcard,
};
use super::filters::{single_destination, weighted_destinations};
use super::{ChainBody, ChainOpts, PortSpec};

/// What the L4 chain builders need besides the service.
pub(super) struct L4Ctx<'a, 's, 'c> {
    pub scope: &'a ProxyScope<'s>,
    pub services: &'a HashMap<&'c str, &'c Arc<Service>>,
    pub rules: &'a mut DrCache<'c>,
}

impl L4Ctx<'_, '_, '_> {
    fn rule_for_host(
        &mut self,
        host: &str,
    ) -> Option<std::rc::Rc<entryway_model::registry::scope::EffectiveRule>> {
        self.rules.for_host(self.scope, self.services, host)
    }

    /// Istio's `buildOutboundNetworkFilters`: `tcp_proxy` to the route destination(s).
    fn route_filters(
        &mut self,
        vs: &VsRef<'_>,
        routes: &[api::RouteDestination],
        port: &PortSpec,
    ) -> Vec<Filter> {
        let Some(first) = routes.first() else {
            return Vec::new();
        };
        let first_dest = first.destination.clone().unwrap_or_default();
        let first_host = vs.resolve(&first_dest.host);
        let rule = self.rule_for_host(&first_host);
        if routes.len() == 1 {
            let single = self.single_port(&first_host);
            let cluster = destination_cluster(&first_dest, &first_host, single, port.number);
            return single_destination(
                &cluster.clone(),
                cluster,
                &first_dest.subset,
                port.protocol,
                rule.as_deref(),
            );
        }
        let clusters: Vec<(String, u32)> = routes
            .iter()
            .filter(|r| r.weight > 0)
            .map(|r| {
                let dest = r.destination.clone().unwrap_or_default();
                let h = vs.resolve(&dest.host);
                let single = self.single_port(&h);
                (
                    destination_cluster(&dest, &h, single, port.number),
                    r.weight.unsigned_abs(),
                )
            })
            .collect();
        if clusters.is_empty() {
            return Vec::new();
        }
        let stat_prefix = format!("{}.{}", vs.vs.name, vs.vs.namespace);
        weighted_destinations(&stat_prefix, clusters, port.protocol, rule.as_deref())
    }

    fn single_port(&self, host: &str) -> Option<u32> {
        self.services
            .get(host)
            .and_then(|s| match s.ports.as_slice() {
                [p] => Some(p.number),
                _ => None,
            })
    }

    /// The default chain of a service: `tcp_proxy` to `outbound|<port>||<host>` where the
    /// port is the service's only port, else the listener port.
    fn default_filters(&mut self, svc: &Service, port: &PortSpec) -> Vec<Filter> {
        let number = match svc.ports.as_slice() {
            [p] => p.number,
            _ => port.number,
        };
        let cluster = outbound_cluster(number, "", &svc.hostname);
        let rule = self.rule_for_host(&svc.hostname);
        single_destination(
            &cluster.clone(),
            cluster,
            "",
            port.protocol,
            rule.as_deref(),
        )
    }
}

fn gateway_matches(gateways: &[String]) -> bool {
    gateways.is_empty() || gateways.iter().any(|g| g == "mesh")
}

/// Istio's `matchTLS` for a sidecar.
fn tls_match_applies(m: &api::TlsMatchAttributes, scope: &ProxyScope<'_>, port: u32) -> bool {
    gateway_matches(&m.gateways)
        && labels_match(&m.source_labels, &scope.proxy.labels)
        && (m.port == 0 || m.port == port)
        && (m.source_namespace.is_empty() || m.source_namespace == scope.proxy.namespace)
}

/// Istio's `matchTCP` for a sidecar.
fn tcp_match_applies(m: &api::L4MatchAttributes, scope: &ProxyScope<'_>, port: u32) -> bool {
    gateway_matches(&m.gateways)
        && labels_match(&m.source_labels, &scope.proxy.labels)
        && (m.port == 0 || m.port == port)
        && (m.source_namespace.is_empty() || m.source_namespace == scope.proxy.namespace)
}

fn network_chain(
    sni_hosts: Vec<String>,
    cidrs: Vec<String>,
    metadata: Option<envoy_types::pb::envoy::config::core::v3::Metadata>,
    filters: Vec<Filter>,
) -> Option<ChainOpts> {
    if filters.is_empty() {
        return None;
    }
    Some(ChainOpts {
        sni_hosts,
        destination_cidrs: cidrs,
        application_protocols: Vec::new(),
        transport_protocol: String::new(),
        metadata,
        body: ChainBody::Network(filters),
    })
}

fn vs_metadata(vs: &VsRef<'_>) -> envoy_types::pb::envoy::config::core::v3::Metadata {
    config_metadata("virtual-service", &vs.vs.namespace, &vs.vs.name)
}

/// Istio's `buildSidecarOutboundTCPListenerOpts`: TLS chains then TCP chains for `svc` on
/// `port`; `bind` is the listener bind and `cidr` the service CIDR (if its address is one).
pub(super) fn tcp_listener_chains(
    ctx: &mut L4Ctx<'_, '_, '_>,
    svc: &Service,
    bind: &str,
    port: &PortSpec,
    cidr: Option<&str>,
    svc_addr: &str,
    vss: &VsByHost<'_, '_>,
) -> Vec<ChainOpts> {
    let configs = vss.for_host(&svc.hostname);
    let cidrs: Vec<String> = cidr.map(str::to_string).into_iter().collect();
    let mut out = tls_chains(ctx, svc, bind, port, cidrs.clone(), svc_addr, &configs);
    out.extend(tcp_chains(ctx, svc, port, cidrs, &configs));
    out
}

/// Istio's `buildSidecarOutboundTLSFilterChainOpts` (TLS/HTTPS ports only).
fn tls_chains(
    ctx: &mut L4Ctx<'_, '_, '_>,
    svc: &Service,
    bind: &str,
    port: &PortSpec,
    mut cidrs: Vec<String>,
    svc_addr: &str,
    configs: &[&VsRef<'_>],
) -> Vec<ChainOpts> {
    if !port.protocol.is_tls() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut handled: HashSet<String> = HashSet::new();
    let mut has_tls_match = false;
    for vs in configs {
        for tls in &vs.vs.spec.tls {
            for m in &tls.r#match {
                if !tls_match_applies(m, ctx.scope, port.number) {
                    continue;
                }
                // As in Istio, a match's subnets replace the service CIDR for it and every
                // later match.
                if !m.destination_subnets.is_empty() && port.number > 0 {
                    cidrs = m.destination_subnets.clone();
                }
                let key = format!(
                    "{}|{}",
                    m.sni_hosts.join(","),
                    m.destination_subnets.join(",")
                );
                if handled.insert(key) {
                    let filters = ctx.route_filters(vs, &tls.route, port);
                    out.extend(network_chain(
                        m.sni_hosts.clone(),
                        cidrs.clone(),
                        Some(vs_metadata(vs)),
                        filters,
                    ));
                    has_tls_match = true;
                }
            }
        }
    }
    if !has_tls_match {
        // SNI matching only where the listener is shared: CIDR services, or no VIP on the
        // wildcard listener.
        let wc = wildcard(ctx.scope);
        let addr = if svc_addr.contains('/') {
            ""
        } else if ipv6_only(ctx.scope) && svc_addr == "0.0.0.0" {
            "::"
        } else {
            svc_addr
        };
        let sni = if !cidrs.is_empty() || addr.is_empty() || (addr == wc && bind == wc) {
            vec![svc.hostname.clone()]
        } else {
            Vec::new()
        };
        let filters = ctx.default_filters(svc, port);
        out.extend(network_chain(sni, cidrs, None, filters));
    }
    out
}

/// Istio's `buildSidecarOutboundTCPFilterChainOpts` (non-TLS ports): the first `tcp[]` rule
/// without match (or with a match without subnets) is the match-all chain; subnet matches
/// become `prefix_ranges` chains; the default chain is added when nothing matches all.
fn tcp_chains(
    ctx: &mut L4Ctx<'_, '_, '_>,
    svc: &Service,
    port: &PortSpec,
    mut cidrs: Vec<String>,
    configs: &[&VsRef<'_>],
) -> Vec<ChainOpts> {
    if port.protocol.is_tls() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut default_added = false;
    'rules: for vs in configs {
        for tcp in &vs.vs.spec.tcp {
            if tcp.r#match.is_empty() {
                let filters = ctx.route_filters(vs, &tcp.route, port);
                out.extend(network_chain(
                    Vec::new(),
                    cidrs.clone(),
                    Some(vs_metadata(vs)),
                    filters,
                ));
                default_added = true;
                break 'rules;
            }
            let mut subnets: Vec<String> = Vec::new();
            for m in &tcp.r#match {
                if !tcp_match_applies(m, ctx.scope, port.number) {
                    continue;
                }
                if m.destination_subnets.is_empty() || port.number == 0 {
                    let filters = ctx.route_filters(vs, &tcp.route, port);
                    out.extend(network_chain(
                        Vec::new(),
                        cidrs.clone(),
                        Some(vs_metadata(vs)),
                        filters,
                    ));
                    default_added = true;
                    break 'rules;
                }
                subnets.extend(m.destination_subnets.iter().cloned());
            }
            if !subnets.is_empty() {
                let filters = ctx.route_filters(vs, &tcp.route, port);
                out.extend(network_chain(Vec::new(), subnets.clone(), None, filters));
                subnets.sort();
                cidrs.sort();
                if subnets == cidrs {
                    default_added = true;
                }
            }
        }
    }
    if !default_added {
        let filters = ctx.default_filters(svc, port);
        out.extend(network_chain(Vec::new(), cidrs, None, filters));
    }
    out
}

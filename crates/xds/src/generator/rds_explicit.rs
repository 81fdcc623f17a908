//! Route configuration `explicit_proxy` of the explicit-proxy listener (see
//! [`crate::generator::explicit`]).
//!
//! - The virtual hosts of the captured-traffic route configuration `"<P>"` of every HTTP-ish
//!   service port P, built by the same code (so VirtualService and DestinationRule effects,
//!   port matches included, apply equally), with each domain `d` turned into `d:P` (and kept
//!   bare too on port 80). Ports stay significant (`ignore_port_in_host_matching: false`).
//! - Per service port (any protocol but UDP), a CONNECT route on domain `host:port` to
//!   `outbound|<port>||<host>`, terminating the tunnel there: the tunnel's bytes go raw to the
//!   cluster, so a client's TLS passes through untouched. It is put first in the virtual host
//!   that already serves that domain, else in a virtual host of its own.
//! - Services without usable addresses (resolution NONE or DYNAMIC_DNS) use the dynamic
//!   forward proxy cluster: their ORIGINAL_DST cluster would connect back to the proxy.
//! - The catch-all virtual host: ALLOW_ANY sends HTTP and CONNECT to the dynamic forward
//!   proxy (or the Sidecar's `egressProxy`); REGISTRY_ONLY answers both with 502.

use std::collections::{BTreeSet, HashSet};

use entryway_model::registry::{OutboundMode, Resolution};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    route as route_pb, route_action, route_match,
};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use super::super::explicit::{CONNECT, EXPLICIT_PROXY_PASSTHROUGH};
use super::super::names::{PASSTHROUGH_CLUSTER, outbound_cluster, parse_outbound_cluster};
use super::common::{catch_all_cluster, domain_name};
use super::route::{is_http_or_sniffed, no_timeout_action};
use super::{MAX_DIRECT_RESPONSE_BODY, RdsBuilder, sort_by_name, vhost};

/// Name of the CONNECT routes.
const CONNECT_ROUTE: &str = "connect";

impl RdsBuilder<'_, '_> {
    /// The `explicit_proxy` route configuration (`name`).
    pub(super) fn explicit_route_configuration(&self, name: &str) -> RouteConfiguration {
        let scope = self.scope;
        // The captured-traffic virtual hosts of every HTTP-ish service port, with the port
        // added to each domain (ports matter here: one listener serves them all).
        let ports: BTreeSet<u32> = scope
            .services
            .iter()
            .flat_map(|s| s.ports.iter())
            .filter(|p| is_http_or_sniffed(p.protocol))
            .map(|p| p.number)
            .collect();
        let mut vhosts: Vec<VirtualHost> = Vec::new();
        let mut names: HashSet<String> = HashSet::new();
        let mut domains: HashSet<String> = HashSet::new();
        for port in ports {
            let mut port_vhosts = self.virtual_hosts(port, &port.to_string());
            sort_by_name(&mut port_vhosts);
            for mut vh in port_vhosts {
                if !names.insert(vh.name.clone()) {
                    continue;
                }
                let mut with_port = Vec::with_capacity(vh.domains.len() * 2);
                for d in &vh.domains {
                    if port == 80 {
                        with_port.push(d.clone());
                    }
                    with_port.push(if d.starts_with('[') {
                        format!("{d}:{port}")
                    } else {
                        domain_name(d, port)
                    });
                }
                with_port.retain(|d| domains.insert(d.to_ascii_lowercase()));
                if with_port.is_empty() {
                    continue;
                }
                vh.domains = with_port;
                vhosts.push(vh);
            }
        }

        let services = scope.services.as_slice();
        let dynamic: HashSet<&str> = services
            .iter()
            .filter(|s| {
                matches!(
                    s.resolution,
                    Resolution::Passthrough | Resolution::DynamicDns
                )
            })
            .map(|s| s.hostname.as_str())
            .collect();
        if !dynamic.is_empty() {
            for r in vhosts.iter_mut().flat_map(|vh| vh.routes.iter_mut()) {
                redirect_dynamic(r, &dynamic);
            }
        }

        let mut own: Vec<VirtualHost> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for svc in services {
            for port in svc.ports.iter().filter(|p| !p.protocol.is_udp()) {
                let domain = domain_name(&svc.hostname, port.number);
                if !seen.insert(domain.to_ascii_lowercase()) {
                    continue;
                }
                let cluster = if dynamic.contains(svc.hostname.as_str()) {
                    EXPLICIT_PROXY_PASSTHROUGH.to_string()
                } else {
                    outbound_cluster(port.number, "", &svc.hostname)
                };
                let route = connect_route(CONNECT_ROUTE, cluster);
                let has =
                    |vh: &VirtualHost| vh.domains.iter().any(|d| d.eq_ignore_ascii_case(&domain));
                if let Some(vh) = vhosts.iter_mut().find(|vh| has(vh)) {
                    vh.routes.insert(0, route);
                } else {
                    own.push(vhost(
                        format!("connect:{domain}"),
                        vec![domain],
                        vec![route],
                    ));
                }
            }
        }
        sort_by_name(&mut own);
        vhosts.append(&mut own);
        vhosts.push(self.explicit_catch_all());
        RouteConfiguration {
            name: name.to_string(),
            virtual_hosts: vhosts,
            validate_clusters: Some(BoolValue { value: false }),
            max_direct_response_body_size_bytes: Some(UInt32Value {
                value: MAX_DIRECT_RESPONSE_BODY,
            }),
            ignore_port_in_host_matching: false,
            ..Default::default()
        }
    }

    /// `allow_any` (dynamic forward proxy or egress proxy) or `block_all` (502), for plain
    /// HTTP and CONNECT alike.
    fn explicit_catch_all(&self) -> VirtualHost {
        let prefix = RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
            ..Default::default()
        };
        let (name, routes) = match self.scope.outbound.mode {
            OutboundMode::AllowAny => {
                let mut cluster = catch_all_cluster(self.scope);
                if cluster == PASSTHROUGH_CLUSTER {
                    cluster = EXPLICIT_PROXY_PASSTHROUGH.to_string();
                }
                let http = Route {
                    name: "allow_any".to_string(),
                    r#match: Some(prefix),
                    action: Some(route_pb::Action::Route(no_timeout_action(cluster.clone()))),
                    ..Default::default()
                };
                (
                    "allow_any",
                    vec![connect_route("allow_any_connect", cluster), http],
                )
            }
            OutboundMode::RegistryOnly => {
                let refuse = |name: &str, m: RouteMatch| Route {
                    name: name.to_string(),
                    r#match: Some(m),
                    action: Some(route_pb::Action::DirectResponse(DirectResponseAction {
                        status: 502,
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                (
                    "block_all",
                    vec![
                        refuse("block_all_connect", connect_match()),
                        refuse("block_all", prefix),
                    ],
                )
            }
        };
        vhost(name.to_string(), vec!["*".to_string()], routes)
    }
}

fn connect_match() -> RouteMatch {
    RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::ConnectMatcher(
            route_match::ConnectMatcher {},
        )),
        ..Default::default()
    }
}

/// A CONNECT route terminating the tunnel into `cluster` (raw bytes upstream).
fn connect_route(name: &str, cluster: String) -> Route {
    let mut action: RouteAction = no_timeout_action(cluster);
    action.upgrade_configs = vec![route_action::UpgradeConfig {
        upgrade_type: CONNECT.to_string(),
        connect_config: Some(route_action::upgrade_config::ConnectConfig::default()),
        ..Default::default()
    }];
    Route {
        name: name.to_string(),
        r#match: Some(connect_match()),
        action: Some(route_pb::Action::Route(action)),
        ..Default::default()
    }
}

/// Points the route's clusters of address-less services at the dynamic forward proxy.
fn redirect_dynamic(r: &mut Route, dynamic: &HashSet<&str>) {
    let Some(route_pb::Action::Route(a)) = r.action.as_mut() else {
        return;
    };
    let is_dynamic =
        |c: &str| parse_outbound_cluster(c).is_some_and(|(_, _, h)| dynamic.contains(h));
    match a.cluster_specifier.as_mut() {
        Some(route_action::ClusterSpecifier::Cluster(c)) if is_dynamic(c) => {
            *c = EXPLICIT_PROXY_PASSTHROUGH.to_string();
        }
        Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
            for c in &mut w.clusters {
                if is_dynamic(&c.name) {
                    c.name = EXPLICIT_PROXY_PASSTHROUGH.to_string();
                }
            }
        }
        _ => {}
    }
}

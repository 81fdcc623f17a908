//! What a proxy would receive, in the forms people read: Envoy's admin `/config_dump`
//! ([`config_dump`]), `istioctl proxy-config`-style tables ([`summary`]), and a static
//! bootstrap with every resource inline ([`inline_static`]) that real Envoy can check with
//! `--mode validate` and serve without a control plane.

use std::fmt::Write as _;

use envoy_types::pb::envoy::admin::v3::{
    ClustersConfigDump, ConfigDump, EndpointsConfigDump, ListenersConfigDump, RoutesConfigDump,
    clusters_config_dump::DynamicCluster,
    endpoints_config_dump::DynamicEndpointConfig,
    listeners_config_dump::{DynamicListener, DynamicListenerState},
    routes_config_dump::DynamicRouteConfig,
};
use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster, cluster::ClusterDiscoveryType, cluster::DiscoveryType,
};
use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use envoy_types::pb::envoy::config::listener::v3::{Filter, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, route, route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;
use prost::{Message, Name};
use serde_json::Value;

use crate::generator::ProxyConfig;
use crate::json::{JsonError, to_json_value};

/// Envoy's `/config_dump` (with endpoints, as `?include_eds` gives) for `cfg`; every
/// resource carries `version`.
pub fn config_dump(cfg: &ProxyConfig, version: &str) -> ConfigDump {
    let clusters = ClustersConfigDump {
        version_info: version.to_string(),
        dynamic_active_clusters: cfg
            .clusters
            .iter()
            .map(|c| DynamicCluster {
                version_info: version.to_string(),
                cluster: Some(pack_any(c.clone())),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let listeners = ListenersConfigDump {
        version_info: version.to_string(),
        dynamic_listeners: cfg
            .listeners
            .iter()
            .map(|l| DynamicListener {
                name: l.name.clone(),
                active_state: Some(DynamicListenerState {
                    version_info: version.to_string(),
                    listener: Some(pack_any(l.clone())),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let routes = RoutesConfigDump {
        dynamic_route_configs: cfg
            .routes
            .iter()
            .map(|r| DynamicRouteConfig {
                version_info: version.to_string(),
                route_config: Some(pack_any(r.clone())),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let endpoints = EndpointsConfigDump {
        dynamic_endpoint_configs: cfg
            .endpoints
            .iter()
            .map(|e| DynamicEndpointConfig {
                version_info: version.to_string(),
                endpoint_config: Some(pack_any(e.clone())),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    ConfigDump {
        configs: vec![
            pack_any(clusters),
            pack_any(listeners),
            pack_any(routes),
            pack_any(endpoints),
        ],
    }
}

/// The config dump as canonical proto3 JSON (keys sorted).
pub fn config_dump_json(cfg: &ProxyConfig, version: &str) -> Result<Value, JsonError> {
    to_json_value(&config_dump(cfg, version))
}

fn unpack<M: Message + Name + Default>(any: &Any) -> Option<M> {
    if any.type_url != M::type_url() {
        return None;
    }
    M::decode(any.value.as_slice()).ok()
}

fn typed<M: Message + Name + Default>(f: &Filter) -> Option<M> {
    match &f.config_type {
        Some(filter::ConfigType::TypedConfig(any)) => unpack(any),
        _ => None,
    }
}

/// Listeners with their RDS routes inlined and clusters with their EDS endpoints inlined
/// (EDS clusters become STATIC), for a bootstrap that needs no management server.
pub fn inline_static(cfg: &ProxyConfig) -> (Vec<Listener>, Vec<Cluster>) {
    let route = |name: &str| -> RouteConfiguration {
        cfg.routes
            .iter()
            .find(|r| r.name == name)
            .cloned()
            .unwrap_or_else(|| RouteConfiguration {
                name: name.to_string(),
                ..Default::default()
            })
    };
    let inline_filter = |f: &Filter| -> Filter {
        let Some(mut hcm) = typed::<HttpConnectionManager>(f) else {
            return f.clone();
        };
        if let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier {
            hcm.route_specifier = Some(RouteSpecifier::RouteConfig(route(&rds.route_config_name)));
        }
        Filter {
            name: f.name.clone(),
            config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
        }
    };
    let listeners = cfg
        .listeners
        .iter()
        .map(|l| {
            let mut l = l.clone();
            for chain in l
                .filter_chains
                .iter_mut()
                .chain(l.default_filter_chain.iter_mut())
            {
                chain.filters = chain.filters.iter().map(inline_filter).collect();
            }
            l
        })
        .collect();
    let clusters = cfg
        .clusters
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if c.cluster_discovery_type
                == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
            {
                c.cluster_discovery_type =
                    Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
                c.eds_cluster_config = None;
                c.load_assignment = Some(
                    cfg.endpoints
                        .iter()
                        .find(|e| e.cluster_name == c.name)
                        .cloned()
                        .unwrap_or_else(|| ClusterLoadAssignment {
                            cluster_name: c.name.clone(),
                            ..Default::default()
                        }),
                );
            }
            c
        })
        .collect();
    (listeners, clusters)
}

fn socket(a: Option<&envoy_types::pb::envoy::config::core::v3::Address>) -> String {
    match a.and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => {
            let port = match &s.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(p)) => p.to_string(),
                Some(socket_address::PortSpecifier::NamedPort(n)) => n.clone(),
                None => String::new(),
            };
            format!("{}:{port}", s.address)
        }
        Some(address::Address::Pipe(p)) => format!("unix://{}", p.path),
        _ => "-".to_string(),
    }
}

fn filter_destination(f: &Filter) -> Option<String> {
    if let Some(hcm) = typed::<HttpConnectionManager>(f) {
        return Some(match hcm.route_specifier {
            Some(RouteSpecifier::Rds(r)) => format!("Route: {}", r.route_config_name),
            Some(RouteSpecifier::RouteConfig(r)) => format!("Inline Route: {}", r.name),
            _ => "HTTP".to_string(),
        });
    }
    if let Some(tcp) = typed::<TcpProxy>(f) {
        return Some(match tcp.cluster_specifier {
            Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => format!("Cluster: {c}"),
            Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => format!(
                "WeightedClusters: {}",
                w.clusters
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            None => "TCP".to_string(),
        });
    }
    None
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.len());
            }
        }
    }
    let line = |out: &mut String, cells: Vec<&str>| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                let _ = write!(out, "{c}");
            } else {
                let _ = write!(out, "{c:<w$}  ", w = widths.get(i).copied().unwrap_or(0));
            }
        }
        out.push('\n');
    };
    line(out, header.to_vec());
    for r in rows {
        line(out, r.iter().map(String::as_str).collect());
    }
}

/// `istioctl proxy-config`-style tables of listeners, routes, clusters and endpoints.
pub fn summary(cfg: &ProxyConfig) -> String {
    let mut out = String::new();
    let mut rows = Vec::new();
    for l in &cfg.listeners {
        let addr = socket(l.address.as_ref());
        let chains = l
            .filter_chains
            .iter()
            .map(|c| (c, false))
            .chain(l.default_filter_chain.iter().map(|c| (c, true)));
        for (chain, is_default) in chains {
            let m = chain.filter_chain_match.as_ref();
            let mut matches = Vec::new();
            if let Some(m) = m {
                if let Some(p) = &m.destination_port {
                    matches.push(format!("port={}", p.value));
                }
                if !m.server_names.is_empty() {
                    matches.push(format!("SNI: {}", m.server_names.join(",")));
                }
                if !m.prefix_ranges.is_empty() {
                    matches.push(format!(
                        "Addr: {}",
                        m.prefix_ranges
                            .iter()
                            .map(|p| format!(
                                "{}/{}",
                                p.address_prefix,
                                p.prefix_len.as_ref().map_or(0, |v| v.value)
                            ))
                            .collect::<Vec<_>>()
                            .join(",")
                    ));
                }
                if !m.transport_protocol.is_empty() {
                    matches.push(format!("Trans: {}", m.transport_protocol));
                }
                if !m.application_protocols.is_empty() {
                    matches.push(format!("App: {}", m.application_protocols.join(",")));
                }
            }
            if is_default {
                matches.push("(default chain)".into());
            }
            if matches.is_empty() {
                matches.push("ALL".into());
            }
            let dest = chain
                .filters
                .iter()
                .filter_map(filter_destination)
                .collect::<Vec<_>>()
                .join("; ");
            rows.push(vec![l.name.clone(), addr.clone(), matches.join("; "), dest]);
        }
    }
    out.push_str("LISTENERS\n");
    table(
        &mut out,
        &["NAME", "ADDRESS", "MATCH", "DESTINATION"],
        &rows,
    );

    let mut rows = Vec::new();
    for r in &cfg.routes {
        for vh in &r.virtual_hosts {
            for rt in &vh.routes {
                let m = match rt.r#match.as_ref().and_then(|m| m.path_specifier.as_ref()) {
                    Some(route_match::PathSpecifier::Prefix(p)) => format!("{p}*"),
                    Some(route_match::PathSpecifier::Path(p)) => p.clone(),
                    Some(route_match::PathSpecifier::SafeRegex(re)) => {
                        format!("regex {}", re.regex)
                    }
                    Some(other) => format!("{other:?}"),
                    None => "-".into(),
                };
                let action = match &rt.action {
                    Some(route::Action::Route(ra)) => match &ra.cluster_specifier {
                        Some(route_action::ClusterSpecifier::Cluster(c)) => c.clone(),
                        Some(route_action::ClusterSpecifier::WeightedClusters(w)) => w
                            .clusters
                            .iter()
                            .map(|c| {
                                format!("{}({})", c.name, c.weight.as_ref().map_or(0, |v| v.value))
                            })
                            .collect::<Vec<_>>()
                            .join(","),
                        _ => "route".into(),
                    },
                    Some(route::Action::Redirect(_)) => "redirect".into(),
                    Some(route::Action::DirectResponse(d)) => {
                        format!("direct_response {}", d.status)
                    }
                    _ => "-".into(),
                };
                rows.push(vec![
                    r.name.clone(),
                    vh.name.clone(),
                    vh.domains.join(","),
                    m,
                    action,
                ]);
            }
        }
    }
    out.push_str("\nROUTES\n");
    table(
        &mut out,
        &["NAME", "VIRTUAL HOST", "DOMAINS", "MATCH", "DESTINATION"],
        &rows,
    );

    let mut rows = Vec::new();
    for c in &cfg.clusters {
        let (fqdn, port, subset, dir) =
            match crate::generator::names::parse_outbound_cluster(&c.name) {
                Some((p, s, h)) => (
                    h.to_string(),
                    p.to_string(),
                    s.to_string(),
                    "outbound".to_string(),
                ),
                None => (c.name.clone(), "-".into(), "-".into(), "-".into()),
            };
        let kind = match &c.cluster_discovery_type {
            Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(*t)
                .map(|t| t.as_str_name().to_string())
                .unwrap_or_else(|_| t.to_string()),
            Some(ClusterDiscoveryType::ClusterType(ct)) => dns_cluster_kind(ct)
                .map(str::to_string)
                .unwrap_or_else(|| ct.name.clone()),
            None => "STATIC".into(),
        };
        let dr = c
            .metadata
            .as_ref()
            .and_then(|m| m.filter_metadata.get("istio"))
            .and_then(|s| s.fields.get("config"))
            .and_then(|v| match &v.kind {
                Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(s)) => {
                    let mut parts = s.rsplit('/');
                    let name = parts.next().unwrap_or_default();
                    let _kind = parts.next();
                    let ns = parts.next().unwrap_or_default();
                    Some(format!("{name}.{ns}"))
                }
                _ => None,
            })
            .unwrap_or_else(|| "-".into());
        rows.push(vec![fqdn, port, subset, dir, kind, dr]);
    }
    out.push_str("\nCLUSTERS\n");
    table(
        &mut out,
        &[
            "SERVICE FQDN",
            "PORT",
            "SUBSET",
            "DIRECTION",
            "TYPE",
            "DESTINATION RULE",
        ],
        &rows,
    );

    let mut rows = Vec::new();
    let mut endpoint_rows = |cla: &ClusterLoadAssignment| {
        for le in &cla.endpoints {
            for lb in &le.lb_endpoints {
                let addr = match &lb.host_identifier {
                    Some(lb_endpoint::HostIdentifier::Endpoint(e)) => socket(e.address.as_ref()),
                    _ => "-".into(),
                };
                let weight = lb.load_balancing_weight.as_ref().map_or(1, |w| w.value);
                rows.push(vec![
                    addr,
                    "HEALTHY".into(),
                    weight.to_string(),
                    cla.cluster_name.clone(),
                ]);
            }
        }
    };
    for cla in &cfg.endpoints {
        endpoint_rows(cla);
    }
    for c in &cfg.clusters {
        if let Some(cla) = &c.load_assignment {
            let mut cla = cla.clone();
            if cla.cluster_name.is_empty() {
                cla.cluster_name.clone_from(&c.name);
            }
            endpoint_rows(&cla);
        }
    }
    out.push_str("\nENDPOINTS\n");
    table(
        &mut out,
        &["ENDPOINT", "STATUS", "WEIGHT", "CLUSTER"],
        &rows,
    );
    out
}

/// Total encoded protobuf size of every resource (what ADS would put on the wire).
pub fn encoded_len(cfg: &ProxyConfig) -> usize {
    cfg.listeners
        .iter()
        .map(Message::encoded_len)
        .sum::<usize>()
        + cfg.routes.iter().map(Message::encoded_len).sum::<usize>()
        + cfg.clusters.iter().map(Message::encoded_len).sum::<usize>()
        + cfg
            .endpoints
            .iter()
            .map(Message::encoded_len)
            .sum::<usize>()
}

/// `STRICT_DNS` / `LOGICAL_DNS` for Envoy's typed DNS cluster (what the `type` of such a
/// cluster was before the typed cluster replaced it), `None` for other cluster types.
fn dns_cluster_kind(
    ct: &envoy_types::pb::envoy::config::cluster::v3::cluster::CustomClusterType,
) -> Option<&'static str> {
    use envoy_types::pb::envoy::extensions::clusters::dns::v3::DnsCluster;
    use prost::Message as _;
    if ct.name != crate::generator::cds::DNS_CLUSTER_TYPE {
        return None;
    }
    let any = ct.typed_config.as_ref()?;
    let dns = DnsCluster::decode(any.value.as_slice()).ok()?;
    Some(if dns.all_addresses_in_single_endpoint {
        "LOGICAL_DNS"
    } else {
        "STRICT_DNS"
    })
}

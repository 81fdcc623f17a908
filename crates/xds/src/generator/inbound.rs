//! The inbound side of a sidecar: what a workload's proxy does with traffic addressed to the
//! workload (Istio's `buildSidecarInboundListeners`, `buildInboundClusters`).
//!
//! A proxy is a workload of the services whose endpoints carry one of its addresses
//! ([`service_targets`]); each distinct workload (target) port gets filter chains that accept
//! what the port's PeerAuthentication mode allows and forward to the application:
//!
//! | mode | HTTP port | TCP port | unnamed (sniffed) port |
//! | --- | --- | --- | --- |
//! | STRICT | mTLS → HCM | mTLS → tcp_proxy | mTLS (`istio-http/*`) → HCM; mTLS → tcp_proxy |
//! | PERMISSIVE | mTLS (Istio ALPNs) → HCM; plain → HCM | mTLS → tcp_proxy; plain → tcp_proxy; the app's own TLS → tcp_proxy | the STRICT chains, plain HTTP → HCM, plain → tcp_proxy, the app's own TLS → tcp_proxy |
//! | DISABLE | plain → HCM | plain → tcp_proxy | plain HTTP → HCM; plain → tcp_proxy |
//!
//! mTLS chains terminate with the workload certificate (SDS `default`), require a client
//! certificate chaining to the mesh root (SDS `ROOTCA`) with a SPIFFE identity of the trust
//! domain, and the HCM forwards the peer's identity in `x-forwarded-client-cert`
//! (`APPEND_FORWARD`, subject/URI/DNS of the client certificate), as Istio does.
//!
//! Where the traffic comes from depends on how inbound traffic reaches Envoy:
//! - captured (`INTERCEPTION_MODE=REDIRECT`): one listener `virtualInbound` on
//!   `proxyInboundListenPort` (15006) with the chains matched by destination port, plus
//!   passthrough chains for ports of no service (to `InboundPassthroughCluster`, in the
//!   workload-level mode) and a blackhole chain for 15006 itself; inbound clusters are
//!   ORIGINAL_DST from 127.0.0.6 (mesh `inboundTrafficPolicy` PASSTHROUGH, the default) or
//!   127.0.0.1 (LOCALHOST);
//! - not captured (`NONE`): one listener per workload port bound at the workload's address,
//!   forwarding to the application on 127.0.0.1 at the same port (the application listens on
//!   loopback, the sidecar on the address the mesh sends to).
//!
//! Upstream Envoy has no `istio.alpn` filter, so Entryway's clients offer the ALPN
//! `istio-peer-exchange, istio` for every mTLS connection: on HTTP and TCP ports that matches
//! the Istio-ALPN chain; on sniffed ports it matches the mTLS TCP chain (no HCM, so no XFCC).

use std::collections::BTreeMap;
use std::net::IpAddr;

use entryway_model::api::{InboundTrafficPolicyMode, MtlsMode, Protocol};
use entryway_model::registry::ProxyScope;
use entryway_model::registry::peer_authn::{PeerPolicy, workload_policy};
use entryway_model::registry::targets::{ServiceTarget, service_targets};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3 as endpoint;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3 as route;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use super::lds::filters::{HTTP_CONNECTION_MANAGER, ROUTER, http_filter, network_filter};
use super::names::{
    BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER, VIRTUAL_INBOUND_LISTENER, inbound_cluster,
    listener_name,
};
use super::policy::{
    self, ClusterBuild, SDS_DEFAULT_RESOURCE, SDS_ROOT_RESOURCE, combined_validation,
    default_common_tls_context, sds_secret_config,
};
use super::rds::common::{duration, pack, zero_duration};

const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
const ORIGINAL_DST: &str = "envoy.filters.listener.original_dst";
const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";
const TLS: &str = "tls";
const RAW_BUFFER: &str = "raw_buffer";
/// Istio's `allIstioMtlsALPNs`.
const ALL_ISTIO_MTLS_ALPNS: [&str; 5] = [
    "istio",
    "istio-peer-exchange",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];
/// Istio's `mtlsHTTPALPNs`.
const MTLS_HTTP_ALPNS: [&str; 3] = ["istio-http/1.0", "istio-http/1.1", "istio-h2"];
/// Istio's `mtlsTCPWithMxcALPNs`.
const MTLS_TCP_ALPNS: [&str; 2] = ["istio-peer-exchange", "istio"];
/// Istio's `plaintextHTTPALPNs`.
const PLAINTEXT_HTTP_ALPNS: [&str; 2] = ["http/1.1", "h2c"];
/// Server ALPN of terminated mTLS on HTTP chains (Istio: "istio" would break h2).
const SERVER_HTTP_ALPNS: [&str; 2] = ["h2", "http/1.1"];
/// Server ALPN of terminated mTLS on TCP chains (metadata exchange advertised, as Istio).
const SERVER_TCP_ALPNS: [&str; 3] = ["istio-peer-exchange", "h2", "http/1.1"];
/// Istio's inbound cipher suites.
const CIPHER_SUITES: [&str; 6] = [
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
];
/// The source address of Envoy's connections to the application (see the capture rules).
const INBOUND_SOURCE_V4: &str = "127.0.0.6";
const INBOUND_SOURCE_V6: &str = "::6";

/// One workload port and what serves it.
#[derive(Debug, Clone)]
pub struct InboundPort<'a> {
    /// The first service (in creation order) with this workload port.
    pub target: ServiceTarget<'a>,
    /// Its PeerAuthentication mode.
    pub mode: MtlsMode,
}

/// How a port's traffic is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Http,
    Tcp,
    Auto,
}

fn class_of(p: Protocol) -> Class {
    if p.is_http() {
        Class::Http
    } else if p.is_unsupported() {
        Class::Auto
    } else {
        Class::Tcp
    }
}

/// The proxy's workload ports (one per target port, the oldest service's), sorted by port,
/// and the workload's PeerAuthentication policy.
pub fn inbound_ports<'a>(scope: &ProxyScope<'a>) -> (Vec<InboundPort<'a>>, PeerPolicy) {
    let targets = service_targets(scope.registry, scope.proxy);
    // The workload's labels: the proxy's own, else its endpoint's (Istio's
    // `GetProxyWorkloadLabels` for WorkloadEntries).
    let labels: BTreeMap<String, String> = if scope.proxy.labels.is_empty() {
        targets
            .first()
            .map(|t| t.endpoint.labels.clone())
            .unwrap_or_default()
    } else {
        scope.proxy.labels.clone()
    };
    let policy = workload_policy(scope.registry, scope.mesh, &scope.proxy.namespace, &labels);
    let mut by_port: BTreeMap<u32, ServiceTarget<'a>> = BTreeMap::new();
    for t in targets {
        by_port.entry(t.target_port).or_insert(t);
    }
    let ports = by_port
        .into_values()
        .map(|target| InboundPort {
            mode: policy.mode_for_port(target.target_port),
            target,
        })
        .collect();
    (ports, policy)
}

/// The first address of the workload that can be bound (not loopback).
fn workload_address(scope: &ProxyScope<'_>) -> Option<IpAddr> {
    scope
        .proxy
        .ips
        .iter()
        .copied()
        .find(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

/// The inbound listeners: `virtualInbound` when inbound traffic is captured, else one per
/// workload port (none without service targets).
pub fn listeners(scope: &ProxyScope<'_>) -> Vec<Listener> {
    let (ports, policy) = inbound_ports(scope);
    if scope.proxy.inbound_capture {
        return vec![virtual_inbound(scope, &ports, &policy)];
    }
    let Some(ip) = workload_address(scope) else {
        return Vec::new();
    };
    ports
        .iter()
        .map(|p| {
            let port = p.target.target_port;
            let chains = port_chains(scope, p, false);
            Listener {
                name: listener_name(&ip.to_string(), port),
                address: Some(socket_address(&ip.to_string(), port)),
                listener_filters: inspectors(&chains),
                filter_chains: chains,
                traffic_direction: core::TrafficDirection::Inbound as i32,
                ..Default::default()
            }
        })
        .collect()
}

/// The inbound clusters `inbound|<port>||`, one per workload port.
pub fn clusters(scope: &ProxyScope<'_>) -> Vec<Cluster> {
    let (ports, _) = inbound_ports(scope);
    ports
        .iter()
        .map(|p| inbound_port_cluster(scope, p))
        .collect()
}

fn socket_address(ip: &str, port: u32) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

fn ipv6_only(scope: &ProxyScope<'_>) -> bool {
    !scope.proxy.ips.is_empty() && scope.proxy.ips.iter().all(IpAddr::is_ipv6)
}

fn virtual_inbound(
    scope: &ProxyScope<'_>,
    ports: &[InboundPort<'_>],
    policy: &PeerPolicy,
) -> Listener {
    let port = u32::try_from(scope.mesh.proxy_inbound_listen_port)
        .ok()
        .filter(|p| *p != 0)
        .unwrap_or(15006);
    let wildcard = if ipv6_only(scope) { "::" } else { "0.0.0.0" };
    let mut chains = vec![FilterChain {
        name: format!("{VIRTUAL_INBOUND_LISTENER}-blackhole"),
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(UInt32Value { value: port }),
            ..Default::default()
        }),
        filters: vec![tcp_proxy_filter(BLACKHOLE_CLUSTER)],
        ..Default::default()
    }];
    chains.extend(passthrough_chains(scope, policy.mode));
    for p in ports {
        chains.extend(port_chains(scope, p, true));
    }
    let mut listener_filters = vec![ListenerFilter {
        name: ORIGINAL_DST.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack(
            OriginalDst::default(),
        ))),
        ..Default::default()
    }];
    listener_filters.extend(inspectors(&chains));
    Listener {
        name: VIRTUAL_INBOUND_LISTENER.to_string(),
        address: Some(socket_address(wildcard, port)),
        listener_filters,
        listener_filters_timeout: Some(duration(&scope.mesh.protocol_detection_timeout)),
        continue_on_listener_filters_timeout: true,
        filter_chains: chains,
        traffic_direction: core::TrafficDirection::Inbound as i32,
        ..Default::default()
    }
}

/// The TLS inspector when a chain matches on TLS, the HTTP inspector (after it) when a chain
/// matches plaintext HTTP ALPNs, as Istio's `populateListenerFilters`.
fn inspectors(chains: &[FilterChain]) -> Vec<ListenerFilter> {
    let matches = |f: &dyn Fn(&FilterChainMatch) -> bool| {
        chains
            .iter()
            .filter_map(|c| c.filter_chain_match.as_ref())
            .any(f)
    };
    let mut out = Vec::new();
    if matches(&|m| m.transport_protocol == TLS) {
        out.push(ListenerFilter {
            name: TLS_INSPECTOR.to_string(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(pack(
                envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector::default(),
            ))),
            ..Default::default()
        });
    }
    if matches(&|m| {
        m.application_protocols
            .iter()
            .any(|a| a == "http/1.1" || a == "h2c")
    }) {
        out.push(ListenerFilter {
            name: HTTP_INSPECTOR.to_string(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(pack(
                envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector {},
            ))),
            ..Default::default()
        });
    }
    out
}

/// One chain's match: the destination port (captured listener only), transport protocol and
/// ALPNs.
fn chain_match(port: Option<u32>, transport: &str, alpns: &[&str]) -> FilterChainMatch {
    FilterChainMatch {
        destination_port: port.map(|value| UInt32Value { value }),
        transport_protocol: transport.to_string(),
        application_protocols: alpns.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

/// What a chain does after matching.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Serve {
    /// Terminate mTLS, then HCM.
    MtlsHttp,
    /// Terminate mTLS, then tcp_proxy.
    MtlsTcp,
    /// Plaintext HCM.
    Http,
    /// tcp_proxy without terminating anything (plaintext, or the application's own TLS).
    Tcp,
}

/// The (match, serve) pairs of a port class under a mode (the table in the module comment).
fn plan(class: Class, mode: MtlsMode) -> Vec<(&'static str, &'static [&'static str], Serve)> {
    match (class, mode) {
        (Class::Http, MtlsMode::Strict) => vec![(TLS, &[], Serve::MtlsHttp)],
        (Class::Http, MtlsMode::Disable) => vec![(RAW_BUFFER, &[], Serve::Http)],
        (Class::Http, _) => vec![
            (TLS, &ALL_ISTIO_MTLS_ALPNS, Serve::MtlsHttp),
            (RAW_BUFFER, &[], Serve::Http),
        ],
        (Class::Tcp, MtlsMode::Strict) => vec![(TLS, &[], Serve::MtlsTcp)],
        (Class::Tcp, MtlsMode::Disable) => vec![(RAW_BUFFER, &[], Serve::Tcp)],
        (Class::Tcp, _) => vec![
            (TLS, &ALL_ISTIO_MTLS_ALPNS, Serve::MtlsTcp),
            (RAW_BUFFER, &[], Serve::Tcp),
            (TLS, &[], Serve::Tcp),
        ],
        (Class::Auto, MtlsMode::Strict) => vec![
            (TLS, &MTLS_HTTP_ALPNS, Serve::MtlsHttp),
            (TLS, &[], Serve::MtlsTcp),
        ],
        (Class::Auto, MtlsMode::Disable) => vec![
            (RAW_BUFFER, &PLAINTEXT_HTTP_ALPNS, Serve::Http),
            (RAW_BUFFER, &[], Serve::Tcp),
        ],
        (Class::Auto, _) => vec![
            (TLS, &MTLS_HTTP_ALPNS, Serve::MtlsHttp),
            (RAW_BUFFER, &PLAINTEXT_HTTP_ALPNS, Serve::Http),
            (TLS, &MTLS_TCP_ALPNS, Serve::MtlsTcp),
            (RAW_BUFFER, &[], Serve::Tcp),
            (TLS, &[], Serve::Tcp),
        ],
    }
}

/// The chains of one workload port; `by_port` matches the destination port (captured
/// listener) instead of owning a listener.
fn port_chains(scope: &ProxyScope<'_>, p: &InboundPort<'_>, by_port: bool) -> Vec<FilterChain> {
    let port = p.target.target_port;
    let cluster = inbound_cluster(port);
    let name = listener_name("0.0.0.0", port);
    let protocol = p.target.port.protocol;
    plan(class_of(protocol), p.mode)
        .into_iter()
        .map(|(transport, alpns, serve)| {
            let filters = match serve {
                Serve::MtlsHttp | Serve::Http => vec![inbound_hcm(scope, p, &cluster, &name)],
                Serve::MtlsTcp | Serve::Tcp => vec![tcp_proxy_filter(&cluster)],
            };
            let transport_socket = match serve {
                Serve::MtlsHttp => Some(downstream_tls(scope, &SERVER_HTTP_ALPNS)),
                Serve::MtlsTcp => Some(downstream_tls(scope, &SERVER_TCP_ALPNS)),
                Serve::Http | Serve::Tcp => None,
            };
            FilterChain {
                name: name.clone(),
                filter_chain_match: Some(chain_match(by_port.then_some(port), transport, alpns)),
                filters,
                transport_socket,
                ..Default::default()
            }
        })
        .collect()
}

/// Chains for ports that no service targets, to `InboundPassthroughCluster` in the
/// workload-level mode (TCP only: Istio's HTTP passthrough chain exists for its telemetry).
fn passthrough_chains(scope: &ProxyScope<'_>, mode: MtlsMode) -> Vec<FilterChain> {
    plan(Class::Tcp, mode)
        .into_iter()
        .map(|(transport, alpns, serve)| FilterChain {
            name: VIRTUAL_INBOUND_LISTENER.to_string(),
            filter_chain_match: Some(chain_match(None, transport, alpns)),
            filters: vec![tcp_proxy_filter(INBOUND_PASSTHROUGH_CLUSTER)],
            transport_socket: (serve == Serve::MtlsTcp)
                .then(|| downstream_tls(scope, &SERVER_TCP_ALPNS)),
            ..Default::default()
        })
        .collect()
}

fn tcp_proxy_filter(cluster: &str) -> Filter {
    network_filter(
        TCP_PROXY,
        pack(TcpProxy {
            stat_prefix: cluster.to_string(),
            cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.to_string())),
            ..Default::default()
        }),
    )
}

/// Istio's inbound mTLS (`BuildInboundTLS`): the workload certificate, a client certificate
/// required and verified against the mesh root with a SPIFFE identity of the trust domain
/// (or an alias).
#[allow(deprecated)] // match_subject_alt_names: what istiod (and Envoy 1.40) still use.
fn downstream_tls(scope: &ProxyScope<'_>, alpns: &[&str]) -> core::TransportSocket {
    let mut domains = vec![scope.mesh.trust_domain.clone()];
    for alias in &scope.mesh.trust_domain_aliases {
        if !domains.contains(alias) {
            domains.push(alias.clone());
        }
    }
    let mut common = default_common_tls_context();
    if let Some(params) = common.tls_params.as_mut() {
        params.cipher_suites = CIPHER_SUITES.iter().map(|c| c.to_string()).collect();
    }
    common.alpn_protocols = alpns.iter().map(|a| a.to_string()).collect();
    common.tls_certificate_sds_secret_configs = vec![sds_secret_config(SDS_DEFAULT_RESOURCE)];
    common.validation_context_type = Some(combined_validation(
        tls::CertificateValidationContext {
            match_subject_alt_names: domains
                .iter()
                .map(|td| StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Prefix(format!(
                        "spiffe://{td}/"
                    ))),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
        SDS_ROOT_RESOURCE,
    ));
    let context = tls::DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    core::TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(pack(
            context,
        ))),
    }
}

/// The inbound HTTP connection manager (`buildSidecarInboundHTTPOpts`): an inline route to
/// the inbound cluster, the peer's identity forwarded in `x-forwarded-client-cert`.
fn inbound_hcm(scope: &ProxyScope<'_>, p: &InboundPort<'_>, cluster: &str, chain: &str) -> Filter {
    let svc = &p.target.service;
    let route_config = route::RouteConfiguration {
        name: cluster.to_string(),
        virtual_hosts: vec![route::VirtualHost {
            name: format!("inbound|http|{}", p.target.port.number),
            domains: vec!["*".to_string()],
            routes: vec![route::Route {
                name: "default".to_string(),
                r#match: Some(route::RouteMatch {
                    path_specifier: Some(route::route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                decorator: Some(route::Decorator {
                    operation: format!("{}:{}/*", svc.hostname, p.target.port.number),
                    ..Default::default()
                }),
                action: Some(route::route::Action::Route(route::RouteAction {
                    cluster_specifier: Some(route::route_action::ClusterSpecifier::Cluster(
                        cluster.to_string(),
                    )),
                    timeout: Some(zero_duration()),
                    max_stream_duration: Some(route::route_action::MaxStreamDuration {
                        max_stream_duration: Some(zero_duration()),
                        grpc_timeout_header_max: Some(zero_duration()),
                        ..Default::default()
                    }),
                    retry_policy: Some(route::RetryPolicy {
                        retry_on: "reset-before-request".to_string(),
                        num_retries: Some(UInt32Value { value: 2 }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    };
    let hcm = HttpConnectionManager {
        codec_type: http_connection_manager::CodecType::Auto as i32,
        stat_prefix: format!("inbound_{chain}"),
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
            route_config,
        )),
        http_filters: vec![http_filter(ROUTER, pack(Router::default()))],
        use_remote_address: Some(BoolValue { value: false }),
        forward_client_cert_details:
            http_connection_manager::ForwardClientCertDetails::AppendForward as i32,
        set_current_client_cert_details: Some(
            http_connection_manager::SetCurrentClientCertDetails {
                subject: Some(BoolValue { value: true }),
                uri: true,
                dns: true,
                ..Default::default()
            },
        ),
        server_name: "istio-envoy".to_string(),
        normalize_path: Some(BoolValue { value: true }),
        path_with_escaped_slashes_action:
            http_connection_manager::PathWithEscapedSlashesAction::KeepUnchanged as i32,
        stream_idle_timeout: Some(zero_duration()),
        upgrade_configs: vec![http_connection_manager::UpgradeConfig {
            upgrade_type: "websocket".to_string(),
            ..Default::default()
        }],
        http2_protocol_options: p
            .target
            .port
            .protocol
            .is_http2()
            .then(core::Http2ProtocolOptions::default),
        ..Default::default()
    };
    let _ = scope;
    network_filter(HTTP_CONNECTION_MANAGER, pack(hcm))
}

/// `inbound|<port>||`: to the application, as the mesh's `inboundTrafficPolicy` and the
/// interception mode say (see the module comment).
fn inbound_port_cluster(scope: &ProxyScope<'_>, p: &InboundPort<'_>) -> Cluster {
    let port = p.target.target_port;
    let name = inbound_cluster(port);
    let passthrough = scope.proxy.inbound_capture
        && scope.mesh.inbound_traffic_policy.mode == InboundTrafficPolicyMode::Passthrough;
    let mut c = Cluster {
        name: name.clone(),
        alt_stat_name: format!("{name};"),
        connect_timeout: Some(duration(&scope.mesh.connect_timeout)),
        ..Default::default()
    };
    if passthrough {
        policy::set_type(&mut c, cluster::DiscoveryType::OriginalDst);
        c.lb_policy = cluster::LbPolicy::ClusterProvided as i32;
        let v6 = ipv6_only(scope);
        c.upstream_bind_config = Some(core::BindConfig {
            source_address: Some(core::SocketAddress {
                address: if v6 {
                    INBOUND_SOURCE_V6
                } else {
                    INBOUND_SOURCE_V4
                }
                .to_string(),
                port_specifier: Some(core::socket_address::PortSpecifier::PortValue(0)),
                ..Default::default()
            }),
            ..Default::default()
        });
    } else {
        policy::set_type(&mut c, cluster::DiscoveryType::Static);
        let local = if ipv6_only(scope) { "::1" } else { "127.0.0.1" };
        c.load_assignment = Some(endpoint::ClusterLoadAssignment {
            cluster_name: name.clone(),
            endpoints: vec![endpoint::LocalityLbEndpoints {
                lb_endpoints: vec![endpoint::LbEndpoint {
                    host_identifier: Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(
                        endpoint::Endpoint {
                            address: Some(socket_address(local, port)),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    let mut cb = ClusterBuild::new(c);
    policy::set_upstream_protocol(&mut cb, p.target.port);
    cb.build()
}

#[cfg(test)]
mod tests;

//! Filters of outbound listeners: `tcp_proxy` (one cluster or weighted), the catch-all
//! `tcp_proxy` of the outbound traffic policy, `mongo_proxy`, the HTTP connection manager
//! (spec §4.2 end) and the TLS / HTTP inspector listener filters.
//!
//! Only filters that exist in upstream Envoy are emitted: Istio's `istio.metadata_exchange`,
//! `istio.alpn` and `istio.stats` are left out (spec preamble).

use entryway_model::api::Protocol;
use entryway_model::registry::ProxyScope;
use entryway_model::registry::scope::EffectiveRule;
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, config_source,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::grpc_stats::v3::{
    FilterConfig as GrpcStatsConfig, filter_config,
};
use envoy_types::pb::envoy::extensions::filters::http::grpc_web::v3::GrpcWeb;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, RequestIdExtension, http_connection_manager,
    http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::mongo_proxy::v3::MongoProxy;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::envoy::extensions::request_id::uuid::v3::UuidRequestIdConfig;
use envoy_types::pb::envoy::r#type::v3::{HashPolicy, hash_policy};
use envoy_types::pb::google::protobuf::{Any, BoolValue, UInt32Value};

use super::super::names::BLACKHOLE_CLUSTER;
use super::super::rds::common::{catch_all_cluster, duration, pack, zero_duration};
use super::super::rds::route::{CORS_FILTER, FAULT_FILTER};

/// `envoy.filters.network.tcp_proxy`.
pub(super) const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
/// `envoy.filters.network.http_connection_manager`.
pub(crate) const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
const MONGO_PROXY: &str = "envoy.filters.network.mongo_proxy";
const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";
pub(crate) const ROUTER: &str = "envoy.filters.http.router";
const GRPC_STATS: &str = "envoy.filters.http.grpc_stats";
const GRPC_WEB: &str = "envoy.filters.http.grpc_web";

pub(crate) fn network_filter(name: &str, config: Any) -> Filter {
    Filter {
        name: name.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(config)),
    }
}

pub(crate) fn http_filter(name: &str, config: Any) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

fn listener_filter(name: &str, config: Any) -> ListenerFilter {
    ListenerFilter {
        name: name.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

/// `envoy.filters.listener.tls_inspector` (initial read buffer 512 bytes, as Istio).
pub(super) fn tls_inspector() -> ListenerFilter {
    listener_filter(
        TLS_INSPECTOR,
        pack(TlsInspector {
            initial_read_buffer_size: Some(UInt32Value { value: 512 }),
            ..Default::default()
        }),
    )
}

/// `envoy.filters.listener.http_inspector`.
pub(super) fn http_inspector() -> ListenerFilter {
    listener_filter(HTTP_INSPECTOR, pack(HttpInspector {}))
}

/// The `tcp_proxy` → `cluster` filter used by the catch-all chains.
fn plain_tcp_proxy(cluster: String) -> Filter {
    network_filter(
        TCP_PROXY,
        pack(TcpProxy {
            stat_prefix: cluster.clone(),
            cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster)),
            ..Default::default()
        }),
    )
}

/// Filters of the chains that handle unknown destinations (spec §4.1.1 / §7):
/// `tcp_proxy` to Passthrough, the egress proxy, or BlackHole.
pub(super) fn catch_all_filters(scope: &ProxyScope<'_>) -> Vec<Filter> {
    vec![plain_tcp_proxy(catch_all_cluster(scope))]
}

/// Filters of `virtualOutbound-blackhole`.
pub(super) fn blackhole_filters() -> Vec<Filter> {
    vec![plain_tcp_proxy(BLACKHOLE_CLUSTER.to_string())]
}

/// The DR connection-pool TCP settings that apply to `tcp_proxy` (top-level only, as Istio).
fn tcp_settings(rule: Option<&EffectiveRule>) -> Option<&entryway_model::api::TcpSettings> {
    rule?
        .traffic_policy
        .as_ref()?
        .connection_pool
        .as_ref()?
        .tcp
        .as_ref()
}

/// Istio's `maybeSetHashPolicy`: hash on the source IP when the DR (or the subset) uses a
/// `useSourceIp` consistent hash.
fn maybe_set_hash_policy(rule: Option<&EffectiveRule>, proxy: &mut TcpProxy, subset: &str) {
    let Some(rule) = rule else {
        return;
    };
    let mut use_source_ip = rule
        .traffic_policy
        .as_ref()
        .and_then(|t| t.load_balancer.as_ref())
        .and_then(|l| l.consistent_hash.as_ref())
        .and_then(|c| c.use_source_ip)
        .unwrap_or(false);
    if let Some(s) = rule.subsets.iter().find(|s| s.name == subset)
        && let Some(lb) = s
            .traffic_policy
            .as_ref()
            .and_then(|t| t.load_balancer.as_ref())
    {
        use_source_ip = lb
            .consistent_hash
            .as_ref()
            .and_then(|c| c.use_source_ip)
            .unwrap_or(false);
    }
    if use_source_ip {
        proxy.hash_policy = vec![HashPolicy {
            policy_specifier: Some(hash_policy::PolicySpecifier::SourceIp(
                hash_policy::SourceIp {},
            )),
        }];
    }
}

/// Istio's `tunnelingconfig.Apply`: DR `tunnel` settings (the subset's win) become the
/// `tcp_proxy` tunneling config.
fn apply_tunnel(rule: Option<&EffectiveRule>, proxy: &mut TcpProxy, subset: &str) {
    let Some(rule) = rule else {
        return;
    };
    let mut tunnel = rule.traffic_policy.as_ref().and_then(|t| t.tunnel.as_ref());
    if let Some(s) = rule.subsets.iter().find(|s| s.name == subset)
        && let Some(t) = s.traffic_policy.as_ref().and_then(|t| t.tunnel.as_ref())
    {
        tunnel = Some(t);
    }
    if let Some(t) = tunnel {
        let host = if t.target_host.contains(':') {
            format!("[{}]:{}", t.target_host, t.target_port)
        } else {
            format!("{}:{}", t.target_host, t.target_port)
        };
        proxy.tunneling_config = Some(tcp_proxy::TunnelingConfig {
            hostname: host,
            use_post: t.protocol == "POST",
            ..Default::default()
        });
    }
}

fn base_tcp_proxy(stat_prefix: &str, rule: Option<&EffectiveRule>) -> TcpProxy {
    let tcp = tcp_settings(rule);
    TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        idle_timeout: tcp.and_then(|t| t.idle_timeout.as_ref()).map(duration),
        max_downstream_connection_duration: tcp
            .and_then(|t| t.max_connection_duration.as_ref())
            .map(duration),
        ..Default::default()
    }
}

/// Istio's `buildNetworkFiltersStack`: `mongo_proxy` (on by default) in front of the
/// `tcp_proxy` for Mongo ports; Redis and MySQL filters are off by default in Istio.
fn filter_stack(protocol: Protocol, proxy: TcpProxy, stat_prefix: &str) -> Vec<Filter> {
    let tcp = network_filter(TCP_PROXY, pack(proxy));
    if protocol == Protocol::Mongo {
        let mongo = network_filter(
            MONGO_PROXY,
            pack(MongoProxy {
                stat_prefix: stat_prefix.to_string(),
                ..Default::default()
            }),
        );
        return vec![mongo, tcp];
    }
    vec![tcp]
}

/// Istio's `buildOutboundNetworkFiltersWithSingleDestination`.
pub(super) fn single_destination(
    stat_prefix: &str,
    cluster: String,
    subset: &str,
    protocol: Protocol,
    rule: Option<&EffectiveRule>,
) -> Vec<Filter> {
    let mut proxy = base_tcp_proxy(stat_prefix, rule);
    proxy.cluster_specifier = Some(tcp_proxy::ClusterSpecifier::Cluster(cluster));
    maybe_set_hash_policy(rule, &mut proxy, subset);
    apply_tunnel(rule, &mut proxy, subset);
    filter_stack(protocol, proxy, stat_prefix)
}

/// Istio's `buildOutboundNetworkFiltersWithWeightedClusters` (stat prefix `<vs>.<ns>`).
pub(super) fn weighted_destinations(
    stat_prefix: &str,
    clusters: Vec<(String, u32)>,
    protocol: Protocol,
    rule: Option<&EffectiveRule>,
) -> Vec<Filter> {
    let mut proxy = base_tcp_proxy(stat_prefix, rule);
    proxy.cluster_specifier = Some(tcp_proxy::ClusterSpecifier::WeightedClusters(
        tcp_proxy::WeightedCluster {
            clusters: clusters
                .into_iter()
                .map(
                    |(name, weight)| tcp_proxy::weighted_cluster::ClusterWeight {
                        name,
                        weight,
                        ..Default::default()
                    },
                )
                .collect(),
        },
    ));
    maybe_set_hash_policy(rule, &mut proxy, "");
    apply_tunnel(rule, &mut proxy, "");
    filter_stack(protocol, proxy, stat_prefix)
}

/// The HTTP connection manager of an outbound HTTP chain (spec §4.2 end): codec AUTO, RDS
/// over ADS with `initial_fetch_timeout: 0s`, websocket upgrades, path normalisation,
/// `stream_idle_timeout: 0s`, UUID request ids, and the HTTP filters grpc_stats (plus
/// grpc_web for GRPC-Web ports), fault, cors and router.
pub(super) fn http_connection_manager(
    stat_prefix: String,
    rds: String,
    protocol: Protocol,
) -> Filter {
    network_filter(
        HTTP_CONNECTION_MANAGER,
        pack(outbound_hcm(stat_prefix, rds, protocol)),
    )
}

/// The [`HttpConnectionManager`] message of [`http_connection_manager`] (the explicit proxy
/// adjusts it before packing).
pub(crate) fn outbound_hcm(
    stat_prefix: String,
    rds: String,
    protocol: Protocol,
) -> HttpConnectionManager {
    let mut filters = Vec::with_capacity(5);
    if protocol == Protocol::GrpcWeb {
        filters.push(http_filter(GRPC_WEB, pack(GrpcWeb {})));
    }
    filters.push(http_filter(
        GRPC_STATS,
        pack(GrpcStatsConfig {
            emit_filter_state: true,
            per_method_stat_specifier: Some(
                filter_config::PerMethodStatSpecifier::StatsForAllMethods(BoolValue {
                    value: false,
                }),
            ),
            ..Default::default()
        }),
    ));
    filters.push(http_filter(FAULT_FILTER, pack(HttpFault::default())));
    filters.push(http_filter(CORS_FILTER, pack(Cors {})));
    filters.push(http_filter(ROUTER, pack(Router::default())));
    HttpConnectionManager {
        codec_type: http_connection_manager::CodecType::Auto as i32,
        stat_prefix,
        path_with_escaped_slashes_action:
            http_connection_manager::PathWithEscapedSlashesAction::KeepUnchanged as i32,
        normalize_path: Some(BoolValue { value: true }),
        use_remote_address: Some(BoolValue { value: false }),
        upgrade_configs: vec![http_connection_manager::UpgradeConfig {
            upgrade_type: "websocket".to_string(),
            ..Default::default()
        }],
        stream_idle_timeout: Some(zero_duration()),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ConfigSource {
                config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
                    AggregatedConfigSource {},
                )),
                initial_fetch_timeout: Some(zero_duration()),
                resource_api_version: ApiVersion::V3 as i32,
                ..Default::default()
            }),
            route_config_name: rds,
        })),
        http_filters: filters,
        request_id_extension: Some(RequestIdExtension {
            typed_config: Some(pack(UuidRequestIdConfig {
                use_request_id_for_trace_sampling: Some(BoolValue { value: true }),
                ..Default::default()
            })),
        }),
        proxy_100_continue: true,
        ..Default::default()
    }
}

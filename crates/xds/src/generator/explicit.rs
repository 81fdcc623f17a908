//! Explicit-proxy mode (Entryway's own; Istio has none): when the proxy sets
//! [`Proxy::explicit_proxy`](entryway_model::registry::Proxy), Envoy also listens there as an
//! HTTP proxy, for machines where traffic cannot (or should not) be captured.
//!
//! - listener [`EXPLICIT_PROXY_LISTENER`] bound to that address: one HTTP connection manager
//!   (the captured-traffic one plus absolute URLs, CONNECT and the dynamic forward proxy
//!   filter) reading RDS route configuration [`EXPLICIT_PROXY_ROUTE`];
//! - that route configuration (built in `rds_explicit.rs`): the captured-traffic virtual hosts
//!   of every port with `host:port` domains (bare `host` on port 80), a CONNECT route per
//!   service port to `outbound|<port>||<host>`, and a catch-all that passes unknown hosts
//!   through [`EXPLICIT_PROXY_PASSTHROUGH`] (ALLOW_ANY) or answers 502 (REGISTRY_ONLY);
//! - cluster [`EXPLICIT_PROXY_PASSTHROUGH`]: a dynamic forward proxy. `PassthroughCluster`
//!   (ORIGINAL_DST) cannot serve here: the original destination is the proxy itself.

use entryway_model::api::Protocol;
use entryway_model::registry::ProxyScope;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, CustomClusterType, DnsLookupFamily, LbPolicy,
};
use envoy_types::pb::envoy::config::core::v3::{
    Address, Http1ProtocolOptions, Http2ProtocolOptions, SocketAddress, TrafficDirection, address,
    socket_address,
};
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};
use envoy_types::pb::envoy::extensions::clusters::dynamic_forward_proxy::v3::{
    ClusterConfig, cluster_config,
};
use envoy_types::pb::envoy::extensions::common::dynamic_forward_proxy::v3::DnsCacheConfig;
use envoy_types::pb::envoy::extensions::filters::http::dynamic_forward_proxy::v3::{
    FilterConfig, filter_config,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager;
use envoy_types::pb::google::protobuf::BoolValue;

use super::lds::filters::{
    HTTP_CONNECTION_MANAGER, ROUTER, http_filter, network_filter, outbound_hcm,
};
use super::rds::common::{duration, pack};

/// Name of the explicit-proxy listener.
pub const EXPLICIT_PROXY_LISTENER: &str = "explicit_proxy";
/// Name of its RDS route configuration.
pub const EXPLICIT_PROXY_ROUTE: &str = "explicit_proxy";
/// The dynamic forward proxy cluster unknown (ALLOW_ANY) and address-less hosts go to.
pub const EXPLICIT_PROXY_PASSTHROUGH: &str = "ExplicitProxyPassthrough";
/// The DNS cache shared by the cluster and the HTTP filter (must be identical in both).
const DNS_CACHE: &str = "explicit_proxy_dns_cache";
const DFP_FILTER: &str = "envoy.filters.http.dynamic_forward_proxy";
const DFP_CLUSTER: &str = "envoy.clusters.dynamic_forward_proxy";
/// Upgrade type of CONNECT requests.
pub(crate) const CONNECT: &str = "CONNECT";

fn dns_cache() -> DnsCacheConfig {
    DnsCacheConfig {
        name: DNS_CACHE.to_string(),
        dns_lookup_family: DnsLookupFamily::V4Preferred as i32,
        ..Default::default()
    }
}

/// The explicit-proxy listener, when the proxy asks for one.
pub fn listener(scope: &ProxyScope<'_>) -> Option<Listener> {
    let addr = scope.proxy.explicit_proxy?;
    let mut hcm = outbound_hcm(
        EXPLICIT_PROXY_LISTENER.to_string(),
        EXPLICIT_PROXY_ROUTE.to_string(),
        Protocol::Http,
    );
    // Absolute-form request targets (`GET http://host/ HTTP/1.1`) are what proxy clients send.
    hcm.http_protocol_options = Some(Http1ProtocolOptions {
        allow_absolute_url: Some(BoolValue { value: true }),
        ..Default::default()
    });
    hcm.http2_protocol_options = Some(Http2ProtocolOptions {
        allow_connect: true,
        ..Default::default()
    });
    hcm.upgrade_configs
        .push(http_connection_manager::UpgradeConfig {
            upgrade_type: CONNECT.to_string(),
            ..Default::default()
        });
    // The dynamic forward proxy filter resolves the host of requests routed to the
    // passthrough cluster; it leaves requests for other clusters alone.
    let dfp = http_filter(
        DFP_FILTER,
        pack(FilterConfig {
            implementation_specifier: Some(filter_config::ImplementationSpecifier::DnsCacheConfig(
                dns_cache(),
            )),
            ..Default::default()
        }),
    );
    let at = hcm
        .http_filters
        .iter()
        .position(|f| f.name == ROUTER)
        .unwrap_or(hcm.http_filters.len());
    hcm.http_filters.insert(at, dfp);
    Some(Listener {
        name: EXPLICIT_PROXY_LISTENER.to_string(),
        // Always a socket address (port 0 = kernel-chosen, never a pipe as for unix binds).
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: addr.ip().to_string(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                    addr.port(),
                ))),
                ..Default::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![network_filter(HTTP_CONNECTION_MANAGER, pack(hcm))],
            ..Default::default()
        }],
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    })
}

/// The dynamic forward proxy cluster, when the proxy has an explicit-proxy listener.
pub fn passthrough_cluster(scope: &ProxyScope<'_>) -> Option<Cluster> {
    scope.proxy.explicit_proxy?;
    Some(Cluster {
        name: EXPLICIT_PROXY_PASSTHROUGH.to_string(),
        connect_timeout: Some(duration(&scope.mesh.connect_timeout)),
        lb_policy: LbPolicy::ClusterProvided as i32,
        cluster_discovery_type: Some(ClusterDiscoveryType::ClusterType(CustomClusterType {
            name: DFP_CLUSTER.to_string(),
            typed_config: Some(pack(ClusterConfig {
                cluster_implementation_specifier: Some(
                    cluster_config::ClusterImplementationSpecifier::DnsCacheConfig(dns_cache()),
                ),
                ..Default::default()
            })),
        })),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use entryway_model::registry::Proxy;
    use envoy_types::pb::envoy::config::listener::v3::filter;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    use prost::Message;

    use entryway_model::api::MeshConfig;

    use super::*;
    use crate::generator::testutil::TestEnv;

    fn with_scope(yaml: &str, proxy: &Proxy, f: impl FnOnce(&ProxyScope<'_>)) {
        let env = TestEnv::with_proxy(yaml, MeshConfig::default(), proxy.clone());
        f(&env.scope());
    }

    #[test]
    fn absent_without_an_address() {
        with_scope("", &Proxy::in_namespace("default"), |scope| {
            assert!(listener(scope).is_none());
            assert!(passthrough_cluster(scope).is_none());
        });
    }

    #[test]
    fn listener_accepts_absolute_urls_and_connect() {
        let mut proxy = Proxy::in_namespace("default");
        proxy.explicit_proxy = Some("127.0.0.1:15080".parse().expect("addr"));
        with_scope("", &proxy, |scope| {
            let l = listener(scope).expect("listener");
            assert_eq!(l.name, EXPLICIT_PROXY_LISTENER);
            assert!(l.bind_to_port.is_none(), "binds (the default)");
            let Some(filter::ConfigType::TypedConfig(any)) =
                &l.filter_chains[0].filters[0].config_type
            else {
                panic!("no typed config");
            };
            let hcm = HttpConnectionManager::decode(any.value.as_slice()).expect("hcm");
            assert_eq!(
                hcm.http_protocol_options
                    .and_then(|o| o.allow_absolute_url)
                    .map(|b| b.value),
                Some(true)
            );
            assert!(
                hcm.upgrade_configs
                    .iter()
                    .any(|u| u.upgrade_type == CONNECT)
            );
            let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
            let dfp = names.iter().position(|n| *n == DFP_FILTER).expect("dfp");
            assert_eq!(
                dfp + 1,
                names.len() - 1,
                "just before the router: {names:?}"
            );
            assert_eq!(
                passthrough_cluster(scope).map(|c| c.name),
                Some(EXPLICIT_PROXY_PASSTHROUGH.to_string())
            );
        });
    }
}

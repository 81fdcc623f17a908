//! Envoy JSON snippets for static test configurations.

use std::net::SocketAddr;

use entryway_agent::bootstrap::socket_address;
use serde_json::{Value, json};

/// A `STATIC` cluster named `name` with one endpoint at `endpoint` (HTTP/1.1, 1 s connect
/// timeout).
pub fn static_cluster(name: &str, endpoint: SocketAddr) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [ { "lb_endpoints": [ {
                "endpoint": { "address": socket_address(&endpoint.ip().to_string(), endpoint.port()) }
            } ] } ],
        },
    })
}

/// An HTTP listener named `name` on `addr` (port 0 = kernel-chosen; read it back with
/// [`crate::EnvoyProcess::wait_listener`]) that routes every request to `cluster`.
///
/// `enable_reuse_port` is off: with it on (Envoy's default) two Envoys can bind the same
/// address and the kernel splits traffic between them (pitfall 7).
pub fn http_listener(name: &str, addr: SocketAddr, cluster: &str) -> Value {
    json!({
        "name": name,
        "address": socket_address(&addr.ip().to_string(), addr.port()),
        "enable_reuse_port": false,
        "filter_chains": [ { "filters": [ {
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": {
                    "name": name,
                    "virtual_hosts": [ {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [ { "match": { "prefix": "/" }, "route": { "cluster": cluster } } ],
                    } ],
                },
                "http_filters": [ {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    },
                } ],
            },
        } ] } ],
    })
}

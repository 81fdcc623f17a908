//! `entryway_xds::json` prints Envoy resources exactly as Envoy's admin `/config_dump` does.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use entryway_agent::bootstrap::BootstrapOptions;
use entryway_testkit::EnvoyHarness;
use entryway_testkit::fixtures::http_listener;
use entryway_xds::json::{from_json_value, to_json_value};
use envoy_types::pb::envoy::admin::v3::ConfigDump;
use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, circuit_breakers::Thresholds, cluster::ClusterDiscoveryType,
    cluster::DiscoveryType, cluster::LbPolicy,
};
use envoy_types::pb::envoy::config::core::v3::{
    Address, Http2ProtocolOptions, SocketAddress, address, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options::ExplicitHttpConfig,
    http_protocol_options::UpstreamProtocolOptions,
    http_protocol_options::explicit_http_config::ProtocolConfig,
};
use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};
use envoy_types::util::pack_any;

fn cluster() -> Cluster {
    let http2 = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    };
    let endpoint = LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: "127.0.0.1".into(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(18080)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    Cluster {
        name: "outbound|8080||httpbin.local".into(),
        connect_timeout: Some(PbDuration {
            seconds: 10,
            nanos: 0,
        }),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        lb_policy: LbPolicy::LeastRequest as i32,
        circuit_breakers: Some(CircuitBreakers {
            thresholds: vec![Thresholds {
                max_connections: Some(UInt32Value { value: u32::MAX }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        typed_extension_protocol_options: [(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
            pack_any(http2),
        )]
        .into_iter()
        .collect(),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: "outbound|8080||httpbin.local".into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![endpoint],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn our_json_matches_envoys_config_dump() {
    let envoy = EnvoyHarness::require();
    let ours = to_json_value(&cluster()).unwrap();
    let bootstrap = BootstrapOptions::new("json-check", "json-check")
        .with_admin_port(0)
        .with_static_cluster(ours.clone())
        .with_static_listener(http_listener(
            "ingress",
            "127.0.0.1:0".parse().unwrap(),
            "outbound|8080||httpbin.local",
        ))
        .render();
    let p = envoy.start(&bootstrap).unwrap();
    p.wait_ready(Duration::from_secs(10)).unwrap();

    // 1. The cluster we built prints exactly as Envoy prints it back.
    let dump = p.config_dump_resource("static_clusters").unwrap();
    let envoys = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["cluster"])
        .find(|c| c["name"] == "outbound|8080||httpbin.local")
        .expect("our static cluster in config_dump")
        .clone();
    let mut envoys_without_type = envoys.clone();
    envoys_without_type.as_object_mut().unwrap().remove("@type");
    assert_eq!(
        envoys_without_type,
        ours,
        "Envoy:\n{}\nours:\n{}",
        serde_json::to_string_pretty(&envoys).unwrap(),
        serde_json::to_string_pretty(&ours).unwrap()
    );

    // 2. The whole config dump (bootstrap, listeners, clusters, secrets, timestamps, Anys of
    //    many types) survives JSON -> envoy-types -> JSON unchanged.
    let full = p.config_dump().unwrap();
    let parsed: ConfigDump = from_json_value(&full).unwrap();
    let printed = to_json_value(&parsed).unwrap();
    assert!(full["configs"].as_array().unwrap().len() >= 5, "{full}");
    assert_eq!(printed, full);
}

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3::*;
use envoy_types::pb::envoy::config::listener::v3::*;
use envoy_types::pb::envoy::config::route::v3::*;
use envoy_types::pb::google::protobuf::*;
fn main() {
    println!("Cluster {}", std::mem::size_of::<Cluster>());
    println!("CLA {}", std::mem::size_of::<ClusterLoadAssignment>());
    println!(
        "LocalityLbEndpoints {}",
        std::mem::size_of::<LocalityLbEndpoints>()
    );
    println!("LbEndpoint {}", std::mem::size_of::<LbEndpoint>());
    println!("Endpoint {}", std::mem::size_of::<Endpoint>());
    println!("Listener {}", std::mem::size_of::<Listener>());
    println!("FilterChain {}", std::mem::size_of::<FilterChain>());
    println!(
        "FilterChainMatch {}",
        std::mem::size_of::<FilterChainMatch>()
    );
    println!("VirtualHost {}", std::mem::size_of::<VirtualHost>());
    println!("Route {}", std::mem::size_of::<Route>());
    println!("RouteAction {}", std::mem::size_of::<RouteAction>());
    println!("Metadata {}", std::mem::size_of::<core::Metadata>());
    println!("Value {}", std::mem::size_of::<Value>());
    println!("Struct {}", std::mem::size_of::<Struct>());
    println!("Address {}", std::mem::size_of::<core::Address>());
    println!("Any {}", std::mem::size_of::<Any>());
}

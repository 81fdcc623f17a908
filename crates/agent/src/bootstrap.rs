//! The Envoy bootstrap that `entryway proxy` writes.
//!
//! [`BootstrapOptions::render`] produces JSON (a subset of YAML, so it can be written to a
//! `.json` or a `.yaml` file). The shape follows the bootstrap measured against Envoy 1.40 in
//! `envoy-xds-notes.md`: node, admin, ADS over the static `xds-grpc` cluster (HTTP/2), CDS and
//! LDS from ADS; RDS and EDS come through ADS because the generated resources say `ads: {}`.
//!
//! Reference: <https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/bootstrap/v3/bootstrap.proto>

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

/// Name of the static cluster that carries ADS.
pub const XDS_CLUSTER_NAME: &str = "xds-grpc";
/// Name of the static cluster that carries SDS to the agent's socket (what the generated
/// clusters' `sds_config` points at, as in Istio).
pub const SDS_CLUSTER_NAME: &str = "sds-grpc";

/// Errors building bootstrap options from user input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    /// An xDS address that is not `host:port`.
    #[error("invalid xDS address {0:?}: expected host:port, e.g. 127.0.0.1:15010 or [::1]:15010")]
    InvalidXdsAddress(String),
}

/// Which ADS protocol variant Envoy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AdsApiType {
    /// State-of-the-world (`GRPC`).
    #[default]
    Grpc,
    /// Incremental (`DELTA_GRPC`).
    DeltaGrpc,
}

impl AdsApiType {
    /// The `api_type` enum name in the bootstrap.
    pub fn as_str(self) -> &'static str {
        match self {
            AdsApiType::Grpc => "GRPC",
            AdsApiType::DeltaGrpc => "DELTA_GRPC",
        }
    }
}

/// Address of the xDS server: an IP literal (a `STATIC` cluster) or a DNS name (a
/// `STRICT_DNS` cluster).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XdsAddress {
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl XdsAddress {
    /// An address from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port`, `ip:port` or `[ipv6]:port`.
    pub fn parse(s: &str) -> Result<Self, BootstrapError> {
        let bad = || BootstrapError::InvalidXdsAddress(s.to_owned());
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
            host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            (host, port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
            if host.contains(':') {
                return Err(bad()); // unbracketed IPv6
            }
            (host, port)
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Self::new(host, port))
    }

    fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// ADS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdsOptions {
    /// SotW or Delta.
    pub api_type: AdsApiType,
    /// The xDS server.
    pub server: XdsAddress,
    /// Send `node` only on the first request of a stream (Istio does; see pitfall 5).
    pub set_node_on_first_message_only: bool,
    /// `connect_timeout` of the `xds-grpc` cluster.
    pub connect_timeout: Duration,
    /// `initial_fetch_timeout` of the CDS and LDS config sources; `None` keeps Envoy's 15 s
    /// (with the control plane down Envoy then reports ready with no config after ~30 s).
    pub initial_fetch_timeout: Option<Duration>,
    /// mTLS to the control plane's secure port: the DNS name its certificate must carry.
    /// Envoy presents the workload certificate (SDS `default`) and verifies the server
    /// against the mesh root (SDS `ROOTCA`), both from the agent's SDS socket. `None`:
    /// plaintext.
    pub tls_server_name: Option<String>,
}

impl AdsOptions {
    /// ADS with the given protocol and server; node on the first message only, 1 s connect
    /// timeout, Envoy's default initial fetch timeout.
    pub fn new(api_type: AdsApiType, server: XdsAddress) -> Self {
        Self {
            api_type,
            server,
            set_node_on_first_message_only: true,
            connect_timeout: Duration::from_secs(1),
            initial_fetch_timeout: None,
            tls_server_name: None,
        }
    }
}

/// Everything the bootstrap says. Build with [`BootstrapOptions::new`], adjust the public
/// fields, then [`render`](BootstrapOptions::render).
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapOptions {
    /// `node.id`, e.g. `sidecar~10.0.0.1~app-1.default~default.svc.cluster.local`.
    pub node_id: String,
    /// `node.cluster`, e.g. `app.default`.
    pub node_cluster: String,
    /// `node.metadata`, a map of strings (sorted, so the output is deterministic).
    pub node_metadata: BTreeMap<String, String>,
    /// Admin listener address (loopback by default; the admin API is unauthenticated).
    pub admin_address: IpAddr,
    /// Admin listener port; 0 lets the kernel pick (read it back with Envoy's
    /// `--admin-address-path`).
    pub admin_port: u16,
    /// ADS configuration; `None` gives a static-only bootstrap.
    pub ads: Option<AdsOptions>,
    /// Extra `static_resources.listeners`, as Envoy JSON.
    pub static_listeners: Vec<Value>,
    /// Extra `static_resources.clusters`, as Envoy JSON (after `xds-grpc` and `sds-grpc`).
    pub static_clusters: Vec<Value>,
    /// The agent's SDS Unix socket; `Some` adds the static [`SDS_CLUSTER_NAME`] cluster to it.
    pub sds_socket: Option<PathBuf>,
}

impl BootstrapOptions {
    /// Options with the given node identity, admin on 127.0.0.1:15000, no ADS and no static
    /// resources.
    pub fn new(node_id: impl Into<String>, node_cluster: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            node_cluster: node_cluster.into(),
            node_metadata: BTreeMap::new(),
            admin_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            admin_port: 15000,
            ads: None,
            static_listeners: Vec::new(),
            static_clusters: Vec::new(),
            sds_socket: None,
        }
    }

    /// Sets the admin port.
    pub fn with_admin_port(mut self, port: u16) -> Self {
        self.admin_port = port;
        self
    }

    /// Turns ADS on.
    pub fn with_ads(mut self, ads: AdsOptions) -> Self {
        self.ads = Some(ads);
        self
    }

    /// Adds a `node.metadata` entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.node_metadata.insert(key.into(), value.into());
        self
    }

    /// Adds the `sds-grpc` cluster to the agent's SDS socket.
    pub fn with_sds_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.sds_socket = Some(path.into());
        self
    }

    /// Adds a static listener (Envoy JSON).
    pub fn with_static_listener(mut self, listener: Value) -> Self {
        self.static_listeners.push(listener);
        self
    }

    /// Adds a static cluster (Envoy JSON).
    pub fn with_static_cluster(mut self, cluster: Value) -> Self {
        self.static_clusters.push(cluster);
        self
    }

    /// The bootstrap as a JSON value.
    pub fn to_value(&self) -> Value {
        let mut node = json!({ "id": self.node_id, "cluster": self.node_cluster });
        if !self.node_metadata.is_empty() {
            node["metadata"] = json!(self.node_metadata);
        }
        let mut bootstrap = json!({
            "node": node,
            "admin": {
                "address": socket_address(&self.admin_address.to_string(), self.admin_port),
            },
        });

        let mut clusters = Vec::new();
        if let Some(ads) = &self.ads {
            let mut config_source = json!({ "ads": {}, "resource_api_version": "V3" });
            if let Some(timeout) = ads.initial_fetch_timeout {
                config_source["initial_fetch_timeout"] = json!(proto_duration(timeout));
            }
            bootstrap["dynamic_resources"] = json!({
                "ads_config": {
                    "api_type": ads.api_type.as_str(),
                    "transport_api_version": "V3",
                    "set_node_on_first_message_only": ads.set_node_on_first_message_only,
                    "grpc_services": [ { "envoy_grpc": { "cluster_name": XDS_CLUSTER_NAME } } ],
                },
                "cds_config": config_source,
                "lds_config": config_source,
            });
            clusters.push(xds_cluster(ads));
        }
        if let Some(path) = &self.sds_socket {
            clusters.push(sds_cluster(path));
        }
        clusters.extend(self.static_clusters.iter().cloned());

        let mut static_resources = serde_json::Map::new();
        if !self.static_listeners.is_empty() {
            static_resources.insert("listeners".into(), json!(self.static_listeners));
        }
        if !clusters.is_empty() {
            static_resources.insert("clusters".into(), json!(clusters));
        }
        if !static_resources.is_empty() {
            bootstrap["static_resources"] = Value::Object(static_resources);
        }
        bootstrap
    }

    /// The bootstrap as pretty-printed JSON text (valid YAML too).
    pub fn render(&self) -> String {
        serde_json::to_string_pretty(&self.to_value())
            .expect("a serde_json::Value always serialises: every key is a string")
    }
}

/// A static bootstrap with only a node and the admin listener on 127.0.0.1:`admin_port`
/// (0 = kernel-chosen). For tests.
pub fn minimal_static_bootstrap(admin_port: u16) -> String {
    BootstrapOptions::new("entryway-test", "entryway-test")
        .with_admin_port(admin_port)
        .render()
}

/// `{ "socket_address": { "address": .., "port_value": .. } }` (an Envoy `core.v3.Address`).
pub fn socket_address(address: &str, port: u16) -> Value {
    json!({ "socket_address": { "address": address, "port_value": port } })
}

/// A protobuf JSON duration: `1s`, `0.250s`.
pub fn proto_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        let frac = format!("{:09}", d.subsec_nanos());
        format!("{}.{}s", d.as_secs(), frac.trim_end_matches('0'))
    }
}

/// The typed options that make a cluster speak HTTP/2 (gRPC) upstream.
fn http2_protocol_options() -> Value {
    json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": { "http2_protocol_options": {} },
        }
    })
}

/// `sds-grpc`: HTTP/2 to the agent's Unix socket (a `pipe` address). A non-UTF-8 path is
/// written lossily; the agent's work dir is a UTF-8 temp path in practice.
fn sds_cluster(path: &std::path::Path) -> Value {
    json!({
        "name": SDS_CLUSTER_NAME,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": http2_protocol_options(),
        "load_assignment": {
            "cluster_name": SDS_CLUSTER_NAME,
            "endpoints": [ { "lb_endpoints": [ {
                "endpoint": { "address": { "pipe": { "path": path.to_string_lossy() } } }
            } ] } ],
        },
    })
}

/// An SDS secret from the agent (`sds-grpc`), as the generated clusters reference them.
fn sds_secret(name: &str) -> Value {
    json!({
        "name": name,
        "sds_config": {
            "api_config_source": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [ { "envoy_grpc": { "cluster_name": SDS_CLUSTER_NAME } } ],
            },
            "resource_api_version": "V3",
        },
    })
}

/// The `xds-grpc` transport socket for the secure port: the workload certificate as client
/// certificate, the server verified against the mesh root and `server_name`, ALPN h2.
fn xds_tls(server_name: &str) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": server_name,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificate_sds_secret_configs": [ sds_secret("default") ],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_typed_subject_alt_names": [
                            { "san_type": "DNS", "matcher": { "exact": server_name } }
                        ],
                    },
                    "validation_context_sds_secret_config": sds_secret("ROOTCA"),
                },
            },
        },
    })
}

fn xds_cluster(ads: &AdsOptions) -> Value {
    let server = &ads.server;
    let mut cluster = json!({
        "name": XDS_CLUSTER_NAME,
        "connect_timeout": proto_duration(ads.connect_timeout),
        // gRPC needs HTTP/2 to the xDS server.
        "typed_extension_protocol_options": http2_protocol_options(),
        "load_assignment": {
            "cluster_name": XDS_CLUSTER_NAME,
            "endpoints": [ { "lb_endpoints": [ {
                "endpoint": { "address": socket_address(&server.host, server.port) }
            } ] } ],
        },
    });
    if let Some(name) = &ads.tls_server_name {
        cluster["transport_socket"] = xds_tls(name);
    }
    match server.ip() {
        Some(_) => cluster["type"] = json!("STATIC"),
        None => {
            cluster["type"] = json!("STRICT_DNS");
            // Sandboxes and CI often have no IPv6 route; Envoy's default AUTO prefers v6.
            cluster["dns_lookup_family"] = json!("V4_PREFERRED");
        }
    }
    cluster
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_xds_addresses() {
        assert_eq!(
            XdsAddress::parse("127.0.0.1:15010"),
            Ok(XdsAddress::new("127.0.0.1", 15010))
        );
        assert_eq!(
            XdsAddress::parse("istiod.istio-system.svc:15010"),
            Ok(XdsAddress::new("istiod.istio-system.svc", 15010))
        );
        assert_eq!(
            XdsAddress::parse("[::1]:18000"),
            Ok(XdsAddress::new("::1", 18000))
        );
        for bad in [
            "",
            "host",
            ":80",
            "host:",
            "host:0",
            "host:70000",
            "::1:80",
            "[zz]:80",
            "[::1]",
        ] {
            assert!(
                XdsAddress::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn durations_use_protobuf_json_form() {
        assert_eq!(proto_duration(Duration::from_secs(10)), "10s");
        assert_eq!(proto_duration(Duration::from_millis(250)), "0.25s");
        assert_eq!(
            proto_duration(Duration::from_nanos(1_000_000_001)),
            "1.000000001s"
        );
    }

    #[test]
    fn minimal_bootstrap_has_node_and_admin_only() {
        let v: Value = serde_json::from_str(&minimal_static_bootstrap(0)).unwrap();
        assert_eq!(
            v,
            json!({
                "node": { "id": "entryway-test", "cluster": "entryway-test" },
                "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
            })
        );
    }

    #[test]
    fn ads_bootstrap_matches_the_measured_shape() {
        let mut ads = AdsOptions::new(AdsApiType::DeltaGrpc, XdsAddress::new("127.0.0.1", 18000));
        ads.initial_fetch_timeout = Some(Duration::from_secs(2));
        let v = BootstrapOptions::new(
            "sidecar~127.0.0.1~a.default~default.svc.cluster.local",
            "a.default",
        )
        .with_metadata("NAMESPACE", "default")
        .with_admin_port(15000)
        .with_ads(ads)
        .with_static_cluster(json!({ "name": "extra" }))
        .to_value();
        assert_eq!(v["node"]["metadata"], json!({ "NAMESPACE": "default" }));
        let ads = &v["dynamic_resources"]["ads_config"];
        assert_eq!(ads["api_type"], "DELTA_GRPC");
        assert_eq!(ads["set_node_on_first_message_only"], true);
        assert_eq!(
            ads["grpc_services"][0]["envoy_grpc"]["cluster_name"],
            XDS_CLUSTER_NAME
        );
        for source in ["cds_config", "lds_config"] {
            assert_eq!(
                v["dynamic_resources"][source],
                json!({ "ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "2s" })
            );
        }
        let clusters = v["static_resources"]["clusters"].as_array().unwrap();
        assert_eq!(clusters.len(), 2);
        assert_eq!(clusters[0]["name"], XDS_CLUSTER_NAME);
        assert_eq!(clusters[0]["type"], "STATIC");
        assert_eq!(
            clusters[0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"],
            socket_address("127.0.0.1", 18000)
        );
        assert_eq!(clusters[1]["name"], "extra");
        assert!(v["static_resources"].get("listeners").is_none());
    }

    #[test]
    fn dns_xds_server_uses_strict_dns() {
        let v = BootstrapOptions::new("n", "c")
            .with_ads(AdsOptions::new(
                AdsApiType::Grpc,
                XdsAddress::new("localhost", 15010),
            ))
            .to_value();
        let cluster = &v["static_resources"]["clusters"][0];
        assert_eq!(cluster["type"], "STRICT_DNS");
        assert_eq!(v["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
    }

    #[test]
    fn sds_socket_adds_the_sds_grpc_pipe_cluster() {
        let v = BootstrapOptions::new("n", "c").to_value();
        assert!(v.get("static_resources").is_none());

        let v = BootstrapOptions::new("n", "c")
            .with_ads(AdsOptions::new(
                AdsApiType::Grpc,
                XdsAddress::new("127.0.0.1", 15010),
            ))
            .with_sds_socket("/run/entryway/sds.sock")
            .with_static_cluster(json!({ "name": "extra" }))
            .to_value();
        let clusters = v["static_resources"]["clusters"].as_array().unwrap();
        let names: Vec<&str> = clusters
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [XDS_CLUSTER_NAME, SDS_CLUSTER_NAME, "extra"]);
        let sds = &clusters[1];
        assert_eq!(sds["type"], "STATIC");
        assert_eq!(
            sds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"],
            json!({ "pipe": { "path": "/run/entryway/sds.sock" } })
        );
        assert_eq!(
            sds["typed_extension_protocol_options"],
            clusters[0]["typed_extension_protocol_options"]
        );
        assert!(
            sds["typed_extension_protocol_options"]
                .to_string()
                .contains("http2_protocol_options")
        );

        // Without ADS (static test bootstraps) it is the first cluster.
        let v = BootstrapOptions::new("n", "c")
            .with_sds_socket("/tmp/s.sock")
            .to_value();
        assert_eq!(
            v["static_resources"]["clusters"][0]["name"],
            SDS_CLUSTER_NAME
        );
        assert!(v.get("dynamic_resources").is_none());
    }

    #[test]
    fn render_is_deterministic_json() {
        let opts = BootstrapOptions::new("n", "c")
            .with_metadata("b", "2")
            .with_metadata("a", "1");
        assert_eq!(opts.render(), opts.clone().render());
        let text = opts.render();
        assert!(text.find("\"a\"").unwrap() < text.find("\"b\"").unwrap());
    }
}

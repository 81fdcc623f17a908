//! `networking.istio.io` DestinationRule (`networking/v1alpha3/destination_rule.proto`):
//! policies applied to traffic for a service after routing (load balancing, connection
//! pool, outlier detection, TLS origination, subsets).
//!
//! oneofs are separate `Option` fields: `LoadBalancerSettings.{simple, consistentHash}`,
//! `ConsistentHashLb.{httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName}` and
//! `ConsistentHashLb.{ringHash, maglev}`; validation checks that at most one is set.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{Duration, de_u64, is_default, nd, proto_enum, type_v1beta1};
use super::virtual_service::PortSelector;

/// Spec of a DestinationRule.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRule {
    /// Service host from the registry (required; wildcards allowed; short names are namespace-relative).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub host: String,
    /// Policies for all ports and subsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named subsets (versions) of the service.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub subsets: Vec<Subset>,
    /// Namespaces the rule is visible to; empty = mesh default.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub export_to: Vec<String>,
    /// Workloads (in the rule's namespace) the rule applies to; note the field is `matchLabels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<type_v1beta1::WorkloadSelector>,
}

/// `TrafficPolicy`: policies for a destination, across its ports.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    /// Load-balancing algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection pool limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Ejection of unhealthy hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS origination to the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    /// Per-port policies; an entry replaces the four main policies above for its port.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Tunnel TCP over HTTP CONNECT/POST to a target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelSettings>,
    /// Send a PROXY protocol header upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Limit on concurrent retries relative to active requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

/// `TrafficPolicy.PortTrafficPolicy`: policies for one port of the destination.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortTrafficPolicy {
    /// The port (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
    /// Load-balancing algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection pool limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Ejection of unhealthy hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS origination to the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

/// `TrafficPolicy.TunnelSettings`: tunnel the downstream connection.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TunnelSettings {
    /// `CONNECT` (default) or `POST`.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub protocol: String,
    /// Host to tunnel to (required; FQDN or IP).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub target_host: String,
    /// Port to tunnel to (required).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub target_port: u32,
}

proto_enum! {
    /// `TrafficPolicy.ProxyProtocol.VERSION`.
    ProxyProtocolVersion {
        /// Human-readable v1 (the default).
        V1 = 0 => "V1",
        /// Binary v2.
        V2 = 1 => "V2",
    }
}

/// `TrafficPolicy.ProxyProtocol`: upstream PROXY protocol settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyProtocol {
    /// PROXY protocol version.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub version: ProxyProtocolVersion,
}

/// `TrafficPolicy.RetryBudget`: Envoy circuit-breaker retry budget.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries as a percentage of active plus pending requests (0-100; default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Minimum retry concurrency (default 3).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub min_retry_concurrency: u32,
    /// Window of requests counted for the budget; unset = only in-flight requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_interval: Option<Duration>,
}

/// `Subset`: a named set of endpoints (by labels) with optional policy overrides.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    /// Subset name (required; DNS-1123 label).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub name: String,
    /// Endpoint labels selecting the subset.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub labels: BTreeMap<String, String>,
    /// Overrides of the rule-level policy, field by field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

proto_enum! {
    /// `LoadBalancerSettings.SimpleLB`: load-balancing algorithms without tuning.
    SimpleLb {
        /// Not specified: Istio picks (LEAST_REQUEST).
        Unspecified = 0 => "UNSPECIFIED",
        /// Deprecated alias of LEAST_REQUEST.
        LeastConn = 1 => "LEAST_CONN",
        /// Random host.
        Random = 2 => "RANDOM",
        /// Forward to the original destination IP (no load balancing).
        Passthrough = 3 => "PASSTHROUGH",
        /// Round robin.
        RoundRobin = 4 => "ROUND_ROBIN",
        /// Fewest outstanding requests.
        LeastRequest = 5 => "LEAST_REQUEST",
    }
}

/// `LoadBalancerSettings`. oneof `lb_policy`: `simple` | `consistentHash`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSettings {
    /// oneof `lb_policy`: a simple algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleLb>,
    /// oneof `lb_policy`: consistent hashing (soft session affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Locality-weighted LB / failover; replaces the mesh-wide setting entirely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<LocalityLoadBalancerSetting>,
    /// Envoy zone-aware routing (exclusive with `localityLbSetting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_aware_lb_setting: Option<ZoneAwareLbSetting>,
    /// Deprecated: slow-start window for new endpoints; use `warmup` (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_duration_secs: Option<Duration>,
    /// Slow-start configuration for new endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupConfiguration>,
}

/// `LoadBalancerSettings.ConsistentHashLB`. oneof `hash_key`: `httpHeaderName` |
/// `httpCookie` | `useSourceIp` | `httpQueryParameterName`; oneof `hash_algorithm`:
/// `ringHash` | `maglev`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHashLb {
    /// oneof `hash_key`: hash on this request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    /// oneof `hash_key`: hash on this cookie (generated if absent and a TTL is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie>,
    /// oneof `hash_key`: hash on the source IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
    /// oneof `hash_key`: hash on this query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_query_parameter_name: Option<String>,
    /// oneof `hash_algorithm`: ring hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    /// oneof `hash_algorithm`: Maglev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev: Option<MagLev>,
    /// Deprecated: minimum ring size; use `ringHash.minimumRingSize`.
    #[serde(
        default,
        deserialize_with = "de_u64",
        skip_serializing_if = "is_default"
    )]
    pub minimum_ring_size: u64,
}

impl ConsistentHashLb {
    /// How many `hash_key` oneof members are set (valid: at most 1).
    pub fn hash_key_count(&self) -> usize {
        [
            self.http_header_name.is_some(),
            self.http_cookie.is_some(),
            self.use_source_ip.is_some(),
            self.http_query_parameter_name.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }
}

/// `ConsistentHashLB.RingHash`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    /// Minimum number of virtual nodes on the ring (default 1024).
    #[serde(
        default,
        deserialize_with = "de_u64",
        skip_serializing_if = "is_default"
    )]
    pub minimum_ring_size: u64,
}

/// `ConsistentHashLB.MagLev`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MagLev {
    /// Lookup table size: a prime below 5000011 (default 65537).
    #[serde(
        default,
        deserialize_with = "de_u64",
        skip_serializing_if = "is_default"
    )]
    pub table_size: u64,
}

/// `ConsistentHashLB.HTTPCookie`: the cookie used as hash key.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCookie {
    /// Cookie name (required).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub name: String,
    /// Cookie path.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub path: String,
    /// Lifetime of a generated cookie; zero = session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Extra attributes of a generated cookie (e.g. `SameSite`, `Secure`).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub attributes: Vec<CookieAttribute>,
}

/// `HTTPCookie.Attribute`: one cookie attribute.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CookieAttribute {
    /// Attribute name (required, unique).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub name: String,
    /// Attribute value (may be empty, e.g. `Secure`).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub value: String,
}

/// `WarmupConfiguration`: slow start of new endpoints.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarmupConfiguration {
    /// Warmup window (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Minimum traffic percentage during warmup (0-100; default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_percent: Option<f64>,
    /// Aggression of the ramp (> 0; default 1 = linear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggression: Option<f64>,
}

/// `ConnectionPoolSettings`: TCP and HTTP connection limits per upstream host.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    /// Settings common to TCP and HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    /// HTTP settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

/// `ConnectionPoolSettings.TCPSettings`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSettings {
    /// Maximum connections per host (default 2^32-1); int32, so negatives decode.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub max_connections: i32,
    /// TCP connect timeout (default: mesh `connectTimeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    /// SO_KEEPALIVE settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Maximum connection lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<Duration>,
    /// Idle timeout (default 1h; `0s` disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}

/// `ConnectionPoolSettings.TCPSettings.TcpKeepalive` (also used by the mesh config).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpKeepalive {
    /// Unanswered probes before the connection is dead (default: OS).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub probes: u32,
    /// Idle time before probing (default: OS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Duration>,
    /// Interval between probes (default: OS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

proto_enum! {
    /// `ConnectionPoolSettings.HTTPSettings.H2UpgradePolicy` (per destination).
    H2UpgradePolicy {
        /// Use the mesh-wide default.
        Default = 0 => "DEFAULT",
        /// Do not upgrade HTTP/1.1 to HTTP/2.
        DoNotUpgrade = 1 => "DO_NOT_UPGRADE",
        /// Upgrade HTTP/1.1 to HTTP/2.
        Upgrade = 2 => "UPGRADE",
    }
}

/// `ConnectionPoolSettings.HTTPSettings`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSettings {
    /// Maximum queued requests (default 2^32-1).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub http1_max_pending_requests: i32,
    /// Maximum active requests (default 2^32-1).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub http2_max_requests: i32,
    /// Maximum requests per connection (0 = unlimited; 1 disables keep-alive).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub max_requests_per_connection: i32,
    /// Maximum outstanding retries (default 2^32-1).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub max_retries: i32,
    /// Idle timeout of pooled connections (default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Whether to upgrade HTTP/1.1 connections to HTTP/2.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub h2_upgrade_policy: H2UpgradePolicy,
    /// Keep the client's protocol upstream (disables the H2 upgrade).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub use_client_protocol: bool,
    /// Maximum concurrent streams per HTTP/2 connection (default 2^31-1).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub max_concurrent_streams: i32,
    /// HTTP/2 PING keepalive on upstream connections (HTTP/2 clusters only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_keep_alive: Option<Http2KeepAlive>,
}

/// HTTP/2 connection keepalive (`connectionPool.http.http2KeepAlive`): PING frames.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Http2KeepAlive {
    /// Interval between PINGs (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Time to wait for a PING response before closing (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// `OutlierDetection`: circuit breaker that ejects failing hosts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Deprecated: consecutive gateway errors before ejection; use the fields below.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub consecutive_errors: i32,
    /// Track locally originated failures separately.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub split_external_local_origin_errors: bool,
    /// Consecutive local-origin failures before ejection (default 5; needs the split flag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    /// Consecutive 502/503/504 before ejection (0/unset = disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// Consecutive 5xx before ejection (default 5; 0 disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx_errors: Option<u32>,
    /// Ejection sweep interval (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Minimum ejection time, multiplied by the ejection count (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Duration>,
    /// Maximum % of hosts ejected (default 10).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub max_ejection_percent: i32,
    /// Healthy-host % below which ejection stops (panic threshold; default 0).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub min_health_percent: i32,
    /// HTTP status codes counted as errors (100-599); empty = 5xx only.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub outlier_detection_http_error_codes: Vec<u32>,
}

proto_enum! {
    /// `ClientTLSSettings.TLSmode`: TLS origination mode.
    ClientTlsMode {
        /// No TLS.
        Disable = 0 => "DISABLE",
        /// TLS with server verification.
        Simple = 1 => "SIMPLE",
        /// mTLS with user-provided client certificates.
        Mutual = 2 => "MUTUAL",
        /// mTLS with Istio-provisioned certificates (other fields should be empty).
        IstioMutual = 3 => "ISTIO_MUTUAL",
    }
}

/// `ClientTLSSettings`: TLS settings for upstream connections.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// TLS mode.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub mode: ClientTlsMode,
    /// Client certificate file (MUTUAL).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub client_certificate: String,
    /// Client private key file (MUTUAL).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub private_key: String,
    /// CA bundle file to verify the server (default: system roots).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub ca_certificates: String,
    /// Secret (or `configmap://`) holding the client cert/key/CA.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub credential_name: String,
    /// SANs to verify on the server certificate (overrides the ServiceEntry's).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub subject_alt_names: Vec<String>,
    /// SNI to present (default: from the Host header for SIMPLE/MUTUAL).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub sni: String,
    /// Skip verification of the server certificate's CA and SAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// Certificate revocation list file.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub ca_crl: String,
}

/// `LocalityLoadBalancerSetting`: locality-weighted distribution and failover.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityLoadBalancerSetting {
    /// Explicit weights per source locality (one of distribute/failover/failoverPriority).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub distribute: Vec<LocalityDistribute>,
    /// Region failover order.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub failover: Vec<LocalityFailover>,
    /// Ordered labels (`key` or `key=value`) used to prioritise endpoints.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub failover_priority: Vec<String>,
    /// Turn locality LB on/off for this rule (overrides the mesh setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `LocalityLoadBalancerSetting.Distribute`: traffic split for one source locality.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityDistribute {
    /// Source locality (`region/zone/subzone`, trailing `*` allowed).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub from: String,
    /// Destination locality → weight (should sum to 100).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub to: BTreeMap<String, u32>,
}

/// `LocalityLoadBalancerSetting.Failover`: where a region fails over to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityFailover {
    /// Source region.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub from: String,
    /// Region to fail over to.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub to: String,
}

/// Zone-aware LB setting (`loadBalancer.zoneAwareLbSetting`, also mesh-wide): Envoy
/// zone-aware routing. Only `enabled`, `failover` and `failoverPriority` could be checked
/// against Istio's description of the field (istio/api#3733), so this struct is lenient:
/// other keys are kept in `unverified` rather than rejected.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneAwareLbSetting {
    /// Turn zone-aware routing on/off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Region failover order.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub failover: Vec<LocalityFailover>,
    /// Ordered labels used to prioritise endpoints (no region/zone/subzone labels).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub failover_priority: Vec<String>,
    /// Any other keys, kept as given (not validated by this model).
    #[serde(flatten)]
    pub unverified: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_mtls_mongocluster() {
        let yaml = r#"
host: mymongodb.somedomain
trafficPolicy:
  tls:
    mode: MUTUAL
    clientCertificate: /etc/certs/myclientcert.pem
    privateKey: /etc/certs/client_private_key.pem
    caCertificates: /etc/certs/rootcacerts.pem
"#;
        let dr: DestinationRule = serde_yaml::from_str(yaml).expect("decode");
        let tls = dr
            .traffic_policy
            .as_ref()
            .and_then(|p| p.tls.as_ref())
            .expect("tls");
        assert_eq!(tls.mode, ClientTlsMode::Mutual);
        assert_eq!(tls.private_key, "/etc/certs/client_private_key.pem");
        let out = serde_json::to_value(&dr).expect("encode");
        let input: serde_json::Value = serde_yaml::from_str(yaml).expect("value");
        assert_eq!(out, input);
        assert_eq!(
            serde_json::from_value::<DestinationRule>(out).expect("re-decode"),
            dr
        );
    }

    /// A DestinationRule using nearly every field, in canonical form.
    const RICH: &str = r#"
host: reviews.prod.svc.cluster.local
exportTo: ["."]
workloadSelector:
  matchLabels: {app: ratings}
trafficPolicy:
  loadBalancer:
    consistentHash:
      httpCookie:
        name: user
        path: /
        ttl: 0s
        attributes:
        - {name: SameSite, value: None}
        - {name: Secure}
      ringHash: {minimumRingSize: 2048}
      minimumRingSize: 1024
    localityLbSetting:
      distribute:
      - from: us-west/zone1/*
        to: {"us-west/zone1/*": 80, "us-west/zone2/*": 20}
      failover:
      - {from: us-east, to: eu-west}
      failoverPriority: [topology.istio.io/network, "version=v1"]
      enabled: true
    warmupDurationSecs: 60s
    warmup:
      duration: 30s
      minimumPercent: 10.0
      aggression: 1.5
  connectionPool:
    tcp:
      maxConnections: 100
      connectTimeout: 0.030s
      tcpKeepalive: {probes: 9, time: 7200s, interval: 75s}
      maxConnectionDuration: 3600s
      idleTimeout: 0s
    http:
      http1MaxPendingRequests: 10
      http2MaxRequests: 1000
      maxRequestsPerConnection: 1
      maxRetries: 3
      idleTimeout: 300s
      h2UpgradePolicy: UPGRADE
      useClientProtocol: true
      maxConcurrentStreams: 200
      http2KeepAlive: {interval: 30s, timeout: 5s}
  outlierDetection:
    consecutiveErrors: 3
    splitExternalLocalOriginErrors: true
    consecutiveLocalOriginFailures: 4
    consecutiveGatewayErrors: 0
    consecutive5xxErrors: 7
    interval: 300s
    baseEjectionTime: 900s
    maxEjectionPercent: 50
    minHealthPercent: 20
    outlierDetectionHttpErrorCodes: [429, 503]
  tls:
    mode: SIMPLE
    caCertificates: /etc/ca.pem
    credentialName: client-credential
    subjectAltNames: [reviews.example.com]
    sni: reviews.example.com
    insecureSkipVerify: false
    caCrl: /etc/crl.pem
  portLevelSettings:
  - port: {number: 80}
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool: {tcp: {maxConnections: 5}}
    outlierDetection: {consecutive5xxErrors: 2}
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 9080}
    loadBalancer:
      consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}
  tunnel: {protocol: POST, targetHost: proxy.example.com, targetPort: 8080}
  proxyProtocol: {version: V2}
  retryBudget: {percent: 40.0, minRetryConcurrency: 5, budgetInterval: 10s}
subsets:
- name: v1
  labels: {version: v1}
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      zoneAwareLbSetting:
        enabled: true
        failoverPriority: [topology.istio.io/network]
- name: v2
  labels: {version: v2}
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
- name: v3
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpQueryParameterName: user}
"#;

    #[test]
    fn rich_round_trip() {
        let dr: DestinationRule = serde_yaml::from_str(RICH).expect("decode");
        let out = serde_json::to_value(&dr).expect("encode");
        let input: serde_json::Value = serde_yaml::from_str(RICH).expect("value");
        assert_eq!(out, input);
        assert_eq!(
            serde_json::from_value::<DestinationRule>(out).expect("re-decode"),
            dr
        );
        let yaml = serde_yaml::to_string(&dr).expect("yaml");
        assert_eq!(
            serde_yaml::from_str::<DestinationRule>(&yaml).expect("yaml re-decode"),
            dr
        );

        let tp = dr.traffic_policy.as_ref().expect("policy");
        let ch = tp
            .load_balancer
            .as_ref()
            .and_then(|l| l.consistent_hash.as_ref())
            .expect("hash");
        assert_eq!(ch.hash_key_count(), 1);
        assert_eq!(
            ch.ring_hash.as_ref().map(|r| r.minimum_ring_size),
            Some(2048)
        );
        let od = tp.outlier_detection.as_ref().expect("od");
        assert_eq!(od.consecutive_gateway_errors, Some(0)); // explicit 0 kept (wrapper type)
        assert_eq!(od.consecutive_5xx_errors, Some(7));
        let http = tp
            .connection_pool
            .as_ref()
            .and_then(|c| c.http.as_ref())
            .expect("http");
        assert_eq!(http.h2_upgrade_policy, H2UpgradePolicy::Upgrade);
        assert_eq!(
            http.http2_keep_alive.as_ref().and_then(|k| k.timeout),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            tp.proxy_protocol.as_ref().map(|p| p.version),
            Some(ProxyProtocolVersion::V2)
        );
        assert_eq!(tp.retry_budget.as_ref().and_then(|r| r.percent), Some(40.0));
        assert_eq!(
            dr.workload_selector.as_ref().map(|w| w.match_labels.len()),
            Some(1)
        );
    }

    #[test]
    fn negative_int32_limits_decode() {
        let dr: DestinationRule = serde_yaml::from_str(
            "host: a\ntrafficPolicy:\n  connectionPool:\n    tcp: {maxConnections: -1}\n    http: {http2MaxRequests: -2}",
        )
        .expect("decode");
        let cp = dr
            .traffic_policy
            .and_then(|p| p.connection_pool)
            .expect("pool");
        assert_eq!(cp.tcp.map(|t| t.max_connections), Some(-1));
        assert_eq!(cp.http.map(|h| h.http2_max_requests), Some(-2));
    }

    #[test]
    fn enums_by_name_and_number() {
        let dr: DestinationRule = serde_yaml::from_str(
            "host: a\ntrafficPolicy:\n  loadBalancer: {simple: 5}\n  tls: {mode: 3}",
        )
        .expect("decode");
        let tp = dr.traffic_policy.expect("policy");
        assert_eq!(
            tp.load_balancer.and_then(|l| l.simple),
            Some(SimpleLb::LeastRequest)
        );
        assert_eq!(tp.tls.map(|t| t.mode), Some(ClientTlsMode::IstioMutual));
        let e = serde_yaml::from_str::<DestinationRule>(
            "host: a\ntrafficPolicy: {loadBalancer: {simple: LEAST_CONNECTIONS}}",
        )
        .expect_err("unknown");
        assert!(
            e.to_string()
                .contains("unknown SimpleLb value \"LEAST_CONNECTIONS\""),
            "{e}"
        );
    }

    #[test]
    fn unknown_fields_rejected() {
        for (yaml, field) in [
            ("host: a\nworkloadSelector: {labels: {app: a}}", "labels"),
            (
                "host: a\ntrafficPolicy: {connectionPool: {http: {proxyProtocol: {}}}}",
                "proxyProtocol",
            ),
            (
                "host: a\ntrafficPolicy: {outlierDetection: {consecutive5XXErrors: 1}}",
                "consecutive5XXErrors",
            ),
            (
                "host: a\ntrafficPolicy: {tls: {mode: SIMPLE, sniHost: a}}",
                "sniHost",
            ),
        ] {
            let e = serde_yaml::from_str::<DestinationRule>(yaml)
                .expect_err(yaml)
                .to_string();
            assert!(e.contains(field), "{yaml}: {e}");
        }
    }

    #[test]
    fn zone_aware_keeps_unverified_keys() {
        let z: ZoneAwareLbSetting =
            serde_yaml::from_str("enabled: true\nminClusterSize: 6").expect("decode");
        assert_eq!(z.enabled, Some(true));
        assert_eq!(
            z.unverified.get("minClusterSize"),
            Some(&serde_json::json!(6))
        );
        let out = serde_json::to_value(&z).expect("encode");
        assert_eq!(
            out,
            serde_json::json!({"enabled": true, "minClusterSize": 6})
        );
    }

    #[test]
    fn uint64_as_string() {
        let m: MagLev = serde_json::from_str(r#"{"tableSize": "65537"}"#).expect("string");
        assert_eq!(m.table_size, 65537);
    }
}

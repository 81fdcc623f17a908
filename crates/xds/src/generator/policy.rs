//! DestinationRule traffic policy → cluster settings (spec §5.2–§5.5), as istiod's
//! `applyTrafficPolicy` does it (`cluster_traffic_policy.go`, `cluster_tls.go`).
//!
//! - [`policy_for_port`], [`merge_subset`], [`with_mesh_defaults`]: which policy applies to a
//!   cluster (§5.2: port-level settings replace the four main fields wholesale; a subset
//!   overrides field by field).
//! - [`ClusterBuild`]: a cluster under construction plus its upstream HTTP protocol options
//!   (Istio's `clusterWrapper`), packed into `typed_extension_protocol_options` by
//!   [`ClusterBuild::build`].
//! - [`apply_traffic_policy`]: connection pool, H2 upgrade, outlier detection, load
//!   balancer, TLS origination / auto-mTLS and PROXY protocol (§5.3, §5.4).
//! - [`hash_policy`], [`hash_policy_for_destination`]: the route-side half of consistent-hash
//!   load balancing (route `hash_policy`), for the route generator.

use std::borrow::Cow;
use std::collections::HashMap;

use entryway_model::api::{
    self, ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, ConsistentHashLb,
    H2UpgradePolicy, LoadBalancerSettings, LocalityFailover, LocalityLoadBalancerSetting,
    MeshConfig, MeshH2UpgradePolicy, OutlierDetection, ProxyProtocol, RetryBudget, SimpleLb,
    TcpKeepalive, TrafficPolicy, TunnelSettings,
};
use entryway_model::registry::scope::EffectiveRule;
use entryway_model::registry::{Locality, ServicePort};
use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlierDetection, UpstreamConnectionOptions,
    circuit_breakers,
    cluster::{
        ClusterDiscoveryType, CommonLbConfig, DiscoveryType, LbConfig, LbPolicy,
        LeastRequestLbConfig, MaglevLbConfig, RingHashLbConfig, RoundRobinLbConfig,
        SlowStartConfig, TransportSocketMatch, common_lb_config,
    },
};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3::LocalityLbEndpoints;
use envoy_types::pb::envoy::config::route::v3::route_action::{HashPolicy, hash_policy};
use envoy_types::pb::envoy::extensions::transport_sockets::proxy_protocol::v3::ProxyProtocolUpstreamTransport;
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as uhttp;
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{Duration, Struct, UInt32Value, UInt64Value, Value, value};
use envoy_types::util::pack_any;

/// Key of the upstream HTTP protocol options in `typed_extension_protocol_options`.
pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// Name of the TLS transport socket.
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
/// Name of the plaintext transport socket.
pub const RAW_BUFFER_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.raw_buffer";
/// Name of the upstream PROXY protocol transport socket.
pub const PROXY_PROTOCOL_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.upstream_proxy_protocol";
/// The bootstrap cluster serving SDS (the istio-agent socket in Istio).
pub const SDS_CLUSTER: &str = "sds-grpc";
/// SDS resource of the workload certificate.
pub const SDS_DEFAULT_RESOURCE: &str = "default";
/// SDS resource of the mesh root certificate.
pub const SDS_ROOT_RESOURCE: &str = "ROOTCA";
/// Circuit-breaker default (Istio sets every threshold to max uint32).
pub const MAX_THRESHOLD: u32 = u32::MAX;
/// ALPN of in-mesh mTLS clusters (metadata exchange enabled, as in Istio).
pub const ALPN_IN_MESH: [&str; 2] = ["istio-peer-exchange", "istio"];
/// ALPN of in-mesh mTLS HTTP/2 clusters.
pub const ALPN_IN_MESH_H2: [&str; 3] = ["istio-peer-exchange", "istio", "h2"];

// ---------------------------------------------------------------------------------------
// Which policy applies (§5.2)
// ---------------------------------------------------------------------------------------

/// The traffic policy that applies to one cluster, after port-level and subset resolution.
/// Fields borrow from the DestinationRule (or the mesh config).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResolvedPolicy<'a> {
    /// `connectionPool`.
    pub connection_pool: Option<&'a ConnectionPoolSettings>,
    /// `outlierDetection`.
    pub outlier_detection: Option<&'a OutlierDetection>,
    /// `loadBalancer`.
    pub load_balancer: Option<&'a LoadBalancerSettings>,
    /// `tls`.
    pub tls: Option<&'a ClientTlsSettings>,
    /// `tunnel` (consumed by listeners, not clusters).
    pub tunnel: Option<&'a TunnelSettings>,
    /// `proxyProtocol`.
    pub proxy_protocol: Option<&'a ProxyProtocol>,
    /// `retryBudget`.
    pub retry_budget: Option<&'a RetryBudget>,
}

impl<'a> ResolvedPolicy<'a> {
    /// Every field of a top-level policy (port-level settings ignored).
    pub fn of(tp: &'a TrafficPolicy) -> ResolvedPolicy<'a> {
        ResolvedPolicy {
            connection_pool: tp.connection_pool.as_ref(),
            outlier_detection: tp.outlier_detection.as_ref(),
            load_balancer: tp.load_balancer.as_ref(),
            tls: tp.tls.as_ref(),
            tunnel: tp.tunnel.as_ref(),
            proxy_protocol: tp.proxy_protocol.as_ref(),
            retry_budget: tp.retry_budget.as_ref(),
        }
    }

    /// `loadBalancer.simple`, UNSPECIFIED when unset.
    pub fn simple_lb(&self) -> SimpleLb {
        self.load_balancer
            .and_then(|lb| lb.simple)
            .unwrap_or(SimpleLb::Unspecified)
    }
}

/// Istio's `GetPortLevelTrafficPolicy`: the port-level entry for `port` as a policy of its
/// own (only connectionPool/loadBalancer/outlierDetection/tls; the rest is dropped), and
/// whether such an entry exists. Without an entry, the whole policy.
pub fn port_level_policy(
    tp: Option<&TrafficPolicy>,
    port: u32,
) -> (Option<ResolvedPolicy<'_>>, bool) {
    let Some(tp) = tp else {
        return (None, false);
    };
    match tp
        .port_level_settings
        .iter()
        .find(|p| p.port.as_ref().is_some_and(|s| s.number == port))
    {
        Some(p) => (
            Some(ResolvedPolicy {
                connection_pool: p.connection_pool.as_ref(),
                outlier_detection: p.outlier_detection.as_ref(),
                load_balancer: p.load_balancer.as_ref(),
                tls: p.tls.as_ref(),
                ..ResolvedPolicy::default()
            }),
            true,
        ),
        None => (Some(ResolvedPolicy::of(tp)), false),
    }
}

/// §5.2 (1): the policy of the default cluster of service port `port`.
pub fn policy_for_port(tp: Option<&TrafficPolicy>, port: u32) -> Option<ResolvedPolicy<'_>> {
    port_level_policy(tp, port).0
}

/// §5.2 (3), Istio's `MergeSubsetTrafficPolicy`: `original` (already port-resolved) with the
/// subset's policy on top, field by field; a matching subset port-level entry replaces the
/// four main fields even when they are unset there.
pub fn merge_subset<'a>(
    original: Option<ResolvedPolicy<'a>>,
    subset: Option<&'a TrafficPolicy>,
    port: u32,
) -> Option<ResolvedPolicy<'a>> {
    let (Some(sub), has_port_level) = port_level_policy(subset, port) else {
        return original;
    };
    let Some(mut merged) = original else {
        return Some(sub);
    };
    if sub.connection_pool.is_some() || has_port_level {
        merged.connection_pool = sub.connection_pool;
    }
    if sub.outlier_detection.is_some() || has_port_level {
        merged.outlier_detection = sub.outlier_detection;
    }
    if sub.load_balancer.is_some() || has_port_level {
        merged.load_balancer = sub.load_balancer;
    }
    if sub.tls.is_some() || has_port_level {
        merged.tls = sub.tls;
    }
    if sub.tunnel.is_some() {
        merged.tunnel = sub.tunnel;
    }
    if sub.proxy_protocol.is_some() {
        merged.proxy_protocol = sub.proxy_protocol;
    }
    if sub.retry_budget.is_some() {
        merged.retry_budget = sub.retry_budget;
    }
    Some(merged)
}

/// §5.2 (2): mesh `defaultTrafficPolicy.connectionPool/outlierDetection` fill in what the
/// DestinationRule leaves unset.
pub fn with_mesh_defaults<'a>(
    policy: Option<ResolvedPolicy<'a>>,
    mesh: &'a MeshConfig,
) -> ResolvedPolicy<'a> {
    let mut p = policy.unwrap_or_default();
    if let Some(d) = &mesh.default_traffic_policy {
        if p.connection_pool.is_none() {
            p.connection_pool = d.connection_pool.as_ref();
        }
        if p.outlier_detection.is_none() {
            p.outlier_detection = d.outlier_detection.as_ref();
        }
    }
    p
}

// ---------------------------------------------------------------------------------------
// Small proto helpers
// ---------------------------------------------------------------------------------------

/// An Istio API duration as a protobuf duration.
pub fn duration(d: &api::Duration) -> Duration {
    Duration {
        seconds: d.seconds(),
        nanos: d.subsec_nanos(),
    }
}

/// `UInt32Value`.
pub fn u32v(value: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value })
}

/// A string `Value`.
pub fn string_value(s: impl Into<String>) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(s.into())),
    }
}

/// A bool `Value`.
pub fn bool_value(b: bool) -> Value {
    Value {
        kind: Some(value::Kind::BoolValue(b)),
    }
}

/// Exact string matchers (Istio's `StringToExactMatch`).
pub fn exact_matchers(values: &[String]) -> Vec<StringMatcher> {
    values
        .iter()
        .map(|v| StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Exact(v.clone())),
            ..Default::default()
        })
        .collect()
}

/// The `istio` filter metadata struct of a cluster, created on demand.
pub fn istio_metadata(cluster: &mut Cluster) -> &mut Struct {
    cluster
        .metadata
        .get_or_insert_with(core::Metadata::default)
        .filter_metadata
        .entry("istio".to_string())
        .or_default()
}

fn discovery_type(c: &Cluster) -> Option<DiscoveryType> {
    match c.cluster_discovery_type {
        Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(t).ok(),
        _ => None,
    }
}

/// True when the cluster is `type: ORIGINAL_DST`.
pub fn is_original_dst(c: &Cluster) -> bool {
    discovery_type(c) == Some(DiscoveryType::OriginalDst)
}

/// True when the cluster is `type: EDS`.
pub fn is_eds(c: &Cluster) -> bool {
    discovery_type(c) == Some(DiscoveryType::Eds)
}

/// Sets `type`.
pub fn set_type(c: &mut Cluster, t: DiscoveryType) {
    c.cluster_discovery_type = Some(ClusterDiscoveryType::Type(t as i32));
}

// ---------------------------------------------------------------------------------------
// The cluster under construction
// ---------------------------------------------------------------------------------------

/// A cluster plus its upstream HTTP protocol options (Istio's `clusterWrapper`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterBuild {
    /// The cluster.
    pub cluster: Cluster,
    /// Options packed into `typed_extension_protocol_options` on [`ClusterBuild::build`]
    /// (boxed: the message is large and most clusters have none).
    pub http_options: Option<Box<uhttp::HttpProtocolOptions>>,
}

impl ClusterBuild {
    /// Wraps a cluster without protocol options.
    pub fn new(cluster: Cluster) -> ClusterBuild {
        ClusterBuild {
            cluster,
            http_options: None,
        }
    }

    fn options(&mut self) -> &mut uhttp::HttpProtocolOptions {
        self.http_options.get_or_insert_with(Default::default)
    }

    /// Explicit HTTP/2 upstream (Istio's `setH2Options`).
    pub fn set_h2(&mut self) {
        let o = self.options();
        if o.upstream_http_protocol_options.is_none() {
            o.upstream_protocol_options = Some(explicit_h2());
        }
    }

    /// `use_downstream_protocol_config` with HTTP/1.1 and HTTP/2 (sniffed ports,
    /// `useClientProtocol`).
    pub fn set_use_downstream_protocol(&mut self) {
        self.options().upstream_protocol_options = Some(use_downstream_protocol());
    }

    /// True when the upstream is explicitly HTTP/2.
    pub fn is_http2(&self) -> bool {
        self.http2_options().is_some()
    }

    fn http2_options(&self) -> Option<&core::Http2ProtocolOptions> {
        match self.http_options.as_ref()?.upstream_protocol_options.as_ref()? {
            uhttp::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(e) => {
                match e.protocol_config.as_ref()? {
                    uhttp::http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(h2) => Some(h2),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn http2_options_mut(&mut self) -> Option<&mut core::Http2ProtocolOptions> {
        match self.http_options.as_mut()?.upstream_protocol_options.as_mut()? {
            uhttp::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(e) => {
                match e.protocol_config.as_mut()? {
                    uhttp::http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(h2) => Some(h2),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The final cluster: protocol options (when any) packed under
    /// `envoy.extensions.upstreams.http.v3.HttpProtocolOptions`, with an explicit HTTP/1.1
    /// config when no upstream protocol was chosen (the field is required by Envoy).
    pub fn build(self) -> Cluster {
        let ClusterBuild {
            mut cluster,
            http_options,
        } = self;
        if let Some(mut o) = http_options {
            if o.upstream_protocol_options.is_none() {
                o.upstream_protocol_options = Some(
                    uhttp::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                        uhttp::http_protocol_options::ExplicitHttpConfig {
                            protocol_config: Some(
                                uhttp::http_protocol_options::explicit_http_config::ProtocolConfig::HttpProtocolOptions(
                                    core::Http1ProtocolOptions::default(),
                                ),
                            ),
                        },
                    ),
                );
            }
            cluster.typed_extension_protocol_options =
                HashMap::from([(HTTP_PROTOCOL_OPTIONS.to_string(), pack_any(*o))]);
        }
        cluster
    }
}

fn explicit_h2() -> uhttp::http_protocol_options::UpstreamProtocolOptions {
    uhttp::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
        uhttp::http_protocol_options::ExplicitHttpConfig {
            protocol_config: Some(
                uhttp::http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                    core::Http2ProtocolOptions::default(),
                ),
            ),
        },
    )
}

/// `use_downstream_protocol_config {http_protocol_options {}, http2_protocol_options {}}`.
pub fn use_downstream_protocol() -> uhttp::http_protocol_options::UpstreamProtocolOptions {
    uhttp::http_protocol_options::UpstreamProtocolOptions::UseDownstreamProtocolConfig(
        uhttp::http_protocol_options::UseDownstreamHttpConfig {
            http_protocol_options: Some(core::Http1ProtocolOptions::default()),
            http2_protocol_options: Some(core::Http2ProtocolOptions::default()),
            ..Default::default()
        },
    )
}

/// Istio's `setUpstreamProtocol`: HTTP/2-class ports get an explicit HTTP/2 upstream, sniffed
/// (protocol-less) ports on a sidecar use the downstream protocol.
pub fn set_upstream_protocol(cb: &mut ClusterBuild, port: &ServicePort) {
    if port.protocol.is_http2() {
        cb.set_h2();
    } else if port.protocol.is_unsupported() {
        cb.set_use_downstream_protocol();
    }
}

// ---------------------------------------------------------------------------------------
// applyTrafficPolicy
// ---------------------------------------------------------------------------------------

/// Istio's inferred mTLS mode of a service port (`BestEffortInferServiceMTLSMode`), with no
/// PeerAuthentication in the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsMode {
    /// Mesh-external service: not applicable (no auto-mTLS).
    Unknown,
    /// Known plaintext (passthrough without mTLS-capable endpoints).
    Disable,
    /// The mesh default without PeerAuthentication.
    Permissive,
}

/// Everything besides the policy that the cluster settings depend on.
#[derive(Debug, Clone)]
pub struct PolicyContext<'a> {
    /// Mesh config (connect timeout, keepalive, H2 upgrade, auto-mTLS, TLS defaults,
    /// locality LB).
    pub mesh: &'a MeshConfig,
    /// The service port of the cluster.
    pub port: &'a ServicePort,
    /// Identities of the service (ServiceEntry `subjectAltNames` plus endpoint service
    /// accounts, sorted): SANs for Istio mTLS and the SIMPLE/MUTUAL fallback.
    pub service_accounts: &'a [String],
    /// SNI of Istio mTLS: `outbound_.<port>_.<subset>_.<host>`.
    pub istio_mtls_sni: String,
    /// `location: MESH_EXTERNAL`.
    pub mesh_external: bool,
    /// Inferred mTLS mode of the service port.
    pub mtls_mode: MtlsMode,
    /// The DestinationRule has a workloadSelector (sidecars may then read credentials).
    pub dr_with_selector: bool,
}

/// Istio's `applyTrafficPolicy` for an outbound cluster.
pub fn apply_traffic_policy(
    cb: &mut ClusterBuild,
    policy: &ResolvedPolicy<'_>,
    ctx: &PolicyContext<'_>,
) {
    let empty = ConnectionPoolSettings::default();
    let pool = policy.connection_pool.unwrap_or(&empty);
    if should_h2_upgrade(ctx.port, ctx.mesh, pool) {
        cb.set_h2();
    }
    apply_connection_pool(ctx.mesh, cb, pool, policy.retry_budget);
    apply_outlier_detection(&mut cb.cluster, policy.outlier_detection);
    apply_load_balancer(&mut cb.cluster, policy.load_balancer, ctx.mesh);
    let (tls_settings, kind) = upstream_tls_settings(policy.tls, ctx);
    apply_upstream_tls(cb, tls_settings.as_deref(), kind, ctx);
    apply_proxy_protocol(&mut cb.cluster, policy.proxy_protocol);
    if is_original_dst(&cb.cluster) {
        cb.cluster.lb_policy = LbPolicy::ClusterProvided as i32;
    }
}

/// Istio's `shouldH2Upgrade`.
pub fn should_h2_upgrade(
    port: &ServicePort,
    mesh: &MeshConfig,
    pool: &ConnectionPoolSettings,
) -> bool {
    if let Some(http) = &pool.http {
        if http.use_client_protocol {
            return false;
        }
        match http.h2_upgrade_policy {
            H2UpgradePolicy::Upgrade => return true,
            H2UpgradePolicy::DoNotUpgrade => return false,
            H2UpgradePolicy::Default => {}
        }
    }
    if !port.protocol.is_http() {
        return false;
    }
    mesh.h2_upgrade_policy == MeshH2UpgradePolicy::Upgrade
}

/// The default circuit-breaker thresholds (every limit max uint32, `track_remaining: false`).
pub fn default_thresholds() -> circuit_breakers::Thresholds {
    circuit_breakers::Thresholds {
        max_connections: u32v(MAX_THRESHOLD),
        max_pending_requests: u32v(MAX_THRESHOLD),
        max_requests: u32v(MAX_THRESHOLD),
        max_retries: u32v(MAX_THRESHOLD),
        track_remaining: false,
        ..Default::default()
    }
}

fn positive(v: i32) -> Option<u32> {
    u32::try_from(v).ok().filter(|v| *v > 0)
}

/// Istio's `applyConnectionPool` (§5.3): connect timeout, circuit breakers (+ retry
/// budget), TCP keepalive and the common HTTP protocol options.
pub fn apply_connection_pool(
    mesh: &MeshConfig,
    cb: &mut ClusterBuild,
    settings: &ConnectionPoolSettings,
    retry_budget: Option<&RetryBudget>,
) {
    let mut threshold = default_thresholds();
    if let Some(rb) = retry_budget {
        threshold.retry_budget = Some(circuit_breakers::thresholds::RetryBudget {
            budget_percent: Some(Percent {
                value: rb.percent.unwrap_or(20.0),
            }),
            min_retry_concurrency: u32v(if rb.min_retry_concurrency > 0 {
                rb.min_retry_concurrency
            } else {
                3
            }),
            budget_interval: rb.budget_interval.as_ref().map(duration),
        });
    }

    let mut idle_timeout: Option<&api::Duration> = None;
    let mut max_requests_per_connection = 0u32;
    let mut max_concurrent_streams = 0u32;
    let mut max_connection_duration: Option<&api::Duration> = None;

    if let Some(http) = &settings.http {
        if let Some(v) = positive(http.http2_max_requests) {
            threshold.max_requests = u32v(v);
        }
        if let Some(v) = positive(http.http1_max_pending_requests) {
            threshold.max_pending_requests = u32v(v);
        }
        if let Some(v) = positive(http.max_retries) {
            threshold.max_retries = u32v(v);
        }
        idle_timeout = http.idle_timeout.as_ref();
        max_requests_per_connection = positive(http.max_requests_per_connection).unwrap_or(0);
        max_concurrent_streams = positive(http.max_concurrent_streams).unwrap_or(0);
    }

    cb.cluster.connect_timeout = Some(duration(&mesh.connect_timeout));
    if let Some(tcp) = &settings.tcp {
        if let Some(t) = &tcp.connect_timeout {
            cb.cluster.connect_timeout = Some(duration(t));
        }
        if let Some(v) = positive(tcp.max_connections) {
            threshold.max_connections = u32v(v);
        }
        if tcp.max_connection_duration.is_some() {
            max_connection_duration = tcp.max_connection_duration.as_ref();
        }
        if idle_timeout.is_none() {
            idle_timeout = tcp.idle_timeout.as_ref();
        }
    }
    apply_tcp_keepalive(
        mesh,
        &mut cb.cluster,
        settings.tcp.as_ref().and_then(|t| t.tcp_keepalive.as_ref()),
    );

    cb.cluster.circuit_breakers = Some(CircuitBreakers {
        thresholds: vec![threshold],
        ..Default::default()
    });

    let h2_keepalive = settings
        .http
        .as_ref()
        .and_then(|h| h.http2_keep_alive.as_ref());
    if max_connection_duration.is_some()
        || idle_timeout.is_some()
        || max_requests_per_connection > 0
        || max_concurrent_streams > 0
    {
        let common = cb
            .options()
            .common_http_protocol_options
            .get_or_insert_with(Default::default);
        if let Some(t) = idle_timeout {
            common.idle_timeout = Some(duration(t));
        }
        if max_requests_per_connection > 0 {
            common.max_requests_per_connection = u32v(max_requests_per_connection);
        }
        if let Some(d) = max_connection_duration {
            common.max_connection_duration = Some(duration(d));
        }
        if max_concurrent_streams > 0
            && let Some(h2) = cb.http2_options_mut()
        {
            h2.max_concurrent_streams = u32v(max_concurrent_streams);
        }
    }
    if let Some(ka) = h2_keepalive
        && let Some(h2) = cb.http2_options_mut()
    {
        h2.connection_keepalive = Some(core::KeepaliveSettings {
            interval: ka.interval.as_ref().map(duration),
            timeout: ka.timeout.as_ref().map(duration),
            ..Default::default()
        });
    }
    if settings
        .http
        .as_ref()
        .is_some_and(|h| h.use_client_protocol)
    {
        cb.set_use_downstream_protocol();
    }
}

/// Istio's `applyTCPKeepalive`: mesh `tcpKeepalive` first, the DR's fields on top.
pub fn apply_tcp_keepalive(mesh: &MeshConfig, cluster: &mut Cluster, dr: Option<&TcpKeepalive>) {
    for ka in [mesh.tcp_keepalive.as_ref(), dr].into_iter().flatten() {
        let opts =
            cluster
                .upstream_connection_options
                .get_or_insert_with(|| UpstreamConnectionOptions {
                    tcp_keepalive: Some(core::TcpKeepalive::default()),
                    ..Default::default()
                });
        let k = opts.tcp_keepalive.get_or_insert_with(Default::default);
        if ka.probes > 0 {
            k.keepalive_probes = u32v(ka.probes);
        }
        if let Some(t) = &ka.time {
            k.keepalive_time = u32v(u32::try_from(t.seconds()).unwrap_or(0));
        }
        if let Some(i) = &ka.interval {
            k.keepalive_interval = u32v(u32::try_from(i.seconds()).unwrap_or(0));
        }
    }
}

/// Istio's `applyOutlierDetection` (§5.3).
pub fn apply_outlier_detection(cluster: &mut Cluster, outlier: Option<&OutlierDetection>) {
    let Some(o) = outlier else {
        return;
    };
    let enforcing = |v: u32| u32v(if v > 0 { 100 } else { 0 });
    let mut out = EnvoyOutlierDetection {
        enforcing_success_rate: u32v(0),
        ..Default::default()
    };
    if let Some(v) = o.consecutive_5xx_errors {
        out.consecutive_5xx = u32v(v);
        out.enforcing_consecutive_5xx = enforcing(v);
    }
    if let Some(v) = o.consecutive_gateway_errors {
        out.consecutive_gateway_failure = u32v(v);
        out.enforcing_consecutive_gateway_failure = enforcing(v);
    }
    out.interval = o.interval.as_ref().map(duration);
    out.base_ejection_time = o.base_ejection_time.as_ref().map(duration);
    if let Some(v) = positive(o.max_ejection_percent) {
        out.max_ejection_percent = u32v(v);
    }
    if o.split_external_local_origin_errors {
        out.split_external_local_origin_errors = true;
        if let Some(v) = o.consecutive_local_origin_failures.filter(|v| *v > 0) {
            out.consecutive_local_origin_failure = u32v(v);
            out.enforcing_consecutive_local_origin_failure = u32v(100);
        }
        out.enforcing_local_origin_success_rate = u32v(0);
    }
    cluster.outlier_detection = Some(out);
    if o.min_health_percent >= 0 {
        cluster
            .common_lb_config
            .get_or_insert_with(CommonLbConfig::default)
            .healthy_panic_threshold = Some(Percent {
            value: f64::from(o.min_health_percent),
        });
    }
}

/// Istio's `GetLocalityLbSetting`: the DR's setting replaces the mesh's; either one with
/// `enabled: false` turns locality LB off.
pub fn locality_setting<'a>(
    mesh: &'a MeshConfig,
    lb: Option<&'a LoadBalancerSettings>,
) -> Option<&'a LocalityLoadBalancerSetting> {
    if let Some(dr) = lb.and_then(|l| l.locality_lb_setting.as_ref()) {
        return (dr.enabled != Some(false)).then_some(dr);
    }
    let m = &mesh.locality_lb_setting;
    (m.enabled != Some(false)).then_some(m)
}

fn region_priority(proxy: &Locality, ep: Option<&core::Locality>) -> u32 {
    let (r, z, s) = ep.map_or(("", "", ""), |l| {
        (l.region.as_str(), l.zone.as_str(), l.sub_zone.as_str())
    });
    if proxy.region == r {
        if proxy.zone == z {
            if proxy.sub_zone == s {
                return 0;
            }
            return 1;
        }
        return 2;
    }
    3
}

/// Istio's `applyLocalityFailover`: priorities by locality proximity to the proxy (0 same
/// subzone, 1 same zone, 2 same region, 3 other region, 4 other region not named by a
/// matching `failover` rule), then renumbered without gaps.
pub fn apply_locality_failover(
    endpoints: &mut [LocalityLbEndpoints],
    proxy: &Locality,
    failover: &[LocalityFailover],
) {
    let mut used: Vec<u32> = Vec::new();
    for e in endpoints.iter_mut() {
        let mut p = region_priority(proxy, e.locality.as_ref());
        if p == 3
            && let Some(rule) = failover.iter().find(|f| f.from == proxy.region)
            && e.locality.as_ref().is_none_or(|l| l.region != rule.to)
        {
            p = 4;
        }
        e.priority = e.priority.saturating_mul(5).saturating_add(p);
        used.push(e.priority);
    }
    used.sort_unstable();
    used.dedup();
    for e in endpoints.iter_mut() {
        if let Ok(i) = used.binary_search(&e.priority) {
            e.priority = u32::try_from(i).unwrap_or(u32::MAX);
        }
    }
}

/// Istio's `ApplyLocalityLoadBalancer` as far as Entryway models it: the proxy has no
/// locality (treated as empty), `distribute` and `failoverPriority` are not applied;
/// region failover is applied when `enable_failover` (outlier detection configured).
pub fn apply_locality_lb(
    endpoints: &mut [LocalityLbEndpoints],
    setting: Option<&LocalityLoadBalancerSetting>,
    enable_failover: bool,
) {
    let Some(s) = setting else {
        return;
    };
    if !s.distribute.is_empty() {
        return;
    }
    if enable_failover && s.enabled != Some(false) && s.failover_priority.is_empty() {
        apply_locality_failover(endpoints, &Locality::default(), &s.failover);
    }
}

/// Istio's `applyLoadBalancer` (§5.3 loadBalancer, ORIGINAL_DST always CLUSTER_PROVIDED).
pub fn apply_load_balancer(
    cluster: &mut Cluster,
    lb: Option<&LoadBalancerSettings>,
    mesh: &MeshConfig,
) {
    let setting = locality_setting(mesh, lb);
    let enable_failover = cluster.outlier_detection.is_some();
    if let Some(s) = setting
        && ((enable_failover && (!s.failover.is_empty() || !s.failover_priority.is_empty()))
            || !s.distribute.is_empty())
    {
        cluster
            .common_lb_config
            .get_or_insert_with(CommonLbConfig::default)
            .locality_config_specifier = Some(
            common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                common_lb_config::LocalityWeightedLbConfig::default(),
            ),
        );
    }
    if let Some(la) = cluster.load_assignment.as_mut() {
        apply_locality_lb(&mut la.endpoints, setting, enable_failover);
    }

    if is_original_dst(cluster) {
        cluster.lb_policy = LbPolicy::ClusterProvided as i32;
        return;
    }

    match lb.and_then(|l| l.simple).unwrap_or(SimpleLb::Unspecified) {
        SimpleLb::Random => cluster.lb_policy = LbPolicy::Random as i32,
        SimpleLb::RoundRobin => {
            cluster.lb_policy = LbPolicy::RoundRobin as i32;
            if let Some(s) = lb.and_then(slow_start) {
                cluster.lb_config = Some(LbConfig::RoundRobinLbConfig(RoundRobinLbConfig {
                    slow_start_config: Some(s),
                }));
            }
        }
        SimpleLb::Passthrough => {
            cluster.lb_policy = LbPolicy::ClusterProvided as i32;
            set_type(cluster, DiscoveryType::OriginalDst);
            cluster.load_assignment = None;
        }
        SimpleLb::LeastConn | SimpleLb::LeastRequest | SimpleLb::Unspecified => {
            cluster.lb_policy = LbPolicy::LeastRequest as i32;
            if let Some(s) = lb.and_then(slow_start) {
                cluster.lb_config = Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
                    slow_start_config: Some(s),
                    ..Default::default()
                }));
            }
        }
    }

    if let Some(ch) = lb.and_then(|l| l.consistent_hash.as_ref()) {
        apply_consistent_hash(cluster, ch);
    }
}

fn slow_start(lb: &LoadBalancerSettings) -> Option<SlowStartConfig> {
    if let Some(w) = &lb.warmup {
        return Some(SlowStartConfig {
            slow_start_window: w.duration.as_ref().map(duration),
            aggression: Some(core::RuntimeDouble {
                default_value: w.aggression.unwrap_or(1.0),
                runtime_key: "(".to_string(),
            }),
            min_weight_percent: Some(Percent {
                value: w.minimum_percent.unwrap_or(10.0),
            }),
        });
    }
    lb.warmup_duration_secs.as_ref().map(|d| SlowStartConfig {
        slow_start_window: Some(duration(d)),
        ..Default::default()
    })
}

fn apply_consistent_hash(cluster: &mut Cluster, ch: &ConsistentHashLb) {
    if let Some(m) = &ch.maglev {
        cluster.lb_policy = LbPolicy::Maglev as i32;
        if m.table_size != 0 {
            cluster.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
                table_size: Some(UInt64Value {
                    value: m.table_size,
                }),
            }));
        }
    } else if let Some(r) = &ch.ring_hash {
        cluster.lb_policy = LbPolicy::RingHash as i32;
        if r.minimum_ring_size != 0 {
            cluster.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
                minimum_ring_size: Some(UInt64Value {
                    value: r.minimum_ring_size,
                }),
                ..Default::default()
            }));
        }
    } else {
        let size = if ch.minimum_ring_size != 0 {
            ch.minimum_ring_size
        } else {
            1024
        };
        cluster.lb_policy = LbPolicy::RingHash as i32;
        cluster.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
            minimum_ring_size: Some(UInt64Value { value: size }),
            ..Default::default()
        }));
    }
}

// ---------------------------------------------------------------------------------------
// TLS (§5.4)
// ---------------------------------------------------------------------------------------

/// Whether the TLS settings came from the user or from auto-mTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsKind {
    /// From the DestinationRule.
    UserSupplied,
    /// Auto-mTLS.
    AutoDetected,
}

/// Istio's `buildUpstreamTLSSettings`: the effective TLS settings of a cluster.
pub fn upstream_tls_settings<'a>(
    tls: Option<&'a ClientTlsSettings>,
    ctx: &PolicyContext<'_>,
) -> (Option<Cow<'a, ClientTlsSettings>>, TlsKind) {
    if let Some(t) = tls {
        if t.mode != ClientTlsMode::IstioMutual {
            return (Some(Cow::Borrowed(t)), TlsKind::UserSupplied);
        }
        let sni = if t.sni.is_empty() {
            ctx.istio_mtls_sni.clone()
        } else {
            t.sni.clone()
        };
        let sans = if t.subject_alt_names.is_empty() {
            ctx.service_accounts.to_vec()
        } else {
            t.subject_alt_names.clone()
        };
        return (
            Some(Cow::Owned(istio_mutual(sans, sni))),
            TlsKind::UserSupplied,
        );
    }
    if ctx.mesh_external
        || !ctx.mesh.enable_auto_mtls
        || matches!(ctx.mtls_mode, MtlsMode::Unknown | MtlsMode::Disable)
    {
        return (None, TlsKind::UserSupplied);
    }
    (
        Some(Cow::Owned(istio_mutual(
            ctx.service_accounts.to_vec(),
            ctx.istio_mtls_sni.clone(),
        ))),
        TlsKind::AutoDetected,
    )
}

fn istio_mutual(subject_alt_names: Vec<String>, sni: String) -> ClientTlsSettings {
    ClientTlsSettings {
        mode: ClientTlsMode::IstioMutual,
        subject_alt_names,
        sni,
        ..Default::default()
    }
}

/// An SDS secret reference as istiod writes it (gRPC to [`SDS_CLUSTER`]; `default` and
/// `ROOTCA` with `initial_fetch_timeout: 0s`).
pub fn sds_secret_config(name: &str) -> tls::SdsSecretConfig {
    let initial_fetch_timeout =
        (name == SDS_DEFAULT_RESOURCE || name == SDS_ROOT_RESOURCE).then(Duration::default);
    tls::SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(core::ConfigSource {
            config_source_specifier: Some(
                core::config_source::ConfigSourceSpecifier::ApiConfigSource(
                    core::ApiConfigSource {
                        api_type: core::api_config_source::ApiType::Grpc as i32,
                        set_node_on_first_message_only: true,
                        transport_api_version: core::ApiVersion::V3 as i32,
                        grpc_services: vec![core::GrpcService {
                            target_specifier: Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(
                                core::grpc_service::EnvoyGrpc {
                                    cluster_name: SDS_CLUSTER.to_string(),
                                    ..Default::default()
                                },
                            )),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                ),
            ),
            resource_api_version: core::ApiVersion::V3 as i32,
            initial_fetch_timeout,
            ..Default::default()
        }),
    }
}

pub(crate) fn default_common_tls_context() -> tls::CommonTlsContext {
    tls::CommonTlsContext {
        tls_params: Some(tls::TlsParameters {
            tls_minimum_protocol_version: tls::tls_parameters::TlsProtocol::TlSv12 as i32,
            tls_maximum_protocol_version: tls::tls_parameters::TlsProtocol::TlSv13 as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[allow(deprecated)] // match_subject_alt_names: what istiod (and Envoy 1.40) still use.
fn validation_context(sans: &[String]) -> tls::CertificateValidationContext {
    tls::CertificateValidationContext {
        match_subject_alt_names: exact_matchers(sans),
        ..Default::default()
    }
}

pub(crate) fn combined_validation(
    default: tls::CertificateValidationContext,
    sds: &str,
) -> tls::common_tls_context::ValidationContextType {
    tls::common_tls_context::ValidationContextType::CombinedValidationContext(
        tls::common_tls_context::CombinedCertificateValidationContext {
            default_validation_context: Some(default),
            validation_context_sds_secret_config: Some(sds_secret_config(sds)),
            ..Default::default()
        },
    )
}

/// Kubernetes secret SDS resource name (`kubernetes://<name>` unless already a URI).
fn credential_resource(name: &str) -> String {
    if name.starts_with("file-") || name.contains("://") {
        name.to_string()
    } else {
        format!("kubernetes://{name}")
    }
}

/// Istio's `buildUpstreamClusterTLSContext`.
pub fn upstream_tls_context(
    cb: &mut ClusterBuild,
    settings: &ClientTlsSettings,
    ctx: &PolicyContext<'_>,
) -> Option<tls::UpstreamTlsContext> {
    let privileged = !settings.credential_name.is_empty()
        && !settings.credential_name.starts_with("configmap://");
    if privileged
        && !ctx.dr_with_selector
        && matches!(settings.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual)
    {
        return None;
    }
    match settings.mode {
        ClientTlsMode::Disable => None,
        ClientTlsMode::IstioMutual => {
            let mut common = default_common_tls_context();
            common.tls_certificate_sds_secret_configs =
                vec![sds_secret_config(SDS_DEFAULT_RESOURCE)];
            common.validation_context_type = Some(combined_validation(
                validation_context(&settings.subject_alt_names),
                SDS_ROOT_RESOURCE,
            ));
            let alpn: &[&str] = if cb.is_http2() {
                &ALPN_IN_MESH_H2
            } else {
                &ALPN_IN_MESH
            };
            common.alpn_protocols = alpn.iter().map(ToString::to_string).collect();
            let sni = if settings.sni.is_empty() {
                cb.cluster.name.clone()
            } else {
                settings.sni.clone()
            };
            Some(tls::UpstreamTlsContext {
                common_tls_context: Some(common),
                sni,
                ..Default::default()
            })
        }
        ClientTlsMode::Simple => Some(user_tls(cb, settings, ctx, false)?),
        ClientTlsMode::Mutual => Some(user_tls(cb, settings, ctx, true)?),
    }
}

/// Istio's `constructUpstreamTLS` (SIMPLE / MUTUAL).
fn user_tls(
    cb: &mut ClusterBuild,
    settings: &ClientTlsSettings,
    ctx: &PolicyContext<'_>,
    mutual: bool,
) -> Option<tls::UpstreamTlsContext> {
    let mut common = default_common_tls_context();
    set_auto_sni_and_san_validation(cb, settings);

    // External-registry services (all ServiceEntries) fall back to the entry's SANs.
    let sans: &[String] = if settings.subject_alt_names.is_empty() {
        ctx.service_accounts
    } else {
        &settings.subject_alt_names
    };
    let insecure = settings.insecure_skip_verify == Some(true);
    if !settings.credential_name.is_empty() {
        let resource = credential_resource(&settings.credential_name);
        if mutual {
            common.tls_certificate_sds_secret_configs = vec![sds_secret_config(&resource)];
        }
        common.validation_context_type = Some(combined_validation(
            validation_context(sans),
            &format!("{resource}-cacert"),
        ));
    } else {
        if mutual {
            if settings.client_certificate.is_empty() || settings.private_key.is_empty() {
                return None;
            }
            common.tls_certificate_sds_secret_configs = vec![sds_secret_config(&format!(
                "file-cert:{}~{}",
                settings.client_certificate, settings.private_key
            ))];
        }
        if insecure {
            common.validation_context_type = Some(
                tls::common_tls_context::ValidationContextType::ValidationContext(
                    tls::CertificateValidationContext::default(),
                ),
            );
        } else {
            let ca = if settings.ca_certificates.is_empty() {
                "system"
            } else {
                settings.ca_certificates.as_str()
            };
            let mut default = validation_context(sans);
            if !settings.ca_crl.is_empty() {
                default.crl = Some(core::DataSource {
                    specifier: Some(core::data_source::Specifier::Filename(
                        settings.ca_crl.clone(),
                    )),
                    ..Default::default()
                });
            }
            common.validation_context_type =
                Some(combined_validation(default, &format!("file-root:{ca}")));
        }
    }
    if let (Some(d), Some(params)) = (&ctx.mesh.tls_defaults, common.tls_params.as_mut()) {
        if !d.ecdh_curves.is_empty() {
            params.ecdh_curves = d.ecdh_curves.clone();
        }
        if !d.cipher_suites.is_empty() {
            params.cipher_suites = d.cipher_suites.clone();
        }
    }
    if cb.is_http2() {
        common.alpn_protocols = vec!["h2".to_string()];
    }
    Some(tls::UpstreamTlsContext {
        common_tls_context: Some(common),
        sni: settings.sni.clone(),
        ..Default::default()
    })
}

/// `auto_sni` when the DR sets no SNI; `auto_san_validation` when additionally no SANs are
/// given and verification is on.
fn set_auto_sni_and_san_validation(cb: &mut ClusterBuild, settings: &ClientTlsSettings) {
    let auto_sni = settings.sni.is_empty();
    let auto_san = auto_sni
        && settings.subject_alt_names.is_empty()
        && settings.insecure_skip_verify != Some(true);
    if auto_sni || auto_san {
        let u = cb
            .options()
            .upstream_http_protocol_options
            .get_or_insert_with(Default::default);
        u.auto_sni |= auto_sni;
        u.auto_san_validation |= auto_san;
    }
}

/// `envoy.transport_sockets.raw_buffer`.
pub fn raw_buffer_transport_socket() -> core::TransportSocket {
    core::TransportSocket {
        name: RAW_BUFFER_TRANSPORT_SOCKET.to_string(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(pack_any(
            RawBuffer::default(),
        ))),
    }
}

/// Istio's `applyUpstreamTLSSettings`: the TLS transport socket, or for auto-mTLS (except
/// ORIGINAL_DST clusters) the `tlsMode-istio` / `tlsMode-disabled` socket matches.
pub fn apply_upstream_tls(
    cb: &mut ClusterBuild,
    settings: Option<&ClientTlsSettings>,
    kind: TlsKind,
    ctx: &PolicyContext<'_>,
) {
    let Some(settings) = settings else {
        return;
    };
    if let Some(context) = upstream_tls_context(cb, settings, ctx) {
        cb.cluster.transport_socket = Some(core::TransportSocket {
            name: TLS_TRANSPORT_SOCKET.to_string(),
            config_type: Some(core::transport_socket::ConfigType::TypedConfig(pack_any(
                context,
            ))),
        });
    }
    let auto = settings.mode == ClientTlsMode::IstioMutual && kind == TlsKind::AutoDetected;
    if auto && !is_original_dst(&cb.cluster) {
        let socket = cb.cluster.transport_socket.take();
        cb.cluster.transport_socket_matches = vec![
            TransportSocketMatch {
                name: "tlsMode-istio".to_string(),
                r#match: Some(Struct {
                    fields: HashMap::from([("tlsMode".to_string(), string_value("istio"))]),
                }),
                transport_socket: socket,
            },
            TransportSocketMatch {
                name: "tlsMode-disabled".to_string(),
                r#match: Some(Struct::default()),
                transport_socket: Some(raw_buffer_transport_socket()),
            },
        ];
    }
}

fn proxy_protocol_socket(version: i32, inner: core::TransportSocket) -> core::TransportSocket {
    core::TransportSocket {
        name: PROXY_PROTOCOL_TRANSPORT_SOCKET.to_string(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(pack_any(
            ProxyProtocolUpstreamTransport {
                config: Some(core::ProxyProtocolConfig {
                    version,
                    ..Default::default()
                }),
                transport_socket: Some(inner),
                ..Default::default()
            },
        ))),
    }
}

/// Istio's `applyUpstreamProxyProtocol`: wrap the transport socket(s) in
/// `envoy.transport_sockets.upstream_proxy_protocol`.
pub fn apply_proxy_protocol(cluster: &mut Cluster, pp: Option<&ProxyProtocol>) {
    let Some(pp) = pp else {
        return;
    };
    let version = match pp.version {
        api::ProxyProtocolVersion::V1 => core::proxy_protocol_config::Version::V1 as i32,
        api::ProxyProtocolVersion::V2 => core::proxy_protocol_config::Version::V2 as i32,
    };
    if cluster.transport_socket.is_none() && cluster.transport_socket_matches.is_empty() {
        cluster.transport_socket = Some(proxy_protocol_socket(
            version,
            raw_buffer_transport_socket(),
        ));
        return;
    }
    if let Some(ts) = cluster.transport_socket.take() {
        cluster.transport_socket = Some(proxy_protocol_socket(version, ts));
    }
    for m in &mut cluster.transport_socket_matches {
        if let Some(ts) = m.transport_socket.take() {
            m.transport_socket = Some(proxy_protocol_socket(version, ts));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Route-side consistent hashing
// ---------------------------------------------------------------------------------------

/// The route `hash_policy` for a consistent-hash load balancer (Istio's
/// `consistentHashToHashPolicy`): empty unless `consistentHash` sets a hash key.
pub fn hash_policy(lb: &LoadBalancerSettings) -> Vec<HashPolicy> {
    lb.consistent_hash
        .as_ref()
        .and_then(consistent_hash_policy)
        .into_iter()
        .collect()
}

fn consistent_hash_policy(ch: &ConsistentHashLb) -> Option<HashPolicy> {
    let spec = if let Some(h) = &ch.http_header_name {
        hash_policy::PolicySpecifier::Header(hash_policy::Header {
            header_name: h.clone(),
            ..Default::default()
        })
    } else if let Some(c) = &ch.http_cookie {
        hash_policy::PolicySpecifier::Cookie(hash_policy::Cookie {
            name: c.name.clone(),
            ttl: c.ttl.as_ref().map(duration),
            path: c.path.clone(),
            ..Default::default()
        })
    } else if let Some(ip) = ch.use_source_ip {
        hash_policy::PolicySpecifier::ConnectionProperties(hash_policy::ConnectionProperties {
            source_ip: ip,
        })
    } else if let Some(q) = &ch.http_query_parameter_name {
        hash_policy::PolicySpecifier::QueryParameter(hash_policy::QueryParameter {
            name: q.clone(),
        })
    } else {
        return None;
    };
    Some(HashPolicy {
        policy_specifier: Some(spec),
        ..Default::default()
    })
}

/// The consistent-hash settings for a route destination (Istio's `HashForHTTPDestination`):
/// subset port-level > subset > rule port-level > rule top-level. `port` is the
/// destination's explicit `port.number`, if any.
pub fn consistent_hash_for_destination<'a>(
    rule: &'a EffectiveRule,
    port: Option<u32>,
    subset: &str,
) -> Option<&'a ConsistentHashLb> {
    let tp = rule.traffic_policy.as_ref();
    let pls_hash = |tp: Option<&'a TrafficPolicy>| -> Option<&'a ConsistentHashLb> {
        let port = port?;
        tp?.port_level_settings
            .iter()
            .find(|s| s.port.as_ref().map_or(0, |p| p.number) == port)?
            .load_balancer
            .as_ref()?
            .consistent_hash
            .as_ref()
    };
    let top = tp
        .and_then(|t| t.load_balancer.as_ref())
        .and_then(|l| l.consistent_hash.as_ref());
    let rule_pls = pls_hash(tp);
    let (sub_hash, sub_pls) = match rule.subsets.iter().find(|s| s.name == subset) {
        Some(s) => {
            let stp = s.traffic_policy.as_ref();
            (
                stp.and_then(|t| t.load_balancer.as_ref())
                    .and_then(|l| l.consistent_hash.as_ref()),
                pls_hash(stp),
            )
        }
        None => (None, None),
    };
    sub_pls.or(sub_hash).or(rule_pls).or(top)
}

/// The route `hash_policy` for a destination `(host's rule, port, subset)`.
pub fn hash_policy_for_destination(
    rule: Option<&EffectiveRule>,
    port: Option<u32>,
    subset: &str,
) -> Vec<HashPolicy> {
    rule.and_then(|r| consistent_hash_for_destination(r, port, subset))
        .and_then(consistent_hash_policy)
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::testutil::{TestEnv, cluster_json};
    use serde_json::json;

    const SE: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 443, name: tls, protocol: TLS}
  - {number: 9000, name: grpc, protocol: GRPC}
  resolution: DNS
"#;

    fn with_dr(dr: &str) -> TestEnv {
        TestEnv::new(&format!("{SE}---\n{dr}"))
    }

    #[test]
    fn port_level_settings_replace_wholesale() {
        let env = with_dr(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool: {tcp: {maxConnections: 7}}
    portLevelSettings:
    - port: {number: 443}
      connectionPool: {http: {http2MaxRequests: 9}}
"#,
        );
        let cfg = env.generate();
        let c80 = cluster_json(&cfg, "outbound|80||api.example.com");
        assert_eq!(c80["lb_policy"], "RANDOM");
        assert_eq!(
            c80["circuit_breakers"]["thresholds"][0]["max_connections"],
            7
        );
        let c443 = cluster_json(&cfg, "outbound|443||api.example.com");
        // Port level: LB falls back to Istio's default, not to RANDOM; maxConnections too.
        assert_eq!(c443["lb_policy"], "LEAST_REQUEST");
        let th = &c443["circuit_breakers"]["thresholds"][0];
        assert_eq!(th["max_connections"], 4294967295u32);
        assert_eq!(th["max_requests"], 9);
    }

    #[test]
    fn subset_overrides_field_by_field() {
        let env = with_dr(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool: {tcp: {maxConnections: 7}}
  subsets:
  - name: v1
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
  - name: v2
    trafficPolicy:
      portLevelSettings:
      - port: {number: 80}
        outlierDetection: {consecutive5xxErrors: 3}
"#,
        );
        let cfg = env.generate();
        let v1 = cluster_json(&cfg, "outbound|80|v1|api.example.com");
        // ROUND_ROBIN is the proto default: absent from the JSON.
        assert!(v1.get("lb_policy").is_none(), "{v1}");
        assert_eq!(
            v1["circuit_breakers"]["thresholds"][0]["max_connections"],
            7
        );
        assert_eq!(v1["metadata"]["filter_metadata"]["istio"]["subset"], "v1");
        // A subset port-level entry replaces all four fields, even the unset ones.
        let v2 = cluster_json(&cfg, "outbound|80|v2|api.example.com");
        assert_eq!(v2["lb_policy"], "LEAST_REQUEST");
        assert_eq!(
            v2["circuit_breakers"]["thresholds"][0]["max_connections"],
            4294967295u32
        );
        assert_eq!(v2["outlier_detection"]["consecutive_5xx"], 3);
        // Other ports of v2 keep the rule's policy.
        let v2_443 = cluster_json(&cfg, "outbound|443|v2|api.example.com");
        assert_eq!(v2_443["lb_policy"], "RANDOM");
    }

    #[test]
    fn connection_pool_mapping() {
        let env = with_dr(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 10
        connectTimeout: 3s
        maxConnectionDuration: 30s
        tcpKeepalive: {probes: 3, time: 60s, interval: 5s}
      http:
        http1MaxPendingRequests: 11
        http2MaxRequests: 12
        maxRetries: 13
        maxRequestsPerConnection: 14
        idleTimeout: 15s
        maxConcurrentStreams: 16
"#,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|80||api.example.com");
        assert_eq!(c["connect_timeout"], "3s");
        let th = &c["circuit_breakers"]["thresholds"][0];
        assert_eq!(th["max_connections"], 10);
        assert_eq!(th["max_pending_requests"], 11);
        assert_eq!(th["max_requests"], 12);
        assert_eq!(th["max_retries"], 13);
        assert_eq!(
            c["upstream_connection_options"]["tcp_keepalive"],
            json!({"keepalive_probes": 3, "keepalive_time": 60, "keepalive_interval": 5})
        );
        let opts = &c["typed_extension_protocol_options"][HTTP_PROTOCOL_OPTIONS];
        assert_eq!(
            opts["common_http_protocol_options"],
            json!({"idle_timeout": "15s", "max_requests_per_connection": 14, "max_connection_duration": "30s"})
        );
        // HTTP/1.1 port: protocol options need an explicit HTTP/1.1 config.
        assert_eq!(
            opts["explicit_http_config"],
            json!({"http_protocol_options": {}})
        );
        // maxConcurrentStreams only reaches HTTP/2 clusters.
        let g = cluster_json(&cfg, "outbound|9000||api.example.com");
        let gopts = &g["typed_extension_protocol_options"][HTTP_PROTOCOL_OPTIONS];
        assert_eq!(
            gopts["explicit_http_config"]["http2_protocol_options"]["max_concurrent_streams"],
            16
        );
    }

    #[test]
    fn outlier_detection_mapping_and_panic_threshold() {
        let env = with_dr(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 0
      consecutiveGatewayErrors: 4
      interval: 5s
      baseEjectionTime: 1m
      maxEjectionPercent: 50
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 2
"#,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|80||api.example.com");
        assert_eq!(
            c["outlier_detection"],
            json!({
                "consecutive_5xx": 0,
                "enforcing_consecutive_5xx": 0,
                "consecutive_gateway_failure": 4,
                "enforcing_consecutive_gateway_failure": 100,
                "interval": "5s",
                "base_ejection_time": "60s",
                "max_ejection_percent": 50,
                "enforcing_success_rate": 0,
                "split_external_local_origin_errors": true,
                "consecutive_local_origin_failure": 2,
                "enforcing_consecutive_local_origin_failure": 100,
                "enforcing_local_origin_success_rate": 0,
            })
        );
        // Any outlier detection sets the panic threshold (default 0).
        assert_eq!(
            c["common_lb_config"],
            json!({"healthy_panic_threshold": {}})
        );
    }

    #[test]
    fn load_balancer_simple_and_consistent_hash() {
        let env = with_dr(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN, warmup: {duration: 10s}}
    portLevelSettings:
    - port: {number: 443}
      loadBalancer: {consistentHash: {httpHeaderName: x-user}}
    - port: {number: 9000}
      loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}}
"#,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|80||api.example.com");
        assert_eq!(c["lb_policy"], "LEAST_REQUEST");
        assert_eq!(
            c["least_request_lb_config"]["slow_start_config"],
            json!({"slow_start_window": "10s", "aggression": {"default_value": 1.0, "runtime_key": "("}, "min_weight_percent": {"value": 10.0}})
        );
        let c = cluster_json(&cfg, "outbound|443||api.example.com");
        assert_eq!(c["lb_policy"], "RING_HASH");
        assert_eq!(
            c["ring_hash_lb_config"],
            json!({"minimum_ring_size": "1024"})
        );
        let c = cluster_json(&cfg, "outbound|9000||api.example.com");
        assert_eq!(c["lb_policy"], "MAGLEV");
        assert_eq!(c["maglev_lb_config"], json!({"table_size": "65537"}));
    }

    #[test]
    fn passthrough_lb_makes_original_dst() {
        let env = with_dr(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    loadBalancer: {simple: PASSTHROUGH}
"#,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|80||api.example.com");
        assert_eq!(c["type"], "ORIGINAL_DST");
        assert_eq!(c["lb_policy"], "CLUSTER_PROVIDED");
        assert!(c.get("load_assignment").is_none(), "{c}");
    }

    #[test]
    fn hash_policies_for_routes() {
        let env = with_dr(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 0s, path: /}}}
    portLevelSettings:
    - port: {number: 443}
      loadBalancer: {consistentHash: {httpQueryParameterName: q}}
  subsets:
  - name: v1
    trafficPolicy:
      loadBalancer: {consistentHash: {httpHeaderName: x-v1}}
"#,
        );
        let scope = env.scope();
        let rule = scope.destination_rule(&scope.services[0]);
        let j = |v: Vec<HashPolicy>| -> Vec<serde_json::Value> {
            v.iter()
                .map(|h| crate::json::to_json_value(h).expect("json"))
                .collect()
        };
        assert_eq!(
            j(hash_policy_for_destination(rule.as_ref(), None, "")),
            vec![json!({"cookie": {"name": "user", "ttl": "0s", "path": "/"}})]
        );
        assert_eq!(
            j(hash_policy_for_destination(rule.as_ref(), Some(443), "")),
            vec![json!({"query_parameter": {"name": "q"}})]
        );
        assert_eq!(
            j(hash_policy_for_destination(rule.as_ref(), Some(80), "v1")),
            vec![json!({"header": {"header_name": "x-v1"}})]
        );
        assert!(hash_policy_for_destination(None, None, "").is_empty());
        let lb = LoadBalancerSettings {
            simple: Some(SimpleLb::Random),
            ..Default::default()
        };
        assert!(hash_policy(&lb).is_empty());
    }

    #[test]
    fn tls_simple_without_sni_sets_auto_sni_and_system_ca() {
        let env = with_dr(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: SIMPLE}
"#,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|80||api.example.com");
        let ts = &c["transport_socket"];
        assert_eq!(ts["name"], TLS_TRANSPORT_SOCKET);
        let tc = &ts["typed_config"];
        assert_eq!(
            tc["@type"],
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
        );
        assert!(tc.get("sni").is_none());
        let common = &tc["common_tls_context"];
        assert_eq!(
            common["tls_params"],
            json!({"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"})
        );
        let cvc = &common["combined_validation_context"];
        assert_eq!(cvc["default_validation_context"], json!({}));
        assert_eq!(
            cvc["validation_context_sds_secret_config"]["name"],
            "file-root:system"
        );
        let opts = &c["typed_extension_protocol_options"][HTTP_PROTOCOL_OPTIONS];
        assert_eq!(
            opts["upstream_http_protocol_options"],
            json!({"auto_sni": true, "auto_san_validation": true})
        );
        // HTTP/2 cluster: ALPN h2.
        let g = cluster_json(&cfg, "outbound|9000||api.example.com");
        assert_eq!(
            g["transport_socket"]["typed_config"]["common_tls_context"]["alpn_protocols"],
            json!(["h2"])
        );
    }

    #[test]
    fn tls_simple_sans_fall_back_to_service_entry() {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  subjectAltNames: [spiffe://b, spiffe://a]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: SIMPLE, sni: api.example.com, caCertificates: /etc/ca.pem}
"#;
        let env = TestEnv::new(yaml);
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|443||api.example.com");
        let tc = &c["transport_socket"]["typed_config"];
        assert_eq!(tc["sni"], "api.example.com");
        let cvc = &tc["common_tls_context"]["combined_validation_context"];
        assert_eq!(
            cvc["default_validation_context"]["match_subject_alt_names"],
            json!([{"exact": "spiffe://a"}, {"exact": "spiffe://b"}])
        );
        assert_eq!(
            cvc["validation_context_sds_secret_config"]["name"],
            "file-root:/etc/ca.pem"
        );
        // SNI given: no auto_sni, so no protocol options at all on this TCP port.
        assert!(c.get("typed_extension_protocol_options").is_none(), "{c}");
    }

    #[test]
    fn tls_mutual_files_and_insecure() {
        let env = with_dr(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, insecureSkipVerify: true}
"#,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|443||api.example.com");
        let common = &c["transport_socket"]["typed_config"]["common_tls_context"];
        assert_eq!(
            common["tls_certificate_sds_secret_configs"][0]["name"],
            "file-cert:/c.pem~/k.pem"
        );
        assert_eq!(common["validation_context"], json!({}));
    }

    #[test]
    fn tls_credential_name_is_ignored_on_sidecars() {
        let env = with_dr(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: SIMPLE, credentialName: my-secret}
"#,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|443||api.example.com");
        assert!(c.get("transport_socket").is_none(), "{c}");
    }

    #[test]
    fn tls_istio_mutual_uses_sds_and_default_sni() {
        let env = with_dr(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
  subsets:
  - {name: v1, labels: {}}
"#,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|80||api.example.com");
        let tc = &c["transport_socket"]["typed_config"];
        assert_eq!(tc["sni"], "outbound_.80_._.api.example.com");
        let common = &tc["common_tls_context"];
        assert_eq!(
            common["alpn_protocols"],
            json!(["istio-peer-exchange", "istio"])
        );
        let cert = &common["tls_certificate_sds_secret_configs"][0];
        assert_eq!(cert["name"], "default");
        assert_eq!(
            cert["sds_config"],
            json!({
                "api_config_source": {
                    "api_type": "GRPC",
                    "set_node_on_first_message_only": true,
                    "transport_api_version": "V3",
                    "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]
                },
                "initial_fetch_timeout": "0s",
                "resource_api_version": "V3"
            })
        );
        assert_eq!(
            common["combined_validation_context"]["validation_context_sds_secret_config"]["name"],
            "ROOTCA"
        );
        let g = cluster_json(&cfg, "outbound|9000|v1|api.example.com");
        let tc = &g["transport_socket"]["typed_config"];
        assert_eq!(tc["sni"], "outbound_.9000_.v1_.api.example.com");
        assert_eq!(
            tc["common_tls_context"]["alpn_protocols"],
            json!(["istio-peer-exchange", "istio", "h2"])
        );
    }

    #[test]
    fn auto_mtls_only_for_mesh_internal() {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: internal, namespace: default}
spec:
  hosts: [internal.example.com]
  location: MESH_INTERNAL
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, serviceAccount: app}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [external.example.com]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.2, serviceAccount: app}
"#;
        let env = TestEnv::new(yaml);
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|8080||internal.example.com");
        assert!(c.get("transport_socket").is_none());
        let m = &c["transport_socket_matches"];
        assert_eq!(m[0]["name"], "tlsMode-istio");
        assert_eq!(m[0]["match"], json!({"tlsMode": "istio"}));
        let tc = &m[0]["transport_socket"]["typed_config"];
        assert_eq!(tc["sni"], "outbound_.8080_._.internal.example.com");
        assert_eq!(
            tc["common_tls_context"]["combined_validation_context"]["default_validation_context"]["match_subject_alt_names"],
            json!([{"exact": "spiffe://cluster.local/ns/default/sa/app"}])
        );
        assert_eq!(m[1]["name"], "tlsMode-disabled");
        assert_eq!(m[1]["match"], json!({}));
        assert_eq!(
            m[1]["transport_socket"]["name"],
            RAW_BUFFER_TRANSPORT_SOCKET
        );

        let e = cluster_json(&cfg, "outbound|8080||external.example.com");
        assert!(e.get("transport_socket_matches").is_none());
        assert!(e.get("transport_socket").is_none());
    }

    #[test]
    fn proxy_protocol_wraps_transport_socket() {
        let env = with_dr(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    proxyProtocol: {version: V2}
"#,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|443||api.example.com");
        let ts = &c["transport_socket"];
        assert_eq!(ts["name"], PROXY_PROTOCOL_TRANSPORT_SOCKET);
        assert_eq!(ts["typed_config"]["config"], json!({"version": "V2"}));
        assert_eq!(
            ts["typed_config"]["transport_socket"]["name"],
            RAW_BUFFER_TRANSPORT_SOCKET
        );
    }

    #[test]
    fn mesh_h2_upgrade_and_use_client_protocol() {
        let mesh = MeshConfig {
            h2_upgrade_policy: MeshH2UpgradePolicy::Upgrade,
            ..MeshConfig::default()
        };
        let yaml = format!(
            "{SE}---\n{}",
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    portLevelSettings:
    - port: {number: 9000}
      connectionPool: {http: {useClientProtocol: true}}
"#
        );
        let env = TestEnv::with_mesh(&yaml, mesh);
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|80||api.example.com");
        let opts = &c["typed_extension_protocol_options"][HTTP_PROTOCOL_OPTIONS];
        assert_eq!(
            opts["explicit_http_config"],
            json!({"http2_protocol_options": {}})
        );
        // TLS port: never upgraded.
        let t = cluster_json(&cfg, "outbound|443||api.example.com");
        assert!(t.get("typed_extension_protocol_options").is_none());
        let g = cluster_json(&cfg, "outbound|9000||api.example.com");
        let gopts = &g["typed_extension_protocol_options"][HTTP_PROTOCOL_OPTIONS];
        assert_eq!(
            gopts["use_downstream_protocol_config"],
            json!({"http_protocol_options": {}, "http2_protocol_options": {}})
        );
    }

    #[test]
    fn retry_budget_and_mesh_default_policy() {
        let mesh = MeshConfig::from_yaml(
            r#"
defaultTrafficPolicy:
  connectionPool: {tcp: {maxConnections: 5}}
  outlierDetection: {consecutive5xxErrors: 2}
tcpKeepalive: {time: 30s}
"#,
        )
        .expect("mesh");
        let yaml = format!(
            "{SE}---\n{}",
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    retryBudget: {percent: 25, minRetryConcurrency: 5}
    outlierDetection: {consecutive5xxErrors: 9}
"#
        );
        let env = TestEnv::with_mesh(&yaml, mesh);
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|80||api.example.com");
        let th = &c["circuit_breakers"]["thresholds"][0];
        assert_eq!(th["max_connections"], 5, "mesh default connection pool");
        assert_eq!(
            th["retry_budget"],
            json!({"budget_percent": {"value": 25.0}, "min_retry_concurrency": 5})
        );
        assert_eq!(c["outlier_detection"]["consecutive_5xx"], 9, "DR wins");
        assert_eq!(
            c["upstream_connection_options"],
            json!({"tcp_keepalive": {"keepalive_time": 30}})
        );
    }

    #[test]
    fn locality_failover_priorities() {
        let mut eps: Vec<LocalityLbEndpoints> = ["", "us/a", "eu/b"]
            .iter()
            .map(|l| {
                let loc = Locality::parse(l);
                LocalityLbEndpoints {
                    locality: Some(core::Locality {
                        region: loc.region,
                        zone: loc.zone,
                        sub_zone: loc.sub_zone,
                    }),
                    ..Default::default()
                }
            })
            .collect();
        apply_locality_failover(&mut eps, &Locality::parse("eu"), &[]);
        let p: Vec<u32> = eps.iter().map(|e| e.priority).collect();
        // eu/b: same region (2) → 0 after renumbering; "" and us/a: other region (3) → 1.
        assert_eq!(p, vec![1, 1, 0]);
        for e in &mut eps {
            e.priority = 0;
        }
        let failover = [LocalityFailover {
            from: "eu".into(),
            to: "us".into(),
        }];
        apply_locality_failover(&mut eps, &Locality::parse("eu"), &failover);
        let p: Vec<u32> = eps.iter().map(|e| e.priority).collect();
        assert_eq!(p, vec![2, 1, 0]);
    }
}

//! Clusters (spec §4.3, §5): outbound clusters per service port and subset, plus
//! BlackHoleCluster, PassthroughCluster and InboundPassthroughCluster.
//!
//! Not generated: inbound `inbound|<port>||` clusters (Entryway does not know the proxy's own
//! service targets), `AllowAnyDynamicDNSCluster` and DYNAMIC_DNS (dynamic forward proxy)
//! clusters, and Istio-only pieces absent from upstream Envoy (the `istio.metadata_exchange`
//! cluster filter and the `istio.alpn_override` metadata read by `istio.alpn`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use entryway_model::api::{SimpleLb, TrafficPolicy};
use entryway_model::registry::scope::EffectiveRule;
use entryway_model::registry::{
    Endpoint, Proxy, ProxyScope, Resolution, Service, ServicePort, TlsMode,
};
use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{
        CommonLbConfig, DiscoveryType, DnsLookupFamily, EdsClusterConfig, LbConfig, LbPolicy,
        OriginalDstLbConfig,
    },
};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use envoy_types::pb::envoy::extensions::network::dns_resolver::cares::v3::CaresDnsResolverConfig;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as uhttp;
use envoy_types::pb::google::protobuf::{Duration, ListValue, Struct, Value, value};
use envoy_types::util::pack_any;

use super::eds::{
    MtlsChecker, encode_locality_lb_endpoints, locality_lb_endpoints, subset_matches,
};
use super::names;
use super::policy::{
    self, ClusterBuild, MtlsMode, PolicyContext, ResolvedPolicy, bool_value, duration,
    string_value, u32v,
};
use super::wire;

/// `PILOT_DNS_CARES_UDP_MAX_QUERIES` default.
pub const DNS_UDP_MAX_QUERIES: u32 = 100;
/// `PILOT_DNS_JITTER_DURATION` default (100ms).
pub const DNS_JITTER_NANOS: i32 = 100_000_000;
/// Idle timeout of the passthrough clusters' HTTP connections (5 minutes).
pub const PASSTHROUGH_IDLE_TIMEOUT_SECS: i64 = 300;

/// Every cluster of the proxy: BlackHoleCluster, PassthroughCluster,
/// InboundPassthroughCluster, then per service (registry order) and non-UDP port the
/// default cluster followed by its subset clusters.
pub fn clusters(scope: &ProxyScope<'_>) -> Vec<Cluster> {
    let ports: usize = scope.services.iter().map(|s| s.ports.len()).sum();
    let mut out = Vec::with_capacity(3 + ports);
    out.push(blackhole_cluster(scope));
    out.push(passthrough_cluster(scope));
    out.push(inbound_passthrough_cluster(scope));
    let env = ClusterEnv::new(scope);
    for svc in &scope.services {
        service_clusters(scope, &env, svc, false, &mut |c, _, _| out.push(c));
    }
    out
}

/// What every outbound cluster of one generation shares: computed once per proxy.
pub(crate) struct ClusterEnv {
    family: DnsLookupFamily,
    dns_resolver: core::TypedExtensionConfig,
    /// `dns_resolver`, encoded (spliced into DNS clusters in direct mode).
    pub(crate) dns_resolver_bytes: Vec<u8>,
}

impl ClusterEnv {
    /// The shared pieces for `scope`'s proxy.
    pub(crate) fn new(scope: &ProxyScope<'_>) -> ClusterEnv {
        let dns_resolver = dns_resolver_config();
        ClusterEnv {
            family: dns_lookup_family(scope.proxy),
            dns_resolver_bytes: prost::Message::encode_to_vec(&dns_resolver),
            dns_resolver,
        }
    }
}

/// What a cluster of one service was built from: the DestinationRule that applies and every
/// endpoint of the service (all ports), for building its load assignment without a second
/// lookup.
pub(crate) struct ServiceInputs<'s> {
    /// The applying rule.
    pub(crate) rule: Option<&'s EffectiveRule>,
    /// Every endpoint of the service.
    pub(crate) endpoints: &'s [Arc<Endpoint>],
}

/// Parts of a cluster written straight as protobuf (`direct` mode of [`service_clusters`]):
/// the cluster carries an empty placeholder in their place, which the encoder replaces.
pub(crate) struct Direct {
    /// Encoded `metadata` (field 25).
    pub(crate) metadata: Vec<u8>,
    /// Encoded `load_assignment` (field 33) of a DNS cluster.
    pub(crate) load_assignment: Option<Vec<u8>>,
}

/// `Cluster.metadata`.
pub(crate) const METADATA_FIELD: u32 = 25;
/// `Cluster.load_assignment`.
pub(crate) const LOAD_ASSIGNMENT_FIELD: u32 = 33;
/// `Cluster.typed_dns_resolver_config`: in direct mode an empty placeholder, to be replaced
/// by [`ClusterEnv::dns_resolver_bytes`].
pub(crate) const DNS_RESOLVER_FIELD: u32 = 55;

/// The outbound clusters of one service, in [`clusters`] order, handed to `emit` one at a
/// time (so a caller may encode and drop each before the next is built). With `direct`,
/// the metadata (and the endpoints of DNS clusters without a DestinationRule) are handed
/// over encoded instead, the cluster holding empty placeholders for them.
pub(crate) fn service_clusters(
    scope: &ProxyScope<'_>,
    env: &ClusterEnv,
    svc: &Service,
    direct: bool,
    emit: &mut dyn FnMut(Cluster, Option<Direct>, &ServiceInputs<'_>),
) {
    if svc.resolution == Resolution::DynamicDns {
        // Dynamic forward proxy clusters are not generated.
        return;
    }
    let rule = scope.destination_rule(svc);
    let endpoints = service_endpoints(scope, svc);
    let accounts = if svc.mesh_external && rule.is_none() {
        Vec::new()
    } else {
        accounts_of(svc, endpoints)
    };
    let sb = ServiceBuilder {
        scope,
        svc,
        rule: rule.as_ref(),
        config_path: rule.as_ref().map(config_path),
        dr_with_selector: rule.as_ref().is_some_and(|r| dr_with_selector(scope, r)),
        endpoints,
        accounts: &accounts,
        family: env.family,
        dns_resolver: &env.dns_resolver,
        direct,
    };
    let inputs = ServiceInputs {
        rule: rule.as_ref(),
        endpoints,
    };
    let mut out = |c: Cluster, d: Option<Direct>| emit(c, d, &inputs);
    for port in svc.ports.iter().filter(|p| !p.protocol.is_udp()) {
        sb.port_clusters(port, &mut out);
    }
}

/// Every endpoint of a service (all ports), one registry lookup.
pub fn service_endpoints<'r>(scope: &ProxyScope<'r>, svc: &Service) -> &'r [Arc<Endpoint>] {
    scope.registry.host_endpoints(&svc.namespace, &svc.hostname)
}

fn dns_resolver_config() -> core::TypedExtensionConfig {
    core::TypedExtensionConfig {
        name: "envoy.network.dns_resolver.cares".to_string(),
        typed_config: Some(pack_any(CaresDnsResolverConfig {
            udp_max_queries: u32v(DNS_UDP_MAX_QUERIES),
            ..Default::default()
        })),
    }
}

/// `/apis/networking.istio.io/v1/namespaces/<ns>/destination-rule/<name>`.
fn config_path(rule: &EffectiveRule) -> String {
    format!(
        "/apis/networking.istio.io/v1/namespaces/{}/destination-rule/{}",
        rule.namespace, rule.name
    )
}

/// Whether the applying DestinationRule has a workloadSelector (such rules may hand
/// credentials to sidecars).
fn dr_with_selector(scope: &ProxyScope<'_>, rule: &EffectiveRule) -> bool {
    scope
        .registry
        .destination_rules
        .iter()
        .find(|d| d.namespace == rule.namespace && d.name == rule.name)
        .is_some_and(|d| d.spec.workload_selector.is_some())
}

fn accounts_of(svc: &Service, endpoints: &[Arc<Endpoint>]) -> Vec<String> {
    let mut v: Vec<String> = svc.subject_alt_names.clone();
    v.extend(
        endpoints
            .iter()
            .filter(|e| !e.service_account.is_empty())
            .map(|e| e.service_account.clone()),
    );
    v.sort();
    v.dedup();
    v
}

/// The identities of a service: ServiceEntry `subjectAltNames` plus the service accounts of
/// its endpoints, sorted and de-duplicated (Istio's `ServiceAccounts` index).
pub fn service_accounts(scope: &ProxyScope<'_>, svc: &Service) -> Vec<String> {
    accounts_of(svc, service_endpoints(scope, svc))
}

fn dns_lookup_family(proxy: &Proxy) -> DnsLookupFamily {
    if !proxy.ips.is_empty() && proxy.ips.iter().all(IpAddr::is_ipv6) {
        DnsLookupFamily::V6Only
    } else {
        DnsLookupFamily::V4Only
    }
}

fn discovery_type_of(svc: &Service) -> DiscoveryType {
    match svc.resolution {
        Resolution::ClientSideLb => DiscoveryType::Eds,
        Resolution::DnsLb => DiscoveryType::StrictDns,
        Resolution::DnsRoundRobinLb => DiscoveryType::LogicalDns,
        Resolution::Passthrough => DiscoveryType::OriginalDst,
        Resolution::DynamicDns => DiscoveryType::Eds,
    }
}

/// `outbound_.<port>_.<subset>_.<host>`: the SNI of Istio mTLS.
pub fn sni_name(port: u32, subset: &str, host: &str) -> String {
    format!("outbound_.{port}_.{subset}_.{host}")
}

/// Istio's `BuildStatPrefix` for outbound clusters of (registry-external) services.
fn stat_prefix(pattern: &str, host: &str, subset: &str, port: &ServicePort) -> String {
    pattern
        .replace("%SERVICE%", host)
        .replace("%SERVICE_NAME%", host)
        .replace("%SERVICE_FQDN%", host)
        .replace("%SUBSET_NAME%", subset)
        .replace("%TARGET_PORT%", "0")
        .replace("%SERVICE_PORT%", &port.number.to_string())
        .replace("%SERVICE_PORT_NAME%", &port.name)
}

/// The cluster metadata: `filter_metadata.istio` with `services: [{host, name,
/// namespace}]`, `external: true` for mesh-external services (default clusters only, as in
/// Istio), `config` naming the DestinationRule and `subset`.
fn cluster_metadata(
    svc: &Service,
    external: bool,
    config: Option<&str>,
    subset: Option<&str>,
) -> core::Metadata {
    let mut service = HashMap::with_capacity(3);
    service.insert("host".to_string(), string_value(svc.hostname.clone()));
    service.insert("name".to_string(), string_value(svc.hostname.clone()));
    service.insert("namespace".to_string(), string_value(svc.namespace.clone()));
    let mut fields = HashMap::with_capacity(4);
    fields.insert(
        "services".to_string(),
        Value {
            kind: Some(value::Kind::ListValue(ListValue {
                values: vec![Value {
                    kind: Some(value::Kind::StructValue(Struct { fields: service })),
                }],
            })),
        },
    );
    if external {
        fields.insert("external".to_string(), bool_value(true));
    }
    if let Some(c) = config {
        fields.insert("config".to_string(), string_value(c));
    }
    if let Some(s) = subset {
        fields.insert("subset".to_string(), string_value(s));
    }
    let mut filter_metadata = HashMap::with_capacity(1);
    filter_metadata.insert("istio".to_string(), Struct { fields });
    core::Metadata {
        filter_metadata,
        ..Default::default()
    }
}

/// The encoding of [`cluster_metadata`] (map entries sorted by key).
fn encode_cluster_metadata(
    svc: &Service,
    external: bool,
    config: Option<&str>,
    subset: Option<&str>,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(96 + 2 * svc.hostname.len() + svc.namespace.len());
    // A `Struct.fields` entry.
    fn field(b: &mut Vec<u8>, key: &str, value: impl FnOnce(&mut Vec<u8>)) {
        wire::message(b, 1, |b| {
            wire::string_always(b, 1, key);
            wire::message(b, 2, value);
        });
    }
    // filter_metadata (1) entry "istio" -> Struct.
    wire::message(&mut buf, 1, |b| {
        wire::string_always(b, 1, "istio");
        wire::message(b, 2, |b| {
            if let Some(c) = config {
                field(b, "config", |b| wire::string_value(b, c));
            }
            if external {
                // bool_value (4): true.
                field(b, "external", |b| wire::uint32_always(b, 4, 1));
            }
            field(b, "services", |b| {
                // list_value (6) { values (1): struct_value (5) {host, name, namespace} }.
                wire::message(b, 6, |b| {
                    wire::message(b, 1, |b| {
                        wire::message(b, 5, |b| {
                            field(b, "host", |b| wire::string_value(b, &svc.hostname));
                            field(b, "name", |b| wire::string_value(b, &svc.hostname));
                            field(b, "namespace", |b| wire::string_value(b, &svc.namespace));
                        });
                    });
                });
            });
            if let Some(s) = subset {
                field(b, "subset", |b| wire::string_value(b, s));
            }
        });
    });
    buf
}

/// `outbound|<port>|<subset>|<host>` (as [`names::outbound_cluster`]), sized exactly.
fn cluster_name(port: u32, subset: &str, host: &str) -> String {
    let mut s = String::with_capacity(21 + subset.len() + host.len());
    let _ = write!(s, "outbound|{port}|");
    s.push_str(subset);
    s.push('|');
    s.push_str(host);
    s
}

/// EDS config: ADS, `initial_fetch_timeout: 0s`, V3 (Istio's `maybeApplyEdsConfig`).
fn maybe_apply_eds_config(cluster: &mut Cluster) {
    if !policy::is_eds(cluster) {
        return;
    }
    cluster.eds_cluster_config = Some(EdsClusterConfig {
        service_name: cluster.name.clone(),
        eds_config: Some(core::ConfigSource {
            config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
                core::AggregatedConfigSource::default(),
            )),
            initial_fetch_timeout: Some(Duration::default()),
            resource_api_version: core::ApiVersion::V3 as i32,
            ..Default::default()
        }),
    });
}

/// Builds the clusters of one service.
struct ServiceBuilder<'s, 'a> {
    scope: &'s ProxyScope<'a>,
    svc: &'s Service,
    rule: Option<&'s EffectiveRule>,
    /// `filter_metadata.istio.config` when a rule applies.
    config_path: Option<String>,
    dr_with_selector: bool,
    /// Every endpoint of the service (all ports).
    endpoints: &'a [Arc<Endpoint>],
    accounts: &'s [String],
    family: DnsLookupFamily,
    dns_resolver: &'s core::TypedExtensionConfig,
    /// Metadata and rule-less DNS endpoints encoded directly (see [`Direct`]).
    direct: bool,
}

impl ServiceBuilder<'_, '_> {
    fn is_dns(&self) -> bool {
        matches!(
            self.svc.resolution,
            Resolution::DnsLb | Resolution::DnsRoundRobinLb
        )
    }

    /// The endpoints of one service port.
    fn port_endpoints<'e>(
        &'e self,
        port: &'e ServicePort,
    ) -> impl Iterator<Item = &'e Endpoint> + Clone {
        self.endpoints
            .iter()
            .map(|e| e.as_ref())
            .filter(move |e| e.service_port_name == port.name)
    }

    /// Istio's `buildCluster` for an outbound cluster. `None` for a DNS cluster without
    /// endpoints (not emitted at all).
    #[allow(deprecated)] // dns_refresh_rate / dns_jitter / respect_dns_ttl: as istiod sets them.
    fn base_cluster(
        &self,
        name: String,
        dtype: DiscoveryType,
        endpoints: Vec<LocalityLbEndpoints>,
        has_endpoints: bool,
        port: &ServicePort,
        subset: &str,
    ) -> Option<ClusterBuild> {
        let mesh = self.scope.mesh;
        let mut cb = ClusterBuild::default();
        let c = &mut cb.cluster;
        match dtype {
            DiscoveryType::StrictDns | DiscoveryType::LogicalDns | DiscoveryType::Static => {
                if !has_endpoints {
                    return None;
                }
                if dtype != DiscoveryType::Static {
                    c.dns_lookup_family = self.family as i32;
                    c.typed_dns_resolver_config = Some(if self.direct {
                        core::TypedExtensionConfig::default()
                    } else {
                        self.dns_resolver.clone()
                    });
                    c.dns_jitter = Some(Duration {
                        seconds: 0,
                        nanos: DNS_JITTER_NANOS,
                    });
                    c.dns_refresh_rate = Some(duration(&mesh.dns_refresh_rate));
                    c.respect_dns_ttl = true;
                }
                c.load_assignment = Some(ClusterLoadAssignment {
                    cluster_name: name.clone(),
                    endpoints,
                    ..Default::default()
                });
            }
            DiscoveryType::OriginalDst => {
                if self.svc.resolution == Resolution::Passthrough && port.target_port != 0 {
                    c.lb_config = Some(LbConfig::OriginalDstLbConfig(OriginalDstLbConfig {
                        upstream_port_override: u32v(port.target_port),
                        ..Default::default()
                    }));
                }
            }
            DiscoveryType::Eds => {}
        }
        policy::set_type(c, dtype);
        c.common_lb_config = Some(CommonLbConfig::default());
        c.alt_stat_name = if mesh.outbound_cluster_stat_name.is_empty() {
            let mut a = String::with_capacity(name.len() + 1);
            a.push_str(&name);
            a.push(';');
            a
        } else {
            let mut a = stat_prefix(
                &mesh.outbound_cluster_stat_name,
                &self.svc.hostname,
                subset,
                port,
            );
            a.push(';');
            a
        };
        c.name = name;
        policy::set_upstream_protocol(&mut cb, port);
        Some(cb)
    }

    /// Inline load assignment endpoints of a DNS cluster (all endpoints of the port,
    /// hostnames included), filtered by subset labels.
    fn dns_endpoints(
        &self,
        port: &ServicePort,
        labels: Option<&BTreeMap<String, String>>,
        checker: &MtlsChecker<'_>,
    ) -> Vec<LocalityLbEndpoints> {
        locality_lb_endpoints(
            self.port_endpoints(port)
                .filter(|e| labels.is_none_or(|l| subset_matches(l, e))),
            checker,
        )
    }

    /// Istio's `BestEffortInferServiceMTLSMode` (no PeerAuthentication).
    fn mtls_mode(&self, tp: Option<&TrafficPolicy>, port: &ServicePort) -> MtlsMode {
        if self.svc.mesh_external {
            return MtlsMode::Unknown;
        }
        let passthrough_lb = tp
            .and_then(|t| t.load_balancer.as_ref())
            .and_then(|l| l.simple)
            == Some(SimpleLb::Passthrough);
        if self.svc.resolution == Resolution::Passthrough || passthrough_lb {
            let mut eps = self.port_endpoints(port).peekable();
            if eps.peek().is_none() || eps.any(|e| e.tls_mode == TlsMode::Disabled) {
                return MtlsMode::Disable;
            }
        }
        MtlsMode::Permissive
    }

    fn context<'c>(
        &'c self,
        port: &'c ServicePort,
        subset: &str,
        policy: &ResolvedPolicy<'_>,
        mtls_mode: MtlsMode,
    ) -> PolicyContext<'c> {
        // The SNI is only read for Istio mTLS (explicit or auto).
        let needs_sni =
            policy.tls.is_some() || (!self.svc.mesh_external && self.scope.mesh.enable_auto_mtls);
        PolicyContext {
            mesh: self.scope.mesh,
            port,
            service_accounts: self.accounts,
            istio_mtls_sni: if needs_sni {
                sni_name(port.number, subset, &self.svc.hostname)
            } else {
                String::new()
            },
            mesh_external: self.svc.mesh_external,
            mtls_mode,
            dr_with_selector: self.dr_with_selector,
        }
    }

    /// Sets the cluster's metadata; in direct mode an empty placeholder, the encoding
    /// returned instead.
    fn set_metadata(
        &self,
        cluster: &mut Cluster,
        external: bool,
        subset: Option<&str>,
    ) -> Option<Direct> {
        let config = self.config_path.as_deref();
        if self.direct {
            cluster.metadata = Some(core::Metadata::default());
            Some(Direct {
                metadata: encode_cluster_metadata(self.svc, external, config, subset),
                load_assignment: None,
            })
        } else {
            cluster.metadata = Some(cluster_metadata(self.svc, external, config, subset));
            None
        }
    }

    /// The default cluster of `port` and its subset clusters.
    fn port_clusters(&self, port: &ServicePort, out: &mut dyn FnMut(Cluster, Option<Direct>)) {
        let host = &self.svc.hostname;
        let dtype = discovery_type_of(self.svc);
        // Without a rule or mesh outlier detection (locality failover), nothing changes a DNS
        // cluster's endpoints after they are grouped: in direct mode they are encoded here
        // rather than built.
        let mesh_outlier = self
            .scope
            .mesh
            .default_traffic_policy
            .as_ref()
            .is_some_and(|d| d.outlier_detection.is_some());
        let direct_dns = self.direct && self.rule.is_none() && !mesh_outlier && self.is_dns();
        let checker = MtlsChecker::new(self.scope, self.rule, "", port.number);
        let (lb_endpoints, has_endpoints) = if direct_dns {
            (Vec::new(), self.port_endpoints(port).next().is_some())
        } else if self.is_dns() {
            let v = self.dns_endpoints(port, None, &checker);
            let has = !v.is_empty();
            (v, has)
        } else {
            (Vec::new(), false)
        };
        let name = cluster_name(port.number, "", host);
        let Some(mut cb) = self.base_cluster(name, dtype, lb_endpoints, has_endpoints, port, "")
        else {
            return;
        };

        let top = self.rule.and_then(|r| r.traffic_policy.as_ref());
        let resolved: Option<ResolvedPolicy<'_>> = policy::policy_for_port(top, port.number);
        let effective = policy::with_mesh_defaults(resolved, self.scope.mesh);
        let ctx = self.context(port, "", &effective, self.mtls_mode(top, port));
        policy::apply_traffic_policy(&mut cb, &effective, &ctx);
        maybe_apply_eds_config(&mut cb.cluster);
        let direct = self.set_metadata(&mut cb.cluster, self.svc.mesh_external, None);
        let direct = direct.map(|mut d| {
            if direct_dns && let Some(la) = &cb.cluster.load_assignment {
                let mut buf = Vec::with_capacity(64 + la.cluster_name.len() * 2);
                wire::string(&mut buf, 1, &la.cluster_name);
                encode_locality_lb_endpoints(&mut buf, 2, self.port_endpoints(port), &checker);
                d.load_assignment = Some(buf);
            }
            d
        });
        let main_type = if policy::is_original_dst(&cb.cluster) {
            DiscoveryType::OriginalDst
        } else {
            dtype
        };
        out(cb.build(), direct);

        let Some(rule) = self.rule else {
            return;
        };
        for subset in &rule.subsets {
            let stp = subset.traffic_policy.as_ref();
            let passthrough = stp
                .and_then(|t| t.load_balancer.as_ref())
                .and_then(|l| l.simple)
                == Some(SimpleLb::Passthrough);
            let stype = if passthrough {
                DiscoveryType::OriginalDst
            } else {
                main_type
            };
            let lb_endpoints = if !passthrough && stype != DiscoveryType::Eds && self.is_dns() {
                let labels = (!subset.labels.is_empty()).then_some(&subset.labels);
                self.dns_endpoints(
                    port,
                    labels,
                    &MtlsChecker::new(self.scope, self.rule, &subset.name, port.number),
                )
            } else {
                Vec::new()
            };
            let name = cluster_name(port.number, &subset.name, host);
            let has_endpoints = !lb_endpoints.is_empty();
            let Some(mut scb) =
                self.base_cluster(name, stype, lb_endpoints, has_endpoints, port, &subset.name)
            else {
                continue;
            };
            let merged = policy::merge_subset(resolved, stp, port.number);
            let effective = policy::with_mesh_defaults(merged, self.scope.mesh);
            let ctx = self.context(port, &subset.name, &effective, self.mtls_mode(stp, port));
            policy::apply_traffic_policy(&mut scb, &effective, &ctx);
            maybe_apply_eds_config(&mut scb.cluster);
            let direct = self.set_metadata(&mut scb.cluster, false, Some(&subset.name));
            out(scb.build(), direct);
        }
    }
}

/// `BlackHoleCluster`: STATIC without endpoints, ROUND_ROBIN.
pub fn blackhole_cluster(scope: &ProxyScope<'_>) -> Cluster {
    let mut c = Cluster {
        name: names::BLACKHOLE_CLUSTER.to_string(),
        alt_stat_name: format!("{};", names::BLACKHOLE_CLUSTER),
        connect_timeout: Some(duration(&scope.mesh.connect_timeout)),
        lb_policy: LbPolicy::RoundRobin as i32,
        ..Default::default()
    };
    policy::set_type(&mut c, DiscoveryType::Static);
    c
}

/// `PassthroughCluster`: ORIGINAL_DST / CLUSTER_PROVIDED, downstream protocol with a 5
/// minute idle timeout, default circuit breakers.
pub fn passthrough_cluster(scope: &ProxyScope<'_>) -> Cluster {
    let mut c = Cluster {
        name: names::PASSTHROUGH_CLUSTER.to_string(),
        alt_stat_name: format!("{};", names::PASSTHROUGH_CLUSTER),
        connect_timeout: Some(duration(&scope.mesh.connect_timeout)),
        lb_policy: LbPolicy::ClusterProvided as i32,
        ..Default::default()
    };
    policy::set_type(&mut c, DiscoveryType::OriginalDst);
    let mut cb = ClusterBuild::new(c);
    cb.http_options = Some(Box::new(uhttp::HttpProtocolOptions {
        common_http_protocol_options: Some(core::HttpProtocolOptions {
            idle_timeout: Some(Duration {
                seconds: PASSTHROUGH_IDLE_TIMEOUT_SECS,
                nanos: 0,
            }),
            ..Default::default()
        }),
        upstream_protocol_options: Some(policy::use_downstream_protocol()),
        ..Default::default()
    }));
    policy::apply_connection_pool(scope.mesh, &mut cb, &Default::default(), None);
    cb.build()
}

/// `InboundPassthroughCluster`: the passthrough cluster bound to 127.0.0.6 (`::6` on
/// IPv6-only proxies, both when dual-stack). Its `alt_stat_name` stays
/// `PassthroughCluster;`, as in Istio.
pub fn inbound_passthrough_cluster(scope: &ProxyScope<'_>) -> Cluster {
    let ips = &scope.proxy.ips;
    let v4 = ips.is_empty() || ips.iter().any(IpAddr::is_ipv4);
    let v6 = ips.iter().any(IpAddr::is_ipv6);
    let bind = |a: &str| core::SocketAddress {
        address: a.to_string(),
        port_specifier: Some(core::socket_address::PortSpecifier::PortValue(0)),
        ..Default::default()
    };
    let mut c = passthrough_cluster(scope);
    c.name = names::INBOUND_PASSTHROUGH_CLUSTER.to_string();
    c.upstream_bind_config = Some(core::BindConfig {
        source_address: Some(bind(if v4 { "127.0.0.6" } else { "::6" })),
        extra_source_addresses: if v4 && v6 {
            vec![core::ExtraSourceAddress {
                address: Some(bind("::6")),
                ..Default::default()
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    });
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::policy::HTTP_PROTOCOL_OPTIONS;
    use crate::generator::testutil::{TestEnv, cluster_json};
    use entryway_model::api::MeshConfig;
    use serde_json::json;

    #[test]
    fn always_present_clusters() {
        let env = TestEnv::new("");
        let cfg = env.generate();
        let names: Vec<&str> = cfg.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "BlackHoleCluster",
                "InboundPassthroughCluster",
                "PassthroughCluster"
            ]
        );
        assert_eq!(
            cluster_json(&cfg, "BlackHoleCluster"),
            json!({
                "name": "BlackHoleCluster",
                "type": "STATIC",
                "connect_timeout": "10s",
                "alt_stat_name": "BlackHoleCluster;"
            })
        );
        let p = cluster_json(&cfg, "PassthroughCluster");
        assert_eq!(p["type"], "ORIGINAL_DST");
        assert_eq!(p["lb_policy"], "CLUSTER_PROVIDED");
        assert_eq!(p["connect_timeout"], "10s");
        assert_eq!(
            p["typed_extension_protocol_options"][HTTP_PROTOCOL_OPTIONS],
            json!({
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {"idle_timeout": "300s"},
                "use_downstream_protocol_config": {"http_protocol_options": {}, "http2_protocol_options": {}}
            })
        );
        assert_eq!(
            p["circuit_breakers"],
            json!({"thresholds": [{
                "max_connections": 4294967295u32,
                "max_pending_requests": 4294967295u32,
                "max_requests": 4294967295u32,
                "max_retries": 4294967295u32
            }]})
        );
        let i = cluster_json(&cfg, "InboundPassthroughCluster");
        assert_eq!(
            i["upstream_bind_config"],
            json!({"source_address": {"address": "127.0.0.6", "port_value": 0}})
        );
        assert_eq!(i["alt_stat_name"], "PassthroughCluster;");
    }

    /// Spec §9 example 1.
    #[test]
    fn dns_cluster_defaults() {
        let env = TestEnv::new(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
  location: MESH_EXTERNAL
"#,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|443||api.example.com");
        assert_eq!(c["type"], "STRICT_DNS");
        assert_eq!(c["connect_timeout"], "10s");
        assert_eq!(c["lb_policy"], "LEAST_REQUEST");
        assert_eq!(c["alt_stat_name"], "outbound|443||api.example.com;");
        assert_eq!(c["dns_lookup_family"], "V4_ONLY");
        assert_eq!(c["dns_refresh_rate"], "60s");
        assert_eq!(c["respect_dns_ttl"], true);
        assert_eq!(c["dns_jitter"], "0.100s");
        assert_eq!(
            c["typed_dns_resolver_config"],
            json!({
                "name": "envoy.network.dns_resolver.cares",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
                    "udp_max_queries": 100
                }
            })
        );
        assert_eq!(c["common_lb_config"], json!({}));
        assert!(c.get("transport_socket").is_none());
        assert!(c.get("typed_extension_protocol_options").is_none());
        assert_eq!(
            c["metadata"]["filter_metadata"]["istio"],
            json!({
                "services": [{"host": "api.example.com", "name": "api.example.com", "namespace": "default"}],
                "external": true
            })
        );
        let la = &c["load_assignment"];
        assert_eq!(la["cluster_name"], "outbound|443||api.example.com");
        let ep = &la["endpoints"][0];
        assert_eq!(ep["locality"], json!({}));
        assert_eq!(ep["load_balancing_weight"], 1);
        assert_eq!(
            ep["lb_endpoints"][0]["endpoint"]["address"]["socket_address"],
            json!({"address": "api.example.com", "port_value": 443})
        );
        assert_eq!(
            ep["lb_endpoints"][0]["metadata"]["filter_metadata"]["istio"]["workload"],
            "api;default;api;;Kubernetes"
        );
    }

    #[test]
    fn dns_round_robin_is_logical_dns_and_ipv6_proxy_v6_only() {
        let mut proxy = Proxy::in_namespace("default");
        proxy.ips = vec!["fd00::1".parse().expect("ip")];
        let env = TestEnv::with_proxy(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: rr, namespace: default}
spec:
  hosts: [rr.example.com]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]
  resolution: DNS_ROUND_ROBIN
"#,
            MeshConfig::default(),
            proxy,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|80||rr.example.com");
        assert_eq!(c["type"], "LOGICAL_DNS");
        assert_eq!(c["dns_lookup_family"], "V6_ONLY");
        assert_eq!(
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"],
            json!({"address": "rr.example.com", "port_value": 8080})
        );
        let i = cluster_json(&cfg, "InboundPassthroughCluster");
        assert_eq!(
            i["upstream_bind_config"]["source_address"]["address"],
            "::6"
        );
    }

    #[test]
    fn dns_cluster_without_endpoints_is_omitted() {
        let env = TestEnv::new(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sel, namespace: default}
spec:
  hosts: [sel.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  workloadSelector: {labels: {app: nothing}}
"#,
        );
        let cfg = env.generate();
        assert!(
            !cfg.clusters
                .iter()
                .any(|c| c.name.contains("sel.example.com"))
        );
    }

    #[test]
    fn dns_endpoints_grouped_by_locality() {
        let env = TestEnv::new(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: multi, namespace: default}
spec:
  hosts: [multi.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints:
  - {address: b.example.com, locality: us/b}
  - {address: a.example.com, locality: eu/a, weight: 2, ports: {http: 8081}}
  - {address: 1.2.3.4, locality: us/b}
"#,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|80||multi.example.com");
        let eps = &c["load_assignment"]["endpoints"];
        assert_eq!(eps[0]["locality"], json!({"region": "eu", "zone": "a"}));
        assert_eq!(eps[0]["load_balancing_weight"], 2);
        assert_eq!(
            eps[0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"],
            json!({"address": "a.example.com", "port_value": 8081})
        );
        assert_eq!(eps[1]["locality"], json!({"region": "us", "zone": "b"}));
        assert_eq!(eps[1]["lb_endpoints"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn static_is_eds_with_ads() {
        let env = TestEnv::new(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.example.com]
  addresses: [10.1.2.3]
  ports: [{number: 3306, name: mysql, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 1.1.1.1}]
"#,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|3306||db.example.com");
        assert_eq!(c["type"], "EDS");
        assert_eq!(
            c["eds_cluster_config"],
            json!({
                "service_name": "outbound|3306||db.example.com",
                "eds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
            })
        );
        assert!(c.get("load_assignment").is_none());
        assert!(c.get("dns_lookup_family").is_none());
    }

    /// Spec §9 example 4 plus targetPort.
    #[test]
    fn none_is_original_dst_with_port_override() {
        let env = TestEnv::new(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wiki, namespace: default}
spec:
  hosts: ["*.wikipedia.org"]
  ports:
  - {number: 443, name: tls, protocol: TLS}
  - {number: 8443, name: tls-alt, protocol: TLS, targetPort: 443}
  - {number: 53, name: dns, protocol: UDP}
  resolution: NONE
"#,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|443||*.wikipedia.org");
        assert_eq!(c["type"], "ORIGINAL_DST");
        assert_eq!(c["lb_policy"], "CLUSTER_PROVIDED");
        assert!(c.get("original_dst_lb_config").is_none());
        let c = cluster_json(&cfg, "outbound|8443||*.wikipedia.org");
        assert_eq!(
            c["original_dst_lb_config"],
            json!({"upstream_port_override": 443})
        );
        assert!(
            !cfg.clusters
                .iter()
                .any(|c| c.name.starts_with("outbound|53|"))
        );
    }

    #[test]
    fn upstream_protocol_by_port_protocol() {
        let env = TestEnv::new(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: p, namespace: default}
spec:
  hosts: [p.example.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 81, name: grpc, protocol: GRPC}
  - {number: 82, name: auto}
  resolution: DNS
"#,
        );
        let cfg = env.generate();
        assert!(
            cluster_json(&cfg, "outbound|80||p.example.com")
                .get("typed_extension_protocol_options")
                .is_none()
        );
        assert_eq!(
            cluster_json(&cfg, "outbound|81||p.example.com")["typed_extension_protocol_options"]
                [HTTP_PROTOCOL_OPTIONS]["explicit_http_config"],
            json!({"http2_protocol_options": {}})
        );
        assert_eq!(
            cluster_json(&cfg, "outbound|82||p.example.com")["typed_extension_protocol_options"]
                [HTTP_PROTOCOL_OPTIONS]["use_downstream_protocol_config"],
            json!({"http_protocol_options": {}, "http2_protocol_options": {}})
        );
    }

    #[test]
    fn subset_clusters_eds_and_dns() {
        let env = TestEnv::new(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s, namespace: default}
spec:
  hosts: [s.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 1.1.1.1, labels: {v: "1"}}
  - {address: 2.2.2.2, labels: {v: "2"}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: d, namespace: default}
spec:
  hosts: [d.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints:
  - {address: one.example.com, labels: {v: "1"}}
  - {address: two.example.com, labels: {v: "2"}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: s, namespace: default}
spec:
  host: s.example.com
  subsets:
  - {name: v1, labels: {v: "1"}}
  - {name: pt, trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, namespace: default}
spec:
  host: d.example.com
  subsets:
  - {name: v2, labels: {v: "2"}}
  - {name: v9, labels: {v: "9"}}
"#,
        );
        let cfg = env.generate();
        let v1 = cluster_json(&cfg, "outbound|80|v1|s.example.com");
        assert_eq!(v1["type"], "EDS");
        assert_eq!(
            v1["eds_cluster_config"]["service_name"],
            "outbound|80|v1|s.example.com"
        );
        assert_eq!(
            v1["metadata"]["filter_metadata"]["istio"],
            json!({
                "services": [{"host": "s.example.com", "name": "s.example.com", "namespace": "default"}],
                "config": "/apis/networking.istio.io/v1/namespaces/default/destination-rule/s",
                "subset": "v1"
            })
        );
        let main = cluster_json(&cfg, "outbound|80||s.example.com");
        assert_eq!(
            main["metadata"]["filter_metadata"]["istio"]["config"],
            "/apis/networking.istio.io/v1/namespaces/default/destination-rule/s"
        );
        assert_eq!(
            main["metadata"]["filter_metadata"]["istio"]["external"],
            true
        );
        let pt = cluster_json(&cfg, "outbound|80|pt|s.example.com");
        assert_eq!(pt["type"], "ORIGINAL_DST");
        assert!(pt.get("eds_cluster_config").is_none());

        // DNS subsets: the load assignment filtered by subset labels; empty → no cluster.
        let v2 = cluster_json(&cfg, "outbound|80|v2|d.example.com");
        assert_eq!(v2["type"], "STRICT_DNS");
        let eps = &v2["load_assignment"]["endpoints"][0]["lb_endpoints"];
        assert_eq!(eps.as_array().map(Vec::len), Some(1));
        assert_eq!(
            eps[0]["endpoint"]["address"]["socket_address"]["address"],
            "two.example.com"
        );
        assert_eq!(
            v2["load_assignment"]["cluster_name"],
            "outbound|80|v2|d.example.com"
        );
        assert!(
            !cfg.clusters
                .iter()
                .any(|c| c.name == "outbound|80|v9|d.example.com")
        );
    }

    #[test]
    fn connect_timeout_and_stat_name_from_mesh() {
        let mesh = MeshConfig::from_yaml(
            "connectTimeout: 2s\noutboundClusterStatName: \"%SERVICE%_%SERVICE_PORT%_%SUBSET_NAME%\"\n",
        )
        .expect("mesh");
        let env = TestEnv::with_mesh(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
"#,
            mesh,
        );
        let cfg = env.generate();
        let c = cluster_json(&cfg, "outbound|443||api.example.com");
        assert_eq!(c["connect_timeout"], "2s");
        assert_eq!(c["alt_stat_name"], "api.example.com_443_;");
        assert_eq!(
            cluster_json(&cfg, "BlackHoleCluster")["connect_timeout"],
            "2s"
        );
    }

    #[test]
    fn dynamic_dns_is_skipped() {
        let env = TestEnv::new(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dyn, namespace: default}
spec:
  hosts: ["*.dyn.example.com"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DYNAMIC_DNS
"#,
        );
        let cfg = env.generate();
        assert_eq!(cfg.clusters.len(), 3);
    }

    #[test]
    fn service_accounts_merge_entry_sans_and_endpoints() {
        let env = TestEnv::new(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sa, namespace: ns1}
spec:
  hosts: [sa.example.com]
  subjectAltNames: [z-san]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 1.1.1.1, serviceAccount: b}
  - {address: 1.1.1.2, serviceAccount: b}
"#,
        );
        let scope = env.scope();
        assert_eq!(
            service_accounts(&scope, &scope.services[0]),
            vec![
                "spiffe://cluster.local/ns/ns1/sa/b".to_string(),
                "z-san".to_string()
            ]
        );
    }
}

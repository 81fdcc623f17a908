//! Istio `MeshConfig` (`mesh/v1alpha1/config.proto`): only the fields that affect traffic
//! are typed; every other key of a real mesh config is kept, unvalidated, in
//! [`MeshConfig::other`] so that Istio's mesh files load.
//!
//! Missing fields take Istio's `DefaultMeshConfig` values (see [`MeshConfig::default`]).
//! Istio applies a mesh file on top of those defaults and merges nested messages; this model
//! does the same for the two nested defaults that matter: `outboundTrafficPolicy: {}` keeps
//! `ALLOW_ANY`, and a `localityLbSetting` without `enabled` keeps `enabled: true`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::common::{Duration, is_default, nd, proto_enum};
use super::destination_rule::{
    ClientTlsSettings, LocalityLoadBalancerSetting, TcpKeepalive, TrafficPolicy, ZoneAwareLbSetting,
};
use super::sidecar::OutboundTrafficPolicyMode;
use super::virtual_service::HttpRetry;

proto_enum! {
    /// `MeshConfig.H2UpgradePolicy`: mesh-wide default for upgrading HTTP/1.1 to HTTP/2.
    MeshH2UpgradePolicy {
        /// Do not upgrade (the default).
        DoNotUpgrade = 0 => "DO_NOT_UPGRADE",
        /// Upgrade HTTP/1.1 connections to HTTP/2.
        Upgrade = 1 => "UPGRADE",
    }
}

proto_enum! {
    /// `MeshConfig.InboundTrafficPolicy.Mode`.
    InboundTrafficPolicyMode {
        /// Forward inbound traffic to the original destination IP (the default).
        Passthrough = 0 => "PASSTHROUGH",
        /// Forward inbound traffic to localhost.
        Localhost = 1 => "LOCALHOST",
    }
}

/// Istio's mesh configuration (traffic-relevant subset; the rest is in `other`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeshConfig {
    /// Handling of traffic to unknown destinations (default `ALLOW_ANY`).
    pub outbound_traffic_policy: MeshOutboundTrafficPolicy,
    /// Handling of inbound traffic (default `PASSTHROUGH`).
    pub inbound_traffic_policy: MeshInboundTrafficPolicy,
    /// Default upstream connect timeout (default 10s).
    pub connect_timeout: Duration,
    /// Refresh rate of DNS clusters (default 60s).
    pub dns_refresh_rate: Duration,
    /// Listener protocol-sniffing timeout (default 0s = none).
    pub protocol_detection_timeout: Duration,
    /// Automatic mTLS to mesh-internal endpoints (default true).
    pub enable_auto_mtls: bool,
    /// Trust domain of workload identities (default `cluster.local`).
    pub trust_domain: String,
    /// Other trust domains accepted as equivalent.
    pub trust_domain_aliases: Vec<String>,
    /// Namespace whose config applies mesh-wide (default `istio-system`).
    pub root_namespace: String,
    /// Default `exportTo` of services and ServiceEntries (default `["*"]`).
    pub default_service_export_to: Vec<String>,
    /// Default `exportTo` of VirtualServices (default `["*"]`).
    pub default_virtual_service_export_to: Vec<String>,
    /// Default `exportTo` of DestinationRules (default `["*"]`).
    pub default_destination_rule_export_to: Vec<String>,
    /// Default HTTP/2 upgrade policy (default `DO_NOT_UPGRADE`).
    pub h2_upgrade_policy: MeshH2UpgradePolicy,
    /// Mesh-wide locality LB (default `enabled: true`).
    #[serde(deserialize_with = "locality_with_default")]
    pub locality_lb_setting: LocalityLoadBalancerSetting,
    /// Mesh-wide zone-aware routing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_aware_lb_setting: Option<ZoneAwareLbSetting>,
    /// Retry policy of routes without `retries` (unset = Istio's built-in default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_http_retry_policy: Option<HttpRetry>,
    /// Baseline traffic policy that DestinationRules override per block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_traffic_policy: Option<TrafficPolicy>,
    /// Default upstream TCP keepalive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Pattern for outbound cluster `alt_stat_name` (empty = cluster name).
    pub outbound_cluster_stat_name: String,
    /// Pattern for inbound cluster `alt_stat_name` (empty = cluster name).
    pub inbound_cluster_stat_name: String,
    /// Port of the outbound capture listener (default 15001).
    pub proxy_listen_port: i32,
    /// Port of the inbound capture listener (default 15006).
    pub proxy_inbound_listen_port: i32,
    /// Default TLS parameters for user TLS origination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_defaults: Option<MeshTlsConfig>,
    /// Every other mesh config key, kept as given (not validated by this model).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Default for MeshConfig {
    /// Istio's `DefaultMeshConfig` (`pkg/config/mesh/mesh.go`) for the typed fields.
    fn default() -> Self {
        let all = || vec!["*".to_string()];
        MeshConfig {
            outbound_traffic_policy: MeshOutboundTrafficPolicy::default(),
            inbound_traffic_policy: MeshInboundTrafficPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            dns_refresh_rate: Duration::from_secs(60),
            protocol_detection_timeout: Duration::ZERO,
            enable_auto_mtls: true,
            trust_domain: "cluster.local".to_string(),
            trust_domain_aliases: Vec::new(),
            root_namespace: "istio-system".to_string(),
            default_service_export_to: all(),
            default_virtual_service_export_to: all(),
            default_destination_rule_export_to: all(),
            h2_upgrade_policy: MeshH2UpgradePolicy::DoNotUpgrade,
            locality_lb_setting: default_locality(),
            zone_aware_lb_setting: None,
            default_http_retry_policy: None,
            default_traffic_policy: None,
            tcp_keepalive: None,
            outbound_cluster_stat_name: String::new(),
            inbound_cluster_stat_name: String::new(),
            proxy_listen_port: 15001,
            proxy_inbound_listen_port: 15006,
            tls_defaults: None,
            other: BTreeMap::new(),
        }
    }
}

impl MeshConfig {
    /// Decodes a mesh config from YAML or JSON text; an empty (or comment-only) text gives
    /// the defaults.
    pub fn from_yaml(text: &str) -> Result<MeshConfig, serde_yaml::Error> {
        let value: Option<serde_yaml::Value> = serde_yaml::from_str(text)?;
        match value {
            None | Some(serde_yaml::Value::Null) => Ok(MeshConfig::default()),
            Some(v) => serde_yaml::from_value(v),
        }
    }
}

/// Mesh locality LB default: `enabled: true`.
fn default_locality() -> LocalityLoadBalancerSetting {
    LocalityLoadBalancerSetting {
        enabled: Some(true),
        ..Default::default()
    }
}

/// Decodes `localityLbSetting` as a merge onto the default: `null` = default, and a
/// setting without `enabled` keeps `enabled: true`.
fn locality_with_default<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<LocalityLoadBalancerSetting, D::Error> {
    let mut s =
        Option::<LocalityLoadBalancerSetting>::deserialize(d)?.unwrap_or_else(default_locality);
    if s.enabled.is_none() {
        s.enabled = Some(true);
    }
    Ok(s)
}

/// `MeshConfig.OutboundTrafficPolicy`. Unlike the Sidecar's, a missing `mode` means the
/// mesh default `ALLOW_ANY` (Istio merges the file onto the defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct MeshOutboundTrafficPolicy {
    /// Mode (default `ALLOW_ANY`; `ALLOW_ANY_DYNAMIC_DNS` is allowed here).
    pub mode: OutboundTrafficPolicyMode,
    /// TLS origination for `ALLOW_ANY_DYNAMIC_DNS` traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

impl Default for MeshOutboundTrafficPolicy {
    fn default() -> Self {
        MeshOutboundTrafficPolicy {
            mode: OutboundTrafficPolicyMode::AllowAny,
            tls: None,
        }
    }
}

/// `MeshConfig.InboundTrafficPolicy`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshInboundTrafficPolicy {
    /// Mode (default `PASSTHROUGH`).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub mode: InboundTrafficPolicyMode,
}

/// `MeshConfig.TLSConfig` (`tlsDefaults`): the curves and ciphers used for user TLS
/// origination. Other keys (e.g. `minProtocolVersion`) are kept in `other`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshTlsConfig {
    /// ECDH curves.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub ecdh_curves: Vec<String>,
    /// Cipher suites.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub cipher_suites: Vec<String>,
    /// Other keys, kept as given.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_gives_istio_defaults() {
        for text in ["", "\n", "# just a comment\n", "{}", "null"] {
            let m = MeshConfig::from_yaml(text).expect(text);
            assert_eq!(m, MeshConfig::default(), "{text:?}");
        }
        let m: MeshConfig = serde_yaml::from_str("{}").expect("serde");
        assert_eq!(m, MeshConfig::default());
        let m: MeshConfig = serde_json::from_str("{}").expect("json");
        assert_eq!(m, MeshConfig::default());
    }

    #[test]
    fn default_values_are_istios() {
        let m = MeshConfig::default();
        assert_eq!(
            m.outbound_traffic_policy.mode,
            OutboundTrafficPolicyMode::AllowAny
        );
        assert_eq!(
            m.inbound_traffic_policy.mode,
            InboundTrafficPolicyMode::Passthrough
        );
        assert_eq!(m.connect_timeout.to_string(), "10s");
        assert_eq!(m.dns_refresh_rate.to_string(), "60s");
        assert_eq!(m.protocol_detection_timeout, Duration::ZERO);
        assert!(m.enable_auto_mtls);
        assert_eq!(m.trust_domain, "cluster.local");
        assert_eq!(m.root_namespace, "istio-system");
        assert_eq!(m.default_service_export_to, ["*"]);
        assert_eq!(m.default_virtual_service_export_to, ["*"]);
        assert_eq!(m.default_destination_rule_export_to, ["*"]);
        assert_eq!(m.h2_upgrade_policy, MeshH2UpgradePolicy::DoNotUpgrade);
        assert_eq!(m.locality_lb_setting.enabled, Some(true));
        assert_eq!(m.proxy_listen_port, 15001);
        assert_eq!(m.proxy_inbound_listen_port, 15006);
        assert!(m.default_http_retry_policy.is_none());
        assert!(m.other.is_empty());
    }

    #[test]
    fn real_mesh_config_loads() {
        let text = r#"
accessLogFile: /dev/stdout
enableTracing: true
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  proxyMetadata: {ISTIO_META_DNS_CAPTURE: "true"}
  tracing: {zipkin: {address: zipkin.istio-system:9411}}
extensionProviders:
- name: otel
  opentelemetry: {service: otel.observability.svc.cluster.local, port: 4317}
outboundTrafficPolicy:
  mode: REGISTRY_ONLY
connectTimeout: 5s
dnsRefreshRate: 30s
protocolDetectionTimeout: 100ms
enableAutoMtls: false
trustDomain: example.org
trustDomainAliases: [old.example.org]
rootNamespace: istio-config
defaultServiceExportTo: ["."]
h2UpgradePolicy: UPGRADE
localityLbSetting:
  failover: [{from: us-east, to: eu-west}]
defaultHttpRetryPolicy:
  attempts: 3
  retryOn: 5xx
tcpKeepalive: {time: 300s, interval: 30s, probes: 3}
outboundClusterStatName: "%SERVICE%_%SERVICE_PORT%"
defaultTrafficPolicy:
  connectionPool: {tcp: {maxConnections: 1000}}
  outlierDetection: {consecutive5xxErrors: 10}
tlsDefaults:
  ecdhCurves: [P-256]
  minProtocolVersion: TLSV1_3
inboundTrafficPolicy: {mode: LOCALHOST}
"#;
        let m = MeshConfig::from_yaml(text).expect("decode");
        assert_eq!(
            m.outbound_traffic_policy.mode,
            OutboundTrafficPolicyMode::RegistryOnly
        );
        assert_eq!(m.connect_timeout, Duration::from_secs(5));
        assert_eq!(m.protocol_detection_timeout, Duration::from_millis(100));
        assert!(!m.enable_auto_mtls);
        assert_eq!(m.trust_domain, "example.org");
        assert_eq!(m.root_namespace, "istio-config");
        assert_eq!(m.default_service_export_to, ["."]);
        assert_eq!(m.default_virtual_service_export_to, ["*"]); // not in the file: default kept
        assert_eq!(m.h2_upgrade_policy, MeshH2UpgradePolicy::Upgrade);
        assert_eq!(m.locality_lb_setting.enabled, Some(true)); // merged onto the default
        assert_eq!(m.locality_lb_setting.failover.len(), 1);
        assert_eq!(
            m.default_http_retry_policy.as_ref().map(|r| r.attempts),
            Some(3)
        );
        assert_eq!(m.tcp_keepalive.as_ref().map(|k| k.probes), Some(3));
        assert!(m.default_traffic_policy.is_some());
        assert_eq!(
            m.tls_defaults.as_ref().map(|t| t.ecdh_curves.len()),
            Some(1)
        );
        assert_eq!(
            m.inbound_traffic_policy.mode,
            InboundTrafficPolicyMode::Localhost
        );
        assert_eq!(
            m.other.get("accessLogFile"),
            Some(&serde_json::json!("/dev/stdout"))
        );
        assert!(m.other.contains_key("defaultConfig"));
        assert!(m.other.contains_key("extensionProviders"));
        assert!(!m.other.contains_key("connectTimeout"));

        // Re-encoding keeps everything, including the untyped keys.
        let again: MeshConfig =
            serde_json::from_value(serde_json::to_value(&m).expect("encode")).expect("re-decode");
        assert_eq!(again, m);
        let yaml = serde_yaml::to_string(&m).expect("yaml");
        assert_eq!(MeshConfig::from_yaml(&yaml).expect("yaml re-decode"), m);
    }

    #[test]
    fn nested_defaults_merge() {
        let m = MeshConfig::from_yaml("outboundTrafficPolicy: {}").expect("decode");
        assert_eq!(
            m.outbound_traffic_policy.mode,
            OutboundTrafficPolicyMode::AllowAny
        );
        let m = MeshConfig::from_yaml(
            "outboundTrafficPolicy: {mode: ALLOW_ANY_DYNAMIC_DNS, tls: {mode: SIMPLE}}",
        )
        .expect("decode");
        assert_eq!(
            m.outbound_traffic_policy.mode,
            OutboundTrafficPolicyMode::AllowAnyDynamicDns
        );
        assert!(m.outbound_traffic_policy.tls.is_some());
        let m = MeshConfig::from_yaml("localityLbSetting: {enabled: false}").expect("decode");
        assert_eq!(m.locality_lb_setting.enabled, Some(false));
        let m = MeshConfig::from_yaml("localityLbSetting:").expect("decode");
        assert_eq!(m.locality_lb_setting.enabled, Some(true));
        let m = MeshConfig::from_yaml("outboundTrafficPolicy: {mode: 0}").expect("decode");
        assert_eq!(
            m.outbound_traffic_policy.mode,
            OutboundTrafficPolicyMode::RegistryOnly
        );
        // Re-encoding REGISTRY_ONLY must not drop it (the mesh default differs).
        let again =
            MeshConfig::from_yaml(&serde_yaml::to_string(&m).expect("yaml")).expect("re-decode");
        assert_eq!(
            again.outbound_traffic_policy.mode,
            OutboundTrafficPolicyMode::RegistryOnly
        );
    }

    #[test]
    fn typed_fields_are_checked() {
        for (text, want) in [
            ("connectTimeout: 10", "duration"),
            ("connectTimeout: 5x", "invalid duration \"5x\""),
            (
                "outboundTrafficPolicy: {mode: DENY}",
                "unknown OutboundTrafficPolicyMode value \"DENY\"",
            ),
            (
                "outboundTrafficPolicy: {mod: ALLOW_ANY}",
                "unknown field `mod`",
            ),
            ("h2UpgradePolicy: DEFAULT", "MeshH2UpgradePolicy"),
            (
                "defaultHttpRetryPolicy: {attempt: 1}",
                "unknown field `attempt`",
            ),
            ("enableAutoMtls: maybe", "invalid type"),
        ] {
            let e = MeshConfig::from_yaml(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}

//! `networking.istio.io` Sidecar (`networking/v1alpha3/sidecar.proto`): the ports and
//! hosts a workload's proxy handles, plus `ServerTLSSettings` from `gateway.proto` (used by
//! `IstioIngressListener.tls`).

use serde::{Deserialize, Serialize};

use super::common::{Protocol, WorkloadSelector, is_default, nd, proto_enum};
use super::destination_rule::ConnectionPoolSettings;
use super::virtual_service::Destination;

/// Spec of a Sidecar.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sidecar {
    /// Workloads (in the Sidecar's namespace) it applies to; absent = all of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Inbound listeners; absent = derived from the workload's services.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub ingress: Vec<IstioIngressListener>,
    /// Outbound listeners and the hosts they import; absent = everything visible.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub egress: Vec<IstioEgressListener>,
    /// Connection pool of all inbound clusters (per-port `connectionPool` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_connection_pool: Option<ConnectionPoolSettings>,
    /// Handling of traffic to unknown destinations; absent = mesh config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

/// `IstioIngressListener`: one inbound listener.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioIngressListener {
    /// The port (required; number 0 for a Unix socket bind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<SidecarPort>,
    /// IP or `unix://` socket to bind.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub bind: String,
    /// How traffic reaches the listener.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub capture_mode: CaptureMode,
    /// Where to forward: `127.0.0.1:PORT`, `0.0.0.0:PORT`, `[::1]:PORT` or `unix://...`.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub default_endpoint: String,
    /// TLS termination on this listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Connection pool of this port's inbound cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
}

/// `IstioEgressListener`: one outbound listener and the hosts it imports.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioEgressListener {
    /// The port; absent = ports of the imported services (only the last listener may omit it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<SidecarPort>,
    /// IP or `unix://` socket to bind.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub bind: String,
    /// How traffic reaches the listener.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub capture_mode: CaptureMode,
    /// Imported hosts as `namespace/dnsName` (`*`, `.`, `~ns` allowed for the namespace; required).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub hosts: Vec<String>,
}

/// `SidecarPort`: a listener port.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarPort {
    /// Port number (0 for Unix sockets).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub number: u32,
    /// Protocol (see [`Protocol`]).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub protocol: String,
    /// Port name.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub name: String,
    /// Has no effect on Sidecars (validation warns).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub target_port: u32,
}

impl SidecarPort {
    /// The parsed `protocol` (`Protocol::Unsupported` when empty or unknown).
    pub fn parsed_protocol(&self) -> Protocol {
        Protocol::parse(&self.protocol)
    }
}

proto_enum! {
    /// `OutboundTrafficPolicy.Mode` (Sidecar and mesh config): handling of traffic to
    /// destinations not in the registry.
    OutboundTrafficPolicyMode {
        /// Only services in the registry (unknown traffic is blackholed / 502).
        RegistryOnly = 0 => "REGISTRY_ONLY",
        /// Pass unknown traffic through (the mesh default).
        AllowAny = 1 => "ALLOW_ANY",
        /// Like ALLOW_ANY, but plaintext HTTP is resolved per request (DFP). Mesh config only:
        /// validation rejects it in a Sidecar. (2 is reserved: the removed VIRTUAL_SERVICE_ONLY.)
        AllowAnyDynamicDns = 3 => "ALLOW_ANY_DYNAMIC_DNS",
    }
}

/// `OutboundTrafficPolicy` of a Sidecar.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    /// Mode (proto default `REGISTRY_ONLY`).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub mode: OutboundTrafficPolicyMode,
    /// Send unknown traffic to this proxy instead of passing it through (ALLOW_ANY only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_proxy: Option<Destination>,
}

proto_enum! {
    /// `CaptureMode`: how traffic reaches a listener bound to an IP.
    CaptureMode {
        /// The environment's default.
        Default = 0 => "DEFAULT",
        /// iptables redirection.
        Iptables = 1 => "IPTABLES",
        /// No capture: the application connects to the listener directly.
        None = 2 => "NONE",
    }
}

proto_enum! {
    /// `ServerTLSSettings.TLSmode`: TLS handling on a server (ingress) port.
    ServerTlsMode {
        /// Forward TLS as is, routed by SNI.
        Passthrough = 0 => "PASSTHROUGH",
        /// Terminate TLS.
        Simple = 1 => "SIMPLE",
        /// Terminate TLS and require client certificates.
        Mutual = 2 => "MUTUAL",
        /// SNI-routed passthrough without a VirtualService (gateways).
        AutoPassthrough = 3 => "AUTO_PASSTHROUGH",
        /// Istio mTLS.
        IstioMutual = 4 => "ISTIO_MUTUAL",
        /// Client certificate optional.
        OptionalMutual = 5 => "OPTIONAL_MUTUAL",
    }
}

proto_enum! {
    /// `ServerTLSSettings.TLSProtocol`: TLS protocol versions.
    TlsProtocol {
        /// Envoy's choice.
        TlsAuto = 0 => "TLS_AUTO",
        /// TLS 1.0.
        TlsV1_0 = 1 => "TLSV1_0",
        /// TLS 1.1.
        TlsV1_1 = 2 => "TLSV1_1",
        /// TLS 1.2.
        TlsV1_2 = 3 => "TLSV1_2",
        /// TLS 1.3.
        TlsV1_3 = 4 => "TLSV1_3",
    }
}

/// `ServerTLSSettings` (from `gateway.proto`): TLS termination settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// Redirect HTTP to HTTPS.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub https_redirect: bool,
    /// TLS mode.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub mode: ServerTlsMode,
    /// Server certificate file.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub server_certificate: String,
    /// Server private key file.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub private_key: String,
    /// CA bundle file to verify clients.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub ca_certificates: String,
    /// Certificate revocation list file.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub ca_crl: String,
    /// Secret holding the certificate, key and CA.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub credential_name: String,
    /// Several secrets (e.g. RSA and ECDSA certificates; at most 2).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub credential_names: Vec<String>,
    /// Several file-based certificates (at most 2).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub tls_certificates: Vec<TlsCertificate>,
    /// SANs accepted on client certificates.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub subject_alt_names: Vec<String>,
    /// Accepted client certificate SPKI hashes (base64 SHA-256).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub verify_certificate_spki: Vec<String>,
    /// Accepted client certificate hashes (hex SHA-256).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub verify_certificate_hash: Vec<String>,
    /// Minimum TLS version.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub min_protocol_version: TlsProtocol,
    /// Maximum TLS version.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub max_protocol_version: TlsProtocol,
    /// Allowed cipher suites.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub cipher_suites: Vec<String>,
}

/// `ServerTLSSettings.TLSCertificate`: one file-based certificate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsCertificate {
    /// Certificate file.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub server_certificate: String,
    /// Private key file.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub private_key: String,
    /// CA bundle file.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub ca_certificates: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Sidecar using nearly every field, in canonical form.
    const RICH: &str = r#"
workloadSelector:
  labels: {app: productpage}
ingress:
- port: {number: 9080, protocol: HTTP, name: somename}
  bind: 172.16.1.32
  captureMode: NONE
  defaultEndpoint: 127.0.0.1:8080
  tls:
    mode: MUTUAL
    serverCertificate: /etc/certs/server.pem
    privateKey: /etc/certs/key.pem
    caCertificates: /etc/certs/ca.pem
    caCrl: /etc/certs/crl.pem
    subjectAltNames: [client.example.com]
    verifyCertificateSpki: [abc]
    verifyCertificateHash: [def]
    minProtocolVersion: TLSV1_2
    maxProtocolVersion: TLSV1_3
    cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384]
  connectionPool:
    http: {http1MaxPendingRequests: 5}
- port: {protocol: HTTP, name: uds} # number 0 (the default) for a unix socket
  defaultEndpoint: unix:///var/run/someuds.sock
  tls:
    httpsRedirect: true
    mode: SIMPLE
    credentialNames: [rsa-cert, ecdsa-cert]
    tlsCertificates:
    - {serverCertificate: /a.pem, privateKey: /a.key, caCertificates: /ca.pem}
egress:
- port: {number: 3306, protocol: MYSQL, name: egressmysql, targetPort: 3307}
  captureMode: IPTABLES
  bind: 127.0.0.1
  hosts: ["*/mysql.foo.com"]
- hosts: ["./*", "istio-system/*", "~kube-system/*"]
inboundConnectionPool:
  tcp: {maxConnections: 100}
outboundTrafficPolicy:
  mode: ALLOW_ANY
  egressProxy:
    host: egress.istio-system.svc.cluster.local
    subset: proxy
    port: {number: 15443}
"#;

    #[test]
    fn rich_round_trip() {
        let sc: Sidecar = serde_yaml::from_str(RICH).expect("decode");
        let out = serde_json::to_value(&sc).expect("encode");
        let input: serde_json::Value = serde_yaml::from_str(RICH).expect("value");
        assert_eq!(out, input);
        assert_eq!(
            serde_json::from_value::<Sidecar>(out).expect("re-decode"),
            sc
        );
        let yaml = serde_yaml::to_string(&sc).expect("yaml");
        assert_eq!(
            serde_yaml::from_str::<Sidecar>(&yaml).expect("yaml re-decode"),
            sc
        );

        assert_eq!(sc.ingress[0].capture_mode, CaptureMode::None);
        assert_eq!(
            sc.ingress[0].tls.as_ref().map(|t| t.min_protocol_version),
            Some(TlsProtocol::TlsV1_2)
        );
        assert_eq!(
            sc.egress[0].port.as_ref().map(SidecarPort::parsed_protocol),
            Some(Protocol::MySql)
        );
        assert_eq!(sc.egress[1].port, None);
        let otp = sc.outbound_traffic_policy.as_ref().expect("policy");
        assert_eq!(otp.mode, OutboundTrafficPolicyMode::AllowAny);
        assert_eq!(
            otp.egress_proxy.as_ref().map(|d| d.host.as_str()),
            Some("egress.istio-system.svc.cluster.local")
        );
    }

    #[test]
    fn outbound_policy_defaults_to_registry_only() {
        let sc: Sidecar = serde_yaml::from_str("outboundTrafficPolicy: {}").expect("decode");
        assert_eq!(
            sc.outbound_traffic_policy.map(|p| p.mode),
            Some(OutboundTrafficPolicyMode::RegistryOnly)
        );
        // The mesh-only mode decodes; validation rejects it in a Sidecar.
        let sc: Sidecar = serde_yaml::from_str("outboundTrafficPolicy: {mode: 3}").expect("decode");
        assert_eq!(
            sc.outbound_traffic_policy.map(|p| p.mode),
            Some(OutboundTrafficPolicyMode::AllowAnyDynamicDns)
        );
        assert!(serde_yaml::from_str::<Sidecar>("outboundTrafficPolicy: {mode: 2}").is_err());
    }

    #[test]
    fn unknown_fields_rejected() {
        for (yaml, field) in [
            ("workloadSelector: {matchLabels: {app: a}}", "matchLabels"),
            (
                "egress:\n- hosts: [a/b]\n  port: {number: 80, protocol: HTTP, nme: http}",
                "nme",
            ),
            (
                "ingress:\n- port: {number: 80}\n  defaultEndpoints: 127.0.0.1:80",
                "defaultEndpoints",
            ),
        ] {
            let e = serde_yaml::from_str::<Sidecar>(yaml)
                .expect_err(yaml)
                .to_string();
            assert!(e.contains(field), "{yaml}: {e}");
        }
        let e = serde_yaml::from_str::<Sidecar>("egress:\n- captureMode: REDIRECT")
            .expect_err("bad enum")
            .to_string();
        assert!(e.contains("DEFAULT (0), IPTABLES (1), NONE (2)"), "{e}");
    }

    #[test]
    fn empty_spec_decodes() {
        assert_eq!(
            serde_yaml::from_str::<Sidecar>("{}").expect("decode"),
            Sidecar::default()
        );
    }
}

//! The registry's data: services and endpoints as Istio's model holds them
//! (`pilot/pkg/model/service.go`), built from ServiceEntries and WorkloadEntries.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::api::common::Protocol;

/// How a service's endpoints are found (Istio's `Resolution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// NONE: the destination address is used as is (ORIGINAL_DST).
    Passthrough,
    /// STATIC: endpoints are known (EDS).
    ClientSideLb,
    /// DNS: Envoy resolves every endpoint name (STRICT_DNS).
    DnsLb,
    /// DNS_ROUND_ROBIN: Envoy resolves one name, first address per connection (LOGICAL_DNS).
    DnsRoundRobinLb,
    /// DYNAMIC_DNS: wildcard hosts resolved per request (dynamic forward proxy).
    DynamicDns,
}

/// A service address as seen by the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceAddress {
    /// No address: `0.0.0.0` in Istio's model.
    Unspecified,
    /// A single IP (a `/32` or `/128` CIDR is stored as the bare IP).
    Ip(IpAddr),
    /// A CIDR block (NONE/STATIC only).
    Cidr(IpNet),
}

impl ServiceAddress {
    /// Istio's textual form: `0.0.0.0`, the IP, or the CIDR.
    pub fn to_istio_string(&self) -> String {
        match self {
            ServiceAddress::Unspecified => "0.0.0.0".to_string(),
            ServiceAddress::Ip(ip) => ip.to_string(),
            ServiceAddress::Cidr(net) => net.to_string(),
        }
    }
}

/// One port of a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServicePort {
    /// Port name (endpoints' port maps are keyed by it).
    pub name: String,
    /// Port number (the service port; `targetPort` is not the service port).
    pub number: u32,
    /// Parsed protocol (`Protocol::Unsupported` for an empty protocol = sniffing).
    pub protocol: Protocol,
    /// `targetPort` (0 when unset).
    pub target_port: u32,
}

/// Visibility of a service, DR or VS (exportTo).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// `*`: every namespace.
    Public,
    /// `~`: nobody.
    None,
    /// Explicit namespaces (`.` already replaced by the owning namespace).
    Namespaces(Vec<String>),
}

impl Visibility {
    /// True when a proxy in `namespace` may see it.
    pub fn visible_to(&self, namespace: &str) -> bool {
        match self {
            Visibility::Public => true,
            Visibility::None => false,
            Visibility::Namespaces(ns) => ns.iter().any(|n| n == namespace),
        }
    }
}

/// A service: one (host, address) of a ServiceEntry.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// The host (may be a wildcard such as `*.foo.com`).
    pub hostname: String,
    /// Namespace of the ServiceEntry.
    pub namespace: String,
    /// Name of the ServiceEntry that defined it.
    pub se_name: String,
    /// Position of the ServiceEntry in creation order (older first): Istio's tie-break.
    pub creation_order: usize,
    /// The address from `spec.addresses`, or `Unspecified`.
    pub address: ServiceAddress,
    /// Auto-allocated addresses (IPv4 in 240.240.0.0/16, IPv6 in 2001:2::/48), used only by
    /// proxies that capture DNS (§3.5); empty when the entry does not qualify.
    pub auto_addresses: Vec<IpAddr>,
    /// Ports in ServiceEntry order.
    pub ports: Vec<ServicePort>,
    /// Resolution.
    pub resolution: Resolution,
    /// `location: MESH_EXTERNAL`.
    pub mesh_external: bool,
    /// `subjectAltNames` of the entry.
    pub subject_alt_names: Vec<String>,
    /// Visibility (exportTo, defaulted from mesh config).
    pub export_to: Visibility,
    /// Metadata labels of the ServiceEntry.
    pub labels: BTreeMap<String, String>,
    /// `workloadSelector.labels`, when the entry selects workloads.
    pub selector: Option<BTreeMap<String, String>>,
}

impl Service {
    /// The port with this number, if any.
    pub fn port(&self, number: u32) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.number == number)
    }
}

/// TLS mode an endpoint advertises (`security.istio.io/tlsMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Accepts Istio mTLS.
    Istio,
    /// Plain text.
    Disabled,
}

/// Locality `region/zone/subzone`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locality {
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: String,
    /// Sub-zone.
    pub sub_zone: String,
}

impl Locality {
    /// Parses `region/zone/subzone` (missing parts empty).
    pub fn parse(s: &str) -> Locality {
        let mut it = s.splitn(3, '/');
        Locality {
            region: it.next().unwrap_or("").to_string(),
            zone: it.next().unwrap_or("").to_string(),
            sub_zone: it.next().unwrap_or("").to_string(),
        }
    }
}

/// Where an endpoint is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointAddress {
    /// An IP address.
    Ip(IpAddr),
    /// A DNS name (DNS-resolution services only).
    Hostname(String),
    /// A Unix domain socket path (`@name` for abstract sockets); port is 0.
    Unix(String),
}

/// One endpoint of one service port (Istio's `IstioEndpoint`).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Address.
    pub address: EndpointAddress,
    /// Port to connect to (endpoint `ports[name]` > `targetPort` > `number`; 0 for unix).
    pub port: u32,
    /// Name of the service port this endpoint serves.
    pub service_port_name: String,
    /// Labels (endpoint or WorkloadEntry labels plus topology labels).
    pub labels: BTreeMap<String, String>,
    /// Locality.
    pub locality: Locality,
    /// Load-balancing weight (0 in the source means 1).
    pub weight: u32,
    /// Network.
    pub network: String,
    /// SPIFFE identity (`spiffe://<trustDomain>/ns/<ns>/sa/<sa>`), when a service account is set.
    pub service_account: String,
    /// TLS mode.
    pub tls_mode: TlsMode,
    /// Workload name: `<seName>-<index>` for inline endpoints, the WorkloadEntry's name otherwise.
    pub workload_name: String,
    /// Namespace of the workload.
    pub namespace: String,
    /// Canonical service name from the labels, when they give one (see
    /// [`canonical_from_labels`]); otherwise the workload name stands for it.
    pub canonical_name: Option<String>,
    /// Canonical revision from the labels, empty when they give none or `latest`.
    pub canonical_revision: String,
}

/// Istio's canonical service of a workload from its labels: the name from
/// `service.istio.io/canonical-name`, else `app.kubernetes.io/name`, else `app` (`None` when
/// none is set); the revision from `service.istio.io/canonical-revision`, else
/// `app.kubernetes.io/version`, else `version`, empty when none is set or it is `latest`.
pub fn canonical_from_labels(labels: &BTreeMap<String, String>) -> (Option<String>, String) {
    let first = |keys: [&str; 3]| keys.iter().find_map(|k| labels.get(*k));
    let name = first([
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ])
    .cloned();
    let revision = first([
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ])
    .filter(|r| *r != "latest")
    .cloned()
    .unwrap_or_default();
    (name, revision)
}

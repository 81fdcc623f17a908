//! `networking.istio.io` ServiceEntry (`networking/v1alpha3/service_entry.proto`): adds
//! entries (hosts, VIPs, ports, endpoints) to Istio's service registry.

use serde::{Deserialize, Serialize};

use super::common::{Protocol, WorkloadSelector, de_i64, is_default, nd, proto_enum};
use super::workload_entry::WorkloadEntry;

proto_enum! {
    /// `ServiceEntry.Location`: whether the service is part of the mesh.
    Location {
        /// External to the mesh (the default); disables auto-mTLS.
        MeshExternal = 0 => "MESH_EXTERNAL",
        /// Part of the mesh (e.g. VMs added to the mesh).
        MeshInternal = 1 => "MESH_INTERNAL",
    }
}

proto_enum! {
    /// `ServiceEntry.Resolution`: how the proxy resolves the service's endpoints.
    Resolution {
        /// Connections are already resolved to a destination IP (ORIGINAL_DST); the default.
        None = 0 => "NONE",
        /// Use the static addresses of `endpoints` (EDS).
        Static = 1 => "STATIC",
        /// Resolve the hosts (or endpoint names) through DNS, all addresses (STRICT_DNS).
        Dns = 2 => "DNS",
        /// Resolve through DNS, first address only per new connection (LOGICAL_DNS).
        DnsRoundRobin = 3 => "DNS_ROUND_ROBIN",
        /// Resolve the Host header / SNI per request; wildcard hosts only.
        DynamicDns = 4 => "DYNAMIC_DNS",
    }
}

/// Spec of a ServiceEntry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntry {
    /// Hosts of the service: DNS names, optionally with a wildcard prefix (required).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub hosts: Vec<String>,
    /// Virtual IPs (or CIDRs) of the service.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub addresses: Vec<String>,
    /// Ports of the service.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub ports: Vec<ServicePort>,
    /// Inside or outside the mesh (default `MESH_EXTERNAL`).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub location: Location,
    /// Endpoint resolution mode (default `NONE`).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub resolution: Resolution,
    /// Inline endpoints. `None` = absent; `Some(vec![])` = present but empty, which the CRD
    /// rules count as set (Go validation treats it as unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<WorkloadEntry>>,
    /// Selects WorkloadEntries and pods of the namespace as endpoints (exclusive with `endpoints`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Namespaces the service is visible to (`.`, `*`, `~`, names); empty = mesh default.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub export_to: Vec<String>,
    /// Extra SANs to verify on the server certificate.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub subject_alt_names: Vec<String>,
}

impl ServiceEntry {
    /// The inline endpoints, empty when absent.
    pub fn endpoints(&self) -> &[WorkloadEntry] {
        self.endpoints.as_deref().unwrap_or(&[])
    }
}

/// `ServicePort`: one port of a service.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Port number (required, 1..65535).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub number: u32,
    /// Protocol (`HTTP`, `TLS`, `TCP`, ...; case-insensitive; empty = sniffed). See [`Protocol`].
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub protocol: String,
    /// Port name (required; a DNS-1123 label).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub name: String,
    /// Port on the endpoints; 0 = same as `number`.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub target_port: u32,
}

impl ServicePort {
    /// The parsed `protocol` (`Protocol::Unsupported` when empty or unknown).
    pub fn parsed_protocol(&self) -> Protocol {
        Protocol::parse(&self.protocol)
    }
}

/// `ServiceEntryStatus`: the status written by istiod (Istio conditions plus allocated
/// addresses). Conditions and analysis messages are kept as raw JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntryStatus {
    /// Istio conditions (`meta.v1alpha1.IstioCondition`), unvalidated.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub conditions: Vec<serde_json::Value>,
    /// Analyzer messages, unvalidated.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub validation_messages: Vec<serde_json::Value>,
    /// Generation the conditions refer to.
    #[serde(
        default,
        deserialize_with = "de_i64",
        skip_serializing_if = "is_default"
    )]
    pub observed_generation: i64,
    /// Addresses allocated to the ServiceEntry's hosts by istiod.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub addresses: Vec<ServiceEntryAddress>,
}

/// `ServiceEntryAddress`: one allocated address and the host it belongs to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntryAddress {
    /// The address (e.g. `240.240.0.1`).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub value: String,
    /// The host this address was allocated for.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub host: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes YAML, re-encodes it, and checks the typed value survives; with `exact`, also
    /// that the re-encoded JSON equals the input (inputs without explicit default values).
    fn round_trip(yaml: &str, exact: bool) -> ServiceEntry {
        let se: ServiceEntry = serde_yaml::from_str(yaml).expect("decode");
        let out = serde_json::to_value(&se).expect("encode");
        if exact {
            let input: serde_json::Value = serde_yaml::from_str(yaml).expect("value");
            assert_eq!(out, input, "re-encoded value differs");
        }
        let again: ServiceEntry = serde_json::from_value(out).expect("re-decode");
        assert_eq!(again, se);
        let yaml_again = serde_yaml::to_string(&se).expect("yaml");
        assert_eq!(
            serde_yaml::from_str::<ServiceEntry>(&yaml_again).expect("yaml re-decode"),
            se
        );
        se
    }

    #[test]
    fn seed_external_svc_https() {
        let se = round_trip(
            r#"
hosts:
- api.dropboxapi.com
- www.googleapis.com
- api.facebook.com
location: MESH_EXTERNAL
ports:
- number: 443
  name: https
  protocol: TLS
resolution: DNS
"#,
            false, // MESH_EXTERNAL is the default, so it is not re-emitted
        );
        assert_eq!(se.hosts.len(), 3);
        assert_eq!(se.location, Location::MeshExternal);
        assert_eq!(se.resolution, Resolution::Dns);
        assert_eq!(se.ports[0].parsed_protocol(), Protocol::Tls);
        assert_eq!(se.endpoints, None);
    }

    #[test]
    fn seed_external_svc_mongocluster() {
        let se = round_trip(
            r#"
hosts:
- mymongodb.somedomain # not used
addresses:
- 192.192.192.192/24 # VIPs
ports:
- number: 27018
  name: mongodb
  protocol: MONGO
location: MESH_INTERNAL
resolution: STATIC
endpoints:
- address: 2.2.2.2
- address: 3.3.3.3
"#,
            true,
        );
        assert_eq!(se.location, Location::MeshInternal);
        assert_eq!(se.resolution, Resolution::Static);
        assert_eq!(se.endpoints().len(), 2);
        assert_eq!(se.endpoints()[1].address, "3.3.3.3");
        assert_eq!(se.ports[0].parsed_protocol(), Protocol::Mongo);
    }

    #[test]
    fn all_fields() {
        let se = round_trip(
            r#"
hosts: ["*.example.com", example.com]
addresses: [10.0.0.1]
ports:
- {number: 80, protocol: HTTP, name: http, targetPort: 8080}
- {number: 443, name: tls}
location: MESH_INTERNAL
resolution: DYNAMIC_DNS
workloadSelector:
  labels: {app: details}
exportTo: [".", other-ns]
subjectAltNames: ["spiffe://cluster.local/ns/a/sa/b"]
"#,
            true,
        );
        assert_eq!(se.resolution, Resolution::DynamicDns);
        assert_eq!(se.ports[1].parsed_protocol(), Protocol::Unsupported);
        assert_eq!(se.ports[0].target_port, 8080);
        assert!(se.workload_selector.is_some());
    }

    #[test]
    fn endpoints_absent_vs_empty() {
        let absent: ServiceEntry = serde_yaml::from_str("hosts: [a.com]").expect("absent");
        assert_eq!(absent.endpoints, None);
        let null: ServiceEntry = serde_yaml::from_str("hosts: [a.com]\nendpoints:").expect("null");
        assert_eq!(null.endpoints, None);
        let empty: ServiceEntry =
            serde_yaml::from_str("hosts: [a.com]\nendpoints: []").expect("empty");
        assert_eq!(empty.endpoints, Some(vec![]));
        assert!(empty.endpoints().is_empty());
        // An empty list survives re-encoding, so the CRD rule still sees it.
        let json = serde_json::to_string(&empty).expect("encode");
        assert!(json.contains("\"endpoints\":[]"), "{json}");
        let sel: ServiceEntry =
            serde_yaml::from_str("hosts: [a.com]\nworkloadSelector: {}").expect("selector");
        assert_eq!(sel.workload_selector, Some(WorkloadSelector::default()));
    }

    #[test]
    fn enums_by_name_and_number() {
        let se: ServiceEntry = serde_yaml::from_str("location: 1\nresolution: 3").expect("numbers");
        assert_eq!(se.location, Location::MeshInternal);
        assert_eq!(se.resolution, Resolution::DnsRoundRobin);
        let se: ServiceEntry =
            serde_json::from_str(r#"{"resolution": "DYNAMIC_DNS"}"#).expect("name");
        assert_eq!(se.resolution, Resolution::DynamicDns);
        let e =
            serde_yaml::from_str::<ServiceEntry>("resolution: LOGICAL_DNS").expect_err("unknown");
        let msg = e.to_string();
        assert!(
            msg.contains("unknown Resolution value \"LOGICAL_DNS\""),
            "{msg}"
        );
        assert!(
            msg.contains("NONE (0), STATIC (1), DNS (2), DNS_ROUND_ROBIN (3), DYNAMIC_DNS (4)"),
            "{msg}"
        );
        let e = serde_yaml::from_str::<ServiceEntry>("location: 2").expect_err("unknown number");
        assert!(e.to_string().contains("unknown Location number 2"), "{e}");
    }

    #[test]
    fn unknown_field_rejected() {
        let yaml = "hosts: [a.com]\nports:\n- nmber: 80\n  name: http\n";
        let e = serde_yaml::from_str::<ServiceEntry>(yaml).expect_err("unknown field");
        let msg = e.to_string();
        assert!(msg.contains("unknown field `nmber`"), "{msg}");
        assert!(msg.contains("ports[0]"), "{msg}");
        let e = serde_yaml::from_str::<ServiceEntry>("host: a.com").expect_err("unknown top-level");
        assert!(e.to_string().contains("unknown field `host`"), "{e}");
    }

    #[test]
    fn wrong_types_rejected() {
        assert!(serde_yaml::from_str::<ServiceEntry>("ports:\n- number: -1").is_err());
        assert!(serde_yaml::from_str::<ServiceEntry>("hosts: a.com").is_err());
        assert!(serde_yaml::from_str::<ServiceEntry>("ports:\n- number: 80000000000").is_err());
    }

    #[test]
    fn status_addresses() {
        let yaml = r#"
conditions:
- type: Reconciled
  status: "True"
observedGeneration: "3"
addresses:
- value: 240.240.0.1
  host: a.example.com
- value: "2001:2::1"
  host: a.example.com
"#;
        let st: ServiceEntryStatus = serde_yaml::from_str(yaml).expect("status");
        assert_eq!(st.observed_generation, 3);
        assert_eq!(st.addresses.len(), 2);
        assert_eq!(st.addresses[1].value, "2001:2::1");
        let again: ServiceEntryStatus =
            serde_json::from_value(serde_json::to_value(&st).expect("encode")).expect("re-decode");
        assert_eq!(again, st);
    }
}

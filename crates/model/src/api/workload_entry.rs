//! `networking.istio.io` WorkloadEntry (`networking/v1alpha3/workload_entry.proto`): one
//! non-Kubernetes workload (VM, bare metal). The same message is used inline as
//! `ServiceEntry.endpoints[]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{is_default, nd};

/// Spec of a WorkloadEntry, also used for `ServiceEntry.endpoints[]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntry {
    /// Address without port: an IP, a DNS name (DNS resolution only), or
    /// `unix:///abs/path` / `unix://@abstract`. May be empty only if `network` is set.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub address: String,
    /// Service port name → this endpoint's port (overrides `targetPort`); not for `unix://`.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub ports: BTreeMap<String, u32>,
    /// Labels of the endpoint.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub labels: BTreeMap<String, String>,
    /// L3 network the endpoint lives in (required if `address` is empty).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub network: String,
    /// Failure-domain locality, `region/zone/subzone`.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub locality: String,
    /// Load-balancing weight (0 is treated as 1).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub weight: u32,
    /// Service account of the workload's sidecar, if it has one.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub service_account: String,
}

impl WorkloadEntry {
    /// True when the address is a Unix domain socket (`unix://...`).
    pub fn is_unix(&self) -> bool {
        self.address.starts_with("unix://")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_fields() {
        let yaml = r#"
address: 2.2.2.2
ports: {http: 8080, grpc: 9090}
labels: {app: details, instance-id: vm1}
network: net-1
locality: us-east/zone-a/rack-1
weight: 3
serviceAccount: details-legacy
"#;
        let we: WorkloadEntry = serde_yaml::from_str(yaml).expect("decode");
        assert_eq!(we.ports.get("http"), Some(&8080));
        assert_eq!(we.weight, 3);
        let json = serde_json::to_value(&we).expect("encode");
        let input: serde_json::Value = serde_yaml::from_str(yaml).expect("value");
        assert_eq!(json, input);
        assert_eq!(
            serde_json::from_value::<WorkloadEntry>(json).expect("re-decode"),
            we
        );
    }

    #[test]
    fn unknown_field_rejected() {
        let e = serde_yaml::from_str::<WorkloadEntry>("address: 1.1.1.1\nport: 80")
            .expect_err("unknown");
        assert!(e.to_string().contains("unknown field `port`"), "{e}");
    }

    #[test]
    fn nulls_are_unset() {
        let we: WorkloadEntry =
            serde_yaml::from_str("address:\nports:\nlabels:\nweight:").expect("nulls");
        assert_eq!(we, WorkloadEntry::default());
    }

    #[test]
    fn unix_address() {
        let we: WorkloadEntry =
            serde_yaml::from_str("address: unix:///var/run/a.sock").expect("decode");
        assert!(we.is_unix());
    }
}

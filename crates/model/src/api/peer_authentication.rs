//! `security.istio.io` PeerAuthentication (`security/v1/peer_authentication.proto`): which
//! mutual-TLS mode a workload's inbound side accepts, mesh-wide (root namespace, no selector),
//! per namespace (no selector) or per workload (selector), optionally per port.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{is_default, nd, proto_enum, type_v1beta1};

proto_enum! {
    /// `PeerAuthentication.MutualTLS.Mode`.
    MtlsMode {
        /// Inherit from the parent scope; PERMISSIVE where there is none.
        Unset = 0 => "UNSET",
        /// Plain text only.
        Disable = 1 => "DISABLE",
        /// Mutual TLS or plain text.
        Permissive = 2 => "PERMISSIVE",
        /// Mutual TLS with a client certificate only.
        Strict = 3 => "STRICT",
    }
}

/// `PeerAuthentication.MutualTLS`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MutualTls {
    /// The mode.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub mode: MtlsMode,
}

/// Spec of a PeerAuthentication.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthentication {
    /// Workloads the policy applies to (their labels); absent = the whole namespace (or the
    /// mesh, in the root namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<type_v1beta1::WorkloadSelector>,
    /// The workload-level mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MutualTls>,
    /// Per workload port (not service port); only with a selector. `None` when absent (an
    /// empty map is a validation error, as in Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_level_mtls: Option<BTreeMap<u32, MutualTls>>,
}

impl PeerAuthentication {
    /// Whether the policy has a non-empty selector (a workload policy).
    pub fn has_selector(&self) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_istios_form() {
        let yaml = "selector: {matchLabels: {app: b}}\nmtls: {mode: STRICT}\nportLevelMtls:\n  8080: {mode: DISABLE}\n";
        let v: serde_json::Value = serde_yaml::from_str(yaml).expect("yaml");
        let pa: PeerAuthentication = serde_json::from_value(v).expect("decode");
        assert_eq!(pa.mtls.as_ref().map(|m| m.mode), Some(MtlsMode::Strict));
        assert_eq!(
            pa.port_level_mtls
                .as_ref()
                .and_then(|p| p.get(&8080))
                .map(|m| m.mode),
            Some(MtlsMode::Disable)
        );
        assert!(pa.has_selector());
        let e = serde_json::from_value::<PeerAuthentication>(
            serde_json::json!({"mtls": {"mode": "BLAH"}}),
        )
        .expect_err("bad mode")
        .to_string();
        assert!(e.contains("BLAH"), "{e}");
    }
}

//! `istio.networking.nds.v1.NameTable` (Istio's `pkg/dns/proto/nds.proto`), written by hand
//! with the same field numbers so that Istio's agent and istiod interoperate. The map is a
//! `BTreeMap` so the encoding is deterministic (equal tables, equal bytes and versions).

use std::collections::BTreeMap;

/// NDS type URL (Istio's).
pub const NDS_TYPE_URL: &str = "type.googleapis.com/istio.networking.nds.v1.NameTable";

/// Table of host names and their IPs for the agent's DNS proxy.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NameTable {
    /// Host name → resolution attributes.
    #[prost(btree_map = "string, message", tag = "1")]
    pub table: BTreeMap<String, NameInfo>,
    /// Attributes for the host in `discovery.Resource.name` (unused by SotW NDS).
    #[prost(message, optional, tag = "2")]
    pub name_info: Option<NameInfo>,
}

/// Resolution attributes of one host.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NameInfo {
    /// IPs of the host.
    #[prost(string, repeated, tag = "1")]
    pub ips: Vec<String>,
    /// Registry of the service (`External` for ServiceEntries, `Kubernetes`).
    #[prost(string, tag = "2")]
    pub registry: String,
    /// Kubernetes service name (registry `Kubernetes` only).
    #[prost(string, tag = "3")]
    pub shortname: String,
    /// Kubernetes namespace (registry `Kubernetes` only).
    #[prost(string, tag = "4")]
    pub namespace: String,
    /// Deprecated extra names.
    #[prost(string, repeated, tag = "5")]
    pub alt_hosts: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn wire_format_matches_istio_field_numbers() {
        let t = NameTable {
            table: BTreeMap::from([(
                "a.com".to_string(),
                NameInfo {
                    ips: vec!["1.1.1.1".into()],
                    registry: "External".into(),
                    ..NameInfo::default()
                },
            )]),
            name_info: None,
        };
        let bytes = t.encode_to_vec();
        // field 1 (map entry, LEN) → entry { 1: key, 2: value { 1: ips, 2: registry } }
        let expected: Vec<u8> = [
            &[0x0a, 28][..],
            &[0x0a, 5],
            b"a.com",
            &[0x12, 19],
            &[0x0a, 7],
            b"1.1.1.1",
            &[0x12, 8],
            b"External",
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(NameTable::decode(bytes.as_slice()).expect("decodes"), t);
    }
}

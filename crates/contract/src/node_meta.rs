//! The `node.metadata` keys that the sidecar agent writes into the Envoy bootstrap and the
//! control plane reads from the first ADS request: the contract between both sides.
//!
//! Envoy sends `node.metadata` as a `google.protobuf.Struct`; the agent writes every value as
//! a **string** (the bootstrap's metadata map is `string → string`), so structured values are
//! encoded inside the string:
//!
//! | key | value | example |
//! | --- | --- | --- |
//! | [`NAMESPACE`] | the proxy's namespace | `default` |
//! | [`LABELS`] | a JSON object of string labels | `{"app":"shop","version":"v1"}` |
//! | [`INSTANCE_IPS`] | comma-separated IP addresses | `10.0.0.7,fd00::7` |
//! | [`DNS_CAPTURE`] | `"true"` or `"false"` | `true` |
//! | [`EXPLICIT_PROXY`] | `ip:port` of the explicit HTTP proxy listener; absent = none | `127.0.0.1:15080` |
//!
//! The names are Istio's (`pkg/model/proxy.go` `NodeMetadata`: `NAMESPACE`, `LABELS`,
//! `INSTANCE_IPS`, `DNS_CAPTURE`). Istio's own agent sends `LABELS` as a Struct rather than a
//! JSON string; a control plane that wants to accept Istio's agent too can convert that Struct
//! to a map itself and skip [`parse_labels`]. `EXPLICIT_PROXY` is Entryway's own (Istio has no
//! explicit-proxy mode).
//!
//! The agent encodes with [`NodeMeta::to_metadata`]; the control plane decodes with
//! [`NodeMeta::decode`], which keeps every well-formed field and reports the bad ones, so a
//! proxy with one garbled key still gets a config (with that field at its default).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// The proxy's namespace (Sidecar scoping, `exportTo`).
pub const NAMESPACE: &str = "NAMESPACE";
/// The workload's labels as a JSON object string (`workloadSelector` matching).
pub const LABELS: &str = "LABELS";
/// The workload's IP addresses, comma-separated.
pub const INSTANCE_IPS: &str = "INSTANCE_IPS";
/// Whether the agent captures DNS (`"true"` / `"false"`).
pub const DNS_CAPTURE: &str = "DNS_CAPTURE";
/// Address (`ip:port`) of the explicit HTTP proxy listener Envoy should open.
pub const EXPLICIT_PROXY: &str = "EXPLICIT_PROXY";

/// The workload's service account (Istio's `SERVICE_ACCOUNT`).
pub const SERVICE_ACCOUNT: &str = "SERVICE_ACCOUNT";
/// How inbound traffic reaches the proxy (Istio's `INTERCEPTION_MODE`).
pub const INTERCEPTION_MODE: &str = "INTERCEPTION_MODE";

/// The keys above, in the order the agent writes them.
pub const ALL_KEYS: [&str; 7] = [
    NAMESPACE,
    LABELS,
    INSTANCE_IPS,
    DNS_CAPTURE,
    EXPLICIT_PROXY,
    SERVICE_ACCOUNT,
    INTERCEPTION_MODE,
];

/// Istio's interception modes (`TPROXY` is read as `REDIRECT`: both capture inbound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InterceptionMode {
    /// Inbound connections are redirected to the inbound listener (15006).
    #[default]
    Redirect,
    /// Nothing is captured: inbound listeners bind the workload's address themselves.
    None,
}

impl InterceptionMode {
    /// The metadata value.
    pub fn as_str(self) -> &'static str {
        match self {
            InterceptionMode::Redirect => "REDIRECT",
            InterceptionMode::None => "NONE",
        }
    }
}

/// A metadata value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node metadata {key}={value:?}: {reason}")]
pub struct NodeMetaError {
    /// The metadata key.
    pub key: &'static str,
    /// The value as received.
    pub value: String,
    /// Why it was rejected.
    pub reason: String,
}

impl NodeMetaError {
    fn new(key: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            key,
            // Bounded: a proxy's metadata is peer input and ends up in logs.
            value: crate::identity::bounded(value, 256),
            reason: reason.into(),
        }
    }
}

/// The typed view of the contract keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeMeta {
    /// [`NAMESPACE`]; `None` when absent or empty.
    pub namespace: Option<String>,
    /// [`LABELS`]; empty when absent.
    pub labels: BTreeMap<String, String>,
    /// [`INSTANCE_IPS`]; empty when absent.
    pub instance_ips: Vec<IpAddr>,
    /// [`DNS_CAPTURE`]; `false` when absent.
    pub dns_capture: bool,
    /// [`EXPLICIT_PROXY`]; `None` when absent or empty.
    pub explicit_proxy: Option<SocketAddr>,
    /// [`SERVICE_ACCOUNT`]; `None` when absent or empty.
    pub service_account: Option<String>,
    /// [`INTERCEPTION_MODE`]; `None` when absent (Istio's default is `REDIRECT`).
    pub interception_mode: Option<InterceptionMode>,
}

impl NodeMeta {
    /// The metadata entries for the bootstrap. An absent namespace is omitted; the other
    /// keys are always written so the control plane never has to guess.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(ns) = self.namespace.as_deref().filter(|ns| !ns.is_empty()) {
            out.insert(NAMESPACE.to_owned(), ns.to_owned());
        }
        out.insert(LABELS.to_owned(), encode_labels(&self.labels));
        out.insert(INSTANCE_IPS.to_owned(), encode_ips(&self.instance_ips));
        out.insert(DNS_CAPTURE.to_owned(), self.dns_capture.to_string());
        if let Some(addr) = self.explicit_proxy {
            out.insert(EXPLICIT_PROXY.to_owned(), addr.to_string());
        }
        if let Some(sa) = self.service_account.as_deref().filter(|s| !s.is_empty()) {
            out.insert(SERVICE_ACCOUNT.to_owned(), sa.to_owned());
        }
        if let Some(m) = self.interception_mode {
            out.insert(INTERCEPTION_MODE.to_owned(), m.as_str().to_owned());
        }
        out
    }

    /// Reads the contract keys through `get` (a lookup into the node's metadata that returns
    /// the value when it is a string). Fields that fail to parse keep their default and are
    /// reported in the returned errors.
    pub fn decode<'a>(get: impl Fn(&str) -> Option<&'a str>) -> (Self, Vec<NodeMetaError>) {
        let mut meta = Self::default();
        let mut errors = Vec::new();
        meta.namespace = get(NAMESPACE)
            .map(str::trim)
            .filter(|ns| !ns.is_empty())
            .map(str::to_owned);
        if let Some(v) = get(LABELS) {
            match parse_labels(v) {
                Ok(labels) => meta.labels = labels,
                Err(e) => errors.push(e),
            }
        }
        if let Some(v) = get(INSTANCE_IPS) {
            match parse_ips(v) {
                Ok(ips) => meta.instance_ips = ips,
                Err(e) => errors.push(e),
            }
        }
        if let Some(v) = get(DNS_CAPTURE) {
            match parse_bool(DNS_CAPTURE, v) {
                Ok(b) => meta.dns_capture = b,
                Err(e) => errors.push(e),
            }
        }
        if let Some(v) = get(EXPLICIT_PROXY) {
            match parse_socket_addr(EXPLICIT_PROXY, v) {
                Ok(addr) => meta.explicit_proxy = addr,
                Err(e) => errors.push(e),
            }
        }
        meta.service_account = get(SERVICE_ACCOUNT)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        if let Some(v) = get(INTERCEPTION_MODE) {
            match v.trim() {
                "REDIRECT" | "TPROXY" => meta.interception_mode = Some(InterceptionMode::Redirect),
                "NONE" => meta.interception_mode = Some(InterceptionMode::None),
                _ => errors.push(NodeMetaError::new(
                    INTERCEPTION_MODE,
                    v,
                    "expected REDIRECT, TPROXY or NONE",
                )),
            }
        }
        (meta, errors)
    }
}

/// `{"app":"shop"}`: labels as a compact JSON object (keys sorted).
pub fn encode_labels(labels: &BTreeMap<String, String>) -> String {
    // A map of strings always serialises; the fallback keeps this total without a panic.
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".to_owned())
}

/// Parses a [`LABELS`] value: a JSON object whose values are strings. An empty string means
/// no labels.
pub fn parse_labels(value: &str) -> Result<BTreeMap<String, String>, NodeMetaError> {
    if value.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let parsed: serde_json::Value = serde_json::from_str(value)
        .map_err(|e| NodeMetaError::new(LABELS, value, format!("not JSON: {e}")))?;
    let serde_json::Value::Object(map) = parsed else {
        return Err(NodeMetaError::new(
            LABELS,
            value,
            "expected a JSON object of string labels",
        ));
    };
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            other => Err(NodeMetaError::new(
                LABELS,
                value,
                format!("label {k:?} has a non-string value {other}"),
            )),
        })
        .collect()
}

/// `10.0.0.7,fd00::7`.
pub fn encode_ips(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses an [`INSTANCE_IPS`] value: comma-separated IP literals; blanks around entries and
/// empty entries are ignored.
pub fn parse_ips(value: &str) -> Result<Vec<IpAddr>, NodeMetaError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpAddr>().map_err(|_| {
                NodeMetaError::new(INSTANCE_IPS, value, format!("{s:?} is not an IP address"))
            })
        })
        .collect()
}

/// Parses an `ip:port` value (`[v6]:port` for IPv6); an empty value means none. Port 0 is
/// refused: a proxy listener needs a known port.
pub fn parse_socket_addr(
    key: &'static str,
    value: &str,
) -> Result<Option<SocketAddr>, NodeMetaError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = v.parse().map_err(|_| {
        NodeMetaError::new(
            key,
            value,
            "expected ip:port, e.g. 127.0.0.1:15080 or [::1]:15080",
        )
    })?;
    if addr.port() == 0 {
        return Err(NodeMetaError::new(key, value, "port 0 is not allowed"));
    }
    Ok(Some(addr))
}

/// Parses a boolean the way Go's `strconv.ParseBool` (and so Istio) does: `1 t T TRUE true
/// True` and `0 f F FALSE false False`.
pub fn parse_bool(key: &'static str, value: &str) -> Result<bool, NodeMetaError> {
    match value.trim() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(NodeMetaError::new(key, value, "expected true or false")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lookup<'a>(map: &'a BTreeMap<String, String>) -> impl Fn(&str) -> Option<&'a str> {
        move |k| map.get(k).map(String::as_str)
    }

    #[test]
    fn round_trips_through_the_bootstrap_map() {
        let meta = NodeMeta {
            namespace: Some("shop".into()),
            labels: BTreeMap::from([
                ("app".into(), "cart".into()),
                ("version".into(), "v\"2".into()),
            ]),
            instance_ips: vec!["10.0.0.7".parse().unwrap(), "fd00::7".parse().unwrap()],
            dns_capture: true,
            explicit_proxy: Some("127.0.0.1:15080".parse().unwrap()),
            service_account: Some("cart-sa".into()),
            interception_mode: Some(InterceptionMode::None),
        };
        let map = meta.to_metadata();
        assert_eq!(map[EXPLICIT_PROXY], "127.0.0.1:15080");
        assert_eq!(map[SERVICE_ACCOUNT], "cart-sa");
        assert_eq!(map[INTERCEPTION_MODE], "NONE");
        assert_eq!(map[LABELS], r#"{"app":"cart","version":"v\"2"}"#);
        assert_eq!(map[INSTANCE_IPS], "10.0.0.7,fd00::7");
        assert_eq!(map[DNS_CAPTURE], "true");
        let (back, errors) = NodeMeta::decode(lookup(&map));
        assert_eq!(errors, vec![]);
        assert_eq!(back, meta);
    }

    #[test]
    fn absent_keys_give_defaults() {
        let (meta, errors) = NodeMeta::decode(|_| None);
        assert_eq!(meta, NodeMeta::default());
        assert!(errors.is_empty());
        // And the default encodes without a namespace.
        let map = NodeMeta::default().to_metadata();
        assert!(!map.contains_key(NAMESPACE));
        assert_eq!(map[LABELS], "{}");
        assert_eq!(map[INSTANCE_IPS], "");
        assert_eq!(map[DNS_CAPTURE], "false");
        assert!(!map.contains_key(EXPLICIT_PROXY));
    }

    #[test]
    fn bad_fields_are_reported_and_the_rest_kept() {
        let map = BTreeMap::from([
            (NAMESPACE.to_owned(), "prod".to_owned()),
            (LABELS.to_owned(), r#"{"app": 3}"#.to_owned()),
            (INSTANCE_IPS.to_owned(), "10.0.0.1, nope".to_owned()),
            (DNS_CAPTURE.to_owned(), "yes".to_owned()),
            (EXPLICIT_PROXY.to_owned(), "localhost:15080".to_owned()),
        ]);
        let (meta, errors) = NodeMeta::decode(lookup(&map));
        assert_eq!(meta.namespace.as_deref(), Some("prod"));
        assert!(meta.labels.is_empty());
        assert!(meta.instance_ips.is_empty());
        assert!(!meta.dns_capture);
        let keys: Vec<_> = errors.iter().map(|e| e.key).collect();
        assert!(meta.explicit_proxy.is_none());
        assert_eq!(
            keys,
            vec![LABELS, INSTANCE_IPS, DNS_CAPTURE, EXPLICIT_PROXY]
        );
        assert!(
            errors[0].to_string().contains("non-string value 3"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].to_string().contains("\"nope\" is not an IP"),
            "{}",
            errors[1]
        );
    }

    #[test]
    fn parsers_table() {
        assert!(parse_labels("").unwrap().is_empty());
        assert!(parse_labels("[1]").is_err());
        assert!(parse_labels("{").is_err());
        assert_eq!(
            parse_ips(" 10.0.0.1 ,,::1,").unwrap(),
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        for (v, want) in [("true", true), ("1", true), ("T", true), ("False", false)] {
            assert_eq!(parse_bool(DNS_CAPTURE, v), Ok(want), "{v}");
        }
        assert!(parse_bool(DNS_CAPTURE, "tRuE").is_err());
        assert!(parse_bool(DNS_CAPTURE, "").is_err());
        assert_eq!(
            parse_socket_addr(EXPLICIT_PROXY, " [::1]:15080 ").unwrap(),
            Some("[::1]:15080".parse().unwrap())
        );
        assert_eq!(parse_socket_addr(EXPLICIT_PROXY, "").unwrap(), None);
        for bad in ["127.0.0.1", "127.0.0.1:0", "::1:15080", "127.0.0.1:99999"] {
            assert!(parse_socket_addr(EXPLICIT_PROXY, bad).is_err(), "{bad}");
        }
    }
}

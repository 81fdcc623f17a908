//! The proxy's identity from the `node` of its first ADS request.
//!
//! Accepted `node.metadata` keys (the contract with the agent is
//! [`entryway_contract::node_meta`]; Istio's names):
//!
//! | key | accepted values |
//! | --- | --- |
//! | `NAMESPACE` | a string |
//! | `LABELS` | a JSON object of strings inside a string (what `entryway proxy` writes), or a `Struct` of strings (what Istio's agent writes) |
//! | `INSTANCE_IPS` | comma-separated IP literals |
//! | `DNS_CAPTURE` | `"true"`/`"false"` (Go `ParseBool` spellings) or a bool |
//! | `DNS_AUTO_ALLOCATE` | as `DNS_CAPTURE` |
//! | `EXPLICIT_PROXY` | `ip:port` of the explicit HTTP proxy listener (absent or empty: none) |
//!
//! Without `NAMESPACE`, the namespace comes from an Istio-style node id
//! `sidecar~IP~name.namespace~namespace.svc.cluster.local` (the 4th part's first label, else
//! the 3rd part after its first dot), else `default`. Without `INSTANCE_IPS`, the IP part of
//! such a node id is used when it parses. A bad value never refuses the proxy: the field keeps
//! its default and a warning is returned (and logged by the caller).

use entryway_contract::node_meta::{self, NodeMeta};
use entryway_model::registry::Proxy;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{Struct, value::Kind};

/// Namespace of a proxy that says nothing about it.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Metadata key of the DNS auto-allocation flag (Istio's `DNS_AUTO_ALLOCATE`).
pub const DNS_AUTO_ALLOCATE: &str = "DNS_AUTO_ALLOCATE";

/// The proxy described by `node`, and warnings about metadata values that were ignored.
pub fn proxy_from_node(node: Option<&Node>) -> (Proxy, Vec<String>) {
    let mut warnings = Vec::new();
    let Some(node) = node else {
        warnings.push("the first request has no node; using namespace default".to_string());
        return (Proxy::in_namespace(DEFAULT_NAMESPACE), warnings);
    };
    let empty = Struct::default();
    let metadata = node.metadata.as_ref().unwrap_or(&empty);
    let string = |key: &str| -> Option<&str> {
        match metadata.fields.get(key)?.kind.as_ref()? {
            Kind::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    };
    let (meta, errors) = NodeMeta::decode(string);
    warnings.extend(errors.iter().map(ToString::to_string));

    let mut labels = meta.labels;
    if let Some(Kind::StructValue(s)) = metadata
        .fields
        .get(node_meta::LABELS)
        .and_then(|v| v.kind.as_ref())
    {
        for (k, v) in &s.fields {
            match v.kind.as_ref() {
                Some(Kind::StringValue(s)) => {
                    labels.insert(k.clone(), s.clone());
                }
                _ => warnings.push(format!("node metadata LABELS.{k}: not a string; ignored")),
            }
        }
    }
    let flag = |key: &'static str, default: bool, warnings: &mut Vec<String>| -> bool {
        match metadata.fields.get(key).and_then(|v| v.kind.as_ref()) {
            Some(Kind::BoolValue(b)) => *b,
            // NodeMeta::decode already parsed (and warned about) this key's string form.
            Some(Kind::StringValue(_)) if key == node_meta::DNS_CAPTURE => default,
            Some(Kind::StringValue(s)) => match node_meta::parse_bool(key, s) {
                Ok(b) => b,
                Err(e) => {
                    warnings.push(e.to_string());
                    default
                }
            },
            Some(_) => {
                warnings.push(format!(
                    "node metadata {key}: not a string or bool; ignored"
                ));
                default
            }
            None => default,
        }
    };
    let dns_capture = flag(node_meta::DNS_CAPTURE, meta.dns_capture, &mut warnings);
    let dns_auto_allocate = flag(DNS_AUTO_ALLOCATE, false, &mut warnings);

    let id_parts: Vec<&str> = node.id.split('~').collect();
    let namespace = meta
        .namespace
        .or_else(|| namespace_from_id(&id_parts))
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let mut ips = meta.instance_ips;
    if ips.is_empty()
        && let Some(ip) = id_parts
            .get(1)
            .filter(|_| id_parts.len() == 4)
            .and_then(|s| s.parse().ok())
    {
        ips.push(ip);
    }
    let proxy = Proxy {
        id: node.id.clone(),
        namespace,
        labels,
        ips,
        dns_capture,
        dns_auto_allocate,
        explicit_proxy: meta.explicit_proxy,
        service_account: meta.service_account,
        // Istio's agents always send INTERCEPTION_MODE; a proxy that does not is treated as
        // not capturing inbound traffic (Entryway's plain-Envoy and explicit-proxy setups).
        inbound_capture: meta.interception_mode == Some(node_meta::InterceptionMode::Redirect),
    };
    (proxy, warnings)
}

/// Whether the node names its namespace itself (metadata `NAMESPACE` or an Istio-style node
/// id); a proxy that names none takes the namespace of its verified identity.
pub fn claims_namespace(node: Option<&Node>) -> bool {
    let Some(node) = node else { return false };
    let in_metadata = node
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(node_meta::NAMESPACE))
        .and_then(|v| match v.kind.as_ref() {
            Some(Kind::StringValue(s)) => Some(!s.trim().is_empty()),
            _ => None,
        })
        .unwrap_or(false);
    in_metadata || namespace_from_id(&node.id.split('~').collect::<Vec<_>>()).is_some()
}

/// Istio's xDS authorization (`checkConnectionIdentity`): the namespace the proxy claims,
/// and the service account when it claims one, must be those of its verified identity. A
/// proxy that claims no namespace is put in its identity's.
pub fn authorize(
    proxy: &mut Proxy,
    claims_namespace: bool,
    identity: &entryway_contract::SpiffeId,
) -> Result<(), String> {
    let ns_ok = !claims_namespace || proxy.namespace == identity.namespace;
    let sa_ok = proxy
        .service_account
        .as_deref()
        .is_none_or(|sa| sa == identity.service_account);
    if !(ns_ok && sa_ok) {
        return Err(format!(
            "authorization failed: no identities ([{identity}]) matched {}/{}",
            entryway_contract::identity::bounded(&proxy.namespace, 253),
            entryway_contract::identity::bounded(
                proxy.service_account.as_deref().unwrap_or(""),
                253
            ),
        ));
    }
    proxy.namespace = identity.namespace.clone();
    proxy.service_account = Some(identity.service_account.clone());
    Ok(())
}

/// `sidecar~IP~name.namespace~namespace.svc.cluster.local` → `namespace`.
fn namespace_from_id(parts: &[&str]) -> Option<String> {
    if parts.len() != 4 {
        return None;
    }
    let from_domain = parts[3].split('.').next().filter(|s| !s.is_empty());
    let from_name = parts[2]
        .split_once('.')
        .map(|(_, ns)| ns)
        .filter(|s| !s.is_empty());
    from_domain.or(from_name).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::net::IpAddr;

    use envoy_types::pb::google::protobuf::Value;

    use super::*;

    fn s(v: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(v.to_string())),
        }
    }

    fn node(id: &str, meta: Vec<(&str, Value)>) -> Node {
        Node {
            id: id.to_string(),
            metadata: Some(Struct {
                fields: meta
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<HashMap<_, _>>(),
            }),
            ..Default::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn reads_the_agent_contract() {
        let n = node(
            "sidecar~10.0.0.9~app-1.other~other.svc.cluster.local",
            vec![
                ("NAMESPACE", s("shop")),
                ("LABELS", s(r#"{"app":"cart","version":"v1"}"#)),
                ("INSTANCE_IPS", s("10.0.0.7, fd00::7")),
                ("DNS_CAPTURE", s("true")),
            ],
        );
        let (p, warnings) = proxy_from_node(Some(&n));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(p.namespace, "shop");
        assert_eq!(
            p.labels,
            BTreeMap::from([
                ("app".to_string(), "cart".to_string()),
                ("version".to_string(), "v1".to_string())
            ])
        );
        assert_eq!(p.ips, vec![ip("10.0.0.7"), ip("fd00::7")]);
        assert!(p.dns_capture);
        assert!(!p.dns_auto_allocate);
        assert_eq!(p.id, n.id);
    }

    #[test]
    fn falls_back_to_the_node_id() {
        let n = node(
            "sidecar~10.1.2.3~app-1.payments~payments.svc.cluster.local",
            vec![],
        );
        let (p, warnings) = proxy_from_node(Some(&n));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(p.namespace, "payments");
        assert_eq!(p.ips, vec![ip("10.1.2.3")]);
        assert!(p.labels.is_empty());
        assert!(!p.dns_capture);

        let n = node("sidecar~x~app-1.orders~", vec![]);
        assert_eq!(proxy_from_node(Some(&n)).0.namespace, "orders");
        let n = node("my-envoy", vec![]);
        let (p, _) = proxy_from_node(Some(&n));
        assert_eq!(p.namespace, DEFAULT_NAMESPACE);
        assert!(p.ips.is_empty());
        let (p, warnings) = proxy_from_node(None);
        assert_eq!(p.namespace, DEFAULT_NAMESPACE);
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn accepts_istio_style_struct_labels_and_bool_flags() {
        let labels = Value {
            kind: Some(Kind::StructValue(Struct {
                fields: HashMap::from([
                    ("app".to_string(), s("web")),
                    (
                        "n".to_string(),
                        Value {
                            kind: Some(Kind::NumberValue(1.0)),
                        },
                    ),
                ]),
            })),
        };
        let n = node(
            "id",
            vec![
                ("LABELS", labels),
                (
                    "DNS_CAPTURE",
                    Value {
                        kind: Some(Kind::BoolValue(true)),
                    },
                ),
                ("DNS_AUTO_ALLOCATE", s("1")),
            ],
        );
        let (p, warnings) = proxy_from_node(Some(&n));
        assert_eq!(
            p.labels,
            BTreeMap::from([("app".to_string(), "web".to_string())])
        );
        assert!(p.dns_capture && p.dns_auto_allocate);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("LABELS.n"), "{warnings:?}");
    }

    #[test]
    fn explicit_proxy_address() {
        let n = node("id", vec![("EXPLICIT_PROXY", s("127.0.0.1:15080"))]);
        let (p, warnings) = proxy_from_node(Some(&n));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            p.explicit_proxy,
            Some("127.0.0.1:15080".parse().expect("addr"))
        );
        let (p, _) = proxy_from_node(Some(&node("id", vec![])));
        assert_eq!(p.explicit_proxy, None);
        let n = node("id", vec![("EXPLICIT_PROXY", s("proxy.local:15080"))]);
        let (p, warnings) = proxy_from_node(Some(&n));
        assert_eq!(p.explicit_proxy, None);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("EXPLICIT_PROXY"), "{warnings:?}");
    }

    #[test]
    fn bad_values_keep_defaults_and_warn() {
        let n = node(
            "sidecar~10.0.0.1~a.b~b.svc.cluster.local",
            vec![
                ("LABELS", s("[1,2]")),
                ("INSTANCE_IPS", s("10.0.0.1,not-an-ip")),
                ("DNS_CAPTURE", s("maybe")),
            ],
        );
        let (p, warnings) = proxy_from_node(Some(&n));
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(p.labels.is_empty());
        // INSTANCE_IPS failed as a whole, so the node id's IP is used.
        assert_eq!(p.ips, vec![ip("10.0.0.1")]);
        assert!(!p.dns_capture);
        assert_eq!(p.namespace, "b");
    }
}

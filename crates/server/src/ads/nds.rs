//! NDS: the DNS name table of a proxy (spec §8), served on the ADS stream as Istio does:
//! type `istio.networking.nds.v1.NameTable`, one resource per response, state of the world.
//!
//! Envoy never asks for this type, so it is only ever sent on a stream that requested it
//! (the agent's NDS client). It is generated with the proxy's other resources (same
//! snapshot, same [`super::cache`] slot) and sent after them. A response is sent on the
//! initial request and whenever the table's content version changes; ACKs and NACKs are
//! logged (a NACKed table is not resent until it changes).
//!
//! Delta streams do not serve NDS (Istio's agent uses SotW for it); a Delta request for it
//! is ignored like any unknown type.

use std::sync::Arc;

use entryway_contract::nds::{NameInfo, NameTable};
use entryway_model::registry::{ProxyScope, nametable};
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use tracing::{debug, warn};

use super::ack::{SotwRequest, classify_sotw};
use super::canonical::version_of;

pub use entryway_contract::nds::NDS_TYPE_URL;

/// One proxy's encoded name table.
#[derive(Debug, PartialEq, Eq)]
pub struct NdsBody {
    /// Content version (hash of `body`).
    pub version: Arc<str>,
    /// Encoded `NameTable` (deterministic: the map is ordered).
    pub body: Vec<u8>,
    /// Number of hosts.
    pub hosts: usize,
}

impl NdsBody {
    /// The encoding of `table`.
    pub fn of(table: &NameTable) -> NdsBody {
        let body = table.encode_to_vec();
        NdsBody {
            version: version_of(&body).into(),
            body,
            hosts: table.table.len(),
        }
    }

    /// An empty table.
    pub fn empty() -> Arc<NdsBody> {
        Arc::new(NdsBody::of(&NameTable::default()))
    }
}

/// The name table message for `scope`.
pub fn name_table(scope: &ProxyScope<'_>) -> NameTable {
    let t = nametable::build(scope);
    NameTable {
        table: t
            .table
            .into_iter()
            .map(|(host, i)| {
                (
                    host,
                    NameInfo {
                        ips: i.ips,
                        registry: i.registry,
                        shortname: i.shortname,
                        namespace: i.namespace,
                        alt_hosts: i.alt_hosts,
                    },
                )
            })
            .collect(),
        name_info: None,
    }
}

/// The encoded name table for `scope`, sharing `previous` when equal.
pub fn build(scope: &ProxyScope<'_>, previous: Option<&Arc<NdsBody>>) -> Arc<NdsBody> {
    let fresh = NdsBody::of(&name_table(scope));
    match previous {
        Some(p) if **p == fresh => Arc::clone(p),
        _ => Arc::new(fresh),
    }
}

/// NDS state of one SotW stream.
#[derive(Debug, Default)]
pub struct SotwState {
    subscribed: bool,
    needs_response: bool,
    /// Nonce and version of the last response.
    sent: Option<(String, Arc<str>)>,
}

impl SotwState {
    /// Applies a request for the NDS type.
    pub fn on_request(&mut self, req: &DiscoveryRequest) {
        let latest = self.sent.as_ref().map(|(n, _)| n.as_str());
        match classify_sotw(latest, &req.response_nonce, req.error_detail.as_ref()) {
            SotwRequest::Stale => {
                debug!(nonce = %req.response_nonce, "ignoring a stale NDS request");
                return;
            }
            SotwRequest::Initial => self.needs_response = true,
            SotwRequest::Ack => debug!(nonce = %req.response_nonce, "nds ack"),
            SotwRequest::Nack(message) => {
                warn!(nonce = %req.response_nonce, error = %message, "the agent rejected the name table");
            }
        }
        self.subscribed = true;
    }

    /// The response due now, if any; `nonce` is the stream's nonce counter.
    pub fn flush(&mut self, table: &NdsBody, nonce: &mut u64) -> Option<DiscoveryResponse> {
        if !self.subscribed {
            return None;
        }
        let changed = self.sent.as_ref().map(|(_, v)| v) != Some(&table.version);
        if !(self.needs_response || changed) {
            return None;
        }
        *nonce += 1;
        let n = nonce.to_string();
        self.sent = Some((n.clone(), Arc::clone(&table.version)));
        self.needs_response = false;
        debug!(version = %table.version, hosts = table.hosts, nonce = %n, "sent nds");
        Some(DiscoveryResponse {
            version_info: table.version.to_string(),
            resources: vec![Any {
                type_url: NDS_TYPE_URL.to_string(),
                value: table.body.clone(),
            }],
            type_url: NDS_TYPE_URL.to_string(),
            nonce: n,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: NDS_TYPE_URL.into(),
            response_nonce: nonce.into(),
            ..Default::default()
        }
    }

    #[test]
    fn sends_on_request_and_on_change_only() {
        let mut st = SotwState::default();
        let mut nonce = 0;
        let a = NdsBody::empty();
        assert!(st.flush(&a, &mut nonce).is_none(), "not subscribed");
        st.on_request(&req(""));
        let r = st.flush(&a, &mut nonce).expect("initial response");
        assert_eq!(r.resources.len(), 1);
        assert_eq!(r.nonce, "1");
        assert!(st.flush(&a, &mut nonce).is_none(), "unchanged");
        st.on_request(&req("1"));
        assert!(st.flush(&a, &mut nonce).is_none(), "ACK needs no answer");
        let mut t = NameTable::default();
        t.table.insert(
            "a.com".into(),
            NameInfo {
                ips: vec!["1.1.1.1".into()],
                registry: "External".into(),
                ..Default::default()
            },
        );
        let b = NdsBody::of(&t);
        let r = st.flush(&b, &mut nonce).expect("changed");
        assert_eq!(
            NameTable::decode(r.resources[0].value.as_slice()).expect("decodes"),
            t
        );
        assert_ne!(r.version_info, a.version.to_string());
    }

    /// Issue 6 item 3: with DNS capture the name table answers the auto-allocated address,
    /// and that is exactly the address of the entry's own `VIP_PORT` listener (the golden
    /// case `testdata/xds/dns-capture-autoalloc.yaml`), so captured TCP traffic reaches it.
    #[test]
    fn name_table_address_is_the_listener_address() {
        use entryway_model::api::MeshConfig;
        use entryway_model::check::check_text;
        use entryway_model::decode::Format;
        use entryway_model::registry::{ConfigSet, Proxy, Registry};

        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/xds/dns-capture-autoalloc.yaml"
        ))
        .expect("golden case");
        let mesh = MeshConfig::default();
        let configs = check_text(&text, Format::Yaml, "default", &mesh)
            .expect("yaml")
            .iter()
            .filter_map(|c| c.config().cloned())
            .collect();
        let registry = Registry::build(&ConfigSet::new(configs), &mesh);
        let proxy = Proxy {
            dns_capture: true,
            ips: vec!["10.0.0.9".parse().expect("ip")],
            ..Proxy::in_namespace("default")
        };
        let scope = ProxyScope::new(&registry, &mesh, &proxy);
        let table = name_table(&scope);
        let ips = &table.table["redis.example.com"].ips;
        assert_eq!(ips.len(), 1, "{ips:?}");
        assert!(ips[0].starts_with("240.240."), "{ips:?}");
        let listeners: Vec<String> = entryway_xds::generator::generate(&scope)
            .listeners
            .iter()
            .map(|l| l.name.clone())
            .collect();
        assert!(
            listeners.contains(&format!("{}_6379", ips[0])),
            "{ips:?} not among {listeners:?}"
        );
        // Without capture: no entry (the name goes to upstream DNS) and no VIP listener.
        let plain = Proxy {
            dns_capture: false,
            ..proxy.clone()
        };
        let scope = ProxyScope::new(&registry, &mesh, &plain);
        assert!(name_table(&scope).table.is_empty());
    }
}

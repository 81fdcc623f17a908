//! State-of-the-world ADS: every response carries all resources of its type that the proxy
//! subscribes to.
//!
//! Per type: the subscription (wildcard or names), the version and nonce last sent, and
//! whether a request is waiting for an answer. A type is answered when a request asks for it
//! (initial request, changed names) or when its content version differs from the version
//! last sent — so after a NACK nothing is resent until the configuration changes, and an
//! unchanged type is never resent. After every CDS response the EDS response is resent even
//! if unchanged: Envoy re-warms a changed EDS cluster and holds the CDS ACK until it receives
//! that cluster's endpoints (envoy-xds-notes pitfall 1).

use std::collections::BTreeSet;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;

use super::ack::{SotwRequest, classify_sotw};
use super::cache::Cache;
use super::resources::{Generated, Kind, NameSet, SotwBody, View};
use super::stream::{Event, Protocol};

#[derive(Debug, Default)]
struct TypeState {
    /// A request for the type arrived.
    subscribed: bool,
    /// Subscribed to everything.
    wildcard: bool,
    /// The client named resources at least once (ends the legacy empty-list wildcard).
    explicit_seen: bool,
    /// Subscribed names (when not wildcard).
    names: Option<Arc<NameSet>>,
    /// A request waits for an answer.
    needs_response: bool,
    /// Nonce and version of the last response.
    sent: Option<(String, Arc<str>)>,
}

/// One SotW stream's protocol state.
#[derive(Debug, Default)]
pub struct Sotw {
    types: [TypeState; 4],
    nonce: u64,
    /// NDS (only streams that ask for it).
    nds: super::nds::SotwState,
}

impl Protocol for Sotw {
    type Req = DiscoveryRequest;
    type Resp = DiscoveryResponse;
    type Pending = SotwPending;
    const NAME: &'static str = "sotw";

    fn size_hint(p: &SotwPending) -> usize {
        p.size_hint()
    }

    fn materialise(p: SotwPending) -> DiscoveryResponse {
        p.materialise()
    }

    fn node(req: &DiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }

    fn on_request(&mut self, req: DiscoveryRequest, cache: &Cache, events: &mut Vec<Event>) {
        if req.type_url == super::nds::NDS_TYPE_URL {
            self.nds.on_request(&req);
            return;
        }
        let Some(kind) = Kind::from_type_url(&req.type_url) else {
            events.push(Event::UnknownType(req.type_url));
            return;
        };
        let st = &mut self.types[kind.index()];
        let latest = st.sent.as_ref().map(|(n, _)| n.as_str());
        match classify_sotw(latest, &req.response_nonce, req.error_detail.as_ref()) {
            SotwRequest::Stale => {
                events.push(Event::Stale {
                    kind,
                    nonce: req.response_nonce,
                });
                return;
            }
            SotwRequest::Initial => st.needs_response = true,
            SotwRequest::Ack => events.push(Event::Ack {
                kind,
                nonce: req.response_nonce.clone(),
            }),
            SotwRequest::Nack(message) => events.push(Event::Nack {
                kind,
                nonce: req.response_nonce.clone(),
                message,
            }),
        }
        let first = !st.subscribed;
        st.subscribed = true;

        // xDS wildcard rules: "*" always means everything; an empty list means everything
        // for CDS/LDS until the client first names resources (legacy wildcard), and nothing
        // for EDS/RDS (Envoy unsubscribes from its last EDS cluster with an empty list).
        let star = req.resource_names.iter().any(|n| n == "*");
        let explicit: Vec<String> = req
            .resource_names
            .into_iter()
            .filter(|n| n != "*")
            .collect();
        if !explicit.is_empty() {
            st.explicit_seen = true;
        }
        let wildcard =
            star || (explicit.is_empty() && !st.explicit_seen && !kind.answers_unknown_names());
        let names = match &st.names {
            Some(current) if current.same_as(&explicit) => Arc::clone(current),
            _ => cache.intern(
                explicit
                    .iter()
                    .map(|n| Arc::from(n.as_str()))
                    .collect::<BTreeSet<_>>(),
            ),
        };
        let changed =
            wildcard != st.wildcard || !st.names.as_ref().is_some_and(|n| Arc::ptr_eq(n, &names));
        if changed && !first {
            st.needs_response = true;
        }
        st.wildcard = wildcard;
        st.names = Some(names);
    }

    fn plan(
        &mut self,
        generated: &Generated,
        cache: &Cache,
        events: &mut Vec<Event>,
    ) -> Vec<SotwPending> {
        let mut out = Vec::new();
        let mut clusters_sent = false;
        for kind in Kind::PUSH_ORDER {
            let st = &mut self.types[kind.index()];
            if !st.subscribed {
                continue;
            }
            let view = View {
                set: Arc::clone(generated.set(kind)),
                names: if st.wildcard { None } else { st.names.clone() },
            };
            let body = cache.sotw_body(&view);
            let changed = st.sent.as_ref().map(|(_, v)| v) != Some(&body.version);
            let rewarm = kind == Kind::Endpoint && clusters_sent && !body.resources.is_empty();
            if !(st.needs_response || changed || rewarm) {
                continue;
            }
            self.nonce += 1;
            let nonce = self.nonce.to_string();
            out.push(SotwPending::Body {
                kind,
                body: Arc::clone(&body),
                nonce: nonce.clone(),
            });
            events.push(Event::Sent {
                kind,
                version: body.version.to_string(),
                nonce: nonce.clone(),
                resources: body.resources.len(),
                removed: 0,
            });
            st.sent = Some((nonce, Arc::clone(&body.version)));
            st.needs_response = false;
            if kind == Kind::Cluster {
                clusters_sent = true;
            }
        }
        // NDS after Envoy's types.
        if let Some(r) = self.nds.flush(&generated.name_table, &mut self.nonce) {
            out.push(SotwPending::Built(r));
        }
        out
    }
}

/// A planned SotW response: a body shared with the generation cache, or a small response
/// built already (NDS).
pub enum SotwPending {
    /// Every resource of `body`.
    Body {
        /// Type.
        kind: Kind,
        /// The resources and version.
        body: Arc<SotwBody>,
        /// Nonce.
        nonce: String,
    },
    /// A built response.
    Built(DiscoveryResponse),
}

/// Bytes a length-delimited field of `len` bytes takes (tag + length varint + payload).
fn field_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

impl SotwPending {
    /// An upper bound of the encoded response's size.
    pub fn size_hint(&self) -> usize {
        match self {
            SotwPending::Body { kind, body, nonce } => {
                let url = kind.type_url().len();
                field_len(body.version.len())
                    + field_len(url)
                    + field_len(nonce.len())
                    + body
                        .resources
                        .iter()
                        .map(|r| field_len(field_len(url) + field_len(r.body.len())))
                        .sum::<usize>()
            }
            SotwPending::Built(r) => prost::Message::encoded_len(r),
        }
    }

    /// The response message.
    pub fn materialise(self) -> DiscoveryResponse {
        match self {
            SotwPending::Body { kind, body, nonce } => DiscoveryResponse {
                version_info: body.version.to_string(),
                resources: body
                    .resources
                    .iter()
                    .map(|r| Any {
                        type_url: kind.type_url().to_string(),
                        value: r.body.clone(),
                    })
                    .collect(),
                type_url: kind.type_url().to_string(),
                nonce,
                ..Default::default()
            },
            SotwPending::Built(r) => r,
        }
    }
}

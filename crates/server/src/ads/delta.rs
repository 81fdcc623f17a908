//! Incremental (Delta) ADS: responses carry only new or changed resources and the names of
//! removed ones.
//!
//! Per type: the subscription (wildcard and/or names, changed by each request's
//! subscribe/unsubscribe lists), what the client holds ([`Known`]: seeded from
//! `initial_resource_versions` on reconnect, then what was sent), and the last nonce. What the
//! client holds is assumed to be what was sent, NACKed or not, so a rejected resource is not
//! resent until it changes (as go-control-plane and Istio do).
//!
//! Pitfall 1 of the envoy-xds-notes applies here too: a changed EDS cluster is re-warmed by
//! Envoy, which then waits for its endpoints but sends no request. Every EDS cluster sent in
//! a CDS response is therefore remembered in `rewarm` and its ClusterLoadAssignment sent
//! again as soon as the client subscribes to it — immediately after the CDS response when it
//! already does, or on the EDS request that follows a reconnect.

use std::collections::BTreeSet;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as XdsResource,
};
use envoy_types::pb::google::protobuf::Any;

use super::ack::{DeltaRequest, classify_delta};
use super::cache::Cache;
use super::resources::{Generated, Kind, Known, NameSet, Resource, View};
use super::stream::{Event, Protocol};

#[derive(Debug, Default)]
struct TypeState {
    /// The initial request arrived.
    subscribed: bool,
    /// Subscribed to everything.
    wildcard: bool,
    /// Explicitly subscribed names.
    names: Option<Arc<NameSet>>,
    /// What the client holds.
    known: Known,
    /// The initial request waits for an answer (sent even when empty).
    needs_response: bool,
    /// Nonce of the last response.
    sent_nonce: Option<String>,
}

/// One Delta stream's protocol state.
#[derive(Debug, Default)]
pub struct Delta {
    types: [TypeState; 4],
    nonce: u64,
    /// EDS clusters sent in CDS responses whose endpoints must be (re)sent.
    rewarm: BTreeSet<Arc<str>>,
}

impl Protocol for Delta {
    type Req = DeltaDiscoveryRequest;
    type Resp = DeltaDiscoveryResponse;
    const NAME: &'static str = "delta";

    fn node(req: &DeltaDiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }

    fn on_request(&mut self, req: DeltaDiscoveryRequest, cache: &Cache, events: &mut Vec<Event>) {
        let Some(kind) = Kind::from_type_url(&req.type_url) else {
            events.push(Event::UnknownType(req.type_url));
            return;
        };
        let st = &mut self.types[kind.index()];
        let first = !st.subscribed;
        match classify_delta(
            first,
            st.sent_nonce.as_deref(),
            &req.response_nonce,
            req.error_detail.as_ref(),
        ) {
            DeltaRequest::Initial => {
                st.subscribed = true;
                st.needs_response = true;
                st.known = Known {
                    base: None,
                    overrides: req
                        .initial_resource_versions
                        .iter()
                        .map(|(n, v)| (Arc::from(n.as_str()), Some(Arc::from(v.as_str()))))
                        .collect(),
                };
                // Legacy wildcard: a first request naming nothing, for CDS/LDS.
                st.wildcard =
                    req.resource_names_subscribe.is_empty() && !kind.answers_unknown_names();
            }
            DeltaRequest::Subscription => {}
            DeltaRequest::Stale => events.push(Event::Stale {
                kind,
                nonce: req.response_nonce.clone(),
            }),
            DeltaRequest::Ack => events.push(Event::Ack {
                kind,
                nonce: req.response_nonce.clone(),
            }),
            DeltaRequest::Nack(message) => events.push(Event::Nack {
                kind,
                nonce: req.response_nonce.clone(),
                message,
            }),
        }

        let subscribe = &req.resource_names_subscribe;
        let unsubscribe = &req.resource_names_unsubscribe;
        if subscribe.iter().any(|n| n == "*") {
            st.wildcard = true;
        }
        if unsubscribe.iter().any(|n| n == "*") {
            st.wildcard = false;
        }
        let old = st.names.clone();
        if !subscribe.is_empty() || !unsubscribe.is_empty() || old.is_none() {
            let mut names = old.as_ref().map(|n| n.names.clone()).unwrap_or_default();
            for n in subscribe.iter().filter(|n| *n != "*") {
                names.insert(Arc::from(n.as_str()));
            }
            for n in unsubscribe.iter().filter(|n| *n != "*") {
                names.remove(n.as_str());
            }
            st.names = Some(cache.intern(names));
        }
        // The client drops what it unsubscribes from: forget it, so that subscribing again
        // resends it. A pure unsubscribe from the exact view last sent just narrows that view
        // (keeping the diff shareable between streams).
        if !unsubscribe.is_empty() {
            let narrows = subscribe.is_empty()
                && st.known.overrides.is_empty()
                && match (&st.known.base, &old) {
                    (Some(b), Some(o)) => b.names.as_ref().is_some_and(|bn| Arc::ptr_eq(bn, o)),
                    _ => false,
                };
            match (&mut st.known.base, &st.names) {
                (Some(base), Some(names)) if narrows => base.names = Some(Arc::clone(names)),
                _ => {
                    for n in unsubscribe.iter().filter(|n| *n != "*") {
                        st.known.overrides.insert(Arc::from(n.as_str()), None);
                    }
                }
            }
        }
    }

    fn flush(
        &mut self,
        generated: &Generated,
        cache: &Cache,
        events: &mut Vec<Event>,
    ) -> Vec<DeltaDiscoveryResponse> {
        let mut out = Vec::new();
        for kind in Kind::PUSH_ORDER {
            let st = &mut self.types[kind.index()];
            if !st.subscribed {
                continue;
            }
            let desired = View {
                set: Arc::clone(generated.set(kind)),
                names: if st.wildcard { None } else { st.names.clone() },
            };
            let diff = cache.diff(&st.known, &desired);
            let mut updates: Vec<Arc<Resource>> = Vec::new();
            if kind == Kind::Endpoint && !self.rewarm.is_empty() {
                let clusters = generated.set(Kind::Cluster);
                self.rewarm.retain(|n| clusters.entries.contains_key(n));
                let extra: Vec<Arc<Resource>> = self
                    .rewarm
                    .iter()
                    .filter(|n| {
                        diff.updates
                            .binary_search_by(|r| r.name.as_ref().cmp(n.as_ref()))
                            .is_err()
                    })
                    .filter_map(|n| desired.get(n))
                    .collect();
                self.rewarm.retain(|n| !desired.in_scope(n));
                if !extra.is_empty() {
                    updates = diff.updates.iter().cloned().chain(extra).collect();
                    updates.sort_by(|a, b| a.name.cmp(&b.name));
                }
            }
            let updates: &[Arc<Resource>] = if updates.is_empty() {
                &diff.updates
            } else {
                &updates
            };
            let send = !updates.is_empty() || !diff.removed.is_empty() || st.needs_response;
            st.known = Known::exactly(desired);
            if !send {
                continue;
            }
            self.nonce += 1;
            let nonce = self.nonce.to_string();
            let version = generated.snapshot_version.to_string();
            out.push(DeltaDiscoveryResponse {
                system_version_info: version.clone(),
                resources: updates
                    .iter()
                    .map(|r| XdsResource {
                        name: r.name.to_string(),
                        version: r.version.to_string(),
                        resource: Some(Any {
                            type_url: kind.type_url().to_string(),
                            value: r.body.clone(),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                type_url: kind.type_url().to_string(),
                removed_resources: diff.removed.iter().map(|n| n.to_string()).collect(),
                nonce: nonce.clone(),
                ..Default::default()
            });
            events.push(Event::Sent {
                kind,
                version,
                nonce: nonce.clone(),
                resources: updates.len(),
                removed: diff.removed.len(),
            });
            st.sent_nonce = Some(nonce);
            st.needs_response = false;
            if kind == Kind::Cluster {
                self.rewarm.extend(
                    updates
                        .iter()
                        .filter(|r| r.eds_cluster)
                        .map(|r| Arc::clone(&r.name)),
                );
            }
        }
        out
    }
}

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
//!
//! Large responses are split ([`max_response_bytes`], 256 KiB by default): the resources and
//! removed names due for one type go out as several responses of at most that encoded size,
//! each with its own nonce, all in push order (every CDS chunk before the first EDS one). The
//! chunks of one push form a group: a NACK of any chunk is a NACK of the push (recorded once,
//! and the last chunk's ACK then does not count as an ACK); the push is accepted when the last
//! chunk is ACKed with no chunk NACKed. ACKs of earlier chunks change nothing. Why: tonic 0.14
//! encodes each response into a per-stream `BytesMut` that keeps an allocation as large as the
//! largest response for the life of the stream (`split_to` + `freeze` in its
//! `codec/encode.rs`), so one full CDS response (3 MB at 1,000 ServiceEntries, 30 MB at 10,000)
//! would cost that much per connected stream; capped responses cap that buffer.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// Nonces of the earlier chunks of the last push (empty when it was one response).
    chunk_nonces: Vec<String>,
    /// A chunk of the last push was NACKed.
    group_nacked: bool,
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
    type Pending = DeltaPending;
    const NAME: &'static str = "delta";

    fn size_hint(p: &DeltaPending) -> usize {
        p.size_hint()
    }

    fn materialise(p: DeltaPending) -> DeltaDiscoveryResponse {
        p.materialise()
    }

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
        let earlier_chunk = !first && st.chunk_nonces.contains(&req.response_nonce);
        let class = if earlier_chunk {
            // An earlier chunk of the last push: its NACK is the push's NACK; its ACK says
            // nothing until the last chunk is ACKed.
            match &req.error_detail {
                Some(_) => classify_delta(
                    false,
                    Some(&req.response_nonce),
                    &req.response_nonce,
                    req.error_detail.as_ref(),
                ),
                None => DeltaRequest::Subscription,
            }
        } else {
            classify_delta(
                first,
                st.sent_nonce.as_deref(),
                &req.response_nonce,
                req.error_detail.as_ref(),
            )
        };
        let class = match class {
            // Already reported for this push.
            DeltaRequest::Nack(_) if st.group_nacked => DeltaRequest::Subscription,
            DeltaRequest::Nack(m) => {
                st.group_nacked = true;
                DeltaRequest::Nack(m)
            }
            // The last chunk's ACK after a NACK of another chunk is not an ACK of the push.
            DeltaRequest::Ack if st.group_nacked => DeltaRequest::Subscription,
            other => other,
        };
        match class {
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

    fn plan(
        &mut self,
        generated: &Generated,
        cache: &Cache,
        events: &mut Vec<Event>,
    ) -> Vec<DeltaPending> {
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
            let version = generated.snapshot_version.to_string();
            let limit = max_response_bytes();
            st.chunk_nonces.clear();
            st.group_nacked = false;
            let mut last_nonce = String::new();
            for (n, (u, r)) in chunks(kind, updates, &diff.removed, limit)
                .into_iter()
                .enumerate()
            {
                if n > 0 {
                    st.chunk_nonces.push(std::mem::take(&mut last_nonce));
                }
                self.nonce += 1;
                let nonce = self.nonce.to_string();
                let (updates, removed) = (&updates[u], &diff.removed[r]);
                out.push(DeltaPending {
                    kind,
                    version: version.clone(),
                    nonce: nonce.clone(),
                    updates: updates.to_vec(),
                    removed: removed.to_vec(),
                });
                events.push(Event::Sent {
                    kind,
                    version: version.clone(),
                    nonce: nonce.clone(),
                    resources: updates.len(),
                    removed: removed.len(),
                });
                last_nonce = nonce;
            }
            st.sent_nonce = Some(last_nonce);
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

/// A planned Delta response: the resources (shared with the generation) and removed names of
/// one chunk. Materialising copies the bodies into a [`DeltaDiscoveryResponse`].
pub struct DeltaPending {
    kind: Kind,
    version: String,
    nonce: String,
    updates: Vec<Arc<Resource>>,
    removed: Vec<Arc<str>>,
}

impl DeltaPending {
    /// An upper bound of the encoded response's size.
    pub fn size_hint(&self) -> usize {
        let type_url = self.kind.type_url().len();
        let header =
            field_len(self.version.len()) + field_len(type_url) + field_len(self.nonce.len());
        header
            + self
                .updates
                .iter()
                .map(|r| resource_len(self.kind, r))
                .sum::<usize>()
            + self
                .removed
                .iter()
                .map(|n| field_len(n.len()))
                .sum::<usize>()
    }

    /// The response message.
    pub fn materialise(self) -> DeltaDiscoveryResponse {
        let type_url = self.kind.type_url();
        DeltaDiscoveryResponse {
            system_version_info: self.version,
            resources: self
                .updates
                .iter()
                .map(|r| XdsResource {
                    name: r.name.to_string(),
                    version: r.version.to_string(),
                    resource: Some(Any {
                        type_url: type_url.to_string(),
                        value: r.body.clone(),
                    }),
                    ..Default::default()
                })
                .collect(),
            type_url: type_url.to_string(),
            removed_resources: self.removed.iter().map(|n| n.to_string()).collect(),
            nonce: self.nonce,
            ..Default::default()
        }
    }
}

/// Default of [`max_response_bytes`].
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 << 10;

static MAX_RESPONSE_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_RESPONSE_BYTES);

/// The encoded size above which a Delta push of one type is split into several responses
/// (a single resource larger than this still goes out whole, alone in its response).
pub fn max_response_bytes() -> usize {
    MAX_RESPONSE_BYTES.load(Ordering::Relaxed)
}

/// Sets [`max_response_bytes`] for the whole process (benchmarks and experiments; at least
/// 1 KiB). Streams use the new value from their next push.
pub fn set_max_response_bytes(bytes: usize) {
    MAX_RESPONSE_BYTES.store(bytes.max(1 << 10), Ordering::Relaxed);
}

/// Bytes a length-delimited field of `len` bytes takes (tag + length varint + payload).
fn field_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// The encoded size of `r` as an entry of `DeltaDiscoveryResponse.resources`.
fn resource_len(kind: Kind, r: &Resource) -> usize {
    let any = field_len(kind.type_url().len()) + field_len(r.body.len());
    field_len(field_len(r.name.len()) + field_len(r.version.len()) + field_len(any))
}

/// Splits one type's push into response-sized ranges of `updates` and `removed`: each range
/// pair (updates first, then removed names) encodes to at most `limit` bytes of entries, except
/// that a single entry above `limit` forms a chunk by itself. Always at least one (possibly
/// empty) chunk.
fn chunks(
    kind: Kind,
    updates: &[Arc<Resource>],
    removed: &[Arc<str>],
    limit: usize,
) -> Vec<(Range<usize>, Range<usize>)> {
    let sizes = updates
        .iter()
        .map(|r| resource_len(kind, r))
        .chain(removed.iter().map(|n| field_len(n.len())));
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, size) in sizes.enumerate() {
        if used > 0 && used + size > limit {
            out.push(start..i);
            (start, used) = (i, 0);
        }
        used += size;
    }
    let total = updates.len() + removed.len();
    if start < total || out.is_empty() {
        out.push(start..total);
    }
    let n = updates.len();
    out.into_iter()
        .map(|c| {
            (
                c.start.min(n)..c.end.min(n),
                c.start.max(n) - n..c.end.max(n) - n,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use entryway_xds::generator::ProxyConfig;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        ClusterDiscoveryType, DiscoveryType,
    };
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use envoy_types::pb::google::rpc::Status as RpcStatus;
    use prost::Message;

    fn cluster_names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                format!(
                    "outbound|{}||svc-{i:05}.a-rather-long-namespace.example.com",
                    8000 + i % 100
                )
            })
            .collect()
    }

    /// `n` EDS clusters and their (padded) load assignments.
    fn config(n: usize) -> ProxyConfig {
        let names = cluster_names(n);
        ProxyConfig {
            clusters: names
                .iter()
                .map(|name| Cluster {
                    name: name.clone(),
                    alt_stat_name: format!("{name}-{}", "x".repeat(200)),
                    cluster_discovery_type: Some(ClusterDiscoveryType::Type(
                        DiscoveryType::Eds as i32,
                    )),
                    ..Default::default()
                })
                .collect(),
            endpoints: names
                .iter()
                .map(|name| ClusterLoadAssignment {
                    cluster_name: name.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn subscribe(kind: Kind, names: &[String]) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: kind.type_url().to_string(),
            resource_names_subscribe: names.to_vec(),
            ..Default::default()
        }
    }

    fn answer(r: &DeltaDiscoveryResponse, error: Option<&str>) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            error_detail: error.map(|m| RpcStatus {
                code: 3,
                message: m.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn chunk_sizes_are_exact_and_within_the_limit() {
        let g = Generated::from_messages(1, &config(700), None);
        let updates: Vec<Arc<Resource>> = g.set(Kind::Cluster).entries.values().cloned().collect();
        let removed: Vec<Arc<str>> = (0..3000)
            .map(|i| Arc::from(format!("gone-{i:06}-{}", "y".repeat(i % 50)).as_str()))
            .collect();
        let limit = 64 << 10;
        let split = chunks(Kind::Cluster, &updates, &removed, limit);
        assert!(split.len() > 4, "{} chunks", split.len());
        let (mut next_u, mut next_r) = (0, 0);
        for (u, r) in &split {
            assert_eq!((u.start, r.start), (next_u, next_r), "contiguous, in order");
            (next_u, next_r) = (u.end, r.end);
            assert!(!u.is_empty() || !r.is_empty(), "no empty chunk");
            // The size estimate is the encoded size of those fields, exactly.
            let resp = DeltaDiscoveryResponse {
                resources: updates[u.clone()]
                    .iter()
                    .map(|r| XdsResource {
                        name: r.name.to_string(),
                        version: r.version.to_string(),
                        resource: Some(Any {
                            type_url: Kind::Cluster.type_url().to_string(),
                            value: r.body.clone(),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                removed_resources: removed[r.clone()].iter().map(|n| n.to_string()).collect(),
                ..Default::default()
            };
            let estimate: usize = updates[u.clone()]
                .iter()
                .map(|r| resource_len(Kind::Cluster, r))
                .chain(removed[r.clone()].iter().map(|n| field_len(n.len())))
                .sum();
            assert_eq!(resp.encoded_len(), estimate);
            assert!(estimate <= limit, "{estimate} > {limit}");
        }
        assert_eq!(
            (next_u, next_r),
            (updates.len(), removed.len()),
            "everything"
        );
        // Nothing due: one empty chunk (the answer to an initial request).
        assert_eq!(chunks(Kind::Cluster, &[], &[], limit), vec![(0..0, 0..0)]);
        // A resource above the limit goes alone.
        let big = chunks(Kind::Cluster, &updates[..3], &[], 10);
        assert_eq!(big, vec![(0..1, 0..0), (1..2, 0..0), (2..3, 0..0)]);
    }

    #[test]
    fn a_large_push_is_chunked_in_push_order_and_a_nack_of_any_chunk_is_a_nack() {
        let cache = Cache::default();
        let n = 2000;
        let names = cluster_names(n);
        let g = Arc::new(Generated::from_messages(1, &config(n), None));
        let mut d = Delta::default();
        let mut events = Vec::new();
        d.on_request(subscribe(Kind::Cluster, &[]), &cache, &mut events);
        d.on_request(subscribe(Kind::Endpoint, &names), &cache, &mut events);
        assert!(events.is_empty(), "{events:?}");
        let out = d.flush(&g, &cache, &mut events);
        let kinds: Vec<Kind> = out
            .iter()
            .map(|r| Kind::from_type_url(&r.type_url).expect("kind"))
            .collect();
        let cds = kinds.iter().filter(|k| **k == Kind::Cluster).count();
        assert!(cds >= 3, "CDS in several responses: {kinds:?}");
        assert!(
            kinds.windows(2).all(|w| w[0] <= w[1]),
            "every CDS chunk before the EDS ones: {kinds:?}"
        );
        let limit = max_response_bytes();
        for r in &out {
            // Entries within the limit; the rest of the message is a few hundred bytes.
            assert!(r.encoded_len() <= limit + 512, "{} bytes", r.encoded_len());
        }
        let nonces: BTreeSet<&str> = out.iter().map(|r| r.nonce.as_str()).collect();
        assert_eq!(nonces.len(), out.len(), "a nonce per response");
        let got = |k: Kind| -> BTreeSet<String> {
            out.iter()
                .filter(|r| r.type_url == k.type_url())
                .flat_map(|r| r.resources.iter().map(|x| x.name.clone()))
                .collect()
        };
        let want: BTreeSet<String> = names.iter().cloned().collect();
        assert_eq!(got(Kind::Cluster), want);
        assert_eq!(
            got(Kind::Endpoint),
            want,
            "EDS after CDS for every EDS cluster"
        );
        let sent: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e, Event::Sent { .. }))
            .collect();
        assert_eq!(sent.len(), out.len(), "one Sent event per response");
        events.clear();

        let (cds_chunks, eds_chunks): (Vec<_>, Vec<_>) = out
            .iter()
            .partition(|r| r.type_url == Kind::Cluster.type_url());
        // CDS: earlier chunks ACKed (nothing yet), the second NACKed (a NACK), the last
        // ACKed (not an ACK: the push was rejected).
        d.on_request(answer(cds_chunks[0], None), &cache, &mut events);
        assert!(events.is_empty(), "{events:?}");
        d.on_request(
            answer(cds_chunks[1], Some("bad cluster")),
            &cache,
            &mut events,
        );
        assert_eq!(
            events,
            vec![Event::Nack {
                kind: Kind::Cluster,
                nonce: cds_chunks[1].nonce.clone(),
                message: "bad cluster".into(),
            }]
        );
        events.clear();
        for r in &cds_chunks[2..] {
            d.on_request(answer(r, None), &cache, &mut events);
        }
        assert!(events.is_empty(), "no ACK after a chunk's NACK: {events:?}");
        // EDS: every chunk ACKed, only the last counts.
        for r in &eds_chunks {
            d.on_request(answer(r, None), &cache, &mut events);
        }
        assert_eq!(
            events,
            vec![Event::Ack {
                kind: Kind::Endpoint,
                nonce: eds_chunks[eds_chunks.len() - 1].nonce.clone(),
            }]
        );
        events.clear();
        // Answers to an earlier push's chunks are stale once a new push went out.
        let mut cfg = config(n);
        cfg.clusters.truncate(n / 2);
        cfg.endpoints.truncate(n / 2);
        let g2 = Arc::new(Generated::from_messages(2, &cfg, Some(&g)));
        let out2 = d.flush(&g2, &cache, &mut events);
        events.clear();
        assert!(!out2.is_empty());
        let removed: usize = out2
            .iter()
            .filter(|r| r.type_url == Kind::Cluster.type_url())
            .map(|r| r.removed_resources.len())
            .sum();
        assert_eq!(removed, n / 2);
        d.on_request(answer(cds_chunks[0], Some("late")), &cache, &mut events);
        assert_eq!(
            events,
            vec![Event::Stale {
                kind: Kind::Cluster,
                nonce: cds_chunks[0].nonce.clone(),
            }]
        );
        events.clear();
        let last_cds = out2
            .iter()
            .rfind(|r| r.type_url == Kind::Cluster.type_url())
            .expect("a CDS response");
        d.on_request(answer(last_cds, None), &cache, &mut events);
        assert_eq!(
            events,
            vec![Event::Ack {
                kind: Kind::Cluster,
                nonce: last_cds.nonce.clone(),
            }],
            "a new push is ACKed again"
        );
    }
}

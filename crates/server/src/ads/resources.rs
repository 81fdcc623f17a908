//! One proxy's generated configuration in the form ADS sends it: per type, resources by name,
//! each encoded once (canonically, see [`super::canonical`]) with a content version; plus the
//! views and diffs the two protocols are built from.
//!
//! Everything here is immutable and shared through `Arc`s: every stream of proxies with the
//! same identity holds the same [`Generated`], and a stream remembers what its client has as a
//! [`View`] into one (two pointers), not as a copy of thousands of names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use entryway_xds::generator::{EncodedConfig, EncodedResource};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use prost::Message;

use super::canonical::{FNV_OFFSET, canonicalize, fnv1a, version_of};

/// The four resource types Entryway serves, in push order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// CDS: `envoy.config.cluster.v3.Cluster`.
    Cluster,
    /// EDS: `envoy.config.endpoint.v3.ClusterLoadAssignment`.
    Endpoint,
    /// LDS: `envoy.config.listener.v3.Listener`.
    Listener,
    /// RDS: `envoy.config.route.v3.RouteConfiguration`.
    Route,
}

impl Kind {
    /// CDS → EDS → LDS → RDS: clusters before the endpoints they need, listeners before the
    /// routes they name (the xDS "eventual consistency considerations" order).
    pub const PUSH_ORDER: [Kind; 4] = [Kind::Cluster, Kind::Endpoint, Kind::Listener, Kind::Route];

    /// Type URL.
    pub fn type_url(self) -> &'static str {
        match self {
            Kind::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            Kind::Endpoint => "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            Kind::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            Kind::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        }
    }

    /// The kind of a type URL.
    pub fn from_type_url(url: &str) -> Option<Kind> {
        Kind::PUSH_ORDER.into_iter().find(|k| k.type_url() == url)
    }

    /// Metric label: `cds`, `eds`, `lds`, `rds`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Cluster => "cds",
            Kind::Endpoint => "eds",
            Kind::Listener => "lds",
            Kind::Route => "rds",
        }
    }

    /// Index into per-kind arrays (push order).
    pub fn index(self) -> usize {
        self as usize
    }

    fn full_name(self) -> &'static str {
        self.type_url()
            .strip_prefix("type.googleapis.com/")
            .unwrap_or(self.type_url())
    }

    /// CDS and LDS are subscribed to as a whole (Envoy sends no names, pitfall 5); EDS and
    /// RDS by name, and a name the proxy asks for but that does not exist is answered with an
    /// empty resource so the cluster or listener waiting for it can finish warming (as Istio
    /// does for EDS).
    pub fn answers_unknown_names(self) -> bool {
        matches!(self, Kind::Endpoint | Kind::Route)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One encoded resource.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    /// Resource name (cluster name for a ClusterLoadAssignment).
    pub name: Arc<str>,
    /// Content version: the hash of `body`.
    pub version: Arc<str>,
    /// Canonical protobuf encoding.
    pub body: Vec<u8>,
    /// A cluster of type EDS (its endpoints must be resent after it changes; pitfall 1).
    pub eds_cluster: bool,
}

impl Resource {
    /// A resource from its canonical encoding (what the generator produces).
    fn new(name: Arc<str>, body: Vec<u8>, eds_cluster: bool) -> Resource {
        Resource {
            version: version_of(&body).into(),
            name,
            body,
            eds_cluster,
        }
    }

    /// The empty resource answering a request for an unknown EDS or RDS name.
    pub fn placeholder(kind: Kind, name: &str) -> Option<Arc<Resource>> {
        let raw = match kind {
            Kind::Endpoint => ClusterLoadAssignment {
                cluster_name: name.to_string(),
                ..Default::default()
            }
            .encode_to_vec(),
            Kind::Route => RouteConfiguration {
                name: name.to_string(),
                ..Default::default()
            }
            .encode_to_vec(),
            Kind::Cluster | Kind::Listener => return None,
        };
        let body = canonicalize(kind.full_name(), &raw).unwrap_or(raw);
        Some(Arc::new(Resource::new(name.into(), body, false)))
    }
}

/// All resources of one kind for one proxy.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceSet {
    /// Which kind.
    pub kind: Kind,
    /// By name.
    pub entries: BTreeMap<Arc<str>, Arc<Resource>>,
    /// Hash of every (name, version): equal sets have equal versions.
    pub version: Arc<str>,
}

impl ResourceSet {
    fn new(kind: Kind, entries: BTreeMap<Arc<str>, Arc<Resource>>) -> ResourceSet {
        let version = list_version(entries.values());
        ResourceSet {
            kind,
            entries,
            version,
        }
    }

    /// An empty set.
    pub fn empty(kind: Kind) -> Arc<ResourceSet> {
        Arc::new(ResourceSet::new(kind, BTreeMap::new()))
    }
}

/// The version of a list of resources (SotW `version_info`).
pub fn list_version<'a>(resources: impl IntoIterator<Item = &'a Arc<Resource>>) -> Arc<str> {
    let mut h = FNV_OFFSET;
    for r in resources {
        h = fnv1a(h, r.name.as_bytes());
        h = fnv1a(h, &[0]);
        h = fnv1a(h, r.version.as_bytes());
        h = fnv1a(h, &[0]);
    }
    format!("{h:016x}").into()
}

/// One proxy's configuration at one snapshot version.
#[derive(Debug)]
pub struct Generated {
    /// The snapshot it was generated from.
    pub snapshot_version: u64,
    /// Per kind, in [`Kind::PUSH_ORDER`].
    pub sets: [Arc<ResourceSet>; 4],
    /// The DNS name table (NDS), empty until [`super::cache::Cache::get`] sets it.
    pub name_table: Arc<super::nds::NdsBody>,
}

impl Generated {
    /// The resources of `cfg` (canonical bytes, see [`entryway_xds::generator`]). Resources
    /// (and whole sets) equal to those of `previous` are shared with it rather than stored
    /// twice.
    pub fn build(
        snapshot_version: u64,
        cfg: EncodedConfig,
        previous: Option<&Generated>,
    ) -> Generated {
        let EncodedConfig {
            listeners,
            routes,
            clusters,
            endpoints,
        } = cfg;
        let prev = |k: Kind| previous.map(|p| &p.sets[k.index()]);
        Generated {
            snapshot_version,
            sets: [
                set_of(Kind::Cluster, clusters, prev(Kind::Cluster)),
                set_of(Kind::Endpoint, endpoints, prev(Kind::Endpoint)),
                set_of(Kind::Listener, listeners, prev(Kind::Listener)),
                set_of(Kind::Route, routes, prev(Kind::Route)),
            ],
            name_table: previous
                .map_or_else(super::nds::NdsBody::empty, |p| Arc::clone(&p.name_table)),
        }
    }

    /// [`Generated::build`] of configuration messages (tests and benchmarks that build or
    /// change messages themselves), encoded canonically first.
    pub fn from_messages(
        snapshot_version: u64,
        cfg: &entryway_xds::generator::ProxyConfig,
        previous: Option<&Generated>,
    ) -> Generated {
        Generated::build(
            snapshot_version,
            entryway_xds::generator::encode(cfg),
            previous,
        )
    }

    /// The set of one kind.
    pub fn set(&self, kind: Kind) -> &Arc<ResourceSet> {
        &self.sets[kind.index()]
    }
}

fn set_of(
    kind: Kind,
    items: Vec<EncodedResource>,
    previous: Option<&Arc<ResourceSet>>,
) -> Arc<ResourceSet> {
    let mut entries = BTreeMap::new();
    for item in items {
        let fresh = Resource::new(item.name.as_str().into(), item.bytes, item.eds);
        let r = match previous.and_then(|p| p.entries.get(item.name.as_str())) {
            Some(old) if **old == fresh => Arc::clone(old),
            _ => Arc::new(fresh),
        };
        entries.insert(Arc::clone(&r.name), r);
    }
    let set = ResourceSet::new(kind, entries);
    match previous {
        Some(p) if **p == set => Arc::clone(p),
        _ => Arc::new(set),
    }
}

/// An interned set of subscribed names (streams with the same subscription share one).
#[derive(Debug, PartialEq, Eq)]
pub struct NameSet {
    /// The names.
    pub names: BTreeSet<Arc<str>>,
    /// Hash of the names (interning key).
    pub hash: u64,
}

impl NameSet {
    /// A set with its hash.
    pub fn new(names: BTreeSet<Arc<str>>) -> NameSet {
        let mut h = FNV_OFFSET;
        for n in &names {
            h = fnv1a(h, n.as_bytes());
            h = fnv1a(h, &[0]);
        }
        NameSet { names, hash: h }
    }

    /// True when `names` (without repetitions) are exactly these names; a fast check that
    /// does not allocate. A list with repeated names answers `false`; callers then build and
    /// intern the set, which finds the same one.
    pub fn same_as(&self, names: &[String]) -> bool {
        names.len() == self.names.len() && names.iter().all(|n| self.names.contains(n.as_str()))
    }
}

/// What a client subscribes to (or holds) of one kind: a resource set seen through either all
/// its names (`names: None`, a wildcard subscription) or an explicit list of names.
#[derive(Debug, Clone)]
pub struct View {
    /// The resources.
    pub set: Arc<ResourceSet>,
    /// The names, `None` for all.
    pub names: Option<Arc<NameSet>>,
}

impl View {
    /// Identity of the view for memo keys: the addresses of its parts (memo entries keep the
    /// `Arc`s alive, so an address is never reused while its entry exists).
    pub fn key(&self) -> (usize, usize) {
        (
            Arc::as_ptr(&self.set) as usize,
            self.names.as_ref().map_or(0, |n| Arc::as_ptr(n) as usize),
        )
    }

    /// True for the same set and names (by identity).
    pub fn same(&self, other: &View) -> bool {
        self.key() == other.key()
    }

    /// True when `name` is in the view's scope (subscribed).
    pub fn in_scope(&self, name: &str) -> bool {
        self.names.as_ref().is_none_or(|n| n.names.contains(name))
    }

    /// The resource named `name`, a placeholder for an unknown subscribed EDS/RDS name, or
    /// `None`.
    pub fn get(&self, name: &str) -> Option<Arc<Resource>> {
        if !self.in_scope(name) {
            return None;
        }
        match self.set.entries.get(name) {
            Some(r) => Some(Arc::clone(r)),
            None if self.names.is_some() => Resource::placeholder(self.set.kind, name),
            None => None,
        }
    }

    /// Every resource of the view, by name.
    pub fn resources(&self) -> Vec<Arc<Resource>> {
        match &self.names {
            None => self.set.entries.values().cloned().collect(),
            Some(names) => names.names.iter().filter_map(|n| self.get(n)).collect(),
        }
    }

    /// Names the view holds.
    fn names(&self) -> Box<dyn Iterator<Item = &Arc<str>> + '_> {
        match &self.names {
            None => Box::new(self.set.entries.keys()),
            Some(n) => Box::new(n.names.iter()),
        }
    }
}

/// A SotW response body: every resource of a view and the view's version.
#[derive(Debug)]
pub struct SotwBody {
    /// `version_info`.
    pub version: Arc<str>,
    /// The resources.
    pub resources: Vec<Arc<Resource>>,
}

impl SotwBody {
    /// The body of `view`.
    pub fn of(view: &View) -> SotwBody {
        if view.names.is_none() {
            return SotwBody {
                version: Arc::clone(&view.set.version),
                resources: view.resources(),
            };
        }
        let resources = view.resources();
        SotwBody {
            version: list_version(&resources),
            resources,
        }
    }
}

/// What a Delta client holds of one kind: a view of something sent earlier, except for
/// `overrides` (`Some(version)`: holds that version; `None`: holds nothing).
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// The last view sent in full.
    pub base: Option<View>,
    /// Exceptions to `base`.
    pub overrides: BTreeMap<Arc<str>, Option<Arc<str>>>,
}

impl Known {
    /// Exactly `view`.
    pub fn exactly(view: View) -> Known {
        Known {
            base: Some(view),
            overrides: BTreeMap::new(),
        }
    }

    /// The version of `name` the client holds.
    pub fn version(&self, name: &str) -> Option<Arc<str>> {
        match self.overrides.get(name) {
            Some(v) => v.clone(),
            None => self
                .base
                .as_ref()
                .and_then(|b| b.get(name))
                .map(|r| Arc::clone(&r.version)),
        }
    }
}

/// A Delta response body.
#[derive(Debug, Default)]
pub struct Diff {
    /// New or changed resources.
    pub updates: Vec<Arc<Resource>>,
    /// Names the client holds that are subscribed but no longer exist.
    pub removed: Vec<Arc<str>>,
}

impl Diff {
    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty() && self.removed.is_empty()
    }

    /// What turns `known` into `desired`.
    pub fn between(known: &Known, desired: &View) -> Diff {
        if known.overrides.is_empty()
            && let Some(base) = &known.base
            && base.same(desired)
        {
            return Diff::default();
        }
        let updates = desired
            .resources()
            .into_iter()
            .filter(|r| known.version(&r.name).as_deref() != Some(&*r.version))
            .collect();
        let mut candidates: BTreeSet<&Arc<str>> = known.overrides.keys().collect();
        if let Some(base) = &known.base {
            candidates.extend(base.names());
        }
        let removed = candidates
            .into_iter()
            .filter(|n| {
                desired.in_scope(n) && desired.get(n).is_none() && known.version(n).is_some()
            })
            .cloned()
            .collect();
        Diff { updates, removed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use prost::Message;

    fn res(kind: Kind, name: &str, payload: &[u8]) -> Arc<Resource> {
        // A Listener whose name is `name` and whose stat prefix varies with the payload.
        let l = Listener {
            name: name.to_string(),
            stat_prefix: String::from_utf8_lossy(payload).into_owned(),
            ..Default::default()
        };
        let _ = kind;
        Arc::new(Resource::new(name.into(), l.encode_to_vec(), false))
    }

    fn set(kind: Kind, items: &[(&str, &[u8])]) -> Arc<ResourceSet> {
        Arc::new(ResourceSet::new(
            kind,
            items
                .iter()
                .map(|(n, p)| (Arc::from(*n), res(kind, n, p)))
                .collect(),
        ))
    }

    fn names(ns: &[&str]) -> Arc<NameSet> {
        Arc::new(NameSet::new(ns.iter().map(|n| Arc::from(*n)).collect()))
    }

    fn updated(d: &Diff) -> Vec<&str> {
        d.updates.iter().map(|r| &*r.name).collect()
    }

    fn removed(d: &Diff) -> Vec<&str> {
        d.removed.iter().map(|r| &**r).collect()
    }

    #[test]
    fn wildcard_diff_sends_changes_and_removals() {
        let old = set(Kind::Listener, &[("a", b"1"), ("b", b"1"), ("c", b"1")]);
        let new = set(Kind::Listener, &[("a", b"1"), ("b", b"2"), ("d", b"1")]);
        let known = Known::exactly(View {
            set: old,
            names: None,
        });
        let d = Diff::between(
            &known,
            &View {
                set: new.clone(),
                names: None,
            },
        );
        assert_eq!(updated(&d), vec!["b", "d"]);
        assert_eq!(removed(&d), vec!["c"]);
        let same = Known::exactly(View {
            set: new.clone(),
            names: None,
        });
        assert!(
            Diff::between(
                &same,
                &View {
                    set: new,
                    names: None
                }
            )
            .is_empty()
        );
    }

    #[test]
    fn explicit_names_get_placeholders_and_unsubscribed_names_are_not_removed() {
        let s = set(Kind::Endpoint, &[("a", b"1"), ("b", b"1")]);
        let desired = View {
            set: s.clone(),
            names: Some(names(&["a", "zz"])),
        };
        let d = Diff::between(&Known::default(), &desired);
        assert_eq!(updated(&d), vec!["a", "zz"]);
        let zz = &d.updates[1];
        let cla = ClusterLoadAssignment::decode(zz.body.as_slice()).expect("decodes");
        assert_eq!(cla.cluster_name, "zz");
        assert!(cla.endpoints.is_empty());

        // The client held a and b; it now subscribes to a only: nothing to send or remove.
        let known = Known::exactly(View {
            set: s.clone(),
            names: Some(names(&["a", "b"])),
        });
        let d = Diff::between(
            &known,
            &View {
                set: s,
                names: Some(names(&["a"])),
            },
        );
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn initial_versions_are_honoured() {
        let s = set(Kind::Cluster, &[("a", b"1"), ("b", b"1"), ("c", b"1")]);
        let va = Arc::clone(&s.entries["a"].version);
        let known = Known {
            base: None,
            overrides: BTreeMap::from([
                (Arc::from("a"), Some(va)),
                (Arc::from("b"), Some(Arc::from("stale"))),
                (Arc::from("gone"), Some(Arc::from("1"))),
            ]),
        };
        let d = Diff::between(
            &known,
            &View {
                set: s,
                names: None,
            },
        );
        assert_eq!(updated(&d), vec!["b", "c"]);
        assert_eq!(removed(&d), vec!["gone"]);
    }

    #[test]
    fn sotw_body_versions_follow_content() {
        let a = set(Kind::Route, &[("a", b"1"), ("b", b"1")]);
        let b = set(Kind::Route, &[("a", b"1"), ("b", b"1")]);
        let c = set(Kind::Route, &[("a", b"1"), ("b", b"2")]);
        let v = |s: &Arc<ResourceSet>, n: Option<Arc<NameSet>>| {
            SotwBody::of(&View {
                set: s.clone(),
                names: n,
            })
            .version
        };
        assert_eq!(v(&a, None), v(&b, None));
        assert_ne!(v(&a, None), v(&c, None));
        assert_eq!(v(&a, Some(names(&["a"]))), v(&c, Some(names(&["a"]))));
        assert_ne!(v(&a, Some(names(&["b"]))), v(&c, Some(names(&["b"]))));
    }

    #[test]
    fn name_sets_compare_with_requests() {
        let n = names(&["a", "b"]);
        assert!(n.same_as(&["b".into(), "a".into()]));
        assert!(!n.same_as(&["a".into()]));
        assert!(!n.same_as(&["a".into(), "b".into(), "c".into()]));
    }
}

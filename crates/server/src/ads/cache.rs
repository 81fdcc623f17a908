//! Sharing work between streams.
//!
//! Generating one proxy's configuration from 10,000 ServiceEntries takes tens of
//! milliseconds; doing it for each of 1,000 streams on every change would take tens of
//! seconds. Generation is a pure function of (snapshot, proxy identity), so the cache keeps one
//! [`Generated`] per [`ProxyKey`] and snapshot version, computed once (the first stream to ask
//! generates, on a blocking thread; the others wait for that result). On top of it, SotW
//! bodies and Delta diffs are memoised per (view, view), and subscriptions are interned, so
//! that 1,000 identical streams cost one computation and one copy of each.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use entryway_model::registry::{Proxy, ProxyScope};
use entryway_xds::generator::{ProxyConfig, generate};
use tokio::sync::OnceCell;

use super::resources::{Diff, Generated, Known, NameSet, SotwBody, View};
use crate::snapshot::Snapshot;

/// Post-processing of every generated configuration before it is encoded. Meant for tests
/// (injecting a resource Envoy rejects) and experiments; production leaves it unset.
pub type GenerateHook = Arc<dyn Fn(&Proxy, &Snapshot, &mut ProxyConfig) + Send + Sync>;

/// Everything generation reads from a [`Proxy`]: every field except `id`, which the generator
/// does not read. The exhaustive destructuring in [`ProxyKey::of`] stops the build when
/// `Proxy` gains a field, so a new input cannot be silently left out of the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyKey {
    namespace: String,
    labels: BTreeMap<String, String>,
    ips: Vec<IpAddr>,
    dns_capture: bool,
    dns_auto_allocate: bool,
    explicit_proxy: Option<std::net::SocketAddr>,
    service_account: Option<String>,
    inbound_capture: bool,
}

impl ProxyKey {
    /// The key of `proxy`.
    pub fn of(proxy: &Proxy) -> ProxyKey {
        let Proxy {
            id: _,
            namespace,
            labels,
            ips,
            dns_capture,
            dns_auto_allocate,
            explicit_proxy,
            service_account,
            inbound_capture,
        } = proxy;
        ProxyKey {
            namespace: namespace.clone(),
            labels: labels.clone(),
            ips: ips.clone(),
            dns_capture: *dns_capture,
            dns_auto_allocate: *dns_auto_allocate,
            explicit_proxy: *explicit_proxy,
            service_account: service_account.clone(),
            inbound_capture: *inbound_capture,
        }
    }
}

/// Generation failed (a panic in the generator, caught at the blocking task boundary).
#[derive(Debug, Clone, thiserror::Error)]
#[error("generating the configuration of {proxy} for snapshot {version} failed: {reason}")]
pub struct GenerateError {
    /// Node id.
    pub proxy: String,
    /// Snapshot version.
    pub version: u64,
    /// What went wrong.
    pub reason: String,
}

struct Slot {
    version: u64,
    cell: Arc<OnceCell<Arc<Generated>>>,
}

type SotwMemo = HashMap<(usize, usize), (View, Arc<SotwBody>)>;
type DiffMemo = HashMap<((usize, usize), (usize, usize)), (View, View, Arc<Diff>)>;

#[derive(Default)]
struct Memo {
    /// The newest snapshot version seen; memo entries are dropped when it moves.
    version: u64,
    sotw: SotwMemo,
    diffs: DiffMemo,
}

/// Entries kept per memo map before it is cleared regardless of version.
const MEMO_LIMIT: usize = 4096;
/// Snapshot publication times kept.
const SEEN_LIMIT: usize = 64;

/// The per-server cache.
#[derive(Default)]
pub struct Cache {
    slots: Mutex<HashMap<ProxyKey, Slot>>,
    memo: Mutex<Memo>,
    names: Mutex<HashMap<u64, Vec<Weak<NameSet>>>>,
    interned: std::sync::atomic::AtomicU64,
    seen: Mutex<BTreeMap<u64, Instant>>,
    hook: Option<GenerateHook>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Cache {
    /// A cache applying `hook` to every generated configuration.
    pub fn new(hook: Option<GenerateHook>) -> Cache {
        Cache {
            hook,
            ..Cache::default()
        }
    }

    /// When this server first saw snapshot `version` (the start of convergence time). The
    /// first stream to wake up on a new snapshot records it, microseconds after publication.
    pub fn first_seen(&self, version: u64) -> Instant {
        let mut seen = lock(&self.seen);
        let t = *seen.entry(version).or_insert_with(Instant::now);
        while seen.len() > SEEN_LIMIT {
            seen.pop_first();
        }
        t
    }

    /// The configuration of `proxy` at `snapshot`, generated at most once per
    /// (snapshot version, [`ProxyKey`]).
    pub async fn get(
        &self,
        snapshot: &Arc<Snapshot>,
        proxy: &Proxy,
    ) -> Result<Arc<Generated>, GenerateError> {
        let key = ProxyKey::of(proxy);
        let version = snapshot.version;
        let (cell, previous) = {
            let mut slots = lock(&self.slots);
            let newest = slots.values().map(|s| s.version).max().unwrap_or(0);
            let found = match slots.get_mut(&key) {
                Some(s) if s.version == version => (Arc::clone(&s.cell), None),
                Some(s) if s.version < version => {
                    let previous = s.cell.get().cloned();
                    *s = Slot {
                        version,
                        cell: Arc::new(OnceCell::new()),
                    };
                    (Arc::clone(&s.cell), previous)
                }
                // A stream still on an older snapshot than its peers: generate, don't cache.
                Some(_) => (Arc::new(OnceCell::new()), None),
                None => {
                    let cell = Arc::new(OnceCell::new());
                    slots.insert(
                        key,
                        Slot {
                            version,
                            cell: Arc::clone(&cell),
                        },
                    );
                    (cell, None)
                }
            };
            if version > newest {
                // Keys nobody asked about for two versions belong to disconnected proxies (a
                // connected stream asks on every snapshot).
                slots.retain(|_, s| s.version + 1 >= version);
            }
            found
        };
        let generated = cell
            .get_or_try_init(|| async {
                let snapshot = Arc::clone(snapshot);
                let id = proxy.id.clone();
                let proxy = proxy.clone();
                let hook = self.hook.clone();
                tokio::task::spawn_blocking(move || {
                    let scope = ProxyScope::new(&snapshot.registry, &snapshot.mesh, &proxy);
                    let mut cfg = generate(&scope);
                    if let Some(hook) = hook {
                        hook(&proxy, &snapshot, &mut cfg);
                    }
                    let mut g = Generated::build(snapshot.version, &cfg, previous.as_deref());
                    g.name_table =
                        super::nds::build(&scope, previous.as_deref().map(|p| &p.name_table));
                    Arc::new(g)
                })
                .await
                .map_err(|e| GenerateError {
                    proxy: id,
                    version,
                    reason: e.to_string(),
                })
            })
            .await?;
        self.note_version(version);
        Ok(Arc::clone(generated))
    }

    fn note_version(&self, version: u64) {
        let mut memo = lock(&self.memo);
        if version > memo.version {
            memo.version = version;
            memo.sotw.clear();
            memo.diffs.clear();
        }
    }

    /// The interned set of `names`.
    pub fn intern(&self, names: BTreeSet<std::sync::Arc<str>>) -> Arc<NameSet> {
        let set = NameSet::new(names);
        let mut table = lock(&self.names);
        let bucket = table.entry(set.hash).or_default();
        bucket.retain(|w| w.strong_count() > 0);
        if let Some(found) = bucket
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| s.names == set.names)
        {
            return found;
        }
        let set = Arc::new(set);
        bucket.push(Arc::downgrade(&set));
        let n = self
            .interned
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % 1024 == 1023 {
            table.retain(|_, b| {
                b.retain(|w| w.strong_count() > 0);
                !b.is_empty()
            });
        }
        set
    }

    /// The SotW body of `view`, computed once per view.
    pub fn sotw_body(&self, view: &View) -> Arc<SotwBody> {
        let key = view.key();
        if let Some((_, body)) = lock(&self.memo).sotw.get(&key) {
            return Arc::clone(body);
        }
        let body = Arc::new(SotwBody::of(view));
        let mut memo = lock(&self.memo);
        if memo.sotw.len() >= MEMO_LIMIT {
            memo.sotw.clear();
        }
        memo.sotw.insert(key, (view.clone(), Arc::clone(&body)));
        body
    }

    /// The diff from `known` to `desired`; memoised when `known` is exactly a view.
    pub fn diff(&self, known: &Known, desired: &View) -> Arc<Diff> {
        let Some(base) = known.base.as_ref().filter(|_| known.overrides.is_empty()) else {
            return Arc::new(Diff::between(known, desired));
        };
        let key = (base.key(), desired.key());
        if let Some((_, _, d)) = lock(&self.memo).diffs.get(&key) {
            return Arc::clone(d);
        }
        let d = Arc::new(Diff::between(known, desired));
        let mut memo = lock(&self.memo);
        if memo.diffs.len() >= MEMO_LIMIT {
            memo.diffs.clear();
        }
        memo.diffs
            .insert(key, (base.clone(), desired.clone(), Arc::clone(&d)));
        d
    }

    /// Number of cached generation results (for tests and the bench).
    pub fn generated_entries(&self) -> usize {
        lock(&self.slots).len()
    }
}

//! State shared between the ADS server and the admin endpoints.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use entryway_model::registry::Proxy;
use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::store::ConfigStatus;

/// Per resource type, what was sent to and acknowledged by one proxy.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TypeSync {
    /// Version of the last response sent.
    pub sent_version: String,
    /// Nonce of the last response sent.
    pub sent_nonce: String,
    /// Last version the proxy ACKed.
    pub acked_version: String,
    /// Error detail of the last NACK, if the latest response was rejected.
    pub last_nack: Option<String>,
    /// Number of resources in the last response.
    pub resources: usize,
}

/// One connected proxy as `/debug/syncz` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyStatus {
    /// Envoy node id.
    pub node_id: String,
    /// `sotw` or `delta`.
    pub protocol: String,
    /// Namespace from node metadata (or from the identity when the node names none).
    pub namespace: String,
    /// The SPIFFE identity the proxy proved on the secure port; `None` on the plaintext port.
    pub identity: Option<String>,
    /// Snapshot version last pushed.
    pub snapshot_version: u64,
    /// Per type URL.
    pub types: BTreeMap<String, TypeSync>,
}

/// A caller the control plane refused (a certificate request or an xDS stream), as
/// `/debug/syncz` lists it after the connected proxies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// When (milliseconds since the Unix epoch).
    pub at_unix_ms: u64,
    /// `ca` or `xds`.
    pub refused: &'static str,
    /// The caller's address.
    pub peer: Option<String>,
    /// The node id it sent (xDS), bounded.
    pub node_id: Option<String>,
    /// The identity it proved, if any.
    pub identity: Option<String>,
    /// Why it was refused.
    pub reason: String,
}

/// Refusals kept for `/debug/syncz` (the newest).
pub const REFUSALS_KEPT: usize = 64;

/// What ADS and admin share.
#[derive(Debug)]
pub struct Shared {
    /// Counters and histograms for `/metrics`.
    pub metrics: Metrics,
    /// Connected proxies by connection id.
    pub proxies: Mutex<BTreeMap<u64, (Proxy, ProxyStatus)>>,
    /// The latest snapshot.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Accepted and rejected configs with their files, as of the last reload (set by the
    /// store, read by `/debug/configz`).
    pub config_status: RwLock<Arc<ConfigStatus>>,
    /// The latest refusals (at most [`REFUSALS_KEPT`]).
    pub refusals: Mutex<VecDeque<Refusal>>,
}

impl Shared {
    /// Shared state following `snapshot`.
    pub fn new(snapshot: watch::Receiver<Arc<Snapshot>>) -> Arc<Shared> {
        Arc::new(Shared {
            metrics: Metrics::default(),
            proxies: Mutex::new(BTreeMap::new()),
            snapshot,
            config_status: RwLock::new(Arc::new(ConfigStatus::default())),
            refusals: Mutex::new(VecDeque::new()),
        })
    }

    /// Records a refusal: a warning in the log, a metric, and an entry in `/debug/syncz`.
    /// The other streams and callers are not affected.
    pub fn refuse(
        &self,
        refused: &'static str,
        peer: Option<String>,
        node_id: Option<&str>,
        identity: Option<String>,
        reason: String,
    ) {
        let node_id = node_id.map(|n| entryway_contract::identity::bounded(n, 256));
        tracing::warn!(
            service = refused,
            peer = peer.as_deref().unwrap_or("-"),
            node = node_id.as_deref().unwrap_or("-"),
            identity = identity.as_deref().unwrap_or("-"),
            %reason,
            "refused a caller"
        );
        self.metrics.refusals.add(refused, 1);
        let r = Refusal {
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            refused,
            peer,
            node_id,
            identity,
            reason,
        };
        let mut q = match self.refusals.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        };
        if q.len() == REFUSALS_KEPT {
            q.pop_front();
        }
        q.push_back(r);
    }

    /// The refusals kept, oldest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        match self.refusals.lock() {
            Ok(q) => q.iter().cloned().collect(),
            Err(p) => p.into_inner().iter().cloned().collect(),
        }
    }

    /// The config status of the last reload.
    pub fn config_status(&self) -> Arc<ConfigStatus> {
        match self.config_status.read() {
            Ok(s) => Arc::clone(&s),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the config status.
    pub fn set_config_status(&self, status: ConfigStatus) {
        let status = Arc::new(status);
        match self.config_status.write() {
            Ok(mut s) => *s = status,
            Err(poisoned) => *poisoned.into_inner() = status,
        }
    }
}

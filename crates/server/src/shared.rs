//! State shared between the ADS server and the admin endpoints.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

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
    /// Namespace from node metadata.
    pub namespace: String,
    /// Snapshot version last pushed.
    pub snapshot_version: u64,
    /// Per type URL.
    pub types: BTreeMap<String, TypeSync>,
}

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
}

impl Shared {
    /// Shared state following `snapshot`.
    pub fn new(snapshot: watch::Receiver<Arc<Snapshot>>) -> Arc<Shared> {
        Arc::new(Shared {
            metrics: Metrics::default(),
            proxies: Mutex::new(BTreeMap::new()),
            snapshot,
            config_status: RwLock::new(Arc::new(ConfigStatus::default())),
        })
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

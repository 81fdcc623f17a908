//! State shared between the ADS server and the admin endpoints.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use entryway_model::registry::Proxy;
use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

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
}

impl Shared {
    /// Shared state following `snapshot`.
    pub fn new(snapshot: watch::Receiver<Arc<Snapshot>>) -> Arc<Shared> {
        Arc::new(Shared {
            metrics: Metrics::default(),
            proxies: Mutex::new(BTreeMap::new()),
            snapshot,
        })
    }
}

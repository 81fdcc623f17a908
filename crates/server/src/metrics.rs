//! Control-plane metrics, rendered in Prometheus text format by [`crate::admin`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A histogram with fixed millisecond buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    inner: Mutex<HistogramData>,
}

/// The data of a [`Histogram`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HistogramData {
    /// Cumulative counts per upper bound in seconds (Prometheus `le`).
    pub buckets: Vec<(f64, u64)>,
    /// Sum of observations in seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// Bucket bounds in seconds.
pub const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Ok(mut h) = self.inner.lock() {
            if h.buckets.is_empty() {
                h.buckets = BUCKETS.iter().map(|b| (*b, 0)).collect();
            }
            for (le, n) in &mut h.buckets {
                if s <= *le {
                    *n += 1;
                }
            }
            h.sum += s;
            h.count += 1;
        }
    }

    /// A copy of the data.
    pub fn data(&self) -> HistogramData {
        self.inner.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

/// A counter per label value.
#[derive(Debug, Default)]
pub struct LabeledCounter {
    inner: Mutex<BTreeMap<String, u64>>,
}

impl LabeledCounter {
    /// Adds `n` to the counter for `label`.
    pub fn add(&self, label: &str, n: u64) {
        if let Ok(mut m) = self.inner.lock() {
            *m.entry(label.to_string()).or_insert(0) += n;
        }
    }

    /// All values.
    pub fn values(&self) -> BTreeMap<String, u64> {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Every metric of the control plane.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connected ADS streams.
    pub connected_proxies: AtomicI64,
    /// Responses pushed, by type (`cds`, `eds`, `lds`, `rds`).
    pub pushes: LabeledCounter,
    /// NACKs received, by type.
    pub nacks: LabeledCounter,
    /// Documents rejected, by kind.
    pub rejected_configs: LabeledCounter,
    /// Snapshots published.
    pub config_versions: AtomicU64,
    /// xDS connections closed on accept because the connection limit was reached.
    pub xds_connections_refused: AtomicU64,
    /// xDS connections closed because they sent no HTTP/2 preface or no request in time.
    pub xds_connections_timed_out: AtomicU64,
    /// xDS streams ended for a bad request (no node id, undecodable or oversized), by code.
    pub bad_requests: LabeledCounter,
    /// Config reloads abandoned (a path could not be listed, or reading did not finish in
    /// time).
    pub reload_failures: AtomicU64,
    /// Per response pushed (every one, as `pushes` counts them): from what caused it (a
    /// request, or a snapshot seen by the stream) to its hand-over to the transport.
    pub push_time: Histogram,
    /// Time from a config change being read to the proxy ACKing it.
    pub convergence_time: Histogram,
    /// Callers refused, by service (`ca`, `xds`).
    pub refusals: LabeledCounter,
    /// Workload certificates signed by the mesh CA.
    pub certificates_signed: AtomicU64,
}

impl Metrics {
    /// Increments the gauge of connected proxies by `delta`.
    pub fn proxies_delta(&self, delta: i64) {
        self.connected_proxies.fetch_add(delta, Ordering::Relaxed);
    }
}

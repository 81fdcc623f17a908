//! NDS: the DNS name table the control plane computes for this proxy (Istio's
//! `istio.networking.nds.v1.NameTable`, sent over the same ADS connection as Envoy's xDS), and
//! a small state-of-the-world ADS client that subscribes to it with Envoy's node identity,
//! ACKs every response and publishes each table to a [`NameTableHandle`] that the
//! [`crate::dns`] proxy answers from.
//!
//! ```text
//! control plane ──ADS (SotW, NDS type only)──► NdsClient ──► NameTableHandle ──► DnsProxy
//! ```
//!
//! The client reconnects with back-off (100 ms doubling to 5 s) when the stream fails; the last
//! table stays in force meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::bootstrap::XdsAddress;
use crate::mesh::ControlPlane;
pub use entryway_contract::nds::{NDS_TYPE_URL, NameInfo, NameTable};

/// Where the current name table is published. Cloning shares it.
#[derive(Clone, Debug)]
pub struct NameTableHandle {
    tx: Arc<watch::Sender<Option<Arc<NameTable>>>>,
}

impl Default for NameTableHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl NameTableHandle {
    /// A handle with no table yet (the DNS proxy answers SERVFAIL until one arrives, as
    /// Istio's agent does).
    pub fn new() -> Self {
        let (tx, _) = watch::channel(None);
        Self { tx: Arc::new(tx) }
    }

    /// A handle holding `table` (tests, static setups).
    pub fn with_table(table: NameTable) -> Self {
        let h = Self::new();
        h.set(table);
        h
    }

    /// Publishes a new table.
    pub fn set(&self, table: NameTable) {
        self.tx.send_replace(Some(Arc::new(table)));
    }

    /// The current table.
    pub fn get(&self) -> Option<Arc<NameTable>> {
        self.tx.borrow().clone()
    }

    /// Follows changes.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<NameTable>>> {
        self.tx.subscribe()
    }
}

/// The node sent on the NDS stream: the same id and metadata as Envoy's bootstrap (string
/// values, as [`crate::BootstrapOptions`] writes them).
pub fn node(id: &str, metadata: &BTreeMap<String, String>) -> Node {
    Node {
        id: id.to_string(),
        metadata: Some(Struct {
            fields: metadata
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Value {
                            kind: Some(Kind::StringValue(v.clone())),
                        },
                    )
                })
                .collect(),
        }),
        ..Node::default()
    }
}

/// Counters of the client (for tests and status).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NdsStats {
    /// Tables received and applied.
    pub tables: u64,
    /// Responses rejected (NACKed).
    pub rejected: u64,
    /// Streams opened.
    pub connects: u64,
}

/// The running NDS client.
pub struct NdsClient {
    table: NameTableHandle,
    stats: watch::Receiver<NdsStats>,
    task: JoinHandle<()>,
}

impl NdsClient {
    /// Subscribes to NDS at `xds` (plaintext gRPC) as `node` and publishes every table to a
    /// new handle. Runs until [`NdsClient::stop`] or drop.
    pub fn start(xds: &XdsAddress, node: Node) -> NdsClient {
        Self::start_with(
            &ControlPlane::plaintext(xds.clone()),
            node,
            NameTableHandle::new(),
        )
    }

    /// [`NdsClient::start`] through `control_plane` (the secure port when the agent joined
    /// the mesh; always over the agent's marked sockets, so traffic capture never redirects
    /// this stream), publishing to an existing handle.
    pub fn start_with(
        control_plane: &ControlPlane,
        node: Node,
        table: NameTableHandle,
    ) -> NdsClient {
        let (stats_tx, stats) = watch::channel(NdsStats::default());
        let task = tokio::spawn(run(control_plane.clone(), node, table.clone(), stats_tx));
        NdsClient { table, stats, task }
    }

    /// The handle the tables are published to.
    pub fn table(&self) -> NameTableHandle {
        self.table.clone()
    }

    /// Counters.
    pub fn stats(&self) -> NdsStats {
        *self.stats.borrow()
    }

    /// Stops the client.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for NdsClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

async fn run(
    control_plane: ControlPlane,
    node: Node,
    table: NameTableHandle,
    stats: watch::Sender<NdsStats>,
) {
    let uri = format!(
        "{}:{}",
        control_plane.address().host,
        control_plane.address().port
    );
    let mut backoff = BACKOFF_MIN;
    loop {
        match stream_once(&control_plane, &node, &table, &stats).await {
            Ok(()) => {
                info!(%uri, "NDS stream closed by the control plane; reconnecting");
                backoff = BACKOFF_MIN;
            }
            Err(e) => {
                debug!(%uri, error = %e, "NDS stream failed; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn request(
    node: Option<&Node>,
    version: &str,
    nonce: &str,
    error: Option<String>,
) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.to_string(),
        node: node.cloned(),
        resource_names: Vec::new(),
        type_url: NDS_TYPE_URL.to_string(),
        response_nonce: nonce.to_string(),
        error_detail: error.map(|message| RpcStatus {
            code: 3, // INVALID_ARGUMENT
            message,
            details: Vec::new(),
        }),
        ..DiscoveryRequest::default()
    }
}

/// The table carried by an NDS response (one resource; none = empty table).
pub fn decode_response(resp: &DiscoveryResponse) -> Result<NameTable, String> {
    if resp.type_url != NDS_TYPE_URL {
        return Err(format!("unexpected type {}", resp.type_url));
    }
    match resp.resources.as_slice() {
        [] => Ok(NameTable::default()),
        [one] => {
            if one.type_url != NDS_TYPE_URL {
                return Err(format!("resource of type {}", one.type_url));
            }
            NameTable::decode(one.value.as_slice()).map_err(|e| format!("bad NameTable: {e}"))
        }
        many => Err(format!("{} NameTable resources, expected one", many.len())),
    }
}

async fn stream_once(
    control_plane: &ControlPlane,
    node: &Node,
    table: &NameTableHandle,
    stats: &watch::Sender<NdsStats>,
) -> Result<(), String> {
    let mut client = AggregatedDiscoveryServiceClient::new(control_plane.channel());
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(4);
    tx.send(request(Some(node), "", "", None))
        .await
        .map_err(|e| e.to_string())?;
    let mut responses = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    stats.send_modify(|s| s.connects += 1);
    let mut accepted_version = String::new();
    while let Some(resp) = responses.message().await.map_err(|e| e.to_string())? {
        let ack = match decode_response(&resp) {
            Ok(t) => {
                debug!(version = %resp.version_info, hosts = t.table.len(), "name table received");
                table.set(t);
                accepted_version = resp.version_info.clone();
                stats.send_modify(|s| s.tables += 1);
                request(None, &accepted_version, &resp.nonce, None)
            }
            Err(e) => {
                warn!(error = %e, "rejecting an NDS response");
                stats.send_modify(|s| s.rejected += 1);
                request(None, &accepted_version, &resp.nonce, Some(e))
            }
        };
        if tx.send(ack).await.is_err() {
            break;
        }
    }
    Ok(())
}

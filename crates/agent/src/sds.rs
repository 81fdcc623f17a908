//! The agent's local SDS server: Envoy's secrets over gRPC on a Unix socket, as Istio's
//! pilot-agent serves them on `./var/run/secrets/workload-spiffe-uds/socket`.
//!
//! The clusters Entryway generates reference secrets through the static bootstrap cluster
//! `sds-grpc` (see [`crate::bootstrap::SDS_CLUSTER_NAME`]); without an answer they stay
//! warming and Envoy never asks for listeners. [`SdsServer::start`] binds the socket and
//! serves, per requested name, what [`SecretProvider`] builds (names and files: see
//! [`secrets`]).
//!
//! Protocol: `StreamSecrets` (state of the world) and `FetchSecrets`; `DeltaSecrets` answers
//! `UNIMPLEMENTED` (Envoy's SDS config from istiod uses `GRPC`, not `DELTA_GRPC`). Per stream:
//! - the request's `resource_names` say what is sent; a response carries every requested
//!   secret that can be served, with a per-stream version and nonce;
//! - a request whose `response_nonce` is not the last one sent is stale and ignored; an ACK
//!   (same names, current nonce) sends nothing; a NACK (`error_detail`) is logged, counted,
//!   and not retried with the same content;
//! - a name that cannot be served (unknown, unreadable file) is logged as a warning naming it
//!   and the reason, and left out: Envoy keeps waiting for it, as with Istio. A secret that
//!   was served and later fails to read keeps its last good content;
//! - every [`SdsOptions::refresh_interval`] the requested secrets are rebuilt (files read
//!   again) and pushed when their content changed, so rotated certificate files reach Envoy.
//!
//! **Mesh identity:** an agent that joined the mesh serves the certificate the mesh CA signed
//! for it ([`crate::mesh`]), following every rotation ([`SdsServer::start_following`]). An
//! agent without mesh credentials (talking to a control plane on the plaintext port) makes a
//! self-signed root of its own ([`start_for_agent`]); `ISTIO_MUTUAL` to other agents' proxies
//! then fails verification.

pub mod secrets;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};

pub use secrets::{
    DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN, IdentityError, IdentitySource, MeshIdentity,
    SecretError, SecretName, SecretProvider, fixed_identity, spiffe_id,
};

use crate::supervisor::ProxyAgentConfig;

/// Type URL of SDS resources.
pub const SECRET_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// File name of the SDS socket in the agent's work dir.
pub const SDS_SOCKET_FILE: &str = "sds.sock";
/// Default [`SdsOptions::refresh_interval`].
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdsOptions {
    /// How often each stream rebuilds its secrets (re-reading files) and pushes changes.
    pub refresh_interval: Duration,
    /// Where to look for the system CA bundle (`file-root:system`); first existing wins.
    pub system_ca_candidates: Vec<PathBuf>,
}

impl Default for SdsOptions {
    fn default() -> Self {
        Self {
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            system_ca_candidates: secrets::SYSTEM_CA_CANDIDATES
                .iter()
                .map(PathBuf::from)
                .collect(),
        }
    }
}

/// Errors of [`start_for_agent`].
#[derive(Debug, thiserror::Error)]
pub enum SdsError {
    /// The mesh identity could not be made.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The socket could not be bound.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Counters of a running server (for tests and the CLI's status output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SdsStats {
    /// `StreamSecrets` streams opened.
    pub streams: u64,
    /// Responses sent on streams (and `FetchSecrets` answers).
    pub responses: u64,
    /// NACKs received.
    pub nacks: u64,
    /// Requested names that could not be served (counted once per stream and reason).
    pub unservable: u64,
}

#[derive(Debug, Default)]
struct Counters {
    streams: AtomicU64,
    responses: AtomicU64,
    nacks: AtomicU64,
    unservable: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SdsStats {
        SdsStats {
            streams: self.streams.load(Ordering::Relaxed),
            responses: self.responses.load(Ordering::Relaxed),
            nacks: self.nacks.load(Ordering::Relaxed),
            unservable: self.unservable.load(Ordering::Relaxed),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The SDS server; see the module documentation.
pub struct SdsServer;

impl SdsServer {
    /// Binds `socket_path` (creating its directory, replacing a stale socket) and serves
    /// `identity` and file secrets with default options, on the current tokio runtime.
    pub fn start(socket_path: impl Into<PathBuf>, identity: MeshIdentity) -> io::Result<SdsHandle> {
        Self::start_with(socket_path, identity, SdsOptions::default())
    }

    /// [`Self::start`] with options.
    pub fn start_with(
        socket_path: impl Into<PathBuf>,
        identity: MeshIdentity,
        options: SdsOptions,
    ) -> io::Result<SdsHandle> {
        Self::start_following(socket_path, secrets::fixed_identity(identity), options)
    }

    /// [`Self::start_with`] serving the identity in force in `identity`: every rotation is
    /// pushed to every stream that asked for `default` or `ROOTCA`.
    pub fn start_following(
        socket_path: impl Into<PathBuf>,
        identity: IdentitySource,
        options: SdsOptions,
    ) -> io::Result<SdsHandle> {
        let socket_path = socket_path.into();
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("the SDS server needs a tokio runtime: {e}")))?;
        let listener = {
            let _guard = runtime.enter();
            bind(&socket_path)?
        };
        let provider = SecretProvider::following(identity)
            .with_system_ca_candidates(options.system_ca_candidates.clone());
        let counters = Arc::new(Counters::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let service = SdsService {
            provider: Arc::new(provider),
            refresh_interval: options.refresh_interval.max(Duration::from_millis(10)),
            counters: counters.clone(),
            stop: stop_rx.clone(),
        };
        let incoming = UnixListenerStream::new(listener);
        let mut shutdown = stop_rx;
        let path = socket_path.clone();
        let task = runtime.spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(SecretDiscoveryServiceServer::new(service))
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(e) = &result {
                tracing::error!(socket = %path.display(), error = %e, "SDS server failed");
            }
            result.map_err(io::Error::other)
        });
        tracing::info!(socket = %socket_path.display(), "SDS server listening");
        Ok(SdsHandle {
            socket_path,
            stop: stop_tx,
            task: Some(task),
            counters,
        })
    }
}

/// Generates the agent's self-signed mesh identity for `config.namespace` (service account
/// `default`, trust domain `cluster.local`) and serves SDS on
/// [`ProxyAgentConfig::sds_socket_path`], the socket its bootstrap points `sds-grpc` at.
pub fn start_for_agent(config: &ProxyAgentConfig) -> Result<SdsHandle, SdsError> {
    let identity = self_signed_for(config)?;
    Ok(SdsServer::start(config.sds_socket_path(), identity)?)
}

/// Serves `identity` (following its rotations) on [`ProxyAgentConfig::sds_socket_path`].
pub fn start_for_agent_following(
    config: &ProxyAgentConfig,
    identity: IdentitySource,
) -> Result<SdsHandle, SdsError> {
    Ok(SdsServer::start_following(
        config.sds_socket_path(),
        identity,
        SdsOptions::default(),
    )?)
}

/// The self-signed identity of an agent without mesh credentials.
pub fn self_signed_for(config: &ProxyAgentConfig) -> Result<MeshIdentity, SdsError> {
    let identity = MeshIdentity::self_signed(
        &config.trust_domain,
        &config.namespace,
        &config.service_account,
    )?;
    tracing::info!(
        spiffe_id = identity.spiffe_id(),
        "mesh identity from a self-signed root (no mesh credentials: other agents will not trust it)"
    );
    Ok(identity)
}

fn bind(path: &Path) -> io::Result<tokio::net::UnixListener> {
    let ctx = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("{what} SDS socket {}: {e}", path.display()),
        )
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ctx("creating the directory of the", e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A socket left by an earlier agent that did not clean up.
            std::fs::remove_file(path).map_err(|e| ctx("removing the stale", e))?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "SDS socket path {} exists and is not a socket",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ctx("inspecting the", e)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| ctx("binding the", e))?;
    // Secrets: only this user (Envoy runs as the agent's user) may connect.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ctx("restricting the", e))?;
    Ok(listener)
}

/// A running SDS server. [`shutdown`](Self::shutdown) stops it; dropping it stops it too
/// (without waiting) and removes the socket.
#[derive(Debug)]
pub struct SdsHandle {
    socket_path: PathBuf,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<io::Result<()>>>,
    counters: Arc<Counters>,
}

impl SdsHandle {
    /// The socket Envoy's `sds-grpc` cluster must point at.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Counters so far.
    pub fn stats(&self) -> SdsStats {
        self.counters.snapshot()
    }

    /// Ends every stream, stops serving, removes the socket and returns the server's result.
    pub async fn shutdown(mut self) -> io::Result<()> {
        let _ = self.stop.send(true);
        let result = match self.task.take() {
            Some(task) => match task.await {
                Ok(r) => r,
                Err(e) => Err(io::Error::other(format!("SDS server task: {e}"))),
            },
            None => Ok(()),
        };
        let _ = std::fs::remove_file(&self.socket_path);
        result
    }
}

impl Drop for SdsHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            let _ = self.stop.send(true);
            let _ = std::fs::remove_file(&self.socket_path);
        }
    }
}

struct SdsService {
    provider: Arc<SecretProvider>,
    refresh_interval: Duration,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
}

fn to_any(secret: &Secret) -> Any {
    Any {
        type_url: SECRET_TYPE_URL.to_owned(),
        value: secret.encode_to_vec(),
    }
}

fn response(secrets: &BTreeMap<String, Secret>, version: u64) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: version.to_string(),
        resources: secrets.values().map(to_any).collect(),
        type_url: SECRET_TYPE_URL.to_owned(),
        nonce: version.to_string(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl SecretDiscoveryService for SdsService {
    type DeltaSecretsStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;
    type StreamSecretsStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

    async fn delta_secrets(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Err(Status::unimplemented(
            "this SDS server speaks state of the world (api_type GRPC), not DELTA_GRPC",
        ))
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        bump(&self.counters.streams);
        let (tx, rx) = mpsc::channel(4);
        let stream = SotwStream {
            provider: self.provider.clone(),
            counters: self.counters.clone(),
            tx,
            names: Vec::new(),
            sent: None,
            last_good: BTreeMap::new(),
            warned: BTreeMap::new(),
            version: 0,
            node: String::new(),
        };
        tokio::spawn(stream.run(
            request.into_inner(),
            self.refresh_interval,
            self.stop.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let request = request.into_inner();
        let mut served = BTreeMap::new();
        let mut errors = Vec::new();
        for name in &request.resource_names {
            match self.provider.secret(name) {
                Ok(secret) => {
                    served.insert(name.clone(), secret);
                }
                Err(e) => {
                    tracing::warn!(secret = %name, reason = %e.reason, "cannot serve SDS secret");
                    bump(&self.counters.unservable);
                    errors.push(e.to_string());
                }
            }
        }
        if served.is_empty() {
            return Err(Status::not_found(if errors.is_empty() {
                "no secret requested".to_owned()
            } else {
                errors.join("; ")
            }));
        }
        bump(&self.counters.responses);
        Ok(Response::new(response(&served, 1)))
    }
}

/// Resolves once the server is stopping (or its handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One `StreamSecrets` stream.
struct SotwStream {
    provider: Arc<SecretProvider>,
    counters: Arc<Counters>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    /// The names of the last accepted request.
    names: Vec<String>,
    /// What the last response carried (and its version = nonce).
    sent: Option<BTreeMap<String, Secret>>,
    /// The last content built for each name, kept when a later read fails.
    last_good: BTreeMap<String, Secret>,
    /// Reasons already logged per name (warn once per reason, not every refresh).
    warned: BTreeMap<String, String>,
    version: u64,
    node: String,
}

impl SotwStream {
    async fn run(
        mut self,
        mut inbound: Streaming<DiscoveryRequest>,
        refresh: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + refresh, refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut identity = self.provider.identity_source();
        let mut rotating = true;
        loop {
            let keep_going = tokio::select! {
                changed = identity.changed(), if rotating => match changed {
                    // A rotated certificate: push it now, not at the next refresh.
                    Ok(()) => self.push_if_changed().await,
                    Err(_) => {
                        rotating = false;
                        true
                    }
                },
                () = stopped(&mut stop) => false,
                message = inbound.message() => match message {
                    Ok(Some(request)) => self.on_request(request).await,
                    Ok(None) => false,
                    Err(status) => {
                        tracing::debug!(node = %self.node, %status, "SDS stream ended with an error");
                        false
                    }
                },
                _ = tick.tick() => self.push_if_changed().await,
            };
            if !keep_going {
                break;
            }
        }
        tracing::debug!(node = %self.node, names = ?self.names, "SDS stream closed");
    }

    /// Handles a request; `false` when the stream should end.
    async fn on_request(&mut self, request: DiscoveryRequest) -> bool {
        if let Some(node) = request.node.as_ref().filter(|_| self.node.is_empty()) {
            self.node = node.id.clone();
        }
        if !request.type_url.is_empty() && request.type_url != SECRET_TYPE_URL {
            tracing::warn!(node = %self.node, type_url = %request.type_url, "SDS request for a non-Secret type; ignored");
            return true;
        }
        let current_nonce = self.version.to_string();
        if self.sent.is_some() && request.response_nonce != current_nonce {
            // Stale: answers an earlier response; the next one will carry the names again.
            tracing::debug!(node = %self.node, nonce = %request.response_nonce, "stale SDS request ignored");
            return true;
        }
        if let Some(error) = &request.error_detail {
            bump(&self.counters.nacks);
            tracing::warn!(
                node = %self.node,
                names = ?request.resource_names,
                version = %request.version_info,
                error = %error.message,
                "Envoy rejected SDS secrets (NACK)"
            );
        }
        let mut names = request.resource_names;
        names.sort();
        names.dedup();
        self.names = names;
        self.push_if_changed().await
    }

    /// Builds the requested secrets and sends them when they differ from the last response;
    /// `false` when the client is gone.
    async fn push_if_changed(&mut self) -> bool {
        let mut served = BTreeMap::new();
        for name in &self.names {
            match self.provider.secret(name) {
                Ok(secret) => {
                    self.warned.remove(name);
                    self.last_good.insert(name.clone(), secret.clone());
                    served.insert(name.clone(), secret);
                }
                Err(e) => {
                    if self.warned.get(name) != Some(&e.reason) {
                        bump(&self.counters.unservable);
                        let keeping = self.last_good.contains_key(name);
                        tracing::warn!(
                            node = %self.node,
                            secret = %name,
                            reason = %e.reason,
                            keeping_last_good = keeping,
                            "cannot serve SDS secret; Envoy keeps waiting for it"
                        );
                        self.warned.insert(name.clone(), e.reason);
                    }
                    if let Some(secret) = self.last_good.get(name) {
                        served.insert(name.clone(), secret.clone());
                    }
                }
            }
        }
        // Forget secrets no longer requested.
        self.last_good.retain(|name, _| served.contains_key(name));
        // An empty SotW response would make Envoy reject the update: send nothing instead.
        if served.is_empty() || self.sent.as_ref() == Some(&served) {
            return true;
        }
        self.version += 1;
        let message = response(&served, self.version);
        tracing::debug!(
            node = %self.node,
            version = self.version,
            names = ?served.keys().collect::<Vec<_>>(),
            "sending SDS secrets"
        );
        self.sent = Some(served);
        bump(&self.counters.responses);
        self.tx.send(Ok(message)).await.is_ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn starting_outside_a_runtime_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let identity =
            MeshIdentity::self_signed(DEFAULT_TRUST_DOMAIN, "default", "default").unwrap();
        let err = SdsServer::start(dir.path().join("sds.sock"), identity).unwrap_err();
        assert!(err.to_string().contains("tokio runtime"), "{err}");
        assert!(!dir.path().join("sds.sock").exists());
    }

    #[test]
    fn agent_socket_is_in_the_work_dir_and_in_the_bootstrap() {
        let config = ProxyAgentConfig {
            work_dir: PathBuf::from("/run/entryway-proxy-1"),
            ..ProxyAgentConfig::default()
        };
        assert_eq!(
            config.sds_socket_path(),
            PathBuf::from("/run/entryway-proxy-1/sds.sock")
        );
        assert_eq!(
            config.bootstrap().sds_socket,
            Some(config.sds_socket_path())
        );
    }

    #[test]
    fn responses_carry_typed_secrets_with_version_and_nonce() {
        let identity =
            MeshIdentity::self_signed(DEFAULT_TRUST_DOMAIN, "default", "default").unwrap();
        let provider = SecretProvider::new(identity);
        let secrets: BTreeMap<String, Secret> = ["ROOTCA", "default"]
            .into_iter()
            .map(|n| (n.to_owned(), provider.secret(n).unwrap()))
            .collect();
        let r = response(&secrets, 7);
        assert_eq!((r.version_info.as_str(), r.nonce.as_str()), ("7", "7"));
        assert_eq!(r.type_url, SECRET_TYPE_URL);
        let names: Vec<String> = r
            .resources
            .iter()
            .map(|a| {
                assert_eq!(a.type_url, SECRET_TYPE_URL);
                Secret::decode(a.value.as_slice()).unwrap().name
            })
            .collect();
        assert_eq!(names, ["ROOTCA", "default"]);
    }
}

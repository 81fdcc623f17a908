//! The control plane's secure side, wired from flags: the mesh CA (plug-in directory or the
//! self-signed root in the state directory), join tokens, and the TLS listener of the secure
//! port with the certificate service on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use entryway_server::ads::SecurePort;
use entryway_server::ca::service::CaService;
use entryway_server::ca::tokens::TokenStore;
use entryway_server::ca::{CaOptions, CaSource, MAX_WORKLOAD_TTL, MeshCa};
use entryway_server::secure::{Authenticator, SecureListener, SecureOptions};
use entryway_server::shared::Shared;
use tokio::sync::watch;

use crate::serve::ServeArgs;

/// What the secure port needs, ready to serve.
pub struct SecureSetup {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The CA.
    pub ca: Arc<MeshCa>,
    /// Who callers are.
    pub authenticator: Authenticator,
    /// The listener, TLS and certificate service.
    pub port: SecurePort,
}

/// Where the self-signed CA lives in a state directory.
pub fn self_signed_ca_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ca")
}

/// Where join-token keys live in a state directory.
pub fn tokens_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("tokens")
}

/// `--secure-xds-address`: `off` or an address.
pub fn parse_secure_address(s: &str) -> anyhow::Result<Option<SocketAddr>> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .with_context(|| format!("--secure-xds-address {s:?}: expected IP:PORT or off"))
}

/// Loads the CA as the flags say (a missing or broken `--ca-dir` is an error, never a new
/// root).
pub fn load_ca(args: &ServeArgs) -> anyhow::Result<MeshCa> {
    let source = match &args.ca_dir {
        Some(dir) => CaSource::PluginDir(dir.clone()),
        None => CaSource::SelfSigned(self_signed_ca_dir(&args.state_dir)),
    };
    MeshCa::load(CaOptions {
        source,
        trust_domain: args.trust_domain.clone(),
        default_ttl: args.workload_cert_ttl,
        max_ttl: MAX_WORKLOAD_TTL.max(args.workload_cert_ttl),
    })
    .context("loading the mesh CA")
}

/// Binds the secure port and prepares its TLS and services; `None` when it is off.
pub async fn start(
    args: &ServeArgs,
    shared: &Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<SecureSetup>> {
    let Some(addr) = parse_secure_address(&args.secure_xds_address)? else {
        return Ok(None);
    };
    let ca = {
        let args = args.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || load_ca(&args))
                .await
                .context("loading the mesh CA")??,
        )
    };
    let authenticator = Authenticator::new(
        args.trust_domain.clone(),
        TokenStore::new(tokens_dir(&args.state_dir)),
    );
    let options = SecureOptions::istiod_like(addr.ip(), &args.tls_san);
    let tls = Arc::new(SecureListener::new(&ca, &options)?);
    let mut s = stop.clone();
    tls.spawn_rotation(Arc::clone(&ca), options, async move {
        let _ = s.wait_for(|v| *v).await;
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (secure port)"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, ca = ca.origin(), trust_domain = ca.trust_domain(), "secure port ready");
    let service = CaService::new(Arc::clone(&ca), authenticator.clone(), Arc::clone(shared));
    Ok(Some(SecureSetup {
        addr,
        ca,
        authenticator,
        port: SecurePort {
            listener,
            tls,
            ca: service,
        },
    }))
}

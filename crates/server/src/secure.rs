//! The secure port (Istio's 15012): TLS with the control plane's serving certificate from
//! the mesh CA, client certificates verified against the mesh root when a proxy presents
//! one, and who the caller is for every request.
//!
//! ```text
//! TcpListener ──accept──► handshake task (bounded time) ──► SecureConn{TLS stream, PeerInfo}
//!     ──► tonic server: PeerInfo in every request's extensions ──► Authenticator::authenticate
//!         (client certificate SPIFFE URI, else `authorization: Bearer <join token>`)
//! ```
//!
//! A client certificate is optional at the TLS level (a machine joining for the first time has
//! none and proves itself with a join token); a certificate that is presented must chain to
//! the mesh root, or the handshake fails. What a caller may do is decided per request by
//! [`Authenticator`]: the CA signs only for the authenticated identity, ADS serves only
//! proxies whose node metadata agrees with it.
//!
//! The serving certificate is re-issued at half its lifetime ([`ServingCert`]), so a control
//! plane that runs for weeks never serves an expired one; connections already open keep the
//! certificate they were opened with.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use entryway_contract::{AUTHORIZATION_HEADER, SpiffeId};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};

use crate::ca::tokens::TokenStore;
use crate::ca::{CaError, MeshCa};

/// How long a TLS handshake may take before the connection is dropped (a client that opens
/// a connection and sends nothing must not hold a task forever).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime of the control plane's serving certificate (re-issued at half of it).
pub const SERVING_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Handshakes in flight at once; further connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;

/// Errors of the secure port.
#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    /// The CA cannot issue the serving certificate.
    #[error("issuing the control plane's serving certificate: {0}")]
    Ca(#[from] CaError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Who is at the other end of a secure connection (a request extension of every request that
/// came over 15012; absent on the plaintext port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Remote address.
    pub remote: Option<SocketAddr>,
    /// The SPIFFE identity of a verified client certificate.
    pub identity: Option<SpiffeId>,
    /// A verified certificate without a usable SPIFFE URI, and why.
    pub certificate_problem: Option<String>,
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A workload certificate from the mesh CA.
    Certificate,
    /// A join token.
    Token,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Its identity.
    pub identity: SpiffeId,
    /// How it proved it.
    pub method: AuthMethod,
}

/// Decides who a caller is.
#[derive(Debug, Clone)]
pub struct Authenticator {
    trust_domain: String,
    tokens: TokenStore,
}

impl Authenticator {
    /// Certificates must carry `trust_domain`; tokens are verified against `tokens`.
    pub fn new(trust_domain: impl Into<String>, tokens: TokenStore) -> Authenticator {
        Authenticator {
            trust_domain: trust_domain.into(),
            tokens,
        }
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The caller of a request with these extensions and headers: a verified client
    /// certificate wins; else a bearer join token. The error says why neither proves an
    /// identity (Istio's "request authenticate failure" with the reasons).
    pub fn authenticate(
        &self,
        peer: Option<&PeerInfo>,
        headers: &http::HeaderMap,
    ) -> Result<Caller, String> {
        let mut reasons = Vec::new();
        match peer {
            Some(PeerInfo {
                identity: Some(id), ..
            }) => {
                if id.trust_domain == self.trust_domain {
                    return Ok(Caller {
                        identity: id.clone(),
                        method: AuthMethod::Certificate,
                    });
                }
                reasons.push(format!(
                    "client certificate identity {id} is not in trust domain {}",
                    self.trust_domain
                ));
            }
            Some(PeerInfo {
                certificate_problem: Some(p),
                ..
            }) => reasons.push(p.clone()),
            Some(_) => reasons.push("no client certificate is presented".to_string()),
            None => reasons.push("not a TLS connection".to_string()),
        }
        match headers.get(AUTHORIZATION_HEADER) {
            None => reasons.push("no authorization header".to_string()),
            Some(v) => match v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
                None => reasons.push("no bearer token in the authorization header".to_string()),
                Some(token) => match self.tokens.identity(token, &self.trust_domain) {
                    Ok(identity) => {
                        return Ok(Caller {
                            identity,
                            method: AuthMethod::Token,
                        });
                    }
                    Err(e) => reasons.push(e.to_string()),
                },
            },
        }
        Err(format!(
            "request authenticate failure: {}",
            reasons.join("; ")
        ))
    }
}

/// The control plane's serving certificate, re-issued before it expires.
#[derive(Debug)]
pub struct ServingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServingCert {
    fn issue(
        ca: &MeshCa,
        dns_names: &[String],
        ips: &[IpAddr],
    ) -> Result<Arc<CertifiedKey>, SecureError> {
        let serving = ca.serving_certificate(dns_names, ips, SERVING_CERT_TTL)?;
        let chain: Vec<CertificateDer<'static>> = serving
            .signed
            .chain
            .iter()
            .take(serving.signed.chain.len().saturating_sub(1).max(1))
            .filter_map(|p| {
                use rustls_pki_types::pem::PemObject as _;
                CertificateDer::from_pem_slice(p.as_bytes()).ok()
            })
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(serving.key_der));
        let signing = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| SecureError::Tls(e.to_string()))?;
        Ok(Arc::new(CertifiedKey::new(chain, signing)))
    }
}

#[derive(Debug)]
struct Resolver(Arc<ServingCert>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current.read().ok().map(|c| Arc::clone(&c))
    }
}

/// Settings of the secure listener.
#[derive(Debug, Clone)]
pub struct SecureOptions {
    /// DNS names in the serving certificate (istiod's by default).
    pub dns_names: Vec<String>,
    /// IP addresses in the serving certificate.
    pub ips: Vec<IpAddr>,
}

impl SecureOptions {
    /// istiod's names (`istiod.istio-system.svc` and its variants), `localhost`, and the
    /// listen address when it is a specific IP, plus `extra` names and IPs.
    pub fn istiod_like(listen: IpAddr, extra: &[String]) -> SecureOptions {
        let mut dns_names: Vec<String> = [
            entryway_contract::DEFAULT_CONTROL_PLANE_NAME,
            "istiod.istio-system.svc.cluster.local",
            "istiod-remote.istio-system.svc",
            "istio-pilot.istio-system.svc",
            "localhost",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1])];
        if !listen.is_unspecified() && !ips.contains(&listen) {
            ips.push(listen);
        }
        for e in extra {
            match e.parse::<IpAddr>() {
                Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                Ok(_) => {}
                Err(_) if !dns_names.contains(e) => dns_names.push(e.clone()),
                Err(_) => {}
            }
        }
        SecureOptions { dns_names, ips }
    }
}

/// The TLS server configuration of the secure port and its rotating serving certificate.
pub struct SecureListener {
    config: Arc<rustls::ServerConfig>,
    serving: Arc<ServingCert>,
}

impl SecureListener {
    /// TLS settings from the CA: serving certificate issued now, client certificates
    /// optional and verified against the mesh roots, ALPN h2 (gRPC).
    pub fn new(ca: &Arc<MeshCa>, options: &SecureOptions) -> Result<SecureListener, SecureError> {
        let serving = Arc::new(ServingCert {
            current: RwLock::new(ServingCert::issue(ca, &options.dns_names, &options.ips)?),
        });
        let mut roots = rustls::RootCertStore::empty();
        for der in ca.root_ders() {
            roots
                .add(der)
                .map_err(|e| SecureError::Tls(format!("mesh root: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| SecureError::Tls(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SecureError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(&serving))));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(SecureListener {
            config: Arc::new(config),
            serving,
        })
    }

    /// Re-issues the serving certificate at half its lifetime, until `stop` resolves.
    pub fn spawn_rotation(
        &self,
        ca: Arc<MeshCa>,
        options: SecureOptions,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let serving = Arc::clone(&self.serving);
        tokio::spawn(async move {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(SERVING_CERT_TTL / 2) => {}
                    _ = &mut stop => return,
                }
                match ServingCert::issue(&ca, &options.dns_names, &options.ips) {
                    Ok(c) => {
                        if let Ok(mut cur) = serving.current.write() {
                            *cur = c;
                        }
                        info!("re-issued the control plane's serving certificate");
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot re-issue the serving certificate; keeping the current one")
                    }
                }
            }
        })
    }

    /// Accepts connections on `listener` and hands out completed TLS connections; each
    /// handshake runs in its own task, bounded by [`HANDSHAKE_TIMEOUT`], so a client that
    /// stalls its handshake delays nobody. Ends when the receiver is dropped.
    pub fn incoming(&self, listener: TcpListener) -> mpsc::Receiver<std::io::Result<SecureConn>> {
        let (tx, rx) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&self.config));
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let permit = tokio::select! {
                    p = Arc::clone(&handshakes).acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    _ = tx.closed() => return,
                };
                let (tcp, remote) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            warn!(error = %e, "accept failed on the secure port");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = tx.closed() => return,
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let info = peer_info(&tls, remote);
                            let _ = tx.send(Ok(SecureConn { inner: tls, info })).await;
                        }
                        Ok(Err(e)) => {
                            info!(%remote, error = %e, "TLS handshake failed on the secure port");
                        }
                        Err(_) => debug!(%remote, "TLS handshake timed out"),
                    }
                });
            }
        });
        rx
    }
}

fn peer_info(tls: &TlsStream<TcpStream>, remote: SocketAddr) -> PeerInfo {
    let (_, conn) = tls.get_ref();
    let mut info = PeerInfo {
        remote: Some(remote),
        identity: None,
        certificate_problem: None,
    };
    let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) else {
        return info;
    };
    match spiffe_identity(leaf) {
        Ok(id) => info.identity = Some(id),
        Err(p) => info.certificate_problem = Some(p),
    }
    info
}

/// The SPIFFE identity in a certificate's URI SANs (exactly one is expected, as Istio's
/// workload certificates carry).
pub fn spiffe_identity(der: &[u8]) -> Result<SpiffeId, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("client certificate does not parse: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("client certificate SAN extension: {e}"))?
        .ok_or_else(|| "client certificate has no subject alternative names".to_string())?;
    let mut found = None;
    for name in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::URI(uri) = name
            && uri.starts_with(entryway_contract::identity::SCHEME)
        {
            if found.is_some() {
                return Err("client certificate has several SPIFFE identities".to_string());
            }
            found = Some(SpiffeId::parse(uri).map_err(|e| e.to_string())?);
        }
    }
    found.ok_or_else(|| "client certificate has no SPIFFE identity".to_string())
}

/// A completed TLS connection on the secure port with who is at the other end.
pub struct SecureConn {
    inner: TlsStream<TcpStream>,
    info: PeerInfo,
}

impl tonic::transport::server::Connected for SecureConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for SecureConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SecureConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

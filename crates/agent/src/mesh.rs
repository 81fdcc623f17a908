//! Joining the mesh: the agent proves who it is to the control plane's secure port and keeps
//! a workload certificate from the mesh CA.
//!
//! ```text
//! join token (file) ──► CSR (key made here, never sent) ──► CreateCertificate over TLS
//!     ──► MeshIdentity {chain, key, root} ──watch──► SDS (`default`, `ROOTCA`) ──► Envoy
//!                                          └──────► this module's own TLS client cert
//! rotation at half the lifetime: a new key and CSR, authenticated by the current certificate
//! ```
//!
//! - [`ControlPlane`]: how the agent reaches the control plane: marked sockets
//!   ([`crate::net`]), the host resolved without the system resolver, TLS verified against the
//!   mesh root with the control plane's expected name, the current workload certificate as
//!   client certificate. A tonic connector, so the certificate client and the NDS client use
//!   it unchanged.
//! - [`CertificateClient`]: one CSR round trip.
//! - [`start_identity`]: the first certificate, then rotation (Istio's: at half the lifetime,
//!   with 1% jitter; retries with back-off while the current certificate is still valid).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use entryway_contract::SpiffeId;
use entryway_contract::ca::{
    CREATE_CERTIFICATE_PATH, IstioCertificateRequest, IstioCertificateResponse,
};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls_pki_types::pem::PemObject as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint, Uri};
use tracing::{info, warn};

use crate::bootstrap::XdsAddress;
use crate::net::{ResolveSettings, marked_tcp, resolve};
use crate::sds::{IdentitySource, MeshIdentity};

/// How long connecting (TCP and TLS) to the control plane may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Istio's `SECRET_GRACE_PERIOD_RATIO`: rotate when this share of the lifetime is left.
pub const GRACE_PERIOD_RATIO: f64 = 0.5;
/// Istio's `SECRET_GRACE_PERIOD_RATIO_JITTER`.
pub const GRACE_PERIOD_JITTER: f64 = 0.01;
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What an agent that joins the mesh needs (written by `entryway vm configure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSecurity {
    /// The mesh root (PEM file): verifies the control plane and is `ROOTCA` until the CA
    /// sends its own.
    pub root_cert: PathBuf,
    /// The join token file (read at each use; replaced tokens are picked up).
    pub token_file: Option<PathBuf>,
    /// The DNS name the control plane's certificate must carry (Istio's `ISTIOD_SAN`;
    /// default `istiod.istio-system.svc`), whatever address it is reached at.
    pub server_name: String,
    /// The certificate API's address when it is not the xDS address (Istio's `CA_ADDR`).
    pub ca_address: Option<XdsAddress>,
    /// Requested certificate lifetime (Istio's `SECRET_TTL`); `None` = the CA's default.
    pub cert_ttl: Option<Duration>,
}

/// Errors joining the mesh.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// A credential file cannot be read.
    #[error("{what} {path}: {source}")]
    Read {
        /// Which file.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A credential file holds something unusable.
    #[error("{0}")]
    Invalid(String),
    /// The control plane refused or could not be reached.
    #[error("certificate request to {address}: {status}")]
    Refused {
        /// Where.
        address: String,
        /// gRPC status (with the control plane's reason).
        status: Box<tonic::Status>,
    },
}

/// TLS to the control plane.
struct Tls {
    roots: Arc<rustls::RootCertStore>,
    server_name: ServerName<'static>,
    identity: Option<IdentitySource>,
}

struct Inner {
    address: XdsAddress,
    tls: Option<Tls>,
    resolve: ResolveSettings,
}

/// How the agent reaches the control plane (a tonic connector; see the module comment).
#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("address", &self.inner.address)
            .field("tls", &self.inner.tls.is_some())
            .finish()
    }
}

impl ControlPlane {
    /// The plaintext port (loopback): no TLS, marked sockets.
    pub fn plaintext(address: XdsAddress) -> ControlPlane {
        ControlPlane {
            inner: Arc::new(Inner {
                address,
                tls: None,
                resolve: ResolveSettings::system(),
            }),
        }
    }

    /// The secure port: TLS verified against `root_pem` for `server_name`; `identity` (when
    /// given) is presented as client certificate, the one in force at each connection.
    pub fn secure(
        address: XdsAddress,
        root_pem: &str,
        server_name: &str,
        identity: Option<IdentitySource>,
    ) -> Result<ControlPlane, MeshError> {
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
            let der = der.map_err(|e| MeshError::Invalid(format!("mesh root: {e}")))?;
            roots
                .add(der)
                .map_err(|e| MeshError::Invalid(format!("mesh root: {e}")))?;
        }
        if roots.is_empty() {
            return Err(MeshError::Invalid("mesh root: no certificate".into()));
        }
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| MeshError::Invalid(format!("control plane name {server_name:?}: {e}")))?;
        Ok(ControlPlane {
            inner: Arc::new(Inner {
                address,
                tls: Some(Tls {
                    roots: Arc::new(roots),
                    server_name,
                    identity,
                }),
                resolve: ResolveSettings::system(),
            }),
        })
    }

    /// The same control plane presenting `identity` as client certificate.
    pub fn with_identity(&self, identity: Option<IdentitySource>) -> ControlPlane {
        let inner = &self.inner;
        ControlPlane {
            inner: Arc::new(Inner {
                address: inner.address.clone(),
                tls: inner.tls.as_ref().map(|t| Tls {
                    roots: Arc::clone(&t.roots),
                    server_name: t.server_name.clone(),
                    identity,
                }),
                resolve: inner.resolve.clone(),
            }),
        }
    }

    /// The same control plane at another address (the CA's own, Istio's `CA_ADDR`).
    pub fn at(&self, address: XdsAddress) -> ControlPlane {
        let inner = &self.inner;
        ControlPlane {
            inner: Arc::new(Inner {
                address,
                tls: inner.tls.as_ref().map(|t| Tls {
                    roots: Arc::clone(&t.roots),
                    server_name: t.server_name.clone(),
                    identity: t.identity.clone(),
                }),
                resolve: inner.resolve.clone(),
            }),
        }
    }

    /// Where it is.
    pub fn address(&self) -> &XdsAddress {
        &self.inner.address
    }

    /// Whether connections use TLS.
    pub fn is_secure(&self) -> bool {
        self.inner.tls.is_some()
    }

    /// A gRPC channel that connects (and reconnects) through this connector.
    pub fn channel(&self) -> Channel {
        let host = &self.inner.address.host;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        // `http`: TLS is this connector's job, not tonic's.
        let uri = format!("http://{host}:{}", self.inner.address.port);
        let endpoint = Endpoint::from_shared(uri)
            .unwrap_or_else(|_| Endpoint::from_static("http://127.0.0.1:15010"))
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        endpoint.connect_with_connector_lazy(self.clone())
    }

    async fn connect(self) -> io::Result<TokioIo<Io>> {
        let inner = &self.inner;
        let addrs = resolve(&inner.address.host, &inner.resolve).await?;
        let mut last = io::Error::other("no address");
        for ip in addrs {
            let addr = SocketAddr::new(ip, inner.address.port);
            match tokio::time::timeout(CONNECT_TIMEOUT, marked_tcp(addr)).await {
                Ok(Ok(tcp)) => return self.handshake(tcp).await.map(TokioIo::new),
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr}"))
                }
            }
        }
        Err(last)
    }

    async fn handshake(&self, tcp: TcpStream) -> io::Result<Io> {
        let Some(tls) = &self.inner.tls else {
            return Ok(Io::Plain(tcp));
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(Arc::clone(&tls.roots));
        let mut config = match tls.identity.as_ref().map(|i| Arc::clone(&i.borrow())) {
            Some(id) => {
                let (chain, key) = client_credentials(&id)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(io::Error::other)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            connector.connect(tls.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))??;
        Ok(Io::Tls(Box::new(stream)))
    }
}

fn client_credentials(
    id: &MeshIdentity,
) -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_slice_iter(id.cert_chain_pem().as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io::Error::other(format!("workload certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(id.key_pem().as_bytes())
        .map_err(|e| io::Error::other(format!("workload key: {e}")))?;
    Ok((chain, key))
}

impl tower_service::Service<Uri> for ControlPlane {
    type Response = TokioIo<Io>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Io>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect())
    }
}

/// A connection to the control plane.
pub enum Io {
    /// The plaintext port.
    Plain(TcpStream),
    /// The secure port.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What `entryway vm configure` writes for a machine joining the mesh (Istio's
/// `istioctl x workload entry configure` names where they exist) and `entryway proxy
/// --join-dir` reads.
pub mod join_dir {
    use std::collections::BTreeMap;
    use std::io::Write as _;
    use std::path::{Path, PathBuf};

    use super::MeshError;

    /// The mesh root (PEM).
    pub const ROOT_CERT_FILE: &str = "root-cert.pem";
    /// The join token (Istio's `istio-token`).
    pub const TOKEN_FILE: &str = "istio-token";
    /// Settings, `KEY='value'` lines (Istio's `cluster.env`).
    pub const ENV_FILE: &str = "cluster.env";
    /// Key of the control plane's secure address (`host:port`; Istio keeps it in mesh.yaml
    /// as `discoveryAddress`).
    pub const XDS_ADDRESS_KEY: &str = "XDS_ADDRESS";
    /// Key of the name the control plane's certificate carries (Istio's).
    pub const SERVER_NAME_KEY: &str = "ISTIOD_SAN";
    /// Key of the certificate API's address when it differs (Istio's).
    pub const CA_ADDRESS_KEY: &str = "CA_ADDR";
    /// Key of the requested certificate lifetime (Istio's, e.g. `24h0m0s` or `600s`).
    pub const SECRET_TTL_KEY: &str = "SECRET_TTL";

    /// A join directory's contents.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct JoinDir {
        /// Its path.
        pub dir: PathBuf,
        /// The settings of `cluster.env` (environment variables for the agent).
        pub env: BTreeMap<String, String>,
    }

    impl JoinDir {
        /// Reads `dir` (the root certificate and the token must be there).
        pub fn read(dir: &Path) -> Result<JoinDir, MeshError> {
            let read = |name: &str, what: &'static str| {
                let path = dir.join(name);
                std::fs::read_to_string(&path).map_err(|source| MeshError::Read {
                    what,
                    path,
                    source,
                })
            };
            read(ROOT_CERT_FILE, "mesh root certificate")?;
            read(TOKEN_FILE, "join token")?;
            let text = read(ENV_FILE, "join settings")?;
            let env = parse_env(&text).map_err(|e| {
                MeshError::Invalid(format!("{}: {e}", dir.join(ENV_FILE).display()))
            })?;
            Ok(JoinDir {
                dir: dir.to_path_buf(),
                env,
            })
        }

        /// A setting.
        pub fn get(&self, key: &str) -> Option<&str> {
            self.env.get(key).map(String::as_str)
        }

        /// The root certificate file.
        pub fn root_cert(&self) -> PathBuf {
            self.dir.join(ROOT_CERT_FILE)
        }

        /// The token file.
        pub fn token_file(&self) -> PathBuf {
            self.dir.join(TOKEN_FILE)
        }
    }

    /// Writes a join directory: `root_pem`, `token` (mode 0600) and `env` as `cluster.env`.
    pub fn write(
        dir: &Path,
        root_pem: &str,
        token: &str,
        env: &BTreeMap<String, String>,
    ) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(ROOT_CERT_FILE), root_pem)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join(TOKEN_FILE))?;
        writeln!(f, "{token}")?;
        let mut text = String::new();
        for (k, v) in env {
            // Shell single quotes: ' itself is written as '\''.
            text.push_str(&format!("{k}='{}'\n", v.replace('\'', "'\\''")));
        }
        std::fs::write(dir.join(ENV_FILE), text)
    }

    /// `KEY='value'` / `KEY=value` lines, `#` comments (the subset of shell that `cluster.env`
    /// uses; a shell-quoting crate would be a dependency for eight lines).
    pub fn parse_env(text: &str) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: expected KEY=VALUE", n + 1))?;
            let k = k.trim();
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("line {}: {k:?} is not a variable name", n + 1));
            }
            let v = v.trim();
            let v = if let Some(q) = v.strip_prefix('\'') {
                let mut value = String::new();
                let mut rest = q;
                loop {
                    let Some(end) = rest.find('\'') else {
                        return Err(format!("line {}: unterminated quote", n + 1));
                    };
                    value.push_str(&rest[..end]);
                    rest = &rest[end + 1..];
                    if let Some(r) = rest.strip_prefix("\\''") {
                        value.push('\'');
                        rest = r;
                    } else {
                        break;
                    }
                }
                value
            } else {
                v.to_string()
            };
            out.insert(k.to_string(), v);
        }
        Ok(out)
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    mod tests {
        use super::*;

        #[test]
        fn round_trips_and_reads_istios_form() {
            let dir = tempfile::tempdir().unwrap();
            let env = BTreeMap::from([
                ("POD_NAMESPACE".to_string(), "shop".to_string()),
                (
                    "ISTIO_METAJSON_LABELS".to_string(),
                    r#"{"app":"it's"}"#.to_string(),
                ),
            ]);
            write(dir.path(), "ROOT", "TOKEN", &env).unwrap();
            let j = JoinDir::read(dir.path()).unwrap();
            assert_eq!(j.env, env);
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(j.token_file())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let istio = "CA_ADDR='istiod-rev-1.istio-system.svc:15012'\nISTIO_INBOUND_PORTS='*'\n# c\nX=y\n";
            let p = parse_env(istio).unwrap();
            assert_eq!(p["CA_ADDR"], "istiod-rev-1.istio-system.svc:15012");
            assert_eq!(p["X"], "y");
            assert!(parse_env("A='x").is_err());
            assert!(parse_env("not a line").is_err());
        }

        #[test]
        fn a_missing_file_names_it() {
            let dir = tempfile::tempdir().unwrap();
            let e = JoinDir::read(dir.path()).unwrap_err().to_string();
            assert!(e.contains("root-cert.pem"), "{e}");
        }
    }
}

/// Asks the mesh CA for a certificate.
#[derive(Debug, Clone)]
pub struct CertificateClient {
    control_plane: ControlPlane,
    token_file: Option<PathBuf>,
    identity: SpiffeId,
    ttl: Option<Duration>,
}

impl CertificateClient {
    /// A client for `identity` (the CSR names it; the CA signs what the caller proves).
    pub fn new(
        control_plane: ControlPlane,
        token_file: Option<PathBuf>,
        identity: SpiffeId,
        ttl: Option<Duration>,
    ) -> CertificateClient {
        CertificateClient {
            control_plane,
            token_file,
            identity,
            ttl,
        }
    }

    /// The identity asked for.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }

    fn token(&self) -> Result<Option<String>, MeshError> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| MeshError::Read {
            what: "join token",
            path: path.clone(),
            source,
        })?;
        Ok(Some(text.trim().to_string()))
    }

    /// One certificate: a new key (made here), a CSR for the identity, signed by the CA.
    /// Authenticated by `current` (a valid workload certificate) when given, else by the join
    /// token.
    pub async fn request(
        &self,
        current: Option<IdentitySource>,
    ) -> Result<MeshIdentity, MeshError> {
        let key = rcgen::KeyPair::generate()
            .map_err(|e| MeshError::Invalid(format!("generating a key: {e}")))?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let uri = self.identity.uri();
        params.subject_alt_names =
            vec![rcgen::SanType::URI(uri.as_str().try_into().map_err(
                |e| MeshError::Invalid(format!("identity {uri}: {e}")),
            )?)];
        let csr = params
            .serialize_request(&key)
            .and_then(|c| c.pem())
            .map_err(|e| MeshError::Invalid(format!("making the CSR: {e}")))?;
        let by_certificate = current.is_some();
        let cp = self.control_plane.with_identity(current);
        let mut request = tonic::Request::new(IstioCertificateRequest {
            csr,
            validity_duration: self
                .ttl
                .map_or(0, |t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX)),
        });
        if !by_certificate {
            let token = self.token()?.ok_or_else(|| {
                MeshError::Invalid(
                    "no workload certificate and no join token: create one with `entryway token create` (or `entryway vm configure`)".into(),
                )
            })?;
            let value = format!("Bearer {token}").parse().map_err(|_| {
                MeshError::Invalid("the join token has characters a header cannot carry".into())
            })?;
            request
                .metadata_mut()
                .insert(entryway_contract::AUTHORIZATION_HEADER, value);
        }
        let refused = |status: tonic::Status| MeshError::Refused {
            address: format!("{}:{}", cp.address().host, cp.address().port),
            status: Box::new(status),
        };
        let mut grpc = tonic::client::Grpc::new(cp.channel());
        grpc.ready()
            .await
            .map_err(|e| refused(tonic::Status::unavailable(e.to_string())))?;
        let codec =
            tonic_prost::ProstCodec::<IstioCertificateRequest, IstioCertificateResponse>::default();
        let path = http::uri::PathAndQuery::from_static(CREATE_CERTIFICATE_PATH);
        let chain = grpc
            .unary(request, path, codec)
            .await
            .map_err(refused)?
            .into_inner()
            .cert_chain;
        let (root, leaf_and_intermediates) = chain
            .split_last()
            .filter(|(_, rest)| !rest.is_empty())
            .ok_or_else(|| {
                MeshError::Invalid("the CA answered an empty certificate chain".into())
            })?;
        MeshIdentity::from_pem(
            uri,
            leaf_and_intermediates.concat(),
            key.serialize_pem(),
            root.clone(),
        )
        .map_err(|e| MeshError::Invalid(e.to_string()))
    }
}

/// When to rotate a certificate obtained at `obtained` and valid until `not_after`: when
/// [`GRACE_PERIOD_RATIO`] of its remaining lifetime is left, moved by up to
/// ±[`GRACE_PERIOD_JITTER`] of it. Measured from when it was obtained, not from its
/// `notBefore` (which a CA back-dates for clock skew).
pub fn rotation_time(obtained: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let life = not_after.duration_since(obtained).unwrap_or_default();
    let grace = life.mul_f64(
        (GRACE_PERIOD_RATIO + jitter.clamp(-1.0, 1.0) * GRACE_PERIOD_JITTER).clamp(0.0, 1.0),
    );
    not_after.checked_sub(grace).unwrap_or(obtained)
}

/// Gets the first certificate (retrying with back-off until the CA signs or `stop` fires),
/// then keeps it fresh in the background. The returned source always holds a valid
/// certificate; the task ends when `stop` fires.
pub async fn start_identity(
    client: CertificateClient,
    mut stop: watch::Receiver<bool>,
) -> Result<(IdentitySource, tokio::task::JoinHandle<()>), MeshError> {
    let mut backoff = RETRY_MIN;
    let first = loop {
        match client.request(None).await {
            Ok(id) => break id,
            Err(e) => {
                warn!(identity = %client.identity(), error = %e, retry_in = ?backoff, "cannot get a workload certificate yet");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return Err(e),
                }
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    };
    info!(identity = %first.spiffe_id(), "workload certificate from the mesh CA");
    let (tx, rx) = watch::channel(Arc::new(first));
    let source = rx.clone();
    let task = tokio::spawn(async move {
        let mut obtained = SystemTime::now();
        loop {
            let current = Arc::clone(&tx.borrow());
            let Some(validity) = current.validity() else {
                warn!("the workload certificate has no readable validity; not rotating");
                return;
            };
            let at = rotation_time(obtained, validity.1, fastrand::f64() * 2.0 - 1.0);
            let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let mut backoff = RETRY_MIN;
            loop {
                // Authenticate with the current certificate while it is valid, else the token.
                let valid = validity.1 > SystemTime::now();
                let auth = valid.then(|| rx.clone());
                match client.request(auth).await {
                    Ok(id) => {
                        info!(identity = %id.spiffe_id(), "rotated the workload certificate");
                        tx.send_replace(Arc::new(id));
                        obtained = SystemTime::now();
                        break;
                    }
                    Err(e) => {
                        warn!(error = %e, retry_in = ?backoff, "certificate rotation failed; keeping the current certificate");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stop.wait_for(|s| *s) => return,
                        }
                        backoff = (backoff * 2).min(RETRY_MAX);
                    }
                }
            }
        }
    });
    Ok((source, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_half_life_with_one_percent_jitter() {
        let from = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let to = from + Duration::from_secs(100);
        assert_eq!(rotation_time(from, to, 0.0), from + Duration::from_secs(50));
        assert_eq!(rotation_time(from, to, 1.0), from + Duration::from_secs(49));
        assert_eq!(
            rotation_time(from, to, -1.0),
            from + Duration::from_secs(51)
        );
        // Expired already: at once.
        assert_eq!(rotation_time(to, from, 0.0), from);
    }
}

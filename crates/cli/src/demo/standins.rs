//! Local stand-ins for services outside the mesh, on 127.0.0.1: small HTTP/1.1 servers whose
//! behaviour is scripted (flaky, slow, counting), a TLS server that requires a client
//! certificate, and a TCP echo server. Each counts what it receives, so the demo can report
//! what reached the "outside".

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What an HTTP stand-in answers to the n-th request (0-based).
pub type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: String,
    /// Wait before answering.
    pub delay: Duration,
}

impl Reply {
    /// `status` with `body`, at once.
    pub fn new(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// The same answer after `delay`.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// A running stand-in: its address and how many requests (or connections) it saw.
#[derive(Clone)]
pub struct StandIn {
    /// Listening address.
    pub addr: SocketAddr,
    /// Requests (HTTP) or connections (TCP, TLS) received.
    pub hits: Arc<AtomicUsize>,
}

impl StandIn {
    /// Requests or connections so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        503 => "Service Unavailable",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn response_bytes(reply: &Reply) -> Vec<u8> {
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: keep-alive\r\n\r\n{}",
        reply.status,
        reason(reply.status),
        reply.body.len(),
        reply.body
    )
    .into_bytes()
}

/// Reads one request head (and discards a body announced by content-length); `None` at EOF.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let body_len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let total = end + 4 + body_len;
            while buf.len() < total {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            return Some(());
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
}

/// Starts an HTTP/1.1 stand-in (keep-alive) answering per `script`.
pub async fn http(script: Script) -> anyhow::Result<StandIn> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let script = Arc::clone(&script);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while read_request(&mut stream, &mut buf).await.is_some() {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let reply = script(n);
                    if !reply.delay.is_zero() {
                        tokio::time::sleep(reply.delay).await;
                    }
                    if stream.write_all(&response_bytes(&reply)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(StandIn { addr, hits })
}

/// Starts a TCP echo stand-in (counts connections).
pub async fn tcp_echo() -> anyhow::Result<StandIn> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(StandIn { addr, hits })
}

/// PEM files of the demo's private PKI.
pub struct Pki {
    /// CA certificate (trusted by the sidecar for origination, and by the server for clients).
    pub ca_pem: String,
    /// Server certificate for `server_name`, and its key.
    pub server_cert_pem: String,
    /// Server key.
    pub server_key_pem: String,
    /// Client certificate (the sidecar's, for MUTUAL) and its key.
    pub client_cert_pem: String,
    /// Client key.
    pub client_key_pem: String,
}

/// A throw-away CA with a server certificate for `server_name` and a client certificate.
pub fn pki(server_name: &str) -> anyhow::Result<Pki> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "entryway demo CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let server =
        CertificateParams::new(vec![server_name.to_string()])?.signed_by(&server_key, &issuer)?;
    let client_key = KeyPair::generate()?;
    let mut client_params = CertificateParams::new(vec!["sidecar.demo".to_string()])?;
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "entryway demo sidecar");
    let client = client_params.signed_by(&client_key, &issuer)?;
    Ok(Pki {
        ca_pem: ca.pem(),
        server_cert_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    })
}

/// Starts a TLS stand-in that requires a client certificate signed by the demo CA and
/// answers every HTTP request with `200 body`; counts requests received over mutual TLS.
pub fn tls_mutual(pki: &Pki, body: &str) -> anyhow::Result<StandIn> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).context("CA PEM")?)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let certs =
        vec![CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes()).context("cert PEM")?];
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).context("key PEM")?;
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?,
    );
    let listener = StdListener::bind(("127.0.0.1", 0))?;
    let addr = listener.local_addr()?;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let reply = response_bytes(&Reply::new(200, body));
    std::thread::Builder::new()
        .name("demo-tls".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let config = Arc::clone(&config);
                let counter = Arc::clone(&counter);
                let reply = reply.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        match tls.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            if tls.conn.peer_certificates().is_none() {
                                return;
                            }
                            counter.fetch_add(1, Ordering::SeqCst);
                            if tls.write_all(&reply).and_then(|_| tls.flush()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        })?;
    Ok(StandIn { addr, hits })
}

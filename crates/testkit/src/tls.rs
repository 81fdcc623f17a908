//! [`TlsUpstream`]: a local HTTPS server for one SNI host, with its own throw-away CA.
//!
//! Certificates come from the `openssl` command (a self-signed CA and a leaf for the host,
//! valid one day, EC P-256); the server is `openssl s_server -WWW`, which answers
//! `GET /<file>` with `HTTP/1.0 200 ok` and the file's content. The file [`TLS_UPSTREAM_PATH`]
//! holds the upstream's name, so a client that reaches it through a proxy can tell which
//! server answered and that TLS was end-to-end (it verifies the leaf against [`ca_path`]).
//!
//! [`ca_path`]: TlsUpstream::ca_path

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::poll::{eventually, free_port};

/// The request path that returns the upstream's name.
pub const TLS_UPSTREAM_PATH: &str = "/tls-upstream";

/// A local TLS (HTTPS) server; dropping it stops the server.
#[derive(Debug)]
pub struct TlsUpstream {
    name: String,
    addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) -> io::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("running openssl (install it: apt-get install openssl): {e}"),
            )
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

impl TlsUpstream {
    /// Starts a server named `name` on 127.0.0.1 (a free port) with a certificate for
    /// `sni_host` issued by a fresh CA.
    pub fn start(name: &str, sni_host: &str) -> io::Result<Self> {
        Self::start_with(name, sni_host, false)
    }

    /// Like [`start`](Self::start), but the server requires a client certificate issued by
    /// its CA (`openssl s_server -Verify 1 -CAfile ca.pem`): a client without one, or with
    /// one from another CA, fails the handshake. [`client_cert_path`](Self::client_cert_path)
    /// and [`client_key_path`](Self::client_key_path) are a certificate it accepts.
    pub fn start_mutual(name: &str, sni_host: &str) -> io::Result<Self> {
        Self::start_with(name, sni_host, true)
    }

    fn start_with(name: &str, sni_host: &str, require_client_cert: bool) -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let mut ca = vec!["req", "-x509", "-nodes", "-days", "1"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=entryway test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(d, &ca)?;
        let subject = format!("/CN={sni_host}");
        let san = format!("subjectAltName=DNS:{sni_host}");
        let mut leaf = vec!["req", "-x509", "-nodes", "-days", "1"];
        leaf.extend(ec);
        leaf.extend([
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.pem",
            "-subj",
            &subject,
            "-addext",
            &san,
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ]);
        openssl(d, &leaf)?;
        // A client certificate from the same CA (for mutual TLS).
        let mut client = vec!["req", "-x509", "-nodes", "-days", "1"];
        client.extend(ec);
        client.extend([
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-keyout",
            "client.key",
            "-out",
            "client.pem",
            "-subj",
            "/CN=entryway test client",
            "-addext",
            "subjectAltName=URI:spiffe://cluster.local/ns/default/sa/client",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=clientAuth",
        ]);
        openssl(d, &client)?;
        std::fs::write(d.join(TLS_UPSTREAM_PATH.trim_start_matches('/')), name)?;

        let port = free_port()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let accept = addr.to_string();
        let mut args = vec![
            "s_server", "-accept", &accept, "-cert", "leaf.pem", "-key", "leaf.key", "-WWW",
            "-quiet",
        ];
        if require_client_cert {
            args.extend(["-Verify", "1", "-verify_return_error", "-CAfile", "ca.pem"]);
        }
        let child = Command::new("openssl")
            .args(&args)
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut up = Self {
            name: name.to_owned(),
            addr,
            child,
            dir,
        };
        let ready = eventually(Duration::from_secs(10), || {
            if let Ok(Some(_)) = up.child.try_wait() {
                return Some(false);
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(|_| true)
        });
        match ready {
            Ok(true) => Ok(up),
            Ok(false) => Err(io::Error::other(format!(
                "openssl s_server on {addr} exited (port taken?)"
            ))),
            Err(t) => {
                let _ = up.child.kill();
                Err(io::Error::other(format!(
                    "openssl s_server on {addr} not accepting: {t}"
                )))
            }
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The name the server answers with on [`TLS_UPSTREAM_PATH`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA certificate (PEM) that issued the server's certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A client certificate (PEM) issued by the server's CA, for mutual TLS.
    pub fn client_cert_path(&self) -> PathBuf {
        self.dir.path().join("client.pem")
    }

    /// The private key (PEM) of [`client_cert_path`](Self::client_cert_path).
    pub fn client_key_path(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

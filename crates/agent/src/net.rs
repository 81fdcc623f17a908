//! The agent's own connections: every socket the agent opens towards the network (the
//! control plane's xDS and certificate API, the DNS proxy's upstream queries, name lookups
//! of the control plane) carries the firewall mark [`AGENT_MARK`], which the capture rules
//! return uncaptured.
//!
//! Why a mark: Istio's pilot-agent runs as the proxy user (uid 1337), which the capture rules
//! exclude by owner. Entryway's agent runs as root (it installs and removes the rules), so
//! its traffic would otherwise be captured by its own rules: the control plane reached
//! through Envoy, and under `REGISTRY_ONLY` sent to `BlackHoleCluster`. `SO_MARK` needs
//! `CAP_NET_ADMIN`; without it (an unprivileged agent, where no capture rules exist either)
//! the mark is skipped with one log line.
//!
//! [`resolve`] looks up a host name the same way from a marked socket (hosts file first,
//! then the resolv.conf nameservers), so naming the control plane works under DNS capture
//! too: the system resolver's queries would be redirected to the agent's own DNS proxy.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpStream, UdpSocket};

pub use crate::capture::AGENT_MARK;

static MARK_WARNED: AtomicBool = AtomicBool::new(false);

/// A non-blocking socket towards `server`, marked with [`AGENT_MARK`] when allowed.
fn marked_socket(server: SocketAddr, ty: Type, proto: Protocol) -> std::io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(server), ty, Some(proto))?;
    if let Err(e) = sock.set_mark(AGENT_MARK)
        && !MARK_WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            error = %e,
            "cannot mark the agent's sockets (needs CAP_NET_ADMIN); under traffic capture \
             the agent's own connections would be redirected to Envoy"
        );
    }
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// A UDP socket for talking to `server`, bound to the wildcard address, marked.
pub fn marked_udp(server: SocketAddr) -> std::io::Result<UdpSocket> {
    let sock = marked_socket(server, Type::DGRAM, Protocol::UDP)?;
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    sock.bind(&bind.into())?;
    UdpSocket::from_std(sock.into())
}

/// A TCP connection to `server`, marked, with `TCP_NODELAY`.
pub async fn marked_tcp(server: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = marked_socket(server, Type::STREAM, Protocol::TCP)?;
    let sock = tokio::net::TcpSocket::from_std_stream(sock.into());
    let stream = sock.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Where [`resolve`] looks.
#[derive(Debug, Clone)]
pub struct ResolveSettings {
    /// The hosts file (`/etc/hosts`).
    pub hosts_file: std::path::PathBuf,
    /// Nameservers (from `/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Timeout per nameserver.
    pub timeout: Duration,
}

impl ResolveSettings {
    /// The system's: `/etc/hosts` and the nameservers of `/etc/resolv.conf` (none when it
    /// cannot be read: then only the hosts file answers).
    pub fn system() -> ResolveSettings {
        let nameservers = crate::dns::resolv::read(Path::new("/etc/resolv.conf"))
            .map(|c| c.nameservers)
            .unwrap_or_default();
        ResolveSettings {
            hosts_file: "/etc/hosts".into(),
            nameservers,
            timeout: Duration::from_secs(2),
        }
    }
}

/// The addresses of `host`: an IP literal is itself; else the hosts file's entries; else A
/// and AAAA answers of the nameservers, asked over marked sockets.
pub async fn resolve(host: &str, settings: &ResolveSettings) -> std::io::Result<Vec<IpAddr>> {
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
        return Ok(vec![ip]);
    }
    if let Ok(text) = std::fs::read_to_string(&settings.hosts_file) {
        let found = hosts_lookup(&text, host);
        if !found.is_empty() {
            return Ok(found);
        }
    }
    let mut out = Vec::new();
    for rtype in [RecordType::A, RecordType::AAAA] {
        let query = query_bytes(host, rtype)?;
        if let Some(resp) = crate::dns::upstream::forward(
            &settings.nameservers,
            &query,
            crate::dns::upstream::Transport::Udp,
            settings.timeout,
        )
        .await
            && let Ok(msg) = Message::from_vec(&resp)
        {
            out.extend(msg.answers().iter().filter_map(|r| match r.data() {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            }));
        }
    }
    if out.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "cannot resolve {host:?}: not in {} and no answer from nameservers {:?}",
                settings.hosts_file.display(),
                settings.nameservers
            ),
        ));
    }
    Ok(out)
}

/// The address this machine uses to reach `host:port` (the source address the kernel picks;
/// no packet is sent): a machine's own IP as the rest of the mesh sees it, for a VM that
/// does not name one (Istio's agent reads it from the network interfaces).
pub fn local_address_towards(host: &str, port: u16) -> std::io::Result<IpAddr> {
    use std::net::ToSocketAddrs as _;
    let target = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{host} has no address")))?;
    let bind: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = std::net::UdpSocket::bind(bind)?;
    sock.connect(target)?;
    Ok(sock.local_addr()?.ip())
}

fn query_bytes(host: &str, rtype: RecordType) -> std::io::Result<Vec<u8>> {
    let name = Name::from_ascii(host)
        .map_err(|e| std::io::Error::other(format!("{host:?} is not a DNS name: {e}")))?;
    let mut msg = Message::new();
    msg.set_id(fastrand::u16(..))
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name, rtype));
    msg.to_vec().map_err(std::io::Error::other)
}

/// The addresses a hosts file gives `host` (case-insensitive, `#` comments). Hand-written:
/// the format is one line of `address name [aliases]` and the DNS crates in the tree parse
/// it only inside a full resolver.
fn hosts_lookup(text: &str, host: &str) -> Vec<IpAddr> {
    let host = host.trim_end_matches('.');
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let ip: IpAddr = words.next()?.parse().ok()?;
            words
                .any(|w| w.trim_end_matches('.').eq_ignore_ascii_case(host))
                .then_some(ip)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_lookup() {
        let text = "127.0.0.1 localhost\n# 10.0.0.9 istiod.istio-system.svc\n\
                    10.1.2.3   istiod.istio-system.svc  istiod # the control plane\nbad line\n";
        assert_eq!(
            hosts_lookup(text, "ISTIOD.istio-system.svc."),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(hosts_lookup(text, "istiod").len(), 1);
        assert!(hosts_lookup(text, "nope").is_empty());
    }

    #[tokio::test]
    async fn ip_literals_resolve_to_themselves_and_unknown_names_say_where_they_looked() {
        let settings = ResolveSettings {
            hosts_file: "/nonexistent/hosts".into(),
            nameservers: Vec::new(),
            timeout: Duration::from_millis(50),
        };
        assert_eq!(
            resolve("[::1]", &settings).await.unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        let e = resolve("cp.example.test", &settings).await.unwrap_err();
        assert!(e.to_string().contains("/nonexistent/hosts"), "{e}");
    }
}

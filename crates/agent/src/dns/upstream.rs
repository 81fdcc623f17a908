//! Forwarding to the upstream resolvers (resolv.conf `nameserver`s), one after the other,
//! each with a timeout, as Istio's agent does by default. UDP queries go upstream over UDP,
//! TCP queries over TCP; the answer is relayed as received.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Transport of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP (2-byte length prefix).
    Tcp,
}

/// Largest UDP datagram accepted from an upstream.
const UDP_MAX: usize = 65_535;

async fn exchange_udp(server: SocketAddr, query: &[u8], id: u16) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(server).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; UDP_MAX];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Ignore datagrams that do not answer this query (spoofed or late).
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn exchange_tcp(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(server).await?;
    s.set_nodelay(true)?;
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::other("query longer than 65535 bytes"))?;
    let mut msg = Vec::with_capacity(query.len() + 2);
    msg.extend_from_slice(&len.to_be_bytes());
    msg.extend_from_slice(query);
    s.write_all(&msg).await?;
    let mut lb = [0u8; 2];
    s.read_exact(&mut lb).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(lb))];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Sends `query` to each server in turn until one answers within `timeout`; `None` when
/// none does (the caller answers SERVFAIL).
pub async fn forward(
    servers: &[SocketAddr],
    query: &[u8],
    transport: Transport,
    timeout: Duration,
) -> Option<Vec<u8>> {
    let id = match query {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => return None,
    };
    for &server in servers {
        let attempt = async {
            match transport {
                Transport::Udp => exchange_udp(server, query, id).await,
                Transport::Tcp => exchange_tcp(server, query).await,
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(resp)) => return Some(resp),
            Ok(Err(e)) => tracing::info!(%server, error = %e, "upstream DNS failure"),
            Err(_) => tracing::info!(%server, "upstream DNS timeout"),
        }
    }
    None
}

//! Forwarding to the upstream resolvers (resolv.conf `nameserver`s), one after the other,
//! each with a timeout, as Istio's agent does by default. UDP queries go upstream over UDP,
//! TCP queries over TCP; the answer is relayed as received.
//!
//! Every upstream socket carries the firewall mark [`AGENT_MARK`] (`SO_MARK`, needs
//! `CAP_NET_ADMIN`): with DNS capture the iptables rules return marked packets uncaptured,
//! so the proxy's own queries to port 53 are not redirected back to itself. Without the
//! capability (an unprivileged agent, where no capture rules exist either) the mark is
//! skipped, with one log line.

use std::net::SocketAddr;
use std::time::Duration;

pub use crate::capture::AGENT_MARK;
pub use crate::net::{marked_tcp as upstream_tcp, marked_udp as upstream_udp};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    let sock = upstream_udp(server)?;
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
    let mut s = upstream_tcp(server).await?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::net::UdpSocket;

    /// The upstream sockets carry the mark the capture rules exclude (the test runs as
    /// root, as CI does; SO_MARK needs CAP_NET_ADMIN).
    #[tokio::test]
    async fn upstream_sockets_carry_the_capture_exclusion_mark() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let udp = upstream_udp(addr).unwrap();
        assert_eq!(socket2::SockRef::from(&udp).mark().unwrap(), AGENT_MARK);
        let tcp = upstream_tcp(addr).await.unwrap();
        assert_eq!(socket2::SockRef::from(&tcp).mark().unwrap(), AGENT_MARK);
        // And forwarding still works end to end over UDP.
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            if let Ok((n, from)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let query = [0x12, 0x34, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let got = forward(&[echo_addr], &query, Transport::Udp, Duration::from_secs(5)).await;
        assert_eq!(got.as_deref(), Some(&query[..]));
    }
}

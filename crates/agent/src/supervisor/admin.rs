//! A minimal async HTTP/1.1 client for Envoy's admin API: enough for `/ready`,
//! `/drain_listeners` and `/stats` (which Envoy streams with `Transfer-Encoding: chunked`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one admin request may take, connect to last byte.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest admin response read (a full `/config_dump` of a big mesh is a few MB).
const MAX_RESPONSE: u64 = 64 << 20;

/// An admin API response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    /// HTTP status code.
    pub status: u16,
    /// The body (de-chunked, lossily decoded as UTF-8).
    pub body: String,
}

/// Sends `method path` to the admin listener at `addr` and reads the whole response, within
/// [`ADMIN_TIMEOUT`].
pub async fn admin_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> io::Result<AdminResponse> {
    tokio::time::timeout(ADMIN_TIMEOUT, exchange(addr, method, path))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("admin {method} {path} took longer than {ADMIN_TIMEOUT:?}"),
            )
        })?
}

/// `GET /ready`: `Ok(true)` once Envoy answers 200 (`LIVE`).
pub async fn admin_ready(addr: SocketAddr) -> io::Result<bool> {
    Ok(admin_request(addr, "GET", "/ready").await?.status == 200)
}

async fn exchange(addr: SocketAddr, method: &str, path: &str) -> io::Result<AdminResponse> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE).read_to_end(&mut raw).await?;
    parse_response(&raw)
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Parses a complete `Connection: close` HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> io::Result<AdminResponse> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("admin response without a complete header"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let body = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => code
            .parse::<u16>()
            .map_err(|_| invalid(format!("bad status line {status_line:?}")))?,
        _ => return Err(invalid(format!("bad status line {status_line:?}"))),
    };
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        body[..length.unwrap_or(body.len()).min(body.len())].to_vec()
    };
    Ok(AdminResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("chunked body ends inside a chunk header"))?;
        let size_line = String::from_utf8_lossy(&rest[..line_end]);
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_line:?}")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out); // trailers, if any, are ignored
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| invalid("chunked body ends inside a chunk"))?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
pub(crate) fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sum of `listener.<name>.downstream_cx_active` over all listeners but the admin one: the
/// downstream connections a drain waits for.
///
/// Envoy also keeps per-thread copies (`listener.<name>.worker_0.downstream_cx_active`,
/// `listener.admin.main_thread.downstream_cx_active`); those are skipped so nothing is
/// counted twice, and the admin listener's count includes this very request.
pub async fn active_downstream_connections(addr: SocketAddr) -> io::Result<u64> {
    let path = format!(
        "/stats?filter={}",
        encode_query_value(r"^listener\..*\.downstream_cx_active$")
    );
    let resp = admin_request(addr, "GET", &path).await?;
    if resp.status != 200 {
        return Err(io::Error::other(format!(
            "admin {path} answered {}",
            resp.status
        )));
    }
    Ok(sum_active_connections(&resp.body))
}

fn sum_active_connections(stats: &str) -> u64 {
    stats
        .lines()
        .filter_map(|line| line.split_once(": "))
        .filter(|(name, _)| is_listener_total(name.trim()))
        .filter_map(|(_, value)| value.trim().parse::<u64>().ok())
        .sum()
}

/// `listener.<name>.downstream_cx_active` for a listener other than `admin`, and not a
/// per-thread copy.
fn is_listener_total(stat: &str) -> bool {
    let Some(name) = stat
        .strip_prefix("listener.")
        .and_then(|s| s.strip_suffix(".downstream_cx_active"))
    else {
        return false;
    };
    let last = name.rsplit('.').next().unwrap_or_default();
    let per_thread = last == "main_thread"
        || last
            .strip_prefix("worker_")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    name != "admin" && !per_thread
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_sized_and_chunked_responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nLIVE\nextra").unwrap();
        assert_eq!(
            r,
            AdminResponse {
                status: 200,
                body: "LIVE\n".into()
            }
        );
        let r = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nPRE_\r\nA\r\nINITIALIZE\r\n0\r\nT: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "PRE_INITIALIZE");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nab")
                .is_err()
        );
    }

    #[test]
    fn sums_listener_connections_without_admin() {
        // As Envoy 1.40 prints them (plus a second listener and noise).
        let stats = "http.admin.downstream_cx_active: 1\n\
                     http.web.downstream_cx_active: 2\n\
                     listener.0.0.0.0_15001.downstream_cx_active: 2\n\
                     listener.0.0.0.0_15001.worker_0.downstream_cx_active: 1\n\
                     listener.0.0.0.0_15001.worker_1.downstream_cx_active: 1\n\
                     listener.admin.downstream_cx_active: 1\n\
                     listener.admin.main_thread.downstream_cx_active: 1\n\
                     listener.127.0.0.1_15080.downstream_cx_active: 3\n\
                     listener.127.0.0.1_15080.worker_0.downstream_cx_active: 3\n\
                     garbage line\n";
        assert_eq!(sum_active_connections(stats), 5);
        assert_eq!(sum_active_connections(""), 0);
    }

    #[test]
    fn encodes_regex_filters() {
        assert_eq!(encode_query_value(r"^a\.b$"), "%5Ea%5C.b%24");
    }
}

//! A minimal blocking HTTP/1.1 client over `std::net::TcpStream`, enough for Envoy's admin API
//! and for sending test requests through an Envoy listener.
//!
//! Every request is sent with `Connection: close`. Responses may be `Content-Length`,
//! `Transfer-Encoding: chunked` (Envoy's admin streams `/stats` and `/config_dump` that way)
//! or delimited by EOF.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Default timeout for connecting and for each read/write.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest head or body this client (and [`crate::HttpUpstream`]) accepts, against runaway
/// peers.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header fields in order received; names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request to send with [`send`].
#[derive(Debug, Clone)]
pub struct HttpRequest<'a> {
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// `Host` header value.
    pub host: &'a str,
    /// Request target, e.g. `/ready?x=1`.
    pub path: &'a str,
    /// Extra headers.
    pub headers: &'a [(&'a str, &'a str)],
    /// Body (sent with `Content-Length` when not empty).
    pub body: &'a [u8],
    /// Connect and I/O timeout.
    pub timeout: Duration,
}

impl<'a> HttpRequest<'a> {
    /// A `GET` of `path` with the given `Host`.
    pub fn get(host: &'a str, path: &'a str) -> Self {
        Self {
            method: "GET",
            host,
            path,
            headers: &[],
            body: &[],
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// `GET http://{addr}{path}` with `Host: {host}`.
pub fn http_get(addr: SocketAddr, host: &str, path: &str) -> io::Result<HttpResponse> {
    send(addr, &HttpRequest::get(host, path))
}

/// Sends one request on a fresh connection and reads the whole response.
pub fn send(addr: SocketAddr, req: &HttpRequest<'_>) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, req.timeout)?;
    stream.set_read_timeout(Some(req.timeout))?;
    stream.set_write_timeout(Some(req.timeout))?;
    stream.set_nodelay(true)?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        req.method, req.path, req.host
    );
    for (name, value) in req.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !req.body.is_empty() || matches!(req.method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(req.body)?;
    stream.flush()?;

    let mut reader = BufReader::new(stream);
    let Some((status_line, headers)) = read_head(&mut reader)? else {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    };
    let status = parse_status_line(&status_line)?;
    let no_body = req.method == "HEAD" || status == 204 || status == 304 || status / 100 == 1;
    let body = if no_body {
        Vec::new()
    } else {
        read_body(&mut reader, &headers, true)?
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn parse_status_line(line: &str) -> io::Result<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("bad status line {line:?}")));
    }
    code.parse()
        .map_err(|_| invalid(format!("bad status line {line:?}")))
}

pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

pub(crate) fn find_header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A start line and the header fields (names lower-cased).
pub(crate) type MessageHead = (String, Vec<(String, String)>);

/// Reads a start line and header fields. `Ok(None)` on a clean EOF before any byte.
pub(crate) fn read_head<R: BufRead>(reader: &mut R) -> io::Result<Option<MessageHead>> {
    let mut start = String::new();
    if reader.read_line(&mut start)? == 0 {
        return Ok(None);
    }
    let start = start.trim_end().to_owned();
    let mut headers = Vec::new();
    let mut total = start.len();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF inside message head",
            ));
        }
        total += n;
        if total > MAX_MESSAGE {
            return Err(invalid("message head too large"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(Some((start, headers)));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
}

/// Reads a message body framed by `headers`. With neither chunked encoding nor
/// `Content-Length`, a response body runs to EOF (`to_eof`), a request body is empty.
pub(crate) fn read_body<R: BufRead>(
    reader: &mut R,
    headers: &[(String, String)],
    to_eof: bool,
) -> io::Result<Vec<u8>> {
    let chunked = find_header(headers, "transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return read_chunked(reader);
    }
    if let Some(len) = find_header(headers, "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(format!("bad content-length {len:?}")))?;
        if len > MAX_MESSAGE {
            return Err(invalid("body too large"));
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if to_eof {
        reader.take(MAX_MESSAGE as u64 + 1).read_to_end(&mut body)?;
        if body.len() > MAX_MESSAGE {
            return Err(invalid("body too large"));
        }
    }
    Ok(body)
}

fn read_chunked<R: BufRead>(reader: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        if reader.read_line(&mut size_line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF inside chunked body",
            ));
        }
        let size_hex = size_line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_line:?}")))?;
        if size == 0 {
            // Trailer section: lines until an empty one.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_MESSAGE {
            return Err(invalid("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

/// Percent-encodes a query parameter value (everything but RFC 3986 unreserved characters).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_chunked_bodies_with_extensions_and_trailers() {
        let raw = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nx-trailer: 1\r\n\r\n";
        let body = read_chunked(&mut &raw[..]).unwrap();
        assert_eq!(body, b"Wikipedia");
    }

    #[test]
    fn reads_head_and_sized_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabcdef";
        let mut r = &raw[..];
        let (line, headers) = read_head(&mut r).unwrap().unwrap();
        assert_eq!(parse_status_line(&line).unwrap(), 200);
        assert_eq!(find_header(&headers, "x-a"), Some("b"));
        assert_eq!(read_body(&mut r, &headers, true).unwrap(), b"abc");
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(
            encode_query_value("^cluster\\.a$|b c"),
            "%5Ecluster%5C.a%24%7Cb%20c"
        );
    }
}

//! [`HttpUpstream`]: a tiny HTTP/1.1 server on `127.0.0.1:0` for Envoy to route to.

use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::http::{find_header, read_body, read_head};

/// Header carrying the upstream's name in every response, so a test can tell which upstream
/// served a request that went through Envoy.
pub const UPSTREAM_NAME_HEADER: &str = "x-upstream-name";

/// An idle keep-alive connection is dropped after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One request as the upstream saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Request target (path and query).
    pub path: String,
    /// `Host` header (HTTP/1.1 `:authority` as Envoy forwards it).
    pub host: Option<String>,
    /// All header fields, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
    /// Requests still to answer with `fail_status` (see [`HttpUpstream::fail_next`]).
    fail_remaining: usize,
    fail_status: u16,
    /// Time to wait before answering each request (see [`HttpUpstream::set_delay`]).
    delay: Duration,
}

#[derive(Debug)]
struct State {
    name: String,
    reply: Mutex<Reply>,
    requests: Mutex<Vec<RecordedRequest>>,
    count: AtomicUsize,
    connections: AtomicUsize,
    shutdown: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking connection thread must not take the test's assertions down with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A local HTTP/1.1 upstream (std only, one thread per connection, keep-alive supported).
///
/// By default it answers every request with `200` and its name as the body, plus the
/// [`UPSTREAM_NAME_HEADER`] header. It counts and records requests. Dropping it stops the
/// accept loop; open connections end when the peer closes them or after 30 s idle.
#[derive(Debug)]
pub struct HttpUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl HttpUpstream {
    /// Starts an upstream named `name` answering `200 <name>`.
    pub fn start(name: &str) -> io::Result<Self> {
        Self::with_response(name, 200, name)
    }

    /// Starts an upstream named `name` answering `status` with `body`.
    pub fn with_response(name: &str, status: u16, body: impl Into<String>) -> io::Result<Self> {
        Self::start_at(name, SocketAddr::from(([127, 0, 0, 1], 0)), status, body)
    }

    /// Starts an upstream named `name` on `addr` (e.g. an address added to a test network
    /// namespace's loopback) answering `status` with `body`.
    pub fn start_at(
        name: &str,
        addr: SocketAddr,
        status: u16,
        body: impl Into<String>,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            name: name.to_owned(),
            reply: Mutex::new(Reply {
                status,
                body: body.into(),
                fail_remaining: 0,
                fail_status: 503,
                delay: Duration::ZERO,
            }),
            requests: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        let accept_state = Arc::clone(&state);
        let accept = std::thread::Builder::new()
            .name(format!("upstream-{name}"))
            .spawn(move || accept_loop(&listener, &accept_state))?;
        Ok(Self {
            addr,
            state,
            accept: Some(accept),
        })
    }

    /// The listening address (127.0.0.1 and a kernel-chosen port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Changes the reply for subsequent requests.
    pub fn set_response(&self, status: u16, body: impl Into<String>) {
        let mut reply = lock(&self.state.reply);
        reply.status = status;
        reply.body = body.into();
    }

    /// Answers the next `n` requests with `status` (body `failure <i> of <n>`), then the
    /// normal reply again: an upstream that fails the first attempts of a retried request.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut reply = lock(&self.state.reply);
        reply.fail_remaining = n;
        reply.fail_status = status;
    }

    /// Waits `delay` before answering each subsequent request (the request is recorded and
    /// counted on arrival, before the wait). `Duration::ZERO` turns it off.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state.reply).delay = delay;
    }

    /// Forgets the requests recorded so far and resets the request count (connections stay
    /// counted), so a test can count one phase at a time.
    pub fn clear_requests(&self) {
        let mut requests = lock(&self.state.requests);
        requests.clear();
        self.state.count.store(0, Ordering::SeqCst);
    }

    /// Requests served so far.
    pub fn request_count(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// All requests served so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// The `Host` header of each request (empty string when absent).
    pub fn hosts(&self) -> Vec<String> {
        lock(&self.state.requests)
            .iter()
            .map(|r| r.host.clone().unwrap_or_default())
            .collect()
    }

    /// The path of each request.
    pub fn paths(&self) -> Vec<String> {
        lock(&self.state.requests)
            .iter()
            .map(|r| r.path.clone())
            .collect()
    }
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        self.state.shutdown.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the thread sees the flag.
        // If the wake-up cannot connect (e.g. a capture rule sends it elsewhere), leave the
        // thread: it ends with the process.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(handle) = self.accept.take()
            && woke
        {
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<State>) {
    for stream in listener.incoming() {
        if state.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        state.connections.fetch_add(1, Ordering::SeqCst);
        let conn_state = Arc::clone(state);
        let spawned = std::thread::Builder::new()
            .name(format!("upstream-{}-conn", state.name))
            .spawn(move || {
                let _ = serve_connection(stream, &conn_state);
            });
        if spawned.is_err() {
            continue; // out of threads: drop the connection, the client sees a reset
        }
    }
}

fn serve_connection(stream: TcpStream, state: &State) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some((request_line, headers)) = read_head(&mut reader)? else {
            return Ok(());
        };
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let version = parts.next().unwrap_or_default().to_owned();
        let body = read_body(&mut reader, &headers, false)?;
        let close = version == "HTTP/1.0"
            || find_header(&headers, "connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let host = find_header(&headers, "host").map(str::to_owned);
        lock(&state.requests).push(RecordedRequest {
            method: method.clone(),
            path,
            host,
            headers,
            body,
        });
        state.count.fetch_add(1, Ordering::SeqCst);

        let (status, body, delay) = {
            let mut reply = lock(&state.reply);
            if reply.fail_remaining > 0 {
                reply.fail_remaining -= 1;
                (reply.fail_status, "failure".to_owned(), reply.delay)
            } else {
                (reply.status, reply.body.clone(), reply.delay)
            }
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let body = if method == "HEAD" { "" } else { body.as_str() };
        let response = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
             {UPSTREAM_NAME_HEADER}: {}\r\n{}\r\n{body}",
            reason(status),
            body.len(),
            state.name,
            if close { "connection: close\r\n" } else { "" },
        );
        writer.write_all(response.as_bytes())?;
        writer.flush()?;
        if close || state.shutdown.load(Ordering::SeqCst) {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::http::{HttpRequest, http_get, send};

    #[test]
    fn counts_records_and_answers() {
        let up = HttpUpstream::start("alpha").unwrap();
        let resp = http_get(up.addr(), "svc.local:8080", "/a?b=1").unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "alpha");
        assert_eq!(resp.header(UPSTREAM_NAME_HEADER), Some("alpha"));

        up.set_response(503, "down");
        let resp = send(
            up.addr(),
            &HttpRequest {
                method: "POST",
                body: b"hello",
                headers: &[("x-test", "1")],
                ..HttpRequest::get("other", "/p")
            },
        )
        .unwrap();
        assert_eq!((resp.status, resp.text().as_str()), (503, "down"));

        assert_eq!(up.request_count(), 2);
        assert_eq!(up.hosts(), ["svc.local:8080", "other"]);
        assert_eq!(up.paths(), ["/a?b=1", "/p"]);
        let reqs = up.requests();
        assert_eq!(reqs[1].method, "POST");
        assert_eq!(reqs[1].body, b"hello");
        assert_eq!(reqs[1].header("X-Test"), Some("1"));
    }

    #[test]
    fn serves_several_requests_on_one_keep_alive_connection() {
        use std::io::{BufReader, Write};
        let up = HttpUpstream::start("ka").unwrap();
        let mut stream = TcpStream::connect(up.addr()).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        for i in 0..3 {
            write!(stream, "GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
            let (line, headers) = read_head(&mut reader).unwrap().unwrap();
            assert!(line.starts_with("HTTP/1.1 200"), "{line}");
            assert_eq!(read_body(&mut reader, &headers, false).unwrap(), b"ka");
        }
        assert_eq!(up.request_count(), 3);
        assert_eq!(up.connection_count(), 1);
    }

    #[test]
    fn fails_the_next_requests_then_recovers_and_delays() {
        let up = HttpUpstream::start("flaky").unwrap();
        up.fail_next(2, 503);
        let statuses: Vec<u16> = (0..3)
            .map(|_| http_get(up.addr(), "h", "/").unwrap().status)
            .collect();
        assert_eq!(statuses, [503, 503, 200]);
        assert_eq!(up.request_count(), 3);
        up.clear_requests();
        assert_eq!(up.request_count(), 0);
        assert!(up.paths().is_empty());

        up.set_delay(Duration::from_millis(200));
        let start = std::time::Instant::now();
        let resp = http_get(up.addr(), "h", "/slow").unwrap();
        assert_eq!(resp.status, 200);
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!(up.paths(), ["/slow"]);
    }
}

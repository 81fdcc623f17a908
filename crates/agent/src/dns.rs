//! The agent's DNS proxy (spec §8; Istio's `pkg/dns/client`): UDP and TCP on one address
//! (default `127.0.0.1:15053`, where DNS capture redirects port 53). A/AAAA questions for
//! names in the control plane's [name table](crate::nds) are answered here (TTL 30 s,
//! authoritative, NOERROR with no records for the other family, search-domain CNAME
//! short-cuts, wildcards; see [`lookup`]); everything else is forwarded to the resolv.conf
//! resolvers and relayed. Until the first table arrives every query gets SERVFAIL, as
//! Istio's agent does on its default port.
//!
//! Use:
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use entryway_agent::{dns::{DnsOptions, DnsProxy}, nds::NameTableHandle};
//! let table = NameTableHandle::new(); // or NdsClient::start(..).table()
//! let opts = DnsOptions::system("127.0.0.1:15053".parse().unwrap(), "default")?;
//! let dns = DnsProxy::start(opts, table).await?;
//! println!("DNS on {}", dns.local_addr());
//! # Ok(()) }
//! ```
//!
//! Bad packets never stop the server: an unparsable query with a readable header gets
//! FORMERR, anything shorter is dropped, responses (QR set) are ignored.

pub mod lookup;
pub mod resolv;
pub mod upstream;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::nds::NameTableHandle;
pub use lookup::{Answer, LookupSettings, LookupTable, TTL};
use upstream::Transport;

/// Istio's DNS proxy port.
pub const DEFAULT_PORT: u16 = 15053;
/// Upstream timeout (Istio's).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of the DNS proxy.
#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// UDP and TCP listen address (port 0: the kernel picks one free for both).
    pub addr: SocketAddr,
    /// Upstream resolvers, tried in order.
    pub upstreams: Vec<SocketAddr>,
    /// Search domains (only the first is used, for CNAME short-cuts).
    pub search: Vec<String>,
    /// The proxy's namespace.
    pub proxy_namespace: String,
    /// The proxy's DNS domain (`<ns>.svc.cluster.local`).
    pub proxy_domain: String,
    /// Per-upstream timeout.
    pub upstream_timeout: Duration,
}

impl DnsOptions {
    /// Options with the resolvers and search list of `resolv_conf`.
    pub fn from_resolv_conf(
        addr: SocketAddr,
        resolv_conf: &Path,
        namespace: &str,
    ) -> std::io::Result<DnsOptions> {
        let rc = resolv::read(resolv_conf).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", resolv_conf.display()),
            )
        })?;
        Ok(DnsOptions {
            addr,
            upstreams: rc.nameservers,
            search: rc.search,
            proxy_namespace: namespace.to_string(),
            proxy_domain: format!("{namespace}.svc.cluster.local"),
            upstream_timeout: UPSTREAM_TIMEOUT,
        })
    }

    /// [`DnsOptions::from_resolv_conf`] with `/etc/resolv.conf`.
    pub fn system(addr: SocketAddr, namespace: &str) -> std::io::Result<DnsOptions> {
        Self::from_resolv_conf(addr, Path::new("/etc/resolv.conf"), namespace)
    }

    fn settings(&self) -> LookupSettings {
        LookupSettings {
            proxy_namespace: self.proxy_namespace.clone(),
            proxy_domain: self.proxy_domain.clone(),
            search: self.search.clone(),
        }
    }
}

/// Counters.
#[derive(Debug, Default)]
pub struct DnsStats {
    /// Queries received (UDP and TCP).
    pub queries: AtomicU64,
    /// Answered from the table.
    pub local: AtomicU64,
    /// Forwarded upstream.
    pub forwarded: AtomicU64,
    /// SERVFAIL/FORMERR answers and dropped packets.
    pub failures: AtomicU64,
    /// Lookup tables built (one per name table received).
    pub tables: AtomicU64,
}

struct State {
    table: RwLock<Option<Arc<LookupTable>>>,
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    stats: Arc<DnsStats>,
}

/// The running DNS proxy; stops when dropped.
pub struct DnsHandle {
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    stats: Arc<DnsStats>,
    state: Arc<State>,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsHandle {
    /// The UDP address (the TCP one has the same IP and port).
    pub fn local_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The TCP address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// Counters.
    pub fn stats(&self) -> &DnsStats {
        &self.stats
    }

    /// Number of names answered locally (0 before the first table).
    pub fn names(&self) -> usize {
        self.state
            .table
            .read()
            .ok()
            .and_then(|t| t.as_ref().map(|t| t.len()))
            .unwrap_or(0)
    }

    /// Stops serving.
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for DnsHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The DNS proxy.
pub struct DnsProxy;

async fn bind_both(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    // With port 0, the UDP port the kernel picks may be taken for TCP: try a few times.
    let mut last = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).await?;
        let port_addr = udp.local_addr()?;
        match TcpListener::bind(port_addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("cannot bind UDP and TCP on one port")))
}

impl DnsProxy {
    /// Binds UDP and TCP on `options.addr` and serves, answering from `table` (rebuilt
    /// whenever the handle gets a new name table).
    pub async fn start(options: DnsOptions, table: NameTableHandle) -> std::io::Result<DnsHandle> {
        let (udp, tcp) = bind_both(options.addr).await?;
        let udp_addr = udp.local_addr()?;
        let tcp_addr = tcp.local_addr()?;
        let stats = Arc::new(DnsStats::default());
        let state = Arc::new(State {
            table: RwLock::new(None),
            upstreams: options.upstreams.clone(),
            timeout: options.upstream_timeout,
            stats: Arc::clone(&stats),
        });
        let settings = options.settings();
        let mut rx = table.subscribe();
        // Build the current table before answering the first query.
        let current = rx.borrow_and_update().clone();
        if let Some(nt) = current {
            install(&state, LookupTable::build(&nt, &settings));
        }
        let watcher = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let nt = rx.borrow_and_update().clone();
                    if let Some(nt) = nt {
                        install(&state, LookupTable::build(&nt, &settings));
                    }
                }
            })
        };
        let udp_task = tokio::spawn(serve_udp(Arc::new(udp), Arc::clone(&state)));
        let tcp_task = tokio::spawn(serve_tcp(tcp, Arc::clone(&state)));
        Ok(DnsHandle {
            udp_addr,
            tcp_addr,
            stats,
            state,
            tasks: vec![watcher, udp_task, tcp_task],
        })
    }
}

fn install(state: &State, table: LookupTable) {
    let names = table.len();
    let table = Arc::new(table);
    // The lock is held only for the pointer swap.
    if let Ok(mut t) = state.table.write() {
        *t = Some(table);
    }
    state.stats.tables.fetch_add(1, Ordering::Relaxed);
    debug!(names, "DNS lookup table updated");
}

/// What to do with one query.
#[derive(Debug)]
pub enum Reply {
    /// Send these bytes back.
    Now(Vec<u8>),
    /// Forward upstream (the parsed request, for SERVFAIL and truncation).
    Forward(Box<Message>),
    /// Drop the packet.
    Drop,
}

fn reply_to(req: &Message) -> Message {
    let mut m = Message::new();
    m.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_checking_disabled(req.checking_disabled());
    if let Some(q) = req.queries().first() {
        m.add_query(q.clone());
    }
    m
}

/// A SERVFAIL answer to `req`.
fn servfail(req: &Message) -> Option<Vec<u8>> {
    let mut m = reply_to(req);
    m.set_response_code(ResponseCode::ServFail);
    m.to_vec().ok()
}

/// Largest answer for `req` over `transport` (EDNS payload size, at least 512, over UDP).
fn max_size(req: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => usize::from(req.max_payload()),
    }
}

/// Encodes `m`, dropping records from the end (and setting TC) until it fits in `max`.
fn encode_fitting(mut m: Message, max: usize) -> Option<Vec<u8>> {
    loop {
        let bytes = m.to_vec().ok()?;
        if bytes.len() <= max {
            return Some(bytes);
        }
        m.set_truncated(true);
        if m.additionals_mut().pop().is_some()
            || m.name_servers_mut().pop().is_some()
            || m.answers_mut().pop().is_some()
        {
            continue;
        }
        return Some(bytes);
    }
}

fn shuffle_addresses(records: &mut [Record]) {
    // CNAMEs come first; shuffle the address records after them.
    let first = records
        .iter()
        .position(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        .unwrap_or(records.len());
    let tail = &mut records[first..];
    if tail.len() > 1 {
        fastrand::shuffle(tail);
    }
}

/// Answers one query from `table` (`None`: no table yet).
pub fn answer(table: Option<&LookupTable>, packet: &[u8], transport: Transport) -> Reply {
    let req = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => {
            // A readable header: FORMERR with its id; anything shorter is dropped.
            if packet.len() < 12 || packet[2] & 0x80 != 0 {
                return Reply::Drop;
            }
            let mut m = Message::new();
            m.set_id(u16::from_be_bytes([packet[0], packet[1]]))
                .set_message_type(MessageType::Response)
                .set_response_code(ResponseCode::FormErr);
            return m.to_vec().map_or(Reply::Drop, Reply::Now);
        }
    };
    if req.message_type() == MessageType::Response {
        return Reply::Drop;
    }
    let Some(q) = req.queries().first() else {
        return servfail(&req).map_or(Reply::Drop, Reply::Now);
    };
    let Some(table) = table else {
        debug!("DNS query before the first name table; SERVFAIL");
        return servfail(&req).map_or(Reply::Drop, Reply::Now);
    };
    let qname = q.name().to_lowercase().to_ascii();
    let qname = if qname.ends_with('.') {
        qname
    } else {
        format!("{qname}.")
    };
    match table.lookup(q.query_type(), &qname) {
        Answer::NotFound => Reply::Forward(Box::new(req)),
        Answer::Records(mut records) => {
            shuffle_addresses(&mut records);
            let mut m = reply_to(&req);
            m.set_authoritative(true)
                .set_response_code(ResponseCode::NoError);
            m.insert_answers(records);
            encode_fitting(m, max_size(&req, transport)).map_or(Reply::Drop, Reply::Now)
        }
    }
}

impl State {
    fn current(&self) -> Option<Arc<LookupTable>> {
        self.table.read().ok().and_then(|t| t.clone())
    }

    fn decide(&self, packet: &[u8], transport: Transport) -> Reply {
        self.stats.queries.fetch_add(1, Ordering::Relaxed);
        let table = self.current();
        let r = answer(table.as_deref(), packet, transport);
        match &r {
            Reply::Now(_) if table.is_some() => {
                self.stats.local.fetch_add(1, Ordering::Relaxed);
            }
            Reply::Forward(_) => {
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }

    /// Forwards and returns the bytes to send back (upstream answer or SERVFAIL).
    async fn forward(&self, req: &Message, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        match upstream::forward(&self.upstreams, packet, transport, self.timeout).await {
            Some(resp) => {
                let max = max_size(req, transport);
                if resp.len() <= max {
                    return Some(resp);
                }
                match Message::from_vec(&resp) {
                    Ok(m) => encode_fitting(m, max),
                    Err(_) => servfail(req),
                }
            }
            None => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                servfail(req)
            }
        }
    }
}

async fn serve_udp(sock: Arc<UdpSocket>, state: Arc<State>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "DNS UDP receive error");
                continue;
            }
        };
        let packet = &buf[..n];
        match state.decide(packet, Transport::Udp) {
            Reply::Now(bytes) => {
                if let Err(e) = sock.send_to(&bytes, peer).await {
                    debug!(%peer, error = %e, "DNS UDP send error");
                }
            }
            Reply::Forward(req) => {
                let sock = Arc::clone(&sock);
                let state = Arc::clone(&state);
                let packet = packet.to_vec();
                tokio::spawn(async move {
                    if let Some(bytes) = state.forward(&req, &packet, Transport::Udp).await
                        && let Err(e) = sock.send_to(&bytes, peer).await
                    {
                        debug!(%peer, error = %e, "DNS UDP send error");
                    }
                });
            }
            Reply::Drop => {}
        }
    }
}

async fn serve_tcp(listener: TcpListener, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(tcp_conn(stream, Arc::clone(&state)));
            }
            Err(e) => {
                warn!(error = %e, "DNS TCP accept error");
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Idle time after which a TCP client connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(30);

async fn tcp_conn(mut stream: TcpStream, state: Arc<State>) {
    let _ = stream.set_nodelay(true);
    loop {
        let mut lb = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut lb)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(lb))];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let bytes = match state.decide(&packet, Transport::Tcp) {
            Reply::Now(b) => b,
            Reply::Forward(req) => match state.forward(&req, &packet, Transport::Tcp).await {
                Some(b) => b,
                None => continue,
            },
            Reply::Drop => continue,
        };
        let Ok(len) = u16::try_from(bytes.len()) else {
            continue;
        };
        let mut out = Vec::with_capacity(bytes.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&bytes);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

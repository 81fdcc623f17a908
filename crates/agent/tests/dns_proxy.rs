//! The DNS proxy over real sockets: a blocking UDP/TCP client (hickory-proto messages)
//! against the running server, with a local fake upstream resolver (never the machine's).
//! Cases follow Istio's `pkg/dns/client` tests (spec §8).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use entryway_agent::dns::{DnsHandle, DnsOptions, DnsProxy};
use entryway_agent::nds::{NameInfo, NameTable, NameTableHandle};
use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

const BOUND: Duration = Duration::from_secs(3);

fn query_msg(name: &str, qtype: RecordType, id: u16) -> Message {
    let mut m = Message::new();
    m.set_id(id).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    m
}

fn udp_exchange(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(BOUND)).expect("timeout");
    s.send_to(bytes, server).expect("send");
    let mut buf = vec![0u8; 65_535];
    let n = s.recv(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn udp(server: SocketAddr, m: &Message) -> Message {
    let resp = udp_exchange(server, &m.to_vec().expect("encode")).expect("an answer");
    let r = Message::from_vec(&resp).expect("decodable answer");
    assert_eq!(r.id(), m.id());
    assert_eq!(r.message_type(), MessageType::Response);
    r
}

fn tcp(server: SocketAddr, m: &Message) -> Message {
    let mut s = TcpStream::connect(server).expect("connect");
    s.set_read_timeout(Some(BOUND)).expect("timeout");
    let b = m.to_vec().expect("encode");
    let mut out = (u16::try_from(b.len()).expect("len"))
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(&b);
    s.write_all(&out).expect("write");
    let mut lb = [0u8; 2];
    s.read_exact(&mut lb).expect("length");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(lb))];
    s.read_exact(&mut buf).expect("body");
    Message::from_vec(&buf).expect("decodable answer")
}

/// `name ttl TYPE data` per answer.
fn answers(r: &Message) -> Vec<String> {
    r.answers()
        .iter()
        .map(|a| format!("{} {} {} {}", a.name(), a.ttl(), a.record_type(), a.data()))
        .collect()
}

fn info(ips: &[&str]) -> NameInfo {
    NameInfo {
        ips: ips.iter().map(|s| s.to_string()).collect(),
        registry: "External".into(),
        ..NameInfo::default()
    }
}

fn table() -> NameTable {
    let mut t = BTreeMap::new();
    t.insert("www.google.com".into(), info(&["1.1.1.1"]));
    t.insert(
        "dual.localhost".into(),
        info(&["2.2.2.2", "2001:db8::ff00:42:8329"]),
    );
    t.insert("ipv4.localhost".into(), info(&["2.2.2.2"]));
    t.insert("*.wildcard".into(), info(&["10.10.10.10"]));
    t.insert("*.b.wildcard".into(), info(&["11.11.11.11"]));
    t.insert(
        "rr.localhost".into(),
        info(&["3.3.3.1", "3.3.3.2", "3.3.3.3"]),
    );
    let giant: Vec<String> = (0..64).map(|i| format!("240.0.0.{i}")).collect();
    t.insert(
        "giant.localhost".into(),
        NameInfo {
            ips: giant,
            registry: "External".into(),
            ..NameInfo::default()
        },
    );
    NameTable {
        table: t,
        name_info: None,
    }
}

/// A fake upstream resolver on UDP: `upstream.test.` A → 7.7.7.7, anything else NXDOMAIN.
struct Upstream {
    addr: SocketAddr,
    queries: Arc<AtomicU64>,
}

async fn upstream() -> Upstream {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = sock.local_addr().expect("addr");
    let queries = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&queries);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::new();
            resp.set_id(req.id())
                .set_message_type(MessageType::Response)
                .set_recursion_available(true);
            let q = req.queries()[0].clone();
            if q.name().to_ascii() == "upstream.test." && q.query_type() == RecordType::A {
                resp.add_answer(Record::from_rdata(
                    q.name().clone(),
                    300,
                    RData::A(A::new(7, 7, 7, 7)),
                ));
            } else {
                resp.set_response_code(ResponseCode::NXDomain);
            }
            resp.add_query(q);
            let _ = sock.send_to(&resp.to_vec().expect("encode"), peer).await;
        }
    });
    Upstream { addr, queries }
}

fn options(upstreams: Vec<SocketAddr>, timeout: Duration) -> DnsOptions {
    DnsOptions {
        addr: "127.0.0.1:0".parse().expect("addr"),
        upstreams,
        search: vec![
            "ns1.svc.cluster.local".into(),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ],
        proxy_namespace: "ns1".into(),
        proxy_domain: "ns1.svc.cluster.local".into(),
        upstream_timeout: timeout,
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    dns: DnsHandle,
    upstream: Upstream,
}

fn fixture(table: NameTableHandle) -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (dns, upstream) = rt.block_on(async {
        let up = upstream().await;
        let dns = DnsProxy::start(options(vec![up.addr], BOUND), table)
            .await
            .expect("start DNS proxy");
        (dns, up)
    });
    Fixture { rt, dns, upstream }
}

#[test]
fn local_answers_follow_istio_rules() {
    let f = fixture(NameTableHandle::with_table(table()));
    let addr = f.dns.local_addr();

    let r = udp(addr, &query_msg("www.google.com.", RecordType::A, 1));
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert!(r.authoritative());
    assert_eq!(r.queries()[0].name().to_ascii(), "www.google.com.");
    assert_eq!(answers(&r), vec!["www.google.com. 30 A 1.1.1.1"]);

    // Case-insensitive, as DNS is.
    let r = udp(addr, &query_msg("WWW.Google.COM.", RecordType::A, 2));
    assert_eq!(answers(&r), vec!["www.google.com. 30 A 1.1.1.1"]);

    let r = udp(addr, &query_msg("dual.localhost.", RecordType::AAAA, 3));
    assert_eq!(
        answers(&r),
        vec!["dual.localhost. 30 AAAA 2001:db8::ff00:42:8329"]
    );
    let r = udp(addr, &query_msg("dual.localhost.", RecordType::A, 4));
    assert_eq!(answers(&r), vec!["dual.localhost. 30 A 2.2.2.2"]);

    // The other family: NOERROR, authoritative, no records (not NXDOMAIN).
    let r = udp(addr, &query_msg("ipv4.localhost.", RecordType::AAAA, 5));
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert!(r.authoritative());
    assert!(r.answers().is_empty());

    // Wildcards, most specific first, owner rewritten to the name asked for.
    let r = udp(addr, &query_msg("foo.wildcard.", RecordType::A, 6));
    assert_eq!(answers(&r), vec!["foo.wildcard. 30 A 10.10.10.10"]);
    let r = udp(addr, &query_msg("a.b.wildcard.", RecordType::A, 7));
    assert_eq!(answers(&r), vec!["a.b.wildcard. 30 A 11.11.11.11"]);

    // Search-domain expansion: CNAME to the host plus its A record in one answer.
    let r = udp(
        addr,
        &query_msg("www.google.com.ns1.svc.cluster.local.", RecordType::A, 8),
    );
    assert_eq!(
        answers(&r),
        vec![
            "www.google.com.ns1.svc.cluster.local. 30 CNAME www.google.com.",
            "www.google.com. 30 A 1.1.1.1"
        ]
    );

    // Several addresses: all of them, in some order.
    let r = udp(addr, &query_msg("rr.localhost.", RecordType::A, 9));
    let mut got = answers(&r);
    got.sort();
    assert_eq!(
        got,
        vec![
            "rr.localhost. 30 A 3.3.3.1",
            "rr.localhost. 30 A 3.3.3.2",
            "rr.localhost. 30 A 3.3.3.3"
        ]
    );

    // Same over TCP.
    let r = tcp(addr, &query_msg("foo.wildcard.", RecordType::A, 10));
    assert_eq!(answers(&r), vec!["foo.wildcard. 30 A 10.10.10.10"]);

    assert_eq!(
        f.upstream.queries.load(Ordering::SeqCst),
        0,
        "nothing was forwarded"
    );
    drop(f.rt);
}

#[test]
fn unknown_names_and_other_types_are_forwarded_to_upstream() {
    let f = fixture(NameTableHandle::with_table(table()));
    let addr = f.dns.local_addr();
    let r = udp(addr, &query_msg("upstream.test.", RecordType::A, 20));
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert!(!r.authoritative());
    assert_eq!(answers(&r), vec!["upstream.test. 300 A 7.7.7.7"]);
    let r = udp(addr, &query_msg("nothing.test.", RecordType::A, 21));
    assert_eq!(r.response_code(), ResponseCode::NXDomain);
    // A non-A/AAAA type for a local name goes upstream too.
    let r = udp(addr, &query_msg("www.google.com.", RecordType::TXT, 22));
    assert_eq!(r.response_code(), ResponseCode::NXDomain);
    assert_eq!(f.upstream.queries.load(Ordering::SeqCst), 3);
    assert_eq!(f.dns.stats().forwarded.load(Ordering::SeqCst), 3);
}

#[test]
fn large_answers_are_truncated_over_udp_only() {
    let f = fixture(NameTableHandle::with_table(table()));
    let addr = f.dns.local_addr();
    let r = udp(addr, &query_msg("giant.localhost.", RecordType::A, 30));
    assert!(r.truncated(), "64 A records do not fit in 512 bytes");
    assert!(!r.answers().is_empty() && r.answers().len() < 64);
    let mut big = query_msg("giant.localhost.", RecordType::A, 31);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    big.set_edns(edns);
    let r = udp(addr, &big);
    assert!(!r.truncated());
    assert_eq!(r.answers().len(), 64);
    let r = tcp(addr, &query_msg("giant.localhost.", RecordType::A, 32));
    assert!(!r.truncated());
    assert_eq!(r.answers().len(), 64);
}

#[test]
fn bad_packets_never_stop_the_server() {
    let f = fixture(NameTableHandle::with_table(table()));
    let addr = f.dns.local_addr();
    // Too short for a header: dropped.
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    s.send_to(&[1, 2, 3], addr).expect("send");
    let mut buf = [0u8; 512];
    assert!(s.recv(&mut buf).is_err(), "no answer to 3 bytes");
    // A header with a question count but garbage after it: FORMERR with the same id.
    let mut junk = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    junk.extend_from_slice(&[0xff; 7]);
    let resp = udp_exchange(addr, &junk).expect("FORMERR answer");
    let r = Message::from_vec(&resp).expect("decodes");
    assert_eq!(r.id(), 0xabcd);
    assert_eq!(r.response_code(), ResponseCode::FormErr);
    // A query with no question: SERVFAIL.
    let mut empty = Message::new();
    empty.set_id(77);
    let r = udp(addr, &empty);
    assert_eq!(r.response_code(), ResponseCode::ServFail);
    // Random bytes of many lengths, then a normal query still works.
    let mut seed: u32 = 12345;
    for len in 0..200usize {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as u8
            })
            .collect();
        let _ = s.send_to(&bytes, addr);
    }
    let r = udp(addr, &query_msg("www.google.com.", RecordType::A, 40));
    assert_eq!(answers(&r), vec!["www.google.com. 30 A 1.1.1.1"]);
    // Over TCP, a garbage frame does not close the server either.
    let mut t = TcpStream::connect(addr).expect("connect");
    t.write_all(&[0, 4, 1, 2, 3, 4]).expect("write");
    drop(t);
    let r = tcp(addr, &query_msg("www.google.com.", RecordType::A, 41));
    assert_eq!(answers(&r), vec!["www.google.com. 30 A 1.1.1.1"]);
}

#[test]
fn servfail_before_the_first_table_and_when_upstream_is_down() {
    let handle = NameTableHandle::new();
    let f = fixture(handle.clone());
    let addr = f.dns.local_addr();
    let r = udp(addr, &query_msg("www.google.com.", RecordType::A, 50));
    assert_eq!(r.response_code(), ResponseCode::ServFail);
    handle.set(table());
    let r = entryway_testkit::poll::eventually(BOUND, || {
        let r = udp(addr, &query_msg("www.google.com.", RecordType::A, 51));
        (r.response_code() == ResponseCode::NoError).then_some(r)
    })
    .expect("answers once the table arrives");
    assert_eq!(answers(&r), vec!["www.google.com. 30 A 1.1.1.1"]);

    // An upstream that never answers: SERVFAIL after the timeout.
    let dead = UdpSocket::bind("127.0.0.1:0").expect("bind a silent upstream");
    let dead_addr = dead.local_addr().expect("addr");
    let dns = f.rt.block_on(async {
        DnsProxy::start(
            options(vec![dead_addr], Duration::from_millis(200)),
            NameTableHandle::with_table(table()),
        )
        .await
        .expect("start")
    });
    let r = udp(
        dns.local_addr(),
        &query_msg("upstream.test.", RecordType::A, 52),
    );
    assert_eq!(r.response_code(), ResponseCode::ServFail);
}

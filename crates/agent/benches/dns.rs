//! Latency of a cached DNS answer from the agent's DNS proxy, against a same-run baseline.
//!
//! Run: `cargo bench -p entryway-agent --bench dns` (optional argument: number of queries,
//! default 10,000).
//!
//! A blocking UDP client on loopback sends one query at a time and waits for the answer:
//! - `udp echo`: a UDP echo server on the same tokio runtime (the floor: two loopback hops
//!   and a task wake-up);
//! - `cached A`: an A query for a name in the table;
//! - `cached CNAME+A`: the search-domain variant (`<host>.<first search domain>.`);
//! - `in-process answer()`: the decision and encoding alone, without sockets.
//!
//! Printed per case: median and p99 in µs, and the median as a ratio to the echo baseline.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use entryway_agent::dns::lookup::{LookupSettings, LookupTable};
use entryway_agent::dns::upstream::Transport;
use entryway_agent::dns::{DnsOptions, DnsProxy, Reply, answer};
use entryway_agent::nds::{NameInfo, NameTable, NameTableHandle};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

fn query(name: &str) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(4242).set_recursion_desired(true);
    m.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        RecordType::A,
    ));
    m.to_vec().expect("encode")
}

fn table(hosts: usize) -> NameTable {
    let mut t = BTreeMap::new();
    for i in 0..hosts {
        t.insert(
            format!("svc-{i}.example.com"),
            NameInfo {
                ips: vec![format!("240.240.{}.{}", i / 250, i % 250 + 1)],
                registry: "External".into(),
                ..NameInfo::default()
            },
        );
    }
    NameTable {
        table: t,
        name_info: None,
    }
}

struct Stats {
    median: Duration,
    p99: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        median: at(0.5),
        p99: at(0.99),
    }
}

fn round_trips(server: SocketAddr, packet: &[u8], n: usize) -> Vec<Duration> {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    s.connect(server).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = [0u8; 1500];
    for _ in 0..1_000 {
        s.send(packet).expect("send");
        s.recv(&mut buf).expect("warm-up answer");
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.send(packet).expect("send");
        let len = s.recv(&mut buf).expect("answer");
        out.push(t.elapsed());
        assert!(len >= 12);
    }
    out
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let hosts = 1_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (dns, echo) = rt.block_on(async {
        let echo = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind echo");
        let echo_addr = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..n], peer).await;
            }
        });
        let dns = DnsProxy::start(
            DnsOptions {
                addr: "127.0.0.1:0".parse().expect("addr"),
                upstreams: Vec::new(),
                search: vec!["default.svc.cluster.local".into()],
                proxy_namespace: "default".into(),
                proxy_domain: "default.svc.cluster.local".into(),
                upstream_timeout: Duration::from_secs(1),
            },
            NameTableHandle::with_table(table(hosts)),
        )
        .await
        .expect("start DNS proxy");
        (dns, echo_addr)
    });
    let a = query("svc-500.example.com.");
    let cname = query("svc-500.example.com.default.svc.cluster.local.");

    let base = stats(round_trips(echo, &a, n));
    let cached = stats(round_trips(dns.local_addr(), &a, n));
    let chained = stats(round_trips(dns.local_addr(), &cname, n));

    let lookup = LookupTable::build(
        &table(hosts),
        &LookupSettings {
            proxy_namespace: "default".into(),
            proxy_domain: "default.svc.cluster.local".into(),
            search: vec!["default.svc.cluster.local".into()],
        },
    );
    let mut inproc = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = answer(Some(&lookup), &a, Transport::Udp);
        inproc.push(t.elapsed());
        assert!(matches!(r, Reply::Now(_)));
    }
    let inproc = stats(inproc);

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("DNS proxy, {n} sequential queries per case, {hosts} hosts in the table");
    println!(
        "{:<22} {:>10} {:>10} {:>14}",
        "case", "median µs", "p99 µs", "median / echo"
    );
    for (name, s) in [
        ("udp echo (baseline)", &base),
        ("cached A", &cached),
        ("cached CNAME+A", &chained),
        ("in-process answer()", &inproc),
    ] {
        println!(
            "{:<22} {:>10.1} {:>10.1} {:>14.2}",
            name,
            us(s.median),
            us(s.p99),
            us(s.median) / us(base.median)
        );
    }
    drop(dns);
}

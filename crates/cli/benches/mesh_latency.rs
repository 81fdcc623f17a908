//! Extra latency of mutual TLS through two sidecars (issue 9), on the product's own path:
//! the three-host mesh of the acceptance tests ([`ThreeHosts`]: `entryway serve` on one host,
//! `entryway proxy` agents with Envoy on two VMs, capture on both), a client on VM A calling
//! `b.shop.mesh` on VM B.
//!
//! Two phases, measured in the same run, same hosts, same agents:
//! - **mTLS**: the DestinationRule says ISTIO_MUTUAL (workload certificates from the mesh CA);
//! - **plain text**: the same DestinationRule with `tls: DISABLE` (B's inbound side is
//!   PERMISSIVE, so it accepts plain text) — the same two sidecars, no TLS.
//!
//! One keep-alive HTTP/1.1 connection from the client to A's sidecar; each phase sends a
//! warm-up, then `ENTRYWAY_BENCH_REQUESTS` (default 3000) sequential requests. Printed:
//! p50/p90/p99 per phase, the ratio and the difference of p90 (Istio publishes +2.7 ms p90
//! for two sidecars with mTLS and telemetry).
//!
//! Needs root (network namespaces, iptables). Run: `cargo bench -p entryway --bench mesh_latency`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use entryway_testkit::eventually_ok;
use entryway_testkit::mesh::{A, B_BODY, CONFIG, MeshOptions, ThreeHosts, in_ns};

fn requests() -> usize {
    std::env::var("ENTRYWAY_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// One GET over a kept-alive connection; the body.
fn get(reader: &mut BufReader<TcpStream>, path: &str) -> std::io::Result<String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: b.shop.mesh\r\n\r\n");
    reader.get_mut().write_all(req.as_bytes())?;
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    if !status.contains(" 200 ") {
        return Err(std::io::Error::other(format!(
            "{} {}",
            status.trim(),
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Latencies of `n` sequential requests over one connection (made in A's namespace).
fn phase(m: &ThreeHosts, n: usize) -> Vec<Duration> {
    in_ns(&m.lan.hosts[A], || {
        // The name resolves through A's DNS proxy (port 53 is captured there).
        let addr: SocketAddr = ("b.shop.mesh", 80)
            .to_socket_addrs()
            .expect("resolve b.shop.mesh")
            .next()
            .expect("an address");
        let conn = TcpStream::connect(addr).expect("connect");
        conn.set_nodelay(true).expect("nodelay");
        let mut reader = BufReader::new(conn);
        for _ in 0..200 {
            assert_eq!(get(&mut reader, "/warm").expect("warm-up"), B_BODY);
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let body = get(&mut reader, "/bench").expect("request");
            out.push(t.elapsed());
            assert_eq!(body, B_BODY);
        }
        out
    })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(name: &str, mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let (p50, p90, p99) = (pct(&v, 0.5), pct(&v, 0.9), pct(&v, 0.99));
    println!(
        "{name:<11} n={} p50={:.3} ms p90={:.3} ms p99={:.3} ms",
        v.len(),
        ms(p50),
        ms(p90),
        ms(p99)
    );
    (p50, p90, p99)
}

fn main() {
    let entryway = PathBuf::from(env!("CARGO_BIN_EXE_entryway"));
    let options = MeshOptions {
        envoy_log_level: Some("warning".into()),
        ..MeshOptions::default()
    };
    let m = ThreeHosts::start(&entryway, options, tempfile::tempdir().expect("tmp"));
    m.wait_a_reaches_b("/ready");
    let n = requests();

    let mtls = summary("mTLS", phase(&m, n));

    // The same path without TLS: the DestinationRule disables it.
    let plain_config = CONFIG.replace(
        "trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}",
        "trafficPolicy: {tls: {mode: DISABLE}}",
    );
    assert_ne!(plain_config, CONFIG, "the DestinationRule changed");
    std::fs::write(m.path("cfg/b.yaml"), plain_config).expect("write config");
    // Wait until A's cluster has no TLS transport socket any more.
    eventually_ok(Duration::from_secs(20), || {
        let dump = entryway_testkit::mesh::admin(
            &m.lan.hosts[A],
            15000,
            "/config_dump?resource=dynamic_active_clusters",
        );
        let cluster = dump
            .split("\"name\": \"outbound|80|v1|b.shop.mesh\"")
            .nth(1)
            .unwrap_or_default()
            .split("\"name\": \"outbound|")
            .next()
            .unwrap_or_default()
            .to_string();
        if !cluster.is_empty() && !cluster.contains("UpstreamTlsContext") {
            Ok(())
        } else {
            Err("still TLS".to_string())
        }
    })
    .expect("plain-text DestinationRule applied");
    let plain = summary("plain text", phase(&m, n));
    // Check the plain phase really skipped mTLS: no client identity at B.
    let last = m.upstream.requests().pop().expect("requests");
    assert_eq!(
        last.header("x-forwarded-client-cert"),
        None,
        "plain phase still used mTLS"
    );

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "mtls_over_plain p50_ratio={:.3} p90_ratio={:.3} p99_ratio={:.3} p90_extra_ms={:.3}",
        ratio(mtls.0, plain.0),
        ratio(mtls.1, plain.1),
        ratio(mtls.2, plain.2),
        ms(mtls.1) - ms(plain.1)
    );
}

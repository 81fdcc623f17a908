//! TLS origination and TLS/TCP routes on real Envoy.
//!
//! - Origination: the application sends plain HTTP (through the explicit-proxy listener) to a
//!   port-80 ServiceEntry whose DestinationRule sets `tls.mode: SIMPLE` or `MUTUAL`; Envoy
//!   speaks TLS to a local `openssl s_server` with a throw-away CA. Certificates reach Envoy
//!   from the agent's SDS server (`file-root:<ca>`, `file-cert:<cert>~<key>`). SIMPLE checks
//!   the server's SAN (a wrong SAN fails); MUTUAL presents a client certificate the server
//!   requires (SIMPLE to the same server fails). Without `sni`/`subjectAltNames`, SNI and the
//!   SAN check come from the Host (auto SNI / auto SAN validation): another name fails.
//! - Routes: in a network namespace with Istio-style capture (iptables REDIRECT to
//!   virtualOutbound, Envoy's group excluded), a VirtualService `tls` route forwards by SNI
//!   and a `tcp` route by port, each to a DestinationRule subset.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{Explicit, Sds, destination_rule, service_entry, virtual_service};
use entryway::xds::{generate, static_bootstrap, valid_configs};
use entryway_model::api::MeshConfig;
use entryway_model::registry::Proxy;
use entryway_testkit::netns::Netns;
use entryway_testkit::{
    EnvoyHarness, EnvoyOptions, HttpUpstream, TLS_UPSTREAM_PATH, TlsUpstream, eventually_ok,
    free_port, http_get,
};

fn tls_se(name: &str, host: &str, server: &TlsUpstream) -> String {
    service_entry(
        name,
        &format!(
            "  hosts: [{host}]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]\n",
            server.port()
        ),
    )
}

fn path(p: std::path::PathBuf) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn plain_http_is_originated_as_simple_and_mutual_tls() {
    let simple = TlsUpstream::start("simple-server", "secure.example.com").expect("tls server");
    let mutual = TlsUpstream::start_mutual("mutual-server", "mutual.example.com").expect("mtls");
    let auto = TlsUpstream::start("auto-server", "auto.example.com").expect("tls server");
    let sds = Sds::start();
    let yaml = [
        // SIMPLE without sni and SANs: auto SNI from the Host header and auto SAN validation.
        tls_se("auto", "auto.example.com", &auto),
        destination_rule(
            "auto",
            &format!(
                "  host: auto.example.com\n  trafficPolicy:\n    tls: {{mode: SIMPLE, caCertificates: {}}}\n",
                path(auto.ca_path())
            ),
        ),
        // The same server under another name: the auto SAN check (the Host) fails.
        tls_se("autowrong", "autowrong.example.com", &auto),
        destination_rule(
            "autowrong",
            &format!(
                "  host: autowrong.example.com\n  trafficPolicy:\n    tls: {{mode: SIMPLE, caCertificates: {}}}\n",
                path(auto.ca_path())
            ),
        ),
        // SIMPLE with the server's CA and its SAN: works.
        tls_se("secure", "secure.example.com", &simple),
        destination_rule(
            "secure",
            &format!(
                "  host: secure.example.com\n  trafficPolicy:\n    tls: {{mode: SIMPLE, sni: secure.example.com, caCertificates: {}, subjectAltNames: [secure.example.com]}}\n",
                path(simple.ca_path())
            ),
        ),
        // The same server, but the DR expects another SAN: verification fails.
        tls_se("wrongsan", "wrongsan.example.com", &simple),
        destination_rule(
            "wrongsan",
            &format!(
                "  host: wrongsan.example.com\n  trafficPolicy:\n    tls: {{mode: SIMPLE, sni: secure.example.com, caCertificates: {}, subjectAltNames: [other.example.com]}}\n",
                path(simple.ca_path())
            ),
        ),
        // MUTUAL with a client certificate the server's CA issued: works.
        tls_se("mutual", "mutual.example.com", &mutual),
        destination_rule(
            "mutual",
            &format!(
                "  host: mutual.example.com\n  trafficPolicy:\n    tls: {{mode: MUTUAL, sni: mutual.example.com, caCertificates: {}, clientCertificate: {}, privateKey: {}, subjectAltNames: [mutual.example.com]}}\n",
                path(mutual.ca_path()),
                path(mutual.client_cert_path()),
                path(mutual.client_key_path())
            ),
        ),
        // SIMPLE to the server that requires a client certificate: rejected.
        tls_se("nocert", "nocert.example.com", &mutual),
        destination_rule(
            "nocert",
            &format!(
                "  host: nocert.example.com\n  trafficPolicy:\n    tls: {{mode: SIMPLE, sni: mutual.example.com, caCertificates: {}}}\n",
                path(mutual.ca_path())
            ),
        ),
    ]
    .concat();
    let socket = sds.socket();
    let px = Explicit::start_with_sds(&yaml, Some(&socket));

    // SIMPLE: plain HTTP from the application, TLS to the server (which speaks nothing else).
    let r = px.first("secure.example.com", TLS_UPSTREAM_PATH, 200);
    assert_eq!(r.text(), "simple-server");
    let c = "cluster.outbound|80||secure.example.com;";
    assert!(px.stat(&format!("{c}.ssl.handshake")) >= 1);

    // Wrong SAN: Envoy refuses the server's certificate.
    let (r, _) = px.timed_get("wrongsan.example.com", TLS_UPSTREAM_PATH, &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    let c = "cluster.outbound|80||wrongsan.example.com;";
    assert!(
        px.stat(&format!("{c}.ssl.fail_verify_san")) >= 1,
        "{}",
        px.log()
    );
    assert_eq!(px.stat(&format!("{c}.ssl.handshake")), 0);

    // Auto SNI / auto SAN (no sni, no subjectAltNames in the DR).
    let r = px.first("auto.example.com", TLS_UPSTREAM_PATH, 200);
    assert_eq!(r.text(), "auto-server");
    let (r, _) = px.timed_get("autowrong.example.com", TLS_UPSTREAM_PATH, &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    let c = "cluster.outbound|80||autowrong.example.com;";
    assert!(
        px.stat(&format!("{c}.ssl.fail_verify_san")) >= 1,
        "{}",
        px.log()
    );

    // MUTUAL: the server requires and verifies Envoy's client certificate.
    let r = px.first("mutual.example.com", TLS_UPSTREAM_PATH, 200);
    assert_eq!(r.text(), "mutual-server");

    // No client certificate: the server ends the handshake; the application gets 503.
    let (r, _) = px.timed_get("nocert.example.com", TLS_UPSTREAM_PATH, &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    let c = "cluster.outbound|80||nocert.example.com;";
    assert_eq!(px.stat(&format!("{c}.upstream_rq_200")), 0);
    let _ = px.envoy.shutdown();
}

const PROXY_GID: u32 = 1337;
/// Addresses applications call; they look external but live on the namespace's loopback.
const TLS_VIP: &str = "203.0.113.30";
const TCP_VIP: &str = "203.0.113.40";

fn in_own_thread(f: fn()) {
    std::thread::spawn(f)
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// `curl https://<sni>:443<path>` with the name resolved to `addr`, run in the namespace.
fn curl_tls(sni: &str, addr: &str, ca: &std::path::Path) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--noproxy", "*", "--resolve"])
        .arg(format!("{sni}:443:{addr}"))
        .arg("--cacert")
        .arg(ca)
        .arg(format!("https://{sni}{TLS_UPSTREAM_PATH}"))
        .output()
        .expect("run curl (apt-get install curl)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn tls_and_tcp_routes() {
    let ns = Netns::create().expect("create network namespace");
    for vip in [TLS_VIP, TCP_VIP] {
        ns.add_loopback_address(&format!("{vip}/32"))
            .expect("address");
    }
    ns.enter_current_thread().expect("enter namespace");

    // TLS backends, one per SNI name, each with its own CA: the certificate the client
    // verifies says which backend answered.
    let tls_a = TlsUpstream::start("tls-a", "a.example.com").expect("tls server");
    let tls_b = TlsUpstream::start("tls-b", "b.example.com").expect("tls server");
    // TCP backends (HTTP over TCP so the answer names the backend).
    let tcp_1 = HttpUpstream::start("tcp-v1").expect("upstream");
    let tcp_2 = HttpUpstream::start("tcp-v2").expect("upstream");

    let outbound_port = free_port().expect("port");
    let mesh = MeshConfig {
        proxy_listen_port: i32::from(outbound_port),
        ..MeshConfig::default()
    };
    let yaml = [
        // The names applications use, on a VIP.
        service_entry(
            "front",
            &format!(
                "  hosts: [a.example.com, b.example.com]\n  addresses: [{TLS_VIP}]\n  ports: [{{number: 443, name: tls, protocol: TLS}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{tls: 9}}}}]\n"
            ),
        ),
        // Where they really go: subsets of one backend service.
        service_entry(
            "tls-backend",
            &format!(
                "  hosts: [tls-backend.internal]\n  ports: [{{number: 443, name: tls, protocol: TLS}}]\n  resolution: STATIC\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{tls: {}}}, labels: {{v: a}}}}\n  - {{address: 127.0.0.1, ports: {{tls: {}}}, labels: {{v: b}}}}\n",
                tls_a.port(),
                tls_b.port()
            ),
        ),
        destination_rule(
            "tls-backend",
            "  host: tls-backend.internal\n  subsets: [{name: a, labels: {v: a}}, {name: b, labels: {v: b}}]\n",
        ),
        virtual_service(
            "front",
            "  hosts: [a.example.com, b.example.com]\n  tls:\n  \
             - match: [{port: 443, sniHosts: [a.example.com]}]\n    route: [{destination: {host: tls-backend.internal, subset: a, port: {number: 443}}}]\n  \
             - match: [{port: 443, sniHosts: [b.example.com]}]\n    route: [{destination: {host: tls-backend.internal, subset: b, port: {number: 443}}}]\n",
        ),
        // A TCP service on two ports; a tcp route per port picks a subset.
        service_entry(
            "db",
            &format!(
                "  hosts: [db.example.com]\n  addresses: [{TCP_VIP}]\n  ports: [{{number: 7001, name: tcp-one, protocol: TCP}}, {{number: 7002, name: tcp-two, protocol: TCP}}]\n  resolution: STATIC\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{tcp-one: {p1}, tcp-two: {p1}}}, labels: {{v: one}}}}\n  - {{address: 127.0.0.1, ports: {{tcp-one: {p2}, tcp-two: {p2}}}, labels: {{v: two}}}}\n",
                p1 = tcp_1.port(),
                p2 = tcp_2.port()
            ),
        ),
        destination_rule(
            "db",
            "  host: db.example.com\n  subsets: [{name: one, labels: {v: one}}, {name: two, labels: {v: two}}]\n",
        ),
        virtual_service(
            "db",
            "  hosts: [db.example.com]\n  tcp:\n  \
             - match: [{port: 7001}]\n    route: [{destination: {host: db.example.com, subset: two, port: {number: 7001}}}]\n  \
             - match: [{port: 7002}]\n    route: [{destination: {host: db.example.com, subset: one, port: {number: 7002}}}]\n",
        ),
    ]
    .concat();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, &yaml).expect("write");
    let (set, problems, _) =
        valid_configs(entryway::validate::check_paths(&[file], "default", &mesh));
    assert!(problems.is_empty(), "{problems:?}");
    let proxy = Proxy::in_namespace("default");
    let cfg = generate(&set, &mesh, &proxy);
    let bootstrap =
        serde_json::to_string_pretty(&static_bootstrap(&cfg, &proxy, 0).expect("bootstrap"))
            .expect("json");
    let envoy = EnvoyHarness::require()
        .with_options(EnvoyOptions {
            gid: Some(PROXY_GID),
            ..EnvoyOptions::default()
        })
        .start(&bootstrap)
        .unwrap_or_else(|e| panic!("Envoy did not start: {e}\n{bootstrap}"));
    envoy
        .wait_ready(Duration::from_secs(20))
        .expect("envoy ready");
    ns.capture_outbound(&["203.0.113.0/24"], outbound_port, PROXY_GID)
        .expect("capture");

    // TLS by SNI: the same VIP and port, two names, two backends; TLS end to end.
    let (ok, out) = eventually_ok(Duration::from_secs(10), || {
        let (ok, out) = curl_tls("a.example.com", TLS_VIP, &tls_a.ca_path());
        if ok { Ok((ok, out)) } else { Err(out) }
    })
    .unwrap_or_else(|e| panic!("SNI a.example.com: {e}\n{}", envoy.log_tail(40)));
    assert!(ok);
    assert_eq!(out, "tls-a");
    let (ok, out) = curl_tls("b.example.com", TLS_VIP, &tls_b.ca_path());
    assert!(ok, "{out}");
    assert_eq!(out, "tls-b");
    let stat = |name: &str| envoy.stat(name).expect("stats").unwrap_or(0);
    assert_eq!(
        stat("cluster.outbound|443|a|tls-backend.internal;.upstream_cx_total"),
        1
    );
    assert_eq!(
        stat("cluster.outbound|443|b|tls-backend.internal;.upstream_cx_total"),
        1
    );

    // TCP by port: 7001 goes to subset "two", 7002 to subset "one" (the reverse of what the
    // port names suggest, so a default route could not pass).
    for i in 0..10 {
        for (port, want) in [(7001, "tcp-v2"), (7002, "tcp-v1")] {
            let addr: SocketAddr = format!("{TCP_VIP}:{port}").parse().expect("addr");
            let r = eventually_ok(Duration::from_secs(10), || {
                http_get(addr, "db.example.com", &format!("/{i}")).map_err(|e| e.to_string())
            })
            .unwrap_or_else(|e| panic!("tcp port {port}: {e}\n{}", envoy.log_tail(40)));
            assert_eq!((r.status, r.text().as_str()), (200, want), "port {port}");
        }
    }
    assert_eq!((tcp_1.request_count(), tcp_2.request_count()), (10, 10));
    // Every connection went through the subset cluster the route names.
    assert_eq!(
        stat("cluster.outbound|7001|two|db.example.com;.upstream_cx_total"),
        10
    );
    assert_eq!(
        stat("cluster.outbound|7002|one|db.example.com;.upstream_cx_total"),
        10
    );

    ns.clear_capture().expect("clear capture");
    let _ = envoy.shutdown();
}

#[test]
fn tls_routes_by_sni_and_tcp_routes_by_port() {
    in_own_thread(tls_and_tcp_routes);
}

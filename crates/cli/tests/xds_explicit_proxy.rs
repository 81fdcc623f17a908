//! Explicit-proxy mode with real Envoy (static bootstrap from `entryway xds dump --bootstrap`
//! generation) and real clients (`curl -x`), no traffic capture:
//!
//! - plain HTTP to a ServiceEntry host (port 80 and port 8080) reaches its local upstream;
//! - CONNECT to a TLS ServiceEntry host reaches a local TLS server, TLS end to end (curl
//!   verifies the server's certificate against the upstream's own CA);
//! - REGISTRY_ONLY: an unknown host is refused (502) over plain HTTP and CONNECT;
//! - ALLOW_ANY: an unknown host passes through (dynamic forward proxy) over both.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use entryway::xds::{generate, static_bootstrap, valid_configs};
use entryway_model::api::MeshConfig;
use entryway_model::api::sidecar::OutboundTrafficPolicyMode;
use entryway_model::registry::Proxy;
use entryway_testkit::{
    EnvoyHarness, EnvoyProcess, HttpUpstream, TLS_UPSTREAM_PATH, TlsUpstream, eventually_ok,
    free_port,
};

/// What curl reported: HTTP status of the final response (0 when none), the CONNECT
/// response status (0 when no CONNECT was made), the body, and stderr.
#[derive(Debug)]
struct Curl {
    status: u16,
    connect_status: u16,
    body: String,
    stderr: String,
}

fn curl(proxy: SocketAddr, url: &str, extra: &[&str]) -> Curl {
    let marker = "\n--entryway-curl--";
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--noproxy", "", "-x"])
        .arg(format!("http://{proxy}"))
        .args(extra)
        .args(["-w", &format!("{marker}%{{http_code}} %{{http_connect}}")])
        .arg(url)
        .output()
        .expect("run curl (apt-get install curl)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, codes) = stdout.rsplit_once(marker).unwrap_or((&stdout, "0 0"));
    let mut it = codes.split_whitespace().map(|c| c.parse().unwrap_or(0));
    Curl {
        status: it.next().unwrap_or(0),
        connect_status: it.next().unwrap_or(0),
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn se(name: &str, host: &str, ports: &str, endpoints: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hosts: [{host}]\n  ports: {ports}\n  resolution: STATIC\n  endpoints: {endpoints}\n"
    )
}

struct Setup {
    envoy: EnvoyProcess,
    proxy: SocketAddr,
}

fn start(mode: OutboundTrafficPolicyMode, yaml: &str) -> Setup {
    let mut mesh = MeshConfig {
        // virtualOutbound binds this port: keep it away from other tests' Envoys.
        proxy_listen_port: i32::from(free_port().expect("port")),
        ..MeshConfig::default()
    };
    mesh.outbound_traffic_policy.mode = mode;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("se.yaml");
    std::fs::write(&path, yaml).expect("write");
    let (set, problems, _) =
        valid_configs(entryway::validate::check_paths(&[path], "default", &mesh));
    assert!(problems.is_empty(), "{problems:?}");
    let mut proxy = Proxy::in_namespace("default");
    // Port 0: the kernel picks; the real address is read back from Envoy's admin API.
    proxy.explicit_proxy = Some("127.0.0.1:0".parse().expect("addr"));
    let cfg = generate(&set, &mesh, &proxy);
    let bootstrap =
        serde_json::to_string_pretty(&static_bootstrap(&cfg, &proxy, 0).expect("bootstrap"))
            .expect("json");
    let envoy = EnvoyHarness::require()
        .start(&bootstrap)
        .unwrap_or_else(|e| panic!("Envoy did not start: {e}\n{bootstrap}"));
    envoy
        .wait_ready(Duration::from_secs(20))
        .expect("envoy ready");
    let proxy = envoy
        .wait_listener("explicit_proxy", Duration::from_secs(10))
        .expect("explicit_proxy listener address");
    assert_ne!(proxy.port(), 0);
    Setup { envoy, proxy }
}

/// The first request through a fresh Envoy, retried until the listener serves.
fn first(proxy: SocketAddr, url: &str, extra: &[&str], want: u16) -> Curl {
    eventually_ok(Duration::from_secs(10), || {
        let c = curl(proxy, url, extra);
        if c.status == want {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{url} through {proxy}: {e}"))
}

fn stat(envoy: &EnvoyProcess, name: &str) -> u64 {
    envoy.stat(name).expect("stats").unwrap_or(0)
}

fn registered_hosts(mode: OutboundTrafficPolicyMode) {
    let web = HttpUpstream::start("api-80").expect("upstream");
    let alt = HttpUpstream::start("api-8080").expect("upstream");
    let tls = TlsUpstream::start("secure-tls", "secure.example.com").expect("tls upstream");
    let yaml = [
        se(
            "api",
            "api.example.com",
            "[{number: 80, name: http, protocol: HTTP}, {number: 8080, name: http-alt, protocol: HTTP}]",
            &format!(
                "[{{address: 127.0.0.1, ports: {{http: {}, http-alt: {}}}}}]",
                web.port(),
                alt.port()
            ),
        ),
        se(
            "secure",
            "secure.example.com",
            "[{number: 443, name: tls, protocol: TLS}]",
            &format!("[{{address: 127.0.0.1, ports: {{tls: {}}}}}]", tls.port()),
        ),
    ]
    .concat();
    let Setup { envoy, proxy } = start(mode, &yaml);

    // (a) plain HTTP, absolute URL, port 80 (bare host) and port 8080 (host:port).
    let r = first(proxy, "http://api.example.com/hello", &[], 200);
    assert_eq!(r.body, "api-80", "{r:?}");
    assert_eq!(web.paths(), vec!["/hello".to_string()]);
    assert_eq!(web.hosts(), vec!["api.example.com".to_string()]);
    let r = curl(proxy, "http://api.example.com:8080/alt", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "api-8080"), "{r:?}");
    assert_eq!(alt.paths(), vec!["/alt".to_string()]);
    assert_eq!(
        stat(
            &envoy,
            "cluster.outbound|8080||api.example.com;.upstream_rq_200"
        ),
        1
    );

    // (b) CONNECT to the TLS host: the tunnel lands on the TLS server, which proves itself
    // with a certificate for secure.example.com from its own CA.
    let ca = tls.ca_path();
    let ca = ca.to_str().expect("utf-8 path");
    let url = format!("https://secure.example.com:443{TLS_UPSTREAM_PATH}");
    let r = curl(proxy, &url, &["--cacert", ca]);
    assert_eq!(r.connect_status, 200, "{r:?}");
    assert_eq!((r.status, r.body.as_str()), (200, "secure-tls"), "{r:?}");
    assert_eq!(
        stat(
            &envoy,
            "cluster.outbound|443||secure.example.com;.upstream_cx_total"
        ),
        1
    );
    // The same host without the CA: TLS is the server's, not Envoy's (nothing re-signs it).
    let r = curl(proxy, &url, &[]);
    assert_ne!(r.status, 200, "{r:?}");
    assert!(r.stderr.contains("certificate"), "{r:?}");

    let _ = envoy.shutdown();
}

fn unknown_hosts(mode: OutboundTrafficPolicyMode) {
    let other = HttpUpstream::start("unregistered").expect("upstream");
    let web = HttpUpstream::start("api-80").expect("upstream");
    let yaml = se(
        "api",
        "api.example.com",
        "[{number: 80, name: http, protocol: HTTP}]",
        &format!("[{{address: 127.0.0.1, ports: {{http: {}}}}}]", web.port()),
    );
    let Setup { envoy, proxy } = start(mode, &yaml);
    first(proxy, "http://api.example.com/ready", &[], 200);

    let plain = format!("http://{}/plain", other.addr());
    let tunnel = format!("http://{}/tunnel", other.addr());
    match mode {
        OutboundTrafficPolicyMode::RegistryOnly => {
            let r = curl(proxy, &plain, &[]);
            assert_eq!(r.status, 502, "{r:?}");
            let r = curl(proxy, "http://unknown.example.org/", &[]);
            assert_eq!(r.status, 502, "{r:?}");
            // -p: tunnel through the proxy with CONNECT even for http:// URLs.
            let r = curl(proxy, &tunnel, &["-p"]);
            assert_eq!(r.connect_status, 502, "{r:?}");
            assert_ne!(r.status, 200, "{r:?}");
            let r = curl(proxy, "https://unknown.example.org:443/", &[]);
            assert_eq!(r.connect_status, 502, "{r:?}");
            assert_eq!(other.request_count(), 0);
        }
        _ => {
            let r = curl(proxy, &plain, &[]);
            assert_eq!((r.status, r.body.as_str()), (200, "unregistered"), "{r:?}");
            let r = curl(proxy, &tunnel, &["-p"]);
            assert_eq!(r.connect_status, 200, "{r:?}");
            assert_eq!((r.status, r.body.as_str()), (200, "unregistered"), "{r:?}");
            assert_eq!(
                other.paths(),
                vec!["/plain".to_string(), "/tunnel".to_string()]
            );
            assert_eq!(
                stat(&envoy, "cluster.ExplicitProxyPassthrough.upstream_cx_total"),
                2
            );
        }
    }
    let _ = envoy.shutdown();
}

#[test]
fn registered_hosts_over_http_and_connect() {
    registered_hosts(OutboundTrafficPolicyMode::RegistryOnly);
}

#[test]
fn registry_only_refuses_unknown_hosts() {
    unknown_hosts(OutboundTrafficPolicyMode::RegistryOnly);
}

#[test]
fn allow_any_passes_unknown_hosts_through() {
    unknown_hosts(OutboundTrafficPolicyMode::AllowAny);
}

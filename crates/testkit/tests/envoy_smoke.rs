//! The base works: the installed Envoy accepts our bootstraps, starts, serves admin, and
//! proxies to a local upstream; several Envoys run side by side.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use entryway_agent::bootstrap::{AdsApiType, AdsOptions, BootstrapOptions, XdsAddress};
use entryway_agent::minimal_static_bootstrap;
use entryway_testkit::fixtures::{http_listener, static_cluster};
use entryway_testkit::{
    EnvoyHarness, EnvoyProcess, HarnessError, HttpUpstream, UPSTREAM_NAME_HEADER, http_get,
};

const READY: Duration = Duration::from_secs(10);

fn loopback_any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[test]
fn validate_accepts_minimal_static_bootstrap() {
    let envoy = EnvoyHarness::require();
    envoy.validate(&minimal_static_bootstrap(0)).unwrap();
}

#[test]
fn validate_accepts_ads_bootstraps() {
    let envoy = EnvoyHarness::require();
    for (api_type, server) in [
        (AdsApiType::Grpc, XdsAddress::new("127.0.0.1", 15010)),
        (AdsApiType::DeltaGrpc, XdsAddress::new("localhost", 15010)),
    ] {
        let mut ads = AdsOptions::new(api_type, server);
        ads.initial_fetch_timeout = Some(Duration::from_millis(500));
        let bootstrap = BootstrapOptions::new(
            "sidecar~127.0.0.1~app.default~default.svc.cluster.local",
            "app.default",
        )
        .with_metadata("NAMESPACE", "default")
        .with_admin_port(0)
        .with_ads(ads)
        .render();
        if let Err(e) = envoy.validate(&bootstrap) {
            panic!("{api_type:?}: {e}\n{bootstrap}");
        }
    }
}

#[test]
fn validate_reports_envoys_reason() {
    let envoy = EnvoyHarness::require();
    let err = envoy
        .validate(r#"{"node": {"id": "x"}, "no_such_field": 1}"#)
        .unwrap_err();
    match err {
        HarnessError::Rejected { output } => assert!(output.contains("no_such_field"), "{output}"),
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn starts_becomes_ready_and_reports_version() {
    let envoy = EnvoyHarness::require();
    let p = envoy.start(&minimal_static_bootstrap(0)).unwrap();
    p.wait_ready(READY).unwrap();
    let info = p.server_info().unwrap();
    let version = info["version"].as_str().unwrap();
    // "<sha>/1.40.0/Clean/RELEASE/BoringSSL"
    let semver = version.split('/').nth(1).unwrap();
    let mut parts = semver.split('.').map(|n| n.parse::<u32>().unwrap());
    let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
    assert!(
        major == 1 && minor >= 40,
        "unexpected Envoy version {version}"
    );
    assert_eq!(info["state"], "LIVE");
    assert_eq!(
        info["command_line_options"]["base_id"],
        p.base_id().to_string()
    );
    assert_eq!(info["command_line_options"]["concurrency"], 1);
    assert_eq!(p.stat("server.live").unwrap(), Some(1));
    assert!(p.listener_names().unwrap().is_empty());
    // Mutating admin endpoints want POST.
    assert_eq!(p.admin_request("GET", "/quitquitquit").unwrap().status, 405);
    assert!(p.shutdown().unwrap().success());
}

fn proxy_bootstrap(upstream: &HttpUpstream, tag: &str) -> String {
    BootstrapOptions::new(format!("smoke-{tag}"), "smoke")
        .with_admin_port(0)
        .with_static_cluster(static_cluster("backend", upstream.addr()))
        .with_static_listener(http_listener("ingress", loopback_any_port(), "backend"))
        .render()
}

/// Starts Envoy proxying to `upstream`; returns it with the listener's bound address.
fn start_proxy(
    envoy: &EnvoyHarness,
    upstream: &HttpUpstream,
    tag: &str,
) -> (EnvoyProcess, SocketAddr) {
    let p = envoy.start(&proxy_bootstrap(upstream, tag)).unwrap();
    p.wait_ready(READY).unwrap();
    let addr = p.wait_listener("ingress", READY).unwrap();
    assert_ne!(addr.port(), 0);
    (p, addr)
}

#[test]
fn request_through_envoy_reaches_upstream() {
    let envoy = EnvoyHarness::require();
    let upstream = HttpUpstream::start("backend-a").unwrap();
    let (p, listener) = start_proxy(&envoy, &upstream, "a");

    let resp = http_get(listener, "httpbin.local:8080", "/status?x=1").unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), "backend-a");
    assert_eq!(resp.header(UPSTREAM_NAME_HEADER), Some("backend-a"));
    assert_eq!(resp.header("server"), Some("envoy"));

    assert_eq!(upstream.request_count(), 1);
    assert_eq!(upstream.hosts(), ["httpbin.local:8080"]);
    assert_eq!(upstream.paths(), ["/status?x=1"]);
    assert!(upstream.requests()[0].header("x-request-id").is_some());

    // Envoy's own view agrees (stats are flushed asynchronously: poll).
    let n = entryway_testkit::eventually(READY, || {
        p.stat("cluster.backend.upstream_rq_200")
            .ok()
            .flatten()
            .filter(|&n| n == 1)
    })
    .unwrap();
    assert_eq!(n, 1);

    // Upstream status codes pass through.
    upstream.set_response(503, "down");
    let resp = http_get(listener, "httpbin.local", "/").unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (503, "down"));
    assert_eq!(upstream.request_count(), 2);
}

#[test]
fn two_envoys_run_side_by_side() {
    let envoy = EnvoyHarness::require();
    let up_a = HttpUpstream::start("a").unwrap();
    let up_b = HttpUpstream::start("b").unwrap();
    let (pa, la) = start_proxy(&envoy, &up_a, "a");
    let (pb, lb) = start_proxy(&envoy, &up_b, "b");

    assert_ne!(pa.base_id(), pb.base_id());
    assert_ne!(pa.admin_addr(), pb.admin_addr());
    assert_ne!(la, lb);
    for _ in 0..3 {
        assert_eq!(http_get(la, "a", "/").unwrap().text(), "a");
        assert_eq!(http_get(lb, "b", "/").unwrap().text(), "b");
    }
    assert_eq!((up_a.request_count(), up_b.request_count()), (3, 3));
    let id_a = &pa.server_info().unwrap()["node"]["id"];
    let id_b = &pb.server_info().unwrap()["node"]["id"];
    assert_eq!(
        (id_a.as_str(), id_b.as_str()),
        (Some("smoke-a"), Some("smoke-b"))
    );
}

#[test]
fn envoy_that_fails_to_start_reports_its_log() {
    let envoy = EnvoyHarness::require();
    // Valid JSON, invalid bootstrap: Envoy exits at start-up.
    let err = envoy
        .start(r#"{"admin": {"address": {"pipe": {}}}, "bogus": 1}"#)
        .unwrap_err();
    match err {
        HarnessError::Exited { status, log_tail } => {
            assert!(!status.success());
            assert!(log_tail.contains("bogus"), "{log_tail}");
        }
        other => panic!("unexpected error {other}"),
    }
}

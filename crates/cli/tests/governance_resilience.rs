//! DestinationRule resilience on real Envoy, counted at local upstreams: circuit breaking
//! (`connectionPool`) and outlier detection. Traffic goes through the generated
//! explicit-proxy listener (see `common`).

mod common;

use std::sync::Barrier;
use std::time::Duration;

use common::{Explicit, destination_rule, parallel, service_entry};
use entryway_testkit::{HttpUpstream, UPSTREAM_NAME_HEADER, eventually};

#[test]
fn circuit_breaker_overflows_with_503_and_overloaded_flag() {
    let up = HttpUpstream::start("guarded").expect("upstream");
    let yaml = [
        service_entry(
            "guarded",
            &format!(
                "  hosts: [guarded.example.com]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]\n",
                up.port()
            ),
        ),
        destination_rule(
            "guarded",
            "  host: guarded.example.com\n  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 1}\n",
        ),
    ]
    .concat();
    let px = Explicit::start(&yaml);
    px.first("guarded.example.com", "/ready", 200);
    up.clear_requests();

    // 12 concurrent requests (released together by a barrier) while each upstream answer
    // takes 1s: one connection carries one request, one more may wait, the rest overflow.
    up.set_delay(Duration::from_secs(1));
    let n = 12;
    let barrier = Barrier::new(n);
    let results = parallel(n, n, |i| {
        barrier.wait();
        let r = px
            .get("guarded.example.com", &format!("/load/{i}"), &[])
            .expect("response");
        (
            r.status,
            r.header("x-envoy-overloaded").map(str::to_owned),
            r.header(UPSTREAM_NAME_HEADER).map(str::to_owned),
        )
    });
    let served = results.iter().filter(|(s, _, _)| *s == 200).count();
    let overflow = results
        .iter()
        .filter(|(s, o, up)| *s == 503 && o.as_deref() == Some("true") && up.is_none())
        .count();
    eprintln!("measured: circuit breaker: {served} served, {overflow} overflowed of {n}");
    assert_eq!(served + overflow, n, "{results:?}");
    assert!(served >= 1, "{results:?}");
    assert!(
        overflow >= n - 4,
        "with 1 connection and 1 pending request most of {n} overflow: {results:?}"
    );
    // Only served requests reached the upstream, over the single allowed connection.
    assert_eq!(up.request_count(), served);
    let cluster = "cluster.outbound|80||guarded.example.com;";
    assert_eq!(
        px.stat(&format!("{cluster}.upstream_rq_pending_overflow")) as usize,
        overflow
    );
    assert_eq!(px.stat(&format!("{cluster}.upstream_cx_total")), 1);
    let _ = px.envoy.shutdown();
}

#[test]
fn outlier_detection_ejects_the_failing_endpoint() {
    let good = HttpUpstream::start("good").expect("upstream");
    let bad = HttpUpstream::with_response("bad", 500, "broken").expect("upstream");
    let yaml = [
        service_entry(
            "pool",
            &format!(
                "  hosts: [pool.example.com]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{http: {}}}}}\n  - {{address: 127.0.0.1, ports: {{http: {}}}}}\n",
                good.port(),
                bad.port()
            ),
        ),
        destination_rule(
            "pool",
            "  host: pool.example.com\n  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}\n",
        ),
    ]
    .concat();
    let px = Explicit::start(&yaml);
    px.first("pool.example.com", "/ready", 200);

    // Round robin alternates: the bad endpoint answers 500 until its second consecutive
    // 5xx ejects it (Envoy ejects on the consecutive-5xx event, not at the next interval).
    let cluster = "cluster.outbound|80||pool.example.com;";
    let ejected = eventually(Duration::from_secs(10), || {
        let _ = px.get("pool.example.com", "/probe", &[]);
        (px.stat(&format!(
            "{cluster}.outlier_detection.ejections_enforced_consecutive_5xx"
        )) >= 1)
            .then_some(())
    });
    assert!(ejected.is_ok(), "no ejection: {}", px.log());
    let bad_before = bad.request_count();
    eprintln!("measured: outlier: bad endpoint served {bad_before} requests before ejection");
    assert!(
        (2..=4).contains(&bad_before),
        "the bad endpoint served {bad_before} requests before ejection"
    );
    assert_eq!(
        px.stat(&format!("{cluster}.outlier_detection.ejections_active")),
        1
    );

    // Ejected for 60s: the next 50 requests all reach the good endpoint.
    good.clear_requests();
    for i in 0..50 {
        let r = px
            .get("pool.example.com", &format!("/after/{i}"), &[])
            .expect("get");
        assert_eq!((r.status, r.text().as_str()), (200, "good"));
    }
    assert_eq!(good.request_count(), 50);
    assert_eq!(bad.request_count(), bad_before);
    let _ = px.envoy.shutdown();
}

//! VirtualService / DestinationRule HTTP governance proven on real Envoy, counted at local
//! upstreams (testkit `HttpUpstream`): retries, timeouts and per-try timeouts, fault delay
//! and abort, weighted routing, subsets, header and URI matches, mirroring.
//!
//! Traffic: plain HTTP through the generated explicit-proxy listener (absolute-form requests,
//! as `curl -x` sends them), which serves the same per-port routes as captured traffic.
//! Statistical checks use Hoeffding bounds with failure probability below 1e-7 each
//! (`common::hoeffding_bounds`); sample sizes are stated at each check.

mod common;

use std::time::Duration;

use common::{
    Explicit, destination_rule, hoeffding_bounds, parallel, service_entry, virtual_service,
};
use entryway_testkit::{HttpUpstream, UPSTREAM_NAME_HEADER, eventually};

/// Slack allowed above a configured timeout before Envoy's answer counts as late (a loaded
/// 2-core CI machine, a debug-build client, process scheduling).
const TIMEOUT_TOLERANCE: Duration = Duration::from_millis(600);

/// Slack allowed below a configured timeout or delay. Envoy arms its timers from the event
/// loop's cached clock (libevent reads the clock once per loop iteration), which lags real
/// time by however long that iteration has run; on a loaded machine a timer can therefore
/// fire a few milliseconds before the configured time has passed on the client's clock
/// (CI saw a 500ms route timeout answer after 497.6ms).
const EARLY_SLACK: Duration = Duration::from_millis(20);

fn static_se(name: &str, host: &str, endpoints: &[(&HttpUpstream, &str)]) -> String {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|(up, version)| {
            format!(
                "{{address: 127.0.0.1, ports: {{http: {}}}, labels: {{version: {version}}}}}",
                up.port()
            )
        })
        .collect();
    service_entry(
        name,
        &format!(
            "  hosts: [{host}]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{}]\n",
            eps.join(", ")
        ),
    )
}

#[test]
fn retries_follow_attempts_and_retry_on() {
    let up = HttpUpstream::start("flaky").expect("upstream");
    let yaml = [
        static_se("flaky", "flaky.example.com", &[(&up, "v1")]),
        virtual_service(
            "flaky",
            "  hosts: [flaky.example.com]\n  http:\n  \
             - match: [{uri: {prefix: /r3}}]\n    route: [{destination: {host: flaky.example.com}}]\n    retries: {attempts: 3, retryOn: 5xx}\n  \
             - match: [{uri: {prefix: /r1}}]\n    route: [{destination: {host: flaky.example.com}}]\n    retries: {attempts: 1, retryOn: 5xx}\n  \
             - match: [{uri: {prefix: /gw}}]\n    route: [{destination: {host: flaky.example.com}}]\n    retries: {attempts: 3, retryOn: gateway-error}\n  \
             - match: [{uri: {prefix: /code}}]\n    route: [{destination: {host: flaky.example.com}}]\n    retries: {attempts: 2, retryOn: \"418\"}\n  \
             - match: [{uri: {prefix: /zero}}]\n    route: [{destination: {host: flaky.example.com}}]\n    retries: {attempts: 0}\n  \
             - route: [{destination: {host: flaky.example.com}}]\n",
        ),
    ]
    .concat();
    let px = Explicit::start(&yaml);
    px.first("flaky.example.com", "/ready", 200);

    // (path, failures queued, failing status, expected client status, attempts seen)
    let cases: &[(&str, usize, u16, u16, usize)] = &[
        // attempts 3, retryOn 5xx: two failures then success → 3 attempts, client sees 200.
        ("/r3", 2, 503, 200, 3),
        // More failures than retries: 1 + 3 attempts, the last failure reaches the client.
        ("/r3", 6, 503, 503, 4),
        // attempts 1: one retry only.
        ("/r1", 2, 503, 503, 2),
        ("/r1", 1, 500, 200, 2),
        // gateway-error covers 502/503/504 but not 500.
        ("/gw", 1, 500, 500, 1),
        ("/gw", 1, 502, 200, 2),
        // A status code in retryOn retries exactly that code.
        ("/code", 1, 418, 200, 2),
        ("/code", 1, 503, 503, 1),
        // attempts 0: no retry policy at all.
        ("/zero", 1, 503, 503, 1),
        // No retries: Istio's default policy (connect-failure, refused-stream, ...), not 503.
        ("/default", 1, 503, 503, 1),
    ];
    for &(path, failures, fail_status, want_status, want_attempts) in cases {
        up.fail_next(failures, fail_status);
        up.clear_requests();
        let (resp, _) = px.timed_get("flaky.example.com", path, &[]);
        let seen = up.request_count();
        assert_eq!(
            (resp.status, seen),
            (want_status, want_attempts),
            "{path} with {failures}×{fail_status}: client status and attempts at the upstream\n{}",
            px.log()
        );
        assert!(up.paths().iter().all(|p| p == path), "{:?}", up.paths());
        up.fail_next(0, 200);
    }
    let _ = px.envoy.shutdown();
}

#[test]
fn timeout_and_per_try_timeout_fire_on_time() {
    let up = HttpUpstream::start("slow").expect("upstream");
    let yaml = [
        static_se("slow", "slow.example.com", &[(&up, "v1")]),
        virtual_service(
            "slow",
            "  hosts: [slow.example.com]\n  http:\n  \
             - match: [{uri: {prefix: /timeout}}]\n    route: [{destination: {host: slow.example.com}}]\n    timeout: 500ms\n    retries: {attempts: 0}\n  \
             - match: [{uri: {prefix: /pertry}}]\n    route: [{destination: {host: slow.example.com}}]\n    timeout: 10s\n    retries: {attempts: 2, perTryTimeout: 300ms, retryOn: 5xx}\n  \
             - route: [{destination: {host: slow.example.com}}]\n",
        ),
    ]
    .concat();
    let px = Explicit::start(&yaml);
    px.first("slow.example.com", "/ready", 200);
    up.set_delay(Duration::from_secs(3));

    // Route timeout 500ms, no retries: 504 after 500ms (tolerance TIMEOUT_TOLERANCE), one
    // attempt at the upstream.
    up.clear_requests();
    let (resp, took) = px.timed_get("slow.example.com", "/timeout", &[]);
    assert_eq!(resp.status, 504, "{}", resp.text());
    assert_eq!(resp.text(), "upstream request timeout");
    eprintln!("measured: route timeout 500ms answered after {took:?}");
    assert!(
        took >= Duration::from_millis(500) - EARLY_SLACK
            && took <= Duration::from_millis(500) + TIMEOUT_TOLERANCE,
        "route timeout 500ms fired after {took:?}"
    );
    assert_eq!(up.request_count(), 1);

    // perTryTimeout 300ms, attempts 2: three tries of 300ms each, plus Envoy's jittered
    // back-off (base 25ms: at most 25ms + 75ms), then 504. Every try reaches the upstream.
    up.clear_requests();
    let (resp, took) = px.timed_get("slow.example.com", "/pertry", &[]);
    assert_eq!(resp.status, 504, "{}", resp.text());
    eprintln!("measured: 3 tries of perTryTimeout 300ms answered after {took:?}");
    let floor = Duration::from_millis(900);
    assert!(
        took >= floor - EARLY_SLACK
            && took <= floor + Duration::from_millis(100) + TIMEOUT_TOLERANCE,
        "3 tries of perTryTimeout 300ms took {took:?}"
    );
    let seen = eventually(Duration::from_secs(5), || {
        (up.request_count() >= 3).then(|| up.request_count())
    })
    .expect("three tries at the upstream");
    assert_eq!(seen, 3);
    assert_eq!(
        px.stat("cluster.outbound|80||slow.example.com;.upstream_rq_per_try_timeout"),
        3
    );

    // A fast upstream on the same route: served within the per-try timeout.
    up.set_delay(Duration::ZERO);
    let (resp, took) = px.timed_get("slow.example.com", "/pertry", &[]);
    assert_eq!(resp.status, 200);
    assert!(took < Duration::from_millis(300), "{took:?}");
    let _ = px.envoy.shutdown();
}

#[test]
fn fault_abort_and_delay_hit_the_configured_percentage() {
    let up = HttpUpstream::start("faulty").expect("upstream");
    let yaml = [
        static_se("faulty", "faulty.example.com", &[(&up, "v1")]),
        virtual_service(
            "faulty",
            "  hosts: [faulty.example.com]\n  http:\n  \
             - match: [{uri: {prefix: /abort}}]\n    route: [{destination: {host: faulty.example.com}}]\n    fault: {abort: {httpStatus: 418, percentage: {value: 30}}}\n  \
             - match: [{uri: {prefix: /delay}}]\n    route: [{destination: {host: faulty.example.com}}]\n    fault: {delay: {fixedDelay: 250ms, percentage: {value: 40}}}\n  \
             - route: [{destination: {host: faulty.example.com}}]\n",
        ),
    ]
    .concat();
    let px = Explicit::start(&yaml);
    px.first("faulty.example.com", "/ready", 200);

    // Abort 30%: n = 600 requests; Hoeffding bound (failure probability < 1e-7) on the
    // number of 418s. Aborted requests never reach the upstream.
    let n = 600;
    up.clear_requests();
    let statuses = parallel(n, 4, |_| {
        px.get("faulty.example.com", "/abort", &[])
            .map(|r| r.status)
            .unwrap_or(0)
    });
    let aborted = statuses.iter().filter(|s| **s == 418).count();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(aborted + ok, n, "only 418 and 200 expected: {statuses:?}");
    let (lo, hi) = hoeffding_bounds(n, 0.30);
    eprintln!("measured: abort 30%: {aborted} of {n} (bounds {lo}..={hi})");
    assert!(
        (lo..=hi).contains(&aborted),
        "aborted {aborted} of {n}, expected {lo}..={hi}"
    );
    assert_eq!(
        up.request_count(),
        ok,
        "the upstream sees only non-aborted requests"
    );

    // Delay 40% of 250ms: n = 300 requests on 8 threads; Hoeffding bound (< 1e-7) on the
    // number of delayed responses. Every request reaches the upstream; a delayed one takes
    // at least 250ms and at most 250ms + TIMEOUT_TOLERANCE. Envoy's own counter must agree
    // with what the client measured.
    let n = 300;
    up.clear_requests();
    let delay = Duration::from_millis(250);
    let timings = parallel(n, 8, |_| {
        let (r, took) = px.timed_get("faulty.example.com", "/delay", &[]);
        (r.status, took)
    });
    assert!(timings.iter().all(|(s, _)| *s == 200), "{timings:?}");
    assert_eq!(up.request_count(), n);
    // Undelayed responses take about 1ms, delayed ones about 250ms: split at half the delay.
    let delayed: Vec<Duration> = timings
        .iter()
        .map(|(_, t)| *t)
        .filter(|t| *t >= delay / 2)
        .collect();
    let injected = px.stat("http.explicit_proxy.fault.delays_injected") as usize;
    let (lo, hi) = hoeffding_bounds(n, 0.40);
    eprintln!(
        "measured: delay 40%: {injected} of {n} (bounds {lo}..={hi}), client saw {}",
        delayed.len()
    );
    assert!(
        (lo..=hi).contains(&injected),
        "delayed {injected} of {n}, expected {lo}..={hi}"
    );
    // Every injected delay is visible at the client; a few undelayed requests may be slow
    // on a loaded machine, at most 5%.
    assert!(
        delayed.len() >= injected && delayed.len() <= injected + n / 20,
        "client saw {} responses ≥ 125ms, Envoy injected {injected}",
        delayed.len()
    );
    // Envoy's timers may fire a little early (see EARLY_SLACK).
    let early = delayed.iter().filter(|t| **t < delay - EARLY_SLACK).count();
    assert_eq!(
        early, 0,
        "delayed responses shorter than 250ms: {delayed:?}"
    );
    let late = delayed
        .iter()
        .filter(|t| **t > delay + TIMEOUT_TOLERANCE)
        .count();
    assert!(
        late <= n / 20,
        "{late} delayed responses later than 250ms + tolerance"
    );
    let _ = px.envoy.shutdown();
}

#[test]
fn weights_subsets_matches_and_mirror() {
    let v1a = HttpUpstream::start("v1a").expect("upstream");
    let v1b = HttpUpstream::start("v1b").expect("upstream");
    let v2 = HttpUpstream::start("v2").expect("upstream");
    let v3 = HttpUpstream::start("v3").expect("upstream");
    let primary = HttpUpstream::start("primary").expect("upstream");
    let shadow = HttpUpstream::start("shadow").expect("upstream");
    let yaml = [
        static_se(
            "shop",
            "shop.example.com",
            &[(&v1a, "v1"), (&v1b, "v1"), (&v2, "v2"), (&v3, "v3")],
        ),
        destination_rule(
            "shop",
            "  host: shop.example.com\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n  - {name: v3, labels: {version: v3}}\n",
        ),
        virtual_service(
            "shop",
            "  hosts: [shop.example.com]\n  http:\n  \
             - match: [{headers: {x-canary: {exact: \"yes\"}}}]\n    route: [{destination: {host: shop.example.com, subset: v3}}]\n  \
             - match: [{uri: {prefix: /api}}]\n    route: [{destination: {host: shop.example.com, subset: v2}}]\n  \
             - match: [{uri: {exact: /v1-only}}]\n    route: [{destination: {host: shop.example.com, subset: v1}}]\n  \
             - route:\n    - {destination: {host: shop.example.com, subset: v1}, weight: 70}\n    - {destination: {host: shop.example.com, subset: v2}, weight: 30}\n",
        ),
        static_se("mirror", "mirror.example.com", &[(&primary, "v1")]),
        static_se("shadow", "shadow.example.com", &[(&shadow, "v1")]),
        virtual_service(
            "mirror",
            "  hosts: [mirror.example.com]\n  http:\n  \
             - route: [{destination: {host: mirror.example.com}}]\n    mirror: {host: shadow.example.com}\n",
        ),
    ]
    .concat();
    let px = Explicit::start(&yaml);
    px.first("shop.example.com", "/v1-only", 200);
    let all = [&v1a, &v1b, &v2, &v3];
    let clear = || all.iter().for_each(|u| u.clear_requests());
    let counts = || all.map(|u| u.request_count());

    // Subset v1 (uri exact): 40 requests reach only the two v1 endpoints, both of them.
    clear();
    for _ in 0..40 {
        let r = px.get("shop.example.com", "/v1-only", &[]).expect("get");
        assert_eq!(r.status, 200);
    }
    let [a, b, c2, c3] = counts();
    assert_eq!((a + b, c2, c3), (40, 0, 0), "v1 subset only");
    assert!(a > 0 && b > 0, "both v1 endpoints serve: {a} / {b}");
    // A near-miss of the exact match falls to the weighted default route, not to v1 only.
    let r = px.get("shop.example.com", "/v1-only/x", &[]).expect("get");
    assert_eq!(r.status, 200);

    // Matches: uri prefix /api → v2; header x-canary: yes → v3, before the /api rule;
    // another header value does not match.
    clear();
    for (path, headers, want) in [
        ("/api/items", &[][..], "v2"),
        ("/api", &[][..], "v2"),
        ("/api/items", &[("x-canary", "yes")][..], "v3"),
        ("/", &[("x-canary", "yes")][..], "v3"),
        ("/api/x", &[("x-canary", "no")][..], "v2"),
    ] {
        let r = px.get("shop.example.com", path, headers).expect("get");
        assert_eq!(
            (r.status, r.header(UPSTREAM_NAME_HEADER)),
            (200, Some(want)),
            "{path} {headers:?}"
        );
    }
    assert_eq!(counts(), [0, 0, 3, 2]);

    // Weighted 70/30 between subsets v1 and v2: n = 500 requests; Hoeffding bound
    // (failure probability < 1e-7) on the v1 share; v3 gets nothing.
    let n = 500;
    clear();
    let statuses = parallel(n, 4, |i| {
        px.get("shop.example.com", &format!("/w/{i}"), &[])
            .map(|r| r.status)
            .unwrap_or(0)
    });
    assert!(statuses.iter().all(|s| *s == 200));
    let [a, b, c2, c3] = counts();
    assert_eq!((a + b + c2, c3), (n, 0));
    let (lo, hi) = hoeffding_bounds(n, 0.70);
    eprintln!(
        "measured: weight 70/30: v1 {} v2 {c2} of {n} (bounds {lo}..={hi})",
        a + b
    );
    assert!(
        (lo..=hi).contains(&(a + b)),
        "v1 got {} of {n} (v2 {c2}), expected {lo}..={hi}",
        a + b
    );

    // Mirror: every request reaches the primary, and a copy reaches the shadow with the
    // authority suffixed "-shadow"; the client sees only the primary's answer.
    let n = 20;
    for i in 0..n {
        let r = px
            .get("mirror.example.com", &format!("/m/{i}"), &[])
            .expect("get");
        assert_eq!((r.status, r.text().as_str()), (200, "primary"));
    }
    assert_eq!(primary.request_count(), n);
    let copies = eventually(Duration::from_secs(10), || {
        (shadow.request_count() >= n).then(|| shadow.request_count())
    })
    .unwrap_or_else(|e| panic!("mirror copies: {} of {n}: {e}", shadow.request_count()));
    assert_eq!(copies, n);
    let mut paths = shadow.paths();
    paths.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("/m/{i}")).collect();
    want.sort();
    assert_eq!(paths, want);
    assert!(
        shadow
            .hosts()
            .iter()
            .all(|h| h == "mirror.example.com-shadow"),
        "{:?}",
        shadow.hosts()
    );
    let _ = px.envoy.shutdown();
}

#[test]
fn port_query_case_and_negated_matches_with_rewrites_and_headers() {
    let v1 = HttpUpstream::start("v1").expect("upstream");
    let v2 = HttpUpstream::start("v2").expect("upstream");
    let eps = format!(
        "[{{address: 127.0.0.1, ports: {{http: {p1}, http-alt: {p1}}}, labels: {{version: v1}}}}, {{address: 127.0.0.1, ports: {{http: {p2}, http-alt: {p2}}}, labels: {{version: v2}}}}]",
        p1 = v1.port(),
        p2 = v2.port()
    );
    let yaml = [
        service_entry(
            "multi",
            &format!(
                "  hosts: [multi.example.com]\n  ports: [{{number: 80, name: http, protocol: HTTP}}, {{number: 8080, name: http-alt, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: {eps}\n"
            ),
        ),
        destination_rule(
            "multi",
            "  host: multi.example.com\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n",
        ),
        virtual_service(
            "multi",
            "  hosts: [multi.example.com]\n  http:\n  \
             - match: [{port: 8080}]\n    route: [{destination: {host: multi.example.com, subset: v2}}]\n  \
             - match: [{queryParams: {debug: {exact: \"1\"}}}]\n    route: [{destination: {host: multi.example.com, subset: v2}}]\n  \
             - match: [{uri: {prefix: /Old}, ignoreUriCase: true}]\n    rewrite: {uri: /new, authority: rewritten.example.com}\n    route: [{destination: {host: multi.example.com, subset: v2}}]\n  \
             - match: [{uri: {prefix: /guarded}, withoutHeaders: {x-user: {}}}]\n    route: [{destination: {host: multi.example.com, subset: v2}}]\n  \
             - route: [{destination: {host: multi.example.com, subset: v1}}]\n    headers:\n      request:\n        set: {x-set: one}\n        add: {x-added: two}\n        remove: [x-drop]\n      response:\n        set: {x-resp: three}\n",
        ),
    ]
    .concat();
    let px = Explicit::start(&yaml);
    px.first("multi.example.com", "/ready", 200);
    v1.clear_requests();

    /// Authority, path, request headers, the upstream expected to answer.
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        // Port match: only the 8080 listener port's routes carry it.
        ("multi.example.com:8080", "/x", &[], "v2"),
        ("multi.example.com", "/x", &[], "v1"),
        // Query parameter.
        ("multi.example.com", "/q?debug=1", &[], "v2"),
        ("multi.example.com", "/q?debug=2", &[], "v1"),
        // ignoreUriCase prefix.
        ("multi.example.com", "/oLD/thing", &[], "v2"),
        // withoutHeaders: only when x-user is absent.
        ("multi.example.com", "/guarded", &[], "v2"),
        (
            "multi.example.com",
            "/guarded",
            &[("x-user", "alice")],
            "v1",
        ),
    ];
    for &(authority, path, headers, want) in cases {
        let r = px.get(authority, path, headers).expect("get");
        assert_eq!(
            (r.status, r.header(UPSTREAM_NAME_HEADER)),
            (200, Some(want)),
            "{authority}{path} {headers:?}"
        );
    }

    // The rewrite reached the upstream: prefix /Old (any case) → /new, authority replaced.
    let rewritten = v2
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/new"))
        .expect("rewritten request at v2");
    assert_eq!(rewritten.path, "/new/thing");
    assert_eq!(rewritten.host.as_deref(), Some("rewritten.example.com"));

    // Request headers set/added/removed on the default route, response header set.
    v1.clear_requests();
    let r = px
        .get(
            "multi.example.com",
            "/h",
            &[
                ("x-set", "client"),
                ("x-added", "client"),
                ("x-drop", "gone"),
            ],
        )
        .expect("get");
    assert_eq!(r.header("x-resp"), Some("three"));
    let seen = v1.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.header("x-set"), Some("one"), "set overwrites");
    let added: Vec<&str> = req
        .headers
        .iter()
        .filter(|(n, _)| n == "x-added")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(added, ["client", "two"], "add appends");
    assert_eq!(req.header("x-drop"), None, "remove drops");
    let _ = px.envoy.shutdown();
}

#[test]
fn consistent_hash_redirect_and_direct_response() {
    let ups: Vec<HttpUpstream> = (0..3)
        .map(|i| HttpUpstream::start(&format!("h{i}")).expect("upstream"))
        .collect();
    let eps: Vec<(&HttpUpstream, &str)> = ups.iter().map(|u| (u, "v1")).collect();
    let yaml = [
        static_se("sticky", "sticky.example.com", &eps),
        destination_rule(
            "sticky",
            "  host: sticky.example.com\n  trafficPolicy:\n    loadBalancer: {consistentHash: {httpHeaderName: x-user}}\n",
        ),
        virtual_service(
            "sticky",
            "  hosts: [sticky.example.com]\n  http:\n  \
             - match: [{uri: {prefix: /moved}}]\n    redirect: {uri: /elsewhere, authority: other.example.com, redirectCode: 308}\n  \
             - match: [{uri: {exact: /static}}]\n    directResponse: {status: 418, body: {string: teapot}}\n  \
             - route: [{destination: {host: sticky.example.com}}]\n",
        ),
    ]
    .concat();
    let px = Explicit::start(&yaml);
    px.first("sticky.example.com", "/ready", 200);

    // Consistent hash on x-user: every user sticks to one endpoint (10 requests each);
    // 16 users spread over more than one of the 3 endpoints (all on one: p = 3^-15 < 1e-7).
    let mut chosen = std::collections::BTreeSet::new();
    for u in 0..16 {
        let user = format!("user-{u}");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..10 {
            let r = px
                .get("sticky.example.com", "/s", &[("x-user", &user)])
                .expect("get");
            assert_eq!(r.status, 200);
            seen.insert(r.header(UPSTREAM_NAME_HEADER).unwrap_or("").to_owned());
        }
        assert_eq!(seen.len(), 1, "{user} went to {seen:?}");
        chosen.extend(seen);
    }
    assert!(chosen.len() > 1, "16 users all hashed to {chosen:?}");

    // Redirect: 308 with the new authority and path; nothing reaches an upstream.
    let before: usize = ups.iter().map(HttpUpstream::request_count).sum();
    let r = px.get("sticky.example.com", "/moved/x", &[]).expect("get");
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("http://other.example.com/elsewhere")
    );
    // Direct response.
    let r = px.get("sticky.example.com", "/static", &[]).expect("get");
    assert_eq!((r.status, r.text().as_str()), (418, "teapot"));
    let after: usize = ups.iter().map(HttpUpstream::request_count).sum();
    assert_eq!(before, after);
    let _ = px.envoy.shutdown();
}

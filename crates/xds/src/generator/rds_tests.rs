//! Tests of route configuration generation (spec §4.2, §6, §7).

use entryway_model::api::MeshConfig;
use entryway_model::registry::Proxy;
use serde_json::{Value, json};

use super::route_configurations;
use super::testutil::{dr, rds, route_json, se, vhost, vhost_names, vs, with_scope};

const HTTP_SE: &str = "  hosts: [api.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS";

fn one(yaml: &str, name: &str) -> Value {
    let rcs = rds(yaml, &[name]);
    assert_eq!(rcs.len(), 1);
    route_json(&rcs[0])
}

fn default_retry_policy() -> Value {
    json!({
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}
        }],
        "host_selection_retry_max_attempts": "5"
    })
}

#[test]
fn service_vhost_with_default_route_and_allow_any() {
    let rc = one(&se("api", HTTP_SE), "80");
    assert_eq!(rc["name"], "80");
    assert_eq!(rc["validate_clusters"], false);
    assert_eq!(rc["ignore_port_in_host_matching"], true);
    assert_eq!(rc["max_direct_response_body_size_bytes"], 1048576);
    assert_eq!(vhost_names(&rc), ["api.example.com:80", "allow_any"]);
    let vh = vhost(&rc, "api.example.com:80");
    assert_eq!(
        vh["domains"],
        json!(["api.example.com", "api.example.com."])
    );
    assert_eq!(vh["include_request_attempt_count"], true);
    assert_eq!(
        vh["routes"],
        json!([{
            "name": "default",
            "match": {"prefix": "/", "case_sensitive": true},
            "route": {
                "cluster": "outbound|80||api.example.com",
                "timeout": "0s",
                "retry_policy": default_retry_policy(),
                "max_stream_duration": {"grpc_timeout_header_max": "0s"}
            },
            "decorator": {"operation": "api.example.com:80/*"}
        }])
    );
    let any = vhost(&rc, "allow_any");
    assert_eq!(
        any,
        &json!({
            "name": "allow_any",
            "domains": ["*"],
            "routes": [{
                "name": "allow_any",
                "match": {"prefix": "/"},
                "route": {"cluster": "PassthroughCluster", "timeout": "0s", "max_stream_duration": {"grpc_timeout_header_max": "0s"}}
            }],
            "include_request_attempt_count": true
        })
    );
}

#[test]
fn registry_only_catch_all_is_block_all() {
    let mesh = MeshConfig::from_yaml("outboundTrafficPolicy: {mode: REGISTRY_ONLY}").expect("mesh");
    let rcs = with_scope(
        &se("api", HTTP_SE),
        &mesh,
        &Proxy::in_namespace("default"),
        |s| route_configurations(s, &["80".to_string()]),
    );
    let rc = route_json(&rcs[0]);
    let block = vhost(&rc, "block_all");
    assert_eq!(block["domains"], json!(["*"]));
    assert_eq!(
        block["routes"],
        json!([{"name": "block_all", "match": {"prefix": "/"}, "direct_response": {"status": 502}}])
    );
}

#[test]
fn egress_proxy_is_the_catch_all_cluster() {
    let yaml = se("api", HTTP_SE)
        + "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: default}\nspec:\n  outboundTrafficPolicy:\n    mode: ALLOW_ANY\n    egressProxy: {host: egress.example.com, port: {number: 3128}}\n";
    let rc = one(&yaml, "80");
    assert_eq!(
        vhost(&rc, "allow_any")["routes"][0]["route"]["cluster"],
        "outbound|3128||egress.example.com"
    );
}

#[test]
fn domains_include_service_addresses_and_wildcards() {
    let yaml = se(
        "vip",
        "  hosts: [vip.example.com]\n  addresses: [10.0.0.1]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS",
    ) + &se(
        "wild",
        "  hosts: [\"*.foo.com\"]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: NONE",
    ) + &se(
        "v6",
        "  hosts: [v6.example.com]\n  addresses: [\"2001:db8::1\"]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS",
    );
    let rc = one(&yaml, "80");
    assert_eq!(
        vhost(&rc, "vip.example.com:80")["domains"],
        json!(["vip.example.com", "vip.example.com.", "10.0.0.1"])
    );
    assert_eq!(
        vhost(&rc, "*.foo.com:80")["domains"],
        json!(["*.foo.com", "*.foo.com."])
    );
    assert_eq!(
        vhost(&rc, "v6.example.com:80")["domains"],
        json!(["v6.example.com", "v6.example.com.", "[2001:db8::1]"])
    );
    assert_eq!(
        vhost_names(&rc),
        [
            "*.foo.com:80",
            "v6.example.com:80",
            "vip.example.com:80",
            "allow_any"
        ],
        "sorted by name, catch-all last"
    );
}

#[test]
fn kubernetes_style_hosts_get_short_forms() {
    let yaml = se(
        "k",
        "  hosts: [echo.default.svc.cluster.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS",
    ) + &se(
        "o",
        "  hosts: [other.prod.svc.cluster.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS",
    );
    let rc = one(&yaml, "80");
    assert_eq!(
        vhost(&rc, "echo.default.svc.cluster.local:80")["domains"],
        json!([
            "echo.default.svc.cluster.local",
            "echo.default.svc.cluster.local.",
            "echo",
            "echo.default.svc",
            "echo.default"
        ])
    );
    assert_eq!(
        vhost(&rc, "other.prod.svc.cluster.local:80")["domains"],
        json!([
            "other.prod.svc.cluster.local",
            "other.prod.svc.cluster.local.",
            "other.prod",
            "other.prod.svc"
        ])
    );
}

#[test]
fn duplicate_hosts_first_wins() {
    let yaml = se("a", HTTP_SE)
        + "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: b, namespace: other}\nspec:\n  hosts: [api.example.com]\n  addresses: [10.0.0.3]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n";
    let rc = one(&yaml, "80");
    assert_eq!(vhost_names(&rc), ["api.example.com:80", "allow_any"]);
}

#[test]
fn sniffed_route_holds_only_the_service_vhost() {
    let yaml = se(
        "auto",
        "  hosts: [auto.example.com]\n  addresses: [10.0.0.2]\n  ports: [{number: 8080, name: sniffed}]\n  resolution: DNS",
    ) + &se(
        "other",
        "  hosts: [other.example.com]\n  ports: [{number: 8080, name: http, protocol: HTTP}]\n  resolution: DNS",
    );
    let rcs = rds(&yaml, &["auto.example.com:8080", "8080"]);
    let sniffed = route_json(&rcs[0]);
    assert_eq!(sniffed["name"], "auto.example.com:8080");
    assert_eq!(vhost_names(&sniffed), ["auto.example.com:8080"]);
    assert_eq!(
        vhost(&sniffed, "auto.example.com:8080")["domains"],
        json!(["*"])
    );
    let port = route_json(&rcs[1]);
    assert_eq!(
        vhost_names(&port),
        [
            "auto.example.com:8080",
            "other.example.com:8080",
            "allow_any"
        ]
    );
    assert_eq!(
        vhost(&port, "auto.example.com:8080")["domains"],
        json!(["auto.example.com", "auto.example.com.", "10.0.0.2"])
    );
}

#[test]
fn unknown_route_name_is_empty() {
    let rc = one(&se("api", HTTP_SE), "not-a-port");
    assert_eq!(
        rc,
        json!({"name": "not-a-port", "validate_clusters": false})
    );
}

#[test]
fn tcp_ports_get_no_vhost() {
    let yaml = se(
        "t",
        "  hosts: [t.example.com]\n  ports: [{number: 80, name: tcp, protocol: TCP}]\n  resolution: DNS",
    ) + &se("api", HTTP_SE);
    assert_eq!(
        vhost_names(&one(&yaml, "80")),
        ["api.example.com:80", "allow_any"]
    );
}

const REVIEWS: &str = "  hosts: [reviews.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS";

#[test]
fn virtual_service_matches_and_subsets() {
    let yaml = se("r", REVIEWS)
        + &vs(
            "reviews",
            r#"  hosts: [reviews.example.com]
  http:
  - name: v2
    match:
    - name: jason
      uri: {prefix: /api}
      ignoreUriCase: true
      headers:
        end-user: {exact: jason}
        x-any: {}
      withoutHeaders:
        x-skip: {prefix: "y"}
      queryParams:
        debug: {exact: "1"}
      method: {exact: GET}
      authority: {regex: "^api\\..*"}
      scheme: {exact: http}
    - uri: {exact: /exact}
    route: [{destination: {host: reviews.example.com, subset: v2}}]
  - match: [{uri: {prefix: /}}]
    route: [{destination: {host: reviews.example.com, subset: v1}}]
  - match: [{uri: {prefix: /never}}]
    route: [{destination: {host: never.example.com}}]"#,
        );
    let rc = one(&yaml, "80");
    let vh = vhost(&rc, "reviews.example.com:80");
    let routes = vh["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 3, "stops after the catch-all rule");
    assert_eq!(routes[0]["name"], "v2.jason");
    assert_eq!(
        routes[0]["match"],
        json!({
            "prefix": "/api",
            "case_sensitive": false,
            "headers": [
                {"name": "end-user", "string_match": {"exact": "jason"}},
                {"name": "x-any", "present_match": true},
                {"name": "x-skip", "string_match": {"prefix": "y"}, "invert_match": true, "treat_missing_header_as_empty": true},
                {"name": ":method", "string_match": {"exact": "GET"}},
                {"name": ":authority", "string_match": {"safe_regex": {"regex": "^api\\..*"}}},
                {"name": ":scheme", "string_match": {"exact": "http"}}
            ],
            "query_parameters": [{"name": "debug", "string_match": {"exact": "1"}}]
        })
    );
    assert_eq!(
        routes[0]["route"]["cluster"],
        "outbound|80|v2|reviews.example.com"
    );
    assert_eq!(
        routes[0]["decorator"]["operation"],
        "reviews.example.com:80/api*"
    );
    assert_eq!(
        routes[0]["metadata"]["filter_metadata"]["istio"]["config"],
        "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"
    );
    assert_eq!(routes[1]["name"], "v2");
    assert_eq!(
        routes[1]["match"],
        json!({"path": "/exact", "case_sensitive": true})
    );
    assert_eq!(
        routes[2]["route"]["cluster"],
        "outbound|80|v1|reviews.example.com"
    );
    assert_eq!(routes[2]["route"]["retry_policy"], default_retry_policy());
}

#[test]
fn weighted_destinations_are_not_normalised() {
    let yaml = se("r", REVIEWS)
        + &vs(
            "reviews",
            "  hosts: [reviews.example.com]\n  http:\n  - route:\n    - {destination: {host: reviews.example.com, subset: v1}, weight: 3, headers: {request: {set: {x-v: \"1\"}}}}\n    - {destination: {host: reviews.example.com, subset: v2}, weight: 0}\n    - {destination: {host: reviews.example.com, subset: v3}, weight: 1}",
        );
    let rc = one(&yaml, "80");
    let r = &vhost(&rc, "reviews.example.com:80")["routes"][0];
    assert_eq!(
        r["route"]["weighted_clusters"],
        json!({"clusters": [
            {"name": "outbound|80|v1|reviews.example.com", "weight": 3,
             "request_headers_to_add": [{"header": {"key": "x-v", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]},
            {"name": "outbound|80|v3|reviews.example.com", "weight": 1}
        ]})
    );
    assert_eq!(r["decorator"]["operation"], "reviews:80/*");
}

#[test]
fn timeout_and_retries() {
    let yaml = se("r", REVIEWS)
        + &vs(
            "reviews",
            "  hosts: [reviews.example.com]\n  http:\n  - match: [{uri: {prefix: /a}}]\n    timeout: 5s\n    retries: {attempts: 3, perTryTimeout: 2s, retryOn: \"gateway-error,503,connect-failure\", retryRemoteLocalities: true, retryIgnorePreviousHosts: false, backoff: 0.1s}\n    route: [{destination: {host: reviews.example.com}}]\n  - retries: {attempts: 0}\n    route: [{destination: {host: reviews.example.com}}]",
        );
    let rc = one(&yaml, "80");
    let routes = &vhost(&rc, "reviews.example.com:80")["routes"];
    let a = &routes[0]["route"];
    assert_eq!(a["timeout"], "5s");
    assert!(a.get("max_stream_duration").is_none(), "{a}");
    assert!(a.get("max_grpc_timeout").is_none(), "{a}");
    assert_eq!(
        a["retry_policy"],
        json!({
            "retry_on": "gateway-error,connect-failure,retriable-status-codes",
            "num_retries": 3,
            "per_try_timeout": "2s",
            "retry_priority": {
                "name": "envoy.retry_priorities.previous_priorities",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig", "update_frequency": 2}
            },
            "host_selection_retry_max_attempts": "5",
            "retriable_status_codes": [503],
            "retry_back_off": {"base_interval": "0.100s"}
        })
    );
    assert!(
        routes[1]["route"].get("retry_policy").is_none(),
        "attempts 0: no retries"
    );
}

#[test]
fn fault_and_cors_per_filter_config() {
    let yaml = se("r", REVIEWS)
        + &vs(
            "reviews",
            "  hosts: [reviews.example.com]\n  http:\n  - fault:\n      delay: {fixedDelay: 2s, percentage: {value: 0.5}}\n      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 10}}\n    corsPolicy:\n      allowOrigins: [{exact: \"https://a.com\"}, {regex: \".*b.com\"}]\n      allowMethods: [GET, POST]\n      allowHeaders: [x-a]\n      exposeHeaders: [x-b, x-c]\n      maxAge: 24h\n      allowCredentials: true\n    route: [{destination: {host: reviews.example.com}}]",
        );
    let rc = one(&yaml, "80");
    let tpfc = &vhost(&rc, "reviews.example.com:80")["routes"][0]["typed_per_filter_config"];
    assert_eq!(
        tpfc["envoy.filters.http.fault"],
        json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "delay": {"fixed_delay": "2s", "percentage": {"numerator": 5000, "denominator": "MILLION"}},
            "abort": {"grpc_status": 14, "percentage": {"numerator": 100000, "denominator": "MILLION"}}
        })
    );
    assert_eq!(
        tpfc["envoy.filters.http.cors"],
        json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
            "allow_origin_string_match": [{"exact": "https://a.com"}, {"safe_regex": {"regex": ".*b.com"}}],
            "allow_methods": "GET,POST",
            "allow_headers": "x-a",
            "expose_headers": "x-b,x-c",
            "max_age": "86400",
            "allow_credentials": true,
            "filter_enabled": {"default_value": {"numerator": 100}},
            "forward_not_matching_preflights": true
        })
    );
}

#[test]
fn legacy_integer_delay_percent_uses_hundred() {
    let yaml = se("r", REVIEWS)
        + &vs(
            "reviews",
            "  hosts: [reviews.example.com]\n  http:\n  - fault: {delay: {fixedDelay: 1s, percent: 30}, abort: {httpStatus: 503}}\n    route: [{destination: {host: reviews.example.com}}]",
        );
    let rc = one(&yaml, "80");
    let f = &vhost(&rc, "reviews.example.com:80")["routes"][0]["typed_per_filter_config"]["envoy.filters.http.fault"];
    assert_eq!(f["delay"]["percentage"], json!({"numerator": 30}));
    assert_eq!(f["abort"], json!({"http_status": 503}));
}

#[test]
fn redirect_and_direct_response() {
    let yaml = se("r", REVIEWS)
        + &vs(
            "reviews",
            "  hosts: [reviews.example.com]\n  http:\n  - match: [{uri: {exact: /old}}]\n    redirect: {uri: /new, authority: new.example.com, scheme: https, port: 443, redirectCode: 308}\n  - match: [{uri: {exact: /here}}]\n    redirect: {uri: /there, derivePort: FROM_REQUEST_PORT}\n  - directResponse: {status: 503, body: {string: unavailable}}",
        );
    let rc = one(&yaml, "80");
    let routes = &vhost(&rc, "reviews.example.com:80")["routes"];
    assert_eq!(
        routes[0]["redirect"],
        json!({"host_redirect": "new.example.com", "path_redirect": "/new", "scheme_redirect": "https", "response_code": "PERMANENT_REDIRECT"})
    );
    assert_eq!(routes[0]["decorator"]["operation"], "reviews:80/old");
    assert_eq!(
        routes[1]["redirect"],
        json!({"path_redirect": "/there"}),
        "port 80 elided for http"
    );
    assert_eq!(
        routes[2]["direct_response"],
        json!({"status": 503, "body": {"inline_string": "unavailable"}})
    );
}

#[test]
fn rewrite_headers_and_mirrors() {
    let yaml = se("r", REVIEWS)
        + &se(
            "m",
            "  hosts: [mirror.example.com]\n  ports: [{number: 8080, name: http, protocol: HTTP}]\n  resolution: DNS",
        )
        + &vs(
            "reviews",
            "  hosts: [reviews.example.com]\n  http:\n  - rewrite: {uri: /v2, authority: internal.example.com}\n    headers:\n      request: {set: {b: \"2\", a: \"1\"}, add: {c: \"3\"}, remove: [x-drop]}\n      response: {remove: [server]}\n    mirror: {host: mirror.example.com, port: {number: 8080}}\n    mirrorPercentage: {value: 25}\n    match: [{uri: {prefix: /a}}]\n    route: [{destination: {host: reviews.example.com}}]\n  - mirrors: [{destination: {host: mirror.example.com}, percentage: {value: 0}}, {destination: {host: mirror.example.com, port: {number: 8080}}}]\n    route: [{destination: {host: reviews.example.com}}]",
        );
    let rc = one(&yaml, "80");
    let r = &vhost(&rc, "reviews.example.com:80")["routes"][0];
    assert_eq!(r["route"]["prefix_rewrite"], "/v2");
    assert_eq!(r["route"]["host_rewrite_literal"], "internal.example.com");
    assert_eq!(
        r["request_headers_to_add"],
        json!([
            {"header": {"key": "a", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
            {"header": {"key": "b", "value": "2"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
            {"header": {"key": "c", "value": "3"}}
        ])
    );
    assert_eq!(r["request_headers_to_remove"], json!(["x-drop"]));
    assert_eq!(r["response_headers_to_remove"], json!(["server"]));
    assert_eq!(
        r["route"]["request_mirror_policies"],
        json!([{
            "cluster": "outbound|8080||mirror.example.com",
            "runtime_fraction": {"default_value": {"numerator": 250000, "denominator": "MILLION"}},
            "trace_sampled": false
        }])
    );
    let r = &vhost(&rc, "reviews.example.com:80")["routes"][1];
    assert_eq!(
        r["route"]["request_mirror_policies"],
        json!([{
            "cluster": "outbound|8080||mirror.example.com",
            "runtime_fraction": {"default_value": {"numerator": 100}},
            "trace_sampled": false
        }]),
        "a 0% mirror is disabled; no percentage means 100%"
    );
}

#[test]
fn virtual_service_host_without_service_only_on_port_80() {
    let yaml = se("r", REVIEWS)
        + &se(
            "p",
            "  hosts: [p.example.com]\n  ports: [{number: 9080, name: http, protocol: HTTP}]\n  resolution: DNS",
        )
        + &vs(
            "ext",
            "  hosts: [google.com]\n  http:\n  - route: [{destination: {host: reviews.example.com}}]",
        );
    let rcs = rds(&yaml, &["80", "9080"]);
    let r80 = route_json(&rcs[0]);
    assert_eq!(
        vhost_names(&r80),
        ["google.com:80", "reviews.example.com:80", "allow_any"]
    );
    assert_eq!(
        vhost(&r80, "google.com:80")["domains"],
        json!(["google.com"])
    );
    assert_eq!(
        vhost(&r80, "google.com:80")["routes"][0]["route"]["cluster"],
        "outbound|80||reviews.example.com"
    );
    assert_eq!(
        vhost_names(&route_json(&rcs[1])),
        ["p.example.com:9080", "allow_any"]
    );
}

#[test]
fn match_port_and_source_filters() {
    let yaml = se(
        "r",
        "  hosts: [reviews.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}, {number: 8080, name: http2, protocol: HTTP}]\n  resolution: DNS",
    ) + &vs(
        "reviews",
        "  hosts: [reviews.example.com]\n  http:\n  - match: [{port: 8080}]\n    route: [{destination: {host: reviews.example.com, subset: p8080}}]\n  - match: [{sourceLabels: {app: nope}}]\n    route: [{destination: {host: reviews.example.com, subset: nope}}]\n  - match: [{sourceNamespace: default}]\n    route: [{destination: {host: reviews.example.com, subset: ns}}]",
    );
    let rcs = rds(&yaml, &["80", "8080"]);
    let r80 = route_json(&rcs[0]);
    let routes = &vhost(&r80, "reviews.example.com:80")["routes"];
    assert_eq!(routes.as_array().map(Vec::len), Some(1));
    assert_eq!(
        routes[0]["route"]["cluster"],
        "outbound|80|ns|reviews.example.com"
    );
    let r8080 = route_json(&rcs[1]);
    assert_eq!(
        vhost(&r8080, "reviews.example.com:8080")["routes"][0]["route"]["cluster"],
        "outbound|8080|p8080|reviews.example.com"
    );
}

#[test]
fn virtual_service_without_routes_keeps_default_vhost() {
    let yaml = se("r", REVIEWS)
        + &vs(
            "reviews",
            "  hosts: [reviews.example.com]\n  http:\n  - match: [{port: 9999}]\n    route: [{destination: {host: reviews.example.com, subset: x}}]",
        );
    let rc = one(&yaml, "80");
    assert_eq!(
        vhost(&rc, "reviews.example.com:80")["routes"][0]["name"],
        "default"
    );
}

#[test]
fn consistent_hash_sets_route_hash_policy() {
    let yaml = se("r", REVIEWS)
        + &se(
            "s",
            "  hosts: [sticky.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS",
        )
        + &dr(
            "sticky",
            "  host: sticky.example.com\n  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}",
        )
        + &dr(
            "reviews",
            "  host: reviews.example.com\n  trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: c, ttl: 10s}}}}",
        )
        + &vs(
            "reviews",
            "  hosts: [reviews.example.com]\n  http:\n  - route: [{destination: {host: reviews.example.com}}]",
        );
    let rc = one(&yaml, "80");
    let sticky = &vhost(&rc, "sticky.example.com:80")["routes"][0]["route"];
    assert_eq!(
        sticky["hash_policy"],
        json!([{"header": {"header_name": "x-user"}}])
    );
    let reviews = &vhost(&rc, "reviews.example.com:80")["routes"][0]["route"];
    assert_eq!(
        reviews["hash_policy"],
        json!([{"cookie": {"name": "c", "ttl": "10s"}}])
    );
    assert!(
        reviews["retry_policy"]
            .get("retry_host_predicate")
            .is_none(),
        "consistent hash: no previous_hosts predicate"
    );
}

#[test]
fn wildcard_virtual_service_attaches_to_most_specific_match() {
    let yaml = se(
        "a",
        "  hosts: [a.foo.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS",
    ) + &se(
        "b",
        "  hosts: [b.bar.foo.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS",
    ) + &vs(
        "wide",
        "  hosts: [\"*.foo.com\"]\n  http:\n  - route: [{destination: {host: a.foo.com, subset: wide}}]",
    ) + &vs(
        "narrow",
        "  hosts: [\"*.bar.foo.com\"]\n  http:\n  - route: [{destination: {host: a.foo.com, subset: narrow}}]",
    );
    let rc = one(&yaml, "80");
    assert_eq!(
        vhost(&rc, "a.foo.com:80")["routes"][0]["route"]["cluster"],
        "outbound|80|wide|a.foo.com"
    );
    assert_eq!(
        vhost(&rc, "b.bar.foo.com:80")["routes"][0]["route"]["cluster"],
        "outbound|80|narrow|a.foo.com"
    );
}

#[test]
fn sniffed_service_ports_get_vhosts() {
    let yaml = se(
        "auto",
        "  hosts: [auto.example.com]\n  ports: [{number: 8080, name: sniffed}]\n  resolution: DNS",
    );
    assert_eq!(
        vhost_names(&one(&yaml, "8080")),
        ["auto.example.com:8080", "allow_any"]
    );
}

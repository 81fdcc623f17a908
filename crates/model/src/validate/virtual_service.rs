//! VirtualService validation: Istio's `ValidateVirtualService` (`pkg/config/validation`
//! `validation.go` + `virtualservice.go`), plus the schema-level oneof checks the CRD
//! enforces for the proto oneofs that the typed model keeps as separate `Option` fields.
//!
//! Messages are Istio's; every problem carries the most precise field path. Problems are
//! accumulated, except inside `redirect`/`rewrite`, where Istio reports only the first.

use std::collections::{BTreeMap, HashMap};

use crate::api::{
    self, Destination, HeaderOperations, Headers, HttpMatchRequest, HttpRoute,
    HttpRouteDestination, Percent, RouteDestination, StringMatch,
};
use crate::diag::{FieldPath, Report};
use crate::validate::Context;
use crate::validate::common::{
    self, ExportToOwner, check_duration, check_labels, is_dns1123_label, validate_fqdn,
    validate_ip_or_cidr, validate_port, validate_wildcard_domain,
};

/// The reserved gateway name for sidecars.
const MESH_GATEWAY: &str = "mesh";

/// Envoy retry conditions accepted in `retryOn` (besides HTTP status codes).
const RETRY_ON_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// Methods accepted in `corsPolicy.allowMethods`.
const CORS_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];

/// gRPC status names accepted by `fault.abort.grpcStatus`.
const GRPC_STATUSES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

const KB: usize = 1024;
const MB: usize = 1024 * KB;

/// Validates a VirtualService spec.
pub fn validate(spec: &api::VirtualService, ctx: &Context<'_>, report: &mut Report) {
    let root = FieldPath::root("spec");
    let is_delegate = spec.hosts.is_empty();

    // A VirtualService without hosts is a delegate.
    if is_delegate {
        if !spec.gateways.is_empty() {
            report.error(
                root.field("gateways"),
                "delegate virtual service must have no gateways specified",
            );
        }
        if !spec.tls.is_empty() {
            report.error(
                root.field("tls"),
                "delegate virtual service must have no tls route specified",
            );
        }
        if !spec.tcp.is_empty() {
            report.error(
                root.field("tcp"),
                "delegate virtual service must have no tcp route specified",
            );
        }
    }

    // Bound to gateways only when gateways are listed and `mesh` is not one of them.
    let applies_to_gateway = !spec.gateways.is_empty() && !lists_mesh(&spec.gateways);
    let applies_to_mesh = !applies_to_gateway;
    check_gateway_names(&spec.gateways, &root.field("gateways"), report);

    if !applies_to_gateway {
        check_jwt_claim_routes(spec, &root, report);
    }

    check_hosts(spec, applies_to_gateway, applies_to_mesh, &root, report);

    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        report.error(
            &root,
            "http, tcp or tls must be provided in virtual service",
        );
    }
    let http_path = root.field("http");
    for (i, route) in spec.http.iter().enumerate() {
        check_http_route(route, is_delegate, &http_path.index(i), report);
    }
    let tls_path = root.field("tls");
    for (i, route) in spec.tls.iter().enumerate() {
        check_tls_route(route, spec, &tls_path.index(i), report);
    }
    let tcp_path = root.field("tcp");
    for (i, route) in spec.tcp.iter().enumerate() {
        check_tcp_route(route, &tcp_path.index(i), report);
    }

    common::check_export_to(
        &spec.export_to,
        ctx.namespace,
        ExportToOwner::Other,
        &root.field("exportTo"),
        report,
    );

    analyze_unreachable_http(&spec.http, &http_path, report);
    analyze_unreachable(
        &spec.tcp,
        |r| r.r#match.as_slice(),
        |m| format!("{m:?}"),
        &tcp_path,
        report,
    );
    analyze_unreachable(
        &spec.tls,
        |r| r.r#match.as_slice(),
        |m| format!("{m:?}"),
        &tls_path,
        report,
    );
}

fn lists_mesh(gateways: &[String]) -> bool {
    gateways.iter().any(|g| g == MESH_GATEWAY)
}

// ---------------------------------------------------------------------------------------
// hosts and gateways
// ---------------------------------------------------------------------------------------

fn check_hosts(
    spec: &api::VirtualService,
    applies_to_gateway: bool,
    applies_to_mesh: bool,
    root: &FieldPath,
    report: &mut Report,
) {
    let hosts_path = root.field("hosts");
    let sni = spec
        .tls
        .iter()
        .any(|t| t.r#match.iter().any(|m| !m.sni_hosts.is_empty()));
    let mut all_valid = true;
    for (i, host) in spec.hosts.iter().enumerate() {
        let checked = if applies_to_gateway {
            validate_gateway_bound_domain(sni, host)
        } else {
            validate_wildcard_domain(host)
        };
        match checked {
            // IP addresses are accepted as hosts.
            Err(e) if !is_ip_address(host) => {
                report.error(hosts_path.index(i), e);
                all_valid = false;
            }
            Err(_) => {}
            Ok(()) if applies_to_mesh && host == "*" => {
                report.error(
                    hosts_path.index(i),
                    "wildcard host * is not allowed for virtual services bound to the mesh gateway",
                );
                all_valid = false;
            }
            Ok(()) => {}
        }
    }
    // Literal and wildcard duplicates (`*.foo.com` and `*.com`) are both duplicates.
    if all_valid {
        for (i, a) in spec.hosts.iter().enumerate() {
            for (j, b) in spec.hosts.iter().enumerate().skip(i + 1) {
                if host_matches(a, b) {
                    report.error(
                        hosts_path.index(j),
                        format!("duplicate hosts in virtual service: {a} & {b}"),
                    );
                }
            }
        }
    }
}

/// Istio's wildcard-domain check for gateway-bound VirtualServices: when the VS has SNI
/// matches, an auto-generated `outbound_.<port>_...` first label is also accepted.
fn validate_gateway_bound_domain(sni: bool, domain: &str) -> Result<(), String> {
    let first = domain.split('.').next().unwrap_or("");
    if sni && first == "outbound_" && !domain.is_empty() && domain.len() <= 255 {
        // Istio matches (unanchored) `outbound_.([0-8].*).*` and checks nothing else.
        let b = domain.as_bytes();
        let ok = domain.match_indices("outbound_").any(|(at, _)| {
            let any = b.get(at + 9).is_some_and(|c| *c != b'\n');
            any && b.get(at + 10).is_some_and(|c| (b'0'..=b'8').contains(c))
        });
        if ok {
            return Ok(());
        }
        return Err(format!(
            "domain name \"{domain}\" invalid (label \"{first}\" invalid)"
        ));
    }
    validate_wildcard_domain(domain)
}

/// An IP address as Istio's `netutil.IsValidIPAddress` reads it (IPv6 zones allowed).
fn is_ip_address(s: &str) -> bool {
    if common::parse_ip(s).is_some() {
        return true;
    }
    match s.split_once('%') {
        Some((addr, zone)) if !zone.is_empty() && addr.contains(':') => {
            matches!(common::parse_ip(addr), Some(std::net::IpAddr::V6(_)))
        }
        _ => false,
    }
}

fn is_wildcarded(h: &str) -> bool {
    h.starts_with('*')
}

/// Istio's `host.Name.Matches`: the two names overlap (either covers the other).
fn host_matches(n: &str, o: &str) -> bool {
    match (is_wildcarded(n), is_wildcarded(o)) {
        (true, true) => {
            let (ns, os) = (&n[1..], &o[1..]);
            if n.len() < o.len() {
                os.ends_with(ns)
            } else {
                ns.ends_with(os)
            }
        }
        (true, false) => o.ends_with(&n[1..]),
        (false, true) => n.ends_with(&o[1..]),
        (false, false) => n == o,
    }
}

/// Istio's `host.Name.SubsetOf`: `n` is covered by `o`.
fn host_subset_of(n: &str, o: &str) -> bool {
    match (is_wildcarded(n), is_wildcarded(o)) {
        (true, true) => n.len() >= o.len() && n[1..].ends_with(&o[1..]),
        (true, false) => false,
        (false, true) => n.ends_with(&o[1..]),
        (false, false) => n == o,
    }
}

/// Gateway references: `ns/name` (both DNS-1123 labels), or a plain name / legacy
/// `name.ns` FQDN (the latter with a warning).
fn check_gateway_names(names: &[String], path: &FieldPath, report: &mut Report) {
    for (i, name) in names.iter().enumerate() {
        let p = path.index(i);
        let Some((ns, gw)) = name.split_once('/') else {
            if name.contains('.') {
                let mut parts = name.split('.');
                let first = parts.next().unwrap_or("");
                let second = parts.next().unwrap_or("");
                report.warn(
                    &p,
                    format!(
                        "using legacy gatewayName format {name:?}; prefer the <namespace>/<name> format: \"{second}/{first}\""
                    ),
                );
            }
            if let Err(e) = validate_fqdn(name) {
                report.error(&p, e);
            }
            // Istio stops checking the remaining names here (an early `return` in
            // `validateGatewayNames`); we keep going, as the documented intent is to
            // validate every gateway reference.
            continue;
        };
        if ns.is_empty() || gw.is_empty() {
            report.error(&p, "config namespace and gateway name cannot be empty");
        }
        if !is_dns1123_label(ns) {
            report.error(&p, format!("invalid value for namespace: {ns:?}"));
        }
        if !is_dns1123_label(gw) {
            report.error(&p, format!("invalid value for gateway name: {gw:?}"));
        }
    }
}

/// `@request.auth.claims.<c>` / `@request.auth.claims[<c>]` header names (JWT claim routing).
fn is_jwt_claim_route(name: &str) -> bool {
    const PREFIX: &str = "@request.auth.claims";
    let matches_prefix = name
        .get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX));
    if !matches_prefix {
        return false;
    }
    let rest = name.get(PREFIX.len()..).unwrap_or("");
    (rest.starts_with('.') && rest.len() > 1)
        || (rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2)
}

/// JWT claim based routing is only for gateways.
fn check_jwt_claim_routes(spec: &api::VirtualService, root: &FieldPath, report: &mut Report) {
    let gateways = format!("[{}]", spec.gateways.join(" "));
    for (i, route) in spec.http.iter().enumerate() {
        for (j, m) in route.r#match.iter().enumerate() {
            let mp = root.field("http").index(i).field("match").index(j);
            for (field, headers) in [
                ("headers", &m.headers),
                ("withoutHeaders", &m.without_headers),
            ] {
                for key in headers.keys().filter(|k| is_jwt_claim_route(k)) {
                    report.error(
                        mp.field(field).key(key),
                        format!(
                            "JWT claim based routing (key: {key}) is only supported for gateway, found no gateways: {gateways}"
                        ),
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP routes
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HttpRouteType {
    Independent,
    Root,
    Delegate,
}

fn check_http_route(
    route: &HttpRoute,
    is_delegate_vs: bool,
    path: &FieldPath,
    report: &mut Report,
) {
    let route_type = if is_delegate_vs {
        HttpRouteType::Delegate
    } else if route.delegate.is_some() {
        HttpRouteType::Root
    } else {
        HttpRouteType::Independent
    };
    check_http_route_conflicts(route, route_type, path, report);

    let match_path = path.field("match");
    for (j, m) in route.r#match.iter().enumerate() {
        check_http_match(m, &match_path.index(j), report);
    }

    check_headers(route.headers.as_ref(), &path.field("headers"), report);
    if let Some(cors) = &route.cors_policy {
        check_cors(cors, &path.field("corsPolicy"), report);
    }
    if let Some(fault) = &route.fault {
        check_fault(fault, &path.field("fault"), report);
    }

    if let Some(v) = route.mirror_percent {
        let p = path.field("mirrorPercent");
        if v > 100 {
            report.error(
                &p,
                format!("mirror_percent must have a max value of 100 (it has {v})"),
            );
        }
        report.warn(
            &p,
            "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead",
        );
    }
    if let Some(p) = &route.mirror_percentage {
        check_mirror_percentage(
            p,
            "mirror_percentage",
            &path.field("mirrorPercentage"),
            report,
        );
    }
    if let Some(m) = &route.mirror {
        check_destination(m, &path.field("mirror"), report);
    }
    let mirrors_path = path.field("mirrors");
    for (k, mirror) in route.mirrors.iter().enumerate() {
        let mp = mirrors_path.index(k);
        let Some(dest) = &mirror.destination else {
            report.error(
                mp.field("destination"),
                "destination is required for mirrors",
            );
            continue;
        };
        check_destination(dest, &mp.field("destination"), report);
        if let Some(p) = &mirror.percentage {
            check_mirror_percentage(p, "mirror percentage", &mp.field("percentage"), report);
        }
    }

    if let Some(r) = &route.redirect {
        check_redirect(r, route, &path.field("redirect"), report);
    }
    if let Some(d) = &route.direct_response {
        check_direct_response(d, &path.field("directResponse"), report);
    }
    if let Some(r) = &route.retries {
        check_retries(r, &path.field("retries"), report);
    }
    if let Some(r) = &route.rewrite {
        check_rewrite(r, &path.field("rewrite"), report);
    }
    check_authority_rewrite(route, path, report);
    check_http_destinations(&route.route, &path.field("route"), report);
    if let Some(t) = &route.timeout {
        check_duration(Some(t), &path.field("timeout"), report);
    }
}

fn check_http_route_conflicts(
    route: &HttpRoute,
    route_type: HttpRouteType,
    path: &FieldPath,
    report: &mut Report,
) {
    if route_type == HttpRouteType::Root {
        // A root route may only delegate.
        if route.redirect.is_some() {
            report.error(
                path.field("redirect"),
                format!("root HTTP route {} must not specify redirect", route.name),
            );
        }
        if !route.route.is_empty() {
            report.error(
                path.field("route"),
                format!("root HTTP route {} must not specify route", route.name),
            );
        }
        return;
    }
    if route_type == HttpRouteType::Delegate && route.delegate.is_some() {
        report.error(
            path.field("delegate"),
            "delegate HTTP route cannot contain delegate",
        );
    }

    if route.redirect.is_some() {
        if !route.route.is_empty() {
            report.error(path, "HTTP route cannot contain both route and redirect");
        }
        if route.fault.is_some() {
            report.error(path, "HTTP route cannot contain both fault and redirect");
        }
        if route.rewrite.is_some() {
            report.error(
                path,
                "HTTP route rule cannot contain both rewrite and redirect",
            );
        }
        if route.direct_response.is_some() {
            report.error(
                path,
                "HTTP route rule cannot contain both direct_response and redirect",
            );
        }
    } else if route.direct_response.is_some() {
        if !route.route.is_empty() {
            report.error(
                path,
                "HTTP route cannot contain both route and direct_response",
            );
        }
        if route.fault.is_some() {
            report.error(
                path,
                "HTTP route cannot contain both fault and direct_response",
            );
        }
        if route.rewrite.is_some() {
            report.error(
                path,
                "HTTP route rule cannot contain both rewrite and direct_response",
            );
        }
    } else if route.route.is_empty() {
        report.error(path, "HTTP route, redirect or direct_response is required");
    }

    if route.mirror.is_some() && !route.mirrors.is_empty() {
        report.error(path, "HTTP route cannot contain both mirror and mirrors");
    }
}

fn check_http_match(m: &HttpMatchRequest, path: &FieldPath, report: &mut Report) {
    let headers_path = path.field("headers");
    for (name, sm) in &m.headers {
        let p = headers_path.key(name);
        if let Err(e) = validate_header_name_or_jwt_claim(name) {
            report.error(&p, e);
        }
        check_string_match(sm, "headers", false, &p, report);
    }
    let without_path = path.field("withoutHeaders");
    for (name, sm) in &m.without_headers {
        let p = without_path.key(name);
        if let Err(e) = validate_header_name_or_jwt_claim(name) {
            report.error(&p, e);
        }
        // `*` is not an RE2 regex here: it means "header present".
        if sm.regex.as_deref() != Some("*") {
            check_string_match(sm, "withoutHeaders", false, &p, report);
        }
    }
    // Envoy accepts an empty URI prefix, but not empty scheme/method/authority prefixes.
    if let Some(sm) = &m.uri {
        check_string_match(sm, "uri", true, &path.field("uri"), report);
    }
    for (field, sm) in [
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            check_string_match(sm, field, false, &path.field(field), report);
        }
    }
    let qp_path = path.field("queryParams");
    for (name, sm) in &m.query_params {
        check_string_match(sm, "queryParams", false, &qp_path.key(name), report);
    }

    if m.port != 0
        && let Err(e) = validate_port(m.port)
    {
        report.error(path.field("port"), e);
    }
    check_labels(&m.source_labels, &path.field("sourceLabels"), report);
    check_gateway_names(&m.gateways, &path.field("gateways"), report);
    if !m.source_namespace.is_empty() && !is_dns1123_label(&m.source_namespace) {
        report.error(
            path.field("sourceNamespace"),
            format!("sourceNamespace match {} is invalid", m.source_namespace),
        );
    }
}

/// The schema-level oneof rule: at most one member of a proto oneof may be set.
fn check_oneof(set: usize, path: &FieldPath, report: &mut Report) {
    if set > 1 {
        report.error(
            path,
            format!(
                "must validate one and only one schema (oneOf). Found {set} valid alternatives"
            ),
        );
    }
}

/// Istio's `validateStringMatch` (or, with `allow_empty_prefix`, `validateStringMatchRegexp`).
fn check_string_match(
    sm: &StringMatch,
    what: &str,
    allow_empty_prefix: bool,
    path: &FieldPath,
    report: &mut Report,
) {
    check_oneof(sm.set_count(), path, report);
    if !allow_empty_prefix && sm.prefix.as_deref() == Some("") {
        report.error(
            path.field("prefix"),
            format!("\"{what}\": prefix string match should not be empty"),
        );
    }
    if let Some(re) = &sm.regex {
        let p = path.field("regex");
        if re.is_empty() {
            report.error(
                &p,
                format!("\"{what}\": regex string match should not be empty"),
            );
        } else if let Err(e) = validate_regex(re, what) {
            report.error(&p, e);
        }
    }
}

/// A regex Envoy will accept: at most 1024 characters and RE2 syntax.
fn validate_regex(re: &str, what: &str) -> Result<(), String> {
    if re.len() > 1024 {
        return Err(format!(
            "\"{what}\": regex is too large, max length allowed is 1024"
        ));
    }
    match regex::Regex::new(re) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "\"{what}\": error parsing regexp: {}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)",
            regex_error_summary(&e)
        )),
    }
}

/// The one-line reason of a regex error (the crate's message spans several lines).
fn regex_error_summary(e: &regex::Error) -> String {
    let text = e.to_string();
    match text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
    {
        Some(reason) => reason.to_string(),
        None => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// A header name in a match: `[-_A-Za-z0-9]+`, or a JWT claim reference.
fn validate_header_name_or_jwt_claim(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".to_string());
    }
    if is_jwt_claim_route(name) || is_valid_header_name(name) {
        return Ok(());
    }
    Err(format!("header name {name} is not a valid header name"))
}

fn is_valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

fn is_internal_header(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

fn is_authority_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// A header added/set on the request: pseudo headers only for `:authority` (and `host`).
fn validate_request_set_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".to_string());
    }
    if is_internal_header(name) && !is_authority_header(name) {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

/// A header removed from the request or changed on the response.
fn validate_header_operation_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".to_string());
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(format!("invalid header {name:?}: cannot set Host header"));
    }
    if is_internal_header(name) {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

/// A header value Envoy can parse: no control characters (tab allowed) and `%` either
/// escaped as `%%` or opening a well-formed `%VAR%` / `%VAR(args)%` expression.
fn validate_header_value(value: &str) -> Result<(), String> {
    let bad_char = value
        .bytes()
        .any(|c| (c <= 0x08) || (0x0a..=0x1f).contains(&c) || c == 0x7f);
    if bad_char {
        return Err(format!("header value configuration {value} is invalid"));
    }
    parse_header_value(value).map_err(|e| format!("header value configuration: {e}"))
}

/// Port of Envoy's header formatter parser (`header_parser.cc`), as Istio ports it.
fn parse_header_value(value: &str) -> Result<(), String> {
    #[derive(PartialEq)]
    enum State {
        Literal,
        VariableName,
        ExpectArray,
        ExpectString,
        String,
        ExpectArrayDelimiterOrEnd,
        ExpectArgsEnd,
        ExpectVariableEnd,
    }
    let b = value.as_bytes();
    let mut pos = 0;
    let mut state = State::Literal;
    while let Some(&ch) = b.get(pos) {
        let next = b.get(pos + 1).copied();
        match state {
            State::Literal => {
                if ch == b'%' {
                    match next {
                        None => {
                            return Err("invalid header configuration. Un-escaped %".to_string());
                        }
                        Some(b'%') => pos += 1, // escaped %
                        Some(_) => state = State::VariableName,
                    }
                }
            }
            State::VariableName => {
                if ch == b'%' {
                    state = State::Literal;
                } else if ch == b'(' {
                    state = State::ExpectArray;
                }
            }
            State::ExpectArray => {
                if ch == b'[' {
                    state = State::ExpectString;
                } else if ch != b' ' {
                    state = State::String;
                }
            }
            State::ExpectArrayDelimiterOrEnd => {
                if ch == b',' {
                    state = State::ExpectString;
                } else if ch == b']' {
                    state = State::ExpectArgsEnd;
                } else if ch != b' ' {
                    return Err(
                        "invalid header configuration. Expecting ',', ']', or whitespace"
                            .to_string(),
                    );
                }
            }
            State::ExpectString => {
                if ch == b'"' {
                    state = State::String;
                } else if ch != b' ' {
                    return Err("invalid header configuration. Expecting '\"'".to_string());
                }
            }
            State::String => {
                if ch == b'\\' {
                    if next.is_none() {
                        return Err(
                            "invalid header configuration. Un-terminated backslash in JSON string"
                                .to_string(),
                        );
                    }
                    pos += 1;
                } else if ch == b')' {
                    state = State::ExpectVariableEnd;
                } else if ch == b'"' {
                    state = State::ExpectArrayDelimiterOrEnd;
                }
            }
            State::ExpectArgsEnd => {
                if ch == b')' {
                    state = State::ExpectVariableEnd;
                } else if ch != b' ' {
                    return Err(
                        "invalid header configuration. Expecting ')' or whitespace after '{}', but found '{}'"
                            .to_string(),
                    );
                }
            }
            State::ExpectVariableEnd => {
                if ch == b'%' {
                    state = State::Literal;
                } else if ch != b' ' {
                    return Err(
                        "invalid header configuration. Expecting '%' or whitespace after"
                            .to_string(),
                    );
                }
            }
        }
        pos += 1;
    }
    if state != State::Literal {
        return Err(format!(
            "invalid header configuration. Un-terminated variable expression '{value}'"
        ));
    }
    Ok(())
}

/// Header manipulation of a route or of one destination.
fn check_headers(headers: Option<&Headers>, path: &FieldPath, report: &mut Report) {
    let Some(h) = headers else { return };
    if let Some(ops) = &h.request {
        check_header_ops(ops, true, &path.field("request"), report);
    }
    if let Some(ops) = &h.response {
        check_header_ops(ops, false, &path.field("response"), report);
    }
}

fn check_header_ops(ops: &HeaderOperations, request: bool, path: &FieldPath, report: &mut Report) {
    for (field, map) in [("add", &ops.add), ("set", &ops.set)] {
        let fp = path.field(field);
        for (name, value) in map {
            let p = fp.key(name);
            let named = if request {
                validate_request_set_header_name(name)
            } else {
                validate_header_operation_name(name)
            };
            if let Err(e) = named {
                report.error(&p, e);
            }
            if let Err(e) = validate_header_value(value) {
                report.error(&p, e);
            }
        }
    }
    let rp = path.field("remove");
    for (i, name) in ops.remove.iter().enumerate() {
        if let Err(e) = validate_header_operation_name(name) {
            report.error(rp.index(i), e);
        }
    }
}

/// The authority may be rewritten in one place only (`rewrite.authority`, or a request
/// `:authority`/`host` header set or add).
fn check_authority_rewrite(route: &HttpRoute, path: &FieldPath, report: &mut Report) {
    let mut current = route
        .rewrite
        .as_ref()
        .map(|r| r.authority.clone())
        .unwrap_or_default();
    let Some(req) = route.headers.as_ref().and_then(|h| h.request.as_ref()) else {
        return;
    };
    let req_path = path.field("headers").field("request");
    for (field, map) in [("set", &req.set), ("add", &req.add)] {
        for (name, value) in map.iter().filter(|(k, _)| is_authority_header(k)) {
            if !current.is_empty() {
                report.error(
                    req_path.field(field).key(name),
                    format!(
                        "authority header cannot be set multiple times: have {current:?}, attempting to set {value:?}"
                    ),
                );
                // Istio reports only the first conflict.
                return;
            }
            current = value.clone();
        }
    }
}

fn check_cors(cors: &api::CorsPolicy, path: &FieldPath, report: &mut Report) {
    let origins = path.field("allowOrigins");
    for (i, origin) in cors.allow_origins.iter().enumerate() {
        let p = origins.index(i);
        check_oneof(origin.set_count(), &p, report);
        let text = origin
            .exact
            .as_deref()
            .or(origin.prefix.as_deref())
            .or(origin.regex.as_deref())
            .unwrap_or("");
        if text.is_empty() {
            report.error(&p, "'' is not a valid match type for CORS allow origins");
            continue;
        }
        if let Some(re) = &origin.regex
            && let Err(e) = validate_regex(re, "corsPolicy.allowOrigins")
        {
            report.error(p.field("regex"), e);
        }
    }
    let methods = path.field("allowMethods");
    for (i, m) in cors.allow_methods.iter().enumerate() {
        if !CORS_METHODS.contains(&m.as_str()) {
            report.error(
                methods.index(i),
                format!("{m:?} is not a supported HTTP method"),
            );
        }
    }
    for (field, names) in [
        ("allowHeaders", &cors.allow_headers),
        ("exposeHeaders", &cors.expose_headers),
    ] {
        let fp = path.field(field);
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                report.error(fp.index(i), "header name cannot be empty");
            } else if name != "*" && !is_valid_header_name(name) {
                report.error(
                    fp.index(i),
                    format!("header name {name} is not a valid header name"),
                );
            }
        }
    }
    if let Some(max_age) = &cors.max_age {
        let p = path.field("maxAge");
        check_duration(Some(max_age), &p, report);
        if max_age.subsec_nanos() > 0 {
            report.error(&p, "max_age duration is accurate only to seconds precision");
        }
    }
}

fn check_fault(fault: &api::HttpFaultInjection, path: &FieldPath, report: &mut Report) {
    if fault.abort.is_none() && fault.delay.is_none() {
        report.error(
            path,
            "HTTP fault injection must have an abort and/or a delay",
        );
    }
    if let Some(abort) = &fault.abort {
        let p = path.field("abort");
        if let Some(pct) = &abort.percentage {
            check_percentage(pct, &p.field("percentage"), report);
        }
        let set = [
            abort.http_status.is_some(),
            abort.grpc_status.is_some(),
            abort.http2_error.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        check_oneof(set, &p, report);
        if let Some(status) = abort.grpc_status.as_deref()
            && !GRPC_STATUSES.contains(&status)
        {
            report.error(
                p.field("grpcStatus"),
                format!(
                    "gRPC status {status:?} is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, for example 'NOT_FOUND'"
                ),
            );
        }
        if abort.http2_error.is_some() {
            report.error(
                p.field("http2Error"),
                "HTTP/2 abort fault injection not supported yet",
            );
        }
        if let Some(status) = abort.http_status
            && let Err(e) = validate_http_status(i64::from(status))
        {
            report.error(p.field("httpStatus"), e);
        }
        if set == 0 {
            report.warn(&p, "abort configured, but error type not set");
        }
    }
    if let Some(delay) = &fault.delay {
        let p = path.field("delay");
        if let Some(pct) = &delay.percentage {
            check_percentage(pct, &p.field("percentage"), report);
        }
        let set = usize::from(delay.fixed_delay.is_some())
            + usize::from(delay.exponential_delay.is_some());
        check_oneof(set, &p, report);
        if let Some(d) = &delay.fixed_delay {
            check_duration(Some(d), &p.field("fixedDelay"), report);
        }
        if let Some(d) = &delay.exponential_delay {
            let ep = p.field("exponentialDelay");
            check_duration(Some(d), &ep, report);
            report.error(&ep, "exponentialDelay not supported yet");
        }
    }
}

/// A fractional percentage: 0, or within [0.0001, 100].
fn check_percentage(p: &Percent, path: &FieldPath, report: &mut Report) {
    let v = p.value;
    // NaN passes, as in Go (every comparison is false).
    let out_of_range = !v.is_nan() && !(0.0..=100.0).contains(&v);
    if out_of_range || (v > 0.0 && v < 0.0001) {
        report.error(
            path,
            format!(
                "percentage {} is neither 0.0, nor in range [0.0001, 100.0]",
                go_float(v)
            ),
        );
    }
}

fn check_mirror_percentage(p: &Percent, what: &str, path: &FieldPath, report: &mut Report) {
    let v = p.value;
    if v > 100.0 {
        report.error(
            path,
            format!("{what} must have a max value of 100 (it has {v:.6})"),
        );
    }
    if v < 0.0 {
        report.error(
            path,
            format!("{what} must have a min value of 0 (it has {v:.6})"),
        );
    }
}

fn validate_http_status(status: i64) -> Result<(), String> {
    if !(200..=600).contains(&status) {
        return Err(format!("HTTP status {status} is not in range 200-599"));
    }
    Ok(())
}

/// Istio's `validateHTTPRedirect`: only the first problem is reported.
fn check_redirect(r: &api::HttpRedirect, route: &HttpRoute, path: &FieldPath, report: &mut Report) {
    check_oneof(
        usize::from(r.port.is_some()) + usize::from(r.derive_port.is_some()),
        path,
        report,
    );
    let has_port = r.port.is_some() || r.derive_port.is_some();
    if r.uri.is_empty()
        && r.prefix_rewrite.is_empty()
        && r.authority.is_empty()
        && !has_port
        && r.scheme.is_empty()
    {
        report.error(
            path,
            "redirect must specify URI, authority, scheme, or port",
        );
        return;
    }
    if !r.uri.is_empty() && !r.prefix_rewrite.is_empty() {
        report.error(
            path,
            "redirect may only contain one of uri or prefixRewrite",
        );
        return;
    }
    if !r.prefix_rewrite.is_empty() {
        for (j, m) in route.r#match.iter().enumerate() {
            if let Some(uri) = &m.uri
                && uri.prefix.is_none()
            {
                report.error(
                    path.field("prefixRewrite"),
                    format!(
                        "redirect prefixRewrite requires the uri match to be a prefix match (match {j})"
                    ),
                );
                return;
            }
        }
    }
    if r.redirect_code != 0 && !(300..=399).contains(&r.redirect_code) {
        report.error(
            path.field("redirectCode"),
            format!(
                "{} is not a valid redirect code, must be 3xx",
                r.redirect_code
            ),
        );
        return;
    }
    if !r.scheme.is_empty() && r.scheme != "http" && r.scheme != "https" {
        report.error(
            path.field("scheme"),
            "invalid redirect scheme, must be \"http\" or \"https\"",
        );
        return;
    }
    if let Some(port) = r.port
        && port > 0
        && let Err(e) = validate_port(port)
    {
        report.error(path.field("port"), e);
    }
}

fn check_direct_response(d: &api::HttpDirectResponse, path: &FieldPath, report: &mut Report) {
    if let Some(body) = &d.body {
        let bp = path.field("body");
        check_oneof(
            usize::from(body.string.is_some()) + usize::from(body.bytes.is_some()),
            &bp,
            report,
        );
        let size = match (&body.string, body.decoded_bytes()) {
            (Some(s), _) => s.len(),
            (None, Some(Ok(bytes))) => bytes.len(),
            (None, Some(Err(e))) => {
                report.error(bp.field("bytes"), format!("invalid base64 data: {e}"));
                0
            }
            (None, None) => 0,
        };
        if size > MB {
            report.error(
                &bp,
                "large direct_responses may impact control plane performance, must be less than 1MB",
            );
        } else if size > 100 * KB {
            report.warn(
                &bp,
                "large direct_responses may impact control plane performance",
            );
        }
    }
    if let Err(e) = validate_http_status(i64::from(d.status)) {
        report.error(path.field("status"), e);
    }
}

fn check_retries(r: &api::HttpRetry, path: &FieldPath, report: &mut Report) {
    if r.attempts < 0 {
        report.error(path.field("attempts"), "attempts cannot be negative");
    }
    if r.attempts == 0
        && (r.per_try_timeout.is_some()
            || !r.retry_on.is_empty()
            || r.retry_remote_localities.is_some())
    {
        report.error(
            path,
            "http retry policy configured when attempts are set to 0 (disabled)",
        );
    }
    check_duration(
        r.per_try_timeout.as_ref(),
        &path.field("perTryTimeout"),
        report,
    );
    if !r.retry_on.is_empty() {
        for policy in r.retry_on.split(',') {
            let status = policy.parse::<i64>().unwrap_or(0);
            if !is_known_http_status(status) && !RETRY_ON_POLICIES.contains(&policy) {
                report.error(
                    path.field("retryOn"),
                    format!("{policy:?} is not a valid retryOn policy"),
                );
            }
        }
    }
    check_duration(r.backoff.as_ref(), &path.field("backoff"), report);
}

/// HTTP status codes with a standard reason phrase (Go's `http.StatusText`).
fn is_known_http_status(code: i64) -> bool {
    matches!(
        code,
        100..=103
            | 200..=208
            | 226
            | 300..=305
            | 307
            | 308
            | 400..=418
            | 421..=426
            | 428
            | 429
            | 431
            | 451
            | 500..=508
            | 510
            | 511
    )
}

/// Istio's `validateHTTPRewrite`: only the first problem is reported.
fn check_rewrite(r: &api::HttpRewrite, path: &FieldPath, report: &mut Report) {
    if !r.uri.is_empty() && r.uri_regex_rewrite.is_some() {
        report.error(
            path,
            "rewrite may only contain one of URI or UriRegexRewrite",
        );
        return;
    }
    if r.uri.is_empty() && r.uri_regex_rewrite.is_none() && r.authority.is_empty() {
        report.error(
            path,
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified",
        );
        return;
    }
    if let Some(rr) = &r.uri_regex_rewrite {
        let p = path.field("uriRegexRewrite");
        if rr.r#match.is_empty() || rr.rewrite.is_empty() {
            report.error(
                &p,
                "UriRegexRewrite has errors: UriRegexRewrite requires both Rewrite and Match fields to be specified",
            );
        } else if let Err(e) = validate_regex(&rr.r#match, "HTTPRewrite.UriRegexRewrite.Match") {
            report.error(p.field("match"), format!("UriRegexRewrite has errors: {e}"));
        }
    }
}

fn check_destination(d: &Destination, path: &FieldPath, report: &mut Report) {
    let hp = path.field("host");
    if d.host == "*" {
        report.error(&hp, format!("invalid destination host {}", d.host));
    } else if let Err(e) = validate_wildcard_domain(&d.host) {
        report.error(&hp, e);
    }
    if !d.subset.is_empty() && !is_dns1123_label(&d.subset) {
        report.error(
            path.field("subset"),
            format!("subset name is invalid: {}", d.subset),
        );
    }
    if let Some(port) = &d.port
        && let Err(e) = validate_port(port.number)
    {
        report.error(path.field("port").field("number"), e);
    }
}

fn check_http_destinations(dests: &[HttpRouteDestination], path: &FieldPath, report: &mut Report) {
    let mut total: i64 = 0;
    for (i, d) in dests.iter().enumerate() {
        let p = path.index(i);
        match &d.destination {
            Some(dest) => check_destination(dest, &p.field("destination"), report),
            None => report.error(p.field("destination"), "destination is required"),
        }
        check_headers(d.headers.as_ref(), &p.field("headers"), report);
        check_weight(d.weight, &p, report);
        total += i64::from(d.weight);
    }
    if dests.len() > 1 && total == 0 {
        report.error(path, "total destination weight = 0");
    }
}

fn check_route_destinations(dests: &[RouteDestination], path: &FieldPath, report: &mut Report) {
    let mut total: i64 = 0;
    for (i, d) in dests.iter().enumerate() {
        let p = path.index(i);
        match &d.destination {
            Some(dest) => check_destination(dest, &p.field("destination"), report),
            None => report.error(p.field("destination"), "destination is required"),
        }
        check_weight(d.weight, &p, report);
        total += i64::from(d.weight);
    }
    if dests.len() > 1 && total == 0 {
        report.error(path, "total destination weight = 0");
    }
}

fn check_weight(weight: i32, path: &FieldPath, report: &mut Report) {
    if weight < 0 {
        report.error(path.field("weight"), format!("weight {weight} < 0"));
    }
}

// ---------------------------------------------------------------------------------------
// TLS and TCP routes
// ---------------------------------------------------------------------------------------

fn check_tls_route(
    route: &api::TlsRoute,
    vs: &api::VirtualService,
    path: &FieldPath,
    report: &mut Report,
) {
    if route.r#match.is_empty() {
        report.error(
            path.field("match"),
            "TLS route must have at least one match condition",
        );
    }
    // Istio's `isGateway` is also true when no gateways are listed at all.
    let gateway_semantics = !lists_mesh(&vs.gateways);
    let match_path = path.field("match");
    for (j, m) in route.r#match.iter().enumerate() {
        let mp = match_path.index(j);
        let sni_path = mp.field("sniHosts");
        if m.sni_hosts.is_empty() {
            report.error(&sni_path, "TLS match must have at least one SNI host");
        }
        for (k, sni) in m.sni_hosts.iter().enumerate() {
            check_sni_host(sni, vs, gateway_semantics, &sni_path.index(k), report);
        }
        check_subnets(
            &m.destination_subnets,
            &mp.field("destinationSubnets"),
            report,
        );
        if m.port != 0
            && let Err(e) = validate_port(m.port)
        {
            report.error(mp.field("port"), e);
        }
        check_labels(&m.source_labels, &mp.field("sourceLabels"), report);
        check_gateway_names(&m.gateways, &mp.field("gateways"), report);
    }
    if route.route.is_empty() {
        report.error(path.field("route"), "TLS route is required");
    }
    check_route_destinations(&route.route, &path.field("route"), report);
}

fn check_sni_host(
    sni: &str,
    vs: &api::VirtualService,
    gateway_semantics: bool,
    path: &FieldPath,
    report: &mut Report,
) {
    let checked = if gateway_semantics {
        validate_gateway_bound_domain(true, sni)
    } else {
        validate_wildcard_domain(sni)
    };
    if let Err(e) = checked {
        if is_ip_address(sni) {
            report.warn(
                path,
                format!(
                    "using an IP address ({sni:?}) goes against SNI spec and most clients do not support this"
                ),
            );
        } else {
            report.error(path, e);
        }
        return;
    }
    if !vs.hosts.iter().any(|h| host_subset_of(sni, h)) {
        report.error(
            path,
            format!(
                "SNI host {sni:?} is not a compatible subset of any of the virtual service hosts: [{}]",
                vs.hosts.join(", ")
            ),
        );
    }
}

fn check_subnets(subnets: &[String], path: &FieldPath, report: &mut Report) {
    for (i, s) in subnets.iter().enumerate() {
        if let Err(e) = validate_ip_or_cidr(s) {
            report.error(path.index(i), e);
        }
    }
}

fn check_tcp_route(route: &api::TcpRoute, path: &FieldPath, report: &mut Report) {
    let match_path = path.field("match");
    for (j, m) in route.r#match.iter().enumerate() {
        let mp = match_path.index(j);
        check_subnets(
            &m.destination_subnets,
            &mp.field("destinationSubnets"),
            report,
        );
        if m.port != 0
            && let Err(e) = validate_port(m.port)
        {
            report.error(mp.field("port"), e);
        }
        check_labels(&m.source_labels, &mp.field("sourceLabels"), report);
        check_gateway_names(&m.gateways, &mp.field("gateways"), report);
    }
    if route.route.is_empty() {
        report.error(path.field("route"), "TCP route is required");
    }
    check_route_destinations(&route.route, &path.field("route"), report);
}

// ---------------------------------------------------------------------------------------
// Unreachable rules and ineffective matches (warnings)
// ---------------------------------------------------------------------------------------

fn warn_unused(report: &mut Report, path: &FieldPath, rule: &str, reason: &str) {
    report.warn(
        path,
        format!("virtualService rule {rule} not used ({reason})"),
    );
}

fn warn_ineffective(report: &mut Report, path: &FieldPath, rule: &str, m: &str, dup: &str) {
    report.warn(
        path,
        format!(
            "virtualService rule {rule} match {m} is not used (duplicate/overlapping match in rule {dup})"
        ),
    );
}

/// Names of rules (`"name"` or `#n`) and matches for the warnings.
trait Named {
    fn display_name(&self, index: usize) -> String;
}

impl Named for HttpRoute {
    fn display_name(&self, index: usize) -> String {
        go_name(&self.name, index)
    }
}

impl Named for HttpMatchRequest {
    fn display_name(&self, index: usize) -> String {
        go_name(&self.name, index)
    }
}

impl Named for api::TcpRoute {
    fn display_name(&self, index: usize) -> String {
        format!("#{index}")
    }
}

impl Named for api::TlsRoute {
    fn display_name(&self, index: usize) -> String {
        format!("#{index}")
    }
}

impl Named for api::L4MatchAttributes {
    fn display_name(&self, index: usize) -> String {
        format!("#{index}")
    }
}

impl Named for api::TlsMatchAttributes {
    fn display_name(&self, index: usize) -> String {
        format!("#{index}")
    }
}

fn go_name(name: &str, index: usize) -> String {
    if name.is_empty() {
        format!("#{index}")
    } else {
        format!("{name:?}")
    }
}

/// Istio's `analyzeUnreachable*Rules`: rules after a match-all rule, and matches equal to an
/// earlier one. Returns the (rule, match) indices of the matches seen first, in order.
fn analyze_unreachable<R: Named, M: Named>(
    routes: &[R],
    matches_of: impl Fn(&R) -> &[M],
    key_of: impl Fn(&M) -> String,
    path: &FieldPath,
    report: &mut Report,
) -> Vec<(usize, usize)> {
    let mut encountered: HashMap<String, usize> = HashMap::new();
    let mut empty_match_rule: Option<usize> = None;
    let mut firsts = Vec::new();
    for (rulen, route) in routes.iter().enumerate() {
        let rp = path.index(rulen);
        let name = route.display_name(rulen);
        let matches = matches_of(route);
        if matches.is_empty() {
            if empty_match_rule.is_some() {
                warn_unused(report, &rp, &name, "only the last rule can have no matches");
            }
            empty_match_rule = Some(rulen);
            continue;
        }
        let mut duplicates = 0;
        for (matchn, m) in matches.iter().enumerate() {
            if empty_match_rule.is_some() {
                warn_unused(report, &rp, &name, "route without matches defined before");
                continue;
            }
            let key = key_of(m);
            if let Some(&dupn) = encountered.get(&key) {
                let dup_name = routes
                    .get(dupn)
                    .map(|r| r.display_name(dupn))
                    .unwrap_or_default();
                warn_ineffective(
                    report,
                    &rp.field("match").index(matchn),
                    &name,
                    &m.display_name(matchn),
                    &dup_name,
                );
                duplicates += 1;
                continue;
            }
            encountered.insert(key, rulen);
            firsts.push((rulen, matchn));
        }
        if duplicates == matches.len() {
            warn_unused(report, &rp, &name, "all matches used by prior rules");
        }
    }
    firsts
}

/// The parts of a URI-prefix match Istio compares for overlap.
struct PrefixMatch<'a> {
    rule: usize,
    matchn: usize,
    route_str: String,
    match_str: String,
    prefix: &'a str,
    port: u32,
    method: String,
    authority: String,
    headers: BTreeMap<&'a str, String>,
    query_params: BTreeMap<&'a str, String>,
    without_headers: BTreeMap<&'a str, String>,
}

fn exact_or_prefix(sm: Option<&StringMatch>) -> String {
    let Some(sm) = sm else {
        return String::new();
    };
    match (sm.exact.as_deref(), sm.prefix.as_deref()) {
        (Some(e), _) if !e.is_empty() => format!("exact:{e}"),
        (_, Some(p)) if !p.is_empty() => format!("prefix:{p}"),
        _ => String::new(),
    }
}

fn match_values(map: &BTreeMap<String, StringMatch>) -> BTreeMap<&str, String> {
    map.iter()
        .map(|(k, v)| (k.as_str(), exact_or_prefix(Some(v))))
        .collect()
}

fn prefix_match<'a>(
    route: &HttpRoute,
    m: &'a HttpMatchRequest,
    rule: usize,
    matchn: usize,
) -> Option<PrefixMatch<'a>> {
    let prefix = m
        .uri
        .as_ref()?
        .prefix
        .as_deref()
        .filter(|p| !p.is_empty())?;
    let mut method = exact_or_prefix(m.method.as_ref());
    if method.is_empty() {
        method = "exact:GET".to_string();
    }
    Some(PrefixMatch {
        rule,
        matchn,
        route_str: route.display_name(rule),
        match_str: m.display_name(matchn),
        prefix,
        port: m.port,
        method,
        authority: exact_or_prefix(m.authority.as_ref()),
        headers: match_values(&m.headers),
        query_params: match_values(&m.query_params),
        without_headers: match_values(&m.without_headers),
    })
}

/// Every entry of `a` has an entry in `b` that is equal or a prefix of it.
fn map_covered(a: &BTreeMap<&str, String>, b: &BTreeMap<&str, String>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, av)| match b.get(k) {
            Some(bv) => av == bv || av.starts_with(bv.as_str()),
            None => false,
        })
}

/// Istio's `coveredValidation`: the earlier match `a` makes the later match `b` unreachable.
fn covered(a: &PrefixMatch<'_>, b: &PrefixMatch<'_>) -> bool {
    b.prefix.starts_with(a.prefix)
        && a.port == b.port
        && (a.method == b.method || a.method.starts_with(b.method.as_str()))
        && (a.authority == b.authority || a.authority.starts_with(b.authority.as_str()))
        && map_covered(&a.headers, &b.headers)
        && map_covered(&a.query_params, &b.query_params)
        && map_covered(&a.without_headers, &b.without_headers)
}

fn analyze_unreachable_http(routes: &[HttpRoute], path: &FieldPath, report: &mut Report) {
    let firsts = analyze_unreachable(
        routes,
        |r| r.r#match.as_slice(),
        |m| {
            // Compare matches without their names.
            let mut unnamed = m.clone();
            unnamed.name.clear();
            format!("{unnamed:?}")
        },
        path,
        report,
    );
    let prefixed: Vec<PrefixMatch<'_>> = firsts
        .iter()
        .filter_map(|&(rule, matchn)| {
            let route = routes.get(rule)?;
            prefix_match(route, route.r#match.get(matchn)?, rule, matchn)
        })
        .collect();
    for (i, a) in prefixed.iter().enumerate() {
        for b in prefixed.iter().skip(i + 1) {
            if b.prefix == a.prefix || !covered(a, b) {
                continue;
            }
            warn_ineffective(
                report,
                &path.index(b.rule).field("match").index(b.matchn),
                &b.route_str,
                &format!("{} of prefix {}", b.match_str, b.prefix),
                &format!("{} of prefix {} on {}", a.match_str, a.prefix, a.route_str),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// formatting
// ---------------------------------------------------------------------------------------

/// Formats a float as Go's `%v` does (shortest digits; exponent form below 1e-4 and from
/// 1e6 up, e.g. `1e-05`, `1.5e+06`).
fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.2345e-5`.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.unsigned_abs());
    }
    let n = digits.len() as i32;
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        format!("{sign}0.{zeros}{digits}")
    } else if exp + 1 >= n {
        let zeros = "0".repeat((exp + 1 - n) as usize);
        format!("{sign}{digits}{zeros}")
    } else {
        let (int, frac) = digits.split_at((exp + 1) as usize);
        format!("{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MeshConfig;
    use crate::decode::{Format, Outcome, decode_str};

    /// Decodes a VirtualService whose spec is `spec` (YAML, unindented) in namespace `ns`
    /// and validates it.
    fn run_in(ns: &str, spec: &str) -> Report {
        let mut text = format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: vs\n  namespace: {ns}\nspec:\n"
        );
        for line in spec.lines() {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
        let docs = decode_str(&text, Format::Yaml, "default").expect("yaml");
        match docs.first().map(|d| &d.outcome) {
            Some(Outcome::Config(c)) => crate::validate::validate(c, &MeshConfig::default()),
            other => panic!("not decoded: {other:?}\n{text}"),
        }
    }

    fn run(spec: &str) -> Report {
        run_in("ns", spec)
    }

    fn has(issues: &[crate::diag::Issue], path: &str, msg: &str) -> bool {
        issues
            .iter()
            .any(|i| i.path == path && i.message.contains(msg))
    }

    /// Specs that must produce no error (and, unless listed in `warns`, no warning).
    const VALID: &[&str] = &[
        // plain route, short host, FQDN, wildcard, IP host
        "hosts: [reviews]\nhttp: [{route: [{destination: {host: reviews}}]}]",
        "hosts: [reviews.prod.svc.cluster.local, \"*.example.com\", 10.1.2.3, \"2001:db8::1\"]\nhttp: [{route: [{destination: {host: reviews}}]}]",
        // delegate VS (no hosts, no gateways)
        "http: [{route: [{destination: {host: reviews}}]}]",
        // root route delegating
        "hosts: [a.com]\nhttp: [{delegate: {name: d, namespace: nsa}}]",
        // gateways: mesh, ns/name, plain name; `*` host only for gateways
        "hosts: [a.com]\ngateways: [mesh, istio-system/gw, gw]\nhttp: [{route: [{destination: {host: a}}]}]",
        "hosts: [\"*\"]\ngateways: [istio-system/gw]\nhttp: [{route: [{destination: {host: a}}]}]",
        // JWT claim routing on a gateway-bound VS
        "hosts: [a.com]\ngateways: [istio-system/gw]\nhttp:\n- match: [{headers: {\"@request.auth.claims.sub\": {exact: bob}}}]\n  route: [{destination: {host: a}}]",
        // rich matches
        "hosts: [a.com]\nhttp:\n- match:\n  - name: m\n    uri: {prefix: \"\"}\n    scheme: {exact: https}\n    method: {regex: \"GET|POST\"}\n    authority: {prefix: api.}\n    headers: {x-a: {exact: b}, x-present: {}, X_Up-Case: {regex: \"^v[0-9]+$\"}}\n    withoutHeaders: {x-skip: {regex: \"*\"}}\n    queryParams: {debug: {exact: \"1\"}}\n    port: 8080\n    sourceLabels: {app: front, app.kubernetes.io/name: x}\n    gateways: [mesh]\n    sourceNamespace: front\n  route: [{destination: {host: a}}]",
        // header manipulation
        "hosts: [a.com]\nhttp:\n- headers:\n    request: {set: {x-a: \"%HOSTNAME%\", \":authority\": b.com}, add: {x-b: \"100%%\"}, remove: [x-c]}\n    response: {set: {x-d: \"%REQ(x-id)%\"}, add: {x-e: \"%START_TIME(%s)%\"}, remove: [x-f]}\n  route:\n  - destination: {host: a}\n    headers: {request: {set: {host: c.com}}, response: {remove: [x-g]}}",
        // redirect, direct response
        "hosts: [a.com]\nhttp: [{redirect: {uri: /new, redirectCode: 308}}]",
        "hosts: [a.com]\nhttp: [{redirect: {authority: b.com}}]",
        "hosts: [a.com]\nhttp: [{redirect: {scheme: https, port: 8443}}]",
        "hosts: [a.com]\nhttp: [{redirect: {derivePort: FROM_REQUEST_PORT}}]",
        "hosts: [a.com]\nhttp: [{match: [{uri: {prefix: /v1}}], redirect: {prefixRewrite: /v2}}]",
        "hosts: [a.com]\nhttp: [{directResponse: {status: 503, body: {string: unavailable}}}]",
        "hosts: [a.com]\nhttp: [{directResponse: {status: 200, body: {bytes: aGVsbG8=}}}]",
        // rewrite, timeout, retries
        "hosts: [a.com]\nhttp: [{rewrite: {uri: /x}, route: [{destination: {host: a}}]}]",
        "hosts: [a.com]\nhttp: [{rewrite: {authority: b.com}, route: [{destination: {host: a}}]}]",
        "hosts: [a.com]\nhttp: [{rewrite: {uriRegexRewrite: {match: \"^/a/(.*)\", rewrite: \"/\\\\1\"}}, route: [{destination: {host: a}}]}]",
        "hosts: [a.com]\nhttp: [{timeout: 5s, route: [{destination: {host: a}}]}]",
        "hosts: [a.com]\nhttp:\n- retries: {attempts: 3, perTryTimeout: 2s, retryOn: \"5xx,gateway-error,503,retriable-status-codes,unavailable\", backoff: 25ms}\n  route: [{destination: {host: a}}]",
        "hosts: [a.com]\nhttp: [{retries: {attempts: 0}, route: [{destination: {host: a}}]}]",
        // fault, mirror, CORS
        "hosts: [a.com]\nhttp:\n- fault: {delay: {fixedDelay: 5s, percentage: {value: 0.1}}, abort: {httpStatus: 503, percentage: {value: 0}}}\n  route: [{destination: {host: a}}]",
        "hosts: [a.com]\nhttp: [{fault: {abort: {grpcStatus: UNAVAILABLE}}, route: [{destination: {host: a}}]}]",
        "hosts: [a.com]\nhttp: [{mirror: {host: m}, mirrorPercentage: {value: 100}, route: [{destination: {host: a}}]}]",
        "hosts: [a.com]\nhttp: [{mirrors: [{destination: {host: m, subset: v1}, percentage: {value: 5}}], route: [{destination: {host: a}}]}]",
        "hosts: [a.com]\nhttp:\n- corsPolicy:\n    allowOrigins: [{exact: \"https://a.com\"}, {prefix: \"https://\"}, {regex: \".*\\\\.a\\\\.com\"}]\n    allowMethods: [GET, POST, \"*\"]\n    allowHeaders: [x-foo, \"*\"]\n    exposeHeaders: [x-bar]\n    maxAge: 24h\n  route: [{destination: {host: a}}]",
        // weights: not required to total 100; a single destination may have weight 0
        "hosts: [a.com]\nhttp: [{route: [{destination: {host: a, subset: v1}, weight: 10}, {destination: {host: a, subset: v2, port: {number: 9080}}, weight: 20}]}]",
        // matches then a catch-all last
        "hosts: [a.com]\nhttp:\n- match: [{uri: {prefix: /a}}]\n  route: [{destination: {host: a}}]\n- match: [{uri: {prefix: /ab}, method: {exact: POST}}]\n  route: [{destination: {host: a}}]\n- route: [{destination: {host: b}}]",
        // TLS and TCP
        "hosts: [\"*.bookinfo.com\"]\ntls:\n- match: [{sniHosts: [login.bookinfo.com, \"*.bookinfo.com\"], port: 443, destinationSubnets: [10.0.0.0/8, 10.1.1.1]}]\n  route: [{destination: {host: login, port: {number: 8443}}}]",
        "hosts: [mongo.example.com]\ntcp:\n- match: [{port: 27017, destinationSubnets: [10.1.0.0/16], sourceLabels: {app: b}, gateways: [mesh]}]\n  route: [{destination: {host: mongo, port: {number: 5555}}}]\n- route: [{destination: {host: mongo}}]",
        // gateway-bound SNI with an auto-generated outbound_ host
        "hosts: [outbound_.80_._.e2e.foobar.mesh]\ngateways: [istio-system/gw]\ntls:\n- match: [{sniHosts: [outbound_.80_._.e2e.foobar.mesh]}]\n  route: [{destination: {host: e2e.foobar.mesh}}]",
        // exportTo
        "hosts: [a.com]\nexportTo: [\".\", other]\nhttp: [{route: [{destination: {host: a}}]}]",
        "hosts: [a.com]\nexportTo: [\"*\"]\nhttp: [{route: [{destination: {host: a}}]}]",
    ];

    #[test]
    fn valid_specs() {
        for spec in VALID {
            let r = run(spec);
            assert!(r.errors.is_empty(), "{spec}\n{:#?}", r.errors);
            assert!(r.warnings.is_empty(), "{spec}\n{:#?}", r.warnings);
        }
    }

    /// (spec, path, message fragment) for errors.
    const INVALID: &[(&str, &str, &str)] = &[
        // delegate VS
        (
            "gateways: [istio-system/gw]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.gateways",
            "delegate virtual service must have no gateways specified",
        ),
        (
            "tls: [{match: [{sniHosts: [a.com]}], route: [{destination: {host: a}}]}]",
            "spec.tls",
            "delegate virtual service must have no tls route specified",
        ),
        (
            "tcp: [{route: [{destination: {host: a}}]}]",
            "spec.tcp",
            "delegate virtual service must have no tcp route specified",
        ),
        // gateways
        (
            "hosts: [a.com]\ngateways: [\"*/gw\"]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.gateways[0]",
            "invalid value for namespace: \"*\"",
        ),
        (
            "hosts: [a.com]\ngateways: [\"ns/*\"]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.gateways[0]",
            "invalid value for gateway name: \"*\"",
        ),
        (
            "hosts: [a.com]\ngateways: [/gw]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.gateways[0]",
            "config namespace and gateway name cannot be empty",
        ),
        (
            "hosts: [a.com]\ngateways: [mesh, bad_gw]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.gateways[1]",
            "domain name \"bad_gw\" invalid (label \"bad_gw\" invalid)",
        ),
        // hosts
        (
            "hosts: [\"*\"]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.hosts[0]",
            "wildcard host * is not allowed for virtual services bound to the mesh gateway",
        ),
        (
            "hosts: [\"*\"]\ngateways: [mesh, ns/gw]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.hosts[0]",
            "wildcard host * is not allowed for virtual services bound to the mesh gateway",
        ),
        (
            "hosts: [a.com, foo..com]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.hosts[1]",
            "domain name \".com\" invalid (label \"\" invalid)",
        ),
        (
            "hosts: [a.foo.com, \"*.foo.com\"]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.hosts[1]",
            "duplicate hosts in virtual service: a.foo.com & *.foo.com",
        ),
        (
            "hosts: [a.com, a.com]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.hosts[1]",
            "duplicate hosts in virtual service: a.com & a.com",
        ),
        (
            "hosts: [outbound_.80_._.e2e.foobar.mesh]\ntls:\n- match: [{sniHosts: [outbound_.80_._.e2e.foobar.mesh]}]\n  route: [{destination: {host: e2e.foobar.mesh}}]",
            "spec.hosts[0]",
            "label \"outbound_\" invalid",
        ),
        (
            "hosts: [a.com]",
            "spec",
            "http, tcp or tls must be provided in virtual service",
        ),
        // JWT claim routing needs a gateway
        (
            "hosts: [a.com]\nhttp:\n- match: [{headers: {\"@request.auth.claims.sub\": {exact: bob}}}]\n  route: [{destination: {host: a}}]",
            "spec.http[0].match[0].headers[@request.auth.claims.sub]",
            "JWT claim based routing (key: @request.auth.claims.sub) is only supported for gateway, found no gateways: []",
        ),
        (
            "hosts: [a.com]\ngateways: [mesh]\nhttp:\n- match: [{withoutHeaders: {\"@request.auth.claims[group]\": {exact: x}}}]\n  route: [{destination: {host: a}}]",
            "spec.http[0].match[0].withoutHeaders[@request.auth.claims[group]]",
            "found no gateways: [mesh]",
        ),
        // route / redirect / direct_response exclusivity
        (
            "hosts: [a.com]\nhttp: [{redirect: {uri: /x}, route: [{destination: {host: a}}]}]",
            "spec.http[0]",
            "HTTP route cannot contain both route and redirect",
        ),
        (
            "hosts: [a.com]\nhttp: [{redirect: {uri: /x}, fault: {abort: {httpStatus: 500}}}]",
            "spec.http[0]",
            "HTTP route cannot contain both fault and redirect",
        ),
        (
            "hosts: [a.com]\nhttp: [{redirect: {uri: /x}, rewrite: {uri: /y}}]",
            "spec.http[0]",
            "HTTP route rule cannot contain both rewrite and redirect",
        ),
        (
            "hosts: [a.com]\nhttp: [{redirect: {uri: /x}, directResponse: {status: 200}}]",
            "spec.http[0]",
            "HTTP route rule cannot contain both direct_response and redirect",
        ),
        (
            "hosts: [a.com]\nhttp: [{directResponse: {status: 200}, route: [{destination: {host: a}}]}]",
            "spec.http[0]",
            "HTTP route cannot contain both route and direct_response",
        ),
        (
            "hosts: [a.com]\nhttp: [{directResponse: {status: 200}, fault: {abort: {httpStatus: 500}}}]",
            "spec.http[0]",
            "HTTP route cannot contain both fault and direct_response",
        ),
        (
            "hosts: [a.com]\nhttp: [{directResponse: {status: 200}, rewrite: {uri: /y}}]",
            "spec.http[0]",
            "HTTP route rule cannot contain both rewrite and direct_response",
        ),
        (
            "hosts: [a.com]\nhttp: [{timeout: 1s}]",
            "spec.http[0]",
            "HTTP route, redirect or direct_response is required",
        ),
        (
            "hosts: [a.com]\nhttp: [{mirror: {host: m}, mirrors: [{destination: {host: n}}], route: [{destination: {host: a}}]}]",
            "spec.http[0]",
            "HTTP route cannot contain both mirror and mirrors",
        ),
        // delegation
        (
            "hosts: [a.com]\nhttp: [{name: r, delegate: {name: d}, route: [{destination: {host: a}}]}]",
            "spec.http[0].route",
            "root HTTP route r must not specify route",
        ),
        (
            "hosts: [a.com]\nhttp: [{name: r, delegate: {name: d}, redirect: {uri: /x}}]",
            "spec.http[0].redirect",
            "root HTTP route r must not specify redirect",
        ),
        (
            "http: [{delegate: {name: d}, route: [{destination: {host: a}}]}]",
            "spec.http[0].delegate",
            "delegate HTTP route cannot contain delegate",
        ),
        // matches
        (
            "hosts: [a.com]\nhttp: [{match: [{headers: {\"x foo\": {exact: a}}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].headers[x foo]",
            "header name x foo is not a valid header name",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{withoutHeaders: {\"x:y\": {exact: a}}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].withoutHeaders[x:y]",
            "header name x:y is not a valid header name",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{headers: {x-a: {prefix: \"\"}}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].headers[x-a].prefix",
            "\"headers\": prefix string match should not be empty",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{headers: {x-a: {regex: \"*\"}}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].headers[x-a].regex",
            "\"headers\": error parsing regexp",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{withoutHeaders: {x-a: {prefix: \"\"}}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].withoutHeaders[x-a].prefix",
            "\"withoutHeaders\": prefix string match should not be empty",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{method: {prefix: \"\"}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].method.prefix",
            "\"method\": prefix string match should not be empty",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{scheme: {prefix: \"\"}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].scheme.prefix",
            "\"scheme\": prefix string match should not be empty",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{authority: {regex: \"(a\"}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].authority.regex",
            "\"authority\": error parsing regexp",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{uri: {regex: \"\"}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].uri.regex",
            "\"uri\": regex string match should not be empty",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{uri: {regex: \"[a\"}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].uri.regex",
            "Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{queryParams: {q: {prefix: \"\"}}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].queryParams[q].prefix",
            "\"queryParams\": prefix string match should not be empty",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{uri: {exact: /a, prefix: /b}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].uri",
            "must validate one and only one schema (oneOf). Found 2 valid alternatives",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{port: 70000}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].port",
            "port number 70000 must be in the range 1..65535",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{sourceLabels: {-bad: x}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].sourceLabels[-bad]",
            "invalid tag key: \"-bad\"",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{sourceLabels: {app: \"a b\"}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].sourceLabels[app]",
            "invalid tag value: \"a b\"",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{gateways: [\"*/gw\"]}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].gateways[0]",
            "invalid value for namespace: \"*\"",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{sourceNamespace: Bad_NS}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].sourceNamespace",
            "sourceNamespace match Bad_NS is invalid",
        ),
        // header manipulation
        (
            "hosts: [a.com]\nhttp: [{headers: {request: {set: {\":path\": /x}}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].headers.request.set[:path]",
            "invalid header \":path\": header cannot have \":\" prefix",
        ),
        (
            "hosts: [a.com]\nhttp: [{headers: {request: {add: {\"\": x}}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].headers.request.add[]",
            "header name cannot be empty",
        ),
        (
            "hosts: [a.com]\nhttp: [{headers: {request: {remove: [x-a, Host]}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].headers.request.remove[1]",
            "invalid header \"Host\": cannot set Host header",
        ),
        (
            "hosts: [a.com]\nhttp: [{headers: {request: {remove: [\":authority\"]}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].headers.request.remove[0]",
            "invalid header \":authority\": header cannot have \":\" prefix",
        ),
        (
            "hosts: [a.com]\nhttp: [{headers: {response: {set: {host: x}}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].headers.response.set[host]",
            "invalid header \"host\": cannot set Host header",
        ),
        (
            "hosts: [a.com]\nhttp: [{headers: {response: {add: {\":status\": \"200\"}}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].headers.response.add[:status]",
            "invalid header \":status\": header cannot have \":\" prefix",
        ),
        (
            "hosts: [a.com]\nhttp: [{headers: {request: {set: {x-a: \"100%\"}}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].headers.request.set[x-a]",
            "header value configuration: invalid header configuration. Un-escaped %",
        ),
        (
            "hosts: [a.com]\nhttp: [{headers: {response: {set: {x-a: \"%START_TIME\"}}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].headers.response.set[x-a]",
            "invalid header configuration. Un-terminated variable expression '%START_TIME'",
        ),
        (
            "hosts: [a.com]\nhttp: [{headers: {request: {add: {x-a: \"a\\x01b\"}}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].headers.request.add[x-a]",
            "is invalid",
        ),
        (
            "hosts: [a.com]\nhttp: [{route: [{destination: {host: a}, headers: {request: {set: {\":path\": /x}}}}]}]",
            "spec.http[0].route[0].headers.request.set[:path]",
            "header cannot have \":\" prefix",
        ),
        (
            "hosts: [a.com]\nhttp: [{route: [{destination: {host: a}, headers: {response: {remove: [host]}}}]}]",
            "spec.http[0].route[0].headers.response.remove[0]",
            "cannot set Host header",
        ),
        (
            "hosts: [a.com]\nhttp: [{rewrite: {authority: a.com}, headers: {request: {set: {Host: b.com}}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].headers.request.set[Host]",
            "authority header cannot be set multiple times: have \"a.com\", attempting to set \"b.com\"",
        ),
        (
            "hosts: [a.com]\nhttp: [{headers: {request: {set: {\":authority\": a.com}, add: {host: b.com}}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].headers.request.add[host]",
            "authority header cannot be set multiple times",
        ),
        // CORS
        (
            "hosts: [a.com]\nhttp: [{corsPolicy: {allowOrigins: [{exact: \"\"}]}, route: [{destination: {host: a}}]}]",
            "spec.http[0].corsPolicy.allowOrigins[0]",
            "'' is not a valid match type for CORS allow origins",
        ),
        (
            "hosts: [a.com]\nhttp: [{corsPolicy: {allowOrigins: [{}]}, route: [{destination: {host: a}}]}]",
            "spec.http[0].corsPolicy.allowOrigins[0]",
            "'' is not a valid match type for CORS allow origins",
        ),
        (
            "hosts: [a.com]\nhttp: [{corsPolicy: {allowOrigins: [{regex: \"(\"}]}, route: [{destination: {host: a}}]}]",
            "spec.http[0].corsPolicy.allowOrigins[0].regex",
            "\"corsPolicy.allowOrigins\": error parsing regexp",
        ),
        (
            "hosts: [a.com]\nhttp: [{corsPolicy: {allowMethods: [GET, get]}, route: [{destination: {host: a}}]}]",
            "spec.http[0].corsPolicy.allowMethods[1]",
            "\"get\" is not a supported HTTP method",
        ),
        (
            "hosts: [a.com]\nhttp: [{corsPolicy: {allowHeaders: [\"a b\"]}, route: [{destination: {host: a}}]}]",
            "spec.http[0].corsPolicy.allowHeaders[0]",
            "header name a b is not a valid header name",
        ),
        (
            "hosts: [a.com]\nhttp: [{corsPolicy: {exposeHeaders: [\"\"]}, route: [{destination: {host: a}}]}]",
            "spec.http[0].corsPolicy.exposeHeaders[0]",
            "header name cannot be empty",
        ),
        (
            "hosts: [a.com]\nhttp: [{corsPolicy: {maxAge: 1.5s}, route: [{destination: {host: a}}]}]",
            "spec.http[0].corsPolicy.maxAge",
            "max_age duration is accurate only to seconds precision",
        ),
        (
            "hosts: [a.com]\nhttp: [{corsPolicy: {maxAge: 0s}, route: [{destination: {host: a}}]}]",
            "spec.http[0].corsPolicy.maxAge",
            "duration must be greater than 1ms",
        ),
        // fault injection
        (
            "hosts: [a.com]\nhttp: [{fault: {}, route: [{destination: {host: a}}]}]",
            "spec.http[0].fault",
            "HTTP fault injection must have an abort and/or a delay",
        ),
        (
            "hosts: [a.com]\nhttp: [{fault: {abort: {httpStatus: 503, percentage: {value: 101}}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].fault.abort.percentage",
            "percentage 101 is neither 0.0, nor in range [0.0001, 100.0]",
        ),
        (
            "hosts: [a.com]\nhttp: [{fault: {abort: {httpStatus: 503, percentage: {value: 0.00001}}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].fault.abort.percentage",
            "percentage 1e-05 is neither 0.0",
        ),
        (
            "hosts: [a.com]\nhttp: [{fault: {delay: {fixedDelay: 1s, percentage: {value: -1.5}}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].fault.delay.percentage",
            "percentage -1.5 is neither 0.0",
        ),
        (
            "hosts: [a.com]\nhttp: [{fault: {abort: {httpStatus: 700}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].fault.abort.httpStatus",
            "HTTP status 700 is not in range 200-599",
        ),
        (
            "hosts: [a.com]\nhttp: [{fault: {abort: {grpcStatus: BOGUS}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].fault.abort.grpcStatus",
            "gRPC status \"BOGUS\" is not supported",
        ),
        (
            "hosts: [a.com]\nhttp: [{fault: {abort: {http2Error: INTERNAL_ERROR}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].fault.abort.http2Error",
            "HTTP/2 abort fault injection not supported yet",
        ),
        (
            "hosts: [a.com]\nhttp: [{fault: {abort: {httpStatus: 500, grpcStatus: INTERNAL}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].fault.abort",
            "Found 2 valid alternatives",
        ),
        (
            "hosts: [a.com]\nhttp: [{fault: {delay: {fixedDelay: 0.0005s}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].fault.delay.fixedDelay",
            "duration must be greater than 1ms",
        ),
        (
            "hosts: [a.com]\nhttp: [{fault: {delay: {fixedDelay: 1.0005s}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].fault.delay.fixedDelay",
            "only durations to ms precision are supported",
        ),
        (
            "hosts: [a.com]\nhttp: [{fault: {delay: {exponentialDelay: 1s}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].fault.delay.exponentialDelay",
            "exponentialDelay not supported yet",
        ),
        (
            "hosts: [a.com]\nhttp: [{fault: {delay: {fixedDelay: 1s, exponentialDelay: 1s}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].fault.delay",
            "Found 2 valid alternatives",
        ),
        // mirrors
        (
            "hosts: [a.com]\nhttp: [{mirror: {host: m}, mirrorPercent: 101, route: [{destination: {host: a}}]}]",
            "spec.http[0].mirrorPercent",
            "mirror_percent must have a max value of 100 (it has 101)",
        ),
        (
            "hosts: [a.com]\nhttp: [{mirror: {host: m}, mirrorPercentage: {value: 150}, route: [{destination: {host: a}}]}]",
            "spec.http[0].mirrorPercentage",
            "mirror_percentage must have a max value of 100 (it has 150.000000)",
        ),
        (
            "hosts: [a.com]\nhttp: [{mirror: {host: m}, mirrorPercentage: {value: -1}, route: [{destination: {host: a}}]}]",
            "spec.http[0].mirrorPercentage",
            "mirror_percentage must have a min value of 0 (it has -1.000000)",
        ),
        (
            "hosts: [a.com]\nhttp: [{mirror: {host: \"*\"}, route: [{destination: {host: a}}]}]",
            "spec.http[0].mirror.host",
            "invalid destination host *",
        ),
        (
            "hosts: [a.com]\nhttp: [{mirrors: [{percentage: {value: 10}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].mirrors[0].destination",
            "destination is required for mirrors",
        ),
        (
            "hosts: [a.com]\nhttp: [{mirrors: [{destination: {host: m}, percentage: {value: 200}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].mirrors[0].percentage",
            "mirror percentage must have a max value of 100 (it has 200.000000)",
        ),
        (
            "hosts: [a.com]\nhttp: [{mirrors: [{destination: {host: m, subset: v_1}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].mirrors[0].destination.subset",
            "subset name is invalid: v_1",
        ),
        // redirect
        (
            "hosts: [a.com]\nhttp: [{redirect: {redirectCode: 302}}]",
            "spec.http[0].redirect",
            "redirect must specify URI, authority, scheme, or port",
        ),
        (
            "hosts: [a.com]\nhttp: [{redirect: {uri: /x, redirectCode: 200}}]",
            "spec.http[0].redirect.redirectCode",
            "200 is not a valid redirect code, must be 3xx",
        ),
        (
            "hosts: [a.com]\nhttp: [{redirect: {scheme: ftp}}]",
            "spec.http[0].redirect.scheme",
            "invalid redirect scheme, must be \"http\" or \"https\"",
        ),
        (
            "hosts: [a.com]\nhttp: [{redirect: {port: 70000}}]",
            "spec.http[0].redirect.port",
            "port number 70000 must be in the range 1..65535",
        ),
        (
            "hosts: [a.com]\nhttp: [{redirect: {port: 80, derivePort: FROM_REQUEST_PORT}}]",
            "spec.http[0].redirect",
            "Found 2 valid alternatives",
        ),
        (
            "hosts: [a.com]\nhttp: [{redirect: {uri: /x, prefixRewrite: /y}}]",
            "spec.http[0].redirect",
            "redirect may only contain one of uri or prefixRewrite",
        ),
        (
            "hosts: [a.com]\nhttp: [{match: [{uri: {prefix: /a}}, {uri: {exact: /b}}], redirect: {prefixRewrite: /y}}]",
            "spec.http[0].redirect.prefixRewrite",
            "redirect prefixRewrite requires the uri match to be a prefix match (match 1)",
        ),
        // direct response
        (
            "hosts: [a.com]\nhttp: [{directResponse: {status: 100}}]",
            "spec.http[0].directResponse.status",
            "HTTP status 100 is not in range 200-599",
        ),
        (
            "hosts: [a.com]\nhttp: [{directResponse: {status: 200, body: {bytes: \"a$==\"}}}]",
            "spec.http[0].directResponse.body.bytes",
            "invalid base64",
        ),
        (
            "hosts: [a.com]\nhttp: [{directResponse: {status: 200, body: {string: a, bytes: YQ==}}}]",
            "spec.http[0].directResponse.body",
            "Found 2 valid alternatives",
        ),
        // retries
        (
            "hosts: [a.com]\nhttp: [{retries: {attempts: -1}, route: [{destination: {host: a}}]}]",
            "spec.http[0].retries.attempts",
            "attempts cannot be negative",
        ),
        (
            "hosts: [a.com]\nhttp: [{retries: {attempts: 0, retryOn: 5xx}, route: [{destination: {host: a}}]}]",
            "spec.http[0].retries",
            "http retry policy configured when attempts are set to 0 (disabled)",
        ),
        (
            "hosts: [a.com]\nhttp: [{retries: {retryRemoteLocalities: false}, route: [{destination: {host: a}}]}]",
            "spec.http[0].retries",
            "http retry policy configured when attempts are set to 0 (disabled)",
        ),
        (
            "hosts: [a.com]\nhttp: [{retries: {attempts: 2, retryOn: \"5xx,600\"}, route: [{destination: {host: a}}]}]",
            "spec.http[0].retries.retryOn",
            "\"600\" is not a valid retryOn policy",
        ),
        (
            "hosts: [a.com]\nhttp: [{retries: {attempts: 2, retryOn: \"5xx, reset\"}, route: [{destination: {host: a}}]}]",
            "spec.http[0].retries.retryOn",
            "\" reset\" is not a valid retryOn policy",
        ),
        (
            "hosts: [a.com]\nhttp: [{retries: {attempts: 2, retryOn: \"5xx,,reset\"}, route: [{destination: {host: a}}]}]",
            "spec.http[0].retries.retryOn",
            "\"\" is not a valid retryOn policy",
        ),
        (
            "hosts: [a.com]\nhttp: [{retries: {attempts: 2, perTryTimeout: 0.5ms}, route: [{destination: {host: a}}]}]",
            "spec.http[0].retries.perTryTimeout",
            "duration must be greater than 1ms",
        ),
        (
            "hosts: [a.com]\nhttp: [{retries: {attempts: 2, backoff: 1.0005s}, route: [{destination: {host: a}}]}]",
            "spec.http[0].retries.backoff",
            "only durations to ms precision are supported",
        ),
        // rewrite
        (
            "hosts: [a.com]\nhttp: [{rewrite: {}, route: [{destination: {host: a}}]}]",
            "spec.http[0].rewrite",
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority",
        ),
        (
            "hosts: [a.com]\nhttp: [{rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].rewrite",
            "rewrite may only contain one of URI or UriRegexRewrite",
        ),
        (
            "hosts: [a.com]\nhttp: [{rewrite: {uriRegexRewrite: {match: \"^/a\"}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].rewrite.uriRegexRewrite",
            "UriRegexRewrite requires both Rewrite and Match fields to be specified",
        ),
        (
            "hosts: [a.com]\nhttp: [{rewrite: {uriRegexRewrite: {match: \"[\", rewrite: /}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].rewrite.uriRegexRewrite.match",
            "\"HTTPRewrite.UriRegexRewrite.Match\": error parsing regexp",
        ),
        // timeout
        (
            "hosts: [a.com]\nhttp: [{timeout: 0s, route: [{destination: {host: a}}]}]",
            "spec.http[0].timeout",
            "duration must be greater than 1ms",
        ),
        // destinations and weights
        (
            "hosts: [a.com]\nhttp: [{route: [{weight: 100}]}]",
            "spec.http[0].route[0].destination",
            "destination is required",
        ),
        (
            "hosts: [a.com]\nhttp: [{route: [{destination: {host: \"*\"}}]}]",
            "spec.http[0].route[0].destination.host",
            "invalid destination host *",
        ),
        (
            "hosts: [a.com]\nhttp: [{route: [{destination: {subset: v1}}]}]",
            "spec.http[0].route[0].destination.host",
            "empty domain name not allowed",
        ),
        (
            "hosts: [a.com]\nhttp: [{route: [{destination: {host: a, subset: v_1}}]}]",
            "spec.http[0].route[0].destination.subset",
            "subset name is invalid: v_1",
        ),
        (
            "hosts: [a.com]\nhttp: [{route: [{destination: {host: a, port: {number: 0}}}]}]",
            "spec.http[0].route[0].destination.port.number",
            "port number 0 must be in the range 1..65535",
        ),
        (
            "hosts: [a.com]\nhttp: [{route: [{destination: {host: a}, weight: -1}]}]",
            "spec.http[0].route[0].weight",
            "weight -1 < 0",
        ),
        (
            "hosts: [a.com]\nhttp: [{route: [{destination: {host: a, subset: v1}}, {destination: {host: a, subset: v2}}]}]",
            "spec.http[0].route",
            "total destination weight = 0",
        ),
        // TLS routes
        (
            "hosts: [a.com]\ntls: [{route: [{destination: {host: a}}]}]",
            "spec.tls[0].match",
            "TLS route must have at least one match condition",
        ),
        (
            "hosts: [a.com]\ntls: [{match: [{port: 443}], route: [{destination: {host: a}}]}]",
            "spec.tls[0].match[0].sniHosts",
            "TLS match must have at least one SNI host",
        ),
        (
            "hosts: [\"*.bookinfo.com\"]\ntls: [{match: [{sniHosts: [other.com]}], route: [{destination: {host: a}}]}]",
            "spec.tls[0].match[0].sniHosts[0]",
            "SNI host \"other.com\" is not a compatible subset of any of the virtual service hosts: [*.bookinfo.com]",
        ),
        (
            "hosts: [\"*.bookinfo.com\"]\ntls: [{match: [{sniHosts: [\"*.com\"]}], route: [{destination: {host: a}}]}]",
            "spec.tls[0].match[0].sniHosts[0]",
            "is not a compatible subset",
        ),
        (
            "hosts: [a.com]\ntls: [{match: [{sniHosts: [foo..com]}], route: [{destination: {host: a}}]}]",
            "spec.tls[0].match[0].sniHosts[0]",
            "domain name \".com\" invalid",
        ),
        (
            "hosts: [a.com]\ntls: [{match: [{sniHosts: [a.com], destinationSubnets: [10.0.0.0/33]}], route: [{destination: {host: a}}]}]",
            "spec.tls[0].match[0].destinationSubnets[0]",
            "10.0.0.0/33 is not a valid CIDR block",
        ),
        (
            "hosts: [a.com]\ntls: [{match: [{sniHosts: [a.com], port: 70000}], route: [{destination: {host: a}}]}]",
            "spec.tls[0].match[0].port",
            "port number 70000 must be in the range 1..65535",
        ),
        (
            "hosts: [a.com]\ntls: [{match: [{sniHosts: [a.com], sourceLabels: {\"a/b/c\": x}}], route: [{destination: {host: a}}]}]",
            "spec.tls[0].match[0].sourceLabels[a/b/c]",
            "invalid tag key",
        ),
        (
            "hosts: [a.com]\ntls: [{match: [{sniHosts: [a.com], gateways: [\"ns/*\"]}], route: [{destination: {host: a}}]}]",
            "spec.tls[0].match[0].gateways[0]",
            "invalid value for gateway name",
        ),
        (
            "hosts: [a.com]\ntls: [{match: [{sniHosts: [a.com]}]}]",
            "spec.tls[0].route",
            "TLS route is required",
        ),
        (
            "hosts: [a.com]\ntls: [{match: [{sniHosts: [a.com]}], route: [{destination: {host: a}, weight: -5}]}]",
            "spec.tls[0].route[0].weight",
            "weight -5 < 0",
        ),
        // TCP routes
        (
            "hosts: [a.com]\ntcp: [{match: [{port: 27017}]}]",
            "spec.tcp[0].route",
            "TCP route is required",
        ),
        (
            "hosts: [a.com]\ntcp: [{match: [{destinationSubnets: [foo]}], route: [{destination: {host: a}}]}]",
            "spec.tcp[0].match[0].destinationSubnets[0]",
            "foo is not a valid IP",
        ),
        (
            "hosts: [a.com]\ntcp: [{match: [{port: 70000}], route: [{destination: {host: a}}]}]",
            "spec.tcp[0].match[0].port",
            "port number 70000 must be in the range 1..65535",
        ),
        (
            "hosts: [a.com]\ntcp: [{match: [{sourceLabels: {app: \"-x\"}}], route: [{destination: {host: a}}]}]",
            "spec.tcp[0].match[0].sourceLabels[app]",
            "invalid tag value",
        ),
        (
            "hosts: [a.com]\ntcp: [{match: [{gateways: [/x]}], route: [{destination: {host: a}}]}]",
            "spec.tcp[0].match[0].gateways[0]",
            "config namespace and gateway name cannot be empty",
        ),
        (
            "hosts: [a.com]\ntcp: [{route: [{destination: {host: a}}, {destination: {host: b}}]}]",
            "spec.tcp[0].route",
            "total destination weight = 0",
        ),
        (
            "hosts: [a.com]\ntcp: [{route: [{destination: {host: a, port: {number: 99999}}}]}]",
            "spec.tcp[0].route[0].destination.port.number",
            "port number 99999 must be in the range 1..65535",
        ),
        // exportTo
        (
            "hosts: [a.com]\nexportTo: [\"~\"]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.exportTo[0]",
            "exportTo ~ (none) is not allowed for Istio configuration objects",
        ),
        (
            "hosts: [a.com]\nexportTo: [\".\", ns]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.exportTo[1]",
            "duplicate entries in exportTo: . and current namespace ns",
        ),
        (
            "hosts: [a.com]\nexportTo: [\"*\", other]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.exportTo",
            "cannot have both public (*) and non-public exportTo values for a resource",
        ),
    ];

    #[test]
    fn invalid_specs() {
        for (spec, path, msg) in INVALID {
            let r = run(spec);
            assert!(
                has(&r.errors, path, msg),
                "expected error at {path}: {msg}\nspec:\n{spec}\ngot: {:#?}",
                r.errors
            );
        }
    }

    /// (spec, path, message fragment) for warnings on otherwise valid specs.
    const WARNINGS: &[(&str, &str, &str)] = &[
        (
            "hosts: [a.com]\ngateways: [gw.istio-system]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.gateways[0]",
            "using legacy gatewayName format \"gw.istio-system\"; prefer the <namespace>/<name> format: \"istio-system/gw\"",
        ),
        (
            "hosts: [a.com]\nhttp: [{mirror: {host: m}, mirrorPercent: 50, route: [{destination: {host: a}}]}]",
            "spec.http[0].mirrorPercent",
            "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead",
        ),
        (
            "hosts: [a.com]\nhttp: [{fault: {abort: {percentage: {value: 10}}}, route: [{destination: {host: a}}]}]",
            "spec.http[0].fault.abort",
            "abort configured, but error type not set",
        ),
        (
            "hosts: [a.com]\ntls: [{match: [{sniHosts: [1.2.3.4]}], route: [{destination: {host: a}}]}]",
            "spec.tls[0].match[0].sniHosts[0]",
            "using an IP address (\"1.2.3.4\") goes against SNI spec and most clients do not support this",
        ),
        // unreachable rules and ineffective matches
        (
            "hosts: [a.com]\nhttp:\n- route: [{destination: {host: a}}]\n- route: [{destination: {host: b}}]",
            "spec.http[1]",
            "virtualService rule #1 not used (only the last rule can have no matches)",
        ),
        (
            "hosts: [a.com]\nhttp:\n- route: [{destination: {host: a}}]\n- name: later\n  match: [{uri: {exact: /a}}]\n  route: [{destination: {host: b}}]",
            "spec.http[1]",
            "virtualService rule \"later\" not used (route without matches defined before)",
        ),
        (
            "hosts: [a.com]\nhttp:\n- name: first\n  match: [{name: x, uri: {exact: /a}}]\n  route: [{destination: {host: a}}]\n- match: [{name: y, uri: {exact: /a}}]\n  route: [{destination: {host: b}}]",
            "spec.http[1].match[0]",
            "virtualService rule #1 match \"y\" is not used (duplicate/overlapping match in rule \"first\")",
        ),
        (
            "hosts: [a.com]\nhttp:\n- match: [{uri: {exact: /a}}]\n  route: [{destination: {host: a}}]\n- match: [{uri: {exact: /a}}]\n  route: [{destination: {host: b}}]",
            "spec.http[1]",
            "virtualService rule #1 not used (all matches used by prior rules)",
        ),
        (
            "hosts: [a.com]\nhttp:\n- match: [{uri: {prefix: /debug}}]\n  route: [{destination: {host: a}}]\n- match: [{uri: {prefix: /debugs}}]\n  route: [{destination: {host: b}}]",
            "spec.http[1].match[0]",
            "virtualService rule #1 match #0 of prefix /debugs is not used (duplicate/overlapping match in rule #0 of prefix /debug on #0)",
        ),
        (
            "hosts: [a.com]\ntcp:\n- match: [{port: 1}]\n  route: [{destination: {host: a}}]\n- match: [{port: 1}]\n  route: [{destination: {host: b}}]",
            "spec.tcp[1].match[0]",
            "virtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0)",
        ),
        (
            "hosts: [a.com]\ntcp:\n- route: [{destination: {host: a}}]\n- match: [{port: 1}]\n  route: [{destination: {host: b}}]",
            "spec.tcp[1]",
            "virtualService rule #1 not used (route without matches defined before)",
        ),
        (
            "hosts: [a.com]\ntls:\n- match: [{sniHosts: [a.com]}]\n  route: [{destination: {host: a}}]\n- match: [{sniHosts: [a.com]}]\n  route: [{destination: {host: b}}]",
            "spec.tls[1]",
            "virtualService rule #1 not used (all matches used by prior rules)",
        ),
    ];

    #[test]
    fn warning_specs() {
        for (spec, path, msg) in WARNINGS {
            let r = run(spec);
            assert!(r.errors.is_empty(), "{spec}\n{:#?}", r.errors);
            assert!(
                has(&r.warnings, path, msg),
                "expected warning at {path}: {msg}\nspec:\n{spec}\ngot: {:#?}",
                r.warnings
            );
        }
    }

    #[test]
    fn no_overlap_warning_when_matches_differ() {
        for spec in [
            // different methods
            "hosts: [a.com]\nhttp:\n- match: [{uri: {prefix: /debug}, method: {exact: GET}}]\n  route: [{destination: {host: a}}]\n- match: [{uri: {prefix: /debugs}, method: {exact: POST}}]\n  route: [{destination: {host: b}}]",
            // different ports
            "hosts: [a.com]\nhttp:\n- match: [{uri: {prefix: /debug}, port: 80}]\n  route: [{destination: {host: a}}]\n- match: [{uri: {prefix: /debugs}}]\n  route: [{destination: {host: b}}]",
            // the later prefix is shorter
            "hosts: [a.com]\nhttp:\n- match: [{uri: {prefix: /debugs}}]\n  route: [{destination: {host: a}}]\n- match: [{uri: {prefix: /debug}}]\n  route: [{destination: {host: b}}]",
            // different headers
            "hosts: [a.com]\nhttp:\n- match: [{uri: {prefix: /a}, headers: {x: {exact: \"1\"}}}]\n  route: [{destination: {host: a}}]\n- match: [{uri: {prefix: /ab}, headers: {y: {exact: \"1\"}}}]\n  route: [{destination: {host: b}}]",
        ] {
            let r = run(spec);
            assert!(r.is_valid(), "{spec}\n{:#?}", r.errors);
            assert!(r.warnings.is_empty(), "{spec}\n{:#?}", r.warnings);
        }
    }

    #[test]
    fn large_direct_response_bodies() {
        let spec = |n: usize| {
            format!(
                "hosts: [a.com]\nhttp: [{{directResponse: {{status: 200, body: {{string: \"{}\"}}}}}}]",
                "x".repeat(n)
            )
        };
        let r = run(&spec(100 * 1024));
        assert!(r.is_valid() && r.warnings.is_empty(), "{r:#?}");
        let r = run(&spec(200 * 1024));
        assert!(r.is_valid(), "{r:#?}");
        assert!(has(
            &r.warnings,
            "spec.http[0].directResponse.body",
            "large direct_responses may impact control plane performance"
        ));
        let r = run(&spec(1024 * 1024 + 1));
        assert!(has(
            &r.errors,
            "spec.http[0].directResponse.body",
            "large direct_responses may impact control plane performance, must be less than 1MB"
        ));
    }

    #[test]
    fn long_regex_rejected() {
        let spec = format!(
            "hosts: [a.com]\nhttp: [{{match: [{{uri: {{regex: \"{}\"}}}}], route: [{{destination: {{host: a}}}}]}}]",
            "a".repeat(1025)
        );
        let r = run(&spec);
        assert!(has(
            &r.errors,
            "spec.http[0].match[0].uri.regex",
            "\"uri\": regex is too large, max length allowed is 1024"
        ));
    }

    #[test]
    fn problems_accumulate() {
        let r = run(
            "hosts: [\"*\", foo..com]\ngateways: [\"*/gw\", mesh]\nhttp: [{timeout: 0s}]\nexportTo: [\"~\"]",
        );
        for msg in [
            "wildcard host * is not allowed",
            "domain name \".com\" invalid",
            "invalid value for namespace",
            "HTTP route, redirect or direct_response is required",
            "duration must be greater than 1ms",
            "exportTo ~ (none) is not allowed",
        ] {
            assert!(r.has_error(msg), "{msg}: {:#?}", r.errors);
        }
        // No duplicate-host analysis when a host is invalid.
        assert!(!r.has_error("duplicate hosts"));
    }

    #[test]
    fn host_overlap_rules() {
        assert!(host_matches("*.foo.com", "a.foo.com"));
        assert!(host_matches("a.foo.com", "*.foo.com"));
        assert!(host_matches("*.com", "*.foo.com"));
        assert!(host_matches("*", "foo.com"));
        assert!(!host_matches("*.foo.com", "foo.com"));
        assert!(!host_matches("a.com", "b.com"));
        assert!(host_subset_of("a.foo.com", "*.foo.com"));
        assert!(host_subset_of("*.a.foo.com", "*.foo.com"));
        assert!(!host_subset_of("*.com", "*.foo.com"));
        assert!(!host_subset_of("*.foo.com", "a.foo.com"));
        assert!(host_subset_of("a.com", "*"));
    }

    #[test]
    fn header_values() {
        for ok in [
            "",
            "foo",
            "%HOSTNAME%",
            "100%%",
            "prefix %HOSTNAME% suffix",
            "%REQ(x-id)%",
            "%START_TIME(%s)%",
            "%PER_REQUEST_STATE([\"a\", \"b\"])%",
            "tab\there",
        ] {
            assert_eq!(validate_header_value(ok), Ok(()), "{ok:?}");
        }
        for (bad, msg) in [
            ("abc%", "Un-escaped %"),
            ("%START_TIME%%", "Un-escaped %"),
            ("%START_TIME", "Un-terminated variable expression"),
            ("%VAR([\"a\" x])%", "Expecting ',', ']', or whitespace"),
            ("%VAR([x])%", "Expecting '\"'"),
            ("%VAR([\"a\"] x)%", "Expecting ')' or whitespace"),
            ("%VAR(\"a\\", "Un-terminated backslash"),
            ("%VAR(a) x%", "Expecting '%' or whitespace after"),
            ("a\nb", "header value configuration a\nb is invalid"),
            ("\u{7f}", "is invalid"),
        ] {
            let e = validate_header_value(bad).expect_err(bad);
            assert!(e.contains(msg), "{bad:?}: {e}");
        }
    }

    #[test]
    fn http_status_texts() {
        for code in [100, 200, 226, 308, 418, 421, 429, 451, 503, 511] {
            assert!(is_known_http_status(code), "{code}");
        }
        for code in [0, 99, 209, 306, 419, 420, 427, 430, 509, 512, 600] {
            assert!(!is_known_http_status(code), "{code}");
        }
    }

    #[test]
    fn go_float_formatting() {
        for (v, want) in [
            (101.0, "101"),
            (-1.5, "-1.5"),
            (0.00001, "1e-05"),
            (0.0001, "0.0001"),
            (100.5, "100.5"),
            (123456.0, "123456"),
            (1_000_000.0, "1e+06"),
            (1_234_567.0, "1.234567e+06"),
            (0.0, "0"),
        ] {
            assert_eq!(go_float(v), want, "{v}");
        }
    }

    #[test]
    fn jwt_claim_names() {
        assert!(is_jwt_claim_route("@request.auth.claims.sub"));
        assert!(is_jwt_claim_route("@request.auth.claims[a][b]"));
        assert!(is_jwt_claim_route("@Request.Auth.Claims.sub"));
        assert!(!is_jwt_claim_route("@request.auth.claims."));
        assert!(!is_jwt_claim_route("@request.auth.claims[]"));
        assert!(!is_jwt_claim_route("x-claims"));
    }

    #[test]
    fn ipv6_zone_is_an_ip_host() {
        let r = run("hosts: [\"fe80::1%eth0\"]\nhttp: [{route: [{destination: {host: a}}]}]");
        assert!(r.is_valid(), "{:#?}", r.errors);
    }
}

//! VirtualService HTTP routes → Envoy routes (spec §6.2, §6.3), default service routes and
//! route hash policies from consistent-hash DestinationRules (§5.3).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use entryway_model::api::{self, Protocol};
use entryway_model::registry::scope::EffectiveRule;
use entryway_model::registry::{ProxyScope, Service};
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, HeaderValue, HeaderValueOption, RuntimeFractionalPercent, data_source,
    header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::config::route::v3::{
    Decorator, DirectResponseAction, HeaderMatcher, QueryParameterMatcher, RedirectAction,
    RetryPolicy, Route, RouteAction, RouteMatch, WeightedCluster, header_matcher,
    query_parameter_matcher, redirect_action, retry_policy, route, route_action, route_match,
    weighted_cluster,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{FaultDelay, fault_delay};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy as EnvoyCorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher, StringMatcher, string_matcher,
};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use super::super::names::parse_outbound_cluster;
use super::super::policy;
use super::common::{
    DrCache, VsRef, config_metadata, destination_cluster, domain_name, duration, labels_match,
    pack, zero_duration,
};

/// Envoy's fault filter name (also the `typed_per_filter_config` key).
pub(crate) const FAULT_FILTER: &str = "envoy.filters.http.fault";
/// Envoy's CORS filter name (also the `typed_per_filter_config` key).
pub(crate) const CORS_FILTER: &str = "envoy.filters.http.cors";
/// Name of the route generated for a service without VirtualService.
pub(crate) const DEFAULT_ROUTE_NAME: &str = "default";

/// What the routes of one route configuration can see: the services listening on the
/// listener port by hostname (Istio's per-port `serviceRegistry`, each with the ports it
/// is built on) and DestinationRules by hostname.
pub(crate) struct RouteCtx<'a, 's, 'c> {
    /// The proxy scope.
    pub scope: &'a ProxyScope<'s>,
    /// Ports (numbers) of each service of the route configuration, by hostname.
    pub registry: &'a HashMap<String, Vec<u32>>,
    /// The listener port (0 for unix-socket and HTTP_PROXY listeners).
    pub listener_port: u32,
    /// DestinationRules by hostname.
    pub rules: &'a RefCell<DrCache<'c>>,
    /// The scope's services by hostname.
    pub services: &'a HashMap<&'c str, &'c Arc<Service>>,
}

impl RouteCtx<'_, '_, '_> {
    fn cluster(&self, dest: &api::Destination, host: &str) -> String {
        let single = self
            .registry
            .get(host)
            .and_then(|ports| (ports.len() == 1).then(|| ports[0]));
        destination_cluster(dest, host, single, self.listener_port)
    }

    fn rule(&self, host: &str) -> Option<Rc<EffectiveRule>> {
        self.rules
            .borrow_mut()
            .for_host(self.scope, self.services, host)
    }
}

/// `0s`-timeout route action pointing at `cluster` (also used for the catch-all vhost).
pub(crate) fn no_timeout_action(cluster: String) -> RouteAction {
    let mut action = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
        ..Default::default()
    };
    set_timeout(&mut action, None);
    action
}

/// The route of a service without VirtualService (Istio's `BuildDefaultHTTPOutboundRoute`):
/// `default`, prefix `/`, `timeout: 0s`, the mesh default retry policy (`retry`, from
/// [`convert_retry_policy`]), decorator `host:port/*`.
pub(crate) fn default_route(
    cluster: String,
    hostname: &str,
    port: u32,
    retry: Option<RetryPolicy>,
    hash_policy: Vec<route_action::HashPolicy>,
) -> Route {
    let mut action = no_timeout_action(cluster);
    action.retry_policy = retry;
    action.hash_policy = hash_policy;
    let mut operation = domain_name(hostname, port);
    operation.push_str("/*");
    Route {
        name: DEFAULT_ROUTE_NAME.to_string(),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
            case_sensitive: Some(BoolValue { value: true }),
            ..Default::default()
        }),
        decorator: Some(Decorator {
            operation,
            ..Default::default()
        }),
        action: Some(route::Action::Route(action)),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// Retry policy (§6.3)
// ---------------------------------------------------------------------------------------

const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

fn previous_hosts_predicate() -> retry_policy::RetryHostPredicate {
    retry_policy::RetryHostPredicate {
        name: "envoy.retry_host_predicates.previous_hosts".to_string(),
        config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
            pack(PreviousHostsPredicate {}),
        )),
    }
}

/// Istio's `retry.ConvertPolicy`: the default policy when `retries` is unset, none for
/// `attempts <= 0`, otherwise the default overridden by the given fields. With a
/// consistent-hash destination the `previous_hosts` predicate is left out of the default.
pub(crate) fn convert_retry_policy(
    retries: Option<&api::HttpRetry>,
    consistent_hash: bool,
) -> Option<RetryPolicy> {
    let mut out = RetryPolicy {
        num_retries: Some(UInt32Value { value: 2 }),
        retry_on: DEFAULT_RETRY_ON.to_string(),
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    };
    if !consistent_hash {
        out.retry_host_predicate = vec![previous_hosts_predicate()];
    }
    let Some(r) = retries else {
        return Some(out);
    };
    if r.attempts <= 0 {
        return None;
    }
    out.num_retries = Some(UInt32Value {
        value: r.attempts.unsigned_abs(),
    });
    if !r.retry_on.is_empty() {
        let (on, codes) = parse_retry_on(&r.retry_on);
        out.retry_on = on;
        if !codes.is_empty() && !out.retry_on.contains("retriable-status-codes") {
            out.retry_on.push_str(",retriable-status-codes");
        }
        out.retriable_status_codes = codes;
    }
    if let Some(t) = &r.per_try_timeout {
        out.per_try_timeout = Some(duration(t));
    }
    if let Some(ignore) = r.retry_ignore_previous_hosts {
        out.retry_host_predicate = if ignore {
            vec![previous_hosts_predicate()]
        } else {
            Vec::new()
        };
    }
    if r.retry_remote_localities == Some(true) {
        out.retry_priority = Some(retry_policy::RetryPriority {
            name: "envoy.retry_priorities.previous_priorities".to_string(),
            config_type: Some(retry_policy::retry_priority::ConfigType::TypedConfig(pack(
                PreviousPrioritiesConfig {
                    update_frequency: 2,
                },
            ))),
        });
    }
    if let Some(b) = &r.backoff {
        out.retry_back_off = Some(retry_policy::RetryBackOff {
            base_interval: Some(duration(b)),
            ..Default::default()
        });
    }
    Some(out)
}

/// True for the HTTP status codes Go's `http.StatusText` knows.
fn is_http_status(code: u32) -> bool {
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

/// Splits `retryOn` into Envoy conditions and retriable status codes.
fn parse_retry_on(s: &str) -> (String, Vec<u32>) {
    let mut on = Vec::new();
    let mut codes = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u32>() {
            Ok(c) if is_http_status(c) => codes.push(c),
            _ => on.push(part),
        }
    }
    (on.join(","), codes)
}

// ---------------------------------------------------------------------------------------
// Consistent-hash route hash policies (§5.3)
// ---------------------------------------------------------------------------------------

/// Istio's `hashForService`: the route hash policy of the default route of a service port
/// (a port-level consistent hash replaces the top-level one).
pub(crate) fn service_hash_policy(
    rule: &EffectiveRule,
    port: u32,
) -> Vec<route_action::HashPolicy> {
    let top = rule.traffic_policy.as_ref();
    let port_level = top
        .and_then(|t| {
            t.port_level_settings
                .iter()
                .find(|s| s.port.as_ref().map(|p| p.number) == Some(port))
        })
        .and_then(|s| s.load_balancer.as_ref())
        .filter(|lb| lb.consistent_hash.is_some());
    port_level
        .or_else(|| top.and_then(|t| t.load_balancer.as_ref()))
        .map(policy::hash_policy)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Matches
// ---------------------------------------------------------------------------------------

/// Istio's `ConvertToEnvoyMatch`.
pub(crate) fn string_matcher(m: &api::StringMatch) -> Option<StringMatcher> {
    let pattern = if let Some(e) = &m.exact {
        string_matcher::MatchPattern::Exact(e.clone())
    } else if let Some(p) = &m.prefix {
        string_matcher::MatchPattern::Prefix(p.clone())
    } else if let Some(r) = &m.regex {
        string_matcher::MatchPattern::SafeRegex(regex(r))
    } else {
        return None;
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    })
}

fn regex(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.to_string(),
        ..Default::default()
    }
}

/// An empty match, or the regex `*`, means "present".
fn is_present_match(m: &api::StringMatch) -> bool {
    m.is_empty() || (m.exact.is_none() && m.prefix.is_none() && m.regex.as_deref() == Some("*"))
}

fn header_matcher(name: &str, m: &api::StringMatch) -> HeaderMatcher {
    let spec = if is_present_match(m) {
        Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true))
    } else {
        string_matcher(m).map(header_matcher::HeaderMatchSpecifier::StringMatch)
    };
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: spec,
        ..Default::default()
    }
}

fn query_matcher(name: &str, m: &api::StringMatch) -> QueryParameterMatcher {
    let spec = if is_present_match(m) {
        Some(query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true))
    } else {
        string_matcher(m).map(query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch)
    };
    QueryParameterMatcher {
        name: name.to_string(),
        query_parameter_match_specifier: spec,
    }
}

/// Istio's `TranslateRouteMatch` (sidecar semantics).
pub(crate) fn translate_route_match(m: Option<&api::HttpMatchRequest>) -> RouteMatch {
    let mut out = RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
        case_sensitive: Some(BoolValue { value: true }),
        ..Default::default()
    };
    let Some(m) = m else {
        return out;
    };
    for (name, sm) in &m.headers {
        out.headers.push(header_matcher(name, sm));
    }
    for (name, sm) in &m.without_headers {
        let mut h = header_matcher(name, sm);
        h.invert_match = true;
        if !is_present_match(sm) {
            h.treat_missing_header_as_empty = true;
        }
        out.headers.push(h);
    }
    out.headers.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(uri) = &m.uri {
        if let Some(e) = &uri.exact {
            out.path_specifier = Some(route_match::PathSpecifier::Path(e.clone()));
        } else if let Some(p) = &uri.prefix {
            out.path_specifier = Some(route_match::PathSpecifier::Prefix(p.clone()));
        } else if let Some(r) = &uri.regex {
            out.path_specifier = Some(route_match::PathSpecifier::SafeRegex(regex(r)));
        }
    }
    out.case_sensitive = Some(BoolValue {
        value: !m.ignore_uri_case,
    });
    if let Some(sm) = &m.method {
        out.headers.push(header_matcher(":method", sm));
    }
    if let Some(sm) = &m.authority {
        out.headers.push(header_matcher(":authority", sm));
    }
    if let Some(sm) = &m.scheme {
        out.headers.push(header_matcher(":scheme", sm));
    }
    for (name, sm) in &m.query_params {
        out.query_parameters.push(query_matcher(name, sm));
    }
    out
}

/// Istio's `IsCatchAllRoute`: prefix `/` (or regex `.*`) without header, query or metadata
/// matchers.
pub(crate) fn is_catch_all(r: &Route) -> bool {
    let Some(m) = &r.r#match else {
        return false;
    };
    let path = match &m.path_specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => p == "/",
        Some(route_match::PathSpecifier::PathSeparatedPrefix(p)) => p == "/",
        Some(route_match::PathSpecifier::SafeRegex(r)) => r.regex == ".*",
        _ => false,
    };
    path && m.headers.is_empty() && m.query_parameters.is_empty() && m.dynamic_metadata.is_empty()
}

// ---------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct HeaderOps {
    request_add: Vec<HeaderValueOption>,
    response_add: Vec<HeaderValueOption>,
    request_remove: Vec<String>,
    response_remove: Vec<String>,
    authority: String,
}

fn is_internal_header(k: &str) -> bool {
    k.starts_with(':') || k.eq_ignore_ascii_case("host")
}

fn is_authority_header(k: &str) -> bool {
    k.eq_ignore_ascii_case(":authority") || k.eq_ignore_ascii_case("host")
}

/// One group (set or add) of header options, sorted by key; returns the authority set.
fn header_options(
    headers: &std::collections::BTreeMap<String, String>,
    append: bool,
    out: &mut Vec<HeaderValueOption>,
) -> String {
    let mut authority = String::new();
    for (k, v) in headers {
        if is_authority_header(k) {
            authority = v.clone();
        }
        if is_internal_header(k) {
            continue;
        }
        let action = if append {
            HeaderAppendAction::AppendIfExistsOrAdd
        } else {
            HeaderAppendAction::OverwriteIfExistsOrAdd
        };
        out.push(HeaderValueOption {
            header: Some(HeaderValue {
                key: k.clone(),
                value: v.clone(),
                ..Default::default()
            }),
            append_action: action as i32,
            ..Default::default()
        });
    }
    authority
}

fn translate_headers(h: &api::Headers) -> HeaderOps {
    let mut ops = HeaderOps::default();
    if let Some(req) = &h.request {
        let set_auth = header_options(&req.set, false, &mut ops.request_add);
        let add_auth = header_options(&req.add, true, &mut ops.request_add);
        ops.authority = if set_auth.is_empty() {
            add_auth
        } else {
            set_auth
        };
        ops.request_remove = req
            .remove
            .iter()
            .filter(|k| !is_internal_header(k))
            .cloned()
            .collect();
    }
    if let Some(resp) = &h.response {
        header_options(&resp.set, false, &mut ops.response_add);
        header_options(&resp.add, true, &mut ops.response_add);
        ops.response_remove = resp
            .remove
            .iter()
            .filter(|k| !is_internal_header(k))
            .cloned()
            .collect();
    }
    ops
}

// ---------------------------------------------------------------------------------------
// Fault, CORS, mirror
// ---------------------------------------------------------------------------------------

fn percent_million(p: &api::Percent) -> FractionalPercent {
    FractionalPercent {
        // Go's uint32(float) conversion truncates.
        numerator: (p.value * 10000.0) as u32,
        denominator: fractional_percent::DenominatorType::Million as i32,
    }
}

fn percent_hundred(p: i32) -> FractionalPercent {
    FractionalPercent {
        numerator: p.unsigned_abs(),
        denominator: fractional_percent::DenominatorType::Hundred as i32,
    }
}

/// gRPC status code by name (Istio's `SupportedGRPCStatus`).
fn grpc_status_code(name: &str) -> Option<u32> {
    const CODES: [&str; 17] = [
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
    CODES
        .iter()
        .position(|c| *c == name)
        .and_then(|i| u32::try_from(i).ok())
}

/// Istio's `TranslateFault`.
pub(crate) fn translate_fault(f: &api::HttpFaultInjection) -> Option<HttpFault> {
    let mut out = HttpFault::default();
    if let Some(d) = &f.delay
        && let Some(fixed) = &d.fixed_delay
    {
        let percentage = match &d.percentage {
            Some(p) => percent_million(p),
            None => percent_hundred(d.percent),
        };
        out.delay = Some(FaultDelay {
            percentage: Some(percentage),
            fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(duration(
                fixed,
            ))),
        });
    }
    if let Some(a) = &f.abort {
        let error = if let Some(s) = a.http_status {
            Some(fault_abort::ErrorType::HttpStatus(s.unsigned_abs()))
        } else {
            a.grpc_status
                .as_deref()
                .map(|g| fault_abort::ErrorType::GrpcStatus(grpc_status_code(g).unwrap_or(0)))
        };
        if let Some(error) = error {
            out.abort = Some(FaultAbort {
                percentage: a.percentage.as_ref().map(percent_million),
                error_type: Some(error),
                ..Default::default()
            });
        }
    }
    (out.delay.is_some() || out.abort.is_some()).then_some(out)
}

/// Istio's `TranslateCORSPolicy`.
pub(crate) fn translate_cors(c: &api::CorsPolicy) -> EnvoyCorsPolicy {
    let allow_origin_string_match = if !c.allow_origins.is_empty() {
        c.allow_origins.iter().filter_map(string_matcher).collect()
    } else {
        c.allow_origin
            .iter()
            .map(|o| StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(o.clone())),
                ..Default::default()
            })
            .collect()
    };
    EnvoyCorsPolicy {
        allow_origin_string_match,
        allow_methods: c.allow_methods.join(","),
        allow_headers: c.allow_headers.join(","),
        expose_headers: c.expose_headers.join(","),
        max_age: c
            .max_age
            .as_ref()
            .map(|d| d.seconds().to_string())
            .unwrap_or_default(),
        allow_credentials: c.allow_credentials.map(|value| BoolValue { value }),
        filter_enabled: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator: 100,
                denominator: fractional_percent::DenominatorType::Hundred as i32,
            }),
            ..Default::default()
        }),
        forward_not_matching_preflights: Some(BoolValue {
            value: c.unmatched_preflights != api::UnmatchedPreflights::Ignore,
        }),
        ..Default::default()
    }
}

fn mirror_policy(cluster: String, percent: FractionalPercent) -> route_action::RequestMirrorPolicy {
    route_action::RequestMirrorPolicy {
        cluster,
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(percent),
            ..Default::default()
        }),
        trace_sampled: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// Route translation
// ---------------------------------------------------------------------------------------

/// Istio's `sourceMatchHTTP` for a sidecar (gateway `mesh`).
fn source_matches(m: &api::HttpMatchRequest, scope: &ProxyScope<'_>) -> bool {
    if !m.gateways.is_empty() {
        return m.gateways.iter().any(|g| g == "mesh");
    }
    labels_match(&m.source_labels, &scope.proxy.labels)
        && (m.source_namespace.is_empty() || m.source_namespace == scope.proxy.namespace)
}

/// Istio's `GetRouteOperation`: `<host>:<port><path>` from the route cluster, else
/// `<vsName>:<listenerPort><path>`.
fn route_operation(r: &Route, vs_name: &str, port: u32) -> String {
    let path = match r.r#match.as_ref().and_then(|m| m.path_specifier.as_ref()) {
        Some(route_match::PathSpecifier::Prefix(p)) => format!("{p}*"),
        Some(route_match::PathSpecifier::Path(p)) => p.clone(),
        Some(route_match::PathSpecifier::SafeRegex(re)) => re.regex.clone(),
        _ => "/*".to_string(),
    };
    if let Some(route::Action::Route(a)) = &r.action
        && let Some(route_action::ClusterSpecifier::Cluster(c)) = &a.cluster_specifier
        && let Some((p, _, h)) = parse_outbound_cluster(c)
    {
        return format!("{h}:{p}{path}");
    }
    format!("{vs_name}:{port}{path}")
}

/// The redirect action of a route (Istio's `ApplyRedirect`); `None` for unsupported codes.
fn redirect_action(r: &api::HttpRedirect, port: u32) -> Option<RedirectAction> {
    let mut out = RedirectAction {
        host_redirect: r.authority.clone(),
        path_rewrite_specifier: Some(if r.prefix_rewrite.is_empty() {
            redirect_action::PathRewriteSpecifier::PathRedirect(r.uri.clone())
        } else {
            redirect_action::PathRewriteSpecifier::PrefixRewrite(r.prefix_rewrite.clone())
        }),
        ..Default::default()
    };
    if !r.scheme.is_empty() {
        out.scheme_rewrite_specifier = Some(
            redirect_action::SchemeRewriteSpecifier::SchemeRedirect(r.scheme.clone()),
        );
    }
    if r.port.is_some() || r.derive_port.is_some() {
        if let Some(p) = r.port {
            out.port_redirect = p;
        } else if r.derive_port == Some(api::RedirectPortSelection::FromRequestPort) {
            out.port_redirect = port;
        }
        let scheme = if r.scheme.is_empty() {
            "http"
        } else {
            r.scheme.as_str()
        };
        if (out.port_redirect == 80 && scheme == "http")
            || (out.port_redirect == 443 && scheme == "https")
        {
            out.port_redirect = 0;
        }
    }
    use redirect_action::RedirectResponseCode as Code;
    let code = match r.redirect_code {
        0 | 301 => Code::MovedPermanently,
        302 => Code::Found,
        303 => Code::SeeOther,
        307 => Code::TemporaryRedirect,
        308 => Code::PermanentRedirect,
        _ => return None,
    };
    out.response_code = code as i32;
    Some(out)
}

fn direct_response(d: &api::HttpDirectResponse) -> DirectResponseAction {
    let body = d.body.as_ref().and_then(|b| {
        let spec = if let Some(s) = &b.string {
            data_source::Specifier::InlineString(s.clone())
        } else {
            data_source::Specifier::InlineBytes(b.decoded_bytes()?.ok()?)
        };
        Some(DataSource {
            specifier: Some(spec),
            ..Default::default()
        })
    });
    DirectResponseAction {
        status: d.status,
        body,
        ..Default::default()
    }
}

/// The timeout of a route (`0s`, none, when unset; spec §6.2). Istio also writes the
/// deprecated `max_grpc_timeout` (gRPC requests honour their `grpc-timeout` header up to the
/// route timeout), which Envoy 1.40 warns about on every push. Its replacement,
/// `max_stream_duration`, switches the route to Envoy's "new timeouts", where the route
/// `timeout` no longer applies (measured: a 500 ms route timeout then never fired, and a
/// `max_stream_duration` of 500 ms answered "downstream duration timeout" instead of
/// "upstream request timeout"). So:
/// - no timeout: `max_stream_duration {grpc_timeout_header_max: 0s}` — no limit, and gRPC's
///   header honoured as it is, which is what `max_grpc_timeout: 0s` meant;
/// - a timeout: the route timeout alone (gRPC requests get it too; a shorter `grpc-timeout`
///   deadline is enforced by the client rather than by Envoy).
fn set_timeout(action: &mut RouteAction, timeout: Option<&api::Duration>) {
    let t = timeout.map(duration).unwrap_or_else(zero_duration);
    if t.seconds == 0 && t.nanos == 0 {
        action.max_stream_duration = Some(route_action::MaxStreamDuration {
            grpc_timeout_header_max: Some(t),
            ..Default::default()
        });
    }
    action.timeout = Some(t);
}

/// Translates one `http[]` rule × match of a VirtualService (Istio's `translateRoute`);
/// `None` when the match does not apply to this proxy/port or the route is unusable.
pub(crate) fn translate_route(
    ctx: &RouteCtx<'_, '_, '_>,
    vs: &VsRef<'_>,
    http: &api::HttpRoute,
    m: Option<&api::HttpMatchRequest>,
) -> Option<Route> {
    if let Some(m) = m {
        if m.port != 0 && m.port != ctx.listener_port {
            return None;
        }
        if !source_matches(m, ctx.scope) {
            return None;
        }
    }
    // Delegating routes are not supported: they carry no destination of their own.
    if http.redirect.is_none() && http.direct_response.is_none() && http.route.is_empty() {
        return None;
    }
    let mut name = http.name.clone();
    if let Some(m) = m
        && !m.name.is_empty()
    {
        name = format!("{name}.{}", m.name);
    }
    let mut out = Route {
        name,
        r#match: Some(translate_route_match(m)),
        metadata: Some(config_metadata(
            "virtual-service",
            &vs.vs.namespace,
            &vs.vs.name,
        )),
        ..Default::default()
    };
    if let Some(m) = m {
        out.stat_prefix = m.stat_prefix.clone();
    }
    let mut authority = String::new();
    if let Some(h) = &http.headers {
        let ops = translate_headers(h);
        out.request_headers_to_add = ops.request_add;
        out.response_headers_to_add = ops.response_add;
        out.request_headers_to_remove = ops.request_remove;
        out.response_headers_to_remove = ops.response_remove;
        authority = ops.authority;
    }
    if let Some(r) = &http.redirect {
        out.action = Some(route::Action::Redirect(redirect_action(
            r,
            ctx.listener_port,
        )?));
    } else if let Some(d) = &http.direct_response {
        out.action = Some(route::Action::DirectResponse(direct_response(d)));
    } else {
        let action = route_destination(ctx, vs, http, authority, &mut out);
        out.action = Some(route::Action::Route(action));
    }
    out.decorator = Some(Decorator {
        operation: route_operation(&out, &vs.vs.name, ctx.listener_port),
        ..Default::default()
    });
    if let Some(f) = &http.fault {
        out.typed_per_filter_config.insert(
            FAULT_FILTER.to_string(),
            pack(translate_fault(f).unwrap_or_default()),
        );
    }
    if let Some(c) = &http.cors_policy {
        out.typed_per_filter_config
            .insert(CORS_FILTER.to_string(), pack(translate_cors(c)));
    }
    Some(out)
}

/// Istio's `applyHTTPRouteDestination`: the forwarding action of a route.
fn route_destination(
    ctx: &RouteCtx<'_, '_, '_>,
    vs: &VsRef<'_>,
    http: &api::HttpRoute,
    mut authority: String,
    out: &mut Route,
) -> RouteAction {
    let mut action = RouteAction::default();
    set_timeout(&mut action, http.timeout.as_ref());
    if let Some(rw) = &http.rewrite {
        if let Some(re) = &rw.uri_regex_rewrite {
            action.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(regex(&re.r#match)),
                substitution: re.rewrite.clone(),
            });
        } else if !rw.uri.is_empty() {
            action.prefix_rewrite = rw.uri.clone();
        }
        if !rw.authority.is_empty() {
            authority = rw.authority.clone();
        }
    }
    if !authority.is_empty() {
        action.host_rewrite_specifier = Some(
            route_action::HostRewriteSpecifier::HostRewriteLiteral(authority),
        );
    }
    if let Some(m) = &http.mirror {
        let percent = match (&http.mirror_percentage, http.mirror_percent) {
            (Some(p), _) => (p.value > 0.0).then(|| percent_million(p)),
            (None, Some(p)) => (p > 0).then(|| percent_hundred(i32::try_from(p).unwrap_or(100))),
            (None, None) => Some(percent_hundred(100)),
        };
        if let Some(p) = percent {
            let h = vs.resolve(&m.host);
            action
                .request_mirror_policies
                .push(mirror_policy(ctx.cluster(m, &h), p));
        }
    }
    for mp in &http.mirrors {
        let Some(dest) = &mp.destination else {
            continue;
        };
        let percent = match &mp.percentage {
            Some(p) => (p.value > 0.0).then(|| percent_million(p)),
            None => Some(percent_hundred(100)),
        };
        if let Some(p) = percent {
            let h = vs.resolve(&dest.host);
            action
                .request_mirror_policies
                .push(mirror_policy(ctx.cluster(dest, &h), p));
        }
    }

    let retries = http
        .retries
        .as_ref()
        .or(ctx.scope.mesh.default_http_retry_policy.as_ref());
    let mut consistent_hash = false;
    if let [dst] = http.route.as_slice() {
        let dest = dst.destination.clone().unwrap_or_default();
        let h = vs.resolve(&dest.host);
        action.cluster_specifier = Some(route_action::ClusterSpecifier::Cluster(
            ctx.cluster(&dest, &h),
        ));
        if let Some(hd) = &dst.headers {
            let ops = translate_headers(hd);
            out.request_headers_to_add.extend(ops.request_add);
            out.request_headers_to_remove.extend(ops.request_remove);
            out.response_headers_to_add.extend(ops.response_add);
            out.response_headers_to_remove.extend(ops.response_remove);
            if !ops.authority.is_empty() && action.host_rewrite_specifier.is_none() {
                action.host_rewrite_specifier = Some(
                    route_action::HostRewriteSpecifier::HostRewriteLiteral(ops.authority),
                );
            }
        }
        let rule = ctx.rule(&h);
        let port = dest.port.as_ref().map(|p| p.number);
        consistent_hash = rule
            .as_deref()
            .and_then(|r| policy::consistent_hash_for_destination(r, port, &dest.subset))
            .is_some();
        action
            .hash_policy
            .extend(policy::hash_policy_for_destination(
                rule.as_deref(),
                port,
                &dest.subset,
            ));
    } else {
        let mut clusters = Vec::new();
        for dst in &http.route {
            if dst.weight == 0 {
                continue;
            }
            let dest = dst.destination.clone().unwrap_or_default();
            let h = vs.resolve(&dest.host);
            let mut cw = weighted_cluster::ClusterWeight {
                name: ctx.cluster(&dest, &h),
                weight: Some(UInt32Value {
                    value: dst.weight.unsigned_abs(),
                }),
                ..Default::default()
            };
            if let Some(hd) = &dst.headers {
                let ops = translate_headers(hd);
                cw.request_headers_to_add = ops.request_add;
                cw.request_headers_to_remove = ops.request_remove;
                cw.response_headers_to_add = ops.response_add;
                cw.response_headers_to_remove = ops.response_remove;
                if !ops.authority.is_empty() {
                    cw.host_rewrite_specifier = Some(
                        weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral(
                            ops.authority,
                        ),
                    );
                }
            }
            let rule = ctx.rule(&h);
            action
                .hash_policy
                .extend(policy::hash_policy_for_destination(
                    rule.as_deref(),
                    dest.port.as_ref().map(|p| p.number),
                    &dest.subset,
                ));
            clusters.push(cw);
        }
        action.cluster_specifier = Some(route_action::ClusterSpecifier::WeightedClusters(
            WeightedCluster {
                clusters,
                ..Default::default()
            },
        ));
    }
    action.retry_policy = convert_retry_policy(retries, consistent_hash);
    action
}

/// All routes of a VirtualService for this route configuration (Istio's
/// `BuildHTTPRoutesForVirtualService`): one per `http[]` rule × applicable match, stopping
/// after the first catch-all.
pub(crate) fn virtual_service_routes(ctx: &RouteCtx<'_, '_, '_>, vs: &VsRef<'_>) -> Vec<Route> {
    let mut out = Vec::with_capacity(vs.vs.spec.http.len());
    for http in &vs.vs.spec.http {
        let mut catch_all = false;
        if http.r#match.is_empty() {
            out.extend(translate_route(ctx, vs, http, None));
            catch_all = true;
        } else {
            for m in &http.r#match {
                if let Some(r) = translate_route(ctx, vs, http, Some(m)) {
                    let stop = is_catch_all(&r);
                    out.push(r);
                    if stop {
                        catch_all = true;
                        break;
                    }
                }
            }
        }
        if catch_all {
            break;
        }
    }
    out
}

/// True for ports that get virtual hosts: HTTP-class or sniffed (`IsHTTPOrSniffed`).
pub(crate) fn is_http_or_sniffed(p: Protocol) -> bool {
    p.is_http() || p.is_unsupported()
}

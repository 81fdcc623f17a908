//! `networking.istio.io` VirtualService (`networking/v1alpha3/virtual_service.proto`):
//! HTTP, TLS and TCP routing rules for a set of hosts.
//!
//! oneofs are separate `Option` fields (e.g. [`StringMatch`], [`Abort`], [`HttpBody`],
//! [`HttpRedirect`]'s port); validation checks that at most one member is set.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{Duration, Percent, decode_base64, is_default, nd, nd_map, proto_enum};

/// Spec of a VirtualService.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualService {
    /// Destination hosts the rules apply to (DNS names, wildcards, IPs); empty for a delegate VS.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub hosts: Vec<String>,
    /// Gateways and sidecars (`mesh`) that apply the routes; empty = `mesh`.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub gateways: Vec<String>,
    /// Ordered HTTP routes; the first match wins.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub http: Vec<HttpRoute>,
    /// Ordered routes for unterminated TLS (by SNI).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub tls: Vec<TlsRoute>,
    /// Ordered routes for opaque TCP.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub tcp: Vec<TcpRoute>,
    /// Namespaces the VirtualService is visible to; empty = mesh default.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub export_to: Vec<String>,
}

/// `Destination`: the service (and subset/port) a request or connection is sent to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// Service host from the registry (required; short names are namespace-relative).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub host: String,
    /// Subset defined by a DestinationRule.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub subset: String,
    /// Port of the host; optional when the service has one port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// `HTTPRoute`: match conditions and actions for HTTP/1.1, HTTP/2 and gRPC traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Route name, used in access logs and route names.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub name: String,
    /// Match blocks (OR); conditions within one block are ANDed. Empty = match all.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub r#match: Vec<HttpMatchRequest>,
    /// Weighted destinations to forward to.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub route: Vec<HttpRouteDestination>,
    /// Send a redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<HttpRedirect>,
    /// Answer directly instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<HttpDirectResponse>,
    /// Delegate to the routes of another VirtualService (only without route/redirect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Delegate>,
    /// Rewrite URI/authority before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    /// Request timeout; unset = disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    /// Client-side fault injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<HttpFaultInjection>,
    /// Mirror traffic to this destination too (exclusive with `mirrors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    /// Mirror traffic to several destinations, each with its own percentage.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Deprecated: integer percentage for `mirror`; use `mirrorPercentage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percent: Option<u32>,
    /// Percentage of traffic mirrored by `mirror`; absent = 100%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
    /// Cross-Origin Resource Sharing policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
    /// Header manipulation for all destinations of the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// `Delegate`: the VirtualService a route delegates to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delegate {
    /// Name of the delegate VirtualService.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub name: String,
    /// Its namespace; empty = the root VirtualService's namespace.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub namespace: String,
}

/// `Headers`: request and response header manipulation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Headers {
    /// Applied before forwarding the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    /// Applied before returning the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// `Headers.HeaderOperations`: the manipulations for one direction.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderOperations {
    /// Overwrite these headers.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub set: BTreeMap<String, String>,
    /// Append to these headers.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub remove: Vec<String>,
}

/// `TLSRoute`: routing of unterminated TLS traffic by SNI.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsRoute {
    /// Match blocks (OR); required.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub r#match: Vec<TlsMatchAttributes>,
    /// Weighted destinations.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub route: Vec<RouteDestination>,
}

/// `TCPRoute`: routing of opaque TCP traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    /// Match blocks (OR).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub r#match: Vec<L4MatchAttributes>,
    /// Weighted destinations.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub route: Vec<RouteDestination>,
}

/// `HTTPMatchRequest`: conditions a request must meet (all of them) for the route to apply.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatchRequest {
    /// Match name, appended to the route name.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub name: String,
    /// URI (path) match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// URI scheme match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    /// HTTP method match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// Authority (Host) match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// Header matches keyed by lowercase header name; an empty match checks presence.
    #[serde(
        default,
        deserialize_with = "nd_map",
        skip_serializing_if = "is_default"
    )]
    pub headers: BTreeMap<String, StringMatch>,
    /// Destination port.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub port: u32,
    /// Labels the calling workload must carry.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways where this match applies (overrides the VirtualService's `gateways`).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub gateways: Vec<String>,
    /// Query parameter matches (`exact` and `regex` only).
    #[serde(
        default,
        deserialize_with = "nd_map",
        skip_serializing_if = "is_default"
    )]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Case-insensitive URI matching (exact and prefix).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub ignore_uri_case: bool,
    /// Headers that must NOT match.
    #[serde(
        default,
        deserialize_with = "nd_map",
        skip_serializing_if = "is_default"
    )]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Namespace the calling workload must be in.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub source_namespace: String,
    /// Stat prefix for the generated route's statistics.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub stat_prefix: String,
}

/// `HTTPRouteDestination`: a weighted HTTP destination with its own header manipulation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteDestination {
    /// Where to send the request (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Relative weight (proportion = weight / sum of weights); 0 with one destination = all.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub weight: i32,
    /// Header manipulation for this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// `RouteDestination`: a weighted L4 (TLS/TCP) destination.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteDestination {
    /// Where to send the connection (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Relative weight.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub weight: i32,
}

/// `L4MatchAttributes`: TCP connection match conditions.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4MatchAttributes {
    /// Destination IPs or CIDRs.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub destination_subnets: Vec<String>,
    /// Destination port.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub port: u32,
    /// Source IP or CIDR (hidden from Istio's docs).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub source_subnet: String,
    /// Labels the calling workload must carry.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways where this match applies.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub gateways: Vec<String>,
    /// Namespace the calling workload must be in.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub source_namespace: String,
}

/// `TLSMatchAttributes`: TLS connection match conditions.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatchAttributes {
    /// SNI values to match (required; wildcard prefixes allowed).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub sni_hosts: Vec<String>,
    /// Destination IPs or CIDRs.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub destination_subnets: Vec<String>,
    /// Destination port.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub port: u32,
    /// Labels the calling workload must carry.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways where this match applies.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub gateways: Vec<String>,
    /// Namespace the calling workload must be in.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub source_namespace: String,
}

proto_enum! {
    /// `HTTPRedirect.RedirectPortSelection`: how the redirect port is derived.
    RedirectPortSelection {
        /// 80 for HTTP, 443 for HTTPS.
        FromProtocolDefault = 0 => "FROM_PROTOCOL_DEFAULT",
        /// The port of the request.
        FromRequestPort = 1 => "FROM_REQUEST_PORT",
    }
}

/// `HTTPRedirect`: a redirect response. `port` and `derivePort` are a oneof.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRedirect {
    /// Replace the whole path with this value (exclusive with `prefixRewrite`).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub uri: String,
    /// Replace the matched prefix with this value.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub prefix_rewrite: String,
    /// Replace the authority/host.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub authority: String,
    /// oneof `redirect_port`: explicit port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// oneof `redirect_port`: derive the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive_port: Option<RedirectPortSelection>,
    /// Replace the scheme (`http`/`https`).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub scheme: String,
    /// Status code; 0 = 301.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub redirect_code: u32,
}

/// `HTTPDirectResponse`: a fixed response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpDirectResponse {
    /// HTTP status (required).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub status: u32,
    /// Response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<HttpBody>,
}

/// `HTTPBody`: oneof `specifier` of a direct response body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpBody {
    /// oneof: body as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    /// oneof: body as bytes, kept in its proto3 JSON form (base64); see [`HttpBody::decoded_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<String>,
}

impl HttpBody {
    /// The decoded `bytes` member, if set.
    pub fn decoded_bytes(&self) -> Option<Result<Vec<u8>, String>> {
        self.bytes.as_deref().map(decode_base64)
    }
}

/// `HTTPRewrite`: rewrite URI and authority before forwarding.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRewrite {
    /// Replace the path (or the matched prefix) with this value.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub uri: String,
    /// Replace the authority/host.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub authority: String,
    /// Regex-based path rewrite (exclusive with `uri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// `RegexRewrite`: a regex and its replacement (`\1` references groups).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexRewrite {
    /// RE2 regex to match.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub r#match: String,
    /// Replacement.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub rewrite: String,
}

/// `StringMatch`: oneof `match_type` (exact, prefix, RE2 regex). All `None` = empty match
/// (presence check for headers).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StringMatch {
    /// oneof: exact match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// oneof: prefix match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// oneof: RE2 regex match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

impl StringMatch {
    /// How many oneof members are set (valid: 0 or 1).
    pub fn set_count(&self) -> usize {
        [
            self.exact.is_some(),
            self.prefix.is_some(),
            self.regex.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }

    /// True when no member is set.
    pub fn is_empty(&self) -> bool {
        self.set_count() == 0
    }
}

/// `HTTPRetry`: retry policy of a route.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    /// Retries allowed (not counting the first attempt); 0 disables retries.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub attempts: i32,
    /// Timeout per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// Comma-separated Envoy retry conditions and/or HTTP status codes.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub retry_on: String,
    /// Retry to other localities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_remote_localities: Option<bool>,
    /// Avoid previously tried hosts (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval of the exponential back-off (default 25ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
}

proto_enum! {
    /// `CorsPolicy.UnmatchedPreflights`: what to do with preflights that match no origin.
    UnmatchedPreflights {
        /// Default: forward.
        Unspecified = 0 => "UNSPECIFIED",
        /// Forward to the upstream.
        Forward = 1 => "FORWARD",
        /// Answer without CORS headers.
        Ignore = 2 => "IGNORE",
    }
}

/// `CorsPolicy`: Cross-Origin Resource Sharing policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicy {
    /// Deprecated: exact allowed origins; use `allowOrigins`.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub allow_origin: Vec<String>,
    /// Allowed origins.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub allow_origins: Vec<StringMatch>,
    /// Allowed methods (`Access-Control-Allow-Methods`).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub allow_methods: Vec<String>,
    /// Allowed request headers (`Access-Control-Allow-Headers`).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub allow_headers: Vec<String>,
    /// Exposed response headers (`Access-Control-Expose-Headers`).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub expose_headers: Vec<String>,
    /// Preflight cache time (`Access-Control-Max-Age`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// `Access-Control-Allow-Credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// Handling of preflights that match no allowed origin.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub unmatched_preflights: UnmatchedPreflights,
}

/// `HTTPFaultInjection`: delays and/or aborts injected at the client side.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjection {
    /// Delay before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    /// Abort with an error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<Abort>,
}

/// `HTTPFaultInjection.Delay`; `fixedDelay`/`exponentialDelay` are a oneof.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delay {
    /// Deprecated integer percentage (0-100); use `percentage`.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub percent: i32,
    /// oneof `http_delay_type`: fixed delay (required in practice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_delay: Option<Duration>,
    /// oneof `http_delay_type`: exponential delay (not implemented by Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential_delay: Option<Duration>,
    /// Percentage of requests delayed; absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// `HTTPFaultInjection.Abort`; `httpStatus`/`grpcStatus`/`http2Error` are a oneof.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Abort {
    /// oneof `error_type`: HTTP status to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    /// oneof `error_type`: gRPC status name (e.g. `UNAVAILABLE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<String>,
    /// oneof `error_type`: HTTP/2 error (rejected by validation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_error: Option<String>,
    /// Percentage of requests aborted; absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// `HTTPMirrorPolicy`: one mirror destination with its percentage.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// Destination to mirror to (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Percentage mirrored; absent = 100%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// `PortSelector`: a port number.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    /// Port number.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub number: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VirtualService using nearly every field, in canonical form (no explicit defaults,
    /// durations as proto3 JSON), so that re-encoding gives back the same JSON.
    const RICH: &str = r#"
hosts: [reviews.prod.svc.cluster.local, "*.example.com"]
gateways: [mesh, istio-system/gw]
exportTo: ["."]
http:
- name: v2-routes
  match:
  - name: catalog
    uri: {prefix: /wpcatalog}
    scheme: {exact: https}
    method: {exact: GET}
    authority: {regex: "^api\\..*"}
    headers:
      end-user: {exact: jason}
      x-present: {}
    port: 80
    sourceLabels: {app: frontend}
    gateways: [mesh]
    queryParams:
      debug: {exact: "true"}
    ignoreUriCase: true
    withoutHeaders:
      x-skip: {prefix: "y"}
    sourceNamespace: frontend
    statPrefix: catalog
  rewrite:
    authority: reviews.internal
    uriRegexRewrite: {match: "^/service/([^/]+)(/.*)$", rewrite: "/p/\\2/\\1"}
  route:
  - destination: {host: reviews, subset: v2, port: {number: 9080}}
    weight: 75
    headers:
      request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
      response: {remove: [x-d]}
  - destination: {host: reviews, subset: v1}
    weight: 25
  timeout: 5s
  retries:
    attempts: 3
    perTryTimeout: 1.500s
    retryOn: gateway-error,connect-failure,503
    retryRemoteLocalities: true
    retryIgnorePreviousHosts: false
    backoff: 0.025s
  fault:
    delay:
      percent: 5
      fixedDelay: 2s
      percentage: {value: 0.1}
    abort:
      httpStatus: 400
      percentage: {value: 1.5}
  mirror: {host: mirror.svc}
  mirrorPercent: 10
  mirrorPercentage: {value: 50.0}
  corsPolicy:
    allowOrigin: [https://legacy.example.com]
    allowOrigins: [{exact: https://example.com}, {regex: ".*\\.example\\.com"}]
    allowMethods: [POST, GET]
    allowHeaders: [X-Foo-Bar]
    exposeHeaders: [X-Exposed]
    maxAge: 86400s
    allowCredentials: false
    unmatchedPreflights: IGNORE
  headers:
    request: {set: {x-route: "yes"}}
- name: mirrors-and-redirect
  match: [{uri: {exact: /old}}]
  redirect:
    uri: /new
    authority: new.example.com
    port: 8443
    scheme: https
    redirectCode: 308
  mirrors:
  - destination: {host: m1.svc}
    percentage: {value: 25.0}
  - destination: {host: m2.svc}
- name: prefix-redirect
  redirect: {prefixRewrite: /v2, derivePort: FROM_REQUEST_PORT}
- name: direct
  directResponse:
    status: 503
    body: {string: "unavailable"}
- name: bytes
  directResponse:
    status: 200
    body: {bytes: aGVsbG8=}
- name: delegated
  delegate: {name: productpage, namespace: nsA}
- name: grpc-abort
  fault:
    abort: {grpcStatus: UNAVAILABLE}
    delay: {exponentialDelay: 1s}
- name: h2-abort
  fault:
    abort: {http2Error: INTERNAL_ERROR}
  route: [{destination: {host: reviews}}]
tls:
- match:
  - sniHosts: [login.example.com]
    destinationSubnets: [10.0.0.0/8]
    port: 443
    sourceLabels: {app: a}
    gateways: [mesh]
    sourceNamespace: ns1
  route:
  - destination: {host: login.prod.svc.cluster.local, port: {number: 8443}}
    weight: 100
tcp:
- match:
  - destinationSubnets: [10.1.0.0/16]
    port: 27017
    sourceSubnet: 10.2.0.0/16
    sourceLabels: {app: b}
    gateways: [mesh]
    sourceNamespace: ns2
  route:
  - destination: {host: mongo.backup.svc.cluster.local, port: {number: 5555}}
"#;

    #[test]
    fn rich_round_trip() {
        let vs: VirtualService = serde_yaml::from_str(RICH).expect("decode");
        let out = serde_json::to_value(&vs).expect("encode");
        let input: serde_json::Value = serde_yaml::from_str(RICH).expect("value");
        assert_eq!(out, input);
        assert_eq!(
            serde_json::from_value::<VirtualService>(out).expect("re-decode"),
            vs
        );
        let yaml = serde_yaml::to_string(&vs).expect("yaml");
        assert_eq!(
            serde_yaml::from_str::<VirtualService>(&yaml).expect("yaml re-decode"),
            vs
        );

        let r = &vs.http[0];
        assert_eq!(r.r#match[0].headers["x-present"], StringMatch::default());
        assert_eq!(
            r.r#match[0].uri.as_ref().map(StringMatch::set_count),
            Some(1)
        );
        assert_eq!(r.timeout, Some(Duration::from_secs(5)));
        assert_eq!(
            r.retries.as_ref().and_then(|x| x.backoff),
            Some(Duration::from_millis(25))
        );
        assert_eq!(r.mirror_percent, Some(10));
        assert_eq!(
            r.cors_policy.as_ref().map(|c| c.unmatched_preflights),
            Some(UnmatchedPreflights::Ignore)
        );
        assert_eq!(
            vs.http[2].redirect.as_ref().and_then(|x| x.derive_port),
            Some(RedirectPortSelection::FromRequestPort)
        );
        let body = vs.http[4]
            .direct_response
            .as_ref()
            .and_then(|d| d.body.as_ref())
            .expect("body");
        assert_eq!(body.decoded_bytes(), Some(Ok(b"hello".to_vec())));
        assert_eq!(vs.tcp[0].r#match[0].source_subnet, "10.2.0.0/16");
    }

    #[test]
    fn go_durations_are_normalised() {
        let vs: VirtualService = serde_yaml::from_str(
            "http:\n- timeout: 30ms\n  retries: {attempts: 2, perTryTimeout: 1m30s}",
        )
        .expect("decode");
        let out = serde_json::to_value(&vs).expect("encode");
        assert_eq!(out["http"][0]["timeout"], "0.030s");
        assert_eq!(out["http"][0]["retries"]["perTryTimeout"], "90s");
    }

    #[test]
    fn header_presence_match_with_null_value() {
        let vs: VirtualService =
            serde_yaml::from_str("http:\n- match:\n  - headers:\n      x-foo:\n").expect("decode");
        assert!(vs.http[0].r#match[0].headers["x-foo"].is_empty());
    }

    #[test]
    fn oneof_members_decode_separately() {
        let m: StringMatch = serde_yaml::from_str("{exact: a, prefix: b}").expect("both set");
        assert_eq!(m.set_count(), 2); // validation rejects this, decoding keeps both
    }

    #[test]
    fn unknown_fields_rejected() {
        for (yaml, field) in [
            ("http:\n- faultInjection: {}", "faultInjection"),
            (
                "http:\n- retries: {attempts: 1, backoff: {baseInterval: 1s}}",
                "invalid",
            ),
            (
                "http:\n- rewrite: {uriRegexRewrite: {regex: a, replacement: b}}",
                "regex",
            ),
            ("http:\n- match: [{uri: {present: true}}]", "present"),
            ("http:\n- appendHeaders: {a: b}", "appendHeaders"),
            ("http:\n- fault: {abort: {percent: 5}}", "percent"),
            (
                "tls:\n- match: [{sniHosts: [a], sourceSubnet: 1.1.1.1}]",
                "sourceSubnet",
            ),
            (
                "http:\n- route: [{destination: {host: a, port: {name: http}}}]",
                "name",
            ),
        ] {
            let e = serde_yaml::from_str::<VirtualService>(yaml)
                .expect_err(yaml)
                .to_string();
            assert!(e.contains(field), "{yaml}: {e}");
        }
    }

    #[test]
    fn enums_by_number() {
        let vs: VirtualService = serde_yaml::from_str(
            "http:\n- redirect: {derivePort: 1}\n  corsPolicy: {unmatchedPreflights: 1}",
        )
        .expect("decode");
        assert_eq!(
            vs.http[0].redirect.as_ref().and_then(|r| r.derive_port),
            Some(RedirectPortSelection::FromRequestPort)
        );
        assert_eq!(
            vs.http[0]
                .cors_policy
                .as_ref()
                .map(|c| c.unmatched_preflights),
            Some(UnmatchedPreflights::Forward)
        );
        assert!(
            serde_yaml::from_str::<VirtualService>(
                "http:\n- corsPolicy: {unmatchedPreflights: DROP}"
            )
            .is_err()
        );
    }

    #[test]
    fn negative_weight_decodes() {
        // int32 in the proto: validation must be able to see negative weights.
        let vs: VirtualService =
            serde_yaml::from_str("http:\n- route: [{destination: {host: a}, weight: -1}]")
                .expect("decode");
        assert_eq!(vs.http[0].route[0].weight, -1);
    }
}

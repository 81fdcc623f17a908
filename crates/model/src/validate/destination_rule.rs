//! DestinationRule validation: the CRD schema/CEL rules (oneofs, warmup) and Istio's Go
//! checks (`ValidateDestinationRule` and the traffic-policy helpers it calls).
//!
//! Istio quirks kept on purpose:
//! * an empty `trafficPolicy: {}` and `tunnel` together with `proxyProtocol` stop the
//!   checks of that policy (Istio returns early there);
//! * warnings raised inside a subset's `trafficPolicy` or inside `portLevelSettings` are
//!   dropped (Istio merges only the errors of those);
//! * the locality-LB checks stop at the first weight problem, as Istio's do.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::api;
use crate::diag::{FieldPath, Report};
use crate::validate::Context;
use crate::validate::common::{
    ExportToOwner, check_duration, check_export_to, check_labels, is_dns1123_label,
    is_dns1123_label_lower, parse_ip, validate_fqdn, validate_port, validate_wildcard_domain,
};

/// Validates a DestinationRule spec.
pub fn validate(spec: &api::DestinationRule, ctx: &Context<'_>, report: &mut Report) {
    let root = FieldPath::root("spec");

    if let Err(e) = validate_wildcard_domain(&spec.host) {
        report.error(root.field("host"), e);
    }

    if let Some(tp) = &spec.traffic_policy {
        validate_traffic_policy(tp, ctx.namespace, &root.field("trafficPolicy"), report);
    }

    let mut names: HashSet<&str> = HashSet::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let p = root.field("subsets").index(i);
        if !names.insert(subset.name.as_str()) {
            report.error(
                p.field("name"),
                format!("duplicate subset names: {}", subset.name),
            );
        }
        if let Err(e) = validate_subset_name(&subset.name) {
            report.error(p.field("name"), e);
        }
        check_labels(&subset.labels, &p.field("labels"), report);
        if let Some(tp) = &subset.traffic_policy {
            // Istio keeps only the errors of a subset's policy.
            let mut sub = Report::default();
            validate_traffic_policy(tp, ctx.namespace, &p.field("trafficPolicy"), &mut sub);
            report.errors.extend(sub.errors);
        }
    }

    let export_path = root.field("exportTo");
    check_export_to(
        &spec.export_to,
        ctx.namespace,
        ExportToOwner::Other,
        &export_path,
        report,
    );
    if spec.workload_selector.is_some() {
        check_export_to_with_selector(&spec.export_to, ctx.namespace, &export_path, report);
    }

    if let Some(sel) = &spec.workload_selector {
        let p = root.field("workloadSelector");
        check_selector_labels(&sel.match_labels, &p.field("matchLabels"), report);
        if sel.match_labels.is_empty() {
            report.warn(&p, "workload selector specified without labels");
        }
    }
}

/// A DestinationRule with a workload selector may only be exported to its own namespace.
fn check_export_to_with_selector(
    export_to: &[String],
    namespace: &str,
    path: &FieldPath,
    report: &mut Report,
) {
    // The set Istio builds: valid entries, with `.` standing for the own namespace.
    let set: BTreeSet<&str> = export_to
        .iter()
        .map(String::as_str)
        .filter(|e| matches!(*e, "." | "*") || is_dns1123_label_lower(e))
        .map(|e| if e == "." { namespace } else { e })
        .collect();
    if set.is_empty() {
        return;
    }
    if set.contains(namespace) {
        if set.len() > 1 {
            report.error(
                path,
                "destination rule with workload selector cannot have multiple entries in exportTo",
            );
        }
    } else {
        report.error(
            path,
            "destination rule with workload selector cannot have exportTo beyond current namespace",
        );
    }
}

/// Selector labels as Istio checks them: every empty key and every wildcard is an error
/// (both may be reported for one entry). Returns true when something was reported.
pub(crate) fn check_selector_labels(
    labels: &BTreeMap<String, String>,
    path: &FieldPath,
    report: &mut Report,
) -> bool {
    let mut bad = false;
    for (k, v) in labels {
        if k.is_empty() {
            report.error(
                path.key(k),
                format!("empty key is not supported in selector: \"={v}\""),
            );
            bad = true;
        }
        if k.contains('*') || v.contains('*') {
            report.error(
                path.key(k),
                format!("wildcard is not supported in selector: \"{k}={v}\""),
            );
            bad = true;
        }
    }
    bad
}

/// Istio's subset name rule (also used for `Destination.subset`).
pub(crate) fn validate_subset_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("subset name cannot be empty".to_string());
    }
    if !is_dns1123_label(name) {
        return Err(format!("subset name is invalid: {name}"));
    }
    Ok(())
}

fn validate_traffic_policy(
    tp: &api::TrafficPolicy,
    namespace: &str,
    path: &FieldPath,
    report: &mut Report,
) {
    if tp.outlier_detection.is_none()
        && tp.connection_pool.is_none()
        && tp.load_balancer.is_none()
        && tp.tls.is_none()
        && tp.port_level_settings.is_empty()
        && tp.tunnel.is_none()
        && tp.proxy_protocol.is_none()
        && tp.retry_budget.is_none()
    {
        report.error(path, "traffic policy must have at least one field");
        return;
    }
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        report.error(path, "tunnel and proxyProtocol must not be set together");
        return;
    }
    if let Some(od) = &tp.outlier_detection {
        validate_outlier_detection(od, &path.field("outlierDetection"), report);
    }
    if let Some(cp) = &tp.connection_pool {
        validate_connection_pool(cp, &path.field("connectionPool"), report);
    }
    if let Some(lb) = &tp.load_balancer {
        validate_load_balancer(
            lb,
            tp.outlier_detection.is_some(),
            &path.field("loadBalancer"),
            report,
        );
    }
    if let Some(tls) = &tp.tls {
        validate_client_tls(tls, namespace, &path.field("tls"), report);
    }
    validate_port_level_settings(
        &tp.port_level_settings,
        namespace,
        &path.field("portLevelSettings"),
        report,
    );
    if let Some(t) = &tp.tunnel {
        validate_tunnel(t, &path.field("tunnel"), report);
    }
}

fn validate_port_level_settings(
    settings: &[api::PortTrafficPolicy],
    namespace: &str,
    path: &FieldPath,
    report: &mut Report,
) {
    // Istio keeps only the errors of port-level policies.
    let mut sub = Report::default();
    for (i, s) in settings.iter().enumerate() {
        let p = path.index(i);
        if s.port.is_none() {
            sub.error(p.field("port"), "portTrafficPolicy must have valid port");
        }
        if s.outlier_detection.is_none()
            && s.connection_pool.is_none()
            && s.load_balancer.is_none()
            && s.tls.is_none()
        {
            sub.error(&p, "port traffic policy must have at least one field");
            continue;
        }
        if let Some(od) = &s.outlier_detection {
            validate_outlier_detection(od, &p.field("outlierDetection"), &mut sub);
        }
        if let Some(cp) = &s.connection_pool {
            validate_connection_pool(cp, &p.field("connectionPool"), &mut sub);
        }
        if let Some(lb) = &s.load_balancer {
            validate_load_balancer(
                lb,
                s.outlier_detection.is_some(),
                &p.field("loadBalancer"),
                &mut sub,
            );
        }
        if let Some(tls) = &s.tls {
            validate_client_tls(tls, namespace, &p.field("tls"), &mut sub);
        }
    }
    report.errors.extend(sub.errors);
}

fn validate_tunnel(t: &api::TunnelSettings, path: &FieldPath, report: &mut Report) {
    if !t.protocol.is_empty() && t.protocol != "CONNECT" && t.protocol != "POST" {
        report.error(
            path.field("protocol"),
            "tunnel protocol must be \"CONNECT\" or \"POST\"",
        );
    }
    if let Err(fqdn_err) = validate_fqdn(&t.target_host)
        && parse_ip(&t.target_host).is_none()
    {
        report.error(
            path.field("targetHost"),
            format!(
                "tunnel target host must be valid FQDN or IP address: {fqdn_err}; {} is not a valid IP",
                t.target_host
            ),
        );
    }
    if let Err(e) = validate_port(t.target_port) {
        report.error(
            path.field("targetPort"),
            format!("tunnel target port is invalid: {e}"),
        );
    }
}

/// Istio's `ValidatePercent`.
fn check_percent(v: i32, path: &FieldPath, report: &mut Report) {
    if !(0..=100).contains(&v) {
        report.error(path, format!("percentage {v} is not in range 0..100"));
    }
}

fn validate_outlier_detection(od: &api::OutlierDetection, path: &FieldPath, report: &mut Report) {
    check_duration(
        od.base_ejection_time.as_ref(),
        &path.field("baseEjectionTime"),
        report,
    );
    if od.consecutive_errors != 0 {
        report.warn(
            path.field("consecutiveErrors"),
            "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
        );
    }
    if !od.split_external_local_origin_errors
        && od.consecutive_local_origin_failures.unwrap_or(0) > 0
    {
        report.error(
            path.field("consecutiveLocalOriginFailures"),
            "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
        );
    }
    check_duration(od.interval.as_ref(), &path.field("interval"), report);
    check_percent(
        od.max_ejection_percent,
        &path.field("maxEjectionPercent"),
        report,
    );
    check_percent(
        od.min_health_percent,
        &path.field("minHealthPercent"),
        report,
    );
}

/// Istio's `validateConnectionPool` (DestinationRule policies and Sidecar inbound pools).
pub(crate) fn validate_connection_pool(
    cp: &api::ConnectionPoolSettings,
    path: &FieldPath,
    report: &mut Report,
) {
    if cp.http.is_none() && cp.tcp.is_none() {
        report.error(path, "connection pool must have at least one field");
        return;
    }
    if let Some(h) = &cp.http {
        let p = path.field("http");
        let non_negative = [
            (
                h.http1_max_pending_requests,
                "http1MaxPendingRequests",
                "http1 max pending requests must be non-negative",
            ),
            (
                h.http2_max_requests,
                "http2MaxRequests",
                "http2 max requests must be non-negative",
            ),
            (
                h.max_requests_per_connection,
                "maxRequestsPerConnection",
                "max requests per connection must be non-negative",
            ),
            (
                h.max_retries,
                "maxRetries",
                "max retries must be non-negative",
            ),
        ];
        for (v, field, msg) in non_negative {
            if v < 0 {
                report.error(p.field(field), msg);
            }
        }
        check_duration(h.idle_timeout.as_ref(), &p.field("idleTimeout"), report);
        if h.h2_upgrade_policy == api::H2UpgradePolicy::Upgrade && h.use_client_protocol {
            report.error(
                p.field("useClientProtocol"),
                "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
            );
        }
        if h.max_concurrent_streams < 0 {
            report.error(
                p.field("maxConcurrentStreams"),
                "max concurrent streams must be non-negative",
            );
        }
        if let Some(ka) = &h.http2_keep_alive {
            let kp = p.field("http2KeepAlive");
            match &ka.interval {
                None => report.error(kp.field("interval"), "http2 keepalive interval is required"),
                Some(d) => check_duration(Some(d), &kp.field("interval"), report),
            }
            match &ka.timeout {
                None => report.error(kp.field("timeout"), "http2 keepalive timeout is required"),
                Some(d) => check_duration(Some(d), &kp.field("timeout"), report),
            }
        }
    }
    if let Some(t) = &cp.tcp {
        let p = path.field("tcp");
        if t.max_connections < 0 {
            report.error(
                p.field("maxConnections"),
                "max connections must be non-negative",
            );
        }
        check_duration(
            t.connect_timeout.as_ref(),
            &p.field("connectTimeout"),
            report,
        );
        check_duration(
            t.max_connection_duration.as_ref(),
            &p.field("maxConnectionDuration"),
            report,
        );
        // `0s` (anything under 1ms, as Istio truncates to whole milliseconds) disables it.
        if let Some(d) = &t.idle_timeout
            && d.as_millis() != 0
        {
            check_duration(Some(d), &p.field("idleTimeout"), report);
        }
        if let Some(ka) = &t.tcp_keepalive {
            let kp = p.field("tcpKeepalive");
            check_duration(ka.time.as_ref(), &kp.field("time"), report);
            check_duration(ka.interval.as_ref(), &kp.field("interval"), report);
        }
    }
}

/// The API server's message for a violated protobuf oneof.
fn oneof_error(path: &FieldPath, members: &[&str], report: &mut Report) {
    report.error(
        path,
        format!(
            "Invalid value: \"object\": must validate one and only one schema (oneOf): only one of {} may be set",
            members.join(", ")
        ),
    );
}

fn validate_load_balancer(
    lb: &api::LoadBalancerSettings,
    has_outlier: bool,
    path: &FieldPath,
    report: &mut Report,
) {
    // CRD: oneof lb_policy, and the warmup CEL rule.
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        oneof_error(path, &["simple", "consistentHash"], report);
    }
    if lb.warmup_duration_secs.is_some() && lb.warmup.is_some() {
        report.error(path, "only one of warmupDurationSecs or warmup can be set");
    }
    if lb.locality_lb_setting.is_some() && lb.zone_aware_lb_setting.is_some() {
        report.error(
            path,
            "only one of localityLbSetting and zoneAwareLbSetting can be set",
        );
    }

    if let Some(ch) = &lb.consistent_hash {
        validate_consistent_hash(ch, &path.field("consistentHash"), report);
    }
    if let Some(l) = &lb.locality_lb_setting {
        validate_locality_lb(l, has_outlier, &path.field("localityLbSetting"), report);
    }
    check_duration(
        lb.warmup_duration_secs.as_ref(),
        &path.field("warmupDurationSecs"),
        report,
    );
    if let Some(w) = &lb.warmup {
        validate_warmup(w, &path.field("warmup"), report);
    }
}

fn validate_consistent_hash(ch: &api::ConsistentHashLb, path: &FieldPath, report: &mut Report) {
    // CRD: oneof hash_key and oneof hash_algorithm.
    if ch.hash_key_count() > 1 {
        oneof_error(
            path,
            &[
                "httpHeaderName",
                "httpCookie",
                "useSourceIp",
                "httpQueryParameterName",
            ],
            report,
        );
    }
    let has_algorithm = ch.ring_hash.is_some() || ch.maglev.is_some();
    if ch.ring_hash.is_some() && ch.maglev.is_some() {
        oneof_error(path, &["ringHash", "maglev"], report);
    }

    if let Some(cookie) = &ch.http_cookie {
        let cp = path.field("httpCookie");
        if cookie.name.is_empty() {
            report.error(cp.field("name"), "name required for HttpCookie");
        }
        // CRD: attributes is a list-map keyed by a required `name`.
        let mut seen: HashSet<&str> = HashSet::new();
        for (i, a) in cookie.attributes.iter().enumerate() {
            let ap = cp.field("attributes").index(i);
            if a.name.is_empty() {
                report.error(
                    ap.field("name"),
                    "Required value: cookie attribute name is required",
                );
            } else if !seen.insert(a.name.as_str()) {
                report.error(&ap, format!("Duplicate value: {{\"name\":\"{}\"}}", a.name));
            }
        }
    }
    if ch.minimum_ring_size != 0 {
        report.warn(
            path.field("minimumRingSize"),
            "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
        );
        if has_algorithm {
            report.error(
                path.field("minimumRingSize"),
                "only one of MinimumRingSize or Maglev/Ringhash can be specified",
            );
        }
    }
    if let Some(m) = &ch.maglev {
        let p = path.field("maglev").field("tableSize");
        if m.table_size == 0 {
            report.error(&p, "tableSize must be set for maglev");
        }
        if m.table_size >= 5_000_011 {
            report.error(&p, "tableSize must be less than 5000011 for maglev");
        }
        if !is_prime_envoy(m.table_size) {
            report.error(&p, "tableSize must be a prime number for maglev");
        }
    }
}

/// Envoy's (and so Istio's) primality test: 1, 2 and 3 count as prime, 0 does not.
/// Deterministic Miller-Rabin, so huge table sizes cost nothing.
fn is_prime_envoy(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    if x & 1 == 0 {
        return false;
    }
    let mul_mod = |a: u64, b: u64| ((u128::from(a) * u128::from(b)) % u128::from(x)) as u64;
    let pow_mod = |mut base: u64, mut exp: u64| {
        let mut acc = 1u64;
        base %= x;
        while exp > 0 {
            if exp & 1 == 1 {
                acc = mul_mod(acc, base);
            }
            base = mul_mod(base, base);
            exp >>= 1;
        }
        acc
    };
    let mut d = x - 1;
    let mut s = 0;
    while d & 1 == 0 {
        d >>= 1;
        s += 1;
    }
    'bases: for a in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if a % x == 0 {
            continue;
        }
        let mut v = pow_mod(a, d);
        if v == 1 || v == x - 1 {
            continue;
        }
        for _ in 1..s {
            v = mul_mod(v, v);
            if v == x - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

fn validate_warmup(w: &api::WarmupConfiguration, path: &FieldPath, report: &mut Report) {
    match &w.duration {
        None => report.error(
            path.field("duration"),
            "Required value: duration is required",
        ),
        Some(d) => check_duration(Some(d), &path.field("duration"), report),
    }
    if let Some(mp) = w.minimum_percent {
        if mp < 0.0 {
            report.error(
                path.field("minimumPercent"),
                format!("Invalid value: {mp}: should be greater than or equal to 0"),
            );
        }
        if mp > 100.0 {
            report.error(
                path.field("minimumPercent"),
                "minimumPercent value should be less than or equal to 100",
            );
        }
    }
    if let Some(ag) = w.aggression {
        if ag < 0.0 {
            report.error(
                path.field("aggression"),
                format!("Invalid value: {ag}: should be greater than or equal to 0"),
            );
        }
        if ag <= 0.0 {
            report.error(
                path.field("aggression"),
                "aggression should be greater than 0",
            );
        }
    }
}

const LABEL_TOPOLOGY_REGION: &str = "topology.kubernetes.io/region";
const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";
const LABEL_TOPOLOGY_SUBZONE: &str = "topology.istio.io/subzone";

/// Istio's `ValidateLocalityLbSetting`, including its early returns.
fn validate_locality_lb(
    lb: &api::LocalityLoadBalancerSetting,
    has_outlier: bool,
    path: &FieldPath,
    report: &mut Report,
) {
    if !lb.distribute.is_empty() && !lb.failover.is_empty() {
        report.error(
            path,
            "can not simultaneously specify 'distribute' and 'failover'",
        );
        return;
    }
    if !lb.failover.is_empty() {
        for (i, label) in lb.failover_priority.iter().enumerate() {
            if matches!(
                label.as_str(),
                LABEL_TOPOLOGY_REGION | LABEL_TOPOLOGY_ZONE | LABEL_TOPOLOGY_SUBZONE
            ) {
                report.error(
                    path.field("failoverPriority").index(i),
                    format!(
                        "can not simultaneously set 'failover' and topology label '{label}' in 'failover_priority'"
                    ),
                );
                return;
            }
        }
    }

    for (i, d) in lb.distribute.iter().enumerate() {
        let dp = path.field("distribute").index(i);
        let mut total: u64 = 0;
        for (loc, weight) in &d.to {
            if *weight == 0 || *weight > 100 {
                report.error(
                    dp.field("to").key(loc),
                    "locality weight must be in range [1, 100]",
                );
                return;
            }
            total += u64::from(*weight);
        }
        if total != 100 {
            report.error(
                dp.field("to"),
                format!("total locality weight {total} != 100"),
            );
            return;
        }
        let dests: Vec<&str> = d.to.keys().map(String::as_str).collect();
        if let Err(e) = validate_localities(&dests) {
            report.error(dp.field("to"), e);
        }
    }
    let srcs: Vec<&str> = lb.distribute.iter().map(|d| d.from.as_str()).collect();
    if let Err(e) = validate_localities(&srcs) {
        report.error(path.field("distribute"), e);
    }

    if (!lb.failover.is_empty() || !lb.failover_priority.is_empty()) && !has_outlier {
        report.warn(
            path,
            "outlier detection policy must be provided for failover",
        );
    }

    for (i, f) in lb.failover.iter().enumerate() {
        let fp = path.field("failover").index(i);
        if f.from == f.to {
            report.error(
                &fp,
                "locality lb failover settings must specify different regions",
            );
        }
        if f.from.contains('/') || f.to.contains('/') {
            report.error(&fp, "locality lb failover only specify region");
        }
        if f.from.contains('*') || f.to.contains('*') {
            report.error(
                &fp,
                "locality lb failover region should not contain '*' wildcard",
            );
        }
    }
}

/// Istio's `validateLocalities`: wildcards only at the end, no empty parts, no overlaps.
fn validate_localities(localities: &[&str]) -> Result<(), String> {
    // region -> zone -> subzone -> present; `*` marks "everything below".
    let mut map: HashMap<&str, HashMap<&str, HashSet<&str>>> = HashMap::new();
    for &locality in localities {
        let stars = locality.matches('*').count();
        if stars > 1 || (stars == 1 && !locality.ends_with('*')) {
            return Err(format!(
                "locality {locality} wildcard '*' number can not exceed 1 and must be in the end"
            ));
        }
        let overlap = || format!("locality {locality} overlap with previous specified ones");
        if map.contains_key("*") {
            return Err(overlap());
        }
        let items: Vec<&str> = locality.splitn(3, '/').collect();
        if items.iter().any(|s| s.is_empty()) {
            return Err(format!(
                "locality {locality} must not contain empty region/zone/subzone info"
            ));
        }
        match items.as_slice() {
            [region] => {
                if map.contains_key(region) {
                    return Err(overlap());
                }
                map.insert(region, HashMap::from([("*", HashSet::from(["*"]))]));
            }
            [region, zone] => match map.get_mut(region) {
                Some(zones) => {
                    if zones.contains_key("*") || zones.contains_key(zone) {
                        return Err(overlap());
                    }
                    zones.insert(zone, HashSet::from(["*"]));
                }
                None => {
                    map.insert(region, HashMap::from([(*zone, HashSet::from(["*"]))]));
                }
            },
            [region, zone, subzone] => match map.get_mut(region) {
                Some(zones) => {
                    if zones.contains_key("*") {
                        return Err(overlap());
                    }
                    match zones.get_mut(zone) {
                        Some(subs) => {
                            if subs.contains("*") || subs.contains(subzone) {
                                return Err(overlap());
                            }
                            subs.insert(subzone);
                        }
                        None => {
                            zones.insert(zone, HashSet::from([*subzone]));
                        }
                    }
                }
                None => {
                    map.insert(region, HashMap::from([(*zone, HashSet::from([*subzone]))]));
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// The `configmap://` scheme of `credentialName`.
const CONFIGMAP_URI: &str = "configmap://";

/// Istio's `ValidateTLS` for `ClientTLSSettings`.
fn validate_client_tls(
    tls: &api::ClientTlsSettings,
    namespace: &str,
    path: &FieldPath,
    report: &mut Report,
) {
    use api::ClientTlsMode::{Mutual, Simple};

    if let Some(rest) = tls.credential_name.strip_prefix(CONFIGMAP_URI) {
        let p = path.field("credentialName");
        // `configmap://name` (own namespace) or `configmap://namespace/name`.
        let (ns, name) = match rest.split_once('/') {
            Some((ns, name)) => (ns, name.split('/').next().unwrap_or("")),
            None => (namespace, rest),
        };
        if ns.is_empty() || name.is_empty() {
            report.error(
                &p,
                format!(
                    "invalid configmap:// credentialName: invalid resource name \"{}\". Expected namespace and name",
                    tls.credential_name
                ),
            );
        } else if ns != namespace || namespace.is_empty() {
            report.error(
                &p,
                format!(
                    "invalid configmap:// credentialName: namespace must match the configuration namespace \"{namespace}\""
                ),
            );
        }
    }

    if tls.insecure_skip_verify == Some(true) {
        if tls.mode == Simple
            && (!tls.ca_certificates.is_empty()
                || !tls.credential_name.is_empty()
                || !tls.subject_alt_names.is_empty())
        {
            report.error(
                path,
                "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
            );
        }
        if tls.mode == Mutual
            && (!tls.ca_certificates.is_empty() || !tls.subject_alt_names.is_empty())
        {
            report.error(
                path,
                "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true",
            );
        }
    }

    if matches!(tls.mode, Simple | Mutual) && !tls.credential_name.is_empty() {
        if !tls.client_certificate.is_empty()
            || !tls.ca_certificates.is_empty()
            || !tls.private_key.is_empty()
            || !tls.ca_crl.is_empty()
        {
            report.error(
                path,
                "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
            );
        }
        return;
    }

    if tls.mode == Mutual {
        if tls.client_certificate.is_empty() {
            report.error(
                path.field("clientCertificate"),
                "client certificate required for mutual tls",
            );
        }
        if tls.private_key.is_empty() {
            report.error(
                path.field("privateKey"),
                "private key required for mutual tls",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::api::MeshConfig;
    use crate::decode::{Format, Outcome, decode_str};
    use crate::diag::Report;

    /// Decodes a DestinationRule whose `spec` is `spec_yaml` (in namespace `ns`) and
    /// validates it.
    fn dr(spec_yaml: &str) -> Report {
        let mut text = String::from(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: ns}\nspec:\n",
        );
        for line in spec_yaml.trim_matches('\n').lines() {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
        let docs = decode_str(&text, Format::Yaml, "default").expect("yaml");
        match &docs[0].outcome {
            Outcome::Config(c) => crate::validate::validate(c, &MeshConfig::default()),
            other => panic!("did not decode: {other:?}\n{text}"),
        }
    }

    fn assert_valid(spec: &str) {
        let r = dr(spec);
        assert!(r.is_valid(), "expected valid:\n{spec}\n{:?}", r.errors);
    }

    /// Asserts an error containing `msg` at exactly `path`.
    fn assert_error(spec: &str, path: &str, msg: &str) {
        let r = dr(spec);
        assert!(
            r.errors
                .iter()
                .any(|i| i.path == path && i.message.contains(msg)),
            "expected error {path}: {msg}\n{spec}\ngot {:?}",
            r.errors
        );
    }

    fn assert_warning(spec: &str, path: &str, msg: &str) {
        let r = dr(spec);
        assert!(
            r.warnings
                .iter()
                .any(|i| i.path == path && i.message.contains(msg)),
            "expected warning {path}: {msg}\n{spec}\ngot {:?}",
            r.warnings
        );
    }

    #[test]
    fn host() {
        assert_valid("host: reviews");
        assert_valid("host: '*.example.com'");
        assert_valid("host: reviews.prod.svc.cluster.local");
        assert_error("host: ''", "spec.host", "empty domain name not allowed");
        assert_error("{}", "spec.host", "empty domain name not allowed");
        assert_error("host: a.*.com", "spec.host", "label \"*\" invalid");
        assert_error("host: foo.123", "spec.host", "cannot be all-numeric");
    }

    #[test]
    fn traffic_policy_needs_a_field() {
        assert_error(
            "host: a\ntrafficPolicy: {}",
            "spec.trafficPolicy",
            "traffic policy must have at least one field",
        );
        assert_valid("host: a\ntrafficPolicy: {retryBudget: {percent: 20}}");
        assert_valid("host: a\ntrafficPolicy: {proxyProtocol: {version: V2}}");
        assert_valid("host: a\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL}}");
    }

    #[test]
    fn tunnel_and_proxy_protocol() {
        let both = "host: a\ntrafficPolicy:\n  tunnel: {targetHost: proxy.example.com, targetPort: 8080}\n  proxyProtocol: {}\n  connectionPool: {}";
        assert_error(
            both,
            "spec.trafficPolicy",
            "tunnel and proxyProtocol must not be set together",
        );
        // Istio stops checking that policy there.
        assert!(!dr(both).has_error("connection pool must have at least one field"));
        assert_valid(
            "host: a\ntrafficPolicy: {tunnel: {protocol: POST, targetHost: 10.0.0.1, targetPort: 8080}}",
        );
        assert_error(
            "host: a\ntrafficPolicy: {tunnel: {protocol: GET, targetHost: a.com, targetPort: 1}}",
            "spec.trafficPolicy.tunnel.protocol",
            "tunnel protocol must be \"CONNECT\" or \"POST\"",
        );
        assert_error(
            "host: a\ntrafficPolicy: {tunnel: {targetHost: 'bad_host', targetPort: 1}}",
            "spec.trafficPolicy.tunnel.targetHost",
            "tunnel target host must be valid FQDN or IP address",
        );
        assert_error(
            "host: a\ntrafficPolicy: {tunnel: {targetHost: a.com}}",
            "spec.trafficPolicy.tunnel.targetPort",
            "tunnel target port is invalid: port number 0 must be in the range 1..65535",
        );
    }

    #[test]
    fn connection_pool() {
        assert_error(
            "host: a\ntrafficPolicy: {connectionPool: {}}",
            "spec.trafficPolicy.connectionPool",
            "connection pool must have at least one field",
        );
        assert_valid(
            r#"
host: a
trafficPolicy:
  connectionPool:
    tcp: {maxConnections: 0, connectTimeout: 30ms, maxConnectionDuration: 1h, idleTimeout: 0s,
          tcpKeepalive: {time: 7200s, interval: 75s}}
    http: {http1MaxPendingRequests: 0, http2MaxRequests: 10, maxRequestsPerConnection: 1,
           maxRetries: 3, idleTimeout: 1s, maxConcurrentStreams: 5, h2UpgradePolicy: UPGRADE,
           http2KeepAlive: {interval: 30s, timeout: 5s}}
"#,
        );
        let cases = [
            (
                "http: {http1MaxPendingRequests: -1}",
                "http.http1MaxPendingRequests",
                "http1 max pending requests must be non-negative",
            ),
            (
                "http: {http2MaxRequests: -1}",
                "http.http2MaxRequests",
                "http2 max requests must be non-negative",
            ),
            (
                "http: {maxRequestsPerConnection: -1}",
                "http.maxRequestsPerConnection",
                "max requests per connection must be non-negative",
            ),
            (
                "http: {maxRetries: -1}",
                "http.maxRetries",
                "max retries must be non-negative",
            ),
            (
                "http: {maxConcurrentStreams: -1}",
                "http.maxConcurrentStreams",
                "max concurrent streams must be non-negative",
            ),
            (
                "http: {idleTimeout: 0s}",
                "http.idleTimeout",
                "duration must be greater than 1ms",
            ),
            (
                "http: {idleTimeout: 1500us}",
                "http.idleTimeout",
                "only durations to ms precision are supported",
            ),
            (
                "http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}",
                "http.useClientProtocol",
                "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
            ),
            (
                "http: {http2KeepAlive: {timeout: 5s}}",
                "http.http2KeepAlive.interval",
                "http2 keepalive interval is required",
            ),
            (
                "http: {http2KeepAlive: {interval: 5s}}",
                "http.http2KeepAlive.timeout",
                "http2 keepalive timeout is required",
            ),
            (
                "http: {http2KeepAlive: {interval: 0s, timeout: 5s}}",
                "http.http2KeepAlive.interval",
                "duration must be greater than 1ms",
            ),
            (
                "tcp: {maxConnections: -1}",
                "tcp.maxConnections",
                "max connections must be non-negative",
            ),
            (
                "tcp: {connectTimeout: 0s}",
                "tcp.connectTimeout",
                "duration must be greater than 1ms",
            ),
            (
                "tcp: {maxConnectionDuration: -1s}",
                "tcp.maxConnectionDuration",
                "duration must be greater than 1ms",
            ),
            (
                "tcp: {idleTimeout: -5s}",
                "tcp.idleTimeout",
                "duration must be greater than 1ms",
            ),
            (
                "tcp: {idleTimeout: 1500us}",
                "tcp.idleTimeout",
                "only durations to ms precision are supported",
            ),
            (
                "tcp: {tcpKeepalive: {time: 0s}}",
                "tcp.tcpKeepalive.time",
                "duration must be greater than 1ms",
            ),
            (
                "tcp: {tcpKeepalive: {interval: 0.5ms}}",
                "tcp.tcpKeepalive.interval",
                "duration must be greater than 1ms",
            ),
        ];
        for (pool, field, msg) in cases {
            assert_error(
                &format!("host: a\ntrafficPolicy:\n  connectionPool: {{{pool}}}"),
                &format!("spec.trafficPolicy.connectionPool.{field}"),
                msg,
            );
        }
        // UPGRADE alone and useClientProtocol alone are fine.
        assert_valid("host: a\ntrafficPolicy: {connectionPool: {http: {useClientProtocol: true}}}");
    }

    #[test]
    fn outlier_detection() {
        assert_valid(
            "host: a\ntrafficPolicy:\n  outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 100, minHealthPercent: 0, splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 3}",
        );
        let od = |s: &str| format!("host: a\ntrafficPolicy:\n  outlierDetection: {{{s}}}");
        assert_error(
            &od("interval: 0s"),
            "spec.trafficPolicy.outlierDetection.interval",
            "duration must be greater than 1ms",
        );
        assert_error(
            &od("baseEjectionTime: 1.0001s"),
            "spec.trafficPolicy.outlierDetection.baseEjectionTime",
            "only durations to ms precision",
        );
        assert_error(
            &od("maxEjectionPercent: 101"),
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "percentage 101 is not in range 0..100",
        );
        assert_error(
            &od("minHealthPercent: -1"),
            "spec.trafficPolicy.outlierDetection.minHealthPercent",
            "percentage -1 is not in range 0..100",
        );
        assert_error(
            &od("consecutiveLocalOriginFailures: 2"),
            "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
            "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
        );
        let r = dr(&od("consecutiveErrors: 3"));
        assert!(r.is_valid());
        assert_warning(
            &od("consecutiveErrors: 3"),
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            "outlier detection consecutive errors is deprecated",
        );
    }

    #[test]
    fn load_balancer_oneofs_and_consistent_hash() {
        assert_valid("host: a\ntrafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}");
        assert_valid(
            "host: a\ntrafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 1024}}}}",
        );
        assert_error(
            "host: a\ntrafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}",
            "spec.trafficPolicy.loadBalancer",
            "only one of simple, consistentHash may be set",
        );
        assert_error(
            "host: a\ntrafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, httpHeaderName: x}}}",
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "must validate one and only one schema (oneOf)",
        );
        assert_error(
            "host: a\ntrafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, ringHash: {}, maglev: {tableSize: 65537}}}}",
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "only one of ringHash, maglev may be set",
        );
        let ch = |s: &str| {
            format!("host: a\ntrafficPolicy: {{loadBalancer: {{consistentHash: {{{s}}}}}}}")
        };
        assert_error(
            &ch("httpCookie: {ttl: 0s}"),
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
            "name required for HttpCookie",
        );
        assert_valid(&ch(
            "httpCookie: {name: user, ttl: 10s, attributes: [{name: SameSite, value: Strict}, {name: Secure}]}",
        ));
        assert_error(
            &ch("httpCookie: {name: user, attributes: [{name: Secure}, {name: Secure}]}"),
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[1]",
            "Duplicate value",
        );
        assert_error(
            &ch("httpCookie: {name: user, attributes: [{value: x}]}"),
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[0].name",
            "Required value",
        );
        // Deprecated minimumRingSize: a warning alone, an error with an algorithm.
        let r = dr(&ch("useSourceIp: true, minimumRingSize: 1024"));
        assert!(r.is_valid(), "{:?}", r.errors);
        assert_warning(
            &ch("useSourceIp: true, minimumRingSize: 1024"),
            "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize",
            "consistent hash MinimumRingSize is deprecated",
        );
        assert_error(
            &ch("useSourceIp: true, minimumRingSize: 1024, maglev: {tableSize: 65537}"),
            "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize",
            "only one of MinimumRingSize or Maglev/Ringhash can be specified",
        );
    }

    #[test]
    fn maglev_table_size() {
        let mg = |n: &str| {
            format!(
                "host: a\ntrafficPolicy: {{loadBalancer: {{consistentHash: {{useSourceIp: true, maglev: {{tableSize: {n}}}}}}}}}"
            )
        };
        let p = "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize";
        assert_valid(&mg("65537"));
        assert_valid(&mg("4999999"));
        assert_error(
            &mg("5000003"),
            p,
            "tableSize must be a prime number for maglev",
        );
        assert_error(&mg("0"), p, "tableSize must be set for maglev");
        assert_error(
            &mg("65536"),
            p,
            "tableSize must be a prime number for maglev",
        );
        assert_error(
            &mg("5000011"),
            p,
            "tableSize must be less than 5000011 for maglev",
        );
        assert_error(
            &mg("18446744073709551557"),
            p,
            "tableSize must be less than 5000011",
        );
        assert!(!dr(&mg("18446744073709551557")).has_error("prime"));
        assert!(dr(&mg("18446744073709551615")).has_error("prime"));
        // Envoy counts 1 as prime.
        assert_valid(&mg("1"));
    }

    #[test]
    fn primes() {
        let naive = |x: u64| {
            if x != 0 && x < 4 {
                return true;
            }
            if x.is_multiple_of(2) {
                return false;
            }
            let mut f = 3;
            while f * f <= x {
                if x.is_multiple_of(f) {
                    return false;
                }
                f += 2;
            }
            true
        };
        for x in 0..20_000u64 {
            assert_eq!(super::is_prime_envoy(x), naive(x), "{x}");
        }
    }

    #[test]
    fn warmup() {
        let lb = |s: &str| format!("host: a\ntrafficPolicy: {{loadBalancer: {{{s}}}}}");
        let p = "spec.trafficPolicy.loadBalancer";
        assert_valid(&lb("warmup: {duration: 300s}"));
        assert_valid(&lb(
            "warmup: {duration: 300s, minimumPercent: 5.0, aggression: 5.0}",
        ));
        assert_valid(&lb("warmupDurationSecs: 60s"));
        assert_error(
            &lb("warmupDurationSecs: 60s, warmup: {duration: 30s}"),
            p,
            "only one of warmupDurationSecs or warmup can be set",
        );
        assert_error(
            &lb("warmupDurationSecs: 0s"),
            &format!("{p}.warmupDurationSecs"),
            "duration must be greater than 1ms",
        );
        assert_error(
            &lb("warmup: {minimumPercent: 5.0}"),
            &format!("{p}.warmup.duration"),
            "duration is required",
        );
        assert_error(
            &lb("warmup: {duration: 0s}"),
            &format!("{p}.warmup.duration"),
            "duration must be greater than 1ms",
        );
        assert_error(
            &lb("warmup: {duration: 300s, minimumPercent: 150.0}"),
            &format!("{p}.warmup.minimumPercent"),
            "minimumPercent value should be less than or equal to 100",
        );
        assert_error(
            &lb("warmup: {duration: 300s, minimumPercent: -1}"),
            &format!("{p}.warmup.minimumPercent"),
            "Invalid value",
        );
        assert_error(
            &lb("warmup: {duration: 300s, aggression: 0}"),
            &format!("{p}.warmup.aggression"),
            "aggression should be greater than 0",
        );
        assert_error(
            &lb("warmup: {duration: 300s, aggression: -1}"),
            &format!("{p}.warmup.aggression"),
            "aggression should be greater than 0",
        );
        assert_valid(&lb("warmup: {duration: 300s, aggression: 0.5}"));
    }

    #[test]
    fn locality_and_zone_aware() {
        let lb = |s: &str| {
            format!(
                "host: a\ntrafficPolicy:\n  outlierDetection: {{consecutive5xxErrors: 1}}\n  loadBalancer: {{localityLbSetting: {s}}}"
            )
        };
        let p = "spec.trafficPolicy.loadBalancer.localityLbSetting";
        assert_valid(&lb(
            "{distribute: [{from: us-west/zone1/*, to: {'us-west/zone1/*': 80, 'us-west/zone2/*': 20}}]}",
        ));
        assert_valid(&lb(
            "{failover: [{from: us-east, to: eu-west}], failoverPriority: [topology.istio.io/network]}",
        ));
        assert_valid(&lb("{enabled: false}"));
        assert_error(
            &lb("{distribute: [{from: a, to: {b: 100}}], failover: [{from: a, to: b}]}"),
            p,
            "can not simultaneously specify 'distribute' and 'failover'",
        );
        assert_error(
            &lb("{failover: [{from: a, to: b}], failoverPriority: [topology.kubernetes.io/zone]}"),
            &format!("{p}.failoverPriority[0]"),
            "can not simultaneously set 'failover' and topology label 'topology.kubernetes.io/zone' in 'failover_priority'",
        );
        assert_error(
            &lb("{distribute: [{from: a, to: {b: 0, c: 100}}]}"),
            &format!("{p}.distribute[0].to[b]"),
            "locality weight must be in range [1, 100]",
        );
        assert_error(
            &lb("{distribute: [{from: a, to: {b: 101}}]}"),
            &format!("{p}.distribute[0].to[b]"),
            "locality weight must be in range [1, 100]",
        );
        assert_error(
            &lb("{distribute: [{from: a, to: {b: 50, c: 40}}]}"),
            &format!("{p}.distribute[0].to"),
            "total locality weight 90 != 100",
        );
        assert_error(
            &lb("{distribute: [{from: a, to: {'b/*/c': 100}}]}"),
            &format!("{p}.distribute[0].to"),
            "wildcard '*' number can not exceed 1 and must be in the end",
        );
        assert_error(
            &lb("{distribute: [{from: a, to: {'b//c': 100}}]}"),
            &format!("{p}.distribute[0].to"),
            "must not contain empty region/zone/subzone info",
        );
        assert_error(
            &lb("{distribute: [{from: 'r/*', to: {b: 100}}, {from: 'r/z', to: {b: 100}}]}"),
            &format!("{p}.distribute"),
            "locality r/z overlap with previous specified ones",
        );
        assert_error(
            &lb("{distribute: [{from: '*', to: {b: 100}}, {from: 'r', to: {b: 100}}]}"),
            &format!("{p}.distribute"),
            "overlap with previous specified ones",
        );
        assert_valid(&lb(
            "{distribute: [{from: 'r/z1/*', to: {b: 100}}, {from: 'r/z2/s', to: {b: 100}}, {from: 'r/z2/t', to: {b: 100}}]}",
        ));
        assert_error(
            &lb("{failover: [{from: a, to: a}]}"),
            &format!("{p}.failover[0]"),
            "locality lb failover settings must specify different regions",
        );
        assert_error(
            &lb("{failover: [{from: a/b, to: c}]}"),
            &format!("{p}.failover[0]"),
            "locality lb failover only specify region",
        );
        assert_error(
            &lb("{failover: [{from: 'a*', to: c}]}"),
            &format!("{p}.failover[0]"),
            "locality lb failover region should not contain '*' wildcard",
        );
        // Failover without outlier detection: a warning.
        let no_od = "host: a\ntrafficPolicy: {loadBalancer: {localityLbSetting: {failover: [{from: a, to: b}]}}}";
        assert!(dr(no_od).is_valid());
        assert_warning(
            no_od,
            p,
            "outlier detection policy must be provided for failover",
        );
        // localityLbSetting and zoneAwareLbSetting are exclusive.
        assert_valid(
            "host: a\ntrafficPolicy: {loadBalancer: {zoneAwareLbSetting: {enabled: true}}}",
        );
        assert_error(
            "host: a\ntrafficPolicy: {loadBalancer: {localityLbSetting: {enabled: true}, zoneAwareLbSetting: {enabled: true}}}",
            "spec.trafficPolicy.loadBalancer",
            "only one of localityLbSetting and zoneAwareLbSetting can be set",
        );
    }

    #[test]
    fn client_tls() {
        let tls = |s: &str| format!("host: a\ntrafficPolicy: {{tls: {{{s}}}}}");
        let p = "spec.trafficPolicy.tls";
        assert_valid(&tls("mode: SIMPLE, caCertificates: /ca.pem, sni: a.com"));
        assert_valid(&tls(
            "mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem",
        ));
        assert_valid(&tls("mode: MUTUAL, credentialName: client-cred"));
        assert_valid(&tls("mode: SIMPLE, insecureSkipVerify: true"));
        assert_error(
            &tls("mode: MUTUAL"),
            &format!("{p}.clientCertificate"),
            "client certificate required for mutual tls",
        );
        assert_error(
            &tls("mode: MUTUAL, clientCertificate: /c.pem"),
            &format!("{p}.privateKey"),
            "private key required for mutual tls",
        );
        assert_error(
            &tls("mode: SIMPLE, insecureSkipVerify: true, caCertificates: /ca.pem"),
            p,
            "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
        );
        assert_error(
            &tls("mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: [a.com]"),
            p,
            "cannot specify CaCertificates or CredentialName or SubjectAltNames",
        );
        assert_error(
            &tls(
                "mode: MUTUAL, insecureSkipVerify: true, credentialName: c, subjectAltNames: [a.com]",
            ),
            p,
            "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true",
        );
        assert_error(
            &tls("mode: SIMPLE, credentialName: c, caCertificates: /ca.pem"),
            p,
            "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
        );
        assert_error(
            &tls("mode: MUTUAL, credentialName: c, caCrl: /crl.pem"),
            p,
            "If credentialName is set",
        );
        // configmap:// credentials must live in the rule's namespace.
        assert_valid(&tls(
            "mode: SIMPLE, credentialName: 'configmap://ca-bundle'",
        ));
        assert_valid(&tls(
            "mode: SIMPLE, credentialName: 'configmap://ns/ca-bundle'",
        ));
        assert_error(
            &tls("mode: SIMPLE, credentialName: 'configmap://other/ca-bundle'"),
            &format!("{p}.credentialName"),
            "invalid configmap:// credentialName: namespace must match the configuration namespace \"ns\"",
        );
        assert_error(
            &tls("mode: SIMPLE, credentialName: 'configmap://ns/'"),
            &format!("{p}.credentialName"),
            "invalid configmap:// credentialName",
        );
    }

    #[test]
    fn port_level_settings() {
        assert_valid(
            "host: a\ntrafficPolicy:\n  portLevelSettings:\n  - port: {number: 80}\n    loadBalancer: {simple: LEAST_REQUEST}",
        );
        assert_error(
            "host: a\ntrafficPolicy:\n  portLevelSettings:\n  - loadBalancer: {simple: RANDOM}",
            "spec.trafficPolicy.portLevelSettings[0].port",
            "portTrafficPolicy must have valid port",
        );
        assert_error(
            "host: a\ntrafficPolicy:\n  portLevelSettings:\n  - port: {number: 80}",
            "spec.trafficPolicy.portLevelSettings[0]",
            "port traffic policy must have at least one field",
        );
        assert_error(
            "host: a\ntrafficPolicy:\n  portLevelSettings:\n  - port: {number: 80}\n    connectionPool: {tcp: {maxConnections: -1}}\n    tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k}",
            "spec.trafficPolicy.portLevelSettings[0].connectionPool.tcp.maxConnections",
            "max connections must be non-negative",
        );
        // Istio drops warnings raised inside port-level settings.
        let r = dr(
            "host: a\ntrafficPolicy:\n  portLevelSettings:\n  - port: {number: 80}\n    outlierDetection: {consecutiveErrors: 2}",
        );
        assert!(r.is_valid() && r.warnings.is_empty(), "{r:?}");
    }

    #[test]
    fn subsets() {
        assert_valid(
            "host: a\nsubsets:\n- name: v1\n  labels: {version: v1}\n- name: V2\n  trafficPolicy: {loadBalancer: {simple: RANDOM}}",
        );
        assert_error(
            "host: a\nsubsets:\n- name: v1\n- name: v1",
            "spec.subsets[1].name",
            "duplicate subset names: v1",
        );
        assert_error(
            "host: a\nsubsets:\n- labels: {a: b}",
            "spec.subsets[0].name",
            "subset name cannot be empty",
        );
        assert_error(
            "host: a\nsubsets:\n- name: v1.0",
            "spec.subsets[0].name",
            "subset name is invalid: v1.0",
        );
        assert_error(
            "host: a\nsubsets:\n- name: v1\n  labels: {'-bad': x}",
            "spec.subsets[0].labels[-bad]",
            "invalid tag key: \"-bad\"",
        );
        assert_error(
            "host: a\nsubsets:\n- name: v1\n  labels: {app: 'a b'}",
            "spec.subsets[0].labels[app]",
            "invalid tag value: \"a b\"",
        );
        assert_error(
            "host: a\nsubsets:\n- name: v1\n  trafficPolicy: {}",
            "spec.subsets[0].trafficPolicy",
            "traffic policy must have at least one field",
        );
        assert_error(
            "host: a\nsubsets:\n- name: v1\n  trafficPolicy: {tls: {mode: MUTUAL}}",
            "spec.subsets[0].trafficPolicy.tls.clientCertificate",
            "client certificate required for mutual tls",
        );
        // Istio drops warnings raised inside a subset's policy.
        let r = dr(
            "host: a\nsubsets:\n- name: v1\n  trafficPolicy: {outlierDetection: {consecutiveErrors: 2}}",
        );
        assert!(r.is_valid() && r.warnings.is_empty(), "{r:?}");
    }

    #[test]
    fn export_to() {
        assert_valid("host: a\nexportTo: ['*']");
        assert_valid("host: a\nexportTo: ['.', other]");
        assert_error(
            "host: a\nexportTo: ['~']",
            "spec.exportTo[0]",
            "exportTo ~ (none) is not allowed for Istio configuration objects",
        );
        assert_error(
            "host: a\nexportTo: ['.', ns]",
            "spec.exportTo[1]",
            "duplicate entries in exportTo: . and current namespace ns",
        );
        assert_error(
            "host: a\nexportTo: ['*', a]",
            "spec.exportTo",
            "cannot have both public (*) and non-public exportTo values",
        );
        assert_error(
            "host: a\nexportTo: [Bad_ns]",
            "spec.exportTo[0]",
            "only .,*, or a valid DNS 1123 label is allowed as exportTo entry",
        );
    }

    #[test]
    fn export_to_with_workload_selector() {
        let sel = "host: a\nworkloadSelector: {matchLabels: {app: x}}\n";
        assert_valid(sel);
        assert_valid(&format!("{sel}exportTo: ['.']"));
        assert_valid(&format!("{sel}exportTo: [ns]"));
        assert_error(
            &format!("{sel}exportTo: ['*']"),
            "spec.exportTo",
            "destination rule with workload selector cannot have exportTo beyond current namespace",
        );
        assert_error(
            &format!("{sel}exportTo: [other]"),
            "spec.exportTo",
            "cannot have exportTo beyond current namespace",
        );
        assert_error(
            &format!("{sel}exportTo: ['.', other]"),
            "spec.exportTo",
            "destination rule with workload selector cannot have multiple entries in exportTo",
        );
    }

    #[test]
    fn workload_selector() {
        assert_valid("host: a\nworkloadSelector: {matchLabels: {app: x, version: v1}}");
        let empty = "host: a\nworkloadSelector: {}";
        assert!(dr(empty).is_valid());
        assert_warning(
            empty,
            "spec.workloadSelector",
            "workload selector specified without labels",
        );
        assert_error(
            "host: a\nworkloadSelector: {matchLabels: {app: 'x*'}}",
            "spec.workloadSelector.matchLabels[app]",
            "wildcard is not supported in selector: \"app=x*\"",
        );
        assert_error(
            "host: a\nworkloadSelector: {matchLabels: {'': x}}",
            "spec.workloadSelector.matchLabels[]",
            "empty key is not supported in selector: \"=x\"",
        );
    }

    #[test]
    fn rich_rule_is_valid() {
        assert_valid(
            r#"
host: reviews.prod.svc.cluster.local
exportTo: ["."]
workloadSelector:
  matchLabels: {app: ratings}
trafficPolicy:
  loadBalancer:
    consistentHash:
      httpCookie: {name: user, path: /, ttl: 0s}
      ringHash: {minimumRingSize: 2048}
    localityLbSetting:
      failover: [{from: us-east, to: eu-west}]
    warmup: {duration: 30s, minimumPercent: 10.0, aggression: 1.5}
  connectionPool:
    tcp: {maxConnections: 100, connectTimeout: 0.030s, idleTimeout: 0s}
    http: {http2MaxRequests: 1000, maxRetries: 3, idleTimeout: 300s}
  outlierDetection: {consecutive5xxErrors: 7, interval: 300s, baseEjectionTime: 900s, maxEjectionPercent: 50}
  tls: {mode: SIMPLE, credentialName: client-credential, subjectAltNames: [reviews.example.com]}
  portLevelSettings:
  - port: {number: 9080}
    loadBalancer:
      consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}
subsets:
- name: v1
  labels: {version: v1}
- name: v2
  labels: {version: v2}
  trafficPolicy: {loadBalancer: {consistentHash: {httpQueryParameterName: user}}}
"#,
        );
    }
}

//! Rules shared by several kinds: DNS names, wildcard hosts, labels, IPs and CIDRs,
//! durations, ports, exportTo, TLS settings.
//!
//! Character-level checks are written by hand rather than with regexes: they run for every
//! host of every resource, and the 10,000-ServiceEntry benchmark is dominated by them.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use crate::api::common::Duration;
use crate::diag::{FieldPath, Report};

/// Istio's DNS-1123 label: `[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?`, at most 63 characters.
/// (Istio's `labels.IsDNS1123Label` accepts upper case, unlike Kubernetes'.)
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// Kubernetes' lowercase DNS-1123 label (namespaces, exportTo entries).
pub fn is_dns1123_label_lower(s: &str) -> bool {
    is_dns1123_label(s) && !s.bytes().any(|c| c.is_ascii_uppercase())
}

/// Kubernetes' lowercase DNS-1123 subdomain (object names): at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label_lower)
}

/// Length and emptiness checks common to FQDNs and wildcard domains.
fn dns1123_preconditions(name: &str) -> Result<(), String> {
    if name.len() > 255 {
        return Err(format!("domain name \"{name}\" too long (max 255)"));
    }
    if name.is_empty() {
        return Err("empty domain name not allowed".to_string());
    }
    Ok(())
}

/// Checks the labels of `part` (the whole of `domain`, or what follows its wildcard
/// label): each a DNS-1123 label, the last one may be empty (a trailing dot), and the
/// top-level label may not be all digits. Messages name the whole `domain`.
fn dns1123_labels(domain: &str, part: &str) -> Result<(), String> {
    let n = part.split('.').count();
    let tld = part.rsplit('.').next().unwrap_or("");
    if !tld.is_empty() && tld.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "domain name \"{domain}\" invalid (top level domain \"{tld}\" cannot be all-numeric)"
        ));
    }
    for (i, label) in part.split('.').enumerate() {
        if i == n - 1 && label.is_empty() {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "domain name \"{domain}\" invalid (label \"{label}\" invalid)"
            ));
        }
    }
    Ok(())
}

/// A fully qualified domain name without wildcards.
pub fn validate_fqdn(fqdn: &str) -> Result<(), String> {
    dns1123_preconditions(fqdn)?;
    dns1123_labels(fqdn, fqdn)
}

/// A wildcard first label: `*`, or a DNS-1123 label optionally prefixed by `*` or `*-`.
fn is_wildcard_prefix(label: &str) -> bool {
    if label == "*" {
        return true;
    }
    let rest = label
        .strip_prefix("*-")
        .or_else(|| label.strip_prefix('*'))
        .unwrap_or(label);
    is_dns1123_label(rest)
}

/// A host that may start with a wildcard label (`*.foo.com`, `*foo.com`, `foo.com`).
pub fn validate_wildcard_domain(domain: &str) -> Result<(), String> {
    dns1123_preconditions(domain)?;
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
    if !is_wildcard_prefix(first) {
        return Err(format!(
            "domain name \"{domain}\" invalid (label \"{first}\" invalid)"
        ));
    }
    match rest {
        None => Ok(()),
        // Istio reports the rest of the name here, not the whole domain.
        Some(r) => dns1123_labels(r, r),
    }
}

/// A partial wildcard: contains `*` but is neither `*` nor starts with `*.`.
pub fn is_partial_wildcard(host: &str) -> bool {
    host.contains('*') && host != "*" && !host.starts_with("*.")
}

/// Parses an IP address (no brackets, no port).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// Parses a CIDR block `addr/len` with the length in range for the family.
pub fn parse_cidr(s: &str) -> Option<ipnet::IpNet> {
    s.parse().ok()
}

/// An address that is an IP or, with exactly one `/`, a CIDR block.
pub fn validate_ip_or_cidr(s: &str) -> Result<(), String> {
    if s.matches('/').count() == 1 {
        parse_cidr(s)
            .map(|_| ())
            .ok_or_else(|| format!("{s} is not a valid CIDR block"))
    } else {
        parse_ip(s)
            .map(|_| ())
            .ok_or_else(|| format!("{s} is not a valid IP"))
    }
}

/// A port number in 1..=65535.
pub fn validate_port(port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port number {port} must be in the range 1..65535"))
    }
}

/// Istio's duration rule: at least 1ms and a whole number of milliseconds.
pub fn validate_duration(d: &Duration) -> Result<(), String> {
    let nanos = d.as_nanos();
    if nanos < 1_000_000 {
        return Err("duration must be greater than 1ms".to_string());
    }
    if nanos % 1_000_000 != 0 {
        return Err("only durations to ms precision are supported".to_string());
    }
    Ok(())
}

/// Checks an optional duration field, reporting at `path`.
pub fn check_duration(d: Option<&Duration>, path: &FieldPath, report: &mut Report) {
    if let Some(d) = d
        && let Err(e) = validate_duration(d)
    {
        report.error(path, e);
    }
}

/// A Kubernetes label key: `[prefix/]name`, name a qualified name of at most 63
/// characters, prefix a DNS-1123 subdomain of at most 253.
pub fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && (p.is_empty() || !is_dns1123_subdomain(p))
    {
        return false;
    }
    is_qualified_name(name)
}

fn is_qualified_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A Kubernetes label value: empty, or a qualified name.
pub fn is_label_value(v: &str) -> bool {
    v.is_empty() || is_qualified_name(v)
}

/// Validates a label map (`invalid tag key`, `invalid tag value`).
pub fn check_labels(labels: &BTreeMap<String, String>, path: &FieldPath, report: &mut Report) {
    for (k, v) in labels {
        if !is_label_key(k) {
            report.error(path.key(k), format!("invalid tag key: {k:?}"));
        }
        if !is_label_value(v) {
            report.error(path.key(k), format!("invalid tag value: {v:?}"));
        }
    }
}

/// Validates a workload selector's labels: no empty keys and no wildcards.
/// Returns false when Istio would stop validating the resource here.
pub fn check_selector_labels(
    labels: &BTreeMap<String, String>,
    path: &FieldPath,
    report: &mut Report,
) -> bool {
    let mut ok = true;
    for (k, v) in labels {
        if k.is_empty() {
            report.error(
                path.key(k),
                format!("empty key is not supported in selector: \"={v}\""),
            );
            ok = false;
        } else if k.contains('*') || v.contains('*') {
            report.error(
                path.key(k),
                format!("wildcard is not supported in selector: \"{k}={v}\""),
            );
            ok = false;
        }
    }
    ok
}

/// Which kind of resource an exportTo list belongs to (`~` is only for ServiceEntry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportToOwner {
    /// A ServiceEntry: `~` (nobody) is allowed, alone.
    ServiceEntry,
    /// A VirtualService or DestinationRule.
    Other,
}

/// Validates an exportTo list per Istio's shared rules.
pub fn check_export_to(
    export_to: &[String],
    namespace: &str,
    owner: ExportToOwner,
    path: &FieldPath,
    report: &mut Report,
) {
    if export_to.is_empty() {
        return;
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut dot_or_own = false;
    for (i, e) in export_to.iter().enumerate() {
        let p = path.index(i);
        let e = e.as_str();
        if !seen.insert(e) {
            report.error(&p, format!("duplicate entries in exportTo for entry {e}"));
            continue;
        }
        if e == "." || e == namespace {
            if dot_or_own {
                report.error(
                    &p,
                    format!("duplicate entries in exportTo: . and current namespace {namespace}"),
                );
            }
            dot_or_own = true;
        }
        match e {
            "~" => {
                if owner != ExportToOwner::ServiceEntry {
                    report.error(
                        &p,
                        "exportTo ~ (none) is not allowed for Istio configuration objects",
                    );
                }
            }
            "." | "*" => {}
            _ if is_dns1123_label_lower(e) => {}
            _ => report.error(
                &p,
                "only .,*, or a valid DNS 1123 label is allowed as exportTo entry",
            ),
        }
    }
    if seen.contains("*") && seen.len() > 1 {
        report.error(
            path,
            "cannot have both public (*) and non-public exportTo values for a resource",
        );
    }
    if owner == ExportToOwner::ServiceEntry && seen.contains("~") && seen.len() > 1 {
        report.error(
            path,
            "cannot export service entry to no one (~) and someone",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_domains() {
        for ok in [
            "foo.com",
            "*.foo.com",
            "*",
            "*foo.com",
            "*-foo.com",
            "foo",
            "istio.io.",
            "API.Example.com",
            "a-b.c",
        ] {
            assert_eq!(validate_wildcard_domain(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("", "empty domain name not allowed"),
            ("foo.*.com", "label \"*\" invalid"),
            ("foo..com", "label \"\" invalid"),
            ("foo.123", "top level domain \"123\" cannot be all-numeric"),
            ("-foo.com", "label \"-foo\" invalid"),
            ("fo_o.com", "label \"fo_o\" invalid"),
        ];
        for (bad, msg) in cases {
            let e = validate_wildcard_domain(bad).expect_err(bad);
            assert!(e.contains(msg), "{bad}: {e}");
        }
        let long = format!("{}.com", "a".repeat(260));
        assert!(
            validate_wildcard_domain(&long)
                .expect_err("long")
                .contains("too long (max 255)")
        );
    }

    #[test]
    fn fqdns() {
        assert!(validate_fqdn("a.b.c").is_ok());
        assert!(validate_fqdn("*.b.c").is_err());
        assert!(validate_fqdn("1.2.3.4").is_err());
    }

    #[test]
    fn partial_wildcards() {
        assert!(is_partial_wildcard("*x.com"));
        assert!(is_partial_wildcard("a.*.com"));
        assert!(!is_partial_wildcard("*.x.com"));
        assert!(!is_partial_wildcard("*"));
        assert!(!is_partial_wildcard("x.com"));
    }

    #[test]
    fn ips_and_cidrs() {
        assert!(validate_ip_or_cidr("10.0.0.1").is_ok());
        assert!(validate_ip_or_cidr("10.0.0.0/8").is_ok());
        assert!(validate_ip_or_cidr("2001:db8::/32").is_ok());
        assert_eq!(
            validate_ip_or_cidr("10.0.0.0/33"),
            Err("10.0.0.0/33 is not a valid CIDR block".into())
        );
        assert_eq!(
            validate_ip_or_cidr("foo"),
            Err("foo is not a valid IP".into())
        );
        assert_eq!(
            validate_ip_or_cidr("1/2/3"),
            Err("1/2/3 is not a valid IP".into())
        );
    }

    #[test]
    fn labels() {
        assert!(is_label_key("app"));
        assert!(is_label_key("app.kubernetes.io/name"));
        assert!(!is_label_key("/name"));
        assert!(!is_label_key("-bad"));
        assert!(is_label_value(""));
        assert!(is_label_value("v1.2_3"));
        assert!(!is_label_value("a b"));
    }

    #[test]
    fn export_to_rules() {
        let p = FieldPath::root("spec").field("exportTo");
        let run = |v: &[&str], owner| {
            let mut r = Report::default();
            let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            check_export_to(&v, "ns", owner, &p, &mut r);
            r
        };
        assert!(run(&["*"], ExportToOwner::Other).is_valid());
        assert!(run(&[".", "other"], ExportToOwner::Other).is_valid());
        assert!(run(&["~"], ExportToOwner::ServiceEntry).is_valid());
        assert!(run(&["~"], ExportToOwner::Other).has_error("exportTo ~ (none) is not allowed"));
        assert!(
            run(&["~", "a"], ExportToOwner::ServiceEntry)
                .has_error("cannot export service entry to no one")
        );
        assert!(run(&["*", "a"], ExportToOwner::Other).has_error("cannot have both public (*)"));
        assert!(
            run(&["a", "a"], ExportToOwner::Other)
                .has_error("duplicate entries in exportTo for entry a")
        );
        assert!(
            run(&[".", "ns"], ExportToOwner::Other)
                .has_error("duplicate entries in exportTo: . and current namespace ns")
        );
        assert!(
            run(&["Bad_ns"], ExportToOwner::Other).has_error("only .,*, or a valid DNS 1123 label")
        );
    }

    #[test]
    fn durations() {
        assert!(validate_duration(&Duration::from_millis(1)).is_ok());
        assert_eq!(
            validate_duration(&Duration::from_millis(0)),
            Err("duration must be greater than 1ms".into())
        );
    }
}

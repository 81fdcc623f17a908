//! Sidecar validation: Istio's Go checks (`ValidateSidecar` and its helpers).
//!
//! Istio stops early in two places, and so does this: a workload selector with an empty
//! key or a wildcard, and an empty configuration, are the only problems reported.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::api;
use crate::api::{CaptureMode, OutboundTrafficPolicyMode, Protocol, ServerTlsMode};
use crate::diag::{FieldPath, Report};
use crate::validate::Context;
use crate::validate::common::{
    is_dns1123_label, is_partial_wildcard, parse_ip, validate_fqdn, validate_port,
    validate_wildcard_domain,
};
use crate::validate::destination_rule::{
    check_selector_labels, validate_connection_pool, validate_subset_name,
};

const UNIX_PREFIX: &str = "unix://";

/// Validates a Sidecar spec.
pub fn validate(spec: &api::Sidecar, ctx: &Context<'_>, report: &mut Report) {
    let root = FieldPath::root("spec");

    let mut empty_selector = false;
    if let Some(sel) = &spec.workload_selector {
        let sp = root.field("workloadSelector");
        if check_selector_labels(&sel.labels, &sp.field("labels"), report) {
            return;
        }
        empty_selector = sel.labels.is_empty();
    }

    if spec.egress.is_empty()
        && spec.ingress.is_empty()
        && spec.outbound_traffic_policy.is_none()
        && spec.inbound_connection_pool.is_none()
    {
        report.error(&root, "sidecar: empty configuration provided");
        return;
    }

    if empty_selector {
        report.warn(
            root.field("workloadSelector"),
            "sidecar: workload selector specified without labels, will be applied to all services in namespace",
        );
    }

    let mut ports: HashSet<u32> = HashSet::new();
    for (i, ing) in spec.ingress.iter().enumerate() {
        validate_ingress(ing, &root.field("ingress").index(i), &mut ports, report);
    }

    if let Some(cp) = &spec.inbound_connection_pool {
        validate_connection_pool(cp, &root.field("inboundConnectionPool"), report);
    }

    validate_egress(&spec.egress, ctx.namespace, &root.field("egress"), report);

    if let Some(otp) = &spec.outbound_traffic_policy {
        validate_outbound_traffic_policy(otp, &root.field("outboundTrafficPolicy"), report);
    }
}

/// Istio's `ValidatePortName`.
fn check_port_name(name: &str, path: &FieldPath, report: &mut Report) {
    if !name.is_empty() && !is_dns1123_label(name) {
        report.error(path, format!("invalid port name: {name}"));
    }
}

/// Istio's `ValidateProtocol`: empty means sniffing and is fine.
fn check_protocol(protocol: &str, path: &FieldPath, report: &mut Report) {
    if !protocol.is_empty() && Protocol::parse(protocol).is_unsupported() {
        report.error(path, format!("unsupported protocol: {protocol}"));
    }
}

/// Istio's `ValidateIPAddress` for a non-empty `bind`.
fn check_bind_ip(bind: &str, path: &FieldPath, report: &mut Report) {
    if !bind.is_empty() && parse_ip(bind).is_none() {
        report.error(path, format!("{bind} is not a valid IP"));
    }
}

/// Istio's `ValidateUnixAddress` (the part after `unix://`).
fn validate_unix_address(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("unix address must not be empty".to_string());
    }
    if addr.starts_with('@') {
        return Ok(());
    }
    if !addr.starts_with('/') || addr.ends_with('/') {
        return Err(format!("{addr} is not an absolute path to a file"));
    }
    Ok(())
}

fn validate_ingress(
    ing: &api::IstioIngressListener,
    path: &FieldPath,
    ports: &mut HashSet<u32>,
    report: &mut Report,
) {
    let Some(port) = &ing.port else {
        report.error(
            path.field("port"),
            "sidecar: port is required for ingress listeners",
        );
        return;
    };
    let pp = path.field("port");
    if port.target_port > 0 {
        report.error(
            pp.field("targetPort"),
            "targetPort has no impact on Sidecars",
        );
    }
    check_port_name(&port.name, &pp.field("name"), report);
    check_protocol(&port.protocol, &pp.field("protocol"), report);
    if let Err(e) = validate_port(port.number) {
        report.error(pp.field("number"), e);
    }
    check_bind_ip(&ing.bind, &path.field("bind"), report);
    if !ports.insert(port.number) {
        report.error(
            pp.field("number"),
            "sidecar: ports on IP bound listeners must be unique",
        );
    }

    if !ing.default_endpoint.is_empty() {
        check_default_endpoint(
            &ing.default_endpoint,
            &path.field("defaultEndpoint"),
            report,
        );
    }

    if let Some(tls) = &ing.tls {
        let tp = path.field("tls");
        if !tls.subject_alt_names.is_empty() {
            report.error(
                tp.field("subjectAltNames"),
                "sidecar: subjectAltNames is not supported in ingress tls",
            );
        }
        if tls.https_redirect {
            report.error(
                tp.field("httpsRedirect"),
                "sidecar: httpsRedirect is not supported",
            );
        }
        if !tls.credential_name.is_empty() {
            report.error(
                tp.field("credentialName"),
                "sidecar: credentialName is not currently supported",
            );
        }
        if !tls.credential_names.is_empty() {
            report.error(
                tp.field("credentialNames"),
                "sidecar: credentialNames is not currently supported",
            );
        }
        if !tls.tls_certificates.is_empty() {
            report.error(
                tp.field("tlsCertificates"),
                "sidecar: tls_certificates is not currently supported",
            );
        }
        if matches!(
            tls.mode,
            ServerTlsMode::IstioMutual | ServerTlsMode::AutoPassthrough
        ) {
            report.error(
                tp.field("mode"),
                format!(
                    "configuration is invalid: cannot set mode to {} in sidecar ingress tls",
                    tls.mode.as_str()
                ),
            );
        }
        if !port.parsed_protocol().is_tls() {
            report.error(
                &tp,
                "server cannot have TLS settings for non HTTPS/TLS ports",
            );
        }
        validate_server_tls(tls, &tp, report);
    }

    if let Some(cp) = &ing.connection_pool {
        let cpp = path.field("connectionPool");
        validate_connection_pool(cp, &cpp, report);
        if cp.http.is_some() && !port.parsed_protocol().is_http() {
            report.warn(
                cpp.field("http"),
                format!(
                    "sidecar: HTTP connection pool settings are configured for port {} ({:?}) but its protocol is not HTTP ({}); only TCP settings will apply",
                    port.number, port.name, port.protocol
                ),
            );
        }
    }
}

/// `defaultEndpoint`: `unix://path`, or `host:port` with host one of the local addresses.
fn check_default_endpoint(ep: &str, path: &FieldPath, report: &mut Report) {
    if let Some(addr) = ep.strip_prefix(UNIX_PREFIX) {
        if let Err(e) = validate_unix_address(addr) {
            report.error(path, e);
        }
        return;
    }
    let (host, port) = match go_split_host_port(ep) {
        Ok(hp) => hp,
        Err(e) => {
            report.error(path, e);
            ("", "")
        }
    };
    if !matches!(host, "" | "127.0.0.1" | "0.0.0.0" | "::1" | "::") {
        report.error(
            path,
            "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset",
        );
    }
    match go_atoi(port) {
        Err(e) => report.error(
            path,
            format!("sidecar: defaultEndpoint port ({port}) is not a number: {e}"),
        ),
        Ok(n) if !(1..=65535).contains(&n) => report.error(
            path,
            format!("port number {n} must be in the range 1..65535"),
        ),
        Ok(_) => {}
    }
}

/// Go's `net.SplitHostPort`, with its error texts.
fn go_split_host_port(hostport: &str) -> Result<(&str, &str), String> {
    let err = |why: &str| format!("address {hostport}: {why}");
    let Some(i) = hostport.rfind(':') else {
        return Err(err("missing port in address"));
    };
    let (host, j, k);
    if hostport.starts_with('[') {
        let Some(end) = hostport.find(']') else {
            return Err(err("missing ']' in address"));
        };
        if end + 1 == hostport.len() {
            return Err(err("missing port in address"));
        } else if end + 1 != i {
            return Err(if hostport.as_bytes().get(end + 1) == Some(&b':') {
                err("too many colons in address")
            } else {
                err("missing port in address")
            });
        }
        host = hostport.get(1..end).unwrap_or("");
        j = 1;
        k = end + 1;
    } else {
        host = hostport.get(..i).unwrap_or("");
        if host.contains(':') {
            return Err(err("too many colons in address"));
        }
        j = 0;
        k = 0;
    }
    if hostport.get(j..).is_some_and(|s| s.contains('[')) {
        return Err(err("unexpected '[' in address"));
    }
    if hostport.get(k..).is_some_and(|s| s.contains(']')) {
        return Err(err("unexpected ']' in address"));
    }
    Ok((host, hostport.get(i + 1..).unwrap_or("")))
}

/// Go's `strconv.Atoi`, with its error texts.
fn go_atoi(s: &str) -> Result<i64, String> {
    let digits = s
        .strip_prefix('-')
        .or_else(|| s.strip_prefix('+'))
        .unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {s:?}: value out of range"))
}

/// Cipher suites Istio accepts (`pkg/config/security`).
const VALID_CIPHER_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

fn is_valid_cipher_suite(cs: &str) -> bool {
    if cs.is_empty() || cs == "ALL" {
        return true;
    }
    // Expressions such as `-X` or `+X` are passed through unchecked.
    if !cs.chars().next().is_some_and(char::is_alphanumeric) {
        return true;
    }
    VALID_CIPHER_SUITES.contains(&cs)
}

/// Go's `%v` of a sorted string list: `[a b c]`.
fn go_list(items: &BTreeSet<&str>) -> String {
    format!("[{}]", items.iter().copied().collect::<Vec<_>>().join(" "))
}

/// Istio's `validateTLSOptions` for `ServerTLSSettings`.
fn validate_server_tls(tls: &api::ServerTlsSettings, path: &FieldPath, report: &mut Report) {
    use ServerTlsMode::{
        AutoPassthrough, IstioMutual, Mutual, OptionalMutual, Passthrough, Simple,
    };
    use api::TlsProtocol::{TlsV1_0, TlsV1_1};

    if matches!(tls.min_protocol_version, TlsV1_0 | TlsV1_1) && tls.cipher_suites.is_empty() {
        report.warn(
            path.field("minProtocolVersion"),
            "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible ciphers.",
        );
    }
    let mut invalid = BTreeSet::new();
    let mut valid = HashSet::new();
    let mut duplicate = BTreeSet::new();
    for cs in &tls.cipher_suites {
        if !is_valid_cipher_suite(cs) {
            invalid.insert(cs.as_str());
        } else if !valid.insert(cs.as_str()) {
            duplicate.insert(cs.as_str());
        }
    }
    if !invalid.is_empty() {
        report.warn(
            path.field("cipherSuites"),
            format!("ignoring invalid cipher suites: {}", go_list(&invalid)),
        );
    }
    if !duplicate.is_empty() {
        report.warn(
            path.field("cipherSuites"),
            format!("ignoring duplicate cipher suites: {}", go_list(&duplicate)),
        );
    }

    if tls.mode == IstioMutual {
        let checks = [
            (!tls.server_certificate.is_empty(), "server certificate"),
            (!tls.private_key.is_empty(), "private key"),
            (!tls.ca_certificates.is_empty(), "CA bundle"),
            (!tls.tls_certificates.is_empty(), "tlsCertificates"),
            (!tls.credential_name.is_empty(), "credentialName"),
            (!tls.credential_names.is_empty(), "credentialNames"),
        ];
        for (set, what) in checks {
            if set {
                report.error(
                    path,
                    format!("ISTIO_MUTUAL TLS cannot have associated {what}"),
                );
            }
        }
        return;
    }

    if matches!(tls.mode, Passthrough | AutoPassthrough)
        && (!tls.ca_crl.is_empty()
            || !tls.server_certificate.is_empty()
            || !tls.private_key.is_empty()
            || !tls.ca_certificates.is_empty()
            || !tls.tls_certificates.is_empty()
            || !tls.credential_name.is_empty()
            || !tls.credential_names.is_empty())
    {
        report.warn(
            path,
            format!(
                "{} mode does not use certificates, they will be ignored",
                tls.mode.as_str()
            ),
        );
    }

    let sources = [
        !tls.server_certificate.is_empty() && !tls.private_key.is_empty(),
        !tls.credential_name.is_empty(),
        !tls.credential_names.is_empty(),
        !tls.tls_certificates.is_empty(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if sources > 1 {
        report.error(
            path,
            "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified",
        );
    }

    let terminating = matches!(tls.mode, Simple | Mutual | OptionalMutual);
    if terminating && (!tls.credential_name.is_empty() || !tls.credential_names.is_empty()) {
        return;
    }
    if terminating {
        let prefix = if tls.mode == Simple {
            "SIMPLE TLS"
        } else {
            "MUTUAL TLS"
        };
        if tls.mode != Simple && tls.ca_certificates.is_empty() {
            report.error(
                path.field("caCertificates"),
                format!("{prefix} requires a client CA bundle"),
            );
        }
        if tls.tls_certificates.len() > 2 {
            report.warn(
                path.field("tlsCertificates"),
                format!("{prefix} can support up to 2 server certificates"),
            );
        }
        let certs: Vec<(&str, &str, FieldPath)> = if tls.tls_certificates.is_empty() {
            vec![(
                tls.server_certificate.as_str(),
                tls.private_key.as_str(),
                path.clone(),
            )]
        } else {
            tls.tls_certificates
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    (
                        c.server_certificate.as_str(),
                        c.private_key.as_str(),
                        path.field("tlsCertificates").index(i),
                    )
                })
                .collect()
        };
        for (cert, key, p) in certs {
            if cert.is_empty() {
                report.error(
                    p.field("serverCertificate"),
                    format!("{prefix} requires a server certificate"),
                );
            }
            if key.is_empty() {
                report.error(
                    p.field("privateKey"),
                    format!("{prefix} requires a private key"),
                );
            }
        }
    }
    if !tls.ca_crl.is_empty() {
        if !tls.credential_name.is_empty() {
            report.error(
                path.field("caCrl"),
                "CRL is not supported with credentialName. CRL has to be specified in the credential",
            );
        }
        if tls.mode == Simple {
            report.error(path.field("caCrl"), "CRL is not supported with SIMPLE TLS");
        }
    }
}

fn validate_egress(
    egress: &[api::IstioEgressListener],
    namespace: &str,
    path: &FieldPath,
    report: &mut Report,
) {
    let mut ports: HashSet<u32> = HashSet::new();
    let mut uds: HashSet<&str> = HashSet::new();
    let portless = egress.iter().filter(|e| e.port.is_none()).count();
    let mut reported_portless = false;
    for (i, eg) in egress.iter().enumerate() {
        let p = path.index(i);
        match &eg.port {
            None => {
                // Only the last listener may omit its port.
                if i + 1 != egress.len() {
                    report.error(
                        &p,
                        "sidecar: the egress listener with empty port should be the last listener in the list",
                    );
                    if portless > 1 && !reported_portless {
                        report.error(
                            &p,
                            "sidecar: egress can have only one listener with empty port",
                        );
                        reported_portless = true;
                    }
                }
            }
            Some(port) => {
                let pp = p.field("port");
                if port.target_port > 0 {
                    report.error(
                        pp.field("targetPort"),
                        "targetPort has no impact on Sidecars",
                    );
                }
                check_port_name(&port.name, &pp.field("name"), report);
                check_protocol(&port.protocol, &pp.field("protocol"), report);
                if port.number == 0 {
                    match eg.bind.strip_prefix(UNIX_PREFIX) {
                        None => report.error(
                            p.field("bind"),
                            "sidecar: ports with 0 value must have a unix domain socket bind address",
                        ),
                        Some(addr) => {
                            if let Err(e) = validate_unix_address(addr) {
                                report.error(p.field("bind"), e);
                            }
                        }
                    }
                    if !matches!(eg.capture_mode, CaptureMode::Default | CaptureMode::None) {
                        report.error(
                            p.field("captureMode"),
                            "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
                        );
                    }
                    if !uds.insert(eg.bind.as_str()) {
                        report.error(
                            p.field("bind"),
                            "sidecar: unix domain socket values for listeners must be unique",
                        );
                    }
                } else {
                    if let Err(e) = validate_port(port.number) {
                        report.error(pp.field("number"), e);
                    }
                    check_bind_ip(&eg.bind, &p.field("bind"), report);
                    if !ports.insert(port.number) {
                        report.error(
                            pp.field("number"),
                            "sidecar: ports on IP bound listeners must be unique",
                        );
                    }
                }
            }
        }
        validate_egress_hosts(&eg.hosts, namespace, &p.field("hosts"), report);
    }
}

fn validate_egress_hosts(hosts: &[String], namespace: &str, path: &FieldPath, report: &mut Report) {
    if hosts.is_empty() {
        report.error(
            path,
            "sidecar: egress listener must contain at least one host",
        );
        return;
    }
    // namespace -> imported dnsNames, to warn about duplicates.
    let mut seen: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (j, host) in hosts.iter().enumerate() {
        let hp = path.index(j);
        if let Some((ns, svc)) = host.split_once('/') {
            let ns = if ns == "." { namespace } else { ns };
            let svcs = seen.entry(ns).or_default();
            let dup = if svc == "*" {
                !svcs.is_empty()
            } else {
                svcs.contains(svc) || svcs.contains("*")
            };
            if dup {
                report.warn(&hp, format!("duplicated egress host: {host}"));
            }
            svcs.insert(svc);
        }
        for e in namespace_slash_host_errors(host) {
            report.error(&hp, e);
        }
    }
    if seen.get("*").is_some_and(|s| s.contains("*")) && seen.len() != 1 {
        report.warn(
            path,
            "`*/*` host select all resources, no other hosts can be added",
        );
    }
}

/// Istio's `ValidateNamespaceSlashWildcardHostname` for sidecars: `ns/dnsName`, where `ns`
/// is `*`, `.`, `~`, a DNS-1123 label, or `~label` (exclusion), and `dnsName` is `*` or a
/// dotted name that may start with a full wildcard label.
fn namespace_slash_host_errors(host: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let Some((ns, name)) = host.split_once('/') else {
        errs.push("host must be of form namespace/dnsName".to_string());
        return errs;
    };
    if ns.is_empty() || name.is_empty() {
        errs.push("config namespace and dnsName in host entry cannot be empty".to_string());
    }
    let ns_ok = matches!(ns, "*" | "." | "~")
        || is_dns1123_label(ns)
        || ns.strip_prefix('~').is_some_and(is_dns1123_label);
    if !ns_ok {
        errs.push(format!("invalid namespace value {ns:?} in sidecar"));
    }
    if name != "*" && !name.contains('.') {
        errs.push("short names (non FQDN) are not allowed".to_string());
    }
    if let Err(e) = validate_wildcard_domain(name) {
        errs.push(e);
    }
    if is_partial_wildcard(name) {
        errs.push(format!("partial wildcard {name:?} not allowed"));
    }
    errs
}

fn validate_outbound_traffic_policy(
    otp: &api::OutboundTrafficPolicy,
    path: &FieldPath,
    report: &mut Report,
) {
    if otp.mode == OutboundTrafficPolicyMode::AllowAnyDynamicDns {
        report.error(
            path.field("mode"),
            "sidecar: ALLOW_ANY_DYNAMIC_DNS outbound_traffic_policy mode is only supported in the mesh config, not in a Sidecar",
        );
    }
    let Some(proxy) = &otp.egress_proxy else {
        return;
    };
    let pp = path.field("egressProxy");
    if otp.mode != OutboundTrafficPolicyMode::AllowAny {
        report.error(
            &pp,
            "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
        );
        return;
    }
    let fqdn_err = validate_fqdn(&proxy.host).err();
    if let Some(e) = &fqdn_err {
        report.error(pp.field("host"), e.clone());
    }
    let Some(port) = &proxy.port else {
        report.error(
            pp.field("port"),
            "sidecar: egress_proxy port must be non-nil",
        );
        return;
    };
    // Istio's `validateDestination`. Its wildcard-domain check only finds what the FQDN
    // check above already reported, so only `*` is left to report here.
    if proxy.host == "*" {
        report.error(pp.field("host"), "invalid destination host *");
    } else if fqdn_err.is_none()
        && let Err(e) = validate_wildcard_domain(&proxy.host)
    {
        report.error(pp.field("host"), e);
    }
    if !proxy.subset.is_empty()
        && let Err(e) = validate_subset_name(&proxy.subset)
    {
        report.error(pp.field("subset"), e);
    }
    if let Err(e) = validate_port(port.number) {
        report.error(pp.field("port").field("number"), e);
    }
}

#[cfg(test)]
mod tests {
    use crate::api::MeshConfig;
    use crate::decode::{Format, Outcome, decode_str};
    use crate::diag::Report;

    /// Decodes a Sidecar whose `spec` is `spec_yaml` (in namespace `ns`) and validates it.
    fn sc(spec_yaml: &str) -> Report {
        let mut text = String::from(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s, namespace: ns}\nspec:\n",
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
        let r = sc(spec);
        assert!(r.is_valid(), "expected valid:\n{spec}\n{:?}", r.errors);
    }

    fn assert_error(spec: &str, path: &str, msg: &str) {
        let r = sc(spec);
        assert!(
            r.errors
                .iter()
                .any(|i| i.path == path && i.message.contains(msg)),
            "expected error {path}: {msg}\n{spec}\ngot {:?}",
            r.errors
        );
    }

    fn assert_warning(spec: &str, path: &str, msg: &str) {
        let r = sc(spec);
        assert!(
            r.warnings
                .iter()
                .any(|i| i.path == path && i.message.contains(msg)),
            "expected warning {path}: {msg}\n{spec}\ngot {:?}",
            r.warnings
        );
    }

    /// An egress listener importing `host`.
    fn egress_host(host: &str) -> String {
        format!("egress:\n- hosts: ['{host}']")
    }

    #[test]
    fn empty_configuration() {
        assert_error("{}", "spec", "sidecar: empty configuration provided");
        // Istio returns only that error (the selector warning is dropped).
        let r = sc("workloadSelector: {}");
        assert_eq!(r.errors.len(), 1);
        assert!(r.warnings.is_empty());
        assert_valid("outboundTrafficPolicy: {mode: REGISTRY_ONLY}");
        assert_valid("inboundConnectionPool: {tcp: {maxConnections: 10}}");
        assert_valid("egress:\n- hosts: ['./*']");
    }

    #[test]
    fn workload_selector() {
        assert_valid("workloadSelector: {labels: {app: a}}\negress:\n- hosts: ['*/*']");
        let empty = "workloadSelector: {}\negress:\n- hosts: ['*/*']";
        assert!(sc(empty).is_valid());
        assert_warning(
            empty,
            "spec.workloadSelector",
            "sidecar: workload selector specified without labels, will be applied to all services in namespace",
        );
        // Selector errors stop validation: the empty egress hosts are not reported.
        let bad = "workloadSelector: {labels: {app: 'a*'}}\negress:\n- hosts: []";
        assert_error(
            bad,
            "spec.workloadSelector.labels[app]",
            "wildcard is not supported in selector: \"app=a*\"",
        );
        assert_eq!(sc(bad).errors.len(), 1);
        assert_error(
            "workloadSelector: {labels: {'': a}}\negress:\n- hosts: ['*/*']",
            "spec.workloadSelector.labels[]",
            "empty key is not supported in selector",
        );
    }

    #[test]
    fn egress_hosts_format() {
        for ok in [
            "*/*",
            "./*",
            "ns1/*",
            "ns1/foo.example.com",
            "*/*.example.com",
            "~/*",
            "~kube-system/*",
            "istio-system/*.svc.cluster.local",
        ] {
            assert_valid(&egress_host(ok));
        }
        let p = "spec.egress[0].hosts[0]";
        let cases = [
            ("foo.com", "host must be of form namespace/dnsName"),
            (
                "/foo.com",
                "config namespace and dnsName in host entry cannot be empty",
            ),
            (
                "ns/",
                "config namespace and dnsName in host entry cannot be empty",
            ),
            (
                "bad_ns/foo.com",
                "invalid namespace value \"bad_ns\" in sidecar",
            ),
            (
                "~bad_ns/foo.com",
                "invalid namespace value \"~bad_ns\" in sidecar",
            ),
            ("ns/foo", "short names (non FQDN) are not allowed"),
            ("ns/foo.*.com", "label \"*\" invalid"),
            ("ns/*foo.com", "partial wildcard \"*foo.com\" not allowed"),
            ("ns/1.2.3.4", "cannot be all-numeric"),
        ];
        for (host, msg) in cases {
            assert_error(&egress_host(host), p, msg);
        }
        assert_error(
            "egress:\n- port: {number: 80}",
            "spec.egress[0].hosts",
            "sidecar: egress listener must contain at least one host",
        );
    }

    #[test]
    fn egress_duplicate_hosts_warn() {
        let dup = "egress:\n- hosts: ['ns1/a.com', 'ns1/a.com']";
        assert!(sc(dup).is_valid());
        assert_warning(
            dup,
            "spec.egress[0].hosts[1]",
            "duplicated egress host: ns1/a.com",
        );
        assert_warning(
            "egress:\n- hosts: ['ns/*', './a.com']",
            "spec.egress[0].hosts[1]",
            "duplicated egress host: ./a.com",
        );
        assert_warning(
            "egress:\n- hosts: ['ns1/a.com', 'ns1/*']",
            "spec.egress[0].hosts[1]",
            "duplicated egress host: ns1/*",
        );
        assert_warning(
            "egress:\n- hosts: ['*/*', 'ns1/a.com']",
            "spec.egress[0].hosts",
            "`*/*` host select all resources, no other hosts can be added",
        );
        let r = sc("egress:\n- hosts: ['ns1/a.com', 'ns2/a.com', 'ns1/b.com']");
        assert!(r.is_valid() && r.warnings.is_empty(), "{r:?}");
    }

    #[test]
    fn egress_port_placement() {
        assert_valid(
            "egress:\n- port: {number: 80, protocol: HTTP, name: http}\n  hosts: ['*/*']\n- hosts: ['./*']",
        );
        assert_error(
            "egress:\n- hosts: ['./*']\n- port: {number: 80}\n  hosts: ['*/*']",
            "spec.egress[0]",
            "sidecar: the egress listener with empty port should be the last listener in the list",
        );
        assert_error(
            "egress:\n- hosts: ['./*']\n- hosts: ['*/*']",
            "spec.egress[0]",
            "sidecar: egress can have only one listener with empty port",
        );
        assert_error(
            "egress:\n- port: {number: 80}\n  hosts: ['*/*']\n- port: {number: 80}\n  hosts: ['*/*']",
            "spec.egress[1].port.number",
            "sidecar: ports on IP bound listeners must be unique",
        );
    }

    #[test]
    fn egress_port_bind_capture_mode() {
        assert_valid(
            "egress:\n- port: {number: 3306, protocol: MYSQL, name: mysql}\n  bind: 127.0.0.1\n  captureMode: IPTABLES\n  hosts: ['*/mysql.foo.com']",
        );
        assert_valid(
            "egress:\n- port: {number: 0, protocol: HTTP}\n  bind: unix:///var/run/a.sock\n  captureMode: NONE\n  hosts: ['*/*']",
        );
        assert_valid(
            "egress:\n- port: {protocol: HTTP}\n  bind: 'unix://@abstract'\n  hosts: ['*/*']",
        );
        let eg =
            |port: &str, rest: &str| format!("egress:\n- port: {port}\n  hosts: ['*/*']{rest}");
        assert_error(
            &eg("{number: 80, targetPort: 8080}", ""),
            "spec.egress[0].port.targetPort",
            "targetPort has no impact on Sidecars",
        );
        assert_error(
            &eg("{number: 80, name: 'bad_name'}", ""),
            "spec.egress[0].port.name",
            "invalid port name: bad_name",
        );
        assert_error(
            &eg("{number: 80, protocol: FOO}", ""),
            "spec.egress[0].port.protocol",
            "unsupported protocol: FOO",
        );
        assert_error(
            &eg("{number: 70000}", ""),
            "spec.egress[0].port.number",
            "port number 70000 must be in the range 1..65535",
        );
        assert_error(
            &eg("{number: 80}", "\n  bind: 'not-an-ip'"),
            "spec.egress[0].bind",
            "not-an-ip is not a valid IP",
        );
        assert_error(
            &eg("{number: 0}", ""),
            "spec.egress[0].bind",
            "sidecar: ports with 0 value must have a unix domain socket bind address",
        );
        assert_error(
            &eg("{number: 0}", "\n  bind: 'unix://relative/path'"),
            "spec.egress[0].bind",
            "relative/path is not an absolute path to a file",
        );
        assert_error(
            &eg("{number: 0}", "\n  bind: 'unix:///dir/'"),
            "spec.egress[0].bind",
            "is not an absolute path to a file",
        );
        assert_error(
            &eg("{number: 0}", "\n  bind: 'unix://'"),
            "spec.egress[0].bind",
            "unix address must not be empty",
        );
        assert_error(
            &eg(
                "{number: 0}",
                "\n  bind: 'unix:///a.sock'\n  captureMode: IPTABLES",
            ),
            "spec.egress[0].captureMode",
            "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
        );
        assert_error(
            "egress:\n- port: {number: 0}\n  bind: 'unix:///a.sock'\n  hosts: ['*/*']\n- port: {number: 0}\n  bind: 'unix:///a.sock'\n  hosts: ['*/*']",
            "spec.egress[1].bind",
            "sidecar: unix domain socket values for listeners must be unique",
        );
    }

    #[test]
    fn ingress_listeners() {
        assert_valid(
            "ingress:\n- port: {number: 9080, protocol: HTTP, name: http}\n  bind: 172.16.1.32\n  defaultEndpoint: 127.0.0.1:8080",
        );
        assert_valid("ingress:\n- port: {number: 9080}\n  defaultEndpoint: '[::1]:8080'");
        assert_valid("ingress:\n- port: {number: 9080}\n  defaultEndpoint: ':8080'");
        assert_valid(
            "ingress:\n- port: {number: 9080}\n  defaultEndpoint: 'unix:///var/run/app.sock'",
        );
        assert_valid("ingress:\n- port: {number: 9080}");
        let ing = |s: &str| format!("ingress:\n- {s}");
        assert_error(
            &ing("defaultEndpoint: 127.0.0.1:80"),
            "spec.ingress[0].port",
            "sidecar: port is required for ingress listeners",
        );
        assert_error(
            &ing("port: {number: 80, targetPort: 90}"),
            "spec.ingress[0].port.targetPort",
            "targetPort has no impact on Sidecars",
        );
        assert_error(
            &ing("port: {number: 0}"),
            "spec.ingress[0].port.number",
            "port number 0 must be in the range 1..65535",
        );
        assert_error(
            &ing("port: {number: 80, name: 'a.b'}"),
            "spec.ingress[0].port.name",
            "invalid port name: a.b",
        );
        assert_error(
            &ing("port: {number: 80, protocol: QUIC}"),
            "spec.ingress[0].port.protocol",
            "unsupported protocol: QUIC",
        );
        assert_error(
            &ing("port: {number: 80}\n  bind: foo"),
            "spec.ingress[0].bind",
            "foo is not a valid IP",
        );
        assert_error(
            "ingress:\n- port: {number: 80}\n- port: {number: 80}",
            "spec.ingress[1].port.number",
            "sidecar: ports on IP bound listeners must be unique",
        );
        let dp = "spec.ingress[0].defaultEndpoint";
        assert_error(
            &ing("port: {number: 80}\n  defaultEndpoint: 10.0.0.1:8080"),
            dp,
            "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset",
        );
        assert_error(
            &ing("port: {number: 80}\n  defaultEndpoint: 127.0.0.1"),
            dp,
            "address 127.0.0.1: missing port in address",
        );
        assert_error(
            &ing("port: {number: 80}\n  defaultEndpoint: 127.0.0.1"),
            dp,
            "sidecar: defaultEndpoint port () is not a number: strconv.Atoi: parsing \"\": invalid syntax",
        );
        assert_error(
            &ing("port: {number: 80}\n  defaultEndpoint: '127.0.0.1:http'"),
            dp,
            "sidecar: defaultEndpoint port (http) is not a number",
        );
        assert_error(
            &ing("port: {number: 80}\n  defaultEndpoint: '127.0.0.1:0'"),
            dp,
            "port number 0 must be in the range 1..65535",
        );
        assert_error(
            &ing("port: {number: 80}\n  defaultEndpoint: '::1:80'"),
            dp,
            "too many colons in address",
        );
        assert_error(
            &ing("port: {number: 80}\n  defaultEndpoint: 'unix://rel'"),
            dp,
            "rel is not an absolute path to a file",
        );
    }

    #[test]
    fn ingress_tls() {
        let base = "ingress:\n- port: {number: 8443, protocol: HTTPS, name: https}\n  defaultEndpoint: 127.0.0.1:8080\n  tls: ";
        let t = |s: &str| format!("{base}{{{s}}}");
        let p = "spec.ingress[0].tls";
        assert_valid(&t(
            "mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem",
        ));
        assert_valid(&t(
            "mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem",
        ));
        assert_error(
            &t("mode: SIMPLE"),
            &format!("{p}.serverCertificate"),
            "SIMPLE TLS requires a server certificate",
        );
        assert_error(
            &t("mode: SIMPLE, serverCertificate: /c"),
            &format!("{p}.privateKey"),
            "SIMPLE TLS requires a private key",
        );
        assert_error(
            &t("mode: MUTUAL, serverCertificate: /c, privateKey: /k"),
            &format!("{p}.caCertificates"),
            "MUTUAL TLS requires a client CA bundle",
        );
        assert_error(
            &t("mode: SIMPLE, serverCertificate: /c, privateKey: /k, subjectAltNames: [a]"),
            &format!("{p}.subjectAltNames"),
            "sidecar: subjectAltNames is not supported in ingress tls",
        );
        assert_error(
            &t("mode: SIMPLE, serverCertificate: /c, privateKey: /k, httpsRedirect: true"),
            &format!("{p}.httpsRedirect"),
            "sidecar: httpsRedirect is not supported",
        );
        assert_error(
            &t("mode: SIMPLE, credentialName: c"),
            &format!("{p}.credentialName"),
            "sidecar: credentialName is not currently supported",
        );
        assert_error(
            &t("mode: SIMPLE, credentialNames: [a]"),
            &format!("{p}.credentialNames"),
            "sidecar: credentialNames is not currently supported",
        );
        assert_error(
            &t("mode: SIMPLE, tlsCertificates: [{serverCertificate: /c, privateKey: /k}]"),
            &format!("{p}.tlsCertificates"),
            "sidecar: tls_certificates is not currently supported",
        );
        assert_error(
            &t("mode: ISTIO_MUTUAL"),
            &format!("{p}.mode"),
            "configuration is invalid: cannot set mode to ISTIO_MUTUAL in sidecar ingress tls",
        );
        assert_error(
            &t("mode: ISTIO_MUTUAL, privateKey: /k"),
            p,
            "ISTIO_MUTUAL TLS cannot have associated private key",
        );
        assert_error(
            &t("mode: SIMPLE, serverCertificate: /c, privateKey: /k, caCrl: /crl"),
            &format!("{p}.caCrl"),
            "CRL is not supported with SIMPLE TLS",
        );
        assert_error(
            &t("mode: SIMPLE, serverCertificate: /c, privateKey: /k, credentialName: x"),
            p,
            "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified",
        );
        assert_error(
            "ingress:\n- port: {number: 8080, protocol: HTTP}\n  tls: {mode: SIMPLE, serverCertificate: /c, privateKey: /k}",
            p,
            "server cannot have TLS settings for non HTTPS/TLS ports",
        );
        // Warnings.
        let w =
            t("mode: SIMPLE, serverCertificate: /c, privateKey: /k, minProtocolVersion: TLSV1_1");
        assert!(sc(&w).is_valid());
        assert_warning(
            &w,
            &format!("{p}.minProtocolVersion"),
            "TLS version below TLSV1_2 require setting compatible ciphers",
        );
        let w = t(
            "mode: SIMPLE, serverCertificate: /c, privateKey: /k, cipherSuites: [FOO, AES128-SHA, AES128-SHA, '-BAR']",
        );
        assert_warning(
            &w,
            &format!("{p}.cipherSuites"),
            "ignoring invalid cipher suites: [FOO]",
        );
        assert_warning(
            &w,
            &format!("{p}.cipherSuites"),
            "ignoring duplicate cipher suites: [AES128-SHA]",
        );
        let w = t("mode: PASSTHROUGH, serverCertificate: /c");
        assert_warning(
            &w,
            p,
            "PASSTHROUGH mode does not use certificates, they will be ignored",
        );
    }

    #[test]
    fn connection_pools() {
        assert_valid("inboundConnectionPool: {http: {http1MaxPendingRequests: 5}}");
        assert_error(
            "inboundConnectionPool: {}",
            "spec.inboundConnectionPool",
            "connection pool must have at least one field",
        );
        assert_error(
            "inboundConnectionPool: {tcp: {maxConnections: -1}}",
            "spec.inboundConnectionPool.tcp.maxConnections",
            "max connections must be non-negative",
        );
        assert_error(
            "ingress:\n- port: {number: 80, protocol: HTTP}\n  connectionPool: {http: {http2KeepAlive: {interval: 1s}}}",
            "spec.ingress[0].connectionPool.http.http2KeepAlive.timeout",
            "http2 keepalive timeout is required",
        );
        let tcp_port = "ingress:\n- port: {number: 3306, protocol: TCP, name: db}\n  connectionPool: {http: {maxRetries: 1}}";
        assert!(sc(tcp_port).is_valid());
        assert_warning(
            tcp_port,
            "spec.ingress[0].connectionPool.http",
            "sidecar: HTTP connection pool settings are configured for port 3306 (\"db\") but its protocol is not HTTP (TCP); only TCP settings will apply",
        );
        let r = sc(
            "ingress:\n- port: {number: 80, protocol: HTTP}\n  connectionPool: {http: {maxRetries: 1}}",
        );
        assert!(r.is_valid() && r.warnings.is_empty(), "{r:?}");
    }

    #[test]
    fn outbound_traffic_policy() {
        assert_valid("outboundTrafficPolicy: {mode: ALLOW_ANY}");
        assert_valid(
            "outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: egress.istio-system.svc.cluster.local, subset: proxy, port: {number: 15443}}}",
        );
        assert_error(
            "outboundTrafficPolicy: {mode: ALLOW_ANY_DYNAMIC_DNS}",
            "spec.outboundTrafficPolicy.mode",
            "ALLOW_ANY_DYNAMIC_DNS",
        );
        let p = "spec.outboundTrafficPolicy.egressProxy";
        assert_error(
            "outboundTrafficPolicy: {egressProxy: {host: a.com, port: {number: 80}}}",
            p,
            "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
        );
        assert_error(
            "outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: a.com}}",
            &format!("{p}.port"),
            "sidecar: egress_proxy port must be non-nil",
        );
        assert_error(
            "outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: '*.a.com', port: {number: 80}}}",
            &format!("{p}.host"),
            "label \"*\" invalid",
        );
        assert_error(
            "outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: '*', port: {number: 80}}}",
            &format!("{p}.host"),
            "invalid destination host *",
        );
        assert_error(
            "outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: a.com, subset: 'v1.0', port: {number: 80}}}",
            &format!("{p}.subset"),
            "subset name is invalid: v1.0",
        );
        assert_error(
            "outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: a.com, port: {number: 0}}}",
            &format!("{p}.port.number"),
            "port number 0 must be in the range 1..65535",
        );
        // One message per problem even though two Istio checks find it.
        let r = sc(
            "outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: 'a..com', port: {number: 80}}}",
        );
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    }

    #[test]
    fn go_helpers() {
        use super::{go_atoi, go_split_host_port};
        assert_eq!(go_split_host_port("127.0.0.1:80"), Ok(("127.0.0.1", "80")));
        assert_eq!(go_split_host_port("[::1]:80"), Ok(("::1", "80")));
        assert_eq!(go_split_host_port(":80"), Ok(("", "80")));
        assert!(go_split_host_port("[::1]").is_err());
        assert!(go_split_host_port("[::1]x:80").is_err());
        assert!(go_split_host_port("[::1:80").is_err());
        assert!(go_split_host_port("a]:80").is_err());
        assert_eq!(go_atoi("+12"), Ok(12));
        assert_eq!(go_atoi("-3"), Ok(-3));
        assert!(go_atoi("99999999999999999999").is_err_and(|e| e.contains("out of range")));
        assert!(go_atoi("1a").is_err_and(|e| e.contains("invalid syntax")));
    }

    #[test]
    fn rich_sidecar_is_valid() {
        assert_valid(
            r#"
workloadSelector:
  labels: {app: productpage}
ingress:
- port: {number: 9080, protocol: HTTPS, name: somename}
  bind: 172.16.1.32
  captureMode: NONE
  defaultEndpoint: 127.0.0.1:8080
  tls:
    mode: MUTUAL
    serverCertificate: /etc/certs/server.pem
    privateKey: /etc/certs/key.pem
    caCertificates: /etc/certs/ca.pem
    caCrl: /etc/certs/crl.pem
    minProtocolVersion: TLSV1_2
  connectionPool:
    tcp: {maxConnections: 5}
egress:
- port: {number: 3306, protocol: MYSQL, name: egressmysql}
  captureMode: IPTABLES
  bind: 127.0.0.1
  hosts: ["*/mysql.foo.com"]
- hosts: ["./*", "istio-system/*", "~kube-system/*"]
inboundConnectionPool:
  tcp: {maxConnections: 100}
outboundTrafficPolicy:
  mode: ALLOW_ANY
  egressProxy:
    host: egress.istio-system.svc.cluster.local
    subset: proxy
    port: {number: 15443}
"#,
        );
    }
}

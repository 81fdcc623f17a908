//! WorkloadEntry validation, also used for `ServiceEntry.endpoints[]`.
//!
//! Two layers, as for every kind: the CRD schema and CEL rules of the `WorkloadEntry`
//! message ([`check_crd`]; they apply wherever the message appears, so to every inline
//! endpoint of a ServiceEntry too), and Istio's Go `validateWorkloadEntry`
//! ([`check_endpoint`]), whose address and port rules depend on where the entry is used
//! ([`EndpointMode`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::api;
use crate::diag::{FieldPath, Report};
use crate::validate::Context;
use crate::validate::common::{
    check_labels, is_dns1123_label, parse_ip, validate_fqdn, validate_port,
};

/// Prefix of a Unix domain socket address (`unix:///path` or `unix://@abstract`).
pub const UNIX_ADDRESS_PREFIX: &str = "unix://";

/// Names of a ServiceEntry's ports, which inline endpoints' port maps must use.
pub type ServicePortNames<'a> = BTreeSet<&'a str>;

/// Where a WorkloadEntry is validated, which decides how its address and ports are checked.
#[derive(Debug, Clone, Copy)]
pub enum EndpointMode<'a> {
    /// A WorkloadEntry resource: the address may be an IP, an FQDN or a Unix socket, and
    /// port names are not checked against any service (Istio cannot know the service).
    Resource,
    /// An endpoint of a `STATIC` ServiceEntry: the address must be an IP or a Unix socket
    /// (no DNS names), port names must be ports of the ServiceEntry, and a Unix endpoint
    /// needs exactly one service port.
    Static(&'a ServicePortNames<'a>),
    /// An endpoint of a `DNS` / `DNS_ROUND_ROBIN` ServiceEntry: the address must be an IP or
    /// an FQDN (Unix sockets and empty addresses fail), port names must be ports of the
    /// ServiceEntry.
    Dns(&'a ServicePortNames<'a>),
}

/// Validates a WorkloadEntry spec (CRD rules, then Istio's rules for a standalone entry).
pub fn validate(spec: &api::WorkloadEntry, _ctx: &Context<'_>, report: &mut Report) {
    let path = FieldPath::root("spec");
    // One message per problem, in the CRD's words (see `service_entry::validate`).
    let mut crd = Report::default();
    check_crd(spec, &path, &mut crd);
    let mut semantic = Report::default();
    check_endpoint(spec, EndpointMode::Resource, &path, &mut semantic);
    crd.extend_layer(semantic);
    report.extend(crd);
}

// ---------------------------------------------------------------------------------------
// CRD schema and CEL rules (`networking/v1alpha3/workload_entry.proto` markers)
// ---------------------------------------------------------------------------------------

/// Checks the CRD schema and CEL rules of one WorkloadEntry message at `path` (`spec` for
/// a resource, `spec.endpoints[i]` for an inline endpoint).
///
/// Unset and empty strings/maps cannot be told apart after decoding; both count as unset
/// (`has()` false), which is how Istio's own typed clients write them.
pub fn check_crd(we: &api::WorkloadEntry, path: &FieldPath, report: &mut Report) {
    let address_path = path.field("address");
    let ports_path = path.field("ports");
    if we.address.is_empty() && we.network.is_empty() {
        report.error(path, cel("object", "Address is required"));
    }
    if let Some(rest) = we.address.strip_prefix(UNIX_ADDRESS_PREFIX) {
        if !we.ports.is_empty() {
            report.error(path, cel("object", "UDS may not include ports"));
        }
        // `self.substring(7,8)` must be `/` or `@` (and fails when there is no 8th char).
        if !(rest.starts_with('/') || rest.starts_with('@')) {
            report.error(
                &address_path,
                cel("string", "UDS must be an absolute path or abstract socket"),
            );
        }
        if we.address.ends_with('/') {
            report.error(&address_path, cel("string", "UDS may not be a dir"));
        }
    }
    max_length(&we.address, 256, &address_path, report);
    max_properties(we.ports.len(), 128, &ports_path, report);
    for (name, port) in &we.ports {
        if !(name.len() < 63 && is_dns1123_label(name)) {
            report.error(
                &ports_path,
                cel("object", &format!("port name must be valid (key {name:?})")),
            );
        }
        if !(1..=65535).contains(port) {
            report.error(
                ports_path.key(name),
                cel("integer", "port must be between 1-65535"),
            );
        }
    }
    max_properties(we.labels.len(), 256, &path.field("labels"), report);
    max_length(&we.network, 2048, &path.field("network"), report);
    max_length(&we.locality, 2048, &path.field("locality"), report);
    max_length(
        &we.service_account,
        253,
        &path.field("serviceAccount"),
        report,
    );
}

/// The text the API server gives for a failed CEL rule on a value of type `ty`.
pub(crate) fn cel(ty: &str, message: &str) -> String {
    format!("Invalid value: \"{ty}\": {message}")
}

/// The CRD `maxLength` check on a string (in bytes, as Kubernetes counts).
pub(crate) fn max_length(s: &str, max: usize, path: &FieldPath, report: &mut Report) {
    if s.len() > max {
        report.error(path, format!("Too long: may not be more than {max} bytes"));
    }
}

/// The CRD `maxProperties` check on a map.
pub(crate) fn max_properties(len: usize, max: usize, path: &FieldPath, report: &mut Report) {
    if len > max {
        report.error(
            path,
            format!("Too many: {len}: must have at most {max} items"),
        );
    }
}

/// The CRD `maxItems` check on a list.
pub(crate) fn max_items(len: usize, max: usize, path: &FieldPath, report: &mut Report) {
    max_properties(len, max, path, report);
}

// ---------------------------------------------------------------------------------------
// Istio's Go rules (`validateWorkloadEntry` and the DNS endpoint loop of
// `ValidateServiceEntry`)
// ---------------------------------------------------------------------------------------

/// An IP address as Go's `netip.ParseAddr` accepts it (IPv6 may carry a `%zone`).
pub fn is_ip_address(s: &str) -> bool {
    if parse_ip(s).is_some() {
        return true;
    }
    match s.split_once('%') {
        Some((ip, zone)) => !zone.is_empty() && matches!(parse_ip(ip), Some(IpAddr::V6(_))),
        None => false,
    }
}

/// Istio's `ValidateUnixAddress` on the part after `unix://`.
pub fn validate_unix_address(addr: &str) -> Result<(), String> {
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

/// Istio's Go checks of one WorkloadEntry at `path`, for the place it is used in.
pub fn check_endpoint(
    we: &api::WorkloadEntry,
    mode: EndpointMode<'_>,
    path: &FieldPath,
    report: &mut Report,
) {
    match mode {
        EndpointMode::Resource => check_workload_entry(we, None, true, path, report),
        EndpointMode::Static(ports) => check_workload_entry(we, Some(ports), false, path, report),
        EndpointMode::Dns(ports) => check_dns_endpoint(we, ports, path, report),
    }
}

/// `validateWorkloadEntry(we, servicePorts, allowFQDNAddresses)`.
fn check_workload_entry(
    we: &api::WorkloadEntry,
    service_ports: Option<&ServicePortNames<'_>>,
    allow_fqdn: bool,
    path: &FieldPath,
    report: &mut Report,
) {
    let addr = we.address.as_str();
    let address_path = path.field("address");
    if addr.is_empty() {
        if we.network.is_empty() {
            // Istio stops checking this entry here.
            report.error(&address_path, "address is required");
            return;
        }
        report.warn(
            &address_path,
            format!("address is unset with network {:?}", we.network),
        );
    }

    let mut unix = false;
    if let Some(socket) = addr.strip_prefix(UNIX_ADDRESS_PREFIX) {
        unix = true;
        if let Err(e) = validate_unix_address(socket) {
            report.error(&address_path, e);
        }
        if !we.ports.is_empty() {
            report.error(
                path.field("ports"),
                format!("unix endpoint {addr} must not include ports"),
            );
        }
    } else if !addr.is_empty() && !is_ip_address(addr) {
        if !allow_fqdn {
            report.error(
                &address_path,
                format!("endpoint address {addr:?} is not a valid IP address"),
            );
        } else if validate_fqdn(addr).is_err() {
            report.error(
                &address_path,
                format!("endpoint address {addr:?} is not a valid FQDN or an IP address"),
            );
        }
    }

    check_ports(we, service_ports, path, report);
    check_labels(&we.labels, &path.field("labels"), report);

    if unix && service_ports.is_some_and(|p| p.len() != 1) {
        report.error(
            &address_path,
            "exactly 1 service port required for unix endpoints",
        );
    }
}

/// The endpoint checks of `ValidateServiceEntry` for `DNS` / `DNS_ROUND_ROBIN`: no
/// empty-address or Unix special cases, the address must be an IP or an FQDN.
fn check_dns_endpoint(
    we: &api::WorkloadEntry,
    service_ports: &ServicePortNames<'_>,
    path: &FieldPath,
    report: &mut Report,
) {
    let addr = we.address.as_str();
    if !is_ip_address(addr) && validate_fqdn(addr).is_err() {
        report.error(
            path.field("address"),
            format!("endpoint address {addr:?} is not a valid FQDN or an IP address"),
        );
    }
    check_labels(&we.labels, &path.field("labels"), report);
    check_ports(we, Some(service_ports), path, report);
}

/// Port map entries: declared by the service (when known), DNS-1123 names, valid numbers.
fn check_ports(
    we: &api::WorkloadEntry,
    service_ports: Option<&ServicePortNames<'_>>,
    path: &FieldPath,
    report: &mut Report,
) {
    let ports_path = path.field("ports");
    for (name, port) in &we.ports {
        let p = ports_path.key(name);
        if let Some(sp) = service_ports
            && !sp.contains(name.as_str())
        {
            // Istio prints the port number here, not the name.
            report.error(
                &p,
                format!("endpoint port {port} is not defined by the service entry"),
            );
        }
        if !is_dns1123_label(name) {
            report.error(&p, format!("invalid port name: {name}"));
        }
        if let Err(e) = validate_port(*port) {
            report.error(&p, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::api::MeshConfig;
    use crate::decode::{Format, Outcome, decode_str};
    use crate::diag::Report;

    /// Decodes one WorkloadEntry from its `spec` YAML and validates it.
    fn check(spec: &str) -> Report {
        let mut text = String::from(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: we, namespace: ns}\nspec:\n",
        );
        for line in spec.trim_matches('\n').lines() {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
        let docs = decode_str(&text, Format::Yaml, "default").expect("yaml");
        match &docs[0].outcome {
            Outcome::Config(c) => crate::validate::validate(c, &MeshConfig::default()),
            other => panic!("decode failed: {other:?}"),
        }
    }

    fn has_error_at(r: &Report, path: &str, needle: &str) -> bool {
        r.errors
            .iter()
            .any(|i| i.path == path && i.message.contains(needle))
    }

    fn has_warning_at(r: &Report, path: &str, needle: &str) -> bool {
        r.warnings
            .iter()
            .any(|i| i.path == path && i.message.contains(needle))
    }

    #[track_caller]
    fn valid(spec: &str) -> Report {
        let r = check(spec);
        assert!(r.is_valid(), "{spec}\n=> {:#?}", r.errors);
        r
    }

    /// A problem both validation layers find: reported once, in the CRD's words (`kept`);
    /// Istio's Go message for it (`dropped`) is not repeated.
    #[track_caller]
    fn error_once(spec: &str, path: &str, kept: &str, dropped: &str) -> Report {
        let r = error(spec, path, kept);
        assert!(
            !r.errors.iter().any(|i| i.message.contains(dropped)),
            "{spec}\n=> the same problem twice: {:#?}",
            r.errors
        );
        r
    }

    #[track_caller]
    fn error(spec: &str, path: &str, needle: &str) -> Report {
        let r = check(spec);
        assert!(
            has_error_at(&r, path, needle),
            "{spec}\nexpected error at {path}: {needle}\n=> {:#?}",
            r.errors
        );
        r
    }

    #[test]
    fn valid_entries() {
        let r = valid(
            "address: 2.2.2.2\nports: {http: 8080, grpc: 9090}\nlabels: {app: details, instance-id: vm1}\nnetwork: n1\nlocality: us/east\nweight: 3\nserviceAccount: details",
        );
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        valid("address: 2001:db8::1");
        valid("address: fe80::1%eth0");
        valid("address: vm1.example.com");
        valid("address: foo");
        valid("address: unix:///var/run/a.sock");
        valid("address: unix://@abstract");
        // Numeric port names are DNS-1123 labels.
        valid("address: 1.1.1.1\nports: {\"7777\": 7777}");
    }

    #[test]
    fn address_required() {
        // CRD and Go both reject an entry without address and network.
        error("weight: 1", "spec", "Address is required");
        error("weight: 1", "spec.address", "address is required");
        // Go stops at that point: the bad port is not reported by Go (only by the CRD).
        let r = check("ports: {http: 0}");
        assert!(!r.has_error("port number 0"), "{:?}", r.errors);
        assert!(r.has_error("port must be between 1-65535"));
    }

    #[test]
    fn network_without_address_warns() {
        let r = valid("network: net-1");
        assert!(has_warning_at(
            &r,
            "spec.address",
            "address is unset with network \"net-1\""
        ));
    }

    #[test]
    fn address_forms() {
        error(
            "address: invaliddns.com:9443",
            "spec.address",
            "endpoint address \"invaliddns.com:9443\" is not a valid FQDN or an IP address",
        );
        error(
            "address: \"*.example.com\"",
            "spec.address",
            "is not a valid FQDN or an IP address",
        );
        error(
            "address: 1.2.3.4/24",
            "spec.address",
            "is not a valid FQDN or an IP address",
        );
        let long = format!("address: {}.com", "a".repeat(260));
        error(
            &long,
            "spec.address",
            "Too long: may not be more than 256 bytes",
        );
    }

    #[test]
    fn unix_addresses() {
        error(
            "address: unix:///var/run/a.sock\nports: {http: 80}",
            "spec.ports",
            "unix endpoint unix:///var/run/a.sock must not include ports",
        );
        error(
            "address: unix:///var/run/a.sock\nports: {http: 80}",
            "spec",
            "UDS may not include ports",
        );
        error_once(
            "address: unix://relative/path",
            "spec.address",
            "UDS must be an absolute path or abstract socket",
            "relative/path is not an absolute path to a file",
        );
        error(
            "address: unix://relative/path",
            "spec.address",
            "UDS must be an absolute path or abstract socket",
        );
        error_once(
            "address: unix:///var/run/",
            "spec.address",
            "UDS may not be a dir",
            "/var/run/ is not an absolute path to a file",
        );
        error(
            "address: unix:///var/run/",
            "spec.address",
            "UDS may not be a dir",
        );
        error_once(
            "address: unix://",
            "spec.address",
            "UDS must be an absolute path or abstract socket",
            "unix address must not be empty",
        );
        error(
            "address: unix://",
            "spec.address",
            "UDS must be an absolute path or abstract socket",
        );
    }

    #[test]
    fn ports() {
        error_once(
            "address: 1.1.1.1\nports: {http: 0}",
            "spec.ports[http]",
            "port must be between 1-65535",
            "port number 0 must be in the range 1..65535",
        );
        error(
            "address: 1.1.1.1\nports: {http: 65536}",
            "spec.ports[http]",
            "port must be between 1-65535",
        );
        error(
            "address: 1.1.1.1\nports: {http_x: 80}",
            "spec.ports[http_x]",
            "invalid port name: http_x",
        );
        error(
            "address: 1.1.1.1\nports: {http_x: 80}",
            "spec.ports",
            "port name must be valid",
        );
        // The CRD wants names shorter than 63 characters; Go allows 63.
        let name63 = "a".repeat(63);
        let r = check(&format!("address: 1.1.1.1\nports: {{{name63}: 80}}"));
        assert!(r.has_error("port name must be valid"), "{:?}", r.errors);
        assert!(!r.has_error("invalid port name"), "{:?}", r.errors);
        let many: Vec<String> = (0..129).map(|i| format!("p{i}: {}", 1000 + i)).collect();
        error(
            &format!("address: 1.1.1.1\nports: {{{}}}", many.join(", ")),
            "spec.ports",
            "Too many: 129: must have at most 128 items",
        );
        // A WorkloadEntry's port names are not checked against any service.
        valid("address: 1.1.1.1\nports: {anything: 80}");
    }

    #[test]
    fn labels() {
        error(
            "address: 1.1.1.1\nlabels: {\"-bad\": x}",
            "spec.labels[-bad]",
            "invalid tag key: \"-bad\"",
        );
        error(
            "address: 1.1.1.1\nlabels: {app: \"a b\"}",
            "spec.labels[app]",
            "invalid tag value: \"a b\"",
        );
        valid("address: 1.1.1.1\nlabels: {app.kubernetes.io/name: x, empty: \"\"}");
        let many: Vec<String> = (0..257).map(|i| format!("l{i}: v")).collect();
        error(
            &format!("address: 1.1.1.1\nlabels: {{{}}}", many.join(", ")),
            "spec.labels",
            "Too many: 257",
        );
    }

    #[test]
    fn string_lengths() {
        let sa = "a".repeat(254);
        error(
            &format!("address: 1.1.1.1\nserviceAccount: {sa}"),
            "spec.serviceAccount",
            "Too long: may not be more than 253 bytes",
        );
        valid(&format!(
            "address: 1.1.1.1\nserviceAccount: {}",
            "a".repeat(253)
        ));
        let big = "n".repeat(2049);
        error(
            &format!("address: 1.1.1.1\nnetwork: {big}"),
            "spec.network",
            "Too long: may not be more than 2048 bytes",
        );
        error(
            &format!("address: 1.1.1.1\nlocality: {big}"),
            "spec.locality",
            "Too long: may not be more than 2048 bytes",
        );
    }

    #[test]
    fn ip_forms() {
        use super::is_ip_address;
        assert!(is_ip_address("10.0.0.1"));
        assert!(is_ip_address("::ffff:1.2.3.4"));
        assert!(is_ip_address("fe80::1%eth0"));
        assert!(!is_ip_address("10.0.0.1%eth0"));
        assert!(!is_ip_address("fe80::1%"));
        assert!(!is_ip_address("01.2.3.4"));
        assert!(!is_ip_address(""));
    }
}

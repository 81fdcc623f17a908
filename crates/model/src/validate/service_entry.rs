//! ServiceEntry validation: the CRD schema and CEL rules (§2.1), then Istio's
//! `ValidateServiceEntry` (§2.2) in its order, including the early return on bad
//! workload-selector labels. Inline endpoints are checked with the WorkloadEntry rules of
//! [`super::workload_entry`] in the mode the resolution asks for.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::api::{self, Location, Protocol, Resolution};
use crate::diag::{FieldPath, Report};
use crate::validate::Context;
use crate::validate::common::{
    ExportToOwner, check_export_to, check_selector_labels, is_dns1123_label, is_partial_wildcard,
    validate_fqdn, validate_ip_or_cidr, validate_port, validate_wildcard_domain,
};
use crate::validate::workload_entry::{
    self as we, EndpointMode, ServicePortNames, cel, max_items, max_length,
};

/// Label by which a ServiceEntry opts out of v2 address auto-allocation (value `false`).
pub const ENABLE_AUTOALLOCATE_IP_LABEL: &str = "networking.istio.io/enable-autoallocate-ip";

/// Label that binds a resource to a waypoint (`none` = no waypoint).
pub const USE_WAYPOINT_LABEL: &str = "istio.io/use-waypoint";

/// Whether istiod's v2 IP auto-allocation assigns addresses to this ServiceEntry
/// (`shouldV2AutoAllocateIPFromPieces`): the feature (`PILOT_ENABLE_IP_AUTOALLOCATE`,
/// default on, always on here) is on, resolution is not NONE, the object is not opted out
/// with the label `networking.istio.io/enable-autoallocate-ip: "false"` (any case), and the
/// spec has no `addresses` of its own.
pub fn v2_auto_allocates(spec: &api::ServiceEntry, labels: &BTreeMap<String, String>) -> bool {
    spec.resolution != Resolution::None
        && !labels
            .get(ENABLE_AUTOALLOCATE_IP_LABEL)
            .is_some_and(|v| v.eq_ignore_ascii_case("false"))
        && spec.addresses.is_empty()
}

/// Validates a ServiceEntry spec.
pub fn validate(spec: &api::ServiceEntry, ctx: &Context<'_>, report: &mut Report) {
    let path = FieldPath::root("spec");
    // Istio's API server runs the CRD rules first and rejects the object before its
    // webhook sees it, so a problem both layers find is reported once, as the CRD words it.
    let mut crd = Report::default();
    check_crd(spec, &path, &mut crd);
    let mut semantic = Report::default();
    check_semantics(spec, ctx, &path, &mut semantic);
    crd.extend_layer(semantic);
    report.extend(crd);
}

// ---------------------------------------------------------------------------------------
// CRD schema and CEL rules
// ---------------------------------------------------------------------------------------

/// The CRD layer: structural limits and the CEL rules of `service_entry.proto`, plus the
/// WorkloadEntry rules on every inline endpoint.
fn check_crd(spec: &api::ServiceEntry, path: &FieldPath, report: &mut Report) {
    // oneof(workloadSelector, endpoints): a present `endpoints: []` counts as set here.
    if spec.workload_selector.is_some() && spec.endpoints.is_some() {
        report.error(
            path,
            cel(
                "object",
                "only one of WorkloadSelector or Endpoints can be set",
            ),
        );
    }

    // Same condition and text as Istio's Go check, so it is reported once, here (the Go
    // layer may stop early on selector errors; this rule does not depend on that).
    if !matches!(spec.resolution, Resolution::None | Resolution::Static)
        && let Some(i) = spec.addresses.iter().position(|a| a.contains('/'))
    {
        report.error(
            path.field("addresses").index(i),
            cel(
                "object",
                "CIDR addresses are allowed only for NONE/STATIC resolution types",
            ),
        );
    }

    let endpoints_path = path.field("endpoints");
    if spec.resolution == Resolution::None && spec.endpoints.is_some() {
        report.error(
            &endpoints_path,
            cel("object", "NONE mode cannot set endpoints"),
        );
    }
    if spec.resolution == Resolution::DnsRoundRobin && spec.endpoints().len() > 1 {
        report.error(
            &endpoints_path,
            cel(
                "object",
                "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
            ),
        );
    }

    let hosts_path = path.field("hosts");
    if spec.hosts.is_empty() {
        report.error(&hosts_path, "Required value");
    }
    max_items(spec.hosts.len(), 256, &hosts_path, report);
    for (i, host) in spec.hosts.iter().enumerate() {
        if host == "*" {
            report.error(
                hosts_path.index(i),
                cel("string", "hostname cannot be wildcard"),
            );
        }
    }

    let addresses_path = path.field("addresses");
    max_items(spec.addresses.len(), 256, &addresses_path, report);
    for (i, address) in spec.addresses.iter().enumerate() {
        max_length(address, 64, &addresses_path.index(i), report);
    }

    let ports_path = path.field("ports");
    max_items(spec.ports.len(), 256, &ports_path, report);
    let mut names = HashSet::new();
    let mut numbers: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let p = ports_path.index(i);
        if port.name.is_empty() {
            report.error(p.field("name"), "Required value");
        } else if !names.insert(port.name.as_str()) {
            // `ports` is a list-map keyed by `name`.
            report.error(&p, format!("Duplicate value: {{\"name\":{:?}}}", port.name));
        }
        *numbers.entry(port.number).or_default() += 1;
        if !(1..=65535).contains(&port.number) {
            report.error(
                p.field("number"),
                cel("integer", "port must be between 1-65535"),
            );
        }
        // targetPort 0 is indistinguishable from unset.
        if port.target_port > 65535 {
            report.error(
                p.field("targetPort"),
                cel("integer", "port must be between 1-65535"),
            );
        }
        max_length(&port.protocol, 256, &p.field("protocol"), report);
        max_length(&port.name, 256, &p.field("name"), report);
    }
    if numbers.values().any(|n| *n > 1) {
        report.error(
            &ports_path,
            cel("array", "port number cannot be duplicated"),
        );
    }

    max_items(spec.endpoints().len(), 4096, &endpoints_path, report);
    for (i, endpoint) in spec.endpoints().iter().enumerate() {
        we::check_crd(endpoint, &endpoints_path.index(i), report);
    }
}

// ---------------------------------------------------------------------------------------
// Istio's Go rules (`ValidateServiceEntry`)
// ---------------------------------------------------------------------------------------

fn check_semantics(
    spec: &api::ServiceEntry,
    ctx: &Context<'_>,
    path: &FieldPath,
    report: &mut Report,
) {
    // 1. Selector labels: errors end validation right away, as in Istio.
    if let Some(selector) = &spec.workload_selector {
        let selector_path = path.field("workloadSelector");
        if !check_selector_labels(&selector.labels, &selector_path.field("labels"), report) {
            return;
        }
        if selector.labels.is_empty() {
            report.warn(
                &selector_path,
                "service entry: workload selector specified without labels, will be applied to all services in namespace",
            );
        }
    }

    // 2. Go treats an empty endpoint list as unset.
    if spec.workload_selector.is_some() && !spec.endpoints().is_empty() {
        report.error(
            path,
            "only one of WorkloadSelector or Endpoints is allowed in Service Entry",
        );
    }

    // 3–4. Hosts.
    let hosts_path = path.field("hosts");
    if spec.hosts.is_empty() {
        report.error(&hosts_path, "service entry must have at least one host");
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        let p = hosts_path.index(i);
        if host == "*" {
            report.error(&p, format!("invalid host {host}"));
            continue;
        }
        if let Err(e) = validate_wildcard_domain(host) {
            report.error(&p, e);
        }
        if spec.resolution != Resolution::DynamicDns && is_partial_wildcard(host) {
            report.warn(&p, format!("partial wildcard {host:?} not allowed"));
        }
    }

    // 5. Addresses (the CIDR/resolution rule is reported with the CRD rules).
    let addresses_path = path.field("addresses");
    for (i, address) in spec.addresses.iter().enumerate() {
        if let Err(e) = validate_ip_or_cidr(address) {
            report.error(addresses_path.index(i), e);
        }
    }

    // 6. Ports.
    let ports_path = path.field("ports");
    let auto_allocation = v2_auto_allocates(spec, ctx.labels);
    let mut service_ports: ServicePortNames<'_> = BTreeSet::new();
    let mut port_numbers = HashSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let p = ports_path.index(i);
        if !service_ports.insert(port.name.as_str()) {
            report.error(
                p.field("name"),
                format!("service entry port name {:?} already defined", port.name),
            );
        }
        if !port_numbers.insert(port.number) {
            report.error(
                p.field("number"),
                format!("service entry port {} already defined", port.number),
            );
        }
        if port.target_port != 0
            && let Err(e) = validate_port(port.target_port)
        {
            report.error(p.field("targetPort"), e);
        }
        if spec.addresses.is_empty()
            && !auto_allocation
            && (port.protocol.is_empty() || port.protocol == "TCP")
        {
            report.warn(
                &p,
                "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled",
            );
        }
        if !is_dns1123_label(&port.name) {
            report.error(p.field("name"), format!("invalid port name: {}", port.name));
        }
        if !port.protocol.is_empty() && port.parsed_protocol() == Protocol::Unsupported {
            report.error(
                p.field("protocol"),
                format!("unsupported protocol: {}", port.protocol),
            );
        }
        if let Err(e) = validate_port(port.number) {
            report.error(p.field("number"), e);
        }
    }

    // 7. Per resolution.
    let endpoints_path = path.field("endpoints");
    match spec.resolution {
        Resolution::None => {
            if !spec.endpoints().is_empty() {
                report.error(
                    &endpoints_path,
                    "no endpoints should be provided for resolution type none",
                );
            }
            if spec.workload_selector.is_some() {
                report.warn(
                    path.field("workloadSelector"),
                    "workloadSelector should not be set when resolution mode is NONE",
                );
            }
        }
        Resolution::Static => {
            for (i, endpoint) in spec.endpoints().iter().enumerate() {
                we::check_endpoint(
                    endpoint,
                    EndpointMode::Static(&service_ports),
                    &endpoints_path.index(i),
                    report,
                );
            }
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            check_dns(spec, &service_ports, path, report);
        }
        Resolution::DynamicDns => check_dynamic_dns(spec, ctx, path, report),
    }

    // 8. Several hosts need ports whose traffic names its host (HTTP Host, TLS SNI).
    if spec.resolution != Resolution::None
        && spec.hosts.len() > 1
        && let Some(i) = spec.ports.iter().position(|p| {
            let proto = p.parsed_protocol();
            !proto.is_http() && !proto.is_tls()
        })
    {
        report.error(
            ports_path.index(i).field("protocol"),
            "multiple hosts provided with non-HTTP, non-TLS ports",
        );
    }

    // 9. exportTo, with `~` allowed.
    check_export_to(
        &spec.export_to,
        ctx.namespace,
        ExportToOwner::ServiceEntry,
        &path.field("exportTo"),
        report,
    );
}

/// The `DNS` / `DNS_ROUND_ROBIN` rules.
fn check_dns(
    spec: &api::ServiceEntry,
    service_ports: &ServicePortNames<'_>,
    path: &FieldPath,
    report: &mut Report,
) {
    let endpoints = spec.endpoints();
    let endpoints_path = path.field("endpoints");
    if endpoints.is_empty() {
        // Without endpoints the hosts themselves are resolved; reported once.
        let bad = spec
            .hosts
            .iter()
            .enumerate()
            .find_map(|(i, h)| validate_fqdn(h).err().map(|e| (i, e)));
        if let Some((i, e)) = bad {
            report.error(
                path.field("hosts").index(i),
                format!(
                    "hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution mode {}, {e}",
                    spec.resolution
                ),
            );
        }
    }
    if spec.resolution == Resolution::DnsRoundRobin && endpoints.len() > 1 {
        report.error(
            &endpoints_path,
            "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
        );
    }
    for (i, endpoint) in endpoints.iter().enumerate() {
        we::check_endpoint(
            endpoint,
            EndpointMode::Dns(service_ports),
            &endpoints_path.index(i),
            report,
        );
    }
    if !spec.addresses.is_empty()
        && spec.hosts.len() > 1
        && spec.ports.iter().any(|p| p.parsed_protocol().is_tcp())
    {
        report.warn(
            path.field("hosts"),
            "service entry can not have more than one host specified simultaneously with address and tcp port",
        );
    }
}

/// The `DYNAMIC_DNS` rules.
fn check_dynamic_dns(
    spec: &api::ServiceEntry,
    ctx: &Context<'_>,
    path: &FieldPath,
    report: &mut Report,
) {
    let hosts_path = path.field("hosts");
    for (i, host) in spec.hosts.iter().enumerate() {
        if !host.starts_with('*') {
            report.error(
                hosts_path.index(i),
                "host must be wildcarded for resolution mode DYNAMIC_DNS",
            );
        }
    }
    if !spec.addresses.is_empty() {
        // Istio's message lacks the space in "generatedfrom".
        report.error(
            path.field("addresses"),
            "addresses cannot be set for resolution type DYNAMIC_DNS. HTTP route domains will only be generatedfrom the hosts field values",
        );
    }
    if !spec.endpoints().is_empty() {
        report.error(
            path.field("endpoints"),
            "endpoints cannot be set for resolution type DYNAMIC_DNS. Destination IP address determined from hostsfield values",
        );
    }
    for (i, port) in spec.ports.iter().enumerate() {
        let supported = matches!(
            port.parsed_protocol(),
            Protocol::Http | Protocol::Tls | Protocol::Grpc | Protocol::Http2
        );
        if !supported {
            report.error(
                path.field("ports").index(i).field("protocol"),
                "only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type DYNAMIC_DNS",
            );
        }
    }
    if spec.location == Location::MeshInternal
        && ctx
            .labels
            .get(USE_WAYPOINT_LABEL)
            .is_some_and(|w| w != "none")
    {
        report.error(
            path.field("location"),
            "location MESH_INTERNAL with resolution type DYNAMIC_DNS is not supported when using waypoints",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::api::MeshConfig;
    use crate::decode::{Format, Outcome, decode_str};
    use crate::diag::Report;

    /// Decodes one ServiceEntry (namespace `ns`) from metadata labels and `spec` YAML and
    /// validates it.
    fn check_with_labels(labels: &str, spec: &str) -> Report {
        let mut text = format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: se, namespace: ns, labels: {{{labels}}}}}\nspec:\n"
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

    fn check(spec: &str) -> Report {
        check_with_labels("", spec)
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

    #[track_caller]
    fn no_error(spec: &str, needle: &str) {
        let r = check(spec);
        assert!(!r.has_error(needle), "{spec}\n=> {:#?}", r.errors);
    }

    #[track_caller]
    fn warning(spec: &str, path: &str, needle: &str) -> Report {
        let r = check(spec);
        assert!(
            has_warning_at(&r, path, needle),
            "{spec}\nexpected warning at {path}: {needle}\n=> {:#?}",
            r.warnings
        );
        r
    }

    const HTTP: &str = "ports: [{number: 80, name: http, protocol: HTTP}]";

    #[test]
    fn examples_are_valid() {
        for text in [
            include_str!("../../../../examples/seed-external-svc-https.yaml"),
            include_str!("../../../../examples/seed-mongocluster.yaml"),
            include_str!("../../../../examples/resolution-none-wildcard.yaml"),
            include_str!("../../../../examples/resolution-static-vip.yaml"),
            include_str!("../../../../examples/resolution-dns-http.yaml"),
            include_str!("../../../../examples/resolution-dns-round-robin.yaml"),
            include_str!("../../../../examples/workload-selector.yaml"),
        ] {
            let checked =
                crate::check::check_text(text, Format::Yaml, "default", &MeshConfig::default())
                    .expect("yaml");
            for c in checked {
                if !matches!(c.doc.kind.as_str(), "ServiceEntry" | "WorkloadEntry") {
                    continue;
                }
                assert!(c.report.is_valid(), "{text}\n=> {:#?}", c.report.errors);
            }
        }
    }

    #[test]
    fn surprising_but_valid() {
        valid(&format!("hosts: [foo]\n{HTTP}"));
        let r = valid(&format!("hosts: [\"*x.com\"]\n{HTTP}"));
        assert!(has_warning_at(
            &r,
            "spec.hosts[0]",
            "partial wildcard \"*x.com\" not allowed"
        ));
        valid(&format!(
            "hosts: [a.com]\n{HTTP}\nresolution: DNS\nendpoints: [{{address: 1.2.3.4}}]"
        ));
        valid(&format!("hosts: [a.com]\n{HTTP}\nresolution: STATIC"));
        valid(&format!(
            "hosts: [a.com]\naddresses: [10.0.0.0/8]\n{HTTP}\nresolution: NONE"
        ));
        valid(
            "hosts: [a.com]\nports:\n- {number: 80, name: http, protocol: HTTP, targetPort: 8080}\n- {number: 81, name: http2, protocol: HTTP, targetPort: 8080}",
        );
        valid(&format!(
            "hosts: [a.com]\n{HTTP}\nresolution: DNS_ROUND_ROBIN"
        ));
        let r = valid(&format!(
            "hosts: [a.com]\n{HTTP}\nresolution: STATIC\nendpoints: [{{network: n1}}]"
        ));
        assert!(has_warning_at(
            &r,
            "spec.endpoints[0].address",
            "address is unset with network \"n1\""
        ));
        valid(&format!("hosts: [a.com, b.com]\n{HTTP}\nresolution: DNS"));
        valid(
            "hosts: [a.com, b.com]\nports: [{number: 443, name: tls, protocol: TLS}]\nresolution: DNS",
        );
        valid(
            "hosts: [a.com, b.com]\nports: [{number: 443, name: https, protocol: HTTPS}]\nresolution: STATIC",
        );
    }

    #[test]
    fn selector_label_errors_abort() {
        // Bad selector labels are reported and nothing else of the Go layer is checked.
        let spec = "hosts: []\nworkloadSelector: {labels: {app: \"*\"}}";
        let r = error(
            spec,
            "spec.workloadSelector.labels[app]",
            "wildcard is not supported in selector: \"app=*\"",
        );
        assert!(
            !r.has_error("service entry must have at least one host"),
            "{r:?}"
        );
        // The CRD layer is independent of that early return.
        assert!(has_error_at(&r, "spec.hosts", "Required value"));
        error(
            "hosts: [a.com]\nworkloadSelector: {labels: {\"\": v}}",
            "spec.workloadSelector.labels[]",
            "empty key is not supported in selector: \"=v\"",
        );
        error(
            "hosts: [a.com]\nworkloadSelector: {labels: {\"a*\": v}}",
            "spec.workloadSelector.labels[a*]",
            "wildcard is not supported in selector: \"a*=v\"",
        );
        valid(&format!(
            "hosts: [a.com]\n{HTTP}\nresolution: STATIC\nworkloadSelector: {{labels: {{app: x}}}}"
        ));
    }

    #[test]
    fn selector_without_labels_warns() {
        warning(
            &format!("hosts: [a.com]\n{HTTP}\nresolution: STATIC\nworkloadSelector: {{}}"),
            "spec.workloadSelector",
            "service entry: workload selector specified without labels, will be applied to all services in namespace",
        );
        let r = valid(&format!(
            "hosts: [a.com]\n{HTTP}\nresolution: STATIC\nworkloadSelector: {{labels: {{app: x}}}}"
        ));
        assert!(!r.has_warning("without labels"));
    }

    #[test]
    fn selector_and_endpoints() {
        let r = error_once(
            &format!(
                "hosts: [a.com]\n{HTTP}\nresolution: STATIC\nworkloadSelector: {{labels: {{app: x}}}}\nendpoints: [{{address: 1.1.1.1}}]"
            ),
            "spec",
            "only one of WorkloadSelector or Endpoints can be set",
            "only one of WorkloadSelector or Endpoints is allowed in Service Entry",
        );
        assert!(has_error_at(
            &r,
            "spec",
            "only one of WorkloadSelector or Endpoints can be set"
        ));
        // An empty list is "set" for the CRD rule, unset for Go.
        let r = error(
            &format!(
                "hosts: [a.com]\n{HTTP}\nresolution: STATIC\nworkloadSelector: {{labels: {{app: x}}}}\nendpoints: []"
            ),
            "spec",
            "only one of WorkloadSelector or Endpoints can be set",
        );
        assert!(!r.has_error("is allowed in Service Entry"), "{r:?}");
    }

    #[test]
    fn hosts() {
        let r = error_once(
            HTTP,
            "spec.hosts",
            "Required value",
            "service entry must have at least one host",
        );
        assert!(has_error_at(&r, "spec.hosts", "Required value"));
        let r = error_once(
            &format!("hosts: [\"*\"]\n{HTTP}"),
            "spec.hosts[0]",
            "hostname cannot be wildcard",
            "invalid host *",
        );
        assert!(has_error_at(
            &r,
            "spec.hosts[0]",
            "hostname cannot be wildcard"
        ));
        error(
            &format!("hosts: [a.com, \"foo.*.com\"]\n{HTTP}"),
            "spec.hosts[1]",
            "domain name \"*.com\" invalid (label \"*\" invalid)",
        );
        error(
            &format!("hosts: [\"foo.123\"]\n{HTTP}"),
            "spec.hosts[0]",
            "top level domain \"123\" cannot be all-numeric",
        );
        error(
            &format!("hosts: [\"-foo.com\"]\n{HTTP}"),
            "spec.hosts[0]",
            "domain name \"-foo.com\" invalid (label \"-foo\" invalid)",
        );
        let long = format!("{}.com", "a.".repeat(130));
        error(
            &format!("hosts: [\"{long}\"]\n{HTTP}"),
            "spec.hosts[0]",
            "too long (max 255)",
        );
        valid(&format!("hosts: [\"*.foo.com\", \"istio.io.\"]\n{HTTP}"));
        let many: Vec<String> = (0..257).map(|i| format!("h{i}.com")).collect();
        error(
            &format!("hosts: [{}]\n{HTTP}", many.join(", ")),
            "spec.hosts",
            "Too many: 257: must have at most 256 items",
        );
    }

    #[test]
    fn partial_wildcard_warning() {
        warning(
            &format!("hosts: [\"*-foo.com\"]\n{HTTP}"),
            "spec.hosts[0]",
            "partial wildcard \"*-foo.com\" not allowed",
        );
        let r = valid(&format!("hosts: [\"*.foo.com\"]\n{HTTP}"));
        assert!(!r.has_warning("partial wildcard"));
        // Not reported for DYNAMIC_DNS.
        let r = check(&format!(
            "hosts: [\"*foo.com\"]\n{HTTP}\nresolution: DYNAMIC_DNS"
        ));
        assert!(!r.has_warning("partial wildcard"), "{r:?}");
    }

    #[test]
    fn addresses() {
        error(
            &format!("hosts: [a.com]\naddresses: [10.0.0.0/33]\n{HTTP}"),
            "spec.addresses[0]",
            "10.0.0.0/33 is not a valid CIDR block",
        );
        error(
            &format!("hosts: [a.com]\naddresses: [1.1.1.1, foo]\n{HTTP}"),
            "spec.addresses[1]",
            "foo is not a valid IP",
        );
        error(
            &format!("hosts: [a.com]\naddresses: [\"unix:///a.sock\"]\n{HTTP}"),
            "spec.addresses[0]",
            "is not a valid IP",
        );
        valid(&format!(
            "hosts: [a.com]\naddresses: [10.0.0.1, \"2001:db8::/32\"]\n{HTTP}\nresolution: STATIC"
        ));
        let long = format!("{}::1", "0:".repeat(33));
        error(
            &format!("hosts: [a.com]\naddresses: [\"{long}\"]\n{HTTP}"),
            "spec.addresses[0]",
            "Too long: may not be more than 64 bytes",
        );
    }

    #[test]
    fn cidr_needs_none_or_static() {
        let r = error(
            &format!("hosts: [a.com]\naddresses: [1.1.1.1, 10.0.0.0/8]\n{HTTP}\nresolution: DNS"),
            "spec.addresses[1]",
            "CIDR addresses are allowed only for NONE/STATIC resolution types",
        );
        assert_eq!(
            r.errors
                .iter()
                .filter(|i| i.message.contains("CIDR addresses"))
                .count(),
            1,
            "{r:?}"
        );
        valid(&format!(
            "hosts: [a.com]\naddresses: [10.0.0.0/8]\n{HTTP}\nresolution: STATIC"
        ));
    }

    #[test]
    fn ports() {
        let r = error(
            "hosts: [a.com]\nports:\n- {number: 80, name: http, protocol: HTTP}\n- {number: 81, name: http, protocol: HTTP}",
            "spec.ports[1].name",
            "service entry port name \"http\" already defined",
        );
        assert!(has_error_at(
            &r,
            "spec.ports[1]",
            "Duplicate value: {\"name\":\"http\"}"
        ));
        let r = error(
            "hosts: [a.com]\nports:\n- {number: 80, name: a, protocol: HTTP}\n- {number: 80, name: b, protocol: HTTP}",
            "spec.ports[1].number",
            "service entry port 80 already defined",
        );
        assert!(has_error_at(
            &r,
            "spec.ports",
            "port number cannot be duplicated"
        ));
        let r = error_once(
            "hosts: [a.com]\nports: [{number: 80, name: a, protocol: HTTP, targetPort: 70000}]",
            "spec.ports[0].targetPort",
            "port must be between 1-65535",
            "port number 70000 must be in the range 1..65535",
        );
        assert!(has_error_at(
            &r,
            "spec.ports[0].targetPort",
            "port must be between 1-65535"
        ));
        let r = error_once(
            "hosts: [a.com]\nports: [{number: 0, name: a, protocol: HTTP}]",
            "spec.ports[0].number",
            "port must be between 1-65535",
            "port number 0 must be in the range 1..65535",
        );
        assert!(has_error_at(
            &r,
            "spec.ports[0].number",
            "port must be between 1-65535"
        ));
        error_once(
            "hosts: [a.com]\nports: [{number: 65536, name: a, protocol: HTTP}]",
            "spec.ports[0].number",
            "port must be between 1-65535",
            "port number 65536 must be in the range 1..65535",
        );
        error(
            "hosts: [a.com]\nports: [{number: 80, name: http_1, protocol: HTTP}]",
            "spec.ports[0].name",
            "invalid port name: http_1",
        );
        let r = error_once(
            "hosts: [a.com]\nports: [{number: 80, protocol: HTTP}]",
            "spec.ports[0].name",
            "Required value",
            "invalid port name: ",
        );
        assert!(has_error_at(&r, "spec.ports[0].name", "Required value"));
        error(
            "hosts: [a.com]\nports: [{number: 80, name: a, protocol: foo}]",
            "spec.ports[0].protocol",
            "unsupported protocol: foo",
        );
        // Upper-case port names and any protocol case are accepted.
        valid("hosts: [a.com]\nports: [{number: 80, name: HTTP-Web, protocol: grpc-web}]");
        let long = "h".repeat(257);
        error(
            &format!("hosts: [a.com]\nports: [{{number: 80, name: a, protocol: {long}}}]"),
            "spec.ports[0].protocol",
            "Too long: may not be more than 256 bytes",
        );
        let many: Vec<String> = (1..=257)
            .map(|i| format!("{{number: {i}, name: p{i}, protocol: HTTP}}"))
            .collect();
        error(
            &format!("hosts: [a.com]\nports: [{}]", many.join(", ")),
            "spec.ports",
            "Too many: 257",
        );
    }

    #[test]
    fn tcp_without_addresses_warns() {
        const MSG: &str = "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled";
        // NONE resolution: no auto-allocation, so both the unset and the TCP port warn.
        let r = warning(
            "hosts: [a.com]\nports:\n- {number: 80, name: a}\n- {number: 81, name: b, protocol: TCP}\n- {number: 82, name: c, protocol: HTTP}",
            "spec.ports[0]",
            MSG,
        );
        assert!(has_warning_at(&r, "spec.ports[1]", MSG));
        assert!(!has_warning_at(&r, "spec.ports[2]", MSG));
        // Only the exact string "TCP" counts.
        let r = check("hosts: [a.com]\nports: [{number: 81, name: b, protocol: tcp}]");
        assert!(!r.has_warning(MSG), "{r:?}");
        // With addresses, or with v2 auto-allocation (resolution other than NONE), no warning.
        let r = check(
            "hosts: [a.com]\naddresses: [1.1.1.1]\nports: [{number: 81, name: b, protocol: TCP}]",
        );
        assert!(!r.has_warning(MSG), "{r:?}");
        let r =
            check("hosts: [a.com]\nports: [{number: 81, name: b, protocol: TCP}]\nresolution: DNS");
        assert!(!r.has_warning(MSG), "{r:?}");
        // Opting out of auto-allocation brings the warning back.
        let r = check_with_labels(
            "networking.istio.io/enable-autoallocate-ip: \"False\"",
            "hosts: [a.com]\nports: [{number: 81, name: b, protocol: TCP}]\nresolution: DNS",
        );
        assert!(has_warning_at(&r, "spec.ports[0]", MSG), "{r:?}");
    }

    #[test]
    fn resolution_none() {
        let r = error_once(
            &format!("hosts: [a.com]\n{HTTP}\nendpoints: [{{address: 1.1.1.1}}]"),
            "spec.endpoints",
            "NONE mode cannot set endpoints",
            "no endpoints should be provided for resolution type none",
        );
        assert!(has_error_at(
            &r,
            "spec.endpoints",
            "NONE mode cannot set endpoints"
        ));
        // An empty list is only rejected by the CRD rule.
        let r = error(
            &format!("hosts: [a.com]\n{HTTP}\nendpoints: []"),
            "spec.endpoints",
            "NONE mode cannot set endpoints",
        );
        assert!(!r.has_error("no endpoints should be provided"), "{r:?}");
        warning(
            &format!("hosts: [a.com]\n{HTTP}\nworkloadSelector: {{labels: {{app: x}}}}"),
            "spec.workloadSelector",
            "workloadSelector should not be set when resolution mode is NONE",
        );
        let r = valid(&format!("hosts: [a.com]\n{HTTP}"));
        assert!(!r.has_warning("workloadSelector should not be set"));
    }

    #[test]
    fn resolution_static_endpoints() {
        let se = |endpoints: &str| {
            format!(
                "hosts: [a.com]\nports:\n- {{number: 80, name: http, protocol: HTTP}}\n- {{number: 81, name: grpc, protocol: GRPC}}\nresolution: STATIC\nendpoints: {endpoints}"
            )
        };
        valid(&se(
            "[{address: 1.1.1.1, ports: {http: 8080, grpc: 9090}, labels: {app: a}}, {address: \"::1\"}]",
        ));
        error(
            &se("[{address: 1.1.1.1}, {address: foo.com}]"),
            "spec.endpoints[1].address",
            "endpoint address \"foo.com\" is not a valid IP address",
        );
        error(
            &se("[{address: 1.1.1.1, ports: {https: 8443}}]"),
            "spec.endpoints[0].ports[https]",
            "endpoint port 8443 is not defined by the service entry",
        );
        error_once(
            &se("[{address: 1.1.1.1, ports: {http: 0}}]"),
            "spec.endpoints[0].ports[http]",
            "port must be between 1-65535",
            "port number 0 must be in the range 1..65535",
        );
        error(
            &se("[{address: 1.1.1.1, labels: {\"-x\": y}}]"),
            "spec.endpoints[0].labels[-x]",
            "invalid tag key: \"-x\"",
        );
        let r = error(
            &se("[{weight: 2}]"),
            "spec.endpoints[0].address",
            "address is required",
        );
        assert!(has_error_at(&r, "spec.endpoints[0]", "Address is required"));
    }

    #[test]
    fn resolution_static_unix_endpoints() {
        valid(&format!(
            "hosts: [a.com]\n{HTTP}\nresolution: STATIC\nendpoints: [{{address: \"unix:///var/run/a.sock\"}}]"
        ));
        valid(&format!(
            "hosts: [a.com]\n{HTTP}\nresolution: STATIC\nendpoints: [{{address: \"unix://@abstract\"}}]"
        ));
        error(
            "hosts: [a.com]\nports:\n- {number: 80, name: http, protocol: HTTP}\n- {number: 81, name: h2, protocol: HTTP}\nresolution: STATIC\nendpoints: [{address: \"unix:///a.sock\"}]",
            "spec.endpoints[0].address",
            "exactly 1 service port required for unix endpoints",
        );
        error(
            "hosts: [a.com]\nresolution: STATIC\nendpoints: [{address: \"unix:///a.sock\"}]",
            "spec.endpoints[0].address",
            "exactly 1 service port required for unix endpoints",
        );
        let r = error(
            &format!(
                "hosts: [a.com]\n{HTTP}\nresolution: STATIC\nendpoints: [{{address: \"unix:///a.sock\", ports: {{http: 80}}}}]"
            ),
            "spec.endpoints[0].ports",
            "unix endpoint unix:///a.sock must not include ports",
        );
        assert!(has_error_at(
            &r,
            "spec.endpoints[0]",
            "UDS may not include ports"
        ));
        let r = error_once(
            &format!(
                "hosts: [a.com]\n{HTTP}\nresolution: STATIC\nendpoints: [{{address: \"unix://var/a.sock\"}}]"
            ),
            "spec.endpoints[0].address",
            "UDS must be an absolute path or abstract socket",
            "var/a.sock is not an absolute path to a file",
        );
        assert!(has_error_at(
            &r,
            "spec.endpoints[0].address",
            "UDS must be an absolute path or abstract socket"
        ));
        let r = error_once(
            &format!(
                "hosts: [a.com]\n{HTTP}\nresolution: STATIC\nendpoints: [{{address: \"unix:///var/\"}}]"
            ),
            "spec.endpoints[0].address",
            "UDS may not be a dir",
            "/var/ is not an absolute path to a file",
        );
        assert!(has_error_at(
            &r,
            "spec.endpoints[0].address",
            "UDS may not be a dir"
        ));
    }

    #[test]
    fn resolution_dns() {
        // Without endpoints, the hosts must be FQDNs; reported once.
        let r = error(
            &format!("hosts: [a.com, \"*.b.com\", \"*.c.com\"]\n{HTTP}\nresolution: DNS"),
            "spec.hosts[1]",
            "hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution mode DNS, domain name \"*.b.com\" invalid",
        );
        assert_eq!(
            r.errors
                .iter()
                .filter(|i| i.message.contains("hosts must be FQDN"))
                .count(),
            1
        );
        error(
            &format!("hosts: [\"*.b.com\"]\n{HTTP}\nresolution: DNS_ROUND_ROBIN"),
            "spec.hosts[0]",
            "if no endpoints are provided for resolution mode DNS_ROUND_ROBIN",
        );
        // With endpoints, wildcard hosts are fine.
        valid(&format!(
            "hosts: [\"*.b.com\"]\n{HTTP}\nresolution: DNS\nendpoints: [{{address: lb.b.com}}]"
        ));
        let ep = |endpoints: &str| {
            format!("hosts: [a.com]\n{HTTP}\nresolution: DNS\nendpoints: {endpoints}")
        };
        valid(&ep(
            "[{address: us.foo.bar.com, ports: {http: 8080}}, {address: 1.1.1.1}]",
        ));
        error(
            &ep("[{address: \"unix:///a.sock\"}]"),
            "spec.endpoints[0].address",
            "endpoint address \"unix:///a.sock\" is not a valid FQDN or an IP address",
        );
        error(
            &ep("[{address: \"*.foo.com\"}]"),
            "spec.endpoints[0].address",
            "endpoint address \"*.foo.com\" is not a valid FQDN or an IP address",
        );
        error(
            &ep("[{address: a.com, ports: {tcp: 80}}]"),
            "spec.endpoints[0].ports[tcp]",
            "endpoint port 80 is not defined by the service entry",
        );
        error_once(
            &ep("[{address: a.com, ports: {http: 70000}}]"),
            "spec.endpoints[0].ports[http]",
            "port must be between 1-65535",
            "port number 70000 must be in the range 1..65535",
        );
        error(
            &ep("[{address: a.com, labels: {app: \"a b\"}}]"),
            "spec.endpoints[0].labels[app]",
            "invalid tag value: \"a b\"",
        );
    }

    #[test]
    fn dns_round_robin_endpoints() {
        let r = error_once(
            &format!(
                "hosts: [a.com]\n{HTTP}\nresolution: DNS_ROUND_ROBIN\nendpoints: [{{address: a.com}}, {{address: b.com}}]"
            ),
            "spec.endpoints",
            "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
            "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
        );
        assert!(has_error_at(
            &r,
            "spec.endpoints",
            "DNS_ROUND_ROBIN mode cannot have multiple endpoints"
        ));
        valid(&format!(
            "hosts: [a.com]\n{HTTP}\nresolution: DNS_ROUND_ROBIN\nendpoints: [{{address: a.com}}]"
        ));
        // DNS accepts several.
        valid(&format!(
            "hosts: [a.com]\n{HTTP}\nresolution: DNS\nendpoints: [{{address: a.com}}, {{address: b.com}}]"
        ));
    }

    #[test]
    fn dns_multiple_hosts_with_address_and_tcp_warns() {
        const MSG: &str = "service entry can not have more than one host specified simultaneously with address and tcp port";
        let r = warning(
            "hosts: [a.com, b.com]\naddresses: [1.1.1.1]\nports: [{number: 443, name: tls, protocol: TLS}]\nresolution: DNS",
            "spec.hosts",
            MSG,
        );
        assert!(r.is_valid(), "{r:?}");
        let r = check(
            "hosts: [a.com]\naddresses: [1.1.1.1]\nports: [{number: 443, name: tls, protocol: TLS}]\nresolution: DNS",
        );
        assert!(!r.has_warning(MSG));
        let r = check(&format!(
            "hosts: [a.com, b.com]\naddresses: [1.1.1.1]\n{HTTP}\nresolution: DNS"
        ));
        assert!(!r.has_warning(MSG));
    }

    #[test]
    fn resolution_dynamic_dns() {
        let ok = "hosts: [\"*.foo.com\"]\nports:\n- {number: 80, name: http, protocol: HTTP}\n- {number: 443, name: tls, protocol: TLS}\n- {number: 81, name: grpc, protocol: GRPC}\n- {number: 82, name: h2, protocol: HTTP2}\nresolution: DYNAMIC_DNS";
        valid(ok);
        error(
            &format!("hosts: [\"*.foo.com\", bar.com]\n{HTTP}\nresolution: DYNAMIC_DNS"),
            "spec.hosts[1]",
            "host must be wildcarded for resolution mode DYNAMIC_DNS",
        );
        let r = error(
            &format!(
                "hosts: [\"*.foo.com\"]\naddresses: [1.1.1.1]\n{HTTP}\nresolution: DYNAMIC_DNS"
            ),
            "spec.addresses",
            "addresses cannot be set for resolution type DYNAMIC_DNS. HTTP route domains will only be generatedfrom the hosts field values",
        );
        assert_eq!(r.errors.len(), 1, "{r:?}");
        error(
            &format!(
                "hosts: [\"*.foo.com\"]\n{HTTP}\nresolution: DYNAMIC_DNS\nendpoints: [{{address: 1.1.1.1}}]"
            ),
            "spec.endpoints",
            "endpoints cannot be set for resolution type DYNAMIC_DNS. Destination IP address determined from hostsfield values",
        );
        error(
            "hosts: [\"*.foo.com\"]\nports: [{number: 80, name: tcp, protocol: TCP}]\nresolution: DYNAMIC_DNS",
            "spec.ports[0].protocol",
            "only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type DYNAMIC_DNS",
        );
        error(
            "hosts: [\"*.foo.com\"]\nports: [{number: 80, name: auto}]\nresolution: DYNAMIC_DNS",
            "spec.ports[0].protocol",
            "only HTTP, TLS, GRPC, and HTTP2 protocols are supported",
        );
    }

    #[test]
    fn dynamic_dns_waypoint() {
        const MSG: &str = "location MESH_INTERNAL with resolution type DYNAMIC_DNS is not supported when using waypoints";
        let spec = format!(
            "hosts: [\"*.foo.com\"]\n{HTTP}\nlocation: MESH_INTERNAL\nresolution: DYNAMIC_DNS"
        );
        let r = check_with_labels("istio.io/use-waypoint: waypoint", &spec);
        assert!(has_error_at(&r, "spec.location", MSG), "{r:?}");
        let r = check_with_labels("istio.io/use-waypoint: none", &spec);
        assert!(r.is_valid(), "{r:?}");
        assert!(check(&spec).is_valid());
        let external = format!("hosts: [\"*.foo.com\"]\n{HTTP}\nresolution: DYNAMIC_DNS");
        let r = check_with_labels("istio.io/use-waypoint: waypoint", &external);
        assert!(r.is_valid(), "{r:?}");
    }

    #[test]
    fn multiple_hosts_need_http_or_tls() {
        const MSG: &str = "multiple hosts provided with non-HTTP, non-TLS ports";
        let r = error(
            "hosts: [a.com, b.com]\nports:\n- {number: 80, name: http, protocol: HTTP}\n- {number: 81, name: tcp, protocol: TCP}\n- {number: 82, name: mongo, protocol: MONGO}\nresolution: DNS",
            "spec.ports[1].protocol",
            MSG,
        );
        assert_eq!(r.errors.iter().filter(|i| i.message == MSG).count(), 1);
        error(
            "hosts: [a.com, b.com]\nports: [{number: 81, name: auto}]\nresolution: STATIC",
            "spec.ports[0].protocol",
            MSG,
        );
        // NONE ignores the hosts.
        no_error(
            "hosts: [a.com, b.com]\nports: [{number: 81, name: tcp, protocol: TCP}]",
            MSG,
        );
    }

    #[test]
    fn export_to() {
        valid(&format!("hosts: [a.com]\n{HTTP}\nexportTo: [\"~\"]"));
        valid(&format!("hosts: [a.com]\n{HTTP}\nexportTo: [\".\", other]"));
        error(
            &format!("hosts: [a.com]\n{HTTP}\nexportTo: [\"~\", other]"),
            "spec.exportTo",
            "cannot export service entry to no one (~) and someone",
        );
        error(
            &format!("hosts: [a.com]\n{HTTP}\nexportTo: [\".\", ns]"),
            "spec.exportTo[1]",
            "duplicate entries in exportTo: . and current namespace ns",
        );
        error(
            &format!("hosts: [a.com]\n{HTTP}\nexportTo: [Bad_NS]"),
            "spec.exportTo[0]",
            "only .,*, or a valid DNS 1123 label is allowed as exportTo entry",
        );
        error(
            &format!("hosts: [a.com]\n{HTTP}\nexportTo: [\"*\", a]"),
            "spec.exportTo",
            "cannot have both public (*) and non-public exportTo values for a resource",
        );
    }

    #[test]
    fn endpoint_crd_rules_apply_in_every_mode() {
        // The WorkloadEntry CRD rules hold for inline endpoints even where Go skips them.
        let r = check(&format!(
            "hosts: [\"*.foo.com\"]\n{HTTP}\nresolution: DYNAMIC_DNS\nendpoints: [{{address: \"unix://x/\"}}]"
        ));
        assert!(has_error_at(
            &r,
            "spec.endpoints[0].address",
            "UDS may not be a dir"
        ));
        let many: Vec<String> = (0..4097)
            .map(|_| "{address: 1.1.1.1}".to_string())
            .collect();
        error(
            &format!(
                "hosts: [a.com]\n{HTTP}\nresolution: STATIC\nendpoints: [{}]",
                many.join(", ")
            ),
            "spec.endpoints",
            "Too many: 4097: must have at most 4096 items",
        );
    }

    #[test]
    fn auto_allocation_predicate() {
        use super::v2_auto_allocates;
        use crate::api::{Resolution, ServiceEntry};
        use std::collections::BTreeMap;
        let mut se = ServiceEntry {
            resolution: Resolution::Dns,
            ..Default::default()
        };
        let mut labels = BTreeMap::new();
        assert!(v2_auto_allocates(&se, &labels));
        labels.insert(
            super::ENABLE_AUTOALLOCATE_IP_LABEL.to_string(),
            "FALSE".into(),
        );
        assert!(!v2_auto_allocates(&se, &labels));
        labels.clear();
        se.addresses.push("1.1.1.1".into());
        assert!(!v2_auto_allocates(&se, &labels));
        se.addresses.clear();
        se.resolution = Resolution::None;
        assert!(!v2_auto_allocates(&se, &labels));
    }
}

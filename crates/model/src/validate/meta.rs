//! Checks on the Kubernetes envelope: names and Istio's annotation rules.

use crate::config::{Config, ObjectMeta};
use crate::diag::Report;
use crate::validate::common::is_dns1123_subdomain;

/// Checks metadata as the API server would (name present and a DNS-1123 subdomain).
pub fn check(meta: &ObjectMeta, report: &mut Report) {
    if meta.name.is_empty() {
        report.error("metadata.name", "Required value: name is required");
    } else if !is_dns1123_subdomain(&meta.name) {
        report.error(
            "metadata.name",
            format!(
                "Invalid value: \"{}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                meta.name
            ),
        );
    }
    if !meta.namespace.is_empty()
        && !crate::validate::common::is_dns1123_label_lower(&meta.namespace)
    {
        report.error(
            "metadata.namespace",
            format!("Invalid value: \"{}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character", meta.namespace),
        );
    }
}

/// Annotations Istio rejects on every networking kind.
pub fn check_annotations(config: &Config, report: &mut Report) {
    let ann = &config.meta.annotations;
    let key = format!("{}/{}", config.meta.namespace, config.meta.name);
    // `istio.io/dry-run` is only meaningful on AuthorizationPolicy, which is not a kind here.
    if ann.contains_key("istio.io/dry-run") {
        report.error(
            "metadata.annotations[istio.io/dry-run]",
            format!(
                "{key} has unsupported annotation istio.io/dry-run, please remove the annotation"
            ),
        );
    }
    for internal in [
        "internal.istio.io/parent-namespace",
        "internal.istio.io/parent-names",
    ] {
        if ann.contains_key(internal) {
            report.error(
                format!("metadata.annotations[{internal}]"),
                format!(
                    "{key} has unsupported annotation {internal}, please remove the annotation"
                ),
            );
        }
    }
    const ALWAYS_REJECT: &str = "internal.istio.io/webhook-always-reject";
    if ann.contains_key(ALWAYS_REJECT) {
        report.error(
            format!("metadata.annotations[{ALWAYS_REJECT}]"),
            "rejected by the always-reject test annotation",
        );
    }
}

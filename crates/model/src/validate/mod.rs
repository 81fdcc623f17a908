//! Validation equal to Istio's: the CRD schema and CEL rules plus Istio's semantic checks
//! (`pkg/config/validation`), with Istio's messages and a field path per problem.
//!
//! Each kind has its own module; shared rules (host names, labels, exportTo, durations)
//! live in [`common`]. Validators never stop at the first problem unless Istio does.

pub mod common;
pub mod destination_rule;
pub mod meta;
pub mod peer_authentication;
pub mod service_entry;
pub mod sidecar;
pub mod virtual_service;
pub mod workload_entry;

use crate::api::MeshConfig;
use crate::config::{Config, Spec};
use crate::diag::Report;

/// Validates one decoded object against Istio's rules for its kind.
pub fn validate(config: &Config, mesh: &MeshConfig) -> Report {
    let mut report = Report::default();
    meta::check_annotations(config, &mut report);
    let ctx = Context {
        namespace: &config.meta.namespace,
        name: &config.meta.name,
        labels: &config.meta.labels,
        mesh,
    };
    match &config.spec {
        Spec::ServiceEntry(s) => service_entry::validate(s, &ctx, &mut report),
        Spec::WorkloadEntry(s) => workload_entry::validate(s, &ctx, &mut report),
        Spec::VirtualService(s) => virtual_service::validate(s, &ctx, &mut report),
        Spec::DestinationRule(s) => destination_rule::validate(s, &ctx, &mut report),
        Spec::Sidecar(s) => sidecar::validate(s, &ctx, &mut report),
        Spec::PeerAuthentication(s) => peer_authentication::validate(s, &ctx, &mut report),
    }
    report
}

/// What a validator may need to know beyond the spec.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The object's namespace.
    pub namespace: &'a str,
    /// The object's name.
    pub name: &'a str,
    /// The object's metadata labels.
    pub labels: &'a std::collections::BTreeMap<String, String>,
    /// Mesh-wide settings (auto-allocation, defaults).
    pub mesh: &'a MeshConfig,
}

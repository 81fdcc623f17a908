//! WorkloadEntry validation.

use crate::api;
use crate::diag::Report;
use crate::validate::Context;

/// Validates a WorkloadEntry spec.
pub fn validate(_spec: &api::WorkloadEntry, _ctx: &Context<'_>, _report: &mut Report) {}

//! entryway-xds: the Envoy configuration of each proxy, as istiod would generate it, on
//! `envoy-types`.
//!
//! - [`generator`]: the one generation path: listeners, routes, clusters and endpoints of a
//!   proxy from its scope, each resource encoded once, canonically.
//! - [`canonical`]: deterministic encoding (map entries sorted) and content versions.
//! - [`dump`]: Envoy `/config_dump` JSON, YAML and summary tables of a generated configuration.
//! - [`json`]: canonical proto3 JSON for Envoy protos, as Envoy's admin `/config_dump` prints
//!   them (proto field names, `@type` for `Any`, defaults omitted), and the reverse mapping.

pub mod canonical;
pub mod dump;
pub mod generator;
pub mod json;

pub use json::{JsonError, any_to_json, from_json_value, to_json_value};

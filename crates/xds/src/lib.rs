//! entryway-xds: Envoy xDS wire helpers built on `envoy-types`.
//!
//! - [`json`]: canonical proto3 JSON for Envoy protos, as Envoy's admin `/config_dump` prints
//!   them (proto field names, `@type` for `Any`, defaults omitted), and the reverse mapping.

pub mod dump;
pub mod generator;
pub mod json;

pub use json::{JsonError, any_to_json, from_json_value, to_json_value};

//! Typed Istio networking API: the `spec` of ServiceEntry, WorkloadEntry, VirtualService,
//! DestinationRule and Sidecar, plus the traffic-relevant part of `MeshConfig`.
//!
//! The Kubernetes envelope (apiVersion/kind/metadata) is handled by [`crate::decode`]. Field
//! names are the proto3 JSON names; decoding is strict (unknown fields are errors, as with
//! the Kubernetes API server's strict decoding). Conventions:
//!
//! * proto3 scalars without presence are plain values (default when absent or `null`, omitted
//!   when default on output); wrapper types, messages and `Duration` are `Option`s.
//! * oneofs are separate `Option` fields on the parent; validation checks "at most one".
//! * enums decode from the proto name or number (int-or-string, like Istio's CRDs) and encode as names.
//! * `ServiceEntry.endpoints` is `Option<Vec<_>>`: absent and `[]` differ (CRD rule).
//! * port protocols stay strings; [`Protocol::parse`] classifies them.

#![warn(missing_docs)]

pub mod common;
pub mod destination_rule;
pub mod mesh;
pub mod peer_authentication;
pub mod service_entry;
pub mod sidecar;
pub mod virtual_service;
pub mod workload_entry;

pub use common::{
    Duration, DurationError, Percent, Protocol, WorkloadSelector, decode_base64, type_v1beta1,
};
pub use destination_rule::*;
pub use mesh::*;
pub use peer_authentication::{MtlsMode, MutualTls, PeerAuthentication};
pub use service_entry::*;
pub use sidecar::*;
pub use virtual_service::*;
pub use workload_entry::*;

//! entryway-agent: the sidecar side of Entryway.
//!
//! - [`envoy_bin`]: locate the Envoy binary (`--envoy`, `ENVOY_BIN`, `PATH`, the project venv).
//! - [`bootstrap`]: the typed Envoy bootstrap that `entryway proxy` writes.

pub mod bootstrap;
pub mod envoy_bin;

pub use bootstrap::{
    AdsApiType, AdsOptions, BootstrapOptions, XdsAddress, minimal_static_bootstrap,
};
pub use envoy_bin::{EnvoyNotFound, find_envoy};

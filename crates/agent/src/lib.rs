//! entryway-agent: the sidecar side of Entryway.
//!
//! - [`capture`]: Istio's sidecar outbound capture (iptables rules to Envoy's 15001, DNS
//!   to the DNS proxy), built from a config, applied and removed in the current namespace.
//! - [`envoy_bin`]: locate the Envoy binary (`--envoy`, `ENVOY_BIN`, `PATH`, the project venv).
//! - [`bootstrap`]: the typed Envoy bootstrap that `entryway proxy` writes.
//! - [`node_meta`]: the `node.metadata` keys shared with the control plane.
//! - [`nds`]: the DNS name table from the control plane (NDS client).
//! - [`dns`]: the DNS proxy answering from that table (spec §8).
//! - [`sds`]: the local SDS server Envoy gets its secrets from (mesh identity, CA bundles,
//!   client certificates), on a Unix socket the bootstrap's `sds-grpc` cluster points at.
//! - [`supervisor`]: the agent core: [`ProxyAgentConfig`] (flags and environment),
//!   [`Supervisor`] (runs Envoy, restarts it with back-off, drains it on shutdown).

pub mod bootstrap;
pub mod capture;
pub mod dns;
pub mod envoy_bin;
pub mod mesh;
pub mod nds;
pub mod net;
pub mod sds;
pub mod supervisor;

pub use bootstrap::{
    AdsApiType, AdsOptions, BootstrapOptions, SDS_CLUSTER_NAME, XdsAddress,
    minimal_static_bootstrap,
};
pub use capture::{Capture, CaptureConfig, CaptureError};
pub use entryway_contract::{NodeMeta, node_meta};
pub use envoy_bin::{EnvoyNotFound, find_envoy};
pub use sds::{MeshIdentity, SdsHandle, SdsOptions, SdsServer};
pub use supervisor::{
    Backoff, EnvoyLaunch, EnvoyPhase, EnvoyStatus, ProxyAgentConfig, Supervisor, SupervisorError,
    SupervisorExit, SupervisorOptions, shutdown_signal,
};

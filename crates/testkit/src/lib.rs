//! entryway-testkit: test-only helpers (never a dependency of shipped crates).
//!
//! - [`EnvoyHarness`] / [`EnvoyProcess`]: real Envoy processes with their own base id, temp
//!   dir and kernel-chosen admin port; admin API helpers; `--mode validate`.
//! - [`HttpUpstream`]: a local HTTP/1.1 server that counts and records requests.
//! - [`TlsUpstream`]: a local HTTPS server for one SNI host with a throw-away CA (`openssl`).
//! - [`http_get`] / [`http::send`]: a minimal HTTP/1.1 client for admin and proxied requests.
//! - [`eventually`] / [`eventually_ok`]: bounded polling; [`free_port`].
//! - [`fixtures`]: static listener and cluster JSON.
//! - [`netns`]: network namespaces, veth pairs and [`netns::Lan`] (several hosts on a bridge).
//! - [`Spawned`]: a child process with a log file, stopped by SIGTERM on drop.
//! - [`mesh::ThreeHosts`]: a control plane and two VMs on three hosts, with real agents.
//!
//! A test that needs Envoy calls [`EnvoyHarness::require`]: a missing Envoy fails the test
//! with the install hint, it is never skipped.

pub mod envoy;
pub mod fixtures;
pub mod http;
pub mod mesh;
pub mod netns;
pub mod poll;
pub mod process;
pub mod tls;
pub mod upstream;

pub use envoy::{EnvoyHarness, EnvoyOptions, EnvoyProcess, HarnessError, next_base_id};
pub use http::{HttpResponse, http_get};
pub use poll::{Timeout, eventually, eventually_ok, free_port};
pub use process::Spawned;
pub use tls::{TLS_UPSTREAM_PATH, TlsUpstream};
pub use upstream::{HttpUpstream, RecordedRequest, UPSTREAM_NAME_HEADER};

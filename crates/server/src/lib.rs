//! The Entryway control plane: configuration sources, the store of last good config,
//! push, the ADS server and the admin endpoints.
//!
//! Data flow: `files` → [`store`] (validate per document, keep the last good version of each
//! resource, publish a [`snapshot::Snapshot`] on a `tokio::sync::watch` channel, debounced by
//! [`watch`]) → [`ads`] (one task per Envoy stream: generate that proxy's config from the
//! snapshot, diff, push) → Envoy. [`admin`] reads [`shared::Shared`] to serve `/ready`,
//! `/metrics` and `/debug/*`.

pub mod admin;
pub mod ads;
pub mod ca;
pub mod files;
pub mod metrics;
pub mod persist;
pub mod secure;
pub mod shared;
pub mod snapshot;
pub mod store;
pub mod watch;
pub mod withdrawal;

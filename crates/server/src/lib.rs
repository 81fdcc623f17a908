//! The Entryway control plane: configuration sources, the store of last good config,
//! push, the ADS server and the admin endpoints.

pub mod files;

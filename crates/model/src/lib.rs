//! Entryway's pure model of Istio networking configuration.
//!
//! This crate performs no I/O: it turns text already read into typed resources
//! ([`decode`], [`api`]), checks them as Istio does ([`validate`], [`check`]), and
//! indexes them. Everything that touches files, sockets or processes lives in other crates.

pub mod api;
pub mod check;
pub mod config;
pub mod decode;
pub mod diag;
pub mod linemap;
pub mod registry;
pub mod validate;

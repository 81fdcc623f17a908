//! Entryway's pure model of Istio networking configuration.
//!
//! This crate performs no I/O: it turns bytes already read into typed resources
//! ([`api`]), checks them as Istio does, and indexes them. Everything that touches
//! files, sockets or processes lives in other crates.

pub mod api;

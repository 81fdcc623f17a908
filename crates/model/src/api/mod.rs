//! Istio API types (filled in by the types work).

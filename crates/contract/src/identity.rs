//! SPIFFE identities of workloads, in Istio's form
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>` (istio `pkg/spiffe`).

use std::fmt;

/// Istio's default trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// The service account of a workload that names none (Kubernetes' default).
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// URI scheme prefix.
pub const SCHEME: &str = "spiffe://";

/// A workload identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    /// Trust domain (`cluster.local`).
    pub trust_domain: String,
    /// Namespace.
    pub namespace: String,
    /// Service account.
    pub service_account: String,
}

/// A URI that is not an Istio workload identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{uri:?} is not a SPIFFE workload identity (expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>): {reason}"
)]
pub struct SpiffeIdError {
    /// The URI (at most 256 bytes of it).
    pub uri: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl SpiffeId {
    /// An identity from its parts.
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> SpiffeId {
        SpiffeId {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        }
    }

    /// Parses `spiffe://td/ns/<ns>/sa/<sa>`.
    pub fn parse(uri: &str) -> Result<SpiffeId, SpiffeIdError> {
        let err = |reason| SpiffeIdError {
            uri: bounded(uri, 256),
            reason,
        };
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| err("no spiffe:// scheme"))?;
        let mut parts = rest.split('/');
        let td = parts.next().unwrap_or_default();
        let (ns_key, ns, sa_key, sa) = (parts.next(), parts.next(), parts.next(), parts.next());
        if parts.next().is_some() {
            return Err(err("extra path segments"));
        }
        if td.is_empty() {
            return Err(err("empty trust domain"));
        }
        match (ns_key, ns, sa_key, sa) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa)) if !ns.is_empty() && !sa.is_empty() => {
                Ok(SpiffeId::new(td, ns, sa))
            }
            _ => Err(err("the path is not /ns/<namespace>/sa/<service-account>")),
        }
    }

    /// The URI form.
    pub fn uri(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

/// At most `max` bytes of `s` (cut at a character boundary), with `...` and the full length
/// when it was cut: echoes of peer input stay bounded.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_istio_form() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/cart").expect("parses");
        assert_eq!(id, SpiffeId::new("cluster.local", "shop", "cart"));
        assert_eq!(id.uri(), "spiffe://cluster.local/ns/shop/sa/cart");
    }

    #[test]
    fn rejects_other_uris_with_a_reason() {
        for (uri, reason) in [
            ("https://cluster.local/ns/a/sa/b", "no spiffe:// scheme"),
            ("spiffe:///ns/a/sa/b", "empty trust domain"),
            (
                "spiffe://td/ns/a",
                "the path is not /ns/<namespace>/sa/<service-account>",
            ),
            (
                "spiffe://td/ns//sa/b",
                "the path is not /ns/<namespace>/sa/<service-account>",
            ),
            ("spiffe://td/ns/a/sa/b/c", "extra path segments"),
        ] {
            assert_eq!(
                SpiffeId::parse(uri).map_err(|e| e.reason),
                Err(reason),
                "{uri}"
            );
        }
        let long = format!("spiffe://{}", "x".repeat(10_000));
        let e = SpiffeId::parse(&format!("{long}/ns")).expect_err("bad");
        assert!(e.to_string().len() < 600, "bounded echo");
    }
}

//! The contract between Entryway's control plane (`entryway serve`) and its sidecar agent
//! (`entryway proxy`): what one side writes and the other reads. Neither crate depends on the
//! other; both depend on this one, so `serve` links no sidecar code and the agent no server
//! code.
//!
//! - [`node_meta`]: the `node.metadata` keys of the Envoy bootstrap (and of the agent's own
//!   streams), Istio's names.
//! - [`nds`]: the DNS name table (`istio.networking.nds.v1.NameTable`).
//! - [`ca`]: Istio's certificate API (`istio.v1.auth.IstioCertificateService`).
//! - [`identity`]: SPIFFE identities (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>`).
//! - the ports and names both sides agree on (below).

pub mod ca;
pub mod identity;
pub mod nds;
pub mod node_meta;

pub use identity::{DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN, SpiffeId};
pub use node_meta::NodeMeta;

/// Istio's plaintext xDS port (loopback only by default in Entryway).
pub const PLAINTEXT_XDS_PORT: u16 = 15010;
/// Istio's secure port: xDS and the certificate API over TLS.
pub const SECURE_XDS_PORT: u16 = 15012;
/// The DNS name the control plane's serving certificate carries and the agent verifies by
/// default (istiod's, so an Istio VM setup that maps it in `/etc/hosts` works unchanged).
pub const DEFAULT_CONTROL_PLANE_NAME: &str = "istiod.istio-system.svc";
/// gRPC metadata key of the join credential (`authorization: Bearer <token>`, as Istio's
/// agent sends its Kubernetes JWT).
pub const AUTHORIZATION_HEADER: &str = "authorization";

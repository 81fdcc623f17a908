//! Configuration objects: the Kubernetes envelope (apiVersion, kind, metadata) around an
//! Istio spec, and the kinds Entryway understands.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::api;

/// The Istio networking API group.
pub const GROUP: &str = "networking.istio.io";

/// The API versions of the group that Entryway accepts, newest first.
pub const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

/// The Istio security API group (PeerAuthentication).
pub const SECURITY_GROUP: &str = "security.istio.io";

/// The API versions of the security group that Entryway accepts, newest first.
pub const SECURITY_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// The resource kinds Entryway reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// `ServiceEntry`: adds entries to the service registry.
    ServiceEntry,
    /// `WorkloadEntry`: a non-Kubernetes workload (a VM, a bare-metal host).
    WorkloadEntry,
    /// `VirtualService`: routing rules.
    VirtualService,
    /// `DestinationRule`: policies applied after routing.
    DestinationRule,
    /// `Sidecar`: scoping of what a proxy sees.
    Sidecar,
    /// `PeerAuthentication` (`security.istio.io`): the mutual-TLS mode of inbound traffic.
    PeerAuthentication,
}

impl Kind {
    /// Every kind, in the order they are processed.
    pub const ALL: [Kind; 6] = [
        Kind::ServiceEntry,
        Kind::WorkloadEntry,
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::Sidecar,
        Kind::PeerAuthentication,
    ];

    /// The API group of the kind.
    pub fn group(self) -> &'static str {
        match self {
            Kind::PeerAuthentication => SECURITY_GROUP,
            _ => GROUP,
        }
    }

    /// The API versions of the kind that Entryway accepts, newest first.
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            Kind::PeerAuthentication => &SECURITY_VERSIONS,
            _ => &VERSIONS,
        }
    }

    /// The kind's name as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::Sidecar => "Sidecar",
            Kind::PeerAuthentication => "PeerAuthentication",
        }
    }

    /// The kind named `s`, if Entryway reads it.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kubernetes object metadata (the fields a manifest may carry).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Object name, unique per kind and namespace.
    #[serde(default)]
    pub name: String,
    /// Prefix for server-generated names (not used here; accepted for compatibility).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub generate_name: String,
    /// Namespace; empty means the default namespace of the source.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Server-assigned unique id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Server-assigned version of the object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// Generation of the desired state.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub generation: i64,
    /// Creation time (RFC 3339); orders otherwise-equal configs (oldest wins, as in Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// Deletion time, when the object is being deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    /// Grace period before deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    /// Finalizers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Owner references (kept as given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<serde_json::Value>,
    /// Server-side apply bookkeeping (kept as given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_fields: Vec<serde_json::Value>,
    /// Deprecated self link.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub self_link: String,
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// The spec of a configuration object, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// A ServiceEntry spec.
    ServiceEntry(Box<api::ServiceEntry>),
    /// A WorkloadEntry spec.
    WorkloadEntry(Box<api::WorkloadEntry>),
    /// A VirtualService spec.
    VirtualService(Box<api::VirtualService>),
    /// A DestinationRule spec.
    DestinationRule(Box<api::DestinationRule>),
    /// A Sidecar spec.
    Sidecar(Box<api::Sidecar>),
    /// A PeerAuthentication spec.
    PeerAuthentication(Box<api::PeerAuthentication>),
}

impl Spec {
    /// The kind of this spec.
    pub fn kind(&self) -> Kind {
        match self {
            Spec::ServiceEntry(_) => Kind::ServiceEntry,
            Spec::WorkloadEntry(_) => Kind::WorkloadEntry,
            Spec::VirtualService(_) => Kind::VirtualService,
            Spec::DestinationRule(_) => Kind::DestinationRule,
            Spec::Sidecar(_) => Kind::Sidecar,
            Spec::PeerAuthentication(_) => Kind::PeerAuthentication,
        }
    }
}

/// One decoded configuration object.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `apiVersion` as written (e.g. `networking.istio.io/v1beta1`).
    pub api_version: String,
    /// Metadata, with `namespace` filled in.
    pub meta: ObjectMeta,
    /// The typed spec.
    pub spec: Spec,
}

impl Config {
    /// The kind of the object.
    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }

    /// The object as a Kubernetes manifest (`apiVersion`, `kind`, `metadata`, `spec`), in the
    /// form [`crate::decode::decode_value`] reads back to an equal `Config`: the control
    /// plane persists its last good configuration this way.
    pub fn to_document(&self) -> Result<serde_json::Value, serde_json::Error> {
        let spec = match &self.spec {
            Spec::ServiceEntry(s) => serde_json::to_value(s)?,
            Spec::WorkloadEntry(s) => serde_json::to_value(s)?,
            Spec::VirtualService(s) => serde_json::to_value(s)?,
            Spec::DestinationRule(s) => serde_json::to_value(s)?,
            Spec::Sidecar(s) => serde_json::to_value(s)?,
            Spec::PeerAuthentication(s) => serde_json::to_value(s)?,
        };
        Ok(serde_json::json!({
            "apiVersion": self.api_version,
            "kind": self.kind().as_str(),
            "metadata": serde_json::to_value(&self.meta)?,
            "spec": spec,
        }))
    }

    /// `namespace/name`.
    pub fn key(&self) -> ConfigKey {
        ConfigKey {
            kind: self.kind(),
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
        }
    }
}

/// Identity of a configuration object: kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConfigKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

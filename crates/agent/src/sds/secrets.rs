//! What the SDS server serves: secret names as istiod writes them, the proxy's mesh identity,
//! and building Envoy `Secret`s from them.
//!
//! Names (the SDS resource names in the clusters Entryway generates, as in Istio):
//!
//! | name | secret |
//! | --- | --- |
//! | `default` | the proxy's workload certificate chain and key ([`MeshIdentity`]) |
//! | `ROOTCA` | validation context trusting the mesh root |
//! | `file-root:system` | validation context trusting the system CA bundle |
//! | `file-root:<path>` | validation context trusting the PEM bundle at `<path>` |
//! | `file-cert:<cert>~<key>` | certificate chain and private key from those PEM files |
//!
//! Files are read when a secret is built (on each request and each refresh), so a rewritten
//! file is served again; the bytes go inline into the secret (Envoy then needs no access to
//! the file and the agent sees every change it serves).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret,
};

/// SDS resource of the workload certificate.
pub const WORKLOAD_SECRET: &str = "default";
/// SDS resource of the mesh root certificate.
pub const ROOT_SECRET: &str = "ROOTCA";
/// Prefix of CA-bundle resources (`file-root:<path>` or `file-root:system`).
pub const FILE_ROOT_PREFIX: &str = "file-root:";
/// Prefix of client-certificate resources (`file-cert:<cert>~<key>`).
pub const FILE_CERT_PREFIX: &str = "file-cert:";
/// `file-root:` target meaning the system CA bundle.
pub const SYSTEM_ROOT: &str = "system";
pub use entryway_contract::{DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN};

/// Where system CA bundles live on common distributions (the first existing one is served
/// for `file-root:system`; the same list Go's `crypto/x509` and Istio's agent search).
pub const SYSTEM_CA_CANDIDATES: [&str; 6] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A secret that cannot be served, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDS secret {name:?}: {reason}")]
pub struct SecretError {
    /// The requested resource name.
    pub name: String,
    /// Why it cannot be served.
    pub reason: String,
}

impl SecretError {
    fn new(name: &str, reason: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A parsed SDS resource name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretName {
    /// `default`: the workload certificate.
    Workload,
    /// `ROOTCA`: the mesh root.
    Root,
    /// `file-root:system`: the system CA bundle.
    SystemRoot,
    /// `file-root:<path>`: a CA bundle file.
    FileRoot(PathBuf),
    /// `file-cert:<cert>~<key>`: a certificate chain and key from files.
    FileCert {
        /// Certificate chain (PEM).
        cert: PathBuf,
        /// Private key (PEM).
        key: PathBuf,
    },
}

impl SecretName {
    /// Parses a resource name; names this agent cannot serve are errors that say why.
    pub fn parse(name: &str) -> Result<Self, SecretError> {
        if name == WORKLOAD_SECRET {
            return Ok(Self::Workload);
        }
        if name == ROOT_SECRET {
            return Ok(Self::Root);
        }
        if let Some(path) = name.strip_prefix(FILE_ROOT_PREFIX) {
            return match path {
                "" => Err(SecretError::new(
                    name,
                    "empty path after \"file-root:\" (expected file-root:<path> or file-root:system)",
                )),
                SYSTEM_ROOT => Ok(Self::SystemRoot),
                path => Ok(Self::FileRoot(PathBuf::from(path))),
            };
        }
        if let Some(rest) = name.strip_prefix(FILE_CERT_PREFIX) {
            let bad = || {
                SecretError::new(
                    name,
                    "expected file-cert:<certificate path>~<private key path>",
                )
            };
            let (cert, key) = rest.split_once('~').ok_or_else(bad)?;
            if cert.is_empty() || key.is_empty() || key.contains('~') {
                return Err(bad());
            }
            return Ok(Self::FileCert {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            });
        }
        let reason = if name.contains("://") {
            "credential references (e.g. kubernetes:// secrets) are not supported by this agent; \
             use DestinationRule tls.caCertificates / clientCertificate / privateKey files"
        } else {
            "unknown SDS resource (served: default, ROOTCA, file-root:<path>, file-root:system, \
             file-cert:<cert>~<key>)"
        };
        Err(SecretError::new(name, reason))
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Workload => f.write_str(WORKLOAD_SECRET),
            Self::Root => f.write_str(ROOT_SECRET),
            Self::SystemRoot => write!(f, "{FILE_ROOT_PREFIX}{SYSTEM_ROOT}"),
            Self::FileRoot(p) => write!(f, "{FILE_ROOT_PREFIX}{}", p.display()),
            Self::FileCert { cert, key } => {
                write!(f, "{FILE_CERT_PREFIX}{}~{}", cert.display(), key.display())
            }
        }
    }
}

/// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>` (Istio's workload identity).
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    entryway_contract::SpiffeId::new(trust_domain, namespace, service_account).uri()
}

/// Errors creating a [`MeshIdentity`].
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Certificate generation failed.
    #[error("generating the mesh identity for {spiffe_id}: {source}")]
    Generate {
        /// The identity being generated.
        spiffe_id: String,
        /// The underlying error.
        source: rcgen::Error,
    },
    /// Supplied PEM is not what it should be.
    #[error("mesh identity: {0}")]
    InvalidPem(String),
}

/// The proxy's mesh identity: served as `default` (chain and key) and `ROOTCA` (root).
///
/// An agent that joined the mesh holds the certificate the mesh CA signed for it
/// ([`crate::mesh`], built with [`MeshIdentity::from_pem`]). An agent without mesh
/// credentials uses [`MeshIdentity::self_signed`], a fresh root of its own: other agents do
/// not trust it, so `ISTIO_MUTUAL` to their proxies fails verification (clusters still stop
/// warming, which is what lets Envoy ask for listeners).
#[derive(Clone, PartialEq, Eq)]
pub struct MeshIdentity {
    spiffe_id: String,
    cert_chain_pem: String,
    key_pem: String,
    root_pem: String,
    /// Validity of the workload certificate (from the certificate itself).
    validity: Option<(SystemTime, SystemTime)>,
}

impl fmt::Debug for MeshIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshIdentity")
            .field("spiffe_id", &self.spiffe_id)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl MeshIdentity {
    /// A self-signed root (EC P-256) and a workload certificate it signs, with the URI SAN
    /// `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`, for client and server
    /// authentication. See the type documentation for what this does not give.
    pub fn self_signed(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, IdentityError> {
        let id = spiffe_id(trust_domain, namespace, service_account);
        let generate = |source| IdentityError::Generate {
            spiffe_id: id.clone(),
            source,
        };
        let mut root = rcgen::CertificateParams::default();
        root.distinguished_name = rcgen::DistinguishedName::new();
        root.distinguished_name
            .push(rcgen::DnType::OrganizationName, trust_domain);
        root.distinguished_name
            .push(rcgen::DnType::CommonName, "entryway agent self-signed root");
        root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        root.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let root_key = rcgen::KeyPair::generate().map_err(generate)?;
        let root = rcgen::CertifiedIssuer::self_signed(root, root_key).map_err(generate)?;

        let mut leaf = rcgen::CertificateParams::default();
        leaf.distinguished_name = rcgen::DistinguishedName::new();
        leaf.distinguished_name
            .push(rcgen::DnType::OrganizationName, trust_domain);
        let uri = rcgen::string::Ia5String::try_from(id.as_str()).map_err(generate)?;
        leaf.subject_alt_names = vec![rcgen::SanType::URI(uri)];
        leaf.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        leaf.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        leaf.use_authority_key_identifier_extension = true;
        let leaf_key = rcgen::KeyPair::generate().map_err(generate)?;
        let leaf_cert = leaf.signed_by(&leaf_key, &root).map_err(generate)?;

        let cert_chain_pem = leaf_cert.pem();
        Ok(Self {
            validity: validity_of(&cert_chain_pem),
            spiffe_id: id,
            cert_chain_pem,
            key_pem: leaf_key.serialize_pem(),
            root_pem: root.pem(),
        })
    }

    /// An identity issued elsewhere (a shared CA, or a test's own): the workload chain and
    /// key and the root, all PEM. Checks only that each looks like the right PEM block.
    pub fn from_pem(
        spiffe_id: impl Into<String>,
        cert_chain_pem: impl Into<String>,
        key_pem: impl Into<String>,
        root_pem: impl Into<String>,
    ) -> Result<Self, IdentityError> {
        let cert_chain_pem = cert_chain_pem.into();
        let identity = Self {
            spiffe_id: spiffe_id.into(),
            validity: validity_of(&cert_chain_pem),
            cert_chain_pem,
            key_pem: key_pem.into(),
            root_pem: root_pem.into(),
        };
        for (what, pem, check) in [
            (
                "certificate chain",
                &identity.cert_chain_pem,
                has_certificate as fn(&[u8]) -> bool,
            ),
            ("private key", &identity.key_pem, has_private_key),
            ("root certificate", &identity.root_pem, has_certificate),
        ] {
            if !check(pem.as_bytes()) {
                return Err(IdentityError::InvalidPem(format!(
                    "the {what} is not PEM of the expected kind"
                )));
            }
        }
        Ok(identity)
    }

    /// The workload's SPIFFE id (the URI SAN of its certificate).
    pub fn spiffe_id(&self) -> &str {
        &self.spiffe_id
    }

    /// The workload certificate chain (PEM).
    pub fn cert_chain_pem(&self) -> &str {
        &self.cert_chain_pem
    }

    /// The workload private key (PEM).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The mesh root certificate (PEM).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// `(not before, not after)` of the workload certificate, when it parses.
    pub fn validity(&self) -> Option<(SystemTime, SystemTime)> {
        self.validity
    }
}

/// The validity period of the first certificate of a PEM chain.
fn validity_of(chain_pem: &str) -> Option<(SystemTime, SystemTime)> {
    use rustls_pki_types::pem::PemObject as _;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(chain_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let at = |t: i64| {
        SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(u64::try_from(t).ok()?))
    };
    Some((
        at(cert.validity().not_before.timestamp())?,
        at(cert.validity().not_after.timestamp())?,
    ))
}

/// The identity in force, following rotations (a `watch` channel: readers always see the
/// newest certificate; the SDS server pushes each new one to Envoy).
pub type IdentitySource = tokio::sync::watch::Receiver<std::sync::Arc<MeshIdentity>>;

/// A source that never changes (a self-signed or test identity).
pub fn fixed_identity(identity: MeshIdentity) -> IdentitySource {
    let (tx, rx) = tokio::sync::watch::channel(std::sync::Arc::new(identity));
    // The sender is dropped: `changed()` then reports the end, and readers keep the value.
    drop(tx);
    rx
}

/// Builds the secrets the SDS server serves.
#[derive(Debug, Clone)]
pub struct SecretProvider {
    identity: IdentitySource,
    system_ca_candidates: Vec<PathBuf>,
}

impl SecretProvider {
    /// A provider for a fixed `identity` that searches [`SYSTEM_CA_CANDIDATES`].
    pub fn new(identity: MeshIdentity) -> Self {
        Self::following(fixed_identity(identity))
    }

    /// A provider for the identity in force in `source` (rotations included).
    pub fn following(source: IdentitySource) -> Self {
        Self {
            identity: source,
            system_ca_candidates: SYSTEM_CA_CANDIDATES.iter().map(PathBuf::from).collect(),
        }
    }

    /// The identity source (SDS streams wait on it for rotations).
    pub fn identity_source(&self) -> IdentitySource {
        self.identity.clone()
    }

    /// Replaces the list of system CA bundle locations (first existing wins).
    pub fn with_system_ca_candidates(mut self, candidates: Vec<PathBuf>) -> Self {
        self.system_ca_candidates = candidates;
        self
    }

    /// The identity served as `default` / `ROOTCA` now.
    pub fn identity(&self) -> std::sync::Arc<MeshIdentity> {
        std::sync::Arc::clone(&self.identity.borrow())
    }

    /// The system CA bundle in use, if any candidate exists.
    pub fn system_ca(&self) -> Option<&Path> {
        self.system_ca_candidates
            .iter()
            .find(|p| p.is_file())
            .map(PathBuf::as_path)
    }

    /// The secret for a resource name, reading files now.
    pub fn secret(&self, name: &str) -> Result<Secret, SecretError> {
        let parsed = SecretName::parse(name)?;
        let kind = match parsed {
            SecretName::Workload => {
                let id = self.identity();
                tls_certificate(
                    id.cert_chain_pem.as_bytes().to_vec(),
                    id.key_pem.as_bytes().to_vec(),
                )
            }
            SecretName::Root => validation_context(self.identity().root_pem.as_bytes().to_vec()),
            SecretName::SystemRoot => {
                let path = self.system_ca().ok_or_else(|| {
                    SecretError::new(
                        name,
                        format!(
                            "no system CA bundle found (looked for {}); install ca-certificates",
                            self.system_ca_candidates
                                .iter()
                                .map(|p| p.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                validation_context(read_pem(name, path, "CA bundle", has_certificate)?)
            }
            SecretName::FileRoot(path) => {
                validation_context(read_pem(name, &path, "CA bundle", has_certificate)?)
            }
            SecretName::FileCert { cert, key } => tls_certificate(
                read_pem(name, &cert, "certificate chain", has_certificate)?,
                read_pem(name, &key, "private key", has_private_key)?,
            ),
        };
        Ok(Secret {
            name: name.to_owned(),
            r#type: Some(kind),
        })
    }
}

fn inline(bytes: Vec<u8>) -> DataSource {
    DataSource {
        specifier: Some(Specifier::InlineBytes(bytes)),
        ..Default::default()
    }
}

fn validation_context(ca: Vec<u8>) -> secret::Type {
    secret::Type::ValidationContext(CertificateValidationContext {
        trusted_ca: Some(inline(ca)),
        ..Default::default()
    })
}

fn tls_certificate(chain: Vec<u8>, key: Vec<u8>) -> secret::Type {
    secret::Type::TlsCertificate(TlsCertificate {
        certificate_chain: Some(inline(chain)),
        private_key: Some(inline(key)),
        ..Default::default()
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn has_certificate(pem: &[u8]) -> bool {
    contains(pem, b"-----BEGIN CERTIFICATE-----")
}

fn has_private_key(pem: &[u8]) -> bool {
    // PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`).
    contains(pem, b"-----BEGIN ") && contains(pem, b"PRIVATE KEY-----")
}

/// Reads a PEM file for secret `name`; a missing, unreadable or non-PEM file is an error
/// naming the file (Envoy would NACK the secret otherwise, with a less useful message).
fn read_pem(
    name: &str,
    path: &Path,
    what: &str,
    check: fn(&[u8]) -> bool,
) -> Result<Vec<u8>, SecretError> {
    let bytes = std::fs::read(path)
        .map_err(|e| SecretError::new(name, format!("reading {what} {}: {e}", path.display())))?;
    if !check(&bytes) {
        return Err(SecretError::new(
            name,
            format!("{} is not a PEM {what}", path.display()),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn inline_bytes(ds: &Option<DataSource>) -> &[u8] {
        match ds.as_ref().and_then(|d| d.specifier.as_ref()) {
            Some(Specifier::InlineBytes(b)) => b,
            other => panic!("expected inline bytes, got {other:?}"),
        }
    }

    fn trusted_ca(secret: &Secret) -> &[u8] {
        match &secret.r#type {
            Some(secret::Type::ValidationContext(v)) => inline_bytes(&v.trusted_ca),
            other => panic!("expected a validation context, got {other:?}"),
        }
    }

    fn cert_and_key(secret: &Secret) -> (&[u8], &[u8]) {
        match &secret.r#type {
            Some(secret::Type::TlsCertificate(c)) => (
                inline_bytes(&c.certificate_chain),
                inline_bytes(&c.private_key),
            ),
            other => panic!("expected a TLS certificate, got {other:?}"),
        }
    }

    #[test]
    fn parses_istio_resource_names() {
        assert_eq!(SecretName::parse("default"), Ok(SecretName::Workload));
        assert_eq!(SecretName::parse("ROOTCA"), Ok(SecretName::Root));
        assert_eq!(
            SecretName::parse("file-root:system"),
            Ok(SecretName::SystemRoot)
        );
        assert_eq!(
            SecretName::parse("file-root:/etc/certs/ca.pem"),
            Ok(SecretName::FileRoot("/etc/certs/ca.pem".into()))
        );
        assert_eq!(
            SecretName::parse("file-cert:/c/cert.pem~/c/key.pem"),
            Ok(SecretName::FileCert {
                cert: "/c/cert.pem".into(),
                key: "/c/key.pem".into()
            })
        );
        for name in [
            "default",
            "ROOTCA",
            "file-root:system",
            "file-root:/a b/ca.pem",
            "file-cert:/c/cert.pem~/c/key.pem",
        ] {
            assert_eq!(SecretName::parse(name).unwrap().to_string(), name);
        }
    }

    #[test]
    fn rejects_names_it_cannot_serve_with_a_reason() {
        for (name, reason) in [
            ("", "unknown SDS resource"),
            ("rootca", "unknown SDS resource"),
            ("file-root:", "empty path"),
            ("file-cert:/c/cert.pem", "file-cert:<certificate path>~"),
            ("file-cert:~/c/key.pem", "file-cert:<certificate path>~"),
            ("file-cert:/c/cert.pem~", "file-cert:<certificate path>~"),
            ("file-cert:/a~/b~/c", "file-cert:<certificate path>~"),
            ("kubernetes://my-secret", "not supported"),
            ("kubernetes://my-secret-cacert", "not supported"),
        ] {
            let err = SecretName::parse(name).unwrap_err();
            assert_eq!(err.name, name);
            assert!(err.to_string().contains(reason), "{name:?}: {err}");
        }
    }

    #[test]
    fn spiffe_ids_have_istios_form() {
        assert_eq!(
            spiffe_id("cluster.local", "shop", "default"),
            "spiffe://cluster.local/ns/shop/sa/default"
        );
    }

    #[test]
    fn self_signed_identity_is_fresh_pem_per_call() {
        let a = MeshIdentity::self_signed(DEFAULT_TRUST_DOMAIN, "shop", "default").unwrap();
        assert_eq!(a.spiffe_id(), "spiffe://cluster.local/ns/shop/sa/default");
        assert!(has_certificate(a.cert_chain_pem().as_bytes()));
        assert!(has_certificate(a.root_pem().as_bytes()));
        assert!(has_private_key(a.key_pem().as_bytes()));
        assert_ne!(a.cert_chain_pem(), a.root_pem());
        assert!(!format!("{a:?}").contains("PRIVATE"), "Debug leaks the key");
        let b = MeshIdentity::self_signed(DEFAULT_TRUST_DOMAIN, "shop", "default").unwrap();
        assert_ne!(a.root_pem(), b.root_pem());
        // The round trip through from_pem keeps it, and from_pem checks kinds.
        let c =
            MeshIdentity::from_pem(a.spiffe_id(), a.cert_chain_pem(), a.key_pem(), a.root_pem())
                .unwrap();
        assert_eq!(a, c);
        let err = MeshIdentity::from_pem("x", a.key_pem(), a.key_pem(), a.root_pem()).unwrap_err();
        assert!(err.to_string().contains("certificate chain"), "{err}");
    }

    #[test]
    fn builds_mesh_and_file_secrets() {
        let identity =
            MeshIdentity::self_signed(DEFAULT_TRUST_DOMAIN, "default", "default").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&ca, identity.root_pem()).unwrap();
        std::fs::write(&cert, identity.cert_chain_pem()).unwrap();
        std::fs::write(&key, identity.key_pem()).unwrap();
        let p = SecretProvider::new(identity.clone())
            .with_system_ca_candidates(vec![dir.path().join("none.pem"), ca.clone()]);

        let s = p.secret("default").unwrap();
        assert_eq!(s.name, "default");
        assert_eq!(
            cert_and_key(&s),
            (
                identity.cert_chain_pem().as_bytes(),
                identity.key_pem().as_bytes()
            )
        );
        assert_eq!(
            trusted_ca(&p.secret("ROOTCA").unwrap()),
            identity.root_pem().as_bytes()
        );
        assert_eq!(p.system_ca(), Some(ca.as_path()));
        assert_eq!(
            trusted_ca(&p.secret("file-root:system").unwrap()),
            identity.root_pem().as_bytes()
        );

        let name = format!("file-root:{}", ca.display());
        let s = p.secret(&name).unwrap();
        assert_eq!(s.name, name);
        assert_eq!(trusted_ca(&s), identity.root_pem().as_bytes());
        // Read at request time: a rewritten file is what the next secret carries.
        std::fs::write(&ca, identity.cert_chain_pem()).unwrap();
        assert_eq!(
            trusted_ca(&p.secret(&name).unwrap()),
            identity.cert_chain_pem().as_bytes()
        );

        let name = format!("file-cert:{}~{}", cert.display(), key.display());
        let s = p.secret(&name).unwrap();
        assert_eq!(
            cert_and_key(&s),
            (
                identity.cert_chain_pem().as_bytes(),
                identity.key_pem().as_bytes()
            )
        );
    }

    #[test]
    fn unservable_secrets_name_the_file_and_reason() {
        let identity =
            MeshIdentity::self_signed(DEFAULT_TRUST_DOMAIN, "default", "default").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, identity.cert_chain_pem()).unwrap();
        let missing = dir.path().join("missing.pem");
        let p = SecretProvider::new(identity).with_system_ca_candidates(vec![missing.clone()]);

        let err = p
            .secret(&format!("file-root:{}", missing.display()))
            .unwrap_err();
        assert!(err.reason.contains("missing.pem"), "{err}");
        assert!(err.reason.contains("No such file"), "{err}");
        let err = p
            .secret(&format!("file-root:{}", junk.display()))
            .unwrap_err();
        assert!(err.reason.contains("not a PEM CA bundle"), "{err}");
        // A certificate is not a key.
        let err = p
            .secret(&format!("file-cert:{}~{}", cert.display(), cert.display()))
            .unwrap_err();
        assert!(err.reason.contains("not a PEM private key"), "{err}");
        let err = p.secret("file-root:system").unwrap_err();
        assert!(err.reason.contains("no system CA bundle"), "{err}");
        assert!(p.secret("kubernetes://x").is_err());
    }
}

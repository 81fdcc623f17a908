//! The mesh CA: signs workload certificates carrying SPIFFE identities
//! (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>`), as istiod's built-in CA does.
//!
//! ```text
//! --ca-dir DIR (Istio's plug-in CA: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem)
//!     └─ or <state-dir>/ca/ (the same four files, a self-signed root created once and kept)
//!  ──► MeshCa ──► sign_csr (workload certificates, service.rs) / serving_certificate (secure.rs)
//! ```
//!
//! - A plug-in directory that is missing, unreadable or inconsistent (a signing certificate
//!   that is not a CA, a key that does not belong to it) is a start-up error, never a silent
//!   fallback to a new root: every workload would stop trusting the mesh.
//! - The self-signed root is written once (key mode 0600, files moved into place together),
//!   so a restart keeps every workload certificate valid.
//! - The identity in a signed certificate is the caller's authenticated identity, never what
//!   the CSR asks for (Istio's rule); a CSR that asks for another identity is refused.
//! - Chains are returned in Istio's order: the workload certificate, intermediates, the root
//!   last.
//!
//! - [`tokens`]: join credentials (signed tokens bound to a namespace and service account).
//! - [`service`]: `istio.v1.auth.IstioCertificateService/CreateCertificate` over gRPC.

pub mod service;
pub mod tokens;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use entryway_contract::SpiffeId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// Istio's plug-in CA file names (`ROOT_CA_DIR`, the `cacerts` secret).
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// The signing key.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The root(s) workloads trust.
pub const ROOT_CERT_FILE: &str = "root-cert.pem";
/// The chain from the signing certificate towards the root (optional).
pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";

/// Istio's default workload certificate lifetime (`DEFAULT_WORKLOAD_CERT_TTL`).
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 3600);
/// Istio's longest workload certificate lifetime (`MAX_WORKLOAD_CERT_TTL`, 90 days).
pub const MAX_WORKLOAD_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// Lifetime of the self-signed root (Istio's `CITADEL_SELF_SIGNED_CA_CERT_TTL`, 10 years).
pub const SELF_SIGNED_ROOT_TTL: Duration = Duration::from_secs(3650 * 24 * 3600);
/// Certificates are valid from a little before they are signed, so that a peer whose clock is
/// slightly behind accepts them at once.
const BACKDATE: Duration = Duration::from_secs(60);

/// Errors of the CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A CA file cannot be read.
    #[error("CA file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A CA file holds something unusable.
    #[error("CA file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The self-signed root cannot be written.
    #[error("writing the self-signed CA to {path}: {source}")]
    Write {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A request the CA refuses.
    #[error("{0}")]
    Refused(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(#[from] rcgen::Error),
}

/// Where the CA comes from.
#[derive(Debug, Clone)]
pub enum CaSource {
    /// Istio's plug-in CA files in this directory (all required but `cert-chain.pem`).
    PluginDir(PathBuf),
    /// The self-signed root kept in this directory, created on first use.
    SelfSigned(PathBuf),
}

/// Settings of the CA.
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// Where the signing certificate and key come from.
    pub source: CaSource,
    /// The trust domain of the identities signed.
    pub trust_domain: String,
    /// Lifetime of a workload certificate when the request asks for none.
    pub default_ttl: Duration,
    /// The longest lifetime granted.
    pub max_ttl: Duration,
}

/// A signed workload or serving certificate (public material only).
#[derive(Debug, Clone)]
pub struct SignedCertificate {
    /// PEM certificates: the certificate first, intermediates, the root last.
    pub chain: Vec<String>,
    /// End of validity.
    pub not_after: SystemTime,
}

/// A certificate and the private key made for it (the control plane's own serving
/// certificate: the key is made here and never leaves the process).
pub struct ServingCertificate {
    /// The signed chain.
    pub signed: SignedCertificate,
    /// PKCS#8 DER of the private key.
    pub key_der: Vec<u8>,
}

/// The mesh CA.
pub struct MeshCa {
    issuer: Issuer<'static, KeyPair>,
    /// PEM of each certificate between the signing certificate (included, unless it is the
    /// root itself) and the root (excluded).
    intermediates: Vec<String>,
    /// PEM of the roots (what workloads trust, `ROOTCA`).
    roots: Vec<String>,
    options: CaOptions,
    /// Where the CA came from, for logs.
    origin: String,
}

impl std::fmt::Debug for MeshCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the signing key.
        f.debug_struct("MeshCa")
            .field("origin", &self.origin)
            .field("trust_domain", &self.options.trust_domain)
            .finish_non_exhaustive()
    }
}

impl MeshCa {
    /// Loads the CA (creating the self-signed root on first use).
    pub fn load(options: CaOptions) -> Result<MeshCa, CaError> {
        match &options.source {
            CaSource::PluginDir(dir) => {
                let origin = format!("plug-in CA {}", dir.display());
                Self::from_dir(dir, options.clone(), origin)
            }
            CaSource::SelfSigned(dir) => {
                if !dir.join(CA_KEY_FILE).exists() {
                    create_self_signed(dir, &options.trust_domain)?;
                    tracing::info!(dir = %dir.display(), "created a self-signed mesh root");
                }
                let origin = format!("self-signed root in {}", dir.display());
                Self::from_dir(dir, options.clone(), origin)
            }
        }
    }

    fn from_dir(dir: &Path, options: CaOptions, origin: String) -> Result<MeshCa, CaError> {
        let read = |name: &str| -> Result<(PathBuf, String), CaError> {
            let path = dir.join(name);
            fs::read_to_string(&path)
                .map(|s| (path.clone(), s))
                .map_err(|source| CaError::Read { path, source })
        };
        let (cert_path, cert_pem) = read(CA_CERT_FILE)?;
        let (key_path, key_pem) = read(CA_KEY_FILE)?;
        let (root_path, root_pem) = read(ROOT_CERT_FILE)?;
        let chain_pem = match read(CERT_CHAIN_FILE) {
            Ok((path, pem)) => Some((path, pem)),
            Err(CaError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                None
            }
            Err(e) => return Err(e),
        };
        let invalid = |path: &Path, reason: String| CaError::Invalid {
            path: path.to_path_buf(),
            reason,
        };

        let signing = pem_certificates(&cert_pem).map_err(|r| invalid(&cert_path, r))?;
        let Some(signing_der) = signing.first() else {
            return Err(invalid(&cert_path, "no certificate in the file".into()));
        };
        let (_, parsed) = x509_parser::parse_x509_certificate(signing_der)
            .map_err(|e| invalid(&cert_path, format!("not an X.509 certificate: {e}")))?;
        if !parsed.is_ca() {
            return Err(invalid(
                &cert_path,
                "certificate is not authorized to sign other certificates".into(),
            ));
        }
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| invalid(&key_path, format!("not a usable private key: {e}")))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(invalid(
                &key_path,
                format!("the key does not belong to the certificate in {CA_CERT_FILE}"),
            ));
        }
        let roots = pem_certificates(&root_pem).map_err(|r| invalid(&root_path, r))?;
        if roots.is_empty() {
            return Err(invalid(&root_path, "no certificate in the file".into()));
        }
        let intermediates_der = match &chain_pem {
            Some((path, pem)) => pem_certificates(pem).map_err(|r| invalid(path, r))?,
            None => signing.clone(),
        };
        // The chain handed out: everything up to, not including, a root.
        let intermediates: Vec<String> = intermediates_der
            .iter()
            .filter(|c| !roots.iter().any(|r| r == *c))
            .map(|c| der_to_pem(c))
            .collect();
        let issuer = Issuer::from_ca_cert_der(signing_der, key)
            .map_err(|e| invalid(&cert_path, format!("cannot sign with it: {e}")))?;
        Ok(MeshCa {
            issuer,
            intermediates,
            roots: roots.iter().map(|c| der_to_pem(c)).collect(),
            options,
            origin,
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.options.trust_domain
    }

    /// Where the CA came from (for logs).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The roots workloads trust, PEM, concatenated.
    pub fn root_pem(&self) -> String {
        self.roots.concat()
    }

    /// The roots as DER.
    pub fn root_ders(&self) -> Vec<CertificateDer<'static>> {
        self.roots
            .iter()
            .filter_map(|p| CertificateDer::from_pem_slice(p.as_bytes()).ok())
            .collect()
    }

    /// The lifetime granted for a request asking for `requested` seconds (0 or less: the
    /// default); longer than the maximum is refused, as Istio does.
    pub fn ttl_for(&self, requested: i64) -> Result<Duration, CaError> {
        if requested <= 0 {
            return Ok(self.options.default_ttl);
        }
        let asked = Duration::from_secs(requested.unsigned_abs());
        if asked > self.options.max_ttl {
            return Err(CaError::Refused(format!(
                "requested TTL {}s is greater than the max allowed TTL {}s",
                asked.as_secs(),
                self.options.max_ttl.as_secs()
            )));
        }
        Ok(asked)
    }

    /// Signs `csr_pem` for `identity` (the authenticated caller). The certificate carries
    /// only that identity, whatever the CSR asks for; a CSR asking for another URI identity
    /// is refused. The CSR's signature is verified (proof that the caller holds the key).
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &SpiffeId,
        ttl: Duration,
    ) -> Result<SignedCertificate, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            CaError::Refused(format!(
                "the CSR cannot be parsed or its signature is bad: {e}"
            ))
        })?;
        let want = identity.uri();
        for san in &csr.params.subject_alt_names {
            if let SanType::URI(uri) = san
                && uri.as_str() != want
            {
                return Err(CaError::Refused(format!(
                    "the CSR asks for identity {} but the caller is {want}",
                    entryway_contract::identity::bounded(uri.as_str(), 256)
                )));
            }
        }
        if csr.params.is_ca != IsCa::NoCa && csr.params.is_ca != IsCa::ExplicitNoCa {
            return Err(CaError::Refused("the CSR asks for a CA certificate".into()));
        }
        let mut params = leaf_params(ttl)?;
        params.subject_alt_names =
            vec![SanType::URI(want.as_str().try_into().map_err(|e| {
                CaError::Refused(format!("identity {want}: {e}"))
            })?)];
        let signed = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&self.issuer)?;
        Ok(self.chain_with(signed.pem(), ttl))
    }

    /// A serving certificate for the control plane with these DNS names and IPs, and a
    /// fresh key made for it.
    pub fn serving_certificate(
        &self,
        dns_names: &[String],
        ips: &[std::net::IpAddr],
        ttl: Duration,
    ) -> Result<ServingCertificate, CaError> {
        let key = KeyPair::generate()?;
        let mut params = leaf_params(ttl)?;
        for name in dns_names {
            params.subject_alt_names.push(SanType::DnsName(
                name.as_str()
                    .try_into()
                    .map_err(|e| CaError::Refused(format!("DNS name {name:?}: {e}")))?,
            ));
        }
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServingCertificate {
            signed: self.chain_with(cert.pem(), ttl),
            key_der: key.serialize_der(),
        })
    }

    fn chain_with(&self, leaf: String, ttl: Duration) -> SignedCertificate {
        let mut chain = Vec::with_capacity(2 + self.intermediates.len());
        chain.push(leaf);
        chain.extend(self.intermediates.iter().cloned());
        chain.extend(self.roots.iter().cloned());
        SignedCertificate {
            chain,
            not_after: SystemTime::now() + ttl,
        }
    }
}

/// Parameters of a workload/serving certificate: empty subject (as Istio's workload
/// certificates), a random serial, valid from a minute ago for `ttl`, for TLS clients and
/// servers.
fn leaf_params(ttl: Duration) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + ttl;
    params.serial_number = Some(random_serial()?);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| CaError::Refused("the system random source failed".into()))?;
    bytes[0] &= 0x7f; // positive
    Ok(SerialNumber::from_slice(&bytes))
}

/// Every certificate of a PEM bundle, as DER; other PEM sections are an error.
fn pem_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        out.push(item.map_err(|e| format!("not a PEM certificate bundle: {e}"))?);
    }
    Ok(out)
}

fn der_to_pem(der: &[u8]) -> String {
    pem_encode("CERTIFICATE", der)
}

/// PEM armour (64-column base64 lines).
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Creates the self-signed root in `dir` (Istio's `istio-ca-secret`: organisation = the trust
/// domain). The files are written into a temporary sibling directory and moved into place in
/// one rename, so a crash never leaves half a CA.
fn create_self_signed(dir: &Path, trust_domain: &str) -> Result<(), CaError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CaError::Write { path, source }
    };
    let parent = dir.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(write_err(parent))?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, trust_domain);
    dn.push(DnType::CommonName, "Entryway mesh root");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + SELF_SIGNED_ROOT_TTL;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    let tmp = tempfile_dir(parent).map_err(write_err(parent))?;
    let put = |name: &str, body: &str, private: bool| -> Result<(), CaError> {
        let path = tmp.join(name);
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        if private {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(&path).map_err(write_err(&path))?;
        f.write_all(body.as_bytes()).map_err(write_err(&path))?;
        f.sync_all().map_err(write_err(&path))
    };
    put(CA_CERT_FILE, &cert.pem(), false)?;
    put(CA_KEY_FILE, &key.serialize_pem(), true)?;
    put(ROOT_CERT_FILE, &cert.pem(), false)?;
    fs::rename(&tmp, dir).map_err(|source| {
        let _ = fs::remove_dir_all(&tmp);
        CaError::Write {
            path: dir.to_path_buf(),
            source,
        }
    })
}

/// A new private directory next to where the CA goes.
fn tempfile_dir(parent: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    for n in 0..100u32 {
        let path = parent.join(format!(".ca-new-{}-{n}", std::process::id()));
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary directory name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(source: CaSource) -> CaOptions {
        CaOptions {
            source,
            trust_domain: "cluster.local".into(),
            default_ttl: DEFAULT_WORKLOAD_TTL,
            max_ttl: MAX_WORKLOAD_TTL,
        }
    }

    fn csr_for(uri: Option<&str>) -> (String, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if let Some(u) = uri {
            params.subject_alt_names = vec![SanType::URI(u.try_into().expect("uri"))];
        }
        let csr = params.serialize_request(&key).expect("csr");
        (csr.pem().expect("pem"), key)
    }

    fn uris(pem: &str) -> Vec<String> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        cert.subject_alternative_name()
            .expect("san ext")
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .filter_map(|g| match g {
                        x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn self_signed_root_is_created_once_and_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let ca_dir = dir.path().join("ca");
        let a = MeshCa::load(options(CaSource::SelfSigned(ca_dir.clone()))).expect("create");
        let b = MeshCa::load(options(CaSource::SelfSigned(ca_dir.clone()))).expect("reload");
        assert_eq!(a.root_pem(), b.root_pem(), "a restart keeps the root");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(ca_dir.join(CA_KEY_FILE))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(format!("{a:?}").contains("self-signed"));
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }

    #[test]
    fn signs_the_callers_identity_and_refuses_another() {
        let dir = tempfile::tempdir().expect("tmp");
        let ca = MeshCa::load(options(CaSource::SelfSigned(dir.path().join("ca")))).expect("ca");
        let id = SpiffeId::new("cluster.local", "shop", "cart");
        // No SAN in the CSR: the identity comes from the caller.
        let (csr, _) = csr_for(None);
        let signed = ca
            .sign_csr(&csr, &id, Duration::from_secs(60))
            .expect("signed");
        assert_eq!(signed.chain.len(), 2, "leaf + root");
        assert_eq!(signed.chain[1], ca.root_pem());
        assert_eq!(uris(&signed.chain[0]), vec![id.uri()]);
        // The same identity asked for: fine.
        let (csr, _) = csr_for(Some(&id.uri()));
        ca.sign_csr(&csr, &id, Duration::from_secs(60))
            .expect("same identity");
        // Another identity: refused, naming both.
        let (csr, _) = csr_for(Some("spiffe://cluster.local/ns/bank/sa/vault"));
        let e = ca
            .sign_csr(&csr, &id, Duration::from_secs(60))
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("ns/bank/sa/vault") && e.contains("ns/shop/sa/cart"),
            "{e}"
        );
        // Garbage.
        assert!(
            ca.sign_csr("not a csr", &id, Duration::from_secs(60))
                .is_err()
        );
    }

    #[test]
    fn ttl_defaults_and_maximum() {
        let dir = tempfile::tempdir().expect("tmp");
        let ca = MeshCa::load(options(CaSource::SelfSigned(dir.path().join("ca")))).expect("ca");
        assert_eq!(ca.ttl_for(0).expect("default"), DEFAULT_WORKLOAD_TTL);
        assert_eq!(ca.ttl_for(30).expect("asked"), Duration::from_secs(30));
        let e = ca
            .ttl_for(100 * 24 * 3600)
            .expect_err("too long")
            .to_string();
        assert!(e.contains("greater than the max allowed TTL"), "{e}");
    }

    #[test]
    fn plugin_ca_with_an_intermediate_signs_a_chain_to_the_root() {
        let dir = tempfile::tempdir().expect("tmp");
        // root → intermediate (the plug-in signing CA).
        let root_key = KeyPair::generate().expect("k");
        let mut rp = CertificateParams::new(Vec::<String>::new()).expect("p");
        rp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        rp.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let root = rp.self_signed(&root_key).expect("root");
        let root_issuer = Issuer::new(rp, root_key);
        let int_key = KeyPair::generate().expect("k");
        let mut ip = CertificateParams::new(Vec::<String>::new()).expect("p");
        ip.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ip.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let int = ip.signed_by(&int_key, &root_issuer).expect("int");
        fs::write(dir.path().join(CA_CERT_FILE), int.pem()).expect("w");
        fs::write(dir.path().join(CA_KEY_FILE), int_key.serialize_pem()).expect("w");
        fs::write(dir.path().join(ROOT_CERT_FILE), root.pem()).expect("w");
        fs::write(
            dir.path().join(CERT_CHAIN_FILE),
            format!("{}{}", int.pem(), root.pem()),
        )
        .expect("w");
        let ca = MeshCa::load(options(CaSource::PluginDir(dir.path().to_path_buf()))).expect("ca");
        let (csr, _) = csr_for(None);
        let id = SpiffeId::new("cluster.local", "a", "b");
        let signed = ca
            .sign_csr(&csr, &id, Duration::from_secs(60))
            .expect("signed");
        assert_eq!(signed.chain.len(), 3, "leaf, intermediate, root");
        assert_eq!(signed.chain[2], root.pem());
        assert_eq!(signed.chain[1], int.pem());
    }

    #[test]
    fn a_missing_or_broken_plugin_dir_is_an_error_not_a_new_root() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("nope");
        let e = MeshCa::load(options(CaSource::PluginDir(missing.clone())))
            .expect_err("missing")
            .to_string();
        assert!(e.contains("ca-cert.pem"), "{e}");
        assert!(!missing.exists(), "nothing created");
        // A leaf certificate as signing certificate.
        let key = KeyPair::generate().expect("k");
        let leaf = CertificateParams::new(vec!["x".to_string()])
            .expect("p")
            .self_signed(&key)
            .expect("c");
        fs::write(dir.path().join(CA_CERT_FILE), leaf.pem()).expect("w");
        fs::write(dir.path().join(CA_KEY_FILE), key.serialize_pem()).expect("w");
        fs::write(dir.path().join(ROOT_CERT_FILE), leaf.pem()).expect("w");
        let e = MeshCa::load(options(CaSource::PluginDir(dir.path().to_path_buf())))
            .expect_err("not a CA")
            .to_string();
        assert!(e.contains("not authorized to sign"), "{e}");
        // A key of another certificate.
        let dir2 = tempfile::tempdir().expect("tmp");
        let ca = MeshCa::load(options(CaSource::SelfSigned(dir2.path().join("ca")))).expect("ca");
        drop(ca);
        fs::write(
            dir2.path().join("ca").join(CA_KEY_FILE),
            KeyPair::generate().expect("k").serialize_pem(),
        )
        .expect("w");
        let e = MeshCa::load(options(CaSource::PluginDir(dir2.path().join("ca"))))
            .expect_err("wrong key")
            .to_string();
        assert!(e.contains("does not belong"), "{e}");
    }
}

//! Join credentials: what a machine presents before it has a workload certificate (Istio uses
//! a Kubernetes service-account JWT here; Entryway has no API server to review one, so the
//! control plane issues its own).
//!
//! A token binds a namespace and a service account, expires, and can be revoked:
//!
//! ```text
//! ew1.<base64url(JSON {ns, sa, exp, jti})>.<base64url(HMAC-SHA256(key, "ew1." + payload))>
//! ```
//!
//! The key (32 random bytes, mode 0600) and the revocation list (one token id per line) live
//! in `<state-dir>/tokens/`, so `entryway token create` and `revoke` work whether or not the
//! control plane runs, and a running control plane sees a revocation at the next use of the
//! token (the list is read on every verification; verification happens once per CSR, not per
//! request).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use entryway_contract::SpiffeId;
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

/// Token format prefix (and version).
pub const PREFIX: &str = "ew1.";
/// File of the signing key in the tokens directory.
pub const KEY_FILE: &str = "signing.key";
/// File of revoked token ids.
pub const REVOKED_FILE: &str = "revoked";
/// Longest token accepted (a token is ~200 bytes; anything far larger is not one).
const MAX_TOKEN_BYTES: usize = 4096;

/// Why a token is refused, or the key store failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this format.
    #[error("malformed join token: {0}")]
    Malformed(&'static str),
    /// The signature does not verify: another control plane's token, or tampered with.
    #[error(
        "join token signature does not verify (not issued by this control plane's state directory)"
    )]
    BadSignature,
    /// Past its expiry.
    #[error("join token {id} expired {ago}s ago")]
    Expired {
        /// Token id.
        id: String,
        /// Seconds since expiry.
        ago: u64,
    },
    /// Revoked with `entryway token revoke`.
    #[error("join token {0} is revoked")]
    Revoked(String),
    /// Reading or writing the key store.
    #[error("join token store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A namespace or service account that cannot be an identity.
    #[error("{0}")]
    Invalid(String),
}

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Namespace.
    pub namespace: String,
    /// Service account.
    pub service_account: String,
    /// Expiry (seconds since the epoch).
    pub expires: u64,
    /// Token id (what `revoke` takes).
    pub id: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    ns: String,
    sa: String,
    exp: u64,
    jti: String,
}

/// The token key store in a directory.
#[derive(Debug, Clone)]
pub struct TokenStore {
    dir: PathBuf,
}

impl TokenStore {
    /// The store in `dir` (created when a token is first issued).
    pub fn new(dir: impl Into<PathBuf>) -> TokenStore {
        TokenStore { dir: dir.into() }
    }

    /// Where it lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TokenError + '_ {
        move |source| TokenError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn key(&self, create: bool) -> Result<hmac::Key, TokenError> {
        let path = self.dir.join(KEY_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
                let mut key = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| TokenError::Invalid("the system random source failed".into()))?;
                write_private_new(&path, &key)?;
                // Another process may have won the race: read what is there.
                fs::read(&path).map_err(Self::io(&path))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TokenError::BadSignature);
            }
            Err(e) => return Err(Self::io(&path)(e)),
        };
        if bytes.len() != 32 {
            return Err(TokenError::Io {
                path,
                source: std::io::Error::other("the key file is not 32 bytes"),
            });
        }
        Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
    }

    /// Issues a token for `namespace`/`service_account` valid for `ttl`.
    pub fn issue(
        &self,
        namespace: &str,
        service_account: &str,
        ttl: Duration,
    ) -> Result<(String, Claims), TokenError> {
        for (what, v) in [
            ("namespace", namespace),
            ("service account", service_account),
        ] {
            if v.is_empty() || v.contains('/') || v.len() > 253 {
                return Err(TokenError::Invalid(format!(
                    "{what} {:?}: must be 1-253 characters without '/'",
                    entryway_contract::identity::bounded(v, 64)
                )));
            }
        }
        let key = self.key(true)?;
        let mut id = [0u8; 8];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| TokenError::Invalid("the system random source failed".into()))?;
        let claims = Claims {
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            expires: now_secs() + ttl.as_secs(),
            id: id.iter().map(|b| format!("{b:02x}")).collect(),
        };
        let payload = serde_json::to_vec(&Payload {
            ns: claims.namespace.clone(),
            sa: claims.service_account.clone(),
            exp: claims.expires,
            jti: claims.id.clone(),
        })
        .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let signed = format!("{PREFIX}{}", B64.encode(payload));
        let tag = hmac::sign(&key, signed.as_bytes());
        Ok((format!("{signed}.{}", B64.encode(tag.as_ref())), claims))
    }

    /// Verifies a token: format, signature, expiry, revocation.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("longer than any join token"));
        }
        if !token.starts_with(PREFIX) {
            return Err(TokenError::Malformed("no ew1. prefix"));
        }
        let (signed, tag) = token
            .rsplit_once('.')
            .filter(|(s, _)| s.len() > PREFIX.len())
            .ok_or(TokenError::Malformed("no signature part"))?;
        let tag = B64
            .decode(tag)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        hmac::verify(&self.key(false)?, signed.as_bytes(), &tag)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = B64
            .decode(&signed[PREFIX.len()..])
            .map_err(|_| TokenError::Malformed("payload is not base64url"))?;
        let p: Payload = serde_json::from_slice(&payload)
            .map_err(|_| TokenError::Malformed("payload is not the expected JSON"))?;
        let now = now_secs();
        if p.exp <= now {
            return Err(TokenError::Expired {
                id: p.jti,
                ago: now - p.exp,
            });
        }
        if self.revoked()?.contains(&p.jti) {
            return Err(TokenError::Revoked(p.jti));
        }
        Ok(Claims {
            namespace: p.ns,
            service_account: p.sa,
            expires: p.exp,
            id: p.jti,
        })
    }

    /// The identity a verified token stands for.
    pub fn identity(&self, token: &str, trust_domain: &str) -> Result<SpiffeId, TokenError> {
        let c = self.verify(token)?;
        Ok(SpiffeId::new(trust_domain, c.namespace, c.service_account))
    }

    /// Revokes a token by id (or by the token itself).
    pub fn revoke(&self, id_or_token: &str) -> Result<String, TokenError> {
        let id = match id_or_token.strip_prefix(PREFIX) {
            Some(_) => self
                .verify(id_or_token)
                .map(|c| c.id)
                .or_else(|e| match e {
                    // An expired token can still be revoked (harmless).
                    TokenError::Expired { id, .. } => Ok(id),
                    e => Err(e),
                })?,
            None => id_or_token.trim().to_string(),
        };
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(TokenError::Malformed("a token id is hexadecimal"));
        }
        fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        let path = self.dir.join(REVOKED_FILE);
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(Self::io(&path))?;
        writeln!(f, "{id}").map_err(Self::io(&path))?;
        f.sync_all().map_err(Self::io(&path))?;
        Ok(id)
    }

    fn revoked(&self) -> Result<Vec<String>, TokenError> {
        let path = self.dir.join(REVOKED_FILE);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s.lines().map(|l| l.trim().to_string()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Self::io(&path)(e)),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `bytes` to a new file only the owner can read (fails if it exists).
pub(crate) fn write_private_new(path: &Path, bytes: &[u8]) -> Result<(), TokenError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(bytes).map_err(TokenStore::io(path))?;
            f.sync_all().map_err(TokenStore::io(path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(TokenStore::io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_revoke() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = TokenStore::new(dir.path().join("tokens"));
        let (token, claims) = store
            .issue("shop", "cart", Duration::from_secs(3600))
            .expect("issued");
        assert!(token.starts_with(PREFIX));
        assert_eq!(store.verify(&token).expect("valid"), claims);
        assert_eq!(
            store.identity(&token, "cluster.local").expect("id").uri(),
            "spiffe://cluster.local/ns/shop/sa/cart"
        );
        assert_eq!(store.revoke(&claims.id).expect("revoked"), claims.id);
        assert!(matches!(store.verify(&token), Err(TokenError::Revoked(_))));
    }

    #[test]
    fn refuses_tampered_foreign_expired_and_garbage_tokens() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = TokenStore::new(dir.path().join("a"));
        let other = TokenStore::new(dir.path().join("b"));
        let (token, _) = store
            .issue("shop", "cart", Duration::from_secs(3600))
            .expect("issued");
        let (foreign, _) = other
            .issue("shop", "cart", Duration::from_secs(3600))
            .expect("issued");
        assert!(matches!(
            store.verify(&foreign),
            Err(TokenError::BadSignature)
        ));
        // Change the namespace in the payload, keep the signature.
        let (signed, tag) = token.rsplit_once('.').expect("parts");
        let payload = B64.decode(&signed[PREFIX.len()..]).expect("b64");
        let forged = String::from_utf8(payload)
            .expect("utf8")
            .replace("\"shop\"", "\"bank\"");
        let forged = format!("{PREFIX}{}.{tag}", B64.encode(forged));
        assert!(matches!(
            store.verify(&forged),
            Err(TokenError::BadSignature)
        ));
        let (expired, _) = store
            .issue("shop", "cart", Duration::from_secs(0))
            .expect("issued");
        assert!(matches!(
            store.verify(&expired),
            Err(TokenError::Expired { .. })
        ));
        for garbage in ["", "Bearer x", "ew1.", "ew1.abc", "ew1.!!.!!"] {
            assert!(store.verify(garbage).is_err(), "{garbage:?}");
        }
        let huge = format!("{PREFIX}{}", "A".repeat(1 << 20));
        let e = store.verify(&huge).expect_err("huge").to_string();
        assert!(e.len() < 200, "bounded: {e}");
        assert!(store.issue("a/b", "c", Duration::from_secs(1)).is_err());
    }
}

//! The device signing key: an Ed25519 key that signs export manifests, so that a court
//! can check with standard tools that an export came from this appliance and was not
//! changed. Like the KEK it never leaves the box; only its public half is handed out.
//!
//! The file provider keeps it in a root-only file holding one text line,
//! `ringfence-ed25519-v1:<64 hex digits of the secret seed>`. On the appliance the
//! TPM-sealed provider (`crate::tpm::TpmSigningKeyProvider`) implements the same traits:
//! the seed is sealed by the TPM and unsealed at start; signing stays on the host (see
//! that module for why not inside the TPM yet).

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::keys::{KeyError, KeyKind};
use crate::secret_file::{self, SecretFileError};

const FILE_PREFIX: &str = "ringfence-ed25519-v1:";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Signs with the device key; the secret never leaves the implementation.
pub trait DeviceSigner: Send + Sync {
    /// The raw 32-byte Ed25519 public key.
    fn public_key(&self) -> [u8; 32];
    /// A raw 64-byte Ed25519 signature (RFC 8032, pure Ed25519) over `message`.
    fn sign(&self, message: &[u8]) -> [u8; 64];
}

/// Where the device signing key lives.
pub trait SigningKeyProvider: Send + Sync {
    /// Loads the existing key; never creates one.
    fn load(&self) -> Result<Box<dyn DeviceSigner>, KeyError>;
    /// Creates a fresh key if, and only if, none exists. Returns whether it created one.
    fn create_if_absent(&self) -> Result<bool, KeyError>;
    /// Where the key is, for messages (never the key itself).
    fn describe(&self) -> String;
}

/// An Ed25519 key held in memory (loaded from a file, or made for a test).
pub struct MemorySigner(SigningKey);

impl MemorySigner {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        MemorySigner(SigningKey::from_bytes(&seed))
    }

    pub fn random() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(&mut *seed);
        MemorySigner(SigningKey::from_bytes(&seed))
    }
}

impl std::fmt::Debug for MemorySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemorySigner(<redacted>)")
    }
}

impl DeviceSigner for MemorySigner {
    fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

/// The signing key in a root-only file.
#[derive(Debug, Clone)]
pub struct FileSigningKeyProvider {
    path: PathBuf,
}

impl FileSigningKeyProvider {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSigningKeyProvider { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, e: SecretFileError) -> KeyError {
        KeyError::of_file(KeyKind::Signing, &self.path, e)
    }
}

impl SigningKeyProvider for FileSigningKeyProvider {
    fn load(&self) -> Result<Box<dyn DeviceSigner>, KeyError> {
        let seed = secret_file::read(&self.path, FILE_PREFIX).map_err(|e| self.error(e))?;
        Ok(Box::new(MemorySigner::from_seed(*seed)))
    }

    fn create_if_absent(&self) -> Result<bool, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(&mut *seed);
        secret_file::create_new(&self.path, FILE_PREFIX, &seed).map_err(|e| self.error(e))
    }

    fn describe(&self) -> String {
        format!("signing key file {}", self.path.display())
    }
}

/// The public key as PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as `openssl pkeyutl
/// -pubin` reads it.
pub fn public_key_pem(public_key: &[u8; 32]) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(public_key);
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64(&der)
    )
}

/// Reads a PEM `PUBLIC KEY` holding an Ed25519 key; `None` for anything else.
pub fn parse_public_key_pem(pem: &str) -> Option<[u8; 32]> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN PUBLIC KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END PUBLIC KEY-----")
        .collect();
    let der = unbase64(&body)?;
    if der.len() != 44 || der[..12] != SPKI_PREFIX {
        return None;
    }
    der[12..].try_into().ok()
}

/// Checks a raw Ed25519 signature (strict verification: no malleable signatures).
pub fn verify_signature(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(signature) else {
        return false;
    };
    vk.verify_strict(message, &sig).is_ok() && vk.verify(message, &sig).is_ok()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn unbase64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for ch in s.bytes() {
        let v = B64.iter().position(|&b| b == ch)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_load_sign_verify_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = FileSigningKeyProvider::new(dir.path().join("etc/signing.key"));
        assert!(matches!(p.load(), Err(KeyError::Missing { .. })));
        assert!(p.create_if_absent().unwrap());
        let mode = fs::metadata(p.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let k = p.load().unwrap();
        let pk = k.public_key();
        assert!(!p.create_if_absent().unwrap());
        assert_eq!(p.load().unwrap().public_key(), pk);
        let sig = k.sign(b"manifest");
        assert!(verify_signature(&pk, b"manifest", &sig));
        assert!(!verify_signature(&pk, b"manifesT", &sig));
        let other = MemorySigner::random();
        assert!(!verify_signature(&other.public_key(), b"manifest", &sig));
        let pem = public_key_pem(&pk);
        assert_eq!(parse_public_key_pem(&pem), Some(pk));
        assert!(
            parse_public_key_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .is_none()
        );
    }

    #[test]
    fn refuses_malformed_and_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        fs::write(&path, "ringfence-kek-v1:00\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let p = FileSigningKeyProvider::new(&path);
        assert!(matches!(p.load(), Err(KeyError::Malformed { .. })));
        fs::write(&path, format!("{FILE_PREFIX}{}\n", "ab".repeat(32))).unwrap();
        assert!(p.load().is_ok());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(p.load(), Err(KeyError::TooOpen { .. })));
        assert!(!p.create_if_absent().unwrap());
        assert!(format!("{:?}", MemorySigner::from_seed([0xab; 32])).contains("redacted"));
    }

    #[test]
    fn pem_matches_openssl_layout() {
        // RFC 8410 §10.1 example key.
        let pk: [u8; 32] = [
            0x19, 0xbf, 0x44, 0x09, 0x69, 0x84, 0xcd, 0xfe, 0x85, 0x41, 0xba, 0xc1, 0x67, 0xdc,
            0x3b, 0x96, 0xc8, 0x50, 0x86, 0xaa, 0x30, 0xb6, 0xb6, 0xcb, 0x0c, 0x5c, 0x38, 0xad,
            0x70, 0x31, 0x66, 0xe1,
        ];
        assert_eq!(
            public_key_pem(&pk),
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"
        );
    }
}

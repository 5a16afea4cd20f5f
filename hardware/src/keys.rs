//! Key providers. The file provider keeps the KEK in a root-only file; on the appliance
//! the TPM-sealed provider (`crate::tpm::TpmKeyProvider`) implements the same trait, and
//! the file provider stays the fallback for boxes without a TPM.
//!
//! The file holds one text line, `ringfence-kek-v1:<64 hex digits>`, so that a
//! truncated or foreign file is recognised and refused rather than used as a key.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::RngCore;
use zeroize::Zeroizing;

use crate::secret_file::{self, SecretFileError};

const FILE_PREFIX: &str = "ringfence-kek-v1:";

/// A 256-bit key-encryption key. Never printed.
#[derive(Clone)]
pub struct Kek(Zeroizing<[u8; 32]>);

impl Kek {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Kek(Zeroizing::new(bytes))
    }

    pub fn random() -> Self {
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        Kek(Zeroizing::new(b))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

/// Which of the device's two keys a [`KeyError`] is about: both live in the same kinds
/// of file (plain 0600 or TPM-sealed) and fail in the same ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The key-encryption key, which wraps every segment's data key.
    Kek,
    /// The device's Ed25519 key, which signs exports and checkpoints.
    Signing,
}

impl KeyKind {
    /// What its file holds, in one line.
    fn line_format(self) -> &'static str {
        match self {
            KeyKind::Kek => "`ringfence-kek-v1:` + 64 hex digits",
            KeyKind::Signing => "`ringfence-ed25519-v1:` + 64 hex digits",
        }
    }

    /// What to do when it is missing: a signing key is made by `recorder init`; a KEK
    /// missing from a store that has footage must be found, never made anew.
    fn missing_hint(self) -> &'static str {
        match self {
            KeyKind::Kek => "",
            KeyKind::Signing => " (run `recorder init`)",
        }
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyKind::Kek => "key file",
            KeyKind::Signing => "signing key file",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{kind} {path} does not exist{hint}", hint = kind.missing_hint())]
    Missing { kind: KeyKind, path: PathBuf },
    #[error(
        "{kind} {path} is not a Ringfence {kind} (expected one line {format})",
        format = kind.line_format()
    )]
    Malformed { kind: KeyKind, path: PathBuf },
    #[error("{kind} {path} is readable by group or others (mode {mode:o}); make it 0600")]
    TooOpen {
        kind: KeyKind,
        path: PathBuf,
        mode: u32,
    },
    #[error("{kind} {path}: {source}")]
    Io {
        kind: KeyKind,
        path: PathBuf,
        source: io::Error,
    },
    /// A TPM-sealed key file that is not one (`tpm::TpmKeyProvider`,
    /// `tpm::TpmSigningKeyProvider`).
    #[error(
        "sealed {kind} {path} is not a Ringfence TPM-sealed key (expected one line `{prefix}sha256:<PCRs>:<public hex>:<private hex>` holding a PCR-bound sealed object)"
    )]
    SealedMalformed {
        kind: KeyKind,
        path: PathBuf,
        prefix: &'static str,
    },
    /// The TPM refused to unseal: the PCRs the key is bound to hold other values now.
    #[error(
        "sealed {kind} {path} is sealed to other PCR values ({pcrs}): the boot chain changed (firmware, boot loader or secure boot state) and the TPM releases the key only under the boot chain it was sealed under; boot that one"
    )]
    PcrMismatch {
        kind: KeyKind,
        path: PathBuf,
        pcrs: String,
    },
    /// The TPM could not load the sealed object under its key: another TPM's file.
    #[error(
        "sealed {kind} {path} was not sealed by this TPM (it is another TPM's, this TPM's owner hierarchy was cleared, or the file was altered): this TPM cannot unseal it"
    )]
    OtherTpm { kind: KeyKind, path: PathBuf },
    /// The TPM could not be reached, or failed a command.
    #[error("TPM ({tcti}), {what}: {detail}")]
    Tpm {
        tcti: String,
        what: &'static str,
        detail: String,
    },
}

impl KeyError {
    /// The error of a plain key file of `kind` at `path`.
    pub(crate) fn of_file(kind: KeyKind, path: &Path, e: SecretFileError) -> Self {
        let path = path.to_path_buf();
        match e {
            SecretFileError::Missing => KeyError::Missing { kind, path },
            SecretFileError::Malformed => KeyError::Malformed { kind, path },
            SecretFileError::TooOpen { mode } => KeyError::TooOpen { kind, path, mode },
            SecretFileError::Io(source) => KeyError::Io { kind, path, source },
        }
    }
}

/// Where the KEK lives.
pub trait KeyProvider: Send + Sync {
    /// Loads the existing KEK; never creates one.
    fn load(&self) -> Result<Kek, KeyError>;
    /// Creates a fresh KEK if, and only if, none exists. Returns whether it created one.
    fn create_if_absent(&self) -> Result<bool, KeyError>;
    /// Where the key is, for messages (never the key itself).
    fn describe(&self) -> String;
}

/// The KEK in a root-only file.
#[derive(Debug, Clone)]
pub struct FileKeyProvider {
    path: PathBuf,
}

impl FileKeyProvider {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileKeyProvider { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, e: SecretFileError) -> KeyError {
        KeyError::of_file(KeyKind::Kek, &self.path, e)
    }
}

impl KeyProvider for FileKeyProvider {
    fn load(&self) -> Result<Kek, KeyError> {
        secret_file::read(&self.path, FILE_PREFIX)
            .map(|k| Kek::from_bytes(*k))
            .map_err(|e| self.error(e))
    }

    fn create_if_absent(&self) -> Result<bool, KeyError> {
        secret_file::create_new(&self.path, FILE_PREFIX, Kek::random().as_bytes())
            .map_err(|e| self.error(e))
    }

    fn describe(&self) -> String {
        format!("key file {}", self.path.display())
    }
}

/// A KEK held in memory, for tests and simulations.
#[derive(Debug, Default)]
pub struct MemoryKeyProvider {
    key: Mutex<Option<Kek>>,
}

impl MemoryKeyProvider {
    pub fn with_key(kek: Kek) -> Self {
        MemoryKeyProvider {
            key: Mutex::new(Some(kek)),
        }
    }
}

impl KeyProvider for MemoryKeyProvider {
    fn load(&self) -> Result<Kek, KeyError> {
        self.key
            .lock()
            .expect("key mutex")
            .clone()
            .ok_or_else(|| KeyError::Missing {
                kind: KeyKind::Kek,
                path: PathBuf::from("<memory>"),
            })
    }

    fn create_if_absent(&self) -> Result<bool, KeyError> {
        let mut k = self.key.lock().expect("key mutex");
        if k.is_some() {
            return Ok(false);
        }
        *k = Some(Kek::random());
        Ok(true)
    }

    fn describe(&self) -> String {
        "in-memory key".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_then_load_round_trips_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = FileKeyProvider::new(dir.path().join("etc/kek"));
        assert!(matches!(p.load(), Err(KeyError::Missing { .. })));
        assert!(p.create_if_absent().unwrap());
        let first = p.load().unwrap();
        let mode = fs::metadata(p.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!p.create_if_absent().unwrap());
        assert_eq!(p.load().unwrap().as_bytes(), first.as_bytes());
    }

    #[test]
    fn refuses_malformed_and_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        fs::write(&path, "not a key\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let p = FileKeyProvider::new(&path);
        assert!(matches!(p.load(), Err(KeyError::Malformed { .. })));
        fs::write(&path, format!("{FILE_PREFIX}{}\n", "ab".repeat(31))).unwrap();
        assert!(matches!(p.load(), Err(KeyError::Malformed { .. })));
        fs::write(&path, format!("{FILE_PREFIX}{}\n", "zz".repeat(32))).unwrap();
        assert!(matches!(p.load(), Err(KeyError::Malformed { .. })));
        fs::write(&path, format!("{FILE_PREFIX}{}\n", "ab".repeat(32))).unwrap();
        assert_eq!(p.load().unwrap().as_bytes(), &[0xab; 32]);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(p.load(), Err(KeyError::TooOpen { .. })));
        // Refusing never rewrites the file.
        assert!(!p.create_if_absent().unwrap());
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .contains(&"ab".repeat(32))
        );
    }

    /// One error type for both keys, and each message names which key and what to do.
    #[test]
    fn errors_name_the_key_and_the_remedy() {
        let path = Path::new("/k");
        let kek = KeyError::of_file(KeyKind::Kek, path, SecretFileError::Missing).to_string();
        assert_eq!(kek, "key file /k does not exist");
        let signing =
            KeyError::of_file(KeyKind::Signing, path, SecretFileError::Missing).to_string();
        assert_eq!(
            signing,
            "signing key file /k does not exist (run `recorder init`)"
        );
        let bad = KeyError::of_file(KeyKind::Signing, path, SecretFileError::Malformed).to_string();
        assert!(
            bad.contains("`ringfence-ed25519-v1:` + 64 hex digits"),
            "{bad}"
        );
        let open = KeyError::of_file(KeyKind::Kek, path, SecretFileError::TooOpen { mode: 0o644 });
        assert_eq!(
            open.to_string(),
            "key file /k is readable by group or others (mode 644); make it 0600"
        );
    }

    #[test]
    fn debug_never_shows_key() {
        let k = Kek::from_bytes([0x5a; 32]);
        let s = format!("{k:?}");
        assert!(!s.contains("5a") && !s.contains("90"));
        let e = KeyError::Malformed {
            kind: KeyKind::Kek,
            path: PathBuf::from("/x"),
        };
        assert!(!e.to_string().contains("5a5a"));
    }
}

//! The store on disk: its folder, its catalog, its key, and the rule that one recorder
//! owns it at a time.
//!
//! The KEK itself lives outside the store (key provider); the catalog keeps only a
//! check value of it, so that a wrong or replaced key is refused before a single
//! segment is written with it, and a missing one is never silently regenerated.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hardware::{FileKeyProvider, Kek, KeyError, KeyProvider};
use sha2::{Digest, Sha256};

use crate::catalog::{self, Catalog, CatalogError};
use crate::config::{Config, KeyStorage};

const KEK_CHECK_KEY: &str = "kek_check";
const LOCK_FILE: &str = "recorder.lock";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(
        "store {store} does not exist or was never initialised; run `recorder init --config <file>` first"
    )]
    NotInitialised { store: PathBuf },
    #[error(
        "the key-encryption key is missing ({provider}) but the store {store} was created with one; \
         restore the original key file (a new key would make every recording unreadable)"
    )]
    KekMissing { provider: String, store: PathBuf },
    #[error(
        "the key-encryption key ({provider}) does not match the one the store {store} was created with; \
         refusing to start (restore the original key file)"
    )]
    KekMismatch { provider: String, store: PathBuf },
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("another recorder is already running on store {store}")]
    Locked { store: PathBuf },
}

pub type Result<T> = std::result::Result<T, StoreError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A check value of the KEK: reveals nothing of it, identifies it.
fn kek_check(kek: &Kek) -> String {
    let mut h = Sha256::new();
    h.update(b"ringfence-kek-check-v1\0");
    h.update(kek.as_bytes());
    hex::encode(h.finalize())
}

/// The KEK as `[keys]` says: a root-only file, or sealed by the TPM.
pub fn key_provider(config: &Config) -> ConfiguredKeys {
    ConfiguredKeys(config.keys.clone())
}

/// The device's export-signing key (`[keys] signing_key_file`), likewise.
pub fn signing_key_provider(config: &Config) -> ConfiguredSigningKey {
    ConfiguredSigningKey(ConfiguredKeys(config.keys.clone()))
}

/// The key providers `[keys]` names. A TPM is reached only when a key is loaded or
/// created, so a config is checked without one.
#[derive(Debug, Clone)]
pub struct ConfiguredKeys(crate::config::KeysConfig);

/// The signing key's provider that `[keys]` names.
#[derive(Debug, Clone)]
pub struct ConfiguredSigningKey(ConfiguredKeys);

#[cfg(feature = "tpm")]
impl ConfiguredKeys {
    fn tcti(&self) -> &str {
        self.0
            .tpm_tcti
            .as_deref()
            .unwrap_or(hardware::tpm::DEFAULT_TCTI)
    }

    fn pcrs(&self) -> hardware::PcrSelection {
        // Checked when the config was loaded.
        self.0
            .tpm_pcrs
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or_default()
    }

    fn tpm_kek(&self) -> std::result::Result<hardware::TpmKeyProvider, KeyError> {
        hardware::TpmKeyProvider::new(self.tcti(), &self.0.kek_file, self.pcrs())
    }

    fn tpm_signing(
        &self,
    ) -> std::result::Result<hardware::TpmSigningKeyProvider, hardware::KeyError> {
        hardware::TpmSigningKeyProvider::new(self.tcti(), self.0.signing_key_path(), self.pcrs())
    }
}

impl KeyProvider for ConfiguredKeys {
    fn load(&self) -> std::result::Result<Kek, KeyError> {
        match self.0.provider {
            KeyStorage::File => FileKeyProvider::new(&self.0.kek_file).load(),
            #[cfg(feature = "tpm")]
            KeyStorage::Tpm => self.tpm_kek()?.load(),
            #[cfg(not(feature = "tpm"))]
            KeyStorage::Tpm => unreachable!("refused when the config was loaded"),
        }
    }

    fn create_if_absent(&self) -> std::result::Result<bool, KeyError> {
        match self.0.provider {
            KeyStorage::File => FileKeyProvider::new(&self.0.kek_file).create_if_absent(),
            #[cfg(feature = "tpm")]
            KeyStorage::Tpm => self.tpm_kek()?.create_if_absent(),
            #[cfg(not(feature = "tpm"))]
            KeyStorage::Tpm => unreachable!("refused when the config was loaded"),
        }
    }

    fn describe(&self) -> String {
        match self.0.provider {
            KeyStorage::File => FileKeyProvider::new(&self.0.kek_file).describe(),
            KeyStorage::Tpm => format!("TPM-sealed key file {}", self.0.kek_file.display()),
        }
    }
}

impl hardware::signing::SigningKeyProvider for ConfiguredSigningKey {
    fn load(
        &self,
    ) -> std::result::Result<Box<dyn hardware::signing::DeviceSigner>, hardware::KeyError> {
        match self.0.0.provider {
            KeyStorage::File => {
                hardware::signing::FileSigningKeyProvider::new(self.0.0.signing_key_path()).load()
            }
            #[cfg(feature = "tpm")]
            KeyStorage::Tpm => self.0.tpm_signing()?.load(),
            #[cfg(not(feature = "tpm"))]
            KeyStorage::Tpm => unreachable!("refused when the config was loaded"),
        }
    }

    fn create_if_absent(&self) -> std::result::Result<bool, hardware::KeyError> {
        match self.0.0.provider {
            KeyStorage::File => {
                hardware::signing::FileSigningKeyProvider::new(self.0.0.signing_key_path())
                    .create_if_absent()
            }
            #[cfg(feature = "tpm")]
            KeyStorage::Tpm => self.0.tpm_signing()?.create_if_absent(),
            #[cfg(not(feature = "tpm"))]
            KeyStorage::Tpm => unreachable!("refused when the config was loaded"),
        }
    }

    fn describe(&self) -> String {
        match self.0.0.provider {
            KeyStorage::File => format!("key file {}", self.0.0.signing_key_path().display()),
            KeyStorage::Tpm => format!(
                "TPM-sealed key file {}",
                self.0.0.signing_key_path().display()
            ),
        }
    }
}

/// `recorder init`: creates the store and the KEK when absent. Idempotent; never
/// replaces a key. Returns a line per thing it did, for the operator.
pub fn init(config: &Config, keys: &dyn KeyProvider) -> Result<Vec<String>> {
    let store = &config.storage.path;
    let mut did = Vec::new();
    if !store.exists() {
        did.push(format!("created store {}", store.display()));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(store.join(catalog::SEGMENTS_DIR))
        .map_err(io_err(store))?;
    let _ = fs::set_permissions(store, fs::Permissions::from_mode(0o700));
    let cat = Catalog::open(store)?;
    match cat.meta(KEK_CHECK_KEY)? {
        Some(expected) => {
            load_matching_kek(keys, store, &expected)?;
        }
        None => {
            if keys.create_if_absent()? {
                did.push(format!("created key-encryption key in {}", keys.describe()));
            } else {
                did.push(format!(
                    "using existing key-encryption key in {}",
                    keys.describe()
                ));
            }
            let kek = keys.load()?;
            cat.set_meta(KEK_CHECK_KEY, &kek_check(&kek))?;
        }
    }
    // The device signing key (exports): made once, never replaced.
    let signing = signing_key_provider(config);
    {
        use hardware::signing::SigningKeyProvider;
        let created = signing.create_if_absent().map_err(|e| StoreError::Io {
            path: config.keys.signing_key_path(),
            source: io::Error::other(e.to_string()),
        })?;
        if created {
            did.push(format!(
                "created device signing key in {}",
                signing.describe()
            ));
        }
    }
    for c in &config.cameras {
        cat.upsert_camera(&c.id, c.display_name())?;
    }
    Ok(did)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Loads the KEK of an initialised store and proves it is the store's own.
pub fn load_kek(config: &Config, keys: &dyn KeyProvider) -> Result<Kek> {
    let store = &config.storage.path;
    if !store.join(catalog::CATALOG_FILE).exists() {
        return Err(StoreError::NotInitialised {
            store: store.clone(),
        });
    }
    let cat = Catalog::open_read_only(store)?;
    let expected = cat
        .meta(KEK_CHECK_KEY)?
        .ok_or_else(|| StoreError::NotInitialised {
            store: store.clone(),
        })?;
    load_matching_kek(keys, store, &expected)
}

/// The provider's KEK, if it is the one whose check value the store recorded.
fn load_matching_kek(keys: &dyn KeyProvider, store: &Path, expected: &str) -> Result<Kek> {
    let kek = match keys.load() {
        Ok(k) => k,
        Err(KeyError::Missing { .. }) => {
            return Err(StoreError::KekMissing {
                provider: keys.describe(),
                store: store.to_path_buf(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if !constant_time_eq(kek_check(&kek).as_bytes(), expected.as_bytes()) {
        return Err(StoreError::KekMismatch {
            provider: keys.describe(),
            store: store.to_path_buf(),
        });
    }
    Ok(kek)
}

/// Held by the running recorder; released when dropped (or when the process dies).
pub struct StoreLock {
    _file: fs::File,
}

fn lock_path(store: &Path) -> PathBuf {
    store.join(LOCK_FILE)
}

pub fn lock(store: &Path) -> Result<StoreLock> {
    let path = lock_path(store);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    // flock(2): held until the file is closed, released by the kernel if we die.
    match file.try_lock() {
        Ok(()) => Ok(StoreLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            store: store.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
    }
}

/// Whether a recorder holds the store now (for `check`, which runs beside it).
pub fn recorder_running(store: &Path) -> bool {
    let Ok(file) = fs::OpenOptions::new().read(true).open(lock_path(store)) else {
        return false;
    };
    // A shared lock, released on close, is refused while the recorder holds its own.
    matches!(file.try_lock_shared(), Err(fs::TryLockError::WouldBlock))
}

/// fsync a directory, so that file creations and removals in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

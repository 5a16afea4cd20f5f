//! TPM 2.0 sealing of the KEK and of the device signing key.
//!
//! **Why.** The box stands at a site that nobody may be standing next to; anyone could
//! walk away with it, or with its disk. With the file providers the KEK and the signing
//! key lie on that disk, so a stolen disk is stolen footage and a stolen signing key.
//! Sealed by the box's TPM, the keys on disk are useless without that TPM (the sealed
//! blob is encrypted under a key that never leaves it), and the TPM releases them only
//! while the PCRs it measured at boot hold the values they held at sealing: a disk in
//! another machine gets no key, and neither does the box itself booted from a USB stick
//! or with a reflashed boot chain (by default PCR 7, the secure boot state: the
//! platform key, the key databases and the boot loader's signing authority).
//!
//! **How.** `create_if_absent` draws 32 random bytes on the host mixed (XOR) with 32 from
//! `TPM2_GetRandom` (neither source alone decides the key), reads the configured PCRs,
//! computes the PCR policy (`TPM2_PolicyPCR` in a trial session) and seals the secret as
//! a keyed-hash *sealed data object* whose only authorisation is that policy (no
//! password: `userWithAuth` clear), under a primary key recreated from the owner
//! hierarchy's seed with a fixed template (an ECC P-256 storage key with AES-128-CFB for
//! its children and the usual storage-root attributes): the same TPM always derives the
//! same primary, so no persistent handle is taken and nothing on the TPM must be
//! provisioned. It unseals the new object
//! once to check it, then writes its public and private areas (the private one is
//! encrypted by the TPM under that primary) to the key file. `load` recreates the
//! primary, loads the blobs, satisfies the policy in a policy session (`TPM2_PolicyPCR`
//! over the current PCR values) and unseals. PCRs that moved → `PcrMismatch`; a file
//! another TPM sealed (or this one after its owner hierarchy was cleared, or an altered
//! file) does not load → `OtherTpm`; never a key.
//!
//! The secret crosses the TPM's bus encrypted both ways (salted sessions with parameter
//! encryption: `TPM2_Create` in, `TPM2_Unseal` out), so sniffing the bus of a booted box
//! does not give it.
//!
//! **The file.** One text line, mode 0600, never replaced once written:
//! `ringfence-tpm-kek-v1:sha256:<PCRs>:<TPMT_PUBLIC hex>:<TPM2B_PRIVATE body hex>` (for
//! the signing key `ringfence-tpm-ed25519-v1:`). The PCR list is the one the key was
//! sealed to and the one `load` uses; the configured list applies to new keys. Changing
//! the list in the file does not help an attacker: the policy digest is part of the
//! object, checked by the TPM.
//!
//! **The signing key** is an Ed25519 seed sealed the same way; after unsealing,
//! signing happens on the host (`MemorySigner`). Signing inside the TPM would be
//! stronger (the key would never be in the process's memory, so a compromised recorder
//! could sign but not copy it), but TPM 2.0 has no Ed25519 (only ECDSA/ECDAA on NIST
//! curves and RSA), and the exports' format, checked by police with `openssl pkeyutl`
//! and documented in `VERIFY.txt`, is Ed25519; moving to a TPM-resident ECDSA P-256
//! key is a change of the bundle format, not done yet.
//!
//! **Limits.** Sealing keeps the keys' *secrecy*; it does not stop someone who boots
//! another system on the box from putting a sealed file of their own making in place
//! (the owner hierarchy has no password here). A substituted KEK is noticed by the store
//! (existing segment keys no longer unwrap); a substituted signing key by whoever checks
//! an export against the device's known public key. The owner hierarchy must have an
//! empty authorisation value (the default); the TPM is reached through a TCTI, on the
//! box `device:/dev/tpmrm0` (the kernel's resource manager; its user needs the `tss`
//! group), in tests swtpm. A key sealed to PCR 7 stays sealed after a change of the
//! secure boot state (a firmware or `dbx` update) until a resealing step exists. On a
//! refusal libtss2 also logs its own lines to stderr (`TSS2_LOG=all+none` quiets them).

mod sealer;
#[cfg(any(test, feature = "testing"))]
pub mod swtpm;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::RngCore;
use zeroize::Zeroizing;

use crate::keys::{Kek, KeyError, KeyKind, KeyProvider};
use crate::signing::{DeviceSigner, MemorySigner, SigningKeyProvider};
use sealer::{SealError, Sealer};

/// The TCTI for the appliance: the kernel's TPM resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

const KEK_PREFIX: &str = "ringfence-tpm-kek-v1:";
const SIGNING_PREFIX: &str = "ringfence-tpm-ed25519-v1:";

/// The PCRs (of the SHA-256 bank) a key is sealed to. Written and parsed as
/// `sha256:7` or `sha256:0,2,4,7`; the default is PCR 7, the secure boot state.
#[derive(Clone, PartialEq, Eq)]
pub struct PcrSelection {
    /// Sorted, distinct, each in 0..=23.
    pcrs: Vec<u8>,
}

/// A PCR list that is not `sha256:` and PCR numbers.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid PCR list {0:?}: expected `sha256:` and distinct PCR numbers 0..=23 separated by commas, e.g. `sha256:7`"
)]
pub struct PcrSelectionError(String);

impl PcrSelection {
    /// PCRs of the SHA-256 bank; refuses an empty list, a number above 23 or a repeat.
    pub fn sha256(pcrs: &[u8]) -> Result<Self, PcrSelectionError> {
        let mut sorted = pcrs.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.is_empty() || sorted.len() != pcrs.len() || sorted.iter().any(|&p| p > 23) {
            return Err(PcrSelectionError(format!("sha256 {pcrs:?}")));
        }
        Ok(PcrSelection { pcrs: sorted })
    }

    /// The PCR numbers, ascending.
    pub fn pcrs(&self) -> &[u8] {
        &self.pcrs
    }
}

impl Default for PcrSelection {
    fn default() -> Self {
        PcrSelection { pcrs: vec![7] }
    }
}

impl fmt::Display for PcrSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for (i, p) in self.pcrs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PcrSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PcrSelection({self})")
    }
}

impl FromStr for PcrSelection {
    type Err = PcrSelectionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PcrSelectionError(s.to_string());
        let list = s.strip_prefix("sha256:").ok_or_else(bad)?;
        let mut pcrs = Vec::new();
        for n in list.split(',') {
            // Plain decimal only: no sign, no spaces, no leading zeros.
            if n.is_empty() || n.len() > 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            if n.len() == 2 && n.starts_with('0') {
                return Err(bad());
            }
            pcrs.push(n.parse::<u8>().map_err(|_| bad())?);
        }
        let sel = PcrSelection::sha256(&pcrs).map_err(|_| bad())?;
        // Only the canonical (ascending) form, so that a file reads back as written.
        if sel.pcrs != pcrs {
            return Err(bad());
        }
        Ok(sel)
    }
}

/// 32 random bytes: the host's generator XOR the TPM's.
fn fresh_secret(tpm_random: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut secret = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(&mut *secret);
    for (s, t) in secret.iter_mut().zip(tpm_random) {
        *s ^= t;
    }
    secret
}

/// The KEK sealed by the TPM to PCR values. Holds no key: every `load` unseals.
#[derive(Debug)]
pub struct TpmKeyProvider {
    sealer: Sealer,
}

impl TpmKeyProvider {
    /// `tcti` as the TSS spells it (`device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`,
    /// `tabrmd:`), the sealed key file, and the PCRs a new key is sealed to.
    pub fn new(
        tcti: &str,
        sealed_path: impl Into<PathBuf>,
        pcrs: PcrSelection,
    ) -> Result<Self, KeyError> {
        let sealed_path = sealed_path.into();
        Sealer::new(tcti, sealed_path, pcrs, KEK_PREFIX)
            .map(|sealer| TpmKeyProvider { sealer })
            .map_err(|e| KeyError::of_sealed(KeyKind::Kek, e, tcti, Path::new("")))
    }

    pub fn path(&self) -> &Path {
        self.sealer.path()
    }

    /// The PCRs a new key is sealed to.
    pub fn pcrs(&self) -> &PcrSelection {
        self.sealer.pcrs()
    }

    fn error(&self, e: SealError) -> KeyError {
        KeyError::of_sealed(KeyKind::Kek, e, self.sealer.tcti(), self.sealer.path())
    }
}

impl KeyError {
    /// The error of a TPM-sealed key file of `kind` at `path`.
    fn of_sealed(kind: KeyKind, e: SealError, tcti: &str, path: &Path) -> Self {
        let path = path.to_path_buf();
        match e {
            SealError::Missing => KeyError::Missing { kind, path },
            SealError::TooOpen { mode } => KeyError::TooOpen { kind, path, mode },
            SealError::Io(source) => KeyError::Io { kind, path, source },
            SealError::Malformed { prefix } => KeyError::SealedMalformed { kind, path, prefix },
            SealError::PcrMismatch { pcrs } => KeyError::PcrMismatch { kind, path, pcrs },
            SealError::OtherTpm => KeyError::OtherTpm { kind, path },
            SealError::Tpm { what, detail } => KeyError::Tpm {
                tcti: tcti.to_string(),
                what,
                detail,
            },
        }
    }
}

impl KeyProvider for TpmKeyProvider {
    fn load(&self) -> Result<Kek, KeyError> {
        let secret = self.sealer.unseal().map_err(|e| self.error(e))?;
        Ok(Kek::from_bytes(*secret))
    }

    fn create_if_absent(&self) -> Result<bool, KeyError> {
        self.sealer
            .seal_new(fresh_secret)
            .map_err(|e| self.error(e))
    }

    fn describe(&self) -> String {
        self.sealer.describe("TPM-sealed key file")
    }
}

/// The device signing key's Ed25519 seed sealed by the TPM to PCR values; signs on the
/// host after unsealing (see the module doc).
#[derive(Debug)]
pub struct TpmSigningKeyProvider {
    sealer: Sealer,
}

impl TpmSigningKeyProvider {
    /// As [`TpmKeyProvider::new`], for the signing key's sealed file.
    pub fn new(
        tcti: &str,
        sealed_path: impl Into<PathBuf>,
        pcrs: PcrSelection,
    ) -> Result<Self, KeyError> {
        let sealed_path = sealed_path.into();
        Sealer::new(tcti, sealed_path, pcrs, SIGNING_PREFIX)
            .map(|sealer| TpmSigningKeyProvider { sealer })
            .map_err(|e| KeyError::of_sealed(KeyKind::Signing, e, tcti, Path::new("")))
    }

    pub fn path(&self) -> &Path {
        self.sealer.path()
    }

    /// The PCRs a new key is sealed to.
    pub fn pcrs(&self) -> &PcrSelection {
        self.sealer.pcrs()
    }

    fn error(&self, e: SealError) -> KeyError {
        KeyError::of_sealed(KeyKind::Signing, e, self.sealer.tcti(), self.sealer.path())
    }
}

impl SigningKeyProvider for TpmSigningKeyProvider {
    fn load(&self) -> Result<Box<dyn DeviceSigner>, KeyError> {
        let seed = self.sealer.unseal().map_err(|e| self.error(e))?;
        Ok(Box::new(MemorySigner::from_seed(*seed)))
    }

    fn create_if_absent(&self) -> Result<bool, KeyError> {
        self.sealer
            .seal_new(fresh_secret)
            .map_err(|e| self.error(e))
    }

    fn describe(&self) -> String {
        self.sealer.describe("TPM-sealed signing key file")
    }
}

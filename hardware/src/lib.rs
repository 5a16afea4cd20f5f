//! The appliance's hardware, behind traits so that the recorder and the viewer-api run
//! the same code on the box (TPM, watchdog, disk health) and in tests (simulated).
//!
//! Built so far: key sealing (the key-encryption key that wraps every segment's data
//! key: losing it loses the footage, replacing it silently would make the footage
//! unreadable, so providers never overwrite an existing key), in a root-only file or
//! sealed by a TPM 2.0 to the boot chain (`tpm`, the cargo feature `tpm`, on by
//! default), the device signing key (likewise), the service manager's watchdog, the
//! store's storage health (`storage`: fill, read-only, I/O errors, SMART) and the
//! tamper input (`tamper`: a case-open switch on a GPIO line, latched until
//! acknowledged).

pub mod keys;
mod secret_file;
pub mod signing;
pub mod storage;
pub mod tamper;
#[cfg(feature = "tpm")]
pub mod tpm;
pub mod watchdog;

pub use keys::{FileKeyProvider, Kek, KeyError, KeyKind, KeyProvider, MemoryKeyProvider};
#[cfg(feature = "tpm")]
pub use tpm::{PcrSelection, TpmKeyProvider, TpmSigningKeyProvider};

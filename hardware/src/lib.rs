//! The appliance's hardware, behind traits so that the recorder and the viewer-api run
//! the same code on the box (TPM, watchdog, disk health) and in tests (simulated).
//!
//! Only key sealing exists so far: the key-encryption key (KEK) that wraps every
//! segment's data key. Losing it loses the footage; replacing it silently would make
//! the footage unreadable, so providers never overwrite an existing key.

pub mod keys;
mod secret_file;
pub mod signing;

pub use keys::{FileKeyProvider, Kek, KeyError, KeyProvider, MemoryKeyProvider};

//! Where the access log is anchored: the recorder side signs and keeps checkpoints of
//! the chain's head (see `recorder::checkpoint` for why it is not the viewer-api).
//!
//! In production the anchor is the recorder's local service (a Unix socket); tests use
//! [`MemoryAnchor`], which signs with a key it holds, as the recorder would.

use std::sync::Mutex;

pub use recorder::checkpoint::{Checkpoint, SignedCheckpoint};

#[derive(Debug, thiserror::Error)]
#[error("log anchor: {0}")]
pub struct AnchorError(pub String);

pub trait LogAnchor: Send + Sync {
    /// Has the recorder side sign and keep a checkpoint of the chain's head.
    fn checkpoint(&self, c: Checkpoint) -> Result<SignedCheckpoint, AnchorError>;
    /// The newest checkpoint kept, if any.
    fn latest(&self) -> Result<Option<SignedCheckpoint>, AnchorError>;
    /// The raw Ed25519 public key the checkpoints are signed with.
    fn public_key(&self) -> Result<[u8; 32], AnchorError>;
}

/// An anchor in memory, for tests: signs with its own key and keeps what it signed.
pub struct MemoryAnchor {
    signer: hardware::signing::MemorySigner,
    kept: Mutex<Vec<SignedCheckpoint>>,
}

impl MemoryAnchor {
    pub fn new(seed: [u8; 32]) -> Self {
        MemoryAnchor {
            signer: hardware::signing::MemorySigner::from_seed(seed),
            kept: Mutex::new(Vec::new()),
        }
    }

    /// Everything signed so far, oldest first.
    pub fn kept(&self) -> Vec<SignedCheckpoint> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl LogAnchor for MemoryAnchor {
    fn checkpoint(&self, c: Checkpoint) -> Result<SignedCheckpoint, AnchorError> {
        let signed = c.sign(&self.signer);
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(signed.clone());
        Ok(signed)
    }

    fn latest(&self) -> Result<Option<SignedCheckpoint>, AnchorError> {
        Ok(self.kept().pop())
    }

    fn public_key(&self) -> Result<[u8; 32], AnchorError> {
        use hardware::signing::DeviceSigner;
        Ok(self.signer.public_key())
    }
}

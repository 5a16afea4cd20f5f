//! Signed checkpoints of the access log's head: the anchor that makes cutting or
//! rewriting the viewer-api's log detectable.
//!
//! The viewer-api owns the access log but must not be able to vouch for it alone: a
//! process that can rewrite the log could also rewrite an unsigned head. So the
//! recorder side, which holds the device signing key the viewer-api cannot read, signs
//! `(seq, hash, time)` of the chain's head on request and keeps every checkpoint in a
//! file the viewer-api cannot write. `viewer-api audit verify` checks the chain against
//! the newest one: entries up to its `seq` must hash to exactly its `hash`, and the
//! chain must not be shorter.
//!
//! The signed message is domain-separated text, so a checkpoint signature can never be
//! mistaken for an export manifest's (both use the device key).

use serde::{Deserialize, Serialize};

/// An access-log entry, as the viewer-api names it to the recorder side with each
/// request made for it (footage read, hold, export signature): the recorder journals
/// it with what it served or did, so anything that left without an entry in the log is
/// a mismatch the log's verification finds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogRef {
    pub seq: i64,
    /// The entry's hash (hex).
    pub hash: String,
}

impl LogRef {
    /// Whether `hash` is a SHA-256 in hex (what the access log's entries carry).
    pub fn has_sha256_hash(&self) -> bool {
        self.hash.len() == 64 && self.hash.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

/// What a checkpoint states: the access log's entry `seq` has hash `hash` (hex), seen
/// by the recorder side at `time_unix_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub time_unix_ms: i64,
}

impl Checkpoint {
    /// The exact bytes signed.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "ringfence access-log checkpoint v1\nseq {}\nhash {}\ntime_unix_ms {}\n",
            self.seq, self.hash, self.time_unix_ms
        )
        .into_bytes()
    }

    pub fn sign(self, signer: &dyn hardware::signing::DeviceSigner) -> SignedCheckpoint {
        let signature = hex::encode(signer.sign(&self.message()));
        SignedCheckpoint {
            checkpoint: self,
            signature,
        }
    }
}

/// A checkpoint with the device's Ed25519 signature (hex) over [`Checkpoint::message`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    pub signature: String,
}

impl SignedCheckpoint {
    /// Whether the signature is the device key's over this checkpoint.
    pub fn verify(&self, public_key: &[u8; 32]) -> bool {
        hex::decode(&self.signature).is_ok_and(|sig| {
            hardware::signing::verify_signature(public_key, &self.checkpoint.message(), &sig)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hardware::signing::{DeviceSigner, MemorySigner};

    #[test]
    fn a_signed_checkpoint_verifies_and_any_change_does_not() {
        let signer = MemorySigner::from_seed([7; 32]);
        let pk = signer.public_key();
        let c = Checkpoint {
            seq: 42,
            hash: "ab".repeat(32),
            time_unix_ms: 1_700_000_000_000,
        }
        .sign(&signer);
        assert!(c.verify(&pk));
        let json = serde_json::to_string(&c).unwrap();
        let back: SignedCheckpoint = serde_json::from_str(&json).unwrap();
        assert!(back.verify(&pk));

        let mut cut = c.clone();
        cut.checkpoint.seq = 41;
        assert!(!cut.verify(&pk));
        let mut rewritten = c.clone();
        rewritten.checkpoint.hash = "cd".repeat(32);
        assert!(!rewritten.verify(&pk));
        let other = MemorySigner::from_seed([8; 32]).public_key();
        assert!(!c.verify(&other));
    }
}

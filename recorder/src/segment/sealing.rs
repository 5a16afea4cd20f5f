//! Sealing: the clear header, the keyed state that seals and opens every chunk of a
//! segment (nonce, chained associated data, footer), and the wrapping of data keys
//! under the KEK. The one place with AES-GCM and SHA-256.

use rand::TryRngCore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use ring::digest::{Context as Sha256, SHA256};
use zeroize::Zeroizing;

use super::{
    AAD_FINAL_LEN, AAD_LEN, CHUNK_HDR_LEN, CHUNK_MAGIC, DataKey, FLAG_FINAL, FOOTER_LEN,
    FOOTER_MAGIC, FORMAT_VERSION, HEADER_FIXED_LEN, KEY_LEN, MAX_CAMERA_LEN, MAX_CHUNK_PLAINTEXT,
    NONCE_LEN, SEGMENT_MAGIC, SHA256_LEN, SegmentError, SegmentId, TAG_LEN,
};

/// The footer that follows a FINAL chunk of `len` plaintext bytes: the chunk's on-disk
/// length (so a reader finds it from the end of the file) and a marker.
pub(super) fn footer(len: u32) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    let record = len + (CHUNK_HDR_LEN + TAG_LEN) as u32;
    f[..4].copy_from_slice(&record.to_be_bytes());
    f[4..].copy_from_slice(&FOOTER_MAGIC);
    f
}

pub(super) fn os_random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut b)
        .expect("the operating system's random number generator failed");
    b
}

pub(super) fn validate_camera(camera: &str) -> Result<(), SegmentError> {
    if camera.is_empty() || camera.len() > MAX_CAMERA_LEN {
        return Err(SegmentError::InvalidInput(format!(
            "camera id must be 1 to {MAX_CAMERA_LEN} bytes, got {}",
            camera.len()
        )));
    }
    if camera.chars().any(char::is_control) {
        return Err(SegmentError::InvalidInput(
            "camera id contains control characters".into(),
        ));
    }
    Ok(())
}

pub(super) fn encode_header(id: SegmentId, camera: &str, nonce_prefix: [u8; 4]) -> Vec<u8> {
    let len = HEADER_FIXED_LEN + camera.len();
    let mut h = Vec::with_capacity(len);
    h.extend_from_slice(&SEGMENT_MAGIC);
    h.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    h.extend_from_slice(&(len as u16).to_be_bytes());
    h.extend_from_slice(&id.0);
    h.extend_from_slice(&nonce_prefix);
    h.extend_from_slice(&[0u8; 4]);
    h.push(camera.len() as u8);
    h.extend_from_slice(camera.as_bytes());
    h
}

/// AES-256-GCM under `key`, with ring: the one AES-GCM implementation for sealing and
/// opening chunks and for wrapping keys (hardware AES and carry-less multiplication on
/// x86_64 and ARMv8, detected at run time).
pub(super) fn aes_256_gcm(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES-256 key"))
}

/// SHA-256 with ring (SHA extensions of x86_64 and ARMv8, detected at run time).
pub(super) fn sha256_new() -> Sha256 {
    Sha256::new(&SHA256)
}

pub(super) fn sha256_finish(h: Sha256) -> [u8; SHA256_LEN] {
    h.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// The keyed state every chunk of one segment shares.
pub(super) struct Sealer {
    cipher: LessSafeKey,
    header_hash: [u8; SHA256_LEN],
    nonce_prefix: [u8; 4],
}

impl Sealer {
    pub(super) fn new(key: &DataKey, header: &[u8], nonce_prefix: [u8; 4]) -> Self {
        Sealer {
            cipher: key.cipher(),
            header_hash: ring::digest::digest(&SHA256, header)
                .as_ref()
                .try_into()
                .expect("SHA-256 is 32 bytes"),
            nonce_prefix,
        }
    }

    fn nonce(&self, index: u64) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[..4].copy_from_slice(&self.nonce_prefix);
        n[4..].copy_from_slice(&index.to_be_bytes());
        n
    }

    /// The associated data of a chunk; use `&a[..n]` of the returned `(a, n)`.
    fn aad(
        &self,
        index: u64,
        flags: u8,
        len: u32,
        prev_tag: &[u8; TAG_LEN],
    ) -> ([u8; AAD_FINAL_LEN], usize) {
        let mut a = [0u8; AAD_FINAL_LEN];
        a[..SHA256_LEN].copy_from_slice(&self.header_hash);
        a[SHA256_LEN..SHA256_LEN + 8].copy_from_slice(&index.to_be_bytes());
        a[SHA256_LEN + 8] = flags;
        a[SHA256_LEN + 9..SHA256_LEN + 13].copy_from_slice(&len.to_be_bytes());
        a[SHA256_LEN + 13..AAD_LEN].copy_from_slice(prev_tag);
        if flags & FLAG_FINAL == 0 {
            return (a, AAD_LEN);
        }
        a[AAD_LEN..].copy_from_slice(&footer(len));
        (a, AAD_FINAL_LEN)
    }

    /// Authenticates and decrypts `ct` in place.
    pub(super) fn open(
        &self,
        index: u64,
        flags: u8,
        prev_tag: &[u8; TAG_LEN],
        ct: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), SegmentError> {
        let (aad, n) = self.aad(index, flags, ct.len() as u32, prev_tag);
        self.cipher
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(self.nonce(index)),
                Aad::from(&aad[..n]),
                Tag::from(*tag),
                ct,
                0..,
            )
            .map(|_| ())
            .map_err(|_| SegmentError::Auth { chunk: index })
    }

    /// `buf` holds `CHUNK_HDR_LEN` placeholder bytes followed by the plaintext; on return
    /// it holds the complete on-disk chunk (for a FINAL chunk, with the footer). Returns
    /// the chunk's tag.
    pub(super) fn seal(
        &self,
        index: u64,
        flags: u8,
        prev_tag: &[u8; TAG_LEN],
        buf: &mut Vec<u8>,
    ) -> Result<[u8; TAG_LEN], SegmentError> {
        let plain_len = buf.len() - CHUNK_HDR_LEN;
        if plain_len > MAX_CHUNK_PLAINTEXT {
            return Err(SegmentError::InvalidInput(format!(
                "chunk of {plain_len} bytes exceeds the {MAX_CHUNK_PLAINTEXT}-byte limit; close the GOP earlier"
            )));
        }
        let len = plain_len as u32;
        let (aad, n) = self.aad(index, flags, len, prev_tag);
        let tag = self
            .cipher
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(self.nonce(index)),
                Aad::from(&aad[..n]),
                &mut buf[CHUNK_HDR_LEN..],
            )
            .map_err(|_| SegmentError::InvalidInput("chunk too large to encrypt".into()))?;
        let tag: [u8; TAG_LEN] = tag.as_ref().try_into().expect("tag length");
        buf.extend_from_slice(&tag);
        if flags & FLAG_FINAL != 0 {
            buf.extend_from_slice(&footer(len));
        }
        buf[..4].copy_from_slice(&CHUNK_MAGIC);
        buf[4..12].copy_from_slice(&index.to_be_bytes());
        buf[12] = flags;
        buf[13..17].copy_from_slice(&len.to_be_bytes());
        Ok(tag)
    }
}

// ---------------------------------------------------------------------------------------
// key wrapping

const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

/// Wraps a data key for the catalog: AES-256-GCM under the KEK with a random nonce,
/// associated data = the segment id. Output: `nonce (12) ‖ ciphertext (32) ‖ tag (16)`.
pub fn wrap_key(kek: &[u8; 32], id: SegmentId, key: &DataKey) -> Vec<u8> {
    let cipher = aes_256_gcm(kek);
    let nonce: [u8; NONCE_LEN] = os_random();
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(key.as_bytes());
    let tag = cipher
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&id.0),
            &mut out[NONCE_LEN..],
        )
        .expect("32 bytes always encrypt");
    out.extend_from_slice(tag.as_ref());
    out
}

/// Reverses [`wrap_key`]; fails with [`SegmentError::KeyUnwrap`] for a wrong KEK, a
/// wrong segment id, or damaged bytes.
pub fn unwrap_key(kek: &[u8; 32], id: SegmentId, wrapped: &[u8]) -> Result<DataKey, SegmentError> {
    if wrapped.len() != WRAPPED_LEN {
        return Err(SegmentError::KeyUnwrap);
    }
    let cipher = aes_256_gcm(kek);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&wrapped[NONCE_LEN..NONCE_LEN + KEY_LEN]);
    let nonce: [u8; NONCE_LEN] = wrapped[..NONCE_LEN].try_into().expect("12 bytes");
    let tag: [u8; TAG_LEN] = wrapped[NONCE_LEN + KEY_LEN..].try_into().expect("16 bytes");
    cipher
        .open_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&id.0),
            Tag::from(tag),
            key.as_mut_slice(),
            0..,
        )
        .map_err(|_| SegmentError::KeyUnwrap)?;
    Ok(DataKey(key))
}

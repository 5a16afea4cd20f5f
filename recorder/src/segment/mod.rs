//! The on-disk segment format: one file per run of GOPs of one camera, sealed so that
//! the disk (or whoever takes it) learns nothing about the footage and cannot alter it
//! unnoticed.
//!
//! Why it looks the way it does:
//!
//! * **Per-segment data key.** Each file has its own random AES-256 key, stored only
//!   wrapped by the KEK in the catalog ([`wrap_key`]). Deleting the catalog row erases
//!   the footage cryptographically even where flash keeps old blocks.
//! * **Nothing in clear but routing.** The clear header holds only what is needed to
//!   find the key and check we opened the right file (magic, version, segment id,
//!   camera, nonce prefix). Codec parameters, timestamps, frame sizes (which reveal
//!   activity in the scene) and frames are all inside the sealed chunks.
//! * **One chunk per GOP.** A GOP is the unit the recorder has in memory anyway and the
//!   unit playback can start from; sealing it whole costs one AES-GCM call and one
//!   `write` per GOP, which matters on a 2-core ARM box with 32 cameras.
//! * **Chunks are bound to their place.** The associated data of every chunk is
//!   `SHA-256(clear header) ‖ index ‖ flags ‖ length ‖ tag of the previous chunk`, and
//!   the nonce is `prefix ‖ index`. So editing the header, swapping, reordering,
//!   dropping, duplicating, re-flagging a chunk, or moving it to another segment or
//!   camera, all fail authentication. The chain through the previous tag is what lets
//!   indices skip a value: a write that failed half-way (ENOSPC) *burns* its index
//!   instead of reusing its nonce for different plaintext, and no chunk can be cut out
//!   of the middle without breaking the chain.
//! * **FINAL marks a complete file.** The last chunk carries the FINAL flag and a
//!   trailer. A file without it was cut (power loss, kill -9) and [`recover`] closes it
//!   at its last authentic chunk. Truncation itself cannot be told apart from a crash,
//!   which is why only segments the catalog knows as still open should be recovered.
//!   The trailer written by recovery uses an index with the top bit set, a nonce space
//!   the writer never uses, so a chunk torn by the crash never shares its nonce.
//! * **The FINAL chunk indexes the segment.** Besides the counts, it holds every GOP
//!   chunk's offset, length, chunk index and start time, and every frame's pts, key flag
//!   and size: what playback needs to lay out an MP4 and to read only the chunks a
//!   range covers, without decrypting the footage first. It is sealed like every chunk
//!   (frame sizes reveal activity in the scene), varint-coded (4 to 5 bytes a frame;
//!   the writer keeps it encoded as it goes, so its memory grows by that much), and
//!   written by [`SegmentWriter::finish`] and by [`recover`] (from the authentic
//!   chunks). Sequential readers and [`verify`] recompute it from the GOP chunks and
//!   require the stored FINAL plaintext to be byte for byte the same.
//! * **A clear footer finds the index.** After the FINAL chunk come 8 bytes:
//!   the FINAL chunk's on-disk length and `"RFTR"`. [`SegmentReader::open_index`] reads
//!   the header, chunk 0 and the last bytes of the file, and nothing else. The footer
//!   is part of the FINAL chunk's associated data (and compared with the value the
//!   authenticated length implies), so it cannot be altered unnoticed; a file that does
//!   not end with a footer and FINAL chunk (still being written, or cut) has no index
//!   ([`SegmentError::NoIndex`]) and is read in order instead.
//! * **Random access authenticates exactly like reading in order.** Chunks are back to
//!   back, so the previous chunk's tag, which the chained associated data needs, is the
//!   16 bytes just before a chunk: [`SegmentReader::read_chunk_at`] reads them with the
//!   chunk and uses the very same nonce and associated data (header hash, index, flags,
//!   length, previous tag) as the sequential reader. The chaining is unchanged. Reading
//!   the previous tag from the file instead of trusting anything new is sound because
//!   the writer seals each index once under a key of its own: the only ciphertext that
//!   authenticates as chunk *k* of this segment is the one the writer wrote, with the
//!   real previous tag, and the authenticated index says which *k* lives where (and the
//!   reader checks the chunk header there says *k*, not FINAL, and the index's length).
//!   So a chunk swapped, moved, taken from another segment or camera, or altered fails
//!   by random access as it does in order; the tests check both agree on every
//!   tampered file. The index itself must describe the file exactly: chunks back to back
//!   from the end of chunk 0 to the FINAL chunk, indices below the FINAL one's, counts
//!   equal to the trailer's.
//!
//! Layout (integers big-endian):
//!
//! ```text
//! header   magic "RFSEG\0\0\x01" (8) | version u16 = 1 | header_len u16 | segment id (16)
//!          | nonce prefix (4) | reserved (4, zero) | camera_len u8 | camera (UTF-8, ≤ 32)
//! chunk    "RFCK" | index u64 | flags u8 (bit0 FINAL) | len u32 | ciphertext (len) | tag (16)
//!          nonce = prefix ‖ index u64
//!          AAD = SHA-256(header) ‖ index u64 ‖ flags u8 ‖ len u32 ‖ previous chunk's tag
//!                (zeros for chunk 0) [‖ footer, for the FINAL chunk]
//! chunk 0  params:  start_unix_ms i64 | codec u8 | width u32 | height u32
//!                   | extra_data (varint len + bytes) | rfc6381 (varint len + UTF-8)
//! chunk k  GOP:     start_unix_ms i64 | frame count varint
//!                   | per frame: pts_90k zigzag varint (first absolute, then deltas)
//!                     | flags u8 (bit0 key) | size varint
//!                   | frame bytes, back to back
//! last     FINAL:   frames u64 | key_frames u64 | first/last pts_90k i64
//!                   | first/last unix_ms i64
//!                   | GOP count varint | per GOP chunk (deltas from the previous entry,
//!                     the first from 0):
//!                       chunk index delta varint (≥ 1)
//!                       | offset − previous chunk's end varint (0: chunks are contiguous)
//!                       | len varint | start_unix_ms zigzag varint delta
//!                       | frame count varint (≥ 1)
//!                       | per frame: pts_90k zigzag varint (wrapping delta, chained
//!                         across GOPs) | (size << 1 | key) varint
//! footer   FINAL chunk's on-disk length u32 (17 + len + 16) | "RFTR"
//! ```

mod codec;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::TryRngCore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use ring::digest::{Context as Sha256, SHA256};
use zeroize::Zeroizing;

use codec::{DecodeError, FrameMeta};

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RFSEG\x00\x00\x01";
/// The one format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Longest camera id, in bytes.
pub const MAX_CAMERA_LEN: usize = 32;
/// Largest plaintext of one chunk (one GOP). A GOP larger than this is refused by the
/// writer: the caller must close the GOP early (start a new chunk) before reaching it.
pub const MAX_CHUNK_PLAINTEXT: usize = 256 << 20;

const CHUNK_MAGIC: [u8; 4] = *b"RFCK";
const CHUNK_HDR_LEN: usize = 17;
const TAG_LEN: usize = 16;
const FLAG_FINAL: u8 = 0x01;
/// Fixed part of the header before the camera id.
const HEADER_FIXED_LEN: usize = 37;
/// Chunk indices at or above this are only used by the FINAL chunk [`recover`] writes.
const RECOVERY_INDEX: u64 = 1 << 63;
/// Clear footer after the FINAL chunk: `record length u32 | "RFTR"`.
const FOOTER_LEN: usize = 8;
const FOOTER_MAGIC: [u8; 4] = *b"RFTR";
/// Associated data: header hash, index, flags, length, previous tag, and for the
/// FINAL chunk the footer.
const AAD_LEN: usize = 32 + 8 + 1 + 4 + TAG_LEN;
const AAD_FINAL_LEN: usize = AAD_LEN + FOOTER_LEN;

/// The footer that follows a FINAL chunk of `len` plaintext bytes: the chunk's on-disk
/// length (so a reader finds it from the end of the file) and a marker.
fn footer(len: u32) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    let record = len + (CHUNK_HDR_LEN + TAG_LEN) as u32;
    f[..4].copy_from_slice(&record.to_be_bytes());
    f[4..].copy_from_slice(&FOOTER_MAGIC);
    f
}

fn os_random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut b)
        .expect("the operating system's random number generator failed");
    b
}

// ---------------------------------------------------------------------------------------
// small public types

/// A segment's 128-bit random identity; names the file and binds its chunks and key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(pub [u8; 16]);

impl SegmentId {
    pub fn random() -> Self {
        SegmentId(os_random())
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentId({self})")
    }
}

impl FromStr for SegmentId {
    type Err = SegmentError;
    /// Exactly 32 hex digits (either case; [`Display`](fmt::Display) writes lowercase).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut id = [0u8; 16];
        if s.len() != 32 || hex::decode_to_slice(s, &mut id).is_err() {
            return Err(SegmentError::InvalidInput(
                "a segment id is 32 hexadecimal digits".into(),
            ));
        }
        Ok(SegmentId(id))
    }
}

impl serde::Serialize for SegmentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SegmentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Video codec of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    H264,
    H265,
}

impl Codec {
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Codec {
    type Err = SegmentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "h264" => Ok(Codec::H264),
            "h265" => Ok(Codec::H265),
            _ => Err(SegmentError::InvalidInput(
                "unknown codec (expected \"h264\" or \"h265\")".into(),
            )),
        }
    }
}

/// A segment's AES-256 data key. Wiped from memory on drop; never printed.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh key from the operating system's random number generator.
    pub fn random() -> Self {
        DataKey(Zeroizing::new(os_random()))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DataKey(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> LessSafeKey {
        aes_256_gcm(&self.0)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// What a player needs to decode the stream; stored encrypted in chunk 0.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CodecParams {
    pub codec: Codec,
    /// avcC / hvcC decoder configuration record.
    pub extra_data: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// e.g. `avc1.640028`, for MSE / MP4 export.
    pub rfc6381: String,
}

/// One access unit, AVC-style length-prefixed NAL units as given by the depacketizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub pts_90k: i64,
    pub key: bool,
    pub data: Vec<u8>,
}

/// A run of frames sealed as one chunk, normally key frame + followers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gop {
    /// Wall time of the first frame.
    pub start_unix_ms: i64,
    pub frames: Vec<Frame>,
}

/// Summary of a segment, stored in its FINAL chunk.
///
/// `first_unix_ms` is the first GOP's start; `last_unix_ms` is the last GOP's start plus
/// the media time from its first to its last frame (not counting the last frame's
/// duration, which is unknown). With no GOP at all, both are the segment's start time
/// and both pts are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Trailer {
    pub frames: u64,
    pub key_frames: u64,
    pub first_pts_90k: i64,
    pub last_pts_90k: i64,
    pub first_unix_ms: i64,
    pub last_unix_ms: i64,
}

/// Where a GOP chunk was found (or written): what its index entry needs beyond the GOP.
#[derive(Debug, Clone, Copy)]
struct ChunkAt {
    index: u64,
    offset: u64,
    len: u64,
}

/// Counts a segment's GOPs the same way for the writer, the reader and recovery, so the
/// trailer and the segment index can be recomputed and checked from the chunks.
#[derive(Debug, Clone, Default)]
struct TrailerAcc {
    gops: u64,
    frames: u64,
    key_frames: u64,
    first_pts_90k: i64,
    last_pts_90k: i64,
    first_unix_ms: i64,
    last_unix_ms: i64,
    /// The segment index so far, encoded (a few bytes per frame).
    index: codec::IndexBuilder,
}

impl TrailerAcc {
    /// `gop` must have at least one frame; `at` is where its chunk is in the file.
    fn add(&mut self, gop: &Gop, at: ChunkAt) {
        let (Some(first), Some(last)) = (gop.frames.first(), gop.frames.last()) else {
            return;
        };
        let keys = gop.frames.iter().filter(|f| f.key).count() as u64;
        self.count(
            gop.start_unix_ms,
            first.pts_90k,
            last.pts_90k,
            gop.frames.len() as u64,
            keys,
        );
        self.index.push(
            codec::IndexEntry {
                chunk_index: at.index,
                offset: at.offset,
                len: at.len,
                start_unix_ms: gop.start_unix_ms,
                frames: gop.frames.len() as u64,
            },
            gop.frames.iter().map(|f| FrameMeta {
                pts_90k: f.pts_90k,
                key: f.key,
                size: f.data.len() as u64,
            }),
        );
    }

    fn count(&mut self, start_unix_ms: i64, first_pts: i64, last_pts: i64, frames: u64, keys: u64) {
        if self.gops == 0 {
            self.first_pts_90k = first_pts;
            self.first_unix_ms = start_unix_ms;
        }
        self.gops += 1;
        self.frames += frames;
        self.key_frames += keys;
        self.last_pts_90k = last_pts;
        let span_ms = (i128::from(last_pts) - i128::from(first_pts)).max(0) / 90;
        self.last_unix_ms = (i128::from(start_unix_ms) + span_ms)
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    }

    /// The FINAL chunk's plaintext: trailer and segment index.
    fn final_plaintext(&self, start_unix_ms: i64, buf: &mut Vec<u8>) {
        codec::encode_final(buf, &self.trailer(start_unix_ms), &self.index);
    }

    fn trailer(&self, start_unix_ms: i64) -> Trailer {
        if self.gops == 0 {
            return Trailer {
                first_unix_ms: start_unix_ms,
                last_unix_ms: start_unix_ms,
                ..Trailer::default()
            };
        }
        Trailer {
            frames: self.frames,
            key_frames: self.key_frames,
            first_pts_90k: self.first_pts_90k,
            last_pts_90k: self.last_pts_90k,
            first_unix_ms: self.first_unix_ms,
            last_unix_ms: self.last_unix_ms,
        }
    }
}

// ---------------------------------------------------------------------------------------
// errors

/// Everything that can go wrong with a segment. Messages name chunks and offsets, never
/// key material or footage.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("segment I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("not a Ringfence segment file (bad magic)")]
    NotASegment,
    #[error("unsupported segment format version {0} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u16),
    #[error(
        "wrong segment: the file is segment {found_id} of camera {found_camera:?}, \
         expected segment {expected_id} of camera {expected_camera:?}"
    )]
    WrongSegment {
        expected_id: SegmentId,
        found_id: SegmentId,
        expected_camera: String,
        found_camera: String,
    },
    #[error("chunk {chunk} failed authentication: wrong key, or the file was altered or corrupted")]
    Auth { chunk: u64 },
    #[error("segment is cut (no final chunk); its authentic prefix is {valid_len} bytes")]
    Cut { valid_len: u64 },
    /// From [`SegmentReader::open_index`]: the file does not end with a FINAL chunk (it
    /// is being written, or was cut). Read it in order instead.
    #[error("segment has no final chunk at its end (still being written, or cut): no index")]
    NoIndex,
    #[error("malformed segment: {0}")]
    Malformed(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("cannot unwrap segment key: wrong KEK, wrong segment id, or damaged wrapped key")]
    KeyUnwrap,
    #[error(
        "segment writer unusable: a failed write could not be rolled back, the file must be recovered"
    )]
    Poisoned,
}

fn malformed(chunk: u64, e: DecodeError) -> SegmentError {
    SegmentError::Malformed(format!("chunk {chunk}: {e}"))
}

// ---------------------------------------------------------------------------------------
// header and chunk sealing

fn validate_camera(camera: &str) -> Result<(), SegmentError> {
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

fn encode_header(id: SegmentId, camera: &str, nonce_prefix: [u8; 4]) -> Vec<u8> {
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
fn aes_256_gcm(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES-256 key"))
}

/// SHA-256 with ring (SHA extensions of x86_64 and ARMv8, detected at run time).
fn sha256_new() -> Sha256 {
    Sha256::new(&SHA256)
}

fn sha256_finish(h: Sha256) -> [u8; 32] {
    h.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// The keyed state every chunk of one segment shares.
struct Sealer {
    cipher: LessSafeKey,
    header_hash: [u8; 32],
    nonce_prefix: [u8; 4],
}

impl Sealer {
    fn new(key: &DataKey, header: &[u8], nonce_prefix: [u8; 4]) -> Self {
        Sealer {
            cipher: key.cipher(),
            header_hash: ring::digest::digest(&SHA256, header)
                .as_ref()
                .try_into()
                .expect("SHA-256 is 32 bytes"),
            nonce_prefix,
        }
    }

    fn nonce(&self, index: u64) -> [u8; 12] {
        let mut n = [0u8; 12];
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
        a[..32].copy_from_slice(&self.header_hash);
        a[32..40].copy_from_slice(&index.to_be_bytes());
        a[40] = flags;
        a[41..45].copy_from_slice(&len.to_be_bytes());
        a[45..AAD_LEN].copy_from_slice(prev_tag);
        if flags & FLAG_FINAL == 0 {
            return (a, AAD_LEN);
        }
        a[AAD_LEN..].copy_from_slice(&footer(len));
        (a, AAD_FINAL_LEN)
    }

    /// Authenticates and decrypts `ct` in place.
    fn open(
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
    fn seal(
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

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

// ---------------------------------------------------------------------------------------
// writer

/// Result of [`SegmentWriter::finish`]: what the catalog row needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub bytes: u64,
    pub sha256: [u8; 32],
    pub trailer: Trailer,
    /// Chunks in the file, including the parameters and FINAL chunks.
    pub chunks: u64,
}

/// Test-only fault injection for the write path.
#[cfg(test)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Faults {
    /// The next chunk write puts only this many bytes on disk, then fails with ENOSPC.
    pub write_only: Option<usize>,
    /// Rolling back that failed write fails too.
    pub truncate_fails: bool,
}

/// Writes one segment file. Not thread-safe by design: one writer per camera task.
pub struct SegmentWriter {
    file: File,
    dir: PathBuf,
    dir_synced: bool,
    sealer: Sealer,
    start_unix_ms: i64,
    next_index: u64,
    prev_tag: [u8; TAG_LEN],
    bytes: u64,
    chunks: u64,
    hasher: Sha256,
    buf: Vec<u8>,
    acc: TrailerAcc,
    poisoned: bool,
    #[cfg(test)]
    pub(crate) faults: Faults,
}

impl fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("bytes", &self.bytes)
            .field("chunks", &self.chunks)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl SegmentWriter {
    /// Creates the file (`O_CREAT|O_EXCL`, mode 0600) and writes the header and the
    /// parameters chunk. On failure the partial file is removed.
    pub fn create(
        path: &Path,
        id: SegmentId,
        camera: &str,
        key: &DataKey,
        params: &CodecParams,
        start_unix_ms: i64,
    ) -> Result<Self, SegmentError> {
        Self::create_with_prefix(path, id, camera, key, params, start_unix_ms, os_random())
    }

    pub(crate) fn create_with_prefix(
        path: &Path,
        id: SegmentId,
        camera: &str,
        key: &DataKey,
        params: &CodecParams,
        start_unix_ms: i64,
        nonce_prefix: [u8; 4],
    ) -> Result<Self, SegmentError> {
        validate_camera(camera)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let header = encode_header(id, camera, nonce_prefix);
        let mut w = SegmentWriter {
            file,
            dir: parent_dir(path),
            dir_synced: false,
            sealer: Sealer::new(key, &header, nonce_prefix),
            start_unix_ms,
            next_index: 0,
            prev_tag: [0; TAG_LEN],
            bytes: 0,
            chunks: 0,
            hasher: sha256_new(),
            buf: Vec::new(),
            acc: TrailerAcc::default(),
            poisoned: false,
            #[cfg(test)]
            faults: Faults::default(),
        };
        // header and params chunk go out in one write, as one "chunk" for rollback purposes
        let r = (|| {
            w.buf.clear();
            w.buf.resize(CHUNK_HDR_LEN, 0);
            codec::encode_params(&mut w.buf, params, start_unix_ms);
            let tag = w.sealer.seal(0, 0, &[0; TAG_LEN], &mut w.buf)?;
            w.next_index = 1;
            let mut first = header;
            first.extend_from_slice(&w.buf);
            w.file.write_all_at(&first, 0)?;
            w.hasher.update(&first);
            w.bytes = first.len() as u64;
            w.chunks = 1;
            w.prev_tag = tag;
            Ok(())
        })();
        match r {
            Ok(()) => Ok(w),
            Err(e) => {
                drop(w);
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    /// Seals one GOP as one chunk and writes it with a single positioned write. On any
    /// I/O error (e.g. ENOSPC) the file is truncated back to the end of the last complete
    /// chunk, so it stays a valid cut segment, and the error is returned; the writer can
    /// be used again (e.g. once space is freed) or finished. If even the rollback fails
    /// the writer is poisoned: every later call returns [`SegmentError::Poisoned`] and
    /// the file is left for [`recover`].
    ///
    /// Returns the bytes added to the file.
    pub fn append_gop(&mut self, gop: &Gop) -> Result<u64, SegmentError> {
        if gop.frames.is_empty() {
            return Err(SegmentError::InvalidInput(
                "a GOP needs at least one frame".into(),
            ));
        }
        self.buf.clear();
        self.buf.resize(CHUNK_HDR_LEN, 0);
        codec::encode_gop(&mut self.buf, gop);
        let at = ChunkAt {
            index: self.next_index,
            offset: self.bytes,
            len: (self.buf.len() - CHUNK_HDR_LEN) as u64,
        };
        let n = self.write_chunk(0)?;
        self.acc.add(gop, at);
        Ok(n)
    }

    fn write_chunk(&mut self, flags: u8) -> Result<u64, SegmentError> {
        if self.poisoned {
            return Err(SegmentError::Poisoned);
        }
        if self.next_index >= RECOVERY_INDEX {
            return Err(SegmentError::InvalidInput(
                "chunk index space exhausted".into(),
            ));
        }
        let index = self.next_index;
        let tag = self
            .sealer
            .seal(index, flags, &self.prev_tag, &mut self.buf)?;
        // The nonce is used from here on, whether or not the write lands: never reuse it.
        self.next_index += 1;
        if let Err(e) = self.write_buf() {
            if self.rollback().is_err() {
                self.poisoned = true;
            }
            return Err(e.into());
        }
        self.hasher.update(&self.buf);
        self.bytes += self.buf.len() as u64;
        self.chunks += 1;
        self.prev_tag = tag;
        Ok(self.buf.len() as u64)
    }

    fn write_buf(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.faults.write_only.take() {
            let n = n.min(self.buf.len());
            self.file.write_all_at(&self.buf[..n], self.bytes)?;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.file.write_all_at(&self.buf, self.bytes)
    }

    fn rollback(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if self.faults.truncate_fails {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.file.set_len(self.bytes)
    }

    /// `fdatasync`s the file; the first call also fsyncs the directory so that the file
    /// itself survives a power loss, not only its data.
    pub fn sync_data(&mut self) -> Result<(), SegmentError> {
        if self.poisoned {
            return Err(SegmentError::Poisoned);
        }
        self.file.sync_data()?;
        if !self.dir_synced {
            fsync_dir(&self.dir)?;
            self.dir_synced = true;
        }
        Ok(())
    }

    /// Bytes in the file (all complete chunks).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Complete chunks in the file, including the parameters chunk.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// GOPs written so far.
    pub fn gops(&self) -> u64 {
        self.acc.gops
    }

    pub fn start_unix_ms(&self) -> i64 {
        self.start_unix_ms
    }

    /// The trailer [`finish`](Self::finish) would write now.
    pub fn trailer_so_far(&self) -> Trailer {
        self.acc.trailer(self.start_unix_ms)
    }

    /// Writes the FINAL chunk (trailer and segment index) and the footer, fsyncs the
    /// file and its directory, and returns the size and SHA-256 of the whole file
    /// (hashed while writing, not re-read). On error the file is left as a cut segment
    /// for [`recover`].
    pub fn finish(mut self) -> Result<Finished, SegmentError> {
        let trailer = self.trailer_so_far();
        self.buf.clear();
        self.buf.resize(CHUNK_HDR_LEN, 0);
        self.acc.final_plaintext(self.start_unix_ms, &mut self.buf);
        self.write_chunk(FLAG_FINAL)?;
        self.file.sync_all()?;
        fsync_dir(&self.dir)?;
        Ok(Finished {
            bytes: self.bytes,
            sha256: sha256_finish(self.hasher),
            trailer,
            chunks: self.chunks,
        })
    }
}

// ---------------------------------------------------------------------------------------
// reading: the chunk stream shared by the reader, verify and recover

/// Reads `out.len()` bytes unless EOF comes first; returns how many were read.
fn read_full(
    r: &mut BufReader<File>,
    hasher: &mut Option<Sha256>,
    out: &mut [u8],
) -> io::Result<usize> {
    let mut n = 0;
    while n < out.len() {
        match r.read(&mut out[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(h) = hasher {
        h.update(&out[..n]);
    }
    Ok(n)
}

struct ChunkStream {
    file: BufReader<File>,
    /// Bytes consumed from the file.
    pos: u64,
    hasher: Option<Sha256>,
    sealer: Sealer,
    /// Holds the ciphertext, then the plaintext, of the current chunk (reused).
    buf: Vec<u8>,
    plain_len: usize,
    prev_tag: [u8; TAG_LEN],
    last_index: Option<u64>,
    /// End of the last authentic chunk (0 until chunk 0 authenticates).
    valid_len: u64,
    /// End of the chunk that failed authentication, if that was the failure.
    failed_chunk_end: Option<u64>,
}

struct ChunkMeta {
    index: u64,
    flags: u8,
    /// Where the chunk starts in the file, and its plaintext length.
    offset: u64,
    len: usize,
}

impl ChunkMeta {
    fn at(&self) -> ChunkAt {
        ChunkAt {
            index: self.index,
            offset: self.offset,
            len: self.len as u64,
        }
    }
}

impl ChunkStream {
    /// Reads and checks the clear header.
    fn open(
        file: File,
        expect_id: SegmentId,
        expect_camera: &str,
        key: &DataKey,
        hash: bool,
        buf_capacity: usize,
    ) -> Result<Self, SegmentError> {
        let mut file = BufReader::with_capacity(buf_capacity, file);
        let mut hasher = hash.then(sha256_new);
        let mut header = [0u8; HEADER_FIXED_LEN + MAX_CAMERA_LEN];
        let n = read_full(&mut file, &mut hasher, &mut header[..12])?;
        let m = n.min(SEGMENT_MAGIC.len());
        if header[..m] != SEGMENT_MAGIC[..m] {
            return Err(SegmentError::NotASegment);
        }
        if n < 12 {
            return Err(SegmentError::Cut { valid_len: 0 });
        }
        let version = u16::from_be_bytes([header[8], header[9]]);
        if version != FORMAT_VERSION {
            return Err(SegmentError::UnsupportedVersion(version));
        }
        let header_len = usize::from(u16::from_be_bytes([header[10], header[11]]));
        if !(HEADER_FIXED_LEN + 1..=HEADER_FIXED_LEN + MAX_CAMERA_LEN).contains(&header_len) {
            return Err(SegmentError::Malformed(format!(
                "header length {header_len} out of range"
            )));
        }
        let n = read_full(&mut file, &mut hasher, &mut header[12..header_len])?;
        if n < header_len - 12 {
            return Err(SegmentError::Cut { valid_len: 0 });
        }
        let header = &header[..header_len];
        let found_id = SegmentId(header[12..28].try_into().expect("16 bytes"));
        let nonce_prefix: [u8; 4] = header[28..32].try_into().expect("4 bytes");
        if header[32..36] != [0; 4] {
            return Err(SegmentError::Malformed(
                "reserved header bytes are not zero".into(),
            ));
        }
        let cam_len = usize::from(header[36]);
        if HEADER_FIXED_LEN + cam_len != header_len {
            return Err(SegmentError::Malformed(
                "camera id length disagrees with header length".into(),
            ));
        }
        let found_camera = std::str::from_utf8(&header[HEADER_FIXED_LEN..])
            .map_err(|_| SegmentError::Malformed("camera id is not UTF-8".into()))?;
        if found_id != expect_id || found_camera != expect_camera {
            return Err(SegmentError::WrongSegment {
                expected_id: expect_id,
                found_id,
                expected_camera: expect_camera.to_owned(),
                found_camera: found_camera.to_owned(),
            });
        }
        Ok(ChunkStream {
            file,
            pos: header_len as u64,
            hasher,
            sealer: Sealer::new(key, header, nonce_prefix),
            buf: Vec::new(),
            plain_len: 0,
            prev_tag: [0; TAG_LEN],
            last_index: None,
            valid_len: 0,
            failed_chunk_end: None,
        })
    }

    fn cut(&self) -> SegmentError {
        SegmentError::Cut {
            valid_len: self.valid_len,
        }
    }

    /// Reads, checks and decrypts the next chunk (plaintext in [`Self::plaintext`]).
    /// `Ok(None)` is a clean EOF at a chunk boundary.
    fn next_chunk(&mut self) -> Result<Option<ChunkMeta>, SegmentError> {
        let start = self.pos;
        let mut hdr = [0u8; CHUNK_HDR_LEN];
        let n = read_full(&mut self.file, &mut self.hasher, &mut hdr)?;
        self.pos += n as u64;
        if n == 0 {
            return Ok(None);
        }
        if n < CHUNK_HDR_LEN {
            return Err(self.cut());
        }
        if hdr[..4] != CHUNK_MAGIC {
            return Err(SegmentError::Malformed(format!(
                "no chunk marker at offset {start}"
            )));
        }
        let index = u64::from_be_bytes(hdr[4..12].try_into().expect("8 bytes"));
        let flags = hdr[12];
        let len = u32::from_be_bytes(hdr[13..17].try_into().expect("4 bytes")) as usize;
        if flags & !FLAG_FINAL != 0 {
            return Err(SegmentError::Malformed(format!(
                "chunk {index} at offset {start} has unknown flags {flags:#04x}"
            )));
        }
        if len > MAX_CHUNK_PLAINTEXT {
            return Err(SegmentError::Malformed(format!(
                "chunk {index} at offset {start} claims {len} bytes, over the limit"
            )));
        }
        match self.last_index {
            None if index != 0 => {
                return Err(SegmentError::Malformed(format!(
                    "first chunk has index {index}, expected 0"
                )));
            }
            Some(last) if index <= last => {
                return Err(SegmentError::Malformed(format!(
                    "chunk {index} at offset {start} follows chunk {last}: chunks reordered or duplicated"
                )));
            }
            _ => {}
        }
        if index >= RECOVERY_INDEX && flags & FLAG_FINAL == 0 {
            return Err(SegmentError::Malformed(format!(
                "chunk {index} at offset {start} uses a recovery index but is not final"
            )));
        }
        let body = len + TAG_LEN;
        // Don't allocate for a length the file cannot hold (a torn or forged header).
        let file_len = self.file.get_ref().metadata()?.len();
        if self.pos + body as u64 > file_len {
            return Err(self.cut());
        }
        if self.buf.len() < body {
            self.buf.resize(body, 0);
        }
        let n = read_full(&mut self.file, &mut self.hasher, &mut self.buf[..body])?;
        self.pos += n as u64;
        if n < body {
            return Err(self.cut());
        }
        let tag: [u8; TAG_LEN] = self.buf[len..body].try_into().expect("tag length");
        // A FINAL chunk is followed by the footer (authenticated as part of its AAD, so
        // it is checked against the value the length implies, after decryption).
        let mut foot = [0u8; FOOTER_LEN];
        let foot_n = if flags & FLAG_FINAL != 0 {
            let n = read_full(&mut self.file, &mut self.hasher, &mut foot)?;
            self.pos += n as u64;
            n
        } else {
            0
        };
        let opened = self
            .sealer
            .open(index, flags, &self.prev_tag, &mut self.buf[..len], &tag);
        if let Err(e) = opened {
            self.failed_chunk_end = Some(self.pos);
            return Err(e);
        }
        if flags & FLAG_FINAL != 0 {
            if foot_n < FOOTER_LEN {
                return Err(self.cut());
            }
            if foot != footer(len as u32) {
                return Err(SegmentError::Malformed(format!(
                    "footer after the final chunk at offset {start} does not match it"
                )));
            }
        }
        self.prev_tag = tag;
        self.last_index = Some(index);
        self.valid_len = self.pos;
        self.plain_len = len;
        Ok(Some(ChunkMeta {
            index,
            flags,
            offset: start,
            len,
        }))
    }

    fn plaintext(&self) -> &[u8] {
        &self.buf[..self.plain_len]
    }

    /// Reads (and hashes) whatever is left; returns the byte count.
    fn drain(&mut self) -> io::Result<u64> {
        let mut scratch = [0u8; 64 << 10];
        let mut total = 0;
        loop {
            let n = read_full(&mut self.file, &mut self.hasher, &mut scratch)?;
            total += n as u64;
            self.pos += n as u64;
            if n < scratch.len() {
                return Ok(total);
            }
        }
    }

    /// After a FINAL chunk, the file must end.
    fn expect_eof(&mut self) -> Result<(), SegmentError> {
        let extra = self.drain()?;
        if extra > 0 {
            return Err(SegmentError::Malformed(format!(
                "{extra} bytes after the final chunk"
            )));
        }
        Ok(())
    }

    /// Reads chunk 0 and decodes the codec parameters.
    fn read_params(&mut self) -> Result<(CodecParams, i64), SegmentError> {
        let Some(meta) = self.next_chunk()? else {
            return Err(self.cut());
        };
        if meta.flags & FLAG_FINAL != 0 {
            return Err(SegmentError::Malformed(
                "the parameters chunk is marked final".into(),
            ));
        }
        codec::decode_params(self.plaintext()).map_err(|e| malformed(0, e))
    }
}

fn open_read(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Checks a FINAL chunk's plaintext against the trailer and index computed from the GOP
/// chunks read before it: byte for byte, since the encoding is canonical.
fn check_final(plain: &[u8], acc: &TrailerAcc, start_unix_ms: i64) -> Result<(), SegmentError> {
    let mut want = Vec::new();
    acc.final_plaintext(start_unix_ms, &mut want);
    if plain != want {
        return Err(SegmentError::Malformed(
            "trailer does not match the segment's chunks".into(),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// the segment index, and random access by it

/// One frame as the segment index describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedFrame {
    pub pts_90k: i64,
    pub key: bool,
    pub size: u32,
}

/// One GOP chunk as the segment index describes it: where to read it with
/// [`SegmentReader::read_chunk_at`], and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedGop {
    /// The chunk's index (its position in the chain; not dense if a write failed).
    pub chunk_index: u64,
    /// Offset of the chunk in the file.
    pub offset: u64,
    /// Plaintext length of the chunk.
    pub len: u32,
    pub start_unix_ms: i64,
    /// Its frames are `SegmentIndex::frames[first_frame..first_frame + frame_count]`.
    pub first_frame: usize,
    pub frame_count: usize,
}

/// Everything about a closed segment but its frames' bytes, from its FINAL chunk: what
/// [`SegmentReader::open_index`] returns without reading the GOP chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentIndex {
    pub params: CodecParams,
    pub start_unix_ms: i64,
    pub trailer: Trailer,
    /// The FINAL chunk was written by [`recover`].
    pub recovered: bool,
    /// The GOP chunks, in file order.
    pub gops: Vec<IndexedGop>,
    /// All frames of the segment, in order.
    pub frames: Vec<IndexedFrame>,
}

impl SegmentIndex {
    /// The frames of GOP `i`.
    pub fn gop_frames(&self, i: usize) -> &[IndexedFrame] {
        let g = &self.gops[i];
        &self.frames[g.first_frame..g.first_frame + g.frame_count]
    }
}

/// A GOP chunk read by [`SegmentReader::read_gop_bytes_at`]: its frame index, and the
/// frames' bytes back to back as they are in the chunk, not copied frame by frame.
#[derive(Debug)]
pub struct GopBytes {
    pub start_unix_ms: i64,
    pub frames: Vec<IndexedFrame>,
    buf: Vec<u8>,
    data: std::ops::Range<usize>,
}

impl GopBytes {
    /// The frames' bytes, back to back.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.data.clone()]
    }

    /// The buffer and the range of it holding the frames' bytes (what e.g.
    /// `bytes::Bytes::from(buf).slice(range)` takes without copying).
    pub fn into_parts(self) -> (Vec<u8>, std::ops::Range<usize>) {
        (self.buf, self.data)
    }

    /// As a [`Gop`] (copies each frame).
    pub fn to_gop(&self) -> Gop {
        let mut pos = self.data.start;
        let frames = self
            .frames
            .iter()
            .map(|f| {
                let end = pos + f.size as usize;
                let data = self.buf[pos..end].to_vec();
                pos = end;
                Frame {
                    pts_90k: f.pts_90k,
                    key: f.key,
                    data,
                }
            })
            .collect();
        Gop {
            start_unix_ms: self.start_unix_ms,
            frames,
        }
    }
}

// ---------------------------------------------------------------------------------------
// streaming reader

/// Reads a segment GOP by GOP, authenticating each chunk before returning it; or, with
/// the segment index, any one GOP chunk ([`read_chunk_at`](Self::read_chunk_at)).
pub struct SegmentReader {
    stream: ChunkStream,
    params: CodecParams,
    start_unix_ms: i64,
    /// End of the parameters chunk: where the first GOP chunk starts.
    params_end: u64,
    acc: TrailerAcc,
    trailer: Option<Trailer>,
    failed: bool,
}

impl fmt::Debug for SegmentReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentReader")
            .field("params", &self.params)
            .field("start_unix_ms", &self.start_unix_ms)
            .field("valid_len", &self.stream.valid_len)
            .field("trailer", &self.trailer)
            .finish_non_exhaustive()
    }
}

impl SegmentReader {
    /// Opens the file, checks magic, version, segment id and camera, and authenticates
    /// and decodes the parameters chunk.
    pub fn open(
        path: &Path,
        expect_id: SegmentId,
        expect_camera: &str,
        key: &DataKey,
    ) -> Result<Self, SegmentError> {
        Self::open_buffered(path, expect_id, expect_camera, key, 64 << 10)
    }

    fn open_buffered(
        path: &Path,
        expect_id: SegmentId,
        expect_camera: &str,
        key: &DataKey,
        buf_capacity: usize,
    ) -> Result<Self, SegmentError> {
        let file = open_read(path)?;
        let mut stream =
            ChunkStream::open(file, expect_id, expect_camera, key, false, buf_capacity)?;
        let (params, start_unix_ms) = stream.read_params()?;
        Ok(SegmentReader {
            params_end: stream.valid_len,
            stream,
            params,
            start_unix_ms,
            acc: TrailerAcc::default(),
            trailer: None,
            failed: false,
        })
    }

    pub fn params(&self) -> &CodecParams {
        &self.params
    }

    pub fn start_unix_ms(&self) -> i64 {
        self.start_unix_ms
    }

    /// End of the last authentic chunk read so far.
    pub fn valid_len(&self) -> u64 {
        self.stream.valid_len
    }

    /// The next GOP; `Ok(None)` after the FINAL chunk (whose trailer was checked against
    /// the GOPs read).
    ///
    /// At the end of a file without FINAL chunk this returns [`SegmentError::Cut`]; the
    /// reader stays usable and a later call continues if the file has grown (tailing a
    /// segment still being written). Any other error is final: later calls fail too.
    pub fn next_gop(&mut self) -> Result<Option<Gop>, SegmentError> {
        if self.trailer.is_some() {
            return Ok(None);
        }
        if self.failed {
            return Err(SegmentError::Malformed(
                "reader stopped at an earlier error".into(),
            ));
        }
        match self.next_gop_inner() {
            Err(SegmentError::Cut { valid_len }) => {
                // Rewind to the chunk boundary so a retry can read a grown file.
                if let Err(e) = self.stream.file.seek(SeekFrom::Start(valid_len)) {
                    self.failed = true;
                    return Err(e.into());
                }
                self.stream.pos = valid_len;
                Err(SegmentError::Cut { valid_len })
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
            ok => ok,
        }
    }

    fn next_gop_inner(&mut self) -> Result<Option<Gop>, SegmentError> {
        let Some(meta) = self.stream.next_chunk()? else {
            return Err(self.stream.cut());
        };
        if meta.flags & FLAG_FINAL != 0 {
            check_final(self.stream.plaintext(), &self.acc, self.start_unix_ms)?;
            self.stream.expect_eof()?;
            self.trailer = Some(self.acc.trailer(self.start_unix_ms));
            return Ok(None);
        }
        let gop =
            codec::decode_gop(self.stream.plaintext()).map_err(|e| malformed(meta.index, e))?;
        if gop.frames.is_empty() {
            return Err(malformed(meta.index, DecodeError("GOP without frames")));
        }
        self.acc.add(&gop, meta.at());
        Ok(Some(gop))
    }

    /// The trailer, once the FINAL chunk has been read.
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    /// Opens a closed segment and reads its index: the clear header, the parameters
    /// chunk and the FINAL chunk only (found from the footer at the end of the file),
    /// each authenticated. A file that does not end in a FINAL chunk (still being
    /// written, or cut) gives [`SegmentError::NoIndex`]: read it with [`open`](Self::open)
    /// and [`next_gop`](Self::next_gop) instead.
    pub fn open_index(
        path: &Path,
        expect_id: SegmentId,
        expect_camera: &str,
        key: &DataKey,
    ) -> Result<SegmentIndex, SegmentError> {
        Self::open_buffered(path, expect_id, expect_camera, key, 4 << 10)?.read_index()
    }

    /// Reads the segment index of an opened segment (see [`open_index`](Self::open_index)).
    /// Positioned reads: the GOP-by-GOP position is not affected.
    pub fn read_index(&self) -> Result<SegmentIndex, SegmentError> {
        let file = self.stream.file.get_ref();
        let file_len = file.metadata()?.len();
        let min_record = (CHUNK_HDR_LEN + TAG_LEN) as u64;
        if file_len < self.params_end + min_record + FOOTER_LEN as u64 {
            return Err(SegmentError::NoIndex);
        }
        let mut foot = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut foot, file_len - FOOTER_LEN as u64)?;
        if foot[4..] != FOOTER_MAGIC {
            return Err(SegmentError::NoIndex);
        }
        let record = u64::from(u32::from_be_bytes(foot[..4].try_into().expect("4 bytes")));
        if record < min_record
            || record - min_record > MAX_CHUNK_PLAINTEXT as u64
            || self.params_end + record + FOOTER_LEN as u64 > file_len
        {
            return Err(SegmentError::Malformed(format!(
                "footer gives an impossible final chunk length {record}"
            )));
        }
        let start = file_len - FOOTER_LEN as u64 - record;
        // The chunk, with the tag of the chunk before it (chunks are contiguous).
        let mut buf = vec![0u8; TAG_LEN + record as usize];
        file.read_exact_at(&mut buf, start - TAG_LEN as u64)?;
        let (prev_tag, rest) = buf.split_at_mut(TAG_LEN);
        let prev_tag: &[u8; TAG_LEN] = (&*prev_tag).try_into().expect("tag length");
        let (hdr, body) = rest.split_at_mut(CHUNK_HDR_LEN);
        let len = body.len() - TAG_LEN;
        let index = u64::from_be_bytes(hdr[4..12].try_into().expect("8 bytes"));
        if hdr[..4] != CHUNK_MAGIC
            || hdr[12] != FLAG_FINAL
            || u32::from_be_bytes(hdr[13..17].try_into().expect("4 bytes")) as usize != len
            || index == 0
        {
            return Err(SegmentError::Malformed(format!(
                "no final chunk at offset {start}, where the footer points"
            )));
        }
        let (ct, tag) = body.split_at_mut(len);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().expect("tag length");
        self.stream
            .sealer
            .open(index, FLAG_FINAL, prev_tag, ct, tag)?;
        let dec = codec::decode_final(ct).map_err(|e| malformed(index, e))?;

        // The index must describe exactly the chunks between the parameters chunk and
        // the FINAL one, back to back, with lower indices; and agree with the trailer.
        let final_index = index & !RECOVERY_INDEX;
        let mut acc = TrailerAcc::default();
        let mut end = self.params_end;
        let mut gops = Vec::with_capacity(dec.entries.len());
        let mut frames = Vec::with_capacity(dec.frames.len());
        for e in &dec.entries {
            if e.offset != end || e.chunk_index >= final_index {
                return Err(malformed(
                    index,
                    DecodeError("index does not match the file"),
                ));
            }
            let len = u32::try_from(e.len)
                .ok()
                .filter(|&l| l as usize <= MAX_CHUNK_PLAINTEXT)
                .ok_or_else(|| malformed(index, DecodeError("chunk length over the limit")))?;
            let metas = &dec.frames[frames.len()..frames.len() + e.frames as usize];
            let keys = metas.iter().filter(|f| f.key).count() as u64;
            let (first, last) = (metas[0].pts_90k, metas[metas.len() - 1].pts_90k);
            acc.count(e.start_unix_ms, first, last, e.frames, keys);
            gops.push(IndexedGop {
                chunk_index: e.chunk_index,
                offset: e.offset,
                len,
                start_unix_ms: e.start_unix_ms,
                first_frame: frames.len(),
                frame_count: metas.len(),
            });
            // sizes fit: they add up to at most `len`, checked by the decoder
            frames.extend(metas.iter().map(|f| IndexedFrame {
                pts_90k: f.pts_90k,
                key: f.key,
                size: f.size as u32,
            }));
            end = e.offset + codec::record_len(e.len);
        }
        if end != start || acc.trailer(self.start_unix_ms) != dec.trailer {
            return Err(malformed(
                index,
                DecodeError("index does not match the file"),
            ));
        }
        Ok(SegmentIndex {
            params: self.params.clone(),
            start_unix_ms: self.start_unix_ms,
            trailer: dec.trailer,
            recovered: index >= RECOVERY_INDEX,
            gops,
            frames,
        })
    }

    /// Reads, authenticates and decodes the GOP chunk `chunk_index` at `offset`, of
    /// `len` plaintext bytes (an entry of the [`SegmentIndex`]), with positioned reads:
    /// the GOP-by-GOP position is not affected.
    ///
    /// Authenticated exactly as in order: same nonce, same associated data, whose
    /// previous-chunk tag is the 16 bytes just before `offset` (chunks are contiguous).
    pub fn read_chunk_at(
        &self,
        offset: u64,
        len: u32,
        chunk_index: u64,
    ) -> Result<Gop, SegmentError> {
        Ok(self.read_gop_bytes_at(offset, len, chunk_index)?.to_gop())
    }

    /// Hints the kernel that `len` bytes from `offset` will be read soon (e.g. the
    /// chunks after the one being read by [`read_chunk_at`](Self::read_chunk_at)), so
    /// reading them from disk overlaps with decrypting this one. Only a hint.
    pub fn will_need(&self, offset: u64, len: u64) {
        let _ = rustix::fs::fadvise(
            self.stream.file.get_ref(),
            offset,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::WillNeed,
        );
    }

    /// Like [`read_chunk_at`](Self::read_chunk_at), but returns the frames' bytes as
    /// one buffer (the chunk's own plaintext) instead of a copy per frame.
    pub fn read_gop_bytes_at(
        &self,
        offset: u64,
        len: u32,
        chunk_index: u64,
    ) -> Result<GopBytes, SegmentError> {
        self.read_gop_bytes_into(offset, len, chunk_index, Vec::new())
    }

    /// Like [`read_gop_bytes_at`](Self::read_gop_bytes_at), reusing `buf` (e.g. from
    /// an earlier [`GopBytes::into_parts`]) for the chunk.
    pub fn read_gop_bytes_into(
        &self,
        offset: u64,
        len: u32,
        chunk_index: u64,
        mut buf: Vec<u8>,
    ) -> Result<GopBytes, SegmentError> {
        let len = len as usize;
        if chunk_index == 0
            || chunk_index >= RECOVERY_INDEX
            || len > MAX_CHUNK_PLAINTEXT
            || offset < self.params_end
        {
            return Err(SegmentError::InvalidInput(format!(
                "no GOP chunk {chunk_index} of {len} bytes can be at offset {offset}"
            )));
        }
        let data_start = TAG_LEN + CHUNK_HDR_LEN;
        // (only the part beyond the buffer's current length gets zeroed)
        buf.resize(data_start + len + TAG_LEN, 0);
        self.stream
            .file
            .get_ref()
            .read_exact_at(&mut buf, offset - TAG_LEN as u64)?;
        let (prev_tag, rest) = buf.split_at_mut(TAG_LEN);
        let prev_tag: &[u8; TAG_LEN] = (&*prev_tag).try_into().expect("tag length");
        let (hdr, body) = rest.split_at_mut(CHUNK_HDR_LEN);
        if hdr[..4] != CHUNK_MAGIC
            || u64::from_be_bytes(hdr[4..12].try_into().expect("8 bytes")) != chunk_index
            || hdr[12] != 0
            || u32::from_be_bytes(hdr[13..17].try_into().expect("4 bytes")) as usize != len
        {
            return Err(SegmentError::Malformed(format!(
                "no GOP chunk {chunk_index} of {len} bytes at offset {offset}"
            )));
        }
        let (ct, tag) = body.split_at_mut(len);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().expect("tag length");
        self.stream.sealer.open(chunk_index, 0, prev_tag, ct, tag)?;
        let mut c = codec::Cur::new(ct);
        let (start_unix_ms, metas) =
            codec::decode_index(&mut c).map_err(|e| malformed(chunk_index, e))?;
        let total = metas
            .iter()
            .try_fold(0u64, |acc, m| acc.checked_add(m.size));
        if metas.is_empty() {
            return Err(malformed(chunk_index, DecodeError("GOP without frames")));
        }
        if total != Some(c.remaining() as u64) {
            return Err(malformed(
                chunk_index,
                DecodeError("frame sizes do not add up to the chunk length"),
            ));
        }
        let data = data_start + len - c.remaining()..data_start + len;
        let frames = metas
            .iter()
            .map(|m| IndexedFrame {
                pts_90k: m.pts_90k,
                key: m.key,
                size: m.size as u32,
            })
            .collect();
        Ok(GopBytes {
            start_unix_ms,
            frames,
            buf,
            data,
        })
    }
}

// ---------------------------------------------------------------------------------------
// verify and recover

/// What [`verify`] found.
#[derive(Debug)]
pub struct VerifyReport {
    /// File size as read.
    pub bytes: u64,
    /// SHA-256 of the whole file as read.
    pub sha256: [u8; 32],
    /// Length of the authentic prefix: the end of the last chunk that authenticated
    /// (and decoded). 0 if not even the parameters chunk did.
    pub valid_len: u64,
    /// The FINAL chunk was found, authentic, matching, and last in the file.
    pub finalised: bool,
    /// That FINAL chunk was written by [`recover`], not by [`SegmentWriter::finish`].
    pub recovered: bool,
    pub params: Option<CodecParams>,
    pub start_unix_ms: Option<i64>,
    /// Authentic chunks, including the parameters and FINAL chunks.
    pub chunks: u64,
    /// Authentic GOP chunks.
    pub gops: u64,
    /// Computed from the authentic GOP chunks: equal to the stored trailer when
    /// `finalised`, and the one [`recover`] writes for a cut file.
    pub trailer: Trailer,
    /// The first problem found, if any (for a cut file: [`SegmentError::Cut`]).
    pub error: Option<SegmentError>,
}

impl VerifyReport {
    /// Complete, authentic, nothing extra: the state of a file `finish` or `recover` wrote.
    pub fn is_intact(&self) -> bool {
        self.finalised && self.error.is_none() && self.valid_len == self.bytes
    }

    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// What recover needs beyond the report.
struct Scan {
    report: VerifyReport,
    /// Trailer and index of the authentic GOP chunks.
    acc: TrailerAcc,
    last_index: u64,
    last_tag: [u8; TAG_LEN],
    /// The failure is a torn tail: a cut, or the last chunk in the file failing
    /// authentication.
    torn_tail: bool,
    sealer: Sealer,
}

/// Whether `file[from..to]` is all zero bytes: what some file systems show after a crash
/// for blocks allocated but never written.
fn tail_is_zero(file: &File, from: u64, to: u64) -> io::Result<bool> {
    let mut block = vec![0u8; 64 << 10];
    let mut pos = from;
    while pos < to {
        let n = (to - pos).min(block.len() as u64) as usize;
        file.read_exact_at(&mut block[..n], pos)?;
        if block[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

fn scan(
    file: File,
    expect_id: SegmentId,
    expect_camera: &str,
    key: &DataKey,
) -> Result<Scan, SegmentError> {
    let mut s = ChunkStream::open(file, expect_id, expect_camera, key, true, 64 << 10)?;
    let mut report = VerifyReport {
        bytes: 0,
        sha256: [0; 32],
        valid_len: 0,
        finalised: false,
        recovered: false,
        params: None,
        start_unix_ms: None,
        chunks: 0,
        gops: 0,
        trailer: Trailer::default(),
        error: None,
    };
    let mut acc = TrailerAcc::default();
    let mut last_good = (0u64, 0u64, [0u8; TAG_LEN]); // (valid_len, index, tag)

    let result = (|| -> Result<(), SegmentError> {
        let (params, start) = s.read_params()?;
        report.params = Some(params);
        report.start_unix_ms = Some(start);
        report.chunks = 1;
        last_good = (s.valid_len, 0, s.prev_tag);
        loop {
            let Some(meta) = s.next_chunk()? else {
                return Err(s.cut());
            };
            if meta.flags & FLAG_FINAL != 0 {
                check_final(s.plaintext(), &acc, start)?;
                report.chunks += 1;
                last_good = (s.valid_len, meta.index, s.prev_tag);
                report.finalised = true;
                report.recovered = meta.index >= RECOVERY_INDEX;
                return s.expect_eof();
            }
            let gop = codec::decode_gop(s.plaintext()).map_err(|e| malformed(meta.index, e))?;
            if gop.frames.is_empty() {
                return Err(malformed(meta.index, DecodeError("GOP without frames")));
            }
            acc.add(&gop, meta.at());
            report.chunks += 1;
            report.gops += 1;
            last_good = (s.valid_len, meta.index, s.prev_tag);
        }
    })();

    let mut torn_tail = false;
    if let Err(e) = result {
        if let SegmentError::Io(_) = e {
            return Err(e);
        }
        let file_end = s.pos + s.drain()?;
        torn_tail = match e {
            SegmentError::Cut { .. } => true,
            SegmentError::Auth { .. } => s.failed_chunk_end == Some(file_end),
            _ => false,
        };
        report.error = Some(e);
    }
    report.bytes = s.pos;
    report.valid_len = last_good.0;
    report.trailer = acc.trailer(report.start_unix_ms.unwrap_or(0));
    report.sha256 = sha256_finish(s.hasher.take().expect("hashing stream"));
    Ok(Scan {
        report,
        acc,
        last_index: last_good.1,
        last_tag: last_good.2,
        torn_tail,
        sealer: s.sealer,
    })
}

/// Reads the whole file and authenticates every chunk.
///
/// Returns `Err` only when the file cannot be attributed at all: I/O errors,
/// [`NotASegment`](SegmentError::NotASegment), an unsupported version, a
/// [`WrongSegment`](SegmentError::WrongSegment) header, or a file cut inside its clear
/// header (`Cut { valid_len: 0 }`). Every problem from the chunks on (wrong key,
/// tampering, cut) is in [`VerifyReport::error`], with what was authentic before it.
pub fn verify(
    path: &Path,
    expect_id: SegmentId,
    expect_camera: &str,
    key: &DataKey,
) -> Result<VerifyReport, SegmentError> {
    Ok(scan(open_read(path)?, expect_id, expect_camera, key)?.report)
}

/// Closes a cut segment: truncates it to the end of its last authentic chunk, appends a
/// FINAL trailer computed from the authentic GOPs, fsyncs file and directory, and returns
/// the new report (`is_intact()` holds).
///
/// Idempotent: an intact file is returned as is, and a re-run after a crash in the middle
/// redoes the same steps with the same bytes. Only call it on segments the catalog has
/// as open: a truncated finished file looks exactly like a cut one.
///
/// Refuses (returns the error, file untouched) when the damage is not a torn tail, i.e.
/// when a chunk in the middle of the file fails authentication or the structure is
/// broken: that is tampering or corruption for a human to look at, not a crash. When not
/// even the parameters chunk is authentic the error is `Cut { valid_len: 0 }` (the file
/// was cut before it held anything: safe to delete) or `Auth { chunk: 0 }` (wrong key
/// or altered file: keep it).
pub fn recover(
    path: &Path,
    expect_id: SegmentId,
    expect_camera: &str,
    key: &DataKey,
) -> Result<VerifyReport, SegmentError> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let scan = scan(file.try_clone()?, expect_id, expect_camera, key)?;
    let report = scan.report;
    if report.is_intact() {
        return Ok(report);
    }
    let error = report
        .error
        .unwrap_or_else(|| SegmentError::Malformed("segment is neither complete nor cut".into()));
    if report.finalised || !(scan.torn_tail || tail_is_zero(&file, report.valid_len, report.bytes)?)
    {
        return Err(error);
    }
    if report.params.is_none() {
        return Err(error);
    }
    // Rebuild the trailer chunk exactly as a previous (interrupted) run would have: same
    // plaintext, same recovery-space nonce, so repeating it is harmless.
    let mut buf = vec![0; CHUNK_HDR_LEN];
    scan.acc
        .final_plaintext(report.start_unix_ms.unwrap_or(0), &mut buf);
    let index = RECOVERY_INDEX | (scan.last_index + 1);
    scan.sealer
        .seal(index, FLAG_FINAL, &scan.last_tag, &mut buf)?;

    file.set_len(report.valid_len)?;
    file.write_all_at(&buf, report.valid_len)?;
    file.sync_all()?;
    fsync_dir(&parent_dir(path))?;

    let again = verify(path, expect_id, expect_camera, key)?;
    if !again.is_intact() {
        return Err(again.error.unwrap_or_else(|| {
            SegmentError::Malformed("recovered segment does not verify".into())
        }));
    }
    Ok(again)
}

// ---------------------------------------------------------------------------------------
// key wrapping

const WRAPPED_LEN: usize = 12 + 32 + TAG_LEN;

/// Wraps a data key for the catalog: AES-256-GCM under the KEK with a random nonce,
/// associated data = the segment id. Output: `nonce (12) ‖ ciphertext (32) ‖ tag (16)`.
pub fn wrap_key(kek: &[u8; 32], id: SegmentId, key: &DataKey) -> Vec<u8> {
    let cipher = aes_256_gcm(kek);
    let nonce: [u8; 12] = os_random();
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(key.as_bytes());
    let tag = cipher
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&id.0),
            &mut out[12..],
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
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&wrapped[12..44]);
    let nonce: [u8; 12] = wrapped[..12].try_into().expect("12 bytes");
    let tag: [u8; TAG_LEN] = wrapped[44..].try_into().expect("16 bytes");
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

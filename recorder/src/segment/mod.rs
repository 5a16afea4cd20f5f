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
//!
//! The code follows the layout: `types` (ids, keys, codec parameters, frames, GOPs,
//! the trailer), `error`, `sealing` (the header, chunk sealing and opening, key
//! wrapping), `writer`, `stream` (reading chunks in order, shared by the reader, verify
//! and recover), `index` (the segment index: how it is accumulated, checked and
//! exposed), `reader`, `verification` (verify and recover), and `codec` (the plaintext
//! encodings).

mod codec;
mod error;
mod index;
mod reader;
mod sealing;
mod stream;
#[cfg(test)]
mod tests;
mod types;
mod verification;
mod writer;

pub use error::SegmentError;
pub use index::{GopBytes, IndexedFrame, IndexedGop, SegmentIndex};
#[cfg(feature = "testing")]
pub use reader::SegmentReader;
#[cfg(not(feature = "testing"))]
pub(crate) use reader::SegmentReader;
pub use sealing::{unwrap_key, wrap_key};
pub use types::{Codec, CodecParams, DataKey, Frame, Gop, SegmentId, Trailer};
#[cfg(feature = "testing")]
pub use verification::{VerifyReport, recover, verify};
#[cfg(not(feature = "testing"))]
pub(crate) use verification::{recover, verify};
#[cfg(not(feature = "testing"))]
pub(crate) use writer::SegmentWriter;
#[cfg(feature = "testing")]
pub use writer::{Finished, SegmentWriter};

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RFSEG\x00\x00\x01";
/// The format version this code writes. A change of layout bumps it, and the readers
/// keep reading every version from [`OLDEST_READABLE_VERSION`] on (a stored file of
/// each is read in `recorder/tests/formats.rs`):
///
/// * 1: the layout with the encrypted frame index in the FINAL chunk and the clear
///   footer (files of development builds before that index also say 1 and are not
///   readable: their FINAL chunk fails to authenticate, as if cut);
/// * 2: the same layout; the number marks that files are versioned from here on.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest format version the readers accept.
pub const OLDEST_READABLE_VERSION: u16 = 1;
/// Longest camera id, in bytes.
pub const MAX_CAMERA_LEN: usize = 32;
/// Largest plaintext of one chunk (one GOP). A GOP larger than this is refused by the
/// writer: the caller must close the GOP early (start a new chunk) before reaching it.
pub const MAX_CHUNK_PLAINTEXT: usize = 256 << 20;

const CHUNK_MAGIC: [u8; 4] = *b"RFCK";
const CHUNK_HDR_LEN: usize = 17;
const TAG_LEN: usize = 16;
/// AES-256 key length, in bytes (data keys and the KEK).
const KEY_LEN: usize = 32;
/// AES-GCM nonce length, in bytes.
const NONCE_LEN: usize = 12;
/// SHA-256 digest length, in bytes.
const SHA256_LEN: usize = 32;
const FLAG_FINAL: u8 = 0x01;
/// Start of the header that says how long it is: magic, version, header_len.
const HEADER_PREFIX_LEN: usize = 12;
/// Fixed part of the header before the camera id.
const HEADER_FIXED_LEN: usize = 37;
/// Chunk indices at or above this are only used by the FINAL chunk [`recover`] writes.
const RECOVERY_INDEX: u64 = 1 << 63;
/// Clear footer after the FINAL chunk: `record length u32 | "RFTR"`.
const FOOTER_LEN: usize = 8;
const FOOTER_MAGIC: [u8; 4] = *b"RFTR";
/// Associated data: header hash, index, flags, length, previous tag, and for the
/// FINAL chunk the footer.
const AAD_LEN: usize = SHA256_LEN + 8 + 1 + 4 + TAG_LEN;
const AAD_FINAL_LEN: usize = AAD_LEN + FOOTER_LEN;

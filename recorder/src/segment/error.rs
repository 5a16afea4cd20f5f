//! The one error type of the segment format.

use std::io;

#[cfg(doc)]
use super::SegmentReader;
use super::codec::DecodeError;
use super::{FORMAT_VERSION, OLDEST_READABLE_VERSION, SegmentId};

/// Everything that can go wrong with a segment. Messages name chunks and offsets, never
/// key material or footage.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("segment I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("not a Ringfence segment file (bad magic)")]
    NotASegment,
    #[error(
        "unsupported segment format version {0} (this build reads versions {OLDEST_READABLE_VERSION}..={FORMAT_VERSION})"
    )]
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

pub(super) fn malformed(chunk: u64, e: DecodeError) -> SegmentError {
    SegmentError::Malformed(format!("chunk {chunk}: {e}"))
}

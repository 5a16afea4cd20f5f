//! The segment index: how the writer, the reader and recovery accumulate it from the
//! GOP chunks ([`TrailerAcc`]), how a FINAL chunk is checked against it, and the public
//! view of it ([`SegmentIndex`]) that random access reads by.

use super::codec::{self, FrameMeta};
use super::{CodecParams, Frame, Gop, SegmentError, Trailer};
#[cfg(doc)]
use super::{SegmentReader, recover};

/// Media time (pts) ticks per millisecond: pts are in 90 kHz units.
const PTS_TICKS_PER_MS: i128 = 90;

/// Where a GOP chunk was found (or written): what its index entry needs beyond the GOP.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChunkAt {
    pub(super) index: u64,
    pub(super) offset: u64,
    pub(super) len: u64,
}

/// Counts a segment's GOPs the same way for the writer, the reader and recovery, so the
/// trailer and the segment index can be recomputed and checked from the chunks.
#[derive(Debug, Clone, Default)]
pub(super) struct TrailerAcc {
    pub(super) gops: u64,
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
    pub(super) fn add(&mut self, gop: &Gop, at: ChunkAt) {
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

    pub(super) fn count(
        &mut self,
        start_unix_ms: i64,
        first_pts: i64,
        last_pts: i64,
        frames: u64,
        keys: u64,
    ) {
        if self.gops == 0 {
            self.first_pts_90k = first_pts;
            self.first_unix_ms = start_unix_ms;
        }
        self.gops += 1;
        self.frames += frames;
        self.key_frames += keys;
        self.last_pts_90k = last_pts;
        let span_ms = (i128::from(last_pts) - i128::from(first_pts)).max(0) / PTS_TICKS_PER_MS;
        self.last_unix_ms = (i128::from(start_unix_ms) + span_ms)
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    }

    /// The FINAL chunk's plaintext: trailer and segment index.
    pub(super) fn final_plaintext(&self, start_unix_ms: i64, buf: &mut Vec<u8>) {
        codec::encode_final(buf, &self.trailer(start_unix_ms), &self.index);
    }

    pub(super) fn trailer(&self, start_unix_ms: i64) -> Trailer {
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

/// Checks a FINAL chunk's plaintext against the trailer and index computed from the GOP
/// chunks read before it: byte for byte, since the encoding is canonical.
pub(super) fn check_final(
    plain: &[u8],
    acc: &TrailerAcc,
    start_unix_ms: i64,
) -> Result<(), SegmentError> {
    let mut want = Vec::new();
    acc.final_plaintext(start_unix_ms, &mut want);
    if plain != want {
        return Err(SegmentError::Malformed(
            "trailer does not match the segment's chunks".into(),
        ));
    }
    Ok(())
}

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
    pub(super) buf: Vec<u8>,
    pub(super) data: std::ops::Range<usize>,
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

//! From a camera and a time range to MP4 bytes: which GOPs, in which order, and the
//! exact file they make.
//!
//! Two steps: [`build_index`] learns the frames' times and sizes, so the MP4 layout, its
//! length and every offset are known before the response starts; [`read_payload`] then
//! reads only the GOPs a (possibly partial, `Range`) response needs, each decrypted
//! once. For a closed segment the frame index comes from the segment's own stored index
//! ([`FootageSource::segment_index`]: one small encrypted chunk at the end of the file)
//! and gives each chunk's place in the file, so the payload reads go straight to the
//! chunks wanted. A segment still being written (or cut) has no stored index: it is
//! read GOP by GOP for the index, and again in order for the payload. Either way memory
//! stays bounded by the frame index, never the footage.
//!
//! The store is behind [`FootageSource`], so that the policy and HTTP tests run on an
//! in-memory store and the real one ([`crate::store`]) is a thin adapter over the
//! recorder's `footage` API.

use std::sync::Arc;

use bytes::Bytes;

use crate::clock::ms_from_90k;
use crate::mp4::{self, Layout, Sample, TrackParams};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("unknown camera")]
    UnknownCamera,
    #[error("footage store: {0}")]
    Store(String),
    #[error("stored footage changed while it was being served")]
    Changed,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CameraInfo {
    pub id: String,
    pub name: String,
    pub state: String,
    /// Since when the camera is in `state`, and why (e.g. the reason it is offline).
    pub since_ms: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapInfo {
    pub from_ms: i64,
    /// `None` while the interruption lasts.
    pub to_ms: Option<i64>,
    pub reason: String,
}

/// Recorded spans `(from, to)` (merged) and gaps.
pub type Recordings = (Vec<(i64, i64)>, Vec<GapInfo>);

/// A segment as listed by the store, in time order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentKey {
    /// Opaque to this module.
    pub key: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Still being written (its end is not known yet).
    pub open: bool,
    /// Its size and the SHA-256 (hex) the recorder recorded when it closed it (an
    /// export's manifest names them); 0 and empty when not known.
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub struct FrameData {
    pub pts_90k: i64,
    pub key: bool,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct GopData {
    pub start_unix_ms: i64,
    pub frames: Vec<FrameData>,
}

/// Where a chunk is in its segment's file: what [`GopStream::read_at`] needs to read it
/// without reading what comes before. Opaque to this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLoc {
    pub offset: u64,
    pub len: u32,
    pub chunk_index: u64,
}

/// A frame without its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    pub pts_90k: i64,
    pub key: bool,
    pub size: u32,
}

/// One chunk of a [`SegIndex`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkInfo {
    pub start_unix_ms: i64,
    pub loc: ChunkLoc,
    pub frames: Vec<FrameInfo>,
}

/// A closed segment's frame index, known without decrypting its footage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegIndex {
    pub params: TrackParams,
    /// Every chunk of the segment, in order.
    pub chunks: Vec<ChunkInfo>,
}

/// A chunk read by [`GopStream::read_at`]: its frames, and their bytes back to back.
#[derive(Debug, Clone)]
pub struct ChunkPayload {
    pub frames: Vec<FrameInfo>,
    pub data: Bytes,
}

/// What [`GopStream::poll_gop`] found.
#[derive(Debug)]
pub enum Polled {
    Gop(GopData),
    /// The segment is still being written and has nothing more yet: try again later.
    Pending,
    /// The segment is complete and everything in it was read.
    End,
}

/// The chunks of one segment, in order. A "GOP" here is one stored chunk: normally a
/// key frame and its followers, but a chunk that does not start with a key frame
/// continues the GOP of the chunk before it.
pub trait GopStream: Send {
    fn params(&self) -> &TrackParams;
    /// The next GOP, `None` at the end (or at the authentic end of a segment still
    /// being written).
    fn next_gop(&mut self) -> Result<Option<GopData>, SourceError>;
    /// Like [`next_gop`](Self::next_gop), but tells a segment still being written
    /// (`Pending`; a later call continues where this one stopped) from its end.
    fn poll_gop(&mut self) -> Result<Polled, SourceError> {
        Ok(match self.next_gop()? {
            Some(g) => Polled::Gop(g),
            None => Polled::End,
        })
    }
    /// Hints that the chunk at `loc`, and the ones after it, will be read soon with
    /// [`read_at`](Self::read_at). Default: nothing.
    fn will_read(&mut self, loc: &ChunkLoc) {
        let _ = loc;
    }
    /// Reads the chunk at `loc` (from [`FootageSource::segment_index`] of this segment)
    /// directly; does not move the position of [`next_gop`](Self::next_gop).
    fn read_at(&mut self, loc: &ChunkLoc) -> Result<ChunkPayload, SourceError> {
        let _ = loc;
        Err(SourceError::Store(
            "this store cannot read a chunk by its location".into(),
        ))
    }
}

/// The read side of the store, as the viewer-api needs it.
pub trait FootageSource: Send + Sync + 'static {
    fn cameras(&self) -> Result<Vec<CameraInfo>, SourceError>;
    /// Recorded spans (merged) and gaps overlapping `[from, to)`.
    fn recordings(&self, camera: &str, from_ms: i64, to_ms: i64)
    -> Result<Recordings, SourceError>;
    /// Segments of `camera` overlapping `[from, to)`, in time order.
    fn segments(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SegmentKey>, SourceError>;
    fn open(&self, camera: &str, seg: &SegmentKey) -> Result<Box<dyn GopStream>, SourceError>;
    /// The frame index of a closed segment, without reading its footage. `Ok(None)` when
    /// there is none (a segment still being written, or cut; or a store that keeps
    /// none): the caller reads the segment with [`open`](Self::open) instead.
    fn segment_index(
        &self,
        camera: &str,
        seg: &SegmentKey,
    ) -> Result<Option<SegIndex>, SourceError> {
        let _ = (camera, seg);
        Ok(None)
    }
    /// This source as seen by requests made for the access-log entry `entry`: footage
    /// read through it is journaled by the recorder side with that entry. `None`: this
    /// source does not tell (sources in memory); use [`for_entry`].
    fn with_entry(&self, entry: recorder::checkpoint::LogRef) -> Option<Arc<dyn FootageSource>> {
        let _ = entry;
        None
    }
}

/// `src` for reads made for the access-log entry `entry` (see
/// [`FootageSource::with_entry`]).
pub fn for_entry(
    src: &Arc<dyn FootageSource>,
    entry: recorder::checkpoint::LogRef,
) -> Arc<dyn FootageSource> {
    src.with_entry(entry).unwrap_or_else(|| src.clone())
}

/// Where a GOP of the index lives: segment (index into [`FrameIndex::segments`]) and
/// its ordinal in that segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GopLoc {
    pub segment: usize,
    pub ordinal: usize,
    /// How many of its frames are used (the last GOP may be cut at `to`).
    pub frames: usize,
    /// Where it is in the segment's file, when the segment's index said.
    pub loc: Option<ChunkLoc>,
}

#[derive(Debug, Clone)]
pub struct FrameIndex {
    pub camera: String,
    pub params: TrackParams,
    pub segments: Vec<SegmentKey>,
    pub gops: Vec<GopLoc>,
    /// Wall time of the first frame served of each of `gops`.
    pub gop_unix_ms: Vec<i64>,
    pub samples: Vec<Sample>,
    /// Wall time of the first frame served.
    pub first_unix_ms: i64,
    /// Wall time just after the last frame served.
    pub end_unix_ms: i64,
}

impl FrameIndex {
    pub fn chunk_samples(&self) -> Vec<u32> {
        self.gops.iter().map(|g| g.frames as u32).collect()
    }

    /// Where the MP4's media time meets the wall clock: `(media ms, unix ms)` at the
    /// start of each chunk whose wall time is not where the one before it predicts
    /// (more than `tolerance_ms` off: a gap skipped, a clock step), beginning with the
    /// first frame. Between two points, wall time runs with media time.
    pub fn time_map(&self, tolerance_ms: i64) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = Vec::new();
        let mut media_90k: i64 = 0;
        let mut sample = 0usize;
        for (g, wall) in self.gops.iter().zip(&self.gop_unix_ms) {
            let media_ms = ms_from_90k(media_90k);
            let predicted = out.last().map(|(m, w)| w + (media_ms - m));
            if predicted.is_none_or(|p| (p - wall).abs() > tolerance_ms) {
                out.push((media_ms, *wall));
            }
            for s in &self.samples[sample..sample + g.frames] {
                media_90k += i64::from(s.duration_90k);
            }
            sample += g.frames;
        }
        out
    }

    /// The same frames from the first chunk that starts with a key frame at or after
    /// `at_ms` (a narrow window must not show the GOP before it); `None` if none does.
    pub fn starting_after(&self, at_ms: i64) -> Option<FrameIndex> {
        let mut first_sample = 0usize;
        for (i, g) in self.gops.iter().enumerate() {
            if self.gop_unix_ms[i] >= at_ms && self.samples[first_sample].key {
                return Some(FrameIndex {
                    camera: self.camera.clone(),
                    params: self.params.clone(),
                    segments: self.segments.clone(),
                    gops: self.gops[i..].to_vec(),
                    gop_unix_ms: self.gop_unix_ms[i..].to_vec(),
                    samples: self.samples[first_sample..].to_vec(),
                    first_unix_ms: self.gop_unix_ms[i],
                    end_unix_ms: self.end_unix_ms,
                });
            }
            first_sample += g.frames;
        }
        None
    }

    pub fn layout(&self) -> Result<Layout, mp4::MuxError> {
        mp4::layout(
            &self.params,
            &self.samples,
            &self.chunk_samples(),
            self.first_unix_ms,
        )
    }
}

/// Merges touching or overlapping spans (within 2 s) and clips them to `[from, to)`.
pub fn merge_spans(
    spans: impl Iterator<Item = (i64, i64)>,
    from_ms: i64,
    to_ms: i64,
) -> Vec<(i64, i64)> {
    let mut v: Vec<(i64, i64)> = spans.collect();
    v.sort();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (s, e) in v {
        match out.last_mut() {
            Some((_, le)) if s <= *le + 2_000 => *le = (*le).max(e),
            _ => out.push((s, e)),
        }
    }
    out.into_iter()
        .filter(|&(s, e)| s < to_ms && e > from_ms)
        .map(|(s, e)| (s.max(from_ms), e.min(to_ms)))
        .collect()
}

/// The one rule for steps between frames, shared by playback, exports (through the
/// index), live view and previews: a step of the camera's pts from 1 tick to 5 s is
/// played as it is; a longer or backward one (a gap between segments, a camera clock
/// that jumped on reconnection) is not. 25 fps when nothing is known yet.
pub mod frame_step {
    /// The longest plausible step.
    pub const MAX_90K: i64 = 5 * 90_000;
    /// The step assumed before any is known (25 fps).
    pub const DEFAULT_90K: i64 = 3_600;

    pub fn plausible(step_90k: i64) -> bool {
        (1..=MAX_90K).contains(&step_90k)
    }
}

mod index;
#[cfg(any(test, feature = "testing"))]
mod memory;
mod payload;

pub use index::*;
#[cfg(any(test, feature = "testing"))]
pub use memory::*;
pub use payload::*;

#[cfg(test)]
mod tests;

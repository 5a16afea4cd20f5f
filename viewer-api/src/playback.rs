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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

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
            let media_ms = media_90k / 90;
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

/// The longest plausible frame interval; longer steps (a gap between segments) are
/// played as the previous interval instead of freezing the picture.
const MAX_FRAME_STEP_90K: i64 = 5 * 90_000;
const DEFAULT_STEP_90K: i64 = 3_600;
/// How far before `from` a segment may end and still hold the GOP covering `from`.
const LOOKBACK_MS: i64 = 60_000;

/// Wall time of the frame at `pts` of a chunk.
pub fn frame_unix_ms(gop: &GopData, pts: i64) -> i64 {
    gop.start_unix_ms + (pts - gop.frames[0].pts_90k) / 90
}

/// A chunk as [`build_index`] sees it: times and sizes, no image data.
struct ChunkMeta {
    start_unix_ms: i64,
    frames: Vec<FrameInfo>,
    loc: Option<ChunkLoc>,
}

impl ChunkMeta {
    fn unix_ms(&self, pts: i64) -> i64 {
        self.start_unix_ms + (pts - self.frames[0].pts_90k) / 90
    }

    fn of_gop(gop: GopData) -> Self {
        ChunkMeta {
            start_unix_ms: gop.start_unix_ms,
            frames: gop
                .frames
                .iter()
                .map(|f| FrameInfo {
                    pts_90k: f.pts_90k,
                    key: f.key,
                    size: f.data.len() as u32,
                })
                .collect(),
            loc: None,
        }
    }
}

/// The chunks of one segment: from its stored index, or read in order.
enum SegChunks {
    Indexed(std::vec::IntoIter<ChunkInfo>),
    Read(Box<dyn GopStream>),
}

impl SegChunks {
    fn next(&mut self) -> Result<Option<ChunkMeta>, SourceError> {
        Ok(match self {
            SegChunks::Indexed(it) => it.next().map(|c| ChunkMeta {
                start_unix_ms: c.start_unix_ms,
                frames: c.frames,
                loc: Some(c.loc),
            }),
            SegChunks::Read(stream) => stream.next_gop()?.map(ChunkMeta::of_gop),
        })
    }
}

/// Opens a segment for [`build_index`]: its stored index if it is closed and has one,
/// else a stream to read it in order.
fn seg_chunks(
    src: &dyn FootageSource,
    camera: &str,
    seg: &SegmentKey,
) -> Result<(TrackParams, SegChunks), SourceError> {
    // (a store may index a segment still being written too: its chunks so far)
    if let Some(idx) = src.segment_index(camera, seg)? {
        return Ok((idx.params, SegChunks::Indexed(idx.chunks.into_iter())));
    }
    let stream = src.open(camera, seg)?;
    Ok((stream.params().clone(), SegChunks::Read(stream)))
}

/// Builds the frame index of `[from, to)`: from the key frame at or before `from`
/// (or the first one after it, if recording began later) to the last frame before
/// `to`. Stops early where the codec parameters change. `Ok(None)`: nothing recorded.
///
/// Works on chunks, not GOPs: a chunk normally starts with a key frame, but the
/// recorder also closes a chunk inside a long GOP (so that little is lost on a power
/// cut); such a chunk starts with a non-key frame and continues the GOP of the chunk
/// before it. Each chunk becomes one MP4 chunk; the key flags go to `stss`.
///
/// Closed segments are indexed from their stored index (no footage decrypted); only
/// segments still being written (or without an index) are read.
pub fn build_index(
    src: &dyn FootageSource,
    camera: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Option<FrameIndex>, SourceError> {
    let mut segments = src.segments(camera, from_ms - LOOKBACK_MS, to_ms)?;
    // A closed segment starting at or before `from` starts with the key frame at or
    // before `from` (segments always start on one): nothing before it is needed.
    if let Some(last) = segments
        .iter()
        .rposition(|s| !s.open && s.start_ms <= from_ms)
    {
        segments.drain(..last);
    }
    let mut params: Option<TrackParams> = None;
    let mut used_segments: Vec<SegmentKey> = Vec::new();
    let mut gops: Vec<GopLoc> = Vec::new();
    // (pts, key, size) of selected frames, in order
    let mut frames: Vec<FrameInfo> = Vec::new();
    let mut first_unix_ms = None;
    let mut end_unix_ms = from_ms;
    let mut gop_unix_ms: Vec<i64> = Vec::new();
    // The chunks of the last GOP starting at or before `from` (its key chunk and its
    // continuations), held until we know it is the one.
    let mut candidate: Vec<(GopLoc, ChunkMeta)> = Vec::new();
    // Past `from`: every chunk before `to` is taken.
    let mut taking = false;
    let mut done = false;

    // Takes the frames of one chunk before `to`; false when the chunk was cut there.
    let mut take = |loc: GopLoc,
                    gop: &ChunkMeta,
                    gops: &mut Vec<GopLoc>,
                    frames: &mut Vec<FrameInfo>|
     -> bool {
        let mut n = 0;
        for f in &gop.frames {
            let t = gop.unix_ms(f.pts_90k);
            if t >= to_ms && n > 0 {
                break;
            }
            frames.push(*f);
            first_unix_ms.get_or_insert(t);
            n += 1;
        }
        let last = gop.frames[n - 1].pts_90k;
        end_unix_ms = gop.unix_ms(last);
        gop_unix_ms.push(gop.unix_ms(gop.frames[0].pts_90k));
        gops.push(GopLoc { frames: n, ..loc });
        n == gop.frames.len()
    };

    for seg in segments {
        if done {
            break;
        }
        let (seg_params, mut chunks) = seg_chunks(src, camera, &seg)?;
        match &params {
            None => params = Some(seg_params),
            Some(p) if *p != seg_params => break,
            Some(_) => {}
        }
        let seg_idx = used_segments.len();
        used_segments.push(seg);
        let mut ordinal = 0;
        while let Some(gop) = chunks.next()? {
            let loc = GopLoc {
                segment: seg_idx,
                ordinal,
                frames: gop.frames.len(),
                loc: gop.loc,
            };
            ordinal += 1;
            if gop.frames.is_empty() {
                continue;
            }
            let key_start = gop.frames[0].key;
            if gop.start_unix_ms >= to_ms {
                done = true;
                break;
            }
            if taking {
                if !take(loc, &gop, &mut gops, &mut frames) {
                    done = true;
                    break;
                }
                continue;
            }
            if gop.start_unix_ms <= from_ms {
                if key_start {
                    candidate = vec![(loc, gop)];
                } else if !candidate.is_empty() {
                    candidate.push((loc, gop));
                }
                continue;
            }
            // The first chunk after `from`.
            if candidate.is_empty() && !key_start {
                // A continuation whose key frame we do not have: cannot start here.
                continue;
            }
            taking = true;
            for (cloc, cgop) in candidate.drain(..) {
                if !take(cloc, &cgop, &mut gops, &mut frames) {
                    done = true;
                }
            }
            if !done && !take(loc, &gop, &mut gops, &mut frames) {
                done = true;
            }
            if done {
                break;
            }
        }
    }
    if !taking && let Some((_, last_gop)) = candidate.last() {
        // Everything recorded starts at or before `from`: serve the GOP covering it,
        // if it reaches `from` at all (a GOP of a stopped recording may end long before).
        let last = last_gop.unix_ms(last_gop.frames[last_gop.frames.len() - 1].pts_90k);
        if last + 10_000 >= from_ms {
            for (cloc, cgop) in candidate.drain(..) {
                if !take(cloc, &cgop, &mut gops, &mut frames) {
                    break;
                }
            }
        }
    }
    let Some(params) = params else {
        return Ok(None);
    };
    if frames.is_empty() {
        return Ok(None);
    }
    // Durations from the pts steps.
    let mut samples = Vec::with_capacity(frames.len());
    let mut last_step = DEFAULT_STEP_90K;
    for i in 0..frames.len() {
        let step = frames
            .get(i + 1)
            .map(|n| n.pts_90k.wrapping_sub(frames[i].pts_90k))
            .filter(|d| (1..=MAX_FRAME_STEP_90K).contains(d))
            .unwrap_or(last_step);
        last_step = step;
        samples.push(Sample {
            duration_90k: step as u32,
            size: frames[i].size,
            key: frames[i].key,
        });
    }
    let last_dur_ms = i64::from(samples[samples.len() - 1].duration_90k) / 90;
    Ok(Some(FrameIndex {
        camera: camera.to_string(),
        params,
        segments: used_segments,
        gops,
        gop_unix_ms,
        samples,
        first_unix_ms: first_unix_ms.unwrap_or(from_ms),
        end_unix_ms: end_unix_ms + last_dur_ms,
    }))
}

/// How many chunks before the end of a segment [`read_payload`] opens the next one.
const PREFETCH_GOPS: usize = 4;

/// Reads the payload (sample bytes) from chunk `first_gop` on, calling `sink` with
/// each GOP's bytes in order until it returns false. Checks every frame's size against
/// the index: footage that changed underneath fails with [`SourceError::Changed`].
///
/// Chunks whose place in the file is known ([`GopLoc::loc`]) are read directly, each
/// decrypted once, and their bytes passed on without copying; the others are read in
/// order from the start of their segment.
pub fn read_payload(
    src: &dyn FootageSource,
    index: &FrameIndex,
    first_gop: usize,
    sink: &mut dyn FnMut(Bytes) -> bool,
) -> Result<(), SourceError> {
    let mut sample_base: usize = index.gops[..first_gop.min(index.gops.len())]
        .iter()
        .map(|g| g.frames)
        .sum();
    let mut g = first_gop;
    // The next segment's stream, opened a few chunks before it is needed so that its
    // first chunks are being read from disk meanwhile.
    let mut next: Option<(usize, Box<dyn GopStream>)> = None;
    while g < index.gops.len() {
        let seg = index.gops[g].segment;
        let mut stream = match next.take() {
            Some((s, stream)) if s == seg => stream,
            _ => src.open(&index.camera, &index.segments[seg])?,
        };
        let mut ordinal = 0;
        while g < index.gops.len() && index.gops[g].segment == seg {
            let want = index.gops[g];
            let soon = &index.gops[g..(g + PREFETCH_GOPS).min(index.gops.len())];
            if next.is_none()
                && let Some(f) = soon.iter().find(|x| x.segment != seg)
                && let Some(loc) = &f.loc
            {
                let mut s = src.open(&index.camera, &index.segments[f.segment])?;
                s.will_read(loc);
                next = Some((f.segment, s));
            }
            let expected = &index.samples[sample_base..sample_base + want.frames];
            let buf = match &want.loc {
                Some(loc) => {
                    let chunk = stream.read_at(loc)?;
                    if chunk.frames.len() < want.frames
                        || chunk
                            .frames
                            .iter()
                            .zip(expected)
                            .any(|(f, s)| f.size != s.size)
                    {
                        return Err(SourceError::Changed);
                    }
                    let len: usize = expected.iter().map(|s| s.size as usize).sum();
                    if chunk.data.len() < len {
                        return Err(SourceError::Changed);
                    }
                    chunk.data.slice(..len)
                }
                None => {
                    let gop = loop {
                        let Some(gop) = stream.next_gop()? else {
                            return Err(SourceError::Changed);
                        };
                        ordinal += 1;
                        if ordinal - 1 == want.ordinal {
                            break gop;
                        }
                    };
                    if gop.frames.len() < want.frames {
                        return Err(SourceError::Changed);
                    }
                    let len: usize = expected.iter().map(|s| s.size as usize).sum();
                    let mut buf = Vec::with_capacity(len);
                    for (f, s) in gop.frames.iter().zip(expected) {
                        if f.data.len() != s.size as usize {
                            return Err(SourceError::Changed);
                        }
                        buf.extend_from_slice(&f.data);
                    }
                    Bytes::from(buf)
                }
            };
            sample_base += want.frames;
            g += 1;
            if !sink(buf) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// An in-memory store (tests, and a model of what the real one must do). Its closed
/// segments have an index (a chunk's location is its ordinal), unless `scan_only`.
#[derive(Default)]
pub struct MemorySource {
    pub cameras: Vec<CameraInfo>,
    pub gaps: HashMap<String, Vec<GapInfo>>,
    #[allow(clippy::type_complexity)]
    pub segments: Mutex<HashMap<String, Vec<(SegmentKey, TrackParams, Vec<GopData>)>>>,
    /// Keep no segment index: every segment is read in order (as an open one is).
    pub scan_only: bool,
}

struct MemStream {
    params: TrackParams,
    gops: Vec<GopData>,
    next: usize,
}

impl GopStream for MemStream {
    fn params(&self) -> &TrackParams {
        &self.params
    }
    fn next_gop(&mut self) -> Result<Option<GopData>, SourceError> {
        let g = self.gops.get(self.next).cloned();
        self.next += 1;
        Ok(g)
    }
    fn read_at(&mut self, loc: &ChunkLoc) -> Result<ChunkPayload, SourceError> {
        let gop = self
            .gops
            .get(loc.offset as usize)
            .ok_or_else(|| SourceError::Store("no chunk there".into()))?;
        let mut data = Vec::new();
        for f in &gop.frames {
            data.extend_from_slice(&f.data);
        }
        Ok(ChunkPayload {
            frames: mem_frames(gop),
            data: Bytes::from(data),
        })
    }
}

fn mem_frames(gop: &GopData) -> Vec<FrameInfo> {
    gop.frames
        .iter()
        .map(|f| FrameInfo {
            pts_90k: f.pts_90k,
            key: f.key,
            size: f.data.len() as u32,
        })
        .collect()
}

impl MemorySource {
    /// Adds a segment made of `gops` to `camera`.
    pub fn add_segment(&self, camera: &str, params: TrackParams, gops: Vec<GopData>) {
        let mut map = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(camera.to_string()).or_default();
        let start_ms = gops.first().map(|g| g.start_unix_ms).unwrap_or(0);
        let end_ms = gops
            .last()
            .map(|g| frame_unix_ms(g, g.frames[g.frames.len() - 1].pts_90k))
            .unwrap_or(start_ms);
        let key = format!("{camera}-{}", list.len());
        list.push((
            SegmentKey {
                key,
                start_ms,
                end_ms,
                open: false,
                ..Default::default()
            },
            params,
            gops,
        ));
    }
}

impl FootageSource for MemorySource {
    fn cameras(&self) -> Result<Vec<CameraInfo>, SourceError> {
        Ok(self.cameras.clone())
    }

    fn recordings(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Recordings, SourceError> {
        let segs = self.segments(camera, from_ms, to_ms)?;
        let spans = merge_spans(segs.iter().map(|s| (s.start_ms, s.end_ms)), from_ms, to_ms);
        let gaps = self
            .gaps
            .get(camera)
            .map(|g| {
                g.iter()
                    .filter(|g| g.from_ms < to_ms && g.to_ms.is_none_or(|t| t > from_ms))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Ok((spans, gaps))
    }

    fn segments(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SegmentKey>, SourceError> {
        if !self.cameras.iter().any(|c| c.id == camera) {
            return Err(SourceError::UnknownCamera);
        }
        let map = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map
            .get(camera)
            .map(|v| {
                v.iter()
                    .filter(|(k, _, _)| k.start_ms < to_ms && k.end_ms >= from_ms)
                    .map(|(k, _, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    fn open(&self, camera: &str, seg: &SegmentKey) -> Result<Box<dyn GopStream>, SourceError> {
        let map = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        let (_, params, gops) = map
            .get(camera)
            .and_then(|v| v.iter().find(|(k, _, _)| k.key == seg.key))
            .ok_or_else(|| SourceError::Store("segment vanished".into()))?;
        Ok(Box::new(MemStream {
            params: params.clone(),
            gops: gops.clone(),
            next: 0,
        }))
    }

    fn segment_index(
        &self,
        camera: &str,
        seg: &SegmentKey,
    ) -> Result<Option<SegIndex>, SourceError> {
        if self.scan_only || seg.open {
            return Ok(None);
        }
        let map = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        let (_, params, gops) = map
            .get(camera)
            .and_then(|v| v.iter().find(|(k, _, _)| k.key == seg.key))
            .ok_or_else(|| SourceError::Store("segment vanished".into()))?;
        let chunks = gops
            .iter()
            .enumerate()
            .map(|(i, g)| ChunkInfo {
                start_unix_ms: g.start_unix_ms,
                loc: ChunkLoc {
                    offset: i as u64,
                    len: g.frames.iter().map(|f| f.data.len() as u32).sum(),
                    chunk_index: i as u64 + 1,
                },
                frames: mem_frames(g),
            })
            .collect();
        Ok(Some(SegIndex {
            params: params.clone(),
            chunks,
        }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const T0: i64 = 1_700_000_000_000;

    /// 6 s of 25 fps video, GOP of 25, in two segments of 3 s.
    fn source() -> (MemorySource, usize) {
        let (params, frames) = testdata::h264_track(6, 25, 25).expect("ffmpeg");
        let src = MemorySource {
            cameras: vec![testdata::camera("gate", "Gate")],
            ..Default::default()
        };
        let mut gops = testdata::chunks(&frames, T0, None);
        assert_eq!(gops.len(), 6);
        let second = gops.split_off(3);
        src.add_segment("gate", params.clone(), gops);
        src.add_segment("gate", params, second);
        (src, frames.len())
    }

    fn whole_file(src: &MemorySource, idx: &FrameIndex) -> Vec<u8> {
        let layout = idx.layout().unwrap();
        let mut out = layout.header.clone();
        read_payload(src, idx, 0, &mut |b| {
            out.extend_from_slice(&b);
            true
        })
        .unwrap();
        assert_eq!(out.len() as u64, layout.total_len);
        out
    }

    #[test]
    fn muxed_range_plays_in_ffmpeg() {
        let (src, n) = source();
        assert_eq!(n, 150);
        // whole recording, across both segments
        let idx = build_index(&src, "gate", T0, T0 + 6_000).unwrap().unwrap();
        assert_eq!(idx.samples.len(), 150);
        assert_eq!(idx.segments.len(), 2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.mp4");
        std::fs::write(&path, whole_file(&src, &idx)).unwrap();
        assert_eq!(testdata::check_with_ffmpeg(&path).unwrap(), 150);

        // from 2.5 s to 4.2 s: starts at the key frame at 2 s, ends before 4.2 s
        let idx = build_index(&src, "gate", T0 + 2_500, T0 + 4_200)
            .unwrap()
            .unwrap();
        assert_eq!(idx.first_unix_ms, T0 + 2_000);
        assert!(idx.samples[0].key);
        assert_eq!(idx.samples.len(), 25 + 25 + 5);
        let path = dir.path().join("part.mp4");
        let bytes = whole_file(&src, &idx);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(testdata::check_with_ffmpeg(&path).unwrap(), 55);

        // reading from a later chunk gives exactly the tail of the payload
        let layout = idx.layout().unwrap();
        let (chunk, off) = layout.chunk_at(layout.chunk_payload_offsets[1] + 10);
        assert_eq!(chunk, 1);
        let mut tail = Vec::new();
        read_payload(&src, &idx, chunk, &mut |b| {
            tail.extend_from_slice(&b);
            true
        })
        .unwrap();
        assert_eq!(
            &bytes[(layout.header.len() as u64 + off) as usize..],
            &tail[..]
        );
    }

    fn one_camera(params: TrackParams, segments: Vec<Vec<GopData>>) -> MemorySource {
        let src = MemorySource {
            cameras: vec![testdata::camera("gate", "Gate")],
            ..Default::default()
        };
        for s in segments {
            src.add_segment("gate", params.clone(), s);
        }
        src
    }

    #[test]
    fn continuation_chunks_are_part_of_their_gop() {
        // 6 s, one key frame every 2 s (50 frames), a chunk every 10 frames (400 ms).
        let (params, frames) = testdata::h264_track(6, 25, 50).expect("ffmpeg");
        let mut all = testdata::chunks(&frames, T0, Some(10));
        assert_eq!(all.len(), 15);
        assert!(!all[1].frames[0].key);
        let second = all.split_off(10); // a segment starts on the key frame at 4 s
        assert!(second[0].frames[0].key);
        let src = one_camera(params, vec![all, second]);
        let dir = tempfile::tempdir().unwrap();
        let cases: [(i64, i64, usize, i64); 5] = [
            // from, to, frames served, first frame at
            (0, 6_000, 150, 0),
            // inside the 2nd GOP, in its 3rd chunk: from the key frame at 2 s
            (2_900, 3_500, 38, 2_000),
            // exactly on a continuation chunk's start
            (2_400, 4_000, 50, 2_000),
            // across the segment boundary, ending inside a continuation chunk
            (3_000, 4_500, 50 + 13, 2_000),
            // the last GOP, to the end
            (5_500, 9_000, 50, 4_000),
        ];
        for (i, (from, to, n, first)) in cases.into_iter().enumerate() {
            let idx = build_index(&src, "gate", T0 + from, T0 + to)
                .unwrap()
                .unwrap();
            assert_eq!(idx.samples.len(), n, "case {i}");
            assert_eq!(idx.first_unix_ms, T0 + first, "case {i}");
            assert!(idx.samples[0].key, "case {i}");
            let path = dir.path().join(format!("c{i}.mp4"));
            std::fs::write(&path, whole_file(&src, &idx)).unwrap();
            assert_eq!(
                testdata::check_with_ffmpeg(&path).unwrap(),
                n as u64,
                "case {i}"
            );
        }
    }

    #[test]
    fn h265_muxes_as_hvc1_and_plays() {
        let (params, frames) = testdata::h265_track(4, 25, 25).expect("ffmpeg with libx265");
        assert_eq!(frames.len(), 100);
        assert_eq!(frames.iter().filter(|f| f.key).count(), 4);
        let mut all = testdata::chunks(&frames, T0, Some(10));
        let second = all.split_off(all.len() / 2);
        let src = one_camera(params, vec![all, second]);
        let dir = tempfile::tempdir().unwrap();
        let idx = build_index(&src, "gate", T0, T0 + 4_000).unwrap().unwrap();
        let path = dir.path().join("h265.mp4");
        std::fs::write(&path, whole_file(&src, &idx)).unwrap();
        assert_eq!(testdata::probe_codec(&path).unwrap(), "hevc,hvc1");
        assert_eq!(testdata::check_with_ffmpeg(&path).unwrap(), 100);
        // a part, from the key frame at 1 s
        let idx = build_index(&src, "gate", T0 + 1_500, T0 + 2_500)
            .unwrap()
            .unwrap();
        assert_eq!(idx.samples.len(), 38);
        let path = dir.path().join("h265-part.mp4");
        std::fs::write(&path, whole_file(&src, &idx)).unwrap();
        assert_eq!(testdata::check_with_ffmpeg(&path).unwrap(), 38);
    }

    #[test]
    fn nothing_recorded_and_changed_footage() {
        let (src, _) = source();
        assert!(
            build_index(&src, "gate", T0 - 100_000, T0 - 50_000)
                .unwrap()
                .is_none()
        );
        assert!(
            build_index(&src, "gate", T0 + 60_000, T0 + 70_000)
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            build_index(&src, "nope", T0, T0 + 1000),
            Err(SourceError::UnknownCamera)
        ));
        let idx = build_index(&src, "gate", T0, T0 + 2_000).unwrap().unwrap();
        // replace the footage underneath: sizes no longer match
        src.segments.lock().unwrap().get_mut("gate").unwrap()[0].2[0].frames[1]
            .data
            .push(0);
        let r = read_payload(&src, &idx, 0, &mut |_| true);
        assert!(matches!(r, Err(SourceError::Changed)), "{r:?}");
    }

    /// Counts what a source is asked to read.
    struct Counting {
        inner: MemorySource,
        in_order: Arc<AtomicUsize>,
        by_loc: Arc<AtomicUsize>,
        indices: AtomicUsize,
    }

    struct CountingStream {
        inner: Box<dyn GopStream>,
        in_order: Arc<AtomicUsize>,
        by_loc: Arc<AtomicUsize>,
    }

    impl GopStream for CountingStream {
        fn params(&self) -> &TrackParams {
            self.inner.params()
        }
        fn next_gop(&mut self) -> Result<Option<GopData>, SourceError> {
            self.in_order.fetch_add(1, Ordering::Relaxed);
            self.inner.next_gop()
        }
        fn read_at(&mut self, loc: &ChunkLoc) -> Result<ChunkPayload, SourceError> {
            self.by_loc.fetch_add(1, Ordering::Relaxed);
            self.inner.read_at(loc)
        }
    }

    impl FootageSource for Counting {
        fn cameras(&self) -> Result<Vec<CameraInfo>, SourceError> {
            self.inner.cameras()
        }
        fn recordings(&self, c: &str, f: i64, t: i64) -> Result<Recordings, SourceError> {
            self.inner.recordings(c, f, t)
        }
        fn segments(&self, c: &str, f: i64, t: i64) -> Result<Vec<SegmentKey>, SourceError> {
            self.inner.segments(c, f, t)
        }
        fn open(&self, c: &str, seg: &SegmentKey) -> Result<Box<dyn GopStream>, SourceError> {
            Ok(Box::new(CountingStream {
                inner: self.inner.open(c, seg)?,
                in_order: self.in_order.clone(),
                by_loc: self.by_loc.clone(),
            }))
        }
        fn segment_index(
            &self,
            c: &str,
            seg: &SegmentKey,
        ) -> Result<Option<SegIndex>, SourceError> {
            self.indices.fetch_add(1, Ordering::Relaxed);
            self.inner.segment_index(c, seg)
        }
    }

    fn counting(inner: MemorySource) -> Counting {
        Counting {
            inner,
            in_order: Arc::default(),
            by_loc: Arc::default(),
            indices: AtomicUsize::new(0),
        }
    }

    fn payload_from(src: &dyn FootageSource, idx: &FrameIndex, first: usize) -> Vec<u8> {
        let mut out = Vec::new();
        read_payload(src, idx, first, &mut |b| {
            out.extend_from_slice(&b);
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn stored_index_reads_each_chunk_once_and_only_those_needed() {
        let (params, frames) = testdata::h264_track(6, 25, 50).expect("ffmpeg");
        let mut all = testdata::chunks(&frames, T0, Some(10));
        let second = all.split_off(10);
        let indexed = counting(one_camera(
            params.clone(),
            vec![all.clone(), second.clone()],
        ));
        let mut scan = one_camera(params, vec![all, second]);
        scan.scan_only = true;
        let scan = counting(scan);
        for (from, to) in [
            (0, 6_000),
            (2_900, 3_500),
            (2_400, 4_000),
            (3_000, 4_500),
            (5_500, 9_000),
            (-500, 100),
        ] {
            let ai = build_index(&indexed, "gate", T0 + from, T0 + to)
                .unwrap()
                .unwrap();
            let bi = build_index(&scan, "gate", T0 + from, T0 + to)
                .unwrap()
                .unwrap();
            // the same index either way, but only the stored one knows the locations
            assert_eq!(ai.samples, bi.samples);
            assert_eq!(ai.first_unix_ms, bi.first_unix_ms);
            assert_eq!(ai.end_unix_ms, bi.end_unix_ms);
            let strip = |g: &[GopLoc]| -> Vec<GopLoc> {
                g.iter().map(|g| GopLoc { loc: None, ..*g }).collect()
            };
            assert_eq!(strip(&ai.gops), strip(&bi.gops));
            assert!(ai.gops.iter().all(|g| g.loc.is_some()));
            assert!(bi.gops.iter().all(|g| g.loc.is_none()));
            assert_eq!(
                indexed.in_order.load(Ordering::Relaxed),
                0,
                "nothing decrypted"
            );
            for first in [0, ai.gops.len() / 2, ai.gops.len() - 1] {
                indexed.by_loc.store(0, Ordering::Relaxed);
                let a = payload_from(&indexed, &ai, first);
                assert_eq!(a, payload_from(&scan, &bi, first));
                // exactly the chunks of the range, each read once
                assert_eq!(
                    indexed.by_loc.load(Ordering::Relaxed),
                    ai.gops.len() - first
                );
                assert_eq!(indexed.in_order.load(Ordering::Relaxed), 0);
            }
        }
        assert!(scan.by_loc.load(Ordering::Relaxed) == 0);
        assert!(indexed.indices.load(Ordering::Relaxed) > 0);

        // an open segment has no stored index: it is read in order
        let idx = {
            let mut map = indexed.inner.segments.lock().unwrap();
            map.get_mut("gate").unwrap()[1].0.open = true;
            drop(map);
            build_index(&indexed, "gate", T0, T0 + 6_000)
                .unwrap()
                .unwrap()
        };
        assert!(indexed.in_order.load(Ordering::Relaxed) > 0);
        assert!(idx.gops.iter().any(|g| g.segment == 0 && g.loc.is_some()));
        assert!(idx.gops.iter().any(|g| g.segment == 1 && g.loc.is_none()));
        assert_eq!(
            payload_from(&indexed, &idx, 0),
            payload_from(
                &scan,
                &build_index(&scan, "gate", T0, T0 + 6_000).unwrap().unwrap(),
                0
            )
        );
    }

    #[test]
    fn spans_merge() {
        assert_eq!(
            merge_spans(
                [(0, 10_000), (11_000, 20_000), (30_000, 40_000)].into_iter(),
                5_000,
                35_000
            ),
            vec![(5_000, 20_000), (30_000, 35_000)]
        );
    }
}

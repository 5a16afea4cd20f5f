//! From a camera and a time range to MP4 bytes: which GOPs, in which order, and the
//! exact file they make.
//!
//! Two passes over the encrypted segments: [`build_index`] reads the GOPs once to learn
//! the frames' times and sizes (keeping no image data), so the MP4 layout, its length
//! and every offset are known before the response starts; [`read_payload`] then reads
//! again only the GOPs a (possibly partial, `Range`) response needs. Decrypting twice
//! costs CPU, but keeps memory bounded by the frame index instead of the footage.
//!
//! The store is behind [`FootageSource`], so that the policy and HTTP tests run on an
//! in-memory store and the real one ([`crate::store`]) is a thin adapter over the
//! recorder's `footage` API.

use std::collections::HashMap;
use std::sync::Mutex;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraInfo {
    pub id: String,
    pub name: String,
    pub state: String,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentKey {
    /// Opaque to this module.
    pub key: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Still being written (its end is not known yet).
    pub open: bool,
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
}

/// Where a GOP of the index lives: segment (index into [`FrameIndex::segments`]) and
/// its ordinal in that segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GopLoc {
    pub segment: usize,
    pub ordinal: usize,
    /// How many of its frames are used (the last GOP may be cut at `to`).
    pub frames: usize,
}

#[derive(Debug, Clone)]
pub struct FrameIndex {
    pub camera: String,
    pub params: TrackParams,
    pub segments: Vec<SegmentKey>,
    pub gops: Vec<GopLoc>,
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

/// Builds the frame index of `[from, to)`: from the key frame at or before `from`
/// (or the first one after it, if recording began later) to the last frame before
/// `to`. Stops early where the codec parameters change. `Ok(None)`: nothing recorded.
///
/// Works on chunks, not GOPs: a chunk normally starts with a key frame, but the
/// recorder also closes a chunk inside a long GOP (so that little is lost on a power
/// cut); such a chunk starts with a non-key frame and continues the GOP of the chunk
/// before it. Each chunk becomes one MP4 chunk; the key flags go to `stss`.
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
    let mut frames: Vec<(i64, bool, u32)> = Vec::new();
    let mut first_unix_ms = None;
    let mut end_unix_ms = from_ms;
    // The chunks of the last GOP starting at or before `from` (its key chunk and its
    // continuations), held until we know it is the one.
    let mut candidate: Vec<(GopLoc, GopData)> = Vec::new();
    // Past `from`: every chunk before `to` is taken.
    let mut taking = false;
    let mut done = false;

    // Takes the frames of one chunk before `to`; false when the chunk was cut there.
    let mut take = |loc: GopLoc,
                    gop: &GopData,
                    gops: &mut Vec<GopLoc>,
                    frames: &mut Vec<(i64, bool, u32)>|
     -> bool {
        let mut n = 0;
        for f in &gop.frames {
            let t = frame_unix_ms(gop, f.pts_90k);
            if t >= to_ms && n > 0 {
                break;
            }
            frames.push((f.pts_90k, f.key, f.data.len() as u32));
            first_unix_ms.get_or_insert(t);
            n += 1;
        }
        let last = gop.frames[n - 1].pts_90k;
        end_unix_ms = frame_unix_ms(gop, last);
        gops.push(GopLoc { frames: n, ..loc });
        n == gop.frames.len()
    };

    for seg in segments {
        if done {
            break;
        }
        let mut stream = src.open(camera, &seg)?;
        match &params {
            None => params = Some(stream.params().clone()),
            Some(p) if p != stream.params() => break,
            Some(_) => {}
        }
        let seg_idx = used_segments.len();
        used_segments.push(seg);
        let mut ordinal = 0;
        while let Some(gop) = stream.next_gop()? {
            let loc = GopLoc {
                segment: seg_idx,
                ordinal,
                frames: gop.frames.len(),
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
        let last = frame_unix_ms(last_gop, last_gop.frames[last_gop.frames.len() - 1].pts_90k);
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
            .map(|n| n.0.wrapping_sub(frames[i].0))
            .filter(|d| (1..=MAX_FRAME_STEP_90K).contains(d))
            .unwrap_or(last_step);
        last_step = step;
        samples.push(Sample {
            duration_90k: step as u32,
            size: frames[i].2,
            key: frames[i].1,
        });
    }
    let last_dur_ms = i64::from(samples[samples.len() - 1].duration_90k) / 90;
    Ok(Some(FrameIndex {
        camera: camera.to_string(),
        params,
        segments: used_segments,
        gops,
        samples,
        first_unix_ms: first_unix_ms.unwrap_or(from_ms),
        end_unix_ms: end_unix_ms + last_dur_ms,
    }))
}

/// Reads the payload (sample bytes) from chunk `first_gop` on, calling `sink` with
/// each GOP's bytes in order until it returns false. Checks every frame's size against
/// the index: footage that changed underneath fails with [`SourceError::Changed`].
pub fn read_payload(
    src: &dyn FootageSource,
    index: &FrameIndex,
    first_gop: usize,
    sink: &mut dyn FnMut(Vec<u8>) -> bool,
) -> Result<(), SourceError> {
    let mut sample_base: usize = index.gops[..first_gop.min(index.gops.len())]
        .iter()
        .map(|g| g.frames)
        .sum();
    let mut g = first_gop;
    while g < index.gops.len() {
        let seg = index.gops[g].segment;
        let mut stream = src.open(&index.camera, &index.segments[seg])?;
        let mut ordinal = 0;
        while g < index.gops.len() && index.gops[g].segment == seg {
            let want = index.gops[g];
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
            let expected = &index.samples[sample_base..sample_base + want.frames];
            let len: usize = expected.iter().map(|s| s.size as usize).sum();
            let mut buf = Vec::with_capacity(len);
            for (f, s) in gop.frames.iter().zip(expected) {
                if f.data.len() != s.size as usize {
                    return Err(SourceError::Changed);
                }
                buf.extend_from_slice(&f.data);
            }
            sample_base += want.frames;
            g += 1;
            if !sink(buf) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// An in-memory store (tests, and a model of what the real one must do).
#[derive(Default)]
pub struct MemorySource {
    pub cameras: Vec<CameraInfo>,
    pub gaps: HashMap<String, Vec<GapInfo>>,
    #[allow(clippy::type_complexity)]
    pub segments: Mutex<HashMap<String, Vec<(SegmentKey, TrackParams, Vec<GopData>)>>>,
}

struct MemStream {
    params: TrackParams,
    gops: std::vec::IntoIter<GopData>,
}

impl GopStream for MemStream {
    fn params(&self) -> &TrackParams {
        &self.params
    }
    fn next_gop(&mut self) -> Result<Option<GopData>, SourceError> {
        Ok(self.gops.next())
    }
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
            gops: gops.clone().into_iter(),
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
    use crate::mp4::VideoCodec;
    use crate::testdata;

    const T0: i64 = 1_700_000_000_000;

    /// 6 s of 25 fps video, GOP of 25, in two segments of 3 s.
    fn source() -> (MemorySource, usize) {
        let (avcc, frames) = testdata::h264_frames(6, 25, 25).expect("ffmpeg");
        let params = TrackParams {
            codec: VideoCodec::H264,
            extra_data: avcc,
            width: 320,
            height: 240,
        };
        let src = MemorySource {
            cameras: vec![CameraInfo {
                id: "gate".into(),
                name: "Gate".into(),
                state: "recording".into(),
            }],
            ..Default::default()
        };
        let mut gops: Vec<GopData> = Vec::new();
        for f in &frames {
            if f.key {
                gops.push(GopData {
                    start_unix_ms: T0 + f.pts_90k / 90,
                    frames: vec![],
                });
            }
            gops.last_mut().unwrap().frames.push(FrameData {
                pts_90k: f.pts_90k,
                key: f.key,
                data: f.data.clone(),
            });
        }
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

    /// Frames as chunks: a key chunk per GOP, or (`split`) also continuation chunks
    /// every `split` frames inside a GOP, as the recorder writes them in long GOPs.
    fn chunks(frames: &[testdata::TestFrame], split: Option<usize>) -> Vec<GopData> {
        let mut gops: Vec<GopData> = Vec::new();
        let mut n = 0;
        for f in frames {
            if f.key || split.is_some_and(|s| n % s == 0) {
                n = 0;
                gops.push(GopData {
                    start_unix_ms: T0 + f.pts_90k / 90,
                    frames: vec![],
                });
            }
            n += 1;
            gops.last_mut().unwrap().frames.push(FrameData {
                pts_90k: f.pts_90k,
                key: f.key,
                data: f.data.clone(),
            });
        }
        gops
    }

    fn one_camera(params: TrackParams, segments: Vec<Vec<GopData>>) -> MemorySource {
        let src = MemorySource {
            cameras: vec![CameraInfo {
                id: "gate".into(),
                name: "Gate".into(),
                state: "recording".into(),
            }],
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
        let (avcc, frames) = testdata::h264_frames(6, 25, 50).expect("ffmpeg");
        let params = TrackParams {
            codec: VideoCodec::H264,
            extra_data: avcc,
            width: 320,
            height: 240,
        };
        let mut all = chunks(&frames, Some(10));
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
        let (hvcc, frames) = testdata::h265_frames(4, 25, 25).expect("ffmpeg with libx265");
        assert_eq!(frames.len(), 100);
        assert_eq!(frames.iter().filter(|f| f.key).count(), 4);
        let params = TrackParams {
            codec: VideoCodec::H265,
            extra_data: hvcc,
            width: 320,
            height: 240,
        };
        let mut all = chunks(&frames, Some(10));
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

//! The frame index of a request, built from the segments' stored indexes (nothing
//! decrypted before the request is logged), with the one rule for frame steps.

use super::*;

/// How far before `from` a segment may end and still hold the GOP covering `from`.
pub(super) const LOOKBACK_MS: i64 = 60_000;

/// Wall time of the frame at `pts` of a chunk.
pub fn frame_unix_ms(gop: &GopData, pts: i64) -> i64 {
    gop.start_unix_ms + ms_from_90k(pts - gop.frames[0].pts_90k)
}

/// A chunk as [`build_index`] sees it: times and sizes, no image data.
pub(super) struct ChunkMeta {
    start_unix_ms: i64,
    frames: Vec<FrameInfo>,
    loc: Option<ChunkLoc>,
}

impl ChunkMeta {
    fn unix_ms(&self, pts: i64) -> i64 {
        self.start_unix_ms + ms_from_90k(pts - self.frames[0].pts_90k)
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
pub(super) enum SegChunks {
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
pub(super) fn seg_chunks(
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
    // An implausible step (a gap between segments) is played as the step before,
    // instead of freezing the picture.
    let mut last_step = frame_step::DEFAULT_90K;
    for i in 0..frames.len() {
        let step = frames
            .get(i + 1)
            .map(|n| n.pts_90k.wrapping_sub(frames[i].pts_90k))
            .filter(|d| frame_step::plausible(*d))
            .unwrap_or(last_step);
        last_step = step;
        samples.push(Sample {
            duration_90k: step as u32,
            size: frames[i].size,
            key: frames[i].key,
        });
    }
    let last_dur_ms = ms_from_90k(i64::from(samples[samples.len() - 1].duration_90k));
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

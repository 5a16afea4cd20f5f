//! A footage source in memory: the model the real store must match, and what tests
//! serve footage from.

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;

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

pub(super) struct MemStream {
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

pub(super) fn mem_frames(gop: &GopData) -> Vec<FrameInfo> {
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

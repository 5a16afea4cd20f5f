//! The real footage store: an adapter from the recorder's `footage` read API to
//! [`FootageSource`]. Kept thin on purpose: the format belongs to the recorder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use recorder::catalog::SegmentRow;
use recorder::footage::{Footage, FootageError};
use recorder::segment::{Codec, CodecParams, IndexedFrame, SegmentError, SegmentReader};

use crate::mp4::{TrackParams, VideoCodec};
use crate::playback::{
    CameraInfo, ChunkInfo, ChunkLoc, ChunkPayload, FootageSource, FrameData, FrameInfo, GapInfo,
    GopData, GopStream, Polled, Recordings, SegIndex, SegmentKey, SourceError, merge_spans,
};

pub struct RecorderSource {
    footage: Arc<Footage>,
    /// Rows seen by `segments`, so `open` need not scan the catalog again.
    rows: Mutex<HashMap<String, SegmentRow>>,
    bufs: Arc<BufPool>,
}

impl RecorderSource {
    pub fn new(footage: Footage) -> Self {
        RecorderSource {
            footage: Arc::new(footage),
            rows: Mutex::new(HashMap::new()),
            bufs: Arc::default(),
        }
    }
}

/// How far past a chunk read by its location the kernel is asked to read ahead: a few
/// chunks, so disk reads overlap with decryption without reading much a `Range`
/// request will not use.
const READ_AHEAD: u64 = 4 << 20;

/// Chunk buffers handed back once their bytes have been sent, so that streaming does
/// not allocate (and zero, and fault in) a fresh buffer per chunk.
#[derive(Default)]
struct BufPool(Mutex<Vec<Vec<u8>>>);

impl BufPool {
    const KEEP: usize = 16;
    const MAX_LEN: usize = 8 << 20;

    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default()
    }
}

/// A chunk's frame bytes, owned by a pooled buffer (see [`Bytes::from_owner`]).
struct Pooled {
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
    pool: Arc<BufPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() <= BufPool::MAX_LEN {
            let mut pool = self.pool.0.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < BufPool::KEEP {
                pool.push(buf);
            }
        }
    }
}

/// A camera as the recorder's catalog states it, as the API shows it.
pub(crate) fn camera_info(c: recorder::footage::CameraStatus) -> CameraInfo {
    CameraInfo {
        id: c.id,
        name: c.name,
        state: c.state,
        since_ms: c.state_since_unix_ms,
        reason: c.state_reason,
    }
}

/// A gap as the recorder's catalog states it, as the API shows it.
pub(crate) fn gap_info(g: recorder::catalog::GapRow) -> GapInfo {
    GapInfo {
        from_ms: g.from_unix_ms,
        to_ms: g.to_unix_ms,
        reason: g.reason,
    }
}

fn store_err(e: impl std::fmt::Display) -> SourceError {
    SourceError::Store(e.to_string())
}

fn track_params(p: &CodecParams) -> TrackParams {
    TrackParams {
        codec: match p.codec {
            Codec::H264 => VideoCodec::H264,
            Codec::H265 => VideoCodec::H265,
        },
        extra_data: p.extra_data.clone(),
        width: p.width,
        height: p.height,
    }
}

fn frame_info(f: &IndexedFrame) -> FrameInfo {
    FrameInfo {
        pts_90k: f.pts_90k,
        key: f.key,
        size: f.size,
    }
}

struct SegStream {
    reader: SegmentReader,
    params: TrackParams,
    bufs: Arc<BufPool>,
}

impl GopStream for SegStream {
    fn params(&self) -> &TrackParams {
        &self.params
    }

    fn next_gop(&mut self) -> Result<Option<GopData>, SourceError> {
        match self.poll_gop()? {
            Polled::Gop(g) => Ok(Some(g)),
            Polled::Pending | Polled::End => Ok(None),
        }
    }

    fn poll_gop(&mut self) -> Result<Polled, SourceError> {
        match self.reader.next_gop() {
            Ok(Some(g)) => Ok(Polled::Gop(GopData {
                start_unix_ms: g.start_unix_ms,
                frames: g
                    .frames
                    .into_iter()
                    .map(|f| FrameData {
                        pts_90k: f.pts_90k,
                        key: f.key,
                        data: f.data,
                    })
                    .collect(),
            })),
            Ok(None) => Ok(Polled::End),
            // The authentic end of a segment still being written; the reader rewinds
            // to the last complete chunk, so a later call reads what has been added.
            Err(SegmentError::Cut { .. }) => Ok(Polled::Pending),
            Err(e) => Err(store_err(e)),
        }
    }

    fn will_read(&mut self, loc: &ChunkLoc) {
        self.reader
            .will_need(loc.offset.saturating_sub(16), READ_AHEAD);
    }

    fn read_at(&mut self, loc: &ChunkLoc) -> Result<ChunkPayload, SourceError> {
        let gop = self
            .reader
            .read_gop_bytes_into(loc.offset, loc.len, loc.chunk_index, self.bufs.take())
            .map_err(store_err)?;
        // Start reading what most likely comes next while this chunk is sent.
        let end = loc.offset + u64::from(loc.len) + 33;
        self.reader.will_need(end, READ_AHEAD);
        let frames = gop.frames.iter().map(frame_info).collect();
        let (buf, range) = gop.into_parts();
        Ok(ChunkPayload {
            frames,
            data: Bytes::from_owner(Pooled {
                buf,
                range,
                pool: self.bufs.clone(),
            }),
        })
    }
}

impl FootageSource for RecorderSource {
    fn cameras(&self) -> Result<Vec<CameraInfo>, SourceError> {
        Ok(self
            .footage
            .cameras()
            .map_err(store_err)?
            .into_iter()
            .map(camera_info)
            .collect())
    }

    fn recordings(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Recordings, SourceError> {
        let segs = self
            .footage
            .segments(camera, from_ms, to_ms)
            .map_err(store_err)?;
        let spans = merge_spans(
            segs.iter()
                .map(|s| (s.start_unix_ms, s.end_unix_ms.max(s.start_unix_ms))),
            from_ms,
            to_ms,
        );
        let gaps = self
            .footage
            .gaps(camera, from_ms, to_ms)
            .map_err(store_err)?
            .into_iter()
            .map(gap_info)
            .collect();
        Ok((spans, gaps))
    }

    fn segments(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SegmentKey>, SourceError> {
        let rows = self
            .footage
            .segments(camera, from_ms, to_ms)
            .map_err(store_err)?;
        let mut cache = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 100_000 {
            cache.clear();
        }
        Ok(rows
            .into_iter()
            .map(|r| {
                let key = r.id.to_string();
                let k = SegmentKey {
                    key: key.clone(),
                    start_ms: r.start_unix_ms,
                    end_ms: r.end_unix_ms,
                    open: r.open,
                    bytes: r.bytes,
                    sha256: r.sha256.clone().unwrap_or_default(),
                };
                cache.insert(key, r);
                k
            })
            .collect())
    }

    fn open(&self, _camera: &str, seg: &SegmentKey) -> Result<Box<dyn GopStream>, SourceError> {
        let row = self.row(seg)?;
        let reader = self.footage.open_segment(&row).map_err(store_err)?;
        let params = track_params(reader.params());
        Ok(Box::new(SegStream {
            reader,
            params,
            bufs: self.bufs.clone(),
        }))
    }

    fn segment_index(
        &self,
        _camera: &str,
        seg: &SegmentKey,
    ) -> Result<Option<SegIndex>, SourceError> {
        let row = self.row(seg)?;
        let idx = match self.footage.segment_index(&row) {
            Ok(idx) => idx,
            // Cut, or closed in the catalog before its file was: read it in order.
            Err(FootageError::Segment {
                source: SegmentError::NoIndex,
                ..
            }) => return Ok(None),
            Err(e) => return Err(store_err(e)),
        };
        let chunks = idx
            .gops
            .iter()
            .enumerate()
            .map(|(i, g)| ChunkInfo {
                start_unix_ms: g.start_unix_ms,
                loc: ChunkLoc {
                    offset: g.offset,
                    len: g.len,
                    chunk_index: g.chunk_index,
                },
                frames: idx.gop_frames(i).iter().map(frame_info).collect(),
            })
            .collect();
        Ok(Some(SegIndex {
            params: track_params(&idx.params),
            chunks,
        }))
    }
}

impl RecorderSource {
    fn row(&self, seg: &SegmentKey) -> Result<SegmentRow, SourceError> {
        self.rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&seg.key)
            .cloned()
            .ok_or_else(|| SourceError::Store("segment no longer listed".into()))
    }
}

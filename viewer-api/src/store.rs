//! The real footage store: an adapter from the recorder's `footage` read API to
//! [`FootageSource`]. Kept thin on purpose: the format belongs to the recorder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use recorder::catalog::SegmentRow;
use recorder::footage::Footage;
use recorder::segment::{Codec, SegmentError, SegmentReader};

use crate::mp4::{TrackParams, VideoCodec};
use crate::playback::{
    CameraInfo, FootageSource, FrameData, GapInfo, GopData, GopStream, Polled, Recordings,
    SegmentKey, SourceError, merge_spans,
};

pub struct RecorderSource {
    footage: Arc<Footage>,
    /// Rows seen by `segments`, so `open` need not scan the catalog again.
    rows: Mutex<HashMap<String, SegmentRow>>,
}

impl RecorderSource {
    pub fn new(footage: Footage) -> Self {
        RecorderSource {
            footage: Arc::new(footage),
            rows: Mutex::new(HashMap::new()),
        }
    }
}

fn store_err(e: impl std::fmt::Display) -> SourceError {
    SourceError::Store(e.to_string())
}

struct SegStream {
    reader: SegmentReader,
    params: TrackParams,
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
}

impl FootageSource for RecorderSource {
    fn cameras(&self) -> Result<Vec<CameraInfo>, SourceError> {
        Ok(self
            .footage
            .cameras()
            .map_err(store_err)?
            .into_iter()
            .map(|c| CameraInfo {
                id: c.id,
                name: c.name,
                state: c.state,
            })
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
            .map(|g| GapInfo {
                from_ms: g.from_unix_ms,
                to_ms: g.to_unix_ms,
                reason: g.reason,
            })
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
                };
                cache.insert(key, r);
                k
            })
            .collect())
    }

    fn open(&self, _camera: &str, seg: &SegmentKey) -> Result<Box<dyn GopStream>, SourceError> {
        let row = self
            .rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&seg.key)
            .cloned()
            .ok_or_else(|| SourceError::Store("segment no longer listed".into()))?;
        let reader = self.footage.open_segment(&row).map_err(store_err)?;
        let p = reader.params();
        let params = TrackParams {
            codec: match p.codec {
                Codec::H264 => VideoCodec::H264,
                Codec::H265 => VideoCodec::H265,
            },
            extra_data: p.extra_data.clone(),
            width: p.width,
            height: p.height,
        };
        Ok(Box::new(SegStream { reader, params }))
    }
}

//! The recorder side as `viewer-api serve` sees it: every call crosses the recorder's
//! local service (`recorder::service`), a Unix socket answered only for the users it
//! allows. This process holds no key and opens nothing of the store.
//!
//! Footage is read only for an access-log entry: [`RemoteSource`] as handed to a
//! request ([`FootageSource::with_entry`]) names the entry with every segment it opens,
//! and the recorder journals it; one without an entry can list and index, not read.

use std::sync::Arc;

use bytes::Bytes;
use recorder::footage::{CameraStatus, FsSpace, StoreHealth};
use recorder::holds::{Hold, NewHold};
use recorder::journal;
use recorder::service::{
    Client, ErrorKind, GopWire, IndexWire, ParamsWire, RemoteSegment, Request, SegmentWire,
    ServiceError,
};

use crate::mp4::{TrackParams, VideoCodec};
use crate::playback::{
    CameraInfo, ChunkInfo, ChunkLoc, ChunkPayload, FootageSource, FrameData, FrameInfo, GopData,
    GopStream, Polled, Recordings, SegIndex, SegmentKey, SourceError, merge_spans,
};
use crate::recorder_side::{LogRef, RecorderSide, SideError};

fn source_err(e: ServiceError) -> SourceError {
    match e.kind {
        ErrorKind::UnknownCamera => SourceError::UnknownCamera,
        _ => SourceError::Store(e.message),
    }
}

fn side_err(e: ServiceError) -> SideError {
    match e.kind {
        ErrorKind::Invalid => SideError::Invalid(e.message),
        ErrorKind::NotFound => SideError::NotFound,
        ErrorKind::AlreadyReleased => SideError::AlreadyReleased {
            at: e.at.unwrap_or_default(),
            by: e.by.unwrap_or_default(),
        },
        ErrorKind::Refused => SideError::Refused(e.message),
        _ => SideError::Unavailable(e.message),
    }
}

fn track_params(p: &ParamsWire) -> Result<TrackParams, SourceError> {
    Ok(TrackParams {
        codec: match p.codec().map_err(source_err)? {
            recorder::segment::Codec::H264 => VideoCodec::H264,
            recorder::segment::Codec::H265 => VideoCodec::H265,
        },
        extra_data: p.extra_data().map_err(source_err)?,
        width: p.width,
        height: p.height,
    })
}

/// Footage through the recorder service.
#[derive(Clone)]
pub struct RemoteSource {
    client: Arc<Client>,
    entry: Option<LogRef>,
}

impl RemoteSource {
    pub fn new(client: Arc<Client>) -> RemoteSource {
        RemoteSource {
            client,
            entry: None,
        }
    }

    fn segment_list(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SegmentWire>, SourceError> {
        self.client
            .call(&Request::Segments {
                camera: camera.into(),
                from_ms,
                to_ms,
            })
            .map_err(source_err)
    }
}

impl FootageSource for RemoteSource {
    fn cameras(&self) -> Result<Vec<CameraInfo>, SourceError> {
        let list: Vec<CameraStatus> = self.client.call(&Request::Cameras).map_err(source_err)?;
        Ok(list.into_iter().map(camera_info).collect())
    }

    fn recordings(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Recordings, SourceError> {
        let segs = self.segment_list(camera, from_ms, to_ms)?;
        let spans = merge_spans(
            segs.iter()
                .map(|s| (s.start_unix_ms, s.end_unix_ms.max(s.start_unix_ms))),
            from_ms,
            to_ms,
        );
        let gaps: Vec<recorder::footage::GapRow> = self
            .client
            .call(&Request::Gaps {
                camera: camera.into(),
                from_ms,
                to_ms,
            })
            .map_err(source_err)?;
        let gaps = gaps.into_iter().map(gap_info).collect();
        Ok((spans, gaps))
    }

    fn segments(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SegmentKey>, SourceError> {
        Ok(self
            .segment_list(camera, from_ms, to_ms)?
            .into_iter()
            .map(|s| SegmentKey {
                key: s.id,
                start_ms: s.start_unix_ms,
                end_ms: s.end_unix_ms,
                open: s.open,
                bytes: s.bytes,
                sha256: s.sha256.unwrap_or_default(),
            })
            .collect())
    }

    fn open(&self, camera: &str, seg: &SegmentKey) -> Result<Box<dyn GopStream>, SourceError> {
        let Some(entry) = &self.entry else {
            return Err(SourceError::Store(
                "footage is read only for an access-log entry".into(),
            ));
        };
        let seg = self
            .client
            .open_segment(&Request::Open {
                camera: camera.into(),
                segment: seg.key.clone(),
                entry: entry.clone(),
            })
            .map_err(source_err)?;
        let params = track_params(&seg.params)?;
        Ok(Box::new(RemoteStream { seg, params }))
    }

    fn segment_index(
        &self,
        camera: &str,
        seg: &SegmentKey,
    ) -> Result<Option<SegIndex>, SourceError> {
        let idx: Option<IndexWire> = self
            .client
            .call(&Request::SegmentIndex {
                camera: camera.into(),
                segment: seg.key.clone(),
            })
            .map_err(source_err)?;
        let Some(idx) = idx else { return Ok(None) };
        Ok(Some(SegIndex {
            params: track_params(&idx.params)?,
            chunks: idx
                .chunks
                .into_iter()
                .map(|c| ChunkInfo {
                    start_unix_ms: c.start_unix_ms,
                    loc: ChunkLoc {
                        offset: c.offset,
                        len: c.len,
                        chunk_index: c.chunk_index,
                    },
                    frames: c
                        .frames
                        .into_iter()
                        .map(|(pts_90k, size, key)| FrameInfo { pts_90k, key, size })
                        .collect(),
                })
                .collect(),
        }))
    }

    fn with_entry(&self, entry: LogRef) -> Option<Arc<dyn FootageSource>> {
        Some(Arc::new(RemoteSource {
            client: self.client.clone(),
            entry: Some(entry),
        }))
    }
}

struct RemoteStream {
    seg: RemoteSegment,
    params: TrackParams,
}

/// Splits a chunk's bytes into its frames, checking the sizes add up.
fn split_frames(frames: &[(i64, u32, bool)], data: &[u8]) -> Result<Vec<FrameData>, SourceError> {
    let mut at = 0usize;
    let mut out = Vec::with_capacity(frames.len());
    for &(pts_90k, size, key) in frames {
        let end = at + size as usize;
        let Some(bytes) = data.get(at..end) else {
            return Err(SourceError::Store(
                "a chunk's frames overrun its bytes".into(),
            ));
        };
        out.push(FrameData {
            pts_90k,
            key,
            data: bytes.to_vec(),
        });
        at = end;
    }
    if at != data.len() {
        return Err(SourceError::Store(
            "a chunk's bytes do not match its frames".into(),
        ));
    }
    Ok(out)
}

impl GopStream for RemoteStream {
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
        let mut buf = Vec::new();
        match self.seg.next_gop(&mut buf).map_err(source_err)? {
            GopWire::Gop {
                start_unix_ms,
                frames,
            } => Ok(Polled::Gop(GopData {
                start_unix_ms,
                frames: split_frames(&frames, &buf)?,
            })),
            GopWire::Pending => Ok(Polled::Pending),
            GopWire::End => Ok(Polled::End),
        }
    }

    fn will_read(&mut self, loc: &ChunkLoc) {
        let _ = self.seg.will_read(loc.offset.saturating_sub(16), 4 << 20);
    }

    fn read_at(&mut self, loc: &ChunkLoc) -> Result<ChunkPayload, SourceError> {
        let mut buf = Vec::new();
        let frames = self
            .seg
            .read_at(loc.offset, loc.len, loc.chunk_index, &mut buf)
            .map_err(source_err)?;
        let total: u64 = frames.iter().map(|f| u64::from(f.1)).sum();
        if total != buf.len() as u64 {
            return Err(SourceError::Store(
                "a chunk's bytes do not match its frames".into(),
            ));
        }
        Ok(ChunkPayload {
            frames: frames
                .into_iter()
                .map(|(pts_90k, size, key)| FrameInfo { pts_90k, key, size })
                .collect(),
            data: Bytes::from(buf),
        })
    }
}

/// Holds, health, the deletion journal and signatures through the recorder service.
pub struct RemoteRecorder {
    client: Arc<Client>,
}

impl RemoteRecorder {
    pub fn new(client: Arc<Client>) -> RemoteRecorder {
        RemoteRecorder { client }
    }
}

impl RecorderSide for RemoteRecorder {
    fn holds(&self) -> Result<Vec<Hold>, SideError> {
        self.client.call(&Request::Holds).map_err(side_err)
    }

    fn hold(&self, id: i64) -> Result<Option<Hold>, SideError> {
        self.client.call(&Request::Hold { id }).map_err(side_err)
    }

    fn add_hold(&self, log: &LogRef, hold: &NewHold, _now_ms: i64) -> Result<i64, SideError> {
        self.client
            .call(&Request::AddHold {
                entry: log.clone(),
                hold: hold.clone(),
            })
            .map_err(side_err)
    }

    fn tamper_events(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<recorder::devices::TamperRecord>, SideError> {
        self.client
            .call(&Request::TamperEvents { after_seq, limit })
            .map_err(side_err)
    }

    fn tamper_ack(
        &self,
        log: &LogRef,
        by: &str,
    ) -> Result<hardware::tamper::Acknowledgement, SideError> {
        self.client
            .call(&Request::TamperAck {
                entry: log.clone(),
                by: by.into(),
            })
            .map_err(|e| match e.kind {
                // Nothing latched, or no switch: the caller's mistake, said as it is.
                ErrorKind::NotFound => SideError::Invalid(e.message),
                _ => side_err(e),
            })
    }

    fn release_hold(&self, log: &LogRef, id: i64, by: &str, _now_ms: i64) -> Result<(), SideError> {
        self.client
            .call(&Request::ReleaseHold {
                entry: log.clone(),
                id,
                by: by.into(),
            })
            .map_err(side_err)
    }

    fn health(&self, since_ms: i64, _now_ms: i64) -> Result<StoreHealth, SideError> {
        self.client
            .call(&Request::Health { since_ms })
            .map_err(side_err)
    }

    fn fs_space(&self) -> Result<FsSpace, SideError> {
        self.client.call(&Request::FsSpace).map_err(side_err)
    }

    fn metrics_text(&self) -> Result<String, SideError> {
        self.client.call(&Request::Metrics).map_err(side_err)
    }

    fn journal_page(
        &self,
        camera: Option<&str>,
        since_ms: Option<i64>,
        before_seq: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, journal::Entry)>, SideError> {
        self.client
            .call(&Request::Journal {
                camera: camera.map(str::to_string),
                since_ms,
                before_seq,
                limit,
            })
            .map_err(side_err)
    }

    fn public_key(&self) -> Result<[u8; 32], SideError> {
        let h: String = self.client.call(&Request::PublicKey).map_err(side_err)?;
        hex::decode(h)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or_else(|| {
                SideError::Unavailable("the recorder sent a malformed public key".into())
            })
    }

    fn sign_manifest(&self, log: &LogRef, manifest: &[u8]) -> Result<[u8; 64], SideError> {
        let (h, _): (String, _) = self
            .client
            .call_with(&Request::SignManifest { entry: log.clone() }, manifest)
            .map_err(side_err)?;
        hex::decode(h)
            .ok()
            .and_then(|v| <[u8; 64]>::try_from(v).ok())
            .ok_or_else(|| SideError::Unavailable("the recorder sent a malformed signature".into()))
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
pub(crate) fn gap_info(g: recorder::footage::GapRow) -> crate::playback::GapInfo {
    crate::playback::GapInfo {
        from_ms: g.from_unix_ms,
        to_ms: g.to_unix_ms,
        reason: g.reason,
    }
}

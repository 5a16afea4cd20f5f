//! H.264 previews and scrub thumbnails decoded by GStreamer, for browsers that cannot
//! decode a camera's codec (Debian's Chromium and H.265).
//!
//! Both are made from the frames of a [viewing](crate::viewing) and are covered by its
//! one access-log entry: a preview or a thumbnail shows nothing the viewing's entry
//! does not name (the range served, key frame included), and each request re-runs the
//! policy through [`viewing::find`] (a revoked grant or an ended session stops them).
//!
//! * `GET /api/v1/viewings/{id}/preview.mp4[?t=MS]`: the viewing's frames transcoded
//!   to H.264 ([`MIME`]: constrained baseline, level 3.1, at most 640×360, a key frame
//!   about every second), as a fragmented MP4 streamed (chunked) while it is made. Its
//!   media timeline is the viewing's MP4's: first frame at 0, the same frame durations,
//!   so the viewing's time map (media ms → wall clock) holds for it too. `t` (media
//!   ms) starts it at the key frame at or before `t`, still on that timeline (the first
//!   fragment's decode time is that key frame's media time; `X-Preview-Start-Ms` says
//!   which). A long preview re-checks the policy every [`RECHECK`], and ends when the
//!   client stops reading for [`CLIENT_STALL`]. It is a footage stream
//!   ([`crate::streams`]): it counts against the caller's and the device's limits of
//!   streams at once (429 beyond), and the transcoder runs on a thread of its own, not
//!   on the async runtime's blocking pool: a client that stops reading stops the
//!   pipeline (its queues fill), and holds no thread of the pool.
//! * `GET /api/v1/viewings/{id}/thumb.jpg?at=T`: the key frame at or before `T` (RFC
//!   3339, inside the viewing's range, else 400) as a JPEG [`THUMB_WIDTH`] pixels wide.
//!   `X-Frame-Time` (RFC 3339) and `X-Media-Ms` say which frame it is. Made in memory
//!   (a few recent ones kept there for scrubbing), never written to disk.
//!
//! CPU is bounded: each preview uses one encoder thread and two decoder threads
//! ([`PreviewSettings`]), and only runs ahead of the client as far as the bounded
//! queues allow; at most [`MAX_PREVIEWS`] previews and [`MAX_THUMBS`]
//! thumbnails are made at once (a request waits a little for a free slot, then gets
//! 503). `cargo run --release -p viewer-api --example bench_preview` measures one.

pub mod live;
mod pipeline;
#[cfg(any(test, feature = "testing"))]
pub mod testclip;
mod thumb;
mod transcode;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::{debug, error, info};

use crate::api::{ApiError, Caller, Shared, blocking, lookup, parse_time, token_from};
use crate::clock::ms_from_90k;
use crate::clock::rfc3339;
use crate::playback::{FrameIndex, SourceError};
use crate::viewing;

pub use pipeline::fit;
pub use thumb::{THUMB_WIDTH, read_frame, thumbnail};
pub use transcode::{LEVEL, MIME, PROFILE, PreviewSettings, PreviewStats, transcode};

/// Previews made at once; more wait [`SLOT_WAIT`], then get 503.
pub const MAX_PREVIEWS: usize = 3;
/// Thumbnails made at once.
pub const MAX_THUMBS: usize = 2;
/// How long a request waits for a free slot.
const SLOT_WAIT: Duration = Duration::from_secs(5);
/// How often a running preview re-checks its session and the viewing's rights.
pub const RECHECK: Duration = Duration::from_secs(10);
/// A client that takes nothing for this long (a paused `<video>`) loses its preview
/// (and its slot); the console starts a new one with `?t=`. The footage streams'
/// rule ([`crate::streams::STALL`]).
pub const CLIENT_STALL: Duration = crate::streams::STALL;
/// Recent thumbnails kept in memory (a few KB each).
const THUMB_CACHE: usize = 256;

static PREVIEWS: Semaphore = Semaphore::const_new(MAX_PREVIEWS);
static THUMBS: Semaphore = Semaphore::const_new(MAX_THUMBS);

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("footage: {0}")]
    Source(#[from] SourceError),
    #[error("GStreamer: {0}")]
    Gst(String),
    #[error("MP4: {0}")]
    Mux(#[from] crate::mp4::MuxError),
    #[error("the decoder gave no picture")]
    NoPicture,
}

/// Initialises GStreamer (once per process; later calls are cheap).
pub fn init() -> Result<(), PreviewError> {
    gstreamer::init().map_err(pipeline::gst_err)
}

/// A frame of a [`FrameIndex`], and where it is: its chunk (`gop`, an index into
/// `index.gops`, for [`crate::playback::read_payload`]), its sample, its media time on
/// the viewing's MP4 timeline (90 kHz, first frame at 0) and its wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePos {
    pub gop: usize,
    /// The first sample of the chunk, and its media time.
    pub gop_first_sample: usize,
    pub gop_media_90k: i64,
    pub sample: usize,
    pub media_90k: i64,
    pub unix_ms: i64,
    pub key: bool,
}

/// Every frame of `index`, in order.
pub fn frames(index: &FrameIndex) -> Frames<'_> {
    Frames {
        index,
        gop: 0,
        gop_first: 0,
        gop_media: 0,
        sample: 0,
        media: 0,
    }
}

/// The iterator of [`frames`].
pub struct Frames<'a> {
    index: &'a FrameIndex,
    gop: usize,
    gop_first: usize,
    gop_media: i64,
    sample: usize,
    media: i64,
}

impl Iterator for Frames<'_> {
    type Item = FramePos;

    fn next(&mut self) -> Option<FramePos> {
        let ix = self.index;
        loop {
            let g = ix.gops.get(self.gop)?;
            if self.sample < (self.gop_first + g.frames).min(ix.samples.len()) {
                break;
            }
            if self.sample >= ix.samples.len() {
                return None;
            }
            self.gop += 1;
            self.gop_first = self.sample;
            self.gop_media = self.media;
        }
        let s = &ix.samples[self.sample];
        let p = FramePos {
            gop: self.gop,
            gop_first_sample: self.gop_first,
            gop_media_90k: self.gop_media,
            sample: self.sample,
            media_90k: self.media,
            unix_ms: ix
                .gop_unix_ms
                .get(self.gop)
                .copied()
                .unwrap_or(ix.first_unix_ms)
                + ms_from_90k(self.media - self.gop_media),
            key: s.key,
        };
        self.sample += 1;
        self.media += i64::from(s.duration_90k);
        Some(p)
    }
}

/// Media duration of `index` in ms (the viewing's MP4's length).
pub fn duration_ms(index: &FrameIndex) -> i64 {
    ms_from_90k(
        index
            .samples
            .iter()
            .map(|s| i64::from(s.duration_90k))
            .sum::<i64>(),
    )
}

/// The key frame at or before media time `media_ms` (the first frame when none is).
pub fn start_at(index: &FrameIndex, media_ms: i64) -> Option<FramePos> {
    let t = media_ms.saturating_mul(90);
    let mut found = None;
    for f in frames(index) {
        if found.is_some() && f.media_90k > t {
            break;
        }
        if f.key || found.is_none() {
            found = Some(f);
        }
    }
    found
}

/// The last key frame whose wall-clock time is at or before `at_unix_ms`.
pub fn key_frame_before(index: &FrameIndex, at_unix_ms: i64) -> Option<FramePos> {
    frames(index)
        .filter(|f| f.key && f.unix_ms <= at_unix_ms)
        .last()
}

/// The usual frame duration of `index` (the median of its first frames).
pub(crate) fn typical_duration_90k(index: &FrameIndex) -> u32 {
    let mut d: Vec<u32> = index
        .samples
        .iter()
        .take(251)
        .map(|s| s.duration_90k)
        .collect();
    d.sort_unstable();
    d.get(d.len() / 2).copied().unwrap_or(3_600).max(1)
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/v1/viewings/{id}/preview.mp4", get(preview))
        .route("/api/v1/viewings/{id}/thumb.jpg", get(thumb))
        .route("/api/v1/cameras/{id}/live-preview.mp4", get(live::serve))
        .layer(axum::middleware::map_response(crate::api::security_headers))
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewQuery {
    t: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThumbQuery {
    at: Option<String>,
}

fn busy(what: &str) -> Response {
    let mut r = axum::response::IntoResponse::into_response(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many {what} are being made; try again shortly"),
    ));
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    r
}

async fn slot(sem: &'static Semaphore) -> Option<SemaphorePermit<'static>> {
    tokio::time::timeout(SLOT_WAIT, sem.acquire())
        .await
        .ok()
        .and_then(|p| p.ok())
}

/// Whether the session behind `token` may still use viewing `id`.
fn still_allowed(state: &Shared, rt: &tokio::runtime::Handle, token: &str, id: &str) -> bool {
    match lookup(&state.users, token) {
        Ok(Some((session, principal))) => {
            let caller = Caller {
                principal,
                session,
                client: String::new(),
            };
            rt.block_on(viewing::find(state, &caller, id)).is_ok()
        }
        Ok(None) => false,
        Err(e) => {
            error!(error = %e, "cannot re-check a preview's session");
            false
        }
    }
}

/// `GET /viewings/{id}/preview.mp4[?t=MS]`.
async fn preview(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<PreviewQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let v = viewing::find(&state, &caller, &id).await?;
    let Query(q) = q.map_err(|r| ApiError::bad(format!("invalid query: {}", r.body_text())))?;
    let t = q.t.unwrap_or(0);
    let total = duration_ms(&v.index);
    if t < 0 || t >= total.max(1) {
        return Err(ApiError::bad(format!(
            "t must be a media time in ms inside the viewing: 0 to {}",
            total.max(1) - 1
        )));
    }
    let index = v.index.clone();
    let start = blocking(move || start_at(&index, t))
        .await?
        .ok_or_else(ApiError::internal)?;
    let token = token_from(&headers).ok_or_else(ApiError::internal)?;
    let stream = crate::api::stream_permit(&state, &caller)?;
    let Some(permit) = slot(&PREVIEWS).await else {
        return Ok(busy("previews"));
    };

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let rt = tokio::runtime::Handle::current();
    let st = state.clone();
    let vid = v.id.clone();
    let index = v.index.clone();
    let src = v.source.clone();
    // A thread of its own (the pipeline's puller), which waits on the channel while
    // the client does not read: not one of the runtime's blocking threads.
    let spawned = std::thread::Builder::new()
        .name("preview".into())
        .spawn(move || {
        let _permit = permit;
        let mut last_check = Instant::now();
        let mut revoked = false;
        let metrics = st.metrics.clone();
        let mut sink = |b: Bytes| {
            if last_check.elapsed() >= RECHECK {
                last_check = Instant::now();
                if !still_allowed(&st, &rt, &token, &vid) {
                    revoked = true;
                    return false;
                }
            }
            let len = b.len() as u64;
            // Ends when the stream is dropped (the client went or stalled).
            if tx.blocking_send(Ok(b)).is_ok() {
                metrics.footage_bytes.inc_by(len);
                true
            } else {
                false
            }
        };
        let settings = PreviewSettings::default();
        match transcode(src.as_ref(), &index, start, &settings, &mut sink) {
            Ok(s) => {
                if revoked {
                    info!(viewing = %vid, "preview stopped: the viewing is no longer allowed");
                }
                debug!(viewing = %vid, frames = s.frames_out, bytes = s.bytes, stopped = s.stopped, "preview ended");
            }
            Err(e) => {
                error!(viewing = %vid, error = %e, "preview failed");
                let _ = tx.blocking_send(Err(std::io::Error::other("preview failed")));
            }
        }
    });
    if let Err(e) = spawned {
        error!(error = %e, "cannot start a preview thread");
        return Err(ApiError::internal());
    }

    // The answer waits for the first bytes, so that a preview that cannot start is a
    // clear error, not an empty video.
    let first = match rx.recv().await {
        Some(Ok(b)) => b,
        _ => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the preview could not be made",
            ));
        }
    };
    let body =
        crate::streams::body_from_channel(stream, state.streams.limits().stall, Some(first), rx);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "video/mp4")
        .header(header::ACCEPT_RANGES, "none")
        .header("x-preview-start-ms", ms_from_90k(start.media_90k))
        .header(
            header::CONTENT_DISPOSITION,
            format!(
                "inline; filename=\"{}-{}-preview.mp4\"",
                v.camera,
                v.from_ms / 1000
            ),
        )
        .body(body)
        .map_err(|_| ApiError::internal())
}

/// Recent thumbnails: (viewing, sample) → JPEG.
static THUMB_CACHE_MAP: Mutex<VecDeque<(String, usize, Bytes)>> = Mutex::new(VecDeque::new());

fn cached_thumb(viewing: &str, sample: usize) -> Option<Bytes> {
    let c = THUMB_CACHE_MAP.lock().unwrap_or_else(|p| p.into_inner());
    c.iter()
        .find(|(v, s, _)| v == viewing && *s == sample)
        .map(|(_, _, b)| b.clone())
}

fn cache_thumb(viewing: &str, sample: usize, jpeg: Bytes) {
    let mut c = THUMB_CACHE_MAP.lock().unwrap_or_else(|p| p.into_inner());
    if c.len() >= THUMB_CACHE {
        c.pop_front();
    }
    c.push_back((viewing.to_string(), sample, jpeg));
}

/// `GET /viewings/{id}/thumb.jpg?at=T`.
async fn thumb(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<ThumbQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let v = viewing::find(&state, &caller, &id).await?;
    let Query(q) = q.map_err(|r| ApiError::bad(format!("invalid query: {}", r.body_text())))?;
    let at = parse_time("at", q.at.as_deref())?;
    if at < v.from_ms || at > v.to_ms {
        return Err(ApiError::bad(format!(
            "at must be inside the viewing: {} to {}",
            rfc3339(v.from_ms),
            rfc3339(v.to_ms)
        )));
    }
    let index = v.index.clone();
    let pos = blocking(move || key_frame_before(&index, at))
        .await?
        .ok_or_else(|| ApiError::not_found("no key frame at or before this moment"))?;
    let jpeg = match cached_thumb(&v.id, pos.sample) {
        Some(j) => j,
        None => {
            let Some(permit) = slot(&THUMBS).await else {
                return Ok(busy("thumbnails"));
            };
            let vv = v.clone();
            let made = blocking(move || {
                let _permit = permit;
                let frame = read_frame(vv.source.as_ref(), &vv.index, pos)?;
                thumbnail(&vv.index.params, &frame, THUMB_WIDTH)
            })
            .await?;
            let jpeg = match made {
                Ok(j) => Bytes::from(j),
                Err(PreviewError::Source(e)) => return Err(e.into()),
                Err(e) => {
                    error!(viewing = %v.id, error = %e, "thumbnail failed");
                    return Err(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the thumbnail could not be made",
                    ));
                }
            };
            cache_thumb(&v.id, pos.sample, jpeg.clone());
            jpeg
        }
    };
    state.metrics.footage_bytes.inc_by(jpeg.len() as u64);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "image/jpeg")
        .header(header::CONTENT_LENGTH, jpeg.len())
        .header("x-frame-time", rfc3339(pos.unix_ms))
        .header("x-media-ms", ms_from_90k(pos.media_90k))
        .body(Body::from(jpeg))
        .map_err(|_| ApiError::internal())
}

#[cfg(test)]
mod tests;

//! Live view as an H.264 preview, for browsers that cannot decode the camera's codec
//! (Debian's Chromium and H.265).
//!
//! `GET /api/v1/cameras/{id}/live-preview.mp4?case=|purpose=` is `live.mp4` (see
//! [`crate::live`]) transcoded on the fly: the same chunks, tailed from the segment
//! being written by the same [`Tailer`] from the newest key frame on, decoded, scaled
//! to at most 640×360 and encoded again by the preview's pipeline
//! ([`super::transcode`]: x264 ultrafast, zerolatency, constrained baseline, level 3.1,
//! [`super::MIME`]), as a fragmented MP4 streamed while it is made.
//!
//! * **The same rules as `live.mp4`**: the same checks ([`check_live`]: a case
//!   reference for the police, a purpose for the others, [`Action::Live`] through
//!   `authorize`; no auditors; a contractor needs a live grant), logged as action
//!   `live` before the first byte (the outcome says `H.264 preview`, so the
//!   subject-access report lists it as the live view it is), refusals too; a `live.end`
//!   entry with the wall-clock range of the frames sent when it ends; the session and
//!   the rights checked again every [`LIVE_RECHECK`] (a revoked grant or an ended
//!   session stops it at once, frames already encoded included); it ends when the
//!   client goes away, or takes nothing for 30 s: it is a footage stream
//!   ([`crate::streams`]), counted against the caller's and the device's streams at
//!   once (429 beyond, logged as refused). The transcoder runs on a thread of its own
//!   (not the async runtime's blocking pool), behind a bounded channel: a client that
//!   stops reading stops the pipeline, which holds nothing but its bounded queues.
//! * **Timeline**: one fragment per stored chunk (so a chunk's frames leave as soon as
//!   they are encoded; the first frame alone first, to start fast), on one continuous
//!   media timeline from 0 ([`Timeline`], as `live.mp4`'s). Each fragment's `prft`
//!   carries the wall-clock time of its first frame, so
//!   the console shows the latency as it does for `live.mp4`.
//! * **Latency**: the decoder uses slice threads only (frame threads would hold a
//!   picture back until the next chunk is stored, ~0.5 s) and x264 has no look-ahead
//!   and no B-frames, so a chunk leaves as soon as it is transcoded.
//! * **Cost**: it takes one of the [`super::MAX_PREVIEWS`] preview slots for as long
//!   as it runs (503 with `Retry-After` when none is free after a short wait; the
//!   refusal is logged).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use tracing::{debug, error, info};

use crate::api::{
    ApiError, Caller, LIVE_RECHECK, LiveQuery, Shared, check_live, live_decision, lookup,
    token_from,
};
use crate::audit::NewEntry;
use crate::live::{LiveEnd, POLL, Tailed, Tailer, Timeline};
use crate::playback::{FootageSource, GopData, frame_unix_ms};
use crate::policy::Action;

use super::transcode::{self, FrameMeta};
use super::{PREVIEWS, PreviewError, PreviewSettings, PreviewStats, slot};

/// What the access log says of a live preview, besides the outcome.
const NOTE: &str = "H.264 preview";

/// How live previews run. The server uses the defaults; a router may carry others as an
/// [`Extension`] (tests: a short `recheck`).
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// How often the session and the rights are checked again.
    pub recheck: Duration,
    /// How often the store is looked at while waiting for the next chunk.
    pub poll: Duration,
    pub preview: PreviewSettings,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            recheck: LIVE_RECHECK,
            poll: POLL,
            preview: PreviewSettings::default(),
        }
    }
}

/// Everything a live preview needs from its caller.
pub struct LivePreviewCtx<'a> {
    pub src: Arc<dyn FootageSource>,
    pub camera: &'a str,
    /// The wall clock.
    pub now_ms: &'a dyn Fn() -> i64,
    /// Asked before every read and every wait (on the reading thread); `false` ends
    /// the view.
    pub keep_going: &'a mut (dyn FnMut() -> bool + Send),
    /// Takes the stream's bytes; `false` when the client is gone.
    pub sink: &'a mut dyn FnMut(Bytes) -> bool,
    pub poll: Duration,
    pub settings: &'a PreviewSettings,
}

/// How a live preview ended and what it sent (`stats.first_unix_ms` and
/// `last_unix_ms`: the wall-clock range shown).
#[derive(Debug, Clone)]
pub struct LivePreviewSummary {
    pub end: LiveEnd,
    pub stats: PreviewStats,
}

/// The usual step between frames of `chunks` (the median), 25 fps when unknown.
fn typical_step_90k<'g>(chunks: impl Iterator<Item = &'g GopData>) -> u32 {
    let mut steps: Vec<i64> = chunks
        .flat_map(|g| g.frames.windows(2).map(|w| w[1].pts_90k - w[0].pts_90k))
        .filter(|s| crate::playback::frame_step::plausible(*s))
        .collect();
    steps.sort_unstable();
    steps
        .get(steps.len() / 2)
        .map_or(crate::playback::frame_step::DEFAULT_90K, |&s| s) as u32
}

/// Runs one live preview until the client goes away, `keep_going` says stop, or the
/// codec parameters change: the camera's chunks as they are stored, transcoded, handed
/// to `sink` (the initialization segment, then a fragment per chunk). Blocking: run it
/// on a blocking thread.
pub fn transcode_live(ctx: LivePreviewCtx<'_>) -> Result<LivePreviewSummary, PreviewError> {
    let LivePreviewCtx {
        src,
        camera,
        now_ms,
        keep_going,
        sink,
        poll,
        settings,
    } = ctx;
    let began = Instant::now();
    let mut end = LiveEnd::Stopped;
    // Wait for the camera to be recording.
    let mut tailer = Tailer::new(src, camera);
    loop {
        if !keep_going() {
            return Ok(LivePreviewSummary {
                end,
                stats: PreviewStats::default(),
            });
        }
        if tailer.start(now_ms())? {
            break;
        }
        std::thread::sleep(poll);
    }
    let params = tailer.params().expect("started").clone();
    let typical = typical_step_90k(tailer.backlog());
    let stats = transcode::encode(
        &params,
        typical,
        settings,
        true,
        began,
        |feeder| {
            let mut timeline = Timeline::new();
            let mut pushed = 0u64;
            loop {
                if feeder.stopped() || !keep_going() {
                    return Ok(pushed);
                }
                let gop = match tailer.poll()? {
                    Tailed::Chunk(g) => g,
                    Tailed::Pending => {
                        std::thread::sleep(poll);
                        continue;
                    }
                    Tailed::ParamsChanged => {
                        end = LiveEnd::ParamsChanged;
                        return Ok(pushed);
                    }
                };
                let times = timeline.place(&gop);
                let durations = timeline.durations(&times);
                let last = gop.frames.len() - 1;
                let walls: Vec<i64> = gop
                    .frames
                    .iter()
                    .map(|f| frame_unix_ms(&gop, f.pts_90k))
                    .collect();
                for (i, f) in gop.frames.into_iter().enumerate() {
                    let meta = FrameMeta {
                        media_90k: times[i],
                        duration_90k: durations[i],
                        unix_ms: walls[i],
                        ends_fragment: i == last,
                    };
                    if !feeder.push(f.data, f.key, meta) {
                        return Ok(pushed);
                    }
                    pushed += 1;
                }
            }
        },
        sink,
    )?;
    Ok(LivePreviewSummary { end, stats })
}

/// Writes the decision on a live preview to the access log (action `live`, the
/// outcome naming the preview) and its metric, before anything else happens.
async fn log_decision<T>(
    state: &Shared,
    entry: &mut NewEntry,
    checked: &Result<T, ApiError>,
) -> Result<std::sync::Arc<dyn crate::playback::FootageSource>, ApiError> {
    crate::api::log_footage_noted(state, entry, checked, Some(NOTE)).await
}

/// `GET /cameras/{id}/live-preview.mp4`: `live.mp4` transcoded to H.264 (see the
/// module's documentation).
pub(super) async fn serve(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<LiveQuery>, QueryRejection>,
    settings: Option<Extension<LiveSettings>>,
) -> Result<Response, ApiError> {
    let settings = settings.map(|Extension(s)| s).unwrap_or_default();
    let mut entry = caller.entry(Action::Live.as_str());
    // The policy, a place among the footage streams, then a preview slot; any refusal
    // is logged as such.
    let mut checked = check_live(&state, &caller, &id, &q, &mut entry)
        .await
        .and_then(|()| crate::api::stream_permit(&state, &caller));
    let permit = match checked {
        Ok(_) => slot(&PREVIEWS).await,
        Err(_) => None,
    };
    let busy = checked.is_ok() && permit.is_none();
    if busy {
        checked = Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many previews are being made",
        ));
    }
    let src = log_decision(&state, &mut entry, &checked).await?;
    if busy {
        return Ok(super::busy("previews"));
    }
    let stream = checked?;
    let (Ok(Query(q)), Some(permit)) = (q, permit) else {
        return Err(ApiError::internal());
    };
    let token = token_from(&headers).ok_or_else(ApiError::internal)?;

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let st = state.clone();
    let camera = id.clone();
    // A thread of its own: it waits on the channel while the client does not read.
    let spawned = std::thread::Builder::new()
        .name("live-preview".into())
        .spawn(move || {
        let _permit = permit;
        let revoked = AtomicBool::new(false);
        let mut last_check = Instant::now();
        let closed = tx.clone();
        let mut keep_going = || {
            if closed.is_closed() || revoked.load(Ordering::Relaxed) {
                return false;
            }
            if last_check.elapsed() >= settings.recheck {
                last_check = Instant::now();
                let still = match lookup(&st.users, &token) {
                    Ok(Some((_, p))) => live_decision(&st, &p, &camera, &q).is_allowed(),
                    Ok(None) => false,
                    Err(e) => {
                        error!(error = %e, "cannot re-check a live preview's session");
                        false
                    }
                };
                if !still {
                    revoked.store(true, Ordering::Relaxed);
                    return false;
                }
            }
            true
        };
        let metrics = st.metrics.clone();
        let mut sink = |b: Bytes| {
            // Nothing more once the rights are gone, not even frames being encoded.
            if revoked.load(Ordering::Relaxed) {
                return false;
            }
            let len = b.len() as u64;
            // Fails once the stream is dropped (the client went, or stalled).
            if tx.blocking_send(Ok(b)).is_ok() {
                metrics.footage_bytes.inc_by(len);
                true
            } else {
                false
            }
        };
        let now = || st.clock.now_unix_ms();
        let r = transcode_live(LivePreviewCtx {
            src,
            camera: &camera,
            now_ms: &now,
            keep_going: &mut keep_going,
            sink: &mut sink,
            poll: settings.poll,
            settings: &settings.preview,
        });
        let revoked = revoked.load(Ordering::Relaxed);
        let how = match &r {
            Ok(s) if s.end == LiveEnd::ParamsChanged => "ended: codec parameters changed",
            Ok(_) if revoked => "ended: session ended or rights withdrawn",
            Ok(_) => "ended by the client",
            Err(PreviewError::Source(_)) => "ended: store error",
            Err(_) => "ended: transcoding failed",
        };
        match &r {
            Ok(s) => {
                if revoked {
                    info!(camera = %camera, "live preview stopped: the session or the rights ended");
                }
                debug!(camera = %camera, frames = s.stats.frames_out, bytes = s.stats.bytes, "live preview ended");
            }
            Err(e) => {
                error!(camera = %camera, error = %e, "live preview failed");
                let _ = tx.blocking_send(Err(std::io::Error::other("live preview failed")));
            }
        }
        let (first, last) = match &r {
            Ok(s) => (s.stats.first_unix_ms, s.stats.last_unix_ms),
            Err(_) => (None, None),
        };
        let end = NewEntry {
            action: "live.end".into(),
            from_ms: first.or(entry.from_ms),
            to_ms: last.or(first).or(entry.from_ms),
            outcome: format!("allowed; {NOTE}; {how}"),
            ..entry
        };
        if let Err(e) = st.audit.append(end) {
            error!(error = %e, "cannot log the end of a live preview");
            st.metrics.audit_failures.inc();
        }
    });
    if let Err(e) = spawned {
        error!(error = %e, "cannot start a live preview thread");
        return Err(ApiError::internal());
    }
    let body = crate::streams::body_from_channel(stream, state.streams.limits().stall, None, rx);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, super::MIME)
        .header(
            header::CONTENT_DISPOSITION,
            format!("inline; filename=\"{id}-live-preview.mp4\""),
        )
        .body(body)
        .map_err(|_| ApiError::internal())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playback::FrameData;

    #[test]
    fn typical_step_is_the_median_of_the_backlog() {
        let g = |pts: &[i64]| GopData {
            start_unix_ms: 0,
            frames: pts
                .iter()
                .map(|&p| FrameData {
                    pts_90k: p,
                    key: false,
                    data: vec![],
                })
                .collect(),
        };
        assert_eq!(typical_step_90k([].iter()), 3_600);
        assert_eq!(typical_step_90k([g(&[0])].iter()), 3_600);
        let chunks = [
            g(&[0, 3000, 6000, 9000]),
            g(&[9000 + 3000, 9000 + 6000, 1_000_000]),
        ];
        assert_eq!(typical_step_90k(chunks.iter()), 3000);
    }
}

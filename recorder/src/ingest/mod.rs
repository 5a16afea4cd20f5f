//! RTSP ingest: one task per camera, from retina's depacketised frames to GOPs for
//! the camera's writer. Nothing is decoded. A camera that fails is retried forever
//! with capped, jittered backoff (so a site full of cameras that come back together
//! after a power cut do not all retry in step), and every interruption reaches the
//! writer as a gap with its reason.

use std::sync::Arc;
use std::sync::mpsc::TrySendError;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use retina::client::{
    Credentials, PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions,
    TcpTransportOptions, Transport, UdpTransportOptions,
};
use retina::codec::{CodecItem, ParametersRef};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::clock::{Clock, MediaClock, ms_from_90k};
use crate::config::{self, CameraConfig};
use crate::metrics::Metrics;
use crate::segment::{Codec, CodecParams, Frame, Gop};
use crate::writer::{WriterMsg, WriterTx};

pub mod rounds;

/// Frames in hand are handed to the writer at least this often (media time), even in
/// the middle of a long GOP: it bounds what a crash loses and how late live view is.
pub const CHUNK_FLUSH_90K: i64 = 45_000;

/// ... or as soon as they hold this many bytes: what a camera's frames in hand cost in
/// memory stays bounded whatever its bitrate (at 16 cameras the frames in hand were
/// most of the recorder's peak memory). Below 3 Mbit/s the half second comes first.
pub const CHUNK_FLUSH_BYTES: usize = 192 * 1024;

/// Whether the frames in hand, spanning `span_90k` of media time and holding
/// `in_hand_bytes`, go to the writer now rather than with the next key frame.
fn hand_over_now(span_90k: i64, in_hand_bytes: usize) -> bool {
    span_90k >= CHUNK_FLUSH_90K || in_hand_bytes >= CHUNK_FLUSH_BYTES
}

/// The wall-clock time of a chunk whose first frame the camera's clock puts at
/// `frame_unix_ms`, when the chunk before it ended with a frame at `prev_last_unix_ms`.
/// Chunks never overlap when the [`MediaClock`] only corrected its estimate (by at most
/// a frame's delay): footage time goes forward frame by frame, so an export's bounds
/// and a player's clock agree with the store. A larger step back is the wall clock set
/// back, and is kept.
fn chunk_start_unix_ms(frame_unix_ms: i64, prev_last_unix_ms: Option<i64>) -> i64 {
    match prev_last_unix_ms {
        Some(last) if frame_unix_ms <= last && last - frame_unix_ms < 1000 => last + 1,
        _ => frame_unix_ms,
    }
}

/// No frame for this long: the camera is treated as offline.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Exponential backoff with jitter, capped at 30 s. `attempt` counts failures in a row
/// from 0; `jitter` in [0, 1) spreads the delay over ±25%.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    const BASE_MS: f64 = 500.0;
    const CAP_MS: f64 = 30_000.0;
    let exp = BASE_MS * 2f64.powi(attempt.min(16) as i32);
    let ms = exp.min(CAP_MS) * (0.75 + 0.5 * jitter.clamp(0.0, 0.999_999));
    Duration::from_millis(ms.min(CAP_MS) as u64)
}

/// Called on every camera state change: (camera, state, reason).
pub type StateFn = Arc<dyn Fn(&str, &str, Option<&str>) + Send + Sync>;

pub struct CameraTask {
    pub camera: CameraConfig,
    pub tx: WriterTx,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub session_group: Arc<SessionGroup>,
    pub state: StateFn,
}

impl CameraTask {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let id = self.camera.id.clone();
        let mut attempt = 0u32;
        loop {
            (self.state)(&id, "connecting", None);
            let mut recorded_frames = 0u64;
            let result = self.session(&mut recorded_frames, &shutdown).await;
            if *shutdown.borrow() {
                break;
            }
            let reason = match result {
                Ok(()) => "camera ended the stream".to_string(),
                Err(e) => e.to_string(),
            };
            self.metrics
                .reconnects
                .get_or_create(&Metrics::cam(&id))
                .inc();
            if recorded_frames > 0 {
                attempt = 0;
            }
            let delay = backoff(attempt, rand::rng().random());
            attempt = attempt.saturating_add(1);
            warn!(camera = %id, reason = %reason, retry_in_ms = delay.as_millis() as u64, "camera offline");
            (self.state)(&id, "offline", Some(&reason));
            let offline = WriterMsg::Offline {
                at_unix_ms: self.clock.now_unix_ms(),
                reason: reason.clone(),
            };
            if !send_waiting(&self.tx, offline, &mut shutdown).await {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => break,
            }
        }
    }

    /// One RTSP session, until it fails or shutdown is asked. Errors are already
    /// redacted (the URL never carries credentials: config refuses them). Shutdown is
    /// watched at every await inside, never by cancelling this future from outside,
    /// so the frames in hand are always handed to the writer.
    async fn session(
        &self,
        recorded_frames: &mut u64,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), SessionError> {
        let mut stop = shutdown.clone();
        macro_rules! or_stop {
            ($fut:expr) => {
                tokio::select! {
                    r = $fut => r,
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                }
            };
        }
        let cam = &self.camera;
        let url = config::camera_url(cam);
        let creds = match &cam.username {
            Some(u) => Some(Credentials {
                username: u.clone(),
                password: cam
                    .resolve_password()
                    .map_err(|e| SessionError::Password(e.to_string()))?
                    .unwrap_or_default(),
            }),
            None => None,
        };
        let opts = SessionOptions::default()
            .creds(creds)
            .user_agent(format!("ringfence/{}", env!("CARGO_PKG_VERSION")))
            .session_group(self.session_group.clone());
        let mut session = or_stop!(tokio::time::timeout(
            CONNECT_TIMEOUT,
            Session::describe(url.clone(), opts)
        ))
        .map_err(|_| SessionError::NoAnswer("DESCRIBE"))?
        .map_err(|e| describe_error(&e))?;
        let stream_i = session
            .streams()
            .iter()
            .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"))
            .ok_or(SessionError::NoVideoStream)?;
        let transport = match cam.transport {
            config::Transport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            config::Transport::Udp => Transport::Udp(UdpTransportOptions::default()),
        };
        or_stop!(tokio::time::timeout(
            CONNECT_TIMEOUT,
            session.setup(stream_i, SetupOptions::default().transport(transport)),
        ))
        .map_err(|_| SessionError::NoAnswer("SETUP"))?
        .map_err(|e| SessionError::Failed("SETUP", e.to_string()))?;
        let playing = or_stop!(tokio::time::timeout(
            CONNECT_TIMEOUT,
            session.play(PlayOptions::default())
        ))
        .map_err(|_| SessionError::NoAnswer("PLAY"))?
        .map_err(|e| SessionError::Failed("PLAY", e.to_string()))?;
        let mut demuxed = playing
            .demuxed()
            .map_err(|e| SessionError::Stream(e.to_string()))?;
        info!(camera = %cam.id, "camera connected");

        let label = Metrics::cam(&cam.id);
        let frames_c = self.metrics.frames.get_or_create(&label).clone();
        let key_c = self.metrics.key_frames.get_or_create(&label).clone();
        let bytes_c = self.metrics.bytes_received.get_or_create(&label).clone();
        let dropped_c = self.metrics.frames_dropped.get_or_create(&label).clone();
        let mut params: Option<Arc<CodecParams>> = None;
        let mut gop: Option<Gop> = None;
        let mut media_clock = MediaClock::default();
        // The wall-clock time of the last frame put in a chunk.
        let mut last_frame_unix_ms: Option<i64> = None;
        // The bytes of the frames in `gop`.
        let mut in_hand_bytes = 0usize;
        let mut announced = false;
        // One ticking timer for the silence check, rather than a timer armed per frame.
        let mut silence_check = tokio::time::interval(Duration::from_secs(1));
        silence_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_video = tokio::time::Instant::now();
        let result = loop {
            let next = tokio::select! {
                n = demuxed.next() => n,
                _ = silence_check.tick() => {
                    let silent_for = last_video.elapsed();
                    if silent_for >= FRAME_TIMEOUT {
                        break Err(SessionError::Silent);
                    }
                    continue;
                }
                _ = stop.wait_for(|s| *s) => break Ok(()),
            };
            let item = match next {
                None => break Err(SessionError::Closed),
                Some(Err(e)) => break Err(SessionError::Stream(e.to_string())),
                Some(Ok(item)) => item,
            };
            let CodecItem::VideoFrame(frame) = item else {
                continue;
            };
            if frame.stream_id() != stream_i {
                continue;
            }
            last_video = tokio::time::Instant::now();
            let pts_90k = frame.timestamp().timestamp();
            let frame_unix_ms = media_clock.frame_unix_ms(pts_90k, self.clock.now_unix_ms());
            bytes_c.inc_by(frame.data().len() as u64);
            let key = frame.is_random_access_point();
            if frame.has_new_parameters() || params.is_none() {
                let new = stream_params(&demuxed.streams()[stream_i])?;
                if params.as_deref() != Some(&new) {
                    // Parameters changed: what was collected belongs to the old ones.
                    if let (Some(p), Some(g)) = (params.take(), gop.take()) {
                        self.send(p, g, &dropped_c);
                    }
                    params = Some(Arc::new(new));
                }
            }
            if key
                && let (Some(p), Some(g)) = (&params, gop.take())
                && !g.frames.is_empty()
            {
                self.send(p.clone(), g, &dropped_c);
            }
            if gop.is_none() {
                if !key {
                    continue; // before the first key frame: nothing to decode from
                }
                gop = Some(Gop {
                    start_unix_ms: 0,
                    frames: Vec::with_capacity(64),
                });
            }
            frames_c.inc();
            if key {
                key_c.inc();
            }
            let g = gop.as_mut().expect("set above");
            if g.frames.is_empty() {
                g.start_unix_ms = chunk_start_unix_ms(frame_unix_ms, last_frame_unix_ms);
                in_hand_bytes = 0;
            }
            let chunk_first_90k = g.frames.first().map_or(pts_90k, |f| f.pts_90k);
            last_frame_unix_ms = Some(g.start_unix_ms + ms_from_90k(pts_90k - chunk_first_90k));
            in_hand_bytes += frame.data().len();
            g.frames.push(Frame {
                pts_90k,
                key,
                data: frame.into_data(),
            });
            if hand_over_now(pts_90k - g.frames[0].pts_90k, in_hand_bytes)
                && let (Some(p), Some(full)) = (
                    &params,
                    gop.replace(Gop {
                        start_unix_ms: 0,
                        frames: Vec::with_capacity(64),
                    }),
                )
            {
                self.send(p.clone(), full, &dropped_c);
            }
            *recorded_frames += 1;
            if !announced {
                announced = true;
                (self.state)(&cam.id, "recording", None);
            }
        };
        tracing::debug!(camera = %cam.id, frames = gop.as_ref().map_or(0, |g| g.frames.len()), "session ended; writing the frames in hand");
        if let (Some(p), Some(g)) = (params, gop)
            && !g.frames.is_empty()
        {
            self.send(p, g, &dropped_c);
        }
        result
    }

    fn send(
        &self,
        params: Arc<CodecParams>,
        gop: Gop,
        dropped: &prometheus_client::metrics::counter::Counter,
    ) {
        let n = gop.frames.len() as u64;
        match self.tx.try_send(WriterMsg::Gop { params, gop }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                dropped.inc_by(n);
                warn!(camera = %self.camera.id, frames = n, "writer is behind; GOP dropped");
            }
            Err(TrySendError::Disconnected(_)) => {
                dropped.inc_by(n);
            }
        }
    }
}

/// How often a message that found the writer's queue full is offered again.
const RETRY_FULL_QUEUE: Duration = Duration::from_millis(20);

/// Hands `msg` to the writer, waiting while its queue is full (without blocking the
/// runtime's one thread: the other cameras go on): an interruption must never go
/// unrecorded, unlike a GOP, which is dropped and counted when the writer is behind.
/// False when shutdown came first or the writer is gone.
async fn send_waiting(
    tx: &WriterTx,
    mut msg: WriterMsg,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        match tx.try_send(msg) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(m)) => {
                msg = m;
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_FULL_QUEUE) => {}
                    _ = shutdown.changed() => return false,
                }
            }
        }
    }
}

/// Why DESCRIBE failed, from the RTSP status when the camera answered one: a camera
/// that refuses the credentials must read differently from one that is unreachable.
fn describe_error(e: &retina::Error) -> SessionError {
    match e.status_code() {
        Some(401) => SessionError::Unauthorized(e.to_string()),
        Some(code) => SessionError::Status(code, e.to_string()),
        None => SessionError::Unreachable(e.to_string()),
    }
}

/// Why a camera session ended; its text is the reason shown in the camera's state and
/// gap (never a credential: camera URLs carry none, the config refuses them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("camera password: {0}")]
    Password(String),
    #[error("camera refused the credentials (401 Unauthorized): {0}")]
    Unauthorized(String),
    #[error("camera answered RTSP status {0}: {1}")]
    Status(u16, String),
    #[error("cannot reach camera: {0}")]
    Unreachable(String),
    #[error("no answer to {0} within 10 s")]
    NoAnswer(&'static str),
    #[error("{0} failed: {1}")]
    Failed(&'static str, String),
    #[error("the camera offers no H.264 or H.265 video stream")]
    NoVideoStream,
    #[error("the video stream has no usable parameters")]
    NoParameters,
    #[error("unsupported codec {0}")]
    UnsupportedCodec(String),
    #[error("no video received for 10 s")]
    Silent,
    #[error("the camera closed the session")]
    Closed,
    #[error("stream error: {0}")]
    Stream(String),
}

fn stream_params(stream: &retina::client::Stream) -> Result<CodecParams, SessionError> {
    let Some(ParametersRef::Video(v)) = stream.parameters() else {
        return Err(SessionError::NoParameters);
    };
    let codec = match stream.encoding_name() {
        "h264" => Codec::H264,
        "h265" => Codec::H265,
        other => return Err(SessionError::UnsupportedCodec(other.to_string())),
    };
    let (width, height) = v.pixel_dimensions();
    Ok(CodecParams {
        codec,
        extra_data: v.extra_data().to_vec(),
        width,
        height,
        rfc6381: v.rfc6381_codec().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames in hand are bounded in time (what a crash loses) and in bytes (what a
    /// high-bitrate camera costs in memory), whichever comes first.
    #[test]
    fn frames_in_hand_are_bounded_in_time_and_in_bytes() {
        // 2 Mbit/s: 0.4 s is about 100 KB, kept until the half second.
        assert!(!hand_over_now(36_000, 100_000));
        assert!(hand_over_now(45_000, 125_000));
        // 8 Mbit/s: 192 KiB are reached after about 0.2 s.
        assert!(!hand_over_now(18_000, 180_000));
        assert!(hand_over_now(18_000, 200_000));
        // One key frame larger than the bound is handed over alone.
        assert!(hand_over_now(0, 400_000));
    }

    /// Chunks follow one another in footage time when the clock's estimate only moved
    /// back by a frame's delay; a wall clock set back is kept.
    #[test]
    fn chunks_never_overlap_but_a_clock_set_back_shows() {
        assert_eq!(chunk_start_unix_ms(5_000, None), 5_000);
        assert_eq!(chunk_start_unix_ms(5_040, Some(5_000)), 5_040);
        // The estimate moved back 70 ms: the chunk starts just after the last frame.
        assert_eq!(chunk_start_unix_ms(4_970, Some(5_000)), 5_001);
        assert_eq!(chunk_start_unix_ms(5_000, Some(5_000)), 5_001);
        // The wall clock was set back an hour.
        assert_eq!(
            chunk_start_unix_ms(5_000 - 3_600_000, Some(5_000)),
            5_000 - 3_600_000
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        assert_eq!(backoff(0, 0.5), Duration::from_millis(500));
        assert_eq!(backoff(1, 0.5), Duration::from_millis(1000));
        assert_eq!(backoff(3, 0.5), Duration::from_millis(4000));
        for attempt in [6, 7, 20, u32::MAX] {
            for j in [0.0, 0.5, 0.999] {
                assert!(backoff(attempt, j) <= Duration::from_secs(30));
            }
        }
        assert_eq!(backoff(10, 0.999), Duration::from_secs(30));
        assert!(backoff(10, 0.0) >= Duration::from_millis(22_500));
        assert!(backoff(2, 0.0) < backoff(2, 0.99));
    }

    /// An interruption reported while the writer's queue is full waits for room
    /// instead of being lost (issue 10): it arrives after the GOPs ahead of it.
    #[tokio::test(start_paused = true)]
    async fn an_offline_report_waits_for_a_full_queue() {
        let (tx, rx) = crate::writer::queue(1, 1);
        let tx = tx.into_iter().next().unwrap();
        let (_stop_tx, mut stop) = watch::channel(false);
        tx.try_send(WriterMsg::Offline {
            at_unix_ms: 1,
            reason: "ahead".into(),
        })
        .unwrap();
        let sender = tokio::spawn(async move {
            let msg = WriterMsg::Offline {
                at_unix_ms: 2,
                reason: "camera closed the session".into(),
            };
            send_waiting(&tx, msg, &mut stop).await
        });
        tokio::time::sleep(RETRY_FULL_QUEUE * 10).await;
        assert!(!sender.is_finished(), "the queue is still full");
        let (_, first) = rx.try_recv().unwrap();
        assert!(matches!(first, WriterMsg::Offline { at_unix_ms: 1, .. }));
        assert!(sender.await.unwrap());
        let (_, second) = rx.try_recv().unwrap();
        assert!(matches!(second, WriterMsg::Offline { at_unix_ms: 2, .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_wait() {
        let (tx, _rx) = crate::writer::queue(1, 0);
        let tx = tx.into_iter().next().unwrap();
        let (stop_tx, mut stop) = watch::channel(false);
        let sender = tokio::spawn(async move {
            let msg = WriterMsg::Offline {
                at_unix_ms: 2,
                reason: "x".into(),
            };
            send_waiting(&tx, msg, &mut stop).await
        });
        tokio::time::sleep(RETRY_FULL_QUEUE * 3).await;
        stop_tx.send(true).unwrap();
        assert!(!sender.await.unwrap());
    }
}

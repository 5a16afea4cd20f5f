//! The preview transcoder: a viewing's frames (or a live view's, [`super::live`]),
//! decoded, scaled to at most 640×360 and encoded again as H.264, streamed as a
//! fragmented MP4 while it is produced.
//!
//! ```text
//! reader thread:  read_payload (or the live view's chunks) → appsrc
//! GStreamer:      appsrc → h26Xparse → avdec_h26X → videoscale → videoconvert → I420 w×h
//!                 → x264enc (ultrafast, zerolatency, constrained baseline) → appsink
//! calling thread: appsink → ftyp+moov, then prft+moof+mdat per fragment → sink
//! ```
//!
//! The MP4 boxes are written here with the code base's one MP4 writer
//! ([`crate::mp4::init_segment`], [`crate::mp4::fragment_header`], as the live view
//! does) rather than by `mp4mux`: each frame's media time is taken from the viewing's
//! frame index, not from what the encoder's clock made of it, so the preview keeps the
//! timeline of the viewing's original MP4 exactly (first frame at 0, the same `Sample`
//! durations, also after a gap), and a preview started at `?t=` has its first fragment
//! at that key frame's media time (`tfdt`), so `currentTime` means the same thing in
//! both. Each `prft` carries the wall-clock time of the fragment's first frame.
//!
//! A live view ([`encode`] with `live`) differs in three ways: the decoder uses slice
//! threads only (frame threads would hold a frame back until the next one arrives,
//! i.e. until the recorder stores its next chunk), each source chunk ends a fragment
//! (so its frames leave as soon as they are encoded), and waiting for frames is not a
//! stall (the camera may pause).
//!
//! Memory is bounded: the appsrc queue (a few MB), the appsink queue (8 encoded
//! frames) and one fragment (at most [`PreviewSettings::fragment_ms`] of 640×360 H.264)
//! are all that is held; a sink that stops taking (the client went away) stops the
//! pipeline, which also releases the reader thread.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tracing::warn;

use crate::clock::{ms_from_90k, ticks_90k_from_ms};
use crate::mp4::{self, Sample, TrackParams, VideoCodec};
use crate::playback::{self, FootageSource, FrameIndex, SourceError};

use super::pipeline::{self, Stopper, gst_err, make, ns_of_90k};
use super::{FramePos, PreviewError};

/// The H.264 profile and level of every preview (the caps asked of x264enc). Level 3.1
/// covers 640×360 up to 60 frames per second.
pub const PROFILE: &str = "constrained-baseline";
pub const LEVEL: &str = "3.1";
/// The MIME type of a preview, with its RFC 6381 codec string, as
/// `HTMLMediaElement.canPlayType` takes it: H.264 constrained baseline, level 3.1.
pub const MIME: &str = "video/mp4; codecs=\"avc1.42C01F\"";

/// How previews are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewSettings {
    /// The picture fits in this box, keeping its aspect; never enlarged.
    pub max_width: u32,
    pub max_height: u32,
    /// x264's (constant) bit rate, kbit/s.
    pub bitrate_kbps: u32,
    /// Threads for x264 and for the decoder (each; both bound the CPU one preview
    /// takes).
    pub encode_threads: u32,
    pub decode_threads: u32,
    /// A fragment holds at most this much media time (it also ends before each key
    /// frame); the first fragment is the first frame alone, to start fast.
    pub fragment_ms: u32,
    /// Without an encoded frame for this long, the preview is abandoned as stalled.
    pub stall: Duration,
}

impl Default for PreviewSettings {
    fn default() -> Self {
        PreviewSettings {
            max_width: 640,
            max_height: 360,
            bitrate_kbps: 800,
            encode_threads: 1,
            // Two: H.265 decodes about a quarter faster than with one, for about
            // the same CPU time (bench_preview, on a loaded 2-core x86), which
            // matters for 1080p cameras on the small ARM box.
            decode_threads: 2,
            fragment_ms: 500,
            stall: Duration::from_secs(30),
        }
    }
}

/// What a preview produced.
#[derive(Debug, Clone, Default)]
pub struct PreviewStats {
    /// Frames read from the store and given to the decoder.
    pub frames_in: u64,
    /// Frames encoded and sent.
    pub frames_out: u64,
    pub fragments: u64,
    /// All bytes handed to the sink.
    pub bytes: u64,
    /// Size of the encoded picture.
    pub width: u32,
    pub height: u32,
    /// The RFC 6381 codec string of the encoded track (e.g. `avc1.42c01f`).
    pub codec: String,
    /// From the call to the first fragment (with the initialization segment before it)
    /// handed to the sink.
    pub first_fragment: Option<Duration>,
    /// The sink stopped taking before the end (the client went away).
    pub stopped: bool,
    /// Wall-clock times of the first and the last frame handed to the sink.
    pub first_unix_ms: Option<i64>,
    pub last_unix_ms: Option<i64>,
}

/// A frame given to the decoder: where it is on the output's timeline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameMeta {
    pub(crate) media_90k: i64,
    pub(crate) duration_90k: u32,
    /// Its wall-clock time (from the recording's wall clock).
    pub(crate) unix_ms: i64,
    /// The fragment ends with it (the last frame of a live view's chunk).
    pub(crate) ends_fragment: bool,
}

impl FrameMeta {
    fn pts_ns(&self) -> u64 {
        ns_of_90k(self.media_90k)
    }
}

/// A frame that came out of the encoder, waiting in the current fragment.
struct OutFrame {
    size: u32,
    key: bool,
    meta: FrameMeta,
}

/// Transcodes the frames of `index` from `start` (a key frame: see
/// [`super::start_at`]) to the end into a fragmented H.264 MP4, handing its bytes to
/// `sink` as they are produced (the initialization segment, then one fragment at a
/// time) until it returns false. Blocking: run it on a blocking thread.
///
/// Errors: the store's (footage unreadable or changed underneath: the output so far
/// was good, the rest is missing) or GStreamer's (logged by the caller; they carry no
/// footage).
pub fn transcode(
    src: &dyn FootageSource,
    index: &FrameIndex,
    start: FramePos,
    settings: &PreviewSettings,
    sink: &mut dyn FnMut(Bytes) -> bool,
) -> Result<PreviewStats, PreviewError> {
    let began = Instant::now();
    let typical = super::typical_duration_90k(index);
    encode(
        &index.params,
        typical,
        settings,
        false,
        began,
        |feeder| feed(src, index, start, feeder),
        sink,
    )
}

/// Gives frames to the decoder (see [`encode`]).
pub(crate) struct Feeder<'a> {
    appsrc: &'a gst_app::AppSrc,
    in_flight: &'a Mutex<VecDeque<FrameMeta>>,
    stopped: &'a AtomicBool,
}

impl Feeder<'_> {
    /// Gives one frame (an access unit as stored: length-prefixed NAL units) to the
    /// decoder, at `meta`'s media time, which must grow from frame to frame. `false`
    /// when the pipeline has stopped: feed nothing more.
    pub(crate) fn push(
        &self,
        data: impl AsRef<[u8]> + Send + 'static,
        key: bool,
        meta: FrameMeta,
    ) -> bool {
        let mut b = gst::Buffer::from_slice(data);
        {
            let b = b.get_mut().expect("a new buffer is writable");
            let t = gst::ClockTime::from_nseconds(meta.pts_ns());
            b.set_pts(t);
            b.set_dts(t);
            b.set_duration(gst::ClockTime::from_nseconds(
                ns_of_90k(meta.media_90k + i64::from(meta.duration_90k)) - meta.pts_ns(),
            ));
            if !key {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(meta);
        // Stopped (flushing) or failed: the puller knows why.
        self.appsrc.push_buffer(b).is_ok()
    }

    /// Whether the pipeline has stopped (the sink stopped taking, or it failed): a
    /// feeder waiting for frames should give up.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

/// Runs the transcoding pipeline for a track of `params` whose frames are usually
/// `typical_90k` apart: `feed`, on a thread of its own, gives it frames through a
/// [`Feeder`] and returns how many; this thread hands the MP4 to `sink` (the
/// initialization segment from the encoder's first frame, then fragments) until the
/// last frame is sent or `sink` returns false. `live`: tuned for a live view (see the
/// module's documentation).
pub(crate) fn encode<F>(
    params: &TrackParams,
    typical_90k: u32,
    settings: &PreviewSettings,
    live: bool,
    began: Instant,
    feed: F,
    sink: &mut dyn FnMut(Bytes) -> bool,
) -> Result<PreviewStats, PreviewError>
where
    F: FnOnce(&Feeder<'_>) -> Result<u64, SourceError> + Send,
{
    super::init()?;
    let (out_w, out_h) = pipeline::fit(
        params.width,
        params.height,
        settings.max_width,
        settings.max_height,
    )
    .unwrap_or((settings.max_width & !1, settings.max_height & !1));
    let fps = (90_000 / typical_90k.max(1)).clamp(1, 120);

    let pipe = gst::Pipeline::new();
    let (appsrc, decoded) = pipeline::decoder_for(
        &pipe,
        params,
        Some(pipeline::framerate(typical_90k)),
        out_w,
        out_h,
        settings.decode_threads,
        live,
    )?;
    let enc = make("x264enc")?;
    enc.set_property_from_str("speed-preset", "ultrafast");
    enc.set_property_from_str("tune", "zerolatency");
    enc.set_property("threads", settings.encode_threads.max(1));
    enc.set_property("bitrate", settings.bitrate_kbps.max(50));
    // A key frame about every second: a preview started anywhere shows a picture soon.
    enc.set_property("key-int-max", fps);
    enc.set_property("aud", false);
    let enc_caps = make("capsfilter")?;
    enc_caps.set_property(
        "caps",
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .field("profile", PROFILE)
            .field("level", LEVEL)
            .build(),
    );
    let appsink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(8)
        .drop(false)
        .build();
    // No preroll: PLAYING is reached before the first frame is pushed.
    appsink.set_property("async", false);
    pipe.add_many([&enc, &enc_caps, appsink.upcast_ref()])
        .map_err(gst_err)?;
    gst::Element::link_many([&decoded, &enc, &enc_caps, appsink.upcast_ref()]).map_err(gst_err)?;

    let _stop = Stopper(&pipe);
    pipe.set_state(gst::State::Playing)
        .map_err(|_| PreviewError::Gst("the preview pipeline did not start".into()))?;
    let (changed, state, _) = pipe.state(gst::ClockTime::from_seconds(10));
    if changed.is_err() || state != gst::State::Playing {
        return Err(PreviewError::Gst(format!(
            "the preview pipeline did not start (state {state:?})"
        )));
    }

    let in_flight: Mutex<VecDeque<FrameMeta>> = Mutex::new(VecDeque::new());
    let stopped = AtomicBool::new(false);
    let fed = AtomicBool::new(false);
    let mut stats = PreviewStats::default();
    let out: Result<(), PreviewError> = std::thread::scope(|s| {
        let feeder = std::thread::Builder::new()
            .name("preview-reader".into())
            .spawn_scoped(s, || {
                let feeder = Feeder {
                    appsrc: &appsrc,
                    in_flight: &in_flight,
                    stopped: &stopped,
                };
                let r = feed(&feeder);
                let _ = appsrc.end_of_stream();
                fed.store(true, Ordering::Relaxed);
                r
            })
            .map_err(|e| PreviewError::Gst(format!("cannot start the reader: {e}")))?;
        let pulled = pull(
            &pipe,
            &appsink,
            settings,
            Input {
                in_flight: &in_flight,
                live,
                fed: &fed,
            },
            began,
            &mut stats,
            sink,
        );
        // Whatever happened, the pipeline stops before the reader is waited for: a
        // reader blocked on a full appsrc is released by it, one waiting for a live
        // view's next chunk sees `stopped`.
        stopped.store(true, Ordering::Relaxed);
        let _ = pipe.set_state(gst::State::Null);
        let fed = feeder
            .join()
            .map_err(|_| PreviewError::Gst("the preview reader panicked".into()))?;
        match fed {
            Ok(n) => stats.frames_in = n,
            Err(e) if pulled.is_ok() && !stats.stopped => return Err(e.into()),
            Err(e) => warn!(error = %e, "preview reader failed after the preview ended"),
        }
        pulled
    });
    out.map(|()| stats)
}

/// The reader: the frames from `start` on, one buffer each, timestamped with their
/// media time. Returns how many it pushed.
fn feed(
    src: &dyn FootageSource,
    index: &FrameIndex,
    start: FramePos,
    feeder: &Feeder<'_>,
) -> Result<u64, SourceError> {
    let mut g = start.gop;
    let mut sample = start.gop_first_sample;
    let mut media = start.gop_media_90k;
    let mut pushed = 0u64;
    let r = playback::read_payload(src, index, start.gop, &mut |buf| {
        let Some(gop) = index.gops.get(g) else {
            return false;
        };
        let gop_media = media;
        let mut off = 0usize;
        for s in &index.samples[sample..sample + gop.frames] {
            let len = s.size as usize;
            if sample >= start.sample {
                if off + len > buf.len() {
                    return false;
                }
                let meta = FrameMeta {
                    media_90k: media,
                    duration_90k: s.duration_90k,
                    unix_ms: index.gop_unix_ms[g] + ms_from_90k(media - gop_media),
                    ends_fragment: false,
                };
                if !feeder.push(buf.slice(off..off + len), s.key, meta) {
                    return false;
                }
                pushed += 1;
            }
            off += len;
            media += i64::from(s.duration_90k);
            sample += 1;
        }
        g += 1;
        true
    });
    r.map(|()| pushed)
}

/// What the puller knows of the input.
struct Input<'a> {
    in_flight: &'a Mutex<VecDeque<FrameMeta>>,
    live: bool,
    /// The reader has given its last frame.
    fed: &'a AtomicBool,
}

/// More frames than a decoder holds back for reordering: so many in flight without
/// output is a stall, also in a live view.
const MAX_HELD: usize = 32;

/// The puller: encoded frames into fragments, to the sink.
fn pull(
    pipe: &gst::Pipeline,
    appsink: &gst_app::AppSink,
    settings: &PreviewSettings,
    input: Input<'_>,
    began: Instant,
    stats: &mut PreviewStats,
    sink: &mut dyn FnMut(Bytes) -> bool,
) -> Result<(), PreviewError> {
    let mut frag = Fragmenter {
        seq: 0,
        frames: Vec::new(),
        data: Vec::new(),
        max_90k: ticks_90k_from_ms(i64::from(settings.fragment_ms)),
    };
    let mut last_progress = Instant::now();
    let in_flight = input.in_flight;
    let mut send = |b: Vec<u8>, stats: &mut PreviewStats| -> bool {
        stats.bytes += b.len() as u64;
        if !sink(Bytes::from(b)) {
            stats.stopped = true;
            return false;
        }
        true
    };
    loop {
        let Some(sample) = appsink.try_pull_sample(gst::ClockTime::from_mseconds(100)) else {
            if appsink.is_eos() {
                break;
            }
            if let Some(e) = pipeline::bus_error(pipe) {
                return Err(PreviewError::Gst(e));
            }
            // A live view waits for the camera as long as it must: only frames held
            // back with nothing coming out, or an end that never comes, are a stall.
            if input.live
                && !input.fed.load(Ordering::Relaxed)
                && in_flight.lock().unwrap_or_else(|p| p.into_inner()).len() <= MAX_HELD
            {
                last_progress = Instant::now();
            }
            if last_progress.elapsed() > settings.stall {
                return Err(PreviewError::Gst("the preview pipeline stalled".into()));
            }
            continue;
        };
        last_progress = Instant::now();
        let Some(buf) = sample.buffer() else { continue };
        // x264enc shifts its timestamps (by 1000 h, room for decode times before the
        // first frame) and its segment with them: the running time is what was pushed.
        let pts = buf.pts().map(|pts| {
            sample
                .segment()
                .and_then(|s| s.downcast_ref::<gst::format::Time>())
                .and_then(|s| s.to_running_time(pts))
                .unwrap_or(pts)
                .nseconds()
        });
        let meta = {
            let mut q = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            // Frames the decoder dropped (none, normally) are skipped.
            while q
                .front()
                .is_some_and(|m| pts.is_some_and(|p| m.pts_ns() < p))
            {
                q.pop_front();
            }
            q.pop_front()
        };
        let Some(meta) = meta else {
            warn!("preview: an encoded frame matches no frame read; skipped");
            continue;
        };
        if stats.codec.is_empty() {
            let init = init_segment(&sample, meta.unix_ms, stats)?;
            if !send(init, stats) {
                return Ok(());
            }
        }
        let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
        if frag.full_before(key, meta.media_90k, stats.fragments)
            && !flush(&mut frag, stats, &mut send, began)?
        {
            return Ok(());
        }
        let map = buf.map_readable().map_err(gst_err)?;
        frag.data.extend_from_slice(&map);
        frag.frames.push(OutFrame {
            size: map.len() as u32,
            key,
            meta,
        });
        stats.frames_out += 1;
        if meta.ends_fragment && !flush(&mut frag, stats, &mut send, began)? {
            return Ok(());
        }
    }
    if !frag.frames.is_empty() {
        flush(&mut frag, stats, &mut send, began)?;
    }
    Ok(())
}

/// Sends the fragment being filled; false when the sink stopped taking.
fn flush(
    frag: &mut Fragmenter,
    stats: &mut PreviewStats,
    send: &mut dyn FnMut(Vec<u8>, &mut PreviewStats) -> bool,
    began: Instant,
) -> Result<bool, PreviewError> {
    let (first, last) = (frag.frames[0].meta.unix_ms, frag.last_unix_ms());
    let f = frag.take()?;
    stats.fragments += 1;
    if !send(f, stats) {
        return Ok(false);
    }
    stats.first_fragment.get_or_insert_with(|| began.elapsed());
    stats.first_unix_ms.get_or_insert(first);
    stats.last_unix_ms = Some(last);
    Ok(true)
}

/// `ftyp` + `moov` for the encoder's output, from the caps of its first sample.
fn init_segment(
    sample: &gst::Sample,
    first_unix_ms: i64,
    stats: &mut PreviewStats,
) -> Result<Vec<u8>, PreviewError> {
    let caps = sample
        .caps()
        .ok_or_else(|| PreviewError::Gst("the encoder gave no caps".into()))?;
    let st = caps
        .structure(0)
        .ok_or_else(|| PreviewError::Gst("the encoder gave empty caps".into()))?;
    let avcc = st
        .get::<gst::Buffer>("codec_data")
        .map_err(|_| PreviewError::Gst("the encoder gave no avcC".into()))?;
    let avcc = avcc.map_readable().map_err(gst_err)?.to_vec();
    let width = st.get::<i32>("width").unwrap_or(0).max(0) as u32;
    let height = st.get::<i32>("height").unwrap_or(0).max(0) as u32;
    let params = TrackParams {
        codec: VideoCodec::H264,
        extra_data: avcc,
        width,
        height,
    };
    stats.width = width;
    stats.height = height;
    stats.codec = crate::viewing::codec_string(&params);
    Ok(mp4::init_segment(&params, first_unix_ms)?)
}

/// The fragment being filled.
struct Fragmenter {
    seq: u32,
    frames: Vec<OutFrame>,
    data: Vec<u8>,
    max_90k: i64,
}

impl Fragmenter {
    /// Whether the fragment must be sent before a frame (`key`, at `media_90k`) is
    /// added: the first fragment is the first frame alone; later ones end before a key
    /// frame or when they span `max_90k`.
    fn full_before(&self, key: bool, media_90k: i64, sent: u64) -> bool {
        let Some(first) = self.frames.first() else {
            return false;
        };
        sent == 0 || key || media_90k - first.meta.media_90k >= self.max_90k
    }

    fn last_unix_ms(&self) -> i64 {
        self.frames.last().map_or(0, |f| f.meta.unix_ms)
    }

    /// The whole fragment: each frame lasts until the next one's media time (so frames
    /// the decoder dropped leave no hole), the last one its own duration.
    fn take(&mut self) -> Result<Vec<u8>, PreviewError> {
        let frames = std::mem::take(&mut self.frames);
        let data = std::mem::take(&mut self.data);
        let samples: Vec<Sample> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| Sample {
                duration_90k: frames
                    .get(i + 1)
                    .map(|n| {
                        (n.meta.media_90k - f.meta.media_90k).clamp(1, i64::from(u32::MAX)) as u32
                    })
                    .unwrap_or(f.meta.duration_90k.max(1)),
                size: f.size,
                key: f.key,
            })
            .collect();
        self.seq += 1;
        let first = &frames[0].meta;
        let mut out = mp4::fragment_header(
            self.seq,
            first.media_90k.max(0) as u64,
            first.unix_ms,
            &samples,
        )?;
        out.extend_from_slice(&data);
        Ok(out)
    }
}

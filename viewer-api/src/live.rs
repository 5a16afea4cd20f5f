//! Live view: a camera's newest footage as a fragmented MP4, tailing the segment the
//! recorder is writing.
//!
//! The recorder seals a chunk at every key frame and at least every ~500 ms inside a
//! long GOP, and a reader can tail an open segment (it stops at the last authentic
//! chunk and continues when the file grows). So live view is the store read as it is
//! written: no second path from the camera, nothing that bypasses the policy or the
//! access log, and it shows exactly what is being recorded.
//!
//! The stream starts at the newest key frame (the chunks since it are sent at once),
//! then sends one fragment (`prft` + `moof` + `mdat`) per chunk as it appears, polling
//! every [`POLL`]. When the segment closes, it follows to the next one; when the
//! codec parameters change, it ends (the client reconnects and gets a new
//! initialization segment). Each `prft` box carries the wall-clock time of the
//! fragment's first frame (from the camera's media clock, set by the frames that reached
//! the recorder soonest), which is what clients (and the latency test) use to measure
//! how far behind real time they are.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::ticks_90k_from_ms;
use crate::mp4::{self, Sample, TrackParams};
use crate::playback::{
    FootageSource, GopData, GopStream, Polled, SegmentKey, SourceError, frame_step, frame_unix_ms,
};

/// How often the open segment (or the catalog, waiting for the next one) is polled.
pub const POLL: Duration = Duration::from_millis(150);
/// A live view starts from footage no older than this; older means the camera is not
/// recording now, and the view waits for it to come back.
pub const FRESH_MS: i64 = 30_000;
/// Without a new chunk for this long, look whether the recorder moved on to another
/// segment (it restarted, and the one we tail will never grow again).
const STALL: Duration = Duration::from_secs(2);

/// Why a live view ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveEnd {
    /// The client went away, or `keep_going` said stop (session ended, rights revoked).
    Stopped,
    /// The codec parameters changed; the client must start a new view.
    ParamsChanged,
}

/// What a live view showed, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveSummary {
    pub end: LiveEnd,
    /// Wall time of the first and the last frame sent.
    pub first_unix_ms: Option<i64>,
    pub last_unix_ms: Option<i64>,
    pub fragments: u64,
}

/// Puts chunks on one continuous media timeline (90 kHz, from 0): frame after frame by
/// their pts, and by the wall clock where the camera's clock jumped (a reconnect).
#[derive(Debug, Clone)]
pub(crate) struct Timeline {
    /// Media time, pts and wall time of the last frame placed.
    last: Option<(i64, i64, i64)>,
    last_step: i64,
}

impl Timeline {
    pub(crate) fn new() -> Self {
        Timeline {
            last: None,
            last_step: frame_step::DEFAULT_90K,
        }
    }

    /// The media time of each frame of `gop`, following on from the chunks before.
    pub(crate) fn place(&mut self, gop: &GopData) -> Vec<i64> {
        let mut times = Vec::with_capacity(gop.frames.len());
        for f in &gop.frames {
            let wall = frame_unix_ms(gop, f.pts_90k);
            let t = match self.last {
                None => 0,
                Some((t, pts, last_wall)) => {
                    let step = f.pts_90k.wrapping_sub(pts);
                    if frame_step::plausible(step) {
                        t + step
                    } else {
                        // A jump in the camera's clock (reconnect): follow the wall clock.
                        t + ticks_90k_from_ms(wall - last_wall).max(1)
                    }
                }
            };
            if let Some((lt, _, _)) = self.last {
                self.last_step = (t - lt).clamp(1, frame_step::MAX_90K);
            }
            self.last = Some((t, f.pts_90k, wall));
            times.push(t);
        }
        times
    }

    /// How long each frame placed by the last [`place`](Self::place) lasts: until the
    /// next one; the last one (whose successor is not stored yet) as long as the step
    /// before it.
    pub(crate) fn durations(&self, times: &[i64]) -> Vec<u32> {
        (0..times.len())
            .map(|i| {
                times
                    .get(i + 1)
                    .map(|n| (n - times[i]).clamp(1, frame_step::MAX_90K))
                    .unwrap_or(self.last_step) as u32
            })
            .collect()
    }
}

/// Turns chunks into fragments on one continuous media timeline (90 kHz, from 0).
struct FragMuxer {
    seq: u32,
    timeline: Timeline,
}

impl FragMuxer {
    fn new() -> Self {
        FragMuxer {
            seq: 0,
            timeline: Timeline::new(),
        }
    }

    /// The whole fragment (boxes and sample bytes) for one chunk.
    fn fragment(&mut self, gop: &GopData) -> Result<Vec<u8>, mp4::MuxError> {
        let times = self.timeline.place(gop);
        let samples: Vec<Sample> = gop
            .frames
            .iter()
            .zip(self.timeline.durations(&times))
            .map(|(f, duration_90k)| Sample {
                duration_90k,
                size: f.data.len() as u32,
                key: f.key,
            })
            .collect();
        self.seq = self.seq.wrapping_add(1);
        let mut out = mp4::fragment_header(self.seq, times[0] as u64, gop.start_unix_ms, &samples)?;
        for f in &gop.frames {
            out.extend_from_slice(&f.data);
        }
        Ok(out)
    }
}

fn mux_err(e: mp4::MuxError) -> SourceError {
    SourceError::Store(format!("cannot mux live fragment: {e}"))
}

struct Tail {
    seg: SegmentKey,
    stream: Box<dyn GopStream>,
    ended: bool,
    last_data: Instant,
    last_look: Instant,
}

/// What [`Tailer::poll`] found.
#[derive(Debug)]
pub enum Tailed {
    /// The next stored chunk. The first one starts with a key frame; each one
    /// continues the one before.
    Chunk(GopData),
    /// Nothing new yet: look again after [`POLL`].
    Pending,
    /// The next segment has other codec parameters: the view must start again.
    ParamsChanged,
}

/// A camera's stored chunks as they are written, from the newest key frame of the
/// segment being written, following to the segments after it. It never waits: each
/// [`poll`](Self::poll) looks once (reads what is there) and says
/// [`Tailed::Pending`] when there is nothing new, so that the caller decides how to
/// wait (a live view's task sleeps without holding a thread).
pub struct Tailer {
    src: Arc<dyn FootageSource>,
    camera: String,
    tail: Option<Tail>,
    /// Chunks stored since the newest key frame when the view started, not handed out
    /// yet.
    backlog: VecDeque<GopData>,
    /// Whether a chunk starting with a key frame was handed out (the ones before it
    /// cannot be decoded and are skipped).
    have_key: bool,
    started_ms: i64,
}

impl Tailer {
    pub fn new(src: Arc<dyn FootageSource>, camera: &str) -> Self {
        Tailer {
            src,
            camera: camera.to_string(),
            tail: None,
            backlog: VecDeque::new(),
            have_key: false,
            started_ms: 0,
        }
    }

    /// The codec parameters of the chunks it gives, once it found the camera
    /// recording (the same until [`Tailed::ParamsChanged`]).
    pub fn params(&self) -> Option<&TrackParams> {
        self.tail.as_ref().map(|t| t.stream.params())
    }

    /// The wall-clock time at which it found the camera recording.
    pub fn started_ms(&self) -> i64 {
        self.started_ms
    }

    /// The chunks already stored since the newest key frame: the first ones
    /// [`poll`](Self::poll) gives, at once.
    pub fn backlog(&self) -> impl Iterator<Item = &GopData> {
        self.backlog.iter()
    }

    /// Looks for the segment being written (open, or ended less than [`FRESH_MS`]
    /// ago) and opens it at its newest key frame; `false`: the camera is not
    /// recording now.
    pub fn start(&mut self, now_ms: i64) -> Result<bool, SourceError> {
        if self.tail.is_some() {
            return Ok(true);
        }
        let segs = self
            .src
            .segments(&self.camera, now_ms - FRESH_MS, i64::MAX / 4)?;
        let Some(seg) = segs.last() else {
            return Ok(false);
        };
        if !(seg.open || seg.end_ms >= now_ms - FRESH_MS) {
            return Ok(false);
        }
        let mut stream = self.src.open(&self.camera, seg)?;
        let mut since_key: VecDeque<GopData> = VecDeque::new();
        let ended = loop {
            match stream.poll_gop()? {
                Polled::Gop(g) if g.frames.first().is_some_and(|f| f.key) => {
                    since_key = VecDeque::from([g])
                }
                Polled::Gop(g) => {
                    if !since_key.is_empty() {
                        since_key.push_back(g)
                    }
                }
                Polled::Pending => break false,
                Polled::End => break true,
            }
        };
        self.tail = Some(Tail {
            seg: seg.clone(),
            stream,
            ended,
            last_data: Instant::now(),
            last_look: Instant::now(),
        });
        self.backlog = since_key;
        self.started_ms = now_ms;
        Ok(true)
    }

    /// The next chunk, if there is one now (call [`start`](Self::start) first; before
    /// it, always [`Tailed::Pending`]).
    pub fn poll(&mut self) -> Result<Tailed, SourceError> {
        loop {
            let gop = match self.backlog.pop_front() {
                Some(g) => g,
                None => match self.poll_tail()? {
                    Some(Ok(g)) => g,
                    Some(Err(t)) => return Ok(t),
                    None => return Ok(Tailed::Pending),
                },
            };
            if gop.frames.is_empty() || (!self.have_key && !gop.frames[0].key) {
                continue;
            }
            self.have_key = true;
            return Ok(Tailed::Chunk(gop));
        }
    }

    /// One look: a chunk, the end of the view, or nothing yet (`None`).
    #[allow(clippy::type_complexity)]
    fn poll_tail(&mut self) -> Result<Option<Result<GopData, Tailed>>, SourceError> {
        let Some(tail) = &mut self.tail else {
            return Ok(None);
        };
        if !tail.ended {
            match tail.stream.poll_gop()? {
                Polled::Gop(g) => {
                    tail.last_data = Instant::now();
                    return Ok(Some(Ok(g)));
                }
                Polled::Pending => {}
                Polled::End => tail.ended = true,
            }
        }
        // Look for the next segment: right away once this one has ended (the recorder
        // opens the next at once), at most every STALL while it merely does not grow.
        let look_every = if tail.ended && tail.last_data.elapsed() < Duration::from_secs(5) {
            Duration::ZERO
        } else {
            STALL
        };
        if (tail.ended || tail.last_data.elapsed() >= STALL)
            && tail.last_look.elapsed() >= look_every
        {
            tail.last_look = Instant::now();
            let next = self
                .src
                .segments(&self.camera, tail.seg.start_ms, i64::MAX / 4)?
                .into_iter()
                .find(|s| s.start_ms > tail.seg.start_ms);
            if let Some(seg) = next {
                let stream = self.src.open(&self.camera, &seg)?;
                if stream.params() != tail.stream.params() {
                    return Ok(Some(Err(Tailed::ParamsChanged)));
                }
                *tail = Tail {
                    seg,
                    stream,
                    ended: false,
                    last_data: Instant::now(),
                    last_look: Instant::now(),
                };
                // Read the new segment at once.
                return self.poll_tail();
            }
        }
        Ok(None)
    }
}

/// What [`LiveView::step`] gives.
#[derive(Debug)]
pub enum Step {
    /// The next bytes of the stream: the initialization segment, then one fragment
    /// per chunk.
    Data(Vec<u8>),
    /// Nothing yet (the camera is not recording, or no new chunk): step again after
    /// [`POLL`].
    Wait,
    /// The view is over (its codec parameters changed).
    Ended,
}

/// One live view as a fragmented MP4, made a piece at a time: the initialization
/// segment once the camera is found recording, then one fragment (`prft` + `moof` +
/// `mdat`) per stored chunk. It never waits: [`Step::Wait`] says when there is nothing
/// yet.
pub struct LiveView {
    tailer: Tailer,
    mux: FragMuxer,
    sent_init: bool,
    /// What it showed so far.
    pub summary: LiveSummary,
}

impl LiveView {
    pub fn new(src: Arc<dyn FootageSource>, camera: &str) -> Self {
        LiveView {
            tailer: Tailer::new(src, camera),
            mux: FragMuxer::new(),
            sent_init: false,
            summary: LiveSummary {
                end: LiveEnd::Stopped,
                first_unix_ms: None,
                last_unix_ms: None,
                fragments: 0,
            },
        }
    }

    /// The next piece, if there is one now; `now_ms` is the wall clock.
    pub fn step(&mut self, now_ms: i64) -> Result<Step, SourceError> {
        if !self.sent_init {
            if !self.tailer.start(now_ms)? {
                return Ok(Step::Wait);
            }
            let params = self.tailer.params().expect("started");
            let init = mp4::init_segment(params, self.tailer.started_ms()).map_err(mux_err)?;
            self.sent_init = true;
            return Ok(Step::Data(init));
        }
        let gop = match self.tailer.poll()? {
            Tailed::Chunk(g) => g,
            Tailed::Pending => return Ok(Step::Wait),
            Tailed::ParamsChanged => {
                self.summary.end = LiveEnd::ParamsChanged;
                return Ok(Step::Ended);
            }
        };
        let frag = self.mux.fragment(&gop).map_err(mux_err)?;
        let s = &mut self.summary;
        s.first_unix_ms.get_or_insert(gop.start_unix_ms);
        s.last_unix_ms = Some(frame_unix_ms(
            &gop,
            gop.frames[gop.frames.len() - 1].pts_90k,
        ));
        s.fragments += 1;
        Ok(Step::Data(frag))
    }
}

/// A store whose segments are written while they are read, as the recorder's are
/// (tests and benchmarks only: built with the `testing` feature, never shipped).
#[cfg(any(test, feature = "testing"))]
pub mod growing {
    use std::sync::{Arc, Mutex};

    use crate::mp4::TrackParams;
    use crate::playback::{
        CameraInfo, FootageSource, GopData, GopStream, Polled, Recordings, SegmentKey, SourceError,
        frame_unix_ms, merge_spans,
    };

    struct Seg {
        camera: String,
        key: SegmentKey,
        params: TrackParams,
        gops: Vec<GopData>,
    }

    #[derive(Default)]
    struct State {
        cameras: Vec<CameraInfo>,
        segs: Vec<Seg>,
    }

    /// The footage of some cameras, each segment open (growing, read as
    /// [`Polled::Pending`] at its end) until [`close`](GrowingSource::close)d. Clones
    /// share the footage: one writes it while the API reads it.
    #[derive(Clone, Default)]
    pub struct GrowingSource(Arc<Mutex<State>>);

    impl GrowingSource {
        /// Cameras `ids`, recording, without footage yet.
        pub fn new(ids: &[&str]) -> Self {
            let s = GrowingSource::default();
            s.lock().cameras = ids
                .iter()
                .map(|c| crate::testdata::camera(c, &c.to_uppercase()))
                .collect();
            s
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, State> {
            self.0.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// Starts a new segment of `camera` at `start_ms` (closing the one being
        /// written).
        pub fn open_segment(&self, camera: &str, params: TrackParams, start_ms: i64) {
            self.close(camera);
            let mut s = self.lock();
            let mut key = new_key(&params);
            key.key = format!("{camera}-{}", s.segs.len());
            (key.start_ms, key.end_ms, key.open) = (start_ms, start_ms, true);
            s.segs.push(Seg {
                camera: camera.to_string(),
                key,
                params,
                gops: Vec::new(),
            });
        }

        /// Appends a chunk to the segment of `camera` being written.
        pub fn write(&self, camera: &str, gop: GopData) {
            let mut s = self.lock();
            let seg = s
                .segs
                .iter_mut()
                .rev()
                .find(|g| g.camera == camera && g.key.open)
                .expect("a segment being written");
            if let Some(last) = gop.frames.last() {
                seg.key.end_ms = frame_unix_ms(&gop, last.pts_90k);
            }
            seg.gops.push(gop);
        }

        /// Closes the segment of `camera` being written, if there is one.
        pub fn close(&self, camera: &str) {
            let mut s = self.lock();
            for g in s.segs.iter_mut().filter(|g| g.camera == camera) {
                g.key.open = false;
            }
        }
    }

    /// A segment key as the in-memory store makes them (with whatever else a key
    /// carries, unknown here).
    fn new_key(params: &TrackParams) -> SegmentKey {
        let m = crate::playback::MemorySource::default();
        m.add_segment("x", params.clone(), Vec::new());
        let segs = m.segments.lock().unwrap_or_else(|p| p.into_inner());
        segs["x"][0].0.clone()
    }

    struct Stream {
        src: GrowingSource,
        seg: usize,
        params: TrackParams,
        next: usize,
    }

    impl GopStream for Stream {
        fn params(&self) -> &TrackParams {
            &self.params
        }
        fn next_gop(&mut self) -> Result<Option<GopData>, SourceError> {
            Ok(match self.poll_gop()? {
                Polled::Gop(g) => Some(g),
                Polled::Pending | Polled::End => None,
            })
        }
        fn poll_gop(&mut self) -> Result<Polled, SourceError> {
            let s = self.src.lock();
            let seg = &s.segs[self.seg];
            Ok(match seg.gops.get(self.next) {
                Some(g) => {
                    self.next += 1;
                    Polled::Gop(g.clone())
                }
                None if seg.key.open => Polled::Pending,
                None => Polled::End,
            })
        }
    }

    impl FootageSource for GrowingSource {
        fn cameras(&self) -> Result<Vec<CameraInfo>, SourceError> {
            Ok(self.lock().cameras.clone())
        }

        fn recordings(
            &self,
            camera: &str,
            from_ms: i64,
            to_ms: i64,
        ) -> Result<Recordings, SourceError> {
            let segs = self.segments(camera, from_ms, to_ms)?;
            let spans = merge_spans(segs.iter().map(|s| (s.start_ms, s.end_ms)), from_ms, to_ms);
            Ok((spans, Vec::new()))
        }

        fn segments(
            &self,
            camera: &str,
            from_ms: i64,
            to_ms: i64,
        ) -> Result<Vec<SegmentKey>, SourceError> {
            let s = self.lock();
            if !s.cameras.iter().any(|c| c.id == camera) {
                return Err(SourceError::UnknownCamera);
            }
            Ok(s.segs
                .iter()
                .filter(|g| {
                    g.camera == camera
                        && g.key.start_ms < to_ms
                        && (g.key.open || g.key.end_ms >= from_ms)
                })
                .map(|g| g.key.clone())
                .collect())
        }

        fn open(&self, camera: &str, seg: &SegmentKey) -> Result<Box<dyn GopStream>, SourceError> {
            let s = self.lock();
            let i = s
                .segs
                .iter()
                .position(|g| g.camera == camera && g.key.key == seg.key)
                .ok_or_else(|| SourceError::Store("segment vanished".into()))?;
            Ok(Box::new(Stream {
                src: self.clone(),
                seg: i,
                params: s.segs[i].params.clone(),
                next: 0,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::growing::GrowingSource;
    use super::*;
    use crate::mp4::VideoCodec;
    use crate::playback::FrameData;

    fn gop(start: i64, pts0: i64, n: i64, key: bool) -> GopData {
        GopData {
            start_unix_ms: start,
            frames: (0..n)
                .map(|i| FrameData {
                    pts_90k: pts0 + i * 3600,
                    key: key && i == 0,
                    data: vec![0, 0, 0, 1, 9],
                })
                .collect(),
        }
    }

    #[test]
    fn fragment_times_follow_pts_and_survive_clock_jumps() {
        let mut m = FragMuxer::new();
        let a = m.fragment(&gop(1000, 90_000, 5, true)).unwrap();
        assert_eq!(&a[4..8], b"prft");
        assert_eq!(m.timeline.last.unwrap().0, 4 * 3600);
        // a continuation chunk: follows on by pts
        m.fragment(&gop(1200, 90_000 + 5 * 3600, 5, false)).unwrap();
        assert_eq!(m.timeline.last.unwrap().0, 9 * 3600);
        // the camera's clock jumped (reconnect): 1 s of wall time later
        m.fragment(&gop(2400, 7, 2, true)).unwrap();
        // last wall time was 1200 + 4 * 40 ms
        assert_eq!(m.timeline.last.unwrap().0, 9 * 3600 + 1040 * 90 + 3600);
        assert_eq!(m.seq, 3);
    }

    fn params(codec: VideoCodec) -> TrackParams {
        TrackParams {
            codec,
            extra_data: vec![1, 2, 3, 4, 5, 6, 7, 8],
            width: 320,
            height: 240,
        }
    }

    fn chunk(t: &mut Tailer) -> GopData {
        match t.poll().unwrap() {
            Tailed::Chunk(g) => g,
            other => panic!("{other:?}"),
        }
    }

    fn tailer(src: &GrowingSource) -> Tailer {
        Tailer::new(Arc::new(src.clone()), "gate")
    }

    /// From the newest key frame of the segment being written, chunk by chunk as they
    /// are written, into the next segment; ends where the codec parameters change.
    #[test]
    fn tailer_starts_at_the_newest_key_frame_and_follows_the_store() {
        let src = GrowingSource::new(&["gate"]);
        src.open_segment("gate", params(VideoCodec::H265), 1000);
        // two GOPs, each a key chunk and a continuation chunk
        src.write("gate", gop(1000, 0, 5, true));
        src.write("gate", gop(1200, 5 * 3600, 5, false));
        src.write("gate", gop(1400, 10 * 3600, 5, true));
        src.write("gate", gop(1600, 15 * 3600, 5, false));
        let mut t = tailer(&src);
        assert!(matches!(t.poll().unwrap(), Tailed::Pending), "not started");
        assert!(t.start(2000).unwrap());
        assert_eq!(t.params().unwrap().codec, VideoCodec::H265);
        assert_eq!(t.started_ms(), 2000);
        assert_eq!(t.backlog().count(), 2);
        assert_eq!(chunk(&mut t).start_unix_ms, 1400);
        assert_eq!(chunk(&mut t).start_unix_ms, 1600);
        // nothing new: it says so at once, and gives the chunk once written
        assert!(matches!(t.poll().unwrap(), Tailed::Pending));
        src.write("gate", gop(1800, 20 * 3600, 5, false));
        assert_eq!(chunk(&mut t).start_unix_ms, 1800);
        // the recorder moves on to the next segment
        src.open_segment("gate", params(VideoCodec::H265), 2000);
        src.write("gate", gop(2000, 25 * 3600, 5, true));
        assert_eq!(chunk(&mut t).start_unix_ms, 2000);
        // other codec parameters end it
        src.open_segment("gate", params(VideoCodec::H264), 2200);
        src.write("gate", gop(2200, 0, 5, true));
        assert!(matches!(t.poll().unwrap(), Tailed::ParamsChanged));
    }

    /// A view started when the segment holds no key frame yet starts at the first one
    /// written; a camera that is not recording is not started.
    #[test]
    fn tailer_waits_for_a_key_frame_and_for_recording() {
        let src = GrowingSource::new(&["gate"]);
        let now = 100_000;
        assert!(!tailer(&src).start(now).unwrap());
        // footage older than FRESH_MS: not live
        src.open_segment("gate", params(VideoCodec::H265), 1000);
        src.write("gate", gop(1000, 0, 5, true));
        src.close("gate");
        assert!(!tailer(&src).start(now).unwrap());
        src.open_segment("gate", params(VideoCodec::H265), 99_000);
        src.write("gate", gop(99_000, 0, 5, false));
        let mut t = tailer(&src);
        assert!(t.start(now).unwrap());
        assert_eq!(t.backlog().count(), 0);
        src.write("gate", gop(99_200, 5 * 3600, 5, false));
        src.write("gate", gop(99_400, 10 * 3600, 5, true));
        let g = chunk(&mut t);
        assert_eq!(g.start_unix_ms, 99_400);
        assert!(g.frames[0].key);
    }

    /// `LiveView`: waits (without sleeping) for the camera, then the initialization
    /// segment, then one fragment per chunk, its `prft` carrying the chunk's
    /// wall-clock time; the summary says what was shown.
    #[test]
    fn live_view_sends_one_fragment_per_chunk() {
        let src = GrowingSource::new(&["gate"]);
        let mut v = LiveView::new(Arc::new(src.clone()), "gate");
        assert!(matches!(v.step(1500).unwrap(), Step::Wait));
        src.open_segment("gate", params(VideoCodec::H264), 1000);
        src.write("gate", gop(1000, 0, 5, true));
        src.write("gate", gop(1200, 5 * 3600, 5, false));
        let mut out: Vec<Vec<u8>> = Vec::new();
        while let Step::Data(b) = v.step(1500).unwrap() {
            out.push(b);
        }
        assert_eq!(out.len(), 3);
        let summary = v.summary;
        assert_eq!(summary.end, LiveEnd::Stopped);
        assert_eq!(summary.fragments, 2);
        assert_eq!(summary.first_unix_ms, Some(1000));
        assert_eq!(summary.last_unix_ms, Some(1200 + 4 * 40));
        assert_eq!(&out[0][4..8], b"ftyp");
        for (f, at) in out[1..].iter().zip([1000u64, 1200]) {
            assert_eq!(&f[4..8], b"prft");
            let ntp = u64::from_be_bytes(f[16..24].try_into().unwrap());
            let ms = ((ntp >> 32) - 2_208_988_800) * 1000
                + (((ntp & 0xffff_ffff) * 1000 + (1 << 31)) >> 32);
            assert_eq!(ms, at);
        }
        src.open_segment("gate", params(VideoCodec::H265), 1400);
        src.write("gate", gop(1400, 0, 5, true));
        assert!(matches!(v.step(1500).unwrap(), Step::Ended));
        assert_eq!(v.summary.end, LiveEnd::ParamsChanged);
    }
}

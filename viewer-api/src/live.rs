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
//! initialization segment). Each `prft` box carries the wall-clock time at which the
//! recorder received the fragment's first frame, which is what clients (and the
//! latency test) use to measure how far behind real time they are.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mp4::{self, Sample, TrackParams};
use crate::playback::{
    FootageSource, GopData, GopStream, Polled, SegmentKey, SourceError, frame_unix_ms,
};

/// How often the open segment (or the catalog, waiting for the next one) is polled.
pub const POLL: Duration = Duration::from_millis(150);
/// A live view starts from footage no older than this; older means the camera is not
/// recording now, and the view waits for it to come back.
pub const FRESH_MS: i64 = 30_000;
/// Without a new chunk for this long, look whether the recorder moved on to another
/// segment (it restarted, and the one we tail will never grow again).
const STALL: Duration = Duration::from_secs(2);
const MAX_FRAME_STEP_90K: i64 = 5 * 90_000;
const DEFAULT_STEP_90K: i64 = 3_600;

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

/// Turns chunks into fragments on one continuous media timeline (90 kHz, from 0).
struct FragMuxer {
    seq: u32,
    /// Media time, pts and wall time of the last frame muxed.
    last: Option<(i64, i64, i64)>,
    last_step: i64,
}

impl FragMuxer {
    fn new() -> Self {
        FragMuxer {
            seq: 0,
            last: None,
            last_step: DEFAULT_STEP_90K,
        }
    }

    /// The whole fragment (boxes and sample bytes) for one chunk.
    fn fragment(&mut self, gop: &GopData) -> Result<Vec<u8>, mp4::MuxError> {
        let mut times = Vec::with_capacity(gop.frames.len());
        for f in &gop.frames {
            let wall = frame_unix_ms(gop, f.pts_90k);
            let t = match self.last {
                None => 0,
                Some((t, pts, last_wall)) => {
                    let step = f.pts_90k.wrapping_sub(pts);
                    if (1..=MAX_FRAME_STEP_90K).contains(&step) {
                        t + step
                    } else {
                        // A jump in the camera's clock (reconnect): follow the wall clock.
                        t + ((wall - last_wall) * 90).max(1)
                    }
                }
            };
            if let Some((lt, _, _)) = self.last {
                self.last_step = (t - lt).clamp(1, MAX_FRAME_STEP_90K);
            }
            self.last = Some((t, f.pts_90k, wall));
            times.push(t);
        }
        let samples: Vec<Sample> = gop
            .frames
            .iter()
            .enumerate()
            .map(|(i, f)| Sample {
                duration_90k: times
                    .get(i + 1)
                    .map(|n| (n - times[i]).clamp(1, MAX_FRAME_STEP_90K))
                    .unwrap_or(self.last_step) as u32,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_times_follow_pts_and_survive_clock_jumps() {
        let gop = |start: i64, pts0: i64, n: i64, key: bool| GopData {
            start_unix_ms: start,
            frames: (0..n)
                .map(|i| crate::playback::FrameData {
                    pts_90k: pts0 + i * 3600,
                    key: key && i == 0,
                    data: vec![0, 0, 0, 1, 9],
                })
                .collect(),
        };
        let mut m = FragMuxer::new();
        let a = m.fragment(&gop(1000, 90_000, 5, true)).unwrap();
        assert_eq!(&a[4..8], b"prft");
        assert_eq!(m.last.unwrap().0, 4 * 3600);
        // a continuation chunk: follows on by pts
        m.fragment(&gop(1200, 90_000 + 5 * 3600, 5, false)).unwrap();
        assert_eq!(m.last.unwrap().0, 9 * 3600);
        // the camera's clock jumped (reconnect): 1 s of wall time later
        m.fragment(&gop(2400, 7, 2, true)).unwrap();
        // last wall time was 1200 + 4 * 40 ms
        assert_eq!(m.last.unwrap().0, 9 * 3600 + 1040 * 90 + 3600);
        assert_eq!(m.seq, 3);
    }
}

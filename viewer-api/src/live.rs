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

use std::time::{Duration, Instant};

use crate::mp4::{self, Sample};
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

/// Everything a live view needs from its caller.
pub struct LiveCtx<'a> {
    pub src: &'a dyn FootageSource,
    pub camera: &'a str,
    /// The wall clock.
    pub now_ms: &'a dyn Fn() -> i64,
    /// Asked before every read and every wait; `false` ends the view.
    pub keep_going: &'a mut dyn FnMut() -> bool,
    /// Takes the stream's bytes; `false` when the client is gone.
    pub sink: &'a mut dyn FnMut(Vec<u8>) -> bool,
    pub poll: Duration,
}

struct Tail {
    seg: SegmentKey,
    stream: Box<dyn GopStream>,
    ended: bool,
    last_data: Instant,
    last_look: Instant,
}

/// Runs one live view until the client goes away, `keep_going` says stop, or the
/// codec parameters change. Blocking: run it on a blocking thread.
pub fn run(ctx: LiveCtx<'_>) -> Result<LiveSummary, SourceError> {
    let LiveCtx {
        src,
        camera,
        now_ms,
        keep_going,
        sink,
        poll,
    } = ctx;
    let mut summary = LiveSummary {
        end: LiveEnd::Stopped,
        first_unix_ms: None,
        last_unix_ms: None,
        fragments: 0,
    };
    let mut mux = FragMuxer::new();
    let mut have_key = false;

    // Sends one chunk as a fragment; false when the client is gone.
    let mut send = |gop: &GopData,
                    sink: &mut dyn FnMut(Vec<u8>) -> bool,
                    summary: &mut LiveSummary|
     -> Result<bool, SourceError> {
        if gop.frames.is_empty() || (!have_key && !gop.frames[0].key) {
            return Ok(true);
        }
        have_key = true;
        let frag = mux.fragment(gop).map_err(mux_err)?;
        summary.first_unix_ms.get_or_insert(gop.start_unix_ms);
        summary.last_unix_ms = Some(frame_unix_ms(gop, gop.frames[gop.frames.len() - 1].pts_90k));
        summary.fragments += 1;
        Ok(sink(frag))
    };

    // 1. The start: the newest segment, if it is recording now, from its newest key frame.
    let mut tail = loop {
        if !keep_going() {
            return Ok(summary);
        }
        let now = now_ms();
        let segs = src.segments(camera, now - FRESH_MS, i64::MAX / 4)?;
        if let Some(seg) = segs.last()
            && (seg.open || seg.end_ms >= now - FRESH_MS)
        {
            let mut stream = src.open(camera, seg)?;
            let mut since_key: Vec<GopData> = Vec::new();
            let ended = loop {
                match stream.poll_gop()? {
                    Polled::Gop(g) if g.frames.first().is_some_and(|f| f.key) => {
                        since_key = vec![g]
                    }
                    Polled::Gop(g) => {
                        if !since_key.is_empty() {
                            since_key.push(g)
                        }
                    }
                    Polled::Pending => break false,
                    Polled::End => break true,
                }
            };
            let init = mp4::init_segment(stream.params(), now).map_err(mux_err)?;
            if !sink(init) {
                return Ok(summary);
            }
            for g in &since_key {
                if !send(g, sink, &mut summary)? {
                    return Ok(summary);
                }
            }
            break Tail {
                seg: seg.clone(),
                stream,
                ended,
                last_data: Instant::now(),
                last_look: Instant::now(),
            };
        }
        std::thread::sleep(poll);
    };

    // 2. Tail it, and follow to the next segment.
    loop {
        if !keep_going() {
            return Ok(summary);
        }
        if !tail.ended {
            match tail.stream.poll_gop()? {
                Polled::Gop(g) => {
                    tail.last_data = Instant::now();
                    if !send(&g, sink, &mut summary)? {
                        return Ok(summary);
                    }
                    continue;
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
            let next = src
                .segments(camera, tail.seg.start_ms, i64::MAX / 4)?
                .into_iter()
                .find(|s| s.start_ms > tail.seg.start_ms);
            if let Some(seg) = next {
                let stream = src.open(camera, &seg)?;
                if stream.params() != tail.stream.params() {
                    summary.end = LiveEnd::ParamsChanged;
                    return Ok(summary);
                }
                tail = Tail {
                    seg,
                    stream,
                    ended: false,
                    last_data: Instant::now(),
                    last_look: Instant::now(),
                };
                continue;
            }
        }
        std::thread::sleep(poll);
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

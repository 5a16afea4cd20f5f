//! Time, in one place: the clock seam and the units.
//!
//! Wall time is behind [`Clock`], so that retention, expiry, sessions and grants are
//! tested with simulated days ([`ManualClock`]) instead of sleeps. A monotonic clock
//! ([`MonotonicClock`]) implements the same trait, so a test can step the wall clock
//! away from it (the retention's clock guard). Waits are `tokio::time` sleeps, which
//! tests run on paused time; the watchdog's heartbeats take their monotonic time as
//! an argument.
//!
//! Units: wall times are unix milliseconds (`_unix_ms`), media times RTP's 90 kHz
//! ticks (`_90k`). The conversions between them are the functions below and nowhere
//! else, so that rounding is the same for the recorder, playback, live view and exports
//! (toward zero: a frame's millisecond is the one it starts in).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

/// RTP's video clock: 90 000 ticks per second.
pub const TICKS_90K_PER_MS: i64 = 90;

/// Milliseconds in `ticks_90k` (a media duration or offset), rounded toward zero.
pub const fn ms_from_90k(ticks_90k: i64) -> i64 {
    ticks_90k / TICKS_90K_PER_MS
}

/// 90 kHz ticks in `ms` milliseconds.
pub const fn ticks_90k_from_ms(ms: i64) -> i64 {
    ms.saturating_mul(TICKS_90K_PER_MS)
}

/// Seconds, fractional, in `ticks_90k` (for people and JSON).
pub fn secs_from_90k(ticks_90k: i64) -> f64 {
    ticks_90k as f64 / 90_000.0
}

pub trait Clock: Send + Sync {
    fn now_unix_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A monotonic clock in milliseconds since an arbitrary origin (its creation).
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now_unix_ms(&self) -> i64 {
        self.0.elapsed().as_millis() as i64
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(unix_ms: i64) -> Self {
        ManualClock(AtomicI64::new(unix_ms))
    }
    pub fn set(&self, unix_ms: i64) {
        self.0.store(unix_ms, Ordering::SeqCst);
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A media-time step forwards larger than this is a break in the camera's timeline,
/// not frames it skipped.
const MAX_FORWARD_JUMP_90K: i64 = 10 * 90_000;

/// Whether a camera's media time broke between two frames in a row: it went back (a
/// shared encoder restarts its timeline when another client joins; cameras here send no
/// B-frames, so presentation times only grow) or leapt forward.
pub fn media_time_broke(last_90k: i64, next_90k: i64) -> bool {
    next_90k <= last_90k || next_90k - last_90k > MAX_FORWARD_JUMP_90K
}

/// How long a frame's lateness counts toward [`MediaClock`]'s anchor.
const MEDIA_CLOCK_WINDOW_MS: i64 = 10_000;

/// The wall-clock times of one camera session's frames, read from the camera's own media
/// clock rather than from when each frame happened to arrive.
///
/// Why: a frame reaches the recorder late by whatever the network, the kernel's buffers
/// and the runtime add, and that delay varies frame to frame (more so since the recorder
/// reads its cameras in rounds, [`crate::ingest::rounds`]). Stamping each chunk with its
/// arrival made footage time jitter by that much between chunks, and chunks could
/// overlap. The camera's 90 kHz timestamps are exact between frames; what they lack is
/// the wall-clock moment of one of them.
///
/// How: a frame can arrive late but never early, so `arrival − media time` is the
/// anchor plus a delay that is never negative, and its minimum over the last
/// [`MEDIA_CLOCK_WINDOW_MS`] is the least-delayed frame's, the best estimate. A camera
/// clock that runs slow moves the minimum up as old frames leave the window; one that runs
/// fast, or a wall clock set back, moves it down at once; a wall clock set forward is
/// followed within the window. A break in the media timeline ([`media_time_broke`])
/// starts over from the frame that shows it.
#[derive(Debug, Default)]
pub struct MediaClock {
    /// `(arrival_unix_ms, arrival − media ms)` of the frames that can still be the
    /// window's minimum: arrivals increasing, offsets increasing.
    lows: VecDeque<(i64, i64)>,
    last_pts_90k: Option<i64>,
}

impl MediaClock {
    /// Takes a frame with media time `pts_90k` that arrived at `arrival_unix_ms`, and
    /// returns its wall-clock time.
    pub fn frame_unix_ms(&mut self, pts_90k: i64, arrival_unix_ms: i64) -> i64 {
        if let Some(last) = self.last_pts_90k
            && media_time_broke(last, pts_90k)
        {
            self.lows.clear();
        }
        self.last_pts_90k = Some(pts_90k);
        let media_ms = ms_from_90k(pts_90k);
        let offset = arrival_unix_ms - media_ms;
        while self
            .lows
            .front()
            .is_some_and(|&(at, _)| at <= arrival_unix_ms - MEDIA_CLOCK_WINDOW_MS)
        {
            self.lows.pop_front();
        }
        // Entries this frame beats can never be the minimum again.
        while self.lows.back().is_some_and(|&(_, o)| o >= offset) {
            self.lows.pop_back();
        }
        self.lows.push_back((arrival_unix_ms, offset));
        media_ms + self.lows.front().expect("pushed above").1
    }
}

/// RFC 3339 UTC with millisecond precision, as every interface of Ringfence prints time.
pub fn rfc3339(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("@{unix_ms}ms"))
}

/// Parses an RFC 3339 time (any offset; converted to UTC) into unix milliseconds.
/// The error names the input, which is the caller's own text.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    if s.len() > 64 {
        return Err("time is too long to be an RFC 3339 time".into());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("{s:?} is not an RFC 3339 time (e.g. 2025-01-31T12:00:00Z)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 25 frames a second on the camera's clock (3600 ticks apart) from `pts0`.
    fn pts(pts0: i64, i: i64) -> i64 {
        pts0 + i * 3600
    }

    /// Delays of 0..=max_ms, from a fixed seed; every 10th frame (the first too) comes
    /// at once.
    fn delays(n: usize, max_ms: i64) -> Vec<i64> {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 10 == 0 {
                    0
                } else {
                    (x % (max_ms as u64 + 1)) as i64
                }
            })
            .collect()
    }

    #[test]
    fn jittered_arrivals_get_the_cameras_times() {
        let t0 = 1_700_000_000_000;
        let mut c = MediaClock::default();
        let d = delays(2500, 100);
        for (i, delay) in d.iter().enumerate() {
            let i = i as i64;
            let truth = t0 + i * 40;
            let got = c.frame_unix_ms(pts(123_456, i), truth + delay);
            assert!(
                (0..=1).contains(&(got - truth)),
                "frame {i}: {got} for {truth} (arrived {} late)",
                delay
            );
        }
    }

    #[test]
    fn a_slow_or_fast_camera_clock_is_followed() {
        for ppm in [-2000i64, 2000] {
            let t0 = 1_700_000_000_000;
            let mut c = MediaClock::default();
            let d = delays(25 * 120, 80);
            for (i, delay) in d.iter().enumerate() {
                let i = i as i64;
                // The camera says 40 ms a frame; the wall clock sees 40 ms ± ppm.
                let truth = t0 + i * 40 + i * 40 * ppm / 1_000_000;
                let got = c.frame_unix_ms(pts(0, i), truth + delay);
                // Never later than the frame arrived; behind by at most the drift over
                // the window (2000 ppm of 10 s: 20 ms).
                assert!(got <= truth + delay, "{ppm} ppm, frame {i}");
                assert!(
                    (got - truth).abs() <= 21,
                    "{ppm} ppm, frame {i}: off by {}",
                    got - truth
                );
            }
        }
    }

    #[test]
    fn frames_held_back_by_a_stall_keep_their_own_times() {
        let t0 = 1_700_000_000_000;
        let mut c = MediaClock::default();
        for i in 0..100 {
            assert_eq!(c.frame_unix_ms(pts(0, i), t0 + i * 40), t0 + i * 40);
        }
        // The network stalls for 3 s; the 75 frames held back come at once.
        let burst_at = t0 + 100 * 40 + 3000;
        for i in 100..175 {
            assert_eq!(
                c.frame_unix_ms(pts(0, i), burst_at),
                t0 + i * 40,
                "frame {i}"
            );
        }
    }

    #[test]
    fn a_broken_media_timeline_starts_over_from_the_frames_arrival() {
        let t0 = 1_700_000_000_000;
        let mut c = MediaClock::default();
        for i in 0..50 {
            c.frame_unix_ms(pts(9_000_000, i), t0 + i * 40);
        }
        // Another client joined the shared encoder: its timeline went back to 0.
        let at = t0 + 50 * 40;
        assert_eq!(c.frame_unix_ms(pts(0, 0), at), at);
        assert_eq!(c.frame_unix_ms(pts(0, 1), at + 40), at + 40);
        // ... or leapt forward by an hour.
        assert_eq!(c.frame_unix_ms(pts(0, 1) + 3600 * 90_000, at + 80), at + 80);
    }

    #[test]
    fn a_wall_clock_set_back_is_followed_at_once_and_one_set_forward_within_the_window() {
        let t0 = 1_700_000_000_000;
        let mut c = MediaClock::default();
        for i in 0..100 {
            c.frame_unix_ms(pts(0, i), t0 + i * 40);
        }
        let back = t0 - 3_600_000;
        assert_eq!(
            c.frame_unix_ms(pts(0, 100), back + 100 * 40),
            back + 100 * 40
        );
        let fwd = 7_200_000;
        let mut last = 0;
        for i in 101..(101 + 25 * 11) {
            last = c.frame_unix_ms(pts(0, i), back + fwd + i * 40);
        }
        assert_eq!(last, back + fwd + (100 + 25 * 11) * 40);
    }
}

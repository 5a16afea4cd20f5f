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

//! Wall time behind a trait, so that retention, expiry and backoff can be tested
//! with simulated days instead of sleeps.

use std::sync::atomic::{AtomicI64, Ordering};

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

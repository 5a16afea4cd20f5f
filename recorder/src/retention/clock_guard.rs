//! Age deletion trusts the wall clock only after checking it: a clock stepped to 1970
//! or a year ahead must not erase the store.

use super::*;

/// Why the wall clock may not judge age now. Displayed to the operator (logs, health).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockDistrust {
    #[error("wall clock reads {}, earlier than this build ({}): the clock was reset", rfc3339(*now_unix_ms), rfc3339(CLOCK_FLOOR_UNIX_MS))]
    Reset { now_unix_ms: i64 },
    #[error(
        "wall clock reads {}, earlier than the newest recorded footage ({}): the clock went back",
        rfc3339(*now_unix_ms), rfc3339(*newest_unix_ms)
    )]
    WentBack {
        now_unix_ms: i64,
        newest_unix_ms: i64,
    },
    #[error(
        "wall clock jumped forward by {} (reads {}, expected about {}); \
         age retention waits until the clock is corrected or the recorder is restarted",
        humantime::format_duration(Duration::from_millis(*ahead_ms as u64)),
        rfc3339(*now_unix_ms), rfc3339(*expected_unix_ms)
    )]
    JumpedForward {
        ahead_ms: i64,
        now_unix_ms: i64,
        expected_unix_ms: i64,
    },
    #[error("cannot read the newest footage: {0}")]
    Unreadable(String),
}

impl Retention {
    /// Whether the wall clock may be used to judge age. `Err` says why not.
    ///
    /// Refuses when now is before [`CLOCK_FLOOR_UNIX_MS`], when now is earlier than the
    /// newest recorded footage, or when the wall clock ran ahead of the monotonic clock
    /// by more than [`MAX_FORWARD_JUMP_MS`] since the last trusted pass. A jump forward
    /// keeps age retention stopped until the clock comes back or the recorder is
    /// restarted (the operator's confirmation that the new time is right).
    pub fn clock_check(&mut self) -> std::result::Result<(), ClockDistrust> {
        let now = self.clock.now_unix_ms();
        let mono = self.mono.now_unix_ms();
        if now < CLOCK_FLOOR_UNIX_MS {
            return Err(ClockDistrust::Reset { now_unix_ms: now });
        }
        let newest: Option<i64> = self
            .cat
            .newest_closed_end_unix_ms()
            .map_err(|e| ClockDistrust::Unreadable(e.to_string()))?;
        if let Some(newest) = newest
            && newest > now + FOOTAGE_AHEAD_TOLERANCE_MS
        {
            return Err(ClockDistrust::WentBack {
                now_unix_ms: now,
                newest_unix_ms: newest,
            });
        }
        if let Some((wall, m)) = self.last_trusted {
            let ahead = (now - wall) - (mono - m);
            if ahead > MAX_FORWARD_JUMP_MS {
                return Err(ClockDistrust::JumpedForward {
                    ahead_ms: ahead,
                    now_unix_ms: now,
                    expected_unix_ms: wall + (mono - m),
                });
            }
        }
        self.last_trusted = Some((now, mono));
        Ok(())
    }
}

//! Slows down and then locks out repeated failed logins, per user name and per client
//! address, so that password guessing costs hours instead of seconds.
//!
//! Kept in memory: a restart forgets the counters, which an attacker cannot cause from
//! outside; persisting them would let a flood of failures fill the disk. The map is
//! bounded. All timing comes from the injected [`Clock`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;

/// Failures are counted over this window (and a lock lasts this long).
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
pub const LOCK_MS: i64 = 15 * 60 * 1000;
/// Consecutive failures for one user name before it is locked.
pub const USER_LIMIT: u32 = 5;
/// Failures from one address (any names) before it is locked.
pub const ADDR_LIMIT: u32 = 20;
/// Failures after which each further attempt is answered slowly.
pub const SLOW_AFTER: u32 = 3;
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy, Default)]
struct State {
    failures: u32,
    last_ms: i64,
    locked_until_ms: i64,
}

pub struct Throttle {
    map: Mutex<HashMap<String, State>>,
    clock: Arc<dyn Clock>,
    /// Delay per failure beyond [`SLOW_AFTER`] (zero in unit tests).
    step: Duration,
}

/// Why an attempt is refused before its password is even checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub until_ms: i64,
    pub what: &'static str,
}

impl Throttle {
    pub fn new(clock: Arc<dyn Clock>, step: Duration) -> Self {
        Throttle {
            map: Mutex::new(HashMap::new()),
            clock,
            step,
        }
    }

    fn keys(user: &str, addr: &str) -> [(String, u32, &'static str); 2] {
        [
            (format!("u:{user}"), USER_LIMIT, "user"),
            (format!("a:{addr}"), ADDR_LIMIT, "address"),
        ]
    }

    /// Refuses the attempt while the user or the address is locked.
    pub fn check(&self, user: &str, addr: &str) -> Result<(), Locked> {
        let now = self.clock.now_unix_ms();
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for (key, _, what) in Self::keys(user, addr) {
            if let Some(s) = map.get(&key)
                && s.locked_until_ms > now
            {
                return Err(Locked {
                    until_ms: s.locked_until_ms,
                    what,
                });
            }
        }
        Ok(())
    }

    /// Counts a failure; returns how long to hold the answer back, and whether this
    /// failure locked the user or the address.
    pub fn failed(&self, user: &str, addr: &str) -> (Duration, Option<Locked>) {
        let now = self.clock.now_unix_ms();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, s| s.locked_until_ms > now || now - s.last_ms < WINDOW_MS);
            if map.len() >= MAX_KEYS {
                // Still full of fresh failures: forget the oldest half.
                let mut v: Vec<_> = map.iter().map(|(k, s)| (s.last_ms, k.clone())).collect();
                v.sort();
                for (_, k) in v.into_iter().take(MAX_KEYS / 2) {
                    map.remove(&k);
                }
            }
        }
        let mut worst = 0;
        let mut locked = None;
        for (key, limit, what) in Self::keys(user, addr) {
            let s = map.entry(key).or_default();
            if now - s.last_ms >= WINDOW_MS && s.locked_until_ms <= now {
                s.failures = 0;
            }
            s.failures += 1;
            s.last_ms = now;
            if s.failures >= limit && s.locked_until_ms <= now {
                s.locked_until_ms = now + LOCK_MS;
                locked = Some(Locked {
                    until_ms: s.locked_until_ms,
                    what,
                });
            }
            worst = worst.max(s.failures);
        }
        let slow = worst.saturating_sub(SLOW_AFTER - 1).min(8);
        (self.step * slow, locked)
    }

    /// A success clears the user's count (not the address's: one good password
    /// must not reset a guessing run over other names).
    pub fn succeeded(&self, user: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&format!("u:{user}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn locks_user_after_limit_and_unlocks_later() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let t = Throttle::new(clock.clone(), Duration::from_millis(100));
        for i in 1..USER_LIMIT {
            assert!(t.check("anna", "1.2.3.4").is_ok());
            let (delay, locked) = t.failed("anna", "1.2.3.4");
            assert!(locked.is_none());
            assert_eq!(delay.is_zero(), i < SLOW_AFTER, "failure {i}");
        }
        let (_, locked) = t.failed("anna", "1.2.3.4");
        assert_eq!(locked.unwrap().what, "user");
        assert!(
            t.check("anna", "5.6.7.8").is_err(),
            "locked whatever the address"
        );
        assert!(t.check("bert", "1.2.3.4").is_ok(), "address not yet locked");
        clock.advance_ms(LOCK_MS - 1);
        assert!(t.check("anna", "1.2.3.4").is_err());
        clock.advance_ms(1);
        assert!(t.check("anna", "1.2.3.4").is_ok());
        // the count starts again after the lock
        assert!(t.failed("anna", "1.2.3.4").1.is_none());
    }

    #[test]
    fn locks_address_across_names() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let t = Throttle::new(clock, Duration::ZERO);
        let mut locked = None;
        for i in 0..ADDR_LIMIT {
            locked = t.failed(&format!("user{i}"), "9.9.9.9").1;
        }
        assert_eq!(locked.unwrap().what, "address");
        assert!(t.check("newname", "9.9.9.9").is_err());
        assert!(t.check("newname", "8.8.8.8").is_ok());
    }

    #[test]
    fn success_resets_user_and_old_failures_fade() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let t = Throttle::new(clock.clone(), Duration::ZERO);
        for _ in 0..USER_LIMIT - 1 {
            t.failed("anna", "1.1.1.1");
        }
        t.succeeded("anna");
        assert!(t.failed("anna", "1.1.1.1").1.is_none());
        for _ in 0..USER_LIMIT - 2 {
            t.failed("anna", "1.1.1.1");
        }
        clock.advance_ms(WINDOW_MS);
        assert!(t.failed("anna", "1.1.1.1").1.is_none());
    }
}

//! How many wrong passwords anyone may try, and why nobody can lock an officer out for
//! ever by trying on their behalf.
//!
//! **Counted before the password is checked.** [`Throttle::reserve`] counts the attempt
//! as a failure, atomically with the check that nothing is locked, *before* argon2 runs;
//! a correct password then gives the attempt back ([`Throttle::succeeded`]). So 40 wrong
//! passwords sent at once are checked at most [`PAIR_LIMIT`] times, and a correct
//! password sent with them is refused like the rest once the lock is on.
//!
//! **Three counters per attempt**, each over [`WINDOW_MS`], each locking for
//! [`LOCK_MS`] when it reaches its limit:
//!
//! | counter | limit | what it locks |
//! |---|---|---|
//! | the user *from this address* | [`PAIR_LIMIT`] (5) | that user, from that address only |
//! | the address, any names | [`ADDR_LIMIT`] (20) | every name from that address |
//! | the user, any address | [`USER_LIMIT`] (20) | that user from addresses they never logged in from |
//!
//! An attacker's failures therefore lock the attacker's own address and the officer *from
//! the attacker's address*; the officer still gets in from an address that has not
//! failed, and from an address they logged in from during the last [`KNOWN_MS`] (a
//! "known" address) even when many addresses guess at once. Guessing is bounded all the
//! same: 5 tries per 15 minutes per user and address, 20 per address, and 20 per user
//! from unknown addresses. IPv6 addresses count by their /64, which one subscriber gets.
//! Beyond [`SLOW_AFTER`] failures each further answer is also held back a little.
//!
//! **Kept across restarts** when built with [`Throttle::persistent`]: every change of a
//! counter is written to the user database (table `login_throttle`) before the password
//! is checked; if it cannot be written, the login is refused. Counters of names that are
//! not users stay in memory (keyed by a salted hash, so that nothing typed into the
//! name field, such as a password, is kept), since there is no account to protect; they
//! behave the same meanwhile, so answers do not tell which names exist. The table and
//! the memory are bounded ([`MAX_KEYS`]: stale counters go first, then the oldest).
//!
//! **The access log under a flood**: each checked password gets its own entry (at most
//! 5 per user and address, 20 per address, per 15 minutes), but attempts refused while
//! locked get at most one entry per (name, address) per [`REFUSAL_ROW_MS`], carrying the
//! count of those refused since the previous one ([`Throttle::refusal_row`],
//! [`Throttle::summaries_due`]). All timing comes from the injected [`Clock`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngCore;
use sha2::{Digest, Sha256};
use tracing::error;

use crate::audit::NewEntry;
use crate::clock::{Clock, rfc3339};

/// Failures are counted over this window (and a lock lasts [`LOCK_MS`]).
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
pub const LOCK_MS: i64 = 15 * 60 * 1000;
/// Failures of one user name from one address before that pair is locked.
pub const PAIR_LIMIT: u32 = 5;
/// Failures from one address (any names) before the address is locked.
pub const ADDR_LIMIT: u32 = 20;
/// Failures of one user name from any addresses before it is locked for addresses it
/// has not logged in from.
pub const USER_LIMIT: u32 = 20;
/// An address a user logged in from this recently is "known" for that user.
pub const KNOWN_MS: i64 = 90 * 24 * 3600 * 1000;
/// Failures after which each further attempt is answered slowly.
pub const SLOW_AFTER: u32 = 3;
/// At most one access-log entry per (name, address) for attempts refused while locked
/// in this long.
pub const REFUSAL_ROW_MS: i64 = 60 * 1000;
/// Counters kept (in memory and in the table).
pub const MAX_KEYS: usize = 10_000;

/// One counter as kept (and persisted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub failures: u32,
    /// The last failure (for a known address: the last successful login).
    pub last_ms: i64,
    pub locked_until_ms: i64,
}

/// Where [`Throttle::persistent`] keeps its counters (the user database).
pub trait Persist: Send + Sync {
    fn load_throttle(&self) -> Result<Vec<(String, Counter)>, String>;
    /// Writes these rows durably (`None`: delete the row), all or none.
    fn save_throttle(&self, rows: &[(String, Option<Counter>)]) -> Result<(), String>;
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    c: Counter,
    persist: bool,
}

impl Slot {
    fn stale(&self, key: &str, now: i64) -> bool {
        if key.starts_with("k:") {
            now - self.c.last_ms >= KNOWN_MS
        } else {
            self.c.locked_until_ms <= now && now - self.c.last_ms >= WINDOW_MS
        }
    }
}

#[derive(Debug, Clone)]
struct Agg {
    row_ms: i64,
    suppressed: u32,
    client: String,
    what: &'static str,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Slot>,
    refusals: HashMap<(String, String), Agg>,
    /// Attempts of each address whose password is being checked right now.
    flying: HashMap<String, Arc<AtomicU32>>,
}

/// One attempt in flight for its address, until it is dropped (answered).
#[derive(Debug)]
struct Flight(Arc<AtomicU32>);

impl Drop for Flight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct Throttle {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
    /// Delay per failure beyond [`SLOW_AFTER`] (zero in unit tests).
    step: Duration,
    store: Option<Arc<dyn Persist>>,
    /// Salt of the in-memory keys of names that are not users.
    salt: [u8; 32],
}

/// Why an attempt is refused before its password is even checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub until_ms: i64,
    /// `"user"` (this user from this address), `"address"`, or
    /// `"user from new addresses"`.
    pub what: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Locked(Locked),
    /// So many sign-ins from this address are being checked at once that one more
    /// could lock it although none has failed (an office behind one address at the
    /// start of a shift): not tried, not counted; try again in a moment.
    Busy,
    /// The counters could not be written: the login is refused (fail closed).
    Unavailable(String),
}

/// A reserved attempt: already counted as a failure. Give it back with
/// [`Throttle::succeeded`] when the password was right; dropping it leaves it counted.
#[derive(Debug)]
pub struct Attempt {
    user: String,
    addr: String,
    persist_user: bool,
    /// Keys this attempt locked (undone if it succeeds).
    locked_now: Vec<String>,
    /// How long to hold back the answer if the password was wrong.
    pub delay: Duration,
    /// The lock this attempt set, if it fails.
    pub locks: Option<Locked>,
    /// Counted among its address's attempts in flight until dropped.
    _flight: Flight,
}

/// The counting unit of an address: IPv4 as is, IPv6 by its /64.
pub fn address_key(addr: &str) -> String {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => addr.chars().take(64).collect(),
    }
}

impl Throttle {
    /// Counters in memory only (tests; a restart forgets them).
    pub fn new(clock: Arc<dyn Clock>, step: Duration) -> Self {
        let mut salt = [0u8; 32];
        rand::rng().fill_bytes(&mut salt);
        Throttle {
            inner: Mutex::new(Inner::default()),
            clock,
            step,
            store: None,
            salt,
        }
    }

    /// Counters kept in `store` too, and loaded from it: a restart keeps every lock.
    pub fn persistent(
        clock: Arc<dyn Clock>,
        step: Duration,
        store: Arc<dyn Persist>,
    ) -> Result<Self, String> {
        let mut t = Throttle::new(clock, step);
        let now = t.clock.now_unix_ms();
        let mut gone = Vec::new();
        {
            let inner = t.inner.get_mut().unwrap_or_else(|p| p.into_inner());
            for (key, c) in store.load_throttle()? {
                let slot = Slot { c, persist: true };
                if slot.stale(&key, now) || inner.map.len() >= MAX_KEYS {
                    gone.push((key, None));
                } else {
                    inner.map.insert(key, slot);
                }
            }
        }
        if !gone.is_empty() {
            store.save_throttle(&gone)?;
        }
        t.store = Some(store);
        Ok(t)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The name as the counters know it: a user's own name, or a salted hash of
    /// whatever else was typed.
    fn user_key(&self, user: &str, is_user: bool) -> String {
        if is_user {
            user.to_string()
        } else {
            let mut h = Sha256::new();
            h.update(self.salt);
            h.update(user.as_bytes());
            format!("?{}", &hex::encode(h.finalize())[..32])
        }
    }

    /// Makes room for new keys; returns the persisted keys it dropped.
    fn prune(map: &mut HashMap<String, Slot>, now: i64) -> Vec<(String, Option<Counter>)> {
        let mut dropped = Vec::new();
        if map.len() < MAX_KEYS {
            return dropped;
        }
        map.retain(|k, s| {
            let keep = !s.stale(k, now);
            if !keep && s.persist {
                dropped.push((k.clone(), None));
            }
            keep
        });
        if map.len() >= MAX_KEYS {
            // Still full of fresh counters: forget the oldest half, locks last.
            let mut v: Vec<_> = map
                .iter()
                .map(|(k, s)| (s.c.locked_until_ms > now, s.c.last_ms, k.clone()))
                .collect();
            v.sort();
            for (_, _, k) in v.into_iter().take(MAX_KEYS / 2) {
                if let Some(s) = map.remove(&k)
                    && s.persist
                {
                    dropped.push((k, None));
                }
            }
        }
        dropped
    }

    fn save(&self, rows: &[(String, Option<Counter>)]) -> Result<(), String> {
        match &self.store {
            Some(s) if !rows.is_empty() => s.save_throttle(rows),
            _ => Ok(()),
        }
    }

    /// The lock that would refuse an attempt of `user` from `addr` now, if any (the one
    /// that lasts longest, so that Retry-After is true). Counts nothing.
    pub fn peek(&self, user: &str, addr: &str, is_user: bool) -> Option<Locked> {
        let user = self.user_key(user, is_user);
        let addr = address_key(addr);
        let inner = self.lock();
        Self::lock_on(&inner.map, &user, &addr, self.clock.now_unix_ms())
    }

    fn lock_on(map: &HashMap<String, Slot>, user: &str, addr: &str, now: i64) -> Option<Locked> {
        let kk = format!("k:{user}|{addr}");
        let known_addr = map.get(&kk).is_some_and(|s| !s.stale(&kk, now));
        let mut refused: Option<Locked> = None;
        for (key, what, applies) in [
            (format!("p:{user}|{addr}"), "user", true),
            (format!("a:{addr}"), "address", true),
            (format!("u:{user}"), "user from new addresses", !known_addr),
        ] {
            if let Some(s) = map.get(&key)
                && applies
                && s.c.locked_until_ms > now
                && refused
                    .as_ref()
                    .is_none_or(|r| r.until_ms < s.c.locked_until_ms)
            {
                refused = Some(Locked {
                    until_ms: s.c.locked_until_ms,
                    what,
                });
            }
        }
        refused
    }

    /// Refuses the attempt while any lock that applies holds; otherwise counts it as a
    /// failure (durably, with [`Throttle::persistent`]) and lets the password be
    /// checked. `is_user`: whether `user` names an existing account.
    pub fn reserve(&self, user: &str, addr: &str, is_user: bool) -> Result<Attempt, Refusal> {
        let now = self.clock.now_unix_ms();
        let user = self.user_key(user, is_user);
        let addr = address_key(addr);
        let kp = format!("p:{user}|{addr}");
        let ka = format!("a:{addr}");
        let ku = format!("u:{user}");
        let mut inner = self.lock();
        if let Some(l) = Self::lock_on(&inner.map, &user, &addr, now) {
            return Err(Refusal::Locked(l));
        }
        if inner.flying.len() >= MAX_KEYS {
            inner.flying.retain(|_, n| n.load(Ordering::SeqCst) > 0);
        }
        let flying = inner.flying.entry(addr.clone()).or_default().clone();
        // Attempts still being checked count towards the address's limit (a flood of
        // guesses cannot outrun it) but lock it only once they have failed.
        if let Some(s) = inner.map.get(&ka)
            && !s.stale(&ka, now)
        {
            let completed = s.c.failures.saturating_sub(flying.load(Ordering::SeqCst));
            if s.c.failures + 1 >= ADDR_LIMIT && completed + 1 < ADDR_LIMIT {
                return Err(Refusal::Busy);
            }
        }
        let map = &mut inner.map;
        let counters = [
            (&kp, PAIR_LIMIT, "user", is_user),
            (&ka, ADDR_LIMIT, "address", true),
            (&ku, USER_LIMIT, "user from new addresses", is_user),
        ];
        let mut rows = Self::prune(map, now);
        let mut worst = 0;
        let mut locks = None;
        let mut locked_now = Vec::new();
        for (key, limit, what, persist) in counters {
            let s = map.entry(key.clone()).or_insert(Slot {
                c: Counter::default(),
                persist,
            });
            if s.stale(key, now) {
                s.c = Counter::default();
            }
            s.c.failures += 1;
            s.c.last_ms = now;
            if s.c.failures >= limit && s.c.locked_until_ms <= now {
                s.c.locked_until_ms = now + LOCK_MS;
                locked_now.push(key.clone());
                // The narrowest lock names the attempt's outcome.
                locks.get_or_insert(Locked {
                    until_ms: s.c.locked_until_ms,
                    what,
                });
            }
            worst = worst.max(s.c.failures);
            if persist {
                rows.push((key.clone(), Some(s.c)));
            }
        }
        flying.fetch_add(1, Ordering::SeqCst);
        let flight = Flight(flying);
        drop(inner);
        // Durable before the password is checked (a crash cannot give attempts back).
        self.save(&rows).map_err(Refusal::Unavailable)?;
        let slow = worst.saturating_sub(SLOW_AFTER - 1).min(8);
        Ok(Attempt {
            user,
            addr,
            persist_user: is_user,
            locked_now,
            delay: self.step * slow,
            locks,
            _flight: flight,
        })
    }

    /// The password of `attempt` was right: the attempt is given back, the user's count
    /// from this address is cleared (not the address's: one good password must not
    /// reset a guessing run over other names), and the address becomes known for them.
    pub fn succeeded(&self, attempt: Attempt) {
        let now = self.clock.now_unix_ms();
        let kp = format!("p:{}|{}", attempt.user, attempt.addr);
        let ka = format!("a:{}", attempt.addr);
        let ku = format!("u:{}", attempt.user);
        let kk = format!("k:{}|{}", attempt.user, attempt.addr);
        let mut rows = Vec::new();
        let mut inner = self.lock();
        let map = &mut inner.map;
        if let Some(s) = map.remove(&kp)
            && s.persist
        {
            rows.push((kp, None));
        }
        for key in [ka, ku] {
            if let Some(s) = map.get_mut(&key) {
                s.c.failures = s.c.failures.saturating_sub(1);
                if attempt.locked_now.contains(&key) {
                    s.c.locked_until_ms = 0;
                }
                if s.persist {
                    rows.push((key, Some(s.c)));
                }
            }
        }
        rows.extend(Self::prune(map, now));
        let known = Counter {
            failures: 0,
            last_ms: now,
            locked_until_ms: 0,
        };
        map.insert(
            kk.clone(),
            Slot {
                c: known,
                persist: attempt.persist_user,
            },
        );
        if attempt.persist_user {
            rows.push((kk, Some(known)));
        }
        drop(inner);
        if let Err(e) = self.save(&rows) {
            error!(error = %e, "cannot store the login counters after a successful login");
        }
    }

    /// Whether an attempt refused while locked gets its own access-log entry:
    /// `Some((n, since))` at most once per [`REFUSAL_ROW_MS`] per name and address, `n`
    /// being the refusals counted (not logged one by one) since the previous entry at
    /// `since`; `None`: only counted, for the next entry or [`Throttle::summaries_due`].
    pub fn refusal_row(&self, actor: &str, client: &str, what: &'static str) -> Option<(u32, i64)> {
        let now = self.clock.now_unix_ms();
        let key = (actor.to_string(), address_key(client));
        let mut inner = self.lock();
        let refusals = &mut inner.refusals;
        match refusals.get_mut(&key) {
            Some(a) if now - a.row_ms < REFUSAL_ROW_MS => {
                a.suppressed += 1;
                a.client = client.to_string();
                a.what = what;
                None
            }
            Some(a) => {
                let earlier = (a.suppressed, a.row_ms);
                a.row_ms = now;
                a.suppressed = 0;
                Some(earlier)
            }
            None => {
                if refusals.len() >= MAX_KEYS {
                    refusals.retain(|_, a| a.suppressed > 0 || now - a.row_ms < REFUSAL_ROW_MS);
                }
                if refusals.len() < MAX_KEYS {
                    refusals.insert(
                        key,
                        Agg {
                            row_ms: now,
                            suppressed: 0,
                            client: client.to_string(),
                            what,
                        },
                    );
                }
                Some((0, now))
            }
        }
    }

    /// Entries for the refusals counted by [`Throttle::refusal_row`] whose minute has
    /// passed without an entry of their own (the flood stopped): one per (name,
    /// address), with the count. Call regularly and append them to the access log.
    pub fn summaries_due(&self) -> Vec<NewEntry> {
        self.summaries(false)
    }

    /// Every counted refusal not yet in the log (at shutdown).
    pub fn summaries_all(&self) -> Vec<NewEntry> {
        self.summaries(true)
    }

    fn summaries(&self, all: bool) -> Vec<NewEntry> {
        let now = self.clock.now_unix_ms();
        let mut out = Vec::new();
        let mut inner = self.lock();
        inner.refusals.retain(|(actor, _), a| {
            let due = all || now - a.row_ms >= REFUSAL_ROW_MS;
            if due && a.suppressed > 0 {
                out.push(NewEntry {
                    actor: actor.clone(),
                    role: "-".into(),
                    action: "login".into(),
                    client: Some(a.client.clone()),
                    outcome: refused_outcome(a.what, a.suppressed, a.row_ms),
                    ..Default::default()
                });
                a.suppressed = 0;
                a.row_ms = now;
                return true;
            }
            !due
        });
        out
    }
}

/// What [`Refusal::Busy`] refusals are counted and logged as.
pub const BUSY: &str = "address busy";

/// The outcome of an access-log entry for attempts refused while locked (or while
/// their address was [`BUSY`]); `earlier` refusals since `since_ms` were counted
/// instead of logged one by one.
pub fn refused_outcome(what: &str, earlier: u32, since_ms: i64) -> String {
    let mut s = if what == BUSY {
        "denied: too many sign-ins at once from this address (not tried)".to_string()
    } else {
        format!("denied: {what} locked after failed logins")
    };
    if earlier > 0 {
        s += &format!(
            "; {earlier} more attempts refused since {} (counted, not logged one by one)",
            rfc3339(since_ms)
        );
    }
    s
}

/// Appends [`Throttle::summaries_due`] to the access log every 10 s, for ever.
pub async fn flush_refusals(state: crate::api::Shared) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let rows = state.throttle.summaries_due();
        if rows.is_empty() {
            continue;
        }
        let audit = state.audit.clone();
        let r = tokio::task::spawn_blocking(move || {
            rows.into_iter().try_for_each(|e| audit.append(e).map(drop))
        })
        .await;
        if !matches!(r, Ok(Ok(()))) {
            error!("cannot write the refused-login counts to the access log");
            state.metrics.audit_failures.inc();
        }
    }
}

#[cfg(test)]
mod tests;

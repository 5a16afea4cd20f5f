use super::*;
use crate::clock::ManualClock;

fn locked(r: Result<Attempt, Refusal>) -> Locked {
    match r {
        Err(Refusal::Locked(l)) => l,
        other => panic!("not locked: {other:?}"),
    }
}

#[test]
fn locks_the_user_from_that_address_after_limit_and_unlocks_later() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let t = Throttle::new(clock.clone(), Duration::from_millis(100));
    for i in 1..=PAIR_LIMIT {
        let a = t.reserve("anna", "1.2.3.4", true).unwrap();
        assert_eq!(a.delay.is_zero(), i < SLOW_AFTER, "failure {i}");
        assert_eq!(a.locks.is_some(), i == PAIR_LIMIT, "failure {i}");
    }
    let l = locked(t.reserve("anna", "1.2.3.4", true));
    assert_eq!(l.what, "user");
    assert_eq!(l.until_ms, 1_000_000 + LOCK_MS);
    // the same user from an address that has not failed still gets in
    t.succeeded(t.reserve("anna", "5.6.7.8", true).unwrap());
    // another name from the locked pair's address is not locked
    assert!(t.reserve("bert", "1.2.3.4", true).is_ok());
    clock.advance_ms(LOCK_MS - 1);
    assert!(t.reserve("anna", "1.2.3.4", true).is_err());
    clock.advance_ms(1);
    // the count starts again after the lock
    assert!(t.reserve("anna", "1.2.3.4", true).unwrap().locks.is_none());
}

#[test]
fn a_correct_password_among_the_first_gives_its_attempt_back() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let t = Throttle::new(clock, Duration::ZERO);
    for _ in 1..PAIR_LIMIT {
        drop(t.reserve("anna", "1.1.1.1", true).unwrap());
    }
    // the fifth is right: it locked the pair when reserved, and that is undone
    let fifth = t.reserve("anna", "1.1.1.1", true).unwrap();
    assert!(fifth.locks.is_some());
    t.succeeded(fifth);
    assert!(t.reserve("anna", "1.1.1.1", true).unwrap().locks.is_none());
}

/// An office behind one address signing in at once is told to retry, not locked
/// out: attempts in flight count towards the address's limit but lock it only once
/// they have failed (a crowd of guesses is still held to the limit).
#[test]
fn a_crowd_signing_in_at_once_is_told_to_retry_not_locked_out() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let t = Throttle::new(clock, Duration::ZERO);
    let flying: Vec<Attempt> = (1..ADDR_LIMIT)
        .map(|i| t.reserve(&format!("officer{i}"), "10.1.1.1", true).unwrap())
        .collect();
    assert!(flying.iter().all(|a| a.locks.is_none()));
    assert!(matches!(
        t.reserve("officer99", "10.1.1.1", true),
        Err(Refusal::Busy)
    ));
    for a in flying {
        t.succeeded(a);
    }
    let a = t.reserve("officer99", "10.1.1.1", true).unwrap();
    assert!(a.locks.is_none());
    t.succeeded(a);
    // The same crowd guessing wrong: the attempts that fail lock the address, and
    // no more than the limit are ever tried.
    let mut tried = 0;
    let mut locked = false;
    for i in 0..3 * ADDR_LIMIT {
        match t.reserve(&format!("guess{i}"), "10.1.1.1", false) {
            Ok(a) => {
                tried += 1;
                drop(a); // a wrong password
            }
            Err(Refusal::Locked(l)) => {
                assert_eq!(l.what, "address");
                locked = true;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(locked);
    assert_eq!(tried, ADDR_LIMIT);
}

#[test]
fn locks_address_across_names() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let t = Throttle::new(clock, Duration::ZERO);
    let mut locks = None;
    for i in 0..ADDR_LIMIT {
        locks = t
            .reserve(&format!("user{i}"), "9.9.9.9", false)
            .unwrap()
            .locks;
    }
    assert_eq!(locks.unwrap().what, "address");
    assert_eq!(
        locked(t.reserve("newname", "9.9.9.9", true)).what,
        "address"
    );
    assert!(t.reserve("newname", "8.8.8.8", true).is_ok());
    // IPv6: the /64 counts as one address
    for i in 0..ADDR_LIMIT {
        let _ = t.reserve(&format!("u{i}"), &format!("2001:db8:1:2::{i:x}"), false);
    }
    assert!(t.reserve("x", "2001:db8:1:2:ffff::1", false).is_err());
    assert!(t.reserve("x", "2001:db8:1:3::1", false).is_ok());
}

/// Finding 7 of issue 9: many addresses guessing one officer's password lock that
/// officer out only from addresses they never used; a known address still opens.
#[test]
fn an_attacker_cannot_lock_an_officer_out_for_ever() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let t = Throttle::new(clock.clone(), Duration::ZERO);
    // the officer logged in from the station last week
    t.succeeded(t.reserve("pia", "10.0.0.5", true).unwrap());
    clock.advance_ms(7 * 24 * 3600 * 1000);
    // an attacker tries from one address, every 15 minutes, for a day
    for _ in 0..(24 * 4) {
        for _ in 0..PAIR_LIMIT {
            drop(t.reserve("pia", "203.0.113.9", true).unwrap());
        }
        assert_eq!(locked(t.reserve("pia", "203.0.113.9", true)).what, "user");
        // the officer gets in, from the station and from an address that has not failed
        t.succeeded(t.reserve("pia", "10.0.0.5", true).unwrap());
        t.succeeded(t.reserve("pia", "198.51.100.7", true).unwrap());
        clock.advance_ms(LOCK_MS);
    }
    // a distributed attack: many addresses, a few tries each
    let mut i = 0;
    let mut global = None;
    while global.is_none() {
        i += 1;
        let a = t.reserve("pia", &format!("192.0.2.{i}"), true).unwrap();
        global = a.locks.filter(|l| l.what == "user from new addresses");
    }
    assert!(i <= USER_LIMIT as usize);
    // new addresses are refused, including one that never failed ...
    assert_eq!(
        locked(t.reserve("pia", "172.16.0.1", true)).what,
        "user from new addresses"
    );
    // ... but the addresses she used before still open
    t.succeeded(t.reserve("pia", "10.0.0.5", true).unwrap());
    t.succeeded(t.reserve("pia", "198.51.100.7", true).unwrap());
    // and the lock ends
    clock.advance_ms(LOCK_MS);
    t.succeeded(t.reserve("pia", "172.16.0.1", true).unwrap());
}

#[test]
fn old_failures_fade_and_unknown_names_behave_the_same() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let t = Throttle::new(clock.clone(), Duration::ZERO);
    for _ in 0..PAIR_LIMIT - 1 {
        drop(t.reserve("anna", "1.1.1.1", true).unwrap());
        drop(t.reserve("nobody", "2.2.2.2", false).unwrap());
    }
    clock.advance_ms(WINDOW_MS);
    assert!(t.reserve("anna", "1.1.1.1", true).unwrap().locks.is_none());
    assert!(
        t.reserve("nobody", "2.2.2.2", false)
            .unwrap()
            .locks
            .is_none()
    );
    for _ in 0..PAIR_LIMIT - 1 {
        drop(t.reserve("nobody", "2.2.2.2", false).unwrap());
    }
    assert_eq!(locked(t.reserve("nobody", "2.2.2.2", false)).what, "user");
    // what was typed as a name is not kept
    let inner = t.lock();
    assert!(inner.map.keys().all(|k| !k.contains("nobody")));
}

#[test]
fn refusals_get_one_row_per_minute_with_a_count() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let t = Throttle::new(clock.clone(), Duration::ZERO);
    assert_eq!(
        t.refusal_row("pia", "1.2.3.4", "user"),
        Some((0, 1_000_000))
    );
    for _ in 0..99 {
        assert_eq!(t.refusal_row("pia", "1.2.3.4", "user"), None);
    }
    // another name or address has its own row
    assert!(
        t.refusal_row("<unknown user>", "1.2.3.4", "address")
            .is_some()
    );
    assert!(t.summaries_due().is_empty());
    clock.advance_ms(REFUSAL_ROW_MS);
    assert_eq!(
        t.refusal_row("pia", "1.2.3.4", "user"),
        Some((99, 1_000_000))
    );
    assert_eq!(t.refusal_row("pia", "1.2.3.4", "user"), None);
    clock.advance_ms(REFUSAL_ROW_MS);
    // the flood stopped: the count left over becomes one row
    let rows = t.summaries_due();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].actor, "pia");
    assert!(
        rows[0].outcome.contains("1 more attempts refused"),
        "{}",
        rows[0].outcome
    );
    assert!(t.summaries_due().is_empty());
}

struct Mem(Mutex<HashMap<String, Counter>>);
impl Persist for Mem {
    fn load_throttle(&self) -> Result<Vec<(String, Counter)>, String> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, c)| (k.clone(), *c))
            .collect())
    }
    fn save_throttle(&self, rows: &[(String, Option<Counter>)]) -> Result<(), String> {
        let mut m = self.0.lock().unwrap();
        for (k, c) in rows {
            match c {
                Some(c) => m.insert(k.clone(), *c),
                None => m.remove(k),
            };
        }
        Ok(())
    }
}

#[test]
fn persistent_counters_survive_a_restart_but_unknown_names_are_not_written() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let store = Arc::new(Mem(Mutex::new(HashMap::new())));
    let t = Throttle::persistent(clock.clone(), Duration::ZERO, store.clone()).unwrap();
    for _ in 0..PAIR_LIMIT {
        drop(t.reserve("anna", "1.2.3.4", true).unwrap());
        drop(
            t.reserve("hunter2-typed-as-a-name", "1.2.3.4", false)
                .unwrap(),
        );
    }
    drop(t);
    assert!(
        store
            .0
            .lock()
            .unwrap()
            .keys()
            .all(|k| !k.contains("hunter2"))
    );
    let t = Throttle::persistent(clock.clone(), Duration::ZERO, store.clone()).unwrap();
    assert_eq!(locked(t.reserve("anna", "1.2.3.4", true)).what, "user");
    // stale rows are dropped at load
    clock.advance_ms(LOCK_MS + WINDOW_MS);
    drop(Throttle::persistent(clock, Duration::ZERO, store.clone()).unwrap());
    assert!(store.0.lock().unwrap().is_empty());
}

use super::*;
use crate::clock::ManualClock;

const T0: i64 = 1_700_000_000_000;

fn db() -> (tempfile::TempDir, Arc<ManualClock>, UserDb) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let db = UserDb::open(
        &dir.path().join("users.sqlite"),
        clock.clone(),
        UserDb::test_argon(),
    )
    .unwrap();
    (dir, clock, db)
}

#[test]
fn login_and_session_expiry() {
    let (_d, clock, db) = db();
    let u = db
        .add_user(
            "anna",
            Role::Police,
            Some(vec!["gate".into()]),
            "correct horse",
        )
        .unwrap();
    assert!(db.check_login("anna", "wrong password").unwrap().is_none());
    assert!(db.check_login("nobody", "correct horse").unwrap().is_none());
    assert_eq!(
        db.check_login("anna", "correct horse").unwrap().unwrap().id,
        u.id
    );

    let (tok, exp) = db.create_session(&u).unwrap();
    assert_eq!(exp, T0 + IDLE_MS);
    // stored hashed only
    let stored: String = db
        .lock()
        .query_row("SELECT token_hash FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_ne!(stored, tok);
    assert_eq!(stored, token_hash(&tok));

    // idle: 14 min later fine, then 15 min idle ends it
    clock.advance_ms(IDLE_MS - 60_000);
    assert!(db.session(&tok).unwrap().is_some());
    clock.advance_ms(IDLE_MS);
    assert!(db.session(&tok).unwrap().is_none());

    // absolute: used every 10 minutes, still ends at 8 h
    clock.set(T0);
    let (tok, _) = db.create_session(&u).unwrap();
    let mut t = T0;
    while t + 600_000 < T0 + MAX_SESSION_MS {
        t += 600_000;
        clock.set(t);
        assert!(db.session(&tok).unwrap().is_some(), "at {}", t - T0);
    }
    clock.set(T0 + MAX_SESSION_MS);
    assert!(db.session(&tok).unwrap().is_none());
}

#[test]
fn revocation_and_disable() {
    let (_d, _clock, db) = db();
    let u = db
        .add_user("ivan", Role::It, None, "it-password-1")
        .unwrap();
    let (tok, _) = db.create_session(&u).unwrap();
    let s = db.session(&tok).unwrap().unwrap();
    db.revoke_session(&s.token_hash).unwrap();
    assert!(db.session(&tok).unwrap().is_none());
    let (tok, _) = db.create_session(&u).unwrap();
    db.set_disabled("ivan", true).unwrap();
    assert!(db.session(&tok).unwrap().is_none());
    assert!(db.check_login("ivan", "it-password-1").unwrap().is_none());
    db.set_disabled("ivan", false).unwrap();
    db.set_password("ivan", "new-password-2").unwrap();
    assert!(db.check_login("ivan", "it-password-1").unwrap().is_none());
    assert!(db.check_login("ivan", "new-password-2").unwrap().is_some());
    assert!(db.session("zz").unwrap().is_none());
}

#[test]
fn bad_users_are_refused() {
    let (_d, _clock, db) = db();
    assert!(db.add_user("a b", Role::It, None, "password-1").is_err());
    assert!(
        db.add_user("ok", Role::It, Some(vec!["gate".into()]), "password-1")
            .is_err()
    );
    assert!(
        db.add_user("ok", Role::Police, Some(vec!["../x".into()]), "password-1")
            .is_err()
    );
    assert!(db.add_user("ok", Role::Police, None, "short").is_err());
    db.add_user("ok", Role::Police, None, "password-1").unwrap();
    assert!(matches!(
        db.add_user("ok", Role::Police, None, "password-1"),
        Err(UserError::Exists(_))
    ));
}

#[test]
fn grants_rules() {
    let (_d, clock, db) = db();
    db.add_user("ivan", Role::It, None, "password-1").unwrap();
    let c = db
        .add_user("carl", Role::Contractor, None, "password-1")
        .unwrap();
    db.add_user("pia", Role::Police, None, "password-1")
        .unwrap();
    let g = NewGrant {
        user: "carl".into(),
        cameras: vec!["gate".into()],
        from_ms: T0,
        until_ms: T0 + 3_600_000,
        live: true,
        playback: true,
        playback_from_ms: Some(T0 - 7_200_000),
        playback_to_ms: Some(T0 - 3_600_000),
        ticket: "CHG-7".into(),
    };
    assert!(db.add_grant(&g, "carl").is_err(), "self grant");
    assert!(
        db.add_grant(
            &NewGrant {
                user: "pia".into(),
                ..g.clone()
            },
            "ivan"
        )
        .is_err()
    );
    assert!(
        db.add_grant(
            &NewGrant {
                until_ms: T0,
                ..g.clone()
            },
            "ivan"
        )
        .is_err()
    );
    assert!(
        db.add_grant(
            &NewGrant {
                ticket: " ".into(),
                ..g.clone()
            },
            "ivan"
        )
        .is_err()
    );
    assert!(
        db.add_grant(
            &NewGrant {
                playback_to_ms: None,
                ..g.clone()
            },
            "ivan"
        )
        .is_err()
    );
    let id = db.add_grant(&g, "ivan").unwrap();
    let list = db.grants(Some(c.id)).unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].0.active(T0));
    clock.advance_ms(3_600_000);
    assert!(
        !db.grants(Some(c.id)).unwrap()[0]
            .0
            .active(clock.now_unix_ms())
    );
    let r = db.revoke_grant(id).unwrap();
    assert!(r.revoked);
    assert!(matches!(
        db.revoke_grant(999),
        Err(UserError::NoSuchGrant(999))
    ));
}

/// Finding 3: every way a login can fail costs one argon2 verification with the
/// same parameters, so timing does not tell which names exist.
#[test]
fn every_login_costs_one_hash() {
    let (_d, _clock, db) = db();
    db.add_user("anna", Role::Police, None, "correct horse")
        .unwrap();
    db.add_user("olaf", Role::It, None, "correct horse")
        .unwrap();
    db.set_disabled("olaf", true).unwrap();
    for (name, pw) in [
        ("anna", "correct horse"),
        ("anna", "wrong horse"),
        ("nobody", "correct horse"),
        ("not a valid name!", "x"),
        ("olaf", "correct horse"),
    ] {
        let (_, before) = db.hash_stats();
        db.check_login(name, pw).unwrap();
        assert_eq!(db.hash_stats().1 - before, 1, "{name}");
    }
}

/// Finding 3: the async check waits for one of HASH_SLOTS without a thread each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_hash_at_most_hash_slots_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(
        UserDb::open(
            &dir.path().join("users.sqlite"),
            Arc::new(ManualClock::new(T0)),
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .unwrap(),
    );
    db.add_user("anna", Role::Police, None, "correct horse")
        .unwrap();
    let (_, before) = db.hash_stats();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                db.check_login_bounded(format!("user{i}"), "pw".into())
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_none());
    }
    let right = db
        .check_login_bounded("anna".into(), "correct horse".into())
        .await
        .unwrap();
    assert_eq!(right.unwrap().name, "anna");
    let (peak, done) = db.hash_stats();
    assert!(peak <= HASH_SLOTS, "{peak}");
    assert_eq!(done - before, 64 + 1);
}

/// Finding 2: the login counters survive closing and reopening the database.
#[test]
fn login_counters_are_kept_in_the_file() {
    use crate::throttle::{PAIR_LIMIT, Refusal, Throttle};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.sqlite");
    let clock = Arc::new(ManualClock::new(T0));
    let open = || Arc::new(UserDb::open(&path, clock.clone(), UserDb::test_argon()).unwrap());
    let db = open();
    db.add_user("anna", Role::Police, None, "correct horse")
        .unwrap();
    let t = Throttle::persistent(clock.clone(), Duration::ZERO, db.clone()).unwrap();
    for _ in 0..PAIR_LIMIT {
        drop(t.reserve("anna", "10.0.0.9", true).unwrap());
    }
    drop((t, db));
    let db = open();
    let t = Throttle::persistent(clock.clone(), Duration::ZERO, db.clone()).unwrap();
    assert!(matches!(
        t.reserve("anna", "10.0.0.9", true),
        Err(Refusal::Locked(_))
    ));
    assert!(t.reserve("anna", "10.0.0.10", true).is_ok());
}

/// A lower item of finding 11: the file and its -wal/-shm are 0600.
#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (d, _clock, db) = db();
    db.add_user("anna", Role::Police, None, "correct horse")
        .unwrap();
    for f in ["users.sqlite", "users.sqlite-wal", "users.sqlite-shm"] {
        let mode = std::fs::metadata(d.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
}

/// The hashing threads' own argon2 (reused memory) agrees with the argon2 crate's
/// PHC hashing and verification, both ways.
#[test]
fn reused_memory_hashing_matches_the_argon2_crate() {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};
    let params = UserDb::test_argon();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let theirs = argon
        .hash_password(b"correct horse", &salt)
        .unwrap()
        .to_string();
    assert!(verify_phc(&theirs, b"correct horse"));
    assert!(!verify_phc(&theirs, b"correct horsf"));
    let ours = hash_phc(&argon, &params, b"correct horse").unwrap();
    let parsed = PasswordHash::new(&ours).unwrap();
    assert!(argon.verify_password(b"correct horse", &parsed).is_ok());
    assert!(argon.verify_password(b"wrong", &parsed).is_err());
    assert!(!verify_phc("not a hash", b"x"));
}

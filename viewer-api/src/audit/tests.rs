use super::*;
use crate::clock::ManualClock;

fn log(dir: &Path) -> (AuditLog, PathBuf) {
    let path = dir.join("audit.sqlite");
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    (
        AuditLog::open(&path, clock, Duration::from_millis(200)).unwrap(),
        path,
    )
}

fn entry(i: i64) -> NewEntry {
    NewEntry {
        actor: format!("user{i}"),
        role: "police".into(),
        action: "playback".into(),
        camera: Some("gate".into()),
        from_ms: Some(i * 1000),
        to_ms: Some(i * 1000 + 500),
        purpose: None,
        case: Some("CASE-1".into()),
        client: Some("127.0.0.1".into()),
        outcome: "allowed".into(),
    }
}

fn filled() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = log(dir.path());
    for i in 1..=5 {
        assert_eq!(log.append(entry(i)).unwrap().seq, i);
    }
    drop(log);
    (dir, path)
}

fn exec(path: &Path, sql: &str) {
    Connection::open(path).unwrap().execute_batch(sql).unwrap();
}

#[test]
fn intact_chain_verifies() {
    let (_d, path) = filled();
    assert_eq!(verify(&path).unwrap(), 5);
}

#[test]
fn changed_entry_is_named() {
    let (_d, path) = filled();
    exec(
        &path,
        "UPDATE entries SET purpose = 'nothing to see' WHERE seq = 3",
    );
    match verify(&path) {
        Err(VerifyError::Broken(b)) => assert_eq!(b.seq, 3, "{b}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn removed_entry_is_named() {
    let (_d, path) = filled();
    exec(&path, "DELETE FROM entries WHERE seq = 2");
    match verify(&path) {
        Err(VerifyError::Broken(b)) => assert_eq!(b.seq, 2, "{b}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn removed_tail_is_caught_by_the_head() {
    let (_d, path) = filled();
    exec(&path, "DELETE FROM entries WHERE seq >= 4");
    match verify(&path) {
        Err(VerifyError::Broken(b)) => assert_eq!(b.seq, 4, "{b}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn inserted_entry_is_named() {
    let (_d, path) = filled();
    // Shift 3..5 up and put a forged entry at 3, hashed correctly but unchained.
    exec(
        &path,
        "UPDATE entries SET seq = seq + 10 WHERE seq >= 3;
         UPDATE entries SET seq = seq - 9 WHERE seq >= 13;
         INSERT INTO entries (seq, at_ms, actor, role, action, outcome, prev_hash, hash)
           VALUES (3, 0, 'ghost', 'it', 'playback', 'allowed', 'x', 'y');",
    );
    match verify(&path) {
        Err(VerifyError::Broken(b)) => assert_eq!(b.seq, 3, "{b}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn query_filters() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = log(dir.path());
    for i in 1..=5 {
        log.append(entry(i)).unwrap();
    }
    log.append(NewEntry {
        actor: "user1".into(),
        role: "police".into(),
        action: "login".into(),
        outcome: "allowed".into(),
        ..Default::default()
    })
    .unwrap();
    let by_actor = log
        .query(&Filter {
            actor: Some("user1".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_actor.len(), 2);
    let covering = log
        .query(&Filter {
            camera: Some("gate".into()),
            from_ms: Some(2200),
            to_ms: Some(3100),
            footage_views_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        covering.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![2, 3]
    );
}

#[test]
fn append_fails_when_the_file_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = log(dir.path());
    log.append(entry(1)).unwrap();
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    assert!(log.append(entry(2)).is_err());
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(log.append(entry(2)).unwrap().seq, 2);
}

/// A lower item of finding 11: the log, its -wal/-shm and its head are 0600, also
/// when an older version left them readable.
#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = log(dir.path());
    log.append(entry(1)).unwrap();
    let files = [
        "audit.sqlite",
        "audit.sqlite-wal",
        "audit.sqlite-shm",
        "audit.sqlite.head",
    ];
    let mode = |f: &str| {
        std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    for f in files {
        assert_eq!(mode(f), 0o600, "{f}");
    }
    for f in files {
        std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    let again = AuditLog::open(
        &path,
        Arc::new(ManualClock::new(0)),
        Duration::from_millis(200),
    )
    .unwrap();
    again.append(entry(2)).unwrap();
    for f in files {
        assert_eq!(mode(f), 0o600, "{f}");
    }
}

/// Finding 8: pages of the newest entries, oldest first, with a cursor while more
/// remain.
#[test]
fn pages_walk_back_with_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = log(dir.path());
    for i in 1..=7 {
        log.append(entry(i)).unwrap();
    }
    let mut f = Filter {
        limit: Some(3),
        ..Default::default()
    };
    let mut got = Vec::new();
    loop {
        let p = log.page(&f).unwrap();
        let seqs: Vec<i64> = p.entries.iter().map(|e| e.seq).collect();
        got.push(seqs);
        match p.next_before {
            Some(b) => f.before_seq = Some(b),
            None => break,
        }
    }
    assert_eq!(got, vec![vec![5, 6, 7], vec![2, 3, 4], vec![1]]);
    // exactly a page's worth: no cursor
    f.before_seq = Some(4);
    assert_eq!(log.page(&f).unwrap().next_before, None);
}

/// Finding 6: every footage action is in the subject-access report, found by each
/// of its cameras (entries of older versions list several).
#[test]
fn subject_access_finds_every_footage_action_by_camera() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = log(dir.path());
    for (action, camera) in [
        ("playback", "gate"),
        ("live", "gate"),
        ("live.end", "gate"),
        ("export.request", "gate"),
        ("export.download", "gate"),
        ("export.download", "hall,gate"),
        ("export.download", "gatehouse"),
        ("grant.create", "gate"),
        ("login", "gate"),
    ] {
        log.append(NewEntry {
            action: action.into(),
            camera: Some(camera.into()),
            ..entry(1)
        })
        .unwrap();
    }
    let report = log
        .query(&Filter {
            camera: Some("gate".into()),
            footage_views_only: true,
            ..Default::default()
        })
        .unwrap();
    let got: Vec<(&str, &str)> = report
        .iter()
        .map(|e| (e.action.as_str(), e.camera.as_deref().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("playback", "gate"),
            ("live", "gate"),
            ("live.end", "gate"),
            ("export.request", "gate"),
            ("export.download", "gate"),
            ("export.download", "hall,gate"),
        ]
    );
}

#[test]
fn a_log_that_could_only_be_read_is_written_again_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = log(dir.path());
    log.append(entry(1)).unwrap();
    // As when the file was read-only when the connection was made (SQLite then
    // falls back to reading): every append failed until the process restarted.
    *log.conn.lock().unwrap() =
        Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    assert_eq!(log.append(entry(2)).unwrap().seq, 2);
    assert_eq!(log.append(entry(3)).unwrap().seq, 3);
    assert_eq!(verify(&path).unwrap(), 3);
}

#[test]
fn invisible_and_bidi_characters_are_unsafe() {
    for c in [
        '\u{0007}',
        '\u{00AD}',
        '\u{061C}',
        '\u{200B}',
        '\u{200C}',
        '\u{200D}',
        '\u{200E}',
        '\u{200F}',
        '\u{2028}',
        '\u{2029}',
        '\u{202A}',
        '\u{202B}',
        '\u{202C}',
        '\u{202D}',
        '\u{202E}',
        '\u{2060}',
        '\u{2066}',
        '\u{2067}',
        '\u{2068}',
        '\u{2069}',
        '\u{FEFF}',
        '\u{E0001}',
        '\u{E007F}',
    ] {
        assert!(unsafe_text_char(c), "U+{:04X}", c as u32);
    }
    for c in "CASE-2026/17 Dépôt n°3 – Ω 東京 ".chars() {
        assert!(!unsafe_text_char(c), "{c:?}");
    }
}

//! The 30-day ring buffer, driven by a ManualClock: age, capacity, holds, the deletion
//! journal, crashes in the middle of a deletion, clock jumps, and ENOSPC on a real
//! (tmpfs) file system. No sleeps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use hardware::Kek;
use recorder::catalog::{self, Catalog, ClosedSegment};
use recorder::clock::{Clock, ManualClock};
use recorder::holds::{self, HoldCameras, NewHold};
use recorder::journal;
use recorder::recovery;
use recorder::retention::{DeleteStep, Policy, Retention, RetentionError};
use recorder::segment::{Codec, SegmentId};

const H: i64 = 3600 * 1000;
const DAY: i64 = 24 * H;
/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000;

struct Store {
    _dir: tempfile::TempDir,
    path: PathBuf,
    cat: Catalog,
}

fn store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    std::fs::create_dir_all(path.join(catalog::SEGMENTS_DIR)).unwrap();
    let cat = Catalog::open(&path).unwrap();
    cat.connection()
        .execute_batch("PRAGMA synchronous=OFF")
        .unwrap();
    Store {
        _dir: dir,
        path,
        cat,
    }
}

fn policy(retention_days: i64) -> Policy {
    Policy {
        retention_ms: retention_days * DAY,
        camera_retention_ms: Default::default(),
        max_bytes: u64::MAX / 4,
        camera_max_bytes: Default::default(),
        min_free_bytes: 0,
    }
}

struct Clocks {
    wall: Arc<ManualClock>,
    mono: Arc<ManualClock>,
}

impl Clocks {
    fn new(at: i64) -> Clocks {
        Clocks {
            wall: Arc::new(ManualClock::new(at)),
            mono: Arc::new(ManualClock::new(0)),
        }
    }
    /// Real time passes: both clocks move.
    fn advance(&self, ms: i64) {
        self.wall.advance_ms(ms);
        self.mono.advance_ms(ms);
    }
    fn now(&self) -> i64 {
        self.wall.now_unix_ms()
    }
}

fn engine(s: &Store, p: Policy, c: &Clocks) -> Retention {
    let r = Retention::new(&s.path, p, c.wall.clone(), c.mono.clone(), None).unwrap();
    // Keep the many small test transactions cheap; durability is not under test here.
    r.catalog()
        .connection()
        .execute_batch("PRAGMA synchronous=OFF")
        .unwrap();
    r
}

/// A closed segment: catalog row (with a wrapped key) + a small file of `bytes` bytes.
fn add_segment(s: &Store, camera: &str, start: i64, end: i64, bytes: u64) -> SegmentId {
    let id = SegmentId::random();
    s.cat.upsert_camera(camera, camera).unwrap();
    s.cat
        .insert_open_segment(id, camera, Codec::H264, start, 0, &[7u8; 60])
        .unwrap();
    let path = catalog::segment_path(&s.path, camera, id);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![0x5a; bytes as usize]).unwrap();
    let mut sha = [0u8; 32];
    sha[..16].copy_from_slice(&id.0);
    s.cat
        .close_segment(
            id,
            &ClosedSegment {
                end_unix_ms: end,
                start_90k: 0,
                end_90k: (end - start) * 90,
                bytes,
                frames: 1,
                key_frames: 1,
                sha256: sha,
            },
            false,
        )
        .unwrap();
    id
}

/// Catalog rows and files agree exactly; returns the ids.
fn assert_consistent(s: &Store) -> BTreeSet<SegmentId> {
    let rows: BTreeSet<(String, SegmentId)> = s
        .cat
        .segments(None)
        .unwrap()
        .into_iter()
        .map(|r| (r.camera, r.id))
        .collect();
    let files: BTreeSet<(String, SegmentId)> = recovery::list_segment_files(&s.path)
        .unwrap()
        .into_iter()
        .map(|(c, id, _)| (c, id.expect("only segment files")))
        .collect();
    assert_eq!(rows, files, "catalog rows and files disagree");
    rows.into_iter().map(|(_, id)| id).collect()
}

fn journal_ids(s: &Store) -> Vec<String> {
    journal::entries(&s.cat, None, None)
        .unwrap()
        .into_iter()
        .map(|e| e.segment)
        .collect()
}

#[test]
fn thirty_one_days_age_retention_store_and_per_camera() {
    let s = store();
    let c = Clocks::new(T0);
    let mut p = policy(30);
    p.camera_retention_ms.insert("gate".into(), 72 * H);
    let mut r = engine(&s, p, &c);
    let mut segs: BTreeMap<SegmentId, (String, i64, i64)> = BTreeMap::new();
    // 31 days of 1-hour segments on two cameras, a pass every simulated hour (in
    // production: every 10 s and at each close).
    for hour in 0..31 * 24 {
        let start = T0 + hour * H;
        for cam in ["entrance", "gate"] {
            let id = add_segment(&s, cam, start, start + H, 1000);
            segs.insert(id, (cam.to_string(), start, start + H));
        }
        c.advance(H);
        let rep = r.pass().unwrap();
        assert!(rep.clock_refused.is_none(), "{rep:?}");
        let now = c.now();
        let left: BTreeSet<SegmentId> = assert_consistent(&s);
        for (id, (cam, _, end)) in &segs {
            let retention = if cam == "gate" { 72 * H } else { 30 * DAY };
            // Deleted exactly when the segment ended at least `retention` ago.
            assert_eq!(
                left.contains(id),
                *end > now - retention,
                "segment of {cam} ending {end} at {now}"
            );
        }
    }
    let left = assert_consistent(&s);
    assert_eq!(left.len(), 30 * 24 + 72);
    let entries = journal::entries(&s.cat, None, None).unwrap();
    assert_eq!(entries.len(), segs.len() - left.len());
    for e in &entries {
        let (cam, from, to) = &segs[&e.segment.parse().unwrap()];
        assert_eq!((&e.camera, e.from_unix_ms, e.to_unix_ms), (cam, *from, *to));
        assert_eq!(e.reason, "age");
        assert_eq!(e.bytes, 1000);
        assert!(e.sha256.as_deref().unwrap().starts_with(&e.segment));
        // Nothing outlived its retention by more than the pass interval.
        let retention = if cam == "gate" { 72 * H } else { 30 * DAY };
        assert!(e.deleted_unix_ms - (to + retention) <= H);
    }
    assert_eq!(
        journal::entries(&s.cat, Some("gate"), None).unwrap().len(),
        31 * 24 - 72
    );
    // The journal keeps a year: after 366 days the entries are pruned.
    c.advance(366 * DAY);
    let rep = r.pass().unwrap();
    assert!(rep.journal_pruned > 0);
    // Everything was older than retention by then, so everything is gone and the only
    // entries left are those of this last pass.
    assert!(assert_consistent(&s).is_empty());
    let now = c.now();
    assert!(
        journal::entries(&s.cat, None, None)
            .unwrap()
            .iter()
            .all(|e| e.deleted_unix_ms == now)
    );
}

#[test]
fn capacity_store_wide_and_per_camera_oldest_first() {
    let s = store();
    let c = Clocks::new(T0 + 10 * DAY);
    let mut p = policy(30);
    p.max_bytes = 20_000;
    p.camera_max_bytes.insert("gate".into(), 5_000);
    let mut r = engine(&s, p, &c);
    let mut by_cam: BTreeMap<&str, Vec<SegmentId>> = BTreeMap::new();
    for i in 0..20 {
        let start = T0 + i * 60_000;
        for cam in ["entrance", "gate"] {
            by_cam
                .entry(cam)
                .or_default()
                .push(add_segment(&s, cam, start, start + 60_000, 1000));
        }
    }
    let rep = r.pass().unwrap();
    assert!(rep.alarms.is_empty(), "{rep:?}");
    let left = assert_consistent(&s);
    // gate: its own limit, 5 newest kept.
    let gate = &by_cam["gate"];
    assert!(gate[..15].iter().all(|id| !left.contains(id)));
    assert!(gate[15..].iter().all(|id| left.contains(id)));
    // store: 20 segments of 1000 bytes at most; entrance loses its oldest.
    let ent = &by_cam["entrance"];
    assert_eq!(left.len(), 20);
    assert!(ent[..5].iter().all(|id| !left.contains(id)));
    assert!(ent[5..].iter().all(|id| left.contains(id)));
    let entries = journal::entries(&s.cat, None, None).unwrap();
    assert_eq!(entries.len(), 20);
    assert!(entries.iter().all(|e| e.reason == "capacity"));

    // Free-space rule (statvfs replaced): 3000 bytes missing → 3 oldest go.
    r.set_free_space_fn(|_| Ok(7_000));
    let mut p2 = r.policy().clone();
    p2.min_free_bytes = 10_000;
    let mut r = Retention::new(&s.path, p2, c.wall.clone(), c.mono.clone(), None).unwrap();
    r.set_free_space_fn(|_| Ok(7_000));
    let rep = r.pass().unwrap();
    assert_eq!(rep.deleted_capacity, 3);
    assert_eq!(assert_consistent(&s).len(), 17);
}

fn hold(cams: HoldCameras, from: i64, to: i64, until: Option<i64>) -> NewHold {
    NewHold {
        cameras: cams,
        from_unix_ms: from,
        to_unix_ms: to,
        case_ref: "CASE-2026-042".into(),
        placed_by: "inspector.maigret".into(),
        until_unix_ms: until,
    }
}

#[test]
fn hold_survives_age_and_capacity_then_release_and_expiry() {
    let s = store();
    let c = Clocks::new(T0);
    let mut p = policy(30);
    p.max_bytes = 40 * 1000;
    let mut r = engine(&s, p, &c);
    // Placed through another catalog connection, as `recorder hold add` or the
    // viewer-api would while the recorder runs.
    let other = Catalog::open(&s.path).unwrap();
    let held_from = T0 + 2 * H;
    let held_to = T0 + 4 * H + 1; // overlaps hours 2, 3 and 4
    let h1 = holds::add(
        &other,
        &hold(
            HoldCameras::Some(vec!["entrance".into()]),
            held_from,
            held_to,
            None,
        ),
        c.now(),
    )
    .unwrap();
    let h2 = holds::add(
        &other,
        &hold(
            HoldCameras::All,
            T0 + 10 * H,
            T0 + 11 * H,
            Some(T0 + 40 * DAY),
        ),
        c.now(),
    )
    .unwrap();
    let mut ids = Vec::new();
    for hour in 0..36 * 24 {
        let start = T0 + hour * H;
        ids.push((start, add_segment(&s, "entrance", start, start + H, 1000)));
        add_segment(&s, "gate", start, start + H, 10);
        c.advance(H);
        r.pass().unwrap();
    }
    let left = assert_consistent(&s);
    let held: Vec<_> = ids
        .iter()
        .filter(|(st, _)| *st < held_to && st + H > held_from)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(held.len(), 3);
    assert!(
        held.iter().all(|id| left.contains(id)),
        "held footage deleted"
    );
    let held2 = ids.iter().find(|(st, _)| *st == T0 + 10 * H).unwrap().1;
    assert!(left.contains(&held2), "hold on all cameras not honoured");
    // Capacity pressure kept the store at 40 KB of unheld + held footage; age did the rest.
    assert!(
        journal::entries(&s.cat, None, None)
            .unwrap()
            .iter()
            .any(|e| e.reason == "capacity")
    );
    assert!(left.len() < 100);
    assert_eq!(
        holds::active(&s.cat, c.now())
            .unwrap()
            .0
            .iter()
            .map(|h| h.id)
            .collect::<Vec<_>>(),
        vec![h1, h2]
    );

    // Release h1: the next pass applies the normal rules (they are 36 days old).
    holds::release(&other, h1, "inspector.maigret", c.now()).unwrap();
    assert!(holds::release(&other, h1, "x", c.now()).is_err());
    c.advance(10_000);
    let rep = r.pass().unwrap();
    assert_eq!(rep.deleted_age, 3);
    let left = assert_consistent(&s);
    assert!(held.iter().all(|id| !left.contains(id)));
    assert!(left.contains(&held2));
    // h2 expires at day 40.
    c.advance(4 * DAY);
    r.pass().unwrap();
    assert!(!assert_consistent(&s).contains(&held2));
    let j = journal_ids(&s);
    let unique: BTreeSet<_> = j.iter().collect();
    assert_eq!(unique.len(), j.len(), "a segment journaled twice");
}

#[test]
fn held_footage_over_capacity_raises_an_alarm_and_deletes_nothing_held() {
    let s = store();
    let c = Clocks::new(T0 + DAY);
    let mut p = policy(30);
    p.max_bytes = 5_000;
    let mut r = engine(&s, p, &c);
    holds::add(
        &s.cat,
        &hold(HoldCameras::All, T0, T0 + 10 * H, None),
        c.now(),
    )
    .unwrap();
    for i in 0..10 {
        add_segment(&s, "entrance", T0 + i * H, T0 + (i + 1) * H, 1000);
    }
    // Two unheld segments after the held range: they go first (oldest unheld).
    let late1 = add_segment(&s, "entrance", T0 + 12 * H, T0 + 13 * H, 1000);
    let late2 = add_segment(&s, "entrance", T0 + 13 * H, T0 + 14 * H, 1000);
    let rep = r.pass().unwrap();
    assert_eq!(rep.deleted_capacity, 2);
    assert_eq!(rep.alarms.len(), 1, "{rep:?}");
    assert!(rep.alarms[0].contains("store"), "{}", rep.alarms[0]);
    assert!(rep.alarms[0].contains("10 segments"), "{}", rep.alarms[0]);
    let left = assert_consistent(&s);
    assert_eq!(left.len(), 10);
    assert!(!left.contains(&late1) && !left.contains(&late2));
    // Recording goes on: a new segment is accepted, and the next pass keeps the alarm.
    add_segment(&s, "entrance", T0 + 20 * H, T0 + 21 * H, 1000);
    c.advance(10_000);
    let rep = r.pass().unwrap();
    assert_eq!(rep.alarms.len(), 1);
    // `recorder check` shows it (optional field), beside the unchanged keys.
    let kek = Kek::random();
    let report = recorder::check::check(&s.path, &kek, &[]).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert!(
        json["retention"]["alarms"][0]
            .as_str()
            .unwrap()
            .contains("held footage")
    );
    assert_eq!(json["retention"]["holds_active"], 1);
    for k in ["cameras", "problems", "recovered_segments"] {
        assert!(json.get(k).is_some(), "{k}");
    }
    // Release: normal rules apply, the alarm clears.
    let id = holds::list(&s.cat).unwrap()[0].id;
    holds::release(&s.cat, id, "prosecutor", c.now()).unwrap();
    c.advance(10_000);
    let rep = r.pass().unwrap();
    assert!(rep.alarms.is_empty(), "{rep:?}");
    assert!(assert_consistent(&s).len() <= 5);
    let report = recorder::check::check(&s.path, &kek, &[]).unwrap();
    assert!(report.retention.unwrap().alarms.is_empty());
}

#[test]
fn crash_after_every_step_of_a_deletion_then_recovery_agrees() {
    let steps = [
        DeleteStep::RowsAndJournal,
        DeleteStep::Commit,
        DeleteStep::Unlink,
        DeleteStep::SyncDir,
    ];
    for step in steps {
        let s = store();
        let c = Clocks::new(T0 + 40 * DAY);
        let mut old = BTreeSet::new();
        for i in 0..5 {
            old.insert(add_segment(&s, "gate", T0 + i * H, T0 + (i + 1) * H, 500));
        }
        let fresh = add_segment(&s, "gate", T0 + 39 * DAY, T0 + 39 * DAY + H, 500);
        let mut r = engine(&s, policy(30), &c);
        r.crash_after = Some(step);
        match r.pass() {
            Err(RetentionError::InjectedCrash(at)) => assert_eq!(at, step),
            other => panic!("expected an injected crash, got {other:?}"),
        }
        drop(r); // the process dies here
        // Restart: start-up recovery, as `recorder run` does.
        let kek = Kek::random();
        let cat = Catalog::open(&s.path).unwrap();
        recovery::recover_store(&s.path, &cat, &kek).unwrap();
        let left = assert_consistent(&s);
        let journaled: BTreeSet<SegmentId> =
            journal_ids(&s).iter().map(|j| j.parse().unwrap()).collect();
        if step == DeleteStep::RowsAndJournal {
            // Rolled back: nothing deleted, nothing journaled.
            assert!(journaled.is_empty(), "{step:?}");
            assert_eq!(left.len(), 6);
        } else {
            // Committed: the journal says exactly what is gone.
            assert_eq!(journaled, old, "{step:?}");
            assert_eq!(left, BTreeSet::from([fresh]), "{step:?}");
        }
        // The next pass finishes the job without journaling anything twice.
        let mut r = engine(&s, policy(30), &c);
        r.pass().unwrap();
        let left = assert_consistent(&s);
        assert_eq!(left, BTreeSet::from([fresh]), "{step:?}");
        let j = journal_ids(&s);
        assert_eq!(j.len(), 5, "{step:?}");
        assert_eq!(j.iter().collect::<BTreeSet<_>>().len(), 5);
    }
}

#[test]
fn clock_jumps_delete_nothing_wrongly() {
    let s = store();
    let c = Clocks::new(T0 + 20 * DAY);
    let mut p = policy(30);
    p.camera_retention_ms.insert("gate".into(), 72 * H);
    let mut r = engine(&s, p, &c);
    for i in 0..20 * 24 {
        add_segment(&s, "entrance", T0 + i * H, T0 + (i + 1) * H, 100);
    }
    // Hold with an expiry inside the jump: must not expire on a false clock.
    holds::add(
        &s.cat,
        &hold(HoldCameras::All, T0, T0 + DAY, Some(T0 + 25 * DAY)),
        c.now(),
    )
    .unwrap();
    let rep = r.pass().unwrap();
    assert_eq!(rep.deleted(), 0);
    assert!(rep.clock_refused.is_none());
    let before = assert_consistent(&s);

    // RTC reset to 1970.
    c.wall.set(0);
    c.mono.advance_ms(10_000);
    let rep = r.pass().unwrap();
    assert_eq!(rep.deleted(), 0);
    assert!(
        rep.clock_refused.as_deref().unwrap().contains("1970"),
        "{rep:?}"
    );

    // Stepped back behind the newest footage (but after the floor).
    c.wall.set(T0 + 2 * DAY);
    c.mono.advance_ms(10_000);
    let rep = r.pass().unwrap();
    assert_eq!(rep.deleted(), 0);
    assert!(
        rep.clock_refused
            .as_deref()
            .unwrap()
            .contains("newest recorded footage")
    );

    // Jumped forward by a year in 10 s of monotonic time.
    c.wall.set(T0 + 20 * DAY + 365 * DAY);
    c.mono.advance_ms(10_000);
    for _ in 0..5 {
        let rep = r.pass().unwrap();
        assert_eq!(rep.deleted(), 0);
        assert!(
            rep.clock_refused
                .as_deref()
                .unwrap()
                .contains("jumped forward"),
            "{rep:?}"
        );
        c.advance(10_000);
    }
    assert_eq!(assert_consistent(&s), before);

    // The clock is corrected: age retention resumes, deleting only what is due.
    c.wall.set(T0 + 20 * DAY + 60_000);
    c.mono.advance_ms(10_000);
    let rep = r.pass().unwrap();
    assert!(rep.clock_refused.is_none(), "{rep:?}");
    assert_eq!(rep.deleted(), 0, "nothing is older than 30 days yet");
    assert_eq!(assert_consistent(&s), before);
    c.advance(4 * DAY);
    let rep = r.pass().unwrap();
    // now = T0+24d+1min: nothing is 30 days old yet.
    assert_eq!(rep.deleted(), 0);
    c.advance(7 * DAY);
    let rep = r.pass().unwrap();
    // now = T0+31d+1min: the first day is due, and its hold expired at T0+25d.
    assert_eq!(rep.deleted_age, 24);
    c.advance(5 * DAY);
    let rep = r.pass().unwrap();
    // now = T0+36d+1min: footage that ended by T0+6d+1min goes.
    assert_eq!(rep.deleted_age, 5 * 24);
}

#[test]
fn capacity_still_enforced_while_the_clock_is_refused_and_holds_do_not_expire() {
    let s = store();
    let c = Clocks::new(T0 + 20 * DAY);
    let mut p = policy(30);
    p.max_bytes = 10 * 100;
    let mut r = engine(&s, p, &c);
    // Holds the first 3 hours, expiring at T0+25d.
    holds::add(
        &s.cat,
        &hold(HoldCameras::All, T0, T0 + 3 * H, Some(T0 + 25 * DAY)),
        c.now(),
    )
    .unwrap();
    for i in 0..10 {
        add_segment(&s, "entrance", T0 + i * H, T0 + (i + 1) * H, 100);
    }
    assert_eq!(r.pass().unwrap().deleted(), 0);
    // A year ahead in 10 s: the clock is refused, yet the disk must not fill.
    c.wall.advance_ms(365 * DAY);
    c.advance(10_000);
    let mut newer = Vec::new();
    for i in 0..4 {
        let start = T0 + (10 + i) * H;
        newer.push(add_segment(&s, "entrance", start, start + H, 100));
    }
    let rep = r.pass().unwrap();
    assert!(rep.clock_refused.is_some());
    assert_eq!(rep.deleted_age, 0);
    assert_eq!(rep.deleted_capacity, 4);
    let held: Vec<_> = s
        .cat
        .segments(Some("entrance"))
        .unwrap()
        .into_iter()
        .filter(|r| r.start_unix_ms < T0 + 3 * H)
        .collect();
    assert_eq!(held.len(), 3, "a hold expired on a false clock");
    assert!(newer.iter().all(|id| assert_consistent(&s).contains(id)));
}

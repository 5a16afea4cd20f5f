//! ENOSPC on a real, small file system (tmpfs, 8 MiB): a CameraWriter fed synthetic
//! GOPs fills it; the writer's disk-full hook makes retention delete the oldest
//! unheld segments, recording goes on, and every remaining segment verifies.
//! Needs root to mount; prints that it was skipped otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hardware::Kek;
use recorder::catalog::{self, Catalog};
use recorder::clock::ManualClock;
use recorder::journal;
use recorder::metrics::Metrics;
use recorder::retention::{Policy, Retention, RetentionService};
use recorder::segment::{Codec, CodecParams, Frame, Gop};
use recorder::store_sync::StoreSync;
use recorder::writer::{CameraWriter, WriterConfig, WriterMsg};

/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000;

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(dir.to_path_buf()))
}

fn params() -> Arc<CodecParams> {
    Arc::new(CodecParams {
        codec: Codec::H264,
        extra_data: vec![1, 0x64, 0, 0x28, 0xff, 0xe1],
        width: 640,
        height: 360,
        rfc6381: "avc1.640028".into(),
    })
}

/// GOP `n`: 1 s of media (5 frames of 20 KB), wall time T0 + n s.
fn gop(n: i64) -> Gop {
    Gop {
        start_unix_ms: T0 + n * 1000,
        frames: (0..5)
            .map(|i| Frame {
                pts_90k: n * 90_000 + i * 18_000,
                key: i == 0,
                data: {
                    let mut d = vec![(n % 251) as u8; 20_000];
                    d[..8].copy_from_slice(&n.to_be_bytes());
                    d
                },
            })
            .collect(),
    }
}

#[test]
fn enospc_on_a_small_file_system_deletes_the_oldest_and_recording_goes_on() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn")
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = mount_tmpfs(dir.path(), "8m") else {
        println!("SKIPPED enospc_on_a_small_file_system: needs root to mount a tmpfs");
        return;
    };
    let store = dir.path().join("store");
    std::fs::create_dir_all(store.join(catalog::SEGMENTS_DIR)).unwrap();
    let cat = Catalog::open(&store).unwrap();
    cat.upsert_camera("a", "a").unwrap();
    drop(cat);
    let kek = Kek::random();
    let metrics = Arc::new(Metrics::new());
    let wall = Arc::new(ManualClock::new(T0 + 3600 * 1000));
    let mono = Arc::new(ManualClock::new(0));
    // No capacity or free-space limit: only the disk-full path can save the recording.
    let policy = Policy {
        retention_ms: 30 * 24 * 3600 * 1000,
        camera_retention_ms: Default::default(),
        max_bytes: u64::MAX / 4,
        camera_max_bytes: Default::default(),
        min_free_bytes: 0,
    };
    let engine = Retention::new(&store, policy, wall, mono, Some(metrics.clone())).unwrap();
    let service = RetentionService::new(engine);
    let sync = StoreSync::start(Duration::from_millis(1000), metrics.clone(), None).unwrap();
    let writer = CameraWriter::new(
        WriterConfig {
            store: store.clone(),
            camera: "a".into(),
            segment_secs: 4,
        },
        kek.clone(),
        metrics.clone(),
        None,
        sync.register(&store, "a").unwrap(),
    )
    .unwrap()
    .with_space_hooks(service.clone());
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    let t = std::thread::spawn(move || writer.run(rx));
    // ~100 KB per GOP, 300 GOPs: about 30 MB through an 8 MB file system.
    const GOPS: i64 = 300;
    let p = params();
    for n in 0..GOPS {
        tx.send(WriterMsg::Gop {
            params: p.clone(),
            gop: gop(n),
        })
        .unwrap();
    }
    drop(tx);
    t.join().unwrap();

    let cat = Catalog::open(&store).unwrap();
    let entries = journal::entries(&cat, None, None).unwrap();
    assert!(
        entries.iter().filter(|e| e.reason == "disk-full").count() >= 10,
        "expected emergency deletions, journal: {} entries",
        entries.len()
    );
    let rows = cat.segments(Some("a")).unwrap();
    assert!(rows.iter().all(|r| !r.open), "a segment was left open");
    // Recording went on to the end: the newest segment holds the last GOP.
    let last = rows.iter().map(|r| r.end_unix_ms).max().unwrap();
    assert!(last >= T0 + (GOPS - 1) * 1000, "last recorded {last}");
    // Emergency deletion freed space before the GOP was retried: few or no drops.
    let enc = metrics.encode();
    let dropped: u64 = enc
        .lines()
        .find(|l| l.starts_with("ringfence_frames_dropped_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(dropped <= 5 * 3, "frames dropped: {dropped}\n{enc}");
    // Deleted segments are the oldest: everything left is newer than every deletion.
    let oldest_left = rows.iter().map(|r| r.start_unix_ms).min().unwrap();
    assert!(entries.iter().all(|e| e.to_unix_ms <= oldest_left));
    // check-style verification: every remaining segment authenticates and matches.
    let report = recorder::check::check(&store, &kek, &["a".to_string()]).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.cameras[0].segments as usize, rows.len());
    println!(
        "tmpfs 8 MiB: {} segments left, {} deleted on disk full, {dropped} frames dropped",
        rows.len(),
        entries.len()
    );

    // Phase 2: everything is held. The disk fills, nothing held is deleted, the alarm
    // is raised, frames are dropped with a "disk full" gap, and no segment is corrupt.
    recorder::holds::add(
        &cat,
        &recorder::holds::NewHold {
            cameras: recorder::holds::HoldCameras::All,
            from_unix_ms: T0,
            to_unix_ms: T0 + 10 * 3600 * 1000,
            case_ref: "CASE-7".into(),
            placed_by: "police".into(),
            until_unix_ms: None,
        },
        T0 + 3600 * 1000,
    )
    .unwrap();
    let sync = StoreSync::start(Duration::from_millis(1000), metrics.clone(), None).unwrap();
    let writer = CameraWriter::new(
        WriterConfig {
            store: store.clone(),
            camera: "a".into(),
            segment_secs: 4,
        },
        kek.clone(),
        metrics.clone(),
        None,
        sync.register(&store, "a").unwrap(),
    )
    .unwrap()
    .with_space_hooks(service.clone());
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    let t = std::thread::spawn(move || writer.run(rx));
    for n in GOPS..GOPS + 100 {
        tx.send(WriterMsg::Gop {
            params: p.clone(),
            gop: gop(n),
        })
        .unwrap();
    }
    drop(tx);
    t.join().unwrap();
    assert_eq!(
        journal::entries(&cat, None, None).unwrap().len(),
        entries.len(),
        "held footage was deleted"
    );
    let enc = metrics.encode();
    assert!(enc.contains("ringfence_retention_alarm 1"), "{enc}");
    assert!(
        cat.gaps("a")
            .unwrap()
            .iter()
            .any(|g| g.reason == "disk full"),
        "no disk-full gap"
    );
    // The case closes: the hold is released, the next disk-full call deletes the
    // oldest footage; then a restart (recovery closes what the full disk left open)
    // and every segment verifies.
    let id = recorder::holds::list(&cat).unwrap()[0].id;
    recorder::holds::release(&cat, id, "police", T0 + 3600 * 1000).unwrap();
    use recorder::retention::SpaceHooks;
    assert!(service.disk_full("a", 1) > 0);
    recorder::recovery::recover_store(&store, &cat, &kek).unwrap();
    let report = recorder::check::check(&store, &kek, &["a".to_string()]).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

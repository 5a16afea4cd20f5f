//! Catalog benchmark for the ring buffer: 64 cameras × 30 days × 60 s segments
//! (2 764 800 rows), then: expire one day (92 160 rows + journal entries, in batches,
//! while a writer keeps inserting and closing rows), list one camera over an hour and
//! a day, and the catalog's size on disk.
//!
//! `cargo run --release -p recorder --example bench_catalog [-- --dir DIR] [--batch ROWS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::RngCore;
use recorder::catalog::{Catalog, ClosedSegment};
use recorder::clock::ManualClock;
use recorder::retention::{Policy, Retention};
use recorder::segment::{Codec, SegmentId};
use rusqlite::params;

const CAMERAS: i64 = 64;
const DAYS: i64 = 30;
const SEG_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = match args.iter().position(|a| a == "--dir") {
        Some(i) => {
            let d = std::path::PathBuf::from(&args[i + 1]);
            std::fs::create_dir_all(&d)?;
            tempfile::tempdir_in(d)?
        }
        None => tempfile::tempdir()?,
    };
    let store = dir.path();
    std::fs::create_dir_all(store.join(recorder::catalog::SEGMENTS_DIR))?;

    // Build: one connection, big transactions, no fsync (only the build is rushed).
    let t = Instant::now();
    let segs_per_cam = DAYS * DAY_MS / SEG_MS;
    {
        let cat = Catalog::open(store)?;
        let conn = cat.connection();
        conn.execute_batch("PRAGMA synchronous=OFF")?;
        let mut rng = rand::rng();
        for cam in 0..CAMERAS {
            conn.execute(
                "INSERT INTO cameras(id, name) VALUES (?1, ?1)",
                [format!("cam-{cam:02}")],
            )?;
        }
        let tx = conn.unchecked_transaction()?;
        {
            let mut ins = tx.prepare(
                "INSERT INTO segments(uuid, camera_id, state, codec, start_unix_ms, end_unix_ms,
                     start_90k, end_90k, bytes, frames, key_frames, wrapped_key, sha256)
                 VALUES (?1, ?2, 'closed', 'h264', ?3, ?4, 0, 5400000, ?5, 1500, 30, ?6, ?7)",
            )?;
            let mut key = [0u8; 60];
            let mut sha = [0u8; 32];
            // Time-major, as cameras record.
            for i in 0..segs_per_cam {
                let start = T0 + i * SEG_MS;
                for cam in 0..CAMERAS {
                    rng.fill_bytes(&mut key);
                    rng.fill_bytes(&mut sha);
                    ins.execute(params![
                        SegmentId::random().to_string(),
                        format!("cam-{cam:02}"),
                        start,
                        start + SEG_MS,
                        30_000_000i64,
                        &key[..],
                        hex::encode(sha)
                    ])?;
                }
            }
        }
        tx.commit()?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    }
    let rows = CAMERAS * segs_per_cam;
    let build_s = t.elapsed().as_secs_f64();
    eprintln!("built {rows} rows in {build_s:.1} s");

    // The retention engine, at T0 + 31 days: exactly one day (per camera) has expired.
    let wall = Arc::new(ManualClock::new(T0 + (DAYS + 1) * DAY_MS));
    let mono = Arc::new(ManualClock::new(0));
    let policy = Policy {
        retention_ms: DAYS * DAY_MS,
        camera_retention_ms: Default::default(),
        max_bytes: u64::MAX / 4,
        camera_max_bytes: Default::default(),
        min_free_bytes: 0,
    };
    let t = Instant::now();
    let mut engine = Retention::new(store, policy, wall, mono, None)?;
    engine.set_reserve_bytes(0);
    if let Some(i) = args.iter().position(|a| a == "--batch") {
        engine.batch_rows = args[i + 1].parse()?;
    }
    let batch_rows = engine.batch_rows;
    let setup_s = t.elapsed().as_secs_f64();

    // A writer beside it: inserts an open row and closes it, continuously, timing each.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let store = store.to_path_buf();
        std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
            let cat = Catalog::open(&store)?;
            let mut lat = Vec::new();
            let mut n = 0i64;
            while !stop.load(Ordering::SeqCst) {
                let id = SegmentId::random();
                let start = T0 + (DAYS + 1) * DAY_MS + n * SEG_MS;
                let t = Instant::now();
                cat.insert_open_segment(id, "cam-live", Codec::H264, start, 0, &[1u8; 60])?;
                lat.push(t.elapsed());
                let t = Instant::now();
                cat.close_segment(
                    id,
                    &ClosedSegment {
                        end_unix_ms: start + SEG_MS,
                        start_90k: 0,
                        end_90k: 5_400_000,
                        bytes: 1000,
                        frames: 1,
                        key_frames: 1,
                        sha256: [0; 32],
                    },
                    false,
                )?;
                lat.push(t.elapsed());
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(lat)
        })
    };
    let t = Instant::now();
    let rep = engine.pass()?;
    let expire_s = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let mut lat = writer.join().expect("writer thread")?;
    lat.sort();
    let max_ms = lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let p99_ms = lat
        .get(lat.len() * 99 / 100)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3);
    anyhow::ensure!(
        rep.deleted_age == (CAMERAS * DAY_MS / SEG_MS) as u64,
        "expired {} rows, expected {}",
        rep.deleted_age,
        CAMERAS * DAY_MS / SEG_MS
    );
    // An idle pass (nothing due), as every 10 s.
    let t = Instant::now();
    let idle = engine.pass()?;
    let idle_ms = t.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(idle.deleted() == 0);

    // Listing one camera's segments over a range (what playback asks for).
    let cat = Catalog::open_read_only(store)?;
    let list = |from: i64, to: i64| -> anyhow::Result<(usize, f64)> {
        let mut stmt = cat.connection().prepare_cached(
            "SELECT rowid, uuid, camera_id, state, codec, start_unix_ms, end_unix_ms, start_90k,
                    end_90k, bytes, frames, key_frames, wrapped_key, sha256, recovered
             FROM segments
             WHERE camera_id = ?1 AND start_unix_ms >= ?2 - 3600000 AND start_unix_ms < ?3
               AND end_unix_ms > ?2
             ORDER BY start_unix_ms",
        )?;
        let mut best = f64::MAX;
        let mut n = 0;
        for _ in 0..20 {
            let t = Instant::now();
            let rows: Vec<(i64, Vec<u8>)> = stmt
                .query_map(params!["cam-17", from, to], |r| Ok((r.get(0)?, r.get(12)?)))?
                .collect::<rusqlite::Result<_>>()?;
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
            n = rows.len();
        }
        Ok((n, best))
    };
    let mid = T0 + 15 * DAY_MS + 7 * 3600 * 1000;
    let (hour_rows, hour_ms) = list(mid, mid + 3600 * 1000)?;
    let (day_rows, day_ms) = list(mid, mid + DAY_MS)?;
    let size = |name: &str| std::fs::metadata(store.join(name)).map_or(0, |m| m.len());
    let db_bytes = size("catalog.sqlite");
    let wal_bytes = size("catalog.sqlite-wal");

    println!();
    println!(
        "catalog: {CAMERAS} cameras x {DAYS} days x 60 s segments = {rows} rows (built in {build_s:.0} s)"
    );
    println!("| measure | result | target |");
    println!("|---|---|---|");
    println!(
        "| expire one day ({} rows + journal, batches of {}) | {expire_s:.2} s | <= 10 s |",
        rep.deleted_age, batch_rows
    );
    println!(
        "| writer insert/close beside it ({} ops) | max {max_ms:.1} ms, p99 {p99_ms:.1} ms | no stall |",
        lat.len()
    );
    println!("| idle retention pass (nothing due) | {idle_ms:.1} ms | every 10 s |");
    println!("| list one camera, one hour ({hour_rows} rows) | {hour_ms:.2} ms | <= 5 ms |");
    println!("| list one camera, one day ({day_rows} rows) | {day_ms:.2} ms | <= 5 ms |");
    println!(
        "| catalog size on disk | {:.0} MB (+ WAL {:.1} MB) | - |",
        db_bytes as f64 / 1e6,
        wal_bytes as f64 / 1e6
    );
    println!("| retention setup (first start: usage totals) | {setup_s:.2} s | once |");
    Ok(())
}

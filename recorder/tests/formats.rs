//! Stores written by earlier versions stay readable (issue 10): a store of each past
//! version is kept under `tests/fixtures/` and read by this build.
//!
//! `store-v1`: catalog schema 1, segments of format 1 (frame index and footer), five
//! 2 s segments of a 160x120 H.264 camera `gate`, written by the build before
//! versioning began. Its KEK is in `kek` (test data only).
//!
//! `store-v0-preindex`: the same, written by a development build from before the frame
//! index (its segments also say format 1). Not readable by this build; kept to show
//! that such files are reported, never altered or deleted.

use std::path::Path;

use recorder::catalog::{Catalog, SCHEMA_VERSION, backup_path};
use recorder::config::Config;
use recorder::footage::Footage;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A copy of fixture `name` and a config for it.
fn fixture(name: &str) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    copy_dir(&src, dir.path());
    // git keeps no file modes but the executable bit: the KEK must be private again.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.path().join("kek"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let config = Config::parse(
        &format!(
            "[storage]\npath = \"{}\"\nsegment_secs = 2\n[keys]\nkek_file = \"{}\"\n\
             [[cameras]]\nid = \"gate\"\nurl = \"rtsp://127.0.0.1:1/a\"\n",
            dir.path().join("store").display(),
            dir.path().join("kek").display()
        ),
        Path::new("t.toml"),
    )
    .unwrap();
    (dir, config)
}

#[test]
fn a_version_1_store_is_upgraded_with_a_backup_and_every_frame_reads() {
    let (_dir, config) = fixture("store-v1");
    let store = config.storage.path.clone();
    let catalog = store.join(recorder::catalog::CATALOG_FILE);

    // Reading beside a running recorder does not upgrade.
    let ro = Catalog::open_read_only(&store).unwrap();
    assert_eq!(ro.schema_version().unwrap(), Some(1));
    let rows = ro.segments(None).unwrap();
    assert_eq!(rows.len(), 5);
    drop(ro);

    // The first writable open upgrades, after a backup of the old catalog.
    let cat = Catalog::open(&store).unwrap();
    assert_eq!(cat.schema_version().unwrap(), Some(SCHEMA_VERSION));
    let backup = backup_path(&catalog, 1);
    let old = Catalog::open_read_only_file(&backup).unwrap();
    assert_eq!(old.schema_version().unwrap(), Some(1));
    assert_eq!(old.segments(None).unwrap().len(), 5);
    drop(old);
    // The totals retention reads came with the upgrade, equal to the rows.
    let (n, bytes) = cat.usage("gate").unwrap();
    assert_eq!(n, 5);
    assert_eq!(bytes, rows.iter().map(|r| r.bytes).sum::<u64>());
    drop(cat);
    // Opening again changes nothing and makes no second backup.
    Catalog::open(&store).unwrap();
    let backups = std::fs::read_dir(&store)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".bak")
        })
        .count();
    assert_eq!(backups, 1);

    // Every segment authenticates, its index reads, and its frames decrypt.
    let kek = recorder::store::load_kek(&config, &recorder::store::key_provider(&config)).unwrap();
    let report = recorder::check::check(&store, &kek, &["gate".to_string()]).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let footage = Footage::open(&config).unwrap();
    let mut frames = 0;
    for row in &rows {
        let index = footage.segment_index(row).unwrap();
        assert_eq!(index.frames.len() as u64, row.frames);
        let mut reader = footage.open_segment(row).unwrap();
        while let Some(gop) = reader.next_gop().unwrap() {
            frames += gop.frames.len() as u64;
        }
    }
    assert_eq!(frames, rows.iter().map(|r| r.frames).sum::<u64>());
    assert!(frames > 20, "{frames}");
}

#[test]
fn a_catalog_from_a_newer_build_is_refused_and_left_alone() {
    let (_dir, config) = fixture("store-v1");
    let store = config.storage.path.clone();
    let catalog = store.join(recorder::catalog::CATALOG_FILE);
    {
        let c = rusqlite::Connection::open(&catalog).unwrap();
        c.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [(SCHEMA_VERSION + 1).to_string()],
        )
        .unwrap();
    }
    let before = std::fs::read(&catalog).unwrap();
    let wal = |p: &Path| std::fs::read(p.with_extension("sqlite-wal")).unwrap_or_default();
    let before_wal = wal(&catalog);
    for e in [
        Catalog::open(&store).err().unwrap(),
        Catalog::open_read_only(&store).err().unwrap(),
    ] {
        let m = e.to_string();
        assert!(m.contains("newer than this recorder"), "{m}");
    }
    assert!(
        std::fs::read(&catalog).unwrap() == before,
        "the catalog changed"
    );
    assert!(wal(&catalog) == before_wal, "the catalog's WAL changed");
    assert!(!backup_path(&catalog, SCHEMA_VERSION + 1).exists());
}

fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn segments_from_before_the_index_are_reported_and_left_intact() {
    let (_dir, config) = fixture("store-v0-preindex");
    let store = config.storage.path.clone();
    let segments = store.join(recorder::catalog::SEGMENTS_DIR);
    let before = files(&segments);
    assert_eq!(before.len(), 5);
    let kek = recorder::store::load_kek(&config, &recorder::store::key_provider(&config)).unwrap();
    let cat = Catalog::open(&store).unwrap();
    recorder::recovery::recover_store(&store, &cat, &kek).unwrap();
    let report = recorder::check::check(&store, &kek, &["gate".to_string()]).unwrap();
    assert_eq!(report.problems.len(), 5, "{:?}", report.problems);
    for p in &report.problems {
        assert!(p.problem.contains("failed authentication"), "{}", p.problem);
    }
    assert!(
        files(&segments) == before,
        "a segment file was changed or removed"
    );
}

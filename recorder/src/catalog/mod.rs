//! The catalog: what is on disk, in SQLite (WAL).
//!
//! A segment's row is inserted, state `open` with its wrapped key, *before* its file is
//! created, and marked `closed` only after the file and its directory are synced. So
//! after any crash every file either has a row (open: recover it; closed: complete) or
//! is garbage, and a closed row never claims bytes that are not on disk. Wrapped keys
//! live only here, with `secure_delete` on, so deleting a row erases the footage.

pub mod holds;
pub mod journal;
pub(crate) mod retention;
pub(crate) mod status;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::segment::{Codec, SegmentId};

pub const CATALOG_FILE: &str = "catalog.sqlite";
pub const SEGMENTS_DIR: &str = "segments";
/// The catalog's layout: [`SCHEMA`] is version 1, each of [`UPGRADES`] takes it one
/// version further. A change of layout is a new step here, never an edit of an old one.
pub const SCHEMA_VERSION: i64 = 1 + UPGRADES.len() as i64;

/// Layout changes after version 1, in order: `UPGRADES[i]` takes version `i + 1` to
/// `i + 2`. Each runs in the upgrade's one transaction.
const UPGRADES: &[Upgrade] = &[Upgrade {
    what: "per-camera usage totals kept by triggers (retention never sums millions of rows)",
    sql: "
CREATE TABLE IF NOT EXISTS segment_usage (
    camera_id TEXT PRIMARY KEY,
    segments INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS segment_usage_insert AFTER INSERT ON segments BEGIN
    INSERT INTO segment_usage(camera_id, segments, bytes) VALUES (NEW.camera_id, 1, NEW.bytes)
    ON CONFLICT(camera_id) DO UPDATE SET segments = segments + 1, bytes = bytes + NEW.bytes;
END;
CREATE TRIGGER IF NOT EXISTS segment_usage_delete AFTER DELETE ON segments BEGIN
    UPDATE segment_usage SET segments = segments - 1, bytes = bytes - OLD.bytes
    WHERE camera_id = OLD.camera_id;
END;
CREATE TRIGGER IF NOT EXISTS segment_usage_update AFTER UPDATE OF camera_id, bytes ON segments BEGIN
    UPDATE segment_usage SET segments = segments - 1, bytes = bytes - OLD.bytes
    WHERE camera_id = OLD.camera_id;
    INSERT INTO segment_usage(camera_id, segments, bytes) VALUES (NEW.camera_id, 1, NEW.bytes)
    ON CONFLICT(camera_id) DO UPDATE SET segments = segments + 1, bytes = bytes + NEW.bytes;
END;
DELETE FROM segment_usage;
INSERT INTO segment_usage(camera_id, segments, bytes)
    SELECT camera_id, COUNT(*), SUM(bytes) FROM segments GROUP BY camera_id;
DELETE FROM meta WHERE key = 'segment_usage_v1';
",
}];

struct Upgrade {
    what: &'static str,
    sql: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "catalog {path} has schema version {found}, newer than this recorder's {SCHEMA_VERSION}: \
         run the recorder that wrote it, or a newer one"
    )]
    Version { path: PathBuf, found: i64 },
    #[error("catalog {path}: cannot upgrade from schema version {from}: {message}")]
    Upgrade {
        path: PathBuf,
        from: i64,
        message: String,
    },
    #[error("catalog {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

impl CatalogError {
    /// Whether SQLite could not write because the file system is full (SQLITE_FULL):
    /// retention can free space and the write be tried again.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            CatalogError::Sql {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } if e.code == rusqlite::ErrorCode::DiskFull
        )
    }
}

pub type Result<T> = std::result::Result<T, CatalogError>;

/// A segment's row.
#[derive(Debug, Clone)]
pub struct SegmentRow {
    pub rowid: i64,
    pub id: SegmentId,
    pub camera: String,
    pub open: bool,
    pub codec: Codec,
    pub start_unix_ms: i64,
    pub end_unix_ms: i64,
    pub start_90k: i64,
    pub end_90k: i64,
    pub bytes: u64,
    pub frames: u64,
    pub key_frames: u64,
    pub wrapped_key: Vec<u8>,
    pub sha256: Option<String>,
    pub recovered: bool,
}

/// What a closed segment holds, set when it closes or is recovered.
#[derive(Debug, Clone)]
pub struct ClosedSegment {
    pub end_unix_ms: i64,
    pub start_90k: i64,
    pub end_90k: i64,
    pub bytes: u64,
    pub frames: u64,
    pub key_frames: u64,
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GapRow {
    pub rowid: i64,
    pub camera: String,
    pub from_unix_ms: i64,
    /// `None` while the interruption lasts.
    pub to_unix_ms: Option<i64>,
    pub reason: String,
}

pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

/// Where the copy made before upgrading a catalog of version `from` goes.
/// A gap from a row's columns `rowid, camera_id, from_unix_ms, to_unix_ms, reason`.
pub(crate) fn gap_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GapRow> {
    Ok(GapRow {
        rowid: r.get(0)?,
        camera: r.get(1)?,
        from_unix_ms: r.get(2)?,
        to_unix_ms: r.get(3)?,
        reason: r.get(4)?,
    })
}

pub fn backup_path(catalog: &Path, from: i64) -> PathBuf {
    let mut s = catalog.as_os_str().to_owned();
    s.push(format!(".v{from}.bak"));
    PathBuf::from(s)
}

/// Where a segment's file lives in the store.
pub fn segment_path(store: &Path, camera: &str, id: SegmentId) -> PathBuf {
    store
        .join(SEGMENTS_DIR)
        .join(camera)
        .join(format!("{id}.seg"))
}

/// How long a catalog connection waits for another one's lock.
const BUSY: Duration = Duration::from_secs(10);

impl Catalog {
    /// Opens (creating if needed) the catalog of the store at `store`.
    pub fn open(store: &Path) -> Result<Catalog> {
        let path = store.join(CATALOG_FILE);
        let conn = crate::sqlite::open(&path, BUSY).map_err(|source| CatalogError::Sql {
            path: path.clone(),
            source,
        })?;
        let c = Catalog { conn, path };
        c.setup(true)?;
        Ok(c)
    }

    /// Opens an existing catalog for reading only (for `check` beside a running recorder).
    pub fn open_read_only(store: &Path) -> Result<Catalog> {
        Catalog::open_read_only_file(&store.join(CATALOG_FILE))
    }

    /// Opens a catalog file for reading only (a store's, or a backup of one).
    pub fn open_read_only_file(path: &Path) -> Result<Catalog> {
        let path = path.to_path_buf();
        let conn =
            crate::sqlite::open_read_only(&path, BUSY).map_err(|source| CatalogError::Sql {
                path: path.clone(),
                source,
            })?;
        let c = Catalog { conn, path };
        c.setup(false)?;
        Ok(c)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql<T>(&self, r: rusqlite::Result<T>) -> Result<T> {
        r.map_err(|source| CatalogError::Sql {
            path: self.path.clone(),
            source,
        })
    }

    /// The schema version the catalog says it has (`None`: a new catalog).
    pub fn schema_version(&self) -> Result<Option<i64>> {
        let v: Option<String> = self.sql(
            self.conn
                .query_row(
                    "SELECT value FROM meta WHERE key='schema_version'",
                    [],
                    |r| r.get(0),
                )
                .optional(),
        )?;
        Ok(v.map(|v| v.parse().unwrap_or(-1)))
    }

    fn setup(&self, writable: bool) -> Result<()> {
        if !writable {
            // Reading works on every version up to this one (an old one is upgraded
            // by the next writable open); a newer one may mean anything.
            return match self.schema_version()? {
                Some(v) if v > SCHEMA_VERSION => Err(CatalogError::Version {
                    path: self.path.clone(),
                    found: v,
                }),
                _ => Ok(()),
            };
        }
        self.sql(self.conn.execute_batch(SCHEMA))?;
        match self.schema_version()? {
            None => {
                // A new catalog: every step, in one transaction.
                self.upgrade(1, false)?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(v) if (1..SCHEMA_VERSION).contains(&v) => self.upgrade(v, true)?,
            Some(v) => {
                return Err(CatalogError::Version {
                    path: self.path.clone(),
                    found: v,
                });
            }
        }
        Ok(())
    }

    /// Takes the catalog from version `from` to [`SCHEMA_VERSION`] in one transaction;
    /// with `backup`, first copies it beside itself (`catalog.sqlite.v<from>.bak`, a
    /// consistent copy made by SQLite), so an upgrade can always be undone.
    fn upgrade(&self, from: i64, backup: bool) -> Result<()> {
        let failed = |message: String| CatalogError::Upgrade {
            path: self.path.clone(),
            from,
            message,
        };
        if backup {
            // An earlier copy (an upgrade that failed, or raced) is kept.
            let mut copy = backup_path(&self.path, from);
            if copy.exists() {
                let mut s = copy.into_os_string();
                s.push(format!(".{}", chrono::Utc::now().timestamp_millis()));
                copy = s.into();
            }
            self.conn
                .execute("VACUUM INTO ?1", [copy.to_string_lossy()])
                .map_err(|e| failed(format!("backup to {}: {e}", copy.display())))?;
            tracing::info!(backup = %copy.display(), from, to = SCHEMA_VERSION, "upgrading the catalog");
        }
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )
        .map_err(|e| failed(e.to_string()))?;
        // Another process may have upgraded it since the version was read.
        if self.schema_version()? == Some(SCHEMA_VERSION) {
            return Ok(());
        }
        for (i, step) in UPGRADES.iter().enumerate().skip((from - 1) as usize) {
            tx.execute_batch(step.sql)
                .map_err(|e| failed(format!("step to version {} ({}): {e}", i + 2, step.what)))?;
            if backup {
                tracing::info!(version = i + 2, "catalog: {}", step.what);
            }
        }
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('schema_version', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [SCHEMA_VERSION.to_string()],
        )
        .map_err(|e| failed(e.to_string()))?;
        tx.commit().map_err(|e| failed(e.to_string()))
    }

    /// The per-camera totals the triggers keep: (segments, bytes) of `camera`.
    pub fn usage(&self, camera: &str) -> Result<(u64, u64)> {
        let v: Option<(i64, i64)> = self.sql(
            self.conn
                .query_row(
                    "SELECT segments, bytes FROM segment_usage WHERE camera_id = ?1",
                    [camera],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional(),
        )?;
        let (n, b) = v.unwrap_or((0, 0));
        Ok((n.max(0) as u64, b.max(0) as u64))
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.sql(
            self.conn
                .query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
                .optional(),
        )
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.sql(self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            params![key, value],
        ))
        .map(drop)
    }

    /// Records a camera's identity and live state (read by the viewer-api).
    pub fn upsert_camera(&self, id: &str, name: &str) -> Result<()> {
        self.sql(self.conn.execute(
            "INSERT INTO cameras(id, name) VALUES (?1, ?2)
             ON CONFLICT(id) DO UPDATE SET name=excluded.name",
            params![id, name],
        ))
        .map(drop)
    }

    pub fn set_camera_state(
        &self,
        id: &str,
        state: &str,
        reason: Option<&str>,
        since_unix_ms: i64,
    ) -> Result<()> {
        self.sql(self.conn.execute(
            "UPDATE cameras SET state=?2, state_reason=?3, state_since_unix_ms=?4 WHERE id=?1",
            params![id, state, reason, since_unix_ms],
        ))
        .map(drop)
    }

    /// Inserts the row of a segment about to be created.
    pub fn insert_open_segment(
        &self,
        id: SegmentId,
        camera: &str,
        codec: Codec,
        start_unix_ms: i64,
        start_90k: i64,
        wrapped_key: &[u8],
    ) -> Result<i64> {
        self.sql(self.conn.execute(
            "INSERT INTO segments(uuid, camera_id, state, codec, start_unix_ms, end_unix_ms,
                                  start_90k, end_90k, wrapped_key)
             VALUES (?1, ?2, 'open', ?3, ?4, ?4, ?5, ?5, ?6)",
            params![
                id.to_string(),
                camera,
                codec.as_str(),
                start_unix_ms,
                start_90k,
                wrapped_key
            ],
        ))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Marks a segment closed once its file is complete and synced.
    pub fn close_segment(&self, id: SegmentId, c: &ClosedSegment, recovered: bool) -> Result<()> {
        let n = self.sql(self.conn.execute(
            "UPDATE segments SET state='closed', end_unix_ms=?2, start_90k=?3, end_90k=?4,
                    bytes=?5, frames=?6, key_frames=?7, sha256=?8, recovered=?9
             WHERE uuid=?1",
            params![
                id.to_string(),
                c.end_unix_ms,
                c.start_90k,
                c.end_90k,
                c.bytes as i64,
                c.frames as i64,
                c.key_frames as i64,
                hex::encode(c.sha256),
                recovered as i64
            ],
        ))?;
        if n != 1 {
            return Err(CatalogError::Corrupt {
                path: self.path.clone(),
                message: format!("segment {id} has no row to close"),
            });
        }
        Ok(())
    }

    /// Removes a segment's row (its wrapped key is overwritten by `secure_delete`).
    pub fn delete_segment_row(&self, id: SegmentId) -> Result<()> {
        self.sql(
            self.conn
                .execute("DELETE FROM segments WHERE uuid=?1", [id.to_string()]),
        )
        .map(drop)
    }

    /// Every segment (of one camera, or all), by camera and start time.
    pub fn segments(&self, camera: Option<&str>) -> Result<Vec<SegmentRow>> {
        self.select_segments(
            "(?1 IS NULL OR camera_id = ?1) ORDER BY camera_id, start_unix_ms, rowid",
            rusqlite::params![camera],
        )
    }

    /// Segments of `camera` that may hold frames in `[from, to)` (an open one counts
    /// as reaching to now), by start time; found through the (camera, end) index, so a
    /// clip never reads the camera's whole month of rows.
    pub fn segments_overlapping(
        &self,
        camera: &str,
        from_unix_ms: i64,
        to_unix_ms: i64,
    ) -> Result<Vec<SegmentRow>> {
        self.select_segments(
            "camera_id = ?1 AND start_unix_ms < ?3
               AND (end_unix_ms >= ?2 OR state = 'open')
             ORDER BY start_unix_ms, rowid",
            rusqlite::params![camera, from_unix_ms, to_unix_ms],
        )
    }

    /// One segment's row.
    pub fn segment(&self, id: SegmentId) -> Result<Option<SegmentRow>> {
        Ok(self
            .select_segments("uuid = ?1", rusqlite::params![id.to_string()])?
            .pop())
    }

    fn select_segments(
        &self,
        where_order: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<SegmentRow>> {
        let mut stmt = self.sql(self.conn.prepare_cached(&format!(
            "SELECT rowid, uuid, camera_id, state, codec, start_unix_ms, end_unix_ms, start_90k,
                    end_90k, bytes, frames, key_frames, wrapped_key, sha256, recovered
             FROM segments WHERE {where_order}"
        )))?;
        let rows = stmt.query_map(params, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, Option<i64>>(8)?,
                r.get::<_, i64>(9)?,
                r.get::<_, i64>(10)?,
                r.get::<_, i64>(11)?,
                r.get::<_, Vec<u8>>(12)?,
                r.get::<_, Option<String>>(13)?,
                r.get::<_, i64>(14)?,
            ))
        });
        let rows = self.sql(rows)?;
        let mut out = Vec::new();
        for row in rows {
            let (
                rowid,
                uuid,
                camera,
                state,
                codec,
                s,
                e,
                s90,
                e90,
                bytes,
                frames,
                kf,
                wk,
                sha,
                rec,
            ) = self.sql(row)?;
            let corrupt = |m: String| CatalogError::Corrupt {
                path: self.path.clone(),
                message: m,
            };
            out.push(SegmentRow {
                rowid,
                id: uuid
                    .parse()
                    .map_err(|_| corrupt(format!("segment row {rowid} has a bad id")))?,
                camera,
                open: state == "open",
                codec: codec
                    .parse()
                    .map_err(|_| corrupt(format!("segment row {rowid} has a bad codec")))?,
                start_unix_ms: s,
                end_unix_ms: e,
                start_90k: s90.unwrap_or(0),
                end_90k: e90.unwrap_or(0),
                bytes: bytes as u64,
                frames: frames as u64,
                key_frames: kf as u64,
                wrapped_key: wk,
                sha256: sha,
                recovered: rec != 0,
            });
        }
        Ok(out)
    }

    /// The latest end of anything recorded for a camera, if any.
    pub fn last_recorded_unix_ms(&self, camera: &str) -> Result<Option<i64>> {
        self.sql(self.conn.query_row(
            "SELECT MAX(end_unix_ms) FROM segments WHERE camera_id=?1",
            [camera],
            |r| r.get(0),
        ))
    }

    pub fn open_gap(&self, camera: &str, from_unix_ms: i64, reason: &str) -> Result<i64> {
        self.sql(self.conn.execute(
            "INSERT INTO gaps(camera_id, from_unix_ms, to_unix_ms, reason) VALUES (?1, ?2, NULL, ?3)",
            params![camera, from_unix_ms, reason],
        ))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn close_gap(&self, rowid: i64, to_unix_ms: i64) -> Result<()> {
        self.sql(self.conn.execute(
            "UPDATE gaps SET to_unix_ms = MAX(from_unix_ms, ?2) WHERE rowid=?1",
            params![rowid, to_unix_ms],
        ))
        .map(drop)
    }

    /// Closes gaps left open by a recorder that stopped without closing them.
    pub fn close_dangling_gaps(&self, camera: &str, to_unix_ms: i64) -> Result<()> {
        self.sql(self.conn.execute(
            "UPDATE gaps SET to_unix_ms = MAX(from_unix_ms, ?2) WHERE camera_id=?1 AND to_unix_ms IS NULL",
            params![camera, to_unix_ms],
        ))
        .map(drop)
    }

    pub fn last_gap_end_unix_ms(&self, camera: &str) -> Result<Option<i64>> {
        self.sql(self.conn.query_row(
            "SELECT MAX(to_unix_ms) FROM gaps WHERE camera_id=?1",
            [camera],
            |r| r.get(0),
        ))
    }

    pub fn gaps(&self, camera: &str) -> Result<Vec<GapRow>> {
        let mut stmt = self.sql(self.conn.prepare_cached(
            "SELECT rowid, camera_id, from_unix_ms, to_unix_ms, reason FROM gaps
             WHERE camera_id=?1 ORDER BY from_unix_ms, rowid",
        ))?;
        let rows = self.sql(stmt.query_map([camera], gap_row))?;
        rows.map(|r| self.sql(r)).collect()
    }

    /// Camera ids known to the catalog (configured now or in the past).
    pub fn camera_ids(&self) -> Result<Vec<String>> {
        let mut stmt = self.sql(self.conn.prepare(
            "SELECT id FROM cameras UNION SELECT DISTINCT camera_id FROM segments ORDER BY 1",
        ))?;
        let rows = self.sql(stmt.query_map([], |r| r.get(0)))?;
        rows.map(|r| self.sql(r)).collect()
    }

    pub fn total_bytes(&self) -> Result<u64> {
        self.sql(
            self.conn
                .query_row("SELECT COALESCE(SUM(bytes), 0) FROM segments", [], |r| {
                    r.get::<_, i64>(0)
                }),
        )
        .map(|b| b as u64)
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cameras (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'unknown',
    state_reason TEXT,
    state_since_unix_ms INTEGER
);
CREATE TABLE IF NOT EXISTS segments (
    rowid INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    camera_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'closed')),
    codec TEXT NOT NULL,
    start_unix_ms INTEGER NOT NULL,
    end_unix_ms INTEGER NOT NULL,
    start_90k INTEGER,
    end_90k INTEGER,
    bytes INTEGER NOT NULL DEFAULT 0,
    frames INTEGER NOT NULL DEFAULT 0,
    key_frames INTEGER NOT NULL DEFAULT 0,
    wrapped_key BLOB NOT NULL,
    sha256 TEXT,
    recovered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS segments_by_camera_time ON segments (camera_id, start_unix_ms);
CREATE INDEX IF NOT EXISTS segments_by_end ON segments (end_unix_ms);
CREATE INDEX IF NOT EXISTS segments_by_camera_end ON segments (camera_id, end_unix_ms);
CREATE TABLE IF NOT EXISTS gaps (
    rowid INTEGER PRIMARY KEY,
    camera_id TEXT NOT NULL,
    from_unix_ms INTEGER NOT NULL,
    to_unix_ms INTEGER,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gaps_by_camera_time ON gaps (camera_id, from_unix_ms);
-- Legal holds (holds.rs). cameras: comma-separated ids, or '*' for every camera.
CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY,
    cameras TEXT NOT NULL,
    from_unix_ms INTEGER NOT NULL,
    to_unix_ms INTEGER NOT NULL,
    case_ref TEXT NOT NULL,
    placed_by TEXT NOT NULL,
    until_unix_ms INTEGER,
    created_unix_ms INTEGER NOT NULL,
    released_unix_ms INTEGER,
    released_by TEXT
);
-- Deletion journal (journal.rs): what was deleted, when and why; no images.
CREATE TABLE IF NOT EXISTS deletion_journal (
    rowid INTEGER PRIMARY KEY,
    segment TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    from_unix_ms INTEGER NOT NULL,
    to_unix_ms INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT,
    deleted_unix_ms INTEGER NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('age', 'capacity', 'disk-full'))
);
CREATE INDEX IF NOT EXISTS deletion_journal_by_time ON deletion_journal (deleted_unix_ms);
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_segments_are_found_by_range_and_one_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let mut ids = Vec::new();
        // gate: [0,60) [60,120) [120,open); hall: [0,60)
        for (cam, start, end) in [
            ("gate", 0, 60),
            ("gate", 60, 120),
            ("gate", 120, -1),
            ("hall", 0, 60),
        ] {
            let id = SegmentId::random();
            cat.insert_open_segment(id, cam, Codec::H264, start * 1000, 0, &[1; 60])
                .unwrap();
            if end >= 0 {
                let closed = ClosedSegment {
                    end_unix_ms: end * 1000,
                    start_90k: 0,
                    end_90k: 0,
                    bytes: 1,
                    frames: 1,
                    key_frames: 1,
                    sha256: [0; 32],
                };
                cat.close_segment(id, &closed, false).unwrap();
            }
            ids.push(id);
        }
        let found = |from: i64, to: i64| -> Vec<SegmentId> {
            cat.segments_overlapping("gate", from * 1000, to * 1000)
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(found(10, 20), vec![ids[0]]);
        assert_eq!(found(59, 61), vec![ids[0], ids[1]]);
        assert_eq!(
            found(500, 600),
            vec![ids[2]],
            "the open segment reaches to now"
        );
        assert_eq!(found(-100, 0), Vec::<SegmentId>::new());
        assert_eq!(found(0, 1000).len(), 3, "hall's segment is not gate's");
        assert_eq!(cat.segment(ids[3]).unwrap().unwrap().camera, "hall");
        assert!(cat.segment(SegmentId::random()).unwrap().is_none());
    }
}

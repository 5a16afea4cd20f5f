//! Reading footage back out of the store, for the viewer-api and exports.
//!
//! The recorder owns the store's format; everything that reads footage goes through
//! here, so the viewer-api never opens segment files or unwraps keys itself. Reads
//! use a read-only catalog connection per call (the recorder keeps writing beside
//! it, in WAL mode) and never change anything in the store.

use std::path::{Path, PathBuf};

use hardware::Kek;
use rusqlite::OptionalExtension;

pub use crate::catalog::GapRow;
use crate::catalog::{self, Catalog, CatalogError, SegmentRow};
use crate::config::Config;
use crate::segment::{self, SegmentError, SegmentId, SegmentIndex, SegmentReader};
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum FootageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("segment {id}: {source}")]
    Segment { id: SegmentId, source: SegmentError },
}

/// A camera as the catalog knows it, with the state the recorder last set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CameraStatus {
    pub id: String,
    pub name: String,
    /// e.g. `recording`, `offline`, `unknown` (never set yet).
    pub state: String,
    pub state_reason: Option<String>,
    pub state_since_unix_ms: Option<i64>,
}

/// Read access to an initialised store.
pub struct Footage {
    store: PathBuf,
    kek: Kek,
}

impl std::fmt::Debug for Footage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Footage")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Footage {
    /// Opens the store of `config` with its key provider, checking that the KEK is the
    /// store's own.
    pub fn open(config: &Config) -> Result<Footage, FootageError> {
        let kek = store::load_kek(config, &store::key_provider(config))?;
        Ok(Footage::new(config.storage.path.clone(), kek))
    }

    pub fn new(store: PathBuf, kek: Kek) -> Footage {
        Footage { store, kek }
    }

    pub fn store(&self) -> &Path {
        &self.store
    }

    fn catalog(&self) -> Result<Catalog, FootageError> {
        Ok(Catalog::open_read_only(&self.store)?)
    }

    /// Every camera in the catalog, by id.
    pub fn cameras(&self) -> Result<Vec<CameraStatus>, FootageError> {
        let cat = self.catalog()?;
        let path = cat.path().to_path_buf();
        let sql = |source| CatalogError::Sql {
            path: path.clone(),
            source,
        };
        let conn = cat.connection();
        let mut stmt = conn
            .prepare(
                "SELECT id, name, state, state_reason, state_since_unix_ms FROM cameras ORDER BY id",
            )
            .map_err(sql)?;
        let rows = stmt.query_map([], camera_status).map_err(sql)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r.map_err(sql)?);
        }
        Ok(out)
    }

    /// Segments of `camera` that may hold frames in `[from, to)`, by start time. A
    /// segment still open counts as reaching to now.
    pub fn segments(
        &self,
        camera: &str,
        from_unix_ms: i64,
        to_unix_ms: i64,
    ) -> Result<Vec<SegmentRow>, FootageError> {
        Ok(self
            .catalog()?
            .segments_overlapping(camera, from_unix_ms, to_unix_ms)?)
    }

    /// Gaps of `camera` overlapping `[from, to)`; a gap still open has no end.
    pub fn gaps(
        &self,
        camera: &str,
        from_unix_ms: i64,
        to_unix_ms: i64,
    ) -> Result<Vec<GapRow>, FootageError> {
        let rows = self.catalog()?.gaps(camera)?;
        Ok(rows
            .into_iter()
            .filter(|g| {
                g.from_unix_ms < to_unix_ms && g.to_unix_ms.is_none_or(|t| t > from_unix_ms)
            })
            .collect())
    }

    /// Opens a segment for reading, GOP by GOP. For a segment still being written,
    /// `next_gop` ends with [`SegmentError::Cut`] at its authentic end.
    pub fn open_segment(&self, row: &SegmentRow) -> Result<SegmentReader, FootageError> {
        let seg = |source| FootageError::Segment { id: row.id, source };
        let key =
            segment::unwrap_key(self.kek.as_bytes(), row.id, &row.wrapped_key).map_err(seg)?;
        let path = catalog::segment_path(&self.store, &row.camera, row.id);
        SegmentReader::open(&path, row.id, &row.camera, &key).map_err(seg)
    }

    /// The stored index of a closed segment (frames' times, sizes and chunk locations),
    /// read without decrypting its footage. A segment still being written, or cut, has
    /// none: [`SegmentError::NoIndex`]; read it with [`open_segment`](Self::open_segment).
    pub fn segment_index(&self, row: &SegmentRow) -> Result<SegmentIndex, FootageError> {
        let seg = |source| FootageError::Segment { id: row.id, source };
        let key =
            segment::unwrap_key(self.kek.as_bytes(), row.id, &row.wrapped_key).map_err(seg)?;
        let path = catalog::segment_path(&self.store, &row.camera, row.id);
        SegmentReader::open_index(&path, row.id, &row.camera, &key).map_err(seg)
    }
}

/// A camera's footage as the catalog counts it, for health reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CameraHealth {
    pub camera: CameraStatus,
    /// Segments in the catalog, the one being written included.
    pub segments: u64,
    /// Bytes of its closed segments (a segment being written counts once it closes):
    /// what retention weighs against the capacities.
    pub bytes: u64,
    /// Start of its oldest footage.
    pub oldest_unix_ms: Option<i64>,
    /// End of its newest closed segment, or the start of the one being written if later.
    pub newest_unix_ms: Option<i64>,
    /// Gaps overlapping `[gaps_from, now)`, oldest first; a gap still open has no end.
    pub gaps: Vec<GapRow>,
}

/// What the catalog says about the store's health, read in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreHealth {
    /// Every camera of the catalog (configured now, or with footage left), by id.
    pub cameras: Vec<CameraHealth>,
    /// Bytes of all closed segments (every camera, configured or not).
    pub bytes: u64,
    /// Holds in force at `now` (as the wall clock says; retention believes no expiry
    /// while it distrusts the clock).
    pub holds_active: u64,
    /// Retention's last stored state (alarms, clock refusal); `None` before the
    /// recorder's retention has run once on this store.
    pub retention: Option<crate::retention::RetentionState>,
    /// The disk under the store, as the recorder last probed it ([`crate::devices`]);
    /// `None` where nothing watches it (the catalog alone was read).
    #[serde(default)]
    pub storage: Option<hardware::storage::StorageReport>,
    /// The case-open switch ([`crate::devices::TamperWatch`]); `None` where the box has
    /// none configured.
    #[serde(default)]
    pub tamper: Option<hardware::tamper::TamperStatus>,
}

/// Reads the health of the store at `store` from its catalog (read-only; safe beside
/// a running recorder). Counts come from the per-camera totals retention keeps
/// (`segment_usage`) when they exist, so a month of segments is not summed.
pub fn health(
    store: &Path,
    gaps_from_unix_ms: i64,
    now_unix_ms: i64,
) -> Result<StoreHealth, FootageError> {
    let cat = Catalog::open_read_only(store)?;
    let path = cat.path().to_path_buf();
    let sql = |source| CatalogError::Sql {
        path: path.clone(),
        source,
    };
    let conn = cat.connection();
    // One read transaction: every number below is from the same moment.
    let tx = conn.unchecked_transaction().map_err(sql)?;
    let have_usage: bool = tx
        .query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type='table' AND name='segment_usage')",
            [],
            |r| r.get(0),
        )
        .map_err(sql)?;
    let mut statuses: Vec<CameraStatus> = Vec::new();
    {
        // Cameras with footage but no row (no longer configured) come from the usage
        // totals when there are some: listing them from the segments reads every row.
        let others = if have_usage {
            "SELECT camera_id FROM segment_usage WHERE segments > 0"
        } else {
            "SELECT DISTINCT camera_id FROM segments"
        };
        let mut stmt = tx
            .prepare(&format!(
                "SELECT id, name, state, state_reason, state_since_unix_ms FROM cameras
                 UNION ALL
                 SELECT o.camera_id, o.camera_id, 'unknown', NULL, NULL FROM ({others}) o
                  WHERE o.camera_id NOT IN (SELECT id FROM cameras)
                 ORDER BY 1"
            ))
            .map_err(sql)?;
        let rows = stmt.query_map([], camera_status).map_err(sql)?;
        for r in rows {
            statuses.push(r.map_err(sql)?);
        }
    }
    let mut cameras = Vec::with_capacity(statuses.len());
    for camera in statuses {
        let id = camera.id.as_str();
        let (segments, bytes): (i64, i64) = if have_usage {
            tx.query_row(
                "SELECT segments, bytes FROM segment_usage WHERE camera_id=?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql)?
            .unwrap_or((0, 0))
        } else {
            tx.query_row(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM segments WHERE camera_id=?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sql)?
        };
        let oldest: Option<i64> = tx
            .query_row(
                "SELECT MIN(start_unix_ms) FROM segments WHERE camera_id=?1",
                [id],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let newest: Option<i64> = tx
            .query_row(
                "SELECT MAX(end_unix_ms) FROM segments WHERE camera_id=?1",
                [id],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let mut gaps = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT rowid, camera_id, from_unix_ms, to_unix_ms, reason FROM gaps
                      WHERE camera_id=?1 AND from_unix_ms < ?3
                        AND (to_unix_ms IS NULL OR to_unix_ms > ?2)
                      ORDER BY from_unix_ms, rowid",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map(rusqlite::params![id, gaps_from_unix_ms, now_unix_ms], |r| {
                    Ok(GapRow {
                        rowid: r.get(0)?,
                        camera: r.get(1)?,
                        from_unix_ms: r.get(2)?,
                        to_unix_ms: r.get(3)?,
                        reason: r.get(4)?,
                    })
                })
                .map_err(sql)?;
            for g in rows {
                gaps.push(g.map_err(sql)?);
            }
        }
        cameras.push(CameraHealth {
            camera,
            segments: segments.max(0) as u64,
            bytes: bytes.max(0) as u64,
            oldest_unix_ms: oldest,
            newest_unix_ms: newest,
            gaps,
        });
    }
    let total: i64 = if have_usage {
        tx.query_row(
            "SELECT COALESCE(SUM(bytes), 0) FROM segment_usage",
            [],
            |r| r.get(0),
        )
    } else {
        tx.query_row("SELECT COALESCE(SUM(bytes), 0) FROM segments", [], |r| {
            r.get(0)
        })
    }
    .map_err(sql)?;
    let holds_active = crate::holds::active_on(&tx, now_unix_ms)
        .map_err(|e| CatalogError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?
        .len() as u64;
    let retention = crate::retention::stored_state(&cat);
    drop(tx);
    Ok(StoreHealth {
        cameras,
        bytes: total.max(0) as u64,
        holds_active,
        retention,
        storage: None,
        tamper: None,
    })
}

/// A camera's row: `id, name, state, state_reason, state_since_unix_ms`.
fn camera_status(r: &rusqlite::Row<'_>) -> rusqlite::Result<CameraStatus> {
    Ok(CameraStatus {
        id: r.get(0)?,
        name: r.get(1)?,
        state: r.get(2)?,
        state_reason: r.get(3)?,
        state_since_unix_ms: r.get(4)?,
    })
}

/// Size and free space of a file system (statvfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FsSpace {
    pub size_bytes: u64,
    /// Free for an unprivileged user (what `min_free_bytes` is weighed against).
    pub free_bytes: u64,
}

/// Size and free space of the file system holding `path`.
pub fn file_system_space(path: &Path) -> std::io::Result<FsSpace> {
    let st = rustix::fs::statvfs(path)?;
    Ok(FsSpace {
        size_bytes: st.f_blocks.saturating_mul(st.f_frsize),
        free_bytes: st.f_bavail.saturating_mul(st.f_frsize),
    })
}

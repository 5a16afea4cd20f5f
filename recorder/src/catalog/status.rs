//! The catalog read for the store's health and the cameras' states: what the
//! viewer-api's health page, the camera list and `recorder check` show.

use std::path::Path;

use rusqlite::OptionalExtension;

use super::{Catalog, CatalogError};
use crate::footage::{CameraHealth, CameraStatus, FootageError, StoreHealth};

impl Catalog {
    /// Every camera with a row, by id.
    pub fn camera_statuses(&self) -> Result<Vec<CameraStatus>, CatalogError> {
        let sql = |source| CatalogError::Sql {
            path: self.path().to_path_buf(),
            source,
        };
        let mut stmt = self
            .connection()
            .prepare(
                "SELECT id, name, state, state_reason, state_since_unix_ms FROM cameras ORDER BY id",
            )
            .map_err(sql)?;
        let rows = stmt.query_map([], camera_status).map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)
    }
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
                .query_map(
                    rusqlite::params![id, gaps_from_unix_ms, now_unix_ms],
                    super::gap_row,
                )
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

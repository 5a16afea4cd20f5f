//! The catalog's side of retention: the usage totals, the segments a pass may delete
//! (oldest first, a page at a time), and the deletion itself with its journal entry in
//! one transaction. The order around it (commit, unlink, sync the directory) and the
//! policy are `crate::retention`'s; the SQL is here.

use rusqlite::{Transaction, TransactionBehavior, params};

use super::Catalog;
use super::holds::{self, ActiveHolds};
use super::journal::{self, Reason};
use crate::segment::SegmentId;

/// A closed segment retention may delete.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub rowid: i64,
    pub id: SegmentId,
    pub camera: String,
    pub start_unix_ms: i64,
    pub end_unix_ms: i64,
    pub bytes: u64,
    pub sha256: Option<String>,
}

/// Where a paged scan of candidates stands: the sort key and rowid of the last one.
pub(crate) type Cursor = (i64, i64);

/// Which candidates a page holds.
pub(crate) enum Scan<'a> {
    /// Ended at or before `cutoff`: of `camera` (by start time), or of every camera but
    /// `except` (by end time).
    Expired {
        camera: Option<&'a str>,
        except: &'a [String],
        cutoff_unix_ms: i64,
    },
    /// Every closed segment of `camera` (by start time), or of the store (by end time).
    Oldest { camera: Option<&'a str> },
}

fn candidate_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Candidate>> {
    let uuid: String = r.get(1)?;
    let Ok(id) = uuid.parse::<SegmentId>() else {
        return Ok(None);
    };
    Ok(Some(Candidate {
        rowid: r.get(0)?,
        id,
        camera: r.get(2)?,
        start_unix_ms: r.get(3)?,
        end_unix_ms: r.get(4)?,
        bytes: r.get::<_, i64>(5)? as u64,
        sha256: r.get(6)?,
    }))
}

impl Catalog {
    /// Bytes of closed segments, of one camera or all, from the usage totals.
    pub(crate) fn usage_bytes(&self, camera: Option<&str>) -> rusqlite::Result<u64> {
        let b: i64 = self.connection().query_row(
            "SELECT COALESCE(SUM(bytes), 0) FROM segment_usage WHERE (?1 IS NULL OR camera_id = ?1)",
            [camera],
            |r| r.get(0),
        )?;
        Ok(b as u64)
    }

    /// Cameras with segments (configured or not).
    pub(crate) fn cameras_with_segments(&self) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self.connection().prepare_cached(
            "SELECT camera_id FROM segment_usage WHERE segments > 0 ORDER BY camera_id",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    /// Segments and bytes protected by `active` holds, of one camera or all.
    pub(crate) fn held_usage(
        &self,
        camera: Option<&str>,
        active: &ActiveHolds,
    ) -> rusqlite::Result<(u64, u64)> {
        let mut seen = std::collections::BTreeSet::new();
        let mut bytes = 0u64;
        let mut stmt = self.connection().prepare_cached(
            "SELECT rowid, camera_id, bytes FROM segments
             WHERE (?1 IS NULL OR camera_id = ?1) AND start_unix_ms < ?2 AND end_unix_ms >= ?3",
        )?;
        for h in &active.0 {
            let rows = stmt.query_map(params![camera, h.to_unix_ms, h.from_unix_ms], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (rowid, cam, b) = row?;
                if h.cameras.covers(&cam) && seen.insert(rowid) {
                    bytes += b as u64;
                }
            }
        }
        Ok((seen.len() as u64, bytes))
    }

    /// The next page of at most `limit` candidates after `cursor` (the sort key and
    /// rowid of the last candidate of the page before: start time for one camera, end
    /// time for the store).
    pub(crate) fn candidates(
        &self,
        scan: &Scan<'_>,
        cursor: Cursor,
        limit: usize,
    ) -> rusqlite::Result<Vec<Candidate>> {
        let limit = limit as i64;
        let rows = match scan {
            Scan::Expired {
                camera,
                except,
                cutoff_unix_ms,
            } => {
                let except = serde_json::to_string(except).expect("serialisable");
                let sql = if camera.is_some() {
                    "SELECT rowid, uuid, camera_id, start_unix_ms, end_unix_ms, bytes, sha256
                     FROM segments
                     WHERE camera_id = ?1 AND ?6 IS NOT NULL AND start_unix_ms <= ?2
                       AND end_unix_ms <= ?2 AND state = 'closed'
                       AND (start_unix_ms, rowid) > (?3, ?4)
                     ORDER BY start_unix_ms, rowid LIMIT ?5"
                } else {
                    "SELECT rowid, uuid, camera_id, start_unix_ms, end_unix_ms, bytes, sha256
                     FROM segments
                     WHERE ?1 IS NULL AND end_unix_ms <= ?2 AND state = 'closed'
                       AND (end_unix_ms, rowid) > (?3, ?4)
                       AND camera_id NOT IN (SELECT value FROM json_each(?6))
                     ORDER BY end_unix_ms, rowid LIMIT ?5"
                };
                let mut stmt = self.connection().prepare_cached(sql)?;
                stmt.query_map(
                    params![camera, cutoff_unix_ms, cursor.0, cursor.1, limit, except],
                    candidate_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?
            }
            Scan::Oldest { camera } => {
                // Store-wide: oldest by end time (indexed); one camera: by start time.
                let sql = if camera.is_some() {
                    "SELECT rowid, uuid, camera_id, start_unix_ms, end_unix_ms, bytes, sha256
                     FROM segments WHERE camera_id = ?1 AND state = 'closed'
                       AND (start_unix_ms, rowid) > (?2, ?3)
                     ORDER BY start_unix_ms, rowid LIMIT ?4"
                } else {
                    "SELECT rowid, uuid, camera_id, start_unix_ms, end_unix_ms, bytes, sha256
                     FROM segments WHERE ?1 IS NULL AND state = 'closed'
                       AND (end_unix_ms, rowid) > (?2, ?3)
                     ORDER BY end_unix_ms, rowid LIMIT ?4"
                };
                let mut stmt = self.connection().prepare_cached(sql)?;
                stmt.query_map(
                    params![camera, cursor.0, cursor.1, limit],
                    candidate_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?
            }
        };
        Ok(rows.into_iter().flatten().collect())
    }

    /// Deletes the rows of `batch` not held at `holds_at` (holds re-read inside the
    /// write transaction, so a hold committed before it is honoured), each with its
    /// journal entry, in one transaction; returns the indexes deleted. With `abort`,
    /// stops before the commit (a crash injected by the tests).
    pub(crate) fn delete_unheld(
        &self,
        batch: &[Candidate],
        holds_at: i64,
        reason: Reason,
        now_unix_ms: i64,
        abort: bool,
    ) -> Result<Vec<usize>, DeleteError> {
        let tx = Transaction::new_unchecked(self.connection(), TransactionBehavior::Immediate)?;
        let active = holds::active_on(&tx, holds_at)?;
        let mut deleted = Vec::with_capacity(batch.len());
        {
            let mut del = tx.prepare_cached(
                "DELETE FROM segments WHERE rowid = ?1 AND uuid = ?2 AND state = 'closed'",
            )?;
            for (i, c) in batch.iter().enumerate() {
                if active.protects(&c.camera, c.start_unix_ms, c.end_unix_ms) {
                    continue;
                }
                if del.execute(params![c.rowid, c.id.to_string()])? != 1 {
                    continue; // gone already (another deleter)
                }
                journal::append(
                    &tx,
                    &journal::Entry {
                        segment: c.id.to_string(),
                        camera: c.camera.clone(),
                        from_unix_ms: c.start_unix_ms,
                        to_unix_ms: c.end_unix_ms,
                        bytes: c.bytes,
                        sha256: c.sha256.clone(),
                        deleted_unix_ms: now_unix_ms,
                        reason: reason.as_str().to_string(),
                    },
                )?;
                deleted.push(i);
            }
        }
        if abort {
            return Err(DeleteError::Aborted);
        }
        tx.commit()?;
        Ok(deleted)
    }

    /// The end of the newest closed footage (the clock guard's floor).
    pub(crate) fn newest_closed_end_unix_ms(&self) -> rusqlite::Result<Option<i64>> {
        self.connection().query_row(
            "SELECT MAX(end_unix_ms) FROM segments WHERE state='closed'",
            [],
            |r| r.get(0),
        )
    }

    /// Moves the WAL into the database and truncates it: frees the disk a full store
    /// needs for its next commit.
    pub(crate) fn truncate_wal(&self) -> rusqlite::Result<()> {
        self.connection()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
    }
}

/// Why [`Catalog::delete_unheld`] deleted nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeleteError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Holds(#[from] holds::HoldError),
    #[error("aborted before the commit")]
    Aborted,
}

//! The deletion journal: one entry per deleted segment (id, camera, media range as wall
//! time, bytes, SHA-256, when, why), written in the same catalog transaction that
//! deletes the segment's row and wrapped key. It holds no images; it is what proves,
//! later, that footage was deleted and when. Entries are kept one year.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::clock::rfc3339;

/// How long journal entries are kept.
pub const JOURNAL_KEEP_MS: i64 = 365 * 24 * 3600 * 1000;

/// Why a segment was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Older than its camera's retention.
    Age,
    /// The store, a camera or the file system was over its capacity.
    Capacity,
    /// A write failed with ENOSPC: emergency deletion.
    DiskFull,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Age => "age",
            Reason::Capacity => "capacity",
            Reason::DiskFull => "disk-full",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A journal entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub segment: String,
    pub camera: String,
    pub from_unix_ms: i64,
    pub to_unix_ms: i64,
    pub bytes: u64,
    pub sha256: Option<String>,
    pub deleted_unix_ms: i64,
    pub reason: String,
}

/// A journal entry as `recorder journal --json` prints it (the contract).
#[derive(Debug, Clone, Serialize)]
pub struct EntryJson {
    pub segment: String,
    pub camera: String,
    pub from: String,
    pub to: String,
    pub bytes: u64,
    pub sha256: Option<String>,
    pub deleted_at: String,
    pub reason: String,
}

impl Entry {
    pub fn to_json(&self) -> EntryJson {
        EntryJson {
            segment: self.segment.clone(),
            camera: self.camera.clone(),
            from: rfc3339(self.from_unix_ms),
            to: rfc3339(self.to_unix_ms),
            bytes: self.bytes,
            sha256: self.sha256.clone(),
            deleted_at: rfc3339(self.deleted_unix_ms),
            reason: self.reason.clone(),
        }
    }
}

/// Appends an entry; call inside the transaction that deletes the segment's row.
pub(crate) fn append(conn: &rusqlite::Connection, e: &Entry) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO deletion_journal(segment, camera_id, from_unix_ms, to_unix_ms, bytes,
                                      sha256, deleted_unix_ms, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        e.segment,
        e.camera,
        e.from_unix_ms,
        e.to_unix_ms,
        e.bytes as i64,
        e.sha256,
        e.deleted_unix_ms,
        e.reason
    ])?;
    Ok(())
}

/// Entries, oldest deletion first, optionally for one camera and/or since a time.
pub fn entries(
    cat: &Catalog,
    camera: Option<&str>,
    since_unix_ms: Option<i64>,
) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = cat.connection().prepare(
        "SELECT segment, camera_id, from_unix_ms, to_unix_ms, bytes, sha256, deleted_unix_ms,
                reason
         FROM deletion_journal
         WHERE (?1 IS NULL OR camera_id = ?1) AND (?2 IS NULL OR deleted_unix_ms >= ?2)
         ORDER BY deleted_unix_ms, rowid",
    )?;
    let rows = stmt.query_map(params![camera, since_unix_ms], |r| entry_from(r, 0))?;
    rows.collect()
}

/// An entry from a row's columns `segment, camera_id, from_unix_ms, to_unix_ms, bytes,
/// sha256, deleted_unix_ms, reason`, starting at column `first`.
fn entry_from(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Entry> {
    Ok(Entry {
        segment: r.get(first)?,
        camera: r.get(first + 1)?,
        from_unix_ms: r.get(first + 2)?,
        to_unix_ms: r.get(first + 3)?,
        bytes: r.get::<_, i64>(first + 4)? as u64,
        sha256: r.get(first + 5)?,
        deleted_unix_ms: r.get(first + 6)?,
        reason: r.get(first + 7)?,
    })
}

/// Removes entries older than a year before `now`; returns how many.
pub fn prune(conn: &rusqlite::Connection, now_unix_ms: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM deletion_journal WHERE deleted_unix_ms < ?1",
        [now_unix_ms.saturating_sub(JOURNAL_KEEP_MS)],
    )
}

/// One page of the journal, newest entry first: at most `limit` entries, optionally of
/// one camera, deleted at or after `since`, and written before the entry `before` (a
/// `seq` from an earlier page). Entries come with their `seq`, which orders the journal
/// as it was written (deletion times of one pass are equal, and may step back with the
/// clock). Reads only the page, never the year.
pub fn page(
    cat: &Catalog,
    camera: Option<&str>,
    since_unix_ms: Option<i64>,
    before_seq: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<(i64, Entry)>> {
    let mut stmt = cat.connection().prepare(
        "SELECT rowid, segment, camera_id, from_unix_ms, to_unix_ms, bytes, sha256,
                deleted_unix_ms, reason
         FROM deletion_journal
         WHERE (?1 IS NULL OR camera_id = ?1) AND (?2 IS NULL OR deleted_unix_ms >= ?2)
           AND (?3 IS NULL OR rowid < ?3)
           AND (?2 IS NULL OR rowid >= (SELECT MIN(rowid) FROM deletion_journal
                                         WHERE deleted_unix_ms >= ?2))
         ORDER BY rowid DESC LIMIT ?4",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![camera, since_unix_ms, before_seq, limit], |r| {
        Ok((r.get::<_, i64>(0)?, entry_from(r, 1)?))
    })?;
    rows.collect()
}

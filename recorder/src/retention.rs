//! The ring buffer: deletes segments past their camera's retention (age), the oldest
//! unheld segments of a scope over its capacity (store `max_bytes`, a camera's
//! `max_bytes`, the file system's `min_free_bytes`), and, when a write hits ENOSPC,
//! the oldest unheld segment at once (disk-full). Held segments are never deleted.
//!
//! One deletion, in an order that survives a crash at any point:
//! 1. one catalog transaction: delete the row (its wrapped key is overwritten, the
//!    catalog runs with `secure_delete`) and append the journal entry; commit;
//! 2. unlink the file;
//! 3. fsync its directory.
//!
//! A crash before 1 commits changes nothing; after it, the file has no row and start-up
//! recovery removes it as an orphan, and the journal already says it was deleted (the
//! footage is erased from the moment the key is gone). Rows are deleted in batches of a
//! few thousand per transaction so a writer's insert never waits long.
//!
//! Clock safety: age retention compares the segments' recorded wall times with the
//! wall clock, so a clock stepped to 1970 or a year ahead could erase everything. Each
//! pass first checks the clock (see [`Retention::clock_check`]) and refuses to act on
//! age, saying so in the log, when it is not sane. Capacity rules do not depend on the
//! clock and keep running, so the disk never fills; while the clock is not trusted,
//! every unreleased hold counts as in force (expiries are not believed either).

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::catalog::{self, Catalog, CatalogError};
use crate::clock::{Clock, rfc3339};
use crate::config::Config;
use crate::holds::{self, ActiveHolds};
use crate::journal::{self, Reason};
use crate::metrics::{DeletionLabel, Metrics};
use crate::segment::SegmentId;

/// Retention passes run at least this often (and whenever a segment closes).
pub const PASS_INTERVAL: Duration = Duration::from_secs(10);
/// Rows deleted per catalog transaction.
pub const DEFAULT_BATCH_ROWS: usize = 500;
/// No wall clock earlier than this (2025-01-01T00:00:00Z) is believed: an RTC reset.
pub const CLOCK_FLOOR_UNIX_MS: i64 = 1_735_689_600_000;
/// A wall clock that ran ahead of the monotonic clock by more than this since the
/// last trusted pass has jumped (NTP step, bad RTC); age retention waits.
pub const MAX_FORWARD_JUMP_MS: i64 = 24 * 3600 * 1000;
/// Slack for footage stamped slightly ahead of the pass (the last frame's duration,
/// small NTP slews).
pub const FOOTAGE_AHEAD_TOLERANCE_MS: i64 = 60_000;
/// A file of this size is kept allocated in the store and given up when the disk is
/// full, so that the catalog (on the same file system) can commit the emergency
/// deletion: SQLite needs a few free pages to delete a row.
pub const DEFAULT_RESERVE_BYTES: u64 = 1 << 20;
pub const RESERVE_FILE: &str = "retention.reserve";
/// The catalog `meta` key holding the latest [`RetentionState`] (read by `check`).
pub const STATE_META_KEY: &str = "retention_state";

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("catalog: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    Holds(#[from] holds::HoldError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A test fault point stopped a deletion after the given step.
    #[error("injected crash after {0:?}")]
    InjectedCrash(DeleteStep),
}

pub type Result<T> = std::result::Result<T, RetentionError>;

/// The steps of a deletion, for crash tests (`Retention::crash_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteStep {
    /// Rows deleted and journal appended, transaction not committed.
    RowsAndJournal,
    /// Transaction committed (keys erased), files still there.
    Commit,
    /// Files unlinked, directories not synced.
    Unlink,
    /// Directories synced: the deletion is complete.
    SyncDir,
}

/// What the configuration asks of retention.
#[derive(Debug, Clone)]
pub struct Policy {
    pub retention_ms: i64,
    pub camera_retention_ms: HashMap<String, i64>,
    pub max_bytes: u64,
    pub camera_max_bytes: HashMap<String, u64>,
    pub min_free_bytes: u64,
}

impl Policy {
    pub fn from_config(config: &Config) -> Policy {
        let s = &config.storage;
        Policy {
            retention_ms: s.retention.as_millis() as i64,
            camera_retention_ms: config
                .cameras
                .iter()
                .filter_map(|c| c.retention.map(|r| (c.id.clone(), r.as_millis() as i64)))
                .collect(),
            max_bytes: s.max_bytes,
            camera_max_bytes: config
                .cameras
                .iter()
                .filter_map(|c| c.max_bytes.map(|m| (c.id.clone(), m)))
                .collect(),
            min_free_bytes: s.min_free_bytes,
        }
    }

    /// Cameras no longer configured keep the store's retention.
    pub fn retention_ms(&self, camera: &str) -> i64 {
        self.camera_retention_ms
            .get(camera)
            .copied()
            .unwrap_or(self.retention_ms)
            .min(crate::config::MAX_RETENTION.as_millis() as i64)
    }
}

/// Where retention stands; stored in the catalog for `recorder check`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionState {
    /// When the last pass ran (wall clock, RFC 3339).
    pub updated: String,
    /// Held footage alone exceeds a capacity (nothing held is deleted), or a full disk
    /// could not be relieved: one message per scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
    /// Why age retention refused to act, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_refused: Option<String>,
    pub holds_active: u64,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub deleted_age: u64,
    pub deleted_capacity: u64,
    pub bytes_deleted: u64,
    pub journal_pruned: u64,
    pub clock_refused: Option<String>,
    pub alarms: Vec<String>,
}

impl PassReport {
    pub fn deleted(&self) -> u64 {
        self.deleted_age + self.deleted_capacity
    }
}

/// A segment that may be deleted.
#[derive(Debug, Clone)]
struct Candidate {
    rowid: i64,
    id: SegmentId,
    camera: String,
    start_unix_ms: i64,
    end_unix_ms: i64,
    bytes: u64,
    sha256: Option<String>,
}

/// Free bytes for an unprivileged user on the file system holding `path` (statvfs).
pub fn statvfs_free_bytes(path: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// A monotonic clock in milliseconds (since an arbitrary origin), for the jump check.
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now_unix_ms(&self) -> i64 {
        self.0.elapsed().as_millis() as i64
    }
}

type FreeSpaceFn = Box<dyn Fn(&Path) -> io::Result<u64> + Send>;

/// The retention engine. Owns its own catalog connection (WAL: beside the writers').
pub struct Retention {
    store: PathBuf,
    cat: Catalog,
    policy: Policy,
    clock: Arc<dyn Clock>,
    mono: Arc<dyn Clock>,
    metrics: Option<Arc<Metrics>>,
    free_space: FreeSpaceFn,
    /// (wall, monotonic) at the last pass whose clock was trusted.
    last_trusted: Option<(i64, i64)>,
    /// The instant holds are evaluated at in the current pass (`i64::MIN` when the
    /// clock is not trusted: no expiry is believed).
    holds_at: i64,
    last_state: Option<RetentionState>,
    /// Disk-full alarm raised by [`free_for_disk_full`](Self::free_for_disk_full).
    disk_full_alarm: Option<String>,
    reserve_bytes: u64,
    /// Rows per deletion transaction.
    pub batch_rows: usize,
    /// Test fault point: stop every deletion after this step, as a crash would.
    #[doc(hidden)]
    pub crash_after: Option<DeleteStep>,
}

impl Retention {
    /// `clock`: wall clock; `mono`: a monotonic clock in ms (any origin), both
    /// injectable so tests run simulated days.
    pub fn new(
        store: &Path,
        policy: Policy,
        clock: Arc<dyn Clock>,
        mono: Arc<dyn Clock>,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Retention> {
        // (the usage totals it reads are part of the catalog's schema, version 2)
        let cat = Catalog::open(store)?;
        let r = Retention {
            store: store.to_path_buf(),
            cat,
            policy,
            clock,
            mono,
            metrics,
            free_space: Box::new(statvfs_free_bytes),
            last_trusted: None,
            holds_at: i64::MIN,
            last_state: None,
            disk_full_alarm: None,
            reserve_bytes: DEFAULT_RESERVE_BYTES,
            batch_rows: DEFAULT_BATCH_ROWS,
            crash_after: None,
        };
        r.ensure_reserve();
        Ok(r)
    }

    /// Size of the space reserve (0: none). Created at the next pass.
    pub fn set_reserve_bytes(&mut self, bytes: u64) {
        self.reserve_bytes = bytes;
        if bytes == 0 {
            let _ = std::fs::remove_file(self.store.join(RESERVE_FILE));
        }
    }

    /// Creates the reserve file when it is missing (best effort).
    fn ensure_reserve(&self) {
        if self.reserve_bytes == 0 {
            return;
        }
        let path = self.store.join(RESERVE_FILE);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == self.reserve_bytes) {
            return;
        }
        let r = (|| -> io::Result<()> {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            // Allocated, not just sized: the blocks must really be there for the
            // catalog on a full disk.
            rustix::fs::fallocate(
                &f,
                rustix::fs::FallocateFlags::empty(),
                0,
                self.reserve_bytes,
            )?;
            f.sync_all()
        })();
        if let Err(e) = r {
            let _ = std::fs::remove_file(&path);
            warn!(file = %path.display(), error = %e, "cannot allocate the space reserve");
        }
    }

    /// Gives the reserve up; true when there was one.
    fn release_reserve(&self) -> bool {
        std::fs::remove_file(self.store.join(RESERVE_FILE)).is_ok()
    }

    /// Replaces statvfs (tests).
    pub fn set_free_space_fn(&mut self, f: impl Fn(&Path) -> io::Result<u64> + Send + 'static) {
        self.free_space = Box::new(f);
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn catalog(&self) -> &Catalog {
        &self.cat
    }

    /// Whether the wall clock may be used to judge age. `Err` says why not.
    ///
    /// Refuses when now is before [`CLOCK_FLOOR_UNIX_MS`], when now is earlier than the
    /// newest recorded footage, or when the wall clock ran ahead of the monotonic clock
    /// by more than [`MAX_FORWARD_JUMP_MS`] since the last trusted pass. A jump forward
    /// keeps age retention stopped until the clock comes back or the recorder is
    /// restarted (the operator's confirmation that the new time is right).
    pub fn clock_check(&mut self) -> std::result::Result<(), String> {
        let now = self.clock.now_unix_ms();
        let mono = self.mono.now_unix_ms();
        if now < CLOCK_FLOOR_UNIX_MS {
            return Err(format!(
                "wall clock reads {}, earlier than this build ({}): the clock was reset",
                rfc3339(now),
                rfc3339(CLOCK_FLOOR_UNIX_MS)
            ));
        }
        let newest: Option<i64> = self
            .cat
            .connection()
            .query_row(
                "SELECT MAX(end_unix_ms) FROM segments WHERE state='closed'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| format!("cannot read the newest footage: {e}"))?;
        if let Some(newest) = newest
            && newest > now + FOOTAGE_AHEAD_TOLERANCE_MS
        {
            return Err(format!(
                "wall clock reads {}, earlier than the newest recorded footage ({}): the clock went back",
                rfc3339(now),
                rfc3339(newest)
            ));
        }
        if let Some((wall, m)) = self.last_trusted {
            let ahead = (now - wall) - (mono - m);
            if ahead > MAX_FORWARD_JUMP_MS {
                return Err(format!(
                    "wall clock jumped forward by {} (reads {}, expected about {}); \
                     age retention waits until the clock is corrected or the recorder is restarted",
                    humantime::format_duration(Duration::from_millis(ahead as u64)),
                    rfc3339(now),
                    rfc3339(wall + (mono - m))
                ));
            }
        }
        self.last_trusted = Some((now, mono));
        Ok(())
    }

    /// One retention pass: age (when the clock is sane), then capacity, then the
    /// journal's one-year pruning. Reads holds from the catalog each time.
    pub fn pass(&mut self) -> Result<PassReport> {
        let mut report = PassReport::default();
        let now = self.clock.now_unix_ms();
        let clock = self.clock_check();
        if let Err(why) = &clock {
            warn!(reason = %why, "retention: refusing to delete by age");
            report.clock_refused = Some(why.clone());
        }
        self.holds_at = if clock.is_ok() { now } else { i64::MIN };
        let active = holds::active_on(self.cat.connection(), self.holds_at)?;

        if clock.is_ok() {
            // Cameras with their own retention one by one; all the others in one scan
            // in time order (rows of one period are stored together: fewer pages).
            let own: Vec<String> = self
                .camera_ids()?
                .into_iter()
                .filter(|c| self.policy.retention_ms(c) != self.policy.retention_ms)
                .collect();
            for camera in &own {
                let cutoff = now.saturating_sub(self.policy.retention_ms(camera));
                let (n, b) = self.expire(Some(camera), &[], cutoff, &active)?;
                report.deleted_age += n;
                report.bytes_deleted += b;
            }
            let cutoff = now.saturating_sub(self.policy.retention_ms);
            let (n, b) = self.expire(None, &own, cutoff, &active)?;
            report.deleted_age += n;
            report.bytes_deleted += b;
            report.journal_pruned = journal::prune(self.cat.connection(), now)? as u64;
        }

        // Capacity: each camera's own limit, then the store's, then the file system's.
        let mut cams: Vec<(String, u64)> = self
            .policy
            .camera_max_bytes
            .iter()
            .map(|(c, m)| (c.clone(), *m))
            .collect();
        cams.sort();
        for (camera, max) in cams {
            let used = self.used_bytes(Some(&camera))?;
            if used > max {
                let (n, b, blocked) =
                    self.shrink(Some(&camera), used - max, Reason::Capacity, &active)?;
                report.deleted_capacity += n;
                report.bytes_deleted += b;
                if blocked {
                    report.alarms.push(self.held_alarm(
                        &format!("camera {camera}"),
                        Some(&camera),
                        &format!("max_bytes {max}"),
                        &active,
                    )?);
                }
            }
        }
        let used = self.used_bytes(None)?;
        if used > self.policy.max_bytes {
            let (n, b, blocked) = self.shrink(
                None,
                used - self.policy.max_bytes,
                Reason::Capacity,
                &active,
            )?;
            report.deleted_capacity += n;
            report.bytes_deleted += b;
            if blocked {
                report.alarms.push(self.held_alarm(
                    "store",
                    None,
                    &format!("max_bytes {}", self.policy.max_bytes),
                    &active,
                )?);
            }
        }
        if self.policy.min_free_bytes > 0 {
            let free = (self.free_space)(&self.store).map_err(|source| RetentionError::Io {
                path: self.store.clone(),
                source,
            })?;
            if free < self.policy.min_free_bytes {
                let (n, b, blocked) = self.shrink(
                    None,
                    self.policy.min_free_bytes - free,
                    Reason::Capacity,
                    &active,
                )?;
                report.deleted_capacity += n;
                report.bytes_deleted += b;
                if blocked {
                    report.alarms.push(self.held_alarm(
                        "file system",
                        None,
                        &format!(
                            "min_free_bytes {} (free: {free})",
                            self.policy.min_free_bytes
                        ),
                        &active,
                    )?);
                }
            }
        }
        if let Some(a) = &self.disk_full_alarm {
            // Cleared once a pass finds the store within its limits again.
            if report.alarms.is_empty() && report.deleted() == 0 && !self.store_over_limits()? {
                self.disk_full_alarm = None;
            } else {
                report.alarms.push(a.clone());
            }
        }
        for a in &report.alarms {
            error!(alarm = %a, "retention alarm: held footage is not deleted; recording goes on in the space left");
        }
        if report.deleted() > 0 {
            info!(
                age = report.deleted_age,
                capacity = report.deleted_capacity,
                bytes = report.bytes_deleted,
                "retention deleted segments"
            );
        }
        self.publish(&report, active.len() as u64)?;
        self.ensure_reserve();
        Ok(report)
    }

    fn store_over_limits(&self) -> Result<bool> {
        Ok(self.used_bytes(None)? > self.policy.max_bytes)
    }

    fn publish(&mut self, report: &PassReport, holds_active: u64) -> Result<()> {
        if let Some(m) = &self.metrics {
            m.retention_alarm.set(i64::from(!report.alarms.is_empty()));
            m.retention_clock_refused
                .set(i64::from(report.clock_refused.is_some()));
            m.holds_active.set(holds_active as i64);
        }
        let state = RetentionState {
            updated: String::new(),
            alarms: report.alarms.clone(),
            clock_refused: report.clock_refused.clone(),
            holds_active,
        };
        if self.last_state.as_ref() != Some(&state) {
            let stored = RetentionState {
                updated: rfc3339(self.clock.now_unix_ms()),
                ..state.clone()
            };
            let json = serde_json::to_string(&stored).expect("serialisable");
            self.cat.set_meta(STATE_META_KEY, &json)?;
            self.last_state = Some(state);
        }
        Ok(())
    }

    fn used_bytes(&self, camera: Option<&str>) -> Result<u64> {
        let b: i64 = self.cat.connection().query_row(
            "SELECT COALESCE(SUM(bytes), 0) FROM segment_usage WHERE (?1 IS NULL OR camera_id = ?1)",
            [camera],
            |r| r.get(0),
        )?;
        Ok(b as u64)
    }

    /// Cameras with segments (configured or not).
    fn camera_ids(&self) -> Result<Vec<String>> {
        let mut stmt = self.cat.connection().prepare_cached(
            "SELECT camera_id FROM segment_usage WHERE segments > 0 ORDER BY camera_id",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn held_alarm(
        &self,
        scope: &str,
        camera: Option<&str>,
        limit: &str,
        active: &ActiveHolds,
    ) -> Result<String> {
        let (n, bytes) = self.held_usage(camera, active)?;
        Ok(format!(
            "{scope}: held footage ({n} segments, {bytes} bytes, {} holds in force) keeps it over {limit}; nothing held is deleted",
            active.len()
        ))
    }

    /// Segments and bytes protected by holds in a scope.
    fn held_usage(&self, camera: Option<&str>, active: &ActiveHolds) -> Result<(u64, u64)> {
        let mut seen = BTreeSet::new();
        let mut bytes = 0u64;
        let conn = self.cat.connection();
        let mut stmt = conn.prepare_cached(
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

    /// Deletes closed, unheld segments that ended at or before `cutoff`: of one camera,
    /// or (`camera` None) of every camera not in `except`.
    fn expire(
        &mut self,
        camera: Option<&str>,
        except: &[String],
        cutoff: i64,
        active: &ActiveHolds,
    ) -> Result<(u64, u64)> {
        let mut cursor = (i64::MIN, i64::MIN);
        let (mut n, mut bytes) = (0, 0);
        let except = serde_json::to_string(except).expect("serialisable");
        loop {
            let batch: Vec<Candidate> = {
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
                let mut stmt = self.cat.connection().prepare_cached(sql)?;
                let rows = stmt.query_map(
                    params![
                        camera,
                        cutoff,
                        cursor.0,
                        cursor.1,
                        self.batch_rows as i64,
                        except
                    ],
                    candidate_from_row,
                )?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
                    .into_iter()
                    .flatten()
                    .collect()
            };
            let Some(last) = batch.last() else { break };
            cursor = if camera.is_some() {
                (last.start_unix_ms, last.rowid)
            } else {
                (last.end_unix_ms, last.rowid)
            };
            let unheld: Vec<Candidate> = batch
                .into_iter()
                .filter(|c| !active.protects(&c.camera, c.start_unix_ms, c.end_unix_ms))
                .collect();
            let (dn, db) = self.delete_batch(&unheld, Reason::Age)?;
            n += dn;
            bytes += db;
        }
        Ok((n, bytes))
    }

    /// Deletes the oldest unheld closed segments of a scope (one camera, or the whole
    /// store) until at least `excess` bytes are gone. Returns (segments, bytes,
    /// blocked): blocked when everything left in the scope is held (or open).
    fn shrink(
        &mut self,
        camera: Option<&str>,
        excess: u64,
        reason: Reason,
        active: &ActiveHolds,
    ) -> Result<(u64, u64, bool)> {
        let (mut n, mut freed) = (0u64, 0u64);
        let mut cursor = (i64::MIN, i64::MIN);
        // Store-wide: oldest by end time (indexed); one camera: by start time (indexed).
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
        while freed < excess {
            let page: Vec<Candidate> = {
                let mut stmt = self.cat.connection().prepare_cached(sql)?;
                let rows = stmt.query_map(
                    params![camera, cursor.0, cursor.1, self.batch_rows as i64],
                    candidate_from_row,
                )?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
                    .into_iter()
                    .flatten()
                    .collect()
            };
            let Some(last) = page.last() else {
                return Ok((n, freed, true));
            };
            cursor = if camera.is_some() {
                (last.start_unix_ms, last.rowid)
            } else {
                (last.end_unix_ms, last.rowid)
            };
            let mut take = Vec::new();
            let mut want = freed;
            for c in page {
                if want >= excess {
                    break;
                }
                if active.protects(&c.camera, c.start_unix_ms, c.end_unix_ms) {
                    continue;
                }
                want += c.bytes;
                take.push(c);
            }
            let (dn, db) = self.delete_batch(&take, reason)?;
            n += dn;
            freed += db;
        }
        Ok((n, freed, false))
    }

    /// Emergency deletion for a write that failed with ENOSPC: deletes the oldest
    /// unheld segments of the store (at least one) until `needed_bytes` are freed.
    /// Returns the bytes freed; 0 (and an alarm) when nothing could be deleted.
    pub fn free_for_disk_full(&mut self, camera: &str, needed_bytes: u64) -> u64 {
        // Free the reserve's worth too: the catalog and the segment being finished need
        // room right after this.
        let target = needed_bytes.max(1) + 2 * self.reserve_bytes;
        let attempt = |this: &mut Self| -> Result<(u64, u64, bool)> {
            let sane = this.clock_check().is_ok();
            this.holds_at = if sane {
                this.clock.now_unix_ms()
            } else {
                i64::MIN
            };
            let active = holds::active_on(this.cat.connection(), this.holds_at)?;
            this.shrink(None, target, Reason::DiskFull, &active)
        };
        let mut r = attempt(self);
        if matches!(r, Err(RetentionError::Sql(_) | RetentionError::Catalog(_)))
            && self.release_reserve()
        {
            // The catalog could not commit on the full disk: give it the reserve.
            warn!(
                camera,
                "disk full: catalog needs room; releasing the space reserve"
            );
            r = attempt(self);
        }
        if matches!(r, Err(RetentionError::Sql(_) | RetentionError::Catalog(_))) {
            // Last resort: a truncated WAL gives its space back to the file system.
            warn!(
                camera,
                "disk full: catalog needs room; truncating its write-ahead log"
            );
            let _ = self
                .cat
                .connection()
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
            r = attempt(self);
        }
        self.ensure_reserve();
        match r {
            Ok((n, freed, blocked)) => {
                if n > 0 {
                    warn!(
                        camera,
                        segments = n,
                        bytes = freed,
                        "disk full: deleted the oldest unheld segments"
                    );
                }
                if blocked && freed == 0 {
                    let a = "file system: disk full and no unheld segment left to delete; \
                             recording waits for space"
                        .to_string();
                    error!(camera, alarm = %a, "retention alarm");
                    if let Some(m) = &self.metrics {
                        m.retention_alarm.set(1);
                    }
                    self.disk_full_alarm = Some(a);
                }
                freed
            }
            Err(e) => {
                error!(camera, error = %e, "disk full: emergency deletion failed");
                0
            }
        }
    }

    /// Deletes a batch (crash-safe order, see the module doc). Holds are re-read inside
    /// the write transaction, so a hold committed before it is always honoured.
    fn delete_batch(&mut self, batch: &[Candidate], reason: Reason) -> Result<(u64, u64)> {
        if batch.is_empty() {
            return Ok((0, 0));
        }
        let now = self.clock.now_unix_ms();
        let mut deleted = Vec::with_capacity(batch.len());
        {
            let tx =
                Transaction::new_unchecked(self.cat.connection(), TransactionBehavior::Immediate)?;
            let active = holds::active_on(&tx, self.holds_at)?;
            {
                let mut del = tx.prepare_cached(
                    "DELETE FROM segments WHERE rowid = ?1 AND uuid = ?2 AND state = 'closed'",
                )?;
                for c in batch {
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
                            deleted_unix_ms: now,
                            reason: reason.as_str().to_string(),
                        },
                    )?;
                    deleted.push(c);
                }
            }
            if self.crash_after == Some(DeleteStep::RowsAndJournal) {
                return Err(RetentionError::InjectedCrash(DeleteStep::RowsAndJournal));
            }
            tx.commit()?;
        }
        if self.crash_after == Some(DeleteStep::Commit) {
            return Err(RetentionError::InjectedCrash(DeleteStep::Commit));
        }
        let mut dirs = BTreeSet::new();
        for c in &deleted {
            let path = catalog::segment_path(&self.store, &c.camera, c.id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    // The key is gone already: the footage is erased; the file is an
                    // orphan that the next start removes.
                    error!(file = %path.display(), error = %source, "cannot unlink a deleted segment");
                }
            }
            if let Some(d) = path.parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        if self.crash_after == Some(DeleteStep::Unlink) {
            return Err(RetentionError::InjectedCrash(DeleteStep::Unlink));
        }
        for d in &dirs {
            if let Err(e) = crate::store::sync_dir(d) {
                warn!(dir = %d.display(), error = %e, "cannot sync directory after deletion");
            }
        }
        if self.crash_after == Some(DeleteStep::SyncDir) {
            return Err(RetentionError::InjectedCrash(DeleteStep::SyncDir));
        }
        let bytes: u64 = deleted.iter().map(|c| c.bytes).sum();
        if let Some(m) = &self.metrics {
            for c in &deleted {
                let l = DeletionLabel {
                    camera: c.camera.clone(),
                    reason: reason.as_str().to_string(),
                };
                m.segments_deleted.get_or_create(&l).inc();
                m.bytes_deleted.get_or_create(&l).inc_by(c.bytes);
            }
            m.store_bytes.dec_by(bytes as i64);
        }
        Ok((deleted.len() as u64, bytes))
    }
}

/// A candidate row; `None` for a row whose id does not parse (left alone: `check`
/// reports it).
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

/// What the segment writers need from retention.
pub trait SpaceHooks: Send + Sync {
    /// A segment closed: run a pass soon.
    fn segment_closed(&self);
    /// A write failed with ENOSPC: free at least `needed_bytes` now if possible.
    /// Returns the bytes freed (0: nothing could be deleted).
    fn disk_full(&self, camera: &str, needed_bytes: u64) -> u64;
}

/// Runs retention passes on its own thread: at least every [`PASS_INTERVAL`] and soon
/// after each segment closes; serves the writers' disk-full calls in between.
pub struct RetentionService {
    engine: Mutex<Retention>,
    wake_tx: SyncSender<()>,
    wake_rx: Mutex<Receiver<()>>,
    stop: AtomicBool,
}

impl RetentionService {
    pub fn new(engine: Retention) -> Arc<RetentionService> {
        let (wake_tx, wake_rx) = std::sync::mpsc::sync_channel(1);
        Arc::new(RetentionService {
            engine: Mutex::new(engine),
            wake_tx,
            wake_rx: Mutex::new(wake_rx),
            stop: AtomicBool::new(false),
        })
    }

    /// One pass now.
    pub fn pass(&self) -> Result<PassReport> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner()).pass()
    }

    /// The loop of the retention thread; returns after [`stop`](Self::stop).
    pub fn run(&self) {
        let rx = self.wake_rx.lock().unwrap_or_else(|e| e.into_inner());
        while !self.stop.load(Ordering::SeqCst) {
            if let Err(e) = self.pass() {
                error!(error = %e, "retention pass failed; retrying");
            }
            match rx.recv_timeout(PASS_INTERVAL) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake_tx.try_send(());
    }
}

impl SpaceHooks for RetentionService {
    fn segment_closed(&self) {
        let _ = self.wake_tx.try_send(());
    }

    fn disk_full(&self, camera: &str, needed_bytes: u64) -> u64 {
        self.engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .free_for_disk_full(camera, needed_bytes)
    }
}

/// The retention state last stored by a running (or the last) recorder.
pub fn stored_state(cat: &Catalog) -> Option<RetentionState> {
    cat.meta(STATE_META_KEY)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok())
}

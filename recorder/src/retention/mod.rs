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
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::catalog::retention::{Candidate, DeleteError, Scan};
use crate::catalog::{self, Catalog, CatalogError};
use crate::clock::{Clock, rfc3339};
use crate::config::Config;
use crate::holds::{self, ActiveHolds};
use crate::journal::{self, Reason};
use crate::metrics::{DeletionLabel, Metrics};

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

/// Free bytes for an unprivileged user on the file system holding `path` (statvfs).
pub fn statvfs_free_bytes(path: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

pub use crate::clock::MonotonicClock;

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

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn catalog(&self) -> &Catalog {
        &self.cat
    }
}

/// A candidate row; `None` for a row whose id does not parse (left alone: `check`
/// reports it).
/// The retention state last stored by a running (or the last) recorder.
pub fn stored_state(cat: &Catalog) -> Option<RetentionState> {
    cat.meta(STATE_META_KEY)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok())
}

mod clock_guard;
mod pass;
mod reserve;
mod service;

pub use service::*;

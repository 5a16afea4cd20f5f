//! Police exports that stand as evidence.
//!
//! A police officer asks for one time range (≤ 24 h) of one or more cameras, with a case
//! reference and a reason ([`api`]). The request is logged, a legal hold
//! (`recorder::holds`) is placed on the range so the ring buffer cannot delete what is
//! being copied, and a background job ([`Exports::run_pending`]) copies the original
//! frames, from the key frame at or before `from`, into one MP4 per camera with the
//! MP4 writer playback uses ([`crate::mp4`]), hashing as it writes; no re-encoding. The result is a zip ([`bundle`]) with the MP4s,
//! a manifest (device, case, officer, range, gaps, file hashes, and the recorded
//! SHA-256 of every source segment) signed with the device's Ed25519 key, its public
//! key, and instructions; anyone can check it with `openssl` and `sha256sum`, or with
//! `viewer-api verify-export` ([`verify`]).
//!
//! Exports are personal data: the zip is kept sealed on the appliance ([`crypt`],
//! AES-256-GCM under a per-export key wrapped by the KEK; the MP4s being built are
//! sealed the same way, so no plaintext touches the disk), streamed decrypted to the
//! officer who asked or another police user of the same case, and deleted after
//! `[api] export_ttl` (default 7 days). Request, completion, every download and every
//! expiry are written to the access log.

pub mod api;
pub mod bundle;
pub mod crypt;
pub mod verify;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use hardware::Kek;
use recorder::holds::{HoldCameras, NewHold};
use recorder::segment::{self, DataKey, SegmentId};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use crate::audit::{AuditLog, NewEntry};
use crate::clock::{Clock, rfc3339};
use crate::mp4::{TrackParams, VideoCodec};
use crate::playback::{FootageSource, FrameIndex, SegmentKey};
use crate::recorder_side::{LogRef, RecorderSide, SideError};
use bundle::{CameraEntry, DeviceInfo, FileEntry, GapEntry, Manifest, SegmentEntry};
use crypt::{EncReader, EncWriter, FileKey};

pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest range one export may cover.
pub const MAX_RANGE_MS: i64 = 24 * 3600 * 1000;
/// How long the hold of a job outlives its start if the job never ends (crash).
pub const HOLD_SAFETY_MS: i64 = 48 * 3600 * 1000;
/// How far before `from` the key frame that starts the export may lie.
pub const LOOKBACK_MS: i64 = 60_000;
/// A hole in the recorded spans longer than this is listed as a gap.
const HOLE_TOLERANCE_MS: i64 = 2_000;
/// Exports one user may have queued or running at once.
pub const MAX_ACTIVE_PER_USER: i64 = 3;
/// Exports queued or running at once, all users.
pub const MAX_ACTIVE: i64 = 12;
/// Finished bundles one user may keep (until they expire or are deleted).
pub const MAX_KEPT_PER_USER: i64 = 20;
/// Free space the exports' file system must keep: a new export is refused below it.
pub const MIN_FREE_BYTES: u64 = 2 * 1024 * 1024 * 1024;
pub const DB_FILE: &str = "exports.sqlite";
pub const DIR: &str = "exports";
/// The viewer-api's key for exports at rest, in its state directory.
pub const KEY_FILE: &str = "exports.key";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Invalid(String),
    #[error("exports database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("exports: {0}")]
    Io(#[from] std::io::Error),
    #[error("exports: {0}")]
    Store(String),
}

/// An export as asked for (already authorised).
#[derive(Debug, Clone)]
pub struct NewExport {
    pub cameras: Vec<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub case: String,
    pub reason: String,
    pub by: String,
    pub client: Option<String>,
    /// The access-log entry of the request: the recorder side journals the footage
    /// read, the hold and the signature for it.
    pub log: LogRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Queued,
    Running,
    Done,
    Failed,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
            State::Expired => "expired",
        }
    }
    fn parse(s: &str) -> State {
        match s {
            "queued" => State::Queued,
            "running" => State::Running,
            "done" => State::Done,
            "expired" => State::Expired,
            _ => State::Failed,
        }
    }
}

/// An export's row.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub owner: String,
    pub case: String,
    pub reason: String,
    pub cameras: Vec<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub state: State,
    pub error: Option<String>,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    pub expires_ms: Option<i64>,
    pub hold_id: Option<i64>,
    pub bytes: Option<u64>,
    pub client: Option<String>,
    /// The request's access-log entry (see [`NewExport::log`]).
    pub log: Option<LogRef>,
}

/// Where the job is, for `GET /exports/{id}`.
#[derive(Debug, Clone)]
pub struct Status {
    pub job: Job,
    pub progress: f64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS exports (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    case_ref TEXT NOT NULL,
    reason TEXT NOT NULL,
    cameras TEXT NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    created_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    expires_ms INTEGER,
    hold_id INTEGER,
    wrapped_key BLOB,
    bytes INTEGER,
    manifest_sha256 TEXT,
    client TEXT,
    deleted_ms INTEGER,
    log_seq INTEGER,
    log_hash TEXT
);
CREATE INDEX IF NOT EXISTS exports_by_state ON exports (state, expires_ms);
";

const COLUMNS: &str = "id, owner, case_ref, reason, cameras, from_ms, to_ms, state, error, \
                       created_ms, finished_ms, expires_ms, hold_id, bytes, client, log_seq, log_hash";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        owner: r.get(1)?,
        case: r.get(2)?,
        reason: r.get(3)?,
        cameras: r
            .get::<_, String>(4)?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        from_ms: r.get(5)?,
        to_ms: r.get(6)?,
        state: State::parse(&r.get::<_, String>(7)?),
        error: r.get(8)?,
        created_ms: r.get(9)?,
        finished_ms: r.get(10)?,
        expires_ms: r.get(11)?,
        hold_id: r.get(12)?,
        bytes: r.get::<_, Option<i64>>(13)?.map(|b| b as u64),
        client: r.get(14)?,
        log: match (
            r.get::<_, Option<i64>>(15)?,
            r.get::<_, Option<String>>(16)?,
        ) {
            (Some(seq), Some(hash)) => Some(LogRef { seq, hash }),
            _ => None,
        },
    })
}

fn parse_id(id: &str) -> Option<[u8; 16]> {
    if id.len() != 32 {
        return None;
    }
    let v = hex::decode(id).ok()?;
    v.try_into().ok()
}

/// The export, queued or running, whose hold is `hold_id`, if any, from the exports
/// table in the viewer-api's `state_dir`: such a hold is the export's own, and ends
/// with it. Read-only; for callers without the export service at hand.
pub fn export_of_hold(state_dir: &Path, hold_id: i64) -> Result<Option<String>, ExportError> {
    let path = state_dir.join(DB_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let conn = recorder::sqlite::open_read_only(&path, Duration::from_secs(5))?;
    Ok(conn
        .query_row(
            "SELECT id FROM exports WHERE hold_id=?1 AND state IN ('queued','running')
              ORDER BY created_ms DESC LIMIT 1",
            [hold_id],
            |r| r.get(0),
        )
        .optional()?)
}

/// Test hook, run after each source segment a job has read.
pub type SegmentHook = Box<dyn Fn(&SegmentKey) + Send + Sync>;

/// The export service: the jobs table, the worker, downloads and expiry.
pub struct Exports {
    dir: PathBuf,
    source: Arc<dyn FootageSource>,
    recorder: Arc<dyn RecorderSide>,
    /// The viewer-api's own key wrapping each export's file key (not the recorder's
    /// KEK, which the viewer-api cannot read).
    key: Kek,
    audit: Arc<AuditLog>,
    clock: Arc<dyn Clock>,
    db: Mutex<Connection>,
    ttl_ms: i64,
    progress: Mutex<HashMap<String, f64>>,
    wake: (Mutex<bool>, Condvar),
    #[doc(hidden)]
    pub after_segment: Mutex<Option<SegmentHook>>,
}

impl std::fmt::Debug for Exports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exports")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Everything an export service is made of.
pub struct Parts {
    /// The viewer-api's state directory: exports live in `<state_dir>/exports`, their
    /// table in `<state_dir>/exports.sqlite`.
    pub state_dir: PathBuf,
    /// Wraps each export's file key.
    pub key: Kek,
    /// Footage, read for the request's log entry.
    pub source: Arc<dyn FootageSource>,
    /// Holds and the device's signature.
    pub recorder: Arc<dyn RecorderSide>,
    pub audit: Arc<AuditLog>,
    pub clock: Arc<dyn Clock>,
    pub ttl: Duration,
}

impl Exports {
    /// Opens the service; jobs a restart interrupted are marked failed (and their
    /// holds released), leftovers removed.
    pub fn open(p: Parts) -> Result<Arc<Exports>, ExportError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = p.state_dir.join(DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let conn = recorder::sqlite::open(&p.state_dir.join(DB_FILE), Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let e = Arc::new(Exports {
            dir,
            source: p.source,
            recorder: p.recorder,
            key: p.key,
            audit: p.audit,
            clock: p.clock,
            db: Mutex::new(conn),
            ttl_ms: p.ttl.as_millis() as i64,
            progress: Mutex::new(HashMap::new()),
            wake: (Mutex::new(false), Condvar::new()),
            after_segment: Mutex::new(None),
        });
        e.recover()?;
        Ok(e)
    }

    /// From the shared configuration: the state directory and the exports' key
    /// (`<state_dir>/exports.key`, made on first start, mode 0600).
    pub fn from_settings(
        settings: &crate::config::Settings,
        audit: Arc<AuditLog>,
        clock: Arc<dyn Clock>,
        source: Arc<dyn FootageSource>,
        recorder: Arc<dyn RecorderSide>,
    ) -> anyhow::Result<Arc<Exports>> {
        use hardware::keys::{FileKeyProvider, KeyProvider};
        let state_dir = settings.state_dir();
        crate::server::ensure_store_dir(&state_dir)?;
        let keys = FileKeyProvider::new(state_dir.join(KEY_FILE));
        keys.create_if_absent()?;
        if let Err(e) = recorder.public_key() {
            warn!(error = %e, "no device signing key: exports are unavailable until `recorder init` makes one");
        }
        Ok(Exports::open(Parts {
            state_dir,
            key: keys.load()?,
            source,
            recorder,
            audit,
            clock,
            ttl: settings.api.export_ttl(),
        })?)
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The device's public key as PEM, if the device has a signing key.
    pub fn device_key_pem(&self) -> Result<String, String> {
        let pk = self.recorder.public_key().map_err(|e| e.to_string())?;
        Ok(hardware::signing::public_key_pem(&pk))
    }

    fn spool_path(&self, id: &str, n: usize) -> PathBuf {
        self.dir.join(format!("{id}.{n}.spool"))
    }

    fn bundle_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.rfx"))
    }

    /// Appends `entries` (one per camera, see [`job_entries`](Self::job_entries)).
    fn log(&self, entries: Vec<NewEntry>) -> Result<(), crate::audit::AuditError> {
        self.audit
            .append_all(entries)
            .map(|_| ())
            .inspect_err(|err| {
                error!(error = %err, "cannot write an export entry to the access log");
            })
    }

    /// One entry per camera of the job, so that the subject-access report of each
    /// camera finds it.
    fn job_entries(job: &Job, action: &str, outcome: String) -> Vec<NewEntry> {
        let one = Self::job_entry(job, action, outcome);
        job.cameras
            .iter()
            .map(|c| NewEntry {
                camera: Some(c.clone()),
                ..one.clone()
            })
            .collect()
    }

    fn job_entry(job: &Job, action: &str, outcome: String) -> NewEntry {
        NewEntry {
            actor: job.owner.clone(),
            role: "police".into(),
            action: action.into(),
            camera: Some(job.cameras.join(",")),
            from_ms: Some(job.from_ms),
            to_ms: Some(job.to_ms),
            purpose: Some(format!("export {}: {}", job.id, job.reason)),
            case: Some(job.case.clone()),
            client: job.client.clone(),
            outcome,
        }
    }

    fn release_hold(&self, job: &Job) {
        let Some(hold) = job.hold_id else { return };
        let log = job.log.clone().unwrap_or(LogRef {
            seq: 0,
            hash: String::new(),
        });
        let r = match self.recorder.release_hold(
            &log,
            hold,
            &format!("export {}", job.id),
            self.clock.now_unix_ms(),
        ) {
            Ok(()) | Err(SideError::AlreadyReleased { .. }) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            error!(export = %job.id, hold, error = %e, "cannot release an export's hold; it expires by itself");
        }
    }

    fn recover(&self) -> Result<(), ExportError> {
        let stale: Vec<Job> = {
            let db = self.db();
            let mut st = db.prepare(&format!(
                "SELECT {COLUMNS} FROM exports WHERE state IN ('queued','running')"
            ))?;
            st.query_map([], job_row)?.collect::<Result<_, _>>()?
        };
        for job in stale {
            warn!(export = %job.id, "export interrupted by a restart; marked failed");
            self.fail(&job, "interrupted: the service restarted");
        }
        // Spools and bundles no row claims are garbage.
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name.split('.').next().unwrap_or_default().to_string();
                let keep = name.ends_with(".rfx")
                    && self
                        .job(&id)
                        .ok()
                        .flatten()
                        .is_some_and(|j| j.state == State::Done);
                if !keep {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    fn fail(&self, job: &Job, why: &str) {
        let now = self.clock.now_unix_ms();
        let r = self.db().execute(
            "UPDATE exports SET state='failed', error=?2, finished_ms=?3, wrapped_key=NULL WHERE id=?1",
            params![job.id, why, now],
        );
        if let Err(e) = r {
            error!(export = %job.id, error = %e, "cannot mark an export failed");
        }
        for n in 0..=job.cameras.len() * 8 {
            let _ = std::fs::remove_file(self.spool_path(&job.id, n));
        }
        let _ = std::fs::remove_file(self.bundle_path(&job.id));
        self.release_hold(job);
        let _ = self.log(Self::job_entries(
            job,
            "export.failed",
            format!("allowed; failed: {why}"),
        ));
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job.id);
    }

    pub fn job(&self, id: &str) -> Result<Option<Job>, ExportError> {
        if parse_id(id).is_none() {
            return Ok(None);
        }
        Ok(self
            .db()
            .query_row(
                &format!("SELECT {COLUMNS} FROM exports WHERE id=?1"),
                [id],
                job_row,
            )
            .optional()?)
    }

    pub fn status(&self, id: &str) -> Result<Option<Status>, ExportError> {
        let Some(job) = self.job(id)? else {
            return Ok(None);
        };
        Ok(Some(self.with_progress(job)))
    }

    fn with_progress(&self, job: Job) -> Status {
        let progress = match job.state {
            State::Done => 1.0,
            State::Queued => 0.0,
            _ => self
                .progress
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&job.id)
                .copied()
                .unwrap_or(0.0),
        };
        Status { job, progress }
    }

    /// The exports `owner` asked for, newest first (at most `limit`), expired and
    /// failed ones included, with their progress.
    pub fn jobs_of(&self, owner: &str, limit: usize) -> Result<Vec<Status>, ExportError> {
        let jobs: Vec<Job> = {
            let db = self.db();
            let mut st = db.prepare(&format!(
                "SELECT {COLUMNS} FROM exports WHERE owner=?1
                  ORDER BY created_ms DESC, rowid DESC LIMIT ?2"
            ))?;
            st.query_map(
                params![owner, i64::try_from(limit).unwrap_or(i64::MAX)],
                job_row,
            )?
            .collect::<Result<_, _>>()?
        };
        Ok(jobs.into_iter().map(|j| self.with_progress(j)).collect())
    }

    fn set_progress(&self, id: &str, p: f64) {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), p.clamp(0.0, 1.0));
    }

    /// Opens a finished export for download: the decrypting reader and its length.
    pub fn open_bundle(&self, job: &Job) -> Result<EncReader, ExportError> {
        let wrapped: Option<Vec<u8>> = self.db().query_row(
            "SELECT wrapped_key FROM exports WHERE id=?1 AND state='done'",
            [&job.id],
            |r| r.get(0),
        )?;
        let wrapped = wrapped.ok_or_else(|| ExportError::Store("export has no key".into()))?;
        let fid = parse_id(&job.id).ok_or_else(|| ExportError::Store("bad id".into()))?;
        let key = segment::unwrap_key(self.key.as_bytes(), SegmentId(fid), &wrapped)
            .map_err(|e| ExportError::Store(e.to_string()))?;
        Ok(EncReader::open(
            &self.bundle_path(&job.id),
            &FileKey(zeroize::Zeroizing::new(*key.as_bytes())),
            fid,
        )?)
    }
}

mod job;
mod service;
mod timeline;

use crate::clock::{ms_from_90k, ticks_90k_from_ms};
use timeline::*;

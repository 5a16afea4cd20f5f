//! Police exports that stand as evidence.
//!
//! A police officer asks for one time range (≤ 24 h) of one or more cameras, with a case
//! reference and a reason ([`api`]). The request is logged, a legal hold
//! (`recorder::holds`) is placed on the range so the ring buffer cannot delete what is
//! being copied, and a background job ([`Exports::run_pending`]) copies the original
//! frames, from the key frame at or before `from`, into one MP4 per camera with
//! GStreamer ([`mux`]); no re-encoding. The result is a zip ([`bundle`]) with the MP4s,
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

    /// Whether `owner` may ask for one more export now: `Err` says why not (too many
    /// in progress, for them or for everyone; too many kept; the disk nearly full).
    pub fn check_quota(&self, owner: &str) -> Result<(), String> {
        let count = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> Result<i64, String> {
            self.db()
                .query_row(sql, args, |r| r.get(0))
                .map_err(|e| format!("exports database: {e}"))
        };
        let mine = count(
            "SELECT COUNT(*) FROM exports WHERE owner = ?1 AND state IN ('queued', 'running')",
            &[&owner],
        )?;
        if mine >= MAX_ACTIVE_PER_USER {
            return Err(format!(
                "you have {mine} exports in progress (at most {MAX_ACTIVE_PER_USER}); wait for one to finish"
            ));
        }
        let all = count(
            "SELECT COUNT(*) FROM exports WHERE state IN ('queued', 'running')",
            &[],
        )?;
        if all >= MAX_ACTIVE {
            return Err(format!(
                "{all} exports are in progress (at most {MAX_ACTIVE}); try again later"
            ));
        }
        let kept = count(
            "SELECT COUNT(*) FROM exports WHERE owner = ?1 AND state = 'done'",
            &[&owner],
        )?;
        if kept >= MAX_KEPT_PER_USER {
            return Err(format!(
                "you keep {kept} finished exports (at most {MAX_KEPT_PER_USER}); delete some you have downloaded"
            ));
        }
        let free = recorder::footage::file_system_space(&self.dir)
            .map(|f| f.free_bytes)
            .map_err(|e| format!("exports: {e}"))?;
        if free < MIN_FREE_BYTES {
            return Err(format!(
                "the exports' disk is nearly full ({} MiB free); delete finished exports",
                free / (1024 * 1024)
            ));
        }
        Ok(())
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

    /// Validates and queues an export, placing its hold. The caller has authorised
    /// and logged the request. Returns the export id.
    pub fn request(&self, req: &NewExport) -> Result<String, ExportError> {
        let now = self.clock.now_unix_ms();
        if self.recorder.public_key().is_err() {
            return Err(ExportError::Store(
                "this device has no signing key yet (run `recorder init`)".into(),
            ));
        }
        if req.cameras.is_empty() {
            return Err(ExportError::Invalid("name at least one camera".into()));
        }
        if req.from_ms >= req.to_ms {
            return Err(ExportError::Invalid("from must be earlier than to".into()));
        }
        if req.to_ms - req.from_ms > MAX_RANGE_MS {
            return Err(ExportError::Invalid(
                "an export covers at most 24 hours".into(),
            ));
        }
        let id = hex::encode(SegmentId::random().0);
        let hold = self
            .recorder
            .add_hold(
                &req.log,
                &NewHold {
                    cameras: HoldCameras::Some(req.cameras.clone()),
                    from_unix_ms: req.from_ms - LOOKBACK_MS,
                    to_unix_ms: req.to_ms,
                    case_ref: req.case.clone(),
                    placed_by: req.by.clone(),
                    until_unix_ms: Some(now + HOLD_SAFETY_MS),
                },
                now,
            )
            .map_err(|e| match e {
                SideError::Invalid(m) => ExportError::Invalid(m),
                e => ExportError::Store(e.to_string()),
            })?;
        let r = self.db().execute(
            "INSERT INTO exports(id, owner, case_ref, reason, cameras, from_ms, to_ms, state,
                                 created_ms, hold_id, client, log_seq, log_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9, ?10, ?11, ?12)",
            params![
                id,
                req.by,
                req.case,
                req.reason,
                req.cameras.join(","),
                req.from_ms,
                req.to_ms,
                now,
                hold,
                req.client,
                req.log.seq,
                req.log.hash
            ],
        );
        if let Err(e) = r {
            let _ = self
                .recorder
                .release_hold(&req.log, hold, "export request failed", now);
            return Err(e.into());
        }
        info!(export = %id, by = %req.by, case = %req.case, cameras = %req.cameras.join(","), "export queued");
        let (m, cv) = &self.wake;
        *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        Ok(id)
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

    /// Runs every queued job, oldest first; returns how many ran.
    pub fn run_pending(&self) -> usize {
        let mut n = 0;
        loop {
            let next: Option<Job> = {
                let db = self.db();
                let r = db
                    .query_row(
                        &format!(
                            "SELECT {COLUMNS} FROM exports WHERE state='queued' ORDER BY created_ms, rowid LIMIT 1"
                        ),
                        [],
                        job_row,
                    )
                    .optional();
                match r {
                    Ok(Some(j)) => {
                        if let Err(e) =
                            db.execute("UPDATE exports SET state='running' WHERE id=?1", [&j.id])
                        {
                            error!(error = %e, "cannot start an export");
                            return n;
                        }
                        Some(j)
                    }
                    Ok(None) => None,
                    Err(e) => {
                        error!(error = %e, "cannot read the export queue");
                        None
                    }
                }
            };
            let Some(job) = next else { return n };
            n += 1;
            self.set_progress(&job.id, 0.0);
            let started = std::time::Instant::now();
            match self.run_job(&job) {
                Ok(done) => {
                    let now = self.clock.now_unix_ms();
                    let expires = now + self.ttl_ms;
                    let r = self.db().execute(
                        "UPDATE exports SET state='done', finished_ms=?2, expires_ms=?3,
                                wrapped_key=?4, bytes=?5, manifest_sha256=?6 WHERE id=?1",
                        params![
                            job.id,
                            now,
                            expires,
                            done.wrapped_key,
                            done.bytes as i64,
                            done.manifest_sha256
                        ],
                    );
                    match r {
                        Ok(_) => {
                            self.release_hold(&job);
                            let _ = self.log(Self::job_entries(
                                &job,
                                "export.done",
                                format!(
                                    "allowed; done: {} bytes, {} frames, manifest sha256 {}; expires {}",
                                    done.bytes,
                                    done.frames,
                                    done.manifest_sha256,
                                    rfc3339(expires)
                                ),
                            ));
                            info!(export = %job.id, bytes = done.bytes, frames = done.frames,
                                  secs = started.elapsed().as_secs_f64(), "export done");
                        }
                        Err(e) => self.fail(&job, &format!("cannot record the result: {e}")),
                    }
                }
                Err(why) => {
                    warn!(export = %job.id, error = %why, "export failed");
                    self.fail(&job, &why);
                }
            }
            self.progress
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&job.id);
        }
    }

    /// Deletes finished exports whose time is up (and failed ones' leftovers),
    /// journaling each in the access log. Returns how many expired.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now_unix_ms();
        let due: Vec<Job> = {
            let db = self.db();
            let r = db
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM exports WHERE state='done' AND expires_ms <= ?1"
                ))
                .and_then(|mut st| st.query_map([now], job_row)?.collect());
            match r {
                Ok(v) => v,
                Err(e) => {
                    error!(error = %e, "cannot list expired exports");
                    return 0;
                }
            }
        };
        let mut n = 0;
        for job in due {
            // Journal first: a deletion is never without its entry.
            let entries = Self::job_entries(
                &job,
                "export.expire",
                format!(
                    "allowed; deleted: export_ttl reached ({})",
                    job.expires_ms.map(rfc3339).unwrap_or_default()
                ),
            )
            .into_iter()
            .map(|e| NewEntry {
                actor: "system".into(),
                role: "system".into(),
                client: None,
                ..e
            })
            .collect();
            if let Err(e) = self.log(entries) {
                error!(error = %e, "cannot journal an export expiry; it stays until the log can be written");
                return n;
            }
            let r = self.db().execute(
                "UPDATE exports SET state='expired', wrapped_key=NULL, deleted_ms=?2 WHERE id=?1",
                params![job.id, now],
            );
            if let Err(e) = r {
                error!(error = %e, "cannot mark an export expired");
                continue;
            }
            let _ = std::fs::remove_file(self.bundle_path(&job.id));
            let _ = recorder::store::sync_dir(&self.dir);
            info!(export = %job.id, "export expired and deleted");
            n += 1;
        }
        n
    }

    /// Starts the background worker: runs queued jobs, expires old exports (at least
    /// every minute).
    pub fn spawn_worker(self: &Arc<Self>) -> std::thread::JoinHandle<()> {
        let me = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("exports".into())
            .spawn(move || {
                loop {
                    let Some(e) = me.upgrade() else { return };
                    e.run_pending();
                    e.sweep();
                    let (m, cv) = &e.wake;
                    let mut woken = m.lock().unwrap_or_else(|p| p.into_inner());
                    if !*woken {
                        woken = cv
                            .wait_timeout(woken, Duration::from_secs(30))
                            .map(|(g, _)| g)
                            .unwrap_or_else(|p| p.into_inner().0);
                    }
                    *woken = false;
                }
            })
            .expect("spawn the export worker")
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

    // ---------------------------------------------------------------------------------
    // the job

    fn run_job(&self, job: &Job) -> Result<Done, String> {
        let log = job
            .log
            .clone()
            .ok_or("the export has no access-log entry (from an older version)")?;
        let source = crate::playback::for_entry(&self.source, log.clone());
        let names: HashMap<String, String> = source
            .cameras()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect();
        // Plan: the segments of every camera, for progress and the gaps.
        let mut plan = Vec::new();
        let mut total = 0u64;
        for cam in &job.cameras {
            let rows = source
                .segments(cam, job.from_ms - LOOKBACK_MS, job.to_ms)
                .map_err(|e| e.to_string())?;
            total += rows.iter().map(|r| r.bytes.max(1)).sum::<u64>();
            plan.push((cam.clone(), rows));
        }
        let io = |e: std::io::Error| format!("bundle: {e}");
        let ze = |e: zip::result::ZipError| format!("bundle: {e}");
        let now = self.clock.now_unix_ms();
        let file_id = parse_id(&job.id).ok_or("bad export id")?;
        let key = FileKey::random();
        let path = self.bundle_path(&job.id);
        let _ = std::fs::remove_file(&path);
        let w = EncWriter::create(&path, &key, file_id).map_err(io)?;
        let mut zip = zip::ZipWriter::new(w);
        let mtime = zip_time(now);
        let opts = |big: bool| {
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .last_modified_time(mtime)
                .unix_permissions(0o644)
                .large_file(big)
        };
        let mut written = 0u64;
        let mut files = Vec::new();
        let mut cameras = Vec::new();
        let mut segments = Vec::new();
        let mut gaps = Vec::new();
        let mut frames = 0u64;
        for (cam, rows) in &plan {
            let out = self.export_camera(&*source, job, cam, &mut |name, layout, idx| {
                zip.start_file(name, opts(layout.total_len >= 0xFFFF_0000))
                    .map_err(ze)?;
                let mut h = Sha256::new();
                h.update(&layout.header);
                zip.write_all(&layout.header).map_err(io)?;
                let mut err = None;
                crate::playback::read_payload(&*source, idx, 0, &mut |b| {
                    h.update(&b);
                    if let Err(e) = zip.write_all(&b) {
                        err = Some(io(e));
                        return false;
                    }
                    written += b.len() as u64;
                    self.set_progress(&job.id, 0.99 * written as f64 / total.max(1) as f64);
                    true
                })
                .map_err(|e| format!("camera {cam}: {e}"))?;
                if let Some(e) = err {
                    return Err(e);
                }
                files.push(FileEntry {
                    name: name.to_string(),
                    sha256: hex::encode(h.finalize()),
                    bytes: layout.total_len,
                });
                Ok(())
            })?;
            frames += out.frames;
            let name = names.get(cam).cloned().unwrap_or_else(|| cam.clone());
            cameras.push(CameraEntry {
                id: cam.clone(),
                name,
                codec: out.params.as_ref().map(|p| codec_name(p.codec).to_string()),
                width: out.params.as_ref().map(|p| p.width),
                height: out.params.as_ref().map(|p| p.height),
                files: out.files,
                frames: out.frames,
                first_frame: out.first_ms.map(rfc3339),
                last_frame: out.last_ms.map(rfc3339),
            });
            segments.extend(out.segments);
            gaps.extend(self.gaps(&*source, cam, rows, job)?);
        }
        let pk = self.recorder.public_key().map_err(|e| e.to_string())?;
        let manifest = Manifest {
            format: bundle::FORMAT.into(),
            format_version: bundle::FORMAT_VERSION,
            export_id: job.id.clone(),
            device: DeviceInfo::from_public_key(&pk),
            case: job.case.clone(),
            reason: job.reason.clone(),
            exported_by: job.owner.clone(),
            exported_at: rfc3339(now),
            from: rfc3339(job.from_ms),
            to: rfc3339(job.to_ms),
            cameras,
            gaps,
            files,
            segments,
        };
        let mbytes = bundle::manifest_bytes(&manifest);
        let sig = self
            .recorder
            .sign_manifest(&log, &mbytes)
            .map_err(|e| format!("the recorder did not sign the manifest: {e}"))?;
        let small: [(&str, Vec<u8>); 4] = [
            (bundle::MANIFEST, mbytes.clone()),
            (bundle::SIGNATURE, sig.to_vec()),
            (
                bundle::PUBLIC_KEY,
                hardware::signing::public_key_pem(&pk).into_bytes(),
            ),
            (bundle::README, bundle::verify_text(&manifest).into_bytes()),
        ];
        for (name, data) in small {
            zip.start_file(name, opts(false)).map_err(ze)?;
            zip.write_all(&data).map_err(io)?;
        }
        let w = zip.finish().map_err(ze)?;
        let bytes = w.finish().map_err(io)?;
        let _ = recorder::store::sync_dir(&self.dir);
        let wrapped = segment::wrap_key(
            self.key.as_bytes(),
            SegmentId(file_id),
            &DataKey::from_bytes(*key.0),
        );
        Ok(Done {
            wrapped_key: wrapped,
            bytes,
            frames,
            manifest_sha256: hex::encode(Sha256::digest(&mbytes)),
        })
    }

    /// Catalog gaps in the range, and holes where nothing was recorded at all.
    fn gaps(
        &self,
        source: &dyn FootageSource,
        cam: &str,
        rows: &[SegmentKey],
        job: &Job,
    ) -> Result<Vec<GapEntry>, String> {
        let (_, catalog_gaps) = source
            .recordings(cam, job.from_ms, job.to_ms)
            .map_err(|e| e.to_string())?;
        let mut out: Vec<GapEntry> = catalog_gaps
            .iter()
            .map(|g| GapEntry {
                camera: cam.to_string(),
                from: rfc3339(g.from_ms.max(job.from_ms)),
                to: g.to_ms.map(|t| rfc3339(t.min(job.to_ms))),
                reason: g.reason.clone(),
            })
            .collect();
        let now = self.clock.now_unix_ms();
        let mut spans: Vec<(i64, i64)> = rows
            .iter()
            .map(|r| {
                let end = if r.open { now } else { r.end_ms };
                (r.start_ms, end.max(r.start_ms))
            })
            .collect();
        spans.sort();
        let mut holes = Vec::new();
        let mut covered_to = job.from_ms;
        for (s, e) in spans {
            if s > covered_to + HOLE_TOLERANCE_MS {
                holes.push((covered_to, s.min(job.to_ms)));
            }
            covered_to = covered_to.max(e);
            if covered_to >= job.to_ms {
                break;
            }
        }
        if covered_to + HOLE_TOLERANCE_MS < job.to_ms {
            holes.push((covered_to, job.to_ms));
        }
        for (f, t) in holes {
            if f >= t {
                continue;
            }
            let explained = catalog_gaps.iter().any(|g| {
                g.from_ms <= f + HOLE_TOLERANCE_MS
                    && g.to_ms.is_none_or(|gt| gt + HOLE_TOLERANCE_MS >= t)
            });
            if !explained {
                out.push(GapEntry {
                    camera: cam.to_string(),
                    from: rfc3339(f),
                    to: Some(rfc3339(t)),
                    reason: "no footage stored".into(),
                });
            }
        }
        Ok(out)
    }

    /// The camera's frames of the job's range as one MP4 per run of codec parameters
    /// (a parameter change starts `<camera>-part2.mp4`), each laid out by [`crate::mp4`]
    /// from the stored index and handed to `write` with its frame index; footage is
    /// read once, by `write`.
    fn export_camera(
        &self,
        source: &dyn FootageSource,
        job: &Job,
        cam: &str,
        write: &mut dyn FnMut(&str, &crate::mp4::Layout, &FrameIndex) -> Result<(), String>,
    ) -> Result<CameraOut, String> {
        let mut out = CameraOut::default();
        let mut from = job.from_ms;
        let mut used: Vec<String> = Vec::new();
        while let Some(mut idx) = crate::playback::build_index(source, cam, from, job.to_ms)
            .map_err(|e| format!("camera {cam}: {e}"))?
        {
            if let Some(last) = out.last_ms {
                // A later part: only what follows the frames already written.
                match idx.starting_after(last + 1) {
                    Some(i) => idx = i,
                    None => break,
                }
            }
            follow_wall_clock(&mut idx, WALL_CLOCK_TOLERANCE_MS);
            let layout = idx.layout().map_err(|e| format!("camera {cam}: {e}"))?;
            let name = if out.files.is_empty() {
                format!("{cam}.mp4")
            } else {
                format!("{cam}-part{}.mp4", out.files.len() + 1)
            };
            write(&name, &layout, &idx)?;
            out.files.push(name);
            out.params.get_or_insert_with(|| idx.params.clone());
            out.frames += idx.samples.len() as u64;
            out.first_ms.get_or_insert(idx.first_unix_ms);
            let last_dur_ms = idx
                .samples
                .last()
                .map_or(0, |s| i64::from(s.duration_90k) / 90);
            out.last_ms = Some(idx.end_unix_ms - last_dur_ms);
            for seg in &idx.segments {
                if !used.contains(&seg.key) {
                    used.push(seg.key.clone());
                    out.segments.push(SegmentEntry {
                        camera: cam.to_string(),
                        id: seg.key.clone(),
                        start: rfc3339(seg.start_ms),
                        end: rfc3339(seg.end_ms),
                        bytes: seg.bytes,
                        sha256: (!seg.sha256.is_empty()).then(|| seg.sha256.clone()),
                    });
                }
            }
            if let Some(h) = self
                .after_segment
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                idx.segments.iter().for_each(h);
            }
            if idx.end_unix_ms >= job.to_ms || idx.end_unix_ms <= from {
                break;
            }
            from = idx.end_unix_ms;
        }
        Ok(out)
    }
}

fn codec_name(c: VideoCodec) -> &'static str {
    match c {
        VideoCodec::H264 => "h264",
        VideoCodec::H265 => "h265",
    }
}

/// How far a chunk's wall time may drift from where media time puts it before the
/// file follows the wall clock (a gap in recording, a reconnection).
const WALL_CLOCK_TOLERANCE_MS: i64 = 1_500;

/// Makes the file's timeline the recording's: where a chunk starts later than the
/// frames before it predict (a gap in recording), the last frame before it lasts until
/// it starts, so the MP4's time from its first frame is wall time, and a player shows
/// the gap as a held picture of its true length.
fn follow_wall_clock(idx: &mut FrameIndex, tolerance_ms: i64) {
    let mut sample = 0usize;
    let mut media_90k: i64 = 0;
    for g in 0..idx.gops.len() {
        if g > 0 && sample > 0 {
            let wall_90k = (idx.gop_unix_ms[g] - idx.first_unix_ms) * 90;
            let late_90k = wall_90k - media_90k;
            if late_90k > tolerance_ms * 90 {
                let prev = &mut idx.samples[sample - 1];
                let stretched = i64::from(prev.duration_90k) + late_90k;
                prev.duration_90k = u32::try_from(stretched).unwrap_or(u32::MAX);
                media_90k += late_90k;
            }
        }
        for s in &idx.samples[sample..sample + idx.gops[g].frames] {
            media_90k += i64::from(s.duration_90k);
        }
        sample += idx.gops[g].frames;
    }
}

fn zip_time(unix_ms: i64) -> zip::DateTime {
    use chrono::{Datelike, Timelike};
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .and_then(|t| {
            zip::DateTime::from_date_and_time(
                t.year().clamp(1980, 2107) as u16,
                t.month() as u8,
                t.day() as u8,
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
            )
            .ok()
        })
        .unwrap_or_default()
}

struct Done {
    wrapped_key: Vec<u8>,
    bytes: u64,
    frames: u64,
    manifest_sha256: String,
}

#[derive(Default)]
struct CameraOut {
    files: Vec<String>,
    params: Option<TrackParams>,
    frames: u64,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
    segments: Vec<SegmentEntry>,
}

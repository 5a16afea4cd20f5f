//! The access log: every look at footage, every login and every change of rights,
//! written down before it takes effect, in a hash chain that shows tampering.
//!
//! Why it is built this way:
//!
//! * **Its own SQLite file** (`<storage.path>/audit.sqlite` by default), so that the
//!   recorder's catalog, retention and `secure_delete` never touch it, and it can be
//!   copied out whole for an inquiry.
//! * **A hash chain.** Each entry's `hash` is SHA-256 over a canonical, length-prefixed
//!   encoding of all its fields and the previous entry's hash. Changing, removing or
//!   inserting an entry breaks the chain at that entry, which `viewer-api audit verify`
//!   names. SQLite triggers would add nothing an attacker with the file could not drop,
//!   so there are none: the chain is the protection.
//! * **A head file** (`<audit_db>.head`, "seq hash") is rewritten after each append, so
//!   cutting entries off the end of the chain is caught too, as long as the head file
//!   is not rolled back with it. It may lag the database after a crash (it is written
//!   after the commit) but never lead it.
//! * **Commit before serving.** [`AuditLog::append`] returns only once the entry is
//!   durable (`synchronous=FULL`); callers serve nothing when it fails.
//! * **Private files.** The database, its `-wal`/`-shm` and the head file are mode 0600
//!   (created so, and tightened at open for files an older version left readable).
//! * **Paged reads.** [`AuditLog::page`] gives the newest entries before a cursor and
//!   says whether older ones remain, so a reader never silently gets a truncated log.
//! * **Footage actions** ([`FOOTAGE_ACTIONS`]) are logged one entry per camera, so the
//!   subject-access report finds each by `camera = <id>`; entries written by older
//!   versions with comma-joined cameras are matched too.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::clock::{Clock, rfc3339};

/// The actions that show footage to someone: what a subject-access report lists.
pub const FOOTAGE_ACTIONS: &[&str] = &[
    "playback",
    "live",
    "live.end",
    "export.request",
    "export.download",
];

/// The most entries one page of [`AuditLog::page`] holds.
pub const MAX_PAGE: usize = 10_000;

/// Characters refused in free text that goes into the log (case, purpose, reason,
/// ticket): control characters, and the invisible and bidirectional-control ones that
/// would make an entry read differently from what it holds (zero-width spaces and
/// joiners, directional marks, embeddings, overrides and isolates, the byte-order mark,
/// soft hyphen, line and paragraph separators, tag characters, invisible fillers).
pub fn unsafe_text_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// Creates `path` mode 0600 if it does not exist yet, so that SQLite, which gives its
/// `-wal` and `-shm` files the mode of the database, creates them private too.
pub fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets a database and its `-wal`/`-shm` files to mode 0600 (those an older version
/// created readable by others).
pub fn restrict_sqlite_files(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        if let Ok(m) = std::fs::metadata(&p)
            && m.permissions().mode() & 0o077 != 0
        {
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
        }
    }
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const DOMAIN: &[u8] = b"ringfence-audit-v1\n";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("access log {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("access log {path}: {message}")]
    Io { path: PathBuf, message: String },
}

/// One entry to append; `seq`, `at` and the hashes are set by the log.
#[derive(Debug, Clone, Default)]
pub struct NewEntry {
    pub actor: String,
    pub role: String,
    pub action: String,
    pub camera: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub purpose: Option<String>,
    pub case: Option<String>,
    pub client: Option<String>,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub camera: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub purpose: Option<String>,
    pub case: Option<String>,
    pub client: Option<String>,
    pub outcome: String,
    pub prev_hash: String,
    pub hash: String,
}

/// An entry as the API shows it (no hashes; times in RFC 3339).
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub camera: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub purpose: Option<String>,
    pub case: Option<String>,
    pub client: Option<String>,
    pub outcome: String,
}

impl From<&Entry> for EntryView {
    fn from(e: &Entry) -> Self {
        EntryView {
            seq: e.seq,
            at: rfc3339(e.at_ms),
            actor: e.actor.clone(),
            role: e.role.clone(),
            action: e.action.clone(),
            camera: e.camera.clone(),
            from: e.from_ms.map(rfc3339),
            to: e.to_ms.map(rfc3339),
            purpose: e.purpose.clone(),
            case: e.case.clone(),
            client: e.client.clone(),
            outcome: e.outcome.clone(),
        }
    }
}

/// Filter of [`AuditLog::query`]. `from`/`to` select entries whose media range
/// overlaps `[from, to)`, or, for entries without a media range, whose time lies in it.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub camera: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub actor: Option<String>,
    /// Only footage actions ([`FOOTAGE_ACTIONS`]) that were allowed (subject-access
    /// report).
    pub footage_views_only: bool,
    /// Only entries before this sequence number (paging backwards).
    pub before_seq: Option<i64>,
    /// At most this many: the newest that match (all when `None`).
    pub limit: Option<usize>,
}

/// One page of [`AuditLog::page`]: entries in sequence order, and the cursor of the
/// next (older) page when there is one.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// `before_seq` for the next page; `None`: nothing older matches.
    pub next_before: Option<i64>,
}

fn put_str(h: &mut Sha256, tag: u8, v: Option<&str>) {
    h.update([tag]);
    match v {
        None => h.update([0]),
        Some(s) => {
            h.update([1]);
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
    }
}

fn put_int(h: &mut Sha256, tag: u8, v: Option<i64>) {
    h.update([tag]);
    match v {
        None => h.update([0]),
        Some(i) => {
            h.update([1]);
            h.update(i.to_be_bytes());
        }
    }
}

/// SHA-256 over the canonical encoding: a domain string, then each field tagged and
/// length-prefixed (absent ≠ empty), then the previous hash.
pub fn entry_hash(e: &Entry) -> String {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    put_int(&mut h, 1, Some(e.seq));
    put_int(&mut h, 2, Some(e.at_ms));
    put_str(&mut h, 3, Some(&e.actor));
    put_str(&mut h, 4, Some(&e.role));
    put_str(&mut h, 5, Some(&e.action));
    put_str(&mut h, 6, e.camera.as_deref());
    put_int(&mut h, 7, e.from_ms);
    put_int(&mut h, 8, e.to_ms);
    put_str(&mut h, 9, e.purpose.as_deref());
    put_str(&mut h, 10, e.case.as_deref());
    put_str(&mut h, 11, e.client.as_deref());
    put_str(&mut h, 12, Some(&e.outcome));
    put_str(&mut h, 13, Some(&e.prev_hash));
    hex::encode(h.finalize())
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    camera TEXT,
    from_ms INTEGER,
    to_ms INTEGER,
    purpose TEXT,
    case_ref TEXT,
    client TEXT,
    outcome TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_camera ON entries (camera, from_ms);
CREATE INDEX IF NOT EXISTS entries_by_actor ON entries (actor, seq);
";

const COLUMNS: &str = "seq, at_ms, actor, role, action, camera, from_ms, to_ms, purpose, case_ref, \
                       client, outcome, prev_hash, hash";

fn row_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        seq: r.get(0)?,
        at_ms: r.get(1)?,
        actor: r.get(2)?,
        role: r.get(3)?,
        action: r.get(4)?,
        camera: r.get(5)?,
        from_ms: r.get(6)?,
        to_ms: r.get(7)?,
        purpose: r.get(8)?,
        case: r.get(9)?,
        client: r.get(10)?,
        outcome: r.get(11)?,
        prev_hash: r.get(12)?,
        hash: r.get(13)?,
    })
}

/// Appends `entries` at `at_ms` in one transaction (all or none).
fn append_in(
    conn: &mut Connection,
    entries: &[NewEntry],
    at_ms: i64,
) -> rusqlite::Result<Vec<Entry>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (mut prev_seq, mut prev_hash) = last.unwrap_or((0, GENESIS.to_string()));
    let mut out = Vec::with_capacity(entries.len());
    for e in entries.iter().cloned() {
        let mut entry = Entry {
            seq: prev_seq + 1,
            at_ms,
            actor: e.actor,
            role: e.role,
            action: e.action,
            camera: e.camera,
            from_ms: e.from_ms,
            to_ms: e.to_ms,
            purpose: e.purpose,
            case: e.case,
            client: e.client,
            outcome: e.outcome,
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry_hash(&entry);
        tx.execute(
            &format!("INSERT INTO entries ({COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"),
            params![
                entry.seq,
                entry.at_ms,
                entry.actor,
                entry.role,
                entry.action,
                entry.camera,
                entry.from_ms,
                entry.to_ms,
                entry.purpose,
                entry.case,
                entry.client,
                entry.outcome,
                entry.prev_hash,
                entry.hash
            ],
        )?;
        prev_seq = entry.seq;
        prev_hash = entry.hash.clone();
        out.push(entry);
    }
    tx.commit()?;
    Ok(out)
}

pub struct AuditLog {
    conn: Mutex<Connection>,
    path: PathBuf,
    clock: Arc<dyn Clock>,
    busy: Duration,
}

/// A connection that can write the log: a file SQLite could open only for reading is
/// an error here, not a log that refuses every entry until a restart.
fn connect(path: &Path, busy: Duration) -> Result<Connection, AuditError> {
    let sql = |source| AuditError::Sql {
        path: path.to_path_buf(),
        source,
    };
    let read_only = || AuditError::Io {
        path: path.to_path_buf(),
        message: "the file is read-only; the access log must be writable".into(),
    };
    // The pragmas every database has (WAL, synchronous=FULL, secure_delete).
    let conn = recorder::sqlite::open(path, busy).map_err(|e| {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly) {
            read_only()
        } else {
            sql(e)
        }
    })?;
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(sql)? {
        return Err(read_only());
    }
    conn.execute_batch(SCHEMA).map_err(sql)?;
    Ok(conn)
}

/// Errors after which the connection is opened again: the file was read-only, moved,
/// or failed, and may be fine now.
fn reopen_after(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(ReadOnly | CannotOpen | SystemIoFailure | NotADatabase)
    )
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

fn head_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".head");
    PathBuf::from(s)
}

impl AuditLog {
    /// Opens (creating if needed) the log. `busy` bounds how long an append waits for
    /// a lock before it fails (and the footage request with it).
    pub fn open(path: &Path, clock: Arc<dyn Clock>, busy: Duration) -> Result<Self, AuditError> {
        create_private(path).map_err(|e| AuditError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let conn = connect(path, busy)?;
        restrict_sqlite_files(path);
        restrict_sqlite_files(&head_path(path));
        Ok(AuditLog {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            clock,
            busy,
        })
    }

    /// The chain's head: the last entry's sequence and hash (`None`: empty log).
    pub fn head(&self) -> Result<Option<(i64, String)>, AuditError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|s| self.sql(s))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, source: rusqlite::Error) -> AuditError {
        AuditError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends an entry and returns it once committed durably.
    pub fn append(&self, e: NewEntry) -> Result<Entry, AuditError> {
        let mut v = self.append_all(vec![e])?;
        v.pop().ok_or_else(|| AuditError::Io {
            path: self.path.clone(),
            message: "nothing appended".into(),
        })
    }

    /// Appends entries in one transaction (all or none), in order, and returns them
    /// once committed durably.
    pub fn append_all(&self, entries: Vec<NewEntry>) -> Result<Vec<Entry>, AuditError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let at_ms = self.clock.now_unix_ms();
        let out = match append_in(&mut conn, &entries, at_ms) {
            Err(e) if reopen_after(&e) => {
                // Once, with a fresh connection: a log that could not be written a
                // moment ago (read-only, replaced) works again without a restart.
                tracing::warn!(error = %e, "access log: opening it again");
                *conn = connect(&self.path, self.busy)?;
                append_in(&mut conn, &entries, at_ms)
            }
            r => r,
        }
        .map_err(|s| self.sql(s))?;
        // Best effort: the head only guards the tail; the entries are already durable.
        if let Some(last) = out.last() {
            write_head(&self.path, last.seq, &last.hash);
        }
        Ok(out)
    }

    /// At most `limit` entries after sequence `seq`, in order (what is forwarded to the
    /// log collector next).
    pub fn after(&self, seq: i64, limit: usize) -> Result<Vec<Entry>, AuditError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM entries WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))
            .map_err(|s| self.sql(s))?;
        let rows = stmt
            .query_map(params![seq, limit as i64], row_entry)
            .map_err(|s| self.sql(s))?;
        rows.collect::<Result<_, _>>().map_err(|s| self.sql(s))
    }

    /// The entries matching `f`, in sequence order: all of them, or with a `limit` the
    /// newest (before `f.before_seq`). See [`AuditLog::page`] to know whether more remain.
    pub fn query(&self, f: &Filter) -> Result<Vec<Entry>, AuditError> {
        self.page(f).map(|p| p.entries)
    }

    /// One page: the newest `f.limit` entries matching `f` (before `f.before_seq`), in
    /// sequence order, and the cursor of the next older page if any entry is left.
    pub fn page(&self, f: &Filter) -> Result<Page, AuditError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut sql = format!("SELECT {COLUMNS} FROM entries WHERE 1=1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(c) = &f.camera {
            args.push(c.clone().into());
            let n = args.len();
            // One camera per entry; entries of older versions may list several.
            sql += &format!(
                " AND (camera = ?{n} OR (instr(camera, ',') > 0 AND instr(',' || camera || ',', ',' || ?{n} || ',') > 0))"
            );
        }
        if let Some(a) = &f.actor {
            args.push(a.clone().into());
            sql += &format!(" AND actor = ?{}", args.len());
        }
        if let Some(from) = f.from_ms {
            args.push(from.into());
            let n = args.len();
            sql += &format!(
                " AND ((from_ms IS NOT NULL AND COALESCE(to_ms, from_ms) >= ?{n}) OR (from_ms IS NULL AND at_ms >= ?{n}))"
            );
        }
        if let Some(to) = f.to_ms {
            args.push(to.into());
            let n = args.len();
            sql += &format!(
                " AND ((from_ms IS NOT NULL AND from_ms < ?{n}) OR (from_ms IS NULL AND at_ms < ?{n}))"
            );
        }
        if let Some(b) = f.before_seq {
            args.push(b.into());
            sql += &format!(" AND seq < ?{}", args.len());
        }
        if f.footage_views_only {
            let list: Vec<String> = FOOTAGE_ACTIONS.iter().map(|a| format!("'{a}'")).collect();
            sql += &format!(
                " AND action IN ({}) AND outcome LIKE 'allowed%'",
                list.join(", ")
            );
        }
        match f.limit {
            // the newest `l`, one more to know whether older ones remain
            Some(l) => sql += &format!(" ORDER BY seq DESC LIMIT {}", l + 1),
            None => sql += " ORDER BY seq",
        }
        let mut stmt = conn.prepare(&sql).map_err(|s| self.sql(s))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), row_entry)
            .map_err(|s| self.sql(s))?;
        let mut entries = rows
            .map(|r| r.map_err(|s| self.sql(s)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut next_before = None;
        if let Some(l) = f.limit {
            if entries.len() > l {
                entries.truncate(l);
                next_before = entries.last().map(|e| e.seq);
            }
            entries.reverse();
        }
        Ok(Page {
            entries,
            next_before,
        })
    }
}

/// Writes the head file ("seq hash"), mode 0600, replacing the old one atomically.
fn write_head(db: &Path, seq: i64, hash: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let head = head_path(db);
    let tmp = head.with_extension("head.tmp");
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(format!("{seq} {hash}\n").as_bytes()));
    if written.is_ok() {
        let _ = std::fs::rename(&tmp, &head);
    }
}

/// What `audit verify` found wrong: the first bad entry and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access log broken at entry {seq}: {why}")]
pub struct ChainBroken {
    pub seq: i64,
    pub why: String,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Broken(#[from] ChainBroken),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// [`verify`], then checks the chain against the newest checkpoint the recorder signed
/// (with the device key the viewer-api cannot read): the log must reach the
/// checkpoint's entry and that entry must have the checkpoint's hash. This is what
/// catches a log cut at its end, or rewritten and re-chained, together with its head
/// file. A checkpoint whose signature does not verify is an error.
pub fn verify_anchored(
    path: &Path,
    checkpoint: &recorder::checkpoint::SignedCheckpoint,
    public_key: &[u8; 32],
) -> Result<i64, VerifyError> {
    if !checkpoint.verify(public_key) {
        return Err(ChainBroken {
            seq: checkpoint.checkpoint.seq,
            why: "the checkpoint's signature is not the device's (forged checkpoint)".into(),
        }
        .into());
    }
    let n = verify(path)?;
    let cp = &checkpoint.checkpoint;
    if cp.seq > n {
        return Err(ChainBroken {
            seq: n + 1,
            why: format!(
                "the log ends at entry {n} but the recorder signed a checkpoint of entry {} at {}: entries {}..{} were removed from the end",
                cp.seq,
                crate::clock::rfc3339(cp.time_unix_ms),
                n + 1,
                cp.seq
            ),
        }
        .into());
    }
    if cp.seq > 0 {
        let conn =
            recorder::sqlite::open_read_only(path, Duration::from_secs(5)).map_err(|source| {
                AuditError::Sql {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        let at: Option<String> = conn
            .query_row("SELECT hash FROM entries WHERE seq = ?1", [cp.seq], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|source| AuditError::Sql {
                path: path.to_path_buf(),
                source,
            })?;
        if !at.is_some_and(|h| h.eq_ignore_ascii_case(&cp.hash)) {
            return Err(ChainBroken {
                seq: cp.seq,
                why: format!(
                    "differs from the recorder's signed checkpoint of {}: the log up to it was rewritten",
                    crate::clock::rfc3339(cp.time_unix_ms)
                ),
            }
            .into());
        }
    }
    Ok(n)
}

/// What the recorder served (its journal, `recorder::service::Served`) that the access
/// log at `path` does not account for: a row naming an entry the log does not have, or
/// with another hash. Each mismatch as a sentence.
pub fn reconcile(
    path: &Path,
    served: &[recorder::service::Served],
) -> Result<Vec<String>, AuditError> {
    let sql = |source| AuditError::Sql {
        path: path.to_path_buf(),
        source,
    };
    let conn = recorder::sqlite::open_read_only(path, Duration::from_secs(5)).map_err(sql)?;
    let mut stmt = conn
        .prepare("SELECT hash FROM entries WHERE seq = ?1")
        .map_err(sql)?;
    let mut out = Vec::new();
    for s in served {
        let hash: Option<String> = stmt
            .query_row([s.entry.seq], |r| r.get(0))
            .optional()
            .map_err(sql)?;
        if !hash.is_some_and(|h| h.eq_ignore_ascii_case(&s.entry.hash)) {
            out.push(format!(
                "the recorder served {} ({}{}) at {} for access-log entry {}, which the log does not have",
                s.op,
                s.camera.as_deref().unwrap_or("-"),
                s.segment
                    .as_deref()
                    .map(|g| format!(", segment {g}, {} bytes", s.bytes))
                    .unwrap_or_default(),
                crate::clock::rfc3339(s.at_unix_ms),
                s.entry.seq
            ));
        }
    }
    Ok(out)
}

/// Walks the whole chain of the log at `path` (read-only). Ok: the number of entries.
pub fn verify(path: &Path) -> Result<i64, VerifyError> {
    let sql = |source| AuditError::Sql {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        return Err(AuditError::Io {
            path: path.to_path_buf(),
            message: "does not exist".into(),
        }
        .into());
    }
    let conn = recorder::sqlite::open_read_only(path, Duration::from_secs(5)).map_err(sql)?;
    let mut stmt = conn
        .prepare(&format!("SELECT {COLUMNS} FROM entries ORDER BY seq"))
        .map_err(sql)?;
    let rows = stmt.query_map([], row_entry).map_err(sql)?;
    let mut prev_seq = 0i64;
    let mut prev_hash = GENESIS.to_string();
    for row in rows {
        let e = row.map_err(sql)?;
        let expected = prev_seq + 1;
        if e.seq != expected {
            return Err(ChainBroken {
                seq: expected,
                why: format!(
                    "entries {expected}..{} are missing (removed), next found is {}",
                    e.seq - 1,
                    e.seq
                ),
            }
            .into());
        }
        if e.prev_hash != prev_hash {
            return Err(ChainBroken {
                seq: e.seq,
                why: "does not link to the entry before it (inserted, removed or replaced)".into(),
            }
            .into());
        }
        if entry_hash(&e) != e.hash {
            return Err(ChainBroken {
                seq: e.seq,
                why: "its content does not match its hash (changed)".into(),
            }
            .into());
        }
        prev_seq = e.seq;
        prev_hash = e.hash;
    }
    if let Ok(text) = std::fs::read_to_string(head_path(path)) {
        let mut it = text.split_whitespace();
        if let (Some(seq), Some(hash)) = (it.next().and_then(|s| s.parse::<i64>().ok()), it.next())
        {
            if seq > prev_seq {
                return Err(ChainBroken {
                    seq: prev_seq + 1,
                    why: format!(
                        "the log ends at entry {prev_seq} but entry {seq} was written (entries removed from the end)"
                    ),
                }
                .into());
            }
            let at: Option<String> = conn
                .query_row("SELECT hash FROM entries WHERE seq = ?1", [seq], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql)?;
            if at.as_deref() != Some(hash) {
                return Err(ChainBroken {
                    seq,
                    why: "differs from the entry recorded in the head file (rewritten)".into(),
                }
                .into());
            }
        }
    }
    Ok(prev_seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn log(dir: &Path) -> (AuditLog, PathBuf) {
        let path = dir.join("audit.sqlite");
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        (
            AuditLog::open(&path, clock, Duration::from_millis(200)).unwrap(),
            path,
        )
    }

    fn entry(i: i64) -> NewEntry {
        NewEntry {
            actor: format!("user{i}"),
            role: "police".into(),
            action: "playback".into(),
            camera: Some("gate".into()),
            from_ms: Some(i * 1000),
            to_ms: Some(i * 1000 + 500),
            purpose: None,
            case: Some("CASE-1".into()),
            client: Some("127.0.0.1".into()),
            outcome: "allowed".into(),
        }
    }

    fn filled() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log(dir.path());
        for i in 1..=5 {
            assert_eq!(log.append(entry(i)).unwrap().seq, i);
        }
        drop(log);
        (dir, path)
    }

    fn exec(path: &Path, sql: &str) {
        Connection::open(path).unwrap().execute_batch(sql).unwrap();
    }

    #[test]
    fn intact_chain_verifies() {
        let (_d, path) = filled();
        assert_eq!(verify(&path).unwrap(), 5);
    }

    #[test]
    fn changed_entry_is_named() {
        let (_d, path) = filled();
        exec(
            &path,
            "UPDATE entries SET purpose = 'nothing to see' WHERE seq = 3",
        );
        match verify(&path) {
            Err(VerifyError::Broken(b)) => assert_eq!(b.seq, 3, "{b}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn removed_entry_is_named() {
        let (_d, path) = filled();
        exec(&path, "DELETE FROM entries WHERE seq = 2");
        match verify(&path) {
            Err(VerifyError::Broken(b)) => assert_eq!(b.seq, 2, "{b}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn removed_tail_is_caught_by_the_head() {
        let (_d, path) = filled();
        exec(&path, "DELETE FROM entries WHERE seq >= 4");
        match verify(&path) {
            Err(VerifyError::Broken(b)) => assert_eq!(b.seq, 4, "{b}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inserted_entry_is_named() {
        let (_d, path) = filled();
        // Shift 3..5 up and put a forged entry at 3, hashed correctly but unchained.
        exec(
            &path,
            "UPDATE entries SET seq = seq + 10 WHERE seq >= 3;
             UPDATE entries SET seq = seq - 9 WHERE seq >= 13;
             INSERT INTO entries (seq, at_ms, actor, role, action, outcome, prev_hash, hash)
               VALUES (3, 0, 'ghost', 'it', 'playback', 'allowed', 'x', 'y');",
        );
        match verify(&path) {
            Err(VerifyError::Broken(b)) => assert_eq!(b.seq, 3, "{b}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn query_filters() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = log(dir.path());
        for i in 1..=5 {
            log.append(entry(i)).unwrap();
        }
        log.append(NewEntry {
            actor: "user1".into(),
            role: "police".into(),
            action: "login".into(),
            outcome: "allowed".into(),
            ..Default::default()
        })
        .unwrap();
        let by_actor = log
            .query(&Filter {
                actor: Some("user1".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(by_actor.len(), 2);
        let covering = log
            .query(&Filter {
                camera: Some("gate".into()),
                from_ms: Some(2200),
                to_ms: Some(3100),
                footage_views_only: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            covering.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[test]
    fn append_fails_when_the_file_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log(dir.path());
        log.append(entry(1)).unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        assert!(log.append(entry(2)).is_err());
        other.execute_batch("ROLLBACK").unwrap();
        assert_eq!(log.append(entry(2)).unwrap().seq, 2);
    }

    /// A lower item of finding 11: the log, its -wal/-shm and its head are 0600, also
    /// when an older version left them readable.
    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log(dir.path());
        log.append(entry(1)).unwrap();
        let files = [
            "audit.sqlite",
            "audit.sqlite-wal",
            "audit.sqlite-shm",
            "audit.sqlite.head",
        ];
        let mode = |f: &str| {
            std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        for f in files {
            assert_eq!(mode(f), 0o600, "{f}");
        }
        for f in files {
            std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        let again = AuditLog::open(
            &path,
            Arc::new(ManualClock::new(0)),
            Duration::from_millis(200),
        )
        .unwrap();
        again.append(entry(2)).unwrap();
        for f in files {
            assert_eq!(mode(f), 0o600, "{f}");
        }
    }

    /// Finding 8: pages of the newest entries, oldest first, with a cursor while more
    /// remain.
    #[test]
    fn pages_walk_back_with_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = log(dir.path());
        for i in 1..=7 {
            log.append(entry(i)).unwrap();
        }
        let mut f = Filter {
            limit: Some(3),
            ..Default::default()
        };
        let mut got = Vec::new();
        loop {
            let p = log.page(&f).unwrap();
            let seqs: Vec<i64> = p.entries.iter().map(|e| e.seq).collect();
            got.push(seqs);
            match p.next_before {
                Some(b) => f.before_seq = Some(b),
                None => break,
            }
        }
        assert_eq!(got, vec![vec![5, 6, 7], vec![2, 3, 4], vec![1]]);
        // exactly a page's worth: no cursor
        f.before_seq = Some(4);
        assert_eq!(log.page(&f).unwrap().next_before, None);
    }

    /// Finding 6: every footage action is in the subject-access report, found by each
    /// of its cameras (entries of older versions list several).
    #[test]
    fn subject_access_finds_every_footage_action_by_camera() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = log(dir.path());
        for (action, camera) in [
            ("playback", "gate"),
            ("live", "gate"),
            ("live.end", "gate"),
            ("export.request", "gate"),
            ("export.download", "gate"),
            ("export.download", "hall,gate"),
            ("export.download", "gatehouse"),
            ("grant.create", "gate"),
            ("login", "gate"),
        ] {
            log.append(NewEntry {
                action: action.into(),
                camera: Some(camera.into()),
                ..entry(1)
            })
            .unwrap();
        }
        let report = log
            .query(&Filter {
                camera: Some("gate".into()),
                footage_views_only: true,
                ..Default::default()
            })
            .unwrap();
        let got: Vec<(&str, &str)> = report
            .iter()
            .map(|e| (e.action.as_str(), e.camera.as_deref().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("playback", "gate"),
                ("live", "gate"),
                ("live.end", "gate"),
                ("export.request", "gate"),
                ("export.download", "gate"),
                ("export.download", "hall,gate"),
            ]
        );
    }

    #[test]
    fn a_log_that_could_only_be_read_is_written_again_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log(dir.path());
        log.append(entry(1)).unwrap();
        // As when the file was read-only when the connection was made (SQLite then
        // falls back to reading): every append failed until the process restarted.
        *log.conn.lock().unwrap() =
            Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        assert_eq!(log.append(entry(2)).unwrap().seq, 2);
        assert_eq!(log.append(entry(3)).unwrap().seq, 3);
        assert_eq!(verify(&path).unwrap(), 3);
    }

    #[test]
    fn invisible_and_bidi_characters_are_unsafe() {
        for c in [
            '\u{0007}',
            '\u{00AD}',
            '\u{061C}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{2028}',
            '\u{2029}',
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2060}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{FEFF}',
            '\u{E0001}',
            '\u{E007F}',
        ] {
            assert!(unsafe_text_char(c), "U+{:04X}", c as u32);
        }
        for c in "CASE-2026/17 Dépôt n°3 – Ω 東京 ".chars() {
            assert!(!unsafe_text_char(c), "{c:?}");
        }
    }
}

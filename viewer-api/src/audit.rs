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

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::clock::{Clock, rfc3339};

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
    /// Only footage actions that were allowed (subject-access report).
    pub footage_views_only: bool,
    pub limit: Option<usize>,
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

pub struct AuditLog {
    conn: Mutex<Connection>,
    path: PathBuf,
    clock: Arc<dyn Clock>,
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
        let sql = |source| AuditError::Sql {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(busy).map_err(sql)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(AuditLog {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            clock,
        })
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
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|s| self.sql(s))?;
        let last: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|s| self.sql(s))?;
        let (prev_seq, prev_hash) = last.unwrap_or((0, GENESIS.to_string()));
        let mut entry = Entry {
            seq: prev_seq + 1,
            at_ms: self.clock.now_unix_ms(),
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
        )
        .map_err(|s| self.sql(s))?;
        tx.commit().map_err(|s| self.sql(s))?;
        // Best effort: the head only guards the tail; the entry is already durable.
        let head = head_path(&self.path);
        let tmp = head.with_extension("head.tmp");
        if std::fs::write(&tmp, format!("{} {}\n", entry.seq, entry.hash)).is_ok() {
            let _ = std::fs::rename(&tmp, &head);
        }
        Ok(entry)
    }

    pub fn query(&self, f: &Filter) -> Result<Vec<Entry>, AuditError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut sql = format!("SELECT {COLUMNS} FROM entries WHERE 1=1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(c) = &f.camera {
            args.push(c.clone().into());
            sql += &format!(" AND camera = ?{}", args.len());
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
        if f.footage_views_only {
            sql += " AND action IN ('live', 'live.end', 'playback', 'export') AND outcome LIKE 'allowed%'";
        }
        sql += " ORDER BY seq";
        if let Some(l) = f.limit {
            sql += &format!(" LIMIT {l}");
        }
        let mut stmt = conn.prepare(&sql).map_err(|s| self.sql(s))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), row_entry)
            .map_err(|s| self.sql(s))?;
        rows.map(|r| r.map_err(|s| self.sql(s))).collect()
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
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sql)?;
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
}

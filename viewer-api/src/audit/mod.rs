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

mod log;
mod verify;

pub use log::*;
pub use verify::*;

#[cfg(test)]
mod tests;

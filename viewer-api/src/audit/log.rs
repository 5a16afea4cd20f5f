//! The log itself: appending entries durably and reading them back.

use super::*;

/// Appends `entries` at `at_ms` in one transaction (all or none).
pub(super) fn append_in(
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
    pub(super) conn: Mutex<Connection>,
    path: PathBuf,
    clock: Arc<dyn Clock>,
    busy: Duration,
}

/// A connection that can write the log: a file SQLite could open only for reading is
/// an error here, not a log that refuses every entry until a restart.
pub(super) fn connect(path: &Path, busy: Duration) -> Result<Connection, AuditError> {
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
pub(super) fn reopen_after(e: &rusqlite::Error) -> bool {
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

pub(super) fn head_path(db: &Path) -> PathBuf {
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
pub(super) fn write_head(db: &Path, seq: i64, hash: &str) {
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

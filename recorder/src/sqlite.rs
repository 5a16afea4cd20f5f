//! How every SQLite database of Ringfence is opened: the catalog, the served journal,
//! and the viewer-api's users, access log and exports.
//!
//! One place, so that the settings the guarantees rest on cannot drift between copies:
//! WAL (readers beside the one writer), `synchronous=FULL` (a commit survives a power
//! cut: the crash order of the catalog and "logged before served" both rely on it),
//! `secure_delete` (a deleted row's bytes, a segment's wrapped key among them, are
//! overwritten, which is what makes deletion cryptographic erasure), and foreign keys.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Applied to every connection that writes.
pub const PRAGMAS: &str = "PRAGMA journal_mode=WAL;
     PRAGMA synchronous=FULL;
     PRAGMA secure_delete=ON;
     PRAGMA foreign_keys=ON;";

/// Opens (creating if needed) a database for reading and writing, waiting up to `busy`
/// for another connection's lock.
pub fn open(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    conn.execute_batch(PRAGMAS)?;
    Ok(conn)
}

/// Opens an existing database for reading only.
pub fn open_read_only(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_opened_here_has_the_settings_the_guarantees_need() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite");
        let c = open(&path, Duration::from_secs(1)).unwrap();
        let get = |p: &str| -> String {
            c.query_row(&format!("PRAGMA {p}"), [], |r| {
                r.get::<_, rusqlite::types::Value>(0)
            })
            .map(|v| match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })
            .unwrap()
        };
        assert_eq!(get("journal_mode"), "wal");
        assert_eq!(get("synchronous"), "2"); // FULL
        assert_eq!(get("secure_delete"), "1");
        assert_eq!(get("foreign_keys"), "1");
        drop(c);
        let r = open_read_only(&path, Duration::from_secs(1)).unwrap();
        assert!(r.execute_batch("CREATE TABLE t (x)").is_err());
    }
}

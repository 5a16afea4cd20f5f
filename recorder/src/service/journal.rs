//! The recorder's own records of what the viewer-api obtained through the service:
//! the journal of what was served (`served.sqlite`) and the signed checkpoints of the
//! access log (`checkpoints.jsonl`). Both live in the store, which only the recorder's
//! user can write.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::wire::{ErrorKind, ServiceError};
use crate::checkpoint::{Checkpoint, LogRef, SignedCheckpoint};

pub const SERVED_FILE: &str = "served.sqlite";
pub const CHECKPOINTS_FILE: &str = "checkpoints.jsonl";

/// One thing the service did for an access-log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    pub id: i64,
    pub at_unix_ms: i64,
    pub entry: LogRef,
    /// `read` (a segment's footage), `hold.add`, `hold.release`, `sign`.
    pub op: String,
    pub camera: Option<String>,
    pub segment: Option<String>,
    /// e.g. the hold's id, the manifest's SHA-256.
    pub detail: Option<String>,
    /// Frame bytes sent (reads).
    pub bytes: u64,
}

pub struct ServedJournal {
    conn: Connection,
}

fn failed(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::new(ErrorKind::Failed, format!("served journal: {e}"))
}

impl ServedJournal {
    pub fn open(store: &Path) -> rusqlite::Result<ServedJournal> {
        let conn = crate::sqlite::open(&store.join(SERVED_FILE), Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS served (
                id INTEGER PRIMARY KEY,
                at_unix_ms INTEGER NOT NULL,
                entry_seq INTEGER NOT NULL,
                entry_hash TEXT NOT NULL,
                op TEXT NOT NULL,
                camera TEXT,
                segment TEXT,
                detail TEXT,
                bytes INTEGER NOT NULL DEFAULT 0
            );
            CREATE INDEX IF NOT EXISTS served_entry ON served(entry_seq);",
        )?;
        Ok(ServedJournal { conn })
    }

    /// Records something done for `entry`; its row id.
    pub fn record(
        &self,
        at_unix_ms: i64,
        entry: &LogRef,
        op: &str,
        camera: Option<&str>,
        segment: Option<&str>,
        detail: Option<&str>,
    ) -> Result<i64, ServiceError> {
        self.conn
            .execute(
                "INSERT INTO served (at_unix_ms, entry_seq, entry_hash, op, camera, segment, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![at_unix_ms, entry.seq, entry.hash, op, camera, segment, detail],
            )
            .map_err(failed)?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn add_bytes(&self, id: i64, bytes: u64) -> Result<(), ServiceError> {
        self.conn
            .execute(
                "UPDATE served SET bytes = bytes + ?2 WHERE id = ?1",
                params![id, bytes as i64],
            )
            .map_err(failed)?;
        Ok(())
    }

    /// Whether `segment` was read for `entry`.
    pub fn was_read(&self, entry: &LogRef, segment: &str) -> Result<bool, ServiceError> {
        self.conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM served WHERE entry_seq = ?1 AND entry_hash = ?2
                   AND op = 'read' AND segment = ?3)",
                params![entry.seq, entry.hash, segment],
                |r| r.get(0),
            )
            .map_err(failed)
    }

    pub fn page(&self, after_id: i64, limit: usize) -> Result<Vec<Served>, ServiceError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, at_unix_ms, entry_seq, entry_hash, op, camera, segment, detail, bytes
                 FROM served WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(failed)?;
        let rows = stmt
            .query_map(params![after_id, limit.min(10_000) as i64], |r| {
                Ok(Served {
                    id: r.get(0)?,
                    at_unix_ms: r.get(1)?,
                    entry: LogRef {
                        seq: r.get(2)?,
                        hash: r.get(3)?,
                    },
                    op: r.get(4)?,
                    camera: r.get(5)?,
                    segment: r.get(6)?,
                    detail: r.get(7)?,
                    bytes: r.get::<_, i64>(8)? as u64,
                })
            })
            .map_err(failed)?;
        rows.collect::<Result<_, _>>().map_err(failed)
    }
}

/// The signed checkpoints, one JSON object a line, appended and synced.
pub struct Checkpoints {
    path: PathBuf,
    latest: Option<SignedCheckpoint>,
}

impl Checkpoints {
    /// Opens (or starts) the file under `store`; the newest valid line is the latest.
    pub fn open(store: &Path) -> std::io::Result<Checkpoints> {
        let path = store.join(CHECKPOINTS_FILE);
        let latest = read_latest(&path)?;
        Ok(Checkpoints { path, latest })
    }

    pub fn latest(&self) -> Option<&SignedCheckpoint> {
        self.latest.as_ref()
    }

    /// Signs a checkpoint of `head` at `now`, unless the log went back: a sequence
    /// below the latest checkpoint's, or the same sequence with another hash.
    pub fn sign(
        &mut self,
        head: &LogRef,
        now_unix_ms: i64,
        signer: &dyn hardware::signing::DeviceSigner,
    ) -> Result<SignedCheckpoint, ServiceError> {
        let refused = |m: String| ServiceError::new(ErrorKind::Refused, m);
        if head.seq < 0 || !head.has_sha256_hash() {
            return Err(ServiceError::new(
                ErrorKind::Invalid,
                "a checkpoint needs a sequence ≥ 0 and a SHA-256 (hex)",
            ));
        }
        if let Some(l) = &self.latest {
            let l = &l.checkpoint;
            if head.seq < l.seq {
                return Err(refused(format!(
                    "the access log went back: its head is at {} but entry {} was checkpointed",
                    head.seq, l.seq
                )));
            }
            if head.seq == l.seq && !head.hash.eq_ignore_ascii_case(&l.hash) {
                return Err(refused(format!(
                    "entry {} of the access log changed since it was checkpointed",
                    head.seq
                )));
            }
        }
        let signed = Checkpoint {
            seq: head.seq,
            hash: head.hash.to_ascii_lowercase(),
            time_unix_ms: now_unix_ms,
        }
        .sign(signer);
        let mut line = serde_json::to_vec(&signed).map_err(failed)?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| failed(format!("{}: {e}", self.path.display())))?;
        f.write_all(&line)
            .and_then(|()| f.sync_data())
            .map_err(|e| failed(format!("{}: {e}", self.path.display())))?;
        self.latest = Some(signed.clone());
        Ok(signed)
    }
}

/// The checkpoints as forwarded to the log collector (`crate::syslog`): the cursor is
/// the byte offset in `checkpoints.jsonl` after the last line sent, so each poll reads
/// only what was appended.
pub struct CheckpointFeed {
    path: PathBuf,
    public_key: [u8; 32],
}

impl CheckpointFeed {
    pub fn new(store: &Path, public_key: [u8; 32]) -> CheckpointFeed {
        CheckpointFeed {
            path: store.join(CHECKPOINTS_FILE),
            public_key,
        }
    }
}

impl crate::syslog::Feed for CheckpointFeed {
    fn after(
        &mut self,
        cursor: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<(i64, crate::syslog::Message)>> {
        use std::io::{Seek, SeekFrom};
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", self.path.display())),
        };
        let len = f.metadata()?.len() as i64;
        // A file shorter than the cursor was replaced: send it again from the start.
        let start = if cursor > len { 0 } else { cursor.max(0) };
        f.seek(SeekFrom::Start(start as u64))?;
        let mut out = Vec::new();
        let mut offset = start;
        let mut reader = BufReader::new(f);
        let mut line = String::new();
        while out.len() < limit {
            line.clear();
            let n = reader.read_line(&mut line)?;
            // The end, or a line still being written: wait for its newline.
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            offset += n as i64;
            // A line cut by a crash is not a checkpoint; it is skipped.
            if let Ok(c) = serde_json::from_str::<SignedCheckpoint>(line.trim_end()) {
                out.push((
                    offset,
                    crate::syslog::checkpoint_message(&c, &self.public_key),
                ));
            }
        }
        Ok(out)
    }
}

/// The last line of `path` that parses as a signed checkpoint (a line cut by a crash
/// is skipped).
pub fn read_latest(path: &Path) -> std::io::Result<Option<SignedCheckpoint>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut latest = None;
    for line in BufReader::new(f).lines() {
        let line = line?;
        if let Ok(c) = serde_json::from_str::<SignedCheckpoint>(&line) {
            latest = Some(c);
        }
    }
    Ok(latest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hardware::signing::MemorySigner;

    fn head(seq: i64, b: u8) -> LogRef {
        LogRef {
            seq,
            hash: hex::encode([b; 32]),
        }
    }

    #[test]
    fn checkpoints_refuse_a_log_that_went_back_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let signer = MemorySigner::from_seed([3; 32]);
        let pk = hardware::signing::DeviceSigner::public_key(&signer);
        let mut c = Checkpoints::open(dir.path()).unwrap();
        assert!(c.latest().is_none());
        let s = c.sign(&head(10, 1), 1_000, &signer).unwrap();
        assert!(s.verify(&pk));
        assert_eq!(s.checkpoint.seq, 10);
        // The same head again (a quiet minute) is fine; a shorter log or another hash
        // for a checkpointed entry is not.
        c.sign(&head(10, 1), 61_000, &signer).unwrap();
        let e = c.sign(&head(9, 1), 62_000, &signer).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Refused);
        assert!(e.message.contains("went back"), "{e}");
        let e = c.sign(&head(10, 2), 62_000, &signer).unwrap_err();
        assert!(e.message.contains("changed"), "{e}");
        c.sign(&head(12, 2), 63_000, &signer).unwrap();
        assert!(c.sign(&head(-1, 2), 63_000, &signer).is_err());
        assert!(
            c.sign(
                &LogRef {
                    seq: 13,
                    hash: "zz".into()
                },
                63_000,
                &signer
            )
            .is_err()
        );
        // A restart reads the newest, and a torn last line is skipped.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(CHECKPOINTS_FILE))
            .unwrap();
        f.write_all(b"{\"seq\":99,\"ha").unwrap();
        let c = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(c.latest().unwrap().checkpoint.seq, 12);
        assert_eq!(c.latest().unwrap().checkpoint.time_unix_ms, 63_000);
    }

    #[test]
    fn the_served_journal_pages_and_finds_reads_by_entry() {
        let dir = tempfile::tempdir().unwrap();
        let j = ServedJournal::open(dir.path()).unwrap();
        let a = head(5, 1);
        let id = j
            .record(1, &a, "read", Some("gate"), Some("seg1"), None)
            .unwrap();
        j.add_bytes(id, 1000).unwrap();
        j.add_bytes(id, 24).unwrap();
        j.record(2, &head(6, 2), "hold.add", None, None, Some("3"))
            .unwrap();
        assert!(j.was_read(&a, "seg1").unwrap());
        assert!(!j.was_read(&a, "seg2").unwrap());
        assert!(!j.was_read(&head(5, 9), "seg1").unwrap());
        let all = j.page(0, 10).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].bytes, 1024);
        assert_eq!(j.page(all[0].id, 10).unwrap().len(), 1);
    }
}

//! Checking the chain: against itself, against the recorder's newest signed checkpoint,
//! and against what the recorder says it served.

use super::*;

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

//! The case-open switch's notices into the access log.
//!
//! The recorder watches the switch and journals every notice (opened, found open,
//! closed, input failed, acknowledged) with a sequence number; it cannot write the
//! access log (the privilege split). This task copies each notice into the access log,
//! in order, as an entry of the device itself (actor `device`, role `system`), so that
//! whoever reads the log learns that the box was opened, and when, beside who looked at
//! footage. Acknowledgements are logged by the IT user's own request, not again here.
//!
//! Delivery is at least once: the cursor (`tamper.cursor` in the state directory) is
//! written after the entries are committed, so a crash in between repeats them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hardware::tamper::TamperNotice;

use crate::audit::{AuditLog, NewEntry};
use crate::clock::rfc3339;
use crate::recorder_side::RecorderSide;

/// How often the recorder's journal is read.
pub const POLL: Duration = Duration::from_secs(2);
/// The cursor's file in the state directory.
pub const CURSOR_FILE: &str = "tamper.cursor";

/// The access-log entry of a notice; `None` for those logged elsewhere.
pub fn entry(notice: &TamperNotice) -> Option<NewEntry> {
    let (action, outcome) = match notice {
        TamperNotice::Opened { at_unix_ms } => (
            "tamper.opened",
            format!("alarm: the case was opened at {}", rfc3339(*at_unix_ms)),
        ),
        TamperNotice::FoundOpen { at_unix_ms } => (
            "tamper.found-open",
            format!(
                "alarm: the case was found open at {} (opened while nothing watched)",
                rfc3339(*at_unix_ms)
            ),
        ),
        TamperNotice::Closed { at_unix_ms } => (
            "tamper.closed",
            format!("the case was closed at {}", rfc3339(*at_unix_ms)),
        ),
        TamperNotice::InputFailed { at_unix_ms, reason } => (
            "tamper.input-failed",
            format!(
                "the case switch cannot be read since {}: {reason}",
                rfc3339(*at_unix_ms)
            ),
        ),
        TamperNotice::Acknowledged(_) => return None,
    };
    Some(NewEntry {
        actor: "device".into(),
        role: "system".into(),
        action: action.into(),
        outcome,
        ..Default::default()
    })
}

fn read_cursor(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn write_cursor(path: &Path, seq: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{seq}\n"))?;
    std::fs::rename(&tmp, path)
}

/// Copies what is new once; returns how many notices were read.
pub fn copy_once(
    recorder: &dyn RecorderSide,
    audit: &AuditLog,
    cursor: &Path,
) -> Result<usize, String> {
    let after = read_cursor(cursor);
    let records = recorder
        .tamper_events(after, 100)
        .map_err(|e| e.to_string())?;
    let Some(last) = records.last().map(|r| r.seq) else {
        return Ok(0);
    };
    let entries: Vec<NewEntry> = records.iter().filter_map(|r| entry(&r.notice)).collect();
    if !entries.is_empty() {
        audit.append_all(entries).map_err(|e| e.to_string())?;
    }
    write_cursor(cursor, last).map_err(|e| format!("{}: {e}", cursor.display()))?;
    Ok(records.len())
}

/// Runs [`copy_once`] every [`POLL`] until the process ends.
pub async fn copy_forever(
    recorder: Arc<dyn RecorderSide>,
    audit: Arc<AuditLog>,
    state_dir: PathBuf,
) {
    let cursor = state_dir.join(CURSOR_FILE);
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        let (r, a, c) = (recorder.clone(), audit.clone(), cursor.clone());
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || copy_once(&*r, &a, &c)).await {
            tracing::warn!(error = %e, "tamper notices not copied to the access log yet");
        }
    }
}

//! `recorder check`: proves the store is whole by decrypting and authenticating every
//! chunk of every segment and matching files with the catalog. Read-only, so it can
//! run beside a recording recorder; open segments are then checked up to what has
//! been written, and are only a problem when no recorder is running to finish them.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use hardware::Kek;
use serde::Serialize;

use crate::catalog::{self, Catalog};
use crate::clock::rfc3339;
use crate::recovery::list_segment_files;
use crate::segment::{self, SegmentError};

#[derive(Debug, Serialize, Default)]
pub struct CheckReport {
    pub cameras: Vec<CameraReport>,
    pub problems: Vec<Problem>,
    pub recovered_segments: u64,
    /// Retention's last stored state (alarms: held footage over capacity; clock
    /// refusals; holds in force). Absent before retention has run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<crate::retention::RetentionState>,
}

#[derive(Debug, Serialize, Default)]
pub struct CameraReport {
    pub id: String,
    pub codec: Option<String>,
    pub segments: u64,
    pub frames: u64,
    pub key_frames: u64,
    pub bytes: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    pub gaps: Vec<GapReport>,
}

#[derive(Debug, Serialize)]
pub struct GapReport {
    pub from: String,
    pub to: Option<String>,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Problem {
    pub segment: String,
    pub problem: String,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Why `check` could not look at the store at all (what it finds wrong inside is a
/// [`Problem`] in the report, not an error).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot list segments: {0}")]
    List(std::io::Error),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

pub fn check(store: &Path, kek: &Kek, configured: &[String]) -> Result<CheckReport, CheckError> {
    let running = crate::store::recorder_running(store);
    // Files first, then rows: a row is always inserted before its file exists.
    let files = list_segment_files(store).map_err(CheckError::List)?;
    let cat = Catalog::open_read_only(store)?;
    let rows = cat.segments(None)?;
    let mut report = CheckReport::default();
    let mut cams: BTreeMap<String, CameraReport> = BTreeMap::new();
    let mut ids: Vec<String> = cat.camera_ids()?;
    ids.extend(configured.iter().cloned());
    for id in ids {
        cams.entry(id.clone()).or_insert_with(|| CameraReport {
            id,
            ..Default::default()
        });
    }
    let mut claimed = HashSet::new();
    for row in &rows {
        let path = catalog::segment_path(store, &row.camera, row.id);
        claimed.insert(path.clone());
        let seg = row.id.to_string();
        let mut problem = |p: String| {
            report.problems.push(Problem {
                segment: seg.clone(),
                problem: p,
            })
        };
        if row.recovered {
            report.recovered_segments += 1;
        }
        let cam = cams
            .entry(row.camera.clone())
            .or_insert_with(|| CameraReport {
                id: row.camera.clone(),
                ..Default::default()
            });
        if !path.exists() {
            // Retention may have deleted it since we read the rows.
            if row.open && running {
                continue;
            }
            let still = Catalog::open_read_only(store)
                .and_then(|c| c.segment(row.id))
                .map(|r| r.is_some())
                .unwrap_or(true);
            if still {
                problem(format!("file {} is missing", path.display()));
            }
            continue;
        }
        let key = match segment::unwrap_key(kek.as_bytes(), row.id, &row.wrapped_key) {
            Ok(k) => k,
            Err(_) => {
                problem("its wrapped key does not open with this store's key".into());
                continue;
            }
        };
        let rep = match segment::verify(&path, row.id, &row.camera, &key) {
            Ok(r) => r,
            Err(e) => {
                problem(format!("unreadable: {e}"));
                continue;
            }
        };
        if let Some(err) = &rep.error {
            let cut_while_open = row.open && matches!(err, SegmentError::Cut { .. });
            if !(cut_while_open && running) {
                if cut_while_open {
                    problem(
                        "open segment awaiting recovery (start the recorder to recover it)".into(),
                    );
                } else {
                    problem(format!("{err}"));
                }
            }
        } else if row.open && !running {
            problem("segment is finished on disk but its catalog row is still open".into());
        }
        if !row.open {
            if rep.bytes != row.bytes {
                problem(format!(
                    "catalog says {} bytes, file has {}",
                    row.bytes, rep.bytes
                ));
            }
            if rep.trailer.frames != row.frames || rep.trailer.key_frames != row.key_frames {
                problem(format!(
                    "catalog says {} frames ({} key), file has {} ({} key)",
                    row.frames, row.key_frames, rep.trailer.frames, rep.trailer.key_frames
                ));
            }
            if row.sha256.as_deref() != Some(hex::encode(rep.sha256).as_str()) {
                problem("SHA-256 of the file differs from the one recorded when it closed".into());
            }
        }
        cam.codec = Some(row.codec.as_str().to_string());
        cam.segments += 1;
        cam.frames += rep.trailer.frames;
        cam.key_frames += rep.trailer.key_frames;
        cam.bytes += std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or(rep.bytes);
        let first = row.start_unix_ms;
        let last = if row.open {
            rep.trailer.last_unix_ms
        } else {
            row.end_unix_ms
        };
        cam.first = Some(
            cam.first
                .take()
                .map_or(rfc3339(first), |f| f.min(rfc3339(first))),
        );
        cam.last = Some(
            cam.last
                .take()
                .map_or(rfc3339(last), |l| l.max(rfc3339(last))),
        );
    }
    for (camera, id, path) in files {
        if claimed.contains(&path) || !path.exists() {
            continue;
        }
        // A row may have been inserted after we read the catalog.
        let now_claimed = id.is_some_and(|id| {
            Catalog::open_read_only(store)
                .and_then(|c| c.segment(id))
                .is_ok_and(|r| r.is_some_and(|r| r.camera == camera))
        });
        if !now_claimed {
            report.problems.push(Problem {
                segment: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                problem: format!("file {} has no catalog row", path.display()),
            });
        }
    }
    for cam in cams.values_mut() {
        cam.gaps = cat
            .gaps(&cam.id)?
            .into_iter()
            .map(|g| GapReport {
                from: rfc3339(g.from_unix_ms),
                to: g.to_unix_ms.map(rfc3339),
                reason: g.reason,
            })
            .collect();
    }
    report.cameras = cams.into_values().collect();
    report.retention = crate::retention::stored_state(&cat);
    Ok(report)
}

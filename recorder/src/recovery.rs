//! Start-up recovery: after a power cut or `kill -9`, bring files and catalog back
//! into agreement before recording resumes. Every file is either catalogued and
//! closed, an open segment to repair, or garbage to remove; nothing else survives.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use hardware::Kek;
use tracing::{info, warn};

use crate::catalog::{self, Catalog, CatalogError};
use crate::segment::{SegmentError, SegmentId};
use crate::writer::{Recovered, recover_one};

/// Why a store, or one open segment in it, could not be brought back into agreement.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("segment {0} has no catalog row")]
    NoRow(SegmentId),
    #[error("segment {id}: its wrapped key does not open with this store's key")]
    Key { id: SegmentId },
    #[error("segment {id}: {source}")]
    Segment { id: SegmentId, source: SegmentError },
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub repaired: u64,
    pub removed_open: u64,
    pub orphans_removed: u64,
    /// Open segments that could not be repaired (e.g. a first chunk that fails
    /// authentication); left in place.
    pub failed: u64,
    pub cameras_recovered: Vec<String>,
}

pub fn recover_store(
    store: &Path,
    cat: &Catalog,
    kek: &Kek,
) -> Result<RecoveryReport, RecoveryError> {
    let mut report = RecoveryReport::default();
    let rows = cat.segments(None)?;
    for row in rows.iter().filter(|r| r.open) {
        let path = catalog::segment_path(store, &row.camera, row.id);
        let outcome = match recover_one(cat, kek, &row.camera, row.id, &path) {
            Ok(o) => o,
            Err(e) => {
                // Left as it is, for `recorder check` to report; recording goes on.
                tracing::error!(camera = %row.camera, segment = %row.id, error = %e,
                    "cannot recover segment; left untouched for inspection");
                report.failed += 1;
                continue;
            }
        };
        match outcome {
            Recovered::Repaired { frames } => {
                info!(camera = %row.camera, segment = %row.id, frames, "recovered cut segment");
                report.repaired += 1;
                if !report.cameras_recovered.contains(&row.camera) {
                    report.cameras_recovered.push(row.camera.clone());
                }
            }
            Recovered::Removed => {
                warn!(camera = %row.camera, segment = %row.id, "open segment held nothing authentic; removed");
                report.removed_open += 1;
            }
        }
    }
    let known: HashSet<(String, SegmentId)> = cat
        .segments(None)?
        .into_iter()
        .map(|r| (r.camera, r.id))
        .collect();
    let root = store.join(catalog::SEGMENTS_DIR);
    let files =
        list_segment_files(store).map_err(|source| RecoveryError::Io { path: root, source })?;
    for (camera, id, path) in files {
        let orphan = match id {
            Some(id) => !known.contains(&(camera.clone(), id)),
            None => true,
        };
        if orphan {
            warn!(file = %path.display(), "removing file that no catalog row claims");
            fs::remove_file(&path).map_err(|source| RecoveryError::Io {
                path: path.clone(),
                source,
            })?;
            report.orphans_removed += 1;
        }
    }
    Ok(report)
}

/// Every file under `segments/`: (camera folder, segment id if the name is one, path).
pub fn list_segment_files(
    store: &Path,
) -> std::io::Result<Vec<(String, Option<SegmentId>, std::path::PathBuf)>> {
    let mut out = Vec::new();
    let root = store.join(catalog::SEGMENTS_DIR);
    let cams = match fs::read_dir(&root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for cam in cams {
        let cam = cam?;
        if !cam.file_type()?.is_dir() {
            continue;
        }
        let camera = cam.file_name().to_string_lossy().into_owned();
        for f in fs::read_dir(cam.path())? {
            let f = f?;
            let name = f.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".seg").and_then(|s| s.parse().ok());
            out.push((camera.clone(), id, f.path()));
        }
    }
    out.sort();
    Ok(out)
}

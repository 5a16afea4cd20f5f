//! Reading footage back out of the store, for the viewer-api and exports.
//!
//! The recorder owns the store's format; everything that reads footage goes through
//! here, so the viewer-api never opens segment files or unwraps keys itself. Reads
//! use a read-only catalog connection per call (the recorder keeps writing beside
//! it, in WAL mode) and never change anything in the store.

use std::path::{Path, PathBuf};

use hardware::Kek;

pub use crate::catalog::GapRow;
use crate::catalog::{self, Catalog, CatalogError, SegmentRow};
use crate::config::Config;
use crate::segment::{self, SegmentError, SegmentId, SegmentIndex, SegmentReader};
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum FootageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("segment {id}: {source}")]
    Segment { id: SegmentId, source: SegmentError },
}

/// A camera as the catalog knows it, with the state the recorder last set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CameraStatus {
    pub id: String,
    pub name: String,
    /// e.g. `recording`, `offline`, `unknown` (never set yet).
    pub state: String,
    pub state_reason: Option<String>,
    pub state_since_unix_ms: Option<i64>,
}

/// Read access to an initialised store.
pub struct Footage {
    store: PathBuf,
    kek: Kek,
}

impl std::fmt::Debug for Footage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Footage")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Footage {
    /// Opens the store of `config` with its key provider, checking that the KEK is the
    /// store's own.
    pub fn open(config: &Config) -> Result<Footage, FootageError> {
        let kek = store::load_kek(config, &store::key_provider(config))?;
        Ok(Footage::new(config.storage.path.clone(), kek))
    }

    pub fn new(store: PathBuf, kek: Kek) -> Footage {
        Footage { store, kek }
    }

    pub fn store(&self) -> &Path {
        &self.store
    }

    fn catalog(&self) -> Result<Catalog, FootageError> {
        Ok(Catalog::open_read_only(&self.store)?)
    }

    /// Every camera in the catalog, by id.
    pub fn cameras(&self) -> Result<Vec<CameraStatus>, FootageError> {
        Ok(self.catalog()?.camera_statuses()?)
    }

    /// Segments of `camera` that may hold frames in `[from, to)`, by start time. A
    /// segment still open counts as reaching to now.
    pub fn segments(
        &self,
        camera: &str,
        from_unix_ms: i64,
        to_unix_ms: i64,
    ) -> Result<Vec<SegmentRow>, FootageError> {
        Ok(self
            .catalog()?
            .segments_overlapping(camera, from_unix_ms, to_unix_ms)?)
    }

    /// Gaps of `camera` overlapping `[from, to)`; a gap still open has no end.
    pub fn gaps(
        &self,
        camera: &str,
        from_unix_ms: i64,
        to_unix_ms: i64,
    ) -> Result<Vec<GapRow>, FootageError> {
        let rows = self.catalog()?.gaps(camera)?;
        Ok(rows
            .into_iter()
            .filter(|g| {
                g.from_unix_ms < to_unix_ms && g.to_unix_ms.is_none_or(|t| t > from_unix_ms)
            })
            .collect())
    }

    /// Opens a segment for reading, GOP by GOP. For a segment still being written,
    /// `next_gop` ends with [`SegmentError::Cut`] at its authentic end.
    pub fn open_segment(&self, row: &SegmentRow) -> Result<SegmentReader, FootageError> {
        let seg = |source| FootageError::Segment { id: row.id, source };
        let key =
            segment::unwrap_key(self.kek.as_bytes(), row.id, &row.wrapped_key).map_err(seg)?;
        let path = catalog::segment_path(&self.store, &row.camera, row.id);
        SegmentReader::open(&path, row.id, &row.camera, &key).map_err(seg)
    }

    /// The stored index of a closed segment (frames' times, sizes and chunk locations),
    /// read without decrypting its footage. A segment still being written, or cut, has
    /// none: [`SegmentError::NoIndex`]; read it with [`open_segment`](Self::open_segment).
    pub fn segment_index(&self, row: &SegmentRow) -> Result<SegmentIndex, FootageError> {
        let seg = |source| FootageError::Segment { id: row.id, source };
        let key =
            segment::unwrap_key(self.kek.as_bytes(), row.id, &row.wrapped_key).map_err(seg)?;
        let path = catalog::segment_path(&self.store, &row.camera, row.id);
        SegmentReader::open_index(&path, row.id, &row.camera, &key).map_err(seg)
    }
}

/// A camera's footage as the catalog counts it, for health reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CameraHealth {
    pub camera: CameraStatus,
    /// Segments in the catalog, the one being written included.
    pub segments: u64,
    /// Bytes of its closed segments (a segment being written counts once it closes):
    /// what retention weighs against the capacities.
    pub bytes: u64,
    /// Start of its oldest footage.
    pub oldest_unix_ms: Option<i64>,
    /// End of its newest closed segment, or the start of the one being written if later.
    pub newest_unix_ms: Option<i64>,
    /// Gaps overlapping `[gaps_from, now)`, oldest first; a gap still open has no end.
    pub gaps: Vec<GapRow>,
}

/// What the catalog says about the store's health, read in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreHealth {
    /// Every camera of the catalog (configured now, or with footage left), by id.
    pub cameras: Vec<CameraHealth>,
    /// Bytes of all closed segments (every camera, configured or not).
    pub bytes: u64,
    /// Holds in force at `now` (as the wall clock says; retention believes no expiry
    /// while it distrusts the clock).
    pub holds_active: u64,
    /// Retention's last stored state (alarms, clock refusal); `None` before the
    /// recorder's retention has run once on this store.
    pub retention: Option<crate::retention::RetentionState>,
    /// The disk under the store, as the recorder last probed it ([`crate::devices`]);
    /// `None` where nothing watches it (the catalog alone was read).
    #[serde(default)]
    pub storage: Option<hardware::storage::StorageReport>,
    /// The case-open switch ([`crate::devices::TamperWatch`]); `None` where the box has
    /// none configured.
    #[serde(default)]
    pub tamper: Option<hardware::tamper::TamperStatus>,
}

pub use crate::catalog::status::health;

/// Size and free space of a file system (statvfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FsSpace {
    pub size_bytes: u64,
    /// Free for an unprivileged user (what `min_free_bytes` is weighed against).
    pub free_bytes: u64,
}

/// Size and free space of the file system holding `path`.
pub fn file_system_space(path: &Path) -> std::io::Result<FsSpace> {
    let st = rustix::fs::statvfs(path)?;
    Ok(FsSpace {
        size_bytes: st.f_blocks.saturating_mul(st.f_frsize),
        free_bytes: st.f_bavail.saturating_mul(st.f_frsize),
    })
}

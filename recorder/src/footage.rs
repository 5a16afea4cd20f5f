//! Reading footage back out of the store, for the viewer-api and exports.
//!
//! The recorder owns the store's format; everything that reads footage goes through
//! here, so the viewer-api never opens segment files or unwraps keys itself. Reads
//! use a read-only catalog connection per call (the recorder keeps writing beside
//! it, in WAL mode) and never change anything in the store.

use std::path::{Path, PathBuf};

use hardware::Kek;

use crate::catalog::{self, Catalog, CatalogError, GapRow, SegmentRow};
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
        let cat = self.catalog()?;
        let path = cat.path().to_path_buf();
        let sql = |source| CatalogError::Sql {
            path: path.clone(),
            source,
        };
        let conn = cat.connection();
        let mut stmt = conn
            .prepare(
                "SELECT id, name, state, state_reason, state_since_unix_ms FROM cameras ORDER BY id",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(CameraStatus {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    state: r.get(2)?,
                    state_reason: r.get(3)?,
                    state_since_unix_ms: r.get(4)?,
                })
            })
            .map_err(sql)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r.map_err(sql)?);
        }
        Ok(out)
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

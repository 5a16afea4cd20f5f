//! Legal holds (evidence locks): footage of some cameras over a time range that
//! retention must not delete, for a case, until the hold is released or expires.
//!
//! Holds live in the catalog (`holds` table) so that the recorder, the `recorder hold`
//! command and the viewer-api (police cases) all see the same ones; the running
//! recorder re-reads them on every retention pass (at least every 10 s). Released holds
//! stay in the table, marked, as a record of who released them and when.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, CatalogError};
use crate::clock::rfc3339;

/// The `cameras` value of a hold on every camera (present and future).
pub const ALL_CAMERAS: &str = "*";

#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("catalog: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("invalid hold: {0}")]
    Invalid(String),
    #[error("no hold with id {0}")]
    NotFound(i64),
    #[error("hold {id} was already released at {at} by {by}")]
    AlreadyReleased { id: i64, at: String, by: String },
}

/// Which cameras a hold covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldCameras {
    All,
    Some(Vec<String>),
}

impl HoldCameras {
    pub fn covers(&self, camera: &str) -> bool {
        match self {
            HoldCameras::All => true,
            HoldCameras::Some(c) => c.iter().any(|c| c == camera),
        }
    }

    fn to_column(&self) -> String {
        match self {
            HoldCameras::All => ALL_CAMERAS.to_string(),
            HoldCameras::Some(c) => c.join(","),
        }
    }

    fn from_column(s: &str) -> HoldCameras {
        if s == ALL_CAMERAS {
            HoldCameras::All
        } else {
            HoldCameras::Some(s.split(',').map(str::to_string).collect())
        }
    }

    /// As printed and in JSON: `["all"]` or the ids.
    pub fn names(&self) -> Vec<String> {
        match self {
            HoldCameras::All => vec!["all".to_string()],
            HoldCameras::Some(c) => c.clone(),
        }
    }
}

/// A new hold, as asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewHold {
    pub cameras: HoldCameras,
    pub from_unix_ms: i64,
    pub to_unix_ms: i64,
    pub case_ref: String,
    pub placed_by: String,
    pub until_unix_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub id: i64,
    pub cameras: HoldCameras,
    pub from_unix_ms: i64,
    pub to_unix_ms: i64,
    pub case_ref: String,
    pub placed_by: String,
    pub until_unix_ms: Option<i64>,
    pub created_unix_ms: i64,
    pub released_unix_ms: Option<i64>,
    pub released_by: Option<String>,
}

impl Hold {
    /// In force at `now`: not released and not expired.
    pub fn active_at(&self, now_unix_ms: i64) -> bool {
        self.released_unix_ms.is_none() && self.until_unix_ms.is_none_or(|u| now_unix_ms < u)
    }

    /// Whether this hold protects footage of `camera` from `from` to `to` (wall ms):
    /// the ranges overlap. Does not look at `active_at`.
    pub fn covers(&self, camera: &str, from_unix_ms: i64, to_unix_ms: i64) -> bool {
        self.cameras.covers(camera)
            && from_unix_ms < self.to_unix_ms
            && to_unix_ms.max(from_unix_ms + 1) > self.from_unix_ms
    }

    pub fn status(&self, now_unix_ms: i64) -> &'static str {
        if self.released_unix_ms.is_some() {
            "released"
        } else if self.active_at(now_unix_ms) {
            "active"
        } else {
            "expired"
        }
    }

    pub fn to_json(&self, now_unix_ms: i64) -> HoldJson {
        HoldJson {
            id: self.id,
            cameras: self.cameras.names(),
            from: rfc3339(self.from_unix_ms),
            to: rfc3339(self.to_unix_ms),
            case: self.case_ref.clone(),
            by: self.placed_by.clone(),
            until: self.until_unix_ms.map(rfc3339),
            created: rfc3339(self.created_unix_ms),
            status: self.status(now_unix_ms),
            released: self.released_unix_ms.map(rfc3339),
            released_by: self.released_by.clone(),
        }
    }
}

/// A hold as `recorder hold list --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct HoldJson {
    pub id: i64,
    pub cameras: Vec<String>,
    pub from: String,
    pub to: String,
    pub case: String,
    pub by: String,
    pub until: Option<String>,
    pub created: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_by: Option<String>,
}

/// The set of holds in force at one instant, for retention.
#[derive(Debug, Clone, Default)]
pub struct ActiveHolds(pub Vec<Hold>);

impl ActiveHolds {
    pub fn protects(&self, camera: &str, from_unix_ms: i64, to_unix_ms: i64) -> bool {
        self.0
            .iter()
            .any(|h| h.covers(camera, from_unix_ms, to_unix_ms))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

fn valid_text(what: &str, s: &str) -> Result<(), HoldError> {
    if s.trim().is_empty() {
        return Err(HoldError::Invalid(format!("{what} must not be empty")));
    }
    if s.len() > 200 || s.chars().any(char::is_control) {
        return Err(HoldError::Invalid(format!(
            "{what} must be at most 200 characters, without control characters"
        )));
    }
    Ok(())
}

/// Places a hold; returns its id. `now_unix_ms` is its creation time.
pub fn add(cat: &Catalog, hold: &NewHold, now_unix_ms: i64) -> Result<i64, HoldError> {
    if hold.from_unix_ms >= hold.to_unix_ms {
        return Err(HoldError::Invalid(format!(
            "from ({}) must be earlier than to ({})",
            rfc3339(hold.from_unix_ms),
            rfc3339(hold.to_unix_ms)
        )));
    }
    if let Some(u) = hold.until_unix_ms
        && u <= now_unix_ms
    {
        return Err(HoldError::Invalid(format!(
            "until ({}) is already past",
            rfc3339(u)
        )));
    }
    match &hold.cameras {
        HoldCameras::All => {}
        HoldCameras::Some(c) if c.is_empty() => {
            return Err(HoldError::Invalid(
                "name at least one camera, or all".into(),
            ));
        }
        HoldCameras::Some(c) => {
            for id in c {
                if !crate::config::valid_camera_id(id) {
                    return Err(HoldError::Invalid(format!("{id:?} is not a camera id")));
                }
            }
        }
    }
    valid_text("case reference", &hold.case_ref)?;
    valid_text("by", &hold.placed_by)?;
    let conn = cat.connection();
    with_room(cat, || {
        conn.execute(
            "INSERT INTO holds(cameras, from_unix_ms, to_unix_ms, case_ref, placed_by,
                               until_unix_ms, created_unix_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                hold.cameras.to_column(),
                hold.from_unix_ms,
                hold.to_unix_ms,
                hold.case_ref,
                hold.placed_by,
                hold.until_unix_ms,
                now_unix_ms
            ],
        )
    })?;
    let id = conn.last_insert_rowid();
    tracing::info!(hold = id, case = %hold.case_ref, by = %hold.placed_by,
                   cameras = %hold.cameras.to_column(), from = %rfc3339(hold.from_unix_ms),
                   to = %rfc3339(hold.to_unix_ms), "hold placed");
    Ok(id)
}

/// Releases a hold explicitly. Footage it protected is then subject to the normal
/// rules again (and is deleted at the next pass if it is past its retention).
pub fn release(cat: &Catalog, id: i64, by: &str, now_unix_ms: i64) -> Result<(), HoldError> {
    valid_text("by", by)?;
    let h = get(cat, id)?.ok_or(HoldError::NotFound(id))?;
    if let Some(at) = h.released_unix_ms {
        return Err(HoldError::AlreadyReleased {
            id,
            at: rfc3339(at),
            by: h.released_by.unwrap_or_default(),
        });
    }
    with_room(cat, || {
        cat.connection().execute(
            "UPDATE holds SET released_unix_ms=?2, released_by=?3 WHERE id=?1 AND released_unix_ms IS NULL",
            params![id, now_unix_ms, by],
        )
    })?;
    tracing::info!(hold = id, case = %h.case_ref, by, "hold released");
    Ok(())
}

/// Runs a catalog write; when the disk is full (held footage filled it), gives up the
/// retention space reserve and tries once more, so a hold can always be placed or
/// released.
fn with_room<T>(cat: &Catalog, f: impl Fn() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    match f() {
        Err(rusqlite::Error::SqliteFailure(e, m)) if e.code == rusqlite::ErrorCode::DiskFull => {
            let reserve = cat
                .path()
                .parent()
                .map(|store| store.join(crate::retention::RESERVE_FILE));
            if reserve.is_some_and(|r| std::fs::remove_file(r).is_ok()) {
                tracing::warn!("disk full: released the space reserve to write a hold");
                f()
            } else {
                Err(rusqlite::Error::SqliteFailure(e, m))
            }
        }
        r => r,
    }
}

const COLUMNS: &str = "id, cameras, from_unix_ms, to_unix_ms, case_ref, placed_by, until_unix_ms,
                       created_unix_ms, released_unix_ms, released_by";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Hold> {
    Ok(Hold {
        id: r.get(0)?,
        cameras: HoldCameras::from_column(&r.get::<_, String>(1)?),
        from_unix_ms: r.get(2)?,
        to_unix_ms: r.get(3)?,
        case_ref: r.get(4)?,
        placed_by: r.get(5)?,
        until_unix_ms: r.get(6)?,
        created_unix_ms: r.get(7)?,
        released_unix_ms: r.get(8)?,
        released_by: r.get(9)?,
    })
}

pub fn get(cat: &Catalog, id: i64) -> Result<Option<Hold>, HoldError> {
    Ok(cat
        .connection()
        .query_row(
            &format!("SELECT {COLUMNS} FROM holds WHERE id=?1"),
            [id],
            from_row,
        )
        .optional()?)
}

/// Every hold ever placed, oldest first (released and expired ones included).
pub fn list(cat: &Catalog) -> Result<Vec<Hold>, HoldError> {
    list_on(cat.connection())
}

pub(crate) fn list_on(conn: &rusqlite::Connection) -> Result<Vec<Hold>, HoldError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM holds ORDER BY id"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The holds in force at `now`.
pub fn active(cat: &Catalog, now_unix_ms: i64) -> Result<ActiveHolds, HoldError> {
    active_on(cat.connection(), now_unix_ms)
}

pub(crate) fn active_on(
    conn: &rusqlite::Connection,
    now_unix_ms: i64,
) -> Result<ActiveHolds, HoldError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM holds WHERE released_unix_ms IS NULL
           AND (until_unix_ms IS NULL OR until_unix_ms > ?1) ORDER BY id"
    ))?;
    let rows = stmt.query_map([now_unix_ms], from_row)?;
    Ok(ActiveHolds(rows.collect::<rusqlite::Result<_>>()?))
}

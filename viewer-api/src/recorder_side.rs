//! What the viewer-api asks of the recorder side, besides footage ([`FootageSource`]):
//! holds, the store's health, the deletion journal, and the device's signature on an
//! export manifest.
//!
//! The viewer-api faces staff; the recorder owns the store, the catalog and the keys.
//! In production every call below crosses the recorder's local service (a Unix socket
//! checked by peer credentials, `recorder::service`), so a compromised viewer-api can
//! ask, but cannot delete footage, rewrite the catalog, read a key or sign what the
//! recorder does not vouch for. There is no in-process implementation: tests run the
//! real service too.
//!
//! [`FootageSource`]: crate::playback::FootageSource

use recorder::footage::{FsSpace, StoreHealth};
use recorder::holds::{Hold, HoldError, NewHold};
use recorder::journal;

pub use recorder::checkpoint::LogRef;

/// The reference to an entry just written to the access log.
pub fn log_ref(e: &crate::audit::Entry) -> LogRef {
    LogRef {
        seq: e.seq,
        hash: e.hash.clone(),
    }
}

/// Why the recorder side refused or failed, in the kinds the API maps to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum SideError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such hold")]
    NotFound,
    #[error("already released at {at} by {by}")]
    AlreadyReleased { at: String, by: String },
    /// The recorder side refused (e.g. a manifest naming footage it does not hold).
    #[error("refused by the recorder: {0}")]
    Refused(String),
    /// The recorder side could not be reached or failed.
    #[error("recorder: {0}")]
    Unavailable(String),
}

impl From<HoldError> for SideError {
    fn from(e: HoldError) -> Self {
        match e {
            HoldError::Invalid(m) => SideError::Invalid(m),
            HoldError::NotFound(_) => SideError::NotFound,
            HoldError::AlreadyReleased { at, by, .. } => SideError::AlreadyReleased {
                at: at.to_string(),
                by,
            },
            e => SideError::Unavailable(e.to_string()),
        }
    }
}

pub trait RecorderSide: Send + Sync + 'static {
    fn holds(&self) -> Result<Vec<Hold>, SideError>;
    fn hold(&self, id: i64) -> Result<Option<Hold>, SideError>;
    /// Places a hold; `now_ms` is the viewer-api's clock (the recorder side may use
    /// its own).
    /// Its id. `log` is the entry that logged placing it.
    fn add_hold(&self, log: &LogRef, hold: &NewHold, now_ms: i64) -> Result<i64, SideError>;
    fn release_hold(&self, log: &LogRef, id: i64, by: &str, now_ms: i64) -> Result<(), SideError>;
    /// The catalog's health of every camera since `since_ms`.
    fn health(&self, since_ms: i64, now_ms: i64) -> Result<StoreHealth, SideError>;
    fn fs_space(&self) -> Result<FsSpace, SideError>;
    /// The case-open switch's notices after `after_seq`, oldest first (none where the
    /// box has no switch).
    fn tamper_events(
        &self,
        _after_seq: u64,
        _limit: usize,
    ) -> Result<Vec<recorder::devices::TamperRecord>, SideError> {
        Ok(Vec::new())
    }
    /// Acknowledges the latched tamper alarm, as logged in `log`.
    fn tamper_ack(
        &self,
        _log: &LogRef,
        _by: &str,
    ) -> Result<hardware::tamper::Acknowledgement, SideError> {
        Err(SideError::Invalid(
            "this box has no case-open switch".into(),
        ))
    }
    /// The recorder's Prometheus metrics (text); empty when it does not record.
    fn metrics_text(&self) -> Result<String, SideError> {
        Ok(String::new())
    }
    /// The deletion journal, newest first: `(seq, entry)`.
    fn journal_page(
        &self,
        camera: Option<&str>,
        since_ms: Option<i64>,
        before_seq: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, journal::Entry)>, SideError>;
    /// The device's Ed25519 public key, if it has one.
    fn public_key(&self) -> Result<[u8; 32], SideError>;
    /// The device's signature over an export manifest, for the export logged as `log`.
    fn sign_manifest(&self, log: &LogRef, manifest: &[u8]) -> Result<[u8; 64], SideError>;
}

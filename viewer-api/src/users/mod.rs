//! Users, sessions and grants, in their own SQLite file (`<storage.path>/users.sqlite`).
//!
//! * Passwords are stored only as argon2id PHC strings; a login for an unknown user
//!   still runs one argon2 verification so that timing does not tell which names exist.
//! * A session token is 32 random bytes shown once to the client; the database keeps
//!   only its SHA-256, so a copy of the file opens no session. Lookup is by that hash
//!   (an attacker cannot steer a SHA-256 prefix, so the index lookup leaks nothing
//!   useful), and the stored hash is compared again in constant time.
//! * Sessions end after [`IDLE_MS`] without use and [`MAX_SESSION_MS`] after login,
//!   whichever comes first, judged by the injected [`Clock`]. Disabling a user or
//!   changing their password revokes their sessions.
//! * Grants live here too because they are rights of a user; the policy reads them.
//! * argon2 runs only on [`HASH_SLOTS`] dedicated threads (each computation takes
//!   [`UserDb::default_argon`]'s 19 MiB): a flood of logins queues for them instead of
//!   taking the process's memory, and the memory those threads' allocator keeps for
//!   reuse is bounded by their number. The waiting is asynchronous
//!   ([`UserDb::check_login_bounded`]), so a queued login holds no thread either.
//! * The login counters of [`crate::throttle`] are kept here too (`login_throttle`),
//!   so a restart forgets no lock-out.
//! * The file and its `-wal`/`-shm` companions are created mode 0600.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::clock::{Clock, rfc3339};
use crate::policy::{Grant, Role};
use crate::throttle::{Counter, Persist};

/// A session ends after this long without a request.
pub const IDLE_MS: i64 = 15 * 60 * 1000;
/// A session ends this long after login whatever happens.
pub const MAX_SESSION_MS: i64 = 8 * 3600 * 1000;
pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Password hashes computed at once, at most (logins, new users, new passwords).
pub const HASH_SLOTS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user database {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("user database {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("no such user {0:?}")]
    NoSuchUser(String),
    #[error("user {0:?} already exists")]
    Exists(String),
    #[error("no such grant {0}")]
    NoSuchGrant(i64),
    #[error("password hashing failed")]
    Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// Camera limit (police, contractors); `None` = no limit.
    pub cameras: Option<Vec<String>>,
    pub disabled: bool,
}

/// A live session, as found from its token.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub token_hash: String,
    pub expires_ms: i64,
}

pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// Same rule as the recorder's camera ids: 1 to 32 of a-z, 0-9 and `-`.
pub fn valid_camera_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub fn check_password(pw: &str) -> Result<(), UserError> {
    if pw.chars().count() < MIN_PASSWORD_LEN {
        return Err(UserError::Invalid(format!(
            "the password must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if pw.len() > MAX_PASSWORD_LEN {
        return Err(UserError::Invalid("the password is too long".into()));
    }
    Ok(())
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn cameras_to_db(c: &Option<Vec<String>>) -> Option<String> {
    c.as_ref().map(|v| v.join(","))
}

fn cameras_from_db(s: Option<String>) -> Option<Vec<String>> {
    s.map(|s| {
        s.split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    })
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    cameras TEXT,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    created_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS grants (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    cameras TEXT NOT NULL,
    from_ms INTEGER NOT NULL,
    until_ms INTEGER NOT NULL,
    live INTEGER NOT NULL,
    playback INTEGER NOT NULL,
    playback_from_ms INTEGER,
    playback_to_ms INTEGER,
    ticket TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE INDEX IF NOT EXISTS grants_by_user ON grants (user_id);
CREATE TABLE IF NOT EXISTS login_throttle (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    locked_until_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

pub struct UserDb {
    conn: Mutex<Connection>,
    path: PathBuf,
    clock: Arc<dyn Clock>,
    argon: Argon2<'static>,
    params: Params,
    /// A hash verified for unknown users, so they cost the same as known ones.
    dummy_hash: String,
    pool: HashPool,
}

impl std::fmt::Debug for UserDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDb").field("path", &self.path).finish()
    }
}

/// A new grant, as given by an `it` user.
#[derive(Debug, Clone)]
pub struct NewGrant {
    pub user: String,
    pub cameras: Vec<String>,
    pub from_ms: i64,
    pub until_ms: i64,
    pub live: bool,
    pub playback: bool,
    pub playback_from_ms: Option<i64>,
    pub playback_to_ms: Option<i64>,
    pub ticket: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GrantView {
    pub id: i64,
    pub user: String,
    pub cameras: Vec<String>,
    pub from: String,
    pub until: String,
    pub allow: Vec<&'static str>,
    pub playback_from: Option<String>,
    pub playback_to: Option<String>,
    pub ticket: String,
    pub granted_by: String,
    pub revoked: bool,
    pub active: bool,
}

impl UserDb {
    /// Opens (creating if needed) the user database. `argon` lets tests use cheap
    /// parameters; production uses [`UserDb::default_argon`].
    pub fn open(path: &Path, clock: Arc<dyn Clock>, argon: Params) -> Result<Self, UserError> {
        let sql = |source| UserError::Sql {
            path: path.to_path_buf(),
            source,
        };
        crate::audit::create_private(path).map_err(|e| UserError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let conn = recorder::sqlite::open(path, Duration::from_secs(5)).map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        crate::audit::restrict_sqlite_files(path);
        let params = argon;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let pool = HashPool::start(HASH_SLOTS).map_err(|e| UserError::File {
            path: path.to_path_buf(),
            message: format!("cannot start the password hashing threads: {e}"),
        })?;
        let (a, p) = (argon.clone(), params.clone());
        let dummy_hash = pool
            .run_blocking(move || hash_phc(&a, &p, b"not a real password"))?
            .ok_or(UserError::Hash)?;
        Ok(UserDb {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            clock,
            argon,
            params,
            dummy_hash,
            pool,
        })
    }

    /// The most password hashes that ran at once since the database was opened, and
    /// how many ran in all.
    pub fn hash_stats(&self) -> (usize, u64) {
        (
            self.pool.stats.peak.load(Ordering::SeqCst),
            self.pool.stats.done.load(Ordering::SeqCst),
        )
    }

    /// OWASP's argon2id recommendation (19 MiB, 2 passes).
    pub fn default_argon() -> Params {
        Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters")
    }

    /// Cheap parameters for tests only.
    pub fn test_argon() -> Params {
        Params::new(256, 1, 1, None).expect("valid argon2 parameters")
    }

    fn sql(&self, source: rusqlite::Error) -> UserError {
        UserError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

mod accounts;
mod grants;
mod passwords;
mod sessions;

use passwords::*;

#[cfg(test)]
mod tests;

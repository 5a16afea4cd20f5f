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

/// Work for the argon2 threads.
type HashJob = Box<dyn FnOnce() + Send>;

thread_local! {
    /// A hashing thread's argon2 memory, allocated once and reused: 19 MiB per login
    /// through the allocator would be kept by it (fragmented), and grow the process.
    static ARGON_MEMORY: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The raw argon2 of `password` with `argon`'s parameters, in this thread's reused
/// memory (wiped after use).
fn argon2_raw(
    argon: &Argon2<'_>,
    blocks: usize,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    ARGON_MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < blocks {
            m.resize(blocks, argon2::Block::default());
        }
        let r = argon.hash_password_into_with_memory(password, salt, out, &mut m[..blocks]);
        m[..blocks].fill(argon2::Block::default());
        r
    })
}

/// Whether `password` matches the PHC string `stored` (argon2 only), in constant time.
fn verify_phc(stored: &str, password: &[u8]) -> bool {
    let check = || -> Option<bool> {
        let parsed = PasswordHash::new(stored).ok()?;
        let params = Params::try_from(&parsed).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let expected = parsed.hash?;
        let mut salt = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
        let mut out = Zeroizing::new(vec![0u8; expected.len()]);
        let argon = Argon2::new(algorithm, version, params.clone());
        argon2_raw(&argon, params.block_count(), password, salt, &mut out).ok()?;
        Some(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
    };
    check().unwrap_or(false)
}

/// A new PHC string for `password` with `argon`'s parameters.
fn hash_phc(argon: &Argon2<'_>, params: &Params, password: &[u8]) -> Option<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let mut raw = [0u8; 64];
    let raw = salt.as_salt().decode_b64(&mut raw).ok()?;
    let mut out = Zeroizing::new(vec![
        0u8;
        params
            .output_len()
            .unwrap_or(Params::DEFAULT_OUTPUT_LEN)
    ]);
    argon2_raw(argon, params.block_count(), password, raw, &mut out).ok()?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: argon2::password_hash::ParamsString::try_from(params).ok()?,
        salt: Some(salt.as_salt()),
        hash: Some(argon2::password_hash::Output::new(&out).ok()?),
    };
    Some(phc.to_string())
}

/// What the argon2 threads did (for tests and metrics).
#[derive(Default)]
struct HashStats {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    done: AtomicU64,
}

/// One password hash in flight, counted.
struct Hashing<'a>(&'a HashStats);

impl<'a> Hashing<'a> {
    fn start(stats: &'a HashStats) -> Self {
        let n = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.peak.fetch_max(n, Ordering::SeqCst);
        Hashing(stats)
    }
}

impl Drop for Hashing<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.done.fetch_add(1, Ordering::SeqCst);
    }
}

/// The bounded argon2 pool: [`HASH_SLOTS`] threads taking jobs from one queue. They end
/// when the database is dropped (the queue closes).
struct HashPool {
    queue: Mutex<std::sync::mpsc::Sender<HashJob>>,
    stats: Arc<HashStats>,
}

impl HashPool {
    fn start(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                            match rx.recv() {
                                Ok(job) => job,
                                Err(_) => return,
                            }
                        };
                        // a panicking job must not take a hashing thread with it
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(HashPool {
            queue: Mutex::new(tx),
            stats: Arc::new(HashStats::default()),
        })
    }

    fn submit(&self, job: HashJob) -> Result<(), UserError> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| UserError::Hash)
    }

    /// Runs `f` on a hashing thread, counted, and waits for it, blocking this thread.
    fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, UserError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let stats = self.stats.clone();
        self.submit(Box::new(move || {
            let r = {
                let _counted = Hashing::start(&stats);
                f()
            };
            let _ = tx.send(r);
        }))?;
        rx.recv().map_err(|_| UserError::Hash)
    }

    /// Runs `f` on a hashing thread, counted; waits without holding a thread.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, UserError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stats = self.stats.clone();
        self.submit(Box::new(move || {
            let r = {
                let _counted = Hashing::start(&stats);
                f()
            };
            let _ = tx.send(r);
        }))?;
        rx.await.map_err(|_| UserError::Hash)
    }
}

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

    /// The verification of `password` against the PHC string `stored`, to run on the
    /// hashing threads.
    fn verify_job(
        &self,
        stored: String,
        password: Zeroizing<String>,
    ) -> impl FnOnce() -> bool + Send + 'static {
        move || verify_phc(&stored, password.as_bytes())
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

    /// Hashes a new password on the hashing threads (blocking this thread meanwhile).
    fn hash(&self, pw: &str) -> Result<String, UserError> {
        let (argon, params) = (self.argon.clone(), self.params.clone());
        let pw = Zeroizing::new(pw.to_string());
        self.pool
            .run_blocking(move || hash_phc(&argon, &params, pw.as_bytes()))?
            .ok_or(UserError::Hash)
    }

    pub fn add_user(
        &self,
        name: &str,
        role: Role,
        cameras: Option<Vec<String>>,
        password: &str,
    ) -> Result<User, UserError> {
        if !valid_user_name(name) {
            return Err(UserError::Invalid(format!(
                "user name {name:?} is invalid: use 1 to 64 of a-z, A-Z, 0-9, '.', '_', '-', '@'"
            )));
        }
        if let Some(list) = &cameras {
            if !role.scoped() {
                return Err(UserError::Invalid(format!(
                    "role {role} cannot be limited to cameras (only police and contractor)"
                )));
            }
            if list.is_empty() {
                return Err(UserError::Invalid("the camera list is empty".into()));
            }
            if let Some(bad) = list.iter().find(|c| !valid_camera_id(c)) {
                return Err(UserError::Invalid(format!("camera id {bad:?} is invalid")));
            }
        }
        check_password(password)?;
        let hash = self.hash(password)?;
        let conn = self.lock();
        let n = conn
            .execute(
                "INSERT INTO users (name, role, cameras, password_hash, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(name) DO NOTHING",
                params![
                    name,
                    role.as_str(),
                    cameras_to_db(&cameras),
                    hash,
                    self.clock.now_unix_ms()
                ],
            )
            .map_err(|s| self.sql(s))?;
        if n == 0 {
            return Err(UserError::Exists(name.into()));
        }
        Ok(User {
            id: conn.last_insert_rowid(),
            name: name.into(),
            role,
            cameras,
            disabled: false,
        })
    }

    fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(User, String)> {
        let role: String = r.get(2)?;
        Ok((
            User {
                id: r.get(0)?,
                name: r.get(1)?,
                // an unknown role in the file: treat as the least privileged, disabled
                role: role.parse().unwrap_or(Role::Auditor),
                cameras: cameras_from_db(r.get(3)?),
                disabled: r.get::<_, i64>(5)? != 0 || role.parse::<Role>().is_err(),
            },
            r.get(4)?,
        ))
    }

    pub fn users(&self) -> Result<Vec<User>, UserError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT id, name, role, cameras, password_hash, disabled FROM users ORDER BY name",
            )
            .map_err(|s| self.sql(s))?;
        let rows = stmt
            .query_map([], Self::user_from_row)
            .map_err(|s| self.sql(s))?;
        rows.map(|r| r.map(|(u, _)| u).map_err(|s| self.sql(s)))
            .collect()
    }

    pub fn user(&self, name: &str) -> Result<Option<User>, UserError> {
        Ok(self.user_with_hash(name)?.map(|(u, _)| u))
    }

    fn user_with_hash(&self, name: &str) -> Result<Option<(User, String)>, UserError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT id, name, role, cameras, password_hash, disabled FROM users WHERE name = ?1",
            [name],
            Self::user_from_row,
        )
        .optional()
        .map_err(|s| self.sql(s))
    }

    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<(), UserError> {
        let conn = self.lock();
        let n = conn
            .execute(
                "UPDATE users SET disabled = ?2 WHERE name = ?1",
                params![name, disabled as i64],
            )
            .map_err(|s| self.sql(s))?;
        if n == 0 {
            return Err(UserError::NoSuchUser(name.into()));
        }
        conn.execute(
            "UPDATE sessions SET revoked = 1 WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
            [name],
        )
        .map_err(|s| self.sql(s))?;
        Ok(())
    }

    pub fn set_password(&self, name: &str, password: &str) -> Result<(), UserError> {
        check_password(password)?;
        let hash = self.hash(password)?;
        let conn = self.lock();
        let n = conn
            .execute(
                "UPDATE users SET password_hash = ?2 WHERE name = ?1",
                params![name, hash],
            )
            .map_err(|s| self.sql(s))?;
        if n == 0 {
            return Err(UserError::NoSuchUser(name.into()));
        }
        conn.execute(
            "UPDATE sessions SET revoked = 1 WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
            [name],
        )
        .map_err(|s| self.sql(s))?;
        Ok(())
    }

    /// Checks a password. `Ok(None)` for a wrong password, an unknown or a disabled
    /// user alike (the caller must not tell them apart to the client): each costs one
    /// argon2 verification with the same parameters (unknown names are checked against
    /// a hash made at open). Blocks this thread while the hashing threads work; async
    /// code uses [`UserDb::check_login_bounded`].
    pub fn check_login(&self, name: &str, password: &str) -> Result<Option<User>, UserError> {
        let found = self.login_lookup(name)?;
        let stored = self.stored_or_dummy(&found);
        let ok = self
            .pool
            .run_blocking(self.verify_job(stored, Zeroizing::new(password.to_string())))?;
        Ok(Self::login_result(found, ok))
    }

    /// [`UserDb::check_login`] for async code: the lookup on a blocking thread, the
    /// verification queued for the hashing threads without holding a thread.
    pub async fn check_login_bounded(
        self: &Arc<Self>,
        name: String,
        password: String,
    ) -> Result<Option<User>, UserError> {
        let password = Zeroizing::new(password);
        let this = self.clone();
        let found = tokio::task::spawn_blocking(move || this.login_lookup(&name))
            .await
            .map_err(|_| UserError::Hash)??;
        let stored = self.stored_or_dummy(&found);
        let ok = self.pool.run(self.verify_job(stored, password)).await?;
        Ok(Self::login_result(found, ok))
    }

    fn login_lookup(&self, name: &str) -> Result<Option<(User, String)>, UserError> {
        if valid_user_name(name) {
            self.user_with_hash(name)
        } else {
            Ok(None)
        }
    }

    fn stored_or_dummy(&self, found: &Option<(User, String)>) -> String {
        found
            .as_ref()
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| self.dummy_hash.clone())
    }

    fn login_result(found: Option<(User, String)>, ok: bool) -> Option<User> {
        match found {
            Some((u, _)) if ok && !u.disabled => Some(u),
            _ => None,
        }
    }

    /// Opens a session; returns the token (shown once) and when it expires if unused.
    pub fn create_session(&self, user: &User) -> Result<(String, i64), UserError> {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let now = self.clock.now_unix_ms();
        let conn = self.lock();
        // Housekeeping: forget sessions that cannot be used any more.
        conn.execute(
            "DELETE FROM sessions WHERE revoked = 1 OR created_ms < ?1 OR last_seen_ms < ?2",
            params![now - MAX_SESSION_MS, now - IDLE_MS],
        )
        .map_err(|s| self.sql(s))?;
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, created_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?3)",
            params![token_hash(&token), user.id, now],
        )
        .map_err(|s| self.sql(s))?;
        Ok((token, (now + IDLE_MS).min(now + MAX_SESSION_MS)))
    }

    /// Finds the live session of a token and marks it used now.
    pub fn session(&self, token: &str) -> Result<Option<Session>, UserError> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let th = token_hash(token);
        let now = self.clock.now_unix_ms();
        let conn = self.lock();
        let row: Option<(String, i64, i64, i64, i64)> = conn
            .query_row(
                "SELECT token_hash, user_id, created_ms, last_seen_ms, revoked FROM sessions WHERE token_hash = ?1",
                [&th],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(|s| self.sql(s))?;
        let Some((stored, user_id, created, last_seen, revoked)) = row else {
            return Ok(None);
        };
        if !bool::from(stored.as_bytes().ct_eq(th.as_bytes())) || revoked != 0 {
            return Ok(None);
        }
        if now >= created + MAX_SESSION_MS || now >= last_seen + IDLE_MS {
            return Ok(None);
        }
        let user = conn
            .query_row(
                "SELECT id, name, role, cameras, password_hash, disabled FROM users WHERE id = ?1",
                [user_id],
                Self::user_from_row,
            )
            .optional()
            .map_err(|s| self.sql(s))?;
        let Some((user, _)) = user else {
            return Ok(None);
        };
        if user.disabled {
            return Ok(None);
        }
        conn.execute(
            "UPDATE sessions SET last_seen_ms = ?2 WHERE token_hash = ?1",
            params![th, now],
        )
        .map_err(|s| self.sql(s))?;
        Ok(Some(Session {
            user,
            token_hash: th,
            expires_ms: (now + IDLE_MS).min(created + MAX_SESSION_MS),
        }))
    }

    pub fn revoke_session(&self, token_hash: &str) -> Result<(), UserError> {
        self.lock()
            .execute(
                "UPDATE sessions SET revoked = 1 WHERE token_hash = ?1",
                [token_hash],
            )
            .map_err(|s| self.sql(s))
            .map(drop)
    }

    /// Stores a grant after checking it: the grantee is an enabled contractor other
    /// than the granter, the cameras are valid, the windows run forwards.
    pub fn add_grant(&self, g: &NewGrant, granted_by: &str) -> Result<i64, UserError> {
        let user = self.check_grant(g, granted_by)?;
        let conn = self.lock();
        conn.execute(
            "INSERT INTO grants (user_id, cameras, from_ms, until_ms, live, playback, playback_from_ms,
                                 playback_to_ms, ticket, granted_by, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                user.id,
                g.cameras.join(","),
                g.from_ms,
                g.until_ms,
                g.live as i64,
                g.playback as i64,
                g.playback_from_ms,
                g.playback_to_ms,
                g.ticket,
                granted_by,
                self.clock.now_unix_ms()
            ],
        )
        .map_err(|s| self.sql(s))?;
        Ok(conn.last_insert_rowid())
    }

    /// The checks of [`UserDb::add_grant`], without storing; returns the grantee.
    pub fn check_grant(&self, g: &NewGrant, granted_by: &str) -> Result<User, UserError> {
        let inv = |m: &str| Err(UserError::Invalid(m.to_string()));
        if g.user == granted_by {
            return inv("nobody grants themselves anything");
        }
        let Some(user) = self.user(&g.user)? else {
            return Err(UserError::NoSuchUser(g.user.clone()));
        };
        if user.role != Role::Contractor {
            return inv("grants are only for contractors");
        }
        if user.disabled {
            return inv("the user is disabled");
        }
        if g.cameras.is_empty() || g.cameras.len() > 256 {
            return inv("a grant names 1 to 256 cameras");
        }
        if let Some(bad) = g.cameras.iter().find(|c| !valid_camera_id(c)) {
            return Err(UserError::Invalid(format!("camera id {bad:?} is invalid")));
        }
        if g.from_ms >= g.until_ms {
            return inv("the grant's window must end after it starts");
        }
        if g.until_ms - g.from_ms > 31 * 24 * 3600 * 1000 {
            return inv("a grant may last at most 31 days");
        }
        if !g.live && !g.playback {
            return inv("a grant must allow live, playback or both");
        }
        match (g.playback, g.playback_from_ms, g.playback_to_ms) {
            (false, None, None) => {}
            (false, _, _) => return inv("playback_from/playback_to need \"playback\" in allow"),
            (true, Some(f), Some(t)) if f < t => {}
            (true, Some(_), Some(_)) => return inv("playback_to must be after playback_from"),
            (true, None, None) => {}
            (true, _, _) => return inv("give both playback_from and playback_to, or neither"),
        }
        if g.ticket.trim().is_empty()
            || g.ticket.len() > 200
            || g.ticket.chars().any(char::is_control)
        {
            return inv("a ticket reference (1 to 200 characters) is required");
        }
        Ok(user)
    }

    /// Grants, all or of one user, with the grantee's name.
    pub fn grants(&self, user_id: Option<i64>) -> Result<Vec<(Grant, String)>, UserError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT g.id, g.user_id, g.cameras, g.from_ms, g.until_ms, g.live, g.playback,
                        g.playback_from_ms, g.playback_to_ms, g.ticket, g.granted_by, g.revoked_ms, u.name
                 FROM grants g JOIN users u ON u.id = g.user_id
                 WHERE (?1 IS NULL OR g.user_id = ?1) ORDER BY g.id",
            )
            .map_err(|s| self.sql(s))?;
        let rows = stmt
            .query_map([user_id], |r| {
                Ok((
                    Grant {
                        id: r.get(0)?,
                        user_id: r.get(1)?,
                        cameras: cameras_from_db(Some(r.get(2)?)).unwrap_or_default(),
                        from_ms: r.get(3)?,
                        until_ms: r.get(4)?,
                        live: r.get::<_, i64>(5)? != 0,
                        playback: r.get::<_, i64>(6)? != 0,
                        playback_from_ms: r.get(7)?,
                        playback_to_ms: r.get(8)?,
                        ticket: r.get(9)?,
                        granted_by: r.get(10)?,
                        revoked: r.get::<_, Option<i64>>(11)?.is_some(),
                    },
                    r.get::<_, String>(12)?,
                ))
            })
            .map_err(|s| self.sql(s))?;
        rows.map(|r| r.map_err(|s| self.sql(s))).collect()
    }

    pub fn revoke_grant(&self, id: i64) -> Result<Grant, UserError> {
        let conn = self.lock();
        let n = conn
            .execute(
                "UPDATE grants SET revoked_ms = COALESCE(revoked_ms, ?2) WHERE id = ?1",
                params![id, self.clock.now_unix_ms()],
            )
            .map_err(|s| self.sql(s))?;
        drop(conn);
        if n == 0 {
            return Err(UserError::NoSuchGrant(id));
        }
        self.grants(None)?
            .into_iter()
            .find(|(g, _)| g.id == id)
            .map(|(g, _)| g)
            .ok_or(UserError::NoSuchGrant(id))
    }

    pub fn grant_view(&self, g: &Grant, user: &str) -> GrantView {
        let mut allow = Vec::new();
        if g.live {
            allow.push("live");
        }
        if g.playback {
            allow.push("playback");
        }
        GrantView {
            id: g.id,
            user: user.into(),
            cameras: g.cameras.clone(),
            from: rfc3339(g.from_ms),
            until: rfc3339(g.until_ms),
            allow,
            playback_from: g.playback_from_ms.map(rfc3339),
            playback_to: g.playback_to_ms.map(rfc3339),
            ticket: g.ticket.clone(),
            granted_by: g.granted_by.clone(),
            revoked: g.revoked,
            active: g.active(self.clock.now_unix_ms()),
        }
    }
}

/// The login counters of [`crate::throttle::Throttle::persistent`].
impl Persist for UserDb {
    fn load_throttle(&self) -> Result<Vec<(String, Counter)>, String> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT key, failures, last_ms, locked_until_ms FROM login_throttle")
            .map_err(|e| self.sql(e).to_string())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Counter {
                        failures: r.get::<_, i64>(1)?.clamp(0, u32::MAX as i64) as u32,
                        last_ms: r.get(2)?,
                        locked_until_ms: r.get(3)?,
                    },
                ))
            })
            .map_err(|e| self.sql(e).to_string())?;
        rows.map(|r| r.map_err(|e| self.sql(e).to_string()))
            .collect()
    }

    fn save_throttle(&self, rows: &[(String, Option<Counter>)]) -> Result<(), String> {
        let mut conn = self.lock();
        let err = |e| self.sql(e).to_string();
        let tx = conn.transaction().map_err(err)?;
        for (key, c) in rows {
            match c {
                Some(c) => tx.execute(
                    "INSERT INTO login_throttle (key, failures, last_ms, locked_until_ms)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(key) DO UPDATE SET failures = ?2, last_ms = ?3, locked_until_ms = ?4",
                    params![key, c.failures, c.last_ms, c.locked_until_ms],
                ),
                None => tx.execute("DELETE FROM login_throttle WHERE key = ?1", [key]),
            }
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const T0: i64 = 1_700_000_000_000;

    fn db() -> (tempfile::TempDir, Arc<ManualClock>, UserDb) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let db = UserDb::open(
            &dir.path().join("users.sqlite"),
            clock.clone(),
            UserDb::test_argon(),
        )
        .unwrap();
        (dir, clock, db)
    }

    #[test]
    fn login_and_session_expiry() {
        let (_d, clock, db) = db();
        let u = db
            .add_user(
                "anna",
                Role::Police,
                Some(vec!["gate".into()]),
                "correct horse",
            )
            .unwrap();
        assert!(db.check_login("anna", "wrong password").unwrap().is_none());
        assert!(db.check_login("nobody", "correct horse").unwrap().is_none());
        assert_eq!(
            db.check_login("anna", "correct horse").unwrap().unwrap().id,
            u.id
        );

        let (tok, exp) = db.create_session(&u).unwrap();
        assert_eq!(exp, T0 + IDLE_MS);
        // stored hashed only
        let stored: String = db
            .lock()
            .query_row("SELECT token_hash FROM sessions", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, tok);
        assert_eq!(stored, token_hash(&tok));

        // idle: 14 min later fine, then 15 min idle ends it
        clock.advance_ms(IDLE_MS - 60_000);
        assert!(db.session(&tok).unwrap().is_some());
        clock.advance_ms(IDLE_MS);
        assert!(db.session(&tok).unwrap().is_none());

        // absolute: used every 10 minutes, still ends at 8 h
        clock.set(T0);
        let (tok, _) = db.create_session(&u).unwrap();
        let mut t = T0;
        while t + 600_000 < T0 + MAX_SESSION_MS {
            t += 600_000;
            clock.set(t);
            assert!(db.session(&tok).unwrap().is_some(), "at {}", t - T0);
        }
        clock.set(T0 + MAX_SESSION_MS);
        assert!(db.session(&tok).unwrap().is_none());
    }

    #[test]
    fn revocation_and_disable() {
        let (_d, _clock, db) = db();
        let u = db
            .add_user("ivan", Role::It, None, "it-password-1")
            .unwrap();
        let (tok, _) = db.create_session(&u).unwrap();
        let s = db.session(&tok).unwrap().unwrap();
        db.revoke_session(&s.token_hash).unwrap();
        assert!(db.session(&tok).unwrap().is_none());
        let (tok, _) = db.create_session(&u).unwrap();
        db.set_disabled("ivan", true).unwrap();
        assert!(db.session(&tok).unwrap().is_none());
        assert!(db.check_login("ivan", "it-password-1").unwrap().is_none());
        db.set_disabled("ivan", false).unwrap();
        db.set_password("ivan", "new-password-2").unwrap();
        assert!(db.check_login("ivan", "it-password-1").unwrap().is_none());
        assert!(db.check_login("ivan", "new-password-2").unwrap().is_some());
        assert!(db.session("zz").unwrap().is_none());
    }

    #[test]
    fn bad_users_are_refused() {
        let (_d, _clock, db) = db();
        assert!(db.add_user("a b", Role::It, None, "password-1").is_err());
        assert!(
            db.add_user("ok", Role::It, Some(vec!["gate".into()]), "password-1")
                .is_err()
        );
        assert!(
            db.add_user("ok", Role::Police, Some(vec!["../x".into()]), "password-1")
                .is_err()
        );
        assert!(db.add_user("ok", Role::Police, None, "short").is_err());
        db.add_user("ok", Role::Police, None, "password-1").unwrap();
        assert!(matches!(
            db.add_user("ok", Role::Police, None, "password-1"),
            Err(UserError::Exists(_))
        ));
    }

    #[test]
    fn grants_rules() {
        let (_d, clock, db) = db();
        db.add_user("ivan", Role::It, None, "password-1").unwrap();
        let c = db
            .add_user("carl", Role::Contractor, None, "password-1")
            .unwrap();
        db.add_user("pia", Role::Police, None, "password-1")
            .unwrap();
        let g = NewGrant {
            user: "carl".into(),
            cameras: vec!["gate".into()],
            from_ms: T0,
            until_ms: T0 + 3_600_000,
            live: true,
            playback: true,
            playback_from_ms: Some(T0 - 7_200_000),
            playback_to_ms: Some(T0 - 3_600_000),
            ticket: "CHG-7".into(),
        };
        assert!(db.add_grant(&g, "carl").is_err(), "self grant");
        assert!(
            db.add_grant(
                &NewGrant {
                    user: "pia".into(),
                    ..g.clone()
                },
                "ivan"
            )
            .is_err()
        );
        assert!(
            db.add_grant(
                &NewGrant {
                    until_ms: T0,
                    ..g.clone()
                },
                "ivan"
            )
            .is_err()
        );
        assert!(
            db.add_grant(
                &NewGrant {
                    ticket: " ".into(),
                    ..g.clone()
                },
                "ivan"
            )
            .is_err()
        );
        assert!(
            db.add_grant(
                &NewGrant {
                    playback_to_ms: None,
                    ..g.clone()
                },
                "ivan"
            )
            .is_err()
        );
        let id = db.add_grant(&g, "ivan").unwrap();
        let list = db.grants(Some(c.id)).unwrap();
        assert_eq!(list.len(), 1);
        assert!(list[0].0.active(T0));
        clock.advance_ms(3_600_000);
        assert!(
            !db.grants(Some(c.id)).unwrap()[0]
                .0
                .active(clock.now_unix_ms())
        );
        let r = db.revoke_grant(id).unwrap();
        assert!(r.revoked);
        assert!(matches!(
            db.revoke_grant(999),
            Err(UserError::NoSuchGrant(999))
        ));
    }

    /// Finding 3: every way a login can fail costs one argon2 verification with the
    /// same parameters, so timing does not tell which names exist.
    #[test]
    fn every_login_costs_one_hash() {
        let (_d, _clock, db) = db();
        db.add_user("anna", Role::Police, None, "correct horse")
            .unwrap();
        db.add_user("olaf", Role::It, None, "correct horse")
            .unwrap();
        db.set_disabled("olaf", true).unwrap();
        for (name, pw) in [
            ("anna", "correct horse"),
            ("anna", "wrong horse"),
            ("nobody", "correct horse"),
            ("not a valid name!", "x"),
            ("olaf", "correct horse"),
        ] {
            let (_, before) = db.hash_stats();
            db.check_login(name, pw).unwrap();
            assert_eq!(db.hash_stats().1 - before, 1, "{name}");
        }
    }

    /// Finding 3: the async check waits for one of HASH_SLOTS without a thread each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_checks_hash_at_most_hash_slots_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(
            UserDb::open(
                &dir.path().join("users.sqlite"),
                Arc::new(ManualClock::new(T0)),
                Params::new(1024, 1, 1, None).unwrap(),
            )
            .unwrap(),
        );
        db.add_user("anna", Role::Police, None, "correct horse")
            .unwrap();
        let (_, before) = db.hash_stats();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.check_login_bounded(format!("user{i}"), "pw".into())
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_none());
        }
        let right = db
            .check_login_bounded("anna".into(), "correct horse".into())
            .await
            .unwrap();
        assert_eq!(right.unwrap().name, "anna");
        let (peak, done) = db.hash_stats();
        assert!(peak <= HASH_SLOTS, "{peak}");
        assert_eq!(done - before, 64 + 1);
    }

    /// Finding 2: the login counters survive closing and reopening the database.
    #[test]
    fn login_counters_are_kept_in_the_file() {
        use crate::throttle::{PAIR_LIMIT, Refusal, Throttle};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.sqlite");
        let clock = Arc::new(ManualClock::new(T0));
        let open = || Arc::new(UserDb::open(&path, clock.clone(), UserDb::test_argon()).unwrap());
        let db = open();
        db.add_user("anna", Role::Police, None, "correct horse")
            .unwrap();
        let t = Throttle::persistent(clock.clone(), Duration::ZERO, db.clone()).unwrap();
        for _ in 0..PAIR_LIMIT {
            drop(t.reserve("anna", "10.0.0.9", true).unwrap());
        }
        drop((t, db));
        let db = open();
        let t = Throttle::persistent(clock.clone(), Duration::ZERO, db.clone()).unwrap();
        assert!(matches!(
            t.reserve("anna", "10.0.0.9", true),
            Err(Refusal::Locked(_))
        ));
        assert!(t.reserve("anna", "10.0.0.10", true).is_ok());
    }

    /// A lower item of finding 11: the file and its -wal/-shm are 0600.
    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (d, _clock, db) = db();
        db.add_user("anna", Role::Police, None, "correct horse")
            .unwrap();
        for f in ["users.sqlite", "users.sqlite-wal", "users.sqlite-shm"] {
            let mode = std::fs::metadata(d.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }

    /// The hashing threads' own argon2 (reused memory) agrees with the argon2 crate's
    /// PHC hashing and verification, both ways.
    #[test]
    fn reused_memory_hashing_matches_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let params = UserDb::test_argon();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let theirs = argon
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify_phc(&theirs, b"correct horse"));
        assert!(!verify_phc(&theirs, b"correct horsf"));
        let ours = hash_phc(&argon, &params, b"correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon.verify_password(b"correct horse", &parsed).is_ok());
        assert!(argon.verify_password(b"wrong", &parsed).is_err());
        assert!(!verify_phc("not a hash", b"x"));
    }
}

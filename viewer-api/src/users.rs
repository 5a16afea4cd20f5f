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

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::{Clock, rfc3339};
use crate::policy::{Grant, Role};

/// A session ends after this long without a request.
pub const IDLE_MS: i64 = 15 * 60 * 1000;
/// A session ends this long after login whatever happens.
pub const MAX_SESSION_MS: i64 = 8 * 3600 * 1000;
pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user database {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
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
";

pub struct UserDb {
    conn: Mutex<Connection>,
    path: PathBuf,
    clock: Arc<dyn Clock>,
    argon: Argon2<'static>,
    /// A hash verified for unknown users, so they cost the same as known ones.
    dummy_hash: String,
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
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;",
        )
        .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon);
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let dummy_hash = argon
            .hash_password(b"not a real password", &salt)
            .map_err(|_| UserError::Hash)?
            .to_string();
        Ok(UserDb {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            clock,
            argon,
            dummy_hash,
        })
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

    fn hash(&self, pw: &str) -> Result<String, UserError> {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Ok(self
            .argon
            .hash_password(pw.as_bytes(), &salt)
            .map_err(|_| UserError::Hash)?
            .to_string())
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
    /// user alike (the caller must not tell them apart to the client).
    pub fn check_login(&self, name: &str, password: &str) -> Result<Option<User>, UserError> {
        let found = if valid_user_name(name) {
            self.user_with_hash(name)?
        } else {
            None
        };
        let stored = found
            .as_ref()
            .map(|(_, h)| h.as_str())
            .unwrap_or(&self.dummy_hash);
        let ok = match PasswordHash::new(stored) {
            Ok(parsed) => self
                .argon
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        };
        Ok(match found {
            Some((u, _)) if ok && !u.disabled => Some(u),
            _ => None,
        })
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
}

//! Sessions (tokens kept only as hashes, idle and absolute expiry) and the sign-in
//! counters that must survive a restart, so a lock-out cannot be reset by one.

use super::*;

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

impl UserDb {
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
}

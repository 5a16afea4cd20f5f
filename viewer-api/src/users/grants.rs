//! Contractors' grants as stored: checked against the user and the rules before they
//! are written, listed, revoked.

use super::*;

impl UserDb {
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

//! User accounts as IT manages them: created, listed, disabled, given a new password.

use super::*;

impl UserDb {
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

    pub(super) fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(User, String)> {
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

    pub(super) fn user_with_hash(&self, name: &str) -> Result<Option<(User, String)>, UserError> {
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
}

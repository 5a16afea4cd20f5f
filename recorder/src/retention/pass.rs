//! One retention pass: expire by age, shrink scopes over capacity, publish the state;
//! each deletion in the crash-safe order of the module doc.

use super::*;

impl Retention {
    /// One retention pass: age (when the clock is sane), then capacity, then the
    /// journal's one-year pruning. Reads holds from the catalog each time.
    pub fn pass(&mut self) -> Result<PassReport> {
        let mut report = PassReport::default();
        let now = self.clock.now_unix_ms();
        let clock = self.clock_check();
        if let Err(why) = &clock {
            warn!(reason = %why, "retention: refusing to delete by age");
            report.clock_refused = Some(why.to_string());
        }
        self.holds_at = if clock.is_ok() { now } else { i64::MIN };
        let active = holds::active_on(self.cat.connection(), self.holds_at)?;

        if clock.is_ok() {
            // Cameras with their own retention one by one; all the others in one scan
            // in time order (rows of one period are stored together: fewer pages).
            let own: Vec<String> = self
                .camera_ids()?
                .into_iter()
                .filter(|c| self.policy.retention_ms(c) != self.policy.retention_ms)
                .collect();
            for camera in &own {
                let cutoff = now.saturating_sub(self.policy.retention_ms(camera));
                let (n, b) = self.expire(Some(camera), &[], cutoff, &active)?;
                report.deleted_age += n;
                report.bytes_deleted += b;
            }
            let cutoff = now.saturating_sub(self.policy.retention_ms);
            let (n, b) = self.expire(None, &own, cutoff, &active)?;
            report.deleted_age += n;
            report.bytes_deleted += b;
            report.journal_pruned = journal::prune(self.cat.connection(), now)? as u64;
        }

        // Capacity: each camera's own limit, then the store's, then the file system's.
        let mut cams: Vec<(String, u64)> = self
            .policy
            .camera_max_bytes
            .iter()
            .map(|(c, m)| (c.clone(), *m))
            .collect();
        cams.sort();
        for (camera, max) in cams {
            let used = self.used_bytes(Some(&camera))?;
            if used > max {
                let (n, b, blocked) =
                    self.shrink(Some(&camera), used - max, Reason::Capacity, &active)?;
                report.deleted_capacity += n;
                report.bytes_deleted += b;
                if blocked {
                    report.alarms.push(self.held_alarm(
                        &format!("camera {camera}"),
                        Some(&camera),
                        &format!("max_bytes {max}"),
                        &active,
                    )?);
                }
            }
        }
        let used = self.used_bytes(None)?;
        if used > self.policy.max_bytes {
            let (n, b, blocked) = self.shrink(
                None,
                used - self.policy.max_bytes,
                Reason::Capacity,
                &active,
            )?;
            report.deleted_capacity += n;
            report.bytes_deleted += b;
            if blocked {
                report.alarms.push(self.held_alarm(
                    "store",
                    None,
                    &format!("max_bytes {}", self.policy.max_bytes),
                    &active,
                )?);
            }
        }
        if self.policy.min_free_bytes > 0 {
            let free = (self.free_space)(&self.store).map_err(|source| RetentionError::Io {
                path: self.store.clone(),
                source,
            })?;
            if free < self.policy.min_free_bytes {
                let (n, b, blocked) = self.shrink(
                    None,
                    self.policy.min_free_bytes - free,
                    Reason::Capacity,
                    &active,
                )?;
                report.deleted_capacity += n;
                report.bytes_deleted += b;
                if blocked {
                    report.alarms.push(self.held_alarm(
                        "file system",
                        None,
                        &format!(
                            "min_free_bytes {} (free: {free})",
                            self.policy.min_free_bytes
                        ),
                        &active,
                    )?);
                }
            }
        }
        if let Some(a) = &self.disk_full_alarm {
            // Cleared once a pass finds the store within its limits again.
            if report.alarms.is_empty() && report.deleted() == 0 && !self.store_over_limits()? {
                self.disk_full_alarm = None;
            } else {
                report.alarms.push(a.clone());
            }
        }
        for a in &report.alarms {
            error!(alarm = %a, "retention alarm: held footage is not deleted; recording goes on in the space left");
        }
        if report.deleted() > 0 {
            info!(
                age = report.deleted_age,
                capacity = report.deleted_capacity,
                bytes = report.bytes_deleted,
                "retention deleted segments"
            );
        }
        self.publish(&report, active.len() as u64)?;
        self.ensure_reserve();
        Ok(report)
    }

    pub(super) fn store_over_limits(&self) -> Result<bool> {
        Ok(self.used_bytes(None)? > self.policy.max_bytes)
    }

    pub(super) fn publish(&mut self, report: &PassReport, holds_active: u64) -> Result<()> {
        if let Some(m) = &self.metrics {
            m.retention_alarm.set(i64::from(!report.alarms.is_empty()));
            m.retention_clock_refused
                .set(i64::from(report.clock_refused.is_some()));
            m.holds_active.set(holds_active as i64);
        }
        let state = RetentionState {
            updated: String::new(),
            alarms: report.alarms.clone(),
            clock_refused: report.clock_refused.clone(),
            holds_active,
        };
        if self.last_state.as_ref() != Some(&state) {
            let stored = RetentionState {
                updated: rfc3339(self.clock.now_unix_ms()),
                ..state.clone()
            };
            let json = serde_json::to_string(&stored).expect("serialisable");
            self.cat.set_meta(STATE_META_KEY, &json)?;
            self.last_state = Some(state);
        }
        Ok(())
    }

    pub(super) fn used_bytes(&self, camera: Option<&str>) -> Result<u64> {
        let b: i64 = self.cat.connection().query_row(
            "SELECT COALESCE(SUM(bytes), 0) FROM segment_usage WHERE (?1 IS NULL OR camera_id = ?1)",
            [camera],
            |r| r.get(0),
        )?;
        Ok(b as u64)
    }

    /// Cameras with segments (configured or not).
    pub(super) fn camera_ids(&self) -> Result<Vec<String>> {
        let mut stmt = self.cat.connection().prepare_cached(
            "SELECT camera_id FROM segment_usage WHERE segments > 0 ORDER BY camera_id",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(super) fn held_alarm(
        &self,
        scope: &str,
        camera: Option<&str>,
        limit: &str,
        active: &ActiveHolds,
    ) -> Result<String> {
        let (n, bytes) = self.held_usage(camera, active)?;
        Ok(format!(
            "{scope}: held footage ({n} segments, {bytes} bytes, {} holds in force) keeps it over {limit}; nothing held is deleted",
            active.len()
        ))
    }

    /// Segments and bytes protected by holds in a scope.
    pub(super) fn held_usage(
        &self,
        camera: Option<&str>,
        active: &ActiveHolds,
    ) -> Result<(u64, u64)> {
        let mut seen = BTreeSet::new();
        let mut bytes = 0u64;
        let conn = self.cat.connection();
        let mut stmt = conn.prepare_cached(
            "SELECT rowid, camera_id, bytes FROM segments
             WHERE (?1 IS NULL OR camera_id = ?1) AND start_unix_ms < ?2 AND end_unix_ms >= ?3",
        )?;
        for h in &active.0 {
            let rows = stmt.query_map(params![camera, h.to_unix_ms, h.from_unix_ms], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (rowid, cam, b) = row?;
                if h.cameras.covers(&cam) && seen.insert(rowid) {
                    bytes += b as u64;
                }
            }
        }
        Ok((seen.len() as u64, bytes))
    }

    /// Deletes closed, unheld segments that ended at or before `cutoff`: of one camera,
    /// or (`camera` None) of every camera not in `except`.
    pub(super) fn expire(
        &mut self,
        camera: Option<&str>,
        except: &[String],
        cutoff: i64,
        active: &ActiveHolds,
    ) -> Result<(u64, u64)> {
        let mut cursor = (i64::MIN, i64::MIN);
        let (mut n, mut bytes) = (0, 0);
        let except = serde_json::to_string(except).expect("serialisable");
        loop {
            let batch: Vec<Candidate> = {
                let sql = if camera.is_some() {
                    "SELECT rowid, uuid, camera_id, start_unix_ms, end_unix_ms, bytes, sha256
                     FROM segments
                     WHERE camera_id = ?1 AND ?6 IS NOT NULL AND start_unix_ms <= ?2
                       AND end_unix_ms <= ?2 AND state = 'closed'
                       AND (start_unix_ms, rowid) > (?3, ?4)
                     ORDER BY start_unix_ms, rowid LIMIT ?5"
                } else {
                    "SELECT rowid, uuid, camera_id, start_unix_ms, end_unix_ms, bytes, sha256
                     FROM segments
                     WHERE ?1 IS NULL AND end_unix_ms <= ?2 AND state = 'closed'
                       AND (end_unix_ms, rowid) > (?3, ?4)
                       AND camera_id NOT IN (SELECT value FROM json_each(?6))
                     ORDER BY end_unix_ms, rowid LIMIT ?5"
                };
                let mut stmt = self.cat.connection().prepare_cached(sql)?;
                let rows = stmt.query_map(
                    params![
                        camera,
                        cutoff,
                        cursor.0,
                        cursor.1,
                        self.batch_rows as i64,
                        except
                    ],
                    candidate_from_row,
                )?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
                    .into_iter()
                    .flatten()
                    .collect()
            };
            let Some(last) = batch.last() else { break };
            cursor = if camera.is_some() {
                (last.start_unix_ms, last.rowid)
            } else {
                (last.end_unix_ms, last.rowid)
            };
            let unheld: Vec<Candidate> = batch
                .into_iter()
                .filter(|c| !active.protects(&c.camera, c.start_unix_ms, c.end_unix_ms))
                .collect();
            let (dn, db) = self.delete_batch(&unheld, Reason::Age)?;
            n += dn;
            bytes += db;
        }
        Ok((n, bytes))
    }

    /// Deletes the oldest unheld closed segments of a scope (one camera, or the whole
    /// store) until at least `excess` bytes are gone. Returns (segments, bytes,
    /// blocked): blocked when everything left in the scope is held (or open).
    pub(super) fn shrink(
        &mut self,
        camera: Option<&str>,
        excess: u64,
        reason: Reason,
        active: &ActiveHolds,
    ) -> Result<(u64, u64, bool)> {
        let (mut n, mut freed) = (0u64, 0u64);
        let mut cursor = (i64::MIN, i64::MIN);
        // Store-wide: oldest by end time (indexed); one camera: by start time (indexed).
        let sql = if camera.is_some() {
            "SELECT rowid, uuid, camera_id, start_unix_ms, end_unix_ms, bytes, sha256
             FROM segments WHERE camera_id = ?1 AND state = 'closed'
               AND (start_unix_ms, rowid) > (?2, ?3)
             ORDER BY start_unix_ms, rowid LIMIT ?4"
        } else {
            "SELECT rowid, uuid, camera_id, start_unix_ms, end_unix_ms, bytes, sha256
             FROM segments WHERE ?1 IS NULL AND state = 'closed'
               AND (end_unix_ms, rowid) > (?2, ?3)
             ORDER BY end_unix_ms, rowid LIMIT ?4"
        };
        while freed < excess {
            let page: Vec<Candidate> = {
                let mut stmt = self.cat.connection().prepare_cached(sql)?;
                let rows = stmt.query_map(
                    params![camera, cursor.0, cursor.1, self.batch_rows as i64],
                    candidate_from_row,
                )?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
                    .into_iter()
                    .flatten()
                    .collect()
            };
            let Some(last) = page.last() else {
                return Ok((n, freed, true));
            };
            cursor = if camera.is_some() {
                (last.start_unix_ms, last.rowid)
            } else {
                (last.end_unix_ms, last.rowid)
            };
            let mut take = Vec::new();
            let mut want = freed;
            for c in page {
                if want >= excess {
                    break;
                }
                if active.protects(&c.camera, c.start_unix_ms, c.end_unix_ms) {
                    continue;
                }
                want += c.bytes;
                take.push(c);
            }
            let (dn, db) = self.delete_batch(&take, reason)?;
            n += dn;
            freed += db;
        }
        Ok((n, freed, false))
    }

    /// Deletes a batch (crash-safe order, see the module doc). Holds are re-read inside
    /// the write transaction, so a hold committed before it is always honoured.
    pub(super) fn delete_batch(
        &mut self,
        batch: &[Candidate],
        reason: Reason,
    ) -> Result<(u64, u64)> {
        if batch.is_empty() {
            return Ok((0, 0));
        }
        let now = self.clock.now_unix_ms();
        let mut deleted = Vec::with_capacity(batch.len());
        {
            let tx =
                Transaction::new_unchecked(self.cat.connection(), TransactionBehavior::Immediate)?;
            let active = holds::active_on(&tx, self.holds_at)?;
            {
                let mut del = tx.prepare_cached(
                    "DELETE FROM segments WHERE rowid = ?1 AND uuid = ?2 AND state = 'closed'",
                )?;
                for c in batch {
                    if active.protects(&c.camera, c.start_unix_ms, c.end_unix_ms) {
                        continue;
                    }
                    if del.execute(params![c.rowid, c.id.to_string()])? != 1 {
                        continue; // gone already (another deleter)
                    }
                    journal::append(
                        &tx,
                        &journal::Entry {
                            segment: c.id.to_string(),
                            camera: c.camera.clone(),
                            from_unix_ms: c.start_unix_ms,
                            to_unix_ms: c.end_unix_ms,
                            bytes: c.bytes,
                            sha256: c.sha256.clone(),
                            deleted_unix_ms: now,
                            reason: reason.as_str().to_string(),
                        },
                    )?;
                    deleted.push(c);
                }
            }
            if self.crash_after == Some(DeleteStep::RowsAndJournal) {
                return Err(RetentionError::InjectedCrash(DeleteStep::RowsAndJournal));
            }
            tx.commit()?;
        }
        if self.crash_after == Some(DeleteStep::Commit) {
            return Err(RetentionError::InjectedCrash(DeleteStep::Commit));
        }
        let mut dirs = BTreeSet::new();
        for c in &deleted {
            let path = catalog::segment_path(&self.store, &c.camera, c.id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    // The key is gone already: the footage is erased; the file is an
                    // orphan that the next start removes.
                    error!(file = %path.display(), error = %source, "cannot unlink a deleted segment");
                }
            }
            if let Some(d) = path.parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        if self.crash_after == Some(DeleteStep::Unlink) {
            return Err(RetentionError::InjectedCrash(DeleteStep::Unlink));
        }
        for d in &dirs {
            if let Err(e) = crate::store::sync_dir(d) {
                warn!(dir = %d.display(), error = %e, "cannot sync directory after deletion");
            }
        }
        if self.crash_after == Some(DeleteStep::SyncDir) {
            return Err(RetentionError::InjectedCrash(DeleteStep::SyncDir));
        }
        let bytes: u64 = deleted.iter().map(|c| c.bytes).sum();
        if let Some(m) = &self.metrics {
            for c in &deleted {
                let l = DeletionLabel {
                    camera: c.camera.clone(),
                    reason: reason.as_str().to_string(),
                };
                m.segments_deleted.get_or_create(&l).inc();
                m.bytes_deleted.get_or_create(&l).inc_by(c.bytes);
            }
            m.store_bytes.dec_by(bytes as i64);
        }
        Ok((deleted.len() as u64, bytes))
    }
}

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
        Ok(self.cat.usage_bytes(camera)?)
    }

    /// Cameras with segments (configured or not).
    pub(super) fn camera_ids(&self) -> Result<Vec<String>> {
        Ok(self.cat.cameras_with_segments()?)
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
        Ok(self.cat.held_usage(camera, active)?)
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
        let scan = Scan::Expired {
            camera,
            except,
            cutoff_unix_ms: cutoff,
        };
        loop {
            let batch = self.cat.candidates(&scan, cursor, self.batch_rows)?;
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
        let scan = Scan::Oldest { camera };
        while freed < excess {
            let page = self.cat.candidates(&scan, cursor, self.batch_rows)?;
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
        let deleted: Vec<&Candidate> = match self.cat.delete_unheld(
            batch,
            self.holds_at,
            reason,
            now,
            self.crash_after == Some(DeleteStep::RowsAndJournal),
        ) {
            Ok(i) => i.into_iter().map(|i| &batch[i]).collect(),
            Err(DeleteError::Aborted) => {
                return Err(RetentionError::InjectedCrash(DeleteStep::RowsAndJournal));
            }
            Err(DeleteError::Sql(e)) => return Err(e.into()),
            Err(DeleteError::Holds(e)) => return Err(e.into()),
        };
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

//! The queue of exports: who may ask for one more (quotas), taking a request with its
//! hold, the worker that runs them one at a time, and the sweep that expires them.

use super::*;

impl Exports {
    /// Whether `owner` may ask for one more export now: `Err` says why not (too many
    /// in progress, for them or for everyone; too many kept; the disk nearly full).
    pub fn check_quota(&self, owner: &str) -> Result<(), String> {
        let count = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> Result<i64, String> {
            self.db()
                .query_row(sql, args, |r| r.get(0))
                .map_err(|e| format!("exports database: {e}"))
        };
        let mine = count(
            "SELECT COUNT(*) FROM exports WHERE owner = ?1 AND state IN ('queued', 'running')",
            &[&owner],
        )?;
        if mine >= MAX_ACTIVE_PER_USER {
            return Err(format!(
                "you have {mine} exports in progress (at most {MAX_ACTIVE_PER_USER}); wait for one to finish"
            ));
        }
        let all = count(
            "SELECT COUNT(*) FROM exports WHERE state IN ('queued', 'running')",
            &[],
        )?;
        if all >= MAX_ACTIVE {
            return Err(format!(
                "{all} exports are in progress (at most {MAX_ACTIVE}); try again later"
            ));
        }
        let kept = count(
            "SELECT COUNT(*) FROM exports WHERE owner = ?1 AND state = 'done'",
            &[&owner],
        )?;
        if kept >= MAX_KEPT_PER_USER {
            return Err(format!(
                "you keep {kept} finished exports (at most {MAX_KEPT_PER_USER}); delete some you have downloaded"
            ));
        }
        let free = recorder::footage::file_system_space(&self.dir)
            .map(|f| f.free_bytes)
            .map_err(|e| format!("exports: {e}"))?;
        if free < MIN_FREE_BYTES {
            return Err(format!(
                "the exports' disk is nearly full ({} MiB free); delete finished exports",
                free / (1024 * 1024)
            ));
        }
        Ok(())
    }

    /// Validates and queues an export, placing its hold. The caller has authorised
    /// and logged the request. Returns the export id.
    pub fn request(&self, req: &NewExport) -> Result<String, ExportError> {
        let now = self.clock.now_unix_ms();
        if self.recorder.public_key().is_err() {
            return Err(ExportError::Store(
                "this device has no signing key yet (run `recorder init`)".into(),
            ));
        }
        if req.cameras.is_empty() {
            return Err(ExportError::Invalid("name at least one camera".into()));
        }
        if req.from_ms >= req.to_ms {
            return Err(ExportError::Invalid("from must be earlier than to".into()));
        }
        if req.to_ms - req.from_ms > MAX_RANGE_MS {
            return Err(ExportError::Invalid(
                "an export covers at most 24 hours".into(),
            ));
        }
        let id = hex::encode(SegmentId::random().0);
        let hold = self
            .recorder
            .add_hold(
                &req.log,
                &NewHold {
                    cameras: HoldCameras::Some(req.cameras.clone()),
                    from_unix_ms: req.from_ms - LOOKBACK_MS,
                    to_unix_ms: req.to_ms,
                    case_ref: req.case.clone(),
                    placed_by: req.by.clone(),
                    until_unix_ms: Some(now + HOLD_SAFETY_MS),
                },
                now,
            )
            .map_err(|e| match e {
                SideError::Invalid(m) => ExportError::Invalid(m),
                e => ExportError::Store(e.to_string()),
            })?;
        let r = self.db().execute(
            "INSERT INTO exports(id, owner, case_ref, reason, cameras, from_ms, to_ms, state,
                                 created_ms, hold_id, client, log_seq, log_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9, ?10, ?11, ?12)",
            params![
                id,
                req.by,
                req.case,
                req.reason,
                req.cameras.join(","),
                req.from_ms,
                req.to_ms,
                now,
                hold,
                req.client,
                req.log.seq,
                req.log.hash
            ],
        );
        if let Err(e) = r {
            let _ = self
                .recorder
                .release_hold(&req.log, hold, "export request failed", now);
            return Err(e.into());
        }
        info!(export = %id, by = %req.by, case = %req.case, cameras = %req.cameras.join(","), "export queued");
        let (m, cv) = &self.wake;
        *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        Ok(id)
    }

    /// Runs every queued job, oldest first; returns how many ran.
    pub fn run_pending(&self) -> usize {
        let mut n = 0;
        loop {
            let next: Option<Job> = {
                let db = self.db();
                let r = db
                    .query_row(
                        &format!(
                            "SELECT {COLUMNS} FROM exports WHERE state='queued' ORDER BY created_ms, rowid LIMIT 1"
                        ),
                        [],
                        job_row,
                    )
                    .optional();
                match r {
                    Ok(Some(j)) => {
                        if let Err(e) =
                            db.execute("UPDATE exports SET state='running' WHERE id=?1", [&j.id])
                        {
                            error!(error = %e, "cannot start an export");
                            return n;
                        }
                        Some(j)
                    }
                    Ok(None) => None,
                    Err(e) => {
                        error!(error = %e, "cannot read the export queue");
                        None
                    }
                }
            };
            let Some(job) = next else { return n };
            n += 1;
            self.set_progress(&job.id, 0.0);
            let started = std::time::Instant::now();
            match self.run_job(&job) {
                Ok(done) => {
                    let now = self.clock.now_unix_ms();
                    let expires = now + self.ttl_ms;
                    let r = self.db().execute(
                        "UPDATE exports SET state='done', finished_ms=?2, expires_ms=?3,
                                wrapped_key=?4, bytes=?5, manifest_sha256=?6 WHERE id=?1",
                        params![
                            job.id,
                            now,
                            expires,
                            done.wrapped_key,
                            done.bytes as i64,
                            done.manifest_sha256
                        ],
                    );
                    match r {
                        Ok(_) => {
                            self.release_hold(&job);
                            let _ = self.log(Self::job_entries(
                                &job,
                                "export.done",
                                format!(
                                    "allowed; done: {} bytes, {} frames, manifest sha256 {}; expires {}",
                                    done.bytes,
                                    done.frames,
                                    done.manifest_sha256,
                                    rfc3339(expires)
                                ),
                            ));
                            info!(export = %job.id, bytes = done.bytes, frames = done.frames,
                                  secs = started.elapsed().as_secs_f64(), "export done");
                        }
                        Err(e) => self.fail(&job, &format!("cannot record the result: {e}")),
                    }
                }
                Err(why) => {
                    warn!(export = %job.id, error = %why, "export failed");
                    self.fail(&job, &why);
                }
            }
            self.progress
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&job.id);
        }
    }

    /// Deletes finished exports whose time is up (and failed ones' leftovers),
    /// journaling each in the access log. Returns how many expired.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now_unix_ms();
        let due: Vec<Job> = {
            let db = self.db();
            let r = db
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM exports WHERE state='done' AND expires_ms <= ?1"
                ))
                .and_then(|mut st| st.query_map([now], job_row)?.collect());
            match r {
                Ok(v) => v,
                Err(e) => {
                    error!(error = %e, "cannot list expired exports");
                    return 0;
                }
            }
        };
        let mut n = 0;
        for job in due {
            // Journal first: a deletion is never without its entry.
            let entries = Self::job_entries(
                &job,
                "export.expire",
                format!(
                    "allowed; deleted: export_ttl reached ({})",
                    job.expires_ms.map(rfc3339).unwrap_or_default()
                ),
            )
            .into_iter()
            .map(|e| NewEntry {
                actor: "system".into(),
                role: "system".into(),
                client: None,
                ..e
            })
            .collect();
            if let Err(e) = self.log(entries) {
                error!(error = %e, "cannot journal an export expiry; it stays until the log can be written");
                return n;
            }
            let r = self.db().execute(
                "UPDATE exports SET state='expired', wrapped_key=NULL, deleted_ms=?2 WHERE id=?1",
                params![job.id, now],
            );
            if let Err(e) = r {
                error!(error = %e, "cannot mark an export expired");
                continue;
            }
            let _ = std::fs::remove_file(self.bundle_path(&job.id));
            let _ = recorder::store::sync_dir(&self.dir);
            info!(export = %job.id, "export expired and deleted");
            n += 1;
        }
        n
    }

    /// Starts the background worker: runs queued jobs, expires old exports (at least
    /// every minute).
    pub fn spawn_worker(self: &Arc<Self>) -> std::thread::JoinHandle<()> {
        let me = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("exports".into())
            .spawn(move || {
                loop {
                    let Some(e) = me.upgrade() else { return };
                    e.run_pending();
                    e.sweep();
                    let (m, cv) = &e.wake;
                    let mut woken = m.lock().unwrap_or_else(|p| p.into_inner());
                    if !*woken {
                        woken = cv
                            .wait_timeout(woken, Duration::from_secs(30))
                            .map(|(g, _)| g)
                            .unwrap_or_else(|p| p.into_inner().0);
                    }
                    *woken = false;
                }
            })
            .expect("spawn the export worker")
    }
}

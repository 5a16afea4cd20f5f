//! A full disk: the reserve file that lets the catalog commit a deletion when nothing
//! else fits, and the emergency deletion a writer asks for on ENOSPC.

use super::*;

impl Retention {
    /// Size of the space reserve (0: none). Created at the next pass.
    pub fn set_reserve_bytes(&mut self, bytes: u64) {
        self.reserve_bytes = bytes;
        if bytes == 0 {
            let _ = std::fs::remove_file(self.store.join(RESERVE_FILE));
        }
    }

    /// Creates the reserve file when it is missing (best effort).
    pub(super) fn ensure_reserve(&self) {
        if self.reserve_bytes == 0 {
            return;
        }
        let path = self.store.join(RESERVE_FILE);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == self.reserve_bytes) {
            return;
        }
        let r = (|| -> io::Result<()> {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            // Allocated, not just sized: the blocks must really be there for the
            // catalog on a full disk.
            rustix::fs::fallocate(
                &f,
                rustix::fs::FallocateFlags::empty(),
                0,
                self.reserve_bytes,
            )?;
            f.sync_all()
        })();
        if let Err(e) = r {
            let _ = std::fs::remove_file(&path);
            warn!(file = %path.display(), error = %e, "cannot allocate the space reserve");
        }
    }

    /// Gives the reserve up; true when there was one.
    pub(super) fn release_reserve(&self) -> bool {
        std::fs::remove_file(self.store.join(RESERVE_FILE)).is_ok()
    }

    /// Replaces statvfs (tests).
    pub fn set_free_space_fn(&mut self, f: impl Fn(&Path) -> io::Result<u64> + Send + 'static) {
        self.free_space = Box::new(f);
    }

    /// Emergency deletion for a write that failed with ENOSPC: deletes the oldest
    /// unheld segments of the store (at least one) until `needed_bytes` are freed.
    /// Returns the bytes freed; 0 (and an alarm) when nothing could be deleted.
    pub fn free_for_disk_full(&mut self, camera: &str, needed_bytes: u64) -> u64 {
        // Free the reserve's worth too: the catalog and the segment being finished need
        // room right after this.
        let target = needed_bytes.max(1) + 2 * self.reserve_bytes;
        let attempt = |this: &mut Self| -> Result<(u64, u64, bool)> {
            let sane = this.clock_check().is_ok();
            this.holds_at = if sane {
                this.clock.now_unix_ms()
            } else {
                i64::MIN
            };
            let active = holds::active_on(this.cat.connection(), this.holds_at)?;
            this.shrink(None, target, Reason::DiskFull, &active)
        };
        let mut r = attempt(self);
        if matches!(r, Err(RetentionError::Sql(_) | RetentionError::Catalog(_)))
            && self.release_reserve()
        {
            // The catalog could not commit on the full disk: give it the reserve.
            warn!(
                camera,
                "disk full: catalog needs room; releasing the space reserve"
            );
            r = attempt(self);
        }
        if matches!(r, Err(RetentionError::Sql(_) | RetentionError::Catalog(_))) {
            // Last resort: a truncated WAL gives its space back to the file system.
            warn!(
                camera,
                "disk full: catalog needs room; truncating its write-ahead log"
            );
            let _ = self.cat.truncate_wal();
            r = attempt(self);
        }
        self.ensure_reserve();
        match r {
            Ok((n, freed, blocked)) => {
                if n > 0 {
                    warn!(
                        camera,
                        segments = n,
                        bytes = freed,
                        "disk full: deleted the oldest unheld segments"
                    );
                }
                if blocked && freed == 0 {
                    let a = "file system: disk full and no unheld segment left to delete; \
                             recording waits for space"
                        .to_string();
                    error!(camera, alarm = %a, "retention alarm");
                    if let Some(m) = &self.metrics {
                        m.retention_alarm.set(1);
                    }
                    self.disk_full_alarm = Some(a);
                }
                freed
            }
            Err(e) => {
                error!(camera, error = %e, "disk full: emergency deletion failed");
                0
            }
        }
    }
}

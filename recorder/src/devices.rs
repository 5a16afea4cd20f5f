//! The box's own hardware as the recorder watches it: the disk under the store.
//!
//! A store on a failing disk loses footage silently: the kernel remounts the file
//! system read-only after an error, a card wears out, SMART sees sectors go bad long
//! before the first write fails. The recorder owns the store, so it looks: a probe at
//! start and then every [`PROBE_INTERVAL`] (smartctl may take seconds, so never on a
//! request's path), kept for the service's `Health` answer (the viewer-api's
//! `/api/v1/health` and console) and the metrics (`ringfence_storage_*`, alarmed by
//! `image/monitoring/ringfence-alerts.yml`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hardware::storage::{
    Alarm, LinuxStorage, StorageHealth, StorageReport, SystemCommands, Thresholds,
};

use crate::config::Config;
use crate::metrics::Metrics;

/// How often the disk is looked at.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(60);

/// The alarms' kinds, exported each as a 0/1 gauge so an absent alarm reads 0.
const ALARM_KINDS: [&str; 6] = [
    "read_only",
    "io_errors",
    "smart_failed",
    "smart_warning",
    "almost_full",
    "unknown",
];

/// When the store's disk needs a person. The ring buffer runs its file system near
/// full by design (retention keeps `min_free_bytes` free), so "almost full" means
/// retention is not keeping up: less than half of that reserve left, or no byte free.
pub fn thresholds(config: &Config) -> Thresholds {
    Thresholds {
        almost_full_percent: 100,
        min_available_bytes: config.storage.min_free_bytes / 2,
        ..Thresholds::default()
    }
}

/// The latest storage report, refreshed by a thread of its own.
pub struct StorageWatch {
    latest: Arc<Mutex<StorageReport>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StorageWatch {
    /// Watches the disk under the store of `config` with the Linux probe.
    pub fn start(config: &Config, metrics: Option<Arc<Metrics>>) -> StorageWatch {
        let probe = LinuxStorage::new(&config.storage.path)
            .with_runner(Arc::new(SystemCommands::default()))
            .with_thresholds(thresholds(config));
        StorageWatch::with_probe(
            &config.storage.path,
            Box::new(probe),
            PROBE_INTERVAL,
            metrics,
        )
    }

    /// Watches with any probe (a simulated one in tests), every `interval`.
    pub fn with_probe(
        store: &Path,
        probe: Box<dyn StorageHealth>,
        interval: Duration,
        metrics: Option<Arc<Metrics>>,
    ) -> StorageWatch {
        let latest = Arc::new(Mutex::new(StorageReport::empty(store)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (latest, stop) = (latest.clone(), stop.clone());
            std::thread::Builder::new()
                .name("storage-health".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let report = probe.probe();
                        publish(&report, metrics.as_deref());
                        *latest.lock().unwrap_or_else(|p| p.into_inner()) = report;
                        // Sleep in short steps so that a stop is quick.
                        let mut left = interval;
                        while !left.is_zero() && !stop.load(Ordering::SeqCst) {
                            let step = left.min(Duration::from_millis(200));
                            std::thread::sleep(step);
                            left -= step;
                        }
                    }
                })
                .ok()
        };
        StorageWatch {
            latest,
            stop,
            thread,
        }
    }

    /// The newest report (empty, "not probed", until the first probe ends).
    pub fn report(&self) -> StorageReport {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for StorageWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn publish(report: &StorageReport, metrics: Option<&Metrics>) {
    for alarm in &report.alarms {
        match alarm.severity() {
            hardware::storage::Severity::Critical => {
                tracing::error!(store = %report.path.display(), alarm = %alarm, "storage alarm")
            }
            hardware::storage::Severity::Warning => {
                tracing::warn!(store = %report.path.display(), alarm = %alarm, "storage warning")
            }
        }
    }
    let Some(m) = metrics else { return };
    for kind in ALARM_KINDS {
        let on = report.alarms.iter().any(|a: &Alarm| a.kind() == kind);
        m.storage_alarm
            .get_or_create(&crate::metrics::AlarmLabel {
                kind: kind.to_string(),
            })
            .set(i64::from(on));
    }
    if let Some(fill) = &report.fill {
        m.storage_used_percent.set(i64::from(fill.used_percent));
        m.storage_available_bytes
            .set(i64::try_from(fill.available_bytes).unwrap_or(i64::MAX));
    }
    m.storage_io_errors
        .set(i64::try_from(report.io_error_count()).unwrap_or(i64::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;
    use hardware::storage::Simulated;

    fn wait_for(w: &StorageWatch, what: impl Fn(&StorageReport) -> bool) -> StorageReport {
        for _ in 0..500 {
            let r = w.report();
            if what(&r) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "the watch never reported what was expected: {:?}",
            w.report()
        );
    }

    #[test]
    fn a_disk_turning_read_only_reaches_the_report_and_the_metrics() {
        let sim = Arc::new(Simulated::new("/store"));
        sim.set_fill(1000, 500, 500);
        let metrics = Arc::new(Metrics::new());
        let probe = Box::new(sim.clone());
        let w = StorageWatch::with_probe(
            Path::new("/store"),
            probe,
            Duration::from_millis(20),
            Some(metrics.clone()),
        );
        let r = wait_for(&w, |r| r.fill.is_some());
        assert!(r.alarms.is_empty(), "{:?}", r.alarms);
        assert!(
            metrics
                .encode()
                .contains("ringfence_storage_alarm{kind=\"read_only\"} 0")
        );
        sim.set_read_only(true);
        sim.set_io_errors(3);
        let r = wait_for(&w, |r| !r.alarms.is_empty() && r.io_error_count() == 3);
        assert!(r.alarms.contains(&Alarm::ReadOnly), "{:?}", r.alarms);
        let text = metrics.encode();
        assert!(
            text.contains("ringfence_storage_alarm{kind=\"read_only\"} 1"),
            "{text}"
        );
        assert!(text.contains("ringfence_storage_io_errors 3"), "{text}");
        assert!(text.contains("ringfence_storage_used_percent 50"), "{text}");
    }

    #[test]
    fn the_reserve_not_a_percentage_decides_almost_full() {
        let config = Config::parse(
            "[storage]\npath = \"/s\"\nmin_free_bytes = 1000\n[keys]\nkek_file = \"/k\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let t = thresholds(&config);
        let sim = Simulated::new("/s").with_thresholds(t);
        // 99 % used but the reserve is there: the ring buffer at work, no alarm.
        sim.set_fill(100_000, 99_000, 1_000);
        assert!(sim.probe().alarms.is_empty(), "{:?}", sim.probe().alarms);
        // Less than half of the reserve left: retention is not keeping up.
        sim.set_fill(100_000, 99_600, 400);
        assert!(matches!(
            sim.probe().alarms.as_slice(),
            [Alarm::AlmostFull { .. }]
        ));
    }
}

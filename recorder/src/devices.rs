//! The box's own hardware as the recorder watches it: the disk under the store, and
//! the case-open switch.
//!
//! A store on a failing disk loses footage silently: the kernel remounts the file
//! system read-only after an error, a card wears out, SMART sees sectors go bad long
//! before the first write fails. The recorder owns the store, so it looks: a probe at
//! start and then every [`PROBE_INTERVAL`] (smartctl may take seconds, so never on a
//! request's path), kept for the service's `Health` answer (the viewer-api's
//! `/api/v1/health` and console) and the metrics (`ringfence_storage_*`, alarmed by
//! `image/monitoring/ringfence-alerts.yml`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hardware::storage::{
    Alarm, LinuxStorage, StorageHealth, StorageReport, SystemCommands, Thresholds,
};

use hardware::tamper::{
    AckError, Acknowledgement, GpioSwitch, TamperError, TamperInput, TamperMonitor, TamperNotice,
    TamperStatus, UnixMs,
};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::stop::Stop;

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

/// A watching thread that is told to stop, and joined, when its owner is dropped.
struct Watcher {
    stop: Arc<Stop>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Runs `watch(stop)` on a thread named `name` (none if the thread cannot start:
    /// the watch then reports nothing, which its report says).
    fn spawn(name: &str, watch: impl FnOnce(&Stop) + Send + 'static) -> Watcher {
        let stop = Arc::new(Stop::default());
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || watch(&stop))
                .ok()
        };
        Watcher { stop, thread }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.set();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The latest storage report, refreshed by a thread of its own.
pub struct StorageWatch {
    latest: Arc<Mutex<StorageReport>>,
    _watcher: Watcher,
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
        let watcher = {
            let latest = latest.clone();
            Watcher::spawn("storage-health", move |stop| {
                loop {
                    let report = probe.probe();
                    publish(&report, metrics.as_deref());
                    *latest.lock().unwrap_or_else(|p| p.into_inner()) = report;
                    if !stop.sleep(interval) {
                        break;
                    }
                }
            })
        };
        StorageWatch {
            latest,
            _watcher: watcher,
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

// ---------------------------------------------------------------------------------
// The case-open switch.
//
// An opened case at a site nobody may enter is an event the people filmed, and a court,
// may ask about: it is latched until an IT user acknowledges it, kept across restarts
// (`tamper-latch.json` in the store), and every notice (opened, found open, closed,
// input failed, acknowledged) is journalled with a sequence number
// (`tamper-events.jsonl`) so that the viewer-api writes each into the access log exactly
// in order, after restarts of either process. The recorder cannot write the access log
// itself (the design's privilege split); it only keeps what happened.

/// The latch, in the store.
pub const TAMPER_LATCH_FILE: &str = "tamper-latch.json";
/// The journal of notices, in the store.
pub const TAMPER_EVENTS_FILE: &str = "tamper-events.jsonl";
/// How long after a failure the switch is opened again.
const TAMPER_REOPEN: Duration = Duration::from_secs(10);
/// How often the watch looks at its stop flag while waiting for edges.
const TAMPER_POLL: Duration = Duration::from_millis(500);

/// One journalled notice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TamperRecord {
    pub seq: u64,
    pub notice: TamperNotice,
}

/// Opens the switch's input; called again after each failure.
pub type OpenInput = Box<dyn Fn() -> Result<Box<dyn TamperInput>, TamperError> + Send>;

struct Journal {
    path: std::path::PathBuf,
    records: Vec<TamperRecord>,
}

impl Journal {
    fn open(path: std::path::PathBuf) -> Result<Journal, TamperError> {
        let bad = |reason: String| TamperError::LatchFile {
            path: path.clone(),
            reason,
        };
        let records = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).map_err(|e| bad(e.to_string())))
                .collect::<Result<Vec<TamperRecord>, _>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(bad(e.to_string())),
        };
        Ok(Journal { path, records })
    }

    fn append(&mut self, notice: TamperNotice) {
        use std::io::Write;
        let record = TamperRecord {
            seq: self.records.last().map_or(1, |r| r.seq + 1),
            notice,
        };
        let line = serde_json::to_string(&record).expect("a notice serialises");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(format!("{line}\n").as_bytes())?;
                f.sync_data()
            });
        if let Err(e) = written {
            // Kept in memory still: the viewer-api gets it until the recorder restarts.
            tracing::error!(file = %self.path.display(), error = %e, "cannot journal a tamper notice");
        }
        self.records.push(record);
    }
}

/// The case-open switch, watched by a thread of its own.
pub struct TamperWatch {
    monitor: Arc<TamperMonitor>,
    journal: Arc<Mutex<Journal>>,
    metrics: Option<Arc<Metrics>>,
    _watcher: Watcher,
}

impl TamperWatch {
    /// Watches the switch `[tamper]` names, if it names one. An unreadable latch or
    /// journal is an error (the recorder does not start on a doubt about an alarm);
    /// a switch that cannot be opened is not: it is an alarm-worthy notice, retried.
    pub fn start(
        config: &Config,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Option<TamperWatch>, TamperError> {
        let Some(switch) = config.tamper.clone() else {
            return Ok(None);
        };
        let open: OpenInput = Box::new(move || {
            GpioSwitch::open(&switch).map(|s| Box::new(s) as Box<dyn TamperInput>)
        });
        TamperWatch::with_input(
            &config.storage.path,
            open,
            hardware::tamper::system_clock(),
            metrics,
            TAMPER_REOPEN,
        )
        .map(Some)
    }

    /// Watches any input (a simulated one in tests); `reopen` after a failure.
    pub fn with_input(
        store: &Path,
        open: OpenInput,
        clock: UnixMs,
        metrics: Option<Arc<Metrics>>,
        reopen: Duration,
    ) -> Result<TamperWatch, TamperError> {
        let monitor = Arc::new(TamperMonitor::with_latch_file(
            clock,
            store.join(TAMPER_LATCH_FILE),
        )?);
        let journal = Arc::new(Mutex::new(Journal::open(store.join(TAMPER_EVENTS_FILE))?));
        let watcher = {
            let (monitor, journal, metrics) = (monitor.clone(), journal.clone(), metrics.clone());
            Watcher::spawn("tamper", move |stop| {
                let note = |n: TamperNotice| {
                    match &n {
                        TamperNotice::Opened { .. } | TamperNotice::FoundOpen { .. } => {
                            tracing::error!(notice = ?n, "the case was opened")
                        }
                        _ => tracing::warn!(notice = ?n, "tamper input"),
                    }
                    journal.lock().unwrap_or_else(|p| p.into_inner()).append(n);
                    publish_tamper(&monitor.status(), metrics.as_deref());
                };
                while !stop.is_set() {
                    let result = open().and_then(|input| {
                        publish_tamper(&monitor.status(), metrics.as_deref());
                        hardware::tamper::watch(
                            &monitor,
                            &*input,
                            TAMPER_POLL,
                            stop.flag(),
                            &mut |n| note(n),
                        )
                    });
                    if let Err(e) = result {
                        if let Some(n) = monitor.on_input_error(&e.to_string()) {
                            note(n);
                        }
                        publish_tamper(&monitor.status(), metrics.as_deref());
                    }
                    stop.sleep(reopen);
                }
            })
        };
        Ok(TamperWatch {
            monitor,
            journal,
            metrics,
            _watcher: watcher,
        })
    }

    pub fn status(&self) -> TamperStatus {
        self.monitor.status()
    }

    /// Notices after `seq`, oldest first, at most `limit`.
    pub fn events_after(&self, seq: u64, limit: usize) -> Vec<TamperRecord> {
        let j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        j.records
            .iter()
            .filter(|r| r.seq > seq)
            .take(limit)
            .cloned()
            .collect()
    }

    /// An IT user's acknowledgement (journalled like every notice).
    pub fn acknowledge(&self, by: &str) -> Result<Acknowledgement, AckError> {
        let ack = self.monitor.acknowledge(by)?;
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(TamperNotice::Acknowledged(ack.clone()));
        publish_tamper(&self.monitor.status(), self.metrics.as_deref());
        Ok(ack)
    }
}

fn publish_tamper(status: &TamperStatus, metrics: Option<&Metrics>) {
    let Some(m) = metrics else { return };
    m.tamper_alarm.set(i64::from(status.alarm.is_some()));
    m.tamper_input_ok.set(i64::from(
        status.input_error.is_none() && status.state != hardware::tamper::CaseState::Unknown,
    ));
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
    fn a_watcher_waiting_an_hour_stops_as_soon_as_it_is_told() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let w = Watcher::spawn("test-wait", move |stop| {
            started_tx.send(()).unwrap();
            let went_on = stop.sleep(Duration::from_secs(3600));
            done_tx.send(went_on).unwrap();
        });
        started_rx.recv().unwrap();
        let stopping = std::thread::spawn(move || drop(w));
        assert_eq!(
            done_rx.recv_timeout(Duration::from_secs(10)),
            Ok(false),
            "the hour's wait ended, told to stop"
        );
        stopping.join().unwrap();
        let idle = Stop::default();
        assert!(
            idle.sleep(Duration::from_millis(1)),
            "not told: the wait runs out"
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

    /// A watch over a simulated switch in `store` (one input; a reopen fails).
    pub(crate) fn simulated_watch(
        store: &Path,
        initial: hardware::tamper::CaseState,
        metrics: Option<Arc<Metrics>>,
    ) -> (hardware::tamper::SimulatedSwitch, TamperWatch) {
        let (switch, input) = hardware::tamper::simulated(initial);
        let slot = Mutex::new(Some(input));
        let open: OpenInput = Box::new(move || {
            slot.lock()
                .unwrap()
                .take()
                .map(|i| Box::new(i) as Box<dyn TamperInput>)
                .ok_or(TamperError::Simulated(
                    "the simulated switch is gone".into(),
                ))
        });
        let clock: UnixMs = Arc::new(|| 1_000);
        let w = TamperWatch::with_input(store, open, clock, metrics, Duration::from_secs(3600))
            .unwrap();
        (switch, w)
    }

    fn wait_events(w: &TamperWatch, n: usize) -> Vec<TamperRecord> {
        for _ in 0..500 {
            let e = w.events_after(0, 100);
            if e.len() >= n {
                return e;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("expected {n} notices, have {:?}", w.events_after(0, 100));
    }

    #[test]
    fn an_opening_is_latched_journalled_and_kept_until_acknowledged() {
        use hardware::tamper::CaseState;
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let (switch, w) = simulated_watch(dir.path(), CaseState::Closed, Some(metrics.clone()));
        switch.open(5_000);
        switch.close(6_000);
        let e = wait_events(&w, 2);
        assert_eq!(e[0].seq, 1);
        assert_eq!(e[0].notice, TamperNotice::Opened { at_unix_ms: 5_000 });
        assert_eq!(e[1].notice, TamperNotice::Closed { at_unix_ms: 6_000 });
        assert_eq!(w.status().alarm.unwrap().opened_at_unix_ms, 5_000);
        assert!(metrics.encode().contains("ringfence_tamper_alarm 1"));
        // Closing the case does not clear the alarm, and neither does a restart.
        drop(w);
        let (_switch, w) = simulated_watch(dir.path(), CaseState::Closed, None);
        assert!(w.status().alarm.is_some());
        assert_eq!(w.events_after(1, 100).len(), 1);
        // An IT user's acknowledgement clears it, and is a notice too.
        let ack = w.acknowledge("ivan").unwrap();
        assert_eq!(ack.alarm.opened_at_unix_ms, 5_000);
        let e = w.events_after(2, 100);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].seq, 3);
        assert!(matches!(&e[0].notice, TamperNotice::Acknowledged(a) if a.by == "ivan"));
        assert!(w.status().alarm.is_none());
        assert_eq!(w.acknowledge("ivan").unwrap_err(), AckError::NothingLatched);
    }
}

//! The service manager's watchdog. On the appliance systemd restarts a service that
//! stops pinging within `WatchdogSec=` (and drives the hardware watchdog itself), so a
//! process pings only while it is really working: every part it cannot live without
//! (a writer thread, the async runtime that runs the pinger) must have shown
//! life recently. A hung writer then means a restart, not a box that looks up and
//! records nothing.
//!
//! [`Systemd`] is the Linux backend (`sd_notify`, a no-op when the process was not
//! started by systemd); [`Simulated`] records what would have been sent.

use std::io;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a service tells its manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Started and serving.
    Ready,
    /// Alive (resets the manager's watchdog timer).
    Watchdog,
    /// Shutting down on purpose.
    Stopping,
    /// A line for `systemctl status`.
    Status(String),
}

pub trait Notifier: Send + Sync {
    fn notify(&self, notice: &Notice) -> io::Result<()>;
}

/// systemd's notification socket (`NOTIFY_SOCKET`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Systemd;

impl Notifier for Systemd {
    fn notify(&self, notice: &Notice) -> io::Result<()> {
        use sd_notify::NotifyState;
        let state = match notice {
            Notice::Ready => NotifyState::Ready,
            Notice::Watchdog => NotifyState::Watchdog,
            Notice::Stopping => NotifyState::Stopping,
            Notice::Status(s) => NotifyState::Status(s),
        };
        sd_notify::notify(&[state])
    }
}

impl Systemd {
    /// The watchdog period the manager set for this process (`WATCHDOG_USEC`), if any.
    pub fn watchdog_period() -> Option<Duration> {
        sd_notify::watchdog_enabled()
    }
}

/// Records notices instead of sending them (tests).
#[derive(Debug, Default)]
pub struct Simulated {
    sent: Mutex<Vec<Notice>>,
}

impl Simulated {
    pub fn sent(&self) -> Vec<Notice> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Notifier for Simulated {
    fn notify(&self, notice: &Notice) -> io::Result<()> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(notice.clone());
        Ok(())
    }
}

/// A monotonic clock in milliseconds (injected so tests move time by hand).
pub type MonoMs = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The monotonic clock of the process.
pub fn mono_ms() -> MonoMs {
    let start = Instant::now();
    Arc::new(move || start.elapsed().as_millis() as i64)
}

/// A part's name and when it last showed life (ms of [`MonoMs`]).
type Part = (String, Arc<AtomicI64>);

/// The parts a process cannot live without, each with the time it last showed life.
#[derive(Clone)]
pub struct Heartbeats {
    parts: Arc<Mutex<Vec<Part>>>,
    now_ms: MonoMs,
}

/// One part's heartbeat: [`Beat::beat`] whenever it has done a round of its work (or
/// waited for work without hanging).
#[derive(Clone)]
pub struct Beat {
    last_ms: Arc<AtomicI64>,
    now_ms: MonoMs,
}

impl Beat {
    pub fn beat(&self) {
        self.last_ms.store((self.now_ms)(), Ordering::Relaxed);
    }
}

impl Heartbeats {
    pub fn new(now_ms: MonoMs) -> Heartbeats {
        Heartbeats {
            parts: Arc::new(Mutex::new(Vec::new())),
            now_ms,
        }
    }

    /// A new part, alive from now.
    pub fn register(&self, name: &str) -> Beat {
        let last_ms = Arc::new(AtomicI64::new((self.now_ms)()));
        self.parts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_string(), last_ms.clone()));
        Beat {
            last_ms,
            now_ms: self.now_ms.clone(),
        }
    }

    /// The parts silent for longer than `max_silence_ms`, by name.
    pub fn stalled(&self, max_silence_ms: i64) -> Vec<String> {
        let now = (self.now_ms)();
        self.parts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, last)| now - last.load(Ordering::Relaxed) > max_silence_ms)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// One round of the watchdog: pings when no part is stalled (silent longer than
/// `max_silence_ms`); returns the stalled parts, so the caller can say which hangs.
pub fn tick(notifier: &dyn Notifier, parts: &Heartbeats, max_silence_ms: i64) -> Vec<String> {
    let stalled = parts.stalled(max_silence_ms);
    if stalled.is_empty() {
        let _ = notifier.notify(&Notice::Watchdog);
    }
    stalled
}

/// Tells systemd the service is ready (with a status line) and, when it set a watchdog
/// period, pings it from a thread of its own every half period while no part of
/// `parts` has been silent for a whole period; `on_stall` hears which parts hang (each
/// round they do). Nothing happens outside systemd.
pub fn start_systemd(
    parts: &Heartbeats,
    status: &str,
    on_stall: impl Fn(&[String]) + Send + 'static,
) -> io::Result<()> {
    let _ = Systemd.notify(&Notice::Ready);
    let _ = Systemd.notify(&Notice::Status(status.to_string()));
    if let Some(period) = Systemd::watchdog_period() {
        let parts = parts.clone();
        let max_silence_ms = period.as_millis() as i64;
        std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                loop {
                    let stalled = tick(&Systemd, &parts, max_silence_ms);
                    if !stalled.is_empty() {
                        on_stall(&stalled);
                    }
                    std::thread::sleep(period / 2);
                }
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    fn manual() -> (Arc<AtomicI64>, MonoMs) {
        let t = Arc::new(AtomicI64::new(0));
        let c = t.clone();
        (t, Arc::new(move || c.load(Ordering::SeqCst)))
    }

    #[test]
    fn pings_only_while_every_part_shows_life() {
        let (t, now) = manual();
        let parts = Heartbeats::new(now);
        let a = parts.register("writer-gate");
        let b = parts.register("writer-hall");
        let sim = Simulated::default();
        t.store(10_000, Ordering::SeqCst);
        a.beat();
        b.beat();
        assert!(tick(&sim, &parts, 30_000).is_empty());
        assert_eq!(sim.sent(), vec![Notice::Watchdog]);
        // hall hangs: gate beats on, hall does not.
        t.store(45_000, Ordering::SeqCst);
        a.beat();
        assert_eq!(tick(&sim, &parts, 30_000), vec!["writer-hall".to_string()]);
        assert_eq!(sim.sent().len(), 1, "no ping while a part hangs");
        b.beat();
        assert!(tick(&sim, &parts, 30_000).is_empty());
        assert_eq!(sim.sent().len(), 2);
    }

    /// The Linux backend against its simulation: what systemd receives on its socket is
    /// what the simulation records, in systemd's words.
    #[test]
    fn systemd_receives_the_notices_on_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // SAFETY: this test is the only one that touches NOTIFY_SOCKET, and reads it
        // back at once; no other thread of this test binary reads it.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        let notices = [
            Notice::Ready,
            Notice::Watchdog,
            Notice::Status("recording 2 cameras".into()),
            Notice::Stopping,
        ];
        let mut got = Vec::new();
        for n in &notices {
            Systemd.notify(n).unwrap();
            let mut buf = [0u8; 256];
            let len = sock.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..len]).trim_end().to_string());
        }
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        assert_eq!(
            got,
            [
                "READY=1",
                "WATCHDOG=1",
                "STATUS=recording 2 cameras",
                "STOPPING=1"
            ]
        );
    }
}

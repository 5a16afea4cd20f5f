//! Camera states reach the catalog from a thread of their own. The one async thread
//! runs every camera's session: if it waited for SQLite (a long retention transaction,
//! a `check` beside the recorder, a slow disk), every camera would stall with it. So a
//! state change is handed over without waiting, and the newest state of each camera is
//! written as soon as the catalog takes it; a busy catalog delays it, never loses it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::warn;

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::ingest::StateFn;
use crate::metrics::Metrics;

/// How long a state that the catalog refused waits before it is tried again.
const RETRY: Duration = Duration::from_millis(200);

struct Change {
    camera: String,
    state: String,
    reason: Option<String>,
    at_unix_ms: i64,
}

enum Msg {
    Change(Change),
    /// Write what is pending (trying for at most [`STOP_TRIES`] × [`RETRY`]) and end.
    Stop,
}

/// How often a stopping recorder still tries to write the last states.
const STOP_TRIES: u32 = 3;

/// The thread that writes camera states; stopping it (drop) writes what is pending.
pub struct StateRecorder {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl StateRecorder {
    pub fn start(store: &Path) -> std::io::Result<StateRecorder> {
        let (tx, rx) = channel();
        let store = store.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("camera-state".into())
            .spawn(move || run(&store, rx))?;
        Ok(StateRecorder {
            tx,
            thread: Some(thread),
        })
    }

    /// What the camera sessions call: counts the state in the metrics and hands it to
    /// the thread, without waiting.
    pub fn state_fn(&self, metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> StateFn {
        let tx = self.tx.clone();
        Arc::new(move |camera: &str, state: &str, reason: Option<&str>| {
            metrics.set_state(camera, state);
            let _ = tx.send(Msg::Change(Change {
                camera: camera.to_string(),
                state: state.to_string(),
                reason: reason.map(str::to_string),
                at_unix_ms: clock.now_unix_ms(),
            }));
        })
    }
}

impl Drop for StateRecorder {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(store: &Path, rx: Receiver<Msg>) {
    let mut cat: Option<Catalog> = None;
    // The newest state of each camera not yet written.
    let mut pending: BTreeMap<String, Change> = BTreeMap::new();
    let mut stop_tries: Option<u32> = None;
    loop {
        let wait = if pending.is_empty() && stop_tries.is_none() {
            Duration::from_secs(3600)
        } else {
            RETRY
        };
        let mut take = |m: Msg, pending: &mut BTreeMap<String, Change>| match m {
            Msg::Change(c) => {
                pending.insert(c.camera.clone(), c);
            }
            Msg::Stop => {
                stop_tries.get_or_insert(STOP_TRIES);
            }
        };
        match rx.recv_timeout(wait) {
            Ok(m) => {
                take(m, &mut pending);
                while let Ok(m) = rx.try_recv() {
                    take(m, &mut pending);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                stop_tries.get_or_insert(STOP_TRIES);
            }
        }
        if !pending.is_empty() {
            write(store, &mut cat, &mut pending);
        }
        if let Some(n) = stop_tries.as_mut() {
            if pending.is_empty() || *n == 0 {
                for c in pending.values() {
                    warn!(camera = %c.camera, state = %c.state, "camera state not recorded: the catalog refused it");
                }
                return;
            }
            *n -= 1;
        }
    }
}

/// Writes the pending states, oldest camera id first, until the catalog refuses one.
fn write(store: &Path, cat: &mut Option<Catalog>, pending: &mut BTreeMap<String, Change>) {
    if cat.is_none() {
        match Catalog::open(store) {
            Ok(c) => *cat = Some(c),
            Err(e) => {
                warn!(error = %e, "cannot open the catalog for camera states; trying again");
                return;
            }
        }
    }
    let Some(c) = cat.as_ref() else { return };
    let cameras: Vec<String> = pending.keys().cloned().collect();
    for camera in cameras {
        let ch = &pending[&camera];
        match c.set_camera_state(&ch.camera, &ch.state, ch.reason.as_deref(), ch.at_unix_ms) {
            Ok(()) => {
                pending.remove(&camera);
            }
            Err(e) => {
                warn!(camera = %camera, error = %e, "cannot record the camera state yet; trying again");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn state_of(store: &Path, camera: &str) -> Option<String> {
        rusqlite::Connection::open(store.join(crate::catalog::CATALOG_FILE))
            .unwrap()
            .query_row("SELECT state FROM cameras WHERE id = ?1", [camera], |r| {
                r.get(0)
            })
            .unwrap()
    }

    /// Issue 10: a camera's state change while the catalog is locked (here by another
    /// connection's exclusive transaction, as a long retention pass or a `check` could)
    /// neither waits for it nor is lost: it is written once the lock is gone.
    #[test]
    fn a_state_change_while_the_catalog_is_locked_waits_for_it_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        cat.upsert_camera("gate", "Gate").unwrap();
        drop(cat);
        let recorder = StateRecorder::start(dir.path()).unwrap();
        let state = recorder.state_fn(
            Arc::new(Metrics::new()),
            Arc::new(ManualClock::new(1_700_000_000_000)),
        );
        let lock =
            rusqlite::Connection::open(dir.path().join(crate::catalog::CATALOG_FILE)).unwrap();
        lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
        // Returns at once although the catalog cannot be written (a call that waited
        // would sit here for the catalog's busy timeout, then lose the state).
        state("gate", "offline", Some("connection refused"));
        state("gate", "recording", None);
        lock.execute_batch("COMMIT").unwrap();
        drop(lock);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while state_of(dir.path(), "gate").as_deref() != Some("recording") {
            assert!(
                std::time::Instant::now() < deadline,
                "the state never reached the catalog"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(recorder);
    }
}

//! Retention as the recorder runs it: a thread woken by closed segments and by writers
//! that hit a full disk.

use super::*;

/// What the segment writers need from retention.
pub trait SpaceHooks: Send + Sync {
    /// A segment closed: run a pass soon.
    fn segment_closed(&self);
    /// A write failed with ENOSPC: free at least `needed_bytes` now if possible.
    /// Returns the bytes freed (0: nothing could be deleted).
    fn disk_full(&self, camera: &str, needed_bytes: u64) -> u64;
}

/// Runs retention passes on its own thread: at least every [`PASS_INTERVAL`] and soon
/// after each segment closes; serves the writers' disk-full calls in between.
pub struct RetentionService {
    engine: Mutex<Retention>,
    wake_tx: SyncSender<()>,
    wake_rx: Mutex<Receiver<()>>,
    stop: AtomicBool,
}

impl RetentionService {
    pub fn new(engine: Retention) -> Arc<RetentionService> {
        let (wake_tx, wake_rx) = std::sync::mpsc::sync_channel(1);
        Arc::new(RetentionService {
            engine: Mutex::new(engine),
            wake_tx,
            wake_rx: Mutex::new(wake_rx),
            stop: AtomicBool::new(false),
        })
    }

    /// One pass now.
    pub fn pass(&self) -> Result<PassReport> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner()).pass()
    }

    /// The loop of the retention thread; returns after [`stop`](Self::stop).
    pub fn run(&self) {
        let rx = self.wake_rx.lock().unwrap_or_else(|e| e.into_inner());
        while !self.stop.load(Ordering::SeqCst) {
            if let Err(e) = self.pass() {
                error!(error = %e, "retention pass failed; retrying");
            }
            match rx.recv_timeout(PASS_INTERVAL) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake_tx.try_send(());
    }
}

impl SpaceHooks for RetentionService {
    fn segment_closed(&self) {
        let _ = self.wake_tx.try_send(());
    }

    fn disk_full(&self, camera: &str, needed_bytes: u64) -> u64 {
        self.engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .free_for_disk_full(camera, needed_bytes)
    }
}

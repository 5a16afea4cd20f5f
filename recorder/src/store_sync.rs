//! What the writers have written reaches the disk through one `syncfs` of the store's
//! file system for every camera, at most half a `sync_interval_ms` after the oldest
//! write not yet synced, rather than through one `fdatasync` per camera.
//!
//! Why: with a file per camera, each camera's `fdatasync` wrote its file's size and
//! block map on its own, waited for that one write, and (on a journalled file system)
//! forced a journal commit of its own: 16 cameras made 16 small synchronous writes and
//! 16 commits a second, and the writer threads woke to wait for each. One `syncfs`
//! writes every file's data and the metadata of all of them in one batch and one commit.
//! At 16 cameras the recorder's CPU fell by about a tenth (`make bench`; see the README),
//! and the disk sees about two cache flushes a second (one per half interval while
//! cameras write) instead of one per camera a second.
//!
//! The bound is the same: data written at `t` is on the disk once the sync that starts by
//! `t + sync_interval_ms / 2` returns, as when each writer synced after half an interval
//! dirty. A sync that fails is counted as a write error of every camera whose data it
//! carried and is tried again on the next round; a sync that hangs stops this thread's
//! heartbeat, and the watchdog restarts the box as it did when a writer hung in
//! `fdatasync`. A segment's close still `fsync`s its file and folder itself (the catalog
//! row is closed only after that). Files on another file system than the store (a camera
//! folder mounted elsewhere) get their own `syncfs`: the folders are grouped by device.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::error;

use crate::metrics::Metrics;

/// How one file system is made durable: `syncfs` on a descriptor of a folder on it
/// (replaced in tests).
pub type SyncFn = Box<dyn Fn(&File) -> io::Result<()> + Send>;

/// The thread that syncs the store; the writers tell it through [`SyncHandle::wrote`].
pub struct StoreSync {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer's link to [`StoreSync`]: one camera's folder.
pub struct SyncHandle {
    shared: Arc<Shared>,
    fs: usize,
    camera: usize,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// One file system with writes not yet synced.
struct Fs {
    dev: u64,
    dir: Arc<File>,
    /// When the oldest write not yet synced was made (`None`: nothing to sync).
    dirty_since: Option<Instant>,
    /// The cameras whose writes the next sync carries (indexes into `State::cameras`).
    cameras: Vec<usize>,
}

/// Which writes are waiting, and when they are due: the thread's decisions, kept apart
/// from the thread so that they are tested with made-up instants.
pub(crate) struct State {
    half_interval: Duration,
    filesystems: Vec<Fs>,
    cameras: Vec<String>,
    stopping: bool,
}

/// What the thread does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Sync this file system: its writes up to now (taken out of the state).
    Sync(Job),
    /// Nothing due: wait this long or until woken.
    Wait(Duration),
    /// Stopping, and everything written is synced.
    Stop,
}

/// One sync: the file system, when its oldest write was made, whose writes it carries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Job {
    fs: usize,
    since: Instant,
    cameras: Vec<usize>,
}

impl State {
    pub(crate) fn new(sync_interval: Duration) -> State {
        State {
            half_interval: sync_interval / 2,
            filesystems: Vec::new(),
            cameras: Vec::new(),
            stopping: false,
        }
    }

    /// Adds a camera whose folder is on device `dev` (`dir`: a descriptor of it).
    fn add(
        &mut self,
        camera: &str,
        dev: u64,
        dir: impl FnOnce() -> io::Result<File>,
    ) -> io::Result<(usize, usize)> {
        let fs = match self.filesystems.iter().position(|f| f.dev == dev) {
            Some(i) => i,
            None => {
                self.filesystems.push(Fs {
                    dev,
                    dir: Arc::new(dir()?),
                    dirty_since: None,
                    cameras: Vec::new(),
                });
                self.filesystems.len() - 1
            }
        };
        self.cameras.push(camera.to_string());
        Ok((fs, self.cameras.len() - 1))
    }

    /// `camera` wrote to `fs` at `now`. True when the file system had nothing waiting
    /// (the thread must be woken to schedule its sync).
    pub(crate) fn wrote(&mut self, fs: usize, camera: usize, now: Instant) -> bool {
        let f = &mut self.filesystems[fs];
        if !f.cameras.contains(&camera) {
            f.cameras.push(camera);
        }
        if f.dirty_since.is_none() {
            f.dirty_since = Some(now);
            true
        } else {
            false
        }
    }

    pub(crate) fn next(&mut self, now: Instant) -> Next {
        let due = self
            .filesystems
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.dirty_since.map(|s| (i, s)))
            .min_by_key(|&(_, s)| s);
        match due {
            None if self.stopping => Next::Stop,
            None => Next::Wait(self.half_interval),
            Some((fs, since)) => {
                let at = since + self.half_interval;
                if at <= now || self.stopping {
                    let f = &mut self.filesystems[fs];
                    f.dirty_since = None;
                    Next::Sync(Job {
                        fs,
                        since,
                        cameras: std::mem::take(&mut f.cameras),
                    })
                } else {
                    Next::Wait(at - now)
                }
            }
        }
    }

    /// The sync of `job` failed: its writes wait again, due at once.
    pub(crate) fn failed(&mut self, job: Job) {
        let f = &mut self.filesystems[job.fs];
        f.dirty_since = Some(f.dirty_since.map_or(job.since, |s| s.min(job.since)));
        for c in job.cameras {
            if !f.cameras.contains(&c) {
                f.cameras.push(c);
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `syncfs(2)`: every dirty page and inode of the file system `dir` is on.
fn syncfs(dir: &File) -> io::Result<()> {
    rustix::fs::syncfs(dir).map_err(io::Error::from)
}

impl StoreSync {
    /// Starts the thread; `beat` shows the watchdog it is alive.
    pub fn start(
        sync_interval: Duration,
        metrics: Arc<Metrics>,
        beat: Option<hardware::watchdog::Beat>,
    ) -> io::Result<StoreSync> {
        Self::start_with(sync_interval, metrics, beat, Box::new(syncfs))
    }

    pub(crate) fn start_with(
        sync_interval: Duration,
        metrics: Arc<Metrics>,
        beat: Option<hardware::watchdog::Beat>,
        sync: SyncFn,
    ) -> io::Result<StoreSync> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(sync_interval)),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("store-sync".into())
            .spawn(move || run(&s, &metrics, beat.as_ref(), &sync))?;
        Ok(StoreSync {
            shared,
            thread: Some(thread),
        })
    }

    /// A handle for the writer of `camera` in `store` (its folder is created if missing).
    pub fn register(&self, store: &Path, camera: &str) -> io::Result<SyncHandle> {
        let dir = &store.join(crate::catalog::SEGMENTS_DIR).join(camera);
        std::fs::create_dir_all(dir)?;
        let dev = std::fs::metadata(dir)?.dev();
        let (fs, camera) = self.shared.lock().add(camera, dev, || File::open(dir))?;
        Ok(SyncHandle {
            shared: self.shared.clone(),
            fs,
            camera,
        })
    }

    /// Syncs what is still waiting, then ends the thread.
    pub fn stop(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StoreSync {
    fn drop(&mut self) {
        self.end();
    }
}

impl SyncHandle {
    /// The writer has just written data that must reach the disk.
    pub fn wrote(&self) {
        let woken = self
            .shared
            .lock()
            .wrote(self.fs, self.camera, Instant::now());
        if woken {
            self.shared.wake.notify_one();
        }
    }
}

fn run(shared: &Shared, metrics: &Metrics, beat: Option<&hardware::watchdog::Beat>, sync: &SyncFn) {
    let mut state = shared.lock();
    loop {
        if let Some(b) = beat {
            b.beat();
        }
        match state.next(Instant::now()) {
            Next::Stop => return,
            Next::Wait(d) => {
                state = shared
                    .wake
                    .wait_timeout(state, d)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            Next::Sync(job) => {
                let dir = state.filesystems[job.fs].dir.clone();
                drop(state);
                let started = Instant::now();
                let result = sync(&dir);
                state = shared.lock();
                match result {
                    Ok(()) => metrics
                        .sync_seconds
                        .observe(started.elapsed().as_secs_f64()),
                    Err(e) => {
                        let cameras: Vec<&str> = job
                            .cameras
                            .iter()
                            .map(|&c| state.cameras[c].as_str())
                            .collect();
                        for c in &cameras {
                            metrics.write_errors.get_or_create(&Metrics::cam(c)).inc();
                        }
                        if state.stopping {
                            // The writers have closed (and fsynced) their segments.
                            error!(?cameras, error = %e, "syncfs of the store failed while stopping");
                            continue;
                        }
                        error!(?cameras, error = %e, "syncfs of the store failed; trying again");
                        state.failed(job);
                        // Not in a tight loop: the next try waits like a new write.
                        let half = state.half_interval;
                        state = shared
                            .wake
                            .wait_timeout(state, half)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    const INTERVAL: Duration = Duration::from_millis(1000);
    const HALF: Duration = Duration::from_millis(500);

    fn two_fs() -> State {
        let mut s = State::new(INTERVAL);
        let dir = || File::open("/");
        assert_eq!(s.add("a", 1, dir).unwrap(), (0, 0));
        assert_eq!(s.add("b", 1, dir).unwrap(), (0, 1));
        assert_eq!(s.add("c", 2, dir).unwrap(), (1, 2));
        s
    }

    #[test]
    fn cameras_on_one_file_system_share_one_sync_due_half_an_interval_after_the_oldest_write() {
        let t0 = Instant::now();
        let mut s = two_fs();
        assert_eq!(s.next(t0), Next::Wait(HALF), "nothing written: only waits");
        assert!(s.wrote(0, 0, t0), "the first write wakes the thread");
        assert!(!s.wrote(0, 1, t0 + Duration::from_millis(300)));
        assert!(!s.wrote(0, 0, t0 + Duration::from_millis(400)));
        assert_eq!(
            s.next(t0 + Duration::from_millis(200)),
            Next::Wait(Duration::from_millis(300))
        );
        assert_eq!(
            s.next(t0 + HALF),
            Next::Sync(Job {
                fs: 0,
                since: t0,
                cameras: vec![0, 1]
            })
        );
        assert_eq!(s.next(t0 + HALF), Next::Wait(HALF), "taken: nothing left");
        // A write during the sync is due half an interval after it was made.
        assert!(s.wrote(0, 1, t0 + Duration::from_millis(600)));
        assert_eq!(
            s.next(t0 + Duration::from_millis(700)),
            Next::Wait(Duration::from_millis(400))
        );
    }

    #[test]
    fn each_file_system_is_synced_in_the_order_its_writes_are_due() {
        let t0 = Instant::now();
        let mut s = two_fs();
        s.wrote(1, 2, t0);
        s.wrote(0, 0, t0 + Duration::from_millis(100));
        let first = s.next(t0 + Duration::from_millis(650));
        assert_eq!(
            first,
            Next::Sync(Job {
                fs: 1,
                since: t0,
                cameras: vec![2]
            })
        );
        assert!(matches!(
            s.next(t0 + Duration::from_millis(650)),
            Next::Sync(Job { fs: 0, .. })
        ));
    }

    #[test]
    fn a_failed_sync_is_due_again_at_once_with_its_cameras() {
        let t0 = Instant::now();
        let mut s = two_fs();
        s.wrote(0, 0, t0);
        let Next::Sync(job) = s.next(t0 + HALF) else {
            panic!("due")
        };
        s.wrote(0, 1, t0 + Duration::from_millis(600));
        s.failed(job);
        assert_eq!(
            s.next(t0 + Duration::from_millis(600)),
            Next::Sync(Job {
                fs: 0,
                since: t0,
                cameras: vec![1, 0]
            })
        );
    }

    #[test]
    fn stopping_syncs_what_waits_then_stops() {
        let t0 = Instant::now();
        let mut s = two_fs();
        s.wrote(0, 0, t0);
        s.stopping = true;
        assert!(
            matches!(s.next(t0), Next::Sync(Job { fs: 0, .. })),
            "not due yet, but stopping"
        );
        assert_eq!(s.next(t0), Next::Stop);
    }

    #[test]
    fn the_thread_syncs_what_a_writer_wrote_and_counts_a_failed_sync_as_a_write_error() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let calls = Arc::new(Mutex::new(0u32));
        let c = calls.clone();
        let metrics = Arc::new(Metrics::new());
        let sync = StoreSync::start_with(
            Duration::from_millis(20),
            metrics.clone(),
            None,
            Box::new(move |f: &File| {
                let mut n = c.lock().unwrap();
                *n += 1;
                tx.send(f.metadata().unwrap().dev()).unwrap();
                // The first sync fails; the second carries the same writes.
                if *n == 1 {
                    Err(io::Error::from_raw_os_error(libc::EIO))
                } else {
                    Ok(())
                }
            }),
        )
        .unwrap();
        let a = sync.register(dir.path(), "a").unwrap();
        let b = sync.register(dir.path(), "b").unwrap();
        assert_eq!((a.fs, b.fs), (0, 0), "one file system, one sync");
        a.wrote();
        let dev = std::fs::metadata(dir.path()).unwrap().dev();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), dev);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            dev,
            "tried again"
        );
        sync.stop();
        assert_eq!(
            *calls.lock().unwrap(),
            2,
            "nothing written since: no more syncs"
        );
        assert_eq!(
            metrics.write_errors.get_or_create(&Metrics::cam("a")).get(),
            1
        );
        assert_eq!(
            metrics.write_errors.get_or_create(&Metrics::cam("b")).get(),
            0
        );
    }

    #[test]
    fn a_real_syncfs_of_a_folder_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        syncfs(&File::open(dir.path()).unwrap()).unwrap();
    }
}

//! The stop signal of the recorder's background threads (the disk and tamper watches,
//! the log forwarder): a thread waits on it between rounds and wakes when its time is
//! up or at once when told to stop, never in between. A box with few cameras is mostly
//! idle, and a thread that woke five times a second to look at a flag was its busiest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct Stop {
    flag: AtomicBool,
    lock: Mutex<()>,
    told: Condvar,
}

impl Stop {
    pub(crate) fn set(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // Under the lock, so that a thread between its look at the flag and its wait
        // cannot miss the notification.
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.told.notify_all();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The flag itself, for a wait that polls it (`hardware::tamper::watch`).
    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.flag
    }

    /// Waits `total`, or less if told to stop; false once stopped.
    pub(crate) fn sleep(&self, total: Duration) -> bool {
        let deadline = Instant::now() + total;
        let mut held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        while !self.is_set() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            held = self
                .told
                .wait_timeout(held, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        !self.is_set()
    }
}

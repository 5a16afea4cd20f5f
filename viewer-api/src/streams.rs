//! Footage streams: how many may run at once, and what becomes of one whose client
//! stops reading.
//!
//! Every response that streams footage (`video.mp4` and a viewing's MP4, `live.mp4`,
//! the previews, export downloads) holds a [`StreamPermit`] from [`Streams`] for as
//! long as its body lives: at most [`PER_USER`] per user and [`TOTAL`] in all. One
//! more is refused with 429, a JSON error and `Retry-After` ([`Streams::acquire`]),
//! before anything of it is served; the handlers take the permit before they log the
//! request as allowed (a refusal is logged as one).
//!
//! A stream's pieces are made on demand ([`body`]): a task asks its [`Producer`] for
//! the next piece on a blocking thread only when the client has room for it (at most
//! [`AHEAD`] pieces wait in memory), so a client that stops reading parks no thread,
//! only those pieces. A client that has not taken the next piece for
//! [`StreamLimits::stall`] (30 s) loses the stream: the producer is stopped, the
//! permit comes back, and the body ends with an error (the connection is closed, not
//! left looking complete).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use tokio::sync::mpsc;
use tracing::{debug, error};

use crate::api::ApiError;

/// Footage streams one user may have at once.
pub const PER_USER: usize = 8;
/// Footage streams at once, all users together.
pub const TOTAL: usize = 64;
/// A client that takes no piece for this long loses its stream.
pub const STALL: Duration = Duration::from_secs(30);
/// What a refusal's `Retry-After` says, in seconds.
pub const RETRY_AFTER_SECS: u64 = 5;
/// Pieces made ahead of the client.
pub const AHEAD: usize = 2;

/// The limits of [`Streams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    pub per_user: usize,
    pub total: usize,
    /// A stream whose client takes nothing for this long is ended.
    pub stall: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            per_user: PER_USER,
            total: TOTAL,
            stall: STALL,
        }
    }
}

#[derive(Default)]
struct Open {
    total: usize,
    per_user: HashMap<i64, usize>,
}

/// The footage streams running now, and their limits.
#[derive(Default)]
pub struct Streams {
    limits: Mutex<StreamLimits>,
    open: Mutex<Open>,
}

impl Streams {
    pub fn new(limits: StreamLimits) -> Self {
        Streams {
            limits: Mutex::new(limits),
            open: Mutex::default(),
        }
    }

    pub fn limits(&self) -> StreamLimits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// New limits; streams already running keep their permits.
    pub fn set_limits(&self, limits: StreamLimits) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Streams running now, all users together.
    pub fn running(&self) -> usize {
        self.lock().total
    }

    /// Streams of `user` running now.
    pub fn running_for(&self, user: i64) -> usize {
        self.lock().per_user.get(&user).copied().unwrap_or(0)
    }

    /// A permit for one more stream of `user`, or the 429 that refuses it.
    pub fn acquire(self: &Arc<Self>, user: i64) -> Result<StreamPermit, ApiError> {
        let limits = self.limits();
        let mut open = self.lock();
        let mine = open.per_user.get(&user).copied().unwrap_or(0);
        if mine >= limits.per_user {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many footage streams: at most {} at once per user; close one (or try again shortly)",
                    limits.per_user
                ),
            ));
        }
        if open.total >= limits.total {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many footage streams on this device: at most {} at once; try again shortly",
                    limits.total
                ),
            ));
        }
        open.total += 1;
        *open.per_user.entry(user).or_insert(0) += 1;
        Ok(StreamPermit {
            streams: self.clone(),
            user,
        })
    }
}

/// One running stream; dropping it frees its place.
pub struct StreamPermit {
    streams: Arc<Streams>,
    user: i64,
}

impl std::fmt::Debug for StreamPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPermit")
            .field("user", &self.user)
            .finish()
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.streams.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_user.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_user.remove(&self.user);
            }
        }
    }
}

/// What a [`Producer`] gives next.
#[derive(Debug)]
pub enum Piece {
    /// The next bytes of the stream.
    Data(Bytes),
    /// Nothing yet (a live view waiting for the recorder): ask again after this long.
    Wait(Duration),
    /// The stream is complete.
    End,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The producer said [`Piece::End`].
    Done,
    /// The client went away.
    ClientGone,
    /// The client took nothing for [`StreamLimits::stall`].
    Stalled,
    /// The producer failed (it logged why).
    Failed,
}

/// Makes a stream's pieces, one per call.
pub trait Producer: Send + 'static {
    /// The next piece. Blocking (run on a blocking thread), but should not wait long:
    /// [`Piece::Wait`] instead.
    fn next(&mut self) -> Result<Piece, std::io::Error>;
    /// Called once when the stream ends, on a blocking thread (e.g. to log it).
    fn finish(self: Box<Self>, how: Ended) {
        let _ = how;
    }
}

/// A producer made of a function; nothing to do at the end.
pub struct FnProducer<F>(pub F);

impl<F: FnMut() -> Result<Piece, std::io::Error> + Send + 'static> Producer for FnProducer<F> {
    fn next(&mut self) -> Result<Piece, std::io::Error> {
        (self.0)()
    }
}

/// The response body of a stream made by `producer`, holding `permit` until it ends,
/// is dropped, or its client stalls (see the module's documentation).
pub fn body(permit: StreamPermit, stall: Duration, producer: impl Producer) -> Body {
    start(permit, stall, Source::Blocking(Box::new(producer)))
}

/// The response body of a stream whose pieces come from a thread of its own (a
/// GStreamer pipeline's puller, which may block on `blocking_send`) through `rx`: as
/// [`body`]; the thread learns that the stream ended from its sends failing.
/// `first`, when given, is sent before what `rx` brings (a piece the handler already
/// took, to answer with an error when none comes).
pub fn body_from_channel(
    permit: StreamPermit,
    stall: Duration,
    first: Option<Bytes>,
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> Body {
    start(permit, stall, Source::Channel(first, rx))
}

enum Source {
    Blocking(Box<dyn Producer>),
    Channel(Option<Bytes>, mpsc::Receiver<Result<Bytes, std::io::Error>>),
}

impl Source {
    /// The next piece; `Err(())` when the producer panicked (it is gone).
    async fn next(&mut self) -> Result<Result<Piece, std::io::Error>, ()> {
        match self {
            Source::Channel(Some(_), _) => {
                let Source::Channel(first, _) = self else {
                    unreachable!()
                };
                Ok(Ok(Piece::Data(first.take().expect("a first piece"))))
            }
            Source::Channel(None, rx) => Ok(match rx.recv().await {
                Some(r) => r.map(Piece::Data),
                None => Ok(Piece::End),
            }),
            Source::Blocking(_) => {
                let Source::Blocking(mut p) =
                    std::mem::replace(self, Source::Channel(None, closed()))
                else {
                    unreachable!()
                };
                let (p, r) = tokio::task::spawn_blocking(move || {
                    let r = p.next();
                    (p, r)
                })
                .await
                .map_err(|e| error!(error = %e, "a footage stream's producer panicked"))?;
                *self = Source::Blocking(p);
                Ok(r)
            }
        }
    }
}

fn closed() -> mpsc::Receiver<Result<Bytes, std::io::Error>> {
    mpsc::channel(1).1
}

/// When the client last made progress: took a piece, or had nothing waiting for it.
/// A stream is stalled when a piece waits and this is [`StreamLimits::stall`] ago.
type Progress = Arc<Mutex<tokio::time::Instant>>;

fn touch(p: &Progress) {
    *p.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
}

/// The pump's side of the pieces.
struct Out {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    progress: Progress,
    stall: Duration,
}

impl Out {
    /// When the stream counts as stalled, if a piece is waiting for the client.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        (self.tx.capacity() < self.tx.max_capacity())
            .then(|| *self.progress.lock().unwrap_or_else(|e| e.into_inner()) + self.stall)
    }

    fn stalled(&self) -> bool {
        self.deadline()
            .is_some_and(|d| d <= tokio::time::Instant::now())
    }

    /// Waits until the stream may be stalled (forever while nothing waits).
    async fn may_stall(&self) {
        match self.deadline() {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    }

    /// Queues `b`; `Err` with why the stream ends instead.
    async fn send(&self, b: Result<Bytes, std::io::Error>) -> Result<(), Ended> {
        loop {
            tokio::select! {
                permit = self.tx.reserve() => {
                    let permit = permit.map_err(|_| Ended::ClientGone)?;
                    if self.tx.capacity() + 1 == self.tx.max_capacity() {
                        // Nothing was waiting for the client: its clock starts now.
                        touch(&self.progress);
                    }
                    permit.send(b);
                    return Ok(());
                }
                _ = self.may_stall() => if self.stalled() { return Err(Ended::Stalled) },
            }
        }
    }

    /// Sleeps `d`; `Err` when the stream ends meanwhile.
    async fn wait(&self, d: Duration) -> Result<(), Ended> {
        let until = tokio::time::Instant::now() + d;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return Ok(()),
                _ = self.tx.closed() => return Err(Ended::ClientGone),
                _ = self.may_stall() => if self.stalled() { return Err(Ended::Stalled) },
            }
        }
    }
}

fn start(permit: StreamPermit, stall: Duration, mut src: Source) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(AHEAD);
    let slot = Arc::new(Mutex::new(Some(permit)));
    let stalled = Arc::new(AtomicBool::new(false));
    let progress: Progress = Arc::new(Mutex::new(tokio::time::Instant::now()));
    let held = Held {
        rx,
        _permit: slot.clone(),
        stalled: stalled.clone(),
        progress: progress.clone(),
    };
    let out = Out {
        tx,
        progress,
        stall,
    };
    tokio::spawn(async move {
        let how = loop {
            if out.tx.is_closed() {
                break Ended::ClientGone;
            }
            if out.stalled() {
                break Ended::Stalled;
            }
            // A blocking producer is never abandoned half-way (it must be finished);
            // a channel is dropped as soon as the client goes or stalls.
            let r = if matches!(src, Source::Channel(..)) {
                tokio::select! {
                    r = src.next() => r,
                    _ = out.tx.closed() => break Ended::ClientGone,
                    _ = out.may_stall() => continue,
                }
            } else {
                src.next().await
            };
            let Ok(r) = r else { return };
            let step = match r {
                Ok(Piece::Data(b)) => out.send(Ok(b)).await,
                Ok(Piece::Wait(d)) => out.wait(d).await,
                Ok(Piece::End) => Err(Ended::Done),
                Err(e) => {
                    let _ = out.tx.try_send(Err(e));
                    Err(Ended::Failed)
                }
            };
            if let Err(how) = step {
                break how;
            }
        };
        if how == Ended::Stalled {
            debug!("a footage stream's client stopped reading; stream dropped");
            stalled.store(true, Ordering::Release);
            slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        drop(out);
        if let Source::Blocking(p) = src {
            let _ = tokio::task::spawn_blocking(move || p.finish(how)).await;
        }
    });
    Body::from_stream(futures::stream::unfold(held, |mut h| async move {
        match h.rx.recv().await {
            Some(item) => {
                touch(&h.progress);
                Some((item, h))
            }
            None if h.stalled.swap(false, Ordering::AcqRel) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client stopped reading",
                )),
                h,
            )),
            None => None,
        }
    }))
}

/// The body's side: the pieces, and the permit while the body lives.
struct Held {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    _permit: Arc<Mutex<Option<StreamPermit>>>,
    stalled: Arc<AtomicBool>,
    progress: Progress,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_user: usize, total: usize) -> Arc<Streams> {
        Arc::new(Streams::new(StreamLimits {
            per_user,
            total,
            stall: STALL,
        }))
    }

    #[test]
    fn per_user_and_total_caps_and_permits_come_back() {
        let s = limits(2, 3);
        let a1 = s.acquire(1).unwrap();
        let _a2 = s.acquire(1).unwrap();
        let e = s.acquire(1).unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(e.message.contains("per user"), "{}", e.message);
        let _b1 = s.acquire(2).unwrap();
        let e = s.acquire(3).unwrap_err();
        assert!(e.message.contains("on this device"), "{}", e.message);
        assert_eq!((s.running(), s.running_for(1)), (3, 2));
        drop(a1);
        assert_eq!((s.running(), s.running_for(1)), (2, 1));
        s.acquire(3).unwrap();
    }
}

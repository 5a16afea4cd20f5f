//! The camera writers: each turns its camera's GOPs into sealed segments and keeps the
//! catalog in step, in the order that survives a crash at any instant:
//! row (open, wrapped key) → file → chunks, synced within `sync_interval_ms` (by
//! [`crate::store_sync`], for every camera at once) → final chunk, fsync file and
//! directory → row closed.
//!
//! Writes are blocking and may be slow (flash, a full disk); they live on their own
//! threads so that a slow disk never stalls the RTSP sessions, and frames that cannot
//! be queued are counted as dropped, not silently lost.
//!
//! A few writer threads (one per core) share the cameras ([`run_shared`]), each
//! draining one queue of its cameras' messages. Why not a thread per camera: the
//! runtime reads the cameras in rounds ([`crate::ingest::rounds`]) and hands their
//! chunks over together, and a thread per camera was woken for each of them: at 128
//! cameras, about 500 of the recorder's 690 context switches a second. A shared thread
//! woken once per round takes every chunk that came in it. The disk is shared anyway;
//! what a camera waits behind now is the other cameras' sealing and page-cache writes
//! on its thread (a few milliseconds a round), and a segment's closing fsync.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use hardware::Kek;
use tracing::{error, info, warn};

use crate::catalog::{self, Catalog, ClosedSegment};
use crate::clock::{media_time_broke, ms_from_90k};
use crate::metrics::Metrics;
use crate::recovery::RecoveryError;
use crate::segment::{self, CodecParams, DataKey, Gop, SegmentId, SegmentWriter};
use crate::store_sync::SyncHandle;

pub enum WriterMsg {
    /// Frames with the parameters in force: a GOP that starts with a key frame, or
    /// (for long GOPs, flushed every [`crate::ingest::CHUNK_FLUSH_90K`]) its continuation.
    Gop { params: Arc<CodecParams>, gop: Gop },
    /// The camera session ended: close the segment and open a gap.
    Offline { at_unix_ms: i64, reason: String },
}

/// How many messages a writer thread's queue holds per camera it writes: 8 s of video
/// at a chunk every 500 ms before a camera's GOPs are dropped.
pub const QUEUE_PER_CAMERA: usize = 16;

/// One camera's way to its writer thread: messages go in the thread's one queue,
/// tagged with the camera's place among the thread's writers.
#[derive(Clone)]
pub struct WriterTx {
    camera: usize,
    tx: SyncSender<(usize, WriterMsg)>,
}

impl WriterTx {
    /// Queues `msg` for the camera's writer, or gives it back when the queue is full
    /// (the thread is behind) or the thread is gone.
    pub fn try_send(&self, msg: WriterMsg) -> Result<(), TrySendError<WriterMsg>> {
        self.tx.try_send((self.camera, msg)).map_err(|e| match e {
            TrySendError::Full((_, m)) => TrySendError::Full(m),
            TrySendError::Disconnected((_, m)) => TrySendError::Disconnected(m),
        })
    }
}

/// The queue of a writer thread for `cameras` cameras, holding `per_camera` messages
/// for each ([`QUEUE_PER_CAMERA`]): a sender for each camera, in the order of the
/// writers given to [`run_shared`], and the thread's receiver.
pub fn queue(cameras: usize, per_camera: usize) -> (Vec<WriterTx>, Receiver<(usize, WriterMsg)>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(per_camera * cameras);
    let senders = (0..cameras)
        .map(|camera| WriterTx {
            camera,
            tx: tx.clone(),
        })
        .collect();
    (senders, rx)
}

/// Runs `writers` on this thread until every sender of `rx` is dropped; then closes
/// their open segments. Shows life to the watchdog at every round of the loop, and at
/// least every [`IDLE_BEAT`] (see `hardware::watchdog`).
pub fn run_shared(
    mut writers: Vec<CameraWriter>,
    rx: Receiver<(usize, WriterMsg)>,
    beat: Option<hardware::watchdog::Beat>,
) {
    serve(&mut writers, &rx, beat.as_ref(), |m| m);
}

/// The one loop of every writer thread: `route` names the writer a message is for.
fn serve<M>(
    writers: &mut [CameraWriter],
    rx: &Receiver<M>,
    beat: Option<&hardware::watchdog::Beat>,
    route: impl Fn(M) -> (usize, WriterMsg),
) {
    loop {
        if let Some(b) = beat {
            b.beat();
        }
        match rx.recv_timeout(IDLE_BEAT) {
            Ok(m) => {
                let (i, msg) = route(m);
                match writers.get_mut(i) {
                    Some(w) => w.handle(msg),
                    None => error!(writer = i, "a message for no writer of this thread"),
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    for w in writers {
        w.close_segment();
    }
}

pub struct WriterConfig {
    pub store: PathBuf,
    pub camera: String,
    pub segment_secs: u32,
}

/// With no GOP coming, the loop still shows life to the watchdog this often.
const IDLE_BEAT: Duration = Duration::from_millis(500);

struct OpenSegment {
    id: SegmentId,
    writer: SegmentWriter,
    params: Arc<CodecParams>,
    start_90k: i64,
    last_pts_90k: i64,
    last_frame_dur_90k: i64,
    last_frame_unix_ms: i64,
}

pub struct CameraWriter {
    cfg: WriterConfig,
    kek: Kek,
    cat: Catalog,
    metrics: Arc<Metrics>,
    open: Option<OpenSegment>,
    /// The catalog row of the interruption in progress, if any.
    gap: Option<i64>,
    /// Segments that could not be finished (e.g. disk full); recovered when possible.
    unfinished: Vec<(SegmentId, PathBuf)>,
    /// Retention: told when a segment closes, asked to free space on ENOSPC.
    space: Option<Arc<dyn crate::retention::SpaceHooks>>,
    /// Where the last stored frame ends (wall time).
    last_end_unix_ms: Option<i64>,
    /// Tells the store's sync what was written.
    sync: SyncHandle,
}

/// Whether a write error means the file system is full.
fn is_disk_full(e: &segment::SegmentError) -> bool {
    matches!(e, segment::SegmentError::Io(io) if io.raw_os_error() == Some(libc::ENOSPC))
}

/// Why the store did not take a GOP, by kind (decided from the error's kind, never
/// from its message): a full disk is worked around (retention frees space, the write
/// is tried once more) and recorded as the gap's reason; anything else is a failure.
#[derive(Debug, thiserror::Error)]
enum StoreWriteError {
    #[error("{0}")]
    DiskFull(String),
    #[error("{0}")]
    Failed(String),
}

impl StoreWriteError {
    fn io(what: impl std::fmt::Display, e: std::io::Error) -> Self {
        let m = format!("{what}: {e}");
        if e.raw_os_error() == Some(libc::ENOSPC) {
            StoreWriteError::DiskFull(m)
        } else {
            StoreWriteError::Failed(m)
        }
    }

    fn catalog(e: catalog::CatalogError) -> Self {
        if e.is_disk_full() {
            StoreWriteError::DiskFull(e.to_string())
        } else {
            StoreWriteError::Failed(e.to_string())
        }
    }

    fn segment(e: segment::SegmentError) -> Self {
        if is_disk_full(&e) {
            StoreWriteError::DiskFull(e.to_string())
        } else {
            StoreWriteError::Failed(e.to_string())
        }
    }

    fn is_disk_full(&self) -> bool {
        matches!(self, StoreWriteError::DiskFull(_))
    }
}

impl CameraWriter {
    /// `gap_from`: where an interruption began before this writer started
    /// (the last recorded instant of the camera) and why; opened now, closed by the
    /// first GOP written.
    pub fn new(
        cfg: WriterConfig,
        kek: Kek,
        metrics: Arc<Metrics>,
        startup_gap: Option<(i64, String)>,
        sync: SyncHandle,
    ) -> Result<CameraWriter, catalog::CatalogError> {
        let cat = Catalog::open(&cfg.store)?;
        let mut gap = cat
            .gaps(&cfg.camera)?
            .into_iter()
            .rev()
            .find(|g| g.to_unix_ms.is_none())
            .map(|g| g.rowid);
        if gap.is_none()
            && let Some((from, reason)) = startup_gap
        {
            gap = Some(cat.open_gap(&cfg.camera, from, &reason)?);
        }
        Ok(CameraWriter {
            cfg,
            kek,
            cat,
            metrics,
            open: None,
            gap,
            unfinished: Vec::new(),
            space: None,
            last_end_unix_ms: None,
            sync,
        })
    }

    /// Connects the writer to retention: a pass after each closed segment, and an
    /// emergency deletion (then one retry of the GOP) when a write hits ENOSPC.
    pub fn with_space_hooks(mut self, hooks: Arc<dyn crate::retention::SpaceHooks>) -> Self {
        self.space = Some(hooks);
        self
    }

    /// Asks retention to free `needed` bytes after ENOSPC; true when it freed any.
    fn free_space(&self, needed: u64) -> bool {
        match &self.space {
            Some(s) => s.disk_full(&self.cfg.camera, needed) > 0,
            None => false,
        }
    }

    /// Runs this writer alone on the calling thread until the sender side is dropped;
    /// then closes the open segment (the same loop as [`run_shared`]).
    pub fn run(self, rx: Receiver<WriterMsg>) {
        serve(&mut [self], &rx, None, |m| (0, m));
    }

    fn handle(&mut self, msg: WriterMsg) {
        match msg {
            WriterMsg::Gop { params, gop } => self.write_gop(params, gop),
            WriterMsg::Offline { at_unix_ms, reason } => {
                self.close_segment();
                // The interruption began where the recording stopped.
                let from = self
                    .last_end_unix_ms
                    .filter(|&e| e <= at_unix_ms)
                    .unwrap_or(at_unix_ms);
                self.begin_gap(from, &reason);
            }
        }
    }

    fn begin_gap(&mut self, from: i64, reason: &str) {
        if self.gap.is_some() {
            return;
        }
        match self.cat.open_gap(&self.cfg.camera, from, reason) {
            Ok(rowid) => self.gap = Some(rowid),
            Err(e) => error!(camera = %self.cfg.camera, error = %e, "cannot record gap"),
        }
    }

    fn end_gap(&mut self, at_unix_ms: i64) {
        if let Some(rowid) = self.gap {
            match self.cat.close_gap(rowid, at_unix_ms) {
                Ok(()) => self.gap = None,
                Err(e) => error!(camera = %self.cfg.camera, error = %e, "cannot close gap"),
            }
        }
    }

    fn needs_rotation(&self, params: &Arc<CodecParams>, gop: &Gop) -> bool {
        let Some(open) = &self.open else {
            return true;
        };
        let first = gop.frames[0].pts_90k;
        let params_changed = !Arc::ptr_eq(&open.params, params) && *open.params != **params;
        let jumped = media_time_broke(open.last_pts_90k, first);
        // A segment starts on a key frame: continuation chunks never rotate on length.
        let long_enough = gop.frames[0].key
            && first - open.start_90k >= i64::from(self.cfg.segment_secs) * 90_000;
        params_changed || jumped || long_enough
    }

    fn write_gop(&mut self, params: Arc<CodecParams>, gop: Gop) {
        if gop.frames.is_empty() {
            return;
        }
        self.retry_unfinished();
        let rotate = self.needs_rotation(&params, &gop);
        if rotate && !gop.frames[0].key {
            // A continuation of a GOP whose segment could not take it (none open, a
            // timestamp jump, new parameters): undecodable alone, so not stored.
            self.metrics
                .frames_dropped
                .get_or_create(&Metrics::cam(&self.cfg.camera))
                .inc_by(gop.frames.len() as u64);
            return;
        }
        if rotate {
            if let Some(open) = &self.open {
                let first = gop.frames[0].pts_90k;
                if media_time_broke(open.last_pts_90k, first) {
                    warn!(camera = %self.cfg.camera, from_90k = open.last_pts_90k, to_90k = first,
                          "media timestamps jumped; starting a new segment");
                }
            }
            self.close_segment();
            let mut opened = self.open_segment(&params, &gop);
            if let Err(e) = &opened
                && e.is_disk_full()
                && self.free_space(gop_bytes(&gop))
            {
                opened = self.open_segment(&params, &gop);
            }
            if let Err(e) = opened {
                self.fail(&gop, "cannot start a segment", &e);
                return;
            }
        }
        let started = Instant::now();
        let mut result = self
            .open
            .as_mut()
            .expect("opened above")
            .writer
            .append_gop(&gop);
        if let Err(e) = &result
            && is_disk_full(e)
            && self.free_space(gop_bytes(&gop))
        {
            // The failed chunk was truncated back; retry the GOP once.
            result = self
                .open
                .as_mut()
                .expect("opened above")
                .writer
                .append_gop(&gop);
        }
        let open = self.open.as_mut().expect("opened above");
        match result {
            Ok(n) => {
                self.metrics
                    .write_seconds
                    .observe(started.elapsed().as_secs_f64());
                let cam = Metrics::cam(&self.cfg.camera);
                self.metrics.bytes_written.get_or_create(&cam).inc_by(n);
                self.metrics
                    .frames_stored
                    .get_or_create(&cam)
                    .inc_by(gop.frames.len() as u64);
                let last = gop.frames.last().expect("non-empty");
                let n_frames = gop.frames.len() as i64;
                let dur = if n_frames > 1 {
                    (last.pts_90k - gop.frames[0].pts_90k) / (n_frames - 1)
                } else {
                    open.last_frame_dur_90k
                };
                open.last_frame_dur_90k = dur.clamp(1, 90_000);
                open.last_pts_90k = last.pts_90k;
                open.last_frame_unix_ms =
                    gop.start_unix_ms + ms_from_90k(last.pts_90k - gop.frames[0].pts_90k);
                self.sync.wrote();
                self.last_end_unix_ms =
                    Some(open.last_frame_unix_ms + ms_from_90k(open.last_frame_dur_90k));
                self.end_gap(gop.start_unix_ms);
            }
            Err(e) => self.fail(&gop, "cannot write", &StoreWriteError::segment(e)),
        }
    }

    /// A GOP could not be stored: count it, say so, and mark the interruption.
    fn fail(&mut self, gop: &Gop, what: &str, e: &StoreWriteError) {
        let cam = Metrics::cam(&self.cfg.camera);
        self.metrics.write_errors.get_or_create(&cam).inc();
        self.metrics
            .frames_dropped
            .get_or_create(&cam)
            .inc_by(gop.frames.len() as u64);
        error!(camera = %self.cfg.camera, frames = gop.frames.len(), error = %e, "{what}; recording goes on when the store accepts writes again");
        let reason = if e.is_disk_full() {
            "disk full"
        } else {
            "store write failed"
        };
        self.begin_gap(gop.start_unix_ms, reason);
    }

    fn open_segment(
        &mut self,
        params: &Arc<CodecParams>,
        gop: &Gop,
    ) -> Result<(), StoreWriteError> {
        let id = SegmentId::random();
        let key = DataKey::random();
        let wrapped = segment::wrap_key(self.kek.as_bytes(), id, &key);
        let path = catalog::segment_path(&self.cfg.store, &self.cfg.camera, id);
        let dir = path.parent().expect("segment path has a parent");
        std::fs::create_dir_all(dir).map_err(|e| StoreWriteError::io(dir.display(), e))?;
        let first_pts = gop.frames[0].pts_90k;
        self.cat
            .insert_open_segment(
                id,
                &self.cfg.camera,
                params.codec,
                gop.start_unix_ms,
                first_pts,
                &wrapped,
            )
            .map_err(StoreWriteError::catalog)?;
        let created =
            SegmentWriter::create(&path, id, &self.cfg.camera, &key, params, gop.start_unix_ms)
                .map_err(StoreWriteError::segment)
                .and_then(|w| {
                    crate::store::sync_dir(dir)
                        .map(|()| w)
                        .map_err(|e| StoreWriteError::io(dir.display(), e))
                });
        match created {
            Ok(writer) => {
                self.open = Some(OpenSegment {
                    id,
                    writer,
                    params: params.clone(),
                    start_90k: first_pts,
                    last_pts_90k: first_pts,
                    last_frame_dur_90k: 3000,
                    last_frame_unix_ms: gop.start_unix_ms,
                });
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                let _ = self.cat.delete_segment_row(id);
                Err(e)
            }
        }
    }

    fn close_segment(&mut self) {
        let Some(open) = self.open.take() else { return };
        let id = open.id;
        let path = catalog::segment_path(&self.cfg.store, &self.cfg.camera, id);
        match open.writer.finish() {
            Ok(fin) => {
                let closed = ClosedSegment {
                    end_unix_ms: open.last_frame_unix_ms + ms_from_90k(open.last_frame_dur_90k),
                    start_90k: open.start_90k,
                    end_90k: open.last_pts_90k + open.last_frame_dur_90k,
                    bytes: fin.bytes,
                    frames: fin.trailer.frames,
                    key_frames: fin.trailer.key_frames,
                    sha256: fin.sha256,
                };
                let mut marked = self.cat.close_segment(id, &closed, false);
                if let Err(e) = &marked
                    && e.is_disk_full()
                    && self.free_space(0)
                {
                    marked = self.cat.close_segment(id, &closed, false);
                }
                match marked {
                    Ok(()) => {
                        self.metrics
                            .segments_closed
                            .get_or_create(&Metrics::cam(&self.cfg.camera))
                            .inc();
                        self.metrics.store_bytes.inc_by(fin.bytes as i64);
                        info!(camera = %self.cfg.camera, segment = %id, bytes = fin.bytes,
                              frames = fin.trailer.frames, "segment closed");
                        if let Some(s) = &self.space {
                            s.segment_closed();
                        }
                    }
                    Err(e) => {
                        error!(camera = %self.cfg.camera, segment = %id, error = %e,
                               "cannot mark segment closed; it will be recovered at next start");
                    }
                }
            }
            Err(e) => {
                error!(camera = %self.cfg.camera, segment = %id, error = %e,
                       "cannot finish segment; will recover it when the store accepts writes");
                self.unfinished.push((id, path));
            }
        }
    }

    /// Finishes segments whose final chunk could not be written earlier.
    fn retry_unfinished(&mut self) {
        if self.unfinished.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.unfinished);
        for (id, path) in pending {
            match recover_one(&self.cat, &self.kek, &self.cfg.camera, id, &path) {
                Ok(_) => {}
                Err(e) => {
                    warn!(camera = %self.cfg.camera, segment = %id, error = %e, "segment still unfinished");
                    self.unfinished.push((id, path));
                }
            }
        }
    }
}

/// About what a GOP takes on disk (frames plus per-frame overhead).
fn gop_bytes(gop: &Gop) -> u64 {
    gop.frames
        .iter()
        .map(|f| f.data.len() as u64 + 32)
        .sum::<u64>()
        + 64
}

/// What recovery did to one open segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovered {
    /// Cut file repaired up to its last authentic chunk and catalogued.
    Repaired { frames: u64 },
    /// Nothing authentic in it (or no file): row and file removed.
    Removed,
}

/// Recovers one segment whose row is still open.
pub fn recover_one(
    cat: &Catalog,
    kek: &Kek,
    camera: &str,
    id: SegmentId,
    path: &Path,
) -> Result<Recovered, RecoveryError> {
    let Some(row) = cat.segment(id)? else {
        return Err(RecoveryError::NoRow(id));
    };
    if !path.exists() {
        cat.delete_segment_row(id)?;
        return Ok(Recovered::Removed);
    }
    let key = segment::unwrap_key(kek.as_bytes(), id, &row.wrapped_key)
        .map_err(|_| RecoveryError::Key { id })?;
    // Only a file that holds nothing at all is removed. A first chunk that fails
    // authentication may be tampering: it stays, open, for `check` to report.
    let nothing_authentic = |e: &segment::SegmentError| match e {
        segment::SegmentError::NotASegment | segment::SegmentError::Cut { valid_len: 0 } => true,
        segment::SegmentError::Auth { .. } => false,
        _ => segment::verify(path, id, camera, &key).is_ok_and(|v| {
            v.valid_len == 0
                && v.error
                    .as_ref()
                    .is_some_and(|e| matches!(e, segment::SegmentError::Cut { .. }))
        }),
    };
    match segment::recover(path, id, camera, &key) {
        Ok(rep) if rep.trailer.frames > 0 => {
            let t = &rep.trailer;
            let closed = ClosedSegment {
                end_unix_ms: t.last_unix_ms.max(row.start_unix_ms),
                start_90k: t.first_pts_90k,
                end_90k: t.last_pts_90k,
                bytes: rep.bytes,
                frames: t.frames,
                key_frames: t.key_frames,
                sha256: rep.sha256,
            };
            cat.close_segment(id, &closed, true)?;
            Ok(Recovered::Repaired { frames: t.frames })
        }
        Err(e) if !nothing_authentic(&e) => Err(RecoveryError::Segment { id, source: e }),
        _ => {
            // Remove the row first: a file without a row is garbage the next start removes.
            cat.delete_segment_row(id)?;
            std::fs::remove_file(path).map_err(|source| RecoveryError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            if let Some(dir) = path.parent() {
                let _ = crate::store::sync_dir(dir);
            }
            Ok(Recovered::Removed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{Codec, Frame};
    use crate::store_sync::StoreSync;
    use std::sync::mpsc::sync_channel;

    fn params(extra: u8) -> Arc<CodecParams> {
        Arc::new(CodecParams {
            codec: Codec::H264,
            extra_data: vec![1, 0x64, 0, 0x1f, extra],
            width: 320,
            height: 240,
            rfc6381: "avc1.64001f".into(),
        })
    }

    /// A one-second GOP of 25 frames starting at `pts_90k`.
    fn gop(pts_90k: i64, unix_ms: i64) -> Gop {
        Gop {
            start_unix_ms: unix_ms,
            frames: (0..25)
                .map(|i| Frame {
                    pts_90k: pts_90k + i * 3600,
                    key: i == 0,
                    data: vec![0, 0, 0, 4, 0x65, i as u8, 7, 7],
                })
                .collect(),
        }
    }

    fn run_writer(
        msgs: Vec<WriterMsg>,
    ) -> (
        tempfile::TempDir,
        Vec<catalog::SegmentRow>,
        Vec<catalog::GapRow>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::random();
        let metrics = Arc::new(Metrics::new());
        let sync = StoreSync::start(Duration::from_millis(100), metrics.clone(), None).unwrap();
        let w = CameraWriter::new(
            WriterConfig {
                store: dir.path().to_path_buf(),
                camera: "cam".into(),
                segment_secs: 4,
            },
            kek.clone(),
            metrics,
            None,
            sync.register(dir.path(), "cam").unwrap(),
        )
        .unwrap();
        let (tx, rx) = sync_channel(msgs.len() + 1);
        for m in msgs {
            tx.send(m).unwrap();
        }
        drop(tx);
        w.run(rx);
        let cat = Catalog::open(dir.path()).unwrap();
        let rows = cat.segments(None).unwrap();
        for r in &rows {
            assert!(!r.open);
            let key = segment::unwrap_key(kek.as_bytes(), r.id, &r.wrapped_key).unwrap();
            let rep = segment::verify(
                &catalog::segment_path(dir.path(), "cam", r.id),
                r.id,
                "cam",
                &key,
            )
            .unwrap();
            assert!(rep.is_intact(), "{rep:?}");
            assert_eq!(rep.trailer.frames, r.frames);
            assert_eq!(hex::encode(rep.sha256), r.sha256.clone().unwrap());
        }
        let gaps = cat.gaps("cam").unwrap();
        (dir, rows, gaps)
    }

    #[test]
    fn what_a_writer_writes_is_synced_while_its_segment_is_still_open() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let (synced_tx, synced_rx) = std::sync::mpsc::channel();
        let sync = StoreSync::start_with(
            Duration::from_millis(20),
            metrics.clone(),
            None,
            Box::new(move |_: &std::fs::File| {
                let _ = synced_tx.send(());
                Ok(())
            }),
        )
        .unwrap();
        let w = CameraWriter::new(
            WriterConfig {
                store: dir.path().to_path_buf(),
                camera: "cam".into(),
                segment_secs: 60,
            },
            Kek::random(),
            metrics,
            None,
            sync.register(dir.path(), "cam").unwrap(),
        )
        .unwrap();
        let (tx, rx) = sync_channel(2);
        let t = std::thread::spawn(move || w.run(rx));
        tx.send(WriterMsg::Gop {
            params: params(1),
            gop: gop(0, 1_800_000_000_000),
        })
        .unwrap();
        // The segment stays open (60 s): only the store's sync makes the GOP durable.
        synced_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the written GOP is synced");
        drop(tx);
        t.join().unwrap();
    }

    #[test]
    fn rotates_on_duration_timestamp_jumps_and_new_parameters() {
        let p = params(1);
        let t0 = 1_800_000_000_000;
        let mut msgs = Vec::new();
        // 0..6 s: rotation at 4 s.
        for s in 0..6 {
            msgs.push(WriterMsg::Gop {
                params: p.clone(),
                gop: gop(s * 90_000, t0 + s * 1000),
            });
        }
        // Media time jumps back to 0 (a camera that restarted its clock).
        for s in 0..2 {
            msgs.push(WriterMsg::Gop {
                params: p.clone(),
                gop: gop(s * 90_000, t0 + 6000 + s * 1000),
            });
        }
        // Jumps forward by an hour.
        msgs.push(WriterMsg::Gop {
            params: p.clone(),
            gop: gop(3600 * 90_000, t0 + 8000),
        });
        // New parameters (resolution change).
        msgs.push(WriterMsg::Gop {
            params: params(2),
            gop: gop(3601 * 90_000, t0 + 9000),
        });
        let (_dir, rows, gaps) = run_writer(msgs);
        let frames: Vec<u64> = rows.iter().map(|r| r.frames).collect();
        assert_eq!(frames, vec![100, 50, 50, 25, 25], "{rows:#?}");
        assert_eq!(rows.iter().map(|r| r.key_frames).sum::<u64>(), 10);
        assert!(gaps.is_empty());
        assert_eq!(rows[0].start_unix_ms, t0);
        assert_eq!(rows[0].end_unix_ms, t0 + 4000);
    }

    /// The second half of a GOP, flushed on its own.
    fn continuation(pts_90k: i64, unix_ms: i64) -> Gop {
        let mut g = gop(pts_90k, unix_ms);
        g.frames[0].key = false;
        g
    }

    #[test]
    fn continuation_chunks_stay_in_their_segment_and_are_dropped_without_one() {
        let p = params(1);
        let t0 = 1_800_000_000_000;
        let msgs = vec![
            // Before any key frame: nothing to attach to.
            WriterMsg::Gop {
                params: p.clone(),
                gop: continuation(0, t0),
            },
            WriterMsg::Gop {
                params: p.clone(),
                gop: gop(90_000, t0 + 1000),
            },
            // Past segment_secs (4 s) but not a key frame: no rotation.
            WriterMsg::Gop {
                params: p.clone(),
                gop: continuation(180_000, t0 + 2000),
            },
            WriterMsg::Gop {
                params: p.clone(),
                gop: continuation(540_000, t0 + 6000),
            },
            WriterMsg::Gop {
                params: p.clone(),
                gop: gop(630_000, t0 + 7000),
            },
        ];
        let (_dir, rows, _) = run_writer(msgs);
        let frames: Vec<u64> = rows.iter().map(|r| r.frames).collect();
        assert_eq!(frames, vec![75, 25], "{rows:#?}");
        assert_eq!(rows[0].key_frames, 1);
    }

    #[test]
    fn offline_closes_the_segment_and_opens_a_gap_until_video_returns() {
        let p = params(1);
        let t0 = 1_800_000_000_000;
        let msgs = vec![
            WriterMsg::Gop {
                params: p.clone(),
                gop: gop(0, t0),
            },
            WriterMsg::Offline {
                at_unix_ms: t0 + 1500,
                reason: "camera closed the session".into(),
            },
            WriterMsg::Gop {
                params: p.clone(),
                gop: gop(900_000, t0 + 7000),
            },
        ];
        let (_dir, rows, gaps) = run_writer(msgs);
        assert_eq!(rows.len(), 2);
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].reason, "camera closed the session");
        assert_eq!(gaps[0].from_unix_ms, t0 + 1000);
        assert_eq!(gaps[0].to_unix_ms, Some(t0 + 7000));
    }

    /// Two cameras on one writer thread: each message reaches its own camera's writer,
    /// and each camera's segments and interruptions stay its own.
    #[test]
    fn a_shared_writer_thread_keeps_each_camera_apart() {
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::random();
        let metrics = Arc::new(Metrics::new());
        let sync = StoreSync::start(Duration::from_millis(100), metrics.clone(), None).unwrap();
        let writer = |camera: &str| {
            CameraWriter::new(
                WriterConfig {
                    store: dir.path().to_path_buf(),
                    camera: camera.into(),
                    segment_secs: 60,
                },
                kek.clone(),
                metrics.clone(),
                None,
                sync.register(dir.path(), camera).unwrap(),
            )
            .unwrap()
        };
        let writers = vec![writer("gate"), writer("hall")];
        let (senders, rx) = queue(2, QUEUE_PER_CAMERA);
        let (gate, hall) = (&senders[0], &senders[1]);
        let t0 = 1_800_000_000_000;
        let p = params(1);
        for s in 0..3i64 {
            gate.try_send(WriterMsg::Gop {
                params: p.clone(),
                gop: gop(s * 90_000, t0 + s * 1000),
            })
            .unwrap();
            if s < 2 {
                hall.try_send(WriterMsg::Gop {
                    params: p.clone(),
                    gop: gop(s * 90_000, t0 + s * 1000),
                })
                .unwrap();
            }
        }
        hall.try_send(WriterMsg::Offline {
            at_unix_ms: t0 + 2500,
            reason: "camera closed the session".into(),
        })
        .unwrap();
        drop(senders);
        run_shared(writers, rx, None);

        let cat = Catalog::open(dir.path()).unwrap();
        let frames = |camera: &str| -> u64 {
            let rows = cat.segments(Some(camera)).unwrap();
            assert!(rows.iter().all(|r| !r.open && r.camera == camera));
            rows.iter().map(|r| r.frames).sum()
        };
        assert_eq!(frames("gate"), 75);
        assert_eq!(frames("hall"), 50);
        assert!(cat.gaps("gate").unwrap().is_empty());
        let hall_gaps = cat.gaps("hall").unwrap();
        assert_eq!(hall_gaps.len(), 1);
        assert_eq!(hall_gaps[0].from_unix_ms, t0 + 2000);
    }

    /// A thread's queue holds `per_camera` messages for each of its cameras; beyond,
    /// a message comes back to its sender (who counts the GOP as dropped).
    #[test]
    fn a_full_queue_gives_the_message_back() {
        let (senders, _rx) = queue(2, 1);
        let off = |at_unix_ms| WriterMsg::Offline {
            at_unix_ms,
            reason: "x".into(),
        };
        senders[0].try_send(off(1)).unwrap();
        senders[1].try_send(off(2)).unwrap();
        match senders[0].try_send(off(3)) {
            Err(TrySendError::Full(WriterMsg::Offline { at_unix_ms: 3, .. })) => {}
            _ => panic!("expected the message back, queue full"),
        }
    }
}

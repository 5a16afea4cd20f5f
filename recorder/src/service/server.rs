//! The service's side of the socket: peer check, a thread per connection, the answers.

use std::io::{BufReader, BufWriter};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hardware::signing::DeviceSigner;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::MAX_CONNECTIONS;
use super::journal::{Checkpoints, ServedJournal};
use super::wire::{
    ChunkWire, ErrorKind, GopWire, IndexWire, MAX_REQUEST_PAYLOAD_BYTES, ParamsWire, Reply,
    Request, SegmentWire, ServiceError, read_msg, write_msg,
};
use crate::catalog::{Catalog, SegmentRow};
use crate::checkpoint::LogRef;
use crate::clock::Clock;
use crate::config::Config;
use crate::footage::{Footage, FootageError};
use crate::holds::{self, HoldError};
use crate::segment::{SegmentError, SegmentId, SegmentReader};

/// A connection idle this long is closed (a client that forgot it).
const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// What the service needs; see the module docs of [`super`].
pub struct Service {
    footage: Footage,
    signer: Result<Arc<dyn DeviceSigner>, String>,
    served: Mutex<ServedJournal>,
    checkpoints: Mutex<Checkpoints>,
    clock: Arc<dyn Clock>,
    allowed_uids: Vec<u32>,
    active: AtomicUsize,
    syslog: Option<crate::syslog::SyslogConfig>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    storage: Option<Arc<crate::devices::StorageWatch>>,
    tamper: Option<Arc<crate::devices::TamperWatch>>,
}

/// The running service; dropping it stops accepting and removes the socket.
pub struct ServiceHandle {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Forwards the checkpoints to the log collector; stopped after the service, so
    /// the last checkpoint (the viewer-api's at its shutdown) still leaves.
    forwarder: Option<crate::syslog::Forwarder>,
}

impl ServiceHandle {
    /// The forwarding of checkpoints to the log collector, when `[syslog]` is set.
    pub fn syslog_status(&self) -> Option<Arc<crate::syslog::Status>> {
        self.forwarder.as_ref().map(|f| f.status())
    }

    pub fn socket(&self) -> &Path {
        &self.path
    }
}

impl Drop for ServiceHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn err(kind: ErrorKind, m: impl Into<String>) -> ServiceError {
    ServiceError::new(kind, m)
}

fn failed(e: impl std::fmt::Display) -> ServiceError {
    err(ErrorKind::Failed, e.to_string())
}

fn footage_err(e: FootageError) -> ServiceError {
    match e {
        FootageError::Segment {
            source: SegmentError::InvalidInput(m),
            ..
        } => err(ErrorKind::Invalid, m),
        e => failed(e),
    }
}

fn hold_err(e: HoldError) -> ServiceError {
    match e {
        HoldError::Invalid(m) => err(ErrorKind::Invalid, m),
        HoldError::NotFound(id) => err(ErrorKind::NotFound, format!("no hold with id {id}")),
        HoldError::AlreadyReleased { id, at, by } => ServiceError {
            kind: ErrorKind::AlreadyReleased,
            message: format!("hold {id} was already released at {at} by {by}"),
            at: Some(at),
            by: Some(by),
        },
        e => failed(e),
    }
}

impl Service {
    /// The service of the store of `config`, with its KEK and signing key.
    pub fn from_config(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Service> {
        use hardware::signing::SigningKeyProvider;
        let footage = Footage::open(config)?;
        let signer = crate::store::signing_key_provider(config)
            .load()
            .map(Arc::from)
            .map_err(|e| e.to_string());
        let mut allowed = config.service.allow_uids.clone();
        allowed.push(rustix::process::getuid().as_raw());
        let mut s = Service::new(footage, signer, allowed, clock)?;
        s.syslog = config.syslog.clone();
        Ok(s)
    }

    pub fn new(
        footage: Footage,
        signer: Result<Arc<dyn DeviceSigner>, String>,
        allowed_uids: Vec<u32>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Service> {
        let store = footage.store().to_path_buf();
        let served = ServedJournal::open(&store).map_err(|e| {
            anyhow::anyhow!("cannot open {}: {e}", store.join("served.sqlite").display())
        })?;
        let checkpoints = Checkpoints::open(&store)
            .map_err(|e| anyhow::anyhow!("cannot read the access-log checkpoints: {e}"))?;
        Ok(Service {
            footage,
            signer,
            served: Mutex::new(served),
            checkpoints: Mutex::new(checkpoints),
            clock,
            allowed_uids,
            active: AtomicUsize::new(0),
            syslog: None,
            metrics: None,
            storage: None,
            tamper: None,
        })
    }

    /// Answers `Metrics` with these (the recorder's, when it records).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Service {
        self.metrics = Some(metrics);
        self
    }

    /// Answers `Health` with the disk's state as this watch last probed it.
    pub fn with_storage(mut self, watch: Arc<crate::devices::StorageWatch>) -> Service {
        self.storage = Some(watch);
        self
    }

    /// Answers `Health` and the tamper requests from this case-open switch.
    pub fn with_tamper(mut self, watch: Arc<crate::devices::TamperWatch>) -> Service {
        self.tamper = Some(watch);
        self
    }

    /// Listens on `socket` (replacing a stale socket file, refusing when another
    /// service answers there) until the handle is dropped.
    pub fn listen(self, socket: &Path) -> anyhow::Result<ServiceHandle> {
        if socket.exists() {
            if UnixStream::connect(socket).is_ok() {
                anyhow::bail!(
                    "another recorder service is already listening on {}",
                    socket.display()
                );
            }
            std::fs::remove_file(socket).map_err(|e| {
                anyhow::anyhow!("cannot remove the stale {}: {e}", socket.display())
            })?;
        }
        let forwarder = match (&self.syslog, &self.signer) {
            (Some(c), Ok(signer)) => Some(crate::syslog::Forwarder::start(
                c,
                "ringfence-recorder",
                self.footage.store().join("syslog-checkpoints.cursor"),
                Box::new(super::journal::CheckpointFeed::new(
                    self.footage.store(),
                    signer.public_key(),
                )),
            )?),
            (Some(_), Err(e)) => {
                warn!(error = %e, "no signing key, so no checkpoints to forward");
                None
            }
            (None, _) => None,
        };
        let listener = UnixListener::bind(socket)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", socket.display()))?;
        // Anyone may connect; the peer's user id, from the kernel, decides who is
        // answered.
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))?;
        let stop = Arc::new(AtomicBool::new(false));
        let me = Arc::new(self);
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("service".into())
            .spawn(move || accept_loop(listener, me, s))?;
        info!(socket = %socket.display(), "recorder service listening");
        Ok(ServiceHandle {
            path: socket.to_path_buf(),
            stop,
            thread: Some(thread),
            forwarder,
        })
    }
}

fn accept_loop(listener: UnixListener, service: Arc<Service>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let uid = match rustix::net::sockopt::socket_peercred(&conn) {
            Ok(c) => c.uid.as_raw(),
            Err(e) => {
                warn!(error = %e, "service: cannot read a peer's credentials");
                continue;
            }
        };
        if !service.allowed_uids.contains(&uid) {
            warn!(uid, "service: refused a connection from a user not allowed");
            let _ = reply_err(
                &mut &conn,
                err(
                    ErrorKind::Refused,
                    format!("user {uid} may not use the recorder service"),
                ),
            );
            continue;
        }
        if service.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            service.active.fetch_sub(1, Ordering::SeqCst);
            let _ = reply_err(&mut &conn, err(ErrorKind::Busy, "too many connections"));
            continue;
        }
        let s = service.clone();
        let spawned = std::thread::Builder::new()
            .name("service-conn".into())
            .spawn(move || {
                let mut c = Connection {
                    service: &s,
                    stream: None,
                    catalog: None,
                };
                if let Err(e) = c.serve(conn) {
                    tracing::debug!(error = %e, "service connection ended");
                }
                c.close_stream();
                s.active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            service.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn reply_err(w: &mut impl std::io::Write, e: ServiceError) -> std::io::Result<()> {
    let header = serde_json::to_vec(&Reply::<()>::Error(e)).expect("serialises");
    write_msg(w, &header, &[])
}

fn reply_ok<T: Serialize>(
    w: &mut impl std::io::Write,
    v: &T,
    payload: &[u8],
) -> std::io::Result<()> {
    let header = serde_json::to_vec(&Reply::Ok(v)).expect("serialises");
    write_msg(w, &header, payload)
}

/// A segment open on a connection, for one log entry.
struct OpenSegment {
    reader: SegmentReader,
    served_id: i64,
    bytes: u64,
}

struct Connection<'a> {
    service: &'a Service,
    stream: Option<OpenSegment>,
    catalog: Option<Catalog>,
}

/// An answer: its header value and payload.
type Answer = Result<(serde_json::Value, Payload), ServiceError>;

/// The bytes after an answer's header: part of a buffer, so that a chunk read from the
/// segment is sent from the buffer it was decrypted in, not a copy.
#[derive(Default)]
struct Payload {
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
}

impl From<Vec<u8>> for Payload {
    fn from(buf: Vec<u8>) -> Payload {
        let range = 0..buf.len();
        Payload { buf, range }
    }
}

fn json(v: impl Serialize) -> Answer {
    Ok((serde_json::to_value(v).map_err(failed)?, Payload::default()))
}

impl Connection<'_> {
    fn serve(&mut self, conn: UnixStream) -> std::io::Result<()> {
        conn.set_read_timeout(Some(IDLE_TIMEOUT))?;
        let mut r = BufReader::new(&conn);
        let mut w = BufWriter::with_capacity(64 << 10, &conn);
        let mut payload = Vec::new();
        while let Some(header) = read_msg(&mut r, MAX_REQUEST_PAYLOAD_BYTES, &mut payload)? {
            let answer = match serde_json::from_slice::<Request>(&header) {
                Ok(req) => self.answer(req, &payload),
                Err(e) => Err(err(ErrorKind::Invalid, format!("bad request: {e}"))),
            };
            match answer {
                Ok((v, data)) => reply_ok(&mut w, &v, &data.buf[data.range])?,
                Err(e) => reply_err(&mut w, e)?,
            }
        }
        Ok(())
    }

    fn catalog(&mut self) -> Result<&Catalog, ServiceError> {
        if self.catalog.is_none() {
            self.catalog =
                Some(Catalog::open_read_only(self.service.footage.store()).map_err(failed)?);
        }
        Ok(self.catalog.as_ref().expect("just set"))
    }

    fn row(&mut self, camera: &str, segment: &str) -> Result<SegmentRow, ServiceError> {
        let id: SegmentId = segment
            .parse()
            .map_err(|_| err(ErrorKind::Invalid, "not a segment id"))?;
        match self.catalog()?.segment(id).map_err(failed)? {
            Some(r) if r.camera == camera => Ok(r),
            _ => Err(err(ErrorKind::NotFound, "no such segment of this camera")),
        }
    }

    fn now(&self) -> i64 {
        self.service.clock.now_unix_ms()
    }

    fn close_stream(&mut self) {
        if let Some(s) = self.stream.take()
            && s.bytes > 0
        {
            let j = self
                .service
                .served
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Err(e) = j.add_bytes(s.served_id, s.bytes) {
                warn!(error = %e, "service: cannot record bytes served");
            }
        }
    }

    fn signer(&self) -> Result<&Arc<dyn DeviceSigner>, ServiceError> {
        self.service
            .signer
            .as_ref()
            .map_err(|e| err(ErrorKind::Failed, format!("no device signing key: {e}")))
    }

    fn answer(&mut self, req: Request, payload: &[u8]) -> Answer {
        let svc = self.service;
        match req {
            Request::Cameras => json(svc.footage.cameras().map_err(footage_err)?),
            Request::Segments {
                camera,
                from_ms,
                to_ms,
            } => {
                let rows = self
                    .catalog()?
                    .segments_overlapping(&camera, from_ms, to_ms)
                    .map_err(failed)?;
                json(
                    rows.into_iter()
                        .map(|r| SegmentWire {
                            id: r.id.to_string(),
                            start_unix_ms: r.start_unix_ms,
                            end_unix_ms: r.end_unix_ms,
                            open: r.open,
                            bytes: r.bytes,
                            sha256: r.sha256,
                        })
                        .collect::<Vec<_>>(),
                )
            }
            Request::Gaps {
                camera,
                from_ms,
                to_ms,
            } => json(
                svc.footage
                    .gaps(&camera, from_ms, to_ms)
                    .map_err(footage_err)?,
            ),
            Request::SegmentIndex { camera, segment } => {
                let row = self.row(&camera, &segment)?;
                let idx = match svc.footage.segment_index(&row) {
                    Ok(i) => i,
                    // Still being written, or cut: the chunks written so far, read in
                    // order here (only their times, sizes and places leave).
                    Err(FootageError::Segment {
                        source: SegmentError::NoIndex,
                        ..
                    }) => return json(Some(scan_index(&svc.footage, &row)?)),
                    Err(e) => return Err(footage_err(e)),
                };
                let chunks = idx
                    .gops
                    .iter()
                    .enumerate()
                    .map(|(i, g)| ChunkWire {
                        start_unix_ms: g.start_unix_ms,
                        offset: g.offset,
                        len: g.len,
                        chunk_index: g.chunk_index,
                        frames: idx
                            .gop_frames(i)
                            .iter()
                            .map(|f| (f.pts_90k, f.size, f.key))
                            .collect(),
                    })
                    .collect();
                json(Some(IndexWire {
                    params: ParamsWire::from_params(&idx.params),
                    chunks,
                }))
            }
            Request::Open {
                camera,
                segment,
                entry,
            } => {
                check_entry(&entry)?;
                self.close_stream();
                let row = self.row(&camera, &segment)?;
                let reader = svc.footage.open_segment(&row).map_err(footage_err)?;
                let params = ParamsWire::from_params(reader.params());
                let served_id = svc
                    .served
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(
                        self.now(),
                        &entry,
                        "read",
                        Some(&camera),
                        Some(&segment),
                        None,
                    )?;
                self.stream = Some(OpenSegment {
                    reader,
                    served_id,
                    bytes: 0,
                });
                json(params)
            }
            Request::NextGop => {
                let s = self.open_segment()?;
                match s.reader.next_gop() {
                    Ok(Some(g)) => {
                        let mut data =
                            Vec::with_capacity(g.frames.iter().map(|f| f.data.len()).sum());
                        let frames = g
                            .frames
                            .iter()
                            .map(|f| {
                                data.extend_from_slice(&f.data);
                                (f.pts_90k, f.data.len() as u32, f.key)
                            })
                            .collect();
                        s.bytes += data.len() as u64;
                        Ok((
                            serde_json::to_value(GopWire::Gop {
                                start_unix_ms: g.start_unix_ms,
                                frames,
                            })
                            .map_err(failed)?,
                            data.into(),
                        ))
                    }
                    Ok(None) => json(GopWire::End),
                    Err(SegmentError::Cut { .. }) => json(GopWire::Pending),
                    Err(e) => Err(failed(e)),
                }
            }
            Request::ReadAt {
                offset,
                len,
                chunk_index,
            } => {
                let s = self.open_segment()?;
                let gop = s
                    .reader
                    .read_gop_bytes_at(offset, len, chunk_index)
                    .map_err(|e| match e {
                        SegmentError::InvalidInput(m) => err(ErrorKind::Invalid, m),
                        e => failed(e),
                    })?;
                let frames: Vec<_> = gop
                    .frames
                    .iter()
                    .map(|f| (f.pts_90k, f.size, f.key))
                    .collect();
                let (buf, range) = gop.into_parts();
                s.bytes += range.len() as u64;
                s.reader.will_need(offset + u64::from(len) + 33, 4 << 20);
                Ok((
                    serde_json::to_value(frames).map_err(failed)?,
                    Payload { buf, range },
                ))
            }
            Request::WillRead { offset, len } => {
                let s = self.open_segment()?;
                s.reader.will_need(offset, len.min(64 << 20));
                json(())
            }
            Request::Close => {
                self.close_stream();
                json(())
            }
            Request::Holds => json(holds::list(self.catalog()?).map_err(hold_err)?),
            Request::Hold { id } => json(holds::get(self.catalog()?, id).map_err(hold_err)?),
            Request::AddHold { entry, hold } => {
                check_entry(&entry)?;
                let now = self.now();
                let cat = Catalog::open(svc.footage.store()).map_err(failed)?;
                let id = holds::add(&cat, &hold, now).map_err(hold_err)?;
                svc.served
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(now, &entry, "hold.add", None, None, Some(&id.to_string()))?;
                json(id)
            }
            Request::ReleaseHold { entry, id, by } => {
                check_entry(&entry)?;
                let now = self.now();
                let cat = Catalog::open(svc.footage.store()).map_err(failed)?;
                holds::release(&cat, id, &by, now).map_err(hold_err)?;
                svc.served
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(
                        now,
                        &entry,
                        "hold.release",
                        None,
                        None,
                        Some(&id.to_string()),
                    )?;
                json(())
            }
            Request::Health { since_ms } => {
                let mut h = crate::footage::health(svc.footage.store(), since_ms, self.now())
                    .map_err(footage_err)?;
                h.storage = svc.storage.as_ref().map(|w| w.report());
                h.tamper = svc.tamper.as_ref().map(|w| w.status());
                json(h)
            }
            Request::TamperEvents { after_seq, limit } => json(
                svc.tamper
                    .as_ref()
                    .map(|w| w.events_after(after_seq, limit.min(1000)))
                    .unwrap_or_default(),
            ),
            Request::TamperAck { entry, by } => {
                check_entry(&entry)?;
                let Some(w) = &svc.tamper else {
                    return Err(err(ErrorKind::NotFound, "this box has no case-open switch"));
                };
                let ack = w.acknowledge(&by).map_err(|e| match e {
                    hardware::tamper::AckError::NothingLatched => {
                        err(ErrorKind::NotFound, e.to_string())
                    }
                    hardware::tamper::AckError::NoName => err(ErrorKind::Invalid, e.to_string()),
                    hardware::tamper::AckError::NotSaved(_) => failed(e),
                })?;
                svc.served
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(self.now(), &entry, "tamper.acknowledge", None, None, None)?;
                json(ack)
            }
            Request::Metrics => json(svc.metrics.as_ref().map(|m| m.encode()).unwrap_or_default()),
            Request::FsSpace => {
                json(crate::footage::file_system_space(svc.footage.store()).map_err(failed)?)
            }
            Request::Journal {
                camera,
                since_ms,
                before_seq,
                limit,
            } => json(
                crate::journal::page(
                    self.catalog()?,
                    camera.as_deref(),
                    since_ms,
                    before_seq,
                    limit.min(10_000),
                )
                .map_err(failed)?,
            ),
            Request::PublicKey => json(hex::encode(self.signer()?.public_key())),
            Request::SignManifest { entry } => {
                check_entry(&entry)?;
                self.check_manifest(&entry, payload)?;
                let sig = self.signer()?.sign(payload);
                let digest = hex::encode(Sha256::digest(payload));
                svc.served
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(self.now(), &entry, "sign", None, None, Some(&digest))?;
                json(hex::encode(sig))
            }
            Request::Checkpoint { head } => {
                let signer = self.signer()?.clone();
                let now = self.now();
                let signed = svc
                    .checkpoints
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sign(&head, now, signer.as_ref())?;
                json(signed)
            }
            Request::LatestCheckpoint => json(
                svc.checkpoints
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .latest()
                    .cloned(),
            ),
            Request::Served { after_id, limit } => json(
                svc.served
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .page(after_id, limit)?,
            ),
        }
    }

    fn open_segment(&mut self) -> Result<&mut OpenSegment, ServiceError> {
        self.stream
            .as_mut()
            .ok_or_else(|| err(ErrorKind::Invalid, "no segment is open on this connection"))
    }

    /// A manifest is signed only if every segment it names is the catalog's, as it
    /// says, and was read for the same log entry.
    fn check_manifest(&mut self, entry: &LogRef, manifest: &[u8]) -> Result<(), ServiceError> {
        #[derive(serde::Deserialize)]
        struct Seg {
            camera: String,
            id: String,
            bytes: u64,
            sha256: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Manifest {
            segments: Vec<Seg>,
        }
        let refused = |m: String| err(ErrorKind::Refused, m);
        let m: Manifest = serde_json::from_slice(manifest)
            .map_err(|e| err(ErrorKind::Invalid, format!("not a manifest: {e}")))?;
        if m.segments.is_empty() {
            return Err(refused("the manifest names no footage".into()));
        }
        for s in &m.segments {
            let row = self.row(&s.camera, &s.id).map_err(|_| {
                refused(format!(
                    "segment {} of {} is not in the store",
                    s.id, s.camera
                ))
            })?;
            if let Some(h) = &s.sha256
                && (row.sha256.as_deref() != Some(h.as_str()) || row.bytes != s.bytes)
            {
                return Err(refused(format!(
                    "segment {} is not as the manifest says (size or SHA-256)",
                    s.id
                )));
            }
            let read = self
                .service
                .served
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .was_read(entry, &s.id)?;
            if !read {
                return Err(refused(format!(
                    "segment {} was not read for access-log entry {}",
                    s.id, entry.seq
                )));
            }
        }
        Ok(())
    }
}

/// The index of a segment without a stored one: its complete chunks, read in order.
fn scan_index(footage: &Footage, row: &SegmentRow) -> Result<IndexWire, ServiceError> {
    let mut reader = footage.open_segment(row).map_err(footage_err)?;
    let params = ParamsWire::from_params(reader.params());
    let mut chunks = Vec::new();
    loop {
        match reader.next_gop() {
            Ok(Some(g)) => {
                let Some((chunk_index, offset, len)) = reader.last_chunk() else {
                    return Err(failed("a chunk read without its place"));
                };
                chunks.push(ChunkWire {
                    start_unix_ms: g.start_unix_ms,
                    offset,
                    len,
                    chunk_index,
                    frames: g
                        .frames
                        .iter()
                        .map(|f| (f.pts_90k, f.data.len() as u32, f.key))
                        .collect(),
                });
            }
            Ok(None) | Err(SegmentError::Cut { .. }) => break,
            Err(e) => return Err(failed(e)),
        }
    }
    Ok(IndexWire { params, chunks })
}

fn check_entry(entry: &LogRef) -> Result<(), ServiceError> {
    if entry.seq <= 0 || !entry.has_sha256_hash() {
        return Err(err(
            ErrorKind::Refused,
            "footage, holds and signatures need the access-log entry they are for",
        ));
    }
    Ok(())
}

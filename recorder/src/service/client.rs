//! The viewer-api's side of the socket: blocking calls over a small pool of
//! connections, and a connection of its own for each segment being read.

use std::io::{BufReader, BufWriter};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::wire::{
    ErrorKind, FrameWire, GopWire, MAX_PAYLOAD_BYTES, ParamsWire, Reply, Request, ServiceError,
    read_msg, write_msg,
};

/// Idle connections kept for the next call.
const POOL: usize = 8;
/// How long an answer may take (a health report of a month of segments included).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

struct Conn {
    r: BufReader<UnixStream>,
    w: BufWriter<UnixStream>,
}

impl Conn {
    fn connect(path: &Path) -> Result<Conn, ServiceError> {
        let s = UnixStream::connect(path).map_err(|e| {
            ServiceError::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot reach the recorder service at {}: {e}",
                    path.display()
                ),
            )
        })?;
        let unavailable =
            |e: std::io::Error| ServiceError::new(ErrorKind::Unavailable, e.to_string());
        s.set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(unavailable)?;
        let w = s.try_clone().map_err(unavailable)?;
        Ok(Conn {
            r: BufReader::with_capacity(64 << 10, s),
            w: BufWriter::new(w),
        })
    }

    /// One request and its answer: the answer's value and payload (into `buf`).
    /// `Err(Ok(e))`: the service answered an error; `Err(Err(io))`: the connection
    /// failed.
    fn call<T: DeserializeOwned>(
        &mut self,
        req: &Request,
        payload: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<T, Result<ServiceError, std::io::Error>> {
        let header = serde_json::to_vec(req).expect("a request serialises");
        if let Err(e) = write_msg(&mut self.w, &header, payload) {
            // The service may have answered before reading (a refused peer, busy):
            // that answer says more than the broken pipe.
            return match read_msg(&mut self.r, MAX_PAYLOAD_BYTES, buf) {
                Ok(Some(h)) => match serde_json::from_slice::<Reply<T>>(&h) {
                    Ok(Reply::Error(se)) => Err(Ok(se)),
                    _ => Err(Err(e)),
                },
                _ => Err(Err(e)),
            };
        }
        let Some(header) = read_msg(&mut self.r, MAX_PAYLOAD_BYTES, buf).map_err(Err)? else {
            return Err(Err(std::io::ErrorKind::UnexpectedEof.into()));
        };
        match serde_json::from_slice::<Reply<T>>(&header) {
            Ok(Reply::Ok(v)) => Ok(v),
            Ok(Reply::Error(e)) => Err(Ok(e)),
            Err(e) => Err(Ok(ServiceError::new(
                ErrorKind::Failed,
                format!("unreadable answer from the recorder service: {e}"),
            ))),
        }
    }
}

fn lost(e: std::io::Error) -> ServiceError {
    ServiceError::new(
        ErrorKind::Unavailable,
        format!("lost the recorder service: {e}"),
    )
}

/// A client of the recorder service at a socket path.
pub struct Client {
    path: PathBuf,
    idle: Mutex<Vec<Conn>>,
}

impl Client {
    pub fn new(path: impl Into<PathBuf>) -> Client {
        Client {
            path: path.into(),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.path
    }

    /// Calls `req` and deserializes the answer; the payload is returned too.
    pub fn call_with<T: DeserializeOwned>(
        &self,
        req: &Request,
        payload: &[u8],
    ) -> Result<(T, Vec<u8>), ServiceError> {
        let mut buf = Vec::new();
        // A pooled connection may have been closed by the service since (idle timeout,
        // restart): then try once more on a fresh one.
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let fresh = pooled.is_none();
        let mut conn = match pooled {
            Some(c) => c,
            None => Conn::connect(&self.path)?,
        };
        let v = match conn.call::<T>(req, payload, &mut buf) {
            Ok(v) => v,
            Err(Ok(e)) => {
                self.put_back(conn);
                return Err(e);
            }
            Err(Err(e)) if fresh => return Err(lost(e)),
            Err(Err(_)) => {
                let mut conn = Conn::connect(&self.path)?;
                let v = conn.call::<T>(req, payload, &mut buf).map_err(|e| match e {
                    Ok(e) => e,
                    Err(e) => lost(e),
                });
                if v.is_ok() {
                    self.put_back(conn);
                }
                return v.map(|v| (v, buf));
            }
        };
        self.put_back(conn);
        Ok((v, buf))
    }

    pub fn call<T: DeserializeOwned>(&self, req: &Request) -> Result<T, ServiceError> {
        self.call_with(req, &[]).map(|(v, _)| v)
    }

    fn put_back(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOL {
            idle.push(conn);
        }
    }

    /// Opens a segment for reading on a connection of its own, for the access-log
    /// entry named in `req` (a [`Request::Open`]).
    pub fn open_segment(&self, req: &Request) -> Result<RemoteSegment, ServiceError> {
        let mut conn = Conn::connect(&self.path)?;
        let mut buf = Vec::new();
        let params = conn
            .call::<ParamsWire>(req, &[], &mut buf)
            .map_err(|e| match e {
                Ok(e) => e,
                Err(e) => lost(e),
            })?;
        Ok(RemoteSegment { conn, params })
    }
}

/// A segment being read through the service; its connection closes with it.
pub struct RemoteSegment {
    conn: Conn,
    pub params: ParamsWire,
}

impl RemoteSegment {
    fn call<T: DeserializeOwned>(
        &mut self,
        req: &Request,
        buf: &mut Vec<u8>,
    ) -> Result<T, ServiceError> {
        self.conn.call(req, &[], buf).map_err(|e| match e {
            Ok(e) => e,
            Err(e) => lost(e),
        })
    }

    /// The next chunk in order; for a GOP, its frame bytes are in `buf`, back to back.
    pub fn next_gop(&mut self, buf: &mut Vec<u8>) -> Result<GopWire, ServiceError> {
        self.call(&Request::NextGop, buf)
    }

    /// The chunk at a place the index gave: its frames, their bytes in `buf`.
    pub fn read_at(
        &mut self,
        offset: u64,
        len: u32,
        chunk_index: u64,
        buf: &mut Vec<u8>,
    ) -> Result<Vec<FrameWire>, ServiceError> {
        self.call(
            &Request::ReadAt {
                offset,
                len,
                chunk_index,
            },
            buf,
        )
    }

    pub fn will_read(&mut self, offset: u64, len: u64) -> Result<(), ServiceError> {
        let mut buf = Vec::new();
        self.call(&Request::WillRead { offset, len }, &mut buf)
    }
}

impl Drop for RemoteSegment {
    /// Closes the segment and waits for the recorder to journal what it sent (a
    /// connection that just drops is journaled too, a moment later).
    fn drop(&mut self) {
        let mut buf = Vec::new();
        let _ = self.call::<()>(&Request::Close, &mut buf);
    }
}

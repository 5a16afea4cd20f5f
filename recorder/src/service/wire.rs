//! What travels on the service's socket: length-prefixed JSON headers and payloads.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::checkpoint::LogRef;
use crate::holds::NewHold;
use crate::segment::{Codec, CodecParams};

/// Largest JSON header accepted (a segment index of a few thousand frames is well
/// below).
pub(crate) const MAX_HEADER_BYTES: usize = 16 << 20;
/// Largest payload accepted: one chunk (a GOP) of frames, or a manifest.
pub(crate) const MAX_PAYLOAD_BYTES: usize = crate::segment::MAX_CHUNK_PLAINTEXT + (1 << 20);
/// Largest payload the service accepts from a client (a manifest).
pub(crate) const MAX_REQUEST_PAYLOAD_BYTES: usize = 16 << 20;

/// A request, as the JSON header says it (`{"op": "...", ...}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Cameras,
    Segments {
        camera: String,
        from_ms: i64,
        to_ms: i64,
    },
    Gaps {
        camera: String,
        from_ms: i64,
        to_ms: i64,
    },
    /// The stored index of a closed segment (`null`: it has none; read it in order).
    SegmentIndex {
        camera: String,
        segment: String,
    },
    /// Opens a segment for reading on this connection, for the access-log entry
    /// `entry`; answers its codec parameters.
    Open {
        camera: String,
        segment: String,
        entry: LogRef,
    },
    /// The next chunk of the open segment, in order.
    NextGop,
    /// The chunk at a place the segment's index gave.
    ReadAt {
        offset: u64,
        len: u32,
        chunk_index: u64,
    },
    /// Hints that the bytes from `offset` on will be read soon.
    WillRead {
        offset: u64,
        len: u64,
    },
    /// Closes the open segment, recording what was sent in the journal.
    Close,
    Holds,
    Hold {
        id: i64,
    },
    AddHold {
        entry: LogRef,
        hold: NewHold,
    },
    ReleaseHold {
        entry: LogRef,
        id: i64,
        by: String,
    },
    Health {
        since_ms: i64,
    },
    FsSpace,
    /// The recorder's Prometheus metrics (text): served to the network only by the
    /// viewer-api, behind sign-in.
    Metrics,
    Journal {
        camera: Option<String>,
        since_ms: Option<i64>,
        before_seq: Option<i64>,
        limit: usize,
    },
    PublicKey,
    /// Signs the manifest in the payload, for the export logged as `entry`.
    SignManifest {
        entry: LogRef,
    },
    /// Signs a checkpoint of the access log's head.
    Checkpoint {
        head: LogRef,
    },
    LatestCheckpoint,
    /// The journal of what was served, oldest first, from the row after `after_id`.
    Served {
        after_id: i64,
        limit: usize,
    },
    /// The case-open switch's notices after `after_seq`, oldest first (for the access
    /// log); empty where no switch is configured.
    TamperEvents {
        after_seq: u64,
        limit: usize,
    },
    /// An IT user acknowledges the latched tamper alarm, as logged in `entry`.
    TamperAck {
        entry: LogRef,
        by: String,
    },
}

/// Why the service refused or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or names something impossible.
    Invalid,
    UnknownCamera,
    NotFound,
    AlreadyReleased,
    /// Not allowed: wrong peer, no log entry, a manifest or checkpoint the recorder
    /// does not vouch for.
    Refused,
    /// Too many connections.
    Busy,
    /// The store failed.
    Failed,
    /// The service could not be reached (set by the client).
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub message: String,
    /// For `already_released`: when, and by whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl ServiceError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ServiceError {
        ServiceError {
            kind,
            message: message.into(),
            at: None,
            by: None,
        }
    }
}

/// The answer header: `{"ok": ...}` or `{"error": {...}}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Reply<T> {
    Ok(T),
    Error(ServiceError),
}

/// A segment as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentWire {
    pub id: String,
    pub start_unix_ms: i64,
    pub end_unix_ms: i64,
    pub open: bool,
    pub bytes: u64,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamsWire {
    /// `h264` or `h265`.
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// avcC / hvcC (hex).
    pub extra_data: String,
}

impl ParamsWire {
    pub fn from_params(p: &CodecParams) -> ParamsWire {
        ParamsWire {
            codec: match p.codec {
                Codec::H264 => "h264",
                Codec::H265 => "h265",
            }
            .into(),
            width: p.width,
            height: p.height,
            extra_data: hex::encode(&p.extra_data),
        }
    }

    pub fn codec(&self) -> Result<Codec, ServiceError> {
        match self.codec.as_str() {
            "h264" => Ok(Codec::H264),
            "h265" => Ok(Codec::H265),
            c => Err(ServiceError::new(
                ErrorKind::Invalid,
                format!("unknown codec {c:?}"),
            )),
        }
    }

    pub fn extra_data(&self) -> Result<Vec<u8>, ServiceError> {
        hex::decode(&self.extra_data)
            .map_err(|_| ServiceError::new(ErrorKind::Invalid, "codec parameters are not hex"))
    }
}

/// A frame without its bytes: `[pts_90k, size, key]`.
pub type FrameWire = (i64, u32, bool);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkWire {
    pub start_unix_ms: i64,
    pub offset: u64,
    pub len: u32,
    pub chunk_index: u64,
    pub frames: Vec<FrameWire>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexWire {
    pub params: ParamsWire,
    pub chunks: Vec<ChunkWire>,
}

/// What `next_gop` found; a GOP's frame bytes are the payload, back to back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GopWire {
    Gop {
        start_unix_ms: i64,
        frames: Vec<FrameWire>,
    },
    /// A segment still being written has nothing more yet.
    Pending,
    End,
}

/// Writes one message: header and payload, each after its length.
pub(crate) fn write_msg(w: &mut impl Write, header: &[u8], payload: &[u8]) -> io::Result<()> {
    let too_big = |what| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} too large"));
    let hlen = u32::try_from(header.len()).map_err(|_| too_big("header"))?;
    let plen = u32::try_from(payload.len()).map_err(|_| too_big("payload"))?;
    let mut head = Vec::with_capacity(8 + header.len());
    head.extend_from_slice(&hlen.to_be_bytes());
    head.extend_from_slice(header);
    head.extend_from_slice(&plen.to_be_bytes());
    w.write_all(&head)?;
    if !payload.is_empty() {
        w.write_all(payload)?;
    }
    w.flush()
}

/// Reads one message; `None` when the peer closed before its first byte. The payload
/// is read into `buf` (reused).
pub(crate) fn read_msg(
    r: &mut impl Read,
    max_payload: usize,
    buf: &mut Vec<u8>,
) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let hlen = u32::from_be_bytes(len) as usize;
    if hlen > MAX_HEADER_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message header too large",
        ));
    }
    let mut header = vec![0u8; hlen];
    r.read_exact(&mut header)?;
    r.read_exact(&mut len)?;
    let plen = u32::from_be_bytes(len) as usize;
    if plen > max_payload {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message payload too large",
        ));
    }
    buf.clear();
    buf.resize(plen, 0);
    r.read_exact(buf)?;
    Ok(Some(header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_and_oversized_ones_are_refused() {
        let mut wire = Vec::new();
        write_msg(&mut wire, br#"{"op":"cameras"}"#, b"payload").unwrap();
        let mut buf = Vec::new();
        let header = read_msg(&mut wire.as_slice(), 100, &mut buf)
            .unwrap()
            .unwrap();
        let req: Request = serde_json::from_slice(&header).unwrap();
        assert!(matches!(req, Request::Cameras));
        assert_eq!(buf, b"payload");
        // The same message with a payload larger than allowed.
        assert!(read_msg(&mut wire.as_slice(), 3, &mut buf).is_err());
        // A cut message is an error, an empty stream the end.
        assert!(read_msg(&mut &wire[..wire.len() - 1], 100, &mut buf).is_err());
        assert!(read_msg(&mut &[][..], 100, &mut buf).unwrap().is_none());
        // A header length beyond the limit is refused before allocating it.
        let huge = (u32::MAX).to_be_bytes();
        assert!(read_msg(&mut &huge[..], 100, &mut buf).is_err());
    }

    #[test]
    fn unknown_operations_and_fields_are_refused() {
        assert!(serde_json::from_str::<Request>(r#"{"op":"delete_segment","id":"x"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"hold","id":1,"extra":1}"#).is_err());
    }
}

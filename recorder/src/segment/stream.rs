//! Reading in order: the chunk stream shared by the reader, verify and recover. It
//! checks the clear header, then reads, checks and opens one chunk after the other,
//! keeping the chain of tags and the end of the authentic prefix.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use ring::digest::Context as Sha256;

use super::codec;
use super::error::malformed;
use super::index::ChunkAt;
use super::sealing::{Sealer, footer, sha256_new};
use super::{
    CHUNK_HDR_LEN, CHUNK_MAGIC, CodecParams, DataKey, FLAG_FINAL, FOOTER_LEN, FORMAT_VERSION,
    HEADER_FIXED_LEN, HEADER_PREFIX_LEN, MAX_CAMERA_LEN, MAX_CHUNK_PLAINTEXT, RECOVERY_INDEX,
    SEGMENT_MAGIC, SegmentError, SegmentId, TAG_LEN,
};

/// Buffer for reading a file's leftover bytes ([`ChunkStream::drain`]), in bytes.
const DRAIN_BUF_BYTES: usize = 64 << 10;

/// Reads `out.len()` bytes unless EOF comes first; returns how many were read.
fn read_full(
    r: &mut BufReader<File>,
    hasher: &mut Option<Sha256>,
    out: &mut [u8],
) -> io::Result<usize> {
    let mut n = 0;
    while n < out.len() {
        match r.read(&mut out[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(h) = hasher {
        h.update(&out[..n]);
    }
    Ok(n)
}

pub(super) struct ChunkStream {
    pub(super) file: BufReader<File>,
    /// Bytes consumed from the file.
    pub(super) pos: u64,
    pub(super) hasher: Option<Sha256>,
    pub(super) sealer: Sealer,
    /// Holds the ciphertext, then the plaintext, of the current chunk (reused).
    buf: Vec<u8>,
    plain_len: usize,
    pub(super) prev_tag: [u8; TAG_LEN],
    last_index: Option<u64>,
    /// End of the last authentic chunk (0 until chunk 0 authenticates).
    pub(super) valid_len: u64,
    /// End of the chunk that failed authentication, if that was the failure.
    pub(super) failed_chunk_end: Option<u64>,
}

pub(super) struct ChunkMeta {
    pub(super) index: u64,
    pub(super) flags: u8,
    /// Where the chunk starts in the file, and its plaintext length.
    pub(super) offset: u64,
    pub(super) len: usize,
}

impl ChunkMeta {
    pub(super) fn at(&self) -> ChunkAt {
        ChunkAt {
            index: self.index,
            offset: self.offset,
            len: self.len as u64,
        }
    }
}

impl ChunkStream {
    /// Reads and checks the clear header.
    pub(super) fn open(
        file: File,
        expect_id: SegmentId,
        expect_camera: &str,
        key: &DataKey,
        hash: bool,
        buf_capacity: usize,
    ) -> Result<Self, SegmentError> {
        let mut file = BufReader::with_capacity(buf_capacity, file);
        let mut hasher = hash.then(sha256_new);
        let mut header = [0u8; HEADER_FIXED_LEN + MAX_CAMERA_LEN];
        let n = read_full(&mut file, &mut hasher, &mut header[..HEADER_PREFIX_LEN])?;
        let m = n.min(SEGMENT_MAGIC.len());
        if header[..m] != SEGMENT_MAGIC[..m] {
            return Err(SegmentError::NotASegment);
        }
        if n < HEADER_PREFIX_LEN {
            return Err(SegmentError::Cut { valid_len: 0 });
        }
        let version = u16::from_be_bytes([header[8], header[9]]);
        if !(super::OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(SegmentError::UnsupportedVersion(version));
        }
        let header_len = usize::from(u16::from_be_bytes([header[10], header[11]]));
        if !(HEADER_FIXED_LEN + 1..=HEADER_FIXED_LEN + MAX_CAMERA_LEN).contains(&header_len) {
            return Err(SegmentError::Malformed(format!(
                "header length {header_len} out of range"
            )));
        }
        let n = read_full(
            &mut file,
            &mut hasher,
            &mut header[HEADER_PREFIX_LEN..header_len],
        )?;
        if n < header_len - HEADER_PREFIX_LEN {
            return Err(SegmentError::Cut { valid_len: 0 });
        }
        let header = &header[..header_len];
        let found_id = SegmentId(header[12..28].try_into().expect("16 bytes"));
        let nonce_prefix: [u8; 4] = header[28..32].try_into().expect("4 bytes");
        if header[32..36] != [0; 4] {
            return Err(SegmentError::Malformed(
                "reserved header bytes are not zero".into(),
            ));
        }
        let cam_len = usize::from(header[36]);
        if HEADER_FIXED_LEN + cam_len != header_len {
            return Err(SegmentError::Malformed(
                "camera id length disagrees with header length".into(),
            ));
        }
        let found_camera = std::str::from_utf8(&header[HEADER_FIXED_LEN..])
            .map_err(|_| SegmentError::Malformed("camera id is not UTF-8".into()))?;
        if found_id != expect_id || found_camera != expect_camera {
            return Err(SegmentError::WrongSegment {
                expected_id: expect_id,
                found_id,
                expected_camera: expect_camera.to_owned(),
                found_camera: found_camera.to_owned(),
            });
        }
        Ok(ChunkStream {
            file,
            pos: header_len as u64,
            hasher,
            sealer: Sealer::new(key, header, nonce_prefix),
            buf: Vec::new(),
            plain_len: 0,
            prev_tag: [0; TAG_LEN],
            last_index: None,
            valid_len: 0,
            failed_chunk_end: None,
        })
    }

    pub(super) fn cut(&self) -> SegmentError {
        SegmentError::Cut {
            valid_len: self.valid_len,
        }
    }

    /// Reads, checks and decrypts the next chunk (plaintext in [`Self::plaintext`]).
    /// `Ok(None)` is a clean EOF at a chunk boundary.
    pub(super) fn next_chunk(&mut self) -> Result<Option<ChunkMeta>, SegmentError> {
        let start = self.pos;
        let mut hdr = [0u8; CHUNK_HDR_LEN];
        let n = read_full(&mut self.file, &mut self.hasher, &mut hdr)?;
        self.pos += n as u64;
        if n == 0 {
            return Ok(None);
        }
        if n < CHUNK_HDR_LEN {
            return Err(self.cut());
        }
        if hdr[..4] != CHUNK_MAGIC {
            return Err(SegmentError::Malformed(format!(
                "no chunk marker at offset {start}"
            )));
        }
        let index = u64::from_be_bytes(hdr[4..12].try_into().expect("8 bytes"));
        let flags = hdr[12];
        let len = u32::from_be_bytes(hdr[13..17].try_into().expect("4 bytes")) as usize;
        if flags & !FLAG_FINAL != 0 {
            return Err(SegmentError::Malformed(format!(
                "chunk {index} at offset {start} has unknown flags {flags:#04x}"
            )));
        }
        if len > MAX_CHUNK_PLAINTEXT {
            return Err(SegmentError::Malformed(format!(
                "chunk {index} at offset {start} claims {len} bytes, over the limit"
            )));
        }
        match self.last_index {
            None if index != 0 => {
                return Err(SegmentError::Malformed(format!(
                    "first chunk has index {index}, expected 0"
                )));
            }
            Some(last) if index <= last => {
                return Err(SegmentError::Malformed(format!(
                    "chunk {index} at offset {start} follows chunk {last}: chunks reordered or duplicated"
                )));
            }
            _ => {}
        }
        if index >= RECOVERY_INDEX && flags & FLAG_FINAL == 0 {
            return Err(SegmentError::Malformed(format!(
                "chunk {index} at offset {start} uses a recovery index but is not final"
            )));
        }
        let body = len + TAG_LEN;
        // Don't allocate for a length the file cannot hold (a torn or forged header).
        let file_len = self.file.get_ref().metadata()?.len();
        if self.pos + body as u64 > file_len {
            return Err(self.cut());
        }
        if self.buf.len() < body {
            self.buf.resize(body, 0);
        }
        let n = read_full(&mut self.file, &mut self.hasher, &mut self.buf[..body])?;
        self.pos += n as u64;
        if n < body {
            return Err(self.cut());
        }
        let tag: [u8; TAG_LEN] = self.buf[len..body].try_into().expect("tag length");
        // A FINAL chunk is followed by the footer (authenticated as part of its AAD, so
        // it is checked against the value the length implies, after decryption).
        let mut foot = [0u8; FOOTER_LEN];
        let foot_n = if flags & FLAG_FINAL != 0 {
            let n = read_full(&mut self.file, &mut self.hasher, &mut foot)?;
            self.pos += n as u64;
            n
        } else {
            0
        };
        let opened = self
            .sealer
            .open(index, flags, &self.prev_tag, &mut self.buf[..len], &tag);
        if let Err(e) = opened {
            self.failed_chunk_end = Some(self.pos);
            return Err(e);
        }
        if flags & FLAG_FINAL != 0 {
            if foot_n < FOOTER_LEN {
                return Err(self.cut());
            }
            if foot != footer(len as u32) {
                return Err(SegmentError::Malformed(format!(
                    "footer after the final chunk at offset {start} does not match it"
                )));
            }
        }
        self.prev_tag = tag;
        self.last_index = Some(index);
        self.valid_len = self.pos;
        self.plain_len = len;
        Ok(Some(ChunkMeta {
            index,
            flags,
            offset: start,
            len,
        }))
    }

    pub(super) fn plaintext(&self) -> &[u8] {
        &self.buf[..self.plain_len]
    }

    /// Reads (and hashes) whatever is left; returns the byte count.
    pub(super) fn drain(&mut self) -> io::Result<u64> {
        let mut scratch = [0u8; DRAIN_BUF_BYTES];
        let mut total = 0;
        loop {
            let n = read_full(&mut self.file, &mut self.hasher, &mut scratch)?;
            total += n as u64;
            self.pos += n as u64;
            if n < scratch.len() {
                return Ok(total);
            }
        }
    }

    /// After a FINAL chunk, the file must end.
    pub(super) fn expect_eof(&mut self) -> Result<(), SegmentError> {
        let extra = self.drain()?;
        if extra > 0 {
            return Err(SegmentError::Malformed(format!(
                "{extra} bytes after the final chunk"
            )));
        }
        Ok(())
    }

    /// Reads chunk 0 and decodes the codec parameters.
    pub(super) fn read_params(&mut self) -> Result<(CodecParams, i64), SegmentError> {
        let Some(meta) = self.next_chunk()? else {
            return Err(self.cut());
        };
        if meta.flags & FLAG_FINAL != 0 {
            return Err(SegmentError::Malformed(
                "the parameters chunk is marked final".into(),
            ));
        }
        codec::decode_params(self.plaintext()).map_err(|e| malformed(0, e))
    }
}

pub(super) fn open_read(path: &Path) -> io::Result<File> {
    File::open(path)
}

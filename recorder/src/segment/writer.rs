//! The writer: one segment file, one sealed chunk per GOP, a positioned write each, and
//! the FINAL chunk (trailer and segment index) and footer at the end.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ring::digest::Context as Sha256;

use super::codec;
use super::index::{ChunkAt, TrailerAcc};
#[cfg(doc)]
use super::recover;
use super::sealing::{
    Sealer, encode_header, os_random, sha256_finish, sha256_new, validate_camera,
};
use super::{
    CHUNK_HDR_LEN, CodecParams, DataKey, FLAG_FINAL, Gop, RECOVERY_INDEX, SegmentError, SegmentId,
    TAG_LEN, Trailer,
};

/// Result of [`SegmentWriter::finish`]: what the catalog row needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub bytes: u64,
    pub sha256: [u8; 32],
    pub trailer: Trailer,
    /// Chunks in the file, including the parameters and FINAL chunks.
    pub chunks: u64,
}

/// Test-only fault injection for the write path.
#[cfg(test)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Faults {
    /// The next chunk write puts only this many bytes on disk, then fails with ENOSPC.
    pub write_only: Option<usize>,
    /// Rolling back that failed write fails too.
    pub truncate_fails: bool,
}

/// Chunk buffers kept for the next chunk, shared by every writer of the process.
///
/// A chunk is sealed in place, so it needs one contiguous buffer, but only while it is
/// sealed and written. A buffer kept by each writer would cost a chunk's size per camera
/// for as long as the recorder runs (about 250 KB at 4 Mbit/s, more for a long GOP);
/// shared, the store keeps only as many as chunks are written at once.
static CHUNK_BUFS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Buffers [`CHUNK_BUFS`] keeps: more than the chunks written at once on a small box
/// (one per core); a buffer given back beyond them is freed.
const KEPT_CHUNK_BUFS: usize = 4;

/// A buffer from [`CHUNK_BUFS`] (or a new one), given back when dropped.
struct ChunkBuf(Vec<u8>);

impl ChunkBuf {
    /// A buffer holding `CHUNK_HDR_LEN` placeholder bytes, for the plaintext to follow.
    fn take() -> ChunkBuf {
        let mut buf = CHUNK_BUFS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default();
        buf.clear();
        buf.resize(CHUNK_HDR_LEN, 0);
        ChunkBuf(buf)
    }
}

impl Drop for ChunkBuf {
    fn drop(&mut self) {
        let mut kept = CHUNK_BUFS.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < KEPT_CHUNK_BUFS {
            kept.push(std::mem::take(&mut self.0));
        }
    }
}

impl Deref for ChunkBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for ChunkBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

/// Writes one segment file. Not thread-safe by design: one writer per camera task.
pub struct SegmentWriter {
    file: File,
    dir: PathBuf,
    sealer: Sealer,
    start_unix_ms: i64,
    next_index: u64,
    prev_tag: [u8; TAG_LEN],
    bytes: u64,
    chunks: u64,
    hasher: Sha256,
    acc: TrailerAcc,
    poisoned: bool,
    #[cfg(test)]
    pub(crate) faults: Faults,
}

impl fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("bytes", &self.bytes)
            .field("chunks", &self.chunks)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl SegmentWriter {
    /// Creates the file (`O_CREAT|O_EXCL`, mode 0600) and writes the header and the
    /// parameters chunk. On failure the partial file is removed.
    pub fn create(
        path: &Path,
        id: SegmentId,
        camera: &str,
        key: &DataKey,
        params: &CodecParams,
        start_unix_ms: i64,
    ) -> Result<Self, SegmentError> {
        Self::create_with_prefix(path, id, camera, key, params, start_unix_ms, os_random())
    }

    pub(crate) fn create_with_prefix(
        path: &Path,
        id: SegmentId,
        camera: &str,
        key: &DataKey,
        params: &CodecParams,
        start_unix_ms: i64,
        nonce_prefix: [u8; 4],
    ) -> Result<Self, SegmentError> {
        validate_camera(camera)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let header = encode_header(id, camera, nonce_prefix);
        let mut w = SegmentWriter {
            file,
            dir: parent_dir(path),
            sealer: Sealer::new(key, &header, nonce_prefix),
            start_unix_ms,
            next_index: 0,
            prev_tag: [0; TAG_LEN],
            bytes: 0,
            chunks: 0,
            hasher: sha256_new(),
            acc: TrailerAcc::default(),
            poisoned: false,
            #[cfg(test)]
            faults: Faults::default(),
        };
        // header and params chunk go out in one write, as one "chunk" for rollback purposes
        let r = (|| {
            let mut buf = ChunkBuf::take();
            codec::encode_params(&mut buf, params, start_unix_ms);
            let tag = w.sealer.seal(0, 0, &[0; TAG_LEN], &mut buf)?;
            w.next_index = 1;
            let mut first = header;
            first.extend_from_slice(&buf);
            w.file.write_all_at(&first, 0)?;
            w.hasher.update(&first);
            w.bytes = first.len() as u64;
            w.chunks = 1;
            w.prev_tag = tag;
            Ok(())
        })();
        match r {
            Ok(()) => Ok(w),
            Err(e) => {
                drop(w);
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    /// Seals one GOP as one chunk and writes it with a single positioned write. On any
    /// I/O error (e.g. ENOSPC) the file is truncated back to the end of the last complete
    /// chunk, so it stays a valid cut segment, and the error is returned; the writer can
    /// be used again (e.g. once space is freed) or finished. If even the rollback fails
    /// the writer is poisoned: every later call returns [`SegmentError::Poisoned`] and
    /// the file is left for [`recover`].
    ///
    /// Returns the bytes added to the file.
    pub fn append_gop(&mut self, gop: &Gop) -> Result<u64, SegmentError> {
        if gop.frames.is_empty() {
            return Err(SegmentError::InvalidInput(
                "a GOP needs at least one frame".into(),
            ));
        }
        let mut buf = ChunkBuf::take();
        codec::encode_gop(&mut buf, gop);
        let at = ChunkAt {
            index: self.next_index,
            offset: self.bytes,
            len: (buf.len() - CHUNK_HDR_LEN) as u64,
        };
        let n = self.write_chunk(&mut buf, 0)?;
        self.acc.add(gop, at);
        Ok(n)
    }

    /// Seals `buf` (see [`Sealer::seal`]) and writes it at the end of the file.
    fn write_chunk(&mut self, buf: &mut Vec<u8>, flags: u8) -> Result<u64, SegmentError> {
        if self.poisoned {
            return Err(SegmentError::Poisoned);
        }
        if self.next_index >= RECOVERY_INDEX {
            return Err(SegmentError::InvalidInput(
                "chunk index space exhausted".into(),
            ));
        }
        let index = self.next_index;
        let tag = self.sealer.seal(index, flags, &self.prev_tag, buf)?;
        // The nonce is used from here on, whether or not the write lands: never reuse it.
        self.next_index += 1;
        if let Err(e) = self.write_buf(buf) {
            if self.rollback().is_err() {
                self.poisoned = true;
            }
            return Err(e.into());
        }
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        self.chunks += 1;
        self.prev_tag = tag;
        Ok(buf.len() as u64)
    }

    fn write_buf(&mut self, buf: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.faults.write_only.take() {
            let n = n.min(buf.len());
            self.file.write_all_at(&buf[..n], self.bytes)?;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.file.write_all_at(buf, self.bytes)
    }

    fn rollback(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if self.faults.truncate_fails {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.file.set_len(self.bytes)
    }

    /// Bytes in the file (all complete chunks).
    #[cfg(any(test, feature = "testing"))]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Complete chunks in the file, including the parameters chunk.
    #[cfg(any(test, feature = "testing"))]
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// GOPs written so far.
    #[cfg(any(test, feature = "testing"))]
    pub fn gops(&self) -> u64 {
        self.acc.gops
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn start_unix_ms(&self) -> i64 {
        self.start_unix_ms
    }

    /// The trailer [`finish`](Self::finish) would write now.
    pub fn trailer_so_far(&self) -> Trailer {
        self.acc.trailer(self.start_unix_ms)
    }

    /// Writes the FINAL chunk (trailer and segment index) and the footer, fsyncs the
    /// file and its directory, and returns the size and SHA-256 of the whole file
    /// (hashed while writing, not re-read). On error the file is left as a cut segment
    /// for [`recover`].
    pub fn finish(mut self) -> Result<Finished, SegmentError> {
        let trailer = self.trailer_so_far();
        let mut buf = ChunkBuf::take();
        self.acc.final_plaintext(self.start_unix_ms, &mut buf);
        self.write_chunk(&mut buf, FLAG_FINAL)?;
        drop(buf);
        self.file.sync_all()?;
        fsync_dir(&self.dir)?;
        Ok(Finished {
            bytes: self.bytes,
            sha256: sha256_finish(self.hasher),
            trailer,
            chunks: self.chunks,
        })
    }
}

pub(super) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(super) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

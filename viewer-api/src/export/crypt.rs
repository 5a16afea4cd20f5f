//! Exports at rest: a file sealed with AES-256-GCM in 1 MiB chunks under its own random
//! key (wrapped by the KEK in the export's row), written through [`EncWriter`] and read
//! back through [`EncReader`].
//!
//! The writer is seekable (the MP4 muxer and the zip writer both go back to patch a
//! header): a chunk is kept in memory while it is written and sealed when the writer
//! moves to another one; going back to a sealed chunk opens it, and sealing it again
//! uses a fresh random nonce. The associated data binds the file id and the chunk index,
//! and the last chunk also the file's length, so chunks cannot be reordered, moved
//! between files, or cut off unnoticed.
//!
//! Layout: `magic (8) ‖ file id (16) ‖ length (8, BE)` then, per chunk,
//! `nonce (12) ‖ ciphertext (≤ 1 MiB) ‖ tag (16)`, each chunk in a fixed-size slot.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use rand::RngCore;
use zeroize::Zeroizing;

pub const MAGIC: [u8; 8] = *b"RFEXP\x00\x00\x01";
pub const CHUNK: usize = 1 << 20;
const HDR: u64 = 32;
const NONCE: usize = 12;
const TAG: usize = 16;
const SLOT: u64 = (NONCE + CHUNK + TAG) as u64;

/// A file's 256-bit data key. Never printed.
#[derive(Clone)]
pub struct FileKey(pub Zeroizing<[u8; 32]>);

impl FileKey {
    pub fn random() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(&mut *k);
        FileKey(k)
    }
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(<redacted>)")
    }
}

fn aad(file_id: &[u8; 16], index: u64, last_len: Option<u64>) -> [u8; 41] {
    let mut a = [0u8; 41];
    a[..8].copy_from_slice(&MAGIC);
    a[8..24].copy_from_slice(file_id);
    a[24..32].copy_from_slice(&index.to_be_bytes());
    if let Some(len) = last_len {
        a[32] = 1;
        a[33..41].copy_from_slice(&len.to_be_bytes());
    }
    a
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("sealed file: {what}"))
}

/// Writes a sealed file; see the module documentation.
pub struct EncWriter {
    file: File,
    cipher: Aes256Gcm,
    file_id: [u8; 16],
    /// Plaintext length of each chunk as sealed on disk.
    sealed: Vec<usize>,
    cur_index: u64,
    cur: Vec<u8>,
    dirty: bool,
    pos: u64,
    len: u64,
    out: Vec<u8>,
}

impl EncWriter {
    /// Creates `path` (must not exist; mode 0600).
    pub fn create(path: &Path, key: &FileKey, file_id: [u8; 16]) -> io::Result<EncWriter> {
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let mut hdr = [0u8; HDR as usize];
        hdr[..8].copy_from_slice(&MAGIC);
        hdr[8..24].copy_from_slice(&file_id);
        file.write_all_at(&hdr, 0)?;
        Ok(EncWriter {
            file,
            cipher: Aes256Gcm::new((&*key.0).into()),
            file_id,
            sealed: Vec::new(),
            cur_index: 0,
            cur: Vec::with_capacity(CHUNK),
            dirty: false,
            pos: 0,
            len: 0,
            out: Vec::with_capacity(CHUNK + NONCE + TAG),
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn seal_current(&mut self, last_len: Option<u64>) -> io::Result<()> {
        let mut nonce = [0u8; NONCE];
        rand::rng().fill_bytes(&mut nonce);
        self.out.clear();
        self.out.extend_from_slice(&nonce);
        self.out.extend_from_slice(&self.cur);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &aad(&self.file_id, self.cur_index, last_len),
                &mut self.out[NONCE..],
            )
            .map_err(|_| io::Error::other("cannot seal a chunk"))?;
        self.out.extend_from_slice(&tag);
        self.file
            .write_all_at(&self.out, HDR + self.cur_index * SLOT)?;
        let i = self.cur_index as usize;
        if self.sealed.len() <= i {
            self.sealed.resize(i + 1, 0);
        }
        self.sealed[i] = self.cur.len();
        self.dirty = false;
        Ok(())
    }

    fn open_chunk(&mut self, index: u64) -> io::Result<()> {
        self.cur.clear();
        let n = self.sealed.get(index as usize).copied().unwrap_or(0);
        if n > 0 {
            self.out.resize(NONCE + n + TAG, 0);
            self.file.read_exact_at(&mut self.out, HDR + index * SLOT)?;
            let (nonce, rest) = self.out.split_at_mut(NONCE);
            let (ct, tag) = rest.split_at_mut(n);
            self.cipher
                .decrypt_in_place_detached(
                    Nonce::from_slice(nonce),
                    &aad(&self.file_id, index, None),
                    ct,
                    Tag::from_slice(tag),
                )
                .map_err(|_| bad("a chunk does not authenticate"))?;
            self.cur.extend_from_slice(ct);
        }
        self.cur_index = index;
        Ok(())
    }

    fn go_to(&mut self, index: u64) -> io::Result<()> {
        if index == self.cur_index {
            return Ok(());
        }
        if self.dirty {
            self.seal_current(None)?;
        }
        self.open_chunk(index)
    }

    /// Seals the last chunk, writes the length, syncs; returns the plaintext length.
    pub fn finish(mut self) -> io::Result<u64> {
        let last = if self.len == 0 {
            0
        } else {
            (self.len - 1) / CHUNK as u64
        };
        self.go_to(last)?;
        let want = (self.len - last * CHUNK as u64) as usize;
        self.cur.resize(want, 0);
        self.seal_current(Some(self.len))?;
        self.file.write_all_at(&self.len.to_be_bytes(), 24)?;
        self.file
            .set_len(HDR + last * SLOT + (NONCE + want + TAG) as u64)?;
        self.file.sync_all()?;
        Ok(self.len)
    }
}

impl Write for EncWriter {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let total = buf.len();
        while !buf.is_empty() {
            let index = self.pos / CHUNK as u64;
            let off = (self.pos % CHUNK as u64) as usize;
            self.go_to(index)?;
            let n = (CHUNK - off).min(buf.len());
            if self.cur.len() < off + n {
                self.cur.resize(off + n, 0);
            }
            self.cur[off..off + n].copy_from_slice(&buf[..n]);
            self.dirty = true;
            buf = &buf[n..];
            self.pos += n as u64;
            self.len = self.len.max(self.pos);
            if off + n == CHUNK && self.pos >= self.len {
                // A full chunk at the end: seal it now, the next write starts a new one.
                self.seal_current(None)?;
                self.cur.clear();
                self.cur_index += 1;
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for EncWriter {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let p = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = p.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        Ok(self.pos)
    }
}

/// Reads a sealed file from the start, checking every chunk.
pub struct EncReader {
    file: File,
    cipher: Aes256Gcm,
    file_id: [u8; 16],
    len: u64,
    next_index: u64,
    buf: Vec<u8>,
    at: usize,
    filled: usize,
}

impl EncReader {
    /// Opens `path`; `file_id` is the one the file must carry.
    pub fn open(path: &Path, key: &FileKey, file_id: [u8; 16]) -> io::Result<EncReader> {
        let file = File::open(path)?;
        let mut hdr = [0u8; HDR as usize];
        file.read_exact_at(&mut hdr, 0)
            .map_err(|_| bad("header missing"))?;
        if hdr[..8] != MAGIC || hdr[8..24] != file_id {
            return Err(bad("not the expected file"));
        }
        let len = u64::from_be_bytes(hdr[24..32].try_into().expect("8 bytes"));
        Ok(EncReader {
            file,
            cipher: Aes256Gcm::new((&*key.0).into()),
            file_id,
            len,
            next_index: 0,
            buf: Vec::with_capacity(NONCE + CHUNK + TAG),
            at: 0,
            filled: 0,
        })
    }

    /// The plaintext length (authenticated once the last chunk is read).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn last_index(&self) -> u64 {
        if self.len == 0 {
            0
        } else {
            (self.len - 1) / CHUNK as u64
        }
    }

    /// Opens the next chunk into the buffer; `false` at the end.
    fn fill(&mut self) -> io::Result<bool> {
        let last = self.last_index();
        if self.next_index > last {
            return Ok(false);
        }
        let i = self.next_index;
        let n = if i == last {
            (self.len - i * CHUNK as u64) as usize
        } else {
            CHUNK
        };
        self.buf.resize(NONCE + n + TAG, 0);
        self.file
            .read_exact_at(&mut self.buf, HDR + i * SLOT)
            .map_err(|_| bad("cut short"))?;
        let (nonce, rest) = self.buf.split_at_mut(NONCE);
        let (ct, tag) = rest.split_at_mut(n);
        self.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &aad(&self.file_id, i, (i == last).then_some(self.len)),
                ct,
                Tag::from_slice(tag),
            )
            .map_err(|_| bad("a chunk does not authenticate"))?;
        self.at = NONCE;
        self.filled = NONCE + n;
        self.next_index += 1;
        Ok(true)
    }

    /// The next piece of plaintext (up to one chunk), or `None` at the end.
    pub fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        if self.at >= self.filled && !self.fill()? {
            return Ok(None);
        }
        let s = &self.buf[self.at..self.filled];
        self.at = self.filled;
        Ok(Some(s))
    }
}

impl Read for EncReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at >= self.filled && !self.fill()? {
            return Ok(0);
        }
        let n = (self.filled - self.at).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(path: &Path, key: &FileKey, id: [u8; 16]) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        EncReader::open(path, key, id)?.read_to_end(&mut v)?;
        Ok(v)
    }

    #[test]
    fn round_trip_with_seeks_and_tamper_detection() {
        let dir = tempfile::tempdir().unwrap();
        let key = FileKey::random();
        let id = [7u8; 16];
        for size in [0usize, 10, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let path = dir.path().join(format!("f{size}"));
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let mut w = EncWriter::create(&path, &key, id).unwrap();
            w.write_all(&vec![0u8; size.min(8)]).unwrap();
            w.seek(SeekFrom::Start(0)).unwrap();
            // write in odd pieces, then patch the start, as the muxer does
            for piece in data.chunks(100_003) {
                w.write_all(piece).unwrap();
            }
            let end = w.stream_position().unwrap();
            w.seek(SeekFrom::Start(0)).unwrap();
            w.write_all(&data[..size.min(8)]).unwrap();
            w.seek(SeekFrom::Start(end)).unwrap();
            assert_eq!(w.finish().unwrap(), size as u64);
            assert_eq!(read_all(&path, &key, id).unwrap(), data);
            assert!(read_all(&path, &key, [8u8; 16]).is_err());
            assert!(read_all(&path, &FileKey::random(), id).is_err());
            if size > 0 {
                let mut raw = std::fs::read(&path).unwrap();
                let n = raw.len();
                raw[n - 20] ^= 1;
                std::fs::write(&path, &raw).unwrap();
                assert!(read_all(&path, &key, id).is_err());
            }
        }
        // cutting off the last chunk (and fixing the length) is caught
        let path = dir.path().join("cut");
        let mut w = EncWriter::create(&path, &key, id).unwrap();
        w.write_all(&vec![1u8; 2 * CHUNK + 5]).unwrap();
        w.finish().unwrap();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&(2 * CHUNK as u64).to_be_bytes(), 24)
            .unwrap();
        f.set_len(HDR + 2 * SLOT).unwrap();
        assert!(read_all(&path, &key, id).is_err());
    }
}

//! The reader: a segment GOP by GOP in order (tailing one still being written), or, on
//! a closed segment, its index and any one GOP chunk by positioned reads.

use std::fmt;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::codec::{self, DecodeError};
use super::error::malformed;
use super::index::{TrailerAcc, check_final};
use super::stream::{ChunkStream, open_read};
use super::{
    CHUNK_HDR_LEN, CHUNK_MAGIC, CodecParams, DataKey, FLAG_FINAL, FOOTER_LEN, FOOTER_MAGIC, Gop,
    GopBytes, IndexedFrame, IndexedGop, MAX_CHUNK_PLAINTEXT, RECOVERY_INDEX, SegmentError,
    SegmentId, SegmentIndex, TAG_LEN, Trailer,
};

/// Read buffer of a reader that goes through the GOPs in order, in bytes.
const SEQUENTIAL_BUF_BYTES: usize = 64 << 10;
/// Read buffer of a reader opened for the index (it reads the header and chunk 0 only),
/// in bytes.
const INDEX_BUF_BYTES: usize = 4 << 10;

/// Reads a segment GOP by GOP, authenticating each chunk before returning it; or, with
/// the segment index, any one GOP chunk ([`read_chunk_at`](Self::read_chunk_at)).
pub struct SegmentReader {
    stream: ChunkStream,
    params: CodecParams,
    start_unix_ms: i64,
    /// End of the parameters chunk: where the first GOP chunk starts.
    params_end: u64,
    acc: TrailerAcc,
    trailer: Option<Trailer>,
    failed: bool,
    /// Where the GOP last returned by `next_gop` is: (chunk index, offset, plaintext
    /// length).
    last_chunk: Option<(u64, u64, u32)>,
}

impl fmt::Debug for SegmentReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentReader")
            .field("params", &self.params)
            .field("start_unix_ms", &self.start_unix_ms)
            .field("valid_len", &self.stream.valid_len)
            .field("trailer", &self.trailer)
            .finish_non_exhaustive()
    }
}

impl SegmentReader {
    /// Opens the file, checks magic, version, segment id and camera, and authenticates
    /// and decodes the parameters chunk.
    pub fn open(
        path: &Path,
        expect_id: SegmentId,
        expect_camera: &str,
        key: &DataKey,
    ) -> Result<Self, SegmentError> {
        Self::open_buffered(path, expect_id, expect_camera, key, SEQUENTIAL_BUF_BYTES)
    }

    fn open_buffered(
        path: &Path,
        expect_id: SegmentId,
        expect_camera: &str,
        key: &DataKey,
        buf_capacity: usize,
    ) -> Result<Self, SegmentError> {
        let file = open_read(path)?;
        let mut stream =
            ChunkStream::open(file, expect_id, expect_camera, key, false, buf_capacity)?;
        let (params, start_unix_ms) = stream.read_params()?;
        Ok(SegmentReader {
            params_end: stream.valid_len,
            stream,
            params,
            start_unix_ms,
            acc: TrailerAcc::default(),
            trailer: None,
            failed: false,
            last_chunk: None,
        })
    }

    pub fn params(&self) -> &CodecParams {
        &self.params
    }

    pub fn start_unix_ms(&self) -> i64 {
        self.start_unix_ms
    }

    /// End of the last authentic chunk read so far.
    pub fn valid_len(&self) -> u64 {
        self.stream.valid_len
    }

    /// The next GOP; `Ok(None)` after the FINAL chunk (whose trailer was checked against
    /// the GOPs read).
    ///
    /// At the end of a file without FINAL chunk this returns [`SegmentError::Cut`]; the
    /// reader stays usable and a later call continues if the file has grown (tailing a
    /// segment still being written). Any other error is final: later calls fail too.
    pub fn next_gop(&mut self) -> Result<Option<Gop>, SegmentError> {
        if self.trailer.is_some() {
            return Ok(None);
        }
        if self.failed {
            return Err(SegmentError::Malformed(
                "reader stopped at an earlier error".into(),
            ));
        }
        match self.next_gop_inner() {
            Err(SegmentError::Cut { valid_len }) => {
                // Rewind to the chunk boundary so a retry can read a grown file.
                if let Err(e) = self.stream.file.seek(SeekFrom::Start(valid_len)) {
                    self.failed = true;
                    return Err(e.into());
                }
                self.stream.pos = valid_len;
                Err(SegmentError::Cut { valid_len })
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
            ok => ok,
        }
    }

    fn next_gop_inner(&mut self) -> Result<Option<Gop>, SegmentError> {
        let Some(meta) = self.stream.next_chunk()? else {
            return Err(self.stream.cut());
        };
        if meta.flags & FLAG_FINAL != 0 {
            check_final(self.stream.plaintext(), &self.acc, self.start_unix_ms)?;
            self.stream.expect_eof()?;
            self.trailer = Some(self.acc.trailer(self.start_unix_ms));
            return Ok(None);
        }
        let gop =
            codec::decode_gop(self.stream.plaintext()).map_err(|e| malformed(meta.index, e))?;
        if gop.frames.is_empty() {
            return Err(malformed(meta.index, DecodeError("GOP without frames")));
        }
        self.acc.add(&gop, meta.at());
        self.last_chunk = Some((meta.index, meta.offset, meta.len as u32));
        Ok(Some(gop))
    }

    /// Where the GOP last returned by [`next_gop`](Self::next_gop) is in the file:
    /// `(chunk index, offset, plaintext length)`, what
    /// [`read_gop_bytes_at`](Self::read_gop_bytes_at) takes. Chunks already written
    /// never change, so this holds for a segment still being written too.
    pub fn last_chunk(&self) -> Option<(u64, u64, u32)> {
        self.last_chunk
    }

    /// The trailer, once the FINAL chunk has been read.
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    /// Opens a closed segment and reads its index: the clear header, the parameters
    /// chunk and the FINAL chunk only (found from the footer at the end of the file),
    /// each authenticated. A file that does not end in a FINAL chunk (still being
    /// written, or cut) gives [`SegmentError::NoIndex`]: read it with [`open`](Self::open)
    /// and [`next_gop`](Self::next_gop) instead.
    pub fn open_index(
        path: &Path,
        expect_id: SegmentId,
        expect_camera: &str,
        key: &DataKey,
    ) -> Result<SegmentIndex, SegmentError> {
        Self::open_buffered(path, expect_id, expect_camera, key, INDEX_BUF_BYTES)?.read_index()
    }

    /// Reads the segment index of an opened segment (see [`open_index`](Self::open_index)).
    /// Positioned reads: the GOP-by-GOP position is not affected.
    pub fn read_index(&self) -> Result<SegmentIndex, SegmentError> {
        let file = self.stream.file.get_ref();
        let file_len = file.metadata()?.len();
        let min_record = (CHUNK_HDR_LEN + TAG_LEN) as u64;
        if file_len < self.params_end + min_record + FOOTER_LEN as u64 {
            return Err(SegmentError::NoIndex);
        }
        let mut foot = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut foot, file_len - FOOTER_LEN as u64)?;
        if foot[4..] != FOOTER_MAGIC {
            return Err(SegmentError::NoIndex);
        }
        let record = u64::from(u32::from_be_bytes(foot[..4].try_into().expect("4 bytes")));
        if record < min_record
            || record - min_record > MAX_CHUNK_PLAINTEXT as u64
            || self.params_end + record + FOOTER_LEN as u64 > file_len
        {
            return Err(SegmentError::Malformed(format!(
                "footer gives an impossible final chunk length {record}"
            )));
        }
        let start = file_len - FOOTER_LEN as u64 - record;
        // The chunk, with the tag of the chunk before it (chunks are contiguous).
        let mut buf = vec![0u8; TAG_LEN + record as usize];
        file.read_exact_at(&mut buf, start - TAG_LEN as u64)?;
        let (prev_tag, rest) = buf.split_at_mut(TAG_LEN);
        let prev_tag: &[u8; TAG_LEN] = (&*prev_tag).try_into().expect("tag length");
        let (hdr, body) = rest.split_at_mut(CHUNK_HDR_LEN);
        let len = body.len() - TAG_LEN;
        let index = u64::from_be_bytes(hdr[4..12].try_into().expect("8 bytes"));
        if hdr[..4] != CHUNK_MAGIC
            || hdr[12] != FLAG_FINAL
            || u32::from_be_bytes(hdr[13..17].try_into().expect("4 bytes")) as usize != len
            || index == 0
        {
            return Err(SegmentError::Malformed(format!(
                "no final chunk at offset {start}, where the footer points"
            )));
        }
        let (ct, tag) = body.split_at_mut(len);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().expect("tag length");
        self.stream
            .sealer
            .open(index, FLAG_FINAL, prev_tag, ct, tag)?;
        let dec = codec::decode_final(ct).map_err(|e| malformed(index, e))?;

        // The index must describe exactly the chunks between the parameters chunk and
        // the FINAL one, back to back, with lower indices; and agree with the trailer.
        let final_index = index & !RECOVERY_INDEX;
        let mut acc = TrailerAcc::default();
        let mut end = self.params_end;
        let mut gops = Vec::with_capacity(dec.entries.len());
        let mut frames = Vec::with_capacity(dec.frames.len());
        for e in &dec.entries {
            if e.offset != end || e.chunk_index >= final_index {
                return Err(malformed(
                    index,
                    DecodeError("index does not match the file"),
                ));
            }
            let len = u32::try_from(e.len)
                .ok()
                .filter(|&l| l as usize <= MAX_CHUNK_PLAINTEXT)
                .ok_or_else(|| malformed(index, DecodeError("chunk length over the limit")))?;
            let metas = &dec.frames[frames.len()..frames.len() + e.frames as usize];
            let keys = metas.iter().filter(|f| f.key).count() as u64;
            let (first, last) = (metas[0].pts_90k, metas[metas.len() - 1].pts_90k);
            acc.count(e.start_unix_ms, first, last, e.frames, keys);
            gops.push(IndexedGop {
                chunk_index: e.chunk_index,
                offset: e.offset,
                len,
                start_unix_ms: e.start_unix_ms,
                first_frame: frames.len(),
                frame_count: metas.len(),
            });
            // sizes fit: they add up to at most `len`, checked by the decoder
            frames.extend(metas.iter().map(|f| IndexedFrame {
                pts_90k: f.pts_90k,
                key: f.key,
                size: f.size as u32,
            }));
            end = e.offset + codec::record_len(e.len);
        }
        if end != start || acc.trailer(self.start_unix_ms) != dec.trailer {
            return Err(malformed(
                index,
                DecodeError("index does not match the file"),
            ));
        }
        Ok(SegmentIndex {
            params: self.params.clone(),
            start_unix_ms: self.start_unix_ms,
            trailer: dec.trailer,
            recovered: index >= RECOVERY_INDEX,
            gops,
            frames,
        })
    }

    /// Reads, authenticates and decodes the GOP chunk `chunk_index` at `offset`, of
    /// `len` plaintext bytes (an entry of the [`SegmentIndex`]), with positioned reads:
    /// the GOP-by-GOP position is not affected.
    ///
    /// Authenticated exactly as in order: same nonce, same associated data, whose
    /// previous-chunk tag is the 16 bytes just before `offset` (chunks are contiguous).
    pub fn read_chunk_at(
        &self,
        offset: u64,
        len: u32,
        chunk_index: u64,
    ) -> Result<Gop, SegmentError> {
        Ok(self.read_gop_bytes_at(offset, len, chunk_index)?.to_gop())
    }

    /// Hints the kernel that `len` bytes from `offset` will be read soon (e.g. the
    /// chunks after the one being read by [`read_chunk_at`](Self::read_chunk_at)), so
    /// reading them from disk overlaps with decrypting this one. Only a hint.
    pub fn will_need(&self, offset: u64, len: u64) {
        let _ = rustix::fs::fadvise(
            self.stream.file.get_ref(),
            offset,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::WillNeed,
        );
    }

    /// Like [`read_chunk_at`](Self::read_chunk_at), but returns the frames' bytes as
    /// one buffer (the chunk's own plaintext) instead of a copy per frame.
    pub fn read_gop_bytes_at(
        &self,
        offset: u64,
        len: u32,
        chunk_index: u64,
    ) -> Result<GopBytes, SegmentError> {
        self.read_gop_bytes_into(offset, len, chunk_index, Vec::new())
    }

    /// Like [`read_gop_bytes_at`](Self::read_gop_bytes_at), reusing `buf` (e.g. from
    /// an earlier [`GopBytes::into_parts`]) for the chunk.
    pub fn read_gop_bytes_into(
        &self,
        offset: u64,
        len: u32,
        chunk_index: u64,
        mut buf: Vec<u8>,
    ) -> Result<GopBytes, SegmentError> {
        let len = len as usize;
        if chunk_index == 0
            || chunk_index >= RECOVERY_INDEX
            || len > MAX_CHUNK_PLAINTEXT
            || offset < self.params_end
        {
            return Err(SegmentError::InvalidInput(format!(
                "no GOP chunk {chunk_index} of {len} bytes can be at offset {offset}"
            )));
        }
        let data_start = TAG_LEN + CHUNK_HDR_LEN;
        // (only the part beyond the buffer's current length gets zeroed)
        buf.resize(data_start + len + TAG_LEN, 0);
        self.stream
            .file
            .get_ref()
            .read_exact_at(&mut buf, offset - TAG_LEN as u64)?;
        let (prev_tag, rest) = buf.split_at_mut(TAG_LEN);
        let prev_tag: &[u8; TAG_LEN] = (&*prev_tag).try_into().expect("tag length");
        let (hdr, body) = rest.split_at_mut(CHUNK_HDR_LEN);
        if hdr[..4] != CHUNK_MAGIC
            || u64::from_be_bytes(hdr[4..12].try_into().expect("8 bytes")) != chunk_index
            || hdr[12] != 0
            || u32::from_be_bytes(hdr[13..17].try_into().expect("4 bytes")) as usize != len
        {
            return Err(SegmentError::Malformed(format!(
                "no GOP chunk {chunk_index} of {len} bytes at offset {offset}"
            )));
        }
        let (ct, tag) = body.split_at_mut(len);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().expect("tag length");
        self.stream.sealer.open(chunk_index, 0, prev_tag, ct, tag)?;
        let mut c = codec::Cur::new(ct);
        let (start_unix_ms, metas) =
            codec::decode_index(&mut c).map_err(|e| malformed(chunk_index, e))?;
        let total = metas
            .iter()
            .try_fold(0u64, |acc, m| acc.checked_add(m.size));
        if metas.is_empty() {
            return Err(malformed(chunk_index, DecodeError("GOP without frames")));
        }
        if total != Some(c.remaining() as u64) {
            return Err(malformed(
                chunk_index,
                DecodeError("frame sizes do not add up to the chunk length"),
            ));
        }
        let data = data_start + len - c.remaining()..data_start + len;
        let frames = metas
            .iter()
            .map(|m| IndexedFrame {
                pts_90k: m.pts_90k,
                key: m.key,
                size: m.size as u32,
            })
            .collect();
        Ok(GopBytes {
            start_unix_ms,
            frames,
            buf,
            data,
        })
    }
}

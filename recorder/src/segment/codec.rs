//! Plaintext encodings of the three chunk kinds (parameters, GOP, FINAL trailer with the
//! segment index), and the varint/zigzag primitives.
//!
//! Everything here works on byte slices already authenticated by AES-GCM, but the
//! decoders still treat their input as hostile (a writer bug, or a future version):
//! they never panic, never allocate more than the input could describe, and reject
//! trailing or unknown bits instead of ignoring them.

use super::{Codec, CodecParams, Frame, Gop, Trailer};

/// Why a plaintext could not be decoded. Static text only: no footage bytes ever end up
/// in an error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Bit 0 of a frame's flags byte: the frame is a key frame (IDR/IRAP).
const FRAME_KEY: u8 = 0x01;

// ---------------------------------------------------------------------------------------
// primitives

/// Appends `v` as an unsigned LEB128 varint (1..=10 bytes).
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Maps signed to unsigned so that small magnitudes of either sign stay short.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// A bounds-checked reader over a plaintext.
pub(crate) struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Cur { b, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError("truncated"));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// Reads a canonical LEB128 varint: at most 10 bytes, no overflow past 64 bits, no
    /// redundant trailing zero groups (so each value has exactly one encoding).
    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let byte = self.u8().map_err(|_| DecodeError("truncated varint"))?;
            let group = u64::from(byte & 0x7f);
            if i == 9 && byte > 0x01 {
                return Err(DecodeError("varint overflows 64 bits"));
            }
            if i > 0 && byte == 0 {
                return Err(DecodeError("non-canonical varint"));
            }
            v |= group << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint longer than 10 bytes"))
    }

    pub(crate) fn varint_usize(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.varint()?).map_err(|_| DecodeError("length does not fit in memory"))
    }

    pub(crate) fn zigzag(&mut self) -> Result<i64, DecodeError> {
        Ok(unzigzag(self.varint()?))
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(DecodeError("unexpected trailing bytes"))
        }
    }
}

// ---------------------------------------------------------------------------------------
// chunk 0: codec parameters

fn codec_code(c: Codec) -> u8 {
    match c {
        Codec::H264 => 1,
        Codec::H265 => 2,
    }
}

/// `start_unix_ms i64 | codec u8 | width u32 | height u32 | extra_data (varint len, bytes) |
/// rfc6381 (varint len, UTF-8)`, all integers big-endian.
pub(crate) fn encode_params(buf: &mut Vec<u8>, params: &CodecParams, start_unix_ms: i64) {
    buf.extend_from_slice(&start_unix_ms.to_be_bytes());
    buf.push(codec_code(params.codec));
    buf.extend_from_slice(&params.width.to_be_bytes());
    buf.extend_from_slice(&params.height.to_be_bytes());
    put_varint(buf, params.extra_data.len() as u64);
    buf.extend_from_slice(&params.extra_data);
    put_varint(buf, params.rfc6381.len() as u64);
    buf.extend_from_slice(params.rfc6381.as_bytes());
}

pub(crate) fn decode_params(plain: &[u8]) -> Result<(CodecParams, i64), DecodeError> {
    let mut c = Cur::new(plain);
    let start_unix_ms = c.i64()?;
    let codec = match c.u8()? {
        1 => Codec::H264,
        2 => Codec::H265,
        _ => return Err(DecodeError("unknown codec code")),
    };
    let width = c.u32()?;
    let height = c.u32()?;
    let n = c.varint_usize()?;
    let extra_data = c.take(n)?.to_vec();
    let n = c.varint_usize()?;
    let rfc6381 = std::str::from_utf8(c.take(n)?)
        .map_err(|_| DecodeError("codec string is not UTF-8"))?
        .to_owned();
    c.finish()?;
    Ok((
        CodecParams {
            codec,
            extra_data,
            width,
            height,
            rfc6381,
        },
        start_unix_ms,
    ))
}

// ---------------------------------------------------------------------------------------
// GOP chunks: frame index, then frame bytes

/// One entry of a GOP's frame index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameMeta {
    pub pts_90k: i64,
    pub key: bool,
    pub size: u64,
}

/// Smallest possible encoded index entry (1-byte pts, flags, 1-byte size): bounds the
/// capacity a decoder reserves from an untrusted count.
const MIN_ENTRY_LEN: usize = 3;

/// `start_unix_ms i64 | count varint | count × (pts zigzag varint | flags u8 | size varint)`.
/// The first pts is absolute, the others are wrapping deltas from the previous frame, so
/// any sequence of i64 values (backwards steps, jumps, wrap-around) round-trips.
pub(crate) fn encode_index(
    buf: &mut Vec<u8>,
    start_unix_ms: i64,
    count: usize,
    frames: impl Iterator<Item = FrameMeta>,
) {
    buf.extend_from_slice(&start_unix_ms.to_be_bytes());
    put_varint(buf, count as u64);
    let mut prev = 0i64;
    for (i, f) in frames.enumerate() {
        let delta = if i == 0 {
            f.pts_90k
        } else {
            f.pts_90k.wrapping_sub(prev)
        };
        prev = f.pts_90k;
        put_varint(buf, zigzag(delta));
        buf.push(if f.key { FRAME_KEY } else { 0 });
        put_varint(buf, f.size);
    }
}

pub(crate) fn decode_index(c: &mut Cur<'_>) -> Result<(i64, Vec<FrameMeta>), DecodeError> {
    let start_unix_ms = c.i64()?;
    let count = c.varint()?;
    if count > (c.remaining() / MIN_ENTRY_LEN) as u64 {
        return Err(DecodeError("frame count larger than the index can hold"));
    }
    let mut metas = Vec::with_capacity(count as usize);
    let mut prev = 0i64;
    for i in 0..count {
        let d = c.zigzag()?;
        let pts_90k = if i == 0 { d } else { prev.wrapping_add(d) };
        prev = pts_90k;
        let flags = c.u8()?;
        if flags & !FRAME_KEY != 0 {
            return Err(DecodeError("unknown frame flags"));
        }
        let size = c.varint()?;
        metas.push(FrameMeta {
            pts_90k,
            key: flags & FRAME_KEY != 0,
            size,
        });
    }
    Ok((start_unix_ms, metas))
}

/// Appends a GOP's plaintext (index, then the frames' bytes back to back) to `buf`,
/// without any per-frame allocation.
pub(crate) fn encode_gop(buf: &mut Vec<u8>, gop: &Gop) {
    let data_len: usize = gop.frames.iter().map(|f| f.data.len()).sum();
    // index entries are at most 21 bytes each; reserve once.
    buf.reserve(16 + gop.frames.len() * 21 + data_len);
    encode_index(
        buf,
        gop.start_unix_ms,
        gop.frames.len(),
        gop.frames.iter().map(|f| FrameMeta {
            pts_90k: f.pts_90k,
            key: f.key,
            size: f.data.len() as u64,
        }),
    );
    for f in &gop.frames {
        buf.extend_from_slice(&f.data);
    }
}

pub(crate) fn decode_gop(plain: &[u8]) -> Result<Gop, DecodeError> {
    let mut c = Cur::new(plain);
    let (start_unix_ms, metas) = decode_index(&mut c)?;
    let total = metas
        .iter()
        .try_fold(0u64, |acc, m| acc.checked_add(m.size))
        .ok_or(DecodeError("frame sizes overflow"))?;
    if total != c.remaining() as u64 {
        return Err(DecodeError("frame sizes do not add up to the chunk length"));
    }
    let frames = metas
        .iter()
        .map(|m| {
            // sizes are bounded by `remaining`, so the conversion and take cannot fail
            let data = c.take(m.size as usize)?.to_vec();
            Ok(Frame {
                pts_90k: m.pts_90k,
                key: m.key,
                data,
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    Ok(Gop {
        start_unix_ms,
        frames,
    })
}

// ---------------------------------------------------------------------------------------
// FINAL chunk: trailer and segment index

/// Length of the trailer's fixed part (the counts), before the segment index.
pub(crate) const TRAILER_LEN: usize = 48;

/// The trailer's fixed part: six big-endian 64-bit fields.
pub(crate) fn encode_trailer(buf: &mut Vec<u8>, t: &Trailer) {
    buf.extend_from_slice(&t.frames.to_be_bytes());
    buf.extend_from_slice(&t.key_frames.to_be_bytes());
    buf.extend_from_slice(&t.first_pts_90k.to_be_bytes());
    buf.extend_from_slice(&t.last_pts_90k.to_be_bytes());
    buf.extend_from_slice(&t.first_unix_ms.to_be_bytes());
    buf.extend_from_slice(&t.last_unix_ms.to_be_bytes());
}

fn decode_trailer_fixed(c: &mut Cur<'_>) -> Result<Trailer, DecodeError> {
    Ok(Trailer {
        frames: c.u64()?,
        key_frames: c.u64()?,
        first_pts_90k: c.i64()?,
        last_pts_90k: c.i64()?,
        first_unix_ms: c.i64()?,
        last_unix_ms: c.i64()?,
    })
}

/// Where one GOP chunk is and what it holds, as the segment index describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub chunk_index: u64,
    /// Offset of the chunk's `RFCK` marker in the file.
    pub offset: u64,
    /// Plaintext length (the chunk header's `len`).
    pub len: u64,
    pub start_unix_ms: i64,
    pub frames: u64,
}

/// On-disk length of a chunk of `len` plaintext bytes (marker, header, ciphertext, tag).
pub(crate) fn record_len(len: u64) -> u64 {
    len.saturating_add((super::CHUNK_HDR_LEN + super::TAG_LEN) as u64)
}

/// Builds the segment index incrementally, already encoded, so that a writer holds a
/// few bytes per frame (typically 4-5) instead of a struct per frame.
///
/// Entry, per GOP chunk (every delta is from the previous entry, the first from 0):
/// `chunk index delta varint (≥ 1) | offset delta from the previous chunk's end varint |
/// len varint | start_unix_ms zigzag varint delta | frame count varint (≥ 1) |
/// count × (pts zigzag varint wrapping delta, chained across GOPs | (size << 1 | key)
/// varint)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct IndexBuilder {
    bytes: Vec<u8>,
    gops: u64,
    prev_index: u64,
    prev_end: u64,
    prev_start: i64,
    prev_pts: i64,
}

impl IndexBuilder {
    /// `entry.chunk_index` must be above the previous one, and `entry.offset` at or
    /// after the previous chunk's end (the writer and the readers guarantee both).
    pub(crate) fn push(&mut self, entry: IndexEntry, frames: impl Iterator<Item = FrameMeta>) {
        let b = &mut self.bytes;
        put_varint(b, entry.chunk_index.wrapping_sub(self.prev_index));
        put_varint(b, entry.offset.wrapping_sub(self.prev_end));
        put_varint(b, entry.len);
        put_varint(b, zigzag(entry.start_unix_ms.wrapping_sub(self.prev_start)));
        put_varint(b, entry.frames);
        for f in frames {
            put_varint(b, zigzag(f.pts_90k.wrapping_sub(self.prev_pts)));
            put_varint(b, (f.size << 1) | u64::from(f.key));
            self.prev_pts = f.pts_90k;
        }
        self.gops += 1;
        self.prev_index = entry.chunk_index;
        self.prev_end = entry.offset.wrapping_add(record_len(entry.len));
        self.prev_start = entry.start_unix_ms;
    }

    pub(crate) fn encoded_len(&self) -> usize {
        self.bytes.len() + 10
    }
}

/// FINAL chunk plaintext: the trailer's fixed part, the GOP count (varint), then the
/// index entries ([`IndexBuilder`]).
pub(crate) fn encode_final(buf: &mut Vec<u8>, t: &Trailer, index: &IndexBuilder) {
    buf.reserve(TRAILER_LEN + index.encoded_len());
    encode_trailer(buf, t);
    put_varint(buf, index.gops);
    buf.extend_from_slice(&index.bytes);
}

/// Smallest index entry: five 1-byte varints and one frame of two 1-byte varints.
const MIN_GOP_ENTRY_LEN: usize = 7;
const MIN_FRAME_ENTRY_LEN: usize = 2;

/// A decoded FINAL chunk: the trailer, the GOP chunks, and all frames in order (each
/// entry's `frames` consecutive ones belong to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedFinal {
    pub trailer: Trailer,
    pub entries: Vec<IndexEntry>,
    pub frames: Vec<FrameMeta>,
}

/// Decodes a FINAL chunk's plaintext. Checks what the encoding itself implies (indices
/// increasing, chunks in file order and not overlapping, at least one frame per GOP,
/// frame sizes fitting in their chunk, counts agreeing with the trailer); where the
/// chunks are in the file is checked by the caller.
pub(crate) fn decode_final(plain: &[u8]) -> Result<DecodedFinal, DecodeError> {
    let mut c = Cur::new(plain);
    let trailer = decode_trailer_fixed(&mut c)?;
    let gops = c.varint()?;
    if gops > (c.remaining() / MIN_GOP_ENTRY_LEN) as u64 {
        return Err(DecodeError("GOP count larger than the index can hold"));
    }
    let mut entries = Vec::with_capacity(gops as usize);
    let frame_cap = (c.remaining() / MIN_FRAME_ENTRY_LEN).min(trailer.frames as usize);
    let mut frames = Vec::with_capacity(frame_cap);
    let (mut prev_index, mut prev_end, mut prev_start, mut prev_pts) = (0u64, 0u64, 0i64, 0i64);
    let mut key_frames = 0u64;
    for _ in 0..gops {
        let d = c.varint()?;
        if d == 0 {
            return Err(DecodeError("chunk indices not increasing"));
        }
        let chunk_index = prev_index
            .checked_add(d)
            .ok_or(DecodeError("chunk index overflows"))?;
        let offset = prev_end
            .checked_add(c.varint()?)
            .ok_or(DecodeError("chunk offset overflows"))?;
        let len = c.varint()?;
        let start_unix_ms = prev_start.wrapping_add(c.zigzag()?);
        let count = c.varint()?;
        if count == 0 {
            return Err(DecodeError("GOP without frames"));
        }
        if count > (c.remaining() / MIN_FRAME_ENTRY_LEN) as u64 {
            return Err(DecodeError("frame count larger than the index can hold"));
        }
        let mut total = 0u64;
        for _ in 0..count {
            let pts_90k = prev_pts.wrapping_add(c.zigzag()?);
            prev_pts = pts_90k;
            let v = c.varint()?;
            let (size, key) = (v >> 1, v & 1 == 1);
            total = total.saturating_add(size);
            key_frames += u64::from(key);
            frames.push(FrameMeta { pts_90k, key, size });
        }
        if total > len {
            return Err(DecodeError("frame sizes exceed their chunk"));
        }
        let end = offset
            .checked_add(record_len(len))
            .ok_or(DecodeError("chunk end overflows"))?;
        entries.push(IndexEntry {
            chunk_index,
            offset,
            len,
            start_unix_ms,
            frames: count,
        });
        (prev_index, prev_end, prev_start) = (chunk_index, end, start_unix_ms);
    }
    c.finish()?;
    if frames.len() as u64 != trailer.frames || key_frames != trailer.key_frames {
        return Err(DecodeError("index disagrees with the trailer's counts"));
    }
    Ok(DecodedFinal {
        trailer,
        entries,
        frames,
    })
}

/// The trailer of a FINAL chunk's plaintext (the index is decoded and checked too).
#[cfg(test)]
pub(crate) fn decode_trailer(plain: &[u8]) -> Result<Trailer, DecodeError> {
    decode_final(plain).map(|d| d.trailer)
}

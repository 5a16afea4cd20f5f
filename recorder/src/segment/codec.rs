//! Plaintext encodings of the three chunk kinds, and the varint/zigzag primitives.
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
// FINAL chunk: trailer

pub(crate) const TRAILER_LEN: usize = 48;

/// Six big-endian 64-bit fields, fixed size.
pub(crate) fn encode_trailer(buf: &mut Vec<u8>, t: &Trailer) {
    buf.extend_from_slice(&t.frames.to_be_bytes());
    buf.extend_from_slice(&t.key_frames.to_be_bytes());
    buf.extend_from_slice(&t.first_pts_90k.to_be_bytes());
    buf.extend_from_slice(&t.last_pts_90k.to_be_bytes());
    buf.extend_from_slice(&t.first_unix_ms.to_be_bytes());
    buf.extend_from_slice(&t.last_unix_ms.to_be_bytes());
}

pub(crate) fn decode_trailer(plain: &[u8]) -> Result<Trailer, DecodeError> {
    if plain.len() != TRAILER_LEN {
        return Err(DecodeError("trailer has the wrong length"));
    }
    let mut c = Cur::new(plain);
    Ok(Trailer {
        frames: c.u64()?,
        key_frames: c.u64()?,
        first_pts_90k: c.i64()?,
        last_pts_90k: c.i64()?,
        first_unix_ms: c.i64()?,
        last_unix_ms: c.i64()?,
    })
}

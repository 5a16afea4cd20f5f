//! A small ISO BMFF (MP4) muxer for playback and export of original frames.
//!
//! Why our own: the frames are already encoded, so all that is needed is the box
//! structure around them; building it ourselves keeps GStreamer (and a decoder) out of
//! the request path, and lets us compute the **whole layout from the frame index
//! first**: the size of every box and the offset of every sample are known before a
//! byte is sent, so the response has an exact `Content-Length`, and any byte `Range`
//! maps back to the frames it covers without muxing what precedes it.
//!
//! Layout: `ftyp`, `moov` (one video track: `avc1`/`avcC` or `hvc1`/`hvcC`, `stts`,
//! `stss`, `stsc`, `stsz`, `stco` or `co64`), then `mdat` with the samples in order.
//! One MP4 chunk per stored chunk: a whole GOP, or a part of one (the recorder also
//! closes chunks inside long GOPs, so a chunk may start with a non-key frame; key
//! frames are found through `stss`, never assumed at chunk starts). No `ctts`: samples
//! are written in presentation order, which is what the recorder stores (cameras in
//! this deployment send no B-frames).

use crate::clock::TICKS_90K_PER_MS;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackParams {
    pub codec: VideoCodec,
    /// avcC / hvcC decoder configuration record.
    pub extra_data: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub duration_90k: u32,
    pub size: u32,
    pub key: bool,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MuxError {
    #[error("nothing to mux: no frames")]
    Empty,
    #[error("frame index does not add up: {0}")]
    Inconsistent(&'static str),
    #[error("the decoder configuration is missing or too large")]
    BadExtraData,
}

pub const TIMESCALE: u32 = 90_000;
/// Seconds from 1904-01-01 (MP4 epoch) to 1970-01-01.
const MP4_EPOCH_OFFSET: u64 = 2_082_844_800;

/// The computed file: `header` (ftyp + moov + mdat box header) followed by the
/// samples' bytes, back to back, in order.
#[derive(Debug, Clone)]
pub struct Layout {
    pub header: Vec<u8>,
    /// Total file length: header plus all sample bytes.
    pub total_len: u64,
    /// Start of each chunk relative to the end of the header.
    pub chunk_payload_offsets: Vec<u64>,
    pub payload_len: u64,
}

impl Layout {
    /// The chunk containing payload offset `off` (< payload_len) and where it starts.
    pub fn chunk_at(&self, off: u64) -> (usize, u64) {
        let i = self
            .chunk_payload_offsets
            .partition_point(|&o| o <= off)
            .saturating_sub(1);
        (i, self.chunk_payload_offsets[i])
    }
}

struct W(Vec<u8>);

impl W {
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn zeros(&mut self, n: usize) {
        self.0.resize(self.0.len() + n, 0);
    }
    fn boxed(&mut self, typ: &[u8; 4], f: impl FnOnce(&mut W)) {
        let start = self.0.len();
        self.u32(0);
        self.bytes(typ);
        f(self);
        let size = (self.0.len() - start) as u32;
        self.0[start..start + 4].copy_from_slice(&size.to_be_bytes());
    }
    fn full(&mut self, typ: &[u8; 4], version: u8, flags: u32, f: impl FnOnce(&mut W)) {
        self.boxed(typ, |w| {
            w.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
            f(w);
        });
    }
    fn matrix(&mut self) {
        for v in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000u32] {
            self.u32(v);
        }
    }
}

fn fits32(v: u64) -> bool {
    v <= u64::from(u32::MAX)
}

/// Computes the file for `samples`, grouped in chunks of `chunk_samples[i]` samples.
/// `creation_unix_ms` is written as the creation time (the first frame's wall time).
pub fn layout(
    params: &TrackParams,
    samples: &[Sample],
    chunk_samples: &[u32],
    creation_unix_ms: i64,
) -> Result<Layout, MuxError> {
    if samples.is_empty() {
        return Err(MuxError::Empty);
    }
    if chunk_samples.iter().map(|&n| u64::from(n)).sum::<u64>() != samples.len() as u64
        || chunk_samples.contains(&0)
    {
        return Err(MuxError::Inconsistent("chunk sample counts"));
    }
    if params.extra_data.len() < 7 || params.extra_data.len() > 65_535 {
        return Err(MuxError::BadExtraData);
    }
    let payload_len: u64 = samples.iter().map(|s| u64::from(s.size)).sum();
    let mut chunk_payload_offsets = Vec::with_capacity(chunk_samples.len());
    let mut off = 0u64;
    let mut i = 0usize;
    for &n in chunk_samples {
        chunk_payload_offsets.push(off);
        for s in &samples[i..i + n as usize] {
            off += u64::from(s.size);
        }
        i += n as usize;
    }
    // co64 when offsets may pass 4 GiB (with ample room for the header).
    let co64 = payload_len > u64::from(u32::MAX) - (256 << 20);
    let large_mdat = payload_len + 8 > u64::from(u32::MAX);
    let mdat_header_len: u64 = if large_mdat { 16 } else { 8 };

    let build = |base: u64| -> Vec<u8> {
        let mut w = W(Vec::new());
        write_ftyp(&mut w, params.codec);
        write_moov(
            &mut w,
            params,
            samples,
            chunk_samples,
            &chunk_payload_offsets,
            base,
            co64,
            creation_unix_ms,
            false,
        );
        if large_mdat {
            w.u32(1);
            w.bytes(b"mdat");
            w.u64(payload_len + 16);
        } else {
            w.u32((payload_len + 8) as u32);
            w.bytes(b"mdat");
        }
        w.0
    };
    // The header's size does not depend on the offsets written in it.
    let probe = build(0);
    let header_len = probe.len() as u64;
    debug_assert!(header_len >= mdat_header_len);
    let header = build(header_len);
    debug_assert_eq!(header.len() as u64, header_len);
    Ok(Layout {
        total_len: header_len + payload_len,
        header,
        chunk_payload_offsets,
        payload_len,
    })
}

fn write_ftyp(w: &mut W, codec: VideoCodec) {
    w.boxed(b"ftyp", |w| {
        w.bytes(b"isom");
        w.u32(0x200);
        w.bytes(b"isom");
        w.bytes(b"iso2");
        w.bytes(match codec {
            VideoCodec::H264 => b"avc1",
            VideoCodec::H265 => b"hvc1",
        });
        w.bytes(b"mp41");
    });
}

#[allow(clippy::too_many_arguments)]
fn write_moov(
    w: &mut W,
    p: &TrackParams,
    samples: &[Sample],
    chunk_samples: &[u32],
    chunk_offsets: &[u64],
    base: u64,
    co64: bool,
    creation_unix_ms: i64,
    fragmented: bool,
) {
    let duration_90k: u64 = samples.iter().map(|s| u64::from(s.duration_90k)).sum();
    let duration_ms = duration_90k / TICKS_90K_PER_MS as u64;
    let created = (creation_unix_ms.max(0) as u64) / 1000 + MP4_EPOCH_OFFSET;
    let v1 = !fits32(duration_90k) || !fits32(created);
    w.boxed(b"moov", |w| {
        w.full(b"mvhd", v1 as u8, 0, |w| {
            if v1 {
                w.u64(created);
                w.u64(created);
                w.u32(1000);
                w.u64(duration_ms);
            } else {
                w.u32(created as u32);
                w.u32(created as u32);
                w.u32(1000);
                w.u32(duration_ms as u32);
            }
            w.u32(0x0001_0000); // rate 1.0
            w.u16(0x0100); // volume 1.0
            w.zeros(10);
            w.matrix();
            w.zeros(24);
            w.u32(2); // next track id
        });
        w.boxed(b"trak", |w| {
            w.full(b"tkhd", v1 as u8, 0x3, |w| {
                if v1 {
                    w.u64(created);
                    w.u64(created);
                    w.u32(1);
                    w.u32(0);
                    w.u64(duration_ms);
                } else {
                    w.u32(created as u32);
                    w.u32(created as u32);
                    w.u32(1);
                    w.u32(0);
                    w.u32(duration_ms as u32);
                }
                w.zeros(8);
                w.u16(0); // layer
                w.u16(0); // alternate group
                w.u16(0); // volume: video
                w.u16(0);
                w.matrix();
                w.u32(p.width.min(0xffff) << 16);
                w.u32(p.height.min(0xffff) << 16);
            });
            w.boxed(b"mdia", |w| {
                w.full(b"mdhd", v1 as u8, 0, |w| {
                    if v1 {
                        w.u64(created);
                        w.u64(created);
                        w.u32(TIMESCALE);
                        w.u64(duration_90k);
                    } else {
                        w.u32(created as u32);
                        w.u32(created as u32);
                        w.u32(TIMESCALE);
                        w.u32(duration_90k as u32);
                    }
                    w.u16(0x55c4); // "und"
                    w.u16(0);
                });
                w.full(b"hdlr", 0, 0, |w| {
                    w.u32(0);
                    w.bytes(b"vide");
                    w.zeros(12);
                    w.bytes(b"Ringfence video\0");
                });
                w.boxed(b"minf", |w| {
                    w.full(b"vmhd", 0, 1, |w| w.zeros(8));
                    w.boxed(b"dinf", |w| {
                        w.full(b"dref", 0, 0, |w| {
                            w.u32(1);
                            w.full(b"url ", 0, 1, |_| {});
                        });
                    });
                    write_stbl(w, p, samples, chunk_samples, chunk_offsets, base, co64);
                });
            });
        });
        if fragmented {
            w.boxed(b"mvex", |w| {
                w.full(b"trex", 0, 0, |w| {
                    w.u32(1); // track
                    w.u32(1); // sample description
                    w.u32(0); // duration
                    w.u32(0); // size
                    w.u32(0); // flags
                });
            });
        }
    });
}

// ---------------------------------------------------------------------------------------
// fragmented MP4 (live view)

/// Seconds from 1900-01-01 (NTP epoch) to 1970-01-01.
const NTP_EPOCH_OFFSET: u64 = 2_208_988_800;
const SAMPLE_FLAGS_KEY: u32 = 0x0200_0000; // depends on no other sample
const SAMPLE_FLAGS_DELTA: u32 = 0x0101_0000; // depends on others, not a sync sample

/// The initialization segment of a fragmented MP4: `ftyp` and a `moov` with an empty
/// sample table and `mvex`; [`fragment`]s follow.
pub fn init_segment(params: &TrackParams, creation_unix_ms: i64) -> Result<Vec<u8>, MuxError> {
    if params.extra_data.len() < 7 || params.extra_data.len() > 65_535 {
        return Err(MuxError::BadExtraData);
    }
    let mut w = W(Vec::new());
    write_ftyp(&mut w, params.codec);
    write_moov(
        &mut w,
        params,
        &[],
        &[],
        &[],
        0,
        false,
        creation_unix_ms,
        true,
    );
    Ok(w.0)
}

/// The boxes of one fragment before its sample bytes: `prft` (the wall-clock time of
/// the first sample, as the recorder timed it), `moof` (sequence `seq`, decode time
/// `base_90k`, one `trun` entry per sample) and the `mdat` header. The samples' bytes,
/// back to back, complete the fragment.
pub fn fragment_header(
    seq: u32,
    base_90k: u64,
    first_unix_ms: i64,
    samples: &[Sample],
) -> Result<Vec<u8>, MuxError> {
    if samples.is_empty() {
        return Err(MuxError::Empty);
    }
    let payload: u64 = samples.iter().map(|s| u64::from(s.size)).sum();
    if payload + 8 > u64::from(u32::MAX) {
        return Err(MuxError::Inconsistent("fragment too large"));
    }
    let mut w = W(Vec::new());
    // prft: NTP time of the first sample and its media time.
    let ms = first_unix_ms.max(0) as u64;
    let ntp = ((ms / 1000 + NTP_EPOCH_OFFSET) << 32) | (((ms % 1000) << 32) / 1000);
    w.full(b"prft", 1, 0, |w| {
        w.u32(1);
        w.u64(ntp);
        w.u64(base_90k);
    });
    let moof_start = w.0.len();
    let mut data_offset_at = 0;
    w.boxed(b"moof", |w| {
        w.full(b"mfhd", 0, 0, |w| w.u32(seq));
        w.boxed(b"traf", |w| {
            // default-base-is-moof
            w.full(b"tfhd", 0, 0x02_0000, |w| w.u32(1));
            w.full(b"tfdt", 1, 0, |w| w.u64(base_90k));
            // data offset, duration, size, flags per sample
            w.full(b"trun", 0, 0x0001 | 0x0100 | 0x0200 | 0x0400, |w| {
                w.u32(samples.len() as u32);
                data_offset_at = w.0.len();
                w.u32(0);
                for s in samples {
                    w.u32(s.duration_90k);
                    w.u32(s.size);
                    w.u32(if s.key {
                        SAMPLE_FLAGS_KEY
                    } else {
                        SAMPLE_FLAGS_DELTA
                    });
                }
            });
        });
    });
    let moof_len = (w.0.len() - moof_start) as u32;
    w.0[data_offset_at..data_offset_at + 4].copy_from_slice(&(moof_len + 8).to_be_bytes());
    w.u32((payload + 8) as u32);
    w.bytes(b"mdat");
    Ok(w.0)
}

fn write_stbl(
    w: &mut W,
    p: &TrackParams,
    samples: &[Sample],
    chunk_samples: &[u32],
    chunk_offsets: &[u64],
    base: u64,
    co64: bool,
) {
    w.boxed(b"stbl", |w| {
        w.full(b"stsd", 0, 0, |w| {
            w.u32(1);
            let (entry, config) = match p.codec {
                VideoCodec::H264 => (b"avc1", b"avcC"),
                VideoCodec::H265 => (b"hvc1", b"hvcC"),
            };
            w.boxed(entry, |w| {
                w.zeros(6);
                w.u16(1); // data reference index
                w.zeros(16);
                w.u16(p.width.min(0xffff) as u16);
                w.u16(p.height.min(0xffff) as u16);
                w.u32(0x0048_0000); // 72 dpi
                w.u32(0x0048_0000);
                w.u32(0);
                w.u16(1); // frame count
                let mut name = [0u8; 32];
                let label = b"Ringfence";
                name[0] = label.len() as u8;
                name[1..=label.len()].copy_from_slice(label);
                w.bytes(&name);
                w.u16(0x0018);
                w.u16(0xffff);
                w.boxed(config, |w| w.bytes(&p.extra_data));
            });
        });
        // stts: run-length durations
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for s in samples {
            match runs.last_mut() {
                Some((n, d)) if *d == s.duration_90k => *n += 1,
                _ => runs.push((1, s.duration_90k)),
            }
        }
        w.full(b"stts", 0, 0, |w| {
            w.u32(runs.len() as u32);
            for (n, d) in &runs {
                w.u32(*n);
                w.u32(*d);
            }
        });
        if !samples.iter().all(|s| s.key) {
            let keys: Vec<u32> = samples
                .iter()
                .enumerate()
                .filter(|(_, s)| s.key)
                .map(|(i, _)| i as u32 + 1)
                .collect();
            w.full(b"stss", 0, 0, |w| {
                w.u32(keys.len() as u32);
                for k in keys {
                    w.u32(k);
                }
            });
        }
        // stsc: runs of equal samples-per-chunk
        let mut stsc: Vec<(u32, u32)> = Vec::new();
        for (i, &n) in chunk_samples.iter().enumerate() {
            if stsc.last().is_none_or(|&(_, m)| m != n) {
                stsc.push((i as u32 + 1, n));
            }
        }
        w.full(b"stsc", 0, 0, |w| {
            w.u32(stsc.len() as u32);
            for (first, n) in stsc {
                w.u32(first);
                w.u32(n);
                w.u32(1);
            }
        });
        w.full(b"stsz", 0, 0, |w| {
            w.u32(0);
            w.u32(samples.len() as u32);
            for s in samples {
                w.u32(s.size);
            }
        });
        if co64 {
            w.full(b"co64", 0, 0, |w| {
                w.u32(chunk_offsets.len() as u32);
                for o in chunk_offsets {
                    w.u64(base + o);
                }
            });
        } else {
            w.full(b"stco", 0, 0, |w| {
                w.u32(chunk_offsets.len() as u32);
                for o in chunk_offsets {
                    w.u32((base + o) as u32);
                }
            });
        }
    });
}

/// Parses the byte range of a `Range` header against a body of `len` bytes.
/// `Ok(None)`: serve the whole body (no header, or several ranges, which we may
/// legitimately ignore). `Err(())`: unsatisfiable (416).
#[allow(clippy::result_unit_err)]
pub fn parse_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(h) = header else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().map_err(|_| ());
    let (start, end) = if a.is_empty() {
        let n = parse(b)?;
        if n == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start = parse(a)?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            parse(b)?.min(len.saturating_sub(1))
        };
        (start, end)
    };
    if start >= len || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> TrackParams {
        TrackParams {
            codec: VideoCodec::H264,
            extra_data: vec![1, 0x4d, 0x40, 0x1e, 0xff, 0xe0, 0],
            width: 320,
            height: 240,
        }
    }

    #[test]
    fn layout_is_consistent() {
        let samples: Vec<Sample> = (0..50)
            .map(|i| Sample {
                duration_90k: 3600,
                size: 100 + i,
                key: i % 25 == 0,
            })
            .collect();
        let l = layout(&params(), &samples, &[25, 25], 1_700_000_000_000).unwrap();
        assert_eq!(l.total_len, l.header.len() as u64 + l.payload_len);
        assert_eq!(&l.header[4..8], b"ftyp");
        let mdat = &l.header[l.header.len() - 8..];
        assert_eq!(&mdat[4..], b"mdat");
        assert_eq!(
            u32::from_be_bytes(mdat[..4].try_into().unwrap()) as u64,
            l.payload_len + 8
        );
        assert_eq!(l.chunk_payload_offsets[1], (100..125).sum::<u64>());
        assert_eq!(l.chunk_at(0), (0, 0));
        assert_eq!(l.chunk_at(l.chunk_payload_offsets[1]).0, 1);
        assert_eq!(l.chunk_at(l.payload_len - 1).0, 1);
    }

    #[test]
    fn rejects_bad_indexes() {
        let s = [Sample {
            duration_90k: 1,
            size: 1,
            key: true,
        }];
        assert_eq!(layout(&params(), &[], &[], 0).unwrap_err(), MuxError::Empty);
        assert!(layout(&params(), &s, &[2], 0).is_err());
        assert!(layout(&params(), &s, &[0, 1], 0).is_err());
        let mut p = params();
        p.extra_data.clear();
        assert_eq!(layout(&p, &s, &[1], 0).unwrap_err(), MuxError::BadExtraData);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), Ok(Some((50, 99))));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=9-3"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=x-3"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=-0"), 100), Err(()));
    }
}

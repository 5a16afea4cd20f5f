use super::codec::{self, Cur, FrameMeta};
use super::index::{ChunkAt, TrailerAcc};
use super::writer::Faults;
use super::*;
use proptest::prelude::*;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const CAM: &str = "cam-01";
const MARKER: &[u8] = b"<<FRAME-BYTES-IN-CLEAR>>";
const EXTRA_MARKER: &[u8] = b"<<AVCC-IN-CLEAR>>";

fn params(codec: Codec) -> CodecParams {
    let mut extra_data = vec![1, 0x64, 0, 0x28];
    extra_data.extend_from_slice(EXTRA_MARKER);
    CodecParams {
        codec,
        extra_data,
        width: 1920,
        height: 1080,
        rfc6381: match codec {
            Codec::H264 => "avc1.640028".into(),
            Codec::H265 => "hvc1.1.6.L120.90".into(),
        },
    }
}

/// GOPs whose frames are made of MARKER repeated (plus a counter), with awkward pts.
fn gops(n: usize, frames_per_gop: usize, frame_len: usize) -> Vec<Gop> {
    let mut pts = 1_000_000i64;
    let mut counter = 0u32;
    (0..n)
        .map(|g| Gop {
            start_unix_ms: 1_700_000_000_000 + g as i64 * 2000,
            frames: (0..frames_per_gop)
                .map(|i| {
                    counter += 1;
                    pts += if i == 2 { -1234 } else { 3000 }; // one backwards step per GOP
                    let mut data = Vec::with_capacity(frame_len);
                    data.extend_from_slice(&counter.to_be_bytes());
                    while data.len() < frame_len {
                        data.extend_from_slice(MARKER);
                    }
                    data.truncate(frame_len.max(4));
                    Frame {
                        pts_90k: pts,
                        key: i == 0,
                        data,
                    }
                })
                .collect(),
        })
        .collect()
}

struct Seg {
    _dir: tempfile::TempDir,
    path: PathBuf,
    id: SegmentId,
    key: DataKey,
    gops: Vec<Gop>,
    finished: Finished,
}

fn write_seg(codec: Codec, gops: Vec<Gop>) -> Seg {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let id = SegmentId::random();
    let key = DataKey::random();
    let mut w =
        SegmentWriter::create(&path, id, CAM, &key, &params(codec), 1_700_000_000_000).unwrap();
    for g in &gops {
        w.append_gop(g).unwrap();
    }
    let finished = w.finish().unwrap();
    Seg {
        _dir: dir,
        path,
        id,
        key,
        gops,
        finished,
    }
}

fn small_seg() -> Seg {
    write_seg(Codec::H264, gops(3, 4, 30))
}

/// (start, end) of every chunk in the file bytes (the FINAL chunk's with the footer).
fn chunk_spans(b: &[u8]) -> Vec<(usize, usize)> {
    let mut pos = usize::from(u16::from_be_bytes([b[10], b[11]]));
    let mut v = Vec::new();
    while pos < b.len() {
        let len = u32::from_be_bytes(b[pos + 13..pos + 17].try_into().unwrap()) as usize;
        let footer = if b[pos + 12] & FLAG_FINAL != 0 {
            FOOTER_LEN
        } else {
            0
        };
        let end = pos + CHUNK_HDR_LEN + len + TAG_LEN + footer;
        v.push((pos, end));
        pos = end;
    }
    assert_eq!(pos, b.len());
    v
}

fn rebuild(b: &[u8], order: &[usize]) -> Vec<u8> {
    let spans = chunk_spans(b);
    let mut out = b[..spans[0].0].to_vec();
    for &i in order {
        out.extend_from_slice(&b[spans[i].0..spans[i].1]);
    }
    out
}

fn read_all(path: &Path, id: SegmentId, key: &DataKey) -> Result<Vec<Gop>, SegmentError> {
    let mut r = SegmentReader::open(path, id, CAM, key)?;
    let mut v = Vec::new();
    while let Some(g) = r.next_gop()? {
        v.push(g);
    }
    Ok(v)
}

/// Everything read by random access: the index, then every GOP chunk it lists.
fn read_all_by_index(
    path: &Path,
    id: SegmentId,
    key: &DataKey,
) -> Result<(SegmentIndex, Vec<Gop>), SegmentError> {
    let index = SegmentReader::open_index(path, id, CAM, key)?;
    let r = SegmentReader::open(path, id, CAM, key)?;
    let mut v = Vec::new();
    for (i, g) in index.gops.iter().enumerate() {
        let gop = r.read_chunk_at(g.offset, g.len, g.chunk_index)?;
        // the index and the chunk agree
        assert_eq!(gop.start_unix_ms, g.start_unix_ms);
        let metas: Vec<IndexedFrame> = gop
            .frames
            .iter()
            .map(|f| IndexedFrame {
                pts_90k: f.pts_90k,
                key: f.key,
                size: f.data.len() as u32,
            })
            .collect();
        assert_eq!(metas, index.gop_frames(i));
        v.push(gop);
    }
    Ok((index, v))
}

/// A file is "accepted" only if verify says intact and the reader reads it to the end;
/// reading it by its index must agree (same verdict, same GOPs).
fn accepted(path: &Path, id: SegmentId, key: &DataKey) -> bool {
    let verified = matches!(verify(path, id, CAM, key), Ok(r) if r.is_intact());
    let read = read_all(path, id, key);
    assert_eq!(verified, read.is_ok(), "verify and reader disagree");
    let random = read_all_by_index(path, id, key);
    assert_eq!(
        verified,
        random.is_ok(),
        "verify and random access disagree: {random:?}"
    );
    if let (Ok(a), Ok((_, b))) = (read, random) {
        assert_eq!(a, b);
    }
    verified
}

/// SHA-256 by another implementation than the writer's (sha2, not ring): a cross-check.
fn sha(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// Writes two segments sharing key and nonce prefix (which never happens) so that only the
/// associated data can tell their chunks apart.
fn twin(id: SegmentId, camera: &str, key: &DataKey, g: &[Gop], dir: &Path, name: &str) -> Vec<u8> {
    let p = dir.join(name);
    let mut w = SegmentWriter::create_with_prefix(
        &p,
        id,
        camera,
        key,
        &params(Codec::H264),
        1_700_000_000_000,
        [7, 7, 7, 7],
    )
    .unwrap();
    for x in g {
        w.append_gop(x).unwrap();
    }
    w.finish().unwrap();
    std::fs::read(p).unwrap()
}

mod basics;
mod encoding;
mod index;
mod keys;
mod recovery;
mod tamper;

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

#[test]
fn round_trip_both_codecs() {
    for codec in [Codec::H264, Codec::H265] {
        let s = write_seg(codec, gops(5, 30, 700));
        let bytes = std::fs::read(&s.path).unwrap();
        assert_eq!(s.finished.bytes, bytes.len() as u64);
        assert_eq!(s.finished.sha256, sha(&bytes));
        assert_eq!(s.finished.chunks, 7);
        let mode = std::fs::metadata(&s.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let mut r = SegmentReader::open(&s.path, s.id, CAM, &s.key).unwrap();
        assert_eq!(r.params(), &params(codec));
        assert_eq!(r.start_unix_ms(), 1_700_000_000_000);
        let mut got = Vec::new();
        while let Some(g) = r.next_gop().unwrap() {
            got.push(g);
        }
        assert_eq!(got, s.gops);
        assert_eq!(r.next_gop().unwrap(), None);
        let t = *r.trailer().unwrap();
        assert_eq!(t, s.finished.trailer);
        assert_eq!(t.frames, 150);
        assert_eq!(t.key_frames, 5);
        assert_eq!(t.first_pts_90k, s.gops[0].frames[0].pts_90k);
        assert_eq!(t.last_pts_90k, s.gops[4].frames[29].pts_90k);
        assert_eq!(t.first_unix_ms, s.gops[0].start_unix_ms);
        let last = &s.gops[4];
        let span = (last.frames[29].pts_90k - last.frames[0].pts_90k) / 90;
        assert_eq!(t.last_unix_ms, last.start_unix_ms + span);

        let rep = verify(&s.path, s.id, CAM, &s.key).unwrap();
        assert!(rep.is_intact(), "{rep:?}");
        assert_eq!(rep.sha256, s.finished.sha256);
        assert!(!rep.recovered);
        assert_eq!(rep.bytes, s.finished.bytes);
        assert_eq!(rep.valid_len, s.finished.bytes);
        assert_eq!((rep.chunks, rep.gops), (7, 5));
        assert_eq!(rep.trailer, t);
        assert_eq!(rep.params.as_ref(), Some(&params(codec)));
    }
}

#[test]
fn create_refuses_existing_file_and_bad_input() {
    let s = small_seg();
    let before = std::fs::read(&s.path).unwrap();
    let e = SegmentWriter::create(&s.path, s.id, CAM, &s.key, &params(Codec::H264), 0);
    assert!(
        matches!(e, Err(SegmentError::Io(ref io)) if io.kind() == io::ErrorKind::AlreadyExists)
    );
    assert_eq!(
        std::fs::read(&s.path).unwrap(),
        before,
        "existing file untouched"
    );

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    for cam in ["", &"c".repeat(33), "a\nb"] {
        let e = SegmentWriter::create(&p, s.id, cam, &s.key, &params(Codec::H264), 0);
        assert!(matches!(e, Err(SegmentError::InvalidInput(_))));
    }
    assert!(!p.exists());
    let mut w = SegmentWriter::create(&p, s.id, CAM, &s.key, &params(Codec::H264), 0).unwrap();
    let empty = Gop {
        start_unix_ms: 0,
        frames: vec![],
    };
    assert!(matches!(
        w.append_gop(&empty),
        Err(SegmentError::InvalidInput(_))
    ));
    w.finish().unwrap();
    assert!(accepted(&p, s.id, &s.key));
}

#[test]
fn empty_segment_is_valid() {
    let s = write_seg(Codec::H265, vec![]);
    let mut r = SegmentReader::open(&s.path, s.id, CAM, &s.key).unwrap();
    assert_eq!(r.next_gop().unwrap(), None);
    let t = *r.trailer().unwrap();
    assert_eq!(t.frames, 0);
    assert_eq!(t.first_unix_ms, 1_700_000_000_000);
    assert!(verify(&s.path, s.id, CAM, &s.key).unwrap().is_intact());
}

#[test]
fn writer_counters() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let key = DataKey::random();
    let id = SegmentId::random();
    let g = gops(2, 5, 50);
    let mut w = SegmentWriter::create(&p, id, CAM, &key, &params(Codec::H264), 42).unwrap();
    let b0 = w.bytes();
    assert_eq!(w.chunks(), 1);
    assert_eq!(w.trailer_so_far().first_unix_ms, 42);
    let n = w.append_gop(&g[0]).unwrap();
    assert_eq!(w.bytes(), b0 + n);
    w.append_gop(&g[1]).unwrap();
    w.sync_data().unwrap();
    assert_eq!((w.chunks(), w.gops()), (3, 2));
    assert_eq!(w.trailer_so_far().frames, 10);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), w.bytes());
    let f = w.finish().unwrap();
    assert_eq!(f.trailer.frames, 10);
}

#[test]
fn frame_bytes_and_codec_params_never_in_clear() {
    let s = write_seg(Codec::H264, gops(4, 20, 400));
    let b = std::fs::read(&s.path).unwrap();
    for needle in [
        &MARKER[..8],
        &MARKER[8..16],
        &EXTRA_MARKER[..8],
        b"avc1.640",
    ] {
        assert!(
            !b.windows(needle.len()).any(|w| w == needle),
            "plaintext found in the file"
        );
    }
    // the camera id is deliberately clear, so the search itself works
    assert!(b.windows(CAM.len()).any(|w| w == CAM.as_bytes()));
}

#[test]
fn every_flipped_byte_is_detected() {
    let s = small_seg();
    let orig = std::fs::read(&s.path).unwrap();
    assert!(orig.len() < 2000);
    for pos in 0..orig.len() {
        for mask in [0x01u8, 0x80] {
            let mut b = orig.clone();
            b[pos] ^= mask;
            std::fs::write(&s.path, &b).unwrap();
            assert!(!accepted(&s.path, s.id, &s.key), "flip at {pos} undetected");
        }
    }
}

#[test]
fn swapped_reordered_duplicated_or_dropped_chunks_are_detected() {
    let s = write_seg(Codec::H264, gops(4, 3, 40));
    let orig = std::fs::read(&s.path).unwrap();
    assert_eq!(chunk_spans(&orig).len(), 6);
    let cases: &[&[usize]] = &[
        &[0, 2, 1, 3, 4, 5],    // swap
        &[0, 2, 3, 1, 4, 5],    // rotate
        &[0, 4, 3, 2, 1, 5],    // reverse
        &[0, 1, 1, 2, 3, 4, 5], // duplicate
        &[0, 1, 3, 4, 5],       // drop from the middle
        &[0, 1, 2, 3, 5],       // drop the last GOP
        &[0, 1, 2, 3, 4, 5, 5], // final twice
        &[1, 2, 3, 4, 5],       // no params chunk
        &[0, 5],                // params + final only
    ];
    for order in cases {
        std::fs::write(&s.path, rebuild(&orig, order)).unwrap();
        assert!(!accepted(&s.path, s.id, &s.key), "{order:?} accepted");
        // and recovery must not turn it into a "valid" file with foreign content
        if let Ok(rep) = recover(&s.path, s.id, CAM, &s.key) {
            let got = read_all(&s.path, s.id, &s.key).unwrap();
            assert_eq!(got, s.gops[..got.len()], "{order:?}");
            assert!(rep.is_intact());
        }
    }
    std::fs::write(&s.path, rebuild(&orig, &[0, 1, 2, 3, 4, 5])).unwrap();
    assert!(accepted(&s.path, s.id, &s.key));
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

#[test]
fn chunks_moved_between_segments_or_cameras_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::random();
    let g = gops(3, 3, 40);
    let other_g = gops(3, 3, 41);
    let id = SegmentId::random();
    let target = twin(id, CAM, &key, &g, dir.path(), "a");
    let same_cam = twin(SegmentId::random(), CAM, &key, &other_g, dir.path(), "b");
    let other_cam = twin(id, "cam-02", &key, &other_g, dir.path(), "c");
    let ts = chunk_spans(&target);
    let path = dir.path().join("target");
    for donor in [&same_cam, &other_cam] {
        let ds = chunk_spans(donor);
        for i in 0..ts.len() {
            let mut b = target[..ts[i].0].to_vec();
            b.extend_from_slice(&donor[ds[i].0..ds[i].1]);
            b.extend_from_slice(&target[ts[i].1..]);
            std::fs::write(&path, &b).unwrap();
            let rep = verify(&path, id, CAM, &key).unwrap();
            assert!(
                matches!(rep.error, Some(SegmentError::Auth { chunk }) if chunk == i as u64),
                "chunk {i}: {rep:?}"
            );
            assert!(!accepted(&path, id, &key));
        }
    }
    // sanity: the untouched twin verifies
    std::fs::write(&path, &target).unwrap();
    assert!(accepted(&path, id, &key));
}

#[test]
fn final_flag_removed_or_added_is_detected() {
    let s = small_seg();
    let orig = std::fs::read(&s.path).unwrap();
    let spans = chunk_spans(&orig);
    let last = spans.len() - 1;
    let mut b = orig.clone();
    b[spans[last].0 + 12] &= !FLAG_FINAL;
    std::fs::write(&s.path, &b).unwrap();
    let rep = verify(&s.path, s.id, CAM, &s.key).unwrap();
    assert!(
        matches!(rep.error, Some(SegmentError::Auth { .. })),
        "{rep:?}"
    );
    assert!(!rep.finalised);

    // FINAL set on a GOP chunk (and on it as the last chunk after dropping the trailer)
    let mut b = rebuild(&orig, &[0, 1, 2]);
    let spans2 = chunk_spans(&b);
    b[spans2[2].0 + 12] |= FLAG_FINAL;
    std::fs::write(&s.path, &b).unwrap();
    let rep = verify(&s.path, s.id, CAM, &s.key).unwrap();
    assert!(
        matches!(rep.error, Some(SegmentError::Auth { chunk: 2 })),
        "{rep:?}"
    );
    assert!(!accepted(&s.path, s.id, &s.key));
}

#[test]
fn bytes_after_final_are_reported() {
    let s = small_seg();
    let mut b = std::fs::read(&s.path).unwrap();
    b.extend_from_slice(b"junk");
    std::fs::write(&s.path, &b).unwrap();
    let rep = verify(&s.path, s.id, CAM, &s.key).unwrap();
    assert!(matches!(rep.error, Some(SegmentError::Malformed(_))));
    assert_eq!(rep.valid_len, s.finished.bytes);
    assert_eq!(rep.bytes, b.len() as u64);
    assert!(!accepted(&s.path, s.id, &s.key));
    assert!(
        recover(&s.path, s.id, CAM, &s.key).is_err(),
        "finalised files are not cut"
    );
}

#[test]
fn truncation_at_every_offset() {
    let s = write_seg(Codec::H265, gops(4, 3, 40));
    let orig = std::fs::read(&s.path).unwrap();
    let spans = chunk_spans(&orig);
    let header_len = spans[0].0;
    let params_end = spans[0].1;
    let ends: Vec<usize> = spans.iter().map(|s| s.1).collect();
    for cut in 0..orig.len() {
        std::fs::write(&s.path, &orig[..cut]).unwrap();
        let res = verify(&s.path, s.id, CAM, &s.key);
        if cut < header_len {
            assert!(
                matches!(res, Err(SegmentError::Cut { valid_len: 0 })),
                "{cut}: {res:?}"
            );
            assert!(matches!(
                SegmentReader::open(&s.path, s.id, CAM, &s.key),
                Err(SegmentError::Cut { valid_len: 0 })
            ));
        } else {
            let rep = res.unwrap();
            let want_valid = ends
                .iter()
                .copied()
                .filter(|&e| e <= cut)
                .max()
                .unwrap_or(0);
            assert!(
                matches!(rep.error, Some(SegmentError::Cut { valid_len }) if valid_len == want_valid as u64),
                "{cut}: {rep:?}"
            );
            assert_eq!(rep.valid_len, want_valid as u64);
            assert!(!rep.finalised);
            assert_eq!(rep.bytes, cut as u64);
            assert_eq!(rep.sha256, sha(&orig[..cut]));
            let n_gops = ends[1..].iter().filter(|&&e| e <= cut).count();
            assert_eq!(rep.gops, n_gops as u64);
            // the reader returns the authentic GOPs, then Cut
            match SegmentReader::open(&s.path, s.id, CAM, &s.key) {
                Ok(mut r) => {
                    for g in &s.gops[..n_gops] {
                        assert_eq!(&r.next_gop().unwrap().unwrap(), g);
                    }
                    assert!(
                        matches!(r.next_gop(), Err(SegmentError::Cut { valid_len }) if valid_len == want_valid as u64)
                    );
                }
                Err(e) => {
                    assert!(cut < params_end);
                    assert!(matches!(e, SegmentError::Cut { valid_len: 0 }));
                }
            }
        }
        // recover (on a subset of offsets: it fsyncs)
        if cut % 7 == 0 || ends.iter().any(|&e| cut.abs_diff(e) <= 1) {
            let res = recover(&s.path, s.id, CAM, &s.key);
            if cut < params_end {
                assert!(
                    matches!(res, Err(SegmentError::Cut { valid_len: 0 })),
                    "{cut}: {res:?}"
                );
                continue;
            }
            let rep = res.unwrap();
            assert!(rep.is_intact());
            let n_gops = ends[1..].iter().filter(|&&e| e <= cut).count();
            let got = read_all(&s.path, s.id, &s.key).unwrap();
            assert_eq!(got, s.gops[..n_gops], "{cut}");
            assert_eq!(rep.gops, n_gops as u64);
            let again = recover(&s.path, s.id, CAM, &s.key).unwrap();
            assert_eq!(again.sha256, rep.sha256, "recover is idempotent");
        }
    }
}

#[test]
fn recovered_trailer_matches_what_finish_would_write() {
    let s = write_seg(Codec::H264, gops(3, 5, 60));
    let orig = std::fs::read(&s.path).unwrap();
    let spans = chunk_spans(&orig);
    std::fs::write(&s.path, &orig[..spans[4].0]).unwrap(); // drop only the FINAL chunk
    let rep = recover(&s.path, s.id, CAM, &s.key).unwrap();
    assert_eq!(rep.trailer, s.finished.trailer);
    assert!(rep.recovered);
    assert!(!verify(&s.path, s.id, CAM, &s.key).is_ok_and(|r| !r.recovered));
    let mut r = SegmentReader::open(&s.path, s.id, CAM, &s.key).unwrap();
    while r.next_gop().unwrap().is_some() {}
    assert_eq!(r.trailer(), Some(&s.finished.trailer));
}

#[test]
fn recover_survives_a_crash_in_its_own_middle() {
    let s = write_seg(Codec::H264, gops(3, 5, 60));
    let orig = std::fs::read(&s.path).unwrap();
    let spans = chunk_spans(&orig);
    let cut = spans[3].0 + 20; // inside the third GOP chunk
    std::fs::write(&s.path, &orig[..cut]).unwrap();
    let first = recover(&s.path, s.id, CAM, &s.key).unwrap();
    let recovered = std::fs::read(&s.path).unwrap();
    let valid = spans[3].0;
    // crash states: truncated only; truncated + partial trailer; full trailer
    for len in [
        valid,
        valid + 1,
        valid + 17,
        recovered.len() - 1,
        recovered.len(),
    ] {
        std::fs::write(&s.path, &recovered[..len]).unwrap();
        let rep = recover(&s.path, s.id, CAM, &s.key).unwrap();
        assert_eq!(rep.sha256, first.sha256, "len {len}");
        assert_eq!(std::fs::read(&s.path).unwrap(), recovered);
    }
    // a torn tail of zeros (blocks allocated, never written) is a crash too
    let mut z = orig[..valid].to_vec();
    z.resize(valid + 300, 0);
    std::fs::write(&s.path, &z).unwrap();
    assert_eq!(
        recover(&s.path, s.id, CAM, &s.key).unwrap().sha256,
        first.sha256
    );
    // a torn last chunk of full length (bad tag) too
    let mut t = orig[..spans[3].1].to_vec();
    let l = t.len();
    t[l - 3] ^= 0xff;
    std::fs::write(&s.path, &t).unwrap();
    assert_eq!(
        recover(&s.path, s.id, CAM, &s.key).unwrap().sha256,
        first.sha256
    );
}

#[test]
fn recover_refuses_damage_in_the_middle() {
    let s = write_seg(Codec::H264, gops(3, 5, 60));
    let orig = std::fs::read(&s.path).unwrap();
    let spans = chunk_spans(&orig);
    let mut b = orig[..spans[3].1].to_vec(); // cut after GOP 2 ...
    b[spans[1].0 + 30] ^= 1; // ... and GOP 0 altered
    std::fs::write(&s.path, &b).unwrap();
    assert!(matches!(
        recover(&s.path, s.id, CAM, &s.key),
        Err(SegmentError::Auth { chunk: 1 })
    ));
    assert_eq!(std::fs::read(&s.path).unwrap(), b, "file left untouched");
}

#[test]
fn wrong_key_id_or_camera() {
    let s = small_seg();
    let orig = std::fs::read(&s.path).unwrap();
    let bad = DataKey::random();
    assert!(matches!(
        SegmentReader::open(&s.path, s.id, CAM, &bad),
        Err(SegmentError::Auth { chunk: 0 })
    ));
    let rep = verify(&s.path, s.id, CAM, &bad).unwrap();
    assert!(matches!(rep.error, Some(SegmentError::Auth { chunk: 0 })));
    assert_eq!((rep.valid_len, rep.chunks, rep.finalised), (0, 0, false));
    assert_eq!(rep.sha256, s.finished.sha256);
    assert!(matches!(
        recover(&s.path, s.id, CAM, &bad),
        Err(SegmentError::Auth { chunk: 0 })
    ));

    let other = SegmentId::random();
    for (id, cam) in [(other, CAM), (s.id, "cam-02")] {
        let e = SegmentReader::open(&s.path, id, cam, &s.key).unwrap_err();
        assert!(matches!(e, SegmentError::WrongSegment { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains(&s.id.to_string()) && msg.contains(CAM),
            "{msg}"
        );
        assert!(matches!(
            verify(&s.path, id, cam, &s.key),
            Err(SegmentError::WrongSegment { .. })
        ));
        assert!(matches!(
            recover(&s.path, id, cam, &s.key),
            Err(SegmentError::WrongSegment { .. })
        ));
    }
    assert_eq!(std::fs::read(&s.path).unwrap(), orig);

    std::fs::write(&s.path, b"hello world, not a segment").unwrap();
    assert!(matches!(
        verify(&s.path, s.id, CAM, &s.key),
        Err(SegmentError::NotASegment)
    ));
    // A version from the future, or before the first: refused by name, file intact.
    for v in [FORMAT_VERSION + 1, 0] {
        let mut other = orig.clone();
        other[8..10].copy_from_slice(&v.to_be_bytes());
        std::fs::write(&s.path, &other).unwrap();
        let e = verify(&s.path, s.id, CAM, &s.key).unwrap_err();
        assert!(
            matches!(e, SegmentError::UnsupportedVersion(x) if x == v),
            "{e}"
        );
        assert!(e.to_string().contains("reads versions 1..=2"), "{e}");
        assert_eq!(std::fs::read(&s.path).unwrap(), other);
    }
}

#[test]
fn enospc_leaves_a_valid_cut_segment() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::random();
    let id = SegmentId::random();
    let g = gops(4, 4, 100);
    let chunk_len = {
        let mut b = vec![0; CHUNK_HDR_LEN];
        codec::encode_gop(&mut b, &g[1]);
        b.len() + TAG_LEN
    };
    for partial in [0, 1, 16, 17, 100, chunk_len - 1] {
        let p = dir.path().join(format!("s{partial}"));
        let mut w = SegmentWriter::create(&p, id, CAM, &key, &params(Codec::H264), 0).unwrap();
        w.append_gop(&g[0]).unwrap();
        let good = w.bytes();
        w.faults.write_only = Some(partial);
        let e = w.append_gop(&g[1]).unwrap_err();
        assert!(matches!(&e, SegmentError::Io(io) if io.raw_os_error() == Some(libc::ENOSPC)));
        assert_eq!(w.bytes(), good);
        assert_eq!(w.gops(), 1);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), good, "truncated back");
        let rep = verify(&p, id, CAM, &key).unwrap();
        assert!(matches!(rep.error, Some(SegmentError::Cut { valid_len }) if valid_len == good));

        // space comes back: writing goes on (with the failed chunk's index burned)
        w.append_gop(&g[2]).unwrap();
        let f = w.finish().unwrap();
        let rep = verify(&p, id, CAM, &key).unwrap();
        assert!(rep.is_intact(), "{rep:?}");
        assert_eq!(rep.sha256, f.sha256);
        assert_eq!(
            read_all(&p, id, &key).unwrap(),
            vec![g[0].clone(), g[2].clone()]
        );
        let spans = chunk_spans(&std::fs::read(&p).unwrap());
        assert_eq!(spans.len(), 4);
    }

    // the rollback fails too: the writer is poisoned, the file is recoverable
    let p = dir.path().join("poisoned");
    let mut w = SegmentWriter::create(&p, id, CAM, &key, &params(Codec::H264), 0).unwrap();
    w.append_gop(&g[0]).unwrap();
    w.faults = Faults {
        write_only: Some(50),
        truncate_fails: true,
    };
    assert!(w.append_gop(&g[1]).is_err());
    assert!(matches!(w.append_gop(&g[2]), Err(SegmentError::Poisoned)));
    assert!(matches!(w.finish(), Err(SegmentError::Poisoned)));
    recover(&p, id, CAM, &key).unwrap();
    assert_eq!(read_all(&p, id, &key).unwrap(), vec![g[0].clone()]);

    // finish itself fails: the file stays a cut segment
    let p = dir.path().join("finish");
    let mut w = SegmentWriter::create(&p, id, CAM, &key, &params(Codec::H264), 0).unwrap();
    w.append_gop(&g[0]).unwrap();
    w.faults.write_only = Some(10);
    assert!(w.finish().is_err());
    let rep = verify(&p, id, CAM, &key).unwrap();
    assert!(matches!(rep.error, Some(SegmentError::Cut { .. })));
    let rep = recover(&p, id, CAM, &key).unwrap();
    assert_eq!(rep.gops, 1);
}

#[test]
fn reader_can_tail_a_growing_segment() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("live");
    let key = DataKey::random();
    let id = SegmentId::random();
    let g = gops(3, 3, 50);
    let mut w = SegmentWriter::create(&p, id, CAM, &key, &params(Codec::H264), 0).unwrap();
    w.append_gop(&g[0]).unwrap();
    let mut r = SegmentReader::open(&p, id, CAM, &key).unwrap();
    assert_eq!(r.next_gop().unwrap().as_ref(), Some(&g[0]));
    assert!(matches!(r.next_gop(), Err(SegmentError::Cut { .. })));
    w.append_gop(&g[1]).unwrap();
    assert_eq!(r.next_gop().unwrap().as_ref(), Some(&g[1]));
    w.append_gop(&g[2]).unwrap();
    w.finish().unwrap();
    assert_eq!(r.next_gop().unwrap().as_ref(), Some(&g[2]));
    assert_eq!(r.next_gop().unwrap(), None);
    assert_eq!(r.trailer().unwrap().frames, 9);
}

#[test]
fn key_wrapping() {
    let kek = [9u8; 32];
    let id = SegmentId::random();
    let key = DataKey::random();
    let w = wrap_key(&kek, id, &key);
    assert_eq!(w.len(), 60);
    assert_ne!(w, wrap_key(&kek, id, &key), "fresh nonce each time");
    assert_eq!(unwrap_key(&kek, id, &w).unwrap().as_bytes(), key.as_bytes());
    assert!(matches!(
        unwrap_key(&[8; 32], id, &w),
        Err(SegmentError::KeyUnwrap)
    ));
    assert!(matches!(
        unwrap_key(&kek, SegmentId::random(), &w),
        Err(SegmentError::KeyUnwrap)
    ));
    for i in 0..w.len() {
        let mut b = w.clone();
        b[i] ^= 4;
        assert!(matches!(
            unwrap_key(&kek, id, &b),
            Err(SegmentError::KeyUnwrap)
        ));
    }
    assert!(matches!(
        unwrap_key(&kek, id, &w[..59]),
        Err(SegmentError::KeyUnwrap)
    ));
    assert!(!w.windows(8).any(|x| x == &key.as_bytes()[..8]));
}

/// The format is plain AES-256-GCM as documented in the module: an independent
/// implementation (RustCrypto's aes-gcm and sha2, which wrote segments before ring did)
/// opens every chunk the writer seals and the keys it wraps, and the writer's code opens
/// keys aes-gcm wraps. So stores written before and after the switch read the same.
#[test]
fn chunks_and_wrapped_keys_are_standard_aes_256_gcm() {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    use sha2::Digest;
    let s = write_seg(Codec::H264, gops(3, 5, 300));
    let b = std::fs::read(&s.path).unwrap();
    let header_len = usize::from(u16::from_be_bytes([b[10], b[11]]));
    let header_hash: [u8; 32] = sha2::Sha256::digest(&b[..header_len]).into();
    let prefix = &b[28..32];
    let cipher = aes_gcm::Aes256Gcm::new(s.key.as_bytes().into());
    let mut prev_tag = [0u8; TAG_LEN];
    let mut opened = 0;
    for (start, end) in chunk_spans(&b) {
        let c = &b[start..end];
        let index = u64::from_be_bytes(c[4..12].try_into().unwrap());
        let flags = c[12];
        let len = u32::from_be_bytes(c[13..17].try_into().unwrap()) as usize;
        let mut aad = header_hash.to_vec();
        aad.extend_from_slice(&c[4..17]);
        aad.extend_from_slice(&prev_tag);
        if flags & FLAG_FINAL != 0 {
            aad.extend_from_slice(&c[CHUNK_HDR_LEN + len + TAG_LEN..]);
        }
        let mut nonce = prefix.to_vec();
        nonce.extend_from_slice(&index.to_be_bytes());
        let mut plain = c[CHUNK_HDR_LEN..CHUNK_HDR_LEN + len].to_vec();
        let tag = &c[CHUNK_HDR_LEN + len..CHUNK_HDR_LEN + len + TAG_LEN];
        cipher
            .decrypt_in_place_detached(
                aes_gcm::Nonce::from_slice(&nonce),
                &aad,
                &mut plain,
                aes_gcm::Tag::from_slice(tag),
            )
            .unwrap_or_else(|_| panic!("chunk {index} does not open with aes-gcm"));
        if index == 1 {
            assert_eq!(codec::decode_gop(&plain).unwrap(), s.gops[0]);
        }
        prev_tag = tag.try_into().unwrap();
        opened += 1;
    }
    assert_eq!(opened, 5, "parameters, three GOPs, FINAL");

    let kek = [5u8; 32];
    let kek_cipher = aes_gcm::Aes256Gcm::new((&kek).into());
    let w = wrap_key(&kek, s.id, &s.key);
    let mut k = w[12..44].to_vec();
    kek_cipher
        .decrypt_in_place_detached(
            aes_gcm::Nonce::from_slice(&w[..12]),
            &s.id.0,
            &mut k,
            aes_gcm::Tag::from_slice(&w[44..]),
        )
        .unwrap();
    assert_eq!(&k[..], s.key.as_bytes());
    let nonce = [3u8; 12];
    let mut ct = s.key.as_bytes().to_vec();
    let tag = kek_cipher
        .encrypt_in_place_detached(aes_gcm::Nonce::from_slice(&nonce), &s.id.0, &mut ct)
        .unwrap();
    let mut theirs = nonce.to_vec();
    theirs.extend_from_slice(&ct);
    theirs.extend_from_slice(&tag);
    assert_eq!(
        unwrap_key(&kek, s.id, &theirs).unwrap().as_bytes(),
        s.key.as_bytes()
    );
}

#[test]
fn no_key_material_in_debug_or_errors() {
    let key = DataKey::from_bytes([0xab; 32]);
    let dbg = format!("{key:?}");
    assert!(
        !dbg.to_lowercase().contains("abab") && !dbg.contains("171"),
        "{dbg}"
    );
    let s = small_seg();
    let w_dbg = format!(
        "{:?}",
        SegmentReader::open(&s.path, s.id, CAM, &s.key).unwrap()
    );
    let hex_key = hex::encode(s.key.as_bytes());
    assert!(!w_dbg.contains(&hex_key[..16]));
    let e = SegmentReader::open(&s.path, s.id, CAM, &key).unwrap_err();
    assert_eq!(
        e.to_string(),
        "chunk 0 failed authentication: wrong key, or the file was altered or corrupted"
    );
}

#[test]
fn ids_and_codecs_parse() {
    let id = SegmentId::random();
    let s = id.to_string();
    assert_eq!(s.len(), 32);
    assert_eq!(s, s.to_lowercase());
    assert_eq!(s.parse::<SegmentId>().unwrap(), id);
    assert_eq!(s.to_uppercase().parse::<SegmentId>().unwrap(), id);
    assert!("xyz".parse::<SegmentId>().is_err());
    assert!(s[..31].parse::<SegmentId>().is_err());
    assert_eq!(format!("{id:?}"), format!("SegmentId({s})"));
    assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{s}\""));
    assert_eq!(
        serde_json::from_str::<SegmentId>(&format!("\"{s}\"")).unwrap(),
        id
    );
    for c in [Codec::H264, Codec::H265] {
        assert_eq!(c.as_str().parse::<Codec>().unwrap(), c);
    }
    assert!("vp9".parse::<Codec>().is_err());
    assert_ne!(DataKey::random().as_bytes(), DataKey::random().as_bytes());
}

// ---------------------------------------------------------------------------------------
// the segment index and random access

/// The index as it must be for `gops` written back to back from `first_offset`, with
/// chunk indices `indices`.
fn expected_index(gops: &[Gop], first_offset: u64, indices: &[u64]) -> Vec<IndexedGop> {
    let mut off = first_offset;
    let mut first_frame = 0;
    gops.iter()
        .zip(indices)
        .map(|(g, &chunk_index)| {
            let mut b = Vec::new();
            codec::encode_gop(&mut b, g);
            let e = IndexedGop {
                chunk_index,
                offset: off,
                len: b.len() as u32,
                start_unix_ms: g.start_unix_ms,
                first_frame,
                frame_count: g.frames.len(),
            };
            off += (CHUNK_HDR_LEN + b.len() + TAG_LEN) as u64;
            first_frame += g.frames.len();
            e
        })
        .collect()
}

#[test]
fn index_round_trip() {
    for codec in [Codec::H264, Codec::H265] {
        let s = write_seg(codec, gops(6, 25, 300));
        let b = std::fs::read(&s.path).unwrap();
        let spans = chunk_spans(&b);
        let idx = SegmentReader::open_index(&s.path, s.id, CAM, &s.key).unwrap();
        assert_eq!(idx.params, params(codec));
        assert_eq!(idx.start_unix_ms, 1_700_000_000_000);
        assert_eq!(idx.trailer, s.finished.trailer);
        assert!(!idx.recovered);
        assert_eq!(
            idx.gops,
            expected_index(&s.gops, spans[1].0 as u64, &[1, 2, 3, 4, 5, 6])
        );
        let frames: Vec<IndexedFrame> = s
            .gops
            .iter()
            .flat_map(|g| &g.frames)
            .map(|f| IndexedFrame {
                pts_90k: f.pts_90k,
                key: f.key,
                size: f.data.len() as u32,
            })
            .collect();
        assert_eq!(idx.frames, frames);

        // every chunk, in any order, by random access; the sequential position is kept
        let mut r = SegmentReader::open(&s.path, s.id, CAM, &s.key).unwrap();
        assert_eq!(r.next_gop().unwrap().as_ref(), Some(&s.gops[0]));
        assert_eq!(r.read_index().unwrap(), idx);
        for i in [5, 0, 3, 3, 1] {
            let g = idx.gops[i];
            assert_eq!(
                r.read_chunk_at(g.offset, g.len, g.chunk_index).unwrap(),
                s.gops[i]
            );
            let bytes = r.read_gop_bytes_at(g.offset, g.len, g.chunk_index).unwrap();
            let concat: Vec<u8> = s.gops[i]
                .frames
                .iter()
                .flat_map(|f| f.data.clone())
                .collect();
            assert_eq!(bytes.data(), &concat[..]);
            assert_eq!(bytes.frames, idx.gop_frames(i));
            let (buf, range) = bytes.into_parts();
            assert_eq!(&buf[range], &concat[..]);
        }
        assert_eq!(r.next_gop().unwrap().as_ref(), Some(&s.gops[1]));

        // a wrong location is refused, never misread
        let g = idx.gops[2];
        assert_eq!(g.chunk_index, 3);
        for (off, len, ci) in [
            (g.offset, g.len + 1, 3),
            (g.offset, g.len - 1, 3),
            (g.offset, g.len, 4),
            (g.offset + 1, g.len, 3),
            (idx.gops[3].offset, g.len, 3),
            (g.offset, g.len, 0),
            (0, g.len, 3),
            (g.offset, g.len, RECOVERY_INDEX | 3),
        ] {
            assert!(r.read_chunk_at(off, len, ci).is_err(), "{off} {len} {ci}");
        }
        // the FINAL chunk is not a GOP chunk
        let fin = spans[spans.len() - 1];
        let fin_len = (fin.1 - fin.0 - CHUNK_HDR_LEN - TAG_LEN - FOOTER_LEN) as u32;
        assert!(r.read_chunk_at(fin.0 as u64, fin_len, 7).is_err());
    }
}

#[test]
fn index_of_an_empty_segment_and_with_a_burned_chunk_index() {
    let s = write_seg(Codec::H265, vec![]);
    let idx = SegmentReader::open_index(&s.path, s.id, CAM, &s.key).unwrap();
    assert!(idx.gops.is_empty() && idx.frames.is_empty());
    assert_eq!(idx.trailer, s.finished.trailer);

    // a failed write burns chunk index 2: the index skips it
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let key = DataKey::random();
    let id = SegmentId::random();
    let g = gops(3, 4, 100);
    let mut w = SegmentWriter::create(&p, id, CAM, &key, &params(Codec::H264), 0).unwrap();
    w.append_gop(&g[0]).unwrap();
    w.faults.write_only = Some(40);
    w.append_gop(&g[1]).unwrap_err();
    w.append_gop(&g[2]).unwrap();
    w.finish().unwrap();
    let spans = chunk_spans(&std::fs::read(&p).unwrap());
    let idx = SegmentReader::open_index(&p, id, CAM, &key).unwrap();
    let want = vec![g[0].clone(), g[2].clone()];
    assert_eq!(idx.gops, expected_index(&want, spans[1].0 as u64, &[1, 3]));
    assert_eq!(read_all_by_index(&p, id, &key).unwrap().1, want);
    assert!(accepted(&p, id, &key));
}

#[test]
fn open_index_needs_a_final_chunk_at_the_end() {
    // a segment being written: no index, the reader falls back to reading in order
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("live");
    let key = DataKey::random();
    let id = SegmentId::random();
    let g = gops(2, 3, 50);
    let mut w = SegmentWriter::create(&p, id, CAM, &key, &params(Codec::H264), 0).unwrap();
    assert!(matches!(
        SegmentReader::open_index(&p, id, CAM, &key),
        Err(SegmentError::NoIndex)
    ));
    w.append_gop(&g[0]).unwrap();
    w.append_gop(&g[1]).unwrap();
    assert!(matches!(
        SegmentReader::open_index(&p, id, CAM, &key),
        Err(SegmentError::NoIndex)
    ));
    w.finish().unwrap();
    assert_eq!(
        SegmentReader::open_index(&p, id, CAM, &key)
            .unwrap()
            .gops
            .len(),
        2
    );

    // cut anywhere: never an index
    let s = write_seg(Codec::H264, gops(3, 3, 40));
    let orig = std::fs::read(&s.path).unwrap();
    let params_end = chunk_spans(&orig)[0].1;
    for cut in 0..orig.len() {
        std::fs::write(&s.path, &orig[..cut]).unwrap();
        let r = SegmentReader::open_index(&s.path, s.id, CAM, &s.key);
        if cut >= params_end {
            assert!(matches!(r, Err(SegmentError::NoIndex)), "{cut}: {r:?}");
        } else {
            assert!(r.is_err(), "{cut}");
        }
    }
    // wrong key, id or camera
    std::fs::write(&s.path, &orig).unwrap();
    assert!(matches!(
        SegmentReader::open_index(&s.path, s.id, CAM, &DataKey::random()),
        Err(SegmentError::Auth { chunk: 0 })
    ));
    assert!(matches!(
        SegmentReader::open_index(&s.path, SegmentId::random(), CAM, &s.key),
        Err(SegmentError::WrongSegment { .. })
    ));
    assert!(matches!(
        SegmentReader::open_index(&s.path, s.id, "cam-02", &s.key),
        Err(SegmentError::WrongSegment { .. })
    ));
}

#[test]
fn final_chunks_moved_between_segments_fail_random_access() {
    // same key and nonce prefix, same GOP sizes: only the associated data differs
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::random();
    let g = gops(3, 3, 40);
    let id = SegmentId::random();
    let target = twin(id, CAM, &key, &g, dir.path(), "a");
    let same_cam = twin(SegmentId::random(), CAM, &key, &g, dir.path(), "b");
    let other_cam = twin(id, "cam-02", &key, &g, dir.path(), "c");
    let ts = chunk_spans(&target);
    let path = dir.path().join("t");
    for donor in [&same_cam, &other_cam] {
        let ds = chunk_spans(donor);
        let last = ts.len() - 1;
        let mut b = target[..ts[last].0].to_vec();
        b.extend_from_slice(&donor[ds[last].0..]);
        std::fs::write(&path, &b).unwrap();
        assert!(matches!(
            SegmentReader::open_index(&path, id, CAM, &key),
            Err(SegmentError::Auth { .. })
        ));
        assert!(!accepted(&path, id, &key));
    }
}

#[test]
fn recover_writes_a_correct_index() {
    let s = write_seg(Codec::H264, gops(4, 5, 60));
    let orig = std::fs::read(&s.path).unwrap();
    let spans = chunk_spans(&orig);
    let full = SegmentReader::open_index(&s.path, s.id, CAM, &s.key).unwrap();
    // cut: inside the FINAL chunk, inside GOP 3, exactly after GOP 1, inside GOP 0
    for (cut, n_gops) in [
        (spans[5].0 + 5, 4),
        (spans[4].0 + 40, 3),
        (spans[2].1, 2),
        (spans[1].0 + 30, 0),
    ] {
        std::fs::write(&s.path, &orig[..cut]).unwrap();
        assert!(matches!(
            SegmentReader::open_index(&s.path, s.id, CAM, &s.key),
            Err(SegmentError::NoIndex)
        ));
        let rep = recover(&s.path, s.id, CAM, &s.key).unwrap();
        let idx = SegmentReader::open_index(&s.path, s.id, CAM, &s.key).unwrap();
        assert!(idx.recovered);
        assert_eq!(idx.trailer, rep.trailer);
        assert_eq!(idx.gops[..], full.gops[..n_gops], "cut {cut}");
        let n_frames: usize = idx.gops.iter().map(|g| g.frame_count).sum();
        assert_eq!(idx.frames[..], full.frames[..n_frames]);
        assert_eq!(
            read_all_by_index(&s.path, s.id, &s.key).unwrap().1,
            s.gops[..n_gops]
        );
        assert!(accepted(&s.path, s.id, &s.key));
    }
    // only the FINAL chunk lost: the same index as finish wrote
    std::fs::write(&s.path, &orig[..spans[5].0]).unwrap();
    recover(&s.path, s.id, CAM, &s.key).unwrap();
    let idx = SegmentReader::open_index(&s.path, s.id, CAM, &s.key).unwrap();
    assert_eq!(
        SegmentIndex {
            recovered: false,
            ..idx
        },
        full
    );
}

#[test]
fn index_is_small_and_never_in_clear() {
    // 60 s of 25 fps in 1 s GOPs, frames of a few kB: a few bytes per frame
    let mut pts = 0i64;
    let g: Vec<Gop> = (0..60)
        .map(|i| Gop {
            start_unix_ms: 1_700_000_000_000 + i * 1000,
            frames: (0..25)
                .map(|j| {
                    pts += 3600;
                    Frame {
                        pts_90k: pts,
                        key: j == 0,
                        data: vec![0x5a; if j == 0 { 40_000 } else { 3_000 + j * 17 }],
                    }
                })
                .collect(),
        })
        .collect();
    let mut acc = TrailerAcc::default();
    let mut off = 200;
    for (i, x) in g.iter().enumerate() {
        let mut b = Vec::new();
        codec::encode_gop(&mut b, x);
        let len = b.len() as u64;
        acc.add(
            x,
            ChunkAt {
                index: i as u64 + 1,
                offset: off,
                len,
            },
        );
        off += codec::record_len(len);
    }
    let mut plain = Vec::new();
    acc.final_plaintext(0, &mut plain);
    assert!(
        plain.len() <= codec::TRAILER_LEN + 60 * 12 + 1500 * 4,
        "{}",
        plain.len()
    );

    let s = write_seg(Codec::H264, g);
    let b = std::fs::read(&s.path).unwrap();
    // the same index is in the file, encrypted: no run of it (frame sizes) in clear
    let mut written = Vec::new();
    acc_of(&s).final_plaintext(s.finished.trailer.first_unix_ms, &mut written);
    for w in written[codec::TRAILER_LEN..].chunks(12) {
        assert!(w.len() < 12 || !b.windows(12).any(|x| x == w));
    }
    let idx = SegmentReader::open_index(&s.path, s.id, CAM, &s.key).unwrap();
    assert_eq!(idx.frames.len(), 1500);
}

/// The accumulator as the writer had it when it finished `s`.
fn acc_of(s: &Seg) -> TrailerAcc {
    let b = std::fs::read(&s.path).unwrap();
    let spans = chunk_spans(&b);
    let mut acc = TrailerAcc::default();
    for (i, g) in s.gops.iter().enumerate() {
        let (a, e) = spans[i + 1];
        let len = (e - a - CHUNK_HDR_LEN - TAG_LEN) as u64;
        acc.add(
            g,
            ChunkAt {
                index: i as u64 + 1,
                offset: a as u64,
                len,
            },
        );
    }
    acc
}

fn arb_index() -> impl Strategy<Value = (Trailer, Vec<(codec::IndexEntry, Vec<FrameMeta>)>)> {
    let frame = (any::<i64>(), any::<bool>(), 0u64..(1 << 40))
        .prop_map(|(pts_90k, key, size)| FrameMeta { pts_90k, key, size });
    let gop = (
        1u64..1_000_000,
        prop_oneof![Just(0u64), 0u64..100_000],
        0u64..(1 << 20),
        any::<i64>(),
        proptest::collection::vec(frame, 1..30),
    );
    (proptest::collection::vec(gop, 0..20), any::<[i64; 4]>()).prop_map(|(gops, t)| {
        let (mut index, mut end) = (0u64, 0u64);
        let mut out = Vec::new();
        let (mut frames, mut keys) = (0, 0);
        for (di, gap, extra, start, fr) in gops {
            index += di;
            let offset = end + gap;
            let len = fr.iter().map(|f| f.size).sum::<u64>() + extra;
            end = offset + codec::record_len(len);
            frames += fr.len() as u64;
            keys += fr.iter().filter(|f| f.key).count() as u64;
            let e = codec::IndexEntry {
                chunk_index: index,
                offset,
                len,
                start_unix_ms: start,
                frames: fr.len() as u64,
            };
            out.push((e, fr));
        }
        let trailer = Trailer {
            frames,
            key_frames: keys,
            first_pts_90k: t[0],
            last_pts_90k: t[1],
            first_unix_ms: t[2],
            last_unix_ms: t[3],
        };
        (trailer, out)
    })
}

proptest! {
    #[test]
    fn segment_index_round_trips((trailer, entries) in arb_index()) {
        let mut b = codec::IndexBuilder::default();
        for (e, f) in &entries {
            b.push(*e, f.iter().copied());
        }
        let mut plain = Vec::new();
        codec::encode_final(&mut plain, &trailer, &b);
        let d = codec::decode_final(&plain).unwrap();
        prop_assert_eq!(d.trailer, trailer);
        prop_assert_eq!(&d.entries, &entries.iter().map(|(e, _)| *e).collect::<Vec<_>>());
        prop_assert_eq!(&d.frames, &entries.iter().flat_map(|(_, f)| f.clone()).collect::<Vec<_>>());
        prop_assert_eq!(codec::decode_trailer(&plain).unwrap(), trailer);
    }

    #[test]
    fn mutated_segment_index_never_panics(
        (trailer, entries) in arb_index(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = codec::IndexBuilder::default();
        for (e, f) in &entries {
            b.push(*e, f.iter().copied());
        }
        let mut plain = Vec::new();
        codec::encode_final(&mut plain, &trailer, &b);
        let _ = codec::decode_final(&plain[..cut.index(plain.len())]);
        let i = pos.index(plain.len());
        plain[i] = byte;
        let _ = codec::decode_final(&plain);
    }
}

// ---------------------------------------------------------------------------------------
// encoding properties

fn arb_frame() -> impl Strategy<Value = Frame> {
    (
        any::<i64>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(pts_90k, key, data)| Frame { pts_90k, key, data })
}

proptest! {
    #[test]
    fn varint_round_trips(v in any::<u64>()) {
        let mut b = Vec::new();
        codec::put_varint(&mut b, v);
        prop_assert!(b.len() <= 10);
        let mut c = Cur::new(&b);
        prop_assert_eq!(c.varint().unwrap(), v);
        prop_assert_eq!(c.remaining(), 0);
    }

    #[test]
    fn zigzag_round_trips(v in any::<i64>()) {
        prop_assert_eq!(codec::unzigzag(codec::zigzag(v)), v);
    }

    #[test]
    fn index_round_trips(
        start in any::<i64>(),
        metas in proptest::collection::vec((any::<i64>(), any::<bool>(), any::<u64>()), 0..200),
    ) {
        let metas: Vec<FrameMeta> = metas
            .into_iter()
            .map(|(pts_90k, key, size)| FrameMeta { pts_90k, key, size })
            .collect();
        let mut b = Vec::new();
        codec::encode_index(&mut b, start, metas.len(), metas.iter().copied());
        let mut c = Cur::new(&b);
        let (s2, m2) = codec::decode_index(&mut c).unwrap();
        prop_assert_eq!(s2, start);
        prop_assert_eq!(m2, metas);
        prop_assert_eq!(c.remaining(), 0);
    }

    #[test]
    fn gop_round_trips(start in any::<i64>(), frames in proptest::collection::vec(arb_frame(), 0..50)) {
        let gop = Gop { start_unix_ms: start, frames };
        let mut b = Vec::new();
        codec::encode_gop(&mut b, &gop);
        prop_assert_eq!(codec::decode_gop(&b).unwrap(), gop);
    }

    #[test]
    fn params_round_trip(
        h265 in any::<bool>(),
        extra_data in proptest::collection::vec(any::<u8>(), 0..300),
        width in any::<u32>(),
        height in any::<u32>(),
        rfc6381 in ".{0,40}",
        start in any::<i64>(),
    ) {
        let p = CodecParams { codec: if h265 { Codec::H265 } else { Codec::H264 }, extra_data, width, height, rfc6381 };
        let mut b = Vec::new();
        codec::encode_params(&mut b, &p, start);
        prop_assert_eq!(codec::decode_params(&b).unwrap(), (p, start));
    }

    #[test]
    fn decoding_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = codec::decode_gop(&b);
        let _ = codec::decode_params(&b);
        let _ = codec::decode_trailer(&b);
        let _ = codec::decode_final(&b);
        let _ = codec::decode_index(&mut Cur::new(&b));
        let _ = Cur::new(&b).varint();
    }

    #[test]
    fn mutated_gop_plaintext_never_panics(
        start in any::<i64>(),
        frames in proptest::collection::vec(arb_frame(), 1..10),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = Vec::new();
        codec::encode_gop(&mut b, &Gop { start_unix_ms: start, frames });
        let i = pos.index(b.len());
        b[i] = byte;
        let _ = codec::decode_gop(&b);
        let _ = codec::decode_gop(&b[..cut.index(b.len())]);
    }
}

#[test]
fn varint_rejects_bad_encodings() {
    let cases: &[&[u8]] = &[
        &[],
        &[0x80],
        &[0x80, 0x00],                                                 // non-canonical
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], // > 64 bits
        &[0xff; 11],
    ];
    for c in cases {
        assert!(Cur::new(c).varint().is_err(), "{c:?}");
    }
    let mut c = Cur::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert_eq!(c.varint().unwrap(), u64::MAX);
}

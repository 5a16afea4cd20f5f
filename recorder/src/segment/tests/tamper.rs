//! Every change to a segment file is detected: flipped bytes, moved, reordered or
//! dropped chunks, a removed or added FINAL flag, a cut at any offset.

use super::*;

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

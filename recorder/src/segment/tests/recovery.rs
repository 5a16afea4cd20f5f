//! Recovering a cut segment after a crash, a full disk or damage, and reading one
//! still being written.

use super::*;

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

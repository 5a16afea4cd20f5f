//! Writing and reading back: both codecs, bad input refused, nothing in clear.

use super::*;

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

//! The segment index and random access to its chunks.

use super::*;

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

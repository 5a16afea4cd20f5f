use super::*;
use crate::testdata;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const T0: i64 = 1_700_000_000_000;

/// 6 s of 25 fps video, GOP of 25, in two segments of 3 s.
fn source() -> (MemorySource, usize) {
    let (params, frames) = testdata::h264_track(6, 25, 25).expect("ffmpeg");
    let src = MemorySource {
        cameras: vec![testdata::camera("gate", "Gate")],
        ..Default::default()
    };
    let mut gops = testdata::chunks(&frames, T0, None);
    assert_eq!(gops.len(), 6);
    let second = gops.split_off(3);
    src.add_segment("gate", params.clone(), gops);
    src.add_segment("gate", params, second);
    (src, frames.len())
}

fn whole_file(src: &MemorySource, idx: &FrameIndex) -> Vec<u8> {
    let layout = idx.layout().unwrap();
    let mut out = layout.header.clone();
    read_payload(src, idx, 0, &mut |b| {
        out.extend_from_slice(&b);
        true
    })
    .unwrap();
    assert_eq!(out.len() as u64, layout.total_len);
    out
}

#[test]
fn muxed_range_plays_in_ffmpeg() {
    let (src, n) = source();
    assert_eq!(n, 150);
    // whole recording, across both segments
    let idx = build_index(&src, "gate", T0, T0 + 6_000).unwrap().unwrap();
    assert_eq!(idx.samples.len(), 150);
    assert_eq!(idx.segments.len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.mp4");
    std::fs::write(&path, whole_file(&src, &idx)).unwrap();
    assert_eq!(testdata::check_with_ffmpeg(&path).unwrap(), 150);

    // from 2.5 s to 4.2 s: starts at the key frame at 2 s, ends before 4.2 s
    let idx = build_index(&src, "gate", T0 + 2_500, T0 + 4_200)
        .unwrap()
        .unwrap();
    assert_eq!(idx.first_unix_ms, T0 + 2_000);
    assert!(idx.samples[0].key);
    assert_eq!(idx.samples.len(), 25 + 25 + 5);
    let path = dir.path().join("part.mp4");
    let bytes = whole_file(&src, &idx);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(testdata::check_with_ffmpeg(&path).unwrap(), 55);

    // reading from a later chunk gives exactly the tail of the payload
    let layout = idx.layout().unwrap();
    let (chunk, off) = layout.chunk_at(layout.chunk_payload_offsets[1] + 10);
    assert_eq!(chunk, 1);
    let mut tail = Vec::new();
    read_payload(&src, &idx, chunk, &mut |b| {
        tail.extend_from_slice(&b);
        true
    })
    .unwrap();
    assert_eq!(
        &bytes[(layout.header.len() as u64 + off) as usize..],
        &tail[..]
    );
}

fn one_camera(params: TrackParams, segments: Vec<Vec<GopData>>) -> MemorySource {
    let src = MemorySource {
        cameras: vec![testdata::camera("gate", "Gate")],
        ..Default::default()
    };
    for s in segments {
        src.add_segment("gate", params.clone(), s);
    }
    src
}

#[test]
fn continuation_chunks_are_part_of_their_gop() {
    // 6 s, one key frame every 2 s (50 frames), a chunk every 10 frames (400 ms).
    let (params, frames) = testdata::h264_track(6, 25, 50).expect("ffmpeg");
    let mut all = testdata::chunks(&frames, T0, Some(10));
    assert_eq!(all.len(), 15);
    assert!(!all[1].frames[0].key);
    let second = all.split_off(10); // a segment starts on the key frame at 4 s
    assert!(second[0].frames[0].key);
    let src = one_camera(params, vec![all, second]);
    let dir = tempfile::tempdir().unwrap();
    let cases: [(i64, i64, usize, i64); 5] = [
        // from, to, frames served, first frame at
        (0, 6_000, 150, 0),
        // inside the 2nd GOP, in its 3rd chunk: from the key frame at 2 s
        (2_900, 3_500, 38, 2_000),
        // exactly on a continuation chunk's start
        (2_400, 4_000, 50, 2_000),
        // across the segment boundary, ending inside a continuation chunk
        (3_000, 4_500, 50 + 13, 2_000),
        // the last GOP, to the end
        (5_500, 9_000, 50, 4_000),
    ];
    for (i, (from, to, n, first)) in cases.into_iter().enumerate() {
        let idx = build_index(&src, "gate", T0 + from, T0 + to)
            .unwrap()
            .unwrap();
        assert_eq!(idx.samples.len(), n, "case {i}");
        assert_eq!(idx.first_unix_ms, T0 + first, "case {i}");
        assert!(idx.samples[0].key, "case {i}");
        let path = dir.path().join(format!("c{i}.mp4"));
        std::fs::write(&path, whole_file(&src, &idx)).unwrap();
        assert_eq!(
            testdata::check_with_ffmpeg(&path).unwrap(),
            n as u64,
            "case {i}"
        );
    }
}

#[test]
fn h265_muxes_as_hvc1_and_plays() {
    let (params, frames) = testdata::h265_track(4, 25, 25).expect("ffmpeg with libx265");
    assert_eq!(frames.len(), 100);
    assert_eq!(frames.iter().filter(|f| f.key).count(), 4);
    let mut all = testdata::chunks(&frames, T0, Some(10));
    let second = all.split_off(all.len() / 2);
    let src = one_camera(params, vec![all, second]);
    let dir = tempfile::tempdir().unwrap();
    let idx = build_index(&src, "gate", T0, T0 + 4_000).unwrap().unwrap();
    let path = dir.path().join("h265.mp4");
    std::fs::write(&path, whole_file(&src, &idx)).unwrap();
    assert_eq!(testdata::probe_codec(&path).unwrap(), "hevc,hvc1");
    assert_eq!(testdata::check_with_ffmpeg(&path).unwrap(), 100);
    // a part, from the key frame at 1 s
    let idx = build_index(&src, "gate", T0 + 1_500, T0 + 2_500)
        .unwrap()
        .unwrap();
    assert_eq!(idx.samples.len(), 38);
    let path = dir.path().join("h265-part.mp4");
    std::fs::write(&path, whole_file(&src, &idx)).unwrap();
    assert_eq!(testdata::check_with_ffmpeg(&path).unwrap(), 38);
}

#[test]
fn nothing_recorded_and_changed_footage() {
    let (src, _) = source();
    assert!(
        build_index(&src, "gate", T0 - 100_000, T0 - 50_000)
            .unwrap()
            .is_none()
    );
    assert!(
        build_index(&src, "gate", T0 + 60_000, T0 + 70_000)
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        build_index(&src, "nope", T0, T0 + 1000),
        Err(SourceError::UnknownCamera)
    ));
    let idx = build_index(&src, "gate", T0, T0 + 2_000).unwrap().unwrap();
    // replace the footage underneath: sizes no longer match
    src.segments.lock().unwrap().get_mut("gate").unwrap()[0].2[0].frames[1]
        .data
        .push(0);
    let r = read_payload(&src, &idx, 0, &mut |_| true);
    assert!(matches!(r, Err(SourceError::Changed)), "{r:?}");
}

/// Counts what a source is asked to read.
struct Counting {
    inner: MemorySource,
    in_order: Arc<AtomicUsize>,
    by_loc: Arc<AtomicUsize>,
    indices: AtomicUsize,
}

struct CountingStream {
    inner: Box<dyn GopStream>,
    in_order: Arc<AtomicUsize>,
    by_loc: Arc<AtomicUsize>,
}

impl GopStream for CountingStream {
    fn params(&self) -> &TrackParams {
        self.inner.params()
    }
    fn next_gop(&mut self) -> Result<Option<GopData>, SourceError> {
        self.in_order.fetch_add(1, Ordering::Relaxed);
        self.inner.next_gop()
    }
    fn read_at(&mut self, loc: &ChunkLoc) -> Result<ChunkPayload, SourceError> {
        self.by_loc.fetch_add(1, Ordering::Relaxed);
        self.inner.read_at(loc)
    }
}

impl FootageSource for Counting {
    fn cameras(&self) -> Result<Vec<CameraInfo>, SourceError> {
        self.inner.cameras()
    }
    fn recordings(&self, c: &str, f: i64, t: i64) -> Result<Recordings, SourceError> {
        self.inner.recordings(c, f, t)
    }
    fn segments(&self, c: &str, f: i64, t: i64) -> Result<Vec<SegmentKey>, SourceError> {
        self.inner.segments(c, f, t)
    }
    fn open(&self, c: &str, seg: &SegmentKey) -> Result<Box<dyn GopStream>, SourceError> {
        Ok(Box::new(CountingStream {
            inner: self.inner.open(c, seg)?,
            in_order: self.in_order.clone(),
            by_loc: self.by_loc.clone(),
        }))
    }
    fn segment_index(&self, c: &str, seg: &SegmentKey) -> Result<Option<SegIndex>, SourceError> {
        self.indices.fetch_add(1, Ordering::Relaxed);
        self.inner.segment_index(c, seg)
    }
}

fn counting(inner: MemorySource) -> Counting {
    Counting {
        inner,
        in_order: Arc::default(),
        by_loc: Arc::default(),
        indices: AtomicUsize::new(0),
    }
}

fn payload_from(src: &dyn FootageSource, idx: &FrameIndex, first: usize) -> Vec<u8> {
    let mut out = Vec::new();
    read_payload(src, idx, first, &mut |b| {
        out.extend_from_slice(&b);
        true
    })
    .unwrap();
    out
}

#[test]
fn stored_index_reads_each_chunk_once_and_only_those_needed() {
    let (params, frames) = testdata::h264_track(6, 25, 50).expect("ffmpeg");
    let mut all = testdata::chunks(&frames, T0, Some(10));
    let second = all.split_off(10);
    let indexed = counting(one_camera(
        params.clone(),
        vec![all.clone(), second.clone()],
    ));
    let mut scan = one_camera(params, vec![all, second]);
    scan.scan_only = true;
    let scan = counting(scan);
    for (from, to) in [
        (0, 6_000),
        (2_900, 3_500),
        (2_400, 4_000),
        (3_000, 4_500),
        (5_500, 9_000),
        (-500, 100),
    ] {
        let ai = build_index(&indexed, "gate", T0 + from, T0 + to)
            .unwrap()
            .unwrap();
        let bi = build_index(&scan, "gate", T0 + from, T0 + to)
            .unwrap()
            .unwrap();
        // the same index either way, but only the stored one knows the locations
        assert_eq!(ai.samples, bi.samples);
        assert_eq!(ai.first_unix_ms, bi.first_unix_ms);
        assert_eq!(ai.end_unix_ms, bi.end_unix_ms);
        let strip = |g: &[GopLoc]| -> Vec<GopLoc> {
            g.iter().map(|g| GopLoc { loc: None, ..*g }).collect()
        };
        assert_eq!(strip(&ai.gops), strip(&bi.gops));
        assert!(ai.gops.iter().all(|g| g.loc.is_some()));
        assert!(bi.gops.iter().all(|g| g.loc.is_none()));
        assert_eq!(
            indexed.in_order.load(Ordering::Relaxed),
            0,
            "nothing decrypted"
        );
        for first in [0, ai.gops.len() / 2, ai.gops.len() - 1] {
            indexed.by_loc.store(0, Ordering::Relaxed);
            let a = payload_from(&indexed, &ai, first);
            assert_eq!(a, payload_from(&scan, &bi, first));
            // exactly the chunks of the range, each read once
            assert_eq!(
                indexed.by_loc.load(Ordering::Relaxed),
                ai.gops.len() - first
            );
            assert_eq!(indexed.in_order.load(Ordering::Relaxed), 0);
        }
    }
    assert!(scan.by_loc.load(Ordering::Relaxed) == 0);
    assert!(indexed.indices.load(Ordering::Relaxed) > 0);

    // an open segment has no stored index: it is read in order
    let idx = {
        let mut map = indexed.inner.segments.lock().unwrap();
        map.get_mut("gate").unwrap()[1].0.open = true;
        drop(map);
        build_index(&indexed, "gate", T0, T0 + 6_000)
            .unwrap()
            .unwrap()
    };
    assert!(indexed.in_order.load(Ordering::Relaxed) > 0);
    assert!(idx.gops.iter().any(|g| g.segment == 0 && g.loc.is_some()));
    assert!(idx.gops.iter().any(|g| g.segment == 1 && g.loc.is_none()));
    assert_eq!(
        payload_from(&indexed, &idx, 0),
        payload_from(
            &scan,
            &build_index(&scan, "gate", T0, T0 + 6_000).unwrap().unwrap(),
            0
        )
    );
}

#[test]
fn spans_merge() {
    assert_eq!(
        merge_spans(
            [(0, 10_000), (11_000, 20_000), (30_000, 40_000)].into_iter(),
            5_000,
            35_000
        ),
        vec![(5_000, 20_000), (30_000, 35_000)]
    );
}

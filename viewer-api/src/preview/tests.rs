//! The cores against real footage (ffmpeg-encoded), checked with ffprobe.

use std::process::Command;
use std::time::{Duration, Instant};

use super::*;
use crate::mp4::{TrackParams, VideoCodec};
use crate::playback::{MemorySource, build_index};
use crate::testdata::{self, TestFrame};

const T0: i64 = 1_700_000_000_000;

fn camera_source(params: &TrackParams, frames: &[TestFrame], split: Option<usize>) -> MemorySource {
    let src = MemorySource {
        cameras: vec![testdata::camera("gate", "Gate")],
        ..Default::default()
    };
    // Two segments, the second starting on a key frame near the middle.
    let mut chunks = testdata::chunks(frames, T0, split);
    let mid = (1..chunks.len())
        .find(|&i| i >= chunks.len() / 2 && chunks[i].frames[0].key)
        .unwrap_or(chunks.len());
    let second = chunks.split_off(mid);
    src.add_segment("gate", params.clone(), chunks);
    if !second.is_empty() {
        src.add_segment("gate", params.clone(), second);
    }
    src
}

fn h264(secs: u32) -> (TrackParams, Vec<TestFrame>) {
    testdata::h264_track(secs, 25, 25).expect("ffmpeg")
}

fn h265(secs: u32) -> (TrackParams, Vec<TestFrame>) {
    testdata::h265_track(secs, 25, 25).expect("ffmpeg with libx265")
}

/// The whole preview of `idx` from media time `t_ms`.
fn preview_of(src: &MemorySource, idx: &FrameIndex, t_ms: i64) -> (Vec<u8>, PreviewStats) {
    let start = start_at(idx, t_ms).unwrap();
    let mut out = Vec::new();
    let stats = transcode(src, idx, start, &PreviewSettings::default(), &mut |b| {
        out.extend_from_slice(&b);
        true
    })
    .unwrap();
    (out, stats)
}

struct Probed {
    codec: String,
    profile: String,
    width: u32,
    height: u32,
    /// Presentation times of the packets, in 90 kHz ticks.
    pts_90k: Vec<i64>,
    keys: Vec<bool>,
}

fn probe(path: &std::path::Path) -> Probed {
    let run = |args: &[&str]| -> String {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(args)
            .arg(path)
            .output()
            .expect("ffprobe");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "ffprobe: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let s = run(&[
        "-show_entries",
        "stream=codec_name,profile,width,height",
        "-of",
        "default=nw=1",
    ]);
    let field = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_string()
    };
    let packets = run(&["-show_entries", "packet=pts,flags", "-of", "csv=p=0"]);
    let mut pts_90k = Vec::new();
    let mut keys = Vec::new();
    for l in packets.lines() {
        let mut it = l.split(',');
        pts_90k.push(it.next().unwrap().parse::<i64>().unwrap());
        keys.push(it.next().unwrap_or_default().starts_with('K'));
    }
    Probed {
        codec: field("codec_name"),
        profile: field("profile"),
        width: field("width").parse().unwrap(),
        height: field("height").parse().unwrap(),
        pts_90k,
        keys,
    }
}

/// Media times (90 kHz, first frame 0) of the frames of `idx`, as its MP4 has them.
fn media_times(idx: &FrameIndex) -> Vec<i64> {
    frames(idx).map(|f| f.media_90k).collect()
}

/// Frames ffmpeg decodes from a file, every one kept at its own time (no frame rate
/// conversion: a camera's uneven spacing is not an error); any complaint fails.
fn decoded_frames(path: &std::path::Path) -> u64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-fps_mode", "passthrough", "-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg decode: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count() as u64
}

fn write(dir: &tempfile::TempDir, name: &str, b: &[u8]) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, b).unwrap();
    p
}

/// Checks a preview of `idx` started at `t_ms`: H.264 that ffmpeg decodes whole, at
/// most 640×360, one frame per frame served from the start key frame on, each at its
/// media time of the original timeline.
fn check_preview(
    dir: &tempfile::TempDir,
    name: &str,
    src: &MemorySource,
    idx: &FrameIndex,
    t_ms: i64,
    size: (u32, u32),
) -> Probed {
    let (out, stats) = preview_of(src, idx, t_ms);
    let start = start_at(idx, t_ms).unwrap();
    let path = write(dir, name, &out);
    let p = probe(&path);
    assert_eq!(p.codec, "h264", "{name}");
    assert_eq!(p.profile, "Constrained Baseline", "{name}");
    assert_eq!((p.width, p.height), size, "{name}");
    assert!(p.width <= 640 && p.height <= 360);
    let want: Vec<i64> = media_times(idx)[start.sample..].to_vec();
    assert_eq!(p.pts_90k, want, "{name}: the original timeline");
    assert!(p.keys[0], "{name}: starts on a key frame");
    let n = want.len() as u64;
    assert_eq!(decoded_frames(&path), n, "{name}");
    assert_eq!(stats.frames_in, n);
    assert_eq!(stats.frames_out, n);
    assert!(!stats.stopped);
    assert_eq!(stats.bytes, out.len() as u64);
    assert_eq!((stats.width, stats.height), size);
    // The codec string the console is told is the one the stream has.
    assert!(
        MIME.to_lowercase()
            .contains(&format!("\"{}\"", stats.codec.to_lowercase())),
        "{} vs {MIME}",
        stats.codec
    );
    p
}

#[test]
fn h264_preview_keeps_the_original_timeline() {
    let (params, mut frames) = h264(4);
    // Uneven frame spacing (a camera's clock jitters): the preview must follow it.
    for (i, f) in frames.iter_mut().enumerate() {
        f.pts_90k += (i as i64 / 3) * 450 + if i % 7 == 3 { 900 } else { 0 };
    }
    let src = camera_source(&params, &frames, Some(10));
    let idx = build_index(&src, "gate", T0, T0 + 60_000).unwrap().unwrap();
    assert_eq!(idx.samples.len(), 100);
    assert!(idx.segments.len() == 2 && idx.gops.len() > 8);
    let dir = tempfile::tempdir().unwrap();
    let p = check_preview(&dir, "h264.mp4", &src, &idx, 0, (320, 240));
    assert_eq!(p.pts_90k[0], 0);
    // A key frame about every second.
    let keys = p.keys.iter().filter(|k| **k).count();
    assert!((4..=6).contains(&keys), "{keys} key frames");
}

#[test]
fn h265_preview_from_a_start_time() {
    let (params, frames) = h265(4);
    let src = camera_source(&params, &frames, Some(10));
    let idx = build_index(&src, "gate", T0, T0 + 60_000).unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = check_preview(&dir, "h265.mp4", &src, &idx, 0, (320, 240));
    assert_eq!(p.pts_90k.len(), 100);
    // From 2.5 s: the key frame at 2 s, still at 2 s on the timeline.
    let p = check_preview(&dir, "h265-t.mp4", &src, &idx, 2_500, (320, 240));
    assert_eq!(p.pts_90k[0], 2 * 90_000);
    assert_eq!(p.pts_90k.len(), 50);
    // Exactly on a key frame, and just before the end.
    let p = check_preview(&dir, "h265-t1.mp4", &src, &idx, 1_000, (320, 240));
    assert_eq!(p.pts_90k[0], 90_000);
    let p = check_preview(&dir, "h265-end.mp4", &src, &idx, 3_990, (320, 240));
    assert_eq!(p.pts_90k[0], 3 * 90_000);
}

#[test]
fn large_h265_is_scaled_to_640x360() {
    let (params, frames) = testclip::frames(VideoCodec::H265, 1280, 720, 2, 25, 25).unwrap();
    assert_eq!(frames.len(), 50);
    let src = camera_source(&params, &frames, None);
    let idx = build_index(&src, "gate", T0, T0 + 60_000).unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    check_preview(&dir, "720p.mp4", &src, &idx, 0, (640, 360));
    // A 4:3 picture keeps its aspect.
    let (params, frames) = testclip::frames(VideoCodec::H264, 1024, 768, 1, 25, 25).unwrap();
    let src = camera_source(&params, &frames, None);
    let idx = build_index(&src, "gate", T0, T0 + 60_000).unwrap().unwrap();
    check_preview(&dir, "4x3.mp4", &src, &idx, 0, (480, 360));
}

#[test]
fn gaps_in_the_recording_keep_the_viewings_timeline() {
    // Two recordings 20 s apart: the viewing's MP4 plays across the gap (the time map
    // says so); the preview must have exactly the same media times.
    let (params, frames) = h264(2);
    let src = MemorySource {
        cameras: vec![testdata::camera("gate", "Gate")],
        ..Default::default()
    };
    src.add_segment("gate", params.clone(), testdata::chunks(&frames, T0, None));
    let later: Vec<TestFrame> = frames
        .iter()
        .map(|f| TestFrame {
            pts_90k: f.pts_90k + 22 * 90_000,
            ..f.clone()
        })
        .collect();
    src.add_segment("gate", params, testdata::chunks(&later, T0, None));
    let idx = build_index(&src, "gate", T0, T0 + 60_000).unwrap().unwrap();
    assert_eq!(idx.samples.len(), 100);
    assert!(idx.time_map(60).len() == 2, "a gap in the map");
    let dir = tempfile::tempdir().unwrap();
    let p = check_preview(&dir, "gap.mp4", &src, &idx, 0, (320, 240));
    assert_eq!(p.pts_90k[50], 50 * 3_600);
    // And a thumbnail after the gap is the key frame after it.
    let pos = key_frame_before(&idx, T0 + 23_500).unwrap();
    assert_eq!((pos.sample, pos.unix_ms), (75, T0 + 23_000));
    assert_eq!(pos.media_90k, 75 * 3_600);
}

fn probe_jpeg(path: &std::path::Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn thumbnails_of_h264_and_h265_key_frames() {
    let dir = tempfile::tempdir().unwrap();
    for (name, (params, frames)) in [("h264", h264(2)), ("h265", h265(2))] {
        let src = camera_source(&params, &frames, Some(10));
        let idx = build_index(&src, "gate", T0, T0 + 60_000).unwrap().unwrap();
        // 1.7 s in: the key frame at 1 s.
        let pos = key_frame_before(&idx, T0 + 1_700).unwrap();
        assert_eq!((pos.sample, pos.unix_ms, pos.key), (25, T0 + 1_000, true));
        let frame = read_frame(&src, &idx, pos).unwrap();
        assert_eq!(&frame[..], &frames[25].data[..]);
        let jpeg = thumbnail(&params, &frame, THUMB_WIDTH).unwrap();
        assert_eq!(&jpeg[..2], &[0xff, 0xd8], "{name}");
        let path = write(&dir, &format!("{name}.jpg"), &jpeg);
        assert_eq!(probe_jpeg(&path), "mjpeg,160,120", "{name}");
        // ffmpeg decodes it.
        let ok = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        assert!(ok.status.success() && ok.stderr.is_empty(), "{name}");
    }
    let (params, frames) = testclip::frames(VideoCodec::H265, 1280, 720, 1, 25, 25).unwrap();
    let jpeg = thumbnail(&params, &frames[0].data, THUMB_WIDTH).unwrap();
    let path = write(&dir, "720p.jpg", &jpeg);
    assert_eq!(probe_jpeg(&path), "mjpeg,160,90");
}

#[test]
fn a_frame_that_is_not_video_is_an_error_not_a_panic() {
    let (params, _) = h265(1);
    let r = thumbnail(&params, &[0, 0, 0, 4, 1, 2, 3, 4], THUMB_WIDTH);
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn stops_soon_when_the_client_goes_away() {
    let (params, frames) = h264(20);
    let src = camera_source(&params, &frames, None);
    let idx = build_index(&src, "gate", T0, T0 + 60_000).unwrap().unwrap();
    let start = start_at(&idx, 0).unwrap();
    let mut taken = 0;
    let began = Instant::now();
    let stats = transcode(&src, &idx, start, &PreviewSettings::default(), &mut |_| {
        taken += 1;
        taken < 3
    })
    .unwrap();
    assert!(stats.stopped);
    assert_eq!(taken, 3);
    assert!(
        stats.frames_out < 100,
        "{} frames encoded",
        stats.frames_out
    );
    assert!(began.elapsed() < Duration::from_secs(10));
}

#[test]
fn positions_on_the_timeline() {
    // 6 s, a key frame every 2 s, chunks of 10 frames (continuations inside GOPs).
    let (params, frames) = testdata::h264_track(6, 25, 50).expect("ffmpeg");
    let src = camera_source(&params, &frames, Some(10));
    let idx = build_index(&src, "gate", T0, T0 + 60_000).unwrap().unwrap();
    assert_eq!(duration_ms(&idx), 6_000);
    let all: Vec<FramePos> = super::frames(&idx).collect();
    assert_eq!(all.len(), 150);
    for (i, f) in all.iter().enumerate() {
        assert_eq!(f.sample, i);
        assert_eq!(f.media_90k, i as i64 * 3_600);
        assert_eq!(f.unix_ms, T0 + i as i64 * 40);
        assert_eq!(f.gop_first_sample, f.gop * 10);
    }
    for (t, sample) in [
        (0, 0),
        (1_999, 0),
        (2_000, 50),
        (3_500, 50),
        (5_999, 100),
        (9_000, 100),
    ] {
        assert_eq!(start_at(&idx, t).unwrap().sample, sample, "t={t}");
    }
    for (at, sample) in [(T0, Some(0)), (T0 - 1, None), (T0 + 4_300, Some(100))] {
        assert_eq!(
            key_frame_before(&idx, at).map(|p| p.sample),
            sample,
            "at={at}"
        );
    }
    assert_eq!(fit(1920, 1080, 640, 360), Some((640, 360)));
    assert_eq!(fit(320, 240, 640, 360), Some((320, 240)));
    assert_eq!(fit(2592, 1944, 640, 360), Some((480, 360)));
    assert_eq!(fit(1280, 720, 160, u32::MAX / 2), Some((160, 90)));
    assert_eq!(fit(704, 576, 160, u32::MAX / 2), Some((160, 130)));
    assert_eq!(fit(0, 0, 640, 360), None);
}

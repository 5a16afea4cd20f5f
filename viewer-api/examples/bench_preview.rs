//! What an H.264 preview costs: `cargo run --release -p viewer-api --example bench_preview`.
//!
//! Encodes test clips once (ffmpeg, outside the measurement), stores them in an
//! in-memory store as the recorder would, then transcodes each whole clip to the
//! 640×360 H.264 preview exactly as `GET /viewings/{id}/preview.mp4` does, and prints:
//!
//! * CPU: the process's CPU time (user + system, all threads, from `/proc/self/stat`)
//!   spent on the preview ÷ the clip's duration: the share of one core a preview
//!   watched in real time keeps busy;
//! * speed: video seconds made per wall-clock second (above 1: faster than real time);
//! * first fragment: from the call to the first fragment handed to the sink (what a
//!   `<video>` waits for, besides the network), from the start and from `?t=` in the
//!   middle;
//! * the output bit rate;
//!
//! and the time one scrub thumbnail takes. The first run in the process (GStreamer
//! loading its plugins) is a warm-up and not counted.

use std::time::{Duration, Instant};

use viewer_api::mp4::{TrackParams, VideoCodec};
use viewer_api::playback::{CameraInfo, FrameIndex, MemorySource, build_index};
use viewer_api::preview::{self, PreviewSettings, testclip};
use viewer_api::testdata::{self, TestFrame};

const T0: i64 = 1_700_000_000_000;
const FPS: u32 = 25;

/// CPU time of this process so far (all threads, user + system).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // After the command name (in parentheses, may hold spaces): field 3 is the state;
    // utime and stime are fields 14 and 15, in USER_HZ (100 per second on Linux).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

struct Clip {
    name: String,
    src: MemorySource,
    index: FrameIndex,
    secs: f64,
}

fn clip(name: &str, params: TrackParams, frames: &[TestFrame]) -> Clip {
    let src = MemorySource {
        cameras: vec![CameraInfo {
            id: "cam".into(),
            name: "cam".into(),
            state: "recording".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    // Segments of 10 s, chunks of 500 ms inside GOPs, as the recorder writes them.
    let mut chunks = testdata::chunks(frames, T0, Some(FPS as usize / 2));
    while !chunks.is_empty() {
        let mut n = (10 * FPS as usize / (FPS as usize / 2)).min(chunks.len());
        while n < chunks.len() && !chunks[n].frames[0].key {
            n += 1;
        }
        let rest = chunks.split_off(n);
        src.add_segment("cam", params.clone(), chunks);
        chunks = rest;
    }
    let index = build_index(&src, "cam", T0, T0 + 3_600_000)
        .expect("index")
        .expect("footage");
    let secs = preview::duration_ms(&index) as f64 / 1000.0;
    Clip {
        name: name.to_string(),
        src,
        index,
        secs,
    }
}

struct Row {
    cpu_share: f64,
    speed: f64,
    first_ms: f64,
    first_mid_ms: f64,
    kbps: f64,
    size: (u32, u32),
    frames: u64,
}

fn run(c: &Clip, settings: &PreviewSettings) -> Row {
    let start = preview::start_at(&c.index, 0).unwrap();
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    let stats =
        preview::transcode(&c.src, &c.index, start, settings, &mut |_| true).expect("transcode");
    let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
    assert_eq!(stats.frames_out as usize, c.index.samples.len());
    let mid = preview::start_at(&c.index, (c.secs * 500.0) as i64).unwrap();
    let mut first_mid = None;
    let began = Instant::now();
    let mut fragments = 0;
    preview::transcode(&c.src, &c.index, mid, settings, &mut |_| {
        fragments += 1;
        // the initialization segment, then the first fragment
        if fragments == 2 {
            first_mid = Some(began.elapsed());
        }
        fragments < 2
    })
    .expect("transcode from the middle");
    Row {
        cpu_share: cpu.as_secs_f64() / c.secs,
        speed: c.secs / wall.as_secs_f64(),
        first_ms: stats.first_fragment.unwrap_or_default().as_secs_f64() * 1000.0,
        first_mid_ms: first_mid.unwrap_or_default().as_secs_f64() * 1000.0,
        kbps: stats.bytes as f64 * 8.0 / c.secs / 1000.0,
        size: (stats.width, stats.height),
        frames: stats.frames_out,
    }
}

fn main() {
    eprintln!("encoding test clips with ffmpeg (not measured)...");
    let made = |codec, w, h, secs| {
        let (p, f) = testclip::frames(codec, w, h, secs, FPS, 2 * FPS).expect("ffmpeg");
        (p, f)
    };
    let (p, f) = made(VideoCodec::H265, 1280, 720, 20);
    let h265_720 = clip("H.265 1280×720", p, &f);
    let (p, f) = made(VideoCodec::H264, 1280, 720, 20);
    let h264_720 = clip("H.264 1280×720", p, &f);
    let (p, f) = made(VideoCodec::H265, 1920, 1080, 10);
    let h265_1080 = clip("H.265 1920×1080", p, &f);

    // Warm-up: GStreamer loads its plugins once per process.
    let _ = run(&h264_720, &PreviewSettings::default());

    let default = PreviewSettings::default();
    let one_dec = PreviewSettings {
        decode_threads: 1,
        ..Default::default()
    };
    let cases: [(&Clip, &PreviewSettings); 5] = [
        (&h265_720, &default),
        (&h265_720, &one_dec),
        (&h264_720, &default),
        (&h265_1080, &default),
        (&h265_1080, &one_dec),
    ];
    println!(
        "preview: H.264 {} level {}, at most {}×{}, {} kbit/s; {} fps input, GOP 2 s; {} cores",
        preview::PROFILE,
        preview::LEVEL,
        default.max_width,
        default.max_height,
        default.bitrate_kbps,
        FPS,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "| input | video s | threads dec+enc | out | CPU per video s (share of one core) | speed (× real time) | first fragment ms | from the middle ms | kbit/s |"
    );
    println!("|---|---:|---|---|---:|---:|---:|---:|---:|");
    for (c, s) in cases {
        let threads = format!("{}+{}", s.decode_threads, s.encode_threads);
        let r = run(c, s);
        assert_eq!(r.frames as usize, c.index.samples.len());
        println!(
            "| {} | {:.0} | {} | {}×{} | {:.2} | {:.1} | {:.0} | {:.0} | {:.0} |",
            c.name,
            c.secs,
            threads,
            r.size.0,
            r.size.1,
            r.cpu_share,
            r.speed,
            r.first_ms,
            r.first_mid_ms,
            r.kbps
        );
    }

    // Scrub thumbnails: a key frame of the 720p H.265 clip, read and made into a JPEG.
    let keys: Vec<_> = preview::frames(&h265_720.index).filter(|f| f.key).collect();
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    let mut bytes = 0;
    for k in &keys {
        let frame = preview::read_frame(&h265_720.src, &h265_720.index, *k).unwrap();
        bytes += preview::thumbnail(&h265_720.index.params, &frame, preview::THUMB_WIDTH)
            .unwrap()
            .len();
    }
    let n = keys.len() as f64;
    println!();
    println!(
        "thumbnail ({} wide) of an H.265 1280×720 key frame: {:.1} ms each, {:.1} ms CPU, {:.1} KB (mean of {})",
        preview::THUMB_WIDTH,
        wall0.elapsed().as_secs_f64() * 1000.0 / n,
        (cpu_time() - cpu0).as_secs_f64() * 1000.0 / n,
        bytes as f64 / n / 1024.0,
        keys.len()
    );
}

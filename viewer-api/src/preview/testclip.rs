//! Test footage of any size (tests and `bench_preview` only; never used by the
//! service). [`crate::testdata`] makes 320×240 clips; previews also need bigger ones
//! to scale. ffmpeg encodes a synthetic clip (Annex B), and GStreamer's own parser
//! turns it into what the recorder stores: one access unit per frame as
//! length-prefixed NAL units, with the avcC / hvcC record from the caps.

use std::process::{Command, Stdio};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::mp4::{TrackParams, VideoCodec};
use crate::testdata::TestFrame;

/// `secs` seconds of `width × height` video at `fps`, a key frame every `gop` frames,
/// no B-frames.
pub fn frames(
    codec: VideoCodec,
    width: u32,
    height: u32,
    secs: u32,
    fps: u32,
    gop: u32,
) -> Result<(TrackParams, Vec<TestFrame>), String> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={width}x{height}:rate={fps}"))
        .args(["-t", &secs.to_string(), "-pix_fmt", "yuv420p"]);
    match codec {
        VideoCodec::H264 => cmd
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-profile:v",
                "main",
            ])
            .args(["-bf", "0", "-g", &gop.to_string(), "-keyint_min"])
            .args([&gop.to_string(), "-sc_threshold", "0", "-f", "h264", "-"]),
        VideoCodec::H265 => cmd
            .args(["-c:v", "libx265", "-preset", "veryfast", "-x265-params"])
            .arg(format!(
                "open-gop=0:bframes=0:keyint={gop}:min-keyint={gop}:scenecut=0:log-level=error"
            ))
            .args(["-f", "hevc", "-"]),
    };
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ffmpeg failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    annexb_to_stored(codec, &out.stdout, fps, width, height)
}

/// An Annex B stream cut into stored frames by h264parse / h265parse.
fn annexb_to_stored(
    codec: VideoCodec,
    stream: &[u8],
    fps: u32,
    width: u32,
    height: u32,
) -> Result<(TrackParams, Vec<TestFrame>), String> {
    gst::init().map_err(|e| e.to_string())?;
    let (media, format, parser) = match codec {
        VideoCodec::H264 => ("video/x-h264", "avc", "h264parse"),
        VideoCodec::H265 => ("video/x-h265", "hvc1", "h265parse"),
    };
    let src = gst_app::AppSrc::builder()
        .caps(
            &gst::Caps::builder(media)
                .field("stream-format", "byte-stream")
                .build(),
        )
        .format(gst::Format::Bytes)
        .build();
    let parse = gst::ElementFactory::make(parser)
        .build()
        .map_err(|e| e.to_string())?;
    let filter = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder(media)
                .field("stream-format", format)
                .field("alignment", "au")
                .build(),
        )
        .build()
        .map_err(|e| e.to_string())?;
    let sink = gst_app::AppSink::builder().sync(false).build();
    let pipe = gst::Pipeline::new();
    let chain = [src.upcast_ref(), &parse, &filter, sink.upcast_ref()];
    pipe.add_many(chain).map_err(|e| e.to_string())?;
    gst::Element::link_many(chain).map_err(|e| e.to_string())?;
    pipe.set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    // Pushed from another thread: the appsink must be drained meanwhile.
    let data = stream.to_vec();
    let pusher = std::thread::spawn(move || {
        for c in data.chunks(64 * 1024) {
            if src
                .push_buffer(gst::Buffer::from_slice(c.to_vec()))
                .is_err()
            {
                break;
            }
        }
        let _ = src.end_of_stream();
    });
    let dur = 90_000 / i64::from(fps);
    let mut frames = Vec::new();
    let mut config = None;
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
        if config.is_none()
            && let Some(st) = sample
                .caps()
                .and_then(|c| c.structure(0).map(|s| s.to_owned()))
            && let Ok(b) = st.get::<gst::Buffer>("codec_data")
        {
            config = b.map_readable().ok().map(|m| m.to_vec());
        }
        let Some(buf) = sample.buffer() else { continue };
        let map = buf.map_readable().map_err(|e| e.to_string())?;
        frames.push(TestFrame {
            pts_90k: frames.len() as i64 * dur,
            key: !buf.flags().contains(gst::BufferFlags::DELTA_UNIT),
            data: map.to_vec(),
        });
    }
    let _ = pusher.join();
    let _ = pipe.set_state(gst::State::Null);
    let extra_data = config.ok_or("the parser gave no codec_data")?;
    if frames.first().is_none_or(|f| !f.key) {
        return Err("the clip does not start with a key frame".into());
    }
    Ok((
        TrackParams {
            codec,
            extra_data,
            width,
            height,
        },
        frames,
    ))
}

//! What the transcoder and the thumbnailer share: the decoding half of a pipeline
//! (`appsrc → h264parse | h265parse → avdec_h264 | avdec_h265 → videoscale →
//! videoconvert → capsfilter`), the output size, and reading errors off the bus.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::mp4::{TrackParams, VideoCodec};

use super::PreviewError;

pub(crate) fn gst_err(e: impl std::fmt::Display) -> PreviewError {
    PreviewError::Gst(e.to_string())
}

pub(crate) fn make(factory: &str) -> Result<gst::Element, PreviewError> {
    gst::ElementFactory::make(factory).build().map_err(|_| {
        PreviewError::Gst(format!(
            "GStreamer element {factory} missing (see scripts/install-deps.sh)"
        ))
    })
}

/// The largest size within `max_w × max_h` with the aspect of `w × h`, never larger
/// than `w × h`, both even (4:2:0 video needs it). `None` when the size is unknown.
pub fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> Option<(u32, u32)> {
    if w == 0 || h == 0 || max_w < 2 || max_h < 2 {
        return None;
    }
    let scale = (f64::from(max_w) / f64::from(w))
        .min(f64::from(max_h) / f64::from(h))
        .min(1.0);
    let even = |v: f64| (((v / 2.0).round() as u32) * 2).max(2);
    Some((
        even(f64::from(w) * scale).min(max_w & !1),
        even(f64::from(h) * scale).min(max_h & !1),
    ))
}

/// The frame rate of frames spaced `duration_90k` apart, as a fraction for caps.
pub(crate) fn framerate(duration_90k: u32) -> gst::Fraction {
    let d = duration_90k.clamp(1, 90_000 * 5) as i32;
    gst::Fraction::new(90_000, d)
}

/// The decoding half, added to `pipeline`: returns the appsrc (fed with samples as
/// the MP4 holds them: length-prefixed NAL units, one access unit per buffer) and the
/// last element, whose output is raw video of `out_w × out_h`, square pixels.
pub(crate) fn decoder(
    pipeline: &gst::Pipeline,
    params: &TrackParams,
    fps: Option<gst::Fraction>,
    out_w: u32,
    out_h: u32,
    decode_threads: u32,
) -> Result<(gst_app::AppSrc, gst::Element), PreviewError> {
    decoder_for(pipeline, params, fps, out_w, out_h, decode_threads, false)
}

/// [`decoder`], and with `low_latency` a decoder that gives each picture out as soon as
/// its frame is in: slice threads only (frame threads hold one frame back per extra
/// thread until more frames come, which in a live view is the next stored chunk).
pub(crate) fn decoder_for(
    pipeline: &gst::Pipeline,
    params: &TrackParams,
    fps: Option<gst::Fraction>,
    out_w: u32,
    out_h: u32,
    decode_threads: u32,
    low_latency: bool,
) -> Result<(gst_app::AppSrc, gst::Element), PreviewError> {
    let (media, format, parser, dec) = match params.codec {
        VideoCodec::H264 => ("video/x-h264", "avc", "h264parse", "avdec_h264"),
        VideoCodec::H265 => ("video/x-h265", "hvc1", "h265parse", "avdec_h265"),
    };
    let mut caps = gst::Caps::builder(media)
        .field("stream-format", format)
        .field("alignment", "au")
        .field(
            "codec_data",
            gst::Buffer::from_slice(params.extra_data.clone()),
        );
    if params.width > 0 && params.height > 0 {
        caps = caps
            .field("width", params.width as i32)
            .field("height", params.height as i32);
    }
    if let Some(f) = fps {
        caps = caps.field("framerate", f);
    }
    let src = gst_app::AppSrc::builder()
        .caps(&caps.build())
        .format(gst::Format::Time)
        .is_live(false)
        .block(true)
        // Bounded: the reader waits when this much is queued.
        .max_bytes(4 << 20)
        .build();
    let parse = make(parser)?;
    let decode = make(dec)?;
    // 0 would be one thread per core: bounded instead.
    decode.set_property("max-threads", decode_threads.max(1) as i32);
    if low_latency {
        decode.set_property_from_str("thread-type", "slice");
    }
    let scale = make("videoscale")?;
    // Letterbox rather than distort should the stored size disagree with the stream.
    scale.set_property("add-borders", true);
    let convert = make("videoconvert")?;
    let filter = make("capsfilter")?;
    filter.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", out_w as i32)
            .field("height", out_h as i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    );
    let chain = [src.upcast_ref(), &parse, &decode, &scale, &convert, &filter];
    pipeline.add_many(chain).map_err(gst_err)?;
    gst::Element::link_many(chain).map_err(gst_err)?;
    Ok((src, filter))
}

/// The first error posted on the pipeline's bus, if any, as text for the server log
/// (GStreamer's messages name elements and states, never footage).
pub(crate) fn bus_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = msg.view() {
            return Some(format!(
                "{} ({})",
                e.error(),
                e.debug().map(|d| d.to_string()).unwrap_or_default()
            ));
        }
    }
    None
}

/// Stops a pipeline when dropped (which also unblocks a thread pushing into its
/// appsrc), whatever way the work ended.
pub(crate) struct Stopper<'a>(pub &'a gst::Pipeline);

impl Drop for Stopper<'_> {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

/// The timestamp, in nanoseconds, of media time `t_90k`.
pub(crate) fn ns_of_90k(t_90k: i64) -> u64 {
    (t_90k.max(0) as u64).saturating_mul(100_000) / 9
}

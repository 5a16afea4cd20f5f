//! Scrub thumbnails: one key frame, decoded, scaled to a given width and encoded as a
//! JPEG in memory (`appsrc → parse → avdec → videoscale → videoconvert → jpegenc →
//! appsink`). Nothing is written to disk.

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::mp4::TrackParams;
use crate::playback::{self, FootageSource, FrameIndex, SourceError};

use super::pipeline::{self, Stopper, gst_err, make};
use super::{FramePos, PreviewError};

/// The width of scrub thumbnails.
pub const THUMB_WIDTH: u32 = 160;
/// JPEG quality (jpegenc's scale, 0..=100).
const QUALITY: i32 = 80;

/// The bytes of the frame at `pos` of `index` (one stored sample: length-prefixed NAL
/// units), read from the store without reading the rest of its chunk's followers.
pub fn read_frame(
    src: &dyn FootageSource,
    index: &FrameIndex,
    pos: FramePos,
) -> Result<Bytes, PreviewError> {
    let mut found: Option<Bytes> = None;
    playback::read_payload(src, index, pos.gop, &mut |buf| {
        let off: usize = index.samples[pos.gop_first_sample..pos.sample]
            .iter()
            .map(|s| s.size as usize)
            .sum();
        let len = index.samples[pos.sample].size as usize;
        if off + len <= buf.len() {
            found = Some(buf.slice(off..off + len));
        }
        false
    })?;
    found.ok_or(PreviewError::Source(SourceError::Changed))
}

/// One key frame (`frame`: a sample as stored, of a stream described by `params`) as a
/// JPEG `width` pixels wide, with the picture's aspect. Blocking.
pub fn thumbnail(params: &TrackParams, frame: &[u8], width: u32) -> Result<Vec<u8>, PreviewError> {
    super::init()?;
    let width = width.max(2);
    // Any height: fit() limits by width only.
    let (w, h) = pipeline::fit(params.width, params.height, width, u32::MAX / 2)
        .unwrap_or((width & !1, ((width * 9 / 16) & !1).max(2)));
    let pipe = gst::Pipeline::new();
    let (appsrc, decoded) = pipeline::decoder(&pipe, params, None, w, h, 1)?;
    let jpeg = make("jpegenc")?;
    jpeg.set_property("quality", QUALITY);
    let appsink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(1)
        .build();
    appsink.set_property("async", false);
    pipe.add_many([&jpeg, appsink.upcast_ref()])
        .map_err(gst_err)?;
    gst::Element::link_many([&decoded, &jpeg, appsink.upcast_ref()]).map_err(gst_err)?;
    let _stop = Stopper(&pipe);
    pipe.set_state(gst::State::Playing)
        .map_err(|_| PreviewError::Gst("the thumbnail pipeline did not start".into()))?;
    let (changed, state, _) = pipe.state(gst::ClockTime::from_seconds(10));
    if changed.is_err() || state != gst::State::Playing {
        return Err(PreviewError::Gst(format!(
            "the thumbnail pipeline did not start (state {state:?})"
        )));
    }
    let mut b = gst::Buffer::from_slice(frame.to_vec());
    {
        let b = b.get_mut().expect("a new buffer is writable");
        b.set_pts(gst::ClockTime::ZERO);
        b.set_dts(gst::ClockTime::ZERO);
        b.set_duration(gst::ClockTime::from_mseconds(40));
    }
    appsrc
        .push_buffer(b)
        .map_err(|e| pipeline::bus_error(&pipe).map_or_else(|| gst_err(e), PreviewError::Gst))?;
    let _ = appsrc.end_of_stream();
    let sample = appsink.try_pull_sample(gst::ClockTime::from_seconds(10));
    let Some(sample) = sample else {
        return Err(pipeline::bus_error(&pipe)
            .map(PreviewError::Gst)
            .unwrap_or(PreviewError::NoPicture));
    };
    let buf = sample
        .buffer()
        .ok_or_else(|| PreviewError::Gst("jpegenc gave an empty sample".into()))?;
    let map = buf.map_readable().map_err(gst_err)?;
    Ok(map.to_vec())
}

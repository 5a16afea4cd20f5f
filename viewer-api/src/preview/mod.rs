//! H.264 previews and scrub thumbnails decoded by GStreamer, for browsers that cannot
//! decode a camera's codec (Debian's Chromium and H.265).
//!
//! The cores: [`transcode`] (a [`FrameIndex`]'s frames from a key frame on, as a
//! fragmented H.264 MP4 on the original media timeline, streamed while it is made)
//! and [`thumbnail`] (one key frame as a small JPEG), with the positions they start
//! from ([`start_at`], [`key_frame_before`]).

mod pipeline;
#[doc(hidden)]
pub mod testclip;
mod thumb;
mod transcode;

use axum::Router;

use crate::api::Shared;
use crate::playback::{FrameIndex, SourceError};

pub use pipeline::fit;
pub use thumb::{THUMB_WIDTH, read_frame, thumbnail};
pub use transcode::{LEVEL, MIME, PROFILE, PreviewSettings, PreviewStats, transcode};

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("footage: {0}")]
    Source(#[from] SourceError),
    #[error("GStreamer: {0}")]
    Gst(String),
    #[error("MP4: {0}")]
    Mux(#[from] crate::mp4::MuxError),
    #[error("the decoder gave no picture")]
    NoPicture,
}

/// Initialises GStreamer (once per process; later calls are cheap).
pub fn init() -> Result<(), PreviewError> {
    gstreamer::init().map_err(pipeline::gst_err)
}

/// A frame of a [`FrameIndex`], and where it is: its chunk (`gop`, an index into
/// `index.gops`, for [`crate::playback::read_payload`]), its sample, its media time on
/// the viewing's MP4 timeline (90 kHz, first frame at 0) and its wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePos {
    pub gop: usize,
    /// The first sample of the chunk, and its media time.
    pub gop_first_sample: usize,
    pub gop_media_90k: i64,
    pub sample: usize,
    pub media_90k: i64,
    pub unix_ms: i64,
    pub key: bool,
}

/// Every frame of `index`, in order.
pub fn frames(index: &FrameIndex) -> Frames<'_> {
    Frames {
        index,
        gop: 0,
        gop_first: 0,
        gop_media: 0,
        sample: 0,
        media: 0,
    }
}

/// The iterator of [`frames`].
pub struct Frames<'a> {
    index: &'a FrameIndex,
    gop: usize,
    gop_first: usize,
    gop_media: i64,
    sample: usize,
    media: i64,
}

impl Iterator for Frames<'_> {
    type Item = FramePos;

    fn next(&mut self) -> Option<FramePos> {
        let ix = self.index;
        loop {
            let g = ix.gops.get(self.gop)?;
            if self.sample < (self.gop_first + g.frames).min(ix.samples.len()) {
                break;
            }
            if self.sample >= ix.samples.len() {
                return None;
            }
            self.gop += 1;
            self.gop_first = self.sample;
            self.gop_media = self.media;
        }
        let s = &ix.samples[self.sample];
        let p = FramePos {
            gop: self.gop,
            gop_first_sample: self.gop_first,
            gop_media_90k: self.gop_media,
            sample: self.sample,
            media_90k: self.media,
            unix_ms: ix
                .gop_unix_ms
                .get(self.gop)
                .copied()
                .unwrap_or(ix.first_unix_ms)
                + (self.media - self.gop_media) / 90,
            key: s.key,
        };
        self.sample += 1;
        self.media += i64::from(s.duration_90k);
        Some(p)
    }
}

/// Media duration of `index` in ms (the viewing's MP4's length).
pub fn duration_ms(index: &FrameIndex) -> i64 {
    index
        .samples
        .iter()
        .map(|s| i64::from(s.duration_90k))
        .sum::<i64>()
        / 90
}

/// The key frame at or before media time `media_ms` (the first frame when none is).
pub fn start_at(index: &FrameIndex, media_ms: i64) -> Option<FramePos> {
    let t = media_ms.saturating_mul(90);
    let mut found = None;
    for f in frames(index) {
        if found.is_some() && f.media_90k > t {
            break;
        }
        if f.key || found.is_none() {
            found = Some(f);
        }
    }
    found
}

/// The last key frame whose wall-clock time is at or before `at_unix_ms`.
pub fn key_frame_before(index: &FrameIndex, at_unix_ms: i64) -> Option<FramePos> {
    frames(index)
        .filter(|f| f.key && f.unix_ms <= at_unix_ms)
        .last()
}

/// The usual frame duration of `index` (the median of its first frames).
pub(crate) fn typical_duration_90k(index: &FrameIndex) -> u32 {
    let mut d: Vec<u32> = index
        .samples
        .iter()
        .take(251)
        .map(|s| s.duration_90k)
        .collect();
    d.sort_unstable();
    d.get(d.len() / 2).copied().unwrap_or(3_600).max(1)
}

pub fn router(state: Shared) -> Router {
    Router::new().with_state(state)
}

#[cfg(test)]
mod tests;

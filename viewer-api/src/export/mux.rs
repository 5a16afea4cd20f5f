//! MP4 muxing of the original frames with GStreamer, without re-encoding:
//! `appsrc (avc/hvc1, au) → h264parse | h265parse → mp4mux → appsink`.
//!
//! mp4mux writes `mdat` first and the `moov` at the end, then goes back to fix the
//! `mdat` size; it does that only when downstream says it can seek. The appsink's pad
//! answers the seeking query, and the byte-segment events mp4mux sends before a
//! rewrite move the position of the seekable writer the output goes to (the sealed
//! spool file), so no plaintext ever touches the disk.

use std::io::{Seek, SeekFrom, Write};
use std::sync::Once;
use std::thread::JoinHandle;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use recorder::segment::{Codec, CodecParams};

#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("GStreamer: {0}")]
    Gst(String),
    #[error("writing the MP4: {0}")]
    Io(#[from] std::io::Error),
}

fn gst_err(e: impl std::fmt::Display) -> MuxError {
    MuxError::Gst(e.to_string())
}

static INIT: Once = Once::new();

/// Initialises GStreamer once per process.
pub fn init() -> Result<(), MuxError> {
    let mut r = Ok(());
    INIT.call_once(|| r = gst::init().map_err(gst_err));
    r
}

/// One frame on the output timeline.
pub struct MuxFrame {
    pub t_ns: u64,
    pub key: bool,
    pub data: Vec<u8>,
}

/// What came out.
#[derive(Debug, Clone, Copy)]
pub struct MuxStats {
    pub frames: u64,
    pub bytes: u64,
    pub duration_ns: u64,
}

/// One MP4 being written.
pub struct Muxer<W: Write + Seek + Send + 'static> {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink_thread: Option<JoinHandle<Result<W, MuxError>>>,
    held: Option<MuxFrame>,
    last_dur_ns: u64,
    frames: u64,
    last_t_ns: u64,
}

impl<W: Write + Seek + Send + 'static> Muxer<W> {
    /// Starts a pipeline writing to `out`. `creation_unix_ms`: the wall-clock time of
    /// the first frame, written as the file's date/creation time.
    pub fn start(
        params: &CodecParams,
        creation_unix_ms: i64,
        title: &str,
        mut out: W,
    ) -> Result<Muxer<W>, MuxError> {
        init()?;
        let (media, format, parser) = match params.codec {
            Codec::H264 => ("video/x-h264", "avc", "h264parse"),
            Codec::H265 => ("video/x-h265", "hvc1", "h265parse"),
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
        let src = gst_app::AppSrc::builder()
            .caps(&caps.build())
            .format(gst::Format::Time)
            .is_live(false)
            .block(true)
            .max_bytes(16 << 20)
            .build();
        let parse = gst::ElementFactory::make(parser)
            .build()
            .map_err(|_| MuxError::Gst(format!("element {parser} missing")))?;
        let mux = gst::ElementFactory::make("mp4mux")
            .property("faststart", false)
            .build()
            .map_err(|_| MuxError::Gst("element mp4mux missing".into()))?;
        let sink = gst_app::AppSink::builder()
            .sync(false)
            .max_buffers(64)
            .build();
        // No preroll: the pipeline reaches PLAYING before the first frame is pushed, so
        // pushing never races the asynchronous state change.
        sink.set_property("async", false);
        let pipeline = gst::Pipeline::new();
        pipeline
            .add_many([src.upcast_ref(), &parse, &mux, sink.upcast_ref()])
            .map_err(gst_err)?;
        gst::Element::link_many([src.upcast_ref(), &parse, &mux, sink.upcast_ref()])
            .map_err(gst_err)?;

        // Creation time and title as tags (mp4mux writes them into moov/udta and mvhd).
        if let Some(setter) = mux.dynamic_cast_ref::<gst::TagSetter>() {
            if let Some(t) = chrono::DateTime::from_timestamp_millis(creation_unix_ms) {
                use chrono::{Datelike, Timelike};
                if let Ok(dt) = gst::DateTime::new(
                    0.0f32,
                    t.year(),
                    t.month() as i32,
                    t.day() as i32,
                    t.hour() as i32,
                    t.minute() as i32,
                    f64::from(t.second()) + f64::from(t.timestamp_subsec_millis()) / 1000.0,
                ) {
                    setter.add_tag::<gst::tags::DateTime>(&dt, gst::TagMergeMode::Replace);
                }
            }
            setter.add_tag::<gst::tags::Title>(&title, gst::TagMergeMode::Replace);
            setter.add_tag::<gst::tags::Encoder>(&"Ringfence export", gst::TagMergeMode::Replace);
        }

        // Tell mp4mux that its output can seek (it goes to a seekable writer).
        let pad = sink
            .static_pad("sink")
            .ok_or_else(|| gst_err("no sink pad"))?;
        pad.add_probe(gst::PadProbeType::QUERY_DOWNSTREAM, |_, info| {
            if let Some(q) = info.query_mut()
                && let gst::QueryViewMut::Seeking(s) = q.view_mut()
                && s.format() == gst::Format::Bytes
            {
                s.set(true, gst::format::Bytes::ZERO, gst::format::Bytes::NONE);
                return gst::PadProbeReturn::Handled;
            }
            gst::PadProbeReturn::Ok
        });

        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| MuxError::Gst("cannot start the muxing pipeline".into()))?;
        let (changed, state, _) = pipeline.state(gst::ClockTime::from_seconds(10));
        if changed.is_err() || state != gst::State::Playing {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(MuxError::Gst(format!(
                "the muxing pipeline did not start (state {state:?})"
            )));
        }
        // Started only now: appsink answers a pull made before it is PLAYING with
        // "nothing more", which would end the writer before the first byte.
        let sink_thread = std::thread::Builder::new()
            .name("export-mp4-sink".into())
            .spawn(move || -> Result<W, MuxError> {
                let mut pos = 0u64;
                // Ends (None) at EOS, or when the pipeline is stopped after an error.
                while let Some(obj) = sink.try_pull_object(gst::ClockTime::NONE) {
                    if let Ok(sample) = obj.clone().downcast::<gst::Sample>() {
                        let Some(buf) = sample.buffer() else { continue };
                        let map = buf.map_readable().map_err(gst_err)?;
                        out.seek(SeekFrom::Start(pos))?;
                        out.write_all(&map)?;
                        pos += map.len() as u64;
                    } else if let Ok(ev) = obj.downcast::<gst::Event>()
                        && let gst::EventView::Segment(s) = ev.view()
                        && let Some(seg) = s.segment().downcast_ref::<gst::format::Bytes>()
                    {
                        pos = seg.start().map(|b| *b).unwrap_or(0);
                    }
                }
                if sink.is_eos() {
                    out.flush()?;
                    Ok(out)
                } else {
                    Err(MuxError::Gst("the muxer stopped before the end".into()))
                }
            })?;

        Ok(Muxer {
            pipeline,
            src,
            sink_thread: Some(sink_thread),
            held: None,
            last_dur_ns: 40_000_000,
            frames: 0,
            last_t_ns: 0,
        })
    }

    fn bus_error(&self) -> Option<MuxError> {
        let bus = self.pipeline.bus()?;
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Some(MuxError::Gst(format!(
                    "{} ({})",
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                )));
            }
        }
        None
    }

    fn push_now(&mut self, f: MuxFrame, dur_ns: u64) -> Result<(), MuxError> {
        let key = f.key;
        let mut buf = gst::Buffer::from_mut_slice(f.data);
        {
            let b = buf.get_mut().expect("new buffer is writable");
            let t = gst::ClockTime::from_nseconds(f.t_ns);
            b.set_pts(t);
            b.set_dts(t);
            b.set_duration(gst::ClockTime::from_nseconds(dur_ns));
            if !key {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        self.frames += 1;
        self.last_t_ns = f.t_ns + dur_ns;
        if self.src.push_buffer(buf).is_err() {
            return Err(self
                .bus_error()
                .unwrap_or_else(|| MuxError::Gst("the muxer refused a frame".into())));
        }
        Ok(())
    }

    /// Adds a frame; timestamps must increase.
    pub fn push(&mut self, f: MuxFrame) -> Result<(), MuxError> {
        if let Some(prev) = self.held.take() {
            let dur = f.t_ns.saturating_sub(prev.t_ns).max(1);
            self.last_dur_ns = dur.min(1_000_000_000);
            self.push_now(prev, dur)?;
        }
        self.held = Some(f);
        Ok(())
    }

    /// Ends the stream, waits for the file to be complete, and returns the writer.
    pub fn finish(mut self) -> Result<(W, MuxStats), MuxError> {
        if let Some(prev) = self.held.take() {
            let d = self.last_dur_ns;
            self.push_now(prev, d)?;
        }
        let _ = self.src.end_of_stream();
        let bus = self.pipeline.bus().ok_or_else(|| gst_err("no bus"))?;
        let mut err = Some(MuxError::Gst("the muxer did not finish in time".into()));
        for msg in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
            match msg.view() {
                gst::MessageView::Eos(_) => {
                    err = None;
                    break;
                }
                gst::MessageView::Error(e) => {
                    err = Some(MuxError::Gst(format!(
                        "{} ({})",
                        e.error(),
                        e.debug().map(|d| d.to_string()).unwrap_or_default()
                    )));
                    break;
                }
                _ => {}
            }
        }
        // At EOS the writer drains what the appsink still queues before the pipeline
        // stops; after an error, stopping the pipeline is what ends the writer.
        if err.is_some() {
            let _ = self.pipeline.set_state(gst::State::Null);
        }
        let out = self
            .sink_thread
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| gst_err("the MP4 writer thread panicked"))?;
        let _ = self.pipeline.set_state(gst::State::Null);
        // The writer's own failure explains a muxer that never finished: report it.
        let out = out?;
        if let Some(e) = err {
            return Err(e);
        }
        Ok((
            out,
            MuxStats {
                frames: self.frames,
                bytes: 0,
                duration_ns: self.last_t_ns,
            },
        ))
    }
}

impl<W: Write + Seek + Send + 'static> Drop for Muxer<W> {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(t) = self.sink_thread.take() {
            let _ = t.join();
        }
    }
}

//! `viewer-api bench-fill` (hidden): fills a store with hours of footage, fast, for
//! `scripts/bench-api.sh`. The frames of a pre-encoded clip are looped with continuous
//! timestamps and written with the recorder's own segment writer and catalog, so the
//! store is exactly what the recorder would have made, without the hours of waiting.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use recorder::catalog::{self, Catalog, ClosedSegment};
use recorder::config::Config;
use recorder::segment::{self, Codec, CodecParams, DataKey, Frame, Gop, SegmentId, SegmentWriter};
use recorder::store;

/// What was written.
#[derive(Debug, Clone, Copy)]
pub struct Filled {
    pub segments: u64,
    pub bytes: u64,
    pub first_unix_ms: i64,
    pub end_unix_ms: i64,
}

/// Writes `hours` of `camera` ending now, in segments of `segment_secs`, from an H.264
/// Annex B clip (with access unit delimiters) of `fps` whose length is a whole number
/// of GOPs. `manifest` gets one line per segment: start (unix ms), end, file path.
#[allow(clippy::too_many_arguments)]
pub fn fill(
    config: &Config,
    camera: &str,
    clip: &[u8],
    size: (u32, u32),
    fps: u32,
    hours: f64,
    segment_secs: u32,
    manifest: &Path,
) -> anyhow::Result<Filled> {
    let (avcc, frames) =
        crate::testdata::h264_annexb_frames(clip, fps).map_err(|e| anyhow::anyhow!(e))?;
    if frames.is_empty() || !frames[0].key {
        bail!("the clip must start with a key frame");
    }
    let keys = store::key_provider(config);
    store::init(config, &keys)?;
    let kek = store::load_kek(config, &keys)?;
    let cat = Catalog::open(&config.storage.path)?;
    let params = CodecParams {
        codec: Codec::H264,
        extra_data: avcc,
        width: size.0,
        height: size.1,
        rfc6381: "avc1.640028".into(),
    };
    let dur_90k = 90_000 / i64::from(fps);
    let total = (hours * 3600.0 * f64::from(fps)) as i64;
    let seg_frames = i64::from(segment_secs) * i64::from(fps);
    let now = chrono::Utc::now().timestamp_millis();
    let t0 = now - total * 1000 / i64::from(fps);
    let unix = |n: i64| t0 + n * 1000 / i64::from(fps);
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(manifest)
            .with_context(|| format!("cannot create {}", manifest.display()))?,
    );
    let mut filled = Filled {
        segments: 0,
        bytes: 0,
        first_unix_ms: t0,
        end_unix_ms: t0,
    };
    let mut n: i64 = 0;
    while n < total {
        let id = SegmentId::random();
        let key = DataKey::random();
        let wrapped = segment::wrap_key(kek.as_bytes(), id, &key);
        let start = unix(n);
        cat.insert_open_segment(id, camera, Codec::H264, start, n * dur_90k, &wrapped)?;
        let path = catalog::segment_path(&config.storage.path, camera, id);
        std::fs::create_dir_all(path.parent().context("segment path")?)?;
        let mut w = SegmentWriter::create(&path, id, camera, &key, &params, start)?;
        let first = n;
        // A segment ends on a key frame at or after its length.
        while n < total {
            let mut gop = Gop {
                start_unix_ms: unix(n),
                frames: Vec::new(),
            };
            loop {
                let f = &frames[(n as usize) % frames.len()];
                gop.frames.push(Frame {
                    pts_90k: n * dur_90k,
                    key: f.key,
                    data: f.data.clone(),
                });
                n += 1;
                if n >= total || frames[(n as usize) % frames.len()].key {
                    break;
                }
            }
            w.append_gop(&gop)?;
            if n - first >= seg_frames {
                break;
            }
        }
        let fin = w.finish()?;
        cat.close_segment(
            id,
            &ClosedSegment {
                end_unix_ms: unix(n - 1),
                start_90k: first * dur_90k,
                end_90k: (n - 1) * dur_90k,
                bytes: fin.bytes,
                frames: fin.trailer.frames,
                key_frames: fin.trailer.key_frames,
                sha256: fin.sha256,
            },
            false,
        )?;
        writeln!(out, "{start}\t{}\t{}", unix(n), path.display())?;
        filled.segments += 1;
        filled.bytes += fin.bytes;
        filled.end_unix_ms = unix(n);
    }
    out.flush()?;
    Ok(filled)
}

//! Test footage made with ffmpeg (tests only; never used by the service).
//!
//! ffmpeg encodes a synthetic H.264 or H.265 stream (Annex B, access unit delimiters
//! on); here it is cut into access units, converted to length-prefixed NAL units as the
//! recorder stores them, and the avcC / hvcC record is built from its parameter sets.

use std::process::Command;

use crate::mp4::{TrackParams, VideoCodec};
use crate::playback::{CameraInfo, MemorySource};

/// One frame as the recorder stores it.
#[derive(Debug, Clone)]
pub struct TestFrame {
    pub pts_90k: i64,
    pub key: bool,
    pub data: Vec<u8>,
}

/// `secs` seconds of 320×240 H.264 at `fps`, a key frame every `gop` frames.
/// Returns the avcC record and the frames.
pub fn h264_frames(secs: u32, fps: u32, gop: u32) -> Result<(Vec<u8>, Vec<TestFrame>), String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=320x240:rate={fps}"))
        .args(["-t", &secs.to_string()])
        .args(["-c:v", "libx264", "-profile:v", "main", "-bf", "0", "-g"])
        .arg(gop.to_string())
        .args(["-keyint_min", &gop.to_string(), "-sc_threshold", "0"])
        .args(["-x264-params", "aud=1", "-f", "h264", "-"])
        .output()
        .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ffmpeg failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    h264_annexb_frames(&out.stdout, fps)
}

/// [`h264_frames`] with the track parameters they are stored with (320×240).
pub fn h264_track(secs: u32, fps: u32, gop: u32) -> Result<(TrackParams, Vec<TestFrame>), String> {
    let (avcc, frames) = h264_frames(secs, fps, gop)?;
    Ok((track(VideoCodec::H264, avcc), frames))
}

/// [`h265_frames`] with the track parameters they are stored with (320×240).
pub fn h265_track(secs: u32, fps: u32, gop: u32) -> Result<(TrackParams, Vec<TestFrame>), String> {
    let (hvcc, frames) = h265_frames(secs, fps, gop)?;
    Ok((track(VideoCodec::H265, hvcc), frames))
}

fn track(codec: VideoCodec, extra_data: Vec<u8>) -> TrackParams {
    TrackParams {
        codec,
        extra_data,
        width: 320,
        height: 240,
    }
}

/// A camera that is recording, as a footage source lists it.
pub fn camera(id: &str, name: &str) -> CameraInfo {
    CameraInfo {
        id: id.to_string(),
        name: name.to_string(),
        state: "recording".into(),
        ..Default::default()
    }
}

/// A memory source listing `ids` (recording, each named by its id in capitals), with no
/// footage yet.
pub fn memory_source(ids: &[&str]) -> MemorySource {
    MemorySource {
        cameras: ids.iter().map(|c| camera(c, &c.to_uppercase())).collect(),
        ..Default::default()
    }
}

/// Cuts an H.264 Annex B stream (with access unit delimiters) into frames as the
/// recorder stores them, and builds the avcC record from its first SPS and PPS.
pub fn h264_annexb_frames(stream: &[u8], fps: u32) -> Result<(Vec<u8>, Vec<TestFrame>), String> {
    let nals = split_annexb(stream);
    let (mut sps, mut pps) = (None, None);
    let mut frames = Vec::new();
    let mut cur: Option<TestFrame> = None;
    let dur = 90_000 / i64::from(fps);
    for nal in nals {
        let Some(&h) = nal.first() else { continue };
        match h & 0x1f {
            9 => {
                if let Some(f) = cur.take() {
                    frames.push(f);
                }
                cur = Some(TestFrame {
                    pts_90k: frames.len() as i64 * dur,
                    key: false,
                    data: Vec::new(),
                });
                continue;
            }
            7 => {
                sps.get_or_insert_with(|| nal.to_vec());
                continue;
            }
            8 => {
                pps.get_or_insert_with(|| nal.to_vec());
                continue;
            }
            5 => {
                if let Some(f) = cur.as_mut() {
                    f.key = true;
                }
            }
            _ => {}
        }
        if let Some(f) = cur.as_mut() {
            f.data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            f.data.extend_from_slice(nal);
        }
    }
    if let Some(f) = cur.take() {
        frames.push(f);
    }
    frames.retain(|f| !f.data.is_empty());
    let (Some(sps), Some(pps)) = (sps, pps) else {
        return Err("no SPS/PPS in ffmpeg output".into());
    };
    let mut avcc = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    avcc.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    avcc.extend_from_slice(&sps);
    avcc.push(1);
    avcc.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    avcc.extend_from_slice(&pps);
    Ok((avcc, frames))
}

/// `secs` seconds of 320×240 H.265 (x265, closed GOPs, no B-frames) at `fps`, a key
/// frame every `gop` frames. Returns the hvcC record and the frames.
pub fn h265_frames(secs: u32, fps: u32, gop: u32) -> Result<(Vec<u8>, Vec<TestFrame>), String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=320x240:rate={fps}"))
        .args(["-t", &secs.to_string()])
        .args(["-pix_fmt", "yuv420p", "-c:v", "libx265", "-x265-params"])
        .arg(format!(
            "open-gop=0:bframes=0:keyint={gop}:min-keyint={gop}:scenecut=0:aud=1:log-level=error"
        ))
        .args(["-f", "hevc", "-"])
        .output()
        .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ffmpeg failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let (mut vps, mut sps, mut pps) = (None, None, None);
    let mut frames = Vec::new();
    let mut cur: Option<TestFrame> = None;
    let dur = 90_000 / i64::from(fps);
    for nal in split_annexb(&out.stdout) {
        if nal.len() < 2 {
            continue;
        }
        match (nal[0] >> 1) & 0x3f {
            35 => {
                if let Some(f) = cur.take() {
                    frames.push(f);
                }
                cur = Some(TestFrame {
                    pts_90k: frames.len() as i64 * dur,
                    key: false,
                    data: Vec::new(),
                });
                continue;
            }
            32 => {
                vps.get_or_insert_with(|| nal.to_vec());
                continue;
            }
            33 => {
                sps.get_or_insert_with(|| nal.to_vec());
                continue;
            }
            34 => {
                pps.get_or_insert_with(|| nal.to_vec());
                continue;
            }
            16..=23 => {
                if let Some(f) = cur.as_mut() {
                    f.key = true;
                }
            }
            _ => {}
        }
        if let Some(f) = cur.as_mut() {
            f.data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            f.data.extend_from_slice(nal);
        }
    }
    if let Some(f) = cur.take() {
        frames.push(f);
    }
    frames.retain(|f| !f.data.is_empty());
    let (Some(vps), Some(sps), Some(pps)) = (vps, sps, pps) else {
        return Err("no VPS/SPS/PPS in ffmpeg output".into());
    };
    Ok((hvcc(&vps, &sps, &pps)?, frames))
}

/// The RBSP of a NAL unit: emulation prevention bytes (00 00 03) removed.
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// An HEVCDecoderConfigurationRecord (ISO/IEC 14496-15) for 8-bit 4:2:0 video.
fn hvcc(vps: &[u8], sps: &[u8], pps: &[u8]) -> Result<Vec<u8>, String> {
    let rbsp = unescape(&sps[2..]);
    if rbsp.len() < 13 {
        return Err("SPS too short".into());
    }
    let sub_layers = ((rbsp[0] >> 1) & 0x07) + 1;
    let nested = rbsp[0] & 1;
    let mut h = vec![1];
    h.extend_from_slice(&rbsp[1..13]); // profile, compatibility, constraints, level
    h.extend_from_slice(&[0xf0, 0x00, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0]);
    h.push((sub_layers << 3) | (nested << 2) | 3);
    h.push(3);
    for (t, nal) in [(32u8, vps), (33, sps), (34, pps)] {
        h.push(0x80 | t);
        h.extend_from_slice(&1u16.to_be_bytes());
        h.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        h.extend_from_slice(nal);
    }
    Ok(h)
}

/// `codec_name,codec_tag_string` of the first video stream, as ffprobe sees it.
pub fn probe_codec(path: &std::path::Path) -> Result<String, String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,codec_tag_string",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn split_annexb(b: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= b.len() {
        if b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut e = starts.get(k + 1).map(|&n| n - 3).unwrap_or(b.len());
        while e > s && b[e - 1] == 0 {
            e -= 1;
        }
        out.push(&b[s..e]);
    }
    out
}

/// Runs `ffprobe` and a full `ffmpeg` decode on a file; returns the number of video
/// frames decoded, or what went wrong.
pub fn check_with_ffmpeg(path: &std::path::Path) -> Result<u64, String> {
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=nb_read_frames,codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    if !probe.status.success() || !probe.stderr.is_empty() {
        return Err(format!(
            "ffprobe: {}",
            String::from_utf8_lossy(&probe.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&probe.stdout);
    let frames = text
        .trim()
        .split(',')
        .find_map(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("ffprobe printed {text:?}"))?;
    let dec = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .map_err(|e| e.to_string())?;
    if !dec.status.success() || !dec.stderr.is_empty() {
        return Err(format!(
            "ffmpeg decode: {}",
            String::from_utf8_lossy(&dec.stderr)
        ));
    }
    Ok(frames)
}

/// Frames as stored chunks, the first starting at `t0_ms`: a key chunk per GOP, or
/// (`split`) also continuation chunks every `split` frames inside a GOP, as the
/// recorder writes long GOPs.
pub fn chunks(
    frames: &[TestFrame],
    t0_ms: i64,
    split: Option<usize>,
) -> Vec<crate::playback::GopData> {
    use crate::playback::{FrameData, GopData};
    let mut gops: Vec<GopData> = Vec::new();
    let mut n = 0;
    for f in frames {
        if f.key || split.is_some_and(|s| n % s == 0) {
            n = 0;
            gops.push(GopData {
                start_unix_ms: t0_ms + f.pts_90k / 90,
                frames: vec![],
            });
        }
        n += 1;
        gops.last_mut().unwrap().frames.push(FrameData {
            pts_90k: f.pts_90k,
            key: f.key,
            data: f.data.clone(),
        });
    }
    gops
}

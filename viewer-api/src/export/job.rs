//! One export job: each camera's footage muxed to MP4, hashed, the manifest signed by
//! the recorder, the bundle sealed; a failure leaves nothing half-made.

use super::*;

pub(super) fn codec_name(c: VideoCodec) -> &'static str {
    match c {
        VideoCodec::H264 => "h264",
        VideoCodec::H265 => "h265",
    }
}

pub(super) fn zip_time(unix_ms: i64) -> zip::DateTime {
    use chrono::{Datelike, Timelike};
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .and_then(|t| {
            zip::DateTime::from_date_and_time(
                t.year().clamp(1980, 2107) as u16,
                t.month() as u8,
                t.day() as u8,
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
            )
            .ok()
        })
        .unwrap_or_default()
}

pub(super) struct Done {
    pub(super) wrapped_key: Vec<u8>,
    pub(super) bytes: u64,
    pub(super) frames: u64,
    pub(super) manifest_sha256: String,
}

#[derive(Default)]
pub(super) struct CameraOut {
    pub(super) files: Vec<String>,
    pub(super) params: Option<TrackParams>,
    pub(super) frames: u64,
    pub(super) first_ms: Option<i64>,
    pub(super) last_ms: Option<i64>,
    pub(super) segments: Vec<SegmentEntry>,
}

impl Exports {
    pub(super) fn run_job(&self, job: &Job) -> Result<Done, String> {
        let log = job
            .log
            .clone()
            .ok_or("the export has no access-log entry (from an older version)")?;
        let source = crate::playback::for_entry(&self.source, log.clone());
        let names: HashMap<String, String> = source
            .cameras()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect();
        // Plan: the segments of every camera, for progress and the gaps.
        let mut plan = Vec::new();
        let mut total = 0u64;
        for cam in &job.cameras {
            let rows = source
                .segments(cam, job.from_ms - LOOKBACK_MS, job.to_ms)
                .map_err(|e| e.to_string())?;
            total += rows.iter().map(|r| r.bytes.max(1)).sum::<u64>();
            plan.push((cam.clone(), rows));
        }
        let io = |e: std::io::Error| format!("bundle: {e}");
        let ze = |e: zip::result::ZipError| format!("bundle: {e}");
        let now = self.clock.now_unix_ms();
        let file_id = parse_id(&job.id).ok_or("bad export id")?;
        let key = FileKey::random();
        let path = self.bundle_path(&job.id);
        let _ = std::fs::remove_file(&path);
        let w = EncWriter::create(&path, &key, file_id).map_err(io)?;
        let mut zip = zip::ZipWriter::new(w);
        let mtime = zip_time(now);
        let opts = |big: bool| {
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .last_modified_time(mtime)
                .unix_permissions(0o644)
                .large_file(big)
        };
        let mut written = 0u64;
        let mut files = Vec::new();
        let mut cameras = Vec::new();
        let mut segments = Vec::new();
        let mut gaps = Vec::new();
        let mut frames = 0u64;
        for (cam, rows) in &plan {
            let out = self.export_camera(&*source, job, cam, &mut |name, layout, idx| {
                zip.start_file(name, opts(layout.total_len >= 0xFFFF_0000))
                    .map_err(ze)?;
                let mut h = Sha256::new();
                h.update(&layout.header);
                zip.write_all(&layout.header).map_err(io)?;
                let mut err = None;
                crate::playback::read_payload(&*source, idx, 0, &mut |b| {
                    h.update(&b);
                    if let Err(e) = zip.write_all(&b) {
                        err = Some(io(e));
                        return false;
                    }
                    written += b.len() as u64;
                    self.set_progress(&job.id, 0.99 * written as f64 / total.max(1) as f64);
                    true
                })
                .map_err(|e| format!("camera {cam}: {e}"))?;
                if let Some(e) = err {
                    return Err(e);
                }
                files.push(FileEntry {
                    name: name.to_string(),
                    sha256: hex::encode(h.finalize()),
                    bytes: layout.total_len,
                });
                Ok(())
            })?;
            frames += out.frames;
            let name = names.get(cam).cloned().unwrap_or_else(|| cam.clone());
            cameras.push(CameraEntry {
                id: cam.clone(),
                name,
                codec: out.params.as_ref().map(|p| codec_name(p.codec).to_string()),
                width: out.params.as_ref().map(|p| p.width),
                height: out.params.as_ref().map(|p| p.height),
                files: out.files,
                frames: out.frames,
                first_frame: out.first_ms.map(rfc3339),
                last_frame: out.last_ms.map(rfc3339),
            });
            segments.extend(out.segments);
            gaps.extend(self.gaps(&*source, cam, rows, job)?);
        }
        let pk = self.recorder.public_key().map_err(|e| e.to_string())?;
        let manifest = Manifest {
            format: bundle::FORMAT.into(),
            format_version: bundle::FORMAT_VERSION,
            export_id: job.id.clone(),
            device: DeviceInfo::from_public_key(&pk),
            case: job.case.clone(),
            reason: job.reason.clone(),
            exported_by: job.owner.clone(),
            exported_at: rfc3339(now),
            from: rfc3339(job.from_ms),
            to: rfc3339(job.to_ms),
            cameras,
            gaps,
            files,
            segments,
        };
        let mbytes = bundle::manifest_bytes(&manifest);
        let sig = self
            .recorder
            .sign_manifest(&log, &mbytes)
            .map_err(|e| format!("the recorder did not sign the manifest: {e}"))?;
        let small: [(&str, Vec<u8>); 4] = [
            (bundle::MANIFEST, mbytes.clone()),
            (bundle::SIGNATURE, sig.to_vec()),
            (
                bundle::PUBLIC_KEY,
                hardware::signing::public_key_pem(&pk).into_bytes(),
            ),
            (bundle::README, bundle::verify_text(&manifest).into_bytes()),
        ];
        for (name, data) in small {
            zip.start_file(name, opts(false)).map_err(ze)?;
            zip.write_all(&data).map_err(io)?;
        }
        let w = zip.finish().map_err(ze)?;
        let bytes = w.finish().map_err(io)?;
        let _ = recorder::store::sync_dir(&self.dir);
        let wrapped = segment::wrap_key(
            self.key.as_bytes(),
            SegmentId(file_id),
            &DataKey::from_bytes(*key.0),
        );
        Ok(Done {
            wrapped_key: wrapped,
            bytes,
            frames,
            manifest_sha256: hex::encode(Sha256::digest(&mbytes)),
        })
    }

    /// The camera's frames of the job's range as one MP4 per run of codec parameters
    /// (a parameter change starts `<camera>-part2.mp4`), each laid out by [`crate::mp4`]
    /// from the stored index and handed to `write` with its frame index; footage is
    /// read once, by `write`.
    pub(super) fn export_camera(
        &self,
        source: &dyn FootageSource,
        job: &Job,
        cam: &str,
        write: &mut dyn FnMut(&str, &crate::mp4::Layout, &FrameIndex) -> Result<(), String>,
    ) -> Result<CameraOut, String> {
        let mut out = CameraOut::default();
        let mut from = job.from_ms;
        let mut used: Vec<String> = Vec::new();
        while let Some(mut idx) = crate::playback::build_index(source, cam, from, job.to_ms)
            .map_err(|e| format!("camera {cam}: {e}"))?
        {
            if let Some(last) = out.last_ms {
                // A later part: only what follows the frames already written.
                match idx.starting_after(last + 1) {
                    Some(i) => idx = i,
                    None => break,
                }
            }
            follow_wall_clock(&mut idx, WALL_CLOCK_TOLERANCE_MS);
            let layout = idx.layout().map_err(|e| format!("camera {cam}: {e}"))?;
            let name = if out.files.is_empty() {
                format!("{cam}.mp4")
            } else {
                format!("{cam}-part{}.mp4", out.files.len() + 1)
            };
            write(&name, &layout, &idx)?;
            out.files.push(name);
            out.params.get_or_insert_with(|| idx.params.clone());
            out.frames += idx.samples.len() as u64;
            out.first_ms.get_or_insert(idx.first_unix_ms);
            let last_dur_ms = idx
                .samples
                .last()
                .map_or(0, |s| ms_from_90k(i64::from(s.duration_90k)));
            out.last_ms = Some(idx.end_unix_ms - last_dur_ms);
            for seg in &idx.segments {
                if !used.contains(&seg.key) {
                    used.push(seg.key.clone());
                    out.segments.push(SegmentEntry {
                        camera: cam.to_string(),
                        id: seg.key.clone(),
                        start: rfc3339(seg.start_ms),
                        end: rfc3339(seg.end_ms),
                        bytes: seg.bytes,
                        sha256: (!seg.sha256.is_empty()).then(|| seg.sha256.clone()),
                    });
                }
            }
            if let Some(h) = self
                .after_segment
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                idx.segments.iter().for_each(h);
            }
            if idx.end_unix_ms >= job.to_ms || idx.end_unix_ms <= from {
                break;
            }
            from = idx.end_unix_ms;
        }
        Ok(out)
    }
}

//! The export's timeline is the recording's: gaps are listed in the manifest and held
//! as a still picture of their true length in the file.

use super::*;

/// How far a chunk's wall time may drift from where media time puts it before the
/// file follows the wall clock (a gap in recording, a reconnection).
pub(super) const WALL_CLOCK_TOLERANCE_MS: i64 = 1_500;

/// Makes the file's timeline the recording's: where a chunk starts later than the
/// frames before it predict (a gap in recording), the last frame before it lasts until
/// it starts, so the MP4's time from its first frame is wall time, and a player shows
/// the gap as a held picture of its true length.
pub(super) fn follow_wall_clock(idx: &mut FrameIndex, tolerance_ms: i64) {
    let mut sample = 0usize;
    let mut media_90k: i64 = 0;
    for g in 0..idx.gops.len() {
        if g > 0 && sample > 0 {
            let wall_90k = ticks_90k_from_ms(idx.gop_unix_ms[g] - idx.first_unix_ms);
            let late_90k = wall_90k - media_90k;
            if late_90k > ticks_90k_from_ms(tolerance_ms) {
                let prev = &mut idx.samples[sample - 1];
                let stretched = i64::from(prev.duration_90k) + late_90k;
                prev.duration_90k = u32::try_from(stretched).unwrap_or(u32::MAX);
                media_90k += late_90k;
            }
        }
        for s in &idx.samples[sample..sample + idx.gops[g].frames] {
            media_90k += i64::from(s.duration_90k);
        }
        sample += idx.gops[g].frames;
    }
}

impl Exports {
    /// Catalog gaps in the range, and holes where nothing was recorded at all.
    pub(super) fn gaps(
        &self,
        source: &dyn FootageSource,
        cam: &str,
        rows: &[SegmentKey],
        job: &Job,
    ) -> Result<Vec<GapEntry>, String> {
        let (_, catalog_gaps) = source
            .recordings(cam, job.from_ms, job.to_ms)
            .map_err(|e| e.to_string())?;
        let mut out: Vec<GapEntry> = catalog_gaps
            .iter()
            .map(|g| GapEntry {
                camera: cam.to_string(),
                from: rfc3339(g.from_ms.max(job.from_ms)),
                to: g.to_ms.map(|t| rfc3339(t.min(job.to_ms))),
                reason: g.reason.clone(),
            })
            .collect();
        let now = self.clock.now_unix_ms();
        let mut spans: Vec<(i64, i64)> = rows
            .iter()
            .map(|r| {
                let end = if r.open { now } else { r.end_ms };
                (r.start_ms, end.max(r.start_ms))
            })
            .collect();
        spans.sort();
        let mut holes = Vec::new();
        let mut covered_to = job.from_ms;
        for (s, e) in spans {
            if s > covered_to + HOLE_TOLERANCE_MS {
                holes.push((covered_to, s.min(job.to_ms)));
            }
            covered_to = covered_to.max(e);
            if covered_to >= job.to_ms {
                break;
            }
        }
        if covered_to + HOLE_TOLERANCE_MS < job.to_ms {
            holes.push((covered_to, job.to_ms));
        }
        for (f, t) in holes {
            if f >= t {
                continue;
            }
            let explained = catalog_gaps.iter().any(|g| {
                g.from_ms <= f + HOLE_TOLERANCE_MS
                    && g.to_ms.is_none_or(|gt| gt + HOLE_TOLERANCE_MS >= t)
            });
            if !explained {
                out.push(GapEntry {
                    camera: cam.to_string(),
                    from: rfc3339(f),
                    to: Some(rfc3339(t)),
                    reason: "no footage stored".into(),
                });
            }
        }
        Ok(out)
    }
}

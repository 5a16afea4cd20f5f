//! `viewer-api verify-export BUNDLE.zip`: checks an export bundle on any computer,
//! with nothing but the bundle (no appliance, no configuration): the manifest's
//! signature, that the key is the one the manifest names, every file's size and
//! SHA-256, that nothing unlisted was added, and that every MP4 parses (`ffprobe` when
//! it is installed, otherwise a walk of the MP4 box structure).

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::bundle::{self, DeviceInfo, Manifest};

/// What was checked, line by line, and whether everything passed.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub ok: bool,
}

impl Report {
    fn pass(&mut self, s: String) {
        self.lines.push(format!("ok    {s}"));
    }
    fn fail(&mut self, s: String) {
        self.ok = false;
        self.lines.push(format!("FAIL  {s}"));
    }
}

const MAX_SMALL: u64 = 16 << 20;

fn read_small(zip: &mut zip::ZipArchive<std::fs::File>, name: &str) -> Result<Vec<u8>, String> {
    let f = zip
        .by_name(name)
        .map_err(|_| format!("{name} is missing from the bundle"))?;
    if f.size() > MAX_SMALL {
        return Err(format!("{name} is implausibly large"));
    }
    let mut v = Vec::new();
    f.take(MAX_SMALL)
        .read_to_end(&mut v)
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(v)
}

/// Checks the bundle at `path`. `pinned_key`: a PEM public key the device is known
/// by; without it the bundle's own key is used and its fingerprint printed.
pub fn verify(path: &Path, pinned_key: Option<&str>) -> Report {
    let mut rep = Report {
        ok: true,
        ..Default::default()
    };
    let r = (|| -> Result<(), String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a zip file: {e}"))?;
        let mbytes = read_small(&mut zip, bundle::MANIFEST)?;
        let sig = read_small(&mut zip, bundle::SIGNATURE)?;
        let pem = String::from_utf8(read_small(&mut zip, bundle::PUBLIC_KEY)?)
            .map_err(|_| "device.pub.pem is not text".to_string())?;
        let pk = hardware::signing::parse_public_key_pem(&pem)
            .ok_or("device.pub.pem is not an Ed25519 public key")?;
        let key = match pinned_key {
            Some(p) => {
                let pinned = hardware::signing::parse_public_key_pem(p)
                    .ok_or("the --key file is not an Ed25519 public key (PEM)")?;
                if pinned == pk {
                    rep.pass("device.pub.pem is the pinned device key".into());
                } else {
                    rep.fail("device.pub.pem is NOT the pinned device key".into());
                }
                pinned
            }
            None => pk,
        };
        if sig.len() == 64 && hardware::signing::verify_signature(&key, &mbytes, &sig) {
            rep.pass("manifest.sig: valid Ed25519 signature of manifest.json".into());
        } else {
            rep.fail(
                "manifest.sig does not verify: manifest.json was changed or signed by another key"
                    .into(),
            );
        }
        let m: Manifest = serde_json::from_slice(&mbytes)
            .map_err(|e| format!("manifest.json is not a Ringfence manifest: {e}"))?;
        if m.format != bundle::FORMAT || m.format_version != bundle::FORMAT_VERSION {
            return Err(format!(
                "manifest format {} v{} is not supported",
                m.format, m.format_version
            ));
        }
        let dev = DeviceInfo::from_public_key(&key);
        if dev == m.device {
            rep.pass(format!(
                "device {} (public key SHA-256 {})",
                dev.id, dev.public_key_sha256
            ));
        } else {
            rep.fail(format!(
                "the manifest names device {} but the key is {}'s",
                m.device.id, dev.id
            ));
        }
        rep.lines.push(format!(
            "      export {} case {:?} by {} at {}; {} .. {}; cameras {}",
            m.export_id,
            m.case,
            m.exported_by,
            m.exported_at,
            m.from,
            m.to,
            m.cameras
                .iter()
                .map(|c| format!("{} ({} frames)", c.id, c.frames))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for g in &m.gaps {
            rep.lines.push(format!(
                "      gap   {} {} .. {}: {}",
                g.camera,
                g.from,
                g.to.as_deref().unwrap_or("(open)"),
                g.reason
            ));
        }
        let listed: HashSet<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
        let known = [
            bundle::MANIFEST,
            bundle::SIGNATURE,
            bundle::PUBLIC_KEY,
            bundle::README,
        ];
        for name in zip.file_names().map(str::to_string).collect::<Vec<_>>() {
            if !listed.contains(name.as_str()) && !known.contains(&name.as_str()) {
                rep.fail(format!("{name} is in the bundle but not in the manifest"));
            }
        }
        let tmp = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
        let ffprobe = Command::new("ffprobe").arg("-version").output().is_ok();
        for f in &m.files {
            if f.name.contains('/') || f.name.contains('\\') || f.name.starts_with('.') {
                rep.fail(format!("{}: not a plain file name", f.name));
                continue;
            }
            let mut zf = match zip.by_name(&f.name) {
                Ok(z) => z,
                Err(_) => {
                    rep.fail(format!("{}: listed in the manifest but missing", f.name));
                    continue;
                }
            };
            let out_path = tmp.path().join(&f.name);
            let mut out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
            let mut h = Sha256::new();
            let mut n = 0u64;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let k = zf.read(&mut buf).map_err(|e| format!("{}: {e}", f.name))?;
                if k == 0 {
                    break;
                }
                h.update(&buf[..k]);
                std::io::Write::write_all(&mut out, &buf[..k]).map_err(|e| e.to_string())?;
                n += k as u64;
            }
            drop(out);
            let sha = hex::encode(h.finalize());
            if sha == f.sha256 && n == f.bytes {
                rep.pass(format!("{}: {} bytes, SHA-256 {}", f.name, n, sha));
            } else {
                rep.fail(format!(
                    "{}: {} bytes, SHA-256 {} (manifest: {} bytes, {})",
                    f.name, n, sha, f.bytes, f.sha256
                ));
                continue;
            }
            if f.name.ends_with(".mp4") {
                let parsed = if ffprobe {
                    probe(&out_path).map(|s| format!("ffprobe: {s}"))
                } else {
                    std::fs::read(&out_path)
                        .map_err(|e| e.to_string())
                        .and_then(|b| box_walk(&b))
                        .map(|s| format!("box structure: {s}"))
                };
                match parsed {
                    Ok(s) => rep.pass(format!("{}: parses as MP4 ({s})", f.name)),
                    Err(e) => rep.fail(format!("{}: does not parse as MP4: {e}", f.name)),
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = r {
        rep.fail(e);
    }
    rep
}

fn probe(path: &Path) -> Result<String, String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=codec_name,width,height,nb_frames:format=duration")
        .args(["-of", "compact=p=0:nk=0"])
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout)
        .trim()
        .replace('\n', ", ");
    if !out.status.success() || !out.stderr.is_empty() || !text.contains("codec_name=") {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(text)
}

fn be32(b: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?) as u64)
}

/// Walks the boxes of `b[start..end]`, returning (type, body start, end) of each.
fn boxes(b: &[u8], start: usize, end: usize) -> Result<Vec<([u8; 4], usize, usize)>, String> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let size = be32(b, at).ok_or("truncated box header")?;
        let typ: [u8; 4] = b
            .get(at + 4..at + 8)
            .ok_or("truncated box header")?
            .try_into()
            .expect("4 bytes");
        let (hdr, size) = match size {
            1 => (
                16,
                u64::from_be_bytes(
                    b.get(at + 8..at + 16)
                        .ok_or("truncated box header")?
                        .try_into()
                        .expect("8 bytes"),
                ),
            ),
            0 => (8, (end - at) as u64),
            s => (8, s),
        };
        if size < hdr as u64 || at as u64 + size > end as u64 {
            return Err(format!(
                "box {} at {at} overruns its parent",
                String::from_utf8_lossy(&typ)
            ));
        }
        out.push((typ, at + hdr, at + size as usize));
        at += size as usize;
    }
    Ok(out)
}

/// A structural check of an MP4 without ffprobe.
pub fn box_walk(b: &[u8]) -> Result<String, String> {
    let top = boxes(b, 0, b.len())?;
    let find = |v: &[([u8; 4], usize, usize)], t: &[u8; 4]| v.iter().find(|x| &x.0 == t).copied();
    if top.first().map(|x| &x.0) != Some(b"ftyp") {
        return Err("does not start with ftyp".into());
    }
    let mdat = find(&top, b"mdat").ok_or("no mdat")?;
    let moov = find(&top, b"moov").ok_or("no moov")?;
    let inner = boxes(b, moov.1, moov.2)?;
    find(&inner, b"mvhd").ok_or("no mvhd")?;
    let traks: Vec<_> = inner.iter().filter(|x| &x.0 == b"trak").collect();
    if traks.is_empty() {
        return Err("no track".into());
    }
    let mut samples = 0u64;
    for t in traks {
        let mdia = find(&boxes(b, t.1, t.2)?, b"mdia").ok_or("no mdia")?;
        let minf = find(&boxes(b, mdia.1, mdia.2)?, b"minf").ok_or("no minf")?;
        let stbl = find(&boxes(b, minf.1, minf.2)?, b"stbl").ok_or("no stbl")?;
        let stsz = find(&boxes(b, stbl.1, stbl.2)?, b"stsz").ok_or("no stsz")?;
        samples += be32(b, stsz.1 + 8).ok_or("short stsz")?;
    }
    Ok(format!(
        "ftyp, moov, mdat of {} bytes, {samples} samples",
        mdat.2 - mdat.1
    ))
}

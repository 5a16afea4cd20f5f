//! The bundle a court receives: the MP4s, `manifest.json`, its Ed25519 signature
//! `manifest.sig`, the device's public key `device.pub.pem`, and `VERIFY.txt`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FORMAT: &str = "ringfence-export";
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
pub const PUBLIC_KEY: &str = "device.pub.pem";
pub const README: &str = "VERIFY.txt";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `rf-` + the first 16 hex digits of the public key's SHA-256: stable, derived.
    pub id: String,
    /// SHA-256 of the raw 32-byte Ed25519 public key.
    pub public_key_sha256: String,
}

impl DeviceInfo {
    pub fn from_public_key(pk: &[u8; 32]) -> DeviceInfo {
        let h = hex::encode(Sha256::digest(pk));
        DeviceInfo {
            id: format!("rf-{}", &h[..16]),
            public_key_sha256: h,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CameraEntry {
    pub id: String,
    pub name: String,
    pub codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The MP4 file(s) of this camera (more than one if its codec parameters changed).
    pub files: Vec<String>,
    pub frames: u64,
    /// Wall-clock time of the first frame (the key frame at or before `from`).
    pub first_frame: Option<String>,
    pub last_frame: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GapEntry {
    pub camera: String,
    pub from: String,
    /// `None`: the interruption had not ended when the export was made.
    pub to: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SegmentEntry {
    pub camera: String,
    pub id: String,
    pub start: String,
    pub end: String,
    pub bytes: u64,
    /// SHA-256 of the encrypted segment file as recorded when it closed (`None`: the
    /// segment was still being written).
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub export_id: String,
    pub device: DeviceInfo,
    pub case: String,
    pub reason: String,
    pub exported_by: String,
    pub exported_at: String,
    pub from: String,
    pub to: String,
    pub cameras: Vec<CameraEntry>,
    pub gaps: Vec<GapEntry>,
    pub files: Vec<FileEntry>,
    pub segments: Vec<SegmentEntry>,
}

/// The exact bytes that are signed.
pub fn manifest_bytes(m: &Manifest) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(m).expect("a manifest always serialises");
    v.push(b'\n');
    v
}

/// `VERIFY.txt`: how a stranger checks the bundle with OpenSSL and sha256sum alone.
pub fn verify_text(m: &Manifest) -> String {
    let mut files = String::new();
    for f in &m.files {
        files.push_str(&format!("    {}  {}\n", f.sha256, f.name));
    }
    format!(
        "Ringfence evidence export {id}
Case {case}; exported by {by} at {at} from device {dev}.
Footage from {from} to {to} (UTC), cameras: {cams}.

HOW TO CHECK THIS EXPORT (OpenSSL 1.1.1 or later, and sha256sum)

1. Unzip the bundle into an empty folder and open a terminal in it.

2. Check that the device signed the manifest:

     openssl pkeyutl -verify -pubin -inkey device.pub.pem -rawin \\
         -in manifest.json -sigfile manifest.sig

   It must print \"Signature Verified Successfully\". Any change to manifest.json
   makes it fail.

3. Check that the key is the device's own: the SHA-256 of the raw public key must be
   {pkh}
   (the device's fingerprint, as published by its operator). Compute it with:

     openssl pkey -pubin -in device.pub.pem -outform DER | tail -c 32 | sha256sum

4. Check every video file against the signed manifest:

     sha256sum *.mp4

   Each line must appear in the \"files\" list of manifest.json, with the same name
   and hash. They are, as listed there:

{files}
The videos are the original recorded frames (no re-encoding) in plain MP4; any player
(VLC, ffplay, a browser) opens them. manifest.json also lists the recording gaps in
the range and the recorded segments used, with the SHA-256 each had when it was
written, so that the clip can be tied to the recording on the device.
",
        id = m.export_id,
        case = m.case,
        by = m.exported_by,
        at = m.exported_at,
        dev = m.device.id,
        from = m.from,
        to = m.to,
        cams = m
            .cameras
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        pkh = m.device.public_key_sha256,
    )
}

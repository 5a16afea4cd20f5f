//! Exports in-process: a real store (the recorder's segment writer and catalog, frames
//! encoded by ffmpeg), the real API router, a manual clock. The bundle is checked with
//! `openssl`, `sha256sum`, `ffprobe`/`ffmpeg` and `verify-export`'s checker; tampering,
//! gaps, retention during a job, roles, the access log and expiry.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use common::{Api, Feed, Person, Resp};
use hardware::signing::{DeviceSigner, MemorySigner};
use recorder::catalog::Catalog;
use recorder::config::Config;
use recorder::footage::Footage;
use recorder::segment::Codec;
use viewer_api::clock::rfc3339;
use viewer_api::export::bundle::Manifest;
use viewer_api::export::{self, Exports};
use viewer_api::policy::Role;
use viewer_api::testdata::{TestFrame, check_with_ffmpeg};

/// 2026-01-01T00:00:00Z: recording starts here.
const T0: i64 = 1_767_225_600_000;
const NOW: i64 = T0 + 3_600_000;
const FPS: i64 = 25;
/// gate is offline from T0+20 s to T0+26 s.
const GAP: (i64, i64) = (T0 + 20_000, T0 + 26_000);

const PEOPLE: &[Person] = &[
    ("pia", Role::Police, Some(&["gate", "hall"])),
    ("pete", Role::Police, Some(&["gate"])),
    ("ivan", Role::It, None),
    ("carl", Role::Contractor, None),
    ("ada", Role::Auditor, None),
];

type Clip = (Vec<u8>, Vec<TestFrame>);

fn clips() -> &'static (Clip, Clip) {
    static C: OnceLock<(Clip, Clip)> = OnceLock::new();
    C.get_or_init(|| {
        (
            viewer_api::testdata::h264_frames(4, FPS as u32, FPS as u32).expect("ffmpeg h264"),
            viewer_api::testdata::h265_frames(4, FPS as u32, FPS as u32).expect("ffmpeg h265"),
        )
    })
}

/// The API (with exports) on a real store: the store is `api.dir/store`.
struct Env {
    api: common::Env,
    store: PathBuf,
    config: Config,
    exports: Arc<Exports>,
}

impl Deref for Env {
    type Target = common::Env;
    fn deref(&self) -> &common::Env {
        &self.api
    }
}

/// Writes `camera`'s footage from `from` to `to` (wall ms) in 2 s segments.
fn record(cfg: &Config, cat: &Catalog, camera: &str, codec: Codec, from: i64, to: i64) {
    let ((avcc, f264), (hvcc, f265)) = clips();
    let (extra, frames) = match codec {
        Codec::H264 => (avcc, f264),
        Codec::H265 => (hvcc, f265),
    };
    let feed = Feed {
        params: common::codec_params(codec, extra.clone()),
        fps: FPS,
        segment_secs: 2,
        frame: |n: i64| {
            let f = &frames[n as usize % frames.len()];
            (f.key, f.data.clone())
        },
    };
    feed.record(cfg, cat, camera, from, to);
}

fn env() -> Env {
    env_recording(|config, cat| {
        record(config, cat, "gate", Codec::H264, T0, GAP.0);
        let g = cat.open_gap("gate", GAP.0, "camera offline").unwrap();
        cat.close_gap(g, GAP.1).unwrap();
        record(config, cat, "gate", Codec::H264, GAP.1, T0 + 40_000);
        record(config, cat, "hall", Codec::H265, T0, T0 + 40_000);
    })
}

/// The API with exports on a store holding what `recording` writes.
fn env_recording(recording: impl FnOnce(&Config, &Catalog)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = common::store_config(dir.path(), "", "", "export_ttl = \"2h\"\n");
    let store = config.storage.path.clone();
    let did = recorder::store::init(&config, &recorder::store::key_provider(&config)).unwrap();
    assert!(did.iter().any(|l| l.contains("signing key")), "{did:?}");
    assert!(dir.path().join("keys/signing.key").exists());
    let cat = Catalog::open(&store).unwrap();
    recording(&config, &cat);

    let mut api = Api::new(NOW, PEOPLE)
        .audit_busy(Duration::from_millis(500))
        .build_in_with(dir, |clock| common::remote_source(&config, clock));
    let exports = common::exports(
        &config,
        api.state.audit.clone(),
        &api.clock,
        Duration::from_secs(2 * 3600),
    );
    api.app = api
        .app
        .merge(export::api::router(api.state.clone(), exports.clone()));
    Env {
        api,
        store,
        config,
        exports,
    }
}

impl Env {
    /// Asks for an export: `POST /api/v1/exports` (here in the place of the common
    /// `post`, which takes a path).
    async fn post(&self, tok: &str, body: Value) -> Resp {
        self.send(common::request("POST", tok, "/api/v1/exports", Some(body)))
            .await
    }

    /// Asks, runs the job, downloads; returns the export id and the zip bytes.
    async fn export(&self, tok: &str, cams: &[&str], from: i64, to: i64) -> (String, Vec<u8>) {
        let r = self
            .post(
                tok,
                json!({"cameras": cams, "from": rfc3339(from), "to": rfc3339(to),
                       "case": "CASE-2026-17", "reason": "burglary at the gate"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.json());
        let id = r.json()["id"].as_str().unwrap().to_string();
        let s = self.get(tok, &format!("/api/v1/exports/{id}")).await.json();
        assert_eq!(s["state"], "queued");
        assert_eq!(self.exports.run_pending(), 1);
        let s = self.get(tok, &format!("/api/v1/exports/{id}")).await.json();
        assert_eq!(s["state"], "done", "{s}");
        assert_eq!(s["progress"], 1.0);
        let d = self
            .get(tok, &format!("/api/v1/exports/{id}/download"))
            .await;
        assert_eq!(d.status, StatusCode::OK);
        assert_eq!(d.headers[header::CONTENT_TYPE], "application/zip");
        (id, d.body)
    }
}

/// Frames the store holds for `[from, to)` of `camera`, counted from the key frame at
/// or before `from`, read independently of the export code.
fn stored_frames(env: &Env, camera: &str, from: i64, to: i64) -> u64 {
    let footage = Footage::open(&env.config).unwrap();
    let mut times = Vec::new();
    for row in footage.segments(camera, from - 60_000, to).unwrap() {
        let mut r = footage.open_segment(&row).unwrap();
        while let Some(g) = r.next_gop().unwrap() {
            let p0 = g.frames[0].pts_90k;
            for f in &g.frames {
                times.push((g.start_unix_ms + (f.pts_90k - p0) / 90, f.key));
            }
        }
    }
    let start = times
        .iter()
        .filter(|(t, k)| *k && *t <= from)
        .map(|(t, _)| *t)
        .max()
        .unwrap();
    times.iter().filter(|(t, _)| *t >= start && *t < to).count() as u64
}

fn unzip(bytes: &[u8], dir: &Path) -> Vec<String> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut names = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        std::fs::write(dir.join(f.name()), v).unwrap();
        names.push(f.name().to_string());
    }
    names
}

fn rezip(bytes: &[u8], change: impl Fn(&str, Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        let name = f.name().to_string();
        w.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(&change(&name, v)).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn verify_bytes(dir: &Path, bytes: &[u8], key: Option<&str>) -> viewer_api::export::verify::Report {
    let p = dir.join("check.zip");
    std::fs::write(&p, bytes).unwrap();
    viewer_api::export::verify::verify(&p, key)
}

fn sh(cmd: &mut Command) -> (bool, String) {
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_camera_export_verifies_with_standard_tools_and_tampering_is_rejected() {
    let env = env();
    let pia = env.token("pia").await;
    let (from, to) = (T0 + 5_500, T0 + 15_200);
    let (id, zip) = env.export(&pia, &["gate", "hall"], from, to).await;

    // the access log has the request, the completion and the download, each one entry
    // per camera, so the subject-access report of each camera finds them
    for (action, cameras) in [
        ("export.request", vec!["gate", "hall"]),
        ("export.done", vec!["gate", "hall"]),
        ("export.download", vec!["gate", "hall"]),
    ] {
        let e = env.entries(action);
        let logged: Vec<&str> = e.iter().filter_map(|x| x.camera.as_deref()).collect();
        assert_eq!(logged, cameras, "{action}");
        for x in &e {
            assert_eq!(x.actor, "pia");
            assert_eq!(x.case.as_deref(), Some("CASE-2026-17"));
            assert_eq!((x.from_ms, x.to_ms), (Some(from), Some(to)), "{action}");
            assert!(x.outcome.starts_with("allowed"), "{}", x.outcome);
        }
    }

    // sealed at rest: no plaintext zip, no spool left
    let files: Vec<_> = std::fs::read_dir(common::state_dir(&env.config).join(export::DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let sealed = std::fs::read(&files[0]).unwrap();
    assert!(!sealed.windows(13).any(|w| w == b"manifest.json"));
    assert!(!sealed.windows(4).any(|w| w == b"PK\x03\x04"));

    let out = env.dir.path().join("unzipped");
    std::fs::create_dir(&out).unwrap();
    let mut names = unzip(&zip, &out);
    names.sort();
    assert_eq!(
        names,
        [
            "VERIFY.txt",
            "device.pub.pem",
            "gate.mp4",
            "hall.mp4",
            "manifest.json",
            "manifest.sig"
        ]
    );
    // openssl, as VERIFY.txt says
    let (ok, text) = sh(Command::new("openssl")
        .current_dir(&out)
        .args([
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "device.pub.pem",
            "-rawin",
        ])
        .args(["-in", "manifest.json", "-sigfile", "manifest.sig"]));
    assert!(
        ok && text.contains("Signature Verified Successfully"),
        "{text}"
    );
    let readme = std::fs::read_to_string(out.join("VERIFY.txt")).unwrap();
    assert!(readme.contains("openssl pkeyutl -verify") && readme.contains("sha256sum"));
    // the device key is the one the API publishes
    let pem = env
        .send(
            Request::get("/api/v1/device-key")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(pem.status, StatusCode::OK);
    assert_eq!(pem.body, std::fs::read(out.join("device.pub.pem")).unwrap());
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m.export_id, id);
    assert_eq!(
        (m.case.as_str(), m.exported_by.as_str()),
        ("CASE-2026-17", "pia")
    );
    assert_eq!((m.from.clone(), m.to.clone()), (rfc3339(from), rfc3339(to)));
    assert!(m.device.id.starts_with("rf-"));
    // sha256sum, as VERIFY.txt says
    let (ok, sums) = sh(Command::new("sha256sum")
        .current_dir(&out)
        .args(["gate.mp4", "hall.mp4"]));
    assert!(ok, "{sums}");
    for f in &m.files {
        assert!(
            sums.contains(&format!("{}  {}", f.sha256, f.name)),
            "{sums}"
        );
        assert_eq!(f.bytes, std::fs::metadata(out.join(&f.name)).unwrap().len());
    }
    // every MP4 decodes, with exactly the stored frames of the range
    for (cam, codec) in [("gate", "h264"), ("hall", "hevc")] {
        let path = out.join(format!("{cam}.mp4"));
        let frames = check_with_ffmpeg(&path).unwrap_or_else(|e| panic!("{cam}: {e}"));
        let want = stored_frames(&env, cam, from, to);
        assert_eq!(frames, want, "{cam}");
        let c = m.cameras.iter().find(|c| c.id == cam).unwrap();
        assert_eq!(c.frames, want);
        assert_eq!(
            c.codec.as_deref(),
            Some(if cam == "gate" { "h264" } else { "h265" })
        );
        // starts at the key frame at or before `from`: T0+5 s (a key frame per second)
        assert_eq!(c.first_frame.as_deref(), Some(rfc3339(T0 + 5_000).as_str()));
        assert_eq!(
            viewer_api::testdata::probe_codec(&path)
                .unwrap()
                .split(',')
                .next(),
            Some(codec)
        );
        // the recording's wall-clock start is in the file's metadata
        let (_, tags) = sh(Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format_tags", "-of", "json"])
            .arg(&path));
        assert!(tags.contains("2026-01-01T00:00:05"), "{cam}: {tags}");
    }
    // source segments with their recorded hashes, as the catalog has them
    let rows = Footage::open(&env.config)
        .unwrap()
        .segments("gate", from, to)
        .unwrap();
    for r in &rows {
        let s = m
            .segments
            .iter()
            .find(|s| s.id == r.id.to_string())
            .unwrap();
        assert_eq!(s.sha256, r.sha256);
        assert!(s.sha256.as_ref().is_some_and(|h| h.len() == 64));
    }
    assert!(m.gaps.is_empty(), "{:?}", m.gaps);

    // verify-export's checker: the bundle passes ...
    let rep = verify_bytes(env.dir.path(), &zip, None);
    assert!(rep.ok, "{:#?}", rep.lines);
    let pin = String::from_utf8(pem.body.clone()).unwrap();
    assert!(verify_bytes(env.dir.path(), &zip, Some(&pin)).ok);
    // ... a flipped byte in any file does not
    for name in [
        "gate.mp4",
        "hall.mp4",
        "manifest.json",
        "manifest.sig",
        "device.pub.pem",
    ] {
        let bad = rezip(&zip, |n, mut v| {
            if n == name {
                let i = v.len() / 2;
                v[i] ^= 0x01;
            }
            v
        });
        let rep = verify_bytes(env.dir.path(), &bad, None);
        assert!(!rep.ok, "flipped byte in {name} accepted");
    }
    // a changed manifest (even re-serialised cleanly) does not
    let bad = rezip(&zip, |n, v| {
        if n == "manifest.json" {
            String::from_utf8(v)
                .unwrap()
                .replace("CASE-2026-17", "CASE-2026-18")
                .into_bytes()
        } else {
            v
        }
    });
    assert!(!verify_bytes(env.dir.path(), &bad, None).ok);
    // a manifest signed by another key does not (with or without its key swapped in)
    let other = MemorySigner::random();
    let msg = std::fs::read(out.join("manifest.json")).unwrap();
    let sig = other.sign(&msg).to_vec();
    let other_pem = hardware::signing::public_key_pem(&other.public_key());
    let resigned = rezip(&zip, |n, v| match n {
        "manifest.sig" => sig.clone(),
        _ => v,
    });
    assert!(!verify_bytes(env.dir.path(), &resigned, None).ok);
    let swapped = rezip(&zip, |n, v| match n {
        "manifest.sig" => sig.clone(),
        "device.pub.pem" => other_pem.clone().into_bytes(),
        _ => v,
    });
    let rep = verify_bytes(env.dir.path(), &swapped, None);
    assert!(!rep.ok, "{:#?}", rep.lines);
    assert!(!verify_bytes(env.dir.path(), &swapped, Some(&pin)).ok);
    // openssl agrees about the foreign signature
    std::fs::write(out.join("manifest.sig"), &sig).unwrap();
    let (ok, _) = sh(Command::new("openssl")
        .current_dir(&out)
        .args([
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "device.pub.pem",
            "-rawin",
        ])
        .args(["-in", "manifest.json", "-sigfile", "manifest.sig"]));
    assert!(!ok);
    // an added file is refused too
    let mut extra = zip::ZipWriter::new_append(std::io::Cursor::new(zip.clone())).unwrap();
    extra
        .start_file("extra.mp4", zip::write::SimpleFileOptions::default())
        .unwrap();
    extra.write_all(b"x").unwrap();
    let extra = extra.finish().unwrap().into_inner();
    assert!(!verify_bytes(env.dir.path(), &extra, None).ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_over_a_gap_lists_the_gap() {
    let env = env();
    let pia = env.token("pia").await;
    let (from, to) = (T0 + 15_000, T0 + 31_000);
    let (_, zip) = env.export(&pia, &["gate"], from, to).await;
    let out = env.dir.path().join("gap");
    std::fs::create_dir(&out).unwrap();
    unzip(&zip, &out);
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m.gaps.len(), 1, "{:?}", m.gaps);
    assert_eq!(m.gaps[0].reason, "camera offline");
    assert_eq!(m.gaps[0].from, rfc3339(GAP.0));
    assert_eq!(m.gaps[0].to.as_deref(), Some(rfc3339(GAP.1).as_str()));
    let frames = check_with_ffmpeg(&out.join("gate.mp4")).unwrap();
    assert_eq!(frames, stored_frames(&env, "gate", from, to));
    assert_eq!(frames as i64, (GAP.0 - from + to - GAP.1) * FPS / 1000);
    // the file's timeline keeps the gap: its duration is the wall-clock span
    let (_, d) = sh(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(out.join("gate.mp4")));
    let secs: f64 = d.trim().parse().unwrap();
    assert!((secs - 16.0).abs() < 0.2, "{secs}");
    assert!(verify_bytes(env.dir.path(), &zip, None).ok);
}

/// A camera whose codec changes inside the range (a replaced camera, new firmware):
/// the export has one file per codec, every stored frame of the range in one of them,
/// each playable, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codec_change_inside_the_range_starts_a_second_file() {
    let env = env_recording(|config, cat| {
        record(config, cat, "gate", Codec::H264, T0, T0 + 10_000);
        record(config, cat, "gate", Codec::H265, T0 + 10_000, T0 + 20_000);
    });
    let pia = env.token("pia").await;
    let (from, to) = (T0 + 4_500, T0 + 16_000);
    let (_, zip) = env.export(&pia, &["gate"], from, to).await;
    let out = env.dir.path().join("parts");
    std::fs::create_dir(&out).unwrap();
    unzip(&zip, &out);
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m.cameras[0].files, ["gate.mp4", "gate-part2.mp4"]);
    let first = check_with_ffmpeg(&out.join("gate.mp4")).unwrap();
    let second = check_with_ffmpeg(&out.join("gate-part2.mp4")).unwrap();
    assert_eq!(first as i64, (T0 + 10_000 - (T0 + 4_000)) * FPS / 1000);
    assert_eq!(first + second, stored_frames(&env, "gate", from, to));
    assert_eq!(m.cameras[0].frames, first + second);
    assert!(verify_bytes(env.dir.path(), &zip, None).ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn footage_due_for_deletion_survives_while_the_job_runs() {
    use recorder::retention::{Policy, Retention};
    let env = env();
    let pia = env.token("pia").await;
    // Retention of 30 min at NOW (T0 + 1 h): every segment is due for deletion.
    let wall = Arc::new(recorder::clock::ManualClock::new(NOW));
    let mono = Arc::new(recorder::clock::ManualClock::new(0));
    let policy = Policy {
        retention_ms: 30 * 60 * 1000,
        camera_retention_ms: Default::default(),
        max_bytes: u64::MAX / 4,
        camera_max_bytes: Default::default(),
        min_free_bytes: 0,
    };
    let ret = Arc::new(Mutex::new(
        Retention::new(&env.store, policy, wall.clone(), mono.clone(), None).unwrap(),
    ));
    let (from, to) = (T0 + 2_000, T0 + 9_000);
    let r = env
        .post(
            &pia,
            json!({"cameras": ["gate"], "from": rfc3339(from), "to": rfc3339(to),
                   "case": "CASE-9", "reason": "assault"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let want = stored_frames(&env, "gate", from, to);
    // A retention pass runs after each segment the job reads.
    let deleted = Arc::new(Mutex::new(0u64));
    {
        let (ret, deleted, wall, mono) = (ret.clone(), deleted.clone(), wall.clone(), mono.clone());
        *env.exports.after_segment.lock().unwrap() = Some(Box::new(move |_| {
            wall.advance_ms(1_000);
            mono.advance_ms(1_000);
            let rep = ret.lock().unwrap().pass().unwrap();
            *deleted.lock().unwrap() += rep.deleted();
        }));
    }
    assert_eq!(env.exports.run_pending(), 1);
    let s = env.get(&pia, &format!("/api/v1/exports/{id}")).await.json();
    assert_eq!(s["state"], "done", "{s}");
    assert!(*deleted.lock().unwrap() > 10, "retention deleted nothing");
    let d = env
        .get(&pia, &format!("/api/v1/exports/{id}/download"))
        .await;
    let out = env.dir.path().join("held");
    std::fs::create_dir(&out).unwrap();
    unzip(&d.body, &out);
    assert_eq!(check_with_ffmpeg(&out.join("gate.mp4")).unwrap(), want);
    // the hold went with the job: the next pass deletes the footage
    let cat = Catalog::open(&env.store).unwrap();
    let holds = recorder::holds::list(&cat).unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].case_ref, "CASE-9");
    assert_eq!(holds[0].placed_by, "pia");
    assert!(holds[0].released_unix_ms.is_some());
    *env.exports.after_segment.lock().unwrap() = None;
    wall.advance_ms(1_000);
    mono.advance_ms(1_000);
    ret.lock().unwrap().pass().unwrap();
    assert!(cat.segments(Some("gate")).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_cases_and_scopes_are_enforced_and_logged() {
    let env = env();
    let pia = env.token("pia").await;
    let pete = env.token("pete").await;
    let body = |cams: Value| {
        json!({"cameras": cams, "from": rfc3339(T0 + 1_000), "to": rfc3339(T0 + 3_000),
               "case": "CASE-1", "reason": "theft"})
    };
    for user in ["ivan", "carl", "ada"] {
        let t = env.token(user).await;
        assert_eq!(
            env.post(&t, body(json!(["gate"]))).await.status,
            StatusCode::FORBIDDEN,
            "{user}"
        );
    }
    let mut no_case = body(json!(["gate"]));
    no_case.as_object_mut().unwrap().remove("case");
    assert_eq!(
        env.post(&pia, no_case).await.status,
        StatusCode::BAD_REQUEST
    );
    let mut blank_case = body(json!(["gate"]));
    blank_case["case"] = json!("  ");
    assert_eq!(
        env.post(&pia, blank_case).await.status,
        StatusCode::BAD_REQUEST
    );
    let mut no_reason = body(json!(["gate"]));
    no_reason.as_object_mut().unwrap().remove("reason");
    assert_eq!(
        env.post(&pia, no_reason).await.status,
        StatusCode::BAD_REQUEST
    );
    let mut long = body(json!(["gate"]));
    long["to"] = json!(rfc3339(T0 + 25 * 3_600_000));
    assert_eq!(env.post(&pia, long).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        env.post(&pia, body(json!(["roof"]))).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        env.post(&pete, body(json!(["hall"]))).await.status,
        StatusCode::FORBIDDEN
    );
    // nothing was queued, every refusal is in the log
    assert_eq!(env.exports.run_pending(), 0);
    let denied = env.entries("export.request");
    assert_eq!(denied.len(), 9);
    assert!(denied.iter().all(|e| e.outcome.starts_with("denied")));
    // a lower item of finding 11 (issue 9): no invisible or bidirectional controls
    for bad in [
        "CASE\u{202E}71",
        "CASE\u{200B}17",
        "\u{2066}CASE-17\u{2069}",
    ] {
        let mut b = body(json!(["gate"]));
        b["case"] = json!(bad);
        assert_eq!(
            env.post(&pia, b).await.status,
            StatusCode::BAD_REQUEST,
            "{bad:?}"
        );
        let mut b = body(json!(["gate"]));
        b["reason"] = json!(bad);
        assert_eq!(
            env.post(&pia, b).await.status,
            StatusCode::BAD_REQUEST,
            "{bad:?}"
        );
    }

    // pia's export of gate
    let (id, _) = env.export(&pia, &["gate"], T0 + 1_000, T0 + 3_000).await;
    let status = format!("/api/v1/exports/{id}");
    let dl = format!("/api/v1/exports/{id}/download");
    // another police user: only naming the same case
    assert_eq!(env.get(&pete, &status).await.status, StatusCode::FORBIDDEN);
    assert_eq!(env.get(&pete, &dl).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        env.get(&pete, &format!("{dl}?case=CASE-2")).await.status,
        StatusCode::FORBIDDEN
    );
    let ok = env.get(&pete, &format!("{dl}?case=CASE-2026-17")).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(&ok.body[..4], b"PK\x03\x04");
    // other roles never
    for user in ["ivan", "ada", "carl"] {
        let t = env.token(user).await;
        assert_eq!(env.get(&t, &status).await.status, StatusCode::FORBIDDEN);
        assert_eq!(
            env.get(&t, &format!("{dl}?case=CASE-2026-17")).await.status,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        env.get(&pia, "/api/v1/exports/00000000000000000000000000000000")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // every download attempt is logged, before the bytes
    let d = env.entries("export.download");
    let allowed: Vec<_> = d.iter().filter(|e| e.outcome == "allowed").collect();
    assert_eq!(allowed.len(), 2);
    assert_eq!(allowed[1].actor, "pete");
    assert_eq!(allowed[1].camera.as_deref(), Some("gate"));
    assert_eq!(d.len(), 2 + 2 + 3);
    assert!(viewer_api::audit::verify(&env.dir.path().join("audit.sqlite")).is_ok());
}

/// Finding 6 of issue 9: the subject-access report of a camera lists every footage
/// action on it, one entry per camera: playback, live view, and an export of several
/// cameras asked for and downloaded (before: exports were missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subject_access_report_lists_every_footage_action() {
    let env = env();
    let pia = env.token("pia").await;
    let ada = env.token("ada").await;
    let q = |from: i64, to: i64| {
        format!(
            "from={}&to={}",
            rfc3339(from).replace('+', "%2B"),
            rfc3339(to).replace('+', "%2B")
        )
    };
    let r = env
        .get(
            &pia,
            &format!(
                "/api/v1/cameras/gate/video.mp4?{}&case=CASE-9",
                q(T0 + 1_000, T0 + 3_000)
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // live: the answer is what matters (the stream is endless); dropping it ends it
    let mut req = Request::get("/api/v1/cameras/hall/live.mp4?case=CASE-9")
        .header(header::AUTHORIZATION, format!("Bearer {pia}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("10.1.2.3:5555".parse::<SocketAddr>().unwrap()));
    let live = env.app.clone().oneshot(req).await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    drop(live);
    env.export(&pia, &["gate", "hall"], T0 + 1_000, T0 + 5_000)
        .await;
    async fn report(env: &Env, ada: &str, cam: &str, from: i64, to: i64) -> Vec<String> {
        let uri = format!(
            "/api/v1/audit/subject-access?camera={cam}&from={}&to={}",
            rfc3339(from).replace('+', "%2B"),
            rfc3339(to).replace('+', "%2B")
        );
        let r = env.get(ada, &uri).await;
        assert_eq!(r.status, StatusCode::OK);
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e["camera"], cam, "{e}");
                assert_eq!(e["actor"], "pia");
                e["action"].as_str().unwrap().to_string()
            })
            .collect()
    }
    // who saw gate at T0+2 s: the playback, the export asked for and downloaded
    assert_eq!(
        report(&env, &ada, "gate", T0 + 2_000, T0 + 2_001).await,
        ["playback", "export.request", "export.download"]
    );
    assert_eq!(
        report(&env, &ada, "hall", T0 + 2_000, T0 + 2_001).await,
        ["export.request", "export.download"]
    );
    // and hall live, now (its end, live.end, comes when the stream has stopped)
    let now = report(&env, &ada, "hall", NOW - 1_000, NOW + 1_000).await;
    assert_eq!(now[0], "live", "{now:?}");
    assert!(now[1..].iter().all(|a| a == "live.end"), "{now:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_exports_are_deleted_and_journaled() {
    let env = env();
    let pia = env.token("pia").await;
    let (id, _) = env.export(&pia, &["hall"], T0 + 1_000, T0 + 2_000).await;
    let bundle = common::state_dir(&env.config)
        .join(export::DIR)
        .join(format!("{id}.rfx"));
    assert!(bundle.exists());
    env.clock.advance_ms(2 * 3_600_000 - 1_000);
    assert_eq!(env.exports.sweep(), 0);
    assert!(bundle.exists());
    env.clock.advance_ms(2_000);
    assert_eq!(env.exports.sweep(), 1);
    let pia = env.token("pia").await;
    assert!(!bundle.exists());
    let e = env.entries("export.expire");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].actor, "system");
    assert!(e[0].purpose.as_deref().unwrap().contains(&id));
    let s = env.get(&pia, &format!("/api/v1/exports/{id}")).await;
    assert_eq!(s.status, StatusCode::GONE);
    let d = env
        .get(&pia, &format!("/api/v1/exports/{id}/download"))
        .await;
    assert_eq!(d.status, StatusCode::GONE);
    assert_eq!(env.exports.sweep(), 0);
}

/// A lower item of finding 11 (issue 9): exports have a quota. An officer gets at most
/// three in progress (the fourth: 429, logged as denied, nothing queued, no hold); others
/// are not blocked by one officer's queue; once the jobs run, more may be asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_in_progress_are_limited_per_officer() {
    let env = env();
    let pia = env.token("pia").await;
    let pete = env.token("pete").await;
    let body = |cams: Value| {
        json!({"cameras": cams, "from": rfc3339(T0 + 1_000), "to": rfc3339(T0 + 3_000),
               "case": "CASE-Q", "reason": "quota"})
    };
    for _ in 0..export::MAX_ACTIVE_PER_USER {
        let r = env.post(&pia, body(json!(["gate"]))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.json());
    }
    let r = env.post(&pia, body(json!(["gate"]))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.error().contains("in progress"), "{}", r.error());
    let last = env.entries("export.request").pop().unwrap();
    assert!(
        last.outcome
            .starts_with("denied: you have 3 exports in progress"),
        "{}",
        last.outcome
    );
    assert_eq!(
        env.exports.jobs_of("pia", 100).unwrap().len(),
        3,
        "the refused request queued nothing"
    );
    // another officer is not held up by pia's queue
    let r = env.post(&pete, body(json!(["gate"]))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.json());
    assert_eq!(env.exports.run_pending(), 4);
    assert_eq!(
        env.post(&pia, body(json!(["gate"]))).await.status,
        StatusCode::ACCEPTED
    );
}

//! Exports in-process: a real store (the recorder's segment writer and catalog, frames
//! encoded by ffmpeg), the real API router, a manual clock. The bundle is checked with
//! `openssl`, `sha256sum`, `ffprobe`/`ffmpeg` and `verify-export`'s checker; tampering,
//! gaps, retention during a job, roles, the access log and expiry.

#[path = "../common/mod.rs"]
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

mod bundle;
mod rules;

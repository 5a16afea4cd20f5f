//! End to end with real processes: the test camera (H.264 and H.265 mounts) → `recorder
//! run` → `viewer-api serve` over HTTPS → a police export of both cameras, checked as a
//! stranger would: `viewer-api verify-export`, `openssl`, `sha256sum`, `ffprobe` and a
//! full `ffmpeg` decode, with the frame counts the store holds for the range.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ringfence_tests::procs::{Api, Site, add_user, now_ms, run_bin};
use serde_json::{Value, json};
use viewer_api::clock::rfc3339;
use viewer_api::testdata::check_with_ffmpeg;

const FPS: u32 = 25;
const PW: &str = "export-e2e-pw-1";

/// Runs a workspace binary; (exit code, stdout and stderr together).
fn run(bin: &str, args: &[&str], config: Option<&Path>, stdin: Option<&str>) -> (i32, String) {
    let (code, out, err) = run_bin(bin, args, config, stdin);
    (code, format!("{out}{err}"))
}

/// Frames the store holds for `[from, to)`, from the key frame at or before `from`.
fn stored_frames(config: &Path, camera: &str, from: i64, to: i64) -> u64 {
    let cfg = recorder::config::Config::load(config).unwrap();
    let footage = recorder::footage::Footage::open(&cfg).unwrap();
    let mut times = Vec::new();
    for row in footage.segments(camera, from - 60_000, to).unwrap() {
        let mut r = footage.open_segment(&row).unwrap();
        while let Ok(Some(g)) = r.next_gop() {
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
        .expect("a key frame before from");
    times.iter().filter(|(t, _)| *t >= start && *t < to).count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn police_export_of_two_cameras_verifies_with_standard_tools() {
    let started = Instant::now();
    let site = Site::new(FPS, "export_ttl = \"1d\"");
    let (dir, config, port) = (&site.dir, site.config.clone(), site.port);
    let out = site.init();
    assert!(out.contains("signing key"), "{out}");
    let t_start = now_ms();
    let _recorder = site.spawn("recorder", "run");
    add_user(&config, "pia", "police", Some("gate,hall"), PW);
    add_user(&config, "ivan", "it", None, PW);
    let _server = site.spawn("viewer-api", "serve");
    let api = Api::new(port);
    api.wait_up(Duration::from_secs(20)).await;
    let pia = api.login("pia", PW).await;
    let ivan = api.login("ivan", PW).await;

    // Record a while; the range lies in closed segments.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let (from, to) = (t_start + 3_300, now_ms() - 2_500);
    let body = json!({"cameras": ["gate", "hall"], "from": rfc3339(from), "to": rfc3339(to),
                      "case": "CASE-E2E-1", "reason": "incident at the gate"});
    let s = api
        .post(&ivan, "/api/v1/exports", body.clone())
        .await
        .status;
    assert_eq!(s, 403, "it may not export");
    let mut no_case = body.clone();
    no_case.as_object_mut().unwrap().remove("case");
    assert_eq!(api.post(&pia, "/api/v1/exports", no_case).await.status, 400);
    let r = api.post(&pia, "/api/v1/exports", body).await;
    let (s, v) = (r.status, r.json());
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let t_req = Instant::now();
    loop {
        let r = api.get(&pia, &format!("/api/v1/exports/{id}")).await;
        assert_eq!(r.status, 200);
        let st = r.json();
        let p = st["progress"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        match st["state"].as_str().unwrap() {
            "done" => break,
            "queued" | "running" => {}
            other => panic!("export {other}: {st}"),
        }
        assert!(t_req.elapsed() < Duration::from_secs(30), "export too slow");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = api
        .get(&pia, &format!("/api/v1/exports/{id}/download"))
        .await;
    assert_eq!(r.status, 200);
    let zip = r.body;
    let bundle = dir.path().join("bundle.zip");
    std::fs::write(&bundle, &zip).unwrap();

    // verify-export, on "another computer": the bundle only, no config
    let (code, out) = run(
        "viewer-api",
        &["verify-export", bundle.to_str().unwrap()],
        None,
        None,
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("export verified") && out.contains("valid Ed25519"),
        "{out}"
    );

    // unzip, then openssl and sha256sum exactly as VERIFY.txt says
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(&zip)).unwrap();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        std::fs::write(x.join(f.name()), v).unwrap();
    }
    let o = Command::new("openssl")
        .current_dir(&x)
        .args([
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "device.pub.pem",
            "-rawin",
        ])
        .args(["-in", "manifest.json", "-sigfile", "manifest.sig"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(x.join("manifest.json")).unwrap()).unwrap();
    let o = Command::new("sha256sum")
        .current_dir(&x)
        .args(["gate.mp4", "hall.mp4"])
        .output()
        .unwrap();
    let sums = String::from_utf8_lossy(&o.stdout);
    for f in manifest["files"].as_array().unwrap() {
        let line = format!(
            "{}  {}",
            f["sha256"].as_str().unwrap(),
            f["name"].as_str().unwrap()
        );
        assert!(sums.contains(&line), "{sums} lacks {line}");
    }
    // every MP4 decodes, with the frames the store holds for the range
    for c in ["gate", "hall"] {
        let got =
            check_with_ffmpeg(&x.join(format!("{c}.mp4"))).unwrap_or_else(|e| panic!("{c}: {e}"));
        let want = stored_frames(&config, c, from, to);
        assert_eq!(got, want, "{c}");
        assert!(got as u32 >= 3 * FPS, "{c}: only {got} frames");
    }
    // the published device key is the bundle's
    let key = api
        .http
        .get(format!("{}/api/v1/device-key", api.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        &key[..],
        &std::fs::read(x.join("device.pub.pem")).unwrap()[..]
    );
    let pinned = dir.path().join("device.pub.pem");
    std::fs::write(&pinned, &key).unwrap();
    let (code, out) = run(
        "viewer-api",
        &[
            "verify-export",
            bundle.to_str().unwrap(),
            "--key",
            pinned.to_str().unwrap(),
        ],
        None,
        None,
    );
    assert_eq!(code, 0, "{out}");

    // a flipped byte inside the video data is rejected
    let mut bad = zip.clone();
    let i = bad.len() / 3;
    bad[i] ^= 0x40;
    let bad_path = dir.path().join("bad.zip");
    std::fs::write(&bad_path, &bad).unwrap();
    let (code, out) = run(
        "viewer-api",
        &["verify-export", bad_path.to_str().unwrap()],
        None,
        None,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("EXPORT REJECTED"), "{out}");

    // the access log shows the request, the completion and the download
    let r = api.get(&pia, "/api/v1/audit").await;
    assert_eq!(r.status, 200);
    let log = r.json();
    for action in ["export.request", "export.done", "export.download"] {
        assert!(
            log.as_array().unwrap().iter().any(|e| e["action"] == action
                && e["case"] == "CASE-E2E-1"
                && e["outcome"].as_str().unwrap().starts_with("allowed")),
            "{action} missing: {log}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

//! End to end: the test camera (a real RTSP server) → the `recorder` process → the
//! store, judged by `recorder check --json` as an operator would.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use ringfence_tests::{CameraOpts, MountSpec, TestCamera, bin_path, free_port};
use serde_json::Value;

const FPS: u32 = 25;

/// A recorder with its own store, config and key in a temporary folder.
struct Recorder {
    dir: tempfile::TempDir,
    config: PathBuf,
    metrics_port: u16,
    child: Option<Child>,
    log: PathBuf,
    runs: u32,
}

struct Cam<'a> {
    id: &'a str,
    url: String,
    extra: &'a str,
}

impl Recorder {
    fn new(cams: &[Cam<'_>], storage_extra: &str) -> Recorder {
        let dir = tempfile::tempdir().unwrap();
        let metrics_port = free_port();
        let mut toml = format!(
            "[storage]\npath = \"{store}\"\nsegment_secs = 2\nsync_interval_ms = 200\n{storage_extra}\n\
             [keys]\nkek_file = \"{kek}\"\n[metrics]\naddr = \"127.0.0.1:{metrics_port}\"\n",
            store = dir.path().join("store").display(),
            kek = dir.path().join("kek").display(),
        );
        for c in cams {
            toml.push_str(&format!(
                "[[cameras]]\nid = \"{}\"\nurl = \"{}\"\n{}\n",
                c.id, c.url, c.extra
            ));
        }
        let config = dir.path().join("ringfence.toml");
        fs::write(&config, toml).unwrap();
        let log = dir.path().join("recorder.log");
        Recorder {
            dir,
            config,
            metrics_port,
            child: None,
            log,
            runs: 0,
        }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(bin_path("recorder"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    fn init(&self) {
        let out = self.cmd(&["init"]);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&mut self) {
        assert!(self.child.is_none());
        self.runs += 1;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bin_path("recorder"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGTERM and wait: the recorder must exit 0 within a few seconds.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "recorder exited with {status}; log:\n{}",
                    self.log_text()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "recorder did not stop within 10 s"
            );
            sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn check(&self) -> (bool, Value) {
        let out = self.cmd(&["check", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "check printed no JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        match out.status.code() {
            Some(0) => (true, v),
            Some(1) => (false, v),
            other => panic!(
                "check exited {other:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    fn check_ok(&self) -> Value {
        let (ok, v) = self.check();
        assert!(ok, "check found problems: {v:#}\nlog:\n{}", self.log_text());
        assert_eq!(v["problems"].as_array().unwrap().len(), 0);
        v
    }

    /// `metric{camera="id"}` values, scraped from the running recorder.
    fn metrics(&self) -> HashMap<(String, String), f64> {
        let text = http_get(self.metrics_port, "/metrics").unwrap_or_default();
        let mut out = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name_labels, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (name, labels) = name_labels.split_once('{').unwrap_or((name_labels, ""));
            let camera = labels
                .split("camera=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string();
            if let Ok(v) = value.parse::<f64>() {
                out.insert((name.to_string(), camera), v);
            }
        }
        out
    }

    fn metric(&self, name: &str, camera: &str) -> f64 {
        self.metrics()
            .get(&(name.to_string(), camera.to_string()))
            .copied()
            .unwrap_or(0.0)
    }

    /// Waits until `camera` has stored at least `frames` frames in this run.
    fn wait_stored(&self, camera: &str, frames: f64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.metric("ringfence_frames_stored_total", camera) < frames {
            assert!(
                Instant::now() < deadline,
                "camera {camera} did not store {frames} frames within {timeout:?}; log:\n{}",
                self.log_text()
            );
            sleep(Duration::from_millis(100));
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

fn camera<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("camera {id} missing from {v:#}"))
}

fn small(name: &str, codec_h265: bool) -> MountSpec {
    let m = if codec_h265 {
        MountSpec::h265(name)
    } else {
        MountSpec::h264(name)
    };
    m.size(320, 240).fps(FPS).gop(FPS).bitrate_kbps(300)
}

fn camera_opts(mounts: Vec<MountSpec>) -> CameraOpts {
    CameraOpts {
        clip_secs: 4,
        ..CameraOpts::with_mounts(mounts)
    }
}

#[test]
fn records_h264_and_h265_and_check_accounts_for_every_frame() {
    let cam = TestCamera::start(&camera_opts(vec![small("a", false), small("b", true)])).unwrap();
    let mut rec = Recorder::new(
        &[
            Cam {
                id: "cam-264",
                url: cam.url("a"),
                extra: "",
            },
            Cam {
                id: "cam-265",
                url: cam.url("b"),
                extra: "",
            },
        ],
        "",
    );
    rec.init();
    rec.start();
    rec.wait_stored("cam-264", 5.0 * FPS as f64, Duration::from_secs(60));
    rec.wait_stored("cam-265", 5.0 * FPS as f64, Duration::from_secs(60));
    // A check beside the running recorder is consistent too.
    rec.check_ok();
    let received: HashMap<&str, f64> = ["cam-264", "cam-265"]
        .iter()
        .map(|c| (*c, rec.metric("ringfence_frames_total", c)))
        .collect();
    rec.stop();
    let v = rec.check_ok();
    for (id, codec) in [("cam-264", "h264"), ("cam-265", "h265")] {
        let c = camera(&v, id);
        assert_eq!(c["codec"], codec, "{c:#}");
        let frames = c["frames"].as_u64().unwrap();
        let key_frames = c["key_frames"].as_u64().unwrap();
        // Everything received up to the last scrape was stored, plus what came after.
        assert!(
            frames as f64 >= received[id],
            "{id}: stored {frames} < received {}",
            received[id]
        );
        assert!(frames >= 5 * FPS as u64, "{id}: {frames} frames");
        // At exit the recorder accounts for every frame it received: all stored.
        let summary = rec
            .log_text()
            .lines()
            .find(|l| l.contains("camera summary") && l.contains(&format!("camera={id} ")))
            .unwrap_or_else(|| panic!("no summary for {id}"))
            .to_string();
        let field = |name: &str| -> u64 {
            summary
                .split(&format!(" {name}="))
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in {summary}"))
        };
        assert_eq!(field("frames_received"), frames, "{summary}");
        assert_eq!(field("frames_stored"), frames, "{summary}");
        assert_eq!(field("frames_dropped"), 0, "{summary}");
        // One key frame per second, every GOP starting a chunk.
        let expected_keys = frames.div_ceil(FPS as u64);
        assert!(
            key_frames.abs_diff(expected_keys) <= 1,
            "{id}: {key_frames} key frames for {frames} frames"
        );
        // segment_secs = 2 over > 5 s of video.
        assert!(c["segments"].as_u64().unwrap() >= 3, "{c:#}");
        assert!(c["bytes"].as_u64().unwrap() > 0);
        assert!(c["first"].as_str().unwrap() < c["last"].as_str().unwrap());
        assert!(c["gaps"].as_array().unwrap().is_empty(), "{c:#}");
    }
    assert_eq!(v["recovered_segments"], 0);
    assert_plaintext_absent(&rec.store(), &cam.url("a"));
}

/// Takes stretches of the camera's H.264 stream as ffmpeg receives it and proves that
/// none of them occurs in any file of the store.
fn assert_plaintext_absent(store: &Path, url: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let es = tmp.path().join("stream.h264");
    let out = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-i",
            url,
            "-t",
            "2",
            "-c",
            "copy",
            "-f",
            "h264",
        ])
        .arg(&es)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stream = fs::read(&es).unwrap();
    assert!(stream.len() > 10_000);
    let probes: Vec<&[u8]> = (1..=24)
        .map(|i| {
            let at = stream.len() * i / 26;
            &stream[at..at + 24]
        })
        .collect();
    let mut files = vec![];
    let mut stack = vec![store.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p)
            } else {
                files.push(p)
            }
        }
    }
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "seg"))
    );
    for f in files {
        let bytes = fs::read(&f).unwrap();
        for p in &probes {
            assert!(
                !bytes.windows(p.len()).any(|w| w == *p),
                "{} holds plaintext of the stream",
                f.display()
            );
        }
    }
}

#[test]
fn kill_9_at_random_moments_loses_at_most_sync_interval_plus_one_gop() {
    let cam = TestCamera::start(&camera_opts(vec![small("a", false), small("b", true)])).unwrap();
    let mut rec = Recorder::new(
        &[
            Cam {
                id: "k264",
                url: cam.url("a"),
                extra: "",
            },
            Cam {
                id: "k265",
                url: cam.url("b"),
                extra: "",
            },
        ],
        "",
    );
    rec.init();
    // The bound: sync_interval (200 ms) + one GOP (1 s) of frames, plus the frames
    // that arrive between the last metrics scrape and the kill.
    let bound = (0.2 + 1.0 + 0.3) * FPS as f64;
    let mut seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut stored_before: HashMap<&str, u64> = HashMap::from([("k264", 0), ("k265", 0)]);
    for round in 0..3 {
        rec.start();
        rec.wait_stored("k264", FPS as f64, Duration::from_secs(60));
        rec.wait_stored("k265", FPS as f64, Duration::from_secs(60));
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        sleep(Duration::from_millis(300 + (seed >> 33) % 2500));
        let m = rec.metrics();
        rec.kill9();
        let (ok, v) = rec.check();
        // Until the recorder recovers them, the cut segments are reported.
        assert!(!ok, "check passed right after kill -9: {v:#}");
        let recovered_before = v["recovered_segments"].as_u64().unwrap();
        rec.start();
        // Recovery happens before recording starts; stop again and judge.
        rec.wait_stored("k264", 1.0, Duration::from_secs(60));
        rec.stop();
        let v2 = rec.check_ok();
        assert!(
            v2["recovered_segments"].as_u64().unwrap() > recovered_before,
            "{v2:#}"
        );
        for id in ["k264", "k265"] {
            let received = m[&("ringfence_frames_total".to_string(), id.to_string())];
            // Frames of the killed run = all stored now − before − what the short
            // second run stored after the kill: bound it from below with check's frames
            // right after recovery instead.
            let after_kill = camera(&v, id)["frames"].as_u64().unwrap();
            let lost = received - (after_kill - stored_before[id]) as f64;
            assert!(
                lost <= bound,
                "round {round} {id}: lost {lost} frames > bound {bound} (received {received}, stored {})",
                after_kill - stored_before[id]
            );
            let gaps = camera(&v2, id)["gaps"].as_array().unwrap().clone();
            assert!(
                gaps.iter().any(|g| g["reason"]
                    .as_str()
                    .unwrap()
                    .contains("crash or power loss")),
                "{id}: {gaps:?}"
            );
            stored_before.insert(id, camera(&v2, id)["frames"].as_u64().unwrap());
        }
    }
}

#[test]
fn camera_flaps_are_ridden_through_and_recorded_as_gaps() {
    let mut cam = TestCamera::start(&camera_opts(vec![small("a", false)])).unwrap();
    let mut rec = Recorder::new(
        &[Cam {
            id: "flappy",
            url: cam.url("a"),
            extra: "",
        }],
        "",
    );
    rec.init();
    rec.start();
    rec.wait_stored("flappy", FPS as f64, Duration::from_secs(60));
    // 1: the camera drops its clients.
    cam.drop_clients().unwrap();
    let before = rec.metric("ringfence_frames_stored_total", "flappy");
    rec.wait_stored("flappy", before + 2.0 * FPS as f64, Duration::from_secs(30));
    // 2: the camera goes away for a while, then comes back on the same port.
    cam.stop().unwrap();
    sleep(Duration::from_secs(2));
    cam.restart().unwrap();
    let before = rec.metric("ringfence_frames_stored_total", "flappy");
    rec.wait_stored("flappy", before + 2.0 * FPS as f64, Duration::from_secs(60));
    assert!(rec.metric("ringfence_reconnects_total", "flappy") >= 2.0);
    rec.stop();
    let v = rec.check_ok();
    let gaps = camera(&v, "flappy")["gaps"].as_array().unwrap().clone();
    assert!(gaps.len() >= 2, "{gaps:#?}");
    for g in &gaps {
        assert!(
            g["to"].is_string(),
            "gap still open after recording resumed: {g}"
        );
        assert!(g["from"].as_str().unwrap() <= g["to"].as_str().unwrap());
        assert!(!g["reason"].as_str().unwrap().is_empty());
    }
    // The outage while the server was down spans at least the 2 s it was away.
    let longest = gaps
        .iter()
        .map(|g| {
            let ms = |s: &Value| chrono_ms(s.as_str().unwrap());
            ms(&g["to"]) - ms(&g["from"])
        })
        .max()
        .unwrap();
    assert!(longest >= 1500, "{gaps:#?}");
}

fn chrono_ms(s: &str) -> i64 {
    // "2026-11-29T06:18:28.408Z"
    let (date, time) = s.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    ((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1000 + ms.parse::<i64>().unwrap()
}

#[test]
fn unreachable_and_wrong_password_cameras_are_reported_not_fatal() {
    let cam = TestCamera::start(&CameraOpts {
        user: Some("viewer".into()),
        password: Some("right-horse".into()),
        ..camera_opts(vec![small("a", false)])
    })
    .unwrap();
    let nobody = format!("rtsp://127.0.0.1:{}/none", free_port());
    let mut rec = Recorder::new(
        &[
            Cam {
                id: "good",
                url: cam.url("a"),
                extra: "username = \"viewer\"\npassword = \"right-horse\"",
            },
            Cam {
                id: "badpw",
                url: cam.url("a"),
                extra: "username = \"viewer\"\npassword = \"wrong-battery\"",
            },
            Cam {
                id: "gone",
                url: nobody,
                extra: "",
            },
        ],
        // The viewer-api's service cannot start either: recording goes on.
        "[service]\nsocket = \"/nonexistent-ringfence-dir/recorder.sock\"\n",
    );
    rec.init();
    rec.start();
    rec.wait_stored("good", 2.0 * FPS as f64, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(20);
    while rec.metric("ringfence_reconnects_total", "badpw") < 2.0
        || rec.metric("ringfence_reconnects_total", "gone") < 2.0
    {
        assert!(Instant::now() < deadline, "no retries seen");
        sleep(Duration::from_millis(200));
    }
    let text = http_get(rec.metrics_port, "/metrics").unwrap();
    let state = |cam: &str, s: &str| {
        text.contains(&format!(
            "ringfence_camera_state{{camera=\"{cam}\",state=\"{s}\"}} 1"
        ))
    };
    assert!(state("good", "recording"));
    assert!(state("badpw", "offline") || state("badpw", "connecting"));
    rec.stop();
    let v = rec.check_ok();
    let reason = |id: &str| -> String {
        let gaps = camera(&v, id)["gaps"].as_array().unwrap().clone();
        assert!(!gaps.is_empty(), "{id}: no gap");
        gaps[0]["reason"].as_str().unwrap().to_string()
    };
    assert!(
        reason("badpw").contains("credentials"),
        "{}",
        reason("badpw")
    );
    assert!(
        reason("gone").contains("cannot reach camera"),
        "{}",
        reason("gone")
    );
    assert_eq!(camera(&v, "badpw")["frames"], 0);
    let log = rec.log_text();
    assert!(
        !log.contains("right-horse") && !log.contains("wrong-battery"),
        "a password reached the log"
    );
    assert!(log.contains("the recorder service did not start"), "{log}");
}

#[test]
fn bad_configs_and_keys_are_refused_with_clear_errors_and_nothing_is_overwritten() {
    let rec = Recorder::new(
        &[Cam {
            id: "x",
            url: "rtsp://127.0.0.1:9/x".into(),
            extra: "",
        }],
        "",
    );
    let config_text = fs::read_to_string(&rec.config).unwrap();
    let expect_err = |text: &str, args: &[&str], want: &str| {
        fs::write(&rec.config, text).unwrap();
        let out = rec.cmd(args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{args:?} succeeded with {text}");
        assert!(err.contains(want), "{args:?}: wanted {want:?} in {err}");
        fs::write(&rec.config, &config_text).unwrap();
    };
    expect_err(
        &config_text.replace("segment_secs", "segment_sec"),
        &["run"],
        "unknown field `segment_sec`",
    );
    expect_err(
        &config_text.replace("rtsp://127.0.0.1:9/x", "ftp://127.0.0.1/x"),
        &["init"],
        "only rtsp://",
    );
    expect_err(
        &format!("{config_text}[[cameras]]\nid = \"x\"\nurl = \"rtsp://h/y\"\n"),
        &["init"],
        "duplicate camera id \"x\"",
    );
    expect_err(&config_text, &["run"], "recorder init");
    expect_err("[storage\n", &["check"], "ringfence.toml");

    rec.init();
    rec.init(); // idempotent
    let kek_path = rec.dir.path().join("kek");
    let original = fs::read(&kek_path).unwrap();
    // A wrong key: refused by run, check and init, and left as it is.
    let other = format!("ringfence-kek-v1:{}\n", "17".repeat(32));
    fs::write(&kek_path, &other).unwrap();
    for args in [&["run"][..], &["check"], &["init"]] {
        expect_err(&config_text, args, "does not match");
    }
    assert_eq!(fs::read_to_string(&kek_path).unwrap(), other);
    // A missing key: refused, and never regenerated.
    fs::remove_file(&kek_path).unwrap();
    for args in [&["run"][..], &["init"]] {
        expect_err(&config_text, args, "key-encryption key is missing");
    }
    assert!(
        !kek_path.exists(),
        "a new key was generated for an existing store"
    );
    fs::write(&kek_path, &original).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&kek_path, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(rec.cmd(&["check"]).status.success());
}

#[test]
fn udp_transport_records_too() {
    let cam = TestCamera::start(&camera_opts(vec![small("a", false)])).unwrap();
    let mut rec = Recorder::new(
        &[Cam {
            id: "udp-cam",
            url: cam.url("a"),
            extra: "transport = \"udp\"",
        }],
        "",
    );
    rec.init();
    rec.start();
    rec.wait_stored("udp-cam", 3.0 * FPS as f64, Duration::from_secs(60));
    rec.stop();
    let v = rec.check_ok();
    let c = camera(&v, "udp-cam");
    assert!(c["frames"].as_u64().unwrap() >= 3 * FPS as u64, "{c:#}");
    assert_eq!(c["codec"], "h264");
}

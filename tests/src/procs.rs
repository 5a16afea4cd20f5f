//! Helpers for end-to-end tests that drive the `recorder` and `viewer-api` binaries as
//! real processes and talk to the viewer-api over HTTPS.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::bin_path;

/// A child process, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// SIGTERM, then wait (at most 10 s) for a clean exit.
    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(s) = self.0.try_wait().unwrap() {
                assert!(s.success(), "exited with {s}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("process did not stop within 10 s");
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs a workspace binary to completion: (exit code, stdout, stderr).
pub fn run_bin(
    bin: &str,
    args: &[&str],
    config: Option<&Path>,
    stdin: Option<&str>,
) -> (i32, String, String) {
    let mut cmd = Command::new(bin_path(bin));
    cmd.args(args);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    run_command(cmd, stdin)
}

/// Runs a prepared command to completion, `stdin` written to it: (exit code, stdout,
/// stderr).
pub fn run_command(mut cmd: Command, stdin: Option<&str>) -> (i32, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `viewer-api user add`, the password on standard input.
pub fn add_user(config: &Path, name: &str, role: &str, cameras: Option<&str>, password: &str) {
    let mut args = vec!["user", "add", "--name", name, "--role", role];
    if let Some(c) = cameras {
        args.extend(["--cameras", c]);
    }
    let (code, _, err) = run_bin(
        "viewer-api",
        &args,
        Some(config),
        Some(&format!("{password}\n")),
    );
    assert_eq!(code, 0, "user add {name}: {err}");
}

/// An HTTPS client of a viewer-api on 127.0.0.1 (its self-signed certificate accepted).
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl Api {
    pub fn new(port: u16) -> Api {
        Api {
            base: format!("https://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// Waits until the server answers (HTTPS handshake and all), at most `timeout`.
    pub async fn wait_up(&self, timeout: Duration) {
        let up = Instant::now();
        while self
            .http
            .get(format!("{}/api/v1/openapi.json", self.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                up.elapsed() < timeout,
                "viewer-api not up within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Logs in; returns the `Authorization` header value.
    pub async fn login(&self, user: &str, password: &str) -> String {
        let r = self
            .http
            .post(format!("{}/api/v1/login", self.base))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login {user}");
        let v: Value = r.json().await.unwrap();
        format!("Bearer {}", v["token"].as_str().unwrap())
    }

    pub async fn get(&self, auth: &str, path: &str) -> Reply {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        Reply {
            status,
            body: r.bytes().await.unwrap().to_vec(),
        }
    }

    pub async fn post(&self, auth: &str, path: &str, body: Value) -> Reply {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("authorization", auth)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        Reply {
            status,
            body: r.bytes().await.unwrap().to_vec(),
        }
    }
}

/// A two-camera site for end-to-end tests: a test camera serving an H.264 mount (camera
/// `gate`) and an H.265 mount (camera `hall`), 320x240, a store with 2 s segments, and a
/// config whose `[api]` listens on a free port (`api_extra` is appended to that table).
pub struct Site {
    pub camera: crate::TestCamera,
    pub dir: tempfile::TempDir,
    pub config: std::path::PathBuf,
    pub port: u16,
}

impl Site {
    pub fn new(fps: u32, api_extra: &str) -> Site {
        use crate::{CameraOpts, MountSpec};
        let mount = |m: MountSpec| m.size(320, 240).fps(fps).gop(fps).bitrate_kbps(300);
        let camera = crate::TestCamera::start(&CameraOpts {
            clip_secs: 4,
            ..CameraOpts::with_mounts(vec![
                mount(MountSpec::h264("a")),
                mount(MountSpec::h265("b")),
            ])
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = crate::free_port();
        let config = dir.path().join("ringfence.toml");
        std::fs::write(
            &config,
            format!(
                "[storage]\npath = \"{store}\"\nsegment_secs = 2\nsync_interval_ms = 200\n\
                 [keys]\nkek_file = \"{kek}\"\n\
                 [[cameras]]\nid = \"gate\"\nname = \"Gate\"\nurl = \"{a}\"\n\
                 [[cameras]]\nid = \"hall\"\nname = \"Hall\"\nurl = \"{b}\"\n\
                 [api]\naddr = \"127.0.0.1:{port}\"\n{api_extra}\n",
                store = dir.path().join("store").display(),
                kek = dir.path().join("kek").display(),
                a = camera.url("a"),
                b = camera.url("b"),
            ),
        )
        .unwrap();
        Site {
            camera,
            dir,
            config,
            port,
        }
    }

    /// `recorder init`; returns what it printed.
    pub fn init(&self) -> String {
        let (code, out, err) = run_bin("recorder", &["init"], Some(&self.config), None);
        assert_eq!(code, 0, "recorder init: {err}");
        out
    }

    /// Starts `recorder serve` (the recorder's service to the viewer-api, without
    /// recording) and waits until it listens; its log in `<dir>/recorder-serve.log`.
    pub fn serve_recorder(&self) -> Proc {
        // (the recorder's default: beside the store)
        let socket = self.dir.path().join("recorder.sock");
        let log = std::fs::File::create(self.dir.path().join("recorder-serve.log")).unwrap();
        let mut p = Proc(
            Command::new(bin_path("recorder"))
                .args(["serve", "--config"])
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let start = std::time::Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Ok(Some(status)) = p.0.try_wait() {
                panic!("recorder serve exited: {status}");
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "recorder serve did not listen on {}",
                socket.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        p
    }

    /// Starts `BIN SUBCOMMAND --config …`, its log in `<dir>/BIN.log`.
    pub fn spawn(&self, bin: &str, subcommand: &str) -> Proc {
        let log = std::fs::File::create(self.dir.path().join(format!("{bin}.log"))).unwrap();
        Proc(
            Command::new(bin_path(bin))
                .args([subcommand, "--config"])
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }
}

//! Harness for Ringfence end-to-end tests: locate workspace binaries, pick
//! free ports, and run the `test-camera` RTSP server as a child process.
//!
//! The binaries must be built first (`cargo build --workspace`, or
//! `cargo build --workspace --release` for release-profile tests): tests look
//! for them next to the running test executable.
//!
//! ```no_run
//! use ringfence_tests::{CameraOpts, MountSpec, TestCamera};
//!
//! let cam = TestCamera::start(&CameraOpts {
//!     mounts: vec![MountSpec::h264("cam1").size(320, 240)],
//!     clip_secs: 2,
//!     ..Default::default()
//! })
//! .unwrap();
//! let url = cam.url("cam1"); // rtsp://127.0.0.1:PORT/cam1
//! cam.drop_clients().unwrap(); // SIGUSR1: disconnect everyone
//! # drop(url);
//! ```

pub mod browser;
pub mod collector;
pub mod procs;

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader},
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};

/// Returns a TCP port that was free on 127.0.0.1 a moment ago (bind to
/// port 0 and release it). Another process may grab it in between; prefer
/// letting the server pick (`port: 0`) when it can report its port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

/// Path of a workspace binary (`recorder`, `test-camera`, `viewer-api`, ...)
/// built in the same cargo profile directory as the running test:
/// the test executable is `target/<profile>/deps/<test>-<hash>`, the binary
/// is `target/<profile>/<name>`.
///
/// Panics with a hint to run `cargo build --workspace` if it is missing.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("cannot get the test executable path");
    let mut dir = exe
        .parent()
        .expect("test executable has no parent dir")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        panic!(
            "binary `{name}` not found at {}: run `cargo build --workspace` \
             (with the same profile as the tests, e.g. add --release) first",
            path.display()
        );
    }
    path
}

/// Video codec of a test-camera mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
}

/// One RTSP mount of the test camera (`rtsp://127.0.0.1:PORT/<name>`).
///
/// Build with [`MountSpec::h264`] / [`MountSpec::h265`] and the setters.
/// Defaults: 640x360, 25 fps, 1000 kbps, one key frame per second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    pub name: String,
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// Key frame interval in frames; `None` = `fps` (one key frame per second).
    pub gop: Option<u32>,
}

impl MountSpec {
    pub fn new(name: &str, codec: Codec) -> Self {
        MountSpec {
            name: name.to_string(),
            codec,
            width: 640,
            height: 360,
            fps: 25,
            bitrate_kbps: 1000,
            gop: None,
        }
    }
    /// H.264 mount with default parameters.
    pub fn h264(name: &str) -> Self {
        Self::new(name, Codec::H264)
    }
    /// H.265 mount with default parameters.
    pub fn h265(name: &str) -> Self {
        Self::new(name, Codec::H265)
    }
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }
    pub fn fps(mut self, fps: u32) -> Self {
        self.fps = fps;
        self
    }
    pub fn bitrate_kbps(mut self, kbps: u32) -> Self {
        self.bitrate_kbps = kbps;
        self
    }
    pub fn gop(mut self, gop: u32) -> Self {
        self.gop = Some(gop);
        self
    }

    /// The `--mount` argument for `test-camera`.
    pub fn to_arg(&self) -> String {
        let codec = match self.codec {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        };
        format!(
            "name={},codec={codec},width={},height={},fps={},bitrate_kbps={},gop={}",
            self.name,
            self.width,
            self.height,
            self.fps,
            self.bitrate_kbps,
            self.gop.unwrap_or(self.fps)
        )
    }
}

/// Options for [`TestCamera::start`].
#[derive(Clone, Debug)]
pub struct CameraOpts {
    /// Mounts to serve; empty = a single default H.264 mount `cam1`.
    pub mounts: Vec<MountSpec>,
    /// Port to listen on; 0 = let the camera pick (see [`TestCamera::port`]).
    pub port: u16,
    /// Require RTSP authentication (Basic and Digest) when both are set.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Length of the looped clip, seconds.
    pub clip_secs: u32,
    /// Clip cache directory; `None` = the camera's default
    /// (`$RINGFENCE_CLIP_CACHE` or `<tmp>/ringfence-clips`).
    pub cache_dir: Option<PathBuf>,
    /// How long to wait for the READY lines (first runs encode clips).
    pub ready_timeout: Duration,
}

impl Default for CameraOpts {
    fn default() -> Self {
        CameraOpts {
            mounts: Vec::new(),
            port: 0,
            user: None,
            password: None,
            clip_secs: 10,
            cache_dir: None,
            ready_timeout: Duration::from_secs(180),
        }
    }
}

impl CameraOpts {
    /// Options serving the given mounts, everything else default.
    pub fn with_mounts(mounts: Vec<MountSpec>) -> Self {
        CameraOpts {
            mounts,
            ..Default::default()
        }
    }

    fn args(&self, port: u16) -> Vec<String> {
        let mut args = vec![
            "--port".to_string(),
            port.to_string(),
            "--clip-secs".to_string(),
            self.clip_secs.to_string(),
        ];
        for m in &self.mounts {
            args.push("--mount".into());
            args.push(m.to_arg());
        }
        if let (Some(u), Some(p)) = (&self.user, &self.password) {
            args.extend(["--user".into(), u.clone(), "--password".into(), p.clone()]);
        }
        if let Some(dir) = &self.cache_dir {
            args.push("--cache-dir".into());
            args.push(dir.to_string_lossy().into_owned());
        }
        args
    }
}

/// A running `test-camera` child process. Killed on drop.
pub struct TestCamera {
    opts: CameraOpts,
    child: Option<Child>,
    port: u16,
    /// Mount name -> URL, from the READY lines.
    urls: Vec<(String, String)>,
    /// Last stderr lines of the child, for error messages.
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

const STDERR_TAIL_LINES: usize = 40;

impl TestCamera {
    /// Spawns `test-camera` and waits until it prints one READY line per mount.
    pub fn start(opts: &CameraOpts) -> Result<TestCamera> {
        Self::spawn(opts.clone(), opts.port)
    }

    fn spawn(opts: CameraOpts, port: u16) -> Result<TestCamera> {
        let bin = bin_path("test-camera");
        let mut child = Command::new(&bin)
            .args(opts.args(port))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot spawn {}", bin.display()))?;

        // Forward the child's stderr to ours (eprintln! is captured per test
        // by libtest) and keep a tail for error messages.
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let tail = stderr_tail.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                    eprintln!("{line}");
                    let mut t = tail.lock().unwrap();
                    if t.len() == STDERR_TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }

        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().context("no stdout pipe")?;
        thread::spawn(move || {
            // Keep draining after READY so the child never blocks on stdout.
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                let _ = tx.send(line);
            }
        });

        let mut cam = TestCamera {
            opts,
            child: Some(child),
            port: 0,
            urls: Vec::new(),
            stderr_tail,
        };
        let expected = cam.opts.mounts.len().max(1);
        let deadline = Instant::now() + cam.opts.ready_timeout;
        while cam.urls.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("READY ") {
                        let url = url.trim().to_string();
                        let (port, name) = parse_rtsp_url(&url)
                            .with_context(|| format!("bad READY line `{line}`"))?;
                        cam.port = port;
                        cam.urls.push((name, url));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = cam.try_wait()? {
                        bail!(cam.failure(&format!("test-camera exited early ({status})")));
                    }
                    if left.is_zero() {
                        bail!(cam.failure(&format!(
                            "test-camera not ready after {:?}",
                            cam.opts.ready_timeout
                        )));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is exiting.
                    let status = cam.wait_timeout(Duration::from_secs(5));
                    bail!(cam.failure(&format!(
                        "test-camera exited before READY ({})",
                        status.map_or("still running".into(), |s| s.to_string())
                    )));
                }
            }
        }
        Ok(cam)
    }

    fn failure(&self, what: &str) -> anyhow::Error {
        // Give the stderr forwarder a moment to catch the last lines.
        thread::sleep(Duration::from_millis(100));
        let tail = self.stderr_tail.lock().unwrap();
        let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
        anyhow!("{what}; stderr:\n{}", tail.join("\n"))
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(c) => Ok(c.try_wait()?),
            None => Ok(None),
        }
    }

    fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The TCP port the camera listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Process id of the running camera (None when stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `rtsp://127.0.0.1:PORT/<mount>` (without credentials). Panics if the
    /// mount does not exist.
    pub fn url(&self, mount: &str) -> String {
        self.urls
            .iter()
            .find(|(n, _)| n == mount)
            .map(|(_, u)| u.clone())
            .unwrap_or_else(|| panic!("test camera has no mount `{mount}` (has {:?})", self.urls))
    }

    /// Like [`url`](Self::url) but with `user:password@` when the camera
    /// requires authentication. Credentials are inserted verbatim, so keep
    /// them URL-safe (letters, digits, `-._~`).
    pub fn url_with_credentials(&self, mount: &str) -> String {
        let url = self.url(mount);
        match (&self.opts.user, &self.opts.password) {
            (Some(u), Some(p)) => url.replacen("rtsp://", &format!("rtsp://{u}:{p}@"), 1),
            _ => url,
        }
    }

    /// All READY URLs, in mount order.
    pub fn urls(&self) -> Vec<String> {
        self.urls.iter().map(|(_, u)| u.clone()).collect()
    }

    /// Options this camera was started with (port as requested).
    pub fn opts(&self) -> &CameraOpts {
        &self.opts
    }

    /// Disconnects every connected client (sends SIGUSR1). The camera keeps
    /// running and accepts new clients.
    pub fn drop_clients(&self) -> Result<()> {
        let pid = self.pid().context("test camera is not running")?;
        send_signal(pid, libc::SIGUSR1)
    }

    /// Stops the camera (SIGTERM, then SIGKILL after 5 s) and waits for it.
    /// Returns its exit status. Calling it again is a no-op returning `None`.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        let Some(pid) = self.pid() else {
            return Ok(None);
        };
        if self.try_wait()?.is_none() {
            send_signal(pid, libc::SIGTERM)?;
        }
        let status = match self.wait_timeout(Duration::from_secs(5)) {
            Some(s) => s,
            None => {
                let child = self.child.as_mut().expect("child present");
                let _ = child.kill();
                child.wait()?
            }
        };
        self.child = None;
        Ok(Some(status))
    }

    /// Stops the camera if running and starts it again with the same
    /// arguments on the same port (retrying for a few seconds while the port
    /// is still held).
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        let port = self.port;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Self::spawn(self.opts.clone(), port) {
                Ok(mut new) => {
                    // Take over the new process; `new` is left empty.
                    self.child = new.child.take();
                    self.urls = std::mem::take(&mut new.urls);
                    self.stderr_tail = new.stderr_tail.clone();
                    self.port = new.port;
                    return Ok(());
                }
                Err(e)
                    if Instant::now() < deadline && format!("{e:#}").contains("cannot listen") =>
                {
                    thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for TestCamera {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn send_signal(pid: u32, sig: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) on our own child's pid.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(std::io::Error::last_os_error()).context("kill failed");
    }
    Ok(())
}

/// `rtsp://host:port/name` -> (port, name).
fn parse_rtsp_url(url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("rtsp://")?;
    let (hostport, name) = rest.split_once('/')?;
    let port = hostport.rsplit_once(':')?.1.parse().ok()?;
    Some((port, name.to_string()))
}

/// One video packet as seen by `ffprobe -show_packets`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbePacket {
    /// Presentation time in seconds (None if unknown).
    pub pts: Option<f64>,
    pub key: bool,
    pub size: u64,
}

/// Runs `ffprobe` on a file (or URL) and returns the packets of the first
/// video stream.
pub fn probe_packets(input: &str) -> Result<Vec<ProbePacket>> {
    let (out, _) = run_with_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args([
                "-show_entries",
                "packet=pts_time,flags,size",
                "-of",
                "csv=p=0",
            ])
            .arg(input),
        Duration::from_secs(60),
    )
    .context("cannot run ffprobe (install ffmpeg)")?;
    if !out.status.success() {
        bail!(
            "ffprobe {input} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut packets = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // pts_time,size,flags (ffprobe's field order)
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 3 {
            continue;
        }
        packets.push(ProbePacket {
            pts: f[0].parse().ok(),
            size: f[1].parse().unwrap_or(0),
            key: f[2].contains('K'),
        });
    }
    Ok(packets)
}

/// Runs `ffprobe` on an RTSP URL (TCP transport) and returns the codec name
/// of the first video stream (`h264`, `hevc`).
pub fn probe_rtsp_codec(url: &str) -> Result<String> {
    let (out, _) = run_with_timeout(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-rtsp_transport",
                "tcp",
                "-timeout",
                "10000000",
            ])
            .args([
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=codec_name",
            ])
            .args(["-of", "default=nw=1:nk=1"])
            .arg(url),
        Duration::from_secs(30),
    )
    .context("cannot run ffprobe (install ffmpeg)")?;
    if !out.status.success() {
        bail!(
            "ffprobe {url} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs a command to completion, killing it after `timeout`. Returns its
/// output (stdout/stderr captured) and how long it ran; errors on timeout.
pub fn run_with_timeout(
    cmd: &mut Command,
    timeout: Duration,
) -> Result<(std::process::Output, Duration)> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot spawn {cmd:?}"))?;
    // Drain the pipes in threads so the child can't block on a full pipe.
    let mut out_pipe = child.stdout.take().context("no stdout")?;
    let mut err_pipe = child.stderr.take().context("no stderr")?;
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out_pipe, &mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err_pipe, &mut v);
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let output = std::process::Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    };
    Ok((output, elapsed))
}

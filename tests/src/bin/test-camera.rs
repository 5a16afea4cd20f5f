//! `test-camera`: a real RTSP server that loops pre-encoded test clips, for
//! end-to-end tests and benchmarks of the recorder.
//!
//! * Clips are encoded once with ffmpeg (`testsrc2`, x264 / x265, closed GOPs,
//!   no B-frames) and cached on disk keyed by their parameters.
//! * At startup each clip is demuxed into memory (access units + caps).
//! * Every client gets its own pipeline (non-shared factory):
//!   `appsrc ! rtph26Xpay`. Access units are pushed at real-time pace with
//!   continuous, monotonically increasing timestamps across loop boundaries.
//!   Serving never decodes or encodes.
//! * `SIGUSR1` drops every connected client; `SIGINT`/`SIGTERM` exit 0.
//! * After the server listens, prints one `READY rtsp://HOST:PORT/NAME` line
//!   per mount on stdout. Everything else goes to stderr.
//!
//! Example:
//! `test-camera --port 8554 --mount name=cam1,codec=h264,width=1920,height=1080,bitrate_kbps=4000`

use std::{
    fmt,
    io::Write,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use gstreamer as gst;
use gstreamer::{glib, prelude::*};
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as gst_rtsp_server;
use gstreamer_rtsp_server::prelude::*;

/// Bumped when the encoding recipe changes, so stale cache entries are not reused.
const CLIP_RECIPE_VERSION: u32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "test-camera",
    about = "RTSP test camera serving looped, pre-encoded H.264/H.265 clips"
)]
struct Cli {
    /// TCP port to listen on (0 = pick a free one; the READY lines tell which).
    #[arg(long, default_value_t = 0)]
    port: u16,

    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,

    /// Mount spec, repeatable:
    /// `name=cam1,codec=h264|h265,width=W,height=H,fps=F,bitrate_kbps=K,gop=G`.
    /// Defaults: h264, 640x360, 25 fps, 1000 kbps, gop = fps. Without any
    /// --mount, a single default mount `cam1` is served.
    #[arg(long = "mount", value_name = "SPEC", value_parser = parse_mount)]
    mounts: Vec<MountSpec>,

    /// Length of the pre-encoded loop, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=3600))]
    clip_secs: u32,

    /// Where pre-encoded clips are cached
    /// (default: $RINGFENCE_CLIP_CACHE or <tmp>/ringfence-clips).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Require RTSP authentication (Basic and Digest) with this user.
    #[arg(long, requires = "password")]
    user: Option<String>,

    /// Password for --user.
    #[arg(long, requires = "user")]
    password: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    H264,
    H265,
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        })
    }
}

#[derive(Clone, Debug)]
struct MountSpec {
    name: String,
    codec: Codec,
    width: u32,
    height: u32,
    fps: u32,
    bitrate_kbps: u32,
    gop: u32,
}

impl Default for MountSpec {
    fn default() -> Self {
        MountSpec {
            name: "cam1".into(),
            codec: Codec::H264,
            width: 640,
            height: 360,
            fps: 25,
            bitrate_kbps: 1000,
            gop: 25,
        }
    }
}

fn parse_mount(spec: &str) -> Result<MountSpec, String> {
    let mut m = MountSpec::default();
    let mut gop = None;
    let mut name = None;
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not key=value"))?;
        let num = |v: &str| -> Result<u32, String> {
            match v.trim().parse::<u32>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("`{k}` must be a positive integer, got `{v}`")),
            }
        };
        match k.trim() {
            "name" => {
                let v = v.trim().trim_matches('/');
                let ok = !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
                if !ok {
                    return Err(format!(
                        "mount name `{v}` must be non-empty and use only [A-Za-z0-9-_./]"
                    ));
                }
                name = Some(v.to_string());
            }
            "codec" => {
                m.codec = match v.trim().to_ascii_lowercase().as_str() {
                    "h264" | "avc" => Codec::H264,
                    "h265" | "hevc" => Codec::H265,
                    other => return Err(format!("unknown codec `{other}` (h264 or h265)")),
                }
            }
            "width" => m.width = num(v)?,
            "height" => m.height = num(v)?,
            "fps" => m.fps = num(v)?,
            "bitrate_kbps" => m.bitrate_kbps = num(v)?,
            "gop" => gop = Some(num(v)?),
            other => {
                return Err(format!(
                    "unknown key `{other}` (name, codec, width, height, fps, bitrate_kbps, gop)"
                ));
            }
        }
    }
    if m.width % 2 != 0 || m.height % 2 != 0 {
        return Err(format!(
            "width and height must be even, got {}x{}",
            m.width, m.height
        ));
    }
    if m.fps > 240 {
        return Err(format!("fps {} is too high (max 240)", m.fps));
    }
    m.name = name.ok_or_else(|| "mount spec needs `name=...`".to_string())?;
    m.gop = gop.unwrap_or(m.fps);
    Ok(m)
}

macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("[test-camera] {}", format_args!($($arg)*))
    };
}

// ---------------------------------------------------------------------------
// Clip encoding and caching
// ---------------------------------------------------------------------------

fn default_cache_dir() -> PathBuf {
    match std::env::var_os("RINGFENCE_CLIP_CACHE") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => std::env::temp_dir().join("ringfence-clips"),
    }
}

fn clip_file_name(m: &MountSpec, secs: u32) -> String {
    format!(
        "{}-{}x{}-{}fps-{}kbps-gop{}-{}s-v{}.mp4",
        m.codec, m.width, m.height, m.fps, m.bitrate_kbps, m.gop, secs, CLIP_RECIPE_VERSION
    )
}

/// Returns the path of the cached clip for `m`, encoding it first if needed.
fn ensure_clip(m: &MountSpec, secs: u32, cache_dir: &Path, force: bool) -> Result<PathBuf> {
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("cannot create clip cache dir {}", cache_dir.display()))?;
    let path = cache_dir.join(clip_file_name(m, secs));
    if !force
        && std::fs::metadata(&path)
            .map(|md| md.len() > 0)
            .unwrap_or(false)
    {
        return Ok(path);
    }

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = cache_dir.join(format!(
        ".{}.tmp-{}-{}",
        clip_file_name(m, secs),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let started = Instant::now();
    log!(
        "encoding {} clip {}x{}@{} {} kbps gop {} ({} s) -> {}",
        m.codec,
        m.width,
        m.height,
        m.fps,
        m.bitrate_kbps,
        m.gop,
        secs,
        path.display()
    );

    let frames = u64::from(secs) * u64::from(m.fps);
    let kbps = format!("{}k", m.bitrate_kbps);
    let bufsize = format!("{}k", m.bitrate_kbps.saturating_mul(2));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "testsrc2=size={}x{}:rate={}",
            m.width, m.height, m.fps
        ))
        .args([
            "-frames:v",
            &frames.to_string(),
            "-an",
            "-pix_fmt",
            "yuv420p",
        ]);
    let gop = m.gop.to_string();
    match m.codec {
        Codec::H264 => {
            cmd.args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args([
                "-bf",
                "0",
                "-g",
                &gop,
                "-keyint_min",
                &gop,
                "-sc_threshold",
                "0",
            ])
            // One slice per frame: zerolatency's sliced threads would make
            // rtph264pay (config-interval=-1) insert SPS/PPS before every
            // IDR *slice*, splitting access units for some clients.
            .args(["-x264-params", "sliced-threads=0"]);
        }
        Codec::H265 => {
            cmd.args(["-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1"])
                .arg("-x265-params")
                .arg(format!(
                    "keyint={gop}:min-keyint={gop}:open-gop=0:bframes=0:scenecut=0:log-level=error"
                ));
        }
    }
    cmd.args(["-b:v", &kbps, "-maxrate", &kbps, "-bufsize", &bufsize])
        .args(["-f", "mp4"])
        .arg(&tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());

    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "ffmpeg not found in PATH; it is needed to pre-encode test clips (apt-get install ffmpeg)"
            )
        }
        Err(e) => return Err(e).context("cannot run ffmpeg"),
    };
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "ffmpeg failed to encode the {} clip ({}): {}",
            m.codec,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::rename(&tmp, &path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot move encoded clip into {}", path.display())
    })?;
    log!("encoded {} in {:.1?}", path.display(), started.elapsed());
    Ok(path)
}

// ---------------------------------------------------------------------------
// Demuxing into memory
// ---------------------------------------------------------------------------

struct Frame {
    /// One access unit (length-prefixed NAL units, as stored in the MP4).
    buffer: gst::Buffer,
    key: bool,
}

struct Clip {
    caps: gst::Caps,
    frames: Vec<Frame>,
    fps: u32,
}

fn demux_clip(path: &Path, fps: u32) -> Result<Clip> {
    let pipeline = gst::parse::launch(
        "filesrc name=file ! qtdemux ! appsink name=sink sync=false enable-last-sample=false",
    )
    .context("cannot build demux pipeline (gstreamer plugins base/good installed?)")?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow!("demux pipeline is not a pipeline"))?;
    let file = pipeline.by_name("file").context("no filesrc")?;
    file.set_property("location", path.to_string_lossy().as_ref());
    let sink = pipeline
        .by_name("sink")
        .context("no appsink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| anyhow!("sink is not an appsink"))?;

    let result = (|| -> Result<Clip> {
        pipeline
            .set_state(gst::State::Playing)
            .context("cannot start demux pipeline")?;
        let bus = pipeline.bus().context("no bus")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut caps = None;
        let mut frames = Vec::new();
        loop {
            if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) {
                if caps.is_none() {
                    caps = sample.caps_owned();
                }
                let buffer = sample.buffer_owned().context("sample without buffer")?;
                let key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
                frames.push(Frame { buffer, key });
                continue;
            }
            if sink.is_eos() {
                break;
            }
            while let Some(msg) = bus.pop() {
                if let gst::MessageView::Error(err) = msg.view() {
                    bail!("demuxing {} failed: {}", path.display(), err.error());
                }
            }
            if Instant::now() > deadline {
                bail!("demuxing {} timed out", path.display());
            }
        }
        let caps = caps.context("clip has no caps")?;
        if frames.is_empty() {
            bail!("clip {} has no frames", path.display());
        }
        if !frames[0].key {
            bail!("clip {} does not start with a key frame", path.display());
        }
        Ok(Clip { caps, frames, fps })
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

// ---------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------

/// Per-client feeding state, owned by the appsrc's need-data callback (so it
/// lives exactly as long as the client's pipeline: no extra threads).
struct Feeder {
    clip: Arc<Clip>,
    /// Index of the next access unit in the clip.
    next: usize,
    /// Running time of frame `k == 0` of the current timeline.
    origin: Option<gst::ClockTime>,
    /// Frames pushed since `origin`.
    k: u64,
    /// Last pushed PTS (timestamps never go backwards within one timeline).
    last_pts: Option<gst::ClockTime>,
}

impl Feeder {
    fn pts_of(&self, k: u64) -> gst::ClockTime {
        let origin = self.origin.unwrap_or(gst::ClockTime::ZERO);
        origin
            + gst::ClockTime::from_nseconds(
                (u128::from(k) * 1_000_000_000u128 / u128::from(self.clip.fps)) as u64,
            )
    }

    fn frame_duration(&self) -> gst::ClockTime {
        gst::ClockTime::from_nseconds(1_000_000_000u64 / u64::from(self.clip.fps))
    }

    /// Called from the appsrc streaming thread whenever it needs data (only in
    /// PLAYING, since the source is live). Waits on the pipeline clock until
    /// the next frame is due, then pushes it.
    fn feed(&mut self, appsrc: &gst_app::AppSrc) {
        let clock = appsrc.clock();
        let base = appsrc.base_time();
        let now = match (&clock, base) {
            (Some(c), Some(b)) => c.time().checked_sub(b),
            _ => None,
        };

        let mut pts = self.pts_of(self.k);
        if let Some(now) = now {
            let late = now.saturating_sub(pts);
            let early = pts.saturating_sub(now);
            if self.origin.is_none()
                || late > gst::ClockTime::from_mseconds(500)
                || early > gst::ClockTime::from_seconds(2)
            {
                // First frame, a stall (e.g. the client paused) or a running
                // time reset (flush): start a new timeline at "now". After a
                // stall this jumps forward, never back.
                let start = match self.last_pts {
                    Some(last) if early <= gst::ClockTime::from_seconds(2) => {
                        now.max(last + self.frame_duration())
                    }
                    _ => now,
                };
                self.origin = Some(start);
                self.k = 0;
                pts = start;
            }
        }

        // Real-time pacing: wait until the frame is due.
        if let (Some(clock), Some(base)) = (clock, base) {
            let id = clock.new_single_shot_id(base + pts);
            let _ = id.wait();
        } else {
            // No clock (not expected in PLAYING): still never spin.
            std::thread::sleep(self.frame_duration().into());
        }

        let frame = &self.clip.frames[self.next];
        let mut buffer = frame.buffer.copy(); // shares the memory, no data copy
        {
            let b = buffer.make_mut();
            b.set_pts(pts);
            b.set_dts(pts);
            b.set_duration(self.frame_duration());
            b.unset_flags(gst::BufferFlags::DISCONT | gst::BufferFlags::DELTA_UNIT);
            if !frame.key {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        // Errors (flushing, EOS) just mean the client's pipeline is going away.
        let _ = appsrc.push_buffer(buffer);

        self.last_pts = Some(pts);
        self.k += 1;
        self.next = (self.next + 1) % self.clip.frames.len();
    }
}

fn make_factory(
    mount: &MountSpec,
    clip: Arc<Clip>,
    with_auth: bool,
) -> gst_rtsp_server::RTSPMediaFactory {
    let factory = gst_rtsp_server::RTSPMediaFactory::new();
    let pay = match mount.codec {
        Codec::H264 => "rtph264pay",
        Codec::H265 => "rtph265pay",
    };
    factory.set_launch(&format!(
        "( appsrc name=src is-live=true format=time do-timestamp=false \
           stream-type=stream max-bytes=0 \
         ! {pay} name=pay0 pt=96 config-interval=-1 )"
    ));
    // One pipeline per client: a client seeking/pausing can't affect others.
    factory.set_shared(false);

    if with_auth {
        let role = gst::Structure::builder("user")
            .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
            .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
            .build();
        factory.add_role_from_structure(&role);
    }

    let name = mount.name.clone();
    factory.connect_media_configure(move |_factory, media| {
        let element = media.element();
        let Some(src) = element
            .downcast_ref::<gst::Bin>()
            .and_then(|bin| bin.by_name("src"))
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        else {
            log!("mount {name}: media has no appsrc");
            return;
        };
        src.set_caps(Some(&clip.caps));
        let mut feeder = Feeder {
            clip: clip.clone(),
            next: 0,
            origin: None,
            k: 0,
            last_pts: None,
        };
        src.set_callbacks(
            gst_app::AppSrcCallbacks::builder()
                .need_data(move |appsrc, _len| feeder.feed(appsrc))
                .build(),
        );
        let name = name.clone();
        media.connect_unprepared(move |_| log!("mount {name}: client media torn down"));
    });
    factory
}

/// Signals handled by the dedicated signal thread.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal mask manipulation on a zeroed sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn drop_all_clients(server: &gst_rtsp_server::RTSPServer) {
    // Remove the sessions first (stops UDP streaming too), then close every
    // client connection.
    let mut sessions = 0usize;
    if let Some(pool) = server.session_pool() {
        pool.filter(Some(&mut |_, _| {
            sessions += 1;
            gst_rtsp_server::RTSPFilterResult::Remove
        }));
    }
    let mut clients = 0usize;
    server.client_filter(Some(&mut |_, _| {
        clients += 1;
        gst_rtsp_server::RTSPFilterResult::Remove
    }));
    log!("SIGUSR1: dropped {clients} client(s), {sessions} session(s)");
}

fn run(cli: Cli) -> Result<()> {
    let sigset = block_signals();

    let mut mounts = cli.mounts.clone();
    if mounts.is_empty() {
        mounts.push(MountSpec::default());
    }
    for (i, m) in mounts.iter().enumerate() {
        if mounts[..i].iter().any(|o| o.name == m.name) {
            bail!("duplicate mount name `{}`", m.name);
        }
    }

    gst::init().context("cannot initialise GStreamer")?;
    for plugin in ["appsrc", "qtdemux", "appsink", "rtph264pay", "rtph265pay"] {
        if gst::ElementFactory::find(plugin).is_none() {
            bail!(
                "GStreamer element `{plugin}` is missing (install gstreamer1.0-plugins-base/good)"
            );
        }
    }

    let cache_dir = cli.cache_dir.clone().unwrap_or_else(default_cache_dir);
    // Mounts with identical parameters share one in-memory clip.
    let mut by_path: std::collections::HashMap<PathBuf, Arc<Clip>> = Default::default();
    let mut clips = Vec::new();
    for m in &mounts {
        let path = ensure_clip(m, cli.clip_secs, &cache_dir, false)?;
        if let Some(clip) = by_path.get(&path) {
            clips.push(clip.clone());
            continue;
        }
        let clip = match demux_clip(&path, m.fps) {
            Ok(c) => c,
            Err(e) => {
                log!("cached clip unusable ({e:#}), re-encoding");
                ensure_clip(m, cli.clip_secs, &cache_dir, true)?;
                demux_clip(&path, m.fps)?
            }
        };
        let bytes: usize = clip.frames.iter().map(|f| f.buffer.size()).sum();
        let keys = clip.frames.iter().filter(|f| f.key).count();
        log!(
            "mount {}: {} frames ({} key), {} KiB, caps {}",
            m.name,
            clip.frames.len(),
            keys,
            bytes / 1024,
            clip.caps
                .structure(0)
                .map(|s| s.name().to_string())
                .unwrap_or_default()
        );
        let clip = Arc::new(clip);
        by_path.insert(path, clip.clone());
        clips.push(clip);
    }

    let main_loop = glib::MainLoop::new(None, false);
    let server = gst_rtsp_server::RTSPServer::new();
    server.set_address(&cli.bind.to_string());
    server.set_service(&cli.port.to_string());

    let with_auth = cli.user.is_some();
    if let (Some(user), Some(password)) = (&cli.user, &cli.password) {
        let auth = gst_rtsp_server::RTSPAuth::new();
        let token = gst_rtsp_server::RTSPToken::builder()
            .field(gst_rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
            .build();
        auth.add_basic(
            &gst_rtsp_server::RTSPAuth::make_basic(user, password),
            &token,
        );
        auth.add_digest(user, password, &token);
        // The binding models GstRTSPAuthMethod as an enum, but the C API takes
        // a bit mask: offer both Basic and Digest.
        use gst_rtsp_server::gst_rtsp::{RTSPAuthMethod, ffi as rtsp_ffi};
        // SAFETY: any i32 is a valid RTSPAuthMethod (unknown values are kept).
        let both: RTSPAuthMethod = unsafe {
            glib::translate::from_glib(
                rtsp_ffi::GST_RTSP_AUTH_BASIC | rtsp_ffi::GST_RTSP_AUTH_DIGEST,
            )
        };
        auth.set_supported_methods(both);
        server.set_auth(Some(&auth));
        log!("authentication required for user `{user}` (Basic, Digest)");
    }

    let mount_points = server
        .mount_points()
        .context("server has no mount points")?;
    for (m, clip) in mounts.iter().zip(&clips) {
        let factory = make_factory(m, clip.clone(), with_auth);
        mount_points.add_factory(&format!("/{}", m.name), factory);
    }

    server.connect_client_connected(|_, client| {
        log!("client connected");
        client.connect_closed(|_| log!("client disconnected"));
    });

    let _server_source = server.attach(None).map_err(|_| {
        anyhow!(
            "cannot listen on {}:{} (port in use or address not available)",
            cli.bind,
            cli.port
        )
    })?;
    let port = server.bound_port();
    if port <= 0 {
        bail!("server did not bind a port");
    }

    // Remove timed-out sessions (e.g. UDP clients that vanished).
    if let Some(pool) = server.session_pool() {
        glib::timeout_add_seconds(2, move || {
            pool.cleanup();
            glib::ControlFlow::Continue
        });
    }

    // Signals: a dedicated thread sigwait()s and forwards to the main loop.
    {
        let server = server.clone();
        let main_loop = main_loop.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                loop {
                    let mut sig: libc::c_int = 0;
                    // SAFETY: sigset was initialised by block_signals.
                    if unsafe { libc::sigwait(&sigset, &mut sig) } != 0 {
                        continue;
                    }
                    if sig == libc::SIGUSR1 {
                        let server = server.clone();
                        glib::MainContext::default().invoke(move || drop_all_clients(&server));
                    } else {
                        log!("signal {sig}: shutting down");
                        main_loop.quit();
                        return;
                    }
                }
            })
            .context("cannot spawn signal thread")?;
    }

    let host = if cli.bind.is_unspecified() {
        "127.0.0.1".to_string()
    } else if cli.bind.is_ipv6() {
        format!("[{}]", cli.bind)
    } else {
        cli.bind.to_string()
    };
    let mut out = std::io::stdout().lock();
    for m in &mounts {
        writeln!(out, "READY rtsp://{host}:{port}/{}", m.name)?;
    }
    out.flush()?;
    drop(out);
    log!("listening on {host}:{port}");

    main_loop.run();
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("test-camera: error: {e:#}");
            std::process::exit(1);
        }
    }
}

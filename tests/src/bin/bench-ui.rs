//! Benchmark of the review console in headless Chromium (run by `scripts/bench-ui.sh`,
//! `make bench-ui`): a site like the tests' (the test camera's H.264 mount → `gate`,
//! H.265 → `hall`, `recorder run`, `viewer-api serve`, all on 127.0.0.1, release
//! build), then one table:
//!
//! * the first page load on loopback (navigationStart → loadEventEnd, cache cleared
//!   before each; and until the sign-in form is in the page, since the app renders
//!   after its modules load), and a repeat load with a warm cache;
//! * the console's JS + CSS: raw, `gzip -9` of each file, and the bytes the server sends
//!   with `Accept-Encoding: gzip`;
//! * from the click on "View" to the first frame shown (`requestVideoFrameCallback`;
//!   `loadeddata` with `currentTime > 0` where that is missing), for `gate` (H.264,
//!   target ≤ 300 ms) and `hall` (the H.264 preview of H.265, target ≤ 1 s);
//! * the viewer-api's CPU while one H.265 preview plays.
//!
//! Times inside the page are the page's own clock (`performance.now()`), so WebDriver's
//! round trips are not counted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use ringfence_tests::browser::{Browser, rfc3339_utc};
use ringfence_tests::procs::{Api, Proc, add_user, now_ms, run_bin};
use ringfence_tests::{CameraOpts, MountSpec, TestCamera, bin_path};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Benchmark of the review console in headless Chromium")]
struct Args {
    /// The console's sources (for the gzip -9 sizes).
    #[arg(long, default_value = "viewer-api/web")]
    web: PathBuf,
    /// Page loads measured (median).
    #[arg(long, default_value_t = 10)]
    loads: usize,
    /// Viewings opened per camera (median).
    #[arg(long, default_value_t = 5)]
    views: usize,
    /// Camera picture size, WIDTHxHEIGHT.
    #[arg(long, default_value = "1920x1080")]
    size: String,
    #[arg(long, default_value_t = 25)]
    fps: u32,
    #[arg(long, default_value_t = 4000)]
    kbps: u32,
    /// How long the preview plays while the viewer-api's CPU is measured, seconds.
    #[arg(long, default_value_t = 10)]
    preview_secs: u64,
}

const PW: &str = "bench-ui-pw-1";
const CASE: &str = "BENCH-1";

/// A site like `procs::Site`, at the benchmark's picture size.
struct BenchSite {
    _camera: TestCamera,
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
}

impl BenchSite {
    fn new(a: &Args) -> Result<BenchSite> {
        let (w, h) = a
            .size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
            .context("--size is WIDTHxHEIGHT")?;
        let mount = |m: MountSpec| m.size(w, h).fps(a.fps).gop(a.fps).bitrate_kbps(a.kbps);
        let camera = TestCamera::start(&CameraOpts {
            clip_secs: 10,
            ..CameraOpts::with_mounts(vec![
                mount(MountSpec::h264("a")),
                mount(MountSpec::h265("b")),
            ])
        })?;
        let dir = tempfile::Builder::new()
            .prefix("ringfence-bench-ui-")
            .tempdir()?;
        let port = ringfence_tests::free_port();
        let config = dir.path().join("ringfence.toml");
        std::fs::write(
            &config,
            format!(
                "[storage]\npath = \"{store}\"\nsegment_secs = 10\n\
                 [keys]\nkek_file = \"{kek}\"\n\
                 [[cameras]]\nid = \"gate\"\nname = \"Gate\"\nurl = \"{a}\"\n\
                 [[cameras]]\nid = \"hall\"\nname = \"Hall\"\nurl = \"{b}\"\n\
                 [api]\naddr = \"127.0.0.1:{port}\"\n",
                store = dir.path().join("store").display(),
                kek = dir.path().join("kek").display(),
                a = camera.url("a"),
                b = camera.url("b"),
            ),
        )?;
        Ok(BenchSite {
            _camera: camera,
            dir,
            config,
            port,
        })
    }

    fn spawn(&self, bin: &str, sub: &str) -> Result<Proc> {
        let log = std::fs::File::create(self.dir.path().join(format!("{bin}.log")))?;
        let child: Child = Command::new(bin_path(bin))
            .args([sub, "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Proc(child))
    }
}

/// CPU time (user + system) of a process so far.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(')').context("stat format")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_micros(ticks * 1_000_000 / hz))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// The console's JS and CSS files under `dir` (sub-directories too).
fn code_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            code_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "js" || e == "css") {
            out.push(p);
        }
    }
    Ok(())
}

fn gzip9_len(path: &Path) -> Result<u64> {
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .context("cannot run gzip")?;
    if !out.status.success() {
        bail!("gzip {} failed", path.display());
    }
    Ok(out.stdout.len() as u64)
}

/// Prints one row of the table.
fn row(what: &str, value: String, target: &str) {
    println!("{what:<58} {value:>22}  {target}");
}

/// Installed before each document: when the sign-in form (or any form with a submit
/// button) is first in the page.
const READY_PROBE: &str = "new MutationObserver((_, o) => {
  if (document.querySelector('form button[type=submit]')) {
    window.__rfReady = performance.now();
    o.disconnect();
  }
}).observe(document, {childList: true, subtree: true});";

async fn page_loads(b: &Browser, n: usize, cold: bool) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut load, mut ready) = (Vec::new(), Vec::new());
    b.goto("about:blank").await?;
    if !cold {
        b.goto("/").await?; // fill the cache
    }
    for _ in 0..n {
        if cold {
            b.cdp("Network.clearBrowserCache", json!({})).await?;
        }
        b.goto("about:blank").await?;
        b.goto("/").await?;
        let v = b
            .wait_js(
                "the sign-in form",
                "const n = performance.getEntriesByType('navigation')[0];
                 if (!n || !n.loadEventEnd || !window.__rfReady) return null;
                 return [n.loadEventEnd - n.startTime, window.__rfReady - n.startTime];",
                vec![],
            )
            .await?;
        load.push(v[0].as_f64().unwrap_or(f64::NAN));
        ready.push(v[1].as_f64().unwrap_or(f64::NAN));
    }
    Ok((load, ready))
}

/// Opens `cam` at a moment a few seconds ago, answers the prompt, and returns the time
/// from the click on "View" to the first frame shown, ms (and whether the preview badge
/// showed).
async fn view_to_first_frame(b: &Browser, cam: &str) -> Result<(f64, bool)> {
    let at = now_ms() - 6_000;
    b.goto(&format!("/cameras/{cam}?at={}", rfc3339_utc(at)))
        .await?;
    let case = b.field("Case reference").await?;
    case.send_keys(CASE).await?;
    let view = b.button("View").await?;
    b.js(
        "const [btn] = arguments;
         const v = document.querySelector('main video');
         const m = window.__rfView = {click: null, frame: null, loaded: null, how: null};
         btn.addEventListener('click', () => { m.click = performance.now(); }, {capture: true});
         if (v.requestVideoFrameCallback) {
           v.requestVideoFrameCallback((now) => { if (m.frame === null) { m.frame = now; m.how = 'rVFC'; } });
         }
         const poll = () => {
           if (m.frame !== null) return;
           if (v.readyState >= 2 && v.currentTime > 0 && !v.requestVideoFrameCallback) {
             m.frame = performance.now(); m.how = 'loadeddata';
             return;
           }
           requestAnimationFrame(poll);
         };
         requestAnimationFrame(poll);
         return true;",
        vec![Browser::arg(&view)],
    )
    .await?;
    view.click().await?;
    let v = b
        .wait_js(
            &format!("the first frame of {cam}"),
            "const m = window.__rfView; \
             return m && m.click !== null && m.frame !== null ? [m.frame - m.click, m.how] : null;",
            vec![],
        )
        .await?;
    let badge = b
        .js(
            "const e = document.querySelector('[data-testid=preview-badge]'); \
             return !!e && !e.hidden && e.getClientRects().length > 0;",
            vec![],
        )
        .await?;
    Ok((
        v[0].as_f64().unwrap_or(f64::NAN),
        badge == Value::Bool(true),
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    eprintln!("bench-ui: starting the test camera ({} px)…", args.size);
    let site = BenchSite::new(&args)?;
    let (code, _, err) = run_bin("recorder", &["init"], Some(&site.config), None);
    if code != 0 {
        bail!("recorder init: {err}");
    }
    let t0 = now_ms();
    let _recorder = site.spawn("recorder", "run")?;
    add_user(&site.config, "pia", "police", Some("gate,hall"), PW);
    let server = site.spawn("viewer-api", "serve")?;
    let api = Api::new(site.port);
    api.wait_up(Duration::from_secs(30)).await;
    let b = Browser::start(&api.base).await?;
    let result = run(&args, &site, &api, &b, &server, t0).await;
    if result.is_err() {
        let log =
            std::fs::read_to_string(site.dir.path().join("viewer-api.log")).unwrap_or_default();
        for l in log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            eprintln!("{l}");
        }
    }
    b.close().await;
    result
}

async fn run(
    args: &Args,
    _site: &BenchSite,
    api: &Api,
    b: &Browser,
    server: &Proc,
    t0: i64,
) -> Result<()> {
    let chromium = Command::new(ringfence_tests::browser::CHROMIUM)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();

    // --- page loads (not signed in: the sign-in page)
    eprintln!("bench-ui: page loads…");
    b.cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": READY_PROBE }),
    )
    .await?;
    b.cdp("Network.enable", json!({})).await?;
    let (mut cold_load, mut cold_ready) = page_loads(b, args.loads, true).await?;
    let (mut warm_load, mut warm_ready) = page_loads(b, args.loads, false).await?;

    // --- bytes
    let mut files = Vec::new();
    code_files(&args.web, &mut files)?;
    let (mut raw, mut gz9, mut sent) = (0u64, 0u64, 0u64);
    for f in &files {
        raw += std::fs::metadata(f)?.len();
        gz9 += gzip9_len(f)?;
        let rel = f
            .strip_prefix(&args.web)?
            .to_string_lossy()
            .replace('\\', "/");
        let r = api
            .http
            .get(format!("{}/assets/{rel}", api.base))
            .header("accept-encoding", "gzip")
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("GET /assets/{rel}: {}", r.status());
        }
        sent += r.bytes().await?.len() as u64;
    }

    // --- viewings: sign in, let some footage be recorded
    eprintln!("bench-ui: viewings…");
    b.goto("/").await?;
    b.fill("Username", "pia").await?;
    b.fill("Password", PW).await?;
    b.click_button("Sign in").await?;
    b.button("Sign out").await?;
    while now_ms() < t0 + 12_000 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut h264 = Vec::new();
    for _ in 0..args.views {
        let (ms, badge) = view_to_first_frame(b, "gate").await?;
        if badge {
            bail!("gate (H.264) played as a preview");
        }
        h264.push(ms);
    }
    let mut h265 = Vec::new();
    for _ in 0..args.views {
        let (ms, badge) = view_to_first_frame(b, "hall").await?;
        if !badge {
            bail!("hall (H.265) did not play as a preview");
        }
        h265.push(ms);
    }

    // --- the viewer-api's CPU while one preview plays
    eprintln!("bench-ui: viewer-api CPU during a preview…");
    while now_ms() < t0 + (args.preview_secs as i64 + 8) * 1000 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let at = now_ms() - (args.preview_secs as i64 + 6) * 1000;
    b.goto(&format!("/cameras/hall?at={}", rfc3339_utc(at)))
        .await?;
    b.fill("Case reference", CASE).await?;
    let pid = server.0.id();
    let cpu0 = cpu_time(pid)?;
    let wall0 = Instant::now();
    b.click_button("View").await?;
    let played = b
        .wait_js_for(
            "the preview to play",
            Duration::from_secs(args.preview_secs + 20),
            "const v = document.querySelector('main video'); \
             return v && v.currentTime >= arguments[0] ? v.currentTime : null;",
            vec![json!(args.preview_secs as f64)],
        )
        .await?;
    let cpu = (cpu_time(pid)? - cpu0).as_secs_f64();
    let wall = wall0.elapsed().as_secs_f64();
    let played = played.as_f64().unwrap_or(f64::NAN);

    // --- the table
    println!();
    let profile = if cfg!(debug_assertions) {
        "DEBUG build (use make bench-ui)"
    } else {
        "release build"
    };
    println!("Review console, headless {chromium}, loopback, {profile}");
    println!(
        "cameras {} at {} fps, {} kbit/s; N = {} page loads, {} viewings per camera",
        args.size, args.fps, args.kbps, args.loads, args.views
    );
    println!();
    println!("{:<58} {:>22}  target", "metric", "value");
    row(
        "first page load, navigationStart→loadEventEnd (median)",
        format!("{:.0} ms", median(&mut cold_load)),
        "",
    );
    row(
        "  … until the sign-in form is in the page (median)",
        format!("{:.0} ms", median(&mut cold_ready)),
        "",
    );
    row(
        "repeat load, warm cache (ETag), loadEventEnd (median)",
        format!("{:.0} ms", median(&mut warm_load)),
        "",
    );
    row(
        "  … until the sign-in form is in the page (median)",
        format!("{:.0} ms", median(&mut warm_ready)),
        "",
    );
    row(
        &format!("console JS + CSS, {} files, raw", files.len()),
        format!("{:.1} KB", raw as f64 / 1024.0),
        "",
    );
    row(
        "console JS + CSS, gzip -9 of each file",
        format!("{:.1} KB", gz9 as f64 / 1024.0),
        "≤ 100 KB",
    );
    row(
        "console JS + CSS as sent (Accept-Encoding: gzip)",
        format!("{:.1} KB", sent as f64 / 1024.0),
        "≤ 100 KB",
    );
    row(
        "View → first frame, H.264 (median; max)",
        format!("{:.0} ms; {:.0} ms", median(&mut h264.clone()), max(&h264)),
        "≤ 300 ms",
    );
    row(
        "View → first frame, H.265 via H.264 preview (median; max)",
        format!("{:.0} ms; {:.0} ms", median(&mut h265.clone()), max(&h265)),
        "≤ 1000 ms",
    );
    row(
        &format!("viewer-api CPU while one H.265 preview plays {played:.0} s"),
        format!("{:.0} % of a core", cpu / wall * 100.0),
        "",
    );
    Ok(())
}

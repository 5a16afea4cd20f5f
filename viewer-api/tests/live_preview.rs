//! The H.264 live preview (`live-preview.mp4`) through the HTTP API, in-process: a store
//! whose segment is being written while the view tails it (H.265 320×240, 25 fps, a
//! key frame every second, chunks of at most 10 frames), a manual clock, real SQLite
//! files; what comes out is checked box by box and with ffprobe.
//!
//! `cargo test --release -p viewer-api --test live_preview -- --ignored --nocapture`
//! also measures the latency the transcoding adds, and its CPU, on a 1080p camera.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::{Body, BodyDataStream};
use axum::http::{Request, StatusCode, header};
use futures::StreamExt;
use serde_json::json;
use tower::ServiceExt;

use common::{Api, CLIENT, Env, Person};
use viewer_api::live::growing::GrowingSource;
use viewer_api::mp4::{TrackParams, VideoCodec};
use viewer_api::playback::{GopData, frame_unix_ms};
use viewer_api::policy::Role;
use viewer_api::preview::{self, live::LiveSettings};
use viewer_api::testdata;

const NOW: i64 = 1_700_000_000_000;
/// The camera's footage starts here (the segment being written).
const T0: i64 = NOW - 2_000;
/// H.265 frames in the test clip (6 s at 25 fps).
const FRAMES: usize = 150;
/// The chunks stored before the view starts: frames 0–34, the newest key frame 25.
const WRITTEN: usize = 4;
const FIRST_LIVE_FRAME: usize = 25;

const PEOPLE: &[Person] = &[
    ("pia", Role::Police, Some(&["gate"])),
    ("ivan", Role::It, None),
    ("carl", Role::Contractor, None),
    ("ada", Role::Auditor, None),
];

/// `gate` (H.265) and `hall` (not recording), and the chunks of gate's footage still
/// to be written: the first [`WRITTEN`] are already stored, in a segment still open.
fn source() -> (GrowingSource, TrackParams, Vec<GopData>) {
    let (params, frames) = testdata::h265_track(6, 25, 25).expect("ffmpeg with libx265");
    assert_eq!(frames.len(), FRAMES);
    let src = GrowingSource::new(&["gate", "hall"]);
    let mut chunks = testdata::chunks(&frames, T0, Some(10));
    src.open_segment("gate", params.clone(), T0);
    let rest = chunks.split_off(WRITTEN);
    for c in chunks {
        src.write("gate", c);
    }
    assert!(rest[0].frames[0].key || rest[0].frames[0].pts_90k > 0);
    (src, params, rest)
}

/// Writes `chunks` into gate's open segment, one every `every`, as the recorder would.
fn write_later(src: &GrowingSource, chunks: Vec<GopData>, every: Duration) {
    let src = src.clone();
    std::thread::spawn(move || {
        for c in chunks {
            std::thread::sleep(every);
            src.write("gate", c);
        }
    });
}

/// Live previews share the process's few preview slots: the tests that run them take
/// turns, so that one counting the slots sees only its own.
static SLOTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn env(src: &GrowingSource) -> Env {
    Api::new(NOW, PEOPLE).previews().build(src.clone())
}

/// With `settings` for the live previews (as the server would carry them).
fn with_settings(mut e: Env, settings: LiveSettings) -> Env {
    e.app = e.app.clone().layer(Extension(settings));
    e
}

fn uri(camera: &str, query: &str) -> String {
    format!("/api/v1/cameras/{camera}/live-preview.mp4{query}")
}

/// A live preview being read.
struct Live {
    body: BodyDataStream,
    bytes: Vec<u8>,
    ended: bool,
}

/// Starts a live preview: the answer's status and headers, and its body.
async fn open(e: &Env, tok: &str, uri: &str) -> (StatusCode, axum::http::HeaderMap, Live) {
    let mut req = Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {tok}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        format!("{CLIENT}:5555")
            .parse::<std::net::SocketAddr>()
            .unwrap(),
    ));
    let r = e.app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    let live = Live {
        body: r.into_body().into_data_stream(),
        bytes: Vec::new(),
        ended: false,
    };
    (status, headers, live)
}

impl Live {
    /// Reads until `done` holds for the bytes so far, the stream ends, or `within`
    /// passes; whether `done` held.
    async fn read_until(&mut self, within: Duration, done: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !done(&self.bytes) {
            if self.ended {
                return false;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(b))) => self.bytes.extend_from_slice(&b),
                Ok(Some(Err(e))) => panic!("the stream failed: {e}"),
                Ok(None) => self.ended = true,
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads until the stream ends (within `within`); whether it did.
    async fn read_to_end(&mut self, within: Duration) -> bool {
        self.read_until(within, |_| false).await;
        self.ended
    }
}

/// The complete top-level boxes of `b`: type, start, length.
fn boxes(b: &[u8]) -> Vec<([u8; 4], usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= b.len() {
        let len = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        if len < 8 || at + len > b.len() {
            break;
        }
        out.push((b[at + 4..at + 8].try_into().unwrap(), at, len));
        at += len;
    }
    out
}

fn find(b: &[u8], what: &[u8]) -> Option<usize> {
    b.windows(what.len()).position(|w| w == what)
}

/// A fragment: its `prft` (wall-clock ms, media time) and its `moof`'s sample count.
#[derive(Debug, Clone, Copy)]
struct Frag {
    unix_ms: i64,
    media_90k: u64,
    samples: usize,
}

/// The fragments of the bytes so far (each `prft` followed by its `moof`).
fn fragments(b: &[u8]) -> Vec<Frag> {
    let bx = boxes(b);
    let mut out = Vec::new();
    for (i, (kind, at, _)) in bx.iter().enumerate() {
        if kind != b"prft" {
            continue;
        }
        let Some((b"moof", moof, moof_len)) = bx.get(i + 1).map(|(k, a, l)| (k, *a, *l)) else {
            continue;
        };
        let ntp = u64::from_be_bytes(b[at + 16..at + 24].try_into().unwrap());
        let media_90k = u64::from_be_bytes(b[at + 24..at + 32].try_into().unwrap());
        let secs = (ntp >> 32) as i64 - 2_208_988_800;
        let frac = (((ntp & 0xffff_ffff) * 1000 + (1 << 31)) >> 32) as i64;
        let moof = &b[moof..moof + moof_len];
        let trun = find(moof, b"trun").expect("trun in moof");
        let samples = u32::from_be_bytes(moof[trun + 8..trun + 12].try_into().unwrap()) as usize;
        out.push(Frag {
            unix_ms: secs * 1000 + frac,
            media_90k,
            samples,
        });
    }
    out
}

fn frames_in(b: &[u8]) -> usize {
    fragments(b).iter().map(|f| f.samples).sum()
}

/// `codec_name,profile,width,height`, and the packets' pts (90 kHz), by ffprobe.
fn probe(bytes: &[u8]) -> (String, Vec<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.mp4");
    std::fs::write(&path, bytes).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(args)
            .args(["-of", "csv=p=0"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let stream = run(&["-show_entries", "stream=codec_name,profile,width,height"]);
    let pts = run(&["-show_entries", "packet=pts"])
        .lines()
        .map(|l| l.trim_end_matches(',').parse().unwrap())
        .collect();
    (stream, pts)
}

/// Waits (a little) for the access log to hold an entry of `action` after `before`
/// of them.
async fn wait_for(e: &Env, action: &str, before: usize) -> viewer_api::audit::Entry {
    for _ in 0..200 {
        let v = e.entries(action);
        if v.len() > before {
            return v[before].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {action} entry logged");
}

/// The wall-clock time of each frame of the clip, by frame number.
fn frame_time(n: usize) -> i64 {
    T0 + n as i64 * 40
}

/// An H.265 camera seen as H.264: logged `live` before the first byte, then the
/// initialization segment (avc1, avcC), then fragments carrying the receipt time of
/// their first frame, one frame per source frame from the newest key frame on, as
/// the segment grows; `live.end` with the range shown once the client goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_camera_live_as_h264_with_receipt_times_and_logged() {
    let _turn = SLOTS.lock().await;
    let (src, _, rest) = source();
    let chunk_starts: Vec<i64> = rest.iter().map(|c| c.start_unix_ms).collect();
    let e = env(&src);
    let pia = e.token("pia").await;

    let (status, headers, mut live) = open(&e, &pia, &uri("gate", "?case=CASE-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], preview::MIME);
    assert_eq!(headers["content-type"], "video/mp4; codecs=\"avc1.42C01F\"");
    assert_eq!(headers["cache-control"], "no-store");
    // Logged before anything was read, and not yet ended.
    let logged = e.entries("live");
    assert_eq!(logged.len(), 1);
    let l = &logged[0];
    assert_eq!(
        (l.actor.as_str(), l.camera.as_deref(), l.case.as_deref()),
        ("pia", Some("gate"), Some("CASE-1"))
    );
    assert_eq!(l.outcome, "allowed; H.264 preview");
    assert_eq!(l.from_ms, Some(NOW));
    assert!(e.entries("live.end").is_empty());

    // What was stored, at once (frames 25–34).
    assert!(
        live.read_until(Duration::from_secs(30), |b| frames_in(b) >= 10)
            .await,
        "the stored chunks since the key frame: {} frames",
        frames_in(&live.bytes)
    );
    let bx = boxes(&live.bytes);
    assert_eq!(&bx[0].0, b"ftyp");
    assert_eq!(&bx[1].0, b"moov");
    let moov = &live.bytes[bx[1].1..bx[1].1 + bx[1].2];
    assert!(find(moov, b"avc1").is_some() && find(moov, b"avcC").is_some());
    assert!(find(moov, b"hvc1").is_none());
    assert_eq!(&bx[2].0, b"prft", "each fragment starts with prft");
    // The first fragment is the key frame alone, with its receipt time.
    let f = fragments(&live.bytes);
    assert_eq!(f[0].samples, 1);
    assert_eq!(f[0].unix_ms, frame_time(FIRST_LIVE_FRAME));
    assert_eq!(f[0].media_90k, 0);

    // The rest as it is written.
    write_later(&src, rest, Duration::from_millis(40));
    let want = FRAMES - FIRST_LIVE_FRAME;
    assert!(
        live.read_until(Duration::from_secs(60), |b| frames_in(b) >= want)
            .await,
        "{} of {want} frames",
        frames_in(&live.bytes)
    );
    assert!(!live.ended);
    let f = fragments(&live.bytes);
    assert_eq!(f.iter().map(|f| f.samples).sum::<usize>(), want);
    for w in f.windows(2) {
        assert!(w[0].unix_ms < w[1].unix_ms, "{f:?}");
    }
    for x in &f {
        // a source frame's receipt time, on one timeline from the first frame
        let n = (x.unix_ms - T0) / 40;
        assert_eq!(x.unix_ms, frame_time(n as usize), "{x:?}");
        assert_eq!(
            x.media_90k as i64,
            (n - FIRST_LIVE_FRAME as i64) * 3600,
            "{x:?}"
        );
    }
    // One fragment per stored chunk (the first one split after its key frame).
    for start in &chunk_starts {
        assert!(
            f.iter().any(|x| x.unix_ms == *start),
            "no fragment at {start}"
        );
    }

    // Decodable H.264, at most 640 wide (never enlarged), a frame per source frame.
    let (stream, pts) = probe(&live.bytes);
    assert_eq!(stream, "h264,Constrained Baseline,320,240");
    assert_eq!(
        pts,
        (0..want as i64).map(|i| i * 3_600).collect::<Vec<i64>>()
    );

    // The client goes away: the view ends, logged with the range it showed.
    drop(live);
    let end = wait_for(&e, "live.end", 0).await;
    assert_eq!(end.outcome, "allowed; H.264 preview; ended by the client");
    assert_eq!(end.actor, "pia");
    assert_eq!(end.camera.as_deref(), Some("gate"));
    assert_eq!(end.case.as_deref(), Some("CASE-1"));
    assert_eq!(end.from_ms, Some(frame_time(FIRST_LIVE_FRAME)));
    assert_eq!(end.to_ms, Some(frame_time(FRAMES - 1)));
    assert!(end.seq > e.entries("live")[0].seq);
    // Both are live views in the subject-access report.
    let r = e
        .get(
            &e.token("ada").await,
            &format!(
                "/api/v1/audit/subject-access?camera=gate&from={}&to={}",
                common::t(frame_time(50)),
                common::t(frame_time(51))
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.error());
    let report = r.json();
    let seen: Vec<(&str, &str)> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        seen.contains(&("live.end", "allowed; H.264 preview; ended by the client")),
        "{seen:?}"
    );
}

/// The same refusals as live.mp4, each logged: no reason, an auditor, a contractor
/// without a live grant (none, or one for playback only), a police officer outside her
/// scope; an unknown camera.
#[tokio::test]
async fn refused_as_live_is_and_logged() {
    let (src, _, _) = source();
    let e = env(&src);
    let (pia, ivan, ada, carl) = (
        e.token("pia").await,
        e.token("ivan").await,
        e.token("ada").await,
        e.token("carl").await,
    );
    let cases: [(&str, String, StatusCode, &str); 6] = [
        (
            &pia,
            uri("gate", ""),
            StatusCode::BAD_REQUEST,
            "case reference is required",
        ),
        (
            &ivan,
            uri("gate", "?purpose="),
            StatusCode::BAD_REQUEST,
            "purpose is required",
        ),
        (
            &ada,
            uri("gate", "?purpose=look"),
            StatusCode::FORBIDDEN,
            "",
        ),
        (
            &carl,
            uri("gate", "?purpose=repair"),
            StatusCode::FORBIDDEN,
            "",
        ),
        (&pia, uri("hall", "?case=CASE-1"), StatusCode::FORBIDDEN, ""),
        (
            &ivan,
            uri("gate", "?purpose=x&from=1"),
            StatusCode::BAD_REQUEST,
            "invalid query",
        ),
    ];
    let mut n = 0;
    for (tok, u, status, why) in &cases {
        let r = e.get(tok, u).await;
        assert_eq!(r.status, *status, "{u}: {}", r.error());
        assert!(r.error().contains(why), "{u}: {}", r.error());
        let logged = e.entries("live");
        assert_eq!(logged.len(), n + 1, "{u}");
        let l = &logged[n];
        assert!(
            l.outcome.starts_with("denied: ") && l.outcome.ends_with("; H.264 preview"),
            "{}",
            l.outcome
        );
        n += 1;
    }
    // A contractor whose grant is for playback only.
    let r = e
        .post(
            &ivan,
            "/api/v1/grants",
            json!({"user": "carl", "cameras": ["gate"], "from": common::t(NOW - 1000),
                   "until": common::t(NOW + 3_600_000), "allow": ["playback"],
                   "playback_from": common::t(T0), "playback_to": common::t(T0 + 1000),
                   "ticket": "CHG-1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.error());
    let r = e.get(&carl, &uri("gate", "?purpose=repair")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let l = e.entries("live");
    assert_eq!(l.len(), n + 1);
    assert!(l[n].outcome.starts_with("denied: "));
    assert_eq!(l[n].actor, "carl");
    // Unknown camera; no session at all (not logged: no one to log).
    assert_eq!(
        e.get(&ivan, &uri("nope", "?purpose=x")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        e.get("not-a-session", &uri("gate", "?purpose=x"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert!(e.entries("live.end").is_empty());
}

/// A revoked grant ends a running view at the next re-check, and so does the end of
/// the session; each end is logged as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_or_an_ended_session_ends_it() {
    let _turn = SLOTS.lock().await;
    let (src, _, rest) = source();
    let e = with_settings(
        env(&src),
        LiveSettings {
            recheck: Duration::from_millis(100),
            ..Default::default()
        },
    );
    let ivan = e.token("ivan").await;
    let carl = e.token("carl").await;
    let r = e
        .post(
            &ivan,
            "/api/v1/grants",
            json!({"user": "carl", "cameras": ["gate"], "from": common::t(NOW - 1000),
                   "until": common::t(NOW + 3_600_000), "allow": ["live"], "ticket": "CHG-2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.error());
    let grant = r.json()["id"].as_i64().unwrap();
    write_later(&src, rest, Duration::from_millis(200));

    let (status, _, mut live) = open(&e, &carl, &uri("gate", "?purpose=repair")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(e.entries("live")[0].outcome, "allowed; H.264 preview");
    assert!(
        live.read_until(Duration::from_secs(30), |b| frames_in(b) >= 2)
            .await
    );
    let r = e.delete(&ivan, &format!("/api/v1/grants/{grant}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let revoked_at = Instant::now();
    // The camera goes on recording, but the view ends.
    assert!(
        live.read_to_end(Duration::from_secs(10)).await,
        "still running"
    );
    eprintln!("ended {:?} after the revocation", revoked_at.elapsed());
    let end = wait_for(&e, "live.end", 0).await;
    assert_eq!(end.actor, "carl");
    assert_eq!(
        end.outcome,
        "allowed; H.264 preview; ended: session ended or rights withdrawn"
    );
    assert_eq!(end.from_ms, Some(frame_time(FIRST_LIVE_FRAME)));
    assert!(end.to_ms.unwrap() >= end.from_ms.unwrap());

    // IT's own view ends with her session.
    let (status, _, mut live) = open(&e, &ivan, &uri("gate", "?purpose=check")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        live.read_until(Duration::from_secs(30), |b| frames_in(b) >= 1)
            .await
    );
    let r = e.post(&ivan, "/api/v1/logout", json!({})).await;
    assert!(r.status.is_success(), "{}", r.status);
    assert!(
        live.read_to_end(Duration::from_secs(10)).await,
        "still running"
    );
    let end = wait_for(&e, "live.end", 1).await;
    assert_eq!(end.actor, "ivan");
    assert!(
        end.outcome
            .ends_with("ended: session ended or rights withdrawn")
    );
}

/// A live preview holds one of the preview slots while it runs: with all of them
/// taken, one more waits a little, then gets 503 with Retry-After (logged as
/// refused); a slot given back serves the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_against_the_preview_limit() {
    let _turn = SLOTS.lock().await;
    let (src, _, _) = source();
    let e = env(&src);
    let ivan = e.token("ivan").await;
    let mut running = Vec::new();
    for _ in 0..preview::MAX_PREVIEWS {
        let (status, _, mut live) = open(&e, &ivan, &uri("gate", "?purpose=watch")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            live.read_until(Duration::from_secs(30), |b| frames_in(b) >= 1)
                .await
        );
        running.push(live);
    }
    let asked = Instant::now();
    let r = e.get(&ivan, &uri("gate", "?purpose=one%20more")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.error());
    assert!(
        asked.elapsed() >= Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(r.header("retry-after"), "2");
    let logged = e.entries("live");
    let last = logged.last().unwrap();
    assert_eq!(last.purpose.as_deref(), Some("one more"));
    assert_eq!(
        last.outcome,
        "denied: too many previews are being made; H.264 preview"
    );
    // One ends: its slot serves the next.
    drop(running.pop());
    wait_for(&e, "live.end", 0).await;
    let (status, _, mut live) = open(&e, &ivan, &uri("gate", "?purpose=watch")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        live.read_until(Duration::from_secs(30), |b| frames_in(b) >= 1)
            .await
    );
    drop(live);
    drop(running);
    wait_for(&e, "live.end", preview::MAX_PREVIEWS).await;
}

/// A live preview is a footage stream: over the caller's limit of streams at once it
/// is refused with 429 (logged as refused, no preview slot taken); a client that
/// stops reading loses it, and its pipeline stops (the slot and the place come back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_against_the_stream_limits_and_a_stalled_client_loses_it() {
    let _turn = SLOTS.lock().await;
    let (src, _, rest) = source();
    let e = env(&src);
    e.state
        .streams
        .set_limits(viewer_api::streams::StreamLimits {
            per_user: 1,
            total: 64,
            stall: Duration::from_secs(2),
        });
    let ivan = e.token("ivan").await;
    let (status, _, mut first) = open(&e, &ivan, &uri("gate", "?purpose=watch")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        first
            .read_until(Duration::from_secs(30), |b| frames_in(b) >= 1)
            .await
    );
    let r = e.get(&ivan, &uri("gate", "?purpose=two")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.error());
    assert_eq!(r.header("retry-after"), "5");
    assert!(
        r.error().contains("at most 1 at once per user"),
        "{}",
        r.error()
    );
    let last = e.entries("live").pop().unwrap();
    assert_eq!(last.purpose.as_deref(), Some("two"));
    assert!(
        last.outcome.starts_with("denied: too many footage streams")
            && last.outcome.ends_with("; H.264 preview"),
        "{}",
        last.outcome
    );
    // The client stops reading while the camera keeps recording: after the stall
    // limit the view ends, its pipeline stops, its place comes back.
    write_later(&src, rest, Duration::from_millis(40));
    let end = wait_for(&e, "live.end", 0).await;
    assert_eq!(end.outcome, "allowed; H.264 preview; ended by the client");
    for _ in 0..100 {
        if e.state.streams.running() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(e.state.streams.running(), 0);
    let (status, _, live) = open(&e, &ivan, &uri("gate", "?purpose=again")).await;
    assert_eq!(status, StatusCode::OK);
    drop((live, first));
}

// ---------------------------------------------------------------------------------------
// latency and CPU (measured on demand)

/// CPU time of this process so far (all threads, user + system).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Reads a live stream, noting when each fragment (by its `prft` time) arrived.
async fn arrivals(mut live: Live, until: Instant) -> Vec<(i64, i64)> {
    let mut seen = 0;
    let mut out = Vec::new();
    while Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        if !live.read_until(left, |b| fragments(b).len() > seen).await {
            break;
        }
        let now = wall_ms();
        let f = fragments(&live.bytes);
        for x in &f[seen..] {
            out.push((x.unix_ms, now));
        }
        seen = f.len();
        // Keep memory small: drop what was parsed.
        if let Some(&(_, at, len)) = boxes(&live.bytes).last() {
            live.bytes.drain(..at + len);
            seen = 0;
        }
    }
    out
}

fn percentile(v: &mut [i64], p: f64) -> i64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A 1920×1080 H.265 camera (25 fps, a key frame every 2 s, a chunk stored every
/// 12 frames, written in real time): `live.mp4` and `live-preview.mp4` watched at
/// once; for each stored chunk, how much later its preview fragment arrived than its
/// `live.mp4` fragment, and the CPU the process used meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a measurement (run with --release --ignored --nocapture)"]
async fn latency_added_by_the_transcoding_1080p() {
    let _turn = SLOTS.lock().await;
    const SECS: u32 = 20;
    eprintln!("encoding 1080p H.265 with ffmpeg (not measured)...");
    let (params, frames) =
        preview::testclip::frames(VideoCodec::H265, 1920, 1080, SECS, 25, 50).expect("ffmpeg");
    let t0 = wall_ms() + 500;
    let chunks = testdata::chunks(&frames, t0, Some(12));
    let src = GrowingSource::new(&["gate"]);
    src.open_segment("gate", params, t0);
    let e = Api::new(NOW, PEOPLE).previews().build(src.clone());
    let ivan = e.token("ivan").await;
    // The chunks are stored when their last frame has arrived.
    let released: Vec<(i64, i64)> = chunks
        .iter()
        .map(|c| {
            let last = c.frames.last().unwrap().pts_90k;
            (c.start_unix_ms, frame_unix_ms(c, last) + 40)
        })
        .collect();
    {
        let src = src.clone();
        std::thread::spawn(move || {
            for c in chunks {
                let last = c.frames.last().unwrap().pts_90k;
                let at = frame_unix_ms(&c, last) + 40;
                let wait = at - wall_ms();
                if wait > 0 {
                    std::thread::sleep(Duration::from_millis(wait as u64));
                }
                src.write("gate", c);
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let until = Instant::now() + Duration::from_secs(u64::from(SECS) - 1);
    let (s1, _, plain) = open(&e, &ivan, "/api/v1/cameras/gate/live.mp4?purpose=latency").await;
    let opened = wall_ms();
    let (s2, _, pre) = open(&e, &ivan, &uri("gate", "?purpose=latency")).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    let cpu0 = cpu_time();
    let began = Instant::now();
    let (plain, pre) = tokio::join!(
        tokio::spawn(arrivals(plain, until)),
        tokio::spawn(arrivals(pre, until))
    );
    let (cpu, wall) = (cpu_time() - cpu0, began.elapsed());
    let (plain, pre) = (plain.unwrap(), pre.unwrap());
    eprintln!(
        "first preview fragment {} ms after the request ({} fragments in the first second)",
        pre[0].1 - opened,
        pre.iter().filter(|(_, at)| *at < opened + 1_000).count()
    );
    // Steady state: chunks stored 3 s after the start (the first burst excluded).
    let steady = t0 + 3_000;
    let mut added = Vec::new();
    let mut behind_live = Vec::new();
    let mut behind_store = Vec::new();
    for &(start, at) in pre.iter().filter(|(s, _)| *s >= steady) {
        let Some(&(_, plain_at)) = plain.iter().find(|(s, _)| *s == start) else {
            continue;
        };
        let Some(&(_, stored)) = released.iter().find(|(s, _)| *s == start) else {
            continue;
        };
        added.push(at - plain_at);
        behind_store.push(at - stored);
        behind_live.push(at - start);
    }
    let mut plain_lat: Vec<i64> = plain
        .iter()
        .filter(|(s, _)| *s >= steady)
        .map(|(s, at)| at - s)
        .collect();
    assert!(added.len() >= 10, "{} chunks compared", added.len());
    eprintln!(
        "{} chunks: added by the transcoding (preview fragment − live.mp4 fragment) \
         median {} ms, p95 {} ms, max {} ms; after the chunk was stored: median {} ms, \
         max {} ms; behind the camera (receipt of the chunk's first frame): live.mp4 \
         median {} ms, preview median {} ms, max {} ms; CPU {:.2} of one core \
         (both views, {:.1} s)",
        added.len(),
        percentile(&mut added, 0.5),
        percentile(&mut added, 0.95),
        percentile(&mut added, 1.0),
        percentile(&mut behind_store, 0.5),
        percentile(&mut behind_store, 1.0),
        percentile(&mut plain_lat, 0.5),
        percentile(&mut behind_live, 0.5),
        percentile(&mut behind_live, 1.0),
        cpu.as_secs_f64() / wall.as_secs_f64(),
        wall.as_secs_f64()
    );
    assert!(percentile(&mut added, 0.95) < 1_000);
}

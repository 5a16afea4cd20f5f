//! End to end with real processes: the test camera (H.264 and H.265 mounts) → `recorder
//! run` → `viewer-api serve` over HTTPS, with users made by `viewer-api user add`.
//!
//! Live view is measured while the recorder records (latency from the recorder's
//! receipt of a frame to the client's receipt of the fragment holding it); then the
//! recorder stops, so that clips can be compared frame for frame with what
//! `recorder check --json` says is stored. Then the role table over real HTTP, the
//! access log as the API shows it, and `viewer-api audit verify`.

use std::time::{Duration, Instant};

use ringfence_tests::procs::{Api, Site, add_user, now_ms, run_bin};
use serde_json::{Value, json};
use viewer_api::clock::{parse_rfc3339, rfc3339};
use viewer_api::testdata::{check_with_ffmpeg, probe_codec};

const FPS: u32 = 25;
const PW: &str = "viewer-e2e-pw-1";

fn enc(s: &str) -> String {
    s.replace('+', "%2B")
        .replace(':', "%3A")
        .replace(' ', "%20")
}

fn video(cam: &str, from: i64, to: i64, why: &str) -> String {
    format!(
        "/api/v1/cameras/{cam}/video.mp4?from={}&to={}&{why}",
        enc(&rfc3339(from)),
        enc(&rfc3339(to))
    )
}

/// Top-level ISO BMFF boxes in `buf`: (type, start, end) of each complete box.
fn boxes(buf: &[u8]) -> Vec<([u8; 4], usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= buf.len() {
        let size = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        if size < 8 || at + size > buf.len() {
            break;
        }
        out.push((buf[at + 4..at + 8].try_into().unwrap(), at, at + size));
        at += size;
    }
    out
}

/// Wall time (unix ms) in a `prft` box (version 1).
fn prft_unix_ms(b: &[u8]) -> i64 {
    let ntp = u64::from_be_bytes(b[16..24].try_into().unwrap());
    let secs = (ntp >> 32) as i64 - 2_208_988_800;
    let frac_ms = (((ntp & 0xffff_ffff) * 1000) >> 32) as i64;
    secs * 1000 + frac_ms
}

/// Samples in a `moof` (its one `trun`).
fn moof_samples(b: &[u8]) -> u64 {
    let pos = b.windows(4).position(|w| w == b"trun").unwrap();
    u32::from_be_bytes(b[pos + 8..pos + 12].try_into().unwrap()) as u64
}

struct LiveResult {
    /// Complete boxes received (init segment and whole fragments).
    file: Vec<u8>,
    frames: u64,
    /// Latency of every fragment whose first frame was recorded after the view began.
    latencies_ms: Vec<i64>,
    burst_fragments: usize,
}

/// Watches live view for `secs`, timing every fragment.
async fn watch_live(api: &Api, auth: &str, cam: &str, secs: u64) -> LiveResult {
    let started = now_ms();
    let mut r = api
        .http
        .get(format!(
            "{}/api/v1/cameras/{cam}/live.mp4?purpose=latency%20test",
            api.base
        ))
        .header("authorization", auth)
        .timeout(Duration::from_secs(secs + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    assert!(r.headers().get("content-length").is_none());
    let mut buf: Vec<u8> = Vec::new();
    let mut res = LiveResult {
        file: Vec::new(),
        frames: 0,
        latencies_ms: Vec::new(),
        burst_fragments: 0,
    };
    let mut prft: Option<i64> = None;
    let mut moof_frames = 0;
    let mut whole_len = 0; // end of the last complete fragment in res.file
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        let chunk = match tokio::time::timeout_at(deadline.into(), r.chunk()).await {
            Ok(c) => c.unwrap().expect("live stream ended"),
            Err(_) => break,
        };
        let arrived = now_ms();
        buf.extend_from_slice(&chunk);
        while let Some(&(typ, s, e)) = boxes(&buf).first() {
            match &typ {
                b"prft" => prft = Some(prft_unix_ms(&buf[s..e])),
                b"moof" => moof_frames = moof_samples(&buf[s..e]),
                b"mdat" => {
                    let first = prft.take().expect("prft before every fragment");
                    if first >= started {
                        res.latencies_ms.push(arrived - first);
                    } else {
                        res.burst_fragments += 1;
                    }
                    res.frames += moof_frames;
                }
                _ => {}
            }
            res.file.extend_from_slice(&buf[..e]);
            buf.drain(..e);
            if &typ == b"mdat" || &typ == b"moov" {
                whole_len = res.file.len();
            }
        }
    }
    res.file.truncate(whole_len);
    res
}

/// Camera entry of `recorder check --json`.
fn stored<'a>(check: &'a Value, id: &str) -> &'a Value {
    check["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} missing from {check:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_recorder_viewer_api_roles_live_and_audit() {
    let test_started = Instant::now();
    let site = Site::new(FPS, "");
    let (dir, config, port) = (&site.dir, site.config.clone(), site.port);
    site.init();
    let recorder = site.spawn("recorder", "run");
    add_user(&config, "pia", "police", Some("gate,hall"), PW);
    add_user(&config, "pete", "police", Some("gate"), PW);
    add_user(&config, "ivan", "it", None, PW);
    add_user(&config, "carl", "contractor", None, PW);
    add_user(&config, "ada", "auditor", None, PW);
    let server = site.spawn("viewer-api", "serve");
    let api = Api::new(port);
    api.wait_up(Duration::from_secs(20)).await;
    let pia = api.login("pia", PW).await;
    let pete = api.login("pete", PW).await;
    let ivan = api.login("ivan", PW).await;
    let carl = api.login("carl", PW).await;
    let ada = api.login("ada", PW).await;

    // --- live view while recording: starts at a key frame, ≤ 2 s behind the recorder
    let live = watch_live(&api, &ivan, "gate", 7).await;
    assert!(
        live.latencies_ms.len() >= 4,
        "too few live fragments: {} (+{} in the first burst)",
        live.latencies_ms.len(),
        live.burst_fragments
    );
    let worst = *live.latencies_ms.iter().max().unwrap();
    eprintln!(
        "live: {} fragments timed, latency max {worst} ms, all {:?}",
        live.latencies_ms.len(),
        live.latencies_ms
    );
    assert!(worst <= 2_000, "live latency {worst} ms > 2 s");
    assert!(live.latencies_ms.iter().all(|&l| l >= 0));
    let live_mp4 = dir.path().join("live.mp4");
    std::fs::write(&live_mp4, &live.file).unwrap();
    assert_eq!(check_with_ffmpeg(&live_mp4).unwrap(), live.frames);
    assert!(live.frames >= 4 * FPS as u64, "{} live frames", live.frames);
    // contractor without a live grant, auditor: no live view
    let r = api
        .get(&carl, "/api/v1/cameras/gate/live.mp4?purpose=look")
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        api.get(&ada, "/api/v1/cameras/gate/live.mp4?purpose=look")
            .await
            .status,
        403
    );

    // --- stop recording; the store is what `recorder check` says it is
    recorder.stop();
    let (code, out, err) = run_bin("recorder", &["check", "--json"], Some(&config), None);
    assert_eq!(code, 0, "recorder check: {out}{err}");
    let check: Value = serde_json::from_str(&out).unwrap();
    // Footage reaches the viewer-api only through the recorder's service: with
    // recording stopped, the service alone.
    let _service = site.serve_recorder();
    let mut ranges = Vec::new();
    for id in ["gate", "hall"] {
        let c = stored(&check, id);
        let first = parse_rfc3339(c["first"].as_str().unwrap()).unwrap();
        let last = parse_rfc3339(c["last"].as_str().unwrap()).unwrap();
        ranges.push((id, first, last, c["frames"].as_u64().unwrap()));
    }

    // --- police with a case: both cameras, every stored frame, playable
    for &(id, first, last, frames) in &ranges {
        let r = api
            .get(
                &pia,
                &video(id, first - 2_000, last + 2_000, "case=CASE-E2E-7"),
            )
            .await;
        assert_eq!(r.status, 200, "{id}");
        let f = dir.path().join(format!("{id}.mp4"));
        std::fs::write(&f, &r.body).unwrap();
        let want = if id == "gate" {
            "h264,avc1"
        } else {
            "hevc,hvc1"
        };
        assert_eq!(probe_codec(&f).unwrap(), want);
        assert_eq!(check_with_ffmpeg(&f).unwrap(), frames, "{id}");
    }
    let (gate_first, gate_last) = (ranges[0].1, ranges[0].2);
    let whole = video("gate", gate_first - 2_000, gate_last + 2_000, "");

    // --- the role table, over real HTTP
    // police: no case → 400; out of scope → 403
    assert_eq!(api.get(&pia, &whole).await.status, 400);
    let r = api
        .get(
            &pete,
            &video("hall", gate_first, gate_last, "case=CASE-E2E-7"),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.json()["error"].as_str().unwrap().contains("scope"));
    // contractor without a grant: sees no camera, gets no footage
    assert_eq!(api.get(&carl, "/api/v1/cameras").await.json(), json!([]));
    assert_eq!(
        api.get(&carl, &format!("{whole}purpose=repair"))
            .await
            .status,
        403
    );
    // it grants playback of that range of gate; then the contractor may play it
    let now = now_ms();
    let r = api
        .post(
            &ivan,
            "/api/v1/grants",
            json!({
                "user": "carl", "cameras": ["gate"],
                "from": rfc3339(now - 60_000), "until": rfc3339(now + 3_600_000),
                "allow": ["playback"],
                "playback_from": rfc3339(gate_first - 2_000),
                "playback_to": rfc3339(gate_last + 2_000),
                "ticket": "CHG-4711"
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let cams = api.get(&carl, "/api/v1/cameras").await.json();
    assert_eq!(cams[0]["id"], "gate");
    assert_eq!(cams.as_array().unwrap().len(), 1);
    let r = api
        .get(&carl, &format!("{whole}purpose=repair%20camera"))
        .await;
    assert_eq!(r.status, 200);
    let f = dir.path().join("carl.mp4");
    std::fs::write(&f, &r.body).unwrap();
    assert_eq!(check_with_ffmpeg(&f).unwrap(), ranges[0].3);
    // ... but not the other camera, nor live (a playback-only grant)
    assert_eq!(
        api.get(
            &carl,
            &video("hall", gate_first, gate_last, "purpose=repair")
        )
        .await
        .status,
        403
    );
    assert_eq!(
        api.get(&carl, "/api/v1/cameras/gate/live.mp4?purpose=repair")
            .await
            .status,
        403
    );
    // auditor: no footage, but the whole log
    assert_eq!(
        api.get(&ada, &format!("{whole}purpose=audit")).await.status,
        403
    );
    let r = api.get(&ada, "/api/v1/audit").await;
    assert_eq!(r.status, 200);
    let entries = r.json();
    let entries = entries.as_array().unwrap();
    let has = |actor: &str, action: &str, outcome: &str, camera: Option<&str>| {
        entries.iter().any(|e| {
            e["actor"] == actor
                && e["action"] == action
                && e["outcome"].as_str().unwrap().starts_with(outcome)
                && camera.is_none_or(|c| e["camera"] == c)
        })
    };
    for user in ["pia", "pete", "ivan", "carl", "ada"] {
        assert!(has(user, "login", "allowed", None), "login of {user}");
    }
    assert!(has("ivan", "live", "allowed", Some("gate")));
    assert!(has("carl", "live", "denied", Some("gate")));
    assert!(has("ada", "live", "denied", Some("gate")));
    assert!(has("pia", "playback", "allowed", Some("gate")));
    assert!(has("pia", "playback", "allowed", Some("hall")));
    assert!(has(
        "pia",
        "playback",
        "denied: a case reference",
        Some("gate")
    ));
    assert!(has("pete", "playback", "denied", Some("hall")));
    assert!(has("carl", "playback", "denied", Some("gate")));
    assert!(has("carl", "playback", "allowed", Some("gate")));
    assert!(has("carl", "playback", "denied", Some("hall")));
    assert!(has("ivan", "grant.create", "allowed", Some("gate")));
    assert!(has("ada", "playback", "denied", Some("gate")));
    let case_logged = entries
        .iter()
        .filter(|e| e["case"] == "CASE-E2E-7" && e["outcome"] == "allowed")
        .count();
    assert_eq!(case_logged, 2);
    // The end of the live view is logged with the wall-clock range it showed.
    let end = entries
        .iter()
        .find(|e| e["actor"] == "ivan" && e["action"] == "live.end")
        .expect("live.end logged");
    assert!(end["from"].is_string() && end["to"].is_string(), "{end}");
    // police read their own entries only; contractors none
    let own = api.get(&pia, "/api/v1/audit").await.json();
    assert!(own.as_array().unwrap().iter().all(|e| e["actor"] == "pia"));
    assert_eq!(api.get(&carl, "/api/v1/audit").await.status, 403);

    server.stop();
    let (code, out, err) = run_bin("viewer-api", &["audit", "verify"], Some(&config), None);
    assert_eq!(code, 0, "audit verify: {out}{err}");
    assert!(out.contains("intact"), "{out}");
    eprintln!("viewer e2e took {:?}", test_started.elapsed());
}

//! Previews and thumbnails through the HTTP API, in-process: an in-memory store (an
//! H.265 camera and an H.264 one), a manual clock, real SQLite files.

mod common;

use std::process::Command;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use common::{Api, Env, Person, t};
use viewer_api::playback::MemorySource;
use viewer_api::policy::Role;
use viewer_api::testdata;

const T0: i64 = 1_700_000_000_000; // recording starts here
const NOW: i64 = T0 + 3_600_000;

const PEOPLE: &[Person] = &[
    ("pia", Role::Police, Some(&["gate", "hall"])),
    ("paul", Role::Police, None),
    ("ivan", Role::It, None),
    ("carl", Role::Contractor, None),
];

/// `gate`: 4 s of H.265; `hall`: 4 s of H.264; 25 fps, a key frame every second.
fn source() -> MemorySource {
    let src = testdata::memory_source(&["gate", "hall"]);
    let (params, frames) = testdata::h265_track(4, 25, 25).expect("ffmpeg with libx265");
    src.add_segment("gate", params, testdata::chunks(&frames, T0, Some(10)));
    let (params, frames) = testdata::h264_track(4, 25, 25).expect("ffmpeg");
    src.add_segment("hall", params, testdata::chunks(&frames, T0, None));
    src
}

fn env() -> Env {
    Api::new(NOW, PEOPLE).viewings().previews().build(source())
}

/// `codec_name,width,height` and the packets' pts (90 kHz) of a video, by ffprobe.
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
    let stream = run(&["-show_entries", "stream=codec_name,width,height"]);
    let pts = run(&["-show_entries", "packet=pts"])
        .lines()
        .map(|l| l.trim_end_matches(',').parse().unwrap())
        .collect();
    (stream, pts)
}

#[tokio::test]
async fn previews_and_thumbnails_of_a_viewing() {
    let e = env();
    let pia = e.token("pia").await;
    for (cam, codec) in [("gate", "h265"), ("hall", "h264")] {
        let r = e
            .post(
                &pia,
                &format!("/api/v1/cameras/{cam}/viewings"),
                json!({"at": t(T0 + 500), "secs": 60, "case": "CASE-7"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
        let v = r.json();
        assert_eq!(v["codec"], codec);
        assert_eq!(v["from_ms"], T0);
        let preview = v["preview"].as_str().unwrap().to_string();
        let thumb = v["thumb"].as_str().unwrap().to_string();
        let logged = e.audit_count();

        // The whole viewing: H.264, one frame per frame, on the viewing's timeline.
        let r = e.get(&pia, &preview).await;
        assert_eq!(r.status, StatusCode::OK, "{cam}");
        assert_eq!(r.header("content-type"), "video/mp4");
        assert_eq!(r.header("x-preview-start-ms"), "0");
        assert_eq!(r.header("cache-control"), "no-store");
        let (stream, pts) = probe(&r.body);
        assert_eq!(stream, "h264,320,240", "{cam}");
        assert_eq!(pts, (0..100).map(|i| i * 3_600).collect::<Vec<i64>>());

        // From 2.5 s: the key frame at 2 s, at 2 s.
        let r = e.get(&pia, &format!("{preview}?t=2500")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-preview-start-ms"), "2000");
        let (_, pts) = probe(&r.body);
        assert_eq!(pts.first(), Some(&180_000));
        assert_eq!(pts.len(), 50);

        // A thumbnail: the key frame at or before `at`.
        let r = e.get(&pia, &format!("{thumb}?at={}", t(T0 + 1_700))).await;
        assert_eq!(r.status, StatusCode::OK, "{cam}");
        assert_eq!(r.header("content-type"), "image/jpeg");
        assert_eq!(r.header("x-frame-time"), t(T0 + 1_000));
        assert_eq!(r.header("x-media-ms"), "1000");
        assert_eq!(&r.body[..2], &[0xff, 0xd8]);
        let (stream, _) = probe(&r.body);
        assert_eq!(stream, "mjpeg,160,120");
        // The same one again (from memory).
        let again = e.get(&pia, &format!("{thumb}?at={}", t(T0 + 1_900))).await;
        assert_eq!(again.body, r.body);

        // Bad inputs.
        for (uri, status) in [
            (format!("{preview}?t=-1"), StatusCode::BAD_REQUEST),
            (format!("{preview}?t=4000"), StatusCode::BAD_REQUEST),
            (format!("{preview}?t=soon"), StatusCode::BAD_REQUEST),
            (format!("{preview}?x=1"), StatusCode::BAD_REQUEST),
            (thumb.clone(), StatusCode::BAD_REQUEST),
            (format!("{thumb}?at=yesterday"), StatusCode::BAD_REQUEST),
            (format!("{thumb}?at={}", t(T0 - 1)), StatusCode::BAD_REQUEST),
            (
                format!("{thumb}?at={}", t(T0 + 4_001)),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/v1/viewings/0123/preview.mp4".into(),
                StatusCode::NOT_FOUND,
            ),
            (
                "/api/v1/viewings/0123/thumb.jpg".into(),
                StatusCode::NOT_FOUND,
            ),
        ] {
            let r = e.get(&pia, &uri).await;
            assert_eq!(r.status, status, "{uri}");
            assert!(r.json()["error"].is_string(), "{uri}");
        }

        // Another person cannot use this viewing, nor can nobody.
        let paul = e.token("paul").await;
        assert_eq!(e.get(&paul, &preview).await.status, StatusCode::NOT_FOUND);
        let at = format!("{thumb}?at={}", t(T0));
        assert_eq!(e.get(&paul, &at).await.status, StatusCode::NOT_FOUND);
        let r = e
            .send(Request::get(&preview).body(Body::empty()).unwrap())
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        // All of it under the viewing's one entry (paul's login is the only new one).
        assert_eq!(e.audit_count(), logged + 1, "{cam}");
    }
    viewer_api::audit::verify(&e.audit_path).unwrap();
}

#[tokio::test]
async fn a_withdrawn_grant_stops_previews_and_thumbnails() {
    let e = env();
    let ivan = e.token("ivan").await;
    let r = e
        .post(
            &ivan,
            "/api/v1/grants",
            json!({
                "user": "carl", "cameras": ["gate"], "from": t(NOW - 60_000),
                "until": t(NOW + 3_600_000), "allow": ["playback"],
                "playback_from": t(T0), "playback_to": t(T0 + 2_000), "ticket": "CHG-7"
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let grant = r.json()["id"].as_i64().unwrap();
    let carl = e.token("carl").await;
    let r = e
        .post(
            &carl,
            "/api/v1/cameras/gate/viewings",
            json!({"at": t(T0), "secs": 2, "purpose": "fix the lens"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let v = r.json();
    let (preview, thumb) = (
        v["preview"].as_str().unwrap().to_string(),
        format!("{}?at={}", v["thumb"].as_str().unwrap(), t(T0 + 1_500)),
    );
    assert_eq!(e.get(&carl, &preview).await.status, StatusCode::OK);
    assert_eq!(e.get(&carl, &thumb).await.status, StatusCode::OK);
    let r = e.delete(&ivan, &format!("/api/v1/grants/{grant}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(e.get(&carl, &preview).await.status, StatusCode::FORBIDDEN);
    // Even a thumbnail made before (kept in memory) is not shown any more.
    assert_eq!(e.get(&carl, &thumb).await.status, StatusCode::FORBIDDEN);
}

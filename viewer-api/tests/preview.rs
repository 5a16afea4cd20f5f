//! Previews and thumbnails through the HTTP API, in-process: an in-memory store (an
//! H.265 camera and an H.264 one), a manual clock, real SQLite files.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use viewer_api::api::AppState;
use viewer_api::audit::AuditLog;
use viewer_api::clock::{ManualClock, rfc3339};
use viewer_api::metrics::Metrics;
use viewer_api::mp4::{TrackParams, VideoCodec};
use viewer_api::playback::{CameraInfo, MemorySource};
use viewer_api::policy::Role;
use viewer_api::testdata;
use viewer_api::throttle::Throttle;
use viewer_api::users::UserDb;

const T0: i64 = 1_700_000_000_000; // recording starts here
const NOW: i64 = T0 + 3_600_000;
const PW: &str = "password-123";

struct Env {
    _dir: tempfile::TempDir,
    audit_path: std::path::PathBuf,
    app: axum::Router,
}

/// `gate`: 4 s of H.265; `hall`: 4 s of H.264; 25 fps, a key frame every second.
fn source() -> MemorySource {
    let src = MemorySource {
        cameras: ["gate", "hall"]
            .iter()
            .map(|c| CameraInfo {
                id: c.to_string(),
                name: c.to_uppercase(),
                state: "recording".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let (hvcc, frames) = testdata::h265_frames(4, 25, 25).expect("ffmpeg with libx265");
    let params = TrackParams {
        codec: VideoCodec::H265,
        extra_data: hvcc,
        width: 320,
        height: 240,
    };
    src.add_segment("gate", params, testdata::chunks(&frames, T0, Some(10)));
    let (avcc, frames) = testdata::h264_frames(4, 25, 25).expect("ffmpeg");
    let params = TrackParams {
        codec: VideoCodec::H264,
        extra_data: avcc,
        width: 320,
        height: 240,
    };
    src.add_segment("hall", params, testdata::chunks(&frames, T0, None));
    src
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let users = UserDb::open(
        &dir.path().join("users.sqlite"),
        clock.clone(),
        UserDb::test_argon(),
    )
    .unwrap();
    users
        .add_user(
            "pia",
            Role::Police,
            Some(vec!["gate".into(), "hall".into()]),
            PW,
        )
        .unwrap();
    users.add_user("paul", Role::Police, None, PW).unwrap();
    users.add_user("ivan", Role::It, None, PW).unwrap();
    users.add_user("carl", Role::Contractor, None, PW).unwrap();
    let audit_path = dir.path().join("audit.sqlite");
    let audit = AuditLog::open(&audit_path, clock.clone(), Duration::from_millis(200)).unwrap();
    let state = Arc::new(AppState {
        users: Arc::new(users),
        audit: Arc::new(audit),
        source: Arc::new(source()),
        clock: clock.clone(),
        throttle: Throttle::new(clock.clone(), Duration::ZERO),
        metrics: Arc::new(Metrics::new()),
        viewings: Default::default(),
    });
    let app = viewer_api::api::router(state.clone())
        .merge(viewer_api::viewing::router(state.clone()))
        .merge(viewer_api::preview::router(state));
    Env {
        _dir: dir,
        audit_path,
        app,
    }
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

impl Env {
    async fn send(&self, mut req: Request<Body>) -> Resp {
        req.extensions_mut()
            .insert(ConnectInfo("10.1.2.3:5555".parse::<SocketAddr>().unwrap()));
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn token(&self, user: &str) -> String {
        let r = self
            .send(
                Request::post("/api/v1/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        json!({"username": user, "password": PW}).to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        r.json()["token"].as_str().unwrap().to_string()
    }

    async fn get(&self, tok: &str, uri: &str) -> Resp {
        self.send(
            Request::get(uri)
                .header(header::AUTHORIZATION, format!("Bearer {tok}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn post(&self, tok: &str, uri: &str, body: Value) -> Resp {
        self.send(
            Request::post(uri)
                .header(header::AUTHORIZATION, format!("Bearer {tok}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn delete(&self, tok: &str, uri: &str) -> Resp {
        self.send(
            Request::delete(uri)
                .header(header::AUTHORIZATION, format!("Bearer {tok}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    fn audit_count(&self) -> i64 {
        rusqlite::Connection::open(&self.audit_path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
            .unwrap()
    }
}

fn t(ms: i64) -> String {
    rfc3339(ms)
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

//! The API in-process: an in-memory store, a manual clock, real SQLite files.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use common::{Api, Env, PW, Person, Resp, t};
use viewer_api::playback::{GapInfo, MemorySource};
use viewer_api::policy::Role;
use viewer_api::testdata;

const T0: i64 = 1_700_000_000_000; // recording starts here
const NOW: i64 = T0 + 3_600_000;

const PEOPLE: &[Person] = &[
    ("pia", Role::Police, Some(&["gate"])),
    ("paul", Role::Police, None),
    ("ivan", Role::It, None),
    ("carl", Role::Contractor, None),
    ("ada", Role::Auditor, None),
];

/// gate and hall: 4 s from T0, then gate is offline until T0+10 s; roof: 4 s, a 6 s gap,
/// 4 s more.
fn source() -> MemorySource {
    let (params, frames) = testdata::h264_track(4, 25, 25).expect("ffmpeg");
    let mut src = testdata::memory_source(&["gate", "hall", "roof"]);
    src.gaps.insert(
        "gate".to_string(),
        vec![GapInfo {
            from_ms: T0 + 4_000,
            to_ms: Some(T0 + 10_000),
            reason: "camera offline".into(),
        }],
    );
    for cam in ["gate", "hall"] {
        src.add_segment(cam, params.clone(), testdata::chunks(&frames, T0, None));
    }
    // roof: 4 s, a 6 s gap, 4 s more
    for start in [T0, T0 + 10_000] {
        src.add_segment(
            "roof",
            params.clone(),
            testdata::chunks(&frames, start, None),
        );
    }
    src
}

fn env() -> Env {
    Api::new(NOW, PEOPLE).viewings().build(source())
}

impl Env {
    async fn login(&self, user: &str, pw: &str) -> Resp {
        self.send(common::login_req(user, pw)).await
    }
}

fn video_uri(cam: &str, from: i64, to: i64, extra: &str) -> String {
    format!(
        "/api/v1/cameras/{cam}/video.mp4?from={}&to={}{extra}",
        t(from),
        t(to)
    )
}

fn grant_body(from: i64, until: i64) -> Value {
    json!({
        "user": "carl", "cameras": ["gate"], "from": t(from), "until": t(until),
        "allow": ["playback"], "playback_from": t(T0), "playback_to": t(T0 + 2_000),
        "ticket": "CHG-1001"
    })
}

#[tokio::test]
async fn login_tokens_and_expiry() {
    let e = env();
    assert_eq!(
        e.login("pia", "nope-nope-nope").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(e.login("ghost", PW).await.status, StatusCode::UNAUTHORIZED);
    let r = e.login("pia", PW).await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = r
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let tok = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(r.json()["expires_at"], t(NOW + 15 * 60_000));

    assert_eq!(e.get(&tok, "/api/v1/cameras").await.status, StatusCode::OK);
    // the cookie works too
    let r = e
        .send(
            Request::get("/api/v1/cameras")
                .header(header::COOKIE, format!("rf_session={tok}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // no token, bad token
    let r = e
        .send(Request::get("/api/v1/cameras").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.error().is_empty());
    assert_eq!(
        e.get("0123", "/api/v1/cameras").await.status,
        StatusCode::UNAUTHORIZED
    );

    // idle expiry
    e.clock.advance_ms(15 * 60_000);
    assert_eq!(
        e.get(&tok, "/api/v1/cameras").await.status,
        StatusCode::UNAUTHORIZED
    );

    // logout revokes
    let tok = e.token("pia").await;
    let r = e.post(&tok, "/api/v1/logout", json!({})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        e.get(&tok, "/api/v1/cameras").await.status,
        StatusCode::UNAUTHORIZED
    );

    // absolute expiry at 8 h, even when used every 10 minutes
    let tok = e.token("pia").await;
    for _ in 0..(8 * 6 - 1) {
        e.clock.advance_ms(10 * 60_000);
        assert_eq!(e.get(&tok, "/api/v1/cameras").await.status, StatusCode::OK);
    }
    e.clock.advance_ms(10 * 60_000);
    assert_eq!(
        e.get(&tok, "/api/v1/cameras").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn lockout_after_failed_logins() {
    let e = env();
    for _ in 0..5 {
        assert_eq!(
            e.login("pia", "wrong-password").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // locked: even the right password fails, and says so
    let r = e.login("pia", PW).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.error().contains("too many"), "{}", r.error());
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    // another user from the same address is not locked yet
    assert_eq!(e.login("paul", PW).await.status, StatusCode::OK);
    // the failures and the lock are in the log
    let ada = e.token("ada").await;
    let log = e.get(&ada, "/api/v1/audit?actor=pia").await.json();
    let outcomes: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| o.contains("bad credentials"))
            .count(),
        5
    );
    assert!(
        outcomes.iter().any(|o| o.contains("user locked")),
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|o| o.contains("locked after failed logins")),
        "{outcomes:?}"
    );
    // 15 minutes later it works again
    e.clock.advance_ms(15 * 60_000);
    assert_eq!(e.login("pia", PW).await.status, StatusCode::OK);
}

#[tokio::test]
async fn cameras_by_role_and_grants() {
    let e = env();
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let pia = e.token("pia").await;
    let ivan = e.token("ivan").await;
    let carl = e.token("carl").await;
    let ada = e.token("ada").await;
    assert_eq!(ids(e.get(&pia, "/api/v1/cameras").await.json()), ["gate"]);
    assert_eq!(
        ids(e.get(&ivan, "/api/v1/cameras").await.json()),
        ["gate", "hall", "roof"]
    );
    assert_eq!(e.get(&carl, "/api/v1/cameras").await.json(), json!([]));
    assert_eq!(ids(e.get(&ada, "/api/v1/cameras").await.json()).len(), 3);
    let cam = &e.get(&ivan, "/api/v1/cameras").await.json()[0];
    assert_eq!(cam["name"], "GATE");
    assert_eq!(cam["state"], "recording");

    // grants: only it, never to oneself, only to contractors
    let r = e
        .post(
            &carl,
            "/api/v1/grants",
            grant_body(NOW - 1000, NOW + 3_600_000),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut self_grant = grant_body(NOW, NOW + 1000);
    self_grant["user"] = json!("ivan");
    let r = e.post(&ivan, "/api/v1/grants", self_grant).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.error());
    let mut to_police = grant_body(NOW, NOW + 1000);
    to_police["user"] = json!("pia");
    assert_eq!(
        e.post(&ivan, "/api/v1/grants", to_police).await.status,
        StatusCode::BAD_REQUEST
    );
    let mut bad_allow = grant_body(NOW, NOW + 1000);
    bad_allow["allow"] = json!(["export"]);
    assert_eq!(
        e.post(&ivan, "/api/v1/grants", bad_allow).await.status,
        StatusCode::BAD_REQUEST
    );

    let r = e
        .post(
            &ivan,
            "/api/v1/grants",
            grant_body(NOW - 1000, NOW + 3_600_000),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.error());
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(ids(e.get(&carl, "/api/v1/cameras").await.json()), ["gate"]);
    let list = e.get(&ivan, "/api/v1/grants").await.json();
    assert_eq!(list[0]["ticket"], "CHG-1001");
    assert_eq!(list[0]["active"], true);

    // playback inside the grant's media range: allowed; outside: 403; live-less grant
    let ok = video_uri("gate", T0, T0 + 2_000, "&purpose=fix%20camera");
    assert_eq!(e.get(&carl, &ok).await.status, StatusCode::OK);
    let outside = video_uri("gate", T0, T0 + 4_000, "&purpose=fix");
    assert_eq!(e.get(&carl, &outside).await.status, StatusCode::FORBIDDEN);
    let other_cam = video_uri("hall", T0, T0 + 2_000, "&purpose=fix");
    assert_eq!(e.get(&carl, &other_cam).await.status, StatusCode::FORBIDDEN);

    // revoked: gone at once
    let r = e
        .send(
            Request::delete(format!("/api/v1/grants/{id}"))
                .header(header::AUTHORIZATION, format!("Bearer {ivan}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(e.get(&carl, "/api/v1/cameras").await.json(), json!([]));
    assert_eq!(e.get(&carl, &ok).await.status, StatusCode::FORBIDDEN);

    // a grant expires by itself
    let r = e
        .post(
            &ivan,
            "/api/v1/grants",
            grant_body(NOW - 1000, NOW + 60_000),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(e.get(&carl, &ok).await.status, StatusCode::OK);
    e.clock.advance_ms(60_000);
    assert_eq!(e.get(&carl, &ok).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn footage_needs_reason_scope_and_is_logged_first() {
    let e = env();
    let pia = e.token("pia").await;
    let ivan = e.token("ivan").await;
    let ada = e.token("ada").await;
    let base = video_uri("gate", T0 + 1_500, T0 + 3_000, "");

    let r = e.get(&pia, &base).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("case"), "{}", r.error());
    assert_eq!(
        e.get(&pia, &format!("{base}&purpose=curious")).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        e.get(&ivan, &format!("{base}&case=C-1")).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        e.get(&ada, &format!("{base}&purpose=look")).await.status,
        StatusCode::FORBIDDEN
    );
    // out of scope for pia
    let hall = video_uri("hall", T0, T0 + 1_000, "&case=C-1");
    assert_eq!(e.get(&pia, &hall).await.status, StatusCode::FORBIDDEN);

    let r = e.get(&pia, &format!("{base}&case=CASE-2024-17")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "video/mp4");
    let len: usize = r.headers[header::CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, r.body.len());
    assert_eq!(&r.body[4..8], b"ftyp");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("v.mp4");
    std::fs::write(&f, &r.body).unwrap();
    // from 1.5 s: starts at the key frame at 1 s; 1 s..3 s = 50 frames
    assert_eq!(viewer_api::testdata::check_with_ffmpeg(&f).unwrap(), 50);

    // Range requests return exactly the bytes asked for
    let full = r.body.clone();
    for (range, a, b) in [
        ("bytes=0-99", 0usize, 99usize),
        ("bytes=1000-", 1000, full.len() - 1),
        ("bytes=-500", full.len() - 500, full.len() - 1),
        (
            &*format!("bytes={}-{}", full.len() - 3000, full.len() - 2000),
            full.len() - 3000,
            full.len() - 2000,
        ),
    ] {
        let r = e
            .send(
                Request::get(format!("{base}&case=CASE-2024-17"))
                    .header(header::AUTHORIZATION, format!("Bearer {pia}"))
                    .header(header::RANGE, range)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.body, full[a..=b], "{range}");
        assert_eq!(
            r.headers[header::CONTENT_RANGE].to_str().unwrap(),
            format!("bytes {a}-{b}/{}", full.len())
        );
    }
    let r = e
        .send(
            Request::get(format!("{base}&case=CASE-2024-17"))
                .header(header::AUTHORIZATION, format!("Bearer {pia}"))
                .header(header::RANGE, format!("bytes={}-", full.len()))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);

    // nothing recorded there
    let empty = video_uri("gate", T0 + 600_000, T0 + 700_000, "&purpose=x");
    assert_eq!(e.get(&ivan, &empty).await.status, StatusCode::NOT_FOUND);

    // the log has every footage request with its reason, camera, range and client
    let log = e.get(&ada, "/api/v1/audit?camera=gate").await.json();
    let entries = log.as_array().unwrap();
    let allowed: Vec<&Value> = entries
        .iter()
        .filter(|x| x["action"] == "playback" && x["outcome"] == "allowed")
        .collect();
    assert!(allowed.len() >= 6, "{entries:?}");
    let first = allowed[0];
    assert_eq!(first["actor"], "pia");
    assert_eq!(first["role"], "police");
    assert_eq!(first["case"], "CASE-2024-17");
    // The range logged is the range served: from the key frame at or before 1.5 s
    // (one a second), to the end of the last frame before 3 s.
    assert_eq!(first["from"], t(T0 + 1_000));
    assert_eq!(first["to"], t(T0 + 3_000));
    assert_eq!(first["client"], "10.1.2.3");
    assert!(
        entries.iter().any(|x| x["outcome"]
            .as_str()
            .unwrap()
            .starts_with("denied: a case reference")),
        "{entries:?}"
    );

    // police read their own entries only
    let own = e.get(&pia, "/api/v1/audit").await.json();
    assert!(own.as_array().unwrap().iter().all(|x| x["actor"] == "pia"));
    assert_eq!(
        e.get(&pia, "/api/v1/audit?actor=ivan").await.status,
        StatusCode::FORBIDDEN
    );
    let carl = e.token("carl").await;
    assert_eq!(
        e.get(&carl, "/api/v1/audit").await.status,
        StatusCode::FORBIDDEN
    );

    // subject access: who viewed gate footage covering T0+2 s, when and why
    let sar = e
        .get(
            &ada,
            &format!(
                "/api/v1/audit/subject-access?camera=gate&from={}&to={}",
                t(T0 + 2_000),
                t(T0 + 2_001)
            ),
        )
        .await;
    assert_eq!(sar.status, StatusCode::OK);
    let sar = sar.json();
    assert!(!sar.as_array().unwrap().is_empty());
    assert!(
        sar.as_array()
            .unwrap()
            .iter()
            .all(|x| x["outcome"] == "allowed" && x["case"] == "CASE-2024-17")
    );
    assert_eq!(
        e.get(&pia, "/api/v1/audit/subject-access?camera=gate")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        viewer_api::audit::verify(&e.audit_path).unwrap(),
        e.audit_count()
    );
}

#[tokio::test]
async fn footage_refused_when_the_log_cannot_be_written() {
    let e = env();
    let pia = e.token("pia").await;
    let before = e.audit_count();
    let lock = rusqlite::Connection::open(&e.audit_path).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let r = e
        .get(&pia, &video_uri("gate", T0, T0 + 2_000, "&case=C-9"))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.error().contains("access log"));
    assert!(r.body.len() < 200, "no footage in the answer");
    // logins cannot happen unlogged either
    assert_eq!(
        e.login("ivan", PW).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    assert_eq!(e.audit_count(), before);
    assert_eq!(
        e.get(&pia, &video_uri("gate", T0, T0 + 2_000, "&case=C-9"))
            .await
            .status,
        StatusCode::OK
    );
    assert!(
        e.state
            .metrics
            .encode()
            .contains("audit_append_failures_total 2")
    );
}

#[tokio::test]
async fn bad_inputs_get_clear_4xx() {
    let e = env();
    let ivan = e.token("ivan").await;
    let cases: Vec<(String, StatusCode)> = vec![
        (
            video_uri("gate", T0, T0 + 1000, "&purpose=x").replace(&t(T0), "yesterday"),
            StatusCode::BAD_REQUEST,
        ),
        (
            video_uri("gate", T0 + 1000, T0, "&purpose=x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            video_uri("gate", T0, T0 + 1000, "&purpose=x")
                .replace(&format!("&to={}", t(T0 + 1000)), ""),
            StatusCode::BAD_REQUEST,
        ),
        (
            video_uri("gate", T0, T0 + 24 * 3_600_000 + 1, "&purpose=x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            video_uri("gate", T0, T0 + 1000, "&purpose=x&colour=red"),
            StatusCode::BAD_REQUEST,
        ),
        (
            video_uri(
                "gate",
                T0,
                T0 + 1000,
                &format!("&purpose={}", "x".repeat(300)),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            video_uri("nope", T0, T0 + 1000, "&purpose=x"),
            StatusCode::NOT_FOUND,
        ),
        (
            video_uri("..", T0, T0 + 1000, "&purpose=x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            video_uri("%2e%2e%2fetc", T0, T0 + 1000, "&purpose=x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            video_uri("GATE", T0, T0 + 1000, "&purpose=x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/cameras/gate/recordings?from=x&to=y".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!(
                "/api/v1/cameras/gate/recordings?from={}&to={}",
                t(T0 + 10),
                t(T0)
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/cameras/gate/../../etc/passwd".into(),
            StatusCode::NOT_FOUND,
        ),
        ("/api/v1/nothing".into(), StatusCode::NOT_FOUND),
        ("/api/v1/audit?from=soon".into(), StatusCode::BAD_REQUEST),
        ("/api/v1/audit?camera=../x".into(), StatusCode::BAD_REQUEST),
    ];
    for (uri, want) in cases {
        let r = e.get(&ivan, &uri).await;
        assert_eq!(r.status, want, "{uri}");
        assert!(!r.error().is_empty(), "{uri}");
    }
    // bodies
    let big = "x".repeat(100_000);
    let r = e
        .send(
            Request::post("/api/v1/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(format!(
                    "{{\"username\":\"{big}\",\"password\":\"x\"}}"
                )))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!r.error().is_empty());
    for body in [
        "{",
        "[]",
        "{\"username\":1}",
        "{\"username\":\"a\",\"password\":\"b\",\"x\":1}",
    ] {
        let r = e
            .send(
                Request::post("/api/v1/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        assert!(r.status.is_client_error(), "{body}: {}", r.status);
        assert!(!r.error().is_empty(), "{body}");
    }
    let r = e
        .post(&ivan, "/api/v1/grants", json!({"user": "carl"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut g = grant_body(NOW, NOW + 1000);
    g["from"] = json!("not a time");
    assert_eq!(
        e.post(&ivan, "/api/v1/grants", g).await.status,
        StatusCode::BAD_REQUEST
    );
    let r = e
        .send(
            Request::delete("/api/v1/grants/abc")
                .header(header::AUTHORIZATION, format!("Bearer {ivan}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = e
        .send(Request::put("/api/v1/cameras").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    // recordings still fine, and the log still intact after all that
    let r = e
        .get(
            &ivan,
            &format!(
                "/api/v1/cameras/gate/recordings?from={}&to={}",
                t(T0 - 1000),
                t(T0 + 60_000)
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["spans"][0]["from"], t(T0));
    assert_eq!(v["gaps"][0]["reason"], "camera offline");
    viewer_api::audit::verify(&e.audit_path).unwrap();
}

#[tokio::test]
async fn openapi_and_metrics() {
    let e = env();
    let r = e
        .send(
            Request::get("/api/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["openapi"], "3.0.3");
}

// ---------------------------------------------------------------------------------------
// viewings

fn last_entry(e: &Env) -> (String, Option<String>, Option<i64>, Option<String>, String) {
    rusqlite::Connection::open(&e.audit_path)
        .unwrap()
        .query_row(
            "SELECT action, camera, from_ms, case_ref, outcome FROM entries ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap()
}

async fn open_viewing(e: &Env, tok: &str, cam: &str, body: Value) -> Resp {
    e.post(tok, &format!("/api/v1/cameras/{cam}/viewings"), body)
        .await
}

async fn get_range(e: &Env, tok: &str, uri: &str, range: &str) -> Resp {
    e.send(
        Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {tok}"))
            .header(header::RANGE, range)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_viewing_is_logged_once_for_the_range_served() {
    let e = env();
    let paul = e.token("paul").await;
    let before = e.audit_count();
    // 1.5 s in: served from the key frame at 1 s (one GOP a second).
    let r = open_viewing(
        &e,
        &paul,
        "gate",
        json!({"at": t(T0 + 1_500), "case": "CASE-7"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.error());
    let v = r.json();
    assert_eq!(v["from_ms"], T0 + 1_000);
    assert_eq!(v["from"], t(T0 + 1_000));
    assert_eq!(v["codec"], "h264");
    assert!(
        v["mime"]
            .as_str()
            .unwrap()
            .starts_with("video/mp4; codecs=\"avc1.")
    );
    assert_eq!(v["map"], json!([[0, T0 + 1_000]]));
    assert_eq!(e.audit_count(), before + 1);
    let (action, camera, from, case, outcome) = last_entry(&e);
    assert_eq!(
        (
            action.as_str(),
            camera.as_deref(),
            case.as_deref(),
            outcome.as_str()
        ),
        ("playback", Some("gate"), Some("CASE-7"), "allowed")
    );
    assert_eq!(from, Some(T0 + 1_000));

    // The player's many requests are served under that one entry.
    let uri = v["video"].as_str().unwrap().to_string();
    let full = e.get(&paul, &uri).await;
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(&full.body[4..8], b"ftyp");
    let part = get_range(&e, &paul, &uri, "bytes=100-199").await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, full.body[100..200]);
    assert_eq!(e.audit_count(), before + 1);

    // Only the session that opened it: another login of the same user, or anyone else,
    // gets nothing.
    let paul2 = e.token("paul").await;
    assert_eq!(e.get(&paul2, &uri).await.status, StatusCode::NOT_FOUND);
    let ivan = e.token("ivan").await;
    assert_eq!(e.get(&ivan, &uri).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        e.get(&paul, "/api/v1/viewings/0123456789abcdef/video.mp4")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_viewing_needs_its_reason_and_scope_and_refusals_are_logged() {
    let e = env();
    let pia = e.token("pia").await;
    let ada = e.token("ada").await;
    let before = e.audit_count();
    let r = open_viewing(&e, &pia, "gate", json!({"at": t(T0 + 1_500)})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("case"), "{}", r.error());
    let r = open_viewing(&e, &pia, "hall", json!({"at": t(T0), "case": "C-1"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = open_viewing(&e, &ada, "gate", json!({"at": t(T0), "purpose": "x"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = open_viewing(&e, &pia, "gate", json!({"at": "yesterday", "case": "C-1"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = open_viewing(&e, &pia, "gate", json!({"at": t(NOW), "case": "C-1"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(e.audit_count(), before + 5);
    let (_, _, _, _, outcome) = last_entry(&e);
    assert!(outcome.starts_with("denied: nothing recorded"), "{outcome}");
}

#[tokio::test]
async fn a_viewing_maps_media_time_across_a_gap() {
    let e = env();
    let ivan = e.token("ivan").await;
    let r = open_viewing(
        &e,
        &ivan,
        "roof",
        json!({"at": t(T0 + 3_000), "secs": 60, "purpose": "check the roof camera"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.error());
    let v = r.json();
    // 1 s before the gap, then the footage after it follows at once in the file.
    assert_eq!(v["map"], json!([[0, T0 + 3_000], [1_000, T0 + 10_000]]));
    assert_eq!(v["to_ms"], T0 + 14_000);
}

#[tokio::test]
async fn a_narrow_grant_is_served_from_the_first_key_frame_inside_it_and_stops_when_revoked() {
    let e = env();
    let ivan = e.token("ivan").await;
    let carl = e.token("carl").await;
    let mut g = grant_body(NOW - 1_000, NOW + 3_600_000);
    g["playback_from"] = json!(t(T0 + 1_500));
    g["playback_to"] = json!(t(T0 + 3_000));
    let r = e.post(&ivan, "/api/v1/grants", g).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.error());
    let grant = r.json()["id"].as_i64().unwrap();
    let r = open_viewing(
        &e,
        &carl,
        "gate",
        json!({"at": t(T0 + 1_500), "purpose": "repair CHG-1001"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.error());
    let v = r.json();
    // The key frame at 1 s is before the grant: the viewing starts at the one at 2 s and
    // ends where the grant does.
    assert_eq!(v["from_ms"], T0 + 2_000);
    assert!(v["to_ms"].as_i64().unwrap() <= T0 + 3_000, "{v}");
    let (_, _, from, _, outcome) = last_entry(&e);
    assert_eq!(outcome, "allowed");
    assert_eq!(from, Some(T0 + 2_000));
    let uri = v["video"].as_str().unwrap().to_string();
    assert_eq!(e.get(&carl, &uri).await.status, StatusCode::OK);
    // Outside the grant's range: refused.
    let r = open_viewing(
        &e,
        &carl,
        "gate",
        json!({"at": t(T0 + 3_500), "purpose": "x"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Revoked: the open viewing stops serving.
    let r = e
        .send(
            Request::delete(format!("/api/v1/grants/{grant}"))
                .header(header::AUTHORIZATION, format!("Bearer {ivan}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(e.get(&carl, &uri).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_contractor_sees_the_timeline_only_within_the_grant() {
    let e = env();
    let ivan = e.token("ivan").await;
    let carl = e.token("carl").await;
    // gate: recorded T0..T0+4 s, offline T0+4 s..T0+10 s. The grant shows T0+3 s..T0+6 s.
    let mut g = grant_body(NOW - 1_000, NOW + 3_600_000);
    g["playback_from"] = json!(t(T0 + 3_000));
    g["playback_to"] = json!(t(T0 + 6_000));
    let r = e.post(&ivan, "/api/v1/grants", g).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.error());
    let day = format!(
        "/api/v1/cameras/gate/recordings?from={}&to={}",
        t(T0 - 43_200_000),
        t(T0 + 43_200_000)
    );
    let r = e.get(&carl, &day).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.error());
    let v = r.json();
    let spans = v["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 1, "{v}");
    assert_eq!(spans[0]["from"], t(T0 + 3_000));
    let whole = e.get(&ivan, &day).await.json();
    assert_eq!(
        spans[0]["to"], whole["spans"][0]["to"],
        "recorded until just before 4 s"
    );
    let gaps = v["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{v}");
    assert_eq!(gaps[0]["from"], t(T0 + 4_000));
    assert_eq!(gaps[0]["to"], t(T0 + 6_000));
    // IT sees the whole day.
    assert_eq!(whole["spans"][0]["from"], t(T0));
    assert_eq!(whole["gaps"][0]["to"], t(T0 + 10_000));
}

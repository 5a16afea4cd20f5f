//! Cameras, recordings and footage by role: reasons, scopes, logged first, refused when
//! the log cannot be written, clear errors for bad input.

use super::*;

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
async fn the_openapi_document_is_served_without_sign_in() {
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

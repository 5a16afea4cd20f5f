//! Viewings: one log entry for the range served, media time across gaps, narrow
//! grants, a contractor's timeline.

use super::*;

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

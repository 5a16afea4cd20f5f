//! Holds: who may place and release them, how each is logged, and clear errors.

use super::*;

#[tokio::test]
async fn holds_by_role_create_list_release_and_logged() {
    let mut env = env().await;
    // Who may place a hold on gate with a case reference.
    for (user, want) in [
        ("pia", StatusCode::CREATED),
        ("pete", StatusCode::CREATED),
        ("paul", StatusCode::CREATED),
        ("ivan", StatusCode::FORBIDDEN),
        ("carl", StatusCode::FORBIDDEN),
        ("cody", StatusCode::FORBIDDEN),
        ("ada", StatusCode::FORBIDDEN),
    ] {
        let r = env
            .post(user, "/api/v1/holds", hold_body(&["gate"], Some("CASE-9")))
            .await;
        assert_eq!(
            r.status,
            want,
            "{user}: {}",
            String::from_utf8_lossy(&r.body)
        );
        if want == StatusCode::FORBIDDEN {
            assert!(r.error().contains("may not hold.create"), "{}", r.error());
        }
    }
    let denied_creates = env
        .entries("hold.create")
        .iter()
        .filter(|e| e.outcome.starts_with("denied"))
        .count();
    assert_eq!(denied_creates, 4, "every denial is logged");

    // pia's hold: created, listed, released.
    let r = env
        .post(
            "pia",
            "/api/v1/holds",
            json!({"cameras": ["gate", "hall", "gate"], "from": rfc3339(T0), "to": rfc3339(T0 + 20_000),
                   "case": " CASE-17 ", "until": rfc3339(NOW + 7_200_000)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let id = r.json()["id"].as_i64().unwrap();
    let logged = env.entries("hold.create");
    let e = logged.last().unwrap();
    assert_eq!(e.actor, "pia");
    assert_eq!(e.role, "police");
    assert_eq!(e.outcome, "allowed");
    assert_eq!(e.case.as_deref(), Some("CASE-17"));
    assert_eq!(e.camera.as_deref(), Some("gate,hall,gate"));
    assert_eq!((e.from_ms, e.to_ms), (Some(T0), Some(T0 + 20_000)));
    assert_eq!(e.client.as_deref(), Some("10.1.2.3"));
    // In the recorder's catalog, as the recorder's retention will read it.
    let cat = Catalog::open_read_only(&env.store).unwrap();
    let h = recorder::holds::get(&cat, id).unwrap().unwrap();
    assert_eq!(h.placed_by, "pia");
    assert_eq!(h.case_ref, "CASE-17");
    assert_eq!(
        h.cameras,
        recorder::holds::HoldCameras::Some(vec!["gate".into(), "hall".into()])
    );
    assert!(
        recorder::holds::active(&cat, NOW)
            .unwrap()
            .protects("hall", T0, T0 + 1000)
    );

    for user in ["pia", "ivan", "ada", "paul"] {
        let r = env.get(user, "/api/v1/holds").await;
        assert_eq!(r.status, StatusCode::OK, "{user}");
        let list = r.json();
        assert_eq!(list.as_array().unwrap().len(), 4, "{user}: {list}");
        let mine = list
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == id)
            .unwrap();
        assert_eq!(
            *mine,
            json!({"id": id, "cameras": ["gate", "hall"], "from": rfc3339(T0), "to": rfc3339(T0 + 20_000),
                   "case": "CASE-17", "by": "pia", "until": rfc3339(NOW + 7_200_000),
                   "created": rfc3339(NOW), "status": "active"})
        );
    }
    for user in ["carl", "cody"] {
        assert_eq!(
            env.get(user, "/api/v1/holds").await.status,
            StatusCode::FORBIDDEN
        );
    }

    // Scope: pete (gate only) cannot hold hall, nor all cameras, and does not see a
    // hold on hall alone; paul (every camera) may hold all.
    let r = env
        .post(
            "pete",
            "/api/v1/holds",
            hold_body(&["hall"], Some("CASE-9")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.error().contains("outside the user's scope"),
        "{}",
        r.error()
    );
    let r = env
        .post("pete", "/api/v1/holds", hold_body(&["all"], Some("CASE-9")))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json());
    let hall_only = env
        .post(
            "pia",
            "/api/v1/holds",
            hold_body(&["hall"], Some("CASE-20")),
        )
        .await
        .json()["id"]
        .as_i64()
        .unwrap();
    let r = env
        .post(
            "paul",
            "/api/v1/holds",
            hold_body(&["all"], Some("CASE-21")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let all_id = r.json()["id"].as_i64().unwrap();
    let pete_sees = ids(&env.get("pete", "/api/v1/holds").await.json());
    assert!(pete_sees.contains(&id) && pete_sees.contains(&all_id));
    assert!(!pete_sees.contains(&hall_only), "{pete_sees:?}");
    assert!(ids(&env.get("ada", "/api/v1/holds").await.json()).contains(&hall_only));
    let all_hold = env.get("ada", "/api/v1/holds").await.json();
    let all_hold = all_hold
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == all_id)
        .unwrap()
        .clone();
    assert_eq!(all_hold["cameras"], json!(["all"]));
    assert_eq!(all_hold["until"], Value::Null);

    // Release: only the officer who placed it.
    let uri = format!("/api/v1/holds/{id}");
    for (user, why) in [
        ("pete", "only their own holds"),
        ("paul", "only their own holds"),
        ("ivan", "may not hold.release"),
        ("ada", "may not hold.release"),
        ("carl", "may not hold.release"),
    ] {
        let r = env.delete(user, &uri).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{user}");
        assert!(r.error().contains(why), "{user}: {}", r.error());
    }
    assert!(
        recorder::holds::get(&cat, id)
            .unwrap()
            .unwrap()
            .released_unix_ms
            .is_none()
    );
    env.clock.advance_ms(60_000);
    let r = env.delete("pia", &uri).await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let h = recorder::holds::get(&cat, id).unwrap().unwrap();
    assert_eq!(h.released_by.as_deref(), Some("pia"));
    assert_eq!(h.released_unix_ms, Some(NOW + 60_000));
    let r = env.delete("pia", &uri).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().contains("already released"), "{}", r.error());

    let released = env.entries("hold.release");
    let outcomes: Vec<(&str, &str)> = released
        .iter()
        .map(|e| (e.actor.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(outcomes.len(), 7, "{outcomes:?}");
    assert!(outcomes[..5].iter().all(|(_, o)| o.starts_with("denied")));
    assert_eq!(outcomes[5], ("pia", "allowed"));
    assert!(
        outcomes[6]
            .1
            .starts_with("denied: this hold was already released")
    );
    let e = &released[5];
    assert_eq!(e.case.as_deref(), Some("CASE-17"));
    assert_eq!(e.camera.as_deref(), Some("gate,hall"));
    assert_eq!((e.from_ms, e.to_ms), (Some(T0), Some(T0 + 20_000)));
    assert!(
        e.purpose
            .as_deref()
            .unwrap()
            .contains(&format!("release hold {id}"))
    );
    assert_eq!(released[0].actor, "pete");

    // Released holds are listed only with all=true.
    assert!(!ids(&env.get("ivan", "/api/v1/holds").await.json()).contains(&id));
    let all = env.get("ivan", "/api/v1/holds?all=true").await.json();
    let h = all
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == id)
        .unwrap();
    assert_eq!(h["status"], "released");
    assert_eq!(h["released_by"], "pia");
    assert_eq!(h["released"], rfc3339(NOW + 60_000));

    // A hold with an expiry shows as expired once it has passed.
    let r = env
        .post(
            "pia",
            "/api/v1/holds",
            json!({"cameras": ["gate"], "from": rfc3339(T0), "to": rfc3339(T0 + 1000),
                   "case": "CASE-30", "until": rfc3339(NOW + 3_600_000)}),
        )
        .await;
    let short = r.json()["id"].as_i64().unwrap();
    env.clock.advance_ms(2 * 3_600_000);
    env.relogin().await;
    let list = env.get("ivan", "/api/v1/holds").await.json();
    let h = list
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == short)
        .unwrap();
    assert_eq!(h["status"], "expired");
}

#[tokio::test]
async fn hold_requests_with_bad_input_get_clear_4xx_and_are_logged() {
    let env = env().await;
    let before = env.entries("hold.create").len();
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            hold_body(&["gate"], None),
            StatusCode::BAD_REQUEST,
            "case is required",
        ),
        (
            hold_body(&["gate"], Some("  ")),
            StatusCode::BAD_REQUEST,
            "case is required",
        ),
        (
            hold_body(&["gate"], Some(&"x".repeat(201))),
            StatusCode::BAD_REQUEST,
            "at most 200 bytes",
        ),
        (
            hold_body(&["gate"], Some(&"é".repeat(101))),
            StatusCode::BAD_REQUEST,
            "at most 200 bytes",
        ),
        (
            hold_body(&["gate"], Some("CASE\n1")),
            StatusCode::BAD_REQUEST,
            "without control characters",
        ),
        (
            hold_body(&[], Some("C-1")),
            StatusCode::BAD_REQUEST,
            "name 1 to",
        ),
        (
            hold_body(&["Gate!"], Some("C-1")),
            StatusCode::BAD_REQUEST,
            "invalid camera id",
        ),
        (
            hold_body(&["all", "gate"], Some("C-1")),
            StatusCode::BAD_REQUEST,
            "stands alone",
        ),
        (
            hold_body(&["roof"], Some("C-1")),
            StatusCode::NOT_FOUND,
            "unknown camera roof",
        ),
        (
            json!({"cameras": ["gate"], "from": rfc3339(T0), "to": rfc3339(T0), "case": "C-1"}),
            StatusCode::BAD_REQUEST,
            "to must be after from",
        ),
        (
            json!({"cameras": ["gate"], "from": "yesterday", "to": rfc3339(T0), "case": "C-1"}),
            StatusCode::BAD_REQUEST,
            "from:",
        ),
        (
            json!({"cameras": ["gate"], "from": rfc3339(T0), "to": rfc3339(T0 + 1), "case": "C-1",
                   "until": rfc3339(NOW - 1)}),
            StatusCode::BAD_REQUEST,
            "until is already past",
        ),
        (
            json!({"cameras": ["gate"], "from": rfc3339(T0), "to": rfc3339(T0 + 1), "case": "C-1",
                   "by": "someone-else"}),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            json!({"cameras": "gate"}),
            StatusCode::BAD_REQUEST,
            "invalid JSON body",
        ),
    ];
    let n = cases.len();
    for (body, status, msg) in cases {
        let r = env.post("pia", "/api/v1/holds", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.json());
        assert!(r.error().contains(msg), "{body}: {}", r.error());
    }
    let r = env
        .send(
            Request::post("/api/v1/holds")
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", env.tokens["pia"]),
                )
                .body(Body::from(hold_body(&["gate"], Some("C-1")).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let logged = env.entries("hold.create");
    assert_eq!(logged.len() - before, n + 1, "every refusal is logged");
    assert!(
        logged[before..]
            .iter()
            .all(|e| e.outcome.starts_with("denied: ") && e.actor == "pia")
    );
    let cat = Catalog::open_read_only(&env.store).unwrap();
    assert!(
        recorder::holds::list(&cat).unwrap().is_empty(),
        "nothing was held"
    );

    for (uri, status, msg) in [
        (
            "/api/v1/holds/abc",
            StatusCode::BAD_REQUEST,
            "positive integer",
        ),
        (
            "/api/v1/holds/-3",
            StatusCode::BAD_REQUEST,
            "positive integer",
        ),
        ("/api/v1/holds/999", StatusCode::NOT_FOUND, "no such hold"),
    ] {
        let r = env.delete("pia", uri).await;
        assert_eq!(r.status, status, "{uri}");
        assert!(r.error().contains(msg), "{uri}: {}", r.error());
    }
    assert_eq!(env.entries("hold.release").len(), 3);
    let r = env.get("ivan", "/api/v1/holds?all=maybe").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Without a session: nothing, and no decision to log.
    let r = env
        .send(Request::get("/api/v1/holds").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

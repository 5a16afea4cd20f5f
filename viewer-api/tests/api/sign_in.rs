//! Sign-in: tokens, cookies, expiry, and the lock-out.

use super::*;

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

//! Sign-in and sign-out: the only door without a session, so the place of lock-outs,
//! throttling and the fixed delay that hides whether a user exists.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginReq {
    username: String,
    password: String,
}

pub(super) async fn login(
    State(state): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: Result<Json<LoginReq>, JsonRejection>,
) -> Result<Response, ApiError> {
    login_inner(state, addr.ip().to_string(), body).await
}

pub(super) async fn login_inner(
    state: Shared,
    client: String,
    body: Result<Json<LoginReq>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(json_rejection)?;
    // What we write down about the name: an existing user's name, never what else was
    // typed (a password in the name field must not land in the log).
    let is_user = crate::users::valid_user_name(&req.username) && {
        let (users, name) = (state.users.clone(), req.username.clone());
        blocking(move || users.user(&name)).await??.is_some()
    };
    let shown: String = if is_user {
        req.username.clone()
    } else {
        "<unknown user>".into()
    };
    let entry = |role: &str, outcome: String| NewEntry {
        actor: shown.clone(),
        role: role.into(),
        action: "login".into(),
        client: Some(client.clone()),
        outcome,
        ..Default::default()
    };
    // Refusals of earlier floods whose minute has passed (see throttle.rs).
    for e in state.throttle.summaries_due() {
        log(&state, e).await?;
    }
    // The attempt is counted before its password is checked (atomically with the
    // lock-out check), so concurrent guesses cannot outrun the lock.
    let (st, name, addr) = (state.clone(), req.username.clone(), client.clone());
    let reserved = blocking(move || st.throttle.reserve(&name, &addr, is_user)).await?;
    let attempt = match reserved {
        Ok(a) => a,
        Err(crate::throttle::Refusal::Unavailable(why)) => {
            error!(error = %why, "cannot store the login counters; login refused");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "logins are unavailable; try again later",
            ));
        }
        Err(crate::throttle::Refusal::Busy) => {
            state
                .metrics
                .logins
                .get_or_create(&vec![("outcome".into(), "busy".into())])
                .inc();
            use crate::throttle::{BUSY, refused_outcome};
            if let Some((earlier, since)) = state.throttle.refusal_row(&shown, &client, BUSY) {
                log(&state, entry("-", refused_outcome(BUSY, earlier, since))).await?;
            }
            let mut r = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many sign-ins at once from this address; try again in a moment",
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            return Ok(r);
        }
        Err(crate::throttle::Refusal::Locked(locked)) => {
            state
                .metrics
                .logins
                .get_or_create(&vec![("outcome".into(), "locked".into())])
                .inc();
            // Under a flood: one entry per name and address per minute, with a count.
            if let Some((earlier, since)) = state.throttle.refusal_row(&shown, &client, locked.what)
            {
                log(
                    &state,
                    entry(
                        "-",
                        crate::throttle::refused_outcome(locked.what, earlier, since),
                    ),
                )
                .await?;
            }
            let secs = ((locked.until_ms - state.clock.now_unix_ms() + 999) / 1000).max(1);
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "too many failed logins; try again later",
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
            return Ok(r);
        }
    };
    // argon2 in a bounded pool (users.rs): a flood waits instead of taking the memory.
    let user = state
        .users
        .check_login_bounded(req.username, req.password)
        .await?;
    let Some(user) = user else {
        state
            .metrics
            .logins
            .get_or_create(&vec![("outcome".into(), "failed".into())])
            .inc();
        let mut outcome = "denied: bad credentials".to_string();
        if let Some(l) = &attempt.locks {
            warn!(user = %shown, client = %client, what = l.what, "login locked after failed attempts");
            outcome += &format!("; {} locked", l.what);
        }
        log(&state, entry("-", outcome)).await?;
        tokio::time::sleep(attempt.delay).await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password",
        ));
    };
    let st = state.clone();
    blocking(move || st.throttle.succeeded(attempt)).await?;
    log(&state, entry(user.role.as_str(), "allowed".into())).await?;
    let users = state.users.clone();
    let (token, expires) = blocking(move || users.create_session(&user)).await??;
    state
        .metrics
        .logins
        .get_or_create(&vec![("outcome".into(), "ok".into())])
        .inc();
    info!(user = %shown, client = %client, "login");
    let cookie = format!(
        "{COOKIE}={token}; Path=/api/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        crate::users::MAX_SESSION_MS / 1000
    );
    let mut r = Json(json!({ "token": token, "expires_at": rfc3339(expires) })).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

pub(super) async fn logout(
    State(state): State<Shared>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let users = state.users.clone();
    let th = caller.session.token_hash.clone();
    blocking(move || users.revoke_session(&th)).await??;
    log(
        &state,
        NewEntry {
            outcome: "allowed".into(),
            ..caller.entry("logout")
        },
    )
    .await?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "rf_session=; Path=/api/; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
    Ok(r)
}

pub(super) async fn me(caller: Caller) -> Json<Value> {
    let p = &caller.principal;
    Json(json!({
        "name": p.name,
        "role": p.role,
        "cameras": p.cameras,
        "expires_at": rfc3339(caller.session.expires_ms),
    }))
}

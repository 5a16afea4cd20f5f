//! The HTTP API (`/api/v1`): authentication, the handlers, and how each request goes
//! through [`authorize`] and the access log.
//!
//! Rules every handler follows:
//! * Deny by default: no route serves anything without a session except `login` and
//!   the OpenAPI document; every decision about footage, grants or the log is
//!   [`authorize`]'s.
//! * Footage requests are logged whatever their outcome (bad input, denied, allowed),
//!   and the `allowed` entry is committed before the first byte; when the log cannot
//!   be written the answer is 503 and no footage leaves.
//! * Every error is `{"error": "..."}` with a 4xx/5xx status; messages never carry
//!   secrets, tokens or footage. Store errors are logged server-side and answered
//!   with a generic 500.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{error, info, warn};

use crate::audit::{AuditLog, EntryView, Filter, NewEntry};
use crate::clock::{Clock, parse_rfc3339, rfc3339};
use crate::metrics::Metrics;
use crate::mp4;
use crate::playback::{self, FootageSource, SourceError};
use crate::policy::{Action, Decision, Principal, Resource, Role, authorize};
use crate::throttle::Throttle;
use crate::users::{NewGrant, Session, UserDb, UserError, valid_camera_id};

pub const COOKIE: &str = "rf_session";
/// The longest range one footage request may cover.
pub const MAX_RANGE_MS: i64 = 24 * 3600 * 1000;
/// The longest range of recorded spans and gaps one request may list (a timeline of the
/// whole ring; no footage).
pub const MAX_TIMELINE_MS: i64 = 31 * 24 * 3600 * 1000;
const MAX_BODY_BYTES: usize = 16 * 1024;
const MAX_REASON_LEN: usize = 200;

pub struct AppState {
    pub users: Arc<UserDb>,
    pub audit: Arc<AuditLog>,
    pub source: Arc<dyn FootageSource>,
    pub clock: Arc<dyn Clock>,
    pub throttle: Throttle,
    pub metrics: Arc<Metrics>,
    /// Open viewings ([`crate::viewing`]).
    pub viewings: Arc<crate::viewing::Viewings>,
    /// Footage streams running now, and their limits ([`crate::streams`]).
    pub streams: Arc<crate::streams::Streams>,
}

pub type Shared = Arc<AppState>;

// ---------------------------------------------------------------------------------------
// errors

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn bad(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "not logged in or session expired")
    }
    pub(crate) fn forbidden(why: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, why)
    }
    pub(crate) fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    fn log_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the access log cannot be written; nothing is served until it can",
        )
    }
    pub(crate) fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::streams::RETRY_AFTER_SECS),
            );
        }
        r
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Invalid(m) => ApiError::bad(m),
            UserError::NoSuchUser(_) => ApiError::bad("no such user"),
            UserError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "already exists"),
            UserError::NoSuchGrant(_) => ApiError::not_found("no such grant"),
            e => {
                error!(error = %e, "user database error");
                ApiError::internal()
            }
        }
    }
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::UnknownCamera => ApiError::not_found("unknown camera"),
            e => {
                error!(error = %e, "footage store error");
                ApiError::internal()
            }
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(_) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        }
        other => ApiError::bad(format!("invalid JSON body: {}", other.body_text())),
    }
}

fn query_rejection(r: QueryRejection) -> ApiError {
    ApiError::bad(format!("invalid query: {}", r.body_text()))
}

/// Runs blocking work (SQLite, segment files) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        error!(error = %e, "blocking task failed");
        ApiError::internal()
    })
}

// ---------------------------------------------------------------------------------------
// the caller

/// An authenticated request: who, from where, by which session.
pub struct Caller {
    pub principal: Principal,
    pub session: Session,
    pub client: String,
}

fn client_addr(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn token_from(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, tok) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| tok.trim().to_string());
    }
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for kv in v.split(';') {
            if let Some((k, val)) = kv.trim().split_once('=')
                && k == COOKIE
            {
                return Some(val.to_string());
            }
        }
    }
    None
}

/// The live session of `token` and who it belongs to (with their grants).
pub(crate) fn lookup(
    users: &UserDb,
    token: &str,
) -> Result<Option<(Session, Principal)>, UserError> {
    let Some(session) = users.session(token)? else {
        return Ok(None);
    };
    let grants = if session.user.role == Role::Contractor {
        users
            .grants(Some(session.user.id))?
            .into_iter()
            .map(|(g, _)| g)
            .collect()
    } else {
        Vec::new()
    };
    let u = &session.user;
    let principal = Principal {
        user_id: u.id,
        name: u.name.clone(),
        role: u.role,
        cameras: u.cameras.clone(),
        grants,
    };
    Ok(Some((session, principal)))
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let client = client_addr(parts);
        let token = token_from(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        let users = state.users.clone();
        let found = blocking(move || lookup(&users, &token)).await??;
        let Some((session, principal)) = found else {
            return Err(ApiError::unauthorized());
        };
        Ok(Caller {
            principal,
            session,
            client,
        })
    }
}

impl Caller {
    pub(crate) fn entry(&self, action: &str) -> NewEntry {
        NewEntry {
            actor: self.principal.name.clone(),
            role: self.principal.role.as_str().into(),
            action: action.into(),
            client: Some(self.client.clone()),
            ..Default::default()
        }
    }
}

/// Appends to the access log off the async threads; 503 when it cannot.
pub(crate) async fn log(state: &Shared, e: NewEntry) -> Result<crate::audit::Entry, ApiError> {
    let audit = state.audit.clone();
    match blocking(move || audit.append(e)).await? {
        Ok(entry) => Ok(entry),
        Err(err) => {
            error!(error = %err, "access log append failed");
            state.metrics.audit_failures.inc();
            Err(ApiError::log_unavailable())
        }
    }
}

/// Writes the decision on a footage request (allowed, or denied and why) to the access
/// log and its metric before anything else happens, whatever the outcome; then hands
/// the decision back. Nothing of the footage is touched unless this succeeded.
pub(crate) async fn log_footage_decision<T>(
    state: &Shared,
    entry: &mut NewEntry,
    checked: Result<T, ApiError>,
) -> Result<T, ApiError> {
    log_footage(state, entry, checked).await.map(|(v, _)| v)
}

/// Like [`log_footage_decision`], and hands back the store as seen for the entry just
/// logged: what is read through it is journaled by the recorder with that entry.
pub(crate) async fn log_footage<T>(
    state: &Shared,
    entry: &mut NewEntry,
    checked: Result<T, ApiError>,
) -> Result<(T, Arc<dyn FootageSource>), ApiError> {
    entry.outcome = match &checked {
        Ok(_) => "allowed".into(),
        Err(e) => format!("denied: {}", e.message),
    };
    let label = if checked.is_ok() { "allowed" } else { "denied" };
    state
        .metrics
        .footage_requests
        .get_or_create(&vec![("outcome".into(), label.into())])
        .inc();
    let logged = log(state, entry.clone()).await?;
    let v = checked?;
    let src = playback::for_entry(&state.source, crate::recorder_side::log_ref(&logged));
    Ok((v, src))
}

// ---------------------------------------------------------------------------------------
// router

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/cameras", get(cameras))
        .route("/api/v1/cameras/{id}/recordings", get(recordings))
        .route("/api/v1/cameras/{id}/video.mp4", get(video))
        .route("/api/v1/cameras/{id}/live.mp4", get(live))
        .route("/api/v1/grants", post(create_grant).get(list_grants))
        .route("/api/v1/grants/{id}", delete(revoke_grant))
        .route("/api/v1/audit", get(read_audit))
        .route("/api/v1/audit/subject-access", get(subject_access))
        .route("/api/v1/audit/verify", get(audit_verify))
        .route("/api/v1/openapi.json", get(openapi))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Only this origin, no inline script or style, no framing; video and stills may come
/// from `blob:` (the live view's MediaSource) as well.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; \
     connect-src 'self'; manifest-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

pub(crate) async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

// ---------------------------------------------------------------------------------------
// login / logout

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginReq {
    username: String,
    password: String,
}

async fn login(
    State(state): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: Result<Json<LoginReq>, JsonRejection>,
) -> Result<Response, ApiError> {
    login_inner(state, addr.ip().to_string(), body).await
}

async fn login_inner(
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

async fn logout(State(state): State<Shared>, caller: Caller) -> Result<Response, ApiError> {
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

async fn me(caller: Caller) -> Json<Value> {
    let p = &caller.principal;
    Json(json!({
        "name": p.name,
        "role": p.role,
        "cameras": p.cameras,
        "expires_at": rfc3339(caller.session.expires_ms),
    }))
}

// ---------------------------------------------------------------------------------------
// cameras and recordings

async fn camera_list(state: &Shared) -> Result<Vec<playback::CameraInfo>, ApiError> {
    let src = state.source.clone();
    Ok(blocking(move || src.cameras()).await??)
}

async fn cameras(State(state): State<Shared>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now_unix_ms();
    let list: Vec<Value> = camera_list(&state)
        .await?
        .into_iter()
        .filter(|c| {
            authorize(
                &caller.principal,
                Action::ViewCamera,
                &Resource {
                    camera: Some(&c.id),
                    now_ms: now,
                    ..Default::default()
                },
            )
            .is_allowed()
        })
        .map(|c| {
            json!({
                "id": c.id,
                "name": c.name,
                "state": c.state,
                "since": c.since_ms.map(rfc3339),
                "reason": c.reason,
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

pub(crate) fn check_camera_id(id: &str) -> Result<(), ApiError> {
    if valid_camera_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad(
            "invalid camera id: use 1 to 32 of a-z, 0-9 and -",
        ))
    }
}

pub(crate) fn parse_time(name: &str, v: Option<&str>) -> Result<i64, ApiError> {
    let v = v.ok_or_else(|| ApiError::bad(format!("missing {name} (RFC 3339 time)")))?;
    parse_rfc3339(v).map_err(|m| ApiError::bad(format!("{name}: {m}")))
}

pub(crate) fn parse_range(from: Option<&str>, to: Option<&str>) -> Result<(i64, i64), ApiError> {
    let f = parse_time("from", from)?;
    let t = parse_time("to", to)?;
    if t <= f {
        return Err(ApiError::bad("to must be after from"));
    }
    if t - f > MAX_RANGE_MS {
        return Err(ApiError::bad("the range may cover at most 24 hours"));
    }
    Ok((f, t))
}

pub(crate) async fn ensure_camera(state: &Shared, id: &str) -> Result<(), ApiError> {
    if camera_list(state).await?.iter().any(|c| c.id == id) {
        Ok(())
    } else {
        Err(ApiError::not_found("unknown camera"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

async fn recordings(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    check_camera_id(&id)?;
    let Query(q) = q.map_err(query_rejection)?;
    let from = parse_time("from", q.from.as_deref())?;
    let to = parse_time("to", q.to.as_deref())?;
    if to <= from {
        return Err(ApiError::bad("to must be after from"));
    }
    if to - from > MAX_TIMELINE_MS {
        return Err(ApiError::bad("the range may cover at most 31 days"));
    }
    ensure_camera(&state, &id).await?;
    let d = authorize(
        &caller.principal,
        Action::ViewRecordings,
        &Resource {
            camera: Some(&id),
            from_ms: Some(from),
            to_ms: Some(to),
            now_ms: state.clock.now_unix_ms(),
            ..Default::default()
        },
    );
    if let Decision::Deny(why) = d {
        return Err(ApiError::forbidden(why));
    }
    let visible = caller
        .principal
        .visible_ranges(&id, state.clock.now_unix_ms());
    let src = state.source.clone();
    let (mut spans, mut gaps) = blocking(move || src.recordings(&id, from, to)).await??;
    if let Some(ranges) = visible {
        spans = clip_to(&spans, &ranges);
        gaps = gaps
            .into_iter()
            .flat_map(|g| {
                let end = g.to_ms.unwrap_or(i64::MAX);
                clip_to(&[(g.from_ms, end)], &ranges)
                    .into_iter()
                    .map(move |(f, t)| crate::playback::GapInfo {
                        from_ms: f,
                        // cut by a range: ends there; else as it was (open stays open)
                        to_ms: if t < end { Some(t) } else { g.to_ms },
                        reason: g.reason.clone(),
                    })
            })
            .collect();
    }
    Ok(Json(json!({
        "spans": spans.iter().map(|(f, t)| json!({"from": rfc3339(*f), "to": rfc3339(*t)})).collect::<Vec<_>>(),
        "gaps": gaps.iter().map(|g| json!({
            "from": rfc3339(g.from_ms),
            "to": g.to_ms.map(rfc3339),
            "reason": g.reason,
        })).collect::<Vec<_>>(),
    })))
}

/// The parts of `spans` inside any of `ranges` (all half-open), in time order.
fn clip_to(spans: &[(i64, i64)], ranges: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = spans
        .iter()
        .flat_map(|&(f, t)| {
            ranges
                .iter()
                .map(move |&(rf, rt)| (f.max(rf), t.min(rt)))
                .filter(|(f, t)| f < t)
        })
        .collect();
    out.sort_unstable();
    // Grants may overlap: merge what they both show.
    out.dedup_by(|b, a| {
        if b.0 <= a.1 {
            a.1 = a.1.max(b.1);
            true
        } else {
            false
        }
    });
    out
}

// ---------------------------------------------------------------------------------------
// footage

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VideoQuery {
    from: Option<String>,
    to: Option<String>,
    case: Option<String>,
    purpose: Option<String>,
}

pub(crate) fn check_reason(name: &str, v: &Option<String>) -> Result<(), ApiError> {
    if let Some(s) = v {
        if s.chars().count() > MAX_REASON_LEN {
            return Err(ApiError::bad(format!(
                "{name} is longer than {MAX_REASON_LEN} characters"
            )));
        }
        if s.chars().any(crate::audit::unsafe_text_char) {
            return Err(ApiError::bad(format!(
                "{name} contains control, invisible or bidirectional-control characters"
            )));
        }
    }
    Ok(())
}

pub(crate) fn nonempty(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.trim().is_empty())
}

/// Checks a footage request up to the policy decision and plans what it serves; the
/// error, if any, is also what the access log records.
async fn check_footage(
    state: &Shared,
    caller: &Caller,
    id: &str,
    q: &Result<Query<VideoQuery>, QueryRejection>,
    entry: &mut NewEntry,
) -> Result<playback::FrameIndex, ApiError> {
    check_camera_id(id)?;
    entry.camera = Some(id.to_string());
    let Query(q) = q
        .as_ref()
        .map_err(|r| ApiError::bad(format!("invalid query: {}", r.body_text())))?;
    check_reason("case", &q.case)?;
    check_reason("purpose", &q.purpose)?;
    entry.case = q.case.clone();
    entry.purpose = q.purpose.clone();
    let (from, to) = parse_range(q.from.as_deref(), q.to.as_deref())?;
    plan_playback(state, caller, id, from, to, &q.case, &q.purpose, entry)
        .await?
        .ok_or_else(|| ApiError::not_found("nothing recorded in this range"))
}

/// The checks of a playback request once its range is known: the reason the role needs,
/// the camera, and [`authorize`]. Fills the access-log entry as it goes.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn check_playback(
    state: &Shared,
    caller: &Caller,
    id: &str,
    from: i64,
    to: i64,
    case: &Option<String>,
    purpose: &Option<String>,
    entry: &mut NewEntry,
) -> Result<(i64, i64), ApiError> {
    check_camera_id(id)?;
    entry.camera = Some(id.to_string());
    check_reason("case", case)?;
    check_reason("purpose", purpose)?;
    entry.case = case.clone();
    entry.purpose = purpose.clone();
    entry.from_ms = Some(from);
    entry.to_ms = Some(to);
    match caller.principal.role {
        Role::Police if !nonempty(case) => {
            return Err(ApiError::bad("a case reference is required: add case=REF"));
        }
        Role::It | Role::Contractor if !nonempty(purpose) => {
            return Err(ApiError::bad("a purpose is required: add purpose=TEXT"));
        }
        _ => {}
    }
    ensure_camera(state, id).await?;
    playback_decision(state, &caller.principal, id, from, to, case, purpose)
}

/// What a playback of `[from, to)` of camera `id` would serve, once allowed: the
/// request is checked ([`check_playback`]), then the frames are worked out (from the key
/// frame at or before `from`) and that *served* range is authorized again; where it is
/// not (a contractor's narrow grant), it starts at the first key frame inside the
/// request instead. The entry gets the served range: the log says what was seen.
/// `Ok(None)`: allowed, but nothing is recorded there.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn plan_playback(
    state: &Shared,
    caller: &Caller,
    id: &str,
    from: i64,
    to: i64,
    case: &Option<String>,
    purpose: &Option<String>,
    entry: &mut NewEntry,
) -> Result<Option<playback::FrameIndex>, ApiError> {
    check_playback(state, caller, id, from, to, case, purpose, entry).await?;
    let src = state.source.clone();
    let cam = id.to_string();
    let index = blocking(move || playback::build_index(src.as_ref(), &cam, from, to)).await??;
    let Some(index) = index else {
        return Ok(None);
    };
    let served = |i: &playback::FrameIndex| {
        playback_decision(
            state,
            &caller.principal,
            id,
            i.first_unix_ms,
            i.end_unix_ms,
            case,
            purpose,
        )
    };
    let index = match served(&index) {
        Ok(_) => index,
        Err(denied) => {
            let inside = index.starting_after(from).ok_or(denied)?;
            served(&inside)?;
            inside
        }
    };
    entry.from_ms = Some(index.first_unix_ms);
    entry.to_ms = Some(index.end_unix_ms);
    Ok(Some(index))
}

/// [`authorize`] for playing `[from, to)` of camera `id`.
pub(crate) fn playback_decision(
    state: &AppState,
    p: &Principal,
    id: &str,
    from: i64,
    to: i64,
    case: &Option<String>,
    purpose: &Option<String>,
) -> Result<(i64, i64), ApiError> {
    let d = authorize(
        p,
        Action::Playback,
        &Resource {
            camera: Some(id),
            from_ms: Some(from),
            to_ms: Some(to),
            case: case.as_deref(),
            purpose: purpose.as_deref(),
            now_ms: state.clock.now_unix_ms(),
            owner: None,
        },
    );
    match d {
        Decision::Allow => Ok((from, to)),
        Decision::Deny(why) => Err(ApiError::forbidden(why)),
    }
}

async fn video(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<VideoQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mut entry = caller.entry(Action::Playback.as_str());
    let checked = check_footage(&state, &caller, &id, &q, &mut entry)
        .await
        .and_then(|index| Ok((index, stream_permit(&state, &caller)?)));
    let ((index, permit), src) = log_footage(&state, &mut entry, checked).await?;
    let name = format!("{id}-{}", index.first_unix_ms / 1000);
    serve_mp4(&state, src, Arc::new(index), &headers, &name, permit)
}

/// A place for one more footage stream of the caller ([`crate::streams`]), or 429.
pub(crate) fn stream_permit(
    state: &AppState,
    caller: &Caller,
) -> Result<crate::streams::StreamPermit, ApiError> {
    state.streams.acquire(caller.principal.user_id)
}

/// Answers with the MP4 of `index` (or the part of it `Range` asks for), streamed.
pub(crate) fn serve_mp4(
    state: &Shared,
    src: Arc<dyn FootageSource>,
    index: Arc<playback::FrameIndex>,
    headers: &HeaderMap,
    name: &str,
    permit: crate::streams::StreamPermit,
) -> Result<Response, ApiError> {
    let layout = index.layout().map_err(|e| {
        error!(error = %e, "cannot lay out MP4");
        ApiError::internal()
    })?;
    let total = layout.total_len;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (start, end, status) = match mp4::parse_range(range, total) {
        Ok(None) => (0, total - 1, StatusCode::OK),
        Ok(Some((s, e))) => (s, e, StatusCode::PARTIAL_CONTENT),
        Err(()) => {
            let mut r = ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable")
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let body = crate::streams::body(
        permit,
        state.streams.limits().stall,
        Mp4Body {
            state: state.clone(),
            src,
            index,
            layout: Arc::new(layout),
            pos: start,
            end,
            pending: Default::default(),
        },
    );
    let mut r = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "video/mp4")
        .header(header::CONTENT_LENGTH, end - start + 1)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(
            header::CONTENT_DISPOSITION,
            format!("inline; filename=\"{name}.mp4\""),
        );
    if status == StatusCode::PARTIAL_CONTENT {
        r = r.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{total}"),
        );
    }
    r.body(body).map_err(|_| ApiError::internal())
}

/// Bytes `start..=end` of the MP4, read a few chunks at a time as the client takes
/// them ([`crate::streams::Producer`]).
struct Mp4Body {
    state: Shared,
    /// The store as seen for the request's access-log entry.
    src: Arc<dyn FootageSource>,
    index: Arc<playback::FrameIndex>,
    layout: Arc<mp4::Layout>,
    /// The next byte to send.
    pos: u64,
    end: u64,
    /// Read, not sent yet.
    pending: std::collections::VecDeque<Bytes>,
}

/// How much footage one read of [`Mp4Body`] takes from the store (at least one chunk).
const MP4_READ_BYTES: u64 = 512 * 1024;

impl crate::streams::Producer for Mp4Body {
    fn next(&mut self) -> Result<crate::streams::Piece, std::io::Error> {
        use crate::streams::Piece;
        if let Some(b) = self.pending.pop_front() {
            return Ok(Piece::Data(b));
        }
        let (pos, end) = (self.pos, self.end);
        if pos > end {
            return Ok(Piece::End);
        }
        let header_len = self.layout.header.len() as u64;
        if pos < header_len {
            let stop = (end + 1).min(header_len);
            self.pos = stop;
            return Ok(Piece::Data(Bytes::copy_from_slice(
                &self.layout.header[pos as usize..stop as usize],
            )));
        }
        // From the chunk holding `pos`, a few chunks (each one sink call).
        let (first, chunk_start) = self.layout.chunk_at(pos - header_len);
        let mut at = header_len + chunk_start;
        let metrics = self.state.metrics.clone();
        let mut taken = 0u64;
        let pending = &mut self.pending;
        let r = playback::read_payload(self.src.as_ref(), &self.index, first, &mut |buf| {
            let len = buf.len() as u64;
            let (a, b) = (pos.max(at), (end + 1).min(at + len));
            at += len;
            if a < b {
                let slice = buf.slice((a - (at - len)) as usize..(b - (at - len)) as usize);
                metrics.footage_bytes.inc_by(slice.len() as u64);
                taken += slice.len() as u64;
                pending.push_back(slice);
            }
            at <= end && taken < MP4_READ_BYTES
        });
        if let Err(e) = r {
            error!(error = %e, "footage stream aborted");
            return Err(std::io::Error::other("footage read failed"));
        }
        if taken == 0 {
            // Nothing more in the index (it ends before `end`): done.
            self.pos = end + 1;
            return Ok(Piece::End);
        }
        self.pos = pos + taken;
        Ok(self.pending.pop_front().map_or(Piece::End, Piece::Data))
    }
}

// ---------------------------------------------------------------------------------------
// live view

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LiveQuery {
    case: Option<String>,
    purpose: Option<String>,
}

/// How often a running live view checks that its session and rights still hold.
pub(crate) const LIVE_RECHECK: Duration = Duration::from_secs(5);

pub(crate) fn live_decision(state: &AppState, p: &Principal, id: &str, q: &LiveQuery) -> Decision {
    authorize(
        p,
        Action::Live,
        &Resource {
            camera: Some(id),
            case: q.case.as_deref(),
            purpose: q.purpose.as_deref(),
            now_ms: state.clock.now_unix_ms(),
            ..Default::default()
        },
    )
}

pub(crate) async fn check_live(
    state: &Shared,
    caller: &Caller,
    id: &str,
    q: &Result<Query<LiveQuery>, QueryRejection>,
    entry: &mut NewEntry,
) -> Result<(), ApiError> {
    check_camera_id(id)?;
    entry.camera = Some(id.to_string());
    entry.from_ms = Some(state.clock.now_unix_ms());
    let Query(q) = q
        .as_ref()
        .map_err(|r| ApiError::bad(format!("invalid query: {}", r.body_text())))?;
    check_reason("case", &q.case)?;
    check_reason("purpose", &q.purpose)?;
    entry.case = q.case.clone();
    entry.purpose = q.purpose.clone();
    match caller.principal.role {
        Role::Police if !nonempty(&q.case) => {
            return Err(ApiError::bad("a case reference is required: add case=REF"));
        }
        Role::It | Role::Contractor if !nonempty(&q.purpose) => {
            return Err(ApiError::bad("a purpose is required: add purpose=TEXT"));
        }
        _ => {}
    }
    ensure_camera(state, id).await?;
    match live_decision(state, &caller.principal, id, q) {
        Decision::Allow => Ok(()),
        Decision::Deny(why) => Err(ApiError::forbidden(why)),
    }
}

/// `GET /cameras/{id}/live.mp4`: fragmented MP4 over chunked HTTP, from the newest key
/// frame on, for as long as the client reads, the session lives and the rights hold.
/// Logged (action `live`) before the first byte; when it ends, a `live.end` entry
/// records the wall-clock range that was shown.
async fn live(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<LiveQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mut entry = caller.entry(Action::Live.as_str());
    let checked = check_live(&state, &caller, &id, &q, &mut entry)
        .await
        .and_then(|()| stream_permit(&state, &caller));
    let (permit, src) = log_footage(&state, &mut entry, checked).await?;
    let Ok(Query(q)) = q else {
        return Err(ApiError::internal());
    };
    let token = token_from(&headers).ok_or_else(ApiError::unauthorized)?;
    let view = crate::live::LiveView::new(src, &id);
    let body = crate::streams::body(
        permit,
        state.streams.limits().stall,
        LiveBody {
            state: state.clone(),
            token,
            id,
            q,
            view,
            last_check: std::time::Instant::now(),
            revoked: false,
            failed: false,
            entry,
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "video/mp4")
        .header(header::CONTENT_DISPOSITION, "inline; filename=\"live.mp4\"")
        .body(body)
        .map_err(|_| ApiError::internal())
}

/// A live view's pieces ([`crate::live::LiveView`]), its session and rights checked
/// again every [`LIVE_RECHECK`]; its end logged as `live.end`.
struct LiveBody {
    state: Shared,
    token: String,
    id: String,
    q: LiveQuery,
    view: crate::live::LiveView,
    last_check: std::time::Instant,
    revoked: bool,
    failed: bool,
    /// The `live` entry, for its `live.end`.
    entry: NewEntry,
}

impl crate::streams::Producer for LiveBody {
    fn next(&mut self) -> Result<crate::streams::Piece, std::io::Error> {
        use crate::live::Step;
        use crate::streams::Piece;
        let st = &self.state;
        if self.last_check.elapsed() >= LIVE_RECHECK {
            self.last_check = std::time::Instant::now();
            let still = match lookup(&st.users, &self.token) {
                Ok(Some((_, p))) => live_decision(st, &p, &self.id, &self.q).is_allowed(),
                Ok(None) => false,
                Err(e) => {
                    error!(error = %e, "cannot re-check a live view's session");
                    false
                }
            };
            if !still {
                self.revoked = true;
                return Ok(Piece::End);
            }
        }
        match self.view.step(st.clock.now_unix_ms()) {
            Ok(Step::Data(b)) => {
                st.metrics.footage_bytes.inc_by(b.len() as u64);
                Ok(Piece::Data(Bytes::from(b)))
            }
            Ok(Step::Wait) => Ok(Piece::Wait(crate::live::POLL)),
            Ok(Step::Ended) => Ok(Piece::End),
            Err(e) => {
                error!(error = %e, "live view aborted");
                self.failed = true;
                Err(std::io::Error::other("live view failed"))
            }
        }
    }

    fn finish(self: Box<Self>, how: crate::streams::Ended) {
        use crate::streams::Ended;
        let s = self.view.summary;
        let outcome = if self.failed {
            "allowed; ended: store error"
        } else if s.end == crate::live::LiveEnd::ParamsChanged {
            "allowed; ended: codec parameters changed"
        } else if self.revoked {
            "allowed; ended: session ended or rights withdrawn"
        } else if how == Ended::Stalled {
            "allowed; ended: the client stopped reading"
        } else {
            "allowed; ended by the client"
        };
        let entry = self.entry;
        let end = NewEntry {
            action: "live.end".into(),
            from_ms: s.first_unix_ms.or(entry.from_ms),
            to_ms: s.last_unix_ms.or(s.first_unix_ms).or(entry.from_ms),
            outcome: outcome.into(),
            ..entry
        };
        if let Err(e) = self.state.audit.append(end) {
            error!(error = %e, "cannot log the end of a live view");
            self.state.metrics.audit_failures.inc();
        }
    }
}

// ---------------------------------------------------------------------------------------
// grants

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantReq {
    user: String,
    cameras: Vec<String>,
    from: String,
    until: String,
    allow: Vec<String>,
    playback_from: Option<String>,
    playback_to: Option<String>,
    ticket: String,
}

pub(crate) fn require(state: &Shared, caller: &Caller, action: Action) -> Result<(), ApiError> {
    match authorize(
        &caller.principal,
        action,
        &Resource {
            now_ms: state.clock.now_unix_ms(),
            ..Default::default()
        },
    ) {
        Decision::Allow => Ok(()),
        Decision::Deny(why) => Err(ApiError::forbidden(why)),
    }
}

async fn create_grant(
    State(state): State<Shared>,
    caller: Caller,
    body: Result<Json<GrantReq>, JsonRejection>,
) -> Result<Response, ApiError> {
    let mut entry = caller.entry("grant.create");
    let result = async {
        require(&state, &caller, Action::ManageGrants)?;
        let Json(g) = body.map_err(json_rejection)?;
        let mut live = false;
        let mut pb = false;
        for a in &g.allow {
            match a.as_str() {
                "live" => live = true,
                "playback" => pb = true,
                other => {
                    return Err(ApiError::bad(format!(
                        "unknown allow value {other:?}: use live or playback"
                    )));
                }
            }
        }
        let opt = |name: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
            v.as_deref().map(|s| parse_time(name, Some(s))).transpose()
        };
        let ng = NewGrant {
            user: g.user.clone(),
            cameras: g.cameras.clone(),
            from_ms: parse_time("from", Some(&g.from))?,
            until_ms: parse_time("until", Some(&g.until))?,
            live,
            playback: pb,
            playback_from_ms: opt("playback_from", &g.playback_from)?,
            playback_to_ms: opt("playback_to", &g.playback_to)?,
            ticket: g.ticket.clone(),
        };
        entry.camera = Some(ng.cameras.join(","));
        entry.from_ms = ng.playback_from_ms;
        entry.to_ms = ng.playback_to_ms;
        entry.purpose = Some(format!(
            "grant to {} ({}) {}..{} ticket {}",
            ng.user,
            g.allow.join("+"),
            rfc3339(ng.from_ms),
            rfc3339(ng.until_ms),
            ng.ticket
        ));
        let users = state.users.clone();
        let by = caller.principal.name.clone();
        // Validate fully (without storing) so that the log entry precedes the grant.
        let (users2, ng2) = (users.clone(), ng.clone());
        blocking(move || users2.check_grant(&ng2, &by)).await??;
        Ok((users, ng))
    }
    .await;
    match result {
        Err(e) => {
            entry.outcome = format!("denied: {}", e.message);
            log(&state, entry).await?;
            Err(e)
        }
        Ok((users, ng)) => {
            entry.outcome = "allowed".into();
            log(&state, entry).await?;
            let by = caller.principal.name.clone();
            let id = blocking(move || users.add_grant(&ng, &by)).await??;
            Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
        }
    }
}

async fn list_grants(State(state): State<Shared>, caller: Caller) -> Result<Json<Value>, ApiError> {
    // it sees all grants; a contractor sees their own; nobody else any.
    let only = match caller.principal.role {
        Role::It => None,
        Role::Contractor => Some(caller.principal.user_id),
        _ => {
            require(&state, &caller, Action::ManageGrants)?;
            None
        }
    };
    let users = state.users.clone();
    let list = blocking(move || users.grants(only)).await??;
    Ok(Json(Value::Array(
        list.iter()
            .map(|(g, u)| serde_json::to_value(state.users.grant_view(g, u)).unwrap_or(Value::Null))
            .collect(),
    )))
}

async fn revoke_grant(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut entry = caller.entry("grant.revoke");
    let checked = (|| {
        require(&state, &caller, Action::ManageGrants)?;
        id.parse::<i64>()
            .ok()
            .filter(|&i| i > 0)
            .ok_or_else(|| ApiError::bad("grant id must be a positive integer"))
    })();
    entry.purpose = Some(format!(
        "revoke grant {}",
        id.chars().take(20).collect::<String>()
    ));
    entry.outcome = match &checked {
        Ok(_) => "allowed".into(),
        Err(e) => format!("denied: {}", e.message),
    };
    log(&state, entry).await?;
    let gid = checked?;
    let users = state.users.clone();
    blocking(move || users.revoke_grant(gid)).await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------
// access log

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    camera: Option<String>,
    from: Option<String>,
    to: Option<String>,
    actor: Option<String>,
    /// Paging: only entries with a sequence number below this (`X-Next-Before`).
    before: Option<String>,
    /// Entries per page (default 1000, at most 10 000).
    limit: Option<String>,
}

/// Entries per page of `GET /audit` when the caller does not say.
const AUDIT_PAGE: usize = 1000;

fn audit_filter(q: &AuditQuery) -> Result<Filter, ApiError> {
    let nonempty = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
    let camera = nonempty(&q.camera);
    if let Some(c) = &camera {
        check_camera_id(c)?;
    }
    let actor = nonempty(&q.actor);
    if actor
        .as_deref()
        .is_some_and(|a| !crate::users::valid_user_name(a) && a != "<unknown user>")
    {
        return Err(ApiError::bad("invalid actor name"));
    }
    let from = nonempty(&q.from)
        .map(|s| parse_time("from", Some(&s)))
        .transpose()?;
    let to = nonempty(&q.to)
        .map(|s| parse_time("to", Some(&s)))
        .transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && t <= f
    {
        return Err(ApiError::bad("to must be after from"));
    }
    let before_seq = nonempty(&q.before)
        .map(|s| {
            s.parse::<i64>()
                .ok()
                .filter(|&b| b > 0)
                .ok_or_else(|| ApiError::bad("before must be a positive sequence number"))
        })
        .transpose()?;
    let limit = nonempty(&q.limit)
        .map(|s| {
            s.parse::<usize>()
                .ok()
                .filter(|l| (1..=crate::audit::MAX_PAGE).contains(l))
                .ok_or_else(|| {
                    ApiError::bad(format!("limit must be 1 to {}", crate::audit::MAX_PAGE))
                })
        })
        .transpose()?
        .unwrap_or(AUDIT_PAGE);
    Ok(Filter {
        camera,
        from_ms: from,
        to_ms: to,
        actor,
        footage_views_only: false,
        before_seq,
        limit: Some(limit),
    })
}

/// Percent-encodes a query value (everything but the unreserved characters).
fn query_escape(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Answers a page of the access log: a JSON array of entries (oldest first), the newest
/// that match. When older entries remain, `X-Next-Before` carries the cursor and `Link`
/// (`rel="next"`) the URL of the next page; without them, the answer is complete.
async fn run_audit_query(
    state: &Shared,
    caller: &Caller,
    action: Action,
    path: &str,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(query_rejection)?;
    let mut filter = audit_filter(&q)?;
    if caller.principal.role == Role::Police
        && filter.actor.is_none()
        && action == Action::ReadAudit
    {
        // police read their own entries: the filter is implied
        filter.actor = Some(caller.principal.name.clone());
    }
    filter.footage_views_only = action == Action::SubjectAccess;
    let mut entry = caller.entry(action.as_str());
    entry.camera = filter.camera.clone();
    entry.from_ms = filter.from_ms;
    entry.to_ms = filter.to_ms;
    entry.purpose = filter.actor.as_ref().map(|a| format!("entries of {a}"));
    let d = authorize(
        &caller.principal,
        action,
        &Resource {
            owner: filter.actor.as_deref(),
            now_ms: state.clock.now_unix_ms(),
            ..Default::default()
        },
    );
    entry.outcome = d.outcome();
    log(state, entry).await?;
    if let Decision::Deny(why) = d {
        return Err(ApiError::forbidden(why));
    }
    let audit = state.audit.clone();
    let f = filter.clone();
    let page = blocking(move || audit.page(&f)).await?.map_err(|e| {
        error!(error = %e, "access log query failed");
        ApiError::internal()
    })?;
    let mut r = Json(Value::Array(
        page.entries
            .iter()
            .map(|e| serde_json::to_value(EntryView::from(e)).unwrap_or(Value::Null))
            .collect(),
    ))
    .into_response();
    if let Some(next) = page.next_before {
        let mut params = vec![format!("before={next}")];
        for (k, v) in [
            ("camera", &q.camera),
            ("from", &q.from),
            ("to", &q.to),
            ("actor", &q.actor),
            ("limit", &q.limit),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                params.push(format!("{k}={}", query_escape(v)));
            }
        }
        let link = format!("<{path}?{}>; rel=\"next\"", params.join("&"));
        let h = r.headers_mut();
        h.insert("x-next-before", HeaderValue::from(next));
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.insert(header::LINK, v);
        }
    }
    Ok(r)
}

async fn read_audit(
    State(state): State<Shared>,
    caller: Caller,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    run_audit_query(&state, &caller, Action::ReadAudit, "/api/v1/audit", q).await
}

/// Who viewed footage of this camera covering this time, when, and why: every footage
/// action ([`crate::audit::FOOTAGE_ACTIONS`]: playback, live, exports asked for and
/// downloaded), allowed, one entry per camera.
async fn subject_access(
    State(state): State<Shared>,
    caller: Caller,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    run_audit_query(
        &state,
        &caller,
        Action::SubjectAccess,
        "/api/v1/audit/subject-access",
        q,
    )
    .await
}

/// `GET /audit/verify`: walks the access log's chain, as `viewer-api audit verify` does
/// (for those who may read the whole log).
async fn audit_verify(
    State(state): State<Shared>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    require(&state, &caller, Action::ReadAudit)?;
    let path = state.audit.path().to_path_buf();
    let r = blocking(move || crate::audit::verify(&path)).await?;
    let now = rfc3339(state.clock.now_unix_ms());
    Ok(Json(match r {
        Ok(n) => json!({ "intact": true, "entries": n, "checked_at": now }),
        Err(crate::audit::VerifyError::Broken(b)) => {
            json!({ "intact": false, "first_bad_seq": b.seq, "why": b.why, "checked_at": now })
        }
        Err(e) => {
            error!(error = %e, "access log verification failed");
            return Err(ApiError::internal());
        }
    }))
}

// ---------------------------------------------------------------------------------------
// metadata

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::DOCUMENT,
    )
        .into_response()
}

pub fn default_login_delay() -> Duration {
    Duration::from_millis(250)
}

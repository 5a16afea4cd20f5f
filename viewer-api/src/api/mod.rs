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

mod access_log;
mod auth;
mod caller;
mod cameras;
mod errors;
mod footage;
mod grants;
mod live_view;

use access_log::*;
use auth::*;
pub use caller::*;
pub(crate) use cameras::*;
pub use errors::*;
pub(crate) use footage::*;
pub(crate) use grants::*;
pub(crate) use live_view::*;

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

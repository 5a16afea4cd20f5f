//! The export endpoints, merged into the API router by the server:
//!
//! * `POST /api/v1/exports` `{"cameras","from","to","case","reason"}` → 202 `{"id"}`
//!   (police only: 403 otherwise; no case or reason → 400). Logged as `export.request`
//!   whatever the outcome, before anything happens.
//! * `GET /api/v1/exports` → the calling officer's own exports, newest first, each as
//!   below (police only: 403 otherwise).
//! * `GET /api/v1/exports/{id}[?case=REF]` → `{"id","state","progress","error"?,...}`.
//! * `GET /api/v1/exports/{id}/download[?case=REF]` → `application/zip`, logged as
//!   `export.download` (committed before the first byte).
//! * `GET /api/v1/device-key` → the device's Ed25519 public key (PEM). The one route
//!   besides login and the OpenAPI document that needs no session: it is public by
//!   nature, and whoever checks an export must be able to compare it.
//!
//! An export is seen and downloaded by the police user who asked for it, or by another
//! police user who names the same case (`?case=`); in both cases the cameras must be in
//! the user's scope, as [`authorize`] decides for [`Action::Export`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use tracing::error;

use super::{Exports, Job, NewExport, State as JobState, Status};
use crate::api::{ApiError, Caller, Shared, blocking, log, log_footage_decision, security_headers};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::policy::{Action, Decision, Resource, Role, authorize};

const MAX_TEXT: usize = 200;
const MAX_CAMERAS: usize = 32;

pub fn router(state: Shared, exports: Arc<Exports>) -> Router {
    Router::new()
        .route("/api/v1/exports", post(create).get(list))
        .route("/api/v1/exports/{id}", get(status))
        .route("/api/v1/exports/{id}/download", get(download))
        .route("/api/v1/device-key", get(device_key))
        .layer(Extension(exports))
        .layer(DefaultBodyLimit::max(16 * 1024))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

fn check_text(name: &str, v: &Option<String>) -> Result<String, ApiError> {
    let s = v.as_deref().map(str::trim).unwrap_or_default();
    if s.is_empty() {
        return Err(ApiError::bad(format!("{name} is required")));
    }
    if s.len() > MAX_TEXT || s.chars().any(crate::audit::unsafe_text_char) {
        return Err(ApiError::bad(format!(
            "{name} must be at most {MAX_TEXT} characters, without control, invisible or bidirectional-control characters"
        )));
    }
    Ok(s.to_string())
}

/// Writes an allowed export decision to the access log as one entry per camera
/// (`camera = <id>` each, so the subject-access report of any of them lists it), all
/// in one transaction; 503 when the log cannot be written.
async fn log_per_camera(
    state: &Shared,
    e: crate::audit::NewEntry,
    cameras: &[String],
) -> Result<Vec<crate::audit::Entry>, ApiError> {
    let entries: Vec<_> = cameras
        .iter()
        .map(|c| crate::audit::NewEntry {
            camera: Some(c.clone()),
            ..e.clone()
        })
        .collect();
    let audit = state.audit.clone();
    match blocking(move || audit.append_all(entries)).await? {
        Ok(v) => Ok(v),
        Err(err) => {
            error!(error = %err, "access log append failed");
            state.metrics.audit_failures.inc();
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the access log cannot be written; nothing is served until it can",
            ))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportReq {
    cameras: Vec<String>,
    from: String,
    to: String,
    case: Option<String>,
    reason: Option<String>,
}

fn allow_cameras(
    state: &Shared,
    caller: &Caller,
    cameras: &[String],
    case: &str,
    from: i64,
    to: i64,
) -> Result<(), ApiError> {
    for cam in cameras {
        let d = authorize(
            &caller.principal,
            Action::Export,
            &Resource {
                camera: Some(cam),
                from_ms: Some(from),
                to_ms: Some(to),
                case: Some(case),
                now_ms: state.clock.now_unix_ms(),
                ..Default::default()
            },
        );
        if let Decision::Deny(why) = d {
            return Err(ApiError::forbidden(why));
        }
    }
    Ok(())
}

async fn create(
    State(state): State<Shared>,
    Extension(exports): Extension<Arc<Exports>>,
    caller: Caller,
    body: Result<Json<ExportReq>, JsonRejection>,
) -> Result<Response, ApiError> {
    let mut e = caller.entry("export.request");
    let checked = async {
        if caller.principal.role != Role::Police {
            return Err(ApiError::forbidden(format!(
                "role {} may not export",
                caller.principal.role
            )));
        }
        let Json(req) = body.map_err(|r| match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type: application/json",
            ),
            other => ApiError::bad(format!("invalid JSON body: {}", other.body_text())),
        })?;
        e.camera = Some(req.cameras.join(",").chars().take(400).collect());
        let case = check_text("case", &req.case)?;
        e.case = Some(case.clone());
        let reason = check_text("reason", &req.reason)?;
        e.purpose = Some(reason.clone());
        if req.cameras.is_empty() || req.cameras.len() > MAX_CAMERAS {
            return Err(ApiError::bad(format!("name 1 to {MAX_CAMERAS} cameras")));
        }
        let mut cams: Vec<String> = Vec::new();
        for c in &req.cameras {
            if !crate::users::valid_camera_id(c) {
                return Err(ApiError::bad(
                    "invalid camera id: use 1 to 32 of a-z, 0-9 and -",
                ));
            }
            if !cams.contains(c) {
                cams.push(c.clone());
            }
        }
        let from = parse_rfc3339(&req.from).map_err(|m| ApiError::bad(format!("from: {m}")))?;
        let to = parse_rfc3339(&req.to).map_err(|m| ApiError::bad(format!("to: {m}")))?;
        e.from_ms = Some(from);
        e.to_ms = Some(to);
        if to <= from {
            return Err(ApiError::bad("to must be after from"));
        }
        if to - from > super::MAX_RANGE_MS {
            return Err(ApiError::bad("an export covers at most 24 hours"));
        }
        let src = state.source.clone();
        let known = blocking(move || src.cameras()).await?.map_err(|err| {
            error!(error = %err, "footage store error");
            ApiError::internal()
        })?;
        for c in &cams {
            if !known.iter().any(|k| &k.id == c) {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("unknown camera {c}"),
                ));
            }
        }
        allow_cameras(&state, &caller, &cams, &case, from, to)?;
        let (ex, by) = (exports.clone(), caller.principal.name.clone());
        blocking(move || ex.check_quota(&by))
            .await?
            .map_err(|m| ApiError::new(StatusCode::TOO_MANY_REQUESTS, m))?;
        Ok(NewExport {
            cameras: cams,
            from_ms: from,
            to_ms: to,
            case,
            reason,
            by: caller.principal.name.clone(),
            client: Some(caller.client.clone()),
            log: Default::default(),
        })
    }
    .await;
    e.outcome = match &checked {
        Ok(_) => "allowed".into(),
        Err(err) => format!("denied: {}", err.message),
    };
    let logged = match &checked {
        // one entry per camera, so the subject-access report finds each
        Ok(req) => log_per_camera(&state, e, &req.cameras).await?,
        Err(_) => vec![log(&state, e).await?],
    };
    let mut req = checked?;
    // The last entry of the request: the chain ties it to the others.
    if let Some(last) = logged.last() {
        req.log = crate::recorder_side::log_ref(last);
    }
    let ex = exports.clone();
    match blocking(move || ex.request(&req)).await? {
        Ok(id) => Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response()),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseQuery {
    case: Option<String>,
}

/// The job, if this caller may see it: its owner, or police naming its case; the
/// cameras in the caller's scope.
async fn visible_job(
    state: &Shared,
    exports: &Arc<Exports>,
    caller: &Caller,
    id: &str,
    q: Result<Query<CaseQuery>, QueryRejection>,
) -> Result<Job, ApiError> {
    if caller.principal.role != Role::Police {
        return Err(ApiError::forbidden(format!(
            "role {} may not see exports",
            caller.principal.role
        )));
    }
    let Query(q) = q.map_err(|r| ApiError::bad(format!("invalid query: {}", r.body_text())))?;
    let ex = exports.clone();
    let id2 = id.to_string();
    let job = blocking(move || ex.job(&id2))
        .await?
        .map_err(|err| {
            error!(error = %err, "exports database error");
            ApiError::internal()
        })?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such export"))?;
    let same_case = q.case.as_deref().map(str::trim) == Some(job.case.as_str());
    if job.owner != caller.principal.name && !same_case {
        return Err(ApiError::forbidden(
            "only the officer who asked for this export, or police naming its case (case=REF), may have it",
        ));
    }
    allow_cameras(
        state,
        caller,
        &job.cameras,
        &job.case,
        job.from_ms,
        job.to_ms,
    )?;
    Ok(job)
}

async fn status(
    State(state): State<Shared>,
    Extension(exports): Extension<Arc<Exports>>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<CaseQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &exports, &caller, &id, q).await?;
    let ex = exports.clone();
    let st = blocking(move || ex.status(&job.id))
        .await?
        .map_err(|_| ApiError::internal())?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such export"))?;
    if st.job.state == JobState::Expired {
        return Err(ApiError::new(
            StatusCode::GONE,
            "this export expired and was deleted",
        ));
    }
    Ok(Json(status_json(&st)).into_response())
}

/// An export as `GET /exports/{id}` and `GET /exports` show it.
fn status_json(st: &Status) -> serde_json::Value {
    let j = &st.job;
    let mut v = json!({
        "id": j.id,
        "state": j.state.as_str(),
        "progress": st.progress,
        "case": j.case,
        "reason": j.reason,
        "cameras": j.cameras,
        "from": rfc3339(j.from_ms),
        "to": rfc3339(j.to_ms),
        "requested_by": j.owner,
        "created": rfc3339(j.created_ms),
    });
    if let Some(e) = &j.error {
        v["error"] = json!(e);
    }
    if let Some(t) = j.expires_ms {
        v["expires"] = json!(rfc3339(t));
    }
    if let Some(b) = j.bytes {
        v["bytes"] = json!(b);
    }
    v
}

/// The most exports one list shows.
const MAX_LISTED: usize = 500;

/// `GET /exports`: the caller's own exports, newest first (expired ones included, as
/// `"state": "expired"`), those whose cameras are all still in the caller's scope.
async fn list(
    State(state): State<Shared>,
    Extension(exports): Extension<Arc<Exports>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    if caller.principal.role != Role::Police {
        return Err(ApiError::forbidden(format!(
            "role {} may not see exports",
            caller.principal.role
        )));
    }
    let ex = exports.clone();
    let owner = caller.principal.name.clone();
    let jobs = blocking(move || ex.jobs_of(&owner, MAX_LISTED))
        .await?
        .map_err(|err| {
            error!(error = %err, "exports database error");
            ApiError::internal()
        })?;
    let list: Vec<serde_json::Value> = jobs
        .iter()
        .filter(|st| {
            let j = &st.job;
            allow_cameras(&state, &caller, &j.cameras, &j.case, j.from_ms, j.to_ms).is_ok()
        })
        .map(status_json)
        .collect();
    Ok(Json(list).into_response())
}

async fn download(
    State(state): State<Shared>,
    Extension(exports): Extension<Arc<Exports>>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<CaseQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mut e = caller.entry("export.download");
    e.purpose = Some(format!(
        "download export {}",
        id.chars().take(40).collect::<String>()
    ));
    let checked = visible_job(&state, &exports, &caller, &id, q)
        .await
        .and_then(|job| match job.state {
            JobState::Done => Ok(job),
            JobState::Expired => Err(ApiError::new(
                StatusCode::GONE,
                "this export expired and was deleted",
            )),
            JobState::Failed => Err(ApiError::new(StatusCode::CONFLICT, "this export failed")),
            _ => Err(ApiError::new(
                StatusCode::CONFLICT,
                "this export is not finished yet",
            )),
        });
    if let Ok(job) = &checked {
        e.from_ms = Some(job.from_ms);
        e.to_ms = Some(job.to_ms);
        e.case = Some(job.case.clone());
        e.purpose = Some(format!("download export {}: {}", job.id, job.reason));
    }
    // A place among the footage streams (429 when none), then the decision, committed
    // before anything of the export is read; one entry per camera.
    let checked = checked.and_then(|job| Ok((job, crate::api::stream_permit(&state, &caller)?)));
    let (job, permit) = match checked {
        Ok((job, permit)) if job.cameras.len() > 1 => {
            state
                .metrics
                .footage_requests
                .get_or_create(&vec![("outcome".into(), "allowed".into())])
                .inc();
            e.outcome = "allowed".into();
            log_per_camera(&state, e, &job.cameras).await?;
            (job, permit)
        }
        other => {
            if let Ok((job, _)) = &other {
                e.camera = job.cameras.first().cloned();
            }
            log_footage_decision(&state, &mut e, other).await?
        }
    };
    let ex = exports.clone();
    let j2 = job.clone();
    let mut reader = blocking(move || ex.open_bundle(&j2))
        .await?
        .map_err(|err| {
            error!(error = %err, export = %job.id, "cannot open an export");
            ApiError::internal()
        })?;
    let len = reader.len();
    let metrics = state.metrics.clone();
    // One chunk of the bundle per piece, read when the client takes the one before.
    let body = crate::streams::body(
        permit,
        state.streams.limits().stall,
        crate::streams::FnProducer(move || match reader.next_chunk() {
            Ok(Some(c)) => {
                metrics.footage_bytes.inc_by(c.len() as u64);
                Ok(crate::streams::Piece::Data(Bytes::copy_from_slice(c)))
            }
            Ok(None) => Ok(crate::streams::Piece::End),
            Err(err) => {
                error!(error = %err, "export download aborted");
                Err(std::io::Error::other("export unreadable"))
            }
        }),
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/zip")
        .header(header::CONTENT_LENGTH, len)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"ringfence-export-{}.zip\"", job.id),
        )
        .body(body)
        .map_err(|_| ApiError::internal())
}

async fn device_key(Extension(exports): Extension<Arc<Exports>>) -> Result<Response, ApiError> {
    match exports.device_key_pem() {
        Ok(pem) => Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response()),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this device has no signing key yet (run `recorder init`)",
        )),
    }
}

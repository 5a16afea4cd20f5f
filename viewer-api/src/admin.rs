//! Holds, system health and the deletion journal, as the review console needs them.
//!
//! * `GET /api/v1/holds[?all=true]`: legal holds the caller may list ([`Action::HoldList`]:
//!   police, it, auditor), as `recorder hold list --json` prints them; released ones only
//!   with `all=true`. Police see the holds that touch a camera of their scope.
//! * `POST /api/v1/holds` `{"cameras","from","to","case","until"?}` → 201 `{"id"}`: police
//!   place a hold on cameras of their scope (`["all"]`: every camera, which needs every
//!   camera in scope), with a case reference; `by` is the officer.
//! * `DELETE /api/v1/holds/{id}` → 204: police release their own holds, except the hold
//!   of an export still running (it ends with the export).
//! * `GET /api/v1/health`: per camera the caller may see ([`Action::SystemHealth`]), its
//!   state, footage held and gaps of the last 24 h; the store-wide numbers (capacity,
//!   file system, retention alarms, holds) only for those allowed system health without
//!   a camera (not contractors).
//! * `GET /api/v1/journal?camera=&since=&before=&limit=`: the deletion journal, newest
//!   first ([`Action::ReadJournal`]: it, auditor).
//!
//! Hold changes are written to the access log before they take effect, allowed or
//! denied; reads are not (they show no footage). Holds, health and the journal come
//! from the recorder side ([`RecorderSide`]): the viewer-api never opens the catalog.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use recorder::holds::{Hold, HoldCameras, NewHold};
use recorder::retention::Policy;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::error;

use crate::api::{ApiError, Caller, Shared, blocking, log, security_headers};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::config::Settings;
use crate::policy::{Action, Decision, Resource, authorize};
use crate::recorder_side::{RecorderSide, SideError, log_ref};
use crate::users::valid_camera_id;

const MAX_TEXT: usize = 200;
const MAX_CAMERAS: usize = 64;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// Journal entries per page when the console does not say, and at most.
pub const JOURNAL_PAGE: usize = 100;
pub const JOURNAL_MAX_PAGE: usize = 1000;

/// What these endpoints take from the configuration.
struct Ctx {
    recorder: Arc<dyn RecorderSide>,
    /// The viewer-api's state directory (the exports' table).
    state_dir: PathBuf,
    max_bytes: u64,
    min_free_bytes: u64,
    policy: Policy,
}

pub fn router(state: Shared, settings: &Settings, recorder: Arc<dyn RecorderSide>) -> Router {
    let ctx = Arc::new(Ctx {
        recorder,
        state_dir: settings.state_dir(),
        max_bytes: settings.recorder.storage.max_bytes,
        min_free_bytes: settings.recorder.storage.min_free_bytes,
        policy: Policy::from_config(&settings.recorder),
    });
    Router::new()
        .route("/api/v1/holds", get(list_holds).post(create_hold))
        .route("/api/v1/holds/{id}", delete(release_hold))
        .route("/api/v1/health", get(health))
        .route("/api/v1/journal", get(journal))
        .route("/api/v1/metrics", get(metrics))
        .route("/api/v1/tamper/ack", post(acknowledge_tamper))
        .layer(Extension(ctx))
        .layer(DefaultBodyLimit::max(16 * 1024))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------
// helpers

fn decide(state: &Shared, caller: &Caller, action: Action, r: Resource<'_>) -> Decision {
    authorize(
        &caller.principal,
        action,
        &Resource {
            now_ms: state.clock.now_unix_ms(),
            ..r
        },
    )
}

fn allowed(d: Decision) -> Result<(), ApiError> {
    match d {
        Decision::Allow => Ok(()),
        Decision::Deny(why) => Err(ApiError::forbidden(why)),
    }
}

fn store_error(e: impl std::fmt::Display) -> ApiError {
    error!(error = %e, "catalog error");
    ApiError::internal()
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(t)) => Ok(t),
        Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        )),
        Err(JsonRejection::BytesRejection(_)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        )),
        Err(r) => Err(ApiError::bad(format!(
            "invalid JSON body: {}",
            r.body_text()
        ))),
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|r| ApiError::bad(format!("invalid query: {}", r.body_text())))
}

fn time(name: &str, v: &str) -> Result<i64, ApiError> {
    parse_rfc3339(v).map_err(|m| ApiError::bad(format!("{name}: {m}")))
}

fn text(name: &str, v: Option<&str>) -> Result<String, ApiError> {
    let s = v.map(str::trim).unwrap_or_default();
    if s.is_empty() {
        return Err(ApiError::bad(format!("{name} is required")));
    }
    // Bytes, as the recorder counts them for a hold's case reference.
    if s.len() > MAX_TEXT || s.chars().any(char::is_control) {
        return Err(ApiError::bad(format!(
            "{name} must be at most {MAX_TEXT} bytes, without control characters"
        )));
    }
    Ok(s.to_string())
}

/// An optional query value; an empty one (`camera=`) counts as absent.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Runs `f` against the recorder side on the blocking pool.
async fn recorder<T: Send + 'static>(
    ctx: &Arc<Ctx>,
    f: impl FnOnce(&dyn RecorderSide) -> Result<T, SideError> + Send + 'static,
) -> Result<Result<T, SideError>, ApiError> {
    let r = ctx.recorder.clone();
    blocking(move || f(r.as_ref())).await
}

/// Camera ids the catalog knows.
async fn known_cameras(state: &Shared) -> Result<Vec<String>, ApiError> {
    let src = state.source.clone();
    let list = blocking(move || src.cameras())
        .await?
        .map_err(store_error)?;
    Ok(list.into_iter().map(|c| c.id).collect())
}

// ---------------------------------------------------------------------------------------
// holds

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldsQuery {
    /// Include released holds.
    all: Option<bool>,
}

/// Whether the caller may see this hold: listing is allowed, and for scoped roles the
/// hold touches a camera of their scope.
fn hold_visible(state: &Shared, caller: &Caller, h: &Hold) -> bool {
    match &h.cameras {
        HoldCameras::All => decide(state, caller, Action::HoldList, Resource::default()),
        HoldCameras::Some(cams) => cams
            .iter()
            .map(|c| {
                decide(
                    state,
                    caller,
                    Action::HoldList,
                    Resource {
                        camera: Some(c),
                        ..Default::default()
                    },
                )
            })
            .find(Decision::is_allowed)
            .unwrap_or_else(|| Decision::Deny("no camera of this hold is in scope".into())),
    }
    .is_allowed()
}

async fn list_holds(
    State(state): State<Shared>,
    Extension(ctx): Extension<Arc<Ctx>>,
    caller: Caller,
    q: Result<Query<HoldsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    allowed(decide(
        &state,
        &caller,
        Action::HoldList,
        Resource::default(),
    ))?;
    let q = query(q)?;
    let all = q.all.unwrap_or(false);
    let list = recorder(&ctx, |r| r.holds()).await?.map_err(store_error)?;
    let now = state.clock.now_unix_ms();
    Ok(Json(Value::Array(
        list.iter()
            .filter(|h| all || h.released_unix_ms.is_none())
            .filter(|h| hold_visible(&state, &caller, h))
            .map(|h| serde_json::to_value(h.to_json(now)).unwrap_or(Value::Null))
            .collect(),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldReq {
    cameras: Vec<String>,
    from: String,
    to: String,
    case: Option<String>,
    until: Option<String>,
}

/// Checks a hold request up to the policy decision; the error, if any, is what the
/// access log records.
async fn check_hold(
    state: &Shared,
    caller: &Caller,
    body: Result<Json<HoldReq>, JsonRejection>,
    entry: &mut crate::audit::NewEntry,
) -> Result<NewHold, ApiError> {
    let req = json_body(body)?;
    entry.camera = Some(req.cameras.join(",").chars().take(400).collect());
    let case = text("case", req.case.as_deref())?;
    entry.case = Some(case.clone());
    if req.cameras.is_empty() || req.cameras.len() > MAX_CAMERAS {
        return Err(ApiError::bad(format!(
            "name 1 to {MAX_CAMERAS} cameras, or [\"all\"]"
        )));
    }
    let all = req.cameras.iter().any(|c| c == "all");
    if all && req.cameras.len() > 1 {
        return Err(ApiError::bad(
            "\"all\" stands alone: name cameras, or [\"all\"]",
        ));
    }
    let mut cams: Vec<String> = Vec::new();
    if !all {
        for c in &req.cameras {
            if !valid_camera_id(c) {
                return Err(ApiError::bad(
                    "invalid camera id: use 1 to 32 of a-z, 0-9 and -",
                ));
            }
            if !cams.contains(c) {
                cams.push(c.clone());
            }
        }
    }
    let from = time("from", &req.from)?;
    let to = time("to", &req.to)?;
    entry.from_ms = Some(from);
    entry.to_ms = Some(to);
    if to <= from {
        return Err(ApiError::bad("to must be after from"));
    }
    let now = state.clock.now_unix_ms();
    let until = req.until.as_deref().map(|u| time("until", u)).transpose()?;
    if until.is_some_and(|u| u <= now) {
        return Err(ApiError::bad("until is already past"));
    }
    entry.purpose = Some(match until {
        Some(u) => format!("hold until {}", rfc3339(u)),
        None => "hold until released".into(),
    });
    let known = known_cameras(state).await?;
    for c in &cams {
        if !known.contains(c) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("unknown camera {c}"),
            ));
        }
    }
    // A hold on every camera needs every camera: a scoped officer cannot hold the rest.
    let checked: Vec<Option<&str>> = if all {
        if known.is_empty() {
            vec![None]
        } else {
            known.iter().map(|c| Some(c.as_str())).collect()
        }
    } else {
        cams.iter().map(|c| Some(c.as_str())).collect()
    };
    for cam in checked {
        allowed(decide(
            state,
            caller,
            Action::HoldCreate,
            Resource {
                camera: cam,
                from_ms: Some(from),
                to_ms: Some(to),
                case: Some(&case),
                ..Default::default()
            },
        ))?;
    }
    Ok(NewHold {
        cameras: if all {
            HoldCameras::All
        } else {
            HoldCameras::Some(cams)
        },
        from_unix_ms: from,
        to_unix_ms: to,
        case_ref: case,
        placed_by: caller.principal.name.clone(),
        until_unix_ms: until,
    })
}

async fn create_hold(
    State(state): State<Shared>,
    Extension(ctx): Extension<Arc<Ctx>>,
    caller: Caller,
    body: Result<Json<HoldReq>, JsonRejection>,
) -> Result<Response, ApiError> {
    let mut entry = caller.entry(Action::HoldCreate.as_str());
    let checked = check_hold(&state, &caller, body, &mut entry).await;
    entry.outcome = match &checked {
        Ok(_) => "allowed".into(),
        Err(e) => format!("denied: {}", e.message),
    };
    let logged = log(&state, entry).await?;
    let hold = checked?;
    let now = state.clock.now_unix_ms();
    let at = log_ref(&logged);
    match recorder(&ctx, move |r| r.add_hold(&at, &hold, now)).await? {
        Ok(id) => Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response()),
        Err(e) => Err(e.into()),
    }
}

/// Checks a release up to the policy decision and the hold's state.
async fn check_release(
    state: &Shared,
    ctx: &Arc<Ctx>,
    caller: &Caller,
    id: &str,
    entry: &mut crate::audit::NewEntry,
) -> Result<i64, ApiError> {
    entry.purpose = Some(format!(
        "release hold {}",
        id.chars().take(20).collect::<String>()
    ));
    let hid = id
        .parse::<i64>()
        .ok()
        .filter(|&i| i > 0)
        .ok_or_else(|| ApiError::bad("hold id must be a positive integer"))?;
    let hold = recorder(ctx, move |r| r.hold(hid))
        .await?
        .map_err(store_error)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such hold"))?;
    entry.camera = Some(hold.cameras.names().join(","));
    entry.from_ms = Some(hold.from_unix_ms);
    entry.to_ms = Some(hold.to_unix_ms);
    entry.case = Some(hold.case_ref.clone());
    entry.purpose = Some(format!("release hold {hid} placed by {}", hold.placed_by));
    allowed(decide(
        state,
        caller,
        Action::HoldRelease,
        Resource {
            case: Some(&hold.case_ref),
            owner: Some(&hold.placed_by),
            ..Default::default()
        },
    ))?;
    if let Some(at) = hold.released_unix_ms {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "this hold was already released at {} by {}",
                rfc3339(at),
                hold.released_by.as_deref().unwrap_or("?")
            ),
        ));
    }
    let state_dir = ctx.state_dir.clone();
    let export = blocking(move || crate::export::export_of_hold(&state_dir, hid))
        .await?
        .map_err(store_error)?;
    if let Some(x) = export {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("this hold protects export {x} while it runs; it ends with the export"),
        ));
    }
    Ok(hid)
}

async fn release_hold(
    State(state): State<Shared>,
    Extension(ctx): Extension<Arc<Ctx>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut entry = caller.entry(Action::HoldRelease.as_str());
    let checked = check_release(&state, &ctx, &caller, &id, &mut entry).await;
    entry.outcome = match &checked {
        Ok(_) => "allowed".into(),
        Err(e) => format!("denied: {}", e.message),
    };
    let logged = log(&state, entry).await?;
    let hid = checked?;
    let by = caller.principal.name.clone();
    let now = state.clock.now_unix_ms();
    let at = log_ref(&logged);
    match recorder(&ctx, move |r| r.release_hold(&at, hid, &by, now)).await? {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(e.into()),
    }
}

/// An IT user has looked at the box and acknowledges the latched alarm of its
/// case-open switch: logged first (as every decision), then cleared by the recorder.
async fn acknowledge_tamper(
    State(state): State<Shared>,
    Extension(ctx): Extension<Arc<Ctx>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let d = decide(
        &state,
        &caller,
        Action::AcknowledgeTamper,
        Resource::default(),
    );
    let mut entry = caller.entry(Action::AcknowledgeTamper.as_str());
    entry.outcome = d.outcome();
    let logged = log(&state, entry).await?;
    allowed(d)?;
    let by = caller.principal.name.clone();
    let at = log_ref(&logged);
    let ack = recorder(&ctx, move |r| r.tamper_ack(&at, &by)).await??;
    Ok(Json(json!({
        "acknowledged_by": ack.by,
        "at": rfc3339(ack.at_unix_ms),
        "opened_at": rfc3339(ack.alarm.opened_at_unix_ms),
        "openings": ack.alarm.openings,
    })))
}

// ---------------------------------------------------------------------------------------
// health

fn days(ms: i64) -> f64 {
    (ms.max(0) as f64 / DAY_MS as f64 * 100.0).round() / 100.0
}

async fn health(
    State(state): State<Shared>,
    Extension(ctx): Extension<Arc<Ctx>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now_unix_ms();
    let store_wide = decide(&state, &caller, Action::SystemHealth, Resource::default());
    let (h, fs) = recorder(&ctx, move |r| {
        Ok((r.health(now - DAY_MS, now), r.fs_space()))
    })
    .await?
    .map_err(store_error)?;
    let h = h.map_err(store_error)?;
    let cameras: Vec<Value> = h
        .cameras
        .iter()
        .filter(|c| {
            decide(
                &state,
                &caller,
                Action::SystemHealth,
                Resource {
                    camera: Some(&c.camera.id),
                    ..Default::default()
                },
            )
            .is_allowed()
        })
        .map(|c| {
            json!({
                "id": c.camera.id,
                "name": c.camera.name,
                "state": c.camera.state,
                "state_since": c.camera.state_since_unix_ms.map(rfc3339),
                "state_reason": c.camera.state_reason,
                "oldest": c.oldest_unix_ms.map(rfc3339),
                "newest": c.newest_unix_ms.map(rfc3339),
                "days_held": c.oldest_unix_ms.map(|o| days(now - o)),
                "retention_days": days(ctx.policy.retention_ms(&c.camera.id)),
                "segments": c.segments,
                "bytes": c.bytes,
                "gaps_24h": c.gaps.iter().map(|g| json!({
                    "from": rfc3339(g.from_unix_ms),
                    "to": g.to_unix_ms.map(rfc3339),
                    "reason": g.reason,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    if let Decision::Deny(why) = &store_wide
        && cameras.is_empty()
    {
        return Err(ApiError::forbidden(why.clone()));
    }
    let store = store_wide.is_allowed().then(|| {
        if let Err(e) = &fs {
            error!(error = %e, "statvfs of the store failed");
        }
        let fs = fs.as_ref().ok();
        json!({
            "bytes_used": h.bytes,
            "max_bytes": ctx.max_bytes,
            "min_free_bytes": ctx.min_free_bytes,
            "fs_size_bytes": fs.map(|f| f.size_bytes),
            "fs_free_bytes": fs.map(|f| f.free_bytes),
            "holds_active": h.holds_active,
            "retention": h.retention.as_ref().map(|r| json!({
                "since": r.updated,
                "alarm": !r.alarms.is_empty(),
                "alarms": r.alarms,
                "clock_refused": r.clock_refused.is_some(),
                "clock_refused_reason": r.clock_refused,
            })),
            // The disk under the store, as the recorder last probed it: SMART, I/O
            // errors, a read-only remount, the free space retention cannot keep.
            "disk": h.storage.as_ref().map(|d| json!({
                "alarm": !d.alarms.is_empty(),
                "alarms": d.alarms.iter().map(|a| json!({
                    "kind": a.kind(),
                    "critical": a.severity() == hardware::storage::Severity::Critical,
                    "text": a.to_string(),
                })).collect::<Vec<_>>(),
                "read_only": d.mount.as_ref().map(|m| m.read_only),
                "used_percent": d.fill.as_ref().map(|f| f.used_percent),
                "io_errors": d.io_error_count(),
                "device": d.disk,
                "smart": d.smart,
            })),
            // The case-open switch, where the box has one: latched until acknowledged.
            "tamper": h.tamper.as_ref().map(|t| json!({
                "state": t.state,
                "alarm": t.alarm.is_some(),
                "opened_at": t.alarm.as_ref().map(|a| rfc3339(a.opened_at_unix_ms)),
                "openings": t.alarm.as_ref().map(|a| a.openings),
                "found_open_at_start": t.alarm.as_ref().map(|a| a.found_open_at_start),
                "input_error": t.input_error,
                "last_acknowledged_by": t.last_acknowledged.as_ref().map(|a| a.by.clone()),
            })),
        })
    });
    // Where the access log is forwarded, for those who see the whole box.
    let log_forwarding = store_wide.is_allowed().then(|| {
        use std::sync::atomic::Ordering;
        state.metrics.syslog().map(|st| {
            json!({
                "connected": st.connected.load(Ordering::SeqCst),
                "forwarded_seq": st.cursor.load(Ordering::SeqCst),
                "last_error": st.last_error.lock().ok().and_then(|e| e.clone()),
            })
        })
    });
    Ok(Json(json!({
        "now": rfc3339(now),
        "cameras": cameras,
        "store": store,
        "log_forwarding": log_forwarding.flatten(),
    })))
}

/// The viewer-api's metrics and the recorder's (fetched through its service), for
/// those with the system-health right: the recorder serves none to the network itself.
async fn metrics(
    State(state): State<Shared>,
    Extension(ctx): Extension<Arc<Ctx>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    allowed(decide(
        &state,
        &caller,
        Action::SystemHealth,
        Resource::default(),
    ))?;
    let audit = state.audit.clone();
    if let Ok(Ok(Some((seq, _)))) = tokio::task::spawn_blocking(move || audit.head()).await {
        state.metrics.access_log_seq.set(seq);
    }
    let recorder = recorder(&ctx, |r| r.metrics_text()).await?;
    let mut text = state.metrics.encode();
    match recorder {
        Ok(r) if !r.is_empty() => {
            // One exposition: the viewer's without its end marker, then the recorder's.
            if let Some(cut) = text.rfind("# EOF") {
                text.truncate(cut);
            }
            text.push_str(&r);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "the recorder's metrics are unavailable"),
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// deletion journal

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalQuery {
    camera: Option<String>,
    since: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

async fn journal(
    State(state): State<Shared>,
    Extension(ctx): Extension<Arc<Ctx>>,
    caller: Caller,
    q: Result<Query<JournalQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    allowed(decide(
        &state,
        &caller,
        Action::ReadJournal,
        Resource::default(),
    ))?;
    let q = query(q)?;
    let camera = given(&q.camera).map(str::to_string);
    if camera.as_deref().is_some_and(|c| !valid_camera_id(c)) {
        return Err(ApiError::bad(
            "invalid camera id: use 1 to 32 of a-z, 0-9 and -",
        ));
    }
    let since = given(&q.since).map(|s| time("since", s)).transpose()?;
    let before = given(&q.before)
        .map(|s| {
            s.parse::<i64>()
                .ok()
                .filter(|&b| b > 0)
                .ok_or_else(|| ApiError::bad("before must be a positive integer (a seq)"))
        })
        .transpose()?;
    let limit = match given(&q.limit) {
        None => JOURNAL_PAGE,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=JOURNAL_MAX_PAGE).contains(l))
            .ok_or_else(|| ApiError::bad(format!("limit must be 1 to {JOURNAL_MAX_PAGE}")))?,
    };
    let mut rows = recorder(&ctx, move |r| {
        r.journal_page(camera.as_deref(), since, before, limit + 1)
    })
    .await?
    .map_err(store_error)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_before = if more {
        rows.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    let entries: Vec<Value> = rows
        .iter()
        .map(|(seq, e)| {
            let mut v = serde_json::to_value(e.to_json()).unwrap_or(Value::Null);
            v["seq"] = json!(seq);
            v
        })
        .collect();
    Ok(Json(json!({
        "entries": entries,
        "more": more,
        "next_before": next_before,
    })))
}

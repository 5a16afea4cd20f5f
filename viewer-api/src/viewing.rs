//! A viewing: one authorized, logged look at a camera's footage from a chosen moment.
//!
//! A browser's `<video>` asks for the same MP4 many times (a `Range` for the header, one
//! per seek, one per buffer refill). Logging each of those would bury the one fact a
//! person filmed has the right to learn (who looked, at what, why) under dozens of rows,
//! and asking for the reason again on each would make the console unusable. So the
//! console first opens a *viewing*:
//!
//! * `POST /api/v1/cameras/{id}/viewings` `{"at", "secs"?, "case" | "purpose"}` decides
//!   through [`authorize`](crate::policy::authorize), works out the frames that will be
//!   served (from the key frame at or before `at`), authorizes that *served* range again
//!   (a contractor's narrow grant starts at the first key frame inside it instead), and
//!   writes one `playback` access-log entry for exactly that range, committed before
//!   the answer. The answer says where the MP4 is and how its media time maps to the
//!   wall clock (gaps are skipped in the file).
//! * `GET /api/v1/viewings/{id}/video.mp4` serves those frames (with `Range`), and the
//!   preview and thumbnails ([`crate::preview`]) are served from the same frames, all
//!   under that one entry. Each request re-runs the policy (a revoked grant or a
//!   session that ended stops the viewing) and only the session that opened a viewing
//!   can use it.
//!
//! Viewings live in memory, a few per session; a restart ends them (the console opens
//! a new one, logged again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::api::{
    ApiError, Caller, Shared, log_footage, parse_time, plan_playback, playback_decision, serve_mp4,
    stream_permit,
};
use crate::clock::rfc3339;
use crate::mp4::VideoCodec;
use crate::playback::FrameIndex;
use crate::policy::Action;

/// How long a viewing runs when the console does not say.
pub const DEFAULT_SECS: i64 = 30 * 60;
/// The longest one viewing may cover (as a clip).
pub const MAX_SECS: i64 = 24 * 3600;
/// Viewings kept per session; opening one more forgets the oldest.
const PER_SESSION: usize = 8;
/// Media time and wall time further apart than this start a new point of the time map.
const MAP_TOLERANCE_MS: i64 = 60;

pub struct Viewing {
    pub id: String,
    pub camera: String,
    /// Who opened it, and in which session: nobody else may use it.
    pub user_id: i64,
    pub session: String,
    pub case: Option<String>,
    pub purpose: Option<String>,
    /// The frames served.
    pub index: Arc<FrameIndex>,
    /// The store as seen for the viewing's access-log entry (all its reads are
    /// journaled by the recorder with it).
    pub source: Arc<dyn crate::playback::FootageSource>,
    /// The wall-clock range served, as logged.
    pub from_ms: i64,
    pub to_ms: i64,
    opened_ms: i64,
}

/// The viewings open on this server.
#[derive(Default)]
pub struct Viewings {
    open: Mutex<HashMap<String, Arc<Viewing>>>,
}

impl Viewings {
    fn insert(&self, v: Arc<Viewing>) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut mine: Vec<(i64, String)> = open
            .values()
            .filter(|o| o.session == v.session)
            .map(|o| (o.opened_ms, o.id.clone()))
            .collect();
        if mine.len() >= PER_SESSION {
            mine.sort();
            for (_, id) in &mine[..=mine.len() - PER_SESSION] {
                open.remove(id);
            }
        }
        open.insert(v.id.clone(), v);
    }

    fn get(&self, id: &str) -> Option<Arc<Viewing>> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(id).cloned()
    }

    /// Forgets viewings older than any session can be (their session has ended).
    fn forget_older_than(&self, oldest_ms: i64) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, v| v.opened_ms >= oldest_ms);
    }
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/v1/cameras/{id}/viewings", post(open))
        .route("/api/v1/viewings/{id}/video.mp4", get(video))
        .layer(axum::middleware::map_response(crate::api::security_headers))
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenReq {
    at: Option<String>,
    secs: Option<i64>,
    case: Option<String>,
    purpose: Option<String>,
}

/// The codec string of RFC 6381 for a track, as `MediaSource.isTypeSupported` and
/// `canPlayType` want it.
pub fn codec_string(params: &crate::mp4::TrackParams) -> String {
    let x = &params.extra_data;
    match params.codec {
        VideoCodec::H264 if x.len() >= 4 => format!("avc1.{:02x}{:02x}{:02x}", x[1], x[2], x[3]),
        VideoCodec::H264 => "avc1.42e01e".into(),
        VideoCodec::H265 if x.len() >= 13 => {
            let space = ["", "A", "B", "C"][usize::from(x[1] >> 6)];
            let tier = if x[1] & 0x20 != 0 { 'H' } else { 'L' };
            let profile = x[1] & 0x1f;
            let compat = u32::from_be_bytes([x[2], x[3], x[4], x[5]]).reverse_bits();
            let mut constraints: Vec<String> =
                x[6..12].iter().map(|b| format!("{b:02X}")).collect();
            while constraints.last().is_some_and(|c| c == "00") {
                constraints.pop();
            }
            let mut s = format!("hvc1.{space}{profile}.{compat:X}.{tier}{}", x[12]);
            for c in constraints {
                s.push('.');
                s.push_str(&c);
            }
            s
        }
        VideoCodec::H265 => "hvc1.1.6.L93.B0".into(),
    }
}

fn new_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// `POST /cameras/{id}/viewings`.
async fn open(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<OpenReq>, JsonRejection>,
) -> Result<Response, ApiError> {
    let mut entry = caller.entry(Action::Playback.as_str());
    entry.camera = Some(id.clone());
    let checked = async {
        let Json(req) =
            body.map_err(|r| ApiError::bad(format!("invalid JSON body: {}", r.body_text())))?;
        let at = parse_time("at", req.at.as_deref())?;
        let secs = req.secs.unwrap_or(DEFAULT_SECS);
        if !(1..=MAX_SECS).contains(&secs) {
            return Err(ApiError::bad(format!("secs must be 1 to {MAX_SECS}")));
        }
        let mut to = at + secs * 1000;
        if let Some(end) = caller
            .principal
            .playback_limit(&id, at, state.clock.now_unix_ms())
        {
            to = to.min(end);
        }
        // What is served starts at the key frame at or before `at`: that is what must
        // be allowed, and what is logged.
        let index = plan_playback(
            &state,
            &caller,
            &id,
            at,
            to,
            &req.case,
            &req.purpose,
            &mut entry,
        )
        .await?;
        Ok((req, index))
    }
    .await;
    let checked = match checked {
        Ok((_, None)) => Err(ApiError::not_found("nothing recorded from this moment")),
        other => other,
    };
    let ((req, index), source) = log_footage(&state, &mut entry, checked).await?;
    let Some(index) = index else {
        return Err(ApiError::internal());
    };
    let v = Arc::new(Viewing {
        id: new_id(),
        camera: id,
        user_id: caller.principal.user_id,
        session: caller.session.token_hash.clone(),
        case: req.case,
        purpose: req.purpose,
        from_ms: index.first_unix_ms,
        to_ms: index.end_unix_ms,
        index: Arc::new(index),
        source,
        opened_ms: state.clock.now_unix_ms(),
    });
    state
        .viewings
        .forget_older_than(v.opened_ms - crate::users::MAX_SESSION_MS);
    state.viewings.insert(v.clone());
    Ok((StatusCode::CREATED, Json(describe(&v))).into_response())
}

fn describe(v: &Viewing) -> serde_json::Value {
    let params = &v.index.params;
    let codec = codec_string(params);
    let typical_frame_ms = {
        let mut d: Vec<u32> = v.index.samples.iter().map(|s| s.duration_90k).collect();
        d.sort_unstable();
        d.get(d.len() / 2)
            .map(|x| 1000.0 * crate::clock::secs_from_90k(i64::from(*x)))
            .unwrap_or(40.0)
    };
    let base = format!("/api/v1/viewings/{}", v.id);
    json!({
        "id": v.id,
        "camera": v.camera,
        "from": rfc3339(v.from_ms),
        "to": rfc3339(v.to_ms),
        "from_ms": v.from_ms,
        "to_ms": v.to_ms,
        "codec": match params.codec { VideoCodec::H264 => "h264", VideoCodec::H265 => "h265" },
        "mime": format!("video/mp4; codecs=\"{codec}\""),
        "width": params.width,
        "height": params.height,
        "frame_ms": typical_frame_ms,
        "map": v.index.time_map(MAP_TOLERANCE_MS),
        "video": format!("{base}/video.mp4"),
        "preview": format!("{base}/preview.mp4"),
        "thumb": format!("{base}/thumb.jpg"),
    })
}

/// The caller's own viewing `id`, after checking that the policy still allows it: 404
/// for an unknown id or another session's, 403 when the rights were withdrawn.
pub async fn find(state: &Shared, caller: &Caller, id: &str) -> Result<Arc<Viewing>, ApiError> {
    let v = state
        .viewings
        .get(id)
        .filter(|v| v.session == caller.session.token_hash && v.user_id == caller.principal.user_id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such viewing"))?;
    playback_decision(
        state,
        &caller.principal,
        &v.camera,
        v.from_ms,
        v.to_ms,
        &v.case,
        &v.purpose,
    )?;
    Ok(v)
}

/// `GET /viewings/{id}/video.mp4`: the viewing's frames as MP4, with `Range`.
async fn video(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let v = find(&state, &caller, &id).await?;
    let permit = stream_permit(&state, &caller)?;
    serve_mp4(
        &state,
        v.source.clone(),
        v.index.clone(),
        &headers,
        &format!("{}-{}", v.camera, v.from_ms / 1000),
        permit,
    )
}

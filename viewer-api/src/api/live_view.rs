//! Live view: the same rule as recorded footage (decided, logged, then served), for a
//! stream that has no end.

use super::*;

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
    take_reasons(caller.principal.role, &q.case, &q.purpose, entry)?;
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
pub(super) async fn live(
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
pub(super) struct LiveBody {
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

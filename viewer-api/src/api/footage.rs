//! Recorded footage as MP4: decided by `authorize`, logged before the first byte,
//! and served exactly as logged.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VideoQuery {
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
pub(super) async fn check_footage(
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

/// The reasons a footage request gives (playback and live view alike), once
/// [`check_reason`] accepted them: written into the access-log entry, and the one the
/// role must give required (police: a case; IT and contractors: a purpose).
pub(crate) fn take_reasons(
    role: Role,
    case: &Option<String>,
    purpose: &Option<String>,
    entry: &mut NewEntry,
) -> Result<(), ApiError> {
    entry.case = case.clone();
    entry.purpose = purpose.clone();
    match role {
        Role::Police if !nonempty(case) => {
            Err(ApiError::bad("a case reference is required: add case=REF"))
        }
        Role::It | Role::Contractor if !nonempty(purpose) => {
            Err(ApiError::bad("a purpose is required: add purpose=TEXT"))
        }
        _ => Ok(()),
    }
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
    entry.from_ms = Some(from);
    entry.to_ms = Some(to);
    take_reasons(caller.principal.role, case, purpose, entry)?;
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

pub(super) async fn video(
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
pub(super) struct Mp4Body {
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
pub(super) const MP4_READ_BYTES: u64 = 512 * 1024;

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

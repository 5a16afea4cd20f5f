//! Reading the access log: pages of entries, the subject-access report, and the
//! chain's verification, each by role.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
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
pub(super) const AUDIT_PAGE: usize = 1000;

pub(super) fn audit_filter(q: &AuditQuery) -> Result<Filter, ApiError> {
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
pub(super) fn query_escape(v: &str) -> String {
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
pub(super) async fn run_audit_query(
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

pub(super) async fn read_audit(
    State(state): State<Shared>,
    caller: Caller,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    run_audit_query(&state, &caller, Action::ReadAudit, "/api/v1/audit", q).await
}

/// Who viewed footage of this camera covering this time, when, and why: every footage
/// action ([`crate::audit::FOOTAGE_ACTIONS`]: playback, live, exports asked for and
/// downloaded), allowed, one entry per camera.
pub(super) async fn subject_access(
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
pub(super) async fn audit_verify(
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

//! What may be known about cameras without seeing footage: the list, states and the
//! recorded spans and gaps (cut to a contractor's grant).

use super::*;

pub(super) async fn camera_list(state: &Shared) -> Result<Vec<playback::CameraInfo>, ApiError> {
    let src = state.source.clone();
    Ok(blocking(move || src.cameras()).await??)
}

pub(super) async fn cameras(
    State(state): State<Shared>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
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
pub(super) struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

pub(super) async fn recordings(
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
pub(super) fn clip_to(spans: &[(i64, i64)], ranges: &[(i64, i64)]) -> Vec<(i64, i64)> {
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

//! Contractors' grants: IT gives narrow, time-limited access; each change is logged.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantReq {
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

pub(super) async fn create_grant(
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

pub(super) async fn list_grants(
    State(state): State<Shared>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
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

pub(super) async fn revoke_grant(
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

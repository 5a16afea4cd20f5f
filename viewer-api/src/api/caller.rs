//! Who is asking: the session behind a request, resolved once per request, and the
//! access-log entry every handler starts from.

use super::*;

/// An authenticated request: who, from where, by which session.
pub struct Caller {
    pub principal: Principal,
    pub session: Session,
    pub client: String,
}

pub(super) fn client_addr(parts: &Parts) -> String {
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
    let src = log_footage_noted(state, entry, &checked, None).await?;
    Ok((checked?, src))
}

/// The one place a footage decision is logged: the outcome (`allowed` or `denied: why`,
/// then `; note` when given), its metric, the entry committed; the store as seen for
/// that entry. `Err` only when the log cannot be written (nothing may then be served).
pub(crate) async fn log_footage_noted<T>(
    state: &Shared,
    entry: &mut NewEntry,
    checked: &Result<T, ApiError>,
    note: Option<&str>,
) -> Result<Arc<dyn FootageSource>, ApiError> {
    let outcome = match checked {
        Ok(_) => "allowed".to_string(),
        Err(e) => format!("denied: {}", e.message),
    };
    entry.outcome = match note {
        Some(n) => format!("{outcome}; {n}"),
        None => outcome,
    };
    let label = if checked.is_ok() { "allowed" } else { "denied" };
    state
        .metrics
        .footage_requests
        .get_or_create(&vec![("outcome".into(), label.into())])
        .inc();
    let logged = log(state, entry.clone()).await?;
    Ok(playback::for_entry(
        &state.source,
        crate::recorder_side::log_ref(&logged),
    ))
}

//! The one error type of the handlers and how each kind of failure becomes an HTTP
//! answer: `{"error": "..."}`, never a secret or footage.

use super::*;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn bad(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    pub(crate) fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "not logged in or session expired")
    }
    pub(crate) fn forbidden(why: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, why)
    }
    pub(crate) fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    pub(crate) fn log_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the access log cannot be written; nothing is served until it can",
        )
    }
    pub(crate) fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::streams::RETRY_AFTER_SECS),
            );
        }
        r
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Invalid(m) => ApiError::bad(m),
            UserError::NoSuchUser(_) => ApiError::bad("no such user"),
            UserError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "already exists"),
            UserError::NoSuchGrant(_) => ApiError::not_found("no such grant"),
            e => {
                error!(error = %e, "user database error");
                ApiError::internal()
            }
        }
    }
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::UnknownCamera => ApiError::not_found("unknown camera"),
            e => {
                error!(error = %e, "footage store error");
                ApiError::internal()
            }
        }
    }
}

/// What the recorder side answered, as HTTP: the one mapping for holds, health,
/// signatures and anything else asked of it.
impl From<crate::recorder_side::SideError> for ApiError {
    fn from(e: crate::recorder_side::SideError) -> Self {
        use crate::recorder_side::SideError;
        match e {
            SideError::Invalid(m) => ApiError::bad(m),
            SideError::NotFound => ApiError::not_found("no such hold"),
            SideError::AlreadyReleased { at, by } => ApiError::new(
                StatusCode::CONFLICT,
                format!("this hold was already released at {at} by {by}"),
            ),
            e => {
                error!(error = %e, "recorder side error");
                ApiError::internal()
            }
        }
    }
}

impl From<crate::export::ExportError> for ApiError {
    fn from(e: crate::export::ExportError) -> Self {
        match e {
            crate::export::ExportError::Invalid(m) => ApiError::bad(m),
            e => {
                error!(error = %e, "exports error");
                ApiError::internal()
            }
        }
    }
}

pub(super) fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(_) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        }
        other => ApiError::bad(format!("invalid JSON body: {}", other.body_text())),
    }
}

pub(super) fn query_rejection(r: QueryRejection) -> ApiError {
    ApiError::bad(format!("invalid query: {}", r.body_text()))
}

/// Runs blocking work (SQLite, segment files) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        error!(error = %e, "blocking task failed");
        ApiError::internal()
    })
}

//! H.264 previews and scrub thumbnails decoded by GStreamer, for browsers that cannot
//! decode a camera's codec.

use axum::Router;

use crate::api::Shared;

pub fn router(state: Shared) -> Router {
    Router::new().with_state(state)
}

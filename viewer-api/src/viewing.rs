//! A viewing: one authorized, logged look at a camera's footage from a chosen moment.

use axum::Router;

use crate::api::Shared;

pub fn router(state: Shared) -> Router {
    Router::new().with_state(state)
}

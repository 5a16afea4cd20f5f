//! Holds, system health and the deletion journal, as the review console needs them.

use axum::Router;

use crate::api::Shared;
use crate::config::Settings;

pub fn router(state: Shared, settings: &Settings) -> Router {
    let _ = settings;
    Router::new().with_state(state)
}

//! The review console's assets, embedded in the binary.

use axum::Router;

pub fn router() -> Router {
    Router::new()
}

//! Instances: one Docker sandbox per instance, its lifecycle API, access gating, the
//! background drivers that move it between states, and the reconciler.

pub mod access;
pub mod extract;
pub mod handlers;
pub mod lifecycle;
pub mod logs;
pub mod models;
pub mod reconciler;
pub mod repo;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::list, handlers::create))
        .routes(routes!(handlers::get, handlers::delete))
        .routes(routes!(handlers::reboot))
        .routes(routes!(handlers::shutdown))
        .routes(routes!(handlers::start))
        .routes(routes!(handlers::status))
        .routes(routes!(logs::logs))
}

//! Organisations (teams): members with roles (`owner`, `admin`, `member`, `viewer`),
//! invitations by email, and instances that belong to an organisation — reached by its members
//! as their role allows (`roles`), counted against the organisation's own plan.

pub mod extract;
pub mod handlers;
pub mod models;
pub mod repo;
pub mod roles;
pub mod service;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::list, handlers::create))
        .routes(routes!(handlers::get, handlers::rename, handlers::delete))
        .routes(routes!(handlers::members))
        .routes(routes!(handlers::change_role, handlers::remove))
        .routes(routes!(handlers::invitations, handlers::invite))
        .routes(routes!(handlers::withdraw))
        .routes(routes!(handlers::mine))
        .routes(routes!(handlers::accept))
        .routes(routes!(handlers::decline))
}

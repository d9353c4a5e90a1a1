//! Snapshots of an instance's `/workspace` and agent state: taken on demand, on a schedule
//! and before restores and upgrades, kept compressed in a `SnapshotStore`, listed,
//! downloaded, deleted, restored into the instance and cloned into a new one.

pub mod handlers;
pub mod models;
pub mod repo;
pub mod s3;
pub mod schedule;
pub mod service;
pub mod store;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::list, handlers::create))
        .routes(routes!(handlers::delete))
        .routes(routes!(handlers::download))
        .routes(routes!(handlers::restore))
}

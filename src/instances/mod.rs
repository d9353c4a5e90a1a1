//! Instances: one Docker sandbox per instance, its lifecycle API, access gating, the state
//! machine and the background drivers that move it between states, the reconciler, the idle
//! policy with pause/resume and wake on use, and the warm pool.

pub mod access;
pub mod actions;
pub mod extract;
pub mod facts;
pub mod handlers;
pub mod idle;
pub mod lifecycle;
pub mod lists;
pub mod logs;
pub mod machine;
pub mod models;
pub mod pool;
pub mod power;
pub mod reconciler;
pub mod relocate;
pub mod repo;
pub mod restore;
pub mod storage_move;
pub mod upgrade;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::list, handlers::create))
        .routes(routes!(handlers::get, handlers::delete, actions::update))
        .routes(routes!(actions::reboot))
        .routes(routes!(actions::shutdown))
        .routes(routes!(actions::start))
        .routes(routes!(actions::pause))
        .routes(routes!(actions::resume))
        .routes(routes!(actions::upgrade))
        .routes(routes!(handlers::status))
        .routes(routes!(logs::logs))
}

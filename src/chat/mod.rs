//! Chat with an instance's agent: sessions, synchronous and streamed turns bridged to the
//! OpenClaw gateway, history, and the persisted event feed.

pub mod control;
pub mod events;
pub mod gateway;
pub mod handlers;
pub mod import;
pub mod models;
pub mod notice;
pub mod repo;
pub mod tools;
pub mod turn;
mod turn_http;
mod turn_ws;
mod wake;
pub mod wire;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::list_sessions, handlers::create_session))
        .routes(routes!(handlers::send))
        .routes(routes!(handlers::stream))
        .routes(routes!(handlers::messages))
        .routes(routes!(handlers::follow))
        .routes(routes!(control::abort))
}

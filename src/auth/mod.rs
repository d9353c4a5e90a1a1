//! Accounts and authentication: users, passwords, browser sessions, API keys,
//! subscriptions and invite codes, the `AuthUser` extractor and the `/api/account` routes.

pub mod cache;
pub mod extractor;
pub mod handlers;
pub mod models;
pub mod password;
pub mod repo;
pub mod scopes;
pub mod secrets;
pub mod service;
pub mod tickets;
pub mod ws;

pub use extractor::AuthUser;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::register))
        .routes(routes!(handlers::login))
        .routes(routes!(handlers::logout))
        .routes(routes!(handlers::me))
        .routes(routes!(handlers::list_keys, handlers::create_key))
        .routes(routes!(handlers::revoke_key))
}

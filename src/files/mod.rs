//! Files inside an instance's sandbox: list, read, write, upload (JSON or multipart), mkdir,
//! rename, delete, download — always as the sandbox user, contents streamed through tar.

pub mod handlers;
pub mod models;
pub mod multipart;
pub mod ops;
pub mod paths;
pub mod tarstream;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::list))
        .routes(routes!(handlers::read))
        .routes(routes!(handlers::write))
        .routes(routes!(handlers::upload))
        .routes(routes!(handlers::mkdir))
        .routes(routes!(handlers::rename))
        .routes(routes!(handlers::delete))
        .routes(routes!(handlers::download))
}

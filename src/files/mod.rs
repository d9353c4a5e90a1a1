//! Files inside an instance's sandbox: list, read, write, upload (JSON or multipart), mkdir,
//! rename, delete, download — always as the sandbox user, contents streamed through tar.

pub mod handlers;
pub mod models;
pub mod multipart;
pub mod ops;
pub mod paths;
pub mod tarstream;

use axum::extract::DefaultBodyLimit;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The file routes; `write` and `upload` take bodies up to `upload_body_limit` bytes, the
/// others the server's default JSON limit.
pub fn router(upload_body_limit: usize) -> OpenApiRouter<AppState> {
    let uploads =
        OpenApiRouter::new().routes(routes!(handlers::write)).routes(routes!(handlers::upload)).layer(DefaultBodyLimit::max(upload_body_limit));
    OpenApiRouter::new()
        .routes(routes!(handlers::list))
        .routes(routes!(handlers::read))
        .merge(uploads)
        .routes(routes!(handlers::mkdir))
        .routes(routes!(handlers::rename))
        .routes(routes!(handlers::delete))
        .routes(routes!(handlers::download))
}

//! Files inside an instance's sandbox: list, read, write, upload (JSON or multipart), mkdir,
//! rename, delete, download — always as the sandbox user; contents stream through tar, or
//! straight into the instance's storage for writes (`direct`).

pub mod capped;
pub mod direct;
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

/// The file routes: `write` takes JSON up to `json_upload_limit` bytes, `upload` multipart up
/// to `upload_body_limit` (its JSON form is held to `json_upload_limit` by the handler), the
/// others the server's default JSON limit.
pub fn router(json_upload_limit: usize, upload_body_limit: usize) -> OpenApiRouter<AppState> {
    let write = OpenApiRouter::new().routes(routes!(handlers::write)).layer(DefaultBodyLimit::max(json_upload_limit));
    let uploads = OpenApiRouter::new().routes(routes!(handlers::upload)).layer(DefaultBodyLimit::max(upload_body_limit)).merge(write);
    OpenApiRouter::new()
        .routes(routes!(handlers::list))
        .routes(routes!(handlers::read))
        .merge(uploads)
        .routes(routes!(handlers::mkdir))
        .routes(routes!(handlers::rename))
        .routes(routes!(handlers::delete))
        .routes(routes!(handlers::download))
}

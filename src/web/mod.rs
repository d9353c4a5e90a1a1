//! Browser pages and their files: the desktop page, ocaas's own static files (embedded in the
//! binary), and the Debian-packaged client libraries (noVNC, xterm.js) served from disk.

mod assets;
mod desktop;

use axum::Router;
use axum::routing::get;
use tower_http::services::ServeDir;

use crate::app::AppState;
use crate::config::Settings;

pub fn router(settings: &Settings) -> Router<AppState> {
    Router::new()
        .route("/desktop/{instance_id}", get(desktop::page))
        .route("/static/{*file}", get(assets::serve))
        .nest_service("/novnc", ServeDir::new(&settings.novnc_dir))
        .nest_service("/vendor/xterm", ServeDir::new(&settings.xterm_dir))
}

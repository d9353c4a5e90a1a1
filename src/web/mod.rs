//! Browser pages and their files: `/account` (account and instance dashboard), the desktop
//! page, ocaas's own static files (embedded in the binary), and the Debian-packaged client
//! libraries — noVNC served from disk, xterm.js bundled from its CommonJS modules.

mod assets;
mod commonjs;
mod desktop;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::services::ServeDir;

use crate::config::Settings;
use crate::error::{ErrorCode, json_error};
use crate::state::AppState;

pub fn router(settings: &Settings) -> Router<AppState> {
    let xterm_dir = settings.xterm_dir.clone();
    let bundle: Arc<OnceLock<Result<String, String>>> = Arc::default();
    Router::new()
        .route("/account", get(assets::account_page))
        .route("/desktop/{instance_id}", get(desktop::page))
        .route("/static/{*file}", get(assets::serve))
        .route("/vendor/xterm/xterm.js", get(move || xterm_js(bundle.clone(), xterm_dir.clone())))
        .route_service("/vendor/xterm/xterm.css", tower_http::services::ServeFile::new(settings.xterm_dir.join("lib/xterm.css")))
        .nest_service("/novnc", ServeDir::new(&settings.novnc_dir))
}

async fn xterm_js(bundle: Arc<OnceLock<Result<String, String>>>, dir: PathBuf) -> Response {
    let built = bundle.get_or_init(|| {
        commonjs::xterm_bundle(&dir).map_err(|error| {
            tracing::warn!(dir = %dir.display(), %error, "xterm.js is not available");
            format!("xterm.js was not found in {} (install Debian's node-xterm package or set OCAAS_XTERM_DIR)", dir.display())
        })
    });
    match built {
        Ok(js) => ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], js.clone()).into_response(),
        Err(message) => json_error(ErrorCode::TerminalViewerMissing, message),
    }
}

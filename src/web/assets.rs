//! ocaas's own browser files, compiled into the binary so a deployment is one file.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::{ErrorCode, json_error};

const JS: &str = "text/javascript; charset=utf-8";
const FILES: &[(&str, &str, &str)] = &[
    ("account.js", JS, include_str!("../../static/account.js")),
    ("agent.js", JS, include_str!("../../static/agent.js")),
    ("api.js", JS, include_str!("../../static/api.js")),
    ("dashboard.js", JS, include_str!("../../static/dashboard.js")),
    ("desktop.js", JS, include_str!("../../static/desktop.js")),
    ("desktop-boot.js", JS, include_str!("../../static/desktop-boot.js")),
    ("model.js", JS, include_str!("../../static/model.js")),
    ("snapshots.js", JS, include_str!("../../static/snapshots.js")),
    ("webhooks.js", JS, include_str!("../../static/webhooks.js")),
    ("orgs.js", JS, include_str!("../../static/orgs.js")),
    ("ocaas.css", "text/css; charset=utf-8", include_str!("../../static/ocaas.css")),
];

const ACCOUNT_PAGE: &str = include_str!("../../static/account.html");
/// Scripts and styles only from this origin; websockets to it; frames of it (the desktop).
const ACCOUNT_CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; form-action 'self'";

pub async fn account_page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CONTENT_SECURITY_POLICY, ACCOUNT_CSP), (header::CACHE_CONTROL, "no-cache")],
        ACCOUNT_PAGE,
    )
        .into_response()
}

pub async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "no-cache")], *body).into_response(),
        None => json_error(ErrorCode::NotFound, "No such static file."),
    }
}

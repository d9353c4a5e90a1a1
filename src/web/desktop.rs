//! `/desktop/{instanceId}`: the page `vnc-url` points at. It loads noVNC from Debian's `novnc`
//! package and connects to the instance's `vnc/ws` with the ticket in the URL fragment (or the
//! session cookie when opened from `/account`); the fragment never reaches servers or logs.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::state::AppState;

const PAGE: &str = include_str!("../../static/desktop.html");
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'self'";

pub async fn page(State(state): State<AppState>, Path(instance_id): Path<String>) -> Response {
    let novnc = state.settings.novnc_dir.join("core/rfb.js");
    let (status, body) = if instance_id.parse::<uuid::Uuid>().is_err() {
        (StatusCode::NOT_FOUND, problem("No such instance", "This desktop link is not valid."))
    } else if !novnc.is_file() {
        let message = format!(
            "The desktop viewer is not installed on this server: noVNC was not found in {}. \
             The operator can install Debian's <code>novnc</code> package or set <code>OCAAS_NOVNC_DIR</code>.",
            html_escape(&state.settings.novnc_dir.display().to_string())
        );
        (StatusCode::SERVICE_UNAVAILABLE, problem("Desktop viewer missing", &message))
    } else {
        (StatusCode::OK, PAGE.replace("{{instance_id}}", &instance_id))
    };
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn problem(title: &str, message: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title} · ocaas</title><link rel=\"stylesheet\" href=\"/static/ocaas.css\"></head>\
         <body><main class=\"narrow\"><h1>{title}</h1><p id=\"problem\">{message}</p></main></body></html>"
    )
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

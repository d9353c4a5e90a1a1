//! ocaas's own browser files, compiled into the binary so a deployment is one file.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::json_error;

const FILES: &[(&str, &str, &str)] = &[
    ("desktop.js", "text/javascript; charset=utf-8", include_str!("../../static/desktop.js")),
    ("ocaas.css", "text/css; charset=utf-8", include_str!("../../static/ocaas.css")),
];

pub async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => {
            ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "no-cache")], *body).into_response()
        }
        None => json_error(StatusCode::NOT_FOUND, "not_found", "No such static file."),
    }
}

//! Documentation surfaces: `GET /api`, the OpenAPI spec (`/api/openapi.json|yaml`) and
//! Swagger UI at `/docs`, served from files vendored into the binary (no CDN).

pub mod agent;
pub mod root;
pub mod spec;
mod sse;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(root::api_root))
}

/// Routes that serve the finished spec; not themselves part of it.
pub fn spec_routes(spec: utoipa::openapi::OpenApi) -> Router<AppState> {
    // Shared, not copied: handlers are cloned per request.
    let yaml = bytes::Bytes::from(spec::to_yaml(&spec));
    let swagger = SwaggerUi::new("/docs")
        .url("/api/openapi.json", spec)
        .config(Config::default().validator_url("none").persist_authorization(true).try_it_out_enabled(true));
    // The hosted service's helper client asks for `/api/` (trailing slash): same answer.
    Router::from(swagger).merge(agent::routes()).route("/api/", get(root::api_root)).route(
        "/api/openapi.yaml",
        get(move || {
            let yaml = yaml.clone();
            async move { ([(header::CONTENT_TYPE, "application/yaml")], yaml) }
        }),
    )
}

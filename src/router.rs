//! The top of the crate: every domain's routes, the OpenAPI document they make up, and the
//! middleware around them. Nothing below imports this module.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::config::Settings;
use crate::docs::spec::ApiDoc;
use crate::error::{ErrorCode, json_error};
use crate::state::AppState;
use crate::{audit, auth, chat, docs, files, health, instances, terminal, vnc, web};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every documented route, with the OpenAPI document they make up. Routes whose bodies may
/// be larger than `OCAAS_MAX_BODY_BYTES` declare their own limit (see `files::router`).
pub fn api_router(settings: &Settings) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(docs::router())
        .merge(health::router())
        .merge(auth::router())
        .merge(audit::router())
        .merge(instances::router())
        .merge(crate::snapshots::router())
        .merge(files::router(settings.instances.max_json_upload_bytes, settings.instances.upload_body_limit()))
        .merge(chat::router())
        .merge(crate::gateway::router())
        .merge(crate::broker::api_router())
        .merge(terminal::router())
        .merge(vnc::router())
        .merge(crate::webhooks::router())
        .merge(crate::orgs::router())
}

/// The routes and the finished OpenAPI document.
fn api_and_spec(settings: &Settings) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut spec) = api_router(settings).split_for_parts();
    docs::spec::complete(&mut spec);
    (api, spec)
}

/// The OpenAPI document as served at `/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_and_spec(&Settings::defaults("")).1
}

pub fn router(state: AppState) -> Router {
    let (api, spec) = api_and_spec(&state.settings);
    let routes: Router = api
        .merge(docs::spec_routes(spec))
        .merge(web::router(&state.settings))
        .merge(health::metrics_route())
        .merge(crate::nodes::router())
        .with_state(state.clone());
    // MCP's tools run through the API's own routes (auth, scopes, ownership, errors).
    let mcp = crate::mcp::router(routes.clone(), &state);
    // Model calls that nodes relay for their sandboxes.
    let relay = crate::broker::relay::router(state.clone()).unwrap_or_else(|error| {
        tracing::error!(error = format!("{error:#}"), "model broker: cannot build its client; nodes' sandboxes get no model");
        Router::new()
    });
    routes
        .merge(mcp)
        .merge(relay)
        // After routing, so requests are counted by their route template.
        .route_layer(axum::middleware::from_fn_with_state(state.metrics.clone(), crate::metrics::track_requests))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // The default for every route; a route's own `DefaultBodyLimit` layer overrides it.
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
                    let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
                .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
                    tracing::error!("a handler panicked");
                    json_error(ErrorCode::InternalError, "The server hit an internal error; it has been logged.")
                })),
        )
}

async fn route_not_found(request: Request) -> Response {
    let message = format!("No route for {} {}. See /docs for the API.", request.method(), request.uri().path());
    json_error(ErrorCode::NotFound, &message)
}

async fn method_not_allowed(request: Request) -> Response {
    let message = format!("{} is not allowed on {}.", request.method(), request.uri().path());
    json_error(ErrorCode::MethodNotAllowed, &message)
}

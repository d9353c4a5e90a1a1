//! Application wiring: the shared state, the router of every domain with its middleware,
//! and serving it until a shutdown signal.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use uuid::Uuid;

use crate::config::Settings;
use crate::instances::lifecycle::Drivers;
use crate::runtime::Runtime;
use crate::docs::spec::ApiDoc;
use crate::error::json_error;
use crate::{auth, chat, docs, files, health, instances, terminal, vnc, web};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub settings: Arc<Settings>,
    pub runtime: Arc<dyn Runtime>,
    /// Names this database's containers on a shared engine (label `ocaas.deployment`).
    pub deployment_id: Uuid,
    pub drivers: Arc<Drivers>,
    pub chat_events: Arc<crate::chat::events::EventHub>,
    /// For talking to sandbox gateways.
    pub http: reqwest::Client,
    /// Cancelled when the server shuts down; background tasks watch it.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub async fn new(db: PgPool, settings: Settings, runtime: Arc<dyn Runtime>) -> anyhow::Result<Self> {
        let deployment_id = crate::instances::repo::deployment_id(&db).await?;
        Ok(AppState {
            db,
            settings: Arc::new(settings),
            runtime,
            deployment_id,
            drivers: Arc::default(),
            chat_events: Arc::default(),
            http: reqwest::Client::builder().connect_timeout(Duration::from_secs(3)).build()?,
            shutdown: CancellationToken::new(),
        })
    }

    /// Starts the background work: the reconciler (which also resumes unfinished operations
    /// and closes abandoned chat turns) and the chat event listener.
    pub fn start_background_tasks(&self) {
        crate::instances::reconciler::spawn(self.clone(), self.settings.instances.reconcile_interval);
        crate::chat::events::spawn_listener(self.clone());
    }
}

/// Every documented route, with the OpenAPI document they make up.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(docs::router())
        .merge(health::router())
        .merge(auth::router())
        .merge(instances::router())
        .merge(files::router())
        .merge(chat::router())
        .merge(terminal::router())
        .merge(vnc::router())
}

/// The OpenAPI document as served at `/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

pub fn router(state: AppState) -> Router {
    let (api, spec) = api_router().split_for_parts();
    api.merge(docs::spec_routes(spec))
        .merge(web::router(&state.settings))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), limit_body))
        .layer(DefaultBodyLimit::disable())
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
                    let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
                    tracing::error!("a handler panicked");
                    json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "The server hit an internal error; it has been logged.")
                })),
        )
        .with_state(state)
}

/// Caps request bodies: `OCAAS_MAX_BODY_BYTES` everywhere, more on the file upload routes.
/// Extractors turn an overrun into 413 `payload_too_large`.
async fn limit_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let limit = if path.ends_with("/files/upload") || path.ends_with("/files/write") {
        state.settings.instances.upload_body_limit()
    } else {
        state.settings.max_body_bytes
    };
    if request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok()).is_some_and(|n| n > limit) {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "The request body is larger than this endpoint accepts.");
    }
    let request = request.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, limit)));
    next.run(request).await
}

async fn route_not_found(request: Request) -> Response {
    let message = format!("No route for {} {}. See /docs for the API.", request.method(), request.uri().path());
    json_error(StatusCode::NOT_FOUND, "not_found", &message)
}

async fn method_not_allowed(request: Request) -> Response {
    let message = format!("{} is not allowed on {}.", request.method(), request.uri().path());
    json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", &message).into_response()
}

/// Serves until `shutdown` resolves, then cancels background work and drains connections.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let token = state.shutdown.clone();
    let app = router(state);
    let drain_started = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        token.cancel();
    });
    // `into_make_service` shares the router between connections; serving the `Router` itself
    // would rebuild every route (and copy what handlers captured) for each connection.
    axum::serve(listener, app.into_make_service()).with_graceful_shutdown(drain_started.cancelled_owned()).await?;
    // Give background tasks a moment to observe the cancellation.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining connections");
}

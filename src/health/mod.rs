//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: its dependencies do).

use axum::Json;

mod metrics;
use axum::extract::State;
pub use metrics::route as metrics_route;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ready", "database": "ok", "docker": "ok"}))]
pub struct Readiness {
    pub status: &'static str,
    pub database: &'static str,
    pub docker: &'static str,
}

/// Liveness
///
/// Answers 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()),
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness
///
/// Answers 200 when the database and the container engine are reachable, 503 `not_ready` otherwise.
#[utoipa::path(get, path = "/readyz", tag = "meta", security(()),
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "`not_ready`: a dependency is unreachable", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> AppResult<Json<Readiness>> {
    let limit = std::time::Duration::from_secs(3);
    let database = tokio::time::timeout(limit, sqlx::query("SELECT 1").execute(&state.db)).await;
    if !matches!(database, Ok(Ok(_))) {
        tracing::warn!("readiness: database unreachable");
        return Err(AppError::new(ErrorCode::NotReady, "The database is unreachable."));
    }
    let docker = tokio::time::timeout(limit, state.runtime.ping()).await;
    if !matches!(docker, Ok(Ok(()))) {
        tracing::warn!("readiness: container engine unreachable");
        return Err(AppError::new(ErrorCode::NotReady, "The container engine (Docker) is unreachable."));
    }
    Ok(Json(Readiness { status: "ready", database: "ok", docker: "ok" }))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}

//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: its dependencies do).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{AppError, AppResult, ErrorBody};

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ready", "database": "ok"}))]
pub struct Readiness {
    pub status: &'static str,
    pub database: &'static str,
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
/// Answers 200 when the database is reachable, 503 `not_ready` otherwise.
#[utoipa::path(get, path = "/readyz", tag = "meta", security(()),
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "`not_ready`: a dependency is unreachable", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> AppResult<Json<Readiness>> {
    let probe = tokio::time::timeout(std::time::Duration::from_secs(3), sqlx::query("SELECT 1").execute(&state.db)).await;
    match probe {
        Ok(Ok(_)) => Ok(Json(Readiness { status: "ready", database: "ok" })),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: database unreachable");
            Err(AppError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "The database is unreachable."))
        }
        Err(_) => Err(AppError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "The database did not answer within 3 s.")),
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}

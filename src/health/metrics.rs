//! `GET /metrics`: the Prometheus text format, for operators. It needs
//! `Authorization: Bearer $OCAAS_METRICS_TOKEN`; without a configured token it is not served
//! (404), so a fresh server exposes nothing about its tenants.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::ExposeSecret;

use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;

pub fn route() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let Some(token) = &state.settings.metrics_token else {
        return Err(AppError::new(ErrorCode::NotFound, "Metrics are off on this server (set OCAAS_METRICS_TOKEN to serve them)."));
    };
    let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(crate::auth::extractor::bearer_token).unwrap_or("");
    if !crate::auth::secrets::constant_time_eq(sent, token.expose_secret()) {
        return Err(AppError::unauthorized("`/metrics` needs `Authorization: Bearer <OCAAS_METRICS_TOKEN>`."));
    }
    refresh(&state).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response())
}

/// Values kept elsewhere, read now.
async fn refresh(state: &AppState) -> AppResult<()> {
    let metrics = &state.metrics;
    metrics.db_pool_size.set(i64::from(state.db.size()));
    metrics.db_pool_idle.set(state.db.num_idle() as i64);
    let counts = crate::instances::repo::count_by_status(&state.db).await?;
    for status in crate::instances::models::InstanceStatus::ALL {
        let count = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
        metrics.instances.with_label_values(&[status.as_str()]).set(count);
    }
    Ok(())
}

//! HTTP handlers of `/api/account/webhooks…`: the caller's endpoints (its user's), their
//! deliveries, secret rotation and a test send. `OwnedWebhook` answers 404 `webhook_not_found`
//! for another account's endpoint before any handler code runs.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::Utc;
use uuid::Uuid;

use super::models::{AttemptView, CreateWebhook, DeliveryView, EventType, UpdateWebhook, WebhookView, WebhookWithSecret};
use super::{repo, service};
use crate::audit::AuditAction;
use crate::auth::AuthUser;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiPath, ClientAddr};
use crate::state::AppState;

/// Deliveries listed per endpoint, newest first.
const DELIVERIES_SHOWN: i64 = 100;

/// The caller's endpoint named by `{webhookId}`.
pub struct OwnedWebhook {
    pub user: AuthUser,
    pub row: repo::EndpointRow,
}

fn not_found() -> AppError {
    AppError::new(ErrorCode::WebhookNotFound, "No webhook endpoint with this id exists on your account.")
}

impl<S> FromRequestParts<S> for OwnedWebhook
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        let ApiPath(id) = ApiPath::<Uuid>::from_request_parts(parts, state).await.map_err(|_| not_found())?;
        let app = AppState::from_ref(state);
        let row = repo::get(&app.db, id, user.user_id).await?.ok_or_else(not_found)?;
        Ok(OwnedWebhook { user, row })
    }
}

/// List webhook endpoints
///
/// The account's endpoints, newest first. Secrets are never shown again.
#[utoipa::path(operation_id = "list_webhooks", get, path = "/api/account/webhooks", tag = "webhooks",
    responses((status = 200, description = "The account's endpoints, newest first", body = [WebhookView])))]
pub async fn list(State(state): State<AppState>, user: AuthUser) -> AppResult<Json<Vec<WebhookView>>> {
    let now = Utc::now();
    Ok(Json(repo::list(&state.db, user.user_id).await?.into_iter().map(|row| service::view(row, now)).collect()))
}

/// Add a webhook endpoint
///
/// Answers the endpoint with its signing `secret` (shown this once). Every event of the kinds in
/// `events` is then POSTed to `url`, signed as Standard Webhooks specifies.
#[utoipa::path(operation_id = "create_webhook", post, path = "/api/account/webhooks", tag = "webhooks",
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "The endpoint and its secret", body = WebhookWithSecret),
        (status = 400, description = "`invalid_request`: a bad URL (or one that is not public), event or description", body = ErrorBody),
        (status = 403, description = "`webhook_limit_reached`, `csrf_failed`, or `insufficient_scope`: a key without the scopes of the events (or bound to one instance)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientAddr,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> AppResult<(StatusCode, Json<WebhookWithSecret>)> {
    let url = service::check_url(&body.url, state.settings.webhook_allow_private).await?;
    let events = service::check_events(body.events)?;
    service::check_grant(user.grant(), &events)?;
    let description = service::check_description(body.description.as_deref())?;
    let secret = service::new_secret();
    let sealed = state.settings.secret_key.seal(secret.as_bytes());
    let new = repo::NewEndpoint { id: Uuid::now_v7(), user_id: user.user_id, url: &url, events: &events, description, secret_sealed: &sealed };
    let row = service::insert_within_limit(&state.db, &new).await?;
    crate::audit::record_action(&state.db, AuditAction::WebhookCreated, &user, client.as_deref(), Some(row.id.to_string())).await?;
    Ok((StatusCode::CREATED, Json(WebhookWithSecret { webhook: service::view(row, Utc::now()), secret })))
}

/// A webhook endpoint
///
/// Its URL, events, whether it is disabled, and until when a rotated secret still signs.
#[utoipa::path(operation_id = "get_webhook", get, path = "/api/account/webhooks/{webhookId}", tag = "webhooks",
    params(("webhookId" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookView),
        (status = 404, description = "`webhook_not_found`", body = ErrorBody),
    ))]
pub async fn get(OwnedWebhook { row, .. }: OwnedWebhook) -> Json<WebhookView> {
    Json(service::view(row, Utc::now()))
}

/// Change a webhook endpoint
///
/// The fields given change; `disabled: true` stops new events (queued ones are still sent).
#[utoipa::path(operation_id = "update_webhook", patch, path = "/api/account/webhooks/{webhookId}", tag = "webhooks",
    params(("webhookId" = Uuid, Path, description = "Endpoint id")),
    request_body = UpdateWebhook,
    responses(
        (status = 200, description = "The endpoint now", body = WebhookView),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`: a key without the scopes of the events", body = ErrorBody),
        (status = 404, description = "`webhook_not_found`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    OwnedWebhook { user, row }: OwnedWebhook,
    ApiJson(body): ApiJson<UpdateWebhook>,
) -> AppResult<Json<WebhookView>> {
    let url = match &body.url {
        Some(raw) => Some(service::check_url(raw, state.settings.webhook_allow_private).await?),
        None => None,
    };
    let events = body.events.map(|e| service::check_events(Some(e))).transpose()?;
    service::check_grant(user.grant(), events.as_deref().unwrap_or(&row.events))?;
    let description = body.description.as_deref().map(|d| service::check_description(Some(d))).transpose()?;
    let change = repo::Change { url: url.as_deref(), events: events.as_deref(), description, disabled: body.disabled };
    let row = repo::update(&state.db, row.id, user.user_id, &change).await?.ok_or_else(not_found)?;
    Ok(Json(service::view(row, Utc::now())))
}

/// Delete a webhook endpoint
///
/// Its queued deliveries and their log go with it.
#[utoipa::path(operation_id = "delete_webhook", delete, path = "/api/account/webhooks/{webhookId}", tag = "webhooks",
    params(("webhookId" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`webhook_not_found`", body = ErrorBody),
    ))]
pub async fn delete(State(state): State<AppState>, client: ClientAddr, OwnedWebhook { user, row }: OwnedWebhook) -> AppResult<StatusCode> {
    if !repo::delete(&state.db, row.id, user.user_id).await? {
        return Err(not_found());
    }
    crate::audit::record_action(&state.db, AuditAction::WebhookDeleted, &user, client.as_deref(), Some(row.id.to_string())).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate an endpoint's secret
///
/// Answers the new secret. For 24 hours both sign every delivery (`webhook-signature` carries
/// two `v1,` signatures), so a receiver can switch without missing one.
#[utoipa::path(operation_id = "rotate_webhook_secret", post, path = "/api/account/webhooks/{webhookId}/rotate-secret", tag = "webhooks",
    params(("webhookId" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "The endpoint and its new secret", body = WebhookWithSecret),
        (status = 404, description = "`webhook_not_found`", body = ErrorBody),
    ))]
pub async fn rotate(
    State(state): State<AppState>,
    client: ClientAddr,
    OwnedWebhook { user, row }: OwnedWebhook,
) -> AppResult<Json<WebhookWithSecret>> {
    let secret = service::new_secret();
    let sealed = state.settings.secret_key.seal(secret.as_bytes());
    let until = Utc::now() + service::ROTATION_OVERLAP;
    let row = repo::rotate(&state.db, row.id, user.user_id, &sealed, until).await?.ok_or_else(not_found)?;
    crate::audit::record_action(&state.db, AuditAction::WebhookSecretRotated, &user, client.as_deref(), Some(row.id.to_string())).await?;
    Ok(Json(WebhookWithSecret { webhook: service::view(row, Utc::now()), secret }))
}

/// An endpoint's deliveries
///
/// The last 100, newest first, each with every attempt's status code or error.
#[utoipa::path(operation_id = "list_webhook_deliveries", get, path = "/api/account/webhooks/{webhookId}/deliveries", tag = "webhooks",
    params(("webhookId" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "Deliveries", body = [DeliveryView]),
        (status = 404, description = "`webhook_not_found`", body = ErrorBody),
    ))]
pub async fn deliveries(State(state): State<AppState>, OwnedWebhook { row, .. }: OwnedWebhook) -> AppResult<Json<Vec<DeliveryView>>> {
    // One snapshot: an attempt in the log is always one the delivery's own fields include.
    let mut tx = crate::db::snapshot(&state.db).await?;
    let rows = repo::deliveries(&mut *tx, row.id, DELIVERIES_SHOWN).await?;
    let ids: Vec<Uuid> = rows.iter().map(|d| d.id).collect();
    let attempts = repo::attempts(&mut *tx, &ids).await?;
    tx.commit().await?;
    let mut logs: HashMap<Uuid, Vec<AttemptView>> = HashMap::new();
    for a in attempts {
        let view = AttemptView { attempt: a.attempt, at: a.at, status_code: a.status_code, error: a.error, duration_ms: a.duration_ms };
        logs.entry(a.delivery_id).or_default().push(view);
    }
    let views = rows
        .into_iter()
        .map(|d| DeliveryView {
            log: logs.remove(&d.id).unwrap_or_default(),
            next_attempt_at: (d.status == super::models::DeliveryStatus::Pending).then_some(d.next_attempt_at),
            id: d.id,
            message_id: d.message_id,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
            payload: d.payload,
        })
        .collect();
    Ok(Json(views))
}

/// Send a test event
///
/// Queues a `webhook.test` event for this endpoint (whatever its `events`); see its delivery
/// in `…/deliveries`.
#[utoipa::path(operation_id = "test_webhook", post, path = "/api/account/webhooks/{webhookId}/test", tag = "webhooks",
    params(("webhookId" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 202, description = "Queued; the delivery's id", body = TestQueued),
        (status = 429, description = "`webhook_backlog`: 100 deliveries of the endpoint are pending", body = ErrorBody),
        (status = 404, description = "`webhook_not_found`", body = ErrorBody),
    ))]
pub async fn test(State(state): State<AppState>, OwnedWebhook { row, .. }: OwnedWebhook) -> AppResult<(StatusCode, Json<TestQueued>)> {
    if repo::pending_count(&state.db, row.id).await? >= service::MAX_PENDING_FOR_TEST {
        let message =
            format!("The endpoint has {} deliveries pending; send a test when they are delivered or given up.", service::MAX_PENDING_FOR_TEST);
        return Err(AppError::new(ErrorCode::WebhookBacklog, message));
    }
    let payload = serde_json::json!({
        "type": EventType::WebhookTest,
        "timestamp": crate::timefmt::rfc3339_millis(&Utc::now()),
        "data": {"webhook_id": row.id, "message": "A test event from ocaas."},
    });
    let delivery_id = repo::queue_test(&state.db, row.id, &payload).await?;
    state.webhook_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(TestQueued { delivery_id })))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TestQueued {
    pub delivery_id: Uuid,
}

//! HTTP handlers of the instance lifecycle API (`/api/instances…`).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use uuid::Uuid;

use super::lifecycle::{self, gateway_ready};
use super::models::*;
use super::repo::{self, InstanceRow};
use super::access;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::extract::{ApiJsonOrEmpty, PublicOrigin};
use crate::runtime::RuntimeError;

/// The `{instanceId}` path segment; anything that is not a UUID is simply not found.
pub struct InstanceId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for InstanceId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found())?;
        raw.parse().map(InstanceId).map_err(|_| not_found())
    }
}

fn not_found() -> AppError {
    AppError::not_found("instance_not_found", "No instance with this id exists on your account.")
}

/// The caller's instance, or 404 (also for other users' instances: their existence is not revealed).
pub async fn owned(state: &AppState, user: &AuthUser, id: Uuid) -> AppResult<InstanceRow> {
    repo::get_for_user(&state.db, id, user.user_id).await?.ok_or_else(not_found)
}

/// The caller's instance when it is `ready` to run commands and file operations; 409
/// `instance_not_running` otherwise.
pub async fn running(state: &AppState, user: &AuthUser, id: Uuid) -> AppResult<InstanceRow> {
    let instance = owned(state, user, id).await?;
    if instance.status() != InstanceStatus::Ready {
        return Err(AppError::conflict(
            "instance_not_running",
            format!("The instance is {}; it must be ready (start it with POST /api/instances/{id}/start).", instance.status),
        ));
    }
    Ok(instance)
}

/// List instances
///
/// The caller's instances, newest first (a bare JSON array).
#[utoipa::path(get, path = "/api/instances", tag = "instances",
    responses(
        (status = 200, description = "Instances", body = [Instance]),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, user: AuthUser) -> AppResult<Json<Vec<Instance>>> {
    let rows = repo::list_for_user(&state.db, user.user_id).await?;
    Ok(Json(rows.into_iter().map(Instance::from).collect()))
}

/// Create an instance
///
/// Answers at once with `201`, a `Location` header and `status: "provisioning"`; the sandbox
/// container is created and started in the background and the instance turns `ready` when its
/// agent gateway answers (or `error`, with `last_error`). Needs an active subscription or an
/// `invite_code` (redeemed on the spot). The body is optional.
#[utoipa::path(post, path = "/api/instances", tag = "instances",
    request_body(content = CreateInstanceRequest, description = "Optional"),
    responses(
        (status = 201, description = "Created; provisioning in the background", body = Instance,
            headers(("Location" = String, description = "URL of the new instance"))),
        (status = 400, description = "Bad JSON or name", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "`subscription_required`, `invalid_invite_code` or `instance_limit_reached`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 503, description = "`capacity_exhausted`; see `Retry-After`", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    origin: PublicOrigin,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<CreateInstanceRequest>,
) -> AppResult<Response> {
    let row = access::admit_and_insert(&state, user.user_id, body.invite_code.as_deref(), body.name.as_deref()).await?;
    lifecycle::spawn_drive(&state, row.id);
    let location = origin.url(&format!("/api/instances/{}", row.id));
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(Instance::from(row))).into_response())
}

/// Inspect an instance
///
/// The stored state of one of the caller's instances.
#[utoipa::path(get, path = "/api/instances/{instanceId}", tag = "instances",
    params(("instanceId" = Uuid, Path, description = "Instance id")),
    responses(
        (status = 200, description = "The instance", body = Instance),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
    ))]
pub async fn get(State(state): State<AppState>, user: AuthUser, InstanceId(id): InstanceId) -> AppResult<Json<Instance>> {
    Ok(Json(owned(&state, &user, id).await?.into()))
}

/// Delete an instance
///
/// Removes the sandbox container and its workspace volume, then the instance: `204`. If the
/// container engine cannot be reached the instance stays `deleting` (`202`) and removal is retried.
#[utoipa::path(delete, path = "/api/instances/{instanceId}", tag = "instances",
    params(("instanceId" = Uuid, Path, description = "Instance id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 202, description = "Deletion continues in the background", body = Instance),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
    ))]
pub async fn delete(State(state): State<AppState>, user: AuthUser, InstanceId(id): InstanceId) -> AppResult<Response> {
    let instance = owned(&state, &user, id).await?;
    let all_but_deleting = [
        InstanceStatus::Provisioning,
        InstanceStatus::Ready,
        InstanceStatus::Rebooting,
        InstanceStatus::Stopping,
        InstanceStatus::Stopped,
        InstanceStatus::Error,
    ];
    let instance = repo::transition(&state.db, id, &all_but_deleting, InstanceStatus::Deleting, None).await?.unwrap_or(instance);
    state.drivers.cancel(id);
    match lifecycle::remove(&state, &instance).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(_) => Ok((StatusCode::ACCEPTED, Json(Instance::from(instance))).into_response()),
    }
}

async fn change_state(state: &AppState, user: &AuthUser, id: Uuid, from: &[InstanceStatus], to: InstanceStatus, verb: &str) -> AppResult<(StatusCode, Json<Instance>)> {
    let instance = owned(state, user, id).await?;
    let Some(moved) = repo::transition(&state.db, id, from, to, None).await? else {
        let allowed: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        return Err(AppError::conflict(
            "invalid_state",
            format!("The instance is {}; {verb} needs it to be {}.", instance.status, allowed.join(" or ")),
        ));
    };
    lifecycle::spawn_drive(state, id);
    Ok((StatusCode::ACCEPTED, Json(moved.into())))
}

/// Reboot an instance
///
/// Restarts the sandbox container (the workspace is kept): `rebooting`, then `ready`.
#[utoipa::path(post, path = "/api/instances/{instanceId}/reboot", tag = "instances",
    params(("instanceId" = Uuid, Path, description = "Instance id")),
    responses(
        (status = 202, description = "Rebooting", body = Instance),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_state`: only `ready` or `error` instances reboot", body = ErrorBody),
    ))]
pub async fn reboot(State(state): State<AppState>, user: AuthUser, InstanceId(id): InstanceId) -> AppResult<(StatusCode, Json<Instance>)> {
    change_state(&state, &user, id, &[InstanceStatus::Ready, InstanceStatus::Error], InstanceStatus::Rebooting, "reboot").await
}

/// Shut an instance down
///
/// Stops the sandbox container (the workspace is kept): `stopping`, then `stopped`.
#[utoipa::path(post, path = "/api/instances/{instanceId}/shutdown", tag = "instances",
    params(("instanceId" = Uuid, Path, description = "Instance id")),
    responses(
        (status = 202, description = "Stopping", body = Instance),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_state`: already stopped, stopping or deleting", body = ErrorBody),
    ))]
pub async fn shutdown(State(state): State<AppState>, user: AuthUser, InstanceId(id): InstanceId) -> AppResult<(StatusCode, Json<Instance>)> {
    let from = [InstanceStatus::Ready, InstanceStatus::Error, InstanceStatus::Provisioning, InstanceStatus::Rebooting];
    change_state(&state, &user, id, &from, InstanceStatus::Stopping, "shutdown").await
}

/// Start an instance
///
/// Starts a stopped (or failed) instance again: `provisioning`, then `ready`.
#[utoipa::path(post, path = "/api/instances/{instanceId}/start", tag = "instances",
    params(("instanceId" = Uuid, Path, description = "Instance id")),
    responses(
        (status = 202, description = "Starting", body = Instance),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_state`: only `stopped` or `error` instances start", body = ErrorBody),
    ))]
pub async fn start(State(state): State<AppState>, user: AuthUser, InstanceId(id): InstanceId) -> AppResult<(StatusCode, Json<Instance>)> {
    change_state(&state, &user, id, &[InstanceStatus::Stopped, InstanceStatus::Error], InstanceStatus::Provisioning, "start").await
}

/// Live status of an instance
///
/// The stored status plus what the container engine and the agent gateway say right now.
#[utoipa::path(get, path = "/api/instances/{instanceId}/status", tag = "instances",
    params(("instanceId" = Uuid, Path, description = "Instance id")),
    responses(
        (status = 200, description = "Status", body = InstanceStatusView),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
    ))]
pub async fn status(State(state): State<AppState>, user: AuthUser, InstanceId(id): InstanceId) -> AppResult<Json<InstanceStatusView>> {
    let instance = owned(&state, &user, id).await?;
    let (container, running, ip) = match state.runtime.inspect(&instance.sandbox_id).await {
        Ok(info) => {
            let view = ContainerStatus { state: info.state.clone(), started_at: info.started_at, exit_code: info.exit_code };
            (view, info.running, info.ip)
        }
        Err(RuntimeError::NotFound(_)) => (ContainerStatus { state: "missing".into(), started_at: None, exit_code: None }, false, None),
        Err(error) => return Err(AppError::new(StatusCode::SERVICE_UNAVAILABLE, "runtime_unavailable", format!("The container engine did not answer: {error}"))),
    };
    let agent_ready = match ip {
        Some(ip) if running => gateway_ready(&state.http, ip).await,
        _ => false,
    };
    let uptime_ms = container.started_at.map(|at| (Utc::now() - at).num_milliseconds().max(0)).unwrap_or(0);
    let resources = if running {
        state.runtime.resources(&instance.sandbox_id).await.ok().map(|r| ResourceUsage {
            cpu_percent: (r.cpu_percent * 100.0).round() / 100.0,
            memory_bytes: r.memory_bytes,
            memory_limit_bytes: r.memory_limit_bytes,
        })
    } else {
        None
    };
    Ok(Json(InstanceStatusView {
        id: instance.id,
        status: instance.status(),
        container,
        agent: AgentStatus { ready: agent_ready },
        uptime_ms,
        resources,
        last_error: instance.last_error,
    }))
}

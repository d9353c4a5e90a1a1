//! HTTP handlers of the instance lifecycle API (`/api/instances…`).

use super::access;
use super::extract::OwnedInstance;
use super::lifecycle;
use super::machine::{self, Op};
use super::models::*;
use crate::audit::AuditAction;
use crate::auth::AuthUser;
use crate::error::{AppResult, ErrorBody};
use crate::extract::{ApiJsonOrEmpty, ClientAddr, PublicOrigin};
use crate::runtime::RuntimeError;
use crate::state::{AppState, CachedJson};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

/// List instances
///
/// The caller's instances, newest first (a bare JSON array).
#[utoipa::path(get, path = "/api/instances", tag = "instances",
    responses(
        (status = 200, description = "Instances", body = [Instance]),
    ))]
pub async fn list(State(state): State<AppState>, user: AuthUser) -> AppResult<CachedJson> {
    super::lists::listed(&state.db, &state.instance_lists, user.user_id).await
}

/// Create an instance
///
/// Answers at once with `201`, a `Location` header and `status: "provisioning"`; the sandbox
/// container is created and started in the background and the instance turns `ready` when its
/// agent gateway answers (or `error`, with `last_error`). When the server keeps a warm pool
/// (`OCAAS_WARM_POOL`), the answer is `status: "ready"`: a sandbox started beforehand, never
/// used by anyone, becomes the caller's. With `from_snapshot` the new instance is a clone: its
/// storage starts with that snapshot's contents (it has its own tokens; counted like any other). Needs an active subscription or an
/// `invite_code` (redeemed on the spot). The body is optional.
#[utoipa::path(post, path = "/api/instances", tag = "instances",
    request_body(content = CreateInstanceRequest, description = "Optional"),
    responses(
        (status = 201, description = "Created; provisioning in the background", body = Instance,
            headers(("Location" = String, description = "URL of the new instance"))),
        (status = 400, description = "Bad JSON or name", body = ErrorBody),
        (status = 403, description = "`subscription_required`, `invalid_invite_code` or `instance_limit_reached`", body = ErrorBody),
        (status = 404, description = "`snapshot_not_found`: `from_snapshot` is not one of yours", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 503, description = "`capacity_exhausted`; see `Retry-After`", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    origin: PublicOrigin,
    client: ClientAddr,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<CreateInstanceRequest>,
) -> AppResult<Response> {
    let seed = match body.from_snapshot {
        Some(id) => Some(access::clone_source(&state, user.user_id, id).await?),
        None => None,
    };
    let request = access::Admission { invite_code: body.invite_code.as_deref(), name: body.name.as_deref(), seed, org_id: body.org_id };
    let row = access::admit_and_insert(&state, user.user_id, &request).await?;
    crate::audit::record_action(&state.db, AuditAction::InstanceCreated, &user, client.as_deref(), Some(row.id.to_string())).await?;
    // A sandbox from the warm pool is ready already; a new one is provisioned in the background.
    if row.status == InstanceStatus::Provisioning {
        lifecycle::spawn_drive(&state, row.id);
    }
    let location = origin.url(&format!("/api/instances/{}", row.id));
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(Instance::from(row))).into_response())
}

/// Inspect an instance
///
/// The stored state of one of the caller's instances.
#[utoipa::path(get, path = "/api/instances/{instanceId}", tag = "instances",
    params(OwnedInstance),
    responses(
        (status = 200, description = "The instance", body = Instance),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
    ))]
pub async fn get(OwnedInstance { instance, .. }: OwnedInstance) -> Json<Instance> {
    Json(instance.into())
}

/// Delete an instance
///
/// Removes the sandbox container and its workspace volume, then the instance: `204`. If the
/// container engine cannot be reached the instance stays `deleting` (`202`) and removal is retried.
#[utoipa::path(delete, path = "/api/instances/{instanceId}", tag = "instances",
    params(OwnedInstance),
    responses(
        (status = 204, description = "Deleted"),
        (status = 202, description = "Deletion continues in the background", body = Instance),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
    ))]
pub async fn delete(State(state): State<AppState>, OwnedInstance { instance, user }: OwnedInstance, client: ClientAddr) -> AppResult<Response> {
    crate::audit::record_action(&state.db, AuditAction::InstanceDeleted, &user, client.as_deref(), Some(instance.id.to_string())).await?;
    let instance = machine::apply(&state.db, instance.id, Op::Delete).await?.unwrap_or(instance);
    // A driver still at work (a provision under way, in any process) lets go before the
    // sandbox is removed.
    state.drivers.cancel_everywhere(instance.id).await;
    let held = state.drivers.hold(instance.id).await;
    let removed = lifecycle::remove(&state, &instance).await;
    drop(held);
    match removed {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(_) => Ok((StatusCode::ACCEPTED, Json(Instance::from(instance))).into_response()),
    }
}

/// Live status of an instance
///
/// The stored status plus what the container engine and the agent gateway say right now.
#[utoipa::path(get, path = "/api/instances/{instanceId}/status", tag = "instances",
    params(OwnedInstance),
    responses(
        (status = 200, description = "Status", body = InstanceStatusView),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
    ))]
pub async fn status(State(state): State<AppState>, OwnedInstance { instance, .. }: OwnedInstance) -> AppResult<Json<InstanceStatusView>> {
    let node = crate::nodes::repo::node_of_instance(&state.db, instance.id, crate::nodes::FRESH_SECS).await?;
    let (container, running) = match state.runtime.inspect(&instance.sandbox_id).await {
        Ok(info) => {
            let view = ContainerStatus { state: SandboxState::of(&info), started_at: info.started_at, exit_code: info.exit_code };
            // A frozen gateway would not answer: not asked.
            (view, info.running && !info.paused)
        }
        Err(RuntimeError::NotFound(_)) => (ContainerStatus { state: SandboxState::Missing, started_at: None, exit_code: None }, false),
        // Its node does not answer: said here (`node.reachable`), not an error of this call.
        Err(RuntimeError::Unavailable(_)) if node.is_some() => {
            (ContainerStatus { state: SandboxState::Unreachable, started_at: None, exit_code: None }, false)
        }
        Err(error) => return Err(error.into()),
    };
    let agent_ready = match running {
        true => crate::runtime::dial::gateway_ready(state.runtime.as_ref(), &instance.sandbox_id).await,
        false => false,
    };
    let upgrade = match (instance.status, &instance.upgrade_from_image) {
        (InstanceStatus::Upgrading | InstanceStatus::RollingBack, Some(from)) => {
            let (from_image, to_image) = if instance.status == InstanceStatus::Upgrading {
                (from.clone(), instance.image.clone())
            } else {
                (instance.image.clone(), from.clone())
            };
            Some(UpgradeProgress { from_image, to_image })
        }
        _ => None,
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
    let disk = state
        .runtime
        .disk_usage(&super::lifecycle::disk_spec(&state, &instance))
        .await
        .and_then(|usage| Some(DiskUsageView { used_bytes: usage.used_bytes, limit_bytes: usage.limit_bytes? }));
    Ok(Json(InstanceStatusView {
        id: instance.id,
        node: node.map(|(name, reachable)| NodePlacement { name, reachable }),
        status: instance.status,
        container,
        agent: AgentStatus { ready: agent_ready },
        uptime_ms,
        resources,
        disk,
        last_error: instance.last_error,
        upgrade,
    }))
}

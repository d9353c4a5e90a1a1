//! HTTP handlers of the instance's power actions — reboot, shutdown, start, pause, resume —
//! and of `PATCH` (label, `keep_awake`). Each is one `machine` op; refusals are 409
//! `invalid_state` naming the statuses the op needs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::extract::OwnedInstance;
use super::lifecycle;
use super::machine::{self, Op};
use super::models::*;
use super::power;
use super::repo::{self, Guard, InstanceRow};
use crate::audit::AuditAction;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ClientAddr};
use crate::state::AppState;

/// Makes the op's status change, starts the work it calls for and records it in the audit log.
async fn drive_op(
    state: &AppState,
    owned: OwnedInstance,
    client: ClientAddr,
    op: Op,
    action: AuditAction,
) -> AppResult<(StatusCode, Json<Instance>)> {
    let OwnedInstance { instance, user } = owned;
    let Some(moved) = machine::apply(&state.db, instance.id, op).await? else {
        let now = repo::get(&state.db, instance.id).await?.unwrap_or(instance);
        return Err(machine::refusal(&now, op));
    };
    lifecycle::spawn_drive(state, instance.id);
    crate::audit::record_action(&state.db, action, &user, client.as_deref(), Some(instance.id.to_string())).await?;
    Ok((StatusCode::ACCEPTED, Json(moved.into())))
}

/// Reboot an instance
///
/// Restarts the sandbox container (the workspace is kept): `rebooting`, then `ready`.
#[utoipa::path(post, path = "/api/instances/{instanceId}/reboot", tag = "instances",
    params(OwnedInstance),
    responses(
        (status = 202, description = "Rebooting", body = Instance),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_state`: only `ready`, `paused` or `error` instances reboot", body = ErrorBody),
    ))]
pub async fn reboot(State(state): State<AppState>, owned: OwnedInstance, client: ClientAddr) -> AppResult<(StatusCode, Json<Instance>)> {
    drive_op(&state, owned, client, Op::Reboot, AuditAction::InstanceRebooted).await
}

/// Shut an instance down
///
/// Stops the sandbox container (the workspace is kept): `stopping`, then `stopped`.
#[utoipa::path(post, path = "/api/instances/{instanceId}/shutdown", tag = "instances",
    params(OwnedInstance),
    responses(
        (status = 202, description = "Stopping", body = Instance),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_state`: already stopped, stopping or deleting", body = ErrorBody),
    ))]
pub async fn shutdown(State(state): State<AppState>, owned: OwnedInstance, client: ClientAddr) -> AppResult<(StatusCode, Json<Instance>)> {
    drive_op(&state, owned, client, Op::Shutdown, AuditAction::InstanceShutDown).await
}

/// Start an instance
///
/// Starts a stopped (or failed) instance again: `provisioning`, then `ready`. A paused one is
/// resumed (`ready` at once, every process where it was).
#[utoipa::path(post, path = "/api/instances/{instanceId}/start", tag = "instances",
    params(OwnedInstance),
    responses(
        (status = 202, description = "Starting", body = Instance),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_state`: only `stopped`, `paused` or `error` instances start", body = ErrorBody),
    ))]
pub async fn start(State(state): State<AppState>, owned: OwnedInstance, client: ClientAddr) -> AppResult<(StatusCode, Json<Instance>)> {
    // A paused instance's processes are all there: starting it is resuming it.
    if owned.instance.status == InstanceStatus::Paused {
        let resumed = power::resume(&state, &owned.instance, Op::Resume).await?;
        crate::audit::record_action(&state.db, AuditAction::InstanceStarted, &owned.user, client.as_deref(), Some(resumed.id.to_string())).await?;
        return Ok((StatusCode::ACCEPTED, Json(resumed.into())));
    }
    drive_op(&state, owned, client, Op::Start, AuditAction::InstanceStarted).await
}

/// Pause an instance
///
/// Freezes the sandbox: its processes keep their memory (and the agent its place in a long
/// task) but use no CPU. `ready` → `paused` at once (200). Any chat, file, command, terminal or
/// desktop call resumes it by itself (unless the server turned wake on use off), as does
/// `resume`.
#[utoipa::path(post, path = "/api/instances/{instanceId}/pause", tag = "instances",
    params(OwnedInstance),
    responses(
        (status = 200, description = "Paused", body = Instance),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_state`: only `ready` instances pause", body = ErrorBody),
    ))]
pub async fn pause(State(state): State<AppState>, OwnedInstance { instance, .. }: OwnedInstance) -> AppResult<Json<Instance>> {
    Ok(Json(power::pause(&state, &instance, Op::Pause, Guard::None).await?.into()))
}

/// Resume an instance
///
/// Thaws a paused instance: `paused` → `ready` at once (200), every process where it was.
#[utoipa::path(post, path = "/api/instances/{instanceId}/resume", tag = "instances",
    params(OwnedInstance),
    responses(
        (status = 200, description = "Running again", body = Instance),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_state`: only `paused` instances resume", body = ErrorBody),
    ))]
pub async fn resume(State(state): State<AppState>, OwnedInstance { instance, .. }: OwnedInstance) -> AppResult<Json<Instance>> {
    Ok(Json(power::resume(&state, &instance, Op::Resume).await?.into()))
}

/// Update an instance
///
/// Changes the label (`name`) and the pin (`keep_awake`: the idle policy never pauses or
/// stops a pinned instance). Absent fields are left as they are.
#[utoipa::path(patch, path = "/api/instances/{instanceId}", tag = "instances",
    params(OwnedInstance),
    request_body = UpdateInstanceRequest,
    responses(
        (status = 200, description = "The updated instance", body = Instance),
        (status = 400, description = "Bad JSON, unknown field or bad name", body = ErrorBody),
        (status = 403, description = "`keep_awake_limit` or `csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    OwnedInstance { instance, user }: OwnedInstance,
    ApiJson(body): ApiJson<UpdateInstanceRequest>,
) -> AppResult<Json<Instance>> {
    let name = body.name.as_deref().map(super::access::check_name).transpose()?;
    let pinning = body.keep_awake == Some(true) && !instance.keep_awake;
    let allowed = if pinning { Some(super::idle::keep_awake_allowance(&state, user.user_id).await?) } else { None };
    let updated = update_within(&state.db, user.user_id, instance.id, name, body.keep_awake, allowed).await?;
    Ok(Json(updated.into()))
}

/// Renames and pins or unpins; a pin only while the user has fewer than `allowed` others.
async fn update_within(
    db: &sqlx::PgPool,
    user_id: uuid::Uuid,
    id: uuid::Uuid,
    name: Option<Option<&str>>,
    keep_awake: Option<bool>,
    allowed: Option<u32>,
) -> AppResult<InstanceRow> {
    let mut tx = db.begin().await?;
    if let Some(allowed) = allowed {
        crate::db::lock_user(&mut tx, user_id).await?;
        if repo::count_kept_awake(&mut *tx, user_id, id).await? >= i64::from(allowed) {
            return Err(AppError::new(
                ErrorCode::KeepAwakeLimit,
                format!("Your plan lets you keep {allowed} instance(s) awake; unpin another one first."),
            ));
        }
    }
    let updated = repo::update(&mut *tx, id, name, keep_awake).await?.ok_or_else(crate::extract::instance_not_found)?;
    tx.commit().await?;
    Ok(updated)
}

/// Upgrade an instance
///
/// Moves the instance to the server's current sandbox image, keeping its data: a snapshot
/// first (kind `upgrade`), then the container is recreated on the new image and must pass a
/// health gate (gateway ready, a chat turn answered). If it does not, the instance goes back
/// to its old image and the snapshot — `rolling_back`, then `ready` with `last_error` and a
/// system message in its chat. `202`; `status` shows the progress.
#[utoipa::path(post, path = "/api/instances/{instanceId}/upgrade", tag = "instances",
    params(OwnedInstance),
    responses(
        (status = 202, description = "Upgrading", body = Instance),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_state`: already on the server's image, or busy", body = ErrorBody),
    ))]
pub async fn upgrade(State(state): State<AppState>, OwnedInstance { instance, .. }: OwnedInstance) -> AppResult<(StatusCode, Json<Instance>)> {
    let image = state.settings.instances.image.clone();
    let upgrading = super::upgrade::begin(&state, instance.id, &image).await?;
    Ok((StatusCode::ACCEPTED, Json(upgrading.into())))
}

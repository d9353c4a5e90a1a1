//! HTTP handlers of snapshots (`/api/instances/{instanceId}/snapshots…`) and restore.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::models::*;
use super::repo::{self, SnapshotRow};
use super::service;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiJsonOrEmpty, ApiPath};
use crate::instances::extract::OwnedInstance;
use crate::instances::models::Instance;
use crate::state::AppState;

/// The snapshot `{snapshotId}` of the caller's instance (whoever took it: an organisation's
/// members share its instance's snapshots), else 404 `snapshot_not_found`.
async fn owned_snapshot(state: &AppState, owned: &OwnedInstance, snapshot_id: Uuid) -> AppResult<SnapshotRow> {
    repo::get(&state.db, snapshot_id)
        .await?
        .filter(|s| s.instance_id == owned.instance.id)
        .ok_or_else(|| AppError::new(ErrorCode::SnapshotNotFound, "This instance has no snapshot with that id."))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case)]
pub struct SnapshotPath {
    /// Instance id
    #[allow(dead_code)]
    instanceId: Uuid,
    /// Snapshot id
    snapshotId: Uuid,
}

/// List snapshots
///
/// The instance's snapshots, newest first (a bare JSON array).
#[utoipa::path(get, path = "/api/instances/{instanceId}/snapshots", tag = "snapshots", operation_id = "list_snapshots",
    params(OwnedInstance),
    responses(
        (status = 200, description = "Snapshots", body = [Snapshot]),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, OwnedInstance { instance, .. }: OwnedInstance) -> AppResult<Json<Vec<Snapshot>>> {
    Ok(Json(repo::list_for_instance(&state.db, instance.id).await?.into_iter().map(Snapshot::from).collect()))
}

/// Take a snapshot
///
/// Captures `/workspace` and the agent's state (memory, sessions, skills) consistently: a
/// running instance is frozen for the copy (a turn in progress waits, then goes on), then
/// answers `201` with the `ready` snapshot, its compressed size and SHA-256. Counts against
/// the account's snapshot storage (403 `snapshot_quota_exceeded`).
#[utoipa::path(post, path = "/api/instances/{instanceId}/snapshots", tag = "snapshots", operation_id = "create_snapshot",
    params(OwnedInstance),
    request_body(content = CreateSnapshot, description = "Optional"),
    responses(
        (status = 201, description = "Taken", body = Snapshot),
        (status = 400, description = "Bad JSON or name", body = ErrorBody),
        (status = 403, description = "`snapshot_quota_exceeded` or `csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_state`: the instance is being created, changed or deleted", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    OwnedInstance { instance, .. }: OwnedInstance,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<CreateSnapshot>,
) -> AppResult<(StatusCode, Json<Snapshot>)> {
    let name = body.name.as_deref().map(crate::instances::access::check_name).transpose()?.flatten();
    if instance.status.is_transitional() || instance.status == crate::instances::models::InstanceStatus::Error {
        return Err(AppError::new(
            ErrorCode::InvalidState,
            format!("The instance is {}; snapshots are taken of ready, paused or stopped instances.", instance.status),
        ));
    }
    let snapshot = service::take(&state, &instance, SnapshotKind::Manual, name).await?;
    Ok((StatusCode::CREATED, Json(snapshot.into())))
}

/// Delete a snapshot
///
/// Removes the snapshot and its archive: `204`. The space counts no more against the quota.
#[utoipa::path(delete, path = "/api/instances/{instanceId}/snapshots/{snapshotId}", tag = "snapshots", operation_id = "delete_snapshot",
    params(SnapshotPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `snapshot_not_found`", body = ErrorBody),
    ))]
pub async fn delete(State(state): State<AppState>, owned: OwnedInstance, ApiPath(path): ApiPath<SnapshotPath>) -> AppResult<StatusCode> {
    let snapshot = owned_snapshot(&state, &owned, path.snapshotId).await?;
    service::delete(&state, &snapshot).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Download a snapshot
///
/// The archive as stored: a gzip-compressed tar with `workspace/` and `state/`, streamed, with
/// its `Content-Length`; its SHA-256 is the snapshot's `sha256`.
#[utoipa::path(get, path = "/api/instances/{instanceId}/snapshots/{snapshotId}/download", tag = "snapshots", operation_id = "download_snapshot",
    params(SnapshotPath),
    responses(
        (status = 200, description = "The archive", content_type = "application/gzip", body = crate::binary::Binary),
        (status = 404, description = "`instance_not_found` or `snapshot_not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_state`: the snapshot is not ready", body = ErrorBody),
    ))]
pub async fn download(State(state): State<AppState>, owned: OwnedInstance, ApiPath(path): ApiPath<SnapshotPath>) -> AppResult<Response> {
    let snapshot = owned_snapshot(&state, &owned, path.snapshotId).await?;
    if snapshot.status != SnapshotStatus::Ready {
        return Err(AppError::new(ErrorCode::InvalidState, format!("The snapshot is {}.", snapshot.status.as_str())));
    }
    let reader = service::open(&state, &snapshot).await?;
    let file_name = format!("snapshot-{}.tar.gz", snapshot.id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_owned()),
            (header::CONTENT_LENGTH, snapshot.size_bytes.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file_name}\"")),
        ],
        Body::from_stream(reader),
    )
        .into_response())
}

/// Restore a snapshot
///
/// Puts a snapshot of this instance back: a `safety` snapshot of the current contents is taken
/// first, then the instance is `restoring` (its container stopped, storage replaced, started
/// again) and `ready` when its gateway answers: `202`.
#[utoipa::path(post, path = "/api/instances/{instanceId}/restore", tag = "snapshots", operation_id = "restore_snapshot",
    params(OwnedInstance),
    request_body = RestoreRequest,
    responses(
        (status = 202, description = "Restoring", body = Instance),
        (status = 400, description = "Bad JSON", body = ErrorBody),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `snapshot_not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_state`: the instance is busy or the snapshot not ready", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn restore(
    State(state): State<AppState>,
    owned: OwnedInstance,
    ApiJson(body): ApiJson<RestoreRequest>,
) -> AppResult<(StatusCode, Json<Instance>)> {
    let snapshot = owned_snapshot(&state, &owned, body.snapshot_id).await?;
    if snapshot.status != SnapshotStatus::Ready {
        return Err(AppError::new(ErrorCode::InvalidState, format!("The snapshot is {}.", snapshot.status.as_str())));
    }
    let restoring = crate::instances::restore::begin(&state, &owned.instance, &snapshot).await?;
    Ok((StatusCode::ACCEPTED, Json(restoring.into())))
}

//! Putting a snapshot into an instance's storage: a restore into the same instance (after a
//! safety snapshot), and the seeding of a clone before its first start. The storage is only
//! written while the container is stopped, under the instance's lock.

use tokio_util::sync::CancellationToken;

use super::lifecycle::{self, DriveError, disk_spec};
use super::machine::{self, Extra, Op};
use super::repo::InstanceRow;
use crate::error::AppResult;
use crate::snapshots::models::SnapshotKind;
use crate::snapshots::repo::{self as snapshot_repo, SnapshotRow};
use crate::snapshots::service;
use crate::state::AppState;

/// Takes a safety snapshot of the current contents, then moves the instance to `restoring`
/// with `snapshot` pending and starts the driver.
pub async fn begin(state: &AppState, instance: &InstanceRow, snapshot: &SnapshotRow) -> AppResult<InstanceRow> {
    let held = state.drivers.hold(instance.id).await;
    let current = machine::allowing(&state.db, instance.id, Op::Restore).await?;
    let name = format!("before restoring {}", snapshot.id);
    service::take_locked(state, &current, SnapshotKind::Safety, Some(&name)).await?;
    let extra = Extra { pending_snapshot: Some(snapshot.id), ..Extra::default() };
    let restoring = machine::apply_with(&state.db, instance.id, Op::Restore, extra).await?.ok_or_else(|| machine::refusal(&current, Op::Restore))?;
    drop(held);
    lifecycle::spawn_drive(state, instance.id);
    Ok(restoring)
}

/// The driver of `restoring`: container stopped, storage replaced, container started again.
pub async fn restore(state: &AppState, instance: &InstanceRow, token: &CancellationToken) -> Result<(), DriveError> {
    let snapshot = pending(state, instance).await?.ok_or_else(|| DriveError::Failed("the snapshot to restore is gone".into()))?;
    lifecycle::stop_container(state, &instance.sandbox_id).await?;
    unpack(state, instance, &snapshot).await?;
    lifecycle::start_and_wait(state, instance, token).await?;
    machine::apply(&state.db, instance.id, Op::Restored).await.map_err(failed)?;
    Ok(())
}

/// A clone's first start: its source snapshot goes into the fresh storage.
pub async fn seed(state: &AppState, instance: &InstanceRow) -> Result<(), DriveError> {
    if let Some(snapshot) = pending(state, instance).await? {
        unpack(state, instance, &snapshot).await?;
    }
    Ok(())
}

async fn pending(state: &AppState, instance: &InstanceRow) -> Result<Option<SnapshotRow>, DriveError> {
    // Who may use it was decided when the operation was admitted (`access::clone_source`, the
    // restore's instance): an organisation's snapshot may be another member's.
    let Some(id) = instance.pending_snapshot_id else { return Ok(None) };
    snapshot_repo::get(&state.db, id).await.map_err(failed)
}

/// Replaces the storage's contents with the snapshot's.
pub async fn unpack(state: &AppState, instance: &InstanceRow, snapshot: &SnapshotRow) -> Result<(), DriveError> {
    let disk = disk_spec(state, instance);
    state.runtime.prepare_storage(&disk).await?;
    service::unpack_into(state, snapshot, &disk).await.map_err(|e| DriveError::Failed(format!("restoring snapshot {}: {e:#}", snapshot.id)))
}

pub fn failed(error: impl std::fmt::Display) -> DriveError {
    DriveError::Failed(error.to_string())
}

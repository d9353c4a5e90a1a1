//! Moving an existing instance's storage to what the settings say now (`ocaas admin instances
//! migrate-storage`): its recorded facts never change by themselves (`facts`), so this is the
//! one explicit way from a plain directory to a quota'd image, or to another quota. It is a
//! restore in disguise: a safety snapshot of the contents, the container removed, the new
//! storage recorded (in a new directory beside the old one), and the instance `restoring`
//! from that snapshot — which the server's driver finishes (new storage made, contents
//! unpacked, container started) as for any restore. The old storage goes once nothing points
//! at it; the data is in the snapshot throughout.

use std::path::Path;

use super::facts::Facts;
use super::machine::{self, Extra, Op};
use super::repo::{self, InstanceRow};
use crate::error::{AppError, AppResult};
use crate::snapshots::models::SnapshotKind;
use crate::snapshots::service;
use crate::state::AppState;

/// What the move will make, or `None` when the instance already has that storage.
pub fn target(state: &AppState, instance: &InstanceRow) -> Option<Facts> {
    let old = Facts::of(instance, &state.settings.instances);
    let wanted = Facts::for_new(&state.settings.instances, &instance.sandbox_id);
    if (wanted.storage_kind, wanted.disk_quota_bytes) == (old.storage_kind, old.disk_quota_bytes) {
        return None;
    }
    // Beside the old storage (where the instance lives does not change), under a new name so
    // the new image is never mounted over the old files; limits stay as recorded.
    let parent = Path::new(&old.storage_dir).parent().unwrap_or(Path::new("/"));
    let name = format!("{}-{}", instance.sandbox_id, chrono::Utc::now().timestamp_millis());
    let storage_dir = parent.join(name).to_string_lossy().into_owned();
    Some(Facts { storage_dir, memory_bytes: old.memory_bytes, nano_cpus: old.nano_cpus, pids: old.pids, ..wanted })
}

/// Starts the move (see the module); `Ok(None)` when there is nothing to move.
pub async fn begin(state: &AppState, id: uuid::Uuid) -> AppResult<Option<InstanceRow>> {
    let held = state.drivers.hold(id).await;
    let current = machine::allowing(&state.db, id, Op::Restore).await?;
    let Some(new) = target(state, &current) else { return Ok(None) };
    let old = Facts::of(&current, &state.settings.instances);
    let name = format!("before moving its storage to {}", describe(&new));
    let snapshot = service::take_locked(state, &current, SnapshotKind::Safety, Some(&name)).await?;
    state.runtime.remove_container(&current.sandbox_id).await?;
    if !repo::set_storage(&state.db, id, &new).await? {
        return Err(AppError::Internal(anyhow::anyhow!("the instance's storage could not be recorded")));
    }
    let extra = Extra { pending_snapshot: Some(snapshot.id), ..Extra::default() };
    let moving = machine::apply_with(&state.db, id, Op::Restore, extra).await?.ok_or_else(|| machine::refusal(&current, Op::Restore))?;
    // The container is gone already; this releases the old storage only.
    state.runtime.remove_sandbox(&current.sandbox_id, &old.disk()).await?;
    drop(held);
    Ok(Some(moving))
}

pub fn describe(facts: &Facts) -> String {
    match facts.storage_kind {
        super::models::StorageKind::Image => format!("an image of {} MiB", facts.disk_quota_bytes >> 20),
        super::models::StorageKind::Directory => "a plain directory".to_owned(),
    }
}

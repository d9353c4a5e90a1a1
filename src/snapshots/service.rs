//! Taking, reading and deleting snapshots. A snapshot is consistent: a running instance is
//! frozen (the engine's pause) while its storage is copied, so no file is caught half-written
//! and a turn in progress just waits; a paused or stopped one is copied as it is. Packing and
//! unpacking run on the blocking pool, a few at a time.

use std::sync::Arc;

use tokio::sync::Semaphore;
use uuid::Uuid;

use super::archive;
use super::models::{SnapshotKind, SnapshotStatus};
use super::repo::{self, NewSnapshot, SnapshotRow};
use super::store::{self, LocalStore, SnapshotStore};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::instances::lifecycle::disk_spec;
use crate::instances::models::InstanceStatus;
use crate::instances::repo::InstanceRow;
use crate::state::AppState;

/// How long a snapshot waits for commands and file operations to finish before it copies a
/// running sandbox without freezing it.
const FREEZE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Archives packed or unpacked at once on the blocking pool.
static ARCHIVE_WORK: Semaphore = Semaphore::const_new(2);

pub fn store(state: &AppState) -> Arc<dyn SnapshotStore> {
    Arc::new(LocalStore::new(&state.settings.snapshots.root))
}

/// Refuses a user snapshot past the user's snapshot storage quota.
async fn check_quota(state: &AppState, user_id: Uuid) -> AppResult<()> {
    let (used, plan) = repo::usage_and_quota(&state.db, user_id).await?;
    let quota = plan.map_or(state.settings.snapshots.quota_bytes, |q| q.max(0) as u64);
    if used.max(0) as u64 >= quota {
        return Err(AppError::new(
            ErrorCode::SnapshotQuotaExceeded,
            format!("Your snapshots use {used} of the {quota} bytes your plan allows; delete some first."),
        ));
    }
    Ok(())
}

/// Takes a snapshot, holding the instance's lock (see `take_locked`).
pub async fn take(state: &AppState, instance: &InstanceRow, kind: SnapshotKind, name: Option<&str>) -> AppResult<SnapshotRow> {
    let _held = state.drivers.hold(instance.id).await;
    // The status may have changed while waiting for the lock.
    let instance = crate::instances::repo::get(&state.db, instance.id).await?.ok_or_else(crate::extract::instance_not_found)?;
    take_locked(state, &instance, kind, name).await
}

/// Takes a snapshot; the caller holds the instance's lock. User snapshots count against the
/// quota; safety and upgrade snapshots are always taken (they protect the user's data).
pub async fn take_locked(state: &AppState, instance: &InstanceRow, kind: SnapshotKind, name: Option<&str>) -> AppResult<SnapshotRow> {
    let user_id = instance.user_id.ok_or_else(crate::extract::instance_not_found)?;
    if matches!(kind, SnapshotKind::Manual | SnapshotKind::Scheduled) {
        check_quota(state, user_id).await?;
    }
    let new = NewSnapshot { instance_id: instance.id, user_id, name, kind, image: &instance.image };
    let row = repo::insert(&state.db, &new).await?;
    let disk = disk_spec(state, &instance.sandbox_id);
    state.runtime.prepare_storage(&disk).await?;
    // Frozen only once no command or file operation works in it (those wait meanwhile); a
    // sandbox that stays busy is copied as it runs.
    let freeze = instance.status == InstanceStatus::Ready && state.activity.freeze(instance.id, FREEZE_PATIENCE).await;
    if freeze && let Err(error) = state.runtime.pause(&instance.sandbox_id).await {
        state.activity.thaw(instance.id);
        return Err(error.into());
    }
    let (store, key, root) = (store(state), store::key(user_id, row.id), disk.dir.clone());
    let permit = ARCHIVE_WORK.acquire().await.expect("never closed");
    let packed = tokio::task::spawn_blocking(move || -> std::io::Result<archive::Packed> {
        let mut writer = store.create(&key)?;
        let packed = archive::pack(&root, &mut writer)?;
        writer.commit()?;
        Ok(packed)
    })
    .await;
    drop(permit);
    if freeze {
        let thawed = state.runtime.unpause(&instance.sandbox_id).await;
        state.activity.thaw(instance.id);
        thawed?;
    }
    let outcome = match packed {
        Ok(Ok(packed)) => repo::finish(&state.db, row.id, Ok((packed.size, &packed.sha256))).await?,
        Ok(Err(error)) => {
            tracing::warn!(id = %instance.id, %error, "snapshot failed");
            repo::finish(&state.db, row.id, Err(&error.to_string())).await?
        }
        Err(join) => repo::finish(&state.db, row.id, Err(&join.to_string())).await?,
    };
    let done = outcome.ok_or_else(|| AppError::new(ErrorCode::SnapshotNotFound, "The snapshot was deleted while it was taken."))?;
    if done.status == SnapshotStatus::Failed {
        return Err(AppError::Internal(anyhow::anyhow!("snapshot {} failed: {}", done.id, done.error.clone().unwrap_or_default())));
    }
    Ok(done)
}

/// Puts the snapshot's contents into the storage at `root` (replacing what is there).
pub async fn unpack_into(state: &AppState, snapshot: &SnapshotRow, root: std::path::PathBuf) -> anyhow::Result<()> {
    anyhow::ensure!(snapshot.status == SnapshotStatus::Ready, "snapshot {} is {}", snapshot.id, snapshot.status.as_str());
    let (store, key) = (store(state), store::key(snapshot.user_id, snapshot.id));
    let _permit = ARCHIVE_WORK.acquire().await.expect("never closed");
    let reader = store.open(&key)?;
    // Read asynchronously, unpacked on the blocking pool.
    let mut bridge = tokio_util::io::SyncIoBridge::new(reader);
    tokio::task::spawn_blocking(move || archive::unpack(&mut bridge, &root)).await??;
    Ok(())
}

/// The archive as a stream of chunks (a download).
pub async fn open(state: &AppState, snapshot: &SnapshotRow) -> AppResult<tokio_util::io::ReaderStream<Box<dyn tokio::io::AsyncRead + Send + Unpin>>> {
    let reader = store(state).open(&store::key(snapshot.user_id, snapshot.id)).map_err(|e| AppError::Internal(e.into()))?;
    Ok(tokio_util::io::ReaderStream::with_capacity(reader, 64 << 10))
}

/// Deletes the snapshot's archive, then its row.
pub async fn delete(state: &AppState, snapshot: &SnapshotRow) -> anyhow::Result<()> {
    let (store, key) = (store(state), store::key(snapshot.user_id, snapshot.id));
    tokio::task::spawn_blocking(move || store.delete(&key)).await??;
    repo::delete(&state.db, snapshot.id).await?;
    Ok(())
}

/// Deletes every snapshot of an instance being deleted (archives first, rows with it).
pub async fn delete_all_of(state: &AppState, instance_id: Uuid) -> anyhow::Result<()> {
    for snapshot in repo::list_for_instance(&state.db, instance_id).await? {
        delete(state, &snapshot).await?;
    }
    Ok(())
}

//! Taking, reading and deleting snapshots. A snapshot is consistent: a running instance is
//! frozen (the engine's pause) while its storage is copied, so no file is caught half-written
//! and a turn in progress just waits; a paused or stopped one is copied as it is. Packing and
//! unpacking run on the blocking pool, a few at a time.

use std::sync::Arc;

use tokio::sync::Semaphore;
use uuid::Uuid;

use super::models::{SnapshotKind, SnapshotStatus};
use super::repo::{self, NewSnapshot, SnapshotRow};
use super::store::{self, LocalStore, SnapshotStore};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::instances::lifecycle::disk_spec;
use crate::instances::models::InstanceStatus;
use crate::instances::repo::InstanceRow;
use crate::runtime::archive;
use crate::state::{AppState, KeyedLocks};

/// How long a snapshot waits for commands and file operations to finish before it copies a
/// running sandbox without freezing it.
const FREEZE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Archives packed or unpacked at once on the blocking pool, for all users together.
static ARCHIVE_WORK: Semaphore = Semaphore::const_new(2);

/// The longest a pack may take (and so the longest an instance stays frozen for one).
pub const PACK_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// One pack at a time per user: a user's second snapshot waits for the first instead of
/// taking the other global permit.
static USER_PACKS: std::sync::LazyLock<KeyedLocks<Uuid>> = std::sync::LazyLock::new(KeyedLocks::default);

/// The configured store: the bucket if there is one, else the local directory.
pub fn store(state: &AppState) -> Arc<dyn SnapshotStore> {
    match &state.settings.snapshots.s3 {
        Some(location) => Arc::new(super::s3::S3Store::new(location)),
        None => Arc::new(LocalStore::new(&state.settings.snapshots.root)),
    }
}

/// The user's snapshot storage: bytes used and the plan's quota.
async fn usage(state: &AppState, user_id: Uuid) -> AppResult<(u64, u64)> {
    let (used, plan) = repo::usage_and_quota(&state.db, user_id).await?;
    Ok((used.max(0) as u64, plan.map_or(state.settings.snapshots.quota_bytes, |q| q.max(0) as u64)))
}

/// How many bytes this snapshot may take. User snapshots: what is left of the quota (none
/// left: refused). Safety and upgrade snapshots protect the user's data, so they are taken
/// even past the quota, but no one of them may be larger than the whole quota.
async fn room_for(state: &AppState, user_id: Uuid, kind: SnapshotKind) -> AppResult<u64> {
    let (used, quota) = usage(state, user_id).await?;
    match kind {
        SnapshotKind::Manual | SnapshotKind::Scheduled if used >= quota => Err(AppError::new(
            ErrorCode::SnapshotQuotaExceeded,
            format!("Your snapshots use {used} of the {quota} bytes your plan allows; delete some first."),
        )),
        SnapshotKind::Manual | SnapshotKind::Scheduled => Ok(quota - used),
        _ => Ok(quota),
    }
}

/// Takes a snapshot, holding the instance's lock (see `take_locked`).
pub async fn take(state: &AppState, instance: &InstanceRow, kind: SnapshotKind, name: Option<&str>) -> AppResult<SnapshotRow> {
    let _held = state.drivers.hold(instance.id).await;
    // The status may have changed while waiting for the lock.
    let instance = crate::instances::repo::get(&state.db, instance.id).await?.ok_or_else(crate::extract::instance_not_found)?;
    take_locked(state, &instance, kind, name).await
}

/// Takes a snapshot; the caller holds the instance's lock. The user's turn and a global
/// permit are taken before the sandbox is frozen, so waiting for them never keeps it paused;
/// the archive stops past the room the quota leaves (`room_for`) or after `PACK_TIME_LIMIT`,
/// and then leaves nothing behind.
pub async fn take_locked(state: &AppState, instance: &InstanceRow, kind: SnapshotKind, name: Option<&str>) -> AppResult<SnapshotRow> {
    let user_id = instance.user_id.ok_or_else(crate::extract::instance_not_found)?;
    let _turn = USER_PACKS.lock(user_id).await;
    let max_bytes = room_for(state, user_id, kind).await?;
    let new = NewSnapshot { instance_id: instance.id, user_id, name, kind, image: &instance.image };
    let row = repo::insert(&state.db, &new).await?;
    let disk = disk_spec(state, instance);
    state.runtime.prepare_storage(&disk).await?;
    let permit = ARCHIVE_WORK.acquire().await.expect("never closed");
    // Frozen only once no command or file operation works in it (those wait meanwhile); a
    // sandbox that stays busy is copied as it runs, which the no-follow walk makes safe.
    let freeze = instance.status == InstanceStatus::Ready && state.activity.freeze(instance.id, FREEZE_PATIENCE).await;
    if freeze && let Err(error) = state.runtime.pause(&instance.sandbox_id).await {
        state.activity.thaw(instance.id);
        return Err(error.into());
    }
    let (store, key) = (store(state), store::key(user_id, row.id));
    let bounds = archive::Bounds { max_bytes, deadline: std::time::Instant::now() + PACK_TIME_LIMIT };
    // Made where the storage is (this host or its node), kept here.
    let made = state.runtime.pack_storage(&disk, bounds);
    let packed = tokio::task::spawn_blocking(move || keep(store.as_ref(), &key, made, max_bytes)).await;
    if freeze {
        let thawed = state.runtime.unpause(&instance.sandbox_id).await;
        state.activity.thaw(instance.id);
        thawed?;
    }
    drop(permit);
    finish(state, user_id, row.id, packed).await
}

/// Writes the archive into the store as it arrives, counting and hashing it here (whoever made
/// it), and stops past `max_bytes`. An error drops the writer, which removes the partial file.
fn keep(store: &dyn SnapshotStore, key: &str, mut made: archive::PackStream, max_bytes: u64) -> Result<archive::Packed, archive::PackError> {
    use futures_util::StreamExt;
    use sha2::Digest;
    use std::io::Write;
    let handle = tokio::runtime::Handle::current();
    let mut writer = store.create(key)?;
    let (mut size, mut hash) = (0u64, sha2::Sha256::new());
    while let Some(chunk) = handle.block_on(made.next()) {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > max_bytes {
            return Err(archive::PackError::TooLarge(max_bytes));
        }
        hash.update(&chunk);
        writer.write_all(&chunk)?;
    }
    writer.commit()?;
    Ok(archive::Packed { size, sha256: format!("{:x}", hash.finalize()) })
}

type PackOutcome = Result<Result<archive::Packed, archive::PackError>, tokio::task::JoinError>;

/// Records how a pack ended. One past its room leaves no row either: it was never kept.
async fn finish(state: &AppState, user_id: Uuid, id: Uuid, packed: PackOutcome) -> AppResult<SnapshotRow> {
    let outcome = match packed {
        Ok(Ok(packed)) => repo::finish(&state.db, id, Ok((packed.size, &packed.sha256))).await?,
        Ok(Err(archive::PackError::TooLarge(limit))) => {
            repo::delete(&state.db, id).await?;
            let (used, quota) = usage(state, user_id).await?;
            return Err(AppError::new(
                ErrorCode::SnapshotQuotaExceeded,
                format!("The snapshot grew past the {limit} bytes your snapshot storage has room for ({used} of {quota} used); it was not kept."),
            ));
        }
        Ok(Err(error)) => {
            tracing::warn!(%id, %error, "snapshot failed");
            repo::finish(&state.db, id, Err(&error.to_string())).await?
        }
        Err(join) => repo::finish(&state.db, id, Err(&join.to_string())).await?,
    };
    let done = outcome.ok_or_else(|| AppError::new(ErrorCode::SnapshotNotFound, "The snapshot was deleted while it was taken."))?;
    if done.status == SnapshotStatus::Failed {
        return Err(AppError::Internal(anyhow::anyhow!("snapshot {} failed: {}", done.id, done.error.clone().unwrap_or_default())));
    }
    Ok(done)
}

/// Puts the snapshot's contents into the instance's storage `disk` (replacing what is there),
/// wherever that storage is.
pub async fn unpack_into(state: &AppState, snapshot: &SnapshotRow, disk: &crate::runtime::disk::DiskSpec) -> anyhow::Result<()> {
    anyhow::ensure!(snapshot.status == SnapshotStatus::Ready, "snapshot {} is {}", snapshot.id, snapshot.status.as_str());
    let (store, key) = (store(state), store::key(snapshot.user_id, snapshot.id));
    let _permit = ARCHIVE_WORK.acquire().await.expect("never closed");
    let reader = store.open(&key)?;
    let archive = Box::pin(tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10));
    state.runtime.unpack_storage(disk, archive).await?;
    Ok(())
}

/// The archive as a stream of chunks (a download).
pub async fn open(state: &AppState, snapshot: &SnapshotRow) -> AppResult<tokio_util::io::ReaderStream<Box<dyn tokio::io::AsyncRead + Send + Unpin>>> {
    let reader = store(state).open(&store::key(snapshot.user_id, snapshot.id)).map_err(|e| AppError::Internal(e.into()))?;
    Ok(tokio_util::io::ReaderStream::with_capacity(reader, 64 << 10))
}

/// Fails the snapshots whose packing process died (see `repo::fail_abandoned`) and removes
/// what that process had written of them; returns how many.
pub async fn fail_abandoned(state: &AppState) -> anyhow::Result<usize> {
    let abandoned = repo::fail_abandoned(&state.db).await?;
    for (id, user_id) in &abandoned {
        tracing::warn!(snapshot = %id, "a snapshot's packing process died; marked failed");
        let (store, key) = (store(state), store::key(*user_id, *id));
        tokio::task::spawn_blocking(move || store.delete(&key)).await??;
    }
    Ok(abandoned.len())
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

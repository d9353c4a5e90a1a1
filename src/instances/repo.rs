//! SQL for instances.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::facts::Facts;
use super::models::{InstanceStatus, StopReason, StorageKind};
use crate::state::user_data_written;

/// The result of a statement that changed instance rows, after telling this process's cached
/// answers (even after an error: the statement may have committed).
fn written<T>(result: T) -> T {
    user_data_written();
    result
}

#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub id: Uuid,
    /// `None` for a warm pool sandbox, which belongs to nobody until a create claims it.
    pub user_id: Option<Uuid>,
    pub sandbox_id: String,
    pub name: Option<String>,
    pub status: InstanceStatus,
    pub last_error: Option<String>,
    pub image: String,
    pub gateway_token: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_active_at: DateTime<Utc>,
    pub stop_reason: Option<StopReason>,
    pub keep_awake: bool,
    pub openclaw_version: Option<String>,
    /// The snapshot the running operation puts into the storage (clone, restore, rollback).
    pub pending_snapshot_id: Option<Uuid>,
    /// The image an upgrade started from.
    pub upgrade_from_image: Option<String>,
    /// What the instance was made with (see `facts`); `None` only for a row older than the
    /// record, until the server's start records it as found on disk.
    pub storage_kind: Option<StorageKind>,
    pub storage_dir: Option<String>,
    pub disk_quota_bytes: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids: Option<i64>,
    /// The organisation it belongs to (its members reach it as their role allows).
    pub org_id: Option<Uuid>,
}

pub struct NewInstance<'a> {
    /// `None`: a warm pool sandbox.
    pub user_id: Option<Uuid>,
    pub sandbox_id: &'a str,
    pub name: Option<&'a str>,
    pub image: &'a str,
    pub gateway_token: &'a str,
    /// A clone's source: unpacked into the storage before the first start.
    pub seed_snapshot: Option<Uuid>,
    /// What it is made with, recorded with it.
    pub facts: &'a Facts,
    /// The organisation it is made for.
    pub org_id: Option<Uuid>,
}

pub async fn insert(db: impl PgExecutor<'_>, new: &NewInstance<'_>) -> sqlx::Result<InstanceRow> {
    sqlx::query_as!(
        InstanceRow,
        r#"INSERT INTO instances (id, user_id, sandbox_id, name, status, image, gateway_token, pending_snapshot_id,
                storage_kind, storage_dir, disk_quota_bytes, memory_bytes, nano_cpus, pids, org_id)
         VALUES ($1, $2, $3, $4, 'provisioning', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         RETURNING id, user_id, sandbox_id, name, status AS "status: InstanceStatus", last_error, image, gateway_token, created_at, updated_at,
                last_active_at, stop_reason AS "stop_reason: StopReason", keep_awake, openclaw_version, pending_snapshot_id, upgrade_from_image, storage_kind AS "storage_kind: StorageKind", storage_dir, disk_quota_bytes, memory_bytes, nano_cpus, pids, org_id"#,
        Uuid::now_v7(),
        new.user_id,
        new.sandbox_id,
        new.name,
        new.image,
        new.gateway_token,
        new.seed_snapshot,
        new.facts.storage_kind as StorageKind,
        new.facts.storage_dir,
        new.facts.disk_quota_bytes,
        new.facts.memory_bytes,
        new.facts.nano_cpus,
        new.facts.pids,
        new.org_id
    )
    .fetch_one(db)
    .await
}

pub async fn list_for_user(db: &PgPool, user_id: Uuid) -> sqlx::Result<Vec<InstanceRow>> {
    sqlx::query_as!(
        InstanceRow,
        r#"SELECT id, user_id, sandbox_id, name, status AS "status: InstanceStatus", last_error, image, gateway_token, created_at, updated_at,
                last_active_at, stop_reason AS "stop_reason: StopReason", keep_awake, openclaw_version, pending_snapshot_id, upgrade_from_image, storage_kind AS "storage_kind: StorageKind", storage_dir, disk_quota_bytes, memory_bytes, nano_cpus, pids, org_id
         FROM instances WHERE (user_id = $1 AND org_id IS NULL) OR org_id IN (SELECT org_id FROM org_members WHERE user_id = $1)
         ORDER BY created_at DESC, id DESC"#,
        user_id
    )
    .fetch_all(db)
    .await
}

/// Every instance's node (`None`: the servers' own engine).
pub async fn placements(db: &PgPool) -> sqlx::Result<std::collections::HashMap<Uuid, Option<Uuid>>> {
    let rows = sqlx::query!("SELECT id, node_id FROM instances").fetch_all(db).await?;
    Ok(rows.into_iter().map(|r| (r.id, r.node_id)).collect())
}

pub async fn list_all(db: &PgPool) -> sqlx::Result<Vec<InstanceRow>> {
    sqlx::query_as!(
        InstanceRow,
        r#"SELECT id, user_id, sandbox_id, name, status AS "status: InstanceStatus", last_error, image, gateway_token, created_at, updated_at,
                last_active_at, stop_reason AS "stop_reason: StopReason", keep_awake, openclaw_version, pending_snapshot_id, upgrade_from_image, storage_kind AS "storage_kind: StorageKind", storage_dir, disk_quota_bytes, memory_bytes, nano_cpus, pids, org_id
         FROM instances ORDER BY created_at"#
    )
    .fetch_all(db)
    .await
}

/// The instance if it exists and belongs to `user_id`.
pub async fn get_for_user(db: &PgPool, id: Uuid, user_id: Uuid) -> sqlx::Result<Option<InstanceRow>> {
    sqlx::query_as!(
        InstanceRow,
        r#"SELECT id, user_id, sandbox_id, name, status AS "status: InstanceStatus", last_error, image, gateway_token, created_at, updated_at,
                last_active_at, stop_reason AS "stop_reason: StopReason", keep_awake, openclaw_version, pending_snapshot_id, upgrade_from_image, storage_kind AS "storage_kind: StorageKind", storage_dir, disk_quota_bytes, memory_bytes, nano_cpus, pids, org_id
         FROM instances WHERE id = $1
          AND ((user_id = $2 AND org_id IS NULL) OR org_id IN (SELECT org_id FROM org_members WHERE user_id = $2))"#,
        id,
        user_id
    )
    .fetch_optional(db)
    .await
}

pub async fn get(db: &PgPool, id: Uuid) -> sqlx::Result<Option<InstanceRow>> {
    sqlx::query_as!(
        InstanceRow,
        r#"SELECT id, user_id, sandbox_id, name, status AS "status: InstanceStatus", last_error, image, gateway_token, created_at, updated_at,
                last_active_at, stop_reason AS "stop_reason: StopReason", keep_awake, openclaw_version, pending_snapshot_id, upgrade_from_image, storage_kind AS "storage_kind: StorageKind", storage_dir, disk_quota_bytes, memory_bytes, nano_cpus, pids, org_id
         FROM instances WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

/// What a transition does besides the status (see `machine::Op`). `None` keeps a field.
#[derive(Default)]
pub struct Change<'a> {
    /// Kept only for `error` (and a rollback's `ready`).
    pub last_error: Option<&'a str>,
    /// With `keep_reason`, the stored reason stays.
    pub stop_reason: Option<StopReason>,
    pub keep_reason: bool,
    pub pending_snapshot: Option<Option<Uuid>>,
    pub image: Option<&'a str>,
    pub upgrade_from: Option<Option<&'a str>>,
    pub guard: Guard,
}

/// What the row must still be, besides its status, for a decision made on an earlier read to
/// hold (another replica may have claimed, pinned or used the instance since).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Guard {
    #[default]
    None,
    /// Still nobody's: a pool sandbox no create claimed meanwhile.
    Unowned,
    /// Still idle: not pinned, and not used after this time.
    IdleSince(DateTime<Utc>),
}

/// Moves the instance to `to` if its status is one of `from`; `None` when it was not. Waking
/// up (to `ready` or `provisioning`) counts as activity.
pub async fn transition(
    db: &PgPool,
    id: Uuid,
    from: &[InstanceStatus],
    to: InstanceStatus,
    change: &Change<'_>,
) -> sqlx::Result<Option<InstanceRow>> {
    written(
        sqlx::query_as!(
            InstanceRow,
            r#"UPDATE instances SET status = $3, last_error = $4, updated_at = now(),
                stop_reason = CASE WHEN $6 THEN stop_reason ELSE $5 END,
                last_active_at = CASE WHEN $3 IN ('ready', 'provisioning') THEN now() ELSE last_active_at END,
                pending_snapshot_id = CASE WHEN $7 THEN $8 ELSE pending_snapshot_id END,
                image = COALESCE($9, image),
                upgrade_from_image = CASE WHEN $10 THEN $11 ELSE upgrade_from_image END
         WHERE id = $1 AND status = ANY($2)
           AND (NOT $12 OR user_id IS NULL)
           AND ($13::timestamptz IS NULL OR (NOT keep_awake AND last_active_at <= $13))
         RETURNING id, user_id, sandbox_id, name, status AS "status: InstanceStatus", last_error, image, gateway_token, created_at, updated_at,
                last_active_at, stop_reason AS "stop_reason: StopReason", keep_awake, openclaw_version, pending_snapshot_id, upgrade_from_image, storage_kind AS "storage_kind: StorageKind", storage_dir, disk_quota_bytes, memory_bytes, nano_cpus, pids, org_id"#,
            id,
            from as &[InstanceStatus],
            to as InstanceStatus,
            change.last_error,
            change.stop_reason as Option<StopReason>,
            change.keep_reason,
            change.pending_snapshot.is_some(),
            change.pending_snapshot.flatten(),
            change.image,
            change.upgrade_from.is_some(),
            change.upgrade_from.flatten(),
            change.guard == Guard::Unowned,
            match change.guard {
                Guard::IdleSince(seen) => Some(seen),
                _ => None,
            }
        )
        .fetch_optional(db)
        .await,
    )
}

/// Instances made before facts were recorded and not recorded yet: (id, sandbox name).
pub async fn unrecorded(db: &PgPool) -> sqlx::Result<Vec<(Uuid, String)>> {
    let rows = sqlx::query!("SELECT id, sandbox_id FROM instances WHERE storage_kind IS NULL").fetch_all(db).await?;
    Ok(rows.into_iter().map(|r| (r.id, r.sandbox_id)).collect())
}

/// Records the facts of an instance made before they were recorded; `false` when it had some.
pub async fn record_facts(db: &PgPool, id: Uuid, facts: &Facts) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE instances SET storage_kind = $2, storage_dir = $3, disk_quota_bytes = $4, memory_bytes = $5, nano_cpus = $6, pids = $7
         WHERE id = $1 AND storage_kind IS NULL",
        id,
        facts.storage_kind as StorageKind,
        facts.storage_dir,
        facts.disk_quota_bytes,
        facts.memory_bytes,
        facts.nano_cpus,
        facts.pids
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a moved storage (`storage_move`); `false` when the instance is gone.
pub async fn set_storage(db: &PgPool, id: Uuid, facts: &Facts) -> sqlx::Result<bool> {
    let done = written(
        sqlx::query!(
            "UPDATE instances SET storage_kind = $2, storage_dir = $3, disk_quota_bytes = $4 WHERE id = $1",
            id,
            facts.storage_kind as StorageKind,
            facts.storage_dir,
            facts.disk_quota_bytes
        )
        .execute(db)
        .await,
    )?;
    Ok(done.rows_affected() == 1)
}

/// Records the OpenClaw version the instance's gateway reports.
pub async fn set_version(db: &PgPool, id: Uuid, version: &str) -> sqlx::Result<()> {
    written(sqlx::query!("UPDATE instances SET openclaw_version = $2 WHERE id = $1", id, version).execute(db).await)?;
    Ok(())
}

/// Changes the instance's label and pin; `None` leaves a field as it is.
pub async fn update(db: impl PgExecutor<'_>, id: Uuid, name: Option<Option<&str>>, keep_awake: Option<bool>) -> sqlx::Result<Option<InstanceRow>> {
    written(
        sqlx::query_as!(
            InstanceRow,
            r#"UPDATE instances SET name = CASE WHEN $2 THEN $3 ELSE name END, keep_awake = COALESCE($4, keep_awake), updated_at = now()
         WHERE id = $1
         RETURNING id, user_id, sandbox_id, name, status AS "status: InstanceStatus", last_error, image, gateway_token, created_at, updated_at,
                last_active_at, stop_reason AS "stop_reason: StopReason", keep_awake, openclaw_version, pending_snapshot_id, upgrade_from_image, storage_kind AS "storage_kind: StorageKind", storage_dir, disk_quota_bytes, memory_bytes, nano_cpus, pids, org_id"#,
            id,
            name.is_some(),
            name.flatten(),
            keep_awake
        )
        .fetch_optional(db)
        .await,
    )
}

/// How many of the user's instances other than `except` are pinned awake.
pub async fn count_kept_awake(db: impl PgExecutor<'_>, user_id: Uuid, except: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM instances WHERE user_id = $1 AND keep_awake AND id <> $2"#, user_id, except)
        .fetch_one(db)
        .await
}

/// Records activity seen in this process (written in batches, not per request).
pub async fn touch_active(db: &PgPool, ids: &[Uuid]) -> sqlx::Result<()> {
    written(sqlx::query!("UPDATE instances SET last_active_at = now() WHERE id = ANY($1)", ids).execute(db).await)?;
    Ok(())
}

pub async fn delete(db: &PgPool, id: Uuid) -> sqlx::Result<()> {
    written(sqlx::query!("DELETE FROM instances WHERE id = $1", id).execute(db).await)?;
    Ok(())
}

/// The user's own instances (not those made for an organisation), against their plan.
pub async fn count_for_user(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM instances WHERE user_id = $1 AND org_id IS NULL"#, user_id).fetch_one(db).await
}

/// An organisation's instances, against its plan.
pub async fn count_for_org(db: impl PgExecutor<'_>, org_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM instances WHERE org_id = $1"#, org_id).fetch_one(db).await
}

pub async fn count_all(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM instances"#).fetch_one(db).await
}

/// Serialises instance creation across transactions (and server processes) so the plan and
/// capacity counts cannot be raced.
pub async fn lock_creation(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query!("SELECT pg_advisory_xact_lock(7405001)").execute(db).await?;
    Ok(())
}

/// How many instances are in each status.
pub async fn count_by_status(db: &PgPool) -> sqlx::Result<Vec<(InstanceStatus, i64)>> {
    let rows =
        sqlx::query!(r#"SELECT status AS "status: InstanceStatus", count(*) AS "count!" FROM instances GROUP BY status"#).fetch_all(db).await?;
    Ok(rows.into_iter().map(|r| (r.status, r.count)).collect())
}

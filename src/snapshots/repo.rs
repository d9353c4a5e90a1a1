//! SQL for snapshots.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::models::{SnapshotKind, SnapshotStatus};

#[derive(Debug, Clone)]
pub struct SnapshotRow {
    pub id: Uuid,
    pub instance_id: Uuid,
    pub user_id: Uuid,
    pub name: Option<String>,
    pub kind: SnapshotKind,
    pub status: SnapshotStatus,
    pub size_bytes: i64,
    pub sha256: Option<String>,
    pub image: String,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub struct NewSnapshot<'a> {
    pub instance_id: Uuid,
    pub user_id: Uuid,
    pub name: Option<&'a str>,
    pub kind: SnapshotKind,
    pub image: &'a str,
}

pub async fn insert(db: &PgPool, new: &NewSnapshot<'_>) -> sqlx::Result<SnapshotRow> {
    sqlx::query_as!(
        SnapshotRow,
        r#"INSERT INTO snapshots (id, instance_id, user_id, name, kind, status, image) VALUES ($1, $2, $3, $4, $5, 'creating', $6)
         RETURNING id, instance_id, user_id, name, kind AS "kind: SnapshotKind", status AS "status: SnapshotStatus", size_bytes, sha256,
                   image, error, created_at"#,
        Uuid::now_v7(),
        new.instance_id,
        new.user_id,
        new.name,
        new.kind as SnapshotKind,
        new.image
    )
    .fetch_one(db)
    .await
}

/// Records the outcome: `ready` with size and digest, or `failed` with the reason.
pub async fn finish(db: &PgPool, id: Uuid, outcome: Result<(u64, &str), &str>) -> sqlx::Result<Option<SnapshotRow>> {
    let (status, size, sha, error) = match outcome {
        Ok((size, sha)) => (SnapshotStatus::Ready, i64::try_from(size).unwrap_or(i64::MAX), Some(sha), None),
        Err(error) => (SnapshotStatus::Failed, 0, None, Some(error)),
    };
    sqlx::query_as!(
        SnapshotRow,
        r#"UPDATE snapshots SET status = $2, size_bytes = $3, sha256 = $4, error = $5 WHERE id = $1
         RETURNING id, instance_id, user_id, name, kind AS "kind: SnapshotKind", status AS "status: SnapshotStatus", size_bytes, sha256,
                   image, error, created_at"#,
        id,
        status as SnapshotStatus,
        size,
        sha,
        error
    )
    .fetch_optional(db)
    .await
}

/// Snapshots a process that died mid-pack left `creating`. A pack holds its instance's driver
/// lease from before its row is written until it is finished, so a `creating` snapshot whose
/// instance has no live lease is nobody's: it is marked failed. Returns (id, user id) of each.
pub async fn fail_abandoned(db: &PgPool) -> sqlx::Result<Vec<(Uuid, Uuid)>> {
    let rows = sqlx::query!(
        "UPDATE snapshots SET status = 'failed', error = 'The server taking this snapshot stopped before it was done.'
         WHERE status = 'creating'
           AND NOT EXISTS (SELECT 1 FROM instance_leases l WHERE l.instance_id = snapshots.instance_id AND l.expires_at > now())
         RETURNING id, user_id"
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.user_id)).collect())
}

pub async fn list_for_instance(db: &PgPool, instance_id: Uuid) -> sqlx::Result<Vec<SnapshotRow>> {
    sqlx::query_as!(
        SnapshotRow,
        r#"SELECT id, instance_id, user_id, name, kind AS "kind: SnapshotKind", status AS "status: SnapshotStatus", size_bytes, sha256,
                  image, error, created_at
         FROM snapshots WHERE instance_id = $1 ORDER BY created_at DESC, id DESC"#,
        instance_id
    )
    .fetch_all(db)
    .await
}

/// The snapshot if it belongs to `user_id` (any of their instances).
pub async fn get_for_user(db: &PgPool, id: Uuid, user_id: Uuid) -> sqlx::Result<Option<SnapshotRow>> {
    sqlx::query_as!(
        SnapshotRow,
        r#"SELECT id, instance_id, user_id, name, kind AS "kind: SnapshotKind", status AS "status: SnapshotStatus", size_bytes, sha256,
                  image, error, created_at
         FROM snapshots WHERE id = $1 AND user_id = $2"#,
        id,
        user_id
    )
    .fetch_optional(db)
    .await
}

/// The snapshot, whoever took it (the caller checks who may see it).
pub async fn get(db: &PgPool, id: Uuid) -> sqlx::Result<Option<SnapshotRow>> {
    sqlx::query_as!(
        SnapshotRow,
        r#"SELECT id, instance_id, user_id, name, kind AS "kind: SnapshotKind", status AS "status: SnapshotStatus", size_bytes, sha256,
                  image, error, created_at
         FROM snapshots WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

pub async fn delete(db: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM snapshots WHERE id = $1", id).execute(db).await?;
    Ok(())
}

/// Compressed bytes of the user's snapshots, and the quota their plan sets (if any).
pub async fn usage_and_quota(db: &PgPool, user_id: Uuid) -> sqlx::Result<(i64, Option<i64>)> {
    let row = sqlx::query!(
        r#"SELECT COALESCE((SELECT sum(size_bytes) FROM snapshots WHERE user_id = $1), 0)::bigint AS "used!",
                  (SELECT snapshot_quota_bytes FROM subscriptions WHERE user_id = $1) AS quota"#,
        user_id
    )
    .fetch_one(db)
    .await?;
    Ok((row.used, row.quota))
}

/// Scheduled snapshots of the instance past the newest `keep` (to delete).
pub async fn scheduled_beyond(db: &PgPool, instance_id: Uuid, keep: i64) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "SELECT id FROM snapshots WHERE instance_id = $1 AND kind = 'scheduled' ORDER BY created_at DESC, id DESC OFFSET $2",
        instance_id,
        keep
    )
    .fetch_all(db)
    .await
}

/// Whether a scheduled backup of the instance (being taken, or taken) is newer than `seen`
/// (another replica took one since this one looked).
pub async fn scheduled_after(db: &PgPool, instance_id: Uuid, seen: Option<DateTime<Utc>>) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM snapshots WHERE instance_id = $1 AND kind = 'scheduled' AND status IN ('creating', 'ready')
                          AND created_at > COALESCE($2, '-infinity'::timestamptz)) AS "newer!""#,
        instance_id,
        seen
    )
    .fetch_one(db)
    .await
}

/// An instance due for a scheduled backup (a backup being taken counts), with its plan's schedule.
pub struct Due {
    pub instance_id: Uuid,
    pub interval_secs: Option<i32>,
    pub keep: Option<i32>,
    pub last_backup: Option<DateTime<Utc>>,
    pub last_active_at: DateTime<Utc>,
}

/// Owned instances in a stable status, with their last scheduled backup and plan schedule.
pub async fn backup_candidates(db: &PgPool) -> sqlx::Result<Vec<Due>> {
    sqlx::query_as!(
        Due,
        r#"SELECT i.id AS instance_id, s.backup_interval_secs AS "interval_secs?", s.backup_keep AS "keep?", i.last_active_at,
                  (SELECT max(created_at) FROM snapshots b WHERE b.instance_id = i.id AND b.kind = 'scheduled' AND b.status IN ('creating', 'ready')) AS last_backup
         FROM instances i LEFT JOIN subscriptions s ON s.user_id = i.user_id
         WHERE i.user_id IS NOT NULL AND i.status IN ('ready', 'paused', 'stopped')"#
    )
    .fetch_all(db)
    .await
}

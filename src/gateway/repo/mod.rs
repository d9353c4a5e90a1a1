//! SQL for ocaas's device identity on each instance's gateway.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

pub struct DeviceRow {
    pub seed_sealed: Vec<u8>,
    pub device_token_sealed: Option<Vec<u8>>,
}

pub async fn device(db: &PgPool, instance_id: Uuid) -> sqlx::Result<Option<DeviceRow>> {
    sqlx::query_as!(DeviceRow, "SELECT seed_sealed, device_token_sealed FROM gateway_devices WHERE instance_id = $1", instance_id)
        .fetch_optional(db)
        .await
}

/// Records a new identity unless one exists, then reads the stored one (which wins: two
/// replicas agree). Two statements on purpose: when another transaction inserts the row first,
/// `ON CONFLICT DO NOTHING` waits for it, but a `SELECT` in the same statement still reads the
/// snapshot from before it and finds nothing.
pub async fn insert_device(db: &PgPool, instance_id: Uuid, device_id: &str, seed_sealed: &[u8]) -> sqlx::Result<DeviceRow> {
    sqlx::query!(
        "INSERT INTO gateway_devices (instance_id, device_id, seed_sealed) VALUES ($1, $2, $3) ON CONFLICT (instance_id) DO NOTHING",
        instance_id,
        device_id,
        seed_sealed
    )
    .execute(db)
    .await?;
    device(db, instance_id).await?.ok_or(sqlx::Error::RowNotFound)
}

pub async fn set_device_token(db: &PgPool, instance_id: Uuid, sealed: &[u8]) -> sqlx::Result<()> {
    sqlx::query!("UPDATE gateway_devices SET device_token_sealed = $2, paired_at = now() WHERE instance_id = $1", instance_id, sealed)
        .execute(db)
        .await?;
    Ok(())
}

/// Instances that are ready and belong to someone (their gateways are worth listening to).
pub async fn ready_instances(db: &PgPool) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!("SELECT id FROM instances WHERE status = 'ready' AND user_id IS NOT NULL ORDER BY id LIMIT 10000").fetch_all(db).await
}

pub mod agent;

/// What ocaas knows of an instance's configuration: its probation and last rollback.
pub struct ConfigFacts {
    pub pending_since: Option<DateTime<Utc>>,
    pub pending_until: Option<DateTime<Utc>>,
    pub rolled_back_at: Option<DateTime<Utc>>,
    pub rollback_reason: Option<String>,
}

pub async fn config_facts(db: &PgPool, instance_id: Uuid) -> sqlx::Result<Option<ConfigFacts>> {
    sqlx::query_as!(
        ConfigFacts,
        "SELECT pending_since, pending_until, rolled_back_at, rollback_reason FROM gateway_configs WHERE instance_id = $1",
        instance_id
    )
    .fetch_optional(db)
    .await
}

pub async fn set_last_good(db: &PgPool, instance_id: Uuid, sealed: &[u8], at: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO gateway_configs (instance_id, last_good_sealed, last_good_at) VALUES ($1, $2, $3)
         ON CONFLICT (instance_id) DO UPDATE SET last_good_sealed = $2, last_good_at = $3",
        instance_id,
        sealed,
        at
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Puts the instance's configuration on probation: judged from `after` from now, for `window`.
pub async fn start_probation_after(db: &PgPool, instance_id: Uuid, after: std::time::Duration, window: std::time::Duration) -> sqlx::Result<()> {
    let (after, until) = (after.as_secs_f64(), (after + window).as_secs_f64());
    sqlx::query!(
        "INSERT INTO gateway_configs (instance_id, pending_since, pending_until)
         VALUES ($1, now() + make_interval(secs => $2), now() + make_interval(secs => $3))
         ON CONFLICT (instance_id) DO UPDATE SET pending_since = now() + make_interval(secs => $2), pending_until = now() + make_interval(secs => $3)",
        instance_id,
        after,
        until
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn end_probation(db: &PgPool, instance_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("UPDATE gateway_configs SET pending_since = NULL, pending_until = NULL WHERE instance_id = $1", instance_id).execute(db).await?;
    Ok(())
}

/// A configuration on probation.
pub struct Probation {
    pub instance_id: Uuid,
    pub pending_since: DateTime<Utc>,
    pub pending_until: DateTime<Utc>,
    pub overdue: bool,
}

pub async fn probations(db: &PgPool) -> sqlx::Result<Vec<Probation>> {
    sqlx::query_as!(
        Probation,
        r#"SELECT instance_id, pending_since AS "pending_since!", pending_until AS "pending_until!", pending_until < now() AS "overdue!"
           FROM gateway_configs WHERE pending_until IS NOT NULL ORDER BY pending_until LIMIT 1000"#
    )
    .fetch_all(db)
    .await
}

/// Ends the probation seen as `pending_until` with the gateway ready (one process wins), and
/// keeps `good_sealed` (the file it ran with) as the last good one in the same guarded write:
/// a replica late to judge an ended probation stores nothing.
pub async fn confirm(db: &PgPool, instance_id: Uuid, seen: DateTime<Utc>, good_sealed: Option<&[u8]>) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE gateway_configs SET pending_since = NULL, pending_until = NULL,
                last_good_sealed = COALESCE($3, last_good_sealed), last_good_at = CASE WHEN $3::bytea IS NULL THEN last_good_at ELSE now() END
          WHERE instance_id = $1 AND pending_until = $2",
        instance_id,
        seen,
        good_sealed
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Claims the rollback of the probation seen as `pending_until` (one process wins): the last
/// good configuration, sealed.
pub async fn claim_rollback(db: &PgPool, instance_id: Uuid, seen: DateTime<Utc>, reason: &str) -> sqlx::Result<Option<Option<Vec<u8>>>> {
    sqlx::query_scalar!(
        "UPDATE gateway_configs SET pending_since = NULL, pending_until = NULL, rolled_back_at = now(), rollback_reason = $3
         WHERE instance_id = $1 AND pending_until = $2 RETURNING last_good_sealed",
        instance_id,
        seen,
        reason
    )
    .fetch_optional(db)
    .await
}

/// Stores a channel's secret, sealed.
pub async fn set_channel_secret(db: &PgPool, instance_id: Uuid, kind: &str, sealed: &[u8]) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO channel_secrets (instance_id, kind, secret_sealed) VALUES ($1, $2, $3)
         ON CONFLICT (instance_id, kind) DO UPDATE SET secret_sealed = $3, set_at = now()",
        instance_id,
        kind,
        sealed
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn delete_channel_secret(db: &PgPool, instance_id: Uuid, kind: &str) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM channel_secrets WHERE instance_id = $1 AND kind = $2", instance_id, kind).execute(db).await?;
    Ok(())
}

/// The channels whose secret is stored.
pub async fn channel_secret_kinds(db: &PgPool, instance_id: Uuid) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!("SELECT kind FROM channel_secrets WHERE instance_id = $1", instance_id).fetch_all(db).await
}

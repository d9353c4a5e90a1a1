//! SQL for instances.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::models::InstanceStatus;

#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub sandbox_id: String,
    pub name: Option<String>,
    pub status: InstanceStatus,
    pub last_error: Option<String>,
    pub image: String,
    pub gateway_token: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewInstance<'a> {
    pub user_id: Uuid,
    pub sandbox_id: &'a str,
    pub name: Option<&'a str>,
    pub image: &'a str,
    pub gateway_token: &'a str,
}

pub async fn insert(db: impl PgExecutor<'_>, new: &NewInstance<'_>) -> sqlx::Result<InstanceRow> {
    sqlx::query_as!(
        InstanceRow,
        r#"INSERT INTO instances (id, user_id, sandbox_id, name, status, image, gateway_token)
         VALUES ($1, $2, $3, $4, 'provisioning', $5, $6)
         RETURNING id, user_id, sandbox_id, name, status AS "status: InstanceStatus", last_error, image, gateway_token, created_at, updated_at"#,
        Uuid::now_v7(),
        new.user_id,
        new.sandbox_id,
        new.name,
        new.image,
        new.gateway_token
    )
    .fetch_one(db)
    .await
}

pub async fn list_for_user(db: &PgPool, user_id: Uuid) -> sqlx::Result<Vec<InstanceRow>> {
    sqlx::query_as!(
        InstanceRow,
        r#"SELECT id, user_id, sandbox_id, name, status AS "status: InstanceStatus", last_error, image, gateway_token, created_at, updated_at
         FROM instances WHERE user_id = $1 ORDER BY created_at DESC, id DESC"#,
        user_id
    )
    .fetch_all(db)
    .await
}

pub async fn list_all(db: &PgPool) -> sqlx::Result<Vec<InstanceRow>> {
    sqlx::query_as!(
        InstanceRow,
        r#"SELECT id, user_id, sandbox_id, name, status AS "status: InstanceStatus", last_error, image, gateway_token, created_at, updated_at
         FROM instances ORDER BY created_at"#
    )
    .fetch_all(db)
    .await
}

/// The instance if it exists and belongs to `user_id`.
pub async fn get_for_user(db: &PgPool, id: Uuid, user_id: Uuid) -> sqlx::Result<Option<InstanceRow>> {
    sqlx::query_as!(
        InstanceRow,
        r#"SELECT id, user_id, sandbox_id, name, status AS "status: InstanceStatus", last_error, image, gateway_token, created_at, updated_at
         FROM instances WHERE id = $1 AND user_id = $2"#,
        id,
        user_id
    )
    .fetch_optional(db)
    .await
}

pub async fn get(db: &PgPool, id: Uuid) -> sqlx::Result<Option<InstanceRow>> {
    sqlx::query_as!(
        InstanceRow,
        r#"SELECT id, user_id, sandbox_id, name, status AS "status: InstanceStatus", last_error, image, gateway_token, created_at, updated_at
         FROM instances WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

/// Moves the instance to `to` if its status is one of `from`; `None` when it was not.
/// `last_error` is kept only for `error`.
pub async fn transition(
    db: &PgPool,
    id: Uuid,
    from: &[InstanceStatus],
    to: InstanceStatus,
    last_error: Option<&str>,
) -> sqlx::Result<Option<InstanceRow>> {
    sqlx::query_as!(
        InstanceRow,
        r#"UPDATE instances SET status = $3, last_error = $4, updated_at = now()
         WHERE id = $1 AND status = ANY($2)
         RETURNING id, user_id, sandbox_id, name, status AS "status: InstanceStatus", last_error, image, gateway_token, created_at, updated_at"#,
        id,
        from as &[InstanceStatus],
        to as InstanceStatus,
        last_error
    )
    .fetch_optional(db)
    .await
}

pub async fn delete(db: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM instances WHERE id = $1", id).execute(db).await?;
    Ok(())
}

pub async fn count_for_user(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM instances WHERE user_id = $1"#, user_id).fetch_one(db).await
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

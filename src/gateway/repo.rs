//! SQL for ocaas's device identity on each instance's gateway.

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

/// Records a new identity unless one exists (then the stored one wins: two replicas agree).
pub async fn insert_device(db: &PgPool, instance_id: Uuid, device_id: &str, seed_sealed: &[u8]) -> sqlx::Result<DeviceRow> {
    sqlx::query_as!(
        DeviceRow,
        r#"WITH made AS (
               INSERT INTO gateway_devices (instance_id, device_id, seed_sealed) VALUES ($1, $2, $3)
               ON CONFLICT (instance_id) DO NOTHING RETURNING seed_sealed, device_token_sealed)
           SELECT seed_sealed AS "seed_sealed!", device_token_sealed FROM made
           UNION ALL
           SELECT seed_sealed, device_token_sealed FROM gateway_devices WHERE instance_id = $1 AND NOT EXISTS (SELECT 1 FROM made)"#,
        instance_id,
        device_id,
        seed_sealed
    )
    .fetch_one(db)
    .await
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

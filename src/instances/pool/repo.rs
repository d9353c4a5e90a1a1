//! SQL of the warm pool: sandboxes with no owner, and the claim that makes one a user's.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::instances::models::{InstanceStatus, StopReason, StorageKind};
use crate::instances::repo::InstanceRow;

/// Makes the oldest ready pool sandbox of `image` the user's instance (an organisation's, with
/// `org_id`): `pooled → ready`, in the caller's transaction. Two concurrent creates never get
/// the same one (`SKIP LOCKED`). One on a node that is draining or has not answered for
/// `fresh_secs` is left alone (a new instance would not be placed there either).
pub async fn claim(
    tx: &mut PgConnection,
    user_id: Uuid,
    org_id: Option<Uuid>,
    name: Option<&str>,
    image: &str,
    fresh_secs: i64,
) -> sqlx::Result<Option<InstanceRow>> {
    sqlx::query_as!(
        InstanceRow,
        r#"UPDATE instances SET user_id = $1, name = $2, org_id = $4, status = 'ready', created_at = now(), updated_at = now(), last_active_at = now()
         WHERE id = (SELECT i.id FROM instances i WHERE i.status = 'pooled' AND i.user_id IS NULL AND i.image = $3
                       AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = i.node_id
                                       AND (n.draining OR n.last_seen IS NULL OR n.last_seen < now() - make_interval(secs => $5)))
                     ORDER BY i.created_at LIMIT 1 FOR UPDATE OF i SKIP LOCKED)
         RETURNING id, user_id, sandbox_id, name, status AS "status: InstanceStatus", last_error, image, gateway_token, created_at, updated_at,
                last_active_at, stop_reason AS "stop_reason: StopReason", keep_awake, openclaw_version, pending_snapshot_id, upgrade_from_image, storage_kind AS "storage_kind: StorageKind", storage_dir, disk_quota_bytes, memory_bytes, nano_cpus, pids, org_id"#,
        user_id,
        name,
        image,
        org_id,
        fresh_secs as f64
    )
    .fetch_optional(tx)
    .await
}

/// Pool sandboxes of `image` warming up or ready.
pub async fn count_warm(db: &mut PgConnection, image: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM instances WHERE user_id IS NULL AND image = $1 AND status IN ('provisioning', 'pooled')"#,
        image
    )
    .fetch_one(db)
    .await
}

/// Pool sandboxes to let go of: built from another image, or failed.
pub async fn stale(db: &PgPool, image: &str) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!("SELECT id FROM instances WHERE user_id IS NULL AND status <> 'deleting' AND (image <> $1 OR status = 'error')", image)
        .fetch_all(db)
        .await
}

/// Ready pool sandboxes past the first `keep` (when the pool was made smaller).
pub async fn surplus(db: &PgPool, image: &str, keep: i64) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "SELECT id FROM instances WHERE user_id IS NULL AND image = $1 AND status = 'pooled' ORDER BY created_at OFFSET $2",
        image,
        keep
    )
    .fetch_all(db)
    .await
}

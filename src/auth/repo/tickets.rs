//! SQL for websocket tickets (`ws_tickets`): issued, redeemed once, forgotten after expiry.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

pub struct TicketRow {
    pub instance_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

pub async fn insert_ticket(db: impl PgExecutor<'_>, hash: &[u8], user_id: Uuid, instance_id: Uuid, expires_at: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO ws_tickets (ticket_hash, user_id, instance_id, expires_at) VALUES ($1, $2, $3, $4)",
        hash,
        user_id,
        instance_id,
        expires_at
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Marks the ticket used if it is valid for `instance_id`, returning its user; one winner only.
pub async fn redeem_ticket(db: impl PgExecutor<'_>, hash: &[u8], instance_id: Uuid) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "UPDATE ws_tickets SET used_at = now()
         WHERE ticket_hash = $1 AND instance_id = $2 AND used_at IS NULL AND expires_at > now()
         RETURNING user_id",
        hash,
        instance_id
    )
    .fetch_optional(db)
    .await
}

pub async fn ticket(db: impl PgExecutor<'_>, hash: &[u8]) -> sqlx::Result<Option<TicketRow>> {
    sqlx::query_as!(TicketRow, "SELECT instance_id, expires_at, used_at FROM ws_tickets WHERE ticket_hash = $1", hash).fetch_optional(db).await
}

/// Forgets tickets that expired more than an hour ago (kept that long to explain refusals).
pub async fn delete_stale_tickets(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    sqlx::query!("DELETE FROM ws_tickets WHERE expires_at < now() - interval '1 hour'").execute(db).await.map(|r| r.rows_affected())
}

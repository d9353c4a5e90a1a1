//! SQL for the audit log.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::Event;
use super::models::AuditAction;

#[derive(Debug)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_user_id: Option<Uuid>,
    pub actor_email: Option<String>,
    pub client_addr: Option<String>,
    pub action: AuditAction,
    pub target: Option<String>,
    pub key_id: Option<Uuid>,
    pub key_name: Option<String>,
}

/// Emails and targets are cut to this many characters: whatever a client sends, a row stays small.
const MAX_TEXT: usize = 254;

fn cut(text: &str) -> String {
    text.chars().take(MAX_TEXT).collect()
}

pub async fn insert(db: &PgPool, event: &Event<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO audit_events (actor_user_id, actor_email, client_addr, action, target, key_id)
         VALUES (coalesce($1, (SELECT id FROM users WHERE lower(email) = lower($2))), $2, $3, $4, $5, $6)",
        event.actor,
        event.email.map(cut),
        event.client.map(cut),
        event.action as AuditAction,
        event.target.as_deref().map(cut),
        event.key,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A user's events with `id < before`, newest first.
pub async fn for_user(db: &PgPool, user_id: Uuid, before: i64, limit: i64) -> sqlx::Result<Vec<AuditRow>> {
    sqlx::query_as!(
        AuditRow,
        r#"SELECT e.id, e.at, e.actor_user_id, e.actor_email, e.client_addr, e.action AS "action: AuditAction", e.target,
                  e.key_id, k.name AS "key_name?"
           FROM audit_events e LEFT JOIN api_keys k ON k.id = e.key_id
           WHERE e.actor_user_id = $1 AND e.id < $2 ORDER BY e.id DESC LIMIT $3"#,
        user_id,
        before,
        limit
    )
    .fetch_all(db)
    .await
}

/// Everyone's events since `since` (optionally one user's, by email), oldest first, at most `limit`.
pub async fn search(db: &PgPool, email: Option<&str>, since: DateTime<Utc>, limit: i64) -> sqlx::Result<Vec<AuditRow>> {
    sqlx::query_as!(
        AuditRow,
        r#"SELECT e.id, e.at, e.actor_user_id, coalesce(u.email, e.actor_email) AS actor_email, e.client_addr,
                  e.action AS "action: AuditAction", e.target, e.key_id, k.name AS "key_name?"
           FROM audit_events e LEFT JOIN users u ON u.id = e.actor_user_id LEFT JOIN api_keys k ON k.id = e.key_id
           WHERE e.at >= $1 AND ($2::text IS NULL OR lower(coalesce(u.email, e.actor_email)) = lower($2))
           ORDER BY e.id LIMIT $3"#,
        since,
        email,
        limit
    )
    .fetch_all(db)
    .await
}

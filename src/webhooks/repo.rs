//! Webhook endpoints and the delivery queue in PostgreSQL. A delivery is claimed by pushing its
//! `next_attempt_at` past the attempt's longest run (`SKIP LOCKED`): a process that dies
//! mid-attempt leaves it due again a minute later, for any process (at least once).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::models::{DeliveryStatus, EventType};

pub struct EndpointRow {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub previous_until: Option<DateTime<Utc>>,
}

pub struct NewEndpoint<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub url: &'a str,
    pub events: &'a [EventType],
    pub description: Option<&'a str>,
    pub secret_sealed: &'a [u8],
}

/// A delivery claimed for an attempt, with what sending it needs.
pub struct Claimed {
    pub id: Uuid,
    pub message_id: String,
    pub payload: String,
    pub attempts: i32,
    pub url: String,
    pub secret_sealed: Vec<u8>,
    pub previous_secret_sealed: Option<Vec<u8>>,
    pub previous_until: Option<DateTime<Utc>>,
}

pub struct DeliveryRow {
    pub id: Uuid,
    pub message_id: String,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub payload: Value,
}

pub struct AttemptRow {
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// How an attempt went.
pub struct Outcome<'a> {
    pub status_code: Option<i32>,
    pub error: Option<&'a str>,
    pub duration_ms: i32,
    /// `None`: delivered; else when to try again, or give up (`Some(None)`).
    pub retry_at: Option<Option<DateTime<Utc>>>,
}

pub async fn count_for_user(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM webhook_endpoints WHERE user_id = $1"#, user_id).fetch_one(db).await
}

pub async fn insert(db: impl PgExecutor<'_>, new: &NewEndpoint<'_>) -> sqlx::Result<EndpointRow> {
    sqlx::query_as!(
        EndpointRow,
        r#"INSERT INTO webhook_endpoints (id, user_id, url, events, description, secret_sealed) VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING id, url, events AS "events: Vec<EventType>", description, disabled, created_at, previous_until"#,
        new.id,
        new.user_id,
        new.url,
        new.events as &[EventType],
        new.description,
        new.secret_sealed,
    )
    .fetch_one(db)
    .await
}

pub async fn list(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<EndpointRow>> {
    sqlx::query_as!(
        EndpointRow,
        r#"SELECT id, url, events AS "events: Vec<EventType>", description, disabled, created_at, previous_until
             FROM webhook_endpoints WHERE user_id = $1 ORDER BY created_at DESC"#,
        user_id
    )
    .fetch_all(db)
    .await
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid, user_id: Uuid) -> sqlx::Result<Option<EndpointRow>> {
    sqlx::query_as!(
        EndpointRow,
        r#"SELECT id, url, events AS "events: Vec<EventType>", description, disabled, created_at, previous_until
             FROM webhook_endpoints WHERE id = $1 AND user_id = $2"#,
        id,
        user_id
    )
    .fetch_optional(db)
    .await
}

/// The fields given are changed (`description: Some(None)` clears it).
pub struct Change<'a> {
    pub url: Option<&'a str>,
    pub events: Option<&'a [EventType]>,
    pub description: Option<Option<&'a str>>,
    pub disabled: Option<bool>,
}

pub async fn update(db: impl PgExecutor<'_>, id: Uuid, user_id: Uuid, change: &Change<'_>) -> sqlx::Result<Option<EndpointRow>> {
    sqlx::query_as!(
        EndpointRow,
        r#"UPDATE webhook_endpoints SET url = COALESCE($3, url), events = COALESCE($4, events),
                  description = CASE WHEN $5 THEN $6 ELSE description END, disabled = COALESCE($7, disabled)
            WHERE id = $1 AND user_id = $2
        RETURNING id, url, events AS "events: Vec<EventType>", description, disabled, created_at, previous_until"#,
        id,
        user_id,
        change.url,
        change.events as Option<&[EventType]>,
        change.description.is_some(),
        change.description.flatten(),
        change.disabled,
    )
    .fetch_optional(db)
    .await
}

pub async fn delete(db: impl PgExecutor<'_>, id: Uuid, user_id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!("DELETE FROM webhook_endpoints WHERE id = $1 AND user_id = $2", id, user_id).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

/// A new secret; the current one keeps signing until `overlap_until`.
pub async fn rotate(
    db: impl PgExecutor<'_>,
    id: Uuid,
    user_id: Uuid,
    sealed: &[u8],
    overlap_until: DateTime<Utc>,
) -> sqlx::Result<Option<EndpointRow>> {
    sqlx::query_as!(
        EndpointRow,
        r#"UPDATE webhook_endpoints SET previous_secret_sealed = secret_sealed, previous_until = $4, secret_sealed = $3
            WHERE id = $1 AND user_id = $2
        RETURNING id, url, events AS "events: Vec<EventType>", description, disabled, created_at, previous_until"#,
        id,
        user_id,
        sealed,
        overlap_until,
    )
    .fetch_optional(db)
    .await
}

/// Queues `kind` for each of `owner`'s endpoints that want it (the same function the triggers use).
pub async fn emit(db: impl PgExecutor<'_>, owner: Uuid, kind: EventType, data: &Value) -> sqlx::Result<()> {
    sqlx::query!("SELECT webhook_emit($1, $2, $3)", owner, kind.as_str(), data).execute(db).await?;
    Ok(())
}

/// Deliveries of the endpoint not yet delivered or given up.
pub async fn pending_count(db: impl PgExecutor<'_>, endpoint_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'"#, endpoint_id)
        .fetch_one(db)
        .await
}

/// Queues a `webhook.test` for one endpoint, whatever events it takes.
pub async fn queue_test(db: impl PgExecutor<'_>, endpoint_id: Uuid, payload: &Value) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        r#"INSERT INTO webhook_deliveries (id, endpoint_id, message_id, event_type, payload)
           VALUES (gen_random_uuid(), $1, 'msg_' || replace(gen_random_uuid()::text, '-', ''), 'webhook.test', $2)
           RETURNING id"#,
        endpoint_id,
        payload
    )
    .fetch_one(db)
    .await
}

/// Claims up to `limit` due deliveries for `hold_secs`: at most one per endpoint, and none of an
/// endpoint with one in flight, so a receiver that stalls holds one attempt, not every one. (The
/// `next_attempt_at` test is made again on the row as locked: two processes never claim the same.)
pub async fn claim(db: impl PgExecutor<'_>, limit: i64, hold_secs: f64) -> sqlx::Result<Vec<Claimed>> {
    sqlx::query_as!(
        Claimed,
        r#"UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2),
                  claimed_until = now() + make_interval(secs => $2)
             FROM webhook_endpoints e
            WHERE e.id = d.endpoint_id AND d.status = 'pending' AND d.next_attempt_at <= now() AND d.id IN (
                  SELECT DISTINCT ON (p.endpoint_id) p.id FROM webhook_deliveries p
                   WHERE p.status = 'pending' AND p.next_attempt_at <= now()
                     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries c WHERE c.endpoint_id = p.endpoint_id AND c.claimed_until > now())
                   ORDER BY p.endpoint_id, p.next_attempt_at LIMIT $1)
        RETURNING d.id, d.message_id, d.payload::text AS "payload!", d.attempts, e.url, e.secret_sealed,
                  e.previous_secret_sealed, e.previous_until"#,
        limit,
        hold_secs,
    )
    .fetch_all(db)
    .await
}

/// Records an attempt and what follows from it, in one statement.
pub async fn finish(db: impl PgExecutor<'_>, claimed: &Claimed, outcome: &Outcome<'_>) -> sqlx::Result<()> {
    let status = match outcome.retry_at {
        None => DeliveryStatus::Delivered,
        Some(Some(_)) => DeliveryStatus::Pending,
        Some(None) => DeliveryStatus::Failed,
    };
    sqlx::query!(
        r#"WITH attempt AS (
               INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT DO NOTHING)
           UPDATE webhook_deliveries SET status = $6, last_status_code = $3, last_error = $4, claimed_until = NULL,
                  next_attempt_at = COALESCE($7, next_attempt_at),
                  delivered_at = CASE WHEN $6 = 'delivered' THEN now() END
            WHERE id = $1 AND attempts = $2"#,
        claimed.id,
        claimed.attempts,
        outcome.status_code,
        outcome.error,
        outcome.duration_ms,
        status as DeliveryStatus,
        outcome.retry_at.flatten(),
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn deliveries(db: impl PgExecutor<'_>, endpoint_id: Uuid, limit: i64) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_as!(
        DeliveryRow,
        r#"SELECT id, message_id, event_type AS "event_type: EventType", status AS "status: DeliveryStatus", attempts,
                  last_status_code, last_error, created_at, next_attempt_at, delivered_at, payload
             FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY created_at DESC, id LIMIT $2"#,
        endpoint_id,
        limit
    )
    .fetch_all(db)
    .await
}

pub async fn attempts(db: impl PgExecutor<'_>, deliveries: &[Uuid]) -> sqlx::Result<Vec<AttemptRow>> {
    sqlx::query_as!(
        AttemptRow,
        "SELECT delivery_id, attempt, at, status_code, error, duration_ms FROM webhook_attempts
          WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
        deliveries
    )
    .fetch_all(db)
    .await
}

/// Forgets deliveries that ended more than `days` ago.
pub async fn prune(db: impl PgExecutor<'_>, days: i32) -> sqlx::Result<u64> {
    let done = sqlx::query!("DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at < now() - make_interval(days => $1)", days)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

//! SQL of the agent's facts the idle policy reads (next schedule, live channels), its approval
//! requests and its event feed.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use crate::gateway::models::{Approval, ApprovalKind, ApprovalStatus, Decision};

/// Records the agent's connected channels, as its gateway reported them.
pub async fn set_channels(db: &PgPool, instance_id: Uuid, live_channels: &[String]) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO agent_wakeups (instance_id, live_channels, checked_at) VALUES ($1, $2, now())
         ON CONFLICT (instance_id) DO UPDATE SET live_channels = $2, checked_at = now()",
        instance_id,
        live_channels
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records when the agent's next schedule runs (`None`: none is due).
pub async fn set_next_run(db: &PgPool, instance_id: Uuid, next_run_at: Option<DateTime<Utc>>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO agent_wakeups (instance_id, next_run_at) VALUES ($1, $2)
         ON CONFLICT (instance_id) DO UPDATE SET next_run_at = $2",
        instance_id,
        next_run_at
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A schedule of the agent is running now.
pub async fn mark_run(db: &PgPool, instance_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO agent_wakeups (instance_id, last_run_at) VALUES ($1, now())
         ON CONFLICT (instance_id) DO UPDATE SET last_run_at = now()",
        instance_id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Removes feed entries older than a week and answered requests older than a month.
pub async fn prune(db: &PgPool) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM agent_events WHERE created_at < now() - interval '7 days'").execute(db).await?;
    sqlx::query!("DELETE FROM approvals WHERE created_at < now() - interval '30 days'").execute(db).await?;
    Ok(())
}

pub struct Wakeup {
    pub next_run_at: Option<DateTime<Utc>>,
    pub live_channels: Vec<String>,
}

pub async fn wakeup(db: &PgPool, instance_id: Uuid) -> sqlx::Result<Option<Wakeup>> {
    sqlx::query_as!(Wakeup, "SELECT next_run_at, live_channels FROM agent_wakeups WHERE instance_id = $1", instance_id).fetch_optional(db).await
}

/// Paused instances whose next schedule runs within `lead` (a time long past, which a gateway
/// may claim, wakes nothing).
pub async fn due_paused(db: &PgPool, lead: std::time::Duration) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "SELECT i.id FROM agent_wakeups w JOIN instances i ON i.id = w.instance_id
         WHERE i.status = 'paused' AND w.next_run_at BETWEEN now() - make_interval(secs => $1) AND now() + make_interval(secs => $1)
         ORDER BY w.next_run_at LIMIT 100",
        lead.as_secs_f64()
    )
    .fetch_all(db)
    .await
}

/// An approval request as the gateway sent it (bounded by the caller).
pub struct NewApproval<'a> {
    pub id: &'a str,
    pub kind: ApprovalKind,
    pub command: &'a str,
    pub cwd: Option<&'a str>,
    pub session_key: Option<&'a str>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

struct ApprovalRow {
    id: String,
    kind: ApprovalKind,
    status: ApprovalStatus,
    command: String,
    cwd: Option<String>,
    session_key: Option<String>,
    decision: Option<Decision>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
}

impl From<ApprovalRow> for Approval {
    fn from(r: ApprovalRow) -> Self {
        Approval {
            id: r.id,
            kind: r.kind,
            // A request nobody answered by its deadline is shown as what the gateway made of it.
            status: if r.status == ApprovalStatus::Pending && r.expires_at < Utc::now() { ApprovalStatus::Expired } else { r.status },
            command: r.command,
            cwd: r.cwd,
            session_key: r.session_key,
            decision: r.decision,
            created_at: r.created_at,
            expires_at: r.expires_at,
            resolved_at: r.resolved_at,
        }
    }
}

/// Records a request; `None` when it was known already (another replica heard it first) or the
/// instance has `max_pending` requests pending.
pub async fn insert_approval(db: &PgPool, instance_id: Uuid, new: &NewApproval<'_>, max_pending: i64) -> sqlx::Result<Option<Approval>> {
    let row = sqlx::query_as!(
        ApprovalRow,
        r#"INSERT INTO approvals (instance_id, id, kind, status, command, cwd, session_key, created_at, expires_at)
           SELECT $1, $2, $3, 'pending', $4, $5, $6, $7, $8
           WHERE (SELECT count(*) FROM approvals WHERE instance_id = $1 AND status = 'pending' AND expires_at > now()) < $9
           ON CONFLICT DO NOTHING
           RETURNING id, kind AS "kind: ApprovalKind", status AS "status: ApprovalStatus", command, cwd, session_key,
                     decision AS "decision: Decision", created_at, expires_at, resolved_at"#,
        instance_id,
        new.id,
        new.kind.as_str(),
        new.command,
        new.cwd,
        new.session_key,
        new.created_at,
        new.expires_at,
        max_pending
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(Approval::from))
}

/// Records the answer to a pending request; `None` when it was no longer pending.
pub async fn resolve_approval(
    db: &PgPool,
    instance_id: Uuid,
    id: &str,
    status: ApprovalStatus,
    decision: Option<Decision>,
) -> sqlx::Result<Option<Approval>> {
    let row = sqlx::query_as!(
        ApprovalRow,
        r#"UPDATE approvals SET status = $3, decision = $4, resolved_at = now()
           WHERE instance_id = $1 AND id = $2 AND status = 'pending'
           RETURNING id, kind AS "kind: ApprovalKind", status AS "status: ApprovalStatus", command, cwd, session_key,
                     decision AS "decision: Decision", created_at, expires_at, resolved_at"#,
        instance_id,
        id,
        status.as_str(),
        decision.map(Decision::as_str)
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(Approval::from))
}

pub async fn approval(db: &PgPool, instance_id: Uuid, id: &str) -> sqlx::Result<Option<Approval>> {
    let row = sqlx::query_as!(
        ApprovalRow,
        r#"SELECT id, kind AS "kind: ApprovalKind", status AS "status: ApprovalStatus", command, cwd, session_key,
                  decision AS "decision: Decision", created_at, expires_at, resolved_at
           FROM approvals WHERE instance_id = $1 AND id = $2"#,
        instance_id,
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(Approval::from))
}

/// The newest requests (pending only, or all), at most 200.
pub async fn approvals(db: &PgPool, instance_id: Uuid, pending_only: bool) -> sqlx::Result<Vec<Approval>> {
    let rows = sqlx::query_as!(
        ApprovalRow,
        r#"SELECT id, kind AS "kind: ApprovalKind", status AS "status: ApprovalStatus", command, cwd, session_key,
                  decision AS "decision: Decision", created_at, expires_at, resolved_at
           FROM approvals WHERE instance_id = $1 AND (NOT $2 OR (status = 'pending' AND expires_at > now()))
           ORDER BY created_at DESC LIMIT 200"#,
        instance_id,
        pending_only
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Approval::from).collect())
}

pub async fn pending_count(db: &PgPool, instance_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM approvals WHERE instance_id = $1 AND status = 'pending' AND expires_at > now()"#, instance_id)
        .fetch_one(db)
        .await
}

/// Appends to the instance's agent feed, once per `dedupe`.
pub async fn insert_event(db: &PgPool, instance_id: Uuid, kind: &str, dedupe: &str, data: &serde_json::Value) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO agent_events (instance_id, kind, dedupe, data) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        instance_id,
        kind,
        dedupe,
        Json(data) as _
    )
    .execute(db)
    .await?;
    Ok(())
}

pub struct EventRow {
    pub id: i64,
    pub kind: String,
    pub data: serde_json::Value,
}

/// Feed entries after `cursor`, oldest first, at most `limit`.
pub async fn events_after(db: &PgPool, instance_id: Uuid, cursor: i64, limit: i64) -> sqlx::Result<Vec<EventRow>> {
    sqlx::query_as!(
        EventRow,
        r#"SELECT id, kind, data AS "data!" FROM agent_events WHERE instance_id = $1 AND id > $2 ORDER BY id LIMIT $3"#,
        instance_id,
        cursor,
        limit
    )
    .fetch_all(db)
    .await
}

/// The newest entry's id (where a feed without `Last-Event-ID` starts).
pub async fn last_event(db: &PgPool, instance_id: Uuid) -> sqlx::Result<i64> {
    Ok(sqlx::query_scalar!("SELECT max(id) FROM agent_events WHERE instance_id = $1", instance_id).fetch_one(db).await?.unwrap_or(0))
}

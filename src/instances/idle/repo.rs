//! SQL of the idle policy: the instances it may act on, with their plan's policy.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::instances::models::InstanceStatus;

/// A running or paused instance the idle policy may act on, with its plan's overrides.
pub struct Candidate {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: InstanceStatus,
    pub last_active_at: DateTime<Utc>,
    pub pause_after_secs: Option<i32>,
    pub stop_after_secs: Option<i32>,
    /// When the agent's next schedule runs, and when one last ran (`agent_wakeups`).
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// A messaging channel of the agent is connected.
    pub channel_live: bool,
    /// The plan's `keep_awake_max`, and how many of the user's instances are pinned awake.
    pub keep_awake_max: Option<i32>,
    pub pinned: i64,
}

/// `ready` and `paused` instances of users that are not pinned awake.
pub async fn candidates(db: &PgPool) -> sqlx::Result<Vec<Candidate>> {
    sqlx::query_as!(
        Candidate,
        r#"SELECT i.id, i.user_id AS "user_id!", i.status AS "status: InstanceStatus", i.last_active_at, s.pause_after_secs AS "pause_after_secs?", s.stop_after_secs AS "stop_after_secs?",
                w.next_run_at AS "next_run_at?", w.last_run_at AS "last_run_at?", coalesce(cardinality(w.live_channels) > 0, false) AS "channel_live!",
                s.keep_awake_max AS "keep_awake_max?", (SELECT count(*) FROM instances k WHERE k.user_id = i.user_id AND k.keep_awake) AS "pinned!"
         FROM instances i LEFT JOIN subscriptions s ON s.user_id = i.user_id LEFT JOIN agent_wakeups w ON w.instance_id = i.id
         WHERE i.status IN ('ready', 'paused') AND i.user_id IS NOT NULL AND NOT i.keep_awake"#
    )
    .fetch_all(db)
    .await
}

/// How many instances the user's plan lets them pin awake (`None`: the server's default).
pub async fn keep_awake_max(db: &PgPool, user_id: Uuid) -> sqlx::Result<Option<i32>> {
    Ok(sqlx::query_scalar!("SELECT keep_awake_max FROM subscriptions WHERE user_id = $1", user_id).fetch_optional(db).await?.flatten())
}

/// Sets a plan's idle policy (`None`: the server's default for that field).
pub async fn set_policy(
    db: &PgPool,
    user_id: Uuid,
    pause_after_secs: Option<i32>,
    stop_after_secs: Option<i32>,
    keep_awake_max: Option<i32>,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE subscriptions SET pause_after_secs = $2, stop_after_secs = $3, keep_awake_max = $4, updated_at = now() WHERE user_id = $1",
        user_id,
        pause_after_secs,
        stop_after_secs,
        keep_awake_max
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

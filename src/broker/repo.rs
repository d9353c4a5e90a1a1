//! SQL of the model broker: instance tokens (stored as SHA-256, like every token ocaas hands
//! out: `auth::secrets::sha256`) and usage rows.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::usage::UsageDay;

/// Who a broker token belongs to.
#[derive(Debug, Clone)]
pub struct TokenOwner {
    pub instance_id: Uuid,
    pub user_id: Uuid,
    pub sandbox_id: String,
    /// The node its sandbox runs on (`None`: this server's own engine).
    pub node_id: Option<Uuid>,
}

/// Replaces the instance's broker token (before a container is created with the new one).
pub async fn set_token_hash(db: &PgPool, instance_id: Uuid, hash: &[u8]) -> sqlx::Result<()> {
    sqlx::query!("UPDATE instances SET broker_token_hash = $2 WHERE id = $1", instance_id, hash).execute(db).await?;
    Ok(())
}

pub async fn owner_of(db: &PgPool, hash: &[u8]) -> sqlx::Result<Option<TokenOwner>> {
    sqlx::query_as!(
        TokenOwner,
        // A pool sandbox (no owner yet) has no model: nobody's budget would pay for it.
        r#"SELECT id AS instance_id, user_id AS "user_id!", sandbox_id, node_id FROM instances
           WHERE broker_token_hash = $1 AND status <> 'deleting' AND user_id IS NOT NULL"#,
        hash
    )
    .fetch_optional(db)
    .await
}

/// One upstream call.
#[derive(Debug, Clone)]
pub struct UsageRecord {
    pub instance_id: Uuid,
    pub user_id: Uuid,
    pub model: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub estimated: bool,
    pub duration_ms: i64,
    pub status: &'static str,
}

pub async fn insert_usage(db: &PgPool, record: &UsageRecord) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO model_usage (instance_id, user_id, model, prompt_tokens, completion_tokens, estimated, duration_ms, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        record.instance_id,
        record.user_id,
        record.model,
        record.prompt_tokens,
        record.completion_tokens,
        record.estimated,
        record.duration_ms,
        record.status
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Whose model calls a usage report counts.
#[derive(Clone, Copy)]
pub enum Whose {
    /// A user's own instances' (deleted ones too), not those of organisations.
    User(Uuid),
    /// One instance's, whoever called through it.
    Instance(Uuid),
    /// An organisation's instances' (deleted ones too).
    Org(Uuid),
}

/// Totals per UTC day and model of the calls of `whose` in [from, to).
pub async fn usage_by_day(db: &PgPool, whose: Whose, from: DateTime<Utc>, to: DateTime<Utc>) -> sqlx::Result<Vec<UsageDay>> {
    let (user, instance, org) = match whose {
        Whose::User(id) => (Some(id), None, None),
        Whose::Instance(id) => (None, Some(id), None),
        Whose::Org(id) => (None, None, Some(id)),
    };
    sqlx::query_as!(
        UsageDay,
        r#"SELECT (created_at AT TIME ZONE 'UTC')::date AS "day!", model, count(*) AS "requests!",
                  coalesce(sum(prompt_tokens), 0)::bigint AS "prompt_tokens!", coalesce(sum(completion_tokens), 0)::bigint AS "completion_tokens!",
                  count(*) FILTER (WHERE estimated) AS "estimated_requests!"
           FROM model_usage
           WHERE ($1::uuid IS NULL OR (user_id = $1 AND org_id IS NULL)) AND ($2::uuid IS NULL OR instance_id = $2)
             AND ($5::uuid IS NULL OR org_id = $5) AND created_at >= $3 AND created_at < $4
           GROUP BY 1, 2 ORDER BY 1, 2"#,
        user,
        instance,
        from,
        to,
        org
    )
    .fetch_all(db)
    .await
}

/// (email, totals per day and model) of every user with calls since `since`, for the admin CLI.
pub async fn usage_of_users(db: &PgPool, email: Option<&str>, since: DateTime<Utc>) -> sqlx::Result<Vec<(String, UsageDay)>> {
    let rows = sqlx::query!(
        r#"SELECT u.email, (m.created_at AT TIME ZONE 'UTC')::date AS "day!", m.model, count(*) AS "requests!",
                  coalesce(sum(m.prompt_tokens), 0)::bigint AS "prompt_tokens!", coalesce(sum(m.completion_tokens), 0)::bigint AS "completion_tokens!",
                  count(*) FILTER (WHERE m.estimated) AS "estimated_requests!"
           FROM model_usage m JOIN users u ON u.id = m.user_id
           WHERE m.created_at >= $1 AND ($2::text IS NULL OR lower(u.email) = lower($2))
           GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"#,
        since,
        email
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let row = UsageDay {
                day: r.day,
                model: r.model,
                requests: r.requests,
                prompt_tokens: r.prompt_tokens,
                completion_tokens: r.completion_tokens,
                estimated_requests: r.estimated_requests,
            };
            (r.email, row)
        })
        .collect())
}

/// A user's own model for an instance, its key still sealed.
#[derive(Debug, Clone)]
pub struct CustomModel {
    pub base_url: String,
    pub model: String,
    pub api_key_sealed: Vec<u8>,
}

pub async fn custom_model(db: &PgPool, instance_id: Uuid) -> sqlx::Result<Option<CustomModel>> {
    sqlx::query_as!(CustomModel, "SELECT base_url, model, api_key_sealed FROM instance_models WHERE instance_id = $1", instance_id)
        .fetch_optional(db)
        .await
}

pub async fn set_custom_model(db: &PgPool, instance_id: Uuid, model: &CustomModel) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO instance_models (instance_id, base_url, model, api_key_sealed) VALUES ($1, $2, $3, $4)
         ON CONFLICT (instance_id) DO UPDATE SET base_url = $2, model = $3, api_key_sealed = $4, updated_at = now()",
        instance_id,
        model.base_url,
        model.model,
        model.api_key_sealed
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn clear_custom_model(db: &PgPool, instance_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM instance_models WHERE instance_id = $1", instance_id).execute(db).await?;
    Ok(())
}

/// How much of its monthly allowances an instance and its account have used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The subscription's monthly tokens (`None`: unlimited).
    pub account_allowance: Option<i64>,
    pub account_used: i64,
    /// The user's cap for this instance (`None`: none).
    pub instance_limit: Option<i64>,
    pub instance_used: i64,
}

/// Tokens (prompt + completion) used this calendar month (UTC), against the allowances.
pub async fn budget(db: &PgPool, user_id: Uuid, instance_id: Uuid) -> sqlx::Result<Budget> {
    sqlx::query_as!(
        Budget,
        r#"SELECT a.allowance AS account_allowance, a.used AS "account_used!",
                  (SELECT monthly_token_limit FROM instances WHERE id = $2) AS instance_limit,
                  (SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM model_usage
                    WHERE instance_id = $2 AND created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')::bigint AS "instance_used!"
             FROM token_allowance($1, $2) a"#,
        user_id,
        instance_id
    )
    .fetch_one(db)
    .await
}

/// What the monthly allowances leave, counting what calls in flight have reserved.
pub struct Room {
    pub account_allowance: Option<i64>,
    pub account_used: i64,
    pub account_reserved: i64,
    pub instance_limit: Option<i64>,
    pub instance_used: i64,
    pub instance_reserved: i64,
}

/// Sets aside up to `wanted` tokens for a call within the room the allowances leave: one at a
/// time per user (its row locked), so concurrent calls see each other's reservations.
/// `Ok(Err(room))` when there is no room; `Ok(Ok(None))` when nothing limits the user.
pub async fn reserve(db: &PgPool, owner: &TokenOwner, wanted: i64, ttl_secs: f64) -> sqlx::Result<Result<Option<Uuid>, Room>> {
    let mut tx = db.begin().await?;
    sqlx::query_scalar!("SELECT id FROM users WHERE id = $1 FOR UPDATE", owner.user_id).fetch_optional(&mut *tx).await?;
    // An organisation's instances share its allowance: their calls take turns on its row.
    sqlx::query_scalar!("SELECT id FROM orgs WHERE id = (SELECT org_id FROM instances WHERE id = $1) FOR UPDATE", owner.instance_id)
        .fetch_optional(&mut *tx)
        .await?;
    let room = sqlx::query_as!(
        Room,
        r#"SELECT a.allowance AS account_allowance, a.used AS "account_used!", a.reserved AS "account_reserved!",
                  (SELECT monthly_token_limit FROM instances WHERE id = $2) AS instance_limit,
                  (SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM model_usage
                    WHERE instance_id = $2 AND created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')::bigint AS "instance_used!",
                  (SELECT coalesce(sum(tokens), 0) FROM token_reservations WHERE instance_id = $2 AND expires_at > now())::bigint AS "instance_reserved!"
             FROM token_allowance($1, $2) a"#,
        owner.user_id,
        owner.instance_id
    )
    .fetch_one(&mut *tx)
    .await?;
    let account = room.account_allowance.map(|a| a - room.account_used - room.account_reserved);
    let instance = room.instance_limit.map(|l| l - room.instance_used - room.instance_reserved);
    let Some(left) = [account, instance].into_iter().flatten().min() else { return Ok(Ok(None)) };
    if left <= 0 {
        return Ok(Err(room));
    }
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO token_reservations (id, user_id, instance_id, tokens, expires_at) VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        id,
        owner.user_id,
        owner.instance_id,
        wanted.clamp(1, left),
        ttl_secs
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Some(id)))
}

/// Ends a reservation (its call's usage is recorded).
pub async fn release_reservation(db: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM token_reservations WHERE id = $1", id).execute(db).await?;
    Ok(())
}

/// Records that `subject` (an account or an instance) was warned this month; `false` if it
/// already was.
pub async fn first_warning_this_month(db: &PgPool, subject: Uuid) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO usage_warnings (subject, month) VALUES ($1, date_trunc('month', now() AT TIME ZONE 'UTC')::date) ON CONFLICT DO NOTHING",
        subject
    )
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub async fn set_instance_limit(db: &PgPool, instance_id: Uuid, tokens: Option<i64>) -> sqlx::Result<()> {
    sqlx::query!("UPDATE instances SET monthly_token_limit = $2 WHERE id = $1", instance_id, tokens).execute(db).await?;
    Ok(())
}

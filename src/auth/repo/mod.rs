//! SQL for accounts: users, API keys, browser sessions, subscriptions and invite codes
//! (websocket tickets in `tickets`).

mod tickets;

pub use tickets::*;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct SubscriptionRow {
    pub max_instances: i32,
    pub expires_at: Option<DateTime<Utc>>,
    pub monthly_tokens: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Option<Vec<String>>,
    pub instance_id: Option<Uuid>,
}

pub struct RedeemedInvite {
    pub max_instances: i32,
    pub subscription_days: Option<i32>,
    pub monthly_tokens: Option<i64>,
}

pub struct SessionRow {
    pub user_id: Uuid,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// A valid API key: its id, its user, when it expires.
pub struct KeyOwner {
    pub id: Uuid,
    pub user_id: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Option<Vec<String>>,
    pub instance_id: Option<Uuid>,
}

/// Inserts a user; `Ok(None)` when the email (case-insensitively) is taken.
pub async fn insert_user(db: impl PgExecutor<'_>, email: &str, password_hash: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3)
         ON CONFLICT (lower(email)) DO NOTHING
         RETURNING id, email, password_hash, created_at",
        Uuid::now_v7(),
        email,
        password_hash
    )
    .fetch_optional(db)
    .await
}

pub async fn user_by_email(db: impl PgExecutor<'_>, email: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as!(UserRow, "SELECT id, email, password_hash, created_at FROM users WHERE lower(email) = lower($1)", email).fetch_optional(db).await
}

/// A user and their subscription's terms (all `None` without one), in one round trip.
pub struct AccountRow {
    pub id: Uuid,
    pub email: String,
    pub created_at: DateTime<Utc>,
    pub max_instances: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub monthly_tokens: Option<i64>,
}

pub async fn account(db: &PgPool, id: Uuid) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as!(
        AccountRow,
        r#"SELECT u.id, u.email, u.created_at, s.max_instances AS "max_instances?", s.expires_at AS "expires_at?", s.monthly_tokens AS "monthly_tokens?"
           FROM users u LEFT JOIN subscriptions s ON s.user_id = u.id WHERE u.id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

pub async fn list_users(db: &PgPool) -> sqlx::Result<Vec<UserRow>> {
    sqlx::query_as!(UserRow, "SELECT id, email, password_hash, created_at FROM users ORDER BY created_at, id").fetch_all(db).await
}

pub async fn subscription(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Option<SubscriptionRow>> {
    sqlx::query_as!(SubscriptionRow, "SELECT max_instances, expires_at, monthly_tokens FROM subscriptions WHERE user_id = $1", user_id)
        .fetch_optional(db)
        .await
}

/// Grants (or replaces) the user's subscription.
pub async fn upsert_subscription(db: impl PgExecutor<'_>, user_id: Uuid, max_instances: i32, expires_at: Option<DateTime<Utc>>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO subscriptions (user_id, max_instances, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE
         SET max_instances = EXCLUDED.max_instances, expires_at = EXCLUDED.expires_at, updated_at = now()",
        user_id,
        max_instances,
        expires_at
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert_invite(
    db: &PgPool,
    code_hash: &[u8],
    uses: i32,
    max_instances: i32,
    subscription_days: Option<i32>,
    expires_at: Option<DateTime<Utc>>,
    monthly_tokens: Option<i64>,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "INSERT INTO invite_codes (id, code_hash, uses_left, max_instances, subscription_days, expires_at, monthly_tokens)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        Uuid::now_v7(),
        code_hash,
        uses,
        max_instances,
        subscription_days,
        expires_at,
        monthly_tokens
    )
    .fetch_one(db)
    .await
}

/// Takes one use of a valid invite in a single statement, so two concurrent redemptions of
/// the last use cannot both succeed.
pub async fn take_invite_use(db: impl PgExecutor<'_>, code_hash: &[u8]) -> sqlx::Result<Option<RedeemedInvite>> {
    sqlx::query_as!(
        RedeemedInvite,
        "UPDATE invite_codes SET uses_left = uses_left - 1
         WHERE code_hash = $1 AND uses_left > 0 AND (expires_at IS NULL OR expires_at > now())
         RETURNING max_instances, subscription_days, monthly_tokens",
        code_hash
    )
    .fetch_optional(db)
    .await
}

/// Whether the invite could be redeemed now (read only: a cheap check before any hashing).
pub async fn invite_is_redeemable(db: &PgPool, code_hash: &[u8]) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM invite_codes WHERE code_hash = $1 AND uses_left > 0
           AND (expires_at IS NULL OR expires_at > now())) AS "usable!""#,
        code_hash
    )
    .fetch_one(db)
    .await
}

/// A key to store (its secret only as its hash).
pub struct NewKey<'a> {
    pub user_id: Uuid,
    pub name: &'a str,
    pub key_hash: &'a [u8],
    pub prefix: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Option<&'a [String]>,
    pub instance_id: Option<Uuid>,
}

pub async fn insert_api_key(db: &PgPool, key: NewKey<'_>) -> sqlx::Result<ApiKeyRow> {
    sqlx::query_as!(
        ApiKeyRow,
        "INSERT INTO api_keys (id, user_id, name, key_hash, prefix, expires_at, scopes, instance_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id, name, prefix, created_at, last_used_at, expires_at, scopes, instance_id",
        Uuid::now_v7(),
        key.user_id,
        key.name,
        key.key_hash,
        key.prefix,
        key.expires_at,
        key.scopes,
        key.instance_id
    )
    .fetch_one(db)
    .await
}

/// Whether the instance is the user's (a key may be bound only to one of them).
pub async fn owns_instance(db: &PgPool, user_id: Uuid, instance_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM instances WHERE id = $1 AND user_id = $2) AS "found!""#, instance_id, user_id)
        .fetch_one(db)
        .await
}

/// Active (not revoked) keys of a user, newest first; expired ones are listed with their expiry.
pub async fn list_api_keys(db: &PgPool, user_id: Uuid) -> sqlx::Result<Vec<ApiKeyRow>> {
    sqlx::query_as!(
        ApiKeyRow,
        "SELECT id, name, prefix, created_at, last_used_at, expires_at, scopes, instance_id FROM api_keys
         WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id DESC",
        user_id
    )
    .fetch_all(db)
    .await
}

/// Revokes a key; `user_id` limits it to the owner's keys (admins pass `None`).
pub async fn revoke_api_key(db: &PgPool, key_id: Uuid, user_id: Option<Uuid>) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE api_keys SET revoked_at = now()
         WHERE id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR user_id = $2)",
        key_id,
        user_id
    )
    .execute(db)
    .await?;
    crate::state::credentials_revoked();
    Ok(done.rows_affected() == 1)
}

/// The per-request key check: one indexed lookup on the hash. It records the use only when
/// the last one is more than a minute old, so a busy key is not one hot row written on every
/// request.
pub async fn authenticate_api_key(db: &PgPool, key_hash: &[u8]) -> sqlx::Result<Option<KeyOwner>> {
    sqlx::query_as!(
        KeyOwner,
        r#"WITH key AS (
               SELECT id, user_id, last_used_at, expires_at, scopes, instance_id FROM api_keys
               WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())),
           touched AS (
               UPDATE api_keys SET last_used_at = now() FROM key
               WHERE api_keys.id = key.id AND (key.last_used_at IS NULL OR key.last_used_at < now() - interval '1 minute'))
           SELECT id AS "id!", user_id AS "user_id!", expires_at, scopes, instance_id FROM key"#,
        key_hash
    )
    .fetch_optional(db)
    .await
}

/// `last_used_at` of keys used from the server's cache (written in batches, and like every
/// write of it at most once a minute per key).
pub async fn touch_api_keys(db: &PgPool, ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE api_keys SET last_used_at = now()
         WHERE id = ANY($1) AND revoked_at IS NULL AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        ids
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert_session(db: &PgPool, token_hash: &[u8], user_id: Uuid, csrf_token: &str, expires_at: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO browser_sessions (token_hash, user_id, csrf_token, expires_at) VALUES ($1, $2, $3, $4)",
        token_hash,
        user_id,
        csrf_token,
        expires_at
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn session(db: &PgPool, token_hash: &[u8]) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as!(
        SessionRow,
        "SELECT user_id, csrf_token, expires_at FROM browser_sessions WHERE token_hash = $1 AND expires_at > now()",
        token_hash
    )
    .fetch_optional(db)
    .await
}

pub async fn delete_session(db: &PgPool, token_hash: &[u8]) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM browser_sessions WHERE token_hash = $1 OR expires_at < now()", token_hash).execute(db).await?;
    crate::state::credentials_revoked();
    Ok(())
}

/// The subscription's monthly model tokens (`None`: unlimited); `false` when the user has none.
pub async fn set_monthly_tokens(db: impl PgExecutor<'_>, user_id: Uuid, tokens: Option<i64>) -> sqlx::Result<bool> {
    let updated =
        sqlx::query!("UPDATE subscriptions SET monthly_tokens = $2, updated_at = now() WHERE user_id = $1", user_id, tokens).execute(db).await?;
    Ok(updated.rows_affected() == 1)
}
